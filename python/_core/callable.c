/*
 * callable.c -- fills from Python callables.
 *
 * One loop computes the elements [start, stop) of a job: per element (a
 * vectorcall with the N-d index as Python ints, the result stored as
 * `a[idx] = value` stores it: PyArray_Pack, behind exact fast paths for
 * float64 and int64), or per block (vectorized: one int64 index array per
 * axis, the result stored as `a.reshape(-1)[start:stop] = result` stores it:
 * PyArray_CopyObject on a view). Three backends run that loop:
 *
 *   serial     on the caller's thread; with a time budget this is how `auto`
 *              measures the first elements before choosing;
 *   threads    on libparfill's pool, each block under the GIL (pays off when
 *              func releases it, e.g. NumPy work in vectorized mode);
 *   processes  in workers forked by a process team (pf_team_run), writing into
 *              the output, which the caller placed in MAP_SHARED memory.
 *
 * A failure in serial or threads keeps the exception object itself; in a
 * worker process it is packed by parfill._errors.pack_exception and travels in
 * the team's failure payload. parfill._errors.element_failed turns either into
 * the exception the caller sees, with a note naming the element and worker.
 */
#include "core.h"

#include <string.h>
#include <unistd.h>

/* Set in a worker process: nested fills there run serially (the Python layer
 * asks through in_worker()). */
static int in_worker_process;

typedef struct job {
  PyObject *module;
  PyObject *func;
  PyArray_Descr *descr; /* out's dtype (borrowed) */
  pf_array arr;         /* out's layout */
  int64_t size;
  int64_t offset;       /* process teams run [offset, size) as [0, size-offset) */
  int vectorized;
  size_t itemsize;
  /* First failure in serial/threads; GIL-protected. */
  PyObject *exc;
  int64_t failed_index;
  int failed_worker;
  pfpy_waiter waiter;
} job;

/* ------------------------------------------------------------- destinations */

/* Walks the output from a flat index in C order: the N-d index (the callable's
 * arguments) and the element's address, either in a contiguous block or with
 * the array's strides. */
typedef struct cursor {
  const pf_array *arr;
  int64_t index[PF_MAX_DIMS];
  char *ptr;
  int64_t step; /* itemsize for a contiguous block, 0 to use strides */
} cursor;

static void cursor_init(cursor *c, const pf_array *arr, int64_t flat,
                        char *block, size_t itemsize) {
  c->arr = arr;
  pf_index_unravel(arr->ndim, arr->shape, flat, c->index);
  if (block != NULL) {
    c->ptr = block;
    c->step = (int64_t)itemsize;
  } else {
    c->ptr = arr->data;
    for (int d = 0; d < arr->ndim; d++) c->ptr += c->index[d] * arr->strides[d];
    c->step = 0;
  }
}

/* Moves to the next element; returns the outermost axis whose index changed
 * (ndim when ndim is 0). */
static int cursor_next(cursor *c) {
  const pf_array *a = c->arr;
  int d = a->ndim - 1;
  if (d < 0) return 0;
  if (c->step) c->ptr += c->step;
  for (;;) {
    c->index[d]++;
    if (!c->step) c->ptr += a->strides[d];
    if (c->index[d] < a->shape[d] || d == 0) return d;
    if (!c->step) c->ptr -= c->index[d] * a->strides[d];
    c->index[d] = 0;
    d--;
  }
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

/* Records the pending exception as the job's failure at `index` (first wins). */
static void record_failure(job *j, int64_t index, int worker) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb != NULL && value != NULL) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  if (j->exc == NULL && value != NULL) {
    j->exc = value;
    j->failed_index = index;
    j->failed_worker = worker;
  } else {
    Py_XDECREF(value);
  }
}

/* ------------------------------------------------------------ the loops */

/* Per element. `block` is a contiguous destination for [start, stop), or NULL
 * to write into the array. Returns 0, or -1 with the failure recorded. */
static int run_elements(job *j, int64_t start, int64_t stop, char *block,
                        int worker) {
  const int ndim = j->arr.ndim;
  cursor c;
  cursor_init(&c, &j->arr, start, block, j->itemsize);
  PyObject *argv[PF_MAX_DIMS + 1] = {NULL};
  PyObject **args = argv + 1; /* argv[0] is scratch for the callee */
  int rc = 0;
  for (int d = 0; d < ndim; d++) {
    args[d] = PyLong_FromLongLong(c.index[d]);
    if (args[d] == NULL) {
      record_failure(j, start, worker);
      rc = -1;
      goto done;
    }
  }
  const size_t nargs = (size_t)ndim | PY_VECTORCALL_ARGUMENTS_OFFSET;
  for (int64_t k = start; k < stop; k++) {
    PyObject *value = PyObject_Vectorcall(j->func, args, nargs, NULL);
    if (value == NULL || store(j, c.ptr, value) < 0) {
      Py_XDECREF(value);
      record_failure(j, k, worker);
      rc = -1;
      goto done;
    }
    Py_DECREF(value);
    if (k + 1 == stop) break;
    /* Only the axes that moved get new index objects. */
    for (int d = cursor_next(&c); d < ndim; d++) {
      Py_SETREF(args[d], PyLong_FromLongLong(c.index[d]));
      if (args[d] == NULL) {
        record_failure(j, k + 1, worker);
        rc = -1;
        goto done;
      }
    }
  }
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

/* One vectorized call for [start, stop). */
static int run_block(job *j, int64_t start, int64_t stop, char *block,
                     int worker) {
  const int ndim = j->arr.ndim;
  npy_intp count = (npy_intp)(stop - start);
  PyObject *argv[PF_MAX_DIMS + 1] = {NULL};
  PyObject **args = argv + 1;
  PyObject *result = NULL, *target = NULL;
  int contiguous = block != NULL || pf_array_is_contiguous(&j->arr);
  int rc = -1;
  for (int d = 0; d < ndim; d++) {
    args[d] = PyArray_SimpleNew(1, &count, NPY_INT64);
    if (args[d] == NULL) goto done;
  }
  cursor c;
  cursor_init(&c, &j->arr, start, block, j->itemsize);
  for (npy_intp k = 0; k < count; k++) {
    for (int d = 0; d < ndim; d++)
      ((int64_t *)PyArray_DATA((PyArrayObject *)args[d]))[k] = c.index[d];
    cursor_next(&c);
  }
  result = PyObject_Vectorcall(j->func, args,
                               (size_t)ndim | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               NULL);
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
  if (rc < 0) record_failure(j, start, worker);
  Py_XDECREF(result);
  Py_XDECREF(target);
  for (int d = 0; d < ndim; d++) Py_XDECREF(args[d]);
  return rc;
}

static int run_range(job *j, int64_t start, int64_t stop, char *block,
                     int worker) {
  return j->vectorized ? run_block(j, start, stop, block, worker)
                       : run_elements(j, start, stop, block, worker);
}

/* ---------------------------------------------------------------- serial */

/* Runs [start, size) in chunks on this thread until done, a failure, a
 * signal, the timeout or (budget > 0) the time budget; returns the next index
 * or -1 with an exception set. */
static int64_t fill_serial(job *j, int64_t start, int64_t chunk,
                           double budget) {
  double t0 = pfpy_monotonic();
  while (start < j->size) {
    int64_t stop = j->size - start < chunk ? j->size : start + chunk;
    if (run_range(j, start, stop, NULL, 0) < 0) return -1;
    start = stop;
    int rc = pfpy_waiter_check(&j->waiter, start, j->size);
    if (rc != 0) {
      if (rc == PF_ETIMEDOUT) pfpy_raise(j->module, rc, NULL);
      return -1;
    }
    if (budget > 0 && pfpy_monotonic() - t0 > budget) break;
  }
  return start;
}

/* --------------------------------------------------------------- threads */

static int thread_kernel(void *ctx, int64_t start, int64_t count, void *out,
                         int worker) {
  job *j = ctx;
  PyGILState_STATE gil = PyGILState_Ensure();
  int failed = j->exc != NULL || run_range(j, start, start + count, out, worker);
  PyGILState_Release(gil);
  return failed ? PF_EKERNEL : 0;
}

static int fill_threads(job *j, int workers, pf_schedule schedule,
                        int64_t chunk) {
  pf_fill_options o =
      pfpy_pool_options(&j->waiter, workers, schedule, chunk);
  pf_error err = {0};
  pfpy_waiter_release(&j->waiter);
  int rc = pf_fill(&j->arr, thread_kernel, j, &o, &err);
  pfpy_waiter_acquire(&j->waiter);
  if (rc == 0 || rc == PF_EKERNEL || (rc == PF_ECANCELED && PyErr_Occurred()))
    return rc;
  pfpy_raise(j->module, rc, &err);
  return rc;
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

static void hook_prepare(void *ctx) { PyOS_BeforeFork(); }
static void hook_parent(void *ctx) { PyOS_AfterFork_Parent(); }
static void hook_child(void *ctx) {
  PyOS_AfterFork_Child();
  in_worker_process = 1;
}
static void hook_child_exit(void *ctx) { flush_std_streams(); }
static void hook_block(void *ctx) { pfpy_waiter_release(&((job *)ctx)->waiter); }
static void hook_unblock(void *ctx) { pfpy_waiter_acquire(&((job *)ctx)->waiter); }
static int hook_wait(void *ctx, int64_t done, int64_t total) {
  job *j = ctx;
  return pfpy_waiter_check(&j->waiter, j->offset + done, j->size);
}

/* In a worker process. */
static int team_chunk(void *ctx, pf_team_worker *worker, int64_t start,
                      int64_t stop) {
  job *j = ctx;
  int id = pf_team_worker_id(worker);
  if (run_range(j, j->offset + start, j->offset + stop, NULL, id) == 0)
    return 0;
  PyObject *packed = NULL;
  if (j->exc != NULL) {
    pfpy_state *state = pfpy_state_of(j->module);
    packed = PyObject_CallOneArg(state->pack_exception, j->exc);
    PyErr_Clear();
  }
  if (packed != NULL && PyBytes_Check(packed))
    /* The team counts from j->offset: report the index in its terms (the
     * caller adds the offset back). */
    pf_team_worker_fail(worker, j->failed_index - j->offset,
                        PyBytes_AS_STRING(packed),
                        (size_t)PyBytes_GET_SIZE(packed));
  else
    pf_team_worker_fail(worker, j->failed_index - j->offset, NULL, 0);
  Py_XDECREF(packed);
  return PF_EKERNEL;
}

static PyObject *optional_int(int64_t v, int present) {
  if (!present) Py_RETURN_NONE;
  return PyLong_FromLongLong(v);
}

static int fill_processes(job *j, int workers, pf_schedule schedule,
                          int64_t chunk, int retries, double timeout) {
  pf_team_options o = PF_TEAM_OPTIONS_DEFAULTS;
  o.workers = workers;
  o.schedule = schedule;
  o.chunk = chunk;
  o.retries = retries;
  o.timeout = timeout;
  o.error_capacity = 1 << 20;
  pf_team_hooks hooks = {
      .ctx = j, .prepare = hook_prepare, .parent = hook_parent,
      .child = hook_child, .child_exit = hook_child_exit, .block = hook_block,
      .unblock = hook_unblock, .wait = hook_wait};
  pf_team_report report;
  pf_error err = {0};
  flush_std_streams();
  int rc = pf_team_run(j->size - j->offset, &o, &hooks, team_chunk, j, &report,
                       &err);
  if (rc == 0 || (rc == PF_ECANCELED && PyErr_Occurred())) goto done;
  pfpy_state *state = pfpy_state_of(j->module);
  PyObject *exc = NULL;
  if (rc == PF_EKERNEL) {
    PyObject *payload = PyBytes_FromStringAndSize(report.payload,
                                                  (Py_ssize_t)report.payload_size);
    PyObject *shape = PyTuple_New(j->arr.ndim);
    if (payload != NULL && shape != NULL) {
      for (int d = 0; d < j->arr.ndim; d++)
        PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(j->arr.shape[d]));
      exc = PyObject_CallFunction(state->element_failed, "OOLii", payload,
                                  shape, (long long)(j->offset + report.failed_index),
                                  report.worker, report.pid);
    }
    Py_XDECREF(payload);
    Py_XDECREF(shape);
  } else if (rc == PF_EWORKER) {
    int held = report.chunk_start >= 0;
    PyObject *args[] = {
        PyLong_FromLong(report.worker), PyLong_FromLong(report.pid),
        optional_int(report.exit_status, report.term_signal == 0),
        optional_int(report.term_signal, report.term_signal != 0),
        optional_int(j->offset + report.chunk_start, held),
        optional_int(j->offset + report.chunk_stop, held)};
    int ok = 1;
    for (int a = 0; a < 6; a++) ok = ok && args[a] != NULL;
    if (ok) exc = PyObject_Vectorcall(state->worker_died, args, 6, NULL);
    for (int a = 0; a < 6; a++) Py_XDECREF(args[a]);
  } else {
    pfpy_raise(j->module, rc, &err);
  }
  if (exc != NULL) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
done:
  free(report.payload);
  return rc;
}

/* ------------------------------------------------------------------ entry */

PyObject *pfpy_fill_callable(PyObject *module, PyObject *args,
                             PyObject *kwargs) {
  static char *keywords[] = {"func", "out", "vectorized", "backend", "workers",
                             "schedule", "chunk", "start", "budget", "progress",
                             "timeout", "retries", NULL};
  PyObject *func, *out, *schedule_name = NULL, *progress = Py_None;
  const char *backend = "serial";
  int vectorized = 0, workers = 1, retries = 0;
  long long chunk = 0, start = 0;
  double budget = -1, timeout = -1;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "OO!|$psiOLLdOdi:fill_callable", keywords, &func,
          &PyArray_Type, &out, &vectorized, &backend, &workers, &schedule_name,
          &chunk, &start, &budget, &progress, &timeout, &retries))
    return NULL;
  if (!PyCallable_Check(func)) {
    PyErr_Format(PyExc_TypeError, "func must be callable, not %.100s",
                 Py_TYPE(func)->tp_name);
    return NULL;
  }
  if (PyArray_FailUnlessWriteable((PyArrayObject *)out, "out") < 0) return NULL;
  pf_schedule schedule = PF_SCHEDULE_DYNAMIC;
  if (schedule_name != NULL && pfpy_schedule_parse(schedule_name, &schedule) < 0)
    return NULL;
  if (workers < 1 || chunk < 0 || retries < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "workers must be >= 1, chunk and retries >= 0");
    return NULL;
  }
  job j = {.module = module, .func = func, .vectorized = vectorized};
  j.descr = PyArray_DESCR((PyArrayObject *)out);
  if (pfpy_array_describe((PyArrayObject *)out, &j.arr) < 0) return NULL;
  j.itemsize = pf_dtype_size(j.arr.dtype);
  j.size = PyArray_SIZE((PyArrayObject *)out);
  if (start < 0 || start > j.size) {
    PyErr_SetString(PyExc_ValueError, "start out of range");
    return NULL;
  }
  j.offset = start;
  int64_t remaining = j.size - start > 0 ? j.size - start : 1;
  int rc;
  int64_t next = j.size;
  if (strcmp(backend, "serial") == 0) {
    pfpy_waiter_init(&j.waiter, progress, timeout);
    next = fill_serial(&j, start, chunk > 0 ? chunk : remaining, budget);
    rc = next < 0 ? -1 : 0;
  } else if (strcmp(backend, "threads") == 0) {
    if (start != 0) {
      PyErr_SetString(PyExc_ValueError, "threads fill from index 0");
      return NULL;
    }
    pfpy_waiter_init(&j.waiter, progress, timeout);
    rc = fill_threads(&j, workers, schedule, chunk);
  } else if (strcmp(backend, "processes") == 0) {
    pfpy_waiter_init(&j.waiter, progress, -1);
    rc = fill_processes(&j, workers, schedule, chunk, retries, timeout);
  } else {
    PyErr_Format(PyExc_ValueError, "unknown backend %s", backend);
    return NULL;
  }
  if (j.exc != NULL && !PyErr_Occurred()) {
    /* A failure in func (serial, threads): raise it with its note. */
    pfpy_state *state = pfpy_state_of(module);
    PyObject *shape = PyTuple_New(j.arr.ndim);
    PyObject *exc = NULL;
    if (shape != NULL) {
      for (int d = 0; d < j.arr.ndim; d++)
        PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(j.arr.shape[d]));
      exc = PyObject_CallFunction(state->element_failed, "OOLii", j.exc, shape,
                                  (long long)j.failed_index, j.failed_worker, 0);
      Py_DECREF(shape);
    }
    if (exc != NULL) {
      PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
      Py_DECREF(exc);
    }
  }
  Py_XDECREF(j.exc);
  if (rc != 0 || PyErr_Occurred()) return NULL;
  return PyLong_FromLongLong(next);
}

PyObject *pfpy_in_worker(PyObject *module, PyObject *unused) {
  return PyBool_FromLong(in_worker_process);
}
