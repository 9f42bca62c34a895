"""The article's three multiprocessing approaches, made correct and generic.

Private: used by ``python -m parfill demo`` (which ships with the package) and
imported from here by the checkout's benchmarks (``benchmarks/peers.py``).

These are the baseline parfill is measured against (``seed/000_*``: "How can
multiprocessing accelerate NumPy array population?"). Each is kept faithful to
the article's code -- same processes, same data movement, same per-element
Python loop -- with three changes:

* **Generic.** The article hard-codes ``(start + i) * base_value**2``; here each
  approach takes an element function ``f(k)`` of the flat (C-order) index ``k``,
  a size, a number of processes and a dtype, and returns a 1-D array. For an
  N-d workload pass a function of the flat index (``Workload.flat_func``) and
  reshape the result.
* **The remainder bug is fixed.** The article partitions with
  ``chunk_size = total_size // num_processes`` and ``num_processes`` chunks of
  that size, so ``total_size % num_processes`` trailing elements were never
  computed (approach 1 even returned a shorter array). Here the last chunk
  takes the remainder; nothing else about the partitioning changes.
* **No hangs, no leaks.** Approach 3's workers swallowed every exception and
  left the parent blocked on ``result_queue.get()`` forever; here a failing
  element is reported back and re-raised, and a worker that dies is noticed.
  Approach 2's workers close their ``SharedMemory`` handle.

Start method: all three use the ``"fork"`` context explicitly. With fork the
children inherit the parent's memory, so the element function is *never
pickled*: approach 3 passes it straight to ``Process(args=...)`` and approaches
1-2 hand it to each pool worker through ``Pool(initializer=...,
initargs=...)``, neither of which is pickled under fork. Lambdas and closures
therefore work, which they would not under "spawn" or "forkserver". (The
article relies on the platform default, which is fork on Linux up to Python
3.13.) Only the per-task arguments -- ints, a dtype, a shared-memory name -- and
the results travel through pipes, exactly as in the article.

Like the article, approach 2 creates its block in ``/dev/shm`` through
``multiprocessing.shared_memory`` (and starts Python's resource tracker);
parfill itself never does.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as _queue
import traceback
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import shared_memory
from typing import Any, Final

import numpy as np

__all__ = [
    "APPROACHES",
    "chunk_bounds",
    "populate_array_pool",
    "populate_array_queue",
    "populate_array_shared_memory",
]

ElementFunc = Callable[[int], Any]

#: The start method every approach uses (see the module docstring).
START_METHOD: Final = "fork"


def _context() -> mp.context.ForkContext:
    return mp.get_context(START_METHOD)


def chunk_bounds(total_size: int, num_processes: int) -> list[tuple[int, int]]:
    """The article's partition, remainder bug fixed: ``[(start, size), ...]``.

    ``num_processes`` chunks of ``total_size // num_processes`` elements, the
    last one extended by the remainder, so the sizes always sum to
    ``total_size`` (the article's dropped the last ``total_size % num_processes``).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if total_size < 0:
        raise ValueError(f"total_size must be >= 0, got {total_size}")
    chunk_size = total_size // num_processes
    bounds = [(i * chunk_size, chunk_size) for i in range(num_processes)]
    last_start = (num_processes - 1) * chunk_size
    bounds[-1] = (last_start, total_size - last_start)  # the fix
    return bounds


# The element function inside a pool worker, set by the initializer (fork: the
# initializer's arguments are inherited, not pickled).
_worker_func: ElementFunc | None = None


def _init_worker(func: ElementFunc) -> None:
    global _worker_func
    _worker_func = func


# ---------------------------------------------------------------------------
# Approach 1: Pool.map over chunks, each returning a sub-array; concatenate.

def _populate_subarray(args: tuple[int, int, np.dtype]) -> np.ndarray:
    start_index, size, dtype = args
    f = _worker_func
    assert f is not None  # set by _init_worker
    subarray = np.empty(size, dtype=dtype)
    for i in range(size):
        subarray[i] = f(start_index + i)
    return subarray


def populate_array_pool(f: ElementFunc, total_size: int, num_processes: int,
                        dtype: Any = np.float64) -> np.ndarray:
    """Article approach 1: ``Pool.map`` over ``num_processes`` chunks.

    Each worker builds its chunk as a new array, which is pickled back to the
    parent; the parent concatenates them (a second copy). Returns a 1-D array
    of ``total_size`` elements, element ``k`` equal to ``f(k)`` stored into
    ``dtype``.
    """
    dtype = np.dtype(dtype)
    indices = [(start, size, dtype) for start, size in chunk_bounds(total_size, num_processes)]
    with _context().Pool(num_processes, initializer=_init_worker, initargs=(f,)) as pool:
        subarrays = pool.map(_populate_subarray, indices)
    return np.concatenate(subarrays)


# ---------------------------------------------------------------------------
# Approach 2: workers write views of one shared_memory block; copy out.

def _populate_shared_subarray(args: tuple[str, int, int, np.dtype]) -> None:
    shared_mem_name, start_index, size, dtype = args
    existing_shm = shared_memory.SharedMemory(name=shared_mem_name)
    try:
        shared_array = np.ndarray(size, dtype=dtype, buffer=existing_shm.buf,
                                  offset=start_index * dtype.itemsize)
        f = _worker_func
        assert f is not None  # set by _init_worker
        for i in range(size):
            shared_array[i] = f(start_index + i)
        del shared_array  # release the buffer export so close() succeeds
    finally:
        existing_shm.close()


def populate_array_shared_memory(f: ElementFunc, total_size: int, num_processes: int,
                                 dtype: Any = np.float64) -> np.ndarray:
    """Article approach 2: one ``SharedMemory`` block, workers fill views of it.

    After the pool finishes, the parent copies the block into a private array,
    closes and unlinks the segment (as the article does). Returns a 1-D array.
    """
    dtype = np.dtype(dtype)
    if total_size == 0:  # SharedMemory(size=0) is an error
        return np.empty(0, dtype=dtype)
    shm = shared_memory.SharedMemory(create=True, size=total_size * dtype.itemsize)
    try:
        indices = [(shm.name, start, size, dtype)
                   for start, size in chunk_bounds(total_size, num_processes)]
        with _context().Pool(num_processes, initializer=_init_worker, initargs=(f,)) as pool:
            pool.map(_populate_shared_subarray, indices)
        shared_array = np.ndarray(total_size, dtype=dtype, buffer=shm.buf)
        result = shared_array.copy()
        del shared_array
    finally:
        shm.close()
        shm.unlink()
    return result


# ---------------------------------------------------------------------------
# Approach 3: a Queue of single indices, poison pills, a result queue.

class _Failure:
    """Sent on the result queue instead of a value when ``f(index)`` raised."""

    def __init__(self, text: str):
        self.text = text


def _populate_queue_element(f: ElementFunc, task_queue: Any, result_queue: Any) -> None:
    while True:
        index = task_queue.get()
        if index is None:
            break  # poison pill
        try:
            value = f(index)
        except BaseException:  # report instead of silently dying (article bug)
            result_queue.put((index, _Failure(traceback.format_exc())))
            break
        result_queue.put((index, value))


def _get_result(result_queue: Any, processes: Sequence[mp.process.BaseProcess]) -> Any:
    """``result_queue.get()``, but raise instead of hanging if a worker died."""
    while True:
        try:
            return result_queue.get(timeout=0.5)
        except _queue.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(
                    f"queue worker pid {dead[0].pid} died with exit code {dead[0].exitcode}"
                ) from None


def populate_array_queue(f: ElementFunc, total_size: int, num_processes: int,
                         dtype: Any = np.float64, *,
                         indices: Iterable[int] | None = None) -> np.ndarray:
    """Article approach 3: one task per element through a ``multiprocessing.Queue``.

    All indices are queued first, then one poison pill (``None``) per process;
    each worker sends ``(index, f(index))`` back on a result queue and the
    parent stores them one by one. Returns a 1-D array of ``total_size``.

    ``indices`` (default: all of ``range(total_size)``) restricts the work to a
    subset -- the benchmark uses an evenly strided sample to time this approach
    on large sizes and scale linearly; the other elements are then left zero.
    """
    dtype = np.dtype(dtype)
    todo: Sequence[int]
    if indices is None:
        todo = range(total_size)
        result_array = np.empty(total_size, dtype=dtype)
    else:
        todo = list(indices)
        result_array = np.zeros(total_size, dtype=dtype)
    ctx = _context()
    task_queue = ctx.Queue()
    result_queue = ctx.Queue()
    count = 0
    for i in todo:
        task_queue.put(i)
        count += 1
    for _ in range(num_processes):
        task_queue.put(None)  # poison pill for each process

    processes = []
    ok = False
    try:
        for _ in range(num_processes):
            p = ctx.Process(target=_populate_queue_element, args=(f, task_queue, result_queue))
            processes.append(p)
            p.start()
        for _ in range(count):
            idx, value = _get_result(result_queue, processes)
            if isinstance(value, _Failure):
                raise RuntimeError(f"element {idx} failed in a queue worker:\n{value.text}")
            result_array[idx] = value
        for p in processes:
            p.join()
        ok = True
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
                p.join()
        for q in (task_queue, result_queue):
            q.close()
            if ok:
                q.join_thread()  # everything was consumed: the feeder ends now
            else:
                q.cancel_join_thread()
    return result_array


#: ``(key, label, function)`` for each approach, in the article's order.
APPROACHES: tuple[tuple[str, str, Callable[..., np.ndarray]], ...] = (
    ("article1", "article 1: Pool.map + concatenate", populate_array_pool),
    ("article2", "article 2: shared_memory", populate_array_shared_memory),
    ("article3", "article 3: Queue of indices", populate_array_queue),
)
