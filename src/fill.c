/*
 * fill.c -- pf_fill: a block kernel over every element of an array, on the
 * thread pool.
 *
 * DESIGN
 * A fill is a job on the caller's stack: the schedule, the kernel, a
 * first-error-wins code, a count of elements done and a count of workers still
 * running (with a mutex and condition variable to wait on it). It queues one
 * task per worker on the pool; each task claims chunks until none is left or
 * the error code is set, and calls the kernel on blocks of each chunk. The
 * caller sleeps on the condition variable, waking every progress interval to
 * report progress (and to let the progress hook cancel), and returns only after
 * every task has finished, so the job may safely live on its stack.
 *
 * Contiguous outputs are written by the kernel in place, in blocks of at
 * most CONTIG_BLOCK elements. Other layouts go through a per-worker scratch
 * block of PF_BLOCK_ELEMENTS elements that is then scattered with the array's
 * strides. Workers look at the error code before every block, so a failure
 * or a cancel stops the others at their next block, not their next chunk
 * (a static schedule gives each worker one chunk of size/workers elements).
 *
 * One worker, one chunk, or a forked child of the pool's creator: the kernel
 * runs on the calling thread, with no locking at all.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "schedule.h"

typedef struct fill_job {
  pf__sched sched;
  const pf_array *out;
  pf_kernel_fn kernel;
  void *ctx;
  size_t itemsize;
  int contiguous;
  char *scratch; /* workers * PF_BLOCK_ELEMENTS * itemsize, if !contiguous */
  _Atomic int error;  /* first nonzero code wins */
  _Atomic int64_t done;
  pthread_mutex_t lock;
  pthread_cond_t finished;
  int running; /* tasks not yet finished; guarded by lock */
} fill_job;

/* Elements per kernel call for contiguous outputs: large enough that the call
 * costs nothing, small enough that errors, cancels and progress are seen
 * within a chunk. */
#define CONTIG_BLOCK (64 * (int64_t)PF_BLOCK_ELEMENTS)

typedef struct fill_task {
  fill_job *job;
  int worker;
} fill_task;

/* Writes `count` elements from `src` (contiguous) to the strided output at
 * flat indices [start, start+count), stepping an N-d index instead of
 * dividing per element. */
static void scatter(const pf_array *out, size_t itemsize, int64_t start,
                    int64_t count, const char *src) {
  int ndim = out->ndim;
  int64_t index[PF_MAX_DIMS];
  pf_index_unravel(ndim, out->shape, start, index);
  char *dst = (char *)out->data;
  for (int d = 0; d < ndim; d++) dst += index[d] * out->strides[d];
  const int last = ndim - 1;
  for (int64_t n = 0; n < count; n++) {
    memcpy(dst, src, itemsize);
    src += itemsize;
    if (ndim == 0) break;
    /* Step the innermost axis; carry into outer axes at their ends. */
    int d = last;
    dst += out->strides[d];
    while (++index[d] == out->shape[d] && d > 0) {
      dst -= index[d] * out->strides[d];
      index[d] = 0;
      d--;
      dst += out->strides[d];
    }
  }
}

/* Runs the kernel over [start, stop) block by block, counting finished
 * elements in job->done; returns 0, the kernel's error, or the job's error
 * when another worker failed or the fill was canceled meanwhile. */
static int run_chunk(fill_job *job, int worker, int64_t start, int64_t stop) {
  int64_t step = job->contiguous ? CONTIG_BLOCK : PF_BLOCK_ELEMENTS;
  char *scratch =
      job->contiguous
          ? NULL
          : job->scratch + (size_t)worker * PF_BLOCK_ELEMENTS * job->itemsize;
  for (int64_t first = start; first < stop; first += step) {
    int rc = atomic_load_explicit(&job->error, memory_order_relaxed);
    if (rc != 0) return rc;
    int64_t count = stop - first < step ? stop - first : step;
    if (job->contiguous) {
      char *base = (char *)job->out->data + first * (int64_t)job->itemsize;
      rc = job->kernel(job->ctx, first, count, base, worker);
    } else {
      rc = job->kernel(job->ctx, first, count, scratch, worker);
      if (rc == 0) scatter(job->out, job->itemsize, first, count, scratch);
    }
    if (rc != 0) return rc;
    atomic_fetch_add_explicit(&job->done, count, memory_order_relaxed);
  }
  return 0;
}

static void run_worker(fill_job *job, int worker) {
  pf__cursor cursor;
  pf__cursor_init(&job->sched, &cursor, worker);
  int64_t start, stop;
  while (atomic_load_explicit(&job->error, memory_order_relaxed) == 0 &&
         pf__sched_claim(&job->sched, &cursor, &start, &stop)) {
    int rc = run_chunk(job, worker, start, stop);
    if (rc != 0) {
      /* Fails (harmlessly) when rc is the job's error already. */
      int expected = 0;
      atomic_compare_exchange_strong(&job->error, &expected, rc);
      return;
    }
  }
}

static void fill_task_main(void *arg) {
  fill_task *task = arg;
  fill_job *job = task->job;
  run_worker(job, task->worker);
  pthread_mutex_lock(&job->lock);
  if (--job->running == 0) pthread_cond_signal(&job->finished);
  pthread_mutex_unlock(&job->lock);
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

int pf_fill_workers(const pf_fill_options *options, int64_t size) {
  int workers = options != NULL ? options->workers : 0;
  if (workers <= 0) {
    pf_pool *pool = options != NULL && options->pool != NULL
                        ? options->pool
                        : pf_pool_default();
    workers = pool != NULL ? pf_pool_size(pool) : 1;
  }
  if (size < workers) workers = size > 0 ? (int)size : 1;
  return workers;
}

static int report(const pf_fill_options *o, int64_t done, int64_t total) {
  return o->progress != NULL ? o->progress(o->progress_ctx, done, total) : 0;
}

static int fill_serial(fill_job *job, const pf_fill_options *o) {
  double interval = o->progress_interval > 0 ? o->progress_interval : 0.1;
  double next_report = o->progress != NULL ? pf__now() + interval : 0;
  pf__cursor cursor;
  pf__cursor_init(&job->sched, &cursor, 0);
  int64_t start, stop, done = 0;
  while (pf__sched_claim(&job->sched, &cursor, &start, &stop)) {
    /* Cut long chunks into blocks so progress and cancellation stay prompt. */
    for (int64_t first = start; first < stop;) {
      int64_t step = o->progress != NULL ? 64 * PF_BLOCK_ELEMENTS : stop;
      int64_t last = stop - first < step ? stop : first + step;
      int rc = run_chunk(job, 0, first, last);
      if (rc != 0) return rc;
      done += last - first;
      first = last;
      if (o->progress != NULL && pf__now() >= next_report) {
        rc = report(o, done, job->sched.size);
        if (rc != 0) return rc;
        next_report = pf__now() + interval;
      }
    }
  }
  return report(o, done, job->sched.size);
}

static int wait_workers(fill_job *job, const pf_fill_options *o) {
  double interval = o->progress_interval > 0 ? o->progress_interval : 0.1;
  int canceled = 0;
  pthread_mutex_lock(&job->lock);
  while (job->running > 0) {
    if (o->progress == NULL || canceled) {
      pthread_cond_wait(&job->finished, &job->lock);
      continue;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double t = (double)until.tv_nsec * 1e-9 + interval;
    until.tv_sec += (time_t)t;
    until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    pthread_cond_timedwait(&job->finished, &job->lock, &until);
    if (job->running == 0) break;
    pthread_mutex_unlock(&job->lock);
    int rc = report(o, atomic_load(&job->done), job->sched.size);
    if (rc != 0) {
      int expected = 0;
      atomic_compare_exchange_strong(&job->error, &expected, rc);
      canceled = 1;
    }
    pthread_mutex_lock(&job->lock);
  }
  pthread_mutex_unlock(&job->lock);
  int rc = atomic_load(&job->error);
  if (rc == 0) rc = report(o, job->sched.size, job->sched.size);
  return rc;
}

int pf_fill(const pf_array *out, pf_kernel_fn kernel, void *ctx,
            const pf_fill_options *options, pf_error *err) {
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  const pf_fill_options *o = options != NULL ? options : &defaults;
  int64_t size;
  int rc = validate(out, &size, err);
  if (rc != 0) return rc;
  if (kernel == NULL) return pf__error_set(err, PF_EINVAL, -1, "no kernel");
  if (o->chunk < 0 || o->workers < 0 ||
      (unsigned)o->schedule > PF_SCHEDULE_GUIDED)
    return pf__error_set(err, PF_EINVAL, -1, "invalid fill options");
  if (size == 0) return report(o, 0, 0);

  /* One worker needs no pool: do not create the default one for it (e.g. a
   * nested fill in a forked worker process would start threads there). */
  int workers = pf_fill_workers(o, size);
  pf_pool *pool = NULL;
  if (workers > 1) {
    pool = o->pool != NULL ? o->pool : pf_pool_default();
    if (pool == NULL || !pf__pool_usable(pool)) workers = 1;
  }

  fill_job job = {.out = out, .kernel = kernel, .ctx = ctx};
  job.itemsize = pf_dtype_size(out->dtype);
  job.contiguous = pf_array_is_contiguous(out);
  pf__sched_init(&job.sched, o->schedule, size, o->chunk, workers);
  if (job.sched.chunk >= size) workers = 1;
  if (workers == 1) pf__sched_init(&job.sched, o->schedule, size, o->chunk, 1);
  atomic_init(&job.error, 0);
  atomic_init(&job.done, 0);
  if (!job.contiguous) {
    job.scratch = pf__malloc((size_t)workers * PF_BLOCK_ELEMENTS * job.itemsize);
    if (job.scratch == NULL)
      return pf__error_set(err, PF_ENOMEM, -1, "out of memory for scratch");
  }
  if (workers == 1) {
    rc = fill_serial(&job, o);
    free(job.scratch);
    return rc < 0 || rc > 0 ? pf__error_set(err, rc, -1, NULL) : 0;
  }

  fill_task *tasks = pf__malloc(sizeof *tasks * (size_t)workers);
  if (tasks == NULL) {
    free(job.scratch);
    return pf__error_set(err, PF_ENOMEM, -1, "out of memory for tasks");
  }
  rc = pf__pool_reserve(pool, workers);
  if (rc != 0) {
    free(tasks);
    free(job.scratch);
    return pf__error_set(err, rc, -1, "cannot start pool threads");
  }
  pthread_mutex_init(&job.lock, NULL);
  pthread_cond_init(&job.finished, NULL);
  job.running = workers;
  int submitted = 0;
  for (; submitted < workers; submitted++) {
    tasks[submitted] = (fill_task){&job, submitted};
    if (pf__pool_submit(pool, fill_task_main, &tasks[submitted]) != 0) break;
  }
  if (submitted < workers) {
    /* Out of memory queueing: stop the queued tasks early and account for
     * the ones never queued. */
    int expected = 0;
    atomic_compare_exchange_strong(&job.error, &expected, PF_ENOMEM);
    pthread_mutex_lock(&job.lock);
    job.running -= workers - submitted;
    pthread_mutex_unlock(&job.lock);
  }
  rc = wait_workers(&job, o);
  pthread_cond_destroy(&job.finished);
  pthread_mutex_destroy(&job.lock);
  free(tasks);
  free(job.scratch);
  return rc != 0 ? pf__error_set(err, rc, -1, NULL) : 0;
}
