"""The translated-function VM (issue 11) against CPython and NumPy.

Every operation of the opcode table runs as a tiny program -- its operands
as constants in the pools -- on thousands of operand pairs (edge values and
random ones), and is compared with Python evaluating the same operation:
bit for bit when the VM returns a value, a bail wherever Python raises. A
bail where Python does not raise is allowed only where the contract allows
it (an int outside int64, ``int ** negative``, int / int of values that are
not exact doubles, a complex ``**``, a hypot the CPython versions round
differently); those are counted and printed. Stores into every dtype are
compared with ``a[0] = value`` (warnings as errors: NumPy warning means a
bail). Programs over many elements check the lowest bailing element, ``first``
and independence from workers and schedules.
"""
import math
import random
import struct
import warnings

import numpy as np
import pytest

from parfill import _core
from references import clear_errno

OPS = _core.pyvm_opcodes()
FNS = _core.pyvm_functions()
INT64 = (-2**63, 2**63 - 1)
CMPS = {"LT": lambda a, b: a < b, "LE": lambda a, b: a <= b,
        "EQ": lambda a, b: a == b, "NE": lambda a, b: a != b,
        "GT": lambda a, b: a > b, "GE": lambda a, b: a >= b}
BAILS = {}  # op -> number of allowed bails where Python gave a value

rng = random.Random(11)

EDGE_INTS = sorted({0, 1, -1, 2, -2, 3, -3, 7, -7, 10, 63, 64, 65, 100, -100,
                    2**31 - 1, 2**31, 2**32, -2**32, 2**52, 2**53 - 1, 2**53,
                    2**53 + 1, -2**53 - 1, 2**62, 3037000499, 3037000500,
                    2**63 - 1, -2**63, -2**63 + 1, -(2**62)})
EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, 0.1,
               -0.1, 2.0, 10.0, 1e-300, -1e-300, 5e-324, -5e-324,
               2.2250738585072014e-308, 1e308, -1e308,
               1.7976931348623157e308, float(2**53), float(2**53) + 2.0,
               2.0**63, -2.0**63, 2.0**63 - 1024.0, 2.0**64, 1e16, 0.7,
               math.pi, -math.e, 710.0, -745.5, 1e10, float("inf"),
               float("-inf"), float("nan"), -float("nan"), 4503599627370495.5,
               -4503599627370495.5, 0.49999999999999994, 1e-8, 65504.0,
               65520.0, 3.4028235677973366e38, 3.5e38, 1.0000000000000002,
               0.9999999999999999]


def rand_ints(n):
    out = []
    for _ in range(n):
        bits = rng.choice((3, 8, 16, 31, 32, 53, 62, 63))
        out.append(rng.randrange(-2**bits, 2**bits))
    return out


def rand_floats(n):
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            out.append(rng.uniform(-10, 10))
        elif kind < 0.7:
            out.append(rng.uniform(-1e6, 1e6))
        elif kind < 0.85:
            out.append(float(rng.randrange(-100, 100)) / rng.choice((1, 2, 4)))
        else:
            out.append(struct.unpack("<d", rng.randbytes(8))[0])
    return out


INTS = EDGE_INTS + rand_ints(40)
FLOATS = EDGE_FLOATS + rand_floats(40)


def int_pairs():
    pairs = [(a, b) for a in INTS for b in INTS]
    small = [v for v in INTS if abs(v) < 200]
    pairs += [(a, b) for a in INTS for b in small]  # shift counts, powers
    return pairs


def float_pairs():
    return [(a, b) for a in FLOATS for b in FLOATS]


def mixed_pairs():
    return [(a, b) for a in INTS for b in FLOATS]


def show(v):
    """A value for messages: floats as their bits too (NaN payloads)."""
    if type(v) is float:
        return f"{v!r}/{struct.unpack('<Q', fbits(v))[0]:#x}"
    return repr(v)


def fbits(x):
    return struct.pack("<d", x)


class Bail(Exception):
    pass


def run(code, iconsts=(), fconsts=(), nregs=(0, 0, 0), out=None, ndim=0,
        **kw):
    """Runs a program given as (op, dst, a, b, c) tuples; returns fill_translated's
    answer."""
    words = []
    for ins in code:
        ins = tuple(ins) + (0,) * (5 - len(ins))
        words += [OPS[ins[0]], *ins[1:]]
    blob = struct.pack(f"<{len(words)}i", *words)
    ik = struct.pack(f"<{len(iconsts)}q", *iconsts)
    fk = struct.pack(f"<{len(fconsts)}d", *fconsts)
    kw.setdefault("workers", 1)
    return _core.fill_translated(blob, ik, fk, ndim, tuple(nregs), out, **kw)


def load(kind, reg, value, iconsts, fconsts):
    """The instruction loading `value` into register `reg` of `kind`."""
    if kind == "I":
        iconsts.append(value)
        return ("I_CONST", reg, len(iconsts) - 1)
    if kind == "F":
        fconsts.append(value)
        return ("F_CONST", reg, len(fconsts) - 1)
    if kind == "C":
        fconsts += [value.real, value.imag]
        return ("C_CONST", reg, len(fconsts) - 2)
    return ("B_CONST", reg, int(value))


def vm(op, kinds, result, args, fn=None):
    """Runs `op` on constant operands; the value, or raises Bail."""
    iconsts, fconsts, code = [], [], []
    count = {"I": 0, "F": 0, "B": 0, "C": 0}
    regs = []
    for kind, value in zip(kinds, args):
        regs.append(count[kind])
        code.append(load(kind, count[kind], value, iconsts, fconsts))
        count[kind] += 1
    dst = count[result]
    count[result] += 1
    operands = regs + ([FNS[fn]] if fn is not None else [])
    code.append((op, dst, *operands))
    code.append(("RET_" + result, 0, dst))
    dtype = {"I": np.int64, "F": np.float64, "B": np.bool_,
             "C": np.complex128}[result]
    out = np.zeros((), dtype)
    k = run(code, iconsts, fconsts,
            (count["I"], count["F"], count["B"], count["C"]), out)
    if k != -1:
        assert k == 0
        raise Bail
    if result == "I":
        return int(out)
    if result == "F":
        return float(out)
    if result == "C":
        return complex(out)
    return bool(out)


def python(ref, args):
    """('value', v) or ('raises', exception type), from errno 0 as every
    element starts (references.clear_errno)."""
    clear_errno()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return "value", ref(*args)
    except (ArithmeticError, ValueError, TypeError) as e:
        return "raises", type(e)


def same(kind, got, want):
    if kind == "C":
        return type(want) is complex and fbits(got.real) == fbits(
            want.real) and fbits(got.imag) == fbits(want.imag)
    if kind == "F":
        return type(want) is float and fbits(got) == fbits(want)
    if kind == "I":
        return type(want) is int and got == want
    return type(want) is bool and got == want


def check(op, kinds, result, ref, pairs, allowed, fn=None):
    """Compares the VM with Python on every operand tuple."""
    name = op if fn is None else f"{op}:{fn}"
    bad = []
    for args in pairs:
        status, want = python(ref, args)
        try:
            got = vm(op, kinds, result, args, fn)
        except Bail:
            if status == "raises":
                continue
            if allowed(args, want):
                BAILS[name] = BAILS.get(name, 0) + 1
                continue
            bad.append((args, "bailed", want))
            continue
        if status == "raises":
            bad.append((args, got, want))
        elif not same(result, got, want):
            bad.append((args, got, want))
    assert not bad, f"{name}: {len(bad)} of {len(pairs)} differ: {[(tuple(map(show, a)), show(g), show(w)) for a, g, w in bad[:8]]}"


def big_int(args, want):
    return type(want) is int and not INT64[0] <= want <= INT64[1]


def never(args, want):
    return False


# ----------------------------------------------------------------- int


def ref_pow(a, b):
    if b > 64 and abs(a) >= 2:
        return 2**64  # certainly outside int64, cheaply
    return a ** b


def ref_lshift(a, b):
    if b > 64 and a != 0:
        return 2**64 if b >= 0 else a << b
    return a << b


INT_BINARY = {
    "I_ADD": lambda a, b: a + b, "I_SUB": lambda a, b: a - b,
    "I_MUL": lambda a, b: a * b, "I_FLOORDIV": lambda a, b: a // b,
    "I_MOD": lambda a, b: a % b, "I_POW": ref_pow,
    "I_AND": lambda a, b: a & b, "I_OR": lambda a, b: a | b,
    "I_XOR": lambda a, b: a ^ b, "I_RSHIFT": lambda a, b: a >> b,
    "I_LSHIFT": ref_lshift,
}


@pytest.mark.parametrize("op", sorted(INT_BINARY))
def test_int_binary(op):
    allowed = big_int
    if op == "I_POW":
        def allowed(args, want):
            return args[1] < 0 or big_int(args, want)
    check(op, "II", "I", INT_BINARY[op], int_pairs(), allowed)


@pytest.mark.parametrize("op,ref", [("I_NEG", lambda a: -a),
                                    ("I_ABS", abs),
                                    ("I_INVERT", lambda a: ~a)])
def test_int_unary(op, ref):
    check(op, "I", "I", ref, [(a,) for a in INTS + rand_ints(500)], big_int)


def exact_double(v):
    return float(v) == v and abs(v) < 2**63


def test_int_truediv():
    def allowed(args, want):
        return not (exact_double(args[0]) and exact_double(args[1]))
    check("I_TRUEDIV", "II", "F", lambda a, b: a / b, int_pairs(), allowed)


# --------------------------------------------------------------- float

FLOAT_BINARY = {
    "F_ADD": lambda a, b: a + b, "F_SUB": lambda a, b: a - b,
    "F_MUL": lambda a, b: a * b, "F_DIV": lambda a, b: a / b,
    "F_FLOORDIV": lambda a, b: a // b, "F_MOD": lambda a, b: a % b,
    "F_POW": lambda a, b: a ** b,
}


@pytest.mark.parametrize("op", sorted(FLOAT_BINARY))
def test_float_binary(op):
    def allowed(args, want):
        if op in ("F_ADD", "F_MUL"):  # which NaN CPython gives varies
            return math.isnan(args[0]) and math.isnan(args[1])
        return op == "F_POW" and type(want) is complex
    pairs = float_pairs()
    if op == "F_POW":  # powers that matter: small integers and halves
        pairs += [(a, float(b) / 2) for a in FLOATS for b in range(-9, 10)]
    check(op, "FF", "F", FLOAT_BINARY[op], pairs, allowed)


@pytest.mark.parametrize("op,ref", [("F_NEG", lambda a: -a),
                                    ("F_ABS", abs)])
def test_float_unary(op, ref):
    check(op, "F", "F", ref, [(a,) for a in FLOATS + rand_floats(500)], never)


# ---------------------------------------------------------- conversions

FLOAT_TO_INT = {"F2I_TRUNC": int, "F_FLOOR_I": math.floor,
                "F_CEIL_I": math.ceil, "F_ROUND_I": round}


@pytest.mark.parametrize("op", sorted(FLOAT_TO_INT))
def test_float_to_int(op):
    values = FLOATS + rand_floats(1000) + [
        k + 0.5 for k in range(-20, 20)] + [
        2.0**62 + 0.0, -2.0**63 + 0.0, 2.0**63, 9.223372036854775e18]
    check(op, "F", "I", FLOAT_TO_INT[op], [(v,) for v in values], big_int)


def test_conversions():
    check("I2F", "I", "F", float, [(a,) for a in INTS + rand_ints(2000)],
          never)
    check("B2I", "B", "I", int, [(False,), (True,)], never)
    check("B2F", "B", "F", float, [(False,), (True,)], never)
    check("I_TRUTH", "I", "B", bool, [(a,) for a in INTS], never)
    check("F_TRUTH", "F", "B", bool, [(a,) for a in FLOATS], never)


# ---------------------------------------------------------- comparisons


@pytest.mark.parametrize("cmp", sorted(CMPS))
def test_comparisons(cmp):
    ref = CMPS[cmp]
    check("I_" + cmp, "II", "B", ref, int_pairs(), never)
    check("F_" + cmp, "FF", "B", ref, float_pairs(), never)
    near = [float(v) for v in INTS] + [float(v) + d for v in INTS
                                       for d in (-0.5, 0.5, -1024.0, 2048.0)]
    mixed = mixed_pairs() + [(a, f) for a in INTS for f in near]
    check("IF_" + cmp, "IF", "B", ref, mixed, never)
    check("FI_" + cmp, "FI", "B", ref, [(f, a) for a, f in mixed], never)


def test_bools_and_selects():
    tf = (False, True)
    check("B_NOT", "B", "B", lambda a: not a, [(a,) for a in tf], never)
    for op, ref in (("B_AND", lambda a, b: a and b),
                    ("B_OR", lambda a, b: a or b),
                    ("B_XOR", lambda a, b: a != b)):
        check(op, "BB", "B", ref, [(a, b) for a in tf for b in tf], never)
    sel = lambda c, a, b: a if c else b  # noqa: E731
    check("I_SELECT", "BII", "I", sel,
          [(c, a, b) for c in tf for a in INTS[:6] for b in INTS[-6:]], never)
    check("F_SELECT", "BFF", "F", sel,
          [(c, a, b) for c in tf for a in FLOATS[:6] for b in FLOATS[-6:]],
          never)
    check("B_SELECT", "BBB", "B", sel,
          [(c, a, b) for c in tf for a in tf for b in tf], never)


def test_float_predicates():
    for op, ref in (("F_ISNAN", math.isnan), ("F_ISINF", math.isinf),
                    ("F_ISFINITE", math.isfinite)):
        check(op, "F", "B", ref, [(a,) for a in FLOATS], never)


# ----------------------------------------------------------------- math

MATH1 = [name for name, _ in sorted(FNS.items(), key=lambda kv: kv[1])
         if name not in ("atan2", "hypot", "copysign", "fmod", "pow")]
MATH2 = ["atan2", "hypot", "copysign", "fmod", "pow"]


@pytest.mark.parametrize("fn", MATH1)
def test_math1(fn):
    values = FLOATS + rand_floats(3000) + [
        v * s for v in (0.5, 0.99, 1.0, 1.01, 20.0, 700.0, 709.78, 711.0,
                        1e-10, 1e6) for s in (1, -1)]
    check("F_CALL1", "F", "F", getattr(math, fn), [(v,) for v in values],
          never, fn=fn)


@pytest.mark.parametrize("fn", MATH1)
def test_math1_over_lane_blocks(fn):
    # x = 800 - 0.37 i (descending) and -800 + 0.37 i (ascending), 4,324
    # lanes: underflows (errno ERANGE, not an error), domain and range
    # errors in the middle of lane blocks, on every instruction set. The
    # fill stops at the first element where Python raises; the values
    # before it are Python's.
    n = 4324
    for sign in (-1.0, 1.0):
        xs = [-sign * 800.0 + sign * (i * 0.37) for i in range(n)]
        want = []
        for x in xs:
            status, value = python(getattr(math, fn), (x,))
            if status == "raises":
                break
            want.append(value)
        code = [("I2F", 0, 0), ("F_CONST", 1, 0), ("F_MUL", 2, 0, 1),
                ("F_CONST", 3, 1), ("F_ADD", 4, 3, 2),
                ("F_CALL1", 5, 4, FNS[fn]), ("RET_F", 0, 5)]
        for isa in (0, 1, 2):
            out = np.zeros(n)
            k = run(code, [], [sign * 0.37, -sign * 800.0], (1, 6, 0, 0), out,
                    ndim=1, _isa=isa, workers=2)
            assert k == (len(want) if len(want) < n else -1), (fn, sign, isa)
            got = out[:len(want)]
            assert got.tobytes() == np.array(want).tobytes(), (fn, sign, isa)


@pytest.mark.parametrize("fn", MATH2)
def test_math2(fn):
    pairs = float_pairs() + [(a, b) for a, b in zip(rand_floats(3000),
                                                    rand_floats(3000))]
    if fn == "hypot":
        pairs += [(rng.uniform(0, 1e-300) * 1e-10, rng.uniform(0, 1e-310))
                  for _ in range(500)]

    def allowed(args, want):
        return fn == "hypot"

    check("F_CALL2", "FF", "F", getattr(math, fn), pairs, allowed, fn=fn)
    if fn == "hypot":  # the variants almost always agree
        assert BAILS.get("F_CALL2:hypot", 0) <= len(pairs) // 100


# -------------------------------------------------------------- complex

C_PARTS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.5, 3.0, 0.1, 1e-300, 5e-324,
           1e308, -1e308, 1e154, 1.5e154, float("inf"), float("-inf"),
           float("nan")]
COMPLEXES = [complex(a, b) for a in C_PARTS for b in C_PARTS] + [
    complex(x, y) for x, y in zip(rand_floats(200), rand_floats(200))]


def complex_pairs(n=9000):
    pairs = [(a, b) for a in COMPLEXES[:60] for b in COMPLEXES[:60]]
    pairs += [(rng.choice(COMPLEXES), rng.choice(COMPLEXES))
              for _ in range(n - len(pairs))]
    return pairs


def has_nan(z):
    return math.isnan(z.real) or math.isnan(z.imag)


def nan_result(args, want):
    """The contract's complex bail: a NaN part (which NaN an IEEE op on two
    NaNs returns depends on the compiler)."""
    return type(want) is complex and has_nan(want)


def nan_abs(args, want):
    """abs() of a complex with a NaN part and no infinite one bails: CPython
    < 3.15 raises OverflowError there when errno was left at ERANGE
    (gh-155526), a state only Python's redo has."""
    z = args[0]
    return has_nan(z) and not (math.isinf(z.real) or math.isinf(z.imag))


COMPLEX_BINARY = {
    "C_ADD": lambda a, b: a + b, "C_SUB": lambda a, b: a - b,
    "C_MUL": lambda a, b: a * b, "C_DIV": lambda a, b: a / b,
}


@pytest.mark.parametrize("op", sorted(COMPLEX_BINARY))
def test_complex_binary(op):
    allowed = never if op == "C_SUB" else nan_result
    check(op, "CC", "C", COMPLEX_BINARY[op], complex_pairs(), allowed)


def test_complex_pow():
    # Integral exponents up to 100 (c_powi) and past it, halves, complex.
    exps = [complex(float(n), 0.0) for n in (-101, -100, -3, -2, -1, 0, 1, 2,
                                             3, 7, 100, 101)]
    exps += [0.5 + 0j, -0.5 + 0j, 2.5 + 0j, 1j, 1 + 1j, -0.0 + 0j,
             complex(2.0, -0.0)]
    bases = COMPLEXES[:80] + [rng.choice(COMPLEXES) for _ in range(200)]
    check("C_POW", "CC", "C", lambda a, b: a ** b,
          [(a, b) for a in bases for b in exps], nan_result)


def test_complex_unary_and_parts():
    values = [(z,) for z in COMPLEXES]
    check("C_NEG", "C", "C", lambda a: -a, values, never)
    check("C_CONJ", "C", "C", lambda a: a.conjugate(), values, never)
    check("C_MOV", "C", "C", lambda a: a, values, never)
    check("C_REAL", "C", "F", lambda a: a.real, values, never)
    check("C_IMAG", "C", "F", lambda a: a.imag, values, never)
    check("C_ABS", "C", "F", abs, values, nan_abs)
    assert BAILS["C_ABS"] == sum(nan_abs((z,), None) for z in COMPLEXES)
    check("C_TRUTH", "C", "B", bool, values, never)
    check("I2C", "I", "C", complex, [(a,) for a in INTS], never)
    check("F2C", "F", "C", complex, [(a,) for a in FLOATS], never)
    check("B2C", "B", "C", complex, [(False,), (True,)], never)
    check("C_MAKE", "FF", "C", complex, float_pairs()[::3], never)
    pairs = complex_pairs(3000)
    check("C_EQ", "CC", "B", lambda a, b: a == b, pairs, never)
    check("C_NE", "CC", "B", lambda a, b: a != b, pairs, never)


@pytest.mark.parametrize("cmp", ["LT", "LE", "GT", "GE"])
def test_complex_abs_compare_fused_near_the_circle(cmp):
    """C_ABS then F_<cmp> (fused by the VM into C_ABS_<cmp>_F when the abs
    has no other reader) against Python on points within a few ulps of the
    circle, just outside the fast path's margin, far from it, and edge
    values; the direct fused op as well."""
    ref = CMPS[cmp]
    pts = []
    for _ in range(3000):
        t = rng.uniform(0, 2 * math.pi)
        r = rng.choice([2.0, 1e-3, 1e100, 3.5, 1e-140])
        x, y = r * math.cos(t), r * math.sin(t)
        x = rng.choice([x, math.nextafter(x, math.inf),
                        math.nextafter(x, -math.inf), x * (1 + 2**-19),
                        x * (1 - 2**-19), x * 1.5])
        pts.append((complex(x, y), r))
    pts += [(z, b) for z in COMPLEXES[::7] for b in (2.0, 0.0, -1.0,
                                                     float("nan"), 1e300)]
    bad = []
    for z, b in pts:
        iconsts, fconsts = [], []
        code = [load("C", 0, z, iconsts, fconsts),
                load("F", 1, b, iconsts, fconsts),
                ("C_ABS", 0, 0), ("F_" + cmp, 0, 0, 1), ("RET_B", 0, 0)]
        out = np.zeros((), np.bool_)
        direct = np.zeros((), np.bool_)
        code2 = code[:2] + [("C_ABS_" + cmp + "_F", 0, 0, 1), ("RET_B", 0, 0)]
        if nan_abs((z,), None):  # both bail, as C_ABS alone does
            assert run(code, iconsts, fconsts, (0, 2, 1, 1), out) == 0
            assert run(code2, iconsts, fconsts, (0, 2, 1, 1), direct) == 0
            continue
        assert run(code, iconsts, fconsts, (0, 2, 1, 1), out) == -1
        assert run(code2, iconsts, fconsts, (0, 2, 1, 1), direct) == -1
        want = ref(abs(z), b)
        if bool(out) != want or bool(direct) != want:
            bad.append((z, b, bool(out), bool(direct), want))
    assert not bad, bad[:8]


def test_complex_abs_overflow_bails():
    z = complex(1.5e308, 1.5e308)
    with pytest.raises(OverflowError):
        abs(z)
    with pytest.raises(Bail):
        vm("C_ABS", "C", "F", (z,))
    for cmp in ("LT", "GT"):  # fused: the same bail
        iconsts, fconsts = [], []
        code = [load("C", 0, z, iconsts, fconsts),
                load("F", 1, 2.0, iconsts, fconsts),
                ("C_ABS", 0, 0), ("F_" + cmp, 0, 0, 1), ("RET_B", 0, 0)]
        assert run(code, iconsts, fconsts, (1, 2, 1, 1),
                   np.zeros(1, np.bool_), ndim=1) == 0


# --------------------------------------------------------------- stores

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "float16", "float32", "float64", "longdouble",
          "complex64", "complex128", "clongdouble"]
STORE_INTS = sorted(set(INTS) | {127, 128, -128, -129, 255, 256, 32767,
                                 32768, -32768, -32769, 65535, 65536,
                                 2**32 - 1, 65504, 65519, 65520, 2047, 2049})
STORE_EDGES = [127.9, 128.0, -128.9, -129.0, 255.5, 256.0, -0.9, 65519.99,
               65520.0, 2.0**64 - 2048.0, 2.0**32 - 0.5, 6e-8, 3e-8,
               2.9802322387695312e-08, 1e-45, 7e-46, 1.401298464324817e-45,
               3.4028235e38, 3.4028235677973366e38, 3.402823669209385e38]
STORE_FLOATS = FLOATS + STORE_EDGES
# float16 ties and their neighbours (round half to even from the double).
_halves = np.arange(0, 0x7c00, 97, dtype=np.uint16).view(np.float16)
_mids = (_halves[:-1].astype(float) + _halves[1:].astype(float)) / 2
STORE_FLOATS += [float(m) for m in _mids[::3]]
STORE_FLOATS += [float(np.nextafter(m, 0)) for m in _mids[1::5]]
STORE_FLOATS += [-float(np.nextafter(m, np.inf)) for m in _mids[2::5]]
STORE_FLOATS += rand_floats(300) + [rng.uniform(-70000, 70000)
                                    for _ in range(300)]


def stored_bytes(a):
    """The value's bytes (x87 long doubles: 10 of each 16)."""
    raw = a.view(np.uint8).reshape(-1)
    if a.dtype.kind in "fc" and a.dtype.itemsize // (2 if a.dtype.kind == "c"
                                                      else 1) == 16:
        return bytes(raw[0:10]) + bytes(raw[16:26]) if a.dtype.kind == "c" \
            else bytes(raw[0:10])
    return bytes(raw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_store(dtype):
    bad = []
    cases = [("I", v) for v in STORE_INTS] + [("F", v) for v in STORE_FLOATS]
    cases += [("B", False), ("B", True)]
    cases += [("C", z) for z in COMPLEXES[::3]] + [
        ("C", complex(v, w)) for v in STORE_FLOATS[::17]
        for w in (0.0, -0.0, 3.5e38, 1e39)]
    for kind, value in cases:
        want = np.zeros(1, dtype)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                want[0] = value
            expect = stored_bytes(want)
        except (ValueError, OverflowError, RuntimeWarning, TypeError):
            expect = None
        iconsts, fconsts = [], []
        code = [load(kind, 0, value, iconsts, fconsts), ("RET_" + kind, 0, 0)]
        nregs = {"I": (1, 0, 0), "F": (1, 1, 0), "B": (1, 0, 1),
                 "C": (1, 0, 0, 1)}[kind]
        got = np.zeros(1, dtype)
        k = run(code, iconsts, fconsts, nregs, got, ndim=1)
        if k == 0:
            if expect is not None:
                bad.append((kind, value, "bailed", want[0]))
        elif expect is None:
            bad.append((kind, value, got[0], "NumPy raises or warns"))
        elif stored_bytes(got) != expect:
            bad.append((kind, value, got[0], want[0]))
    assert not bad, f"{dtype}: {len(bad)} differ: {bad[:8]}"


# ------------------------------------------------------ whole programs


def test_lowest_bail_across_workers_and_schedules():
    # f(i, j) = float((i * j) // (j - 3)) if i < 5 else i / j: bails (Python
    # raises ZeroDivisionError) at j == 3 for i < 5 and at j == 0 for i >= 5.
    code = [
        ("I_CONST", 2, 0),          # 0: I2 = 5
        ("I_LT", 0, 0, 2),          # 1: B0 = i < 5
        ("BR", 0, 0, 3, 8),         # 2
        ("I_MUL", 3, 0, 1),         # 3: I3 = i * j
        ("I_CONST", 4, 1),          # 4: I4 = 3
        ("I_SUB", 4, 1, 4),         # 5: I4 = j - 3
        ("I_FLOORDIV", 3, 3, 4),    # 6
        ("JMP", 0, 10),             # 7
        ("I_TRUEDIV", 0, 0, 1),     # 8: F0 = i / j
        ("RET_F", 0, 0),            # 9
        ("I2F", 1, 3),              # 10
        ("RET_F", 0, 1),            # 11
    ]

    def f(i, j):
        return float((i * j) // (j - 3)) if i < 5 else i / j

    shape = (40, 37)
    for workers in (1, 2, 3):
        for schedule in ("static", "dynamic", "guided"):
            for first in (0, 3, 7 * 37 + 5):
                out = np.full(shape, -7.0)
                k = run(code, [5, 3], [], (5, 2, 1), out, ndim=2,
                        workers=workers, schedule=schedule, chunk=16,
                        first=first)
                # The sequential loop from `first`: the first raising element.
                want = -1
                for flat in range(first, out.size):
                    i, j = divmod(flat, shape[1])
                    try:
                        v = f(i, j)
                    except ZeroDivisionError:
                        want = flat
                        break
                    assert out.flat[flat] == v, (workers, schedule, flat)
                assert k == want, (workers, schedule, first, k, want)
                assert (out.flat[:first] == -7.0).all()


def test_dense_results_independent_of_workers():
    # f(i) = sin(i * 0.001) * 3.0 + sqrt(float(i)), int64 i, n = 100003
    code = [("I2F", 0, 0), ("F_CONST", 1, 0), ("F_MUL", 2, 0, 1),
            ("F_CALL1", 2, 2, FNS["sin"]), ("F_CONST", 1, 1),
            ("F_MUL", 2, 2, 1), ("F_CALL1", 3, 0, FNS["sqrt"]),
            ("F_ADD", 2, 2, 3), ("RET_F", 0, 2)]
    want = np.array([math.sin(i * 0.001) * 3.0 + math.sqrt(float(i))
                     for i in range(100003)])
    for workers in (1, 2, 3):
        for schedule in ("static", "dynamic", "guided"):
            out = np.empty(100003)
            assert run(code, [], [0.001, 3.0], (1, 4, 0), out, ndim=1,
                       workers=workers, schedule=schedule) == -1
            assert out.tobytes() == want.tobytes()


def test_strided_output_and_store_bail():
    # f(i) = i * 10 into uint8 (a strided view): bails at i = 26.
    code = [("I_CONST", 1, 0), ("I_MUL", 1, 0, 1), ("RET_I", 0, 1)]
    base = np.zeros(200, np.uint8)
    out = base[::2]
    assert run(code, [10], [], (2, 0, 0), out, ndim=1, workers=2) == 26
    assert (out[:26] == np.arange(26) * 10).all()


def test_malformed_programs_are_value_errors():
    out = np.zeros(3)
    with pytest.raises(ValueError, match="unknown opcode"):
        _core.fill_translated(struct.pack("<5i", 9999, 0, 0, 0, 0), b"", b"",
                              1, (1, 0, 0), out)
    with pytest.raises(ValueError, match="outside"):
        run([("JMP", 0, 1)], out=out, ndim=1, nregs=(1, 0, 0))
    # A backward jump is a loop (legal); this one never ends: the timeout
    # stops it.
    import parfill
    with pytest.raises(parfill.TimeoutError):
        run([("JMP", 0, 0)], out=out, ndim=1, nregs=(1, 0, 0), timeout=0.2)
    with pytest.raises(ValueError, match="off the end"):
        run([("I_MOV", 0, 0)], out=out, ndim=1, nregs=(1, 0, 0))
    with pytest.raises(ValueError, match="out of range"):
        run([("RET_F", 0, 3)], out=out, ndim=1, nregs=(1, 1, 0))
    with pytest.raises(ValueError, match="dimensions"):
        run([("BAIL",)], out=out, ndim=2, nregs=(2, 0, 0))
    with pytest.raises(TypeError, match="nregs"):
        _core.fill_translated(struct.pack("<5i", OPS["BAIL"], 0, 0, 0, 0),
                              b"", b"", 1, [1, 0, 0], out)
    with pytest.raises(ValueError, match="unused operand"):
        run([("BAIL", 1)], out=out, ndim=1, nregs=(1, 0, 0))
    with pytest.raises(ValueError, match="5 int32 words"):
        _core.fill_translated(b"\0" * 19, b"", b"", 1, (1, 0, 0), out)
    with pytest.raises(ValueError, match="first"):
        run([("BAIL",)], out=out, ndim=1, nregs=(1, 0, 0), first=4)


def test_tables():
    assert OPS["I_CONST"] == 0 and len(set(OPS.values())) == len(OPS)
    assert sorted(FNS.values()) == list(range(len(FNS)))
    assert set(MATH2) <= set(FNS)


def test_report_allowed_bails():
    print("\nallowed bails where Python gave a value:",
          dict(sorted(BAILS.items())))


# ------------------------------------- instruction sets, hoisting, streaming

ISAS = (0, 1, 2)  # baseline, AVX2, AVX-512 (capped to what the CPU has)


def operands(n):
    """Python's a(i), b(i) of OPERAND_CODE: sin/cos values with NaN, zero and
    negative zero at fixed residues."""
    a, b = [], []
    for i in range(n):
        x = math.sin(i * 0.7) * 100.0
        a.append(math.nan if i % 11 == 3 else x)
        y = math.cos(i * 0.3) * 10.0
        b.append(math.nan if i % 17 == 9 else 0.0 if i % 13 == 5
                 else -0.0 if i % 19 == 2 else y)
    return a, b


# F2 = a(i), F3 = b(i); registers I0..I3, F0..F5, B0..B2.
OPERAND_CONSTS_I = [11, 3, 17, 9, 13, 5, 19, 2]
OPERAND_CONSTS_F = [0.7, 100.0, math.nan, 0.3, 10.0, 0.0, -0.0]
OPERAND_CODE = [
    ("I2F", 0, 0), ("F_CONST", 1, 0), ("F_MUL", 1, 0, 1),
    ("F_CALL1", 1, 1, FNS["sin"]), ("F_CONST", 2, 1), ("F_MUL", 2, 1, 2),
    ("I_CONST", 1, 0), ("I_MOD", 2, 0, 1), ("I_CONST", 1, 1),
    ("I_EQ", 0, 2, 1), ("F_CONST", 4, 2), ("F_SELECT", 2, 0, 4, 2),
    ("F_CONST", 1, 3), ("F_MUL", 1, 0, 1), ("F_CALL1", 1, 1, FNS["cos"]),
    ("F_CONST", 3, 4), ("F_MUL", 3, 1, 3),
    ("I_CONST", 1, 6), ("I_MOD", 2, 0, 1), ("I_CONST", 1, 7),
    ("I_EQ", 0, 2, 1), ("F_CONST", 5, 6), ("F_SELECT", 3, 0, 5, 3),
    ("I_CONST", 1, 4), ("I_MOD", 2, 0, 1), ("I_CONST", 1, 5),
    ("I_EQ", 0, 2, 1), ("F_CONST", 5, 5), ("F_SELECT", 3, 0, 5, 3),
    ("I_CONST", 1, 2), ("I_MOD", 2, 0, 1), ("I_CONST", 1, 3),
    ("I_EQ", 0, 2, 1), ("F_SELECT", 3, 0, 4, 3),
]

# op -> (instructions after the operands, Python's value, bails when)
FLOAT_CASES = {
    "F_ADD": ([("F_ADD", 0, 2, 3)], lambda a, b: a + b,
              lambda a, b: a != a and b != b),
    "F_SUB": ([("F_SUB", 0, 2, 3)], lambda a, b: a - b, lambda a, b: False),
    "F_MUL": ([("F_MUL", 0, 2, 3)], lambda a, b: a * b,
              lambda a, b: a != a and b != b),
    "F_DIV": ([("F_DIV", 0, 2, 3)], lambda a, b: a / b if b else 0.0,
              lambda a, b: b == 0.0),
    "sqrt": ([("F_CALL1", 0, 2, FNS["sqrt"])],
             lambda a, b: math.sqrt(a) if a >= 0 or a != a else 0.0,
             lambda a, b: a < 0),
    "sqrt_abs": ([("F_ABS", 0, 2), ("F_CALL1", 0, 0, FNS["sqrt"])],
                 lambda a, b: math.sqrt(abs(a)), lambda a, b: False),
    "F_MOD": ([("F_MOD", 0, 2, 3)], lambda a, b: a % b if b else 0.0,
              lambda a, b: b == 0.0),
    "F_LT": ([("F_LT", 2, 2, 3), ("B2F", 0, 2)],
             lambda a, b: float(a < b), lambda a, b: False),
}


def vm_fill(code, n, dtype=np.float64, isa=-1, **kw):
    out = np.full(n, 7, dtype)
    k = run(OPERAND_CODE + code, OPERAND_CONSTS_I, OPERAND_CONSTS_F,
            (4, 6, 3), out, ndim=1, _isa=isa, **kw)
    return k, out


@pytest.mark.parametrize("name", sorted(FLOAT_CASES))
def test_every_isa_matches_python(name):
    # Each ISA's vector loops (dense lanes, the checked guards' first bad
    # lane, results written straight into float64 / float32 outputs) against
    # Python, element by element, with bails at the first element Python
    # cannot be matched at.
    body, value, bails = FLOAT_CASES[name]
    n = 5003
    a, b = operands(n)
    want_k = next((i for i in range(n) if bails(a[i], b[i])), -1)
    stop = n if want_k < 0 else want_k
    want = np.array([value(a[i], b[i]) for i in range(stop)])
    for dtype in (np.float64, np.float32):
        results = []
        for isa in ISAS:
            for workers in (1, 2):
                k, out = vm_fill(body + [("RET_F", 0, 0)], n, dtype, isa,
                                 workers=workers, chunk=1000)
                if dtype == np.float32 and k >= 0 and k < stop:
                    # float32 overflow is a bail too: below it, exact.
                    stop32 = k
                else:
                    stop32 = stop
                    assert k == want_k, (name, isa, workers, k, want_k)
                got = out[:stop32].astype(np.float64) if dtype == np.float32 \
                    else out[:stop32]
                ref = want[:stop32].astype(dtype).astype(np.float64)
                assert got.tobytes() == ref.tobytes(), (name, dtype, isa)
                results.append((k, out[:stop32].tobytes()))
        assert len(set(results)) == 1, (name, dtype)


@pytest.mark.parametrize("isa", ISAS)
def test_int_checked_ops_every_isa(isa):
    # I_ADD / I_SUB / I_NEG / I_ABS overflow found by the vector test: the
    # first overflowing element is the bail, everything below exact.
    big = 2**63 - 1
    cases = [
        ([("I_CONST", 1, 0), ("I_ADD", 1, 0, 1)], [big - 3000],
         lambda i: (big - 3000) + i, 3001),
        ([("I_CONST", 1, 0), ("I_SUB", 1, 1, 0)], [-big + 2000],
         lambda i: (-big + 2000) - i, 2002),
        ([("I_CONST", 1, 0), ("I_SUB", 1, 1, 0), ("I_NEG", 1, 1)],
         [-big + 2000], lambda i: -((-big + 2000) - i), 2001),
        ([("I_CONST", 1, 0), ("I_SUB", 1, 1, 0), ("I_ABS", 1, 1)],
         [-big + 2000], lambda i: abs((-big + 2000) - i), 2001),
    ]
    for body, consts, f, want_k in cases:
        for dtype in (np.int64, np.float64):
            out = np.zeros(5000, dtype)
            k = run(body + [("RET_I", 0, 1)], consts, [], (2, 0, 0), out,
                    ndim=1, _isa=isa, workers=2, chunk=700)
            assert k == want_k, (body, dtype, k)
            want = np.array([f(i) for i in range(want_k)], dtype)
            assert out[:want_k].tobytes() == want.tobytes(), (body, dtype)


@pytest.mark.parametrize("isa", ISAS)
def test_int_division_by_powers_of_two(isa):
    # (i - 5000) // d and % d over 10,007 lanes: with every divisor a
    # positive power of two the op shifts and masks (floor semantics for
    # negative dividends); with a divisor of 3, 0 or -4 in one element the
    # whole op takes the general path (a zero divisor bails there).
    n = 10007
    for op, ref in (("I_FLOORDIV", lambda a, b: a // b),
                    ("I_MOD", lambda a, b: a % b)):
        for d, other_at, other in ((1, -1, 0), (2, -1, 0), (8, -1, 0),
                                   (2**62, -1, 0), (4, 777, 3), (4, 777, -4),
                                   (16, 9000, 0)):
            # I1 = i - 5000 (test_int_binary has the int64 extremes);
            # I2 = d, or `other` at element other_at.
            code = [("I_CONST", 1, 0), ("I_SUB", 1, 0, 1),
                    ("I_CONST", 2, 1), ("I_CONST", 3, 3), ("I_EQ", 0, 0, 3),
                    ("I_CONST", 3, 2), ("I_SELECT", 2, 0, 3, 2),
                    (op, 1, 1, 2), ("RET_I", 0, 1)]
            out = np.zeros(n, np.int64)
            k = run(code, [5000, d, other, other_at], [], (4, 0, 1), out,
                    ndim=1, _isa=isa, workers=2, chunk=1500)
            divisor = [other if i == other_at else d for i in range(n)]
            want_k = other_at if other_at >= 0 and other == 0 else -1
            assert k == want_k, (op, d, other, k)
            stop = n if want_k < 0 else want_k
            want = [ref(i - 5000, divisor[i]) for i in range(stop)]
            assert out[:stop].tolist() == want, (op, d, other_at, other, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_int_multiplication_over_lane_blocks(isa):
    # (i - 100) * K * (i - 100) over 6,000 lanes: operands within int32
    # multiply as vectors, a lane block with one wider operand takes the
    # checked multiply per lane; the fill stops at the first product that
    # leaves int64 (K = 2**40: at i = 2997, where (i - 100)**2 reaches
    # 2**23), and the products before it are Python's.
    n = 6000
    for K in (3, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**40, -2**40,
              2**62):
        code = [("I_CONST", 1, 0), ("I_SUB", 1, 0, 1), ("I_CONST", 2, 1),
                ("I_MUL", 3, 1, 2), ("I_MUL", 3, 3, 1), ("RET_I", 0, 3)]
        out = np.zeros(n, np.int64)
        k = run(code, [100, K], [], (4, 0, 0), out, ndim=1, _isa=isa,
                workers=2, chunk=1500)
        want = []
        for i in range(n):
            v = (i - 100) * K
            if not INT64[0] <= v <= INT64[1]:
                break
            v *= i - 100
            if not INT64[0] <= v <= INT64[1]:
                break
            want.append(v)
        assert k == (len(want) if len(want) < n else -1), (K, isa, k)
        assert out[:len(want)].tolist() == want, (K, isa)


def test_row_invariant_hoisting():
    # f(i, j) = sin(i * 0.5) / (i - 3) * cos(j * 0.25) + sqrt(i + j): the
    # first two factors depend on i only (computed once per row of lanes);
    # the division bails at the first element of row 3 -- or at `first`
    # when the fill starts inside that row.
    code = [
        ("I2F", 0, 0), ("F_CONST", 1, 0), ("F_MUL", 0, 0, 1),
        ("F_CALL1", 0, 0, FNS["sin"]), ("I_CONST", 2, 0), ("I_SUB", 2, 0, 2),
        ("I2F", 1, 2), ("F_DIV", 0, 0, 1),
        ("I2F", 2, 1), ("F_CONST", 3, 1), ("F_MUL", 2, 2, 3),
        ("F_CALL1", 2, 2, FNS["cos"]), ("F_MUL", 0, 0, 2),
        ("I_ADD", 3, 0, 1), ("I2F", 3, 3), ("F_CALL1", 3, 3, FNS["sqrt"]),
        ("F_ADD", 0, 0, 3), ("RET_F", 0, 0),
    ]

    def f(i, j):
        return math.sin(i * 0.5) / (i - 3) * math.cos(j * 0.25) + \
            math.sqrt(i + j)

    shape = (9, 700)
    for isa in ISAS:
        for first in (0, 3 * 700 + 5, 4 * 700 + 1):
            for workers in (1, 2):
                out = np.zeros(shape)
                k = run(code, [3], [0.5, 0.25], (4, 4, 0), out, ndim=2,
                        _isa=isa, workers=workers, chunk=300, first=first)
                want_k = max(first, 3 * 700) if first < 4 * 700 else -1
                assert k == want_k, (isa, first, workers, k)
                stop = out.size if k < 0 else k
                for flat in range(first, stop):
                    i, j = divmod(flat, shape[1])
                    assert out.flat[flat] == f(i, j), (isa, flat)


def test_streamed_output():
    # 4.5 M float64 (36 MB: past the streaming threshold), contiguous and
    # not: every element as Python's float(i) * 0.5 + 1, a bail near the end.
    n = 4_500_000
    code = [("I2F", 0, 0), ("F_CONST", 1, 0), ("F_MUL", 0, 0, 1),
            ("F_CONST", 1, 1), ("F_ADD", 0, 0, 1), ("I_CONST", 1, 0),
            ("I_EQ", 0, 0, 1), ("BR", 0, 0, 8, 9), ("BAIL",),
            ("RET_F", 0, 0)]
    want = np.arange(n, dtype=np.float64) * 0.5 + 1.0
    for isa in (0, 2):
        out = np.zeros(n)
        k = run(code, [n - 17], [0.5, 1.0], (2, 2, 1), out, ndim=1,
                _isa=isa, workers=2)
        assert k == n - 17
        assert out[:k].tobytes() == want[:k].tobytes()


# ------------------------------------------- every op on lanes, every ISA
#
# The checks above run each op on one lane (0-d fills) of the best ISA the
# CPU has. Here every op of the table runs over hundreds of lanes under each
# ISA, on a dense range of lanes and on a lane list (every third lane is
# branched away first), with its result written straight into the output
# and through a register (an unaligned output); each lane's operands come
# from tables, and each lane is compared with Python on its own operands.
# After a bail the fill is run again from the next element, so every lane is
# checked, not only those below the first bail.

LANE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -2.5, 3.0, 0.1, 2.0,
               10.0, 1e-300, 5e-324, -5e-324, 2.2250738585072014e-308, 1e308,
               -1e308, 1.7976931348623157e308, 2.0**53, 2.0**63, -2.0**63,
               2.0**64, 0.7, math.pi, -math.e, 710.0, -745.5, math.inf,
               -math.inf, math.nan, -math.nan, 4503599627370495.5,
               0.49999999999999994, 65504.0, 3.5e38]
UNARY_FLOATS = EDGE_FLOATS + [v * s for v in (0.5, 0.99, 1.01, 20.0, 700.0,
                                              709.78, 711.0, 1e-10, 1e6)
                              for s in (1, -1)] + [
    k + 0.5 for k in range(-4, 4)] + [2.0**62, 9.223372036854775e18]
SHIFTS = [-3, -1, 0, 1, 2, 3, 5, 31, 62, 63, 64, 65, 100]
NEAR_INTS = [float(v) + d for v in (0, 1, -1, 2**53, -2**53, 2**62, 2**63 - 1,
                                    -2**63) for d in (-0.5, 0.0, 0.5, 1024.0)]
NEAR_INTS += [math.nan, math.inf, -math.inf, 2.0**63, -2.0**63, 2.0**64,
              -2.0**64, 1e300]
BOOL_LANES = [False, True, True, False, True, False, False, True, True]
SENTINEL = {"I": -7, "F": -7.25, "B": True}


def _lane_allowed(op, fn):
    """Where the contract lets the VM bail although Python gives a value
    (the same allowances as the one-lane checks above)."""
    if op == "I_POW":
        return lambda args, want: args[1] < 0 or big_int(args, want)
    if op == "I_TRUEDIV":
        return lambda args, want: not (exact_double(args[0]) and
                                       exact_double(args[1]))
    if op in ("F_ADD", "F_MUL"):
        return lambda args, want: math.isnan(args[0]) and math.isnan(args[1])
    if op == "F_POW":
        return lambda args, want: type(want) is complex
    if fn == "hypot":
        return lambda args, want: True
    return big_int


def _lane_cases():
    """name -> (op, operand kinds, result kind, Python, tables, fn)."""
    ii = (EDGE_INTS, EDGE_INTS)
    ff = (LANE_FLOATS, LANE_FLOATS)
    cases = {}
    for op, ref in INT_BINARY.items():
        tables = (EDGE_INTS, SHIFTS) if op in ("I_POW", "I_LSHIFT",
                                               "I_RSHIFT") else ii
        cases[op] = (op, "II", "I", ref, tables, None)
    cases["I_TRUEDIV"] = ("I_TRUEDIV", "II", "F", lambda a, b: a / b, ii,
                          None)
    for op, ref in (("I_NEG", lambda a: -a), ("I_ABS", abs),
                    ("I_INVERT", lambda a: ~a), ("I_MOV", lambda a: a)):
        cases[op] = (op, "I", "I", ref, (EDGE_INTS,), None)
    for op, ref in FLOAT_BINARY.items():
        tables = ff if op != "F_POW" else (
            LANE_FLOATS, LANE_FLOATS + [k / 2 for k in range(-7, 8)])
        cases[op] = (op, "FF", "F", ref, tables, None)
    for op, ref in (("F_NEG", lambda a: -a), ("F_ABS", abs),
                    ("F_MOV", lambda a: a)):
        cases[op] = (op, "F", "F", ref, (UNARY_FLOATS,), None)
    for op, ref in FLOAT_TO_INT.items():
        cases[op] = (op, "F", "I", ref, (UNARY_FLOATS,), None)
    cases["I2F"] = ("I2F", "I", "F", float, (EDGE_INTS,), None)
    cases["I_TRUTH"] = ("I_TRUTH", "I", "B", bool, (EDGE_INTS,), None)
    cases["F_TRUTH"] = ("F_TRUTH", "F", "B", bool, (UNARY_FLOATS,), None)
    for op, ref in (("F_ISNAN", math.isnan), ("F_ISINF", math.isinf),
                    ("F_ISFINITE", math.isfinite)):
        cases[op] = (op, "F", "B", ref, (UNARY_FLOATS,), None)
    for op, ref in (("B2I", int), ("B2F", float), ("B_NOT", lambda a: not a),
                    ("B_MOV", lambda a: a)):
        cases[op] = (op, "B", op[-1] if op[1] == "2" else "B", ref,
                     (BOOL_LANES,), None)
    for op, ref in (("B_AND", lambda a, b: a and b),
                    ("B_OR", lambda a, b: a or b),
                    ("B_XOR", lambda a, b: a != b)):
        cases[op] = (op, "BB", "B", ref, (BOOL_LANES, BOOL_LANES), None)
    sel = lambda c, a, b: a if c else b  # noqa: E731
    cases["I_SELECT"] = ("I_SELECT", "BII", "I", sel,
                         (BOOL_LANES, EDGE_INTS[:7], EDGE_INTS[-7:]), None)
    cases["F_SELECT"] = ("F_SELECT", "BFF", "F", sel,
                         (BOOL_LANES, LANE_FLOATS[:9], LANE_FLOATS[-9:]), None)
    cases["B_SELECT"] = ("B_SELECT", "BBB", "B", sel, (BOOL_LANES,) * 3,
                         None)
    for cmp, ref in CMPS.items():
        cases["I_" + cmp] = ("I_" + cmp, "II", "B", ref, ii, None)
        cases["F_" + cmp] = ("F_" + cmp, "FF", "B", ref, ff, None)
        cases["IF_" + cmp] = ("IF_" + cmp, "IF", "B", ref,
                              (EDGE_INTS, NEAR_INTS), None)
        cases["FI_" + cmp] = ("FI_" + cmp, "FI", "B", ref,
                              (NEAR_INTS, EDGE_INTS), None)
    for fn in MATH1:
        cases["F_CALL1:" + fn] = ("F_CALL1", "F", "F", getattr(math, fn),
                                  (UNARY_FLOATS,), fn)
    for fn in MATH2:
        cases["F_CALL2:" + fn] = ("F_CALL2", "FF", "F", getattr(math, fn),
                                  ff, fn)
    return cases


LANE_CASES = _lane_cases()


class LaneProgram:
    """A program whose lane i runs one instruction (or only its RET) on
    operands picked from tables by i: operand j is tables[j][(i // s_j) %
    len_j], s_j the product of the earlier tables' lengths, so the lanes
    cover every combination. Registers: I0 the index, I1 a table index, I2
    a constant; F0, B0 (a comparison), B1 (the branch), B2 scratch."""

    def __init__(self, kinds, tables, sparse):
        self.iconsts, self.fconsts, self.code = [], [], []
        self.count = {"I": 3, "F": 1, "B": 3}
        self.n = math.prod(len(t) for t in tables)
        self.branch = None
        if sparse:  # lanes with i % 3 == 0 go to the block at the end
            self.code += [self.konst("I", 2, 3), ("I_MOD", 1, 0, 2),
                          self.konst("I", 2, 0), ("I_EQ", 1, 1, 2)]
            self.branch = len(self.code)
            self.code.append(None)      # BR, once its target is known
            # A branch and a jump on that lane list (i % 7 == 3 through a
            # JMP), the lanes joining again after it.
            self.code += [self.konst("I", 2, 7), ("I_MOD", 1, 0, 2),
                          self.konst("I", 2, 3), ("I_EQ", 1, 1, 2)]
            pc = len(self.code)
            self.code += [("BR", 0, 1, pc + 1, pc + 2), ("JMP", 0, pc + 2)]
        self.regs = []
        stride = 1
        for kind, table in zip(kinds, tables):
            self.regs.append(self.pick(kind, table, stride))
            stride *= len(table)

    def reg(self, kind):
        self.count[kind] += 1
        return self.count[kind] - 1

    def konst(self, kind, reg, value):
        return load(kind, reg, value, self.iconsts, self.fconsts)

    def pick(self, kind, table, stride):
        r = self.reg(kind)
        tmp = {"I": 2, "F": 0, "B": 2}[kind]
        code = self.code
        if stride == 1:
            code.append(("I_MOV", 1, 0))
        else:
            code += [self.konst("I", 2, stride), ("I_FLOORDIV", 1, 0, 2)]
        code += [self.konst("I", 2, len(table)), ("I_MOD", 1, 1, 2),
                 self.konst(kind, r, table[0])]
        for v in range(1, len(table)):
            code += [self.konst("I", 2, v), ("I_EQ", 0, 1, 2),
                     self.konst(kind, tmp, table[v]),
                     (kind + "_SELECT", r, 0, tmp, r)]
        return r

    def finish(self, result, reg):
        """RET_<result> of `reg`; the branched-away lanes return
        SENTINEL[result]."""
        self.code.append(("RET_" + result, 0, reg))
        if self.branch is not None:
            self.code[self.branch] = ("BR", 0, 1, len(self.code),
                                      self.branch + 1)
            self.code += [self.konst(result, reg, SENTINEL[result]),
                          ("RET_" + result, 0, reg)]
        return self

    def nregs(self):
        return (self.count["I"], self.count["F"], self.count["B"])


def expected_lanes(tables, result, ref, allowed, sparse):
    """Per lane: 'value' -- the VM must return Python's value -- or 'bail'
    -- Python raises or returns what the result kind cannot hold (the
    contract must allow that) -- or 'either' -- the contract lets the VM
    bail although Python gives a value; and the values as an array."""
    pytype = {"I": int, "F": float, "B": bool}[result]
    status, values = [], []
    n = math.prod(len(t) for t in tables)
    for i in range(n):
        if sparse and i % 3 == 0:
            status.append("value")
            values.append(SENTINEL[result])
            continue
        args, stride = [], 1
        for t in tables:
            args.append(t[(i // stride) % len(t)])
            stride *= len(t)
        got, want = python(ref, args)
        if got == "raises":
            status.append("bail")
            values.append(0)
        elif type(want) is not pytype or (
                pytype is int and not INT64[0] <= want <= INT64[1]):
            assert allowed(args, want), (args, want)
            status.append("bail")
            values.append(0)
        else:
            status.append("either" if allowed(args, want) else "value")
            values.append(want)
    dtype = {"I": np.int64, "F": np.float64, "B": np.bool_}[result]
    return status, np.array(values, dtype)


def run_lanes(prog, out, isa, status, want, label):
    """Runs prog over `out` from every bail's next element on; checks each
    lane against `status` and `want` (expected_lanes)."""
    padded = out.dtype.kind in "fc" and out.dtype.itemsize in (16, 32)

    def differ(lo, hi):
        if not padded:
            if out[lo:hi].tobytes() == want[lo:hi].tobytes():
                return []
        return [(i, out[i], want[i]) for i in range(lo, hi)
                if stored_bytes(out[i:i + 1]) != stored_bytes(want[i:i + 1])]

    first, bails = 0, 0
    while True:
        k = run(prog.code, prog.iconsts, prog.fconsts, prog.nregs(), out,
                ndim=1, _isa=isa, first=first)
        stop = len(status) if k < 0 else k
        missed = [i for i in range(first, stop) if status[i] == "bail"]
        assert not missed, (label, "no bail at", missed[:5])
        bad = differ(first, stop)
        assert not bad, (label, bad[:5])
        if k < 0:
            return bails
        assert status[k] != "value", (label, k, "bailed", want[k])
        bails += 1
        first = k + 1


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", sorted(LANE_CASES))
def test_every_op_on_lanes(name, isa):
    op, kinds, result, ref, tables, fn = LANE_CASES[name]
    allowed = _lane_allowed(op, fn)
    dtype = {"I": np.int64, "F": np.float64, "B": np.bool_}[result]
    for sparse in (False, True):
        status, want = expected_lanes(tables, result, ref, allowed, sparse)
        prog = LaneProgram(kinds, tables, sparse)
        dst = prog.reg(result)
        extra = [FNS[fn]] if fn is not None else []
        prog.code.append((op, dst, *prog.regs, *extra))
        prog.finish(result, dst)
        # Straight into the output (aligned) and through the result
        # register (unaligned: never written into directly).
        buf = np.zeros(prog.n * 8 + 1, np.uint8)
        outs = [np.zeros(prog.n, dtype)]
        if result != "B":
            outs.append(buf[1:].view(dtype))
        for out in outs:
            bails = run_lanes(prog, out, isa, status, want,
                              (name, isa, sparse, out.flags.aligned))
            assert status.count("bail") <= bails <= \
                status.count("bail") + status.count("either")


def circle_points(n):
    """(re, im, bound): points within ulps of the circle of radius bound,
    at the fast path's margin (2**-20 relative, pyvm_ops.h), far from it,
    and edge values (NaN, inf, overflowing, tiny, zero, negative bounds)."""
    r = random.Random(5)
    pts = []
    for _ in range(n):
        t = r.uniform(0, 2 * math.pi)
        b = r.choice([2.0, 2.0, 1e-3, 3.5, 1e100, 1e-140])
        x, y = b * math.cos(t), b * math.sin(t)
        x = r.choice([x, math.nextafter(x, math.inf), x * (1 + 2**-20),
                      x * (1 - 2**-20), x * (1 + 2**-19), x * 1.5, x * 0.5])
        pts.append((x, y, b))
    for re in (0.0, -0.0, math.nan, math.inf, -math.inf, 1.5e308, 1e-320):
        for im in (0.0, math.nan, math.inf, 1.5e308, 2.0):
            for b in (2.0, 0.0, -1.0, math.nan, 1e300, 2.0**-451):
                pts.append((re, im, b))
    r.shuffle(pts)  # each run's last, masked, step meets every kind
    return pts


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cmp", ["LT", "LE", "GT", "GE"])
def test_complex_abs_compare_on_lanes(cmp, isa):
    # C_ABS_<cmp>_F over a dense range and a lane list on each ISA, for
    # runs of every length modulo 8 (the AVX-512 loop masks its last step),
    # every lane against Python's abs(complex(re, im)) <cmp> bound; an
    # overflowing abs bails (OverflowError), a NaN part may.
    pts = circle_points(400)
    for sparse in (False, True):
        abs_compare_runs(cmp, isa, pts, sparse,
                         [*range(1, 17), *range(len(pts) - 7, len(pts) + 1)])
    # One lane the shortcut cannot decide (|z| just above the bound), at
    # every position of runs of a few lengths, the others far inside: that
    # lane alone must send the call to the exact abs.
    far, near = (0.5, 0.0, 2.0), (2.0 * (1 + 2.0**-30), 0.0, 2.0)
    for n in (5, 8, 11):
        for p in range(n):
            abs_compare_runs(cmp, isa, [near if i == p else far
                                        for i in range(n)], False, [n])


def abs_compare_runs(cmp, isa, pts, sparse, lengths):
    prog = LaneProgram("F", ([p[0] for p in pts],), sparse)
    prog.regs.append(prog.pick("F", [p[1] for p in pts], 1))
    prog.regs.append(prog.pick("F", [p[2] for p in pts], 1))
    re, im, bound = prog.regs
    dst = prog.reg("B")
    prog.code += [("C_MAKE", 0, re, im),
                  ("C_ABS_" + cmp + "_F", dst, 0, bound)]
    prog.finish("B", dst)
    for n in lengths:
        status, want = [], np.zeros(n, np.bool_)
        for i in range(n):
            x, y, b = pts[i % len(pts)]
            if sparse and i % 3 == 0:
                status.append("value")
                want[i] = SENTINEL["B"]
                continue
            z = complex(x, y)
            try:
                h = abs(z)
            except OverflowError:
                status.append("bail")
                continue
            status.append("either" if nan_abs((z,), None) else "value")
            want[i] = CMPS[cmp](h, b)
        nregs = prog.nregs() + (1,)
        first = 0
        while True:
            out = np.zeros(n, np.bool_)
            k = run(prog.code, prog.iconsts, prog.fconsts, nregs, out,
                    ndim=1, _isa=isa, first=first)
            stop = n if k < 0 else k
            bad = [(i, pts[i % len(pts)], out[i], want[i])
                   for i in range(first, stop)
                   if status[i] == "bail" or out[i] != want[i]]
            assert not bad, (cmp, isa, sparse, n, bad[:5])
            if k < 0:
                break
            assert status[k] != "value", (cmp, isa, sparse, k, pts[k])
            first = k + 1


@pytest.mark.parametrize("isa", ISAS)
def test_complex_multiply_add_fused_on_lanes(isa):
    # C_MUL then a C_ADD of its product (fused by the VM into C_MULADD, as
    # in z * z + c), and the same two with an instruction between them (not
    # fused), over lanes: every lane against Python's x * y + w, bit for
    # bit (signs of zero); a NaN in the product bails, a NaN only the sum
    # has may.
    r = random.Random(8)
    parts = [0.0, -0.0, 1.0, -1.5, 2.0**-1070, 1e308, math.inf, -math.inf,
             math.nan, 0.1, -3.0]
    def pick():
        return complex(r.choice(parts + [r.uniform(-3, 3)] * 4),
                       r.choice(parts + [r.uniform(-3, 3)] * 4))
    pts = [(pick(), pick(), pick()) for _ in range(150)]
    for fused in (True, False):
        prog = LaneProgram("F", ([p[0].real for p in pts],), False)
        for part in (lambda p: p[0].imag, lambda p: p[1].real,
                     lambda p: p[1].imag, lambda p: p[2].real,
                     lambda p: p[2].imag):
            prog.regs.append(prog.pick("F", [part(p) for p in pts], 1))
        f = prog.regs
        dst = prog.reg("F")
        prog.code += [("C_MAKE", 0, f[0], f[1]), ("C_MAKE", 1, f[2], f[3]),
                      ("C_MAKE", 2, f[4], f[5]), ("C_MUL", 3, 0, 1)]
        if not fused:
            prog.code.append(("I_MOV", 2, 2))
        # the product's register 3 is read once (or the VM cannot fuse)
        prog.code += [("C_ADD", 4, 2, 3), ("C_REAL", dst, 4),
                      ("C_IMAG", dst + 1, 4), ("RET_F", 0, dst)]
        prog.count["F"] += 1
        for take in (0, 1):  # the real parts, then the imaginary ones
            prog.code[-1] = ("RET_F", 0, dst + take)
            status, want = [], np.zeros(len(pts))
            for i, (x, y, w) in enumerate(pts):
                t = x * y
                v = t + w
                if t.real != t.real or t.imag != t.imag:
                    status.append("bail")
                else:
                    status.append("either" if v != v else "value")
                want[i] = (v.real, v.imag)[take]
            first = 0
            while True:
                out = np.zeros(len(pts))
                k = run(prog.code, prog.iconsts, prog.fconsts,
                        prog.nregs() + (5,), out, ndim=1, _isa=isa,
                        first=first)
                stop = len(pts) if k < 0 else k
                bad = [(i, pts[i], out[i], want[i]) for i in range(first, stop)
                       if status[i] == "bail" or
                       out[i:i + 1].tobytes() != want[i:i + 1].tobytes()]
                assert not bad, (isa, fused, take, bad[:4])
                if k < 0:
                    break
                assert status[k] != "value", (isa, fused, take, k, pts[k])
                first = k + 1


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_stores_on_lanes(dtype, isa):
    # RET_I / RET_F / RET_B into every dtype over lanes (NumPy's setitem as
    # test_store checks it on one lane): the float32 overflow test, the
    # per-lane conversions, a bail at every value NumPy refuses or warns on.
    for kind, table in (("I", STORE_INTS), ("F", EDGE_FLOATS + STORE_EDGES),
                        ("B", BOOL_LANES)):
        for sparse in (False, True):
            prog = LaneProgram(kind, (table,), sparse)
            prog.finish(kind, prog.regs[0])
            status, want = [], np.zeros(prog.n, dtype)
            for i in range(prog.n):
                value = SENTINEL[kind] if sparse and i % 3 == 0 else \
                    table[i % len(table)]
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        want[i] = value
                    status.append("value")
                except (ValueError, OverflowError, RuntimeWarning,
                        TypeError):
                    status.append("bail")
            bails = run_lanes(prog, np.zeros(prog.n, dtype), isa, status,
                              want, (dtype, kind, isa, sparse))
            assert bails == status.count("bail")
