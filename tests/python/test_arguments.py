"""Bad arguments give a clear TypeError or ValueError, never a crash."""
import numpy as np
import pytest

import parfill


def ok(i):
    return i


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(shape=-1), ValueError, "negative"),
    (dict(shape=(3, -2)), ValueError, "negative"),
    (dict(shape=(2 ** 40, 2 ** 40)), ValueError, "too big"),
    (dict(shape=(2 ** 62,)), ValueError, "too big"),
    (dict(shape=2.5), TypeError, "shape"),
    (dict(shape="10"), TypeError, "shape"),
    (dict(shape=True), TypeError, "shape"),
    (dict(shape=None), TypeError, "shape"),
    (dict(shape=(1,) * 33), ValueError, "32"),
    (dict(shape=5, dtype=object), TypeError, "dtype"),
    (dict(shape=5, dtype=str), TypeError, "dtype"),
    (dict(shape=5, dtype="U10"), TypeError, "dtype"),
    (dict(shape=5, dtype="datetime64[s]"), TypeError, "dtype"),
    (dict(shape=5, dtype=">f8"), TypeError, "byte order"),
    (dict(shape=5, dtype=[("a", "f8")]), TypeError, "dtype"),
    (dict(shape=5, dtype="notadtype"), TypeError, "dtype"),
    (dict(shape=5, workers=0), ValueError, "workers"),
    (dict(shape=5, workers=-3), ValueError, "workers"),
    (dict(shape=5, workers=1.5), TypeError, "workers"),
    (dict(shape=5, workers=True), TypeError, "workers"),
    (dict(shape=5, workers="2"), TypeError, "workers"),
    (dict(shape=5, schedule="fast"), ValueError, "schedule"),
    (dict(shape=5, schedule=None), ValueError, "schedule"),
    (dict(shape=5, chunk=0), ValueError, "chunk"),
    (dict(shape=5, chunk=-1), ValueError, "chunk"),
    (dict(shape=5, chunk=2.0), TypeError, "chunk"),
    (dict(shape=5, backend="gpu"), ValueError, "backend"),
    (dict(shape=5, retries=-1), ValueError, "retries"),
    (dict(shape=5, retries=None), TypeError, "retries"),
    (dict(shape=5, timeout=0), ValueError, "timeout"),
    (dict(shape=5, timeout=-1), ValueError, "timeout"),
    (dict(shape=5, timeout="1"), TypeError, "timeout"),
    (dict(shape=5, progress="yes"), TypeError, "progress"),
    (dict(shape=5, params={"a": 1}), TypeError, "params"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        parfill.populate(ok, **kwargs)


@pytest.mark.parametrize("func", [None, 42, [ok], b"i"])
def test_func_must_be_callable_or_string(func):
    with pytest.raises(TypeError, match="callable"):
        parfill.populate(func, 5)


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
@pytest.mark.parametrize("func,error", [
    (lambda: 0, TypeError),           # wrong number of arguments
    (lambda i, j: 0, TypeError),
    (lambda i: "x", ValueError),      # as a[i] = "x"
    (lambda i: [1, 2], ValueError),   # as a[i] = [1, 2]
    (lambda i: {}, TypeError),
])
def test_func_misbehaving(backend, func, error):
    with pytest.raises(error):
        parfill.populate(func, 5, backend=backend, workers=2)


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.complex128])
def test_func_returning_none_stores_as_numpy_does(backend, dtype):
    from conftest import reference
    try:
        expected = reference(lambda i: None, (5,), dtype)
    except Exception as e:
        with pytest.raises(type(e)):
            parfill.populate(lambda i: None, 5, dtype, backend=backend,
                             workers=2)
        return
    got = parfill.populate(lambda i: None, 5, dtype, backend=backend, workers=2)
    np.testing.assert_array_equal(got, expected)


class BadFloat:
    def __float__(self):
        raise ArithmeticError("no float for you")


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_float_raising(backend):
    a = np.zeros(2)
    with pytest.raises(ArithmeticError):
        a[0] = BadFloat()
    with pytest.raises(ArithmeticError):
        parfill.populate(lambda i: BadFloat(), 4, backend=backend, workers=2)


def test_workers_more_than_elements():
    got = parfill.populate(ok, 3, int, workers=16, backend="processes")
    np.testing.assert_array_equal(got, np.arange(3))
    got = parfill.populate(ok, 3, int, workers=16, backend="threads")
    np.testing.assert_array_equal(got, np.arange(3))


# ------------------------------------------------- issue 9: items 16, 20, 21

def test_unbounded_shape_iterable_is_refused_at_once():
    import itertools
    for shape in (itertools.count(), iter([2, 3]), (n for n in (2, 3))):
        with pytest.raises(TypeError, match="shape"):
            parfill.populate(ok, shape)
    with pytest.raises(TypeError):
        np.empty(itertools.count())  # NumPy refuses it too


def test_shape_sequences_are_accepted():
    for shape in ([2, 3], (2, 3), np.array([2, 3]), range(2, 4)):
        got = parfill.populate(lambda i, j: i * 10 + j, shape, int)
        np.testing.assert_array_equal(got, np.fromfunction(
            lambda i, j: i * 10 + j, (2, 3), dtype=int))
    with pytest.raises(ValueError, match="32"):
        parfill.populate(ok, range(10**30))  # huge length: no iteration


def test_huge_chunk_means_one_chunk():
    for backend in ("serial", "threads", "processes", "auto"):
        got = parfill.populate(ok, 100, int, chunk=2**63, backend=backend,
                               workers=2)
        np.testing.assert_array_equal(got, np.arange(100))
    got = parfill.populate("i", 100, int, chunk=2**100)
    np.testing.assert_array_equal(got, np.arange(100))
    got = parfill.random(10, chunk=2**64)
    np.testing.assert_array_equal(got, parfill.random(10))


def test_huge_retries_are_clamped_not_an_overflow():
    got = parfill.populate(ok, 50, int, retries=2**31, backend="processes",
                           workers=2)
    np.testing.assert_array_equal(got, np.arange(50))
    got = parfill.populate(ok, 50, int, retries=2**70, workers=2)
    np.testing.assert_array_equal(got, np.arange(50))


def test_huge_timeout_means_no_deadline():
    got = parfill.populate(ok, 50, int, timeout=10**400, workers=2)
    np.testing.assert_array_equal(got, np.arange(50))


@pytest.mark.parametrize("value", [2**70, -2**70, 2**63, np.uint64(2**64 - 1)])
def test_expression_parameter_beyond_int64_names_it(value):
    with pytest.raises((TypeError, ValueError), match="'big'") as info:
        parfill.populate("i + big", 4, params={"big": value})
    assert not isinstance(info.value, OverflowError)


def test_expression_parameter_int64_limits_still_work():
    for value in (2**63 - 1, -2**63, np.uint64(2**63 - 1)):
        got = parfill.populate("big + i * 0", 3, np.int64, params={"big": value})
        assert (got == int(value)).all()


@pytest.mark.parametrize("value", ["False", "", 0, 1, None, [True]])
def test_vectorized_must_be_a_bool(value):
    with pytest.raises(TypeError, match="vectorized"):
        parfill.populate(ok, 5, vectorized=value)


def test_vectorized_accepts_numpy_bools():
    got = parfill.populate(lambda i: i * 2, 5, int, vectorized=np.True_)
    np.testing.assert_array_equal(got, np.arange(5) * 2)


def test_dtype_differing_from_out_is_refused_even_float64():
    out = np.zeros(5, np.int32)
    with pytest.raises(ValueError, match="dtype"):
        parfill.populate(ok, 5, np.float64, out=out)
    with pytest.raises(ValueError, match="dtype"):
        parfill.populate(ok, out=out, dtype="float64")
    got = parfill.populate(ok, out=out)  # no dtype: out's
    assert got is out and got.dtype == np.int32
    np.testing.assert_array_equal(out, np.arange(5))
    assert parfill.populate(ok, 3).dtype == np.float64  # the default
    fout = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="dtype"):
        parfill.random(out=fout, dtype=np.float64)
    assert parfill.random(out=fout) is fout


def test_random_without_a_shape_names_random():
    with pytest.raises(TypeError, match=r"random\(\) needs a shape"):
        parfill.random(None)
    with pytest.raises(TypeError, match=r"populate\(\) needs a shape"):
        parfill.populate(ok)


def test_progress_bar_without_stderr(monkeypatch):
    import sys
    monkeypatch.setattr(sys, "stderr", None)
    for backend in ("serial", "processes"):
        got = parfill.populate(ok, 1000, int, progress=True, backend=backend,
                               workers=2)
        np.testing.assert_array_equal(got, np.arange(1000))
    got = parfill.random(100, progress=True)
    assert got.shape == (100,)


def test_params_accepts_any_mapping():
    import types
    params = types.MappingProxyType({"a": 2, "b": 0.5})
    got = parfill.populate("i * a + b", 4, params=params)
    np.testing.assert_array_equal(got, np.arange(4) * 2 + 0.5)
    with pytest.raises(TypeError, match="params"):
        parfill.populate("i", 4, params=[("a", 1)])


def _fresh(text):
    """A str object that nothing else references (not interned)."""
    return "".join(list(text))


@pytest.mark.parametrize("via_populate", [False, True])
def test_params_value_that_clears_the_dict_is_safe(via_populate):
    """A parameter value whose __index__ / __float__ empties the dict (and
    drops the last reference to its key strings) is no use-after-free: the
    names are snapshotted before any value is converted."""
    import gc
    from parfill import _core
    params = {}

    class ClearingInt(np.int64):  # converted through its __index__
        def __index__(self):
            params.clear()
            gc.collect()
            return 3

    class ClearingFloat(np.float32):  # converted through its __float__
        def __float__(self):
            params.clear()
            gc.collect()
            return 0.5
    names = [_fresh(f"name_{k}_" + "x" * 40) for k in range(6)]
    for k, name in enumerate(names):
        params[name] = float(k)
    params[names[1]] = ClearingInt(0)
    params[names[4]] = ClearingFloat(0)
    expression = " + ".join(names)  # 0 + 3 + 2 + 3 + 0.5 + 5
    del names
    out = np.empty(3)
    if via_populate:
        parfill.populate(expression, out=out, params=params)
    else:
        _core.fill_expr(expression, out, params, 1, "dynamic", 0, None)
    np.testing.assert_array_equal(out, np.full(3, 13.5))


@pytest.mark.parametrize("address", [-1, 0, 1, 4095, -2**63, 2**64 - 1,
                                     2**63, 1.5, "0x1234", None])
def test_native_function_with_an_impossible_address(address):
    import ctypes
    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)

    class Fake:  # like a numba.cfunc: callable, .address, .ctypes
        ctypes = proto()  # the prototype, as an instance

        def __call__(self, i):
            return 0.0
    fake = Fake()
    fake.address = address
    with pytest.raises(ValueError, match="address"):
        parfill.populate(fake, 10)


def test_native_function_address_outside_executable_memory():
    import ctypes
    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)
    data = np.zeros(1024)

    class Fake:
        ctypes = proto()
        address = data.ctypes.data  # readable, writable, not code

        def __call__(self, i):
            return 0.0
    with pytest.raises(ValueError, match="executable"):
        parfill.populate(Fake(), 10)
    raw = proto(-1)  # a ctypes pointer to 0xffff...ffff
    with pytest.raises(ValueError, match="address"):
        parfill.populate(raw, 10)


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "auto"])
@pytest.mark.parametrize("kind", ["callable", "vectorized", "expr"])
def test_overlapping_out_is_refused_everywhere(backend, kind):
    from numpy.lib.stride_tricks import as_strided
    base = np.zeros(16)
    zero = as_strided(base, shape=(4, 4), strides=(0, 8))
    rows = as_strided(base, shape=(4, 4), strides=(16, 8))  # rows share
    for out in (zero, rows):
        assert out.flags.writeable
        with pytest.raises(ValueError, match="overlap") as info:
            if kind == "expr":
                parfill.populate("i + j", out=out, backend=backend, workers=2)
            else:
                parfill.populate(lambda i, j: i + j, out=out, backend=backend,
                                 workers=2, vectorized=kind == "vectorized",
                                 timeout=30 if backend == "auto" else None)
        assert str(info.value) == (
            "output elements overlap in memory (a stride of 0, or strides "
            "smaller than the axes they step over): every element needs its "
            "own bytes")
    assert not base.any()  # nothing written


def test_non_overlapping_strided_out_is_accepted():
    base = np.zeros((8, 10))
    for out in (base[::2, ::3], base.T, base[::-1], base[:, 1:7:2]):
        got = parfill.populate(lambda i, j: i * 100 + j, out=out,
                               backend="processes", workers=2)
        np.testing.assert_array_equal(got, np.fromfunction(
            lambda i, j: i * 100 + j, out.shape))
