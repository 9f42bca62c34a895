/*
 * parfill.h -- populate N-dimensional arrays in parallel: a[idx] = f(idx).
 *
 * The one public header of libparfill. C11 + POSIX, no Python.
 *
 * Conventions
 *   - Public names are pf_<noun>_<verb>; macros are PF_*.
 *   - Functions that can fail return 0 or a negative PF_E* code. Those that take
 *     a `pf_error *err` (which may be NULL) also fill it with the code, a message
 *     and, for expressions, the byte position of the fault.
 *   - Handles are opaque; destroy/free functions accept NULL.
 *   - The library never prints, never calls exit() or abort().
 *   - Thread safety is stated per declaration. There is no global state except
 *     the lazily created default thread pool (pf_pool_default).
 */
#ifndef PARFILL_H
#define PARFILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PF_VERSION_MAJOR 0
#define PF_VERSION_MINOR 1
#define PF_VERSION_PATCH 0
#define PF_VERSION "0.1.0"

/* Returns PF_VERSION of the linked library. Thread-safe. */
const char *pf_version(void);

/* ------------------------------------------------------------------ errors */

/* X(NAME, value, message): one table yields the codes, names and messages. */
#define PF_ERRNO_MAP(X)                                                       \
  X(EINVAL, -1, "invalid argument")                                           \
  X(ENOMEM, -2, "out of memory")                                              \
  X(EOVERFLOW, -3, "size does not fit in a 64-bit index")                     \
  X(EDTYPE, -4, "unsupported dtype")                                          \
  X(ESYNTAX, -5, "syntax error in expression")                                \
  X(ENAME, -6, "unknown name in expression")                                  \
  X(ETYPE, -7, "invalid operand type in expression")                          \
  X(ELIMIT, -8, "expression too long or too deeply nested")                   \
  X(EKERNEL, -9, "the kernel reported an error")                              \
  X(EWORKER, -10, "a worker process died")                                    \
  X(ECANCELED, -11, "canceled")                                               \
  X(ETIMEDOUT, -12, "timed out")                                              \
  X(EIO, -13, "input/output error")                                           \
  X(EEXIST, -14, "file exists")                                               \
  X(ENOSPC, -15, "no space left on device")                                   \
  X(EFORMAT, -16, "malformed .npy file")                                      \
  X(ESYS, -17, "system call failed")                                          \
  X(EBAIL, -18, "a translated function needs Python for this element")

enum {
#define PF__ERRNO_ENUM(name, value, message) PF_##name = (value),
  PF_ERRNO_MAP(PF__ERRNO_ENUM)
#undef PF__ERRNO_ENUM
};

/* Message / name ("PF_EINVAL") of a code; "unknown error" for others. Static
 * strings, thread-safe. */
const char *pf_strerror(int code);
const char *pf_err_name(int code);

#define PF_ERROR_MESSAGE_SIZE 512

/* Filled by functions that take one. `position` is the byte offset of the fault
 * in an expression, or -1. `sys_errno` is errno for PF_ESYS/PF_EIO/PF_ENOSPC. */
typedef struct pf_error {
  int code;
  int sys_errno;
  int64_t position;
  char message[PF_ERROR_MESSAGE_SIZE];
} pf_error;

/* ------------------------------------------------------------------ dtypes */

/* NumPy's numeric dtypes, native byte order. */
typedef enum pf_dtype {
  PF_BOOL,
  PF_INT8,
  PF_INT16,
  PF_INT32,
  PF_INT64,
  PF_UINT8,
  PF_UINT16,
  PF_UINT32,
  PF_UINT64,
  PF_FLOAT16,
  PF_FLOAT32,
  PF_FLOAT64,
  PF_LONGDOUBLE,
  PF_COMPLEX64,
  PF_COMPLEX128,
  PF_CLONGDOUBLE,
  PF_DTYPE_COUNT
} pf_dtype;

/* Item size in bytes, or 0 for an invalid dtype. Thread-safe. */
size_t pf_dtype_size(pf_dtype dtype);
/* NumPy's name ("float64"), or NULL for an invalid dtype. Thread-safe. */
const char *pf_dtype_name(pf_dtype dtype);
/* Parses a NumPy spelling: "float64", "f8", "<f8", "=f8", "double", "int",
 * "uint8", "u1", "bool", "?", "complex128", "c16", ... Returns 0 or PF_EDTYPE.
 * Thread-safe. */
int pf_dtype_parse(const char *name, pf_dtype *dtype);

/* ------------------------------------------------------- index space, arrays */

#define PF_MAX_DIMS 32

/* A strided view of memory. Strides are in bytes and may be negative or zero
 * (a zero stride on an axis of length > 1 is rejected by fills: elements would
 * alias). The struct is a plain value: copying it copies the description. */
typedef struct pf_array {
  void *data;
  pf_dtype dtype;
  int ndim; /* 0 .. PF_MAX_DIMS; 0 is a scalar (one element) */
  int64_t shape[PF_MAX_DIMS];
  int64_t strides[PF_MAX_DIMS];
} pf_array;

/* Number of elements of `shape` into *size. PF_EINVAL for a negative length or
 * ndim outside 0..PF_MAX_DIMS, PF_EOVERFLOW when the product, or the product
 * times `itemsize` (pass 1 to ignore bytes), exceeds INT64_MAX. Thread-safe. */
int pf_shape_size(int ndim, const int64_t *shape, size_t itemsize,
                  int64_t *size);

/* Sets `a->strides` to the C-contiguous strides of its shape and dtype. */
void pf_array_set_contiguous(pf_array *a);
/* 1 when `a` is C-contiguous (axes of length 1 ignored), else 0. */
int pf_array_is_contiguous(const pf_array *a);
/* 1 when two elements of `a` may share bytes (a zero stride on an axis of
 * length > 1, or strides that do not step over the axes below them), else 0.
 * Conservative: sorted by |stride|, each axis's stride must exceed the extent
 * of the smaller ones; a rare non-overlapping interleaved layout counts as
 * overlapping. Fills refuse overlapping outputs (PF_EINVAL). */
int pf_array_overlaps(const pf_array *a);
/* The message fills give for an overlapping output. */
#define PF_OVERLAP_MESSAGE                                                  \
  "output elements overlap in memory (a stride of 0, or strides smaller "  \
  "than the axes they step over): every element needs its own bytes"

/* Splits flat C-order index `flat` of `shape` into `index[0..ndim)`. */
void pf_index_unravel(int ndim, const int64_t *shape, int64_t flat,
                      int64_t *index);

/* Steps `index[0..ndim)` to the next element of `shape` (lengths > 0) in C
 * order, as pf_index_unravel(flat + 1) would give, without dividing: returns
 * the outermost axis whose index changed (ndim - 1 unless the innermost axes
 * wrapped to 0). From the last element, index[0] becomes shape[0] (one past
 * the end, the other axes 0) and 0 is returned; ndim 0 changes nothing and
 * returns 0. An index outside the shape is not an error: an axis at or past
 * its last value wraps to 0 (so no value written into `index` by others can
 * make it step out of [0, shape) on axes > 0). Thread-safe. */
int pf_index_next(int ndim, const int64_t *shape, int64_t *index);

/* As pf_index_next, and moves `*offset` (bytes) with it along `strides`:
 * when *offset is sum(index[d] * strides[d]) before the step, it is so after
 * it (the next element's address is base + *offset). Thread-safe. */
int pf_index_next_strided(int ndim, const int64_t *shape,
                          const int64_t *strides, int64_t *index,
                          int64_t *offset);

/* The number of CPUs this process may use: its affinity mask, capped by a
 * cgroup (v2 cpu.max or v1 cfs quota) CPU quota (read on first use), rounded
 * up; at least 1.
 * Thread-safe. */
int pf_cpu_count(void);

/* -------------------------------------------------------------- schedules */

typedef enum pf_schedule {
  PF_SCHEDULE_STATIC,  /* one contiguous part per worker; with a chunk size,
                          chunks dealt round robin (OpenMP static,chunk) */
  PF_SCHEDULE_DYNAMIC, /* chunks claimed from a shared atomic counter */
  PF_SCHEDULE_GUIDED   /* claims of max(chunk, ceil(remaining / workers)) */
} pf_schedule;

/* "static" | "dynamic" | "guided" -> 0, else PF_EINVAL. Thread-safe. */
int pf_schedule_parse(const char *name, pf_schedule *schedule);
/* The name, or NULL. Thread-safe. */
const char *pf_schedule_name(pf_schedule schedule);

/* ------------------------------------------------------------ thread pool */

typedef struct pf_pool pf_pool;

/* Creates a pool of `threads` threads (<= 0: pf_cpu_count()), its base size.
 * Threads block all signals. Fills that ask for more workers grow it up to
 * pf_pool_max_threads() threads (more workers than that share the threads);
 * threads above the base size exit after about 2 s without work. When the
 * system refuses threads (RLIMIT_NPROC), the pool keeps those it could start.
 * On success *pool owns the threads until pf_pool_destroy. Returns 0,
 * PF_EINVAL, PF_ENOMEM or PF_ESYS (not a single thread could be started; the
 * error says why). */
int pf_pool_create(pf_pool **pool, int threads);

/* Waits for queued work, joins the threads, frees the pool. NULL is a no-op.
 * Must not be called while another thread uses the pool, nor while a fill
 * that returned early (see pf_fill_options.release) still runs on it. In a
 * forked child the threads do not exist: the memory is released without
 * joining. */
void pf_pool_destroy(pf_pool *pool);

/* The number of threads now. Thread-safe. */
int pf_pool_size(const pf_pool *pool);

/* The most threads a pool grows to: max(64, 4 * pf_cpu_count()), or the
 * pool's base size when that is larger. Thread-safe. */
int pf_pool_max_threads(const pf_pool *pool);

/* The process-wide default pool with pf_cpu_count() threads, created on first
 * use (thread-safe, lock-free publication). NULL if it cannot be created. The
 * library owns it; it lives until process exit. */
pf_pool *pf_pool_default(void);

/* -------------------------------------------------------------- fills */

/* Called from the calling thread of a fill, about every `progress_interval`
 * seconds and once at the end, with the number of elements done so far.
 * A nonzero return cancels the fill, which then returns that value (use a
 * negative code, e.g. PF_ECANCELED). */
typedef int (*pf_progress_fn)(void *ctx, int64_t done, int64_t total);

/* A window of a larger index space (SPEC section 8: a Dask block, an MPI
 * rank's slab): `out` holds part of a whole array of `shape`, and kernels see
 * the whole's indices. Two forms:
 *   box   (origin != NULL): out->ndim == ndim, and out's element
 *         (i0, i1, ...) is the whole's (origin[0] + i0, origin[1] + i1, ...);
 *         0 <= origin[d] and origin[d] + out->shape[d] <= shape[d].
 *   range (origin == NULL): out's elements in C order are the whole's flat
 *         indices offset, offset + 1, ... (out has any shape; 0 <= offset,
 *         offset + out's size <= the whole's size).
 * With options->window set, pf_fill calls the kernel with the whole's flat
 * indices -- a call's [start, start + count) lies inside the window without
 * a gap (a box is cut at its rows) -- and the kernel reports failures
 * (pf_fill_worker_fail) and reads pf_fill_worker_limit in them. What the
 * fill itself reports counts out's elements in C order: options->first,
 * progress, and err->position of a kernel's failure. pf_expr_fill,
 * pf_random_fill, pf_native_fill and pf_prog_fill take their index variables
 * (i j ... idx, n0 ... size, the random functions' element) from the whole,
 * so a window gets bit for bit the values of the same elements of a fill of
 * the whole array. */
typedef struct pf_window {
  int ndim;              /* of the whole: 0 .. PF_MAX_DIMS */
  const int64_t *shape;  /* the whole's shape */
  const int64_t *origin; /* box form; NULL: range form */
  int64_t offset;        /* range form: the whole's flat index of out's first */
} pf_window;

/* The whole's flat index of out's element `k` (C order; 0 <= k < out's size)
 * under `window`, which pf_window_check accepted for `out_ndim`,
 * `out_shape`. Thread-safe. */
int64_t pf_window_flat(const pf_window *window, int out_ndim,
                       const int64_t *out_shape, int64_t k);

/* 0 when `window` fits an output of `out_ndim` dimensions of `out_shape`
 * (see pf_window), else PF_EINVAL (or PF_EOVERFLOW: the whole has more than
 * INT64_MAX elements) with err saying why. Thread-safe. */
int pf_window_check(const pf_window *window, int out_ndim,
                    const int64_t *out_shape, pf_error *err);

typedef struct pf_fill_options {
  pf_pool *pool;            /* NULL: pf_pool_default() */
  int workers;              /* 0: the pool's base size (pf_pool_create's
                               `threads`); more than the pool has grows the
                               pool (up to pf_pool_max_threads) */
  pf_schedule schedule;
  int64_t chunk;            /* elements per chunk (minimum for guided); 0: auto */
  pf_progress_fn progress;  /* may be NULL */
  void *progress_ctx;
  double progress_interval; /* seconds; <= 0: 0.1 */
  double timeout;           /* seconds for the whole fill; <= 0: none. Past
                               it the fill stops and returns PF_ETIMEDOUT. */
  /* Optional. When set, pf_fill owns `ctx` from the call on: it calls
   * release(ctx) exactly once (every return path, argument errors included),
   * after the last kernel call of this fill has returned and no other can
   * start. On a cancel (progress hook nonzero) or a timeout, pf_fill then
   * returns at once without waiting for kernel calls still running on pool
   * threads (they see limit 0); release runs later on the thread that ends
   * the last of them. The output's memory must stay valid until release
   * (let ctx own it). With release and a progress hook or a timeout, even a
   * fill of one worker or one chunk runs its kernel on a pool thread, so
   * that it can return early; the threads a returned fill's calls still
   * hold do not delay later fills (the pool starts others, within
   * pf_pool_max_threads). */
  void (*release)(void *ctx);
  int64_t first;            /* fill flat indices [first, size) only (0: all;
                               0 <= first <= size, else PF_EINVAL); progress
                               counts the elements of that range */
  const pf_window *window;  /* NULL: out is the whole index space */
} pf_fill_options;

#define PF_FILL_OPTIONS_DEFAULTS \
  { NULL, 0, PF_SCHEDULE_DYNAMIC, 0, NULL, NULL, 0.1, 0.0, NULL, 0, NULL }


/* A kernel call's handle on its fill; valid during that call only. */
typedef struct pf_fill_worker pf_fill_worker;

/* A block kernel: writes the `count` consecutive C-order elements that start at
 * flat index `start` to `out`, contiguous, in the output's dtype. Called
 * concurrently. Returns 0, or a negative code: a kernel returning nonzero
 * without calling pf_fill_worker_fail counts as
 * pf_fill_worker_fail(worker, rc, -1, NULL). */
typedef int (*pf_kernel_fn)(void *ctx, int64_t start, int64_t count, void *out,
                            pf_fill_worker *worker);

/* The worker number of a kernel call: in [0, pf_fill_workers()), and no two
 * concurrent calls share one, so it can index per-worker scratch. */
int pf_fill_worker_id(const pf_fill_worker *worker);

/* Elements at flat index >= the limit need not be computed: INT64_MAX while
 * nothing failed, the lowest failing index after pf_fill_worker_fail, 0 once
 * the fill is canceled, timed out or failed as a whole. A relaxed atomic load
 * (on a fill running on the calling thread it also checks the timeout): slow
 * kernels may call it per element. */
int64_t pf_fill_worker_limit(const pf_fill_worker *worker);

/* Element `index` (or -1: the whole fill) failed with `code` (< 0). The fill
 * still finishes every element below the lowest failing index (so the error
 * of the first failing element in C order wins, as in a sequential loop),
 * stops the rest, and returns that lowest index's code with err->position =
 * index and err->message = the formatted message (NULL fmt:
 * pf_strerror(code)), kept as given. Returns `code`. Thread-safe. */
int pf_fill_worker_fail(pf_fill_worker *worker, int code, int64_t index,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Most elements a kernel is asked for at once when the output is not
 * contiguous (the library then writes through a per-worker scratch block). */
#define PF_BLOCK_ELEMENTS 4096

/* Fills every element of `out` with `kernel`, spread over the pool's threads
 * under the schedule; the caller blocks until done, running `progress`. With one
 * worker or one chunk the kernel runs on the calling thread (unless the fill
 * may return early: see pf_fill_options.release). In a forked child of the
 * process that created the pool, on one of the pool's own threads (a fill
 * inside a kernel), or where no pool thread can be started, runs serially on
 * the calling thread; a one-worker fill in a process forked from the one
 * that loaded the library starts no pool there. Concurrent fills share the
 * pool's threads fairly (their work interleaves in slices of a few
 * milliseconds). Returns 0, the lowest failing element's code (see
 * pf_fill_worker_fail), the progress callback's code, PF_ETIMEDOUT,
 * PF_EINVAL (bad array or options), PF_ENOMEM or PF_ESYS. Thread-safe. */
int pf_fill(const pf_array *out, pf_kernel_fn kernel, void *ctx,
            const pf_fill_options *options, pf_error *err);

/* The number of workers pf_fill will use for these options and `size`
 * elements (at most `size`, at least 1): kernel worker ids are below it.
 * options->workers when > 0; else the base size of options->pool or of the
 * default pool -- and, while the default pool does not exist yet,
 * pf_cpu_count(), the size it will be made with: this query never creates
 * a pool. Thread-safe. */
int pf_fill_workers(const pf_fill_options *options, int64_t size);

/* --------------------------------------------------------- native functions */

/* User functions with plain C signatures (what ctypes and numba.cfunc make),
 * filled through pf_fill by pf_native_fill. */
typedef double (*pf_element_fn)(int64_t index);               /* flat index */
typedef double (*pf_index_fn)(const int64_t *index, int ndim); /* N-d index */
/* Writes the `count` consecutive C-order elements from flat index `start` to
 * `out` (contiguous, in the output's dtype); `ctx` is the caller's. */
typedef void (*pf_block_fn)(int64_t start, int64_t count, void *out,
                            void *ctx);

typedef enum pf_native_kind {
  PF_NATIVE_ELEMENT, /* pf_element_fn */
  PF_NATIVE_INDEX,   /* pf_index_fn */
  PF_NATIVE_BLOCK    /* pf_block_fn */
} pf_native_kind;

typedef struct pf_native {
  pf_native_kind kind;
  union {
    pf_element_fn element;
    pf_index_fn index;
    pf_block_fn block;
  } fn;
  void *ctx; /* passed to block functions */
} pf_native;

/* Fills every element of `out` (any dtype, any strides) with a native
 * function on the pool under the options. Element and index functions are
 * called once per element, concurrently from the pool's threads; the index
 * array they get is valid during the call only. Their double results are
 * cast to out's dtype as ndarray.astype casts (as pf_expr_fill does). Block
 * functions get blocks of consecutive elements (PF_BLOCK_ELEMENTS at most
 * for strided outputs, which go through a scratch block). Functions cannot
 * report errors; a fill stops early only when the progress callback cancels
 * it or the timeout passes: element and index functions then stop within 512
 * elements per worker (the callback is also called between them when the
 * fill runs on the calling thread); a block function's call runs to its end
 * (or, with options->release set, pf_native_fill returns at once on a cancel
 * or timeout and calls release(native->ctx) once the last call of the
 * function has returned: let native->ctx own the output, which the
 * function's late calls still write; element and index functions ignore
 * ctx). Returns 0 or a
 * code as pf_fill (PF_EINVAL for a NULL function or an unknown kind).
 * Thread-safe. */
int pf_native_fill(const pf_native *native, const pf_array *out,
                   const pf_fill_options *options, pf_error *err);

/* ------------------------------------------------------- shared memory */

/* Maps `bytes` (> 0) of zeroed MAP_SHARED|MAP_ANONYMOUS memory: visible to
 * children forked later, never a file (nothing in /dev/shm), returned to the
 * system when every process unmaps it or exits. NULL with errno on failure. */
void *pf_shared_alloc(size_t bytes);
/* Like pf_shared_alloc, but backed by an anonymous memfd (memfd_create,
 * MFD_CLOEXEC: nothing in /dev/shm), whose descriptor goes to *fd (-1 on
 * failure): the memory can later be made private with pf_shared_privatize.
 * The caller closes *fd if it never privatizes. NULL with errno on failure. */
void *pf_shared_alloc_memfd(size_t bytes, int *fd);
/* Turns memory from pf_shared_alloc_memfd into a private copy-on-write
 * mapping of the same memfd at the same address (contents kept, nothing
 * copied; children forked later get their own copy on write, as with any
 * private memory) and closes `fd`. Returns 0; PF_EINVAL; PF_ESYS with errno
 * (the memory is then still shared and `fd` still open). Release the memory
 * with pf_shared_free either way. */
int pf_shared_privatize(void *memory, size_t bytes, int fd);
/* Unmaps memory from pf_shared_alloc or pf_shared_alloc_memfd. NULL is a
 * no-op. */
void pf_shared_free(void *memory, size_t bytes);
/* 1 when [memory, memory+bytes) lies in MAP_SHARED mappings of this process (so
 * forked workers write where the caller reads), 0 when not, negative on error.
 * Reads /proc/self/maps (whole lines, however long a mapped path is). */
int pf_shared_contains(const void *memory, size_t bytes);

/* ------------------------------------------------------- process teams */

/*
 * A process team runs one job on up to `workers` processes forked for it, on
 * demand: the next worker is forked only while unclaimed chunks remain, and
 * never more workers than the schedule has chunks (static: parts). Chunks are
 * claimed under the schedule from an atomic counter in a MAP_SHARED control
 * block; workers write their results into memory the caller mapped shared
 * before the call (pf_shared_alloc, or a MAP_SHARED file mapping). The caller
 * supervises: a worker that dies is reported with its pid, status and the chunk
 * it held, a timeout or a canceling `between_waits` hook stops the job, and on return no
 * worker process is left. When several elements fail, the failure of the
 * lowest flat index is reported, as a sequential loop would: the job finishes
 * every element below it and computes none of the chunks past it.
 *
 * While a team runs, SIGCHLD is set to SIG_DFL if the process ignores it
 * (SIG_IGN or SA_NOCLDWAIT would let the kernel reap the workers), and
 * restored when the last concurrent team ends.
 */
typedef struct pf_team_worker pf_team_worker;

/* Runs in a worker process: computes elements [start, stop), or those below
 * pf_team_worker_limit(). Returns 0, or a negative code after
 * pf_team_worker_fail(); a nonzero return without it counts as
 * pf_team_worker_fail(worker, -1, NULL, 0) (the whole job failed). */
typedef int (*pf_team_chunk_fn)(void *ctx, pf_team_worker *worker,
                                int64_t start, int64_t stop);

/* Which side of an event a pf_team_hooks callback runs on. */
typedef enum pf_team_phase {
  PF_TEAM_BEFORE = 0,
  PF_TEAM_AFTER = 1
} pf_team_phase;

/* What a caller adds to a team's work: all optional (NULL: nothing; the
 * struct pointer may be NULL too), each called with `ctx`. The caller's hooks
 * run on the thread that called pf_team_run, never concurrently; the worker's
 * in the forked worker, where that thread is the only one. */
typedef struct pf_team_hooks {
  void *ctx;
  /* In the caller, around each fork of a worker: BEFORE just before fork(),
   * AFTER right after it, also when it failed. What pthread_atfork's prepare
   * and parent handlers do, for this team's forks only: e.g. take the locks
   * the workers' code needs, so that no other thread of the caller holds one
   * at the instant of the copy, and release them. */
  void (*around_fork)(void *ctx, pf_team_phase phase);
  /* In each worker, around its work: BEFORE first thing after the fork,
   * before the first chunk -- make usable what fork leaves broken in a child
   * (locks other threads held, thread pools, per-process caches and random
   * seeds; a runtime's after-fork reinitialisation); AFTER after the last
   * chunk, just before the worker leaves with _exit(), which runs no atexit
   * handler and flushes no stdio buffer: flush output here (fflush(NULL))
   * when chunks write with stdio. A worker that dies or exits on its own
   * runs no AFTER. */
  void (*around_work)(void *ctx, pf_team_phase phase);
  /* In the caller, around each blocking wait for the workers: BEFORE just
   * before it blocks, AFTER as soon as it wakes; always paired, never
   * nested, and no other hook runs in between. E.g. release a lock other
   * threads of the caller need while the job runs (an interpreter lock), and
   * take it back. */
  void (*around_wait)(void *ctx, pf_team_phase phase);
  /* In the caller between waits (not blocked), about every poll interval and
   * as soon as a signal interrupts a wait, with the elements done so far:
   * report progress, look for a reason to stop (a flag a signal handler set,
   * a deadline of the caller's). Nonzero cancels the job, and pf_team_run
   * returns it. */
  int (*between_waits)(void *ctx, int64_t done, int64_t total);
} pf_team_hooks;

typedef struct pf_team_options {
  int workers;          /* >= 1 */
  pf_schedule schedule;
  int64_t chunk;        /* 0: auto */
  int retries;          /* times a chunk lost to a dead worker is recomputed */
  double timeout;       /* seconds for the whole job; <= 0: none */
  double poll_interval; /* seconds between between_waits calls; <= 0: 0.05 */
  size_t error_capacity;/* bytes for a failure payload; 0: 64 KiB */
} pf_team_options;

#define PF_TEAM_OPTIONS_DEFAULTS \
  { 1, PF_SCHEDULE_DYNAMIC, 0, 0, 0.0, 0.05, 0 }

/* What happened, filled by pf_team_run on return. */
typedef struct pf_team_report {
  /* PF_EKERNEL: the failure of the lowest index (pf_team_worker_fail). */
  int64_t failed_index;
  void *payload;        /* malloc'd copy of the failure payload; caller frees */
  size_t payload_size;
  /* PF_EKERNEL and PF_EWORKER: which worker. */
  int worker;
  int pid;
  /* PF_EWORKER: how it ended and the chunk [start, stop) it held (-1 if none) */
  int exit_status;      /* exit code, or -1 */
  int term_signal;      /* signal number, or 0 */
  int64_t chunk_start;
  int64_t chunk_stop;
  int retried;          /* chunks recomputed after worker deaths */
} pf_team_report;

/* Runs the job over flat indices [0, size). Returns 0 when every element was
 * computed; PF_EKERNEL (a worker's chunk function failed; see report),
 * PF_EWORKER (a worker died and retries were exhausted, or more than
 * workers * (retries + 1) workers died before claiming any chunk),
 * PF_ETIMEDOUT, the between_waits hook's nonzero code, PF_EINVAL, PF_ENOMEM
 * or PF_ESYS (err->sys_errno: e.g. a failed fork, "cannot fork worker 3 of
 * 8: ...", or EBADF when a pidfd of the team was closed by someone else --
 * the workers are then killed and reaped by pid). On every return all
 * workers have been stopped and reaped and the control block unmapped. The
 * report (may be NULL) is filled in all cases. Thread-safe with respect to
 * other teams. */
int pf_team_run(int64_t size, const pf_team_options *options,
                const pf_team_hooks *hooks, pf_team_chunk_fn chunk_fn,
                void *chunk_ctx, pf_team_report *report, pf_error *err);

/* In a worker: element `index` (or -1: the whole job) failed. Of all the
 * failures of the job the one with the lowest index is kept (the first in C
 * order, as in a sequential loop; later calls with a higher index are
 * dropped) with `size` bytes of `payload` (truncated to the capacity); the
 * job still finishes every element below that index, stops the rest and
 * returns PF_EKERNEL with it in the report. Safe against workers killed at
 * any instant (a robust process-shared mutex and a double-buffered record).
 * Returns PF_EKERNEL for convenience. */
int pf_team_worker_fail(pf_team_worker *worker, int64_t index,
                        const void *payload, size_t size);
/* In a worker: elements at flat index >= the limit need not be computed:
 * INT64_MAX while nothing failed, the lowest failing index after a failure,
 * 0 once the caller stops the job. A relaxed atomic load: slow chunk
 * functions may call it per element. */
int64_t pf_team_worker_limit(const pf_team_worker *worker);
/* In a worker: 1 once the chunk being computed is not needed any more (it
 * starts at or past the limit), else 0. Cheap; long chunks should poll it. */
int pf_team_worker_stopping(const pf_team_worker *worker);
/* In a worker: its number in [0, workers). */
int pf_team_worker_id(const pf_team_worker *worker);

/* ---------------------------------------------------------- expressions */

/* PF_PARAM_BOOL: a boolean (i is 0 or 1), typed bool as NumPy types Python's
 * True and False: ~flag is logical, flag + flag is logical or.
 * PF_PARAM_UINT128: an integer in [0, 2**128), u[0] + u[1] * 2**64, for the
 * parameter `seed` (Philox's 128-bit key) beyond int64; in arithmetic it is
 * an int64 where it fits, else a PF_ETYPE error.
 *
 * The parameter named `seed` (PF_PARAM_INT >= 0 or PF_PARAM_UINT128; 0 when
 * absent) is the key of the random functions uniform() and normal(): their
 * element idx is the value of flat index idx of stream n under that key, as
 * defined in the "random numbers" section below. It is no error when the
 * text does not use it. */
typedef enum pf_param_kind {
  PF_PARAM_INT,
  PF_PARAM_FLOAT,
  PF_PARAM_BOOL,
  PF_PARAM_UINT128
} pf_param_kind;

/* A named scalar parameter of an expression. */
typedef struct pf_param {
  const char *name;
  pf_param_kind kind;
  int64_t i;     /* when kind == PF_PARAM_INT or PF_PARAM_BOOL */
  double f;      /* when kind == PF_PARAM_FLOAT */
  uint64_t u[2]; /* when kind == PF_PARAM_UINT128: low word, high word */
} pf_param;

typedef struct pf_expr pf_expr;

/* Compiles `text` (SPEC section 4) for arrays of `ndim` dimensions, with the
 * given parameters (names and values are copied). On success *expr is owned by
 * the caller (pf_expr_free). On failure returns PF_ESYNTAX, PF_ENAME, PF_ETYPE,
 * PF_ELIMIT, PF_EINVAL or PF_ENOMEM and fills err, including err->position.
 * Thread-safe; a compiled expression may be used by many threads at once. */
int pf_expr_compile(pf_expr **expr, const char *text, int ndim,
                    const pf_param *params, size_t nparams, pf_error *err);

/* Fills every element of `out` (whose ndim -- with options->window, the
 * whole's -- must equal the compiled one) with
 * the expression, cast to out's dtype as ndarray.astype casts, on the pool
 * under the options (options->release is not used). Returns 0 or a code as
 * pf_fill; a run-time error (PF_ETYPE, an integer to a negative power) is the
 * first failing element's, as in a sequential loop, with err->position its
 * operator's offset in the text. Thread-safe. */
int pf_expr_fill(const pf_expr *expr, const pf_array *out,
                 const pf_fill_options *options, pf_error *err);

/* PF_INT64, PF_FLOAT64 or PF_BOOL: the type the expression computes in. */
pf_dtype pf_expr_type(const pf_expr *expr);

/* Frees a compiled expression. NULL is a no-op. */
void pf_expr_free(pf_expr *expr);

/* ----------------------------------------------------- translated programs */

/*
 * Programs of the translated-function VM (SPEC section 9): what the Python
 * front end makes of a plain Python function, run for every element with
 * CPython's exact semantics. Four register files per element -- I (int64
 * holding a Python int), F (double, a Python float), B (a Python bool), C
 * (two doubles, a Python complex) -- with I0 .. I(ndim-1) preloaded with
 * the element's N-d index; instructions of 5 int32 words (op, dst, a, b,
 * c), operands as src/pyvm_opcodes.h's table says; constant pools of int64
 * and double. Jumps may go backward (loops; an element may loop forever and
 * is then stopped by the fill's cancel or timeout) and every path ends in a
 * RET_*, a BAIL or a cycle.
 *
 * Anything the VM cannot compute exactly as CPython would (an int leaving
 * int64, a division by zero, a math domain error, a value NumPy would refuse
 * or warn about when stored, a BAIL) is a *bail*: that element needs
 * Python. A fill stops at the lowest bailing element (every element below
 * it is computed) and reports it as PF_EBAIL.
 */
typedef struct pf_prog pf_prog;

#define PF_PROG_MAX_CODE (1 << 16)    /* instructions */
#define PF_PROG_MAX_REGS 16384        /* registers per file */
#define PF_PROG_MAX_CONSTS (1 << 20)  /* entries per constant pool */

/* Validates and copies a program: `code` holds `nwords` int32 words (5 per
 * instruction), `iconsts`/`fconsts` the pools (may be NULL when empty),
 * `nregs` = {nI, nF, nB, nC} with nI >= ndim. Every opcode, register,
 * constant, immediate, function id and target is checked, unused operand
 * words must be 0 and the last instruction must end its path.
 * Returns 0 with *prog owned by the caller (pf_prog_free), PF_EINVAL (err
 * says which instruction and why) or PF_ENOMEM. Thread-safe; a program may be
 * used by many fills at once. */
int pf_prog_create(pf_prog **prog, const int32_t *code, size_t nwords,
                   const int64_t *iconsts, size_t niconsts,
                   const double *fconsts, size_t nfconsts, int ndim,
                   const int32_t nregs[4], pf_error *err);

/* Runs the program for every element of `out` (flat indices
 * [options->first, size)), whose ndim must be the program's, storing each
 * RET_* value as NumPy's `a[idx] = value` stores a Python int, float, bool
 * or complex into out's dtype, on the pool under the options. Returns 0 when every
 * element was computed; PF_EBAIL with err->position = the lowest bailing
 * flat index and err->message = "<op>: <why>" (every element from first up
 * to it is computed; those at and past it may or may not be written);
 * otherwise a code as pf_fill. Thread-safe. */
int pf_prog_fill(const pf_prog *prog, const pf_array *out,
                 const pf_fill_options *options, pf_error *err);

/* Frees a program. NULL is a no-op. */
void pf_prog_free(pf_prog *prog);

/* The opcode table and the math functions of F_CALL1 / F_CALL2, by number:
 * the name ("I_ADD", "sin"), or NULL past the count; a function's arity (1
 * or 2) into *arity when not NULL. Static strings, thread-safe. */
int pf_prog_opcode_count(void);
const char *pf_prog_opcode_name(int op);
int pf_prog_function_count(void);
const char *pf_prog_function_name(int fn, int *arity);

/* --------------------------------------------------------- random numbers */

/*
 * Counter-based random numbers: Philox4x64-10 (Salmon et al., "Parallel
 * random numbers: as easy as 1, 2, 3", SC 2011; Random123). Every value is a
 * pure function of (seed, stream, flat index), so fills give the same array
 * for any pool, schedule, chunk size or worker count.
 *
 * The seed is a 128-bit key {seed mod 2**64, seed >> 64}. With raw(tag, n, j)
 * = word j % 4 of pf_philox4x64_10 for counter (j / 4 + 1, 0, n, tag):
 *   uniform float64, stream n, element e: (raw(0, n, e) >> 11) * 2**-53.
 *     Stream 0 equals NumPy's Generator(Philox(key=seed)).random() bit for bit.
 *   uniform float32: w = raw(0, n, e / 2), h = its low 32 bits for even e,
 *     its high 32 bits for odd e; (h >> 8) * 2**-24. Stream 0 equals NumPy's
 *     Generator(Philox(key=seed)).random(dtype=float32).
 *   normal, element e (Box-Muller on the pair p = e / 2, a = raw(1, n, 2p),
 *     b = raw(1, n, 2p + 1)): sqrt(-2 ln u1) * (cos t for even e, sin t for
 *     odd e), u1 = ((a >> 11) + 1) * 2**-53, t = 2 pi (b >> 11) * 2**-53; ln,
 *     cos and sin are parfill's own (< 1 ulp), the same bits on every
 *     machine path. float32 outputs get these float64 values rounded.
 */

/* The 4 output words of Philox4x64-10 for a 256-bit counter (word 0 least
 * significant) and a 128-bit key. Checked against Random123's known-answer
 * vectors. Thread-safe. */
void pf_philox4x64_10(const uint64_t counter[4], const uint64_t key[2],
                      uint64_t out[4]);

typedef enum pf_random_dist {
  PF_RANDOM_UNIFORM, /* [0, 1) */
  PF_RANDOM_NORMAL   /* standard normal */
} pf_random_dist;

/* Fills `out` (float32 or float64, any strides) with element e = the value
 * of flat index e of stream `stream` under `key` (see above), on the pool
 * under the options. Returns 0, PF_EDTYPE (another dtype), or a code as
 * pf_fill. Thread-safe. */
int pf_random_fill(const pf_array *out, pf_random_dist dist,
                   const uint64_t key[2], uint64_t stream,
                   const pf_fill_options *options, pf_error *err);

/* ------------------------------------------------------------ .npy files */

/*
 * NumPy's .npy format (numpy.lib.format): a magic string, a version, a header
 * length, then a Python dict literal {'descr', 'fortran_order', 'shape'}
 * padded with spaces and a newline so the data starts on a 64-byte boundary,
 * then the elements in C (or Fortran) order.
 */

/* The longest header pf_npy_header_write writes (PF_MAX_DIMS dimensions of 19
 * digits each fit): a buffer of this many bytes is always enough. */
#define PF_NPY_HEADER_MAX 1024
/* The longest header pf_npy_header_read accepts, prefix included. */
#define PF_NPY_HEADER_READ_MAX (1 << 20)

/* What a .npy header says. */
typedef struct pf_npy_header {
  int version;         /* format version 1, 2 or 3 (the minor is always 0).
                          To write: 0 picks 1, or 2 when the header does not
                          fit version 1's 16-bit length (as NumPy does) */
  pf_dtype dtype;
  int fortran_order;   /* 1: the data is in Fortran order. Written: always 0 */
  int ndim;            /* 0 .. PF_MAX_DIMS */
  int64_t shape[PF_MAX_DIMS];
  int64_t data_offset; /* read: where the data starts (the header's length) */
} pf_npy_header;

/* Writes the header NumPy's write_array_header_1_0 / _2_0 write for a C-order
 * array of h->dtype and h->shape, byte for byte (descr such as '<f8' or '|b1',
 * the 1-tuple's comma, NumPy's 21-digit growth spare space, padding to 64
 * bytes), into buf. *length gets its size in bytes -- a multiple of 64, the
 * offset of the data. Returns 0; PF_EINVAL (NULL arguments, h->version not
 * 0..3, h->fortran_order set, ndim out of range, a negative length, or
 * `capacity` too small -- PF_NPY_HEADER_MAX always suffices; *length then
 * says what is needed), PF_EDTYPE, or PF_EOVERFLOW (data of more than
 * INT64_MAX bytes); err (may be NULL) says which. Thread-safe. */
int pf_npy_header_write(const pf_npy_header *h, void *buf, size_t capacity,
                        size_t *length, pf_error *err);

/* Parses the header at the start of `buf` (`size` bytes: a file's first bytes
 * or all of it; nothing beyond buf + size is read). Accepts what NumPy's
 * reader accepts from versions 1.0, 2.0 and 3.0 for the dtypes parfill knows:
 * keys in any order, either quote, any whitespace, trailing commas, Python 2's
 * `L` suffix. On success fills *h (data_offset: where the data starts) and
 * returns 0. Returns PF_EFORMAT for anything malformed, for a header longer
 * than PF_NPY_HEADER_READ_MAX, more than PF_MAX_DIMS dimensions, a data size
 * over INT64_MAX bytes, or a header cut short by `size` (then, once the
 * 8-to-12-byte prefix is complete, h->data_offset says how many bytes the
 * header needs, else 0); PF_EDTYPE for a well-formed header whose dtype has no
 * pf_dtype (big-endian, structured, strings, objects, datetimes). err (may be
 * NULL) says what, err->position is the offending byte's offset in buf or -1.
 * Never crashes on any input (fuzzed). Thread-safe. */
int pf_npy_header_read(const void *buf, size_t size, pf_npy_header *h,
                       pf_error *err);

/* Reads and parses the header of the open .npy file `fd` (with pread: the
 * file offset is not moved), then checks that the file holds all the data
 * the header promises. Returns 0, a code as pf_npy_header_read (PF_EFORMAT
 * also for a file shorter than its header says), or PF_EIO (read failed;
 * err->sys_errno) / PF_ENOMEM. Thread-safe for distinct descriptors. */
int pf_npy_header_read_fd(int fd, pf_npy_header *h, pf_error *err);

/* Flags of the .npy fills and of pf_file_create. */
#define PF_NPY_FORCE 1u    /* replace a file that exists at the path */
#define PF_NPY_BUFFERED 2u /* write through the page cache, not O_DIRECT */
#define PF_NPY_NAMED_TEMP 4u /* a named temporary file even where O_TMPFILE
                                works (tests; see pf_npy_fill) */

/* Bytes of the file the .npy fills write per pwrite: each worker holds one
 * such buffer, so memory does not grow with the file. */
#define PF_NPY_BLOCK_BYTES (1 << 20)

/* Writes the .npy file `path`: C order, `dtype`, `ndim` dimensions of
 * `shape`, element flat index k = kernel's value for k. How: the name is
 * checked first (taken without PF_NPY_FORCE, or longer than the directory
 * allows: errors before any work); an unnamed temporary file (O_TMPFILE) is
 * created in `path`'s directory -- it never appears in the directory, and
 * vanishes if the process dies, even by SIGKILL -- or, where the filesystem
 * has no O_TMPFILE (or with PF_NPY_NAMED_TEMP), a hidden file
 * ".NAME.XXXXXX.tmp" next to `path` (O_EXCL); either has mode 0666 less the
 * umask. Its whole size is reserved with fallocate (so a full disk or the file
 * size limit is reported before any work), then the file is written in
 * blocks of PF_NPY_BLOCK_BYTES (the header leads the first), each computed
 * by `kernel` on the pool under `options` into a per-worker buffer and
 * written with pwrite -- with direct I/O (O_DIRECT: no page cache, no copy)
 * where the filesystem has it and PF_NPY_BUFFERED is not given, else through
 * the page cache with writeback started as it goes -- then fsync'd and
 * bound to `path`: without PF_NPY_FORCE with no replacing (the unnamed file
 * linked to `path` with linkat through /proc/self/fd; a named one renamed
 * with renameat2 RENAME_NOREPLACE, or link + unlink), so `path` only ever
 * names a complete file and an existing one is never touched; with
 * PF_NPY_FORCE replacing a regular file atomically (a new inode; an unnamed
 * file is first linked to a hidden temporary name, then renamed) -- never a
 * directory, symlink or device. A named temporary file can survive only a
 * kill the process cannot catch (SIGKILL; the application's handlers must
 * cancel through the progress callback so this function removes it).
 * Memory use is the per-worker buffers plus one byte per block, whatever the
 * size of the file.
 *
 * The kernel is called concurrently, as by pf_fill, with `out` a contiguous
 * buffer of `count` elements and `worker` below pf_fill_workers(options,
 * size); options->chunk (elements) is rounded up to whole blocks. Its handle
 * works as in pf_fill, at block granularity: pf_fill_worker_limit is 0 once
 * the fill stops, and after pf_fill_worker_fail the fill returns the lowest
 * failing element's code and message (as given), with err->position the
 * number of the file's PF_NPY_BLOCK_BYTES block that holds it. The progress callback (calling thread) gets the elements
 * written so far; a nonzero return, like options->timeout, stops the fill
 * within about one block per worker. options->release is not used (ctx stays
 * the caller's).
 *
 * Returns 0 when `path` names the complete file. Otherwise nothing is left
 * behind -- no temporary file, and whatever was at `path` is untouched -- and
 * the result is: PF_EEXIST (`path` exists, without PF_NPY_FORCE or not a
 * regular file; checked first and again, atomically, at the end without
 * PF_NPY_FORCE); PF_ENOSPC (disk or quota full); PF_EIO
 * (create, reserve, write, sync or rename failed: err->sys_errno says why,
 * e.g. EACCES, EROFS, EFBIG for the file size limit -- ignore SIGXFSZ, or the
 * kernel kills the process instead); the kernel's or the progress callback's
 * code (e.g. PF_ECANCELED); PF_EINVAL, PF_EDTYPE, PF_EOVERFLOW (bad
 * arguments); PF_ENOMEM; PF_ESYS. err (may be NULL) says what and where.
 * The library installs no signal handlers. Thread-safe: concurrent fills of
 * different paths share the pool. */
int pf_npy_fill(const char *path, pf_dtype dtype, int ndim,
                const int64_t *shape, pf_kernel_fn kernel, void *ctx,
                const pf_fill_options *options, unsigned flags,
                pf_error *err);

/* pf_npy_fill with the values of a compiled expression (compiled for `ndim`
 * dimensions), cast to `dtype` as pf_expr_fill casts them. Returns as
 * pf_npy_fill; a run-time error of the expression (PF_ETYPE, e.g. an integer
 * to a negative power) is the first failing element's, as in a sequential
 * loop, with err->position its operator's offset in the text. The per-fill
 * scalars are evaluated before the file is created: their errors leave
 * nothing to clean up. Thread-safe. */
int pf_npy_fill_expr(const char *path, const pf_expr *expr, pf_dtype dtype,
                     int ndim, const int64_t *shape,
                     const pf_fill_options *options, unsigned flags,
                     pf_error *err);

/* ------------------------------------------------ files published complete */

/* A file for `path` that is written under a temporary name and appears under
 * `path` only complete -- what pf_npy_fill writes through, for callers that
 * write a file their own way (the MPI command's ranks write one together). */
typedef struct pf_file pf_file;

/* Checks `path` as pf_npy_fill does (a directory name, a name longer than
 * the directory allows, or -- without PF_NPY_FORCE -- one that exists, or
 * with it one that is not a regular file: errors before anything is made),
 * creates the temporary file (unnamed, or with PF_NPY_NAMED_TEMP always a
 * hidden ".NAME.XXXXXX.tmp" next to `path` that other processes can open
 * by pf_file_path) and reserves `bytes` (a full disk or the file size limit
 * fails here). *out is the file on success, else NULL. Returns 0, PF_EEXIST,
 * PF_ENOSPC, PF_EIO (err->sys_errno says why), PF_EINVAL (bad arguments or
 * flags other than PF_NPY_*) or PF_ENOMEM; nothing is left behind on
 * failure. Thread-safe for different paths. */
int pf_file_create(const char *path, int64_t bytes, unsigned flags,
                   pf_file **out, pf_error *err);

/* Its descriptor (read and write; the library closes it), -1 for NULL. */
int pf_file_fd(const pf_file *f);

/* A name that opens the temporary file: its hidden name, or for an unnamed
 * file "/proc/self/fd/N" (this process only). Valid until pf_file_close. */
const char *pf_file_path(const pf_file *f);

/* fsyncs the file (a write error shows up here) and binds it to its path:
 * without PF_NPY_FORCE never replacing anything, even a file that appeared
 * meanwhile (PF_EEXIST); with it replacing a regular file atomically. Then
 * the directory is synced. Returns 0, PF_EEXIST, PF_ENOSPC, PF_EIO or
 * PF_EINVAL (NULL, or published already); the file stays unpublished on
 * failure. */
int pf_file_publish(pf_file *f, pf_error *err);

/* Closes the file and, unless it was published, removes it; frees f. NULL
 * is fine. A named temporary file survives only a kill the process cannot
 * catch (SIGKILL): handlers of other signals must see that this runs. */
void pf_file_close(pf_file *f);

#ifdef __cplusplus
}
#endif

#endif /* PARFILL_H */
