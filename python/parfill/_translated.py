"""Running a translated Python function (SPEC section 9): the native fill and
its bail-out loop.

The native fill (``_core.fill_translated``) computes elements on the thread
pool, GIL released, until an element needs Python (a *bail*: an int leaving
int64, a division by zero, a value the dtype cannot hold, ...). It then
returns the lowest bailing flat index ``k`` with every element below ``k``
computed. That element is computed by calling the function -- so its value,
or its exception with the usual note, is Python's -- and the native fill
resumes after it. A function that bails often is not worth the round trips:
the rest is handed to the Python engine (the backend ``auto`` would choose,
with every guarantee: timeout, retries, Ctrl-C).

Whether to translate at all (``translate=``, tracers, worker processes) is
decided here too, so that :mod:`parfill._populate` only asks.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Literal

import numpy as np
import numpy.typing as npt

from parfill import _core, _errors
from parfill._args import Schedule, Window
from parfill._progress import Reporter
from parfill._translate import Kernel, TranslationError, translate

__all__ = ["Translate", "TRANSLATE_MODES", "kernel_for", "run"]

#: ``populate(..., translate=)``.
Translate = Literal["auto", "never", "always"]
TRANSLATE_MODES = ("auto", "never", "always")

# The rest goes to the Python engine after more bails than this...
_MAX_BAILS = 64
# ...or once bails are denser than one per this many elements so far (after
# a few: one division by zero at element 0 is no pattern).
_BAIL_SPACING = 1000
_MIN_BAILS_FOR_DENSITY = 4

#: Tests set this: an exception from the translator other than
#: TranslationError (a bug) propagates instead of leaving the function to
#: Python quietly. ``translate="always"`` always propagates it.
strict = False

# sys.monitoring tools that must see every call (3.12+): a debugger, a
# coverage tool, a profiler.
_MONITORING_TOOLS: tuple[int, ...] = (0, 1, 2)


def _observed() -> bool:
    """A debugger, coverage tool or profiler watches Python calls: they must
    see the function run, so ``auto`` leaves it to Python."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:
        return any(monitoring.get_tool(t) is not None
                   for t in _MONITORING_TOOLS)
    return False


def kernel_for(func: Callable[..., object], ndim: int, mode: str,
               vectorized: bool) -> Kernel | None:
    """The translation to run for ``populate(func, ...)``, or None for
    calling Python. ``always`` raises TranslationError instead of None."""
    if mode == "never":
        return None
    if vectorized:
        if mode == "always":
            raise TranslationError("vectorized=True (a vectorized function is "
                                   "called on arrays)")
        return None
    if mode == "auto" and (_core.in_worker() or _observed()):
        # Inside a process-team worker: no thread pool of our own there;
        # observed: the tool must see the calls.
        return None
    try:
        kernel = translate(func, ndim)
        kernel.code    # serialised against the VM's table here, not mid-fill
        return kernel
    except TranslationError:
        if mode == "always":
            raise
        return None
    except Exception:
        if mode == "always" or strict:
            raise
        return None    # a translator bug must never cost a right result


#: ``rest(result, start, left)`` hands elements ``[start, size)`` of
#: ``result`` to the Python engine with ``left`` seconds (-1: no deadline).
_Rest = Callable[[npt.NDArray[Any], int, float], npt.NDArray[Any]]


class _Deadline:
    """The call's timeout across its native and Python parts."""

    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout if timeout > 0 else math.inf

    def left(self) -> float:
        """Seconds left (-1.0: no deadline); TimeoutError when none are."""
        if self.end == math.inf:
            return -1.0
        left = self.end - time.monotonic()
        if left <= 0:
            raise _errors.TimeoutError("timed out")
        return left


def _offset_progress(reporter: Reporter | None, first: int,
                     size: int) -> Callable[[int, int], None] | None:
    """The native fill counts ``[first, size)``; the user sees the call."""
    if reporter is None:
        return None
    if first == 0:
        return reporter
    return lambda done, total: reporter(first + done, size)


def run(func: Callable[..., object], kernel: Kernel,
        result: npt.NDArray[Any], workers: int, schedule: Schedule,
        chunk: int | None, reporter: Reporter | None, timeout: float,
        retries: int, rest: _Rest,
        window: Window | None = None) -> npt.NDArray[Any]:
    """Fills ``result`` with the translated ``func``: natively, each bailing
    element by calling ``func``, and after too many bails the rest by
    ``rest``. With ``timeout``/``retries`` a bailing element runs in a
    supervised worker process, never in the caller."""
    size = result.size
    shape = result.shape
    deadline = _Deadline(timeout)
    supervised = timeout > 0 or retries > 0
    first, bails = 0, 0
    while True:
        k = _core.fill_translated(
            kernel.code, kernel.iconsts, kernel.fconsts, kernel.ndim,
            kernel.nregs, result, workers=workers, schedule=schedule,
            chunk=chunk or 0, progress=_offset_progress(reporter, first, size),
            timeout=deadline.left(), first=first, window=window)
        if k < 0:
            return result
        assert first <= k < size, (first, k, size)
        bails += 1
        if bails > _MAX_BAILS or (bails >= _MIN_BAILS_FOR_DENSITY and
                                  bails * _BAIL_SPACING > k + 1):
            return rest(result, k, deadline.left())
        if supervised:
            _element_supervised(func, result, k, deadline.left(), retries,
                                window)
            first = k + 1
        else:
            first = _element_here(func, result, k, deadline.left(), window)
        if reporter is not None:
            reporter(first, size)
        if first >= size:
            return result


def _element_here(func: Callable[..., object], result: npt.NDArray[Any],
                  k: int, timeout: float, window: Window | None) -> int:
    """Element ``k`` by calling ``func`` in the caller, through the serial
    engine (its store, its note on an exception, its Ctrl-C and timeout
    checks); returns the next element to fill (``k + 1``, or a little more
    if the engine computed further: its first step is one element)."""
    return _core.fill_callable(func, result, backend="serial", workers=1,
                               chunk=1, start=k, budget=1e-9, timeout=timeout,
                               window=window)


_NOTE = "parfill: raised while computing element "


def _element_supervised(func: Callable[..., object],
                        result: npt.NDArray[Any], k: int, timeout: float,
                        retries: int, window: Window | None) -> None:
    """Element ``k`` by calling ``func`` in a supervised worker process (the
    call's timeout and retries): the process engine over one element, a
    one-element shared buffer the worker stores into as ``a[idx] = value``
    stores (same dtype, so the copy back is exact)."""
    at = tuple(int(i) for i in np.unravel_index(k, result.shape)) \
        if result.ndim else ()
    # The index func sees, and the note names: the whole's with a window.
    idx = at if window is None else tuple(
        i + o for i, o in zip(at, window[1]))
    one = _core.shared_empty((1,), result.dtype)

    def element(_: int) -> object:
        return func(*idx)

    try:
        _core.fill_callable(element, one, backend="processes", workers=1,
                            chunk=1, timeout=timeout, retries=retries)
    except _errors.WorkerDiedError as e:
        raise _errors.WorkerDiedError(e.worker, e.pid, e.exitcode, e.signal,
                              None if e.start is None else k,
                              None if e.stop is None else k + 1) from None
    except BaseException as e:
        _renote(e, idx)
        raise
    result[at] = one[0]


def _renote(exc: BaseException, idx: tuple[int, ...]) -> None:
    """The note of the one-element fill names element (0,): name the
    element it stands for."""
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        return
    wrong = _NOTE + "(0,) in "
    for n, note in enumerate(notes):
        if isinstance(note, str) and note.startswith(wrong):
            notes[n] = f"{_NOTE}{idx} in {note[len(wrong):]}"
