/*
 * pyvm.c -- the translated-function VM: runs a validated program
 * (pyvm_prog.c) over blocks of lanes (consecutive flat indices) through
 * pf_fill.
 *
 * DESIGN
 * A kernel call runs lane blocks of up to `lanes` elements. Registers are
 * structure-of-arrays: register r of file F is `lanes` elements, lane k at
 * [r * lanes + k], so an operation is one loop over the lanes that reach it
 * and dense loops vectorise. I0 .. I(ndim-1) are preloaded with the lanes'
 * N-d indices (ramps along the last axis, no division per element). The
 * operations are pyvm_lanes.h's, compiled here three times -- baseline,
 * AVX2, AVX-512 -- and the best the CPU has is chosen per fill, as the
 * expression VM does (pf__vm_isa); tests cap it to run each.
 *
 * Control flow is a work list of basic blocks: each block has a bit mask of
 * the lanes waiting at it (and a bit in a "busy" map). Lanes leaving a
 * block run on into the next one as they are -- the list or range
 * unchanged, or a BR's earlier target's lanes compacted in place -- when
 * nothing waits there or at an earlier block (leave); otherwise they wait
 * in masks, and the VM takes the lowest busy block and turns its mask into
 * a sorted lane list (dense when it is a range). A back edge (a loop) makes
 * an earlier block next again; lanes that left a loop wait at its exit and
 * stop costing anything, and lanes reconverge where paths join. An endless
 * loop is legal: backward steps poll the fill (run_lanes).
 *
 * Bails: an operation returns how many lanes of its list (in order) it
 * completed; the first lane it did not complete bailed. That lane m becomes
 * the lane block's limit: lanes >= m need not finish (the fill reports the
 * lowest bailing element and everything above it is recomputed), so every
 * list is cut at the limit from then on. After the lane block, a limit below
 * its count is reported with pf_fill_worker_fail(PF_EBAIL, start + m,
 * "<op>: <why>"), and the kernel stops.
 *
 * Tiled loops: when the lanes about to run a block are at the header of a
 * loop pyvm_tiles.c chose (one trip is a straight chain of blocks, every
 * branch leaving on one side), they run through the whole loop in tiles
 * (pyvm_tile.h): 64 lanes at a time in registers of their own, each lane
 * sent to the mask of the block it leaves by. A bail there runs the lane
 * block again without tiles (and without compaction, below), so bails are
 * decided by the path described above. Lane blocks of a program with tiled
 * loops are PYVM_TILED_LANES long: the longest lanes of each block finish
 * in a tile of ghosts once no lane waits.
 *
 * Five shortcuts, each invisible in the results:
 *  - Row-invariant hoisting (ndim >= 2, rows of at least PYVM_HOIST_ROW,
 *    or of a whole lane block for a program that loops):
 *    lane blocks stop at the end of each row of the last axis, and an
 *    instruction marked PYVM_INVARIANT (pyvm_prog.c: its operands do not
 *    depend on the innermost index) runs for the first lane of its list
 *    only, its result copied to the others. Its bail is the first lane's:
 *    every lane would compute the same thing and bail the same way.
 *  - The row cache (with hoisting): an instruction marked PYVM_COLUMN (a
 *    libm call or pow whose operands depend on the innermost index only:
 *    math.cos(j*b) in f(i, j)) computes the same values in every row, so
 *    a worker keeps each one's results for one row of the last axis, with
 *    the range of columns it holds, and a lane block whose lanes' columns
 *    lie in that range copies them instead (loop-invariant code motion
 *    across rows, which a compiler's LICM cannot do without the storage).
 *    Only results of a whole dense run that did not bail are kept: a bail
 *    depends on the operands alone, so a column that bailed is never in
 *    the range, and recomputing it bails again. At most
 *    PYVM_ROW_CACHE_BYTES per worker; not for lanes that moved.
 *  - Results into the output: an instruction marked PYVM_TO_OUT writes
 *    straight into the output when the store is an identity (RET_F into
 *    float64, RET_I into int64) and the output is 8-byte aligned; its RET
 *    then has nothing left to do.
 *  - Streaming: a large contiguous output is written with non-temporal
 *    stores (pf__vm_stream): each lane block is stored into a per-worker
 *    staging block, then streamed, up to its limit.
 *  - Compaction: lanes that stay in a loop while others leave it (the
 *    Mandelbrot's points inside the set) would run as an ever sparser
 *    list, one lane at a time. Once a lane block has taken a backward
 *    step, a sparse list of at least PYVM_COMPACT_MIN lanes about to run a
 *    loop's header is moved into one range of slots (pyvm_slots.c; a slot
 *    map says which lane each slot holds, for the stores), so the loop runs
 *    dense again; so is one about to run another block from which lanes
 *    may loop when its holes are finished lanes only -- not when the other
 *    side of a branch in the loop waits there (they would swap back and
 *    forth every trip; pf_prog.block_loops says which blocks are which).
 *    Each move fills a hole a departed lane left, so a lane block makes at
 *    most as many moves as lanes leave loops. Lane order is then not slot
 *    order, which bails rely on (the first lane that bails limits the
 *    rest): a bail in a lane block whose lanes moved runs that lane block
 *    again without moving them. Outputs go through the slot map (no
 *    PYVM_TO_OUT after a move).
 *
 * Per-worker scratch (registers, the lane list, the masks, the staging
 * block) is allocated once, by the worker on its first lane block, and freed
 * with the run. Arithmetic is pyvm_ops.h's, CPython-exact: no FMA
 * contraction, no fast-math, scalar libm only (pyvm_lanes.h).
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h" /* pf__fill_worker_poll */
#include "pyvm.h"
#include "pyvm_ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define PYVM_X86 1
#include <immintrin.h>
#else
#define PYVM_X86 0
#endif
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define PF__SIMD _Pragma("omp simd")

/* Lanes per lane block: registers of a block stay in L1/L2; fewer for
 * programs with very many registers. A multiple of 64 (mask words). A
 * program that loops gets twice as many: its lanes leave the loop one by
 * one, and each instruction call costs a few hundred cycles beyond its
 * lanes (loop remainders, reductions), so the lanes still looping should
 * be many (the Mandelbrot: -15..20 %; Newton -20 %). One with
 * tiled loops (pyvm_tile.h) more still: its tile registers are apart, so a
 * lane block's registers are touched once per lane entering or leaving,
 * and the longest lanes of each lane block run with a tile of ghosts once
 * the queue is empty (1,024 lanes: 10 % of the Mandelbrot's slot trips;
 * 8,192 lanes: -17 % time). */
#define PYVM_LANES 512
#define PYVM_LOOP_LANES 1024
#define PYVM_TILED_LANES PF__PYVM_MAX_LANES
#define PYVM_MIN_LANES 64
#define PYVM_SCRATCH_BYTES (INT64_C(8) << 20)
#define PYVM_MIN_CHUNK (16 * PYVM_LANES)
#define PYVM_MAX_CHUNK (INT64_C(1) << 20)
/* Outputs at least this large (and contiguous) are streamed. */
#define PYVM_STREAM_BYTES (INT64_C(32) << 20)
/* Lane visits to blocks reached by a backward step (or trips of a tiled
 * loop's slots) between two polls of the fill (run_lanes). */
#define PYVM_POLL 4096
/* Rows shorter than this are not worth cutting lane blocks at. */
#define PYVM_HOIST_ROW 64
/* The row cache's most per worker (DESIGN). */
#define PYVM_ROW_CACHE_BYTES (INT64_C(2) << 20)

/* The correctly rounded square root of one double, without errno. */
static inline double pyvm_sqrt1(double x) {
#if PYVM_X86
  return _mm_cvtsd_f64(_mm_sqrt_sd(_mm_set_sd(x), _mm_set_sd(x)));
#else
  return sqrt(x);
#endif
}

/* The operations, once per instruction set (pyvm_lanes.h). */
#define PYVM_LEVEL 0
#define PYVM_SUFFIX base
#include "pyvm_lanes.h"
#include "pyvm_tile.h"
#undef PYVM_SUFFIX
#undef PYVM_LEVEL
#if PYVM_X86
/* Each variant compiled for its ISA: GCC's target pragma, or clang's
 * attribute on every function (clang ignores the pragma; the libFuzzer
 * builds use clang). */
#ifdef __clang__
#define PYVM_TARGET_PUSH(T)                                                 \
  _Pragma(PYVM_STR(clang attribute push(__attribute__((target(T))),         \
                                        apply_to = function)))
#define PYVM_TARGET_POP _Pragma("clang attribute pop")
#else
#define PYVM_TARGET_PUSH(T)                                                 \
  _Pragma("GCC push_options") _Pragma(PYVM_STR(GCC target(T)))
#define PYVM_TARGET_POP _Pragma("GCC pop_options")
#endif
#define PYVM_STR(x) #x
PYVM_TARGET_PUSH("avx2")
#define PYVM_LEVEL 1
#define PYVM_SUFFIX avx2
#include "pyvm_lanes.h"
#include "pyvm_tile.h"
#undef PYVM_SUFFIX
#undef PYVM_LEVEL
PYVM_TARGET_POP
PYVM_TARGET_PUSH("avx512f,avx512dq,avx512vl,avx512bw,avx2")
#define PYVM_LEVEL 2
#define PYVM_SUFFIX avx512
#include "pyvm_lanes.h"
#include "pyvm_tile.h"
#undef PYVM_SUFFIX
#undef PYVM_LEVEL
PYVM_TARGET_POP
#endif

/* ------------------------------------------------------------ the run */

typedef struct pyvm_scratch {
  char *mem;
  int64_t *ireg;
  double *freg;
  uint8_t *breg;
  double *creg;
  int32_t *list;
  int32_t *slot;   /* which lane of the lane block each slot holds */
  uint64_t *masks; /* nblocks * words */
  uint64_t *busy;  /* (nblocks + 63) / 64 words: blocks with waiting lanes */
  char *stage;     /* lanes * itemsize when streaming */
  double *rows;    /* the row cache: `row` doubles per cached instruction */
  int64_t *valid;  /* per cached instruction: the columns [lo, hi) held */
  pyvm_lanes tile; /* the tile registers of tiled loops (pyvm_tile.h) */
} pyvm_scratch;

typedef struct pyvm_run {
  const pf_prog *p;
  const pyvm_op_fn *ops; /* the chosen ISA's table */
  pyvm_tile_fn tile;     /* and tiled loops */
  int isa;               /* PYVM_ISA_* */
  pf_dtype dtype;
  size_t itemsize;
  int64_t shape[PF_MAX_DIMS];
  int lanes; /* per lane block, a multiple of 64 */
  int words; /* mask words per block: lanes / 64 */
  int workers;
  int64_t first; /* the fill's first flat index (progress counts from it) */
  int hoist;  /* lane blocks within one row; invariant instructions once */
  int64_t row;   /* the last axis' length */
  int32_t ncached; /* PYVM_COLUMN instructions numbered below it are cached */
  int stream; /* stage lane blocks, then non-temporal stores */
  pyvm_scratch *w;
} pyvm_run;

static int scratch_alloc(const pyvm_run *r, pyvm_scratch *s) {
  const pf_prog *p = r->p;
  size_t L = (size_t)r->lanes;
  size_t bytes_i = (size_t)p->nreg[PYVM_FILE_I] * L * 8;
  size_t bytes_f = (size_t)p->nreg[PYVM_FILE_F] * L * 8;
  size_t bytes_b = ((size_t)p->nreg[PYVM_FILE_B] * L + 63) & ~(size_t)63;
  size_t bytes_c = (size_t)p->nreg[PYVM_FILE_C] * L * 16;
  size_t bytes_list = L * 4, bytes_slot = L * 4;
  size_t bytes_masks = (size_t)p->nblocks * (size_t)r->words * 8;
  size_t bytes_busy = ((size_t)p->nblocks + 63) / 64 * 8;
  size_t bytes_stage = r->stream ? (L * r->itemsize + 63) & ~(size_t)63 : 0;
  size_t bytes_rows = (size_t)r->ncached * (size_t)r->row * 8;
  size_t bytes_valid = (size_t)r->ncached * 2 * 8;
  /* Tile registers (tiled loops only): the layout of the lane block's,
   * PYVM_TILE lanes, each size a multiple of 64 bytes. */
  const size_t T = p->ntiles > 0 ? PYVM_TILE : 0;
  const size_t tile_i = (size_t)p->nreg[PYVM_FILE_I] * T * 8;
  const size_t tile_f = (size_t)p->nreg[PYVM_FILE_F] * T * 8;
  const size_t tile_c = (size_t)p->nreg[PYVM_FILE_C] * T * 16;
  const size_t bytes_tile =
      tile_i + tile_f + tile_c + (size_t)p->nreg[PYVM_FILE_B] * T;
  size_t total = bytes_i + bytes_f + bytes_c + bytes_b + bytes_list +
                 bytes_slot + bytes_masks + bytes_busy + bytes_stage +
                 bytes_rows + bytes_valid + bytes_tile;
  s->mem = pf__aligned_alloc(64, total);
  if (s->mem == NULL) return PF_ENOMEM;
  /* Registers read before a path writes them hold zeros or an earlier
   * lane's values, never uninitialised memory. */
  memset(s->mem, 0, total);
  char *m = s->mem;
  /* The tile and the stage first: 64-byte aligned. I, F and C back to
   * back, in the tile too: compaction and the tiles see them as one array
   * of 8-byte rows (pyvm_row_of). */
  s->tile = (pyvm_lanes){.p = p, .L = PYVM_TILE, .cnt = PYVM_TILE,
                         .dense = 1};
  s->tile.ireg = (int64_t *)m;
  s->tile.freg = (double *)(m += tile_i);
  s->tile.creg = (double *)(m += tile_f);
  s->tile.breg = (uint8_t *)(m += tile_c);
  s->stage = (m = s->mem + bytes_tile);
  s->ireg = (int64_t *)(m += bytes_stage);
  s->freg = (double *)(m += bytes_i);
  s->creg = (double *)(m += bytes_f);
  s->breg = (uint8_t *)(m += bytes_c);
  s->list = (int32_t *)(m += bytes_b);
  s->slot = (int32_t *)(m += bytes_list);
  s->masks = (uint64_t *)(m += bytes_slot);
  s->busy = (uint64_t *)(m += bytes_masks);
  /* (8-byte aligned: every size before is a multiple of 8.) */
  s->rows = (double *)(m += bytes_busy);
  s->valid = (int64_t *)(m += bytes_rows); /* zeros: [0, 0) is empty */
  return 0;
}

/* Preloads I0 .. I(ndim-1) of lanes [0, n) with the N-d indices from flat
 * index `start`: runs along the last axis. Every lane block does this, so
 * it is cloned per instruction set (glibc's ifunc picks one at load) and
 * counts in int64 (an int induction would be sign-extended per lane). */
#if PYVM_X86 && defined(__GLIBC__) && defined(__has_attribute) && \
    !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
/* (Not under the sanitizers: the ifunc resolver runs during relocation,
 * before their runtimes are set up -- TSan crashes there.) */
#if __has_attribute(target_clones)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
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
      int64_t *reg = s->ireg + (size_t)d * L + k;
      const int64_t v = idx[d];
      PF__SIMD
      for (int64_t j = 0; j < run; j++) reg[j] = v;
    }
    int64_t *reg = s->ireg + (size_t)last * L + k;
    const int64_t base = idx[last];
    PF__SIMD
    for (int64_t j = 0; j < run; j++) reg[j] = base + j;
    k += run;
    idx[last] += run;
    for (int d = last; d > 0 && idx[d] == r->shape[d]; d--) {
      idx[d] = 0;
      idx[d - 1]++;
    }
  }
}

/* BODY for every lane k of the view C. */
#define FOR_LANES_OF(C, BODY)                                               \
  do {                                                                      \
    if ((C)->dense) {                                                       \
      const int lo_ = (C)->lo, hi_ = (C)->lo + (C)->cnt;                    \
      PF__SIMD for (int k = lo_; k < hi_; k++) { BODY }                     \
    } else {                                                                \
      for (int j_ = 0; j_ < (C)->cnt; j_++) {                               \
        const int k = (C)->list[j_];                                        \
        BODY                                                                \
      }                                                                     \
    }                                                                       \
  } while (0)

/* Copies lane `from` of register `reg` (file of signature kind `kind`) to
 * every lane of c. */
static void broadcast(const pyvm_lanes *c, char kind, int32_t reg, int from) {
  const int f = pyvm_file_of(kind);
  assert(f >= 0);
  if (f == PYVM_FILE_B) {
    uint8_t *d = c->breg + (size_t)reg * c->L;
    const uint8_t v = d[from];
    FOR_LANES_OF(c, d[k] = v;);
  } else if (f == PYVM_FILE_C) {
    double *re = c->creg + (size_t)reg * 2 * c->L, *im = re + c->L;
    const double vr = re[from], vi = im[from];
    FOR_LANES_OF(c, {
      re[k] = vr;
      im[k] = vi;
    });
  } else {
    /* I and F lanes are 8 bytes: copy the bits. */
    int64_t *d = f == PYVM_FILE_I ? c->ireg + (size_t)reg * c->L
                                  : (int64_t *)(c->freg + (size_t)reg * c->L);
    const int64_t v = d[from];
    FOR_LANES_OF(c, d[k] = v;);
  }
}

/* A lane block's state while its program runs. */
typedef struct lane_state {
  int limit;      /* lanes at and past it need not finish */
  int why;        /* the lowest bail's code and instruction */
  int32_t why_pc;
  int out_file;   /* PYVM_TO_OUT results of this file go to the output */
  int stopped;    /* the fill stopped (cancel, timeout, an earlier failure)
                     while lanes looped: limit is not a bail */
  int compact;    /* lanes may move (compact) */
  int tiles;      /* loops of pf_prog.tiles run in tiles */
  int32_t split_to; /* the block a BR just sent the other lanes to, or -1 */
  int restart;    /* a lane bailed after lanes moved: run the lane block
                     again without moving them */
  int64_t col0;   /* the column of lane 0 (hoisting: lanes are one row) */
  double *rows;   /* the worker's row cache (pyvm_scratch) */
  int64_t *valid;
} lane_state;

/* Runs PYVM_COLUMN instruction `in`, number q of the row cache, over c's
 * lanes: from the cache when it holds their columns, else computed, and
 * kept when its lanes were one dense run that did not bail (DESIGN). */
static int run_cached(const pyvm_run *r, const pyvm_lanes *c,
                      const pyvm_ins *in, int32_t q, const lane_state *st,
                      int *why) {
  double *const row = st->rows + (size_t)q * (size_t)r->row;
  int64_t *const valid = st->valid + 2 * (size_t)q;
  double *const d = c->freg + (size_t)in->dst * c->L;
  const int first = c->dense ? c->lo : c->list[0];
  const int last = c->dense ? c->lo + c->cnt - 1 : c->list[c->cnt - 1];
  const int64_t lo = st->col0 + first, hi = st->col0 + last + 1;
  if (lo >= valid[0] && hi <= valid[1]) {
    const double *src = row + st->col0;
    FOR_LANES_OF(c, d[k] = src[k];);
    return c->cnt;
  }
  const int done = r->ops[in->op](c, in, why);
  if (done == c->cnt && c->dense) {
    memcpy(row + lo, d + c->lo, (size_t)c->cnt * sizeof *d);
    if (hi >= valid[0] && lo <= valid[1] && valid[0] < valid[1]) {
      if (lo < valid[0]) valid[0] = lo;
      if (hi > valid[1]) valid[1] = hi;
    } else {
      valid[0] = lo;
      valid[1] = hi;
    }
  }
  return done;
}

/* Runs instruction pc over c's lanes, hoisted or into the output when it
 * may (DESIGN); returns how many lanes completed (pyvm_op_fn). */
static int run_ins(const pyvm_run *r, pyvm_lanes *c, int32_t pc,
                   const lane_state *st, int *why) {
  const pf_prog *p = r->p;
  const pyvm_ins *in = &p->code[pc];
  const uint8_t flags = p->flags[pc];
  const pyvm_op_fn fn = r->ops[in->op];
  const int ret_done = c->ret_done;
  c->ret_done = 0;
  if ((flags & PYVM_COLUMN) && p->column[pc] < r->ncached && c->slot == NULL)
    return run_cached(r, c, in, p->column[pc], st, why);
  if (r->hoist && (flags & PYVM_INVARIANT) && c->cnt > 1) {
    pyvm_lanes one = *c;
    one.dense = 1;
    one.cnt = 1;
    one.lo = c->dense ? c->lo : c->list[0];
    if (fn(&one, in, why) == 0) return 0;
    broadcast(c, pf__pyvm_op_sig[in->op][0], in->dst, one.lo);
    return c->cnt;
  }
  if ((flags & PYVM_TO_OUT) &&
      pyvm_file_of(pf__pyvm_op_sig[in->op][0]) == st->out_file) {
    c->dst = c->out;
    int done = fn(c, in, why);
    c->dst = NULL;
    c->ret_done = 1;
    return done;
  }
  c->ret_done = ret_done;
  int done = fn(c, in, why);
  c->ret_done = 0;
  return done;
}

/* The lanes of c leave a block by `in` (a JMP or BR; NULL: falling through
 * to block `next`). Returns the block they run next, as they are -- c then
 * holds those lanes -- when the work list would take it next anyway
 * (pyvm_may_chain: nothing waits there or before it); otherwise they wait in
 * masks and the result is -1. A BR whose lanes split runs the earlier
 * target's lanes next (compacted in place into the list, still ascending)
 * and leaves the others in the later target's mask, where lanes from other
 * paths join them: a loop's lanes keep running together, and lanes that
 * left it wait at its exit. */
static int32_t leave(const pyvm_run *r, pyvm_lanes *c, int32_t *list,
                     const pyvm_ins *in, int32_t next, lane_state *st) {
  st->split_to = -1;
  if (in != NULL && in->op == PF__OP_BR) {
    const uint8_t *s = c->breg + (size_t)in->a * c->L;
    int nt = 0;
    if (c->dense) {
      const int lo = c->lo, hi = c->lo + c->cnt;
      _Pragma("omp simd reduction(+:nt)")
      for (int k = lo; k < hi; k++) nt += s[k] != 0;
    } else {
      for (int j = 0; j < c->cnt; j++) nt += s[c->list[j]] != 0;
    }
    if (nt == c->cnt || in->b == in->c) {
      next = in->b;
    } else if (nt == 0) {
      next = in->c;
    } else {
      const int32_t first = in->b < in->c ? in->b : in->c;
      const int32_t later = in->b < in->c ? in->c : in->b;
      if (!pyvm_may_chain(c, first)) {
        int why = 0;
        r->ops[PF__OP_BR](c, in, &why);
        return -1;
      }
      const int want = first == in->b; /* the condition of `first`'s lanes */
      uint64_t *mo = c->masks + (size_t)later * (size_t)c->words;
      int j = 0;
      if (c->dense) {
        pf__pyvm_split_range(s, c->lo, c->lo + c->cnt, want, list, &j, mo);
      } else {
        for (int jj = 0; jj < c->cnt; jj++) {
          const int k = c->list[jj];
          if ((s[k] != 0) == want)
            list[j++] = k;
          else
            mo[k >> 6] |= UINT64_C(1) << (k & 63);
        }
      }
      c->busy[later >> 6] |= UINT64_C(1) << (later & 63);
      st->split_to = later;
      c->cnt = j;
      c->list = list;
      c->lo = list[0];
      c->dense = list[j - 1] - list[0] + 1 == j;
      return first;
    }
  } else if (in != NULL) {
    next = in->a; /* JMP */
  }
  if (pyvm_may_chain(c, next)) return next;
  pyvm_lanes_send(c, c->cnt, next);
  return -1;
}

/* Runs block b over c's lanes; returns the block they run next as they
 * are (leave), or -1 when they were stored, bailed or wait in masks. */
static int32_t run_block(const pyvm_run *r, pyvm_lanes *c, int32_t *list,
                         int32_t b, lane_state *st) {
  const pf_prog *p = r->p;
  const int32_t end = p->block_first[b + 1];
  for (int32_t pc = p->block_first[b]; pc < end; pc++) {
    if (p->flags[pc] & PYVM_SKIP) continue;
    const int op = p->code[pc].op;
    if (op == PF__OP_JMP || op == PF__OP_BR)
      return leave(r, c, list, &p->code[pc], -1, st);
    int why = 0;
    const int done = run_ins(r, c, pc, st, &why);
    if (done < c->cnt) {
      if (c->slot != NULL) {
        /* Lanes moved: list order is not lane order (DESIGN). */
        st->restart = 1;
        return -1;
      }
      /* The lowest bailing lane of this op: the lanes below it go on,
       * those above need not finish. */
      const int m = c->dense ? c->lo + done : c->list[done];
      assert(why != 0);
      if (m < st->limit) {
        st->limit = m;
        st->why = why;
        st->why_pc = pc;
      }
      c->cnt = done;
    }
    /* A RET stored the lanes below any bail itself. */
    if (pf__pyvm_is_terminator(op) || c->cnt == 0) return -1;
  }
  assert(b + 1 < p->nblocks); /* validation: the last op terminates */
  return leave(r, c, list, NULL, b + 1, st);
}

/* The lowest busy block, or -1. */
static int32_t lowest_busy(const uint64_t *busy, int32_t nblocks) {
  for (int32_t w = 0; w * 64 < nblocks; w++)
    if (busy[w] != 0) return w * 64 + __builtin_ctzll(busy[w]);
  return -1;
}

/* What a lane block polls the fill with (run_lanes, tiled loops). */
typedef struct lanes_poll {
  const pyvm_run *r;
  pf_fill_worker *handle;
  int64_t start;
  int n;
} lanes_poll;

/* pf__fill_worker_poll: on a fill that runs on the calling thread it also
 * calls the progress hook (Ctrl-C, a cancel) and checks the timeout; on
 * pool threads it reads the limit. Nonzero: stopped, or failed below this
 * lane block (other workers' indices are outside it), so nothing here is
 * needed any more. */
static int lanes_stop(void *ctx) {
  const lanes_poll *q = ctx;
  return pf__fill_worker_poll(q->handle, q->start - q->r->first) != 0 ||
         pf_fill_worker_limit(q->handle) - q->start < q->n;
}

/* 1 when block b's lanes run as a tiled loop (pyvm_tile.h). */
static int tiled(const pf_prog *p, const lane_state *st, int32_t b) {
  return st->tiles && p->ntiles > 0 && p->tile_of[b] >= 0;
}

/* Runs one lane block of n lanes from flat index `start`; the outputs of
 * lane k go to out + k * itemsize. Fills st (st->limit < n: lane st->limit
 * bailed, unless st->stopped).
 *
 * All lanes start at block 0. A block's lanes run on into the next block
 * as they are while leave() allows; otherwise the work list takes the
 * lowest block with waiting lanes and its mask becomes the lane list
 * (mask_take: cut at the limit). Loops: a loop's blocks run again while
 * lanes come back to them, each time over the lanes still in the loop. An
 * element may loop forever (an endless `while` is legal Python), so every
 * PYVM_POLL lane visits to a block reached by a backward step the fill's
 * limit is read: once the fill stops (cancel, timeout: limit 0) or an
 * element below this lane block failed, the lane block is abandoned
 * (st->stopped). */
static void run_lanes(const pyvm_run *r, pyvm_scratch *s, int64_t start,
                      int n, char *out, lane_state *st,
                      pf_fill_worker *handle) {
  const pf_prog *p = r->p;
  const int words = r->words;
  st->limit = n;
  st->why = 0;
  st->why_pc = -1;
  st->stopped = 0;
  st->restart = 0;
  st->split_to = -1;
  st->out_file = ((uintptr_t)out & 7) != 0   ? -1
                 : r->dtype == PF_FLOAT64 ? PYVM_FILE_F
                 : r->dtype == PF_INT64   ? PYVM_FILE_I
                                          : -1;
  memset(s->masks, 0, (size_t)p->nblocks * (size_t)words * 8);
  memset(s->busy, 0, ((size_t)p->nblocks + 63) / 64 * 8);
  pyvm_lanes c = {.p = p, .ireg = s->ireg, .freg = s->freg, .breg = s->breg,
                  .creg = s->creg, .L = (size_t)r->lanes, .list = s->list,
                  .out = out, .dtype = r->dtype, .isz = r->itemsize,
                  .masks = s->masks, .words = words, .busy = s->busy,
                  .cnt = n, .dense = 1, .lo = 0};
  int32_t b = 0, last = -1;
  int64_t visits = 0;
  int looped = 0; /* a backward step was taken: lanes may loop */
  for (;;) {
    if (b < 0) {
      b = lowest_busy(s->busy, p->nblocks);
      if (b < 0) break;
      s->busy[b >> 6] &= ~(UINT64_C(1) << (b & 63));
      st->split_to = -1;
      uint64_t *mask = s->masks + (size_t)b * (size_t)words;
      c.list = s->list;
      int cnt;
      const uint8_t loops =
          looped && st->compact && !tiled(p, st, b) ? p->block_loops[b] : 0;
      if (loops) {
        cnt = pf__pyvm_take_moving(&c, b, s->slot, mask, st->limit, s->list,
                                   loops & PYVM_HEADER);
      } else {
        cnt = pf__pyvm_mask_take(mask, words, st->limit, &c, s->list);
        memset(mask, 0, (size_t)words * 8);
      }
      if (cnt == 0) {
        b = -1;
        continue;
      }
    }
    const int back = b <= last;
    looped |= back;
    lanes_poll poll = {r, handle, start, n};
    if (back && (visits += c.cnt) >= PYVM_POLL) {
      visits = 0;
      if (lanes_stop(&poll)) {
        st->stopped = 1;
        return;
      }
    }
    if (tiled(p, st, b)) {
      const int rc = r->tile(&c, &p->tiles[p->tile_of[b]], &s->tile,
                             lanes_stop, &poll);
      st->restart = rc == PYVM_TILE_BAIL;
      st->stopped = rc == PYVM_TILE_STOPPED;
      if (rc != PYVM_TILE_DONE) return;
      last = b;
      b = -1;
      continue;
    }
    /* A list run on: at a header, or where a BR just sent the others to a
     * block they cannot loop from (they left the loop for good). */
    if (looped && !c.dense && c.cnt >= PYVM_COMPACT_MIN && st->compact &&
        ((p->block_loops[b] & PYVM_HEADER) ||
         (p->block_loops[b] && st->split_to >= 0 &&
          !p->block_loops[st->split_to])))
      pf__pyvm_compact(&c, b, s->slot);
    if (c.slot != NULL) st->out_file = -1; /* stores go by the slot map */
    last = b;
    c.ret_done = 0;
    b = run_block(r, &c, s->list, b, st);
    if (st->restart) return;
  }
}

/* Lanes of the next lane block from flat index `at`, `left` to go: within
 * one row of the last axis when hoisting. */
static int lane_count(const pyvm_run *r, int64_t at, int64_t left) {
  int64_t n = left < r->lanes ? left : r->lanes;
  if (r->hoist) {
    const int64_t row = r->shape[r->p->ndim - 1];
    const int64_t in_row = row - at % row;
    if (in_row < n) n = in_row;
  }
  return (int)n;
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
  int rc = 0;
  for (int64_t done = 0; done < count;) {
    if (start + done >= pf_fill_worker_limit(handle)) break;
    const int n = lane_count(r, start + done, count - done);
    char *dst = (char *)out + (size_t)done * r->itemsize;
    char *lanes_out = r->stream ? s->stage : dst;
    lane_state st = {.compact = 1, .tiles = 1, .rows = s->rows,
                     .valid = s->valid};
    if (r->hoist) st.col0 = (start + done) % r->row;
    preload_index(r, s, start + done, n);
    run_lanes(r, s, start + done, n, lanes_out, &st, handle);
    if (st.restart) {
      st.compact = 0;
      st.tiles = 0;
      preload_index(r, s, start + done, n);
      run_lanes(r, s, start + done, n, lanes_out, &st, handle);
    }
    if (r->stream)
      pf__vm_stream(dst, s->stage, (size_t)st.limit * r->itemsize, r->isa);
    if (st.stopped) break; /* the fill's outcome is decided elsewhere */
    if (st.limit < n) {
      assert(st.why_pc >= 0);
      rc = pf_fill_worker_fail(handle, PF_EBAIL, start + done + st.limit,
                               "%s: %s",
                               pf__pyvm_op_name[r->p->code[st.why_pc].op],
                               pf__pyvm_why(st.why));
      break;
    }
    done += n;
  }
  if (r->stream) pf__vm_stream_fence();
  return rc;
}

/* Fixes the run's shape, ISA, lanes and shortcuts for `out`. */
static void plan(pyvm_run *r, const pf_prog *prog, const pf_array *out,
                 const int64_t *space, int64_t size, int isa) {
  r->p = prog;
  r->dtype = out->dtype;
  r->itemsize = pf_dtype_size(out->dtype);
  for (int d = 0; d < prog->ndim; d++) r->shape[d] = space[d];
  r->isa = pf__vm_isa();
  if (isa >= 0 && isa < r->isa) r->isa = isa;
#if PYVM_X86
  r->ops = r->isa == PYVM_ISA_AVX512 ? pf__pyvm_ops_avx512
           : r->isa == PYVM_ISA_AVX2 ? pf__pyvm_ops_avx2
                                    : pf__pyvm_ops_base;
  r->tile = r->isa == PYVM_ISA_AVX512 ? pf__pyvm_tile_avx512
            : r->isa == PYVM_ISA_AVX2 ? pf__pyvm_tile_avx2
                                     : pf__pyvm_tile_base;
#else
  r->isa = PYVM_ISA_BASE;
  r->ops = pf__pyvm_ops_base;
  r->tile = pf__pyvm_tile_base;
#endif
  /* Lanes: at most about PYVM_SCRATCH_BYTES of registers per worker. */
  int64_t per_lane = 8 * (int64_t)prog->nreg[PYVM_FILE_I] +
                     8 * (int64_t)prog->nreg[PYVM_FILE_F] +
                     16 * (int64_t)prog->nreg[PYVM_FILE_C] +
                     (int64_t)prog->nreg[PYVM_FILE_B] + 4 +
                     (prog->nblocks + 7) / 8;
  int loops = 0;
  for (int32_t b = 0; b < prog->nblocks; b++) loops |= prog->block_loops[b];
  r->lanes = prog->ntiles > 0 ? PYVM_TILED_LANES
             : loops            ? PYVM_LOOP_LANES
                                : PYVM_LANES;
  while (r->lanes > PYVM_MIN_LANES && per_lane * r->lanes > PYVM_SCRATCH_BYTES)
    r->lanes /= 2;
  r->words = r->lanes / 64;
  r->row = prog->ndim >= 1 ? space[prog->ndim - 1] : 1;
  /* Hoisting cuts lane blocks at rows; a loop wants its lanes (above), so
   * a program that loops hoists only over rows of a whole lane block. */
  r->hoist = prog->ndim >= 2 && prog->ninvariant + prog->ncolumn > 0 &&
             r->row >= (loops ? r->lanes : PYVM_HOIST_ROW);
  /* The row cache, for as many instructions as fit (a row, then, is at
   * most PYVM_ROW_CACHE_BYTES / 8 long). */
  r->ncached = 0;
  if (r->hoist)
    while (r->ncached < prog->ncolumn &&
           r->row <= PYVM_ROW_CACHE_BYTES / 8 / (r->ncached + 1))
      r->ncached++;
  r->stream = pf_array_is_contiguous(out) &&
              size * (int64_t)r->itemsize >= PYVM_STREAM_BYTES;
}

int pf__prog_fill_isa(const pf_prog *prog, const pf_array *out,
                      const pf_fill_options *options, int isa, pf_error *err) {
  if (prog == NULL || out == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  /* With a window the indices are the whole array's. */
  int ndim;
  const int64_t *space;
  pf__index_space(out, options, &ndim, &space);
  if (ndim != prog->ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "the program was made for %d dimensions, the array "
                         "has %d", prog->ndim, ndim);
  if (options != NULL && options->window != NULL) {
    int rc = pf_window_check(options->window, out->ndim, out->shape, err);
    if (rc != 0) return rc;
  }
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
  pyvm_run r = {.workers = o.workers, .first = o.first};
  plan(&r, prog, out, space, size, isa);
  r.w = pf__calloc((size_t)o.workers, sizeof *r.w);
  if (r.w == NULL) return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  rc = pf_fill(out, pyvm_kernel, &r, &o, err);
  for (int k = 0; k < o.workers; k++) free(r.w[k].mem);
  free(r.w);
  return rc;
}

int pf_prog_fill(const pf_prog *prog, const pf_array *out,
                 const pf_fill_options *options, pf_error *err) {
  return pf__prog_fill_isa(prog, out, options, -1, err);
}
