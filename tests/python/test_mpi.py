"""``mpiexec -n R parfill-mpi fill`` (build/parfill-mpi, SPEC section 8 "MPI").

Every file R ranks write must be byte for byte the file the single-process
``parfill fill`` writes (itself tested against NumPy in test_cli.py; here
``uniform()`` is also checked against NumPy's Philox directly), for R = 1..4
with the real ``mpiexec --oversubscribe``. The environment knobs
PARFILL_MPI_ALIGN / PARFILL_MPI_BLOCK (cli/mpi.c) give small arrays many
slabs and rounds, so uneven splits are reached without gigabytes;
PARFILL_MPI_TRACE=1 makes each rank print its slab, so the decomposition
itself is checked. Every failure must end every rank with one status, say
one message, and leave the directory as it was (no OUT.npy, no temporary
file) -- except a SIGKILL of rank 0 itself, which leaves the documented
``.OUT.npy.XXXXXX.tmp``. mpiexec runs in its own session; whatever a
test leaves running is killed by the fixture.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PARFILL = ROOT / "build" / "parfill"
PARFILL_MPI = ROOT / "build" / "parfill-mpi"
MPIEXEC = shutil.which("mpiexec")

# Root may run Open MPI only when it says so; -q keeps mpiexec's own
# "a process returned non-zero" banners out of stderr.
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
KNOBS = ("PARFILL_MPI_ALIGN", "PARFILL_MPI_BLOCK", "PARFILL_MPI_FAIL", "PARFILL_MPI_TRACE")
TEMP = re.compile(r"^\..*\.[A-Za-z0-9]{6}\.tmp$")

pytestmark = pytest.mark.skipif(
    not PARFILL_MPI.exists(),
    reason="build/parfill-mpi not built (no mpicc: `make mpi` installs Open MPI as root)")


@pytest.fixture(autouse=True)
def _requirements():
    if MPIEXEC is None:
        pytest.fail("build/parfill-mpi exists but mpiexec is not on PATH")
    if not PARFILL.exists():
        pytest.fail(f"{PARFILL} is missing: run `make`")


_running: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _reap():
    """Kills every job a test started and left (its own process group)."""
    yield
    while _running:
        p = _running.pop()
        if p.poll() is None:
            with_suppress(os.killpg, p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def with_suppress(f, *args):
    try:
        f(*args)
    except ProcessLookupError:
        pass


def start(n, *args, knobs=None, binary=PARFILL_MPI):
    env = dict(ENV, **(knobs or {}))
    exports = [a for k in KNOBS if k in env for a in ("-x", k)]
    cmd = [MPIEXEC, "-q", "--oversubscribe", "-n", str(n), *exports, str(binary),
           *map(str, args)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    _running.append(p)
    return p


def mpi(n, *args, knobs=None, timeout=90):
    p = start(n, *args, knobs=knobs)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"mpiexec -n {n} {args} hung")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def single(*args):
    return subprocess.run([str(PARFILL), *map(str, args)], capture_output=True, text=True,
                          timeout=90)


def errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("parfill:")]


def reference(tmp_path, expr, shape, dtype, *extra):
    ref = tmp_path / "ref.npy"
    if ref.exists():
        ref.unlink()
    r = single("fill", expr, "--shape", shape, "--dtype", dtype, *extra, "-o", ref)
    assert r.returncode == 0, r.stderr
    return ref.read_bytes()


CASES = [
    ("uniform()", "1000x1000", "float64", ()),
    ("normal(3) * 2 + uniform()", "777x333", "float32", ("-D", "seed=12345")),
    ("i*n1 + j", "1001x999", "int32", ()),
    ("sin(i*0.01)*cos(j*0.02) + k", "37x41x43", "float64", ()),
    ("idx % 7 == 3", "100003", "bool", ()),
    ("idx * 0.25 - size", "30011", "clongdouble", ()),
    ("uniform(2)", "100001", "float16", ()),
    ("where(i > j, i - j, j * 3)", "250x260", "int64", ()),
]

def same_file(got, want, dtype):
    """Byte for byte -- but for (c)longdouble only the 10 bytes of each
    80-bit value: the 6 padding bytes after it hold whatever the library's
    scratch held, in the one-process file too (two `parfill fill` runs
    differ there)."""
    if np.dtype(dtype).kind not in "fc" or np.finfo(dtype).nmant != 63:
        return got == want
    if len(got) != len(want) or got[:128] != want[:128]:
        return False
    g = np.frombuffer(got[128:], np.uint8).reshape(-1, 16)
    w = np.frombuffer(want[128:], np.uint8).reshape(-1, 16)
    return np.array_equal(g[:, :10], w[:, :10])


SMALL = {"PARFILL_MPI_ALIGN": "64", "PARFILL_MPI_BLOCK": "4096"}


@pytest.mark.parametrize("expr,shape,dtype,extra", CASES, ids=[c[0] for c in CASES])
def test_same_bytes_as_one_process(tmp_path, expr, shape, dtype, extra):
    ref = reference(tmp_path, expr, shape, dtype, *extra)
    for n in (1, 2, 3, 4):
        for knobs in (None, SMALL):
            out = tmp_path / f"out{n}.npy"
            r = mpi(n, "fill", expr, "--shape", shape, "--dtype", dtype, *extra, "-o", out,
                    knobs=knobs)
            assert r.returncode == 0 and r.stderr == "", (n, knobs, r.stderr)
            assert same_file(out.read_bytes(), ref, dtype), (n, knobs)
            out.unlink()
    assert sorted(os.listdir(tmp_path)) == ["ref.npy"]


def test_uniform_is_numpys_philox(tmp_path):
    out = tmp_path / "u.npy"
    r = mpi(3, "fill", "uniform()", "--shape", "300x500", "-D", "seed=7", "-o", out,
            knobs=SMALL)
    assert r.returncode == 0, r.stderr
    want = np.random.Generator(np.random.Philox(key=7)).random(300 * 500).reshape(300, 500)
    assert np.array_equal(np.load(out), want)


def slabs(stderr):
    rows = re.findall(r"rank (\d+) of (\d+): bytes \[(\d+), (\d+)\) of (\d+), align (\d+), "
                      r"block (\d+), rounds (\d+)", stderr)
    return sorted(tuple(map(int, r)) for r in rows)


@pytest.mark.parametrize("shape,dtype,knobs", [
    ("1000x1001", "float64", {}),                 # st_blksize cuts
    ("99991", "float32", {"PARFILL_MPI_ALIGN": "4096", "PARFILL_MPI_BLOCK": "8192"}),
    ("12345", "complex128", {"PARFILL_MPI_ALIGN": "96", "PARFILL_MPI_BLOCK": "1000"}),
    ("3", "float64", {"PARFILL_MPI_ALIGN": "64"}),  # fewer elements than ranks
])
def test_slabs_are_contiguous_aligned_and_cover_the_file(tmp_path, shape, dtype, knobs):
    out = tmp_path / "x.npy"
    r = mpi(4, "fill", "idx", "--shape", shape, "--dtype", dtype, "-o", out,
            knobs=dict(knobs, PARFILL_MPI_TRACE="1"))
    assert r.returncode == 0, r.stderr
    rows = slabs(r.stderr)
    assert [row[0] for row in rows] == [0, 1, 2, 3]
    size = out.stat().st_size
    item = np.dtype(dtype).itemsize
    blksize = int(knobs.get("PARFILL_MPI_ALIGN", out.stat().st_blksize))
    align = np.lcm(blksize, item)
    header = size - np.prod([int(s) for s in shape.split("x")]) * item
    assert rows[0][2] == 0 and rows[-1][3] == size
    rounds = 0
    for (rank, n, lo, hi, total, al, block, rnds), nxt in zip(rows, rows[1:] + [None]):
        assert n == 4 and total == size and al == align and block % align == 0
        assert nxt is None or nxt[2] == hi                      # contiguous
        if rank > 0:
            assert lo == size or lo % align == 0 and lo >= header   # aligned cut
            assert (lo - header) % item == 0                        # on an element
        rounds = max(rounds, -(-(hi - lo) // block))
    assert all(row[7] == rounds for row in rows)                # same collective count
    # The file itself is the one-process file.
    assert out.read_bytes() == reference(tmp_path, "idx", shape, dtype)


@pytest.mark.parametrize("shape", ["0", "0x5", "5x0x3", "1", "2", "3", "7"])
@pytest.mark.parametrize("knobs", [None, {"PARFILL_MPI_ALIGN": "64", "PARFILL_MPI_BLOCK": "64"}],
                         ids=["blksize", "align64"])
def test_tiny_and_empty_arrays(tmp_path, shape, knobs):
    ref = reference(tmp_path, "idx * 1.5 + uniform()", shape, "float64")
    out = tmp_path / "out.npy"
    r = mpi(4, "fill", "idx * 1.5 + uniform()", "--shape", shape, "-o", out, knobs=knobs)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ref


def test_runs_without_mpiexec(tmp_path):
    out = tmp_path / "solo.npy"
    r = subprocess.run([str(PARFILL_MPI), "fill", "uniform() + i", "--shape", "400x300",
                        "-o", str(out)], capture_output=True, text=True, env=ENV, timeout=90)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == reference(tmp_path, "uniform() + i", "400x300", "float64")


def test_progress_reports_the_whole_job_once(tmp_path):
    out = tmp_path / "p.npy"
    r = mpi(3, "fill", "uniform()", "--shape", "1000x1000", "--progress", "-o", out)
    assert r.returncode == 0, r.stderr
    final = [line for line in r.stderr.splitlines() if line.startswith("100%")]
    assert len(final) == 1 and "7.63 MiB/7.63 MiB" in final[0], r.stderr


def test_help_is_printed_once():
    r = mpi(3, "--help")
    assert r.returncode == 0 and r.stdout.count("usage: parfill fill") == 1


# ---------------------------------------------------------------- failures

def assert_nothing_left(tmp_path, before=()):
    assert sorted(os.listdir(tmp_path)) == sorted(before)


@pytest.mark.parametrize("n", [1, 3])
def test_bad_expression_exits_2_with_one_caret(tmp_path, n):
    r = mpi(n, "fill", "sin(x) + 1", "--shape", "10", "-o", tmp_path / "a.npy")
    s = single("fill", "sin(x) + 1", "--shape", "10", "-o", tmp_path / "a.npy")
    assert r.returncode == 2 and s.returncode == 2
    assert r.stderr == s.stderr                       # message and caret, once
    assert len(errors(r.stderr)) == 1 and "^" in r.stderr
    assert_nothing_left(tmp_path)


def test_bad_option_exits_2_once(tmp_path):
    r = mpi(4, "fill", "i", "--shape", "10", "--bogus", "-o", tmp_path / "a.npy")
    assert r.returncode == 2
    assert errors(r.stderr) == ["parfill: error: unknown option '--bogus'"]
    assert r.stderr.count("usage:") == 1
    assert_nothing_left(tmp_path)


def test_run_time_error_is_the_first_failing_elements(tmp_path):
    """Element B (late in rank 0's slab) and element A > B (rank 1's first
    block) fail at different operators; rank 1 fails rounds earlier, but the
    error must be B's, as in one process."""
    size = 4000
    b, a = 1000, 2010  # in different 1024-element blocks of the VM
    expr = f"2 ** where(idx == {a}, -1, 0) + 3 ** where(idx == {b}, -1, 0)"
    s = single("fill", expr, "--shape", size, "--dtype", "int64", "-o", tmp_path / "s.npy")
    assert s.returncode == 2 and s.stderr.splitlines()[2].index("^") > 20, s.stderr
    r = mpi(2, "fill", expr, "--shape", size, "--dtype", "int64", "-o", tmp_path / "m.npy",
            knobs={"PARFILL_MPI_ALIGN": "64", "PARFILL_MPI_BLOCK": "256"})
    assert r.returncode == 2 and r.stderr == s.stderr
    assert_nothing_left(tmp_path)


def test_existing_output_is_refused_before_any_write(tmp_path):
    out = tmp_path / "x.npy"
    out.write_bytes(b"precious")
    os.utime(out, (1, 1))
    r = mpi(3, "fill", "i", "--shape", "100000", "-o", out)
    assert r.returncode == 2
    assert errors(r.stderr) == [f"parfill: error: '{out}' exists (use --force to replace it)"]
    assert out.read_bytes() == b"precious" and out.stat().st_mtime == 1
    assert_nothing_left(tmp_path, ["x.npy"])
    r = mpi(3, "fill", "i", "--shape", "100000", "--force", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == reference(tmp_path, "i", "100000", "float64")


def test_force_never_replaces_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    r = mpi(2, "fill", "i", "--shape", "10", "--force", "-o", tmp_path / "d")
    assert r.returncode == 2 and len(errors(r.stderr)) == 1
    assert "not a regular file" in r.stderr
    assert_nothing_left(tmp_path, ["d"])


@pytest.mark.parametrize("args,message", [
    (("--shape", "100000000000000"), "cannot reserve 800000000000128 bytes"),
    (("--shape", "10", "--dtype", "int8"), "cannot create a temporary file next to"),
])
def test_io_error_before_the_work(tmp_path, args, message):
    out = tmp_path / ("missing/x.npy" if "int8" in args else "x.npy")
    r = mpi(3, "fill", "i", *args, "-o", out)
    assert r.returncode == 1
    assert len(errors(r.stderr)) == 1 and message in r.stderr, r.stderr
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("rank", [0, 2])
def test_write_error_on_one_rank_fails_every_rank(tmp_path, rank):
    out = tmp_path / "x.npy"
    r = mpi(3, "fill", "uniform()", "--shape", "50000", "-o", out,
            knobs=dict(SMALL, PARFILL_MPI_FAIL=f"write:{rank}:2"))
    assert r.returncode == 1
    assert errors(r.stderr) == [f"parfill: error: cannot write '{out}': "
                                "No space left on device"]
    assert_nothing_left(tmp_path)


def test_killed_rank_fails_the_job_and_rank_0_removes_the_temp(tmp_path):
    out = tmp_path / "x.npy"
    r = mpi(3, "fill", "uniform()", "--shape", "50000", "-o", out,
            knobs=dict(SMALL, PARFILL_MPI_FAIL="kill:1:2"))
    assert r.returncode != 0
    assert_nothing_left(tmp_path)


def test_killed_rank_0_leaves_only_the_documented_temp(tmp_path):
    out = tmp_path / "x.npy"
    r = mpi(3, "fill", "uniform()", "--shape", "50000", "-o", out,
            knobs=dict(SMALL, PARFILL_MPI_FAIL="kill:0:2"))
    assert r.returncode != 0
    left = os.listdir(tmp_path)
    assert len(left) == 1 and TEMP.match(left[0]) and left[0].startswith(".x.npy."), left


def rank_pids(p):
    """rank -> pid of mpiexec's children running parfill-mpi."""
    ranks = {}
    for tid in os.listdir(f"/proc/{p.pid}/task"):
        with open(f"/proc/{p.pid}/task/{tid}/children") as f:
            for pid in map(int, f.read().split()):
                try:
                    if os.path.basename(os.readlink(f"/proc/{pid}/exe")) != "parfill-mpi":
                        continue
                    with open(f"/proc/{pid}/environ", "rb") as e:
                        env = dict(v.split(b"=", 1) for v in e.read().split(b"\0") if b"=" in v)
                except (FileNotFoundError, ProcessLookupError):
                    continue
                rank = env.get(b"OMPI_COMM_WORLD_RANK")
                if rank is None:
                    # Read inside its exec: the new image is named but its
                    # environment not set up yet (empty); the caller polls.
                    continue
                ranks[int(rank)] = pid
    return ranks


def wait_running(p, tmp_path, ranks):
    """Until the ranks write (the temporary file exists)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        pids = rank_pids(p)
        if len(pids) == ranks and any(TEMP.match(n) for n in os.listdir(tmp_path)):
            return pids
        time.sleep(0.02)
    pytest.fail("the job never started writing")


# Slow enough (tiny blocks, a costly expression) to be caught mid-way.
# (A few seconds for the whole 400 MB; it is killed long before.)
SLOW = ("fill", "sin(cos(sin(cos(idx * 1e-3)))) + exp(sin(idx)) * uniform() + "
        "arctan(sinh(cos(idx))) * log1p(normal()**2)", "--shape", "100000000",
        "--dtype", "float32", "--workers", "1")


@pytest.mark.parametrize("how", ["sigkill-rank", "sigint-mpiexec"])
def test_external_kill_mid_fill_leaves_nothing(tmp_path, how):
    out = tmp_path / "x.npy"
    p = start(3, *SLOW, "-o", out, knobs={"PARFILL_MPI_BLOCK": "65536"})
    pids = wait_running(p, tmp_path, 3)
    if how == "sigkill-rank":
        os.kill(pids[1], signal.SIGKILL)
    else:
        os.kill(p.pid, signal.SIGINT)
    try:
        p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the job did not end after a rank was killed")
    assert p.returncode != 0
    assert_nothing_left(tmp_path)
