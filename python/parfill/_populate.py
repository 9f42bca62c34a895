"""parfill.populate: argument handling and the choice of backend.

The work happens in the C extension (parfill._core); this module checks
arguments, decides where the output lives and which backend runs, and wraps
progress reporting.
"""
from __future__ import annotations

import collections.abc
import math
import time
from typing import (Any, Callable, Literal, Mapping, TypedDict, Union, Unpack,
                    overload)

import numpy as np
import numpy.typing as npt

from parfill import _core
from parfill._args import (
    Backend,
    ProgressLike,
    Schedule,
    ShapeLike,
    Window,
    non_negative_int,
    resolve_output,
    resolve_pool_args,
)
from parfill._native import (
    CtxLike,
    NativeFunction,
    NativeFunctionLike,
    ctx_address,
    native_function,
)
from parfill._progress import Reporter, reporting
from parfill._translate import Kernel
from parfill._translated import TRANSLATE_MODES, Translate, kernel_for
from parfill._translated import run as run_translated

__all__ = ["FillOptions", "ParamValue", "Translate", "cpu_count", "populate"]

_BACKENDS = ("auto", "processes", "threads", "serial")

#: A value in ``params``: an expression parameter is a bool, an int (int64)
#: or a float (float64), a Python or a NumPy scalar.
ParamValue = Union[bool, int, float, np.bool_, np.integer[Any],
                   np.floating[Any]]

# `auto` may compute the first elements of a Python callable in the caller,
# so that a job that finishes meanwhile never pays for forking workers. The
# caller works in slices of about this long, re-measuring after each...
_AUTO_SLICE_SECONDS = 0.002
# ...and hands the rest to workers as soon as the rest looks longer than
# this, or once it has spent this long itself (forking costs about a
# millisecond per worker, so less work than this is not worth it).
_AUTO_PARALLEL_SECONDS = 0.01
# Elements per chunk in the caller: at most this many, and fewer when one
# element costs more than _AUTO_CHUNK_SECONDS. The caller's slice stays
# bounded even when the elements suddenly get expensive because the C loop
# stops at the first element that ends past the slice's budget.
_AUTO_MAX_CHUNK = 4096
_AUTO_CHUNK_SECONDS = 0.0002
# At most this many retries (a larger count means the same in practice and
# must not overflow the C int counters).
_MAX_RETRIES = 1 << 16
# Vectorized calls get blocks of at most this many elements by default.
_MAX_VECTOR_BLOCK = 1 << 20


def cpu_count() -> int:
    """The number of CPUs this process may use: its affinity mask, capped by
    a cgroup CPU quota (containers), and at least 1."""
    return _core.cpu_count()


class FillOptions(TypedDict, total=False):
    """The keyword arguments of :func:`populate` that apply to every kind of
    func (for its overloads)."""
    out: npt.NDArray[Any] | None
    workers: int | None
    schedule: Schedule
    chunk: int | None
    backend: Backend
    progress: ProgressLike
    timeout: float | None


# The three kinds of func, as a type checker sees them. Each overload takes
# only the arguments that apply to its kind (others are refused at run time
# too, unless they have their default value); the native one comes first
# because a ctypes function is also a callable.
@overload
def populate(func: NativeFunctionLike, shape: ShapeLike | None = ...,
             dtype: npt.DTypeLike | None = ..., *,
             vectorized: Literal[False] = ..., params: None = ...,
             ctx: CtxLike | None = ...,
             **options: Unpack[FillOptions]) -> npt.NDArray[Any]: ...
@overload
def populate(func: str, shape: ShapeLike | None = ...,
             dtype: npt.DTypeLike | None = ..., *,
             vectorized: Literal[False] = ...,
             params: Mapping[str, ParamValue] | None = ..., ctx: None = ...,
             **options: Unpack[FillOptions]) -> npt.NDArray[Any]: ...
@overload
def populate(func: Callable[..., object], shape: ShapeLike | None = ...,
             dtype: npt.DTypeLike | None = ..., *, vectorized: bool = ...,
             params: None = ..., ctx: None = ..., retries: int = ...,
             translate: Translate = ...,
             **options: Unpack[FillOptions]) -> npt.NDArray[Any]: ...
def populate(
    func: str | Callable[..., object] | NativeFunctionLike,
    shape: ShapeLike | None = None,
    dtype: npt.DTypeLike | None = None,
    *,
    out: npt.NDArray[Any] | None = None,
    workers: int | None = None,
    schedule: Schedule = "dynamic",
    chunk: int | None = None,
    backend: Backend = "auto",
    vectorized: bool = False,
    params: Mapping[str, ParamValue] | None = None,
    ctx: CtxLike | None = None,
    progress: ProgressLike = False,
    retries: int = 0,
    timeout: float | None = None,
    translate: Translate = "auto",
) -> npt.NDArray[Any]:
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
    params : mapping, optional
        Scalar parameters of an expression (any ``Mapping`` of names to
        bools, ints and floats, Python's or NumPy's).
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
    translate : {"auto", "never", "always"}
        ``auto`` runs a plain Python function natively (thread pool, GIL
        released) when :func:`parfill.translate` can translate it exactly,
        on every backend name, and calls it otherwise (also while a
        debugger, coverage tool or profiler watches calls); an element the
        native code cannot decide exactly is computed by calling the
        function. ``never`` always calls it; ``always`` raises
        :class:`parfill.TranslationError` when it cannot be translated.

    Returns
    -------
    numpy.ndarray
        ``out`` if given, else a new array.

    Raises
    ------
    TypeError, ValueError
        Bad arguments.
    parfill.TranslationError
        ``translate="always"`` and a function that cannot be translated.
    parfill.WorkerDiedError
        A worker process died and ``retries`` did not recover its work.
    parfill.TimeoutError
        The call took longer than ``timeout``.
    Exception
        Whatever ``func`` raised, as the same type, with a note naming the
        element and worker (its remote traceback as ``__cause__``).
    """
    # Positionally: keywords cost every call a dict (fill's order).
    return fill(func, shape, dtype, None, out, workers, schedule, chunk,
                backend, vectorized, params, ctx, progress, retries, timeout,
                translate)


def fill(func: str | Callable[..., object] | NativeFunctionLike,
         shape: ShapeLike | None, dtype: npt.DTypeLike | None,
         window: Window | None, out: npt.NDArray[Any] | None = None,
         workers: int | None = None, schedule: Schedule = "dynamic",
         chunk: int | None = None, backend: Backend = "auto",
         vectorized: bool = False,
         params: Mapping[str, ParamValue] | None = None,
         ctx: CtxLike | None = None, progress: ProgressLike = False,
         retries: int = 0, timeout: float | None = None,
         translate: Translate = "auto") -> npt.NDArray[Any]:
    """:func:`populate`, or with ``window = (whole_shape, origin)`` the box
    of that shape's array at ``origin`` (``shape`` is the box's): every
    kind of func sees the whole's indices, so the box equals the same
    elements of ``populate(func, whole_shape, ...)`` (parfill.dask's blocks;
    SPEC section 8). Checked by the native layer against the box."""
    if not isinstance(func, str) and not callable(func):
        raise TypeError(
            f"func must be a callable or an expression string, not "
            f"{type(func).__name__}")
    out, dims, dt = resolve_output(out, shape, dtype, "populate")
    n_workers, schedule, chunk_size, seconds = resolve_pool_args(
        workers, schedule, chunk, timeout)
    if chunk_size is not None:
        # A chunk larger than the array: one chunk.
        chunk_size = min(chunk_size, max(math.prod(dims), 1))
    if backend not in _BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, _BACKENDS))}, "
            f"not {backend!r}")
    retries = min(non_negative_int(retries, "retries"), _MAX_RETRIES)
    if not isinstance(vectorized, (bool, np.bool_)):
        raise TypeError(f"vectorized must be a bool, not {vectorized!r}")
    if not isinstance(translate, str) or translate not in TRANSLATE_MODES:
        raise ValueError(
            f"translate must be one of "
            f"{', '.join(map(repr, TRANSLATE_MODES))}, not {translate!r}")
    vectorized = bool(vectorized)
    values: dict[str, ParamValue] | None = None
    if params is not None:
        if not isinstance(params, collections.abc.Mapping):
            raise TypeError(
                f"params must be a dict (a mapping), not {type(params).__name__}")
        values = dict(params)  # a snapshot: nothing can change it under us
    # Before any callable path: ctypes functions are callable too.
    native = None if isinstance(func, str) else native_function(func)
    if ctx is not None and (native is None or native.kind != "block"):
        raise TypeError("ctx applies to native block functions")
    if _core.in_worker():
        # Nested call inside a worker process: no second level of forking.
        n_workers, backend = 1, "serial"

    with reporting(progress, math.prod(dims)) as reporter:
        if native is not None:
            return _populate_native(native, ctx, out, dims, dt, n_workers,
                                    schedule, chunk_size, backend, vectorized,
                                    values, reporter, seconds, window)
        if isinstance(func, str):
            if vectorized:
                raise TypeError("vectorized applies to Python callables, not "
                                "expressions")
            if backend == "serial":
                n_workers = 1
            return _populate_expression(func, out, dims, dt, n_workers,
                                        schedule, chunk_size, values, reporter,
                                        seconds, window)
        if values is not None:
            raise TypeError("params apply to expressions only")
        kernel = kernel_for(func, len(dims), translate, vectorized)
        if kernel is not None:
            return _populate_translated(func, kernel, out, dims, dt,
                                        n_workers, schedule, chunk_size,
                                        backend, reporter, retries, seconds,
                                        window)
        return _populate_callable(func, out, dims, dt, n_workers,
                                  schedule, chunk_size, backend, vectorized,
                                  reporter, retries, seconds, window=window)


# ----------------------------------------------------------------- callables

def _populate_callable(func: Callable[..., object],
                       out: npt.NDArray[Any] | None, shape: tuple[int, ...],
                       dtype: np.dtype[Any], workers: int, schedule: Schedule,
                       chunk: int | None, backend: str, vectorized: bool,
                       reporter: Reporter | None, retries: int,
                       timeout: float, start: int = 0,
                       window: Window | None = None) -> npt.NDArray[Any]:
    """Calls ``func`` for every element from ``start`` on; elements
    ``[0, start)`` of ``out`` are computed already (the translated path
    hands over the rest)."""
    size = math.prod(shape)
    if backend == "auto":
        if timeout > 0 or retries > 0:
            # The call asked for supervision: every element runs in a worker
            # process that can be stopped (timeout) or replaced (retries).
            backend = "processes"
        elif workers == 1 or size - start <= 1:
            backend = "serial"
    if backend == "threads" and start:
        # The thread engine fills whole arrays. A rest handed over by the
        # translated path is a function that holds the GIL throughout, so
        # the caller alone is as fast (and checks Ctrl-C and the timeout).
        backend = "serial"
    if vectorized and chunk is None:
        chunk = max(1, min(-(-size // (workers * 4)), _MAX_VECTOR_BLOCK))
    common: dict[str, Any] = dict(vectorized=vectorized, schedule=schedule,
                  progress=reporter, timeout=timeout, window=window)

    if backend in ("serial", "threads"):
        result = out if out is not None else np.empty(shape, dtype)
        if backend == "serial" and chunk is None and reporter is not None:
            chunk = max(1, size // 200)  # room for progress updates
        _core.fill_callable(func, result, backend=backend,
                            workers=1 if backend == "serial" else workers,
                            chunk=chunk or 0, start=start, **common)
        return result

    # processes (or auto, which may end up in the caller)
    direct = out is None or _core.is_shared(out)
    target = _core.shared_empty(shape, dtype) if out is None else out
    if backend == "auto":
        start = _auto_in_caller(func, target, start, size, chunk, vectorized,
                                common)
        if start == size:
            _core.privatize(target)  # copy-on-write after a fork, no copy
            return target
    if out is not None and not direct:
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
    if out is not None and not direct:
        out[...] = target
        return out
    _core.privatize(target)  # a new result: copy-on-write after a fork
    return target


def _auto_in_caller(func: Callable[..., object], target: npt.NDArray[Any],
                    start: int, size: int, chunk: int | None,
                    vectorized: bool, common: dict[str, Any]) -> int:
    """`auto`'s measurement: computes elements in the caller, slice by slice,
    while what is left looks cheap and the caller's own budget lasts; returns
    the next element for the workers (``size`` when all is done).

    The rest is never judged from the first slice alone: elements may get
    expensive anywhere, so the caller re-measures after every slice and stops
    after ``_AUTO_PARALLEL_SECONDS`` of its own work whatever it estimates.
    A slice ends after the chunk that crosses its budget; a chunk that took
    long is evidence that the elements after it are expensive too."""
    spent = 0.0
    if vectorized:
        assert chunk is not None  # _populate_callable picks one
        step = max(1, min(chunk, 4096))
    else:
        step = _AUTO_MAX_CHUNK  # the C loop stops at the slice's budget
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


# ------------------------------------------------------ translated functions

def _populate_translated(func: Callable[..., object], kernel: Kernel,
                         out: npt.NDArray[Any] | None,
                         shape: tuple[int, ...], dtype: np.dtype[Any],
                         workers: int, schedule: Schedule, chunk: int | None,
                         backend: str, reporter: Reporter | None,
                         retries: int, timeout: float,
                         window: Window | None) -> npt.NDArray[Any]:
    """A translated function runs on the thread pool whatever the backend
    name (as expressions do: the result never depends on it; ``serial`` is
    one thread); what it hands back to Python runs on ``backend``."""
    result = out if out is not None else np.empty(shape, dtype)

    def rest(result: npt.NDArray[Any], start: int,
             left: float) -> npt.NDArray[Any]:
        return _populate_callable(func, result, shape, dtype, workers,
                                  schedule, chunk, backend, False, reporter,
                                  retries, left, start=start, window=window)

    return run_translated(func, kernel, result,
                          1 if backend == "serial" else workers, schedule,
                          chunk, reporter, timeout, retries, rest, window)


# ---------------------------------------------------------------- expressions

def _populate_expression(text: str, out: npt.NDArray[Any] | None,
                         shape: tuple[int, ...], dtype: np.dtype[Any],
                         workers: int, schedule: Schedule, chunk: int | None,
                         params: Mapping[str, ParamValue] | None,
                         reporter: Reporter | None, timeout: float,
                         window: Window | None) -> npt.NDArray[Any]:
    result = out if out is not None else np.empty(shape, dtype)
    _core.fill_expr(text, result, params or {}, workers, schedule, chunk or 0,
                    reporter, timeout, window)
    return result


# ------------------------------------------------------------ native functions

def _populate_native(native: NativeFunction, ctx: object,
                     out: npt.NDArray[Any] | None, shape: tuple[int, ...],
                     dtype: np.dtype[Any], workers: int, schedule: Schedule,
                     chunk: int | None, backend: str, vectorized: bool,
                     params: Mapping[str, ParamValue] | None,
                     reporter: Reporter | None, timeout: float,
                     window: Window | None) -> npt.NDArray[Any]:
    if params is not None:
        raise TypeError("params apply to expressions only")
    if vectorized:
        raise TypeError("vectorized applies to Python callables; a native "
                        "block function gets blocks by its prototype")
    if backend == "serial":
        workers = 1
    result = out if out is not None else np.empty(shape, dtype)
    _core.fill_native(native.address, native.kind, result, ctx_address(ctx),
                      workers, schedule, chunk or 0, reporter, timeout=timeout,
                      window=window)
    return result
