"""Python's operators on typed values: which op, with which conversions.

Each function takes symbolic values (see values.py) and returns the value of
the Python expression, emitting the instructions that compute it. The type
rules are Python's exactly -- ``int / int`` is a float, ``bool + bool`` an
int, ``bool & bool`` a bool, a float operand converts the int one with
``float(int)``, a complex operand converts the other one with
``complex(x)`` first (3.11-3.13's ``to_complex``; 3.14 changed mixed-mode
arithmetic and is refused) -- and an operation Python would refuse with a TypeError on
every call is refused here. Constant operands are folded by Python itself;
an exception while folding means the path always raises in Python
(``DeadPath``: the front end ends it with BAIL, and the element is redone in
Python, which raises). Guards live in the VM's ops (overflow, division by
zero, ...), except type speculation, which the front end guards itself.
"""
from __future__ import annotations

import operator
import warnings
from typing import Callable, Union

from .errors import Refusal
from .program import Instr, Program, float_key
from .values import (K, Method, Obj, RangeIter, Reg, Rng, Scalar, Tup,
                     Unbound, Value, classify, real, same)

_INT64 = (-2**63, 2**63)


def _int_text(x: int) -> str:
    """An int for a message: its digits, or its size past 200 bits (str()
    refuses ints past 4300 digits, and such digits tell nobody anything)."""
    return str(x) if x.bit_length() <= 200 else f"of {x.bit_length()} bits"


class DeadPath(Exception):
    """Python raises on every execution of this path."""


class Guard:
    """Bail if register ``cond`` equals ``bail_if`` (in a block's body)."""

    def __init__(self, cond: int, bail_if: bool, line: int | None) -> None:
        self.cond = cond
        self.bail_if = bail_if
        self.line = line


Item = Union[Instr, Guard]


class Builder:
    """Where instructions go: the program (registers, constants) and the
    body of the block being translated."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.body: list[Item] = []
        self.line: int | None = None

    def emit(self, op: str, dst: int = 0, a: object = 0, b: object = 0,
             c: object = 0) -> None:
        self.body.append(Instr(op, dst, a, b, c, self.line))

    def new(self, kind: str, op: str, a: object = 0, b: object = 0,
            c: object = 0) -> Reg:
        r = Reg(kind, self.prog.reg(kind))
        self.emit(op, r.n, a, b, c)
        return r

    def instrs(self) -> list[Instr]:
        """The body as plain instructions: what an edge's moves are built
        from, where no guard is emitted."""
        out = []
        for it in self.body:
            assert isinstance(it, Instr)
            out.append(it)
        return out

    def guard(self, cond: Reg, bail_if: bool) -> None:
        assert cond.kind == "B"
        self.body.append(Guard(cond.n, bail_if, self.line))

    def reg(self, v: Scalar) -> int:
        """The register holding ``v`` (constants are loaded)."""
        if isinstance(v, Reg):
            return v.n
        # Constants are loaded once, in the program's prologue, into a
        # register nothing else writes: a loop body then does not reload
        # them on every iteration.
        x = v.value
        # (K values have exact types: isinstance is the type test.)
        key = (v.kind, float_key(x.real) + float_key(x.imag)
               if isinstance(x, complex) else
               float_key(x) if isinstance(x, float) else int(x))
        r = self.prog.kregs.get(key)
        if r is None:
            kb = Builder(self.prog)
            kb.line = self.line
            r = kb.const(v).n
            self.prog.prologue += kb.instrs()
            self.prog.kregs[key] = r
        return r

    def const(self, v: K, dst: int | None = None) -> Reg:
        """Load constant ``v`` into register ``dst`` (a new one if None)."""
        x = v.value
        kind = v.kind
        if isinstance(x, bool):
            op, k = "B_CONST", int(x)
        elif isinstance(x, complex):
            op, k = "C_CONST", self.prog.cconst(x)
        elif isinstance(x, int):
            if not _INT64[0] <= x < _INT64[1]:
                raise Refusal(f"integer {_int_text(x)} outside int64 at run time")
            op, k = "I_CONST", self.prog.iconst(x)
        else:
            op, k = "F_CONST", self.prog.fconst(x)
        if dst is None:
            return self.new(kind, op, k)
        self.emit(op, dst, k)
        return Reg(kind, dst)

    def ireg(self, v: Scalar) -> int:
        """An int or bool as an I register (Python's int(bool))."""
        _not_complex(v, "an int")
        if v.pytype is bool:
            if isinstance(v, K):
                return self.reg(K(int(real(v))))
            return self.new("I", "B2I", v.n).n
        assert v.pytype is int
        return self.reg(v)

    def freg(self, v: Scalar) -> int:
        """A real scalar as an F register, converted as a float operator
        converts its other operand (float(int), exact on int64)."""
        _not_complex(v, "a float")
        if v.pytype is float:
            return self.reg(v)
        if isinstance(v, K):
            try:
                return self.reg(K(float(real(v))))
            except OverflowError:
                raise DeadPath("int too large to convert to float")
        return self.new("F", "B2F" if v.kind == "B" else "I2F", v.n).n

    def creg(self, v: Scalar) -> int:
        """Any scalar as a C register, converted as a complex operator
        converts its other operand in 3.11-3.13: ``(float(x), 0.0)``."""
        if v.pytype is complex:
            return self.reg(v)
        if isinstance(v, K):
            try:
                return self.reg(K(complex(float(real(v)), 0.0)))
            except OverflowError:
                raise DeadPath("int too large to convert to float")
        return self.new("C", v.kind + "2C", v.n).n


def _not_complex(v: Scalar, want: str) -> None:
    # Every use of a complex where Python needs a real number (float(),
    # int(), math.*, //, %, ordering, bit operators) is a TypeError on
    # every call: the path bails and Python raises.
    if v.pytype is complex:
        raise DeadPath(f"TypeError: a complex where {want} is needed")


def describe(v: Value) -> str:
    if isinstance(v, Tup):
        return "a tuple"
    if isinstance(v, Rng):
        return "a range object"
    if isinstance(v, RangeIter):
        return "a range iterator"
    if isinstance(v, Obj):
        return v.label
    if isinstance(v, Unbound):
        return f"variable '{v.name}' (unbound on some paths)"
    return f"a {v.pytype.__name__}"


def scalar(v: Value, what: str) -> Scalar:
    if isinstance(v, (Reg, K)):
        return v
    if isinstance(v, Unbound):
        raise Refusal(f"variable '{v.name}' that may be unbound")
    raise Refusal(f"{what} on {describe(v)}")


# -- folding ----------------------------------------------------------------

def fold(fn: Callable[..., object], *args: object) -> Value:
    """``fn(*args)`` evaluated by Python now; its value is exactly what the
    function would compute. Warnings count as raising: the element is then
    redone in Python, which warns as usual."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            r = fn(*args)
        except RecursionError:
            raise
        except Exception as e:
            raise DeadPath(f"{type(e).__name__}: {e}")
    return classify(r, "a constant expression")


def _check_size(op: str, x: object, y: object) -> None:
    # Folding must stay cheap: 10**10**10 would take forever in Python too,
    # but at run time, not in translate().
    if op == "**" and type(x) is int and type(y) is int:
        assert isinstance(x, int) and isinstance(y, int)
        if abs(x) > 1 and y > 0 and y * x.bit_length() > 1 << 20:
            raise Refusal("constant ** too large to fold")
    if op == "<<" and type(y) is int:
        assert isinstance(y, int)
        if y > 1 << 20 and x:
            raise Refusal("constant << too large to fold")


BINARY_FN: dict[str, Callable[..., object]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
    "/": operator.truediv, "//": operator.floordiv, "%": operator.mod,
    "**": operator.pow, "<<": operator.lshift, ">>": operator.rshift,
    "&": operator.and_, "|": operator.or_, "^": operator.xor,
}
COMPARE_FN: dict[str, Callable[..., object]] = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
}
_CMP = {"<": "LT", "<=": "LE", "==": "EQ", "!=": "NE", ">": "GT", ">=": "GE"}
_ARITH = {"+": "ADD", "-": "SUB", "*": "MUL", "//": "FLOORDIV", "%": "MOD",
          "**": "POW"}
_BITS = {"&": "AND", "|": "OR", "^": "XOR", "<<": "LSHIFT", ">>": "RSHIFT"}


# -- operators ----------------------------------------------------------------

def binary(b: Builder, op: str, xv: Value, yv: Value) -> Value:
    if op not in BINARY_FN:
        raise Refusal(f"operator {op}")
    x, y = scalar(xv, f"operator {op}"), scalar(yv, f"operator {op}")
    if isinstance(x, K) and isinstance(y, K):
        _check_size(op, x.value, y.value)
        return fold(BINARY_FN[op], x.value, y.value)
    tx, ty = x.pytype, y.pytype
    if tx is complex or ty is complex:
        cop = {"+": "ADD", "-": "SUB", "*": "MUL", "/": "DIV", "**": "POW"}
        if op not in cop:
            raise DeadPath(f"TypeError: operator {op} on a complex")
        return b.new("C", "C_" + cop[op], b.creg(x), b.creg(y))
    ints = tx is not float and ty is not float
    if op in _BITS:
        if not ints:
            raise Refusal(f"operator {op} on a float")
        if tx is bool and ty is bool and op in ("&", "|", "^"):
            return b.new("B", "B_" + _BITS[op], b.reg(x), b.reg(y))
        return b.new("I", "I_" + _BITS[op], b.ireg(x), b.ireg(y))
    if op == "/":
        if ints:
            return b.new("F", "I_TRUEDIV", b.ireg(x), b.ireg(y))
        return b.new("F", "F_DIV", b.freg(x), b.freg(y))
    if op == "**" and ints and isinstance(y, K) and real(y) < 0:
        # int ** negative int is float ** float (long_pow -> float_pow).
        return b.new("F", "F_POW", b.freg(x), b.freg(y))
    # int ** int register: speculated int; I_POW bails on a negative
    # exponent (the float path), so that element is redone in Python.
    if ints:
        return b.new("I", "I_" + _ARITH[op], b.ireg(x), b.ireg(y))
    return b.new("F", "F_" + _ARITH[op], b.freg(x), b.freg(y))


def compare(b: Builder, op: str, xv: Value, yv: Value) -> Scalar:
    x, y = scalar(xv, f"comparison {op}"), scalar(yv, f"comparison {op}")
    if isinstance(x, K) and isinstance(y, K):
        r = fold(COMPARE_FN[op], x.value, y.value)
        assert isinstance(r, K)        # numbers compare to a bool or raise
        return r
    tx, ty = x.pytype, y.pytype
    c = _CMP[op]
    if tx is complex or ty is complex:
        return _ccompare(b, op, x, y)
    # A float against an int constant that a double holds exactly: the
    # exact comparison is the float one (abs(z) <= 2 is F_LE).
    if tx is float and isinstance(y, K) and ty is int and abs(y.value) <= 2**53:
        return b.new("B", "F_" + c, b.reg(x), b.freg(y))
    if ty is float and isinstance(x, K) and tx is int and abs(x.value) <= 2**53:
        return b.new("B", "F_" + c, b.freg(x), b.reg(y))
    if tx is float and ty is float:
        return b.new("B", "F_" + c, b.reg(x), b.reg(y))
    if tx is float:
        # A bool is 0 or 1: exact as a float. An int needs the exact
        # int/float comparison (it may not be representable).
        if ty is bool:
            return b.new("B", "F_" + c, b.reg(x), b.freg(y))
        return b.new("B", "FI_" + c, b.reg(x), b.reg(y))
    if ty is float:
        if tx is bool:
            return b.new("B", "F_" + c, b.freg(x), b.reg(y))
        return b.new("B", "IF_" + c, b.reg(x), b.reg(y))
    return b.new("B", "I_" + c, b.ireg(x), b.ireg(y))


def _ccompare(b: Builder, op: str, x: Scalar, y: Scalar) -> Scalar:
    """complex_richcompare (3.11-3.13): only == and != (ordering is a
    TypeError); against an int the real part is compared exactly with the
    int (float_richcompare) and the imaginary part must be 0; against a
    float or a complex part by part."""
    if op not in ("==", "!="):
        raise DeadPath(f"TypeError: comparison {op} of a complex")
    if x.pytype is not complex:
        x, y = y, x                  # == and != are symmetric here
    if y.pytype is int:
        re = b.new("F", "C_REAL", b.reg(x))
        im = b.new("F", "C_IMAG", b.reg(x))
        zero = compare(b, "==", im, K(0.0))
        eq = compare(b, "==", re, y)
        r = b.new("B", "B_AND", b.reg(zero), b.reg(eq))
        return r if op == "==" else b.new("B", "B_NOT", r.n)
    return b.new("B", "C_EQ" if op == "==" else "C_NE", b.reg(x), b.creg(y))


_UNARY_FN: dict[str, Callable[..., object]] = {
    "-": operator.neg, "+": operator.pos, "~": operator.invert,
    "not": operator.not_}


def unary(b: Builder, op: str, xv: Value) -> Value:
    if op == "not":
        t = truth(b, xv)
        if isinstance(t, K):
            return K(not t.value)
        assert isinstance(t, Reg)
        return b.new("B", "B_NOT", t.n)
    x = scalar(xv, f"unary {op}")
    if isinstance(x, K):
        return fold(_UNARY_FN[op], x.value)
    if x.pytype is complex:
        if op == "~":
            raise DeadPath("TypeError: unary ~ on a complex")
        return x if op == "+" else b.new("C", "C_NEG", x.n)
    if op == "~":
        if x.pytype is not int:
            # ~ on a bool is deprecated (3.12+ warns); on a float an error.
            raise Refusal(f"unary ~ on a {x.pytype.__name__}")
        return b.new("I", "I_INVERT", x.n)
    if x.pytype is float:
        return x if op == "+" else b.new("F", "F_NEG", x.n)
    if op == "+":
        return x if x.pytype is int else b.new("I", "B2I", x.n)
    return b.new("I", "I_NEG", b.ireg(x))


def truth(b: Builder, v: Value) -> Value:
    """``bool(v)`` as Python's truth test computes it."""
    if isinstance(v, K):
        return K(bool(v.value))
    if isinstance(v, Tup):
        return K(bool(v.items))
    if isinstance(v, Reg):
        if v.kind == "B":
            return v
        return b.new("B", v.kind + "_TRUTH", v.n)
    if isinstance(v, Unbound):
        raise Refusal(f"variable '{v.name}' that may be unbound")
    raise Refusal(f"truth value of {describe(v)}")


def attribute(b: Builder, obj: Value, name: str) -> Value | None:
    """``x.real``, ``x.imag`` and ``x.conjugate`` of a number (None: not
    one of those). ``bool.real`` is an int, ``int.imag`` the int 0."""
    if not isinstance(obj, (Reg, K)) or name not in ("real", "imag",
                                                       "conjugate"):
        return None
    if name == "conjugate":
        return Obj(Method(name, obj), f"{describe(obj)[2:]}.conjugate")
    if isinstance(obj, K):
        return fold(getattr, obj.value, name)
    if obj.kind == "C":
        return b.new("F", "C_REAL" if name == "real" else "C_IMAG", obj.n)
    if name == "imag":
        return K(0.0) if obj.kind == "F" else K(0)
    return obj if obj.kind != "B" else b.new("I", "B2I", obj.n)


def conjugate(b: Builder, x: Scalar) -> Value:
    if isinstance(x, K):
        return fold(lambda v: v.conjugate(), x.value)
    if x.kind == "C":
        return b.new("C", "C_CONJ", x.n)
    return x if x.kind != "B" else b.new("I", "B2I", x.n)


def range_more(b: Builder, it: RangeIter) -> Value:
    """Whether a range iterator yields ``it.cur`` (rangeiter_next: the
    values lie strictly before ``stop`` in the step's direction)."""
    if isinstance(it.step, K):
        return compare(b, "<" if real(it.step) > 0 else ">", it.cur, it.stop)
    up = compare(b, ">", it.step, K(0))
    lt = compare(b, "<", it.cur, it.stop)
    gt = compare(b, ">", it.cur, it.stop)
    return select(b, up, lt, gt)


def select(b: Builder, cond: Value, x: Scalar, y: Scalar) -> Scalar:
    """``x if cond else y`` of two computed values of one type."""
    assert x.pytype is y.pytype
    if isinstance(cond, K):
        return x if cond.value else y
    if isinstance(x, K) and isinstance(y, K) and same(x.value, y.value):
        return x
    assert isinstance(cond, Reg) and cond.kind == "B"
    kind = x.kind
    return b.new(kind, kind + "_SELECT", cond.n, b.reg(x), b.reg(y))
