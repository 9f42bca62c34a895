/*
 * test_alloc.c -- every out-of-memory path: for n = 1, 2, ... the n-th
 * allocation of an operation fails (pf__alloc_fail_nth); the operation must
 * then report PF_ENOMEM cleanly -- no crash, no hang, no leak (the ASan build
 * of this test checks leaks) -- and succeed once n passes its allocations.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
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

/* ------------------------------------------------ .npy and expression fills */

/* Files this large span several PF_NPY_BLOCK_BYTES blocks, so every worker
 * allocates its block buffer (int64: 8 bytes per element). */
enum { NPY_ROWS = 500, NPY_COLS = 1000 };

typedef struct npy_case {
  char dir[32];
  char path[64];
  unsigned flags;
  int64_t *want; /* the sequential loop's values, NPY_ROWS x NPY_COLS */
} npy_case;

static void npy_case_init(npy_case *c, unsigned flags) {
  snprintf(c->dir, sizeof c->dir, "/tmp/pf-test-alloc-XXXXXX");
  assert_non_null(mkdtemp(c->dir));
  snprintf(c->path, sizeof c->path, "%s/out.npy", c->dir);
  c->flags = flags;
  c->want = malloc(sizeof(int64_t) * NPY_ROWS * NPY_COLS);
  assert_non_null(c->want);
  /* The reference: for (i, j) in ndindex(shape): a[i, j] = i * n1 + j. */
  for (int64_t i = 0; i < NPY_ROWS; i++)
    for (int64_t j = 0; j < NPY_COLS; j++)
      c->want[i * NPY_COLS + j] = i * NPY_COLS + j;
}

static void npy_case_free(npy_case *c) {
  assert_int_equal(pf_test_dir_entries(c->dir), 0);
  assert_int_equal(rmdir(c->dir), 0);
  free(c->want);
}

/* After a failure nothing is left in the directory; after success the file
 * holds the reference values (and is removed for the next round). */
static int npy_outcome(npy_case *c, int rc) {
  if (rc != 0) {
    assert_int_equal(pf_test_dir_entries(c->dir), 0);
    return rc;
  }
  int fd = open(c->path, O_RDONLY);
  assert_true(fd >= 0);
  pf_npy_header h;
  pf_error err;
  assert_int_equal(pf_npy_header_read_fd(fd, &h, &err), 0);
  assert_int_equal(h.dtype, PF_INT64);
  assert_int_equal(h.ndim, 2);
  size_t bytes = sizeof(int64_t) * NPY_ROWS * NPY_COLS;
  int64_t *got = malloc(bytes);
  assert_non_null(got);
  assert_int_equal(pread(fd, got, bytes, h.data_offset), (ssize_t)bytes);
  assert_memory_equal(got, c->want, bytes);
  free(got);
  close(fd);
  assert_int_equal(unlink(c->path), 0);
  return 0;
}

static int flat_kernel(void *ctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *fw) {
  (void)ctx;
  (void)fw;
  for (int64_t k = 0; k < count; k++) ((int64_t *)out)[k] = start + k;
  return 0;
}

static pf_fill_options three_workers(pf_pool *pool) {
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  o.workers = 3;          /* as many as the pool has: it does not grow */
  o.chunk = 1 << 17;      /* one block per chunk: every worker gets some */
  return o;
}

static int op_npy(void *ctx) {
  npy_case *c = ctx;
  pf_pool *pool = NULL;
  int rc = pf_pool_create(&pool, 3);
  if (rc != 0) return rc;
  pf_fill_options o = three_workers(pool);
  int64_t shape[2] = {NPY_ROWS, NPY_COLS};
  pf_error err;
  rc = pf_npy_fill(c->path, PF_INT64, 2, shape, flat_kernel, NULL, &o,
                   c->flags, &err);
  pf_pool_destroy(pool);
  return npy_outcome(c, rc);
}

static void test_npy_fill(void **state) {
  (void)state;
  /* Unnamed (O_TMPFILE) and direct I/O where the filesystem has them; then
   * a named temporary file through the page cache. */
  const unsigned flags[] = {0, PF_NPY_NAMED_TEMP | PF_NPY_BUFFERED};
  for (size_t f = 0; f < PF_ARRAY_LEN(flags); f++) {
    npy_case c;
    npy_case_init(&c, flags[f]);
    assert_true(walk_failures(op_npy, &c) >= 4);
    npy_case_free(&c);
  }
}

/* Compiles inside the walk too: the compiler's allocations fail as well. */
static int op_npy_expr(void *ctx) {
  npy_case *c = ctx;
  pf_error err;
  pf_expr *expr = NULL;
  int rc = pf_expr_compile(&expr, "i * n1 + j", 2, NULL, 0, &err);
  if (rc != 0) {
    assert_null(expr);
    return rc;
  }
  pf_pool *pool = NULL;
  rc = pf_pool_create(&pool, 3);
  if (rc == 0) {
    pf_fill_options o = three_workers(pool);
    int64_t shape[2] = {NPY_ROWS, NPY_COLS};
    rc = pf_npy_fill_expr(c->path, expr, PF_INT64, 2, shape, &o, c->flags,
                          &err);
    pf_pool_destroy(pool);
  }
  pf_expr_free(expr);
  return npy_outcome(c, rc);
}

static void test_npy_fill_expr(void **state) {
  (void)state;
  npy_case c;
  npy_case_init(&c, 0);
  assert_true(walk_failures(op_npy_expr, &c) >= 5);
  npy_case_free(&c);
}

static int op_expr(void *ctx) {
  npy_case *c = ctx; /* only its reference values */
  size_t bytes = sizeof(int64_t) * NPY_ROWS * NPY_COLS;
  int64_t *data = malloc(bytes);
  assert_non_null(data);
  memset(data, 0, bytes);
  pf_error err;
  pf_expr *expr = NULL;
  int rc = pf_expr_compile(&expr, "i * n1 + j", 2, NULL, 0, &err);
  pf_pool *pool = NULL;
  if (rc == 0) rc = pf_pool_create(&pool, 3);
  if (rc == 0) {
    pf_array a = {.data = data, .dtype = PF_INT64, .ndim = 2,
                  .shape = {NPY_ROWS, NPY_COLS}};
    pf_array_set_contiguous(&a);
    pf_fill_options o = three_workers(pool);
    o.chunk = 4096;
    rc = pf_expr_fill(expr, &a, &o, &err);
  }
  if (pool != NULL) pf_pool_destroy(pool);
  pf_expr_free(expr);
  if (rc == 0) assert_memory_equal(data, c->want, bytes);
  free(data);
  return rc;
}

static void test_expr_fill(void **state) {
  (void)state;
  npy_case c;
  npy_case_init(&c, 0);
  assert_true(walk_failures(op_expr, &c) >= 5);
  npy_case_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_create),
      cmocka_unit_test(test_fill),
      cmocka_unit_test(test_team),
      cmocka_unit_test(test_npy_fill),
      cmocka_unit_test(test_npy_fill_expr),
      cmocka_unit_test(test_expr_fill),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
