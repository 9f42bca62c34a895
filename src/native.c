/*
 * native.c -- pf_native_fill: fills from native functions (per element, per
 * N-d index, per block) through pf_fill.
 *
 * Element and index functions return doubles. Outputs of another dtype get
 * them through a small stack buffer and the expression VM's cast
 * (pf__vm_store), so a native function's values convert exactly as an
 * expression's do (ndarray.astype). Block functions write the output dtype
 * themselves; the kernel only adapts the signature.
 *
 * Stopping: a contiguous output gets up to 64 * PF_BLOCK_ELEMENTS elements
 * per kernel call -- seconds for a slow function. So element and index
 * kernels look at the fill's limit every NATIVE_CAST_BLOCK elements (a
 * cancel or a timeout sets it to 0). On a fill that runs on the calling
 * thread, nobody else calls the progress hook meanwhile, so the kernel asks
 * pf_fill for it there (pf__fill_worker_poll) at the same points.
 *
 * Early return: with options->release, the job lives on the heap and is
 * pf_fill's ctx; its release frees it and then calls the caller's release
 * with native->ctx, which owns the output (see parfill.h).
 *
 * The index of an index function is stepped (pf_index_next), never divided
 * per element. The function may not write to it; if it does, it gets wrong
 * indices afterwards but no memory is touched out of bounds (the step only
 * ever reads and writes index[0..ndim), and never overflows a value).
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "pool.h"

/* Doubles collected before one cast: 4 KiB on the worker's stack. */
#define NATIVE_CAST_BLOCK 512

typedef struct native_job {
  pf_native native;
  int ndim;
  int64_t shape[PF_MAX_DIMS];
  int64_t size;
  pf_dtype dtype;
  size_t itemsize;
  int isa; /* for pf__vm_store */
  void (*release)(void *ctx); /* the caller's, for native.ctx; heap jobs */
} native_job;

/* Between sub-blocks of a kernel: 1 to stop (elements from `next` on are
 * not needed), else 0. */
static int native_stop(pf_fill_worker *worker, int64_t next) {
  return pf__fill_worker_poll(worker, next) != 0 ||
         pf_fill_worker_limit(worker) <= next;
}

/* Stores n doubles to out (contiguous, any alignment) in the job's dtype. */
static void store_values(const native_job *job, const double *values,
                         int64_t n, char *out) {
  if (job->dtype == PF_FLOAT64)
    memcpy(out, values, (size_t)n * sizeof *values);
  else
    pf__vm_store(PF__T_F, values, 0, n, job->dtype, out, job->isa);
}

static int element_kernel(void *ctx, int64_t start, int64_t count, void *out,
                          pf_fill_worker *worker) {
  native_job *job = ctx;
  const pf_element_fn fn = job->native.fn.element;
  double values[NATIVE_CAST_BLOCK];
  char *o = out;
  for (int64_t done = 0; done < count;) {
    if (native_stop(worker, start + done)) return 0;
    int64_t n = count - done;
    if (n > NATIVE_CAST_BLOCK) n = NATIVE_CAST_BLOCK;
    for (int64_t k = 0; k < n; k++) values[k] = fn(start + done + k);
    store_values(job, values, n, o + (size_t)done * job->itemsize);
    done += n;
  }
  return 0;
}

static int index_kernel(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *worker) {
  native_job *job = ctx;
  const pf_index_fn fn = job->native.fn.index;
  const int ndim = job->ndim;
  int64_t index[PF_MAX_DIMS + 1] = {0}; /* one element for ndim == 0 */
  double values[NATIVE_CAST_BLOCK];
  char *o = out;
  pf_index_unravel(ndim, job->shape, start, index);
  for (int64_t done = 0; done < count;) {
    if (native_stop(worker, start + done)) return 0;
    int64_t n = count - done;
    if (n > NATIVE_CAST_BLOCK) n = NATIVE_CAST_BLOCK;
    for (int64_t k = 0; k < n; k++) {
      values[k] = fn(index, ndim);
      pf_index_next(ndim, job->shape, index);
    }
    store_values(job, values, n, o + (size_t)done * job->itemsize);
    done += n;
  }
  return 0;
}

static int block_kernel(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *worker) {
  const native_job *job = ctx;
  (void)worker;
  job->native.fn.block(start, count, out, job->native.ctx);
  return 0;
}

static void native_release(void *ctx) {
  native_job *job = ctx;
  void (*release)(void *) = job->release;
  void *user = job->native.ctx;
  free(job);
  release(user);
}

int pf_native_fill(const pf_native *native, const pf_array *out,
                   const pf_fill_options *options, pf_error *err) {
  void (*release)(void *) = options != NULL ? options->release : NULL;
  void *user = native != NULL ? native->ctx : NULL;
  if (native == NULL || out == NULL) {
    if (release != NULL) release(user);
    return pf__error_set(err, PF_EINVAL, -1, "no function or output array");
  }
  if (out->ndim < 0 || out->ndim > PF_MAX_DIMS) {
    if (release != NULL) release(user);
    return pf__error_set(err, PF_EINVAL, -1,
                         "invalid shape (more than %d dimensions)",
                         PF_MAX_DIMS);
  }
  pf_kernel_fn kernel;
  switch (native->kind) {
    case PF_NATIVE_ELEMENT:
      kernel = native->fn.element != NULL ? element_kernel : NULL;
      break;
    case PF_NATIVE_INDEX:
      kernel = native->fn.index != NULL ? index_kernel : NULL;
      break;
    case PF_NATIVE_BLOCK:
      kernel = native->fn.block != NULL ? block_kernel : NULL;
      break;
    default:
      kernel = NULL;
      break;
  }
  if (kernel == NULL) {
    if (release != NULL) release(user);
    if ((unsigned)native->kind > PF_NATIVE_BLOCK)
      return pf__error_set(err, PF_EINVAL, -1,
                           "unknown native function kind %d",
                           (int)native->kind);
    return pf__error_set(err, PF_EINVAL, -1, "the native function is NULL");
  }
  native_job local, *job = &local;
  if (release != NULL) {
    job = pf__malloc(sizeof *job);
    if (job == NULL) {
      release(user);
      return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
    }
  }
  /* With a window the indices are the whole array's. */
  int ndim;
  const int64_t *space;
  pf__index_space(out, options, &ndim, &space);
  if (ndim < 0 || ndim > PF_MAX_DIMS || (ndim > 0 && space == NULL)) {
    if (job != &local) free(job);
    if (release != NULL) release(user);
    return pf__error_set(err, PF_EINVAL, -1, "invalid window");
  }
  *job = (native_job){.native = *native, .ndim = ndim,
                      .dtype = out->dtype, .release = release};
  job->itemsize = pf_dtype_size(out->dtype);
  memcpy(job->shape, space, sizeof(int64_t) * (size_t)ndim);
  if (pf_shape_size(ndim, space, 1, &job->size) != 0)
    job->size = 0; /* pf_fill reports the bad shape */
  job->isa = pf__vm_isa();
  if (release == NULL) return pf_fill(out, kernel, job, options, err);
  pf_fill_options o = *options;
  o.release = native_release;
  return pf_fill(out, kernel, job, &o, err);
}
