/*
 * output_file.c -- pf_file: a file that only ever appears under its name
 * complete. The .npy fills (npy_file.c) write through one, and so does the
 * MPI command, whose ranks open its temporary name (cli/mpi.c).
 *
 * DESIGN
 * A file is never written under its final name. It is created unnamed
 * (O_TMPFILE in the target's directory: it vanishes with the process, even
 * on SIGKILL) or, where the filesystem has no O_TMPFILE or other processes
 * must open it (PF_NPY_NAMED_TEMP), as a hidden named file next to the
 * target (same directory, so the final rename cannot cross filesystems)
 * that pf_file_close unlinks. The name is checked before anything is made
 * (a last component the directory cannot hold would otherwise fail only at
 * the end, as temporary names are cut to fit), and so is the overwrite
 * policy. The full size is reserved with fallocate (a full disk or the file
 * size limit shows up before any work; ftruncate where the filesystem
 * cannot reserve). Publishing fsyncs the file and binds it to its name:
 * with a no-replace rename or link (an existing file is never touched, even
 * one that appeared while we worked), or with PF_NPY_FORCE by an atomic
 * rename over a regular file; then the directory is synced.
 *
 * The system calls a full or broken disk makes fail -- pwrite, fsync,
 * renameat2 -- go through a test seam (pf__file_fail_call).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Test seam (tests/c/test_npy.c; declared there, as nothing else calls it):
 * pf__file_fail_call(call, after, e) makes the system call `call` fail once,
 * with errno `e`, after `after` more calls of it succeed -- pwrite (e == 0:
 * it writes nothing), fsync, renameat2 -- so the tests reach the failures
 * a full or broken disk gives. Off (-1) unless a test arms it; a fired seam
 * disarms itself. */
enum { SEAM_PWRITE, SEAM_FSYNC, SEAM_RENAMEAT2 };
static _Atomic int seam_call = -1, seam_after, seam_errno;

void pf__file_fail_call(int call, int after, int e) {
  atomic_store(&seam_errno, e);
  atomic_store(&seam_after, after);
  atomic_store(&seam_call, call);
}

/* 1 (with *e the errno to give) when this call of `call` is to fail. */
static int seam_fires(int call, int *e) {
  if (atomic_load_explicit(&seam_call, memory_order_relaxed) != call) return 0;
  if (atomic_fetch_sub(&seam_after, 1) != 0) return 0;
  atomic_store(&seam_call, -1);
  *e = atomic_load(&seam_errno);
  return 1;
}

ssize_t pf__file_pwrite(int fd, const void *p, size_t n, off_t offset) {
  int e;
  if (!seam_fires(SEAM_PWRITE, &e)) return pwrite(fd, p, n, offset);
  errno = e;
  return e == 0 ? 0 : -1;
}

static int sys_fsync(int fd) {
  int e;
  if (!seam_fires(SEAM_FSYNC, &e)) return fsync(fd);
  errno = e;
  return -1;
}

static int sys_renameat2(const char *from, const char *to, unsigned flags) {
  int e;
  if (!seam_fires(SEAM_RENAMEAT2, &e))
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, flags);
  errno = e;
  return -1;
}

int pf__io_code(int e) {
  return e == ENOSPC || e == EDQUOT ? PF_ENOSPC : PF_EIO;
}

/* ------------------------------------------------------------ names */

/* "dir/.name.XXXXXX.tmp" for "dir/name" into tmp. */
static int temp_name(const char *path, char *tmp, size_t cap) {
  const char *slash = strrchr(path, '/');
  int dir_len = slash != NULL ? (int)(slash - path + 1) : 0;
  const char *base = path + dir_len;
  static const char alphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  unsigned char r[6];
  if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    /* No entropy yet (early boot): time and pid are unique enough, and
     * O_EXCL catches a clash anyway. */
    uint64_t x = (uint64_t)pf__now() * 1000003u ^ (uint64_t)getpid() << 20 ^
                 (uint64_t)clock();
    for (size_t k = 0; k < sizeof r; k++) r[k] = (unsigned char)(x >> 8 * k);
  }
  char suffix[7];
  for (size_t k = 0; k < sizeof r; k++)
    suffix[k] = alphabet[r[k] % (sizeof alphabet - 1)];
  suffix[6] = '\0';
  /* Keep the name within NAME_MAX (255): cut a long base name. */
  int n = snprintf(tmp, cap, "%.*s.%.200s.%s.tmp", dir_len, path, base,
                   suffix);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The directory of `path` into dir[cap]: "." for a bare name, "/" for
 * "/name". 0, or -1 when it does not fit. */
static int dir_of(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  int n;
  if (slash == NULL)
    n = snprintf(dir, cap, ".");
  else
    n = snprintf(dir, cap, "%.*s",
                 slash == path ? 1 : (int)(slash - path), path);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Fails for a name the final link or rename could never bind: a directory
 * ("out/"), a last component longer than the directory allows, a path over
 * PATH_MAX. A missing directory or one we may not write is reported when
 * the temporary file is created, also before any work. */
static int check_name(const char *path, pf_error *err) {
  if (path[strlen(path) - 1] == '/')
    return pf__error_set(err, PF_EINVAL, -1, "'%s' names a directory", path);
  const char *slash = strrchr(path, '/');
  const char *base = slash != NULL ? slash + 1 : path;
  if (strlen(path) >= PATH_MAX)
    return pf__error_sys(err, PF_EIO, ENAMETOOLONG, "cannot create '%.100s...'",
                         path);
  char dir[PATH_MAX];
  long name_max = -1;
  if (dir_of(path, dir, sizeof dir) == 0) name_max = pathconf(dir, _PC_NAME_MAX);
  if (name_max <= 0) name_max = NAME_MAX;
  if (strlen(base) > (size_t)name_max)
    return pf__error_sys(err, PF_EIO, ENAMETOOLONG,
                         "cannot create '%s' (a name of %zu bytes; at most "
                         "%ld here)", path, strlen(base), name_max);
  return 0;
}

/* The overwrite policy: a taken name fails without PF_NPY_FORCE (checked
 * again, atomically, by the final no-replace link or rename), and with it
 * only a regular file may be replaced. */
static int check_target(const char *path, unsigned flags, pf_error *err) {
  int rc = check_name(path, err);
  if (rc != 0) return rc;
  struct stat st;
  if (lstat(path, &st) != 0) return 0;
  if (!(flags & PF_NPY_FORCE))
    return pf__error_set(err, PF_EEXIST, -1, "'%s' exists", path);
  /* The rename would replace the name itself: a device (/dev/null), a
   * directory or a symlink would be swapped for a file, not written to. */
  if (!S_ISREG(st.st_mode))
    return pf__error_set(err, PF_EEXIST, -1,
                         "'%s' exists and is not a regular file (only "
                         "regular files are replaced)", path);
  return 0;
}

/* ------------------------------------------------------------ the file */

struct pf_file {
  int fd;
  unsigned flags;
  int named;     /* 1: `name` exists in the directory */
  char proc[32]; /* "/proc/self/fd/N" of an unnamed file */
  char *name;    /* the named file, or a scratch buffer for PF_NPY_FORCE */
  size_t cap;
  char *path;    /* the final name */
};

/* An unnamed file in path's directory, in f->fd; 0 also when the
 * filesystem has none (f->fd stays -1). */
static int create_unnamed(pf_file *f, pf_error *err) {
  char dir[PATH_MAX];
  if (dir_of(f->path, dir, sizeof dir) != 0)
    return pf__error_sys(err, PF_EIO, ENAMETOOLONG,
                         "cannot create a file next to '%s'", f->path);
  int fd;
  do fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
  while (fd < 0 && errno == EINTR);
  if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    return pf__error_sys(err, pf__io_code(errno), errno,
                         "cannot create a temporary file next to '%s'",
                         f->path);
  if (fd < 0) return 0;
  /* It is linked through /proc (linkat with AT_EMPTY_PATH would need
   * CAP_DAC_READ_SEARCH): without /proc, use a named file instead. */
  snprintf(f->proc, sizeof f->proc, "/proc/self/fd/%d", fd);
  struct stat a, b;
  if (fstat(fd, &a) == 0 && stat(f->proc, &b) == 0 && a.st_dev == b.st_dev &&
      a.st_ino == b.st_ino)
    f->fd = fd;
  else
    close(fd);
  return 0;
}

/* A hidden named file next to path (O_EXCL), in f->fd. */
static int create_named(pf_file *f, pf_error *err) {
  for (int attempt = 0; attempt < 100 && f->fd < 0; attempt++) {
    if (temp_name(f->path, f->name, f->cap) != 0)
      return pf__error_set(err, PF_EINVAL, -1, "path too long");
    f->fd = open(f->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (f->fd < 0 && errno != EEXIST && errno != EINTR) break;
  }
  if (f->fd < 0)
    return pf__error_sys(err, pf__io_code(errno), errno,
                         "cannot create a temporary file next to '%s'",
                         f->path);
  f->named = 1;
  return 0;
}

/* Reserves the whole file, so a full disk or the file size limit shows up
 * now; a filesystem that cannot reserve gets the size without reservation
 * (a full disk is then a failed write). */
static int reserve(const pf_file *f, int64_t bytes, pf_error *err) {
  int e;
  do e = fallocate(f->fd, 0, 0, (off_t)bytes) == 0 ? 0 : errno;
  while (e == EINTR);
  if (e == EOPNOTSUPP || e == ENOSYS)
    e = ftruncate(f->fd, (off_t)bytes) == 0 ? 0 : errno;
  if (e != 0)
    return pf__error_sys(err, pf__io_code(e), e,
                         "cannot reserve %lld bytes for '%s'",
                         (long long)bytes, f->path);
  return 0;
}

int pf_file_create(const char *path, int64_t bytes, unsigned flags,
                   pf_file **out, pf_error *err) {
  if (out != NULL) *out = NULL;
  if (path == NULL || path[0] == '\0' || out == NULL || bytes < 0 ||
      (flags & ~(PF_NPY_FORCE | PF_NPY_BUFFERED | PF_NPY_NAMED_TEMP)) != 0)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  int rc = check_target(path, flags, err);
  if (rc != 0) return rc;
  pf_file *f = pf__calloc(1, sizeof *f);
  if (f == NULL) return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  f->fd = -1;
  f->flags = flags;
  f->cap = strlen(path) + 32;
  f->name = pf__malloc(f->cap);
  f->path = pf__malloc(strlen(path) + 1);
  if (f->name == NULL || f->path == NULL) {
    pf_file_close(f);
    return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  }
  memcpy(f->path, path, strlen(path) + 1);
  if (!(flags & PF_NPY_NAMED_TEMP)) rc = create_unnamed(f, err);
  if (rc == 0 && f->fd < 0) rc = create_named(f, err);
  if (rc == 0) rc = reserve(f, bytes, err);
  if (rc != 0) {
    pf_file_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

int pf_file_fd(const pf_file *f) { return f != NULL ? f->fd : -1; }

const char *pf_file_path(const pf_file *f) {
  return f == NULL ? NULL : f->named ? f->name : f->proc;
}

/* Binds the file to its path: without PF_NPY_FORCE never replacing
 * anything (renameat2 RENAME_NOREPLACE, or link, which fails on an
 * existing name), with it replacing atomically by rename. An unnamed file
 * is first given a name: the path itself, or for PF_NPY_FORCE a hidden
 * temporary name that is then renamed over it (there is no "link,
 * replacing"). -1 with errno on failure. */
static int bind_name(pf_file *f) {
  const int force = (f->flags & PF_NPY_FORCE) != 0;
  if (!f->named) {
    if (!force)
      return linkat(AT_FDCWD, f->proc, AT_FDCWD, f->path, AT_SYMLINK_FOLLOW);
    for (int attempt = 0;; attempt++) {
      if (temp_name(f->path, f->name, f->cap) != 0) {
        errno = ENAMETOOLONG;
        return -1;
      }
      if (linkat(AT_FDCWD, f->proc, AT_FDCWD, f->name, AT_SYMLINK_FOLLOW) ==
          0)
        break;
      if (errno != EEXIST || attempt == 100) return -1;
    }
    f->named = 1;
  }
  if (force) {
    /* Still only a regular file is replaced, even one that appeared. */
    struct stat st;
    if (lstat(f->path, &st) == 0 && !S_ISREG(st.st_mode)) {
      errno = EISDIR;
      return -1;
    }
    if (rename(f->name, f->path) != 0) return -1;
    f->named = 0;
    return 0;
  }
  if (sys_renameat2(f->name, f->path, RENAME_NOREPLACE) == 0) {
    f->named = 0;
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) return -1;
  /* No renameat2 on this filesystem: link() fails if path exists. */
  if (link(f->name, f->path) != 0) return -1;
  unlink(f->name);
  f->named = 0;
  return 0;
}

/* Makes the new name durable: best effort (some filesystems cannot sync a
 * directory, and the data itself is already on disk). */
static void sync_dir(const char *path) {
  char dir[PATH_MAX];
  if (dir_of(path, dir, sizeof dir) != 0) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

int pf_file_publish(pf_file *f, pf_error *err) {
  if (f == NULL || f->fd < 0 || (!f->named && f->proc[0] == '\0'))
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (sys_fsync(f->fd) != 0)
    return pf__error_sys(err, pf__io_code(errno), errno, "cannot write '%s'",
                         f->path);
  /* Published while still open: an unnamed file is linked through its
   * descriptor. Write errors were all reported by fsync. */
  if (bind_name(f) != 0) {
    int e = errno;
    if (e == EEXIST)
      return pf__error_set(err, PF_EEXIST, -1, "'%s' exists", f->path);
    if (e == EISDIR && (f->flags & PF_NPY_FORCE))
      return pf__error_set(err, PF_EEXIST, -1,
                           "'%s' exists and is not a regular file (only "
                           "regular files are replaced)", f->path);
    return pf__error_sys(err, PF_EIO, e, "cannot create '%s'", f->path);
  }
  f->proc[0] = '\0'; /* published: pf_file_close only closes */
  sync_dir(f->path);
  return 0;
}

void pf_file_close(pf_file *f) {
  if (f == NULL) return;
  if (f->fd >= 0) close(f->fd);
  if (f->named) unlink(f->name);
  free(f->name);
  free(f->path);
  free(f);
}
