"""parfill's exceptions, and how failures in workers become them."""
from __future__ import annotations

import builtins
import functools
import importlib
import io
import pickle
import sys
import traceback
from typing import Any, Callable, Sequence, TypeVar

_T = TypeVar("_T")
# What a class travels as when pickle cannot name it (see "transport").
_ClassRef = tuple[str, str, str, int]

__all__ = [
    "ExpressionError",
    "RemoteTraceback",
    "TimeoutError",
    "WorkerDiedError",
    "WorkerError",
]


class ExpressionError(ValueError):
    """An expression could not be compiled.

    ``expression`` is the text and ``position`` the 0-based character offset of
    the fault; ``str()`` shows the expression with a caret under it.
    """

    def __init__(self, message: str, expression: str = "", position: int = -1):
        self.message = message
        self.expression = expression
        self.position = position
        super().__init__(message, expression, position)

    def __str__(self) -> str:
        if self.position < 0:  # an empty expression still gets its caret
            return self.message
        return f"{self.message}\n  {self.expression}\n  {' ' * self.position}^"


class WorkerError(RuntimeError):
    """A worker raised an exception that could not be sent back as itself
    (its class exists only in the worker, or it cannot be rebuilt).

    The exception raised is then a subclass of both WorkerError and the
    nearest base class of the original that the caller has (so ``except
    ValueError:`` still catches a lost ValueError subclass), named like the
    original class. ``type_name`` is the qualified name of the original type
    and ``text`` its ``str()``.
    """

    def __init__(self, type_name: str, text: str):
        self.type_name = type_name
        self.text = text
        super().__init__(f"{type_name}: {text}")


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as text.

    Attached as ``__cause__`` of the exception re-raised in the caller.
    """

    def __init__(self, tb: str):
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return "\n\n" + self.tb.rstrip("\n")


class WorkerDiedError(RuntimeError):
    """A worker process ended without finishing its work (signal, ``os._exit``,
    out-of-memory kill).

    Attributes: ``worker`` (its number), ``pid``, ``exitcode`` (``None`` if it
    was killed by a signal), ``signal`` (``None`` if it exited), and ``start``
    and ``stop``, the flat element range it held (``None`` if it held none).
    """

    def __init__(self, worker: int, pid: int, exitcode: int | None,
                 signal: int | None, start: int | None, stop: int | None):
        self.worker = worker
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal
        self.start = start
        self.stop = stop
        super().__init__(_died_message(worker, pid, exitcode, signal, start, stop))

    def __reduce__(self) -> tuple[type[WorkerDiedError], tuple[
            int, int, int | None, int | None, int | None, int | None]]:
        return (type(self), (self.worker, self.pid, self.exitcode, self.signal,
                             self.start, self.stop))


class TimeoutError(builtins.TimeoutError):  # noqa: A001 - a subclass, on purpose
    """The call ran longer than its ``timeout``; its workers were stopped."""


def _died_message(worker: int, pid: int, exitcode: int | None,
                  sig: int | None, start: int | None, stop: int | None) -> str:
    if sig is not None:
        import signal as signal_module
        try:
            how = f"was killed by signal {sig} ({signal_module.Signals(sig).name})"
        except ValueError:
            how = f"was killed by signal {sig}"
    else:
        how = f"exited with status {exitcode}"
    held = (f"while computing elements [{start}, {stop})" if start is not None
            else "holding no elements")
    return f"worker {worker} (pid {pid}) {how} {held}"


# ---------------------------------------------------------------- transport
# A worker that catches an exception packs it with pack_exception(); the caller
# rebuilds it with element_failed(). Both are called from the C extension.
#
# Why classes travel by identity: workers are forked, so a class that pickle
# cannot name (defined inside a function, or under a name that no longer
# points at it) still exists in the caller at the same address. The worker
# sends (module, qualname, id) for such a class and the caller looks for a
# live class with exactly that identity among the subclasses of its bases --
# it never dereferences the number. A class created in the worker after the
# fork is not found, and then the caller raises a WorkerError that is also an
# instance of the nearest base class it does find.

# What the process team can carry (callable.c gives the team 1 MiB).
_PAYLOAD_LIMIT = 1 << 20
# Reserved for the payload's tuple, type names and the base-class list.
_PAYLOAD_OVERHEAD = 16 << 10


def _safe(fn: Callable[[], _T], default: _T) -> _T:
    try:
        return fn()
    except BaseException:
        return default


def _type_name(kind: type) -> str:
    module = _safe(lambda: kind.__module__, "?")
    qualname = _safe(lambda: kind.__qualname__, "?")
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except BaseException as e:
        return f"<str() of the exception failed: {_safe(lambda: repr(e), '?')}>"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except BaseException:
        return f"<{_type_name(type(value))} object (repr() failed)>"


def _shorten(text: str, budget: int) -> str:
    """`text` in at most about `budget` UTF-8 bytes: its head and tail with a
    marker saying how much was cut from the middle."""
    budget = max(int(budget), 64)
    if len(text) * 4 <= budget or len(text.encode("utf-8", "surrogatepass")) <= budget:
        return text
    keep = max((budget - 64) // (1 if text.isascii() else 4), 16)
    head, tail = keep // 2, keep - keep // 2
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[-tail:]}"


def _by_reference(cls: type) -> bool:
    """Whether pickle can name `cls` (module attribute path leads to it)."""
    try:
        obj: Any = sys.modules.get(cls.__module__)
        if obj is None:
            obj = importlib.import_module(cls.__module__)
        for part in cls.__qualname__.split("."):
            obj = getattr(obj, part)
        return obj is cls
    except BaseException:
        return False


def _find_class(module: str, qualname: str, ident: int) -> type | None:
    """The live class with this module, qualname and id(), or None. Searches
    the subclasses of BaseException, then of object (every class)."""
    for root in (BaseException, object):
        seen: set[int] = set()
        stack: list[type] = [root]
        while stack:
            c = stack.pop()
            if id(c) in seen:
                continue
            seen.add(id(c))
            if (id(c) == ident and c.__qualname__ == qualname
                    and c.__module__ == module):
                return c
            try:
                stack.extend(type.__subclasses__(c))
            except TypeError:
                pass
    return None


def _class_ref(cls: type) -> _ClassRef:
    return ("parfill-class", cls.__module__, cls.__qualname__, id(cls))


def _resolve_ref(ref: _ClassRef) -> type | None:
    """A class from _class_ref(): the live class with that identity, else
    (for a class pickle could name) the one its name leads to; None."""
    _, module, qualname, ident = ref
    named: Any = sys.modules.get(module)
    try:
        for part in qualname.split("."):
            named = getattr(named, part)
    except AttributeError:
        named = None
    if isinstance(named, type) and id(named) == ident:
        return named
    found = _find_class(module, qualname, ident)
    if found is not None:
        return found
    if isinstance(named, type) and "<locals>" not in qualname:
        return named
    return None


class _Pickler(pickle.Pickler):
    """Pickles classes pickle cannot name as references by identity."""

    def persistent_id(self, obj: object) -> _ClassRef | None:
        if isinstance(obj, type) and not _by_reference(obj):
            return _class_ref(obj)
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: object) -> type:
        cls = _resolve_ref(pid) if isinstance(pid, tuple) and len(pid) == 4 \
            else None
        if cls is None:
            raise pickle.UnpicklingError(f"class {pid!r} is not in this process")
        return cls


def _dumps(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _loads(blob: bytes) -> Any:
    return _Unpickler(io.BytesIO(blob)).load()


def _rebuild(cls: type[BaseException], args: tuple[object, ...],
             state: dict[str, object]) -> BaseException:
    """An instance of exception class `cls` with these args and attributes,
    without calling an __init__ whose signature the args may not fit."""
    try:
        exc = cls(*args)
    except BaseException:
        exc = cls.__new__(cls, *args)
    exc.args = args
    for key, value in state.items():
        try:
            setattr(exc, key, value)
        except BaseException:
            pass
    return exc


def _fit(value: object, budget: int) -> object:
    """`value` if it pickles within `budget` bytes, else a shortened str or
    repr of it."""
    try:
        if len(_dumps(value)) <= budget:
            return value
    except BaseException:
        pass
    if isinstance(value, str):
        return _shorten(value, budget)
    return _shorten(_safe_repr(value), budget)


def _exception_blob(exc: BaseException,
                    budget: int) -> tuple[str, bytes] | None:
    """("whole", pickle) when the exception pickles, unpickles and fits;
    else ("parts", pickle of (class, args, attributes)) with the parts that
    do not pickle or fit replaced by shortened reprs; None when even that
    fails."""
    try:
        blob = _dumps(exc)
        if len(blob) <= budget:
            again = _loads(blob)
            if type(again) is type(exc):
                return ("whole", blob)
    except BaseException:
        pass
    try:
        args = exc.args if isinstance(exc.args, tuple) else (exc.args,)
        state = dict(getattr(exc, "__dict__", None) or {})
        parts = len(args) + len(state) + 1
        each = max((budget - 1024) // parts, 256)
        args = tuple(_fit(a, each) for a in args)
        state = {str(k): _fit(v, each) for k, v in state.items()}
        blob = _dumps((type(exc), args, state))
        cls, args2, state2 = _loads(blob)
        _rebuild(cls, args2, state2)  # it must rebuild here to rebuild there
        return ("parts", blob)
    except BaseException:
        return None


def pack_exception(exc: BaseException, limit: int = _PAYLOAD_LIMIT) -> bytes:
    """Serializes an exception raised in a worker in at most `limit` bytes:
    the object itself when it pickles (classes pickle cannot name go by
    identity, see above), else its class with its arguments shortened or
    replaced by their reprs; its type name, text, base classes and
    traceback text for the fallback; whatever does not fit is shortened."""
    try:
        kind = type(exc)
        text = _safe_str(exc)
        tb_text = _safe(lambda: "".join(traceback.format_exception(exc)),
                        f"{_type_name(kind)}: {text}\n")
        bases = [_class_ref(c) for c in kind.__mro__
                 if isinstance(c, type) and issubclass(c, BaseException)]
        room = limit - _PAYLOAD_OVERHEAD
        blob = _exception_blob(exc, room * 3 // 4)
        rest = room - (len(blob[1]) if blob else 0)
        for _ in range(8):
            text_s = _shorten(text, rest // 3)
            tb_s = _shorten(tb_text, rest - len(text_s.encode("utf-8", "surrogatepass")))
            payload = pickle.dumps((blob, _type_name(kind), text_s, tb_s, bases),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            if len(payload) <= limit:
                return payload
            rest //= 2
        return pickle.dumps((None, _type_name(kind), _shorten(text, 1024), "",
                             bases[:8]), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        return pickle.dumps((None, "unknown", "the exception could not be "
                             "described", "", []))


@functools.lru_cache(maxsize=64)
def _worker_error_class(name: str, base: type | None) -> type[WorkerError]:
    """A WorkerError subclass that is also a `base` (nearest class of the
    lost exception the caller has), so `except base:` still catches it."""
    if base is None or issubclass(WorkerError, base):
        return WorkerError
    try:
        return type(name.rpartition(".")[2] or "WorkerError", (WorkerError, base),
                    {"__module__": __name__, "__doc__": WorkerError.__doc__})
    except TypeError:  # incompatible layouts (OSError): no common subclass
        return WorkerError


def _unpack_exception(payload: bytes) -> BaseException:
    try:
        blob, name, text, tb_text, bases = pickle.loads(payload)
    except Exception:
        return WorkerError("unknown", "the worker's error report was truncated")
    exc = None
    if blob is not None:
        try:
            how, data = blob
            if how == "whole":
                exc = _loads(data)
            else:
                exc = _rebuild(*_loads(data))
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        base = None
        for ref in bases[1:]:
            base = _safe(lambda: _resolve_ref(ref), None)
            if base is not None:
                break
        exc = _worker_error_class(name, base)(name, text)
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc


def _add_note(exc: BaseException, note: str) -> None:
    """add_note() that never fails: a `__notes__` that is not a list (a
    tuple, a str, anything) becomes one first."""
    try:
        notes: Any = exc.__dict__.get("__notes__") if hasattr(exc, "__dict__") \
            else getattr(exc, "__notes__", None)
        if notes is not None and not isinstance(notes, list):
            if isinstance(notes, (str, bytes)):
                notes = [notes]
            else:
                notes = _safe(lambda: list(notes), [_safe_repr(notes)])
            exc.__notes__ = notes
        exc.add_note(note)
    except BaseException:
        pass


def element_failed(exc_or_payload: BaseException | bytes,
                   shape: Sequence[int], flat_index: int, worker: int,
                   pid: int) -> BaseException:
    """The exception to raise for element ``flat_index`` failing in ``worker``:
    the exception itself (serial and thread backends) or rebuilt from a worker
    process's payload, with a PEP 678 note naming the element and worker
    (also on SystemExit, KeyboardInterrupt and other BaseExceptions)."""
    if isinstance(exc_or_payload, BaseException):
        exc = exc_or_payload
    else:
        exc = _unpack_exception(bytes(exc_or_payload))
    index = _unravel(flat_index, shape)
    where = f"worker {worker}" + (f" (pid {pid})" if pid else "")
    _add_note(exc, f"parfill: raised while computing element {index} in {where}")
    return exc


def run_bytecode() -> None:
    """Does nothing, in bytecode: calling it makes CPython raise -- and clear
    the signal of -- an asynchronous exception pending for the calling thread
    (a pool thread of a canceled threads fill consumes its KeyboardInterrupt
    this way; see python/_core/callable.c)."""


def worker_died(worker: int, pid: int, exitcode: int | None, sig: int | None,
                start: int | None, stop: int | None) -> WorkerDiedError:
    return WorkerDiedError(worker, pid, exitcode, sig, start, stop)


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for n in reversed(tuple(shape)):
        if n == 0:
            return (flat,)
        flat, r = divmod(flat, n)
        index.append(r)
    return tuple(reversed(index))
