"""Suite "translate": plain Python functions translated into the native VM (issue 11).

Workloads (every output allocated once, outside the timed runs):

* ``article`` -- the article's ``lambda i: (start + i) * base**2`` (start = 3,
  base = 2.0), n = 2*10**6 and 2*10**7 float64.
* ``trig-2d`` -- ``lambda i, j: math.sin(i*a)*math.cos(j*b) + math.sqrt(i+j)``,
  2000 x 2000 float64 (sin(i*a) is computed once per row, cos(j*b) once per
  column and worker: the VM's hoisting and row cache).
* ``trig-mixed`` -- ``lambda i, j: math.sin(i*a + j*b) * math.cos(i*b - j*a)``,
  2000 x 2000 float64: no term in one index alone, two libm calls per element.
* ``piecewise`` -- if/elif/else on i (three float formulas), 2*10**6 float64.
* ``int`` -- ``(i * 7 + 3) % 1000 - i // 3``, 2*10**6 int64.
* ``mandelbrot`` -- the demo's per-pixel ``pixel(i, j)`` (complex numbers, a
  ``for``/``range`` loop with an early return; issue 12), 900 x 1200 uint8,
  200 iterations.
* ``mandelbrot`` also runs issue 12's case: 400 x 600 at 256 iterations.
* ``loops`` -- issue 12's other loops: a Newton iteration (the cube root of
  1 + i/1000, until the step is below 1e-12 of x; 10**6 float64), Collatz
  step counts of i + 1 (3*10**5 int64), an alternating series (the first
  i % 1000 terms of 1 - 1/3 + 1/5 - ...; 5*10**4 float64).
* ``translate-cost`` -- ``parfill.translate`` of a 5-line function: first
  (a fresh code object each call) and cached.

Methods: the sequential loop (the speedup baseline; on a stride-sampled
subset at the large sizes, times scaled), ``populate(f, backend="processes",
translate="never")`` (sampled at 2*10**7), ``populate(f, translate="always")``,
the hand-written expression string, numba ``njit(parallel=True)`` with
``prange`` warm and on its first call (compile included: a new dispatcher per
run), numexpr. Checks: translated and processes results equal the sequential
loop's bit for bit; numba, numexpr and expression strings (libmvec / SVML)
within 8 ulp.
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .harness import Entry, Result, compare

DESCRIPTION = ("Translated Python functions vs processes, expression strings, numba and "
               "numexpr (article, 2-d trig, piecewise, int; translation cost)")
SUITE = "translate"
COST = "translate-cost"
PLOT_EXCLUDE = (COST,)
NOTES = """\
notes: median of the timed runs; speedup = sequential loop median / median (~: measured on
  a stride sample and scaled). "numba first call" compiles a new dispatcher in every run.
  Targets (issue 11): article n=2e6 translated >= 30x processes; n=2e7 >= 0.8x the
  expression string; trig-2d >= 0.8x numba prange warm and >= 5x numba's first call.
  Targets (issue 12): mandelbrot 400x600/256 translated >= 1.0x numba prange warm and >= 50x
  processes."""

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


#: The names --only takes (the harness adds the option).
WORKLOADS = ["article", "trig-2d", "trig-mixed", "piecewise", "int", "mandelbrot", "loops", COST]


def _exact(reference: np.ndarray) -> Callable[[Any], bool]:
    return lambda out: bool(np.array_equal(out, reference))


def _close(reference: np.ndarray) -> Callable[[Any], bool]:
    return lambda out: bool(np.allclose(out, reference, rtol=2e-15, atol=1e-300))


def _sampled(reference: np.ndarray, stride: int) -> Callable[[Any], bool]:
    flat = reference.reshape(-1)[::stride]
    return lambda out: bool(np.array_equal(out.reshape(-1)[::stride], flat))


def _sequential(f: Callable[..., Any], out: np.ndarray, stride: int) -> Callable[[], Any]:
    """The loop a user writes (on every stride-th flat index)."""
    def loop() -> np.ndarray:
        flat = out.reshape(-1)
        if out.ndim == 1:
            for k in range(0, out.size, stride):
                flat[k] = f(k)
        else:
            cols = out.shape[1]
            for k in range(0, out.size, stride):
                flat[k] = f(*divmod(k, cols))
        return out
    return loop


def _reference(f: Callable[..., Any], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if len(shape) == 1:
        return np.fromiter(map(f, range(shape[0])), dtype, shape[0])
    ref = np.empty(shape, dtype)
    for i in range(shape[0]):
        ref[i] = [f(i, j) for j in range(shape[1])]
    return ref


def _populate(f: Any, out: np.ndarray, workers: int, **kw: Any) -> Callable[[], Any]:
    import parfill
    return lambda: parfill.populate(f, out=out, workers=workers, **kw)


def _numba(py: Callable[..., None], out: np.ndarray, workers: int, *args: Any):
    import numba
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    warm = numba.njit(parallel=True)(py)
    warm(out, *args)  # compiled outside the timed runs

    def first_call() -> np.ndarray:
        numba.njit(parallel=True)(py)(out, *args)
        return out
    return (lambda: (warm(out, *args), out)[1]), first_call


def _workload(name: str, f: Callable[..., Any], shape: tuple[int, ...], dtype: Any,
              workers: int, repeat: int, *, expr: tuple[str, dict] | None,
              numba_fn: tuple[Callable[..., None], tuple] | None,
              numexpr_fn: Callable[[], Any] | None, processes: bool,
              stride: int) -> list[Result]:
    out = np.zeros(shape, dtype)
    size = out.size
    ref = _reference(f, shape, dtype)
    n_run = len(range(0, size, stride)) if stride > 1 else None
    rows: list[tuple[str, str, Callable[[], Any], Callable[[Any], bool], int | None]] = [
        ("sequential loop", "sequential", _sequential(f, out, stride),
         _sampled(ref, stride), n_run)]
    if processes:
        rows.append(("processes, translate=never", "peer",
                     _populate(f, out, workers, backend="processes", translate="never"),
                     _exact(ref), None))
    rows.append(("parfill translated", "parfill",
                 _populate(f, out, workers, translate="always"), _exact(ref), None))
    if expr is not None:
        rows.append((f"expression {expr[0]!r}", "other",
                     _populate(expr[0], out, workers, params=expr[1]), _close(ref), None))
    if numba_fn is not None:
        warm, first = _numba(numba_fn[0], out, workers, *numba_fn[1])
        rows.append(("numba prange (warm)", "peer", warm, _close(ref), None))
        rows.append(("numba first call", "peer", first, _close(ref), None))
    if numexpr_fn is not None:
        rows.append(("numexpr", "peer", numexpr_fn(out), _close(ref), None))
    entries = [Entry(Result(SUITE, name, label, role, size, workers, n_run=nr), fn, check)
               for label, role, fn, check, nr in rows]
    return compare(entries, repeat=repeat)


# --------------------------------------------------------------- numba kernels

try:  # numba resolves prange from the kernels' globals
    from numba import prange
except ImportError:  # the peer rows become error rows
    prange = range

def _nb_article(out, start, base):
    for k in prange(out.size):
        out[k] = (start + k) * base ** 2


def _nb_trig(out, a, b):
    rows, cols = out.shape
    for i in prange(rows):
        for j in range(cols):
            out[i, j] = math.sin(i * a) * math.cos(j * b) + math.sqrt(i + j)


def _nb_trig_mixed(out, a, b):
    rows, cols = out.shape
    for i in prange(rows):
        for j in range(cols):
            out[i, j] = math.sin(i * a + j * b) * math.cos(i * b - j * a)


def _nb_piecewise(out, n3):
    for k in prange(out.size):
        if k < n3:
            out[k] = k * 0.5
        elif k < 2 * n3:
            out[k] = math.sqrt(k) * 3.0
        else:
            out[k] = 1.0 - k * 0.25


def _nb_int(out):
    for k in prange(out.size):
        out[k] = (k * 7 + 3) % 1000 - k // 3


def _nb_mandel(out, x0, y0, dx, dy, max_iter):
    # The demo's pixel(i, j), statement for statement.
    for i in prange(out.shape[0]):
        for j in range(out.shape[1]):
            c = complex(x0 + (j + 0.5) * dx, y0 + (i + 0.5) * dy)
            z = 0j
            r = max_iter
            for n in range(max_iter):
                z = z * z + c
                if abs(z) > 2.0:
                    r = n
                    break
            out[i, j] = r


def _nb_newton(out):
    for k in prange(out.size):
        a = 1.0 + k * 1e-3
        x = a
        for n in range(100):
            dx = (x * x * x - a) / (3.0 * x * x)
            x -= dx
            if abs(dx) < 1e-12 * x:
                break
        out[k] = x


def _nb_collatz(out):
    for k in prange(out.size):
        n, s = k + 1, 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            s += 1
        out[k] = s


def _nb_series(out):
    for k in prange(out.size):
        s, sign = 0.0, 1.0
        for t in range(k % 1000):
            s += sign / (2 * t + 1)
            sign = -sign
        out[k] = s


def _numexpr(text: str, workers: int, **arrays: Any) -> Callable[[np.ndarray], Callable]:
    def make(out: np.ndarray) -> Callable[[], Any]:
        import numexpr
        numexpr.set_num_threads(workers)
        return lambda: numexpr.evaluate(text, local_dict=arrays, out=out)
    return make


# ------------------------------------------------------------------ workloads

def article(n: int, workers: int, repeat: int, stride: int) -> list[Result]:
    start, base = 3, 2.0
    f = lambda i: (start + i) * base**2  # noqa: E731
    name = f"article-{n:.0e}".replace("+0", "")
    DESCRIPTIONS[name] = f"{name}: lambda i: (start + i) * base**2, n={n:,} float64"
    i = np.arange(n)
    return _workload(name, f, (n,), np.float64, workers, repeat,
                     expr=("(start + i) * base**2", {"start": start, "base": base}),
                     numba_fn=(_nb_article, (start, base)),
                     numexpr_fn=_numexpr("(start + i) * base**2", workers, i=i,
                                         start=start, base=base),
                     processes=n <= 2 * 10**6, stride=stride)


# The 2-d trig workloads: (the lambda's text, the expression string, the
# numba kernel). trig-mixed has no term in one index alone: two libm calls
# per element, nothing hoisted or row-cached (what trig-2d would cost
# without them).
TRIG = {
    "trig-2d": ("math.sin(i*a)*math.cos(j*b) + math.sqrt(i+j)",
                "sin(i*a)*cos(j*b) + sqrt(i+j)", _nb_trig),
    "trig-mixed": ("math.sin(i*a + j*b) * math.cos(i*b - j*a)",
                   "sin(i*a + j*b) * cos(i*b - j*a)", _nb_trig_mixed),
}


def trig(name: str, rows: int, workers: int, repeat: int, stride: int) -> list[Result]:
    a, b = 0.001, 0.002
    text, expr, nb = TRIG[name]
    f = eval(f"lambda i, j: {text}", {"math": math, "a": a, "b": b})
    DESCRIPTIONS[name] = f"{name}: lambda i, j: {text}, {rows}x{rows} float64"
    ii, jj = np.arange(rows)[:, None], np.arange(rows)[None, :]
    return _workload(name, f, (rows, rows), np.float64, workers, repeat,
                     expr=(expr, {"a": a, "b": b}), numba_fn=(nb, (a, b)),
                     numexpr_fn=_numexpr(expr, workers, i=ii, j=jj, a=a, b=b),
                     processes=False, stride=stride)


def piecewise(n: int, workers: int, repeat: int, stride: int) -> list[Result]:
    n3 = n // 3

    def f(i):
        if i < n3:
            return i * 0.5
        elif i < 2 * n3:
            return math.sqrt(i) * 3.0
        else:
            return 1.0 - i * 0.25
    DESCRIPTIONS["piecewise"] = f"piecewise: if/elif/else on i, n={n:,} float64"
    text = "where(i < third, i * 0.5, where(i < 2 * third, sqrt(i) * 3.0, 1.0 - i * 0.25))"
    i = np.arange(n)
    return _workload("piecewise", f, (n,), np.float64, workers, repeat,
                     expr=(text, {"third": n3}), numba_fn=(_nb_piecewise, (n3,)),
                     numexpr_fn=_numexpr(text, workers, i=i, third=n3),
                     processes=False, stride=stride)


def int_formula(n: int, workers: int, repeat: int, stride: int) -> list[Result]:
    f = lambda i: (i * 7 + 3) % 1000 - i // 3  # noqa: E731
    DESCRIPTIONS["int"] = f"int: lambda i: (i * 7 + 3) % 1000 - i // 3, n={n:,} int64"
    return _workload("int", f, (n,), np.int64, workers, repeat,
                     expr=("(i * 7 + 3) % 1000 - i // 3", {}), numba_fn=(_nb_int, ()),
                     numexpr_fn=None, processes=False, stride=stride)


def mandelbrot(height: int, width: int, max_iter: int, workers: int, repeat: int,
               stride: int) -> list[Result]:
    from parfill.demo import make_mandelbrot
    f = make_mandelbrot(width, height, max_iter)
    name = f"mandelbrot-{height}x{width}-{max_iter}"
    DESCRIPTIONS[name] = (f"{name}: the demo's pixel(i, j) (complex, a loop of up to "
                          f"{max_iter}), {height}x{width} {'uint8' if max_iter < 256 else 'int16'}")
    x0, y0 = -2.2, -1.2
    dx, dy = (1.0 - x0) / width, (1.2 - y0) / height
    return _workload(name, f, (height, width), np.uint8 if max_iter < 256 else np.int16,
                     workers, repeat, expr=None,
                     numba_fn=(_nb_mandel, (x0, y0, dx, dy, max_iter)),
                     numexpr_fn=None, processes=True, stride=stride)


def newton(i):
    a = 1.0 + i * 1e-3
    x = a
    for n in range(100):
        dx = (x * x * x - a) / (3.0 * x * x)
        x -= dx
        if abs(dx) < 1e-12 * x:
            return x
    return x


def collatz(i):
    n, s = i + 1, 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        s += 1
    return s


def series(i):
    s, sign = 0.0, 1.0
    for k in range(i % 1000):
        s += sign / (2 * k + 1)
        sign = -sign
    return s


def loops(scale: float, workers: int, repeat: int, stride: int) -> list[Result]:
    results = []
    for name, f, n, dtype, nb, text in (
            ("newton", newton, 10**6, np.float64, _nb_newton,
             "Newton's cube root of 1 + i/1000 (up to 100 steps)"),
            ("collatz", collatz, 3 * 10**5, np.int64, _nb_collatz,
             "Collatz steps of i + 1 (a while loop)"),
            ("series", series, 5 * 10**4, np.float64, _nb_series,
             "the first i % 1000 terms of 1 - 1/3 + 1/5 - ...")):
        n = max(1000, int(n * scale))
        DESCRIPTIONS[name] = f"{name}: {text}, n={n:,} {np.dtype(dtype).name}"
        results += _workload(name, f, (n,), dtype, workers, repeat, expr=None,
                             numba_fn=(nb, ()), numexpr_fn=None, processes=True,
                             stride=stride)
    return results


FIVE_LINES = """\
def f(i, j):
    x = i * 0.5 + j
    if x > 10.0:
        x = math.sqrt(x)
    y = x * x - i // 3
    return y + 1.0
"""


def translate_cost(workers: int, runs: int) -> list[Result]:
    import parfill
    DESCRIPTIONS[COST] = "translate-cost: parfill.translate of a 5-line function, per call"
    calls = 100
    namespace: dict[str, Any] = {"math": math}
    exec(FIVE_LINES, namespace)
    cached = namespace["f"]
    parfill.translate(cached, 2)

    def first() -> Any:
        kernels = []
        for _ in range(calls):
            ns: dict[str, Any] = {"math": math}
            exec(compile(FIVE_LINES, f"<bench {time.perf_counter_ns()}>", "exec"), ns)
            t0 = time.perf_counter()
            kernels.append(parfill.translate(ns["f"], 2))
            first.elapsed += time.perf_counter() - t0  # type: ignore[attr-defined]
        return kernels

    def first_timed() -> Any:
        first.elapsed = 0.0  # type: ignore[attr-defined]
        first()
        return first.elapsed  # type: ignore[attr-defined]

    results = []
    for label, fn in (("first translation", first_timed),
                      ("cached", lambda: [parfill.translate(cached, 2) for _ in range(calls)])):
        r = Result(SUITE, COST, label, "parfill", 1, workers)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            got = fn()
            wall = time.perf_counter() - t0
            times.append((got if isinstance(got, float) else wall) / calls)
        r.times, r.correct = times, True
        r.median = sorted(times)[len(times) // 2]
        results.append(r)
    return results


def run(args: argparse.Namespace) -> list[Result]:
    only = set(getattr(args, "only", None) or [])
    workers = args.workers
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    small, big, rows = (10**5, 10**6, 300) if args.quick else (2 * 10**6, 2 * 10**7, 2000)
    results: list[Result] = []
    if not only or "article" in only:
        results += article(small, workers, repeat, 1)
        results += article(big, workers, repeat, 10)
    for name in TRIG:
        if not only or name in only:
            results += trig(name, rows, workers, repeat, 1 if args.quick else 4)
    if not only or "piecewise" in only:
        results += piecewise(small, workers, repeat, 1)
    if not only or "int" in only:
        results += int_formula(small, workers, repeat, 1)
    if not only or "mandelbrot" in only:
        if args.quick:
            results += mandelbrot(90, 120, 200, workers, repeat, 1)
        else:
            results += mandelbrot(900, 1200, 200, workers, repeat, 20)
            results += mandelbrot(400, 600, 256, workers, repeat, 10)
    if not only or "loops" in only:
        results += loops(0.01 if args.quick else 1.0, workers, repeat,
                         1 if args.quick else 10)
    if not only or COST in only:
        results += translate_cost(workers, 3 if args.quick else 7)
    return results
