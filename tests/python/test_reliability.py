"""The guarantees under stress: Ctrl-C, a killed caller, concurrent callers,
address-space limits, and a soak of thousands of calls that leaks nothing."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import parfill
from conftest import resources, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def run_script(body, *args):
    """Starts a Python child running `body`; it prints READY when working.
    The child installs Python's SIGINT handler itself: it may have been
    started with SIGINT ignored (a suite run as a background job)."""
    code = ("import signal; signal.signal(signal.SIGINT, "
            "signal.default_int_handler)\n" + textwrap.dedent(body))
    return subprocess.Popen([sys.executable, "-c", code, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


SLOW_FILL = """
    import os, sys, time, parfill
    pids = sys.argv[2]
    recorded = []
    def slow(i):
        if not recorded:  # once per process: each worker has its own copy
            recorded.append(True)
            with open(pids, "a") as f:
                f.write(f"{os.getpid()}\\n")
        if i == 0:
            print("READY", flush=True)
        time.sleep(0.005)
        return i
    try:
        parfill.populate(slow, 10**6, backend=sys.argv[1], workers=2, chunk=1)
    except KeyboardInterrupt:
        print("INTERRUPTED", time.monotonic(), flush=True)
        sys.exit(0)
"""


def recorded_pids(path, parent):
    try:
        return {int(x) for x in path.read_text().split()} - {parent}
    except (OSError, ValueError):
        return set()


@pytest.mark.parametrize("backend", ["processes", "threads", "serial", "auto"])
def test_ctrl_c_within_half_a_second(backend, tmp_path):
    pids = tmp_path / "pids"
    worst = 0.0
    for _ in range(3):
        pids.write_text("")
        p = run_script(SLOW_FILL, backend, str(pids))
        try:
            assert p.stdout.readline().strip() == "READY"
            time.sleep(0.3)
            sent = time.monotonic()
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
            assert "INTERRUPTED" in out, err
            worst = max(worst, float(out.split()[-1]) - sent)
            assert "Traceback" not in err  # workers print nothing
            workers = recorded_pids(pids, p.pid)
            assert not [w for w in workers if alive(w)]
        finally:
            stop_process(p, *recorded_pids(pids, p.pid))
    assert worst < 0.5


def test_workers_die_with_a_killed_caller(tmp_path):
    pids = tmp_path / "pids"
    pids.write_text("")
    p = run_script(SLOW_FILL, "processes", str(pids))
    try:
        assert p.stdout.readline().strip() == "READY"
        time.sleep(0.3)
        workers = recorded_pids(pids, p.pid)
        assert len(workers) == 2
        p.kill()
        p.wait()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(alive(w) for w in workers):
            time.sleep(0.01)
        assert not [w for w in workers if alive(w)]
    finally:
        stop_process(p, *recorded_pids(pids, p.pid))


@pytest.mark.parametrize("backend", ["processes", "threads", "auto"])
def test_from_several_python_threads_at_once(backend):
    results, errors = {}, []

    def call(k):
        try:
            results[k] = parfill.populate(lambda i, j: i * 1000 + j + k,
                                          (30, 40), backend=backend, workers=2)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=call, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    base = np.fromfunction(lambda i, j: i * 1000 + j, (30, 40))
    for k in range(6):
        np.testing.assert_array_equal(results[k], base + k)


def test_from_a_non_main_thread_with_failures():
    out = {}

    def call():
        try:
            parfill.populate(lambda i: 1 / (i - 5), 10, backend="processes",
                             workers=2)
        except ZeroDivisionError as e:
            out["error"] = e
    t = threading.Thread(target=call)
    t.start()
    t.join()
    assert "element (5,)" in out["error"].__notes__[0]


def test_address_space_limit_gives_memory_error_then_recovers():
    body = """
        import resource, numpy as np, parfill
        with open("/proc/self/status") as f:
            vm = [int(l.split()[1]) for l in f if l.startswith("VmSize")][0] * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20),) * 2)
        try:
            parfill.populate(lambda i: i, 10**8, backend="processes", workers=2)
        except MemoryError as e:
            print("MemoryError", e)
        a = parfill.populate(lambda i: i * 2, 1000, int, backend="processes",
                             workers=2)
        assert (a == np.arange(1000) * 2).all()
        print("OK")
    """
    p = run_script(body)
    try:
        out, err = p.communicate(timeout=60)
    finally:
        stop_process(p)
    assert "MemoryError" in out and out.strip().endswith("OK"), out + err


def rss_kib():
    with open("/proc/self/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]


def test_soak_two_thousand_calls_leak_nothing():
    parent = os.getpid()

    def ok(i):
        return i * 0.5

    def raises(i):
        if i == 3:
            raise ValueError("soak")
        return i

    def dies(i):
        if i == 3 and os.getpid() != parent:
            os._exit(7)
        return i

    def one(k):
        kind = k % 10
        try:
            if kind < 6:
                a = parfill.populate(ok, 64, backend="processes", workers=2)
                assert a[63] == 31.5
            elif kind < 8:
                parfill.populate(raises, 64, backend="processes", workers=2)
            elif kind == 8:
                parfill.populate(dies, 64, backend="processes", workers=2,
                                 chunk=4)
            else:
                parfill.populate(raises, 64, backend="threads", workers=2)
        except (ValueError, parfill.WorkerDiedError):
            pass
    for k in range(50):  # warm up allocators, the pool, OpenBLAS's fork hook
        one(k)
    import gc
    gc.collect()
    before, rss_before = resources(), rss_kib()
    for k in range(2000):
        one(k)
    gc.collect()
    after, rss_after = resources(), rss_kib()
    assert after == before
    assert rss_after - rss_before < 4096


def test_fork_while_the_thread_pool_and_blas_threads_exist():
    m = np.random.default_rng(0).random((300, 300))
    m @ m  # starts OpenBLAS's threads (when it has several)
    parfill.populate("i * 2.0", 10_000, workers=2)  # the thread pool exists
    got = parfill.populate(lambda i: i * 3, 1000, int, backend="processes",
                           workers=2)
    np.testing.assert_array_equal(got, np.arange(1000) * 3)
    m @ m  # BLAS still works in the caller afterwards


def test_expression_inside_a_worker_runs_serially_there():
    parfill.populate("i", 10_000, workers=2)  # the caller's pool exists

    def func(i):
        inner = parfill.populate("i * 2 + c", 100, params={"c": i}, workers=2)
        threads = len(os.listdir("/proc/self/task"))
        return inner.sum() * 100 + threads
    got = parfill.populate(func, 40, int, backend="processes", workers=2)
    sums, threads = np.divmod(got, 100)
    np.testing.assert_array_equal(sums, 9900 + 100 * np.arange(40))
    assert (threads == 1).all()  # no pool threads started in the worker
