/* test_pyvm_tiles.c -- loops run in tiles (src/pyvm_tiles.c, pyvm_tile.h):
 * which loops tile, the counter proof, the tile runner called directly
 * (ghosts: a slot that left never runs the rest of a trip on its stale
 * registers), bails inside tiled loops reported at the first failing element,
 * lane counts around the tile's and the lane block's sizes against C
 * references, and the AVX-512 comparison loops at every length. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pf_test.h"
#include "pyvm.h"
#include "pyvm_test.h"

/* The tile runners this CPU can run, by PYVM_ISA_*. */
static pyvm_tile_fn runner(int isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  const pyvm_tile_fn fns[3] = {pf__pyvm_tile_base, pf__pyvm_tile_avx2,
                               pf__pyvm_tile_avx512};
  return isa <= pf__vm_isa() ? fns[isa] : NULL;
#else
  return isa == 0 ? pf__pyvm_tile_base : NULL;
#endif
}

/* s = 0; for n in range(m): s += n * n; return s -- the range loop as the
 * translator writes it (I2 = n, I3 = m, I4 = 1). */
static const ins range_sum[] = {
    {"I_CONST", 2, 0, 0, 0}, /* 0: n = 0 */
    {"I_CONST", 4, 1, 0, 0}, /* 1: I4 = 1 */
    {"I_MOV", 3, 0, 0, 0},   /* 2: m = i */
    {"I_CONST", 5, 0, 0, 0}, /* 3: s = 0 */
    {"I_LT", 0, 2, 3, 0},    /* 4: header: n < m */
    {"BR", 0, 0, 6, 10},     /* 5 */
    {"I_MUL", 6, 2, 2, 0},   /* 6: s += n * n */
    {"I_ADD", 5, 5, 6, 0},   /* 7 */
    {"I_ADD", 2, 2, 4, 0},   /* 8: n += 1 (cannot overflow: n < m) */
    {"JMP", 0, 4, 0, 0},     /* 9 */
    {"RET_I", 0, 5, 0, 0},   /* 10 */
};

static void test_which_loops_tile(void **state) {
  (void)state;
  const int64_t ik[2] = {0, 1};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, range_sum, PF_ARRAY_LEN(range_sum), ik, 2,
                          NULL, 0, 1, 7, 0, 1, &err), 0);
  assert_int_equal(p->ntiles, 1);
  const int32_t head = p->tile_of[1]; /* block 1 starts at pc 4 */
  assert_int_equal(p->block_first[1], 4);
  assert_int_equal(head, 0);
  const pyvm_tile_loop *t = &p->tiles[head];
  /* I_LT, BR, I_MUL, I_ADD, I_ADD: no jump. */
  assert_int_equal(t->nins, 5);
  assert_int_equal(t->pcs[1], 5);
  assert_int_equal(t->stays[1], 1);
  /* s + n*n may overflow; n + 1 after n < m may not. */
  assert_int_equal(t->unchecked[3], 0);
  assert_int_equal(t->unchecked[4], 1);
  /* I4 is one constant for every lane; n, m, s enter with a lane. */
  assert_int_equal(t->same.n, 1);
  assert_int_equal(t->same.rows[0], 4);
  assert_int_equal(t->load.n, 3);
  /* Leaving to the RET: s only (written in the loop, live there). */
  assert_int_equal(t->put[1].n, 1);
  assert_int_equal(t->put[1].rows[0], 5);
  pf_prog_free(p);

  /* n <= m does not bound n + 1 (m may be INT64_MAX): checked. */
  ins le[PF_ARRAY_LEN(range_sum)];
  memcpy(le, range_sum, sizeof le);
  le[4].op = "I_LE";
  assert_int_equal(create(&p, le, PF_ARRAY_LEN(le), ik, 2, NULL, 0, 1, 7, 0,
                          1, &err), 0);
  assert_int_equal(p->ntiles, 1);
  assert_int_equal(p->tiles[0].unchecked[4], 0);
  pf_prog_free(p);

  /* n written between the test and the add: checked. */
  ins moved[PF_ARRAY_LEN(range_sum)];
  memcpy(moved, range_sum, sizeof moved);
  moved[7] = (ins){"I_ADD", 2, 2, 2, 0}; /* n = n + n */
  assert_int_equal(create(&p, moved, PF_ARRAY_LEN(moved), ik, 2, NULL, 0, 1,
                          7, 0, 1, &err), 0);
  assert_int_equal(p->tiles[0].unchecked[4], 0);
  pf_prog_free(p);

  /* A branch whose both sides stay in the loop (Collatz's if/else): not
   * tiled; nor a loop with a return inside its trip's path. */
  const ins diamond[] = {
      {"I_CONST", 1, 0, 0, 0}, {"I_LT", 0, 1, 0, 0}, /* 1: header */
      {"BR", 0, 0, 3, 9},      {"I_TRUTH", 1, 1, 0, 0},
      {"BR", 0, 1, 5, 7},      {"I_ADD", 1, 1, 1, 0},
      {"JMP", 0, 1, 0, 0},     {"I_ADD", 1, 1, 0, 0},
      {"JMP", 0, 1, 0, 0},     {"RET_I", 0, 1, 0, 0},
  };
  assert_int_equal(create(&p, diamond, PF_ARRAY_LEN(diamond), ik, 1, NULL, 0,
                          1, 2, 0, 2, &err), 0);
  assert_int_equal(p->ntiles, 0);
  pf_prog_free(p);
}

/* x = i % 5; y = 0; while x != 0: y += 1000 // x; x -= 1; return y. A slot
 * whose lane left at x == 0 would divide by zero in the rest of its trip:
 * it holds a ghost instead, so the runner never bails. */
static int64_t harmonic(int64_t i) {
  int64_t y = 0;
  for (int64_t x = i % 5; x != 0; x--) y += 1000 / x;
  return y;
}

static int never_stop(void *ctx) {
  (void)ctx;
  return 0;
}

static void test_tile_runner_ghosts(void **state) {
  (void)state;
  const ins code[] = {
      {"I_EQ", 0, 1, 2, 0},       /* 0: header: x == 0 (I2 = 0) */
      {"BR", 0, 0, 6, 2},         /* 1 */
      {"I_FLOORDIV", 5, 4, 1, 0}, /* 2: y += 1000 // x */
      {"I_ADD", 3, 3, 5, 0},      /* 3 */
      {"I_SUB", 1, 1, 6, 0},      /* 4: x -= 1 (I6 = 1) */
      {"JMP", 0, 0, 0, 0},        /* 5 */
      {"RET_I", 0, 3, 0, 0},      /* 6 */
  };
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), NULL, 0, NULL, 0, 1,
                          7, 0, 1, &err), 0);
  assert_int_equal(p->ntiles, 1);
  assert_int_equal(p->tile_of[0], 0);
  const int32_t ret = p->code[1].b; /* the RET's block */
  for (int isa = 0; isa < 3; isa++) {
    const pyvm_tile_fn run = runner(isa);
    if (run == NULL) continue;
    for (int n = 1; n <= 300; n += n < 70 ? 1 : 23) {
      const size_t L = 512, T = PYVM_TILE;
      int64_t *ireg = calloc(7 * L, sizeof *ireg);
      uint8_t *breg = calloc(L, 1);
      int64_t *treg = calloc(7 * T, sizeof *treg);
      uint8_t *tbreg = calloc(T, 1);
      uint64_t *masks = calloc((size_t)p->nblocks * (L / 64), 8);
      uint64_t busy[1] = {0};
      int32_t list[512];
      assert_true(ireg && breg && treg && tbreg && masks);
      /* Lanes 3, 5, 7, ...: a list, element 2k + 3 in lane 2k + 3. */
      for (int j = 0; j < n && 2 * j + 3 < (int)L; j++) {
        const int k = 2 * j + 3;
        list[j] = k;
        ireg[1 * L + k] = k % 5;  /* x */
        ireg[4 * L + k] = 1000;
        ireg[6 * L + k] = 1;
      }
      const int cnt = n < 254 ? n : 254;
      pyvm_lanes c = {.p = p, .ireg = ireg, .freg = (double *)(ireg + 7 * L),
                      .breg = breg, .creg = (double *)(ireg + 7 * L),
                      .L = L, .list = list, .cnt = cnt, .dense = 0,
                      .masks = masks, .words = (int)(L / 64), .busy = busy};
      pyvm_lanes t = {.p = p, .ireg = treg, .freg = (double *)(treg + 7 * T),
                      .breg = tbreg, .creg = (double *)(treg + 7 * T),
                      .L = T, .cnt = (int)T, .dense = 1};
      assert_int_equal(run(&c, &p->tiles[0], &t, never_stop, NULL),
                       PYVM_TILE_DONE);
      const uint64_t *m = masks + (size_t)ret * (L / 64);
      assert_true(busy[0] >> ret & 1);
      for (int j = 0; j < cnt; j++) {
        const int k = list[j];
        if (ireg[3 * L + k] != harmonic(k))
          fail_msg("isa %d, %d lanes: lane %d: %lld, want %lld", isa, cnt, k,
                   (long long)ireg[3 * L + k], (long long)harmonic(k));
        assert_true(m[k >> 6] >> (k & 63) & 1);
      }
      free(ireg);
      free(breg);
      free(treg);
      free(tbreg);
      free(masks);
    }
  }
  pf_prog_free(p);
}

/* x = 1; for _ in range(40): x *= i -- 3**40 is past int64, so element 3
 * is the first to bail (inside the tiled loop), after 0, 1, 2**40. */
static void test_bail_in_a_tiled_loop(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0}, /* 0: x = 1 */
      {"I_CONST", 2, 1, 0, 0}, /* 1: n = 0 */
      {"I_CONST", 3, 2, 0, 0}, /* 2: I3 = 40 */
      {"I_CONST", 4, 0, 0, 0}, /* 3: I4 = 1 */
      {"I_LT", 0, 2, 3, 0},    /* 4: header */
      {"BR", 0, 0, 6, 9},      /* 5 */
      {"I_MUL", 1, 1, 0, 0},   /* 6: x *= i */
      {"I_ADD", 2, 2, 4, 0},   /* 7 */
      {"JMP", 0, 4, 0, 0},     /* 8 */
      {"RET_I", 0, 1, 0, 0},   /* 9 */
  };
  const int64_t ik[3] = {1, 0, 40};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 3, NULL, 0, 1, 5,
                          0, 1, &err), 0);
  assert_int_equal(p->ntiles, 1);
  enum { N = 10000 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  const int64_t shape[1] = {N};
  for (int run = 0; run < 9; run++) {
    memset(out, 0, sizeof(int64_t) * N);
    pf_array a = array_of(out, PF_INT64, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = 1 + run % 3;
    o.schedule = (pf_schedule)(run % 3);
    memset(&err, 0, sizeof err);
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 3, &err), PF_EBAIL);
    assert_int_equal(err.position, 3);
    assert_string_equal(err.message, "I_MUL: integer result outside int64");
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], INT64_C(1) << 40);
  }
  /* The same loop with `<=` and m = INT64_MAX from INT64_MAX - 3: the
   * counter's n + 1 overflows at its fourth trip and must bail. */
  const ins le[] = {
      {"I_CONST", 2, 0, 0, 0}, {"I_CONST", 3, 1, 0, 0},
      {"I_CONST", 4, 2, 0, 0}, {"I_LE", 0, 2, 3, 0},
      {"BR", 0, 0, 5, 7},      {"I_ADD", 2, 2, 4, 0},
      {"JMP", 0, 3, 0, 0},     {"RET_I", 0, 2, 0, 0},
  };
  const int64_t lk[3] = {INT64_MAX - 3, INT64_MAX, 1};
  pf_prog_free(p);
  assert_int_equal(create(&p, le, PF_ARRAY_LEN(le), lk, 3, NULL, 0, 1, 5, 0,
                          1, &err), 0);
  assert_int_equal(p->ntiles, 1);
  for (int isa = 0; isa < 3; isa++) {
    pf_array a = array_of(out, PF_INT64, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.timeout = 30; /* a wrapped counter would loop forever */
    memset(&err, 0, sizeof err);
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, isa, &err), PF_EBAIL);
    assert_int_equal(err.position, 0);
  }
  free(out);
  pf_prog_free(p);
}

/* range_sum over lane counts around the tile (64) and the lane block
 * (8,192), from offsets that are not multiples of either. */
static void test_tiled_lengths(void **state) {
  (void)state;
  const int64_t ik[2] = {0, 1};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, range_sum, PF_ARRAY_LEN(range_sum), ik, 2,
                          NULL, 0, 1, 7, 0, 1, &err), 0);
  const int64_t sizes[] = {1, 2, 63, 64, 65, 127, 129, 8191, 8192, 8193,
                           20000};
  for (size_t z = 0; z < PF_ARRAY_LEN(sizes); z++) {
    const int64_t n = sizes[z];
    int64_t *out = malloc(sizeof(int64_t) * (size_t)n);
    for (int run = 0; run < 6; run++) {
      memset(out, 0xff, sizeof(int64_t) * (size_t)n);
      const int64_t shape[1] = {n};
      pf_array a = array_of(out, PF_INT64, 1, shape);
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = 1 + run % 2;
      o.chunk = run % 2 ? 777 : 0;
      assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 2, &err), 0);
      for (int64_t i = 0; i < n; i++) {
        const int64_t want = (i - 1) * i * (2 * i - 1) / 6;
        if (out[i] != want)
          fail_msg("n %lld, run %d: f(%lld) = %lld, want %lld", (long long)n,
                   run, (long long)i, (long long)out[i], (long long)want);
      }
    }
    free(out);
  }
  pf_prog_free(p);
}

/* Every comparison of ints and floats (NaN among them) over every length
 * up to 200 and every ISA: the AVX-512 loops' 64-lane stores and masked
 * tails against C's operators. f(i) = x OP y with x = i % 7 - 3 and y =
 * i % 5 - 2 (as floats: NaN where i % 11 == 0). */
static void test_comparisons_every_length(void **state) {
  (void)state;
  const char *ops[6] = {"LT", "LE", "EQ", "NE", "GT", "GE"};
  const int64_t ik[5] = {7, 3, 5, 2, 11};
  const double fk[1] = {NAN};
  for (int f = 0; f < 2; f++)
    for (int c = 0; c < 6; c++) {
      char name[8];
      snprintf(name, sizeof name, "%s_%s", f ? "F" : "I", ops[c]);
      const ins code[] = {
          {"I_CONST", 1, 0, 0, 0},   {"I_MOD", 1, 0, 1, 0},
          {"I_CONST", 2, 1, 0, 0},   {"I_SUB", 1, 1, 2, 0},   /* x */
          {"I_CONST", 3, 2, 0, 0},   {"I_MOD", 3, 0, 3, 0},
          {"I_CONST", 4, 3, 0, 0},   {"I_SUB", 3, 3, 4, 0},   /* y */
          {"I2F", 0, 1, 0, 0},       {"I2F", 1, 3, 0, 0},
          {"I_CONST", 5, 4, 0, 0},   {"I_MOD", 5, 0, 5, 0},
          {"I_TRUTH", 1, 5, 0, 0},   {"F_CONST", 2, 0, 0, 0},
          {"F_SELECT", 0, 1, 0, 2},  /* x = NaN where i % 11 == 0 */
          {name, 0, f ? 0 : 1, f ? 1 : 3, 0},
          {"RET_B", 0, 0, 0, 0},
      };
      pf_prog *p;
      pf_error err;
      assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 5, fk, 1, 1,
                              6, 3, 2, &err), 0);
      for (int64_t n = 1; n <= 200; n++) {
        uint8_t out[200];
        const int64_t shape[1] = {n};
        for (int isa = 0; isa < 3; isa++) {
          memset(out, 7, sizeof out);
          pf_array a = array_of(out, PF_BOOL, 1, shape);
          assert_int_equal(pf__prog_fill_isa(p, &a, NULL, isa, &err), 0);
          for (int64_t i = 0; i < n; i++) {
            const int64_t xi = i % 7 - 3, yi = i % 5 - 2;
            const double xf = i % 11 == 0 ? NAN : (double)xi, yf = (double)yi;
            int want;
            switch (c) {
              case 0: want = f ? xf < yf : xi < yi; break;
              case 1: want = f ? xf <= yf : xi <= yi; break;
              case 2: want = f ? xf == yf : xi == yi; break;
              case 3: want = f ? xf != yf : xi != yi; break;
              case 4: want = f ? xf > yf : xi > yi; break;
              default: want = f ? xf >= yf : xi >= yi; break;
            }
            if (out[i] != want)
              fail_msg("%s, %lld lanes, isa %d: f(%lld) = %d, want %d", name,
                       (long long)n, isa, (long long)i, out[i], want);
          }
          if (n < 200) assert_int_equal(out[n], 7); /* nothing past it */
        }
      }
      pf_prog_free(p);
    }
}

/* A comparison over a dense range of the lane block writes those lanes'
 * bytes only: f(i) = i > 100 if i < 100 else True, where B0 is True for
 * every lane before the branch and the lanes from 100 on keep it. */
static void test_comparison_leaves_other_lanes(void **state) {
  (void)state;
  const ins code[] = {
      {"B_CONST", 0, 1, 0, 0}, {"I_CONST", 1, 0, 0, 0},
      {"I_LT", 1, 0, 1, 0},    {"BR", 0, 1, 4, 6},
      {"I_GT", 0, 0, 1, 0},    {"RET_B", 0, 0, 0, 0},
      {"RET_B", 0, 0, 0, 0},
  };
  const int64_t ik[1] = {100};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 1, NULL, 0, 1, 2,
                          0, 2, &err), 0);
  uint8_t out[300];
  const int64_t shape[1] = {300};
  for (int isa = 0; isa < 3; isa++) {
    pf_array a = array_of(out, PF_BOOL, 1, shape);
    assert_int_equal(pf__prog_fill_isa(p, &a, NULL, isa, &err), 0);
    for (int i = 0; i < 300; i++)
      if (out[i] != (i >= 100))
        fail_msg("isa %d: f(%d) = %d, want %d", isa, i, out[i], i >= 100);
  }
  pf_prog_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_which_loops_tile),
      cmocka_unit_test(test_tile_runner_ghosts),
      cmocka_unit_test(test_bail_in_a_tiled_loop),
      cmocka_unit_test(test_tiled_lengths),
      cmocka_unit_test(test_comparisons_every_length),
      cmocka_unit_test(test_comparison_leaves_other_lanes),
  };
  PF_RUN_TESTS(tests, NULL, NULL);
}
