"""Native functions for :func:`parfill.populate`: recognising them by their
ctypes prototype, and the ``ctx`` argument of block functions.

A native function is a ctypes function pointer (``CFUNCTYPE(...)(...)``, or
a function of a loaded library with ``argtypes`` and ``restype`` set), or an
object with an integer ``.address`` and a ctypes prototype as ``.ctypes``
(``numba.cfunc``). The fill itself is ``_core.fill_native``.
"""
from __future__ import annotations

import ctypes
from typing import NamedTuple

__all__ = ["NativeFunction", "SUPPORTED_PROTOTYPES", "ctx_address",
           "native_function"]

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


# The bases of every ctypes instance (their common base is not exported).
_CDATA = (ctypes._SimpleCData, ctypes._Pointer, ctypes.Array, ctypes.Structure,
          ctypes.Union, ctypes._CFuncPtr)


class NativeFunction(NamedTuple):
    address: int
    kind: str  # "element", "index" or "block"


def _is_int64(t) -> bool:
    return t in _INT64


def _is_pointer(t) -> bool:
    return t is ctypes.c_void_p or (
        isinstance(t, type) and issubclass(t, ctypes._Pointer))


def _is_int64_pointer(t) -> bool:
    return (isinstance(t, type) and issubclass(t, ctypes._Pointer)
            and t._type_ in _INT64)


def _kind(restype, argtypes) -> str | None:
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


def _type_name(t) -> str:
    return "void" if t is None else getattr(t, "__name__", repr(t))


def native_function(func) -> NativeFunction | None:
    """The address and kind of a native function, or None when ``func`` is
    not one (a Python callable). Raises TypeError, listing the supported
    prototypes, for a native function with any other prototype."""
    if isinstance(func, ctypes._CFuncPtr):
        prototype = func
        address = ctypes.cast(func, ctypes.c_void_p).value or 0
    else:
        try:
            address = getattr(func, "address", None)
            prototype = getattr(func, "ctypes", None)
        except Exception:  # a property that raises: not a native function
            return None
        if not isinstance(prototype, ctypes._CFuncPtr):
            return None  # no declared signature: a Python callable
        if not isinstance(address, int) or isinstance(address, bool):
            raise ValueError(
                f"the native function's .address must be an int, not "
                f"{type(address).__name__}")
    argtypes, restype = prototype.argtypes, prototype.restype
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
_checked: set = set()


def _executable(address: int):
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


def ctx_address(ctx) -> int:
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
    if isinstance(ctx, _CDATA) or type(ctx).__name__ == "CArgObject":
        try:
            return ctypes.cast(ctx, ctypes.c_void_p).value or 0
        except ctypes.ArgumentError:
            if isinstance(ctx, _CDATA):
                return ctypes.addressof(ctx)
            raise
    raise TypeError(
        f"ctx must be an int address or a ctypes object (byref(x), an array, "
        f"a pointer, c_void_p, a structure), not {type(ctx).__name__}")
