/*
 * test_window.c -- windows of a larger index space (window.c, and pf_fill's
 * use of them): every kind of fill gives a box or range of the whole the
 * values of the same elements in a fill of the whole array.
 *
 * The reference is the whole array filled without a window; a window's
 * values are compared byte for byte with the elements it covers, found by
 * walking the box with pf_index_next (independent of window.c's mapping).
 */
#include "pf_test.h"

#include <stdio.h>
#include <string.h>

/* The boxes tried on a whole of shape {7, 9, 11}: inside, touching the ends,
 * spanning trailing axes (long stretches), single rows, single elements,
 * empty. */
static const int64_t WHOLE[3] = {7, 9, 11};
static const struct {
  int64_t origin[3], shape[3];
} BOXES[] = {
    {{0, 0, 0}, {7, 9, 11}}, {{2, 3, 4}, {3, 4, 5}}, {{1, 0, 0}, {5, 9, 11}},
    {{3, 2, 0}, {2, 5, 11}}, {{6, 8, 10}, {1, 1, 1}}, {{0, 4, 3}, {7, 1, 8}},
    {{4, 0, 7}, {3, 9, 4}},  {{2, 2, 2}, {0, 3, 3}},  {{0, 0, 10}, {7, 9, 1}},
};

static int64_t size_of(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  return n;
}

/* The whole's flat index of each element of the box, in C order. */
static void box_flats(const int64_t *origin, const int64_t *box,
                      int64_t *flats) {
  int64_t n = size_of(3, box), index[3] = {0, 0, 0};
  for (int64_t k = 0; k < n; k++) {
    flats[k] = ((origin[0] + index[0]) * WHOLE[1] + origin[1] + index[1]) *
                   WHOLE[2] +
               origin[2] + index[2];
    pf_index_next(3, box, index);
  }
}

typedef int (*fill_fn)(const pf_array *out, const pf_fill_options *o,
                       void *ctx);

/* Fills the whole, then every box of BOXES (contiguous, and through a
 * strided view of a larger buffer), with 1 and 3 workers, and compares. */
static void check_boxes(pf_dtype dtype, fill_fn fill, void *ctx) {
  const size_t item = pf_dtype_size(dtype);
  const int64_t total = size_of(3, WHOLE);
  char *whole = calloc((size_t)total, item);
  pf_array w = {.data = whole, .dtype = dtype, .ndim = 3};
  memcpy(w.shape, WHOLE, sizeof WHOLE);
  pf_array_set_contiguous(&w);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.chunk = 5;
  assert_int_equal(fill(&w, &o, ctx), 0);
  for (size_t b = 0; b < PF_ARRAY_LEN(BOXES); b++) {
    for (int strided = 0; strided < 2; strided++) {
      for (int workers = 1; workers <= 3; workers += 2) {
        const int64_t *box = BOXES[b].shape;
        const int64_t n = size_of(3, box);
        /* Strided: every other element of a buffer twice as large. */
        char *buf = calloc((size_t)(2 * n + 1), item);
        pf_array a = {.data = buf, .dtype = dtype, .ndim = 3};
        memcpy(a.shape, box, sizeof a.shape[0] * 3);
        pf_array_set_contiguous(&a);
        if (strided)
          for (int d = 0; d < 3; d++) a.strides[d] *= 2;
        pf_window win = {3, WHOLE, BOXES[b].origin, 0};
        pf_fill_options wo = PF_FILL_OPTIONS_DEFAULTS;
        wo.window = &win;
        wo.workers = workers;
        wo.chunk = 3;
        assert_int_equal(fill(&a, &wo, ctx), 0);
        int64_t *flats = calloc((size_t)n + 1, sizeof *flats);
        box_flats(BOXES[b].origin, box, flats);
        for (int64_t k = 0; k < n; k++) {
          assert_int_equal(pf_window_flat(&win, 3, box, k), flats[k]);
          const char *got = buf + (size_t)k * item * (strided ? 2 : 1);
          if (memcmp(got, whole + (size_t)flats[k] * item, item) != 0)
            fail_msg("box %zu strided %d workers %d element %lld (whole "
                     "%lld) differs", b, strided, workers, (long long)k,
                     (long long)flats[k]);
        }
        free(flats);
        free(buf);
      }
    }
  }
  /* Range form: any stretch of flat indices into a 1-d buffer. */
  const int64_t ranges[][2] = {{0, total}, {0, 1}, {17, 300}, {total - 5, 5},
                               {total, 0}, {99, 101}};
  for (size_t r = 0; r < PF_ARRAY_LEN(ranges); r++) {
    const int64_t count = ranges[r][1];
    char *buf = calloc((size_t)count + 1, item);
    pf_array a = {.data = buf, .dtype = dtype, .ndim = 1, .shape = {count}};
    pf_array_set_contiguous(&a);
    pf_window win = {3, WHOLE, NULL, ranges[r][0]};
    pf_fill_options wo = PF_FILL_OPTIONS_DEFAULTS;
    wo.window = &win;
    wo.workers = 2;
    wo.chunk = 7;
    assert_int_equal(fill(&a, &wo, ctx), 0);
    assert_memory_equal(buf, whole + (size_t)ranges[r][0] * item,
                        (size_t)count * item);
    free(buf);
  }
  free(whole);
}

static int fill_expr(const pf_array *out, const pf_fill_options *o,
                     void *ctx) {
  return pf_expr_fill(ctx, out, o, NULL);
}

static void test_expressions(void **state) {
  (void)state;
  const char *texts[] = {
      "i * 1000000 + j * 1000 + k", "idx", "n0 * n1 * n2 - size + idx",
      "uniform()", "normal()", "sin(i * 0.3) + cos(j) * k / (idx + 1.0)",
      "where(idx % 3 == 0, uniform(), normal())", "i + 0 * n0 + 42"};
  for (size_t t = 0; t < PF_ARRAY_LEN(texts); t++) {
    pf_expr *e;
    pf_error err;
    pf_param seed = {.name = "seed", .kind = PF_PARAM_INT, .i = 12345};
    assert_int_equal(pf_expr_compile(&e, texts[t], 3, &seed, 1, &err), 0);
    check_boxes(PF_FLOAT64, fill_expr, e);
    check_boxes(PF_FLOAT32, fill_expr, e);
    check_boxes(PF_INT16, fill_expr, e);
    pf_expr_free(e);
  }
}

typedef struct random_args {
  pf_random_dist dist;
  uint64_t key[2];
} random_args;

static int fill_random(const pf_array *out, const pf_fill_options *o,
                       void *ctx) {
  const random_args *r = ctx;
  return pf_random_fill(out, r->dist, r->key, 3, o, NULL);
}

static void test_random(void **state) {
  (void)state;
  for (int dist = 0; dist < 2; dist++) {
    random_args r = {(pf_random_dist)dist, {99, 7}};
    check_boxes(PF_FLOAT64, fill_random, &r);
    check_boxes(PF_FLOAT32, fill_random, &r);
  }
}

static double index_value(const int64_t *index, int ndim) {
  double v = 0;
  for (int d = 0; d < ndim; d++) v = v * 131 + (double)index[d];
  return v;
}

static double element_value(int64_t i) { return (double)i * 0.25 - 3; }

static void block_value(int64_t start, int64_t count, void *out, void *ctx) {
  for (int64_t k = 0; k < count; k++)
    ((double *)out)[k] = (double)(start + k) * *(const double *)ctx;
}

static int fill_native(const pf_array *out, const pf_fill_options *o,
                       void *ctx) {
  return pf_native_fill(ctx, out, o, NULL);
}

static void test_native(void **state) {
  (void)state;
  static double scale = 1.5;
  pf_native kinds[3] = {
      {.kind = PF_NATIVE_INDEX, .fn.index = index_value},
      {.kind = PF_NATIVE_ELEMENT, .fn.element = element_value},
      {.kind = PF_NATIVE_BLOCK, .fn.block = block_value, .ctx = &scale}};
  for (int k = 0; k < 3; k++) {
    check_boxes(PF_FLOAT64, fill_native, &kinds[k]);
    /* Block functions write out's dtype themselves: this one float64. */
    if (kinds[k].kind != PF_NATIVE_BLOCK)
      check_boxes(PF_INT32, fill_native, &kinds[k]);
  }
}

/* A kernel that records every flat index it is given and fails at two
 * chosen elements of the whole (the lower must win). */
typedef struct probe {
  char seen[7 * 9 * 11];
  int64_t fail_at[2];
} probe;

static int probe_kernel(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *worker) {
  probe *p = ctx;
  for (int64_t k = 0; k < count; k++) {
    int64_t flat = start + k;
    if (flat >= pf_fill_worker_limit(worker)) return 0;
    if (flat == p->fail_at[0] || flat == p->fail_at[1])
      return pf_fill_worker_fail(worker, PF_EKERNEL, flat, "at %lld",
                                 (long long)flat);
    __atomic_store_n(&p->seen[flat], 1, __ATOMIC_RELAXED);
    ((double *)out)[k] = (double)flat;
  }
  return 0;
}

static void test_kernel_indices_and_failures(void **state) {
  (void)state;
  const int64_t origin[3] = {2, 3, 4}, box[3] = {3, 4, 5};
  int64_t flats[60];
  box_flats(origin, box, flats);
  pf_window win = {3, WHOLE, origin, 0};
  for (int workers = 1; workers <= 4; workers++) {
    probe *p = calloc(1, sizeof *p);
    p->fail_at[0] = -1;
    p->fail_at[1] = -1;
    double buf[60];
    pf_array a = {.data = buf, .dtype = PF_FLOAT64, .ndim = 3};
    memcpy(a.shape, box, sizeof box);
    pf_array_set_contiguous(&a);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.window = &win;
    o.workers = workers;
    o.chunk = 2;
    assert_int_equal(pf_fill(&a, probe_kernel, p, &o, NULL), 0);
    /* Exactly the box's elements were given to the kernel. */
    int64_t seen = 0;
    for (int64_t f = 0; f < 7 * 9 * 11; f++) seen += p->seen[f];
    assert_int_equal(seen, 60);
    for (int k = 0; k < 60; k++) {
      assert_true(p->seen[flats[k]]);
      assert_true(buf[k] == (double)flats[k]);
    }
    /* Failures at local elements 41 and 13: the lowest (13) is reported,
     * with its position counted in the output, and everything before it is
     * computed. */
    memset(p->seen, 0, sizeof p->seen);
    p->fail_at[0] = flats[41];
    p->fail_at[1] = flats[13];
    pf_error err;
    assert_int_equal(pf_fill(&a, probe_kernel, p, &o, &err), PF_EKERNEL);
    assert_int_equal(err.position, 13);
    char expect[32];
    snprintf(expect, sizeof expect, "at %lld", (long long)flats[13]);
    assert_string_equal(err.message, expect);
    for (int k = 0; k < 13; k++) assert_true(p->seen[flats[k]]);
    /* `first` counts the output's elements too. */
    memset(p->seen, 0, sizeof p->seen);
    p->fail_at[0] = p->fail_at[1] = -1;
    o.first = 50;
    assert_int_equal(pf_fill(&a, probe_kernel, p, &o, NULL), 0);
    for (int k = 0; k < 60; k++) assert_int_equal(p->seen[flats[k]], k >= 50);
    free(p);
  }
}

static void test_invalid_windows(void **state) {
  (void)state;
  double buf[64];
  pf_array a = {.data = buf, .dtype = PF_FLOAT64, .ndim = 3,
                .shape = {2, 2, 2}};
  pf_array_set_contiguous(&a);
  const int64_t whole[3] = {4, 4, 4}, big[3] = {INT64_MAX, 4, 4};
  const int64_t bad_origins[][3] = {{-1, 0, 0}, {3, 0, 0}, {0, 0, 3},
                                    {5, 0, 0}};
  pf_expr *e;
  assert_int_equal(pf_expr_compile(&e, "idx", 3, NULL, 0, NULL), 0);
  pf_native nat = {.kind = PF_NATIVE_INDEX, .fn.index = index_value};
  for (size_t b = 0; b < PF_ARRAY_LEN(bad_origins); b++) {
    pf_window win = {3, whole, bad_origins[b], 0};
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.window = &win;
    pf_error err;
    assert_int_equal(pf_window_check(&win, 3, a.shape, &err), PF_EINVAL);
    assert_int_equal(pf_expr_fill(e, &a, &o, &err), PF_EINVAL);
    assert_int_equal(pf_native_fill(&nat, &a, &o, &err), PF_EINVAL);
    const uint64_t key[2] = {0, 0};
    assert_int_equal(pf_random_fill(&a, PF_RANDOM_UNIFORM, key, 0, &o, &err),
                     PF_EINVAL);
  }
  /* A box of other dimensions, a whole that overflows, ranges outside,
   * absurd dimension counts. */
  pf_window other = {2, whole, whole, 0};
  assert_int_equal(pf_window_check(&other, 3, a.shape, NULL), PF_EINVAL);
  const int64_t zero[3] = {0, 0, 0};
  pf_window huge = {3, big, zero, 0};
  assert_int_equal(pf_window_check(&huge, 3, a.shape, NULL), PF_EOVERFLOW);
  pf_window past = {3, whole, NULL, 60};
  assert_int_equal(pf_window_check(&past, 3, a.shape, NULL), PF_EINVAL);
  pf_window negative = {3, whole, NULL, -1};
  assert_int_equal(pf_window_check(&negative, 3, a.shape, NULL), PF_EINVAL);
  pf_window fits = {3, whole, NULL, 56};
  assert_int_equal(pf_window_check(&fits, 3, a.shape, NULL), 0);
  pf_window dims = {PF_MAX_DIMS + 1, whole, NULL, 0};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.window = &dims;
  assert_int_equal(pf_window_check(&dims, 3, a.shape, NULL), PF_EINVAL);
  assert_int_equal(pf_native_fill(&nat, &a, &o, NULL), PF_EINVAL);
  assert_int_equal(pf_expr_fill(e, &a, &o, NULL), PF_EINVAL);
  /* An expression compiled for the box's 3 dimensions in a 2-d whole. */
  const int64_t flat_whole[2] = {8, 8};
  pf_window range2 = {2, flat_whole, NULL, 0};
  o.window = &range2;
  assert_int_equal(pf_expr_fill(e, &a, &o, NULL), PF_EINVAL);
  /* .npy fills write whole files. */
  pf_window ok = {3, whole, zero, 0};
  o.window = &ok;
  assert_int_equal(pf_npy_fill_expr("/tmp/pf-window-never.npy", e, PF_FLOAT64,
                                    3, whole, &o, 0, NULL),
                   PF_EINVAL);
  pf_expr_free(e);
}

/* A 0-d whole: its one element through a box and through a range. */
static void test_zero_dimensions(void **state) {
  (void)state;
  pf_expr *e;
  assert_int_equal(pf_expr_compile(&e, "size * 3 + idx", 0, NULL, 0, NULL), 0);
  double v = 0;
  pf_array a = {.data = &v, .dtype = PF_FLOAT64, .ndim = 0};
  pf_window box = {0, NULL, (const int64_t[1]){0}, 0}, range = {0, NULL, NULL, 0};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.window = &box;
  assert_int_equal(pf_expr_fill(e, &a, &o, NULL), 0);
  assert_true(v == 3.0);
  v = 0;
  o.window = &range;
  assert_int_equal(pf_expr_fill(e, &a, &o, NULL), 0);
  assert_true(v == 3.0);
  pf_expr_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expressions),
      cmocka_unit_test(test_random),
      cmocka_unit_test(test_native),
      cmocka_unit_test(test_kernel_indices_and_failures),
      cmocka_unit_test(test_invalid_windows),
      cmocka_unit_test(test_zero_dimensions),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
