"""Native functions for :func:`parfill.populate`: recognising them by their
ctypes prototype, and the ``ctx`` argument of block functions.

A native function is a ctypes function pointer (``CFUNCTYPE(...)(...)``, or
a function of a loaded library with ``argtypes`` and ``restype`` set), or an
object with an integer ``.address`` and a ctypes prototype as ``.ctypes``
(``numba.cfunc``). The fill itself is ``_core.fill_native``.
"""
from __future__ import annotations

import ctypes
from _ctypes import CFuncPtr
from typing import TYPE_CHECKING, NamedTuple, Protocol, Sequence, Union

__all__ = ["CtxLike", "NativeFunction", "NativeFunctionLike",
           "SUPPORTED_PROTOTYPES", "ctx_address", "native_function"]

#: What the TypeError for any other prototype lists.
SUPPORTED_PROTOTYPES = (
    "double f(int64 index): CFUNCTYPE(c_double, c_int64); "
    "double f(const int64 *index, int ndim): "
    "CFUNCTYPE(c_double, POINTER(c_int64), c_int); "
    "void f(int64 start, int64 count, void *out, void *ctx): "
    "CFUNCTYPE(None, c_int64, c_int64, c_void_p, c_void_p) "
    "(c_longlong or an 8-byte c_long for int64; any pointer type for out and ctx)")

_INT64 = tuple({t for t in (ctypes.c_int64, ctypes.c_longlong, ctypes.c_long)
                if ctypes.sizeof(t) == 8})


if TYPE_CHECKING:
    from _ctypes import _CArgObject, _CData
else:
    # The common base of every ctypes instance, and the type of byref(x):
    # neither is exported, but both are the same classes as in the stubs.
    _CData = ctypes.c_int.__mro__[-2]
    _CArgObject = type(ctypes.byref(ctypes.c_int()))


class _CFunctionObject(Protocol):
    """A compiled function that declares its C signature (``numba.cfunc``)."""

    @property
    def address(self) -> int: ...

    @property
    def ctypes(self) -> CFuncPtr: ...


#: A native function: a ctypes function pointer, or an object with an int
#: ``.address`` and a ctypes prototype as ``.ctypes``.
NativeFunctionLike = Union[CFuncPtr, _CFunctionObject]
#: The ``ctx`` of a native block function: an address, or a ctypes object
#: passed as ctypes passes it for a ``void *`` parameter.
CtxLike = Union[int, _CData, _CArgObject]


class NativeFunction(NamedTuple):
    address: int
    kind: str  # "element", "index" or "block"


def _is_int64(t: object) -> bool:
    return t in _INT64


def _is_pointer(t: object) -> bool:
    return t is ctypes.c_void_p or (
        isinstance(t, type) and issubclass(t, ctypes._Pointer))


def _is_int64_pointer(t: object) -> bool:
    return (isinstance(t, type) and issubclass(t, ctypes._Pointer)
            and t._type_ in _INT64)


def _kind(restype: object, argtypes: Sequence[object] | None) -> str | None:
    args = tuple(argtypes or ())
    if restype is ctypes.c_double:
        if len(args) == 1 and _is_int64(args[0]):
            return "element"
        if (len(args) == 2 and _is_int64_pointer(args[0])
                and args[1] is ctypes.c_int):
            return "index"
    elif restype is None:
        if (len(args) == 4 and _is_int64(args[0]) and _is_int64(args[1])
                and _is_pointer(args[2]) and _is_pointer(args[3])):
            return "block"
    return None


def _type_name(t: object) -> str:
    return "void" if t is None else getattr(t, "__name__", repr(t))


def native_function(func: object) -> NativeFunction | None:
    """The address and kind of a native function, or None when ``func`` is
    not one (a Python callable). Raises TypeError, listing the supported
    prototypes, for a native function with any other prototype."""
    address: object
    if isinstance(func, CFuncPtr):
        prototype = func
        address = ctypes.cast(func, ctypes.c_void_p).value or 0
    else:
        try:
            address = getattr(func, "address", None)
            declared = getattr(func, "ctypes", None)
        except Exception:  # a property that raises: not a native function
            return None
        if not isinstance(declared, CFuncPtr):
            return None  # no declared signature: a Python callable
        prototype = declared
        if not isinstance(address, int) or isinstance(address, bool):
            raise ValueError(
                f"the native function's .address must be an int, not "
                f"{type(address).__name__}")
    # argtypes is None until set, whatever the stubs say.
    argtypes: Sequence[object] | None = prototype.argtypes
    restype: object = prototype.restype
    kind = _kind(restype, argtypes)
    if kind is None:
        if argtypes is None:
            shown = f"{_type_name(restype)}(...) with argtypes not set"
        else:
            shown = (f"{_type_name(restype)}("
                     f"{', '.join(_type_name(t) for t in argtypes)})")
        raise TypeError(
            f"unsupported native function prototype {shown}; supported: "
            f"{SUPPORTED_PROTOTYPES}")
    _check_address(address)
    return NativeFunction(int(address), kind)


# The lowest page is never mapped (NULL and small offsets from it), and user
# space ends well below 2**63 on every 64-bit Linux.
_FIRST_VALID = 4096
_ABOVE_VALID = 1 << 63
# Addresses found in an executable mapping; bounded, cleared when full.
_checked: set[int] = set()


def _executable(address: int) -> bool | None:
    """Whether `address` lies in an executable mapping of this process; None
    when /proc/self/maps cannot be read."""
    try:
        with open("/proc/self/maps", "rb") as f:
            for line in f:
                span, perms = line.split(None, 2)[:2]
                low, _, high = span.partition(b"-")
                if int(low, 16) <= address < int(high, 16):
                    return perms[2:3] == b"x"
    except (OSError, ValueError):
        return None
    return False


def _check_address(address: int) -> None:
    """ValueError for an address no function can be at: NULL, the first
    page, negative, beyond user space, or (where /proc tells) outside every
    executable mapping. Calling such an address would crash the process."""
    if address in _checked:
        return
    if not _FIRST_VALID <= address < _ABOVE_VALID:
        shown = "NULL" if address == 0 else hex(address) if address > 0 \
            else str(address)
        raise ValueError(
            f"the native function's address {shown} cannot hold a function "
            f"(it must be a pointer to code in this process)")
    if _executable(address) is False:
        raise ValueError(
            f"the native function's address {hex(address)} is not in "
            f"executable memory of this process")
    if len(_checked) >= 256:
        _checked.clear()
    _checked.add(address)


def ctx_address(ctx: object) -> int:
    """The address a block function gets as ``ctx``: an int as it is; a
    ctypes object as ctypes passes it for a ``void *`` parameter (a pointer
    or c_void_p: its value; an array or ``byref(x)``: the address of the
    data); any other ctypes instance (a structure, a number) by reference."""
    if ctx is None:
        return 0
    if isinstance(ctx, bool):
        raise TypeError("ctx must be an int address or a ctypes object, not bool")
    if isinstance(ctx, int):
        if not 0 <= ctx < 1 << 64:
            raise ValueError(f"ctx address {ctx} is not in [0, 2**64)")
        return ctx
    if isinstance(ctx, (_CData, _CArgObject)):
        try:
            return ctypes.cast(ctx, ctypes.c_void_p).value or 0
        except ctypes.ArgumentError:
            if isinstance(ctx, _CData):
                return ctypes.addressof(ctx)
            raise
    raise TypeError(
        f"ctx must be an int address or a ctypes object (byref(x), an array, "
        f"a pointer, c_void_p, a structure), not {type(ctx).__name__}")
