"""backend="auto" never weakens a guarantee: with timeout= or retries= every
element of a Python callable runs in a supervised worker, and without them the
caller only ever takes a bounded slice of the work (issue 9, items 1-3)."""
import os
import signal
import time

import numpy as np
import pytest

import parfill
from conftest import reference


def test_timeout_stops_a_hanging_first_element(no_leaks):
    start = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(lambda i: time.sleep(3600), 100, workers=2,
                         timeout=1.0)
    assert time.monotonic() - start < 1.5


def test_timeout_with_one_worker_is_supervised_too(no_leaks):
    start = time.monotonic()
    with pytest.raises(parfill.TimeoutError):
        parfill.populate(lambda i: time.sleep(3600), 3, workers=1, timeout=0.5)
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_an_element_that_kills_its_process_never_kills_the_caller(how, no_leaks):
    parent = os.getpid()

    def func(i):
        if i == 0:
            if os.getpid() == parent:
                return -1  # would mark the element as computed in the caller
            if how == "exit":
                os._exit(9)
            os.kill(os.getpid(), signal.SIGKILL)
        return i
    with pytest.raises(parfill.WorkerDiedError) as info:
        parfill.populate(func, 50, workers=2, retries=2)
    assert info.value.start == 0
    assert os.getpid() == parent


def test_retries_alone_run_every_element_in_workers():
    parent = os.getpid()
    got = parfill.populate(lambda i: os.getpid() == parent, 200, bool,
                           workers=2, retries=1)
    assert not got.any()  # not one element computed in the caller


def test_timeout_alone_runs_every_element_in_workers():
    parent = os.getpid()
    got = parfill.populate(lambda i: os.getpid() == parent, 5, bool,
                           workers=1, timeout=30)
    assert not got.any()


def test_cheap_prefix_then_expensive_rest_goes_to_workers():
    """5,000 cheap elements, then 1,000 of 5 ms: the caller must not judge
    the rest from the cheap prefix and run it all itself."""
    parent = os.getpid()

    def func(i):
        if i >= 5000:
            time.sleep(0.005)
        return 1 if os.getpid() == parent else 2
    got = parfill.populate(func, 6000, np.int8, workers=2)
    in_caller = got[5000:] == 1
    assert in_caller.sum() <= 16  # one bounded chunk at most
    assert (got[5000:] == 2).sum() >= 984


def test_cheap_prefix_then_expensive_rest_with_timeout():
    def func(i):
        if i >= 5000:
            time.sleep(0.005)
        return i
    start = time.monotonic()
    got = parfill.populate(func, 6000, workers=2, timeout=30)
    np.testing.assert_array_equal(got, np.arange(6000))
    assert time.monotonic() - start < 4.5  # not 5 s on one core


def test_the_caller_spends_a_bounded_time_on_medium_elements():
    """Elements of 0.5 ms, 400 of them: at most a few ms of them in the
    caller, the rest in workers (and the values still right)."""
    parent = os.getpid()

    def func(i):
        time.sleep(0.0005)
        return i * 2 + (os.getpid() == parent)
    got = parfill.populate(func, 400, np.int64, workers=2)
    in_caller = got % 2 == 1
    assert in_caller.sum() <= 40
    np.testing.assert_array_equal(got // 2, np.arange(400))


def test_tiny_jobs_still_finish_in_the_caller():
    parent = os.getpid()
    got = parfill.populate(lambda i: os.getpid() == parent, 500, bool,
                           workers=2)
    assert got.all()


@pytest.mark.parametrize("vectorized", [False, True])
def test_auto_equals_the_sequential_loop(vectorized):
    def func(i, j):
        return (i * 31 + j) % 7 - 3.5
    shape = (300, 70)
    expected = reference(func, shape, np.float64)
    if vectorized:
        got = parfill.populate(func, shape, workers=2, vectorized=True,
                               chunk=999)
    else:
        got = parfill.populate(func, shape, workers=2)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("failing", [5000, 150_000, 299_999])
def test_note_names_the_failing_element_after_the_probe(failing):
    """The caller computes a prefix, the workers the rest: the note must name
    the element the sequential loop fails at, not one shifted by the prefix."""
    def func(i):
        if i == failing:
            raise ValueError("here")
        return i
    with pytest.raises(ValueError) as info:
        parfill.populate(func, 300_000, workers=2)
    with pytest.raises(ValueError) as loop:
        reference(func, (300_000,), np.float64)
    assert str(info.value) == str(loop.value)
    assert f"element ({failing},)" in info.value.__notes__[-1]


def test_note_after_the_probe_in_two_dimensions():
    def func(i, j):
        if (i, j) == (900, 17):
            raise KeyError("k")
        return i + j
    with pytest.raises(KeyError) as info:
        parfill.populate(func, (1000, 300), workers=2)
    assert "element (900, 17)" in info.value.__notes__[-1]
    assert "pid" in info.value.__notes__[-1]  # it failed in a worker
