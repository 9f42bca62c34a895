"""Exceptions in func, dying workers, timeouts: clear errors, no hangs, no
leftovers."""
import os
import pickle
import signal
import time

import numpy as np
import pytest

import parfill

BACKENDS = ["serial", "threads", "processes"]


class CustomError(Exception):
    pass


class UnpicklableError(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def fail_at(k, exc):
    def func(i):
        if i == k:
            raise exc
        return i
    return func


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_exc", [
    lambda: ValueError("bad value"), lambda: KeyError("k"),
    lambda: CustomError("custom"), lambda: ZeroDivisionError()])
def test_exception_same_type_with_note(backend, make_exc, no_leaks):
    exc = make_exc()
    with pytest.raises(type(exc)) as info:
        parfill.populate(fail_at(37, exc), 100, backend=backend, workers=2)
    assert str(info.value) == str(exc)
    notes = info.value.__notes__
    assert len(notes) == 1 and "element (37,)" in notes[0]
    assert "worker" in notes[0]
    if backend == "processes":
        cause = info.value.__cause__
        assert isinstance(cause, parfill.RemoteTraceback)
        assert "fail_at" not in str(cause) or "func" in str(cause)
        assert "raise exc" in str(cause) and type(exc).__name__ in str(cause)


def test_nd_index_in_note():
    def func(i, j):
        if (i, j) == (2, 3):
            raise ValueError("here")
        return 0
    for backend in BACKENDS:
        with pytest.raises(ValueError) as info:
            parfill.populate(func, (4, 5), backend=backend, workers=2)
        assert "element (2, 3)" in info.value.__notes__[0]


def test_unpicklable_exception_keeps_its_type(no_leaks):
    """An exception whose pickling fails comes back as its own class (it
    exists in the caller), rebuilt from its args, with the remote traceback."""
    with pytest.raises(UnpicklableError) as info:
        parfill.populate(fail_at(5, UnpicklableError("nope")), 20,
                         backend="processes", workers=2)
    assert info.value.args == ("nope",)
    assert isinstance(info.value.__cause__, parfill.RemoteTraceback)
    assert "element (5,)" in info.value.__notes__[0]


def test_first_error_wins_and_others_stop():
    start = time.monotonic()

    def func(i):
        if i == 0:
            raise ValueError("first")
        time.sleep(0.01)
        return i
    with pytest.raises(ValueError):
        parfill.populate(func, 10_000, backend="processes", workers=2, chunk=1)
    assert time.monotonic() - start < 5  # not 10_000 * 0.01 / 2


@pytest.mark.parametrize("how", ["exit", "kill", "segv"])
def test_dying_worker_raises_within_a_second(how, no_leaks):
    parent = os.getpid()

    def func(i):
        if i == 50 and os.getpid() != parent:
            if how == "exit":
                os._exit(3)
            import faulthandler
            faulthandler.disable()  # pytest's dump would only add noise
            os.kill(os.getpid(), signal.SIGKILL if how == "kill"
                    else signal.SIGSEGV)
        time.sleep(0.0005)
        return i
    start = time.monotonic()
    with pytest.raises(parfill.WorkerDiedError) as info:
        parfill.populate(func, 400, backend="processes", workers=2, chunk=10)
    assert time.monotonic() - start < 1.5
    e = info.value
    assert isinstance(e, RuntimeError)
    assert e.pid > 0 and f"pid {e.pid}" in str(e)
    assert e.start <= 50 < e.stop and f"[{e.start}, {e.stop})" in str(e)
    if how == "exit":
        assert e.exitcode == 3 and e.signal is None and "status 3" in str(e)
    else:
        sig = signal.SIGKILL if how == "kill" else signal.SIGSEGV
        assert e.signal == sig and e.exitcode is None
        assert sig.name in str(e)
    assert pickle.loads(pickle.dumps(e)).pid == e.pid


def test_retries_recover_a_dead_worker(tmp_path, no_leaks):
    marker = tmp_path / "died"
    parent = os.getpid()

    def func(i):
        if i == 77 and os.getpid() != parent and not marker.exists():
            marker.touch()
            os._exit(1)
        return i * 2
    got = parfill.populate(func, 300, int, backend="processes", workers=2,
                           chunk=10, retries=1)
    np.testing.assert_array_equal(got, np.arange(300) * 2)
    assert marker.exists()


def test_retries_exhausted_still_fails():
    parent = os.getpid()

    def func(i):
        if i == 7 and os.getpid() != parent:
            os._exit(1)
        return i
    with pytest.raises(parfill.WorkerDiedError):
        parfill.populate(func, 100, backend="processes", workers=2, chunk=5,
                         retries=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout(backend, no_leaks):
    def slow(i):
        time.sleep(0.02)
        return i
    start = time.monotonic()
    with pytest.raises(parfill.TimeoutError) as info:
        parfill.populate(slow, 1000, backend=backend, workers=2, chunk=1,
                         timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - start < 0.3 + 0.5


def test_successful_calls_leave_nothing_behind(no_leaks):
    for backend in ["auto", "processes", "threads", "serial"]:
        a = parfill.populate(lambda i: i, 10_000, backend=backend, workers=2,
                             translate="never")
        assert a[-1] == 9999
        del a


def test_result_lives_in_shared_memory_released_with_the_array():
    from conftest import shared_mappings
    before = shared_mappings()
    a = parfill.populate(lambda i: i, 100_000, backend="processes", workers=2,
                         translate="never")
    assert len(shared_mappings()) == len(before) + 1
    view = a[::2]
    del a
    assert len(shared_mappings()) == len(before) + 1  # the view keeps it
    del view
    assert shared_mappings() == before
