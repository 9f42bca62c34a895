/*
 * pyvm.h -- the translated-function VM's parts as they see each other: the
 * validated program (pyvm_prog.c makes it), the lane view an operation runs
 * over, and the per-ISA operation tables (pyvm_lanes.h, compiled three times
 * by pyvm.c).
 */
#ifndef PF_PYVM_H
#define PF_PYVM_H

#include <stdint.h>

#include "internal.h"
#include "pyvm_opcodes.h"

typedef struct pyvm_ins {
  int32_t op, dst, a, b, c;
} pyvm_ins;

/* Register files, in the order of nregs: I (int64), F (double), B (uint8),
 * C (complex: two doubles; register r's real parts are lanes [2r * L, 2r *
 * L + L), its imaginary parts the next L, so both vectorise like F).
 * PYVM_FILES, pyvm_file_of and pyvm_file_size are the places that know the
 * list. */
enum { PYVM_FILE_I, PYVM_FILE_F, PYVM_FILE_B, PYVM_FILE_C, PYVM_FILES };

/* A register row, as the liveness lists give them: the I, F and C files are
 * one array of 8-byte rows (I registers, then F, then two rows per C
 * register: pyvm.c allocates them back to back), row e >= 0 of it; B
 * register r is -1 - r. */
static inline int32_t pyvm_row_of(const int32_t nreg[PYVM_FILES], int file,
                                  int32_t r) {
  return file == PYVM_FILE_I   ? r
         : file == PYVM_FILE_F ? nreg[PYVM_FILE_I] + r
         : file == PYVM_FILE_C ? nreg[PYVM_FILE_I] + nreg[PYVM_FILE_F] + 2 * r
                               : -1 - r;
}

/* The file of a signature character ('I' 'F' 'B' 'C'), or -1 for none. */
static inline int pyvm_file_of(char kind) {
  return kind == 'I' ? PYVM_FILE_I
         : kind == 'F' ? PYVM_FILE_F
         : kind == 'B' ? PYVM_FILE_B
         : kind == 'C' ? PYVM_FILE_C
                       : -1;
}

/* Bytes of one lane of a register of file f. */
static inline size_t pyvm_file_size(int f) {
  return f == PYVM_FILE_B ? 1 : f == PYVM_FILE_C ? 16 : 8;
}

/* Facts about an instruction, from the dataflow of pf_prog_create. */
enum {
  /* Its operands do not depend on the innermost index: within one row of the
   * last axis every lane computes the same value (computed once, broadcast).*/
  PYVM_INVARIANT = 1,
  /* Its destination is read only by the RET_F / RET_I right after it: the
   * value may be written straight into the output. */
  PYVM_TO_OUT = 2,
  /* Nothing to run: the instruction before it computed its result too (a
   * C_ABS whose only reader is this comparison became a C_ABS_*_F). */
  PYVM_SKIP = 4,
  /* A costly instruction whose operands depend on the innermost index only:
   * its results for one row of the last axis are its results for every row
   * (taken from the VM's row cache). */
  PYVM_COLUMN = 8,
};

/* Facts about a block (pf_prog.block_loops). */
enum {
  PYVM_LOOPS = 1,  /* a path from it reaches a cycle: its lanes may loop */
  PYVM_HEADER = 2, /* the target of a backward step: a loop's lanes meet */
};

/* Register rows, for copies between a lane block's registers and a tile's:
 * n8 8-byte rows (pyvm_row_of) first, then B registers as -1 - r. */
typedef struct pyvm_tile_rows {
  int32_t n, n8;
  int32_t *rows;
} pyvm_tile_rows;

/* A loop run in tiles (pyvm_tiles.c finds them, pyvm_tile.h runs them):
 * one trip is a straight chain of blocks from its header back to it, every
 * branch on the way leaving the loop on one side. */
typedef struct pyvm_tile_loop {
  int32_t nins;   /* one trip's instructions in order: ops and exits */
  int32_t *pcs;   /* ... their pcs (no PYVM_SKIP, no jumps) */
  uint8_t *stays; /* ... for a BR: the condition that stays in the loop */
  uint8_t *unchecked; /* ... for an I_ADD: it cannot overflow (a counter) */
  /* The rows the loop touches that every lane holds alike (a register
   * defined once, by a constant, and not in the loop: copied into the tile
   * once); the others (ref); and of those the ones live at the header (a
   * lane entering brings them). */
  pyvm_tile_rows same, ref, load;
  /* Per trip entry, for a BR: the rows a lane leaving by it takes back
   * (written in the loop, live where it goes), and those the rest of the
   * trip reads before it writes them (a ghost needs them: pyvm_tile.h). */
  pyvm_tile_rows *put, *ghost;
  char *mem; /* everything above */
} pyvm_tile_loop;

struct pf_prog {
  int ndim;
  int32_t nreg[PYVM_FILES];
  int32_t ncode;
  pyvm_ins *code;       /* targets rewritten as block numbers */
  uint8_t *flags;       /* ncode PYVM_* bits */
  int32_t ninvariant;   /* instructions with PYVM_INVARIANT */
  int32_t ncolumn;      /* instructions with PYVM_COLUMN ... */
  int32_t *column;      /* ... each one's number (ncode entries; -1: none) */
  int32_t nblocks;
  int32_t *block_first; /* nblocks + 1 entries: block b is [first[b], first[b+1]) */
  /* The registers live where block b starts: live[live_first[b] ..
   * live_first[b + 1]), each a row (PYVM_ROW_*); NULL when the program is
   * too large to keep them (every register then counts as live). */
  int32_t *live_first;
  int32_t *live;
  uint8_t *block_loops; /* nblocks: PYVM_LOOPS | PYVM_HEADER bits */
  int32_t ntiles;       /* loops run in tiles ... */
  pyvm_tile_loop *tiles;
  int32_t *tile_of;     /* ... by header block (nblocks; -1: none) */
  int64_t *iconsts;
  double *fconsts;
  size_t niconsts, nfconsts;
};

/* The opcode table's names and operand signatures, by opcode. */
extern const char *const pf__pyvm_op_name[PF__OP_COUNT];
extern const char *const pf__pyvm_op_sig[PF__OP_COUNT];

/* 1 for an op that ends its basic block (JMP, BR, RET_*, BAIL). */
int pf__pyvm_is_terminator(int op);

/* Block b's successors into succ; returns how many (0: it returns). */
static inline int pyvm_successors(const pf_prog *p, int32_t b,
                                  int32_t succ[2]) {
  const pyvm_ins *last = &p->code[p->block_first[b + 1] - 1];
  if (last->op == PF__OP_JMP) {
    succ[0] = last->a;
    return 1;
  }
  if (last->op == PF__OP_BR) {
    succ[0] = last->b;
    succ[1] = last->c;
    return 2;
  }
  if (pf__pyvm_is_terminator(last->op)) return 0;
  succ[0] = b + 1;
  return 1;
}

/* pyvm_tiles.c: fills p->tiles and p->tile_of (after liveness and
 * loop_reach); frees them. */
int pf__pyvm_find_tiles(pf_prog *p);
void pf__pyvm_free_tiles(pf_prog *p);

/* The lanes one instruction runs over, and where its results go. Lane k of
 * register r of file F is at F + r * L + k. The lanes are lo .. lo+cnt-1
 * when dense, else list[0 .. cnt-1] (ascending). */
typedef struct pyvm_lanes {
  const pf_prog *p;
  int64_t *ireg;
  double *freg;
  uint8_t *breg;
  double *creg; /* register r: re at creg + 2r * L, im L further */
  size_t L;
  const int32_t *list;
  int cnt, dense, lo;
  void *dst;       /* non-NULL: the op's destination lane 0 (PYVM_TO_OUT) */
  int ret_done;    /* the previous op wrote this RET's values already */
  char *out;       /* lane k's output at out + k * isz ... */
  const int32_t *slot; /* ... or at out + slot[k] * isz once lanes moved
                          (pyvm.c: compaction); NULL: they did not */
  pf_dtype dtype;
  size_t isz;
  uint64_t *masks; /* nblocks * words: lanes waiting at each block */
  int words;
  uint64_t *busy;  /* bit b: block b has waiting lanes (its mask is not 0) */
} pyvm_lanes;

/* Runs instruction `in` over the lanes of c; returns how many of them (in
 * order) completed: c->cnt, or the position of the first lane that bails,
 * with its PF__W_* code in *why. Terminators leave the lanes at their
 * targets' masks, or in the output. */
typedef int (*pyvm_op_fn)(const pyvm_lanes *c, const pyvm_ins *in, int *why);

/* Instruction sets: the expression VM's PF__ISA_SCALAR, _AVX2, _AVX512, and
 * its CPU probe and streaming stores (expr_vm.c; expr.h declares them as
 * well, but its opcode names clash with this VM's). */
enum { PYVM_ISA_BASE, PYVM_ISA_AVX2, PYVM_ISA_AVX512 };
int pf__vm_isa(void);
void pf__vm_stream(void *dst, const void *src, size_t bytes, int isa);
void pf__vm_stream_fence(void);
extern const pyvm_op_fn pf__pyvm_ops_base[PF__OP_COUNT];
extern const pyvm_op_fn pf__pyvm_ops_avx2[PF__OP_COUNT];
extern const pyvm_op_fn pf__pyvm_ops_avx512[PF__OP_COUNT];

/* Lanes per tile (pyvm_tile.h): one mask word. */
#define PYVM_TILE 64
enum { PYVM_TILE_DONE, PYVM_TILE_BAIL, PYVM_TILE_STOPPED };
/* Called every PYVM_POLL lane visits of a tiled loop: nonzero stops it. */
typedef int (*pyvm_tile_stop_fn)(void *ctx);
/* Runs c's lanes, waiting at loop t's header, through the loop until each
 * leaves it (sent to the mask of the block it leaves to), in the tile
 * registers of `tile` (L = PYVM_TILE, the layout of c's). Returns
 * PYVM_TILE_DONE, PYVM_TILE_BAIL (a lane would bail: nothing is decided
 * and the lane block must run again without tiles) or PYVM_TILE_STOPPED. */
typedef int (*pyvm_tile_fn)(const pyvm_lanes *c, const pyvm_tile_loop *t,
                            const pyvm_lanes *tile, pyvm_tile_stop_fn stop,
                            void *ctx);
extern const pyvm_tile_fn pf__pyvm_tile_base, pf__pyvm_tile_avx2,
    pf__pyvm_tile_avx512;

/* Adds the lanes of c (those below `count` in list order) to block b's
 * mask and marks b busy. */
static inline void pyvm_lanes_send(const pyvm_lanes *c, int count, int32_t b) {
  if (count <= 0) return;
  uint64_t *m = c->masks + (size_t)b * (size_t)c->words;
  if (c->dense) {
    /* Whole words at a time: [lo, lo + count). */
    int k = c->lo;
    const int end = c->lo + count;
    while (k < end) {
      const int bit = k & 63;
      const int take = end - k < 64 - bit ? end - k : 64 - bit;
      const uint64_t ones =
          take == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << take) - 1) << bit;
      m[k >> 6] |= ones;
      k += take;
    }
  } else {
    for (int j = 0; j < count; j++)
      m[c->list[j] >> 6] |= UINT64_C(1) << (c->list[j] & 63);
  }
  c->busy[b >> 6] |= UINT64_C(1) << (b & 63);
}

/* 1 when neither block t nor any block before it has waiting lanes: lanes
 * going to t may run there at once, as they are (no block the work list
 * would take first, nothing to merge with). */
static inline int pyvm_may_chain(const pyvm_lanes *c, int32_t t) {
  for (int w = 0; w < (t >> 6); w++)
    if (c->busy[w] != 0) return 0;
  const int bit = t & 63;
  const uint64_t upto =
      bit == 63 ? ~UINT64_C(0) : (UINT64_C(1) << (bit + 1)) - 1;
  return (c->busy[t >> 6] & upto) == 0;
}

/* pyvm_slots.c: which lanes run -- masks to ranges or lists, a range split
 * by a condition, and compaction (pyvm.c's DESIGN). */
#define PF__PYVM_MAX_LANES 8192
/* Fewer looping lanes than this run as a list: moving them costs more. */
#define PYVM_COMPACT_MIN 8
/* The lanes of mask `m` below `limit` as c's view: a range (dense, no list
 * written) or the sorted list, into `list`. Returns the count. */
int pf__pyvm_mask_take(const uint64_t *m, int words, int limit, pyvm_lanes *c,
                       int32_t *list);
/* Lanes [lo, hi) whose (s[k] != 0) is `want` are appended to list at *j,
 * the others set in mask mo. */
void pf__pyvm_split_range(const uint8_t *s, int lo, int hi, int want,
                          int32_t *list, int *j, uint64_t *mo);
/* mask_take of block b's mask for lanes that may loop: a sparse mask of at
 * least PYVM_COMPACT_MIN lanes becomes a range, the lanes past it moved
 * into its holes. `swaps` (a loop's header): a hole may hold a lane waiting
 * at another block, which then swaps places; without (a block inside a
 * loop body, where a branch's other side waits in the holes and would swap
 * back and forth), the lanes move only when every hole is a finished
 * lane's, else the mask becomes a list. Clears the mask. `slot`: the lane
 * block's slot map, set up (and c->slot set) at the first move. */
int pf__pyvm_take_moving(pyvm_lanes *c, int32_t b, int32_t *slot,
                         uint64_t *mask, int limit, int32_t *list, int swaps);
/* The same for c's lanes as a sorted list (not a range), about to run
 * block b, a loop's header. */
void pf__pyvm_compact(pyvm_lanes *c, int32_t b, int32_t *slot);

/* pf_prog_fill with the instruction set capped at `isa` (PYVM_ISA_*; -1:
 * the best the CPU has): tests run every variant. */
int pf__prog_fill_isa(const pf_prog *prog, const pf_array *out,
                      const pf_fill_options *options, int isa, pf_error *err);

#endif /* PF_PYVM_H */
