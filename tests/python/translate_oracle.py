"""The oracle of the translator's front-end tests (test_translate_frontend.py,
test_translate_loops_frontend.py): a function is translated and its program
run by the pure-Python reference interpreter (python/parfill/_translate/
reference.py) on a set of indices, and each result must equal calling the
function -- same type, same bits -- or be a bail exactly where Python raises,
returns what the VM cannot hold, or the contract makes the VM bail.

Pure Python on purpose (no NumPy, no extension): tools/run-translate-tests
runs those files under every supported CPython found (3.11, 3.12, 3.13).
"""
from __future__ import annotations

import __future__
import ast
import importlib
import importlib.util
import os
import struct
import sys


def _load():
    try:
        import parfill._translate as t      # the checkout's package
        return t
    except ImportError:
        # An interpreter without the extension (or NumPy): load the pure
        # Python subpackage on its own, once.
        name = "_parfill_translate"
        if name in sys.modules:
            return sys.modules[name]
        root = os.path.join(os.path.dirname(__file__), "..", "..", "python",
                            "parfill", "_translate")
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(root, "__init__.py"),
            submodule_search_locations=[root])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod


T = _load()
_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def shipped_function(relpath, name):
    """The function ``name`` defined at the top level of the checkout's
    ``relpath`` (e.g. python/parfill/demo.py's make_mandelbrot), compiled on
    its own from that file's source: the tests translate the shipped code
    itself, also under an interpreter that cannot import the package."""
    path = os.path.join(_ROOT, relpath)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    node = next(n for n in tree.body
                if isinstance(n, ast.FunctionDef) and n.name == name)
    code = compile(ast.Module([node], []), path, "exec", dont_inherit=True,
                   flags=__future__.annotations.compiler_flag)
    namespace = {}
    exec(code, namespace)
    return namespace[name]
reference = importlib.import_module(T.__name__ + ".reference")
Bail = reference.Bail

_CONTRACT_BAILS = ("int64 overflow", "int true division above 2**53")


def bits(x):
    return struct.pack("<d", x)


def same(a, b):
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return bits(a) == bits(b)
    if type(a) is complex:
        return bits(a.real) == bits(b.real) and bits(a.imag) == bits(b.imag)
    return a == b


def holdable(v, complex_ok=False):
    """A value the VM returns (RET_I / RET_F / RET_B, and RET_C when the
    program may hold complex numbers)."""
    return type(v) in (float, bool) or (complex_ok and type(v) is complex) or \
        (type(v) is int and -2**63 <= v < 2**63)


def check(f, ndim, points, bail=None, big=False, values=True,
          complex_ok=False, max_steps=None):
    """Translate f and compare the reference run with Python on each point.
    ``bail(*idx)`` is where the contract makes the VM bail although Python
    returns a holdable value; ``big``: the points reach 2**63, where an
    intermediate result may leave int64 (or an int true division pass 2**53)
    although the final value fits -- the contract's bail, redone in Python.
    Returns (values, bails)."""
    k = T.translate(f, ndim)
    k.program.validate()
    nv = nb = 0
    for idx in points:
        try:
            want = f(*idx)
            raised = None
        except Exception as e:          # noqa: BLE001 - any Python error
            want, raised = None, e
        got = reference.run(k.program, idx, max_steps=max_steps)
        expect_bail = raised is not None or \
            not holdable(want, complex_ok) or bool(bail and bail(*idx))
        if isinstance(got, Bail):
            nb += 1
            contract = big and any(w in got.why for w in _CONTRACT_BAILS)
            assert expect_bail or contract, (f"bail at {idx}: {got}; Python "
                                             f"gives {want!r}\n{k.source}")
        else:
            nv += 1
            assert not expect_bail, (
                f"{idx}: got {got!r}, Python "
                f"{'raises ' + repr(raised) if raised else 'gives ' + repr(want)}"
                f"\n{k.source}")
            assert same(got, want), f"{idx}: got {got!r}, want {want!r}\n{k.source}"
    if values:
        assert nv, "no point computed a value"
    return nv, nb
