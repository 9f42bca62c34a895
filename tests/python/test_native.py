"""Native functions in populate: ctypes prototypes, numba.cfunc, ctx, casts,
strided outputs, the GIL released, and errors.

The functions live in a tiny C library compiled here with the system cc
(-ffp-contract=off, so its arithmetic rounds as NumPy's does) and in
numba.cfunc; references are NumPy on numpy.indices.
"""
import ctypes
import threading
import time

import numpy as np
import pytest

import parfill

from native_lib import BLOCK, ELEMENT, I64, INDEX, build, typed

SCHEDULES = ("static", "dynamic", "guided")
SUPPORTED = ("double f(int64 index)", "double f(const int64 *index, int ndim)",
             "void f(int64 start, int64 count, void *out, void *ctx)")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build(tmp_path_factory.mktemp("native"))


def ref_elem(shape):
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) * 0.37 - 100.0


def ref_index(shape):
    v = np.zeros(shape)
    for ix in np.indices(shape) if shape else ():
        v = v * 131.0 + ix
    return v


# --------------------------------------------------------------- prototypes

@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("chunk", [None, 1, 1000])
@pytest.mark.parametrize("shape", [(10007,), (97, 103)])
def test_element(lib, workers, schedule, chunk, shape):
    f = typed(lib, "elem", ELEMENT)
    a = parfill.populate(f, shape, workers=workers, schedule=schedule, chunk=chunk)
    np.testing.assert_array_equal(a, ref_elem(shape))
    assert a.dtype == np.float64 and a.shape == shape


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("shape", [(), (5000,), (61, 67), (7, 11, 13)])
def test_index(lib, workers, schedule, shape):
    f = typed(lib, "index_sum", INDEX)
    a = parfill.populate(f, shape, workers=workers, schedule=schedule, chunk=100)
    np.testing.assert_array_equal(a, ref_index(shape))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("chunk", [None, 7, 4096])
def test_block(lib, workers, schedule, chunk):
    f = typed(lib, "block_f64", BLOCK)
    shape = (123, 457)
    a = parfill.populate(f, shape, workers=workers, schedule=schedule, chunk=chunk)
    np.testing.assert_array_equal(a, np.arange(123 * 457.0).reshape(shape))
    g = typed(lib, "block_i32", BLOCK)
    b = parfill.populate(g, shape, np.int32, workers=workers, schedule=schedule,
                         chunk=chunk)
    np.testing.assert_array_equal(b, (np.arange(123 * 457) ^ 0x5a).reshape(shape))


def test_library_function_with_declared_prototype(lib):
    lib.elem.argtypes = [ctypes.c_longlong]
    lib.elem.restype = ctypes.c_double
    np.testing.assert_array_equal(parfill.populate(lib.elem, 1000, workers=2),
                                  ref_elem((1000,)))


DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
          np.int64, np.uint64, np.float16, np.float32, np.float64, np.longdouble,
          np.complex64, np.complex128, np.clongdouble]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_element_results_cast_like_astype(lib, dtype):
    # elem spans [-100, 270); wide spans +-5e9 (out of range for small ints).
    for name, ref in (("elem", ref_elem((1000,))),
                      ("wide", (np.arange(1000.0) - 500.0) * 1.0e7)):
        a = parfill.populate(typed(lib, name, ELEMENT), 1000, dtype, workers=2)
        with np.errstate(invalid="ignore", over="ignore"):
            want = ref.astype(dtype)
        np.testing.assert_array_equal(a, want, err_msg=name)
        # the same values as an expression casts them
        expr = "i * 0.37 - 100.0" if name == "elem" else "(i - 500.0) * 1.0e7"
        np.testing.assert_array_equal(a, parfill.populate(expr, 1000, dtype))


# ---------------------------------------------------------------- strided out

@pytest.mark.parametrize("workers", [1, 3])
def test_strided_out(lib, workers):
    big = np.full((60, 90), -1.0)
    view = big[::2, 1::3]  # neither C- nor F-contiguous
    for name, proto, ref in (
            ("elem", ELEMENT, ref_elem(view.shape)),
            ("index_sum", INDEX, ref_index(view.shape)),
            ("block_f64", BLOCK, np.arange(view.size, dtype=float).reshape(view.shape))):
        big[...] = -1.0
        r = parfill.populate(typed(lib, name, proto), out=view, workers=workers)
        assert r is view
        np.testing.assert_array_equal(view, ref, err_msg=name)
        mask = np.ones(big.shape, bool)
        mask[::2, 1::3] = False
        assert (big[mask] == -1.0).all(), name  # nothing else written
    f = np.zeros((40, 50), order="F")
    parfill.populate(typed(lib, "elem", ELEMENT), out=f, workers=workers)
    np.testing.assert_array_equal(f, ref_elem((40, 50)))


# ----------------------------------------------------------------------- ctx

def test_ctx_forms(lib):
    f = typed(lib, "block_f64", BLOCK)
    scale = ctypes.c_double(2.5)
    arr = (ctypes.c_double * 1)(0.5)
    want = np.arange(1000.0)
    forms = [
        (ctypes.byref(scale), 2.5),
        (ctypes.pointer(scale), 2.5),
        (scale, 2.5),  # a ctypes instance: by reference
        (arr, 0.5),
        (ctypes.addressof(scale), 2.5),
        (ctypes.c_void_p(ctypes.addressof(arr)), 0.5),
        (ctypes.cast(arr, ctypes.c_void_p), 0.5),
    ]
    for ctx, factor in forms:
        a = parfill.populate(f, 1000, workers=2, ctx=ctx)
        np.testing.assert_array_equal(a, want * factor, err_msg=repr(ctx))
    np.testing.assert_array_equal(parfill.populate(f, 1000, ctx=None), want)


def test_ctx_address_passed_through(lib):
    g = typed(lib, "block_ctx", BLOCK)
    for ctx in (0, 12345, 2**64 - 1):
        a = parfill.populate(g, 100, np.uint64, workers=2, ctx=ctx)
        assert (a == ctx).all()


def test_ctx_errors(lib):
    with pytest.raises(TypeError, match="ctx applies to native block functions"):
        parfill.populate(lambda i: i, 10, ctx=1)
    with pytest.raises(TypeError, match="ctx applies to native block functions"):
        parfill.populate(typed(lib, "elem", ELEMENT), 10, ctx=1)
    with pytest.raises(TypeError, match="ctx applies to native block functions"):
        parfill.populate("i", 10, ctx=1)
    f = typed(lib, "block_f64", BLOCK)
    with pytest.raises(TypeError, match="ctx must be"):
        parfill.populate(f, 10, ctx="text")
    with pytest.raises(TypeError, match="ctx must be"):
        parfill.populate(f, 10, ctx=True)
    with pytest.raises(ValueError, match="ctx address"):
        parfill.populate(f, 10, ctx=-1)


# --------------------------------------------------------------------- numba

def test_numba_cfunc():
    numba = pytest.importorskip("numba")
    from numba import types

    @numba.cfunc("float64(int64)")
    def elem(i):
        return i * 0.37 - 100.0

    @numba.cfunc(types.float64(types.CPointer(types.int64), types.intc))
    def idx(ix, nd):
        v = 0.0
        for d in range(nd):
            v = v * 131.0 + ix[d]
        return v

    @numba.cfunc(types.void(types.int64, types.int64,
                            types.CPointer(types.float64), types.voidptr))
    def block(start, count, out, ctx):
        for k in range(count):
            out[k] = (start + k) * 3.0

    for workers in (1, 2):
        np.testing.assert_array_equal(
            parfill.populate(elem, (50, 60), workers=workers), ref_elem((50, 60)))
        np.testing.assert_array_equal(
            parfill.populate(idx, (20, 30, 4), workers=workers),
            ref_index((20, 30, 4)))
        np.testing.assert_array_equal(
            parfill.populate(block, 999, workers=workers), np.arange(999) * 3.0)

    @numba.cfunc("float32(int64)")
    def wrong(i):
        return i

    with pytest.raises(TypeError, match="unsupported native function prototype"):
        parfill.populate(wrong, 10)


# ----------------------------------------------------------------------- GIL

def test_gil_released_during_native_fill(lib):
    f = typed(lib, "spin", ELEMENT)  # 200 us of C per element, no GIL
    count = 0
    stop = threading.Event()

    def counter():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=counter)
    t.start()
    try:
        time.sleep(0.05)
        before = count
        t0 = time.monotonic()
        a = parfill.populate(f, 1500, workers=1)  # ~0.3 s on the caller
        elapsed = time.monotonic() - t0
        during = count - before
    finally:
        stop.set()
        t.join()
    np.testing.assert_array_equal(a, np.arange(1500.0))
    assert elapsed >= 0.25
    # Holding the GIL, populate would let the counter run only at its
    # 5 ms switch interval at best; without it the counter runs freely.
    assert during > 10000, during


# ------------------------------------------------------- progress, timeout

def test_progress_and_timeout(lib):
    calls = []
    f = typed(lib, "elem", ELEMENT)
    parfill.populate(f, 10**5, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (10**5, 10**5)
    slow = typed(lib, "spin_short", ELEMENT)  # 20 us per element: 20 s in all
    for workers in (1, 2):
        t0 = time.monotonic()
        with pytest.raises(parfill.TimeoutError):
            parfill.populate(slow, 10**6, workers=workers, timeout=0.2)
        assert time.monotonic() - t0 < 2.0


# -------------------------------------------------------------------- errors

@pytest.mark.parametrize("prototype", [
    ctypes.CFUNCTYPE(ctypes.c_int, I64),
    ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double),
    ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int32),
    ctypes.CFUNCTYPE(ctypes.c_double, I64, I64),
    ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_int),
    ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(I64), I64),
    ctypes.CFUNCTYPE(None, I64, I64, ctypes.c_void_p),
    ctypes.CFUNCTYPE(None, I64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p),
    ctypes.CFUNCTYPE(ctypes.c_double, I64, I64, ctypes.c_void_p, ctypes.c_void_p),
])
def test_unsupported_prototype_lists_supported_ones(lib, prototype):
    f = prototype(ctypes.cast(lib.elem, ctypes.c_void_p).value)
    with pytest.raises(TypeError) as info:
        parfill.populate(f, 10)
    message = str(info.value)
    assert "unsupported native function prototype" in message
    for p in SUPPORTED:
        assert p in message


def test_library_function_without_argtypes(lib):
    fresh = ctypes.CDLL(lib._name)
    with pytest.raises(TypeError, match="argtypes not set"):
        parfill.populate(fresh.elem, 10)


def test_other_arguments(lib):
    f = typed(lib, "elem", ELEMENT)
    with pytest.raises(TypeError, match="params"):
        parfill.populate(f, 10, params={"a": 1})
    with pytest.raises(TypeError, match="vectorized"):
        parfill.populate(f, 10, vectorized=True)
    for backend in ("auto", "processes", "threads", "serial"):
        np.testing.assert_array_equal(parfill.populate(f, 10, backend=backend),
                                      ref_elem((10,)))
    null = ELEMENT()  # a NULL function pointer
    with pytest.raises(ValueError, match="NULL"):
        parfill.populate(null, 10)


def test_python_callback_through_ctypes_still_works():
    # A CFUNCTYPE wrapping a Python function: ctypes takes the GIL itself.
    f = ELEMENT(lambda i: i * 2.0)
    np.testing.assert_array_equal(parfill.populate(f, 500, workers=2),
                                  np.arange(500) * 2.0)


def test_no_threads_left_behind(lib):
    f = typed(lib, "elem", ELEMENT)
    parfill.populate(f, 1000, workers=2)
    n = threading.active_count()
    for _ in range(20):
        parfill.populate(f, 1000, workers=2)
    assert threading.active_count() == n


def test_bench_suite_smoke(capsys):
    pytest.importorskip("numba")
    from benchmarks import main  # the checkout's benchmarks (not installed)

    assert main(["native", "--quick", "--n", "1000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "parfill ctypes (element)" in out and "MISMATCH" not in out
