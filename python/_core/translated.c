/*
 * translated.c -- fills from translated Python functions:
 * _core.fill_translated(code, iconsts, fconsts, ndim, nregs, out, *, workers,
 * schedule, chunk, progress, timeout, first, _isa) and the VM's tables
 * _core.pyvm_opcodes() / _core.pyvm_functions().
 *
 * The serialized program (little-endian int32 code words, int64 and float64
 * constant pools) is copied into aligned arrays, validated and created by
 * pf_prog_create with the GIL held, and only pf_prog_fill runs without it.
 * A bail (PF_EBAIL: an element needs Python) is not an error here: the call
 * returns the lowest bailing flat index, and the Python layer computes that
 * element by calling the function and resumes after it. `_isa` (tests only)
 * caps the VM's instruction set: 0 baseline, 1 AVX2, 2 AVX-512, -1 the best
 * the CPU has; every value gives the same results.
 */
#include <string.h>

#include "core.h"
#include "pyvm.h" /* pf__prog_fill_isa: tests run every ISA */

/* A copy of `buf` as `count` items of `size` bytes in native order (the
 * serialized form is little-endian). NULL with MemoryError. */
static void *copy_le(const Py_buffer *buf, size_t size, size_t count) {
  void *mem = PyMem_Malloc(count > 0 ? count * size : 1);
  if (mem == NULL) {
    PyErr_NoMemory();
    return NULL;
  }
  if (count > 0) memcpy(mem, buf->buf, count * size);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  unsigned char *b = mem;
  for (size_t k = 0; k < count; k++, b += size)
    for (size_t i = 0; i < size / 2; i++) {
      unsigned char t = b[i];
      b[i] = b[size - 1 - i];
      b[size - 1 - i] = t;
    }
#endif
  return mem;
}

/* (nI, nF, nB) or (nI, nF, nB, nC) into nregs (nC = 0 for three);
 * TypeError / ValueError naming the argument. */
static int nregs_from_object(PyObject *obj, int32_t nregs[4]) {
  if (!PyTuple_Check(obj) ||
      (PyTuple_GET_SIZE(obj) != 3 && PyTuple_GET_SIZE(obj) != 4)) {
    PyErr_Format(PyExc_TypeError,
                 "nregs must be a tuple (nI, nF, nB) or (nI, nF, nB, nC), "
                 "not %.100s", Py_TYPE(obj)->tp_name);
    return -1;
  }
  nregs[3] = 0;
  for (int k = 0; k < (int)PyTuple_GET_SIZE(obj); k++) {
    PyObject *item = PyTuple_GET_ITEM(obj, k);
    if (!PyLong_Check(item)) {
      PyErr_Format(PyExc_TypeError, "nregs[%d] must be an int, not %.100s", k,
                   Py_TYPE(item)->tp_name);
      return -1;
    }
    long v = PyLong_AsLong(item);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v > PF_PROG_MAX_REGS) {
      PyErr_Format(PyExc_ValueError, "nregs[%d] = %ld outside [0, %d]", k, v,
                   PF_PROG_MAX_REGS);
      return -1;
    }
    nregs[k] = (int32_t)v;
  }
  return 0;
}

typedef struct translated_call {
  const pf_prog *prog;
  pf_array arr;
  int64_t first;
  int64_t bail; /* the lowest bailing flat index, or -1 */
  int isa;      /* cap on the instruction set (tests), -1: none */
} translated_call;

static int translated_run(void *ctx, const pf_fill_options *o, pf_error *err) {
  translated_call *c = ctx;
  pf_fill_options options = *o;
  options.first = c->first;
  int rc = pf__prog_fill_isa(c->prog, &c->arr, &options, c->isa, err);
  if (rc == PF_EBAIL) {
    c->bail = err->position;
    return 0;
  }
  return rc;
}

static PyObject *fill_translated_impl(PyObject *module, Py_buffer *code,
                                      Py_buffer *iconsts, Py_buffer *fconsts,
                                      int ndim, PyObject *nregs_obj,
                                      PyArrayObject *out, int workers,
                                      pf_schedule schedule, long long chunk,
                                      PyObject *progress, double timeout,
                                      long long first, int isa,
                                      const pf_window *window) {
  int32_t nregs[4];
  if (nregs_from_object(nregs_obj, nregs) < 0) return NULL;
  if (code->len % 20 != 0 || iconsts->len % 8 != 0 || fconsts->len % 8 != 0) {
    PyErr_SetString(PyExc_ValueError,
                    "code must hold 5 int32 words per instruction and the "
                    "constant pools 8-byte items");
    return NULL;
  }
  if (ndim < 0 || ndim > PF_MAX_DIMS) {
    PyErr_Format(PyExc_ValueError, "ndim %d outside [0, %d]", ndim,
                 PF_MAX_DIMS);
    return NULL;
  }
  if (PyArray_NDIM(out) != ndim) {
    PyErr_Format(PyExc_ValueError,
                 "the program takes %d index parameters, out has %d "
                 "dimensions", ndim, PyArray_NDIM(out));
    return NULL;
  }
  size_t nwords = (size_t)code->len / 4, ni = (size_t)iconsts->len / 8,
         nf = (size_t)fconsts->len / 8;
  PyObject *result = NULL;
  pf_prog *prog = NULL;
  int32_t *words = copy_le(code, 4, nwords);
  int64_t *ik = copy_le(iconsts, 8, ni);
  double *fk = copy_le(fconsts, 8, nf);
  if (words == NULL || ik == NULL || fk == NULL) goto done;
  pf_error err = {0};
  int rc = pf_prog_create(&prog, words, nwords, ik, ni, fk, nf, ndim, nregs,
                          &err);
  if (rc == PF_ENOMEM) {
    PyErr_NoMemory();
    goto done;
  }
  if (rc != 0) {
    PyErr_Format(PyExc_ValueError, "invalid translated program: %s",
                 err.message);
    goto done;
  }
  translated_call c = {.prog = prog, .first = first, .bail = -1, .isa = isa};
  if (pfpy_array_describe(out, &c.arr) < 0) goto done;
  int64_t size = (int64_t)PyArray_SIZE(out);
  if (first < 0 || first > size) {
    PyErr_Format(PyExc_ValueError, "first = %lld outside [0, %lld]", first,
                 (long long)size);
    goto done;
  }
  pfpy_fill fill;
  pfpy_fill_init(&fill, progress, timeout, workers, schedule, chunk);
  fill.options.window = window;
  if (pfpy_fill_run(module, &fill, translated_run, NULL, &c) == 0)
    result = PyLong_FromLongLong(c.bail);
done:
  pf_prog_free(prog);
  PyMem_Free(words);
  PyMem_Free(ik);
  PyMem_Free(fk);
  return result;
}

PyObject *pfpy_fill_translated(PyObject *module, PyObject *args,
                               PyObject *kwargs) {
  static char *keywords[] = {"code",     "iconsts", "fconsts", "ndim",
                             "nregs",    "out",     "workers", "schedule",
                             "chunk",    "progress", "timeout", "first",
                             "_isa",     "window",  NULL};
  Py_buffer code = {0}, iconsts = {0}, fconsts = {0};
  PyObject *nregs, *out, *schedule_name = NULL, *progress = Py_None;
  PyObject *window_obj = Py_None;
  pfpy_window window;
  int ndim, workers = 0;
  long long chunk = 0, first = 0;
  double timeout = -1;
  int isa = -1;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "y*y*y*iOO!|$iOLOdLiO:fill_translated", keywords, &code,
          &iconsts, &fconsts, &ndim, &nregs, &PyArray_Type, &out, &workers,
          &schedule_name, &chunk, &progress, &timeout, &first, &isa,
          &window_obj))
    return NULL;
  PyObject *r = NULL;
  pf_schedule schedule;
  if (pfpy_check_pool_args(out, schedule_name, workers, chunk, progress,
                           &schedule) == 0 &&
      pfpy_window_parse(window_obj, (PyArrayObject *)out, &window) == 0)
    r = fill_translated_impl(module, &code, &iconsts, &fconsts, ndim, nregs,
                             (PyArrayObject *)out, workers, schedule, chunk,
                             progress, timeout, first, isa,
                             pfpy_window_get(&window));
  PyBuffer_Release(&code);
  PyBuffer_Release(&iconsts);
  PyBuffer_Release(&fconsts);
  return r;
}

PyObject *pfpy_pyvm_opcodes(PyObject *module, PyObject *unused) {
  PyObject *d = PyDict_New();
  for (int op = 0; d != NULL && op < pf_prog_opcode_count(); op++) {
    PyObject *v = PyLong_FromLong(op);
    if (v == NULL || PyDict_SetItemString(d, pf_prog_opcode_name(op), v) < 0)
      Py_CLEAR(d);
    Py_XDECREF(v);
  }
  return d;
}

PyObject *pfpy_pyvm_functions(PyObject *module, PyObject *unused) {
  PyObject *d = PyDict_New();
  for (int fn = 0; d != NULL && fn < pf_prog_function_count(); fn++) {
    PyObject *v = PyLong_FromLong(fn);
    if (v == NULL ||
        PyDict_SetItemString(d, pf_prog_function_name(fn, NULL), v) < 0)
      Py_CLEAR(d);
    Py_XDECREF(v);
  }
  return d;
}
