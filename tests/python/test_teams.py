"""Process teams as a careless user meets them (issue 9): the first failing
element in C order, callbacks that close descriptors, workers that die before
any work, SIGCHLD ignored, hundreds of workers for a tiny job, long mapped
paths, results that must stay private after a fork, func resizing out, and a
failed fork."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref

import numpy as np
import pytest

import parfill

from conftest import reference

SCHEDULES = [("static", None), ("static", 1), ("dynamic", None),
             ("dynamic", 1), ("guided", None)]


def run_python(code, timeout=60, env=None):
    """Runs `code` in a fresh interpreter; returns (returncode, stdout+err).
    The child is killed in every case (a hang must not outlive the test)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# ------------------------------------------------ item 5: C order wins

def slow_overflow_fast_zero(i):
    if i == 0:
        time.sleep(0.3)
        return 300          # does not fit uint8: OverflowError at (0,)
    if i == 5:
        return 1 // 0       # at once, in the other worker under every schedule
    return i


@pytest.mark.parametrize("backend", ["processes", "threads"])
@pytest.mark.parametrize("schedule,chunk", SCHEDULES)
def test_first_failing_element_in_c_order(backend, schedule, chunk, no_leaks):
    with pytest.raises(OverflowError) as info:
        reference(slow_overflow_fast_zero, (8,), np.uint8)
    with pytest.raises(OverflowError) as info:
        parfill.populate(slow_overflow_fast_zero, 8, np.uint8, backend=backend,
                         workers=2, schedule=schedule, chunk=chunk)
    assert any("(0,)" in note for note in info.value.__notes__)
    del info


@pytest.mark.parametrize("backend", ["processes", "threads"])
def test_work_past_the_failure_stops(backend, no_leaks):
    """Elements far past a failing one are not computed: a failure at 5 of
    100,000 slow elements ends the call long before they could all run."""
    def f(i):
        if i == 5:
            raise KeyError(i)
        time.sleep(0.001)
        return i
    t0 = time.monotonic()
    with pytest.raises(KeyError) as info:
        parfill.populate(f, 100_000, backend=backend, workers=2, chunk=10)
    assert time.monotonic() - t0 < 10     # all of them: 50 s on 2 workers
    assert any("(5,)" in note for note in info.value.__notes__)
    del info


def test_elements_before_the_failure_are_computed(tmp_path):
    """Everything below the failing element is finished, as in the loop: the
    out array (a shared memmap, written in place) holds them all."""
    mm = np.lib.format.open_memmap(tmp_path / "a.npy", "w+", np.int64, (2000,))
    mm[:] = -1

    def f(i):
        if i == 1500:
            raise ValueError("here")
        if i == 1800:
            raise ValueError("later")
        return i
    with pytest.raises(ValueError, match="here"):
        parfill.populate(f, out=mm, backend="processes", workers=3, chunk=7)
    assert (mm[:1500] == np.arange(1500)).all()
    del mm


# ------------------------------------- item 8: callbacks closing fds

def test_progress_closing_fds_fails_cleanly():
    code = """
        import os, time, parfill
        calls = []
        def progress(done, total):
            if not calls:
                os.closerange(3, 1024)
            calls.append(done)
        t0 = time.monotonic()
        try:
            parfill.populate(lambda i: time.sleep(0.05) or i, 200,
                             backend="processes", workers=2, progress=progress)
        except OSError as e:
            print("ERROR", type(e).__name__, e.errno, e)
        print("TOOK", time.monotonic() - t0)
        print("CPU", os.times().user + os.times().system)
        import glob
        kids = open(f"/proc/self/task/{os.getpid()}/children").read().split()
        print("CHILDREN", len(kids))
    """
    rc, out = run_python(code, timeout=60)
    assert rc == 0, out
    assert "ERROR" in out and "closed" in out, out
    took = float(out.split("TOOK")[1].split()[0])
    assert took < 10, out
    assert "CHILDREN 0" in out, out


# ------------------------------ item 9: workers that die before working

def test_workers_dying_before_any_work_are_not_replaced_forever():
    code = """
        import os, time, parfill
        forks = [0]
        os.register_at_fork(after_in_parent=lambda: forks.__setitem__(0, forks[0] + 1),
                            after_in_child=lambda: os._exit(7))
        t0 = time.monotonic()
        try:
            parfill.populate(lambda i: i, 1000, backend="processes", workers=4,
                             retries=2, translate="never")
        except parfill.WorkerDiedError as e:
            print("DIED", e.exitcode, e.start, "|", e, "|", e.__notes__)
        print("FORKS", forks[0], "TOOK", time.monotonic() - t0)
    """
    rc, out = run_python(code, timeout=60)
    assert rc == 0, out
    assert "DIED 7 None" in out, out
    assert "before claiming any work" in out, out
    forks = int(out.split("FORKS")[1].split()[0])
    assert forks <= 4 * 3 + 4, out


# --------------------------------------------- item 10: SIGCHLD ignored

@pytest.mark.parametrize("retries", [0, 1])
def test_sigchld_ignored(retries, no_leaks):
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        a = parfill.populate(lambda i, j: i * 7 - j, (50, 40), np.int64,
                             backend="processes", workers=3, retries=retries,
                             translate="never")
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGCHLD, old)
    np.testing.assert_array_equal(a, reference(lambda i, j: i * 7 - j,
                                               (50, 40), np.int64))
    del a


# ------------------------------------- item 12: forks on demand, capped

def test_hundreds_of_workers_for_a_tiny_job():
    code = """
        import os, parfill, numpy as np
        forks = [0]
        os.register_at_fork(after_in_parent=lambda: forks.__setitem__(0, forks[0] + 1))
        a = parfill.populate(lambda i: i * 2, 1000, np.int64,
                             backend="processes", workers=500, translate="never")
        assert (a == np.arange(1000) * 2).all()
        print("DYNAMIC", forks[0])
        forks[0] = 0
        a = parfill.populate(lambda i: i, 7, backend="processes", workers=500,
                             schedule="static", translate="never")
        assert (a == np.arange(7)).all()
        print("STATIC", forks[0])
    """
    rc, out = run_python(code, timeout=120)
    assert rc == 0, out
    assert int(out.split("DYNAMIC")[1].split()[0]) <= 64, out
    assert int(out.split("STATIC")[1].split()[0]) == 7, out


# -------------------------------------------- item 18: long mapped paths

def test_long_mapped_path_does_not_fake_shared(tmp_path):
    """A private `out` next to a file mapped from a path of over 600
    characters, whose text at the 512-byte cut of its /proc/self/maps line
    reads like a shared mapping of `out`: the fill still writes `out`."""
    size = 1 << 16
    # One reservation: out's memory at its top, the file mapped below it.
    import mmap
    area = mmap.mmap(-1, 2 * size, flags=mmap.MAP_PRIVATE)
    out = np.frombuffer(area, np.int64)[size // 8:]
    lo = out.__array_interface__["data"][0]
    path = tmp_path
    while len(str(path)) < 380:
        path = path / ("d" * 60)
    zeros = "0" * (600 - len(str(path)) - 1)
    path = path / f"{zeros}{lo:x}-{lo + size:x} rw-s"
    path.mkdir(parents=True)
    path = path / "data"
    assert len(str(path)) > 600
    np.zeros(1024, np.uint8).tofile(path)
    mm = np.memmap(path, np.uint8, "c")   # a file mapping somewhere
    try:
        assert not parfill._core.is_shared(out)
        parfill.populate(lambda i: i + 1, out=out, backend="processes",
                         workers=2, translate="never")
        np.testing.assert_array_equal(out, np.arange(1, out.size + 1))
    finally:
        del mm, out


# -------------------------------- item 19: results private after a fork

@pytest.mark.parametrize("backend", ["processes", "auto"])
def test_result_is_private_after_fork(backend, no_leaks):
    a = parfill.populate(lambda i: i, 10_000, np.int64, backend=backend,
                         workers=2, translate="never")
    assert not parfill._core.is_shared(a)
    fds = sorted(os.listdir("/proc/self/fd"))
    pid = os.fork()
    if pid == 0:
        try:
            a[:] = -1
            os._exit(0 if a[5] == -1 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(a, np.arange(10_000))
    a[3] = 99                       # still writable here
    assert a[3] == 99
    assert sorted(os.listdir("/proc/self/fd")) == fds
    del a


def test_shared_empty_then_privatize():
    a = parfill._core.shared_empty((100,), np.float64)
    assert parfill._core.is_shared(a)
    a[:] = 1.5
    assert parfill._core.privatize(a) is True
    assert not parfill._core.is_shared(a)
    assert (a == 1.5).all()
    assert parfill._core.privatize(a) is True          # already private
    assert parfill._core.privatize(np.zeros(3)) is False
    with pytest.raises(TypeError):
        parfill._core.privatize([1, 2])


# ---------------------------------------------- item 16: func resizes out

@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_func_resizing_out_is_an_error_at_its_element(backend):
    out = np.zeros(1000)

    def f(i):
        if i == 5:
            out.resize(10, refcheck=False)
        return i
    with pytest.raises(ValueError, match="resize") as info:
        parfill.populate(f, out=out, backend=backend, workers=2)
    assert any("(5,)" in note for note in info.value.__notes__)
    assert out.shape == (1000,)
    assert not weakref.getweakrefcount(out)     # the guard is gone
    del info


# ------------------------------------------------ item 21: a failed fork

FAIL_FORK = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
static int calls;
pid_t fork(void) {
  static pid_t (*real)(void);
  if (real == NULL) real = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
  const char *after = getenv("PF_FAIL_FORK_AFTER");
  if (after != NULL && calls++ >= atoi(after)) {
    errno = EAGAIN;
    return -1;
  }
  return real();
}
"""


def test_failed_fork_says_what_failed(tmp_path):
    cc = next((c for c in ("cc", "gcc", "clang")
               if subprocess.run(["sh", "-c", f"command -v {c}"],
                                 capture_output=True).returncode == 0), None)
    if cc is None:
        pytest.skip("no C compiler to build the fork shim")
    src, lib = tmp_path / "failfork.c", tmp_path / "failfork.so"
    src.write_text(FAIL_FORK)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    code = """
        import os, time, parfill
        try:  # slow elements: work is left for every worker to fork
            parfill.populate(lambda i: time.sleep(0.01) or i, 400,
                             backend="processes", workers=8, chunk=1)
        except OSError as e:
            print("ERROR", type(e).__name__, e.errno, "|", e)
        kids = open(f"/proc/self/task/{os.getpid()}/children").read().split()
        print("CHILDREN", len(kids))
    """
    env = dict(os.environ, LD_PRELOAD=str(lib), PF_FAIL_FORK_AFTER="3")
    rc, out = run_python(code, timeout=60, env=env)
    assert rc == 0, out
    assert "ERROR BlockingIOError 11" in out, out
    assert "cannot fork worker 3 of 8" in out, out
    assert "CHILDREN 0" in out, out
