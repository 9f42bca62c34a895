/*
 * expr_vm.c -- the expression VM: runs register bytecode over one block of
 * consecutive flat indices, then casts the result to the output dtype.
 *
 * DESIGN
 * Every opcode is one tight loop over the block (numexpr's design): registers
 * are PF__VM_BLOCK elements of 8 bytes in the worker's scratch, so a block's
 * operands stay in cache and each loop is vectorised by the compiler (`omp
 * simd`). Operands that are the same for every element live in scalar slots;
 * binary opcodes read them directly (the VS / SV variants) instead of from a
 * broadcast register. A register may be both operand and destination of one
 * instruction (the compiler reuses registers that die there): loops read
 * element k before writing element k, never another one.
 *
 * Index variables are generated per block from the block's N-d start index:
 * runs of equal values and ramps, with no division per element.
 *
 * The loops are compiled three times -- for x86-64's baseline, AVX2 and
 * AVX-512 (with DQ for int64 multiplies and int64/double conversions) --
 * and the instruction set found at compile time of the expression picks one.
 * Float functions use glibc's libmvec at the same level (declared here:
 * glibc declares them only under -ffast-math); libm elsewhere. libmvec is
 * accurate to 4 ulp. The tail of a block goes through the same vector
 * function with masked loads and stores, so an element's value does not
 * depend on where blocks or chunks start. Large contiguous outputs are
 * written with non-temporal stores (pf__vm_stream).
 *
 * Integer arithmetic wraps around and divides as NumPy's int64 does
 * (division by zero gives 0); float // and % follow NumPy's npy_divmod.
 */
#include <assert.h>
#include <math.h>
#include <float.h>
#include <string.h>

#include "expr.h"
#include "philox.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define PF__X86 1
#include <immintrin.h>
#else
#define PF__X86 0
#endif

#define PF__SIMD _Pragma("omp simd")
/* Helpers of the per-ISA loops are inlined into each, so that they are
 * compiled for that instruction set too. */
#define PF__INLINE static inline __attribute__((always_inline))

/* C storage of each value type. */
#define PF__CT_B int64_t
#define PF__CT_I int64_t
#define PF__CT_F double
#define PF__CT(t) PF__CT_##t

/* ------------------------------------------------- scalar helpers (NumPy) */

PF__INLINE int64_t pf__floordiv_i(int64_t a, int64_t b) {
  if (b == 0) return 0;
  if (b == -1) return PF__WRAP(0, -, a); /* INT64_MIN // -1 wraps */
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) q--;
  return q;
}

PF__INLINE int64_t pf__mod_i(int64_t a, int64_t b) {
  if (b == 0 || b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

PF__INLINE int64_t pf__fmod_i(int64_t a, int64_t b) {
  if (b == 0 || b == -1) return 0;
  return a % b;
}

/* a ** b by squaring, wrapping around; b < 0 is reported by the caller. */
PF__INLINE int64_t pf__pow_i(int64_t a, int64_t b) {
  uint64_t r = 1, x = (uint64_t)a;
  for (uint64_t e = b < 0 ? 0 : (uint64_t)b; e != 0; e >>= 1) {
    if (e & 1) r *= x;
    x *= x;
  }
  return (int64_t)r;
}

/* NumPy's npy_divmod: floor division and Python-style remainder, with the
 * quotient snapped to an integer and signed zeros as NumPy gives them. */
PF__INLINE double pf__divmod_f(double a, double b, double *modulus) {
  double mod = fmod(a, b);
  if (b == 0) {
    *modulus = mod;
    return a / b;
  }
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = copysign(0.0, b);
  }
  double floordiv;
  if (div != 0) {
    floordiv = floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = copysign(0.0, a / b);
  }
  *modulus = mod;
  return floordiv;
}

PF__INLINE double pf__floordiv_f(double a, double b) {
  double mod;
  return pf__divmod_f(a, b, &mod);
}

PF__INLINE double pf__mod_f(double a, double b) {
  double mod;
  pf__divmod_f(a, b, &mod);
  return mod;
}

/* ------------------------------------------------------ float functions */

#define PF__MATH1_SCALAR(fn)                                               \
  static void fn##_1(int64_t n, double *y, const double *x) {              \
    for (int64_t k = 0; k < n; k++) y[k] = fn(x[k]);                       \
  }
#define PF__MATH2_SCALAR(fn)                                               \
  static void fn##_1(int64_t n, double *y, const double *x,                \
                     const double *z) {                                    \
    for (int64_t k = 0; k < n; k++) y[k] = fn(x[k], z[k]);                 \
  }

#if PF__X86
#define PF__T512 __attribute__((target("avx512f")))
#define PF__T256 __attribute__((target("avx2,fma")))
/* The VM's own loops at the AVX-512 level: int64 multiplies and int64 <->
 * double conversions need DQ, 256-bit forms VL. */
#define PF__TVM512 \
  __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))

/* All-ones lanes for the first r (1..3) elements of an AVX2 tail. */
PF__T256 static inline __m256i pf__mask256(int64_t r) {
  static const int64_t lanes[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
  return _mm256_loadu_si256((const __m256i *)(lanes + 4 - r));
}

#define PF__MATH1_X86(fn, V512, V256)                                       \
  PF__T512 static void fn##_512(int64_t n, double *y, const double *x) {    \
    int64_t k = 0;                                                          \
    for (; k + 8 <= n; k += 8)                                              \
      _mm512_storeu_pd(y + k, V512(_mm512_loadu_pd(x + k)));                \
    if (k < n) {                                                            \
      __mmask8 m = (__mmask8)((1u << (n - k)) - 1);                         \
      _mm512_mask_storeu_pd(y + k, m, V512(_mm512_maskz_loadu_pd(m, x + k)));\
    }                                                                       \
  }                                                                         \
  PF__T256 static void fn##_256(int64_t n, double *y, const double *x) {    \
    int64_t k = 0;                                                          \
    for (; k + 4 <= n; k += 4)                                              \
      _mm256_storeu_pd(y + k, V256(_mm256_loadu_pd(x + k)));                \
    if (k < n) {                                                            \
      __m256i m = pf__mask256(n - k);                                       \
      _mm256_maskstore_pd(y + k, m, V256(_mm256_maskload_pd(x + k, m)));    \
    }                                                                       \
  }

#define PF__MATH2_X86(fn, V512, V256)                                       \
  PF__T512 static void fn##_512(int64_t n, double *y, const double *x,      \
                                const double *z) {                          \
    int64_t k = 0;                                                          \
    for (; k + 8 <= n; k += 8)                                              \
      _mm512_storeu_pd(y + k, V512(_mm512_loadu_pd(x + k),                  \
                                   _mm512_loadu_pd(z + k)));                \
    if (k < n) {                                                            \
      __mmask8 m = (__mmask8)((1u << (n - k)) - 1);                         \
      _mm512_mask_storeu_pd(y + k, m,                                       \
                            V512(_mm512_maskz_loadu_pd(m, x + k),           \
                                 _mm512_maskz_loadu_pd(m, z + k)));         \
    }                                                                       \
  }                                                                         \
  PF__T256 static void fn##_256(int64_t n, double *y, const double *x,      \
                                const double *z) {                          \
    int64_t k = 0;                                                          \
    for (; k + 4 <= n; k += 4)                                              \
      _mm256_storeu_pd(y + k, V256(_mm256_loadu_pd(x + k),                  \
                                   _mm256_loadu_pd(z + k)));                \
    if (k < n) {                                                            \
      __m256i m = pf__mask256(n - k);                                       \
      _mm256_maskstore_pd(y + k, m, V256(_mm256_maskload_pd(x + k, m),      \
                                         _mm256_maskload_pd(z + k, m)));    \
    }                                                                       \
  }

/* libmvec's vector ABI names: 'e' = AVX-512 (8 lanes), 'd' = AVX2 (4). The
 * target attributes make the vector registers part of their ABI. */
#define PF__MVEC1_DECL(fn)                           \
  PF__T512 __m512d _ZGVeN8v_##fn(__m512d);           \
  PF__T256 __m256d _ZGVdN4v_##fn(__m256d);
#define PF__MVEC2_DECL(fn)                           \
  PF__T512 __m512d _ZGVeN8vv_##fn(__m512d, __m512d); \
  PF__T256 __m256d _ZGVdN4vv_##fn(__m256d, __m256d);

/* Functions with an instruction of their own. */
#define PF__V512_sqrt(v) _mm512_sqrt_pd(v)
#define PF__V512_floor(v) \
  _mm512_roundscale_pd(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define PF__V512_ceil(v) \
  _mm512_roundscale_pd(v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC)
#define PF__V512_trunc(v) \
  _mm512_roundscale_pd(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)
#define PF__V512_rint(v) _mm512_roundscale_pd(v, _MM_FROUND_CUR_DIRECTION)
#define PF__V256_sqrt(v) _mm256_sqrt_pd(v)
#define PF__V256_floor(v) \
  _mm256_round_pd(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define PF__V256_ceil(v) \
  _mm256_round_pd(v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC)
#define PF__V256_trunc(v) \
  _mm256_round_pd(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)
#define PF__V256_rint(v) _mm256_round_pd(v, _MM_FROUND_CUR_DIRECTION)

#define PF__GEN_MVEC1(fn) \
  PF__MVEC1_DECL(fn)      \
  PF__MATH1_X86(fn, _ZGVeN8v_##fn, _ZGVdN4v_##fn) PF__MATH1_SCALAR(fn)
#define PF__GEN_MVEC2(fn) \
  PF__MVEC2_DECL(fn)      \
  PF__MATH2_X86(fn, _ZGVeN8vv_##fn, _ZGVdN4vv_##fn) PF__MATH2_SCALAR(fn)
#define PF__GEN_INTR1(fn) \
  PF__MATH1_X86(fn, PF__V512_##fn, PF__V256_##fn) PF__MATH1_SCALAR(fn)

#define PF__MATH1_CALL(fn, isa, n, y, x)          \
  do {                                            \
    if ((isa) == PF__ISA_AVX512)                  \
      fn##_512(n, y, x);                          \
    else if ((isa) == PF__ISA_AVX2)               \
      fn##_256(n, y, x);                          \
    else                                          \
      fn##_1(n, y, x);                            \
  } while (0)
#define PF__MATH2_CALL(fn, isa, n, y, x, z)       \
  do {                                            \
    if ((isa) == PF__ISA_AVX512)                  \
      fn##_512(n, y, x, z);                       \
    else if ((isa) == PF__ISA_AVX2)               \
      fn##_256(n, y, x, z);                       \
    else                                          \
      fn##_1(n, y, x, z);                         \
  } while (0)

int pf__vm_isa(void) {
  __builtin_cpu_init(); /* idempotent; callers may run before constructors */
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    return PF__ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return PF__ISA_AVX2;
  return PF__ISA_SCALAR;
}

#else /* not x86-64: libm only */

#define PF__GEN_MVEC1(fn) PF__MATH1_SCALAR(fn)
#define PF__GEN_MVEC2(fn) PF__MATH2_SCALAR(fn)
#define PF__GEN_INTR1(fn) PF__MATH1_SCALAR(fn)
#define PF__MATH1_CALL(fn, isa, n, y, x) fn##_1(n, y, x)
#define PF__MATH2_CALL(fn, isa, n, y, x, z) fn##_1(n, y, x, z)

int pf__vm_isa(void) { return PF__ISA_SCALAR; }

#endif

/* One set of functions per float function of the opcode table. */
#define PF__GEN(name, shape, sym, out, in, flags, ...) \
  PF__GEN_##shape(__VA_ARGS__)
#define PF__GEN_UN(...)
#define PF__GEN_BIN(...)
#define PF__GEN_BINX(...)
#define PF__GEN_NOP(...)
#define PF__GEN_INDEX(...)
#define PF__GEN_SPECIAL(...)
#define PF__GEN_RANDOM(...)
PF__EXPR_OPCODES(PF__GEN)

/* -------------------------------------------------------- index variables */

/* d[t] = v + t for t < run. Floats: exact while values stay below 2**53,
 * which the callers check; the int32 counter lets the conversion vectorise. */
PF__INLINE void ramp_i(int64_t *d, int64_t v, int64_t run) {
  PF__SIMD for (int64_t t = 0; t < run; t++) d[t] = v + t;
}
PF__INLINE void ramp_f(double *d, int64_t v, int64_t run) {
  const double base = (double)v;
  const int32_t m = (int32_t)run;
  PF__SIMD for (int32_t t = 0; t < m; t++) d[t] = base + (double)t;
}

#define PF__EXACT_LIMIT (INT64_C(1) << 53)

/* The values of index variable `axis` over the block's n elements: runs of
 * `inner` equal values (a ramp when inner is 1), wrapping at the axis end. */
#define PF__GEN_AXIS(NAME, T, RAMP)                                          \
  PF__INLINE void NAME(const pf__vm_block *blk, int axis, int64_t n, T *d) {  \
    const int64_t len = blk->shape[axis], inner = blk->inner[axis];          \
    int64_t v = blk->index[axis];                                            \
    if (inner == 1) {                                                        \
      for (int64_t k = 0; k < n; v = 0) {                                    \
        int64_t run = len - v < n - k ? len - v : n - k;                     \
        if (sizeof(T) == sizeof(int64_t) || len <= PF__EXACT_LIMIT) {        \
          RAMP(d + k, v, run);                                               \
        } else {                                                             \
          for (int64_t t = 0; t < run; t++) d[k + t] = (T)(v + t);           \
        }                                                                    \
        k += run;                                                            \
      }                                                                      \
      return;                                                                \
    }                                                                        \
    /* Elements of the current run already passed before the block. */      \
    int64_t off = 0;                                                         \
    for (int e = axis + 1; e < blk->ndim; e++)                               \
      off += blk->index[e] * blk->inner[e];                                  \
    for (int64_t k = 0, run = inner - off; k < n; run = inner) {             \
      const int64_t m = run < n - k ? run : n - k;                           \
      const T x = (T)v;                                                      \
      PF__SIMD for (int64_t t = 0; t < m; t++) d[k + t] = x;                 \
      k += m;                                                                \
      v = v + 1 == len ? 0 : v + 1;                                          \
    }                                                                        \
  }
PF__GEN_AXIS(axis_i, int64_t, ramp_i)
PF__GEN_AXIS(axis_f, double, ramp_f)

PF__INLINE void flat_f(const pf__vm_block *blk, int64_t n, double *d) {
  if (blk->start + n <= PF__EXACT_LIMIT) {
    ramp_f(d, blk->start, n);
  } else {
    for (int64_t t = 0; t < n; t++) d[t] = (double)(blk->start + t);
  }
}

/* ------------------------------------------------------------- execution */

#define PF__EXEC_UN(out, in, flags, ...)                \
  {                                                     \
    PF__CT(out) *d_ = dst;                              \
    const PF__CT(in) *x_ = pa;                          \
    PF__SIMD for (int64_t k = 0; k < n; k++) {          \
      const PF__CT(in) a = x_[k];                       \
      d_[k] = (PF__CT(out))(__VA_ARGS__);               \
    }                                                   \
  }                                                     \
  break;

#define PF__BIN_LOOPS(PRAGMA, out, in, flags, ...)                           \
  {                                                                          \
    PF__CT(out) *d_ = dst;                                                   \
    const PF__CT(in) *x_ = pa, *y_ = pb;                                     \
    /* Checked first: the destination may be the operand's register. */     \
    if (((flags) & PF__OPF_NONNEG_B) &&                                      \
        any_negative((const void *)y_, ins->variant == PF__VS ? 1 : n)) {    \
      *fail_pos = ins->pos;                                                  \
      return PF_ETYPE;                                                       \
    }                                                                        \
    if (ins->variant == PF__VV) {                                            \
      PRAGMA for (int64_t k = 0; k < n; k++) {                               \
        const PF__CT(in) a = x_[k], b = y_[k];                               \
        d_[k] = (PF__CT(out))(__VA_ARGS__);                                  \
      }                                                                      \
    } else if (ins->variant == PF__VS) {                                     \
      const PF__CT(in) b = y_[0];                                            \
      PRAGMA for (int64_t k = 0; k < n; k++) {                               \
        const PF__CT(in) a = x_[k];                                          \
        d_[k] = (PF__CT(out))(__VA_ARGS__);                                  \
      }                                                                      \
    } else {                                                                 \
      const PF__CT(in) a = x_[0];                                            \
      PRAGMA for (int64_t k = 0; k < n; k++) {                               \
        const PF__CT(in) b = y_[k];                                          \
        d_[k] = (PF__CT(out))(__VA_ARGS__);                                  \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  break;

#define PF__EXEC_BIN(out, in, flags, ...) \
  PF__BIN_LOOPS(PF__SIMD, out, in, flags, __VA_ARGS__)
#define PF__EXEC_BINX(out, in, flags, ...) \
  PF__BIN_LOOPS(, out, in, flags, __VA_ARGS__)
#define PF__EXEC_MVEC1(out, in, flags, fn) \
  PF__MATH1_CALL(fn, env->isa, n, (double *)dst, (const double *)pa); break;
#define PF__EXEC_INTR1(out, in, flags, fn) PF__EXEC_MVEC1(out, in, flags, fn)
#define PF__EXEC_MVEC2(out, in, flags, fn)                           \
  PF__MATH2_CALL(fn, env->isa, n, (double *)dst, (const double *)pa, \
                 (const double *)pb);                                \
  break;
#define PF__EXEC_INDEX(out, in, flags, ...) \
  exec_index(ins, n, dst, env->block);      \
  break;
#define PF__EXEC_SPECIAL(out, in, flags, ...) \
  exec_special(ins, n, dst, pa, pb, pc);      \
  break;
/* Never emitted: NOPs are resolved away. */
#define PF__EXEC_NOP(out, in, flags, ...) \
  assert(!"NOP opcode emitted");          \
  break;
/* One call per block with its first flat index: philox.h's values depend
 * on (key, stream, idx) only, whatever the block boundaries. */
#define PF__EXEC_RANDOM(out, in, flags, fn)                                 \
  {                                                                         \
    assert(env->block != NULL && "random values are never scalar");         \
    const uint64_t key_[2] = {(uint64_t) * (const int64_t *)pb,             \
                              (uint64_t) * (const int64_t *)pc};            \
    fn(key_, (uint64_t) * (const int64_t *)pa, env->block->start, n,        \
       (double *)dst);                                                      \
  }                                                                         \
  break;

/* Only called for integer operands (PF__OPF_NONNEG_B). */
PF__INLINE int any_negative(const void *operand, int64_t n) {
  const int64_t *b = operand;
  int64_t neg = 0;
  PF__SIMD for (int64_t k = 0; k < n; k++) neg |= b[k];
  return neg < 0;
}

PF__INLINE void exec_index(const pf__instr *ins, int64_t n, void *dst,
                       const pf__vm_block *blk) {
  assert(blk != NULL && "index variables are never scalar");
  switch (ins->op) {
    case PF__OP_AXIS_I:
      axis_i(blk, ins->axis, n, dst);
      break;
    case PF__OP_AXIS_F:
      axis_f(blk, ins->axis, n, dst);
      break;
    case PF__OP_FLAT_I:
      ramp_i(dst, blk->start, n);
      break;
    case PF__OP_FLAT_F:
      flat_f(blk, n, dst);
      break;
    default:
      assert(!"not an index opcode");
  }
}

PF__INLINE void exec_special(const pf__instr *ins, int64_t n, void *dst,
                         const void *pa, const void *pb, const void *pc) {
  switch (ins->op) {
    case PF__OP_BCAST_I: {
      int64_t *d = dst;
      const int64_t v = *(const int64_t *)pa;
      PF__SIMD for (int64_t k = 0; k < n; k++) d[k] = v;
      break;
    }
    case PF__OP_BCAST_F: {
      double *d = dst;
      const double v = *(const double *)pa;
      PF__SIMD for (int64_t k = 0; k < n; k++) d[k] = v;
      break;
    }
    case PF__OP_WHERE_I: {
      int64_t *d = dst;
      const int64_t *c = pa, *x = pb, *y = pc;
      PF__SIMD for (int64_t k = 0; k < n; k++) d[k] = c[k] ? x[k] : y[k];
      break;
    }
    case PF__OP_WHERE_F: {
      double *d = dst;
      const int64_t *c = pa;
      const double *x = pb, *y = pc;
      PF__SIMD for (int64_t k = 0; k < n; k++) d[k] = c[k] ? x[k] : y[k];
      break;
    }
    default:
      assert(!"not a special opcode");
  }
}

PF__INLINE void *operand(const pf__vm_env *env, int in_slot, int32_t index) {
  if (index < 0) return NULL;
  if (in_slot) return &env->slots[index];
  return env->regs + (size_t)index * (size_t)env->reg_len * 8;
}

/* One instruction over n elements; compiled once per instruction set. */
#define PF__DEFINE_EXEC(SUFFIX, ATTRIBUTES)                                  \
  ATTRIBUTES static int exec_##SUFFIX(const pf__instr *ins,                  \
                                      const pf__vm_env *env, int64_t n,      \
                                      void *dst, int32_t *fail_pos) {        \
    const void *pa = operand(env, ins->slots & PF__LOC_A, ins->a);           \
    const void *pb = operand(env, ins->slots & PF__LOC_B, ins->b);           \
    const void *pc = operand(env, ins->slots & PF__LOC_C, ins->c);           \
    switch ((pf__opcode)ins->op) {                                           \
      PF__EXPR_OPCODES(PF__CASE)                                             \
      case PF__OP_COUNT:                                                     \
        assert(!"invalid opcode");                                           \
        break;                                                               \
    }                                                                        \
    return 0;                                                                \
  }
#define PF__CASE(name, shape, sym, out, in, flags, ...) \
  case PF__OP_##name:                                   \
    PF__EXEC_##shape(out, in, flags, __VA_ARGS__)
PF__DEFINE_EXEC(base, )
#if PF__X86
PF__DEFINE_EXEC(avx2, PF__T256)
PF__DEFINE_EXEC(avx512, PF__TVM512)
#endif
#undef PF__CASE

int pf__vm_exec(const pf__instr *code, int32_t ncode, const pf__vm_env *env,
                int64_t n, void *last_dst, int32_t *fail_pos) {
  assert(n >= 1 && (env->block == NULL ? n == 1 : n <= env->reg_len));
  for (int32_t t = 0; t < ncode; t++) {
    const pf__instr *ins = &code[t];
    void *dst = t == ncode - 1 && last_dst != NULL
                    ? last_dst
                    : operand(env, ins->slots & PF__LOC_DST, ins->dst);
#if PF__X86
    int rc = env->isa == PF__ISA_AVX512
                 ? exec_avx512(ins, env, n, dst, fail_pos)
             : env->isa == PF__ISA_AVX2 ? exec_avx2(ins, env, n, dst, fail_pos)
                                        : exec_base(ins, env, n, dst, fail_pos);
#else
    int rc = exec_base(ins, env, n, dst, fail_pos);
#endif
    if (rc != 0) return rc;
  }
  return 0;
}

/* ---------------------------------------------------------- output casts */

/* Float to integer as NumPy's astype does on x86-64, without undefined
 * behaviour: out-of-range and NaN give the "integer indefinite" value of
 * cvttsd2si (INT_MIN); narrower types truncate the 32-bit conversion;
 * unsigned types subtract 2**(bits-1) first when the value is that large.
 * (uint32 follows NumPy's vectorised loop; its scalar loop differs for
 * values out of range.) */
PF__INLINE int32_t cvt32(double x) {
  return x > -2147483649.0 && x < 2147483648.0 ? (int32_t)x : INT32_MIN;
}
PF__INLINE int64_t cvt64(double x) {
  return x >= -0x1p63 && x < 0x1p63 ? (int64_t)x : INT64_MIN;
}
PF__INLINE uint32_t cvt_u32(double x) {
  return x >= 0x1p31 ? (uint32_t)cvt32(x - 0x1p31) ^ UINT32_C(0x80000000)
                     : (uint32_t)cvt32(x);
}
PF__INLINE uint64_t cvt_u64(double x) {
  return x >= 0x1p63 ? (uint64_t)cvt64(x - 0x1p63) ^ (UINT64_C(1) << 63)
                     : (uint64_t)cvt64(x);
}

/* Rounds to the nearest half, ties to even, overflowing to inf; NaN keeps
 * its sign and top payload bits (as NumPy's npy_double_to_half). */
PF__INLINE uint16_t half_from_double(double x) {
  uint64_t d;
  memcpy(&d, &x, sizeof d);
  const uint16_t sign = (uint16_t)((d >> 48) & 0x8000u);
  const uint64_t exp = (d >> 52) & 0x7ff;
  const uint64_t man = d & ((UINT64_C(1) << 52) - 1);
  if (exp == 0x7ff) {
    if (man == 0) return sign | 0x7c00u;
    uint16_t h = (uint16_t)(0x7c00u + (man >> 42));
    return sign | (h == 0x7c00u ? 0x7c01u : h);
  }
  const int e = (int)exp - 1023;
  if (e >= 16) return sign | 0x7c00u;
  if (e < -25) return sign;
  /* Normal halves keep the biased exponent above the 52 fraction bits, so
   * rounding carries into it (up to inf); subnormals are m * 2**-24. */
  uint64_t v;
  int shift;
  if (e >= -14) {
    v = ((uint64_t)(e + 15) << 52) | man;
    shift = 42;
  } else {
    v = man | (UINT64_C(1) << 52);
    shift = 28 - e;
  }
  uint64_t h = v >> shift;
  const uint64_t rest = v & ((UINT64_C(1) << shift) - 1);
  const uint64_t half = UINT64_C(1) << (shift - 1);
  if (rest > half || (rest == half && (h & 1))) h++;
  return sign | (uint16_t)h;
}

typedef struct {
  float re, im;
} pf__c64;
typedef struct {
  double re, im;
} pf__c128;
/* long double's value bytes, padding zeroed: x86's 80-bit format fills 10
 * of its 16 bytes, and a copy of a long double variable would carry
 * whatever the stack held in the other 6 (a .npy file would then differ
 * from run to run). */
#if LDBL_MANT_DIG == 64
#define PF__LD_VALUE_BYTES 10
#else
#define PF__LD_VALUE_BYTES sizeof(long double)
#endif
typedef struct {
  unsigned char b[sizeof(long double)];
} pf__ld;
typedef struct {
  pf__ld re, im;
} pf__c256;
PF__INLINE pf__ld ld_bytes(long double x) {
  pf__ld r;
  memset(&r, 0, sizeof r);
  memcpy(&r, &x, PF__LD_VALUE_BYTES);
  return r;
}

/* X(dtype, C type, from int64 x, from double x) */
#define PF__STORES(X)                                                       \
  X(PF_BOOL, uint8_t, (uint8_t)(x != 0), (uint8_t)(x != 0))                 \
  X(PF_INT8, int8_t, (int8_t)x, (int8_t)cvt32(x))                           \
  X(PF_INT16, int16_t, (int16_t)x, (int16_t)cvt32(x))                       \
  X(PF_INT32, int32_t, (int32_t)x, cvt32(x))                                \
  X(PF_INT64, int64_t, x, cvt64(x))                                         \
  X(PF_UINT8, uint8_t, (uint8_t)x, (uint8_t)cvt32(x))                       \
  X(PF_UINT16, uint16_t, (uint16_t)x, (uint16_t)cvt32(x))                   \
  X(PF_UINT32, uint32_t, (uint32_t)x, cvt_u32(x))                           \
  X(PF_UINT64, uint64_t, (uint64_t)x, cvt_u64(x))                           \
  X(PF_FLOAT16, uint16_t, half_from_double((double)x), half_from_double(x)) \
  X(PF_FLOAT32, float, (float)x, (float)x)                                  \
  X(PF_FLOAT64, double, (double)x, x)                                       \
  X(PF_LONGDOUBLE, pf__ld, ld_bytes((long double)x), ld_bytes((long double)x)) \
  X(PF_COMPLEX64, pf__c64, ((pf__c64){(float)x, 0.0f}),                     \
    ((pf__c64){(float)x, 0.0f}))                                            \
  X(PF_COMPLEX128, pf__c128, ((pf__c128){(double)x, 0.0}),                  \
    ((pf__c128){x, 0.0}))                                                   \
  X(PF_CLONGDOUBLE, pf__c256,                                                \
    ((pf__c256){ld_bytes((long double)x), ld_bytes(0.0L)}),                 \
    ((pf__c256){ld_bytes((long double)x), ld_bytes(0.0L)}))

/* Copies the first element over the rest, doubling the copied span. */
PF__INLINE void replicate(char *out, size_t itemsize, int64_t n) {
  size_t total = (size_t)n * itemsize;
  for (size_t filled = itemsize; filled < total; filled *= 2)
    memcpy(out + filled, out,
           filled < total - filled ? filled : total - filled);
}

#define PF__STORE_LOOP(SRC_T, DST_T, CONV)                        \
  {                                                               \
    const SRC_T *s_ = src;                                        \
    if (broadcast) {                                              \
      const SRC_T x = s_[0];                                      \
      const DST_T v = CONV;                                       \
      memcpy(o, &v, sizeof v);                                    \
      replicate(o, sizeof v, n);                                  \
    } else {                                                      \
      PF__SIMD for (int64_t k = 0; k < n; k++) {                  \
        const SRC_T x = s_[k];                                    \
        const DST_T v = CONV;                                     \
        memcpy(o + k * (int64_t)sizeof v, &v, sizeof v);          \
      }                                                           \
    }                                                             \
  }

#define PF__STORE_CASE(dt, ctype, from_int, from_float) \
  case dt:                                              \
    if (type == PF__T_F)                                \
      PF__STORE_LOOP(double, ctype, from_float)         \
    else                                                \
      PF__STORE_LOOP(int64_t, ctype, from_int)          \
    break;
#define PF__DEFINE_STORE(SUFFIX, ATTRIBUTES)                                 \
  ATTRIBUTES static void store_##SUFFIX(pf__type type, const void *src,      \
                                        int broadcast, int64_t n,            \
                                        pf_dtype dtype, char *o) {           \
    switch (dtype) {                                                         \
      PF__STORES(PF__STORE_CASE)                                             \
      case PF_DTYPE_COUNT:                                                   \
        assert(!"invalid dtype");                                            \
        break;                                                               \
    }                                                                        \
  }
PF__DEFINE_STORE(base, )
#if PF__X86
PF__DEFINE_STORE(avx2, PF__T256)
PF__DEFINE_STORE(avx512, PF__TVM512)
#endif

void pf__vm_store(pf__type type, const void *src, int broadcast, int64_t n,
                  pf_dtype dtype, void *out, int isa) {
  if (n <= 0) return;
#if PF__X86
  if (isa == PF__ISA_AVX512)
    store_avx512(type, src, broadcast, n, dtype, out);
  else if (isa == PF__ISA_AVX2)
    store_avx2(type, src, broadcast, n, dtype, out);
  else
#endif
    store_base(type, src, broadcast, n, dtype, out);
}

/* --------------------------------------------------------- streaming */

#if PF__X86
PF__T512 static void stream_512(char *dst, const char *src, size_t bytes) {
  for (size_t k = 0; k < bytes; k += 64)
    _mm512_stream_si512((void *)(dst + k),
                        _mm512_loadu_si512((const void *)(src + k)));
}
#endif

/* Non-temporal stores bypass the cache: an output much larger than the
 * cache is written once, without first reading each line in (which plain
 * stores do), nearly halving the memory traffic. */
void pf__vm_stream(void *dst, const void *src, size_t bytes, int isa) {
  char *d = dst;
  const char *s = src;
#if PF__X86
  size_t head = (size_t)(-(uintptr_t)d & 63);
  if (head > bytes) head = bytes;
  memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  size_t body = bytes & ~(size_t)63;
  if (isa == PF__ISA_AVX512) {
    stream_512(d, s, body);
  } else {
    for (size_t k = 0; k < body; k += 16)
      _mm_stream_si128((__m128i *)(d + k),
                       _mm_loadu_si128((const __m128i *)(s + k)));
  }
  d += body;
  s += body;
  bytes -= body;
#else
  (void)isa;
#endif
  memcpy(d, s, bytes);
}

void pf__vm_stream_fence(void) {
#if PF__X86
  _mm_sfence();
#endif
}
