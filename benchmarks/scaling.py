"""Strong scaling: parfill and the best peer at 1, 2, 4, 8, 16 workers.

Runs the "uniform" (~15 us per element) and "mandelbrot" (800x600, max 200
iterations) workloads of benchmarks.workloads with

  * parfill.populate(func, shape, dtype, workers=W) -- default schedule
    ("dynamic") and backend ("auto"), i.e. what a user gets;
  * the peers at the same W: the article's approaches 1 and 2 and joblib
    (approach 3 is left out: its per-element queue traffic makes it the slowest
    by far at every size, see `python -m benchmarks python`), of which the
    fastest at each W is reported as "best peer";

and prints one table (median of --repeat runs, speedup vs the sequential loop,
parfill's ratio to the best peer, peak PSS in MiB) plus, with --json, every
run. Worker counts above the machine's CPUs are run anyway (oversubscribed) and
flagged. Meant for a many-core machine with nothing else running:

    .venv/bin/python -m benchmarks.scaling [--workers 1,2,4,8,16] [--repeat 3]
                                          [--json scaling.json] [--quick] [--no-memory]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from . import harness
from .harness import Result, result_from
from .peers import Method, python_methods
from .workloads import (
    CALIBRATION,
    Workload,
    mandelbrot_workload,
    uniform_workload,
)

SUITE = "scaling"
PEERS = ("article1", "article2", "joblib")


def _workloads(quick: bool) -> list[Workload]:
    if quick:
        return [uniform_workload(400), mandelbrot_workload(80, 60, 100)]
    return [uniform_workload(), mandelbrot_workload()]


def _parfill_default(w: Workload, workers: int) -> np.ndarray:
    import parfill

    return parfill.populate(w.func, w.shape, w.dtype, workers=workers)


def _methods() -> tuple[Method, list[Method]]:
    all_methods = python_methods(include_queue=False, schedules=())
    seq = next(m for m in all_methods if m.role == "sequential")
    peers = [m for m in all_methods if m.key in PEERS]
    parfill = Method("parfill", "parfill (defaults)", "parfill", _parfill_default)
    return seq, peers + [parfill]


def run(worker_counts: Sequence[int], repeat: int, quick: bool, memory: bool) -> list[Result]:
    seq, methods = _methods()
    results: list[Result] = []
    for w in _workloads(quick):
        reference = w.reference()

        def check(out: np.ndarray, reference: np.ndarray = reference) -> bool:
            return out.shape == reference.shape and np.array_equal(out, reference)

        print(f"-- {w.describe()}", flush=True)
        base = result_from(SUITE, w.name, seq.label, seq.role, w.size, 1,
                           lambda: seq.call(w, 1), check=check, repeat=repeat, memory=memory)
        for workers in worker_counts:
            rows = [Result(**{**base.__dict__, "workers": workers, "times": list(base.times)})]
            rows += harness.compare(
                [harness.Entry(Result(SUITE, w.name, m.label, m.role, w.size, workers),
                               lambda m=m, k=workers: m.call(w, k), check, m.cold)
                 for m in methods], repeat=repeat, memory=memory)
            for r in rows[1:]:
                print(f"   W={workers:<3d} {r.method:<36s} {harness._fmt_time(r.median):>10}"
                      + (f"  {r.error}" if r.error else ""), flush=True)
            # finalize groups by (suite, workload): give each worker count its own group
            for r in rows:
                r.workload = f"{w.name}@{workers}"
            harness.finalize(rows)
            for r in rows:
                r.workload = w.name
            results.extend(rows)
    return results


def table(results: Sequence[Result], cpus: int) -> str:
    lines = [f"{'workload':<12} {'W':>3}  {'parfill':>10} {'speedup':>8}  "
             f"{'best peer':>10} {'speedup':>8}  {'peer':<34} {'parfill/peer':>12}  "
             f"{'MiB parfill':>11} {'MiB peer':>9}"]
    keys: list[tuple[str, int]] = []
    for r in results:
        if (r.workload, r.workers) not in keys:
            keys.append((r.workload, r.workers))
    for workload, workers in keys:
        rows = [r for r in results if (r.workload, r.workers) == (workload, workers)]
        ours = next((r for r in rows if r.role == "parfill"), None)
        peers = [r for r in rows if r.role == "peer" and r.median and r.correct]
        best = min(peers, key=lambda r: r.median) if peers else None
        bad = [r for r in rows if r.error or not r.correct]

        def t(r: Result | None) -> str:
            return harness._fmt_time(r.median if r else None)

        def x(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}x"

        def mib(r: Result | None) -> str:
            return "-" if r is None or r.peak_mib is None else f"{r.peak_mib:.1f}"

        flag = "  (oversubscribed)" if workers > cpus else ""
        flag += "  !!! " + ", ".join(f"{r.method}: {r.error or 'MISMATCH'}" for r in bad) \
            if bad else ""
        lines.append(
            f"{workload:<12} {workers:>3}  {t(ours):>10} {x(ours and ours.speedup):>8}  "
            f"{t(best):>10} {x(best and best.speedup):>8}  {(best.method if best else '-'):<34} "
            f"{x(ours and ours.ratio_vs_best_peer):>12}  {mib(ours):>11} {mib(best):>9}{flag}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2,4,8,16",
                   help="comma-separated worker counts (default 1,2,4,8,16)")
    harness.add_run_options(p, repeat=3, per="point")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the extra PSS-sampled run per point")
    args = p.parse_args(argv)
    try:
        counts = [int(v) for v in args.workers.split(",") if v.strip()]
    except ValueError:
        p.error(f"--workers: expected comma-separated integers, got {args.workers!r}")
    if not counts or min(counts) < 1 or args.repeat < 1:
        p.error("worker counts and --repeat must be >= 1")

    cpus = harness.default_workers()
    print(f"scaling: {cpus} usable CPUs, workers {counts}, median of {args.repeat} runs; "
          f"calibration {CALIBRATION['iterations']} loop trips = "
          f"{CALIBRATION['measured_us']} us", flush=True)
    results = run(counts, args.repeat, args.quick, not args.no_memory)
    print()
    print(table(results, cpus))
    print("\nspeedup = sequential median / median; parfill/peer = best peer median / parfill "
          "median (> 1: parfill faster); MiB = peak PSS of all processes minus before.")
    if args.json:
        harness.write_json(args.json, SUITE, results,
                           {"calibration": dict(CALIBRATION), "worker_counts": counts})
        print(f"wrote {args.json}")
    bad = [r for r in results if r.error or not r.correct]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
