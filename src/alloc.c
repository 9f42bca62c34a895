/*
 * alloc.c -- the library's allocator, with simulated failure for tests.
 *
 * Every allocation of libparfill goes through pf__malloc and friends, which
 * are malloc and friends unless a test armed pf__alloc_fail_nth(n): then the
 * n-th allocation from that moment fails, once (SQLite's test_malloc idea).
 * Running an operation with n = 1, 2, ... until it succeeds walks every
 * out-of-memory path; the sanitizer builds then show any leak on them.
 */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"

/* 0: off. n > 0: the n-th allocation from now fails. Below 0: spent. */
static _Atomic long fail_countdown;

void pf__alloc_fail_nth(long n) { atomic_store(&fail_countdown, n); }

int pf__alloc_should_fail(void) {
  if (atomic_load_explicit(&fail_countdown, memory_order_relaxed) <= 0)
    return 0;
  if (atomic_fetch_sub(&fail_countdown, 1) != 1) return 0;
  errno = ENOMEM;
  return 1;
}

void *pf__malloc(size_t bytes) {
  return pf__alloc_should_fail() ? NULL : malloc(bytes);
}

void *pf__calloc(size_t count, size_t bytes) {
  return pf__alloc_should_fail() ? NULL : calloc(count, bytes);
}

void *pf__realloc(void *memory, size_t bytes) {
  return pf__alloc_should_fail() ? NULL : realloc(memory, bytes);
}

void *pf__aligned_alloc(size_t alignment, size_t bytes) {
  assert(alignment > 0 && (alignment & (alignment - 1)) == 0);
  /* C11 leaves a size that is not a multiple of the alignment undefined
   * (glibc does not mind, others may fail): round it up here, once. */
  size_t rounded = (bytes + alignment - 1) & ~(alignment - 1);
  if (rounded < bytes) {
    errno = ENOMEM;
    return NULL;
  }
  return pf__alloc_should_fail() ? NULL
                                 : aligned_alloc(alignment, rounded);
}
