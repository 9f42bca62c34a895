/*
 * npy.c -- NumPy .npy files: headers written byte for byte as NumPy writes
 * them, a strict header reader, and fills of a whole file from a kernel or an
 * expression.
 *
 * DESIGN (fills)
 * A file is never filled under its final name: a temporary file is created
 * next to it (same directory, so the final rename cannot cross filesystems),
 * its full size is reserved with fallocate (a full disk or the file size
 * limit shows up before any work), then it is written.
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
 * caller's kernel and writes it. pf_fill brings the pool, the schedules and
 * the progress calls; two things are added because a block is coarse:
 *   - every block checks a stop code, so a failure in one worker or a
 *     cancel from the progress callback stops the others within one block,
 *     not at the end of a (possibly half-the-file) chunk;
 *   - elements written are counted per block, so progress moves under the
 *     static schedule too (pf_fill counts finished chunks).
 * With one worker or one chunk the blocks run here, on the calling thread,
 * with progress checked after every block (pf_fill's serial path checks it
 * per 256 Ki *elements*, here blocks: far too rarely).
 *
 * Every failure after the temporary file exists closes and unlinks it; the
 * final name is bound with a no-replace rename (or link + unlink where the
 * filesystem lacks renameat2), so an existing file is never touched even if
 * it appeared while we worked.
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

#define MAGIC "\x93NUMPY"
#define MAGIC_LEN 6
#define ALIGN 64             /* numpy.lib.format.ARRAY_ALIGN */
#define GROWTH_DIGITS 21     /* numpy.lib.format.GROWTH_AXIS_MAX_DIGITS */
#define MAX_NESTING 64       /* of values skipped in an unsupported descr */

/* ------------------------------------------------------------ descr */

/* NumPy's dtype.str for a pf_dtype: "<f8", "|b1", ... into buf[8]. */
static int descr_of(pf_dtype dtype, char *buf) {
  unsigned size = (unsigned)pf_dtype_size(dtype);
  if (size == 0 || size > 32) return PF_EDTYPE;
  char kind;
  switch (dtype) {
    case PF_BOOL:
      kind = 'b';
      break;
    case PF_INT8: case PF_INT16: case PF_INT32: case PF_INT64:
      kind = 'i';
      break;
    case PF_UINT8: case PF_UINT16: case PF_UINT32: case PF_UINT64:
      kind = 'u';
      break;
    case PF_FLOAT16: case PF_FLOAT32: case PF_FLOAT64: case PF_LONGDOUBLE:
      kind = 'f';
      break;
    default:
      kind = 'c';
      break;
  }
  /* One-byte types have no byte order ('|'); the others are native, and we
   * only build for little-endian machines. */
  snprintf(buf, 8, "%c%c%u", size == 1 ? '|' : '<', kind, size);
  return 0;
}

/* NumPy's size rule (numpy.empty, and so numpy.load): the item size times
 * every nonzero axis length must fit in npy_intp -- a zero length does not
 * make a huge other axis acceptable: (0, 2**63 - 1) of float64 is refused.
 * pf_shape_size lets a zero length excuse any overflow, so files it accepts
 * could not be loaded; this is checked on top of it. */
static int numpy_size_ok(int ndim, const int64_t *shape, size_t itemsize) {
  int64_t bytes = (int64_t)itemsize;
  for (int d = 0; d < ndim; d++)
    if (shape[d] != 0 && __builtin_mul_overflow(bytes, shape[d], &bytes))
      return 0;
  return 1;
}

/* ------------------------------------------------------------ writing */

static void put_le(unsigned char *p, uint64_t v, int bytes) {
  for (int k = 0; k < bytes; k++) p[k] = (unsigned char)(v >> (8 * k));
}

int pf_npy_header_write(const pf_npy_header *h, void *buf, size_t capacity,
                        size_t *length, pf_error *err) {
  if (h == NULL || length == NULL || (buf == NULL && capacity > 0))
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  *length = 0;
  if (h->version < 0 || h->version > 3)
    return pf__error_set(err, PF_EINVAL, -1, "no .npy format version %d",
                         h->version);
  if (h->fortran_order)
    return pf__error_set(err, PF_EINVAL, -1,
                         "only C-order headers are written");
  char descr[8];
  if (descr_of(h->dtype, descr) != 0)
    return pf__error_set(err, PF_EDTYPE, -1, "unsupported dtype %d",
                         (int)h->dtype);
  int64_t size;
  int rc = pf_shape_size(h->ndim, h->shape, pf_dtype_size(h->dtype), &size);
  if (rc == 0 &&
      !numpy_size_ok(h->ndim, h->shape, pf_dtype_size(h->dtype)))
    rc = PF_EOVERFLOW;
  if (rc == PF_EOVERFLOW)
    return pf__error_set(err, rc, -1,
                         "array of more than %lld bytes (counting every "
                         "nonzero axis, as NumPy does)", (long long)INT64_MAX);
  if (rc != 0)
    return pf__error_set(err, PF_EINVAL, -1, "invalid shape");

  /* The dict exactly as NumPy's _write_array_header builds it: sorted keys,
   * repr() values, "', " after each, the shape's repr with the 1-tuple's
   * comma, then spare spaces so the first axis can grow in place. */
  char dict[PF_NPY_HEADER_MAX];
  int n = snprintf(dict, sizeof dict,
                   "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   descr);
  for (int d = 0; d < h->ndim; d++)
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%lld",
                  d > 0 ? ", " : "", (long long)h->shape[d]);
  n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }",
                h->ndim == 1 ? "," : "");
  if (h->ndim > 0) {
    char digits[24];
    int spare = GROWTH_DIGITS -
                snprintf(digits, sizeof digits, "%lld", (long long)h->shape[0]);
    for (; spare > 0; spare--) dict[n++] = ' ';
  }
  assert((size_t)n < sizeof dict - 1);

  /* _wrap_header: length field covers the dict, 1..64 spaces and '\n'. */
  int version = h->version;
  size_t hlen = (size_t)n + 1;
  size_t pad = ALIGN - (MAGIC_LEN + 2 + 2 + hlen) % ALIGN;
  if (version == 0) version = hlen + pad <= 0xffff ? 1 : 2;
  size_t prefix = MAGIC_LEN + 2 + (version == 1 ? 2 : 4);
  pad = ALIGN - (prefix + hlen) % ALIGN;
  size_t total = prefix + hlen + pad;
  if (version == 1 && hlen + pad > 0xffff)
    return pf__error_set(err, PF_EINVAL, -1,
                         "header too long for .npy format 1.0");
  *length = total;
  if (total > capacity)
    return pf__error_set(err, PF_EINVAL, -1,
                         "buffer of %zu bytes, the header needs %zu",
                         capacity, total);
  unsigned char *out = buf;
  memcpy(out, MAGIC, MAGIC_LEN);
  out[MAGIC_LEN] = (unsigned char)version;
  out[MAGIC_LEN + 1] = 0;
  put_le(out + MAGIC_LEN + 2, hlen + pad, version == 1 ? 2 : 4);
  memcpy(out + prefix, dict, (size_t)n);
  memset(out + prefix + n, ' ', pad);
  out[total - 1] = '\n';
  return 0;
}

/* ------------------------------------------------------------ reading */

/* A cursor over the dict text; positions reported are offsets in the
 * caller's buffer. */
typedef struct scan {
  const char *s;
  size_t pos, end, base;
  pf_error *err;
} scan;

static int bad(scan *sc, const char *what) {
  return pf__error_set(sc->err, PF_EFORMAT, (int64_t)(sc->base + sc->pos),
                       "malformed .npy header: %s at byte %zu", what,
                       sc->base + sc->pos);
}

static void skip_space(scan *sc) {
  /* Python's whitespace between tokens, including newlines inside the
   * braces and a backslash line continuation. */
  while (sc->pos < sc->end) {
    char c = sc->s[sc->pos];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f')
      sc->pos++;
    else if (c == '\\' && sc->pos + 1 < sc->end && sc->s[sc->pos + 1] == '\n')
      sc->pos += 2;
    else
      break;
  }
}

static int peek(scan *sc) {
  skip_space(sc);
  return sc->pos < sc->end ? (unsigned char)sc->s[sc->pos] : -1;
}

static int expect(scan *sc, char c, const char *what) {
  if (peek(sc) != c) return bad(sc, what);
  sc->pos++;
  return 0;
}

/* A string literal ('...' or "..."); [*start, *start + *len) is its body. */
static int scan_string(scan *sc, size_t *start, size_t *len) {
  int q = peek(sc);
  if (q != '\'' && q != '"') return bad(sc, "expected a string");
  size_t p = ++sc->pos;
  while (p < sc->end && sc->s[p] != q) {
    if (sc->s[p] == '\n' || sc->s[p] == '\0')
      return sc->pos = p, bad(sc, "unterminated string");
    p += sc->s[p] == '\\' ? 2 : 1;
  }
  if (p >= sc->end) return sc->pos = sc->end, bad(sc, "unterminated string");
  *start = sc->pos;
  *len = p - sc->pos;
  sc->pos = p + 1;
  return 0;
}

/* A non-negative decimal integer (Python 2's L suffix allowed). */
static int scan_int(scan *sc, int64_t *value) {
  if (peek(sc) == '-') return bad(sc, "negative dimension");
  size_t p = sc->pos;
  int64_t v = 0;
  while (p < sc->end && sc->s[p] >= '0' && sc->s[p] <= '9') {
    if (__builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, sc->s[p] - '0', &v))
      return bad(sc, "dimension too large");
    p++;
  }
  if (p == sc->pos) return bad(sc, "expected an integer");
  if (sc->s[sc->pos] == '0' && v != 0)
    return bad(sc, "integer with a leading zero");
  if (p < sc->end && (sc->s[p] == 'L' || sc->s[p] == 'l')) p++;
  sc->pos = p;
  *value = v;
  return 0;
}

static int is_name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

/* True / False */
static int scan_bool(scan *sc, int *value) {
  peek(sc);
  size_t p = sc->pos;
  while (p < sc->end && is_name_char((unsigned char)sc->s[p])) p++;
  size_t n = p - sc->pos;
  if (n == 4 && memcmp(sc->s + sc->pos, "True", 4) == 0)
    *value = 1;
  else if (n == 5 && memcmp(sc->s + sc->pos, "False", 5) == 0)
    *value = 0;
  else
    return bad(sc, "fortran_order is not True or False");
  sc->pos = p;
  return 0;
}

/* (d0, d1, ...): the 1-tuple needs its comma, as in Python. */
static int scan_shape(scan *sc, pf_npy_header *h) {
  int rc = expect(sc, '(', "shape is not a tuple");
  if (rc != 0) return rc;
  int ndim = 0, comma = 0;
  while (peek(sc) != ')') {
    if (ndim == PF_MAX_DIMS)
      return bad(sc, "more than 32 dimensions");
    rc = scan_int(sc, &h->shape[ndim]);
    if (rc != 0) return rc;
    ndim++;
    comma = 0;
    int c = peek(sc);
    if (c == ',') {
      sc->pos++;
      comma = 1;
    } else if (c != ')') {
      return bad(sc, "expected ',' or ')' in shape");
    }
  }
  if (ndim == 1 && !comma) return bad(sc, "shape is not a tuple");
  sc->pos++;
  h->ndim = ndim;
  return 0;
}

/* Skips one Python literal (a structured descr: lists of tuples of strings
 * and numbers), checking only that brackets match and strings end. */
static int skip_value(scan *sc) {
  char stack[MAX_NESTING];
  int depth = 0;
  do {
    int c = peek(sc);
    if (c < 0) return bad(sc, "unexpected end of header");
    if (c == '\'' || c == '"') {
      size_t start, len;
      int rc = scan_string(sc, &start, &len);
      if (rc != 0) return rc;
    } else if (c == '(' || c == '[' || c == '{') {
      if (depth == MAX_NESTING) return bad(sc, "descr nested too deeply");
      stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
      sc->pos++;
    } else if (c == ')' || c == ']' || c == '}') {
      if (depth == 0 || stack[depth - 1] != c)
        return bad(sc, "unbalanced brackets");
      depth--;
      sc->pos++;
    } else if ((c == ',' || c == ':') && depth > 0) {
      sc->pos++;
    } else if (is_name_char(c) || c == '-' || c == '+' || c == '.') {
      while (sc->pos < sc->end &&
             (is_name_char((unsigned char)sc->s[sc->pos]) ||
              strchr("-+.", sc->s[sc->pos]) != NULL))
        sc->pos++;
    } else {
      return bad(sc, "unexpected character");
    }
  } while (depth > 0);
  return 0;
}

/* The descr value: a dtype string we know, else PF_EDTYPE (reported after
 * the rest of the header is checked, through *unsupported). */
static int scan_descr(scan *sc, pf_npy_header *h, int64_t *unsupported) {
  int c = peek(sc);
  if (c != '\'' && c != '"') {
    *unsupported = (int64_t)(sc->base + sc->pos);
    return skip_value(sc); /* structured: a list of fields */
  }
  size_t start, len;
  int rc = scan_string(sc, &start, &len);
  if (rc != 0) return rc;
  char name[32];
  if (len == 0 || len >= sizeof name) {
    *unsupported = (int64_t)(sc->base + start);
    return 0;
  }
  memcpy(name, sc->s + start, len);
  name[len] = '\0';
  pf_dtype dtype;
  /* '>' is big-endian: fine for one-byte types only. */
  if (name[0] == '>') {
    if (pf_dtype_parse(name + 1, &dtype) != 0 || pf_dtype_size(dtype) != 1) {
      *unsupported = (int64_t)(sc->base + start);
      return 0;
    }
  } else if (pf_dtype_parse(name, &dtype) != 0) {
    *unsupported = (int64_t)(sc->base + start);
    return 0;
  }
  h->dtype = dtype;
  return 0;
}

static uint64_t get_le(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int k = bytes - 1; k >= 0; k--) v = v << 8 | p[k];
  return v;
}

int pf_npy_header_read(const void *buf, size_t size, pf_npy_header *h,
                       pf_error *err) {
  if (h == NULL || (buf == NULL && size > 0))
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  memset(h, 0, sizeof *h);
  const unsigned char *b = buf;
  if (size < MAGIC_LEN + 2 || memcmp(b, MAGIC, MAGIC_LEN) != 0) {
    if (size >= MAGIC_LEN + 2 || (size > 0 && memcmp(b, MAGIC, size) != 0))
      return pf__error_set(err, PF_EFORMAT, 0, "not a .npy file (no magic)");
    return pf__error_set(err, PF_EFORMAT, (int64_t)size,
                         "truncated .npy header");
  }
  int major = b[MAGIC_LEN], minor = b[MAGIC_LEN + 1];
  if (major < 1 || major > 3 || minor != 0)
    return pf__error_set(err, PF_EFORMAT, MAGIC_LEN,
                         "unsupported .npy format version %d.%d", major,
                         minor);
  size_t prefix = MAGIC_LEN + 2 + (major == 1 ? 2 : 4);
  if (size < prefix)
    return pf__error_set(err, PF_EFORMAT, (int64_t)size,
                         "truncated .npy header");
  uint64_t hlen = get_le(b + MAGIC_LEN + 2, major == 1 ? 2 : 4);
  if (hlen > PF_NPY_HEADER_READ_MAX - prefix)
    return pf__error_set(err, PF_EFORMAT, MAGIC_LEN + 2,
                         "header of %llu bytes: longer than %d",
                         (unsigned long long)hlen, PF_NPY_HEADER_READ_MAX);
  size_t total = prefix + (size_t)hlen;
  if (size < total) {
    h->data_offset = (int64_t)total;
    return pf__error_set(err, PF_EFORMAT, (int64_t)size,
                         "truncated .npy header: %zu of %zu bytes", size,
                         total);
  }

  scan sc = {.s = (const char *)b + prefix, .pos = 0, .end = (size_t)hlen,
             .base = prefix, .err = err};
  int seen_descr = 0, seen_order = 0, seen_shape = 0;
  int64_t unsupported = -1;
  int rc = expect(&sc, '{', "expected '{'");
  if (rc != 0) return rc;
  while (peek(&sc) != '}') {
    size_t key, len;
    size_t key_pos = sc.pos;
    rc = scan_string(&sc, &key, &len);
    if (rc != 0) return rc;
    rc = expect(&sc, ':', "expected ':'");
    if (rc != 0) return rc;
    const char *k = sc.s + key;
    int *seen;
    if (len == 5 && memcmp(k, "descr", 5) == 0) {
      seen = &seen_descr;
      rc = scan_descr(&sc, h, &unsupported);
    } else if (len == 13 && memcmp(k, "fortran_order", 13) == 0) {
      seen = &seen_order;
      rc = scan_bool(&sc, &h->fortran_order);
    } else if (len == 5 && memcmp(k, "shape", 5) == 0) {
      seen = &seen_shape;
      rc = scan_shape(&sc, h);
    } else {
      sc.pos = key_pos;
      return bad(&sc, "unexpected key");
    }
    if (rc != 0) return rc;
    if (*seen) {
      sc.pos = key_pos;
      return bad(&sc, "duplicate key");
    }
    *seen = 1;
    int c = peek(&sc);
    if (c == ',')
      sc.pos++;
    else if (c != '}')
      return bad(&sc, "expected ',' or '}'");
  }
  sc.pos++;
  skip_space(&sc);
  if (sc.pos != sc.end) return bad(&sc, "text after the dict");
  if (!seen_descr || !seen_order || !seen_shape)
    return pf__error_set(err, PF_EFORMAT, (int64_t)prefix,
                         "malformed .npy header: missing key '%s'",
                         !seen_descr ? "descr"
                         : !seen_order ? "fortran_order" : "shape");
  if (unsupported >= 0)
    return pf__error_set(err, PF_EDTYPE, unsupported,
                         "the .npy file's dtype is not supported by parfill "
                         "(only native-order bool, integer, float and "
                         "complex)");
  int64_t elements;
  if (pf_shape_size(h->ndim, h->shape, pf_dtype_size(h->dtype), &elements) !=
          0 ||
      !numpy_size_ok(h->ndim, h->shape, pf_dtype_size(h->dtype)) ||
      (int64_t)total > INT64_MAX - elements * (int64_t)pf_dtype_size(h->dtype))
    return pf__error_set(err, PF_EFORMAT, (int64_t)prefix,
                         "malformed .npy header: data larger than %lld bytes",
                         (long long)INT64_MAX);
  h->version = major;
  h->data_offset = (int64_t)total;
  return 0;
}

/* pread all of [offset, offset+n), or fewer bytes at end of file. */
static ssize_t read_at(int fd, void *buf, size_t n, off_t offset) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, (char *)buf + done, n - done, offset + (off_t)done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    done += (size_t)r;
  }
  return (ssize_t)done;
}

int pf_npy_header_read_fd(int fd, pf_npy_header *h, pf_error *err) {
  if (h == NULL) return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  char first[PF_NPY_HEADER_MAX];
  char *buf = first;
  ssize_t got = read_at(fd, first, sizeof first, 0);
  if (got < 0) return pf__error_sys(err, PF_EIO, errno, "cannot read");
  int rc = pf_npy_header_read(first, (size_t)got, h, err);
  if (rc == PF_EFORMAT && h->data_offset > got && got == sizeof first) {
    /* A longer header than most: read all of it. */
    size_t need = (size_t)h->data_offset;
    buf = malloc(need);
    if (buf == NULL) return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
    got = read_at(fd, buf, need, 0);
    if (got < 0) {
      rc = pf__error_sys(err, PF_EIO, errno, "cannot read");
      goto done;
    }
    rc = pf_npy_header_read(buf, (size_t)got, h, err);
  }
  if (rc != 0) goto done;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = pf__error_sys(err, PF_EIO, errno, "cannot stat");
    goto done;
  }
  int64_t elements;
  pf_shape_size(h->ndim, h->shape, 1, &elements);
  int64_t bytes = elements * (int64_t)pf_dtype_size(h->dtype);
  if ((int64_t)st.st_size - h->data_offset < bytes)
    rc = pf__error_set(err, PF_EFORMAT, -1,
                       "the .npy file has %lld bytes, its header promises "
                       "%lld", (long long)st.st_size,
                       (long long)(h->data_offset + bytes));
done:
  if (buf != first) free(buf);
  return rc;
}

/* ------------------------------------------------------------ fills */

/* Direct I/O wants buffers, offsets and lengths aligned to the device's
 * logical block size; 4096 covers every common device. */
#define DIO_ALIGN 4096
#define BLOCK ((int64_t)PF_NPY_BLOCK_BYTES)

/* An errno as a code: a full disk is PF_ENOSPC, anything else PF_EIO. */
static int io_code(int e) {
  return e == ENOSPC || e == EDQUOT ? PF_ENOSPC : PF_EIO;
}

/* A worker's block buffer (allocated by the worker on its first block, so it
 * is local to its core) and, for page-cache writes, the bytes it wrote that
 * the kernel has not yet been asked to write back. */
typedef struct npy_worker {
  char *buffer;
  int64_t unsynced_start, unsynced_end;
} npy_worker;

/* Page-cache writeback is started per worker every this many bytes. */
#define WRITEBACK_BYTES (8 << 20)

typedef struct npy_job {
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
  _Atomic int stop;        /* first failure or cancel code; 0 while going */
  _Atomic int io_errno;    /* errno of the first failed write */
} npy_job;

/* Records the first failure; every worker checks it before each block. */
static int job_fail(npy_job *job, int rc) {
  int expected = 0;
  atomic_compare_exchange_strong(&job->stop, &expected, rc);
  return rc;
}

static int job_io_fail(npy_job *job, int e) {
  int none = 0;
  atomic_compare_exchange_strong(&job->io_errno, &none, e);
  return job_fail(job, io_code(e));
}

/* pwrite all of [offset, offset+n); 0 or an errno, *done bytes written. */
static int write_at(int fd, const char *p, int64_t n, int64_t offset,
                    int64_t *done) {
  *done = 0;
  while (*done < n) {
    ssize_t w = pwrite(fd, p + *done, (size_t)(n - *done),
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
static int write_range(npy_job *job, npy_worker *w, const char *p, int64_t n,
                       int64_t offset) {
  int64_t done;
  if (atomic_load_explicit(&job->direct, memory_order_relaxed)) {
    int e = write_at(job->dfd, p, n / DIO_ALIGN * DIO_ALIGN, offset, &done);
    if (e == EINVAL)
      atomic_store_explicit(&job->direct, 0, memory_order_relaxed);
    else if (e != 0)
      return job_io_fail(job, e);
    p += done;
    n -= done;
    offset += done;
  }
  if (n == 0) return 0;
  int e = write_at(job->fd, p, n, offset, &done);
  if (e != 0) return job_io_fail(job, e);
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

/* The pf_kernel_fn of the block space: blocks [start, start+count), one
 * status byte each in `out`. Block b is file bytes [b*BLOCK, (b+1)*BLOCK):
 * aligned for direct I/O, and (the header's length being a multiple of 64)
 * on element boundaries; block 0 begins with the header. */
static int write_blocks(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *handle) {
  npy_job *job = ctx;
  const int worker = pf_fill_worker_id(handle);
  assert(worker >= 0 && worker < job->workers);
  pf_fill_worker inner;
  pf__fill_worker_mapped(&inner, handle, element_to_block, block_to_element,
                         job);
  npy_worker *w = &job->w[worker];
  if (w->buffer == NULL) {
    w->buffer = aligned_alloc(DIO_ALIGN, (size_t)BLOCK);
    if (w->buffer == NULL) return job_fail(job, PF_ENOMEM);
  }
  for (int64_t b = start; b < start + count; b++) {
    int rc = atomic_load_explicit(&job->stop, memory_order_relaxed);
    if (rc != 0) return rc;
    int64_t lo = b * BLOCK;
    int64_t hi = job->file_bytes - lo < BLOCK ? job->file_bytes : lo + BLOCK;
    int64_t data = lo < job->header_len ? job->header_len : lo;
    if (lo < job->header_len)
      memcpy(w->buffer, job->header, (size_t)job->header_len);
    int64_t n = (hi - data) / (int64_t)job->itemsize;
    if (n > 0) {
      rc = job->kernel(job->ctx, (data - job->header_len) /
                                     (int64_t)job->itemsize,
                       n, w->buffer + (data - lo), &inner);
      if (rc != 0) return job_fail(job, rc);
    }
    rc = write_range(job, w, w->buffer, hi - lo, lo);
    if (rc != 0) return rc;
    atomic_fetch_add_explicit(&job->written, n, memory_order_relaxed);
    ((unsigned char *)out)[b - start] = 1;
  }
  return 0;
}

/* pf_fill's progress hook: reports elements, and turns a cancel into a stop
 * code the workers see at their next block. */
static int job_progress(void *ctx, int64_t done, int64_t total) {
  npy_job *job = ctx;
  (void)done;
  (void)total;
  int rc = job->user->progress(job->user->progress_ctx,
                               atomic_load(&job->written), job->size);
  if (rc != 0) job_fail(job, rc);
  return rc;
}

/* The blocks on the calling thread, progress after each. */
static int run_serial(npy_job *job, unsigned char *status, int64_t nblocks) {
  const pf_fill_options *o = job->user;
  double interval = o->progress_interval > 0 ? o->progress_interval : 0.1;
  double next = pf__now() + interval;
  pf_fill_worker alone;
  pf__fill_worker_detached(&alone, 0);
  for (int64_t b = 0; b < nblocks; b++) {
    int rc = write_blocks(job, b, 1, status + b, &alone);
    if (rc != 0) return rc;
    if (o->progress != NULL && pf__now() >= next) {
      rc = job_progress(job, 0, 0);
      if (rc != 0) return rc;
      next = pf__now() + interval;
    }
  }
  return o->progress != NULL ? job_progress(job, 0, 0) : 0;
}

/* Computes and writes every block of the file, header included. */
static int fill_blocks(npy_job *job, pf_error *err) {
  int64_t nblocks = (job->file_bytes + BLOCK - 1) / BLOCK;
  int64_t per_block = BLOCK / (int64_t)job->itemsize; /* elements */
  pf_fill_options o = *job->user;
  if (o.chunk > 0) o.chunk = o.chunk / per_block + (o.chunk % per_block != 0);
  o.progress = job->user->progress != NULL ? job_progress : NULL;
  o.progress_ctx = job;
  o.release = NULL; /* the blocks' ctx is this job, on our stack */
  pf_pool *pool = o.pool != NULL ? o.pool : pf_pool_default();
  job->workers = pool != NULL ? pf_fill_workers(&o, nblocks) : 1;
  int64_t chunk = o.chunk > 0 ? o.chunk
                              : pf__auto_chunk(o.schedule, nblocks,
                                               job->workers);
  int serial = job->workers == 1 || chunk >= nblocks;
  if (serial) job->workers = 1;
  unsigned char *status = calloc((size_t)nblocks, 1);
  job->w = calloc((size_t)job->workers, sizeof *job->w);
  int rc;
  if (status == NULL || job->w == NULL) {
    rc = pf__error_set(err, PF_ENOMEM, -1, "out of memory");
    goto done;
  }
  if (serial) {
    rc = run_serial(job, status, nblocks);
  } else {
    pf_array blocks = {.data = status, .dtype = PF_UINT8, .ndim = 1,
                       .shape = {nblocks}};
    pf_array_set_contiguous(&blocks);
    rc = pf_fill(&blocks, write_blocks, job, &o, err);
  }
done:
  if (job->w != NULL)
    for (int w = 0; w < job->workers; w++) free(job->w[w].buffer);
  free(job->w);
  free(status);
  return rc;
}

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
  t->name = malloc(t->cap);
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
  if (renameat2(AT_FDCWD, t->name, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
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

int pf_npy_fill(const char *path, pf_dtype dtype, int ndim,
                const int64_t *shape, pf_kernel_fn kernel, void *ctx,
                const pf_fill_options *options, unsigned flags,
                pf_error *err) {
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  const pf_fill_options *o = options != NULL ? options : &defaults;
  if (path == NULL || kernel == NULL || path[0] == '\0' ||
      (flags & ~(PF_NPY_FORCE | PF_NPY_BUFFERED | PF_NPY_NAMED_TEMP)) != 0 ||
      o->chunk < 0 || o->workers < 0 ||
      (unsigned)o->schedule > PF_SCHEDULE_GUIDED)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (path[strlen(path) - 1] == '/')
    return pf__error_set(err, PF_EINVAL, -1, "'%s' names a directory", path);
  pf_npy_header h = {.dtype = dtype, .ndim = ndim};
  if (ndim < 0 || ndim > PF_MAX_DIMS || (ndim > 0 && shape == NULL))
    return pf__error_set(err, PF_EINVAL, -1, "invalid shape");
  for (int d = 0; d < ndim; d++) h.shape[d] = shape[d];
  unsigned char header[PF_NPY_HEADER_MAX];
  size_t header_len;
  int rc = pf_npy_header_write(&h, header, sizeof header, &header_len, err);
  if (rc != 0) return rc;
  int64_t size;
  pf_shape_size(ndim, shape, 1, &size);
  int64_t data_bytes = size * (int64_t)pf_dtype_size(dtype);
  if (data_bytes > INT64_MAX - (int64_t)header_len)
    return pf__error_set(err, PF_EOVERFLOW, -1, "file larger than %lld bytes",
                         (long long)INT64_MAX);

  /* Fail before any work when the name is taken (checked again, atomically,
   * by the final no-replace link or rename) or could never be bound. */
  rc = check_name(path, err);
  if (rc != 0) return rc;
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!(flags & PF_NPY_FORCE))
      return pf__error_set(err, PF_EEXIST, -1, "'%s' exists", path);
    /* The rename would replace the name itself: a device (/dev/null), a
     * directory or a symlink would be swapped for a file, not written to. */
    if (!S_ISREG(st.st_mode))
      return pf__error_set(err, PF_EEXIST, -1,
                           "'%s' exists and is not a regular file (only "
                           "regular files are replaced)", path);
  }

  npy_temp t;
  int dfd = -1;
  rc = temp_create(&t, path, flags, err);
  if (rc != 0) goto fail;

  int64_t file_bytes = (int64_t)header_len + data_bytes;
  int e;
  do e = fallocate(t.fd, 0, 0, (off_t)file_bytes) == 0 ? 0 : errno;
  while (e == EINTR);
  if (e == EOPNOTSUPP || e == ENOSYS) {
    /* No reservation on this filesystem: a full disk then shows up as a
     * failed write during the fill instead. */
    e = ftruncate(t.fd, (off_t)file_bytes) == 0 ? 0 : errno;
  }
  if (e != 0) {
    rc = pf__error_sys(err, io_code(e), e,
                       "cannot reserve %lld bytes for '%s'",
                       (long long)file_bytes, path);
    goto fail;
  }
  if (!(flags & PF_NPY_BUFFERED))
    dfd = open_direct(t.named ? t.name : t.proc, t.fd);

  npy_job job = {.fd = t.fd, .dfd = dfd, .kernel = kernel, .ctx = ctx,
                 .itemsize = pf_dtype_size(dtype), .size = size,
                 .header = header, .header_len = (int64_t)header_len,
                 .file_bytes = file_bytes, .user = o};
  atomic_init(&job.direct, dfd >= 0);
  atomic_init(&job.written, 0);
  atomic_init(&job.stop, 0);
  atomic_init(&job.io_errno, 0);
  rc = fill_blocks(&job, err);
  if (rc != 0) {
    e = atomic_load(&job.io_errno);
    if (e != 0)
      pf__error_sys(err, io_code(e), e, "cannot write '%s'", path);
    else if (err != NULL && err->code != rc)
      pf__error_set(err, rc, -1, NULL);
    goto fail;
  }
  if (dfd >= 0) {
    close(dfd);
    dfd = -1;
  }
  if (fsync(t.fd) != 0) {
    rc = pf__error_sys(err, io_code(errno), errno, "cannot write '%s'", path);
    goto fail;
  }
  /* Published while still open: an unnamed file is linked through its
   * descriptor. Write errors were all reported by fsync. */
  if (temp_publish(&t, path, flags) != 0) {
    e = errno;
    rc = e == EEXIST ? pf__error_set(err, PF_EEXIST, -1, "'%s' exists", path)
                     : pf__error_sys(err, PF_EIO, e, "cannot create '%s'",
                                     path);
    goto fail;
  }
  sync_dir(path);
  temp_discard(&t);
  return 0;

fail:
  if (dfd >= 0) close(dfd);
  temp_discard(&t);
  return rc;
}

/* ------------------------------------------------------------ expressions */

typedef struct expr_job {
  const pf_expr *expr;
  const int64_t *shape;
  pf_dtype dtype;
  _Atomic int failed; /* set by the first worker to fail: it owns `err` */
  pf_error err;
} expr_job;

static int expr_block(void *ctx, int64_t start, int64_t count, void *out,
                      pf_fill_worker *worker) {
  expr_job *job = ctx;
  (void)worker;
  pf_error e;
  int rc = pf__expr_eval_block(job->expr, job->shape, job->dtype, start,
                               count, out, &e);
  if (rc != 0) {
    int none = 0;
    if (atomic_compare_exchange_strong(&job->failed, &none, 1)) job->err = e;
  }
  return rc;
}

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
  expr_job job = {.expr = expr, .shape = shape, .dtype = dtype};
  atomic_init(&job.failed, 0);
  int rc = pf_npy_fill(path, dtype, ndim, shape, expr_block, &job, options,
                       flags, err);
  /* The pool's workers have all returned: job.err is settled. */
  if (rc != 0 && atomic_load(&job.failed) && rc == job.err.code &&
      err != NULL)
    *err = job.err;
  return rc;
}
