/* fuzz.h -- what every libFuzzer harness here includes. */
#ifndef PF_FUZZ_H
#define PF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* A failed check: crash loudly so the fuzzer keeps the input. */
#define CHECK(cond)       \
  do {                    \
    if (!(cond)) abort(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* PF_FUZZ_H */
