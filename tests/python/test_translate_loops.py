"""Translated loops and complex numbers run natively (issue 12): every
function of the loop/complex front-end table (test_translate_loops_frontend)
through ``populate(..., translate="always")`` against the sequential loop
``for idx in numpy.ndindex(shape): a[idx] = f(*idx)`` -- values bit for bit,
or the same exception type at the same first element -- into several dtype
families and configurations; guards that bail in the middle of a loop; the
demo's pixel function; an endless loop stopped by timeout and Ctrl-C.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
import zlib

import numpy as np
import pytest

import parfill
from parfill import _core, _translated
from parfill.demo import make_mandelbrot

import test_translate_loops_frontend as loops
from references import sequential
from test_translate import CONFIGS, check, spy, strict_translator  # noqa: F401

DTYPES = [np.int64, np.float64, np.complex128, np.complex64, np.uint8,
          np.float32, np.bool_]
SHAPES = {1: (40,), 2: (9, 11), 3: (3, 4, 3)}
# Cases whose elements grow costly (or leave int64) past the front-end
# table's points: the shape covers those points.
SHAPE_OF = {"long": (21,), "fib": (100,), "fib_while": (97,),
            "isprime": (60,), "mul_overflow": (45,), "overflow_at_50": (1300,),
            "nested_dep": (40,), "demo_pixel": (30, 40),
            "demo_pixel_full": (40, 50), "readme_pixel": (40, 50)}


def _config(name, n):
    return CONFIGS[(zlib.crc32(name.encode()) + n) % len(CONFIGS)]


@pytest.mark.parametrize("name,func,ndim,opts", loops.CASES,
                         ids=[c[0] for c in loops.CASES])
def test_loop_and_complex_table(name, func, ndim, opts):
    parfill.translate(func, ndim)._serial()     # the VM takes it
    shape = SHAPE_OF.get(name, SHAPES[ndim])
    for n, dtype in enumerate(DTYPES):
        workers, schedule, chunk, layout = _config(name, n)
        check(func, shape, dtype, layout, workers=workers, schedule=schedule,
              chunk=chunk, translate="always")


def collatz(i):
    n = i + 1
    s = 0
    while n != 1:
        if n % 2 == 0:
            n //= 2
        else:
            n = 3 * n + 1
        s += 1
    return s


def newton(i, j):
    x = 1.0 + i + j * 0.5
    a = x
    for _ in range(60):
        nx = 0.5 * (x + a / x)
        if nx == x:
            break
        x = nx
    return x


def nested_break_continue(i, j):
    total = 0
    for a in range(i + 1):
        if a % 3 == 1:
            continue
        for b in range(j + 2):
            if b * a > 20:
                break
            total += a * b
        if total > 200:
            return -total
    return total


@pytest.mark.parametrize("func,shape,dtype", [
    (collatz, (3000,), np.int64),
    (collatz, (3000,), np.uint16),
    (newton, (30, 41), np.float64),
    (nested_break_continue, (20, 17), np.int32),
    (make_mandelbrot(160, 120, 60), (120, 160), np.uint8),
])
def test_loops_run_natively(spy, func, shape, dtype):
    """No element of these needs Python: one native fill, no calls."""
    for workers in (1, 2, 3):
        spy["fills"].clear()
        spy["here"] = 0
        assert check(func, shape, dtype, workers=workers,
                     translate="always") == "value"
        assert spy["fills"] == [0] and spy["here"] == 0 and spy["rest"] == []


def test_overflow_in_iteration_50_of_element_1234(spy):
    # acc doubles from element 1234's 50th iteration on past int64: Python's
    # int there, into float64 (a value) and int64 (OverflowError there).
    def f(i):
        acc = 1
        for k in range(60):
            acc = acc * 2 if (i == 1234 and k >= 50) else acc + 1
            if i == 1234 and k >= 50:
                acc = acc * 2 ** 10
        return acc

    assert check(f, (3000,), np.float64, workers=2, translate="always") \
        == "value"
    assert spy["fills"] == [0, 1235] and spy["here"] == 1
    assert check(f, (3000,), np.int64, workers=3, translate="always") \
        == "error"


def test_fibonacci_past_f92_is_pythons_big_int(spy):
    def fib(i):
        a, b = 0, 1
        for _ in range(i):
            a, b = b, a + b
        return a

    assert check(fib, (100,), np.float64, workers=2, translate="always") \
        == "value"
    assert check(fib, (100,), np.int64, workers=2, translate="always") \
        == "error"


def test_complex_division_by_zero_at_the_same_element():
    def f(i, j):
        return complex(i, 1.5) / complex(j - 7, 0.0) + 1j

    assert check(f, (20, 13), np.complex128, workers=2,
                 translate="always") == "error"
    assert check(f, (20, 13), np.complex64, workers=3,
                 translate="always") == "error"


def test_complex_into_real_dtypes_raises_as_numpy():
    def f(i):
        return complex(i, 1.0) * 2

    for dtype in (np.float64, np.float32, np.int64, np.uint8):
        assert check(f, (50,), dtype, workers=2, translate="always") \
            == "error"
    assert check(f, (50,), np.bool_, workers=2, translate="always") == "value"


def test_complex_operations_and_parts():
    def f(i, j):
        z = complex(i * 0.25 - 1.0, j * 0.5 - 2.0)
        w = z * z - z / (1 + 2j) + z ** 3 - z ** -2 + z ** 0.5
        return abs(w) + w.real * 2 - w.imag + w.conjugate().imag

    for dtype in (np.float64, np.float32, np.complex128):
        check(f, (17, 19), dtype, workers=2, translate="always")


def _stale_errno_reader(i):
    """abs() of a complex with a NaN part: on CPython < 3.15 an
    OverflowError if errno was left at ERANGE (gh-155526), which the
    underflowing math.exp of an even element does."""
    if i % 2 == 0:
        return math.exp(-1000.0)
    return abs(complex(math.nan, 1.0))


def _stale_errno_in_one_element(i):
    a = math.exp(-1000.0) if i % 3 == 2 else 1.0
    return abs(complex(math.nan, a)) + i


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_every_element_starts_with_errno_zero(backend):
    """An element does not see errno left by the element before it (a
    plain loop without clear_errno does on 3.11-3.14: element 1 raises)
    but does see what its own earlier calls left (element 2 raises on
    3.11-3.14): the same as the reference for every backend and the VM,
    which leaves a NaN abs to Python."""
    for translate in ("never", "always"):
        for f in (_stale_errno_reader, _stale_errno_in_one_element):
            check(f, (12,), np.float64, workers=2, backend=backend,
                  translate=translate)


def test_complex64_overflow_warns_so_python_stores_it():
    def f(i):
        return complex(1e30 * 10.0 ** (i % 12), 1.0)

    check(f, (40,), np.complex64, workers=2, translate="always")


def test_demo_pixel_translates_and_equals_python():
    pixel = make_mandelbrot(300, 200, 100)
    k = parfill.translate(pixel, 2)
    assert len(k.nregs) == 4 and k.nregs[3] > 0      # complex registers
    assert loops.has_loop(k.program)
    want, _ = sequential(pixel, (200, 300), np.uint8)
    got = parfill.populate(pixel, (200, 300), np.uint8, workers=2,
                           translate="always")
    assert got.tobytes() == want.tobytes()


def _endless(i):
    n = 0
    while i == 777 or n < 3:
        n += 1
    return n


def test_endless_loop_stops_at_timeout(no_leaks):
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(_endless, 2000, workers=2, timeout=0.3,
                         translate="always")
    assert time.monotonic() - t0 < 0.3 + 2.0


def test_endless_loop_stops_at_ctrl_c(no_leaks):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            parfill.populate(_endless, 2000, workers=2, translate="always")
    finally:
        timer.cancel()
        timer.join()
    assert time.monotonic() - t0 < 0.3 + 2.0


def test_endless_loop_program_with_isa_caps():
    # The same endless element under every instruction set: timeout only.
    k = parfill.translate(_endless, 1)
    for isa in (0, 1, 2):
        out = np.zeros(1000, np.int64)
        with pytest.raises(parfill.TimeoutError):
            _core.fill_translated(k.code, k.iconsts, k.fconsts, 1, k.nregs,
                                  out, workers=2, timeout=0.2, _isa=isa)


def test_nregs_tuple_of_four_is_checked():
    k = parfill.translate(lambda i: complex(i, 1.0) * 1j, 1)
    assert len(k.nregs) == 4
    out = np.zeros(5, np.complex128)
    with pytest.raises(TypeError, match="nregs"):
        _core.fill_translated(k.code, k.iconsts, k.fconsts, 1,
                              k.nregs + (0,), out)
    with pytest.raises(ValueError, match="invalid translated program"):
        _core.fill_translated(k.code, k.iconsts, k.fconsts, 1,
                              k.nregs[:3], out)
    assert _core.fill_translated(k.code, k.iconsts, k.fconsts, 1, k.nregs,
                                 out) == -1
    assert out.tolist() == [complex(i, 1.0) * 1j for i in range(5)]


def test_auto_translates_loops():
    assert _translated.kernel_for(collatz, 1, "auto", False) is not None
