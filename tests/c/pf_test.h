/* pf_test.h -- what every C test includes: cmocka and libparfill. */
#ifndef PF_TEST_H
#define PF_TEST_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "parfill.h"

#define PF_ARRAY_LEN(a) (sizeof(a) / sizeof *(a))

/* Monotonic clock in seconds. */
static inline double pf_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleeps `us` microseconds, through signal interruptions. */
static inline void pf_test_sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The number of entries of directory `dir` other than . and .. */
static inline int pf_test_dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

/* The number of this process's open descriptors (and the one that reads
 * them), or -1 without /proc. */
static inline int pf_test_open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  while (readdir(d) != NULL) n++;
  closedir(d);
  return n;
}

/* Removes every entry of `dir` (files, empty directories: what a test that
 * failed midway may leave) and `dir` itself; rmdir's result. */
static inline int pf_test_remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d != NULL) {
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      if (unlink(path) != 0) rmdir(path);
    }
    closedir(d);
  }
  return rmdir(dir);
}

/* Runs a test group; PF_TEST_FILTER=name (wildcards * and ?) runs a subset. */
#define PF_RUN_TESTS(tests, setup, teardown)                 \
  ((getenv("PF_TEST_FILTER") != NULL                         \
        ? cmocka_set_test_filter(getenv("PF_TEST_FILTER"))   \
        : (void)0),                                          \
   cmocka_run_group_tests(tests, setup, teardown))

#endif /* PF_TEST_H */
