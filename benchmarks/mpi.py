"""Suite "mpi": ``mpiexec -n R parfill-mpi fill`` vs the single-process command.

One workload, issue 14's: a float32 .npy file of ``sin(idx * 1e-6) *
uniform()`` with 2*10^9 elements (8 GB) -- or, where the disk of ``--dir``
has not room for two such files and 8 GB to spare, the largest power-of-two
fraction of it that fits (the table's title says what ran). Methods, all
writing the same file:

- **parfill fill, 1 process x T threads** (the baseline, T = --workers):
  ``build/parfill``, direct I/O.
- **mpi R ranks x T/R threads** for R = 1, 2, and 4 (oversubscribed when the
  machine has fewer CPUs): ``mpiexec -n R build/parfill-mpi fill ...
  --workers T/R`` (at least 1 thread; ``--bind-to none`` for more than one,
  else Open MPI's binding of a rank to a core), MPI-IO.

Every file is compared with the baseline's first file: byte for byte in
each method's first run (the whole file, read in 64 MiB pieces), on 64
random 1 MiB pieces and every slab boundary in the timed runs. Peak memory
is per process: the largest maximum RSS of any rank (``/usr/bin/time -o``
around each rank; Open MPI's own mpiexec not counted), over all runs.

The table's notes end with the paper estimate for 10^12 elements on 64
nodes, from the measured per-thread rate of ``mpi 2 ranks x 1 thread``.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .harness import Entry, Result, compare

DESCRIPTION = ("mpiexec -n R parfill-mpi fill: a 2e9-element float32 .npy file (8 GB) from "
               "R = 1, 2, 4 ranks vs the single-process parfill fill")
SUITE = "mpi"
EXPR = "sin(idx * 1e-6) * uniform()"
FULL = 2 * 10**9
ITEM = 4

ROOT = Path(__file__).resolve().parent.parent
PARFILL = ROOT / "build" / "parfill"
PARFILL_MPI = ROOT / "build" / "parfill-mpi"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

NOTES = ""
#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}
_extra: dict[str, Any] = {}


def json_extra() -> dict[str, Any]:
    return _extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=None,
                        help="directory for the .npy files (default: a new one under /tmp)")
    parser.add_argument("--elements", type=int, default=None,
                        help=f"elements (default {FULL:,}, less if the disk has no room)")


def _run(cmd: list[str], rss: list[float], rss_dir: str) -> None:
    """Runs cmd (whose processes are wrapped by _timed); their peak RSS (MiB)
    into rss: the largest of any one process."""
    for f in os.listdir(rss_dir):
        os.unlink(os.path.join(rss_dir, f))
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=ENV)
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
    peaks = []
    for f in os.listdir(rss_dir):
        with open(os.path.join(rss_dir, f)) as fh:
            peaks.append(int(fh.read().split()[-1]) / 1024)
    if not peaks:
        raise RuntimeError("no RSS reported")
    rss.append(max(peaks))


def _timed(cmd: list[str], rss_dir: str) -> list[str]:
    """cmd under /usr/bin/time, its max RSS (KiB) into a file of its own (one
    per rank: the ranks' stderr is merged by mpiexec)."""
    script = ('exec /usr/bin/time -f %M -o "$0/rss.${OMPI_COMM_WORLD_RANK:-x}.$$" "$@"')
    return ["sh", "-c", script, rss_dir, *cmd]


def _single(path: str, n: int, threads: int, rss: list[float], rss_dir: str) -> str:
    _run(_timed([str(PARFILL), "fill", EXPR, "--shape", str(n), "--dtype", "float32",
                 "--workers", str(threads), "--no-progress", "--force", "-o", path],
                rss_dir), rss, rss_dir)
    return path


def _mpi(path: str, n: int, ranks: int, threads: int, rss: list[float],
         rss_dir: str) -> str:
    mpiexec = shutil.which("mpiexec") or "mpiexec"
    # Open MPI binds each rank to one core (up to 2 ranks) unless told not to:
    # a rank of several threads needs the cores it is to use.
    bind = ["--bind-to", "none"] if threads > 1 else []
    _run([mpiexec, "-q", "--oversubscribe", *bind, "-n", str(ranks),
          *_timed([str(PARFILL_MPI), "fill", EXPR, "--shape", str(n), "--dtype", "float32",
                   "--workers", str(threads), "--no-progress", "--force", "-o", path],
                  rss_dir)], rss, rss_dir)
    return path


def _same(a: str, b: str, pieces: list[tuple[int, int]] | None) -> bool:
    """Whole files (pieces None) or the given (offset, length) pieces equal."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    size = os.path.getsize(a)
    if pieces is None:
        step = 64 << 20
        pieces = [(k, step) for k in range(0, size, step)]
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for off, length in pieces:
            fa.seek(off)
            fb.seek(off)
            if fa.read(length) != fb.read(length):
                return False
    return True


def _checker(ref: str, path: str, size: int) -> Any:
    seen: set[str] = set()
    # Every slab boundary of R = 2 and 4 (any alignment: 1 MiB around each
    # quarter and half) and 64 random pieces.
    rng = random.Random(14)
    pieces = [(max(0, size * q // 4 - (1 << 19)), 1 << 20) for q in (1, 2, 3)]
    pieces += [(0, 1 << 20), (max(0, size - (1 << 20)), 1 << 20)]
    pieces += [(rng.randrange(0, max(1, size - (1 << 20))), 1 << 20) for _ in range(64)]

    def make(method: str) -> Any:
        def check(out: str) -> bool:
            try:
                full = method not in seen
                seen.add(method)
                return _same(ref, out, None if full else pieces)
            finally:
                os.unlink(out)
                os.sync()
        return check
    return make


def run(args: argparse.Namespace) -> list[Result]:
    global NOTES
    threads = args.workers
    workdir = tempfile.mkdtemp(prefix="parfill-bench-mpi-", dir=args.dir)
    try:
        free = shutil.disk_usage(workdir).free
        n = args.elements or (FULL // 1000 if args.quick else FULL)
        while args.elements is None and n > 10**6 and 2 * n * ITEM + (8 << 30) > free:
            n //= 2
        repeat = min(args.repeat, 2) if args.quick else args.repeat
        name = f"{n:,} float32"
        DESCRIPTIONS[name] = (f"{name}: '{EXPR}' -> .npy ({n * ITEM / 1e9:.2f} GB; "
                               f"{free / 2**30:.0f} GiB free on {workdir})")
        ref = os.path.join(workdir, "ref.npy")
        path = os.path.join(workdir, "x.npy")
        missing = [p for p in (PARFILL, PARFILL_MPI) if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{missing[0]} not built: run `make` (`make mpi`)")
        rss_dir = os.path.join(workdir, "rss")
        os.mkdir(rss_dir)
        ref_rss: list[float] = []
        _single(ref, n, threads, ref_rss, rss_dir)
        size = os.path.getsize(ref)
        make = _checker(ref, path, size)
        plans = [("parfill fill: 1 process x {t} threads", "sequential", 1, threads)]
        for ranks in (1, 2, 4):
            t = max(1, threads // ranks)
            over = " (oversubscribed)" if ranks * t > (os.cpu_count() or 1) else ""
            plans.append((f"mpi: {ranks} rank{'s' if ranks > 1 else ''} x {t} "
                          f"thread{'s' if t > 1 else ''}{over}", "parfill", ranks, t))
        entries, peaks = [], {}
        for label, role, ranks, t in plans:
            method = label.format(t=t)
            rss: list[float] = []
            peaks[method] = rss
            if role == "sequential":
                fn = (lambda t=t, rss=rss: _single(path, n, t, rss, rss_dir))
            else:
                fn = (lambda r=ranks, t=t, rss=rss: _mpi(path, n, r, t, rss, rss_dir))
            entries.append(Entry(Result(SUITE, name, method, role, n, threads), fn,
                                 make(method)))
        results = compare(entries, repeat=repeat, memory=False)
        for r in results:
            r.peak_mib = max(peaks[r.method]) if peaks[r.method] else None
        NOTES = _notes(results, n, threads)
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _notes(results: list[Result], n: int, threads: int) -> str:
    lines = [
        "notes: median wall time of the timed runs (interleaved), each writing and syncing the",
        "  whole file and renaming it into place, mpiexec start-up included; speedup = the",
        "  1-process command's median / median. peak MiB = the largest max RSS of one process",
        "  (one rank), over all runs. check: byte for byte against the 1-process file (whole",
        "  file in each method's first run, 69 MiB of pieces in the others)."]
    two = next((r for r in results if r.method.startswith("mpi: 2 ranks x 1 ") and r.median),
               None)
    if two is not None and two.median:
        # Per-thread rate of a rank, the file written and synced (I/O included).
        rate = n / two.median / 2
        elements, nodes, bytes_ = 10**12, 64, 4 * 10**12
        _extra["per_rank_thread_elements_per_s"] = rate
        compute = elements / (nodes * 32 * rate)
        fs, inject = bytes_ / 100e9, bytes_ / (nodes * 1e9)
        bound = "compute" if compute > max(fs, inject) else "the file system"
        lines += [
            f"  estimate: 10^12 float32 elements (4 TB) on {nodes} nodes, one rank per node:",
            f"  measured {rate / 1e6:.0f} M elements/s per rank-thread here (2 ranks x 1 thread,",
            f"  write and sync included) -> compute on 32 cores per node {compute:.0f} s; each",
            "  slab is one contiguous block-aligned 62.5 GB range (no shared file system lock),",
            "  the collective part one allreduce per 1 MiB block. Writing 4 TB at 100 GB/s",
            f"  aggregate takes {fs:.0f} s, at 1 GB/s per node {inject:.0f} s: bound by {bound}.",
        ]
    return "\n".join(lines)
