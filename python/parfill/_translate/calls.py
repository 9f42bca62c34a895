"""Calls the translator understands: the builtins ``abs min max int float
bool round pow divmod complex range``, the methods ``conjugate()`` of numbers
and the ``math`` functions of SPEC section 9.

The callee is identified by identity (the builtin or math function object
itself, however it was reached: ``math.sin``, ``m.sin`` for ``import math as
m``, ``from math import sin``), so a shadowed or rebound name is simply some
other object and refused.
"""
from __future__ import annotations

import builtins
import math
from typing import Callable

from .errors import Refusal
from .program import MATH1, MATH2
from .semantics import (Builder, DeadPath, binary, compare, conjugate, fold,
                        scalar, select, truth)
from .values import (K, Method, Obj, Reg, Rng, Scalar, Tup, Value, is_ufunc,
                     math_name, real)

_BUILTINS: dict[int, str] = {
    id(getattr(builtins, n)): n
    for n in ("abs", "min", "max", "int", "float", "bool", "round", "pow",
              "divmod", "complex", "range")}


def builtin_name(f: object) -> str | None:
    name = _BUILTINS.get(id(f))
    if name is not None and getattr(builtins, name) is f:
        return name
    return None


def call(b: Builder, callee: Value, args: list[Value]) -> Value:
    if not isinstance(callee, Obj):
        raise Refusal("call of a number")
    f = callee.value
    if isinstance(f, Method):
        if args:
            raise Refusal(f"{callee.label}() with arguments")
        return conjugate(b, f.recv)
    name = builtin_name(f)
    if name is not None:
        return _BUILTIN[name](b, args)
    name = math_name(f)
    if name is not None:
        return _math(b, name, args)
    if is_ufunc(f):
        raise Refusal(f"numpy.{getattr(f, '__name__', '?')}: not translated")
    raise Refusal(f"call of {callee.label}")


def _consts(args: list[Value]) -> list[int | float | complex] | None:
    """The Python values of all-constant arguments, else None."""
    consts = [a.value for a in args if isinstance(a, K)]
    return consts if len(consts) == len(args) else None


def _arity(name: str, args: list[Value], *counts: int) -> None:
    if len(args) not in counts:
        raise Refusal(f"{name}() with {len(args)} arguments")


# -- builtins -----------------------------------------------------------------

def _abs(b: Builder, args: list[Value]) -> Value:
    _arity("abs", args, 1)
    x = scalar(args[0], "abs()")
    if isinstance(x, K):
        return fold(abs, x.value)
    if x.kind == "F":
        return b.new("F", "F_ABS", x.n)
    if x.kind == "C":
        return b.new("F", "C_ABS", x.n)    # _Py_c_abs; overflow bails
    if x.kind == "B":
        return b.new("I", "B2I", x.n)      # abs(True) is the int 1
    return b.new("I", "I_ABS", x.n)


def _conversion(name: str, pytype: type, args: list[Value]) -> Value:
    """The argument of ``int(x)``/``float(x)``: no argument is the type's
    zero and a constant folds (both by Python itself); a run-time scalar
    comes back for the caller to convert."""
    _arity(name, args, 0, 1)
    if not args:
        return K(pytype())
    x = scalar(args[0], f"{name}()")
    return fold(pytype, x.value) if isinstance(x, K) else x


def _int(b: Builder, args: list[Value]) -> Value:
    x = _conversion("int", int, args)
    if not isinstance(x, Reg):
        return x
    if x.kind == "F":
        return b.new("I", "F2I_TRUNC", x.n)
    return Reg("I", b.ireg(x))


def _float(b: Builder, args: list[Value]) -> Value:
    x = _conversion("float", float, args)
    return Reg("F", b.freg(x)) if isinstance(x, Reg) else x


def _bool(b: Builder, args: list[Value]) -> Value:
    _arity("bool", args, 0, 1)
    return truth(b, args[0]) if args else K(False)


def _round(b: Builder, args: list[Value]) -> Value:
    _arity("round", args, 1, 2)
    consts = _consts(args)
    if consts is not None:
        return fold(round, *consts)
    if len(args) == 2:
        raise Refusal("round() with ndigits")
    x = scalar(args[0], "round()")
    assert isinstance(x, Reg)
    if x.kind == "F":
        return b.new("I", "F_ROUND_I", x.n)
    return Reg("I", b.ireg(x))             # round(int) and round(bool): int


def _pow(b: Builder, args: list[Value]) -> Value:
    _arity("pow", args, 2, 3)
    if len(args) == 3:
        consts = _consts(args)
        if consts is None:
            raise Refusal("pow() with a modulus")
        return fold(pow, *consts)
    return binary(b, "**", args[0], args[1])


def _divmod(b: Builder, args: list[Value]) -> Value:
    _arity("divmod", args, 2)
    consts = _consts(args)
    if consts is not None:
        return fold(divmod, *consts)
    # Python's divmod is (x // y, x % y) for ints and floats alike
    # (float_divmod and float_floor_div/float_rem share _float_div_mod).
    return Tup((binary(b, "//", args[0], args[1]),
                binary(b, "%", args[0], args[1])))


def _minmax(name: str) -> Callable[[Builder, list[Value]], Value]:
    op = "<" if name == "min" else ">"

    def impl(b: Builder, args: list[Value]) -> Value:
        items = args
        if len(args) == 1 and isinstance(args[0], Tup):
            items = list(args[0].items)
        if not items:
            return fold(min if name == "min" else max, ())
        if len(items) == 1:
            raise Refusal(f"{name}() of one {scalar(items[0], name).pytype.__name__}")
        vals = [scalar(v, f"{name}()") for v in items]
        consts = _consts(list(vals))
        if consts is not None:
            return fold(min if name == "min" else max, *consts)
        return _sequential(b, name, op, vals)
    return impl


def _sequential(b: Builder, name: str, op: str, vals: list[Scalar]) -> Value:
    """CPython's min_max: the first item is the best so far, a later one
    replaces it only when ``item < best`` (``>`` for max) -- NaN never
    replaces and is never replaced, and the result is the winning object,
    with its type. When the items' types differ the result's type depends on
    the values: speculate the type of the run-time items (else the first
    item's) and bail on any element where an item of another type wins."""
    runtime = {v.pytype for v in vals if isinstance(v, Reg)}
    want = runtime.pop() if len(runtime) == 1 else vals[0].pytype
    best = vals[0]
    for v in vals[1:]:
        cond = compare(b, op, v, best)
        if v.pytype is best.pytype:
            best = select(b, cond, v, best)
        elif best.pytype is want or v.pytype is want:
            # The item of the wanted type must come out: v must not win
            # over a best of that type, and must win over one of another.
            must_win = best.pytype is not want
            if isinstance(cond, K):
                if cond.value:
                    best = v
            else:
                b.guard(cond, not must_win)
                if must_win:
                    best = v
        else:
            raise Refusal(f"{name}() of {best.pytype.__name__} and "
                          f"{v.pytype.__name__} with a {want.__name__}")
    return best


def _complex(b: Builder, args: list[Value]) -> Value:
    """complex_new with number arguments: ``complex(x)`` is ``(float(x),
    0.0)`` (a complex is returned as it is); ``complex(a, b)`` of real
    numbers is ``(float(a), float(b))`` with no arithmetic; a complex
    argument among two is folded into the other part as complex_new does
    (``re = a.real - b.imag``, ``im = b.real + a.imag``)."""
    _arity("complex", args, 0, 1, 2)
    if not args:
        return K(0j)
    vals = [scalar(v, "complex()") for v in args]
    consts = _consts(list(vals))
    if consts is not None:
        return fold(complex, *consts)
    if len(vals) == 1:
        return Reg("C", b.creg(vals[0]))
    x, y = vals
    if x.pytype is not complex and y.pytype is not complex:
        return b.new("C", "C_MAKE", b.freg(x), b.freg(y))
    re = Reg("F", b.freg(x)) if x.pytype is not complex else \
        b.new("F", "C_REAL", b.reg(x))
    im = Reg("F", b.freg(y)) if y.pytype is not complex else \
        b.new("F", "C_REAL", b.reg(y))
    if y.pytype is complex:
        re = b.new("F", "F_SUB", re.n, b.new("F", "C_IMAG", b.reg(y)).n)
    if x.pytype is complex:
        im = b.new("F", "F_ADD", im.n, b.new("F", "C_IMAG", b.reg(x)).n)
    return b.new("C", "C_MAKE", re.n, im.n)


def _range(b: Builder, args: list[Value]) -> Value:
    """A range object of int scalars; only a for loop uses it. A float or
    complex argument is a TypeError, a zero step a ValueError (guarded when
    the step is known only at run time)."""
    _arity("range", args, 1, 2, 3)
    ints: list[Scalar] = []
    for v in args:
        x = scalar(v, "range()")
        if x.pytype not in (int, bool):
            raise DeadPath(f"TypeError: range() of a {x.pytype.__name__}")
        ints.append(K(int(real(x))) if isinstance(x, K) else
                    Reg("I", b.ireg(x)))
    start: Scalar
    stop: Scalar
    step: Scalar
    if len(ints) == 1:
        start, stop, step = K(0), ints[0], K(1)
    elif len(ints) == 2:
        start, stop, step = ints[0], ints[1], K(1)
    else:
        start, stop, step = ints
    if isinstance(step, K):
        if step.value == 0:
            raise DeadPath("ValueError: range() arg 3 must not be zero")
    else:
        zero = compare(b, "==", step, K(0))
        assert isinstance(zero, Reg)
        b.guard(zero, True)
    return Rng(start, stop, step)


_BUILTIN: dict[str, Callable[[Builder, list[Value]], Value]] = {
    "complex": _complex, "range": _range,
    "abs": _abs, "int": _int, "float": _float, "bool": _bool,
    "round": _round, "pow": _pow, "divmod": _divmod,
    "min": _minmax("min"), "max": _minmax("max"),
}


# -- math -------------------------------------------------------------------

def _math(b: Builder, name: str, args: list[Value]) -> Value:
    vals = [scalar(v, f"math.{name}()") for v in args]
    if any(v.pytype is complex for v in vals) and hasattr(math, name):
        # math functions take real numbers only: a TypeError every call.
        raise DeadPath(f"TypeError: math.{name} of a complex")
    consts = _consts(list(vals))
    if consts is not None:
        return fold(getattr(math, name), *consts)
    if name in MATH1:
        if name == "log" and len(vals) == 2:
            # math.log(x, base) is log(x) / log(base), a float division.
            num = b.new("F", "F_CALL1", b.freg(vals[0]), "log")
            den = b.new("F", "F_CALL1", b.freg(vals[1]), "log")
            return b.new("F", "F_DIV", num.n, den.n)
        _arity(f"math.{name}", args, 1)
        return b.new("F", "F_CALL1", b.freg(vals[0]), name)
    if name in MATH2:
        _arity(f"math.{name}", args, 2)
        return b.new("F", "F_CALL2", b.freg(vals[0]), b.freg(vals[1]), name)
    if name in ("floor", "ceil", "trunc"):
        _arity(f"math.{name}", args, 1)
        x = vals[0]
        assert isinstance(x, Reg)
        if x.kind != "F":
            return Reg("I", b.ireg(x))     # int.__floor__ etc.: the int
        op = {"floor": "F_FLOOR_I", "ceil": "F_CEIL_I",
              "trunc": "F2I_TRUNC"}[name]
        return b.new("I", op, x.n)
    if name in ("isnan", "isinf", "isfinite"):
        _arity(f"math.{name}", args, 1)
        x = vals[0]
        assert isinstance(x, Reg)
        if x.kind != "F":
            return K(name == "isfinite")    # an int64 is finite
        return b.new("B", "F_" + name.upper(), x.n)
    raise Refusal(f"math.{name}")
