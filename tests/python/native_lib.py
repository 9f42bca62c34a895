"""The tiny C library of the native-function tests (test_native.py,
test_dask.py), compiled with the system cc and -ffp-contract=off, so its
arithmetic rounds as NumPy's does and NumPy on numpy.indices is the
reference; and its functions as typed ctypes function pointers."""
import ctypes
import subprocess

C_SOURCE = r"""
#include <stdint.h>
#include <time.h>

double elem(int64_t i) { return (double)i * 0.37 - 100.0; }

double wide(int64_t i) { return ((double)i - 500.0) * 1.0e7; }

double index_sum(const int64_t *ix, int nd) {
  double v = 0;
  for (int d = 0; d < nd; d++) v = v * 131.0 + (double)ix[d];
  return v;
}

void block_f64(int64_t start, int64_t count, void *out, void *ctx) {
  double scale = ctx ? *(const double *)ctx : 1.0;
  for (int64_t k = 0; k < count; k++) ((double *)out)[k] = (double)(start + k) * scale;
}

void block_i32(int64_t start, int64_t count, void *out, void *ctx) {
  for (int64_t k = 0; k < count; k++) ((int32_t *)out)[k] = (int32_t)((start + k) ^ 0x5a);
}

/* out[k] = the ctx address itself, to see what was passed. */
void block_ctx(int64_t start, int64_t count, void *out, void *ctx) {
  for (int64_t k = 0; k < count; k++) ((uint64_t *)out)[k] = (uint64_t)(uintptr_t)ctx;
}

/* About `us` microseconds of busy work per element, without the GIL. */
static double spin_for(int64_t i, double us) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  do clock_gettime(CLOCK_MONOTONIC, &b);
  while ((b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) * 1e-3 < us);
  return (double)i;
}
double spin(int64_t i) { return spin_for(i, 200.0); }
double spin_short(int64_t i) { return spin_for(i, 20.0); }
"""

I64 = ctypes.c_int64
ELEMENT = ctypes.CFUNCTYPE(ctypes.c_double, I64)
INDEX = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(I64), ctypes.c_int)
BLOCK = ctypes.CFUNCTYPE(None, I64, I64, ctypes.c_void_p, ctypes.c_void_p)


def build(directory):
    """Compile C_SOURCE in ``directory`` and load it."""
    src, so = directory / "fns.c", directory / "libfns.so"
    src.write_text(C_SOURCE)
    subprocess.run(["cc", "-O2", "-ffp-contract=off", "-shared", "-fPIC",
                    "-o", str(so), str(src)], check=True)
    return ctypes.CDLL(str(so))


def typed(lib, name, prototype):
    """lib.name as a function pointer of the prototype (CFUNCTYPE instance)."""
    return prototype(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
