/*
 * pyvm_ops.h -- CPython's scalar operations, exactly, for the translated-
 * function VM (pyvm.c): int (CPython `long` on values that fit in int64),
 * float (Objects/floatobject.c), conversions, int/float comparisons, the math
 * module (Modules/mathmodule.c) and NumPy's setitem of a Python scalar.
 *
 * Every operation either gives CPython's value bit for bit or returns a
 * nonzero "why" code (PF__W_*): the element is then redone in Python, which
 * gives its value or raises. Simple operations are inline here so that the
 * VM's lane loops inline them; the long ones are in pyvm_ops.c.
 *
 * The files are compiled with -std=c11 (no FMA contraction in GCC) and never
 * with -ffast-math, and call scalar libm (no function here is declared with
 * a SIMD variant, so libmvec is never used).
 */
#ifndef PF_PYVM_OPS_H
#define PF_PYVM_OPS_H

#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "internal.h"
#include "pyvm_opcodes.h"

/* X(NAME, message): why an element needs Python. */
#define PF__PYVM_WHY(X)                                                       \
  X(OK, "")                                                                   \
  X(INT_OVERFLOW, "integer result outside int64")                             \
  X(ZERO_DIV, "integer division or modulo by zero")                           \
  X(NEG_POW, "negative integer exponent (float result)")                      \
  X(NEG_SHIFT, "negative shift count")                                        \
  X(BIG_DIV, "int / int of values that are not exact doubles")                \
  X(FZERO_DIV, "float division or modulo by zero")                            \
  X(POW_ZERO, "zero to a negative power")                                     \
  X(POW_COMPLEX, "negative number to a fractional power (complex result)")    \
  X(POW_RANGE, "result out of range")                                         \
  X(NAN_INT, "cannot convert float NaN to integer")                           \
  X(INF_INT, "cannot convert float infinity to integer")                      \
  X(DOMAIN, "math domain error")                                              \
  X(RANGE, "math range error")                                                \
  X(HYPOT, "CPython versions may round this hypot differently")             \
  X(NAN_PAIR, "two NaN operands (CPython's NaN sign depends on its build)")               \
  X(STORE_RANGE, "value out of bounds for the output dtype")                  \
  X(STORE_NAN, "NaN stored into an integer dtype")                            \
  X(STORE_OVERFLOW, "overflow converting to the output dtype (NumPy warns)")  \
  X(STORE_COMPLEX, "complex stored into a real dtype (NumPy raises TypeError)")\
  X(CZERO_DIV, "complex division by zero")                                    \
  X(CPOW_ZERO, "0.0 to a negative or complex power")                          \
  X(CPOW_RANGE, "complex exponentiation overflow")                            \
  X(CABS_RANGE, "absolute value too large")                                   \
  X(CABS_NAN, "abs() of a complex with a NaN part (CPython < 3.15 reads a stale errno: gh-155526)") \
  X(NAN_COMPLEX, "NaN in a complex result (its sign bit depends on CPython's build)") \
  X(BAIL, "this path is left to Python")

enum {
#define PF__PYVM_WHY_ENUM(name, message) PF__W_##name,
  PF__PYVM_WHY(PF__PYVM_WHY_ENUM)
#undef PF__PYVM_WHY_ENUM
  PF__W_COUNT
};

/* The message of a why code. */
const char *pf__pyvm_why(int why);

#define PF__PYOP static inline __attribute__((always_inline))

/* 2**63 as a double: int64 holds [-2**63, 2**63). */
#define PF__TWO63 9223372036854775808.0

/* ------------------------------------------------------------------ int */

PF__PYOP int pf__py_iadd(int64_t a, int64_t b, int64_t *r) {
  return __builtin_add_overflow(a, b, r) ? PF__W_INT_OVERFLOW : 0;
}
PF__PYOP int pf__py_isub(int64_t a, int64_t b, int64_t *r) {
  return __builtin_sub_overflow(a, b, r) ? PF__W_INT_OVERFLOW : 0;
}
PF__PYOP int pf__py_imul(int64_t a, int64_t b, int64_t *r) {
  return __builtin_mul_overflow(a, b, r) ? PF__W_INT_OVERFLOW : 0;
}
PF__PYOP int pf__py_ineg(int64_t a, int64_t *r) {
  return __builtin_sub_overflow((int64_t)0, a, r) ? PF__W_INT_OVERFLOW : 0;
}
PF__PYOP int pf__py_iabs(int64_t a, int64_t *r) {
  if (a >= 0) {
    *r = a;
    return 0;
  }
  return pf__py_ineg(a, r);
}

/* Floor division (Objects/longobject.c l_divmod): the quotient rounds toward
 * -inf. INT64_MIN // -1 is 2**63, outside int64. */
PF__PYOP int pf__py_ifloordiv(int64_t a, int64_t b, int64_t *r) {
  if (b == 0) return PF__W_ZERO_DIV;
  if (b == -1) return pf__py_ineg(a, r);
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) q--;
  *r = q;
  return 0;
}

/* Modulo with the sign of the divisor. */
PF__PYOP int pf__py_imod(int64_t a, int64_t b, int64_t *r) {
  if (b == 0) return PF__W_ZERO_DIV;
  if (b == -1) {
    *r = 0;
    return 0;
  }
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  *r = m;
  return 0;
}

/* a ** b for b >= 0 by squaring with checked products. A square that
 * overflows while higher exponent bits remain means |result| >= that square
 * (|x| >= 2 there, and every factor has magnitude >= 1): outside int64. */
PF__PYOP int pf__py_ipow(int64_t a, int64_t b, int64_t *r) {
  if (b < 0) return PF__W_NEG_POW;
  uint64_t e = (uint64_t)b;
  int64_t acc = 1, x = a;
  for (;;) {
    if ((e & 1) && __builtin_mul_overflow(acc, x, &acc))
      return PF__W_INT_OVERFLOW;
    e >>= 1;
    if (e == 0) break;
    if (__builtin_mul_overflow(x, x, &x)) return PF__W_INT_OVERFLOW;
  }
  *r = acc;
  return 0;
}

PF__PYOP int pf__py_irshift(int64_t a, int64_t b, int64_t *r) {
  if (b < 0) return PF__W_NEG_SHIFT;
  *r = b >= 64 ? (a < 0 ? -1 : 0) : a >> b; /* GCC: arithmetic shift */
  return 0;
}

PF__PYOP int pf__py_ilshift(int64_t a, int64_t b, int64_t *r) {
  if (b < 0) return PF__W_NEG_SHIFT;
  if (a == 0) {
    *r = 0;
    return 0;
  }
  if (b >= 64) return PF__W_INT_OVERFLOW;
  int64_t s = (int64_t)((uint64_t)a << b);
  if ((s >> b) != a) return PF__W_INT_OVERFLOW;
  *r = s;
  return 0;
}

/* 1 when the int64 is exactly a double. */
PF__PYOP int pf__py_exact_double(int64_t a) {
  double d = (double)a;
  return d < PF__TWO63 && (int64_t)d == a;
}

/* a / b (Objects/longobject.c long_true_divide): correctly rounded. When
 * both are exact doubles, IEEE division of the doubles is the correctly
 * rounded quotient (CPython's fast path, |a|, |b| <= 2**53, is the case of
 * it that CPython checks cheaply; its slow path is correctly rounded too);
 * otherwise bail. 0 / -b is -0.0 in both. */
PF__PYOP int pf__py_itruediv(int64_t a, int64_t b, double *r) {
  if (b == 0) return PF__W_ZERO_DIV;
  if (!pf__py_exact_double(a) || !pf__py_exact_double(b))
    return PF__W_BIG_DIV;
  *r = (double)a / (double)b;
  return 0;
}

/* ---------------------------------------------------------------- float */

/* Objects/floatobject.c float_rem. */
PF__PYOP int pf__py_fmod(double vx, double wx, double *r) {
  if (wx == 0.0) return PF__W_FZERO_DIV;
  double mod = fmod(vx, wx);
  if (mod) {
    /* ensure the remainder has the same sign as the denominator */
    if ((wx < 0) != (mod < 0)) mod += wx;
  } else {
    mod = copysign(0.0, wx);
  }
  *r = mod;
  return 0;
}

/* Objects/floatobject.c _float_div_mod, the floor quotient of float_floor_div
 * (the same sequence of operations). */
PF__PYOP int pf__py_ffloordiv(double vx, double wx, double *r) {
  if (wx == 0.0) return PF__W_FZERO_DIV;
  double mod = fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  }
  double floordiv;
  if (div) {
    /* snap quotient to nearest integral value */
    floordiv = floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = copysign(0.0, vx / wx);
  }
  *r = floordiv;
  return 0;
}

/* Objects/floatobject.c float_pow (pyvm_ops.c). */
int pf__py_fpow(double iv, double iw, double *r);

/* ---------------------------------------------------------- conversions */

/* PyLong_FromDouble of an integral double (NaN and inf included) into
 * int64. */
PF__PYOP int pf__py_long_from_integral(double x, int64_t *r) {
  if (x != x) return PF__W_NAN_INT;
  if (x == INFINITY || x == -INFINITY) return PF__W_INF_INT;
  if (!(x >= -PF__TWO63 && x < PF__TWO63)) return PF__W_INT_OVERFLOW;
  *r = (int64_t)x;
  return 0;
}

/* int(x): float.__trunc__. */
PF__PYOP int pf__py_ftrunc(double x, int64_t *r) {
  return pf__py_long_from_integral(trunc(x), r);
}
/* math.floor(x), math.ceil(x) for a float: PyLong_FromDouble(floor(x)). */
PF__PYOP int pf__py_ffloor(double x, int64_t *r) {
  return pf__py_long_from_integral(floor(x), r);
}
PF__PYOP int pf__py_fceil(double x, int64_t *r) {
  return pf__py_long_from_integral(ceil(x), r);
}
/* round(x): float___round___impl with ndigits None, half to even. */
PF__PYOP int pf__py_fround(double x, int64_t *r) {
  double rounded = round(x);
  if (fabs(x - rounded) == 0.5) rounded = 2.0 * round(x / 2.0);
  return pf__py_long_from_integral(rounded, r);
}

/* The sign of i - f, exactly (float_richcompare's int/float case): -1, 0,
 * 1, or 2 when f is NaN (every comparison false but !=). */
PF__PYOP int pf__py_cmp_if(int64_t i, double f) {
  if (f != f) return 2;
  if (f >= PF__TWO63) return -1;
  if (f < -PF__TWO63) return 1;
  double t = trunc(f); /* exact, in [-2**63, 2**63) */
  int64_t ti = (int64_t)t;
  if (i != ti) return i < ti ? -1 : 1;
  double frac = f - t; /* exact */
  return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

/* ----------------------------------------------------------------- math */

/* math_1's rule (Modules/mathmodule.c) on r = f(x) with errno `err`: a NaN
 * from a non-NaN argument is a ValueError, an infinity from a finite one a
 * ValueError or OverflowError, and a finite result with errno set is an
 * error unless it is an underflow (ERANGE with |r| < 1.5: is_error). */
PF__PYOP int pf__py_math1_check(double x, double r, int err) {
  if (r != r && x == x) return PF__W_DOMAIN;
  if (fabs(r) == INFINITY && fabs(x) < INFINITY) return PF__W_RANGE;
  if (err != 0 && fabs(r) < INFINITY && (err != ERANGE || fabs(r) >= 1.5))
    return PF__W_RANGE;
  return 0;
}

/* math.<fn>(x, y) for a two-argument function (pyvm_ops.c); fn must have
 * that arity. The one-argument functions are pyvm_lanes.h's CALL1 loops,
 * which call libm and pf__py_math1_check themselves. */
int pf__py_math2(int fn, double x, double y, double *r);
/* The arity of function id fn, or 0 for none. */
int pf__py_math_arity(int fn);
/* Its name ("sin"), or NULL. */
const char *pf__py_math_name(int fn);

/* -------------------------------------------------------------- complex */

/* Objects/complexobject.c of CPython 3.11-3.13 (the same in the three;
 * 3.14's mixed real/complex rules are not supported by the front end).
 * Real operands reach these as complex(x, 0.0): the front end converts
 * first, as those versions do (to_complex).
 *
 * NaN results: an IEEE operation on two NaNs returns one of them, which
 * one depends on the order the compiler gave the commutative operands
 * (CPython's binary and this VM may differ), so a product, quotient or
 * power with a NaN part bails; sums bail on a NaN pair (as F_ADD). */

/* _Py_c_quot (Smith's algorithm, scaled by the larger part of b): b == 0
 * is complex_div's ZeroDivisionError (errno EDOM). */
PF__PYOP int pf__py_cquot(double ar, double ai, double br, double bi,
                          double *rr, double *ri) {
  const double abs_breal = br < 0 ? -br : br;
  const double abs_bimag = bi < 0 ? -bi : bi;
  double r, i;
  if (abs_breal >= abs_bimag) {
    if (abs_breal == 0.0) return PF__W_CZERO_DIV;
    const double ratio = bi / br;
    const double denom = br + bi * ratio;
    r = (ar + ai * ratio) / denom;
    i = (ai - ar * ratio) / denom;
  } else if (abs_bimag >= abs_breal) {
    const double ratio = br / bi;
    const double denom = br * ratio + bi;
    r = (ar * ratio + ai) / denom;
    i = (ai * ratio - ar) / denom;
  } else {
    return PF__W_NAN_COMPLEX; /* a NaN part of b: Py_NAN, Py_NAN */
  }
  if (r != r || i != i) return PF__W_NAN_COMPLEX;
  *rr = r;
  *ri = i;
  return 0;
}

/* _Py_c_abs and complex_abs: an infinite part gives inf (even with a NaN
 * other part), else libm's hypot -- the function CPython calls -- and an
 * infinite hypot of finite parts is "absolute value too large". A NaN part
 * (and no infinite one) is left to Python: _Py_c_abs returns Py_NAN there
 * without clearing errno, and complex_abs of 3.11-3.14 then raises
 * OverflowError if anything earlier in the element left errno at ERANGE
 * (an underflowing math.exp, say; CPython gh-155526, fixed in 3.15) -- a
 * state the VM does not track. Each element starts with errno 0
 * (python/_core/callable.c), so Python's redo is the sequential loop's. */
PF__PYOP int pf__py_cabs(double re, double im, double *r) {
  if (!(fabs(re) < INFINITY) || !(fabs(im) < INFINITY)) {
    if (fabs(re) == INFINITY) {
      *r = fabs(re);
    } else if (fabs(im) == INFINITY) {
      *r = fabs(im);
    } else {
      return PF__W_CABS_NAN;
    }
    return 0;
  }
  const double h = hypot(re, im);
  if (!(fabs(h) < INFINITY)) return PF__W_CABS_RANGE;
  *r = h;
  return 0;
}

/* abs(z) OP x without the hypot when the sign of |z| - x is certain.
 * Returns 1 (|z| > x), -1 (|z| < x) or 0 (undecided: compute abs exactly).
 *
 * Proof. Let u = 2**-53, S = re**2 + im**2 exactly, s = fl(fl(re*re) +
 * fl(im*im)) and t = fl(x*x). Decided only for finite re, im, s and for
 * 2**-450 <= x <= 2**450, so t is normal and |t - x**2| <= u x**2 (s
 * finite implies re and im are: an infinite or NaN part makes s inf or
 * NaN, so s < inf is the whole test of finiteness). Each
 * square has relative error <= u plus, when it underflows, an absolute
 * error <= 2**-1075; the sum of two non-negative doubles adds relative
 * error <= u (it is exact when subnormal), so |s - S| <= 3u S + 2**-1073.
 * libm's hypot h is within 1 ulp of sqrt(S) (glibc's documented bound;
 * only |h - sqrt(S)| <= 2**-40 sqrt(S) is used, and nothing can overflow:
 * s finite means sqrt(S) < 2**513).
 *  - s > fl(t * (1 + 2**-20)): S > x**2 (1 + 2**-20)(1 - u)**2 (1 - 3u)
 *    - 2**-1073 >= x**2 (1 + 2**-21) (x**2 >= 2**-900 makes 2**-1073
 *    negligible), so sqrt(S) > x (1 + 2**-23) and h > x.
 *  - s < fl(t * (1 - 2**-20)): symmetrically sqrt(S) < x (1 - 2**-22), so
 *    h < x.
 * Otherwise (near the circle, NaN, inf, tiny or huge x) the caller computes
 * pf__py_cabs and compares: the same value and the same bail as C_ABS
 * followed by the comparison. The differential tests check millions of
 * points near the circle against CPython. */
PF__PYOP int pf__py_cabs_sign(double re, double im, double x) {
  /* Branch-free (& not &&), so that lane loops vectorise it. */
  const double s = re * re + im * im;
  const double t = x * x;
  const int ok = (s < INFINITY) & (x >= 0x1p-450) & (x <= 0x1p450);
  const double hi = t * (1.0 + 0x1p-20), lo = t * (1.0 - 0x1p-20);
  return ok * ((s > hi) - (s < lo));
}

/* complex_pow: c_powi (binary powering from 1 by _Py_c_prod, then
 * _Py_c_quot(1, .) for a negative exponent) for an exponent with imag 0
 * and an integral real part of magnitude <= 100, else _Py_c_pow (libm's
 * hypot, pow, atan2, exp, log, cos, sin); then _Py_ADJUST_ERANGE2 and its
 * errors (pyvm_ops.c). */
int pf__py_cpow(double ar, double ai, double br, double bi, double *rr,
                double *ri);

/* ----------------------------------------------------------- NumPy store */

/* a[k] = value as NumPy's setitem (PyArray_Pack) stores a Python int, float
 * or bool into `dtype` at `dst` (unaligned is fine); 0, or why it would
 * raise or warn (nothing is then written). */
int pf__py_store_int(pf_dtype dtype, int64_t v, void *dst);
int pf__py_store_float(pf_dtype dtype, double x, void *dst);
int pf__py_store_bool(pf_dtype dtype, int v, void *dst);
/* ... a Python complex: complex dtypes take each part as a float of their
 * width (complex64 warns on a finite part that overflows); bool takes its
 * truth; every other dtype raises TypeError. */
int pf__py_store_complex(pf_dtype dtype, double re, double im, void *dst);

#endif /* PF_PYVM_OPS_H */
