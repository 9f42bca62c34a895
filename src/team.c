/*
 * team.c -- process teams: one job run by worker processes forked for it.
 *
 * DESIGN
 * The caller maps a control block MAP_SHARED|MAP_ANONYMOUS (freed by the
 * kernel whatever happens), forks workers on demand and supervises them.
 *
 *   control block   the schedule (atomic claim counter), a stop flag, the
 *                   limit (lowest failing index, INT64_MAX while none), the
 *                   count of elements done, the failure record (two copies
 *                   behind a robust process-shared mutex, see below), and one
 *                   slot per worker: the chunk it holds, its static-schedule
 *                   cursor and whether it finished.
 *   worker          sets PR_SET_PDEATHSIG so it dies with the caller, ignores
 *                   SIGINT (Ctrl-C is the caller's to handle), runs
 *                   around_work(BEFORE), then claims chunks until none is
 *                   left below the limit or the stop flag is set; it runs
 *                   around_work(AFTER) and leaves with _exit(), running no
 *                   atexit handlers and flushing no stdio buffers inherited
 *                   from the caller.
 *   failures        as in a sequential loop, the failure of the lowest flat
 *                   index wins, not the first in time: pf_team_worker_fail
 *                   keeps the lower of its index and the recorded one and
 *                   lowers the limit to it. Chunks at or past the limit are
 *                   not computed (a claim that lands there is dropped: the
 *                   limit only ever falls, so they are never needed) and
 *                   chunk functions see the limit through
 *                   pf_team_worker_limit; everything below it is still
 *                   finished (a retried chunk below it too), so a lower
 *                   failure found later still wins. The job ends when every
 *                   worker has left, and then reports the recorded failure.
 *   caller          forks worker k+1 only while unclaimed chunks remain
 *                   (dynamic, guided) -- a tiny job is done before hundreds
 *                   of processes exist -- and never more workers than there
 *                   are chunks; a static schedule needs each part's worker,
 *                   so its workers are capped to the number of parts and all
 *                   forked. It polls one pidfd per worker (readable when it
 *                   exits) with a timeout of one poll interval, so it notices
 *                   a dead worker at once and runs between_waits (signals,
 *                   progress) at least every interval. A worker that ends
 *                   without marking its slot finished died: the chunk it held
 *                   is given to a replacement worker (same number, same static
 *                   cursor) up to `retries` times per chunk, or the job fails
 *                   with its pid, status and chunk; a death holding a chunk
 *                   at or past the limit needs no replacement. Deaths that
 *                   held no chunk (e.g. a fork handler that exits) are
 *                   replaced too, but at most workers * (retries + 1) times
 *                   in all: a worker that can never start must not be
 *                   re-forked forever. On any failure the others are killed
 *                   with SIGKILL at once. Every path reaps every child.
 *   descriptors     the pidfds live in the caller's descriptor table, where
 *                   a callback may close them (os.closerange). POLLNVAL or
 *                   EBADF from one, or a new pidfd numbered like a live one,
 *                   means that happened: the job fails with PF_ESYS (EBADF);
 *                   workers are then killed and reaped by pid (an unreaped
 *                   child's pid cannot be reused), and only descriptors still
 *                   naming our own worker (/proc/self/fdinfo) are closed.
 *   SIGCHLD         with SIGCHLD ignored (SIG_IGN or SA_NOCLDWAIT) the kernel
 *                   reaps children itself, so waitid fails with ECHILD and a
 *                   reaped pid may be reused before we kill it. For the
 *                   lifetime of the teams the disposition is set to SIG_DFL
 *                   (without SA_NOCLDWAIT) and then restored; a count under a
 *                   mutex shares that between concurrent teams: the first
 *                   saves and replaces, the last restores. (Other children of
 *                   the application that exit meanwhile stay zombies until it
 *                   reaps them or the disposition is restored -- the price of
 *                   knowing our own workers' fate.)
 *
 * The failure record: a worker may be killed at any instant (the caller's
 * SIGKILL, the OOM killer), also while it writes the record. So the record is
 * double-buffered: under the mutex the writer fills the copy that is not
 * current and then publishes it by switching `current`; a writer killed
 * half-way leaves the published copy intact, and the robust mutex hands the
 * next locker EOWNERDEAD, after which it marks the mutex consistent and goes
 * on. The record is committed before the limit falls.
 *
 * Memory ordering: slot fields and the failure record are written by one
 * worker and read by the caller after that worker's exit has been observed
 * (waitid), which orders them; the stop flag, the limit and the counters are
 * relaxed atomics (the limit only tells workers what they may skip).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schedule.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum { SLOT_RUNNING = 0, SLOT_FINISHED = 1 };

typedef struct slot {
  _Atomic int64_t chunk_start; /* held chunk, or -1 */
  _Atomic int64_t chunk_stop;
  _Atomic int64_t next_static; /* static-schedule cursor, kept for a replacement */
  _Atomic int state;
  _Atomic int claimed; /* this process claimed a chunk (for messages) */
} slot;

typedef struct record {
  int64_t index; /* -1: the whole job */
  int worker;
  int pid;
  size_t payload_size;
} record;

typedef struct control {
  pf__sched sched;
  _Atomic int stop;
  _Atomic int64_t limit;
  _Atomic int64_t done;
  pthread_mutex_t lock; /* robust, process-shared: the failure record */
  _Atomic int current;  /* the published record: 0, 1, or -1 for none */
  record records[2];
  size_t payload_capacity;
  size_t bytes;        /* of the whole mapping */
  slot *slots;         /* into this mapping: same address in every process */
  char *payloads[2];
} control;

struct pf_team_worker {
  control *ctl;
  int id;
  int64_t chunk_start; /* of the chunk being computed */
  int failed;          /* pf_team_worker_fail called during this chunk */
};

typedef struct member {
  pid_t pid;
  int pidfd; /* -1 when not ours (lost) or once closed */
  int reaped;
} member;

/* ----------------------------------------------------------------- worker */

/* Lowers the limit to `index` (never raises it). */
static void lower_limit(control *ctl, int64_t index) {
  int64_t seen = atomic_load_explicit(&ctl->limit, memory_order_relaxed);
  while (index < seen &&
         !atomic_compare_exchange_weak_explicit(&ctl->limit, &seen, index,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

int pf_team_worker_fail(pf_team_worker *worker, int64_t index,
                        const void *payload, size_t size) {
  control *ctl = worker->ctl;
  worker->failed = 1;
  if (index < 0) index = -1;
  int locked = pthread_mutex_lock(&ctl->lock);
  if (locked == EOWNERDEAD) {
    /* Its holder died writing the unpublished copy: the published one is
     * whole. */
    pthread_mutex_consistent(&ctl->lock);
    locked = 0;
  }
  if (locked == 0) {
    int cur = atomic_load_explicit(&ctl->current, memory_order_relaxed);
    if (cur < 0 || index < ctl->records[cur].index) {
      int next = cur == 0 ? 1 : 0;
      if (size > ctl->payload_capacity) size = ctl->payload_capacity;
      if (size > 0) memcpy(ctl->payloads[next], payload, size);
      ctl->records[next] =
          (record){index, worker->id, (int)getpid(), size};
      atomic_store_explicit(&ctl->current, next, memory_order_release);
    }
    pthread_mutex_unlock(&ctl->lock);
  }
  lower_limit(ctl, index < 0 ? 0 : index);
  return PF_EKERNEL;
}

int64_t pf_team_worker_limit(const pf_team_worker *worker) {
  if (atomic_load_explicit(&worker->ctl->stop, memory_order_relaxed)) return 0;
  return atomic_load_explicit(&worker->ctl->limit, memory_order_relaxed);
}

int pf_team_worker_stopping(const pf_team_worker *worker) {
  return pf_team_worker_limit(worker) <= worker->chunk_start;
}

int pf_team_worker_id(const pf_team_worker *worker) { return worker->id; }

/* Records in the worker's slot a chunk it is about to claim. The end is
 * stored first: a worker killed between the two stores leaves either no chunk
 * (start still -1) or a superset of the chunk it may own. */
static void note_chunk(void *ctx, int64_t start, int64_t stop) {
  slot *s = ctx;
  atomic_store(&s->chunk_stop, stop);
  atomic_store(&s->chunk_start, start);
}

/* 1 while elements from `start` on may still be needed. */
static int needed(control *ctl, int64_t start) {
  return !atomic_load_explicit(&ctl->stop, memory_order_relaxed) &&
         start < atomic_load_explicit(&ctl->limit, memory_order_relaxed);
}

/* Claims the next chunk that is needed, noted in the slot before it is taken:
 * whenever this worker is killed, its slot covers every element it may have
 * claimed but not finished, so a replacement loses nothing (it may redo a
 * chunk). A claim at or past the limit is dropped: it is never needed. */
static int claim(control *ctl, slot *s, int64_t *start, int64_t *stop) {
  pf__cursor cursor = {atomic_load(&s->next_static)};
  int got = pf__sched_claim_noted(&ctl->sched, &cursor, note_chunk, s, start,
                                  stop);
  if (got && !needed(ctl, *start)) got = 0;
  if (!got) atomic_store(&s->chunk_start, -1);
  else atomic_store_explicit(&s->claimed, 1, memory_order_relaxed);
  atomic_store(&s->next_static, cursor.next_static);
  return got;
}

static void worker_main(control *ctl, int id, pid_t parent,
                        const pf_team_hooks *hooks, pf_team_chunk_fn fn,
                        void *fn_ctx) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1); /* the caller died before prctl */
  signal(SIGINT, SIG_IGN);
  if (hooks != NULL && hooks->around_work != NULL)
    hooks->around_work(hooks->ctx, PF_TEAM_BEFORE);

  pf_team_worker self = {ctl, id, -1, 0};
  slot *s = &ctl->slots[id];
  int64_t start = atomic_load(&s->chunk_start);
  int64_t stop = atomic_load(&s->chunk_stop);
  /* A replacement starts with the chunk its predecessor held. */
  int have = start >= 0 ? needed(ctl, start) : claim(ctl, s, &start, &stop);
  while (have) {
    self.chunk_start = start;
    self.failed = 0;
    int rc = fn(fn_ctx, &self, start, stop);
    if (rc != 0) {
      if (!self.failed) pf_team_worker_fail(&self, -1, NULL, 0);
    } else {
      /* Counted before the slot lets go of it: a kill in between makes a
       * replacement redo the chunk (counted twice), never lose it. */
      atomic_fetch_add_explicit(&ctl->done, stop - start,
                                memory_order_relaxed);
    }
    atomic_store(&s->chunk_start, -1);
    have = claim(ctl, s, &start, &stop);
  }
  atomic_store(&s->chunk_start, -1);
  atomic_store(&s->state, SLOT_FINISHED);
  if (hooks != NULL && hooks->around_work != NULL)
    hooks->around_work(hooks->ctx, PF_TEAM_AFTER);
  _exit(0);
}

/* ---------------------------------------------------------------- SIGCHLD */

static pthread_mutex_t sigchld_lock = PTHREAD_MUTEX_INITIALIZER;
static int sigchld_users;
static int sigchld_replaced;
static struct sigaction sigchld_saved;

/* See DESIGN: children must stay ours to wait for while a team runs. */
static void sigchld_enter(void) {
  pthread_mutex_lock(&sigchld_lock);
  if (sigchld_users++ == 0) {
    struct sigaction now;
    if (sigaction(SIGCHLD, NULL, &now) == 0 &&
        (now.sa_handler == SIG_IGN || (now.sa_flags & SA_NOCLDWAIT))) {
      sigchld_saved = now;
      struct sigaction mine = now;
      if (mine.sa_handler == SIG_IGN) mine.sa_handler = SIG_DFL;
      mine.sa_flags &= ~SA_NOCLDWAIT;
      sigchld_replaced = sigaction(SIGCHLD, &mine, NULL) == 0;
    }
  }
  pthread_mutex_unlock(&sigchld_lock);
}

static void sigchld_leave(void) {
  pthread_mutex_lock(&sigchld_lock);
  assert(sigchld_users > 0);
  if (--sigchld_users == 0 && sigchld_replaced) {
    sigaction(SIGCHLD, &sigchld_saved, NULL);
    sigchld_replaced = 0;
  }
  pthread_mutex_unlock(&sigchld_lock);
}

/* ----------------------------------------------------------------- caller */

typedef struct team {
  control *ctl;
  member *members;
  int workers; /* at most this many */
  int started; /* members[0, started) were forked */
  const pf_team_hooks *hooks;
  pf_team_chunk_fn fn;
  void *fn_ctx;
  /* Retries: attempts made per lost chunk start. */
  int64_t *lost_starts;
  int *lost_attempts;
  int nlost, lost_capacity;
  int replaced;        /* replacement workers started */
  int idle_deaths;     /* deaths that held no chunk */
  int fds_lost;        /* someone closed our pidfds */
} team;

/* 1 when `fd` is a pidfd of `pid` (it was not closed and reused). */
static int pidfd_pid(int fd, int *pid);

static int pidfd_names(int fd, pid_t pid) {
  int p;
  return pidfd_pid(fd, &p) && p == (int)pid;
}

/* The pid a pidfd names (-1 once that process was reaped); 0 when `fd` is
 * no pidfd. */
static int pidfd_pid(int fd, int *pid) {
  char path[64], line[128];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "re");
  if (f == NULL) return 0;
  int found = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "Pid: %d", pid) == 1) {
      found = 1;
      break;
    }
  fclose(f);
  return found;
}

static int fds_lost(team *t, pf_error *err) {
  t->fds_lost = 1;
  return pf__error_sys(err, PF_ESYS, EBADF,
                       "a pidfd of the process team was closed behind its "
                       "back (a callback closing file descriptors?); the "
                       "workers were killed");
}

static int spawn(team *t, int id, pf_error *err) {
  const pf_team_hooks *h = t->hooks;
  pid_t parent = getpid();
  atomic_store(&t->ctl->slots[id].claimed, 0);
  if (h != NULL && h->around_fork != NULL)
    h->around_fork(h->ctx, PF_TEAM_BEFORE);
  pid_t pid = fork();
  if (pid == 0) worker_main(t->ctl, id, parent, h, t->fn, t->fn_ctx);
  int fork_errno = errno;
  if (h != NULL && h->around_fork != NULL)
    h->around_fork(h->ctx, PF_TEAM_AFTER);
  if (pid < 0)
    return pf__error_sys(err, PF_ESYS, fork_errno,
                         "cannot fork worker %d of %d", id, t->workers);
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) {
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return pf__error_sys(err, PF_ESYS, e, "cannot open a pidfd for worker %d",
                         id);
  }
  t->members[id] = (member){pid, fd, 0};
  /* A number still held by a live member was closed behind our back. */
  for (int w = 0; w < t->started; w++)
    if (w != id && !t->members[w].reaped && t->members[w].pidfd == fd)
      return fds_lost(t, err);
  return 0;
}

static void kill_all(team *t) {
  for (int w = 0; w < t->started; w++)
    if (!t->members[w].reaped) kill(t->members[w].pid, SIGKILL);
}

static void reap_all(team *t) {
  for (int w = 0; w < t->started; w++) {
    member *m = &t->members[w];
    if (m->reaped) continue;
    if (t->fds_lost && m->pidfd >= 0 && !pidfd_names(m->pidfd, m->pid))
      m->pidfd = -1; /* not ours any more: never close it */
    /* By pid: its pidfd may be lost. */
    while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR) {
    } /* ECHILD: someone else reaped it */
    m->reaped = 1;
    if (m->pidfd >= 0) close(m->pidfd);
    m->pidfd = -1;
  }
}

/* Counts an attempt at the chunk starting at `start`; 0 while it may be
 * retried, 1 when retries are exhausted, negative on allocation failure. */
static int count_attempt(team *t, int64_t start, int retries) {
  for (int i = 0; i < t->nlost; i++)
    if (t->lost_starts[i] == start) return ++t->lost_attempts[i] > retries;
  if (t->nlost == t->lost_capacity) {
    int cap = t->lost_capacity ? 2 * t->lost_capacity : 8;
    int64_t *s = pf__realloc(t->lost_starts, sizeof *s * (size_t)cap);
    if (s == NULL) return PF_ENOMEM;
    t->lost_starts = s;
    int *a = pf__realloc(t->lost_attempts, sizeof *a * (size_t)cap);
    if (a == NULL) return PF_ENOMEM;
    t->lost_attempts = a;
    t->lost_capacity = cap;
  }
  t->lost_starts[t->nlost] = start;
  t->lost_attempts[t->nlost++] = 1;
  return 1 > retries;
}

static void report_death(const member *m, int id, const siginfo_t *info,
                         const slot *s, pf_team_report *report) {
  if (report == NULL) return;
  report->worker = id;
  report->pid = (int)m->pid;
  if (info->si_code == CLD_EXITED) {
    report->exit_status = info->si_status;
    report->term_signal = 0;
  } else {
    report->exit_status = -1;
    report->term_signal = info->si_status;
  }
  report->chunk_start = atomic_load(&s->chunk_start);
  report->chunk_stop = report->chunk_start >= 0 ? atomic_load(&s->chunk_stop)
                                                : -1;
}

/* Handles the exit of worker `id` (`woken`: its pidfd said so). Returns 0 to
 * go on, 1 when it left for good, or a negative code that ends the job. */
static int handle_exit(team *t, int id, int woken, const pf_team_options *o,
                       pf_team_report *report, pf_error *err) {
  member *m = &t->members[id];
  siginfo_t info;
  memset(&info, 0, sizeof info);
  /* By pid, not pidfd: an unreaped child's pid names it for sure, and the
   * pidfd may have been closed and its number reused. Peek first (WNOWAIT):
   * a zombie's pidfd still names it, so we can tell ours from a stranger's. */
  if (waitid(P_PID, (id_t)m->pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
    if (errno == EINTR) return 0;
    if (errno == ECHILD) {
      m->reaped = 1; /* and its pid may be reused: never signal it */
      /* Its pidfd is still ours (it now names a reaped process, pid -1)
       * unless the application closed it and reused the number. */
      int named;
      if (m->pidfd >= 0 && pidfd_pid(m->pidfd, &named) &&
          (named == -1 || named == (int)m->pid))
        close(m->pidfd);
      m->pidfd = -1;
      return pf__error_sys(err, PF_ESYS, ECHILD,
                           "worker %d (pid %d) was reaped by someone else (a "
                           "SIGCHLD handler that waits for any child?)",
                           id, (int)m->pid);
    }
    return pf__error_sys(err, PF_ESYS, errno, "waitid");
  }
  if ((woken || info.si_pid != 0) && !pidfd_names(m->pidfd, m->pid)) {
    m->pidfd = -1; /* someone else's file now: never close it */
    return fds_lost(t, err);
  }
  if (info.si_pid == 0) return 0; /* not exited yet */
  while (waitid(P_PID, (id_t)m->pid, &info, WEXITED) < 0 && errno == EINTR) {
  }
  m->reaped = 1;
  close(m->pidfd);
  m->pidfd = -1;
  slot *s = &t->ctl->slots[id];
  if (info.si_code == CLD_EXITED && info.si_status == 0 &&
      atomic_load(&s->state) == SLOT_FINISHED)
    return 1;
  /* Died: exited early (os._exit, exit status), or killed by a signal. */
  int64_t held = atomic_load(&s->chunk_start);
  if (held >= 0 && held >= atomic_load(&t->ctl->limit))
    return 1; /* its elements are past a failure: never needed */
  report_death(m, id, &info, s, report);
  int exhausted = 1;
  int idle_limit = 0;
  if (o->retries > 0) {
    if (held >= 0) {
      exhausted = count_attempt(t, held, o->retries);
      if (exhausted < 0) return pf__error_set(err, PF_ENOMEM, -1, "retries");
    } else {
      /* A worker that dies before claiming anything may die so every time
       * (a fork handler that exits): bound those replacements. */
      long budget = (long)t->workers * ((long)o->retries + 1);
      exhausted = ++t->idle_deaths > budget;
      idle_limit = exhausted;
    }
  }
  if (exhausted) {
    char how[64];
    if (info.si_code == CLD_EXITED)
      snprintf(how, sizeof how, "exited with status %d", info.si_status);
    else
      snprintf(how, sizeof how, "was killed by signal %d", info.si_status);
    const char *when = atomic_load(&s->claimed) ? "between chunks"
                                                : "before claiming any work";
    if (idle_limit)
      return pf__error_set(err, PF_EWORKER, -1,
                           "worker %d (pid %d) %s %s; %d workers died holding "
                           "no chunk (retries=%d)",
                           id, (int)m->pid, how, when, t->idle_deaths,
                           o->retries);
    if (held < 0)
      return pf__error_set(err, PF_EWORKER, -1, "worker %d (pid %d) %s %s",
                           id, (int)m->pid, how, when);
    return pf__error_set(err, PF_EWORKER, -1, "worker %d (pid %d) %s", id,
                         (int)m->pid, how);
  }
  t->replaced++;
  if (report != NULL) report->retried++;
  atomic_store(&s->state, SLOT_RUNNING);
  return spawn(t, id, err);
}

/* 1 while a worker not yet forked would find work. */
static int wants_worker(const team *t) {
  if (t->started >= t->workers) return 0;
  const control *ctl = t->ctl;
  int64_t limit = atomic_load_explicit(&ctl->limit, memory_order_relaxed);
  /* Static: its own part, which starts at chunk number `started` (below
   * size, since workers <= chunks). */
  if (ctl->sched.schedule == PF_SCHEDULE_STATIC)
    return (int64_t)t->started * ctl->sched.chunk < limit;
  int64_t next = atomic_load_explicit(&ctl->sched.next, memory_order_relaxed);
  return next < ctl->sched.size && next < limit;
}

static int supervise(team *t, int64_t size, const pf_team_options *o,
                     pf_team_report *report, pf_error *err) {
  const pf_team_hooks *h = t->hooks;
  double interval = o->poll_interval > 0 ? o->poll_interval : 0.05;
  double deadline = o->timeout > 0 ? pf__now() + o->timeout : 0;
  double last_wait = pf__now();
  struct pollfd *fds = pf__malloc(sizeof *fds * (size_t)t->workers);
  int *ids = pf__malloc(sizeof *ids * (size_t)t->workers);
  int rc = 0;
  if (fds == NULL || ids == NULL) {
    rc = pf__error_set(err, PF_ENOMEM, -1, "out of memory");
    goto done;
  }
  for (;;) {
    /* One more worker per round while there is work for it; the round then
     * only looks for exits, so forking goes on at once. */
    int forking = wants_worker(t);
    if (forking) {
      t->started++;
      rc = spawn(t, t->started - 1, err);
      if (rc < 0) goto done;
    }
    int n = 0;
    for (int w = 0; w < t->started; w++) {
      if (t->members[w].reaped) continue;
      fds[n] = (struct pollfd){.fd = t->members[w].pidfd, .events = POLLIN};
      ids[n++] = w;
    }
    if (n == 0 && !wants_worker(t)) break; /* every worker left */
    double wait = forking ? 0 : interval;
    if (deadline > 0) {
      double left = deadline - pf__now();
      if (left < wait) wait = left > 0 ? left : 0;
    }
    if (h != NULL && h->around_wait != NULL)
      h->around_wait(h->ctx, PF_TEAM_BEFORE);
    int ready = poll(fds, (nfds_t)n, (int)(wait * 1000 + 0.999));
    int poll_errno = errno;
    if (h != NULL && h->around_wait != NULL)
      h->around_wait(h->ctx, PF_TEAM_AFTER);
    if (ready < 0 && poll_errno != EINTR) {
      rc = pf__error_sys(err, PF_ESYS, poll_errno, "poll");
      goto done;
    }
    for (int i = 0; i < n; i++) {
      if (ready > 0 && (fds[i].revents & POLLNVAL)) {
        rc = fds_lost(t, err);
        goto done;
      }
      /* A quiet round looks at every worker: a pidfd whose number was
       * closed and reused for a silent file would never wake us. */
      if (ready == 0 ? forking
                     : !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      rc = handle_exit(t, ids[i], ready > 0, o, report, err);
      if (rc < 0) goto done;
    }
    rc = 0;
    double now = pf__now();
    if (h != NULL && h->between_waits != NULL &&
        (!forking || ready < 0 || now - last_wait >= interval)) {
      last_wait = now;
      int64_t done = atomic_load(&t->ctl->done);
      rc = h->between_waits(h->ctx, done < size ? done : size, size);
      if (rc != 0) {
        pf__error_set(err, rc < 0 ? rc : PF_ECANCELED, -1, NULL);
        goto done;
      }
    }
    if (deadline > 0 && pf__now() >= deadline) {
      rc = pf__error_set(err, PF_ETIMEDOUT, -1,
                         "the job did not finish within %g s", o->timeout);
      goto done;
    }
  }
  /* Exact without replacements or failures; a replacement may redo a
   * counted chunk, a failure leaves the rest undone. */
  assert(atomic_load(&t->ctl->current) >= 0 ||
         (t->replaced > 0 ? atomic_load(&t->ctl->done) >= size
                          : atomic_load(&t->ctl->done) == size));
done:
  free(fds);
  free(ids);
  return rc;
}

/* The number of chunks the schedule cuts `size` into for `workers`. */
static int64_t count_chunks(const pf_team_options *o, int64_t size,
                            int workers) {
  pf__sched s;
  pf__sched_init(&s, o->schedule, size, o->chunk, workers);
  return s.size / s.chunk + (s.size % s.chunk != 0);
}

static int init_lock(pthread_mutex_t *lock) {
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc != 0) return rc;
  rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(lock, &attr);
  pthread_mutexattr_destroy(&attr);
  return rc;
}

int pf_team_run(int64_t size, const pf_team_options *options,
                const pf_team_hooks *hooks, pf_team_chunk_fn chunk_fn,
                void *chunk_ctx, pf_team_report *report, pf_error *err) {
  static const pf_team_options defaults = PF_TEAM_OPTIONS_DEFAULTS;
  const pf_team_options *o = options != NULL ? options : &defaults;
  if (report != NULL) {
    memset(report, 0, sizeof *report);
    report->worker = report->pid = report->exit_status = -1;
    report->failed_index = report->chunk_start = report->chunk_stop = -1;
  }
  if (size < 0 || chunk_fn == NULL || o->workers < 1 || o->chunk < 0 ||
      o->retries < 0 || (unsigned)o->schedule > PF_SCHEDULE_GUIDED)
    return pf__error_set(err, PF_EINVAL, -1, "invalid team options");
  if (size == 0) return 0;
  /* Never more workers than chunks (the auto chunk depends on the worker
   * count, hence the loop; it ends as the count only falls). */
  int workers = o->workers;
  for (int64_t chunks; (chunks = count_chunks(o, size, workers)) < workers;)
    workers = (int)chunks;

  size_t capacity = o->error_capacity > 0 ? o->error_capacity : 64 * 1024;
  size_t head = (sizeof(control) + 63) & ~(size_t)63;
  size_t slots = sizeof(slot) * (size_t)workers;
  size_t bytes = head + slots + 2 * capacity;
  control *ctl = pf_shared_alloc(bytes);
  if (ctl == NULL)
    return pf__error_sys(err, errno == ENOMEM ? PF_ENOMEM : PF_ESYS, errno,
                         "cannot map the control block");
  ctl->bytes = bytes;
  ctl->slots = (slot *)((char *)ctl + head);
  ctl->payloads[0] = (char *)ctl->slots + slots;
  ctl->payloads[1] = ctl->payloads[0] + capacity;
  ctl->payload_capacity = capacity;
  atomic_init(&ctl->limit, INT64_MAX);
  atomic_init(&ctl->current, -1);
  pf__sched_init(&ctl->sched, o->schedule, size, o->chunk, workers);
  for (int w = 0; w < workers; w++) {
    atomic_init(&ctl->slots[w].chunk_start, -1);
    atomic_init(&ctl->slots[w].chunk_stop, -1);
    atomic_init(&ctl->slots[w].next_static, w);
    atomic_init(&ctl->slots[w].state, SLOT_RUNNING);
    atomic_init(&ctl->slots[w].claimed, 0);
  }
  int rc = init_lock(&ctl->lock);
  if (rc != 0) {
    pf_shared_free(ctl, bytes);
    return pf__error_sys(err, PF_ESYS, rc, "cannot make a process-shared "
                                           "robust mutex");
  }

  team t = {.ctl = ctl, .workers = workers, .hooks = hooks, .fn = chunk_fn,
            .fn_ctx = chunk_ctx};
  t.members = pf__malloc(sizeof *t.members * (size_t)workers);
  if (t.members == NULL) {
    rc = pf__error_set(err, PF_ENOMEM, -1, "out of memory");
    goto done;
  }
  sigchld_enter();
  rc = supervise(&t, size, o, report, err);
  if (rc != 0) {
    atomic_store(&ctl->stop, 1);
    kill_all(&t);
  }
  reap_all(&t);
  sigchld_leave();
  int cur = atomic_load_explicit(&ctl->current, memory_order_acquire);
  if (rc == 0 && cur >= 0) {
    const record *r = &ctl->records[cur];
    if (report != NULL) {
      report->failed_index = r->index;
      report->worker = r->worker;
      report->pid = r->pid;
      if (r->payload_size > 0) {
        report->payload = pf__malloc(r->payload_size);
        if (report->payload != NULL) {
          memcpy(report->payload, ctl->payloads[cur], r->payload_size);
          report->payload_size = r->payload_size;
        }
      }
    }
    rc = pf__error_set(err, PF_EKERNEL, -1, "worker %d failed at element %lld",
                       r->worker, (long long)r->index);
  }
done:
  pthread_mutex_destroy(&ctl->lock);
  free(t.members);
  free(t.lost_starts);
  free(t.lost_attempts);
  pf_shared_free(ctl, bytes);
  return rc;
}
