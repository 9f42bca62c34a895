"""Symbolic values of the front end, and what it reads from the function.

On the simulated stack and in local variables a value is one of:

- ``Reg``: a virtual register holding a Python int (I), float (F), bool (B)
  or complex (C) known only at run time;
- ``K``: a constant scalar known at translation (a literal, a global, a
  closure cell, a default, a folded expression) -- folded with Python itself;
- ``Tup``: a tuple of values, known in shape at translation (``a, b = b, a``,
  ``divmod``); it never exists at run time;
- ``Rng``: a ``range(start, stop, step)`` object (int scalars), and
  ``RangeIter``: its iterator on the stack of a ``for`` loop, ``cur`` the
  next value it yields; neither exists at run time (the loop's registers do);
- ``Obj``: any other object (a module, a function, None, a string): usable
  only where the translator knows what it means (a call of ``math.sin``),
  refused anywhere else.

Everything read from outside the code object (globals, builtins, closure
cells, defaults, module attributes) is recorded as a ``Read``: the cache
re-reads them and reuses a translation only when every value is the same.
"""
from __future__ import annotations

import math
import struct
import sys
from types import FunctionType, ModuleType
from typing import NamedTuple, Union

PYTYPE = {"I": int, "F": float, "B": bool, "C": complex}
KIND = {int: "I", float: "F", bool: "B", complex: "C"}


class Reg(NamedTuple):
    kind: str   # 'I', 'F', 'B' or 'C'
    n: int

    @property
    def pytype(self) -> type:
        return PYTYPE[self.kind]


class K(NamedTuple):
    value: int | float | bool | complex

    @property
    def pytype(self) -> type:
        return type(self.value)

    @property
    def kind(self) -> str:
        return KIND[type(self.value)]


class Tup(NamedTuple):
    items: tuple[Value, ...]


class Rng(NamedTuple):
    start: "Scalar"
    stop: "Scalar"
    step: "Scalar"


class RangeIter(NamedTuple):
    cur: "Scalar"
    stop: "Scalar"
    step: "Scalar"


class Method(NamedTuple):
    """``recv.name`` of a number, waiting for its call (``z.conjugate()``)."""
    name: str
    recv: "Scalar"


class Obj(NamedTuple):
    value: object
    label: str   # how the user wrote it, for messages ('math.sin', 'foo')


class Unbound(NamedTuple):
    """A local bound on some paths into a block but not on others."""
    name: str


Value = Union[Reg, K, Tup, Rng, RangeIter, Obj, Unbound]
Scalar = Union[Reg, K]


def real(k: K) -> int | float:
    """The value of a constant the caller knows is not complex (its type
    was tested, or it is a range bound): a real number to compare or
    convert."""
    v = k.value
    assert not isinstance(v, complex), v
    return v


_NULL_MARK = object()
NULL = Obj(_NULL_MARK, "NULL")    # the call protocol's empty self slot


def is_null(v: Value) -> bool:
    return isinstance(v, Obj) and v.value is _NULL_MARK


def same(x: object, y: object) -> bool:
    """Equal as far as a translation can tell: same type and value, floats
    by bit pattern (0.0 and -0.0 translate differently), tuples item by
    item, anything else by identity."""
    if type(x) is not type(y):
        return False
    if type(x) is float:
        assert isinstance(y, float)
        return struct.pack("<d", x) == struct.pack("<d", y)
    if type(x) in (int, bool):
        return x == y
    if type(x) is complex:
        assert isinstance(x, complex) and isinstance(y, complex)
        return same(x.real, y.real) and same(x.imag, y.imag)
    if type(x) is tuple:
        assert isinstance(x, tuple) and isinstance(y, tuple)
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
    return x is y


def parts(v: Value) -> tuple[Value, ...] | None:
    """The items of a structured value (a tuple, a range, its iterator)."""
    if isinstance(v, Tup):
        return v.items
    if isinstance(v, (Rng, RangeIter)):
        return tuple(v)
    return None


def rebuild(v: Value, items: list[Value]) -> Value:
    if isinstance(v, Tup):
        return Tup(tuple(items))
    assert isinstance(v, (Rng, RangeIter))
    # A range's parts are int scalars, and merging or widening them keeps
    # them scalars (a non-scalar is refused first).
    start, stop, step = items
    assert isinstance(start, (Reg, K)) and isinstance(stop, (Reg, K)) \
        and isinstance(step, (Reg, K))
    return type(v)(start, stop, step)


def same_value(x: Value, y: Value) -> bool:
    if isinstance(x, K) and isinstance(y, K):
        return same(x.value, y.value)
    if isinstance(x, Obj) and isinstance(y, Obj):
        return x.value is y.value
    px, py = parts(x), parts(y)
    if px is not None or py is not None:
        return type(x) is type(y) and px is not None and py is not None \
            and len(px) == len(py) \
            and all(same_value(a, b) for a, b in zip(px, py))
    if isinstance(x, K) or isinstance(y, K):
        return False             # K(1) == Reg? never; K(0) == K(False) is not
    return type(x) is type(y) and x == y


def classify(v: object, label: str) -> Value:
    """The symbolic value of an object read at translation. Exact types
    only: a subclass (numpy.float64 is a float) follows other rules."""
    if type(v) in (int, float, bool, complex):
        assert isinstance(v, (int, float, bool, complex))
        return K(v)
    if type(v) is tuple:
        assert isinstance(v, tuple)
        return Tup(tuple(classify(x, f"{label}[{k}]") for k, x in enumerate(v)))
    return Obj(v, label)


# -- reads ------------------------------------------------------------------

MISSING = object()


class Read(NamedTuple):
    kind: str        # 'global', 'deref', 'default', 'attr'
    key: object      # name, cell index, default index, (module, name)


def current(func: FunctionType, read: Read) -> object:
    """The value ``read`` sees in ``func`` now (MISSING if none)."""
    if read.kind == "global":
        name = read.key
        assert isinstance(name, str)
        g = func.__globals__
        if name in g:
            return g[name]
        b: dict[str, object] = getattr(func, "__builtins__")
        return b.get(name, MISSING)
    if read.kind == "deref":
        assert isinstance(read.key, int)
        cells = func.__closure__
        assert cells is not None
        try:
            return cells[read.key].cell_contents
        except ValueError:
            return MISSING
    if read.kind == "default":
        assert isinstance(read.key, int)
        defaults = func.__defaults__ or ()
        return defaults[read.key] if read.key < len(defaults) else MISSING
    assert read.kind == "attr"
    key = read.key
    assert isinstance(key, tuple)
    module, name = key
    assert isinstance(name, str)
    return getattr(module, name, MISSING)


# -- known modules and functions ----------------------------------------------

MATH: ModuleType = math
# The math module's functions as they were when parfill was imported: a
# monkeypatched math.sin is another object and is not translated.
_MATH_ORIG: dict[str, object] = {
    n: getattr(math, n) for n in dir(math) if callable(getattr(math, n))}


def math_name(f: object) -> str | None:
    """'sin' for math.sin (however it was reached), else None."""
    name = getattr(f, "__name__", None)
    if isinstance(name, str) and _MATH_ORIG.get(name) is f:
        return name
    return None


def is_numpy(m: object) -> bool:
    """numpy itself, without importing it (the front end works without)."""
    return isinstance(m, ModuleType) and m.__name__ == "numpy" \
        and sys.modules.get("numpy") is m


def is_ufunc(f: object) -> bool:
    t = type(f)
    return t.__name__ == "ufunc" and t.__module__ == "numpy"
