/*
 * pyvm_lanes_intrin.h -- lane loops of the translated-function VM written
 * with the ISA's intrinsics, where GCC's own vectorisation falls short.
 * Part of the pyvm_lanes.h template (PN names each function for the ISA
 * being compiled); no include guard. Each function computes exactly what
 * the scalar code it stands for does: the same IEEE operations in the
 * same order, no contraction.
 */

/* d[k] = sqrt(x[k]) for k < n (d may be x) with the ISA's vector square
 * root; IEEE's, correctly rounded, in every width. */
static void PN(sqrt_dense)(double *d, const double *x, int n) {
  int k = 0;
#if PYVM_LEVEL == 2
  for (; k + 8 <= n; k += 8)
    _mm512_storeu_pd(d + k, _mm512_sqrt_pd(_mm512_loadu_pd(x + k)));
#elif PYVM_LEVEL == 1
  for (; k + 4 <= n; k += 4)
    _mm256_storeu_pd(d + k, _mm256_sqrt_pd(_mm256_loadu_pd(x + k)));
#elif PYVM_X86
  for (; k + 2 <= n; k += 2)
    _mm_storeu_pd(d + k, _mm_sqrt_pd(_mm_loadu_pd(x + k)));
#endif
  for (; k < n; k++) d[k] = pyvm_sqrt1(x[k]);
}

#if PYVM_LEVEL == 2
/* The dense loop of pyvm_lanes.h's CABS_CMP for AVX-512: pf__py_cabs_sign's
 * arithmetic and tests, 8 lanes a step and the last step masked. Left to
 * itself GCC vectorises that loop 64 lanes at a time (the bytes it stores)
 * and runs up to 63 lanes in a scalar remainder: most of the call when a
 * loop's lanes are a few hundred (the Mandelbrot's abs(z) <= 2). Returns
 * whether a lane is undecided (near the circle, NaN, inf, tiny or huge x). */
static int PN(cabs_sign_dense)(uint8_t *d, const double *xr,
                               const double *xi, const double *y, int lo,
                               int hi, int sign_true) {
  const __m512d inf = _mm512_set1_pd(INFINITY);
  const __m512d tiny = _mm512_set1_pd(0x1p-450), huge = _mm512_set1_pd(0x1p450);
  const __m512d up = _mm512_set1_pd(1.0 + 0x1p-20);
  const __m512d down = _mm512_set1_pd(1.0 - 0x1p-20);
  const __m512i one = _mm512_set1_epi8(1);
  unsigned und = 0;
  /* The bytes of 64 lanes are stored at once: the BR that reads them
   * loads them whole, which a store of 8 would stall (store forwarding). */
  for (int g = lo; g < hi; g += 64) {
    const int ng = hi - g < 64 ? hi - g : 64;
    uint64_t bits = 0;
    for (int u = 0; u < ng; u += 8) {
      const int k = g + u;
      const __mmask8 m =
          ng - u >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (ng - u)) - 1);
      const __m512d re = _mm512_maskz_loadu_pd(m, xr + k);
      const __m512d im = _mm512_maskz_loadu_pd(m, xi + k);
      const __m512d x = _mm512_maskz_loadu_pd(m, y + k);
      const __m512d s =
          _mm512_add_pd(_mm512_mul_pd(re, re), _mm512_mul_pd(im, im));
      const __m512d t = _mm512_mul_pd(x, x);
      /* (pf__py_cabs_sign: s finite means re and im are.) */
      const __mmask8 ok =
          _mm512_mask_cmp_pd_mask(m, s, inf, _CMP_LT_OQ) &
          _mm512_cmp_pd_mask(x, tiny, _CMP_GE_OQ) &
          _mm512_cmp_pd_mask(x, huge, _CMP_LE_OQ);
      const __mmask8 gt =
          ok & _mm512_cmp_pd_mask(s, _mm512_mul_pd(t, up), _CMP_GT_OQ);
      const __mmask8 lt =
          ok & _mm512_cmp_pd_mask(s, _mm512_mul_pd(t, down), _CMP_LT_OQ);
      const unsigned yes = (sign_true ? gt : (unsigned)~gt) & m;
      bits |= (uint64_t)yes << u;
      und |= m & (unsigned)~(gt | lt);
    }
    const __m512i v = _mm512_maskz_mov_epi8(bits, one);
    if (ng == 64) /* (a masked store does not forward to that load) */
      _mm512_storeu_si512((void *)(d + g), v);
    else
      _mm512_mask_storeu_epi8(d + g, (UINT64_C(1) << ng) - 1, v);
  }
  return und != 0;
}

/* The dense loops of pyvm_lanes.h's comparisons (CMP) for AVX-512: d[k] =
 * x[k] OP y[k] as 0 or 1, 8 lanes a compare and the bytes of 64 lanes one
 * store (GCC widens each compare's mask to bytes through shuffles; a BR of
 * a tiled loop loads the 64 bytes whole, which smaller stores would stall).
 * The predicates are C's: ordered for < <= == > >=, unordered for != (NaN
 * != anything). */
#define PYVM_CMP_LOOP(T, LOAD, CMP, PRED)                                   \
  static void PN(cmp_dense_##T##_##PRED)(uint8_t *d, const void *x,         \
                                         const void *y, int lo, int hi) {   \
    const __m512i one = _mm512_set1_epi8(1);                                \
    for (int g = lo; g < hi; g += 64) {                                     \
      const int ng = hi - g < 64 ? hi - g : 64;                             \
      uint64_t bits = 0;                                                    \
      for (int u = 0; u < ng; u += 8) {                                     \
        const __mmask8 m = ng - u >= 8 ? (__mmask8)0xff                     \
                                       : (__mmask8)((1u << (ng - u)) - 1);  \
        const __mmask8 r = CMP(m, LOAD(m, (const T *)x + g + u),            \
                               LOAD(m, (const T *)y + g + u), PRED);        \
        bits |= (uint64_t)r << u;                                           \
      }                                                                     \
      const __m512i v = _mm512_maskz_mov_epi8(bits, one);                   \
      if (ng == 64)                                                         \
        _mm512_storeu_si512((void *)(d + g), v);                            \
      else                                                                  \
        _mm512_mask_storeu_epi8(d + g, (UINT64_C(1) << ng) - 1, v);         \
    }                                                                       \
  }
#define PYVM_CMP_I(PRED)                                                    \
  PYVM_CMP_LOOP(int64_t, _mm512_maskz_loadu_epi64, _mm512_mask_cmp_epi64_mask, PRED)
#define PYVM_CMP_F(PRED)                                                    \
  PYVM_CMP_LOOP(double, _mm512_maskz_loadu_pd, _mm512_mask_cmp_pd_mask, PRED)
PYVM_CMP_I(_MM_CMPINT_LT) PYVM_CMP_I(_MM_CMPINT_LE) PYVM_CMP_I(_MM_CMPINT_EQ)
PYVM_CMP_I(_MM_CMPINT_NE) PYVM_CMP_I(_MM_CMPINT_NLE) PYVM_CMP_I(_MM_CMPINT_NLT)
PYVM_CMP_F(_CMP_LT_OQ) PYVM_CMP_F(_CMP_LE_OQ) PYVM_CMP_F(_CMP_EQ_OQ)
PYVM_CMP_F(_CMP_NEQ_UQ) PYVM_CMP_F(_CMP_GT_OQ) PYVM_CMP_F(_CMP_GE_OQ)
#undef PYVM_CMP_I
#undef PYVM_CMP_F
#undef PYVM_CMP_LOOP
/* CMP's dense hook: the predicate of each operator, by file. */
#define PYVM_PRED_int64_t_LT _MM_CMPINT_LT
#define PYVM_PRED_int64_t_LE _MM_CMPINT_LE
#define PYVM_PRED_int64_t_EQ _MM_CMPINT_EQ
#define PYVM_PRED_int64_t_NE _MM_CMPINT_NE
#define PYVM_PRED_int64_t_GT _MM_CMPINT_NLE
#define PYVM_PRED_int64_t_GE _MM_CMPINT_NLT
#define PYVM_PRED_double_LT _CMP_LT_OQ
#define PYVM_PRED_double_LE _CMP_LE_OQ
#define PYVM_PRED_double_EQ _CMP_EQ_OQ
#define PYVM_PRED_double_NE _CMP_NEQ_UQ
#define PYVM_PRED_double_GT _CMP_GT_OQ
#define PYVM_PRED_double_GE _CMP_GE_OQ
#define PYVM_CMP_FN3(T, P) PN(cmp_dense_##T##_##P)
#define PYVM_CMP_FN2(T, P) PYVM_CMP_FN3(T, P)
#define CMP_DENSE(T, W)                                                     \
  (PYVM_CMP_FN2(T, PYVM_PRED_##T##_##W)(d, x, y, c->lo, c->lo + c->cnt), 1)

/* The dense loop of pyvm_lanes.h's C_MULADD for AVX-512: dst = x * y + z by
 * the same IEEE operations in the same order (_Py_c_prod's, then
 * _Py_c_sum's); returns whether a lane's product has a NaN part (it bails).
 * GCC's own loop ORs a flag per lane into a vector and reduces it one lane
 * at a time after the loop (omp simd's reduction): a cost per call that
 * the 64-lane calls of a tiled loop (pyvm_tile.h) paid every trip. dst may
 * be an operand: each step loads before it stores. */
static int PN(cmuladd_dense)(double *dr, double *di, const double *xr,
                             const double *xi, const double *yr,
                             const double *yi, const double *zr,
                             const double *zi, int lo, int hi) {
  __mmask8 nan = 0;
  for (int k = lo; k < hi; k += 8) {
    const __mmask8 m =
        hi - k >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (hi - k)) - 1);
    const __m512d ar = _mm512_maskz_loadu_pd(m, xr + k);
    const __m512d ai = _mm512_maskz_loadu_pd(m, xi + k);
    const __m512d br = _mm512_maskz_loadu_pd(m, yr + k);
    const __m512d bi = _mm512_maskz_loadu_pd(m, yi + k);
    const __m512d pr =
        _mm512_sub_pd(_mm512_mul_pd(ar, br), _mm512_mul_pd(ai, bi));
    const __m512d pi =
        _mm512_add_pd(_mm512_mul_pd(ar, bi), _mm512_mul_pd(ai, br));
    nan |= _mm512_mask_cmp_pd_mask(m, pr, pr, _CMP_UNORD_Q) |
           _mm512_mask_cmp_pd_mask(m, pi, pi, _CMP_UNORD_Q);
    const __m512d sr = _mm512_add_pd(pr, _mm512_maskz_loadu_pd(m, zr + k));
    const __m512d si = _mm512_add_pd(pi, _mm512_maskz_loadu_pd(m, zi + k));
    if (m == 0xff) {
      _mm512_storeu_pd(dr + k, sr);
      _mm512_storeu_pd(di + k, si);
    } else {
      _mm512_mask_storeu_pd(dr + k, m, sr);
      _mm512_mask_storeu_pd(di + k, m, si);
    }
  }
  return nan != 0;
}
#elif PYVM_LEVEL == 1
/* (Comparisons: GCC's loops.) */
#define CMP_DENSE(T, W) 0
/* The same for AVX2, 4 lanes a step and the last lanes scalar (AVX2 has no
 * masked byte store): GCC vectorises the loop 32 lanes at a time and runs
 * up to 31 in its scalar remainder. spread[m]: byte i is bit i of m. */
static int PN(cabs_sign_dense)(uint8_t *d, const double *xr,
                               const double *xi, const double *y, int lo,
                               int hi, int sign_true) {
  static const uint32_t spread[16] = {
      0x00000000, 0x00000001, 0x00000100, 0x00000101, 0x00010000, 0x00010001,
      0x00010100, 0x00010101, 0x01000000, 0x01000001, 0x01000100, 0x01000101,
      0x01010000, 0x01010001, 0x01010100, 0x01010101};
  const __m256d inf = _mm256_set1_pd(INFINITY);
  const __m256d tiny = _mm256_set1_pd(0x1p-450), huge = _mm256_set1_pd(0x1p450);
  const __m256d up = _mm256_set1_pd(1.0 + 0x1p-20);
  const __m256d down = _mm256_set1_pd(1.0 - 0x1p-20);
  unsigned und = 0;
  int k = lo;
  for (; k + 4 <= hi; k += 4) {
    const __m256d re = _mm256_loadu_pd(xr + k), im = _mm256_loadu_pd(xi + k);
    const __m256d x = _mm256_loadu_pd(y + k);
    const __m256d s =
        _mm256_add_pd(_mm256_mul_pd(re, re), _mm256_mul_pd(im, im));
    const __m256d t = _mm256_mul_pd(x, x);
    /* (pf__py_cabs_sign: s finite means re and im are.) */
    __m256d ok = _mm256_cmp_pd(s, inf, _CMP_LT_OQ);
    ok = _mm256_and_pd(ok, _mm256_cmp_pd(x, tiny, _CMP_GE_OQ));
    ok = _mm256_and_pd(ok, _mm256_cmp_pd(x, huge, _CMP_LE_OQ));
    const unsigned gt = (unsigned)_mm256_movemask_pd(_mm256_and_pd(
        ok, _mm256_cmp_pd(s, _mm256_mul_pd(t, up), _CMP_GT_OQ)));
    const unsigned lt = (unsigned)_mm256_movemask_pd(_mm256_and_pd(
        ok, _mm256_cmp_pd(s, _mm256_mul_pd(t, down), _CMP_LT_OQ)));
    const uint32_t bytes = spread[sign_true ? gt : ~gt & 15u];
    memcpy(d + k, &bytes, sizeof bytes);
    und |= ~(gt | lt) & 15u;
  }
  for (; k < hi; k++) {
    const int s_ = pf__py_cabs_sign(xr[k], xi[k], y[k]);
    d[k] = (uint8_t)((s_ > 0) == sign_true);
    und |= s_ == 0;
  }
  return und != 0;
}
#else
#define CMP_DENSE(T, W) 0
#endif
