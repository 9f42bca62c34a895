/*
 * fuzz_npy.c -- libFuzzer target for the .npy header reader.
 *
 *   make fuzz && build/fuzz/fuzz_npy -max_total_time=600 tests/fuzz/corpus/npy
 *
 * Any input must give 0, PF_EFORMAT or PF_EDTYPE with a filled pf_error --
 * never a crash, an out-of-bounds read (the input is exactly `size` bytes),
 * a hang or a leak. A header that parses must describe a valid array, and
 * writing it back and reading that must give the same description.
 * `make fuzz-replay` runs this over the corpus with tests/fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parfill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_npy_header h;
  pf_error err;
  memset(&err, 0, sizeof err);
  int rc = pf_npy_header_read(data, size, &h, &err);
  if (rc != 0) {
    CHECK(rc == PF_EFORMAT || rc == PF_EDTYPE);
    CHECK(err.code == rc);
    CHECK(memchr(err.message, '\0', sizeof err.message) != NULL);
    CHECK(err.message[0] != '\0');
    CHECK(err.position >= -1 && err.position <= (int64_t)size);
    return 0;
  }
  CHECK(h.version >= 1 && h.version <= 3);
  CHECK(h.ndim >= 0 && h.ndim <= PF_MAX_DIMS);
  CHECK(pf_dtype_size(h.dtype) > 0);
  CHECK(h.data_offset > 0 && h.data_offset <= (int64_t)size);
  int64_t elements;
  CHECK(pf_shape_size(h.ndim, h.shape, pf_dtype_size(h.dtype), &elements) ==
        0);

  /* Write the description back (C order only) and read it again. */
  if (h.fortran_order) return 0;
  unsigned char buf[PF_NPY_HEADER_MAX];
  size_t len;
  CHECK(pf_npy_header_write(&h, buf, sizeof buf, &len, &err) == 0);
  CHECK(len % 64 == 0);
  pf_npy_header back;
  CHECK(pf_npy_header_read(buf, len, &back, &err) == 0);
  CHECK(back.version == h.version && back.dtype == h.dtype &&
        back.ndim == h.ndim && back.data_offset == (int64_t)len);
  CHECK(memcmp(back.shape, h.shape, sizeof(int64_t) * (size_t)h.ndim) == 0);
  return 0;
}
