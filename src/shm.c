/*
 * shm.c -- memory shared with forked workers.
 *
 * Two kinds, neither of which ever creates anything in /dev/shm:
 *   - anonymous MAP_SHARED mappings (pf_shared_alloc): no name to unlink; the
 *     kernel frees the pages when the last process that maps them unmaps
 *     them or dies, whatever happens to the caller;
 *   - mappings of an anonymous memfd (pf_shared_alloc_memfd), which can later
 *     be turned private without a copy (pf_shared_privatize): the same memfd
 *     is mapped MAP_PRIVATE in place of the shared mapping, so the contents
 *     stay where they are (the page cache of the memfd) and only pages
 *     written afterwards are copied. A result array handed to the user must
 *     behave like any NumPy array after a fork (copy-on-write), not leak a
 *     child's writes into the parent. The memfd is MFD_CLOEXEC and closed
 *     once private; the mapping keeps it alive until unmapped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

void *pf_shared_alloc(size_t bytes) {
  if (bytes == 0) {
    errno = EINVAL;
    return NULL;
  }
  if (pf__alloc_should_fail()) return NULL;
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *pf_shared_alloc_memfd(size_t bytes, int *fd) {
  *fd = -1;
  if (bytes == 0) {
    errno = EINVAL;
    return NULL;
  }
  if (pf__alloc_should_fail()) return NULL;
  int f = memfd_create("parfill", MFD_CLOEXEC);
  if (f < 0) return NULL;
  if (ftruncate(f, (off_t)bytes) != 0) {
    int e = errno;
    close(f);
    errno = e;
    return NULL;
  }
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(f);
    errno = e;
    return NULL;
  }
  *fd = f;
  return p;
}

int pf_shared_privatize(void *memory, size_t bytes, int fd) {
  if (memory == NULL || bytes == 0 || fd < 0) return PF_EINVAL;
  /* Map privately elsewhere first, then move that mapping over the shared
   * one: when either step fails, the shared mapping is still in place. */
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return PF_ESYS;
  void *q = mremap(p, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, memory);
  if (q == MAP_FAILED) {
    int e = errno;
    munmap(p, bytes);
    errno = e;
    return PF_ESYS;
  }
  close(fd);
  return 0;
}

void pf_shared_free(void *memory, size_t bytes) {
  if (memory != NULL && bytes > 0) munmap(memory, bytes);
}

int pf_shared_contains(const void *memory, size_t bytes) {
  uintptr_t lo = (uintptr_t)memory, hi = lo + bytes;
  if (bytes == 0) return 1;
  if (hi < lo) return 0; /* wraps around the address space: not mapped */
  FILE *maps = fopen("/proc/self/maps", "re");
  if (maps == NULL) return PF_ESYS;
  /* Mappings are listed in address order; adjacent shared mappings may cover
   * the range together. Only a line's first fields matter, but a mapped
   * file's path can be as long as PATH_MAX: the rest of a line longer than
   * the buffer is skipped, never read as a line of its own (which could look
   * like a shared mapping), and nothing is allocated. */
  uintptr_t covered = lo;
  char line[256];
  int result = 0;
  while (fgets(line, sizeof line, maps) != NULL) {
    if (strchr(line, '\n') == NULL) {
      int c;
      while ((c = getc(maps)) != EOF && c != '\n') {
      }
    }
    uintptr_t start, end;
    char perms[8];
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", &start, &end, perms) != 3)
      continue;
    if (end <= covered) continue;
    if (start > covered || perms[3] != 's') break;
    covered = end;
    if (covered >= hi) {
      result = 1;
      break;
    }
  }
  if (ferror(maps) && !result) result = PF_ESYS;
  fclose(maps);
  return result;
}
