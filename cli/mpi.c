/*
 * mpi.c -- `mpiexec -n R parfill-mpi fill EXPR --shape ... -o OUT.npy`: one
 * .npy file from R ranks through MPI-IO (SPEC section 8, "MPI"). Built only
 * into build/parfill-mpi (with mpicc, -DPF_CLI_MPI); libparfill and the
 * plain `parfill` know nothing of MPI.
 *
 * DESIGN
 * The file's bytes [0, header + data) are cut into R contiguous slabs, one
 * per rank, at multiples of L = lcm(blksize, itemsize) *file* offsets:
 * blksize is the file system's preferred I/O size (st_blksize of the new
 * file: the page size on a local disk, the stripe or block size on Lustre
 * and GPFS), so no two ranks ever write the same file system block (a
 * parallel file system locks per block or stripe: a shared block would be
 * written twice and serialise the ranks on its lock). Cuts on file offsets,
 * not data offsets: the header (a multiple of 64 bytes) shifts the data off
 * block boundaries, and cutting the data would put every cut inside a block.
 * They are still element boundaries, since the header's length is a
 * multiple of 64 and so of every item size (1 .. 32 bytes). Rank 0's slab
 * starts at byte 0: it writes the header as the start of its first block,
 * as pf_npy_fill does. With fewer units L than ranks the last ranks get
 * empty slabs. The decomposition is a pure function of (file size, R, L),
 * so every rank knows every slab without asking.
 *
 * Each rank writes its slab in blocks of B bytes (1 MiB rounded up to L),
 * each computed into a buffer by pf_expr_fill on the rank's own thread pool
 * with a range window (the block's first element's global flat index), so
 * every index variable and uniform()/normal() is the whole array's -- the
 * bytes are those one process writes -- and written with MPI_File_iwrite_at
 * (explicit offsets, independent: a rank's piece is one contiguous,
 * block-aligned range, which the two-phase aggregation of
 * MPI_File_write_at_all could only move between ranks; measured 1.5 s vs
 * 1.25 s per GB here, before overlapping) while the next block is computed
 * into a second buffer. After each write the page cache's write-back of its
 * range is started (sync_file_range on a plain descriptor of the file), so
 * the disk works during the fill and the final sync is short. Memory is the
 * two buffers: a rank's resident size does not grow with the file. Every
 * rank goes through the same number of rounds -- the most blocks any slab
 * has; a rank whose slab is shorter (or empty) writes nothing in the rounds
 * left but still takes part in each round's agreement.
 *
 * After every round the ranks agree (one MPI_Allreduce of two numbers: how
 * many failed, how many elements are done -- the latter is what rank 0's
 * --progress shows, so it reports the whole job exactly). A failure anywhere
 * stops every rank at the same round. The error reported is the one a
 * single process would report: an I/O error or an interrupt as found on the
 * lowest rank; an expression's run-time error only after every rank below
 * the lowest failing one has checked the rest of its slab (without writing)
 * for an earlier failing element -- C order is rank order, so the lowest
 * failing rank's first failure is the first failing element of the array.
 * That rank's message (and caret position) is broadcast and rank 0 prints
 * it; every rank exits with the same status.
 *
 * The file: rank 0 makes it a pf_file with a named temporary file, as the
 * single-process command's (the target checked -- an existing OUT.npy
 * without --force is refused before anything is created -- the hidden
 * ".OUT.npy.XXXXXX.tmp" created next to it and its whole size reserved: a
 * full disk shows up before any work) and broadcasts its name; all ranks
 * open it with MPI_File_open. After the last round: MPI_File_sync (every
 * rank's data durable), MPI_File_close (collective: every rank is done),
 * then rank 0 alone publishes it (pf_file_publish: a no-replace rename, so
 * an OUT.npy that appeared meanwhile is never replaced, or with --force an
 * atomic rename over a regular file). On any failure rank 0 removes the
 * temporary file after every rank has closed it.
 *
 * A rank killed outright (SIGKILL, a crash, a lost node) cannot agree on
 * anything: Open MPI aborts the job, sending the other ranks SIGTERM (then
 * SIGKILL). Rank 0's SIGTERM handler unlinks the temporary file at once
 * (unlink is async-signal-safe; main.c's handler calls it, so it works even
 * while rank 0 waits in a collective), so only the death of rank 0 itself
 * by an uncatchable signal can leave ".OUT.npy.XXXXXX.tmp" behind.
 * OUT.npy is never created or touched by a failed job.
 *
 * Test knobs (environment, read on rank 0 / every rank; the tests use them
 * to give small arrays many slabs and rounds): PARFILL_MPI_ALIGN=BYTES
 * replaces st_blksize; PARFILL_MPI_BLOCK=BYTES the 1 MiB of a block;
 * PARFILL_MPI_FAIL=write:R:N (rank R's N-th nonempty write fails as a full
 * disk would) or kill:R:N (rank R kills itself with SIGKILL before it);
 * PARFILL_MPI_TRACE=1: every rank prints its slab on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Bytes per write: as pf_npy_fill's blocks. Measured here (2 ranks x 1
 * thread, 2 GB float32, one run each): 1 MiB 2.3 s, 4 MiB 4.6 s, 256 KiB
 * 3.2 s -- a block that stays in cache between its computation and the
 * copy into the page cache. */
#define BLOCK_BYTES ((int64_t)PF_NPY_BLOCK_BYTES)

/* What went wrong on one rank, to be said once, by rank 0. */
typedef struct mpi_failure {
  int status;       /* exit status: CLI_FAILED, CLI_USAGE, CLI_INTERRUPTED */
  int kernel;       /* 1: an element's error (the lowest such wins) */
  int printed;      /* 1: the message was printed already (by rank 0) */
  int caret;        /* 1: print with the expression and a caret */
  int64_t position; /* the caret's byte offset in the expression */
  char message[PF_ERROR_MESSAGE_SIZE + 2 * PATH_MAX];
} mpi_failure;

typedef struct mpi_job {
  int rank, nranks;
  cli_fill_args a;
  pf_expr *expr;
  size_t itemsize;
  int64_t size; /* elements */
  unsigned char header[PF_NPY_HEADER_MAX];
  int64_t header_len;
  int64_t file_bytes;
  int64_t align;  /* L: slab cuts at multiples of it */
  int64_t block;  /* B: bytes per write */
  int64_t lo, hi; /* this rank's slab: file bytes [lo, hi) */
  int64_t rounds; /* writes every rank makes: the most blocks of any slab */
  pf_file *file;      /* rank 0: the file being written */
  char tmp[PATH_MAX]; /* its temporary name, on every rank */
  MPI_File fh;
  int open;       /* fh is open */
  int wfd;        /* a plain descriptor of the file, for write-back, or -1 */
  cli_progress progress; /* rank 0's bar (and every rank's Ctrl-C check) */
  cli_progress quiet;    /* the in-block fills' Ctrl-C check */
  int fail_write, fail_kill; /* PARFILL_MPI_FAIL: the write number, or -1 */
  int trace;                 /* PARFILL_MPI_TRACE=1 */
  double t_compute, t_write, t_agree, t_sync; /* seconds, for the trace */
} mpi_job;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ agreement */

static void fail(mpi_failure *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(mpi_failure *f, int status, const char *fmt, ...) {
  if (f->status != 0) return; /* the first failure on a rank is its own */
  f->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->message, sizeof f->message, fmt, ap);
  va_end(ap);
}

/* Every rank calls it: the status the job ends with (0: none failed),
 * after rank 0 has said what the lowest failing rank found. Collective. */
static int agree(const mpi_job *j, mpi_failure *f) {
  int mine = f->status != 0 ? j->rank : j->nranks, owner;
  MPI_Allreduce(&mine, &owner, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (owner == j->nranks) return 0;
  int printed = j->rank == 0 && f->printed;
  MPI_Bcast(f, (int)sizeof *f, MPI_BYTE, owner, MPI_COMM_WORLD);
  if (j->rank == 0 && !printed) {
    if (f->printed) {
      /* Only that rank saw it (the same arguments on every rank should
       * fail alike): rank 0 cannot repeat what was not sent. */
      cli_error("the command line was refused on rank %d", owner);
    } else if (f->caret) {
      pf_error e = {.code = PF_ESYNTAX, .position = f->position};
      snprintf(e.message, sizeof e.message, "%.*s",
               (int)sizeof e.message - 1, f->message);
      cli_expr_error(j->a.expr, &e);
    } else if (f->status == CLI_INTERRUPTED) {
      fputs("parfill: interrupted\n", stderr);
    } else {
      cli_error("%s", f->message);
    }
  }
  return f->status;
}

/* ------------------------------------------------------------ the file */

static int64_t gcd64(int64_t a, int64_t b) {
  while (b != 0) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* A positive integer from the environment, or `fallback`. */
static int64_t env_bytes(const char *name, int64_t fallback) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return fallback;
  char *end;
  long long n = strtoll(v, &end, 10);
  return *end == '\0' && n > 0 && n <= (1 << 30) ? (int64_t)n : fallback;
}

/* "write:R:N" / "kill:R:N" for this rank. */
static void read_fail_seam(mpi_job *j) {
  j->fail_write = j->fail_kill = -1;
  const char *v = getenv("PARFILL_MPI_FAIL");
  int r, n;
  char what[8];
  if (v == NULL || sscanf(v, "%7[a-z]:%d:%d", what, &r, &n) != 3 ||
      r != j->rank)
    return;
  if (strcmp(what, "write") == 0) j->fail_write = n;
  if (strcmp(what, "kill") == 0) j->fail_kill = n;
}

/* The exit status and message of a pf_file failure, as the single-process
 * command gives them. */
static void file_failed(mpi_failure *f, int rc, const pf_error *err,
                        int force) {
  if (rc == PF_EEXIST)
    fail(f, CLI_USAGE, "%s%s", err->message, cli_exists_hint(force));
  else
    fail(f, CLI_FAILED, "%s", err->message);
}

/* Rank 0, before any rank writes: the file (its name checked, a named
 * temporary file, its reservation); j->file, j->tmp, j->align on success. */
static void create_file(mpi_job *j, mpi_failure *f) {
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_file_create(j->a.output, j->file_bytes,
                          PF_NPY_NAMED_TEMP | (j->a.force ? PF_NPY_FORCE : 0),
                          &j->file, &err);
  if (rc == 0 && snprintf(j->tmp, sizeof j->tmp, "%s",
                          pf_file_path(j->file)) >= (int)sizeof j->tmp) {
    rc = PF_EIO;
    snprintf(err.message, sizeof err.message, "cannot create '%.100s...': %s",
             j->a.output, strerror(ENAMETOOLONG));
  }
  if (rc != 0) {
    file_failed(f, rc, &err, j->a.force);
    pf_file_close(j->file);
    j->file = NULL;
    j->tmp[0] = '\0';
    return;
  }
  /* From here a SIGTERM (Open MPI aborting the job) removes it. */
  cli_arm_unlink(j->tmp);
  struct stat st;
  if (fstat(pf_file_fd(j->file), &st) != 0) st.st_blksize = 4096;
  int64_t blk = env_bytes("PARFILL_MPI_ALIGN",
                          st.st_blksize > 0 && st.st_blksize <= (1 << 30)
                              ? (int64_t)st.st_blksize
                              : 4096);
  j->align = blk / gcd64(blk, (int64_t)j->itemsize) * (int64_t)j->itemsize;
}

/* Rank 0, after every rank closed the file: removes it (unless published). */
static void remove_temp(mpi_job *j) {
  if (j->rank != 0 || j->file == NULL) return;
  cli_disarm_unlink();
  pf_file_close(j->file);
  j->file = NULL;
  j->tmp[0] = '\0';
}

/* Rank 0, after every rank's data is durable: gives it its name. */
static void publish(mpi_job *j, mpi_failure *f) {
  cli_disarm_unlink();
  if (cli_interrupted) {
    fail(f, CLI_INTERRUPTED, "interrupted");
    return;
  }
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_file_publish(j->file, &err);
  if (rc != 0) file_failed(f, rc, &err, j->a.force);
}

/* An MPI-IO error as a sentence. */
static void mpi_reason(int code, char *buf, size_t cap) {
  int cls = MPI_ERR_OTHER;
  MPI_Error_class(code, &cls);
  const char *why = cls == MPI_ERR_NO_SPACE    ? strerror(ENOSPC)
                    : cls == MPI_ERR_QUOTA     ? strerror(EDQUOT)
                    : cls == MPI_ERR_ACCESS    ? strerror(EACCES)
                    : cls == MPI_ERR_READ_ONLY ? strerror(EROFS)
                    : cls == MPI_ERR_NO_SUCH_FILE ? strerror(ENOENT)
                                               : NULL;
  if (why != NULL) {
    snprintf(buf, cap, "%s", why);
    return;
  }
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(code, s, &n);
  snprintf(buf, cap, "%.*s", n, s);
}

/* ------------------------------------------------------------ the slabs */

/* The first file byte of rank r's slab (r = nranks: the end). */
static int64_t slab_start(const mpi_job *j, int r) {
  if (r == 0) return 0;
  if (r == j->nranks) return j->file_bytes;
  int64_t units = (j->file_bytes + j->align - 1) / j->align;
  /* r * units / R without overflow: units < 2**63 / 1, R < 2**31. */
  int64_t u = (int64_t)((__int128)units * r / j->nranks);
  int64_t b = u * j->align;
  if (b < j->header_len) b = j->header_len; /* rank 0 writes the header */
  return b < j->file_bytes ? b : j->file_bytes;
}

static void plan_slabs(mpi_job *j) {
  j->block = (BLOCK_BYTES + j->align - 1) / j->align * j->align;
  int64_t b = env_bytes("PARFILL_MPI_BLOCK", 0);
  if (b > 0) j->block = (b + j->align - 1) / j->align * j->align;
  j->lo = slab_start(j, j->rank);
  j->hi = slab_start(j, j->rank + 1);
  j->rounds = 0;
  for (int r = 0; r < j->nranks; r++) {
    int64_t n = slab_start(j, r + 1) - slab_start(j, r);
    int64_t blocks = (n + j->block - 1) / j->block;
    if (blocks > j->rounds) j->rounds = blocks;
  }
  const char *trace = getenv("PARFILL_MPI_TRACE");
  j->trace = trace != NULL && strcmp(trace, "1") == 0;
  if (j->trace)
    fprintf(stderr, "parfill-mpi: rank %d of %d: bytes [%" PRId64 ", %" PRId64
            ") of %" PRId64 ", align %" PRId64 ", block %" PRId64
            ", rounds %" PRId64 "\n", j->rank, j->nranks, j->lo, j->hi,
            j->file_bytes, j->align, j->block, j->rounds);
}

/* File bytes [from, to) into buf: the header's part, then the elements by
 * the window fill (global flat indices). 0, or the element error in f. */
static int compute_block(mpi_job *j, int64_t from, int64_t to,
                         unsigned char *buf, mpi_failure *f) {
  int64_t h = j->header_len;
  if (from < h) memcpy(buf, j->header + from, (size_t)((to < h ? to : h) -
                                                         from));
  int64_t dfrom = from > h ? from : h;
  if (to <= dfrom) return 0;
  pf_array out = {.data = buf + (dfrom - from), .dtype = j->a.dtype,
                  .ndim = 1};
  out.shape[0] = (to - dfrom) / (int64_t)j->itemsize;
  pf_array_set_contiguous(&out);
  pf_window w = {.ndim = j->a.ndim, .shape = j->a.shape, .origin = NULL,
                 .offset = (dfrom - h) / (int64_t)j->itemsize};
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.workers = j->a.workers;
  o.schedule = j->a.schedule;
  o.chunk = j->a.chunk;
  o.progress = cli_progress_tick; /* Ctrl-C within a block */
  o.progress_ctx = &j->quiet;
  o.window = &w;
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_expr_fill(j->expr, &out, &o, &err);
  if (rc == 0) return 0;
  if (rc == PF_ECANCELED && cli_interrupted) {
    fail(f, CLI_INTERRUPTED, "interrupted");
  } else if (cli_is_expr_error(rc) && err.position >= 0) {
    fail(f, CLI_USAGE, "%s", err.message);
    f->kernel = f->caret = 1;
    f->position = err.position;
  } else {
    fail(f, CLI_FAILED, "%s", err.message);
  }
  return -1;
}

/* The write in flight on this rank (at most one). */
typedef struct mpi_pending {
  MPI_Request req;
  int64_t from, len;
  int active;
} mpi_pending;

/* Starts writing file bytes [from, from + len) from buf: independent
 * (MPI_File_iwrite_at), as each rank's piece is one contiguous,
 * block-aligned range -- a collective's two-phase aggregation could only
 * move it between ranks -- and nonblocking, so the next block is computed
 * meanwhile. `nth` counts this rank's nonempty writes (the test seams). */
static int start_write(mpi_job *j, int64_t from, const unsigned char *buf,
                       int64_t len, int64_t nth, mpi_pending *p,
                       mpi_failure *f) {
  if (nth == j->fail_kill) raise(SIGKILL);
  if (nth == j->fail_write) {
    fail(f, CLI_FAILED, "cannot write '%s': %s", j->a.output,
         strerror(ENOSPC));
    return -1;
  }
  int rc = MPI_File_iwrite_at(j->fh, (MPI_Offset)from, buf, (int)len,
                              MPI_BYTE, &p->req);
  if (rc != MPI_SUCCESS) {
    char why[MPI_MAX_ERROR_STRING + 16];
    mpi_reason(rc, why, sizeof why);
    fail(f, CLI_FAILED, "cannot write '%s': %s", j->a.output, why);
    return -1;
  }
  p->from = from;
  p->len = len;
  p->active = 1;
  return 0;
}

/* Waits for the write in flight, if any, then starts the page cache's
 * write-back of what it wrote (through a plain descriptor of the same file:
 * MPI-IO has no such call), so that the disk works while the ranks compute
 * and the final MPI_File_sync has little left to do. */
static int finish_write(mpi_job *j, mpi_pending *p, mpi_failure *f) {
  if (!p->active) return 0;
  p->active = 0;
  MPI_Status st;
  int rc = MPI_Wait(&p->req, &st);
  int written = 0;
  if (rc == MPI_SUCCESS) MPI_Get_count(&st, MPI_BYTE, &written);
  if (rc != MPI_SUCCESS || written != (int)p->len) {
    char why[MPI_MAX_ERROR_STRING + 16];
    if (rc == MPI_SUCCESS)
      snprintf(why, sizeof why, "wrote %d of %" PRId64 " bytes", written,
               p->len);
    else
      mpi_reason(rc, why, sizeof why);
    fail(f, CLI_FAILED, "cannot write '%s': %s", j->a.output, why);
    return -1;
  }
  if (j->wfd >= 0)
    sync_file_range(j->wfd, (off_t)p->from, (off_t)p->len,
                    SYNC_FILE_RANGE_WRITE);
  return 0;
}

/* After an element error somewhere: this rank's blocks from `from` on,
 * computed without writing, for an earlier failing element. */
static void scan_rest(mpi_job *j, int64_t from, unsigned char *buf,
                      mpi_failure *f) {
  for (int64_t b = from; b < j->hi && f->status == 0; b += j->block) {
    int64_t to = b + j->block < j->hi ? b + j->block : j->hi;
    compute_block(j, b, to, buf, f);
  }
}

/* Every round: compute this rank's next block into one buffer while the
 * other one's write completes, start writing it, agree. 0, or the agreed
 * exit status. */
static int write_slabs(mpi_job *j, mpi_failure *f) {
  unsigned char *buf[2] = {NULL, NULL};
  if (j->hi > j->lo) {
    size_t cap = (size_t)(j->block < j->hi - j->lo ? j->block : j->hi - j->lo);
    cap = (cap + 4095) / 4096 * 4096;
    buf[0] = aligned_alloc(4096, cap);
    buf[1] = aligned_alloc(4096, cap);
    if (buf[0] == NULL || buf[1] == NULL) fail(f, CLI_FAILED, "out of memory");
    /* Long double's padding bytes are never stored: zero them once, so
     * the file is the same bytes as the single-process command's. */
    memset(buf[0], 0, cap);
    memset(buf[1], 0, cap);
  }
  mpi_pending pending = {.active = 0};
  int64_t done_here = 0, nth = 0;
  for (int64_t t = 0; t < j->rounds; t++) {
    int64_t from = j->lo + t * j->block;
    int64_t to = from + j->block < j->hi ? from + j->block : j->hi;
    if (from > j->hi) from = to = j->hi;
    if (cli_interrupted) fail(f, CLI_INTERRUPTED, "interrupted");
    unsigned char *b = buf[t & 1];
    double t0 = now();
    int ok = f->status == 0 && compute_block(j, from, to, b, f) == 0;
    double t1 = now();
    j->t_compute += t1 - t0;
    if (finish_write(j, &pending, f) != 0) ok = 0;
    if (ok && to > from)
      ok = start_write(j, from, b, to - from, nth++, &pending, f) == 0;
    if (ok) {
      int64_t dfrom = from > j->header_len ? from : j->header_len;
      if (to > dfrom) done_here += (to - dfrom) / (int64_t)j->itemsize;
    }
    int64_t mine[2] = {ok ? 0 : 1, done_here}, all[2];
    double t2 = now();
    j->t_write += t2 - t1;
    MPI_Allreduce(mine, all, 2, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    j->t_agree += now() - t2;
    if (j->rank == 0 && all[0] == 0)
      cli_progress_tick(&j->progress, all[1], j->size);
    if (all[0] != 0) {
      finish_write(j, &pending, f);
      /* Which kind of failure decides: an element error is the lowest
       * failing element's, so the ranks below it finish looking. */
      int other = f->status != 0 && !f->kernel ? j->rank : j->nranks;
      int kernel = f->status != 0 && f->kernel ? j->rank : j->nranks;
      int lowest[2], local[2] = {other, kernel};
      MPI_Allreduce(local, lowest, 2, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
      if (lowest[0] == j->nranks && j->rank < lowest[1] && f->status == 0)
        scan_rest(j, to, buf[0], f);
      /* An I/O failure or an interrupt anywhere wins over element errors
       * (a single process stops its whole fill for those). */
      if (lowest[0] != j->nranks && f->kernel) f->status = 0;
      break;
    }
  }
  double t0 = now();
  finish_write(j, &pending, f);
  j->t_write += now() - t0;
  free(buf[0]);
  free(buf[1]);
  return agree(j, f);
}

/* ------------------------------------------------------------ the fill */

/* Parse and compile on every rank: the same arguments fail alike, and rank
 * 0 says so (the others are quiet). */
static int prepare(mpi_job *j, int argc, char **argv, mpi_failure *f) {
  int rc = cli_parse_fill(argc, argv, &j->a);
  if (rc != 0) {
    f->status = rc;
    f->printed = 1;
    return agree(j, f);
  }
  if (agree(j, f) != 0) return f->status;
  pf_error err;
  memset(&err, 0, sizeof err);
  rc = pf_expr_compile(&j->expr, j->a.expr, j->a.ndim, j->a.params,
                       j->a.nparams, &err);
  if (rc != 0) {
    fail(f, rc == PF_ENOMEM ? CLI_FAILED : CLI_USAGE, "%s", err.message);
    f->caret = cli_is_expr_error(rc);
    f->position = err.position;
  }
  if (agree(j, f) != 0) return f->status;
  j->itemsize = pf_dtype_size(j->a.dtype);
  pf_shape_size(j->a.ndim, j->a.shape, 1, &j->size);
  pf_npy_header h = {.dtype = j->a.dtype, .ndim = j->a.ndim};
  for (int d = 0; d < j->a.ndim; d++) h.shape[d] = j->a.shape[d];
  size_t hl = 0;
  rc = pf_npy_header_write(&h, j->header, sizeof j->header, &hl, &err);
  j->header_len = (int64_t)hl;
  if (rc == 0 &&
      j->size * (int64_t)j->itemsize > INT64_MAX - j->header_len) {
    rc = PF_EOVERFLOW;
    snprintf(err.message, sizeof err.message, "file larger than %lld bytes",
             (long long)INT64_MAX);
  }
  if (rc != 0) fail(f, CLI_USAGE, "%s", err.message);
  j->file_bytes = j->header_len + j->size * (int64_t)j->itemsize;
  return agree(j, f);
}

/* Rank 0 creates the file; everyone opens it. */
static int open_file(mpi_job *j, mpi_failure *f) {
  if (j->rank == 0) create_file(j, f);
  int bad = agree(j, f);
  if (bad != 0) {
    remove_temp(j);
    return bad;
  }
  struct {
    int64_t align;
    char tmp[PATH_MAX];
  } shared;
  if (j->rank == 0) {
    shared.align = j->align;
    memcpy(shared.tmp, j->tmp, sizeof shared.tmp);
  }
  MPI_Bcast(&shared, (int)sizeof shared, MPI_BYTE, 0, MPI_COMM_WORLD);
  j->align = shared.align;
  if (j->rank != 0) memcpy(j->tmp, shared.tmp, sizeof j->tmp);
  int rc = MPI_File_open(MPI_COMM_WORLD, j->tmp, MPI_MODE_WRONLY,
                         MPI_INFO_NULL, &j->fh);
  j->open = rc == MPI_SUCCESS;
  j->wfd = j->open ? open(j->tmp, O_RDONLY | O_CLOEXEC) : -1;
  if (!j->open) {
    char why[MPI_MAX_ERROR_STRING + 16];
    mpi_reason(rc, why, sizeof why);
    fail(f, CLI_FAILED, "cannot open the temporary file of '%s': %s",
         j->a.output, why);
  }
  int opened = 0;
  MPI_Allreduce(&j->open, &opened, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (opened != 0 && opened != j->nranks) {
    /* Some ranks have a handle, some not: no collective can close it
     * consistently. Remove the file and end the job. */
    if (j->rank == 0) {
      remove_temp(j);
      cli_error("cannot open the temporary file of '%s' on every rank",
                j->a.output);
    }
    MPI_Abort(MPI_COMM_WORLD, CLI_FAILED);
  }
  bad = agree(j, f);
  if (bad != 0) remove_temp(j);
  return bad;
}

int cli_mpi_fill(int argc, char **argv) {
  mpi_job j;
  memset(&j, 0, sizeof j);
  j.wfd = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &j.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &j.nranks);
  mpi_failure f;
  memset(&f, 0, sizeof f);
  int status = prepare(&j, argc, argv, &f);
  if (status != 0) goto done;
  int show = j.rank == 0 && (j.a.progress == 1 ||
                             (j.a.progress == -1 && isatty(STDERR_FILENO)));
  cli_progress_init(&j.progress, show, isatty(STDERR_FILENO), j.itemsize);
  cli_progress_init(&j.quiet, 0, 0, j.itemsize);
  read_fail_seam(&j);
  status = open_file(&j, &f);
  if (status != 0) goto done;
  plan_slabs(&j);
  status = write_slabs(&j, &f);
  /* Durable on every rank before the rename. */
  if (status == 0) {
    double t0 = now();
    int rc = MPI_File_sync(j.fh);
    j.t_sync = now() - t0;
    if (rc != MPI_SUCCESS) {
      char why[MPI_MAX_ERROR_STRING + 16];
      mpi_reason(rc, why, sizeof why);
      fail(&f, CLI_FAILED, "cannot write '%s': %s", j.a.output, why);
    }
    status = agree(&j, &f);
  }
  if (j.wfd >= 0) close(j.wfd);
  int rc = MPI_File_close(&j.fh);
  if (rc != MPI_SUCCESS && status == 0) {
    char why[MPI_MAX_ERROR_STRING + 16];
    mpi_reason(rc, why, sizeof why);
    fail(&f, CLI_FAILED, "cannot write '%s': %s", j.a.output, why);
  }
  if (status == 0) status = agree(&j, &f);
  MPI_Barrier(MPI_COMM_WORLD);
  if (status == 0 && j.rank == 0) publish(&j, &f);
  if (status == 0) status = agree(&j, &f);
  if (j.rank == 0) cli_progress_finish(&j.progress, status == 0);
  remove_temp(&j);
  if (j.trace)
    fprintf(stderr, "parfill-mpi: rank %d: compute %.3f s, write %.3f s, "
            "agree %.3f s, sync %.3f s\n", j.rank, j.t_compute, j.t_write,
            j.t_agree, j.t_sync);
done:
  pf_expr_free(j.expr);
  return status;
}

void cli_mpi_init(int *argc, char ***argv) {
  /* Only this thread calls MPI; the pool's threads never do. */
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  /* Rank 0 speaks for the job: the others run the same command line and
   * would say the same (--help, --version, usage errors) R times. */
  if (rank != 0) {
    cli_quiet = 1;
    if (freopen("/dev/null", "w", stdout) == NULL) fclose(stdout);
  }
}

void cli_mpi_finalize(void) {
  int finalized = 1;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}
