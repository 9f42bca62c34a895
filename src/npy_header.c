/*
 * npy_header.c -- NumPy .npy headers: written byte for byte as NumPy writes
 * them (numpy.lib.format: _write_array_header, _wrap_header), and read by a
 * strict parser that accepts what NumPy's reader accepts for the dtypes
 * parfill knows and nothing else (fuzzed: tests/fuzz/fuzz_npy.c).
 *
 * The reader never evaluates the dict: it is a small scanner over Python
 * literal syntax (strings in either quote, integers, True/False, tuples),
 * enough for the three keys; a structured descr is skipped bracket by
 * bracket and reported as unsupported once the rest is known to be well
 * formed, so a malformed header is PF_EFORMAT whatever its dtype.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

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
    buf = pf__malloc(need);
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

