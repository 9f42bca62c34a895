"""The arguments :func:`parfill.populate` and :func:`parfill.random` share:
shape, dtype, out, workers, schedule, chunk and timeout, checked and
normalised in one place so both calls accept and refuse the same values with
the same messages.

Also the type aliases of the public signatures (``ShapeLike``, ``Schedule``,
...): real objects at run time, so ``typing.get_type_hints`` works on the
public functions.
"""
from __future__ import annotations

import collections.abc
import math
import numbers
import operator
from typing import (Any, Callable, Literal, Sequence, SupportsIndex,
                    TypeGuard, Union)

import numpy as np
import numpy.typing as npt

from parfill import _core

__all__ = ["Backend", "OVERLAP_MESSAGE", "PoolArgs", "ProgressLike",
           "Schedule", "ShapeLike", "is_int", "non_negative_int",
           "resolve_output", "resolve_pool_args", "resolve_workers"]

#: An int or a sequence of ints (anything with ``__index__``).
ShapeLike = Union[SupportsIndex, Sequence[SupportsIndex]]
Schedule = Literal["static", "dynamic", "guided"]
Backend = Literal["auto", "processes", "threads", "serial"]
#: ``True`` for a bar on stderr, ``False``/``None`` for none, or a
#: ``progress(done, total)`` callable.
ProgressLike = Union[bool, None, Callable[[int, int], object]]
# A block of a larger array (parfill.dask): (whole_shape, origin); the
# function sees the whole's indices.
Window = tuple[tuple[int, ...], tuple[int, ...]]

_SCHEDULES = ("static", "dynamic", "guided")
_MAX_DIMS = 32
_MAX_AXIS = (1 << 63) - 1
# More workers than this is never useful (and the pool caps its threads).
_MAX_WORKERS = 4096
# A chunk beyond any array's size: one chunk (and no int64 overflow in C).
_MAX_CHUNK = 1 << 62

# The message of pf_array_overlaps' refusal in C (PF_OVERLAP_MESSAGE).
OVERLAP_MESSAGE = (
    "output elements overlap in memory (a stride of 0, or strides smaller "
    "than the axes they step over): every element needs its own bytes")


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """An integral number that is not a bool (``True`` is no count)."""
    if type(value) is int:  # the common case, without the ABC's check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_))


# ----------------------------------------------------------- shape and dtype

def resolve_shape(shape: object) -> tuple[int, ...]:
    """A tuple of non-negative ints from an int or a sequence of ints."""
    if isinstance(shape, (bool, np.bool_)):
        raise TypeError("shape must be an int or a tuple of ints, not bool")
    dims: tuple[int, ...]
    try:
        dims = (operator.index(shape),)  # type: ignore[arg-type]
    except TypeError:
        # Only sequences, never any iterable: an unbounded one
        # (itertools.count()) would be consumed until memory runs out.
        if isinstance(shape, np.ndarray) and shape.ndim == 1:
            shape = shape.tolist()
        if not isinstance(shape, collections.abc.Sequence) or isinstance(
                shape, (str, bytes)):
            raise TypeError(
                f"shape must be an int or a tuple of ints, not {shape!r}"
            ) from None
        try:
            length = len(shape)
        except (OverflowError, TypeError):
            length = _MAX_DIMS + 1
        if length > _MAX_DIMS:
            raise ValueError(f"at most {_MAX_DIMS} dimensions are supported, "
                             f"not {length}") from None
        try:
            dims = tuple(operator.index(n) for n in shape)
        except TypeError:
            raise TypeError(
                f"shape must be an int or a tuple of ints, not {shape!r}"
            ) from None
    if any(n < 0 for n in dims):
        raise ValueError(f"negative dimensions are not allowed: {dims}")
    if any(n > _MAX_AXIS for n in dims):
        raise ValueError(f"shape {dims}: an axis length must be at most "
                         f"2**63 - 1")
    if len(dims) > _MAX_DIMS:
        raise ValueError(f"at most {_MAX_DIMS} dimensions are supported, "
                         f"not {len(dims)}")
    return dims


def resolve_dtype(dtype: npt.DTypeLike | None) -> np.dtype[Any]:
    """A bool, integer, floating or complex dtype in native byte order."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype {dtype!r} is not a NumPy dtype: {e}") from None
    if dt.kind not in "biufc" or not dt.isnative or dt.fields is not None:
        raise TypeError(
            f"dtype must be a bool, integer, floating or complex dtype in "
            f"native byte order, not {dt}")
    return dt


def _check_size(shape: tuple[int, ...], dt: np.dtype[Any]) -> None:
    size = math.prod(shape)
    if size * dt.itemsize > np.iinfo(np.int64).max:
        raise ValueError(
            f"an array of shape {shape} and dtype {dt} is too big: "
            f"{size * dt.itemsize} bytes overflow a 64-bit size")


def _overlaps(a: npt.NDArray[Any]) -> bool:
    """pf_array_overlaps (src/index.c) for an ndarray: sorted by |stride|,
    each axis of length > 1 must step over the extent of the smaller ones.
    Checked here too because a private ``out`` of a process fill is only
    copied into, never described to C."""
    if a.flags.c_contiguous or a.flags.f_contiguous or 0 in a.shape:
        return False  # (NumPy's contiguity ignores axes of length 1, as here)
    extent = a.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(a.strides, a.shape)
                            if n > 1):
        if stride < extent:
            return True
        extent += stride * (n - 1)
    return False


def resolve_output(
    out: object, shape: object, dtype: npt.DTypeLike | None, caller: str,
) -> tuple[npt.NDArray[Any] | None, tuple[int, ...], np.dtype[Any]]:
    """(out, shape, dtype) from the arguments. ``dtype=None`` means "not
    given": out's dtype, or float64 without ``out`` -- a sentinel apart from
    every real dtype, so an explicit float64 that differs from out's is
    refused like any other mismatch."""
    if out is None:
        if shape is None:
            raise TypeError(f"{caller}() needs a shape or an out array")
        dims = resolve_shape(shape)
        dt = resolve_dtype(np.float64 if dtype is None else dtype)
        _check_size(dims, dt)
        return None, dims, dt
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, not {type(out).__name__}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    dt = resolve_dtype(out.dtype)
    if _overlaps(out):
        raise ValueError(OVERLAP_MESSAGE)
    if dtype is not None and resolve_dtype(dtype) != dt:
        raise ValueError(f"dtype {np.dtype(dtype)} does not match out's {dt}")
    if shape is not None and resolve_shape(shape) != out.shape:
        raise ValueError(
            f"shape {resolve_shape(shape)} does not match out's {out.shape}")
    return out, out.shape, dt


# ------------------------------------------------- workers, chunk, timeout

def resolve_workers(workers: object) -> int:
    """At least 1; ``None``: :func:`parfill.cpu_count`."""
    if workers is None:
        return _core.cpu_count()
    if not is_int(workers):
        raise TypeError(f"workers must be an int or None, not {workers!r}")
    count = int(workers)
    if count < 1:
        raise ValueError(f"workers must be >= 1, not {count}")
    return min(count, _MAX_WORKERS)


def _check_schedule(schedule: object) -> Schedule:
    if schedule == "static" or schedule == "dynamic" or schedule == "guided":
        return schedule
    raise ValueError(
        f"schedule must be one of {', '.join(map(repr, _SCHEDULES))}, "
        f"not {schedule!r}")


def _positive_int_or_none(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not is_int(value):
        raise TypeError(f"{name} must be an int or None, not {value!r}")
    n = int(value)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, not {n}")
    return min(n, _MAX_CHUNK)  # beyond any array: one chunk


def non_negative_int(value: object, name: str) -> int:
    """An int >= 0 (not a bool), or TypeError/ValueError naming ``name``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, not {value!r}")
    n = int(value)
    if n < 0:
        raise ValueError(f"{name} must be >= 0, not {n}")
    return n


def _resolve_timeout(timeout: object) -> float:
    """Seconds, or -1.0 for no deadline (``None``, or too many to matter)."""
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, not "
                        f"{timeout!r}")
    # operator.gt: the stubs of numbers.Real declare no comparison with int.
    if not operator.gt(timeout, 0):
        raise ValueError(f"timeout must be > 0 seconds, not {timeout}")
    try:
        seconds = float(timeout)
    except OverflowError:  # an int beyond any float: no deadline
        seconds = math.inf
    return -1.0 if math.isinf(seconds) else seconds


#: How a fill shares its work, as the ``_core.fill_*`` calls take it:
#: workers, schedule, chunk (None: the fill picks one), timeout (seconds;
#: -1.0 for no deadline). A plain tuple: every call builds one, and a
#: NamedTuple's constructor is Python code.
PoolArgs = tuple[int, Schedule, int | None, float]


def resolve_pool_args(workers: object, schedule: object, chunk: object,
                      timeout: object) -> PoolArgs:
    """``workers``, ``schedule``, ``chunk`` and ``timeout`` checked, in that
    order, and normalised."""
    return (resolve_workers(workers), _check_schedule(schedule),
            _positive_int_or_none(chunk, "chunk"), _resolve_timeout(timeout))
