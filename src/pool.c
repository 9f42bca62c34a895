/*
 * pool.c -- a persistent pthread pool.
 *
 * DESIGN
 * A pool is a FIFO queue of tasks, one mutex, one condition variable that
 * wakes idle threads, a shutdown flag and the threads themselves (zstd's
 * POOL_ctx shape). Fills (fill.c) queue one task per worker and wait on their
 * own completion state, so several fills may share a pool at once; a fill never
 * blocks a pool thread on another fill, so sharing cannot deadlock.
 *
 * Fairness: a task returns PF__TASK_AGAIN to be queued again at the tail
 * (same node, no allocation, cannot fail). Fill tasks do so when their slice
 * of a few milliseconds is up *and* other tasks wait (pf__pool_waiting), so
 * concurrent fills take turns round robin, while a fill alone never pays
 * for a re-queue. A fill that is canceled or timed out takes its queued tasks
 * back (pf__pool_withdraw), so its caller need not wait for them to reach a
 * thread behind another fill's work.
 *
 * Size: a pool starts `base` threads and grows on demand (pf__pool_reserve)
 * up to `max` = max(base, 64, 4 * CPUs) -- a fill asking for more workers
 * than that queues more tasks than there are threads, which is correct (tasks
 * never wait for each other) and bounds memory (each thread is a stack).
 * Threads above `base` exit after IDLE_SECONDS without work, so a burst of
 * workers=500 does not keep hundreds of idle threads for the process's life.
 * Each thread has a slot in a fixed array of `max` slots, reused by the next
 * grow once its thread exited.
 *
 * Joining: a thread that exits when idle detaches itself (under the lock,
 * before it frees its slot), so no exited thread is ever left unjoined --
 * the default pool is never destroyed, and exited-but-unjoined threads would
 * be leaked at process exit (TSan reports them). This is safe against
 * pf_pool_destroy: after it unlocks the pool's mutex, a detached thread
 * touches no memory of the pool (it only returns), and destroy takes the
 * mutex before it reads the slots, so it either sees the slot free (the
 * thread is gone as far as the pool is concerned) or running (then the
 * thread has not detached, sees shutdown and is joined). POSIX allows a
 * mutex to be destroyed as soon as it is unlocked. Threads that exit at
 * shutdown are joined by pf_pool_destroy.
 *
 * Stranded threads: a fill that returned early (fill.c: release) leaves its
 * running kernel calls on pool threads -- a Python function may sleep for
 * seconds more. pf__pool_strand counts those threads, and pf__pool_reserve
 * starts that many extra (within `max`), so the next fill gets its workers at
 * once instead of waiting behind calls nobody waits for. The extra threads
 * are surplus and exit when idle.
 *
 * Thread creation failure (EAGAIN under RLIMIT_NPROC, ENOMEM): a pool keeps
 * the threads it could start and works with them; pf_pool_create fails only
 * when not one thread starts, and then frees everything (never half a pool).
 * Fills with no pool run serially on the caller (fill.c).
 *
 * Signals: threads are created with every signal blocked, so SIGINT and
 * friends are delivered to the application's threads (Python's main thread),
 * never to a pool thread in the middle of a kernel.
 *
 * Fork: only the forking thread exists in a child, and the mutex may have been
 * copied in a locked state. A pool remembers the pid that created it; in any
 * other process pf__pool_usable() is false and fills run serially on the
 * calling thread without touching the pool's lock. pf_pool_default() makes a
 * fresh pool for a forked child that asks for one.
 *
 * Nesting: a kernel may itself call pf_fill on the pool it runs on (e.g. a
 * Python function on the threads backend that populates another array). Its
 * tasks would queue behind the pool threads that wait for them, and once
 * every thread waits so, nothing runs: a deadlock. So pf__pool_usable() is
 * also false on the pool's own threads, and a nested fill runs serially on
 * the calling thread.
 *
 * Lock order: a pool's mutex is a leaf; nothing else is locked while it is
 * held, and task functions run without it.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

/* Seconds a thread above the base size waits for work before it exits. */
#define IDLE_SECONDS 2.0

typedef struct task {
  pf__task_fn fn;
  void *arg;
  const void *tag;
  struct task *next;
} task;

enum { SLOT_FREE, SLOT_RUNNING };

typedef struct slot {
  pf_pool *pool;
  pthread_t thread;
  int state; /* guarded by pool->lock */
} slot;

struct pf_pool {
  pthread_mutex_t lock;
  pthread_cond_t wake; /* tasks queued, or shutting down */
  task *head, *tail;   /* FIFO, guarded by lock */
  task *free_tasks;    /* recycled task nodes, guarded by lock */
  int queued;          /* nodes in the FIFO; written under lock, read relaxed */
  slot *slots;         /* max of them; the array never moves */
  int nthreads;        /* running threads; written under lock, read relaxed */
  int busy;            /* threads inside a task, guarded by lock */
  _Atomic int stranded; /* threads held by detached fills (pf__pool_strand) */
  int base, max;       /* immutable */
  int shutdown;        /* guarded by lock */
  pid_t pid;           /* creator process; immutable */
};

/* The pool whose thread this is (NULL on other threads). */
static _Thread_local const pf_pool *own_pool;

static _Atomic int fail_create_after = -1;

void pf__pool_fail_create_after(int n) { atomic_store(&fail_create_after, n); }

static int create_thread(pthread_t *thread, void *(*fn)(void *), void *arg) {
  int n = atomic_load(&fail_create_after);
  while (n >= 0) {
    if (n == 0) return EAGAIN;
    if (atomic_compare_exchange_weak(&fail_create_after, &n, n - 1)) break;
  }
  return pthread_create(thread, NULL, fn, arg);
}

/* The pool was made by this process (not inherited through fork). */
static int same_process(const pf_pool *pool) { return pool->pid == getpid(); }

/* Called with pool->lock held. O(1): asserts stay on in every build that
 * does not define NDEBUG (the tests, the command). */
static void check_invariants(const pf_pool *pool) {
  assert(pool->nthreads >= 0 && pool->nthreads <= pool->max);
  assert(pool->base >= 0 && pool->base <= pool->max);
  assert(pool->busy >= 0 && pool->busy <= pool->nthreads);
  assert(pool->queued >= 0);
  assert((pool->head == NULL) == (pool->tail == NULL));
  assert((pool->head == NULL) == (pool->queued == 0));
  assert(pool->head == NULL || pool->queued > 1 || pool->head == pool->tail);
  assert(pool->tail == NULL || pool->tail->next == NULL);
  assert(atomic_load_explicit(&pool->stranded, memory_order_relaxed) >= 0);
  (void)pool;
}

static void deadline_in(struct timespec *ts, double seconds) {
  clock_gettime(CLOCK_REALTIME, ts);
  double t = (double)ts->tv_nsec * 1e-9 + seconds;
  ts->tv_sec += (time_t)t;
  ts->tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
}

static void enqueue(pf_pool *pool, task *t) {
  t->next = NULL;
  if (pool->tail != NULL)
    pool->tail->next = t;
  else
    pool->head = t;
  pool->tail = t;
  __atomic_store_n(&pool->queued, pool->queued + 1, __ATOMIC_RELAXED);
}

static void *pool_thread(void *arg) {
  slot *self = arg;
  pf_pool *pool = self->pool;
  own_pool = pool;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    check_invariants(pool);
    if (pool->head == NULL && !pool->shutdown) {
      if (pool->nthreads <= pool->base) {
        pthread_cond_wait(&pool->wake, &pool->lock);
        continue;
      }
      /* A surplus thread: exit after IDLE_SECONDS without work. */
      struct timespec until;
      deadline_in(&until, IDLE_SECONDS);
      int rc = 0;
      while (pool->head == NULL && !pool->shutdown && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&pool->wake, &pool->lock, &until);
      if (pool->head == NULL && !pool->shutdown &&
          pool->nthreads > pool->base)
        break;
      continue;
    }
    if (pool->head == NULL) break; /* shutdown with an empty queue */
    task *t = pool->head;
    pool->head = t->next;
    if (pool->head == NULL) pool->tail = NULL;
    __atomic_store_n(&pool->queued, pool->queued - 1, __ATOMIC_RELAXED);
    pool->busy++;
    check_invariants(pool);
    pthread_mutex_unlock(&pool->lock);
    int again = t->fn(t->arg);
    pthread_mutex_lock(&pool->lock);
    assert(pool->busy > 0);
    pool->busy--;
    if (again == PF__TASK_AGAIN) {
      enqueue(pool, t); /* at the tail: the others' turn first */
      pthread_cond_signal(&pool->wake);
    } else {
      t->next = pool->free_tasks;
      pool->free_tasks = t;
    }
  }
  if (!pool->shutdown) {
    /* An idle exit: nobody will join this thread (DESIGN: Joining). */
    pthread_detach(pthread_self());
    self->state = SLOT_FREE;
  }
  __atomic_store_n(&pool->nthreads, pool->nthreads - 1, __ATOMIC_RELAXED);
  check_invariants(pool);
  pthread_mutex_unlock(&pool->lock);
  return NULL; /* nothing of the pool is touched past the unlock */
}

/* Starts threads until there are `target` (<= max) or the system refuses
 * one; returns 0 or that errno. Called with pool->lock held. */
static int start_threads(pf_pool *pool, int target) {
  assert(target <= pool->max);
  assert(!pool->shutdown);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = 0;
  for (int s = 0; s < pool->max && pool->nthreads < target; s++) {
    if (pool->slots[s].state != SLOT_FREE) continue;
    e = create_thread(&pool->slots[s].thread, pool_thread, &pool->slots[s]);
    if (e != 0) break;
    pool->slots[s].state = SLOT_RUNNING;
    __atomic_store_n(&pool->nthreads, pool->nthreads + 1, __ATOMIC_RELAXED);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  check_invariants(pool);
  return e;
}

static int max_threads_for(int base) {
  int most = 4 * pf_cpu_count();
  if (most < 64) most = 64;
  return base > most ? base : most;
}

int pf_pool_create(pf_pool **out, int threads) {
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if (threads <= 0) threads = pf_cpu_count();
  int rc = PF_ENOMEM, have_lock = 0;
  pf_pool *pool = pf__calloc(1, sizeof *pool);
  if (pool == NULL) goto fail;
  pool->pid = getpid();
  pool->base = threads;
  pool->max = max_threads_for(threads);
  atomic_init(&pool->stranded, 0);
  pool->slots = pf__calloc((size_t)pool->max, sizeof *pool->slots);
  if (pool->slots == NULL) goto fail;
  for (int s = 0; s < pool->max; s++) pool->slots[s].pool = pool;
  rc = PF_ESYS;
  if (pthread_mutex_init(&pool->lock, NULL) != 0) goto fail;
  if (pthread_cond_init(&pool->wake, NULL) != 0) {
    pthread_mutex_destroy(&pool->lock);
    goto fail;
  }
  have_lock = 1;
  pthread_mutex_lock(&pool->lock);
  int e = start_threads(pool, threads);
  /* Fewer threads than asked: the pool works with those (see DESIGN). Its
   * base shrinks to them, so they are the ones that stay. */
  if (pool->nthreads < pool->base) pool->base = pool->nthreads;
  int none = pool->nthreads == 0;
  pthread_mutex_unlock(&pool->lock);
  if (none) {
    errno = e;
    goto fail;
  }
  *out = pool;
  return 0;
fail:
  if (have_lock) {
    int saved = errno;
    pf_pool_destroy(pool); /* no thread: destroy joins nothing */
    errno = saved;
  } else if (pool != NULL) {
    free(pool->slots);
    free(pool);
  }
  return rc;
}

static void free_nodes(task *t) {
  while (t != NULL) {
    task *next = t->next;
    free(t);
    t = next;
  }
}

void pf_pool_destroy(pf_pool *pool) {
  if (pool == NULL) return;
  if (same_process(pool)) {
    pthread_mutex_lock(&pool->lock);
    pool->shutdown = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    /* Slot states change only under the lock, and no thread starts once
     * shutdown is set (callers may not use the pool meanwhile). */
    for (int s = 0; s < pool->max; s++) {
      pthread_mutex_lock(&pool->lock);
      int state = pool->slots[s].state;
      pthread_mutex_unlock(&pool->lock);
      if (state != SLOT_FREE) pthread_join(pool->slots[s].thread, NULL);
    }
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
  }
  free_nodes(pool->head);
  free_nodes(pool->free_tasks);
  free(pool->slots);
  free(pool);
}

int pf_pool_size(const pf_pool *pool) {
  /* A stale value is as good as a fresh one to callers. */
  return __atomic_load_n(&pool->nthreads, __ATOMIC_RELAXED);
}

int pf_pool_max_threads(const pf_pool *pool) { return pool->max; }

int pf__pool_base(const pf_pool *pool) { return pool->base; }

int pf__pool_usable(const pf_pool *pool) {
  return same_process(pool) && own_pool != pool; /* see DESIGN: Nesting */
}

int pf__pool_waiting(const pf_pool *pool) {
  return __atomic_load_n(&pool->queued, __ATOMIC_RELAXED);
}

int pf__pool_submit(pf_pool *pool, pf__task_fn fn, void *arg, const void *tag) {
  assert(pf__pool_usable(pool));
  pthread_mutex_lock(&pool->lock);
  task *t = pool->free_tasks;
  if (t != NULL) {
    pool->free_tasks = t->next;
  } else {
    t = pf__malloc(sizeof *t);
    if (t == NULL) {
      pthread_mutex_unlock(&pool->lock);
      return PF_ENOMEM;
    }
  }
  t->fn = fn;
  t->arg = arg;
  t->tag = tag;
  enqueue(pool, t);
  check_invariants(pool);
  pthread_cond_signal(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

int pf__pool_withdraw(pf_pool *pool, const void *tag) {
  int removed = 0;
  pthread_mutex_lock(&pool->lock);
  task **link = &pool->head, *last = NULL;
  while (*link != NULL) {
    task *t = *link;
    if (t->tag == tag) {
      *link = t->next;
      t->next = pool->free_tasks;
      pool->free_tasks = t;
      removed++;
    } else {
      last = t;
      link = &t->next;
    }
  }
  pool->tail = last;
  __atomic_store_n(&pool->queued, pool->queued - removed, __ATOMIC_RELAXED);
  check_invariants(pool);
  pthread_mutex_unlock(&pool->lock);
  return removed;
}

void pf__pool_strand(pf_pool *pool, int threads) {
  int before = atomic_fetch_add_explicit(&pool->stranded, threads,
                                         memory_order_relaxed);
  assert(before + threads >= 0);
  (void)before;
}

int pf__pool_reserve(pf_pool *pool, int threads, pf_error *err) {
  assert(pf__pool_usable(pool));
  assert(threads >= 1);
  /* Threads held by detached fills do not count (DESIGN: Stranded). */
  int stranded = atomic_load_explicit(&pool->stranded, memory_order_relaxed);
  int target = threads > pool->max - stranded ? pool->max : threads + stranded;
  int have = pf_pool_size(pool);
  if (have >= target) return have;
  pthread_mutex_lock(&pool->lock);
  int e = start_threads(pool, target);
  have = pool->nthreads;
  pthread_mutex_unlock(&pool->lock);
  if (have == 0)
    return pf__error_sys(err, PF_ESYS, e, "cannot start a pool thread");
  return have;
}

static _Atomic(pf_pool *) default_pool;

/* The pid that loaded the library (0 when read before constructors ran). */
static pid_t load_pid;

__attribute__((constructor)) static void remember_load_pid(void) {
  load_pid = getpid();
}

int pf__pool_forked(void) { return load_pid != 0 && load_pid != getpid(); }

pf_pool *pf__pool_default_existing(void) {
  pf_pool *current = atomic_load_explicit(&default_pool, memory_order_acquire);
  return current != NULL && same_process(current) ? current : NULL;
}

pf_pool *pf_pool_default(void) {
  pf_pool *current = atomic_load_explicit(&default_pool, memory_order_acquire);
  if (current != NULL && same_process(current)) return current;
  /* First use, or first use in a forked child: the inherited pool's threads
   * are gone there. Its memory is left as it is (it may be mid-update). */
  pf_pool *fresh;
  if (pf_pool_create(&fresh, 0) != 0) return NULL;
  if (atomic_compare_exchange_strong_explicit(&default_pool, &current, fresh,
                                              memory_order_acq_rel,
                                              memory_order_acquire))
    return fresh;
  pf_pool_destroy(fresh); /* another thread won the race */
  return current;
}
