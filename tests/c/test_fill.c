/*
 * test_fill.c -- the thread pool (pool.c) and pf_fill (fill.c).
 *
 * The kernel writes a byte pattern that is a pure function of the flat index
 * into each element, whatever the dtype's size, so placement is checked
 * byte for byte: the reference walks every flat index with pf_index_unravel
 * (tested against an odometer in test_index.c), computes the element's
 * address from the strides and compares; every byte of the buffer that is not
 * part of an element must still hold the sentinel it was filled with.
 *
 * The kernel also checks its own calling contract: worker numbers below
 * pf_fill_workers() and never shared by two running calls, blocks inside
 * [0, size), at most PF_BLOCK_ELEMENTS for strided outputs. Kernels never
 * call cmocka (it is not thread-safe); they count problems in atomics that
 * the test thread asserts on.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pf_test.h"

#define SENTINEL 0xA5
#define MAX_WORKERS 64

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* Byte j of element `flat` under `salt`. */
static unsigned char pattern_byte(uint64_t salt, int64_t flat, size_t j) {
  uint64_t h = mix64((uint64_t)flat * 0x9e3779b97f4a7c15u + salt);
  return (unsigned char)((h >> (8 * (j % 8))) ^ (j / 8) * 0x3b);
}

/* ------------------------------------------------------------ the kernel */

typedef struct kctx {
  size_t itemsize;
  uint64_t salt;
  int64_t size;
  int workers;         /* worker arguments must be below this */
  int strided;         /* blocks are at most PF_BLOCK_ELEMENTS */
  long sleep_us;       /* per call */
  int64_t fail_at;     /* the call covering this index fails; -1: never */
  int fail_code;
  _Atomic int64_t calls;
  _Atomic int64_t elements;
  _Atomic int violations;
  _Atomic int busy[MAX_WORKERS];
  _Atomic int max_worker;
} kctx;

static void kctx_init(kctx *k, size_t itemsize, int64_t size, int workers,
                      int strided, uint64_t salt) {
  memset(k, 0, sizeof *k);
  k->itemsize = itemsize;
  k->salt = salt;
  k->size = size;
  k->workers = workers;
  k->strided = strided;
  k->fail_at = -1;
  atomic_init(&k->max_worker, -1);
}

static int pattern_kernel(void *vctx, int64_t start, int64_t count, void *out,
                          pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  kctx *k = vctx;
  atomic_fetch_add(&k->calls, 1);
  if (worker < 0 || worker >= k->workers || worker >= MAX_WORKERS ||
      start < 0 || count <= 0 || start > k->size - count ||
      (k->strided && count > PF_BLOCK_ELEMENTS)) {
    atomic_fetch_add(&k->violations, 1);
    return -99;
  }
  if (atomic_exchange(&k->busy[worker], 1) != 0)
    atomic_fetch_add(&k->violations, 1); /* two calls share a worker */
  int seen = atomic_load(&k->max_worker);
  while (worker > seen &&
         !atomic_compare_exchange_weak(&k->max_worker, &seen, worker)) {
  }
  unsigned char *p = out;
  for (int64_t n = 0; n < count; n++)
    for (size_t j = 0; j < k->itemsize; j++)
      *p++ = pattern_byte(k->salt, start + n, j);
  if (k->sleep_us > 0) pf_test_sleep_us(k->sleep_us);
  atomic_fetch_add(&k->elements, count);
  atomic_store(&k->busy[worker], 0);
  if (k->fail_at >= start && k->fail_at < start + count) return k->fail_code;
  return 0;
}

/* --------------------------------------------------------- array layouts */

typedef struct layout {
  const char *name;
  unsigned char *raw; /* the whole buffer, with guard bytes */
  size_t raw_bytes;
  pf_array a;
  int64_t size;
} layout;

enum {
  L_CONTIG_1D,
  L_CONTIG_3D,
  L_TRANSPOSED,
  L_NEGATIVE,
  L_MIXED_NEGATIVE,
  L_STEPPED,
  L_SCALAR,
  L_ONES,
  L_BIG_PERMUTED,
  L_COUNT
};

static const char *layout_names[L_COUNT] = {
    "contiguous 1-d", "contiguous 3-d",  "transposed", "negative strides",
    "mixed negative", "stepped slices",  "0-d",        "length-1 axes",
    "permuted 3-d (> one block)"};

#define GUARD 64

/* Builds layout `kind` for a dtype; `scale` 0 small, 1 larger. */
static void layout_make(layout *l, int kind, pf_dtype dtype, int scale) {
  size_t s = pf_dtype_size(dtype);
  int64_t r = scale ? 37 : 13, c = scale ? 131 : 29; /* 4847 or 377 */
  memset(l, 0, sizeof *l);
  l->name = layout_names[kind];
  pf_array *a = &l->a;
  a->dtype = dtype;
  int64_t elems = 0; /* of the underlying buffer */
  int64_t offset = 0; /* data = raw + GUARD + offset * s */
  switch (kind) {
    case L_CONTIG_1D:
      a->ndim = 1;
      a->shape[0] = r * c;
      pf_array_set_contiguous(a);
      elems = r * c;
      break;
    case L_CONTIG_3D:
      a->ndim = 3;
      a->shape[0] = 3, a->shape[1] = r, a->shape[2] = c / 3 + 1;
      pf_array_set_contiguous(a);
      elems = a->shape[0] * a->shape[1] * a->shape[2];
      break;
    case L_TRANSPOSED: /* base (r, c), view (c, r) */
      a->ndim = 2;
      a->shape[0] = c, a->shape[1] = r;
      a->strides[0] = (int64_t)s, a->strides[1] = c * (int64_t)s;
      elems = r * c;
      break;
    case L_NEGATIVE: /* base[::-1, ::-1] */
      a->ndim = 2;
      a->shape[0] = r, a->shape[1] = c;
      a->strides[0] = -c * (int64_t)s, a->strides[1] = -(int64_t)s;
      elems = r * c;
      offset = r * c - 1;
      break;
    case L_MIXED_NEGATIVE: /* base[::-1, :] */
      a->ndim = 2;
      a->shape[0] = r, a->shape[1] = c;
      a->strides[0] = -c * (int64_t)s, a->strides[1] = (int64_t)s;
      elems = r * c;
      offset = (r - 1) * c;
      break;
    case L_STEPPED: { /* base (4, r, 3c)[::1, ::2, ::3] */
      int64_t B = r, C = 3 * c;
      a->ndim = 3;
      a->shape[0] = 4, a->shape[1] = (B + 1) / 2, a->shape[2] = c;
      a->strides[0] = B * C * (int64_t)s;
      a->strides[1] = 2 * C * (int64_t)s;
      a->strides[2] = 3 * (int64_t)s;
      elems = 4 * B * C;
      break;
    }
    case L_SCALAR:
      a->ndim = 0;
      elems = 1;
      break;
    case L_ONES: /* contiguous, with odd strides on length-1 axes */
      a->ndim = 4;
      a->shape[0] = 1, a->shape[1] = r, a->shape[2] = 1, a->shape[3] = c;
      a->strides[0] = 0, a->strides[1] = c * (int64_t)s;
      a->strides[2] = -12345, a->strides[3] = (int64_t)s;
      elems = r * c;
      break;
    case L_BIG_PERMUTED: { /* base (3, 50, 41) transposed to (41, 3, 50) */
      int64_t A = 3, B = 50, C = 41;
      a->ndim = 3;
      a->shape[0] = C, a->shape[1] = A, a->shape[2] = B;
      a->strides[0] = (int64_t)s;
      a->strides[1] = B * C * (int64_t)s;
      a->strides[2] = C * (int64_t)s;
      elems = A * B * C;
      break;
    }
  }
  l->raw_bytes = (size_t)elems * s + 2 * GUARD;
  l->raw = malloc(l->raw_bytes);
  if (l->raw == NULL) abort();
  memset(l->raw, SENTINEL, l->raw_bytes);
  a->data = l->raw + GUARD + offset * (int64_t)s;
  if (pf_shape_size(a->ndim, a->shape, s, &l->size) != 0) abort();
}

static void layout_free(layout *l) { free(l->raw); }

/* Compares every element with the pattern and every other byte with the
 * sentinel. Returns the number of wrong bytes (0 when all is well) and
 * describes the first in `why`. */
static int64_t layout_verify(const layout *l, uint64_t salt, char *why,
                             size_t why_size) {
  size_t s = pf_dtype_size(l->a.dtype);
  unsigned char *mine = calloc(l->raw_bytes, 1);
  if (mine == NULL) abort();
  int64_t wrong = 0;
  int64_t index[PF_MAX_DIMS];
  for (int64_t flat = 0; flat < l->size; flat++) {
    pf_index_unravel(l->a.ndim, l->a.shape, flat, index);
    int64_t off = 0;
    for (int d = 0; d < l->a.ndim; d++) off += index[d] * l->a.strides[d];
    unsigned char *e = (unsigned char *)l->a.data + off;
    for (size_t j = 0; j < s; j++) {
      if (mine[e + j - l->raw]) {
        if (wrong++ == 0)
          snprintf(why, why_size, "%s: element %lld aliases another",
                   l->name, (long long)flat);
        continue;
      }
      mine[e + j - l->raw] = 1;
      if (e[j] != pattern_byte(salt, flat, j) && wrong++ == 0)
        snprintf(why, why_size, "%s: element %lld byte %zu is %#x, want %#x",
                 l->name, (long long)flat, j, e[j],
                 pattern_byte(salt, flat, j));
    }
  }
  for (size_t b = 0; b < l->raw_bytes; b++)
    if (!mine[b] && l->raw[b] != SENTINEL && wrong++ == 0)
      snprintf(why, why_size, "%s: byte %zu outside the elements written",
               l->name, b);
  free(mine);
  return wrong;
}

static pf_pool *pool3; /* a custom pool of 3 threads, made by main() */

/* Fills layout `kind` with the given options and checks everything. */
static void fill_and_check(int kind, pf_dtype dtype, int scale,
                           const pf_fill_options *o) {
  layout l;
  layout_make(&l, kind, dtype, scale);
  int workers = pf_fill_workers(o, l.size);
  kctx k;
  kctx_init(&k, pf_dtype_size(dtype), l.size, workers,
            !pf_array_is_contiguous(&l.a), (uint64_t)kind * 1000 + dtype);
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_fill(&l.a, pattern_kernel, &k, o, &err);
  char why[256] = "";
  int64_t wrong = rc == 0 ? layout_verify(&l, k.salt, why, sizeof why) : 0;
  if (rc != 0 || wrong != 0 || k.violations != 0 || k.elements != l.size ||
      k.max_worker >= workers) {
    print_error("%s dtype %s schedule %s chunk %lld workers %d pool %s\n",
                l.name, pf_dtype_name(dtype), pf_schedule_name(o->schedule),
                (long long)o->chunk, o->workers,
                o->pool == NULL ? "default" : "custom");
    layout_free(&l);
    fail_msg("rc %d (%s), %lld wrong bytes (%s), %d contract violations, "
             "%lld of %lld elements, max worker %d of %d",
             rc, err.message, (long long)wrong, why, (int)k.violations,
             (long long)k.elements, (long long)l.size, (int)k.max_worker,
             workers);
  }
  layout_free(&l);
}

/* ------------------------------------------------------------------ tests */

static void test_pool_basics(void **state) {
  (void)state;
  pf_pool_destroy(NULL); /* no-op */
  assert_int_equal(pf_pool_create(NULL, 3), PF_EINVAL);
  for (int n = 1; n <= 4; n++) {
    pf_pool *p = NULL;
    assert_int_equal(pf_pool_create(&p, n), 0);
    assert_non_null(p);
    assert_int_equal(pf_pool_size(p), n);
    pf_pool_destroy(p); /* idle threads are joined */
  }
  pf_pool *p = NULL;
  assert_int_equal(pf_pool_create(&p, 0), 0);
  assert_int_equal(pf_pool_size(p), pf_cpu_count());
  pf_pool_destroy(p);
  assert_int_equal(pf_pool_create(&p, -5), 0);
  assert_int_equal(pf_pool_size(p), pf_cpu_count());
  pf_pool_destroy(p);

  pf_pool *d = pf_pool_default();
  assert_non_null(d);
  assert_ptr_equal(pf_pool_default(), d);
  assert_int_equal(pf_pool_size(d), pf_cpu_count());
}

static void test_fill_workers(void **state) {
  (void)state;
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  int ncpu = pf_pool_size(pf_pool_default());
  assert_int_equal(pf_fill_workers(NULL, 1000000), ncpu);
  assert_int_equal(pf_fill_workers(&o, 1000000), ncpu);
  assert_int_equal(pf_fill_workers(&o, 1), 1);
  assert_int_equal(pf_fill_workers(&o, 0), 1);
  o.pool = pool3;
  assert_int_equal(pf_fill_workers(&o, 1000), 3);
  assert_int_equal(pf_fill_workers(&o, 2), 2);
  o.workers = 7;
  assert_int_equal(pf_fill_workers(&o, 1000), 7);
  assert_int_equal(pf_fill_workers(&o, 5), 5);
  assert_int_equal(pf_fill_workers(&o, 0), 1);
  o.workers = 1;
  assert_int_equal(pf_fill_workers(&o, 1000), 1);
}

/* Every dtype on every layout, on the custom pool and serially. */
static void test_all_dtypes_layouts(void **state) {
  (void)state;
  for (int dtype = 0; dtype < PF_DTYPE_COUNT; dtype++)
    for (int kind = 0; kind < L_COUNT; kind++)
      for (int workers = 0; workers <= 1; workers++) {
        pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
        o.pool = pool3;
        o.workers = workers;
        fill_and_check(kind, (pf_dtype)dtype, (dtype + kind) % 3 == 0, &o);
      }
}

/* Schedules x chunk sizes x workers x pools, on strided and contiguous
 * layouts. */
static void test_options_matrix(void **state) {
  (void)state;
  static const int kinds[] = {L_CONTIG_1D, L_TRANSPOSED, L_NEGATIVE,
                              L_STEPPED};
  static const pf_dtype dtypes[] = {PF_INT8, PF_FLOAT64, PF_COMPLEX128};
  static const int64_t chunks[] = {0, 1, 7, 1000, 1000000};
  static const int workers[] = {1, 2, 3, 4, 8};
  int i = 0;
  for (size_t kd = 0; kd < PF_ARRAY_LEN(kinds); kd++)
    for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++)
      for (size_t c = 0; c < PF_ARRAY_LEN(chunks); c++)
        for (size_t w = 0; w < PF_ARRAY_LEN(workers); w++, i++) {
          pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
          o.pool = i % 2 ? pool3 : NULL; /* custom and default pools */
          o.schedule = (pf_schedule)s;
          o.chunk = chunks[c];
          o.workers = workers[w];
          /* Small (hundreds of elements) mostly; one in four spans several
           * scratch blocks. */
          fill_and_check(kinds[kd], dtypes[i % 3],
                         chunks[c] != 1 && i % 4 == 0, &o);
        }
}

/* Writes each element's flat index (int64); counts calls below `first`. */
typedef struct first_ctx {
  int64_t first;
  atomic_int below; /* kernel calls that started below first */
} first_ctx;

static int flat_kernel(void *vctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *w) {
  first_ctx *c = vctx;
  if (start < c->first) atomic_fetch_add(&c->below, 1);
  for (int64_t k = 0; k < count; k++) ((int64_t *)out)[k] = start + k;
  return 0;
}

static int last_done(void *ctx, int64_t done, int64_t total) {
  int64_t *seen = ctx;
  seen[0] = done;
  seen[1] = total;
  return 0;
}

/* options.first: only flat indices [first, size) are computed, in any
 * layout, schedule and worker count; progress counts that range. */
static void test_first(void **state) {
  (void)state;
  enum { ROWS = 37, COLS = 101, N = ROWS * COLS };
  static int64_t buf[2 * N];
  const int64_t firsts[] = {0, 1, 777, N - 1, N};
  for (int strided = 0; strided < 2; strided++)
    for (size_t f = 0; f < PF_ARRAY_LEN(firsts); f++)
      for (int workers = 1; workers <= 3; workers++)
        for (int s = 0; s < 3; s++) {
          for (int64_t k = 0; k < 2 * N; k++) buf[k] = -1;
          pf_array a = {.data = buf, .dtype = PF_INT64, .ndim = 2,
                        .shape = {ROWS, COLS}};
          pf_array_set_contiguous(&a);
          if (strided) a.strides[1] *= 2, a.strides[0] *= 2;
          first_ctx c = {.first = firsts[f]};
          int64_t seen[2] = {-1, -1};
          pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
          o.pool = pool3;
          o.workers = workers;
          o.schedule = (pf_schedule)s;
          o.chunk = s == 0 ? 0 : 50;
          o.first = firsts[f];
          o.progress = last_done;
          o.progress_ctx = seen;
          assert_int_equal(pf_fill(&a, flat_kernel, &c, &o, NULL), 0);
          assert_int_equal(atomic_load(&c.below), 0);
          for (int64_t k = 0; k < N; k++) {
            int64_t v = buf[strided ? 2 * k : k];
            assert_int_equal(v, k < firsts[f] ? -1 : k);
          }
          assert_int_equal(seen[0], N - firsts[f]);
          assert_int_equal(seen[1], N - firsts[f]);
        }
  pf_array a = {.data = buf, .dtype = PF_INT64, .ndim = 1, .shape = {N}};
  pf_array_set_contiguous(&a);
  first_ctx c = {0};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.first = N + 1;
  assert_int_equal(pf_fill(&a, flat_kernel, &c, &o, NULL), PF_EINVAL);
  o.first = -1;
  assert_int_equal(pf_fill(&a, flat_kernel, &c, &o, NULL), PF_EINVAL);
}

static void test_scalar_and_empty(void **state) {
  (void)state;
  /* 0-d: one element, kernel called once with start 0, count 1. */
  for (int w = 0; w <= 4; w++) {
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool3;
    o.workers = w;
    fill_and_check(L_SCALAR, PF_COMPLEX64, 0, &o);
  }
  /* Zero-size shapes: nothing is called or written, even with NULL data. */
  static const int64_t shapes[][3] = {{0, 0, 0}, {4, 0, 3}, {0, 5, 7},
                                      {9, 9, 0}};
  for (size_t i = 0; i < PF_ARRAY_LEN(shapes); i++)
    for (int with_data = 0; with_data < 2; with_data++) {
      unsigned char buf[16];
      memset(buf, SENTINEL, sizeof buf);
      pf_array a = {.data = with_data ? buf : NULL, .dtype = PF_INT32,
                    .ndim = 3};
      memcpy(a.shape, shapes[i], sizeof shapes[i]);
      pf_array_set_contiguous(&a);
      kctx k;
      kctx_init(&k, 4, 0, 64, 0, 1);
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.pool = pool3;
      assert_int_equal(pf_fill(&a, pattern_kernel, &k, &o, NULL), 0);
      assert_int_equal(k.calls, 0);
      for (size_t b = 0; b < sizeof buf; b++)
        assert_int_equal(buf[b], SENTINEL);
    }
}

/* More workers than the pool has threads: the pool grows. */
static void test_pool_grows(void **state) {
  (void)state;
  pf_pool *p = NULL;
  assert_int_equal(pf_pool_create(&p, 2), 0);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = p;
  o.workers = 6;
  o.chunk = 1;
  layout l;
  layout_make(&l, L_CONTIG_1D, PF_FLOAT32, 0);
  kctx k;
  kctx_init(&k, 4, l.size, 6, 0, 77);
  k.sleep_us = 500; /* long enough for all six to take part */
  assert_int_equal(pf_fill(&l.a, pattern_kernel, &k, &o, NULL), 0);
  char why[256] = "";
  int64_t wrong = layout_verify(&l, 77, why, sizeof why);
  layout_free(&l);
  if (wrong) fail_msg("%s", why);
  assert_int_equal(k.violations, 0);
  assert_int_equal(pf_pool_size(p), 6);
  assert_int_equal(k.max_worker, 5);
  /* Fewer workers later: the pool keeps its threads, the fill uses 2. */
  o.workers = 2;
  layout_make(&l, L_TRANSPOSED, PF_INT16, 1);
  kctx_init(&k, 2, l.size, 2, 1, 78);
  assert_int_equal(pf_fill(&l.a, pattern_kernel, &k, &o, NULL), 0);
  wrong = layout_verify(&l, 78, why, sizeof why);
  layout_free(&l);
  if (wrong) fail_msg("%s", why);
  assert_int_equal(k.violations, 0);
  assert_int_equal(pf_pool_size(p), 6);
  pf_pool_destroy(p);
}

/* --------------------------------------------------------- kernel errors */

static void test_kernel_error_serial(void **state) {
  (void)state;
  layout l;
  layout_make(&l, L_CONTIG_1D, PF_INT64, 0); /* 377 elements */
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool3;
  o.workers = 1;
  o.chunk = 10;
  kctx k;
  kctx_init(&k, 8, l.size, 1, 0, 5);
  k.fail_at = 155;
  k.fail_code = -42;
  pf_error err;
  memset(&err, 0, sizeof err);
  assert_int_equal(pf_fill(&l.a, pattern_kernel, &k, &o, &err), -42);
  assert_int_equal(err.code, -42);
  assert_true(err.message[0] != '\0');
  assert_int_equal(k.calls, 16); /* chunks 0..15; none after the failure */
  /* Without an error struct too. */
  kctx_init(&k, 8, l.size, 1, 0, 5);
  k.fail_at = 0;
  k.fail_code = PF_EKERNEL;
  assert_int_equal(pf_fill(&l.a, pattern_kernel, &k, &o, NULL), PF_EKERNEL);
  assert_int_equal(k.calls, 1);
  layout_free(&l);
}

/* The worker whose call covers `fail_at` fails at once with -42. With
 * `others_fail`, every other call running at that moment then fails with -43
 * a little later (first error wins: -42 must come back); without, the other
 * calls succeed and the fill must stop them at their next block. Calls that
 * start more than 0.2 s after the failure count as late. */
typedef struct race_ctx {
  int64_t fail_at;
  long sleep_us;
  int others_fail;
  _Atomic int failed;
  _Atomic int64_t fail_time_us;
  _Atomic int64_t calls;
  _Atomic int64_t late_calls;
} race_ctx;

static int64_t now_us(void) { return (int64_t)(pf_test_now() * 1e6); }

static int race_kernel(void *vctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  race_ctx *r = vctx;
  (void)worker;
  memset(out, 0, (size_t)count);
  atomic_fetch_add(&r->calls, 1);
  int64_t t = atomic_load(&r->fail_time_us);
  if (t != 0 && now_us() > t + 200000) atomic_fetch_add(&r->late_calls, 1);
  if (r->fail_at >= start && r->fail_at < start + count) {
    atomic_store(&r->fail_time_us, now_us());
    atomic_store(&r->failed, 1);
    return -42;
  }
  pf_test_sleep_us(r->sleep_us);
  if (r->others_fail && atomic_load(&r->failed)) {
    pf_test_sleep_us(20000);
    return -43;
  }
  return 0;
}

static void test_kernel_error_parallel(void **state) {
  (void)state;
  for (int others_fail = 0; others_fail < 2; others_fail++)
    for (int strided = 0; strided < 2; strided++)
      for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++) {
        /* int8; strided: every other byte of a buffer twice the size, so
         * the library goes through scratch blocks of PF_BLOCK_ELEMENTS. */
        int64_t size = 400 * PF_BLOCK_ELEMENTS;
        unsigned char *buf = calloc((size_t)size * 2, 1);
        pf_array a = {.data = buf, .dtype = PF_INT8, .ndim = 1,
                      .shape = {size}, .strides = {strided ? 2 : 1}};
        race_ctx r = {.fail_at = 3 * PF_BLOCK_ELEMENTS + 5,
                      .sleep_us = 3000, .others_fail = others_fail};
        pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
        o.pool = pool3;
        o.workers = 3;
        o.schedule = (pf_schedule)s;
        /* Contiguous: one call per chunk of one block. Strided: three
         * chunks of about 133 blocks each. */
        o.chunk = strided ? size / 3 + 1 : PF_BLOCK_ELEMENTS;
        double t0 = pf_test_now();
        int rc = pf_fill(&a, race_kernel, &r, &o, NULL);
        double took = pf_test_now() - t0;
        free(buf);
        if (rc != -42 || r.late_calls != 0 || took > 1.0)
          fail_msg("%s %s, others %s: rc %d (want -42), %lld calls, %lld "
                   "started more than 0.2 s after the failure, %.3f s",
                   strided ? "strided" : "contiguous",
                   pf_schedule_name((pf_schedule)s),
                   others_fail ? "fail" : "succeed", rc, (long long)r.calls,
                   (long long)r.late_calls, took);
      }
}

/* ---------------------------------------------------------------- progress */

typedef struct prog_ctx {
  pthread_t caller;
  int calls;
  int wrong_thread;
  int64_t last_done;
  int64_t last_total;
  int non_monotone;
  int out_of_range;
  int intermediate; /* 0 < done < total */
  int cancel_at;    /* return `cancel_code` on this call (1-based); 0 never */
  int cancel_code;
} prog_ctx;

static int progress_cb(void *vctx, int64_t done, int64_t total) {
  prog_ctx *p = vctx;
  p->calls++;
  if (!pthread_equal(pthread_self(), p->caller)) p->wrong_thread++;
  if (done < p->last_done) p->non_monotone++;
  if (done < 0 || done > total) p->out_of_range++;
  if (done > 0 && done < total) p->intermediate++;
  p->last_done = done;
  p->last_total = total;
  if (p->cancel_at > 0 && p->calls >= p->cancel_at) return p->cancel_code;
  return 0;
}

static void test_progress(void **state) {
  (void)state;
  for (int workers = 1; workers <= 3; workers += 2)
    for (int strided = 0; strided < 2; strided++) {
      int64_t size = 20000;
      unsigned char *buf = calloc((size_t)size * 2, 8);
      pf_array a = {.data = buf, .dtype = PF_FLOAT64, .ndim = 1,
                    .shape = {size}, .strides = {strided ? 16 : 8}};
      kctx k;
      kctx_init(&k, 8, size, workers, strided, 9);
      k.sleep_us = 300;
      prog_ctx p = {.caller = pthread_self()};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.pool = pool3;
      o.workers = workers;
      o.chunk = 64; /* 313 chunks, ~0.1 s serially */
      o.progress = progress_cb;
      o.progress_ctx = &p;
      o.progress_interval = 0.005;
      assert_int_equal(pf_fill(&a, pattern_kernel, &k, &o, NULL), 0);
      free(buf);
      assert_int_equal(k.elements, size);
      assert_int_equal(p.wrong_thread, 0);
      assert_int_equal(p.non_monotone, 0);
      assert_int_equal(p.out_of_range, 0);
      assert_true(p.calls >= 2);
      assert_true(p.intermediate >= 1);
      assert_int_equal(p.last_done, size); /* ends at the total */
      assert_int_equal(p.last_total, size);
    }
  /* Empty: one call, (0, 0). */
  pf_array e = {.data = NULL, .dtype = PF_FLOAT64, .ndim = 1, .shape = {0}};
  prog_ctx p = {.caller = pthread_self(), .last_done = 0};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.progress = progress_cb;
  o.progress_ctx = &p;
  kctx k;
  kctx_init(&k, 8, 0, 64, 0, 1);
  assert_int_equal(pf_fill(&e, pattern_kernel, &k, &o, NULL), 0);
  assert_int_equal(p.calls, 1);
  assert_int_equal(p.last_done, 0);
  assert_int_equal(p.last_total, 0);
}

static void test_progress_cancels(void **state) {
  (void)state;
  static const int codes[] = {PF_ECANCELED, 7};
  for (int workers = 1; workers <= 3; workers += 2)
    for (size_t c = 0; c < PF_ARRAY_LEN(codes); c++) {
      int64_t size = 64 * 2000;
      unsigned char *buf = calloc((size_t)size, 1);
      pf_array a = {.data = buf, .dtype = PF_UINT8, .ndim = 1,
                    .shape = {size}, .strides = {1}};
      kctx k;
      kctx_init(&k, 1, size, workers, 0, 3);
      k.sleep_us = 1000; /* 2 s if nothing stops it */
      prog_ctx p = {.caller = pthread_self(), .cancel_at = 1,
                    .cancel_code = codes[c]};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.pool = pool3;
      o.workers = workers;
      o.chunk = 64;
      o.progress = progress_cb;
      o.progress_ctx = &p;
      o.progress_interval = 0.005;
      pf_error err;
      memset(&err, 0, sizeof err);
      double t0 = pf_test_now();
      int rc = pf_fill(&a, pattern_kernel, &k, &o, &err);
      double took = pf_test_now() - t0;
      free(buf);
      assert_int_equal(rc, codes[c]);
      assert_int_equal(err.code, codes[c]);
      assert_int_equal(p.calls, 1); /* not called again once canceled */
      if (k.elements >= size / 2 || took > 0.5)
        fail_msg("workers %d: cancel took %.3f s, %lld of %lld elements done",
                 workers, took, (long long)k.elements, (long long)size);
    }
}

/* Sleeps 1 us per 100 elements, counting the elements it finished. */
static int slow_kernel(void *vctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  _Atomic int64_t *elements = vctx;
  (void)start, (void)worker;
  memset(out, 1, (size_t)count);
  pf_test_sleep_us((long)(count / 100));
  atomic_fetch_add(elements, count);
  return 0;
}

/* A contiguous output under the static schedule gives each worker one huge
 * chunk (here 8M elements, 80 ms); cancellation must still reach inside it
 * instead of waiting for the whole chunk. */
static void test_cancel_large_chunks(void **state) {
  (void)state;
  int64_t size = 16 * 1024 * 1024;
  unsigned char *buf = calloc((size_t)size, 1);
  pf_array a = {.data = buf, .dtype = PF_INT8, .ndim = 1, .shape = {size},
                .strides = {1}};
  _Atomic int64_t elements = 0;
  prog_ctx p = {.caller = pthread_self(), .cancel_at = 1,
                .cancel_code = PF_ECANCELED};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool3;
  o.workers = 2;
  o.schedule = PF_SCHEDULE_STATIC;
  o.progress = progress_cb;
  o.progress_ctx = &p;
  o.progress_interval = 0.005;
  int rc = pf_fill(&a, slow_kernel, &elements, &o, NULL);
  free(buf);
  assert_int_equal(rc, PF_ECANCELED);
  if (elements >= size / 2)
    fail_msg("canceled after 5 ms, yet %lld of %lld elements were done",
             (long long)elements, (long long)size);
}

/* --------------------------------------------------------- invalid input */

static int noop_kernel(void *ctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  (void)ctx, (void)start, (void)worker;
  memset(out, 0, (size_t)count);
  return 0;
}

static void expect_invalid(const pf_array *a, pf_kernel_fn kernel,
                           const pf_fill_options *o, int want,
                           const char *what) {
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_fill(a, kernel, NULL, o, &err);
  if (rc != want || err.code != want || err.message[0] == '\0')
    fail_msg("%s: rc %d, err.code %d, message \"%s\"; want %d with a message",
             what, rc, err.code, err.message, want);
  assert_int_equal(pf_fill(a, kernel, NULL, o, NULL), want);
}

static void test_invalid_arguments(void **state) {
  (void)state;
  unsigned char buf[64];
  pf_array good = {.data = buf, .dtype = PF_UINT8, .ndim = 2,
                   .shape = {4, 8}, .strides = {8, 1}};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool3;
  assert_int_equal(pf_fill(&good, noop_kernel, NULL, &o, NULL), 0);
  assert_int_equal(pf_fill(&good, noop_kernel, NULL, NULL, NULL), 0);

  expect_invalid(NULL, noop_kernel, &o, PF_EINVAL, "NULL out");
  expect_invalid(&good, NULL, &o, PF_EINVAL, "NULL kernel");
  pf_array a = good;
  a.dtype = PF_DTYPE_COUNT;
  expect_invalid(&a, noop_kernel, &o, PF_EDTYPE, "bad dtype");
  a.dtype = (pf_dtype)-3;
  expect_invalid(&a, noop_kernel, &o, PF_EDTYPE, "negative dtype");
  a = good;
  a.shape[1] = -8;
  expect_invalid(&a, noop_kernel, &o, PF_EINVAL, "negative shape");
  a = good;
  a.ndim = -1;
  expect_invalid(&a, noop_kernel, &o, PF_EINVAL, "ndim -1");
  a.ndim = PF_MAX_DIMS + 1;
  expect_invalid(&a, noop_kernel, &o, PF_EINVAL, "ndim 33");
  a = good;
  a.strides[0] = 0;
  expect_invalid(&a, noop_kernel, &o, PF_EINVAL, "zero stride");
  a = good;
  a.data = NULL;
  expect_invalid(&a, noop_kernel, &o, PF_EINVAL, "NULL data");
  a = good;
  a.shape[0] = INT64_MAX / 2, a.shape[1] = 3;
  expect_invalid(&a, noop_kernel, &o, PF_EOVERFLOW, "overflowing shape");
  a = good;
  a.dtype = PF_FLOAT64;
  a.shape[0] = INT64_MAX / 4, a.shape[1] = 1;
  expect_invalid(&a, noop_kernel, &o, PF_EOVERFLOW, "overflowing bytes");

  pf_fill_options bad = o;
  bad.chunk = -1;
  expect_invalid(&good, noop_kernel, &bad, PF_EINVAL, "negative chunk");
  bad = o;
  bad.workers = -2;
  expect_invalid(&good, noop_kernel, &bad, PF_EINVAL, "negative workers");
  bad = o;
  bad.schedule = (pf_schedule)3;
  expect_invalid(&good, noop_kernel, &bad, PF_EINVAL, "bad schedule");
  bad.schedule = (pf_schedule)-1;
  expect_invalid(&good, noop_kernel, &bad, PF_EINVAL, "negative schedule");

  /* Zero strides are fine on axes of length 1 (NumPy broadcasting). */
  unsigned char one[8] = {0};
  pf_array z = {.data = one, .dtype = PF_UINT8, .ndim = 3,
                .shape = {1, 8, 1}, .strides = {0, 1, 0}};
  assert_int_equal(pf_fill(&z, noop_kernel, NULL, &o, NULL), 0);
}

/* ---------------------------------------------------- concurrent fills */

typedef struct fill_thread {
  int id;
  int rounds;
  _Atomic int *failures;
} fill_thread;

static void *fill_thread_main(void *arg) {
  fill_thread *t = arg;
  for (int round = 0; round < t->rounds; round++) {
    int kind = (t->id + round) % L_COUNT;
    pf_dtype dtype = (pf_dtype)((t->id * 7 + round) % PF_DTYPE_COUNT);
    layout l;
    layout_make(&l, kind, dtype, round % 2);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = t->id == 0 ? NULL : pool3;
    o.schedule = (pf_schedule)(round % 3);
    o.chunk = round % 4 == 0 ? 0 : 17 * round;
    o.workers = 1 + (t->id + round) % 4;
    kctx k;
    uint64_t salt = (uint64_t)t->id << 32 | (uint64_t)round;
    kctx_init(&k, pf_dtype_size(dtype), l.size, pf_fill_workers(&o, l.size),
              !pf_array_is_contiguous(&l.a), salt);
    int rc = pf_fill(&l.a, pattern_kernel, &k, &o, NULL);
    char why[256];
    if (rc != 0 || k.violations != 0 ||
        layout_verify(&l, salt, why, sizeof why) != 0)
      atomic_fetch_add(t->failures, 1);
    layout_free(&l);
  }
  return NULL;
}

static void test_concurrent_fills(void **state) {
  (void)state;
  enum { THREADS = 5 };
  _Atomic int failures = 0;
  pthread_t threads[THREADS];
  fill_thread args[THREADS];
  for (int t = 0; t < THREADS; t++) {
    args[t] = (fill_thread){t, 12, &failures};
    assert_int_equal(
        pthread_create(&threads[t], NULL, fill_thread_main, &args[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------- nested fills */

/* A kernel that runs a whole fill of its own (e.g. a Python function on the
 * threads backend calling populate): with every pool thread inside such a
 * kernel, tasks queued on the same pool would never run. */
typedef struct nest_ctx {
  pf_pool *inner_pool; /* NULL: the default pool */
  _Atomic int inner_failures;
} nest_ctx;

static int nesting_kernel(void *vctx, int64_t start, int64_t count, void *out,
                          pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  nest_ctx *n = vctx;
  (void)worker;
  memset(out, 0, (size_t)count * 8);
  pf_test_sleep_us(20000); /* every outer worker is inside a kernel */
  layout l;
  layout_make(&l, start % 2 ? L_TRANSPOSED : L_CONTIG_1D, PF_INT32, 0);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = n->inner_pool;
  o.workers = 2;
  o.chunk = 10;
  kctx k;
  kctx_init(&k, 4, l.size, 2, !pf_array_is_contiguous(&l.a),
            (uint64_t)start);
  char why[256];
  if (pf_fill(&l.a, pattern_kernel, &k, &o, NULL) != 0 || k.violations ||
      layout_verify(&l, (uint64_t)start, why, sizeof why) != 0)
    atomic_fetch_add(&n->inner_failures, 1);
  layout_free(&l);
  return 0;
}

typedef struct nest_run {
  pf_pool *outer_pool; /* NULL: the default pool */
  int outer_workers;
  nest_ctx ctx;
  int rc;
  _Atomic int done;
} nest_run;

static void *nest_main(void *arg) {
  nest_run *r = arg;
  int64_t buf[6];
  pf_array a = {.data = buf, .dtype = PF_INT64, .ndim = 1, .shape = {6},
                .strides = {8}};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = r->outer_pool;
  o.workers = r->outer_workers;
  o.chunk = 1;
  r->rc = pf_fill(&a, nesting_kernel, &r->ctx, &o, NULL);
  atomic_store(&r->done, 1);
  return NULL;
}

static void test_nested_fills(void **state) {
  (void)state;
  pf_pool *p = NULL; /* its own pool: a hung one must not stall teardown */
  assert_int_equal(pf_pool_create(&p, 3), 0);
  nest_run runs[] = {
      {.outer_pool = p, .outer_workers = 3, .ctx = {.inner_pool = p}},
      {.outer_pool = NULL, .outer_workers = 0, .ctx = {.inner_pool = NULL}},
      {.outer_pool = p, .outer_workers = 3, .ctx = {.inner_pool = pool3}},
  };
  for (size_t i = 0; i < PF_ARRAY_LEN(runs); i++) {
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, nest_main, &runs[i]), 0);
    double deadline = pf_test_now() + 10.0;
    while (!atomic_load(&runs[i].done) && pf_test_now() < deadline) pf_test_sleep_us(2000);
    if (!atomic_load(&runs[i].done))
      fail_msg("case %zu: a fill nested in a kernel deadlocked", i);
    pthread_join(t, NULL);
    assert_int_equal(runs[i].rc, 0);
    assert_int_equal(runs[i].ctx.inner_failures, 0);
  }
  pf_pool_destroy(p);
}

/* ------------------------------------------------------------------- fork */

/* In the child: fills with a pool created by the parent (its threads do not
 * exist here, so the fill runs serially) and, unless TSan forbids threads
 * after a multi-threaded fork, with the default pool (a fresh one). Exits 0
 * when every result is right. */
static void child_fills(void) {
  int status = 0;
  for (int kind = 0; kind < L_COUNT; kind++) {
    layout l;
    layout_make(&l, kind, PF_FLOAT64, 1);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = pool3;
    o.workers = 3;
    kctx k;
    kctx_init(&k, 8, l.size, 3, !pf_array_is_contiguous(&l.a), 11);
    char why[256];
    if (pf_fill(&l.a, pattern_kernel, &k, &o, NULL) != 0) status |= 1;
    if (layout_verify(&l, 11, why, sizeof why) != 0) status |= 2;
    /* The parent's pool has no threads here: one worker did it all. */
    if (k.max_worker != 0) status |= 4;
    layout_free(&l);
  }
#ifndef __SANITIZE_THREAD__
  layout l;
  layout_make(&l, L_TRANSPOSED, PF_INT32, 1);
  kctx k;
  kctx_init(&k, 4, l.size, pf_fill_workers(NULL, l.size), 1, 12);
  char why[256];
  if (pf_fill(&l.a, pattern_kernel, &k, NULL, NULL) != 0) status |= 8;
  if (layout_verify(&l, 12, why, sizeof why) != 0) status |= 16;
  layout_free(&l);
#endif
  _exit(status);
}

/* Waits for `pid` at most `seconds`; kills it and returns -1 on timeout. */
static int wait_child(pid_t pid, double seconds) {
  double deadline = pf_test_now() + seconds;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    if (r < 0 && errno != EINTR) return -2;
    if (pf_test_now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    pf_test_sleep_us(2000);
  }
}

typedef struct busy_arg {
  _Atomic int stop;
  _Atomic int failures;
} busy_arg;

/* Keeps the pools busy while the test thread forks. */
static void *busy_main(void *arg) {
  busy_arg *b = arg;
  for (int round = 0; !atomic_load(&b->stop); round++) {
    layout l;
    layout_make(&l, round % L_COUNT, PF_INT16, 0);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.pool = round % 2 ? pool3 : NULL;
    o.chunk = 3;
    kctx k;
    kctx_init(&k, 2, l.size, pf_fill_workers(&o, l.size),
              !pf_array_is_contiguous(&l.a), 13);
    char why[256];
    if (pf_fill(&l.a, pattern_kernel, &k, &o, NULL) != 0 ||
        layout_verify(&l, 13, why, sizeof why) != 0)
      atomic_fetch_add(&b->failures, 1);
    layout_free(&l);
  }
  return NULL;
}

static void test_fork(void **state) {
  (void)state;
  /* Quiet pools. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) child_fills();
  assert_int_equal(wait_child(pid, 20.0), 0);

#if defined(__SANITIZE_ADDRESS__) && defined(__GNUC__) && !defined(__clang__)
  /* GCC 12's libasan has no fork interceptor (LLVM added one in 15): a
   * child forked while another thread is inside ASan's allocator inherits
   * its lock held and hangs in its first malloc. The plain and TSan builds
   * run the rest of this test. */
  return;
#endif
  /* Pools in use by another thread at the moment of the fork. */
  busy_arg b = {0};
  pthread_t busy;
  assert_int_equal(pthread_create(&busy, NULL, busy_main, &b), 0);
  for (int i = 0; i < 4; i++) {
    pf_test_sleep_us(3000);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child_fills();
    int status = wait_child(pid, 20.0);
    if (status != 0) {
      atomic_store(&b.stop, 1);
      pthread_join(busy, NULL);
      fail_msg("child %d: status %d (-1: hung)", i, status);
    }
  }
  atomic_store(&b.stop, 1);
  pthread_join(busy, NULL);
  assert_int_equal(b.failures, 0);
}

static int setup(void **state) {
  (void)state;
  return pf_pool_create(&pool3, 3);
}

static int teardown(void **state) {
  (void)state;
  pf_pool_destroy(pool3);
  pool3 = NULL;
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_basics),
      cmocka_unit_test(test_fill_workers),
      cmocka_unit_test(test_all_dtypes_layouts),
      cmocka_unit_test(test_options_matrix),
      cmocka_unit_test(test_scalar_and_empty),
      cmocka_unit_test(test_first),
      cmocka_unit_test(test_pool_grows),
      cmocka_unit_test(test_kernel_error_serial),
      cmocka_unit_test(test_kernel_error_parallel),
      cmocka_unit_test(test_progress),
      cmocka_unit_test(test_progress_cancels),
      cmocka_unit_test(test_cancel_large_chunks),
      cmocka_unit_test(test_invalid_arguments),
      cmocka_unit_test(test_concurrent_fills),
      cmocka_unit_test(test_nested_fills),
      cmocka_unit_test(test_fork),
  };
  return PF_RUN_TESTS(tests, setup, teardown);
}
