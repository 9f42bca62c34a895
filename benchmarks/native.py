"""Suite "native": heavy native per-element functions, parfill vs numba prange.

Two workloads of n = 10**7 float64 (``--n``; ``--quick`` 10**5), each written
in C (compiled at run time with the system ``cc -O2 -ffp-contract=off`` into
a temporary directory, loaded with ctypes) and in numba with the same
operations:

* ``newton`` -- Lambert's W by Newton's method: x e**x = a, a = 0.5 +
  (i mod 100000) * 1e-4, from x = log(1 + a) until the step is below
  1e-14 |x| (4-6 iterations of an exp, a division and a few flops; the
  count depends on the element, so no compiler vectorises across
  elements): what the parallel machinery costs around a scalar function.
* ``heavy`` -- 12 dependent divisions and a sin (~60 flops) per element,
  straight-line code: numba's prange loop vectorises it across elements
  (AVX-512 divisions), which a function called once per element cannot.

Methods:

* **C loop (1 thread)** -- the speedup baseline: a plain loop in the same
  shared library calling the function per element.
* **numba prange** -- ``@njit(parallel=True)`` over ``prange``, with
  ``numba.set_num_threads(workers)``: the peer to match.
* **parfill ctypes (element)** -- ``parfill.populate(f, out=out)`` with the C
  function as ``CFUNCTYPE(c_double, c_int64)``: one call per element on
  parfill's pool, GIL released.
* **parfill numba.cfunc (element)** -- the same function from numba.
* **parfill ctypes (block)** -- ``void f_block(start, count, out, ctx)`` from
  the same library: no call per element.

Results are checked against the baseline: equal for C, within 1e-12
relative for numba (its exp/sin may come from another library).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from .harness import Entry, Result, compare

DESCRIPTION = ("native functions: heavy per-element C / numba.cfunc functions via "
               "parfill.populate vs numba prange")

SUITE = "native"

C_SOURCE = r"""
#include <math.h>
#include <stdint.h>

double newton(int64_t i) {
  double a = 0.5 + (double)(i % 100000) * 1e-4;
  double x = log(1.0 + a);
  for (int k = 0; k < 100; k++) {
    double ex = exp(x);
    double step = (x * ex - a) / (ex * (x + 1.0));
    x -= step;
    if (fabs(step) <= 1e-14 * fabs(x)) break;
  }
  return x;
}

double heavy(int64_t i) {
  double x = (double)i * 1e-7, acc = 0.0;
  for (int k = 1; k <= 12; k++) {
    acc = acc * 0.5 + x / ((double)k + x * x);
    x = x * 1.0001 + 0.25;
  }
  return acc + sin(x);
}

#define LOOPS(f)                                                      \
  void f##_loop(int64_t n, double *out) {                             \
    for (int64_t i = 0; i < n; i++) out[i] = f(i);                    \
  }                                                                   \
  void f##_block(int64_t start, int64_t count, void *out, void *ctx) { \
    double *o = out;                                                  \
    (void)ctx;                                                        \
    for (int64_t k = 0; k < count; k++) o[k] = f(start + k);          \
  }
LOOPS(newton)
LOOPS(heavy)
"""

NOTES = """\
notes: median of the timed runs, each filling a preallocated float64 array; speedup = the
  single-threaded C loop's median / median; vs best peer = numba prange's median / median
  (1.00x: as fast; 0.77x: 1.3 times slower). numba compiles in the untimed first run.
  The C library is built with `cc -O2 -ffp-contract=off` at the start of the suite.
  heavy: numba vectorises its prange loop across elements (host ISA); a function called
  once per element (C or numba.cfunc) runs one element at a time."""

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


#: The names --only takes (the harness adds the option).
WORKLOADS = ["newton", "heavy"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=None,
                        help="elements (default 10**7; --quick 10**5)")


def _build_library(workdir: str) -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    src = os.path.join(workdir, "heavy.c")
    lib = os.path.join(workdir, "libheavy.so")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run([cc, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", lib,
                    src, "-lm"], check=True)
    return ctypes.CDLL(lib)


def _numba_functions(workers: int) -> dict[str, tuple[Any, Callable[[np.ndarray], None]]]:
    """name -> (numba.cfunc, prange loop) with the C functions' operations."""
    import math

    import numba

    @numba.njit(inline="always")
    def newton(i):
        a = 0.5 + (i % 100000) * 1e-4
        x = math.log(1.0 + a)
        for _ in range(100):
            ex = math.exp(x)
            step = (x * ex - a) / (ex * (x + 1.0))
            x -= step
            if abs(step) <= 1e-14 * abs(x):
                break
        return x

    @numba.njit(inline="always")
    def heavy(i):
        x = i * 1e-7
        acc = 0.0
        for k in range(1, 13):
            acc = acc * 0.5 + x / (k + x * x)
            x = x * 1.0001 + 0.25
        return acc + math.sin(x)

    @numba.cfunc("float64(int64)")
    def newton_cfunc(i):
        return newton(i)

    @numba.cfunc("float64(int64)")
    def heavy_cfunc(i):
        return heavy(i)

    @numba.njit(parallel=True)
    def newton_prange(out):
        for i in numba.prange(out.size):
            out[i] = newton(i)

    @numba.njit(parallel=True)
    def heavy_prange(out):
        for i in numba.prange(out.size):
            out[i] = heavy(i)

    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    return {"newton": (newton_cfunc, newton_prange), "heavy": (heavy_cfunc, heavy_prange)}


_WORKLOADS = {
    "newton": "Lambert W by Newton's method: 4-6 iterations of exp, a division, "
              "a few flops",
    "heavy": "12 dependent divisions + sin, straight-line (~60 flops)",
}


def workload(name: str, n: int, workers: int, repeat: int, lib: ctypes.CDLL,
             numba_fns: dict[str, Any] | None, numba_error: str) -> list[Result]:
    import parfill

    DESCRIPTIONS[name] = f"{name}: {_WORKLOADS[name]}, n={n:,} float64"
    loop = getattr(lib, f"{name}_loop")
    loop.argtypes = [ctypes.c_int64, ctypes.c_void_p]
    loop.restype = None
    element = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(
        ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    block = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                             ctypes.c_void_p)(
        ctypes.cast(getattr(lib, f"{name}_block"), ctypes.c_void_p).value)
    out = np.empty(n)
    out.fill(0.0)  # touch the pages before any run
    loop(n, out.ctypes.data)
    reference = out.copy()

    def exact(a: np.ndarray) -> bool:
        return bool(np.array_equal(a, reference))

    def close(a: np.ndarray) -> bool:
        return bool(np.allclose(a, reference, rtol=1e-12, atol=1e-300))

    def c_loop() -> np.ndarray:
        loop(n, out.ctypes.data)
        return out

    methods: list[tuple[str, str, Callable[[], Any], Callable[[Any], bool]]] = [
        ("C loop (1 thread)", "sequential", c_loop, exact),
    ]
    cfunc = None
    if numba_fns is None:
        def missing() -> np.ndarray:
            raise ImportError(numba_error)
        methods.append(("numba prange", "peer", missing, close))
    else:
        cfunc, prange = numba_fns[name]
        methods.append(("numba prange", "peer", lambda: (prange(out), out)[1], close))
    methods.append(("parfill ctypes (element)", "parfill",
                    lambda: parfill.populate(element, out=out, workers=workers), exact))
    if cfunc is not None:
        methods.append(("parfill numba.cfunc (element)", "parfill",
                        lambda: parfill.populate(cfunc, out=out, workers=workers), close))
    methods.append(("parfill ctypes (block)", "parfill",
                    lambda: parfill.populate(block, out=out, workers=workers), exact))
    entries = [Entry(Result(SUITE, name, label, role, n, workers), fn, check)
               for label, role, fn, check in methods]
    return compare(entries, repeat=repeat)


def run(args: argparse.Namespace) -> list[Result]:
    """Run the suite with the harness's common options (and ``--only``, ``--n``)."""
    only = set(getattr(args, "only", None) or [])
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    n = args.n or (10**5 if args.quick else 10**7)
    try:
        numba_fns, numba_error = _numba_functions(args.workers), ""
    except ImportError as exc:
        numba_fns, numba_error = None, f"numba is not installed: {exc}"
    workdir = tempfile.mkdtemp(prefix="parfill-bench-native-")
    try:
        lib = _build_library(workdir)
        results: list[Result] = []
        for name in _WORKLOADS:
            if not only or name in only:
                results += workload(name, n, args.workers, repeat, lib, numba_fns,
                                    numba_error)
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
