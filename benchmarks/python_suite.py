"""Suite "python": Python element functions, parfill vs the article vs joblib.

For each workload of :func:`benchmarks.workloads.python_workloads` it times
every method of :func:`benchmarks.peers.python_methods` (sequential loop,
article approaches 1-3, joblib, parfill with each schedule), checking each
result against the ``numpy.ndindex`` reference. Then the fixed cost: 1,000
cheap elements with parfill (``backend="processes"`` and ``"auto"``) vs
``multiprocessing.Pool.map``, median of 50 runs.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
from typing import Any

import numpy as np

from .harness import Entry, Result, compare
from .peers import Method, parfill_available, python_methods
from .workloads import CALIBRATION, Workload, python_workloads

DESCRIPTION = ("Python callables: sequential loop vs the article's three approaches vs "
               "joblib vs parfill (static/dynamic/guided), plus the fixed cost per call")

SUITE = "python"
FIXED_COST = "fixed-cost"
FIXED_N = 1000
#: Workloads left out of --plot (speedups of a 0.1 ms job say little).
PLOT_EXCLUDE = (FIXED_COST,)

NOTES = """\
notes: median of the timed runs; speedup = sequential median / median; vs best peer =
  best of (article 1-3, joblib) / median, > 1 means faster than every peer; peak MiB =
  peak PSS of this process and all its children during one extra run, minus before it.
  article 3 runs on an evenly strided sample when n is large ('~' times, scaled
  linearly). joblib's timed runs reuse its warm worker pool; its memory is measured
  cold. fixed-cost: 1,000 cheap elements, one call each, pools created inside the call."""

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


def json_extra() -> dict[str, Any]:
    return {"calibration": dict(CALIBRATION)}


#: The names --only takes (the harness adds the option).
WORKLOADS = [w.name for w in python_workloads(quick=True)] + [FIXED_COST]


def _check(w: Workload, reference: np.ndarray, stride: int) -> Any:
    if stride == 1:
        return lambda out: out.shape == reference.shape and out.dtype == reference.dtype \
            and np.array_equal(out, reference)
    flat_ref = reference.reshape(-1)[::stride]
    return lambda out: out.shape == reference.shape and \
        np.array_equal(out.reshape(-1)[::stride], flat_ref)


def run_workload(w: Workload, methods: list[Method], workers: int, repeat: int,
                 suite: str = SUITE) -> list[Result]:
    """Time every method on one workload (runs interleaved, each checked)."""
    DESCRIPTIONS[w.name] = w.describe()
    reference = w.reference()
    entries = []
    for m in methods:
        stride = m.stride(w) if m.stride else 1
        n_run = len(range(0, w.size, stride)) if stride > 1 else None
        entries.append(Entry(Result(suite, w.name, m.label, m.role, w.size, workers, n_run=n_run),
                             lambda m=m: m.call(w, workers), _check(w, reference, stride),
                             m.cold))
    return compare(entries, repeat=repeat)


# ---------------------------------------------------------------------------
# Fixed cost per call.

def cheap_element(i: int) -> float:
    """A nearly free element (module level, so ``Pool.map`` can pickle it)."""
    return i * 0.5


def _pool_map(n: int, workers: int) -> np.ndarray:
    with mp.get_context("fork").Pool(workers) as pool:
        values = pool.map(cheap_element, range(n))
    out = np.empty(n, dtype=np.float64)
    out[:] = values
    return out


def _sequential_cheap(n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = cheap_element(i)
    return out


def fixed_cost(workers: int, runs: int, suite: str = SUITE) -> list[Result]:
    """1,000 cheap elements: parfill processes/auto vs ``multiprocessing.Pool.map``."""
    DESCRIPTIONS[FIXED_COST] = (f"{FIXED_COST}: {FIXED_N:,} cheap elements per call, "
                                 f"median of {runs} calls")
    reference = _sequential_cheap(FIXED_N)

    def check(out: np.ndarray) -> bool:
        return np.array_equal(out, reference)

    def parfill_call(backend: str):
        def call() -> np.ndarray:
            import parfill

            return parfill.populate(cheap_element, FIXED_N, np.float64,
                                    workers=workers, backend=backend)
        return call

    rows = [
        ("sequential loop", "sequential", lambda: _sequential_cheap(FIXED_N)),
        ("multiprocessing Pool.map", "peer", lambda: _pool_map(FIXED_N, workers)),
        ("parfill backend=processes", "parfill", parfill_call("processes")),
        ("parfill backend=auto", "parfill", parfill_call("auto")),
    ]
    return compare([Entry(Result(suite, FIXED_COST, label, role, FIXED_N, workers), fn, check)
                    for label, role, fn in rows], repeat=runs, memory=False)


def run(args: argparse.Namespace) -> list[Result]:
    """Run the suite with the harness's common options (and ``--only``)."""
    only = set(getattr(args, "only", None) or [])
    workers = args.workers
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    methods = python_methods(queue_max=2_000 if args.quick else 20_000)
    if not parfill_available():
        print("bench: parfill.populate is not available; its rows will show errors")
    results: list[Result] = []
    for w in python_workloads(quick=args.quick):
        if only and w.name not in only:
            continue
        results.extend(run_workload(w, methods, workers, repeat))
    if not only or FIXED_COST in only:
        results.extend(fixed_cost(workers, 5 if args.quick else 50))
    return results
