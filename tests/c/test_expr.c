/* test_expr.c -- the expression engine: syntax, types, values, casts, fills.
 *
 * Values are checked against known answers (NumPy's, for the awkward cases:
 * signed zeros, division by zero, wrap-around, float-to-int casts) and
 * against plain C loops over the index space. */
#include "pf_test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "philox.h"

/* ------------------------------------------------------------- helpers */

/* The instruction set the tests of the per-ISA group run under: main runs
 * that group once for each level this machine supports, highest first. */
static int test_isa = PF__ISA_AVX512;
static const char *const isa_names[] = {"scalar", "AVX2", "AVX-512"};

/* pf_expr_compile's steps with the instruction set lowered before the
 * compiler runs, so that constant folding (which runs the VM) uses it too;
 * pf__expr_set_isa after pf_expr_compile would only reach the fills. For
 * valid arguments only (pf_expr_compile checks them). */
static int compile_at(pf_expr **expr, const char *text, int ndim,
                      const pf_param *params, size_t nparams, int isa,
                      pf_error *err) {
  *expr = NULL;
  pf__ast ast;
  int rc = pf__parse(text, (int32_t)strlen(text), &ast, err);
  if (rc != 0) return rc;
  pf_expr *e = pf__calloc(1, sizeof *e);
  assert_non_null(e);
  e->ndim = ndim;
  e->isa = pf__vm_isa() < isa ? pf__vm_isa() : isa;
  rc = pf__compile(e, text, &ast, params, nparams, err);
  pf__ast_free(&ast);
  if (rc != 0) {
    pf_expr_free(e);
    return rc;
  }
  *expr = e;
  return 0;
}

static pf_expr *compile_ok(const char *text, int ndim, const pf_param *params,
                           size_t nparams) {
  pf_expr *e = NULL;
  pf_error err;
  int rc = compile_at(&e, text, ndim, params, nparams, test_isa, &err);
  if (rc != 0) fail_msg("%s: %s (at %lld)", text, err.message,
                        (long long)err.position);
  return e;
}

/* Evaluates a 1-d expression of n elements to float64. */
static void eval_f(const char *text, int64_t n, double *out) {
  pf_expr *e = compile_ok(text, 1, NULL, 0);
  pf_error err;
  assert_int_equal(pf__expr_eval_block(e, &n, PF_FLOAT64, 0, n, out, &err), 0);
  pf_expr_free(e);
}

static void eval_i(const char *text, int64_t n, int64_t *out) {
  pf_expr *e = compile_ok(text, 1, NULL, 0);
  pf_error err;
  assert_int_equal(pf__expr_eval_block(e, &n, PF_INT64, 0, n, out, &err), 0);
  pf_expr_free(e);
}

/* The single value of a constant expression, as float64 / int64. */
static double value_f(const char *text) {
  double v;
  eval_f(text, 1, &v);
  return v;
}
static int64_t value_i(const char *text) {
  int64_t v;
  eval_i(text, 1, &v);
  return v;
}

static int same_double(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return a == b && signbit(a) == signbit(b);
}

static int64_t ulps(double a, double b) {
  if (same_double(a, b)) return 0;
  if (isnan(a) || isnan(b) || isinf(a) || isinf(b)) return INT64_MAX;
  int64_t x, y;
  memcpy(&x, &a, 8);
  memcpy(&y, &b, 8);
  if (x < 0) x = INT64_MIN - x;
  if (y < 0) y = INT64_MIN - y;
  return x > y ? x - y : y - x;
}

/* -------------------------------------------------------------- errors */

typedef struct {
  const char *text;
  int ndim;
  int code;
  int64_t position;
} error_case;

static void test_errors(void **state) {
  (void)state;
  static const error_case cases[] = {
      {"", 1, PF_ESYNTAX, 0},
      {"   ", 1, PF_ESYNTAX, 3},
      {"1 +", 1, PF_ESYNTAX, 3},
      {"(i + 1", 1, PF_ESYNTAX, 0},
      {"i + 1)", 1, PF_ESYNTAX, 5},
      {"i j", 1, PF_ESYNTAX, 2},
      {"i $ 2", 1, PF_ESYNTAX, 2},
      {"i ^ 2", 1, PF_ESYNTAX, 2},
      {"i = 2", 1, PF_ESYNTAX, 2},
      {"i << 2", 1, PF_ESYNTAX, 2},
      {"1e", 1, PF_ESYNTAX, 0},
      {"1.2.3", 1, PF_ESYNTAX, 0},
      {"12abc", 1, PF_ESYNTAX, 0},
      {"007", 1, PF_ESYNTAX, 0},
      {"99999999999999999999", 1, PF_ESYNTAX, 0},
      {"9223372036854775808", 1, PF_ESYNTAX, 0},
      {"i and j", 1, PF_ESYNTAX, 2},
      {"sin(i,", 1, PF_ESYNTAX, 6},
      {"sin(1, 2, 3, 4)", 1, PF_ESYNTAX, 13},
      {"i + \xc3\xa9", 1, PF_ESYNTAX, 4},
      {"foo + 1", 1, PF_ENAME, 0},
      {"2 * k", 2, PF_ENAME, 4},
      {"i5", 5, PF_ENAME, 0},
      {"n1", 1, PF_ENAME, 0},
      {"i32", 1, PF_ENAME, 0},
      {"frobnicate(i)", 1, PF_ENAME, 0},
      {"1 + uniform(i)", 1, PF_ETYPE, 12},
      {"normal(-1)", 1, PF_ETYPE, 7},
      {"uniform(1.5)", 1, PF_ETYPE, 8},
      {"uniform(n0)", 1, PF_ETYPE, 8},
      {"uniform(1, 2)", 1, PF_ETYPE, 0},
      {"sin", 1, PF_ESYNTAX, 0},
      {"sin(i, j)", 2, PF_ETYPE, 0},
      {"where(i, j)", 2, PF_ETYPE, 0},
      {"i * 0.5 & 1", 1, PF_ETYPE, 8},
      {"~(i * 0.5)", 1, PF_ETYPE, 0},
      {"(i < 1) - (i < 2)", 1, PF_ETYPE, 8},
      {"-(i < 1)", 1, PF_ETYPE, 0},
      {"+True", 1, PF_ETYPE, 0},
      {"sign(i < 2)", 1, PF_ETYPE, 0},
  };
  for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
    pf_expr *e = (pf_expr *)&e; /* must be reset to NULL on failure */
    pf_error err;
    memset(&err, 0, sizeof err);
    int rc = pf_expr_compile(&e, cases[k].text, cases[k].ndim, NULL, 0, &err);
    if (rc != cases[k].code || err.position != cases[k].position)
      fail_msg("'%s': got %s at %lld (%s), want %s at %lld", cases[k].text,
               pf_err_name(rc), (long long)err.position, err.message,
               pf_err_name(cases[k].code), (long long)cases[k].position);
    assert_int_equal(err.code, rc);
    assert_null(e);
    assert_true(strlen(err.message) > 0);
  }
}

static void test_error_messages(void **state) {
  (void)state;
  pf_expr *e;
  pf_error err;
  assert_int_equal(pf_expr_compile(&e, "a * missing", 1, NULL, 0, &err),
                   PF_ENAME);
  assert_non_null(strstr(err.message, "'a'"));
  assert_int_equal(pf_expr_compile(&e, "uniform(i)", 1, NULL, 0, &err),
                   PF_ETYPE);
  assert_non_null(strstr(err.message, "non-negative integer constant"));
  /* err may be NULL */
  assert_int_equal(pf_expr_compile(&e, "(", 1, NULL, 0, NULL), PF_ESYNTAX);
  assert_int_equal(pf_expr_compile(NULL, "1", 1, NULL, 0, &err), PF_EINVAL);
  assert_int_equal(pf_expr_compile(&e, NULL, 1, NULL, 0, &err), PF_EINVAL);
  assert_int_equal(pf_expr_compile(&e, "1", 33, NULL, 0, &err), PF_EINVAL);
  assert_int_equal(pf_expr_compile(&e, "1", 1, NULL, 1, &err), PF_EINVAL);
  pf_param bad = {.name = NULL, .kind = PF_PARAM_INT, .i = 1};
  assert_int_equal(pf_expr_compile(&e, "1", 1, &bad, 1, &err), PF_EINVAL);
  pf_param twice[] = {{.name = "a", .kind = PF_PARAM_INT, .i = 1},
                      {.name = "a", .kind = PF_PARAM_INT, .i = 2}};
  assert_int_equal(pf_expr_compile(&e, "i + a", 1, twice, 2, &err), PF_EINVAL);
  assert_int_equal(err.position, 4);
  pf_param builtin = {.name = "e", .kind = PF_PARAM_FLOAT, .f = 2.0};
  assert_int_equal(pf_expr_compile(&e, "i * e", 1, &builtin, 1, &err),
                   PF_EINVAL);
  pf_expr_free(NULL);
}

static void test_limits(void **state) {
  (void)state;
  pf_expr *e;
  pf_error err;
  /* Nesting beyond the limit, with each kind of nesting. */
  const char *openers[] = {"(", "-", "sin(", "2**"};
  for (size_t k = 0; k < PF_ARRAY_LEN(openers); k++) {
    size_t len = strlen(openers[k]);
    char *text = calloc(len * 200 + 2, 1);
    for (int d = 0; d < 200; d++) memcpy(text + d * len, openers[k], len);
    text[len * 200] = 'i';
    assert_int_equal(pf_expr_compile(&e, text, 1, NULL, 0, &err), PF_ELIMIT);
    free(text);
  }
  /* Too long. */
  char *text = malloc(PF__EXPR_MAX_LENGTH + 2);
  memset(text, ' ', PF__EXPR_MAX_LENGTH + 1);
  text[0] = '1';
  text[PF__EXPR_MAX_LENGTH + 1] = '\0';
  assert_int_equal(pf_expr_compile(&e, text, 1, NULL, 0, &err), PF_ELIMIT);
  /* A long flat chain is fine: i+i+...+i (30000 terms), no deep recursion. */
  for (int k = 0; k < 30000; k++) memcpy(text + 2 * k, "i+", 2);
  memcpy(text + 2 * 30000 - 1, "\0", 1);
  e = compile_ok(text, 1, NULL, 0);
  int64_t n = 3, out[3];
  assert_int_equal(pf__expr_eval_block(e, &n, PF_INT64, 0, 3, out, &err), 0);
  assert_int_equal(out[2], 2 * 30000);
  pf_expr_free(e);
  free(text);
}

/* --------------------------------------------------------------- types */

static void test_types(void **state) {
  (void)state;
  static const struct {
    const char *text;
    pf_dtype type;
  } cases[] = {
      {"i", PF_INT64},          {"i + 1", PF_INT64},
      {"i * 2 // 3 % 4", PF_INT64}, {"i ** 2", PF_INT64},
      {"i ** -1", PF_FLOAT64},  {"i / 2", PF_FLOAT64},
      {"i + 0.5", PF_FLOAT64},  {"sqrt(i)", PF_FLOAT64},
      {"abs(i)", PF_INT64},     {"floor(i)", PF_INT64},
      {"rint(i)", PF_FLOAT64},  {"minimum(i, 2)", PF_INT64},
      {"i < 2", PF_BOOL},       {"(i < 2) & (i > 0)", PF_BOOL},
      {"(i < 2) + 1", PF_INT64}, {"(i < 2) + (i > 5)", PF_BOOL},
      {"(i < 2) // (i > 5)", PF_INT64}, {"~(i < 2)", PF_BOOL},
      {"where(i < 2, i, 2.5)", PF_FLOAT64}, {"where(i, True, False)", PF_BOOL},
      {"True", PF_BOOL},        {"pi", PF_FLOAT64},
      {"size - idx", PF_INT64}, {"square(i < 3)", PF_INT64},
      {"fmod(i, 3)", PF_INT64}, {"copysign(i, -1)", PF_FLOAT64},
  };
  for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
    pf_expr *e = compile_ok(cases[k].text, 1, NULL, 0);
    if (pf_expr_type(e) != cases[k].type)
      fail_msg("%s: type %s", cases[k].text, pf_dtype_name(pf_expr_type(e)));
    pf_expr_free(e);
  }
}

/* -------------------------------------------------------------- values */

static void test_integer_arithmetic(void **state) {
  (void)state;
  assert_int_equal(value_i("7 // 2"), 3);
  assert_int_equal(value_i("-7 // 2"), -4);
  assert_int_equal(value_i("7 // -2"), -4);
  assert_int_equal(value_i("-7 // -2"), 3);
  assert_int_equal(value_i("7 % -2"), -1);
  assert_int_equal(value_i("-7 % 2"), 1);
  assert_int_equal(value_i("fmod(-7, 2)"), -1);
  assert_int_equal(value_i("7 // 0"), 0);
  assert_int_equal(value_i("7 % 0"), 0);
  assert_int_equal(value_i("fmod(7, 0)"), 0);
  assert_int_equal(value_i("-9223372036854775808 // -1"), INT64_MIN);
  assert_int_equal(value_i("-9223372036854775808 % -1"), 0);
  assert_int_equal(value_i("9223372036854775807 + 1"), INT64_MIN);
  assert_int_equal(value_i("-(-9223372036854775808)"), INT64_MIN);
  assert_int_equal(value_i("abs(-9223372036854775808)"), INT64_MIN);
  assert_int_equal(value_i("3 ** 40"), (int64_t)-6289078614652622815LL);
  assert_int_equal(value_i("0 ** 0"), 1);
  assert_int_equal(value_i("-2 ** 2"), -4);
  assert_int_equal(value_i("2 ** 3 ** 2"), 512);
  assert_int_equal(value_i("~5"), -6);
  assert_int_equal(value_i("6 & 3 | 8"), 10);
  assert_int_equal(value_i("sign(-5) + sign(0) * 10 + sign(7) * 100"), 99);
  assert_int_equal(value_i("square(3037000500)"), -9223372036709301616LL);
  assert_int_equal(value_i("minimum(3, -2) + maximum(3, -2) * 10"), 28);
  /* Per element: i ** (j - 2) fails where the exponent is negative, and
   * says where. */
  pf_expr *e = compile_ok("1 + i ** (j - 2)", 2, NULL, 0);
  int64_t shape[2] = {2, 4}, out[8];
  pf_error err;
  assert_int_equal(pf__expr_eval_block(e, shape, PF_INT64, 0, 8, out, &err),
                   PF_ETYPE);
  assert_int_equal(err.position, 6);
  assert_int_equal(pf__expr_eval_block(e, shape, PF_INT64, 2, 2, out, &err), 0);
  assert_int_equal(out[0], 2);
  assert_int_equal(out[1], 1);
  pf_expr_free(e);
}

static void test_float_arithmetic(void **state) {
  (void)state;
  static const struct {
    const char *text;
    double value;
  } cases[] = {
      {"7.5 // 2", 3.0},        {"-7.5 // 2", -4.0},
      {"7.5 % -2", -0.5},       {"-7.5 % 2", 0.5},
      {"5.0 % -5.0", -0.0},     {"-5.0 % 5.0", 0.0},
      {"-0.0 // 2.0", -0.0},    {"-5.0 // 10.0", -1.0},
      {"1.0 // 0.0", INFINITY}, {"-1.0 // 0.0", -INFINITY},
      {"0.0 // 0.0", NAN},      {"1.0 % 0.0", NAN},
      {"-3.0 // inf", -1.0},    {"-3.0 % inf", INFINITY},
      {"3.0 % inf", 3.0},       {"inf // 3", NAN},
      {"1 / 0", INFINITY},      {"0 / 0", NAN},
      {"-1 / 0", -INFINITY},    {"7.5 // 0.1", 74.0},
      {"sign(-0.0)", 0.0},      {"sign(nan)", NAN},
      {"rint(2.5)", 2.0},       {"rint(-0.4)", -0.0},
      {"floor(-2.5)", -3.0},    {"ceil(-2.5)", -2.0},
      {"trunc(-2.5)", -2.0},    {"abs(-0.0)", 0.0},
      {"minimum(0.0, -0.0)", -0.0}, {"minimum(-0.0, 0.0)", 0.0},
      {"maximum(0.0, -0.0)", -0.0}, {"minimum(nan, 1)", NAN},
      {"maximum(1, nan)", NAN}, {"copysign(3, -0.0)", -3.0},
      {"fmod(-7.5, 2)", -1.5},  {"sqrt(-1)", NAN},
      {"sqrt(-0.0)", -0.0},     {"(-0.0)**0.5", 0.0},
      {"2 ** -1", 0.5},         {"e", 2.718281828459045},
      {"pi", 3.141592653589793}, {".5 + 1. + 1e1 + 2.5E-1", 11.75},
      {"1e999", INFINITY},      {"nan != nan", 1.0},
      {"nan == nan", 0.0},      {"where(nan, 1, 2)", 1.0},
  };
  for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
    double v = value_f(cases[k].text);
    if (!same_double(v, cases[k].value))
      fail_msg("%s = %.17g, want %.17g", cases[k].text, v, cases[k].value);
  }
}

/* Every element of an N-d fill equals a C loop over the index space, for
 * shapes whose blocks split runs of every axis, starting anywhere. */
static void test_index_variables(void **state) {
  (void)state;
  static const int64_t shapes[][4] = {
      {5000, 1, 1, 1}, {3, 1031, 1, 1}, {7, 1, 5, 300}, {2, 3, 4, 5},
      {1, 1, 1, 2053}, {4099, 1, 1, 1}, {1, 1, 1, 1},
  };
  static const int ndims[] = {1, 2, 4, 4, 4, 2, 3};
  for (size_t s = 0; s < PF_ARRAY_LEN(shapes); s++) {
    int ndim = ndims[s];
    const int64_t *shape = shapes[s];
    int64_t size = 1;
    for (int d = 0; d < ndim; d++) size *= shape[d];
    const char *text =
        ndim == 1   ? "i * 1000003 + idx * 7 + size + n0"
        : ndim == 2 ? "i * 1000003 + j * 1009 + idx * 7 + size + n1"
        : ndim == 3 ? "i * 1000003 + j * 1009 + k * 31 + idx * 7 + size"
                    : "i * 1000003 + j * 1009 + k * 31 + l + idx * 7 + n3";
    pf_expr *e = compile_ok(text, ndim, NULL, 0);
    int64_t *out = malloc((size_t)size * sizeof *out);
    double *outf = malloc((size_t)size * sizeof *outf);
    pf_error err;
    /* In pieces, so blocks start in the middle of runs. */
    for (int64_t start = 0; start < size; start += 1777) {
      int64_t count = size - start < 1777 ? size - start : 1777;
      assert_int_equal(pf__expr_eval_block(e, shape, PF_INT64, start, count,
                                           out + start, &err), 0);
      assert_int_equal(pf__expr_eval_block(e, shape, PF_FLOAT64, start, count,
                                           outf + start, &err), 0);
    }
    for (int64_t flat = 0; flat < size; flat++) {
      int64_t index[4] = {0, 0, 0, 0};
      pf_index_unravel(ndim, shape, flat, index);
      int64_t want = index[0] * 1000003 + flat * 7;
      if (ndim >= 2) want += index[1] * 1009;
      if (ndim >= 3) want += index[2] * 31;
      if (ndim == 4) want += index[3] + shape[3];
      if (ndim == 1) want += size + shape[0];
      if (ndim == 2) want += size + shape[1];
      if (ndim == 3) want += size;
      if (out[flat] != want || outf[flat] != (double)want)
        fail_msg("shape %zu, element %lld: %lld, want %lld", s,
                 (long long)flat, (long long)out[flat], (long long)want);
    }
    free(out);
    free(outf);
    pf_expr_free(e);
  }
}

/* Float index variables, converted directly, equal converted integers. */
static void test_float_index(void **state) {
  (void)state;
  double a[3000], b[3000];
  eval_f("i * 0.001", 3000, a);
  for (int k = 0; k < 3000; k++) b[k] = (double)k * 0.001;
  assert_memory_equal(a, b, sizeof a);
  eval_f("idx + 0.5", 3000, a);
  for (int k = 0; k < 3000; k++) assert_true(a[k] == k + 0.5);
  /* -i is int64 negation, then float: +0.0 at i = 0, as NumPy gives (not
   * -float(i), which is -0.0 there). */
  static const char *const negated[] = {"copysign(1, -i)", "1 / (-i * 1.0)",
                                        "copysign(1, -idx * 0.5)",
                                        "copysign(1, (-i) ** 0.5)",
                                        "copysign(1, where(i < 5, -i, 0.5))"};
  for (size_t t = 0; t < PF_ARRAY_LEN(negated); t++) {
    eval_f(negated[t], 3000, a);
    assert_false(signbit(a[0]));
    assert_true(a[1] < 0 || isnan(a[1]));
  }
  eval_f("1 / (-i * 1.0)", 3, a);
  assert_true(isinf(a[0]) && a[0] > 0);
  assert_true(same_double(a[2], -0.5));
}

static void test_comparisons_where(void **state) {
  (void)state;
  int64_t v[10];
  eval_i("(2 < i < 7) + (i == 3) * 10 + (i != 4) * 100", 10, v);
  for (int k = 0; k < 10; k++)
    assert_int_equal(v[k], (2 < k && k < 7) + (k == 3) * 10 + (k != 4) * 100);
  eval_i("where(i % 3 == 0, i, -i) + where(i > 4, 1000, 0)", 10, v);
  for (int k = 0; k < 10; k++)
    assert_int_equal(v[k], (k % 3 == 0 ? k : -k) + (k > 4 ? 1000 : 0));
  /* Booleans: + is or, * is and, ~ is not, & | logical. */
  eval_i("((i < 3) + (i > 6)) * 1 + ((i < 5) * (i > 1)) * 10 + "
         "(~(i < 5)) * 100 + ((i < 3) | (i == 9)) * 1000", 10, v);
  for (int k = 0; k < 10; k++)
    assert_int_equal(v[k], (k < 3 || k > 6) + (k < 5 && k > 1) * 10 +
                               (k >= 5) * 100 + (k < 3 || k == 9) * 1000);
}

/* Parameters are constants of their kind; bool ones are booleans. */
static void test_params(void **state) {
  (void)state;
  pf_param params[] = {
      {.name = "a", .kind = PF_PARAM_INT, .i = 3},
      {.name = "b", .kind = PF_PARAM_FLOAT, .f = 0.25},
      {.name = "flag", .kind = PF_PARAM_BOOL, .i = 1},
      {.name = "unused", .kind = PF_PARAM_FLOAT, .f = 1.0},
  };
  pf_expr *e = compile_ok("i * a + b", 1, params, 4);
  assert_int_equal(pf_expr_type(e), PF_FLOAT64);
  int64_t n = 4;
  double out[4];
  pf_error err;
  assert_int_equal(pf__expr_eval_block(e, &n, PF_FLOAT64, 0, 4, out, &err), 0);
  for (int k = 0; k < 4; k++) assert_true(out[k] == k * 3 + 0.25);
  pf_expr_free(e);
  e = compile_ok("~flag", 1, params, 4);
  assert_int_equal(pf_expr_type(e), PF_BOOL);
  int64_t v;
  n = 1;
  assert_int_equal(pf__expr_eval_block(e, &n, PF_INT64, 0, 1, &v, &err), 0);
  assert_int_equal(v, 0);
  pf_expr_free(e);
}

/* ---------------------------------------------------------------- casts */

static void test_casts(void **state) {
  (void)state;
  /* float64 -> integers as NumPy's astype on x86-64 (contiguous). */
  static const struct {
    const char *text;
    int8_t i8;
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint32_t u32;
    uint64_t u64;
  } cases[] = {
      {"300.5", 44, 300, 300, 44, 300, 300},
      {"-300.5", -44, -300, -300, 212, 4294966996u, 18446744073709551316u},
      {"1e10", 0, INT32_MIN, 10000000000, 0, 0, 10000000000u},
      {"-1e10", 0, INT32_MIN, -10000000000, 0, 2147483648u,
       18446744063709551616u},
      {"nan", 0, INT32_MIN, INT64_MIN, 0, 2147483648u, 9223372036854775808u},
      {"inf", 0, INT32_MIN, INT64_MIN, 0, 0, 0},
      {"-inf", 0, INT32_MIN, INT64_MIN, 0, 2147483648u, 9223372036854775808u},
      {"3e9", 0, INT32_MIN, 3000000000, 0, 3000000000u, 3000000000u},
      {"1.8e19", 0, INT32_MIN, INT64_MIN, 0, 0, 18000000000000000000u},
      {"-1.0", -1, -1, -1, 255, 4294967295u, 18446744073709551615u},
      {"-2147483649.0", 0, INT32_MIN, -2147483649, 0, 2147483648u,
       18446744071562067967u},
  };
  int64_t n = 1;
  pf_error err;
  for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
    pf_expr *e = compile_ok(cases[k].text, 1, NULL, 0);
    int8_t i8;
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint32_t u32;
    uint64_t u64;
    const struct {
      pf_dtype dtype;
      void *out;
    } outs[] = {{PF_INT8, &i8},   {PF_INT32, &i32},  {PF_INT64, &i64},
                {PF_UINT8, &u8},  {PF_UINT32, &u32}, {PF_UINT64, &u64}};
    for (size_t o = 0; o < PF_ARRAY_LEN(outs); o++)
      assert_int_equal(pf__expr_eval_block(e, &n, outs[o].dtype, 0, 1,
                                           outs[o].out, &err), 0);
    if (i8 != cases[k].i8 || i32 != cases[k].i32 || i64 != cases[k].i64 ||
        u8 != cases[k].u8 || u32 != cases[k].u32 || u64 != cases[k].u64)
      fail_msg("%s: %d %d %lld %u %u %llu", cases[k].text, i8, i32,
               (long long)i64, u8, u32, (unsigned long long)u64);
    pf_expr_free(e);
  }
}

static void test_float16(void **state) {
  (void)state;
  /* Bits NumPy's astype(float16) gives (round to nearest even, overflow to
   * inf, subnormals). */
  static const struct {
    const char *text;
    uint16_t bits;
  } cases[] = {
      {"1.0", 0x3c00},          {"1 + 2.0**-11", 0x3c00},
      {"1 + 2.0**-11 + 2.0**-40", 0x3c01}, {"1 + 3 * 2.0**-11", 0x3c02},
      {"65504.0", 0x7bff},      {"65519.99", 0x7bff},
      {"65520.0", 0x7c00},      {"1e10", 0x7c00},
      {"-1e10", 0xfc00},        {"6e-8", 0x0001},
      {"2.0**-25", 0x0000},     {"2.0**-25 * 1.0000001", 0x0001},
      {"3 * 2.0**-25", 0x0002}, {"2.0**-14 - 2.0**-25", 0x0400},
      {"-0.0", 0x8000},         {"inf", 0x7c00},
      {"nan", 0x7e00},          {"65519", 0x7bff},
      {"65520", 0x7c00},        {"2049", 0x6800},
      {"2051", 0x6802},
  };
  int64_t n = 1;
  pf_error err;
  for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
    pf_expr *e = compile_ok(cases[k].text, 1, NULL, 0);
    uint16_t h[3];
    /* Broadcast (constant) and per-element stores convert alike. */
    assert_int_equal(pf__expr_eval_block(e, &n, PF_FLOAT16, 0, 1, h, &err), 0);
    if (h[0] != cases[k].bits)
      fail_msg("%s: 0x%04x, want 0x%04x", cases[k].text, h[0], cases[k].bits);
    pf_expr_free(e);
  }
}

/* Every dtype receives the same value through the per-element path (the
 * result in registers) and the broadcast path (a constant result). */
static void test_all_dtypes(void **state) {
  (void)state;
  for (int dt = 0; dt < PF_DTYPE_COUNT; dt++) {
    size_t size = pf_dtype_size((pf_dtype)dt);
    int64_t n = 37;
    char vec[37 * 32], cst[37 * 32];
    pf_expr *ev = compile_ok("i * 0 + 3.0", 1, NULL, 0);
    pf_expr *ec = compile_ok("3.0", 1, NULL, 0);
    pf_error err;
    memset(vec, 0, sizeof vec);
    memset(cst, 0, sizeof cst);
    assert_int_equal(
        pf__expr_eval_block(ev, &n, (pf_dtype)dt, 0, 37, vec, &err), 0);
    assert_int_equal(
        pf__expr_eval_block(ec, &n, (pf_dtype)dt, 0, 37, cst, &err), 0);
    for (int k = 0; k < 37; k++) {
      double got;
      const char *p = vec + k * size;
      switch (dt) {
        case PF_BOOL: got = *(const uint8_t *)p; break;
        case PF_INT8: got = *(const int8_t *)p; break;
        case PF_INT16: got = *(const int16_t *)p; break;
        case PF_INT32: got = *(const int32_t *)p; break;
        case PF_INT64: got = (double)*(const int64_t *)p; break;
        case PF_UINT8: got = *(const uint8_t *)p; break;
        case PF_UINT16: got = *(const uint16_t *)p; break;
        case PF_UINT32: got = *(const uint32_t *)p; break;
        case PF_UINT64: got = (double)*(const uint64_t *)p; break;
        case PF_FLOAT16: got = *(const uint16_t *)p == 0x4200 ? 3.0 : -1; break;
        case PF_FLOAT32: case PF_COMPLEX64: got = *(const float *)p; break;
        case PF_FLOAT64: case PF_COMPLEX128: got = *(const double *)p; break;
        default: got = (double)*(const long double *)p; break;
      }
      assert_true(got == (dt == PF_BOOL ? 1.0 : 3.0));
      if (dt == PF_COMPLEX64) assert_true(((const float *)p)[1] == 0.0f);
      if (dt == PF_COMPLEX128) assert_true(((const double *)p)[1] == 0.0);
      if (dt == PF_CLONGDOUBLE)
        assert_true(((const long double *)p)[1] == 0.0L);
      /* long double has padding bytes: compare values only. */
      if (dt != PF_LONGDOUBLE && dt != PF_CLONGDOUBLE)
        assert_memory_equal(vec + k * size, cst + k * size, size);
    }
    pf_expr_free(ev);
    pf_expr_free(ec);
  }
}

/* ------------------------------------------------------ float functions */

/* The AVX-512, AVX2 and libm paths agree within 4 ulp on every function,
 * over ranges that reach the special cases. */
static void test_isa_paths(void **state) {
  (void)state;
  static const char *texts[] = {
      "sin(X)",   "cos(X)",   "tan(X)",    "arcsin(X / 2000)",
      "arccos(X / 2000)", "arctan(X)", "sinh(X / 50)", "cosh(X / 50)",
      "tanh(X / 100)", "arcsinh(X)", "arccosh(X)", "arctanh(X / 2000)",
      "exp(X / 3)", "exp2(X / 2)", "expm1(X / 100)", "log(X)", "log2(X)",
      "log10(X)", "log1p(X)",  "cbrt(X)",  "sqrt(X)",   "floor(X)",
      "ceil(X)",  "trunc(X)",  "rint(X)",  "X ** 1.5",  "arctan2(X, 7 - X)",
      "hypot(X, 3)", "X ** X",
  };
  enum { N = 4001 };
  double *out[3];
  for (int k = 0; k < 3; k++) out[k] = malloc(N * sizeof(double));
  pf_param x_scale = {.name = "s", .kind = PF_PARAM_FLOAT, .f = 0.37};
  for (size_t t = 0; t < PF_ARRAY_LEN(texts); t++) {
    char text[128];
    /* X spans [-740, 740] with non-integers, zeros and both signs. */
    snprintf(text, sizeof text, "%s", texts[t]);
    for (char *p; (p = strchr(text, 'X')) != NULL;) {
      char rest[128];
      snprintf(rest, sizeof rest, "%s", p + 1);
      snprintf(p, sizeof text - (size_t)(p - text), "((i - 2000) * s)%s",
               rest);
    }
    for (int isa = PF__ISA_AVX512; isa >= PF__ISA_SCALAR; isa--) {
      pf_expr *e = compile_ok(text, 1, &x_scale, 1);
      pf__expr_set_isa(e, isa);
      int64_t n = N;
      pf_error err;
      assert_int_equal(pf__expr_eval_block(e, &n, PF_FLOAT64, 0, N,
                                           out[isa], &err), 0);
      pf_expr_free(e);
    }
    for (int k = 0; k < N; k++)
      for (int isa = PF__ISA_AVX2; isa <= PF__ISA_AVX512; isa++)
        if (ulps(out[isa][k], out[PF__ISA_SCALAR][k]) > 4)
          fail_msg("%s, element %d, isa %d: %.17g vs libm %.17g", text, k,
                   isa, out[isa][k], out[PF__ISA_SCALAR][k]);
  }
  for (int k = 0; k < 3; k++) free(out[k]);
}

/* ----------------------------------------------- every opcode, every ISA */

/* Operand vectors over N elements with the awkward values of each type:
 * A cycles through 19 values with i, B through the same 19 with i // 19, so
 * every pair meets within 361 elements; N spans a full VM block and a tail
 * that is not a multiple of the vector width. */
#define OPS_N 1501
static const char *const ops_vec_a[] = {
    /* bool */ "(i % 3 == 0)",
    /* int64: extremes, -1 and 0 (division), small values of both signs */
    "where(i % 19 == 0, -9223372036854775807 - 1, where(i % 19 == 1, "
    "9223372036854775807, where(i % 19 == 2, 4611686018427387904, "
    "(i % 19 - 9) * 3)))",
    /* float64: NaN, both infinities, -0.0, huge, tiny and plain values */
    "where(i % 19 == 0, nan, where(i % 19 == 1, inf, where(i % 19 == 2, "
    "-inf, where(i % 19 == 3, -0.0, where(i % 19 == 4, 1e300, where(i % 19 "
    "== 5, -4e-310, (i % 19 - 11) * 0.75))))))",
};
static const char *const ops_vec_b[] = {
    "(i // 19 % 2 == 1)",
    "where(i // 19 % 19 == 0, -9223372036854775807 - 1, where(i // 19 % 19 "
    "== 1, 9223372036854775807, where(i // 19 % 19 == 2, 63, "
    "(i // 19 % 19 - 9) * 2)))",
    "where(i // 19 % 19 == 0, nan, where(i // 19 % 19 == 1, inf, where(i // "
    "19 % 19 == 2, -inf, where(i // 19 % 19 == 3, -0.0, where(i // 19 % 19 "
    "== 4, 1e300, where(i // 19 % 19 == 5, -4e-310, "
    "(i // 19 % 19 - 11) * 0.75))))))",
};
/* Constants (scalar slots) and per-fill scalars of each type. */
static const char *const ops_const[] = {"True", "-3", "-2.5"};
static const char *const ops_fill_scalar[] = {"(n0 > 1000)", "(n0 - 1504)",
                                              "(n0 * 0.5 - 752.25)"};

/* Operators and functions; approx: libmvec on AVX2/AVX-512 (4 ulp). */
static const struct {
  const char *sym;
  int call; /* spelled f(a, b) rather than a op b */
  int approx;
} ops_binary[] = {
    {"+", 0, 0},  {"-", 0, 0},  {"*", 0, 0},  {"/", 0, 0},   {"//", 0, 0},
    {"%", 0, 0},  {"**", 0, 1}, {"<", 0, 0},  {"<=", 0, 0},  {">", 0, 0},
    {">=", 0, 0}, {"==", 0, 0}, {"!=", 0, 0}, {"&", 0, 0},   {"|", 0, 0},
    {"minimum", 1, 0}, {"maximum", 1, 0}, {"fmod", 1, 0}, {"copysign", 1, 0},
    {"arctan2", 1, 1}, {"hypot", 1, 1},
};
static const struct {
  const char *sym;
  int approx;
} ops_unary[] = {
    {"-", 0},       {"+", 0},       {"~", 0},       {"abs", 0},
    {"sign", 0},    {"square", 0},  {"floor", 0},   {"ceil", 0},
    {"trunc", 0},   {"rint", 0},    {"sqrt", 0},    {"sin", 1},
    {"cos", 1},     {"tan", 1},     {"arcsin", 1},  {"arccos", 1},
    {"arctan", 1},  {"sinh", 1},    {"cosh", 1},    {"tanh", 1},
    {"arcsinh", 1}, {"arccosh", 1}, {"arctanh", 1}, {"exp", 1},
    {"exp2", 1},    {"expm1", 1},   {"log", 1},     {"log2", 1},
    {"log10", 1},   {"log1p", 1},   {"cbrt", 1},
};

/* Compiles and evaluates `text` (1-d, OPS_N elements, in the result's own
 * type) under every instruction set this machine has, and checks that each
 * agrees with the scalar loops: the same compile and run-time outcome (code
 * and position), bit for bit (NaN for NaN), or within 4 ulp for libmvec's
 * functions. Returns the number of instruction sets compared. */
static int agree_across_isas(const char *text, int approx) {
  static int64_t out[PF__ISA_AVX512 + 1][OPS_N];
  int rc[PF__ISA_AVX512 + 1] = {0};
  int64_t pos[PF__ISA_AVX512 + 1] = {0};
  pf_dtype type = PF_INT64;
  const int top = pf__vm_isa();
  for (int isa = PF__ISA_SCALAR; isa <= top; isa++) {
    pf_expr *e;
    pf_error err = {0};
    memset(out[isa], 0, sizeof out[isa]);
    rc[isa] = compile_at(&e, text, 1, NULL, 0, isa, &err);
    if (rc[isa] == 0) {
      type = pf_expr_type(e);
      int64_t n = OPS_N;
      rc[isa] = pf__expr_eval_block(e, &n, type == PF_BOOL ? PF_INT64 : type,
                                    0, OPS_N, out[isa], &err);
      pf_expr_free(e);
    }
    pos[isa] = rc[isa] != 0 ? err.position : -1;
    if (rc[isa] != rc[PF__ISA_SCALAR] || pos[isa] != pos[PF__ISA_SCALAR])
      fail_msg("%s: %s at %lld under %s, %s at %lld under scalar", text,
               pf_err_name(rc[isa]), (long long)pos[isa], isa_names[isa],
               pf_err_name(rc[PF__ISA_SCALAR]),
               (long long)pos[PF__ISA_SCALAR]);
    if (rc[isa] != 0) continue;
    for (int k = 0; k < OPS_N; k++) {
      int64_t x = out[isa][k], y = out[PF__ISA_SCALAR][k];
      double fx, fy;
      memcpy(&fx, &x, 8);
      memcpy(&fy, &y, 8);
      int ok = type != PF_FLOAT64 ? x == y
               : approx           ? ulps(fx, fy) <= 4
                                  : same_double(fx, fy);
      if (!ok)
        fail_msg("%s, element %d: %s gives %.17g (%lld), scalar %.17g (%lld)",
                 text, k, isa_names[isa], fx, (long long)x, fy, (long long)y);
    }
  }
  return rc[PF__ISA_SCALAR] == 0 ? top + 1 : 0;
}

/* Every operator and function on operands of every type, in every layout
 * the compiler emits (vector with vector, with a constant on either side,
 * constants only -- folded at compile time -- and per-fill scalars), agrees
 * under every instruction set with the scalar loops, which the value tests
 * check against NumPy's answers. */
static void test_opcodes_across_isas(void **state) {
  (void)state;
  char text[1024];
  int compared = 0;
  for (size_t o = 0; o < PF_ARRAY_LEN(ops_binary); o++)
    for (int ta = 0; ta < 3; ta++)
      for (int tb = 0; tb < 3; tb++) {
        const char *lhs[] = {ops_vec_a[ta], ops_vec_a[ta], ops_const[ta],
                             ops_const[ta], ops_fill_scalar[ta]};
        const char *rhs[] = {ops_vec_b[tb], ops_const[tb], ops_vec_b[tb],
                             ops_const[tb], ops_fill_scalar[tb]};
        for (size_t l = 0; l < PF_ARRAY_LEN(lhs); l++) {
          if (ops_binary[o].call)
            snprintf(text, sizeof text, "%s(%s, %s)", ops_binary[o].sym,
                     lhs[l], rhs[l]);
          else
            snprintf(text, sizeof text, "(%s) %s (%s)", lhs[l],
                     ops_binary[o].sym, rhs[l]);
          compared += agree_across_isas(text, ops_binary[o].approx);
        }
      }
  for (size_t o = 0; o < PF_ARRAY_LEN(ops_unary); o++)
    for (int t = 0; t < 3; t++) {
      const char *args[] = {ops_vec_a[t], ops_const[t], ops_fill_scalar[t]};
      for (size_t l = 0; l < PF_ARRAY_LEN(args); l++) {
        snprintf(text, sizeof text, "%s(%s)", ops_unary[o].sym, args[l]);
        compared += agree_across_isas(text, ops_unary[o].approx);
      }
    }
  /* where() with a vector or constant condition and branches of each type;
   * index variables converted to float; random streams. */
  for (int ta = 0; ta < 3; ta++)
    for (int tb = 0; tb < 3; tb++) {
      snprintf(text, sizeof text, "where(%s, %s, %s)", ops_vec_a[2],
               ops_vec_a[ta], ops_vec_b[tb]);
      compared += agree_across_isas(text, 0);
      snprintf(text, sizeof text, "where(%s, %s, %s)", ops_vec_b[0],
               ops_const[ta], ops_vec_b[tb]);
      compared += agree_across_isas(text, 0);
      snprintf(text, sizeof text, "where(%s, %s, %s)", ops_vec_b[1],
               ops_vec_a[ta], ops_const[tb]);
      compared += agree_across_isas(text, 0);
    }
  compared += agree_across_isas("idx * 0.5 + i * 0.25", 0);
  compared += agree_across_isas("uniform(3) + normal()", 0);
  /* The operand combinations a type error refuses are the same under every
   * instruction set (agree_across_isas checks): most are accepted. */
  assert_true(compared >= 2 * pf__vm_isa() + 1);
  assert_true(compared > 500);
}

/* Each instruction set's output casts (pf__vm_store) give the scalar
 * loops' bytes for every dtype, from bool, int64 and float64 results, per
 * element and broadcast (a constant result), with values at the edges of
 * each conversion (out of range, NaN, half-precision rounding). */
static void test_stores_across_isas(void **state) {
  (void)state;
  static const char *const results[] = {
      "(i % 3 == 0)",
      "where(i % 7 == 0, -9223372036854775807 - 1, where(i % 7 == 1, "
      "9223372036854775807, (i - 700) * 4000009))",
      "where(i % 11 == 0, nan, where(i % 11 == 1, -inf, where(i % 11 == 2, "
      "-0.0, (i - 700) * 3.0e7 + where(i % 11 == 3, 65519.99, "
      "where(i % 11 == 4, 2.0 ** -25 * 3, (i % 11) * 1.7e-5)))))",
      "True", "-9223372036854775807", "-2147483649.5", "nan", "3e9",
  };
  enum { N = 1403 };
  const int top = pf__vm_isa();
  int64_t shape = N;
  for (size_t r = 0; r < PF_ARRAY_LEN(results); r++)
    for (int dt = 0; dt < PF_DTYPE_COUNT; dt++) {
      size_t size = pf_dtype_size((pf_dtype)dt);
      static _Alignas(32) char want[N * 32], got[N * 32];
      for (int isa = PF__ISA_SCALAR; isa <= top; isa++) {
        pf_expr *e;
        pf_error err;
        assert_int_equal(compile_at(&e, results[r], 1, NULL, 0, isa, &err), 0);
        char *out = isa == PF__ISA_SCALAR ? want : got;
        memset(out, 0, sizeof want);
        assert_int_equal(pf__expr_eval_block(e, &shape, (pf_dtype)dt, 0, N,
                                             out, &err), 0);
        pf_expr_free(e);
        if (isa == PF__ISA_SCALAR) continue;
        for (int k = 0; k < N; k++) {
          const char *p = got + k * size, *q = want + k * size;
          int same;
          if (dt == PF_LONGDOUBLE || dt == PF_CLONGDOUBLE) {
            long double a[2] = {0, 0}, b[2] = {0, 0};
            memcpy(a, p, size);
            memcpy(b, q, size);
            same = (a[0] == b[0] || (a[0] != a[0] && b[0] != b[0])) &&
                   a[1] == b[1];
          } else {
            same = memcmp(p, q, size) == 0;
          }
          if (!same)
            fail_msg("%s into %s, element %d: %s differs from scalar",
                     results[r], pf_dtype_name((pf_dtype)dt), k,
                     isa_names[isa]);
        }
      }
    }
}

/* Index variables past 2**53 (where doubles no longer hold every integer)
 * convert element by element, as the int64 values convert in C, in a block
 * that starts there (no allocation depends on the shape's size). */
static void test_huge_index(void **state) {
  (void)state;
  enum { N = 77 };
  const int64_t big = (INT64_C(1) << 53) - 30;
  double got[N];
  for (int isa = PF__ISA_SCALAR; isa <= pf__vm_isa(); isa++) {
    pf_expr *e;
    pf_error err;
    int64_t shape1 = INT64_C(1) << 60;
    assert_int_equal(compile_at(&e, "idx * 1.0", 1, NULL, 0, isa, &err), 0);
    assert_int_equal(pf__expr_eval_block(e, &shape1, PF_FLOAT64, big, N, got,
                                         &err), 0);
    for (int k = 0; k < N; k++) assert_true(got[k] == (double)(big + k));
    pf_expr_free(e);
    /* 2-d: j runs past 2**53 within a row; i is constant over it. */
    int64_t shape2[2] = {3, INT64_C(1) << 55};
    assert_int_equal(compile_at(&e, "j * 1.0 + i * 0.5", 2, NULL, 0, isa,
                                &err), 0);
    int64_t start = shape2[1] + big; /* row 1 */
    assert_int_equal(pf__expr_eval_block(e, shape2, PF_FLOAT64, start, N, got,
                                         &err), 0);
    for (int k = 0; k < N; k++)
      assert_true(got[k] == (double)(big + k) + 0.5);
    pf_expr_free(e);
  }
}

/* ---------------------------------------------------------------- fills */

/* pf_expr_fill over the pool equals a single-threaded evaluation, for
 * strided and contiguous outputs, every schedule and several workers. */
/* uniform() and normal() are philox.h's block functions under the key of
 * the parameter `seed`, whatever the blocks: compared over a fill with
 * short chunks, a block starting mid-array and every parameter kind. */
static void test_random(void **state) {
  (void)state;
  enum { N = 3000 };
  static double want[N], got[N];
  const uint64_t big[2] = {7, UINT64_C(1) << 63};
  const pf_param seeds[] = {
      {.name = "seed", .kind = PF_PARAM_UINT128, .u = {big[0], big[1]}},
      {.name = "seed", .kind = PF_PARAM_INT, .i = 12345},
  };
  const uint64_t keys[][2] = {{big[0], big[1]}, {12345, 0}, {0, 0}};
  const struct {
    const char *text;
    int normal;
    uint64_t stream;
  } cases[] = {{"uniform()", 0, 0}, {"uniform(0)", 0, 0},
               {"uniform(1 + 2)", 0, 3}, {"normal()", 1, 0},
               {"normal(5)", 1, 5}};
  int64_t n = N;
  pf_error err;
  for (size_t s = 0; s < PF_ARRAY_LEN(keys); s++) {
    for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
      pf_expr *e = compile_ok(cases[k].text, 1, s < 2 ? &seeds[s] : NULL,
                              s < 2 ? 1 : 0);
      assert_int_equal(pf_expr_type(e), PF_FLOAT64);
      (cases[k].normal ? pf__philox_normal_block
                       : pf__philox_uniform_block)(keys[s], cases[k].stream,
                                                   0, n, want);
      pf_array out = {.data = got, .dtype = PF_FLOAT64, .ndim = 1,
                      .shape = {n}};
      pf_array_set_contiguous(&out);
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = 3;
      o.chunk = 7;
      memset(got, 0, sizeof got);
      assert_int_equal(pf_expr_fill(e, &out, &o, &err), 0);
      assert_memory_equal(got, want, sizeof want);
      memset(got, 0, sizeof got);
      assert_int_equal(pf__expr_eval_block(e, &n, PF_FLOAT64, 1001, N - 1001,
                                           got, &err), 0);
      assert_memory_equal(got, want + 1001, (N - 1001) * sizeof *want);
      pf_expr_free(e);
    }
  }
  /* Stream 0 under seed 0 is NumPy's Philox(key=0).random(): its first
   * word is 0x02f4ba6408e4d89b (the counter starts at 1). */
  eval_f("uniform()", 1, got);
  assert_true(got[0] ==
              (double)(UINT64_C(0x02f4ba6408e4d89b) >> 11) * 0x1p-53);
  /* A repeated call is the same value; an expression of several streams. */
  eval_f("uniform() - uniform(0)", 5, got);
  for (int k = 0; k < 5; k++) assert_true(got[k] == 0.0);
  eval_f("where(uniform(1) < 0.5, normal(2), 10 + uniform(1))", n, got);
  double u1[N], z2[N];
  const uint64_t zero[2] = {0, 0};
  pf__philox_uniform_block(zero, 1, 0, n, u1);
  pf__philox_normal_block(zero, 2, 0, n, z2);
  for (int k = 0; k < N; k++)
    assert_true(got[k] == (u1[k] < 0.5 ? z2[k] : 10 + u1[k]));
  /* The seed's kinds: a seed used in arithmetic is an int64 where it fits. */
  pf_param bad[] = {{.name = "seed", .kind = PF_PARAM_INT, .i = -1},
                    {.name = "seed", .kind = PF_PARAM_FLOAT, .f = 1.0}};
  pf_expr *e;
  for (int k = 0; k < 2; k++) {
    assert_int_equal(pf_expr_compile(&e, "1 + normal()", 1, &bad[k], 1, &err),
                     PF_ETYPE);
    assert_int_equal(err.position, 4);
  }
  pf_param fits = {.name = "seed", .kind = PF_PARAM_UINT128, .u = {5, 0}};
  e = compile_ok("seed * 2", 1, &fits, 1);
  assert_int_equal(pf_expr_type(e), PF_INT64);
  pf_expr_free(e);
  assert_int_equal(pf_expr_compile(&e, "i + seed", 1, &seeds[0], 1, &err),
                   PF_ETYPE);
  assert_int_equal(err.position, 4);
  e = compile_ok("i", 1, &seeds[0], 1); /* an unused seed is no error */
  pf_expr_free(e);
}

static void test_fill(void **state) {
  (void)state;
  pf_pool *pool;
  assert_int_equal(pf_pool_create(&pool, 3), 0);
  const char *text = "sin(i * 0.01) * exp(-j * 0.001) + where(i > j, 1, -1)";
  pf_expr *e = compile_ok(text, 2, NULL, 0);
  int64_t shape[2] = {257, 263};
  int64_t size = shape[0] * shape[1];
  double *want = malloc((size_t)size * sizeof *want);
  pf_error err;
  assert_int_equal(pf__expr_eval_block(e, shape, PF_FLOAT64, 0, size, want,
                                       &err), 0);
  /* A transposed, padded output: every element reached through strides. */
  double *buffer = calloc((size_t)size * 2, sizeof *buffer);
  for (int schedule = 0; schedule <= PF_SCHEDULE_GUIDED; schedule++) {
    for (int workers = 1; workers <= 4; workers++) {
      for (int strided = 0; strided <= 1; strided++) {
        pf_array out = {.data = buffer, .dtype = PF_FLOAT64, .ndim = 2,
                        .shape = {shape[0], shape[1]}};
        if (strided) {
          out.strides[0] = 8 * 2;
          out.strides[1] = 8 * 2 * shape[0];
        } else {
          pf_array_set_contiguous(&out);
        }
        memset(buffer, 0, (size_t)size * 2 * sizeof *buffer);
        pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
        o.pool = pool;
        o.workers = workers;
        o.schedule = (pf_schedule)schedule;
        o.chunk = 1000;
        assert_int_equal(pf_expr_fill(e, &out, &o, &err), 0);
        for (int64_t a = 0; a < shape[0]; a++)
          for (int64_t b = 0; b < shape[1]; b++) {
            double got = *(double *)((char *)buffer + a * out.strides[0] +
                                     b * out.strides[1]);
            assert_true(got == want[a * shape[1] + b]);
          }
      }
    }
  }
  /* Wrong dimensions. */
  pf_array bad = {.data = buffer, .dtype = PF_FLOAT64, .ndim = 1,
                  .shape = {10}};
  pf_array_set_contiguous(&bad);
  assert_int_equal(pf_expr_fill(e, &bad, NULL, &err), PF_EINVAL);
  pf_expr_free(e);
  /* A run-time error stops the fill with the operator's position. */
  e = compile_ok("i ** (j - 100)", 2, NULL, 0);
  pf_array out = {.data = buffer, .dtype = PF_INT64, .ndim = 2,
                  .shape = {shape[0], shape[1]}};
  pf_array_set_contiguous(&out);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  assert_int_equal(pf_expr_fill(e, &out, &o, &err), PF_ETYPE);
  assert_int_equal(err.position, 2);
  pf_expr_free(e);
  /* So does one in the per-fill scalars: n0 - 1000 is negative. */
  e = compile_ok("2 ** (n0 - 1000) + i", 2, NULL, 0);
  assert_int_equal(pf_expr_fill(e, &out, &o, &err), PF_ETYPE);
  assert_int_equal(err.position, 2);
  pf_expr_free(e);
  /* Empty and 0-d arrays. */
  e = compile_ok("idx + size", 0, NULL, 0);
  int64_t scalar = -1;
  pf_array zero_d = {.data = &scalar, .dtype = PF_INT64, .ndim = 0};
  assert_int_equal(pf_expr_fill(e, &zero_d, &o, &err), 0);
  assert_int_equal(scalar, 1);
  pf_expr_free(e);
  e = compile_ok("i", 1, NULL, 0);
  pf_array empty = {.data = buffer, .dtype = PF_INT64, .ndim = 1,
                    .shape = {0}};
  pf_array_set_contiguous(&empty);
  assert_int_equal(pf_expr_fill(e, &empty, &o, &err), 0);
  pf_expr_free(e);
  free(buffer);
  free(want);
  pf_pool_destroy(pool);
}

/* One compiled expression, used by several threads' fills at once. */
typedef struct {
  const pf_expr *e;
  int64_t *out;
  int rc;
} thread_arg;

static void *fill_thread(void *p) {
  thread_arg *a = p;
  pf_array out = {.data = a->out, .dtype = PF_INT64, .ndim = 1,
                  .shape = {100000}};
  pf_array_set_contiguous(&out);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.workers = 2;
  a->rc = pf_expr_fill(a->e, &out, &o, NULL);
  return NULL;
}

static void test_shared_expression(void **state) {
  (void)state;
  pf_expr *e = compile_ok("i * i % 1000003", 1, NULL, 0);
  pthread_t threads[3];
  thread_arg args[3];
  for (int t = 0; t < 3; t++) {
    args[t] = (thread_arg){e, malloc(100000 * sizeof(int64_t)), -1};
    assert_int_equal(pthread_create(&threads[t], NULL, fill_thread, &args[t]),
                     0);
  }
  for (int t = 0; t < 3; t++) {
    pthread_join(threads[t], NULL);
    assert_int_equal(args[t].rc, 0);
    for (int64_t k = 0; k < 100000; k++)
      assert_int_equal(args[t].out[k], k * k % 1000003);
    free(args[t].out);
  }
  pf_expr_free(e);
}

/* Non-temporal copies: every alignment and length, every instruction set. */
static void test_stream(void **state) {
  (void)state;
  enum { N = 700 };
  unsigned char src[N], dst[N + 64];
  for (int k = 0; k < N; k++) src[k] = (unsigned char)(k * 7 + 1);
  for (int isa = PF__ISA_SCALAR; isa <= pf__vm_isa(); isa++)
    for (int offset = 0; offset < 64; offset += 3)
      for (size_t len = 0; len < N; len += 37) {
        memset(dst, 0, sizeof dst);
        pf__vm_stream(dst + offset, src, len, isa);
        pf__vm_stream_fence();
        assert_memory_equal(dst + offset, src, len);
        for (int k = 0; k < offset; k++) assert_int_equal(dst[k], 0);
        for (size_t k = offset + len; k < sizeof dst; k++)
          assert_int_equal(dst[k], 0);
      }
}

/* Thousands of values alive at once (each used again at the end) still
 * evaluate: blocks get shorter so the registers stay within bounds. */
static void test_many_registers(void **state) {
  (void)state;
  enum { TERMS = 3000 };
  char *text = malloc(TERMS * 2 * 24 + 1);
  size_t len = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < TERMS; k++)
      len += (size_t)sprintf(text + len, "%s(i*%d+1)", len ? "+" : "", k);
  pf_expr *e = compile_ok(text, 1, NULL, 0);
  assert_true(e->nregs >= TERMS);
  int64_t n = 2500, out[2500];
  pf_error err;
  assert_int_equal(pf__expr_eval_block(e, &n, PF_INT64, 0, n, out, &err), 0);
  for (int64_t k = 0; k < n; k++)
    assert_int_equal(out[k], 2 * (k * (TERMS - 1) * TERMS / 2 + TERMS));
  pf_expr_free(e);
  free(text);
}

/* Out of memory at every allocation of a compile and of a fill: PF_ENOMEM,
 * nothing leaked (the sanitizer build checks), then success. */
/* Two operators fail: the first (offset 2) from element 600001 on, the
 * second (offset 22) at element 500001 only. The fill reports the lowest
 * failing element's operator, as a sequential loop would, whatever fails
 * first in time; the elements below it are computed. */
static uint64_t ipow_wrap(uint64_t base, int64_t exponent) {
  uint64_t result = 1;
  for (; exponent > 0; exponent >>= 1) {
    if (exponent & 1) result *= base;
    base *= base;
  }
  return result;
}

static void test_lowest_failure_wins(void **state) {
  (void)state;
  pf_expr *e = compile_ok("3 ** (600000 - i) + "
                          "2 ** ((i - 500001) * (i - 500001) - 1)",
                          1, NULL, 0);
  enum { N = 1000000 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  assert_non_null(out);
  pf_pool *pool;
  assert_int_equal(pf_pool_create(&pool, 4), 0);
  for (int workers = 1; workers <= 4; workers *= 2)
    for (int sch = 0; sch < 3; sch++) {
      memset(out, 0xff, sizeof(int64_t) * N);
      pf_array a = {.data = out, .dtype = PF_INT64, .ndim = 1, .shape = {N}};
      pf_array_set_contiguous(&a);
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.pool = pool;
      o.workers = workers;
      o.schedule = (pf_schedule)sch;
      pf_error err;
      assert_int_equal(pf_expr_fill(e, &a, &o, &err), PF_ETYPE);
      assert_int_equal(err.position, 22);
      assert_string_equal(err.message,
                          "integers to negative integer powers are not "
                          "allowed");
      /* Below the failing VM block everything is computed, as the loop
       * computes it (int64 powers wrap, as NumPy's do). */
      for (int64_t i = 0; i < 400000; i += 99991) {
        int64_t d = i - 500001;
        uint64_t want = ipow_wrap(3, 600000 - i) + ipow_wrap(2, d * d - 1);
        assert_int_equal(out[i], (int64_t)want);
      }
    }
  pf_pool_destroy(pool);
  free(out);
  pf_expr_free(e);
}

static void test_out_of_memory(void **state) {
  (void)state;
  const char *text = "where(i > j, sin(i * a) + n1, idx // 3) * (1 + 2) ** 2";
  pf_param a = {.name = "a", .kind = PF_PARAM_FLOAT, .f = 0.5};
  pf_error err;
  pf_expr *e = NULL;
  int failures = 0;
  for (long nth = 1;; nth++) {
    pf__alloc_fail_nth(nth);
    int rc = pf_expr_compile(&e, text, 2, &a, 1, &err);
    pf__alloc_fail_nth(0);
    if (rc == 0) break;
    assert_int_equal(rc, PF_ENOMEM);
    assert_null(e);
    failures++;
  }
  assert_true(failures >= 5);
  pf__expr_set_isa(e, test_isa);
  pf_pool *pool;
  assert_int_equal(pf_pool_create(&pool, 2), 0);
  int64_t out[40 * 50];
  pf_array arr = {.data = out, .dtype = PF_INT64, .ndim = 2, .shape = {40, 50}};
  pf_array_set_contiguous(&arr);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.pool = pool;
  o.chunk = 100;
  for (long nth = 1;; nth++) {
    pf__alloc_fail_nth(nth);
    int rc = pf_expr_fill(e, &arr, &o, &err);
    pf__alloc_fail_nth(0);
    if (rc == 0) break;
    assert_int_equal(rc, PF_ENOMEM);
  }
  int64_t want[40 * 50];
  int64_t shape[2] = {40, 50};
  assert_int_equal(
      pf__expr_eval_block(e, shape, PF_INT64, 0, 40 * 50, want, &err), 0);
  assert_memory_equal(out, want, sizeof out);
  pf_expr_free(e);
  pf_pool_destroy(pool);
}

int main(void) {
  /* Tests that compare the instruction sets themselves, or that do not run
   * the VM, run once. */
  const struct CMUnitTest once[] = {
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_error_messages),
      cmocka_unit_test(test_isa_paths),
      cmocka_unit_test(test_opcodes_across_isas),
      cmocka_unit_test(test_stores_across_isas),
      cmocka_unit_test(test_huge_index),
      cmocka_unit_test(test_stream),
  };
  /* The rest checks values against NumPy's answers and C loops: it runs
   * under every instruction set this machine has (compile_ok compiles at
   * test_isa), so each level's loops meet the same independent references. */
  const struct CMUnitTest per_isa[] = {
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_types),
      cmocka_unit_test(test_integer_arithmetic),
      cmocka_unit_test(test_float_arithmetic),
      cmocka_unit_test(test_index_variables),
      cmocka_unit_test(test_float_index),
      cmocka_unit_test(test_comparisons_where),
      cmocka_unit_test(test_params),
      cmocka_unit_test(test_casts),
      cmocka_unit_test(test_float16),
      cmocka_unit_test(test_all_dtypes),
      cmocka_unit_test(test_random),
      cmocka_unit_test(test_fill),
      cmocka_unit_test(test_shared_expression),
      cmocka_unit_test(test_lowest_failure_wins),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_many_registers),
  };
  if (getenv("PF_TEST_FILTER") != NULL)
    cmocka_set_test_filter(getenv("PF_TEST_FILTER"));
  test_isa = pf__vm_isa();
  int failed = cmocka_run_group_tests_name("expr", once, NULL, NULL);
  for (int isa = pf__vm_isa(); isa >= PF__ISA_SCALAR; isa--) {
    test_isa = isa;
    char name[32];
    snprintf(name, sizeof name, "expr under %s", isa_names[isa]);
    failed += cmocka_run_group_tests_name(name, per_isa, NULL, NULL);
  }
  return failed;
}
