/*
 * internal.h -- helpers shared by libparfill's files (pf__ names).
 *
 * Dependency order of the library (a file uses only those above it):
 *   alloc.c  error.c  dtype.c  index.c  cpu.c   allocation, values, errors
 *   schedule.c                               chunk schedules (shared-memory safe)
 *   shm.c                                    MAP_SHARED memory
 *   pool.c   fill.c                          thread pool, fills on it
 *   team.c                                   process teams
 *   philox.c                                 counter-based random numbers
 *   expr_*.c expr.c                          expressions (use philox.c)
 *   native.c                                 native functions (use the VM's casts)
 *   pyvm_ops.c pyvm_prog.c pyvm.c            translated programs: CPython-exact
 *                                            ops, validation, the VM (use fills)
 *   npy_header.c                             .npy headers (write, strict read)
 *   output_file.c                            files published complete (pf_file)
 *   npy_file.c                               .npy fills (use headers, pf_file,
 *                                            expressions, fills)
 */
#ifndef PF_INTERNAL_H
#define PF_INTERNAL_H

#include <stdarg.h>
#include <sys/types.h>

#include "parfill.h"

/* The library's allocator: malloc, calloc, realloc (memory is released with
 * free), except that a test may arm a simulated failure (alloc.c). */
void *pf__malloc(size_t bytes);
void *pf__calloc(size_t count, size_t bytes);
void *pf__realloc(void *memory, size_t bytes);
/* aligned_alloc with `bytes` rounded up to a multiple of `alignment` (a power
 * of two); released with free. */
void *pf__aligned_alloc(size_t alignment, size_t bytes);
/* Test hook: the n-th allocation from now fails once (0 disarms). */
void pf__alloc_fail_nth(long n);
/* 1 (with errno ENOMEM) when the armed failure is due now; counts one
 * allocation. For allocations not made through pf__malloc (mmap). */
int pf__alloc_should_fail(void);

/* Fills err (may be NULL) and returns code. position -1 when none. */
int pf__error_set(pf_error *err, int code, int64_t position, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));
/* Same, with errno recorded as sys_errno and strerror appended. */
int pf__error_sys(pf_error *err, int code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* pwrite through output_file.c's test seam (pf__file_fail_call). */
ssize_t pf__file_pwrite(int fd, const void *p, size_t n, off_t offset);
/* An errno as a code: a full disk (ENOSPC, EDQUOT) is PF_ENOSPC, anything
 * else PF_EIO. */
int pf__io_code(int e);

/* Monotonic clock in seconds. */
double pf__now(void);

/* The CPU quota of the cgroup hierarchy mounted at `root` (v2 cpu.max, else
 * v1 cpu/cpu.cfs_quota_us and cpu.cfs_period_us) as a number of CPUs, 0 when
 * unlimited or unreadable (cpu.c; pf_cpu_count reads /sys/fs/cgroup once). */
double pf__cpu_quota_read(const char *root);

/* Flat index -> byte offset in a strided array (no bounds checks). */
int64_t pf__offset_of(const pf_array *a, int64_t flat);

/* Default chunk for `size` elements over `workers` under a schedule. */
int64_t pf__auto_chunk(pf_schedule schedule, int64_t size, int workers);

/* window.c: a pf_window, prepared for mapping an output's elements (C
 * order, k) to the whole's flat indices and back. */
typedef struct pf__window_map {
  int box;        /* 0: range form (or a 0-d box), flat = offset + k */
  int64_t offset;
  int64_t size;   /* elements of the output */
  int ndim;
  int axis;       /* the last axis the box does not span entirely */
  int64_t run;    /* output elements per stretch of consecutive flat indices */
  int64_t whole[PF_MAX_DIMS];
  int64_t inner[PF_MAX_DIMS]; /* the whole's elements per step of an axis */
  int64_t origin[PF_MAX_DIMS];
  int64_t shape[PF_MAX_DIMS]; /* the box's */
} pf__window_map;

/* For a window pf_window_check accepted for out_ndim, out_shape. */
void pf__window_map_init(pf__window_map *m, const pf_window *window,
                         int out_ndim, const int64_t *out_shape);
/* The whole's flat index of element k (0 <= k < m->size). */
int64_t pf__window_to_whole(const pf__window_map *m, int64_t k);
/* The element k of the whole's flat index `flat`, which is in the window. */
int64_t pf__window_from_whole(const pf__window_map *m, int64_t flat);
/* A fill's limit (elements k >= limit need not be computed; 0..size) in the
 * whole's flat indices: those >= the result need not be computed. */
int64_t pf__window_limit_to_whole(const pf__window_map *m, int64_t limit);
/* How many elements from k on have consecutive flat indices in the whole. */
int64_t pf__window_stretch(const pf__window_map *m, int64_t k);
/* The index space a fill's kernel sees: options->window's whole, else out. */
void pf__index_space(const pf_array *out, const pf_fill_options *options,
                     int *ndim, const int64_t **shape);

#endif /* PF_INTERNAL_H */
