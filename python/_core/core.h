/*
 * core.h -- declarations shared by the files of the parfill._core extension.
 *
 * The extension is a thin layer over libparfill: argument conversion here, the
 * work in pf_* calls with the GIL released. It uses only the public header.
 *
 *   module.c    module definition, state, shared helpers (this header)
 *   shared.c    shared-memory arrays for process teams
 *   callable.c  fills from Python callables: serial, threads, processes
 *   expr.c      fills from expressions
 *   native.c    fills from native functions (ctypes, numba.cfunc)
 *   random.c    random fills (Philox)
 *   translated.c  fills from translated Python functions (the VM)
 */
#ifndef PARFILL_CORE_H
#define PARFILL_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL parfill_ARRAY_API
#ifndef PFPY_MODULE_C
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "parfill.h"

/* Per-module state: the public exception types and the helpers of
 * parfill._errors, which turn worker failures into exceptions; each field is
 * the attribute of that name. One list drives the struct, the import
 * (core_exec), traversal and clearing. */
#define PFPY_STATE_FIELDS(X)                                             \
  X(ExpressionError)                                                     \
  X(TimeoutError)                                                        \
  X(element_failed) /* (exc_or_payload, shape, flat, worker, pid) */     \
  X(worker_died)    /* (worker, pid, exitcode, signal, start, stop) */   \
  X(pack_exception) /* (exc) -> bytes */                                 \
  X(run_bytecode)   /* () -> None, in Python: see callable.c, canceled() */

typedef struct pfpy_state {
#define PFPY_STATE_FIELD(name) PyObject *name;
  PFPY_STATE_FIELDS(PFPY_STATE_FIELD)
#undef PFPY_STATE_FIELD
} pfpy_state;

pfpy_state *pfpy_state_of(PyObject *module);

/* Describes `arr` for libparfill. Sets TypeError for dtypes parfill does not
 * support (object, string, datetime, structured, non-native byte order) and
 * returns -1. */
int pfpy_array_describe(PyArrayObject *arr, pf_array *out);

/* Parses a schedule name; sets ValueError and returns -1 if unknown. */
int pfpy_schedule_parse(PyObject *name, pf_schedule *schedule);

/* Sets a Python exception for a libparfill error code (err may be NULL):
 * MemoryError, ValueError, OSError, parfill.TimeoutError, ... Returns NULL. */
PyObject *pfpy_raise(PyObject *module, int code, const pf_error *err);

/*
 * Waiting with the GIL released. pf_fill's progress hook and the process
 * team's wait hook run on the caller's thread while the fill runs without the
 * GIL; a waiter takes the GIL back briefly to check for signals (Ctrl-C), the
 * deadline, and to call the user's progress callable.
 */
typedef struct pfpy_waiter {
  PyThreadState *thread_state; /* set while the GIL is released */
  PyObject *progress;          /* callable(done, total) or NULL */
  double deadline;             /* CLOCK_MONOTONIC seconds, or 0 for none */
  int64_t last_done;
} pfpy_waiter;

/* `progress` may be None; `timeout` is seconds or <= 0 for none. */
void pfpy_waiter_init(pfpy_waiter *waiter, PyObject *progress, double timeout);
/* Releases / takes back the GIL around a blocking call. */
void pfpy_waiter_release(pfpy_waiter *waiter);
void pfpy_waiter_acquire(pfpy_waiter *waiter);
/* A pf_progress_fn over a released waiter: 0 to go on; PF_ECANCELED with a
 * Python exception set (signal, callback error); PF_ETIMEDOUT past the
 * deadline. */
int pfpy_waiter_poll(void *waiter, int64_t done, int64_t total);
/* The same check for code that holds the GIL. */
int pfpy_waiter_check(pfpy_waiter *waiter, int64_t done, int64_t total);

double pfpy_monotonic(void);

/* Checks the arguments every fill on the thread pool takes: `out` writable,
 * the schedule name (NULL or None: dynamic) into *schedule, workers and chunk
 * >= 0, progress None or callable. Sets an exception and returns -1. */
int pfpy_check_pool_args(PyObject *out, PyObject *schedule_name, int workers,
                         long long chunk, PyObject *progress,
                         pf_schedule *schedule);

/* The arguments every fill on the thread pool takes after its own, as
 * PyArg_ParseTupleAndKeywords stores them ("iOLOd": workers, schedule,
 * chunk, progress, timeout), and the schedule pfpy_pool_args_check parsed. */
/* A fill's `window=` argument: None, or (whole_shape, origin) -- the output
 * is the box at `origin` of an array of `whole_shape`, whose indices the
 * function sees (pf_window's box form). */
typedef struct pfpy_window {
  int present;
  pf_window w; /* points into shape and origin: never copy a pfpy_window */
  int64_t shape[PF_MAX_DIMS];
  int64_t origin[PF_MAX_DIMS];
} pfpy_window;

/* Parses `obj` (NULL or None: no window) for the output `out` into *win;
 * TypeError/ValueError and -1 when it is malformed or does not fit. */
int pfpy_window_parse(PyObject *obj, PyArrayObject *out, pfpy_window *win);

/* options->window for a parsed window (NULL when none). */
const pf_window *pfpy_window_get(const pfpy_window *win);

typedef struct pfpy_pool_args {
  int workers;             /* 0: one per pool thread */
  PyObject *schedule_name; /* borrowed; NULL or None: dynamic */
  long long chunk;         /* 0: auto */
  PyObject *progress;      /* borrowed; callable(done, total) or None */
  double timeout;          /* seconds; <= 0: none */
  PyObject *window_obj;    /* borrowed; None or (whole_shape, origin) */
  pf_schedule schedule;
  pfpy_window window;      /* parsed by pfpy_pool_args_check */
} pfpy_pool_args;

#define PFPY_POOL_ARGS_INIT \
  {0, NULL, 0, Py_None, -1, Py_None, PF_SCHEDULE_DYNAMIC, {0}}

/* pfpy_check_pool_args for `args` (its schedule set) and its window parsed;
 * -1 with an exception. */
int pfpy_pool_args_check(PyObject *out, pfpy_pool_args *args);

/*
 * One fill on libparfill's thread pool, run with the GIL released: the
 * waiter, the fill options whose progress hook polls it (signals, the user's
 * progress callable, the deadline) from the caller's thread, and the error.
 * Lives on the caller's stack for the call (options.progress_ctx points into
 * it): never copy one.
 */
typedef struct pfpy_fill {
  pfpy_waiter waiter;
  pf_fill_options options;
  pf_error err;
} pfpy_fill;

/* Sets up `fill`: `progress` None or callable, `timeout` seconds (<= 0:
 * none; also checked between the blocks of a fill that runs on this thread).
 * The caller may set more options (release) before pfpy_fill_run. */
void pfpy_fill_init(pfpy_fill *fill, PyObject *progress, double timeout,
                    int workers, pf_schedule schedule, int64_t chunk);

/* Runs without the GIL: one pf_* fill with `options`, errors into `err`. */
typedef int (*pfpy_fill_fn)(void *ctx, const pf_fill_options *options,
                            pf_error *err);
/* Runs with the GIL, right after it is taken back, with fn's code: takes
 * back what the fill owned, or sets an exception of its own for the code
 * (which is then the one raised). */
typedef void (*pfpy_fill_done_fn)(void *ctx, int rc, const pf_error *err);

/* Releases the GIL, calls fn(ctx, &fill->options, &fill->err), takes the GIL
 * back, calls done(ctx, rc, &fill->err) (done may be NULL) and returns fn's
 * code: 0, or negative with a Python exception set -- one already pending
 * wins (Ctrl-C or the progress callable's error behind PF_ECANCELED, or
 * done's), else pfpy_raise's for the code. */
int pfpy_fill_run(PyObject *module, pfpy_fill *fill, pfpy_fill_fn fn,
                  pfpy_fill_done_fn done, void *ctx);
/* pfpy_fill_run with pfpy_fill_init's fill for checked pool arguments. */
int pfpy_fill_run_pool(PyObject *module, const pfpy_pool_args *args,
                       pfpy_fill_fn fn, pfpy_fill_done_fn done, void *ctx);

/* Raises the exception instance `exc` (a new reference, consumed) as its own
 * type; NULL leaves the exception that making it set. Returns NULL. */
PyObject *pfpy_raise_object(PyObject *exc);

/* A pf_fill_options.release for a strong reference: Py_DECREF(obj) later on
 * the main thread (Py_AddPendingCall); callable without the GIL. */
void pfpy_decref_later(void *obj);

/* Module functions, one per file. */
PyObject *pfpy_fill_callable(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *pfpy_fill_expr(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *pfpy_fill_native(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *pfpy_fill_random(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *pfpy_fill_translated(PyObject *module, PyObject *args,
                               PyObject *kwargs);
PyObject *pfpy_pyvm_opcodes(PyObject *module, PyObject *unused);
PyObject *pfpy_pyvm_functions(PyObject *module, PyObject *unused);
PyObject *pfpy_shared_empty(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *pfpy_is_shared(PyObject *module, PyObject *arg);
PyObject *pfpy_privatize(PyObject *module, PyObject *arg);
PyObject *pfpy_in_worker(PyObject *module, PyObject *unused);

#endif /* PARFILL_CORE_H */
