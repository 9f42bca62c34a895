/*
 * test_pool.c -- the kernel interface of pf_fill (pf_fill_worker_fail /
 * _limit, timeout, release, early return) and the pool's sharing, size and
 * thread-creation behaviour.
 *
 * Kernels write element i as the int64 value i, so the reference is the
 * index itself; they never call cmocka (not thread-safe) and count problems
 * in atomics the test thread asserts on.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_test.h"
#include "pool.h"

static pf_pool *pool2;

static int setup(void **state) {
  (void)state;
  return pf_pool_create(&pool2, 2);
}

static int teardown(void **state) {
  (void)state;
  pf_pool_destroy(pool2);
  return 0;
}

static pf_array vector(int64_t *data, int64_t size) {
  pf_array a = {.data = data, .dtype = PF_INT64, .ndim = 1, .shape = {size},
                .strides = {8}};
  return a;
}

/* Elements [0, n) hold their index; returns the first that does not, or n. */
static int64_t first_wrong(const int64_t *data, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (data[i] != i) return i;
  return n;
}

/* ------------------------------------------------ lowest failure wins */

typedef struct fail_ctx {
  int64_t low, high;  /* failing elements; -1: none */
  long low_delay_us;  /* the call with `low` waits this long before failing */
  _Atomic int64_t past_limit; /* elements computed at or past the limit */
} fail_ctx;

static int failing_kernel(void *vctx, int64_t start, int64_t count, void *out,
                          pf_fill_worker *w) {
  fail_ctx *c = vctx;
  int64_t *o = out;
  for (int64_t k = 0; k < count; k++) {
    int64_t i = start + k;
    if (i == c->low) {
      if (c->low_delay_us > 0) pf_test_sleep_us(c->low_delay_us);
      return pf_fill_worker_fail(w, -21, i, "low element %lld", (long long)i);
    }
    if (i == c->high)
      return pf_fill_worker_fail(w, -22, i, "high element %lld",
                                 (long long)i);
    o[k] = i;
  }
  return 0;
}

/* Two workers; the lower index fails 100 ms after the higher one. */
static void test_lowest_failure_wins(void **state) {
  (void)state;
  enum { N = 200000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  static const pf_schedule schedules[] = {
      PF_SCHEDULE_STATIC, PF_SCHEDULE_DYNAMIC, PF_SCHEDULE_GUIDED};
  for (size_t s = 0; s < PF_ARRAY_LEN(schedules); s++) {
    memset(data, 0xff, N * sizeof *data);
    fail_ctx c = {.low = 1500, .high = 150000, .low_delay_us = 100000};
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool2;
    o.workers = 2;
    o.chunk = 1000;
    o.schedule = schedules[s];
    pf_error err;
    int rc = pf_fill(&a, failing_kernel, &c, &o, &err);
    assert_int_equal(rc, -21);
    assert_int_equal(err.code, -21);
    assert_int_equal(err.position, 1500);
    assert_string_equal(err.message, "low element 1500");
    assert_int_equal(first_wrong(data, 1500), 1500);
  }
  free(data);
}

/* A kernel that fails without pf_fill_worker_fail: the whole fill. */
static int plain_error_kernel(void *vctx, int64_t start, int64_t count,
                              void *out, pf_fill_worker *w) {
  (void)vctx, (void)out, (void)w;
  return start <= 5000 && 5000 < start + count ? PF_EIO : 0;
}

static void test_plain_error_is_whole_fill(void **state) {
  (void)state;
  enum { N = 100000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  for (int workers = 1; workers <= 2; workers++) {
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool2;
    o.workers = workers;
    o.chunk = 1000;
    pf_error err;
    assert_int_equal(pf_fill(&a, plain_error_kernel, NULL, &o, &err), PF_EIO);
    assert_int_equal(err.position, -1);
    assert_string_equal(err.message, pf_strerror(PF_EIO));
  }
  free(data);
}

/* Random failing elements, every schedule, strided and contiguous output,
 * 1-3 workers: everything below the lowest failure is computed. */
static void test_below_failure_computed(void **state) {
  (void)state;
  enum { N = 60000 };
  int64_t *data = calloc(2 * N, sizeof *data);
  srand(12345);
  for (int trial = 0; trial < 60; trial++) {
    int strided = trial % 2;
    pf_array a = vector(data, N);
    if (strided) a.strides[0] = 16;
    fail_ctx c = {.low = rand() % N, .high = rand() % N};
    if (c.high < c.low) {
      int64_t t = c.low;
      c.low = c.high;
      c.high = t;
    }
    if (c.high == c.low) c.high = -1;
    memset(data, 0xff, 2 * N * sizeof *data);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool2;
    o.workers = 1 + trial % 3;
    o.schedule = (pf_schedule)(trial % 3);
    o.chunk = trial % 5 == 0 ? 0 : 1 + rand() % 3000;
    pf_error err;
    int rc = pf_fill(&a, failing_kernel, &c, &o, &err);
    assert_int_equal(rc, -21);
    assert_int_equal(err.position, c.low);
    for (int64_t i = 0; i < c.low; i++)
      if (data[strided ? 2 * i : i] != i)
        fail_msg("trial %d: element %lld below the failure %lld not computed",
                 trial, (long long)i, (long long)c.low);
  }
  free(data);
}

/* ------------------------------------------------------------- timeout */

typedef struct slow_ctx {
  long sleep_us;      /* per call */
  int spin_on_limit;  /* loop until the limit says stop */
  _Atomic int calls;
} slow_ctx;

static int slow_kernel(void *vctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *w) {
  slow_ctx *c = vctx;
  atomic_fetch_add(&c->calls, 1);
  memset(out, 0, (size_t)count * 8);
  if (c->spin_on_limit)
    while (pf_fill_worker_limit(w) > start) pf_test_sleep_us(1000);
  else
    pf_test_sleep_us(c->sleep_us);
  return 0;
}

static void test_timeout(void **state) {
  (void)state;
  enum { N = 1 << 20 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  for (int workers = 1; workers <= 2; workers++)
    for (int spin = 0; spin <= 1; spin++) {
      slow_ctx c = {.sleep_us = 5000, .spin_on_limit = spin};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.pool = pool2;
      o.workers = workers;
      o.chunk = 1024;
      o.timeout = 0.05;
      pf_error err;
      double t0 = pf_test_now();
      int rc = pf_fill(&a, slow_kernel, &c, &o, &err);
      double took = pf_test_now() - t0;
      assert_int_equal(rc, PF_ETIMEDOUT);
      assert_int_equal(err.code, PF_ETIMEDOUT);
      if (took < 0.04 || took > 1.0)
        fail_msg("workers %d spin %d: timeout 0.05 s took %.3f s", workers,
                 spin, took);
    }
  free(data);
}

/* ------------------------------------------------------------- release */

typedef struct owned {
  _Atomic int *releases;
  int64_t *data; /* the output: owned, freed by release */
  long first_call_us; /* the first kernel call blocks this long */
  _Atomic int calls;
} owned;

static void owned_release(void *vctx) {
  owned *c = vctx;
  _Atomic int *releases = c->releases;
  free(c->data);
  free(c);
  atomic_fetch_add(releases, 1);
}

static int owned_kernel(void *vctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *w) {
  owned *c = vctx;
  (void)w;
  if (atomic_fetch_add(&c->calls, 1) == 0 && c->first_call_us > 0)
    pf_test_sleep_us(c->first_call_us);
  int64_t *o = out;
  for (int64_t k = 0; k < count; k++) o[k] = start + k;
  return start == 0 && count == 7 ? PF_EKERNEL : 0; /* the "error" case */
}

static owned *owned_new(_Atomic int *releases, int64_t n) {
  owned *c = calloc(1, sizeof *c);
  c->releases = releases;
  c->data = calloc((size_t)(n > 0 ? n : 1), sizeof *c->data);
  return c;
}

static int cancel_now(void *ctx, int64_t done, int64_t total) {
  (void)ctx, (void)done, (void)total;
  return PF_ECANCELED;
}

static void wait_releases(_Atomic int *releases, int want) {
  double t0 = pf_test_now();
  while (atomic_load(releases) < want && pf_test_now() - t0 < 5)
    pf_test_sleep_us(1000);
  pf_test_sleep_us(20000); /* a second release would come now */
  assert_int_equal(atomic_load(releases), want);
}

static void test_release_every_path(void **state) {
  (void)state;
  _Atomic int releases = 0;
  int want = 0;
  for (int path = 0; path < 10; path++) {
    int64_t n = path == 3 ? 0 : path == 7 ? 7 : 100000;
    owned *c = owned_new(&releases, n);
    pf_array a = vector(c->data, n);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool2;
    o.release = owned_release;
    o.workers = path % 2 ? 1 : 2;
    o.chunk = 1000;
    pf_kernel_fn kernel = owned_kernel;
    const pf_array *arr = &a;
    int expect = 0;
    switch (path) {
      case 0: arr = NULL, expect = PF_EINVAL; break;      /* no array */
      case 1: kernel = NULL, expect = PF_EINVAL; break;   /* no kernel */
      case 2: o.chunk = -1, expect = PF_EINVAL; break;    /* bad options */
      case 3: break;                                      /* empty */
      case 4: case 5: break;                              /* success */
      case 6: o.progress = cancel_now, o.progress_interval = 0.001,
              c->first_call_us = 50000, expect = PF_ECANCELED; break;
      case 7: expect = PF_EKERNEL; break;                 /* kernel error */
      case 8: o.timeout = 0.01, c->first_call_us = 100000,
              expect = PF_ETIMEDOUT; break;
      case 9: o.timeout = 0.01, c->first_call_us = 100000,
              expect = PF_ETIMEDOUT; break;               /* serial */
    }
    int rc = pf_fill(arr, kernel, c, &o, NULL);
    if (rc != expect) fail_msg("path %d: rc %d, want %d", path, rc, expect);
    wait_releases(&releases, ++want);
  }
}

/* A cancel and a timeout return at once while a kernel call runs for a
 * second; release comes once that call has returned. */
static void test_early_return(void **state) {
  (void)state;
  for (int how = 0; how < 2; how++) {
    _Atomic int releases = 0;
    owned *c = owned_new(&releases, 100000);
    c->first_call_us = 1000000;
    pf_array a = vector(c->data, 100000);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool2;
    o.workers = 2;
    o.chunk = 1000;
    o.release = owned_release;
    o.progress_interval = 0.02;
    if (how == 0)
      o.progress = cancel_now;
    else
      o.timeout = 0.05;
    double t0 = pf_test_now();
    int rc = pf_fill(&a, owned_kernel, c, &o, NULL);
    double took = pf_test_now() - t0;
    assert_int_equal(rc, how == 0 ? PF_ECANCELED : PF_ETIMEDOUT);
    if (took > 0.5) fail_msg("how %d: returned after %.3f s", how, took);
    assert_int_equal(atomic_load(&releases), 0); /* the call still runs */
    wait_releases(&releases, 1);
  }
}

/* ------------------------------------------------------------- fairness */

typedef struct big_fill {
  pthread_t thread;
  int64_t *data;
  int64_t n;
  slow_ctx c;
  pf_fill_options o;
  int rc;
  double took;
} big_fill;

static void *run_big(void *arg) {
  big_fill *b = arg;
  pf_array a = vector(b->data, b->n);
  double t0 = pf_test_now();
  b->rc = pf_fill(&a, slow_kernel, &b->c, &b->o, NULL);
  b->took = pf_test_now() - t0;
  return NULL;
}

static void start_big(big_fill *b, int64_t n, long sleep_us) {
  memset(b, 0, sizeof *b);
  b->n = n;
  b->data = calloc((size_t)n, sizeof *b->data);
  b->c.sleep_us = sleep_us;
  b->o = (pf_fill_options)PF_FILL_OPTIONS_DEFAULTS;
  b->o.pool = pool2;
  b->o.workers = 2;
  b->o.chunk = 1000;
  assert_int_equal(pthread_create(&b->thread, NULL, run_big, b), 0);
  pf_test_sleep_us(50000); /* its tasks hold both threads */
}

static void join_big(big_fill *b) {
  pthread_join(b->thread, NULL);
  free(b->data);
}

/* A small fill behind a big one takes turns instead of waiting for it. */
static void test_fair_sharing(void **state) {
  (void)state;
  big_fill b;
  start_big(&b, 1000 * 1000, 2000); /* 1000 calls of 2 ms on 2 threads: 1 s */
  enum { N = 20000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  slow_ctx c = {.sleep_us = 2000};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool2;
  o.workers = 2;
  o.chunk = 1000;
  double t0 = pf_test_now();
  int rc = pf_fill(&a, slow_kernel, &c, &o, NULL);
  double took = pf_test_now() - t0;
  join_big(&b);
  free(data);
  assert_int_equal(rc, 0);
  assert_int_equal(b.rc, 0);
  /* 20 calls of 2 ms: alone 20 ms; sharing, about twice that. */
  if (took > 0.3 * b.took)
    fail_msg("the small fill took %.3f s next to a big one of %.3f s", took,
             b.took);
}

/* A canceled fill whose tasks all wait behind another's long kernel calls
 * takes them back and returns at once. */
static void test_cancel_queued(void **state) {
  (void)state;
  big_fill b;
  start_big(&b, 4000, 400000); /* calls of 0.4 s: no turn ends sooner */
  enum { N = 20000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  slow_ctx c = {.sleep_us = 1000};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool2;
  o.workers = 2;
  o.chunk = 1000;
  o.progress = cancel_now;
  o.progress_interval = 0.01;
  double t0 = pf_test_now();
  int rc = pf_fill(&a, slow_kernel, &c, &o, NULL);
  double took = pf_test_now() - t0;
  join_big(&b);
  free(data);
  assert_int_equal(rc, PF_ECANCELED);
  if (took > 0.2) fail_msg("cancel of a queued fill took %.3f s", took);
}

/* ------------------------------------------------------ size and threads */

typedef struct ids_ctx {
  _Atomic int busy[600];
  _Atomic int violations;
} ids_ctx;

static int ids_kernel(void *vctx, int64_t start, int64_t count, void *out,
                      pf_fill_worker *w) {
  ids_ctx *c = vctx;
  int id = pf_fill_worker_id(w);
  if (id < 0 || id >= 500 || atomic_exchange(&c->busy[id], 1) != 0)
    atomic_fetch_add(&c->violations, 1);
  int64_t *o = out;
  for (int64_t k = 0; k < count; k++) o[k] = start + k;
  pf_test_sleep_us(200);
  if (id >= 0 && id < 500) atomic_store(&c->busy[id], 0);
  return 0;
}

/* workers=500 on a pool of 2: at most pf_pool_max_threads threads, results
 * right, and the surplus threads gone after about 2 s idle. */
static void test_bounded_threads(void **state) {
  (void)state;
  pf_pool *pool;
  assert_int_equal(pf_pool_create(&pool, 2), 0);
  int most = pf_pool_max_threads(pool);
  assert_true(most >= 64);
  enum { N = 100000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  ids_ctx *c = calloc(1, sizeof *c);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  o.workers = 500;
  o.chunk = 50;
  assert_int_equal(pf_fill(&a, ids_kernel, c, &o, NULL), 0);
  assert_int_equal(atomic_load(&c->violations), 0);
  assert_int_equal(first_wrong(data, N), N);
  int grown = pf_pool_size(pool);
  assert_true(grown > 2 && grown <= most);
  double t0 = pf_test_now();
  while (pf_pool_size(pool) > 2 && pf_test_now() - t0 < 10)
    pf_test_sleep_us(50000);
  assert_int_equal(pf_pool_size(pool), 2);
  /* The pool still works, and grows again. */
  memset(data, 0, N * sizeof *data);
  assert_int_equal(pf_fill(&a, ids_kernel, c, &o, NULL), 0);
  assert_int_equal(first_wrong(data, N), N);
  free(c);
  free(data);
  pf_pool_destroy(pool);
}

static int caller_kernel(void *vctx, int64_t start, int64_t count, void *out,
                         pf_fill_worker *w) {
  pthread_t *caller = vctx;
  (void)w;
  int64_t *o = out;
  for (int64_t k = 0; k < count; k++) o[k] = start + k;
  return pthread_equal(pthread_self(), *caller) ? 0 : PF_EKERNEL;
}

/* pthread_create failing (EAGAIN, as under RLIMIT_NPROC). */
static void test_thread_creation_fails(void **state) {
  (void)state;
  pf_pool *pool = NULL;
  pf__pool_fail_create_after(0);
  errno = 0;
  assert_int_equal(pf_pool_create(&pool, 4), PF_ESYS);
  assert_int_equal(errno, EAGAIN);
  assert_null(pool);
  /* Two of four: a pool of two that works. */
  pf__pool_fail_create_after(2);
  assert_int_equal(pf_pool_create(&pool, 4), 0);
  assert_int_equal(pf_pool_size(pool), 2);
  /* Growing fails: the fill runs on the threads there are. */
  pf__pool_fail_create_after(0);
  enum { N = 50000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  ids_ctx *c = calloc(1, sizeof *c);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  o.workers = 8;
  o.chunk = 100;
  assert_int_equal(pf_fill(&a, ids_kernel, c, &o, NULL), 0);
  assert_int_equal(first_wrong(data, N), N);
  assert_int_equal(pf_pool_size(pool), 2);
  pf__pool_fail_create_after(-1);
  pf_pool_destroy(pool);
  /* No default pool at all (a forked child, where it is made afresh): the
   * caller computes everything. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    pf__pool_fail_create_after(0);
    pthread_t self = pthread_self();
    memset(data, 0, N * sizeof *data);
    pf_fill_options d = PF_FILL_OPTIONS_DEFAULTS;
    d.workers = 4;
    d.chunk = 100;
    int rc = pf_fill(&a, caller_kernel, &self, &d, NULL);
    _exit(rc == 0 && first_wrong(data, N) == N ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  free(c);
  free(data);
}

/* A kernel whose calls block until `go` is set (at most 10 s); it counts
 * the calls running and the threads they ran on. */
typedef struct gate {
  _Atomic int go;
  _Atomic int inside;
  _Atomic int calls;
  _Atomic int releases;
  _Atomic int on_caller; /* calls that ran on the thread in `caller` */
  pthread_t caller;
} gate;

static int gated_kernel(void *vctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *w) {
  gate *g = vctx;
  (void)w;
  atomic_fetch_add(&g->calls, 1);
  if (pthread_equal(pthread_self(), g->caller)) atomic_fetch_add(&g->on_caller, 1);
  atomic_fetch_add(&g->inside, 1);
  double t0 = pf_test_now();
  while (!atomic_load(&g->go) && pf_test_now() - t0 < 10)
    pf_test_sleep_us(1000);
  int64_t *o = out;
  for (int64_t k = 0; k < count; k++) o[k] = start + k;
  atomic_fetch_sub(&g->inside, 1);
  return 0;
}

static void gate_release(void *vctx) { atomic_fetch_add(&((gate *)vctx)->releases, 1); }

/* Lets the gated calls end and waits for the fill's release. */
static void open_gate(gate *g) {
  atomic_store(&g->go, 1);
  double t0 = pf_test_now();
  while (atomic_load(&g->releases) == 0 && pf_test_now() - t0 < 15)
    pf_test_sleep_us(1000);
  assert_int_equal(atomic_load(&g->releases), 1);
  assert_int_equal(atomic_load(&g->inside), 0);
}

/* One worker (and one chunk) with release and a timeout or a cancel: the
 * kernel runs on a pool thread, so the caller returns while it blocks. */
static void test_one_worker_returns_early(void **state) {
  (void)state;
  enum { N = 1000 };
  int64_t *data = calloc(N, sizeof *data);
  pf_array a = vector(data, N);
  for (int how = 0; how < 3; how++) {
    gate g = {.caller = pthread_self()};
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = how == 2 ? NULL : pool2; /* the default pool too */
    o.workers = 1;
    o.release = gate_release;
    o.progress_interval = 0.01;
    if (how == 1)
      o.progress = cancel_now;
    else
      o.timeout = 0.2;
    double t0 = pf_test_now();
    int rc = pf_fill(&a, gated_kernel, &g, &o, NULL);
    double took = pf_test_now() - t0;
    assert_int_equal(rc, how == 1 ? PF_ECANCELED : PF_ETIMEDOUT);
    if (took > 1.0) fail_msg("how %d: returned after %.3f s", how, took);
    assert_int_equal(atomic_load(&g.releases), 0); /* the call still runs */
    assert_int_equal(atomic_load(&g.on_caller), 0);
    open_gate(&g);
  }
  /* Without release (nothing may outlive the call) or without a timeout or
   * progress hook (nothing can stop it), one worker stays on the caller. */
  for (int how = 0; how < 2; how++) {
    gate g = {.caller = pthread_self(), .go = 1};
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool2;
    o.workers = 1;
    if (how == 0)
      o.timeout = 30;
    else
      o.release = gate_release;
    memset(data, 0, N * sizeof *data);
    assert_int_equal(pf_fill(&a, gated_kernel, &g, &o, NULL), 0);
    assert_int_equal(first_wrong(data, N), N);
    assert_int_equal(atomic_load(&g.on_caller), atomic_load(&g.calls));
    assert_int_equal(atomic_load(&g.releases), how == 1);
  }
  free(data);
}

/* After a fill returned early with its two calls still blocked on both of
 * a two-thread pool's threads, the next fill gets threads at once. */
static void test_stranded_threads_replaced(void **state) {
  (void)state;
  pf_pool *pool;
  assert_int_equal(pf_pool_create(&pool, 2), 0);
  enum { N = 100000 };
  int64_t *stuck = calloc(N, sizeof *stuck), *data = calloc(N, sizeof *data);
  gate g = {.caller = pthread_self()};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  o.workers = 2;
  o.chunk = 10;
  o.release = gate_release;
  o.timeout = 0.2;
  pf_array s = vector(stuck, N);
  assert_int_equal(pf_fill(&s, gated_kernel, &g, &o, NULL), PF_ETIMEDOUT);
  assert_int_equal(atomic_load(&g.inside), 2); /* both threads are held */
  for (int round = 0; round < 2; round++) {
    ids_ctx *c = calloc(1, sizeof *c);
    pf_fill_options q = PF_FILL_OPTIONS_DEFAULTS;
    q.pool = pool;
    q.workers = 2;
    q.chunk = 1000;
    pf_array a = vector(data, N);
    memset(data, 0, N * sizeof *data);
    double t0 = pf_test_now();
    assert_int_equal(pf_fill(&a, ids_kernel, c, &q, NULL), 0);
    double took = pf_test_now() - t0;
    if (took > 2.0) fail_msg("round %d: %.3f s behind stranded calls", round, took);
    assert_int_equal(first_wrong(data, N), N);
    assert_int_equal(atomic_load(&c->violations), 0);
    free(c);
  }
  assert_int_equal(atomic_load(&g.inside), 2); /* still stranded */
  assert_true(pf_pool_size(pool) <= pf_pool_max_threads(pool));
  open_gate(&g);
  /* The replacements are surplus: the pool shrinks back to its base. */
  double t0 = pf_test_now();
  while (pf_pool_size(pool) > 2 && pf_test_now() - t0 < 10)
    pf_test_sleep_us(50000);
  assert_int_equal(pf_pool_size(pool), 2);
  pf_pool_destroy(pool);
  free(stuck);
  free(data);
}

/* pf_fill_workers is a query: it does not make the default pool. Asked in
 * a forked child, which has no default pool of its own (it would be made
 * afresh there), the answer is pf_cpu_count(); once the pool exists, its
 * base size. */
static void test_fill_workers_creates_nothing(void **state) {
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int ok = pf__pool_default_existing() == NULL;
    ok = ok && pf_fill_workers(NULL, 1000000) == pf_cpu_count();
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    ok = ok && pf_fill_workers(&o, 1000000) == pf_cpu_count();
    ok = ok && pf__pool_default_existing() == NULL;
    _exit(ok ? 0 : 1); /* no threads in this child: TSan forbids them */
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pf_pool *d = pf_pool_default();
  assert_non_null(d);
  assert_ptr_equal(pf__pool_default_existing(), d);
  assert_int_equal(pf_fill_workers(NULL, 1000000), pf__pool_base(d));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lowest_failure_wins),
      cmocka_unit_test(test_plain_error_is_whole_fill),
      cmocka_unit_test(test_below_failure_computed),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_release_every_path),
      cmocka_unit_test(test_early_return),
      cmocka_unit_test(test_one_worker_returns_early),
      cmocka_unit_test(test_stranded_threads_replaced),
      cmocka_unit_test(test_fill_workers_creates_nothing),
      cmocka_unit_test(test_fair_sharing),
      cmocka_unit_test(test_cancel_queued),
      cmocka_unit_test(test_bounded_threads),
      cmocka_unit_test(test_thread_creation_fails),
  };
  return PF_RUN_TESTS(tests, setup, teardown);
}
