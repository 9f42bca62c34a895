"""Smoke tests for the benchmark code: correctness and output format, never speed."""
from __future__ import annotations

import json
import mmap
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import harness, main
from benchmarks.workloads import (
    CALIBRATION,
    article_workload,
    flat_function,
    linear_workload,
    mandelbrot_workload,
    uniform_workload,
)
from parfill import _article as article

APPROACHES = [fn for _, _, fn in article.APPROACHES]


def _sequential(f, n, dtype):
    a = np.empty(n, dtype=dtype)
    for k in range(n):
        a[k] = f(k)
    return a


@pytest.mark.parametrize("approach", APPROACHES, ids=[k for k, _, _ in article.APPROACHES])
@pytest.mark.parametrize("n, processes", [(0, 2), (1, 3), (7, 2), (10, 3), (13, 4), (101, 3),
                                          (3, 4)])
def test_article_approach_equals_sequential(approach, n, processes):
    # Sizes not divisible by the process count: the article's version lost the tail.
    b = 2.0
    f = lambda i: i * b**2  # noqa: E731 -- a lambda on purpose: fork must not pickle it
    out = approach(f, n, processes, np.float64)
    assert out.shape == (n,) and out.dtype == np.float64
    assert np.array_equal(out, _sequential(f, n, np.float64))


@pytest.mark.parametrize("approach", APPROACHES, ids=[k for k, _, _ in article.APPROACHES])
def test_article_approach_integer_dtype_and_closure(approach):
    offset = 5
    f = lambda i: (i * 7 + offset) % 251  # noqa: E731
    out = approach(f, 37, 2, np.uint8)
    assert out.dtype == np.uint8
    assert np.array_equal(out, _sequential(f, 37, np.uint8))


def test_chunk_bounds_cover_everything():
    for n in range(0, 30):
        for p in range(1, 6):
            bounds = article.chunk_bounds(n, p)
            assert len(bounds) == p
            assert sum(size for _, size in bounds) == n
            assert all(bounds[c][0] + bounds[c][1] == bounds[c + 1][0] for c in range(p - 1))


def test_queue_approach_on_a_sample():
    f = lambda i: i + 0.25  # noqa: E731
    out = article.populate_array_queue(f, 50, 2, np.float64, indices=range(0, 50, 7))
    assert np.array_equal(out[::7], _sequential(f, 50, np.float64)[::7])


def test_queue_approach_reports_worker_errors():
    def f(i):
        if i == 5:
            raise ValueError("boom")
        return float(i)
    with pytest.raises(RuntimeError, match="element 5"):
        article.populate_array_queue(f, 10, 2, np.float64)


def test_workloads_sequential_equals_reference():
    for w in (article_workload(50), uniform_workload(20, iterations=3),
              linear_workload(20, iterations=3), mandelbrot_workload(9, 7, 30)):
        ref = w.reference()
        assert ref.shape == w.shape and ref.dtype == w.dtype
        assert np.array_equal(w.sequential(), ref)
        flat = w.flat_func
        assert np.array_equal(_sequential(flat, w.size, w.dtype), ref.reshape(-1))
    assert CALIBRATION["iterations"] >= 1


def test_flat_function_3d():
    f = lambda i, j, k: i * 100 + j * 10 + k  # noqa: E731
    flat = flat_function(f, (2, 3, 4))
    assert [flat(k) for k in range(24)] == [f(*idx) for idx in np.ndindex(2, 3, 4)]


def test_pss_sampler_sees_an_allocation():
    with harness.PssSampler() as s:
        # 16 MiB of fresh pages, touched (NumPy's allocator may reuse
        # resident pages an earlier test freed: no growth to see).
        block = mmap.mmap(-1, 16 << 20)
        np.frombuffer(block, np.uint8)[::4096] = 1
        # Two samples taken with the block alive (a loaded machine may
        # not run the sampler thread for a while).
        seen, deadline = s.samples + 2, time.monotonic() + 10
        while s.samples < seen and time.monotonic() < deadline:
            time.sleep(0.005)
        block.close()
    assert s.samples > 0
    assert 8 < s.peak_mib < 64


REQUIRED = {"suite", "workload", "method", "n", "workers", "times", "median", "speedup",
            "ratio_vs_best_peer", "peak_mib", "correct"}


def test_bench_json_has_documented_fields(tmp_path, capsys):
    path = tmp_path / "bench.json"
    status = main(["python", "--quick", "--repeat", "1", "--workers", "2",
                   "--only", "uniform", "--json", str(path)])
    doc = json.loads(path.read_text())
    assert doc["suite"] == "python"
    assert "machine" in doc and "calibration" in doc
    rows = doc["results"]
    assert rows and all(REQUIRED <= set(r) for r in rows)
    by_method = {r["method"]: r for r in rows}
    assert by_method["sequential loop"]["speedup"] == pytest.approx(1.0)
    for r in rows:
        assert r["workload"] == "uniform" and r["n"] == 400 and r["workers"] == 2
        assert r["correct"] is True, r
        assert len(r["times"]) == 1 and r["median"] == r["times"][0]
    assert any(m.startswith("parfill") for m in by_method)
    assert status == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "vs best peer" in out


def test_bench_unknown_suite_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["no-such-suite"])
    assert exc.value.code == 2


def test_suite_registry_loads():
    for name in harness.SUITES:
        module = harness._load_suite(name)
        assert callable(module.run)


def test_finalize_and_table():
    rows = [harness.Result("s", "w", "seq", "sequential", 10, 2, [2.0], 2.0, correct=True),
            harness.Result("s", "w", "peer", "peer", 10, 2, [1.0], 1.0, correct=True),
            harness.Result("s", "w", "ours", "parfill", 10, 2, [0.5], 0.5, correct=True),
            harness.Result("s", "w", "bad", "peer", 10, 2, [0.1], 0.1, correct=False)]
    harness.finalize(rows)
    assert rows[2].speedup == pytest.approx(4.0)
    assert rows[2].ratio_vs_best_peer == pytest.approx(2.0)  # the wrong peer does not count
    table = harness.format_table(rows)
    assert "MISMATCH" in table


def test_plot(tmp_path):
    rows = [harness.Result("s", "w", "seq", "sequential", 10, 2, [2.0], 2.0, correct=True),
            harness.Result("s", "w", "ours", "parfill", 10, 2, [0.5], 0.5, correct=True)]
    harness.finalize(rows)
    harness.plot_results(str(tmp_path / "p.png"), rows)
    with open(tmp_path / "p.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_python_m_benchmarks_runs_from_the_checkout():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(line.split()[0] for line in proc.stdout.splitlines()) == sorted(harness.SUITES)


def test_parfill_bench_runs_the_checkouts_benchmarks(capsys):
    """From a checkout's development install, `python -m parfill bench` is
    `python -m benchmarks` (an installed parfill points there instead:
    test_packaging.test_installed_demo_and_bench_pointer)."""
    from parfill.__main__ import main as parfill_main

    assert parfill_main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert sorted(line.split()[0] for line in out.splitlines()) == sorted(harness.SUITES)
