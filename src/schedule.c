/*
 * schedule.c -- static, dynamic and guided chunk schedules.
 *
 * Memory ordering: a claim only has to hand out disjoint ranges, and the
 * counter's own atomicity guarantees that; the elements' values are published
 * to the caller by the join (thread join / condition variable / process exit),
 * not by the counter. Relaxed operations are therefore enough here.
 *
 * Overflow: sizes go up to INT64_MAX. Dynamic and guided claims advance the
 * counter with a compare-and-swap that never moves it past `size`, so it
 * cannot overflow however close `size` is to INT64_MAX and however often a
 * worker asks after the end; the chunk is never shrunk to make room.
 */
#include <assert.h>
#include <string.h>

#include "schedule.h"

void pf__sched_init(pf__sched *sched, pf_schedule schedule, int64_t size,
                    int64_t chunk, int workers) {
  assert(size >= 0 && workers >= 1);
  if (chunk <= 0) chunk = pf__auto_chunk(schedule, size, workers);
  if (chunk < 1) chunk = 1; /* size 0 */
  sched->size = size;
  sched->chunk = chunk;
  sched->workers = workers;
  sched->schedule = schedule;
  atomic_init(&sched->next, 0);
  assert(sched->chunk >= 1);
}

void pf__cursor_init(const pf__sched *sched, pf__cursor *cursor, int worker) {
  assert(worker >= 0 && worker < sched->workers);
  assert(sched->chunk >= 1);
  cursor->next_static = worker;
}

static void note(pf__sched_note_fn fn, void *ctx, int64_t start,
                 int64_t stop) {
  if (fn != NULL) fn(ctx, start, stop);
}

static int claim_static(pf__sched *sched, pf__cursor *cursor,
                        pf__sched_note_fn note_fn, void *note_ctx,
                        int64_t *start, int64_t *stop) {
  /* Chunk k covers [k*chunk, (k+1)*chunk); worker w takes k = w, w+W, ... */
  int64_t k = cursor->next_static;
  int64_t last = (sched->size - 1) / sched->chunk;
  /* A cursor starts at its worker's number (which may be past the last
   * chunk when there are more workers than chunks) and only moves forward. */
  assert(k >= 0 && sched->workers >= 1);
  if (k > last) return 0;
  *start = k * sched->chunk;
  *stop = sched->size - *start < sched->chunk ? sched->size
                                              : *start + sched->chunk;
  note(note_fn, note_ctx, *start, *stop);
  /* last + 1 <= INT64_MAX: stop there rather than overflow k + W. */
  cursor->next_static = last - k < sched->workers ? last + 1
                                                  : k + sched->workers;
  assert(cursor->next_static > k && *start < *stop && *stop <= sched->size);
  return 1;
}

/* The end of the dynamic or guided chunk that starts at `first` (< size). */
static int64_t chunk_end(const pf__sched *sched, int64_t first) {
  int64_t remaining = sched->size - first;
  int64_t n = sched->chunk;
  if (sched->schedule == PF_SCHEDULE_GUIDED) {
    /* OpenMP's guided rule: max(chunk, ceil(remaining / workers)), the
     * ceiling taken without computing remaining + workers - 1 (overflow). */
    int64_t share = remaining / sched->workers + (remaining % sched->workers != 0);
    if (share > n) n = share;
  }
  return remaining < n ? sched->size : first + n;
}

static int claim_shared(pf__sched *sched, pf__sched_note_fn note_fn,
                        void *note_ctx, int64_t *start, int64_t *stop) {
  /* A compare-and-swap, not a fetch-and-add: an add would carry the counter
   * past size (by a chunk per late claim), which overflows near INT64_MAX. */
  int64_t first = atomic_load_explicit(&sched->next, memory_order_relaxed);
  for (;;) {
    /* The counter never passes size (a CAS that stops there, above). */
    assert(first >= 0 && first <= sched->size);
    if (first >= sched->size) return 0;
    int64_t last = chunk_end(sched, first);
    assert(last > first && last <= sched->size);
    note(note_fn, note_ctx, first, last);
    if (atomic_compare_exchange_weak_explicit(&sched->next, &first, last,
                                              memory_order_relaxed,
                                              memory_order_relaxed)) {
      *start = first;
      *stop = last;
      return 1;
    }
  }
}

int pf__sched_claim_noted(pf__sched *sched, pf__cursor *cursor,
                          pf__sched_note_fn note_fn, void *note_ctx,
                          int64_t *start, int64_t *stop) {
  if (sched->size == 0) return 0;
  if (sched->schedule == PF_SCHEDULE_STATIC)
    return claim_static(sched, cursor, note_fn, note_ctx, start, stop);
  return claim_shared(sched, note_fn, note_ctx, start, stop);
}

int pf__sched_claim(pf__sched *sched, pf__cursor *cursor, int64_t *start,
                    int64_t *stop) {
  return pf__sched_claim_noted(sched, cursor, NULL, NULL, start, stop);
}

int pf_schedule_parse(const char *name, pf_schedule *schedule) {
  for (int s = PF_SCHEDULE_STATIC; s <= PF_SCHEDULE_GUIDED; s++) {
    const char *known = pf_schedule_name((pf_schedule)s);
    if (name != NULL && strcmp(name, known) == 0) {
      *schedule = (pf_schedule)s;
      return 0;
    }
  }
  return PF_EINVAL;
}

const char *pf_schedule_name(pf_schedule schedule) {
  switch (schedule) {
    case PF_SCHEDULE_STATIC: return "static";
    case PF_SCHEDULE_DYNAMIC: return "dynamic";
    case PF_SCHEDULE_GUIDED: return "guided";
    default: return NULL;
  }
}
