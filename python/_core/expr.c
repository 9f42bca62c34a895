/*
 * expr.c -- fills from expressions: _core.fill_expr(text, out, params,
 * workers, schedule, chunk, progress).
 *
 * Arguments are converted with the GIL held (parameters become pf_param
 * values, converted from a private snapshot of `params` whose tuples own the
 * names: a value's __index__ may change the caller's dict meanwhile),
 * the expression is compiled, and only pf_expr_fill runs without the GIL;
 * the waiter takes it back briefly to check for Ctrl-C and report progress.
 */
#include "core.h"

/* Characters before byte offset `bytes` of UTF-8 text (what Python's
 * str indices count). */
static Py_ssize_t char_offset(const char *text, Py_ssize_t length,
                              int64_t bytes) {
  if (bytes > length) bytes = length;
  Py_ssize_t chars = 0;
  for (int64_t k = 0; k < bytes; k++)
    chars += ((unsigned char)text[k] & 0xC0) != 0x80;
  return chars;
}

/* Raises parfill.ExpressionError(message, expression, position). */
static PyObject *expression_error(PyObject *module, PyObject *text_obj,
                                  const char *text, Py_ssize_t length,
                                  const char *message, int64_t position) {
  PyObject *type = pfpy_state_of(module)->ExpressionError;
  Py_ssize_t pos = position < 0 ? -1 : char_offset(text, length, position);
  return pfpy_raise_object(
      PyObject_CallFunction(type, "sOn", message, text_obj, pos));
}

/* `seed`, the random functions' 128-bit key: an int in [0, 2**128) as
 * PF_PARAM_UINT128 (the compiler makes it an int64 in arithmetic where it
 * fits). Returns 0, or -1 with TypeError or ValueError naming the seed. */
static int seed_from_object(PyObject *value, pf_param *p) {
  if (PyBool_Check(value) || PyArray_IsScalar(value, Bool) ||
      !(PyLong_Check(value) || PyArray_IsScalar(value, Integer))) {
    PyErr_Format(PyExc_TypeError, "parameter 'seed' must be an int, not %R",
                 value);
    return -1;
  }
  PyObject *index = PyNumber_Index(value);
  if (index == NULL) return -1;
  /* The public API has no 128-bit conversion: the low word by masking,
   * the high word from index >> 64, which must fit in 64 bits. */
  PyObject *zero = PyLong_FromLong(0), *shift = PyLong_FromLong(64);
  PyObject *high = NULL;
  int negative = zero == NULL ? -1 : PyObject_RichCompareBool(index, zero,
                                                              Py_LT);
  if (negative == 0 && shift != NULL) high = PyNumber_Rshift(index, shift);
  uint64_t lo = 0, hi = 0;
  if (high != NULL) {
    lo = (uint64_t)PyLong_AsUnsignedLongLongMask(index);
    hi = (uint64_t)PyLong_AsUnsignedLongLong(high);
    Py_DECREF(high);
  }
  Py_XDECREF(shift);
  Py_XDECREF(zero);
  Py_DECREF(index);
  if (negative == 1 || PyErr_ExceptionMatches(PyExc_OverflowError)) {
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError,
                 "parameter 'seed' must be in [0, 2**128), not %R", value);
    return -1;
  }
  if (PyErr_Occurred()) return -1;
  p->kind = PF_PARAM_UINT128;
  p->u[0] = lo;
  p->u[1] = hi;
  return 0;
}

/* Converts one parameter value. Returns 0, or -1 with TypeError or
 * ValueError naming the parameter. May run Python code (__index__,
 * __float__): the caller holds its own references to name and value. */
static int param_from_object(PyObject *name, PyObject *value, pf_param *p) {
  if (PyUnicode_CompareWithASCIIString(name, "seed") == 0)
    return seed_from_object(value, p);
  if (PyBool_Check(value) || PyArray_IsScalar(value, Bool)) {
    p->kind = PF_PARAM_BOOL;
    p->i = PyObject_IsTrue(value);
    return p->i < 0 ? -1 : 0;
  }
  if (PyLong_Check(value) || PyArray_IsScalar(value, Integer)) {
    PyObject *index = PyNumber_Index(value);
    if (index == NULL) return -1;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow) {
      PyErr_Format(PyExc_ValueError,
                   "parameter %R = %R does not fit in int64 (expressions "
                   "compute integers in int64; pass a float for larger "
                   "values)", name, value);
      return -1;
    }
    p->kind = PF_PARAM_INT;
    p->i = v;
    return 0;
  }
  if (PyFloat_Check(value) || PyArray_IsScalar(value, Floating)) {
    p->kind = PF_PARAM_FLOAT;
    p->f = PyFloat_AsDouble(value);
    return p->f == -1.0 && PyErr_Occurred() ? -1 : 0;
  }
  PyErr_Format(PyExc_TypeError,
               "parameter %R must be an int, bool or float, not %.100s", name,
               Py_TYPE(value)->tp_name);
  return -1;
}

/* Fills params[0..*count) from `mapping` (a dict or any mapping). The
 * caller frees *params and releases *keep, which owns the names.
 *
 * Converting a value may run Python code (__index__, __float__) that changes
 * the caller's mapping; so the names and values are snapshotted first -- a
 * list of (name, value) tuples holding its own references -- and converted
 * from there. The names' UTF-8 buffers live as long as *keep. */
static int params_from_dict(PyObject *mapping, pf_param **params,
                            size_t *count, PyObject **keep) {
  *params = NULL;
  *count = 0;
  *keep = NULL;
  PyObject *snapshot = PyDict_New();
  if (snapshot == NULL) return -1;
  if (PyDict_Merge(snapshot, mapping, 1) < 0) {
    Py_DECREF(snapshot);
    if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
        PyErr_ExceptionMatches(PyExc_TypeError)) {
      PyErr_Clear();
      PyErr_Format(PyExc_TypeError,
                   "params must be a dict (a mapping), not %.100s",
                   Py_TYPE(mapping)->tp_name);
    }
    return -1;
  }
  PyObject *items = PyDict_Items(snapshot);
  Py_DECREF(snapshot);
  if (items == NULL) return -1;
  *keep = items;
  Py_ssize_t n = PyList_GET_SIZE(items);
  if (n == 0) return 0;
  *params = PyMem_Calloc((size_t)n, sizeof **params);
  if (*params == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  for (Py_ssize_t k = 0; k < n; k++) {
    /* The list is ours alone: no Python code can change it meanwhile. */
    PyObject *item = PyList_GET_ITEM(items, k);
    PyObject *key = PyTuple_GET_ITEM(item, 0);
    PyObject *value = PyTuple_GET_ITEM(item, 1);
    if (!PyUnicode_Check(key)) {
      PyErr_Format(PyExc_TypeError, "parameter names must be str, not %.100s",
                   Py_TYPE(key)->tp_name);
      return -1;
    }
    pf_param *p = &(*params)[*count];
    p->name = PyUnicode_AsUTF8(key);
    if (p->name == NULL || param_from_object(key, value, p) < 0) return -1;
    (*count)++;
  }
  return 0;
}

/* What pf_expr_fill needs, and what its errors are reported with, for
 * pfpy_fill_run. */
typedef struct expr_call {
  PyObject *module;
  PyObject *text_obj;
  const char *text;
  Py_ssize_t length;
  const pf_expr *expr;
  pf_array arr;
} expr_call;

static int expr_run(void *ctx, const pf_fill_options *o, pf_error *err) {
  expr_call *c = ctx;
  return pf_expr_fill(c->expr, &c->arr, o, err);
}

/* A run-time error of the expression (an integer to a negative power) shows
 * where it is. */
static void expr_done(void *ctx, int rc, const pf_error *err) {
  expr_call *c = ctx;
  if (rc == PF_ETYPE && err->position >= 0 && !PyErr_Occurred())
    expression_error(c->module, c->text_obj, c->text, c->length, err->message,
                     err->position);
}

static PyObject *fill_expr_impl(PyObject *module, PyObject *text_obj,
                                PyArrayObject *out, PyObject *params_dict,
                                const pfpy_pool_args *pool) {
  expr_call c = {.module = module, .text_obj = text_obj};
  c.text = PyUnicode_AsUTF8AndSize(text_obj, &c.length);
  if (c.text == NULL) return NULL;
  if ((size_t)c.length != strlen(c.text))
    return expression_error(module, text_obj, c.text, c.length,
                            "expressions cannot contain NUL characters",
                            (int64_t)strlen(c.text));
  pf_param *params;
  size_t nparams;
  PyObject *keep = NULL; /* owns the parameter names */
  PyObject *result = NULL;
  pf_expr *expr = NULL;
  pf_error err = {0};
  int rc;
  /* Parameters first: converting them may run Python code, which must not
   * see (or change, e.g. resize) an array already described. */
  if (params_from_dict(params_dict, &params, &nparams, &keep) < 0) goto done;
  if (pfpy_array_describe(out, &c.arr) < 0) goto done;
  rc = pf_expr_compile(&expr, c.text, c.arr.ndim, params, nparams, &err);
  if (rc == PF_ENOMEM) {
    PyErr_NoMemory();
    goto done;
  }
  if (rc != 0) {
    expression_error(module, text_obj, c.text, c.length, err.message,
                     err.position);
    goto done;
  }
  c.expr = expr;
  if (pfpy_fill_run_pool(module, pool, expr_run, expr_done, &c) == 0)
    result = Py_NewRef(Py_None);
done:
  pf_expr_free(expr);
  PyMem_Free(params);
  Py_XDECREF(keep);
  return result;
}

PyObject *pfpy_fill_expr(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"text",  "out",   "params",   "workers",
                             "schedule", "chunk", "progress", "timeout",
                             "window",   NULL};
  PyObject *text, *out, *params = NULL;
  pfpy_pool_args pool = PFPY_POOL_ARGS_INIT;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "UO!|OiOLOdO:fill_expr", keywords, &text, &PyArray_Type,
          &out, &params, &pool.workers, &pool.schedule_name, &pool.chunk,
          &pool.progress, &pool.timeout, &pool.window_obj))
    return NULL;
  if (pfpy_pool_args_check(out, &pool) < 0) return NULL;
  PyObject *empty = NULL;
  if (params == NULL || params == Py_None) params = empty = PyDict_New();
  if (params == NULL) return NULL;
  PyObject *r = fill_expr_impl(module, text, (PyArrayObject *)out, params,
                               &pool);
  Py_XDECREF(empty);
  return r;
}
