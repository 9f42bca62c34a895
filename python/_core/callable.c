/*
 * callable.c -- fills from Python callables.
 *
 * DESIGN
 * One loop computes the elements [start, stop) of a job: per element (a
 * vectorcall with the N-d index as Python ints, the result stored as
 * `a[idx] = value` stores it: PyArray_Pack, behind exact fast paths for
 * float64 and int64), or per block (vectorized: one int64 index array per
 * axis, the result stored as `a.reshape(-1)[start:stop] = result` stores it:
 * PyArray_CopyObject on a view). Three backends run that loop:
 *
 *   serial     on the caller's thread, in chunks bounded in time (about 5 to
 *              20 ms; vectorized: one call each) between which the timeout,
 *              signals (Ctrl-C) and progress are checked; with a time budget
 *              this is how `auto` measures the first elements;
 *   threads    on libparfill's pool, each block under the GIL (pays off when
 *              func releases it, e.g. NumPy work in vectorized mode);
 *   processes  in workers forked by a process team (pf_team_run), writing into
 *              the output, which the caller placed in MAP_SHARED memory.
 *
 * Failures: as in the sequential loop, the exception of the lowest flat
 * index wins, not the first in time. The serial/threads record keeps the
 * lowest index (GIL-protected); threads report it to pf_fill
 * (pf_fill_worker_fail) and the per-element loop stops at the fill's limit
 * (pf_fill_worker_limit; processes: pf_team_worker_limit), so work past a
 * failure stops while everything before it is finished. In a worker process
 * the exception is packed by parfill._errors.pack_exception and travels in
 * the team's failure payload. parfill._errors.element_failed turns either
 * into the exception the caller sees, with a note naming the element and
 * worker.
 *
 * Threads and early returns: a func that blocks for seconds must not delay
 * a timeout or Ctrl-C. The job is on the heap, holds references to func and
 * out, and is handed to pf_fill with a `release` hook, so pf_fill returns at
 * once on a cancel or timeout while kernel calls still run on pool threads;
 * the last of the job's two owners (caller, pool) frees it. Every store into
 * out happens under the GIL right after checking the job's `canceled` flag,
 * which the caller sets under the GIL before it returns: nothing is stored
 * after the call returned. (pf_fill is therefore given a flat contiguous
 * description of the job and the kernel writes through out's own strides:
 * the pool's scratch copy for strided outputs would run without the GIL.)
 * Pool threads still inside func get an asynchronous KeyboardInterrupt
 * (PyThreadState_SetAsyncExc), which ends pure-Python loops; a pending one
 * left unraised is cleared when func returns, so no later call sees it. At
 * interpreter exit pool threads cannot take the GIL: backend "threads"
 * raises RuntimeError then instead of hanging.
 *
 * Resizing out from func (out.resize(..., refcheck=False)) would free the
 * memory being filled: the fill holds a weak reference to out (and to the
 * `guard` array), and NumPy refuses to resize arrays that have one, so func's
 * resize raises and is reported at its element.
 */
#include "core.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set in a worker process: nested fills there run serially (the Python layer
 * asks through in_worker()). */
static int in_worker_process;

typedef struct job {
  PyObject *module;
  PyObject *func;       /* strong */
  PyObject *out;        /* strong: kernels may outlive the call (threads) */
  PyArray_Descr *descr; /* out's dtype (borrowed from out) */
  pf_array arr;         /* out's layout */
  int64_t size;
  int64_t offset;       /* process teams run [offset, size) as [0, size-offset) */
  /* A window (pfpy_window): func gets origin + the element's index in out,
   * and a failure names its index in the whole. Zeros without one. */
  int windowed;
  int64_t origin[PF_MAX_DIMS];
  int64_t whole[PF_MAX_DIMS];
  int vectorized;
  size_t itemsize;
  /* Lowest failure in serial/threads; GIL-protected. */
  PyObject *exc;
  int64_t failed_index;
  int failed_worker;
  pfpy_waiter waiter;
  /* Serial with a time budget (auto's measuring slices): the per-element
   * loop stops at the first element that ends past `deadline` (0: none) and
   * says where in `stopped_at` (-1: it did not stop early), so a slice never
   * runs a whole chunk of suddenly expensive elements. */
  double deadline;
  int64_t stopped_at;
  /* Threads: owners (caller, pool), the cancel flag (written under the GIL)
   * and, per worker, the thread inside func (0: none; GIL-protected). */
  _Atomic int refs;
  _Atomic int canceled;
  int nthreads;
  unsigned long *inside;
} job;

/* Where the per-element loop stops: a fill's or a team's limit. */
typedef struct bound {
  pf_fill_worker *fill;
  pf_team_worker *team;
} bound;

/* The absolute flat index at and past which nothing need be computed. */
static int64_t bound_limit(const job *j, const bound *b) {
  if (b == NULL) return INT64_MAX;
  if (b->fill != NULL) return pf_fill_worker_limit(b->fill);
  if (b->team != NULL) {
    int64_t limit = pf_team_worker_limit(b->team);
    return limit == INT64_MAX ? INT64_MAX : limit + j->offset;
  }
  return INT64_MAX;
}

/* pfpy_fill_callable's arguments, converted and checked. */
typedef enum backend { BACKEND_SERIAL, BACKEND_THREADS, BACKEND_PROCESSES } backend;

typedef struct fill_args {
  PyObject *func;      /* callable */
  PyArrayObject *out;  /* writable */
  PyObject *progress;  /* callable(done, total) or None */
  PyObject *guard;     /* an array that must not be resized, or None */
  backend backend;
  int vectorized;
  int workers;         /* >= 1 */
  int retries;         /* >= 0; processes */
  pf_schedule schedule;
  int64_t chunk;       /* 0: auto */
  int64_t start;       /* first flat index; 0 for threads */
  double budget;       /* serial: seconds, then return; <= 0: none */
  double timeout;      /* seconds; <= 0: none */
  pfpy_window window;  /* func sees the whole's indices */
} fill_args;

/* ------------------------------------------------------------- destinations */

/* Walks the output from a flat index in C order: the N-d index (the callable's
 * arguments) and the element's address, either in a contiguous block or with
 * the array's strides. */
typedef struct cursor {
  const pf_array *arr;
  int64_t index[PF_MAX_DIMS];
  char *ptr;
  int64_t offset; /* bytes from arr->data, with strides */
  int64_t step;   /* itemsize for a contiguous block, 0 to use strides */
} cursor;

static void cursor_init(cursor *c, const pf_array *arr, int64_t flat,
                        char *block, size_t itemsize) {
  c->arr = arr;
  pf_index_unravel(arr->ndim, arr->shape, flat, c->index);
  c->offset = 0;
  if (block != NULL) {
    c->ptr = block;
    c->step = (int64_t)itemsize;
  } else {
    for (int d = 0; d < arr->ndim; d++)
      c->offset += c->index[d] * arr->strides[d];
    c->ptr = (char *)arr->data + c->offset;
    c->step = 0;
  }
}

/* Moves to the next element; returns the outermost axis whose index changed
 * (0 when ndim is 0). */
static int cursor_next(cursor *c) {
  const pf_array *a = c->arr;
  if (c->step) {
    c->ptr += c->step;
    return pf_index_next(a->ndim, a->shape, c->index);
  }
  int d = pf_index_next_strided(a->ndim, a->shape, a->strides, c->index,
                                &c->offset);
  c->ptr = (char *)a->data + c->offset;
  return d;
}

/* --------------------------------------------------------------- storing */

/* Stores `value` at `p` as `a[idx] = value` would. */
static int store(const job *j, char *p, PyObject *value) {
  switch (j->arr.dtype) {
    case PF_FLOAT64:
      if (PyFloat_CheckExact(value) || PyArray_IsScalar(value, Double)) {
        double x = PyFloat_AS_DOUBLE(value);
        memcpy(p, &x, sizeof x);
        return 0;
      }
      break;
    case PF_INT64:
      if (PyLong_CheckExact(value)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(x == -1 && PyErr_Occurred())) {
          int64_t v = x;
          memcpy(p, &v, sizeof v);
          return 0;
        }
        PyErr_Clear(); /* let NumPy raise its own error */
      }
      break;
    default:
      break;
  }
  return PyArray_Pack(j->descr, p, value);
}

/* Records the pending exception as the job's failure at `index`: the lowest
 * index wins, as in a sequential loop. */
static void record_failure(job *j, int64_t index, int worker) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb != NULL && value != NULL) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  if (value != NULL && (j->exc == NULL || index < j->failed_index)) {
    Py_XSETREF(j->exc, value);
    j->failed_index = index;
    j->failed_worker = worker;
  } else {
    Py_XDECREF(value);
  }
}

/* (n0, n1, ...) of `ndim` lengths, or NULL with an exception set. */
static PyObject *shape_tuple(int ndim, const int64_t *lengths) {
  PyObject *shape = PyTuple_New(ndim);
  for (int d = 0; shape != NULL && d < ndim; d++) {
    PyObject *n = PyLong_FromLongLong(lengths[d]);
    if (n == NULL) Py_CLEAR(shape);
    else PyTuple_SET_ITEM(shape, d, n);
  }
  return shape;
}

/* Raises what the caller sees when element `flat` (absolute) failed in
 * worker `worker` (process `pid`; 0 in this process): `failure`, the
 * exception itself or the bytes a worker process packed, through
 * parfill._errors.element_failed, which adds the note naming them. */
static void raise_element_failure(const job *j, PyObject *failure,
                                  int64_t flat, int worker, int pid) {
  if (j->windowed) { /* name the element of the whole */
    pf_window w = {j->arr.ndim, j->whole, j->origin, 0};
    flat = pf_window_flat(&w, j->arr.ndim, j->arr.shape, flat);
  }
  PyObject *shape = shape_tuple(j->arr.ndim,
                                j->windowed ? j->whole : j->arr.shape);
  if (shape == NULL) return;
  pfpy_state *state = pfpy_state_of(j->module);
  pfpy_raise_object(PyObject_CallFunction(state->element_failed, "OOLii",
                                          failure, shape, (long long)flat,
                                          worker, pid));
  Py_DECREF(shape);
}

/* The recorded failure of serial and threads fills. */
static void raise_job_failure(const job *j) {
  raise_element_failure(j, j->exc, j->failed_index, j->failed_worker, 0);
}

/* Threads: 1 once the caller has returned (checked under the GIL before
 * every store and call). A pending asynchronous exception meant for this
 * thread's func is consumed here so that no later call on this pool thread
 * sees it: by running a Python function, whose first instruction makes
 * CPython raise it and clear its signal. (PyThreadState_SetAsyncExc(id,
 * NULL) would drop it but signal the interpreter once more, and in 3.11 no
 * thread would then clear that signal: every function entry under a profiler
 * loops on it forever.) */
static int canceled(job *j) {
  if (!atomic_load_explicit(&j->canceled, memory_order_relaxed)) return 0;
  PyObject *r = PyObject_CallNoArgs(pfpy_state_of(j->module)->run_bytecode);
  Py_XDECREF(r);
  PyErr_Clear();
  return 1;
}

/* Threads: which thread is inside func for worker `worker` (0 when it left). */
static void set_inside(job *j, int worker, unsigned long ident) {
  if (j->inside != NULL && worker >= 0 && worker < j->nthreads)
    j->inside[worker] = ident;
}

/* ------------------------------------------------------------ the loops */

/* Per element, stopping at the bound's limit. `block` is a contiguous
 * destination for [start, stop), or NULL to write into the array. Returns 0,
 * or -1 with the failure recorded and its index in *failed. */
static int run_elements(job *j, int64_t start, int64_t stop, char *block,
                        int worker, const bound *b, int64_t *failed) {
  const int ndim = j->arr.ndim;
  cursor c;
  cursor_init(&c, &j->arr, start, block, j->itemsize);
  PyObject *argv[PF_MAX_DIMS + 1] = {NULL};
  PyObject **args = argv + 1; /* argv[0] is scratch for the callee */
  const unsigned long ident = j->inside != NULL ? PyThread_get_thread_ident() : 0;
  int rc = 0;
  int64_t k = start;
  for (int d = 0; d < ndim; d++) {
    args[d] = PyLong_FromLongLong(c.index[d] + j->origin[d]);
    if (args[d] == NULL) goto fail;
  }
  const size_t nargs = (size_t)ndim | PY_VECTORCALL_ARGUMENTS_OFFSET;
  for (; k < stop; k++) {
    if (k >= bound_limit(j, b) || canceled(j)) break;
    set_inside(j, worker, ident);
    /* Every element starts with errno 0, as if it were the first: CPython
     * before 3.15 lets abs() of a complex with a NaN part read errno left
     * by earlier code (gh-155526), and a thread's errno cannot follow the
     * C order across workers. */
    errno = 0;
    PyObject *value = PyObject_Vectorcall(j->func, args, nargs, NULL);
    set_inside(j, worker, 0);
    if (canceled(j)) { /* the caller returned: store nothing */
      Py_XDECREF(value);
      break;
    }
    if (value == NULL || store(j, c.ptr, value) < 0) {
      Py_XDECREF(value);
      goto fail;
    }
    Py_DECREF(value);
    if (j->deadline > 0 && pfpy_monotonic() > j->deadline) {
      j->stopped_at = k + 1;
      break;
    }
    if (k + 1 == stop) break;
    /* Only the axes that moved get new index objects. */
    for (int d = cursor_next(&c); d < ndim; d++) {
      Py_SETREF(args[d], PyLong_FromLongLong(c.index[d] + j->origin[d]));
      if (args[d] == NULL) {
        k++;
        goto fail;
      }
    }
  }
  goto done;
fail:
  record_failure(j, k, worker);
  *failed = k;
  rc = -1;
done:
  for (int d = 0; d < ndim; d++) Py_XDECREF(args[d]);
  return rc;
}

/* A 1-d view of `count` elements at `p`, or NULL. */
static PyObject *block_view(const job *j, char *p, npy_intp count) {
  Py_INCREF(j->descr);
  PyObject *view = PyArray_NewFromDescr(
      &PyArray_Type, j->descr, 1, &count, NULL, p,
      NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_WRITEABLE, NULL);
  if (view != NULL) PyArray_UpdateFlags((PyArrayObject *)view, NPY_ARRAY_ALIGNED);
  return view;
}

/* One vectorized call for [start, stop) (returns as run_elements). */
static int run_block(job *j, int64_t start, int64_t stop, char *block,
                     int worker, const bound *b, int64_t *failed) {
  const int ndim = j->arr.ndim;
  npy_intp count = (npy_intp)(stop - start);
  PyObject *argv[PF_MAX_DIMS + 1] = {NULL};
  PyObject **args = argv + 1;
  PyObject *result = NULL, *target = NULL;
  int contiguous = block != NULL || pf_array_is_contiguous(&j->arr);
  int rc = -1;
  if (start >= bound_limit(j, b) || canceled(j)) return 0;
  for (int d = 0; d < ndim; d++) {
    args[d] = PyArray_SimpleNew(1, &count, NPY_INT64);
    if (args[d] == NULL) goto done;
  }
  cursor c;
  cursor_init(&c, &j->arr, start, block, j->itemsize);
  for (npy_intp k = 0; k < count; k++) {
    for (int d = 0; d < ndim; d++)
      ((int64_t *)PyArray_DATA((PyArrayObject *)args[d]))[k] =
          c.index[d] + j->origin[d];
    cursor_next(&c);
  }
  const unsigned long ident = j->inside != NULL ? PyThread_get_thread_ident() : 0;
  set_inside(j, worker, ident);
  errno = 0; /* as for each element in run_elements */
  result = PyObject_Vectorcall(j->func, args,
                               (size_t)ndim | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               NULL);
  set_inside(j, worker, 0);
  if (canceled(j)) { /* the caller returned: store nothing */
    rc = 0;
    goto done;
  }
  if (result == NULL) goto done;
  if (contiguous) {
    char *p = block != NULL ? block
                            : (char *)j->arr.data + start * (int64_t)j->itemsize;
    target = block_view(j, p, count);
  } else {
    Py_INCREF(j->descr);
    target = PyArray_Empty(1, &count, j->descr, 0);
  }
  if (target == NULL ||
      PyArray_CopyObject((PyArrayObject *)target, result) < 0)
    goto done;
  if (!contiguous) {
    const char *src = PyArray_BYTES((PyArrayObject *)target);
    cursor_init(&c, &j->arr, start, NULL, j->itemsize);
    for (npy_intp k = 0; k < count; k++, src += j->itemsize) {
      memcpy(c.ptr, src, j->itemsize);
      cursor_next(&c);
    }
  }
  rc = 0;
done:
  if (rc < 0) {
    record_failure(j, start, worker);
    *failed = start;
  }
  Py_XDECREF(result);
  Py_XDECREF(target);
  for (int d = 0; d < ndim; d++) Py_XDECREF(args[d]);
  return rc;
}

static int run_range(job *j, int64_t start, int64_t stop, char *block,
                     int worker, const bound *b, int64_t *failed) {
  return j->vectorized ? run_block(j, start, stop, block, worker, b, failed)
                       : run_elements(j, start, stop, block, worker, b, failed);
}

/* ---------------------------------------------------------------- serial */

/* Runs [start, size) in chunks on this thread until done, a failure, a
 * signal, the timeout or (budget > 0) the time budget; returns the next index
 * or -1 with an exception set. Per-element chunks are cut into steps of 5 to
 * 20 ms (as few as one element) so that the checks run often whatever
 * `chunk` says; a vectorized chunk is one call. */
static int64_t fill_serial(job *j, int64_t start, int64_t chunk,
                           double budget) {
  double t0 = pfpy_monotonic();
  int64_t step = j->vectorized || chunk < 16 ? chunk : 16;
  while (start < j->size) {
    int64_t stop = j->size - start < step ? j->size : start + step;
    double t1 = pfpy_monotonic();
    int64_t failed;
    j->deadline = budget > 0 && !j->vectorized ? t0 + budget : 0;
    j->stopped_at = -1;
    if (run_range(j, start, stop, NULL, 0, NULL, &failed) < 0) return -1;
    start = j->stopped_at >= 0 ? j->stopped_at : stop;
    double now = pfpy_monotonic();
    if (!j->vectorized) {
      if (now - t1 < 0.005 && step < chunk)
        step = chunk / 2 < step ? chunk : 2 * step;
      else if (now - t1 > 0.02 && step > 1)
        step /= 2;
    }
    int rc = pfpy_waiter_check(&j->waiter, start, j->size);
    if (rc != 0) {
      if (rc == PF_ETIMEDOUT) pfpy_raise(j->module, rc, NULL);
      return -1;
    }
    if (budget > 0 && now - t0 > budget) break;
  }
  return start;
}

/* --------------------------------------------------------------- threads */

#if PY_VERSION_HEX >= 0x030D0000
#define pfpy_is_finalizing() Py_IsFinalizing()
#else
#define pfpy_is_finalizing() _Py_IsFinalizing()
#endif

/* Frees the job with the GIL held. */
static void job_free(job *j) {
  Py_XDECREF(j->func);
  Py_XDECREF(j->out);
  Py_XDECREF(j->exc);
  free(j->inside);
  free(j);
}

/* Drops one owner's reference; the last frees the job. `have_gil`: the
 * caller holds the GIL. */
static void job_unref(job *j, int have_gil) {
  if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (have_gil) {
    job_free(j);
  } else if (!pfpy_is_finalizing()) {
    PyGILState_STATE gil = PyGILState_Ensure();
    job_free(j);
    PyGILState_Release(gil);
  } /* else: leaked -- at exit no thread may take the GIL */
}

static void job_release(void *ctx) { job_unref(ctx, 0); }

/* The kernel ignores `out`: pf_fill sees a flat contiguous description and
 * the loop writes through out's own strides, under the GIL (see DESIGN). */
static int thread_kernel(void *ctx, int64_t start, int64_t count, void *out,
                         pf_fill_worker *handle) {
  (void)out;
  job *j = ctx;
  if (atomic_load_explicit(&j->canceled, memory_order_relaxed) ||
      start >= pf_fill_worker_limit(handle))
    return 0;
  int worker = pf_fill_worker_id(handle);
  bound b = {.fill = handle};
  int64_t failed = -1;
  PyGILState_STATE gil = PyGILState_Ensure();
  int rc = run_range(j, start, start + count, NULL, worker, &b, &failed);
  PyGILState_Release(gil);
  if (rc == 0) return 0;
  return pf_fill_worker_fail(handle, PF_EKERNEL, failed, NULL);
}

/* Called with the GIL once pf_fill returned early: later stores are off,
 * and threads still inside func get a KeyboardInterrupt. */
static void cancel_threads(job *j) {
  atomic_store_explicit(&j->canceled, 1, memory_order_relaxed);
  for (int w = 0; w < j->nthreads; w++)
    if (j->inside[w] != 0)
      PyThreadState_SetAsyncExc(j->inside[w], PyExc_KeyboardInterrupt);
}

/* pf_fill sees a flat contiguous description of out (see DESIGN). */
static int threads_run(void *ctx, const pf_fill_options *o, pf_error *err) {
  job *j = ctx;
  pf_array flat = {.data = j->arr.data, .dtype = j->arr.dtype, .ndim = 1};
  flat.shape[0] = j->size;
  flat.strides[0] = (int64_t)j->itemsize;
  return pf_fill(&flat, thread_kernel, j, o, err);
}

/* With the GIL, once pf_fill returned: after an early return nothing more
 * is stored; a failure in func is raised as the caller sees it. */
static void threads_done(void *ctx, int rc, const pf_error *err) {
  (void)err;
  job *j = ctx;
  if (rc == PF_ECANCELED || rc == PF_ETIMEDOUT) cancel_threads(j);
  if (rc == PF_EKERNEL && j->exc != NULL && !PyErr_Occurred())
    raise_job_failure(j);
}

static int fill_threads(job *j, const fill_args *a) {
  if (pfpy_is_finalizing()) {
    PyErr_SetString(PyExc_RuntimeError,
                    "parfill: backend='threads' cannot run while the "
                    "interpreter is shutting down (e.g. from __del__ at "
                    "exit): its threads could never take the GIL; use "
                    "backend='serial'");
    return -1;
  }
  pfpy_fill fill;
  pfpy_fill_init(&fill, a->progress, a->timeout, a->workers, a->schedule,
                 a->chunk);
  fill.options.release = job_release;
  j->nthreads = pf_fill_workers(&fill.options, j->size);
  j->inside = calloc((size_t)(j->nthreads > 0 ? j->nthreads : 1),
                     sizeof *j->inside);
  if (j->inside == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  atomic_store(&j->refs, 2); /* this call and the pool */
  return pfpy_fill_run(j->module, &fill, threads_run, threads_done, j);
}

/* ------------------------------------------------------------- processes */

static void flush_std_streams(void) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  static const char *const names[] = {"stdout", "stderr"};
  for (int s = 0; s < 2; s++) {
    PyObject *stream = PySys_GetObject(names[s]); /* borrowed */
    if (stream != NULL && stream != Py_None) {
      PyObject *r = PyObject_CallMethod(stream, "flush", NULL);
      Py_XDECREF(r);
      PyErr_Clear();
    }
  }
  PyErr_Restore(type, value, tb);
}

/* The interpreter's own fork protocol, as os.fork() runs it. */
static void hook_fork(void *ctx, pf_team_phase phase) {
  if (phase == PF_TEAM_BEFORE) PyOS_BeforeFork();
  else PyOS_AfterFork_Parent();
}

/* In the worker: the interpreter made whole again, then (the worker leaves
 * with _exit) what func printed flushed. */
static void hook_work(void *ctx, pf_team_phase phase) {
  if (phase == PF_TEAM_BEFORE) {
    PyOS_AfterFork_Child();
    in_worker_process = 1;
  } else {
    flush_std_streams();
  }
}

/* Blocked waits run without the GIL. */
static void hook_wait(void *ctx, pf_team_phase phase) {
  pfpy_waiter *waiter = &((job *)ctx)->waiter;
  if (phase == PF_TEAM_BEFORE) pfpy_waiter_release(waiter);
  else pfpy_waiter_acquire(waiter);
}

/* Ctrl-C and the progress callable (the team keeps its own timeout). */
static int hook_between_waits(void *ctx, int64_t done, int64_t total) {
  job *j = ctx;
  return pfpy_waiter_check(&j->waiter, j->offset + done, j->size);
}

/* In a worker process. */
static int team_chunk(void *ctx, pf_team_worker *worker, int64_t start,
                      int64_t stop) {
  job *j = ctx;
  int id = pf_team_worker_id(worker);
  bound b = {.team = worker};
  int64_t failed = -1;
  if (run_range(j, j->offset + start, j->offset + stop, NULL, id, &b,
                &failed) == 0)
    return 0;
  PyObject *packed = NULL;
  if (j->exc != NULL) {
    pfpy_state *state = pfpy_state_of(j->module);
    packed = PyObject_CallOneArg(state->pack_exception, j->exc);
    PyErr_Clear();
  }
  /* The team counts from j->offset: report the index in its terms (the
   * caller adds the offset back). */
  if (packed != NULL && PyBytes_Check(packed))
    pf_team_worker_fail(worker, j->failed_index - j->offset,
                        PyBytes_AS_STRING(packed),
                        (size_t)PyBytes_GET_SIZE(packed));
  else
    pf_team_worker_fail(worker, j->failed_index - j->offset, NULL, 0);
  Py_XDECREF(packed);
  return PF_EKERNEL;
}

/* OSError(errno, message) for PF_ESYS -- the errno picks the subclass
 * (BlockingIOError for EAGAIN), the message says what failed ("cannot fork
 * worker 3 of 8: ..."); other codes as pfpy_raise. */
static void raise_team_error(const job *j, int rc, const pf_error *err) {
  if (rc == PF_ESYS && err->sys_errno != 0) {
    pfpy_raise_object(PyObject_CallFunction(PyExc_OSError, "is",
                                            err->sys_errno, err->message));
    return;
  }
  pfpy_raise(j->module, rc, err);
}

static PyObject *optional_int(int64_t v, int present) {
  if (!present) Py_RETURN_NONE;
  return PyLong_FromLongLong(v);
}

/* parfill.WorkerDiedError for the worker the report names. */
static void raise_worker_died(const job *j, const pf_team_report *report,
                              const pf_error *err) {
  int held = report->chunk_start >= 0;
  PyObject *args[] = {
      PyLong_FromLong(report->worker), PyLong_FromLong(report->pid),
      optional_int(report->exit_status, report->term_signal == 0),
      optional_int(report->term_signal, report->term_signal != 0),
      optional_int(j->offset + report->chunk_start, held),
      optional_int(j->offset + report->chunk_stop, held)};
  int ok = 1;
  for (int a = 0; a < 6; a++) ok = ok && args[a] != NULL;
  PyObject *exc = NULL;
  if (ok)
    exc = PyObject_Vectorcall(pfpy_state_of(j->module)->worker_died, args, 6,
                              NULL);
  for (int a = 0; a < 6; a++) Py_XDECREF(args[a]);
  if (exc != NULL && !held) {
    /* It held no chunk: the team's message says how often that happened. */
    PyObject *r = PyObject_CallMethod(exc, "add_note", "s", err->message);
    Py_XDECREF(r);
    PyErr_Clear();
  }
  pfpy_raise_object(exc);
}

/* Raises what the caller sees for pf_team_run's code `rc` (nonzero). */
static void raise_team_failure(const job *j, int rc,
                               const pf_team_report *report,
                               const pf_error *err) {
  if (rc == PF_EKERNEL) {
    PyObject *payload = PyBytes_FromStringAndSize(
        report->payload, (Py_ssize_t)report->payload_size);
    if (payload == NULL) return;
    raise_element_failure(j, payload, j->offset + report->failed_index,
                          report->worker, report->pid);
    Py_DECREF(payload);
  } else if (rc == PF_EWORKER) {
    raise_worker_died(j, report, err);
  } else {
    raise_team_error(j, rc, err);
  }
}

static int fill_processes(job *j, const fill_args *a) {
  pf_team_options o = PF_TEAM_OPTIONS_DEFAULTS;
  o.workers = a->workers;
  o.schedule = a->schedule;
  o.chunk = a->chunk;
  o.retries = a->retries;
  o.timeout = a->timeout;
  o.error_capacity = 1 << 20;
  pf_team_hooks hooks = {.ctx = j,
                         .around_fork = hook_fork,
                         .around_work = hook_work,
                         .around_wait = hook_wait,
                         .between_waits = hook_between_waits};
  pf_team_report report;
  pf_error err = {0};
  flush_std_streams();
  int rc = pf_team_run(j->size - j->offset, &o, &hooks, team_chunk, j, &report,
                       &err);
  /* Ctrl-C or the progress callable's error says more than the code. */
  if (rc != 0 && !(rc == PF_ECANCELED && PyErr_Occurred()))
    raise_team_failure(j, rc, &report, &err);
  free(report.payload);
  return rc;
}

/* ------------------------------------------------------------------ entry */

/* A weak reference to `array` (None: none): NumPy refuses to resize arrays
 * that have one. NULL with an exception set. */
static PyObject *resize_guard(PyObject *array) {
  if (array == NULL || array == Py_None) Py_RETURN_NONE;
  return PyWeakref_NewRef(array, NULL);
}

/* A new job for filling a->out with a->func (one owner: the caller), or
 * NULL with an exception set. */
static job *job_new(PyObject *module, const fill_args *a) {
  /* On the heap: a threads fill may leave kernels running past its return. */
  job *j = calloc(1, sizeof *j);
  if (j == NULL) {
    PyErr_NoMemory();
    return NULL;
  }
  atomic_init(&j->refs, 1);
  j->module = module;
  j->func = Py_NewRef(a->func);
  j->out = Py_NewRef((PyObject *)a->out);
  j->vectorized = a->vectorized;
  j->descr = PyArray_DESCR(a->out);
  j->size = PyArray_SIZE(a->out);
  j->offset = a->start;
  if (a->window.present) {
    j->windowed = 1;
    for (int d = 0; d < a->window.w.ndim; d++) {
      j->origin[d] = a->window.origin[d];
      j->whole[d] = a->window.shape[d];
    }
  }
  return j;
}

/* Runs the backend; returns the next index to fill, or -1 with an
 * exception set. */
static int64_t fill_backend(job *j, const fill_args *a) {
  switch (a->backend) {
    case BACKEND_SERIAL: {
      int64_t remaining = j->size - a->start > 0 ? j->size - a->start : 1;
      pfpy_waiter_init(&j->waiter, a->progress, a->timeout);
      return fill_serial(j, a->start, a->chunk > 0 ? a->chunk : remaining,
                         a->budget);
    }
    case BACKEND_THREADS:
      if (j->size == 0) return 0;
      return fill_threads(j, a) == 0 ? j->size : -1;
    case BACKEND_PROCESSES:
      /* The team's own timeout; the waiter only checks signals, progress. */
      pfpy_waiter_init(&j->waiter, a->progress, -1);
      return fill_processes(j, a) == 0 ? j->size : -1;
  }
  return -1;
}

static PyObject *fill_callable_impl(PyObject *module, const fill_args *a) {
  job *j = job_new(module, a);
  if (j == NULL) return NULL;
  PyObject *weak_out = NULL, *weak_guard = NULL, *result = NULL;
  if (pfpy_array_describe(a->out, &j->arr) < 0) goto done;
  j->itemsize = pf_dtype_size(j->arr.dtype);
  weak_out = resize_guard((PyObject *)a->out);
  weak_guard = weak_out != NULL ? resize_guard(a->guard) : NULL;
  if (weak_guard == NULL) goto done;
  int64_t next = fill_backend(j, a);
  /* A failure in func (serial; threads raised theirs): raise it with its
   * note. */
  if (j->exc != NULL && !PyErr_Occurred()) raise_job_failure(j);
  if (next >= 0 && !PyErr_Occurred()) result = PyLong_FromLongLong(next);
done:
  Py_XDECREF(weak_out);
  Py_XDECREF(weak_guard);
  job_unref(j, 1);
  return result;
}

/* The backend named `name`; ValueError and -1 if there is none. */
static int backend_parse(const char *name, backend *b) {
  static const char *const names[] = {"serial", "threads", "processes"};
  for (int k = 0; k < 3; k++) {
    if (strcmp(name, names[k]) == 0) {
      *b = (backend)k;
      return 0;
    }
  }
  PyErr_Format(PyExc_ValueError, "unknown backend %s", name);
  return -1;
}

PyObject *pfpy_fill_callable(PyObject *module, PyObject *args,
                             PyObject *kwargs) {
  static char *keywords[] = {"func", "out", "vectorized", "backend", "workers",
                             "schedule", "chunk", "start", "budget", "progress",
                             "timeout", "retries", "guard", "window", NULL};
  fill_args a = {.progress = Py_None, .guard = Py_None, .workers = 1,
                 .schedule = PF_SCHEDULE_DYNAMIC, .budget = -1,
                 .timeout = -1};
  PyObject *schedule_name = NULL, *window = Py_None;
  const char *backend_name = "serial";
  long long chunk = 0, start = 0;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "OO!|$psiOLLdOdiOO:fill_callable", keywords, &a.func,
          &PyArray_Type, &a.out, &a.vectorized, &backend_name, &a.workers,
          &schedule_name, &chunk, &start, &a.budget, &a.progress, &a.timeout,
          &a.retries, &a.guard, &window))
    return NULL;
  if (!PyCallable_Check(a.func)) {
    PyErr_Format(PyExc_TypeError, "func must be callable, not %.100s",
                 Py_TYPE(a.func)->tp_name);
    return NULL;
  }
  if (PyArray_FailUnlessWriteable(a.out, "out") < 0) return NULL;
  if (schedule_name != NULL &&
      pfpy_schedule_parse(schedule_name, &a.schedule) < 0)
    return NULL;
  if (a.workers < 1 || chunk < 0 || a.retries < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "workers must be >= 1, chunk and retries >= 0");
    return NULL;
  }
  if (backend_parse(backend_name, &a.backend) < 0) return NULL;
  if (a.backend == BACKEND_THREADS && start != 0) {
    PyErr_SetString(PyExc_ValueError, "threads fill from index 0");
    return NULL;
  }
  if (start < 0 || start > PyArray_SIZE(a.out)) {
    PyErr_SetString(PyExc_ValueError, "start out of range");
    return NULL;
  }
  if (pfpy_window_parse(window, a.out, &a.window) < 0) return NULL;
  a.chunk = chunk;
  a.start = start;
  return fill_callable_impl(module, &a);
}

PyObject *pfpy_in_worker(PyObject *module, PyObject *unused) {
  return PyBool_FromLong(in_worker_process);
}
