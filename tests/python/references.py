"""Independent references that the Python tests, the adversarial run and the
translator's fuzzer compare parfill with: the sequential loop of SPEC §2, and
a bit-for-bit comparison of arrays; and what of /dev/shm this process holds,
which the suite's and the adversarial run's leak checks compare."""
from __future__ import annotations

import ctypes
import os
import warnings
from typing import Any, Callable

import numpy as np

_errno_location = ctypes.CDLL(None).__errno_location
_errno_location.restype = ctypes.POINTER(ctypes.c_int)


def clear_errno() -> None:
    """errno = 0 in this thread, as parfill starts every element: CPython
    before 3.15 lets abs() of a complex with a NaN part raise OverflowError
    when earlier code left errno at ERANGE (gh-155526), so a loop without
    this gives an element a result that depends on the element before."""
    _errno_location().contents.value = 0


def sequential(func: Callable[..., Any], shape: tuple[int, ...],
               dtype: Any) -> tuple[Any, Any]:
    """``for idx in numpy.ndindex(shape): a[idx] = func(*idx)``, each
    element started with errno 0 (clear_errno): returns
    ``(a, None)``, or ``(None, (type, idx))`` with the exception type of the
    first failing element and its index. Warnings (a float32 overflow in a
    store) are silenced: they are not part of the result, and a warnings
    filter set to "error" must not change the reference."""
    a = np.zeros(shape, dtype)
    idx: tuple[int, ...] = ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for idx in np.ndindex(*shape):
                clear_errno()
                a[idx] = func(*idx)
        except Exception as e:           # noqa: BLE001 - whatever Python does
            return None, (type(e), idx)
    return a, None


def bits(a: Any) -> Any:
    """Comparable bits: floats by their bit patterns (long double by value,
    sign and NaN-ness: x86 keeps its 80 bits in 16 bytes, 6 of them padding
    that is not part of the value)."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "c":
        return bits(a.real), bits(a.imag)
    if a.dtype.kind == "f":
        if a.dtype.itemsize in (2, 4, 8):
            return a.view(f"u{a.dtype.itemsize}").tolist()
        return (np.where(np.isnan(a), 0, a).tolist(), np.signbit(a).tolist(),
                np.isnan(a).tolist())
    return a.tolist()


def same_bits(a: Any, b: Any) -> bool:
    """Same shape, dtype and bits (see `bits`)."""
    return a.shape == b.shape and a.dtype == b.dtype and bits(a) == bits(b)


def dev_shm_in_use():
    """Files under /dev/shm this process maps or holds open (other processes
    on the machine may create their own there)."""
    with open("/proc/self/maps") as f:
        mapped = {line.split()[-1] for line in f if "/dev/shm/" in line}
    opened = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/shm/"):
            opened.add(target)
    return sorted(mapped | opened)
