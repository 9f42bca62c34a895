/*
 * test_index.c -- the value-level pieces of libparfill: shapes and sizes
 * (checked against exact 128-bit arithmetic), flat-index unravelling and
 * offsets (checked against an odometer), strides and contiguity, dtype sizes,
 * names and NumPy spellings, schedule names, error names and messages,
 * pf_cpu_count and pf_shared_contains.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pf_test.h"
#include "internal.h"

/* A small deterministic generator (splitmix64) for random shapes. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* ------------------------------------------------------------ shape sizes */

/* The reference: exact product in unsigned 128-bit arithmetic. */
static int ref_shape_size(int ndim, const int64_t *shape, size_t itemsize,
                          int64_t *size) {
  if (ndim < 0 || ndim > PF_MAX_DIMS) return PF_EINVAL;
  for (int d = 0; d < ndim; d++)
    if (shape[d] < 0) return PF_EINVAL;
  for (int d = 0; d < ndim; d++)
    if (shape[d] == 0) {
      *size = 0;
      return 0;
    }
  unsigned __int128 n = 1;
  int big = 0;
  for (int d = 0; d < ndim; d++) {
    n *= (unsigned __int128)shape[d];
    if (n > (unsigned __int128)INT64_MAX) big = 1;
    if (big) n = (unsigned __int128)INT64_MAX + 1; /* stays above the limit */
  }
  if (big) return PF_EOVERFLOW;
  if (n * (unsigned __int128)itemsize > (unsigned __int128)INT64_MAX)
    return PF_EOVERFLOW;
  *size = (int64_t)n;
  return 0;
}

static void check_size(int ndim, const int64_t *shape, size_t itemsize,
                       int want_rc, int64_t want_size) {
  int64_t size = -12345;
  int rc = pf_shape_size(ndim, shape, itemsize, &size);
  if (rc != want_rc || (rc == 0 && size != want_size))
    fail_msg("pf_shape_size(ndim %d, itemsize %zu) = %d size %lld; want %d "
             "size %lld",
             ndim, itemsize, rc, (long long)size, want_rc,
             (long long)want_size);
}

static void test_shape_size_basic(void **state) {
  (void)state;
  check_size(0, NULL, 8, 0, 1); /* a scalar has one element */
  int64_t s1[] = {7};
  check_size(1, s1, 8, 0, 7);
  int64_t s3[] = {2, 3, 4};
  check_size(3, s3, 1, 0, 24);
  check_size(3, s3, 16, 0, 24);
  int64_t zero[] = {5, 0, 3};
  check_size(3, zero, 8, 0, 0);
  int64_t ones[PF_MAX_DIMS];
  for (int d = 0; d < PF_MAX_DIMS; d++) ones[d] = 1;
  check_size(PF_MAX_DIMS, ones, 8, 0, 1);
  int64_t twos[PF_MAX_DIMS];
  for (int d = 0; d < PF_MAX_DIMS; d++) twos[d] = 2;
  check_size(PF_MAX_DIMS, twos, 1, 0, (int64_t)1 << 32);
  int64_t fours[PF_MAX_DIMS];
  for (int d = 0; d < PF_MAX_DIMS; d++) fours[d] = 4; /* 2^64 elements */
  check_size(PF_MAX_DIMS, fours, 1, PF_EOVERFLOW, 0);
}

static void test_shape_size_overflow(void **state) {
  (void)state;
  int64_t a[] = {INT64_MAX / 2, 3};
  check_size(2, a, 1, PF_EOVERFLOW, 0);
  /* A zero length anywhere makes the space empty, even after an overflow. */
  int64_t b[] = {INT64_MAX / 2, 3, 0};
  check_size(3, b, 8, 0, 0);
  int64_t c[] = {0, INT64_MAX, INT64_MAX};
  check_size(3, c, 8, 0, 0);
  int64_t d[] = {INT64_MAX};
  check_size(1, d, 1, 0, INT64_MAX);
  check_size(1, d, 2, PF_EOVERFLOW, 0);
  check_size(1, d, 0, 0, INT64_MAX); /* no bytes */
  int64_t e[] = {INT64_MAX / 8};
  check_size(1, e, 8, 0, INT64_MAX / 8);
  int64_t f[] = {INT64_MAX / 8 + 1};
  check_size(1, f, 8, PF_EOVERFLOW, 0);
  int64_t g[] = {3037000499, 3037000499}; /* just below 2^63 */
  check_size(2, g, 1, 0, (int64_t)3037000499 * 3037000499);
  int64_t h[] = {3037000500, 3037000500}; /* just above */
  check_size(2, h, 1, PF_EOVERFLOW, 0);
  /* Item sizes that do not fit in int64_t itself. */
  int64_t one[] = {1};
  check_size(1, one, (size_t)INT64_MAX, 0, 1);
  check_size(1, one, (size_t)INT64_MAX + 1, PF_EOVERFLOW, 0);
  check_size(1, one, SIZE_MAX, PF_EOVERFLOW, 0);
  check_size(0, NULL, SIZE_MAX, PF_EOVERFLOW, 0);
  int64_t two[] = {2};
  check_size(1, two, (size_t)INT64_MAX / 2 + 1, PF_EOVERFLOW, 0);
}

static void test_shape_size_invalid(void **state) {
  (void)state;
  int64_t neg[] = {3, -1};
  check_size(2, neg, 8, PF_EINVAL, 0);
  int64_t neg0[] = {0, -1}; /* negative wins over empty */
  check_size(2, neg0, 8, PF_EINVAL, 0);
  int64_t negmin[] = {INT64_MIN};
  check_size(1, negmin, 1, PF_EINVAL, 0);
  int64_t ok[PF_MAX_DIMS + 1] = {0};
  check_size(-1, ok, 8, PF_EINVAL, 0);
  check_size(PF_MAX_DIMS + 1, ok, 8, PF_EINVAL, 0);
  check_size(2, NULL, 8, PF_EINVAL, 0);
  assert_int_equal(pf_shape_size(1, ok, 8, NULL), PF_EINVAL);
}

static void test_shape_size_random(void **state) {
  (void)state;
  static const int64_t lengths[] = {0, 1, 2, 3, 7, 255, 65536, 1 << 20,
                                    3037000499, (int64_t)1 << 40,
                                    INT64_MAX / 3, INT64_MAX};
  static const size_t items[] = {0, 1, 2, 8, 16, 32, (size_t)1 << 40,
                                 (size_t)INT64_MAX + 1, SIZE_MAX};
  for (int trial = 0; trial < 20000; trial++) {
    int ndim = (int)(rng_next() % 6);
    int64_t shape[6];
    for (int d = 0; d < ndim; d++) {
      uint64_t r = rng_next();
      shape[d] = r % 3 == 0 ? (int64_t)(rng_next() % 100)
                            : lengths[r % PF_ARRAY_LEN(lengths)];
    }
    size_t itemsize = items[rng_next() % PF_ARRAY_LEN(items)];
    int64_t want = 0;
    int want_rc = ref_shape_size(ndim, shape, itemsize, &want);
    check_size(ndim, shape, itemsize, want_rc, want);
  }
}

/* ------------------------------------------------------ unravel / offsets */

static void test_unravel_odometer(void **state) {
  (void)state;
  static const int64_t shapes[][4] = {
      {1, 1, 1, 1}, {3, 1, 4, 1}, {2, 3, 4, 5}, {7, 1, 1, 9}, {1, 13, 2, 1}};
  for (size_t s = 0; s < PF_ARRAY_LEN(shapes); s++) {
    for (int ndim = 1; ndim <= 4; ndim++) {
      const int64_t *shape = shapes[s] + (4 - ndim);
      int64_t size = 0;
      assert_int_equal(pf_shape_size(ndim, shape, 1, &size), 0);
      int64_t odo[4] = {0, 0, 0, 0};
      for (int64_t flat = 0; flat < size; flat++) {
        int64_t index[4] = {-1, -1, -1, -1};
        pf_index_unravel(ndim, shape, flat, index);
        for (int d = 0; d < ndim; d++)
          if (index[d] != odo[d])
            fail_msg("shape %zu ndim %d flat %lld axis %d: %lld, want %lld",
                     s, ndim, (long long)flat, d, (long long)index[d],
                     (long long)odo[d]);
        for (int d = ndim - 1; d >= 0; d--) {
          if (++odo[d] < shape[d]) break;
          odo[d] = 0;
        }
      }
    }
  }
  /* Large lengths: the last index of a huge shape. */
  int64_t big[] = {3, INT64_MAX / 4};
  int64_t index[2];
  pf_index_unravel(2, big, 3 * (INT64_MAX / 4) - 1, index);
  assert_int_equal(index[0], 2);
  assert_int_equal(index[1], INT64_MAX / 4 - 1);
  /* ndim 0 writes nothing. */
  int64_t untouched = 42;
  pf_index_unravel(0, NULL, 0, &untouched);
  assert_int_equal(untouched, 42);
}

/* pf_index_next / _strided against pf_index_unravel: random shapes of 0 to
 * 6 axes (lengths 1..5), every element, random strides; the returned axis
 * is the outermost that changed; past the end index[0] == shape[0]. */
static void test_index_next(void **state) {
  (void)state;
  srand(4242);
  for (int trial = 0; trial < 300; trial++) {
    int ndim = trial % 7;
    int64_t shape[PF_MAX_DIMS], strides[PF_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
      shape[d] = 1 + rand() % 5;
      strides[d] = (int64_t)(rand() % 2001) - 1000;
    }
    int64_t size;
    assert_int_equal(pf_shape_size(ndim, shape, 1, &size), 0);
    int64_t a[PF_MAX_DIMS + 1] = {0}, b[PF_MAX_DIMS + 1] = {0},
            want[PF_MAX_DIMS + 1] = {0};
    int64_t offset = 0;
    for (int64_t flat = 0; flat + 1 < size; flat++) {
      int64_t before[PF_MAX_DIMS + 1];
      memcpy(before, a, sizeof before);
      int d1 = pf_index_next(ndim, shape, a);
      int d2 = pf_index_next_strided(ndim, shape, strides, b, &offset);
      pf_index_unravel(ndim, shape, flat + 1, want);
      int outer = 0;
      while (outer < ndim && before[outer] == want[outer]) outer++;
      int64_t expect_offset = 0;
      for (int d = 0; d < ndim; d++) {
        if (a[d] != want[d] || b[d] != want[d])
          fail_msg("trial %d flat %lld axis %d: %lld/%lld, want %lld", trial,
                   (long long)flat + 1, d, (long long)a[d], (long long)b[d],
                   (long long)want[d]);
        expect_offset += want[d] * strides[d];
      }
      assert_int_equal(d1, outer);
      assert_int_equal(d2, outer);
      assert_int_equal(offset, expect_offset);
    }
    /* From the last element: one past the end on axis 0, 0 elsewhere. */
    int d1 = pf_index_next(ndim, shape, a);
    assert_int_equal(d1, 0);
    for (int d = 0; d < ndim; d++)
      assert_int_equal(a[d], d == 0 ? shape[0] : 0);
  }
  /* ndim 0 changes nothing. */
  int64_t none[1] = {7};
  assert_int_equal(pf_index_next(0, NULL, none), 0);
  assert_int_equal(none[0], 7);
  /* An index written out of range by someone else wraps, never overflows. */
  int64_t shape[2] = {3, 4}, index[2] = {1, INT64_MAX};
  assert_int_equal(pf_index_next(2, shape, index), 0);
  assert_int_equal(index[0], 2);
  assert_int_equal(index[1], 0);
  index[1] = -5;
  assert_int_equal(pf_index_next(2, shape, index), 1);
  assert_int_equal(index[1], -4);
}

static void test_offset_of(void **state) {
  (void)state;
  pf_array a = {.data = NULL, .dtype = PF_FLOAT64, .ndim = 3,
                .shape = {4, 5, 6}, .strides = {-8, 320, 48}};
  int64_t size = 120;
  for (int64_t flat = 0; flat < size; flat++) {
    int64_t index[3];
    pf_index_unravel(3, a.shape, flat, index);
    int64_t want = index[0] * a.strides[0] + index[1] * a.strides[1] +
                   index[2] * a.strides[2];
    assert_int_equal(pf__offset_of(&a, flat), want);
  }
  pf_array scalar = {.dtype = PF_INT8, .ndim = 0};
  assert_int_equal(pf__offset_of(&scalar, 0), 0);
}

static void test_contiguous(void **state) {
  (void)state;
  pf_array a = {.dtype = PF_FLOAT64, .ndim = 3, .shape = {2, 3, 4}};
  pf_array_set_contiguous(&a);
  assert_int_equal(a.strides[0], 96);
  assert_int_equal(a.strides[1], 32);
  assert_int_equal(a.strides[2], 8);
  assert_int_equal(pf_array_is_contiguous(&a), 1);

  pf_array c16 = {.dtype = PF_COMPLEX128, .ndim = 2, .shape = {5, 7}};
  pf_array_set_contiguous(&c16);
  assert_int_equal(c16.strides[0], 112);
  assert_int_equal(c16.strides[1], 16);

  pf_array t = a; /* transposed */
  t.shape[0] = 4, t.shape[2] = 2;
  t.strides[0] = 8, t.strides[2] = 96;
  assert_int_equal(pf_array_is_contiguous(&t), 0);

  pf_array neg = a; /* reversed first axis */
  neg.strides[0] = -96;
  assert_int_equal(pf_array_is_contiguous(&neg), 0);

  pf_array step = a; /* every other element of the last axis */
  step.shape[2] = 2;
  step.strides[2] = 16;
  assert_int_equal(pf_array_is_contiguous(&step), 0);

  pf_array ones = {.dtype = PF_INT32, .ndim = 3, .shape = {1, 5, 1},
                   .strides = {12345, 4, -7}}; /* length-1 axes ignored */
  assert_int_equal(pf_array_is_contiguous(&ones), 1);

  pf_array empty = {.dtype = PF_INT32, .ndim = 2, .shape = {3, 0},
                    .strides = {999, 3}};
  assert_int_equal(pf_array_is_contiguous(&empty), 1);

  pf_array scalar = {.dtype = PF_UINT16, .ndim = 0};
  assert_int_equal(pf_array_is_contiguous(&scalar), 1);
}

/* ------------------------------------------------------------------ dtypes */

static void test_dtype_size_name(void **state) {
  (void)state;
  static const struct {
    pf_dtype dtype;
    size_t size;
    const char *name;
  } want[] = {
      {PF_BOOL, 1, "bool"},
      {PF_INT8, sizeof(int8_t), "int8"},
      {PF_INT16, sizeof(int16_t), "int16"},
      {PF_INT32, sizeof(int32_t), "int32"},
      {PF_INT64, sizeof(int64_t), "int64"},
      {PF_UINT8, sizeof(uint8_t), "uint8"},
      {PF_UINT16, sizeof(uint16_t), "uint16"},
      {PF_UINT32, sizeof(uint32_t), "uint32"},
      {PF_UINT64, sizeof(uint64_t), "uint64"},
      {PF_FLOAT16, 2, "float16"},
      {PF_FLOAT32, sizeof(float), "float32"},
      {PF_FLOAT64, sizeof(double), "float64"},
      {PF_LONGDOUBLE, sizeof(long double), NULL},
      {PF_COMPLEX64, 2 * sizeof(float), "complex64"},
      {PF_COMPLEX128, 2 * sizeof(double), "complex128"},
      {PF_CLONGDOUBLE, 2 * sizeof(long double), NULL},
  };
  assert_int_equal(PF_ARRAY_LEN(want), PF_DTYPE_COUNT);
  for (size_t i = 0; i < PF_ARRAY_LEN(want); i++) {
    assert_int_equal(want[i].dtype, (int)i);
    assert_int_equal(pf_dtype_size(want[i].dtype), want[i].size);
    const char *name = pf_dtype_name(want[i].dtype);
    assert_non_null(name);
    if (want[i].name != NULL) assert_string_equal(name, want[i].name);
    /* Every name parses back to its dtype. */
    pf_dtype back = PF_DTYPE_COUNT;
    assert_int_equal(pf_dtype_parse(name, &back), 0);
    assert_int_equal(back, want[i].dtype);
  }
  assert_int_equal(pf_dtype_size(PF_DTYPE_COUNT), 0);
  assert_int_equal(pf_dtype_size((pf_dtype)-1), 0);
  assert_int_equal(pf_dtype_size((pf_dtype)1000), 0);
  assert_null(pf_dtype_name(PF_DTYPE_COUNT));
  assert_null(pf_dtype_name((pf_dtype)-1));
}

static void test_dtype_parse_accepts(void **state) {
  (void)state;
  /* Spellings np.dtype() accepts on LP64 little-endian Linux. */
  static const struct {
    const char *text;
    pf_dtype dtype;
  } ok[] = {
      {"float64", PF_FLOAT64},   {"f8", PF_FLOAT64},
      {"<f8", PF_FLOAT64},       {"=f8", PF_FLOAT64},
      {"d", PF_FLOAT64},         {"double", PF_FLOAT64},
      {"float", PF_FLOAT64},     {"int", PF_INT64},
      {"int64", PF_INT64},       {"i8", PF_INT64},
      {"<i8", PF_INT64},         {"l", PF_INT64},
      {"q", PF_INT64},           {"intp", PF_INT64},
      {"int32", PF_INT32},       {"i4", PF_INT32},
      {"i", PF_INT32},           {"intc", PF_INT32},
      {"int16", PF_INT16},       {"i2", PF_INT16},
      {"h", PF_INT16},           {"int8", PF_INT8},
      {"i1", PF_INT8},           {"b", PF_INT8},
      {"|i1", PF_INT8},          {"byte", PF_INT8},
      {"uint8", PF_UINT8},       {"u1", PF_UINT8},
      {"|u1", PF_UINT8},         {"B", PF_UINT8},
      {"ubyte", PF_UINT8},       {"uint16", PF_UINT16},
      {"u2", PF_UINT16},         {"H", PF_UINT16},
      {"uint32", PF_UINT32},     {"u4", PF_UINT32},
      {"I", PF_UINT32},          {"uint64", PF_UINT64},
      {"u8", PF_UINT64},         {"Q", PF_UINT64},
      {"L", PF_UINT64},          {"uintp", PF_UINT64},
      {"?", PF_BOOL},            {"bool", PF_BOOL},
      {"b1", PF_BOOL},           {"|b1", PF_BOOL},
      {"complex128", PF_COMPLEX128}, {"c16", PF_COMPLEX128},
      {"<c16", PF_COMPLEX128},   {"D", PF_COMPLEX128},
      {"complex", PF_COMPLEX128}, {"complex64", PF_COMPLEX64},
      {"c8", PF_COMPLEX64},      {"F", PF_COMPLEX64},
      {"float16", PF_FLOAT16},   {"e", PF_FLOAT16},
      {"f2", PF_FLOAT16},        {"<f2", PF_FLOAT16},
      {"half", PF_FLOAT16},      {"float32", PF_FLOAT32},
      {"f4", PF_FLOAT32},        {"f", PF_FLOAT32},
      {"single", PF_FLOAT32},    {"longdouble", PF_LONGDOUBLE},
      {"g", PF_LONGDOUBLE},      {"clongdouble", PF_CLONGDOUBLE},
      {"G", PF_CLONGDOUBLE},
  };
  for (size_t i = 0; i < PF_ARRAY_LEN(ok); i++) {
    pf_dtype dtype = PF_DTYPE_COUNT;
    int rc = pf_dtype_parse(ok[i].text, &dtype);
    if (rc != 0 || dtype != ok[i].dtype)
      fail_msg("pf_dtype_parse(\"%s\") = %d, dtype %d; want 0, %d",
               ok[i].text, rc, (int)dtype, (int)ok[i].dtype);
  }
}

static void test_dtype_parse_rejects(void **state) {
  (void)state;
  static const char *bad[] = {
      ">f8", ">i4", "object", "O",  "U10", "",       "float65", "int65",
      "i3",  "S1",  "V8",     "M8", "m8",  "<",      "=",       "f8 ",
      " f8", "F8x", "<<f8",   "str", "datetime64", "Float64", "FLOAT64",
      "complex512",
  };
  for (size_t i = 0; i < PF_ARRAY_LEN(bad); i++) {
    pf_dtype dtype = PF_FLOAT64;
    int rc = pf_dtype_parse(bad[i], &dtype);
    if (rc != PF_EDTYPE)
      fail_msg("pf_dtype_parse(\"%s\") = %d (dtype %d); want PF_EDTYPE",
               bad[i], rc, (int)dtype);
  }
  pf_dtype dtype;
  assert_true(pf_dtype_parse(NULL, &dtype) < 0);
  assert_true(pf_dtype_parse("f8", NULL) < 0);
}

/* -------------------------------------------------------------- schedules */

static void test_schedule_names(void **state) {
  (void)state;
  static const struct {
    const char *name;
    pf_schedule schedule;
  } ok[] = {{"static", PF_SCHEDULE_STATIC},
            {"dynamic", PF_SCHEDULE_DYNAMIC},
            {"guided", PF_SCHEDULE_GUIDED}};
  for (size_t i = 0; i < PF_ARRAY_LEN(ok); i++) {
    pf_schedule s = (pf_schedule)-1;
    assert_int_equal(pf_schedule_parse(ok[i].name, &s), 0);
    assert_int_equal(s, ok[i].schedule);
    assert_string_equal(pf_schedule_name(ok[i].schedule), ok[i].name);
  }
  static const char *bad[] = {"", "Static", "DYNAMIC", "auto", "static ",
                              "guide", "runtime", "dynamic\n"};
  for (size_t i = 0; i < PF_ARRAY_LEN(bad); i++) {
    pf_schedule s = PF_SCHEDULE_GUIDED;
    assert_int_equal(pf_schedule_parse(bad[i], &s), PF_EINVAL);
    assert_int_equal(s, PF_SCHEDULE_GUIDED); /* untouched on failure */
  }
  pf_schedule s;
  assert_int_equal(pf_schedule_parse(NULL, &s), PF_EINVAL);
  assert_null(pf_schedule_name((pf_schedule)3));
  assert_null(pf_schedule_name((pf_schedule)-1));
}

/* ------------------------------------------------------------------ errors */

static void test_error_names(void **state) {
  (void)state;
  static const struct {
    int code;
    const char *name;
    const char *message;
  } table[] = {
#define ROW(name, value, message) {PF_##name, "PF_" #name, message},
      PF_ERRNO_MAP(ROW)
#undef ROW
  };
  for (size_t i = 0; i < PF_ARRAY_LEN(table); i++) {
    assert_true(table[i].code < 0);
    assert_int_equal(table[i].code, -(int)(i + 1)); /* dense, from -1 */
    assert_string_equal(pf_err_name(table[i].code), table[i].name);
    assert_string_equal(pf_strerror(table[i].code), table[i].message);
    for (size_t j = 0; j < i; j++) {
      assert_string_not_equal(pf_err_name(table[i].code),
                              pf_err_name(table[j].code));
      assert_string_not_equal(pf_strerror(table[i].code),
                              pf_strerror(table[j].code));
    }
  }
  static const int unknown[] = {1, 42, -(int)PF_ARRAY_LEN(table) - 1, -1000,
                                INT_MIN, INT_MAX};
  for (size_t i = 0; i < PF_ARRAY_LEN(unknown); i++) {
    assert_string_equal(pf_strerror(unknown[i]), "unknown error");
    const char *name = pf_err_name(unknown[i]);
    assert_non_null(name);
    for (size_t j = 0; j < PF_ARRAY_LEN(table); j++)
      assert_string_not_equal(name, table[j].name);
  }
  assert_non_null(pf_strerror(0));
  assert_non_null(pf_err_name(0));
  assert_string_not_equal(pf_strerror(0), "unknown error");
}

static void test_error_set(void **state) {
  (void)state;
  pf_error err;
  memset(&err, 0x55, sizeof err);
  assert_int_equal(pf__error_set(&err, PF_ESYNTAX, 7, "bad %s at %d", "x", 7),
                   PF_ESYNTAX);
  assert_int_equal(err.code, PF_ESYNTAX);
  assert_int_equal(err.position, 7);
  assert_int_equal(err.sys_errno, 0);
  assert_string_equal(err.message, "bad x at 7");
  /* NULL format: the code's message. */
  assert_int_equal(pf__error_set(&err, PF_ETIMEDOUT, -1, NULL), PF_ETIMEDOUT);
  assert_string_equal(err.message, "timed out");
  assert_int_equal(err.position, -1);
  /* System errors carry errno and its text. */
  assert_int_equal(pf__error_sys(&err, PF_ESYS, ENOENT, "open %s", "f"),
                   PF_ESYS);
  assert_int_equal(err.sys_errno, ENOENT);
  assert_int_equal(strncmp(err.message, "open f: ", 8), 0);
  assert_true(strlen(err.message) > 8);
  /* Long messages are truncated, still terminated. */
  char longer[2 * PF_ERROR_MESSAGE_SIZE];
  memset(longer, 'a', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  pf__error_set(&err, PF_EINVAL, -1, "%s", longer);
  assert_int_equal(strlen(err.message), PF_ERROR_MESSAGE_SIZE - 1);
  /* NULL err is allowed. */
  assert_int_equal(pf__error_set(NULL, PF_EINVAL, -1, "x"), PF_EINVAL);
  assert_string_equal(pf_version(), PF_VERSION);
}

/* --------------------------------------------------------------- cpu count */

static void test_cpu_count(void **state) {
  (void)state;
  int n = pf_cpu_count();
  assert_true(n >= 1);
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  assert_true(online >= 1);
  assert_true(n <= online);
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    assert_true(n <= CPU_COUNT(&set));
  assert_int_equal(pf_cpu_count(), n); /* stable */
}

/* ----------------------------------------------------------- shared memory */

static int global_word = 1;

static void test_shared_contains(void **state) {
  (void)state;
  long page = sysconf(_SC_PAGESIZE);
  size_t bytes = 3 * (size_t)page;
  char *shared = pf_shared_alloc(bytes);
  assert_non_null(shared);
  for (size_t i = 0; i < bytes; i++)
    if (shared[i] != 0) fail_msg("pf_shared_alloc memory not zeroed at %zu", i);
  shared[bytes - 1] = 1; /* writable */
  assert_int_equal(pf_shared_contains(shared, bytes), 1);
  assert_int_equal(pf_shared_contains(shared + 100, 200), 1);
  assert_int_equal(pf_shared_contains(shared + bytes - 1, 1), 1);

  /* Punch out the last page: a range running into the hole is not shared. */
  assert_int_equal(munmap(shared + 2 * page, (size_t)page), 0);
  assert_int_equal(pf_shared_contains(shared, 2 * (size_t)page), 1);
  assert_int_equal(pf_shared_contains(shared, 2 * (size_t)page + 1), 0);
  assert_int_equal(pf_shared_contains(shared + 2 * page, 1), 0);

  /* A private mapping is not shared, even right after a shared one. */
  char *priv = mmap(shared + 2 * page, (size_t)page, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (priv != MAP_FAILED) {
    assert_ptr_equal(priv, shared + 2 * page);
    assert_int_equal(pf_shared_contains(priv, 1), 0);
    assert_int_equal(pf_shared_contains(shared, bytes), 0);
    munmap(priv, (size_t)page);
  }
  /* A length that wraps around the address space is never shared. */
  assert_int_equal(pf_shared_contains(shared, SIZE_MAX), 0);
  assert_int_equal(pf_shared_contains(shared + page, SIZE_MAX - 10), 0);
  pf_shared_free(shared, 2 * (size_t)page);

  char *heap = malloc(4096);
  assert_non_null(heap);
  assert_int_equal(pf_shared_contains(heap, 4096), 0);
  free(heap);
  char stack[256];
  memset(stack, 0, sizeof stack);
  assert_int_equal(pf_shared_contains(stack, sizeof stack), 0);
  assert_int_equal(pf_shared_contains(&global_word, sizeof global_word), 0);

  errno = 0;
  assert_null(pf_shared_alloc(0));
  assert_int_equal(errno, EINVAL);
  pf_shared_free(NULL, 100); /* no-op */
}

/* xorshift64: reproducible layouts for the overlap test. */
static uint64_t overlap_rand(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* Whether two elements of `a` truly share a byte: every pair of elements'
 * byte ranges compared (small arrays only). */
static int brute_overlaps(const pf_array *a) {
  int64_t size = 1;
  for (int d = 0; d < a->ndim; d++) size *= a->shape[d];
  int64_t item = (int64_t)pf_dtype_size(a->dtype);
  int64_t offsets[512];
  assert_true(size <= 512);
  for (int64_t f = 0; f < size; f++) offsets[f] = pf__offset_of(a, f);
  for (int64_t x = 0; x < size; x++)
    for (int64_t y = x + 1; y < size; y++) {
      int64_t lo = offsets[x] < offsets[y] ? offsets[x] : offsets[y];
      int64_t hi = offsets[x] < offsets[y] ? offsets[y] : offsets[x];
      if (hi - lo < item) return 1;
    }
  return 0;
}

static void test_overlaps(void **state) {
  (void)state;
  pf_array a = {.dtype = PF_FLOAT64, .ndim = 2, .shape = {3, 4}};
  pf_array_set_contiguous(&a);
  assert_int_equal(pf_array_overlaps(&a), 0);
  int64_t c_strides[2] = {a.strides[0], a.strides[1]};
  a.strides[0] = 8;  /* Fortran order */
  a.strides[1] = 24;
  assert_int_equal(pf_array_overlaps(&a), 0);
  a.strides[0] = -c_strides[0]; /* reversed rows */
  a.strides[1] = c_strides[1];
  assert_int_equal(pf_array_overlaps(&a), 0);
  a.strides[0] = 0; /* as_strided with a zero stride */
  assert_int_equal(pf_array_overlaps(&a), 1);
  a.strides[0] = 16; /* rows overlap: 4 elements span 32 bytes */
  a.strides[1] = 8;
  assert_int_equal(pf_array_overlaps(&a), 1);
  a.strides[1] = 4; /* elements overlap themselves */
  a.strides[0] = 64;
  assert_int_equal(pf_array_overlaps(&a), 1);
  a.shape[1] = 1; /* a length-1 axis's stride never matters */
  a.strides[1] = 0;
  assert_int_equal(pf_array_overlaps(&a), 0);
  a.shape[0] = 0; /* no elements: nothing overlaps */
  a.strides[0] = 0;
  assert_int_equal(pf_array_overlaps(&a), 0);
  pf_array s = {.dtype = PF_INT32, .ndim = 0};
  assert_int_equal(pf_array_overlaps(&s), 0);
  /* Extreme strides: no overflow in the check. */
  pf_array e = {.dtype = PF_UINT8, .ndim = 2, .shape = {2, 2},
                .strides = {INT64_MIN, INT64_MAX}};
  assert_int_equal(pf_array_overlaps(&e), 0); /* 0, MAX, MIN, -1: distinct */
  e.strides[0] = INT64_MAX; /* 0, MAX, MAX, 2 MAX */
  assert_int_equal(pf_array_overlaps(&e), 1);
  /* 2**62 * 4 = 2**64 saturates instead of wrapping to 0; and element
   * (4, 1) is element (2, 0): 4 * 2**62 - 2**63 = 2 * 2**62. */
  e.shape[0] = 5;
  e.strides[0] = INT64_MAX / 2 + 1;
  e.strides[1] = INT64_MIN;
  assert_int_equal(pf_array_overlaps(&e), 1);

  /* Random small layouts: never a miss (a real overlap reported as none),
   * and a layout sorted like NumPy's views is never a false alarm. */
  uint64_t rng = 12345;
  int misses = 0, views = 0;
  for (int trial = 0; trial < 20000; trial++) {
    pf_array r = {.dtype = (trial & 1) ? PF_FLOAT64 : PF_INT16};
    r.ndim = 1 + (int)(overlap_rand(&rng) % 3);
    for (int d = 0; d < r.ndim; d++) {
      r.shape[d] = 1 + (int64_t)(overlap_rand(&rng) % 5);
      r.strides[d] = (int64_t)(overlap_rand(&rng) % 97) - 48;
    }
    int truth = brute_overlaps(&r);
    if (truth) assert_int_equal(pf_array_overlaps(&r), 1);
    misses += truth && !pf_array_overlaps(&r);
    /* A strided view of a C-contiguous array: never overlapping. */
    pf_array v = r;
    int64_t step = (int64_t)pf_dtype_size(v.dtype);
    for (int d = v.ndim - 1; d >= 0; d--) {
      int64_t k = 1 + (int64_t)(overlap_rand(&rng) % 3);
      v.strides[d] = (trial & 2 ? -1 : 1) * step * k;
      step *= k * v.shape[d];
    }
    assert_int_equal(brute_overlaps(&v), 0);
    assert_int_equal(pf_array_overlaps(&v), 0);
    views++;
  }
  assert_int_equal(misses, 0);
  assert_int_equal(views, 20000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shape_size_basic),
      cmocka_unit_test(test_shape_size_overflow),
      cmocka_unit_test(test_shape_size_invalid),
      cmocka_unit_test(test_shape_size_random),
      cmocka_unit_test(test_unravel_odometer),
      cmocka_unit_test(test_index_next),
      cmocka_unit_test(test_offset_of),
      cmocka_unit_test(test_contiguous),
      cmocka_unit_test(test_overlaps),
      cmocka_unit_test(test_dtype_size_name),
      cmocka_unit_test(test_dtype_parse_accepts),
      cmocka_unit_test(test_dtype_parse_rejects),
      cmocka_unit_test(test_schedule_names),
      cmocka_unit_test(test_error_names),
      cmocka_unit_test(test_error_set),
      cmocka_unit_test(test_cpu_count),
      cmocka_unit_test(test_shared_contains),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
