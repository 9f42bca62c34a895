/*
 * shared.c -- NumPy arrays in memory shared with forked workers.
 *
 * A new result of a process-team fill lives in a shared mapping of an
 * anonymous memfd (nothing in /dev/shm, nothing to unlink) while the workers
 * fill it, and is made private copy-on-write in place (privatize(), no copy)
 * before it is returned: after the user forks, a child's writes stay in the
 * child, as with any NumPy array. The ndarray's base object is a capsule that
 * owns the mapping and, until privatize(), the memfd; it unmaps and closes
 * them when the last array using it goes away.
 */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char capsule_name[] = "parfill.shared_memory";

typedef struct shared_block {
  void *memory;
  size_t bytes;
  int fd; /* the memfd while shared, -1 once private */
} shared_block;

static void unmap_capsule(PyObject *capsule) {
  shared_block *b = PyCapsule_GetPointer(capsule, capsule_name);
  if (b == NULL) {
    PyErr_Clear();
    return;
  }
  pf_shared_free(b->memory, b->bytes);
  if (b->fd >= 0) close(b->fd);
  free(b);
}

PyObject *pfpy_shared_empty(PyObject *module, PyObject *args,
                            PyObject *kwargs) {
  static char *keywords[] = {"shape", "dtype", NULL};
  PyArray_Dims shape = {NULL, 0};
  PyArray_Descr *descr = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&:shared_empty", keywords,
                                   PyArray_IntpConverter, &shape,
                                   PyArray_DescrConverter, &descr))
    goto fail;
  int64_t size;
  int rc = pf_shape_size(shape.len, (const int64_t *)shape.ptr,
                         (size_t)PyDataType_ELSIZE(descr), &size);
  if (rc != 0) {
    PyErr_SetString(PyExc_ValueError,
                    rc == PF_EOVERFLOW ? "array is too big"
                                       : "negative dimensions are not allowed");
    goto fail;
  }
  size_t bytes = (size_t)size * (size_t)PyDataType_ELSIZE(descr);
  if (bytes == 0) bytes = 1; /* mmap refuses empty mappings */
  shared_block *b = malloc(sizeof *b);
  if (b == NULL) {
    PyErr_NoMemory();
    goto fail;
  }
  b->bytes = bytes;
  b->memory = pf_shared_alloc_memfd(bytes, &b->fd);
  if (b->memory == NULL) {
    PyErr_Format(PyExc_MemoryError,
                 "cannot map %zu bytes of shared memory for the result: %s",
                 bytes, strerror(errno));
    free(b);
    goto fail;
  }
  PyObject *capsule = PyCapsule_New(b, capsule_name, unmap_capsule);
  if (capsule == NULL) {
    pf_shared_free(b->memory, bytes);
    close(b->fd);
    free(b);
    goto fail;
  }
  PyObject *array = PyArray_NewFromDescr(&PyArray_Type, descr, shape.len,
                                         shape.ptr, NULL, b->memory,
                                         NPY_ARRAY_CARRAY, NULL);
  descr = NULL; /* stolen */
  if (array == NULL) {
    Py_DECREF(capsule);
    goto fail;
  }
  if (PyArray_SetBaseObject((PyArrayObject *)array, capsule) < 0) {
    Py_DECREF(array); /* the capsule was stolen and released */
    goto fail;
  }
  PyDimMem_FREE(shape.ptr);
  return array;
fail:
  Py_XDECREF(descr);
  PyDimMem_FREE(shape.ptr);
  return NULL;
}

PyObject *pfpy_privatize(PyObject *module, PyObject *arg) {
  if (!PyArray_Check(arg)) {
    PyErr_SetString(PyExc_TypeError, "privatize() takes an ndarray");
    return NULL;
  }
  PyObject *base = PyArray_BASE((PyArrayObject *)arg);
  if (base == NULL || !PyCapsule_IsValid(base, capsule_name)) Py_RETURN_FALSE;
  shared_block *b = PyCapsule_GetPointer(base, capsule_name);
  if (b->fd < 0) Py_RETURN_TRUE; /* already private */
  if (pf_shared_privatize(b->memory, b->bytes, b->fd) != 0)
    return PyErr_SetFromErrno(PyExc_OSError);
  b->fd = -1;
  Py_RETURN_TRUE;
}

PyObject *pfpy_is_shared(PyObject *module, PyObject *arg) {
  if (!PyArray_Check(arg)) {
    PyErr_SetString(PyExc_TypeError, "is_shared() takes an ndarray");
    return NULL;
  }
  PyArrayObject *a = (PyArrayObject *)arg;
  if (PyArray_SIZE(a) == 0) Py_RETURN_TRUE;
  /* The byte extent the array's elements span, whatever its strides. */
  char *lo = PyArray_BYTES(a), *hi = lo;
  for (int d = 0; d < PyArray_NDIM(a); d++) {
    npy_intp span = (PyArray_DIM(a, d) - 1) * PyArray_STRIDE(a, d);
    if (span < 0) lo += span; else hi += span;
  }
  hi += PyArray_ITEMSIZE(a);
  int rc = pf_shared_contains(lo, (size_t)(hi - lo));
  if (rc < 0) return PyErr_SetFromErrno(PyExc_OSError);
  return PyBool_FromLong(rc);
}
