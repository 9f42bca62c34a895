"""A pure-Python interpreter of translated programs: the oracle.

Each op is executed with Python's own operators on Python ints, floats,
bools and complex numbers (complex ops on two complex operands: the front end
has already converted a real operand as CPython 3.11-3.13 does), plus the contract's guard rules: where the VM must bail (a result
outside int64, a division by zero, a math domain error, ...) this bails too.
So ``run(prog, idx)`` is what the VM must compute for one element -- a value
equal to the function's, bit for bit and type for type, or a bail -- and it
checks the front end (against calling the function) and the VM (against
this) independently. Jumps go anywhere (loops): ``run(..., max_steps=n)``
stops an endless loop after ``n`` instructions (tests only) with
:class:`StepLimit`.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

from .program import Instr, Program

_LO, _HI = -2**63, 2**63
_EXACT = 2**53


class Bail(NamedTuple):
    pc: int
    why: str


class _Bail(Exception):
    pass


class StepLimit(Exception):
    """``run`` executed ``max_steps`` instructions without finishing."""


def _int(v: int) -> int:
    if not _LO <= v < _HI:
        raise _Bail("int64 overflow")
    return v


def _idiv(a: int, b: int, f: Callable[[int, int], int]) -> int:
    if b == 0:
        raise _Bail("integer division by zero")
    return _int(f(a, b))


def _ipow(a: int, b: int) -> int:
    if b < 0:
        raise _Bail("negative exponent (a float in Python)")
    if abs(a) > 1 and b >= 64:
        raise _Bail("int64 overflow")
    return _int(a ** b)


def _lshift(a: int, b: int) -> int:
    if b < 0:
        raise _Bail("negative shift count")
    if a == 0:
        return 0
    if b >= 64:
        raise _Bail("int64 overflow")
    return _int(a << b)


def _rshift(a: int, b: int) -> int:
    if b < 0:
        raise _Bail("negative shift count")
    return a >> min(b, 64)


def _truediv(a: int, b: int) -> float:
    if b == 0:
        raise _Bail("division by zero")
    if abs(a) > _EXACT or abs(b) > _EXACT:
        raise _Bail("int true division above 2**53")
    return a / b


def _python(f: Callable[..., object],
            complex_ok: bool = False) -> Callable[..., object]:
    """An op that does what Python does and bails where Python raises; a
    complex result is a bail too, except for a complex op."""
    def op(*args: object) -> object:
        try:
            r = f(*args)
        except (ZeroDivisionError, ValueError, OverflowError) as e:
            raise _Bail(f"{type(e).__name__}: {e}")
        if complex_ok:
            assert type(r) in (complex, float)
        elif type(r) is complex:
            raise _Bail("complex result")
        return r
    return op


def _complex(f: Callable[..., object]) -> Callable[..., object]:
    """A complex op: Python's own, bailing where Python raises."""
    return _python(f, complex_ok=True)


def _to_int(f: Callable[[float], int]) -> Callable[[float], int]:
    def op(x: float) -> int:
        if math.isnan(x) or math.isinf(x):
            raise _Bail("NaN or inf to int")
        return _int(f(x))
    return op


# Operands are ints, bools or floats (mypy's float includes int).
_CMP: dict[str, Callable[[float, float], bool]] = {
    "LT": lambda a, b: a < b, "LE": lambda a, b: a <= b,
    "EQ": lambda a, b: a == b, "NE": lambda a, b: a != b,
    "GT": lambda a, b: a > b, "GE": lambda a, b: a >= b,
}

OPS: dict[str, Callable[..., object]] = {
    "I_MOV": lambda a: a, "F_MOV": lambda a: a, "B_MOV": lambda a: a,
    "I_ADD": lambda a, b: _int(a + b), "I_SUB": lambda a, b: _int(a - b),
    "I_MUL": lambda a, b: _int(a * b), "I_NEG": lambda a: _int(-a),
    "I_ABS": lambda a: _int(abs(a)), "I_INVERT": lambda a: ~a,
    "I_FLOORDIV": lambda a, b: _idiv(a, b, lambda x, y: x // y),
    "I_MOD": lambda a, b: _idiv(a, b, lambda x, y: x % y),
    "I_POW": _ipow, "I_AND": lambda a, b: a & b, "I_OR": lambda a, b: a | b,
    "I_XOR": lambda a, b: a ^ b, "I_LSHIFT": _lshift, "I_RSHIFT": _rshift,
    "I_TRUEDIV": _truediv,
    "F_ADD": lambda a, b: a + b, "F_SUB": lambda a, b: a - b,
    "F_MUL": lambda a, b: a * b, "F_NEG": lambda a: -a,
    "F_ABS": lambda a: abs(a),
    "F_DIV": _python(lambda a, b: a / b),
    "F_FLOORDIV": _python(lambda a, b: a // b),
    "F_MOD": _python(lambda a, b: a % b),
    "F_POW": _python(lambda a, b: a ** b),
    "I2F": lambda a: float(a), "B2I": lambda a: int(a),
    "B2F": lambda a: float(a),
    "F2I_TRUNC": _to_int(int), "F_FLOOR_I": _to_int(math.floor),
    "F_CEIL_I": _to_int(math.ceil), "F_ROUND_I": _to_int(round),
    "I_TRUTH": bool, "F_TRUTH": bool,
    "B_NOT": lambda a: not a, "B_AND": lambda a, b: a & b,
    "B_OR": lambda a, b: a | b, "B_XOR": lambda a, b: a ^ b,
    "F_ISNAN": math.isnan, "F_ISINF": math.isinf,
    "F_ISFINITE": math.isfinite,
    # complex: both operands are complex here, as Python converts first.
    "C_MOV": lambda a: a,
    "I2C": lambda a: complex(float(a), 0.0),
    "F2C": lambda a: complex(a, 0.0),
    "B2C": lambda a: complex(float(a), 0.0),
    "C_MAKE": lambda a, b: complex(a, b),
    "C_ADD": lambda a, b: a + b, "C_SUB": lambda a, b: a - b,
    "C_MUL": lambda a, b: a * b,
    "C_DIV": _complex(lambda a, b: a / b),
    "C_POW": _complex(lambda a, b: a ** b),
    "C_NEG": lambda a: -a, "C_CONJ": lambda a: a.conjugate(),
    "C_REAL": lambda a: a.real, "C_IMAG": lambda a: a.imag,
    "C_ABS": _complex(abs),
    "C_EQ": lambda a, b: a == b, "C_NE": lambda a, b: a != b,
    "C_TRUTH": bool,
}
for _p in ("I_", "F_", "IF_", "FI_"):
    for _c, _f in _CMP.items():
        OPS[_p + _c] = _f

_TYPE = {"I": int, "F": float, "B": bool, "C": complex}


def run(prog: Program, idx: tuple[int, ...], max_steps: int | None = None
        ) -> Union[int, float, bool, complex, Bail]:
    """The value ``prog`` computes for the element at ``idx``, or a Bail;
    :class:`StepLimit` after ``max_steps`` instructions if given."""
    assert len(idx) == prog.ndim
    steps = 0
    regs: dict[str, list[object]] = {
        k: [None] * n for k, n in prog.nregs.items()}
    for k, v in enumerate(idx):
        assert -2**63 <= v < 2**63
        regs["I"][k] = v
    pc = 0
    while True:
        ins: Instr = prog.instrs[pc]
        op = ins.op
        steps += 1
        if max_steps is not None and steps > max_steps:
            raise StepLimit(f"{max_steps} instructions")
        if op == "JMP":
            assert isinstance(ins.a, int) and 0 <= ins.a < len(prog.instrs)
            pc = ins.a
            continue
        if op == "BR":
            c = regs["B"][_n(ins.a)]
            assert type(c) is bool
            pc = _n(ins.b if c else ins.c)
            continue
        if op.startswith("RET_"):
            r = regs[op[4]][_n(ins.a)]
            assert type(r) is _TYPE[op[4]], (op, r)
            assert isinstance(r, (int, float, bool, complex))
            return r
        if op == "BAIL":
            return Bail(pc, "BAIL")
        try:
            out = _execute(prog, ins, regs)
        except _Bail as e:
            return Bail(pc, f"{op}: {e}")
        regs[_dst_kind(op)][ins.dst] = out
        pc += 1


def _n(v: object) -> int:
    assert isinstance(v, int)
    return v


def _dst_kind(op: str) -> str:
    from .program import SIGNATURES
    kind = SIGNATURES[op][0]
    assert kind is not None
    return kind


def _execute(prog: Program, ins: Instr, regs: dict[str, list[object]]) -> object:
    from .program import SIGNATURES
    op = ins.op
    sig = SIGNATURES[op]
    if op == "I_CONST":
        return prog.iconsts[_n(ins.a)]
    if op == "F_CONST":
        return prog.fconsts[_n(ins.a)]
    if op == "B_CONST":
        return bool(ins.a)
    if op == "C_CONST":
        k = _n(ins.a)
        return complex(prog.fconsts[k], prog.fconsts[k + 1])
    args: list[object] = []
    fn = None
    for kind, v in zip(sig[1:], (ins.a, ins.b, ins.c)):
        if kind in ("I", "F", "B", "C"):
            x = regs[kind][_n(v)]
            assert type(x) is _TYPE[kind], (ins, x)
            args.append(x)
        elif kind == "fn":
            fn = v
    if op.endswith("_SELECT"):
        return args[1] if args[0] else args[2]
    if op in ("F_CALL1", "F_CALL2"):
        assert isinstance(fn, str)
        return _python(getattr(math, fn))(*args)
    r = OPS[op](*args)
    assert type(r) is _TYPE[sig[0] or "B"], (ins, r)
    return r
