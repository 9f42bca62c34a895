/*
 * pyvm_ops.c -- the long CPython-exact scalar operations of pyvm_ops.h:
 * float ** (float_pow), the math module's two-argument functions with
 * math_2's error rules (the one-argument ones: pyvm_lanes.h), math.hypot (vector_norm, both CPython variants), math.pow,
 * math.fmod, math.atan2, and NumPy's setitem of Python scalars.
 *
 * Written from reading CPython 3.11-3.13 (Objects/floatobject.c,
 * Modules/mathmodule.c) and NumPy 2 (arraytypes.c.src setitem, checked
 * against `a[0] = value` in tests/python/test_pyvm.py).
 */
#include <errno.h>
#include <float.h>
#include <string.h>

#include "pyvm_ops.h"

static const char *const why_text[] = {
#define PF__PYVM_WHY_TEXT(name, message) message,
    PF__PYVM_WHY(PF__PYVM_WHY_TEXT)
#undef PF__PYVM_WHY_TEXT
};

const char *pf__pyvm_why(int why) {
  return why > 0 && why < PF__W_COUNT ? why_text[why] : "unknown";
}

/* DOUBLE_IS_ODD_INTEGER of floatobject.c. */
static int is_odd_integer(double x) { return fmod(fabs(x), 2.0) == 1.0; }

int pf__py_fpow(double iv, double iw, double *r) {
  int negate_result = 0;
  if (iw == 0) { /* v**0 is 1, even 0**0 */
    *r = 1.0;
    return 0;
  }
  if (isnan(iv)) { /* nan**w = nan, unless w == 0 */
    *r = iv;
    return 0;
  }
  if (isnan(iw)) { /* v**nan = nan, unless v == 1; 1**nan = 1 */
    *r = iv == 1.0 ? 1.0 : iw;
    return 0;
  }
  if (isinf(iw)) {
    iv = fabs(iv);
    if (iv == 1.0)
      *r = 1.0;
    else if ((iw > 0.0) == (iv > 1.0))
      *r = fabs(iw); /* inf */
    else
      *r = 0.0;
    return 0;
  }
  if (isinf(iv)) {
    int odd = is_odd_integer(iw);
    if (iw > 0.0)
      *r = odd ? iv : fabs(iv);
    else
      *r = odd ? copysign(0.0, iv) : 0.0;
    return 0;
  }
  if (iv == 0.0) {
    int odd = is_odd_integer(iw);
    if (iw < 0.0) return PF__W_POW_ZERO; /* ZeroDivisionError */
    *r = odd ? iv : 0.0;
    return 0;
  }
  if (iv < 0.0) {
    if (iw != floor(iw)) return PF__W_POW_COMPLEX; /* a complex result */
    iv = -iv;
    negate_result = is_odd_integer(iw);
  }
  if (iv == 1.0) { /* 1**w is 1, even 1**inf and 1**nan */
    *r = negate_result ? -1.0 : 1.0;
    return 0;
  }
  /* Finite iv > 0, != 1; finite iw != 0: the platform pow, with
   * _Py_ADJUST_ERANGE1 (inf sets ERANGE, an underflow to 0 clears it). */
  errno = 0;
  double ix = pow(iv, iw);
  int err = errno;
  if (err == 0) {
    if (ix == HUGE_VAL || ix == -HUGE_VAL) err = ERANGE;
  } else if (err == ERANGE && ix == 0.0) {
    err = 0;
  }
  if (err != 0) return PF__W_POW_RANGE; /* OverflowError / ValueError */
  *r = negate_result ? -ix : ix;
  return 0;
}

/* ------------------------------------------------------------- math */

/* mathmodule.c is_error: 1 when errno `err` (nonzero) makes result x an
 * error; an ERANGE whose result is below 1.5 in magnitude is an underflow,
 * which is not. */
static int is_error(double x, int err) {
  if (err == ERANGE) return fabs(x) >= 1.5;
  return 1;
}

static const int math_arity[] = {
#define PF__FN_ARITY(name, arity) arity,
    PF_PYVM_FUNCTIONS(PF__FN_ARITY)
#undef PF__FN_ARITY
};

static const char *const math_name[] = {
#define PF__FN_NAME(name, arity) #name,
    PF_PYVM_FUNCTIONS(PF__FN_NAME)
#undef PF__FN_NAME
};

int pf__py_math_arity(int fn) {
  return fn >= 0 && fn < PF__FN_COUNT ? math_arity[fn] : 0;
}

const char *pf__py_math_name(int fn) {
  return fn >= 0 && fn < PF__FN_COUNT ? math_name[fn] : NULL;
}

/* mathmodule.c m_atan2: IEEE special cases decided here, not by libm. */
static double m_atan2(double y, double x) {
  const double pi = 3.141592653589793238462643383279502884197;
  if (isnan(x) || isnan(y)) return NAN;
  if (isinf(y)) {
    if (isinf(x)) {
      if (copysign(1., x) == 1.)
        return copysign(0.25 * pi, y); /* atan2(+-inf, +inf) == +-pi/4 */
      else
        return copysign(0.75 * pi, y); /* atan2(+-inf, -inf) == +-pi*3/4 */
    }
    return copysign(0.5 * pi, y); /* atan2(+-inf, x) == +-pi/2 */
  }
  if (isinf(x) || y == 0.) {
    if (copysign(1., x) == 1.)
      return copysign(0., y); /* atan2(+-y, +inf) = atan2(+-0, +x) = +-0. */
    else
      return copysign(pi, y); /* atan2(+-y, -inf) = atan2(+-0., -x) = +-pi */
  }
  return atan2(y, x);
}

/* math_2's rule on a result r of f(x, y) with errno `err`. */
static int math2_check(double x, double y, double r, int err) {
  if (isnan(r))
    err = !isnan(x) && !isnan(y) ? EDOM : 0;
  else if (isinf(r))
    err = isfinite(x) && isfinite(y) ? ERANGE : 0;
  return err != 0 && is_error(r, err) ? (err == EDOM ? PF__W_DOMAIN
                                                     : PF__W_RANGE)
                                      : 0;
}

/* vector_norm of CPython 3.10/3.11 for two finite coordinates (|x| <= max
 * and |y| <= max, max > 0): Veltkamp-Dekker splitting, three compensated
 * accumulators and a differential correction of the square root. */
static double norm_split(const double vec[2], double max) {
  const double T27 = 134217729.0; /* ldexp(1.0, 27) + 1.0 */
  double x, scale, oldcsum, csum = 1.0, frac1 = 0.0, frac2 = 0.0, frac3 = 0.0;
  double t, hi, lo, h;
  int max_e;
  frexp(max, &max_e);
  if (max_e >= -1023) {
    scale = ldexp(1.0, -max_e);
    for (int i = 0; i < 2; i++) {
      x = vec[i];
      x *= scale;
      t = x * T27;
      hi = t - (t - x);
      lo = x - hi;
      x = hi * hi;
      oldcsum = csum;
      csum += x;
      frac1 += (oldcsum - csum) + x;
      x = 2.0 * hi * lo;
      oldcsum = csum;
      csum += x;
      frac2 += (oldcsum - csum) + x;
      frac3 += lo * lo;
    }
    h = sqrt(csum - 1.0 + (frac1 + frac2 + frac3));
    x = h;
    t = x * T27;
    hi = t - (t - x);
    lo = x - hi;
    x = -hi * hi;
    oldcsum = csum;
    csum += x;
    frac1 += (oldcsum - csum) + x;
    x = -2.0 * hi * lo;
    oldcsum = csum;
    csum += x;
    frac2 += (oldcsum - csum) + x;
    x = -lo * lo;
    oldcsum = csum;
    csum += x;
    frac3 += (oldcsum - csum) + x;
    x = csum - 1.0 + (frac1 + frac2 + frac3);
    return (h + x / (2.0 * h)) / scale;
  }
  /* When max_e < -1023, ldexp(1.0, -max_e) overflows: divide by max. */
  for (int i = 0; i < 2; i++) {
    x = vec[i];
    x /= max;
    x = x * x;
    oldcsum = csum;
    csum += x;
    frac1 += (oldcsum - csum) + x;
  }
  return max * sqrt(csum - 1.0 + frac1);
}

/* vector_norm of CPython 3.12+: dl_mul (an fma error-free product),
 * dl_fast_sum, two accumulators; subnormal inputs are rescaled by DBL_MIN
 * and the function recurses once. */
static double norm_fma(const double in[2], double max) {
  double vec[2] = {in[0], in[1]};
  double x, h, scale, csum = 1.0, frac1 = 0.0, frac2 = 0.0;
  int max_e;
  frexp(max, &max_e);
  if (max_e < -1023) {
    vec[0] /= DBL_MIN; /* convert subnormals to normals */
    vec[1] /= DBL_MIN;
    return DBL_MIN * norm_fma(vec, max / DBL_MIN);
  }
  scale = ldexp(1.0, -max_e);
  for (int i = 0; i < 2; i++) {
    x = vec[i];
    x *= scale;
    double pr_hi = x * x, pr_lo = fma(x, x, -pr_hi); /* dl_mul */
    double sm_hi = csum + pr_hi, sm_lo = (csum - sm_hi) + pr_hi;
    csum = sm_hi;
    frac1 += pr_lo;
    frac2 += sm_lo;
  }
  h = sqrt(csum - 1.0 + (frac1 + frac2));
  double pr_hi = -h * h, pr_lo = fma(-h, h, -pr_hi);
  double sm_hi = csum + pr_hi, sm_lo = (csum - sm_hi) + pr_hi;
  csum = sm_hi;
  frac1 += pr_lo;
  frac2 += sm_lo;
  x = csum - 1.0 + (frac1 + frac2);
  h += x / (2.0 * h); /* differential correction */
  return h / scale;
}

/* math.hypot(x, y) (math_hypot + vector_norm; no error is raised, an
 * overflow returns inf). The two CPython variants agree on almost every
 * input; where they do not, Python decides. */
static int py_hypot(double x, double y, double *r) {
  double vec[2] = {fabs(x), fabs(y)};
  double max = 0.0;
  int found_nan = isnan(vec[0]) || isnan(vec[1]);
  for (int i = 0; i < 2; i++)
    if (vec[i] > max) max = vec[i];
  if (isinf(max)) {
    *r = max;
    return 0;
  }
  if (found_nan) {
    *r = NAN;
    return 0;
  }
  if (max == 0.0) {
    *r = max;
    return 0;
  }
  double a = norm_split(vec, max), b = norm_fma(vec, max);
  if (memcmp(&a, &b, sizeof a) != 0) return PF__W_HYPOT;
  *r = a;
  return 0;
}

/* math_pow: IEEE specials decided here, finite ** finite by libm. */
static int py_math_pow(double x, double y, double *out) {
  double r;
  int err = 0;
  if (!isfinite(x) || !isfinite(y)) {
    if (isnan(x))
      r = y == 0. ? 1. : x; /* NaN**0 = 1 */
    else if (isnan(y))
      r = x == 1. ? 1. : y; /* 1**NaN = 1 */
    else if (isinf(x)) {
      int odd_y = isfinite(y) && fmod(fabs(y), 2.0) == 1.0;
      if (y > 0.)
        r = odd_y ? x : fabs(x);
      else if (y == 0.)
        r = 1.;
      else /* y < 0. */
        r = odd_y ? copysign(0., x) : 0.;
    } else { /* isinf(y) */
      if (fabs(x) == 1.0)
        r = 1.;
      else if (y > 0. && fabs(x) > 1.0)
        r = y;
      else if (y < 0. && fabs(x) < 1.0)
        r = -y; /* result is +inf */
      else
        r = 0.;
    }
  } else {
    errno = 0;
    r = pow(x, y);
    err = errno;
    if (!isfinite(r)) {
      if (isnan(r))
        err = EDOM; /* (-ve)**(finite non-integer) */
      else if (isinf(r))
        err = x == 0. ? EDOM : ERANGE;
    }
  }
  if (err != 0 && is_error(r, err))
    return err == EDOM ? PF__W_DOMAIN : PF__W_RANGE;
  *out = r;
  return 0;
}

/* math_fmod_impl. */
static int py_math_fmod(double x, double y, double *out) {
  if (isinf(y) && isfinite(x)) { /* fmod(x, +/-Inf) returns x */
    *out = x;
    return 0;
  }
  errno = 0;
  double r = fmod(x, y);
  int err = errno;
  if (isnan(r)) err = !isnan(x) && !isnan(y) ? EDOM : 0;
  if (err != 0 && is_error(r, err))
    return err == EDOM ? PF__W_DOMAIN : PF__W_RANGE;
  *out = r;
  return 0;
}

int pf__py_math2(int fn, double x, double y, double *r) {
  double v;
  int why;
  switch (fn) {
  case PF__FN_hypot:
    return py_hypot(x, y, r);
  case PF__FN_pow:
    return py_math_pow(x, y, r);
  case PF__FN_fmod:
    return py_math_fmod(x, y, r);
  case PF__FN_atan2:
    errno = 0;
    v = m_atan2(x, y);
    why = math2_check(x, y, v, errno);
    break;
  default: /* copysign */
    errno = 0;
    v = copysign(x, y);
    why = math2_check(x, y, v, errno);
    break;
  }
  if (why == 0) *r = v;
  return why;
}

/* ------------------------------------------------------- NumPy stores */

/* NumPy's npy_doublebits_to_halfbits (halffloat): round half to even from
 * the double directly; NaN keeps the top payload bits (and stays a NaN).
 * Sets *overflow for a finite double that becomes inf (NumPy's overflow
 * flag; underflow is not reported by setitem). */
static uint16_t double_to_half(double x, int *overflow) {
  uint64_t d;
  memcpy(&d, &x, sizeof d);
  uint16_t h_sgn = (uint16_t)((d & 0x8000000000000000ULL) >> 48);
  uint64_t d_exp = d & 0x7ff0000000000000ULL, d_sig;
  *overflow = 0;
  if (d_exp >= 0x40f0000000000000ULL) {
    if (d_exp == 0x7ff0000000000000ULL) {
      d_sig = d & 0x000fffffffffffffULL;
      if (d_sig != 0) {
        uint16_t ret = (uint16_t)(0x7c00u + (d_sig >> 42));
        if (ret == 0x7c00u) ret++;
        return (uint16_t)(h_sgn + ret);
      }
      return (uint16_t)(h_sgn + 0x7c00u);
    }
    *overflow = 1;
    return (uint16_t)(h_sgn + 0x7c00u);
  }
  if (d_exp <= 0x3f00000000000000ULL) {
    if (d_exp < 0x3e60000000000000ULL) return h_sgn;
    d_exp >>= 52;
    d_sig = 0x0010000000000000ULL + (d & 0x000fffffffffffffULL);
    d_sig <<= (d_exp - 998);
    if ((d_sig & 0x003fffffffffffffULL) != 0x0010000000000000ULL)
      d_sig += 0x0010000000000000ULL;
    return (uint16_t)(h_sgn + (uint16_t)(d_sig >> 53));
  }
  uint16_t h_exp = (uint16_t)((d_exp - 0x3f00000000000000ULL) >> 42);
  d_sig = d & 0x000fffffffffffffULL;
  if ((d_sig & 0x000007ffffffffffULL) != 0x0000020000000000ULL)
    d_sig += 0x0000020000000000ULL;
  uint16_t h_sig = (uint16_t)(d_sig >> 42);
  h_sig = (uint16_t)(h_sig + h_exp); /* a carry into the exponent is right */
  if (h_sig == 0x7c00u) *overflow = 1;
  return (uint16_t)(h_sgn + h_sig);
}

/* Python float into float16; finite to inf warns. */
static int store_half(double x, void *dst) {
  int overflow;
  uint16_t h = double_to_half(x, &overflow);
  if (overflow) return PF__W_STORE_OVERFLOW;
  memcpy(dst, &h, sizeof h);
  return 0;
}

static int store_single(double x, float *f) {
  *f = (float)x;
  return isinf(*f) && !isinf(x) ? PF__W_STORE_OVERFLOW : 0;
}

/* A long double with its padding bytes zeroed (x86's 80-bit format in 16
 * bytes), so that outputs do not depend on stack contents. */
static void store_longdouble(long double v, void *dst) {
  unsigned char bytes[sizeof(long double)] = {0};
  memcpy(bytes, &v, LDBL_MANT_DIG == 64 ? 10 : sizeof v);
  memcpy(dst, bytes, sizeof bytes);
}

#define PF__STORE(type, value)                                                \
  do {                                                                        \
    type v_ = (type)(value);                                                  \
    memcpy(dst, &v_, sizeof v_);                                              \
  } while (0)

int pf__py_store_int(pf_dtype dtype, int64_t v, void *dst) {
  /* Integer dtypes: "Python integer out of bounds" (OverflowError). */
#define PF__STORE_RANGE(type, lo, hi)                                         \
  if (v < (lo) || v > (hi)) return PF__W_STORE_RANGE;                         \
  PF__STORE(type, v);                                                         \
  return 0
  switch (dtype) {
  case PF_BOOL:
    PF__STORE(uint8_t, v != 0);
    return 0;
  case PF_INT8:
    PF__STORE_RANGE(int8_t, INT8_MIN, INT8_MAX);
  case PF_INT16:
    PF__STORE_RANGE(int16_t, INT16_MIN, INT16_MAX);
  case PF_INT32:
    PF__STORE_RANGE(int32_t, INT32_MIN, INT32_MAX);
  case PF_INT64:
    PF__STORE(int64_t, v);
    return 0;
  case PF_UINT8:
    PF__STORE_RANGE(uint8_t, 0, UINT8_MAX);
  case PF_UINT16:
    PF__STORE_RANGE(uint16_t, 0, UINT16_MAX);
  case PF_UINT32:
    PF__STORE_RANGE(uint32_t, 0, (int64_t)UINT32_MAX);
  case PF_UINT64:
    PF__STORE_RANGE(uint64_t, 0, INT64_MAX);
  /* Float and complex dtypes take float(int) (a C cast on int64), then
   * narrow it; longdouble converts the int itself (exact on x86's 64-bit
   * mantissa), clongdouble goes through the double. */
  case PF_FLOAT16:
    return store_half((double)v, dst);
  case PF_FLOAT32: {
    float f;
    int why = store_single((double)v, &f);
    if (why == 0) memcpy(dst, &f, sizeof f);
    return why;
  }
  case PF_FLOAT64:
    PF__STORE(double, v);
    return 0;
  case PF_LONGDOUBLE:
    store_longdouble((long double)v, dst);
    return 0;
  default:
    return pf__py_store_float(dtype, (double)v, dst);
  }
#undef PF__STORE_RANGE
}

int pf__py_store_float(pf_dtype dtype, double x, void *dst) {
  /* Integer dtypes: int(x) (ValueError for NaN, OverflowError for inf),
   * then the integer's bounds. */
  if (dtype >= PF_INT8 && dtype <= PF_UINT64) {
    if (isnan(x)) return PF__W_STORE_NAN;
    if (isinf(x)) return PF__W_STORE_RANGE;
    double t = trunc(x);
    if (dtype == PF_UINT64) {
      if (!(t >= 0 && t < 2 * PF__TWO63)) return PF__W_STORE_RANGE;
      PF__STORE(uint64_t, t);
      return 0;
    }
    if (!(t >= -PF__TWO63 && t < PF__TWO63)) return PF__W_STORE_RANGE;
    return pf__py_store_int(dtype, (int64_t)t, dst);
  }
  switch (dtype) {
  case PF_BOOL:
    PF__STORE(uint8_t, x != 0); /* truth: NaN is True */
    return 0;
  case PF_FLOAT16:
    return store_half(x, dst);
  case PF_FLOAT32:
  case PF_COMPLEX64: {
    float f[2] = {0, 0};
    int why = store_single(x, &f[0]);
    if (why == 0) memcpy(dst, f, dtype == PF_FLOAT32 ? sizeof f[0] : sizeof f);
    return why;
  }
  case PF_FLOAT64:
    PF__STORE(double, x);
    return 0;
  case PF_COMPLEX128: {
    double c[2] = {x, 0.0};
    memcpy(dst, c, sizeof c);
    return 0;
  }
  case PF_LONGDOUBLE:
    store_longdouble(x, dst);
    return 0;
  case PF_CLONGDOUBLE:
    store_longdouble(x, dst);
    store_longdouble(0.0L, (char *)dst + sizeof(long double));
    return 0;
  default:
    return PF__W_STORE_RANGE; /* not reached: validated dtypes */
  }
}

int pf__py_store_bool(pf_dtype dtype, int v, void *dst) {
  return pf__py_store_int(dtype, v != 0, dst);
}

/* ------------------------------------------------------------ complex */

/* _Py_c_prod (schoolbook; no contraction: -std=c11). */
static void c_prod(double ar, double ai, double br, double bi, double *rr,
                   double *ri) {
  *rr = ar * br - ai * bi;
  *ri = ar * bi + ai * br;
}

/* _Py_c_quot with its errno (EDOM for a zero divisor). */
static void c_quot_errno(double ar, double ai, double br, double bi,
                         double *rr, double *ri) {
  const double abs_breal = br < 0 ? -br : br;
  const double abs_bimag = bi < 0 ? -bi : bi;
  if (abs_breal >= abs_bimag) {
    if (abs_breal == 0.0) {
      errno = EDOM;
      *rr = *ri = 0.0;
    } else {
      const double ratio = bi / br;
      const double denom = br + bi * ratio;
      *rr = (ar + ai * ratio) / denom;
      *ri = (ai - ar * ratio) / denom;
    }
  } else if (abs_bimag >= abs_breal) {
    const double ratio = br / bi;
    const double denom = br * ratio + bi;
    *rr = (ar * ratio + ai) / denom;
    *ri = (ai * ratio - ar) / denom;
  } else {
    *rr = *ri = NAN; /* Py_NAN */
  }
}

/* c_powu: binary powering, r starting at c_1 (so x**1 is 1 * x, whose
 * zero signs and inf * 0 NaNs differ from x itself). */
static void c_powu(double xr, double xi, long n, double *rr, double *ri) {
  double r_re = 1.0, r_im = 0.0, p_re = xr, p_im = xi;
  long mask = 1;
  while (mask > 0 && n >= mask) {
    if (n & mask) c_prod(r_re, r_im, p_re, p_im, &r_re, &r_im);
    mask <<= 1;
    c_prod(p_re, p_im, p_re, p_im, &p_re, &p_im);
  }
  *rr = r_re;
  *ri = r_im;
}

/* _Py_c_pow. */
static void c_pow(double ar, double ai, double br, double bi, double *rr,
                  double *ri) {
  if (br == 0. && bi == 0.) {
    *rr = 1.;
    *ri = 0.;
  } else if (ar == 0. && ai == 0.) {
    if (bi != 0. || br < 0.) errno = EDOM;
    *rr = 0.;
    *ri = 0.;
  } else {
    double vabs = hypot(ar, ai);
    double len = pow(vabs, br);
    double at = atan2(ai, ar);
    double phase = at * br;
    if (bi != 0.0) {
      len /= exp(at * bi);
      phase += bi * log(vabs);
    }
    *rr = len * cos(phase);
    *ri = len * sin(phase);
  }
}

int pf__py_cpow(double ar, double ai, double br, double bi, double *rr,
                double *ri) {
  double pr, pi;
  errno = 0;
  if (bi == 0.0 && br == floor(br) && fabs(br) <= 100.0) {
    const long n = (long)br;
    if (n > 0) {
      c_powu(ar, ai, n, &pr, &pi);
    } else {
      double qr, qi;
      c_powu(ar, ai, -n, &qr, &qi);
      c_quot_errno(1.0, 0.0, qr, qi, &pr, &pi);
    }
  } else {
    c_pow(ar, ai, br, bi, &pr, &pi);
  }
  int err = errno;
  /* _Py_ADJUST_ERANGE2 */
  if (fabs(pr) == INFINITY || fabs(pi) == INFINITY) {
    if (err == 0) err = ERANGE;
  } else if (err == ERANGE) {
    err = 0;
  }
  if (err == EDOM) return PF__W_CPOW_ZERO;
  if (err != 0) return PF__W_CPOW_RANGE;
  if (pr != pr || pi != pi) return PF__W_NAN_COMPLEX;
  *rr = pr;
  *ri = pi;
  return 0;
}

int pf__py_store_complex(pf_dtype dtype, double re, double im, void *dst) {
  switch (dtype) {
  case PF_COMPLEX128: {
    double c[2] = {re, im};
    memcpy(dst, c, sizeof c);
    return 0;
  }
  case PF_COMPLEX64: {
    float f[2];
    if (store_single(re, &f[0]) != 0 || store_single(im, &f[1]) != 0)
      return PF__W_STORE_OVERFLOW;
    memcpy(dst, f, sizeof f);
    return 0;
  }
  case PF_CLONGDOUBLE:
    store_longdouble(re, dst);
    store_longdouble(im, (char *)dst + sizeof(long double));
    return 0;
  case PF_BOOL:
    PF__STORE(uint8_t, re != 0 || im != 0); /* truth: NaN is True */
    return 0;
  default:
    return PF__W_STORE_COMPLEX;
  }
}
