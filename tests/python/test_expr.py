"""Expressions (SPEC section 4) against NumPy evaluating the same text.

The reference evaluates the expression with Python's ``eval`` on a namespace
where i, j, k, l are ``numpy.indices(shape)`` (int64) arrays, functions are
NumPy's ufuncs and parameters are Python scalars -- NumPy 2's own rules (NEP
50 weak scalars) then decide types and values. Results must match bit for
bit (signed zeros and NaNs included) except for floating ``**`` and the
transcendental functions, which must be within 4 ulp.
"""
import math
import string

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import parfill
from parfill import ExpressionError

FUNCTIONS = (
    "sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh "
    "arctanh exp exp2 expm1 log log2 log10 log1p sqrt cbrt abs floor ceil "
    "trunc rint sign square hypot fmod copysign minimum maximum where").split()
# Bit-exact per SPEC section 4; the other functions are within 4 ulp.
EXACT = set("sqrt abs floor ceil trunc rint minimum maximum fmod copysign "
            "sign square where".split())

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
          np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64,
          np.longdouble, np.complex64, np.complex128, np.clongdouble]


def reference(text, shape, params=None):
    """NumPy's value of the expression for every index of `shape`."""
    shape = tuple(shape)
    ns = {name: getattr(np, name) for name in FUNCTIONS if name != "abs"}
    ns.update(abs=np.abs, pi=math.pi, e=math.e, inf=math.inf, nan=math.nan)
    idx = np.indices(shape, dtype=np.int64)
    for axis, name in enumerate("ijkl"[:len(shape)]):
        ns[name] = idx[axis]
    for axis in range(len(shape)):
        ns[f"i{axis}"] = idx[axis]
        ns[f"n{axis}"] = shape[axis]
    ns["size"] = math.prod(shape)
    ns["idx"] = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    ns.update(params or {})
    with np.errstate(all="ignore"):
        value = eval(text, {"__builtins__": {}}, ns)  # noqa: S307 - tests only
    return np.broadcast_to(np.asarray(value), shape)


def populate(text, shape, dtype=np.float64, **kwargs):
    return parfill.populate(text, shape, dtype, **kwargs)


def assert_same(got, want):
    """Equal bit for bit as values: NaN equals NaN, signed zeros differ."""
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype.kind == "c":
        assert_same(got.real, want.real)
        assert_same(got.imag, want.imag)
        return
    if got.dtype.kind == "f":
        same = (got == want) & (np.signbit(got) == np.signbit(want))
        same |= np.isnan(got) & np.isnan(want)
        bad = np.flatnonzero(~same)
        assert bad.size == 0, (
            f"{bad.size} differ, first at {bad[0]}: "
            f"{got.ravel()[bad[0]]!r} vs {want.ravel()[bad[0]]!r}")
        return
    np.testing.assert_array_equal(got, want)


def ulp_distance(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    ia = a.view(np.int64).astype(object)
    ib = b.view(np.int64).astype(object)
    ia = np.where(ia < 0, -(2**63) - ia, ia)
    ib = np.where(ib < 0, -(2**63) - ib, ib)
    d = np.abs(ia - ib)
    d = np.where(np.isnan(a) & np.isnan(b), 0, d)
    d = np.where((a == b), 0, d)
    return d


def assert_close(got, want, max_ulp=4):
    assert got.shape == want.shape and got.dtype == want.dtype
    d = ulp_distance(got, want)
    worst = int(np.max(d)) if d.size else 0
    at = int(np.argmax(d)) if d.size else 0
    assert worst <= max_ulp, (
        f"{worst} ulp at {at}: {got.ravel()[at]!r} vs {want.ravel()[at]!r}")


def check(text, shape=(7, 5), dtype=np.float64, params=None, exact=True,
          **kwargs):
    got = populate(text, shape, dtype, params=params, **kwargs)
    want = reference(text, shape, params).astype(dtype)
    if exact:
        assert_same(got, want)
    else:
        assert_close(got, want)
    return got


# ------------------------------------------------------------- operators

INT_EXPRESSIONS = [
    "i + j", "i - j", "i * j - 7", "(i - 3) // (j - 2)", "(i - 3) % (j - 2)",
    "i // 0", "i % 0", "-i // 2", "-i % 3", "i ** j", "(i - 3) ** j",
    "-i", "+i", "~i", "i & j", "i | j", "(i - 3) & (j - 2)", "~(i - j)",
    "i < j", "i <= j", "i > j", "i >= j", "i == j", "i != j",
    "-2 ** 2 + i", "2 ** 3 ** 2 + i", "i * 2 // 3 % 4", "i + j * 3 - 4 // 2",
    "(i < 3) + 1", "(i < 3) * (j < 2)", "(i < 3) + (j < 2)", "~(i < 3)",
    "(i < 3) & (j > 1)", "(i < 3) | (j > 1)", "(i < 3) & 6", "(i < 3) // (j < 2)",
    "(i < 3) % (j < 3)", "(i < 3) ** (j < 2)", "True + i", "i * False",
    "i * 9223372036854775807", "i + 9223372036854775807",
    "(i + 3037000500) ** 2", "(i + 7) ** (j + 60)", "-9223372036854775808 + i",
    "idx * size - n0 + n1", "i0 * 10 + i1",
]


@pytest.mark.parametrize("text", INT_EXPRESSIONS)
def test_integer_operators(text):
    check(text, dtype=np.int64)
    check(text, dtype=np.float64)


FLOAT_EXPRESSIONS = [
    "i + 0.5", "i - j * 1.5", "i * 0.1", "i / (j - 2)", "(i - 3) / (j - 2)",
    "(i - 3.5) // (j - 2)", "(i - 3.5) % (j - 2)", "(i - 3) * 0.75 // 0.25",
    "(i - 3) % -0.7", "-(i * 0.5)", "(i - 3.0) // 0", "(i - 3.0) % 0",
    "i * 1e308 * 10", "(i - 3) * inf", "i * nan", "(i * 0.5) ** 2",
    "(i - 3.5) ** -1", "(i * 0.5) ** 0.5", "(i - 3) * 0.5 < j", "i + pi * e",
    "i / 3 == 1", "(i - 3.0) != 0", "i < 2.5", "2.5 <= i", "where(i > j, i, 0.5)",
    "where(i - j, 1.5, -2)", "where(i > 2, True, False)", "where(j * 0.5, i, j)",
    "where(i < 3, i, j) + 0", "1 / (i - 3)", "-0.0 * i", "i * -0.0 + 0.0",
]


@pytest.mark.parametrize("text", FLOAT_EXPRESSIONS)
def test_float_operators(text):
    check(text, dtype=np.float64)


@pytest.mark.parametrize("text", [
    "(i * 0.37 - 1) ** (j * 0.5 - 1)", "2 ** (i - 3.0)", "(i + 0.5) ** 3",
    "i ** 1.5", "2.0 ** i", "(i - 3) ** 2.0", "(i - 3) ** 0.5", "i ** -2.5",
])
def test_float_power_within_4_ulp(text):
    check(text, exact=False)


# Integer operations whose result is then used as a float: NumPy computes
# them in int64 first (-0 is 0), so no -0.0 may appear where the integer is 0.
INT_IN_FLOAT_CONTEXT = [
    "copysign(1, -i)", "copysign(1, -j)", "1 / (-i * 1.0)", "-i * 1.0",
    "-i * 0.5", "-idx * 0.5", "(-i) / 3", "copysign(1, -idx)",
    "copysign(1.0, -(i - j))", "copysign(1, abs(-i))", "copysign(1, -i // 2)",
    "copysign(1, -(i * 0))", "copysign(1, i - i)", "copysign(1, -i % 3)",
    "1 / (-(i * j) * 1.0)", "(-i) ** 0.5", "(-i) ** 3.0", "sqrt(-i)",
    "where(i < 2, -i, 0.5)", "minimum(-i, 0.5)", "maximum(-i, -0.5)",
    "copysign(1, -i0)", "copysign(1, +(-i))", "copysign(1, -(-i))",
    "copysign(1, -i + 0)", "1 / (0.0 - i)", "copysign(1, -i * 2)",
    "copysign(1, floor(-i))", "copysign(1, sign(-i))", "copysign(1, square(-i))",
    "copysign(1, -n0 + i * 0)", "copysign(1, -(n0 - n0) * 1.0)",
]


@pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")
@pytest.mark.parametrize("text", INT_IN_FLOAT_CONTEXT)
def test_integer_negation_in_float_context_equals_numpy(text):
    for shape in ((7, 5), (1, 3), (3, 1)):
        check(text, shape=shape)
    if "j" not in text:
        check(text, shape=(6,))


@pytest.mark.filterwarnings("ignore:invalid value")
def test_integer_negation_in_float_context_transcendental():
    check("arctan2(-i * 1.0, -1)", exact=False)
    check("arctan2(-j, -1)", exact=False)
    got = populate("copysign(1, -i)", (3,))
    assert np.signbit(got).tolist() == [False, True, True]


def test_chained_comparisons():
    got = populate("0 < i <= j != 3", (7, 5), np.bool_)
    want = reference("(0 < i) & (i <= j) & (j != 3)", (7, 5))
    assert_same(got, want)


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_integer_negative_power_is_float():
    """SPEC: a negative constant exponent makes the expression float64
    (NumPy would raise)."""
    assert_same(populate("i ** -1", 5), np.arange(5) ** -1.0)
    assert_same(populate("i ** -1.0 + i ** 0.5 + i ** 2.0", 5),
                np.arange(5) ** -1.0 + np.arange(5) ** 0.5 + np.arange(5) ** 2.0)
    assert_close(populate("(i - 2) ** -3", 5), np.arange(-2.0, 3.0) ** -3)
    assert_close(populate("i ** a", 5, params={"a": -2}), np.arange(5) ** -2.0)


def test_integer_negative_power_at_run_time():
    with pytest.raises(ExpressionError) as info:
        populate("1 + i ** (j - 2)", (3, 4), np.int64)
    assert info.value.position == 6
    assert "negative integer powers" in str(info.value)


# ------------------------------------------------------------- functions

ARGS = {
    "arcsin": "(i - 20) / 20.5", "arccos": "(i - 20) / 20.5",
    "arctanh": "(i - 20) / 20.5", "arccosh": "i * 0.37 + 0.5",
    "log": "i * 0.37", "log2": "i * 0.37", "log10": "i * 0.37",
    "log1p": "i * 0.37 - 1", "sqrt": "i * 0.37 - 1", "exp": "(i - 20) * 37.3",
    "exp2": "(i - 20) * 53.1", "expm1": "(i - 20) * 0.37", "sinh": "(i - 20) * 37",
    "cosh": "(i - 20) * 37", "tan": "(i - 20) * 0.397",
}


@pytest.mark.parametrize("name", [f for f in FUNCTIONS if f not in (
    "arctan2", "hypot", "fmod", "copysign", "minimum", "maximum", "where")])
def test_unary_functions(name):
    arg = ARGS.get(name, "(i - 20) * 0.37")
    text = f"{name}({arg})"
    check(text, shape=(41,), exact=name in EXACT)
    # On integers (NumPy 2 keeps abs/floor/ceil/trunc/sign/square integral).
    int_text = f"{name}(i - 20)"
    if name in ("arccosh", "log", "log2", "log10", "log1p", "sqrt"):
        int_text = f"{name}(i)"
    check(int_text, shape=(41,), dtype=np.float64, exact=name in EXACT)
    if name in ("abs", "floor", "ceil", "trunc", "sign", "square"):
        check(int_text, shape=(41,), dtype=np.int64)


SPECIAL = "where(i == 0, nan, where(i == 1, inf, where(i == 2, -inf, " \
          "where(i == 3, -0.0, (i - 20) * 0.37))))"


@pytest.mark.parametrize("name", [f for f in FUNCTIONS if f not in (
    "arctan2", "hypot", "fmod", "copysign", "minimum", "maximum", "where")])
def test_unary_functions_special_values(name):
    check(f"{name}({SPECIAL})", shape=(41,), exact=name in EXACT)


@pytest.mark.parametrize("name", [
    "arctan2", "hypot", "fmod", "copysign", "minimum", "maximum"])
def test_binary_functions(name):
    check(f"{name}((i - 3) * 0.75, (j - 2) * 0.5)", exact=name in EXACT)
    check(f"{name}(i - 3, j - 2)", dtype=np.float64, exact=name in EXACT)
    check(f"{name}(i - 3, 2.5)", exact=name in EXACT)
    if name in ("fmod", "minimum", "maximum"):
        check(f"{name}(i - 3, j - 2)", dtype=np.int64)
    special = SPECIAL.replace("i ==", "j ==").replace("(i - 20)", "(j - 2)")
    check(f"{name}({SPECIAL}, {special})", shape=(6, 6), exact=name in EXACT)


def test_minimum_maximum_signed_zero_and_nan():
    got = populate("minimum(where(i, 0.0, -0.0), where(i, -0.0, 0.0))", 2)
    assert_same(got, np.minimum([-0.0, 0.0], [0.0, -0.0]))
    got = populate("maximum(where(i, 0.0, -0.0), where(i, -0.0, 0.0))", 2)
    assert_same(got, np.maximum([-0.0, 0.0], [0.0, -0.0]))
    got = populate("minimum(where(i, nan, 1.0), where(i, 1.0, nan))", 2)
    assert np.isnan(got).all()


def test_where_and_logic():
    check("where((i < 3) & ~(j == 2) | (i == j), i * 10, -j)", dtype=np.int64)
    check("where(i, j, 0) + where(j - 2, 1, 2)", dtype=np.int64)
    check("where(i > 3, i, 2.5)")


def test_bitwise_on_floats_is_an_error():
    for text in ("(i * 0.5) & 1", "~(i * 0.5)", "(i * 0.5) | j"):
        with pytest.raises(ExpressionError):
            populate(text, 4)


def test_bool_subtract_and_negate_are_errors():
    for text in ("(i < 1) - (i < 2)", "-(i < 1)", "sign(i < 1)"):
        with pytest.raises(ExpressionError):
            populate(text, 4)


# ------------------------------------------------------------------ casts

CAST_SOURCES = [
    "(i - 50) * 1.37",                      # fractional, both signs
    "(i - 50) * 1000003",                   # integral, wraps in small ints
    "(i - 50) * 7.3e17",                    # beyond int32 / float16 range
    "where(i == 0, nan, where(i == 1, inf, where(i == 2, -inf, "
    "where(i == 3, -0.0, (i - 50) * 3.3e8))))",
    "i % 3 == 0",                           # booleans
    "1 + (i - 50) * 2.0 ** -11 / 3",        # float16 rounding ties
]


def astype_vectorised(values, dtype):
    """astype through NumPy's vectorised loop (contiguous, whole blocks): its
    float -> uint32 differs from the scalar loop for values out of range."""
    n = values.size
    padded = np.zeros(-(-n // 64) * 64 + 64, values.dtype)
    padded[:n] = values.ravel()
    return padded.astype(dtype)[:n].reshape(values.shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("source", CAST_SOURCES)
def test_casts_equal_astype(dtype, source):
    shape = (101,)
    got = populate(source, shape, dtype)
    with np.errstate(all="ignore"):
        want = astype_vectorised(np.ascontiguousarray(reference(source, shape)),
                                 dtype)
    assert_same(got, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_constant_casts(dtype):
    for text in ("2.5", "-1", "300", "True", "nan", "-1e10"):
        got = populate(text, 17, dtype)
        with np.errstate(all="ignore"):
            want = astype_vectorised(reference(text, (17,)).copy(), dtype)
        assert_same(got, want)


@pytest.mark.parametrize("text,n", [
    ("1 + (2 * i + 1) * 2.0 ** -11", 1024),     # every tie in [1, 2)
    ("-(1 + i * 2.0 ** -14)", 16384),           # between ties, negative
    ("(2 * i + 1) * 2.0 ** -25", 2048),         # subnormal ties
    ("i * 2.0 ** -27", 9000),                   # subnormals and underflow
    ("65504 + i * 0.25 - 16", 200),             # up to overflow
    ("(i - 700000) * 0.0937 + 2.0 ** -12", 1400001),
])
def test_float16_rounding(text, n):
    got = populate(text, n, np.float16)
    with np.errstate(over="ignore"):
        want = reference(text, (n,)).astype(np.float16)
    assert_same(got, want)


# ----------------------------------------------------- shapes and layouts

@pytest.mark.parametrize("shape", [
    (1,), (1023,), (1025,), (4097,), (3, 1031), (7, 1, 5), (2, 3, 4, 5),
    (1, 1, 1, 2053), (5, 1, 300, 3), (0,), (3, 0, 2), ()])
def test_shapes(shape):
    letters = "ijkl"[:len(shape)]
    text = " + ".join(f"{name} * {10 ** (3 * (len(shape) - a - 1))}"
                      for a, name in enumerate(letters)) or "7"
    text += " + idx * 0 + size"
    check(text, shape=shape, dtype=np.int64)
    check(f"sin({text} * 0.001)", shape=shape, exact=False)


@pytest.mark.parametrize("make", [
    lambda: np.zeros((40, 60))[::2, ::3],
    lambda: np.zeros((30, 20)).T,
    lambda: np.zeros((20, 30))[::-1, ::-2],
    lambda: np.zeros((20, 30), np.float32)[:, 5:25],
    lambda: np.zeros((4, 5, 6), np.int16).transpose(2, 0, 1),
    lambda: np.zeros(3001, np.complex128)[1::2],
    lambda: np.frombuffer(bytearray(8 * 3000 + 1), np.float64, 3000, 1),
])
def test_strided_out(make):
    out = make()
    if not out.flags.writeable:
        out = np.lib.stride_tricks.as_strided(out, writeable=True)
    text = "i * 1.5 - idx" if out.ndim == 1 else (
        "i * 7 + j * 0.25" if out.ndim == 2 else "i * 100 + j * 10 + k")
    r = parfill.populate(text, out=out)
    assert r is out
    assert_same(out, reference(text, out.shape).astype(out.dtype))


@pytest.mark.parametrize("schedule", ["static", "dynamic", "guided"])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("chunk", [None, 1, 1000, 100000])
def test_result_independent_of_scheduling(schedule, workers, chunk):
    text = "sin(i * 0.001) * exp(-j * 1e-3) + where(i % 7 == j % 5, 1, 0)"
    shape = (301, 257)
    got = populate(text, shape, workers=workers, schedule=schedule, chunk=chunk)
    base = populate(text, shape, workers=1, schedule="static")
    assert_same(got, base)


@pytest.mark.parametrize("n", [3_000_000, 5_000_001])
def test_large_contiguous_output(n):
    """Direct writes, and (above 32 MiB) non-temporal ones."""
    got = populate("i * b ** 2", n, params={"b": 1.5})
    assert_same(got, np.arange(n) * 1.5 ** 2)
    got = populate("i * 3 - 7", n, np.int64)
    assert_same(got, np.arange(n, dtype=np.int64) * 3 - 7)
    got = populate("i % 1000 - 500", 2 * n, np.int32)
    assert_same(got, (np.arange(2 * n) % 1000 - 500).astype(np.int32))
    buffer = bytearray(8 * n + 3)
    out = np.frombuffer(buffer, np.float64, n, 3)    # not 8-byte aligned
    parfill.populate("i * 0.5", out=out)
    assert_same(out, np.arange(n) * 0.5)


# -------------------------------------------------------------- params

def test_params_types():
    check("a * i + b", params={"a": 3, "b": 0.25})
    check("a * i + b", dtype=np.int64, params={"a": 3, "b": -7})
    # Booleans are NumPy booleans (~ is not, + is or), also when given as
    # Python's True, which Python alone would treat as the int 1.
    check("where(flag, i, -i) + (~flag) * 100", dtype=np.int64,
          params={"flag": np.bool_(True)})
    check("flag + flag", dtype=np.int64, params={"flag": np.bool_(True)})
    assert_same(populate("(~flag) * 100 + (flag + flag) + i", 3, np.int64,
                         params={"flag": True}), np.arange(3) + 1)
    check("a * i", params={"a": np.float32(0.1)})
    check("a * i", dtype=np.int64, params={"a": np.int16(-3)})
    check("a & i", dtype=np.int64, params={"a": np.uint8(6)})
    check("where(f, 1, 2) * i", dtype=np.int64, params={"f": np.bool_(False)})
    check("a ** i", dtype=np.int64, params={"a": 3})


@pytest.mark.parametrize("value", [1j, "2", None, [1], np.array([1.0]),
                                   np.complex64(1)])
def test_param_type_errors_name_the_parameter(value):
    with pytest.raises(TypeError, match="'weird'"):
        populate("i", 4, params={"weird": value})


def test_param_overflow():
    with pytest.raises(ValueError, match="'big'"):  # SPEC: not OverflowError
        populate("i + big", 4, params={"big": 2**63})


def test_missing_parameter_is_named():
    with pytest.raises(ExpressionError, match="'gamma'") as info:
        populate("i * alpha + gamma", 4, params={"alpha": 1.0})
    assert info.value.position == 12
    assert info.value.expression == "i * alpha + gamma"


def test_builtin_names_cannot_be_parameters():
    with pytest.raises(ValueError, match="built-in"):
        populate("i * e", 4, params={"e": 2})


# --------------------------------------------------------------- errors

ERRORS = [
    ("", 0, "empty"),
    ("i +", 3, "end of expression"),
    ("(i + 1", 0, "never closed"),
    ("i + 1)", 5, "unmatched"),
    ("i j", 2, "operator"),
    ("i ^ 2", 2, "**"),
    ("i = 2", 2, "=="),
    ("i and j", 2, "&"),
    ("foo(i)", 0, "unknown function"),
    ("sin(i, j)", 0, "argument"),
    ("k + 1", 0, "axis 2"),
    ("i + n3", 4, "axis 3"),
    ("uniform(i)", 8, "non-negative integer constant"),
    ("sin", 0, "function"),
    ("1e", 0, "number"),
    ("99999999999999999999 * i", 0, "too large"),
    ("i * 0.5 & 1", 8, "&"),
    ("é + i", 0, "unexpected"),
    ("i + é", 4, "unexpected"),
    ("((((" * 30 + "i" + "))))" * 30, 100, "nested"),
    ("i\x00 + 1", 1, "NUL"),
]


@pytest.mark.parametrize("text,position,words", ERRORS)
def test_errors_with_position(text, position, words):
    with pytest.raises(ExpressionError) as info:
        populate(text, (3, 4))
    e = info.value
    assert isinstance(e, ValueError)
    assert e.position == position, str(e)
    assert e.expression == text
    assert words in e.message
    assert "^" in str(e) and text[:10] in str(e)


@pytest.mark.parametrize("text", ["", " ", "   ", "\t", " \n "])
def test_empty_expression_shows_a_caret(text):
    with pytest.raises(ExpressionError, match="empty") as info:
        populate(text, 3)
    e = info.value
    assert 0 <= e.position <= len(text)
    lines = str(e).splitlines()
    assert lines[-1].strip() == "^", str(e)


def test_too_long():
    with pytest.raises(ExpressionError, match="longer"):
        populate("i" + " " * 70000, 3)


def test_long_flat_expression():
    text = "+".join(["i"] * 20000)
    assert_same(populate(text, 5, np.int64), np.arange(5) * 20000)


def test_progress_and_cancel():
    calls = []
    populate("i * 0.5", 2_000_000, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (2_000_000, 2_000_000)

    def boom(done, total):
        raise KeyError("stop")
    with pytest.raises(KeyError):
        populate("i * 0.5", 2_000_000, progress=boom)


def test_ctrl_c_stops_a_long_fill():
    """SIGINT during a multi-second fill raises KeyboardInterrupt promptly."""
    import os
    import signal
    import threading
    import time

    text = "sin(i * 0.1) * cos(j * 0.1) * exp(sin(i * j * 1e-6)) > tanh(i - j)"
    out = np.empty((20000, 20000), np.bool_)
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.3, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            parfill.populate(text, out=out, workers=2)
        assert time.perf_counter() - sent[0] < 0.5
    finally:
        timer.cancel()


# ---------------------------------------------------- hostile strings

TOKENS = ["i", "j", "k", "idx", "size", "n0", "a", "b", "flag", "x", "1", "0",
          "2.5", "1e308", "-", "+", "*", "/", "//", "%", "**", "(", ")", ",",
          "<", "<=", "==", "!=", "&", "|", "~", "sin", "where", "pi", "nan",
          "inf", "True", "9223372036854775807", "fmod", "hypot", " "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=25))
def test_token_soup_never_crashes(tokens):
    text = " ".join(tokens)
    try:
        out = populate(text, (3, 5), np.float64,
                       params={"a": 2, "b": -0.5, "flag": True, "x": 3})
    except ExpressionError as e:
        assert -1 <= e.position <= len(text)
    else:
        assert out.shape == (3, 5)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "é\x00\u2028", max_size=60))
def test_arbitrary_text_never_crashes(text):
    try:
        populate(text, 7, np.int32)
    except ExpressionError as e:
        assert -1 <= e.position <= len(text)
