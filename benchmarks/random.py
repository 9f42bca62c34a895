"""Suite "random": parfill.random vs NumPy's generators.

Workloads (n = 10**8 by default, ``--n`` to change, ``--quick`` 10**6):

* ``uniform`` -- n float64 in [0, 1). Baseline: NumPy's
  ``Generator(Philox(key=seed)).random(n)``, which parfill.random(n,
  seed=seed) equals bit for bit (checked); peer: ``numpy.random.default_rng``
  (PCG64), NumPy's fastest and default generator (checked by range and mean:
  another stream).
* ``uniform-f32`` -- the same in float32 (NumPy's float32 layout, equal).
* ``normal`` -- n standard normals: NumPy's ziggurat (Philox, PCG64) vs
  parfill's Box-Muller; different algorithms, so every result is checked by
  its mean and standard deviation (5 sigma), parfill's also for being the
  same array whatever the schedule.

Each method allocates its result, as a user's call does (NumPy asks the
kernel for huge pages for big arrays; so does every row here). parfill runs
``--workers`` threads; NumPy's generators are single-threaded.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .harness import Entry, Result, compare

DESCRIPTION = ("parfill.random (Philox, threads) vs NumPy Generator(Philox).random and "
               "default_rng (PCG64): uniform float64/float32, normal")

SUITE = "random"
SEED = 20240601

NOTES = """\
notes: median of the timed runs, each allocating its n-element result; speedup = NumPy
  Philox's median / median (2.00x: half its time); vs best peer = NumPy PCG64's median /
  median. parfill.random(uniform) equals Generator(Philox(key=seed)).random bit for bit
  (checked on every run); normals are different algorithms (NumPy: ziggurat, parfill:
  Box-Muller), checked by mean and standard deviation. peak MiB = peak PSS during one
  extra run, minus before it."""

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


#: The names --only takes (the harness adds the option).
WORKLOADS = ["uniform", "uniform-f32", "normal"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=None,
                        help="values per call (default 10**8; --quick 10**6)")


def _philox() -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=SEED))


def _equal(reference: np.ndarray) -> Callable[[Any], bool]:
    return lambda out: out.dtype == reference.dtype and np.array_equal(out, reference)


def _uniform_like(n: int, dtype: Any) -> Callable[[Any], bool]:
    def check(out: np.ndarray) -> bool:
        if out.shape != (n,) or out.dtype != dtype:
            return False
        mean = float(out.mean(dtype=np.float64))
        return (float(out.min()) >= 0 and float(out.max()) < 1
                and abs(mean - 0.5) < 5 * math.sqrt(1 / 12 / n))
    return check


def _normal_like(n: int, same_as: np.ndarray | None = None) -> Callable[[Any], bool]:
    def check(out: np.ndarray) -> bool:
        if out.shape != (n,) or out.dtype != np.float64:
            return False
        if same_as is not None and not np.array_equal(out, same_as):
            return False
        return (abs(float(out.mean())) < 5 / math.sqrt(n)
                and abs(float(out.std()) - 1) < 5 / math.sqrt(2 * n))
    return check


def uniform(n: int, workers: int, repeat: int, dtype: Any, name: str) -> list[Result]:
    import parfill

    dt = np.dtype(dtype)
    DESCRIPTIONS[name] = f"{name}: {n:,} {dt.name} in [0, 1), seed {SEED}"
    reference = _philox().random(n, dt)
    exact = _equal(reference)
    methods: list[tuple[str, str, Callable[[], Any], Callable[[Any], bool]]] = [
        ("NumPy Philox random()", "sequential", lambda: _philox().random(n, dt), exact),
        ("NumPy default_rng (PCG64)", "peer",
         lambda: np.random.default_rng(SEED).random(n, dt), _uniform_like(n, dt)),
        ("parfill.random dynamic", "parfill",
         lambda: parfill.random(n, seed=SEED, dtype=dt, workers=workers), exact),
        ("parfill.random static", "parfill",
         lambda: parfill.random(n, seed=SEED, dtype=dt, workers=workers,
                                schedule="static"), exact),
    ]
    entries = [Entry(Result(SUITE, name, label, role, n, workers), fn, check)
               for label, role, fn, check in methods]
    results = compare(entries, repeat=repeat)
    del reference
    return results


def normal(n: int, workers: int, repeat: int) -> list[Result]:
    import parfill

    DESCRIPTIONS["normal"] = f"normal: {n:,} standard normal float64, seed {SEED}"
    ours = parfill.random(n, "normal", seed=SEED, workers=1)
    methods = [
        ("NumPy Philox standard_normal()", "sequential",
         lambda: _philox().standard_normal(n), _normal_like(n)),
        ("NumPy default_rng (PCG64)", "peer",
         lambda: np.random.default_rng(SEED).standard_normal(n), _normal_like(n)),
        ("parfill.random normal", "parfill",
         lambda: parfill.random(n, "normal", seed=SEED, workers=workers),
         _normal_like(n, ours)),
    ]
    entries = [Entry(Result(SUITE, "normal", label, role, n, workers), fn, check)
               for label, role, fn, check in methods]
    results = compare(entries, repeat=repeat)
    del ours
    return results


def run(args: argparse.Namespace) -> list[Result]:
    """Run the suite with the harness's common options (and ``--only``, ``--n``)."""
    only = set(getattr(args, "only", None) or [])
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    n = args.n or (10**6 if args.quick else 10**8)
    results: list[Result] = []
    if not only or "uniform" in only:
        results += uniform(n, args.workers, repeat, np.float64, "uniform")
    if not only or "uniform-f32" in only:
        results += uniform(n, args.workers, repeat, np.float32, "uniform-f32")
    if not only or "normal" in only:
        results += normal(n, args.workers, repeat)
    return results
