"""One compute's blocks written straight into the whole array (parfill.dask's
"Assembly" in its DESIGN).

``x.compute()`` of a dask array normally fills every block into an array of
its own and then copies them all into the result (dask's ``concatenate3``,
one thread): a second pass over the whole array, twice its memory at the
peak. When one compute of a parfill.dask array runs every block in one
process (dask's threaded or synchronous scheduler), its blocks are instead
filled into windows of one whole array, the *arena*, and the finalize step
hands that array out when it can prove the blocks are exactly its windows.

Safety rests on one rule: a window of an arena is written by one task only.
The arena is named by a token made for that one compute (the array's
optimizer makes a new one each time), and :func:`claim` gives a window
to the first task that asks for it and ``None`` to any later one (a retry,
a task of another compute that reuses an optimized graph), which then fills
a block of its own. So when :func:`take` receives every window of an arena
as the compute's block results, every window was written by that compute's
own tasks and by no one else, and handing the arena out gives the caller
memory that nothing else writes or holds. In every other case (a block from
elsewhere, a window missing) it returns None and dask copies as usual.

The registry holds arenas weakly: an arena lives while block views of it
do, and an arena whose compute failed goes with its views.
"""
from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

_LOCK = threading.Lock()
_COUNTER = itertools.count()


class _Entry:
    __slots__ = ("ref", "claimed")

    def __init__(self, base: npt.NDArray[Any]) -> None:
        self.ref = weakref.ref(base)
        self.claimed: set[tuple[int, ...]] = set()


_ARENAS: dict[str, _Entry] = {}


def new_token() -> str:
    """A token for one compute, valid in this process only."""
    return f"{os.getpid()}:{next(_COUNTER)}"


def usable(token: str | None) -> bool:
    """Whether a task may fill into the arena of ``token``: only in the
    process that made it (not a child of dask's process scheduler, whose
    blocks travel back pickled)."""
    return token is not None and token.partition(":")[0] == str(os.getpid())


def claim(token: str, shape: tuple[int, ...], dtype: np.dtype[Any],
          origin: tuple[int, ...]) -> npt.NDArray[Any] | None:
    """The arena of ``token`` (made on first use) with the window at
    ``origin`` now the caller's, or None if that window was claimed
    before."""
    with _LOCK:
        entry = _ARENAS.get(token)
        base = entry.ref() if entry is not None else None
        if entry is None or base is None:
            for name in [t for t, e in _ARENAS.items() if e.ref() is None]:
                del _ARENAS[name]
            base = np.empty(shape, dtype)
            entry = _ARENAS[token] = _Entry(base)
        elif origin in entry.claimed:
            return None
        entry.claimed.add(origin)
        return base


def take(blocks: Sequence[Any], chunks: tuple[tuple[int, ...], ...]
         ) -> npt.NDArray[Any] | None:
    """The arena whose windows ``blocks`` are, in C order of the blocks of
    ``chunks`` (each non-empty block a view of it at its place: only the
    one task that claimed a window holds such a view); its token is retired
    so that no task claims it again. None otherwise."""
    first = next((b for b in blocks if getattr(b, "size", 0) > 0), None)
    base = getattr(first, "base", None)
    if not isinstance(base, np.ndarray):
        return None
    with _LOCK:
        token = next((t for t, e in _ARENAS.items() if e.ref() is base), None)
        if token is None or not _are_windows(blocks, base, chunks):
            return None
        del _ARENAS[token]
        return base


def _are_windows(blocks: Sequence[Any], base: npt.NDArray[Any],
                 chunks: tuple[tuple[int, ...], ...]) -> bool:
    starts = [itertools.accumulate(axis[:-1], initial=0) for axis in chunks]
    windows = itertools.product(*(zip(s, axis) for s, axis in zip(starts, chunks)))
    address = base.__array_interface__["data"][0]
    count = 0
    for block, window in zip(blocks, windows):
        count += 1
        offset = sum(start * stride for (start, _), stride
                     in zip(window, base.strides))
        if not (isinstance(block, np.ndarray)
                and block.shape == tuple(n for _, n in window)):
            return False
        # An empty block holds nothing to place (dask makes those itself).
        if block.size > 0 and not (
                block.base is base and block.strides == base.strides
                and block.__array_interface__["data"][0] == address + offset):
            return False
    return count == len(blocks) == math.prod(len(axis) for axis in chunks)
