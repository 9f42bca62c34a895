/*
 * test_output_file.c -- pf_file (output_file.c): a file that appears under
 * its name only complete.
 *
 * Each test works in a fresh directory and checks what the directory holds
 * after every step with readdir -- the temporary file's name and presence,
 * the published file's bytes and inode -- against what the header promises:
 * nothing under the name before pf_file_publish, an existing file never
 * replaced without PF_NPY_FORCE (also one that appears meanwhile), only a
 * regular file replaced with it, nothing left after pf_file_close of an
 * unpublished file, and every out-of-memory path clean (the ASan build
 * shows leaks). The system-call failures of publishing (fsync, renameat2)
 * go through the seam the .npy tests use too.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_test.h"

void pf__file_fail_call(int call, int after, int e); /* output_file.c */
void pf__alloc_fail_nth(long n);                     /* alloc.c */
enum { SEAM_PWRITE, SEAM_FSYNC, SEAM_RENAMEAT2 };

static char dir[64];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/pf-test-file-XXXXXX");
  return mkdtemp(dir) != NULL ? 0 : -1;
}

/* Removes every entry (a test may fail midway) and the directory. */
static int teardown(void **state) {
  (void)state;
  return pf_test_remove_dir(dir);
}

/* The directory's entries other than . and .., as "a,b,c" sorted. */
static void entries(char *out, size_t cap) {
  char names[16][256];
  int n = 0;
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 16)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      snprintf(names[n++], sizeof names[0], "%s", e->d_name);
  closedir(d);
  for (int i = 1; i < n; i++) /* insertion sort */
    for (int k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
      char t[256];
      memcpy(t, names[k], sizeof t);
      memcpy(names[k], names[k - 1], sizeof t);
      memcpy(names[k - 1], t, sizeof t);
    }
  out[0] = '\0';
  for (int i = 0; i < n; i++)
    snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
             names[i]);
}

static void expect_entries(const char *want) {
  char got[2048];
  entries(got, sizeof got);
  assert_string_equal(got, want);
}

static void path_of(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

static void expect_text(const char *path, const char *text) {
  char buf[256] = {0};
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  assert_int_equal(n, (ssize_t)strlen(text));
  assert_string_equal(buf, text);
}

/* Writes `text` at offset 0 of f. */
static void put(pf_file *f, const char *text) {
  assert_int_equal(pwrite(pf_file_fd(f), text, strlen(text), 0),
                   (ssize_t)strlen(text));
}

static const unsigned kinds[] = {0, PF_NPY_NAMED_TEMP};

static void test_published_only_complete(void **state) {
  (void)state;
  char out[128];
  path_of(out, sizeof out, "out.bin");
  for (size_t k = 0; k < PF_ARRAY_LEN(kinds); k++) {
    pf_file *f = NULL;
    pf_error err;
    assert_int_equal(pf_file_create(out, 5, kinds[k], &f, &err), 0);
    struct stat st;
    assert_int_equal(fstat(pf_file_fd(f), &st), 0);
    assert_int_equal(st.st_size, 5); /* reserved */
    /* The temporary file opens by its path: the same inode. */
    struct stat by_path;
    assert_int_equal(stat(pf_file_path(f), &by_path), 0);
    assert_int_equal(by_path.st_ino, st.st_ino);
    char listing[2048];
    entries(listing, sizeof listing);
    if (kinds[k] & PF_NPY_NAMED_TEMP) {
      /* ".out.bin.XXXXXX.tmp", and nothing under the name yet */
      assert_int_equal(strlen(listing), strlen(".out.bin.XXXXXX.tmp"));
      assert_memory_equal(listing, ".out.bin.", 9);
      assert_string_equal(listing + 15, ".tmp");
      assert_string_equal(strrchr(pf_file_path(f), '/') + 1, listing);
    } else {
      assert_string_equal(listing, ""); /* unnamed */
      assert_memory_equal(pf_file_path(f), "/proc/self/fd/", 14);
    }
    put(f, "hello");
    assert_int_equal(pf_file_publish(f, &err), 0);
    expect_entries("out.bin");
    expect_text(out, "hello");
    /* Published once: a second time is refused and changes nothing. */
    assert_int_equal(pf_file_publish(f, &err), PF_EINVAL);
    pf_file_close(f);
    expect_entries("out.bin");
    expect_text(out, "hello");
    unlink(out);
  }
}

static void test_close_unpublished_leaves_nothing(void **state) {
  (void)state;
  char out[128];
  path_of(out, sizeof out, "x.npy");
  for (size_t k = 0; k < PF_ARRAY_LEN(kinds); k++) {
    pf_file *f = NULL;
    assert_int_equal(pf_file_create(out, 1 << 20, kinds[k], &f, NULL), 0);
    put(f, "partial");
    pf_file_close(f);
    expect_entries("");
  }
  pf_file_close(NULL); /* fine */
  assert_int_equal(pf_file_fd(NULL), -1);
  assert_null(pf_file_path(NULL));
}

static void test_existing_file_and_force(void **state) {
  (void)state;
  char out[128];
  path_of(out, sizeof out, "a.npy");
  write_text(out, "old");
  struct stat before;
  assert_int_equal(stat(out, &before), 0);
  const char *had = "old";
  for (size_t k = 0; k < PF_ARRAY_LEN(kinds); k++) {
    pf_file *f = (pf_file *)&before; /* must be set to NULL */
    pf_error err;
    assert_int_equal(pf_file_create(out, 3, kinds[k], &f, &err), PF_EEXIST);
    assert_null(f);
    assert_non_null(strstr(err.message, "exists"));
    expect_entries("a.npy");
    expect_text(out, had);
    /* With PF_NPY_FORCE: replaced atomically, by a new inode. */
    assert_int_equal(
        pf_file_create(out, 3, kinds[k] | PF_NPY_FORCE, &f, &err), 0);
    expect_text(out, had); /* untouched until published */
    put(f, k ? "nw2" : "nw1");
    assert_int_equal(pf_file_publish(f, &err), 0);
    pf_file_close(f);
    expect_entries("a.npy");
    expect_text(out, k ? "nw2" : "nw1");
    struct stat after;
    assert_int_equal(stat(out, &after), 0);
    assert_true(after.st_ino != before.st_ino);
    before = after;
    had = k ? "nw2" : "nw1";
  }
}

static void test_file_that_appears_meanwhile(void **state) {
  (void)state;
  char out[128];
  path_of(out, sizeof out, "b.npy");
  for (size_t k = 0; k < PF_ARRAY_LEN(kinds); k++) {
    pf_file *f = NULL;
    pf_error err;
    assert_int_equal(pf_file_create(out, 3, kinds[k], &f, &err), 0);
    put(f, "new");
    write_text(out, "someone else's");
    assert_int_equal(pf_file_publish(f, &err), PF_EEXIST);
    pf_file_close(f);
    expect_entries("b.npy");
    expect_text(out, "someone else's");
    unlink(out);
    /* With PF_NPY_FORCE a directory that appears is not replaced. */
    assert_int_equal(
        pf_file_create(out, 3, kinds[k] | PF_NPY_FORCE, &f, &err), 0);
    assert_int_equal(mkdir(out, 0755), 0);
    assert_int_equal(pf_file_publish(f, &err), PF_EEXIST);
    assert_non_null(strstr(err.message, "not a regular file"));
    pf_file_close(f);
    expect_entries("b.npy");
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    rmdir(out);
  }
}

static void test_refused_names(void **state) {
  (void)state;
  char out[512];
  pf_file *f = NULL;
  pf_error err;
  /* A directory name, an existing directory, a symlink with force. */
  path_of(out, sizeof out, "d/");
  assert_int_equal(pf_file_create(out, 1, 0, &f, &err), PF_EINVAL);
  assert_non_null(strstr(err.message, "names a directory"));
  path_of(out, sizeof out, "sub");
  assert_int_equal(mkdir(out, 0755), 0);
  assert_int_equal(pf_file_create(out, 1, PF_NPY_FORCE, &f, &err),
                   PF_EEXIST);
  rmdir(out);
  path_of(out, sizeof out, "link");
  assert_int_equal(symlink("/dev/null", out), 0);
  assert_int_equal(pf_file_create(out, 1, PF_NPY_FORCE, &f, &err),
                   PF_EEXIST);
  unlink(out);
  /* A last component longer than the directory allows. */
  char name[300];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  path_of(out, sizeof out, name);
  assert_int_equal(pf_file_create(out, 1, 0, &f, &err), PF_EIO);
  assert_int_equal(err.sys_errno, ENAMETOOLONG);
  /* A missing directory. */
  path_of(out, sizeof out, "missing/x.npy");
  assert_int_equal(pf_file_create(out, 1, 0, &f, &err), PF_EIO);
  assert_int_equal(err.sys_errno, ENOENT);
  /* Bad arguments. */
  path_of(out, sizeof out, "ok.npy");
  assert_int_equal(pf_file_create(NULL, 1, 0, &f, &err), PF_EINVAL);
  assert_int_equal(pf_file_create("", 1, 0, &f, &err), PF_EINVAL);
  assert_int_equal(pf_file_create(out, -1, 0, &f, &err), PF_EINVAL);
  assert_int_equal(pf_file_create(out, 1, 64u, &f, &err), PF_EINVAL);
  assert_int_equal(pf_file_create(out, 1, 0, NULL, &err), PF_EINVAL);
  assert_int_equal(pf_file_publish(NULL, &err), PF_EINVAL);
  assert_null(f);
  expect_entries("");
}

static void test_publish_failures_leave_nothing(void **state) {
  (void)state;
  char out[128];
  path_of(out, sizeof out, "c.npy");
  struct {
    int call, e, code;
  } cases[] = {{SEAM_FSYNC, EIO, PF_EIO},
               {SEAM_FSYNC, ENOSPC, PF_ENOSPC},
               {SEAM_RENAMEAT2, EIO, PF_EIO}};
  for (size_t c = 0; c < PF_ARRAY_LEN(cases); c++) {
    pf_file *f = NULL;
    pf_error err;
    /* renameat2 runs for a named temporary file only. */
    assert_int_equal(pf_file_create(out, 4, PF_NPY_NAMED_TEMP, &f, &err), 0);
    pf__file_fail_call(cases[c].call, 0, cases[c].e);
    assert_int_equal(pf_file_publish(f, &err), cases[c].code);
    pf__file_fail_call(-1, 0, 0);
    assert_int_equal(err.sys_errno, cases[c].e);
    pf_file_close(f);
    expect_entries("");
  }
}

static void test_out_of_memory_paths(void **state) {
  (void)state;
  char out[128];
  path_of(out, sizeof out, "m.npy");
  for (size_t k = 0; k < PF_ARRAY_LEN(kinds); k++) {
    int failed = 0;
    for (long n = 1;; n++) {
      pf_file *f = NULL;
      pf__alloc_fail_nth(n);
      int rc = pf_file_create(out, 8, kinds[k], &f, NULL);
      pf__alloc_fail_nth(0);
      if (rc == 0) {
        pf_file_close(f);
        break;
      }
      assert_int_equal(rc, PF_ENOMEM);
      assert_null(f);
      expect_entries("");
      failed++;
    }
    assert_int_equal(failed, 3); /* the struct, the names */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_published_only_complete, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_unpublished_leaves_nothing,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_existing_file_and_force, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_file_that_appears_meanwhile, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refused_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_publish_failures_leave_nothing,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_out_of_memory_paths, setup,
                                      teardown),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
