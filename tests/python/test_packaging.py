"""The wheel: what ``pip install`` gives a user who never runs ``make``.

A wheel is built (``pip wheel --no-deps --no-build-isolation``) from a copy of
the checkout's sources -- so a concurrent ``make`` in the checkout cannot race
the build, and nothing is built into the checkout -- and listed: the library,
the demo and the ``parfill`` command, no benchmark module. It is then
installed into a fresh virtual environment (no system site-packages, NumPy
from the registry) and used from a directory outside the checkout: the
command on the environment's PATH, ``import parfill`` and ``python -m parfill
demo``. Each result is checked against NumPy. About a minute on 2 cores.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Not sources: what make, pip and pytest leave in a checkout.
_TOP_LEVEL_OUTPUTS = {".git", ".venv", "build", "dist"}
_OUTPUTS = shutil.ignore_patterns("__pycache__", "*.so", "*.o", "*.egg-info", ".hypothesis",
                                  ".pytest_cache", "*.npy", "*.png")


def _ignore(directory: str, names: list[str]) -> set[str]:
    ignored = set(_OUTPUTS(directory, names))
    if Path(directory) == ROOT:
        ignored |= _TOP_LEVEL_OUTPUTS & set(names)
    return ignored


def _run(cmd, *, timeout, cwd, env=None):
    """Run to completion (subprocess.run kills the child on timeout) and capture."""
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One scratch directory for the module: the copy, the wheel, the venv (~150 MB)."""
    d = tmp_path_factory.mktemp("packaging")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_ignore, symlinks=True)
    out = work / "wheelhouse"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--disable-pip-version-check", "-q", "-w", out, src], timeout=600, cwd=work))
    wheels = list(out.glob("parfill-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(work, wheel) -> Path:
    """A fresh virtual environment with the wheel (and NumPy from the registry) installed."""
    env_dir = work / "venv"
    _ok(_run([sys.executable, "-m", "venv", env_dir], timeout=120, cwd=work))
    _ok(_run([env_dir / "bin" / "python", "-m", "pip", "install", "-q",
              "--disable-pip-version-check", "--no-input", wheel], timeout=300, cwd=work))
    return env_dir


@pytest.fixture
def user_env(venv, tmp_path):
    """Environment and directory of a user of that venv: outside the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
    env["VIRTUAL_ENV"] = str(venv)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    assert ROOT not in cwd.parents
    return env, cwd


def test_wheel_holds_the_package_and_no_benchmarks(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("parfill/bench", "benchmarks/"))], names
    assert not [n for n in names if "bench" in n.lower()], names
    top = {n.split("/")[0] for n in names}
    assert top == {"parfill", "parfill-0.1.0.dist-info", "parfill-0.1.0.data"}, top
    for needed in ("parfill/__init__.py", "parfill/__main__.py", "parfill/demo.py",
                   "parfill/_article.py", "parfill/py.typed", "parfill/_core.pyi"):
        assert needed in names
    assert [n for n in names if n.startswith("parfill/_core.") and n.endswith(".so")]


def test_wheel_carries_the_command_as_a_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        scripts = [i for i in z.infolist() if "/scripts/" in i.filename]
        assert [i.filename for i in scripts] == ["parfill-0.1.0.data/scripts/parfill"]
        info = scripts[0]
        assert (info.external_attr >> 16) & 0o111, oct(info.external_attr >> 16)
        assert z.read(info)[:4] == b"\x7fELF"  # the C binary, not a Python wrapper


def test_installed_command_fills_a_file(venv, user_env):
    env, cwd = user_env
    command = venv / "bin" / "parfill"
    assert command.is_file() and not command.is_symlink()  # the wheel's copy, not make's link
    assert shutil.which("parfill", path=env["PATH"]) == str(command)
    version = _ok(_run(["parfill", "--version"], timeout=60, cwd=cwd, env=env))
    assert version.stdout.strip() == "parfill 0.1.0"
    _ok(_run(["parfill", "fill", "i*2", "--shape", "10", "-o", "x.npy"], timeout=60, cwd=cwd,
             env=env))
    a = np.load(cwd / "x.npy")
    assert a.dtype == np.float64 and a.shape == (10,)
    assert np.array_equal(a, np.arange(10) * 2.0)
    # Statically linked with libparfill: no libparfill.so needed at run time.
    ldd = shutil.which("ldd")
    if ldd:
        assert "libparfill" not in _run([ldd, command], timeout=60, cwd=cwd).stdout


PROGRAM = """
import json, sys, parfill, numpy
a = parfill.populate(lambda i, j: i * 10 + j, (3, 4), numpy.int64, workers=2)
e = parfill.populate("i * 10 + j", (3, 4), numpy.int64)
try:
    import benchmarks
    bench = True
except ImportError:
    bench = False
print(json.dumps({"a": a.tolist(), "dtype": str(a.dtype), "e": e.tolist(),
                  "file": parfill.__file__, "bench": bench, "prefix": sys.prefix}))
"""


def test_installed_package_imports_and_populates(venv, user_env):
    env, cwd = user_env
    got = json.loads(_ok(_run(["python", "-c", PROGRAM], timeout=120, cwd=cwd, env=env)).stdout)
    ref = np.empty((3, 4), np.int64)
    for idx in np.ndindex(ref.shape):
        ref[idx] = idx[0] * 10 + idx[1]
    assert got["a"] == ref.tolist() and got["dtype"] == "int64"
    assert got["e"] == ref.tolist()
    assert Path(got["prefix"]) == venv
    assert Path(got["file"]).is_relative_to(venv)  # the installed copy, not the checkout
    assert got["bench"] is False


def test_installed_demo_and_bench_pointer(venv, user_env):
    env, cwd = user_env
    demo = _ok(_run(["python", "-m", "parfill", "demo", "--help"], timeout=120, cwd=cwd, env=env))
    assert demo.stdout.startswith("usage: python -m parfill demo")
    assert "--size" in demo.stdout
    bench = _run(["python", "-m", "parfill", "bench"], timeout=120, cwd=cwd, env=env)
    assert bench.returncode == 2
    assert "python -m benchmarks" in bench.stderr and "Traceback" not in bench.stderr
    assert len(bench.stderr.strip().splitlines()) == 1
