"""parfill.random: NumPy's Philox stream bit for bit, reproducible normals.

References: numpy.random.Generator(numpy.random.Philox(key=seed)) for stream
0; for other streams and for normals, NumPy's Philox bit generator with its
counter set to (0, 0, stream, tag), which makes the raw words the
definitions in src/philox.h name (NumPy increments the counter before each
block of 4 words). Statistical checks use fixed seeds and 5-sigma bounds.
"""
import math

import numpy as np
import pytest

import parfill
from parfill import _core

SEEDS = [0, 1, 2**63 + 12345, 2**64 + 7, 2**128 - 1]
SCHEDULES = ("static", "dynamic", "guided")


def numpy_raw(seed, stream, tag, count):
    """raw(tag, stream, j) for j < count, from NumPy's own Philox."""
    bg = np.random.Philox(key=seed)
    state = bg.state
    state["state"]["counter"] = np.array([0, 0, stream, tag], dtype=np.uint64)
    state["buffer_pos"] = 4  # the next word starts a fresh block
    bg.state = state
    return bg.random_raw(count)


def numpy_uniform(seed, stream, count):
    return (numpy_raw(seed, stream, 0, count) >> np.uint64(11)) * 2.0**-53


def numpy_normal(seed, stream, count):
    raw = numpy_raw(seed, stream, 1, count + count % 2)
    a, b = raw[0::2], raw[1::2]
    u1 = ((a >> np.uint64(11)) + np.uint64(1)) * 2.0**-53
    t = 2 * np.pi * ((b >> np.uint64(11)) * 2.0**-53)
    r = np.sqrt(-2 * np.log(u1))
    z = np.empty(raw.size)
    z[0::2], z[1::2] = r * np.cos(t), r * np.sin(t)
    return z[:count]


# ------------------------------------------------------------------ uniform

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(100003,), (317, 331)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_is_numpy_philox(seed, shape, dtype):
    want = np.random.Generator(np.random.Philox(key=seed)).random(shape, dtype)
    a = parfill.random(shape, seed=seed, dtype=dtype)
    assert a.dtype == dtype and a.shape == shape
    np.testing.assert_array_equal(a, want)


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("chunk", [None, 1, 3, 1000, 65536])
def test_uniform_any_workers_schedule_chunk(workers, schedule, chunk):
    seed = 2**64 + 99
    want = np.random.Generator(np.random.Philox(key=seed)).random(200003)
    a = parfill.random(200003, seed=seed, workers=workers, schedule=schedule,
                       chunk=chunk)
    np.testing.assert_array_equal(a, want)
    f = parfill.random((401, 499), seed=seed, dtype=np.float32,
                       workers=workers, schedule=schedule, chunk=chunk)
    np.testing.assert_array_equal(
        f, np.random.Generator(np.random.Philox(key=seed)).random((401, 499),
                                                                np.float32))


@pytest.mark.parametrize("stream", [1, 2, 2**64 - 1])
def test_uniform_streams(stream):
    seed = 7
    a = parfill.random(10**5 + 1, seed=seed, stream=stream)
    np.testing.assert_array_equal(a, numpy_uniform(seed, stream, 10**5 + 1))
    # stream 0 through the same reference is NumPy's Generator
    np.testing.assert_array_equal(
        numpy_uniform(seed, 0, 1000),
        np.random.Generator(np.random.Philox(key=seed)).random(1000))


def test_streams_are_uncorrelated():
    n = 10**6
    a = parfill.random(n, seed=3, stream=0) - 0.5
    b = parfill.random(n, seed=3, stream=1) - 0.5
    c = parfill.random(n, dist="normal", seed=3, stream=0)
    assert np.count_nonzero(a == b) < 10
    for x, y in ((a, b), (a, c)):
        corr = np.corrcoef(x, y)[0, 1]
        assert abs(corr) < 5 / math.sqrt(n), corr


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_strided_out(dtype):
    seed = 11
    big = np.full((300, 400), -1, dtype)
    view = big[1::3, ::2]
    r = parfill.random(out=view, seed=seed, workers=3)
    assert r is view
    want = np.random.Generator(np.random.Philox(key=seed)).random(view.shape, dtype)
    np.testing.assert_array_equal(view, want)
    mask = np.ones(big.shape, bool)
    mask[1::3, ::2] = False
    assert (big[mask] == -1).all()
    f = np.empty((123, 77), dtype, order="F")
    parfill.random(out=f, seed=seed, workers=2)
    np.testing.assert_array_equal(
        f, np.random.Generator(np.random.Philox(key=seed)).random((123, 77), dtype))


def test_core_fill_random_key_words():
    out = np.empty(1000)
    _core.fill_random(out, "uniform", 5, 3, 0)  # key = 3 * 2**64 + 5
    np.testing.assert_array_equal(
        out, np.random.Generator(np.random.Philox(key=3 * 2**64 + 5)).random(1000))


# ------------------------------------------------------------------- normal

def test_normal_definition():
    for seed, stream in ((0, 0), (2**64 + 7, 0), (12, 5)):
        n = 100001
        z = parfill.random(n, "normal", seed=seed, stream=stream)
        want = numpy_normal(seed, stream, n)
        # parfill's ln/cos/sin against NumPy's: both within about an ulp.
        np.testing.assert_allclose(z, want, rtol=1e-13, atol=1e-14)


def test_normal_same_bits_whatever_the_fill():
    n = 10**6 + 3
    ref = parfill.random(n, "normal", seed=2024, workers=1)
    for workers in (2, 3, 4):
        for schedule in SCHEDULES:
            for chunk in (None, 1, 5, 4097):
                if chunk == 1 and workers > 2:
                    continue  # one element per claim: slow, nothing new
                z = parfill.random(n, "normal", seed=2024, workers=workers,
                                   schedule=schedule, chunk=chunk)
                assert np.array_equal(z.view(np.uint64), ref.view(np.uint64)), \
                    (workers, schedule, chunk)
    # a window of a bigger fill is the same as the start of the stream
    two_d = parfill.random((1000, 1001), "normal", seed=2024, workers=3)
    assert np.array_equal(two_d.reshape(-1)[:n], ref[:1000 * 1001])
    f32 = parfill.random(n, "normal", seed=2024, dtype=np.float32, workers=2)
    np.testing.assert_array_equal(f32, ref.astype(np.float32))


@pytest.mark.parametrize("seed", [1, 2**70 + 3])
def test_normal_statistics(seed):
    n = 10**6
    z = parfill.random(n, "normal", seed=seed)
    assert np.isfinite(z).all()
    assert np.abs(z).max() < 8.6  # Box-Muller's bound with 53-bit uniforms
    # mean: sd 1/sqrt(n); standard deviation: sd about 1/sqrt(2n)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 5 / math.sqrt(2 * n)
    # CDF points: the fraction below x has sd sqrt(F (1 - F) / n)
    for x in (-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3):
        F = 0.5 * (1 + math.erf(x / math.sqrt(2)))
        frac = np.count_nonzero(z < x) / n
        assert abs(frac - F) < 5 * math.sqrt(F * (1 - F) / n), (x, frac, F)
    # the odd (sin) and even (cos) halves are each normal too
    for half in (z[0::2], z[1::2]):
        assert abs(half.mean()) < 5 / math.sqrt(n / 2)
        assert abs(half.std() - 1) < 5 / math.sqrt(n)


def test_uniform_statistics():
    n = 10**6
    u = parfill.random(n, seed=99, stream=4)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    for q in (0.1, 0.25, 0.5, 0.9):
        frac = np.count_nonzero(u < q) / n
        assert abs(frac - q) < 5 * math.sqrt(q * (1 - q) / n)


# ------------------------------------------------------------------- errors

def test_arguments():
    with pytest.raises(ValueError, match="dist"):
        parfill.random(10, dist="poisson")
    with pytest.raises(ValueError, match="seed"):
        parfill.random(10, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        parfill.random(10, seed=2**128)
    with pytest.raises(TypeError, match="seed"):
        parfill.random(10, seed=1.5)
    with pytest.raises(TypeError, match="seed"):
        parfill.random(10, seed=True)
    with pytest.raises(ValueError, match="stream"):
        parfill.random(10, stream=-1)
    with pytest.raises(ValueError, match="stream"):
        parfill.random(10, stream=2**64)
    for dtype in (np.int64, np.float16, np.complex128, np.longdouble):
        with pytest.raises(TypeError, match="float64 or float32"):
            parfill.random(10, dtype=dtype)
    with pytest.raises(TypeError, match="float64 or float32"):
        parfill.random(out=np.zeros(10, np.int32))
    with pytest.raises(ValueError):
        parfill.random(10, workers=0)
    with pytest.raises(ValueError, match="schedule"):
        parfill.random(10, schedule="sometimes")
    with pytest.raises(TypeError):
        parfill.random()  # no shape, no out
    ro = np.zeros(10)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        parfill.random(out=ro)
    with pytest.raises(ValueError):
        _core.fill_random(np.zeros(3), "uniform", 0, 0, 0, schedule="x")
    with pytest.raises(OverflowError):
        _core.fill_random(np.zeros(3), "uniform", -1, 0, 0)


def test_progress_and_empty():
    calls = []
    parfill.random(10**6, seed=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (10**6, 10**6)
    assert parfill.random(0).shape == (0,)
    assert parfill.random((3, 0), "normal").shape == (3, 0)


def test_exported_with_docstring():
    assert "random" in parfill.__all__
    assert "Philox" in parfill.random.__doc__


def test_bench_suite_smoke(capsys):
    from benchmarks import main  # the checkout's benchmarks (not installed)

    assert main(["random", "--quick", "--n", "1000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "parfill.random dynamic" in out and "MISMATCH" not in out
