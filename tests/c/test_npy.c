/*
 * test_npy.c -- .npy headers and file fills (npy.c).
 *
 * Headers: known answers taken from NumPy's write_array_header_1_0 / _2_0
 * (tests/python/test_cli.py compares many more shapes and dtypes byte for
 * byte with NumPy itself); write/read round trips over random shapes,
 * dtypes and versions; what NumPy's reader also accepts; a list of malformed
 * headers, every truncation and every one-byte mutation of a valid header,
 * each of which must give PF_EFORMAT or PF_EDTYPE (or parse), never a crash
 * (these tests also run under ASan+UBSan, and fuzz_npy.c fuzzes the reader).
 *
 * Fills: files written with a C kernel and with an expression are read back
 * and compared element by element for every schedule and several worker
 * counts and chunk sizes, across block boundaries; then every failure --
 * existing file, kernel error, cancel, missing directory, file size limit,
 * failed writes, fsync and renames (output_file.c's system-call seam) -- must
 * leave the directory exactly as it was.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_test.h"

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x2545f4914f6cdd1du;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* The header NumPy writes: prefix, dict text, spaces, '\n', `total` bytes. */
static size_t numpy_header(unsigned char *out, int version, const char *dict,
                           size_t total) {
  size_t prefix = version == 1 ? 10 : 12;
  memcpy(out, "\x93NUMPY", 6);
  out[6] = (unsigned char)version;
  out[7] = 0;
  size_t hlen = total - prefix;
  out[8] = (unsigned char)hlen;
  out[9] = (unsigned char)(hlen >> 8);
  if (version != 1) out[10] = out[11] = 0;
  memcpy(out + prefix, dict, strlen(dict));
  memset(out + prefix + strlen(dict), ' ', total - prefix - strlen(dict) - 1);
  out[total - 1] = '\n';
  return total;
}

static void write_ok(const pf_npy_header *h, unsigned char *buf,
                     size_t *len) {
  pf_error err;
  int rc = pf_npy_header_write(h, buf, PF_NPY_HEADER_MAX, len, &err);
  if (rc != 0) fail_msg("pf_npy_header_write: %s", err.message);
}

static int read_rc(const char *text, pf_npy_header *h) {
  /* A v1 header around `text` (unpadded): the reader must not care. */
  unsigned char buf[4096];
  size_t n = strlen(text);
  assert_true(n + 10 <= sizeof buf);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)n;
  buf[9] = (unsigned char)(n >> 8);
  memcpy(buf + 10, text, n);
  pf_error err;
  pf_npy_header tmp;
  int rc = pf_npy_header_read(buf, n + 10, h != NULL ? h : &tmp, &err);
  if (rc != 0) {
    assert_int_equal(err.code, rc);
    assert_true(err.message[0] != '\0');
  }
  return rc;
}

/* A fresh empty directory under /tmp; removed by remove_dir. */
static char *make_dir(void) {
  char *dir = strdup("/tmp/pf-test-npy-XXXXXX");
  assert_non_null(dir);
  assert_non_null(mkdtemp(dir));
  return dir;
}

static void remove_dir(char *dir) {
  pf_test_remove_dir(dir);
  free(dir);
}

/* ------------------------------------------------------------ headers */

static void test_header_known_answers(void **state) {
  (void)state;
  static const struct {
    pf_dtype dtype;
    int ndim;
    int64_t shape[4];
    const char *dict;
  } cases[] = {
      {PF_FLOAT64, 2, {2, 3},
       "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"},
      {PF_BOOL, 1, {5}, "{'descr': '|b1', 'fortran_order': False, "
                        "'shape': (5,), }"},
      {PF_INT8, 0, {0}, "{'descr': '|i1', 'fortran_order': False, "
                        "'shape': (), }"},
      {PF_COMPLEX128, 2, {0, 5}, "{'descr': '<c16', 'fortran_order': False, "
                                 "'shape': (0, 5), }"},
      {PF_FLOAT32, 2, {20000, 20000},
       "{'descr': '<f4', 'fortran_order': False, 'shape': (20000, 20000), }"},
      {PF_LONGDOUBLE, 4, {1, 2, 3, 4},
       "{'descr': '<f16', 'fortran_order': False, 'shape': (1, 2, 3, 4), }"},
      {PF_UINT16, 1, {7}, "{'descr': '<u2', 'fortran_order': False, "
                          "'shape': (7,), }"},
  };
  for (size_t c = 0; c < PF_ARRAY_LEN(cases); c++) {
    pf_npy_header h = {.dtype = cases[c].dtype, .ndim = cases[c].ndim};
    memcpy(h.shape, cases[c].shape, sizeof cases[c].shape);
    unsigned char got[PF_NPY_HEADER_MAX], want[PF_NPY_HEADER_MAX];
    size_t len;
    write_ok(&h, got, &len);
    size_t want_len = numpy_header(want, 1, cases[c].dict, 128);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
  }
  /* Version 2.0, as write_array_header_2_0 writes it. */
  pf_npy_header h = {.version = 2, .dtype = PF_FLOAT64, .ndim = 2,
                     .shape = {2, 3}};
  unsigned char got[PF_NPY_HEADER_MAX], want[PF_NPY_HEADER_MAX];
  size_t len;
  write_ok(&h, got, &len);
  size_t want_len = numpy_header(
      want, 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
      128);
  assert_int_equal(len, want_len);
  assert_memory_equal(got, want, len);
}

static void test_header_round_trip(void **state) {
  (void)state;
  for (int round = 0; round < 20000; round++) {
    pf_npy_header h = {.version = (int)(rng_next() % 4),
                       .dtype = (pf_dtype)(rng_next() % PF_DTYPE_COUNT),
                       .ndim = (int)(rng_next() % (PF_MAX_DIMS + 1))};
    int has_zero = rng_next() % 4 == 0;
    int64_t budget = INT64_MAX / 64;
    for (int d = 0; d < h.ndim; d++) {
      int64_t v;
      switch (rng_next() % 4) {
        case 0: v = (int64_t)(rng_next() % 3); break;
        case 1: v = (int64_t)(rng_next() % 100000); break;
        default: v = (int64_t)(rng_next() % 8); break;
      }
      /* A zero axis excuses no other (NumPy's rule): the nonzero ones
       * still multiply within the budget, however large they are. */
      if (has_zero && d == 0) v = 0;
      if (has_zero && d > 0 && rng_next() % 2) v = (int64_t)(rng_next() >> 1);
      if (v > 1 && budget / v < 1) v = budget > 0 ? budget : 1;
      if (v > 0) budget /= v;
      h.shape[d] = v;
    }
    unsigned char buf[PF_NPY_HEADER_MAX];
    size_t len;
    write_ok(&h, buf, &len);
    assert_int_equal(len % 64, 0);
    assert_int_equal(buf[len - 1], '\n');
    pf_npy_header back;
    pf_error err;
    int rc = pf_npy_header_read(buf, len, &back, &err);
    if (rc != 0) fail_msg("round %d: %s", round, err.message);
    assert_int_equal(back.version, h.version == 0 ? 1 : h.version);
    assert_int_equal(back.dtype, h.dtype);
    assert_int_equal(back.ndim, h.ndim);
    assert_int_equal(back.fortran_order, 0);
    assert_int_equal(back.data_offset, (int64_t)len);
    assert_memory_equal(back.shape, h.shape, sizeof(int64_t) * (size_t)h.ndim);
    /* Trailing data after the header is not the reader's business. */
    assert_int_equal(pf_npy_header_read(buf, sizeof buf, &back, NULL), 0);
  }
}

static void test_header_longest(void **state) {
  (void)state;
  /* 32 axes of 19 digits: no shape NumPy can load (a zero axis excuses
   * nothing), so refused both ways -- but the writer's buffer would hold it
   * and the reader parses it before refusing. */
  pf_npy_header h = {.dtype = PF_BOOL, .ndim = PF_MAX_DIMS};
  h.shape[0] = 0;
  for (int d = 1; d < PF_MAX_DIMS; d++) h.shape[d] = INT64_MAX;
  unsigned char buf[PF_NPY_HEADER_MAX];
  size_t len;
  pf_error err;
  assert_int_equal(pf_npy_header_write(&h, buf, sizeof buf, &len, &err),
                   PF_EOVERFLOW);
  char dict[PF_NPY_HEADER_MAX];
  int n = snprintf(dict, sizeof dict,
                   "{'descr': '|b1', 'fortran_order': False, 'shape': (0");
  for (int d = 1; d < PF_MAX_DIMS; d++)
    n += snprintf(dict + n, sizeof dict - (size_t)n, ", %lld",
                  (long long)INT64_MAX);
  snprintf(dict + n, sizeof dict - (size_t)n, "), }");
  assert_true(strlen(dict) + 10 + 22 < PF_NPY_HEADER_MAX);
  assert_int_equal(read_rc(dict, NULL), PF_EFORMAT);
  /* The longest loadable one: 32 axes, one of INT64_MAX bools. */
  for (int d = 0; d < PF_MAX_DIMS; d++)
    h.shape[d] = d == 5 ? INT64_MAX / 2 : 1;
  write_ok(&h, buf, &len);
  assert_true(len <= PF_NPY_HEADER_MAX);
  pf_npy_header back;
  assert_int_equal(pf_npy_header_read(buf, len, &back, NULL), 0);
  assert_int_equal(back.shape[5], INT64_MAX / 2);
}

static void test_header_write_errors(void **state) {
  (void)state;
  unsigned char buf[PF_NPY_HEADER_MAX];
  size_t len;
  pf_error err;
  pf_npy_header h = {.dtype = PF_FLOAT64, .ndim = 1, .shape = {10}};
  assert_int_equal(pf_npy_header_write(&h, buf, 100, &len, &err), PF_EINVAL);
  assert_int_equal(len, 128); /* says what it needs */
  assert_int_equal(pf_npy_header_write(&h, buf, 128, &len, &err), 0);
  assert_int_equal(pf_npy_header_write(NULL, buf, 128, &len, &err),
                   PF_EINVAL);
  assert_int_equal(pf_npy_header_write(&h, buf, 128, NULL, &err), PF_EINVAL);
  pf_npy_header bad = h;
  bad.version = 4;
  assert_int_equal(pf_npy_header_write(&bad, buf, sizeof buf, &len, &err),
                   PF_EINVAL);
  bad = h;
  bad.fortran_order = 1;
  assert_int_equal(pf_npy_header_write(&bad, buf, sizeof buf, &len, &err),
                   PF_EINVAL);
  bad = h;
  bad.dtype = PF_DTYPE_COUNT;
  assert_int_equal(pf_npy_header_write(&bad, buf, sizeof buf, &len, &err),
                   PF_EDTYPE);
  bad = h;
  bad.shape[0] = -1;
  assert_int_equal(pf_npy_header_write(&bad, buf, sizeof buf, &len, &err),
                   PF_EINVAL);
  bad = h;
  bad.ndim = PF_MAX_DIMS + 1;
  assert_int_equal(pf_npy_header_write(&bad, buf, sizeof buf, &len, &err),
                   PF_EINVAL);
  bad = h;
  bad.ndim = 2;
  bad.shape[0] = bad.shape[1] = INT64_MAX / 4;
  assert_int_equal(pf_npy_header_write(&bad, buf, sizeof buf, &len, &err),
                   PF_EOVERFLOW);
}

/* NumPy's size rule (numpy.empty): item size times every nonzero axis
 * within INT64_MAX, a zero axis excusing nothing -- for writing and reading
 * alike, so parfill neither writes nor accepts what numpy.load refuses. */
static void test_header_numpy_size_rule(void **state) {
  (void)state;
  static const struct {
    pf_dtype dtype;
    int ndim;
    int64_t shape[3];
    int ok;
  } cases[] = {
      {PF_UINT8, 2, {0, INT64_MAX}, 1},      /* numpy.empty accepts it */
      {PF_FLOAT64, 2, {0, INT64_MAX}, 0},    /* 8 * (2**63 - 1) */
      {PF_FLOAT64, 2, {INT64_MAX, 0}, 0},
      {PF_UINT8, 3, {0, INT64_C(1) << 60, 16}, 0},
      {PF_UINT8, 3, {0, INT64_C(1) << 59, 15}, 1},
      {PF_FLOAT64, 2, {0, INT64_C(1) << 59}, 1},
      {PF_FLOAT64, 2, {0, INT64_C(1) << 60}, 0},
      {PF_COMPLEX128, 3, {0, 0, INT64_C(1) << 58}, 1},
      {PF_COMPLEX128, 3, {0, 0, INT64_C(1) << 59}, 0},
  };
  for (size_t c = 0; c < PF_ARRAY_LEN(cases); c++) {
    unsigned char buf[PF_NPY_HEADER_MAX];
    size_t len;
    pf_error err;
    pf_npy_header h = {.dtype = cases[c].dtype, .ndim = cases[c].ndim};
    memcpy(h.shape, cases[c].shape, sizeof cases[c].shape);
    int rc = pf_npy_header_write(&h, buf, sizeof buf, &len, &err);
    if (rc != (cases[c].ok ? 0 : PF_EOVERFLOW))
      fail_msg("case %zu: %d, %s", c, rc, err.message);
    /* The same header, written by hand where we refuse to: read. */
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': "
                     "False, 'shape': (", pf_dtype_name(cases[c].dtype)
                     [0] == 'u' ? "|u1" : cases[c].dtype == PF_FLOAT64
                     ? "<f8" : "<c16");
    for (int d = 0; d < cases[c].ndim; d++)
      n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld, ",
                    (long long)cases[c].shape[d]);
    snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    pf_npy_header r;
    rc = read_rc(dict, &r);

    assert_int_equal(rc, cases[c].ok ? 0 : PF_EFORMAT);
    if (cases[c].ok) {
      assert_int_equal(r.dtype, cases[c].dtype);
      assert_int_equal(r.shape[1], cases[c].shape[1]);
    }
  }
}

/* What NumPy's reader accepts (ast.literal_eval) beyond what it writes. */
static void test_header_read_variants(void **state) {
  (void)state;
  pf_npy_header h;
  assert_int_equal(read_rc("{\"shape\": (3,4), \"fortran_order\": True, "
                           "\"descr\": \"<i4\"}\n", &h), 0);
  assert_int_equal(h.dtype, PF_INT32);
  assert_int_equal(h.fortran_order, 1);
  assert_int_equal(h.ndim, 2);
  assert_int_equal(h.shape[0], 3);
  assert_int_equal(h.shape[1], 4);
  assert_int_equal(read_rc("{'descr':'|u1','fortran_order':False,"
                           "'shape':(7,),}", &h), 0);
  assert_int_equal(h.dtype, PF_UINT8);
  assert_int_equal(h.ndim, 1);
  assert_int_equal(read_rc("{ 'descr' : '<f2' ,\n 'fortran_order' : False ,"
                           "\t'shape' : ( 2 , 3 , ) }  \n", &h), 0);
  assert_int_equal(h.dtype, PF_FLOAT16);
  assert_int_equal(read_rc("{'descr': '<c8', 'fortran_order': False, "
                           "'shape': (2L, 3L), }", &h), 0); /* Python 2 */
  assert_int_equal(h.dtype, PF_COMPLEX64);
  assert_int_equal(h.shape[1], 3);
  assert_int_equal(read_rc("{'descr': '>i1', 'fortran_order': False, "
                           "'shape': (), }", &h), 0);
  assert_int_equal(h.dtype, PF_INT8);
  assert_int_equal(h.ndim, 0);
  assert_int_equal(read_rc("{'descr': '|b1', 'fortran_order': False, "
                           "'shape': (0,), }", &h), 0);
  assert_int_equal(h.dtype, PF_BOOL);
  assert_int_equal(h.shape[0], 0);
}

static void test_header_unsupported_dtypes(void **state) {
  (void)state;
  static const char *const cases[] = {
      "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '|S5', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': [('a', '<f8'), ('b', '<i4', (2, 3))], "
      "'fortran_order': False, 'shape': (2,), }",
      "{'descr': [('', '|V4')], 'fortran_order': False, 'shape': (), }",
  };
  for (size_t c = 0; c < PF_ARRAY_LEN(cases); c++)
    if (read_rc(cases[c], NULL) != PF_EDTYPE)
      fail_msg("not PF_EDTYPE: %s", cases[c]);
}

static void test_header_malformed(void **state) {
  (void)state;
  static const char *const cases[] = {
      "",
      "{",
      "}",
      "[]",
      "{}",
      "{'descr': '<f8', 'fortran_order': False}",
      "{'descr': '<f8', 'shape': (2,)}",
      "{'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",
      "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, "
      "'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': 2}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': [2]}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2.5,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (02,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2 3)}",
      "{'descr': '<f8', 'fortran_order': False, "
      "'shape': (99999999999999999999,)}",
      "{'descr': '<f8', 'fortran_order': False, "
      "'shape': (4611686018427387904, 4)}",
      "{'descr': '<f8', 'fortran_order': 0, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': false, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': Falsey, 'shape': (2,)}",
      "{'descr': <f8, 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8, 'fortran_order': False, 'shape': (2,)}",
      "{'descr\": '<f8', 'fortran_order': False, 'shape': (2,)}",
      "{'descr' '<f8', 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
      "{'descr': [('a', '<f8'), 'fortran_order': False, 'shape': (2,)}",
      "{'descr': [('a', '<f8']), 'fortran_order': False, 'shape': (2,)}",
      "{'descr': [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]]]], 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, "
      "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
      "1, 1, 1, 1)}",
  };
  for (size_t c = 0; c < PF_ARRAY_LEN(cases); c++)
    if (read_rc(cases[c], NULL) != PF_EFORMAT)
      fail_msg("case %zu not PF_EFORMAT: %s", c, cases[c]);
}

static void test_header_prefix_errors(void **state) {
  (void)state;
  pf_npy_header h;
  pf_error err;
  unsigned char buf[PF_NPY_HEADER_MAX];
  size_t len;
  pf_npy_header w = {.dtype = PF_FLOAT64, .ndim = 1, .shape = {3}};
  write_ok(&w, buf, &len);
  /* Every truncation: PF_EFORMAT; once the length field is in, the bytes
   * needed. */
  for (size_t n = 0; n < len; n++) {
    assert_int_equal(pf_npy_header_read(buf, n, &h, &err), PF_EFORMAT);
    assert_int_equal(h.data_offset, n >= 10 ? (int64_t)len : 0);
  }
  unsigned char bad[PF_NPY_HEADER_MAX];
  memcpy(bad, buf, len);
  bad[0] = 'x';
  assert_int_equal(pf_npy_header_read(bad, len, &h, &err), PF_EFORMAT);
  assert_non_null(strstr(err.message, "not a .npy file"));
  memcpy(bad, buf, len);
  bad[6] = 4;
  assert_int_equal(pf_npy_header_read(bad, len, &h, &err), PF_EFORMAT);
  memcpy(bad, buf, len);
  bad[7] = 1;
  assert_int_equal(pf_npy_header_read(bad, len, &h, &err), PF_EFORMAT);
  /* A v2 length field claiming 4 GiB. */
  memcpy(bad, "\x93NUMPY\x02\x00\xff\xff\xff\xff", 12);
  assert_int_equal(pf_npy_header_read(bad, len, &h, &err), PF_EFORMAT);
  assert_int_equal(pf_npy_header_read(NULL, 0, &h, &err), PF_EFORMAT);
  assert_int_equal(pf_npy_header_read(buf, len, NULL, &err), PF_EINVAL);
  /* A NUL after the dict (Python: "source code cannot contain null
   * bytes"). */
  memcpy(bad, buf, len);
  bad[len - 2] = '\0';
  assert_int_equal(pf_npy_header_read(bad, len, &h, &err), PF_EFORMAT);
  /* Error positions point into the buffer. */
  assert_int_equal(read_rc("{'descr': '<f8', 'fortran_order': Nope, "
                           "'shape': (2,)}", NULL), PF_EFORMAT);
}

/* Every one-byte change of a valid header: an answer, never a crash. */
static void test_header_mutations(void **state) {
  (void)state;
  unsigned char buf[PF_NPY_HEADER_MAX];
  size_t len;
  pf_npy_header w = {.dtype = PF_INT16, .ndim = 3, .shape = {2, 30, 4}};
  write_ok(&w, buf, &len);
  static const unsigned char values[] = {0,   '\'', '"', ',', ':', '(', ')',
                                         '{', '}',  '[', ']', ' ', '\n',
                                         '\\', '-', '0', '9', 'L', 0x80, 0xff};
  for (size_t pos = 0; pos < len; pos++) {
    for (size_t v = 0; v < PF_ARRAY_LEN(values); v++) {
      unsigned char m[PF_NPY_HEADER_MAX];
      memcpy(m, buf, len);
      m[pos] = values[v];
      pf_npy_header h;
      pf_error err;
      int rc = pf_npy_header_read(m, len, &h, &err);
      assert_true(rc == 0 || rc == PF_EFORMAT || rc == PF_EDTYPE);
      if (rc != 0) {
        assert_true(err.position >= -1 && err.position <= (int64_t)len);
      } else {
        assert_true(h.ndim >= 0 && h.ndim <= PF_MAX_DIMS);
        assert_true(h.data_offset <= (int64_t)len);
      }
    }
  }
}

static void test_header_read_fd(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/a.npy", dir);
  unsigned char buf[PF_NPY_HEADER_MAX];
  size_t len;
  pf_npy_header w = {.dtype = PF_INT32, .ndim = 2, .shape = {3, 5}};
  write_ok(&w, buf, &len);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, buf, len), (ssize_t)len);
  pf_npy_header h;
  pf_error err;
  /* Data missing: the file is shorter than its header says. */
  assert_int_equal(pf_npy_header_read_fd(fd, &h, &err), PF_EFORMAT);
  assert_int_equal(ftruncate(fd, (off_t)len + 60), 0);
  assert_int_equal(pf_npy_header_read_fd(fd, &h, &err), 0);
  assert_int_equal(h.dtype, PF_INT32);
  assert_int_equal(h.shape[1], 5);
  /* A header longer than the first read (PF_NPY_HEADER_MAX bytes). */
  char dict[3000];
  int n = snprintf(dict, sizeof dict, "{'descr': '<i4', 'fortran_order': "
                   "False, 'shape': (3, 5), }");
  memset(dict + n, ' ', sizeof dict - (size_t)n);
  unsigned char big[12 + sizeof dict];
  memcpy(big, "\x93NUMPY\x02\x00", 8);
  uint32_t hl = sizeof dict;
  memcpy(big + 8, &hl, 4);
  memcpy(big + 12, dict, sizeof dict);
  assert_int_equal(pwrite(fd, big, sizeof big, 0), (ssize_t)sizeof big);
  assert_int_equal(ftruncate(fd, (off_t)sizeof big + 60), 0);
  assert_int_equal(pf_npy_header_read_fd(fd, &h, &err), 0);
  assert_int_equal(h.version, 2);
  assert_int_equal(h.data_offset, (int64_t)sizeof big);
  close(fd);
  assert_int_equal(pf_npy_header_read_fd(-1, &h, &err), PF_EIO);
  assert_int_equal(err.sys_errno, EBADF);
  remove_dir(dir);
}

/* ------------------------------------------------------------ fills */

/* Byte `byte` of element k: k's own bytes (cheap, and distinct for
 * neighbouring elements in every dtype size). */
static unsigned char pattern(int64_t k, size_t byte) {
  return (unsigned char)((uint64_t)k >> (8 * (byte % 8)) ^ (byte / 8) * 0x3b);
}

static mode_t file_mode; /* what a new file gets: 0666 less the umask */

typedef struct kctx {
  size_t itemsize;
  int64_t fail_at;      /* flat index whose block fails, or -1 */
  _Atomic int64_t calls;
  _Atomic int bad_calls; /* contract violations seen by the kernel */
  int64_t max_count;
} kctx;

static int pattern_kernel(void *ctx, int64_t start, int64_t count, void *out,
                          pf_fill_worker *fw) {
  int worker = pf_fill_worker_id(fw);
  kctx *k = ctx;
  atomic_fetch_add(&k->calls, 1);
  if (count <= 0 || count > k->max_count || worker < 0 || start < 0)
    atomic_fetch_add(&k->bad_calls, 1);
  if (k->fail_at >= start && k->fail_at < start + count) return PF_EKERNEL;
  unsigned char *o = out;
  for (int64_t e = 0; e < count; e++)
    for (size_t b = 0; b < k->itemsize; b++)
      *o++ = pattern(start + e, b);
  return 0;
}

/* Reads back `path` and checks header and every byte. */
static void check_file(const char *path, pf_dtype dtype, int ndim,
                       const int64_t *shape) {
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  pf_npy_header h;
  pf_error err;
  if (pf_npy_header_read_fd(fd, &h, &err) != 0) fail_msg("%s", err.message);
  assert_int_equal(h.dtype, dtype);
  assert_int_equal(h.ndim, ndim);
  assert_int_equal(h.data_offset % 64, 0);
  int64_t size;
  assert_int_equal(pf_shape_size(ndim, shape, 1, &size), 0);
  size_t itemsize = pf_dtype_size(dtype);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, h.data_offset + size * (int64_t)itemsize);
  assert_int_equal(st.st_mode & 0777, file_mode);
  unsigned char *data = malloc((size_t)size * itemsize + 1);
  assert_non_null(data);
  assert_int_equal(pread(fd, data, (size_t)size * itemsize, h.data_offset),
                   (ssize_t)((size_t)size * itemsize));
  for (int64_t e = 0; e < size; e++)
    for (size_t b = 0; b < itemsize; b++)
      if (data[(size_t)e * itemsize + b] != pattern(e, b))
        fail_msg("%s: element %lld byte %zu differs", path, (long long)e, b);
  free(data);
  close(fd);
}

static void test_fill_matrix(void **state) {
  (void)state;
  char *dir = make_dir();
  static const struct {
    pf_dtype dtype;
    int ndim;
    int64_t shape[3];
  } shapes[] = {
      {PF_FLOAT64, 1, {1}},
      {PF_UINT8, 2, {3, 7}},
      {PF_INT16, 0, {0}},
      {PF_FLOAT64, 2, {0, 5}},
      {PF_FLOAT32, 3, {4, 300, 700}},     /* 3.2 MiB: 4 blocks, the last short */
      {PF_COMPLEX128, 1, {65536 * 3 + 1}}, /* 65536 elements per block */
      {PF_BOOL, 1, {(1 << 20) - 128}},     /* exactly one block */
      {PF_UINT16, 1, {(1 << 19) - 64 + 2048}}, /* ends on a page boundary */
  };
  static const int workers[] = {1, 2, 3, 8};
  static const int64_t chunks[] = {0, 1, 100000, 1 << 30};
  int files = 0;
  for (size_t s = 0; s < PF_ARRAY_LEN(shapes); s++)
    for (int sch = 0; sch < 3; sch++)
      for (size_t w = 0; w < PF_ARRAY_LEN(workers); w++)
        for (size_t c = 0; c < PF_ARRAY_LEN(chunks); c++) {
          if ((w + c + (size_t)sch) % 3 != 0 && s > 1) continue; /* time */
          char path[4096];
          snprintf(path, sizeof path, "%s/f%d.npy", dir, files++);
          kctx k = {.itemsize = pf_dtype_size(shapes[s].dtype),
                    .fail_at = -1};
          k.max_count = PF_NPY_BLOCK_BYTES / (int64_t)k.itemsize;
          pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
          o.workers = workers[w];
          o.schedule = (pf_schedule)sch;
          o.chunk = chunks[c];
          pf_error err;
          /* Direct I/O where the filesystem has it, and the page cache. */
          unsigned flags = files % 2 ? PF_NPY_BUFFERED : 0;
          int rc = pf_npy_fill(path, shapes[s].dtype, shapes[s].ndim,
                               shapes[s].shape, pattern_kernel, &k, &o, flags,
                               &err);
          if (rc != 0) fail_msg("%s: %s", path, err.message);
          assert_int_equal(atomic_load(&k.bad_calls), 0);
          check_file(path, shapes[s].dtype, shapes[s].ndim, shapes[s].shape);
          unlink(path);
        }
  assert_int_equal(pf_test_dir_entries(dir), 0);
  remove_dir(dir);
}

static void test_fill_exists_and_force(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int fd = open(path, O_WRONLY | O_CREAT, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "keep", 4), 4);
  close(fd);
  int64_t shape[1] = {1000};
  kctx k = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
  pf_error err;
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 0, &err),
                   PF_EEXIST);
  assert_int_equal(atomic_load(&k.calls), 0); /* no work done */
  char text[8] = {0};
  fd = open(path, O_RDONLY);
  assert_int_equal(read(fd, text, sizeof text), 4);
  close(fd);
  assert_string_equal(text, "keep");
  assert_int_equal(pf_test_dir_entries(dir), 1);
  /* A dangling symlink is a name too. */
  char link_path[4096];
  snprintf(link_path, sizeof link_path, "%s/l.npy", dir);
  assert_int_equal(symlink("nowhere", link_path), 0);
  assert_int_equal(pf_npy_fill(link_path, PF_FLOAT64, 1, shape, pattern_kernel,
                               &k, NULL, 0, &err),
                   PF_EEXIST);
  unlink(link_path);
  /* --force replaces it. */
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, PF_NPY_FORCE, &err),
                   0);
  check_file(path, PF_FLOAT64, 1, shape);
  assert_int_equal(pf_test_dir_entries(dir), 1);
  /* Only regular files are replaced: never a directory, a symlink or a
   * device (a FIFO stands in for /dev/null) -- the rename would swap the
   * name for a file. */
  char sub[4096], fifo[4096];
  snprintf(sub, sizeof sub, "%s/d", dir);
  snprintf(fifo, sizeof fifo, "%s/p", dir);
  assert_int_equal(mkdir(sub, 0755), 0);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  assert_int_equal(symlink("x.npy", link_path), 0);
  const char *const others[] = {sub, fifo, link_path};
  for (size_t o = 0; o < PF_ARRAY_LEN(others); o++) {
    assert_int_equal(pf_npy_fill(others[o], PF_FLOAT64, 1, shape,
                                 pattern_kernel, &k, NULL, PF_NPY_FORCE, &err),
                     PF_EEXIST);
    assert_non_null(strstr(err.message, "not a regular file"));
  }
  struct stat st;
  assert_int_equal(lstat(sub, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(lstat(fifo, &st), 0);
  assert_true(S_ISFIFO(st.st_mode));
  assert_int_equal(lstat(link_path, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  assert_int_equal(pf_test_dir_entries(dir), 4);
  unlink(link_path);
  unlink(fifo);
  rmdir(sub);
  unlink(path);
  remove_dir(dir);
}

static void test_fill_kernel_error(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[2] = {1000, 1000};
  for (int workers = 1; workers <= 4; workers *= 2)
    for (int sch = 0; sch < 3; sch++) {
      kctx k = {.itemsize = 8, .fail_at = 654321, .max_count = 1 << 20};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = workers;
      o.schedule = (pf_schedule)sch;
      pf_error err;
      assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 2, shape, pattern_kernel,
                                   &k, &o, 0, &err),
                       PF_EKERNEL);
      assert_int_equal(err.code, PF_EKERNEL);
      assert_int_equal(pf_test_dir_entries(dir), 0);
    }
  remove_dir(dir);
}

typedef struct prog {
  int64_t last, total, calls, cancel_after;
  int monotonic;
} prog;

static int progress_fn(void *ctx, int64_t done, int64_t total) {
  prog *p = ctx;
  if (done < p->last || done > total) p->monotonic = 0;
  p->last = done;
  p->total = total;
  p->calls++;
  return p->cancel_after >= 0 && done >= p->cancel_after ? PF_ECANCELED : 0;
}

/* A kernel slow enough for progress ticks to fall inside the fill. */
static int slow_kernel(void *ctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *fw) {
  usleep(2000);
  return pattern_kernel(ctx, start, count, out, fw);
}

static void test_fill_progress_and_cancel(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[1] = {(int64_t)32 << 20}; /* 32 Mi uint8: 32 blocks */
  for (int workers = 1; workers <= 2; workers++)
    for (int sch = 0; sch < 3; sch++) {
      kctx k = {.itemsize = 1, .fail_at = -1, .max_count = 1 << 20};
      prog p = {.monotonic = 1, .cancel_after = -1};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = workers;
      o.schedule = (pf_schedule)sch;
      o.progress = progress_fn;
      o.progress_ctx = &p;
      o.progress_interval = 0.01;
      pf_error err;
      assert_int_equal(pf_npy_fill(path, PF_UINT8, 1, shape, slow_kernel, &k,
                                   &o, 0, &err),
                       0);
      assert_true(p.monotonic);
      assert_true(p.calls >= 2);
      assert_int_equal(p.last, shape[0]);
      assert_int_equal(p.total, shape[0]);
      unlink(path);

      /* Cancel once a quarter is written: it stops before the end even
       * under the static schedule (one 16-block chunk per worker), and
       * nothing is left. */
      kctx k2 = {.itemsize = 1, .fail_at = -1, .max_count = 1 << 20};
      prog p2 = {.monotonic = 1, .cancel_after = shape[0] / 4};
      o.progress_ctx = &p2;
      assert_int_equal(pf_npy_fill(path, PF_UINT8, 1, shape, slow_kernel, &k2,
                                   &o, 0, &err),
                       PF_ECANCELED);
      assert_true(atomic_load(&k2.calls) < 32);
      assert_int_equal(pf_test_dir_entries(dir), 0);
    }
  remove_dir(dir);
}

/* Fails element 3 (after a pause, so later in time than the other) and
 * element 700000 (at once), each with its own message. */
static int two_failures_kernel(void *ctx, int64_t start, int64_t count,
                               void *out, pf_fill_worker *fw) {
  (void)ctx;
  static const int64_t bad[2] = {3, 700000};
  for (int b = 0; b < 2; b++)
    if (bad[b] >= start && bad[b] < start + count) {
      if (b == 0) pf_test_sleep_us(50000);
      return pf_fill_worker_fail(fw, PF_EKERNEL, bad[b], "element %lld refused",
                                 (long long)bad[b]);
    }
  memset(out, 0, (size_t)count * 8);
  return 0;
}

static void test_fill_kernel_message_lowest_wins(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[1] = {1000000}; /* 8 MB: the failures are blocks apart */
  for (int workers = 1; workers <= 4; workers *= 2)
    for (int sch = 0; sch < 3; sch++) {
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = workers;
      o.schedule = (pf_schedule)sch;
      pf_error err;
      assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape,
                                   two_failures_kernel, NULL, &o, 0, &err),
                       PF_EKERNEL);
      /* As the sequential loop: the first failing element's error, with the
       * kernel's message as given. */
      assert_string_equal(err.message, "element 3 refused");
      assert_int_equal(pf_test_dir_entries(dir), 0);
    }
  remove_dir(dir);
}

static void test_fill_timeout(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[1] = {(int64_t)64 << 20}; /* 64 blocks of 2 ms and more */
  for (int workers = 1; workers <= 2; workers++) {
    kctx k = {.itemsize = 1, .fail_at = -1, .max_count = 1 << 20};
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = workers;
    o.timeout = 0.02;
    pf_error err;
    double began = pf_test_now();
    assert_int_equal(pf_npy_fill(path, PF_UINT8, 1, shape, slow_kernel, &k,
                                 &o, 0, &err),
                     PF_ETIMEDOUT);
    assert_true(pf_test_now() - began < 2.0);
    assert_true(atomic_load(&k.calls) < 64);
    assert_int_equal(pf_test_dir_entries(dir), 0);
  }
  remove_dir(dir);
}

static void test_fill_io_errors(void **state) {
  (void)state;
  char *dir = make_dir();
  int64_t shape[1] = {100};
  kctx k = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
  pf_error err;
  char path[4096];
  snprintf(path, sizeof path, "%s/no/such/dir/x.npy", dir);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 0, &err),
                   PF_EIO);
  assert_int_equal(err.sys_errno, ENOENT);
  assert_non_null(strstr(err.message, "temporary file"));
  snprintf(path, sizeof path, "%s/", dir);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 0, &err),
                   PF_EINVAL);
  assert_int_equal(pf_npy_fill("", PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 0, &err),
                   PF_EINVAL);
  snprintf(path, sizeof path, "%s/x.npy", dir);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, NULL, &k, NULL, 0,
                               &err),
                   PF_EINVAL);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 8, &err),
                   PF_EINVAL);
  assert_int_equal(pf_npy_fill(path, PF_DTYPE_COUNT, 1, shape, pattern_kernel,
                               &k, NULL, 0, &err),
                   PF_EDTYPE);
  int64_t huge[2] = {INT64_MAX / 8, 2};
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 2, huge, pattern_kernel, &k,
                               NULL, 0, &err),
                   PF_EOVERFLOW);
  assert_int_equal(pf_test_dir_entries(dir), 0);

  /* The file size limit, in a child (limits are per process): reported as
   * EFBIG before any work, with SIGXFSZ ignored. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1 << 20, 1 << 20};
    setrlimit(RLIMIT_FSIZE, &rl);
    int64_t big[1] = {1 << 20}; /* 8 MiB > 1 MiB */
    kctx kc = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
    pf_error e;
    int rc = pf_npy_fill(path, PF_FLOAT64, 1, big, pattern_kernel, &kc, NULL,
                         0, &e);
    _exit(rc == PF_EIO && e.sys_errno == EFBIG && atomic_load(&kc.calls) == 0
              ? 0
              : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(pf_test_dir_entries(dir), 0);
  remove_dir(dir);
}

/* Progress callback that counts the directory's entries while writing. */
typedef struct dir_watch {
  const char *dir;
  int max_entries, min_entries, calls;
} dir_watch;

static int watch_progress(void *ctx, int64_t done, int64_t total) {
  dir_watch *w = ctx;
  (void)done;
  (void)total;
  int n = pf_test_dir_entries(w->dir);
  if (w->calls++ == 0 || n > w->max_entries) w->max_entries = n;
  if (w->calls == 1 || n < w->min_entries) w->min_entries = n;
  return 0;
}

/* The file being written is unnamed (O_TMPFILE) where the filesystem has
 * it: nothing appears in the directory until the complete file is linked
 * as `path`; PF_NPY_NAMED_TEMP makes it the hidden named file. With and
 * without --force, the result is the same file. */
static void test_fill_unnamed_and_named(void **state) {
  (void)state;
  char *dir = make_dir();
  int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
  int has_tmpfile = fd >= 0;
  if (fd >= 0) close(fd);
  char path[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[1] = {(int64_t)8 << 20}; /* 8 blocks of uint8 */
  for (int named = 0; named <= 1; named++)
    for (int force = 0; force <= 1; force++) {
      if (force) {
        int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(f >= 0);
        close(f);
      }
      kctx k = {.itemsize = 1, .fail_at = -1, .max_count = 1 << 20};
      dir_watch w = {.dir = dir};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = 2;
      o.progress = watch_progress;
      o.progress_ctx = &w;
      o.progress_interval = 0.001;
      pf_error err;
      unsigned flags = (named ? PF_NPY_NAMED_TEMP : 0) |
                       (force ? PF_NPY_FORCE : 0);
      assert_int_equal(pf_npy_fill(path, PF_UINT8, 1, shape, slow_kernel, &k,
                                   &o, flags, &err),
                       0);
      assert_true(w.calls >= 2);
      /* While writing: the old file (force), plus the named temporary. */
      int extra = named || !has_tmpfile;
      assert_int_equal(w.max_entries, force + extra);
      assert_int_equal(w.min_entries, force + extra);
      assert_int_equal(pf_test_dir_entries(dir), 1);
      check_file(path, PF_UINT8, 1, shape);
      unlink(path);
    }
  remove_dir(dir);
}

/* A process killed (SIGKILL: no handler can run) in the middle of a fill
 * leaves nothing when the file is unnamed; the named fallback leaves its
 * hidden temporary file, as documented. */
static int kill_self(void *ctx, int64_t done, int64_t total) {
  (void)ctx;
  (void)total;
  if (done > 0) raise(SIGKILL);
  return 0;
}

static void test_fill_killed_leaves_nothing(void **state) {
  (void)state;
#ifdef __SANITIZE_THREAD__
  /* The child starts the pool's threads after fork from a process that has
   * threads: TSan cannot follow that and kills it. */
  skip();
#endif
  for (int named = 0; named <= 1; named++) {
    char *dir = make_dir();
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    int has_tmpfile = fd >= 0;
    if (fd >= 0) close(fd);
    char path[4096];
    snprintf(path, sizeof path, "%s/x.npy", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      int64_t shape[1] = {(int64_t)16 << 20};
      kctx k = {.itemsize = 1, .fail_at = -1, .max_count = 1 << 20};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = 1;
      o.progress = kill_self;
      o.progress_interval = 0.001;
      pf_npy_fill(path, PF_UINT8, 1, shape, slow_kernel, &k, &o,
                  named ? PF_NPY_NAMED_TEMP : 0, NULL);
      _exit(3); /* not killed: the test fails below */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_equal(pf_test_dir_entries(dir), named || !has_tmpfile ? 1 : 0);
    remove_dir(dir);
  }
}

/* A name the final link could never bind fails before any work: the
 * temporary names are cut to fit, so only the end would notice. */
static void test_fill_name_too_long(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/", dir);
  memset(path + n, 'x', 256);
  path[n + 256] = '\0';
  int64_t shape[1] = {1000};
  for (unsigned flags = 0; flags <= (PF_NPY_FORCE | PF_NPY_NAMED_TEMP);
       flags++) {
    if (flags & PF_NPY_BUFFERED) continue;
    kctx k = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
    pf_error err;
    assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel,
                                 &k, NULL, flags, &err),
                     PF_EIO);
    assert_int_equal(err.sys_errno, ENAMETOOLONG);
    assert_int_equal(atomic_load(&k.calls), 0);
    assert_int_equal(pf_test_dir_entries(dir), 0);
  }
  /* 255 bytes is fine. */
  path[n + 255] = '\0';
  kctx k = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 0, NULL),
                   0);
  check_file(path, PF_FLOAT64, 1, shape);
  remove_dir(dir);
}

/* The system-call seam of output_file.c (a test hook, declared only here): the
 * call fails once with errno e after `after` more calls of it succeed. */
enum { SEAM_PWRITE, SEAM_FSYNC, SEAM_RENAMEAT2 };
void pf__file_fail_call(int call, int after, int e);

/* Whether `dir`'s filesystem takes O_DIRECT writes (then the fill writes
 * its aligned parts through a second, direct descriptor). */
static int direct_io_works(const char *dir) {
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/probe", dir);
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC,
                0600);
  if (fd >= 0) close(fd);
  unlink(probe);
  return fd >= 0;
}

/* Failed writes, fsync and final renames, as a full or broken disk gives
 * them: each reported with its code (PF_ENOSPC for a full disk, else
 * PF_EIO), errno and message, with the directory left exactly as it was;
 * a write interrupted by a signal is retried; a direct write the
 * filesystem refuses (EINVAL) is written through the page cache instead; a
 * filesystem without renameat2 gets link() -- each of those a correct file. */
static void test_fill_system_call_failures(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/f.npy", dir);
  /* 3 blocks and a partial page: direct and page-cache writes both. */
  int64_t shape[1] = {(3 * PF_NPY_BLOCK_BYTES + 5000) / 8};
  const int direct = direct_io_works(dir);
  static const struct {
    int call, after, e;
    unsigned flags;
    int rc;           /* 0: the file is written correctly */
    const char *text; /* in the message of a failure */
  } cases[] = {
      {SEAM_PWRITE, 0, EIO, 0, PF_EIO, "cannot write"},
      {SEAM_PWRITE, 2, ENOSPC, PF_NPY_NAMED_TEMP, PF_ENOSPC, "cannot write"},
      {SEAM_PWRITE, 1, EDQUOT, PF_NPY_BUFFERED, PF_ENOSPC, "cannot write"},
      {SEAM_PWRITE, 3, 0, PF_NPY_BUFFERED, PF_ENOSPC, "cannot write"},
      {SEAM_PWRITE, 1, EINTR, 0, 0, NULL},
      {SEAM_PWRITE, 0, EINVAL, PF_NPY_BUFFERED, PF_EIO, "cannot write"},
      {SEAM_FSYNC, 0, EIO, 0, PF_EIO, "cannot write"},
      {SEAM_FSYNC, 0, ENOSPC, PF_NPY_NAMED_TEMP, PF_ENOSPC, "cannot write"},
      {SEAM_RENAMEAT2, 0, EINVAL, PF_NPY_NAMED_TEMP, 0, NULL},
      {SEAM_RENAMEAT2, 0, ENOSYS, PF_NPY_NAMED_TEMP, 0, NULL},
      {SEAM_RENAMEAT2, 0, EIO, PF_NPY_NAMED_TEMP, PF_EIO, "cannot create"},
      {SEAM_RENAMEAT2, 0, EEXIST, PF_NPY_NAMED_TEMP, PF_EEXIST, "exists"},
  };
  for (size_t c = 0; c < PF_ARRAY_LEN(cases) + 1; c++) {
    /* The last run: the first direct write refused with EINVAL. */
    const int fallback = c == PF_ARRAY_LEN(cases);
    if (fallback && !direct) break;
    for (int workers = 1; workers <= 2; workers++) {
      kctx k = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = workers;
      o.chunk = 1;
      pf_error err;
      memset(&err, 0, sizeof err);
      if (fallback)
        pf__file_fail_call(SEAM_PWRITE, 0, EINVAL);
      else
        pf__file_fail_call(cases[c].call, cases[c].after, cases[c].e);
      int rc = pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel, &k, &o,
                           fallback ? 0 : cases[c].flags, &err);
      pf__file_fail_call(-1, 0, 0);
      int want = fallback ? 0 : cases[c].rc;
      if (rc != want)
        fail_msg("case %zu, %d workers: %s (%s), want %s", c, workers,
                 pf_err_name(rc), err.message, pf_err_name(want));
      assert_int_equal(atomic_load(&k.bad_calls), 0);
      if (rc == 0) {
        check_file(path, PF_FLOAT64, 1, shape);
        assert_int_equal(pf_test_dir_entries(dir), 1);
        assert_int_equal(unlink(path), 0);
        continue;
      }
      assert_int_equal(err.code, rc);
      assert_non_null(strstr(err.message, cases[c].text));
      assert_non_null(strstr(err.message, path));
      if (rc != PF_EEXIST)
        assert_int_equal(err.sys_errno, cases[c].e == 0 ? ENOSPC : cases[c].e);
      assert_int_equal(pf_test_dir_entries(dir), 0);
    }
  }
  remove_dir(dir);
}

/* The argument checks of pf_npy_fill and pf_npy_fill_expr not reached
 * elsewhere: each PF_EINVAL before anything is created. */
static void test_fill_invalid_arguments(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/a.npy", dir);
  int64_t shape[1] = {10};
  kctx k = {.itemsize = 8, .fail_at = -1, .max_count = 1 << 20};
  pf_error err;
  pf_fill_options bad[3] = {PF_FILL_OPTIONS_DEFAULTS, PF_FILL_OPTIONS_DEFAULTS,
                            PF_FILL_OPTIONS_DEFAULTS};
  bad[0].chunk = -1;
  bad[1].workers = -1;
  bad[2].schedule = (pf_schedule)(PF_SCHEDULE_GUIDED + 1);
  for (int b = 0; b < 3; b++)
    assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, shape, pattern_kernel,
                                 &k, &bad[b], 0, &err), PF_EINVAL);
  assert_int_equal(pf_npy_fill(NULL, PF_FLOAT64, 1, shape, pattern_kernel, &k,
                               NULL, 0, &err), PF_EINVAL);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, -1, shape, pattern_kernel,
                               &k, NULL, 0, &err), PF_EINVAL);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, PF_MAX_DIMS + 1, shape,
                               pattern_kernel, &k, NULL, 0, &err), PF_EINVAL);
  assert_int_equal(pf_npy_fill(path, PF_FLOAT64, 1, NULL, pattern_kernel, &k,
                               NULL, 0, &err), PF_EINVAL);
  assert_string_equal(err.message, "invalid shape");
  pf_expr *e;
  assert_int_equal(pf_expr_compile(&e, "i", 1, NULL, 0, &err), 0);
  assert_int_equal(pf_npy_fill_expr(path, NULL, PF_INT64, 1, shape, NULL, 0,
                                    &err), PF_EINVAL);
  assert_int_equal(pf_npy_fill_expr(path, e, PF_INT64, 1, NULL, NULL, 0,
                                    &err), PF_EINVAL);
  assert_string_equal(err.message, "invalid shape");
  assert_int_equal(pf_npy_fill_expr(path, e, PF_INT64, 1, shape, &bad[1], 0,
                                    &err), PF_EINVAL);
  pf_expr_free(e);
  assert_int_equal(atomic_load(&k.calls), 0);
  assert_int_equal(pf_test_dir_entries(dir), 0);
  remove_dir(dir);
}

static void test_fill_expr(void **state) {
  (void)state;
  char *dir = make_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/e.npy", dir);
  static const char *const exprs[] = {"i*1000 + j*3 - idx % 7",
                                      "sin(i*0.01)*cos(j*0.02) + size",
                                      "where(i < j, 1.5, -2)"};
  static const pf_dtype dtypes[] = {PF_FLOAT64, PF_INT32, PF_UINT8,
                                    PF_COMPLEX64, PF_FLOAT16};
  int64_t shape[2] = {517, 1031}; /* > 1 block in every dtype but uint8 */
  for (size_t e = 0; e < PF_ARRAY_LEN(exprs); e++) {
    pf_expr *expr;
    pf_error err;
    if (pf_expr_compile(&expr, exprs[e], 2, NULL, 0, &err) != 0)
      fail_msg("%s: %s", exprs[e], err.message);
    for (size_t d = 0; d < PF_ARRAY_LEN(dtypes); d++) {
      size_t itemsize = pf_dtype_size(dtypes[d]);
      pf_array a = {.dtype = dtypes[d], .ndim = 2, .shape = {517, 1031}};
      a.data = malloc((size_t)(517 * 1031) * itemsize);
      pf_array_set_contiguous(&a);
      assert_int_equal(pf_expr_fill(expr, &a, NULL, &err), 0);
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = 2;
      o.chunk = 1000;
      if (pf_npy_fill_expr(path, expr, dtypes[d], 2, shape, &o, 0, &err) != 0)
        fail_msg("%s: %s", exprs[e], err.message);
      int fd = open(path, O_RDONLY);
      pf_npy_header h;
      assert_int_equal(pf_npy_header_read_fd(fd, &h, &err), 0);
      size_t bytes = (size_t)(517 * 1031) * itemsize;
      unsigned char *data = malloc(bytes);
      assert_int_equal(pread(fd, data, bytes, h.data_offset), (ssize_t)bytes);
      assert_memory_equal(data, a.data, bytes);
      close(fd);
      free(data);
      free(a.data);
      unlink(path);
    }
    assert_int_equal(pf_npy_fill_expr(path, expr, PF_FLOAT64, 1, shape, NULL,
                                      0, &err),
                     PF_EINVAL);
    pf_expr_free(expr);
  }
  /* A run-time error: an integer to a negative power, with its position. */
  pf_expr *expr;
  pf_error err;
  assert_int_equal(pf_expr_compile(&expr, "2 ** (i - 400)", 1, NULL, 0, &err),
                   0);
  int64_t n[1] = {1000};
  assert_int_equal(pf_npy_fill_expr(path, expr, PF_INT64, 1, n, NULL, 0, &err),
                   PF_ETYPE);
  assert_int_equal(err.position, 2);
  pf_expr_free(expr);
  assert_int_equal(pf_test_dir_entries(dir), 0);
  /* Two operators fail: the first (offset 2) from element 600001 on, the
   * second (offset 22) at element 500001 only. Whatever fails first in time,
   * the lowest failing element's operator is reported, as the sequential
   * loop would, and its message. */
  assert_int_equal(pf_expr_compile(&expr,
                                   "3 ** (600000 - i) + "
                                   "2 ** ((i - 500001) * (i - 500001) - 1)",
                                   1, NULL, 0, &err),
                   0);
  int64_t m[1] = {1000000};
  for (int workers = 1; workers <= 4; workers *= 2)
    for (int sch = 0; sch < 3; sch++) {
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = workers;
      o.schedule = (pf_schedule)sch;
      assert_int_equal(pf_npy_fill_expr(path, expr, PF_INT64, 1, m, &o, 0,
                                        &err),
                       PF_ETYPE);
      assert_int_equal(err.position, 22);
      assert_string_equal(err.message,
                          "integers to negative integer powers are not "
                          "allowed");
      assert_int_equal(pf_test_dir_entries(dir), 0);
    }
  pf_expr_free(expr);
  remove_dir(dir);
}

int main(void) {
  file_mode = umask(0);
  umask(file_mode);
  file_mode = 0666 & ~file_mode;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_known_answers),
      cmocka_unit_test(test_header_round_trip),
      cmocka_unit_test(test_header_longest),
      cmocka_unit_test(test_header_write_errors),
      cmocka_unit_test(test_header_numpy_size_rule),
      cmocka_unit_test(test_header_read_variants),
      cmocka_unit_test(test_header_unsupported_dtypes),
      cmocka_unit_test(test_header_malformed),
      cmocka_unit_test(test_header_prefix_errors),
      cmocka_unit_test(test_header_mutations),
      cmocka_unit_test(test_header_read_fd),
      cmocka_unit_test(test_fill_matrix),
      cmocka_unit_test(test_fill_exists_and_force),
      cmocka_unit_test(test_fill_kernel_error),
      cmocka_unit_test(test_fill_kernel_message_lowest_wins),
      cmocka_unit_test(test_fill_timeout),
      cmocka_unit_test(test_fill_progress_and_cancel),
      cmocka_unit_test(test_fill_io_errors),
      cmocka_unit_test(test_fill_unnamed_and_named),
      cmocka_unit_test(test_fill_killed_leaves_nothing),
      cmocka_unit_test(test_fill_name_too_long),
      cmocka_unit_test(test_fill_expr),
      cmocka_unit_test(test_fill_system_call_failures),
      cmocka_unit_test(test_fill_invalid_arguments),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
