/*
 * test_shm.c -- shared memory (shm.c): pf_shared_contains on long mapped
 * paths, memfd-backed shared memory and its privatization, and every way
 * each call refuses or fails.
 *
 * This binary never starts a thread, so forking is sound under TSan too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/resource.h>

#include "pf_test.h"
#include "internal.h"

/* The perms field of the mapping that holds `p`, or "" (a 5-char buffer). */
static void perms_of(const void *p, char perms[8]) {
  perms[0] = '\0';
  FILE *f = fopen("/proc/self/maps", "re");
  assert_non_null(f);
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    unsigned long lo, hi;
    char pr[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, pr) == 3 &&
        lo <= (uintptr_t)p && (uintptr_t)p < hi) {
      strcpy(perms, pr);
      break;
    }
  }
  free(line);
  fclose(f);
}

/* Makes `path` (in `dir`, over 600 characters, nested directories) whose
 * text, cut where a 512-byte line buffer would cut its line of
 * /proc/self/maps, reads as a shared mapping of [lo, hi): a tail that a
 * line-at-a-time reader with a small buffer mistakes for a line of its own. */
static void crafted_path(const char *dir, uintptr_t lo, uintptr_t hi,
                         char *path, size_t size) {
  size_t n = (size_t)snprintf(path, size, "%s", dir);
  while (n < 380) {
    path[n++] = '/';
    memset(path + n, 'd', 60);
    n += 60;
    path[n] = '\0';
    assert_int_equal(mkdir(path, 0700), 0);
  }
  /* The line's path starts at column 73: the cut at 511 is about 438 into
   * the path, inside this run of zeros. */
  path[n++] = '/';
  memset(path + n, '0', 600 - n);
  snprintf(path + 600, size - 600, "%lx-%lx rw-s", (unsigned long)lo,
           (unsigned long)hi);
  assert_int_equal(mkdir(path, 0700), 0);
  strcat(path, "/data");
}

static void remove_up_to(char *path, const char *dir) {
  unlink(path);
  while (strlen(path) > strlen(dir)) {
    *strrchr(path, '/') = '\0';
    rmdir(path);
  }
  rmdir(dir);
}

/* A private mapping stays private, however long the path of a file mapped
 * near it and whatever that path says. */
static void test_contains_long_path(void **state) {
  (void)state;
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/pf-shm-XXXXXX");
  assert_non_null(mkdtemp(dir));
  /* One reservation: the private memory in its upper half, the file
   * mappings below it (listed first in /proc/self/maps). */
  size_t bytes = 1 << 16;
  char *area = mmap(NULL, 2 * bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  assert_true(area != MAP_FAILED);
  char *priv = mmap(area + bytes, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  assert_true(priv == area + bytes);
  char path[2048];
  crafted_path(dir, (uintptr_t)priv, (uintptr_t)priv + bytes, path,
               sizeof path);
  assert_true(strlen(path) > 600);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 8192), 0);
  void *fpriv = mmap(area, 8192, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_FIXED, fd, 0);
  void *fshr = mmap(area + 16384, 8192, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_FIXED, fd, 0);
  assert_true(fpriv == area && fshr == area + 16384);
  assert_int_equal(pf_shared_contains(priv, bytes), 0);
  assert_int_equal(pf_shared_contains(priv + 100, 10), 0);
  assert_int_equal(pf_shared_contains(fpriv, 8192), 0);
  assert_int_equal(pf_shared_contains(fshr, 8192), 1);
  assert_int_equal(pf_shared_contains((char *)fshr + 100, 10), 1);
  munmap(area, 2 * bytes);
  close(fd);
  remove_up_to(path, dir);
}

/* memfd memory is shared with a child until privatized, keeps its contents,
 * and is copy-on-write afterwards; the descriptor is closed. */
static void test_memfd_privatize(void **state) {
  (void)state;
  int fds = pf_test_open_fds();
  size_t bytes = 3 * 4096 + 100;
  int fd;
  int64_t *mem = pf_shared_alloc_memfd(bytes, &fd);
  assert_non_null(mem);
  assert_true(fd >= 0);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  assert_int_equal(pf_shared_contains(mem, bytes), 1);
  assert_int_equal(mem[5], 0); /* zeroed */
  /* Shared: a child's write shows in the parent. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    for (size_t i = 0; i < bytes / 8; i++) mem[i] = (int64_t)i * 7;
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mem[400], 2800);

  assert_int_equal(pf_shared_privatize(mem, bytes, fd), 0);
  assert_int_equal(pf_test_open_fds(), fds); /* closed */
  assert_int_equal(pf_shared_contains(mem, bytes), 0);
  char perms[8];
  perms_of(mem, perms);
  assert_string_equal(perms, "rw-p");
  for (size_t i = 0; i < bytes / 8; i++)
    if (mem[i] != (int64_t)i * 7) fail_msg("element %zu lost", i);
  /* Private: the child's write stays in the child. */
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    mem[1] = -1;
    mem[1000] = -1;
    _exit(mem[1] == -1 ? 0 : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mem[1], 7);
  assert_int_equal(mem[1000], 7000);
  mem[2] = 42; /* and it is writable here */
  assert_int_equal(mem[2], 42);
  pf_shared_free(mem, bytes);
  assert_int_equal(pf_test_open_fds(), fds);

  assert_int_equal(pf_shared_privatize(NULL, 10, 3), PF_EINVAL);
  assert_null(pf_shared_alloc_memfd(0, &fd));
  assert_int_equal(fd, -1);
}

/* The lowest free descriptor number: with RLIMIT_NOFILE's soft limit set
 * to it, the next open fails with EMFILE. */
static int lowest_free_fd(void) {
  int fd = dup(0);
  assert_true(fd >= 0);
  close(fd);
  return fd;
}

/* Runs with no descriptor left to open (EMFILE); restores the limit. */
static struct rlimit no_fds_begin(void) {
  struct rlimit old;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit none = old;
  none.rlim_cur = (rlim_t)lowest_free_fd();
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
  return old;
}
static void no_fds_end(struct rlimit old) {
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* Every refusal and system-call failure of shm.c: NULL with errno, or the
 * documented code; the memory of a failed privatization is still shared
 * and its descriptor still open; nothing is left mapped or open. */
static void test_failures(void **state) {
  (void)state;
  const int fds = pf_test_open_fds();
  int fd = 7;
  /* pf_shared_alloc: no bytes, out of memory (armed), no address space. */
  errno = 0;
  assert_null(pf_shared_alloc(0));
  assert_int_equal(errno, EINVAL);
  pf__alloc_fail_nth(1);
  errno = 0;
  assert_null(pf_shared_alloc(4096));
  pf__alloc_fail_nth(0);
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(pf_shared_alloc(SIZE_MAX & ~(size_t)4095));
  assert_int_equal(errno, ENOMEM);
  /* pf_shared_alloc_memfd: out of memory, no descriptor left (memfd_create
   * fails), a size no file can have (ftruncate fails), no address space. */
  pf__alloc_fail_nth(1);
  assert_null(pf_shared_alloc_memfd(4096, &fd));
  pf__alloc_fail_nth(0);
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(fd, -1);
  fd = 7;
  struct rlimit old = no_fds_begin();
  errno = 0;
  void *p = pf_shared_alloc_memfd(4096, &fd);
  int e = errno;
  no_fds_end(old);
  assert_null(p);
  assert_int_equal(e, EMFILE);
  assert_int_equal(fd, -1);
  errno = 0;
  assert_null(pf_shared_alloc_memfd((size_t)1 << 63, &fd));
  assert_int_equal(errno, EINVAL);
  assert_int_equal(fd, -1);
  errno = 0;
  assert_null(pf_shared_alloc_memfd(SIZE_MAX >> 2 & ~(size_t)4095, &fd));
  assert_true(errno == ENOMEM || errno == EFBIG || errno == EINVAL);
  assert_int_equal(fd, -1);
  assert_int_equal(pf_test_open_fds(), fds);

  /* pf_shared_privatize: invalid arguments; a descriptor that cannot be
   * mapped (a pipe: mmap fails); an address mremap refuses (not
   * page-aligned). Each leaves the memory shared and fd open. */
  size_t bytes = 2 * 4096;
  int64_t *mem = pf_shared_alloc_memfd(bytes, &fd);
  assert_non_null(mem);
  mem[3] = 33;
  assert_int_equal(pf_shared_privatize(NULL, bytes, fd), PF_EINVAL);
  assert_int_equal(pf_shared_privatize(mem, 0, fd), PF_EINVAL);
  assert_int_equal(pf_shared_privatize(mem, bytes, -1), PF_EINVAL);
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  errno = 0;
  assert_int_equal(pf_shared_privatize(mem, bytes, pipe_fds[0]), PF_ESYS);
  assert_int_equal(errno, ENODEV);
  assert_true(fcntl(pipe_fds[0], F_GETFD) >= 0);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  errno = 0;
  assert_int_equal(pf_shared_privatize((char *)mem + 8, bytes, fd), PF_ESYS);
  assert_int_equal(errno, EINVAL);
  assert_true(fcntl(fd, F_GETFD) >= 0);
  assert_int_equal(pf_shared_contains(mem, bytes), 1);
  assert_int_equal(mem[3], 33);
  assert_int_equal(pf_shared_privatize(mem, bytes, fd), 0);
  assert_int_equal(pf_shared_contains(mem, bytes), 0);
  assert_int_equal(mem[3], 33);
  pf_shared_free(mem, bytes);
  pf_shared_free(NULL, bytes); /* no-ops */
  pf_shared_free(mem, 0);

  /* pf_shared_contains: an empty range is contained; a range above every
   * mapping reads the whole list (not contained); without a descriptor to
   * read /proc/self/maps with, PF_ESYS. */
  assert_int_equal(pf_shared_contains(NULL, 0), 1);
  assert_int_equal(pf_shared_contains((void *)~(uintptr_t)0xfffff, 16), 0);
  assert_int_equal(pf_shared_contains((void *)~(uintptr_t)0xf, 64), 0);
  mem = pf_shared_alloc(4096);
  assert_non_null(mem);
  old = no_fds_begin();
  int rc = pf_shared_contains(mem, 4096);
  no_fds_end(old);
  assert_int_equal(rc, PF_ESYS);
  assert_int_equal(pf_shared_contains(mem, 4096), 1);
  pf_shared_free(mem, 4096);
  assert_int_equal(pf_test_open_fds(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_contains_long_path),
      cmocka_unit_test(test_memfd_privatize),
      cmocka_unit_test(test_failures),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
