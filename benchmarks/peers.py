"""The methods a Python-callable workload is timed with.

A :class:`Method` turns ``(workload, workers)`` into the populated array. The
roles decide the table's derived columns: ``"sequential"`` is the baseline of
the speedup column, the ``"peer"`` methods (the article's approaches and
joblib) make up the "best peer" parfill is compared with, ``"parfill"`` rows
are ours.

* sequential -- ``Workload.sequential()``: the plain ``range`` loop.
* article 1/2/3 -- :mod:`parfill._article` (shared with the demo), over the flat index.
  Approach 3 sends every element through two queues (~25 us each on a small
  machine), so on large workloads it runs on an evenly strided sample of at
  most ``queue_max`` elements and its times are scaled by
  ``size / sample`` (say so wherever it is shown).
* joblib -- ``Parallel(n_jobs=workers)`` (its default backend, loky) over
  ``4 * workers`` contiguous chunks, each returned as an array and
  concatenated. loky keeps its worker processes between calls, so its timed
  runs see a warm pool -- its normal steady state; memory is measured on a
  cold start (the pool is shut down first).
* parfill -- ``parfill.populate(func, shape, dtype, workers=..., schedule=...,
  backend=...)`` with the workload's N-d element function.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from parfill import _article as article

from .workloads import Workload

__all__ = ["Method", "joblib_available", "parfill_available", "python_methods"]


@dataclass(frozen=True)
class Method:
    """One way of populating a workload.

    ``call(workload, workers)`` returns the array (shape and dtype of the
    workload). ``stride(workload)`` > 1 means ``call`` only fills every
    ``stride``-th flat element; the harness then checks those and scales the
    times by ``size / elements computed``. ``cold()``, if given, is called
    before the memory-sampled run so persistent pools are counted.
    """

    key: str
    label: str
    role: str
    call: Callable[[Workload, int], np.ndarray]
    stride: Callable[[Workload], int] | None = None
    cold: Callable[[], None] | None = None


def parfill_available() -> bool:
    try:
        import parfill
    except ImportError:
        return False
    return callable(getattr(parfill, "populate", None))


def joblib_available() -> bool:
    try:
        import joblib  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------

def _sequential(w: Workload, workers: int) -> np.ndarray:
    return w.sequential()


def _article(fn: Callable[..., np.ndarray]) -> Callable[[Workload, int], np.ndarray]:
    def call(w: Workload, workers: int) -> np.ndarray:
        return fn(w.flat_func, w.size, workers, w.dtype).reshape(w.shape)
    return call


def _queue_stride(queue_max: int) -> Callable[[Workload], int]:
    def stride(w: Workload) -> int:
        return max(1, -(-w.size // queue_max))
    return stride


def _article3(queue_max: int) -> Callable[[Workload, int], np.ndarray]:
    stride_of = _queue_stride(queue_max)

    def call(w: Workload, workers: int) -> np.ndarray:
        stride = stride_of(w)
        indices = None if stride == 1 else range(0, w.size, stride)
        out = article.populate_array_queue(w.flat_func, w.size, workers, w.dtype,
                                           indices=indices)
        return out.reshape(w.shape)
    return call


def _joblib_chunk(f: Callable[[int], object], start: int, stop: int,
                  dtype: np.dtype) -> np.ndarray:
    out = np.empty(stop - start, dtype=dtype)
    for k in range(start, stop):
        out[k - start] = f(k)
    return out


def _joblib(w: Workload, workers: int) -> np.ndarray:
    from joblib import Parallel, delayed

    chunks = 4 * workers
    bounds = [w.size * c // chunks for c in range(chunks + 1)]
    f = w.flat_func
    parts = Parallel(n_jobs=workers)(
        delayed(_joblib_chunk)(f, bounds[c], bounds[c + 1], w.dtype) for c in range(chunks))
    return np.concatenate(parts).reshape(w.shape)


def _joblib_cold() -> None:
    """Shut loky's reusable executor down (if any) so the next call starts cold."""
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:
        return
    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


def _parfill(schedule: str, backend: str) -> Callable[[Workload, int], np.ndarray]:
    def call(w: Workload, workers: int) -> np.ndarray:
        import parfill

        return parfill.populate(w.func, w.shape, w.dtype, workers=workers,
                                schedule=schedule, backend=backend)
    return call


def python_methods(*, queue_max: int = 20_000, parfill_backend: str = "processes",
                   schedules: tuple[str, ...] = ("static", "dynamic", "guided"),
                   include_queue: bool = True) -> list[Method]:
    """The methods of the "python" suite, in table order.

    joblib rows are left out when joblib is not installed; parfill rows are
    always present (they report an error if parfill does not work yet).
    """
    methods = [Method("sequential", "sequential loop", "sequential", _sequential)]
    for key, label, fn in article.APPROACHES:
        if key == "article3":
            if include_queue:
                methods.append(Method(key, label, "peer", _article3(queue_max),
                                      stride=_queue_stride(queue_max)))
        else:
            methods.append(Method(key, label, "peer", _article(fn)))
    if joblib_available():
        methods.append(Method("joblib", "joblib Parallel, 4 chunks/worker", "peer",
                              _joblib, cold=_joblib_cold))
    for schedule in schedules:
        methods.append(Method(f"parfill-{schedule}",
                              f"parfill {schedule} ({parfill_backend})", "parfill",
                              _parfill(schedule, parfill_backend)))
    return methods
