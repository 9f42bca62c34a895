/*
 * test_team.c -- process teams (team.c) and the shared memory they write
 * (shm.c).
 *
 * Chunk functions run in forked workers and report through pf_shared_alloc
 * memory: a per-element write count (atomic), the values written, and flags.
 * After every pf_team_run the test checks that nothing is left behind: no
 * child process (waitpid(-1) fails with ECHILD), the same number of open file
 * descriptors and the same memory mappings as before the call.
 *
 * This binary never starts a thread, so forking is sound under TSan too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pf_test.h"

/* ------------------------------------------------------ leak snapshots */

typedef struct snapshot {
  int fds;
  int maps;        /* all mappings */
  int shared_maps; /* MAP_SHARED ones: what teams and pf_shared_alloc make */
} snapshot;

static void count_maps(int *all, int *shared_only) {
  *all = *shared_only = -1;
  FILE *f = fopen("/proc/self/maps", "re");
  if (f == NULL) return;
  char line[4096];
  int n = 0, s = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strchr(line, '\n') == NULL) continue; /* a long path: rest of it */
    char perms[8];
    n++;
    if (sscanf(line, "%*s %7s", perms) == 1 && perms[3] == 's') s++;
  }
  fclose(f);
  *all = n;
  *shared_only = s;
}

static snapshot take_snapshot(void) {
  snapshot snap;
  snap.fds = pf_test_open_fds();
  count_maps(&snap.maps, &snap.shared_maps);
  return snap;
}

/* Sanitizer allocators map memory lazily (and split their reservations
 * with mprotect), so the total number of mappings is only stable in a plain
 * build; shared mappings are compared in every build. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COMPARE_ALL_MAPS 0
#else
#define COMPARE_ALL_MAPS 1
#endif

/* Nothing left behind since `before`. */
static void check_clean(snapshot before, const char *what) {
  errno = 0;
  pid_t child = waitpid(-1, NULL, WNOHANG);
  if (child != -1 || errno != ECHILD)
    fail_msg("%s: a child process is left (waitpid -> %d, errno %d)", what,
             (int)child, errno);
  snapshot after = take_snapshot();
  if (after.fds != before.fds)
    fail_msg("%s: %d open fds, %d before", what, after.fds, before.fds);
  if (after.shared_maps != before.shared_maps)
    fail_msg("%s: %d shared mappings, %d before", what, after.shared_maps,
             before.shared_maps);
  if (COMPARE_ALL_MAPS && after.maps != before.maps)
    fail_msg("%s: %d mappings, %d before", what, after.maps, before.maps);
}

/* -------------------------------------------------------- shared state */

/* What workers and the test share. One per test, in pf_shared_alloc memory. */
typedef struct shared {
  int64_t size;
  _Atomic int bad_range;    /* a chunk outside [0, size) or empty */
  _Atomic int bad_worker;   /* pf_team_worker_id out of range */
  int workers;
  /* Behaviour switches. */
  int64_t die_at;           /* index at which to die; -1: never */
  int die_how;              /* DIE_* */
  int die_once;             /* only the first time */
  _Atomic int died;         /* times a worker died on purpose */
  int64_t fail_at;          /* pf_team_worker_fail at this index; -1 never */
  _Atomic int fail_pid;
  _Atomic int fail_worker;
  long sleep_us;            /* per chunk */
  int wait_for_stop;        /* non-failing workers wait to be stopped */
  _Atomic int saw_stopping;
  _Atomic int child_hooks;      /* around_work BEFORE, in workers */
  _Atomic int child_exit_hooks; /* around_work AFTER */
  _Atomic int bad_work_order;   /* AFTER without BEFORE in that worker */
  _Atomic int sigint_sent;
  _Atomic int failure_recorded; /* pf_team_worker_fail has returned */
  _Atomic int late_chunks;      /* chunk functions entered after that */
  /* Per element, after this header. */
  _Atomic int *counts;
  int64_t *values;
} shared;

enum { DIE_SIGKILL, DIE_SIGSEGV, DIE_EXIT3, DIE_ABORT, DIE_EXIT0 };

static size_t shared_bytes(int64_t size) {
  return sizeof(shared) + (size_t)size * (sizeof(_Atomic int) + 8) + 64;
}

static shared *shared_new(int64_t size, int workers) {
  shared *sh = pf_shared_alloc(shared_bytes(size));
  assert_non_null(sh);
  assert_int_equal(pf_shared_contains(sh, shared_bytes(size)), 1);
  sh->size = size;
  sh->workers = workers;
  sh->die_at = -1;
  sh->fail_at = -1;
  sh->counts = (_Atomic int *)(sh + 1);
  uintptr_t values = ((uintptr_t)(sh->counts + size) + 7) & ~(uintptr_t)7;
  sh->values = (int64_t *)values;
  return sh;
}

static void shared_free(shared *sh) {
  pf_shared_free(sh, shared_bytes(sh->size));
}

static int64_t value_of(int64_t i) { return i * 3 + 1; }

static void die(int how) {
  switch (how) {
    case DIE_SIGKILL:
      raise(SIGKILL);
      break;
    case DIE_SIGSEGV:
      /* Sanitizers catch SIGSEGV to print a report: restore the default. */
      signal(SIGSEGV, SIG_DFL);
      raise(SIGSEGV);
      break;
    case DIE_EXIT3:
      _exit(3);
    case DIE_EXIT0: /* a clean exit in the middle of the job is a death too */
      _exit(0);
    case DIE_ABORT:
      signal(SIGABRT, SIG_DFL);
      abort();
  }
}

static int chunk_fn(void *ctx, pf_team_worker *w, int64_t start, int64_t stop) {
  shared *sh = ctx;
  int id = pf_team_worker_id(w);
  if (id < 0 || id >= sh->workers) atomic_fetch_add(&sh->bad_worker, 1);
  if (start < 0 || stop > sh->size || start >= stop) {
    atomic_fetch_add(&sh->bad_range, 1);
    return 0;
  }
  if (sh->sleep_us > 0) pf_test_sleep_us(sh->sleep_us);
  for (int64_t i = start; i < stop; i++) {
    if (i == sh->die_at) {
      int first = atomic_fetch_add(&sh->died, 1) == 0;
      if (first || !sh->die_once) die(sh->die_how);
    }
    if (i == sh->fail_at) {
      atomic_store(&sh->fail_pid, (int)getpid());
      atomic_store(&sh->fail_worker, id);
      char payload[64];
      int n = snprintf(payload, sizeof payload, "failed at %lld",
                       (long long)i);
      return pf_team_worker_fail(w, i, payload, (size_t)n + 1);
    }
    atomic_fetch_add(&sh->counts[i], 1);
    sh->values[i] = value_of(i);
  }
  return 0;
}

/* Every element written exactly once (or at least once when `retried`, as
 * the lost chunk of a dead worker may have been partly written). */
static void check_elements(const shared *sh, int retried, const char *what) {
  if (sh->bad_range || sh->bad_worker)
    fail_msg("%s: %d bad chunks, %d bad worker ids", what, (int)sh->bad_range,
             (int)sh->bad_worker);
  for (int64_t i = 0; i < sh->size; i++) {
    int c = sh->counts[i];
    if (retried ? c < 1 : c != 1)
      fail_msg("%s: element %lld written %d times", what, (long long)i, c);
    if (sh->values[i] != value_of(i))
      fail_msg("%s: element %lld is %lld", what, (long long)i,
               (long long)sh->values[i]);
  }
}

static pf_team_options options(int workers, pf_schedule schedule,
                               int64_t chunk) {
  pf_team_options o = PF_TEAM_OPTIONS_DEFAULTS;
  o.workers = workers;
  o.schedule = schedule;
  o.chunk = chunk;
  o.poll_interval = 0.01;
  return o;
}

/* Runs once so that lazily made allocator state exists before snapshots. */
static int setup(void **state) {
  (void)state;
  shared *sh = pf_shared_alloc(shared_bytes(10));
  if (sh == NULL) return -1;
  pf_shared_free(sh, shared_bytes(10));
  sh = shared_new(10, 2);
  pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 0);
  pf_team_report report;
  int rc = pf_team_run(10, &o, NULL, chunk_fn, sh, &report, NULL);
  shared_free(sh);
  return rc;
}

/* ------------------------------------------------------------------ tests */

static void test_coverage(void **state) {
  (void)state;
  static const int64_t sizes[] = {1, 7, 1000, 100003};
  static const int workers[] = {1, 2, 3, 4};
  static const int64_t chunks[] = {0, 1, 64};
  for (size_t z = 0; z < PF_ARRAY_LEN(sizes); z++)
    for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++)
      for (size_t w = 0; w < PF_ARRAY_LEN(workers); w++)
        for (size_t c = 0; c < PF_ARRAY_LEN(chunks); c++) {
          /* Fork-heavy: the biggest size with a few combinations only. */
          if (sizes[z] > 1000 && (chunks[c] == 1 || workers[w] == 1 ||
                                  workers[w] == 4))
            continue;
          char what[128];
          snprintf(what, sizeof what, "size %lld %s workers %d chunk %lld",
                   (long long)sizes[z], pf_schedule_name((pf_schedule)s),
                   workers[w], (long long)chunks[c]);
          shared *sh = shared_new(sizes[z], workers[w]);
          pf_team_options o = options(workers[w], (pf_schedule)s, chunks[c]);
          pf_team_report report;
          pf_error err;
          memset(&err, 0, sizeof err);
          snapshot before = take_snapshot();
          int rc = pf_team_run(sizes[z], &o, NULL, chunk_fn, sh, &report,
                               &err);
          check_clean(before, what);
          if (rc != 0) fail_msg("%s: rc %d (%s)", what, rc, err.message);
          assert_int_equal(report.retried, 0);
          assert_null(report.payload);
          check_elements(sh, 0, what);
          shared_free(sh);
        }
}

static void test_empty_and_defaults(void **state) {
  (void)state;
  /* Size 0: nothing to do, no worker forked. */
  shared *sh = shared_new(0, 4);
  pf_team_options o = options(4, PF_SCHEDULE_STATIC, 0);
  pf_team_report report;
  snapshot before = take_snapshot();
  assert_int_equal(pf_team_run(0, &o, NULL, chunk_fn, sh, &report, NULL), 0);
  check_clean(before, "size 0");
  assert_int_equal(report.retried, 0);
  shared_free(sh);
  /* NULL options (one worker), NULL report, NULL err. */
  sh = shared_new(500, 1);
  before = take_snapshot();
  assert_int_equal(pf_team_run(500, NULL, NULL, chunk_fn, sh, NULL, NULL), 0);
  check_clean(before, "defaults");
  check_elements(sh, 0, "defaults");
  shared_free(sh);
  /* More workers than elements. */
  sh = shared_new(3, 3);
  o = options(8, PF_SCHEDULE_DYNAMIC, 0);
  before = take_snapshot();
  assert_int_equal(pf_team_run(3, &o, NULL, chunk_fn, sh, &report, NULL), 0);
  check_clean(before, "8 workers, 3 elements");
  check_elements(sh, 0, "8 workers, 3 elements");
  shared_free(sh);
}

static void test_invalid_options(void **state) {
  (void)state;
  shared *sh = shared_new(10, 4);
  pf_team_options good = options(2, PF_SCHEDULE_DYNAMIC, 0);
  struct {
    const char *what;
    int64_t size;
    pf_team_options o;
    int null_fn;
  } cases[] = {
      {"workers 0", 10, good, 0}, {"workers -1", 10, good, 0},
      {"chunk -1", 10, good, 0},  {"retries -1", 10, good, 0},
      {"schedule 3", 10, good, 0}, {"size -1", -1, good, 0},
      {"NULL chunk fn", 10, good, 1},
  };
  cases[0].o.workers = 0;
  cases[1].o.workers = -1;
  cases[2].o.chunk = -1;
  cases[3].o.retries = -1;
  cases[4].o.schedule = (pf_schedule)3;
  for (size_t i = 0; i < PF_ARRAY_LEN(cases); i++) {
    pf_team_report report;
    memset(&report, 0x5a, sizeof report);
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    int rc = pf_team_run(cases[i].size, &cases[i].o, NULL,
                         cases[i].null_fn ? NULL : chunk_fn, sh, &report,
                         &err);
    check_clean(before, cases[i].what);
    if (rc != PF_EINVAL || err.code != PF_EINVAL || err.message[0] == '\0')
      fail_msg("%s: rc %d, err %d \"%s\"", cases[i].what, rc, err.code,
               err.message);
    /* The report is filled in all cases. */
    assert_null(report.payload);
    assert_int_equal(report.retried, 0);
    assert_int_equal(report.pid, -1);
  }
  for (int64_t i = 0; i < 10; i++) assert_int_equal(sh->counts[i], 0);
  shared_free(sh);
}

/* A worker that dies at `die_at` is reported with its pid, how it ended and
 * the chunk it held, promptly. */
static void check_death(int how, pf_schedule schedule, int workers,
                        int64_t chunk) {
  int64_t size = 20000, die_at = 12345;
  shared *sh = shared_new(size, workers);
  sh->die_at = die_at;
  sh->die_how = how;
  pf_team_options o = options(workers, schedule, chunk);
  pf_team_report report;
  pf_error err;
  memset(&err, 0, sizeof err);
  char what[96];
  snprintf(what, sizeof what, "death %d, %s, %d workers, chunk %lld", how,
           pf_schedule_name(schedule), workers, (long long)chunk);
  snapshot before = take_snapshot();
  double t0 = pf_test_now();
  int rc = pf_team_run(size, &o, NULL, chunk_fn, sh, &report, &err);
  double took = pf_test_now() - t0;
  check_clean(before, what);
  if (rc != PF_EWORKER || err.code != PF_EWORKER)
    fail_msg("%s: rc %d (%s)", what, rc, err.message);
  assert_true(err.message[0] != '\0');
  /* Not a speed check: a death noticed only when the rest is done, or never,
   * takes the whole job or hangs; seconds of slack cover a loaded host. */
  if (took > 5.0) fail_msg("%s: took %.3f s", what, took);
  assert_true(report.worker >= 0 && report.worker < workers);
  assert_true(report.pid > 0);
  assert_true(report.pid != getpid());
  switch (how) {
    case DIE_SIGKILL:
      assert_int_equal(report.term_signal, SIGKILL);
      assert_int_equal(report.exit_status, -1);
      break;
    case DIE_SIGSEGV:
      assert_int_equal(report.term_signal, SIGSEGV);
      assert_int_equal(report.exit_status, -1);
      break;
    case DIE_ABORT:
      assert_int_equal(report.term_signal, SIGABRT);
      break;
    case DIE_EXIT3:
      assert_int_equal(report.term_signal, 0);
      assert_int_equal(report.exit_status, 3);
      break;
    case DIE_EXIT0:
      assert_int_equal(report.term_signal, 0);
      assert_int_equal(report.exit_status, 0);
      break;
  }
  if (!(report.chunk_start <= die_at && die_at < report.chunk_stop))
    fail_msg("%s: reported chunk [%lld, %lld) does not hold %lld", what,
             (long long)report.chunk_start, (long long)report.chunk_stop,
             (long long)die_at);
  assert_int_equal(report.retried, 0);
  assert_int_equal(sh->died, 1);
  assert_null(report.payload);
  shared_free(sh);
}

static void test_worker_dies(void **state) {
  (void)state;
  check_death(DIE_SIGKILL, PF_SCHEDULE_DYNAMIC, 3, 0);
  check_death(DIE_SIGKILL, PF_SCHEDULE_STATIC, 2, 0);
  check_death(DIE_SIGKILL, PF_SCHEDULE_GUIDED, 4, 16);
  check_death(DIE_SIGKILL, PF_SCHEDULE_STATIC, 3, 100);
  check_death(DIE_SIGKILL, PF_SCHEDULE_DYNAMIC, 1, 0);
  check_death(DIE_SIGSEGV, PF_SCHEDULE_DYNAMIC, 2, 500);
  check_death(DIE_ABORT, PF_SCHEDULE_GUIDED, 2, 0);
  check_death(DIE_EXIT3, PF_SCHEDULE_DYNAMIC, 3, 7);
  check_death(DIE_EXIT3, PF_SCHEDULE_STATIC, 1, 0);
  check_death(DIE_EXIT0, PF_SCHEDULE_GUIDED, 2, 0);
}

static void test_worker_fail_payload(void **state) {
  (void)state;
  for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++) {
    int64_t size = 10000, fail_at = 7777;
    shared *sh = shared_new(size, 3);
    sh->fail_at = fail_at;
    pf_team_options o = options(3, (pf_schedule)s, 100);
    pf_team_report report;
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    int rc = pf_team_run(size, &o, NULL, chunk_fn, sh, &report, &err);
    check_clean(before, "fail");
    assert_int_equal(rc, PF_EKERNEL);
    assert_int_equal(err.code, PF_EKERNEL);
    assert_int_equal(report.failed_index, fail_at);
    assert_int_equal(report.worker, sh->fail_worker);
    assert_int_equal(report.pid, sh->fail_pid);
    assert_non_null(report.payload);
    assert_int_equal(report.payload_size, strlen("failed at 7777") + 1);
    assert_memory_equal(report.payload, "failed at 7777", report.payload_size);
    free(report.payload);
    shared_free(sh);
  }
  /* The payload is cut to error_capacity. */
  shared *sh = shared_new(100, 2);
  sh->fail_at = 42;
  pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 10);
  o.error_capacity = 4;
  pf_team_report report;
  snapshot before = take_snapshot();
  assert_int_equal(pf_team_run(100, &o, NULL, chunk_fn, sh, &report, NULL),
                   PF_EKERNEL);
  check_clean(before, "small capacity");
  assert_int_equal(report.payload_size, 4);
  assert_memory_equal(report.payload, "fail", 4);
  assert_int_equal(report.failed_index, 42);
  free(report.payload);
  shared_free(sh);
}

/* Every worker fails at the start of every chunk it gets: exactly one
 * failure is recorded, its fields belong together, and it is element 0's. */
static int fail_first_fn(void *ctx, pf_team_worker *w, int64_t start,
                         int64_t stop) {
  (void)ctx, (void)stop;
  char payload[32];
  int n = snprintf(payload, sizeof payload, "%lld/%d", (long long)start,
                   pf_team_worker_id(w));
  return pf_team_worker_fail(w, start, payload, (size_t)n + 1);
}

static void test_first_failure_wins(void **state) {
  (void)state;
  for (int round = 0; round < 5; round++) {
    pf_team_options o = options(4, PF_SCHEDULE_DYNAMIC, 10);
    pf_team_report report;
    snapshot before = take_snapshot();
    assert_int_equal(
        pf_team_run(1000, &o, NULL, fail_first_fn, NULL, &report, NULL),
        PF_EKERNEL);
    check_clean(before, "all fail");
    char want[32];
    snprintf(want, sizeof want, "%lld/%d", (long long)report.failed_index,
             report.worker);
    assert_non_null(report.payload);
    assert_string_equal((const char *)report.payload, want);
    /* The lowest index wins, whoever failed first in time. */
    assert_int_equal(report.failed_index, 0);
    free(report.payload);
  }
}

/* One worker fails once the others are running; they poll
 * pf_team_worker_stopping and must see it (the failing one waits for that
 * before it returns, so the caller does not kill them first). */
static int stop_fn(void *ctx, pf_team_worker *w, int64_t start, int64_t stop) {
  shared *sh = ctx;
  (void)stop;
  double deadline = pf_test_now() + 5.0;
  if (start == 0) {
    while (atomic_load(&sh->died) < 2 && pf_test_now() < deadline) pf_test_sleep_us(1000);
    if (pf_team_worker_stopping(w)) atomic_fetch_add(&sh->bad_worker, 1);
    int rc = pf_team_worker_fail(w, 0, NULL, 0);
    while (atomic_load(&sh->saw_stopping) < 2 && pf_test_now() < deadline)
      pf_test_sleep_us(1000);
    return rc;
  }
  atomic_fetch_add(&sh->died, 1); /* here: "started waiting" */
  while (!pf_team_worker_stopping(w)) {
    if (pf_test_now() > deadline) return 0;
    pf_test_sleep_us(1000);
  }
  atomic_fetch_add(&sh->saw_stopping, 1);
  return 0;
}

static void test_stopping(void **state) {
  (void)state;
  shared *sh = shared_new(3, 3);
  pf_team_options o = options(3, PF_SCHEDULE_STATIC, 1);
  pf_team_report report;
  snapshot before = take_snapshot();
  double t0 = pf_test_now();
  assert_int_equal(pf_team_run(3, &o, NULL, stop_fn, sh, &report, NULL),
                   PF_EKERNEL);
  double took = pf_test_now() - t0;
  check_clean(before, "stopping");
  assert_int_equal(report.failed_index, 0);
  assert_null(report.payload); /* empty payload */
  assert_true(took < 4.5); /* before the chunk functions' 5 s deadline */
  assert_int_equal(sh->saw_stopping, 2);
  assert_int_equal(sh->bad_worker, 0); /* not stopping before the failure */
  shared_free(sh);
}

static void test_timeout(void **state) {
  (void)state;
  for (int workers = 1; workers <= 3; workers += 2) {
    shared *sh = shared_new(100, workers);
    sh->sleep_us = 10 * 1000 * 1000; /* every chunk sleeps 10 s */
    pf_team_options o = options(workers, PF_SCHEDULE_DYNAMIC, 10);
    o.timeout = 0.3;
    pf_team_report report;
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    double t0 = pf_test_now();
    int rc = pf_team_run(100, &o, NULL, chunk_fn, sh, &report, &err);
    double took = pf_test_now() - t0;
    check_clean(before, "timeout");
    assert_int_equal(rc, PF_ETIMEDOUT);
    assert_int_equal(err.code, PF_ETIMEDOUT);
    /* Never early; late by seconds on a loaded host, but well before the
     * chunk's 10 s sleep ends. */
    if (took < 0.3 || took > 5.0)
      fail_msg("timeout 0.3 s returned after %.3f s", took);
    shared_free(sh);
  }
}

/* retries = 2 and a worker that dies once: recomputed, all correct. */
static void test_retry_recovers(void **state) {
  (void)state;
  static const int hows[] = {DIE_SIGKILL, DIE_EXIT3};
  for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++)
    for (size_t h = 0; h < PF_ARRAY_LEN(hows); h++) {
      int64_t size = 5000;
      shared *sh = shared_new(size, 3);
      sh->die_at = 2500;
      sh->die_how = hows[h];
      sh->die_once = 1;
      pf_team_options o = options(3, (pf_schedule)s, 64);
      o.retries = 2;
      pf_team_report report;
      pf_error err;
      memset(&err, 0, sizeof err);
      snapshot before = take_snapshot();
      int rc = pf_team_run(size, &o, NULL, chunk_fn, sh, &report, &err);
      check_clean(before, "retry");
      if (rc != 0)
        fail_msg("%s: rc %d (%s)", pf_schedule_name((pf_schedule)s), rc,
                 err.message);
      assert_int_equal(report.retried, 1);
      assert_int_equal(sh->died, 2); /* died once, passed the second time */
      check_elements(sh, 1, "retry");
      /* Only the part of the lost chunk before the death may have been
       * written twice. */
      for (int64_t i = 0; i < size; i++)
        if (sh->counts[i] != 1 && i >= 2500)
          fail_msg("element %lld outside the lost chunk written %d times",
                   (long long)i, (int)sh->counts[i]);
      shared_free(sh);
    }
}

static void test_retries_exhausted(void **state) {
  (void)state;
  for (int retries = 0; retries <= 2; retries++) {
    shared *sh = shared_new(1000, 2);
    sh->die_at = 500;
    sh->die_how = DIE_SIGKILL;
    pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 50);
    o.retries = retries;
    pf_team_report report;
    snapshot before = take_snapshot();
    int rc = pf_team_run(1000, &o, NULL, chunk_fn, sh, &report, NULL);
    check_clean(before, "retries exhausted");
    assert_int_equal(rc, PF_EWORKER);
    assert_int_equal(report.retried, retries);
    assert_int_equal(sh->died, retries + 1);
    assert_int_equal(report.term_signal, SIGKILL);
    assert_int_equal(report.chunk_start, 500);
    assert_int_equal(report.chunk_stop, 550);
    shared_free(sh);
  }
}

/* ------------------------------------------- the lowest failure wins */

/* Element `fail_at` fails after `sleep_us`; element `die_at` (used here as a
 * second failing index) fails at once. Elements record themselves as in
 * chunk_fn; every element checks the limit first, as callable.c does. */
static int two_failures_fn(void *ctx, pf_team_worker *w, int64_t start,
                           int64_t stop) {
  shared *sh = ctx;
  for (int64_t i = start; i < stop; i++) {
    if (i >= pf_team_worker_limit(w)) return 0;
    if (i == sh->fail_at) {
      pf_test_sleep_us(sh->sleep_us);
      atomic_store(&sh->fail_pid, (int)getpid());
      atomic_store(&sh->fail_worker, pf_team_worker_id(w));
      return pf_team_worker_fail(w, i, "low", 4);
    }
    if (i == sh->die_at) return pf_team_worker_fail(w, i, "high", 5);
    atomic_fetch_add(&sh->counts[i], 1);
    sh->values[i] = value_of(i);
  }
  return 0;
}

static void test_lowest_failure_wins(void **state) {
  (void)state;
  static const int64_t chunks[] = {1, 7, 0};
  for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++)
    for (size_t c = 0; c < PF_ARRAY_LEN(chunks); c++) {
      int64_t size = 2000;
      shared *sh = shared_new(size, 4);
      sh->fail_at = 3;       /* slow: fails 0.2 s in */
      sh->sleep_us = 200 * 1000;
      sh->die_at = 1500;     /* fast: fails at once */
      pf_team_options o = options(4, (pf_schedule)s, chunks[c]);
      pf_team_report report;
      pf_error err;
      memset(&err, 0, sizeof err);
      char what[64];
      snprintf(what, sizeof what, "%s chunk %lld",
               pf_schedule_name((pf_schedule)s), (long long)chunks[c]);
      snapshot before = take_snapshot();
      int rc = pf_team_run(size, &o, NULL, two_failures_fn, sh, &report, &err);
      check_clean(before, what);
      if (rc != PF_EKERNEL || report.failed_index != 3)
        fail_msg("%s: rc %d, failed index %lld (%s)", what, rc,
                 (long long)report.failed_index, err.message);
      assert_non_null(report.payload);
      assert_string_equal((const char *)report.payload, "low");
      assert_int_equal(report.pid, sh->fail_pid);
      assert_int_equal(report.worker, sh->fail_worker);
      /* Everything before the failing element was computed. */
      for (int64_t i = 0; i < 3; i++)
        if (sh->counts[i] != 1 || sh->values[i] != value_of(i))
          fail_msg("%s: element %lld before the failure not computed", what,
                   (long long)i);
      free(report.payload);
      shared_free(sh);
    }
}

/* After a failure no chunk is claimed: a chunk function entered once the
 * failure is recorded must have been claimed before the limit fell, and each
 * of the other workers holds at most one such chunk. Counting those entries
 * (not elements written or seconds taken, which depend on how the host
 * schedules the workers) makes the check independent of timing; the 1 ms per
 * chunk keeps chunks in flight when the failure lands. */
static int slow_fail_fn(void *ctx, pf_team_worker *w, int64_t start,
                        int64_t stop) {
  shared *sh = ctx;
  if (atomic_load(&sh->failure_recorded)) atomic_fetch_add(&sh->late_chunks, 1);
  pf_test_sleep_us(1000);
  for (int64_t i = start; i < stop; i++) {
    if (i >= pf_team_worker_limit(w)) return 0;
    if (i == sh->fail_at) {
      int rc = pf_team_worker_fail(w, i, NULL, 0);
      atomic_store(&sh->failure_recorded, 1);
      return rc;
    }
    atomic_fetch_add(&sh->counts[i], 1);
  }
  return 0;
}

static void test_no_claims_past_failure(void **state) {
  (void)state;
  for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++) {
    int64_t size = 100000;
    int workers = 3;
    shared *sh = shared_new(size, workers);
    sh->fail_at = 25;
    pf_team_options o = options(workers, (pf_schedule)s, 10);
    pf_team_report report;
    snapshot before = take_snapshot();
    int rc = pf_team_run(size, &o, NULL, slow_fail_fn, sh, &report, NULL);
    check_clean(before, "no claims past failure");
    assert_int_equal(rc, PF_EKERNEL);
    assert_int_equal(report.failed_index, 25);
    for (int64_t i = 0; i < 25; i++) assert_int_equal(sh->counts[i], 1);
    if (atomic_load(&sh->late_chunks) > workers - 1)
      fail_msg("%s: %d chunks entered after the failure was recorded",
               pf_schedule_name((pf_schedule)s), atomic_load(&sh->late_chunks));
    shared_free(sh);
  }
}

/* A chunk function returning nonzero without pf_team_worker_fail fails the
 * whole job (index -1, which is lower than any element's). */
static int bare_error_fn(void *ctx, pf_team_worker *w, int64_t start,
                         int64_t stop) {
  if (start <= 500 && 500 < stop) return PF_EINVAL;
  return chunk_fn(ctx, w, start, stop);
}

static void test_bare_error(void **state) {
  (void)state;
  shared *sh = shared_new(1000, 2);
  sh->fail_at = 700; /* a recorded failure at a higher index loses */
  pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 10);
  pf_team_report report;
  snapshot before = take_snapshot();
  assert_int_equal(pf_team_run(1000, &o, NULL, bare_error_fn, sh, &report,
                               NULL), PF_EKERNEL);
  check_clean(before, "bare error");
  assert_int_equal(report.failed_index, -1);
  assert_null(report.payload);
  shared_free(sh);
}

/* ----------------------------------------------- forking on demand */

typedef struct fork_count {
  int forks;
  long prepare_sleep_us;
} fork_count;

static void count_fork(void *c, pf_team_phase phase) {
  fork_count *f = c;
  if (phase != PF_TEAM_BEFORE) return;
  f->forks++;
  if (f->prepare_sleep_us > 0) pf_test_sleep_us(f->prepare_sleep_us);
}

static void test_fork_on_demand(void **state) {
  (void)state;
  /* Never more workers than chunks (static: parts). */
  struct {
    pf_schedule schedule;
    int64_t size, chunk;
    int workers, most;
  } cases[] = {
      {PF_SCHEDULE_STATIC, 3, 0, 8, 3},
      {PF_SCHEDULE_STATIC, 1000, 400, 8, 3},
      {PF_SCHEDULE_DYNAMIC, 1000, 100, 50, 10},
      {PF_SCHEDULE_GUIDED, 5, 0, 50, 5},
  };
  for (size_t i = 0; i < PF_ARRAY_LEN(cases); i++) {
    shared *sh = shared_new(cases[i].size, cases[i].workers);
    fork_count f = {0};
    pf_team_hooks hooks = {.ctx = &f, .around_fork = count_fork};
    pf_team_options o =
        options(cases[i].workers, cases[i].schedule, cases[i].chunk);
    snapshot before = take_snapshot();
    assert_int_equal(pf_team_run(cases[i].size, &o, &hooks, chunk_fn, sh,
                                 NULL, NULL), 0);
    check_clean(before, "fork cap");
    check_elements(sh, 0, "fork cap");
    if (f.forks > cases[i].most ||
        (cases[i].schedule == PF_SCHEDULE_STATIC && f.forks != cases[i].most))
      fail_msg("case %zu: %d forks, want %s %d", i, f.forks,
               cases[i].schedule == PF_SCHEDULE_STATIC ? "" : "at most",
               cases[i].most);
    shared_free(sh);
  }
  /* A tiny dynamic job is done by the first worker while the caller is
   * slow to fork the next (50 ms per fork): far fewer than 64 forks. */
  shared *sh = shared_new(200, 64);
  fork_count f = {.prepare_sleep_us = 50 * 1000};
  pf_team_hooks hooks = {.ctx = &f, .around_fork = count_fork};
  pf_team_options o = options(64, PF_SCHEDULE_DYNAMIC, 1);
  snapshot before = take_snapshot();
  assert_int_equal(pf_team_run(200, &o, &hooks, chunk_fn, sh, NULL, NULL), 0);
  check_clean(before, "on demand");
  check_elements(sh, 0, "on demand");
  if (f.forks > 10) fail_msg("a tiny job forked %d workers", f.forks);
  shared_free(sh);
}

/* ------------------------------------------- deaths before any claim */

/* A worker that exits on its own before any work. */
static void exit7(void *c, pf_team_phase phase) {
  (void)c;
  if (phase == PF_TEAM_BEFORE) _exit(7);
}

static void test_idle_deaths_bounded(void **state) {
  (void)state;
  for (int retries = 0; retries <= 3; retries += 3) {
    shared *sh = shared_new(1000, 3);
    fork_count f = {0};
    pf_team_hooks hooks = {
        .ctx = &f, .around_fork = count_fork, .around_work = exit7};
    pf_team_options o = options(3, PF_SCHEDULE_DYNAMIC, 10);
    o.retries = retries;
    pf_team_report report;
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    double t0 = pf_test_now();
    int rc = pf_team_run(1000, &o, &hooks, chunk_fn, sh, &report, &err);
    double took = pf_test_now() - t0;
    check_clean(before, "idle deaths");
    assert_int_equal(rc, PF_EWORKER);
    assert_int_equal(report.exit_status, 7);
    assert_int_equal(report.chunk_start, -1);
    if (strstr(err.message, "before claiming any work") == NULL)
      fail_msg("message: %s", err.message);
    /* The budget: workers * (retries + 1) such deaths are replaced. */
    if (f.forks > 3 * (retries + 1) + 3 || took > 5.0)
      fail_msg("retries %d: %d forks in %.2f s", retries, f.forks, took);
    shared_free(sh);
  }
}

/* ------------------------------------------------------ SIGCHLD ignored */

static void test_sigchld_ignored(void **state) {
  (void)state;
  for (int how = 0; how < 2; how++) {
    struct sigaction ign = {0};
    sigemptyset(&ign.sa_mask);
    ign.sa_handler = how == 0 ? SIG_IGN : SIG_DFL;
    ign.sa_flags = how == 0 ? 0 : SA_NOCLDWAIT;
    struct sigaction old;
    assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
    shared *sh = shared_new(5000, 3);
    sh->die_at = 2000; /* a death is still seen, and retried */
    sh->die_how = DIE_EXIT3;
    sh->die_once = 1;
    pf_team_options o = options(3, PF_SCHEDULE_DYNAMIC, 50);
    o.retries = 1;
    pf_team_report report;
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    int rc = pf_team_run(5000, &o, NULL, chunk_fn, sh, &report, &err);
    struct sigaction after;
    sigaction(SIGCHLD, NULL, &after);
    sigaction(SIGCHLD, &old, NULL);
    check_clean(before, "SIGCHLD ignored");
    if (rc != 0) fail_msg("SIGCHLD case %d: rc %d (%s)", how, rc, err.message);
    assert_int_equal(report.retried, 1);
    check_elements(sh, 1, "SIGCHLD ignored");
    /* The application's disposition is back. */
    assert_true(after.sa_handler == ign.sa_handler);
    assert_int_equal(after.sa_flags & SA_NOCLDWAIT, ign.sa_flags & SA_NOCLDWAIT);
    shared_free(sh);
  }
}

/* -------------------------------------------- pidfds closed by a hook */

typedef struct closer {
  int calls;
  int reopen;      /* put /dev/null where each pidfd was */
  int fds[64];
  int nfds;
} closer;

static int is_pidfd(int fd) {
  char path[64], target[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = '\0';
  return strstr(target, "pidfd") != NULL;
}

static int close_pidfds(void *c, int64_t done, int64_t total) {
  (void)done, (void)total;
  closer *cl = c;
  if (cl->calls++ != 0) return 0;
  for (int fd = 3; fd < 1024; fd++) {
    if (!is_pidfd(fd)) continue;
    close(fd);
    if (cl->reopen && cl->nfds < 64) {
      int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (nul >= 0 && nul != fd) {
        dup2(nul, fd);
        close(nul);
      }
      cl->fds[cl->nfds++] = fd;
    }
  }
  return 0;
}

static void test_pidfds_closed(void **state) {
  (void)state;
  for (int reopen = 0; reopen < 2; reopen++) {
    shared *sh = shared_new(3, 3);
    sh->sleep_us = 3 * 1000 * 1000; /* workers outlive the first wait */
    closer cl = {.reopen = reopen};
    pf_team_hooks hooks = {.ctx = &cl, .between_waits = close_pidfds};
    pf_team_options o = options(3, PF_SCHEDULE_STATIC, 1);
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    double t0 = pf_test_now();
    int rc = pf_team_run(3, &o, &hooks, chunk_fn, sh, NULL, &err);
    double took = pf_test_now() - t0;
    /* The files the hook put there are the caller's: still open. */
    for (int i = 0; i < cl.nfds; i++) {
      assert_true(fcntl(cl.fds[i], F_GETFD) >= 0);
      close(cl.fds[i]);
    }
    check_clean(before, "pidfds closed");
    if (rc != PF_ESYS || err.sys_errno != EBADF || took > 2.0)
      fail_msg("reopen %d: rc %d errno %d after %.2f s (%s)", reopen, rc,
               err.sys_errno, took, err.message);
    assert_non_null(strstr(err.message, "closed"));
    shared_free(sh);
  }
}

/* ------------------------------------------------------- system failures */

/* No descriptor left for a worker's pidfd (RLIMIT_NOFILE at the lowest free
 * number): PF_ESYS with EMFILE before any work, the forked worker killed
 * and reaped, nothing left. The limit is restored before any assert. */
static void test_no_pidfd(void **state) {
  (void)state;
  shared *sh = shared_new(100, 2);
  pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 0);
  pf_error err;
  memset(&err, 0, sizeof err);
  snapshot before = take_snapshot();
  struct rlimit old, none;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  int lowest = dup(0);
  assert_true(lowest >= 0);
  close(lowest);
  none = old;
  none.rlim_cur = (rlim_t)lowest;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
  int rc = pf_team_run(100, &o, NULL, chunk_fn, sh, NULL, &err);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  check_clean(before, "no pidfd");
  assert_int_equal(rc, PF_ESYS);
  assert_int_equal(err.sys_errno, EMFILE);
  assert_non_null(strstr(err.message, "pidfd"));
  shared_free(sh);
}

/* ------------------------------------------------------------------ hooks */

typedef struct hook_ctx {
  shared *sh;
  int prepare, parent, block, unblock, depth, bad_nesting;
  int forking;   /* inside around_fork BEFORE .. AFTER */
  int waits;
  int64_t last_done;
  int non_monotone;
  int cancel_after; /* wait calls; 0 never */
  int cancel_code;
} hook_ctx;

static void h_fork(void *c, pf_team_phase phase) {
  hook_ctx *h = c;
  /* Strictly BEFORE, AFTER, ...; never inside a wait's pair. */
  if (h->depth != 0 || h->forking != (phase == PF_TEAM_AFTER))
    h->bad_nesting++;
  h->forking = phase == PF_TEAM_BEFORE;
  if (phase == PF_TEAM_BEFORE) h->prepare++;
  else h->parent++;
}

static void h_work(void *c, pf_team_phase phase) {
  static int began; /* per worker process: each is a fresh copy */
  shared *sh = ((hook_ctx *)c)->sh;
  if (phase == PF_TEAM_BEFORE) {
    began = 1;
    atomic_fetch_add(&sh->child_hooks, 1);
  } else {
    if (!began) atomic_fetch_add(&sh->bad_work_order, 1);
    atomic_fetch_add(&sh->child_exit_hooks, 1);
  }
}

static void h_block(void *c, pf_team_phase phase) {
  hook_ctx *h = c;
  if (phase == PF_TEAM_BEFORE) {
    h->block++;
    if (h->depth++ != 0 || h->forking) h->bad_nesting++;
  } else {
    h->unblock++;
    if (--h->depth != 0) h->bad_nesting++;
  }
}

static int h_wait(void *c, int64_t done, int64_t total) {
  hook_ctx *h = c;
  h->waits++;
  if (h->depth != 0 || h->forking) h->bad_nesting++; /* only between waits */
  if (done < h->last_done || done < 0 || done > total) h->non_monotone++;
  h->last_done = done;
  if (h->cancel_after > 0 && h->waits >= h->cancel_after)
    return h->cancel_code;
  return 0;
}

static pf_team_hooks all_hooks(hook_ctx *h) {
  pf_team_hooks hooks = {.ctx = h,
                         .around_fork = h_fork,
                         .around_work = h_work,
                         .around_wait = h_block,
                         .between_waits = h_wait};
  return hooks;
}

static void test_hooks(void **state) {
  (void)state;
  int64_t size = 3000;
  shared *sh = shared_new(size, 3);
  sh->sleep_us = 2000; /* some waiting for the caller */
  hook_ctx h = {.sh = sh};
  pf_team_hooks hooks = all_hooks(&h);
  pf_team_options o = options(3, PF_SCHEDULE_DYNAMIC, 100);
  pf_team_report report;
  snapshot before = take_snapshot();
  assert_int_equal(pf_team_run(size, &o, &hooks, chunk_fn, sh, &report, NULL),
                   0);
  check_clean(before, "hooks");
  check_elements(sh, 0, "hooks");
  assert_int_equal(h.prepare, 3);
  assert_int_equal(h.parent, 3);
  assert_int_equal(sh->child_hooks, 3);
  assert_int_equal(sh->child_exit_hooks, 3);
  assert_int_equal(sh->bad_work_order, 0);
  assert_true(h.block >= 1);
  assert_int_equal(h.block, h.unblock);
  assert_int_equal(h.bad_nesting, 0);
  assert_true(h.waits >= 1);
  assert_int_equal(h.non_monotone, 0);
  shared_free(sh);

  /* With a retry: one more fork, and its hooks. */
  sh = shared_new(size, 2);
  sh->die_at = 1000;
  sh->die_how = DIE_SIGKILL;
  sh->die_once = 1;
  h = (hook_ctx){.sh = sh};
  hooks = all_hooks(&h);
  o = options(2, PF_SCHEDULE_DYNAMIC, 100);
  o.retries = 1;
  before = take_snapshot();
  assert_int_equal(pf_team_run(size, &o, &hooks, chunk_fn, sh, &report, NULL),
                   0);
  check_clean(before, "hooks with retry");
  assert_int_equal(report.retried, 1);
  assert_int_equal(h.prepare, 3);
  assert_int_equal(h.parent, 3);
  assert_int_equal(sh->child_hooks, 3);
  assert_int_equal(sh->child_exit_hooks, 2); /* the dead one never exited */
  assert_int_equal(sh->bad_work_order, 0);
  assert_int_equal(h.block, h.unblock);
  assert_int_equal(h.bad_nesting, 0);
  shared_free(sh);
}

static void test_wait_cancels(void **state) {
  (void)state;
  static const int codes[] = {PF_ECANCELED, 5};
  for (size_t c = 0; c < PF_ARRAY_LEN(codes); c++) {
    shared *sh = shared_new(1000, 2);
    sh->sleep_us = 50000; /* 20 chunks x 50 ms: 0.5 s with 2 workers */
    hook_ctx h = {.sh = sh, .cancel_after = 2, .cancel_code = codes[c]};
    pf_team_hooks hooks = {.ctx = &h, .between_waits = h_wait};
    pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 50);
    pf_team_report report;
    pf_error err;
    memset(&err, 0, sizeof err);
    snapshot before = take_snapshot();
    int rc = pf_team_run(1000, &o, &hooks, chunk_fn, sh, &report, &err);
    check_clean(before, "wait cancels");
    assert_int_equal(rc, codes[c]);
    assert_int_equal(h.waits, 2);
    /* Canceled before the work was done (counted, not timed). */
    int64_t written = 0;
    for (int64_t i = 0; i < 1000; i++) written += sh->counts[i];
    assert_true(written < 1000);
    shared_free(sh);
  }
}

/* Workers ignore SIGINT: Ctrl-C is the caller's to handle. */
static int sigint_fn(void *ctx, pf_team_worker *w, int64_t start,
                     int64_t stop) {
  shared *sh = ctx;
  if (start == 0) {
    kill(getpid(), SIGINT);
    atomic_fetch_add(&sh->sigint_sent, 1);
  }
  return chunk_fn(ctx, w, start, stop);
}

static void test_workers_ignore_sigint(void **state) {
  (void)state;
  shared *sh = shared_new(100, 2);
  pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 10);
  snapshot before = take_snapshot();
  assert_int_equal(pf_team_run(100, &o, NULL, sigint_fn, sh, NULL, NULL), 0);
  check_clean(before, "sigint");
  assert_int_equal(sh->sigint_sent, 1);
  check_elements(sh, 0, "sigint");
  shared_free(sh);
}

/* If the caller is killed, its workers die with it. */
typedef struct orphan_shared {
  _Atomic int started;
  _Atomic int pids[4];
} orphan_shared;

static int orphan_fn(void *ctx, pf_team_worker *w, int64_t start,
                     int64_t stop) {
  orphan_shared *os = ctx;
  (void)start, (void)stop;
  atomic_store(&os->pids[pf_team_worker_id(w)], (int)getpid());
  atomic_fetch_add(&os->started, 1);
  for (int i = 0; i < 3000; i++) pf_test_sleep_us(10000); /* 30 s */
  return 0;
}

static int process_gone(int pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  /* A zombie waiting for a reaper counts as gone. */
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *paren = strrchr(buf, ')');
  return paren != NULL && (paren[2] == 'Z' || paren[2] == 'X');
}

static void test_workers_die_with_caller(void **state) {
  (void)state;
  orphan_shared *os = pf_shared_alloc(sizeof *os);
  assert_non_null(os);
  pid_t caller = fork();
  assert_true(caller >= 0);
  if (caller == 0) {
    pf_team_options o = options(2, PF_SCHEDULE_STATIC, 0);
    pf_team_run(2, &o, NULL, orphan_fn, os, NULL, NULL);
    _exit(0);
  }
  double deadline = pf_test_now() + 10.0;
  while (atomic_load(&os->started) < 2 && pf_test_now() < deadline) pf_test_sleep_us(1000);
  assert_int_equal(atomic_load(&os->started), 2);
  kill(caller, SIGKILL);
  waitpid(caller, NULL, 0);
  for (int w = 0; w < 2; w++) {
    int pid = atomic_load(&os->pids[w]);
    assert_true(pid > 0);
    deadline = pf_test_now() + 2.0;
    while (!process_gone(pid) && pf_test_now() < deadline) pf_test_sleep_us(2000);
    if (!process_gone(pid)) {
      kill(pid, SIGKILL);
      fail_msg("worker %d (pid %d) outlived its caller", w, pid);
    }
  }
  pf_shared_free(os, sizeof *os);
}

/* pf_shared_alloc memory is seen by forked children both ways. */
static void test_shared_memory_fork(void **state) {
  (void)state;
  int64_t *mem = pf_shared_alloc(4096);
  assert_non_null(mem);
  mem[0] = 17;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    mem[1] = mem[0] + 1;
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mem[1], 18);
  pf_shared_free(mem, 4096);
}

/* A caller that reaps children behind the team's back (a SIGCHLD handler
 * calling waitpid(-1), here the between_waits hook): the team finds its
 * worker gone (ECHILD), reports PF_ESYS and leaves no other worker. */
typedef struct reaper {
  int reaped;
} reaper;

static int reap_any(void *c, int64_t done, int64_t total) {
  (void)done, (void)total;
  reaper *r = c;
  if (r->reaped == 0 && waitpid(-1, NULL, 0) > 0) r->reaped = 1;
  return 0;
}

static void test_workers_reaped_behind_back(void **state) {
  (void)state;
  shared *sh = shared_new(4, 2);
  sh->sleep_us = 20 * 1000;
  reaper r = {0};
  pf_team_hooks hooks = {.ctx = &r, .between_waits = reap_any};
  pf_team_options o = options(2, PF_SCHEDULE_DYNAMIC, 1);
  pf_error err;
  memset(&err, 0, sizeof err);
  snapshot before = take_snapshot();
  int rc = pf_team_run(4, &o, &hooks, chunk_fn, sh, NULL, &err);
  check_clean(before, "reaped behind its back");
  assert_int_equal(r.reaped, 1);
  if (rc != PF_ESYS || err.sys_errno != ECHILD)
    fail_msg("rc %s, errno %d (%s)", pf_err_name(rc), err.sys_errno,
             err.message);
  shared_free(sh);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_coverage),
      cmocka_unit_test(test_empty_and_defaults),
      cmocka_unit_test(test_invalid_options),
      cmocka_unit_test(test_worker_dies),
      cmocka_unit_test(test_worker_fail_payload),
      cmocka_unit_test(test_first_failure_wins),
      cmocka_unit_test(test_lowest_failure_wins),
      cmocka_unit_test(test_no_claims_past_failure),
      cmocka_unit_test(test_bare_error),
      cmocka_unit_test(test_fork_on_demand),
      cmocka_unit_test(test_idle_deaths_bounded),
      cmocka_unit_test(test_sigchld_ignored),
      cmocka_unit_test(test_pidfds_closed),
      cmocka_unit_test(test_stopping),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_retry_recovers),
      cmocka_unit_test(test_retries_exhausted),
      cmocka_unit_test(test_hooks),
      cmocka_unit_test(test_wait_cancels),
      cmocka_unit_test(test_workers_ignore_sigint),
      cmocka_unit_test(test_workers_die_with_caller),
      cmocka_unit_test(test_shared_memory_fork),
      cmocka_unit_test(test_no_pidfd),
      cmocka_unit_test(test_workers_reaped_behind_back),
  };
  return PF_RUN_TESTS(tests, setup, NULL);
}
