/*
 * test_cpu.c -- pf_cpu_count and the cgroup CPU quota parser on cgroup files
 * of the test's own (v2 cpu.max, v1 cfs quota and period, malformed and
 * missing files), since a machine has only one kind of cgroup.
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "pf_test.h"

typedef struct cgroup_dir {
  char root[64];
} cgroup_dir;

static void put(const cgroup_dir *d, const char *name, const char *text) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", d->root, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void drop(const cgroup_dir *d, const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", d->root, name);
  unlink(path);
}

static int make_dir(void **state) {
  cgroup_dir *d = calloc(1, sizeof *d);
  assert_non_null(d);
  snprintf(d->root, sizeof d->root, "/tmp/pf-cgroup-XXXXXX");
  assert_non_null(mkdtemp(d->root));
  char v1[96];
  snprintf(v1, sizeof v1, "%s/cpu", d->root);
  assert_int_equal(mkdir(v1, 0700), 0);
  *state = d;
  return 0;
}

/* Runs also when a test failed: nothing is left in /tmp. */
static int remove_dir(void **state) {
  cgroup_dir *d = *state;
  drop(d, "cpu.max");
  drop(d, "cpu/cpu.cfs_quota_us");
  drop(d, "cpu/cpu.cfs_period_us");
  char v1[96];
  snprintf(v1, sizeof v1, "%s/cpu", d->root);
  rmdir(v1);
  rmdir(d->root);
  free(d);
  return 0;
}

static void test_v2_quota(void **state) {
  cgroup_dir *d = *state;
  put(d, "cpu.max", "150000 100000\n");
  assert_true(pf__cpu_quota_read(d->root) == 1.5);
  put(d, "cpu.max", "max 100000\n");
  assert_true(pf__cpu_quota_read(d->root) == 0);
  /* Malformed: one field, zero or negative period. */
  put(d, "cpu.max", "200000\n");
  assert_true(pf__cpu_quota_read(d->root) == 0);
  put(d, "cpu.max", "200000 0\n");
  assert_true(pf__cpu_quota_read(d->root) == 0);
  put(d, "cpu.max", "");
  assert_true(pf__cpu_quota_read(d->root) == 0);
  /* v2 wins over v1 files when both are there. */
  put(d, "cpu/cpu.cfs_quota_us", "400000\n");
  put(d, "cpu/cpu.cfs_period_us", "100000\n");
  put(d, "cpu.max", "50000 100000\n");
  assert_true(pf__cpu_quota_read(d->root) == 0.5);
}

static void test_v1_quota(void **state) {
  cgroup_dir *d = *state;
  put(d, "cpu/cpu.cfs_quota_us", "250000\n");
  put(d, "cpu/cpu.cfs_period_us", "100000\n");
  assert_true(pf__cpu_quota_read(d->root) == 2.5);
  put(d, "cpu/cpu.cfs_quota_us", "-1\n"); /* unlimited */
  assert_true(pf__cpu_quota_read(d->root) == 0);
  put(d, "cpu/cpu.cfs_quota_us", "lots\n");
  assert_true(pf__cpu_quota_read(d->root) == 0);
  put(d, "cpu/cpu.cfs_quota_us", "250000\n");
  put(d, "cpu/cpu.cfs_period_us", "\n");
  assert_true(pf__cpu_quota_read(d->root) == 0);
  drop(d, "cpu/cpu.cfs_period_us");
  assert_true(pf__cpu_quota_read(d->root) == 0);
}

static void test_no_cgroup(void **state) {
  cgroup_dir *d = *state;
  assert_true(pf__cpu_quota_read(d->root) == 0);
  assert_true(pf__cpu_quota_read("/nonexistent/cgroup") == 0);
  /* A root whose paths do not fit: unreadable, not truncated. */
  char longroot[5000];
  memset(longroot, 'a', sizeof longroot - 1);
  longroot[sizeof longroot - 1] = '\0';
  assert_true(pf__cpu_quota_read(longroot) == 0);
}

static void test_cpu_count(void **state) {
  (void)state;
  cpu_set_t set;
  assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
  int n = pf_cpu_count();
  assert_true(n >= 1);
  assert_true(n <= CPU_COUNT(&set)); /* a quota only lowers it */
  double quota = pf__cpu_quota_read("/sys/fs/cgroup");
  if (quota > 0 && quota < CPU_COUNT(&set)) assert_true(n <= (int)quota + 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_v2_quota, make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(test_v1_quota, make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(test_no_cgroup, make_dir, remove_dir),
      cmocka_unit_test(test_cpu_count),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
