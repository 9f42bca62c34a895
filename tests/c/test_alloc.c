/*
 * test_alloc.c -- every out-of-memory path: for n = 1, 2, ... the n-th
 * allocation of an operation fails (pf__alloc_fail_nth); the operation must
 * then report PF_ENOMEM cleanly -- no crash, no hang, no leak (the ASan build
 * of this test checks leaks) -- and succeed once n passes its allocations.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pf_test.h"

/* Runs op(ctx) with the n-th allocation failing, n = 1, 2, ..., until it
 * succeeds; every failure must be PF_ENOMEM. Returns how many n failed. */
static int walk_failures(int (*op)(void *), void *ctx) {
  for (long n = 1;; n++) {
    pf__alloc_fail_nth(n);
    int rc = op(ctx);
    pf__alloc_fail_nth(0);
    if (rc == 0) return (int)(n - 1);
    assert_int_equal(rc, PF_ENOMEM);
    assert_true(n < 1000);
  }
}

static int op_pool(void *ctx) {
  (void)ctx;
  pf_pool *pool = NULL;
  int rc = pf_pool_create(&pool, 3);
  if (rc != 0) {
    assert_null(pool);
    return rc;
  }
  pf_pool_destroy(pool);
  return 0;
}

static void test_pool_create(void **state) {
  (void)state;
  assert_true(walk_failures(op_pool, NULL) >= 2);
}

static int square_kernel(void *ctx, int64_t start, int64_t count, void *out,
                         pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  (void)ctx;
  (void)worker;
  for (int64_t k = 0; k < count; k++)
    ((int64_t *)out)[k] = (start + k) * (start + k);
  return 0;
}

enum { ROWS = 40, COLS = 300 };

static int op_fill(void *ctx) {
  int64_t *data = ctx;
  memset(data, 0, sizeof(int64_t) * ROWS * COLS * 2);
  pf_pool *pool = NULL;
  int rc = pf_pool_create(&pool, 3);
  if (rc != 0) return rc;
  /* Every other column: strided, so the fill needs scratch blocks. */
  pf_array a = {.data = data, .dtype = PF_INT64, .ndim = 2,
                .shape = {ROWS, COLS}, .strides = {16 * COLS, 16}};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  o.workers = 5; /* more than the pool has: it grows */
  o.chunk = 7;
  pf_error err;
  rc = pf_fill(&a, square_kernel, NULL, &o, &err);
  pf_pool_destroy(pool);
  if (rc != 0) return rc;
  for (int64_t f = 0; f < ROWS * COLS; f++) assert_int_equal(data[2 * f], f * f);
  return 0;
}

static void test_fill(void **state) {
  (void)state;
  int64_t *data = malloc(sizeof(int64_t) * ROWS * COLS * 2);
  assert_non_null(data);
  assert_true(walk_failures(op_fill, data) >= 3);
  free(data);
}

typedef struct team_ctx {
  int64_t *out;
  _Atomic int *died; /* shared: the first worker to reach element 13 dies */
} team_ctx;

static int team_chunk(void *ctx, pf_team_worker *worker, int64_t start,
                      int64_t stop) {
  team_ctx *t = ctx;
  (void)worker;
  for (int64_t i = start; i < stop; i++) {
    if (i == 13 && atomic_exchange(t->died, 1) == 0) raise(SIGKILL);
    t->out[i] = 3 * i;
  }
  return 0;
}

static int op_team(void *ctx) {
  team_ctx *t = ctx;
  atomic_store(t->died, 0);
  pf_team_options o = PF_TEAM_OPTIONS_DEFAULTS;
  o.workers = 3;
  o.chunk = 4;
  o.retries = 2; /* the replacement path allocates too */
  pf_team_report report;
  pf_error err;
  int rc = pf_team_run(100, &o, NULL, team_chunk, t, &report, &err);
  free(report.payload);
  if (rc != 0) return rc;
  assert_int_equal(report.retried, 1);
  for (int64_t i = 0; i < 100; i++) assert_int_equal(t->out[i], 3 * i);
  return 0;
}

static void test_team(void **state) {
  (void)state;
  team_ctx t;
  t.out = pf_shared_alloc(100 * sizeof(int64_t));
  t.died = pf_shared_alloc(sizeof *t.died);
  assert_non_null(t.out);
  assert_non_null(t.died);
  assert_true(walk_failures(op_team, &t) >= 3);
  pf_shared_free(t.out, 100 * sizeof(int64_t));
  pf_shared_free((void *)t.died, sizeof *t.died);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_create),
      cmocka_unit_test(test_fill),
      cmocka_unit_test(test_team),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
