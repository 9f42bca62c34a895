/* pool.h -- the thread pool's internal interface (pf__ names). */
#ifndef PF_POOL_H
#define PF_POOL_H

#include "internal.h"

/* A task's return value: done, or queue it again at the tail (a fill whose
 * slice of time is up while other tasks wait: see pool.c DESIGN, Fairness). */
enum { PF__TASK_DONE = 0, PF__TASK_AGAIN = 1 };

typedef int (*pf__task_fn)(void *arg);

/* Queues fn(arg) to run on one of the pool's threads. `tag` names the task's
 * group for pf__pool_withdraw. Returns 0 or PF_ENOMEM. Thread-safe. Never
 * call it in a forked child (see pf__pool_usable). */
int pf__pool_submit(pf_pool *pool, pf__task_fn fn, void *arg, const void *tag);

/* Removes the queued (not yet running) tasks of group `tag`; returns how many.
 * Thread-safe. */
int pf__pool_withdraw(pf_pool *pool, const void *tag);

/* Tasks queued and waiting for a thread (a relaxed read: a hint). */
int pf__pool_waiting(const pf_pool *pool);

/* Grows the pool towards `threads` idle-or-working threads, not counting
 * stranded ones (pf__pool_strand), capped at pf_pool_max_threads. Returns the number of threads the pool has (>= 1), or PF_ESYS (with `err`
 * filled: the errno of pthread_create) when it has none at all. Thread-safe. */
int pf__pool_reserve(pf_pool *pool, int threads, pf_error *err);

/* `threads` (> 0) more, or (< 0) fewer, pool threads are held by kernel
 * calls of fills whose caller returned (fill.c: release); pf__pool_reserve
 * starts replacements for them. Lock-free (callable under a fill's lock). */
void pf__pool_strand(pf_pool *pool, int threads);

/* The base size (pf_pool_create's `threads`, or those it could start). */
int pf__pool_base(const pf_pool *pool);

/* The default pool when this process has made it, else NULL (creates
 * nothing). Thread-safe. */
pf_pool *pf__pool_default_existing(void);

/* 1 in a process forked from the one that loaded the library. */
int pf__pool_forked(void);

/* 0 in a process forked after the pool was created (its threads do not exist
 * there, and its lock may have been copied while held), and on the pool's own
 * threads (a fill nested in a kernel would wait for itself). Fills then run
 * serially on the calling thread. */
int pf__pool_usable(const pf_pool *pool);

/* Test hook: pthread_create fails with EAGAIN after `n` more successes
 * (< 0 disarms). */
void pf__pool_fail_create_after(int n);

/* ------------------------------------------------------ fill worker handles */

struct fill_job;

/* The handle a kernel call gets (parfill.h: pf_fill_worker). Three kinds:
 * a fill's worker (job set); a detached one for kernel calls outside any
 * fill (limit INT64_MAX, fail only returns the code); and a mapped one, for
 * a kernel run inside another fill's kernel over a different index space
 * (npy.c: elements inside a fill over file blocks), whose indices map to the
 * outer fill's. */
struct pf_fill_worker {
  struct fill_job *job;
  int id;
  int serial; /* runs on the calling thread: limit checks the timeout */
  int failed; /* pf_fill_worker_fail was called during this kernel call */
  /* mapped */
  pf_fill_worker *outer;
  int64_t (*to_outer)(const void *map, int64_t index);  /* >= 0 */
  int64_t (*from_outer)(const void *map, int64_t limit); /* limit >= 0 */
  const void *map;
};

/* A detached handle with worker id `id`. */
void pf__fill_worker_detached(pf_fill_worker *worker, int id);
/* A handle that maps indices to those of `outer`'s fill. */
void pf__fill_worker_mapped(pf_fill_worker *worker, pf_fill_worker *outer,
                            int64_t (*to_outer)(const void *, int64_t),
                            int64_t (*from_outer)(const void *, int64_t),
                            const void *map);
/* On a fill that runs on the calling thread: calls the progress hook when it
 * is due (and checks the timeout); returns 0 or the code that now stops the
 * fill. Elsewhere only returns limit == 0 ? the fill's code : 0. For kernels
 * that run long and do not hold locks the hook may need (native.c). */
int pf__fill_worker_poll(pf_fill_worker *worker, int64_t done);

/* options->progress_interval, or its default (0.1 s) when <= 0. */
double pf__progress_interval(const pf_fill_options *options);

#endif /* PF_POOL_H */
