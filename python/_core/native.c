/*
 * native.c -- fills from native functions: _core.fill_native(address, kind,
 * out, ctx, workers, schedule, chunk, progress, timeout).
 *
 * parfill._native reads the function's ctypes prototype and hands over its
 * address and kind ("element", "index" or "block") and the ctx address; here
 * they become a pf_native and only pf_native_fill runs without the GIL (the
 * waiter takes it back briefly for Ctrl-C, progress and the timeout). A
 * ctypes callback wrapping a Python function still works: ctypes takes the
 * GIL itself when it is called.
 */
#include "core.h"

#include <stdatomic.h>
#include <string.h>

/* An integer address (0 allowed for ctx) from a Python int. */
static int address_from(PyObject *obj, const char *what, void **address) {
  if (!PyLong_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "%s must be an int address, not %.100s",
                 what, Py_TYPE(obj)->tp_name);
    return -1;
  }
  *address = PyLong_AsVoidPtr(obj);
  return *address == NULL && PyErr_Occurred() ? -1 : 0;
}

/* The output's reference while a fill may outlive the call. Whoever of the
 * fill's release and the returning caller comes second drops it: the caller
 * directly (it has the GIL), a late release through a pending call. */
enum { HOLD_FILLING, HOLD_RELEASED, HOLD_RETURNED };

typedef struct out_hold {
  PyObject *out;
  _Atomic int state;
} out_hold;

static void hold_release(void *ctx) {
  out_hold *hold = ctx;
  if (atomic_exchange(&hold->state, HOLD_RELEASED) == HOLD_RETURNED) {
    pfpy_decref_later(hold->out);
    PyMem_RawFree(hold);
  }
}

/* What pf_native_fill needs, for pfpy_fill_run. */
typedef struct native_call {
  pf_native native;
  pf_array arr;
  out_hold *hold; /* element and index functions; NULL for block ones */
} native_call;

static int native_run(void *ctx, const pf_fill_options *o, pf_error *err) {
  native_call *c = ctx;
  return pf_native_fill(&c->native, &c->arr, o, err);
}

/* The caller's side of the hold: the second of it and the release drops out. */
static void native_done(void *ctx, int rc, const pf_error *err) {
  (void)rc;
  (void)err;
  out_hold *hold = ((native_call *)ctx)->hold;
  if (hold != NULL &&
      atomic_exchange(&hold->state, HOLD_RETURNED) == HOLD_RELEASED) {
    Py_DECREF(hold->out);
    PyMem_RawFree(hold);
  }
}

static PyObject *fill_native_impl(PyObject *module, const pf_native *native,
                                  PyArrayObject *out,
                                  const pfpy_pool_args *pool) {
  native_call call = {.native = *native};
  if (pfpy_array_describe(out, &call.arr) < 0) return NULL;
  pfpy_fill fill;
  pfpy_fill_init(&fill, pool->progress, pool->timeout, pool->workers,
                 pool->schedule, pool->chunk);
  fill.options.window = pfpy_window_get(&pool->window);
  /* Element and index functions: a cancel or timeout returns at once, even
   * while a call of the function runs for seconds; that call's results
   * still land in `out`, so the fill owns a reference to it until its last
   * call returned (native.ctx, unused by these kinds). Block functions get
   * native.ctx themselves: those fills wait. */
  if (call.native.kind != PF_NATIVE_BLOCK) {
    out_hold *hold = PyMem_RawMalloc(sizeof *hold);
    if (hold == NULL) return PyErr_NoMemory();
    hold->out = Py_NewRef((PyObject *)out);
    atomic_init(&hold->state, HOLD_FILLING);
    call.hold = hold;
    call.native.ctx = hold;
    fill.options.release = hold_release;
  }
  if (pfpy_fill_run(module, &fill, native_run, native_done, &call) != 0)
    return NULL;
  Py_RETURN_NONE;
}

PyObject *pfpy_fill_native(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"address", "kind",     "out",   "ctx",
                             "workers", "schedule", "chunk", "progress",
                             "timeout", "window", NULL};
  PyObject *address_obj, *out, *ctx_obj = NULL;
  const char *kind;
  pfpy_pool_args pool = PFPY_POOL_ARGS_INIT;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "OsO!|OiOLOdO:fill_native", keywords, &address_obj,
          &kind, &PyArray_Type, &out, &ctx_obj, &pool.workers,
          &pool.schedule_name, &pool.chunk, &pool.progress, &pool.timeout,
          &pool.window_obj))
    return NULL;
  pf_native native = {0};
  void *fn;
  if (address_from(address_obj, "address", &fn) < 0) return NULL;
  if (fn == NULL) {
    PyErr_SetString(PyExc_ValueError, "the native function's address is NULL");
    return NULL;
  }
  if (ctx_obj != NULL && ctx_obj != Py_None &&
      address_from(ctx_obj, "ctx", &native.ctx) < 0)
    return NULL;
  /* An address to a function pointer: implementation-defined in C, exact on
   * every platform CPython and ctypes run on. */
  if (strcmp(kind, "element") == 0) {
    native.kind = PF_NATIVE_ELEMENT;
    native.fn.element = (pf_element_fn)(uintptr_t)fn;
  } else if (strcmp(kind, "index") == 0) {
    native.kind = PF_NATIVE_INDEX;
    native.fn.index = (pf_index_fn)(uintptr_t)fn;
  } else if (strcmp(kind, "block") == 0) {
    native.kind = PF_NATIVE_BLOCK;
    native.fn.block = (pf_block_fn)(uintptr_t)fn;
  } else {
    PyErr_Format(PyExc_ValueError,
                 "kind must be 'element', 'index' or 'block', not '%s'", kind);
    return NULL;
  }
  if (native.kind != PF_NATIVE_BLOCK && native.ctx != NULL) {
    PyErr_SetString(PyExc_TypeError, "ctx applies to native block functions");
    return NULL;
  }
  if (pfpy_pool_args_check(out, &pool) < 0) return NULL;
  return fill_native_impl(module, &native, (PyArrayObject *)out, &pool);
}
