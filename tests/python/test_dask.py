"""parfill.dask against real Dask: the threaded scheduler, the process
scheduler and a distributed LocalCluster of two worker processes started
here. Every array is compared bit for bit with the one-machine
parfill.populate / parfill.random (or NumPy on global index arrays where the
whole would not fit), for regular, irregular and "auto" chunks.
"""
import concurrent.futures
import ctypes
import gc
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import parfill

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import parfill.dask as pd  # noqa: E402  (after the skips)
import native_lib  # noqa: E402

SHAPE = (100, 1000)
# Regular, irregular and auto (auto under a small dask chunk-size limit, so
# it makes several blocks of this small array).
CHUNKS = [(25, 250), (37, 401), "auto"]
EXPR = "sin(i * 0.01) * j + uniform() - normal() * idx / size + n0 * n1"


def bits(a):
    """The array's bytes, so NaNs and signed zeros compare too."""
    return np.ascontiguousarray(a).view(np.uint8)


def chain(e):
    """An exception's message and its causes' (distributed wraps a
    serialisation error in its own TypeError)."""
    texts = []
    while e is not None:
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    return " | ".join(texts)


def assert_same(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(bits(got), bits(want))


# ----------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes (one thread each), closed
    also when a test fails."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def process_pool():
    """One pool for the process scheduler (scheduler="processes", pool=):
    dask would otherwise spawn a fresh pool for every compute."""
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def compute(x, scheduler, client=None, pool=None):
    if scheduler == "threads":
        return x.compute(scheduler="threads", num_workers=2)
    if scheduler == "processes":
        return x.compute(scheduler="processes", pool=pool)
    if scheduler == "sync":
        return x.compute(scheduler="sync")
    assert scheduler == "distributed"
    return client.compute(x).result()


@pytest.fixture(params=["threads", "processes", "distributed"])
def run(request):
    """compute(x) on each scheduler (the cluster and pool only when used)."""
    scheduler = request.param
    c = request.getfixturevalue("client") if scheduler == "distributed" else None
    pool = request.getfixturevalue("process_pool") \
        if scheduler == "processes" else None
    return lambda x: compute(x, scheduler, c, pool)


@pytest.fixture(params=CHUNKS, ids=["regular", "irregular", "auto"])
def chunks(request):
    with dask.config.set({"array.chunk-size": "64KiB"}):
        yield request.param


PROTOTYPES = {"elem": native_lib.ELEMENT, "index_sum": native_lib.INDEX,
              "block_f64": native_lib.BLOCK}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return native_lib.build(tmp_path_factory.mktemp("native"))


def typed(lib, name):
    return native_lib.typed(lib, name, PROTOTYPES[name])


# ------------------------------------------------------- equal to populate

def test_expression(run, chunks):
    x = pd.populate(EXPR, SHAPE, chunks=chunks)
    assert isinstance(x, da.Array) and x.numblocks != (1, 1)
    assert_same(run(x), parfill.populate(EXPR, SHAPE))


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.complex128, np.bool_])
def test_expression_dtypes_and_params(dtype):
    text = "(i * a + j * b) % 7"
    x = pd.populate(text, (61, 67), dtype, chunks=(10, 9), params={"a": 3, "b": 5})
    assert x.dtype == np.dtype(dtype)
    assert_same(x.compute(), parfill.populate(text, (61, 67), dtype,
                                              params={"a": 3, "b": 5}))


@pytest.mark.parametrize("shape, chunks", [((), "auto"), ((0, 5), 2),
                                           ((7,), ((3, 0, 4),)),
                                           ((3, 4, 5), (2, 3, 4))])
def test_edge_shapes(shape, chunks):
    x = pd.populate("idx * 2 + 1", shape, chunks=chunks)
    assert x.shape == shape
    assert_same(x.compute(), parfill.populate("idx * 2 + 1", shape))


def test_callables(run, chunks):
    scale = type("Scale", (), {"k": 0.25})()   # a local class's instance
    offset = lambda j: j * 3                   # noqa: E731

    def closure(i, j):
        return i * scale.k + offset(j)

    assert_same(run(pd.populate(closure, SHAPE, chunks=chunks)),
                parfill.populate(closure, SHAPE))
    f = lambda i, j: (i * 7 + j) % 13 - 0.5    # noqa: E731
    assert_same(run(pd.populate(f, SHAPE, np.float32, chunks=chunks,
                                translate="never")),
                parfill.populate(f, SHAPE, np.float32, translate="never"))


def test_vectorized_callable(run):
    f = lambda i, j: i * 1000.0 + j            # noqa: E731
    x = pd.populate(f, SHAPE, chunks=(37, 401), vectorized=True)
    assert_same(run(x), parfill.populate(f, SHAPE, vectorized=True))


def test_unpicklable_closure_runs_where_it_was_made():
    """A closure over a lock or a generator (which nothing can pickle) runs
    on the threaded and synchronous schedulers; sending it away is dask's
    serialisation error, a TypeError."""
    lock, gen = threading.Lock(), (k for k in range(3))

    def f(i, j):
        if i < 0:   # captured, never used
            with lock:
                next(gen)
        return i - j * 0.5

    x = pd.populate(f, SHAPE, chunks=(37, 401))
    want = parfill.populate(f, SHAPE)
    assert_same(x.compute(scheduler="threads", num_workers=2), want)
    assert_same(x.compute(scheduler="sync"), want)
    assert pd.populate(f, SHAPE, chunks=(37, 401)).name == x.name


def test_unpicklable_closure_on_a_cluster_is_a_type_error(client):
    lock = threading.Lock()

    def f(i, j):
        if i < 0:
            with lock:
                pass
        return 0.0

    with pytest.raises(TypeError):
        client.compute(pd.populate(f, SHAPE, chunks=(37, 401))).result()


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_random(run, chunks, dist):
    x = pd.random(SHAPE, dist, seed=2**100 + 7, chunks=chunks, stream=3)
    assert x.numblocks != (1, 1)
    assert_same(run(x), parfill.random(SHAPE, dist, 2**100 + 7, stream=3))


def test_random_float32_and_edges():
    assert_same(pd.random((333, 7), "normal", 1, np.float32, chunks=(50, 3)).compute(),
                parfill.random((333, 7), "normal", 1, np.float32))
    assert_same(pd.random((), seed=9).compute(), parfill.random((), seed=9))
    assert_same(pd.random((0, 3)).compute(), parfill.random((0, 3)))


@pytest.mark.parametrize("name", ["elem", "index_sum", "block_f64"])
def test_native(lib, run, chunks, name):
    f = typed(lib, name)
    assert_same(run(pd.populate(f, SHAPE, chunks=chunks)),
                parfill.populate(f, SHAPE))


def test_native_ctx_stays_in_process(lib, client):
    f, scale = typed(lib, "block_f64"), ctypes.c_double(0.5)
    x = pd.populate(f, SHAPE, chunks=(37, 401), ctx=ctypes.byref(scale))
    want = parfill.populate(f, SHAPE, ctx=ctypes.byref(scale))
    assert_same(x.compute(scheduler="threads"), want)
    with pytest.raises(TypeError) as info:
        client.compute(x).result()
    assert "ctx is an address in this process" in chain(info.value)


def test_native_without_a_symbol_stays_in_process(client):
    """A ctypes callback of a Python function is native code no library
    exports: it runs on threads; sending it says why it cannot."""
    cb = PROTOTYPES["elem"](lambda i: i * 2.0)
    x = pd.populate(cb, (1000,), chunks=300)
    assert_same(x.compute(scheduler="threads"), np.arange(1000) * 2.0)
    with pytest.raises(TypeError) as info:
        client.compute(x).result()
    assert "no shared library exports a symbol" in chain(info.value)


# --------------------------------------------------------- dask's own uses

def test_store_into_memmap(tmp_path):
    x = pd.populate(EXPR, SHAPE, chunks=(37, 401))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float64, SHAPE)
    da.store(x, mm, scheduler="threads")
    mm.flush()
    del mm
    assert_same(np.load(tmp_path / "x.npy"), parfill.populate(EXPR, SHAPE))


def test_zarr_round_trip(tmp_path, client):
    path = str(tmp_path / "field.zarr")
    x = pd.populate(EXPR, SHAPE, chunks=(37, 401))
    x.to_zarr(path)
    back = da.from_zarr(path)
    assert back.chunks == x.chunks
    assert_same(back.compute(scheduler="threads"), parfill.populate(EXPR, SHAPE))
    r = pd.random(SHAPE, "normal", 4, chunks=(50, 500))
    client.compute(r.to_zarr(str(tmp_path / "r.zarr"), compute=False)).result()
    assert_same(da.from_zarr(str(tmp_path / "r.zarr")).compute(scheduler="sync"),
                parfill.random(SHAPE, "normal", 4))


# ------------------------------------ compute() writes into one array

def traced_peak(fn):
    """(fn's result, the peak of memory traced while it ran): NumPy reports
    its array data to tracemalloc."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_compute_fills_one_array_in_place(scheduler, chunks):
    """On one process the blocks are filled into the result itself: the
    compute's peak memory is one array, where filling blocks apart and
    copying them together (what a derived array still does) needs two."""
    want = parfill.populate(EXPR, (400, 1000))
    for x in (pd.populate(EXPR, (400, 1000), chunks=chunks),
              pd.random((400, 1000), seed=9, chunks=chunks)):
        x.compute(scheduler=scheduler)  # (pools and imports warmed up)
        got, peak = traced_peak(lambda: x.compute(scheduler=scheduler))
        assert x.npartitions > 1 and got.flags.owndata and got.flags.writeable
        assert peak < 1.5 * got.nbytes, (peak, got.nbytes)
        copied, peak = traced_peak(lambda: (x + 0).compute(scheduler=scheduler))
        assert peak > 1.9 * got.nbytes  # the measure tells the two apart
        assert_same(copied, got)
    assert_same(pd.populate(EXPR, (400, 1000), chunks=chunks).compute(), want)
    # Explicit chunks with empty blocks, which dask fills itself.
    x = pd.populate(EXPR, (400, 1000), chunks=((0, 150, 0, 250), (1000, 0)))
    got, peak = traced_peak(lambda: x.compute(scheduler=scheduler))
    assert peak < 1.5 * got.nbytes, (peak, got.nbytes)
    assert_same(got, want)


def test_each_compute_gets_an_array_of_its_own():
    """Computes of one array, one after another and from 8 threads at once,
    return separate arrays: changing one changes no other."""
    shape = (300, 500)
    want = parfill.populate(EXPR, shape)
    x = pd.populate(EXPR, shape, chunks=(37, 101))
    first, second = x.compute(), x.compute()
    first[:] = -1
    assert_same(second, want)
    got = [None] * 8

    def run(k):
        got[k] = x.compute(scheduler="threads", num_workers=3)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({a.__array_interface__["data"][0] for a in got}) == 8
    for a in got:
        assert_same(a, want)
        a[:] = 0
    # A graph optimised once (one arena token) and computed again and
    # concurrently: blocks whose window was taken fill arrays of their own.
    (optimized,) = dask.optimize(x)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    with pool:
        results = list(pool.map(lambda _: optimized.compute(), range(6)))
    assert len({a.__array_interface__["data"][0] for a in results}) == 6
    for a in results:
        assert_same(a, want)
    # Derived and persisted arrays, and the array beside one derived from it.
    a, b = dask.compute(x, x[10:20] * 2)
    assert_same(a, want)
    assert_same(b, want[10:20] * 2)
    assert_same(x.persist(scheduler="threads").compute(), want)


def test_arena_gives_each_window_once_and_hands_out_only_its_own():
    """parfill._arena's contract: a window is claimed once; the whole is
    handed out only for every window of it, each a view at its place."""
    from parfill import _arena

    chunks = ((2, 3), (4,))
    token = _arena.new_token()
    base = _arena.claim(token, (5, 4), np.dtype(np.float64), (0, 0))
    assert base is not None and base.shape == (5, 4)
    assert _arena.claim(token, (5, 4), np.dtype(np.float64), (0, 0)) is None
    assert _arena.claim(token, (5, 4), np.dtype(np.float64), (2, 0)) is base
    top, bottom = base[0:2], base[2:5]
    assert _arena.take([top], chunks) is None                  # one missing
    assert _arena.take([top, base[2:5].copy()], chunks) is None  # a copy
    assert _arena.take([top, np.empty((3, 4))], chunks) is None  # not a window
    assert _arena.take([bottom, top], chunks) is None          # out of place
    assert _arena.take([top, bottom], chunks) is base
    # Retired: a later claim of the token starts another array.
    again = _arena.claim(token, (5, 4), np.dtype(np.float64), (0, 0))
    assert again is not None and again is not base
    assert not _arena.usable(None) and _arena.usable(token)
    assert not _arena.usable(f"{os.getpid() + 1}:0")  # another process's
    # Empty blocks (dask makes them itself) hold nothing to place.
    token = _arena.new_token()
    base = _arena.claim(token, (5, 4), np.dtype(np.float64), (0, 0))
    assert _arena.take([np.empty((0, 4)), base[0:5], np.empty((0, 4))],
                       ((0, 5, 0), (4,))) is base


def test_failed_computes_leave_no_arrays_behind():
    """A block that raises ends the compute; the array its blocks were
    being filled into goes with it. (dask's threaded scheduler may keep
    the result of a task that finished after the failure until its next
    compute -- one block of its own in the copying path, a view of the
    array here -- so at most one array stays, however many computes fail.)"""
    shape = (200, 1000)
    x = pd.populate(lambda i, j: failing(i, j), shape, chunks=(37, 401),
                    translate="never")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(6):
            with pytest.raises(KeyError, match="boom"):
                x.compute(scheduler="threads")
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert left < 1.5 * 8 * math.prod(shape), left


def test_slicing_a_huge_array_computes_only_touched_blocks(monkeypatch):
    """10**12 elements (8 TB): building is free, and a slice computes only
    the blocks it covers (each block's window fill recorded as it runs;
    dask fuses the slice into the block's task, so keys would not tell)."""
    shape = (10**6, 10**6)
    x = pd.populate("i * 1000003.0 + j", shape, chunks=(1000, 1000))
    assert x.size == 10**12 and x.numblocks == (1000, 1000)
    run, fill = [], pd._window.populate_block

    def recorded(func, whole, origin, block, *args, **kwargs):
        run.append((origin, block))
        return fill(func, whole, origin, block, *args, **kwargs)

    monkeypatch.setattr(pd._window, "populate_block", recorded)
    part = x[123_800:124_100, 999_500:]
    got = part.compute(scheduler="threads")
    assert sorted(run) == [((123_000, 999_000), (1000, 1000)),
                           ((124_000, 999_000), (1000, 1000))]
    i, j = np.meshgrid(np.arange(123_800, 124_100), np.arange(999_500, 10**6),
                       indexing="ij")
    np.testing.assert_array_equal(got, i * 1000003.0 + j)
    # Global indices for random too: a corner far from the origin.
    r = pd.random(shape, seed=1, chunks="auto")[-3:, -5:].compute()
    assert r.shape == (3, 5) and ((0 <= r) & (r < 1)).all()


def test_names_are_deterministic(lib):
    def f(i, j):
        return i + j

    def name(*args, **kw):
        return pd.populate(*args, **kw).name

    base = name(EXPR, SHAPE, chunks=(37, 401))
    assert base == name(EXPR, SHAPE, chunks=(37, 401))
    assert base.startswith("parfill-populate-")
    others = [name(EXPR + " + 1", SHAPE, chunks=(37, 401)),
              name(EXPR, (100, 1001), chunks=(37, 401)),
              name(EXPR, SHAPE, np.float32, chunks=(37, 401)),
              name(EXPR, SHAPE, chunks=(37, 400)),
              name(EXPR, SHAPE, chunks=(37, 401), workers=1)]
    assert len({base, *others}) == 6
    p = [name("i * a", SHAPE, params={"a": a}) for a in (1, 1, 2)]
    assert p[0] == p[1] != p[2]
    assert name(f, SHAPE) == name(f, SHAPE) != name(lambda i, j: i - j, SHAPE)
    g = typed(lib, "elem")
    assert name(g, SHAPE) == name(g, SHAPE) != name(typed(lib, "index_sum"), SHAPE)
    r = pd.random(SHAPE, seed=1).name
    assert r == pd.random(SHAPE, seed=1).name and r.startswith("parfill-random-")
    assert len({r, pd.random(SHAPE, seed=2).name, pd.random(SHAPE, "normal", 1).name,
                pd.random(SHAPE, seed=1, stream=1).name,
                pd.random(SHAPE, seed=1, chunks=50).name}) == 5


# ----------------------------------------------------------- cores in a task

def test_cores_a_task_uses(client, process_pool):
    """max(1, cores // tasks at once): the threaded scheduler's pool size,
    all cores alone (sync), the process scheduler's default pool size, one
    per thread of a distributed worker."""
    cores = parfill.cpu_count()
    share = dask.delayed(pd._task_share)
    assert share().compute(scheduler="processes", pool=process_pool) == \
        (max(1, cores // dask.system.CPU_COUNT), False)
    assert share().compute(scheduler="threads", num_workers=2) == \
        (max(1, cores // 2), True)
    assert share().compute(scheduler="threads", num_workers=1) == (cores, False)
    assert share().compute(scheduler="sync") == (cores, False)
    assert client.compute(share()).result() == (1, False)


def test_callable_blocks_on_threads_run_in_forked_workers():
    """On the threaded scheduler a Python callable's block does not hold
    the GIL of the dask process: its elements run in forked workers."""
    x = pd.populate(lambda i: os.getpid(), (4000,), np.int64, chunks=1000,
                    translate="never")
    pids = x.compute(scheduler="threads", num_workers=2)
    assert os.getpid() not in set(pids.tolist())
    # The synchronous scheduler (one task at a time) is populate's own choice.
    assert len(pd.populate(lambda i: os.getpid(), (10,), np.int64).compute(
        scheduler="sync")) == 10


# ---------------------------------------------------------------- failures

def failing(i, j):
    if (i, j) == (57, 321):
        raise KeyError("boom")
    return i + j


@pytest.mark.parametrize("scheduler", ["threads", "processes", "distributed"])
def test_exception_names_the_global_index(scheduler, request):
    c = request.getfixturevalue("client") if scheduler == "distributed" else None
    pool = request.getfixturevalue("process_pool") \
        if scheduler == "processes" else None
    x = pd.populate(lambda i, j: failing(i, j), SHAPE, chunks=(37, 401))
    with pytest.raises(KeyError, match="boom") as info:
        compute(x, scheduler, c, pool)
    notes = getattr(info.value, "__notes__", [])
    assert any("(57, 321)" in n for n in notes), notes


def test_killed_worker_is_retried_and_exact(client, tmp_path):
    """The first element (50, 500) kills its own dask worker process
    (SIGKILL, after leaving a marker); dask retries the task on a live
    worker and the result is still exact."""
    marker = str(tmp_path / "killed")

    def f(i, j):
        if (i, j) == (50, 500):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return i * 3.0 - j

    pids = set(client.run(os.getpid).values())
    x = pd.populate(f, SHAPE, chunks=(25, 250), translate="never")
    got = client.compute(x).result()
    assert os.path.exists(marker)
    assert_same(got, parfill.populate(lambda i, j: i * 3.0 - j, SHAPE))
    client.wait_for_workers(2, timeout=60)
    # One worker died and its nanny started another.
    assert len(pids - set(client.run(os.getpid).values())) == 1


def _leftovers():
    """This process's children and parfill memfd mappings."""
    gc.collect()
    kids = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as fh:
            kids += fh.read().split()
    with open("/proc/self/maps") as fh:
        maps = [line for line in fh if "memfd:parfill" in line]
    return sorted(kids), maps


def test_no_children_or_mappings_left_in_workers(client):
    before = client.run(_leftovers)
    x = pd.populate(lambda i, j: i * 0.5 - j, SHAPE, chunks=(37, 401),
                    backend="processes", workers=2, translate="never")
    assert_same(client.compute(x).result(),
                parfill.populate(lambda i, j: i * 0.5 - j, SHAPE))
    del x
    assert client.run(_leftovers) == before
    here = _leftovers()
    y = pd.populate(lambda i, j: i - j, SHAPE, chunks=(37, 401), translate="never")
    y.compute(scheduler="threads", num_workers=2)
    assert _leftovers() == here


# --------------------------------------------------------------- arguments

@pytest.mark.parametrize("args, kwargs, error, match", [
    ((3, SHAPE), {}, TypeError, "func must be"),
    (("i", "x"), {}, TypeError, "shape"),
    (("i", (-1,)), {}, ValueError, "negative"),
    (("i", SHAPE, "U3"), {}, TypeError, "dtype"),
    (("i", SHAPE), {"chunks": 0}, ValueError, "block size"),
    (("i", SHAPE), {"chunks": -2}, ValueError, "block size"),
    (("i", SHAPE), {"chunks": True}, TypeError, "chunks"),
    (("i", SHAPE), {"chunks": "bad"}, ValueError, "chunks"),
    (("i", SHAPE), {"chunks": ((50, 49), 1000)}, ValueError, "chunks"),
    (("i", SHAPE), {"chunks": (10, 10, 10)}, ValueError, "chunks"),
    (("i", (10**12,)), {"chunks": 1}, ValueError, "blocks along"),
    (("i", SHAPE), {"out": np.empty(SHAPE)}, TypeError, "store"),
    (("i", SHAPE), {"progress": True}, TypeError, "progress"),
    (("i", SHAPE), {"colour": 1}, TypeError, "unexpected keyword"),
    (("i", SHAPE), {"workers": "x"}, TypeError, "workers"),
    (("i", SHAPE), {"schedule": "x"}, ValueError, "schedule"),
    (("i + q", SHAPE), {}, parfill.ExpressionError, "unknown name"),
    (("k", SHAPE), {}, parfill.ExpressionError, "axis"),
    ((lambda i, j: 0, SHAPE), {"params": {"a": 1}}, TypeError, "params"),
    ((lambda i, j: [0 for _ in "ab"][0], SHAPE), {"translate": "always"},
     parfill.TranslationError, "nested function"),
])
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        pd.populate(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, error", [
    ((SHAPE, "poisson"), {}, ValueError),
    ((SHAPE, "uniform", -1), {}, ValueError),
    ((SHAPE, "uniform", 1.5), {}, TypeError),
    ((SHAPE, "uniform", 0, np.int32), {}, TypeError),
    ((SHAPE,), {"stream": 2**64}, ValueError),
    ((SHAPE,), {"chunks": 0}, ValueError),
    (("x",), {}, TypeError),
])
def test_bad_random_arguments(args, kwargs, error):
    with pytest.raises(error):
        pd.random(*args, **kwargs)


def test_benchmark_suite_runs(capsys):
    """A smoke run of `python -m benchmarks dask` (tiny, no cluster): every
    row computed and equal to its reference."""
    from benchmarks import main

    assert main(["dask", "--quick", "--repeat", "1", "--no-cluster", "--n", "40000",
                 "--n-callable", "4000"]) == 0
    assert "parfill.dask threads" in capsys.readouterr().out


def test_import_parfill_does_not_import_dask():
    code = "import sys, parfill; sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
