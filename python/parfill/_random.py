"""parfill.random: arrays of counter-based random numbers (Philox4x64-10),
filled in parallel, the same whatever the workers.

The values are defined in the "random numbers" section of parfill.h (and
src/philox.h); the fill is ``_core.fill_random``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from parfill import _core
from parfill._populate import (
    _check_schedule,
    _positive_int_or_none,
    _resolve_output,
    _resolve_timeout,
    _resolve_workers,
)
from parfill._progress import make_progress

__all__ = ["random"]

_DISTS = ("uniform", "normal")


def _unsigned(value, name, bits):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {value!r}")
    value = int(value)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be in [0, 2**{bits}), not {value}")
    return value


def random(shape=None, dist="uniform", seed=0, dtype=None, *, out=None,
           workers=None, stream=0, schedule="dynamic", chunk=None,
           progress=False, timeout=None):
    """An array of random numbers, filled in parallel, reproducibly.

    Element ``e`` (flat C-order index) is a pure function of ``(seed,
    stream, e)`` -- Philox4x64-10, a counter-based generator -- so the
    result is the same for any ``workers``, ``schedule`` and ``chunk``.

    Parameters
    ----------
    shape : int or tuple of ints, optional
        The shape of the result; may be omitted when ``out`` is given.
    dist : {"uniform", "normal"}
        ``"uniform"``: floats in [0, 1). With ``stream=0`` these equal
        ``numpy.random.Generator(numpy.random.Philox(key=seed)).random(shape,
        dtype)`` bit for bit (float64 and float32). ``"normal"``: standard
        normal values (Box-Muller on pairs of Philox words; see README).
    seed : int
        0 <= seed < 2**128 (Philox's 128-bit key).
    dtype : float64 or float32, optional
        ``None`` (the default): out's dtype when ``out`` is given, else
        float64.
    out : ndarray, optional
        A writable float32/float64 array of any strides to fill and return.
    workers : int, optional
        Number of threads (>= 1); ``None`` uses :func:`parfill.cpu_count`.
    stream : int
        0 <= stream < 2**64; each stream is an independent sequence (its
        number is a word of Philox's counter).
    schedule : {"static", "dynamic", "guided"}
    chunk : int, optional
        Elements per chunk; ``None`` picks one.
    progress : bool or callable
        As for :func:`parfill.populate`.
    timeout : float, optional
        Seconds for the whole call, then :class:`parfill.TimeoutError`.

    Returns
    -------
    numpy.ndarray
        ``out`` if given, else a new array.
    """
    if dist not in _DISTS:
        raise ValueError(f"dist must be 'uniform' or 'normal', not {dist!r}")
    seed = _unsigned(seed, "seed", 128)
    stream = _unsigned(stream, "stream", 64)
    out, shape, dt = _resolve_output(out, shape, dtype, caller="random")
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise TypeError(f"random makes float64 or float32 values, not {dt}")
    workers = _resolve_workers(workers)
    _check_schedule(schedule)
    chunk = _positive_int_or_none(chunk, "chunk")
    timeout = _resolve_timeout(timeout)
    if _core.in_worker():
        workers = 1  # inside a process team's worker: no threads there
    result = out if out is not None else np.empty(shape, dt)
    reporter = make_progress(progress, math.prod(shape))
    try:
        _core.fill_random(result, dist, seed & ((1 << 64) - 1), seed >> 64,
                          stream, workers, schedule, chunk or 0, reporter,
                          timeout=timeout)
    finally:
        if reporter is not None:
            reporter.close()
    return result
