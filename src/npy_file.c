/*
 * npy_file.c -- durable .npy files: pf_npy_fill and pf_npy_fill_expr write a
 * whole file from a kernel or an expression, and `path` only ever names a
 * complete file.
 *
 * DESIGN
 * A file is never filled under its final name: it is a pf_file
 * (output_file.c: checked name and overwrite policy, an unnamed or hidden
 * temporary file, its whole size reserved before any work, fsync and a
 * no-replace or atomic rename at the end).
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
  return pf_fill_worker_fail(handle, pf__io_code(e), -1, "cannot write '%s': %s",
                             job->path, strerror_r(e, text, sizeof text));
}

/* pwrite all of [offset, offset+n); 0 or an errno, *done bytes written. */
static int write_at(int fd, const char *p, int64_t n, int64_t offset,
                    int64_t *done) {
  *done = 0;
  while (*done < n) {
    ssize_t w = pf__file_pwrite(fd, p + *done, (size_t)(n - *done),
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

/* Writes the planned file into the temporary file with the kernel. */
static int write_file(const pf_file *t, const char *path,
                      const npy_plan *p, pf_dtype dtype, pf_kernel_fn kernel,
                      void *ctx, const pf_fill_options *o, unsigned flags,
                      pf_error *err) {
  int dfd = -1;
  if (!(flags & PF_NPY_BUFFERED))
    dfd = open_direct(pf_file_path(t), pf_file_fd(t));
  npy_job job = {.path = path, .fd = pf_file_fd(t), .dfd = dfd, .kernel = kernel,
                 .ctx = ctx, .itemsize = pf_dtype_size(dtype),
                 .size = p->size, .header = p->header,
                 .header_len = (int64_t)p->header_len,
                 .file_bytes = p->file_bytes, .user = o};
  atomic_init(&job.direct, dfd >= 0);
  atomic_init(&job.written, 0);
  atomic_init(&job.io_errno, 0);
  int rc = fill_blocks(&job, err);
  int e = atomic_load(&job.io_errno);
  if (rc != 0 && e != 0 && rc == pf__io_code(e) && err != NULL)
    err->sys_errno = e; /* the fill keeps code and message only */
  if (dfd >= 0) close(dfd);
  return rc;
}

int pf_npy_fill(const char *path, pf_dtype dtype, int ndim,
                const int64_t *shape, pf_kernel_fn kernel, void *ctx,
                const pf_fill_options *options, unsigned flags,
                pf_error *err) {
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  const pf_fill_options *o = options != NULL ? options : &defaults;
  npy_plan plan;
  int rc = plan_file(&plan, path, dtype, ndim, shape, kernel, o, flags, err);
  if (rc != 0) return rc;
  pf_file *file;
  rc = pf_file_create(path, plan.file_bytes, flags, &file, err);
  if (rc != 0) return rc;
  rc = write_file(file, path, &plan, dtype, kernel, ctx, o, flags, err);
  if (rc == 0) rc = pf_file_publish(file, err);
  pf_file_close(file); /* after publish: only closes it */
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
