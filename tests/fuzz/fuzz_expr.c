/* fuzz_expr.c -- libFuzzer target: any bytes as an expression.
 *
 * The input is an expression (up to the first NUL). It is compiled for 1 to
 * 4 dimensions with four parameters (a 128-bit seed among them); what compiles is evaluated over small
 * shapes in several dtypes, in blocks that start mid-array, and freed. The
 * only acceptable outcomes are an error code with a position inside the
 * text, or a result; sanitizers catch the rest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "fuzz.h"

static void check_error(const pf_error *err, int rc, size_t length) {
  /* Errors carry their code, a message and a position in the text. */
  if (err->code != rc || err->message[0] == '\0') abort();
  if (err->position < -1 || err->position > (int64_t)length) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  size_t length = strlen(text);
  static const pf_param params[] = {
      {.name = "a", .kind = PF_PARAM_INT, .i = -3},
      {.name = "b", .kind = PF_PARAM_FLOAT, .f = 0.5},
      {.name = "flag", .kind = PF_PARAM_BOOL, .i = 1},
      {.name = "seed", .kind = PF_PARAM_UINT128, .u = {7, 1}},
  };
  static const int64_t shapes[4][4] = {
      {37, 0, 0, 0}, {5, 9, 0, 0}, {2, 3, 7, 0}, {1, 4, 3, 5}};
  static const pf_dtype dtypes[] = {PF_FLOAT64, PF_INT64, PF_BOOL, PF_UINT32,
                                    PF_FLOAT16, PF_COMPLEX64};
  for (int ndim = 1; ndim <= 4; ndim++) {
    pf_expr *e = NULL;
    pf_error err;
    int rc = pf_expr_compile(&e, text, ndim, params, 4, &err);
    if (rc != 0) {
      check_error(&err, rc, length);
      if (e != NULL) abort();
      continue;
    }
    pf_dtype type = pf_expr_type(e);
    if (type != PF_FLOAT64 && type != PF_INT64 && type != PF_BOOL) abort();
    int64_t total = 1;
    for (int d = 0; d < ndim; d++) total *= shapes[ndim - 1][d];
    char out[64 * 16];
    for (size_t t = 0; t < sizeof dtypes / sizeof *dtypes; t++) {
      size_t item = pf_dtype_size(dtypes[t]);
      /* The whole array, then a piece starting inside it. */
      rc = pf__expr_eval_block(e, shapes[ndim - 1], dtypes[t], 0, total, out,
                               &err);
      if (rc != 0) check_error(&err, rc, length);
      rc = pf__expr_eval_block(e, shapes[ndim - 1], dtypes[t], total / 3,
                               total - total / 3, out + item, &err);
      if (rc != 0) check_error(&err, rc, length);
    }
    pf_expr_free(e);
  }
  free(text);
  return 0;
}
