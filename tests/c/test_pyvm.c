/* test_pyvm.c -- the translated-function VM: validation, programs against
 * hand-computed C references (dense and branching lanes), the lowest bailing
 * element across workers and schedules, `first`, stores into every dtype.
 * The op-by-op comparison with CPython is tests/python/test_pyvm.py. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pf_test.h"
#include "pyvm.h" /* pf__prog_fill_isa */
#include "pyvm_test.h"

static void test_tables(void **state) {
  (void)state;
  assert_string_equal(pf_prog_opcode_name(0), "I_CONST");
  assert_null(pf_prog_opcode_name(pf_prog_opcode_count()));
  assert_null(pf_prog_opcode_name(-1));
  int arity;
  assert_string_equal(pf_prog_function_name(fn("hypot"), &arity), "hypot");
  assert_int_equal(arity, 2);
  assert_string_equal(pf_prog_function_name(fn("sin"), &arity), "sin");
  assert_int_equal(arity, 1);
  assert_null(pf_prog_function_name(pf_prog_function_count(), &arity));
  assert_int_equal(arity, 0);
  assert_string_equal(pf_strerror(PF_EBAIL),
                      "a translated function needs Python for this element");
}

/* Every malformed shape is PF_EINVAL, never a crash. */
static void test_validation(void **state) {
  (void)state;
  pf_prog *p = (pf_prog *)1;
  pf_error err;
  const int64_t ik[1] = {5};
  const double fk[1] = {1.5};
  struct {
    ins code[3];
    size_t n;
    int ndim;
    int32_t nregs[3];
    const char *why;
  } bad[] = {
      {{{"RET_I", 0, 1, 0, 0}}, 1, 1, {1, 0, 0}, "out of range"},
      {{{"RET_F", 0, 0, 0, 0}}, 1, 0, {0, 0, 0}, "out of range"},
      {{{"I_CONST", 0, 1, 0, 0}, {"RET_I", 0, 0, 0, 0}}, 2, 0, {1, 0, 0},
       "out of range"},
      {{{"F_CONST", 0, 1, 0, 0}, {"RET_F", 0, 0, 0, 0}}, 2, 0, {0, 1, 0},
       "out of range"},
      {{{"B_CONST", 0, 2, 0, 0}, {"RET_B", 0, 0, 0, 0}}, 2, 0, {0, 0, 1},
       "out of range"},
      {{{"JMP", 0, 5, 0, 0}, {"BAIL", 0, 0, 0, 0}}, 2, 0, {0, 0, 0},
       "outside"},
      {{{"JMP", 0, -1, 0, 0}, {"BAIL", 0, 0, 0, 0}}, 2, 0, {0, 0, 0},
       "outside"},
      {{{"BR", 0, 0, 1, 2}, {"BAIL", 0, 0, 0, 0}}, 2, 0, {0, 0, 1},
       "outside"},
      {{{"C_MOV", 0, 0, 0, 0}, {"BAIL", 0, 0, 0, 0}}, 2, 0, {0, 0, 0},
       "out of range"},
      {{{"RET_C", 0, 0, 0, 0}}, 1, 0, {0, 0, 0}, "out of range"},
      {{{"I_MOV", 0, 0, 0, 0}}, 1, 1, {1, 0, 0}, "off the end"},
      {{{"BAIL", 1, 0, 0, 0}}, 1, 0, {0, 0, 0}, "unused operand"},
      {{{"RET_I", 0, 0, 7, 0}}, 1, 1, {1, 0, 0}, "unused operand"},
      {{{"F_CALL1", 0, 0, 22, 0}, {"RET_F", 0, 0, 0, 0}}, 2, 0, {0, 1, 0},
       "math function"},
      {{{"F_CALL2", 0, 0, 0, 0}, {"RET_F", 0, 0, 0, 0}}, 2, 0, {0, 1, 0},
       "math function"},
      {{{"F_CALL1", 0, 0, -1, 0}, {"RET_F", 0, 0, 0, 0}}, 2, 0, {0, 1, 0},
       "math function"},
      {{{"BAIL", 0, 0, 0, 0}}, 1, 2, {1, 0, 0}, "index parameters"},
      {{{"BAIL", 0, 0, 0, 0}}, 1, 0, {-1, 0, 0}, "register count"},
      {{{"BAIL", 0, 0, 0, 0}}, 1, 0, {0, PF_PROG_MAX_REGS + 1, 0},
       "register count"},
      {{{"BAIL", 0, 0, 0, 0}}, 1, 33, {40, 0, 0}, "ndim"},
  };
  for (size_t k = 0; k < PF_ARRAY_LEN(bad); k++) {
    memset(&err, 0, sizeof err);
    p = (pf_prog *)1;
    int rc = create(&p, bad[k].code, bad[k].n, ik, 1, fk, 1, bad[k].ndim,
                    bad[k].nregs[0], bad[k].nregs[1], bad[k].nregs[2], &err);
    if (rc != PF_EINVAL || strstr(err.message, bad[k].why) == NULL)
      fail_msg("case %zu: rc %d, message '%s' (want '%s')", k, rc,
               err.message, bad[k].why);
    assert_null(p);
  }
  /* Unknown opcodes, word counts, NULL pools. */
  int32_t words[10] = {-1, 0, 0, 0, 0};
  int32_t nregs[4] = {0, 0, 0, 0};
  assert_int_equal(pf_prog_create(&p, words, 5, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  assert_non_null(strstr(err.message, "unknown opcode"));
  words[0] = pf_prog_opcode_count();
  assert_int_equal(pf_prog_create(&p, words, 5, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  words[0] = op("BAIL");
  assert_int_equal(pf_prog_create(&p, words, 4, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  assert_int_equal(pf_prog_create(&p, words, 0, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  assert_int_equal(pf_prog_create(&p, words, 5, NULL, 1, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  assert_int_equal(pf_prog_create(&p, NULL, 5, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  assert_int_equal(pf_prog_create(NULL, words, 5, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  /* The smallest valid program. */
  assert_int_equal(pf_prog_create(&p, words, 5, NULL, 0, NULL, 0, 0, nregs,
                                  &err), 0);
  pf_prog_free(p);
  pf_prog_free(NULL);
}

/* Dense: f(i, j) = sin(i * 0.01) * cos(j * 0.02) + sqrt(float(i + j)). */
static void test_dense(void **state) {
  (void)state;
  const ins code[] = {
      /* One definition per register, as the front end writes them: what
       * makes an instruction invariant (pyvm_prog.c). */
      {"I2F", 0, 0, 0, 0},          {"F_CONST", 1, 0, 0, 0},
      {"F_MUL", 2, 0, 1, 0},        {"F_CALL1", 3, 2, fn("sin"), 0},
      {"I2F", 4, 1, 0, 0},          {"F_CONST", 5, 1, 0, 0},
      {"F_MUL", 6, 4, 5, 0},        {"F_CALL1", 7, 6, fn("cos"), 0},
      {"F_MUL", 8, 3, 7, 0},        {"I_ADD", 2, 0, 1, 0},
      {"I2F", 9, 2, 0, 0},          {"F_CALL1", 10, 9, fn("sqrt"), 0},
      {"F_ADD", 11, 8, 10, 0},      {"RET_F", 0, 11, 0, 0},
  };
  const double fk[2] = {0.01, 0.02};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), NULL, 0, fk, 2, 2, 3,
                          12, 0, &err), 0);
  /* sin(i * 0.01) is row-invariant, cos(j * 0.02) the one row-cached
   * instruction, sqrt (a vector op) not worth caching. */
  assert_true(p->flags[3] & PYVM_INVARIANT);
  assert_false(p->flags[3] & PYVM_COLUMN);
  assert_true(p->flags[7] & PYVM_COLUMN);
  assert_false(p->flags[7] & PYVM_INVARIANT);
  assert_false(p->flags[11] & (PYVM_COLUMN | PYVM_INVARIANT));
  assert_int_equal(p->ncolumn, 1);
  assert_int_equal(p->column[7], 0);
  const int64_t shape[2] = {123, 457};
  double *out = malloc(sizeof(double) * 123 * 457);
  /* Every instruction set (capped: the CPU may have fewer); rows of 457
   * lanes hoist sin(i * 0.01) out of each row and take cos(j * 0.02) from
   * the row cache after a worker's first row. */
  for (int run = 0; run < 9; run++) {
    const int workers = 1 + run % 3, s = run % 3, isa = run / 3;
    {
      memset(out, 0, sizeof(double) * 123 * 457);
      pf_array a = array_of(out, PF_FLOAT64, 2, shape);
      pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
      o.workers = workers;
      o.schedule = (pf_schedule)s;
      o.chunk = s == 0 ? 0 : 1000;
      assert_int_equal(pf__prog_fill_isa(p, &a, &o, isa, &err), 0);
      for (int64_t i = 0; i < 123; i++)
        for (int64_t j = 0; j < 457; j++) {
          double want = sin((double)i * 0.01) * cos((double)j * 0.02) +
                        sqrt((double)(i + j));
          if (memcmp(&out[i * 457 + j], &want, sizeof want) != 0)
            fail_msg("(%lld, %lld): %.17g != %.17g", (long long)i,
                     (long long)j, out[i * 457 + j], want);
        }
    }
  }
  free(out);
  pf_prog_free(p);
}

/* Branching: f(i) = i // 3 if i % 2 else (i * i if i % 3 else -i), stored
 * into int32 (every lane list is sparse; the three paths merge nowhere). */
static int64_t branchy(int64_t i) {
  if (i % 2) return i / 3;
  return i % 3 ? i * i : -i;
}

static void test_branching(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0},     /* 0: I1 = 2 */
      {"I_MOD", 2, 0, 1, 0},       /* 1: I2 = i % 2 */
      {"I_TRUTH", 0, 2, 0, 0},     /* 2 */
      {"BR", 0, 0, 4, 7},          /* 3 */
      {"I_CONST", 1, 1, 0, 0},     /* 4: I1 = 3 */
      {"I_FLOORDIV", 2, 0, 1, 0},  /* 5 */
      {"RET_I", 0, 2, 0, 0},       /* 6 */
      {"I_CONST", 1, 1, 0, 0},     /* 7: I1 = 3 */
      {"I_MOD", 2, 0, 1, 0},       /* 8 */
      {"I_TRUTH", 0, 2, 0, 0},     /* 9 */
      {"BR", 0, 0, 11, 13},        /* 10 */
      {"I_MUL", 2, 0, 0, 0},       /* 11 */
      {"JMP", 0, 14, 0, 0},        /* 12 */
      {"I_NEG", 2, 0, 0, 0},       /* 13: falls through */
      {"RET_I", 0, 2, 0, 0},       /* 14 */
  };
  const int64_t ik[2] = {2, 3};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 2, NULL, 0, 1, 3,
                          0, 1, &err), 0);
  enum { N = 20011 };
  int32_t *out = malloc(sizeof(int32_t) * N);
  const int64_t shape[1] = {N};
  pf_array a = array_of(out, PF_INT32, 1, shape);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.workers = 2;
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), 0);
  for (int64_t i = 0; i < N; i++)
    if (out[i] != branchy(i))
      fail_msg("f(%lld) = %d, want %lld", (long long)i, out[i],
               (long long)branchy(i));
  /* Larger: i * i leaves int32 at i = 46342 (even, not a multiple of 3). */
  enum { M = 60000 };
  int32_t *big = malloc(sizeof(int32_t) * M);
  const int64_t shape2[1] = {M};
  a = array_of(big, PF_INT32, 1, shape2);
  for (int workers = 1; workers <= 3; workers++)
    for (int s = 0; s < 3; s++) {
      o.workers = workers;
      o.schedule = (pf_schedule)s;
      o.chunk = 777;
      memset(&err, 0, sizeof err);
      assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_EBAIL);
      assert_int_equal(err.position, 46342);
      assert_string_equal(err.message,
                          "RET_I: value out of bounds for the output dtype");
      for (int64_t i = 0; i < 46342; i++)
        if (big[i] != branchy(i)) fail_msg("f(%lld)", (long long)i);
    }
  free(big);
  free(out);
  pf_prog_free(p);
}

/* The lowest bailing element wins whatever the split: f(i) = 1000 // (i % 997
 * - 500) bails at i = 500, 1497, ...; with first past 500, at 1497. */
static void test_lowest_bail_and_first(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0}, {"I_MOD", 1, 0, 1, 0},
      {"I_CONST", 2, 1, 0, 0}, {"I_SUB", 1, 1, 2, 0},
      {"I_CONST", 2, 2, 0, 0}, {"I_FLOORDIV", 1, 2, 1, 0},
      {"RET_I", 0, 1, 0, 0},
  };
  const int64_t ik[3] = {997, 500, 1000};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 3, NULL, 0, 1, 3,
                          0, 0, &err), 0);
  enum { N = 100000 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  const int64_t shape[1] = {N};
  pf_array a = array_of(out, PF_INT64, 1, shape);
  const int64_t firsts[] = {0, 499, 500, 501, 1497, 1498};
  for (size_t f = 0; f < PF_ARRAY_LEN(firsts); f++)
    for (int workers = 1; workers <= 3; workers++)
      for (int s = 0; s < 3; s++) {
        for (int64_t i = 0; i < N; i++) out[i] = -7;
        pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
        o.workers = workers;
        o.schedule = (pf_schedule)s;
        o.chunk = s == 0 ? 0 : 300;
        o.first = firsts[f];
        memset(&err, 0, sizeof err);
        int64_t want = firsts[f] <= 500 ? 500 : firsts[f] <= 1497 ? 1497
                                                                  : 2494;
        assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_EBAIL);
        assert_int_equal(err.position, want);
        assert_string_equal(err.message, "I_FLOORDIV: integer division or "
                                         "modulo by zero");
        for (int64_t i = 0; i < firsts[f]; i++) assert_int_equal(out[i], -7);
        for (int64_t i = firsts[f]; i < want; i++) {
          int64_t d = i % 997 - 500, q = 1000 / d;
          if (1000 % d != 0 && ((1000 < 0) != (d < 0))) q--;
          if (out[i] != q) fail_msg("f(%lld)", (long long)i);
        }
      }
  /* first == size: nothing to do; past it: invalid. */
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.first = N;
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), 0);
  o.first = N + 1;
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_EINVAL);
  o.first = -1;
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_EINVAL);
  /* A wrong ndim. */
  const int64_t shape2[2] = {10, 10};
  pf_array a2 = array_of(out, PF_INT64, 2, shape2);
  assert_int_equal(pf_prog_fill(p, &a2, NULL, &err), PF_EINVAL);
  free(out);
  pf_prog_free(p);
}

/* RET_I of 300 and RET_F of 2.5, 1e39 and NaN into every dtype. */
static void test_stores(void **state) {
  (void)state;
  const int64_t ik[1] = {300};
  const double fk[3] = {2.5, 1e39, NAN};
  /* Expected: 0 stored (and value checked below), else bail. */
  for (int d = 0; d < PF_DTYPE_COUNT; d++) {
    pf_dtype dt = (pf_dtype)d;
    for (int v = 0; v < 4; v++) {
      ins code[2];
      if (v == 0) {
        code[0] = (ins){"I_CONST", 0, 0, 0, 0};
        code[1] = (ins){"RET_I", 0, 0, 0, 0};
      } else {
        code[0] = (ins){"F_CONST", 0, v - 1, 0, 0};
        code[1] = (ins){"RET_F", 0, 0, 0, 0};
      }
      pf_prog *p;
      pf_error err;
      assert_int_equal(create(&p, code, 2, ik, 1, fk, 3, 1, 1, 1, 0, &err), 0);
      unsigned char buf[64] = {0};
      const int64_t shape[1] = {1};
      pf_array a = array_of(buf, dt, 1, shape);
      int rc = pf_prog_fill(p, &a, NULL, &err);
      int is_int = dt >= PF_INT8 && dt <= PF_UINT64;
      int small_int = dt == PF_INT8 || dt == PF_UINT8;
      int narrow_float = dt == PF_FLOAT16 || dt == PF_FLOAT32 ||
                         dt == PF_COMPLEX64;
      int want_bail = (v == 0 && small_int) ||
                      (v == 2 && (is_int || narrow_float)) ||
                      (v == 3 && is_int);
      if (want_bail != (rc == PF_EBAIL) || (!want_bail && rc != 0))
        fail_msg("%s, value %d: rc %d (%s)", pf_dtype_name(dt), v, rc,
                 err.message);
      if (rc != 0) {
        pf_prog_free(p);
        continue;
      }
      double got;
      switch (dt) {
      case PF_BOOL: case PF_UINT8: got = buf[0]; break;
      case PF_INT8: got = (int8_t)buf[0]; break;
      case PF_INT16: { int16_t x; memcpy(&x, buf, 2); got = x; break; }
      case PF_INT32: { int32_t x; memcpy(&x, buf, 4); got = x; break; }
      case PF_INT64: { int64_t x; memcpy(&x, buf, 8); got = (double)x; break; }
      case PF_UINT16: { uint16_t x; memcpy(&x, buf, 2); got = x; break; }
      case PF_UINT32: { uint32_t x; memcpy(&x, buf, 4); got = x; break; }
      case PF_UINT64: { uint64_t x; memcpy(&x, buf, 8); got = (double)x; break; }
      case PF_FLOAT16: { /* 2.5 and 300 are exact halves */
        uint16_t h;
        memcpy(&h, buf, 2);
        got = ldexp((double)(1024 + (h & 1023)), ((h >> 10) & 31) - 25);
        if (h == 0x7e00) got = NAN;
        break;
      }
      case PF_FLOAT32: case PF_COMPLEX64: {
        float x;
        memcpy(&x, buf, 4);
        got = x;
        break;
      }
      case PF_LONGDOUBLE: case PF_CLONGDOUBLE: {
        long double x;
        memcpy(&x, buf, sizeof x);
        got = (double)x;
        break;
      }
      default: memcpy(&got, buf, 8); break;
      }
      double want = v == 0 ? 300.0 : fk[v - 1];
      if (dt == PF_BOOL) want = 1.0;
      else if (is_int && v == 1) want = 2.0;
      if (!(got == want || (isnan(got) && isnan(want))))
        fail_msg("%s, value %d: %g != %g", pf_dtype_name(dt), v, got, want);
      pf_prog_free(p);
    }
  }
}

/* Lanes leave a block at a bail while the lanes below finish everything. */
static void test_bail_op_and_path(void **state) {
  (void)state;
  /* f(i) = float(i) if i < 700 else BAIL */
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0}, {"I_LT", 0, 0, 1, 0}, {"BR", 0, 0, 3, 5},
      {"I2F", 0, 0, 0, 0},     {"RET_F", 0, 0, 0, 0}, {"BAIL", 0, 0, 0, 0},
  };
  const int64_t ik[1] = {700};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 1, NULL, 0, 1, 2,
                          1, 1, &err), 0);
  double out[5000];
  const int64_t shape[1] = {5000};
  pf_array a = array_of(out, PF_FLOAT64, 1, shape);
  assert_int_equal(pf_prog_fill(p, &a, NULL, &err), PF_EBAIL);
  assert_int_equal(err.position, 700);
  assert_string_equal(err.message, "BAIL: this path is left to Python");
  for (int i = 0; i < 700; i++) assert_true(out[i] == (double)i);
  pf_prog_free(p);
}

/* Row-invariant hoisting on lane lists: f(i, j) = j for odd j, else
 * 7 // (i - 3) + (i < 3) + j * 0.5. The branch on j leaves the even lanes of
 * each row as a list; `i < 3` (a B register), `i - 3` and `7 // (i - 3)`
 * depend on the row only, so each runs for the list's first lane and is
 * copied to the others, and the division's bail (i == 3) is that first
 * lane's: the lowest bailing element is (3, 0), then (3, 2) from (3, 1). */
static double hoisted(int64_t i, int64_t j) {
  if (j % 2) return (double)j;
  int64_t d = i - 3, q = 7 / d;
  if (7 % d != 0 && d < 0) q--; /* floor division */
  return (double)q + (double)(i < 3) + (double)j * 0.5;
}

static const ins hoisting_code[] = {
    {"I_CONST", 2, 0, 0, 0},    /* 0: I2 = 2 */
    {"I_MOD", 3, 1, 2, 0},      /* 1: I3 = j % 2 */
    {"I_TRUTH", 0, 3, 0, 0},    /* 2 */
    {"BR", 0, 0, 17, 4},        /* 3: odd j to 17 */
    {"I_CONST", 2, 1, 0, 0},    /* 4: I2 = 3 */
    {"I_LT", 1, 0, 2, 0},       /* 5: B1 = i < 3 (invariant) */
    {"I_SUB", 4, 0, 2, 0},      /* 6: I4 = i - 3 (invariant) */
    {"I_CONST", 5, 2, 0, 0},    /* 7: I5 = 7 */
    {"I_FLOORDIV", 4, 5, 4, 0}, /* 8: I4 = 7 // I4 (invariant, bails) */
    {"I2F", 0, 4, 0, 0},        /* 9 */
    {"B2F", 1, 1, 0, 0},        /* 10 */
    {"F_ADD", 0, 0, 1, 0},      /* 11 */
    {"I2F", 2, 1, 0, 0},        /* 12: F2 = j */
    {"F_CONST", 3, 0, 0, 0},    /* 13: F3 = 0.5 */
    {"F_MUL", 2, 2, 3, 0},      /* 14 */
    {"F_ADD", 0, 0, 2, 0},      /* 15 */
    {"RET_F", 0, 0, 0, 0},      /* 16 */
    {"I2F", 0, 1, 0, 0},        /* 17: odd j */
    {"RET_F", 0, 0, 0, 0},      /* 18 */
};
static const int64_t hoisting_ik[3] = {2, 3, 7};
static const double hoisting_fk[1] = {0.5};

static int create_hoisting(pf_prog **p, pf_error *err) {
  return create(p, hoisting_code, PF_ARRAY_LEN(hoisting_code), hoisting_ik,
                3, hoisting_fk, 1, 2, 6, 4, 2, err);
}

static void test_hoisting_on_lane_lists(void **state) {
  (void)state;
  pf_prog *p;
  pf_error err;
  assert_int_equal(create_hoisting(&p, &err), 0);
  enum { R = 6, C = 100 }; /* rows of 100 lanes: hoisted (>= 64) */
  static double out[R * C];
  const int64_t shape[2] = {R, C};
  pf_array a = array_of(out, PF_FLOAT64, 2, shape);
  const struct {
    int64_t first, bail; /* -1: none */
  } runs[] = {{0, 3 * C}, {3 * C + 1, 3 * C + 2}, {4 * C, -1}};
  for (int isa = PYVM_ISA_BASE; isa <= PYVM_ISA_AVX512; isa++)
    for (int workers = 1; workers <= 2; workers++)
      for (size_t r = 0; r < PF_ARRAY_LEN(runs); r++) {
        for (int k = 0; k < R * C; k++) out[k] = -7.0;
        pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
        o.workers = workers;
        o.first = runs[r].first;
        memset(&err, 0, sizeof err);
        int rc = pf__prog_fill_isa(p, &a, &o, isa, &err);
        int64_t stop = runs[r].bail < 0 ? R * C : runs[r].bail;
        if (runs[r].bail < 0) {
          assert_int_equal(rc, 0);
        } else {
          assert_int_equal(rc, PF_EBAIL);
          assert_int_equal(err.position, runs[r].bail);
          assert_string_equal(err.message, "I_FLOORDIV: integer division or "
                                           "modulo by zero");
        }
        for (int64_t k = runs[r].first; k < stop; k++) {
          double want = hoisted(k / C, k % C);
          if (memcmp(&out[k], &want, sizeof want) != 0)
            fail_msg("isa %d, first %lld: (%lld, %lld) = %.17g, want %.17g",
                     isa, (long long)runs[r].first, (long long)(k / C),
                     (long long)(k % C), out[k], want);
        }
      }
  pf_prog_free(p);
}

/* The most registers a file may have: a lane block's registers would not
 * fit the scratch budget, so blocks get fewer lanes (down to 64). */
static void test_many_registers(void **state) {
  (void)state;
  const int32_t top = PF_PROG_MAX_REGS - 1;
  const ins code[] = {
      {"I2F", top, 0, 0, 0},
      {"F_CONST", top - 1, 0, 0, 0},
      {"F_MUL", top, top, top - 1, 0},
      {"I_CONST", 1, 0, 0, 0},
      {"I_EQ", top, 0, 1, 0},
      {"BR", 0, top, 6, 7},
      {"BAIL", 0, 0, 0, 0},
      {"RET_F", 0, top, 0, 0},
  };
  const int64_t ik[1] = {2900};
  const double fk[1] = {0.25};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 1, fk, 1, 1, 2,
                          PF_PROG_MAX_REGS, PF_PROG_MAX_REGS, &err), 0);
  enum { N = 3000 };
  static double out[N];
  const int64_t shape[1] = {N};
  pf_array a = array_of(out, PF_FLOAT64, 1, shape);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.workers = 2;
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_EBAIL);
  assert_int_equal(err.position, 2900);
  for (int k = 0; k < 2900; k++) assert_true(out[k] == k * 0.25);
  pf_prog_free(p);
}

/* What pf_prog_create and pf_prog_fill refuse besides the instructions. */
static void test_arguments(void **state) {
  (void)state;
  pf_prog *p;
  pf_error err;
  const int32_t nregs[4] = {1, 0, 0, 0};
  int32_t bail[5] = {op("BAIL"), 0, 0, 0, 0};
  assert_int_equal(pf_prog_create(&p, bail, 5, NULL, 0, NULL, 0, -1, nregs,
                                  &err), PF_EINVAL);
  assert_non_null(strstr(err.message, "ndim -1"));
  assert_int_equal(pf_prog_create(&p, bail, 5, NULL, 0, NULL, 1, 0, nregs,
                                  &err), PF_EINVAL);
  assert_int_equal(pf_prog_create(&p, bail, 5, NULL, 0, NULL, 0, 0, NULL,
                                  &err), PF_EINVAL);
  /* Too long, too many constants: refused before anything is read. */
  const size_t words = 5 * ((size_t)PF_PROG_MAX_CODE + 1);
  int32_t *code = calloc(words, sizeof *code);
  int64_t *ik = calloc((size_t)PF_PROG_MAX_CONSTS + 1, sizeof *ik);
  double *fk = calloc((size_t)PF_PROG_MAX_CONSTS + 1, sizeof *fk);
  assert_non_null(code);
  assert_non_null(ik);
  assert_non_null(fk);
  for (size_t k = 0; k < words; k += 5) code[k] = op("BAIL");
  assert_int_equal(pf_prog_create(&p, code, words, NULL, 0, NULL, 0, 0, nregs,
                                  &err), PF_EINVAL);
  assert_non_null(strstr(err.message, "instructions"));
  assert_int_equal(pf_prog_create(&p, bail, 5, ik, PF_PROG_MAX_CONSTS + 1,
                                  NULL, 0, 0, nregs, &err), PF_EINVAL);
  assert_non_null(strstr(err.message, "constants"));
  assert_int_equal(pf_prog_create(&p, bail, 5, NULL, 0, fk,
                                  PF_PROG_MAX_CONSTS + 1, 0, nregs, &err),
                   PF_EINVAL);
  /* The largest pools and program are fine. */
  assert_int_equal(pf_prog_create(&p, code, words - 5, ik, PF_PROG_MAX_CONSTS,
                                  fk, PF_PROG_MAX_CONSTS, 0, nregs, &err), 0);
  pf_prog_free(p);
  free(code);
  free(ik);
  free(fk);
  assert_null(pf_prog_opcode_name(-1));
  int arity = 5;
  assert_null(pf_prog_function_name(-1, &arity));
  assert_int_equal(arity, 0);
  assert_null(pf_prog_function_name(pf_prog_function_count(), NULL));
  /* Fills: no program or array, an unknown dtype, a negative length. */
  assert_int_equal(pf_prog_create(&p, bail, 5, NULL, 0, NULL, 0, 1, nregs,
                                  &err), 0);
  double out[4];
  const int64_t shape[1] = {4};
  pf_array a = array_of(out, PF_FLOAT64, 1, shape);
  assert_int_equal(pf_prog_fill(NULL, &a, NULL, &err), PF_EINVAL);
  assert_int_equal(pf_prog_fill(p, NULL, NULL, &err), PF_EINVAL);
  pf_array bad = a;
  bad.dtype = PF_DTYPE_COUNT;
  assert_int_equal(pf_prog_fill(p, &bad, NULL, &err), PF_EDTYPE);
  bad = a;
  bad.shape[0] = -1;
  assert_int_equal(pf_prog_fill(p, &bad, NULL, &err), PF_EINVAL);
  assert_non_null(strstr(err.message, "shape"));
  pf_prog_free(p);
}

/* Every allocation of pf_prog_create and pf_prog_fill failing in turn (the
 * pool exists already): PF_ENOMEM each time, nothing leaked (the sanitizer
 * build checks), and the same answer once every allocation succeeds. */
static void test_out_of_memory(void **state) {
  (void)state;
  enum { R = 4, C = 70 };
  static double out[R * C];
  const int64_t shape[2] = {R, C};
  pf_array a = array_of(out, PF_FLOAT64, 2, shape);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.workers = 2;
  pf_error err;
  pf_prog *warm;
  assert_int_equal(create_hoisting(&warm, &err), 0);
  assert_int_equal(pf_prog_fill(warm, &a, &o, &err), PF_EBAIL);
  pf_prog_free(warm);
  int failed = 0;
  for (long n = 1;; n++) {
    pf__alloc_fail_nth(n);
    pf_prog *p = NULL;
    int rc = create_hoisting(&p, &err);
    if (rc == 0) {
      rc = pf_prog_fill(p, &a, &o, &err);
      pf_prog_free(p);
    } else {
      assert_null(p);
    }
    pf__alloc_fail_nth(0);
    if (rc == PF_EBAIL) {
      assert_int_equal(err.position, 3 * C);
      break;
    }
    assert_int_equal(rc, PF_ENOMEM);
    assert_true(n < 1000);
    failed++;
  }
  assert_true(failed >= 6); /* create: 4 + blocks + analysis; fill: 2+ */
  for (int64_t k = 0; k < 3 * C; k++)
    assert_true(out[k] == hoisted(k / C, k % C));
}

/* ---------------------------------------------------------------- loops */

/* Collatz steps of i + 1: a while loop with an if/else inside, lanes
 * leaving after different trip counts. */
static int64_t collatz(int64_t i) {
  int64_t n = i + 1, s = 0;
  while (n != 1) {
    n = n % 2 ? 3 * n + 1 : n / 2;
    s++;
  }
  return s;
}

static void test_loop_collatz(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0},     /* 0: I1 = 1 */
      {"I_CONST", 5, 1, 0, 0},     /* 1: I5 = 2 */
      {"I_CONST", 6, 2, 0, 0},     /* 2: I6 = 3 */
      {"I_ADD", 2, 0, 1, 0},       /* 3: n = i + 1 */
      {"I_CONST", 3, 3, 0, 0},     /* 4: s = 0 */
      {"I_NE", 0, 2, 1, 0},        /* 5: while n != 1 */
      {"BR", 0, 0, 7, 16},         /* 6 */
      {"I_MOD", 4, 2, 5, 0},       /* 7 */
      {"I_TRUTH", 1, 4, 0, 0},     /* 8 */
      {"BR", 0, 1, 12, 10},        /* 9 */
      {"I_FLOORDIV", 2, 2, 5, 0},  /* 10: n //= 2 */
      {"JMP", 0, 14, 0, 0},        /* 11 */
      {"I_MUL", 2, 6, 2, 0},       /* 12: n = 3 * n + 1 */
      {"I_ADD", 2, 2, 1, 0},       /* 13 */
      {"I_ADD", 3, 3, 1, 0},       /* 14: s += 1 */
      {"JMP", 0, 5, 0, 0},         /* 15: back edge */
      {"RET_I", 0, 3, 0, 0},       /* 16 */
  };
  const int64_t ik[4] = {1, 2, 3, 0};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 4, NULL, 0, 1, 7,
                          0, 2, &err), 0);
  enum { N = 30011 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  const int64_t shape[1] = {N};
  for (int run = 0; run < 9; run++) {
    memset(out, 0xff, sizeof(int64_t) * N);
    pf_array a = array_of(out, PF_INT64, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = 1 + run % 3;
    o.schedule = (pf_schedule)(run % 3);
    o.chunk = run % 3 == 0 ? 0 : 999;
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 3, &err), 0);
    for (int64_t i = 0; i < N; i++)
      if (out[i] != collatz(i))
        fail_msg("run %d: collatz(%lld) = %lld, want %lld", run,
                 (long long)i, (long long)out[i], (long long)collatz(i));
  }
  free(out);
  pf_prog_free(p);
}

/* A guard inside a loop: acc += (i == 1234 && k == 50 ? INT64_MAX : 1) for
 * k in range(100) overflows at iteration 50 of element 1234 only. */
static void test_loop_bail_midway(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0},   /* 0: acc = 0 */
      {"I_CONST", 2, 0, 0, 0},   /* 1: k = 0 */
      {"I_CONST", 3, 1, 0, 0},   /* 2: I3 = 100 */
      {"I_CONST", 4, 2, 0, 0},   /* 3: I4 = 1 */
      {"I_CONST", 5, 3, 0, 0},   /* 4: I5 = INT64_MAX */
      {"I_CONST", 6, 4, 0, 0},   /* 5: I6 = 1234 */
      {"I_CONST", 7, 5, 0, 0},   /* 6: I7 = 50 */
      {"I_LT", 0, 2, 3, 0},      /* 7: while k < 100 */
      {"BR", 0, 0, 9, 16},       /* 8 */
      {"I_EQ", 1, 0, 6, 0},      /* 9: i == 1234 */
      {"I_EQ", 2, 2, 7, 0},      /* 10: k == 50 */
      {"B_AND", 1, 1, 2, 0},     /* 11 */
      {"I_SELECT", 8, 1, 5, 4},  /* 12 */
      {"I_ADD", 1, 1, 8, 0},     /* 13: acc += ... (guarded) */
      {"I_ADD", 2, 2, 4, 0},     /* 14: k += 1 */
      {"JMP", 0, 7, 0, 0},       /* 15 */
      {"RET_I", 0, 1, 0, 0},     /* 16 */
  };
  const int64_t ik[6] = {0, 100, 1, INT64_MAX, 1234, 50};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 6, NULL, 0, 1, 9,
                          0, 3, &err), 0);
  enum { N = 5000 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  const int64_t shape[1] = {N};
  for (int run = 0; run < 9; run++) {
    memset(out, 0, sizeof(int64_t) * N);
    pf_array a = array_of(out, PF_INT64, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = 1 + run % 3;
    o.schedule = (pf_schedule)(run % 3);
    o.chunk = 100 + 37 * run;
    memset(&err, 0, sizeof err);
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 3, &err), PF_EBAIL);
    assert_int_equal(err.position, 1234);
    assert_string_equal(err.message, "I_ADD: integer result outside int64");
    for (int i = 0; i < 1234; i++) assert_int_equal(out[i], 100);
  }
  free(out);
  pf_prog_free(p);
}

/* Lanes return from inside a loop after i % 50 + 1 trips, so the lanes
 * still looping move into the slots of finished ones (taking the registers
 * live there: acc, k, the loop's constants and `base`, which only the return
 * reads); the results go to their own elements through the slot map, into
 * int64 and (converted) float64. */
static int64_t early_return(int64_t i) { return (i % 50 + 1) * 3 * i + 7 * i; }

static void test_loop_return_after_lanes_moved(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0},   /* 0: acc = 0 */
      {"I_CONST", 2, 0, 0, 0},   /* 1: k = 0 */
      {"I_CONST", 3, 1, 0, 0},   /* 2: I3 = 100 */
      {"I_CONST", 4, 2, 0, 0},   /* 3: I4 = 1 */
      {"I_CONST", 5, 3, 0, 0},   /* 4: I5 = 3 */
      {"I_CONST", 6, 4, 0, 0},   /* 5: I6 = 7 */
      {"I_CONST", 7, 5, 0, 0},   /* 6: I7 = 50 */
      {"I_MUL", 8, 0, 6, 0},     /* 7: base = i * 7 */
      {"I_MUL", 9, 0, 5, 0},     /* 8: step = i * 3 */
      {"I_MOD", 10, 0, 7, 0},    /* 9: stop = i % 50 */
      {"I_LT", 0, 2, 3, 0},      /* 10: while k < 100 */
      {"BR", 0, 0, 12, 19},      /* 11 */
      {"I_ADD", 1, 1, 9, 0},     /* 12: acc += step */
      {"I_EQ", 1, 2, 10, 0},     /* 13: if k == stop */
      {"BR", 0, 1, 15, 17},      /* 14 */
      {"I_ADD", 11, 1, 8, 0},    /* 15: return acc + base */
      {"RET_I", 0, 11, 0, 0},    /* 16 */
      {"I_ADD", 2, 2, 4, 0},     /* 17: k += 1 */
      {"JMP", 0, 10, 0, 0},      /* 18 */
      {"RET_I", 0, 1, 0, 0},     /* 19 */
  };
  const int64_t ik[6] = {0, 100, 1, 3, 7, 50};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 6, NULL, 0, 1,
                          12, 0, 2, &err), 0);
  enum { N = 20011 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  const int64_t shape[1] = {N};
  for (int run = 0; run < 12; run++) {
    const pf_dtype dt = run % 2 ? PF_FLOAT64 : PF_INT64;
    memset(out, 0xff, sizeof(int64_t) * N);
    pf_array a = array_of(out, dt, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = 1 + run % 3;
    o.schedule = (pf_schedule)(run % 3);
    o.chunk = run % 4 == 0 ? 0 : 777 + 100 * run;
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 4, &err), 0);
    for (int64_t i = 0; i < N; i++) {
      const double want = (double)early_return(i);
      double got;
      if (dt == PF_INT64)
        got = (double)out[i];
      else
        memcpy(&got, &out[i], 8);
      if (got != want)
        fail_msg("run %d: f(%lld) = %.17g, want %.17g", run, (long long)i,
                 got, want);
    }
  }
  free(out);
  pf_prog_free(p);
}

/* Lanes leave a loop after i % 61 trips and wait at its exit, so the
 * looping ones are moved together (compaction, with the waiting lanes'
 * registers swapped out of their way); then element 4321 overflows at trip
 * 40: the bail is still the lowest element's, and every element below it
 * holds its own value. */
static void test_loop_bail_after_lanes_moved(void **state) {
  (void)state;
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0},   /* 0: acc = 0 */
      {"I_CONST", 2, 0, 0, 0},   /* 1: k = 0 */
      {"I_CONST", 9, 6, 0, 0},   /* 2: I9 = 61 */
      {"I_MOD", 3, 0, 9, 0},     /* 3: trips = i % 61 */
      {"I_CONST", 4, 2, 0, 0},   /* 4: I4 = 1 */
      {"I_CONST", 5, 3, 0, 0},   /* 5: I5 = INT64_MAX */
      {"I_CONST", 6, 4, 0, 0},   /* 6: I6 = 4321 */
      {"I_CONST", 7, 5, 0, 0},   /* 7: I7 = 40 */
      {"I_LT", 0, 2, 3, 0},      /* 8: while k < trips */
      {"BR", 0, 0, 10, 17},      /* 9 */
      {"I_EQ", 1, 0, 6, 0},      /* 10: i == 4321 */
      {"I_EQ", 2, 2, 7, 0},      /* 11: k == 40 */
      {"B_AND", 1, 1, 2, 0},     /* 12 */
      {"I_SELECT", 8, 1, 5, 4},  /* 13 */
      {"I_ADD", 1, 1, 8, 0},     /* 14: acc += ... (guarded) */
      {"I_ADD", 2, 2, 4, 0},     /* 15: k += 1 */
      {"JMP", 0, 8, 0, 0},       /* 16 */
      {"RET_I", 0, 1, 0, 0},     /* 17 */
  };
  const int64_t ik[7] = {0, 100, 1, INT64_MAX, 4321, 40, 61};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 7, NULL, 0, 1,
                          10, 0, 3, &err), 0);
  enum { N = 9000 };
  int64_t *out = malloc(sizeof(int64_t) * N);
  const int64_t shape[1] = {N};
  for (int run = 0; run < 9; run++) {
    memset(out, 0xff, sizeof(int64_t) * N);
    pf_array a = array_of(out, PF_INT64, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = 1 + run % 3;
    o.schedule = (pf_schedule)(run % 3);
    o.chunk = run % 3 == 0 ? 0 : 1000 + 37 * run;
    memset(&err, 0, sizeof err);
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 3, &err), PF_EBAIL);
    assert_int_equal(err.position, 4321);
    assert_string_equal(err.message, "I_ADD: integer result outside int64");
    for (int i = 0; i < 4321; i++)
      if (out[i] != i % 61)
        fail_msg("run %d: out[%d] = %lld, want %d", run, i,
                 (long long)out[i], i % 61);
  }
  free(out);
  pf_prog_free(p);
}

/* An element that loops forever is stopped by the fill's timeout, on one
 * worker and on several (the others finish their elements). */
static void test_endless_loop_times_out(void **state) {
  (void)state;
  /* f(i) = 1 if i != 777 else (loop forever) */
  const ins code[] = {
      {"I_CONST", 1, 0, 0, 0}, {"I_EQ", 0, 0, 1, 0}, {"BR", 0, 0, 3, 4},
      {"JMP", 0, 3, 0, 0},     {"B_CONST", 0, 1, 0, 0}, {"RET_B", 0, 0, 0, 0},
  };
  const int64_t ik[1] = {777};
  pf_prog *p;
  pf_error err;
  assert_int_equal(create(&p, code, PF_ARRAY_LEN(code), ik, 1, NULL, 0, 1, 2,
                          0, 1, &err), 0);
  uint8_t out[3000];
  const int64_t shape[1] = {3000};
  for (int workers = 1; workers <= 3; workers++) {
    pf_array a = array_of(out, PF_UINT8, 1, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = workers;
    o.timeout = 0.2;
    memset(&err, 0, sizeof err);
    assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_ETIMEDOUT);
  }
  pf_prog_free(p);
}

/* -------------------------------------------------------------- complex */

/* The escape count of c = (j * 0.01 - 2, i * 0.01 - 1) in 100 iterations of
 * z = z * z + c while abs(z) <= 2: C_MUL, C_ADD, C_ABS + F_LE (fused). */
static int64_t escape(int64_t i, int64_t j) {
  const double cr = (double)j * 0.01 - 2.0, ci = (double)i * 0.01 - 1.0;
  double zr = 0, zi = 0;
  int64_t n = 0;
  while (n < 100) {
    const double r = zr * zr - zi * zi, m = zr * zi + zi * zr;
    zr = r + cr;
    zi = m + ci;
    if (!(hypot(zr, zi) <= 2.0)) break;
    n++;
  }
  return n;
}

static void test_complex_escape(void **state) {
  (void)state;
  const ins code[] = {
      {"I2F", 0, 1, 0, 0},      /* 0: F0 = j */
      {"F_CONST", 1, 0, 0, 0},  /* 1: 0.01 */
      {"F_MUL", 0, 0, 1, 0},    /* 2 */
      {"F_CONST", 2, 1, 0, 0},  /* 3: 2.0 */
      {"F_SUB", 0, 0, 2, 0},    /* 4: re */
      {"I2F", 3, 0, 0, 0},      /* 5: F3 = i */
      {"F_MUL", 3, 3, 1, 0},    /* 6 */
      {"F_CONST", 4, 2, 0, 0},  /* 7: 1.0 */
      {"F_SUB", 3, 3, 4, 0},    /* 8: im */
      {"C_MAKE", 0, 0, 3, 0},   /* 9: c */
      {"C_CONST", 1, 3, 0, 0},  /* 10: z = 0j */
      {"I_CONST", 2, 0, 0, 0},  /* 11: n = 0 */
      {"I_CONST", 3, 1, 0, 0},  /* 12: 100 */
      {"I_CONST", 4, 2, 0, 0},  /* 13: 1 */
      {"I_LT", 0, 2, 3, 0},     /* 14: while n < 100 */
      {"BR", 0, 0, 16, 23},     /* 15 */
      {"C_MUL", 1, 1, 1, 0},    /* 16: z = z * z + c */
      {"C_ADD", 1, 1, 0, 0},    /* 17 */
      {"C_ABS", 5, 1, 0, 0},    /* 18: abs(z) */
      {"F_GE", 1, 2, 5, 0},     /* 19: 2.0 >= abs(z) (fused, swapped) */
      {"BR", 0, 1, 21, 23},     /* 20 */
      {"I_ADD", 2, 2, 4, 0},    /* 21: n += 1 */
      {"JMP", 0, 14, 0, 0},     /* 22 */
      {"RET_I", 0, 2, 0, 0},    /* 23 */
  };
  const int64_t ik[3] = {0, 100, 1};
  const double fk[5] = {0.01, 2.0, 1.0, 0.0, 0.0};
  pf_prog *p;
  pf_error err;
  int32_t *w = assemble(code, PF_ARRAY_LEN(code));
  const int32_t nregs[4] = {5, 6, 2, 2};
  assert_int_equal(pf_prog_create(&p, w, 5 * PF_ARRAY_LEN(code), ik, 3, fk,
                                  5, 2, nregs, &err), 0);
  free(w);
  enum { H = 201, W = 301 };
  int16_t *out = malloc(sizeof(int16_t) * H * W);
  const int64_t shape[2] = {H, W};
  for (int run = 0; run < 9; run++) {
    memset(out, 0xff, sizeof(int16_t) * H * W);
    pf_array a = array_of(out, PF_INT16, 2, shape);
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = 1 + run % 3;
    o.schedule = (pf_schedule)(run % 3);
    assert_int_equal(pf__prog_fill_isa(p, &a, &o, run / 3, &err), 0);
    for (int64_t i = 0; i < H; i++)
      for (int64_t j = 0; j < W; j++)
        if (out[i * W + j] != escape(i, j))
          fail_msg("run %d: (%lld, %lld) = %d, want %lld", run, (long long)i,
                   (long long)j, out[i * W + j], (long long)escape(i, j));
  }
  free(out);
  pf_prog_free(p);
}

/* The fused abs(z) OP x against hypot on points within a few ulps of the
 * circle |z| = x (pf__py_cabs_sign's proof), every ISA. */
static void test_abs_compare_near_circle(void **state) {
  (void)state;
  const char *cmp[4] = {"F_LT", "F_LE", "F_GT", "F_GE"};
  enum { N = 20000 };
  double *fk = malloc(sizeof(double) * 2 * N);
  double *x = malloc(sizeof(double) * N);
  uint64_t seed = 12345;
  for (int k = 0; k < N; k++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const double t = (double)(seed >> 11) * 0x1p-53 * 6.283185307179586;
    const double r = k % 3 == 0 ? 2.0 : k % 3 == 1 ? 1e-3 : 7.5e100;
    double re = r * cos(t), im = r * sin(t);
    for (int u = (int)(seed % 7); u > 0; u--)
      re = nextafter(re, (seed >> 5) & 1 ? INFINITY : -INFINITY);
    /* Just outside the fast path's margin (2**-20 in |z|**2), both ways. */
    if (k % 5 == 4) re *= (seed >> 6) & 1 ? 1.0 + 0x1p-19 : 1.0 - 0x1p-19;
    fk[2 * k] = re;
    fk[2 * k + 1] = im;
    x[k] = r;
  }
  for (int c = 0; c < 4; c++) {
    /* One program per point: z and x are its constants. */
    for (int k = 0; k < N; k += 7) {
      const double pool[3] = {fk[2 * k], fk[2 * k + 1], x[k]};
      const ins code[] = {
          {"C_CONST", 0, 0, 0, 0}, {"F_CONST", 1, 2, 0, 0},
          {"C_ABS", 0, 0, 0, 0},   {cmp[c], 0, 0, 1, 0},
          {"RET_B", 0, 0, 0, 0},
      };
      int32_t *w = assemble(code, PF_ARRAY_LEN(code));
      const int32_t nregs[4] = {0, 2, 1, 1};
      pf_prog *p;
      pf_error err;
      assert_int_equal(pf_prog_create(&p, w, 5 * 5, NULL, 0, pool, 3, 0,
                                      nregs, &err), 0);
      free(w);
      const double h = hypot(pool[0], pool[1]);
      const int want = c == 0 ? h < x[k] : c == 1 ? h <= x[k]
                       : c == 2 ? h > x[k] : h >= x[k];
      for (int isa = 0; isa < 3; isa++) {
        uint8_t got = 9;
        pf_array a = array_of(&got, PF_BOOL, 0, NULL);
        assert_int_equal(pf__prog_fill_isa(p, &a, NULL, isa, &err), 0);
        if (got != want)
          fail_msg("%s: abs(%a, %a) vs %a: %d, want %d", cmp[c], pool[0],
                   pool[1], x[k], got, want);
      }
      pf_prog_free(p);
    }
  }
  free(fk);
  free(x);
}

/* Complex division by zero bails with ZeroDivisionError's reason; RET_C
 * stores into complex dtypes and bails for a real one. */
static void test_complex_div_and_store(void **state) {
  (void)state;
  /* f(i) = complex(1.5, i) / complex(i - 3, 0.0) */
  const ins code[] = {
      {"F_CONST", 0, 0, 0, 0}, {"I2F", 1, 0, 0, 0},
      {"C_MAKE", 0, 0, 1, 0},  {"I_CONST", 1, 0, 0, 0},
      {"I_SUB", 1, 0, 1, 0},   {"I2C", 1, 1, 0, 0},
      {"C_DIV", 0, 0, 1, 0},   {"RET_C", 0, 0, 0, 0},
  };
  const int64_t ik[1] = {3};
  const double fk[1] = {1.5};
  int32_t *w = assemble(code, PF_ARRAY_LEN(code));
  const int32_t nregs[4] = {2, 2, 0, 2};
  pf_prog *p;
  pf_error err;
  assert_int_equal(pf_prog_create(&p, w, 5 * PF_ARRAY_LEN(code), ik, 1, fk,
                                  1, 1, nregs, &err), 0);
  free(w);
  double out[2 * 10];
  const int64_t shape[1] = {10};
  pf_array a = array_of(out, PF_COMPLEX128, 1, shape);
  assert_int_equal(pf_prog_fill(p, &a, NULL, &err), PF_EBAIL);
  assert_int_equal(err.position, 3);
  assert_string_equal(err.message, "C_DIV: complex division by zero");
  for (int i = 0; i < 3; i++) {
    /* _Py_c_quot with b = (i - 3, 0): |b.real| >= |b.imag|, ratio 0 */
    const double br = (double)(i - 3), ratio = 0.0 / br,
                 denom = br + 0.0 * ratio;
    const double wr = (1.5 + (double)i * ratio) / denom,
                 wi = ((double)i - 1.5 * ratio) / denom;
    assert_memory_equal(&out[2 * i], &wr, 8);
    assert_memory_equal(&out[2 * i + 1], &wi, 8);
  }
  float out32[2 * 10];
  a = array_of(out32, PF_COMPLEX64, 1, shape);
  pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
  o.first = 4;
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), 0);
  assert_true(out32[2 * 9] == (float)(1.5 / 6.0));
  double real[10];
  a = array_of(real, PF_FLOAT64, 1, shape);
  assert_int_equal(pf_prog_fill(p, &a, &o, &err), PF_EBAIL);
  assert_int_equal(err.position, 4);
  assert_non_null(strstr(err.message, "RET_C: complex stored into a real"));
  pf_prog_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tables),
      cmocka_unit_test(test_validation),
      cmocka_unit_test(test_dense),
      cmocka_unit_test(test_branching),
      cmocka_unit_test(test_lowest_bail_and_first),
      cmocka_unit_test(test_stores),
      cmocka_unit_test(test_bail_op_and_path),
      cmocka_unit_test(test_hoisting_on_lane_lists),
      cmocka_unit_test(test_many_registers),
      cmocka_unit_test(test_arguments),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_loop_collatz),
      cmocka_unit_test(test_loop_bail_midway),
      cmocka_unit_test(test_loop_bail_after_lanes_moved),
      cmocka_unit_test(test_loop_return_after_lanes_moved),
      cmocka_unit_test(test_endless_loop_times_out),
      cmocka_unit_test(test_complex_escape),
      cmocka_unit_test(test_abs_compare_near_circle),
      cmocka_unit_test(test_complex_div_and_store),
  };
  return PF_RUN_TESTS(tests, NULL, NULL);
}
