/*
 * philox.c -- Philox4x64-10 and the random fills built on it.
 *
 * DESIGN
 * Philox (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011; the Random123 library) maps a 256-bit counter and a
 * 128-bit key to 256 random bits with 10 rounds of two 64x64->128-bit
 * multiplies. Being a pure function of the counter, it lets every element
 * of a fill be computed independently: element e of a stream is word e % 4
 * of the block for counter e / 4 + 1 (philox.h has the exact definitions).
 *
 * A block function makes values in two passes over a small buffer that
 * stays in L1: raw words (Philox), then a transform to the output (uniform
 * doubles, NumPy's float32 layout, or normals by Box-Muller). Both passes
 * exist per instruction set, picked at run time:
 *
 *   Philox     scalar (__uint128_t: one mul/mulx per 64x64 product, two
 *              blocks interleaved; BMI2's mulx where AVX2 is), and AVX-512
 *              (F+DQ), 8 blocks per vector. AVX-512 has no 64x64 high
 *              multiply; four 32x32 vpmuludq and some adds make one, and 8
 *              lanes still beat the scalar multiplier: 2.1 against 3.2 ns
 *              per uniform double on one core of a 2.8 GHz Xeon (Ice Lake).
 *              AVX2's 4 lanes do not pay: 2.9 ns per word before any
 *              transpose or conversion, so AVX2 machines use scalar Philox.
 *   transform  plain loops the compiler vectorises (`omp simd`), compiled
 *              for the baseline, AVX2 and AVX-512. Normals need ln, sin and
 *              cos: glibc's vector and scalar versions differ in the last
 *              bit, so this file has its own (fdlibm's polynomials), made of
 *              IEEE operations that give the same bits in every lane width.
 *              The AVX2 loops are compiled without FMA, and the file is C11
 *              (GCC then never contracts a*b+c; Clang is told by a pragma),
 *              so no path fuses a multiply into an add: every path rounds
 *              alike and an element's value does not depend on which path,
 *              block or worker made it (tests/c/test_philox.c compares).
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "philox.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define PF__PHX_X86 1
#include <immintrin.h>
#else
#define PF__PHX_X86 0
#endif

#ifdef __clang__
/* Clang contracts a*b+c into an FMA by default where the target has one. */
#pragma STDC FP_CONTRACT OFF
#endif

#define PHX_INLINE static inline __attribute__((always_inline))
#define PHX_SIMD _Pragma("omp simd")

/* Philox blocks per pass: 512 words, 4 KiB, and as much again for the
 * transform's output when it cannot go straight to the caller's. */
#define RAW_BLOCKS 128

/* ------------------------------------------------------------ Philox core */

PHX_INLINE void mulhilo(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
  __uint128_t p = (__uint128_t)a * b;
  *hi = (uint64_t)(p >> 64);
  *lo = (uint64_t)p;
}

/* Random123's philox4x64_10: round, then bump the key before each next
 * round. */
PHX_INLINE void philox10(uint64_t c[4], uint64_t k0, uint64_t k1) {
  for (int r = 0; r < 10; r++) {
    uint64_t hi0, lo0, hi1, lo1;
    mulhilo(PF__PHILOX_M0, c[0], &hi0, &lo0);
    mulhilo(PF__PHILOX_M1, c[2], &hi1, &lo1);
    uint64_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
    k0 += PF__PHILOX_W0;
    k1 += PF__PHILOX_W1;
  }
}

void pf_philox4x64_10(const uint64_t counter[4], const uint64_t key[2],
                      uint64_t out[4]) {
  uint64_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
  philox10(c, key[0], key[1]);
  memcpy(out, c, sizeof c);
}

/* raw[4i + j] = word j of Philox((b0 + i + 1, 0, stream, tag), key). Two
 * blocks per iteration, rounds unrolled: independent multiply chains keep
 * the multiplier busy while the other waits for its product. */
PHX_INLINE void raw_blocks(const uint64_t key[2], uint64_t stream,
                           uint64_t tag, uint64_t b0, int64_t nb,
                           uint64_t *raw) {
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    uint64_t a0 = b0 + (uint64_t)i + 1, a1 = 0, a2 = stream, a3 = tag;
    uint64_t c0 = a0 + 1, c1 = 0, c2 = stream, c3 = tag;
    uint64_t k0 = key[0], k1 = key[1];
#pragma GCC unroll 10
    for (int r = 0; r < 10; r++) {
      uint64_t ah0, al0, ah1, al1, ch0, cl0, ch1, cl1;
      mulhilo(PF__PHILOX_M0, a0, &ah0, &al0);
      mulhilo(PF__PHILOX_M1, a2, &ah1, &al1);
      mulhilo(PF__PHILOX_M0, c0, &ch0, &cl0);
      mulhilo(PF__PHILOX_M1, c2, &ch1, &cl1);
      a0 = ah1 ^ a1 ^ k0;
      a2 = ah0 ^ a3 ^ k1;
      a1 = al1;
      a3 = al0;
      c0 = ch1 ^ c1 ^ k0;
      c2 = ch0 ^ c3 ^ k1;
      c1 = cl1;
      c3 = cl0;
      k0 += PF__PHILOX_W0;
      k1 += PF__PHILOX_W1;
    }
    uint64_t *o = raw + 4 * i;
    o[0] = a0, o[1] = a1, o[2] = a2, o[3] = a3;
    o[4] = c0, o[5] = c1, o[6] = c2, o[7] = c3;
  }
  for (; i < nb; i++) {
    uint64_t c[4] = {b0 + (uint64_t)i + 1, 0, stream, tag};
    philox10(c, key[0], key[1]);
    memcpy(raw + 4 * i, c, sizeof c);
  }
}

static void raw_scalar(const uint64_t key[2], uint64_t stream, uint64_t tag,
                       uint64_t b0, int64_t nb, uint64_t *raw) {
  raw_blocks(key, stream, tag, b0, nb, raw);
}

#if PF__PHX_X86
#define PHX_T512 __attribute__((target("avx512f,avx512dq")))
#define PHX_T256 __attribute__((target("avx2")))

/* With BMI2's mulx (every AVX2 machine has it) the product goes to any two
 * registers, not rdx:rax, and the compiler spills far less. */
__attribute__((target("bmi2"))) static void raw_bmi2(
    const uint64_t key[2], uint64_t stream, uint64_t tag, uint64_t b0,
    int64_t nb, uint64_t *raw) {
  raw_blocks(key, stream, tag, b0, nb, raw);
}

/* hi:lo = a * m per 64-bit lane, from four 32x32->64 products (AVX-512 has
 * no 64x64 high multiply). ml/mh: the low/high 32 bits of m per lane. */
PHX_T512 PHX_INLINE void mul512(__m512i a, __m512i ml, __m512i mh,
                                __m512i *hi, __m512i *lo) {
  const __m512i low32 = _mm512_set1_epi64(0xffffffff);
  __m512i ah = _mm512_srli_epi64(a, 32);
  __m512i ll = _mm512_mul_epu32(a, ml), lh = _mm512_mul_epu32(a, mh);
  __m512i hl = _mm512_mul_epu32(ah, ml), hh = _mm512_mul_epu32(ah, mh);
  /* The middle column: carries out of it go to the high word. */
  __m512i mid = _mm512_add_epi64(
      _mm512_add_epi64(_mm512_srli_epi64(ll, 32),
                       _mm512_and_si512(lh, low32)),
      _mm512_and_si512(hl, low32));
  *hi = _mm512_add_epi64(
      _mm512_add_epi64(hh, _mm512_srli_epi64(lh, 32)),
      _mm512_add_epi64(_mm512_srli_epi64(hl, 32), _mm512_srli_epi64(mid, 32)));
  /* lo = (mid << 32) | (ll mod 2**32): 0xD8 takes b where c is set, else a. */
  *lo = _mm512_ternarylogic_epi64(_mm512_slli_epi64(mid, 32), ll, low32, 0xD8);
}

/* Stores 8 blocks whose word j is in lane i of cj, block-major: t0 = (c0[0],
 * c1[0], c0[2], c1[2], ...), t1 = (c0[1], c1[1], ...), t2 and t3 the same
 * for c2 and c3; then the 128-bit lanes are regrouped so that stored vector
 * v holds blocks 2v and 2v + 1 whole. */
PHX_T512 PHX_INLINE void store_blocks8(uint64_t *o, __m512i c0, __m512i c1,
                                       __m512i c2, __m512i c3) {
  __m512i t0 = _mm512_unpacklo_epi64(c0, c1), t1 = _mm512_unpackhi_epi64(c0, c1);
  __m512i t2 = _mm512_unpacklo_epi64(c2, c3), t3 = _mm512_unpackhi_epi64(c2, c3);
  __m512i u0 = _mm512_shuffle_i64x2(t0, t2, _MM_SHUFFLE(2, 0, 2, 0));
  __m512i u1 = _mm512_shuffle_i64x2(t0, t2, _MM_SHUFFLE(3, 1, 3, 1));
  __m512i v0 = _mm512_shuffle_i64x2(t1, t3, _MM_SHUFFLE(2, 0, 2, 0));
  __m512i v1 = _mm512_shuffle_i64x2(t1, t3, _MM_SHUFFLE(3, 1, 3, 1));
  _mm512_storeu_si512((void *)o,
                      _mm512_shuffle_i64x2(u0, v0, _MM_SHUFFLE(2, 0, 2, 0)));
  _mm512_storeu_si512((void *)(o + 8),
                      _mm512_shuffle_i64x2(u1, v1, _MM_SHUFFLE(2, 0, 2, 0)));
  _mm512_storeu_si512((void *)(o + 16),
                      _mm512_shuffle_i64x2(u0, v0, _MM_SHUFFLE(3, 1, 3, 1)));
  _mm512_storeu_si512((void *)(o + 24),
                      _mm512_shuffle_i64x2(u1, v1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One round on 8 blocks (lane i of c0..c3: block i's words). */
PHX_T512 PHX_INLINE void round8(__m512i c[4], __m512i k0, __m512i k1) {
  const __m512i m0l = _mm512_set1_epi64((int64_t)(PF__PHILOX_M0 & 0xffffffff));
  const __m512i m0h = _mm512_set1_epi64((int64_t)(PF__PHILOX_M0 >> 32));
  const __m512i m1l = _mm512_set1_epi64((int64_t)(PF__PHILOX_M1 & 0xffffffff));
  const __m512i m1h = _mm512_set1_epi64((int64_t)(PF__PHILOX_M1 >> 32));
  __m512i hi0, lo0, hi1, lo1;
  mul512(c[0], m0l, m0h, &hi0, &lo0);
  mul512(c[2], m1l, m1h, &hi1, &lo1);
  /* 0x96: three-way exclusive or. */
  c[0] = _mm512_ternarylogic_epi64(hi1, c[1], k0, 0x96);
  c[2] = _mm512_ternarylogic_epi64(hi0, c[3], k1, 0x96);
  c[1] = lo1;
  c[3] = lo0;
}

/* 8 blocks per vector, two vectors per iteration (independent chains hide
 * the multiplies' latency), then 8, then the scalar code for the rest. */
PHX_T512 static void raw_avx512(const uint64_t key[2], uint64_t stream,
                                uint64_t tag, uint64_t b0, int64_t nb,
                                uint64_t *raw) {
  const __m512i lanes = _mm512_set_epi64(8, 7, 6, 5, 4, 3, 2, 1);
  int64_t i = 0;
  for (; i + 16 <= nb; i += 16) {
    __m512i first = _mm512_add_epi64(
        _mm512_set1_epi64((int64_t)(b0 + (uint64_t)i)), lanes);
    __m512i a[4] = {first, _mm512_setzero_si512(),
                    _mm512_set1_epi64((int64_t)stream),
                    _mm512_set1_epi64((int64_t)tag)};
    __m512i b[4] = {_mm512_add_epi64(first, _mm512_set1_epi64(8)), a[1], a[2],
                    a[3]};
    uint64_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
      __m512i kk0 = _mm512_set1_epi64((int64_t)k0);
      __m512i kk1 = _mm512_set1_epi64((int64_t)k1);
      round8(a, kk0, kk1);
      round8(b, kk0, kk1);
      k0 += PF__PHILOX_W0;
      k1 += PF__PHILOX_W1;
    }
    store_blocks8(raw + 4 * i, a[0], a[1], a[2], a[3]);
    store_blocks8(raw + 4 * i + 32, b[0], b[1], b[2], b[3]);
  }
  for (; i + 8 <= nb; i += 8) {
    __m512i a[4] = {_mm512_add_epi64(
                        _mm512_set1_epi64((int64_t)(b0 + (uint64_t)i)), lanes),
                    _mm512_setzero_si512(), _mm512_set1_epi64((int64_t)stream),
                    _mm512_set1_epi64((int64_t)tag)};
    uint64_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
      round8(a, _mm512_set1_epi64((int64_t)k0), _mm512_set1_epi64((int64_t)k1));
      k0 += PF__PHILOX_W0;
      k1 += PF__PHILOX_W1;
    }
    store_blocks8(raw + 4 * i, a[0], a[1], a[2], a[3]);
  }
  if (i < nb)
    raw_scalar(key, stream, tag, b0 + (uint64_t)i, nb - i, raw + 4 * i);
}
#endif

/* -------------------------------------------------------------- transforms */

PHX_INLINE double from_bits(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

PHX_INLINE uint64_t to_bits(double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}

/* v (< 2**53) as a double, exactly, with integer and float operations that
 * vectorise without AVX-512DQ's int64 conversion: 2**52 + (v mod 2**52)
 * has v's low bits as its mantissa, and bit 52 adds 2**52 or 0. */
PHX_INLINE double u53_to_double(uint64_t v) {
  const uint64_t two52 = UINT64_C(0x4330000000000000); /* 2**52 */
  double low = from_bits(two52 | (v & ((UINT64_C(1) << 52) - 1))) - 0x1p52;
  return low + from_bits((UINT64_C(0) - (v >> 52)) & two52);
}

/* NumPy's random(): (x >> 11) * 2**-53. */
PHX_INLINE void to_uniform(const uint64_t *raw, int64_t n, double *out) {
  PHX_SIMD for (int64_t k = 0; k < n; k++)
    out[k] = u53_to_double(raw[k] >> 11) * 0x1p-53;
}

/* NumPy's random(dtype=float32): two floats per word, low half first. */
PHX_INLINE void to_uniform_f32(const uint64_t *raw, int64_t n, float *out) {
  PHX_SIMD for (int64_t k = 0; k < n; k++) {
    out[2 * k] = (float)(int32_t)((uint32_t)raw[k] >> 8) * 0x1p-24f;
    out[2 * k + 1] = (float)(int32_t)(raw[k] >> 40) * 0x1p-24f;
  }
}

/* fdlibm's (musl's) log, sin and cos kernels: minimax polynomials with an
 * error below 1 ulp on their reduced ranges. */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define LG1 6.666666666666735130e-01
#define LG2 3.999999999940941908e-01
#define LG3 2.857142874366239149e-01
#define LG4 2.222219843214978396e-01
#define LG5 1.818357216161805012e-01
#define LG6 1.531383769920937332e-01
#define LG7 1.479819860511658591e-01
#define S1 -1.66666666666666324348e-01
#define S2 8.33333333332248946124e-03
#define S3 -1.98412698298579493134e-04
#define S4 2.75573137070700676789e-06
#define S5 -2.50507602534068634195e-08
#define S6 1.58969099521155010221e-10
#define C1 4.16666666666666019037e-02
#define C2 -1.38888888888741095749e-03
#define C3 2.48015872894767294178e-05
#define C4 -2.75573143513906633035e-07
#define C5 2.08757232129817482790e-09
#define C6 -1.13596475577881948265e-11

/* ln(u) for a normal positive u <= 1: u = 2**k * m with m in [sqrt(2)/2,
 * sqrt(2)), found with integer operations (musl's bit trick); k converted
 * exactly through 2**52 + k as u53_to_double does. */
PHX_INLINE double log_unit(double u) {
  const uint64_t hx =
      to_bits(u) + (UINT64_C(0x3ff0000000000000) - UINT64_C(0x3fe6a09e667f3bcd));
  const double k = from_bits(UINT64_C(0x4330000000000000) | (hx >> 52)) -
                   (0x1p52 + 1023.0);
  const double m =
      from_bits((hx & UINT64_C(0x000fffffffffffff)) + UINT64_C(0x3fe6a09e667f3bcd));
  const double f = m - 1.0;
  const double hfsq = 0.5 * f * f;
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double t1 = w * (LG2 + w * (LG4 + w * LG6));
  const double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
  return s * (hfsq + t2 + t1) + k * LN2_LO - hfsq + f + k * LN2_HI;
}

/* sin and cos of x, |x| <= pi/4. */
PHX_INLINE double sin_small(double x) {
  const double z = x * x, w = z * z;
  const double r = S2 + z * (S3 + z * S4) + z * w * (S5 + z * S6);
  return x + z * x * (S1 + z * r);
}

PHX_INLINE double cos_small(double x) {
  const double z = x * x, w = z * z;
  const double r =
      z * (C1 + z * (C2 + z * C3)) + w * w * (C4 + z * (C5 + z * C6));
  const double hz = 0.5 * z, one_hz = 1.0 - hz;
  return one_hz + (((1.0 - one_hz) - hz) + z * r);
}

/* Box-Muller on n / 2 pairs of words (a, b): out[2p] = r cos t, out[2p+1] =
 * r sin t. The angle t = 2 pi m 2**-53 (m = b >> 11) is reduced exactly in
 * integers: q = m / 2**51 rounded (the quadrant), the remainder |d| <= 2**50
 * scaled to x = pi d 2**-52 in [-pi/4, pi/4]; then t = x + q pi/2 swaps and
 * negates sin x and cos x. u1 = ((a >> 11) + 1) 2**-53 is in (0, 1].
 * This pass leaves r**2 = -2 ln u1 in r2[p] for the square root: libm's
 * sqrt may set errno, which keeps GCC from vectorising a loop calling it,
 * so each instruction set takes it with its own instruction (sqrt_*). */
PHX_INLINE void to_normal_parts(const uint64_t *raw, int64_t n, double *out,
                                double *r2) {
  PHX_SIMD for (int64_t p = 0; p < n / 2; p++) {
    const uint64_t a = raw[2 * p], b = raw[2 * p + 1];
    r2[p] = -2.0 * log_unit(u53_to_double((a >> 11) + 1) * 0x1p-53);
    const uint64_t m = b >> 11;
    const uint64_t q = (m + (UINT64_C(1) << 50)) >> 51;
    const uint64_t d = m - (q << 51); /* two's complement of the remainder */
    /* 1.5 * 2**52 + d holds d in its mantissa exactly (|d| <= 2**50). */
    const double x = (from_bits(UINT64_C(0x4338000000000000) + d) - 0x1.8p52) *
                     (3.14159265358979311600e+00 * 0x1p-52);
    const uint64_t sb = to_bits(sin_small(x)), cb = to_bits(cos_small(x));
    const uint64_t swap = UINT64_C(0) - (q & 1);
    const uint64_t sin_sign = (q & 2) << 62, cos_sign = ((q + 1) & 2) << 62;
    out[2 * p] = from_bits(((cb & ~swap) | (sb & swap)) ^ cos_sign);
    out[2 * p + 1] = from_bits(((sb & ~swap) | (cb & swap)) ^ sin_sign);
  }
}

PHX_INLINE void scale_pairs(double *out, const double *r, int64_t pairs) {
  PHX_SIMD for (int64_t p = 0; p < pairs; p++) {
    out[2 * p] *= r[p];
    out[2 * p + 1] *= r[p];
  }
}

/* x[k] = sqrt(x[k]), correctly rounded (IEEE): the same bits on every path. */
static void sqrt_base(double *x, int64_t n) {
#if PF__PHX_X86
  int64_t k = 0;
  for (; k + 2 <= n; k += 2) _mm_storeu_pd(x + k, _mm_sqrt_pd(_mm_loadu_pd(x + k)));
  if (k < n) {
    __m128d v = _mm_set_sd(x[k]);
    x[k] = _mm_cvtsd_f64(_mm_sqrt_sd(v, v));
  }
#else
  for (int64_t k = 0; k < n; k++) x[k] = sqrt(x[k]);
#endif
}

#if PF__PHX_X86
PHX_T256 static void sqrt_avx2(double *x, int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= n; k += 4)
    _mm256_storeu_pd(x + k, _mm256_sqrt_pd(_mm256_loadu_pd(x + k)));
  sqrt_base(x + k, n - k);
}

PHX_T512 static void sqrt_avx512(double *x, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    _mm512_storeu_pd(x + k, _mm512_sqrt_pd(_mm512_loadu_pd(x + k)));
  sqrt_base(x + k, n - k);
}
#endif

/* n raw words (n even for normals) -> values, per instruction set. */
#define PHX_DEFINE_TRANSFORM(SUFFIX, ATTRIBUTES)                            \
  ATTRIBUTES static void transform_##SUFFIX(pf__philox_kind kind,          \
                                            const uint64_t *raw, int64_t n, \
                                            void *out) {                   \
    switch (kind) {                                                        \
      case PF__PHILOX_UNIFORM:                                             \
        to_uniform(raw, n, out);                                           \
        break;                                                             \
      case PF__PHILOX_UNIFORM_F32:                                         \
        to_uniform_f32(raw, n, out);                                       \
        break;                                                             \
      case PF__PHILOX_NORMAL: {                                            \
        double r[2 * RAW_BLOCKS];                                          \
        assert(n / 2 <= 2 * RAW_BLOCKS);                                   \
        to_normal_parts(raw, n, out, r);                                   \
        sqrt_##SUFFIX(r, n / 2);                                           \
        scale_pairs(out, r, n / 2);                                        \
        break;                                                             \
      }                                                                    \
    }                                                                      \
  }
PHX_DEFINE_TRANSFORM(base, )
#if PF__PHX_X86
PHX_DEFINE_TRANSFORM(avx2, PHX_T256)
PHX_DEFINE_TRANSFORM(avx512, PHX_T512)
#endif

/* ---------------------------------------------------------- block driver */

int pf__philox_isa(void) {
#if PF__PHX_X86
  static _Atomic int cached = -1; /* racing first calls compute the same */
  int isa = cached;
  if (isa >= 0) return isa;
  __builtin_cpu_init();
  isa = PF__PHILOX_ISA_SCALAR;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2"))
    isa = PF__PHILOX_ISA_AVX2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
    isa = PF__PHILOX_ISA_AVX512;
  cached = isa;
  return isa;
#else
  return PF__PHILOX_ISA_SCALAR;
#endif
}

static void gen_raw(int isa, const uint64_t key[2], uint64_t stream,
                    uint64_t tag, uint64_t b0, int64_t nb, uint64_t *raw) {
#if PF__PHX_X86
  if (isa == PF__PHILOX_ISA_AVX512) {
    raw_avx512(key, stream, tag, b0, nb, raw);
    return;
  }
  if (isa == PF__PHILOX_ISA_AVX2) {
    raw_bmi2(key, stream, tag, b0, nb, raw);
    return;
  }
#endif
  (void)isa;
  raw_scalar(key, stream, tag, b0, nb, raw);
}

static void transform(int isa, pf__philox_kind kind, const uint64_t *raw,
                      int64_t n, void *out) {
#if PF__PHX_X86
  if (isa == PF__PHILOX_ISA_AVX512) {
    transform_avx512(kind, raw, n, out);
    return;
  }
  if (isa == PF__PHILOX_ISA_AVX2) {
    transform_avx2(kind, raw, n, out);
    return;
  }
#endif
  (void)isa;
  transform_base(kind, raw, n, out);
}

void pf__philox_block_isa(int isa, pf__philox_kind kind, const uint64_t key[2],
                          uint64_t stream, int64_t first, int64_t count,
                          void *out) {
  assert(first >= 0 && count >= 0 && count <= INT64_MAX - first);
  if (isa > pf__philox_isa()) isa = pf__philox_isa();
  const uint64_t tag = kind == PF__PHILOX_NORMAL ? PF__PHILOX_TAG_NORMAL
                                                 : PF__PHILOX_TAG_UNIFORM;
  const int64_t per_block = kind == PF__PHILOX_UNIFORM_F32 ? 8 : 4;
  const size_t item = kind == PF__PHILOX_UNIFORM_F32 ? sizeof(float)
                                                     : sizeof(double);
  uint64_t raw[4 * RAW_BLOCKS];
  /* Values of whole blocks, for a first or last block the caller wants only
   * part of. */
  _Alignas(64) char tmp[4 * RAW_BLOCKS * sizeof(double)];
  char *o = out;
  while (count > 0) {
    const int64_t b0 = first / per_block, skip = first % per_block;
    int64_t nb = RAW_BLOCKS;
    if (count < RAW_BLOCKS * per_block - skip)
      nb = (skip + count + per_block - 1) / per_block;
    int64_t n = nb * per_block - skip;
    if (n > count) n = count;
    gen_raw(isa, key, stream, tag, (uint64_t)b0, nb, raw);
    if (skip == 0 && n == nb * per_block) {
      transform(isa, kind, raw, 4 * nb, o);
    } else {
      transform(isa, kind, raw, 4 * nb, tmp);
      memcpy(o, tmp + (size_t)skip * item, (size_t)n * item);
    }
    o += (size_t)n * item;
    first += n;
    count -= n;
  }
}

void pf__philox_uniform_block(const uint64_t key[2], uint64_t stream,
                              int64_t first, int64_t count, double *out) {
  pf__philox_block_isa(pf__philox_isa(), PF__PHILOX_UNIFORM, key, stream,
                       first, count, out);
}

void pf__philox_normal_block(const uint64_t key[2], uint64_t stream,
                             int64_t first, int64_t count, double *out) {
  pf__philox_block_isa(pf__philox_isa(), PF__PHILOX_NORMAL, key, stream, first,
                       count, out);
}

/* ------------------------------------------------------------------ fills */

typedef struct random_job {
  pf__philox_kind kind;
  int isa;
  int narrow; /* float32 output of float64 values (normals) */
  uint64_t key[2];
  uint64_t stream;
} random_job;

static int random_kernel(void *ctx, int64_t start, int64_t count, void *out,
                         pf_fill_worker *worker) {
  const random_job *job = ctx;
  (void)worker;
  if (!job->narrow) {
    pf__philox_block_isa(job->isa, job->kind, job->key, job->stream, start,
                         count, out);
    return 0;
  }
  double values[4 * RAW_BLOCKS];
  float *o = out;
  for (int64_t done = 0; done < count;) {
    int64_t n = count - done < 4 * RAW_BLOCKS ? count - done : 4 * RAW_BLOCKS;
    pf__philox_block_isa(job->isa, job->kind, job->key, job->stream,
                         start + done, n, values);
    for (int64_t k = 0; k < n; k++) o[done + k] = (float)values[k];
    done += n;
  }
  return 0;
}

int pf_random_fill(const pf_array *out, pf_random_dist dist,
                   const uint64_t key[2], uint64_t stream,
                   const pf_fill_options *options, pf_error *err) {
  if (out == NULL || key == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "no output array or key");
  if ((unsigned)dist > PF_RANDOM_NORMAL)
    return pf__error_set(err, PF_EINVAL, -1, "unknown distribution %d",
                         (int)dist);
  if (out->dtype != PF_FLOAT64 && out->dtype != PF_FLOAT32)
    return pf__error_set(err, PF_EDTYPE, -1,
                         "random fills make float32 or float64 values, not %s",
                         pf_dtype_name(out->dtype) != NULL
                             ? pf_dtype_name(out->dtype)
                             : "an unknown dtype");
  random_job job = {.isa = pf__philox_isa(),
                    .key = {key[0], key[1]},
                    .stream = stream};
  if (dist == PF_RANDOM_NORMAL) {
    job.kind = PF__PHILOX_NORMAL;
    job.narrow = out->dtype == PF_FLOAT32;
  } else {
    job.kind = out->dtype == PF_FLOAT32 ? PF__PHILOX_UNIFORM_F32
                                        : PF__PHILOX_UNIFORM;
  }
  return pf_fill(out, random_kernel, &job, options, err);
}
