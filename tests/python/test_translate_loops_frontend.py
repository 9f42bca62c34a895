"""The translator's front end on loops and complex numbers (issue 12),
checked against Python itself: every function of the table is translated and
its program run by the reference interpreter (python/parfill/_translate/
reference.py) on a set of indices; each result must equal calling the
function -- same type, same bits (complex: both parts) -- or be a bail exactly
where Python raises, returns what the VM cannot hold (an int outside int64),
or the contract makes the VM bail (the case's ``bail`` predicate: e.g. a
Fibonacci loop whose last iteration computes F(93)). Every refused construct
must raise TranslationError naming it.

Pure Python on purpose (no NumPy, no extension): tools/run-translate-tests
runs this file under every supported CPython found (3.11, 3.12, 3.13).
"""
from __future__ import annotations

import math
import sys
import time

import pytest

from translate_oracle import T, Bail, reference, same
import translate_oracle

StepLimit = reference.StepLimit
TranslationError = T.TranslationError

B53, M63 = 2**53, 2**63 - 1
INF, NAN = float("inf"), float("nan")
STEPS = 2_000_000          # the reference's cap per element (tests only)


SMALL1 = [(i,) for i in range(0, 13)] + [(20,), (99,), (1000,)]
GRID2 = [(i, j) for i in range(0, 6) for j in range(0, 6)]
GRID3 = [(i, j, k) for i in range(3) for j in range(4) for k in range(3)]
IMAGE = [(i, j) for i in range(0, 900, 61) for j in range(0, 1200, 83)]


def check(f, ndim, points=None, bail=None, values=True):
    """translate_oracle.check with complex results and a step cap (loops).
    Returns (values, bails)."""
    pts = points or {1: SMALL1, 2: GRID2, 3: GRID3, 0: [()]}[ndim]
    return translate_oracle.check(f, ndim, pts, bail=bail, values=values,
                                  complex_ok=True, max_steps=STEPS)


def has_loop(prog):
    return any((i.op == "JMP" and i.a <= pc) or
               (i.op == "BR" and (i.b <= pc or i.c <= pc))
               for pc, i in enumerate(prog.instrs))


# -- loops ------------------------------------------------------------------------

def l_sum(i):
    s = 0
    for k in range(i):
        s += k
    return s


def l_sum_from(i):
    s = 0
    for k in range(i, 10):
        s += k * k
    return s


def l_neg_step(i):
    s = 0
    for k in range(i, -7, -2):
        s = s * 3 + k
    return s


def l_step_runtime(i):
    # step i - 3: zero (ValueError) at i == 3, negative: zero trips
    s = 0
    for k in range(0, 20, i - 3):
        s += k
    return s


def l_step_zero(i):
    s = 0
    for k in range(0, i, 0):
        s += k
    return s


def l_float_range(i):
    s = 0
    for k in range(i * 0.5):
        s += k
    return s


def l_zero_trip(i):
    for k in range(0):
        return 1
    return 2 + i


def l_zero_trip_runtime(i):
    s = -1.5
    for k in range(5 - i):
        s += k
    return s


def l_nested(i, j):
    s = 0
    for a in range(i):
        for b in range(j):
            s += a * b + 1
    return s


def l_nested_dep(i):
    s = 0
    for a in range(i):
        for b in range(a):
            s += b ^ a
    return s


def l_countdown(i):
    while i > 3:
        i -= 1
    return i


def l_break(i):
    k = -1
    for k in range(100):
        if k * k > i:
            break
    return k * 1.0 if i >= 0 else 0.0


def l_continue(i):
    s = 0
    for k in range(i):
        if k % 3 == 0:
            continue
        s += k
    return s


def l_while_true(i):
    n = 0
    while True:
        n += 1
        if n * n > i:
            break
    return n


def l_while_return(i):
    n = i
    while n > 0:
        if n % 7 == 0:
            return -n
        n -= 2
    return n


def l_exit_then_divide(i):
    # A lane leaving at x == 0 must not run the division after the exit
    # (the VM's tiled loops: a finished slot takes a ghost).
    x = i % 5
    y = 0
    while True:
        if x == 0:
            return y
        y += 1000 // x
        x -= 1


def l_fib(i):
    a, b = 0, 1
    for _ in range(i):
        a, b = b, a + b
    return a


def l_fib_while(i):
    a, b, n = 0, 1, 0
    while n < i:
        a, b = b, a + b
        n += 1
    return a


def l_fib_float(i):
    a, b = 0.0, 1.0
    for _ in range(i):
        a, b = b, a + b
    return a


def l_rotate3(i):
    a, b, c = 1, 2, 3
    for _ in range(i):
        a, b, c = b, c, a
    return a * 100 + b * 10 + c


def l_collatz(i):
    n = i + 1
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def l_collatz_big(i):
    # start values near 2**62: 3n + 1 leaves int64 on some paths
    n = 2**62 + i
    steps = 0
    while n != 1 and steps < 50:
        if n % 2:
            n = 3 * n + 1
        else:
            n //= 2
        steps += 1
    return steps


def l_newton_sqrt(i):
    x = float(i) or 1.0
    for _ in range(30):
        x = 0.5 * (x + i / x)
    return x


def l_newton_tol(i):
    a = i + 0.25
    x = a
    n = 0
    while abs(x * x - a) > 1e-12 * a and n < 100:
        x = (x + a / x) / 2
        n += 1
    return x


def l_newton_cubic(i):
    # x**3 - 2x - 5: f'(x) may be zero -> ZeroDivisionError in Python
    x = (i - 6) / 3
    for _ in range(12):
        d = 3 * x * x - 2
        x = x - (x ** 3 - 2 * x - 5) / d
    return x


def l_leibniz(i):
    s = 0.0
    for k in range(i):
        s += (-1) ** k / (2 * k + 1)
    return 4 * s


def l_alt_sign(i):
    s, sign = 0.0, 1.0
    for k in range(1, i + 1):
        s += sign / k
        sign = -sign
    return s


def l_gcd(i, j):
    a, b = i * 6, j * 4
    while b:
        a, b = b, a % b
    return a


def l_powmod(i):
    r, x, e = 1, i + 2, 13
    while e:
        if e & 1:
            r = r * x
        x = x * x
        e >>= 1
    return r


def l_digits(i):
    n, s = i * 987654321, 0
    while n:
        s += n % 10
        n //= 10
    return s


def l_isprime(i):
    if i < 2:
        return False
    for d in range(2, i):
        if d * d > i:
            break
        if i % d == 0:
            return False
    return True


def l_found(i):
    found = False
    for k in range(i):
        if k == 5:
            found = True
    return found


def l_for_else(i):
    for k in range(i):
        if k == 4:
            r = k
            break
    else:
        r = -1
    return r


def l_while_else(i):
    n = 0
    while n < i:
        if n == 6:
            break
        n += 2
    else:
        n = -n
    return n


def l_inner_break(i, j):
    s = 0
    for a in range(i + 1):
        for b in range(10):
            if b > j:
                break
            s += a + b
    return s


def l_mixed_acc(i):
    x, n = 0.0, 0
    for k in range(i):
        x += k * 0.5
        n += k
    return x - n


def l_range_bool(i):
    s = 0
    for k in range(i > 3):
        s += 10
    return s


def l_range_negative(i):
    s = 0
    for k in range(-i, i):
        s += k * abs(k)
    return s


def l_range_top(i):
    # the counter's last value is 2**63 - 1 - i % 2: cur + step leaves
    # int64 after it (the contract's guard; Python just stops)
    s = 0
    for k in range(M63 - 3 - i % 2, M63, 2):
        s += 1
    return s


def l_mul_overflow(i):
    x = 1
    for k in range(i):
        x *= 3
    return x


def l_overflow_at_50(i):
    # element 1234: x leaves int64 at iteration 50
    x = 0
    for k in range(60):
        x += i * 151_000_000_000_000
    return x


def l_guard_in_body(i):
    s = 0
    for k in range(6):
        s += 100 // (i - k)
    return s


def l_long(i):
    s = 0
    for k in range(i * 500):
        s = (s + k * k) % 1000003
    return s


def l_minmax_loop(i):
    m = 0.0
    for k in range(i):
        m = max(m, (k * 37 % 11) * 0.5)
    return m


def l_cond_expr_loop(i):
    x = 0
    for k in range(i):
        x = x + 1 if k % 2 else x - 2
    return x


def l_math_loop(i):
    x = 0.1
    for _ in range(i):
        x = math.sin(x) + 0.5
    return x


def l_3d(i, j, k):
    s = 0
    for a in range(i, j + k):
        s += a
    return s


# -- complex ----------------------------------------------------------------------

g_cinf, g_cnan, g_huge = complex(INF, 1.0), complex(NAN, 0.0), 1e308
g_c = 2 - 3j
g_negzero = complex(0.0, -0.0)


def c_mul_1j(i):
    return i * 1j


def c_literal_ops(i):
    return (1 + 2j) * i - 3j / (i + 1)


def c_make_div(i, j):
    return complex(i, j) / complex(j - 2, i - 3)


def c_abs(i, j):
    return abs(complex(i - 2.5, j * -1.5))


def c_parts(i, j):
    z = complex(i * 0.5, -j)
    return z.real * 10 + z.imag + z.conjugate().imag


def c_real_of_real(i):
    x = i * 0.5
    return x.real + x.imag + i.real + i.imag + (i > 3).real + x.conjugate()


def c_mixed(i, j):
    return (i + 0.5) * 1j - j + (i > 2) + 2.5 * g_c


def c_pow_small(i):
    z = complex(i - 3, 0.5)
    return z ** 2 + z ** 3 - z ** 0


def c_pow_neg(i):
    return complex(i - 4, 0) ** -2


def c_pow_frac(i):
    return complex(i - 4, 1.0) ** 0.5


def c_pow_big_exp(i):
    return complex(1.0, 0.001 * i) ** 101


def c_pow_complex(i):
    return complex(i * 0.3, 1.0) ** (0.5 + 0.5j)


def c_pow_register(i):
    z = complex(0.5, i * 0.25 - 1)
    return z ** (i - 5)


def c_pow_zero(i):
    return complex(0.0, 0.0) ** (i - 2)


def c_square_sign(i):
    # c_powu starts from 1: (1-0j)**2 is (1+0j), z*z is (1-0j)
    z = complex(1.0, -0.0 * (i + 1))
    w = z ** 2
    v = z * z
    return complex(w.imag, v.imag)


def c_eq_int(i):
    # an int is compared with the real part exactly (2**53 + 1)
    z = complex(float(B53 + i), 0.0)
    return (z == B53 + i) + 2 * (z != B53 + i + 1)


def c_eq(i, j):
    z = complex(i, j * 0.5)
    return (z == i) * 4 + (z != 1.0 * j) * 2 + (z == complex(j, i))


def c_truth(i):
    z = complex(i - 3, 0.0) * (i % 2)
    if z:
        return 1.5
    return -1.5


def c_truth_nan(i):
    z = g_cnan * 0 if i > 5 else complex(0.0, 0.0)
    return bool(z)


def c_neg(i):
    return -complex(i * 0.0, -0.0) + +complex(-0.0, i)


def c_edge_inf(i):
    return g_cinf * (i - 2) + complex(i, -0.0)


def c_edge_nan(i):
    return g_cnan + complex(i, i) * 0.5


def c_huge(i):
    z = complex(g_huge, g_huge * (i % 3 - 1))
    return complex(abs(z), 0.0) if i % 2 else z * 0.5


def c_huge_div(i):
    return complex(g_huge, 1.0) / complex(i * 1e300 - 2e300, g_huge)


def c_negzero_parts(i):
    z = g_negzero * i
    return complex(z.real, z.imag) + (-0.0 if i else 0.0)


def c_default(i, c=0.5 - 0.25j):
    return c * i + c.conjugate()


def c_closure(c):
    return lambda i: (c + i) * (c - i)


def c_one_arg(i):
    return complex(i) + complex(i * 0.5) + complex(i > 4) + complex()


def c_two_complex(i):
    return complex(1j * i, 2 + 1j)


def c_type_errors_lt(i):
    return complex(i, 1) < 2


def c_type_errors_int(i):
    return int(complex(i, 0))


def c_type_errors_float(i):
    return float(complex(i, 0))


def c_type_errors_math(i):
    return math.sqrt(complex(i, 0))


def c_type_errors_min(i):
    return min(complex(i, 0), 2j)


def c_type_errors_floordiv(i):
    return complex(i, 0) // 2


# -- loops over complex numbers ---------------------------------------------------

make_mandelbrot = translate_oracle.shipped_function("python/parfill/demo.py",
                                                   "make_mandelbrot")


def readme_pixel(i, j):
    # README.md's quick start
    c = complex(-2 + 3 * j / 1200, -1.2 + 2.4 * i / 900)
    z, n = 0j, 0
    while abs(z) <= 2 and n < 200:
        z, n = z * z + c, n + 1
    return n


def c_julia(i, j):
    z = complex(i * 0.1 - 0.3, j * 0.1 - 0.3)
    c = -0.8 + 0.156j
    for n in range(100):
        if abs(z) > 2:
            return n
        z = z * z + c
    return 100


def c_newton_roots(i, j):
    # z**3 = 1 by Newton: z = 0 divides by zero (Python raises)
    z = complex(i * 0.5 - 1.0, j * 0.5 - 1.0)
    for _ in range(20):
        z = z - (z ** 3 - 1) / (3 * z ** 2)
    return z


def c_escape_value(i, j):
    c = complex(i * 0.4 - 1.5, j * 0.4 - 1.0)
    z = 0j
    n = 0
    while n < 30:
        z = z * z + c
        n += 1
        if z.real * z.real + z.imag * z.imag > 1e6:
            break
    return z


def c_accumulate_real(i):
    z, s = complex(0.0, 1.0), 0.0
    for k in range(i):
        z = z * (0.6 + 0.8j)
        s += z.real
    return s


def c_burning_ship(i, j):
    c = complex(i * 0.5 - 2.0, j * 0.5 - 1.5)
    z = 0j
    for n in range(64):
        z = complex(abs(z.real), abs(z.imag))
        z = z * z + c
        if abs(z) > 2.0:
            return n
    return -1


CASES = [
    ("sum", l_sum, 1, {}),
    ("sum_from", l_sum_from, 1, {}),
    ("neg_step", l_neg_step, 1, {}),
    ("step_runtime", l_step_runtime, 1, {}),
    ("step_zero", l_step_zero, 1, {"values": False}),
    ("float_range", l_float_range, 1, {"values": False}),
    ("zero_trip", l_zero_trip, 1, {}),
    ("zero_trip_runtime", l_zero_trip_runtime, 1, {}),
    ("nested", l_nested, 2, {}),
    ("nested_dep", l_nested_dep, 1, {"points": [(i,) for i in range(0, 40, 3)]}),
    ("countdown", l_countdown, 1, {}),
    ("break", l_break, 1, {}),
    ("continue", l_continue, 1, {}),
    ("while_true", l_while_true, 1, {}),
    ("while_return", l_while_return, 1, {}),
    ("exit_then_divide", l_exit_then_divide, 1, {}),
    # F(92) is the last Fibonacci number in int64; the loop for element 92
    # computes F(93) in its last iteration (b), so 92 and above bail.
    ("fib", l_fib, 1, {"points": [(i,) for i in range(0, 100)],
                       "bail": lambda i: i >= 92}),
    ("fib_while", l_fib_while, 1, {"points": [(i,) for i in range(85, 97)],
                                   "bail": lambda i: i >= 92}),
    ("fib_float", l_fib_float, 1, {"points": SMALL1 + [(1476,), (1477,),
                                                        (2000,)]}),
    ("rotate3", l_rotate3, 1, {}),
    ("collatz", l_collatz, 1, {}),
    ("collatz_big", l_collatz_big, 1, {
        # 3n + 1 from n odd near 2**62 leaves int64 (Python goes on)
        "bail": lambda i: _collatz_leaves(2**62 + i)}),
    ("newton_sqrt", l_newton_sqrt, 1, {}),
    ("newton_tol", l_newton_tol, 1, {}),
    ("newton_cubic", l_newton_cubic, 1, {}),
    ("leibniz", l_leibniz, 1, {}),
    ("alt_sign", l_alt_sign, 1, {}),
    ("gcd", l_gcd, 2, {}),
    ("powmod", l_powmod, 1, {
        # x is squared 4 times (13 has 4 bits): x**16 leaves int64 before
        # r = x**13 does (Python goes on)
        "bail": lambda i: (i + 2) ** 16 >= 2**63}),
    ("digits", l_digits, 1, {}),
    ("isprime", l_isprime, 1, {"points": [(i,) for i in range(0, 60)]}),
    ("found", l_found, 1, {}),
    ("for_else", l_for_else, 1, {}),
    ("while_else", l_while_else, 1, {}),
    ("inner_break", l_inner_break, 2, {}),
    ("mixed_acc", l_mixed_acc, 1, {}),
    ("range_bool", l_range_bool, 1, {}),
    ("range_negative", l_range_negative, 1, {}),
    # an even i starts at 2**63 - 4: its last value 2**63 - 2 plus the step
    # leaves int64; an odd one's counter ends at 2**63 - 1 exactly
    ("range_top", l_range_top, 1, {"bail": lambda i: i % 2 == 0}),
    ("mul_overflow", l_mul_overflow, 1, {"points": [(i,) for i in range(0, 45)]}),
    ("overflow_at_50", l_overflow_at_50, 1, {
        "points": [(i,) for i in (0, 1, 1000, 1018, 1019, 1233, 1234, 5000)]}),
    ("guard_in_body", l_guard_in_body, 1, {}),
    ("long", l_long, 1, {"points": [(0,), (1,), (7,), (20,)]}),
    ("minmax_loop", l_minmax_loop, 1, {}),
    ("cond_expr_loop", l_cond_expr_loop, 1, {}),
    ("math_loop", l_math_loop, 1, {}),
    ("3d", l_3d, 3, {}),
    ("c_mul_1j", c_mul_1j, 1, {}),
    ("c_literal_ops", c_literal_ops, 1, {}),
    ("c_make_div", c_make_div, 2, {}),
    ("c_abs", c_abs, 2, {}),
    ("c_parts", c_parts, 2, {}),
    ("c_real_of_real", c_real_of_real, 1, {}),
    ("c_mixed", c_mixed, 2, {}),
    ("c_pow_small", c_pow_small, 1, {}),
    ("c_pow_neg", c_pow_neg, 1, {}),
    ("c_pow_frac", c_pow_frac, 1, {}),
    ("c_pow_big_exp", c_pow_big_exp, 1, {}),
    ("c_pow_complex", c_pow_complex, 1, {}),
    ("c_pow_register", c_pow_register, 1, {}),
    ("c_pow_zero", c_pow_zero, 1, {}),
    ("c_square_sign", c_square_sign, 1, {}),
    ("c_eq_int", c_eq_int, 1, {}),
    ("c_eq", c_eq, 2, {}),
    ("c_truth", c_truth, 1, {}),
    ("c_truth_nan", c_truth_nan, 1, {}),
    ("c_neg", c_neg, 1, {}),
    ("c_edge_inf", c_edge_inf, 1, {}),
    ("c_edge_nan", c_edge_nan, 1, {}),
    ("c_huge", c_huge, 1, {}),
    ("c_huge_div", c_huge_div, 1, {}),
    ("c_negzero_parts", c_negzero_parts, 1, {}),
    ("c_default", c_default, 1, {}),
    ("c_closure", c_closure(0.5 + 2j), 1, {}),
    ("c_closure_nan", c_closure(complex(NAN, -0.0)), 1, {}),
    ("c_one_arg", c_one_arg, 1, {}),
    ("c_two_complex", c_two_complex, 1, {}),
    ("c_lt", c_type_errors_lt, 1, {"values": False}),
    ("c_int", c_type_errors_int, 1, {"values": False}),
    ("c_float", c_type_errors_float, 1, {"values": False}),
    ("c_math", c_type_errors_math, 1, {"values": False}),
    ("c_min", c_type_errors_min, 1, {"values": False}),
    ("c_floordiv", c_type_errors_floordiv, 1, {"values": False}),
    ("demo_pixel", make_mandelbrot(120, 90), 2, {
        "points": [(i, j) for i in range(0, 90, 7) for j in range(0, 120, 9)]}),
    ("demo_pixel_full", make_mandelbrot(1200, 900), 2, {"points": IMAGE}),
    ("readme_pixel", readme_pixel, 2, {"points": IMAGE}),
    ("julia", c_julia, 2, {}),
    ("newton_roots", c_newton_roots, 2, {}),
    ("escape_value", c_escape_value, 2, {}),
    ("accumulate_real", c_accumulate_real, 1, {}),
    ("burning_ship", c_burning_ship, 2, {}),
]


def _collatz_leaves(n):
    steps = 0
    while n != 1 and steps < 50:
        if n % 2:
            if 3 * n + 1 >= 2**63:
                return True
            n = 3 * n + 1
        else:
            n //= 2
        steps += 1
    return False


@pytest.mark.parametrize("name,func,ndim,opts", CASES, ids=[c[0] for c in CASES])
def test_translates_exactly(name, func, ndim, opts):
    check(func, ndim, **opts)


def test_table_size():
    assert len(CASES) >= 60


# step_zero and float_range: Python raises before the loop, so the
# translated path is a bail with no loop in it.
LOOPS = [c for c in CASES
         if c[0] not in ("zero_trip", "step_zero", "float_range") and
         (c[1].__name__.startswith("l_") or c[0] in (
             "demo_pixel", "readme_pixel", "julia", "newton_roots",
             "escape_value", "accumulate_real", "burning_ship"))]


@pytest.mark.parametrize("name,func,ndim,opts", LOOPS, ids=[c[0] for c in LOOPS])
def test_loops_have_back_edges(name, func, ndim, opts):
    # The loops run in the VM as loops (not unrolled, not refused).
    assert has_loop(T.translate(func, ndim).program)


def test_fib_bails_at_the_overflowing_element():
    k = T.translate(l_fib, 1)
    for i in range(92):
        assert reference.run(k.program, (i,)) == l_fib(i)
    got = reference.run(k.program, (92,))
    assert isinstance(got, Bail) and "I_ADD" in got.why and "overflow" in got.why


def test_overflow_at_iteration_50_of_element_1234():
    k = T.translate(l_overflow_at_50, 1)
    # count the executed I_ADDs of the loop body up to the bail
    prog = k.program
    adds = [pc for pc, ins in enumerate(prog.instrs) if ins.op == "I_ADD"
            and ins.line == l_overflow_at_50.__code__.co_firstlineno + 4]
    assert adds
    got = reference.run(prog, (1234,))
    assert isinstance(got, Bail) and got.pc in adds, (got, k.source)
    x, n = 0, 0
    while -2**63 <= x < 2**63:
        x += 1234 * 151_000_000_000_000
        n += 1
    assert n == 50
    assert reference.run(prog, (1018,)) == l_overflow_at_50(1018)


def test_endless_loop_runs_until_stopped():
    def spin(i):
        n = 0
        while True:
            n = (n + i) % 7
    k = T.translate(spin, 1)
    assert has_loop(k.program)
    assert not any(ins.op.startswith("RET_") for ins in k.program.instrs)
    with pytest.raises(StepLimit):
        reference.run(k.program, (3,), max_steps=10_000)

    def spin_for(i):
        s = 0
        for k in range(10**18):
            s ^= k
        return s
    k = T.translate(spin_for, 1)
    with pytest.raises(StepLimit):
        reference.run(k.program, (3,), max_steps=10_000)


def test_loop_invariant_constants_fold():
    # A value no back edge changes stays a constant (max_iter, the step).
    prog = T.translate(make_mandelbrot(40, 30), 2).program
    assert sum(1 for i in prog.instrs if i.op == "C_MUL") == 1
    assert "I_POW" not in {i.op for i in prog.instrs}


def test_swap_in_loop_is_a_parallel_move():
    def f(i):
        a, b = 1.5, -2.0
        for _ in range(i):
            a, b = b, a
        return a - b * 10
    check(f, 1)


def test_loop_moves_coalesce_where_nothing_sees_it():
    # s += sign / (2k + 1); sign = -sign: the sum and the sign are computed
    # into the loop's own registers, with no move at the back edge
    # (Program.coalesce_moves), and no jump to the next instruction stays.
    def series(i):
        s, sign = 0.0, 1.0
        for k in range(i % 50):
            s += sign / (2 * k + 1)
            sign = -sign
        return s
    prog = T.translate(series, 1).program
    assert not any(ins.op == "F_MOV" for ins in prog.instrs), \
        T.translate(series, 1).source
    assert not any(ins.op == "JMP" and ins.a == pc + 1
                   for pc, ins in enumerate(prog.instrs))
    check(series, 1)

    # s is read after u = s + k is computed: writing u into s there would
    # change t, so the move computes s + k itself, after t.
    def read_between(i):
        s, t = 0.0, 0.0
        for k in range(i % 7):
            u = s + k
            t = s * 2.0
            s = u
        return s + t
    prog = T.translate(read_between, 1).program
    ops = [ins.op for ins in prog.instrs]
    assert "F_MOV" not in ops and ops.index("F_MUL") < ops.index("F_ADD"), \
        T.translate(read_between, 1).source
    check(read_between, 1)

    # a write of s's future register while s is live: renaming t as a
    # would let a = 5.0 overwrite t.
    def write_while_live(i):
        a, x = 0.0, 0.0
        for k in range(i % 9):
            t = a + k
            a = 5.0
            x += a
            a = t
        return a + x
    check(write_while_live, 1)


def test_a_definition_that_may_raise_is_not_moved_into_one_arm():
    # v is read by one arm of an `and` only (a move there): computing
    # 0.0 ** -1 in that arm instead would skip Python's ZeroDivisionError
    # on the other (the fuzzer's case; SKIPPABLE in program.py).
    def pow_in_one_arm(i):
        v = (i * 0.5) ** -1
        w = (i * 3.0) and v
        return i % 4 == 1

    def mod_in_one_arm(i, j):
        v = (i + 8) % j
        w = round(i * -1e18)
        return w and v

    for f, ndim in ((pow_in_one_arm, 1), (mod_in_one_arm, 2)):
        ops = [ins.op for ins in T.translate(f, ndim).program.instrs]
        first_branch = ops.index("BR")
        assert any(op in ("F_POW", "I_MOD") for op in ops[:first_branch]), \
            T.translate(f, ndim).source
        check(f, ndim)
    # An int64 add whose overflow is only a big int to Python may still
    # go to the back edge (the Mandelbrot's n + 1: no I_MOV in its loop).
    prog = T.translate(make_mandelbrot(600, 400, 256), 2).program
    assert "I_MOV" not in [ins.op for ins in prog.instrs]


def test_moves_that_must_not_go_as_they_would():
    # d = F0, s = F2: F0 is dead after F2's definition (written again before
    # it is read), but that write comes while F2 is still to be moved;
    # computing F2 into F0 would lose it. The front end writes a variable's
    # register only at its merges, so these are built by hand.
    Instr, Program = T.program.Instr, T.program.Program
    prog = Program(1, nregs={"I": 1, "F": 5, "B": 0, "C": 0})
    prog.fconsts = [5.0]
    prog.instrs = [Instr("I2F", 1, 0), Instr("F_ADD", 2, 1, 1),
                   Instr("F_CONST", 0, 0), Instr("F_MUL", 3, 0, 1),
                   Instr("F_MOV", 0, 2), Instr("F_ADD", 4, 0, 3),
                   Instr("RET_F", 0, 4)]
    want = [reference.run(prog, (i,)) for i in range(-3, 4)]
    prog.coalesce_moves()
    assert [reference.run(prog, (i,)) for i in range(-3, 4)] == want

    # I5 = I1 in a loop, I1 = I0 + I0 before it, I0 written in the loop:
    # the move cannot compute I0 + I0 itself (it runs again without it).
    prog = Program(1, nregs={"I": 6, "F": 0, "B": 1, "C": 0})
    prog.iconsts = [0, 3, 1]
    prog.instrs = [Instr("I_ADD", 1, 0, 0), Instr("I_CONST", 2, 0),
                   Instr("I_CONST", 3, 1), Instr("I_CONST", 4, 2),
                   Instr("I_CONST", 5, 0), Instr("I_LT", 0, 2, 3),
                   Instr("BR", 0, 0, 7, 11), Instr("I_MOV", 5, 1),
                   Instr("I_ADD", 0, 0, 4), Instr("I_ADD", 2, 2, 4),
                   Instr("JMP", 0, 5), Instr("RET_I", 0, 5)]
    want = [reference.run(prog, (i,)) for i in range(-3, 4)]
    prog.coalesce_moves()
    assert [reference.run(prog, (i,)) for i in range(-3, 4)] == want


def test_loop_moves_coalesce_across_blocks():
    # The Mandelbrot's z = z * z + c: abs(z) reads the new z before the
    # branch, and the move z = (new z) sits in the arm that loops; nothing
    # reads the old z after the new one exists, so the product-sum is
    # computed into z's register and no complex move is left.
    prog = T.translate(make_mandelbrot(40, 30), 2).program
    assert not any(ins.op == "C_MOV" for ins in prog.instrs), \
        T.translate(make_mandelbrot(40, 30), 2).source
    check(make_mandelbrot(40, 30), 2)

    # The old z read in the arm (w = z) after the new one is computed, and
    # abs reads the new one: the move stays.
    def old_read_in_arm(i):
        z, w = 0j, 0j
        for k in range(i % 9):
            t = z * z + 0.25j
            if abs(t) > 0.5:
                w = z
            z = t
        return z + w
    prog = T.translate(old_read_in_arm, 1).program
    sums = {ins.dst for ins in prog.instrs if ins.op == "C_ADD"}
    assert any(ins.op == "C_MOV" and ins.a in sums for ins in prog.instrs), \
        T.translate(old_read_in_arm, 1).source
    check(old_read_in_arm, 1)


def test_a_move_computes_its_source_only_where_the_operands_stand():
    # A range loop's next value n + 1 is computed at the back edge into
    # n's register (return n reads n in the body).
    def first_over(i):
        x = 0.0
        for n in range(i % 40):
            x += n * 0.25
            if x > 20.0:
                return n
        return -1
    prog = T.translate(first_over, 1).program
    assert not any(ins.op == "I_MOV" for ins in prog.instrs), \
        T.translate(first_over, 1).source
    check(first_over, 1)

    # Fibonacci's a, b = b, a + b: the back edge's parallel move writes a
    # before b takes the sum of the old a and b, so the sum stays where it
    # is.
    def fib(i):
        a, b = 0, 1
        for _ in range(i % 60):
            a, b = b, a + b
        return a * 3 + b
    check(fib, 1)
    def fib_f(i):
        a, b = 0.5, 1.0
        for _ in range(i % 60):
            a, b = b, a + b
        return a * 3.0 - b
    check(fib_f, 1)


# -- refusals ---------------------------------------------------------------------

def r_type_change(i):
    x = 0
    while x < i:
        x = x / 2 + 1
    return x


def r_type_change_complex(i):
    z = 0.0
    for k in range(i):
        z = z * 1j + k
    return z


def r_tuple_iter(i):
    s = 0
    for k in (1, 2, 3):
        s += k * i
    return s


def r_list_iter(i):
    s = 0
    for k in [1, 2]:
        s += k
    return s


def r_iter_number(i):
    s = 0
    for k in i:
        s += k
    return s


def r_after_loop(i):
    for k in range(i):
        pass
    return k


def r_unbound_in_loop(i):
    for k in range(i):
        if k > 0:
            s = prev + k          # noqa: F821 - unbound on the first pass
        prev = k
    return 0


def r_range_object(i):
    r = range(i)
    return r


def r_cmath(i):
    return cmath.sqrt(i)          # noqa: F821


def r_complex_str(i):
    return complex("1j") * i


def r_conj_args(i):
    return (1j * i).conjugate(1)


def r_attr_complex(i):
    return (1j * i).numerator


def r_becomes_tuple(i):
    t = 0
    for k in range(i):
        t = (t, k)
    return 0


REFUSED = [
    (r_type_change, 1, "variable 'x' changes type in the loop (int, then float)"),
    (r_type_change_complex, 1, "variable 'z' changes type in the loop (float, then complex)"),
    (r_tuple_iter, 1, "for loop over a tuple"),
    (r_list_iter, 1, "for loop over a tuple"),     # [1, 2] is a constant tuple
    (r_iter_number, 1, "for loop over a int"),
    (r_after_loop, 1, "variable 'k'"),
    (r_unbound_in_loop, 1, "variable 'prev'"),
    (r_range_object, 1, "return on a range object"),
    (r_cmath, 1, "undefined name 'cmath'"),
    (r_complex_str, 1, "complex() on '1j'"),
    (r_conj_args, 1, "conjugate() with arguments"),
    (r_attr_complex, 1, "attribute .numerator of a complex"),
    (r_becomes_tuple, 1, "variable 't'"),
]


@pytest.mark.parametrize("func,ndim,construct", REFUSED,
                         ids=[c[0].__name__ for c in REFUSED])
def test_refused(func, ndim, construct):
    with pytest.raises(TranslationError) as e:
        T.translate(func, ndim)
    err = e.value
    assert construct in err.construct, err.construct
    assert construct in str(err)
    assert err.filename == func.__code__.co_filename
    assert err.lineno is not None
    assert func.__code__.co_firstlineno <= err.lineno <= \
        func.__code__.co_firstlineno + 6


# -- the demo's function ----------------------------------------------------------

def test_demo_pixel_source_and_cost():
    pixel = make_mandelbrot(1200, 900)
    t0 = time.perf_counter()
    k = T.translate(pixel, 2)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert T.translate(pixel, 2) is k
    cached = time.perf_counter() - t0
    src = k.source
    assert "C_ABS" in src and "C_MAKE" in src and "return" in src
    assert has_loop(k.program)
    assert k.nregs[3] >= 2
    print(f"\n{src}\nfirst {first * 1e3:.2f} ms, cached {cached * 1e6:.1f} us")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
