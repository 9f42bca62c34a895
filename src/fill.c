/*
 * fill.c -- pf_fill: a block kernel over every element of an array, on the
 * thread pool.
 *
 * DESIGN
 * A fill is a job on the heap: the schedule, a copy of the output's
 * description, the kernel, the lowest failure so far (code, element index,
 * message) with its `limit` (the index at and past which nothing need be
 * computed), a count of elements done and a count of tasks still queued or
 * running (with a mutex and a condition variable to wait on it). It queues
 * one task per worker on the pool; each task claims chunks and calls the
 * kernel on blocks of each chunk, clipped to the limit. The caller sleeps on
 * the condition variable, waking every progress interval to report progress
 * (and to let the progress hook cancel) and at the timeout.
 *
 * Lowest failure wins: a sequential loop raises the error of the first
 * failing element in C order, so a failure at index i does not stop the
 * others outright; it lowers the limit to i. Chunks are claimed in rising
 * order (per worker, and globally for dynamic and guided schedules), so a
 * task whose next chunk starts at or past the limit has nothing left that
 * matters and ends; everything below i is still computed, and a lower
 * failure found meanwhile replaces the first. A cancel, a timeout or a
 * failure of the whole fill (index -1) sets the limit to 0: everyone stops
 * at their next block.
 *
 * Slices: a task runs until its fill is done -- unless other tasks wait in
 * the pool's queue (another fill's), in which case it hands its thread over
 * after SLICE_SECONDS by returning PF__TASK_AGAIN and is queued again at the
 * tail (pool.c DESIGN, Fairness). Alone, a fill never re-queues; sharing,
 * fills take turns of a few milliseconds, so a small fill behind a large one
 * takes a few slices, not the large one's whole time. A task keeps its place
 * in a chunk across turns.
 *
 * Early return (release): the job is on the heap so that it can outlive the
 * call. On a cancel or a timeout the caller withdraws its queued tasks from
 * the pool; if kernel calls are still running (a slow kernel, a Python
 * function blocking for seconds) and the caller gave a `release` hook -- so
 * the kernel's context no longer lives on its stack -- the caller marks the
 * job detached and returns; the last task to end frees the job and calls
 * release. Without a hook the caller waits for the running calls, which see
 * limit 0 at their next block. The threads those calls hold are reported to
 * the pool as stranded (pf__pool_strand) until each call ends, so the pool
 * starts replacements and the next fill does not wait behind them.
 *
 * A fill that could return early -- release set, and a progress hook or a
 * timeout -- runs on a pool thread even with one worker or one chunk, so
 * that its caller can (a one-worker fill on the calling thread would see the
 * timeout or a cancel only when the kernel call returns).
 *
 * Contiguous outputs are written by the kernel in place, in blocks of at
 * most CONTIG_BLOCK elements. Other layouts go through a per-task scratch
 * block of PF_BLOCK_ELEMENTS elements that is then scattered with the array's
 * strides (only the part below the limit: the rest may not be computed).
 *
 * One worker or one chunk (unless the fill could return early, above), a
 * forked child of the pool's creator, a kernel on a pool thread (nesting), or
 * no pool thread at all: the kernel runs on the calling thread, in the same
 * blocks, with progress and the timeout checked between blocks (and the
 * timeout in pf_fill_worker_limit). A one-worker fill in a process forked
 * from the library's loader uses a pool only if one was made there: it does
 * not start a pool of threads in a worker process for one worker.
 *
 * Windows (options->window): the kernel sees the whole array's flat
 * indices (window.c). Everything else -- the schedule, chunks, the limit,
 * progress, the failure's index -- counts the output's elements; each block
 * is cut where its flat indices jump (a box's rows) and every piece is one
 * kernel call with a handle mapped between the two numberings
 * (pf__fill_worker_mapped). The mapping is monotonic, so the lowest failure
 * and the limit mean the same in both.
 *
 * Lock order: job->lock, then nothing; the pool's lock is never taken while
 * job->lock is held (the caller withdraws first, then locks to account).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "schedule.h"

/* Elements per kernel call for contiguous outputs: large enough that the call
 * costs nothing, small enough that errors, cancels and progress are seen
 * within a chunk. */
#define CONTIG_BLOCK (64 * (int64_t)PF_BLOCK_ELEMENTS)

/* A task's turn while other tasks wait for a thread: long enough that the
 * re-queue (one lock) costs nothing, short enough that a small fill behind a
 * large one waits milliseconds. */
#define SLICE_SECONDS 0.003

typedef struct fill_job fill_job;

typedef struct fill_task {
  fill_job *job;
  pf_fill_worker worker;
  pf__cursor cursor;
  int64_t next, stop; /* what is left of the chunk being worked on */
  char *scratch;      /* PF_BLOCK_ELEMENTS items, if !contiguous; lazily */
} fill_task;

struct fill_job {
  pf__sched sched;
  pf_array out;
  pf_kernel_fn kernel;
  void *ctx;
  void (*release)(void *ctx);
  int windowed;
  pf__window_map window; /* when windowed */
  size_t itemsize;
  int contiguous;
  int workers;
  pf_pool *pool;       /* NULL when serial */
  fill_task *tasks;    /* workers of them */
  _Atomic int64_t limit;
  _Atomic int64_t done;
  pthread_mutex_t lock;
  pthread_cond_t finished; /* CLOCK_MONOTONIC */
  /* guarded by lock */
  int running;  /* tasks queued or running */
  int detached; /* the caller returned: the last task frees the job */
  int failed;   /* code, index and message hold the lowest failure */
  int code;
  int64_t index;
  char message[PF_ERROR_MESSAGE_SIZE];
  /* read-only after start */
  const pf_fill_options *o; /* valid while the caller is in pf_fill */
  int64_t first;            /* o->first: the schedule's 0 is this index */
  double deadline;          /* pf__now() seconds, or 0 */
  double interval;
  double next_report;       /* serial fills: the calling thread only */
};

static void job_fail_v(fill_job *job, int code, int64_t index,
                       const char *fmt, va_list ap) {
  if (code == 0) code = PF_EKERNEL;
  if (index < 0) index = -1;
  pthread_mutex_lock(&job->lock);
  if (!job->failed || index < job->index) {
    job->failed = 1;
    job->code = code;
    job->index = index;
    if (fmt == NULL)
      snprintf(job->message, sizeof job->message, "%s", pf_strerror(code));
    else
      vsnprintf(job->message, sizeof job->message, fmt, ap);
  }
  pthread_mutex_unlock(&job->lock);
  int64_t want = index < 0 ? 0 : index;
  int64_t cur = atomic_load_explicit(&job->limit, memory_order_relaxed);
  while (want < cur && !atomic_compare_exchange_weak_explicit(
                           &job->limit, &cur, want, memory_order_relaxed,
                           memory_order_relaxed)) {
  }
}

static void job_fail(fill_job *job, int code, int64_t index, const char *fmt,
                     ...) {
  va_list ap;
  va_start(ap, fmt);
  job_fail_v(job, code, index, fmt, ap);
  va_end(ap);
}

/* The fill's code once it stopped as a whole, else 0. */
static int job_code(fill_job *job) {
  pthread_mutex_lock(&job->lock);
  int rc = job->failed ? job->code : 0;
  pthread_mutex_unlock(&job->lock);
  return rc;
}

/* ------------------------------------------------------- worker handles */

void pf__fill_worker_detached(pf_fill_worker *worker, int id) {
  *worker = (pf_fill_worker){.id = id};
}

void pf__fill_worker_mapped(pf_fill_worker *worker, pf_fill_worker *outer,
                            int64_t (*to_outer)(const void *, int64_t),
                            int64_t (*from_outer)(const void *, int64_t),
                            const void *map) {
  *worker = (pf_fill_worker){.id = outer->id,
                             .outer = outer,
                             .to_outer = to_outer,
                             .from_outer = from_outer,
                             .map = map};
}

int pf_fill_worker_id(const pf_fill_worker *worker) { return worker->id; }

static void check_deadline(fill_job *job) {
  if (job->deadline > 0 && pf__now() >= job->deadline)
    job_fail(job, PF_ETIMEDOUT, -1, NULL);
}

int64_t pf_fill_worker_limit(const pf_fill_worker *worker) {
  if (worker->outer != NULL) {
    int64_t limit = pf_fill_worker_limit(worker->outer);
    return limit == INT64_MAX ? INT64_MAX
                              : worker->from_outer(worker->map, limit);
  }
  fill_job *job = worker->job;
  if (job == NULL) return INT64_MAX;
  if (worker->serial && job->deadline > 0) check_deadline(job);
  return atomic_load_explicit(&job->limit, memory_order_relaxed);
}

int pf_fill_worker_fail(pf_fill_worker *worker, int code, int64_t index,
                        const char *fmt, ...) {
  if (code == 0) code = PF_EKERNEL;
  worker->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  if (worker->outer != NULL) {
    char message[PF_ERROR_MESSAGE_SIZE];
    if (fmt == NULL)
      snprintf(message, sizeof message, "%s", pf_strerror(code));
    else
      vsnprintf(message, sizeof message, fmt, ap);
    pf_fill_worker_fail(worker->outer, code,
                        index < 0 ? -1 : worker->to_outer(worker->map, index),
                        "%s", message);
  } else if (worker->job != NULL) {
    job_fail_v(worker->job, code, index, fmt, ap);
  }
  va_end(ap);
  return code;
}

static int report(const pf_fill_options *o, int64_t done, int64_t total) {
  return o->progress != NULL ? o->progress(o->progress_ctx, done, total) : 0;
}

int pf__fill_worker_poll(pf_fill_worker *worker, int64_t done) {
  while (worker->outer != NULL) worker = worker->outer;
  fill_job *job = worker->job;
  if (job == NULL) return 0;
  if (worker->serial) {
    if (job->o->progress != NULL) {
      double now = pf__now();
      if (now >= job->next_report) {
        int rc = report(job->o, done, job->sched.size);
        job->next_report = now + job->interval;
        if (rc != 0) job_fail(job, rc, -1, NULL);
      }
    }
    check_deadline(job);
  }
  if (atomic_load_explicit(&job->limit, memory_order_relaxed) != 0) return 0;
  return job_code(job);
}

/* ---------------------------------------------------------------- blocks */

/* Writes `count` elements from `src` (contiguous) to the strided output at
 * flat indices [start, start+count), stepping an N-d index instead of
 * dividing per element. */
static void scatter(const pf_array *out, size_t itemsize, int64_t start,
                    int64_t count, const char *src) {
  int64_t index[PF_MAX_DIMS];
  pf_index_unravel(out->ndim, out->shape, start, index);
  int64_t offset = pf__offset_of(out, start);
  for (int64_t n = 0; n < count; n++, src += itemsize) {
    memcpy((char *)out->data + offset, src, itemsize);
    pf_index_next_strided(out->ndim, out->shape, out->strides, index,
                          &offset);
  }
}

static int64_t window_to_outer(const void *map, int64_t flat) {
  return pf__window_from_whole(map, flat);
}

static int64_t window_from_outer(const void *map, int64_t limit) {
  return pf__window_limit_to_whole(map, limit);
}

/* The kernel on the output's elements [first, first+count) into `dst`: one
 * call, or with a window one per stretch of the whole's flat indices
 * (DESIGN: Windows). */
static int call_kernel(fill_task *t, int64_t first, int64_t count, char *dst) {
  fill_job *job = t->job;
  if (!job->windowed)
    return job->kernel(job->ctx, first, count, dst, &t->worker);
  pf_fill_worker inner;
  pf__fill_worker_mapped(&inner, &t->worker, window_to_outer,
                         window_from_outer, &job->window);
  const int64_t end = first + count;
  for (int64_t k = first; k < end;) {
    int64_t n = pf__window_stretch(&job->window, k);
    if (n > end - k) n = end - k;
    int rc = job->kernel(job->ctx, pf__window_to_whole(&job->window, k), n,
                         dst + (k - first) * (int64_t)job->itemsize, &inner);
    if (rc != 0) return rc;
    k += n;
    if (k < end && k >= atomic_load_explicit(&job->limit, memory_order_relaxed))
      break;
  }
  return 0;
}

/* Runs the kernel on [first, first+count) (count > 0, below the limit when
 * the block began); 1 when this task should stop (it failed). */
static int run_block(fill_task *t, int64_t first, int64_t count) {
  fill_job *job = t->job;
  int rc;
  t->worker.failed = 0;
  if (job->contiguous) {
    char *base = (char *)job->out.data + first * (int64_t)job->itemsize;
    rc = call_kernel(t, first, count, base);
  } else {
    if (t->scratch == NULL) {
      t->scratch = pf__malloc(PF_BLOCK_ELEMENTS * job->itemsize);
      if (t->scratch == NULL) {
        job_fail(job, PF_ENOMEM, -1, "out of memory for scratch");
        return 1;
      }
    }
    rc = call_kernel(t, first, count, t->scratch);
    if (rc != 0 && !t->worker.failed) job_fail(job, rc, -1, NULL);
    /* Elements at and past the limit may be left uncomputed; those below it
     * are written even when this call failed (at an element past them). */
    int64_t limit = atomic_load_explicit(&job->limit, memory_order_relaxed);
    int64_t valid = limit - first < count ? limit - first : count;
    if (valid > 0)
      scatter(&job->out, job->itemsize, first, valid, t->scratch);
  }
  if (rc != 0 && !t->worker.failed) job_fail(job, rc, -1, NULL);
  atomic_fetch_add_explicit(&job->done, count, memory_order_relaxed);
  return rc != 0 || t->worker.failed;
}

/* The next block of task t into [*first, *last); 0 when it has nothing left
 * below the limit. */
static int next_block(fill_task *t, int64_t *first, int64_t *last) {
  fill_job *job = t->job;
  if (t->next >= t->stop) {
    if (!pf__sched_claim(&job->sched, &t->cursor, &t->next, &t->stop))
      return 0;
    t->next += job->first; /* the schedule covers [first, size) from 0 */
    t->stop += job->first;
  }
  int64_t limit = atomic_load_explicit(&job->limit, memory_order_relaxed);
  if (t->next >= limit) return 0; /* chunks come in rising order: all later */
  int64_t step = job->contiguous ? CONTIG_BLOCK : PF_BLOCK_ELEMENTS;
  int64_t end = t->stop - t->next < step ? t->stop : t->next + step;
  if (end > limit) end = limit;
  *first = t->next;
  *last = end;
  return 1;
}

static void job_free(fill_job *job) {
  if (job->release != NULL) job->release(job->ctx);
  for (int w = 0; w < job->workers; w++) free(job->tasks[w].scratch);
  free(job->tasks);
  pthread_cond_destroy(&job->finished);
  pthread_mutex_destroy(&job->lock);
  free(job);
}

static int fill_task_main(void *arg) {
  fill_task *t = arg;
  fill_job *job = t->job;
  double began = pf__now();
  int64_t first, last;
  while (next_block(t, &first, &last)) {
    if (run_block(t, first, last - first)) break;
    t->next = last;
    /* Other fills' tasks wait: take turns (DESIGN: Slices). */
    if (pf__pool_waiting(job->pool) > 0 && pf__now() - began >= SLICE_SECONDS)
      return PF__TASK_AGAIN;
  }
  pthread_mutex_lock(&job->lock);
  assert(job->running > 0 && job->running <= job->workers);
  int last_one = --job->running == 0;
  int detached = job->detached;
  if (last_one && !detached) pthread_cond_signal(&job->finished);
  pf_pool *pool = job->pool;
  pthread_mutex_unlock(&job->lock);
  if (detached) pf__pool_strand(pool, -1); /* this thread is free again */
  if (last_one && detached) job_free(job);
  return PF__TASK_DONE;
}

static int validate(const pf_array *out, int64_t *size, pf_error *err) {
  if (out == NULL) return pf__error_set(err, PF_EINVAL, -1, "no output array");
  if (pf_dtype_size(out->dtype) == 0)
    return pf__error_set(err, PF_EDTYPE, -1, "unsupported dtype %d",
                         (int)out->dtype);
  int rc = pf_shape_size(out->ndim, out->shape, pf_dtype_size(out->dtype),
                         size);
  if (rc == PF_EOVERFLOW)
    return pf__error_set(err, rc, -1, "array size overflows 64 bits");
  if (rc != 0)
    return pf__error_set(err, rc, -1, "invalid shape (negative length or "
                                      "more than %d dimensions)", PF_MAX_DIMS);
  if (*size > 0 && out->data == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "output data is NULL");
  if (pf_array_overlaps(out))
    return pf__error_set(err, PF_EINVAL, -1, "%s", PF_OVERLAP_MESSAGE);
  return 0;
}

double pf__progress_interval(const pf_fill_options *options) {
  return options->progress_interval > 0 ? options->progress_interval : 0.1;
}

int pf_fill_workers(const pf_fill_options *options, int64_t size) {
  int workers = options != NULL ? options->workers : 0;
  if (workers <= 0) {
    /* A query: it makes no pool (the default one may not exist yet, and
     * the pool pf_fill would make has pf_cpu_count() threads). */
    const pf_pool *pool = options != NULL && options->pool != NULL
                              ? options->pool
                              : pf__pool_default_existing();
    workers = pool != NULL ? pf__pool_base(pool) : pf_cpu_count();
  }
  if (size < workers) workers = size > 0 ? (int)size : 1;
  return workers;
}

static int fill_serial(fill_job *job) {
  fill_task *t = &job->tasks[0];
  t->worker.serial = 1;
  const pf_fill_options *o = job->o;
  job->next_report = o->progress != NULL ? pf__now() + job->interval : 0;
  int64_t first, last;
  while (next_block(t, &first, &last)) {
    if (run_block(t, first, last - first)) break;
    t->next = last;
    /* Blocks are claimed in order: `last` elements are done. */
    pf__fill_worker_poll(&t->worker, last - job->first);
  }
  int rc = job_code(job);
  return rc != 0 ? rc : report(o, job->sched.size, job->sched.size);
}

/* Stops the fill as a whole with `rc` and takes its queued tasks back;
 * called by the caller without job->lock. */
static void stop_all(fill_job *job, int rc) {
  job_fail(job, rc, -1, NULL);
  int withdrawn = pf__pool_withdraw(job->pool, job);
  pthread_mutex_lock(&job->lock);
  assert(job->running >= withdrawn && job->running <= job->workers);
  job->running -= withdrawn;
  pthread_mutex_unlock(&job->lock);
}

/* Fills err (may be NULL) from the job's failure; returns its code, or 0.
 * Called with job->lock held. */
static int copy_failure(const fill_job *job, pf_error *err) {
  if (!job->failed) return 0;
  return pf__error_set(err, job->code, job->index, "%s", job->message);
}

/* Waits for the tasks; returns 1 when the caller may free the job, 0 when
 * the job was detached (the last task frees it: *rc and err are then
 * already filled, and the job must not be touched). */
static int wait_workers(fill_job *job, int *rc_out, pf_error *err) {
  const pf_fill_options *o = job->o;
  double next_report = o->progress != NULL ? pf__now() + job->interval : 0;
  int stopped = 0;
  pthread_mutex_lock(&job->lock);
  while (job->running > 0) {
    double wake = 0;
    if (!stopped) {
      wake = next_report;
      if (job->deadline > 0 && (wake == 0 || job->deadline < wake))
        wake = job->deadline;
    }
    if (wake == 0) {
      pthread_cond_wait(&job->finished, &job->lock);
      continue;
    }
    struct timespec until;
    until.tv_sec = (time_t)wake;
    until.tv_nsec = (long)((wake - (double)until.tv_sec) * 1e9);
    pthread_cond_timedwait(&job->finished, &job->lock, &until);
    if (job->running == 0) break;
    pthread_mutex_unlock(&job->lock);
    double now = pf__now();
    int rc = 0;
    if (o->progress != NULL && now >= next_report) {
      rc = report(o, atomic_load(&job->done), job->sched.size);
      next_report = pf__now() + job->interval;
    }
    if (rc == 0 && job->deadline > 0 && now >= job->deadline)
      rc = PF_ETIMEDOUT;
    if (rc != 0) {
      stop_all(job, rc);
      stopped = 1;
    }
    pthread_mutex_lock(&job->lock);
    assert(job->running >= 0 && job->running <= job->workers);
    if (stopped && job->running > 0 && job->release != NULL) {
      job->detached = 1; /* DESIGN: Early return */
      pf__pool_strand(job->pool, job->running);
      *rc_out = copy_failure(job, err);
      pthread_mutex_unlock(&job->lock);
      return 0;
    }
  }
  pthread_mutex_unlock(&job->lock);
  return 1;
}

static fill_job *job_new(const pf_array *out, pf_kernel_fn kernel, void *ctx,
                         const pf_fill_options *o, int workers) {
  fill_job *job = pf__calloc(1, sizeof *job);
  if (job == NULL) return NULL;
  job->tasks = pf__calloc((size_t)workers, sizeof *job->tasks);
  pthread_condattr_t attr;
  int ok = job->tasks != NULL && pthread_condattr_init(&attr) == 0;
  if (ok) {
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    ok = pthread_cond_init(&job->finished, &attr) == 0;
    pthread_condattr_destroy(&attr);
  }
  if (ok && pthread_mutex_init(&job->lock, NULL) != 0) {
    pthread_cond_destroy(&job->finished);
    ok = 0;
  }
  if (!ok) {
    free(job->tasks);
    free(job);
    return NULL;
  }
  job->out = *out;
  if (o->window != NULL) {
    job->windowed = 1;
    pf__window_map_init(&job->window, o->window, out->ndim, out->shape);
  }
  job->kernel = kernel;
  job->ctx = ctx;
  job->itemsize = pf_dtype_size(out->dtype);
  job->contiguous = pf_array_is_contiguous(out);
  job->workers = workers;
  job->o = o;
  job->first = o->first;
  job->interval = pf__progress_interval(o);
  job->deadline = o->timeout > 0 ? pf__now() + o->timeout : 0;
  atomic_init(&job->limit, INT64_MAX);
  atomic_init(&job->done, 0);
  for (int w = 0; w < workers; w++) {
    job->tasks[w].job = job;
    job->tasks[w].worker = (pf_fill_worker){.job = job, .id = w};
  }
  return job;
}

/* The argument checks; 0, or the code with err filled. */
static int check_args(const pf_array *out, pf_kernel_fn kernel,
                      const pf_fill_options *o, int64_t *size, pf_error *err) {
  int rc = validate(out, size, err);
  if (rc != 0) return rc;
  if (kernel == NULL) return pf__error_set(err, PF_EINVAL, -1, "no kernel");
  if (o->chunk < 0 || o->workers < 0 ||
      (unsigned)o->schedule > PF_SCHEDULE_GUIDED)
    return pf__error_set(err, PF_EINVAL, -1, "invalid fill options");
  if (o->window != NULL) {
    rc = pf_window_check(o->window, out->ndim, out->shape, err);
    if (rc != 0) return rc;
  }
  if (o->first < 0 || o->first > *size)
    return pf__error_set(err, PF_EINVAL, -1, "first index %lld outside "
                         "[0, %lld]", (long long)o->first, (long long)*size);
  *size -= o->first; /* the elements to fill */
  return 0;
}

/* Where the fill runs (DESIGN): returns the number of workers and sets
 * *pool_out to the pool to run them on, or NULL for the calling thread. */
static int plan(const pf_fill_options *o, int64_t size, pf_pool **pool_out) {
  int workers = pf_fill_workers(o, size);
  pf__sched sched;
  pf__sched_init(&sched, o->schedule, size, o->chunk, workers);
  if (sched.chunk >= size) workers = 1;
  /* A caller that could return early needs the kernel on a pool thread. */
  int early = o->release != NULL && (o->progress != NULL || o->timeout > 0);
  pf_pool *pool = NULL;
  if (workers > 1 || early) {
    pool = o->pool;
    /* One worker needs no pool of its own: do not create the default one
     * for it in a forked process (e.g. a nested fill in a process team's
     * worker would start threads there). */
    if (pool == NULL)
      pool = workers > 1 || !pf__pool_forked() ? pf_pool_default()
                                                : pf__pool_default_existing();
    if (pool != NULL && !pf__pool_usable(pool)) pool = NULL;
  }
  /* No thread at all (RLIMIT_NPROC): the caller does the work. */
  if (pool != NULL && pf__pool_reserve(pool, workers, NULL) < 0) pool = NULL;
  *pool_out = pool;
  return pool != NULL ? workers : 1;
}

/* Queues the job's tasks and waits (wait_workers); returns as it does. */
static int fill_pooled(fill_job *job, int *rc, pf_error *err) {
  const int workers = job->workers;
  job->running = workers;
  for (int w = 0; w < workers; w++)
    if (pf__pool_submit(job->pool, fill_task_main, &job->tasks[w], job) != 0) {
      /* Out of memory queueing: stop the queued tasks and account for the
       * ones never queued. */
      job_fail(job, PF_ENOMEM, -1, "out of memory queueing tasks");
      pthread_mutex_lock(&job->lock);
      job->running -= workers - w;
      assert(job->running >= 0);
      pthread_mutex_unlock(&job->lock);
      break;
    }
  if (!wait_workers(job, rc, err)) return 0;
  *rc = job_code(job);
  if (*rc == 0) *rc = report(job->o, job->sched.size, job->sched.size);
  return 1;
}

int pf_fill(const pf_array *out, pf_kernel_fn kernel, void *ctx,
            const pf_fill_options *options, pf_error *err) {
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  const pf_fill_options *o = options != NULL ? options : &defaults;
  fill_job *job = NULL;
  int owned = 1; /* 0 once the job was detached: its last task frees it */
  int64_t size = 0;
  int rc = check_args(out, kernel, o, &size, err);
  if (rc != 0) goto out;
  if (size == 0) {
    rc = report(o, 0, 0);
    if (rc != 0) pf__error_set(err, rc, -1, NULL);
    goto out;
  }
  pf_pool *pool;
  int workers = plan(o, size, &pool);
  job = job_new(out, kernel, ctx, o, workers);
  if (job == NULL) {
    rc = pf__error_set(err, PF_ENOMEM, -1, "out of memory for the fill");
    goto out;
  }
  job->release = o->release;
  job->pool = pool;
  pf__sched_init(&job->sched, o->schedule, size, o->chunk, workers);
  for (int w = 0; w < workers; w++)
    pf__cursor_init(&job->sched, &job->tasks[w].cursor, w);
  if (pool == NULL)
    rc = fill_serial(job);
  else
    owned = fill_pooled(job, &rc, err);
  if (owned && rc != 0) {
    pthread_mutex_lock(&job->lock);
    if (copy_failure(job, err) == 0) pf__error_set(err, rc, -1, NULL);
    pthread_mutex_unlock(&job->lock);
  }
out:
  if (job != NULL) {
    if (owned) job_free(job); /* calls release */
  } else if (o->release != NULL) {
    o->release(ctx); /* nothing owns ctx yet */
  }
  return rc;
}
