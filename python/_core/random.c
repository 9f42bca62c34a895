/*
 * random.c -- random fills: _core.fill_random(out, dist, key0, key1, stream,
 * workers, schedule, chunk, progress).
 *
 * parfill._random checks the arguments and splits the seed into the two key
 * words; here only pf_random_fill runs without the GIL.
 */
#include "core.h"

#include <string.h>

/* A uint64 from a Python int in [0, 2**64); OverflowError/TypeError else. */
static int u64_from(PyObject *obj, const char *what, uint64_t *value) {
  if (!PyLong_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what,
                 Py_TYPE(obj)->tp_name);
    return -1;
  }
  unsigned long long v = PyLong_AsUnsignedLongLong(obj);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) {
    PyErr_Format(PyExc_OverflowError, "%s must be in [0, 2**64)", what);
    return -1;
  }
  *value = v;
  return 0;
}

PyObject *pfpy_fill_random(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"out",     "dist",     "key0",  "key1",
                             "stream",  "workers",  "schedule", "chunk",
                             "progress", "timeout", NULL};
  PyObject *out, *key0_obj, *key1_obj, *stream_obj, *schedule_name = NULL;
  PyObject *progress = Py_None;
  const char *dist_name;
  int workers = 0;
  long long chunk = 0;
  double timeout = -1;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!sOOO|iOLOd:fill_random",
                                   keywords, &PyArray_Type, &out, &dist_name,
                                   &key0_obj, &key1_obj, &stream_obj, &workers,
                                   &schedule_name, &chunk, &progress,
                                   &timeout))
    return NULL;
  pf_random_dist dist;
  if (strcmp(dist_name, "uniform") == 0) {
    dist = PF_RANDOM_UNIFORM;
  } else if (strcmp(dist_name, "normal") == 0) {
    dist = PF_RANDOM_NORMAL;
  } else {
    PyErr_Format(PyExc_ValueError,
                 "dist must be 'uniform' or 'normal', not '%s'", dist_name);
    return NULL;
  }
  uint64_t key[2], stream;
  if (u64_from(key0_obj, "key0", &key[0]) < 0 ||
      u64_from(key1_obj, "key1", &key[1]) < 0 ||
      u64_from(stream_obj, "stream", &stream) < 0)
    return NULL;
  pf_schedule schedule;
  if (pfpy_check_pool_args(out, schedule_name, workers, chunk, progress,
                           &schedule) < 0)
    return NULL;
  pf_array arr;
  if (pfpy_array_describe((PyArrayObject *)out, &arr) < 0) return NULL;
  pfpy_waiter waiter;
  pfpy_waiter_init(&waiter, progress, timeout);
  pf_fill_options o =
      pfpy_pool_options(&waiter, workers, schedule, chunk);
  o.timeout = timeout; /* also between blocks of a fill on this thread */
  pf_error err = {0};
  pfpy_waiter_release(&waiter);
  int rc = pf_random_fill(&arr, dist, key, stream, &o, &err);
  pfpy_waiter_acquire(&waiter);
  if (rc == PF_ECANCELED && PyErr_Occurred()) return NULL;
  if (rc != 0) return pfpy_raise(module, rc, &err);
  Py_RETURN_NONE;
}
