/* cpu.c -- how many CPUs this process may use. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Opens root/name for reading. */
static FILE *open_in(const char *root, const char *name) {
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", root, name);
  if (n < 0 || (size_t)n >= sizeof path) return NULL;
  return fopen(path, "re");
}

/* The cgroup hierarchy under `root` is a parameter so that tests can give the
 * parser files of their own (every machine has only one kind of cgroup). */
double pf__cpu_quota_read(const char *root) {
  /* cgroup v2: "max 100000" or "<quota> <period>" */
  FILE *f = open_in(root, "cpu.max");
  if (f != NULL) {
    char quota[32] = {0};
    long long period = 0;
    int n = fscanf(f, "%31s %lld", quota, &period);
    fclose(f);
    if (n == 2 && strcmp(quota, "max") != 0 && period > 0)
      return atof(quota) / (double)period;
    return 0;
  }
  /* cgroup v1 */
  long long q = -1, p = 0;
  f = open_in(root, "cpu/cpu.cfs_quota_us");
  if (f != NULL) {
    if (fscanf(f, "%lld", &q) != 1) q = -1;
    fclose(f);
  }
  f = open_in(root, "cpu/cpu.cfs_period_us");
  if (f != NULL) {
    if (fscanf(f, "%lld", &p) != 1) p = 0;
    fclose(f);
  }
  return q > 0 && p > 0 ? (double)q / (double)p : 0;
}

/* The quota is read once: it is set up with the container, and reading two
 * files on every fill would cost more than many small fills themselves. */
static pthread_once_t quota_once = PTHREAD_ONCE_INIT;
static double quota_cpus;

static void read_quota(void) {
  quota_cpus = pf__cpu_quota_read("/sys/fs/cgroup");
}

int pf_cpu_count(void) {
  int n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  pthread_once(&quota_once, read_quota);
  double quota = quota_cpus;
  if (quota > 0 && ceil(quota) < n) n = (int)ceil(quota);
  return n > 0 ? n : 1;
}
