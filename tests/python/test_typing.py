"""The package's type information, as a user's type checker and a user's
program see it: populate's overloads accept each kind of func with the
arguments that apply to it and refuse the rest; the exceptions' attributes
have their types; the hints resolve at run time; _core.pyi names the real
keyword arguments of the C functions."""
import ast
import ctypes
import os
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import parfill
from parfill import _core

from conftest import stop_process

pytest.importorskip("mypy")

# Where the parfill being tested lives (the checkout, or a copy shadowing it),
# for mypy: the editable install's import hook is invisible to it.
PACKAGE_ROOT = Path(parfill.__file__).resolve().parent.parent

# A user's program: populate in each overload form, random, cpu_count, and
# every exception with its attributes. It must type-check under --strict, and
# it runs (its asserts compare with NumPy and the sequential loop).
GOOD = '''
import ctypes
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

import parfill
from parfill import populate


def half(i: int) -> float:
    return i * 0.5


def grid(i: int, j: int) -> int:
    return i * 10 + j


def halves(i: npt.NDArray[np.int64]) -> npt.NDArray[np.floating[Any]]:
    return i * 0.5


def scaled(start: int, count: int, out: int, ctx: int) -> None:
    scale = ctypes.c_double.from_address(ctx).value
    values = (ctypes.c_double * count).from_address(out)
    for k in range(count):
        values[k] = (start + k) * scale


def reference(shape: tuple[int, ...], f: Any) -> npt.NDArray[Any]:
    a = np.empty(shape)
    for idx in np.ndindex(*shape):
        a[idx] = f(*idx)
    return a


# Python callables: element and vectorized, every argument that applies.
a: npt.NDArray[Any] = populate(half, 10, np.float64, workers=2,
                               schedule="guided", chunk=3, backend="threads",
                               progress=False)
assert np.array_equal(a, reference((10,), half))
b = populate(grid, (3, 4), out=np.empty((3, 4), np.int32), backend="serial",
             retries=1, timeout=30.0)
assert b.dtype == np.int32 and np.array_equal(b, reference((3, 4), grid))
c = populate(halves, 100, vectorized=True, workers=2, backend="processes",
             progress=lambda done, total: None)
assert np.array_equal(c, reference((100,), half))
reveal_type(c)

# Expressions, with params as any mapping of scalars.
d = populate("i * step + j", (2, 3), params={"step": 10}, workers=2,
             schedule="static")
e = populate("x * i", 5, np.float32, params={"x": np.float32(0.5)},
             timeout=10)
assert np.array_equal(d, reference((2, 3), lambda i, j: i * 10 + j))
assert np.array_equal(e, reference((5,), half))

# Native functions: an element function, and a block function with its ctx.
ELEMENT = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)
BLOCK = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_void_p, ctypes.c_void_p)
native_half = ELEMENT(half)
native_scaled = BLOCK(scaled)
f = populate(native_half, 7, workers=2)
scale = ctypes.c_double(0.5)
g = populate(native_scaled, 9, ctx=ctypes.byref(scale))
h = populate(native_scaled, 9, ctx=ctypes.addressof(scale), backend="serial")
assert np.array_equal(f, reference((7,), half))
assert np.array_equal(g, reference((9,), half)) and np.array_equal(g, h)

# random and cpu_count.
r = parfill.random((4, 5), "normal", seed=2**100, dtype=np.float32, stream=3,
                   workers=2, chunk=4)
u = parfill.random(out=np.empty(6), seed=7, timeout=5.0)
assert r.shape == (4, 5) and r.dtype == np.float32
assert np.array_equal(
    u, np.random.Generator(np.random.Philox(key=7)).random(6))
n: int = parfill.cpu_count()
version: str = parfill.__version__


# The exceptions and their attributes.
def three_fails(i: int) -> float:
    if i == 3:
        raise ValueError("three")
    return 0.0


try:
    populate(three_fails, 8, workers=2, backend="processes")
except ValueError as exc:
    notes: list[str] = getattr(exc, "__notes__", [])
    assert "(3,)" in notes[-1]
    cause = exc.__cause__
    assert isinstance(cause, parfill.RemoteTraceback)
    remote: str = cause.tb
    assert "three" in remote
else:
    raise AssertionError("no ValueError")

try:
    populate("1 +", 4)
except parfill.ExpressionError as exc:
    position: int = exc.position
    text: str = exc.expression
    message: str = exc.message
    assert (position, text) == (3, "1 +") and message

try:
    populate(lambda i: os._exit(3), 4, workers=2, backend="processes")
except parfill.WorkerDiedError as exc:
    worker: int = exc.worker
    pid: int = exc.pid
    status: int | None = exc.exitcode
    signal: int | None = exc.signal
    held: tuple[int | None, int | None] = (exc.start, exc.stop)
    assert status == 3 and signal is None and pid > 0
    assert isinstance(exc, RuntimeError)

try:
    populate(lambda i: time.sleep(30), 2, workers=1, backend="processes",
             timeout=0.3)
except parfill.TimeoutError as exc:
    assert isinstance(exc, TimeoutError)

lost = parfill.WorkerError("app.Lost", "gone")
type_name: str = lost.type_name
lost_text: str = lost.text
assert isinstance(lost, RuntimeError) and type_name == "app.Lost"
print("ok")
'''

# A user's mistakes: each marked line must be refused, with this error code,
# and nothing else may be.
BAD = '''
import numpy as np

import parfill
from parfill import populate


def half(i: int) -> float:
    return i * 0.5


populate(half, 5, workers="2")  # E: call-overload
populate("i", 5, vectorized=True)  # E: call-overload
populate("i", 5, retries=2)  # E: call-overload
populate(half, 5, params={"k": 1})  # E: call-overload
populate(half, 5, ctx=1234)  # E: call-overload
populate("i", 5, params={"k": "one"})  # E: dict-item
populate(half, 5, schedule="fast")  # E: call-overload
populate(half, 5, backend="gpu")  # E: call-overload
populate(5, 5)  # E: call-overload
populate(half, 5, wrokers=2)  # E: call-overload call-overload
parfill.random(5, dist="gamma")  # E: arg-type
parfill.random(5, seed=1.5)  # E: arg-type
count: str = parfill.cpu_count()  # E: assignment
array: int = populate("i", 5)  # E: assignment
try:
    populate(half, 5, backend="processes")
except parfill.WorkerDiedError as exc:
    exc.exitcode + 1  # E: operator
except parfill.ExpressionError as exc:
    exc.position.upper()  # E: attr-defined
'''


def _expected(source):
    """[(line, error code)] from the "# E: code..." markers of a program."""
    return sorted((n, code) for n, line in enumerate(source.splitlines(), 1)
                  if (m := re.search(r"# E: ([a-z -]+)$", line))
                  for code in m.group(1).split())


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory):
    """mypy --strict on both programs at once (one start: its NumPy stubs
    take seconds to load), as {file name: [(line, code, text)]} and the
    whole output."""
    tmp = tmp_path_factory.mktemp("typing")
    (tmp / "good.py").write_text(GOOD)
    (tmp / "bad.py").write_text(BAD)
    env = dict(os.environ, MYPYPATH=str(PACKAGE_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--show-error-codes", "--hide-error-context", "--no-pretty",
         "--config-file=", "--cache-dir", str(tmp / "cache"),
         "good.py", "bad.py"],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        stop_process(proc)
    found = {"good.py": [], "bad.py": []}
    for line in out.splitlines():
        m = re.match(r"(good|bad)\.py:(\d+): (error|note): (.*?)(?:  \[([a-z-]+)\])?$",
                     line)
        if m:
            found[m.group(1) + ".py"].append(
                (int(m.group(2)), m.group(3), m.group(5), m.group(4)))
    return tmp, found, out


def test_users_program_type_checks_strictly(mypy_output):
    _, found, out = mypy_output
    errors = [e for e in found["good.py"] if e[1] == "error"]
    assert errors == [], out
    # Every form returns an ndarray, as the stubs promise.
    revealed = [e[3] for e in found["good.py"] if e[1] == "note"]
    assert len(revealed) == 1 and re.search(
        r'Revealed type is "numpy\.ndarray\[.*numpy\.dtype\[Any\]\]"',
        revealed[0]), out


def test_users_program_runs(mypy_output):
    """The program mypy accepted also runs: its asserts hold."""
    tmp, _, _ = mypy_output
    runnable = "from typing import reveal_type\n" + GOOD
    proc = subprocess.Popen([sys.executable, "-c", runnable], cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        stop_process(proc)
    assert proc.returncode == 0 and out.rstrip().endswith("ok"), out


def test_users_mistakes_are_refused(mypy_output):
    _, found, out = mypy_output
    errors = sorted((line, code) for line, kind, code, _ in found["bad.py"]
                    if kind == "error")
    assert errors == _expected(BAD), out
    # The overload errors name populate and the argument types.
    first = next(e for e in found["bad.py"] if e[0] == _expected(BAD)[0][0])
    assert 'No overload variant of "populate" matches argument types' in first[3]
    assert '"str"' in first[3], out


def test_type_hints_resolve_at_run_time():
    hints = typing.get_type_hints(parfill.populate)
    assert hints["return"] == npt.NDArray[typing.Any]
    assert typing.get_args(hints["schedule"]) == ("static", "dynamic", "guided")
    assert typing.get_args(hints["backend"]) == (
        "auto", "processes", "threads", "serial")
    assert hints["retries"] is int
    assert str in typing.get_args(hints["func"])
    overloads = typing.get_overloads(parfill.populate)
    assert len(overloads) == 3
    kinds = [typing.get_type_hints(o)["func"] for o in overloads]
    assert kinds[1] is str
    assert "retries" in typing.get_type_hints(overloads[2])
    assert "retries" not in typing.get_type_hints(overloads[1])
    assert typing.get_type_hints(overloads[1])["vectorized"] == \
        typing.Literal[False]
    random_hints = typing.get_type_hints(parfill.random)
    assert typing.get_args(random_hints["dist"]) == ("uniform", "normal")
    assert random_hints["seed"] is int
    assert typing.get_type_hints(parfill.cpu_count) == {"return": int}
    died = typing.get_type_hints(parfill.WorkerDiedError.__init__)
    assert died["exitcode"] == int | None and died["worker"] is int
    assert typing.get_type_hints(parfill.ExpressionError.__init__)[
        "position"] is int


def test_package_is_typed():
    package = Path(parfill.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_core.pyi").is_file()


def test_core_stub_matches_the_module():
    """mypy's stubtest: every name of _core is in the stub and the other way
    round, with the kinds (function, str) the stub says."""
    env = dict(os.environ, MYPYPATH=str(PACKAGE_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mypy.stubtest", "parfill._core",
         "--mypy-config-file=", "--ignore-disjoint-bases"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, out


def _stub_parameters():
    """{function: (positional-only names, other names)} from _core.pyi."""
    tree = ast.parse((Path(parfill.__file__).parent / "_core.pyi").read_text())
    return {node.name: ([a.arg for a in node.args.posonlyargs],
                        [a.arg for a in node.args.args + node.args.kwonlyargs])
            for node in tree.body if isinstance(node, ast.FunctionDef)}


def _native_half():
    return ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(lambda i: i * 0.5)


def test_core_stub_keywords_are_the_real_ones():
    """Every _core function called with every argument by the name the stub
    gives it: the C keyword lists accept exactly those names (a wrong one is
    a TypeError), and the fills compute the right values."""
    stub = _stub_parameters()
    native = _native_half()
    address = ctypes.cast(native, ctypes.c_void_p).value
    out = {name: np.zeros(6) for name in stub}
    values = {
        "fill_callable": dict(
            func=lambda i: i * 0.5, out=out["fill_callable"], vectorized=False,
            backend="serial", workers=1, schedule="static", chunk=2, start=0,
            budget=-1.0, progress=None, timeout=-1.0, retries=0, guard=None,
            window=None),
        "fill_expr": dict(
            text="i * scale", out=out["fill_expr"], params={"scale": 0.5}, workers=1,
            schedule="static", chunk=2, progress=None, timeout=-1.0,
            window=None),
        "fill_native": dict(
            address=address, kind="element", out=out["fill_native"], ctx=None,
            workers=1, schedule="static", chunk=2, progress=None, timeout=-1.0,
            window=None),
        "fill_random": dict(
            out=out["fill_random"], dist="uniform", key0=7, key1=0, stream=0,
            workers=1, schedule="static", chunk=2, progress=None, timeout=-1.0,
            window=None),
        "shared_empty": dict(shape=(2, 3), dtype=np.int16),
        "in_worker": {}, "cpu_count": {},
        "pyvm_opcodes": {}, "pyvm_functions": {},
    }
    kernel = parfill.translate(lambda i: i * 0.5, 1)
    values["fill_translated"] = dict(
        code=kernel.code, iconsts=kernel.iconsts, fconsts=kernel.fconsts,
        ndim=kernel.ndim, nregs=kernel.nregs, out=out["fill_translated"],
        workers=1, schedule="static", chunk=2, progress=None, timeout=-1.0,
        first=0, _isa=-1, window=None)
    positional = {"is_shared": ["array"], "privatize": ["array"]}
    assert set(stub) == set(values) | set(positional)
    for name, (posonly, names) in stub.items():
        if name in positional:
            assert posonly == positional[name] and names == [], name
            continue
        assert posonly == [] and names == list(values[name]), name
    halves = np.arange(6) * 0.5
    assert _core.fill_callable(**values["fill_callable"]) == 6
    for name in ("fill_expr", "fill_native", "fill_random"):
        assert getattr(_core, name)(**values[name]) is None
    assert _core.fill_translated(**values["fill_translated"]) == -1
    assert np.array_equal(out["fill_translated"], halves)
    assert "F_MUL" in _core.pyvm_opcodes(**values["pyvm_opcodes"])
    assert "sin" in _core.pyvm_functions(**values["pyvm_functions"])
    assert np.array_equal(out["fill_callable"], halves)
    assert np.array_equal(out["fill_expr"], halves)
    assert np.array_equal(out["fill_native"], halves)
    assert np.array_equal(out["fill_random"], np.random.Generator(
        np.random.Philox(key=7)).random(6))
    shared = _core.shared_empty(**values["shared_empty"])
    assert shared.shape == (2, 3) and shared.dtype == np.int16
    assert _core.is_shared(shared) is True
    assert _core.privatize(shared) is True
    assert isinstance(_core.in_worker(), bool)
    assert _core.cpu_count() == parfill.cpu_count() >= 1
    # The METH_O functions take no keywords; a name the C code does not know
    # is refused (so a stub with a wrong name could not pass above).
    with pytest.raises(TypeError):
        _core.is_shared(array=shared)
    with pytest.raises(TypeError):
        _core.fill_expr(text="i", out=np.zeros(2), count=2)
