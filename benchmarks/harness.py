"""The benchmark harness: suites, measurement, tables, JSON and plots.

``python -m benchmarks [SUITE] [options]`` (from the repository root) looks SUITE up in :data:`SUITES`
(suite name -> module path), imports that module and calls its
``run(args) -> list[Result]``; the harness then fills in the derived columns
(speedup, ratio to the best peer), prints one table per workload, and writes
``--json`` / ``--plot`` if asked. A suite module may also define
``add_arguments(parser)`` for options of its own, ``DESCRIPTION``,
``DESCRIPTIONS`` (workload name -> table heading, filled in by ``run``) and
``WORKLOADS`` (the names ``--only`` takes; the harness adds the option).
Adding a suite is one file in this package plus one line in :data:`SUITES`
(see benchmarks/README.md).

Timing and memory are measured in separate runs: one memory-sampled run
first (it also warms caches), then ``--repeat`` timed runs with nothing else
running in the benchmark process; :func:`compare` interleaves the timed runs
of a workload's methods (round-robin) so drifting machine speed hits all alike. Every run's result is compared with the
sequential reference; a mismatch is reported loudly and makes the exit status 1.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "SUITES",
    "Entry",
    "Measurement",
    "PssSampler",
    "Result",
    "compare",
    "default_workers",
    "finalize",
    "format_table",
    "main",
    "measure",
    "plot_results",
    "result_from",
    "write_json",
]

#: Suite name -> module (relative names are inside ``benchmarks``). One line per suite.
SUITES: dict[str, str] = {
    "python": ".python_suite",
    "expr": ".expr",
    "cli": ".cli",
    "random": ".random",
    "native": ".native",
    "translate": ".translate",
    "mpi": ".mpi",
    "dask": ".dask",
}

ROLES = ("sequential", "peer", "parfill", "other")


@dataclass
class Result:
    """One method on one workload. Times are seconds; ``peak_mib`` is MiB.

    ``role`` is "sequential" (the speedup baseline), "peer" (competes for
    best peer), "parfill" or "other". ``speedup`` = sequential median / this
    median; ``ratio_vs_best_peer`` = best peer median / this median (> 1: faster
    than every peer). Both are None where there is nothing to compare with.
    ``n_run`` < ``n`` means the method ran on a sample of ``n_run`` elements
    and its times were scaled linearly to ``n``.
    """

    suite: str
    workload: str
    method: str
    role: str
    n: int
    workers: int
    times: list[float] = field(default_factory=list)
    median: float | None = None
    speedup: float | None = None
    ratio_vs_best_peer: float | None = None
    peak_mib: float | None = None
    correct: bool = False
    n_run: int | None = None
    note: str = ""
    error: str | None = None


# ---------------------------------------------------------------------------
# Memory: PSS of this process and all its descendants.

def _read_pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return 0
    except (PermissionError, ProcessLookupError, OSError):
        pass
    try:  # kernels without smaps_rollup: RSS over-counts shared pages
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (by scanning /proc/*/stat for parents)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


class PssSampler:
    """Samples the total PSS of this process and its descendants in a thread.

    Use as a context manager around one call; ``peak_mib`` is then the peak
    total minus the total just before the call. Samples every ``interval``
    seconds (default 1.5 ms); the process tree is rescanned every
    ``rescan_every`` samples, so new workers are seen within a few ms.
    """

    def __init__(self, interval: float = 0.0015, rescan_every: int = 4):
        self.interval = interval
        self.rescan_every = rescan_every
        self.root = os.getpid()
        self.baseline_kib = 0
        self.peak_kib = 0
        self.samples = 0
        self._pids: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _total_kib(self) -> int:
        return _read_pss_kib(self.root) + sum(_read_pss_kib(p) for p in self._pids)

    def _sample(self, rescan: bool) -> None:
        if rescan:
            self._pids = _descendants(self.root)
        self.peak_kib = max(self.peak_kib, self._total_kib())
        self.samples += 1

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            self._sample(n % self.rescan_every == 0)

    def __enter__(self) -> PssSampler:
        self._pids = _descendants(self.root)
        self.baseline_kib = self.peak_kib = self._total_kib()
        self._thread = threading.Thread(target=self._loop, name="pss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample(rescan=True)

    @property
    def peak_mib(self) -> float:
        return max(0, self.peak_kib - self.baseline_kib) / 1024.0


# ---------------------------------------------------------------------------
# Measurement.

@dataclass
class Measurement:
    times: list[float]
    peak_mib: float | None
    correct: bool


def measure(fn: Callable[[], Any], *, check: Callable[[Any], bool], repeat: int,
            cold: Callable[[], None] | None = None, memory: bool = True,
            scale: float = 1.0) -> Measurement:
    """Run ``fn`` once under the PSS sampler (if ``memory``), then ``repeat`` timed runs.

    Every result goes through ``check``; ``times`` are wall seconds times
    ``scale``. ``cold()`` runs before the sampled run. Exceptions propagate.
    """
    correct = True
    peak = None
    if memory:
        if cold is not None:
            cold()
        gc.collect()
        with PssSampler() as sampler:
            out = fn()
        peak = sampler.peak_mib
        correct = bool(check(out)) and correct
        del out
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
        correct = bool(check(out)) and correct
        del out
        times.append(elapsed * scale)
    return Measurement(times, peak, correct)


def result_from(suite: str, workload: str, method: str, role: str, n: int, workers: int,
                fn: Callable[[], Any], *, check: Callable[[Any], bool], repeat: int,
                cold: Callable[[], None] | None = None, memory: bool = True,
                n_run: int | None = None, note: str = "") -> Result:
    """Measure ``fn`` and wrap it in a :class:`Result`; an exception becomes an error row.

    ``n_run`` < ``n``: ``fn`` computes ``n_run`` of the ``n`` elements and its
    times are scaled by ``n / n_run``.
    """
    r = Result(suite, workload, method, role, n, workers, n_run=n_run, note=note)
    scale = n / n_run if n_run else 1.0
    try:
        m = measure(fn, check=check, repeat=repeat, cold=cold, memory=memory, scale=scale)
    except Exception as exc:  # a broken method is a row, not a crashed benchmark
        r.error = _error_text(exc)
        return r
    r.times = m.times
    r.median = statistics.median(m.times) if m.times else None
    r.peak_mib = m.peak_mib
    r.correct = m.correct
    return r


@dataclass
class Entry:
    """One method to compare by :func:`compare`: a :class:`Result` to fill and how."""

    result: Result
    fn: Callable[[], Any]
    check: Callable[[Any], bool]
    cold: Callable[[], None] | None = None


def compare(entries: Sequence[Entry], *, repeat: int, memory: bool = True) -> list[Result]:
    """Measure several methods of one workload with their timed runs interleaved.

    First each method's memory-sampled run (after its ``cold()``), in order;
    then ``repeat`` rounds, each timing every method once. On a machine whose
    speed drifts (shared hosts, turbo, thermal limits) a slow spell then hits
    every method alike instead of whichever happened to be running. A method
    that raises becomes an error row and is skipped in later rounds. Each
    ``cold()`` runs once more at the end: a pool a method keeps between calls
    (joblib's loky workers) does not outlive the comparison.
    """
    for e in entries:
        e.result.times = []
        e.result.correct = True
        if not memory:
            continue
        try:
            if e.cold is not None:
                e.cold()
            gc.collect()
            with PssSampler() as sampler:
                out = e.fn()
            e.result.peak_mib = sampler.peak_mib
            e.result.correct = bool(e.check(out))
            del out
        except Exception as exc:
            e.result.error = _error_text(exc)
    for _ in range(repeat):
        for e in entries:
            r = e.result
            if r.error:
                continue
            scale = r.n / r.n_run if r.n_run else 1.0
            gc.collect()
            try:
                t0 = time.perf_counter()
                out = e.fn()
                elapsed = time.perf_counter() - t0
                r.correct = bool(e.check(out)) and r.correct
                del out
            except Exception as exc:
                r.error = _error_text(exc)
                continue
            r.times.append(elapsed * scale)
    for e in entries:
        if e.cold is not None:
            e.cold()
        r = e.result
        if r.error:
            r.correct = False
            r.times, r.median = [], None
        else:
            r.median = statistics.median(r.times) if r.times else None
    return [e.result for e in entries]


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def finalize(results: Sequence[Result]) -> None:
    """Fill in ``speedup`` and ``ratio_vs_best_peer`` within each (suite, workload)."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.suite, r.workload), []).append(r)
    for rows in groups.values():
        seq = [r.median for r in rows if r.role == "sequential" and r.median and r.correct]
        peers = [r.median for r in rows if r.role == "peer" and r.median and r.correct]
        best_peer = min(peers) if peers else None
        for r in rows:
            if not r.median:
                continue
            r.speedup = seq[0] / r.median if seq else None
            r.ratio_vs_best_peer = best_peer / r.median if best_peer else None


# ---------------------------------------------------------------------------
# Output.

def _fmt_time(t: float | None, approx: bool = False) -> str:
    if t is None:
        return "-"
    s = f"{t * 1e3:.1f} ms" if t < 1.0 else f"{t:.2f} s"
    return ("~" + s) if approx else s


def _fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def format_table(results: Sequence[Result], header: Callable[[str], str] | None = None) -> str:
    """One text table per workload, in the order the results came."""
    out: list[str] = []
    order: list[tuple[str, str]] = []
    for r in results:
        if (r.suite, r.workload) not in order:
            order.append((r.suite, r.workload))
    width = max([len(r.method) for r in results] + [20])
    for suite, workload in order:
        rows = [r for r in results if (r.suite, r.workload) == (suite, workload)]
        title = header(workload) if header else workload
        out.append(f"\n== {title}  (workers={rows[0].workers})")
        out.append(f"{'method':<{width}}  {'median':>10}  {'speedup':>8}  "
                   f"{'vs best peer':>12}  {'peak MiB':>8}  check")
        for r in rows:
            if r.error:
                check = "ERROR: " + r.error
            elif not r.correct:
                check = "MISMATCH !!!"
            else:
                check = "equal"
            scaled = r.n_run is not None and r.n_run < r.n
            if scaled:
                check += f"  (ran {r.n_run:,} of {r.n:,} elements, time scaled)"
            if r.note:
                check += f"  [{r.note}]"
            peak = "-" if r.peak_mib is None else f"{r.peak_mib:.1f}"
            ratio = _fmt_x(r.ratio_vs_best_peer) if r.role != "sequential" else "-"
            out.append(f"{r.method:<{width}}  {_fmt_time(r.median, scaled):>10}  "
                       f"{_fmt_x(r.speedup):>8}  {ratio:>12}  {peak:>8}  {check}")
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus_usable": default_workers(),
        "cpus_total": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import parfill

        info["parfill"] = getattr(parfill, "__version__", None)
    except ImportError:
        pass
    return info


def write_json(path: str, suite: str, results: Sequence[Result],
               extra: dict[str, Any] | None = None) -> None:
    """``{"suite", "created", "machine", ..., "results": [Result fields...]}``."""
    doc: dict[str, Any] = {
        "suite": suite,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
    }
    doc.update(extra or {})
    doc["results"] = [asdict(r) for r in results]
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def plot_results(path: str, results: Sequence[Result], title: str = "") -> None:
    """Bar chart of speedup vs sequential: one group per workload, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads: list[str] = []
    methods: list[str] = []
    for r in results:
        if r.speedup is None or r.role == "sequential":
            continue
        if r.workload not in workloads:
            workloads.append(r.workload)
        if r.method not in methods:
            methods.append(r.method)
    speed = {(r.workload, r.method): r.speedup for r in results if r.speedup is not None}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(workloads) + 3), 4.5))
    width = 0.8 / max(1, len(methods))
    for m, method in enumerate(methods):
        xs = [w + (m - (len(methods) - 1) / 2) * width for w in range(len(workloads))]
        ys = [speed.get((wl, method), 0.0) for wl in workloads]
        ax.bar(xs, ys, width, label=method)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads)
    ax.set_ylabel("speedup vs sequential loop")
    ax.set_title(title or "parfill benchmark")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Command line.

def default_workers() -> int:
    """The CPUs this process may use (parfill.cpu_count() when available)."""
    try:
        import parfill

        return int(parfill.cpu_count())
    except Exception:
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _load_suite(name: str) -> Any:
    return importlib.import_module(SUITES[name], package=__package__)


def add_run_options(p: argparse.ArgumentParser, *, repeat: int, per: str) -> None:
    """The options every benchmark command takes: --repeat, --json, --quick."""
    p.add_argument("--repeat", type=int, default=repeat,
                   help=f"timed runs per {per} (default {repeat})")
    p.add_argument("--json", metavar="FILE", help="also write results as JSON")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and few runs: a smoke test, not a measurement")


def _parser(suite_module: Any | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks: print a table per workload (median wall time, speedup vs "
                    "the sequential loop, ratio vs the best peer, peak memory, equality check).")
    p.add_argument("suite", nargs="?", default="python", choices=sorted(SUITES),
                   help="which suite to run (default: python); must come first")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes/threads (default: the usable CPUs)")
    add_run_options(p, repeat=5, per="method")
    p.add_argument("--plot", metavar="FILE.png", help="also draw a speedup bar chart")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    names = getattr(suite_module, "WORKLOADS", None)
    if names:
        p.add_argument("--only", action="append", choices=names, metavar="NAME",
                       help=f"run only these workloads (repeatable): {', '.join(names)}")
    if suite_module is not None and hasattr(suite_module, "add_arguments"):
        suite_module.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks``; returns the exit status (1 on any mismatch/error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--list" in argv:
        for name in sorted(SUITES):
            doc = getattr(_load_suite(name), "DESCRIPTION", "")
            print(f"{name:10s} {doc}")
        return 0
    # The suite, if named, comes first (its own options may take values).
    suite = argv[0] if argv and not argv[0].startswith("-") else "python"
    if suite not in SUITES:
        _parser(None).parse_args(argv)  # exits with a usage error naming the choices
    module = _load_suite(suite)
    args = _parser(module).parse_args(argv)
    if args.workers is not None and args.workers < 1:
        print("bench: --workers must be >= 1", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print("bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    if args.workers is None:
        args.workers = default_workers()

    results: list[Result] = list(module.run(args))
    finalize(results)
    headings = getattr(module, "DESCRIPTIONS", {})
    print(format_table(results, lambda name: headings.get(name, name)))
    notes = getattr(module, "NOTES", "")
    if notes:
        print("\n" + notes.strip())

    bad = [r for r in results if r.error or not r.correct]
    if bad:
        print(f"\n!!! {len(bad)} run(s) failed or did not equal the sequential reference:",
              file=sys.stderr)
        for r in bad:
            print(f"!!!   {r.workload} / {r.method}: {r.error or 'MISMATCH'}", file=sys.stderr)
    extra = getattr(module, "json_extra", lambda: {})()
    if args.json:
        write_json(args.json, args.suite, results, extra)
        print(f"\nwrote {args.json}")
    if args.plot:
        skip = set(getattr(module, "PLOT_EXCLUDE", ()))
        plot_results(args.plot, [r for r in results if r.workload not in skip],
                     f"benchmarks {args.suite} ({args.workers} workers)")
        print(f"wrote {args.plot}")
    return 1 if bad else 0
