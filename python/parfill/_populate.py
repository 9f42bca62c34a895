"""parfill.populate: argument handling and the choice of backend.

The work happens in the C extension (parfill._core); this module checks
arguments, decides where the output lives and which backend runs, and wraps
progress reporting.
"""
from __future__ import annotations

import collections.abc
import math
import numbers
import operator
import time

import numpy as np

from parfill import _core
from parfill._native import ctx_address, native_function
from parfill._progress import make_progress

__all__ = ["cpu_count", "populate"]

_SCHEDULES = ("static", "dynamic", "guided")
_BACKENDS = ("auto", "processes", "threads", "serial")

# `auto` may compute the first elements of a Python callable in the caller,
# so that a job that finishes meanwhile never pays for forking workers. The
# caller works in slices of about this long, re-measuring after each...
_AUTO_SLICE_SECONDS = 0.002
# ...and hands the rest to workers as soon as the rest looks longer than
# this, or once it has spent this long itself (forking costs about a
# millisecond per worker, so less work than this is not worth it).
_AUTO_PARALLEL_SECONDS = 0.01
# Elements per chunk in the caller: at most this many, and fewer when one
# element costs more than _AUTO_CHUNK_SECONDS, so the caller's slice stays
# bounded even when the elements suddenly get expensive.
_AUTO_MAX_CHUNK = 16
_AUTO_CHUNK_SECONDS = 0.0002
# At most this many retries (a larger count means the same in practice and
# must not overflow the C int counters).
_MAX_RETRIES = 1 << 16
_MAX_DIMS = 32
_MAX_AXIS = (1 << 63) - 1
# Vectorized calls get blocks of at most this many elements by default.
_MAX_VECTOR_BLOCK = 1 << 20


def cpu_count() -> int:
    """The number of CPUs this process may use: its affinity mask, capped by
    a cgroup CPU quota (containers), and at least 1."""
    return _core.cpu_count()


def populate(func, shape=None, dtype=None, *, out=None, workers=None,
             schedule="dynamic", chunk=None, backend="auto", vectorized=False,
             params=None, ctx=None, progress=False, retries=0, timeout=None):
    """Populate an array in parallel: ``a[idx] = func(*idx)`` for every index.

    Parameters
    ----------
    func : callable or str
        A Python callable called as ``func(i)`` for a 1-D shape and
        ``func(i, j, ...)`` for N-d, with Python ints; its result is stored
        as ``a[i, j, ...] = result`` stores it. With ``vectorized=True`` it is
        called on blocks of consecutive C-order elements with one 1-D int64
        array of indices per axis, and the result is stored as
        ``a.reshape(-1)[start:stop] = result`` would store it. A ``str`` is an
        expression evaluated natively (``params`` maps names in it to scalars).
        A ctypes function pointer or ``numba.cfunc`` of prototype
        ``double(int64)``, ``double(const int64 *, int)`` or
        ``void(int64 start, int64 count, void *out, void *ctx)`` is a native
        function, run on threads with the GIL released.
    shape : int or tuple of ints, optional
        The shape of the result; may be omitted when ``out`` is given.
    dtype : dtype, optional
        Any bool, integer, floating or complex dtype; ``None`` (the default)
        means out's dtype when ``out`` is given, else float64. A dtype that
        differs from out's raises ValueError.
    out : ndarray, optional
        A writable array of any strides (``numpy.memmap`` included) to fill
        and return. A file-backed memmap opened ``r+``/``w+`` is written in
        place by the workers.
    workers : int, optional
        Number of workers (>= 1); ``None`` uses :func:`cpu_count`.
    schedule : {"static", "dynamic", "guided"}
        How elements are shared among workers: equal contiguous parts,
        chunks claimed from a shared counter, or shrinking chunks.
    chunk : int, optional
        Elements per chunk (the minimum for guided); ``None`` picks one.
    backend : {"auto", "processes", "threads", "serial"}
        ``auto`` runs Python callables on forked processes, or in the caller
        when ``workers == 1`` or the job is tiny; expressions and native
        functions on threads. Expressions and native functions release the
        GIL, so they always run on the thread pool (``serial``: one thread);
        the result never depends on the backend.
    vectorized : bool
        Call ``func`` on blocks of index arrays instead of single elements
        (a bool: ``"False"`` is a TypeError, not a true value).
    params : dict, optional
        Scalar parameters of an expression.
    ctx : int or ctypes object, optional
        Context pointer passed to a native block function.
    progress : bool or callable
        ``True`` shows a progress bar on stderr (tqdm when installed); a
        callable is called as ``progress(done, total)`` from the caller's
        thread.
    retries : int
        How many times a chunk lost to a dead worker is recomputed (values
        above 65536 count as 65536). With ``retries > 0`` (or ``timeout``),
        ``backend="auto"`` runs every element of a Python callable in a
        supervised worker process, never in the caller.
    timeout : float, optional
        Seconds for the whole call; then workers are stopped and
        :class:`parfill.TimeoutError` is raised.

    Returns
    -------
    numpy.ndarray
        ``out`` if given, else a new array.

    Raises
    ------
    TypeError, ValueError
        Bad arguments.
    parfill.WorkerDiedError
        A worker process died and ``retries`` did not recover its work.
    parfill.TimeoutError
        The call took longer than ``timeout``.
    Exception
        Whatever ``func`` raised, as the same type, with a note naming the
        element and worker (its remote traceback as ``__cause__``).
    """
    is_expression = isinstance(func, str)
    if not is_expression and not callable(func):
        raise TypeError(
            f"func must be a callable or an expression string, not "
            f"{type(func).__name__}")
    out, shape, dtype = _resolve_output(out, shape, dtype)
    workers = _resolve_workers(workers)
    _check_schedule(schedule)
    chunk = _positive_int_or_none(chunk, "chunk")
    if chunk is not None:
        chunk = min(chunk, max(math.prod(shape), 1))  # larger: one chunk
    if backend not in _BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, _BACKENDS))}, "
            f"not {backend!r}")
    retries = min(_non_negative_int(retries, "retries"), _MAX_RETRIES)
    if not isinstance(vectorized, (bool, np.bool_)):
        raise TypeError(f"vectorized must be a bool, not {vectorized!r}")
    vectorized = bool(vectorized)
    timeout = _resolve_timeout(timeout)
    if params is not None:
        if not isinstance(params, collections.abc.Mapping):
            raise TypeError(
                f"params must be a dict (a mapping), not {type(params).__name__}")
        params = dict(params)  # a snapshot: nothing can change it under us
    # Before any callable path: ctypes functions are callable too.
    native = None if is_expression else native_function(func)
    if ctx is not None and (native is None or native.kind != "block"):
        raise TypeError("ctx applies to native block functions")
    if _core.in_worker():
        # Nested call inside a worker process: no second level of forking.
        workers, backend = 1, "serial"

    size = math.prod(shape)
    reporter = make_progress(progress, size)
    try:
        if native is not None:
            return _populate_native(native, ctx, out, shape, dtype, workers,
                                    schedule, chunk, backend, vectorized,
                                    params, reporter, timeout)
        if is_expression:
            if vectorized:
                raise TypeError("vectorized applies to Python callables, not "
                                "expressions")
            if backend == "serial":
                workers = 1
            return _populate_expression(func, out, shape, dtype, workers,
                                        schedule, chunk, params, reporter,
                                        timeout)
        if params is not None:
            raise TypeError("params apply to expressions only")
        return _populate_callable(func, out, shape, dtype, workers, schedule,
                                  chunk, backend, vectorized, reporter,
                                  retries, timeout)
    finally:
        if reporter is not None:
            reporter.close()


# ----------------------------------------------------------------- arguments

def _resolve_shape(shape) -> tuple:
    if isinstance(shape, (bool, np.bool_)):
        raise TypeError("shape must be an int or a tuple of ints, not bool")
    try:
        dims = (operator.index(shape),)
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


def _resolve_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype {dtype!r} is not a NumPy dtype: {e}") from None
    if dt.kind not in "biufc" or not dt.isnative or dt.fields is not None:
        raise TypeError(
            f"dtype must be a bool, integer, floating or complex dtype in "
            f"native byte order, not {dt}")
    return dt


def _resolve_output(out, shape, dtype, caller="populate"):
    """(out, shape, dtype) from the arguments; ``dtype=None`` means out's
    dtype, or float64 without ``out``."""
    if out is None:
        if shape is None:
            raise TypeError(f"{caller}() needs a shape or an out array")
        shape = _resolve_shape(shape)
        dt = _resolve_dtype(np.float64 if dtype is None else dtype)
        _check_size(shape, dt)
        return None, shape, dt
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, not {type(out).__name__}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    dt = _resolve_dtype(out.dtype)
    if _overlaps(out):
        raise ValueError(_OVERLAP_MESSAGE)
    if dtype is not None and _resolve_dtype(dtype) != dt:
        raise ValueError(f"dtype {np.dtype(dtype)} does not match out's {dt}")
    if shape is not None and _resolve_shape(shape) != out.shape:
        raise ValueError(
            f"shape {_resolve_shape(shape)} does not match out's {out.shape}")
    return out, out.shape, dt


# The message of pf_array_overlaps' refusal in C (PF_OVERLAP_MESSAGE).
_OVERLAP_MESSAGE = (
    "output elements overlap in memory (a stride of 0, or strides smaller "
    "than the axes they step over): every element needs its own bytes")


def _overlaps(a) -> bool:
    """pf_array_overlaps (src/index.c) for an ndarray: sorted by |stride|,
    each axis of length > 1 must step over the extent of the smaller ones.
    Checked here too because a private ``out`` of a process fill is only
    copied into, never described to C."""
    if 0 in a.shape:
        return False
    extent = a.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(a.strides, a.shape)
                            if n > 1):
        if stride < extent:
            return True
        extent += stride * (n - 1)
    return False


def _check_size(shape, dt):
    size = math.prod(shape)
    if size * dt.itemsize > np.iinfo(np.int64).max:
        raise ValueError(
            f"an array of shape {shape} and dtype {dt} is too big: "
            f"{size * dt.itemsize} bytes overflow a 64-bit size")


def _resolve_workers(workers) -> int:
    if workers is None:
        return cpu_count()
    if isinstance(workers, (bool, np.bool_)) or not isinstance(
            workers, numbers.Integral):
        raise TypeError(f"workers must be an int or None, not {workers!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    return min(int(workers), 4096)


def _check_schedule(schedule):
    if schedule not in _SCHEDULES:
        raise ValueError(
            f"schedule must be one of {', '.join(map(repr, _SCHEDULES))}, "
            f"not {schedule!r}")


def _positive_int_or_none(value, name):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value}")
    return min(int(value), 1 << 62)  # beyond any array: one chunk


def _non_negative_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return int(value)


def _resolve_timeout(timeout):
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, not "
                        f"{timeout!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, not {timeout}")
    try:
        seconds = float(timeout)
    except OverflowError:  # an int beyond any float: no deadline
        seconds = math.inf
    return -1.0 if math.isinf(seconds) else seconds


# ----------------------------------------------------------------- callables

def _populate_callable(func, out, shape, dtype, workers, schedule, chunk,
                       backend, vectorized, reporter, retries, timeout):
    size = math.prod(shape)
    if backend == "auto":
        if timeout > 0 or retries > 0:
            # The call asked for supervision: every element runs in a worker
            # process that can be stopped (timeout) or replaced (retries).
            backend = "processes"
        elif workers == 1 or size <= 1:
            backend = "serial"
    if vectorized and chunk is None:
        chunk = max(1, min(-(-size // (workers * 4)), _MAX_VECTOR_BLOCK))
    common = dict(vectorized=vectorized, schedule=schedule,
                  progress=reporter, timeout=timeout)

    if backend in ("serial", "threads"):
        result = out if out is not None else np.empty(shape, dtype)
        if backend == "serial" and chunk is None and reporter is not None:
            chunk = max(1, size // 200)  # room for progress updates
        _core.fill_callable(func, result, backend=backend,
                            workers=1 if backend == "serial" else workers,
                            chunk=chunk or 0, **common)
        return result

    # processes (or auto, which may end up in the caller)
    direct = out is None or _core.is_shared(out)
    target = _core.shared_empty(shape, dtype) if out is None else out
    start = 0
    if backend == "auto":
        start = _auto_in_caller(func, target, size, chunk, vectorized, common)
        if start == size:
            _core.privatize(target)  # copy-on-write after a fork, no copy
            return target
    if not direct:
        # A private buffer cannot be seen by forked workers: fill a shared one,
        # keeping what the probe computed, then copy once.
        shared = _core.shared_empty(shape, dtype)
        if start:
            shared.reshape(-1)[:start] = out.reshape(-1)[:start] \
                if out.flags.c_contiguous else out.flat[:start]
        target = shared
    _core.fill_callable(func, target, backend="processes", workers=workers,
                        chunk=chunk or 0, start=start, retries=retries,
                        guard=out, **common)
    if not direct:
        out[...] = target
        return out
    _core.privatize(target)  # a new result: copy-on-write after a fork
    return target


def _auto_in_caller(func, target, size, chunk, vectorized, common):
    """`auto`'s measurement: computes elements in the caller, slice by slice,
    while what is left looks cheap and the caller's own budget lasts; returns
    the next element for the workers (``size`` when all is done).

    The rest is never judged from the first slice alone: elements may get
    expensive anywhere, so the caller re-measures after every slice and stops
    after ``_AUTO_PARALLEL_SECONDS`` of its own work whatever it estimates.
    A slice ends after the chunk that crosses its budget; a chunk that took
    long is evidence that the elements after it are expensive too."""
    start, spent = 0, 0.0
    if vectorized:
        step = max(1, min(chunk, 4096))
    else:
        step = 1
    while start < size:
        budget = min(_AUTO_SLICE_SECONDS, _AUTO_PARALLEL_SECONDS - spent)
        t0 = time.monotonic()
        stop = _core.fill_callable(func, target, backend="serial", workers=1,
                                   chunk=step, start=start,
                                   budget=max(budget, 1e-6), **common)
        elapsed = time.monotonic() - t0
        spent += elapsed
        done, start = stop - start, stop
        if start >= size or spent >= _AUTO_PARALLEL_SECONDS:
            break
        per_element = elapsed / max(done, 1)
        # The last chunk ran past the slice's budget by at least this much.
        overshoot = (elapsed - budget) / min(step, done) if done else elapsed
        per_element = max(per_element, overshoot)
        if per_element * (size - start) >= _AUTO_PARALLEL_SECONDS - spent:
            break
        if not vectorized:
            step = int(min(_AUTO_MAX_CHUNK,
                           max(1, _AUTO_CHUNK_SECONDS / max(per_element, 1e-9))))
    return start


# ---------------------------------------------------------------- expressions

def _populate_expression(text, out, shape, dtype, workers, schedule, chunk,
                         params, reporter, timeout):
    result = out if out is not None else np.empty(shape, dtype)
    _core.fill_expr(text, result, params or {}, workers, schedule, chunk or 0,
                    reporter, timeout=timeout)
    return result


# ------------------------------------------------------------ native functions

def _populate_native(native, ctx, out, shape, dtype, workers, schedule, chunk,
                     backend, vectorized, params, reporter, timeout):
    if params is not None:
        raise TypeError("params apply to expressions only")
    if vectorized:
        raise TypeError("vectorized applies to Python callables; a native "
                        "block function gets blocks by its prototype")
    if backend == "serial":
        workers = 1
    result = out if out is not None else np.empty(shape, dtype)
    _core.fill_native(native.address, native.kind, result, ctx_address(ctx),
                      workers, schedule, chunk or 0, reporter, timeout=timeout)
    return result
