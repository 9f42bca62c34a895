"""parfill.dask: lazy ``dask.array.Array`` objects whose blocks parfill fills
on whichever dask worker runs them (SPEC section 8, "Dask").

Imported only when used (``import parfill`` never imports dask); needs the
optional extra ``parfill[dask]`` (``dask[array]``, and ``distributed`` for
clusters).

DESIGN

Graph. One blockwise layer without array inputs, the way
``dask.array.from_array`` builds its own: block ``(b0, b1, ...)`` is the task
``_Fill(slices)``, where ``slices`` comes from ``ArraySliceDep(chunks)`` and
locates the block in the whole array. Nothing is materialised while the graph
is built, so an array of 10**12 elements and 60,000 blocks costs nothing
until computed, and a slice of it computes only the blocks it touches
(dask culls the rest). The name is ``parfill-populate-<token>`` (or
``parfill-random-``), the token a ``dask.base.tokenize`` of everything the
call was given: the same call gives the same keys, and any change of func,
expression, params, shape, dtype, chunks or options gives others.

Values. A block is ``parfill._window.populate_block`` (``random_block``): the
fill of a window of the whole index space, so an expression's ``i j ... idx``
are global and ``n0 ... size`` the whole array's, a Python callable gets
global indices, a native function global flat indices, and ``uniform()`` /
``normal()`` and ``parfill.dask.random`` the one-machine values. Any chunks
give the same array bit for bit.

Assembly. ``x.compute()`` of a dask array fills each block into an array
of its own and copies them into the result in one thread (dask's
``concatenate3``): a second pass over the whole, twice its memory at the
peak. The arrays populate and random return are a small subclass of
``dask.array.Array`` (``_FilledArray``) whose own compute on one process --
dask's threaded or synchronous scheduler -- fills every block straight into
one whole array (an arena, ``parfill._arena``) and hands that out: its
``__dask_optimize__`` gives each compute a fresh arena token, its finalize
returns the arena when every block is a window of it, each claimed once
(else it concatenates as dask does); ``x.persist()`` keeps its blocks as
windows of one such array. Anything derived from it (a slice, ``x + 1``,
``da.store``, ``to_zarr``) is a plain Array and streams block by block as
before; so does a compute on another process (the process scheduler,
distributed), whose blocks travel apart.

Cores. A task fills its block with ``max(1, cores // slots)`` parfill
workers, where ``slots`` is how many tasks may run at once on those cores:
- dask's threaded scheduler: ``cores`` = :func:`parfill.cpu_count`, ``slots``
  = the size of the thread pool running the task (found by the pool that
  owns the current thread; 1 in the synchronous scheduler);
- dask's process scheduler (a task in the main thread of a multiprocessing
  child): ``slots`` = ``dask.system.CPU_COUNT``, the size of its pool unless
  ``num_workers`` was given, which the child cannot see;
- ``distributed``: a worker's ``nthreads`` is what it was given of the
  machine, and it runs that many tasks at once, so ``cores`` = ``slots`` =
  ``nthreads``: each task fills with one thread, the worker's threads being
  the parallelism.
So tasks at once x parfill threads <= cores. A Python callable (one that is
not translated) holds the GIL: where several tasks share a process's threads
(``slots`` > 1 in one process), its block runs on ``backend="processes"``,
forking its share of workers, so blocks do not serialise on the GIL. An
explicit ``workers=`` or ``backend=`` in the options is used as given.

Travel. Python callables travel to other processes the way dask sends any
function (cloudpickle), so lambdas and closures work. A native function is
an address in this process: it travels as the path and symbol name of the
shared library function at that address (``dladdr``), loaded again in the
worker; a function that is no exported symbol (``numba.cfunc``, a ctypes
callback of a Python function) or a ``ctx`` pointer can only be used where
the graph was built (threaded or synchronous scheduler), and sending it is a
TypeError that says so.
"""
from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import sys
import threading
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import numpy.typing as npt

try:
    import dask
    import dask.array as da
    from dask.array.core import finalize, normalize_chunks
    from dask.base import tokenize
    from dask.core import flatten
    from dask.blockwise import blockwise as _blockwise
    from dask.highlevelgraph import HighLevelGraph
    from dask.layers import ArraySliceDep
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "parfill.dask needs dask: pip install 'parfill[dask]' (dask[array] "
        "and distributed)") from e

import parfill
from parfill import _arena, _window
from parfill._args import ShapeLike, is_int, resolve_dtype, resolve_shape
from parfill._native import NativeFunction, ctx_address, native_function

__all__ = ["populate", "random"]

# The keyword arguments of parfill.populate that apply to a block's fill.
_BLOCK_OPTIONS = ("workers", "schedule", "chunk", "backend", "vectorized",
                  "params", "ctx", "retries", "timeout", "translate")
# The ones that do not, and what to use instead.
_REFUSED = {
    "out": "a dask array is computed into the blocks dask asks for; write it "
           "with dask.array.store(x, target) or x.to_zarr(...)",
    "progress": "use dask's own progress reporting "
                "(dask.diagnostics.ProgressBar, or distributed's dashboard)",
}
# More blocks than this along one axis is a chunking mistake (dask would
# build a tuple of that many sizes first, exhausting memory).
_MAX_BLOCKS_PER_AXIS = 10**7


# ------------------------------------------------------------------ the API

def populate(func: str | Callable[..., object] | Any, shape: ShapeLike,
             dtype: npt.DTypeLike = np.float64, *, chunks: Any = "auto",
             **populate_options: Any) -> da.Array:
    """A lazy dask array equal to ``parfill.populate(func, shape, dtype,
    **populate_options)``, computed block by block where dask runs the
    blocks.

    Parameters
    ----------
    func : str, callable or native function
        As for :func:`parfill.populate`: an expression, a Python callable
        (called with the element's indices in the whole array) or a native
        function (called with global flat indices).
    shape : int or tuple of ints
    dtype : dtype
        Any bool, integer, floating or complex dtype (default float64).
    chunks : "auto", int, tuple, dict or -1
        The blocks, with ``dask.array``'s meaning (``normalize_chunks``).
    **populate_options
        ``workers``, ``schedule``, ``chunk``, ``backend``, ``vectorized``,
        ``params``, ``ctx``, ``retries``, ``timeout``, ``translate``: as for
        :func:`parfill.populate`, applied to each block's fill (``timeout``
        is per block). Without ``workers``/``backend`` a task uses its share
        of the cores (see the module's DESIGN). ``out`` and ``progress`` do
        not apply (TypeError).

    Returns
    -------
    dask.array.Array
        Named ``parfill-populate-<token>``, deterministic for the arguments.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, at once (the expression is compiled here too).
    """
    if not isinstance(func, str) and not callable(func):
        raise TypeError(
            f"func must be a callable or an expression string, not "
            f"{type(func).__name__}")
    dims = resolve_shape(shape)
    dt = resolve_dtype(dtype)
    _check_size(dims, dt)
    options = _check_options(populate_options)
    native = None if isinstance(func, str) else native_function(func)
    _dry_run(func, dims, dt, options)
    blocks = _chunks(chunks, dims, dt)
    travel: object = func
    key: object
    if native is not None:
        ctx = options.pop("ctx", None)
        travel = _Native(func, native, ctx)
        key = ("native", native.kind, native.address, _symbol_of(native.address),
               ctx_address(ctx))
    elif isinstance(func, str):
        key = ("expression", func)
    else:
        key = ("callable", _callable_token(func))
    if options.get("params") is not None:
        options["params"] = dict(options["params"])
    token = tokenize(key, dims, dt.str, blocks,
                     sorted((k, v) for k, v in options.items()))
    fill = _Fill("populate", travel, dims, dt, options)
    return _array(f"parfill-populate-{token}", fill, blocks, dt)


def random(shape: ShapeLike, dist: Literal["uniform", "normal"] = "uniform",
           seed: int = 0,
           dtype: npt.DTypeLike = np.float64, *, chunks: Any = "auto",
           stream: int = 0) -> da.Array:
    """A lazy dask array equal to ``parfill.random(shape, dist, seed, dtype,
    stream=stream)``: element ``e`` is a pure function of ``(seed, stream,
    e)`` with ``e`` its flat index in the whole array, whatever the chunks.

    Parameters are those of :func:`parfill.random`; ``chunks`` as for
    :func:`populate`. Each block is filled with its task's share of the
    cores (see the module's DESIGN).

    Returns
    -------
    dask.array.Array
        Named ``parfill-random-<token>``.
    """
    dims = resolve_shape(shape)
    dt = resolve_dtype(dtype)
    _check_size(dims, dt)
    # dist, seed, stream and the dtype checked by the fill itself, on no
    # elements, so both calls refuse the same values with the same messages.
    parfill.random((0,) * max(len(dims), 1), dist, seed, dt, stream=stream)
    blocks = _chunks(chunks, dims, dt)
    options = {"dist": dist, "seed": int(seed), "stream": int(stream)}
    token = tokenize(dims, dt.str, blocks, sorted(options.items()))
    fill = _Fill("random", None, dims, dt, options)
    return _array(f"parfill-random-{token}", fill, blocks, dt)


# ----------------------------------------------------------- the arguments

def _check_size(shape: tuple[int, ...], dt: np.dtype[Any]) -> None:
    if math.prod(shape) * dt.itemsize > np.iinfo(np.int64).max:
        raise ValueError(
            f"an array of shape {shape} and dtype {dt} is too big: "
            f"{math.prod(shape) * dt.itemsize} bytes overflow a 64-bit size")


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    for name in options:
        if name in _REFUSED:
            raise TypeError(f"{name} does not apply to parfill.dask.populate: "
                            f"{_REFUSED[name]}")
        if name not in _BLOCK_OPTIONS:
            raise TypeError(
                f"populate() got an unexpected keyword argument {name!r}")
    return dict(options)


def _dry_run(func: object, dims: tuple[int, ...], dt: np.dtype[Any],
             options: Mapping[str, Any]) -> None:
    """parfill.populate on no elements of the same number of dimensions:
    every option checked, an expression compiled (names, axes, params), a
    ``translate="always"`` function translated, and nothing called."""
    if dims == ():
        if not isinstance(func, str):
            # Zero dimensions have no empty shape: check the options with a
            # stand-in of one element instead of calling func here.
            parfill.populate(lambda: 0, (), dt, **options)
            return
        parfill.populate(func, (), dt, **options)
        return
    parfill.populate(func, (0,) * len(dims), dt, **options)  # type: ignore[call-overload]


def _chunks(chunks: Any, dims: tuple[int, ...],
            dt: np.dtype[Any]) -> tuple[tuple[int, ...], ...]:
    """``dask.array.core.normalize_chunks``, with what it lets through
    refused first: bools, a block size of 0 (a ZeroDivisionError there) or
    below -1, and more than _MAX_BLOCKS_PER_AXIS blocks along an axis (dask
    would build a tuple of that many sizes)."""
    per_axis: list[Any]
    if isinstance(chunks, Mapping):
        per_axis = list(chunks.values())
    elif isinstance(chunks, (tuple, list)):
        per_axis = list(chunks)
    else:
        per_axis = [chunks] * len(dims)
    for axis, size in enumerate(per_axis):
        explicit = size if isinstance(size, (tuple, list)) else None
        for s in explicit if explicit is not None else (size,):
            if isinstance(s, (bool, np.bool_)):
                raise TypeError(f"chunks must be ints, tuples of ints, "
                                f"'auto' or -1, not {chunks!r}")
            # Explicit sizes may be 0 (an empty block); a size per axis
            # (how long each block is) must be >= 1, or -1 for the axis.
            if is_int(s) and (int(s) < -1 or (s == 0 and explicit is None)):
                raise ValueError(
                    f"chunks {chunks!r}: a block size must be >= 1 (or -1 "
                    f"for the whole axis), not {s}")
        if explicit is None and is_int(size) and int(size) > 0 \
                and axis < len(dims) \
                and (isinstance(chunks, (tuple, list)) or is_int(chunks)):
            count = -(-dims[axis] // int(size))
            if count > _MAX_BLOCKS_PER_AXIS:
                raise ValueError(
                    f"chunks {chunks!r} make {count} blocks along an axis of "
                    f"{dims[axis]}: at most {_MAX_BLOCKS_PER_AXIS} (use "
                    f"larger chunks, or 'auto')")
    try:
        blocks = normalize_chunks(chunks, dims, dtype=dt)
    except (ValueError, TypeError) as e:
        raise type(e)(f"chunks {chunks!r} for shape {dims}: {e}") from None
    except Exception as e:  # dask's own arithmetic on what it did not check
        raise ValueError(f"chunks {chunks!r} for shape {dims}: {e}") from None
    if len(blocks) != len(dims) or any(
            any(not is_int(s) or s < 0 for s in axis) or sum(axis) != n
            for n, axis in zip(dims, blocks)):
        raise ValueError(f"chunks {chunks!r} do not fit shape {dims}")
    return tuple(tuple(int(s) for s in axis) for axis in blocks)


def _callable_token(func: object) -> object:
    """dask's token of a function (its pickle, or cloudpickle by value for
    lambdas and closures); for one that cannot be pickled at all (a closure
    over a lock), its identity: the same object gives the same name, and it
    cannot be reused by another while a graph holds it."""
    try:
        return tokenize(func, ensure_deterministic=True)
    except Exception:
        return ("unpicklable", type(func).__qualname__,
                getattr(func, "__qualname__", ""), id(func))


# --------------------------------------------------------------- the graph

def _array(name: str, fill: _Fill, blocks: tuple[tuple[int, ...], ...],
           dt: np.dtype[Any]) -> da.Array:
    x = _FilledArray(_graph(name, fill, blocks), name, blocks,
                     meta=np.empty((0,) * len(blocks), dt))
    x._fill = fill
    return x


def _graph(name: str, fill: _Fill,
           blocks: tuple[tuple[int, ...], ...]) -> HighLevelGraph:
    return HighLevelGraph.from_collections(name, _layer(name, fill, blocks),
                                           dependencies=())


def _layer(name: str, fill: _Fill, blocks: tuple[tuple[int, ...], ...]) -> Any:
    ind = tuple(range(len(blocks)))
    return _blockwise(fill, name, ind, ArraySliceDep(blocks), ind,
                      numblocks={}, _data_producer=True)


class _FilledArray(da.Array):
    """What populate and random return: a dask Array in every respect, whose
    own compute (or persist) on one process fills its blocks into one whole
    array and hands that out, instead of filling blocks apart and copying
    them together (DESIGN: Assembly). Everything derived from it (a slice,
    ``x + 1``, what persist returns) is a plain Array."""

    _fill: _Fill  # (set by _array: dask's Array.__new__ takes no more)

    def __dask_optimize__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        # Called for this collection's own compute/persist only (a graph
        # that merely contains it is optimised by its own collection), once
        # per call: the token names this call's arena. Pickled to
        # distributed's scheduler, self is a plain Array (no _fill): no arena.
        layers = getattr(dsk, "layers", None)
        own = self.dask.layers.get(self.name)
        fill = getattr(self, "_fill", None)
        if (isinstance(fill, _Fill) and own is not None and layers is not None
                and layers.get(self.name) is own and self.size > 0
                and self.ndim > 0):
            fill = fill.with_arena(_arena.new_token())
            layers = dict(layers)  # (the graph holds dask's finalize layer too)
            layers[self.name] = _layer(self.name, fill, self.chunks)
            dsk = HighLevelGraph(layers, dsk.dependencies)
        return da.Array.__dask_optimize__(dsk, keys, **kwargs)

    def __dask_postcompute__(self) -> tuple[Any, tuple[Any, ...]]:
        return _assemble, (self.chunks,)


def _assemble(results: Any, chunks: tuple[tuple[int, ...], ...]) -> Any:
    """The finalize step of a _FilledArray's compute: the arena its blocks
    were filled into if they are all of it, else dask's own concatenation."""
    whole = _arena.take(list(flatten(results)), chunks)
    return whole if whole is not None else finalize(results)


class _Fill:
    """One block's task: called with the block's slices of the whole."""

    __slots__ = ("kind", "func", "shape", "dtype", "options", "arena")

    def __init__(self, kind: str, func: object, shape: tuple[int, ...],
                 dtype: np.dtype[Any], options: dict[str, Any],
                 arena: str | None = None) -> None:
        self.kind, self.func, self.shape = kind, func, shape
        self.dtype, self.options, self.arena = dtype, options, arena

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Fill, (self.kind, self.func, self.shape, self.dtype,
                        self.options, self.arena))

    def with_arena(self, token: str) -> _Fill:
        return _Fill(self.kind, self.func, self.shape, self.dtype,
                     self.options, token)

    def __call__(self, *slices: slice) -> npt.NDArray[Any]:
        # ArraySliceDep gives one tuple of slices; a 0-d array none.
        box: Sequence[slice] = slices[0] if slices else ()  # type: ignore[assignment]
        origin = tuple(int(s.start or 0) for s in box)
        block = tuple(int(s.stop) - int(s.start or 0) for s in box)
        share, threaded = _task_share()
        out = self._window_of_arena(origin, block)
        if self.kind == "random":
            return _window.random_block(self.shape, origin, block,
                                        dtype=self.dtype, workers=share,
                                        out=out, **self.options)
        options = dict(self.options)
        func = self.func
        python = not isinstance(func, (str, _Native))
        if isinstance(func, _Native):
            if func.ctx is not None:
                options["ctx"] = func.ctx
            func = func.func
        if "workers" not in options:
            options["workers"] = share
            if threaded and python and "backend" not in options:
                # A Python callable: on threads it would hold the GIL with
                # the other tasks; fork its share of workers instead. (A
                # translated one runs on the thread pool all the same.)
                options["backend"] = "processes"
        return _window.populate_block(
            func, self.shape, origin, block,  # type: ignore[arg-type]
            self.dtype, out=out, **options)

    def _window_of_arena(self, origin: tuple[int, ...],
                         block: tuple[int, ...]) -> npt.NDArray[Any] | None:
        """This block's window of its compute's arena, or None (a block of
        its own): not in another process nor on a distributed worker, whose
        results are held, spilled and sent block by block."""
        if not _arena.usable(self.arena) or _distributed_worker() is not None:
            return None
        base = _arena.claim(self.arena, self.shape, self.dtype, origin)  # type: ignore[arg-type]
        if base is None:
            return None
        return base[tuple(slice(o, o + n) for o, n in zip(origin, block))]


# --------------------------------------------------------- cores in a task

def _task_share() -> tuple[int, bool]:
    """(parfill workers for the running task, whether other tasks run on
    this process's threads at the same time)."""
    worker = _distributed_worker()
    if worker is not None:
        nthreads = int(getattr(getattr(worker, "state", worker), "nthreads",
                               0) or getattr(worker, "nthreads", 1) or 1)
        return max(1, nthreads // nthreads), nthreads > 1
    cores = parfill.cpu_count()
    thread = threading.current_thread()
    pool = _thread_pool_size(thread)
    if pool is not None:
        return max(1, cores // pool), pool > 1
    if (thread is threading.main_thread()
            and multiprocessing.parent_process() is not None):
        # A process of dask's process scheduler: one task at a time here,
        # beside as many sibling processes as it has by default.
        from dask.system import CPU_COUNT
        return max(1, cores // max(1, CPU_COUNT)), False
    return cores, False  # the synchronous scheduler, or a plain call


def _distributed_worker() -> Any:
    if "distributed" not in sys.modules:
        return None  # never imported: not in a distributed worker
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


def _thread_pool_size(thread: threading.Thread) -> int | None:
    """The number of threads of the dask thread pool that owns ``thread``
    (its default pool, the pools it made for ``num_workers=``, or a
    ``pool=`` set in dask's config); None on no such pool's thread."""
    from dask import threaded
    pools: list[Any] = [threaded.default_pool, dask.config.get("pool", None)]
    for per_thread in list(threaded.pools.values()):
        pools.extend(list(per_thread.values()))
    # By name: a new pool thread runs its first task before the executor
    # adds it to its _threads set, but is named "<prefix>_<n>" from start.
    prefix = thread.name.rpartition("_")[0]
    for pool in pools:
        if pool is not None and (
                getattr(pool, "_thread_name_prefix", None) == prefix
                or thread in getattr(pool, "_threads", ())):
            return int(pool._max_workers)
    if thread.name.startswith("ThreadPoolExecutor"):
        # Some other executor's thread: assume one of dask's default size.
        from dask.system import CPU_COUNT
        return max(1, CPU_COUNT)
    return None


# ---------------------------------------------------- native functions away

_PROTOTYPES = {
    "element": ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64),
    "index": ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_int64),
                              ctypes.c_int),
    "block": ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_void_p),
}


class _Native:
    """A native function (and its ctx) in a task. In this process it is the
    caller's object; pickled, it is the library path and symbol at its
    address, and in the receiving process that symbol with its prototype."""

    __slots__ = ("func", "native", "ctx")

    def __init__(self, func: object, native: NativeFunction,
                 ctx: object) -> None:
        self.func, self.native, self.ctx = func, native, ctx

    def __reduce__(self) -> tuple[Any, ...]:
        if self.ctx is not None:
            raise TypeError(
                "a native function's ctx is an address in this process and "
                "cannot be sent to another: use ctx only on dask's threaded "
                "or synchronous scheduler")
        where = _symbol_of(self.native.address)
        if where is None:
            raise TypeError(
                f"the native function at {hex(self.native.address)} cannot be "
                f"sent to another process: no shared library exports a symbol "
                f"at that address (dladdr); export it from a library loaded "
                f"with ctypes.CDLL, or use dask's threaded scheduler")
        return (_native_from_symbol, (*where, self.native.kind))


def _native_from_symbol(path: str, symbol: str, kind: str) -> _Native:
    lib = ctypes.CDLL(path)
    address = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value or 0
    func = _PROTOTYPES[kind](address)
    return _Native(func, NativeFunction(address, kind), None)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _dladdr() -> Any:
    for name in (None, "libdl.so.2"):
        try:
            fn = ctypes.CDLL(name).dladdr
        except (OSError, AttributeError):
            continue
        fn.argtypes = (ctypes.c_void_p, ctypes.POINTER(_DlInfo))
        fn.restype = ctypes.c_int
        return fn
    return None


def _symbol_of(address: int) -> tuple[str, str] | None:
    """(absolute library path, symbol) exported exactly at ``address``, or
    None."""
    dladdr = _dladdr()
    info = _DlInfo()
    if dladdr is None or not dladdr(address, ctypes.byref(info)):
        return None
    if not info.dli_fname or not info.dli_sname or info.dli_saddr != address:
        return None
    path = os.fsdecode(info.dli_fname)
    return os.path.abspath(path), info.dli_sname.decode()
