"""parfill.random: arrays of counter-based random numbers (Philox4x64-10),
filled in parallel, the same whatever the workers.

The values are defined in the "random numbers" section of parfill.h (and
src/philox.h); the fill is ``_core.fill_random``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from parfill import _core
from parfill._args import (
    ProgressLike,
    Schedule,
    ShapeLike,
    Window,
    is_int,
    resolve_output,
    resolve_pool_args,
)
from parfill._progress import reporting

__all__ = ["random"]

_DISTS = ("uniform", "normal")


def _unsigned(value: object, name: str, bits: int) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, not {value!r}")
    n = int(value)
    if not 0 <= n < 1 << bits:
        raise ValueError(f"{name} must be in [0, 2**{bits}), not {n}")
    return n


def random(
    shape: ShapeLike | None = None,
    dist: Literal["uniform", "normal"] = "uniform",
    seed: int = 0,
    dtype: npt.DTypeLike | None = None,
    *,
    out: npt.NDArray[Any] | None = None,
    workers: int | None = None,
    stream: int = 0,
    schedule: Schedule = "dynamic",
    chunk: int | None = None,
    progress: ProgressLike = False,
    timeout: float | None = None,
) -> npt.NDArray[Any]:
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
    return fill(shape, dist, seed, dtype, None, out=out, workers=workers,
                stream=stream, schedule=schedule, chunk=chunk,
                progress=progress, timeout=timeout)


def fill(shape: ShapeLike | None, dist: Literal["uniform", "normal"],
         seed: int, dtype: npt.DTypeLike | None, window: Window | None, *,
         out: npt.NDArray[Any] | None = None, workers: int | None = None,
         stream: int = 0, schedule: Schedule = "dynamic",
         chunk: int | None = None, progress: ProgressLike = False,
         timeout: float | None = None) -> npt.NDArray[Any]:
    """:func:`random`, or with ``window = (whole_shape, origin)`` the box of
    ``shape`` at ``origin`` of ``random(whole_shape, ...)``: the values of
    the whole's flat indices (parfill.dask's blocks)."""
    if dist not in _DISTS:
        raise ValueError(f"dist must be 'uniform' or 'normal', not {dist!r}")
    seed = _unsigned(seed, "seed", 128)
    stream = _unsigned(stream, "stream", 64)
    out, dims, dt = resolve_output(out, shape, dtype, "random")
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise TypeError(f"random makes float64 or float32 values, not {dt}")
    n_workers, schedule, chunk_size, seconds = resolve_pool_args(
        workers, schedule, chunk, timeout)
    if _core.in_worker():
        n_workers = 1  # inside a process team's worker: no threads there
    result = out if out is not None else np.empty(dims, dt)
    with reporting(progress, math.prod(dims)) as reporter:
        _core.fill_random(result, dist, seed & ((1 << 64) - 1), seed >> 64,
                          stream, n_workers, schedule, chunk_size or 0,
                          reporter, timeout=seconds, window=window)
    return result
