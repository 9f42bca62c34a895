"""backend="threads" and "serial" with slow Python callables (issue 9): a
timeout or Ctrl-C is honoured while func still runs, nothing is stored into
`out` after the call returned, no thread keeps running func long after, and
a fill from __del__ at interpreter exit raises instead of hanging."""
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import parfill


def interrupt_after(seconds):
    """SIGINT to this process after `seconds`, from a timer thread; the
    caller cancels the returned timer in a finally."""
    import os
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def wait_until(predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


class Sleeper:
    """func sleeping `seconds` per element, counting the calls still inside:
    a test waits for them (pool threads busy with a canceled fill's func
    would delay the next test's fill)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.inside = 0
        self.lock = threading.Lock()

    def __call__(self, *idx):
        with self.lock:
            self.inside += 1
        try:
            time.sleep(self.seconds)
            return 7.0
        finally:
            with self.lock:
                self.inside -= 1

    def drain(self):
        assert wait_until(lambda: self.inside == 0, self.seconds + 5)


@pytest.mark.parametrize("workers", [1, 2])
def test_threads_timeout_while_func_sleeps(workers):
    func = Sleeper(3)
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(func, 4, backend="threads", workers=workers,
                         timeout=0.5)
    took = time.monotonic() - t0
    func.drain()
    # workers=1 runs on the caller's thread, where a sleeping func cannot be
    # left behind: it then returns when func does.
    if workers > 1:
        assert took < 2.0, took


def test_threads_ctrl_c_while_func_sleeps():
    func = Sleeper(3)
    timer = interrupt_after(0.3)
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            parfill.populate(func, 4, backend="threads", workers=2)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0
    func.drain()


def test_threads_busy_func_ends_after_timeout():
    """A pure-Python loop in func is ended (an asynchronous exception) soon
    after the call timed out: no thread keeps running it."""
    running = [0]
    lock = threading.Lock()

    def busy(i):
        with lock:
            running[0] += 1
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                pass
            return i
        finally:
            with lock:
                running[0] -= 1
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(busy, 8, backend="threads", workers=2, timeout=0.5)
    assert time.monotonic() - t0 < 2.5
    assert wait_until(lambda: running[0] == 0, 5.0), running


def test_interrupted_func_leaves_the_interpreter_usable_under_a_profiler():
    """The asynchronous exception that ends a canceled func is consumed by
    the thread it was meant for: afterwards function calls still work, also
    under a profiler (on 3.11 a dropped-but-signalled one made every call
    under sys.setprofile spin at its first line). In a child, with a limit,
    since the failure is a hang."""
    code = textwrap.dedent("""
        import sys, time, parfill
        def busy(i):
            end = time.monotonic() + 30
            while time.monotonic() < end:
                pass
            return i
        try:
            parfill.populate(busy, 8, backend="threads", workers=2,
                             timeout=0.3, translate="never")
        except parfill.TimeoutError:
            pass
        time.sleep(1.0)            # the pool threads leave func meanwhile
        calls = [0]
        def g(x):
            return x + 1
        def profile(frame, event, arg):
            if event == "call" and frame.f_code is g.__code__:
                calls[0] += 1
        sys.setprofile(profile)
        total = sum(g(k) for k in range(100))
        sys.setprofile(None)
        print("CALLS", calls[0], total)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "CALLS 100 5050" in out, out


def test_threads_store_nothing_after_return():
    out = np.zeros(4)
    func = Sleeper(1.0)
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(func, out=out, backend="threads", workers=2,
                         timeout=0.3)
    assert func.inside > 0      # still running when the call returned
    seen = out.copy()
    func.drain()                # the sleeping calls return meanwhile
    time.sleep(0.1)
    np.testing.assert_array_equal(out, seen)


def test_threads_strided_out_store_nothing_after_return():
    base = np.zeros((4, 6))
    out = base[:, ::2]          # strided: no scratch copy after return either
    func = Sleeper(0.6)
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(func, out=out, backend="threads", workers=2,
                         timeout=0.2)
    assert func.inside > 0
    seen = base.copy()
    func.drain()
    time.sleep(0.1)
    np.testing.assert_array_equal(base, seen)


def test_threads_results_and_later_fills_unaffected():
    """After a canceled fill, the pool threads run the next fill normally
    (no stray asynchronous exception is left pending)."""
    func = Sleeper(1.0)
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(func, 4, backend="threads", workers=2, timeout=0.2)
    func.drain()
    for _ in range(3):
        a = parfill.populate(lambda i: i * 2, 1000, np.int64,
                             backend="threads", workers=2)
        np.testing.assert_array_equal(a, np.arange(1000) * 2)


def test_serial_timeout_between_elements():
    """serial checks the timeout between bounded steps, not only at the end
    (10,000 elements of 1 ms would take 10 s)."""
    t0 = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(lambda i: time.sleep(0.001) or i, 10_000,
                         backend="serial", timeout=0.3)
    assert time.monotonic() - t0 < 1.5


def test_serial_progress_between_elements():
    calls = []
    parfill.populate(lambda i: time.sleep(0.002) or i, 300, backend="serial",
                     progress=lambda done, total: calls.append(done))
    assert len(calls) >= 5 and calls[-1] == 300, calls


def test_serial_ctrl_c_between_elements():
    timer = interrupt_after(0.3)
    t0 = time.monotonic()
    try:
        # sleep is interrupted too; either way it ends promptly
        with pytest.raises(KeyboardInterrupt):
            parfill.populate(lambda i: sum(range(20000)) and i, 10**7,
                             backend="serial")
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0


def test_threads_fill_from_del_at_exit_raises():
    code = textwrap.dedent("""
        import parfill
        class Holder:
            def __del__(self):
                try:
                    parfill.populate(lambda i: i, 100, backend="threads",
                                     workers=2, translate="never")
                    print("FILLED")
                except RuntimeError as e:
                    print("RAISED", e)
        holder = Holder()
        parfill.populate(lambda i: i, 10, backend="threads", workers=2,
                         translate="never")
    """)
    proc = subprocess.Popen([sys.executable, "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "RAISED" in out and "shutting down" in out, out
