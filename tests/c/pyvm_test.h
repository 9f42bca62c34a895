/* pyvm_test.h -- what the VM's C tests share: opcodes by name, programs
 * assembled from {op, dst, a, b, c} rows, contiguous arrays. */
#ifndef PF_PYVM_TEST_H
#define PF_PYVM_TEST_H

#include <stdlib.h>
#include <string.h>

#include "pf_test.h"
#include "pyvm.h"

/* The numbering of src/pyvm_opcodes.h, through the public API. */
static inline int op(const char *name) {
  for (int k = 0; k < pf_prog_opcode_count(); k++)
    if (strcmp(pf_prog_opcode_name(k), name) == 0) return k;
  fail_msg("no opcode %s", name);
  return -1;
}

static inline int fn(const char *name) {
  for (int k = 0; k < pf_prog_function_count(); k++)
    if (strcmp(pf_prog_function_name(k, NULL), name) == 0) return k;
  fail_msg("no function %s", name);
  return -1;
}

/* Instructions as {op, dst, a, b, c} with the op by name. */
typedef struct ins {
  const char *op;
  int32_t dst, a, b, c;
} ins;

static inline int32_t *assemble(const ins *code, size_t n) {
  int32_t *w = calloc(5 * n, sizeof *w);
  assert_non_null(w);
  for (size_t k = 0; k < n; k++) {
    w[5 * k] = op(code[k].op);
    w[5 * k + 1] = code[k].dst;
    w[5 * k + 2] = code[k].a;
    w[5 * k + 3] = code[k].b;
    w[5 * k + 4] = code[k].c;
  }
  return w;
}

static inline int create(pf_prog **p, const ins *code, size_t n, const int64_t *ik,
                  size_t ni, const double *fk, size_t nf, int ndim,
                  int32_t ni_regs, int32_t nf_regs, int32_t nb_regs,
                  pf_error *err) {
  int32_t *w = assemble(code, n);
  int32_t nregs[4] = {ni_regs, nf_regs, nb_regs, 0};
  int rc = pf_prog_create(p, w, 5 * n, ik, ni, fk, nf, ndim, nregs, err);
  free(w);
  return rc;
}

static inline pf_array array_of(void *data, pf_dtype dtype, int ndim,
                         const int64_t *shape) {
  pf_array a = {.data = data, .dtype = dtype, .ndim = ndim};
  for (int d = 0; d < ndim; d++) a.shape[d] = shape[d];
  pf_array_set_contiguous(&a);
  return a;
}

#endif /* PF_PYVM_TEST_H */
