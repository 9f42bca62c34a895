/*
 * pyvm_tile.h -- a loop of the translated-function VM run in tiles
 * (pyvm_tiles.c says which loops, DESIGN there says why). A template like
 * pyvm_lanes.h, included by pyvm.c right after it for each instruction set
 * (PYVM_SUFFIX, PYVM_LEVEL and the target pragma still in force); no
 * include guard.
 *
 * DESIGN
 * A tile is PYVM_TILE slots, each holding one lane's registers (the tile
 * registers: the layout of the lane block's, L = PYVM_TILE, so every
 * operation of pyvm_lanes.h runs on it unchanged). The lanes waiting at the
 * header form a queue. Each trip starts at the header: empty slots take the
 * next lanes of the queue (their `load` rows), then the trip's instructions
 * run over all slots -- the common ones inlined with the tile's size known
 * to the compiler, so their loops are a few whole vectors without
 * remainders or lane lists. At an exit (a BR of the trip), the slots whose
 * condition leaves give their lanes' `put` rows back and send the lanes to
 * the exit's mask, as the work list would. A slot is never left holding a
 * finished lane: it takes a copy of a slot still in the loop (a ghost),
 * which computes what that slot computes -- the same values and the same
 * bails -- so no operation ever sees an operand the sequential program
 * would not have had (a division by a divisor the branch just tested,
 * say). Ghosts are replaced at the next trip; once the queue is empty they
 * run on until the last real lane leaves.
 *
 * Exactness: each real lane runs exactly its path's operations, with the
 * same functions, in the same order, so its values, exits and written-back
 * registers are the lane block's. A bail of any slot stops the tile with
 * PYVM_TILE_BAIL and the lane block runs again without tiles (pyvm.c), so
 * the first failing element is decided by the proven path; a ghost bails
 * only where a real lane would. An endless loop polls every PYVM_POLL lane
 * visits, as run_lanes does.
 */
#define PT_CAT2(a, b) a##_##b
#define PT_CAT(a, b) PT_CAT2(a, b)
#define PT(n) PT_CAT(n, PYVM_SUFFIX)

/* Bit k: byte k of s (64 bytes) is nonzero. */
static inline uint64_t PT(tile_nonzero)(const uint8_t *s) {
#if PYVM_LEVEL == 2
  const __m512i v = _mm512_loadu_si512((const void *)s);
  return (uint64_t)_mm512_test_epi8_mask(v, v);
#elif PYVM_LEVEL == 1
  const __m256i z = _mm256_setzero_si256();
  const uint32_t lo = (uint32_t)_mm256_movemask_epi8(
      _mm256_cmpeq_epi8(_mm256_loadu_si256((const void *)s), z));
  const uint32_t hi = (uint32_t)_mm256_movemask_epi8(
      _mm256_cmpeq_epi8(_mm256_loadu_si256((const void *)(s + 32)), z));
  return ~((uint64_t)hi << 32 | lo);
#else
  uint64_t m = 0;
  for (int k = 0; k < 64; k++) m |= (uint64_t)(s[k] != 0) << k;
  return m;
#endif
}

/* Rows r of lane `from` of view f into lane `to` of view t. */
static void PT(tile_copy)(const pyvm_lanes *f, int from, const pyvm_lanes *t,
                          int to, const pyvm_tile_rows *r) {
  const int64_t *src = f->ireg + from;
  int64_t *dst = t->ireg + to;
  for (int32_t j = 0; j < r->n8; j++)
    dst[(size_t)r->rows[j] * t->L] = src[(size_t)r->rows[j] * f->L];
  for (int32_t j = r->n8; j < r->n; j++)
    t->breg[(size_t)(-1 - r->rows[j]) * t->L + (size_t)to] =
        f->breg[(size_t)(-1 - r->rows[j]) * f->L + (size_t)from];
}

/* The operations inlined into a trip (pyvm_lanes.h's functions, the view a
 * local the compiler sees whole); the others are called through the table. */
#define PT_INLINE(X)                                                        \
  X(I_MOV) X(F_MOV) X(C_MOV) X(B_MOV) X(I_ADD) X(I_SUB) X(I_MUL) X(I_AND)   \
  X(I_OR) X(I_XOR) X(F_ADD) X(F_SUB) X(F_MUL) X(F_DIV) X(F_NEG) X(F_ABS)    \
  X(I2F) X(I_LT) X(I_LE) X(I_EQ) X(I_NE) X(I_GT) X(I_GE) X(F_LT) X(F_LE)    \
  X(F_EQ) X(F_NE) X(F_GT) X(F_GE) X(B_NOT) X(B_AND) X(B_OR) X(F_SELECT)     \
  X(I_SELECT) X(C_ADD) X(C_SUB) X(C_MUL) X(C_MULADD) X(C_ABS_LT_F)          \
  X(C_ABS_LE_F) X(C_ABS_GT_F) X(C_ABS_GE_F)

/* One instruction over every slot; returns how many completed. */
static inline int PT(tile_op)(const pyvm_lanes *tile, const pyvm_ins *in) {
  int why = 0;
  switch (in->op) {
#define PT_CASE(NAME)                                                       \
  case PF__OP_##NAME: {                                                     \
    const pyvm_lanes v = {.p = tile->p, .ireg = tile->ireg,                 \
                          .freg = tile->freg, .breg = tile->breg,           \
                          .creg = tile->creg, .L = PYVM_TILE,               \
                          .cnt = PYVM_TILE, .dense = 1, .lo = 0};           \
    return PT(op_##NAME)(&v, in, &why);                                     \
  }
    PT_INLINE(PT_CASE)
#undef PT_CASE
  default:
    return PT(pf__pyvm_ops)[in->op](tile, in, &why);
  }
}

#define PT_WORDS (PYVM_TILE / 64)

/* The first slot set in m (PT_WORDS words), or -1. */
static inline int PT(tile_first)(const uint64_t *m) {
  for (int w = 0; w < PT_WORDS; w++)
    if (m[w] != 0) return w * 64 + __builtin_ctzll(m[w]);
  return -1;
}

/* An I_ADD that cannot overflow (pyvm_tiles.c proved it: a counter):
 * the wrapping sum is the sum. */
static void PT(tile_add)(const pyvm_lanes *tile, const pyvm_ins *in) {
  int64_t *d = tile->ireg + (size_t)in->dst * PYVM_TILE;
  const int64_t *x = tile->ireg + (size_t)in->a * PYVM_TILE;
  const int64_t *y = tile->ireg + (size_t)in->b * PYVM_TILE;
  PF__SIMD for (int k = 0; k < PYVM_TILE; k++)
    d[k] = (int64_t)((uint64_t)x[k] + (uint64_t)y[k]);
}

/* pyvm_tile_fn (pyvm.h). flatten: the trip's operations and copies are
 * inlined, the operations' loops compiled for the tile's size. */
__attribute__((flatten)) static int PT(tile_run)(const pyvm_lanes *c, const pyvm_tile_loop *t,
                        const pyvm_lanes *tile, pyvm_tile_stop_fn stop,
                        void *ctx) {
  const pf_prog *p = c->p;
  int32_t lane[PYVM_TILE];
  uint64_t real[PT_WORDS] = {0};  /* slots holding a lane of the queue */
  uint64_t valid[PT_WORDS] = {0}; /* slots holding a whole lane's state */
  int next = 0;
  int64_t visits = 0;
  if (c->cnt == 0) return PYVM_TILE_DONE;
  /* Rows every lane holds alike: once, from the first lane. */
  const int first = c->dense ? c->lo : c->list[0];
  for (int s = 0; s < PYVM_TILE; s++)
    PT(tile_copy)(c, first, tile, s, &t->same);
  for (;;) {
    /* The header: empty slots take waiting lanes, the rest a ghost. */
    for (int w = 0; w < PT_WORDS && next < c->cnt; w++)
      for (uint64_t e = ~real[w]; e != 0 && next < c->cnt; e &= e - 1) {
        const int s = w * 64 + __builtin_ctzll(e);
        lane[s] = c->dense ? c->lo + next : c->list[next];
        next++;
        PT(tile_copy)(c, lane[s], tile, s, &t->load);
        real[w] |= e & -e;
        valid[w] |= e & -e;
      }
    const int src = PT(tile_first)(real);
    if (src < 0) return PYVM_TILE_DONE;
    for (int w = 0; w < PT_WORDS; w++) {
      for (uint64_t g = ~valid[w]; g != 0; g &= g - 1)
        PT(tile_copy)(tile, src, tile, w * 64 + __builtin_ctzll(g), &t->ref);
      valid[w] = ~UINT64_C(0);
    }
    if ((visits += PYVM_TILE) >= PYVM_POLL) {
      visits = 0;
      if (stop(ctx) != 0) return PYVM_TILE_STOPPED;
    }
    for (int32_t j = 0; j < t->nins; j++) {
      const pyvm_ins *in = &p->code[t->pcs[j]];
      if (t->unchecked[j]) {
        PT(tile_add)(tile, in);
        continue;
      }
      if (in->op != PF__OP_BR) {
        if (PT(tile_op)(tile, in) < PYVM_TILE) return PYVM_TILE_BAIL;
        continue;
      }
      uint64_t stay[PT_WORDS], all = ~UINT64_C(0), any = 0;
      for (int w = 0; w < PT_WORDS; w++) {
        const uint64_t yes = PT(tile_nonzero)(
            tile->breg + (size_t)in->a * PYVM_TILE + (size_t)w * 64);
        stay[w] = t->stays[j] ? yes : ~yes;
        all &= stay[w];
        any |= stay[w];
      }
      if (all == ~UINT64_C(0)) continue;
      const int32_t to = t->stays[j] ? in->c : in->b;
      uint64_t *m = c->masks + (size_t)to * (size_t)c->words;
      for (int w = 0; w < PT_WORDS; w++) {
        for (uint64_t g = ~stay[w] & real[w]; g != 0; g &= g - 1) {
          const int s = w * 64 + __builtin_ctzll(g);
          PT(tile_copy)(tile, s, c, lane[s], &t->put[j]);
          m[lane[s] >> 6] |= UINT64_C(1) << (lane[s] & 63);
          c->busy[to >> 6] |= UINT64_C(1) << (to & 63);
        }
        real[w] &= stay[w];
      }
      if (any == 0) {
        /* Nothing left in the loop to copy: the next trip refills. */
        memset(valid, 0, sizeof valid);
        break;
      }
      /* Enough of a ghost for the rest of this trip only. */
      const int keep = PT(tile_first)(stay);
      for (int w = 0; w < PT_WORDS; w++) {
        for (uint64_t g = ~stay[w]; g != 0; g &= g - 1)
          PT(tile_copy)(tile, keep, tile, w * 64 + __builtin_ctzll(g),
                        &t->ghost[j]);
        valid[w] &= stay[w];
      }
    }
  }
}

const pyvm_tile_fn PT(pf__pyvm_tile) = PT(tile_run);

#undef PT_INLINE
#undef PT_WORDS
#undef PT_CAT2
#undef PT_CAT
#undef PT
