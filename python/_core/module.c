/*
 * module.c -- the parfill._core extension: module definition (multi-phase
 * init, per-module state) and the helpers every fill shares.
 */
#define PFPY_MODULE_C
#include "core.h"

#include <string.h>
#include <time.h>

pfpy_state *pfpy_state_of(PyObject *module) {
  return (pfpy_state *)PyModule_GetState(module);
}

double pfpy_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dtype_from_numpy(PyArray_Descr *descr, pf_dtype *dtype) {
  if (!PyArray_ISNBO(descr->byteorder)) return -1;
  switch (descr->type_num) {
    case NPY_BOOL: *dtype = PF_BOOL; return 0;
    case NPY_BYTE: *dtype = PF_INT8; return 0;
    case NPY_UBYTE: *dtype = PF_UINT8; return 0;
    case NPY_SHORT: *dtype = PF_INT16; return 0;
    case NPY_USHORT: *dtype = PF_UINT16; return 0;
    case NPY_HALF: *dtype = PF_FLOAT16; return 0;
    case NPY_FLOAT: *dtype = PF_FLOAT32; return 0;
    case NPY_DOUBLE: *dtype = PF_FLOAT64; return 0;
    case NPY_LONGDOUBLE: *dtype = PF_LONGDOUBLE; return 0;
    case NPY_CFLOAT: *dtype = PF_COMPLEX64; return 0;
    case NPY_CDOUBLE: *dtype = PF_COMPLEX128; return 0;
    case NPY_CLONGDOUBLE: *dtype = PF_CLONGDOUBLE; return 0;
    default: break;
  }
  /* int/long/longlong alias by size on each platform. */
  if (PyDataType_ISSIGNED(descr) && PyDataType_ISINTEGER(descr)) {
    switch (PyDataType_ELSIZE(descr)) {
      case 4: *dtype = PF_INT32; return 0;
      case 8: *dtype = PF_INT64; return 0;
    }
  } else if (PyDataType_ISUNSIGNED(descr)) {
    switch (PyDataType_ELSIZE(descr)) {
      case 4: *dtype = PF_UINT32; return 0;
      case 8: *dtype = PF_UINT64; return 0;
    }
  }
  return -1;
}

int pfpy_array_describe(PyArrayObject *arr, pf_array *out) {
  int ndim = PyArray_NDIM(arr);
  if (dtype_from_numpy(PyArray_DESCR(arr), &out->dtype) < 0) {
    PyErr_Format(PyExc_TypeError,
                 "parfill fills bool, integer, floating and complex arrays in "
                 "native byte order, not %R", (PyObject *)PyArray_DESCR(arr));
    return -1;
  }
  if (ndim > PF_MAX_DIMS) {
    PyErr_Format(PyExc_ValueError, "at most %d dimensions are supported",
                 PF_MAX_DIMS);
    return -1;
  }
  out->data = PyArray_DATA(arr);
  out->ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    out->shape[d] = PyArray_DIM(arr, d);
    out->strides[d] = PyArray_STRIDE(arr, d);
  }
  /* Every backend refuses these, with the message pf_fill gives. */
  if (pf_array_overlaps(out)) {
    PyErr_SetString(PyExc_ValueError, PF_OVERLAP_MESSAGE);
    return -1;
  }
  return 0;
}

int pfpy_schedule_parse(PyObject *name, pf_schedule *schedule) {
  const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
  if (text == NULL || pf_schedule_parse(text, schedule) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError,
                 "schedule must be 'static', 'dynamic' or 'guided', not %R",
                 name);
    return -1;
  }
  return 0;
}

PyObject *pfpy_raise(PyObject *module, int code, const pf_error *err) {
  const char *message =
      err != NULL && err->message[0] ? err->message : pf_strerror(code);
  switch (code) {
    case PF_ENOMEM:
      return PyErr_NoMemory();
    case PF_ETIMEDOUT:
      PyErr_SetString(pfpy_state_of(module)->TimeoutError, message);
      return NULL;
    case PF_ESYS:
    case PF_EIO:
    case PF_ENOSPC:
    case PF_EEXIST:
      if (err != NULL && err->sys_errno != 0) {
        errno = err->sys_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
      }
      PyErr_SetString(PyExc_OSError, message);
      return NULL;
    case PF_EDTYPE:
      PyErr_SetString(PyExc_TypeError, message);
      return NULL;
    case PF_ESYNTAX:
    case PF_ENAME:
    case PF_ETYPE:
    case PF_ELIMIT:
      PyErr_SetString(pfpy_state_of(module)->ExpressionError, message);
      return NULL;
    default:
      PyErr_SetString(PyExc_ValueError, message);
      return NULL;
  }
}

/* ---------------------------------------------------------------- waiting */

void pfpy_waiter_init(pfpy_waiter *waiter, PyObject *progress, double timeout) {
  waiter->thread_state = NULL;
  waiter->progress = progress == Py_None ? NULL : progress;
  waiter->deadline = timeout > 0 ? pfpy_monotonic() + timeout : 0.0;
  waiter->last_done = -1;
}

void pfpy_waiter_release(pfpy_waiter *waiter) {
  assert(waiter->thread_state == NULL);
  waiter->thread_state = PyEval_SaveThread();
}

void pfpy_waiter_acquire(pfpy_waiter *waiter) {
  assert(waiter->thread_state != NULL);
  PyEval_RestoreThread(waiter->thread_state);
  waiter->thread_state = NULL;
}

int pfpy_waiter_check(pfpy_waiter *waiter, int64_t done, int64_t total) {
  if (PyErr_CheckSignals() < 0) return PF_ECANCELED;
  if (waiter->progress != NULL && done != waiter->last_done) {
    waiter->last_done = done;
    PyObject *r = PyObject_CallFunction(waiter->progress, "LL", (long long)done,
                                        (long long)total);
    if (r == NULL) return PF_ECANCELED;
    Py_DECREF(r);
  }
  if (waiter->deadline > 0 && pfpy_monotonic() > waiter->deadline)
    return PF_ETIMEDOUT;
  return 0;
}

int pfpy_waiter_poll(void *arg, int64_t done, int64_t total) {
  pfpy_waiter *waiter = arg;
  pfpy_waiter_acquire(waiter);
  int rc = pfpy_waiter_check(waiter, done, total);
  pfpy_waiter_release(waiter);
  return rc;
}

int pfpy_check_pool_args(PyObject *out, PyObject *schedule_name, int workers,
                         long long chunk, PyObject *progress,
                         pf_schedule *schedule) {
  if (PyArray_FailUnlessWriteable((PyArrayObject *)out, "out") < 0) return -1;
  *schedule = PF_SCHEDULE_DYNAMIC;
  if (schedule_name != NULL && schedule_name != Py_None &&
      pfpy_schedule_parse(schedule_name, schedule) < 0)
    return -1;
  if (workers < 0 || chunk < 0) {
    PyErr_SetString(PyExc_ValueError, "workers and chunk must be >= 0");
    return -1;
  }
  if (progress != Py_None && !PyCallable_Check(progress)) {
    PyErr_Format(PyExc_TypeError,
                 "progress must be callable or None, not %.100s",
                 Py_TYPE(progress)->tp_name);
    return -1;
  }
  return 0;
}

int pfpy_pool_args_check(PyObject *out, pfpy_pool_args *args) {
  if (pfpy_check_pool_args(out, args->schedule_name, args->workers,
                           args->chunk, args->progress, &args->schedule) < 0)
    return -1;
  return pfpy_window_parse(args->window_obj, (PyArrayObject *)out,
                           &args->window);
}

/* A sequence of `n` ints into v (>= 0), or -1 with TypeError/ValueError. */
static int window_ints(PyObject *seq, const char *what, int n, int64_t *v) {
  PyObject *fast = PySequence_Fast(seq, "");
  if (fast == NULL) {
    PyErr_Format(PyExc_TypeError, "window %s must be a tuple of ints, not "
                 "%.100s", what, Py_TYPE(seq)->tp_name);
    return -1;
  }
  int rc = 0;
  if (PySequence_Fast_GET_SIZE(fast) != n) {
    PyErr_Format(PyExc_ValueError, "window %s has %zd dimensions, the "
                 "output %d", what, PySequence_Fast_GET_SIZE(fast), n);
    rc = -1;
  }
  for (int d = 0; rc == 0 && d < n; d++) {
    PyObject *item = PySequence_Fast_GET_ITEM(fast, d);
    if (PyBool_Check(item) || !PyIndex_Check(item)) {
      PyErr_Format(PyExc_TypeError, "window %s must hold ints, not %.100s",
                   what, Py_TYPE(item)->tp_name);
      rc = -1;
      break;
    }
    PyObject *index = PyNumber_Index(item);
    long long x = index != NULL ? PyLong_AsLongLong(index) : -1;
    Py_XDECREF(index);
    if (x == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      x = -1;
    }
    if (x < 0) {
      PyErr_Format(PyExc_ValueError, "window %s must hold ints in [0, 2**63)",
                   what);
      rc = -1;
    }
    v[d] = x;
  }
  Py_DECREF(fast);
  return rc;
}

int pfpy_window_parse(PyObject *obj, PyArrayObject *out, pfpy_window *win) {
  memset(win, 0, sizeof *win);
  if (obj == NULL || obj == Py_None) return 0;
  if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
    PyErr_SetString(PyExc_TypeError,
                    "window must be None or (whole_shape, origin)");
    return -1;
  }
  const int ndim = PyArray_NDIM(out);
  if (window_ints(PyTuple_GET_ITEM(obj, 0), "shape", ndim, win->shape) < 0 ||
      window_ints(PyTuple_GET_ITEM(obj, 1), "origin", ndim, win->origin) < 0)
    return -1;
  win->w = (pf_window){ndim, win->shape, win->origin, 0};
  int64_t box[PF_MAX_DIMS];
  for (int d = 0; d < ndim; d++) box[d] = PyArray_DIM(out, d);
  pf_error err;
  int rc = pf_window_check(&win->w, ndim, box, &err);
  if (rc != 0) {
    PyErr_SetString(PyExc_ValueError, err.message);
    return -1;
  }
  win->present = 1;
  return 0;
}

const pf_window *pfpy_window_get(const pfpy_window *win) {
  return win->present ? &win->w : NULL;
}

static int decref_pending(void *obj) {
  Py_DECREF((PyObject *)obj);
  return 0;
}

void pfpy_decref_later(void *obj) {
  /* Runs without the GIL, maybe on a pool thread after the fill returned:
   * the main thread drops the reference at its next check. A full queue
   * (Py_AddPendingCall fails) leaks the object rather than touching it
   * without the GIL. */
  if (obj != NULL) (void)Py_AddPendingCall(decref_pending, obj);
}

void pfpy_fill_init(pfpy_fill *fill, PyObject *progress, double timeout,
                    int workers, pf_schedule schedule, int64_t chunk) {
  pfpy_waiter_init(&fill->waiter, progress, timeout);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.workers = workers;
  o.schedule = schedule;
  o.chunk = chunk;
  o.progress = pfpy_waiter_poll;
  o.progress_ctx = &fill->waiter;
  /* Often enough for Ctrl-C to feel immediate. */
  o.progress_interval = 0.05;
  /* The waiter sees the deadline between progress calls; pf_fill also
   * between the blocks of a fill that runs on this thread. */
  o.timeout = timeout;
  fill->options = o;
  memset(&fill->err, 0, sizeof fill->err);
}

int pfpy_fill_run(PyObject *module, pfpy_fill *fill, pfpy_fill_fn fn,
                  pfpy_fill_done_fn done, void *ctx) {
  pfpy_waiter_release(&fill->waiter);
  int rc = fn(ctx, &fill->options, &fill->err);
  pfpy_waiter_acquire(&fill->waiter);
  if (done != NULL) done(ctx, rc, &fill->err);
  /* A pending exception says more than the code: KeyboardInterrupt or the
   * progress callable's own error behind PF_ECANCELED, or done's. */
  if (rc != 0 && !PyErr_Occurred()) pfpy_raise(module, rc, &fill->err);
  return rc;
}

int pfpy_fill_run_pool(PyObject *module, const pfpy_pool_args *args,
                       pfpy_fill_fn fn, pfpy_fill_done_fn done, void *ctx) {
  pfpy_fill fill;
  pfpy_fill_init(&fill, args->progress, args->timeout, args->workers,
                 args->schedule, args->chunk);
  fill.options.window = pfpy_window_get(&args->window);
  return pfpy_fill_run(module, &fill, fn, done, ctx);
}

PyObject *pfpy_raise_object(PyObject *exc) {
  if (exc != NULL) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
  return NULL;
}

/* ------------------------------------------------------------------ module */

static PyObject *cpu_count(PyObject *module, PyObject *unused) {
  return PyLong_FromLong(pf_cpu_count());
}

static PyMethodDef core_methods[] = {
    {"fill_callable", (PyCFunction)(void (*)(void))pfpy_fill_callable,
     METH_VARARGS | METH_KEYWORDS,
     "fill_callable(func, out, *, vectorized, backend, workers, schedule, chunk,"
     " start, budget, progress, timeout, retries) -> int\n\n"
     "Fills `out` from flat index `start` with func; returns the next index."},
    {"fill_expr", (PyCFunction)(void (*)(void))pfpy_fill_expr,
     METH_VARARGS | METH_KEYWORDS,
     "fill_expr(text, out, params, workers, schedule, chunk, progress,"
     " timeout) -> None\n\n"
     "Fills `out` with the expression's values (GIL released)."},
    {"fill_native", (PyCFunction)(void (*)(void))pfpy_fill_native,
     METH_VARARGS | METH_KEYWORDS,
     "fill_native(address, kind, out, ctx, workers, schedule, chunk, progress,"
     " timeout) -> None\n\n"
     "Fills `out` with the native function at `address` (kind 'element', "
     "'index' or 'block'; GIL released)."},
    {"fill_random", (PyCFunction)(void (*)(void))pfpy_fill_random,
     METH_VARARGS | METH_KEYWORDS,
     "fill_random(out, dist, key0, key1, stream, workers, schedule, chunk,"
     " progress, timeout) -> None\n\n"
     "Fills `out` (float32/float64) with Philox4x64-10 'uniform' or 'normal'"
     " values (GIL released)."},
    {"fill_translated", (PyCFunction)(void (*)(void))pfpy_fill_translated,
     METH_VARARGS | METH_KEYWORDS,
     "fill_translated(code, iconsts, fconsts, ndim, nregs, out, *, workers,"
     " schedule, chunk, progress, timeout, first=0) -> int\n\n"
     "Fills flat indices [first, size) of `out` with a translated program "
     "(GIL released); returns -1, or the lowest element that needs Python."},
    {"pyvm_opcodes", pfpy_pyvm_opcodes, METH_NOARGS,
     "pyvm_opcodes() -> dict\n\nThe translated-program VM's opcodes: "
     "{name: number}."},
    {"pyvm_functions", pfpy_pyvm_functions, METH_NOARGS,
     "pyvm_functions() -> dict\n\nThe VM's math functions: {name: id}."},
    {"shared_empty", (PyCFunction)(void (*)(void))pfpy_shared_empty,
     METH_VARARGS | METH_KEYWORDS,
     "shared_empty(shape, dtype) -> ndarray\n\n"
     "A new uninitialised C-contiguous array in MAP_SHARED memory (an "
     "anonymous memfd; see privatize)."},
    {"privatize", pfpy_privatize, METH_O,
     "privatize(array) -> bool\n\n"
     "Makes an array from shared_empty private copy-on-write in place (no "
     "copy; a child forked later writes its own copy); False for other "
     "arrays."},
    {"is_shared", pfpy_is_shared, METH_O,
     "is_shared(array) -> bool\n\n"
     "Whether the array's memory is in MAP_SHARED mappings (forked workers "
     "write where the caller reads)."},
    {"in_worker", pfpy_in_worker, METH_NOARGS,
     "in_worker() -> bool\n\nWhether this process is a worker of a process team."},
    {"cpu_count", cpu_count, METH_NOARGS,
     "cpu_count() -> int\n\nCPUs this process may use (affinity, cgroup quota)."},
    {NULL, NULL, 0, NULL}};

static int core_exec(PyObject *module) {
  if (PyArray_ImportNumPyAPI() < 0) return -1;
  pfpy_state *state = pfpy_state_of(module);
  PyObject *errors = PyImport_ImportModule("parfill._errors");
  if (errors == NULL) return -1;
  int ok = 1;
#define IMPORT(name) \
  ok = ok && (state->name = PyObject_GetAttrString(errors, #name)) != NULL;
  PFPY_STATE_FIELDS(IMPORT)
#undef IMPORT
  Py_DECREF(errors);
  if (!ok) return -1;
  if (PyModule_AddStringConstant(module, "version", pf_version()) < 0)
    return -1;
  return 0;
}

static int core_traverse(PyObject *module, visitproc visit, void *arg) {
  pfpy_state *state = pfpy_state_of(module);
#define VISIT(name) Py_VISIT(state->name);
  PFPY_STATE_FIELDS(VISIT)
#undef VISIT
  return 0;
}

static int core_clear(PyObject *module) {
  pfpy_state *state = pfpy_state_of(module);
#define CLEAR(name) Py_CLEAR(state->name);
  PFPY_STATE_FIELDS(CLEAR)
#undef CLEAR
  return 0;
}

static void core_free(void *module) { core_clear((PyObject *)module); }

static PyModuleDef_Slot core_slots[] = {{Py_mod_exec, core_exec},
                                        {0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "parfill._core",
    .m_doc = "libparfill for Python: fills NumPy arrays in parallel.",
    .m_size = sizeof(pfpy_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
