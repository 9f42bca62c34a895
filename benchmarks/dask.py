"""Suite "dask": parfill.dask against dask.array built the usual way, and
against one-machine parfill.

Workloads (``--n`` elements, default 2*10**7; ``--full`` for the issue's
2*10**8; ``--quick`` 10**6), a 2-d float64 field of ``ROWS`` rows cut into
``BLOCKS`` row blocks:

* ``expr`` -- ``sin(i*1e-3 + j*2e-3) * exp(-(i*j)*1e-9)``. Baseline:
  one-machine ``parfill.populate``; peers: ``da.fromfunction`` and
  ``da.map_blocks`` with NumPy on the block's global index grid (threaded
  scheduler); parfill.dask on the threaded scheduler and on a 2-worker
  LocalCluster (persisted there, not gathered: the timing is the fill).
* ``random`` -- uniform float64. Baseline one-machine ``parfill.random``;
  peer ``da.random.default_rng(seed).random`` on the same chunks.
* ``callable`` -- the same formula as a Python function of (i, j)
  (``--n-callable``, default 2*10**6). Baseline one-machine
  ``parfill.populate(f, translate="never")``; peer ``da.map_blocks`` with
  ``numpy.vectorize(f)`` on global indices; parfill.dask translated (the
  default) and called (``translate="never"``) with the per-task rule (each
  block forks its share of the cores), and the two alternatives the rule was
  chosen over: each block forking every core, and each block in its dask
  thread (the GIL serialises the tasks).

Checks: parfill rows bit for bit against one-machine parfill (the same
values by contract); NumPy peers within 1e-12 relative (libm vs libmvec);
dask's random by range and mean (another generator).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .harness import Entry, Result, compare

DESCRIPTION = ("parfill.dask (threads, 2-worker LocalCluster) vs da.fromfunction / "
               "map_blocks+NumPy / da.random / map_blocks+np.vectorize, vs one-machine parfill")

SUITE = "dask"
ROWS = 1000
BLOCKS = 8
SEED = 20240601
EXPR = "sin(i * 1e-3 + j * 2e-3) * exp(-(i * j) * 1e-9)"

NOTES = """\
notes: median of interleaved timed runs; speedup = one-machine parfill's median / median
  (the target for parfill.dask threads is >= 0.77x, within 1.3x); vs best peer = the best
  dask.array peer's median / median (targets: expr >= 3x, random >= 2x, callable >= 1.8x).
  LocalCluster rows persist the array on the workers (the fill, no transfer back). peak MiB =
  peak PSS of this process and its descendants (the cluster's workers included) during one
  extra run, minus before it."""

#: Each workload's table heading, filled in as run() builds it.
DESCRIPTIONS: dict[str, str] = {}


#: The names --only takes (the harness adds the option).
WORKLOADS = ["expr", "random", "callable"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=None,
                        help="elements of the expr and random fields (default 2*10**7)")
    parser.add_argument("--full", action="store_true",
                        help="the issue's 2*10**8 elements (1.6 GB per array)")
    parser.add_argument("--n-callable", type=int, default=None,
                        help="elements of the callable field (default 2*10**6)")
    parser.add_argument("--no-cluster", action="store_true",
                        help="skip the LocalCluster rows")


def element(i: int, j: int) -> float:
    """The expression as a Python function (math's sin/exp: libm)."""
    return math.sin(i * 1e-3 + j * 2e-3) * math.exp(-(i * j) * 1e-9)


def _numpy_block(block_info: Any = None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    i, j = np.ogrid[r0:r1, c0:c1]
    return np.sin(i * 1e-3 + j * 2e-3) * np.exp(-(i * j) * 1e-9)


def _numpy_formula(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.sin(i * 1e-3 + j * 2e-3) * np.exp(-(i * j) * 1e-9)


def _vectorized_block(block_info: Any = None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    i, j = np.ogrid[r0:r1, c0:c1]
    return np.vectorize(element, otypes=[np.float64])(i, j)


def _blocks(shape: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    """BLOCKS row blocks, spelled out (map_blocks without array inputs reads
    a flat tuple as the shape of its one block)."""
    from dask.array.core import normalize_chunks

    return normalize_chunks((max(1, shape[0] // BLOCKS), shape[1]), shape)


def _exact(reference: np.ndarray) -> Callable[[Any], bool]:
    return lambda out: out.dtype == reference.dtype and np.array_equal(out, reference)


def _close(reference: np.ndarray) -> Callable[[Any], bool]:
    return lambda out: out.shape == reference.shape and np.allclose(
        out, reference, rtol=1e-12, atol=1e-300)


def _uniform_like(shape: tuple[int, int]) -> Callable[[Any], bool]:
    n = shape[0] * shape[1]

    def check(out: np.ndarray) -> bool:
        return (out.shape == shape and float(out.min()) >= 0 and float(out.max()) < 1
                and abs(float(out.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n))
    return check


class _Cluster:
    """A LocalCluster(n_workers=2, processes=True) shared by the workloads."""

    def __init__(self, workers: int) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=2, threads_per_worker=max(1, workers // 2),
                                    processes=True, dashboard_address=None,
                                    silence_logs=50)
        self.client = Client(self.cluster, set_as_default=False)

    def persist(self, x: Any) -> Callable[[], Any]:
        from distributed import wait

        from distributed import futures_of

        def fn() -> Any:
            p = self.client.persist(x)
            with self.client.as_current():  # wait() asks for the current client
                wait(futures_of(p))
            return p
        return fn

    def checked(self, check: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """check on the persisted array gathered back (untimed)."""
        return lambda p: check(self.client.compute(p).result())

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def _threads(x: Any, workers: int) -> Callable[[], Any]:
    return lambda: x.compute(scheduler="threads", num_workers=workers)


def expr(n: int, workers: int, repeat: int, cluster: _Cluster | None) -> list[Result]:
    import dask.array as da

    import parfill
    import parfill.dask as pd

    shape = (ROWS, n // ROWS)
    chunks = _blocks(shape)
    DESCRIPTIONS["expr"] = (f"expr: {EXPR}, {shape[0]:,} x {shape[1]:,} float64, "
                             f"{BLOCKS} blocks")
    reference = parfill.populate(EXPR, shape, workers=workers)
    exact, close = _exact(reference), _close(reference)
    ours = pd.populate(EXPR, shape, chunks=chunks)
    methods: list[tuple[str, str, Callable[[], Any], Callable[[Any], bool]]] = [
        ("parfill.populate (one machine)", "sequential",
         lambda: parfill.populate(EXPR, shape, workers=workers), exact),
        ("da.fromfunction + NumPy", "peer",
         _threads(da.fromfunction(_numpy_formula, shape=shape, chunks=chunks,
                                  dtype=np.float64), workers), close),
        ("da.map_blocks + NumPy (ogrid)", "peer",
         _threads(da.map_blocks(_numpy_block, chunks=chunks, dtype=np.float64,
                                meta=np.empty((0, 0))), workers), close),
        ("parfill.dask threads", "parfill", _threads(ours, workers), exact),
    ]
    if cluster is not None:
        methods.append(("parfill.dask LocalCluster(2)", "parfill", cluster.persist(ours),
                        cluster.checked(exact)))
        methods.append(("da.map_blocks + NumPy LocalCluster(2)", "other",
                        cluster.persist(da.map_blocks(_numpy_block, chunks=chunks,
                                                      dtype=np.float64,
                                                      meta=np.empty((0, 0)))),
                        cluster.checked(close)))
    entries = [Entry(Result(SUITE, "expr", label, role, shape[0] * shape[1], workers), fn,
                     check) for label, role, fn, check in methods]
    results = compare(entries, repeat=repeat)
    del reference
    return results


def random(n: int, workers: int, repeat: int) -> list[Result]:
    import dask.array as da

    import parfill
    import parfill.dask as pd

    shape = (ROWS, n // ROWS)
    chunks = _blocks(shape)
    DESCRIPTIONS["random"] = (f"random: uniform float64, {shape[0]:,} x {shape[1]:,}, "
                               f"{BLOCKS} blocks")
    reference = parfill.random(shape, seed=SEED, workers=workers)
    methods: list[tuple[str, str, Callable[[], Any], Callable[[Any], bool]]] = [
        ("parfill.random (one machine)", "sequential",
         lambda: parfill.random(shape, seed=SEED, workers=workers), _exact(reference)),
        ("da.random.default_rng().random", "peer",
         _threads(da.random.default_rng(SEED).random(shape, chunks=chunks), workers),
         _uniform_like(shape)),
        ("parfill.dask.random threads", "parfill",
         _threads(pd.random(shape, seed=SEED, chunks=chunks), workers), _exact(reference)),
    ]
    entries = [Entry(Result(SUITE, "random", label, role, shape[0] * shape[1], workers), fn,
                     check) for label, role, fn, check in methods]
    results = compare(entries, repeat=repeat)
    del reference
    return results


def callable_(n: int, workers: int, repeat: int, cluster: _Cluster | None) -> list[Result]:
    import dask.array as da

    import parfill
    import parfill.dask as pd

    shape = (ROWS, max(1, n // ROWS))
    chunks = _blocks(shape)
    DESCRIPTIONS["callable"] = (f"callable: element(i, j) (math.sin, math.exp), "
                                 f"{shape[0]:,} x {shape[1]:,} float64, {BLOCKS} blocks")
    reference = parfill.populate(element, shape, workers=workers, translate="never")
    exact = _exact(reference)
    cores = parfill.cpu_count()
    called = pd.populate(element, shape, chunks=chunks, translate="never")
    methods: list[tuple[str, str, Callable[[], Any], Callable[[Any], bool]]] = [
        ("parfill.populate called (one machine)", "sequential",
         lambda: parfill.populate(element, shape, workers=workers, translate="never"),
         exact),
        ("da.map_blocks + np.vectorize", "peer",
         _threads(da.map_blocks(_vectorized_block, chunks=chunks, dtype=np.float64,
                                meta=np.empty((0, 0))), workers), exact),
        ("parfill.dask threads, translated", "parfill",
         _threads(pd.populate(element, shape, chunks=chunks), workers), exact),
        ("parfill.dask threads, called (rule: share forked)", "parfill",
         _threads(called, workers), exact),
        ("  alternative: every core forked per block", "other",
         _threads(pd.populate(element, shape, chunks=chunks, translate="never",
                              backend="processes", workers=cores), workers), exact),
        ("  alternative: in the dask thread (GIL)", "other",
         _threads(pd.populate(element, shape, chunks=chunks, translate="never",
                              backend="serial", workers=1), workers), exact),
    ]
    if cluster is not None:
        methods.append(("parfill.dask LocalCluster(2), called", "parfill",
                        cluster.persist(called), cluster.checked(exact)))
    entries = [Entry(Result(SUITE, "callable", label, role, shape[0] * shape[1], workers),
                     fn, check) for label, role, fn, check in methods]
    results = compare(entries, repeat=repeat)
    del reference
    return results


def run(args: argparse.Namespace) -> list[Result]:
    """Run the suite with the harness's common options and the suite's own."""
    only = set(getattr(args, "only", None) or [])
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    n = args.n or (10**6 if args.quick else 2 * 10**8 if args.full else 2 * 10**7)
    n_callable = args.n_callable or (10**5 if args.quick else 2 * 10**6)
    want_cluster = not args.no_cluster and (not only or only & {"expr", "callable"})
    cluster = _Cluster(args.workers) if want_cluster else None
    results: list[Result] = []
    try:
        if not only or "expr" in only:
            results += expr(n, args.workers, repeat, cluster)
        if not only or "random" in only:
            results += random(n, args.workers, repeat)
        if not only or "callable" in only:
            results += callable_(n_callable, args.workers, repeat, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    return results
