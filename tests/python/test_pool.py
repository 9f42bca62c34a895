"""The thread pool as Python sees it: timeouts and cancels that return at once
even while a native call runs for seconds, fairness between fills from two
threads, and a bounded number of pool threads (issue 9, items 4, 11, 12)."""
import ctypes
import os
import subprocess
import threading
import time

import numpy as np
import pytest

import parfill
from parfill import _core

C_SOURCE = r"""
#include <stdint.h>
#include <time.h>

/* Element 0 sleeps 1.5 s (without the GIL); the others are quick. */
double sleepy(int64_t i) {
  if (i == 0) {
    struct timespec ts = {1, 500000000};
    while (nanosleep(&ts, &ts) != 0) {}
  }
  return (double)i;
}

/* Index version of the same. */
double sleepy_index(const int64_t *ix, int nd) {
  int64_t flat = 0;
  for (int d = 0; d < nd; d++) flat = flat * 100 + ix[d];
  return sleepy(flat);
}
"""

ELEMENT = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)
INDEX = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_int64),
                         ctypes.c_int)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    src, so = d / "fns.c", d / "libfns.so"
    src.write_text(C_SOURCE)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(src)],
                   check=True)
    return ctypes.CDLL(str(so))


def typed(lib, name, prototype):
    return prototype(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)


def threads_now():
    return len(os.listdir("/proc/self/task"))


# ------------------------------------------------ timeouts, prompt returns

@pytest.mark.parametrize("kind", ["element", "index"])
def test_native_timeout_returns_while_a_call_runs(lib, kind):
    fn = typed(lib, "sleepy", ELEMENT) if kind == "element" else \
        typed(lib, "sleepy_index", INDEX)
    shape = 10000 if kind == "element" else (100, 100)
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(fn, shape, workers=2, timeout=0.2)
    took = time.monotonic() - t0
    assert took < 1.0, f"timeout 0.2 s with a 1.5 s call: returned after {took:.2f} s"
    # The call still running finishes later and writes into the array the
    # fill keeps alive; the process goes on unharmed.
    time.sleep(1.6)
    a = parfill.populate(fn, shape, workers=2)
    assert np.array_equal(a.reshape(-1), np.arange(10000, dtype=np.float64))


def test_native_cancel_returns_while_a_call_runs(lib):
    fn = typed(lib, "sleepy", ELEMENT)
    calls = []

    def progress(done, total):
        calls.append(done)  # called when `done` changes: the first poll
        raise KeyboardInterrupt

    out = np.zeros(10000)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parfill.populate(fn, out=out, workers=2, progress=progress)
    took = time.monotonic() - t0
    assert took < 1.0, f"cancel returned after {took:.2f} s"
    time.sleep(1.6)  # the late call lands in `out`, which is still alive
    del out
    a = parfill.populate(fn, 3000, workers=2)
    assert np.array_equal(a, np.arange(3000, dtype=np.float64))


@pytest.mark.parametrize("workers", [1, 2])
def test_expression_timeout(workers):
    expr = "sin(cos(sin(cos(sin(cos(i * 0.001))))))"
    n = 4_000_000
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(expr, n, np.float32, workers=workers, timeout=1e-6)
    took = time.monotonic() - t0
    assert took < 0.5
    # A generous timeout does not fire, and the values are NumPy's.
    a = parfill.populate(expr, 1000, workers=workers, timeout=60)
    i = np.arange(1000, dtype=np.float64)
    ref = np.sin(np.cos(np.sin(np.cos(np.sin(np.cos(i * 0.001))))))
    assert np.allclose(a, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_random_timeout(workers):
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.random(4_000_000, "normal", seed=1, dtype=np.float32,
                       workers=workers, timeout=1e-6)
    assert time.monotonic() - t0 < 0.5
    a = parfill.random(1000, seed=3, timeout=60)
    ref = np.random.Generator(np.random.Philox(key=3)).random(1000)
    assert np.array_equal(a, ref)
    with pytest.raises(ValueError):
        parfill.random(10, timeout=0)


# ------------------------------------------------------------- fairness

# About 1 s for BIG elements on two threads: the VM is fast, so deep nesting.
HEAVY = " + ".join("sin(cos(" * 20 + f"i * 0.00{k}" + "))" * 20
                   for k in range(1, 5))
BIG = 8_000_000


def test_small_fill_beside_a_large_one():
    big = np.empty(BIG, np.float32)
    done = {}

    def run_big():
        t = time.monotonic()
        parfill.populate(HEAVY, out=big, workers=2)
        done["big"] = time.monotonic() - t

    th = threading.Thread(target=run_big)
    th.start()
    try:
        time.sleep(0.1)  # the large fill holds the pool
        t = time.monotonic()
        small = parfill.populate("i * 2", 100_000, workers=2)
        took = time.monotonic() - t
        big_running = th.is_alive()
    finally:
        th.join()
    assert np.array_equal(small, np.arange(100_000) * 2.0)
    assert big_running, "the large fill ended first: no contention measured"
    assert took < 0.25 * done["big"], (
        f"small fill {took:.3f} s beside a large one of {done['big']:.3f} s")


def test_cancel_of_a_fill_behind_a_large_one():
    big = np.empty(BIG, np.float32)
    th = threading.Thread(
        target=lambda: parfill.populate(HEAVY, out=big, workers=2))
    th.start()
    try:
        time.sleep(0.1)

        def progress(done, total):
            raise KeyboardInterrupt

        t = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            parfill.populate(HEAVY, 4_000_000, np.float32, workers=2,
                             progress=progress)
        took = time.monotonic() - t
        big_running = th.is_alive()
    finally:
        th.join()
    assert big_running
    assert took < 0.5, f"cancel behind a large fill took {took:.2f} s"


# ------------------------------------------------------------ thread count

def test_workers_500_leaves_no_crowd_of_threads():
    parfill.populate("i", 100_000)  # the default pool exists
    before = threads_now()
    cap = max(64, 4 * parfill.cpu_count())
    a = parfill.populate("i + 1", 2_000_000, workers=500, chunk=1000)
    assert np.array_equal(a, np.arange(1, 2_000_001, dtype=np.float64))
    during = threads_now()
    assert during <= before + cap, (before, during, cap)
    deadline = time.monotonic() + 10
    while threads_now() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threads_now() <= before, "surplus pool threads did not exit"


# ------------------------------------------- one worker, stranded threads

def test_one_worker_threads_fill_honours_timeout():
    gate = threading.Event()

    def f(i):
        if i == 3:
            gate.wait(3.0)  # a call that outlives the timeout
        return i

    t0 = time.monotonic()
    try:
        with pytest.raises(parfill.TimeoutError):
            parfill.populate(f, 100, backend="threads", workers=1, timeout=0.5)
        took = time.monotonic() - t0
    finally:
        gate.set()  # let the abandoned call end now
    assert took < 1.5, f"workers=1, timeout 0.5 s: returned after {took:.2f} s"
    # The pool goes on: the same fill without the slow element.
    a = parfill.populate(lambda i: i * 2, 100, backend="threads", workers=1,
                         timeout=30)
    assert np.array_equal(a, np.arange(100, dtype=np.float64) * 2)


def test_fill_after_an_abandoned_one_gets_threads():
    n = parfill.cpu_count()  # as many stuck calls as the pool's base size
    gate = threading.Event()
    stuck = threading.Semaphore(0)

    def hang(i):
        stuck.release()
        gate.wait(10.0)
        return i

    try:
        with pytest.raises(parfill.TimeoutError):
            parfill.populate(hang, n, backend="threads", workers=n, chunk=1,
                             timeout=0.5)
        # Every worker of the abandoned fill is inside its call.
        for _ in range(n):
            assert stuck.acquire(timeout=5)
        t0 = time.monotonic()
        a = parfill.populate(lambda i, j: i * 10 + j, (50, 10),
                             backend="threads", workers=n)
        took = time.monotonic() - t0
        still_stuck = not gate.is_set()
    finally:
        gate.set()
    ref = np.empty((50, 10))
    for idx in np.ndindex(ref.shape):
        ref[idx] = idx[0] * 10 + idx[1]
    assert np.array_equal(a, ref)
    assert still_stuck
    assert took < 2.0, f"a fill behind {n} stranded calls took {took:.2f} s"
