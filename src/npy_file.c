/*
 * npy_file.c -- durable .npy files: pf_npy_fill and pf_npy_fill_expr write a
 * whole file from a kernel or an expression, and `path` only ever names a
 * complete file.
 *
 * DESIGN
 * A file is never filled under its final name. It is written unnamed
 * (O_TMPFILE in the target's directory: it vanishes with the process, even
 * on SIGKILL) or, where the filesystem has no O_TMPFILE, as a hidden named
 * file next to the target (same directory, so the final rename cannot cross
 * filesystems) that every failure path unlinks. Its full size is reserved
 * with fallocate (a full disk or the file size limit shows up before any
 * work; ftruncate where the filesystem cannot reserve), then it is written,
 * fsync'd and bound to its name: with a no-replace rename or link (an
 * existing file is never touched, even one that appeared while we worked),
 * or with --force by an atomic rename over a regular file.
 *
 * The file is written in blocks of PF_NPY_BLOCK_BYTES of file offsets, each
 * computed into one buffer per worker and written with pwrite -- not through
 * a mapping of the file: resident memory is then the buffers and nothing
 * else (a mapping's dirty pages count against the process until unmapped),
 * and there are no page faults on the output. Block offsets are aligned, and
 * the header's length is a multiple of 64 and so of every item size, so
 * blocks start on element boundaries and block 0 simply begins with the
 * header.
 *
 * Writes use direct I/O where the filesystem allows it: the device reads the
 * buffer itself, with no copy into the page cache and no write-back left for
 * the final fsync. Measured on this project's machine (3.2 GB, ext4 on a
 * virtual disk): page cache + fsync 9 s, direct 2 s -- the page cache path
 * also costs a copy and several seconds of system time. Where direct I/O is
 * refused (no O_DIRECT, or EINVAL on a write), and for the file's last
 * partial page, writes go through the page cache, with writeback started per
 * 8 MiB written (sync_file_range) so the disk works while we compute.
 *
 * The blocks are the index space of a pf_fill: its "array" is one status
 * byte per block and its kernel (write_blocks) computes each block with the
 * caller's kernel and writes it. pf_fill brings the pool, the schedules,
 * the serial path, the timeout and the lowest-failure rule; the caller's
 * kernel gets a handle mapped from elements to blocks (pf__fill_worker_mapped),
 * so its failures and limits are the block fill's. Because a block is
 * coarse, write_blocks checks the limit before every block (a failure or a
 * cancel stops the others within one block, not at the end of a chunk that
 * may be half the file), polls the fill after every block (on the calling
 * thread that is when progress is due: pf_fill's serial path would report
 * only between its much larger kernel calls), and counts the elements
 * written, which is what the progress callback reports (pf_fill counts
 * blocks). A write failure stops the whole fill (index -1) with the errno
 * noted for err->sys_errno.
 */
#include <assert.h>
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

#include "expr.h"
#include "internal.h"
#include "pool.h"

/* Direct I/O wants buffers, offsets and lengths aligned to the device's
 * logical block size; 4096 covers every common device. */
#define DIO_ALIGN 4096
#define BLOCK ((int64_t)PF_NPY_BLOCK_BYTES)

/* Page-cache writeback is started per worker every this many bytes. */
#define WRITEBACK_BYTES (8 << 20)

/* Test seam (tests/c/test_npy.c; declared there, as nothing else calls it):
 * pf__npy_fail_call(call, after, e) makes the system call `call` fail once,
 * with errno `e`, after `after` more calls of it succeed -- pwrite (e == 0:
 * it writes nothing), fsync, renameat2 -- so the tests reach the failures
 * a full or broken disk gives. Off (-1) unless a test arms it; a fired seam
 * disarms itself. */
enum { PF__NPY_PWRITE, PF__NPY_FSYNC, PF__NPY_RENAMEAT2 };
static _Atomic int seam_call = -1, seam_after, seam_errno;

void pf__npy_fail_call(int call, int after, int e) {
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

static ssize_t sys_pwrite(int fd, const void *p, size_t n, off_t offset) {
  int e;
  if (!seam_fires(PF__NPY_PWRITE, &e)) return pwrite(fd, p, n, offset);
  errno = e;
  return e == 0 ? 0 : -1;
}

static int sys_fsync(int fd) {
  int e;
  if (!seam_fires(PF__NPY_FSYNC, &e)) return fsync(fd);
  errno = e;
  return -1;
}

static int sys_renameat2(const char *from, const char *to, unsigned flags) {
  int e;
  if (!seam_fires(PF__NPY_RENAMEAT2, &e))
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, flags);
  errno = e;
  return -1;
}

/* An errno as a code: a full disk is PF_ENOSPC, anything else PF_EIO. */
static int io_code(int e) {
  return e == ENOSPC || e == EDQUOT ? PF_ENOSPC : PF_EIO;
}

/* ------------------------------------------------------------ blocks */

/* A worker's block buffer (allocated by the worker on its first block, so it
 * is local to its core) and, for page-cache writes, the bytes it wrote that
 * the kernel has not yet been asked to write back. */
typedef struct npy_worker {
  char *buffer;
  int64_t unsynced_start, unsynced_end;
} npy_worker;

typedef struct npy_job {
  const char *path;    /* for messages */
  int fd;              /* the temporary file */
  int dfd;             /* the same file opened O_DIRECT, or -1 */
  _Atomic int direct;  /* 1 while direct writes are in use */
  pf_kernel_fn kernel;
  void *ctx;
  size_t itemsize;
  int64_t size;        /* elements */
  const unsigned char *header;
  int64_t header_len;  /* a multiple of 64, so of every item size */
  int64_t file_bytes;
  int workers;
  npy_worker *w;       /* per worker */
  const pf_fill_options *user;
  _Atomic int64_t written; /* elements */
  _Atomic int io_errno;    /* errno of the first failed write */
} npy_job;

/* A failed write stops the whole fill: the disk is full or broken for
 * everyone. */
static int io_fail(npy_job *job, pf_fill_worker *handle, int e) {
  int none = 0;
  atomic_compare_exchange_strong(&job->io_errno, &none, e);
  char text[128];
  /* GNU strerror_r returns the message pointer (maybe not text). */
  return pf_fill_worker_fail(handle, io_code(e), -1, "cannot write '%s': %s",
                             job->path, strerror_r(e, text, sizeof text));
}

/* pwrite all of [offset, offset+n); 0 or an errno, *done bytes written. */
static int write_at(int fd, const char *p, int64_t n, int64_t offset,
                    int64_t *done) {
  *done = 0;
  while (*done < n) {
    ssize_t w = sys_pwrite(fd, p + *done, (size_t)(n - *done),
                           (off_t)(offset + *done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    if (w == 0) return ENOSPC; /* nothing fits */
    *done += w;
  }
  return 0;
}

/* Starts writeback of what this worker wrote through the page cache since
 * the last call, once there is enough of it or when its next write is
 * elsewhere. Without this the final fsync would write the whole file while
 * everything else waits; with it the disk works while we compute.
 * Asynchronous (SYNC_FILE_RANGE_WRITE); failures are caught by the fsync. */
static void flush_some(npy_job *job, npy_worker *w, int64_t next_start,
                       int64_t next_end) {
  if (w->unsynced_end > w->unsynced_start &&
      (next_start != w->unsynced_end ||
       w->unsynced_end - w->unsynced_start >= WRITEBACK_BYTES)) {
    sync_file_range(job->fd, (off_t)w->unsynced_start,
                    (off_t)(w->unsynced_end - w->unsynced_start),
                    SYNC_FILE_RANGE_WRITE);
    w->unsynced_start = w->unsynced_end = next_start;
  }
  if (w->unsynced_end != next_start) w->unsynced_start = next_start;
  w->unsynced_end = next_end;
}

/* Writes file bytes [offset, offset+n) from p: the DIO_ALIGN-aligned part
 * with direct I/O when it works, the rest (the file's last partial page, or
 * everything without direct I/O) through the page cache. A filesystem that
 * refuses a direct write (EINVAL) gets page-cache writes from then on. */
static int write_range(npy_job *job, npy_worker *w, pf_fill_worker *handle,
                       const char *p, int64_t n, int64_t offset) {
  int64_t done;
  if (atomic_load_explicit(&job->direct, memory_order_relaxed)) {
    int e = write_at(job->dfd, p, n / DIO_ALIGN * DIO_ALIGN, offset, &done);
    if (e == EINVAL)
      atomic_store_explicit(&job->direct, 0, memory_order_relaxed);
    else if (e != 0)
      return io_fail(job, handle, e);
    p += done;
    n -= done;
    offset += done;
  }
  if (n == 0) return 0;
  int e = write_at(job->fd, p, n, offset, &done);
  if (e != 0) return io_fail(job, handle, e);
  flush_some(job, w, offset, offset + n);
  return 0;
}

/* Index maps between the elements a kernel sees and the blocks of the
 * fill around it (pf__fill_worker_mapped). */
static int64_t element_to_block(const void *map, int64_t element) {
  const npy_job *job = map;
  return (job->header_len + element * (int64_t)job->itemsize) / BLOCK;
}

static int64_t block_to_element(const void *map, int64_t block) {
  const npy_job *job = map;
  int64_t bytes = block * BLOCK - job->header_len;
  return bytes <= 0 ? 0 : bytes / (int64_t)job->itemsize;
}

/* Block b: file bytes [b*BLOCK, (b+1)*BLOCK), aligned for direct I/O and
 * (the header's length being a multiple of 64) on element boundaries; block
 * 0 begins with the header. Computed by the caller's kernel through `inner`
 * (the handle in element indices), written, counted. */
static int write_block(npy_job *job, npy_worker *w, int64_t b,
                       pf_fill_worker *handle, pf_fill_worker *inner) {
  int64_t lo = b * BLOCK;
  int64_t hi = job->file_bytes - lo < BLOCK ? job->file_bytes : lo + BLOCK;
  int64_t data = lo < job->header_len ? job->header_len : lo;
  if (lo < job->header_len)
    memcpy(w->buffer, job->header, (size_t)job->header_len);
  int64_t n = (hi - data) / (int64_t)job->itemsize;
  if (n > 0) {
    int rc = job->kernel(job->ctx,
                         (data - job->header_len) / (int64_t)job->itemsize,
                         n, w->buffer + (data - lo), inner);
    if (rc != 0) return rc; /* failed through inner, or counts as -1 */
  }
  int rc = write_range(job, w, handle, w->buffer, hi - lo, lo);
  if (rc != 0) return rc;
  atomic_fetch_add_explicit(&job->written, n, memory_order_relaxed);
  return 0;
}

/* The pf_kernel_fn of the block space: blocks [start, start+count), one
 * status byte each in `out`. */
static int write_blocks(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *handle) {
  npy_job *job = ctx;
  const int id = pf_fill_worker_id(handle);
  assert(id >= 0 && id < job->workers);
  npy_worker *w = &job->w[id];
  if (w->buffer == NULL) {
    w->buffer = pf__aligned_alloc(DIO_ALIGN, (size_t)BLOCK);
    if (w->buffer == NULL)
      return pf_fill_worker_fail(handle, PF_ENOMEM, -1,
                                 "out of memory for a block buffer");
    /* Stores leave long double's padding bytes alone: zero, not whatever
     * the heap held, so the same call writes the same file. */
    memset(w->buffer, 0, (size_t)BLOCK);
  }
  pf_fill_worker inner;
  pf__fill_worker_mapped(&inner, handle, element_to_block, block_to_element,
                         job);
  for (int64_t b = start; b < start + count; b++) {
    /* Blocks at and past the limit are not needed: a failure below them,
     * or the fill stopped as a whole (limit 0). */
    if (b >= pf_fill_worker_limit(handle)) return 0;
    int rc = write_block(job, w, b, handle, &inner);
    if (rc != 0) return rc;
    ((unsigned char *)out)[b - start] = 1;
    pf__fill_worker_poll(handle, b + 1); /* progress, on the calling thread */
  }
  return 0;
}

/* The block fill's progress hook: the caller's callback counts elements
 * written, not the blocks pf_fill counts. */
static int report_elements(void *ctx, int64_t blocks, int64_t nblocks) {
  npy_job *job = ctx;
  (void)blocks;
  (void)nblocks;
  return job->user->progress(job->user->progress_ctx,
                             atomic_load(&job->written), job->size);
}

/* Computes and writes every block of the file, header included. */
static int fill_blocks(npy_job *job, pf_error *err) {
  int64_t nblocks = (job->file_bytes + BLOCK - 1) / BLOCK;
  int64_t per_block = BLOCK / (int64_t)job->itemsize; /* elements */
  pf_fill_options o = *job->user;
  if (o.chunk > 0) o.chunk = o.chunk / per_block + (o.chunk % per_block != 0);
  if (o.progress != NULL) {
    o.progress = report_elements;
    o.progress_ctx = job;
  }
  o.release = NULL; /* the blocks' ctx is this job, on our caller's stack */
  /* Fixed here, so the per-worker buffers and pf_fill agree even if the
   * pool grows meanwhile. */
  o.workers = job->workers = pf_fill_workers(&o, nblocks);
  unsigned char *status = pf__calloc((size_t)nblocks, 1);
  job->w = pf__calloc((size_t)job->workers, sizeof *job->w);
  int rc;
  if (status == NULL || job->w == NULL) {
    rc = pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  } else {
    pf_array blocks = {.data = status, .dtype = PF_UINT8, .ndim = 1,
                       .shape = {nblocks}};
    pf_array_set_contiguous(&blocks);
    rc = pf_fill(&blocks, write_blocks, job, &o, err);
  }
  if (job->w != NULL)
    for (int w = 0; w < job->workers; w++) free(job->w[w].buffer);
  free(job->w);
  free(status);
  return rc;
}

/* ------------------------------------------------------------ the file */

/* A second descriptor of the temporary file for direct I/O, or -1 where the
 * filesystem has none (tmpfs) -- checked to be the very file we created.
 * `name` is the file's name, or /proc/self/fd/N for an unnamed one. */
static int open_direct(const char *name, int fd) {
  int dfd = open(name, O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (dfd < 0) return -1;
  struct stat a, b;
  if (fstat(fd, &a) != 0 || fstat(dfd, &b) != 0 || a.st_dev != b.st_dev ||
      a.st_ino != b.st_ino) {
    close(dfd);
    return -1;
  }
  return dfd;
}

/* "dir/.name.XXXXXX.tmp" for "dir/name" into tmp (PATH_MAX-ish buffer). */
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

/* Fails, before any work, for a name the final link or rename could never
 * bind: a last component longer than the directory allows (the temporary
 * names are cut to fit, so only the end would notice), a path over
 * PATH_MAX. A missing directory or one we may not write is reported when
 * the temporary file is created, also before any work. */
static int check_name(const char *path, pf_error *err) {
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

/* The file being written: unnamed (O_TMPFILE: it vanishes with the process,
 * even on SIGKILL, and is linked to its name at the end) or, where the
 * filesystem has no O_TMPFILE, a hidden named file next to the target that
 * every failure path unlinks. */
typedef struct npy_temp {
  int fd;
  int named;           /* 1: `name` exists in the directory */
  char proc[32];       /* "/proc/self/fd/N" of an unnamed file */
  char *name;          /* the named file, or a scratch buffer for --force */
  size_t cap;
} npy_temp;

/* Creates the temporary file for `path`. 0, or an error with err filled. */
static int temp_create(npy_temp *t, const char *path, unsigned flags,
                       pf_error *err) {
  t->fd = -1;
  t->named = 0;
  t->cap = strlen(path) + 32;
  t->name = pf__malloc(t->cap);
  if (t->name == NULL)
    return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  if (!(flags & PF_NPY_NAMED_TEMP)) {
    char dir[PATH_MAX];
    if (dir_of(path, dir, sizeof dir) != 0)
      return pf__error_sys(err, PF_EIO, ENAMETOOLONG,
                           "cannot create a file next to '%s'", path);
    int fd;
    do fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      return pf__error_sys(err, io_code(errno), errno,
                           "cannot create a temporary file next to '%s'",
                           path);
    if (fd >= 0) {
      /* It is linked through /proc (linkat with AT_EMPTY_PATH would need
       * CAP_DAC_READ_SEARCH): without /proc, use a named file instead. */
      snprintf(t->proc, sizeof t->proc, "/proc/self/fd/%d", fd);
      struct stat a, b;
      if (fstat(fd, &a) == 0 && stat(t->proc, &b) == 0 &&
          a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        t->fd = fd;
        return 0;
      }
      close(fd);
    }
  }
  for (int attempt = 0; attempt < 100 && t->fd < 0; attempt++) {
    if (temp_name(path, t->name, t->cap) != 0)
      return pf__error_set(err, PF_EINVAL, -1, "path too long");
    t->fd = open(t->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (t->fd < 0 && errno != EEXIST && errno != EINTR) break;
  }
  if (t->fd < 0)
    return pf__error_sys(err, io_code(errno), errno,
                         "cannot create a temporary file next to '%s'", path);
  t->named = 1;
  return 0;
}

/* Closes the file (if still open) and removes whatever of it has a name. */
static void temp_discard(npy_temp *t) {
  if (t->fd >= 0) close(t->fd);
  t->fd = -1;
  if (t->named) unlink(t->name);
  t->named = 0;
  free(t->name);
  t->name = NULL;
}

/* Binds the finished (closed) temporary file to `path`: without
 * PF_NPY_FORCE never replacing anything (renameat2 RENAME_NOREPLACE, or
 * link, which fails on an existing name), with it replacing atomically by
 * rename. An unnamed file is first given a name: `path` itself, or for
 * --force a hidden temporary name that is then renamed over `path` (there
 * is no "link, replacing"). -1 with errno on failure; nothing is left. */
static int temp_publish(npy_temp *t, const char *path, unsigned flags) {
  if (!t->named) {
    if (!(flags & PF_NPY_FORCE))
      return linkat(AT_FDCWD, t->proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
    for (int attempt = 0;; attempt++) {
      if (temp_name(path, t->name, t->cap) != 0) {
        errno = ENAMETOOLONG;
        return -1;
      }
      if (linkat(AT_FDCWD, t->proc, AT_FDCWD, t->name, AT_SYMLINK_FOLLOW) ==
          0)
        break;
      if (errno != EEXIST || attempt == 100) return -1;
    }
    t->named = 1;
  }
  if (flags & PF_NPY_FORCE) {
    if (rename(t->name, path) != 0) return -1;
    t->named = 0;
    return 0;
  }
  if (sys_renameat2(t->name, path, RENAME_NOREPLACE) == 0) {
    t->named = 0;
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) return -1;
  /* No renameat2 on this filesystem: link() fails if path exists. */
  if (link(t->name, path) != 0) return -1;
  unlink(t->name);
  t->named = 0;
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

/* ------------------------------------------------------------ pf_npy_fill */

/* What is known before touching the file system. */
typedef struct npy_plan {
  unsigned char header[PF_NPY_HEADER_MAX];
  size_t header_len;
  int64_t size;       /* elements */
  int64_t file_bytes; /* header and data */
} npy_plan;

/* Checks the arguments and writes the header into the plan. */
static int plan_file(npy_plan *p, const char *path, pf_dtype dtype, int ndim,
                     const int64_t *shape, pf_kernel_fn kernel,
                     const pf_fill_options *o, unsigned flags,
                     pf_error *err) {
  if (path == NULL || kernel == NULL || path[0] == '\0' ||
      (flags & ~(PF_NPY_FORCE | PF_NPY_BUFFERED | PF_NPY_NAMED_TEMP)) != 0 ||
      o->chunk < 0 || o->workers < 0 ||
      (unsigned)o->schedule > PF_SCHEDULE_GUIDED)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (path[strlen(path) - 1] == '/')
    return pf__error_set(err, PF_EINVAL, -1, "'%s' names a directory", path);
  if (o->window != NULL)
    return pf__error_set(err, PF_EINVAL, -1,
                         "a .npy fill writes the whole file: no window");
  pf_npy_header h = {.dtype = dtype, .ndim = ndim};
  if (ndim < 0 || ndim > PF_MAX_DIMS || (ndim > 0 && shape == NULL))
    return pf__error_set(err, PF_EINVAL, -1, "invalid shape");
  for (int d = 0; d < ndim; d++) h.shape[d] = shape[d];
  int rc = pf_npy_header_write(&h, p->header, sizeof p->header,
                               &p->header_len, err);
  if (rc != 0) return rc;
  pf_shape_size(ndim, shape, 1, &p->size);
  int64_t data_bytes = p->size * (int64_t)pf_dtype_size(dtype);
  if (data_bytes > INT64_MAX - (int64_t)p->header_len)
    return pf__error_set(err, PF_EOVERFLOW, -1, "file larger than %lld bytes",
                         (long long)INT64_MAX);
  p->file_bytes = (int64_t)p->header_len + data_bytes;
  return 0;
}

/* The overwrite policy, before any work: a taken name fails without
 * PF_NPY_FORCE (checked again, atomically, by the final no-replace link or
 * rename), and with it only a regular file may be replaced. */
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

/* Reserves the whole file, so a full disk or the file size limit shows up
 * now; a filesystem that cannot reserve gets the size without reservation
 * (a full disk is then a failed write during the fill). */
static int reserve(const npy_temp *t, const char *path, int64_t bytes,
                   pf_error *err) {
  int e;
  do e = fallocate(t->fd, 0, 0, (off_t)bytes) == 0 ? 0 : errno;
  while (e == EINTR);
  if (e == EOPNOTSUPP || e == ENOSYS)
    e = ftruncate(t->fd, (off_t)bytes) == 0 ? 0 : errno;
  if (e != 0)
    return pf__error_sys(err, io_code(e), e,
                         "cannot reserve %lld bytes for '%s'",
                         (long long)bytes, path);
  return 0;
}

/* Writes the planned file into the temporary file with the kernel. */
static int write_file(const npy_temp *t, const char *path,
                      const npy_plan *p, pf_dtype dtype, pf_kernel_fn kernel,
                      void *ctx, const pf_fill_options *o, unsigned flags,
                      pf_error *err) {
  int dfd = -1;
  if (!(flags & PF_NPY_BUFFERED))
    dfd = open_direct(t->named ? t->name : t->proc, t->fd);
  npy_job job = {.path = path, .fd = t->fd, .dfd = dfd, .kernel = kernel,
                 .ctx = ctx, .itemsize = pf_dtype_size(dtype),
                 .size = p->size, .header = p->header,
                 .header_len = (int64_t)p->header_len,
                 .file_bytes = p->file_bytes, .user = o};
  atomic_init(&job.direct, dfd >= 0);
  atomic_init(&job.written, 0);
  atomic_init(&job.io_errno, 0);
  int rc = fill_blocks(&job, err);
  int e = atomic_load(&job.io_errno);
  if (rc != 0 && e != 0 && rc == io_code(e) && err != NULL)
    err->sys_errno = e; /* the fill keeps code and message only */
  if (dfd >= 0) close(dfd);
  return rc;
}

/* Makes the written file durable and gives it its name. */
static int publish(npy_temp *t, const char *path, unsigned flags,
                   pf_error *err) {
  if (sys_fsync(t->fd) != 0)
    return pf__error_sys(err, io_code(errno), errno, "cannot write '%s'",
                         path);
  /* Published while still open: an unnamed file is linked through its
   * descriptor. Write errors were all reported by fsync. */
  if (temp_publish(t, path, flags) != 0) {
    int e = errno;
    return e == EEXIST
               ? pf__error_set(err, PF_EEXIST, -1, "'%s' exists", path)
               : pf__error_sys(err, PF_EIO, e, "cannot create '%s'", path);
  }
  sync_dir(path);
  return 0;
}

int pf_npy_fill(const char *path, pf_dtype dtype, int ndim,
                const int64_t *shape, pf_kernel_fn kernel, void *ctx,
                const pf_fill_options *options, unsigned flags,
                pf_error *err) {
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  const pf_fill_options *o = options != NULL ? options : &defaults;
  npy_plan plan;
  int rc = plan_file(&plan, path, dtype, ndim, shape, kernel, o, flags, err);
  if (rc == 0) rc = check_target(path, flags, err);
  if (rc != 0) return rc;
  npy_temp t;
  rc = temp_create(&t, path, flags, err);
  if (rc == 0) rc = reserve(&t, path, plan.file_bytes, err);
  if (rc == 0)
    rc = write_file(&t, path, &plan, dtype, kernel, ctx, o, flags, err);
  if (rc == 0) rc = publish(&t, path, flags, err);
  temp_discard(&t); /* after publish: only closes it */
  return rc;
}

/* ------------------------------------------------------------ expressions */

int pf_npy_fill_expr(const char *path, const pf_expr *expr, pf_dtype dtype,
                     int ndim, const int64_t *shape,
                     const pf_fill_options *options, unsigned flags,
                     pf_error *err) {
  if (expr == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (ndim != expr->ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "the expression was compiled for %d dimensions, the "
                         "shape has %d", expr->ndim, ndim);
  if (ndim > 0 && shape == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "invalid shape");
  /* pf_npy_fill's checks of the shape and dtype, before preparing the run:
   * the header they would have. */
  pf_npy_header h = {.dtype = dtype, .ndim = ndim};
  for (int d = 0; d < ndim; d++) h.shape[d] = shape[d];
  unsigned char header[PF_NPY_HEADER_MAX];
  size_t header_len;
  int rc = pf_npy_header_write(&h, header, sizeof header, &header_len, err);
  if (rc != 0) return rc;
  int64_t size;
  pf_shape_size(ndim, shape, 1, &size);
  /* One run for the whole file: the blocks' workers (at most this many, as
   * a file has no more blocks than elements) reuse their registers. */
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  pf_fill_options o = options != NULL ? *options : defaults;
  if (o.workers < 0)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  o.workers = pf_fill_workers(&o, size > 0 ? size : 1);
  pf__expr_run *run;
  rc = pf__expr_run_new(&run, expr, shape, dtype, o.workers, 0, err);
  if (rc != 0) return rc;
  rc = pf_npy_fill(path, dtype, ndim, shape, pf__expr_run_kernel, run, &o,
                   flags, err);
  rc = pf__expr_run_finish(run, rc, err);
  pf__expr_run_free(run);
  return rc;
}
