/*
 * fuzz_pyvm.c -- libFuzzer target for the translated-program VM's validation
 * and execution.
 *
 *   make fuzz && build/fuzz/fuzz_pyvm -max_total_time=600 tests/fuzz/corpus/pyvm
 *
 * Input: 8 header bytes (ndim, nI, nF, nB (its high nibble: nC), int
 * constants, float constants, dtype, shape seed), the constants (8 bytes each), then instructions of 5
 * bytes: the opcode, then dst, a, b, c as signed bytes -- small operands, so
 * that many inputs are valid programs and run. Any input must be accepted or
 * refused with PF_EINVAL and a message, never crash; an accepted program
 * must fill a small array with 0 or PF_EBAIL (at an element of the array,
 * with a message), serially and on two workers, never crash or leak; a
 * program that loops forever (legal: backward jumps) is stopped by a short
 * timeout (PF_ETIMEDOUT), so it cannot hang either.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parfill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  int ndim = data[0] % 4;
  int32_t nregs[4] = {data[1] % 16, data[2] % 16, data[3] % 16,
                      (data[3] >> 4) % 8};
  size_t ni = data[4] % 8, nf = data[5] % 8;
  pf_dtype dtype = (pf_dtype)(data[6] % PF_DTYPE_COUNT);
  unsigned seed = data[7];
  data += 8;
  size -= 8;
  if (size < 8 * (ni + nf)) return 0;
  int64_t ik[8];
  double fk[8];
  memcpy(ik, data, 8 * ni);
  memcpy(fk, data + 8 * ni, 8 * nf);
  data += 8 * (ni + nf);
  size -= 8 * (ni + nf);
  size_t n = size / 5;
  if (n > 4096) n = 4096;
  int32_t *words = malloc(5 * (n > 0 ? n : 1) * sizeof *words);
  CHECK(words != NULL);
  for (size_t k = 0; k < 5 * n; k++)
    words[k] = k % 5 == 0 ? (int32_t)data[k] : (int32_t)(int8_t)data[k];
  pf_prog *prog = NULL;
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_prog_create(&prog, words, 5 * n, ik, ni, fk, nf, ndim, nregs,
                          &err);
  free(words);
  if (rc != 0) {
    CHECK(rc == PF_EINVAL || rc == PF_ENOMEM);
    CHECK(prog == NULL);
    CHECK(err.code == rc && err.message[0] != '\0');
    CHECK(memchr(err.message, '\0', sizeof err.message) != NULL);
    return 0;
  }
  CHECK(prog != NULL);
  /* A small array: up to 7 x 11 x 13 x ... elements from the seed. */
  pf_array a = {.dtype = dtype, .ndim = ndim};
  int64_t total = 1;
  for (int d = 0; d < ndim; d++) {
    a.shape[d] = 1 + (seed >> (2 * d)) % (d == ndim - 1 ? 700 : 5);
    total *= a.shape[d];
  }
  pf_array_set_contiguous(&a);
  size_t bytes = (size_t)total * pf_dtype_size(dtype);
  a.data = malloc(bytes);
  CHECK(a.data != NULL);
  for (int workers = 1; workers <= 2; workers++) {
    pf_fill_options o = PF_FILL_OPTIONS_DEFAULTS;
    o.workers = workers;
    o.chunk = 64;
    o.first = workers == 2 ? total / 3 : 0;
    o.timeout = 0.05;
    memset(&err, 0, sizeof err);
    rc = pf_prog_fill(prog, &a, &o, &err);
    CHECK(rc == 0 || rc == PF_EBAIL || rc == PF_ETIMEDOUT);
    if (rc == PF_EBAIL) {
      CHECK(err.position >= o.first && err.position < total);
      CHECK(err.message[0] != '\0');
    }
  }
  free(a.data);
  pf_prog_free(prog);
  return 0;
}
