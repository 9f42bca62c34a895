"""Suite "expr": expressions, parfill vs NumPy vs numexpr vs numba.

Every workload fills an existing output array (allocated once, outside the
timed runs), so the times are the work of populating it:

* ``article`` -- the article's ``i * b**2`` (b = 2.0), 10**8 float64: pure
  memory bandwidth. ``out.fill(1.0)`` is shown as the floor (role "other").
* ``sin-exp`` -- ``sin(i*1e-3) * exp(-i*1e-9)``, 10**8 float64: compute bound.
* ``disk-2d`` -- a 6000 x 8000 float32 image, ``where((i - 3000)**2 + (j -
  4000)**2 < r2, sin(i*0.01) * cos(j*0.01), -1.0)``: two index variables, a
  branch and a cast.
* ``fixed-cost`` -- ``i * 0.5`` on 1,000 elements, end to end from Python:
  what one small call costs.
* ``compile`` -- a 100-character expression compiled and evaluated on one
  element (parfill compiles on every call; numexpr's compiler is timed with
  ``numexpr.NumExpr``).

Methods: NumPy (one thread; the speedup baseline, written as a user would:
``np.arange`` then ufuncs with ``out=``), numexpr (its index array is made
outside the timed runs, which favours it), numba (``@njit(parallel=True)``
with ``prange``, compiled during the untimed first run), and parfill
(``parfill.populate(text, out=out, workers=W)``, dynamic and static).

Checks: equality with the NumPy result for exact workloads; within 8 ulp
(relative 2e-15) where transcendental functions are involved -- libm, SVML
and libmvec each round within a few ulp; float32 images within 1e-6.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from .harness import Entry, Result, compare

DESCRIPTION = ("Expressions: NumPy vs numexpr vs numba prange vs parfill (article i*b**2, "
               "sin*exp, 2-d where, 1,000-element calls, compile time)")

SUITE = "expr"
FIXED_COST = "fixed-cost"
COMPILE = "compile"
#: Workloads left out of --plot (single calls: speedups say little).
PLOT_EXCLUDE = (FIXED_COST, COMPILE)

COMPILE_TEXT = ("sin(i * 1e-3) * exp(-i * 1e-9) + where(i > 5000, sqrt(i + 1.5), "
                "cos(i * a)) - arctan2(i, 7.0) / b")

NOTES = """\
notes: median of the timed runs; speedup = NumPy median / median; vs best peer = best of
  (numexpr, numba) / median, > 1 means faster than both; peak MiB = peak PSS during one
  extra run, minus before it. Outputs are allocated before the runs. numexpr gets its
  index arrays precomputed (untimed); numba compiles in the untimed first run.
  article: out.fill(1.0) is the memory-bandwidth floor (role "other").
  fixed-cost / compile: times per call (runs of 100 calls back to back)."""

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


#: The names --only takes (the harness adds the option).
WORKLOADS = ["article", "sin-exp", "disk-2d", FIXED_COST, COMPILE]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=None,
                        help="elements of the 1-d workloads (default 10**8; --quick 10**6)")


# ---------------------------------------------------------------- checks

def _exact(reference: np.ndarray) -> Callable[[Any], bool]:
    return lambda out: out.dtype == reference.dtype and np.array_equal(out, reference)


def _close(reference: np.ndarray, rtol: float) -> Callable[[Any], bool]:
    def check(out: np.ndarray) -> bool:
        if out.dtype != reference.dtype or out.shape != reference.shape:
            return False
        return bool(np.allclose(out, reference, rtol=rtol, atol=1e-300, equal_nan=True))
    return check


# ------------------------------------------------------------ peers

_THREADS: dict[str, int] = {}


def _numexpr(workers: int):
    import numexpr

    # Set once per change: set_num_threads itself costs more than a small call.
    if _THREADS.get("numexpr") != workers:
        numexpr.set_num_threads(workers)
        _THREADS["numexpr"] = workers
    return numexpr


def _numba_kernels() -> dict[str, Callable[..., None]]:
    """The numba versions, compiled on first use (each is one prange loop)."""
    import numba

    @numba.njit(parallel=True)
    def article(out, b):
        for k in numba.prange(out.size):
            out[k] = k * b ** 2

    @numba.njit(parallel=True)
    def sin_exp(out):
        for k in numba.prange(out.size):
            # k * -1e-9: prange's index may be unsigned, so no -k.
            out[k] = np.sin(k * 1e-3) * np.exp(k * -1e-9)

    @numba.njit(parallel=True)
    def disk(out, r2):
        rows, cols = out.shape
        for i in numba.prange(rows):
            for j in range(cols):
                if (i - rows // 2) ** 2 + (j - cols // 2) ** 2 < r2:
                    out[i, j] = np.sin(i * 0.01) * np.cos(j * 0.01)
                else:
                    out[i, j] = -1.0

    @numba.njit(parallel=True)
    def half(out):
        for k in numba.prange(out.size):
            out[k] = k * 0.5

    return {"article": article, "sin-exp": sin_exp, "disk-2d": disk, FIXED_COST: half}


_NUMBA: dict[str, Callable[..., None]] = {}


def _numba(name: str, workers: int) -> Callable[..., None]:
    import numba

    if not _NUMBA:
        _NUMBA.update(_numba_kernels())
    if _THREADS.get("numba") != workers:
        numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
        _THREADS["numba"] = workers
    return _NUMBA[name]


def _parfill(text: str, out: np.ndarray, workers: int, schedule: str = "dynamic",
             params: dict[str, Any] | None = None) -> np.ndarray:
    import parfill

    return parfill.populate(text, out=out, workers=workers, schedule=schedule,
                            params=params)


# ------------------------------------------------------------ workloads

def _entries(workload: str, n: int, workers: int, check: Callable[[Any], bool],
             methods: list[tuple[str, str, Callable[[], Any]]]) -> list[Entry]:
    return [Entry(Result(SUITE, workload, label, role, n, workers), fn, check)
            for label, role, fn in methods]


def article(n: int, workers: int, repeat: int) -> list[Result]:
    b = 2.0
    DESCRIPTIONS["article"] = f"article: i * b**2, b = {b}, n={n:,} float64"
    out = np.empty(n)
    out.fill(0.0)  # touch the pages before any run
    i = np.arange(n)
    reference = i * b ** 2

    def numpy_method() -> np.ndarray:
        return np.multiply(np.arange(n), b ** 2, out=out)

    def fill() -> np.ndarray:
        out.fill(1.0)
        return reference  # the floor computes nothing to check

    methods = [
        ("NumPy (1 thread)", "sequential", numpy_method),
        ("out.fill(1.0) (floor)", "other", fill),
        ("numexpr", "peer", lambda: _numexpr(workers).evaluate(
            "i * b ** 2", local_dict={"i": i, "b": b}, out=out)),
        ("numba prange", "peer", lambda: (_numba("article", workers)(out, b), out)[1]),
        ("parfill dynamic", "parfill", lambda: _parfill("i * b**2", out, workers,
                                                         params={"b": b})),
        ("parfill static", "parfill", lambda: _parfill("i * b**2", out, workers, "static",
                                                        params={"b": b})),
    ]
    return compare(_entries("article", n, workers, _exact(reference), methods), repeat=repeat)


def sin_exp(n: int, workers: int, repeat: int) -> list[Result]:
    text = "sin(i*1e-3)*exp(-i*1e-9)"
    DESCRIPTIONS["sin-exp"] = f"sin-exp: {text}, n={n:,} float64"
    out = np.empty(n)
    out.fill(0.0)
    i = np.arange(n)

    def numpy_method() -> np.ndarray:
        k = np.arange(n)
        np.sin(k * 1e-3, out=out)
        return np.multiply(out, np.exp(k * -1e-9), out=out)

    reference = numpy_method().copy()
    methods = [
        ("NumPy (1 thread)", "sequential", numpy_method),
        ("numexpr", "peer", lambda: _numexpr(workers).evaluate(
            text, local_dict={"i": i}, out=out)),
        ("numba prange", "peer", lambda: (_numba("sin-exp", workers)(out), out)[1]),
        ("parfill dynamic", "parfill", lambda: _parfill(text, out, workers)),
        ("parfill static", "parfill", lambda: _parfill(text, out, workers, "static")),
    ]
    return compare(_entries("sin-exp", n, workers, _close(reference, 2e-15), methods),
                   repeat=repeat)


def disk_2d(shape: tuple[int, int], workers: int, repeat: int) -> list[Result]:
    rows, cols = shape
    r2 = (min(rows, cols) * 0.4) ** 2
    text = (f"where((i - {rows // 2})**2 + (j - {cols // 2})**2 < r2, "
            f"sin(i*0.01) * cos(j*0.01), -1.0)")
    DESCRIPTIONS["disk-2d"] = f"disk-2d: {text}, shape {rows}x{cols} float32"
    out = np.empty(shape, np.float32)
    out.fill(0.0)
    ii = np.arange(rows)[:, None]
    jj = np.arange(cols)[None, :]

    def numpy_method() -> np.ndarray:
        i = np.arange(rows)[:, None]
        j = np.arange(cols)[None, :]
        inside = (i - rows // 2) ** 2 + (j - cols // 2) ** 2 < r2
        out[...] = np.where(inside, np.sin(i * 0.01) * np.cos(j * 0.01), -1.0)
        return out

    reference = numpy_method().copy()
    ne_text = text.replace("**2", "**2.0")  # numexpr: a float power of int arrays
    methods = [
        ("NumPy (1 thread)", "sequential", numpy_method),
        ("numexpr", "peer", lambda: _numexpr(workers).evaluate(
            ne_text, local_dict={"i": ii, "j": jj, "r2": r2}, out=out,
            casting="same_kind")),
        ("numba prange", "peer", lambda: (_numba("disk-2d", workers)(out, r2), out)[1]),
        ("parfill dynamic", "parfill", lambda: _parfill(text, out, workers,
                                                         params={"r2": r2})),
    ]
    return compare(_entries("disk-2d", rows * cols, workers, _close(reference, 1e-6),
                            methods), repeat=repeat)


#: Single calls take microseconds: each timed run makes this many calls
#: back to back (the harness collects garbage before every run, which would
#: otherwise leave each call with cold caches), and times are per call.
CALLS_PER_RUN = 100


def _batched(fn: Callable[[], Any]) -> Callable[[], Any]:
    def calls() -> Any:
        for _ in range(CALLS_PER_RUN - 1):
            fn()
        return fn()
    return calls


def _per_call(results: list[Result]) -> list[Result]:
    """Turns batch times into times per call, noted in microseconds (the
    table shows ms)."""
    for r in results:
        r.times = [t / CALLS_PER_RUN for t in r.times]
        if r.median is not None:
            r.median /= CALLS_PER_RUN
            r.note = f"{r.median * 1e6:.1f} us per call"
    return results


def fixed_cost(workers: int, runs: int) -> list[Result]:
    n = 1000
    DESCRIPTIONS[FIXED_COST] = (f"{FIXED_COST}: i * 0.5 on {n:,} elements per call, "
                                 f"median of {runs} runs of {CALLS_PER_RUN} calls")
    out = np.empty(n)
    i = np.arange(n)
    reference = i * 0.5
    methods = [
        ("NumPy (1 thread)", "sequential", lambda: np.multiply(np.arange(n), 0.5, out=out)),
        ("numexpr", "peer", lambda: _numexpr(workers).evaluate(
            "i * 0.5", local_dict={"i": i}, out=out)),
        ("numba prange", "peer", lambda: (_numba(FIXED_COST, workers)(out), out)[1]),
        ("parfill", "parfill", lambda: _parfill("i * 0.5", out, workers)),
    ]
    batched = [(label, role, _batched(fn)) for label, role, fn in methods]
    return _per_call(compare(_entries(FIXED_COST, n, workers, _exact(reference), batched),
                             repeat=runs, memory=False))


def compile_cost(workers: int, runs: int) -> list[Result]:
    params = {"a": 0.5, "b": 3.0}
    DESCRIPTIONS[COMPILE] = (f"{COMPILE}: a {len(COMPILE_TEXT)}-character expression "
                              f"compiled and evaluated on 1 element per call, median of "
                              f"{runs} runs of {CALLS_PER_RUN} calls")
    out = np.empty(1)
    i = np.arange(1)

    def numpy_method() -> np.ndarray:
        ns = {"sin": np.sin, "exp": np.exp, "where": np.where, "sqrt": np.sqrt,
              "cos": np.cos, "arctan2": np.arctan2, "i": i, **params}
        out[...] = eval(COMPILE_TEXT, {"__builtins__": {}}, ns)  # noqa: S307
        return out

    def numexpr_method() -> np.ndarray:
        ne = _numexpr(workers)
        compiled = ne.NumExpr(COMPILE_TEXT, signature=[
            ("i", np.int64), ("a", np.float64), ("b", np.float64)])
        out[...] = compiled(i, params["a"], params["b"])
        return out

    reference = numpy_method().copy()
    methods = [
        ("NumPy eval (1 thread)", "sequential", numpy_method),
        ("numexpr NumExpr()", "peer", numexpr_method),
        ("parfill", "parfill", lambda: _parfill(COMPILE_TEXT, out, workers, params=params)),
    ]
    batched = [(label, role, _batched(fn)) for label, role, fn in methods]
    return _per_call(compare(_entries(COMPILE, 1, workers, _close(reference, 2e-15),
                                      batched), repeat=runs, memory=False))


def run(args: argparse.Namespace) -> list[Result]:
    """Run the suite with the harness's common options (and ``--only``, ``--n``)."""
    only = set(getattr(args, "only", None) or [])
    workers = args.workers
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    n = args.n or (10**6 if args.quick else 10**8)
    shape = (600, 800) if args.quick else (6000, 8000)
    runs = 3 if args.quick else 20
    results: list[Result] = []
    if not only or "article" in only:
        results += article(n, workers, repeat)
    if not only or "sin-exp" in only:
        results += sin_exp(n, workers, repeat)
    if not only or "disk-2d" in only:
        results += disk_2d(shape, workers, repeat)
    if not only or FIXED_COST in only:
        results += fixed_cost(workers, runs)
    if not only or COMPILE in only:
        results += compile_cost(workers, runs)
    return results
