"""Exceptions from workers come back as the sequential loop raises them: the
same class object (also when pickle cannot name it), shortened but not lost
when they are huge, never broken by odd notes (issue 9, items 6 and 7)."""
import os

import numpy as np
import pytest

import parfill
from conftest import reference

BACKENDS = ["serial", "threads", "processes"]


def loop_error(func, shape=(20,)):
    """The exception the sequential reference raises."""
    with pytest.raises(BaseException) as info:
        reference(func, shape, np.float64)
    return info.value


def fill_error(func, backend, shape=(20,), **kwargs):
    with pytest.raises(BaseException) as info:
        parfill.populate(func, shape, backend=backend, workers=2, **kwargs)
    return info.value


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_defined_inside_a_function_is_the_callers_class(backend):
    class LocalError(ValueError):
        pass

    def func(i):
        if i == 5:
            raise LocalError("local", i)
        return i
    got = fill_error(func, backend)
    assert type(got) is LocalError  # `except LocalError:` catches it
    assert got.args == loop_error(func).args == ("local", 5)
    assert "element (5,)" in got.__notes__[-1]


def test_local_class_with_a_custom_init():
    class Coded(KeyError):
        def __init__(self, code, where):
            super().__init__(f"code {code} at {where}")
            self.code = code

    def func(i):
        if i == 3:
            raise Coded(42, i)
        return i
    got = fill_error(func, "processes")
    assert type(got) is Coded and got.code == 42
    assert got.args == ("code 42 at 3",)


def test_class_created_in_the_worker_falls_back_to_its_base():
    """A class that exists only in the worker cannot come back as itself:
    a WorkerError that is still a ValueError (`except ValueError:` works)."""
    def func(i):
        class Fresh(ValueError):
            pass
        if i == 4:
            raise Fresh("made in the worker")
        return i
    got = fill_error(func, "processes")
    assert isinstance(got, parfill.WorkerError)
    assert isinstance(got, ValueError)
    assert "Fresh" in str(got) and "made in the worker" in str(got)
    assert isinstance(got.__cause__, parfill.RemoteTraceback)
    assert "element (4,)" in got.__notes__[-1]


def test_unpicklable_args_keep_the_type():
    def func(i):
        if i == 2:
            raise ValueError(lambda: 0, "kept")
        return i
    got = fill_error(func, "processes")
    assert type(got) is ValueError
    assert got.args[1] == "kept" and "lambda" in got.args[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_360_kb_message_keeps_type_and_text(backend):
    text = "x" * 360_000

    def func(i):
        if i == 7:
            raise ValueError(text)
        return i
    got = fill_error(func, backend)
    assert type(got) is ValueError and str(got) == text


def test_a_message_larger_than_the_error_buffer_is_shortened():
    text = "y" * 3_000_000

    def func(i):
        if i == 7:
            raise ValueError(text)
        return i
    got = fill_error(func, "processes")
    assert type(got) is ValueError
    message = str(got)
    assert "characters cut" in message and len(message) < (1 << 20)
    assert message.startswith("yyyy") and message.endswith("yyyy")


def test_a_large_array_in_args_keeps_the_type():
    big = np.arange(200_000, dtype=np.float64)  # 1.6 MB

    def func(i):
        if i == 1:
            raise ArithmeticError("with data", big)
        return i
    got = fill_error(func, "processes")
    assert type(got) is ArithmeticError
    assert got.args[0] == "with data" and "1.99999e+05" in got.args[1]


class StrRaises(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


@pytest.mark.parametrize("backend", BACKENDS)
def test_exception_whose_str_raises(backend):
    def func(i):
        if i == 3:
            raise StrRaises(3)
        return i
    got = fill_error(func, backend)
    assert type(got) is StrRaises and got.args == (3,)
    assert "element (3,)" in got.__notes__[-1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("notes", [("a", "b"), "a single string", ["a"]])
def test_notes_that_are_not_a_list(backend, notes):
    def func(i):
        if i == 3:
            e = ValueError("noted")
            e.__notes__ = notes.copy() if isinstance(notes, list) else notes
            raise e
        return i
    got = fill_error(func, backend)
    assert type(got) is ValueError and str(got) == "noted"
    assert isinstance(got.__notes__, list)
    assert "element (3,)" in got.__notes__[-1]
    kept = [notes] if isinstance(notes, str) else list(notes)
    assert got.__notes__[:-1] == kept


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exc", [SystemExit(4), GeneratorExit()])
def test_base_exceptions_get_the_note_too(backend, exc):
    def func(i):
        if i == 6:
            raise exc
        return i
    got = fill_error(func, backend)
    assert type(got) is type(exc) and got.args == exc.args
    assert "element (6,)" in got.__notes__[-1]


def test_keyboard_interrupt_from_func_in_a_worker_gets_the_note():
    parent = os.getpid()

    def func(i):
        if i == 6 and os.getpid() != parent:
            raise KeyboardInterrupt("from func")
        return i
    got = fill_error(func, "processes")
    assert type(got) is KeyboardInterrupt
    assert "element (6,)" in got.__notes__[-1]


def test_pack_exception_fits_any_limit():
    from parfill import _errors
    exc = ValueError("z" * 100_000, b"\0" * 100_000)
    for limit in (4096, 65536, 1 << 20):
        payload = _errors.pack_exception(exc, limit)
        assert len(payload) <= limit
        back = _errors._unpack_exception(payload)
        assert type(back) is ValueError
