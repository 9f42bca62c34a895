/*
 * pyvm.c -- the translated-function VM: validation of a program, and its
 * execution over blocks of lanes (consecutive flat indices) through pf_fill.
 *
 * DESIGN
 * Programs are validated completely before they run (pf_prog_create): every
 * opcode, operand, constant, function id and jump target, forward jumps, and
 * a last instruction that ends its path, so that no input crashes the VM
 * (tests/fuzz/fuzz_pyvm.c). The instructions are then cut into basic blocks
 * (leaders: 0, every target, every instruction after a terminator) and each
 * target is rewritten as a block number.
 *
 * A kernel call runs lane blocks of up to `lanes` elements. Registers are
 * structure-of-arrays: register r of file F is `lanes` doubles, lane k at
 * [r * lanes + k], so an operation is one loop over the lanes that reach it
 * and dense loops vectorise. I0 .. I(ndim-1) are preloaded with the lanes'
 * N-d indices (ramps along the last axis, no division per element).
 *
 * Control flow: each basic block has a bit mask of the lanes waiting to run
 * it. Lane block entry sets block 0's mask to every lane; a block turns its
 * mask into a sorted lane list (dense when it is a range), clears it, runs
 * its instructions over the list, and a BR splits the list into the masks of
 * its two targets (a JMP or a fall-through passes the whole list on). The
 * next block to run is the lowest one with waiting lanes: with forward jumps
 * only (this issue) that is simply the next one in order; a back edge (a
 * loop, issue 12) just makes an earlier block the next one again, and lanes
 * that left a loop stop costing anything since the lists are rebuilt
 * (compacted) from the masks at every block entry.
 *
 * Bails: a guarded operation writes each lane's "why" code (pyvm_ops.h) into
 * `bad` and ORs them; when any is set, the lowest bailing lane m becomes the
 * lane block's limit: lanes >= m need not finish (the fill reports the
 * lowest bailing element and everything above it is recomputed), so every
 * list is cut at the limit from then on. After the lane block, a limit below
 * its count is reported with pf_fill_worker_fail(PF_EBAIL, start + m,
 * "<op>: <why>"), and the kernel stops.
 *
 * Per-worker scratch (registers, bad codes, the lane list, the masks) is
 * allocated once, by the worker on its first lane block, and freed with the
 * run. Arithmetic is pyvm_ops.h's, CPython-exact: no FMA contraction
 * (-std=c11), no fast-math, scalar libm only.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pyvm_ops.h"

#define PF__SIMD _Pragma("omp simd")

/* Lanes per lane block: registers of a block stay in L1/L2; fewer for
 * programs with very many registers. A multiple of 64 (mask words). */
#define PYVM_LANES 512
#define PYVM_MIN_LANES 64
#define PYVM_SCRATCH_BYTES (INT64_C(8) << 20)
#define PYVM_MIN_CHUNK (16 * PYVM_LANES)
#define PYVM_MAX_CHUNK (INT64_C(1) << 20)

typedef struct pyvm_ins {
  int32_t op, dst, a, b, c;
} pyvm_ins;

struct pf_prog {
  int ndim;
  int32_t nreg[3]; /* I, F, B */
  int32_t ncode;
  pyvm_ins *code;      /* targets rewritten as block numbers */
  int32_t nblocks;
  int32_t *block_first; /* nblocks + 1 entries: block b is [first[b], first[b+1]) */
  int64_t *iconsts;
  double *fconsts;
  size_t niconsts, nfconsts;
};

static const char *const op_name[] = {
#define PF__PYVM_NAME(name, sig, doc) #name,
    PF_PYVM_OPCODES(PF__PYVM_NAME)
#undef PF__PYVM_NAME
};

static const char *const op_sig[] = {
#define PF__PYVM_SIG(name, sig, doc) sig,
    PF_PYVM_OPCODES(PF__PYVM_SIG)
#undef PF__PYVM_SIG
};

int pf_prog_opcode_count(void) { return PF__OP_COUNT; }

const char *pf_prog_opcode_name(int op) {
  return op >= 0 && op < PF__OP_COUNT ? op_name[op] : NULL;
}

int pf_prog_function_count(void) { return PF__FN_COUNT; }

const char *pf_prog_function_name(int fn, int *arity) {
  if (arity != NULL) *arity = pf__py_math_arity(fn);
  return pf__py_math_name(fn);
}

static int is_terminator(int op) {
  return op == PF__OP_JMP || op == PF__OP_BR || op == PF__OP_RET_I ||
         op == PF__OP_RET_F || op == PF__OP_RET_B || op == PF__OP_BAIL;
}

/* ----------------------------------------------------------- validation */

static const char *const word_name[] = {"dst", "a", "b", "c"};

/* Checks operand word w (value v) of instruction pc against its kind. */
static int check_operand(const pf_prog *p, int32_t pc, int op, int w,
                         int32_t v, pf_error *err) {
  char kind = op_sig[op][w];
  const char *name = op_name[op];
  int64_t bound;
  switch (kind) {
  case '-':
    if (v != 0)
      return pf__error_set(err, PF_EINVAL, pc,
                           "instruction %d (%s): unused operand %s must be 0",
                           (int)pc, name, word_name[w]);
    return 0;
  case 'I':
  case 'F':
  case 'B':
    bound = p->nreg[kind == 'I' ? 0 : kind == 'F' ? 1 : 2];
    break;
  case 'i':
    bound = (int64_t)p->niconsts;
    break;
  case 'f':
    bound = (int64_t)p->nfconsts;
    break;
  case 'm':
    bound = 2;
    break;
  case 't':
    if (v <= pc || v >= p->ncode)
      return pf__error_set(err, PF_EINVAL, pc,
                           "instruction %d (%s): jump target %d is not a "
                           "later instruction", (int)pc, name, (int)v);
    return 0;
  default: /* '1' '2': a function of that arity */
    if (pf__py_math_arity(v) != kind - '0')
      return pf__error_set(err, PF_EINVAL, pc,
                           "instruction %d (%s): %d is not a %c-argument "
                           "math function", (int)pc, name, (int)v, kind);
    return 0;
  }
  if (v < 0 || v >= bound)
    return pf__error_set(err, PF_EINVAL, pc,
                         "instruction %d (%s): operand %s = %d out of range "
                         "[0, %lld) (%c)", (int)pc, name, word_name[w],
                         (int)v, (long long)bound, kind);
  return 0;
}

/* Cuts the validated code into basic blocks and rewrites targets. */
static int make_blocks(pf_prog *p) {
  const int32_t n = p->ncode;
  int32_t *block_of = pf__calloc((size_t)n + 1, sizeof *block_of);
  if (block_of == NULL) return PF_ENOMEM;
  /* Mark leaders with 1. */
  block_of[0] = 1;
  for (int32_t pc = 0; pc < n; pc++) {
    const pyvm_ins *in = &p->code[pc];
    if (is_terminator(in->op) && pc + 1 < n) block_of[pc + 1] = 1;
    if (in->op == PF__OP_JMP) block_of[in->a] = 1;
    if (in->op == PF__OP_BR) block_of[in->b] = block_of[in->c] = 1;
  }
  int32_t nblocks = 0;
  for (int32_t pc = 0; pc < n; pc++) nblocks += block_of[pc];
  p->block_first = pf__malloc(((size_t)nblocks + 1) * sizeof *p->block_first);
  if (p->block_first == NULL) {
    free(block_of);
    return PF_ENOMEM;
  }
  int32_t b = -1;
  for (int32_t pc = 0; pc < n; pc++) {
    if (block_of[pc]) p->block_first[++b] = pc;
    block_of[pc] = b;
  }
  p->block_first[nblocks] = n;
  p->nblocks = nblocks;
  for (int32_t pc = 0; pc < n; pc++) {
    pyvm_ins *in = &p->code[pc];
    if (in->op == PF__OP_JMP) in->a = block_of[in->a];
    if (in->op == PF__OP_BR) {
      in->b = block_of[in->b];
      in->c = block_of[in->c];
    }
  }
  free(block_of);
  return 0;
}

void pf_prog_free(pf_prog *prog) {
  if (prog == NULL) return;
  free(prog->code);
  free(prog->block_first);
  free(prog->iconsts);
  free(prog->fconsts);
  free(prog);
}

int pf_prog_create(pf_prog **prog, const int32_t *code, size_t nwords,
                   const int64_t *iconsts, size_t niconsts,
                   const double *fconsts, size_t nfconsts, int ndim,
                   const int32_t nregs[3], pf_error *err) {
  if (prog == NULL) return pf__error_set(err, PF_EINVAL, -1, "no program");
  *prog = NULL;
  if (code == NULL || nregs == NULL || (iconsts == NULL && niconsts > 0) ||
      (fconsts == NULL && nfconsts > 0))
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (nwords == 0 || nwords % 5 != 0)
    return pf__error_set(err, PF_EINVAL, -1,
                         "code must be a nonzero multiple of 5 words, not %zu",
                         nwords);
  if (nwords / 5 > PF_PROG_MAX_CODE)
    return pf__error_set(err, PF_EINVAL, -1,
                         "more than %d instructions", PF_PROG_MAX_CODE);
  if (ndim < 0 || ndim > PF_MAX_DIMS)
    return pf__error_set(err, PF_EINVAL, -1, "ndim %d outside [0, %d]", ndim,
                         PF_MAX_DIMS);
  for (int f = 0; f < 3; f++)
    if (nregs[f] < 0 || nregs[f] > PF_PROG_MAX_REGS)
      return pf__error_set(err, PF_EINVAL, -1,
                           "register count %d outside [0, %d]", (int)nregs[f],
                           PF_PROG_MAX_REGS);
  if (nregs[0] < ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "%d int registers cannot hold the %d index "
                         "parameters", (int)nregs[0], ndim);
  if (niconsts > PF_PROG_MAX_CONSTS || nfconsts > PF_PROG_MAX_CONSTS)
    return pf__error_set(err, PF_EINVAL, -1, "more than %d constants",
                         PF_PROG_MAX_CONSTS);
  pf_prog *p = pf__calloc(1, sizeof *p);
  int rc = PF_ENOMEM;
  if (p == NULL) goto fail;
  p->ndim = ndim;
  memcpy(p->nreg, nregs, sizeof p->nreg);
  p->ncode = (int32_t)(nwords / 5);
  p->niconsts = niconsts;
  p->nfconsts = nfconsts;
  p->code = pf__malloc((size_t)p->ncode * sizeof *p->code);
  p->iconsts = pf__malloc((niconsts > 0 ? niconsts : 1) * sizeof *p->iconsts);
  p->fconsts = pf__malloc((nfconsts > 0 ? nfconsts : 1) * sizeof *p->fconsts);
  if (p->code == NULL || p->iconsts == NULL || p->fconsts == NULL) goto fail;
  if (niconsts > 0) memcpy(p->iconsts, iconsts, niconsts * sizeof *iconsts);
  if (nfconsts > 0) memcpy(p->fconsts, fconsts, nfconsts * sizeof *fconsts);
  for (int32_t pc = 0; pc < p->ncode; pc++) {
    const int32_t *w = code + 5 * (size_t)pc;
    if (w[0] < 0 || w[0] >= PF__OP_COUNT) {
      rc = pf__error_set(err, PF_EINVAL, pc, "instruction %d: unknown opcode "
                         "%d", (int)pc, (int)w[0]);
      goto fail;
    }
    for (int k = 0; k < 4; k++) {
      rc = check_operand(p, pc, w[0], k, w[k + 1], err);
      if (rc != 0) goto fail;
    }
    p->code[pc] = (pyvm_ins){w[0], w[1], w[2], w[3], w[4]};
  }
  if (!is_terminator(p->code[p->ncode - 1].op)) {
    rc = pf__error_set(err, PF_EINVAL, p->ncode - 1,
                       "the last instruction (%s) does not end its path: "
                       "control would run off the end",
                       op_name[p->code[p->ncode - 1].op]);
    goto fail;
  }
  rc = make_blocks(p);
  if (rc != 0) goto fail;
  *prog = p;
  return 0;
fail:
  if (rc == PF_ENOMEM) pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  pf_prog_free(p);
  return rc;
}

/* ------------------------------------------------------------- running */

typedef struct pyvm_scratch {
  char *mem;
  int64_t *ireg;
  double *freg;
  uint8_t *breg;
  uint8_t *bad;
  int32_t *list;
  uint64_t *masks; /* nblocks * words */
} pyvm_scratch;

typedef struct pyvm_run {
  const pf_prog *p;
  pf_dtype dtype;
  size_t itemsize;
  int64_t shape[PF_MAX_DIMS];
  int lanes; /* per lane block, a multiple of 64 */
  int words; /* mask words per block: lanes / 64 */
  int workers;
  pyvm_scratch *w;
} pyvm_run;

static int scratch_alloc(const pyvm_run *r, pyvm_scratch *s) {
  const pf_prog *p = r->p;
  size_t L = (size_t)r->lanes;
  size_t bytes_i = (size_t)p->nreg[0] * L * 8, bytes_f = (size_t)p->nreg[1] * L * 8;
  size_t bytes_b = ((size_t)p->nreg[2] * L + 63) & ~(size_t)63;
  size_t bytes_bad = (L + 63) & ~(size_t)63, bytes_list = L * 4;
  size_t bytes_masks = (size_t)p->nblocks * (size_t)r->words * 8;
  size_t total = bytes_i + bytes_f + bytes_b + bytes_bad + bytes_list +
                 bytes_masks;
  s->mem = pf__aligned_alloc(64, total);
  if (s->mem == NULL) return PF_ENOMEM;
  /* Registers read before a path writes them hold zeros or an earlier
   * lane's values, never uninitialised memory. */
  memset(s->mem, 0, total);
  char *m = s->mem;
  s->ireg = (int64_t *)m;
  s->freg = (double *)(m += bytes_i);
  s->breg = (uint8_t *)(m += bytes_f);
  s->bad = (uint8_t *)(m += bytes_b);
  s->list = (int32_t *)(m += bytes_bad);
  s->masks = (uint64_t *)(m += bytes_list);
  return 0;
}

/* Preloads I0 .. I(ndim-1) of lanes [0, n) with the N-d indices from flat
 * index `start`: runs along the last axis. */
static void preload_index(const pyvm_run *r, pyvm_scratch *s, int64_t start,
                          int n) {
  const int ndim = r->p->ndim;
  if (ndim == 0) return;
  const size_t L = (size_t)r->lanes;
  int64_t idx[PF_MAX_DIMS];
  pf_index_unravel(ndim, r->shape, start, idx);
  const int last = ndim - 1;
  int k = 0;
  while (k < n) {
    int64_t left = r->shape[last] - idx[last];
    int run = left < n - k ? (int)left : n - k;
    for (int d = 0; d < last; d++) {
      int64_t *reg = s->ireg + (size_t)d * L;
      const int64_t v = idx[d];
      PF__SIMD
      for (int j = k; j < k + run; j++) reg[j] = v;
    }
    int64_t *reg = s->ireg + (size_t)last * L;
    const int64_t base = idx[last] - k;
    PF__SIMD
    for (int j = k; j < k + run; j++) reg[j] = base + j;
    k += run;
    idx[last] += run;
    for (int d = last; d > 0 && idx[d] == r->shape[d]; d--) {
      idx[d] = 0;
      idx[d - 1]++;
    }
  }
}

/* Lanes of mask `m` below `limit`, in order, into list; returns how many. */
static int mask_to_list(const uint64_t *m, int words, int limit,
                        int32_t *list) {
  int cnt = 0;
  for (int w = 0; w < words && w * 64 < limit; w++) {
    uint64_t bits = m[w];
    while (bits != 0) {
      int k = w * 64 + __builtin_ctzll(bits);
      if (k >= limit) return cnt;
      list[cnt++] = k;
      bits &= bits - 1;
    }
  }
  return cnt;
}

static void list_to_mask(const int32_t *list, int cnt, int dense, int lo,
                         uint64_t *m) {
  if (dense) {
    for (int k = lo; k < lo + cnt; k++) m[k >> 6] |= UINT64_C(1) << (k & 63);
  } else {
    for (int j = 0; j < cnt; j++)
      m[list[j] >> 6] |= UINT64_C(1) << (list[j] & 63);
  }
}

/* A lane block's state while its program runs. */
typedef struct lane_state {
  int limit;   /* lanes at and past it need not finish */
  int why;     /* the lowest bail's code and instruction */
  int32_t why_pc;
} lane_state;

/* Runs one lane block of n lanes; the outputs of lane k go to out + k *
 * itemsize. Fills st (st->limit < n: lane st->limit bailed). */
static void run_lanes(const pyvm_run *r, pyvm_scratch *s, int n, char *out,
                      lane_state *st) {
  const pf_prog *p = r->p;
  const size_t L = (size_t)r->lanes;
  const int words = r->words;
  const size_t isz = r->itemsize;
  const pf_dtype dtype = r->dtype;
  int64_t *const IR = s->ireg;
  double *const FR = s->freg;
  uint8_t *const BR_ = s->breg;
  uint8_t *const bad = s->bad;
  int32_t *const list = s->list;
  st->limit = n;
  st->why = 0;
  st->why_pc = -1;
  memset(s->masks, 0, (size_t)p->nblocks * (size_t)words * 8);
  for (int k = 0; k < n; k++) s->masks[k >> 6] |= UINT64_C(1) << (k & 63);

  for (int32_t b = 0; b < p->nblocks; b++) {
    uint64_t *mask = s->masks + (size_t)b * (size_t)words;
    int cnt = mask_to_list(mask, words, st->limit, list);
    memset(mask, 0, (size_t)words * 8);
    if (cnt == 0) continue;
    int lo = list[0];
    int dense = list[cnt - 1] - lo + 1 == cnt;
    int hi = lo + cnt;
    int32_t pc = p->block_first[b];
    const int32_t end = p->block_first[b + 1];
    int fell_through = 1;
    for (; pc < end && cnt > 0; pc++) {
      const pyvm_ins *in = &p->code[pc];
      int fail = 0;
      /* Register pointers by file; only those the op's signature names are
       * meaningful (others point at register 0 harmlessly). */
#define RI(x) (IR + (size_t)(x) * L)
#define RF(x) (FR + (size_t)(x) * L)
#define RB(x) (BR_ + (size_t)(x) * L)
#define LANES(BODY)                                                         \
  do {                                                                      \
    if (dense) {                                                            \
      PF__SIMD for (int k = lo; k < hi; k++) { BODY }                       \
    } else {                                                                \
      for (int j = 0; j < cnt; j++) {                                       \
        const int k = list[j];                                              \
        BODY                                                                \
      }                                                                     \
    }                                                                       \
  } while (0)
/* LANES for a guarded BODY that vectorises: `fail` is an OR reduction. */
#define LANES_OR(BODY)                                                      \
  do {                                                                      \
    if (dense) {                                                            \
      _Pragma("omp simd reduction(|:fail)")                                 \
      for (int k = lo; k < hi; k++) { BODY }                                \
    } else {                                                                \
      for (int j = 0; j < cnt; j++) {                                       \
        const int k = list[j];                                              \
        BODY                                                                \
      }                                                                     \
    }                                                                       \
  } while (0)
/* A loop whose BODY may call libm (not marked simd: scalar calls only). */
#define LANES_CALL(BODY)                                                    \
  do {                                                                      \
    if (dense) {                                                            \
      for (int k = lo; k < hi; k++) { BODY }                                \
    } else {                                                                \
      for (int j = 0; j < cnt; j++) {                                       \
        const int k = list[j];                                              \
        BODY                                                                \
      }                                                                     \
    }                                                                       \
  } while (0)
/* BODY sets `why` (0: fine) for lane k. */
#define GUARDED(LOOP, BODY)                                                 \
  LOOP({                                                                    \
    int why = 0;                                                            \
    BODY;                                                                   \
    bad[k] = (uint8_t)why;                                                  \
    fail |= why;                                                            \
  })
#define IBIN(FN)                                                            \
  do {                                                                      \
    int64_t *d = RI(in->dst), *x = RI(in->a), *y = RI(in->b);              \
    GUARDED(LANES_CALL, why = FN(x[k], y[k], &d[k]));                       \
  } while (0)
#define IUN(FN)                                                             \
  do {                                                                      \
    int64_t *d = RI(in->dst), *x = RI(in->a);                               \
    GUARDED(LANES_CALL, why = FN(x[k], &d[k]));                             \
  } while (0)
#define FBIN_PURE(EXPR)                                                     \
  do {                                                                      \
    double *d = RF(in->dst), *x = RF(in->a), *y = RF(in->b);               \
    LANES(d[k] = EXPR;);                                                    \
  } while (0)
#define FBIN(FN)                                                            \
  do {                                                                      \
    double *d = RF(in->dst), *x = RF(in->a), *y = RF(in->b);               \
    GUARDED(LANES_CALL, why = FN(x[k], y[k], &d[k]));                       \
  } while (0)
#define F2I(FN)                                                             \
  do {                                                                      \
    int64_t *d = RI(in->dst);                                               \
    double *x = RF(in->a);                                                  \
    GUARDED(LANES_CALL, why = FN(x[k], &d[k]));                             \
  } while (0)
#define CMP(REG_A, REG_B, EXPR)                                             \
  do {                                                                      \
    uint8_t *d = RB(in->dst);                                               \
    __typeof__(REG_A(0)) x = REG_A(in->a);                                  \
    __typeof__(REG_B(0)) y = REG_B(in->b);                                  \
    LANES(d[k] = (uint8_t)(EXPR););                                         \
  } while (0)
#define CMP6(P, REG_A, REG_B)                                               \
  case PF__OP_##P##_LT: CMP(REG_A, REG_B, x[k] < y[k]); break;              \
  case PF__OP_##P##_LE: CMP(REG_A, REG_B, x[k] <= y[k]); break;             \
  case PF__OP_##P##_EQ: CMP(REG_A, REG_B, x[k] == y[k]); break;             \
  case PF__OP_##P##_NE: CMP(REG_A, REG_B, x[k] != y[k]); break;             \
  case PF__OP_##P##_GT: CMP(REG_A, REG_B, x[k] > y[k]); break;              \
  case PF__OP_##P##_GE: CMP(REG_A, REG_B, x[k] >= y[k]); break;
/* int vs float: s = sign of (int - float), 2 when the float is NaN. */
#define CMPIF(OP, REG_A, REG_B, I, F, SIGN, TEST)                           \
  case OP: {                                                                \
    uint8_t *d = RB(in->dst);                                               \
    __typeof__(REG_A(0)) x = REG_A(in->a);                                  \
    __typeof__(REG_B(0)) y = REG_B(in->b);                                  \
    LANES({                                                                 \
      int s_ = SIGN pf__py_cmp_if(I, F);                                    \
      d[k] = (uint8_t)(TEST);                                               \
    });                                                                     \
    break;                                                                  \
  }
#define CMP6IF(P, REG_A, REG_B, I, F, SIGN)                                 \
  CMPIF(PF__OP_##P##_LT, REG_A, REG_B, I, F, SIGN, s_ == -1)                \
  CMPIF(PF__OP_##P##_LE, REG_A, REG_B, I, F, SIGN, s_ == -1 || s_ == 0)     \
  CMPIF(PF__OP_##P##_EQ, REG_A, REG_B, I, F, SIGN, s_ == 0)                 \
  CMPIF(PF__OP_##P##_NE, REG_A, REG_B, I, F, SIGN, s_ != 0)                 \
  CMPIF(PF__OP_##P##_GT, REG_A, REG_B, I, F, SIGN, s_ == 1)                 \
  CMPIF(PF__OP_##P##_GE, REG_A, REG_B, I, F, SIGN, s_ == 1 || s_ == 0)

      switch ((pf__pyvm_op)in->op) {
      case PF__OP_I_CONST: {
        int64_t *d = RI(in->dst);
        const int64_t v = p->iconsts[in->a];
        LANES(d[k] = v;);
        break;
      }
      case PF__OP_F_CONST: {
        double *d = RF(in->dst);
        const double v = p->fconsts[in->a];
        LANES(d[k] = v;);
        break;
      }
      case PF__OP_B_CONST: {
        uint8_t *d = RB(in->dst);
        const uint8_t v = (uint8_t)in->a;
        LANES(d[k] = v;);
        break;
      }
      case PF__OP_I_MOV: {
        int64_t *d = RI(in->dst), *x = RI(in->a);
        LANES(d[k] = x[k];);
        break;
      }
      case PF__OP_F_MOV: {
        double *d = RF(in->dst), *x = RF(in->a);
        LANES(d[k] = x[k];);
        break;
      }
      case PF__OP_B_MOV: {
        uint8_t *d = RB(in->dst), *x = RB(in->a);
        LANES(d[k] = x[k];);
        break;
      }
      case PF__OP_I_ADD: IBIN(pf__py_iadd); break;
      case PF__OP_I_SUB: IBIN(pf__py_isub); break;
      case PF__OP_I_MUL: IBIN(pf__py_imul); break;
      case PF__OP_I_NEG: IUN(pf__py_ineg); break;
      case PF__OP_I_ABS: IUN(pf__py_iabs); break;
      case PF__OP_I_INVERT: {
        int64_t *d = RI(in->dst), *x = RI(in->a);
        LANES(d[k] = ~x[k];);
        break;
      }
      case PF__OP_I_FLOORDIV: IBIN(pf__py_ifloordiv); break;
      case PF__OP_I_MOD: IBIN(pf__py_imod); break;
      case PF__OP_I_POW: IBIN(pf__py_ipow); break;
      case PF__OP_I_AND: {
        int64_t *d = RI(in->dst), *x = RI(in->a), *y = RI(in->b);
        LANES(d[k] = x[k] & y[k];);
        break;
      }
      case PF__OP_I_OR: {
        int64_t *d = RI(in->dst), *x = RI(in->a), *y = RI(in->b);
        LANES(d[k] = x[k] | y[k];);
        break;
      }
      case PF__OP_I_XOR: {
        int64_t *d = RI(in->dst), *x = RI(in->a), *y = RI(in->b);
        LANES(d[k] = x[k] ^ y[k];);
        break;
      }
      case PF__OP_I_RSHIFT: IBIN(pf__py_irshift); break;
      case PF__OP_I_LSHIFT: IBIN(pf__py_ilshift); break;
      case PF__OP_I_TRUEDIV: {
        double *d = RF(in->dst);
        int64_t *x = RI(in->a), *y = RI(in->b);
        GUARDED(LANES_CALL, why = pf__py_itruediv(x[k], y[k], &d[k]));
        break;
      }
      /* Two NaN operands: which one's sign and payload CPython returns
       * depends on how the addition was compiled -- float_add gives b's,
       * the specialised BINARY_OP_ADD_FLOAT a's (3.11-3.13, measured) --
       * so Python decides. */
      case PF__OP_F_ADD: {
        double *d = RF(in->dst), *x = RF(in->a), *y = RF(in->b);
        GUARDED(LANES_OR, {
          const double xk = x[k];
          const double yk = y[k];
          why = xk != xk && yk != yk ? PF__W_NAN_PAIR : 0;
          d[k] = xk + yk;
        });
        break;
      }
      case PF__OP_F_SUB: FBIN_PURE(x[k] - y[k]); break;
      case PF__OP_F_MUL: {
        double *d = RF(in->dst), *x = RF(in->a), *y = RF(in->b);
        GUARDED(LANES_OR, {
          const double xk = x[k];
          const double yk = y[k];
          why = xk != xk && yk != yk ? PF__W_NAN_PAIR : 0;
          d[k] = xk * yk;
        });
        break;
      }
      case PF__OP_F_DIV: {
        double *d = RF(in->dst), *x = RF(in->a), *y = RF(in->b);
        /* Division by zero gives inf/NaN here (no trap): the lane bails. */
        GUARDED(LANES_OR, {
          const double yk = y[k];
          why = yk == 0.0 ? PF__W_FZERO_DIV : 0;
          d[k] = x[k] / yk;
        });
        break;
      }
      case PF__OP_F_FLOORDIV: FBIN(pf__py_ffloordiv); break;
      case PF__OP_F_MOD: FBIN(pf__py_fmod); break;
      case PF__OP_F_POW: FBIN(pf__py_fpow); break;
      case PF__OP_F_NEG: {
        double *d = RF(in->dst), *x = RF(in->a);
        LANES(d[k] = -x[k];);
        break;
      }
      case PF__OP_F_ABS: {
        double *d = RF(in->dst), *x = RF(in->a);
        LANES(d[k] = fabs(x[k]););
        break;
      }
      case PF__OP_I2F: {
        double *d = RF(in->dst);
        int64_t *x = RI(in->a);
        LANES(d[k] = (double)x[k];);
        break;
      }
      case PF__OP_B2I: {
        int64_t *d = RI(in->dst);
        uint8_t *x = RB(in->a);
        LANES(d[k] = x[k];);
        break;
      }
      case PF__OP_B2F: {
        double *d = RF(in->dst);
        uint8_t *x = RB(in->a);
        LANES(d[k] = x[k];);
        break;
      }
      case PF__OP_F2I_TRUNC: F2I(pf__py_ftrunc); break;
      case PF__OP_F_FLOOR_I: F2I(pf__py_ffloor); break;
      case PF__OP_F_CEIL_I: F2I(pf__py_fceil); break;
      case PF__OP_F_ROUND_I: F2I(pf__py_fround); break;
      case PF__OP_I_TRUTH: {
        uint8_t *d = RB(in->dst);
        int64_t *x = RI(in->a);
        LANES(d[k] = x[k] != 0;);
        break;
      }
      case PF__OP_F_TRUTH: {
        uint8_t *d = RB(in->dst);
        double *x = RF(in->a);
        LANES(d[k] = x[k] != 0.0;); /* NaN is True */
        break;
      }
      CMP6(I, RI, RI)
      CMP6(F, RF, RF)
      CMP6IF(IF, RI, RF, x[k], y[k], +)
      CMP6IF(FI, RF, RI, y[k], x[k], -)
      case PF__OP_B_NOT: {
        uint8_t *d = RB(in->dst), *x = RB(in->a);
        LANES(d[k] = !x[k];);
        break;
      }
      case PF__OP_B_AND: {
        uint8_t *d = RB(in->dst), *x = RB(in->a), *y = RB(in->b);
        LANES(d[k] = x[k] & y[k];);
        break;
      }
      case PF__OP_B_OR: {
        uint8_t *d = RB(in->dst), *x = RB(in->a), *y = RB(in->b);
        LANES(d[k] = x[k] | y[k];);
        break;
      }
      case PF__OP_B_XOR: {
        uint8_t *d = RB(in->dst), *x = RB(in->a), *y = RB(in->b);
        LANES(d[k] = x[k] ^ y[k];);
        break;
      }
      case PF__OP_I_SELECT: {
        int64_t *d = RI(in->dst), *x = RI(in->b), *y = RI(in->c);
        uint8_t *c = RB(in->a);
        LANES(d[k] = c[k] ? x[k] : y[k];);
        break;
      }
      case PF__OP_F_SELECT: {
        double *d = RF(in->dst), *x = RF(in->b), *y = RF(in->c);
        uint8_t *c = RB(in->a);
        LANES(d[k] = c[k] ? x[k] : y[k];);
        break;
      }
      case PF__OP_B_SELECT: {
        uint8_t *d = RB(in->dst), *x = RB(in->b), *y = RB(in->c);
        uint8_t *c = RB(in->a);
        LANES(d[k] = c[k] ? x[k] : y[k];);
        break;
      }
      case PF__OP_F_CALL1: {
        /* One loop per function, calling libm directly (sqrt and fabs
         * inline); errno through its per-thread address. pf__py_math1 is
         * the same operation, one element at a time. */
        double *d = RF(in->dst), *x = RF(in->a);
        int *const errp = &errno;
#define CALL1(NAME, EXPR)                                                   \
  case PF__FN_##NAME:                                                       \
    GUARDED(LANES_CALL, {                                                   \
      const double xk = x[k];                                               \
      *errp = 0;                                                            \
      const double rk = EXPR;                                               \
      why = pf__py_math1_check(xk, rk, *errp);                              \
      if (why == 0) d[k] = rk;                                              \
    });                                                                     \
    break;
        switch ((pf__pyvm_fn)in->b) {
          CALL1(sin, sin(xk)) CALL1(cos, cos(xk)) CALL1(tan, tan(xk))
          CALL1(asin, asin(xk)) CALL1(acos, acos(xk)) CALL1(atan, atan(xk))
          CALL1(sinh, sinh(xk)) CALL1(cosh, cosh(xk)) CALL1(tanh, tanh(xk))
          CALL1(asinh, asinh(xk)) CALL1(acosh, acosh(xk))
          CALL1(atanh, atanh(xk)) CALL1(exp, exp(xk)) CALL1(exp2, exp2(xk))
          CALL1(expm1, expm1(xk))
          /* m_log, m_log2, m_log10 return a NaN argument itself. */
          CALL1(log, xk != xk ? xk : log(xk))
          CALL1(log2, xk != xk ? xk : log2(xk))
          CALL1(log10, xk != xk ? xk : log10(xk))
          CALL1(log1p, log1p(xk)) CALL1(sqrt, sqrt(xk)) CALL1(cbrt, cbrt(xk))
          CALL1(fabs, fabs(xk))
        default:
          GUARDED(LANES_CALL, why = pf__py_math1(in->b, x[k], &d[k]));
          break;
        }
#undef CALL1
        break;
      }
      case PF__OP_F_CALL2: {
        double *d = RF(in->dst), *x = RF(in->a), *y = RF(in->b);
        const int fn = in->c;
        GUARDED(LANES_CALL, why = pf__py_math2(fn, x[k], y[k], &d[k]));
        break;
      }
      case PF__OP_F_ISNAN: {
        uint8_t *d = RB(in->dst);
        double *x = RF(in->a);
        LANES(d[k] = x[k] != x[k];);
        break;
      }
      case PF__OP_F_ISINF: {
        uint8_t *d = RB(in->dst);
        double *x = RF(in->a);
        LANES(d[k] = fabs(x[k]) == INFINITY;);
        break;
      }
      case PF__OP_F_ISFINITE: {
        uint8_t *d = RB(in->dst);
        double *x = RF(in->a);
        LANES(d[k] = fabs(x[k]) < INFINITY;); /* false for NaN */
        break;
      }
      case PF__OP_JMP:
        list_to_mask(list, cnt, dense, lo,
                     s->masks + (size_t)in->a * (size_t)words);
        fell_through = 0;
        break;
      case PF__OP_BR: {
        uint8_t *c = RB(in->a);
        uint64_t *mt = s->masks + (size_t)in->b * (size_t)words;
        uint64_t *mf = s->masks + (size_t)in->c * (size_t)words;
        LANES_CALL({
          uint64_t bit = UINT64_C(1) << (k & 63);
          if (c[k])
            mt[k >> 6] |= bit;
          else
            mf[k >> 6] |= bit;
        });
        fell_through = 0;
        break;
      }
      case PF__OP_RET_F: {
        double *x = RF(in->a);
        if (dtype == PF_FLOAT64 && dense) {
          memcpy(out + (size_t)lo * 8, x + lo, (size_t)cnt * 8);
        } else {
          GUARDED(LANES_CALL,
                  why = pf__py_store_float(dtype, x[k], out + (size_t)k * isz));
        }
        fell_through = 0;
        break;
      }
      case PF__OP_RET_I: {
        int64_t *x = RI(in->a);
        if (dtype == PF_INT64 && dense) {
          memcpy(out + (size_t)lo * 8, x + lo, (size_t)cnt * 8);
        } else {
          GUARDED(LANES_CALL,
                  why = pf__py_store_int(dtype, x[k], out + (size_t)k * isz));
        }
        fell_through = 0;
        break;
      }
      case PF__OP_RET_B: {
        uint8_t *x = RB(in->a);
        GUARDED(LANES_CALL,
                why = pf__py_store_bool(dtype, x[k], out + (size_t)k * isz));
        fell_through = 0;
        break;
      }
      case PF__OP_BAIL:
        LANES_CALL(bad[k] = PF__W_BAIL;);
        fail = 1;
        fell_through = 0;
        break;
      case PF__OP_COUNT:
        assert(0);
        break;
      }
      if (fail) {
        /* The lowest bailing lane of this op: the lanes below it go on,
         * those above need not finish. */
        int j = 0;
        while (bad[dense ? lo + j : list[j]] == 0) j++;
        assert(j < cnt);
        int m = dense ? lo + j : list[j];
        if (m < st->limit) {
          st->limit = m;
          st->why = bad[m];
          st->why_pc = pc;
        }
        cnt = j;
        hi = lo + cnt;
        if (is_terminator(in->op)) {
          /* The lanes below m already went their way (masks or stores):
           * nothing of this op is left to do. */
          fell_through = 0;
          break;
        }
      }
    }
#undef RI
#undef RF
#undef RB
    if (fell_through && cnt > 0) {
      assert(b + 1 < p->nblocks); /* validation: the last op terminates */
      list_to_mask(list, cnt, dense, lo,
                   s->masks + (size_t)(b + 1) * (size_t)words);
    }
  }
}

static int pyvm_kernel(void *ctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *handle) {
  pyvm_run *r = ctx;
  const int worker = pf_fill_worker_id(handle);
  assert(worker >= 0 && worker < r->workers);
  pyvm_scratch *s = &r->w[worker];
  if (s->mem == NULL && scratch_alloc(r, s) != 0)
    return pf_fill_worker_fail(handle, PF_ENOMEM, -1,
                               "out of memory for the VM's registers");
  for (int64_t done = 0; done < count; done += r->lanes) {
    if (start + done >= pf_fill_worker_limit(handle)) return 0;
    int n = count - done < r->lanes ? (int)(count - done) : r->lanes;
    preload_index(r, s, start + done, n);
    lane_state st;
    run_lanes(r, s, n, (char *)out + (size_t)done * r->itemsize, &st);
    if (st.limit < n) {
      assert(st.why_pc >= 0);
      return pf_fill_worker_fail(handle, PF_EBAIL, start + done + st.limit,
                                 "%s: %s", op_name[r->p->code[st.why_pc].op],
                                 pf__pyvm_why(st.why));
    }
  }
  return 0;
}

int pf_prog_fill(const pf_prog *prog, const pf_array *out,
                 const pf_fill_options *options, pf_error *err) {
  if (prog == NULL || out == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (out->ndim != prog->ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "the program was made for %d dimensions, the array "
                         "has %d", prog->ndim, out->ndim);
  if (pf_dtype_size(out->dtype) == 0)
    return pf__error_set(err, PF_EDTYPE, -1, "unsupported dtype");
  int64_t size;
  int rc = pf_shape_size(out->ndim, out->shape, 1, &size);
  if (rc != 0) return pf__error_set(err, rc, -1, "invalid shape");
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  pf_fill_options o = options != NULL ? *options : defaults;
  if (o.first < 0 || o.first > size)
    return pf__error_set(err, PF_EINVAL, -1, "first index %lld outside "
                         "[0, %lld]", (long long)o.first, (long long)size);
  int64_t todo = size - o.first;
  /* The worker count is fixed here so that the run's scratch and pf_fill
   * agree; the run lives on this frame until pf_fill returns (no release:
   * a cancel waits for running kernel calls, which stop at their next lane
   * block). */
  o.workers = pf_fill_workers(&o, todo);
  o.release = NULL;
  if (o.chunk == 0 && todo > 0) {
    o.chunk = pf__auto_chunk(o.schedule, todo, o.workers);
    if (o.chunk > PYVM_MAX_CHUNK) o.chunk = PYVM_MAX_CHUNK;
    if (o.chunk < PYVM_MIN_CHUNK) o.chunk = PYVM_MIN_CHUNK;
  }
  pyvm_run r = {.p = prog, .dtype = out->dtype,
                .itemsize = pf_dtype_size(out->dtype), .workers = o.workers};
  for (int d = 0; d < out->ndim; d++) r.shape[d] = out->shape[d];
  /* Lanes: at most about PYVM_SCRATCH_BYTES of registers per worker. */
  int64_t per_lane = 8 * (int64_t)prog->nreg[0] + 8 * (int64_t)prog->nreg[1] +
                     (int64_t)prog->nreg[2] + 6 + (prog->nblocks + 7) / 8;
  r.lanes = PYVM_LANES;
  while (r.lanes > PYVM_MIN_LANES && per_lane * r.lanes > PYVM_SCRATCH_BYTES)
    r.lanes /= 2;
  r.words = r.lanes / 64;
  r.w = pf__calloc((size_t)o.workers, sizeof *r.w);
  if (r.w == NULL) return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  rc = pf_fill(out, pyvm_kernel, &r, &o, err);
  for (int k = 0; k < o.workers; k++) free(r.w[k].mem);
  free(r.w);
  return rc;
}
