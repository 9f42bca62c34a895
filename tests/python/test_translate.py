"""populate(..., translate=) (SPEC sections 2 and 9): translated functions
against the sequential loop ``for idx in numpy.ndindex(shape): a[idx] =
f(*idx)`` -- values bit for bit, or the same exception type at the same first
element with parfill's note -- for every function of the front end's table
(imported from test_translate_frontend.py), every dtype family, 0-3 dims,
1-3 workers, every schedule, several chunks and out= layouts; guards that
bail in the middle of a fill; the bail-out loop and its hand-over to the
Python engine; translate="always"/"never"; tracers; Ctrl-C, timeout and
leaks.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
import zlib

import numpy as np
import pytest

import parfill
from parfill import _core, _populate, _translated

import test_translate_frontend as frontend
from references import bits, sequential

DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
          np.uint32, np.int64, np.uint64, np.float16, np.float32, np.float64,
          np.longdouble, np.complex64, np.complex128]
SHAPES = {0: (), 1: (23,), 2: (5, 6), 3: (3, 4, 3)}
# (workers, schedule, chunk, out layout), rotated over the cases.
CONFIGS = [(w, s, c, o)
           for w in (1, 2, 3)
           for s in ("static", "dynamic", "guided")
           for c in (None, 1, 7)
           for o in ("new", "strided", "fortran", "reversed")]


@pytest.fixture(autouse=True)
def strict_translator(monkeypatch):
    """A translator bug (an exception other than TranslationError) fails
    the test instead of leaving the function to Python quietly."""
    monkeypatch.setattr(_translated, "strict", True)


# -- the comparison -------------------------------------------------------------

def make_out(shape, dtype, layout):
    if layout == "new":
        return None
    if layout == "fortran" or not shape:
        return np.zeros(shape, dtype, order="F")
    base = np.zeros(tuple(2 * n for n in shape), dtype)
    step = -2 if layout == "reversed" else 2
    return base[tuple(slice(None, None, step) for _ in shape)]


def assert_same(got, want, what=""):
    assert got.shape == want.shape and got.dtype == want.dtype, what
    assert bits(got) == bits(want), f"{what}\ngot  {got!r}\nwant {want!r}"


def check(f, shape, dtype, layout="new", **kw):
    """populate(f, ...) equals the sequential loop, or raises what it raises
    at the same first element, with the note."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    want, err = sequential(f, shape, dtype)
    out = make_out(shape, dtype, layout)
    what = f"{getattr(f, '__name__', f)} {shape} {np.dtype(dtype)} {layout} {kw}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if err is None:
            got = parfill.populate(f, shape, dtype, out=out, **kw)
            if out is not None:
                assert got is out
            assert_same(got, want, what)
            return "value"
        with pytest.raises(BaseException) as info:
            parfill.populate(f, shape, dtype, out=out, **kw)
    e = info.value
    assert type(e) is err[0], f"{what}: {e!r}, Python raises {err[0]}"
    notes = getattr(e, "__notes__", [])
    assert any(f"element {err[1]} in " in n for n in notes), (what, notes)
    return "error"


# -- the table -------------------------------------------------------------------

TABLE = frontend.ALL


def _config(name, n):
    return CONFIGS[(zlib.crc32(name.encode()) + n) % len(CONFIGS)]


@pytest.mark.parametrize("name,func,ndim,opts", TABLE,
                         ids=[c[0] for c in TABLE])
def test_table_every_dtype(name, func, ndim, opts):
    """Every function of the front end's table, into every dtype family,
    with a configuration that rotates through workers, schedules, chunks
    and out= layouts."""
    parfill.translate(func, ndim)            # it does translate
    kinds = set()
    for n, dtype in enumerate(DTYPES):
        workers, schedule, chunk, layout = _config(name, n)
        kinds.add(check(func, SHAPES[ndim], dtype, layout, workers=workers,
                        schedule=schedule, chunk=chunk, translate="always"))
    assert kinds


def test_table_is_large_and_covers_dims():
    assert len(TABLE) >= 150
    assert {ndim for _, _, ndim, _ in TABLE} >= {0, 1, 2, 3}


@pytest.mark.parametrize("workers,schedule,chunk,layout", CONFIGS)
def test_configurations(workers, schedule, chunk, layout):
    """One function with guards (a division by zero on a diagonal is
    avoided, an int overflow, a domain error redone in Python) in every
    configuration: the result never depends on them."""
    g = {"math": math, "c": 2**62}

    def f(i, j):
        x = math.sqrt(i * 3 + j) - 7.5
        if i == j:
            return x
        k = c * (1 + (i == 2 * j)) + i        # leaves int64 there: a bail
        return x / (i - j) + k % 1000

    f = type(f)(f.__code__, g)
    for shape in ((40, 37), (1, 90), (90, 1)):
        for dtype in (np.float64, np.float32, np.int64):
            check(f, shape, dtype, layout, workers=workers,
                  schedule=schedule, chunk=chunk, translate="always")


def test_backends_do_not_change_the_result():
    f = frontend.f_math
    want, _ = sequential(f, (30, 20), np.float64)
    for backend in ("auto", "threads", "processes", "serial"):
        got = parfill.populate(f, (30, 20), backend=backend, workers=2,
                               translate="always")
        assert_same(got, want, backend)


# -- guards that bail in the middle of a fill -------------------------------------

def _with_globals(src, **values):
    g = {"math": math, **values}
    exec(compile(src, "<test_translate>", "exec"), g)
    return g["f"]


@pytest.fixture
def spy(monkeypatch):
    """Counts native fills (with their first index), elements computed by
    calling Python, and hand-overs to the Python engine (with start)."""
    seen = {"fills": [], "here": 0, "supervised": 0, "rest": []}
    fill, here, sup = (_core.fill_translated, _translated._element_here,
                       _translated._element_supervised)
    rest = _populate._populate_callable

    def fill_spy(*a, **kw):
        seen["fills"].append(kw.get("first", 0))
        return fill(*a, **kw)

    def here_spy(*a, **kw):
        seen["here"] += 1
        return here(*a, **kw)

    def sup_spy(*a, **kw):
        seen["supervised"] += 1
        return sup(*a, **kw)

    def rest_spy(*a, **kw):
        seen["rest"].append(kw.get("start", 0))
        return rest(*a, **kw)

    monkeypatch.setattr(_core, "fill_translated", fill_spy)
    monkeypatch.setattr(_translated, "_element_here", here_spy)
    monkeypatch.setattr(_translated, "_element_supervised", sup_spy)
    monkeypatch.setattr(_populate, "_populate_callable", rest_spy)
    return seen


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.uint64,
                                   np.float32, np.complex128])
def test_overflow_at_one_element(spy, dtype):
    # 2**63 + 1234 at element 1,234 of 5,000: Python's int there.
    f = _with_globals("def f(i):\n    return (i == 1234) * c * 2 + i\n",
                      c=2**62)
    kind = check(f, (5000,), dtype, workers=2, translate="always")
    if kind == "value":      # computed natively around the one element
        assert spy["fills"] == [0, 1235] and spy["here"] == 1
        assert spy["rest"] == []
    else:                    # int64: OverflowError at (1234,)
        assert dtype == np.int64 and spy["fills"] == [0]


@pytest.mark.parametrize("dtype", [np.float64, np.uint64, np.int64])
def test_overflow_from_one_element_on(spy, dtype):
    # From element 1,234 on every element leaves int64: after a few bails
    # the rest goes to the Python engine, which starts where the bail was.
    f = _with_globals("def f(i):\n    return c * (1 + (i >= 1234)) + i\n",
                      c=2**62)
    kind = check(f, (5000,), dtype, workers=2, translate="always")
    if kind == "value":
        assert spy["here"] == _translated._MIN_BAILS_FOR_DENSITY - 1
        assert spy["rest"] == [1234 + _translated._MIN_BAILS_FOR_DENSITY - 1]


def test_division_by_zero_at_one_element(spy):
    f = _with_globals("def f(i):\n    return 1.0 / (i - 2345)\n")
    check(f, (5000,), np.float64, workers=2, translate="always")
    assert spy["fills"] == [0] and spy["here"] == 1
    f = _with_globals("def f(i, j):\n    return (i * 100 + j) // (i - j)\n")
    check(f, (40, 50), np.int32, workers=3, translate="always")


def test_guarded_division_is_native_throughout(spy):
    f = _with_globals("def f(i):\n    return 7 / (i - 2345) if i != 2345 "
                      "else -1.0\n")
    check(f, (5000,), np.float64, workers=2, translate="always")
    assert spy["fills"] == [0] and spy["here"] == 0


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64, np.bool_])
def test_nan_into_an_int_dtype(spy, dtype):
    f = _with_globals("def f(i):\n    return math.nan if i == 3000 else "
                      "i * 0.01\n")
    assert check(f, (5000,), dtype, workers=2, translate="always") == \
        ("value" if dtype == np.bool_ else "error")


def test_sparse_bails_resume_natively(spy):
    # Every 1500th element leaves int64 (2**70 + i: Python's int there);
    # the fill resumes natively after each.
    f = _with_globals("def f(i):\n    return (i % 1500 == 5) * 2 ** 40 * "
                      "2 ** 30 + i\n")
    check(f, (10_000,), np.float64, workers=2, translate="always")
    assert spy["here"] == 7 and spy["rest"] == []
    assert spy["fills"] == [0] + [k * 1500 + 6 for k in range(7)]


def test_row_cache_of_last_index_terms(spy):
    # cos(j * 0.3), atan2(j, 7.0) and j ** 0.7 depend on the last index
    # only: a worker computes them for one row and copies them in the rows
    # after (pyvm.c: the row cache). Rows of several lane blocks, chunks
    # that are not whole rows, every schedule, 1-3 workers, and fills that
    # start inside a row: from row 2 on, c * i leaves int64 at column 517,
    # Python computes that element and the fill resumes at column 518.
    body = ("    return math.cos(j * 0.3) * (i + 1) + math.atan2(j, 7.0) - "
            "j ** 0.7 + (c * i if j == 517 else 0)\n")
    f2 = _with_globals("def f(i, j):\n" + body, c=2**62)
    f3 = _with_globals("def f(i, k, j):\n" + body, c=2**62)
    for shape, workers, schedule, chunk in (
            ((7, 1100), 1, "static", None), ((7, 1100), 2, "dynamic", 333),
            ((7, 1100), 3, "guided", None), ((3, 2, 700), 2, "static", 1000),
            # rows too long to cache all three terms (2 MiB per worker)
            ((3, 100_000), 2, "dynamic", None)):
        f = f2 if len(shape) == 2 else f3
        spy["fills"].clear()
        check(f, shape, np.float64, workers=workers, schedule=schedule,
              chunk=chunk, translate="always")
        row = shape[-1]
        rows = [k for k in range(math.prod(shape[:-1]))
                if k // math.prod(shape[1:-1]) >= 2]
        assert spy["fills"] == [0] + [k * row + 518 for k in rows], shape


def test_row_cache_bails_at_the_first_failing_column(spy):
    # A last-index term that fails for some columns fails at the first of
    # them in C order, whichever rows came first to a worker: log(j - 600)
    # from row 3 on (ValueError at (3, 0)); exp(j) overflows from column 710
    # (OverflowError at (0, 710)).
    for src in ("def f(i, j):\n    return math.log(j - 600) if i >= 3 "
                "else j * 0.5\n",
                "def f(i, j):\n    return math.exp(j) + i\n"):
        f = _with_globals(src)
        for workers in (1, 2, 3):
            check(f, (6, 1000), np.float64, workers=workers, chunk=700,
                  translate="always")


def test_many_sparse_bails_go_to_python(spy):
    f = _with_globals("def f(i):\n    return (i % 1500 == 7) * c * 4 + i\n",
                      c=2**62)
    check(f, (_translated._MAX_BAILS + 10) * 1500, np.float64, workers=2,
          translate="always")
    assert spy["here"] == _translated._MAX_BAILS
    assert len(spy["rest"]) == 1


def test_every_element_bails(spy):
    # From element 3 on a negative base to a fractional power: complex in
    # Python, so every element bails and the rest goes to Python.
    f = _with_globals("def f(i):\n    return (2.0 - i) ** 0.5\n")
    a = parfill.populate(f, 3000, np.complex128, workers=2,
                         translate="always")
    assert_same(a, sequential(f, (3000,), np.complex128)[0])
    assert spy["rest"] == [3 + _translated._MIN_BAILS_FOR_DENSITY - 1]


def test_bailing_element_is_supervised_with_timeout_or_retries(spy):
    f = _with_globals("def f(i):\n    return 1.0 / (i - 2345)\n")
    for kw in ({"timeout": 30.0}, {"retries": 1}):
        spy["here"] = spy["supervised"] = 0
        with pytest.raises(ZeroDivisionError) as info:
            parfill.populate(f, 5000, workers=2, translate="always", **kw)
        assert spy["here"] == 0 and spy["supervised"] == 1
        assert any("element (2345,) in worker 0 (pid " in n
                   for n in info.value.__notes__), info.value.__notes__
        g = _with_globals("def f(i, j):\n    return (i - j) ** (j - i) if i != j "
                          "else i * 3\n")
        check(g, (20, 20), np.float64, workers=2, translate="always", **kw)
        assert spy["supervised"] > 1


def test_changed_global_gives_the_new_result():
    f = _with_globals("def f(i):\n    return i * c + d\n", c=2, d=0.5)
    check(f, (100,), np.float64, translate="always")
    f.__globals__["c"] = 3
    assert parfill.populate(f, 100, translate="always")[10] == 30.5
    f.__globals__["c"] = 2**62               # now it overflows: Python's int
    check(f, (100,), np.float64, translate="always")
    f.__globals__["d"] = "x"                 # no longer translatable
    with pytest.raises(parfill.TranslationError):
        parfill.populate(f, 100, translate="always")
    with pytest.raises(TypeError):
        parfill.populate(f, 100)             # Python raises


# -- translate="always" / "never" / "auto" --------------------------------------------

@pytest.mark.parametrize("func,ndim,construct", frontend.REFUSED,
                         ids=[c[2] for c in frontend.REFUSED])
def test_always_refuses_naming_the_construct_auto_calls_python(
        func, ndim, construct):
    # Two elements per axis: the table's functions are written to be
    # translated, not run (r_while loops forever from i = 2 on).
    shape = (2,) * ndim
    with pytest.raises(parfill.TranslationError) as info:
        parfill.populate(func, shape, translate="always")
    assert construct in str(info.value)
    assert isinstance(info.value, TypeError)
    check(func, shape, np.float64, workers=2)          # auto: Python's result
    check(func, shape, np.float64, workers=2, translate="never")


def _count_calls(code):
    calls = [0]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is code:
            calls[0] += 1
    return calls, profile


def test_never_calls_python_always_does_not():
    f = _with_globals("def f(i, j):\n    return i * 0.5 - j\n")
    calls, profile = _count_calls(f.__code__)
    sys.setprofile(profile)
    try:
        a = parfill.populate(f, (7, 9), backend="serial", translate="never")
        never = calls[0]
        b = parfill.populate(f, (7, 9), backend="serial", translate="auto")
        auto = calls[0] - never              # a profiler must see the calls
        c = parfill.populate(f, (7, 9), backend="serial", translate="always")
        always = calls[0] - never - auto
    finally:
        sys.setprofile(None)
    assert (never, auto, always) == (63, 63, 0)
    want = sequential(f, (7, 9), np.float64)[0]
    for x in (a, b, c):
        assert_same(x, want)


def test_auto_translates_without_a_tracer(monkeypatch):
    seen = []
    fill = _core.fill_translated
    monkeypatch.setattr(_core, "fill_translated",
                        lambda *a, **kw: seen.append(1) or fill(*a, **kw))
    old = sys.gettrace()
    sys.settrace(None)       # coverage's tracer, if any, would refuse it
    try:
        parfill.populate(lambda i: i * 2.5, 50)
        vectorized = parfill.populate(lambda i: i * 2.5, 50, vectorized=True)
    finally:
        sys.settrace(old)
    if not _translated._observed():
        assert seen == [1]
    assert_same(vectorized, np.arange(50) * 2.5)


def test_translate_argument_is_checked():
    for bad in ("yes", True, None, 1):
        with pytest.raises(ValueError, match="translate must be one of"):
            parfill.populate(lambda i: i, 3, translate=bad)
    with pytest.raises(parfill.TranslationError, match="vectorized"):
        parfill.populate(lambda i: i, 3, vectorized=True, translate="always")
    with pytest.raises(parfill.TranslationError, match="only plain Python"):
        parfill.populate(math.sqrt, 3, translate="always")
    # Expressions are native already; translate= changes nothing for them.
    assert_same(parfill.populate("i * 2", 5, translate="never"),
                np.arange(5) * 2.0)


def test_refused_attempt_is_cheap():
    """Not a speed assertion (shared machine), a generous bound: a refused
    function costs the attempt once, then a cache hit."""
    f = _with_globals("def f(i):\n    return [i][0] + len('ab')\n")
    t0 = time.perf_counter()
    with pytest.raises(parfill.TranslationError):
        parfill.translate(f, 1)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        with pytest.raises(parfill.TranslationError):
            parfill.translate(f, 1)
    cached = (time.perf_counter() - t0) / 100
    assert first < 0.05 and cached < 0.005, (first, cached)


def test_progress_counts_the_whole_call():
    f = _with_globals("def f(i):\n    return (i % 4000 == 3999) * c * 2 + i\n",
                      c=2**62)
    seen = []
    a = parfill.populate(f, 20_000, progress=lambda d, t: seen.append((d, t)),
                         workers=2, translate="always")
    assert_same(a, sequential(f, (20_000,), np.float64)[0])
    assert seen and all(t == 20_000 for _, t in seen)
    assert seen[-1][0] == 20_000
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_empty_and_zero_dimensional():
    assert parfill.populate(lambda i, j: i + j, (0, 5),
                            translate="always").shape == (0, 5)
    assert_same(parfill.populate(lambda: 2.5, (), translate="always"),
                np.array(2.5))
    check(lambda: 1 // 0 if False else 7 // (1 - 1), (), np.int64)


# -- Ctrl-C, timeout, leaks ----------------------------------------------------------

_SLOW = _with_globals(
    "def f(i):\n"
    "    x = i * 1e-7\n"
    + "".join("    x = math.sin(x) + math.cos(x) * 0.5\n" for _ in range(12))
    + "    return x\n")


def test_ctrl_c_during_a_long_translated_fill(no_leaks):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    out = np.empty(2 * 10**7, np.float32)
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            parfill.populate(_SLOW, out=out, workers=2, translate="always")
    finally:
        timer.cancel()
        timer.join()
    assert time.monotonic() - t0 < 0.3 + 2.0
    del out


def test_timeout_during_a_long_translated_fill(no_leaks):
    out = np.empty(2 * 10**7, np.float32)
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(_SLOW, out=out, workers=2, timeout=0.3,
                         translate="always")
    assert time.monotonic() - t0 < 0.3 + 2.0
    del out


def test_nothing_leaks(no_leaks):
    f = _with_globals("def f(i):\n    return c * (1 + (i >= 1234)) + i\n",
                      c=2**62)
    for backend in ("auto", "processes", "threads", "serial"):
        for kw in ({}, {"timeout": 30.0}, {"retries": 1}):
            a = parfill.populate(f, 5000, workers=2, backend=backend, **kw)
            assert a[-1] == float(2**63 + 4999)
            del a
    g = _with_globals("def f(i):\n    return 1.0 / (i - 17)\n")
    for kw in ({}, {"timeout": 30.0}):
        with pytest.raises(ZeroDivisionError):
            parfill.populate(g, 100, workers=2, **kw)
