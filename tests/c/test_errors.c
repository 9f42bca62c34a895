/*
 * test_errors.c -- the argument errors of the public calls that no other test
 * takes: each must return its documented code with a message, write nothing,
 * leak nothing (the ASan build of this test checks) and, for native fills
 * with a release callback, release the caller's context exactly once.
 */
#include <string.h>

#include "internal.h"
#include "pf_test.h"

static int count_kernel(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *fw) {
  (void)fw;
  for (int64_t k = 0; k < count; k++) ((double *)out)[k] = (double)(start + k);
  (*(int *)ctx)++;
  return 0;
}

static double element(int64_t i) { return (double)i; }

static int released;
static void *released_ctx;
static void release(void *ctx) {
  released_ctx = ctx;
  released++;
}

/* A 1-D float64 array over `data` (n elements). */
static pf_array vector(double *data, int64_t n) {
  pf_array a = {.data = data, .dtype = PF_FLOAT64, .ndim = 1, .shape = {n}};
  pf_array_set_contiguous(&a);
  return a;
}

static void test_fill_arguments(void **state) {
  (void)state;
  double data[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
  int calls = 0;
  pf_error err;
  pf_array a = vector(data, 8);
  assert_int_equal(pf_fill(NULL, count_kernel, &calls, NULL, &err), PF_EINVAL);
  assert_int_equal(err.code, PF_EINVAL);
  assert_true(strlen(err.message) > 0);
  assert_int_equal(pf_fill(&a, NULL, &calls, NULL, &err), PF_EINVAL);
  pf_array bad = a;
  bad.dtype = (pf_dtype)PF_DTYPE_COUNT;
  assert_int_equal(pf_fill(&bad, count_kernel, &calls, NULL, &err), PF_EDTYPE);
  bad = a;
  bad.shape[0] = -1;
  assert_int_equal(pf_fill(&bad, count_kernel, &calls, NULL, &err), PF_EINVAL);
  bad = a;
  bad.ndim = PF_MAX_DIMS + 1;
  assert_int_equal(pf_fill(&bad, count_kernel, &calls, NULL, &err), PF_EINVAL);
  bad = a;
  bad.ndim = 2;
  bad.shape[0] = bad.shape[1] = INT64_C(1) << 40; /* 2**80 elements */
  assert_int_equal(pf_fill(&bad, count_kernel, &calls, NULL, &err), PF_EOVERFLOW);
  bad = a;
  bad.data = NULL;
  assert_int_equal(pf_fill(&bad, count_kernel, &calls, NULL, &err), PF_EINVAL);
  bad = a;
  bad.strides[0] = 0; /* every element on the same bytes */
  assert_int_equal(pf_fill(&bad, count_kernel, &calls, NULL, &err), PF_EINVAL);
  assert_string_equal(err.message, PF_OVERLAP_MESSAGE);
  /* None of them ran the kernel or wrote anything. */
  assert_int_equal(calls, 0);
  for (int k = 0; k < 8; k++) assert_true(data[k] == -1);
  /* err may be NULL: the code alone. */
  assert_int_equal(pf_fill(NULL, count_kernel, &calls, NULL, NULL), PF_EINVAL);
  /* And the same array fills once the arguments are right. */
  assert_int_equal(pf_fill(&a, count_kernel, &calls, NULL, &err), 0);
  for (int k = 0; k < 8; k++) assert_true(data[k] == k);
}

static void test_native_arguments(void **state) {
  (void)state;
  double data[4] = {-1, -1, -1, -1};
  pf_array a = vector(data, 4);
  pf_error err;
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.release = release;
  struct {
    pf_native native;
    const pf_native *pass;
    const pf_array *out;
    const char *message;
  } cases[] = {
      {{PF_NATIVE_ELEMENT, .fn.element = element, .ctx = &released}, NULL, &a, NULL},
      {{PF_NATIVE_ELEMENT, .fn.element = element, .ctx = &released}, (void *)1, NULL,
       "no function or output array"},
      {{PF_NATIVE_ELEMENT, .fn.element = NULL, .ctx = &released}, (void *)1, &a,
       "the native function is NULL"},
      {{PF_NATIVE_INDEX, .fn.index = NULL, .ctx = &released}, (void *)1, &a,
       "the native function is NULL"},
      {{PF_NATIVE_BLOCK, .fn.block = NULL, .ctx = &released}, (void *)1, &a,
       "the native function is NULL"},
      {{(pf_native_kind)7, .fn.element = element, .ctx = &released}, (void *)1, &a,
       "unknown native function kind 7"},
  };
  for (size_t c = 0; c < PF_ARRAY_LEN(cases); c++) {
    const pf_native *n = cases[c].pass != NULL ? &cases[c].native : NULL;
    released = 0;
    int rc = pf_native_fill(n, cases[c].out, &o, &err);
    assert_int_equal(rc, PF_EINVAL);
    if (cases[c].message != NULL) assert_string_equal(err.message, cases[c].message);
    /* The context is released once, also when the call is refused (with no
     * native there is no context: release(NULL)). */
    assert_int_equal(released, 1);
    assert_ptr_equal(released_ctx, n != NULL ? (void *)&released : NULL);
  }
  pf_array deep = a;
  deep.ndim = PF_MAX_DIMS + 1;
  pf_native ok = {PF_NATIVE_ELEMENT, .fn.element = element, .ctx = &released};
  released = 0;
  assert_int_equal(pf_native_fill(&ok, &deep, &o, &err), PF_EINVAL);
  assert_int_equal(released, 1);
  for (int k = 0; k < 4; k++) assert_true(data[k] == -1);
  /* Without a release callback, a bad shape is pf_fill's error. */
  pf_array neg = a;
  neg.shape[0] = -3;
  assert_int_equal(pf_native_fill(&ok, &neg, NULL, &err), PF_EINVAL);
  /* Out of memory for the released job: the context is released, once. */
  released = 0;
  pf__alloc_fail_nth(1);
  assert_int_equal(pf_native_fill(&ok, &a, &o, &err), PF_ENOMEM);
  pf__alloc_fail_nth(0);
  assert_int_equal(released, 1);
  for (int k = 0; k < 4; k++) assert_true(data[k] == -1);
  released = 0;
  assert_int_equal(pf_native_fill(&ok, &a, &o, &err), 0);
  for (int k = 0; k < 4; k++) assert_true(data[k] == k);
}

static void test_random_arguments(void **state) {
  (void)state;
  const uint64_t key[2] = {1, 2};
  pf_error err;
  double data[4] = {-1, -1, -1, -1};
  pf_array a = vector(data, 4);
  assert_int_equal(pf_random_fill(NULL, PF_RANDOM_UNIFORM, key, 0, NULL, &err),
                   PF_EINVAL);
  assert_int_equal(pf_random_fill(&a, PF_RANDOM_UNIFORM, NULL, 0, NULL, &err),
                   PF_EINVAL);
  assert_int_equal(pf_random_fill(&a, (pf_random_dist)5, key, 0, NULL, &err),
                   PF_EINVAL);
  assert_string_equal(err.message, "unknown distribution 5");
  int64_t ints[4] = {-1, -1, -1, -1};
  pf_array i = {.data = ints, .dtype = PF_INT64, .ndim = 1, .shape = {4}};
  pf_array_set_contiguous(&i);
  assert_int_equal(pf_random_fill(&i, PF_RANDOM_NORMAL, key, 0, NULL, &err),
                   PF_EDTYPE);
  assert_non_null(strstr(err.message, "not int64"));
  i.dtype = (pf_dtype)-5;
  assert_int_equal(pf_random_fill(&i, PF_RANDOM_UNIFORM, key, 0, NULL, &err),
                   PF_EDTYPE);
  assert_non_null(strstr(err.message, "an unknown dtype"));
  for (int k = 0; k < 4; k++) assert_true(data[k] == -1 && ints[k] == -1);
}

static void test_names_and_parsers(void **state) {
  (void)state;
  pf_dtype t = PF_INT8;
  assert_int_equal(pf_dtype_parse(NULL, &t), PF_EINVAL);
  assert_int_equal(pf_dtype_parse("float64", NULL), PF_EINVAL);
  assert_int_equal(pf_dtype_parse(">f8", &t), PF_EDTYPE); /* big-endian */
  assert_int_equal(pf_dtype_parse("object", &t), PF_EDTYPE);
  assert_int_equal(t, PF_INT8); /* untouched on failure */
  assert_int_equal(pf_dtype_size((pf_dtype)PF_DTYPE_COUNT), 0);
  assert_null(pf_dtype_name((pf_dtype)-1));
  pf_schedule s = PF_SCHEDULE_STATIC;
  assert_int_equal(pf_schedule_parse("fastest", &s), PF_EINVAL);
  assert_int_equal(pf_schedule_parse(NULL, &s), PF_EINVAL);
  assert_int_equal(s, PF_SCHEDULE_STATIC);
  assert_null(pf_schedule_name((pf_schedule)99));
  assert_string_equal(pf_strerror(12345), "unknown error");
  assert_string_equal(pf_err_name(12345), "PF_UNKNOWN");
  assert_string_equal(pf_err_name(0), "PF_OK");
  assert_string_equal(pf_strerror(PF_ETIMEDOUT), "timed out");
  /* A system error appends errno's text; a NULL err only returns the code. */
  pf_error err;
  assert_int_equal(pf__error_sys(&err, PF_ESYS, ENOENT, "open %s", "x"), PF_ESYS);
  assert_string_equal(err.message, "open x: No such file or directory");
  assert_int_equal(err.sys_errno, ENOENT);
  assert_int_equal(pf__error_set(NULL, PF_EIO, 3, "ignored"), PF_EIO);
}

static void test_shapes_and_indices(void **state) {
  (void)state;
  int64_t size = 7;
  const int64_t neg[2] = {3, -1};
  assert_int_equal(pf_shape_size(2, neg, 1, &size), PF_EINVAL);
  assert_int_equal(pf_shape_size(-1, neg, 1, &size), PF_EINVAL);
  assert_int_equal(pf_shape_size(PF_MAX_DIMS + 1, neg, 1, &size), PF_EINVAL);
  const int64_t big[2] = {INT64_C(1) << 32, (INT64_C(1) << 31) - 1};
  assert_int_equal(pf_shape_size(2, big, 1, &size), 0);
  assert_true(size == INT64_MAX - (INT64_C(1) << 32) + 1);
  const int64_t just_over[2] = {INT64_C(1) << 32, INT64_C(1) << 31}; /* 2**63 */
  assert_int_equal(pf_shape_size(2, just_over, 1, &size), PF_EOVERFLOW);
  const int64_t huge[2] = {INT64_C(1) << 32, INT64_C(1) << 32};
  assert_int_equal(pf_shape_size(2, huge, 1, &size), PF_EOVERFLOW);
  /* Fits in elements, not in bytes. */
  const int64_t bytes[1] = {INT64_C(1) << 61};
  assert_int_equal(pf_shape_size(1, bytes, 1, &size), 0);
  assert_int_equal(pf_shape_size(1, bytes, 8, &size), PF_EOVERFLOW);
  /* An empty axis: unravel gives zeros (no division by zero). */
  const int64_t empty[3] = {4, 0, 5};
  int64_t index[3] = {9, 9, 9};
  pf_index_unravel(3, empty, 0, index);
  assert_true(index[0] == 0 && index[1] == 0 && index[2] == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fill_arguments),
      cmocka_unit_test(test_native_arguments),
      cmocka_unit_test(test_random_arguments),
      cmocka_unit_test(test_names_and_parsers),
      cmocka_unit_test(test_shapes_and_indices),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
