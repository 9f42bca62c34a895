"""Independent references that the Python tests, the adversarial run and the
translator's fuzzer compare parfill with: the sequential loop of SPEC §2, and
a bit-for-bit comparison of arrays; and what of /dev/shm this process holds,
which the suite's and the adversarial run's leak checks compare."""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import numpy as np


def sequential(func: Callable[..., Any], shape: tuple[int, ...],
               dtype: Any) -> tuple[Any, Any]:
    """``for idx in numpy.ndindex(shape): a[idx] = func(*idx)``: returns
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
