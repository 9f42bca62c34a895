"""Benchmark workloads: element functions with known shapes, dtypes and costs.

Each :class:`Workload` has a name, a shape, a dtype and an element function
called the way ``parfill.populate`` calls it -- ``f(i)`` for a 1-D shape,
``f(i, j)`` for 2-D -- plus the sequential reference of SPEC section 2::

    for idx in numpy.ndindex(shape):
        a[idx] = f(*idx)

The four workloads of the "python" suite:

``article``     the article's element, ``i * b**2`` with ``b = 2.0``; n = 10**6.
                Almost free per element: measures pure overhead.
``uniform``     ~15 microseconds of pure-Python work per element; n = 2*10**4.
``linear``      cost growing linearly with the index, from 0 at ``i = 0`` to
                ~30 us (twice the mean) at the end; same total as ``uniform``.
                Static partitions are unbalanced here.
``mandelbrot``  escape-time iteration per pixel, 800x600, at most 200
                iterations; cost varies strongly between pixels.

The busy loop behind ``uniform`` and ``linear`` is calibrated once at import so
that one ``uniform`` element costs ~15 us on the machine at hand;
:data:`CALIBRATION` records the result. The element *values* never depend on
the calibration (only the time spent does), so processes that re-import this
module (joblib's loky workers) compute identical results.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The demo's pixel function, shared so the benchmark and the demo time the same work.
from parfill.demo import make_mandelbrot

__all__ = [
    "CALIBRATION",
    "Workload",
    "article_workload",
    "linear_workload",
    "make_mandelbrot",
    "mandelbrot_workload",
    "python_workloads",
    "uniform_workload",
]

#: Target cost of one ``uniform`` element, in microseconds.
TARGET_US = 15.0


def _spin(iterations: int) -> int:
    """Pure-Python busy work: ``iterations`` trips of an interpreted loop."""
    x = 0
    for _ in range(iterations):
        x += 1
    return x


def _time_spin(iterations: int, calls: int = 100, batches: int = 5) -> float:
    """Seconds per ``_spin(iterations)`` call: the best of a few batches."""
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(calls):
            _spin(iterations)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def _calibrate(target_us: float = TARGET_US) -> dict[str, float]:
    # Refine a few times: the first measurements run on a cold interpreter and,
    # sometimes, a CPU still clocking up. ~20 ms in all.
    iters = 300
    for _ in range(3):
        per_call = _time_spin(iters)
        iters = max(1, round(iters * target_us * 1e-6 / per_call))
    measured = _time_spin(iters)
    return {"target_us": target_us, "iterations": iters,
            "ns_per_iteration": round(measured / iters * 1e9, 3),
            "measured_us": round(measured * 1e6, 3)}


#: How the busy loop was calibrated at import: ``target_us``, ``iterations``
#: (trips of the loop per ``uniform`` element), ``ns_per_iteration`` and
#: ``measured_us`` (the cost of one element's loop, measured after calibrating).
CALIBRATION: dict[str, float] = _calibrate()


@dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    ``func`` takes one Python int per axis of ``shape``. ``flat_func`` is the
    same function of the flat C-order index, for methods that only know a 1-D
    range (the article's approaches, joblib chunks).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    func: Callable[..., Any]
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def flat_func(self) -> Callable[[int], Any]:
        return flat_function(self.func, self.shape)

    def reference(self) -> np.ndarray:
        """The sequential reference: ``a[idx] = f(*idx)`` over ``numpy.ndindex``."""
        a = np.empty(self.shape, dtype=self.dtype)
        f = self.func
        for idx in np.ndindex(self.shape):
            a[idx] = f(*idx)
        return a

    def sequential(self) -> np.ndarray:
        """The plain sequential loop a user would write, timed as the baseline.

        ``for i in range(n): a[i] = f(i)`` for 1-D and the nested ``range`` loops
        for 2-D (faster than ``numpy.ndindex``, so speedups are not flattered);
        the same values as :meth:`reference`.
        """
        a = np.empty(self.shape, dtype=self.dtype)
        f = self.func
        if len(self.shape) == 1:
            for i in range(self.shape[0]):
                a[i] = f(i)
        elif len(self.shape) == 2:
            rows, cols = self.shape
            for i in range(rows):
                for j in range(cols):
                    a[i, j] = f(i, j)
        else:
            for idx in np.ndindex(self.shape):
                a[idx] = f(*idx)
        return a

    def describe(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        return f"{self.name}: shape {dims} {self.dtype.name}, n={self.size:,}" + (
            f" -- {self.description}" if self.description else "")


def flat_function(func: Callable[..., Any], shape: tuple[int, ...]) -> Callable[[int], Any]:
    """``func`` of N indices as a function of the flat C-order index."""
    if len(shape) == 1:
        return func
    if len(shape) == 2:
        cols = shape[1]

        def flat2(k: int) -> Any:
            i, j = divmod(k, cols)
            return func(i, j)
        return flat2
    dims = tuple(reversed(shape[1:]))

    def flatn(k: int) -> Any:
        idx = []
        for d in dims:
            k, r = divmod(k, d)
            idx.append(r)
        idx.append(k)
        return func(*reversed(idx))
    return flatn


# ---------------------------------------------------------------------------
# The element functions. Closures are fine: every parallel method here either
# forks (article approaches, parfill) or pickles with cloudpickle (joblib).

def article_workload(n: int = 10**6, base_value: float = 2.0) -> Workload:
    """(a) The article's element: ``i * base_value**2``."""
    b = base_value

    def article_element(i: int) -> float:
        return i * b**2
    return Workload("article", (n,), np.dtype(np.float64), article_element,
                    "the article's i * b**2, b = 2.0", {"base_value": b})


def uniform_workload(n: int = 2 * 10**4, iterations: int | None = None) -> Workload:
    """(b) ~15 us (calibrated) of pure-Python work per element, the same for all."""
    iters = int(CALIBRATION["iterations"] if iterations is None else iterations)

    def uniform_element(i: int) -> float:
        _spin(iters)
        return i * 0.5
    return Workload("uniform", (n,), np.dtype(np.float64), uniform_element,
                    f"~{CALIBRATION['target_us']:g} us of Python per element "
                    f"({iters} loop trips)", {"iterations": iters})


def linear_workload(n: int = 2 * 10**4, iterations: int | None = None) -> Workload:
    """(c) Cost linear in the index: 0 at ``i = 0`` up to twice ``uniform``'s."""
    iters = int(CALIBRATION["iterations"] if iterations is None else iterations)
    last = max(n - 1, 1)
    top = 2 * iters

    def linear_element(i: int) -> float:
        _spin(top * i // last)
        return i * 0.5
    return Workload("linear", (n,), np.dtype(np.float64), linear_element,
                    f"cost 0..{2 * CALIBRATION['target_us']:g} us growing with i "
                    f"(0..{top} loop trips)", {"iterations": iters})


def mandelbrot_workload(width: int = 800, height: int = 600, max_iter: int = 200) -> Workload:
    """(d) Mandelbrot escape time per pixel, ``height x width`` (rows x columns)."""
    dtype = np.dtype(np.uint8 if max_iter <= 255 else np.uint16)
    return Workload("mandelbrot", (height, width), dtype,
                    make_mandelbrot(width, height, max_iter),
                    f"escape time, max {max_iter} iterations",
                    {"width": width, "height": height, "max_iter": max_iter})


def python_workloads(quick: bool = False) -> list[Workload]:
    """The four workloads of the "python" suite; ``quick`` shrinks them ~100x."""
    if quick:
        return [article_workload(20_000), uniform_workload(400), linear_workload(400),
                mandelbrot_workload(80, 60, 100)]
    return [article_workload(), uniform_workload(), linear_workload(), mandelbrot_workload()]
