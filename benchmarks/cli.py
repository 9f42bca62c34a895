"""Suite "cli": the ``parfill`` command writing a .npy file vs NumPy + ``np.save``.

One workload, the issue's: ``sin(i*0.001)*cos(j*0.001)`` over 20000 x 20000
float64 (3.2 GB) into a .npy file. Methods:

- **numpy: indices + save** (the baseline): ``i, j = np.indices(shape)``,
  ``np.sin(i*0.001) * np.cos(j*0.001)``, ``np.save`` -- NumPy evaluating the
  expression the way SPEC section 4 defines it (on ``numpy.indices``). Needs
  about 13 GB; skipped (an error row) when the machine has less available.
- **numpy: broadcast + save** (a peer): the same values from ``np.ogrid``
  broadcasting, 40,000 sines instead of 800 million. Only possible because
  this expression separates into f(i)*g(j); shown so the comparison is
  honest about what a NumPy expert would write for this one.
- **parfill fill**: ``parfill fill EXPR --shape 20000x20000 --workers W -o
  x.npy`` as a subprocess (its time includes process start, fsync and the
  rename; NumPy's ``np.save`` does not sync).

Every file is checked (shape, dtype and a sample of rows against NumPy,
within 16 ulp: sin and cos are each within 4) and deleted outside the timed
region, followed by ``sync`` so one method's write-back does not slow the
next.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .harness import Entry, Result, compare

DESCRIPTION = ("the parfill command: 'sin(i*0.001)*cos(j*0.001)' over 20000x20000 float64 "
               "into a .npy file, vs NumPy computing it and np.save")

SUITE = "cli"
EXPR = "sin(i*0.001)*cos(j*0.001)"

NOTES = """\
notes: median of the timed runs, each writing the whole .npy file; speedup = the baseline's
  median ("numpy: indices + save") / median, so 2.00x means half the baseline's time; vs best
  peer = "numpy: broadcast + save" / median. peak MiB = peak PSS of this process and its
  children (the parfill process included) during one extra run, minus before it. parfill
  fsyncs its file before renaming it into place; np.save leaves it in the page cache.
  Files go to --dir (default: a temporary directory under /tmp) and are deleted after
  each run."""

#: The command `make` builds in this checkout (benchmarks run from a checkout, never
#: from an installed package).
BUILT_COMMAND = Path(__file__).resolve().parent.parent / "build" / "parfill"

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=None,
                        help="directory for the .npy files (default: a new one under /tmp)")
    parser.add_argument("--parfill", default=None,
                        help="the parfill command (default: this checkout's build/parfill, then PATH)")


def _parfill_command(explicit: str | None) -> str:
    if explicit:
        return explicit
    built = BUILT_COMMAND
    if built.exists():
        return str(built)
    found = shutil.which("parfill")
    if found:
        return found
    raise FileNotFoundError("no parfill command: run `make` (builds build/parfill)")


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _numpy_indices(path: str, shape: tuple[int, int]) -> str:
    i, j = np.indices(shape)
    a = np.sin(i * 0.001)
    a *= np.cos(j * 0.001)
    del i, j
    np.save(path, a)
    return path


def _numpy_broadcast(path: str, shape: tuple[int, int]) -> str:
    i, j = np.ogrid[:shape[0], :shape[1]]
    np.save(path, np.sin(i * 0.001) * np.cos(j * 0.001))
    return path


def _parfill(cmd: str, path: str, shape: tuple[int, int], workers: int) -> str:
    # With vfork (CPython's default) the child shares this process's memory
    # until it execs, and the PSS sampler, reading both, would count this
    # process's ~50 MiB twice for that moment; fork's copy-on-write pages
    # are split between the two instead. (CPython's documented switch.)
    use_vfork = getattr(subprocess, "_USE_VFORK", None)
    subprocess._USE_VFORK = False  # type: ignore[attr-defined]
    try:
        subprocess.run([cmd, "fill", EXPR, "--shape", f"{shape[0]}x{shape[1]}",
                        "--workers", str(workers), "--no-progress", "--force", "-o",
                        path], check=True, stdin=subprocess.DEVNULL)
    finally:
        if use_vfork is not None:
            subprocess._USE_VFORK = use_vfork  # type: ignore[attr-defined]
    return path


def _checker(shape: tuple[int, int]) -> Any:
    rows = sorted({0, 1, shape[0] // 3, shape[0] // 2, shape[0] - 1})
    cols = np.arange(shape[1]) * 0.001

    def check(path: str) -> bool:
        try:
            a = np.load(path, mmap_mode="r")
            ok = a.shape == shape and a.dtype == np.float64
            for r in rows:
                # sin and cos are each within 4 ulp (libmvec, NumPy's SVML):
                # their product within about 10.
                ref = np.sin(r * 0.001) * np.cos(cols)
                np.testing.assert_array_max_ulp(np.asarray(a[r]), ref, maxulp=16)
            del a
            return ok
        except AssertionError:
            return False
        finally:
            os.unlink(path)
            os.sync()
    return check


def run(args: argparse.Namespace) -> list[Result]:
    shape = (2000, 2000) if args.quick else (20000, 20000)
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    workers = args.workers
    nbytes = shape[0] * shape[1] * 8
    name = f"{shape[0]}x{shape[1]}"
    DESCRIPTIONS[name] = (f"{name}: '{EXPR}' -> float64 .npy file "
                           f"({nbytes / 1e9:.2f} GB)")
    workdir = tempfile.mkdtemp(prefix="parfill-bench-cli-", dir=args.dir)
    path = os.path.join(workdir, "x.npy")
    check = _checker(shape)
    n = shape[0] * shape[1]
    entries = []

    baseline = Result(SUITE, name, "numpy: indices + save", "sequential", n, workers)
    need = 4 * nbytes + (2 << 30)
    if _mem_available() < need:
        def skipped() -> str:
            raise MemoryError(f"needs ~{need / 2**30:.0f} GiB available, has "
                              f"{_mem_available() / 2**30:.1f}")
        entries.append(Entry(baseline, skipped, check))
    else:
        entries.append(Entry(baseline, lambda: _numpy_indices(path, shape), check))
    entries.append(Entry(Result(SUITE, name, "numpy: broadcast + save", "peer", n, workers),
                         lambda: _numpy_broadcast(path, shape), check))
    try:
        cmd = _parfill_command(getattr(args, "parfill", None))
    except FileNotFoundError as exc:
        message = str(exc)

        def missing() -> str:
            raise FileNotFoundError(message)
        entries.append(Entry(Result(SUITE, name, "parfill fill", "parfill", n, workers),
                             missing, check))
    else:
        entries.append(Entry(Result(SUITE, name, f"parfill fill --workers {workers}",
                                    "parfill", n, workers),
                             lambda: _parfill(cmd, path, shape, workers), check))
    try:
        return compare(entries, repeat=repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
