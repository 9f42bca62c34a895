/*
 * pyvm_lanes.h -- the translated-function VM's operations over lanes: one
 * function per opcode of pyvm_opcodes.h and their table. A template: pyvm.c
 * includes it once per instruction set with PYVM_SUFFIX (base, avx2, avx512)
 * defined and a `#pragma GCC target` around it, so the loops are compiled
 * for each; no include guard.
 *
 * Each function runs one instruction over the lanes of a pyvm_lanes view and
 * returns how many completed (pyvm.h). Three kinds of loop:
 *  - FOR_LANES: pure operations; `omp simd` on dense lanes.
 *  - FIRST_BAD then FOR_LANES: guards that are a cheap test of the operands
 *    (a NaN pair, a zero divisor, an int64 overflow). The test runs first,
 *    read-only and vectorised as an OR reduction (a vector compare and a
 *    mask test); only when it fires is the first bad lane searched for, and
 *    the operation then runs over the lanes below it. Testing first keeps it
 *    right when the destination is also an operand.
 *  - GUARD_LANES: guards decided by the scalar operation itself (libm calls,
 *    CPython's algorithms); the loop stops at the first lane that bails,
 *    since the lanes above it need not finish.
 * No loop keeps a byte per lane: the first bad lane is all a bail needs.
 * Arithmetic is IEEE without contraction: -std=c11 means -ffp-contract=off
 * for GCC (and the pragma below for clang), the targets name no "fma", and
 * only scalar libm is called.
 */
#define PYVM_CAT2(a, b) a##_##b
#define PYVM_CAT(a, b) PYVM_CAT2(a, b)
#define PN(n) PYVM_CAT(n, PYVM_SUFFIX)
#define OPFN(NAME)                                                          \
  static int PN(op_##NAME)(const pyvm_lanes *c, const pyvm_ins *in,         \
                           int *why)

#include "pyvm_lanes_intrin.h"

#define RI(x) (c->ireg + (size_t)(x) * c->L)
#define RF(x) (c->freg + (size_t)(x) * c->L)
#define RB(x) (c->breg + (size_t)(x) * c->L)
/* Real and imaginary parts of complex register x. */
#define RCR(x) (c->creg + (size_t)(x) * 2 * c->L)
#define RCI(x) (c->creg + (size_t)(x) * 2 * c->L + c->L)
/* An I or F destination: its register, or the output (PYVM_TO_OUT). */
#define DI() (c->dst != NULL ? (int64_t *)c->dst : RI(in->dst))
#define DF() (c->dst != NULL ? (double *)c->dst : RF(in->dst))

/* BODY for lane k of the first N lanes. */
#define FOR_LANES(N, BODY)                                                  \
  do {                                                                      \
    const int n_ = (N);                                                     \
    if (c->dense) {                                                         \
      const int lo_ = c->lo;                                                \
      PF__SIMD for (int k = lo_; k < lo_ + n_; k++) { BODY }                \
    } else {                                                                \
      const int32_t *l_ = c->list;                                          \
      /* Lane numbers are distinct: no two iterations touch one lane. */    \
      PF__SIMD for (int j_ = 0; j_ < n_; j_++) {                            \
        const int k = l_[j_];                                               \
        BODY                                                                \
      }                                                                     \
    }                                                                       \
  } while (0)

/* N = the position of the first lane whose COND holds (its why: W), else
 * c->cnt. */
#define FIRST_BAD(N, COND, W)                                               \
  do {                                                                      \
    int64_t any_ = 0;                                                       \
    N = c->cnt;                                                             \
    if (c->dense) {                                                         \
      const int lo_ = c->lo, hi_ = c->lo + c->cnt;                          \
      _Pragma("omp simd reduction(|:any_)")                                 \
      for (int k = lo_; k < hi_; k++) any_ |= (COND) ? 1 : 0;               \
    } else {                                                                \
      for (int j_ = 0; j_ < c->cnt; j_++) {                                 \
        const int k = c->list[j_];                                          \
        any_ |= (COND) ? 1 : 0;                                             \
      }                                                                     \
    }                                                                       \
    for (int j_ = 0; any_ && j_ < c->cnt; j_++) {                           \
      const int k = c->dense ? c->lo + j_ : c->list[j_];                    \
      if (COND) {                                                           \
        N = j_;                                                             \
        *why = (W);                                                         \
        break;                                                              \
      }                                                                     \
    }                                                                       \
  } while (0)

/* BODY sets `w` (0: fine) for lane k; returns at the first bad lane. */
#define GUARD_LANES(BODY)                                                   \
  do {                                                                      \
    const int n_ = c->cnt;                                                  \
    for (int j_ = 0; j_ < n_; j_++) {                                       \
      const int k = c->dense ? c->lo + j_ : c->list[j_];                    \
      int w = 0;                                                            \
      BODY;                                                                 \
      if (w != 0) {                                                         \
        *why = w;                                                           \
        return j_;                                                          \
      }                                                                     \
    }                                                                       \
    return n_;                                                              \
  } while (0)

/* ------------------------------------------------------- pure families */

#define PURE(NAME, DT, DST, AT, A, EXPR)                                    \
  OPFN(NAME) {                                                              \
    DT *d = DST;                                                            \
    const AT *x = A(in->a);                                                 \
    (void)x;                                                                \
    FOR_LANES(c->cnt, d[k] = EXPR;);                                        \
    return c->cnt;                                                          \
  }
#define PURE2(NAME, DT, DST, AT, A, BT, B, EXPR)                            \
  OPFN(NAME) {                                                              \
    DT *d = DST;                                                            \
    const AT *x = A(in->a);                                                 \
    const BT *y = B(in->b);                                                 \
    FOR_LANES(c->cnt, d[k] = EXPR;);                                        \
    return c->cnt;                                                          \
  }
#define SELECT(NAME, T, DST, R)                                             \
  OPFN(NAME) {                                                              \
    T *d = DST;                                                             \
    const uint8_t *s = RB(in->a);                                           \
    const T *x = R(in->b), *y = R(in->c);                                   \
    FOR_LANES(c->cnt, d[k] = s[k] ? x[k] : y[k];);                          \
    return c->cnt;                                                          \
  }

OPFN(I_CONST) {
  int64_t *d = DI();
  const int64_t v = c->p->iconsts[in->a];
  FOR_LANES(c->cnt, d[k] = v;);
  return c->cnt;
}
OPFN(F_CONST) {
  double *d = DF();
  const double v = c->p->fconsts[in->a];
  FOR_LANES(c->cnt, d[k] = v;);
  return c->cnt;
}
OPFN(B_CONST) {
  uint8_t *d = RB(in->dst);
  const uint8_t v = (uint8_t)in->a;
  FOR_LANES(c->cnt, d[k] = v;);
  return c->cnt;
}
PURE(I_MOV, int64_t, DI(), int64_t, RI, x[k])
PURE(F_MOV, double, DF(), double, RF, x[k])
PURE(B_MOV, uint8_t, RB(in->dst), uint8_t, RB, x[k])
PURE(I_INVERT, int64_t, DI(), int64_t, RI, ~x[k])
PURE2(I_AND, int64_t, DI(), int64_t, RI, int64_t, RI, x[k] & y[k])
PURE2(I_OR, int64_t, DI(), int64_t, RI, int64_t, RI, x[k] | y[k])
PURE2(I_XOR, int64_t, DI(), int64_t, RI, int64_t, RI, x[k] ^ y[k])
PURE2(F_SUB, double, DF(), double, RF, double, RF, x[k] - y[k])
PURE(F_NEG, double, DF(), double, RF, -x[k])
PURE(F_ABS, double, DF(), double, RF, fabs(x[k]))
PURE(I2F, double, DF(), int64_t, RI, (double)x[k])
PURE(B2I, int64_t, DI(), uint8_t, RB, (int64_t)x[k])
PURE(B2F, double, DF(), uint8_t, RB, (double)x[k])
PURE(I_TRUTH, uint8_t, RB(in->dst), int64_t, RI, x[k] != 0)
PURE(F_TRUTH, uint8_t, RB(in->dst), double, RF, x[k] != 0.0) /* NaN: True */
PURE(F_ISNAN, uint8_t, RB(in->dst), double, RF, x[k] != x[k])
PURE(F_ISINF, uint8_t, RB(in->dst), double, RF, fabs(x[k]) == INFINITY)
PURE(F_ISFINITE, uint8_t, RB(in->dst), double, RF, fabs(x[k]) < INFINITY)
PURE(B_NOT, uint8_t, RB(in->dst), uint8_t, RB, !x[k])
PURE2(B_AND, uint8_t, RB(in->dst), uint8_t, RB, uint8_t, RB, x[k] & y[k])
PURE2(B_OR, uint8_t, RB(in->dst), uint8_t, RB, uint8_t, RB, x[k] | y[k])
PURE2(B_XOR, uint8_t, RB(in->dst), uint8_t, RB, uint8_t, RB, x[k] ^ y[k])
SELECT(I_SELECT, int64_t, DI(), RI)
SELECT(F_SELECT, double, DF(), RF)
SELECT(B_SELECT, uint8_t, RB(in->dst), RB)

/* Comparisons of one file: pyvm_lanes_intrin.h's loop when dense, where
 * there is one (CMP_DENSE: 1 when it ran). */
#define CMP(NAME, T, R, OP, W)                                              \
  OPFN(NAME) {                                                              \
    uint8_t *d = RB(in->dst);                                               \
    const T *x = R(in->a), *y = R(in->b);                                   \
    if (c->dense && CMP_DENSE(T, W)) return c->cnt;                         \
    FOR_LANES(c->cnt, d[k] = x[k] OP y[k];);                                \
    return c->cnt;                                                          \
  }
#define CMP6(P, T, R)                                                       \
  CMP(P##_LT, T, R, <, LT) CMP(P##_LE, T, R, <=, LE)                        \
  CMP(P##_EQ, T, R, ==, EQ) CMP(P##_NE, T, R, !=, NE)                       \
  CMP(P##_GT, T, R, >, GT) CMP(P##_GE, T, R, >=, GE)
CMP6(I, int64_t, RI)
CMP6(F, double, RF)
#undef CMP
/* int vs float: S = the sign of (int - float), 2 when the float is NaN. */
#define S_IF pf__py_cmp_if(x[k], y[k])
#define S_FI (-pf__py_cmp_if(y[k], x[k]))
#define CMP6IF(P, AT, A, BT, B, S)                                          \
  PURE2(P##_LT, uint8_t, RB(in->dst), AT, A, BT, B, S == -1)                \
  PURE2(P##_LE, uint8_t, RB(in->dst), AT, A, BT, B, S == -1 || S == 0)      \
  PURE2(P##_EQ, uint8_t, RB(in->dst), AT, A, BT, B, S == 0)                 \
  PURE2(P##_NE, uint8_t, RB(in->dst), AT, A, BT, B, S != 0)                 \
  PURE2(P##_GT, uint8_t, RB(in->dst), AT, A, BT, B, S == 1)                 \
  PURE2(P##_GE, uint8_t, RB(in->dst), AT, A, BT, B, S == 1 || S == 0)
CMP6IF(IF, int64_t, RI, double, RF, S_IF)
CMP6IF(FI, double, RF, int64_t, RI, S_FI)

/* ----------------------------------------------------- checked families */

/* Wrapping sums and their int64 overflow, branch-free (vectorises). */
#define WRAP_ADD(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define WRAP_SUB(a, b) ((int64_t)((uint64_t)(a) - (uint64_t)(b)))
#define WRAP_MUL(a, b) ((int64_t)((uint64_t)(a) * (uint64_t)(b)))
/* One pass that computes every lane and ORs the guard in, then (rarely)
 * the search for the first bad lane -- whose result and those past it are
 * not needed -- when the destination is not an operand (the guard is then
 * still readable); two passes (FIRST_BAD, then compute) when it is. */
#define CHECKED2(NAME, DT, DST, T, R, COND, W, EXPR)                        \
  OPFN(NAME) {                                                              \
    DT *d = DST;                                                            \
    const T *x = R(in->a), *y = R(in->b);                                   \
    int n;                                                                  \
    if ((void *)d != (void *)x && (void *)d != (void *)y) {                 \
      int64_t bad_ = 0;                                                     \
      if (c->dense) {                                                       \
        const int lo_ = c->lo, hi_ = c->lo + c->cnt;                        \
        _Pragma("omp simd reduction(|:bad_)")                               \
        for (int k = lo_; k < hi_; k++) {                                   \
          bad_ |= (COND) ? 1 : 0;                                           \
          d[k] = EXPR;                                                      \
        }                                                                   \
        if (!bad_) return c->cnt;                                           \
      }                                                                     \
      FIRST_BAD(n, COND, W);                                                \
      if (!c->dense) FOR_LANES(n, d[k] = EXPR;);                            \
      return n;                                                             \
    }                                                                       \
    FIRST_BAD(n, COND, W);                                                  \
    FOR_LANES(n, d[k] = EXPR;);                                             \
    return n;                                                               \
  }
#define CHECKED1(NAME, T, DST, R, COND, W, EXPR)                            \
  OPFN(NAME) {                                                              \
    T *d = DST;                                                             \
    const T *x = R(in->a);                                                  \
    int n;                                                                  \
    FIRST_BAD(n, COND, W);                                                  \
    FOR_LANES(n, d[k] = EXPR;);                                             \
    return n;                                                               \
  }
CHECKED2(I_ADD, int64_t, DI(), int64_t, RI,
         ((x[k] ^ WRAP_ADD(x[k], y[k])) & (y[k] ^ WRAP_ADD(x[k], y[k]))) < 0,
         PF__W_INT_OVERFLOW, WRAP_ADD(x[k], y[k]))
CHECKED2(I_SUB, int64_t, DI(), int64_t, RI,
         ((x[k] ^ y[k]) & (x[k] ^ WRAP_SUB(x[k], y[k]))) < 0,
         PF__W_INT_OVERFLOW, WRAP_SUB(x[k], y[k]))
CHECKED1(I_NEG, int64_t, DI(), RI, x[k] == INT64_MIN, PF__W_INT_OVERFLOW,
         WRAP_SUB(0, x[k]))
CHECKED1(I_ABS, int64_t, DI(), RI, x[k] == INT64_MIN, PF__W_INT_OVERFLOW,
         x[k] < 0 ? WRAP_SUB(0, x[k]) : x[k])
/* Two NaN operands: which one's sign and payload CPython returns depends on
 * how the operation was compiled -- float_add gives b's, the specialised
 * BINARY_OP_ADD_FLOAT a's (3.11-3.13, measured) -- so Python decides. */
CHECKED2(F_ADD, double, DF(), double, RF, x[k] != x[k] && y[k] != y[k],
         PF__W_NAN_PAIR, x[k] + y[k])
CHECKED2(F_MUL, double, DF(), double, RF, x[k] != x[k] && y[k] != y[k],
         PF__W_NAN_PAIR, x[k] * y[k])
/* Division by zero would give inf/NaN here (no trap): the lane bails. */
CHECKED2(F_DIV, double, DF(), double, RF, y[k] == 0.0, PF__W_FZERO_DIV,
         x[k] / y[k])

/* ------------------------------------------------------ scalar families */

#define SCALAR2(NAME, DT, DST, AT, A, FN)                                   \
  OPFN(NAME) {                                                              \
    DT *d = DST;                                                            \
    const AT *x = A(in->a), *y = A(in->b);                                  \
    GUARD_LANES(w = FN(x[k], y[k], &d[k]));                                 \
  }
#define SCALAR1(NAME, DT, DST, AT, A, FN)                                   \
  OPFN(NAME) {                                                              \
    DT *d = DST;                                                            \
    const AT *x = A(in->a);                                                 \
    GUARD_LANES(w = FN(x[k], &d[k]));                                       \
  }
/* NAME over two int registers: EXPR for every lane as vectors, unless
 * SLOW holds for some lane; then FN per lane, in order, with its guards. */
#define VECTOR_UNLESS(NAME, SLOW, EXPR, FN)                                 \
  OPFN(NAME) {                                                              \
    int64_t *d = DI();                                                      \
    const int64_t *x = RI(in->a), *y = RI(in->b);                           \
    int n;                                                                  \
    FIRST_BAD(n, SLOW, 0);                                                  \
    if (n == c->cnt) {                                                      \
      FOR_LANES(c->cnt, d[k] = EXPR;);                                      \
      return c->cnt;                                                        \
    }                                                                       \
    GUARD_LANES(w = FN(x[k], y[k], &d[k]));                                 \
  }
/* int * int: when every lane's operands lie in [-2**31, 2**31) no product
 * leaves int64 (|x * y| <= 2**62). */
#define INT32_RANGE(v) ((uint64_t)(v) + UINT64_C(0x80000000) < UINT64_C(0x100000000))
VECTOR_UNLESS(I_MUL, !(INT32_RANGE(x[k]) & INT32_RANGE(y[k])),
              WRAP_MUL(x[k], y[k]), pf__py_imul)
/* // and % by positive powers of two (n % 2, i // 4), when every lane's
 * divisor is one: an arithmetic shift and a mask are Python's floor
 * division and modulo for every dividend (two's complement floors; GCC and
 * clang shift negative values arithmetically); other divisors take the
 * scalar algorithm with its guards. NOT_POW2 is unsigned: INT64_MIN - 1. */
#define NOT_POW2(v) (((v) <= 0) | (((uint64_t)(v) & ((uint64_t)(v) - 1)) != 0))
VECTOR_UNLESS(I_FLOORDIV, NOT_POW2(y[k]),
              x[k] >> (63 - __builtin_clzll((uint64_t)y[k])), pf__py_ifloordiv)
VECTOR_UNLESS(I_MOD, NOT_POW2(y[k]), x[k] & (y[k] - 1), pf__py_imod)
SCALAR2(I_POW, int64_t, DI(), int64_t, RI, pf__py_ipow)
SCALAR2(I_RSHIFT, int64_t, DI(), int64_t, RI, pf__py_irshift)
SCALAR2(I_LSHIFT, int64_t, DI(), int64_t, RI, pf__py_ilshift)
SCALAR2(I_TRUEDIV, double, DF(), int64_t, RI, pf__py_itruediv)
SCALAR2(F_FLOORDIV, double, DF(), double, RF, pf__py_ffloordiv)
SCALAR2(F_MOD, double, DF(), double, RF, pf__py_fmod)
SCALAR2(F_POW, double, DF(), double, RF, pf__py_fpow)
SCALAR1(F2I_TRUNC, int64_t, DI(), double, RF, pf__py_ftrunc)
SCALAR1(F_FLOOR_I, int64_t, DI(), double, RF, pf__py_ffloor)
SCALAR1(F_CEIL_I, int64_t, DI(), double, RF, pf__py_fceil)
SCALAR1(F_ROUND_I, int64_t, DI(), double, RF, pf__py_fround)

/* ----------------------------------------------------------------- math */

/* One loop per function, calling libm directly (CPython's wrappers of these
 * differ from libm only in the errno they set for results math_1 rejects
 * anyway: m_log, m_log2, m_log10, and m_log1p's signed zero, which glibc's
 * log1p keeps), with math_1's rule (pf__py_math1_check); errno through its
 * per-thread address.
 *
 * First a loop of bare calls, since libm sets errno only on an error and
 * never clears it: errno cleared once, and per lane only the NaN and
 * infinity tests of math_1, without a branch. Any lane that fails them, or
 * errno set after the loop (an underflow too), and the lanes run again
 * through math_1's whole rule, in order, which finds the first bailing
 * lane (the results are the same for the others). Not when the result
 * overwrites the argument: the second loop needs it. */
#define CALL1(NAME, EXPR)                                                   \
  static int PN(call_##NAME)(const pyvm_lanes *c, const pyvm_ins *in,       \
                             int *why) {                                    \
    double *d = DF();                                                       \
    const double *x = RF(in->a);                                            \
    int *const errp = &errno;                                               \
    if (d != x) {                                                           \
      *errp = 0;                                                            \
      for (int j_ = 0; j_ < c->cnt; j_++) {                                 \
        const int k = c->dense ? c->lo + j_ : c->list[j_];                  \
        const double xk = x[k];                                             \
        d[k] = EXPR;                                                        \
      }                                                                     \
      if (*errp == 0) {                                                     \
        int bad;                                                            \
        FIRST_BAD(bad, ((d[k] != d[k]) & (x[k] == x[k])) |                  \
                           ((fabs(d[k]) == INFINITY) & (fabs(x[k]) < INFINITY)), \
                  0);                                                       \
        if (bad == c->cnt) return c->cnt;                                   \
      }                                                                     \
    }                                                                       \
    GUARD_LANES({                                                           \
      const double xk = x[k];                                               \
      *errp = 0;                                                            \
      const double rk = EXPR;                                               \
      w = pf__py_math1_check(xk, rk, *errp);                                \
      if (w == 0) d[k] = rk;                                                \
    });                                                                     \
  }
CALL1(sin, sin(xk))
CALL1(cos, cos(xk))
CALL1(tan, tan(xk))
CALL1(asin, asin(xk))
CALL1(acos, acos(xk))
CALL1(atan, atan(xk))
CALL1(sinh, sinh(xk))
CALL1(cosh, cosh(xk))
CALL1(tanh, tanh(xk))
CALL1(asinh, asinh(xk))
CALL1(acosh, acosh(xk))
CALL1(atanh, atanh(xk))
CALL1(exp, exp(xk))
CALL1(exp2, exp2(xk))
CALL1(expm1, expm1(xk))
/* m_log, m_log2, m_log10 return a NaN argument itself. */
CALL1(log, xk != xk ? xk : log(xk))
CALL1(log2, xk != xk ? xk : log2(xk))
CALL1(log10, xk != xk ? xk : log10(xk))
CALL1(log1p, log1p(xk))
CALL1(cbrt, cbrt(xk))
/* math.sqrt: a NaN from a non-NaN argument is exactly x < 0 (sqrt(-0.0) is
 * -0.0); otherwise the correctly rounded IEEE square root, in vector form
 * (the libm call differs only by setting errno for x < 0, which is why GCC
 * will not vectorise it without -fno-math-errno). */
static int PN(call_sqrt)(const pyvm_lanes *c, const pyvm_ins *in, int *why) {
  double *d = DF();
  const double *x = RF(in->a);
  int n;
  FIRST_BAD(n, x[k] < 0.0, PF__W_DOMAIN);
  if (c->dense) {
    PN(sqrt_dense)(d + c->lo, x + c->lo, n);
  } else {
    for (int j = 0; j < n; j++) d[c->list[j]] = pyvm_sqrt1(x[c->list[j]]);
  }
  return n;
}
static int PN(call_fabs)(const pyvm_lanes *c, const pyvm_ins *in, int *why) {
  double *d = DF();
  const double *x = RF(in->a);
  FOR_LANES(c->cnt, d[k] = fabs(x[k]););
  return c->cnt;
}

OPFN(F_CALL1) {
  switch ((pf__pyvm_fn)in->b) {
#define PYVM_CASE(NAME, ARITY) PYVM_CASE_##ARITY(NAME)
#define PYVM_CASE_1(NAME)                                                   \
  case PF__FN_##NAME:                                                       \
    return PN(call_##NAME)(c, in, why);
#define PYVM_CASE_2(NAME)
    PF_PYVM_FUNCTIONS(PYVM_CASE)
#undef PYVM_CASE
#undef PYVM_CASE_1
#undef PYVM_CASE_2
  default:
    break;
  }
  assert(!"validation: F_CALL1 of a one-argument function");
  return 0;
}

OPFN(F_CALL2) {
  double *d = DF();
  const double *x = RF(in->a), *y = RF(in->b);
  const int fn = in->c;
  GUARD_LANES(w = pf__py_math2(fn, x[k], y[k], &d[k]));
}

/* -------------------------------------------------------------- complex */

/* dst parts (dr, di) from operand parts; each lane reads its operands
 * before it writes, so dst may be an operand. */
#define CPURE2(NAME, EXPR_RE, EXPR_IM)                                      \
  OPFN(NAME) {                                                              \
    double *dr = RCR(in->dst), *di = RCI(in->dst);                          \
    const double *xr = RCR(in->a), *xi = RCI(in->a);                        \
    const double *yr = RCR(in->b), *yi = RCI(in->b);                        \
    (void)yr;                                                               \
    (void)yi;                                                               \
    FOR_LANES(c->cnt, {                                                     \
      const double r_ = EXPR_RE;                                            \
      const double i_ = EXPR_IM;                                            \
      dr[k] = r_;                                                           \
      di[k] = i_;                                                           \
    });                                                                     \
    return c->cnt;                                                          \
  }
/* A unary op: b is not an operand (the pointers above are not read). */
#define CPURE1(NAME, EXPR_RE, EXPR_IM) CPURE2(NAME, EXPR_RE, EXPR_IM)

OPFN(C_CONST) {
  double *dr = RCR(in->dst), *di = RCI(in->dst);
  const double re = c->p->fconsts[in->a], im = c->p->fconsts[in->a + 1];
  FOR_LANES(c->cnt, {
    dr[k] = re;
    di[k] = im;
  });
  return c->cnt;
}
CPURE1(C_MOV, xr[k], xi[k])
CPURE1(C_NEG, -xr[k], -xi[k])
CPURE1(C_CONJ, xr[k], -xi[k])
/* _Py_c_diff: a subtraction keeps its operand order, so the NaN it returns
 * for two NaNs is the first operand's in CPython and here alike. */
CPURE2(C_SUB, xr[k] - yr[k], xi[k] - yi[k])

/* A real register as a complex one, imaginary part 0. */
#define TO_COMPLEX(NAME, T, R)                                              \
  OPFN(NAME) {                                                              \
    double *dr = RCR(in->dst), *di = RCI(in->dst);                          \
    const T *x = R(in->a);                                                  \
    FOR_LANES(c->cnt, {                                                     \
      dr[k] = (double)x[k];                                                 \
      di[k] = 0.0;                                                          \
    });                                                                     \
    return c->cnt;                                                          \
  }
TO_COMPLEX(I2C, int64_t, RI)
TO_COMPLEX(F2C, double, RF)
TO_COMPLEX(B2C, uint8_t, RB)
#undef TO_COMPLEX
OPFN(C_MAKE) {
  double *dr = RCR(in->dst), *di = RCI(in->dst);
  const double *x = RF(in->a), *y = RF(in->b);
  FOR_LANES(c->cnt, {
    const double r_ = x[k];
    const double i_ = y[k];
    dr[k] = r_;
    di[k] = i_;
  });
  return c->cnt;
}
OPFN(C_REAL) {
  double *d = DF();
  const double *x = RCR(in->a);
  FOR_LANES(c->cnt, d[k] = x[k];);
  return c->cnt;
}
OPFN(C_IMAG) {
  double *d = DF();
  const double *x = RCI(in->a);
  FOR_LANES(c->cnt, d[k] = x[k];);
  return c->cnt;
}
OPFN(C_EQ) {
  uint8_t *d = RB(in->dst);
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  const double *yr = RCR(in->b), *yi = RCI(in->b);
  FOR_LANES(c->cnt, d[k] = (xr[k] == yr[k]) & (xi[k] == yi[k]););
  return c->cnt;
}
OPFN(C_NE) {
  uint8_t *d = RB(in->dst);
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  const double *yr = RCR(in->b), *yi = RCI(in->b);
  FOR_LANES(c->cnt, d[k] = !((xr[k] == yr[k]) & (xi[k] == yi[k])););
  return c->cnt;
}
OPFN(C_TRUTH) {
  uint8_t *d = RB(in->dst);
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  FOR_LANES(c->cnt, d[k] = (xr[k] != 0.0) | (xi[k] != 0.0);); /* NaN: True */
  return c->cnt;
}

/* NAME: dst = RE + IM j over every lane (both read lane k of xr, xi, yr,
 * yi, and of zr, zi for a third operand); if FLAG (which may also read the
 * lane's parts r_ and i_) held for any lane, the first lane with a NaN part
 * bails with WHY. The lanes past it need not finish, so computing them
 * first is harmless. */
#define CBIN_NAN_BAILS(NAME, RE, IM, FLAG, WHY, DENSE)                      \
  OPFN(NAME) {                                                              \
    double *dr = RCR(in->dst), *di = RCI(in->dst);                          \
    const double *xr = RCR(in->a), *xi = RCI(in->a);                        \
    const double *yr = RCR(in->b), *yi = RCI(in->b);                        \
    const double *zr = RCR(in->c), *zi = RCI(in->c);                        \
    (void)zr, (void)zi; /* read by C_MULADD only */                         \
    int64_t any = 0;                                                        \
    if (c->dense) {                                                         \
      const int lo = c->lo, hi = c->lo + c->cnt;                            \
      any = DENSE; /* -1: no intrinsic loop (pyvm_lanes_intrin.h) */        \
      if (any < 0) {                                                        \
        any = 0;                                                            \
        _Pragma("omp simd reduction(|:any)")                                \
        for (int k = lo; k < hi; k++) { CBIN_LANE(RE, IM, FLAG) }           \
      }                                                                     \
    } else {                                                                \
      _Pragma("omp simd reduction(|:any)")                                  \
      for (int j = 0; j < c->cnt; j++) {                                    \
        const int k = c->list[j];                                           \
        CBIN_LANE(RE, IM, FLAG)                                             \
      }                                                                     \
    }                                                                       \
    for (int j = 0; any && j < c->cnt; j++) {                               \
      const int k = c->dense ? c->lo + j : c->list[j];                      \
      if (dr[k] != dr[k] || di[k] != di[k]) {                               \
        *why = (WHY);                                                       \
        return j;                                                           \
      }                                                                     \
    }                                                                       \
    return c->cnt;                                                          \
  }
/* Everything read before the stores: dst may be an operand. */
#define CBIN_LANE(RE, IM, FLAG)                                             \
  const double r_ = (RE);                                                   \
  const double i_ = (IM);                                                   \
  const int flag_ = (FLAG);                                                 \
  dr[k] = r_;                                                               \
  di[k] = i_;                                                               \
  any |= flag_;

/* _Py_c_sum: the addition may commute, so a NaN pair bails (F_ADD); if
 * there is one, the first lane with a NaN part bails (a pair gives a NaN,
 * so that lane is at or before it; bailing on a lone NaN as well is
 * allowed -- Python redoes it exactly). */
CBIN_NAN_BAILS(C_ADD, xr[k] + yr[k], xi[k] + yi[k],
               ((xr[k] != xr[k]) & (yr[k] != yr[k])) |
                   ((xi[k] != xi[k]) & (yi[k] != yi[k])),
               PF__W_NAN_PAIR, -1)

/* _Py_c_prod; any NaN part bails (pyvm_ops.h: which NaN an IEEE product or
 * sum of two NaNs gives depends on the compiler). */
#define PROD_RE (xr[k] * yr[k] - xi[k] * yi[k])
#define PROD_IM (xr[k] * yi[k] + xi[k] * yr[k])
CBIN_NAN_BAILS(C_MUL, PROD_RE, PROD_IM, (r_ != r_) | (i_ != i_),
               PF__W_NAN_COMPLEX, -1)
/* C_MUL then C_ADD of its product (pyvm_prog.c fuses them): the product's
 * NaN bails as C_MUL's; a product without one makes no NaN pair with c,
 * so C_ADD's bail cannot fire (a NaN the sum alone has may bail, as in
 * C_ADD). The same values: the same two roundings per part. */
#if PYVM_LEVEL == 2
#define CMULADD_DENSE PN(cmuladd_dense)(dr, di, xr, xi, yr, yi, zr, zi, lo, hi)
#else
#define CMULADD_DENSE -1
#endif
CBIN_NAN_BAILS(C_MULADD, PROD_RE + zr[k], PROD_IM + zi[k],
               (PROD_RE != PROD_RE) | (PROD_IM != PROD_IM), PF__W_NAN_COMPLEX,
               CMULADD_DENSE)
#undef CMULADD_DENSE
#undef PROD_RE
#undef PROD_IM
#undef CBIN_NAN_BAILS
#undef CBIN_LANE

OPFN(C_DIV) {
  double *dr = RCR(in->dst), *di = RCI(in->dst);
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  const double *yr = RCR(in->b), *yi = RCI(in->b);
  GUARD_LANES(w = pf__py_cquot(xr[k], xi[k], yr[k], yi[k], &dr[k], &di[k]));
}

OPFN(C_POW) {
  double *dr = RCR(in->dst), *di = RCI(in->dst);
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  const double *yr = RCR(in->b), *yi = RCI(in->b);
  GUARD_LANES(w = pf__py_cpow(xr[k], xi[k], yr[k], yi[k], &dr[k], &di[k]));
}

OPFN(C_ABS) {
  double *d = DF();
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  GUARD_LANES(w = pf__py_cabs(xr[k], xi[k], &d[k]));
}

/* abs(z) OP x: decided from re*re + im*im where that is certain
 * (pf__py_cabs_sign, vectorised), the exact abs for the other lanes in list
 * order (its bail is C_ABS's). SIGN_TRUE: the result when |z| > x. */
#define CABS_SIGN_LANE(SIGN_TRUE)                                           \
  const int s_ = pf__py_cabs_sign(xr[k], xi[k], y[k]);                      \
  d[k] = (uint8_t)((s_ > 0) == (SIGN_TRUE));                                \
  und |= s_ == 0;
#if PYVM_LEVEL >= 1
#define CABS_SIGN_DENSE(SIGN_TRUE)                                          \
  und = PN(cabs_sign_dense)(d, xr, xi, y, c->lo, c->lo + c->cnt, SIGN_TRUE)
#else
#define CABS_SIGN_DENSE(SIGN_TRUE)                                          \
  _Pragma("omp simd reduction(|:und)")                                      \
  for (int k = c->lo; k < c->lo + c->cnt; k++) { CABS_SIGN_LANE(SIGN_TRUE) }
#endif
#define CABS_CMP(NAME, SIGN_TRUE, CMP)                                      \
  OPFN(NAME) {                                                              \
    uint8_t *d = RB(in->dst);                                               \
    const double *xr = RCR(in->a), *xi = RCI(in->a), *y = RF(in->b);        \
    int und = 0;                                                            \
    if (c->dense) {                                                         \
      CABS_SIGN_DENSE(SIGN_TRUE);                                           \
    } else {                                                                \
      _Pragma("omp simd reduction(|:und)")                                  \
      for (int j = 0; j < c->cnt; j++) {                                    \
        const int k = c->list[j];                                           \
        CABS_SIGN_LANE(SIGN_TRUE)                                           \
      }                                                                     \
    }                                                                       \
    for (int j = 0; und && j < c->cnt; j++) {                               \
      const int k = c->dense ? c->lo + j : c->list[j];                      \
      if (pf__py_cabs_sign(xr[k], xi[k], y[k]) != 0) continue;              \
      double h;                                                             \
      const int w = pf__py_cabs(xr[k], xi[k], &h);                          \
      if (w != 0) {                                                         \
        *why = w;                                                           \
        return j;                                                           \
      }                                                                     \
      d[k] = h CMP y[k];                                                    \
    }                                                                       \
    return c->cnt;                                                          \
  }
CABS_CMP(C_ABS_LT_F, 0, <)
CABS_CMP(C_ABS_LE_F, 0, <=)
CABS_CMP(C_ABS_GT_F, 1, >)
CABS_CMP(C_ABS_GE_F, 1, >=)

/* -------------------------------------------------------------- control */

OPFN(JMP) {
  pyvm_lanes_send(c, c->cnt, in->a);
  return c->cnt;
}

OPFN(BR) {
  const uint8_t *s = RB(in->a);
  uint64_t *mt = c->masks + (size_t)in->b * (size_t)c->words;
  uint64_t *mf = c->masks + (size_t)in->c * (size_t)c->words;
  int nt = 0;
  FOR_LANES(c->cnt, {
    const uint64_t bit = UINT64_C(1) << (k & 63);
    const uint64_t t = s[k] ? ~UINT64_C(0) : 0;
    mt[k >> 6] |= bit & t;
    mf[k >> 6] |= bit & ~t;
    nt += s[k] != 0;
  });
  if (nt > 0) c->busy[in->b >> 6] |= UINT64_C(1) << (in->b & 63);
  if (nt < c->cnt) c->busy[in->c >> 6] |= UINT64_C(1) << (in->c & 63);
  return c->cnt;
}

/* RET_*: identity stores are plain copies (vectorised); float32 checks the
 * overflow NumPy warns about first; the rest is pyvm_ops.c's setitem, also
 * every store of lanes that moved (OUT_OF: their element's place). */
#define OUT_OF(k) (out + (size_t)(c->slot != NULL ? c->slot[k] : (k)) * isz)
OPFN(RET_F) {
  if (c->ret_done) return c->cnt;
  const double *x = RF(in->a);
  char *out = c->out;
  if (c->dtype == PF_FLOAT64 && c->slot == NULL) {
    FOR_LANES(c->cnt, memcpy(out + (size_t)k * 8, &x[k], 8););
    return c->cnt;
  }
  if (c->dtype == PF_FLOAT32 && c->slot == NULL) {
    int n;
    FIRST_BAD(n, fabsf((float)x[k]) == INFINITY && fabs(x[k]) != INFINITY,
              PF__W_STORE_OVERFLOW);
    FOR_LANES(n, {
      const float f = (float)x[k];
      memcpy(out + (size_t)k * 4, &f, 4);
    });
    return n;
  }
  const pf_dtype dt = c->dtype;
  const size_t isz = c->isz;
  GUARD_LANES(w = pf__py_store_float(dt, x[k], OUT_OF(k)));
}

OPFN(RET_I) {
  if (c->ret_done) return c->cnt;
  const int64_t *x = RI(in->a);
  char *out = c->out;
  if (c->dtype == PF_INT64 && c->slot == NULL) {
    FOR_LANES(c->cnt, memcpy(out + (size_t)k * 8, &x[k], 8););
    return c->cnt;
  }
  const pf_dtype dt = c->dtype;
  const size_t isz = c->isz;
  GUARD_LANES(w = pf__py_store_int(dt, x[k], OUT_OF(k)));
}

OPFN(RET_B) {
  const uint8_t *x = RB(in->a);
  char *out = c->out;
  const pf_dtype dt = c->dtype;
  const size_t isz = c->isz;
  GUARD_LANES(w = pf__py_store_bool(dt, x[k], OUT_OF(k)));
}

OPFN(RET_C) {
  const double *xr = RCR(in->a), *xi = RCI(in->a);
  char *out = c->out;
  if (c->dtype == PF_COMPLEX128 && c->slot == NULL) {
    FOR_LANES(c->cnt, {
      memcpy(out + (size_t)k * 16, &xr[k], 8);
      memcpy(out + (size_t)k * 16 + 8, &xi[k], 8);
    });
    return c->cnt;
  }
  const pf_dtype dt = c->dtype;
  const size_t isz = c->isz;
  GUARD_LANES(w = pf__py_store_complex(dt, xr[k], xi[k], OUT_OF(k)));
}

OPFN(BAIL) {
  (void)in;
  *why = PF__W_BAIL;
  return 0;
}

/* The table, in the opcode table's order: a missing function is a compile
 * error. */
const pyvm_op_fn PN(pf__pyvm_ops)[PF__OP_COUNT] = {
#define PYVM_ENTRY(name, sig, doc) [PF__OP_##name] = PN(op_##name),
    PF_PYVM_OPCODES(PYVM_ENTRY)
#undef PYVM_ENTRY
};

#undef PYVM_CAT2
#undef PYVM_CAT
#undef PN
#undef OPFN
#undef RI
#undef RF
#undef RB
#undef RCR
#undef RCI
#undef CPURE1
#undef CPURE2
#undef CABS_CMP
#undef CABS_SIGN_DENSE
#undef CABS_SIGN_LANE
#undef VECTOR_UNLESS
#undef NOT_POW2
#undef OUT_OF
#undef DI
#undef DF
#undef FOR_LANES
#undef FIRST_BAD
#undef GUARD_LANES
#undef PURE
#undef PURE2
#undef SELECT
#undef CMP6
#undef CMP_DENSE
#undef S_IF
#undef S_FI
#undef CMP6IF
#undef WRAP_ADD
#undef WRAP_SUB
#undef WRAP_MUL
#undef CHECKED2
#undef INT32_RANGE
#undef CHECKED1
#undef SCALAR2
#undef SCALAR1
#undef CALL1

