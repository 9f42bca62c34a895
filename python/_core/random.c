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

/* What pf_random_fill needs, for pfpy_fill_run. */
typedef struct random_call {
  pf_array arr;
  pf_random_dist dist;
  uint64_t key[2];
  uint64_t stream;
} random_call;

static int random_run(void *ctx, const pf_fill_options *o, pf_error *err) {
  random_call *c = ctx;
  return pf_random_fill(&c->arr, c->dist, c->key, c->stream, o, err);
}

PyObject *pfpy_fill_random(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"out",     "dist",     "key0",  "key1",
                             "stream",  "workers",  "schedule", "chunk",
                             "progress", "timeout", "window", NULL};
  PyObject *out, *key0_obj, *key1_obj, *stream_obj;
  const char *dist_name;
  pfpy_pool_args pool = PFPY_POOL_ARGS_INIT;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "O!sOOO|iOLOdO:fill_random", keywords, &PyArray_Type,
          &out, &dist_name, &key0_obj, &key1_obj, &stream_obj, &pool.workers,
          &pool.schedule_name, &pool.chunk, &pool.progress, &pool.timeout,
          &pool.window_obj))
    return NULL;
  random_call call;
  if (strcmp(dist_name, "uniform") == 0) {
    call.dist = PF_RANDOM_UNIFORM;
  } else if (strcmp(dist_name, "normal") == 0) {
    call.dist = PF_RANDOM_NORMAL;
  } else {
    PyErr_Format(PyExc_ValueError,
                 "dist must be 'uniform' or 'normal', not '%s'", dist_name);
    return NULL;
  }
  if (u64_from(key0_obj, "key0", &call.key[0]) < 0 ||
      u64_from(key1_obj, "key1", &call.key[1]) < 0 ||
      u64_from(stream_obj, "stream", &call.stream) < 0 ||
      pfpy_pool_args_check(out, &pool) < 0 ||
      pfpy_array_describe((PyArrayObject *)out, &call.arr) < 0)
    return NULL;
  if (pfpy_fill_run_pool(module, &pool, random_run, NULL, &call) != 0)
    return NULL;
  Py_RETURN_NONE;
}
