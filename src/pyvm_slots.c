/*
 * pyvm_slots.c -- which lanes of a lane block run: a block's mask as a
 * range or a list, a range split by a condition a word at a time, and
 * compaction (pyvm.c's DESIGN).
 *
 * DESIGN
 * A lane block's lanes live in slots: register r of a file holds the lane
 * of slot k at [r * L + k], and the masks of waiting lanes have one bit per
 * slot. Until something moves, slot k holds lane k. Compaction moves the
 * lanes about to run a block into one range of slots, so that the block's
 * operations run dense: each lane past the range moves into a hole in it.
 * A hole is a slot whose lane is not running: it waits at another block
 * (its bits in the masks say which) or is finished (it returned, or there
 * was never a lane there). A finished lane's slot is simply overwritten,
 * and then only the registers live where the block starts are copied
 * (pyvm_prog.c computes them); a waiting lane swaps places with the moving
 * one, every register and its mask bits, since its own block may read any
 * of them. The slot map (slot[k]: the lane slot k holds) travels along, so
 * the stores put each value at its own element.
 */
#include <assert.h>
#include <string.h>

#include "pyvm.h"

/* Bits of mask word w of lanes below `limit`. */
static inline uint64_t mask_word(const uint64_t *m, int w, int limit) {
  const int left = limit - w * 64;
  if (left <= 0) return 0;
  return left >= 64 ? m[w] : m[w] & ((UINT64_C(1) << left) - 1);
}

/* Bits of mask word w for the lanes in [lo, hi). */
static inline uint64_t word_range(int w, int lo, int hi) {
  const int a = lo - w * 64 > 0 ? lo - w * 64 : 0;
  const int e = hi - w * 64 < 64 ? hi - w * 64 : 64;
  if (e <= a) return 0;
  return (e == 64 ? ~UINT64_C(0) : (UINT64_C(1) << e) - 1) &
         ~((UINT64_C(1) << a) - 1);
}

int pf__pyvm_mask_take(const uint64_t *m, int words, int limit, pyvm_lanes *c,
                       int32_t *list) {
  int cnt = 0, first = -1, last = -1;
  for (int w = 0; w < words; w++) {
    const uint64_t bits = mask_word(m, w, limit);
    if (bits == 0) continue;
    if (first < 0) first = w * 64 + __builtin_ctzll(bits);
    last = w * 64 + 63 - __builtin_clzll(bits);
    cnt += __builtin_popcountll(bits);
  }
  c->cnt = cnt;
  c->lo = first;
  c->dense = cnt > 0 && last - first + 1 == cnt;
  c->list = list;
  if (cnt == 0 || c->dense) return cnt;
  int j = 0;
  for (int w = 0; w < words; w++)
    for (uint64_t bits = mask_word(m, w, limit); bits != 0; bits &= bits - 1)
      list[j++] = w * 64 + __builtin_ctzll(bits);
  assert(j == cnt);
  return cnt;
}

/* Bit j: byte j of the 64 at s is not 0 (8 bytes per multiply: the
 * nonzero test sets each byte's top bit, the product gathers them). */
static inline uint64_t nonzero_bits(const uint8_t *s) {
  const uint64_t low7 = UINT64_C(0x7f7f7f7f7f7f7f7f);
  uint64_t bits = 0;
  for (int g = 0; g < 8; g++) {
    uint64_t x;
    memcpy(&x, s + 8 * g, 8);
    const uint64_t top = (((x & low7) + low7) | x) & ~low7;
    bits |= ((top >> 7) * UINT64_C(0x0102040810204080) >> 56) << (8 * g);
  }
  return bits;
}

void pf__pyvm_split_range(const uint8_t *s, int lo, int hi, int want,
                          int32_t *list, int *j, uint64_t *mo) {
  int n = *j;
  for (int w = lo >> 6; w * 64 < hi; w++) {
    const uint64_t range = word_range(w, lo, hi);
    const uint64_t t = nonzero_bits(s + (size_t)w * 64);
    uint64_t go = (want ? t : ~t) & range;
    mo[w] |= range & ~go;
    for (; go != 0; go &= go - 1) list[n++] = w * 64 + __builtin_ctzll(go);
  }
  *j = n;
}

/* ----------------------------------------------------------- compaction */

/* 1 when slot q's lane waits at some block (else it finished). */
static int slot_waits(const pyvm_lanes *c, int q) {
  for (int32_t b = 0; b < c->p->nblocks; b++)
    if (c->masks[(size_t)b * (size_t)c->words + (size_t)(q >> 6)] >>
            (q & 63) & 1)
      return 1;
  return 0;
}

/* Row e of the I/F/C rows (pyvm_row_of). */
static inline int64_t *row8(const pyvm_lanes *c, int32_t e) {
  return c->ireg + (size_t)e * c->L;
}

/* Every register of slots q and p exchanged, and q's mask bits given to p
 * (a running lane, p, waits nowhere). */
static void swap_slots(const pyvm_lanes *c, int32_t *slot, int q, int p) {
  const pf_prog *prog = c->p;
  const int32_t rows8 = prog->nreg[PYVM_FILE_I] + prog->nreg[PYVM_FILE_F] +
                        2 * prog->nreg[PYVM_FILE_C];
  for (int32_t e = 0; e < rows8; e++) {
    int64_t *reg = row8(c, e);
    const int64_t t = reg[q];
    reg[q] = reg[p];
    reg[p] = t;
  }
  for (int32_t r = 0; r < prog->nreg[PYVM_FILE_B]; r++) {
    uint8_t *reg = c->breg + (size_t)r * c->L;
    const uint8_t t = reg[q];
    reg[q] = reg[p];
    reg[p] = t;
  }
  for (int32_t b = 0; b < prog->nblocks; b++) {
    uint64_t *m = c->masks + (size_t)b * (size_t)c->words;
    if (m[q >> 6] >> (q & 63) & 1) {
      m[q >> 6] ^= UINT64_C(1) << (q & 63);
      m[p >> 6] ^= UINT64_C(1) << (p & 63);
    }
  }
  const int32_t t = slot[q];
  slot[q] = slot[p];
  slot[p] = t;
}

/* Moves the running lane of slot p, about to run block b, into slot q. */
static void move_slot(const pyvm_lanes *c, int32_t b, int32_t *slot, int q,
                      int p) {
  const pf_prog *prog = c->p;
  if (prog->live_first == NULL || slot_waits(c, q)) {
    swap_slots(c, slot, q, p);
    return;
  }
  for (int32_t j = prog->live_first[b]; j < prog->live_first[b + 1]; j++) {
    const int32_t e = prog->live[j];
    if (e >= 0) {
      int64_t *reg = row8(c, e);
      reg[q] = reg[p];
    } else {
      uint8_t *reg = c->breg + (size_t)(-1 - e) * c->L;
      reg[q] = reg[p];
    }
  }
  slot[q] = slot[p];
}

/* Before a lane block's first move: every slot holds its own lane. */
static void lanes_may_move(pyvm_lanes *c, int32_t *slot) {
  if (c->slot != NULL) return;
  for (size_t k = 0; k < c->L; k++) slot[k] = (int32_t)k;
  c->slot = slot;
}

/* The holes of [first, hi) (the zero bits of m there) and the lanes past
 * hi (its bits there), both in slot order, a mask word at a time: with
 * `move` each hole takes the next such lane; without, returns 1 at the
 * first hole whose lane waits at some block. */
static int fill_holes(pyvm_lanes *c, int32_t b, int32_t *slot,
                      const uint64_t *m, int first, int hi, int move) {
  const int words = c->words;
  int hw = first >> 6, sw = hi >> 6;
  uint64_t holes = ~m[hw] & word_range(hw, first, hi);
  uint64_t from = sw < words ? m[sw] & ~word_range(sw, 0, hi) : 0;
  for (;;) {
    while (from == 0 && ++sw < words) from = m[sw];
    if (from == 0) return 0;
    while (holes == 0) {
      hw++;
      assert(hw < words);
      holes = ~m[hw] & word_range(hw, first, hi);
    }
    const int q = hw * 64 + __builtin_ctzll(holes);
    if (move)
      move_slot(c, b, slot, q, sw * 64 + __builtin_ctzll(from));
    else if (slot_waits(c, q))
      return 1;
    holes &= holes - 1;
    from &= from - 1;
  }
}

int pf__pyvm_take_moving(pyvm_lanes *c, int32_t b, int32_t *slot,
                         uint64_t *mask, int limit, int32_t *list, int swaps) {
  const int words = c->words;
  uint64_t m[PF__PYVM_MAX_LANES / 64];
  int cnt = 0, first = -1, last = -1;
  for (int w = 0; w < words; w++) {
    m[w] = mask_word(mask, w, limit);
    mask[w] = 0;
    if (m[w] == 0) continue;
    if (first < 0) first = w * 64 + __builtin_ctzll(m[w]);
    last = w * 64 + 63 - __builtin_clzll(m[w]);
    cnt += __builtin_popcountll(m[w]);
  }
  const int hi = first + cnt;
  if (cnt < PYVM_COMPACT_MIN || last - first + 1 == cnt ||
      (!swaps && fill_holes(c, b, slot, m, first, hi, 0)))
    return pf__pyvm_mask_take(m, words, limit, c, list);
  lanes_may_move(c, slot);
  fill_holes(c, b, slot, m, first, hi, 1);
  c->cnt = cnt;
  c->lo = first;
  c->dense = 1;
  return cnt;
}

void pf__pyvm_compact(pyvm_lanes *c, int32_t b, int32_t *slot) {
  uint64_t m[PF__PYVM_MAX_LANES / 64] = {0};
  for (int j = 0; j < c->cnt; j++)
    m[c->list[j] >> 6] |= UINT64_C(1) << (c->list[j] & 63);
  const int first = c->list[0];
  lanes_may_move(c, slot);
  fill_holes(c, b, slot, m, first, first + c->cnt, 1);
  c->dense = 1;
  c->lo = first;
}
