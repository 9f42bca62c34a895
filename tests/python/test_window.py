"""Blocks of a larger array (parfill._window, what parfill.dask runs per
task): each kind of func -- expression, Python callable on every backend,
vectorized callable, translated function (with elements that bail to
Python), native function, random field -- fills a box with the values of
the same elements of the whole array, which parfill.populate and the
sequential loop give; failures name the element of the whole.
"""
import ctypes
import math

import numpy as np
import pytest

import parfill
from parfill import _window

from references import sequential

WHOLE = (13, 17, 11)
BOXES = [((0, 0, 0), (13, 17, 11)), ((2, 3, 4), (5, 6, 7)),
         ((4, 0, 0), (3, 17, 11)), ((12, 16, 10), (1, 1, 1)),
         ((0, 5, 0), (13, 1, 11)), ((3, 3, 3), (0, 4, 4)),
         ((1, 2, 9), (9, 15, 2))]


def box_of(a, origin, shape):
    return a[tuple(slice(o, o + n) for o, n in zip(origin, shape))]


def check(make_block, whole):
    for origin, shape in BOXES:
        got = make_block(origin, shape)
        want = box_of(whole, origin, shape)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert got.tobytes() == want.tobytes(), (origin, shape)


@pytest.mark.parametrize("text", [
    "i * 10000 + j * 100 + k", "idx * 0.5 - size", "n0 * i + n1 * j + n2 * k",
    "uniform()", "normal() * (i + 1)", "where(idx % 7 == 0, uniform(), j)"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
def test_expressions_equal_the_whole(text, dtype):
    whole = parfill.populate(text, WHOLE, dtype, params={"seed": 77})
    for workers in (1, 3):
        check(lambda o, s: _window.populate_block(
            text, WHOLE, o, s, dtype, params={"seed": 77}, workers=workers,
            chunk=5), whole)


def func(i, j, k):
    return math.sin(i * 0.7) * j - k ** 2 / (1 + i + j)


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "auto"])
def test_callables_equal_the_sequential_loop(backend):
    whole, _ = sequential(func, WHOLE, np.float64)
    check(lambda o, s: _window.populate_block(
        func, WHOLE, o, s, backend=backend, workers=2, translate="never"),
        whole)


def test_vectorized_callables():
    def vec(i, j, k):
        return i * 1000 + j * 10 + k
    whole = parfill.populate(vec, WHOLE, np.int64, vectorized=True)
    check(lambda o, s: _window.populate_block(
        vec, WHOLE, o, s, np.int64, vectorized=True, workers=2, chunk=13),
        whole)


def test_translated_functions_and_their_bails():
    # Where k == 5 and x > 922, x * 10**16 leaves int64: those elements
    # bail to Python, which computes them with its big ints.
    def f(i, j, k):
        x = i * 1000 + j * 10 + k
        if k == 5:
            return float(x * 10**16)
        return x * 0.5
    parfill.translate(f, 3)  # translatable
    whole, _ = sequential(f, WHOLE, np.float64)
    check(lambda o, s: _window.populate_block(
        f, WHOLE, o, s, translate="always", workers=2), whole)
    check(lambda o, s: _window.populate_block(
        f, WHOLE, o, s, translate="always", workers=1, timeout=60), whole)


def test_native_functions():
    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_int64),
                             ctypes.c_int)

    @proto
    def index_fn(index, ndim):
        return float(index[0] * 10000 + index[1] * 100 + index[2])

    elem = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(
        lambda e: e * 0.25)
    for fn in (index_fn, elem):
        whole = parfill.populate(fn, WHOLE)
        check(lambda o, s: _window.populate_block(fn, WHOLE, o, s, workers=2),
              whole)


@pytest.mark.parametrize("dist", ["uniform", "normal"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_random_fields(dist, dtype):
    whole = parfill.random(WHOLE, dist, seed=2**100 + 3, dtype=dtype, stream=4)
    check(lambda o, s: _window.random_block(
        WHOLE, o, s, dist, seed=2**100 + 3, dtype=dtype, stream=4,
        workers=2), whole)


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_a_failure_names_the_element_of_the_whole(backend):
    def bad(i, j, k):
        if (i, j, k) in ((4, 5, 6), (5, 3, 3)):
            raise KeyError((i, j, k))
        return 0.0
    with pytest.raises(KeyError) as info:
        _window.populate_block(bad, WHOLE, (3, 3, 3), (4, 4, 4),
                               backend=backend, workers=2, translate="never")
    assert info.value.args[0] == (4, 5, 6)  # the first in C order
    assert any("element (4, 5, 6)" in n for n in info.value.__notes__), \
        info.value.__notes__


def test_expression_errors_follow_the_block():
    # An integer to a negative power: the block fails where its own
    # elements do, whatever the rest of the whole would do.
    with pytest.raises(parfill.ExpressionError):
        _window.populate_block("i ** (j - 3)", WHOLE, (0, 0, 0), (2, 5, 2),
                               np.int64)
    out = _window.populate_block("i ** (j - 3)", WHOLE, (0, 3, 0), (2, 5, 2),
                                 np.int64)
    i, j, _ = np.indices((2, 5, 2))
    assert (out == i ** j).all()


@pytest.mark.parametrize("whole, origin, shape, error", [
    ((4, 4), (3, 0), (2, 2), ValueError),
    ((4, 4), (0,), (2, 2), ValueError),
    ((4, 4), (-1, 0), (2, 2), ValueError),
    ((4, 4), (0, 0), (2, 5), ValueError),
    ((4, 4), ("a", 0), (2, 2), TypeError),
    ((4, 4), (True, 0), (2, 2), TypeError),
])
def test_bad_windows(whole, origin, shape, error):
    with pytest.raises(error):
        _window.populate_block("i", whole, origin, shape)
    with pytest.raises(error):
        _window.random_block(whole, origin, shape)


def test_the_native_layer_checks_windows_too():
    out = np.empty((2, 2))
    for window, error in [(((4, 4), (3, 0)), ValueError),
                          (((4,), (0,)), ValueError),
                          ("no", TypeError), (((4, 4), (0, -1)), ValueError),
                          (((4, 4), (0, 1.5)), TypeError)]:
        with pytest.raises(error):
            parfill._core.fill_expr("i", out, window=window)
        with pytest.raises(error):
            parfill._core.fill_callable(lambda i, j: 0, out, window=window)
