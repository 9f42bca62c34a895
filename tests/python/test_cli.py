"""The ``parfill`` command (build/parfill): .npy files and every failure path.

Each file written is read back with ``numpy.load`` (and ``mmap_mode="r"``)
and compared with NumPy evaluating the same expression on ``numpy.indices``;
its header bytes are compared with ``numpy.lib.format``'s. Every failure
must give its exit status and message and leave the output directory
exactly as it was: no file, no temporary file.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import pty
import re
import resource
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npformat

import parfill

ROOT = Path(__file__).resolve().parents[2]
PARFILL = ROOT / "build" / "parfill"

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "float16", "float32", "float64", "longdouble", "complex64",
          "complex128", "clongdouble"]


@pytest.fixture(scope="module", autouse=True)
def _built():
    if not PARFILL.exists():
        pytest.fail(f"{PARFILL} is missing: run `make` first")


def run(*args, timeout=120, **kw):
    return subprocess.run([str(PARFILL), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)


def listing(d):
    return sorted(os.listdir(d))


def header_bytes(path):
    with open(path, "rb") as f:
        prefix = f.read(12)
        major = prefix[6]
        hlen = int.from_bytes(prefix[8:10] if major == 1 else prefix[8:12], "little")
        f.seek(0)
        return f.read((10 if major == 1 else 12) + hlen)


def numpy_header(dtype, shape):
    b = io.BytesIO()
    npformat.write_array_header_1_0(
        b, {"descr": npformat.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False, "shape": tuple(shape)})
    return b.getvalue()


def load_both(path):
    """numpy.load, plain and memory-mapped: both must give the same array."""
    a = np.load(path)
    m = np.load(path, mmap_mode="r")
    assert m.dtype == a.dtype and m.shape == a.shape
    assert np.array_equal(np.asarray(m), a, equal_nan=a.dtype.kind in "fc")
    del m
    return a


def shape_arg(shape):
    return "x".join(map(str, shape))


# ---------------------------------------------------------------- results

def _exact_reference(kind, shape):
    i, j = np.indices(shape)
    if kind == "b":
        return (i + j) % 3, "(i + j) % 3"
    if kind in "iu":
        return i * 7 - j * 3, "i*7 - j*3"
    return (i * 7 - j * 3) / 4 + 0.5, "(i*7 - j*3) / 4 + 0.5"


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_equals_numpy(tmp_path, dtype):
    shape = (37, 29)
    ref, expr = _exact_reference(np.dtype(dtype).kind, shape)
    out = tmp_path / "a.npy"
    r = run("fill", expr, "--shape", shape_arg(shape), "--dtype", dtype, "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""
    a = load_both(out)
    assert a.dtype == np.dtype(dtype) and a.shape == shape
    assert np.array_equal(a, ref.astype(dtype))
    assert header_bytes(out) == numpy_header(dtype, shape)
    assert listing(tmp_path) == ["a.npy"]


@pytest.mark.parametrize("dtype", ["longdouble", "clongdouble"])
def test_padded_dtypes_give_the_same_bytes_every_run(tmp_path, dtype):
    # x86's 80-bit long double fills 10 of its 16 bytes: the other 6 must be
    # zeros (as NumPy's own arange writes them), not what the heap held.
    files = []
    for k in range(2):
        files.append(tmp_path / f"{k}.npy")
        r = run("fill", "i * 0.5 + uniform()", "--shape", 50000, "--dtype",
                dtype, "-o", files[-1])
        assert r.returncode == 0, r.stderr
    assert files[0].read_bytes() == files[1].read_bytes()
    a = np.load(files[0])
    assert np.array_equal(a, np.load(files[1]))
    padding = a.view(np.uint8).reshape(-1, 16)[:, 10:]
    assert not padding.any()


@pytest.mark.parametrize("spelling,dtype", [("f4", "float32"), ("<f8", "float64"),
                                            ("double", "float64"), ("u1", "uint8"),
                                            ("?", "bool"), ("c16", "complex128"),
                                            ("int", "int64")])
def test_dtype_spellings(tmp_path, spelling, dtype):
    out = tmp_path / "a.npy"
    r = run("fill", "i", "--shape", "4", "--dtype", spelling, "-o", out)
    assert r.returncode == 0, r.stderr
    assert np.load(out).dtype == np.dtype(dtype)


@pytest.mark.parametrize("shape", [(5,), (1,), (7, 3), (4, 5, 6), (3, 4, 5, 6), (2, 1, 3, 1)])
def test_shapes_1d_to_4d(tmp_path, shape):
    out = tmp_path / "a.npy"
    names = "ijkl"[:len(shape)]
    expr = " + ".join(f"{n}*{10 ** (len(shape) - 1 - d)}" for d, n in enumerate(names))
    expr += " + idx*100000 - size + n0"
    r = run("fill", expr, "--shape", shape_arg(shape), "--dtype", "int64", "-o", out)
    assert r.returncode == 0, r.stderr
    idx = np.indices(shape)
    ref = sum(idx[d] * 10 ** (len(shape) - 1 - d) for d in range(len(shape)))
    size = int(np.prod(shape))
    ref = ref + np.arange(size).reshape(shape) * 100000 - size + shape[0]
    a = load_both(out)
    assert a.shape == shape
    assert np.array_equal(a, ref)
    assert header_bytes(out) == numpy_header("int64", shape)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (0, 123456789012345),
                                   (1000000,), (3, 1, 4, 1, 5, 9, 2, 6),
                                   (10 ** 15, 0), (99, 100, 101)])
@pytest.mark.parametrize("dtype", ["float64", "bool", "uint16", "complex64"])
def test_header_bytes_equal_numpy(tmp_path, shape, dtype):
    out = tmp_path / "h.npy"
    r = run("fill", "1", "--shape", shape_arg(shape), "--dtype", dtype, "-o", out)
    assert r.returncode == 0, r.stderr
    head = header_bytes(out)
    assert head == numpy_header(dtype, shape)
    assert len(head) % 64 == 0
    n = int(np.prod(shape, dtype=object))
    assert out.stat().st_size == len(head) + n * np.dtype(dtype).itemsize
    a = np.load(out, mmap_mode="r")
    assert a.shape == shape and a.dtype == np.dtype(dtype)


def test_transcendental_functions_match_numpy(tmp_path):
    shape = (300, 400)
    out = tmp_path / "t.npy"
    r = run("fill", "sin(i*0.001)*cos(j*0.001) + exp(-i*0.01) * log1p(j)",
            "--shape", shape_arg(shape), "-o", out)
    assert r.returncode == 0, r.stderr
    i, j = np.indices(shape)
    ref = np.sin(i * 0.001) * np.cos(j * 0.001) + np.exp(-i * 0.01) * np.log1p(j)
    # Each function within 4 ulp (SPEC 4), on both sides: their combination
    # within a few times that.
    np.testing.assert_array_max_ulp(load_both(out), ref, maxulp=16)


def test_parameters(tmp_path):
    out = tmp_path / "p.npy"
    r = run("fill", "where(flag, a*i + b, -j) + c", "-D", "a=3", "-Db=0.5",
            "--define", "flag=True", "-D", "c=-2", "--shape", "6x7", "-o", out)
    assert r.returncode == 0, r.stderr
    i, j = np.indices((6, 7))
    assert np.array_equal(np.load(out), np.where(True, 3 * i + 0.5, -j) + -2)


def test_results_do_not_depend_on_workers_schedule_chunk(tmp_path):
    # 700x1000 float64 = 5.6 MB: six 1 MiB write blocks, the last one short.
    shape = "700x1000"
    expr = "sin(idx*0.37) + 2 + i + j"
    files = []
    for workers in (1, 2, 3):
        for schedule in ("static", "dynamic", "guided"):
            for chunk in (None, 1, 100000, 10 ** 12):
                out = tmp_path / f"w{workers}-{schedule}-{chunk}.npy"
                args = ["fill", expr, "--shape", shape, "--workers", workers,
                        "--schedule", schedule, "-o", out]
                if chunk is not None:
                    args += ["--chunk", chunk]
                r = run(*args)
                assert r.returncode == 0, r.stderr
                files.append(out)
    first = files[0].read_bytes()
    for f in files[1:]:
        assert f.read_bytes() == first, f.name
    i, j = np.indices((700, 1000))
    idx = np.arange(700 * 1000).reshape(700, 1000)
    np.testing.assert_array_max_ulp(np.load(files[0]), np.sin(idx * 0.37) + 2 + i + j,
                                    maxulp=4)


# ---------------------------------------------------------------- --force

def test_existing_file_is_refused_and_untouched(tmp_path):
    out = tmp_path / "x.npy"
    out.write_bytes(b"precious")
    before = out.stat()
    r = run("fill", "i", "--shape", "10", "-o", out)
    assert r.returncode == 2
    assert "exists" in r.stderr and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    after = out.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert listing(tmp_path) == ["x.npy"]


def test_force_replaces_only_regular_files(tmp_path):
    """A device, FIFO, directory or symlink is never swapped for a file (as
    root, `--force -o /dev/null` would otherwise replace /dev/null)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "target.npy").write_bytes(b"target")
    (tmp_path / "link").symlink_to("target.npy")
    for name in ("fifo", "dir", "link"):
        r = run("fill", "i", "--shape", "10", "--force", "-o", tmp_path / name)
        assert r.returncode == 2, r.stderr
        assert "not a regular file" in r.stderr and "--force" not in r.stderr
    assert fifo.is_fifo() and (tmp_path / "dir").is_dir()
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "target.npy").read_bytes() == b"target"
    assert listing(tmp_path) == ["dir", "fifo", "link", "target.npy"]


def test_parameter_named_like_an_index_is_a_usage_error(tmp_path):
    r = run("fill", "i", "-D", "i=3", "--shape", "3", "-o", tmp_path / "x.npy")
    assert r.returncode == 2
    assert "'i'" in r.stderr
    assert listing(tmp_path) == []


def test_force_replaces(tmp_path):
    out = tmp_path / "x.npy"
    out.write_bytes(b"old")
    for flag in ("--force", "-f"):
        r = run("fill", "i*2", "--shape", "10", flag, "-o", out)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(np.load(out), np.arange(10) * 2)
    assert listing(tmp_path) == ["x.npy"]


# ---------------------------------------------------------------- errors

def _caret_column(stderr, expr):
    lines = stderr.splitlines()
    k = lines.index("  " + expr)
    caret = lines[k + 1]
    assert caret.strip() == "^"
    return caret.index("^") - 2


@pytest.mark.parametrize("expr,column,words", [
    ("sin(i) +* 2", 8, "'*'"),
    ("foo + i", 0, "foo"),
    ("i + k", 4, "'k'"),
    ("sin(i", 5, ""),
    ("2 ** (i - 5)", 2, "negative"),  # found while filling: int64 ** negative
    ("", 0, "empty"),
    ("   ", 3, "empty"),
])
def test_bad_expression(tmp_path, expr, column, words):
    out = tmp_path / "x.npy"
    r = run("fill", expr, "--shape", "10x10", "--dtype", "int64", "-o", out)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("parfill: error: ")
    assert words in r.stderr.splitlines()[0]
    assert _caret_column(r.stderr, expr) == column
    assert listing(tmp_path) == []


@pytest.mark.parametrize("args,words", [
    ([], "no command"),
    (["frobnicate"], "unknown command"),
    (["fill"], "no EXPR"),
    (["fill", "i", "-o", "OUT"], "--shape is required"),
    (["fill", "i", "--shape", "10"], "-o OUT.npy is required"),
    (["fill", "i", "--shape", "10x", "-o", "OUT"], "not a shape"),
    (["fill", "i", "--shape", "ax3", "-o", "OUT"], "not a shape"),
    (["fill", "i", "--shape", "-5", "-o", "OUT"], "not a shape"),
    (["fill", "i", "--shape", "", "-o", "OUT"], "empty shape"),
    (["fill", "i", "--shape", "99999999999999999999", "-o", "OUT"], "too large"),
    (["fill", "i", "--shape", "4611686018427387904x4", "-o", "OUT"], "2**63 bytes"),
    (["fill", "i", "--shape", "x".join(["1"] * 33), "-o", "OUT"], "more than 32 axes"),
    (["fill", "i", "--shape", "3", "--dtype", "object", "-o", "OUT"], "dtype 'object'"),
    (["fill", "i", "--shape", "3", "--dtype", ">f8", "-o", "OUT"], "dtype '>f8'"),
    (["fill", "i", "--shape", "3", "-D", "x", "-o", "OUT"], "NAME=VALUE"),
    (["fill", "i", "--shape", "3", "-D", "1x=2", "-o", "OUT"], "NAME=VALUE"),
    (["fill", "i", "--shape", "3", "-D", "x=abc", "-o", "OUT"], "not an integer"),
    (["fill", "i", "--shape", "3", "-D", "x=1", "-D", "x=2", "-o", "OUT"], "twice"),
    (["fill", "i", "--shape", "3", "--workers", "0", "-o", "OUT"], "--workers"),
    (["fill", "i", "--shape", "3", "--workers", "two", "-o", "OUT"], "--workers"),
    (["fill", "i", "--shape", "3", "--schedule", "fast", "-o", "OUT"], "--schedule"),
    (["fill", "i", "--shape", "3", "--chunk", "0", "-o", "OUT"], "--chunk"),
    (["fill", "i", "--shape", "3", "--bogus", "-o", "OUT"], "unknown option"),
    (["fill", "i", "j", "--shape", "3", "-o", "OUT"], "unexpected argument"),
    (["fill", "i", "--shape", "3", "-o"], "-o needs a value"),
    (["fill", "i", "--shape", "3", "-o", ""], "empty"),
])
def test_bad_usage(tmp_path, args, words):
    args = [str(tmp_path / "x.npy") if a == "OUT" else a for a in args]
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert "usage: parfill fill EXPR" in r.stderr
    assert words in r.stderr.splitlines()[0], r.stderr
    assert r.stdout == ""
    assert listing(tmp_path) == []


def test_expression_after_double_dash_and_negative_numbers(tmp_path):
    out = tmp_path / "n.npy"
    r = run("fill", "--shape", "4", "-o", out, "--", "-i")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out), -np.arange(4.0))
    r = run("fill", "-1.5", "--shape", "2", "--force", "--output=" + str(out))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out), [-1.5, -1.5])


def test_missing_directory(tmp_path):
    out = tmp_path / "no" / "such" / "x.npy"
    r = run("fill", "i", "--shape", "10", "-o", out)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "No such file or directory" in lines[0]
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["x" * 256, "y" * 300 + ".npy"])
@pytest.mark.parametrize("force", [False, True])
def test_name_too_long_fails_before_any_work(tmp_path, name, force):
    t0 = time.perf_counter()
    r = run(*SLOW_ARGS, "-o", tmp_path / name, *(["--force"] if force else []))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "File name too long" in lines[0], r.stderr
    assert time.perf_counter() - t0 < 2  # not after seconds of work
    assert listing(tmp_path) == []


def test_uncreatable_paths_fail_before_any_work(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    for out, words in ((tmp_path / "no" / "x.npy", "No such file or directory"),
                       (tmp_path / "file" / "x.npy", "Not a directory"),
                       (tmp_path / ("d" * 256) / "x.npy", "File name too long")):
        t0 = time.perf_counter()
        r = run(*SLOW_ARGS, "-o", out)
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], r.stderr
        assert time.perf_counter() - t0 < 2
    assert listing(tmp_path) == ["file"]


def _numpy_accepts(shape, dtype):
    try:
        np.empty(shape, dtype)
    except ValueError:
        return False
    except MemoryError:
        return True
    return True


@pytest.mark.parametrize("shape", [(0, 2**63 - 1), (2**63 - 1, 0), (0, 2**62),
                                   (0, 2**60, 16), (2**61, 0, 4), (0, 2**31, 2**31),
                                   (0, 2**59), (0, 2**60), (0, 0, 2**62)])
@pytest.mark.parametrize("dtype", ["uint8", "float64", "complex128"])
def test_shape_size_rule_is_numpys(tmp_path, shape, dtype):
    """NumPy refuses a shape when the item size times its nonzero axis
    lengths exceeds 2**63 - 1, even with a zero axis; parfill refuses
    exactly those, and whatever it writes numpy.load reads."""
    out = tmp_path / "x.npy"
    r = run("fill", "i", "--shape", shape_arg(shape), "--dtype", dtype, "-o", out)
    if _numpy_accepts(shape, dtype):
        assert r.returncode == 0, r.stderr
        a = load_both(out)
        assert a.shape == shape and a.dtype == np.dtype(dtype)
    else:
        assert r.returncode == 2, r.stderr
        assert "2**63 bytes" in r.stderr.splitlines()[0]
        assert listing(tmp_path) == []


@pytest.mark.parametrize("value,want", [
    ("0x10", 16), ("0X1f", 31), ("0o17", 15), ("0b101", 5), ("1_000", 1000),
    ("0x_ff", 255), ("-0x10", -16), ("+7", 7), ("0", 0), ("00", 0), ("0_0", 0),
    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -2**63),
    ("-0b1", -1), ("1_0.5", 10.5), ("1e3", 1000.0), ("2.5", 2.5), (".5", 0.5),
    ("5.", 5.0), ("1_0e1_0", 1e11), ("inf", math.inf), ("-Infinity", -math.inf),
    ("True", True), ("False", False),
])
def test_define_takes_python_literals(tmp_path, value, want):
    """-D values read as Python reads the literal: integers (any base, with
    underscores) stay integers -- the expression computes in int64."""
    out = tmp_path / "x.npy"
    dtype = "int64" if isinstance(want, int) else "float64"
    r = run("fill", "a + i * 0", "-D", f"a={value}", "--shape", "2", "--dtype", dtype,
            "-o", out)
    assert r.returncode == 0, r.stderr
    assert np.load(out).tolist() == [want, want]
    # The same parameter from Python: the same value and type.
    assert np.array_equal(parfill.populate("a + i * 0", 2, np.dtype(dtype),
                                           params={"a": eval(value.replace("Infinity", "inf"),
                                                             {"inf": math.inf})}),
                          np.load(out))


def test_define_integer_stays_an_integer(tmp_path):
    """0x10 used to be read as a float: a // 3 must be integer floor division
    and the result int64-exact for large values."""
    out = tmp_path / "x.npy"
    r = run("fill", "a - 1 + i", "-D", "a=0x7fff_ffff_ffff_ffff", "--shape", "1",
            "--dtype", "int64", "-o", out)
    assert r.returncode == 0, r.stderr
    assert np.load(out).tolist() == [2**63 - 2]


@pytest.mark.parametrize("value,words", [
    ("99999999999999999999", "does not fit in int64"),
    ("9223372036854775808", "does not fit in int64"),
    ("-9223372036854775809", "does not fit in int64"),
    ("0x10000000000000000", "does not fit in int64"),
    ("1" + "0" * 40, "does not fit in int64"),
    ("010", "leading zeros"),
    ("1__0", "not an integer"), ("_1", "not an integer"), ("1_", "not an integer"),
    ("0x", "not an integer"), ("0b2", "not an integer"), ("0x1p3", "not an integer"),
    ("1e999", "out of range"), ("nan(1)", "not an integer"), ("1e", "not an integer"),
    ("", "not an integer"), (" 1", "not an integer"), ("0o8", "not an integer"),
])
def test_define_bad_values_are_usage_errors(tmp_path, value, words):
    r = run("fill", "a + i", "-D", f"a={value}", "--shape", "2", "-o", tmp_path / "x.npy")
    assert r.returncode == 2, r.stderr
    first = r.stderr.splitlines()[0]
    assert words in first and "-D a" in first, r.stderr  # names the parameter
    assert "usage:" in r.stderr
    assert listing(tmp_path) == []


def test_seed_takes_python_literals(tmp_path):
    seed = 2**127 + 2**64 + 5
    out = tmp_path / "u.npy"
    r = run("fill", "uniform()", "--shape", "100", "-D", f"seed={hex(seed)}", "-o", out)
    assert r.returncode == 0, r.stderr
    want = np.random.Generator(np.random.Philox(key=seed)).random(100)
    assert np.array_equal(np.load(out), want)
    r = run("fill", "uniform()", "--shape", "10", "-D", f"seed={hex(2**128)}", "-o",
            tmp_path / "v.npy")
    assert r.returncode == 2 and "2**128" in r.stderr


@contextlib.contextmanager
def _world_dir():
    """A directory that an unprivileged user may enter but not write."""
    d = tempfile.mkdtemp(prefix="parfill-cli-")
    try:
        os.chmod(d, 0o755)
        yield Path(d)
    finally:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


def test_no_permission():
    with _world_dir() as d, _world_dir() as bindir:
        out = d / "x.npy"
        if os.geteuid() == 0:
            # root may write anywhere: run as nobody in a root-owned 0755
            # directory. The checkout's own directories may be closed to
            # nobody (a clone under `mktemp -d` or /root), so nobody runs a
            # copy of the binary (linked statically with libparfill) from a
            # world-readable directory, with cwd "/".
            exe = bindir / "parfill"
            shutil.copy2(PARFILL, exe)
            os.chmod(exe, 0o755)
            r = subprocess.run([str(exe), "fill", "i", "--shape", "10", "-o", str(out)],
                               capture_output=True, text=True, timeout=120, cwd="/",
                               user=65534, group=65534, extra_groups=[])
        else:
            os.chmod(d, 0o555)
            r = run("fill", "i", "--shape", "10", "-o", out)
            os.chmod(d, 0o755)
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Permission denied" in lines[0], r.stderr
        assert listing(d) == []


def _limit_file_size(limit):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_file_size_limit(tmp_path):
    """`ulimit -f`: SIGXFSZ is ignored and the limit reported as EFBIG before any work."""
    out = tmp_path / "x.npy"
    t0 = time.perf_counter()
    # 100,000,000 float64 = 800 MB of heavy work: it must fail before doing it.
    r = run("fill", "sin(sin(sin(i)))", "--shape", "100000000", "-o", out,
            preexec_fn=_limit_file_size(1 << 20))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0], r.stderr
    assert time.perf_counter() - t0 < 5
    assert listing(tmp_path) == []
    # Within the limit it works.
    r = run("fill", "i", "--shape", "1000", "-o", out, preexec_fn=_limit_file_size(1 << 20))
    assert r.returncode == 0, r.stderr


@contextlib.contextmanager
def _small_filesystem(size="1m"):
    """A 1 MiB tmpfs, if this process may mount one; else None."""
    d = tempfile.mkdtemp(prefix="parfill-full-")
    mounted = False
    try:
        if os.geteuid() == 0:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                                      "parfill-test", d], capture_output=True).returncode == 0
        yield Path(d) if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", d], check=False)
        os.rmdir(d)


def test_disk_full(tmp_path):
    with _small_filesystem() as d:
        if d is not None:
            out = d / "x.npy"
            t0 = time.perf_counter()
            r = run("fill", "sin(sin(sin(i)))", "--shape", "100000000", "-o", out)
            assert r.returncode == 1, r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "No space left on device" in lines[0], r.stderr
            assert time.perf_counter() - t0 < 5  # reported before the work
            assert listing(d) == []
            # A file that fits is fine there.
            r = run("fill", "i", "--shape", "1000", "-o", out)
            assert r.returncode == 0, r.stderr
            assert np.array_equal(np.load(out), np.arange(1000.0))
            out.unlink()
        else:
            # Cannot mount here: the file size limit stands in for a full disk.
            out = tmp_path / "x.npy"
            r = run("fill", "i", "--shape", "1000000", "-o", out,
                    preexec_fn=_limit_file_size(1 << 20))
            assert r.returncode == 1 and "File too large" in r.stderr
            assert listing(tmp_path) == []


def test_read_only_filesystem():
    with _small_filesystem() as d:
        if d is None:
            pytest.skip("cannot mount a tmpfs here (test_no_permission covers EACCES)")
        assert subprocess.run(["mount", "-o", "remount,ro", str(d)]).returncode == 0
        r = run("fill", "i", "--shape", "10", "-o", d / "x.npy")
        assert r.returncode == 1
        assert "Read-only file system" in r.stderr
        assert listing(d) == []


# ---------------------------------------------------------------- signals

SLOW_EXPR = " + ".join(f"sin(i*0.001 + {k})" for k in range(300))
# About 7 s of work on one worker here: a signal lands in the middle of it.
SLOW_ARGS = ["fill", SLOW_EXPR, "--shape", "10000000", "--dtype", "float32",
             "--workers", "1"]


def _default_signals():
    """The child starts with default dispositions for the signals the tests
    send: a suite started with SIGINT ignored (nohup, a background job) would
    pass that on, and parfill rightly keeps an inherited SIG_IGN."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                signal.SIGALRM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)


def _start(args, env=None, **kw):
    return subprocess.Popen([str(PARFILL), *map(str, args)], preexec_fn=_default_signals,
                            env=env, **kw)


def _wait_writing(d, proc, timeout=20.0):
    """Until parfill holds a file open in directory d: the temporary file,
    named or not (an O_TMPFILE shows as 'd/#123 (deleted)')."""
    deadline = time.monotonic() + timeout
    prefix = str(d) + "/"
    while time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except FileNotFoundError:
            fds = []
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith(prefix):
                    return
            except OSError:
                pass
        if proc.poll() is not None:
            pytest.fail(f"parfill ended early: {proc.returncode}")
        time.sleep(0.01)
    pytest.fail("parfill never opened a file in the directory")


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _env(named):
    """named=True: the named temporary file (PARFILL_NAMED_TEMP=1), the path
    taken where the filesystem has no O_TMPFILE; False: the default."""
    env = dict(os.environ)
    env.pop("PARFILL_NAMED_TEMP", None)
    if named:
        env["PARFILL_NAMED_TEMP"] = "1"
    return env


def _has_o_tmpfile(d):
    try:
        fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_removes_temporary_file(tmp_path, sig, named):
    out = tmp_path / "x.npy"
    proc = _start([*SLOW_ARGS, "-o", out], env=_env(named), stderr=subprocess.PIPE,
                  text=True)
    try:
        _wait_writing(tmp_path, proc)
        if named:
            assert any(n.endswith(".tmp") for n in listing(tmp_path))
        else:
            assert listing(tmp_path) == []  # nothing visible while writing
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert time.monotonic() - t0 < 2.0
        assert proc.returncode == 130
        assert "interrupted" in proc.stderr.read()
    finally:
        _stop(proc)
    assert listing(tmp_path) == []  # hidden files included


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM,
                                 signal.SIGRTMIN + 3])
def test_terminating_signal_removes_file_and_ends_by_it(tmp_path, sig, named):
    """Other catchable signals: the file is removed, then parfill dies of
    the signal itself (the parent sees it killed by that signal)."""
    out = tmp_path / "x.npy"
    proc = _start([*SLOW_ARGS, "-o", out], env=_env(named), stderr=subprocess.PIPE)
    try:
        _wait_writing(tmp_path, proc)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert time.monotonic() - t0 < 2.0
        assert proc.returncode == -sig
    finally:
        _stop(proc)
    assert listing(tmp_path) == []


def test_sigkill_leaves_nothing(tmp_path):
    """The file is written unnamed (O_TMPFILE) and linked into place only
    when complete: even an uncatchable kill leaves no file."""
    if not _has_o_tmpfile(tmp_path):
        pytest.skip("no O_TMPFILE on this filesystem (the named fallback is used)")
    for force in (False, True):
        out = tmp_path / "x.npy"
        args = [*SLOW_ARGS, "-o", out] + (["--force"] if force else [])
        proc = _start(args, env=_env(False), stderr=subprocess.DEVNULL)
        try:
            _wait_writing(tmp_path, proc)
            time.sleep(0.3)
            assert listing(tmp_path) == []
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL
        finally:
            _stop(proc)
        assert listing(tmp_path) == []


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_progress_into_a_closed_pipe(tmp_path, named):
    """`parfill fill ... --progress 2>&1 | head -c 20`: SIGPIPE is ignored and
    the failed progress writes end the bar, not the fill: the file is
    complete and nothing else is left."""
    out = tmp_path / "x.npy"
    args = ["fill", SLOW_EXPR, "--shape", "4000000", "--dtype", "float32",
            "--workers", "1", "--progress", "-o", out]
    proc = _start(args, env=_env(named), stderr=subprocess.PIPE)
    try:
        first = proc.stderr.read(20)  # the first bar line is mid-write
        assert first.startswith(b"  0%") or first[:3].strip().isdigit(), first
        proc.stderr.close()  # the reader goes away: later writes get EPIPE
        time.sleep(0.2)
        proc.send_signal(signal.SIGPIPE)  # an explicit one is ignored too
        assert proc.wait(timeout=60) == 0
    finally:
        _stop(proc)
    assert listing(tmp_path) == ["x.npy"]
    a = load_both(out)
    assert a.shape == (4000000,) and a.dtype == np.float32
    for i in (0, 1234567, 3999999):  # values, spot-checked
        ref = sum(math.sin(i * 0.001 + k) for k in range(300))
        assert abs(float(a[i]) - ref) <= 1e-4 * max(1.0, abs(ref)), i


# ---------------------------------------------------------------- progress

def test_progress_to_a_pipe(tmp_path):
    out = tmp_path / "x.npy"
    r = run("fill", "i", "--shape", "1000x1000", "--progress", "-o", out)
    assert r.returncode == 0, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert re.match(r"100% \[=+\] 7\.63 MiB/7\.63 MiB .*/s  in \d+:\d\d$", last), last
    for flag in ([], ["--no-progress"], ["--progress", "--no-progress"]):
        r = run("fill", "i", "--shape", "1000x1000", "--force", *flag, "-o", out)
        assert r.returncode == 0 and r.stderr == ""


def test_progress_on_a_terminal(tmp_path):
    """stderr a terminal: the bar is on by default, redrawn in place."""
    out = tmp_path / "x.npy"
    for flags, shown in (([], True), (["--no-progress"], False)):
        master, slave = pty.openpty()
        proc = subprocess.Popen([str(PARFILL), "fill", "sin(i)", "--shape", "3000000",
                                 "--force", *flags, "-o", str(out)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=slave)
        os.close(slave)
        data = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
        os.close(master)
        assert proc.wait(timeout=30) == 0
        text = data.decode()
        if shown:
            assert "\r" in text and "100%" in text, text
        else:
            assert text == ""


# ---------------------------------------------------------------- help, version

def test_help():
    r = run("--help")
    assert r.returncode == 0 and r.stderr == ""
    for option in ("--shape", "--dtype", "-D NAME=VALUE", "--workers", "--schedule",
                   "--chunk", "--progress", "--no-progress", "--force", "-o, --output",
                   "--help", "--version", "exit status", "examples:"):
        assert option in r.stdout, option
    assert run("fill", "--help").stdout == r.stdout
    assert run("-h").stdout == r.stdout


def test_uniform_with_big_seed(tmp_path):
    """A seed beyond int64 reaches Philox's 128-bit key: NumPy's stream."""
    seed = 2**127 + 2**64 + 5
    out = tmp_path / "u.npy"
    r = run("fill", "uniform()", "--shape", "1000", "-D", f"seed={seed}", "-o", out)
    assert r.returncode == 0, r.stderr
    want = np.random.Generator(np.random.Philox(key=seed)).random(1000)
    assert np.array_equal(load_both(out), want)
    r = run("fill", "normal(2)", "--shape", "30x40", "-D", "seed=5", "--workers", "2",
            "-o", out, "--force")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(load_both(out),
                          parfill.random((30, 40), "normal", seed=5, stream=2))
    r = run("fill", "uniform()", "--shape", "10", "-D", f"seed={2**128}", "-o",
            tmp_path / "v.npy")
    assert r.returncode == 2 and "seed" in r.stderr
    assert "uniform()" in run("--help").stdout


def test_help_examples_run(tmp_path):
    """Every `parfill fill` example in --help works as written."""
    examples, current = [], None
    for line in run("--help").stdout.splitlines():
        if line.startswith("  parfill fill "):
            current = line.strip()
        elif current is not None:
            current += " " + line.strip()
        if current is not None and not current.endswith("\\"):
            examples.append(current)
            current = None
        elif current is not None:
            current = current[:-1]
    assert len(examples) >= 3
    for cmd in examples:
        cmd = cmd.replace("20000x20000", "200x200")  # 3.2 GB: not in a test
        r = subprocess.run(cmd.replace("parfill", str(PARFILL), 1), shell=True,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (cmd, r.stderr)
    assert len(list(tmp_path.iterdir())) == len(examples)
    for f in tmp_path.iterdir():
        np.load(f, mmap_mode="r")


def test_version():
    r = run("--version")
    header = (ROOT / "include" / "parfill.h").read_text()
    version = re.search(r'#define PF_VERSION "([^"]+)"', header).group(1)
    assert r.returncode == 0 and r.stdout == f"parfill {version}\n"
    assert run("-V").stdout == r.stdout


def test_venv_command():
    venv = ROOT / ".venv" / "bin" / "parfill"
    if not venv.exists():
        pytest.skip("no .venv/bin/parfill (run `make`)")
    r = subprocess.run([str(venv), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("parfill ")


# ---------------------------------------------------------------- install

USE_C = r"""
#include <parfill.h>
#include <stdio.h>
int main(int argc, char **argv) {
  pf_expr *e;
  pf_error err;
  int64_t shape[2] = {3, 4};
  if (pf_expr_compile(&e, "i*10 + j", 2, NULL, 0, &err) != 0) return 1;
  int rc = pf_npy_fill_expr(argv[1], e, PF_INT32, 2, shape, NULL, 0, &err);
  pf_expr_free(e);
  if (rc != 0) fprintf(stderr, "%s\n", err.message);
  return rc != 0;
}
"""


def test_make_install_and_pkg_config(tmp_path):
    """`make install PREFIX=...` installs the command, header, libraries and a
    parfill.pc that links a program both ways (shared and static)."""
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config is not installed")
    prefix = tmp_path / "prefix"
    r = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for f in ("bin/parfill", "include/parfill.h", "lib/libparfill.a", "lib/libparfill.so",
              "lib/pkgconfig/parfill.pc"):
        assert (prefix / f).exists(), f
    r = subprocess.run([str(prefix / "bin" / "parfill"), "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("parfill ")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    src = tmp_path / "use.c"
    src.write_text(USE_C)
    for kind, flags in (("shared", ["--libs"]), ("static", ["--static", "--libs"])):
        pc = subprocess.run(["pkg-config", "--cflags", *flags, "parfill"], env=env,
                            capture_output=True, text=True, check=True).stdout.split()
        exe = tmp_path / f"use-{kind}"
        cmd = ["cc", str(src), "-o", str(exe), *pc]
        cmd += ["-static"] if kind == "static" else [f"-Wl,-rpath,{prefix / 'lib'}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out = tmp_path / f"{kind}.npy"
        r = subprocess.run([str(exe), str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(np.load(out), np.arange(3)[:, None] * 10 + np.arange(4))


# ---------------------------------------------------------------- memory, README

def _peak_rss_kib(args):
    """VmHWM of the parfill process, polled until it exits. (wait4's
    ru_maxrss would include this Python process: Linux keeps the high-water
    mark of the image before exec.)"""
    proc = subprocess.Popen([str(PARFILL), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:") and "parfill" in open(
                            f"/proc/{proc.pid}/comm").read():
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.0005)
    assert proc.returncode == 0
    assert peak > 0, "exited before it could be measured"
    return peak


def test_memory_does_not_grow_with_the_file(tmp_path):
    small = _peak_rss_kib(["fill", "sin(i*0.001)*j", "--shape", "2000x1000",  # 16 MB
                           "-o", tmp_path / "small.npy"])
    big = _peak_rss_kib(["fill", "sin(i*0.001)*j", "--shape", "8000x8000",  # 512 MB
                         "-o", tmp_path / "big.npy"])
    assert big < 16 * 1024, big
    assert big - small < 4 * 1024, (small, big)


def test_readme_examples_run(tmp_path):
    """The `parfill fill` lines of the README's command section work as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The parfill command", 1)[1].split("\n## ", 1)[0]
    examples = [line.split("#")[0].strip() for line in section.splitlines()
                if line.startswith("parfill fill ")]
    assert len(examples) >= 3
    for cmd in examples:
        cmd = cmd.replace("20000x20000", "200x200")  # 3.2 GB: not in a test
        r = subprocess.run(cmd.replace("parfill", str(PARFILL), 1), shell=True,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (cmd, r.stderr)
    i, j = np.indices((300, 400))
    assert np.array_equal(np.load(tmp_path / "w.npy"), np.where(i < j, 1.5, -2))
