/*
 * pyvm_tiles.c -- which loops of a translated program run in tiles
 * (pyvm_tile.h), and what a lane brings into a tile and takes out of it.
 *
 * DESIGN
 * The VM runs one instruction over all the lanes that reach it, so a loop
 * costs one pass over the registers per instruction and trip, plus the
 * work list's bookkeeping per block visit (the BR's split, compaction as
 * lanes leave). A loop whose trip is one straight path -- a chain of
 * blocks from its header back to it, each branch on the way leaving the
 * loop on one side (the Mandelbrot's `n < max_iter` and `abs(z) > 2`) --
 * needs none of that: its lanes can run it PYVM_TILE at a time, every
 * trip in registers of PYVM_TILE lanes that stay in L1, a lane that leaves
 * replaced at the next trip by one still waiting. This file finds such
 * loops (chain) and lists, per loop, the register rows: those every lane
 * holds alike (same: copied into a tile once), the others its instructions
 * touch (ref), those of them live at the header (load: what an entering
 * lane brings), per exit those written and live where it goes (put: what a
 * leaving lane takes back), and per exit what the rest of the trip reads
 * first (ghost). It also proves range counters (counters): x + 1 after the
 * trip stayed on x < y cannot overflow. Every other loop -- a branch whose
 * both sides stay in the loop, an inner loop, a return inside -- runs as
 * before.
 */
#include <stdlib.h>
#include <string.h>

#include "pyvm.h"

/* Row flags (describe). */
enum {
  ROW_REF = 1,   /* the loop reads or writes it */
  ROW_PUT = 2,   /* the loop writes it */
  ROW_LIVE = 4,  /* live at the block in question */
  ROW_SAME = 8,  /* one definition, a constant, none in the loop */
  ROW_NEED = 16, /* the rest of the trip reads it before writing it */
};
/* The most rows a loop's lists may hold together (more: not tiled). */
#define TILE_MAX_ROWS (1 << 20)

/* 1 when a path from block t reaches block h without running h before
 * (t == h included); `seen` and `stack` are scratch of nblocks. */
static int reaches(const pf_prog *p, int32_t t, int32_t h, uint8_t *seen,
                   int32_t *stack) {
  memset(seen, 0, (size_t)p->nblocks);
  int32_t n = 0;
  stack[n++] = t;
  seen[t] = 1;
  while (n > 0) {
    const int32_t b = stack[--n];
    if (b == h) return 1;
    int32_t succ[2];
    const int ns = pyvm_successors(p, b, succ);
    for (int k = 0; k < ns; k++)
      if (!seen[succ[k]]) {
        seen[succ[k]] = 1;
        stack[n++] = succ[k];
      }
  }
  return 0;
}

/* Appends to pcs/stays the trip of the loop headed by h when it is a chain
 * (DESIGN); returns its length, or -1. */
static int32_t chain(const pf_prog *p, int32_t h, int32_t *pcs,
                     uint8_t *stays, uint8_t *on, uint8_t *seen,
                     int32_t *stack) {
  memset(on, 0, (size_t)p->nblocks);
  int32_t n = 0;
  for (int32_t b = h;;) {
    if (on[b]) return -1; /* a cycle that avoids the header: inner loop */
    on[b] = 1;
    const int32_t end = p->block_first[b + 1];
    for (int32_t pc = p->block_first[b]; pc < end; pc++) {
      const int op = p->code[pc].op;
      if ((p->flags[pc] & PYVM_SKIP) || pf__pyvm_is_terminator(op)) continue;
      pcs[n++] = pc;
    }
    const pyvm_ins *last = &p->code[end - 1];
    int32_t next = b + 1;
    if (last->op == PF__OP_JMP) {
      next = last->a;
    } else if (last->op == PF__OP_BR && last->b == last->c) {
      next = last->b;
    } else if (last->op == PF__OP_BR) {
      const int in_b = reaches(p, last->b, h, seen, stack);
      const int in_c = reaches(p, last->c, h, seen, stack);
      if (in_b == in_c) return -1; /* both stay (a branch inside) or leave */
      next = in_b ? last->b : last->c;
      stays[n] = (uint8_t)in_b;
      pcs[n++] = end - 1;
    } else if (pf__pyvm_is_terminator(last->op)) {
      return -1; /* RET or BAIL: the path ends inside */
    }
    if (next == h) return n;
    b = next;
  }
}

/* Clears ROW_NEED of the rows register `w` (kind `kind`) defines. */
static void unmark_def(const pf_prog *p, char kind, int32_t w, uint8_t *flags,
                       int32_t brow0) {
  const int f = pyvm_file_of(kind);
  if (f < 0) return;
  const int32_t e = f == PYVM_FILE_B ? brow0 + w : pyvm_row_of(p->nreg, f, w);
  flags[e] &= (uint8_t)~ROW_NEED;
  if (f == PYVM_FILE_C) flags[e + 1] &= (uint8_t)~ROW_NEED;
}

/* Sets `bit` in the flags of the rows of register `w` (signature kind
 * `kind`); B register r is row brow0 + r. */
static void mark(const pf_prog *p, char kind, int32_t w, uint8_t *flags,
                 int32_t brow0, int bit) {
  const int f = pyvm_file_of(kind);
  if (f < 0) return;
  if (f == PYVM_FILE_B) {
    flags[brow0 + w] |= (uint8_t)bit;
    return;
  }
  const int32_t e = pyvm_row_of(p->nreg, f, w);
  flags[e] |= (uint8_t)bit;
  if (f == PYVM_FILE_C) flags[e + 1] |= (uint8_t)bit;
}


/* Lists into out->rows (room for all) the rows whose flags have all of
 * `want` and none of `not`: 8-byte rows, then B registers as -1 - r. */
static void rows_of(const uint8_t *flags, int want, int not, int32_t nrows,
                    int32_t brow0, pyvm_tile_rows *out) {
  out->n = out->n8 = 0;
  for (int32_t e = 0; e < nrows; e++) {
    if ((flags[e] & want) != want || (flags[e] & not) != 0) continue;
    out->rows[out->n++] = e < brow0 ? e : -1 - (e - brow0);
    out->n8 += e < brow0;
  }
}

/* Sets ROW_LIVE in flags for the rows live where block b starts (all, when
 * liveness gave none), after clearing it everywhere. */
static void live_at(const pf_prog *p, int32_t b, uint8_t *flags,
                    int32_t nrows, int32_t brow0) {
  for (int32_t e = 0; e < nrows; e++)
    flags[e] = (uint8_t)((flags[e] & ~ROW_LIVE) |
                         (p->live_first == NULL ? ROW_LIVE : 0));
  if (p->live_first == NULL) return;
  for (int32_t i = p->live_first[b]; i < p->live_first[b + 1]; i++) {
    const int32_t e = p->live[i];
    flags[e >= 0 ? e : brow0 + (-1 - e)] |= ROW_LIVE;
  }
}

/* t->unchecked: the trip's I_ADDs that cannot overflow, x + 1 after the
 * trip stayed in the loop on x < y with no write to x since: x < y <=
 * INT64_MAX (range()'s counter, `for n in range(m)`). Versions tell
 * writes apart: ver[x] counts x's writes so far in the trip. */
static int counters(const pf_prog *p, pyvm_tile_loop *t, const uint8_t *one) {
  const size_t ni = (size_t)p->nreg[PYVM_FILE_I] + 1;
  const size_t nbr = (size_t)p->nreg[PYVM_FILE_B] + 1;
  int32_t *m = pf__malloc((2 * ni + 3 * nbr) * sizeof *m);
  if (m == NULL) return PF_ENOMEM;
  int32_t *ver = m, *bound = ver + ni;     /* per I: writes, x < y at */
  int32_t *lt = bound + ni, *lt_ver = lt + nbr, *lt_if = lt_ver + nbr;
  for (size_t r = 0; r < ni; r++) ver[r] = 0, bound[r] = -1;
  for (size_t r = 0; r < nbr; r++) lt[r] = -1;
  for (int32_t j = 0; j < t->nins; j++) {
    const pyvm_ins *in = &p->code[t->pcs[j]];
    t->unchecked[j] = 0;
    if (in->op == PF__OP_BR) {
      const int32_t x = lt[in->a];
      if (x >= 0 && lt_ver[in->a] == ver[x] && lt_if[in->a] == t->stays[j])
        bound[x] = ver[x];
      continue;
    }
    if (in->op == PF__OP_I_ADD)
      t->unchecked[j] = (bound[in->a] == ver[in->a] && one[in->b]) ||
                        (bound[in->b] == ver[in->b] && one[in->a]);
    const char kind = pf__pyvm_op_sig[in->op][0];
    if (kind == 'I') ver[in->dst]++;
    if (kind != 'B') continue;
    /* B = x < y (true: x < y) or B = x >= y (false: x < y). */
    const int op = in->op;
    const int32_t x = op == PF__OP_I_LT || op == PF__OP_I_GE   ? in->a
                      : op == PF__OP_I_GT || op == PF__OP_I_LE ? in->b
                                                               : -1;
    lt[in->dst] = x;
    if (x >= 0) {
      lt_ver[in->dst] = ver[x];
      lt_if[in->dst] = op == PF__OP_I_LT || op == PF__OP_I_GT;
    }
  }
  free(m);
  return 0;
}

/* Fills loop t from its trip (pcs, stays: n entries) and the rows' flags
 * (ROW_SAME already set for registers defined once, by a constant).
 * Returns 1 when the loop is not tiled (too many rows). */
static int describe(const pf_prog *p, int32_t h, const int32_t *pcs,
                    const uint8_t *stays, int32_t n, pyvm_tile_loop *t,
                    uint8_t *flags, const uint8_t *one) {
  const int32_t brow0 = p->nreg[PYVM_FILE_I] + p->nreg[PYVM_FILE_F] +
                        2 * p->nreg[PYVM_FILE_C];
  const int32_t nrows = brow0 + p->nreg[PYVM_FILE_B];
  int32_t nbr = 0;
  for (int32_t e = 0; e < nrows; e++) flags[e] &= ROW_SAME;
  for (int32_t j = 0; j < n; j++) {
    const pyvm_ins *in = &p->code[pcs[j]];
    const char *sig = pf__pyvm_op_sig[in->op];
    const int32_t w[4] = {in->dst, in->a, in->b, in->c};
    for (int k = 0; k < 4; k++) mark(p, sig[k], w[k], flags, brow0, ROW_REF);
    mark(p, sig[0], w[0], flags, brow0, ROW_PUT);
    nbr += in->op == PF__OP_BR;
  }
  for (int32_t e = 0; e < nrows; e++) /* a row the loop writes varies */
    if (flags[e] & ROW_PUT) flags[e] &= (uint8_t)~ROW_SAME;
  if ((int64_t)(3 + 2 * nbr) * nrows > TILE_MAX_ROWS) return 1;
  const size_t bytes = (size_t)n * (sizeof *t->pcs + 2 * sizeof *t->put + 2) +
                       (size_t)(3 + 2 * nbr) * (size_t)nrows * sizeof(int32_t);
  t->mem = pf__calloc(1, bytes > 0 ? bytes : 1);
  if (t->mem == NULL) return PF_ENOMEM;
  t->put = (pyvm_tile_rows *)t->mem;
  t->ghost = t->put + n;
  t->pcs = (int32_t *)(t->ghost + n);
  int32_t *pool = t->pcs + n;
  t->stays = (uint8_t *)(pool + (size_t)(3 + 2 * nbr) * (size_t)nrows);
  t->unchecked = t->stays + n;
  t->nins = n;
  memcpy(t->pcs, pcs, (size_t)n * sizeof *pcs);
  memcpy(t->stays, stays, (size_t)n);
  pyvm_tile_rows *lists[3] = {&t->same, &t->ref, &t->load};
  for (int k = 0; k < 3; k++, pool += nrows) lists[k]->rows = pool;
  live_at(p, h, flags, nrows, brow0);
  rows_of(flags, ROW_REF | ROW_SAME, 0, nrows, brow0, &t->same);
  rows_of(flags, ROW_REF, ROW_SAME, nrows, brow0, &t->ref);
  rows_of(flags, ROW_REF | ROW_LIVE, ROW_SAME, nrows, brow0, &t->load);
  /* Backwards over the trip: ROW_NEED is what the rest reads first. */
  for (int32_t e = 0; e < nrows; e++) flags[e] &= (uint8_t)~ROW_NEED;
  for (int32_t j = n - 1; j >= 0; j--) {
    const pyvm_ins *in = &p->code[pcs[j]];
    if (in->op == PF__OP_BR) {
      t->ghost[j].rows = pool;
      t->put[j].rows = pool + nrows;
      pool += 2 * (size_t)nrows;
      rows_of(flags, ROW_REF | ROW_NEED, ROW_SAME, nrows, brow0, &t->ghost[j]);
      live_at(p, stays[j] ? in->c : in->b, flags, nrows, brow0);
      rows_of(flags, ROW_PUT | ROW_LIVE, 0, nrows, brow0, &t->put[j]);
    }
    const char *sig = pf__pyvm_op_sig[in->op];
    const int32_t w[4] = {in->dst, in->a, in->b, in->c};
    unmark_def(p, sig[0], w[0], flags, brow0);
    for (int k = 1; k < 4; k++) mark(p, sig[k], w[k], flags, brow0, ROW_NEED);
  }
  return counters(p, t, one);
}

/* ROW_SAME in flags (nrows) for the rows of each register with one
 * definition, a constant, and one[r] for each I register r whose one
 * definition is the constant 1; defs: scratch of nrows counts. */
static void same_rows(const pf_prog *p, int32_t *defs, uint8_t *flags,
                      uint8_t *one) {
  const int32_t brow0 = p->nreg[PYVM_FILE_I] + p->nreg[PYVM_FILE_F] +
                        2 * p->nreg[PYVM_FILE_C];
  const int32_t nrows = brow0 + p->nreg[PYVM_FILE_B];
  memset(flags, 0, (size_t)nrows);
  for (int32_t pc = 0; pc < p->ncode; pc++) {
    if (p->flags[pc] & PYVM_SKIP) continue;
    const pyvm_ins *in = &p->code[pc];
    const int f = pyvm_file_of(pf__pyvm_op_sig[in->op][0]);
    if (f < 0) continue;
    const int32_t e = f == PYVM_FILE_B ? brow0 + in->dst
                                       : pyvm_row_of(p->nreg, f, in->dst);
    defs[e]++;
    const int konst = in->op == PF__OP_I_CONST || in->op == PF__OP_F_CONST ||
                      in->op == PF__OP_B_CONST || in->op == PF__OP_C_CONST;
    flags[e] = (uint8_t)(defs[e] == 1 && konst ? ROW_SAME : 0);
    if (f == PYVM_FILE_I)
      one[in->dst] = (uint8_t)(defs[e] == 1 && in->op == PF__OP_I_CONST &&
                               p->iconsts[in->a] == 1);
  }
  for (int32_t e = 0; e + 1 < brow0; e++) /* a C register's second row */
    if (flags[e] && e >= brow0 - 2 * p->nreg[PYVM_FILE_C] &&
        (e - (brow0 - 2 * p->nreg[PYVM_FILE_C])) % 2 == 0)
      flags[e + 1] = flags[e];
}

int pf__pyvm_find_tiles(pf_prog *p) {
  p->ntiles = 0;
  p->tiles = NULL;
  p->tile_of = NULL;
  int32_t heads = 0;
  for (int32_t b = 0; b < p->nblocks; b++)
    heads += (p->block_loops[b] & PYVM_HEADER) != 0;
  if (heads == 0) return 0;
  const size_t nb = (size_t)p->nblocks, nc = (size_t)p->ncode;
  const size_t nrows = (size_t)p->nreg[PYVM_FILE_I] + p->nreg[PYVM_FILE_F] +
                       2 * (size_t)p->nreg[PYVM_FILE_C] + p->nreg[PYVM_FILE_B];
  int32_t *pcs = pf__malloc((nc + nb) * sizeof *pcs);
  uint8_t *bytes = pf__calloc(nc + 2 * nb + 2 * nrows + 1, 1);
  int32_t *defs = pf__calloc(nrows + 1, sizeof *defs);
  p->tile_of = pf__malloc(nb * sizeof *p->tile_of);
  p->tiles = pf__calloc((size_t)heads, sizeof *p->tiles);
  int rc = PF_ENOMEM;
  if (pcs == NULL || bytes == NULL || defs == NULL || p->tile_of == NULL ||
      p->tiles == NULL)
    goto out;
  int32_t *stack = pcs + nc;
  uint8_t *stays = bytes, *on = stays + nc, *seen = on + nb;
  uint8_t *flags = seen + nb, *one = flags + nrows;
  same_rows(p, defs, flags, one);
  rc = 0;
  for (int32_t h = 0; h < p->nblocks && rc == 0; h++) {
    p->tile_of[h] = -1;
    if (!(p->block_loops[h] & PYVM_HEADER)) continue;
    const int32_t n = chain(p, h, pcs, stays, on, seen, stack);
    if (n < 0) continue;
    rc = describe(p, h, pcs, stays, n, &p->tiles[p->ntiles], flags, one);
    if (rc == 0) p->tile_of[h] = p->ntiles++;
    if (rc == 1) rc = 0; /* not tiled */
  }
out:
  free(pcs);
  free(bytes);
  free(defs);
  if (rc != 0) pf__pyvm_free_tiles(p);
  return rc;
}

void pf__pyvm_free_tiles(pf_prog *p) {
  for (int32_t t = 0; p->tiles != NULL && t < p->ntiles; t++)
    free(p->tiles[t].mem);
  free(p->tiles);
  free(p->tile_of);
  p->tiles = NULL;
  p->tile_of = NULL;
  p->ntiles = 0;
}

