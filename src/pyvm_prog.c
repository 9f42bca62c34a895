/*
 * pyvm_prog.c -- translated programs: validation, basic blocks and the
 * dataflow facts the VM (pyvm.c) runs faster with.
 *
 * DESIGN
 * Programs are validated completely before they run (pf_prog_create): every
 * opcode, operand, constant, function id and jump target (any instruction:
 * backward jumps are loops), and a last instruction that ends its path, so
 * that no input crashes the VM (tests/fuzz/fuzz_pyvm.c). That last rule is
 * all "every path ends in a RET_*, a BAIL or a cycle" needs: control leaves
 * an instruction only by a checked jump, an end, or by falling through to
 * the next one, which exists for all but the last. A cycle is legal (an
 * endless `while`): the VM polls the fill's limit on backward steps. The
 * instructions are then cut into basic blocks (leaders: 0, every target,
 * every instruction after a terminator) and each target is rewritten as a
 * block number.
 *
 * Two rewrites (fuse), each of an instruction whose result only the next
 * one, in the same block, reads; that one is then marked PYVM_SKIP. Same
 * values, same bails:
 *  - C_ABS and a comparison (abs(z) <= 2.0) become C_ABS_*_F, which decides
 *    most lanes without the hypot (pyvm_ops.h: pf__py_cabs_sign);
 *  - C_MUL and a C_ADD of its product (z * z + c) become C_MULADD: one
 *    pass over the lanes instead of two, no product stored.
 *
 * Three facts are computed once per program (analyse), because the front end
 * does not say them and the VM would otherwise rediscover them per block:
 *  - PYVM_INVARIANT: the instruction's operands are the same for every
 *    element of a row of the last axis. A register is invariant when it is
 *    I0 .. I(ndim-2) (never written), or has exactly one definition and that
 *    one is invariant; an instruction is invariant when it is not control
 *    and all its register operands are. One definition matters: a register
 *    written on two paths holds, per lane, the value of the path the lane
 *    took, which may depend on the innermost index. One pass in code order
 *    suffices for acyclic programs and stays sound with back edges (a
 *    definition seen after a use leaves the register variant).
 *  - PYVM_COLUMN: the same rule from the last index instead (I(ndim-1)
 *    never written): the instruction's operands are the same for every
 *    element of a column, so its results for one row are its results for
 *    every row. Kept only on a costly instruction (a libm call, pow) that
 *    is not also invariant; numbered in p->column for the VM's row cache.
 *  - PYVM_TO_OUT: the instruction's destination is read by nothing but the
 *    RET_F / RET_I right after it in the same block, so the VM may compute it
 *    straight into the output when the store is an identity.
 * And per block, for compaction (pyvm.c): whether its lanes may still loop
 * (loop_reach: lanes about to return are not worth moving), and the
 * registers live where it starts (liveness): a lane moved into a finished
 * lane's slot takes only those (pyvm_slots.c).
 */
#include <stdlib.h>
#include <string.h>

#include "pyvm.h"
#include "pyvm_ops.h"

const char *const pf__pyvm_op_name[PF__OP_COUNT] = {
#define PF__PYVM_NAME(name, sig, doc) #name,
    PF_PYVM_OPCODES(PF__PYVM_NAME)
#undef PF__PYVM_NAME
};

const char *const pf__pyvm_op_sig[PF__OP_COUNT] = {
#define PF__PYVM_SIG(name, sig, doc) sig,
    PF_PYVM_OPCODES(PF__PYVM_SIG)
#undef PF__PYVM_SIG
};

int pf_prog_opcode_count(void) { return PF__OP_COUNT; }

const char *pf_prog_opcode_name(int op) {
  return op >= 0 && op < PF__OP_COUNT ? pf__pyvm_op_name[op] : NULL;
}

int pf_prog_function_count(void) { return PF__FN_COUNT; }

const char *pf_prog_function_name(int fn, int *arity) {
  if (arity != NULL) *arity = pf__py_math_arity(fn);
  return pf__py_math_name(fn);
}

int pf__pyvm_is_terminator(int op) {
  return op == PF__OP_JMP || op == PF__OP_BR || op == PF__OP_RET_I ||
         op == PF__OP_RET_F || op == PF__OP_RET_B || op == PF__OP_RET_C ||
         op == PF__OP_BAIL;
}

/* ----------------------------------------------------------- validation */

static const char *const word_name[] = {"dst", "a", "b", "c"};

/* Checks operand word w (value v) of instruction pc against its kind. */
static int check_operand(const pf_prog *p, int32_t pc, int op, int w,
                         int32_t v, pf_error *err) {
  char kind = pf__pyvm_op_sig[op][w];
  const char *name = pf__pyvm_op_name[op];
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
  case 'C':
    bound = p->nreg[pyvm_file_of(kind)];
    break;
  case 'c': /* two consecutive entries */
    bound = (int64_t)p->nfconsts - 1;
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
    if (v < 0 || v >= p->ncode)
      return pf__error_set(err, PF_EINVAL, pc,
                           "instruction %d (%s): jump target %d outside "
                           "[0, %d)", (int)pc, name, (int)v, (int)p->ncode);
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
    if (pf__pyvm_is_terminator(in->op) && pc + 1 < n) block_of[pc + 1] = 1;
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

/* Where binary `next` reads `reg` once: 0 as its a, 1 as its b, -1 neither
 * or both; *other = its other operand. */
static int read_once_by(const pyvm_ins *next, int32_t reg, int32_t *other) {
  if (next->a == reg && next->b != reg) {
    *other = next->b;
    return 0;
  }
  if (next->b == reg && next->a != reg) {
    *other = next->a;
    return 1;
  }
  return -1;
}

/* C_MUL at `in` and the C_ADD after it as C_MULADD (DESIGN), if that
 * C_ADD reads the product once; `creads`: reads per complex register. */
static void fuse_muladd(pf_prog *p, int32_t pc, const int32_t *creads) {
  pyvm_ins *in = &p->code[pc];
  const pyvm_ins *next = in + 1;
  int32_t other;
  if (next->op != PF__OP_C_ADD || creads[in->dst] != 1 ||
      read_once_by(next, in->dst, &other) < 0)
    return;
  /* `other` is not the product's register, so it holds the same value one
   * instruction earlier; the sum commutes (no NaN pair: C_MULADD). */
  *in = (pyvm_ins){PF__OP_C_MULADD, next->dst, in->a, in->b, other};
  p->flags[pc + 1] |= PYVM_SKIP;
}

/* The rewrites of the DESIGN; after make_blocks. */
static int fuse(pf_prog *p) {
  int32_t nf = p->nreg[PYVM_FILE_F], nc = p->nreg[PYVM_FILE_C];
  int32_t *reads = pf__calloc((size_t)nf + (size_t)nc + (size_t)p->ncode + 1,
                              sizeof *reads);
  if (reads == NULL) return PF_ENOMEM;
  int32_t *creads = reads + nf;
  int32_t *leader = creads + nc;
  for (int32_t b = 0; b < p->nblocks; b++) leader[p->block_first[b]] = 1;
  for (int32_t pc = 0; pc < p->ncode; pc++) {
    const pyvm_ins *in = &p->code[pc];
    const char *sig = pf__pyvm_op_sig[in->op];
    const int32_t w[4] = {in->dst, in->a, in->b, in->c};
    for (int k = 1; k < 4; k++) {
      if (sig[k] == 'F') reads[w[k]]++;
      if (sig[k] == 'C') creads[w[k]]++;
    }
  }
  for (int32_t pc = 0; pc + 1 < p->ncode; pc++) {
    pyvm_ins *in = &p->code[pc];
    const pyvm_ins *next = in + 1;
    if (leader[pc + 1]) continue;
    if (in->op == PF__OP_C_MUL) {
      fuse_muladd(p, pc, creads);
      continue;
    }
    if (in->op != PF__OP_C_ABS || reads[in->dst] != 1) continue;
    /* abs(z) OP y, or y OP abs(z) read as abs(z) OP' y. */
    int op = next->op;
    int32_t other;
    const int side = read_once_by(next, in->dst, &other);
    if (side < 0) continue;
    if (side == 1)
      op = op == PF__OP_F_LT   ? PF__OP_F_GT
           : op == PF__OP_F_LE ? PF__OP_F_GE
           : op == PF__OP_F_GT ? PF__OP_F_LT
           : op == PF__OP_F_GE ? PF__OP_F_LE
                               : -1;
    const int fused = op == PF__OP_F_LT   ? PF__OP_C_ABS_LT_F
                      : op == PF__OP_F_LE ? PF__OP_C_ABS_LE_F
                      : op == PF__OP_F_GT ? PF__OP_C_ABS_GT_F
                      : op == PF__OP_F_GE ? PF__OP_C_ABS_GE_F
                                          : -1;
    if (fused < 0) continue;
    /* `other` is not C_ABS's destination, so it holds the same value one
     * instruction earlier. */
    *in = (pyvm_ins){fused, next->dst, in->a, other, 0};
    p->flags[pc + 1] |= PYVM_SKIP;
  }
  free(reads);
  return 0;
}

/* One pass in code order over the instructions that define a register:
 * an instruction whose register operands are all marked in inv gets
 * `flag`, and its destination is marked when that is its one definition
 * (DESIGN: PYVM_INVARIANT; the same rule for PYVM_COLUMN from the last
 * index). inv is seeded by the caller. */
static void invariance(pf_prog *p, const size_t *base, const int32_t *defs,
                       int32_t *inv, uint8_t flag) {
  for (int32_t pc = 0; pc < p->ncode; pc++) {
    const pyvm_ins *in = &p->code[pc];
    const char *sig = pf__pyvm_op_sig[in->op];
    const int32_t w[4] = {in->dst, in->a, in->b, in->c};
    int fd = pyvm_file_of(sig[0]);
    if (fd < 0 || pf__pyvm_is_terminator(in->op) ||
        (p->flags[pc] & PYVM_SKIP))
      continue;
    int ok = defs[base[fd] + (size_t)w[0]] == 1;
    for (int k = 1; k < 4 && ok; k++) {
      int f = pyvm_file_of(sig[k]);
      if (f >= 0 && !inv[base[f] + (size_t)w[k]]) ok = 0;
    }
    if (ok) {
      inv[base[fd] + (size_t)w[0]] = 1;
      p->flags[pc] |= flag;
    }
  }
}

/* Whether instruction `in` costs far more than copying its result: a libm
 * call or CPython's pow (the row cache of PYVM_COLUMN pays only then). */
static int costly(const pyvm_ins *in) {
  switch (in->op) {
  case PF__OP_F_CALL1:
    return in->b != PF__FN_sqrt && in->b != PF__FN_fabs;
  case PF__OP_F_CALL2:
    return in->c != PF__FN_copysign;
  case PF__OP_F_POW:
  case PF__OP_C_ABS:
    return 1;
  default:
    return 0;
  }
}

/* Sets p->flags (DESIGN): PYVM_INVARIANT, PYVM_COLUMN (numbered in
 * p->column) and PYVM_TO_OUT. Uses counts of definitions and reads per
 * register, in one allocation. */
static int analyse(pf_prog *p) {
  size_t nregs = 0, base[PYVM_FILES];
  for (int f = 0; f < PYVM_FILES; f++) {
    base[f] = nregs;
    nregs += (size_t)p->nreg[f];
  }
  /* Per register: definitions, reads, invariant, column-invariant; per
   * instruction: leader. */
  int32_t *defs = pf__calloc(4 * nregs + (size_t)p->ncode, sizeof *defs);
  p->column = pf__malloc((size_t)p->ncode * sizeof *p->column);
  if (defs == NULL || p->column == NULL) {
    free(defs);
    return PF_ENOMEM;
  }
  int32_t *reads = defs + nregs, *inv = reads + nregs, *col = inv + nregs;
  int32_t *leader = col + nregs;
  for (int32_t b = 0; b < p->nblocks; b++) leader[p->block_first[b]] = 1;
  for (int32_t pc = 0; pc < p->ncode; pc++) {
    const pyvm_ins *in = &p->code[pc];
    if (p->flags[pc] & PYVM_SKIP) continue;
    const char *sig = pf__pyvm_op_sig[in->op];
    const int32_t w[4] = {in->dst, in->a, in->b, in->c};
    int f = pyvm_file_of(sig[0]);
    if (f >= 0) defs[base[f] + (size_t)w[0]]++;
    for (int k = 1; k < 4; k++)
      if ((f = pyvm_file_of(sig[k])) >= 0) reads[base[f] + (size_t)w[k]]++;
  }
  /* The index parameters but the last are invariant while never written;
   * the last is the one column-invariant register while never written. */
  for (int d = 0; d + 1 < p->ndim; d++) inv[d] = defs[d] == 0;
  if (p->ndim >= 2) col[p->ndim - 1] = defs[p->ndim - 1] == 0;
  invariance(p, base, defs, inv, PYVM_INVARIANT);
  invariance(p, base, defs, col, PYVM_COLUMN);
  for (int32_t pc = 0; pc < p->ncode; pc++) {
    const pyvm_ins *in = &p->code[pc];
    const int32_t op = in->op;
    p->column[pc] = -1;
    /* Constants and moves cost no more than their copy: alone they are
     * not worth cutting lane blocks at rows for. */
    if ((p->flags[pc] & PYVM_INVARIANT) &&
        (op < PF__OP_I_CONST || op > PF__OP_B_MOV))
      p->ninvariant++;
    /* Only a costly result is worth its row cache; an invariant one is
     * computed once per lane block anyway. */
    if (!costly(in) || (p->flags[pc] & PYVM_INVARIANT))
      p->flags[pc] &= (uint8_t)~PYVM_COLUMN;
    if (p->flags[pc] & PYVM_COLUMN) p->column[pc] = p->ncolumn++;
    /* TO_OUT: the next instruction, in this block, returns this value. */
    const int fd = pyvm_file_of(pf__pyvm_op_sig[op][0]);
    if (fd < 0 || pf__pyvm_is_terminator(op) || (p->flags[pc] & PYVM_SKIP))
      continue;
    const pyvm_ins *next =
        pc + 1 < p->ncode && !leader[pc + 1] ? in + 1 : NULL;
    int ret_file = next == NULL ? -1
                   : next->op == PF__OP_RET_F ? PYVM_FILE_F
                   : next->op == PF__OP_RET_I ? PYVM_FILE_I
                                              : -1;
    if (ret_file == fd && next->a == in->dst &&
        reads[base[fd] + (size_t)in->dst] == 1)
      p->flags[pc] |= PYVM_TO_OUT;
  }
  free(defs);
  return 0;
}

/* Liveness for compaction (pyvm_slots.c): the registers live where each
 * block starts, by the usual backward dataflow to a fixed point over bit
 * sets of all registers. Not kept (NULL: all live) for programs whose sets
 * would pass these sizes. */
#define PYVM_LIVE_MAX_WORDS (1 << 20)
#define PYVM_LIVE_MAX_ROWS (1 << 22)

/* Block b's reads before its writes (use) and its writes (def). */
static void use_def(const pf_prog *p, const size_t *base, int32_t b,
                    uint64_t *use, uint64_t *def) {
  for (int32_t pc = p->block_first[b]; pc < p->block_first[b + 1]; pc++) {
    if (p->flags[pc] & PYVM_SKIP) continue;
    const pyvm_ins *in = &p->code[pc];
    const char *sig = pf__pyvm_op_sig[in->op];
    const int32_t w[4] = {in->dst, in->a, in->b, in->c};
    for (int k = 1; k < 4; k++) {
      const int f = pyvm_file_of(sig[k]);
      if (f < 0) continue;
      const size_t r = base[f] + (size_t)w[k];
      if (!(def[r >> 6] >> (r & 63) & 1))
        use[r >> 6] |= UINT64_C(1) << (r & 63);
    }
    const int f = pyvm_file_of(sig[0]);
    if (f >= 0) {
      const size_t r = base[f] + (size_t)w[0];
      def[r >> 6] |= UINT64_C(1) << (r & 63);
    }
  }
}

/* block_loops[b] (PYVM_LOOPS): a path from b reaches a cycle, so lanes
 * there may loop and moving them together may pay (pyvm.c). The blocks that
 * cannot are found backwards from those that return: a block all of whose
 * successors cannot; a cycle's blocks are never found. PYVM_HEADER: b is
 * the target of a backward step (a loop's header, where its lanes meet). */
static int loop_reach(pf_prog *p) {
  p->block_loops = pf__malloc((size_t)p->nblocks);
  if (p->block_loops == NULL) return PF_ENOMEM;
  memset(p->block_loops, PYVM_LOOPS, (size_t)p->nblocks);
  for (int32_t b = 0; b < p->nblocks; b++) {
    int32_t succ[2];
    const int ns = pyvm_successors(p, b, succ);
    for (int k = 0; k < ns; k++)
      if (succ[k] <= b) p->block_loops[succ[k]] |= PYVM_HEADER;
  }
  for (int changed = 1; changed;) {
    changed = 0;
    for (int32_t b = p->nblocks - 1; b >= 0; b--) {
      if (!p->block_loops[b]) continue;
      int32_t succ[2];
      const int ns = pyvm_successors(p, b, succ);
      int ends = 1;
      for (int k = 0; k < ns; k++) ends &= !p->block_loops[succ[k]];
      if (ends) {
        p->block_loops[b] = 0; /* (a header has a predecessor after it) */
        changed = 1;
      }
    }
  }
  return 0;
}

/* live_in[b] = use[b] | (the successors' live_in & ~def[b]), until nothing
 * changes; `out` is scratch of `words`. */
static void live_fixpoint(const pf_prog *p, size_t words, const uint64_t *use,
                          const uint64_t *def, uint64_t *in, uint64_t *out) {
  for (int changed = 1; changed;) {
    changed = 0;
    for (int32_t b = p->nblocks - 1; b >= 0; b--) {
      int32_t succ[2];
      const int ns = pyvm_successors(p, b, succ);
      memset(out, 0, words * 8);
      for (int k = 0; k < ns; k++)
        for (size_t w = 0; w < words; w++)
          out[w] |= in[(size_t)succ[k] * words + w];
      uint64_t *mine = in + (size_t)b * words;
      for (size_t w = 0; w < words; w++) {
        const size_t at = (size_t)b * words + w;
        const uint64_t v = use[at] | (out[w] & ~def[at]);
        if (v != mine[w]) {
          mine[w] = v;
          changed = 1;
        }
      }
    }
  }
}

static int liveness(pf_prog *p) {
  size_t base[PYVM_FILES], nregs = 0;
  for (int f = 0; f < PYVM_FILES; f++) {
    base[f] = nregs;
    nregs += (size_t)p->nreg[f];
  }
  const size_t words = (nregs + 63) / 64 + 1, nb = (size_t)p->nblocks;
  if (nb * words * 3 + words > PYVM_LIVE_MAX_WORDS) return 0;
  uint64_t *use = pf__calloc(nb * words * 3 + words, 8);
  if (use == NULL) return PF_ENOMEM;
  uint64_t *def = use + nb * words, *in = def + nb * words;
  for (int32_t b = 0; b < p->nblocks; b++)
    use_def(p, base, b, use + (size_t)b * words, def + (size_t)b * words);
  live_fixpoint(p, words, use, def, in, in + nb * words);
  /* The rows of each block's set: C registers have two. */
  size_t rows = 0;
  for (size_t b = 0; b < nb; b++)
    for (int f = 0; f < PYVM_FILES; f++)
      for (int32_t r = 0; r < p->nreg[f]; r++) {
        const size_t i = b * words * 64 + base[f] + (size_t)r;
        if (in[i >> 6] >> (i & 63) & 1) rows += f == PYVM_FILE_C ? 2 : 1;
      }
  int rc = 0;
  if (rows <= PYVM_LIVE_MAX_ROWS) {
    p->live_first = pf__malloc((nb + 1) * sizeof *p->live_first);
    p->live = pf__malloc((rows > 0 ? rows : 1) * sizeof *p->live);
    if (p->live_first == NULL || p->live == NULL) {
      free(p->live_first);
      free(p->live);
      p->live_first = p->live = NULL;
      rc = PF_ENOMEM;
    } else {
      int32_t n = 0;
      for (size_t b = 0; b < nb; b++) {
        p->live_first[b] = n;
        for (int f = 0; f < PYVM_FILES; f++)
          for (int32_t r = 0; r < p->nreg[f]; r++) {
            const size_t i = b * words * 64 + base[f] + (size_t)r;
            if (!(in[i >> 6] >> (i & 63) & 1)) continue;
            const int32_t e = pyvm_row_of(p->nreg, f, r);
            p->live[n++] = e;
            if (f == PYVM_FILE_C) p->live[n++] = e + 1;
          }
      }
      p->live_first[nb] = n;
    }
  }
  free(use);
  return rc;
}

void pf_prog_free(pf_prog *prog) {
  if (prog == NULL) return;
  free(prog->code);
  free(prog->flags);
  free(prog->column);
  free(prog->block_first);
  free(prog->live_first);
  free(prog->block_loops);
  free(prog->live);
  pf__pyvm_free_tiles(prog);
  free(prog->iconsts);
  free(prog->fconsts);
  free(prog);
}

int pf_prog_create(pf_prog **prog, const int32_t *code, size_t nwords,
                   const int64_t *iconsts, size_t niconsts,
                   const double *fconsts, size_t nfconsts, int ndim,
                   const int32_t nregs[4], pf_error *err) {
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
  for (int f = 0; f < PYVM_FILES; f++)
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
  p->flags = pf__calloc((size_t)p->ncode, sizeof *p->flags);
  p->iconsts = pf__malloc((niconsts > 0 ? niconsts : 1) * sizeof *p->iconsts);
  p->fconsts = pf__malloc((nfconsts > 0 ? nfconsts : 1) * sizeof *p->fconsts);
  if (p->code == NULL || p->flags == NULL || p->iconsts == NULL || p->fconsts == NULL) goto fail;
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
  if (!pf__pyvm_is_terminator(p->code[p->ncode - 1].op)) {
    rc = pf__error_set(err, PF_EINVAL, p->ncode - 1,
                       "the last instruction (%s) does not end its path: "
                       "control would run off the end",
                       pf__pyvm_op_name[p->code[p->ncode - 1].op]);
    goto fail;
  }
  rc = make_blocks(p);
  if (rc == 0) rc = fuse(p);
  if (rc == 0) rc = analyse(p);
  if (rc == 0) rc = liveness(p);
  if (rc == 0) rc = loop_reach(p);
  if (rc == 0) rc = pf__pyvm_find_tiles(p);
  if (rc != 0) goto fail;
  *prog = p;
  return 0;
fail:
  if (rc == PF_ENOMEM) pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  pf_prog_free(p);
  return rc;
}

