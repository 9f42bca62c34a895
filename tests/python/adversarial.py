"""An adversarial run: random hostile calls of parfill, each checked against
the sequential loop, watched for crashes, hangs and leaks.

    python tests/python/adversarial.py --seconds 600            # a long run
    python tests/python/adversarial.py --cases 200 --seed 7     # reproducible

A supervisor process feeds case seeds to a child process that runs them (so a
crash is seen as the child's death, not the runner's) and gives each case a
deadline (a hang). After every case the child compares its resources -- file
descriptors, child processes, shared mappings, /dev/shm entries, threads --
with those it had before the first one (a leak). Every case is a pure function
of its seed: a failure prints the seed, and ``--replay SEED`` runs that case
alone in this process.

The kinds of case (``KINDS``) and what each asserts:
  values      a random element function (ints, floats, bools, complex, huge
              ints, NaN, None, strings; some elements raising) on a random
              shape, dtype, backend, schedule, chunk, worker count and out=
              layout: the result equals the sequential loop bit for bit, or
              parfill raises the loop's exception type with a note naming the
              loop's first failing element.
  vectorized  the same for vectorized functions on index arrays.
  expression  a random expression over i, j and constants: equals NumPy on
              numpy.indices (the operators NumPy and parfill define alike).
  arguments   one argument of populate()/random() replaced by junk: a result,
              or a TypeError/ValueError -- never another exception or a crash.
  death       workers that os._exit or SIGKILL themselves, once or always,
              with retries: the exact result, or WorkerDiedError.
  timeout     an element that sleeps past timeout=: parfill.TimeoutError
              within the timeout plus a bound.
  interrupt   SIGINT during a fill: KeyboardInterrupt within a bound.
  threads     several Python threads calling parfill at once, each checked.
  random      parfill.random against NumPy's Philox generator.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random as pyrandom
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

from references import dev_shm_in_use, same_bits, sequential

KINDS = ("values", "vectorized", "expression", "arguments", "death",
         "timeout", "interrupt", "threads", "random")
DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32",
          "int64", "uint64", "float16", "float32", "float64", "longdouble",
          "complex64", "complex128", "clongdouble")
BACKENDS = ("auto", "serial", "threads", "processes")
SCHEDULES = ("static", "dynamic", "guided")
CASE_DEADLINE = 60.0  # seconds before a case counts as a hang


class Mismatch(AssertionError):
    """parfill disagreed with the reference."""


# ------------------------------------------------------------------ helpers

def flat_index(idx, shape):
    return int(np.ravel_multi_index(idx, shape)) if shape else 0


def check_against(call, ref, ref_error, what):
    """Runs call(); checks it returns `ref` bit for bit, or raises the
    reference's exception type with a note naming its element."""
    try:
        got = call()
    except Exception as e:  # noqa: BLE001
        if ref_error is None:
            raise Mismatch(f"{what}: raised {type(e).__name__}: {e} where the "
                           f"loop succeeds") from e
        kind, idx = ref_error
        if type(e) is not kind:
            raise Mismatch(f"{what}: raised {type(e).__name__} ({e}) where the "
                           f"loop raises {kind.__name__} at {idx}") from e
        notes = " ".join(getattr(e, "__notes__", []) or [])
        if f"element {tuple(idx)}" not in notes:
            raise Mismatch(f"{what}: {kind.__name__} note {notes!r} does not "
                           f"name the loop's first failing element {idx}") from e
        return
    if ref_error is not None:
        raise Mismatch(f"{what}: returned where the loop raises "
                       f"{ref_error[0].__name__} at {ref_error[1]}")
    if not same_bits(got, ref):
        raise Mismatch(f"{what}: values differ from the loop")


# --------------------------------------------------------- element functions

class LocalError(Exception):
    """Replaced per case by a class defined inside a function (unpicklable)."""


def make_local_error():
    class CaseError(ValueError):  # defined in a function: pickle cannot find it
        pass
    return CaseError


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ raises")


def raiser(rng):
    """A function raising a random kind of exception (with odd payloads)."""
    choice = rng.randrange(8)
    if choice == 0:
        return lambda: ValueError("plain")
    if choice == 1:
        return lambda: ZeroDivisionError("division by zero")
    if choice == 2:
        cls = make_local_error()
        return lambda: cls("local class")
    if choice == 3:
        return lambda: KeyError(lambda: None)  # unpicklable argument
    if choice == 4:
        size = rng.choice([1000, 400_000, 1_500_000])
        return lambda: RuntimeError("x" * size)
    if choice == 5:
        return lambda: BadStr()
    if choice == 6:
        def with_tuple_notes():
            e = TypeError("odd notes")
            e.__notes__ = ("a tuple",)
            return e
        return with_tuple_notes
    return lambda: OverflowError("user overflow")


def value_function(rng, ndim, size):
    """A random element function of `ndim` ints: its values exercise
    conversion (big ints, NaN, complex, None, strings), and some elements
    raise. Returns (func, description)."""
    a, b = rng.randint(-5, 5), rng.choice([1, 2, 3, 7, 2**31, 2**62])
    produce = rng.randrange(9)
    failing = set()
    if rng.random() < 0.4 and size:
        failing = {rng.randrange(size) for _ in range(rng.randint(1, 3))}
    make_exc = raiser(rng)
    sleepy = rng.random() < 0.15

    def value(flat):
        if produce == 0:
            return a * flat + b
        if produce == 1:
            return (a * flat - 3) / b
        if produce == 2:
            return float("nan") if flat % 5 == 3 else flat * 0.5 - a
        if produce == 3:
            return flat % 3 == a % 3
        if produce == 4:
            return complex(flat, a)
        if produce == 5:
            return 2 ** (flat % 70) * (-1) ** flat
        if produce == 6:
            return -0.0 if flat % 2 else float("inf") * (a or 1)
        if produce == 7:
            return None if flat == size // 2 else flat
        return str(flat) if flat % 4 == 1 else flat

    shape_holder = {}

    def func(*idx):
        flat = 0
        for n, k in zip(shape_holder["shape"], idx):
            flat = flat * n + k
        if sleepy and flat % 7 == 0:
            time.sleep(0.001)
        if flat in failing:
            raise make_exc()
        return value(flat)

    return func, shape_holder, f"produce={produce} failing={sorted(failing)}"


def random_shape(rng, max_size=600):
    ndim = rng.choice([0, 1, 1, 1, 2, 2, 3])
    while True:
        shape = tuple(rng.choice([0, 1, 2, 3, 5, 17, 40, 129])
                      for _ in range(ndim))
        if math.prod(shape) <= max_size:
            return shape


def random_out(rng, shape, dtype):
    """None, or an out= array of a random layout (its values are garbage)."""
    layout = rng.randrange(5)
    if layout == 0:
        return None
    if layout == 1:
        return np.empty(shape, dtype)
    if layout == 2:
        return np.empty(shape, dtype, order="F")
    if layout == 3 and shape:
        big = np.empty(shape[:-1] + (shape[-1] * 2,), dtype)
        return big[..., ::2]
    if layout == 4 and shape:
        return np.empty(shape, dtype)[..., ::-1]
    return np.empty(shape, dtype)


def random_options(rng, supervised=False):
    opts = dict(backend=rng.choice(BACKENDS), workers=rng.choice([1, 2, 3, 4]),
                schedule=rng.choice(SCHEDULES),
                chunk=rng.choice([None, None, 1, 2, 7, 1000, 2**62]))
    if supervised or rng.random() < 0.2:
        opts["timeout"] = 120.0
    if rng.random() < 0.2:
        opts["retries"] = rng.randint(0, 2)
    return opts


# -------------------------------------------------------------------- cases

def case_values(rng, parfill):
    shape = random_shape(rng)
    dtype = np.dtype(rng.choice(DTYPES))
    func, holder, desc = value_function(rng, len(shape), math.prod(shape))
    holder["shape"] = shape
    ref, ref_error = sequential(func, shape, dtype)
    out = random_out(rng, shape, dtype)
    opts = random_options(rng)
    what = f"values shape={shape} dtype={dtype} {desc} {opts} out={out is not None}"

    def call():
        if out is None:
            return parfill.populate(func, shape, dtype, **opts)
        got = parfill.populate(func, out=out, **opts)
        if got is not out:
            raise Mismatch(f"{what}: out= was not returned")
        return got
    check_against(call, ref, ref_error, what)


def case_vectorized(rng, parfill):
    shape = random_shape(rng)
    if not shape:
        shape = (7,)
    dtype = np.dtype(rng.choice(DTYPES[1:12]))
    a = rng.randint(-3, 3)
    form = rng.randrange(3)

    def func(*idx):
        if form == 0:
            return sum(x * (k + 1) for k, x in enumerate(idx)) + a
        if form == 1:
            return np.sqrt(np.abs(idx[0] - a)) if dtype.kind == "f" else idx[0]
        return a  # a scalar broadcast to the block

    # The reference: one call on every index at once, stored as
    # a.reshape(-1)[start:stop] = result stores it (these forms are
    # elementwise, so the blocks' calls concatenate to it).
    ref = np.empty(shape, dtype)
    flat = np.indices(shape, dtype=np.int64).reshape(len(shape), -1)
    ref_error = None
    try:
        with np.errstate(all="ignore"):
            if ref.size:  # an empty array calls nothing, as the loop does
                ref.reshape(-1)[:] = func(*flat)
    except Exception as e:  # noqa: BLE001
        ref, ref_error = None, type(e)
    opts = random_options(rng)
    what = f"vectorized shape={shape} dtype={dtype} form={form} {opts}"
    try:
        with np.errstate(all="ignore"):
            got = parfill.populate(func, shape, dtype, vectorized=True, **opts)
    except Exception as e:  # noqa: BLE001
        if ref_error is None or type(e) is not ref_error:
            raise Mismatch(f"{what}: raised {type(e).__name__}: {e}; the "
                           f"reference {'succeeds' if ref_error is None else 'raises ' + ref_error.__name__}") from e
        return
    if ref_error is not None:
        raise Mismatch(f"{what}: returned where the reference raises "
                       f"{ref_error.__name__}")
    if not same_bits(got, ref):
        raise Mismatch(f"{what}: values differ from the reference")


INT_LEAVES = ("i", "j", "2", "3", "-7", "11")
FLOAT_LEAVES = ("0.5", "-2.25", "1e300", "-0.0")


def random_expression(rng, depth=0):
    """(text, numpy function of (i, j)) over operators NumPy and parfill
    define alike, with no integer division by zero."""
    if depth > 3 or rng.random() < 0.3:
        leaf = rng.choice(INT_LEAVES + FLOAT_LEAVES)
        if leaf in ("i", "j"):
            return leaf, (lambda i, j, leaf=leaf: i if leaf == "i" else j)
        value = np.float64(leaf) if "." in leaf or "e" in leaf else np.int64(leaf)
        return f"({leaf})", (lambda i, j, v=value: v)
    op = rng.randrange(8)
    lt, lf = random_expression(rng, depth + 1)
    rt, rf = random_expression(rng, depth + 1)
    if op == 0:
        return f"({lt} + {rt})", lambda i, j: lf(i, j) + rf(i, j)
    if op == 1:
        return f"({lt} - {rt})", lambda i, j: lf(i, j) - rf(i, j)
    if op == 2:
        return f"({lt} * {rt})", lambda i, j: lf(i, j) * rf(i, j)
    if op == 3:
        return f"(-{lt})", lambda i, j: -lf(i, j)
    if op == 4:
        return f"abs({lt})", lambda i, j: np.abs(lf(i, j))
    if op == 5:
        return (f"where({lt} < {rt}, {lt}, {rt})",
                lambda i, j: np.where(lf(i, j) < rf(i, j), lf(i, j), rf(i, j)))
    if op == 6:
        return (f"minimum({lt}, {rt})",
                lambda i, j: np.minimum(lf(i, j), rf(i, j)))
    return f"copysign(1, {lt})", lambda i, j: np.copysign(1.0, lf(i, j))


def case_expression(rng, parfill):
    shape = (rng.choice([1, 3, 17]), rng.choice([1, 4, 33]))
    text, numpy_func = random_expression(rng)
    i, j = np.indices(shape, dtype=np.int64)
    with np.errstate(all="ignore"):
        expected = np.asarray(numpy_func(i, j))
        expected = np.broadcast_to(expected, shape)
        dtype = np.float64 if expected.dtype.kind == "f" else np.int64
        expected = expected.astype(dtype)
    opts = random_options(rng)
    opts.pop("retries", None)
    got = parfill.populate(text, shape, dtype, **opts)
    if not same_bits(got, expected):
        bad = np.argwhere(got.view(np.uint64 if dtype == np.float64 else np.int64)
                          != expected.view(got.view(np.uint64 if dtype == np.float64
                                                    else np.int64).dtype))
        raise Mismatch(f"expression {text!r} {opts}: differs from NumPy at "
                       f"{bad[:3].tolist()}: {got[tuple(bad[0])]!r} vs "
                       f"{expected[tuple(bad[0])]!r}")


JUNK = (None, -1, 0, 1, 2**63, 2**200, -2**63, 1.5, float("nan"), "x", b"x",
        "False", True, [], {}, (), (3, -1), (2**40, 2**40), object(),
        np.int64(3), np.float64(2.0), range(3), "O", "U3", "M8", np.dtype("O"),
        lambda i: i, [[1]], (1.5,), -0.0, float("inf"), 10**18, memoryview(b"ab"))
POPULATE_ARGS = ("func", "shape", "dtype", "out", "workers", "schedule", "chunk",
                 "backend", "vectorized", "params", "ctx", "progress",
                 "retries", "timeout")
RANDOM_ARGS = ("shape", "dist", "seed", "dtype", "out", "workers", "stream",
               "schedule", "chunk", "progress")


def case_arguments(rng, parfill):
    junk = rng.choice(JUNK)
    if callable(junk) and not isinstance(junk, type):
        junk = rng.choice(JUNK[:10])
    if rng.random() < 0.7:
        base = dict(func=lambda i: i * 2, shape=(5,), dtype=np.float64,
                    workers=2)
        if rng.random() < 0.3:
            base["func"] = "i * 2"
        name = rng.choice(POPULATE_ARGS)
        base[name] = junk
        call = lambda: parfill.populate(**base)  # noqa: E731
    else:
        base = dict(shape=(5,), workers=2)
        name = rng.choice(RANDOM_ARGS)
        base[name] = junk
        call = lambda: parfill.random(**base)  # noqa: E731
    if name == "shape" and isinstance(junk, tuple) and junk == (2**40, 2**40):
        base["shape"] = (2**31, 2**31)  # refused as too big, never allocated
    try:
        call()
    except (TypeError, ValueError):
        return
    except MemoryError:
        if name in ("shape", "chunk", "workers"):
            return
        raise
    except Exception as e:  # noqa: BLE001
        raise Mismatch(f"arguments {name}={junk!r}: {type(e).__name__}: {e} "
                       f"(want a result, TypeError or ValueError)") from e


def case_death(rng, parfill, scratch):
    size = rng.choice([5, 40, 300])
    victim = rng.randrange(size)
    how = rng.choice(["exit", "kill"])
    always = rng.random() < 0.3
    retries = rng.randint(0, 2)
    marker = os.path.join(scratch, f"died-{rng.getrandbits(64)}")

    def func(i):
        if i == victim:
            first = True
            if not always:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    first = False
            if first:
                if how == "exit":
                    os._exit(3)
                os.kill(os.getpid(), signal.SIGKILL)
        return i * 3
    opts = dict(backend=rng.choice(["processes", "auto"]), retries=retries,
                workers=rng.choice([1, 2, 3]), schedule=rng.choice(SCHEDULES),
                chunk=rng.choice([None, 1, 7]))
    if opts["backend"] == "auto":
        opts["timeout"] = 120.0  # supervised: auto must not run it in the caller
    what = f"death size={size} victim={victim} {how} always={always} {opts}"
    try:
        got = parfill.populate(func, size, np.int64, **opts)
    except parfill.WorkerDiedError:
        if always or retries == 0:
            return
        raise Mismatch(f"{what}: WorkerDiedError although a retry recovers it")
    finally:
        try:
            os.unlink(marker)
        except FileNotFoundError:
            pass
    if always or retries == 0:
        raise Mismatch(f"{what}: returned although the worker died for good")
    if not np.array_equal(got, np.arange(size) * 3):
        raise Mismatch(f"{what}: wrong values after a retry")


def case_timeout(rng, parfill):
    timeout = rng.choice([0.2, 0.5, 1.0])
    size = rng.choice([4, 100, 5000])
    slow_at = rng.randrange(size)
    backend = rng.choice(["auto", "processes", "threads"])
    # Threads cannot stop a running element; keep its sleep short-ish.
    nap = 3.0 if backend == "threads" else 3600.0

    def func(i):
        if i == slow_at:
            end = time.monotonic() + nap
            while time.monotonic() < end:
                time.sleep(0.01)
        return i
    t0 = time.monotonic()
    try:
        parfill.populate(func, size, workers=rng.choice([1, 2, 3]),
                         backend=backend, timeout=timeout)
    except parfill.TimeoutError:
        took = time.monotonic() - t0
        if took > timeout + 2.0:
            raise Mismatch(f"timeout {timeout} {backend}: took {took:.2f} s")
        if backend == "threads":
            time.sleep(nap)  # let the stranded element finish before the leak check
        return
    raise Mismatch(f"timeout {timeout} {backend}: no TimeoutError")


def case_interrupt(rng, parfill):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    backend = rng.choice(BACKENDS)
    delay = rng.choice([0.05, 0.2, 0.4])
    func = "sin(i) * cos(i) + i" if rng.random() < 0.3 else (
        lambda i: time.sleep(0.002) or i)
    size = 3 * 10**8 if isinstance(func, str) else 10**5
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        parfill.populate(func, size, np.float32, backend=backend,
                         workers=rng.choice([1, 2]))
    except KeyboardInterrupt:
        took = time.monotonic() - t0 - delay
        if took > 1.5:
            raise Mismatch(f"interrupt {backend}: {took:.2f} s to stop")
        return
    finally:
        timer.cancel()
        timer.join()
    raise Mismatch(f"interrupt {backend}: the fill was not interrupted")


def case_threads(rng, parfill):
    errors = []
    seeds = [rng.getrandbits(32) for _ in range(rng.randint(2, 4))]

    def one(seed):
        try:
            sub = pyrandom.Random(seed)
            kind = sub.choice(["values", "expression", "random"])
            CASES[kind](sub, parfill)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=one, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def case_random(rng, parfill):
    shape = random_shape(rng, 5000)
    seed = rng.choice([0, 1, 12345, 2**64 + 7, 2**128 - 1])
    dtype = rng.choice([np.float64, np.float32])
    gen = np.random.Generator(np.random.Philox(key=seed))
    expected = gen.random(math.prod(shape), dtype=dtype).reshape(shape)
    got = parfill.random(shape, "uniform", seed, dtype,
                         workers=rng.choice([1, 2, 3]),
                         schedule=rng.choice(SCHEDULES),
                         chunk=rng.choice([None, 1, 64]))
    if not same_bits(got, expected):
        raise Mismatch(f"random shape={shape} seed={seed} dtype={dtype}: "
                       f"differs from NumPy's Philox")


CASES = {
    "values": case_values, "vectorized": case_vectorized,
    "expression": case_expression, "arguments": case_arguments,
    "death": case_death, "timeout": case_timeout,
    "interrupt": case_interrupt, "threads": case_threads,
    "random": case_random,
}
WEIGHTS = {"values": 40, "vectorized": 8, "expression": 15, "arguments": 20,
           "death": 6, "timeout": 3, "interrupt": 3, "threads": 4, "random": 4}


def case_kind(seed):
    return pyrandom.Random(seed).choices(list(WEIGHTS),
                                         weights=list(WEIGHTS.values()))[0]


def run_case(seed, parfill, scratch):
    """Runs the case of `seed`; returns its kind (raises on a failure)."""
    rng = pyrandom.Random(seed)
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    if kind == "death":
        case_death(rng, parfill, scratch)
    else:
        CASES[kind](rng, parfill)
    return kind


# ------------------------------------------------------------------ leaks

def dev_shm_ours():
    """What under /dev/shm could be this run's: what this process maps or
    holds open, and Python's shared_memory segments ("psm_", what the
    article's approach 2 makes); parfill itself never creates files there.
    Other programs on the machine (Open MPI's "vader_segment" files from a
    concurrent mpiexec) come and go on their own."""
    if not os.path.isdir("/dev/shm"):
        return []
    return sorted(set(dev_shm_in_use()) |
                  {"/dev/shm/" + name for name in os.listdir("/dev/shm")
                   if name.startswith("psm_")})


def resources(pool_threads_allowed):
    fds = sorted(os.listdir("/proc/self/fd"))
    with open("/proc/self/maps") as f:
        shared = sorted(line.split()[0] for line in f
                        if len(line.split()) > 1 and line.split()[1][3] == "s")
    children = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                children += f.read().split()
        except FileNotFoundError:
            pass
    dev_shm = dev_shm_ours()
    threads = len(os.listdir("/proc/self/task"))
    return {"fds": fds, "shared": shared, "children": sorted(children),
            "dev_shm": dev_shm,
            "threads": "ok" if threads <= pool_threads_allowed else threads}


# ---------------------------------------------------------------- the child

def child_main():
    import parfill
    signal.signal(signal.SIGINT, signal.default_int_handler)
    scratch = tempfile.mkdtemp(prefix="pf-adversarial-")
    # Warm up: the thread pool and fork paths exist before the baseline.
    parfill.populate(lambda i: i, 10, backend="threads", workers=4)
    parfill.populate(lambda i: i, 10, backend="processes", workers=2)
    parfill.populate("i", 10, workers=4)
    # tqdm creates its global multiprocessing lock (a shared mapping) on the
    # first bar: once per process, not a leak of parfill's.
    parfill.populate("i", 10, workers=2, progress=True)
    gc.collect()
    allowed = len(os.listdir("/proc/self/task")) + 64
    baseline = resources(allowed)
    try:
        for line in sys.stdin:
            seed = int(line)
            result = {"seed": seed}
            try:
                result["kind"] = run_case(seed, parfill, scratch)
                result["ok"] = True
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                result["ok"] = False
                result["error"] = "".join(traceback.format_exception(e))[-3000:]
            gc.collect()
            now = resources(allowed)
            if now != baseline and result.get("ok"):
                time.sleep(0.5)  # a worker being reaped, a thread exiting
                gc.collect()
                now = resources(allowed)
                if now != baseline:
                    result["ok"] = False
                    result["error"] = f"leak: {diff(baseline, now)}"
                    baseline = now
            print(json.dumps(result), flush=True)
    finally:
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)


def diff(before, after):
    out = {}
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], list):
                out[key] = {"gone": sorted(set(before[key]) - set(after[key])),
                            "new": sorted(set(after[key]) - set(before[key]))}
            else:
                out[key] = (before[key], after[key])
    return out


# ----------------------------------------------------------- the supervisor

class Supervisor:
    def __init__(self):
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            start_new_session=True)

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc = None

    def run(self, seed):
        """Returns the child's verdict for `seed` as a dict."""
        try:
            self.proc.stdin.write(f"{seed}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_DEADLINE)
        if not ready:
            self.stop()
            self.start()
            return {"seed": seed, "ok": False, "kind": "?",
                    "error": f"hang: no answer within {CASE_DEADLINE} s"}
        line = self.proc.stdout.readline()
        if not line:
            status = self.proc.wait()
            self.stop()
            self.start()
            return {"seed": seed, "ok": False, "kind": "?",
                    "error": f"crash: the child ended with status {status}"}
        return json.loads(line)


def run(seconds=None, cases=None, seed=0, log=print):
    """Runs cases until `seconds` pass or `cases` are done. Returns
    (counts by kind, failures)."""
    master = pyrandom.Random(seed)
    counts = {}
    failures = []
    sup = Supervisor()
    t0 = time.monotonic()
    done = 0
    try:
        while True:
            if cases is not None and done >= cases:
                break
            if seconds is not None and time.monotonic() - t0 >= seconds:
                break
            case_seed = master.getrandbits(48)
            verdict = sup.run(case_seed)
            done += 1
            kind = case_kind(case_seed)
            counts[kind] = counts.get(kind, 0) + 1
            if not verdict["ok"]:
                failures.append(verdict)
                log(f"FAILED seed {case_seed} ({kind}):\n{verdict['error']}")
    finally:
        sup.stop()
    return counts, failures


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float)
    p.add_argument("--cases", type=int)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--replay", type=int, help="run one case seed here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main()
        return 0
    if args.replay is not None:
        import parfill
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with tempfile.TemporaryDirectory() as scratch:
            print(run_case(args.replay, parfill, scratch), "ok")
        return 0
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    if args.seconds is None and args.cases is None:
        args.seconds = 60
    t0 = time.monotonic()
    counts, failures = run(args.seconds, args.cases, seed)
    total = sum(counts.values())
    print(f"adversarial run, seed {seed}: {total} cases in "
          f"{time.monotonic() - t0:.0f} s: " +
          ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"{total - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
