/*
 * test_shm.c -- shared memory (shm.c): pf_shared_contains on long mapped
 * paths, memfd-backed shared memory and its privatization.
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

#include "pf_test.h"

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  while (readdir(d) != NULL) n++;
  closedir(d);
  return n;
}

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
  int fds = count_fds();
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
  assert_int_equal(count_fds(), fds); /* closed */
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
  assert_int_equal(count_fds(), fds);

  assert_int_equal(pf_shared_privatize(NULL, 10, 3), PF_EINVAL);
  assert_null(pf_shared_alloc_memfd(0, &fd));
  assert_int_equal(fd, -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_contains_long_path),
      cmocka_unit_test(test_memfd_privatize),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
