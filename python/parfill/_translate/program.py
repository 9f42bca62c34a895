"""The translated program: typed registers, instructions, constant pools.

This is the contract with the VM (`src/pyvm_opcodes.h`): four register
files (I int64, F double, B bool, C complex as two doubles), instructions of five int32 words
``op, dst, a, b, c``. Here the program stays name-based (the VM's numbering
is read from ``_core.pyvm_opcodes()`` only when serialising), so the front
end and its reference interpreter work without the extension.

``SIGNATURES`` says, per op, what each of ``dst, a, b, c`` holds:
'I' 'F' 'B' 'C' a register of that file, 'ki'/'kf' an index into the
int/float constant pool, 'kc' the index of a complex constant's real part in
the float pool (its imaginary part follows), 'imm' an immediate, 'tgt' an instruction index, 'fn' a math
function (by name here, by id once serialised), None unused (0).
"""
from __future__ import annotations

import linecache
import math
import struct
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .errors import TranslationError

Operand = Optional[str]
Sig = tuple[Operand, Operand, Operand, Operand]

_CMP = ("LT", "LE", "EQ", "NE", "GT", "GE")

SIGNATURES: dict[str, Sig] = {
    "I_CONST": ("I", "ki", None, None),
    "F_CONST": ("F", "kf", None, None),
    "B_CONST": ("B", "imm", None, None),
    "I_MOV": ("I", "I", None, None),
    "F_MOV": ("F", "F", None, None),
    "B_MOV": ("B", "B", None, None),
    "I_TRUEDIV": ("F", "I", "I", None),
    "I2F": ("F", "I", None, None),
    "B2I": ("I", "B", None, None),
    "B2F": ("F", "B", None, None),
    "I_TRUTH": ("B", "I", None, None),
    "F_TRUTH": ("B", "F", None, None),
    "B_NOT": ("B", "B", None, None),
    "I_SELECT": ("I", "B", "I", "I"),
    "F_SELECT": ("F", "B", "F", "F"),
    "B_SELECT": ("B", "B", "B", "B"),
    "F_CALL1": ("F", "F", "fn", None),
    "F_CALL2": ("F", "F", "F", "fn"),
    "JMP": (None, "tgt", None, None),
    "BR": (None, "B", "tgt", "tgt"),
    "RET_I": (None, "I", None, None),
    "RET_F": (None, "F", None, None),
    "RET_B": (None, "B", None, None),
    "RET_C": (None, "C", None, None),
    "BAIL": (None, None, None, None),
    # complex (issue 12)
    "C_CONST": ("C", "kc", None, None),
    "C_MOV": ("C", "C", None, None),
    "I2C": ("C", "I", None, None),
    "F2C": ("C", "F", None, None),
    "B2C": ("C", "B", None, None),
    "C_MAKE": ("C", "F", "F", None),
    "C_NEG": ("C", "C", None, None),
    "C_CONJ": ("C", "C", None, None),
    "C_REAL": ("F", "C", None, None),
    "C_IMAG": ("F", "C", None, None),
    "C_ABS": ("F", "C", None, None),
    "C_EQ": ("B", "C", "C", None),
    "C_NE": ("B", "C", "C", None),
    "C_TRUTH": ("B", "C", None, None),
}
for _op in ("ADD", "SUB", "MUL", "DIV", "POW"):
    SIGNATURES["C_" + _op] = ("C", "C", "C", None)
for _op in ("ADD", "SUB", "MUL", "FLOORDIV", "MOD", "POW", "AND", "OR",
            "XOR", "RSHIFT", "LSHIFT"):
    SIGNATURES["I_" + _op] = ("I", "I", "I", None)
for _op in ("NEG", "ABS", "INVERT"):
    SIGNATURES["I_" + _op] = ("I", "I", None, None)
for _op in ("ADD", "SUB", "MUL", "DIV", "FLOORDIV", "MOD", "POW"):
    SIGNATURES["F_" + _op] = ("F", "F", "F", None)
for _op in ("NEG", "ABS"):
    SIGNATURES["F_" + _op] = ("F", "F", None, None)
for _op in ("F2I_TRUNC", "F_FLOOR_I", "F_CEIL_I", "F_ROUND_I"):
    SIGNATURES[_op] = ("I", "F", None, None)
for _c in _CMP:
    SIGNATURES["I_" + _c] = ("B", "I", "I", None)
    SIGNATURES["F_" + _c] = ("B", "F", "F", None)
    SIGNATURES["IF_" + _c] = ("B", "I", "F", None)
    SIGNATURES["FI_" + _c] = ("B", "F", "I", None)
for _op in ("AND", "OR", "XOR"):
    SIGNATURES["B_" + _op] = ("B", "B", "B", None)
for _op in ("ISNAN", "ISINF", "ISFINITE"):
    SIGNATURES["F_" + _op] = ("B", "F", None, None)

# The math functions of the contract (F_CALL1 / F_CALL2).
MATH1 = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
         "asinh", "acosh", "atanh", "exp", "exp2", "expm1", "log", "log2",
         "log10", "log1p", "sqrt", "cbrt", "fabs")
MATH2 = ("atan2", "hypot", "copysign", "fmod", "pow")

#: Whether the VM runs programs with backward jumps (loops; issue 12: it
#: does). False makes serialising a program with a loop a TranslationError,
#: so that populate calls Python.
VM_BACK_EDGES = True

#: Ops whose bails (if any) never stand for a Python exception: an int64
#: result Python would hold as a big int, or F_ADD's and F_MUL's NaN pair
#: (whose payload CPython picks by how it compiled the operation). A path
#: that skips one whose result it does not need is exact (Python computes
#: the same values there); one that may raise (ZeroDivisionError, a math
#: domain error, int(nan)...) must run on every path Python runs it on.
SKIPPABLE = frozenset(
    {"I_CONST", "F_CONST", "B_CONST", "C_CONST", "I_MOV", "F_MOV", "B_MOV",
     "C_MOV", "I2F", "B2I", "B2F", "I2C", "F2C", "B2C", "I_TRUTH", "F_TRUTH",
     "C_TRUTH", "B_NOT", "B_AND", "B_OR", "B_XOR", "I_SELECT", "F_SELECT",
     "B_SELECT", "F_ADD", "F_SUB", "F_MUL", "F_NEG", "F_ABS", "F_ISNAN",
     "F_ISINF", "F_ISFINITE", "C_MAKE", "C_NEG", "C_CONJ", "C_REAL",
     "C_IMAG", "C_ADD", "C_SUB", "C_MUL", "C_EQ", "C_NE", "I_ADD", "I_SUB",
     "I_MUL", "I_NEG", "I_ABS", "I_AND", "I_OR", "I_XOR", "I_INVERT"}
    | {f + "_" + c for f in ("I", "F", "IF", "FI") for c in _CMP})

TERMINATORS = frozenset({"JMP", "BR", "RET_I", "RET_F", "RET_B", "RET_C",
                         "BAIL"})
REGISTER_FILES = ("I", "F", "B", "C")

_SYMBOL = {"ADD": "+", "SUB": "-", "MUL": "*", "DIV": "/", "TRUEDIV": "/",
           "FLOORDIV": "//", "MOD": "%", "POW": "**", "AND": "&", "OR": "|",
           "XOR": "^", "RSHIFT": ">>", "LSHIFT": "<<", "LT": "<", "LE": "<=",
           "EQ": "==", "NE": "!=", "GT": ">", "GE": ">="}


@dataclass
class Instr:
    op: str
    dst: int = 0
    a: object = 0       # an int, or a math function's name for 'fn'
    b: object = 0
    c: object = 0
    line: int | None = None

    def __post_init__(self) -> None:
        assert self.op in SIGNATURES, self.op

    def operands(self) -> list[tuple[Operand, object]]:
        """(kind, value) of dst, a, b, c, the kinds from SIGNATURES."""
        return list(zip(SIGNATURES[self.op], (self.dst, self.a, self.b, self.c)))


def _register_written(ins: Instr) -> tuple[str, int] | None:
    kind = SIGNATURES[ins.op][0]
    return (kind, ins.dst) if kind is not None and kind in REGISTER_FILES \
        else None


def _registers_read(ins: Instr) -> set[tuple[str, int]]:
    out = set()
    for kind, v in ins.operands()[1:]:
        if kind in REGISTER_FILES:
            assert kind is not None and isinstance(v, int)
            out.add((kind, v))
    return out


def float_key(x: float) -> bytes:
    """Floats are pooled by bit pattern: -0.0 and 0.0, or two NaNs, are
    different constants."""
    return struct.pack("<d", x)


@dataclass
class Program:
    ndim: int
    instrs: list[Instr] = field(default_factory=list)
    iconsts: list[int] = field(default_factory=list)
    fconsts: list[float] = field(default_factory=list)
    nregs: dict[str, int] = field(
        default_factory=lambda: {"I": 0, "F": 0, "B": 0, "C": 0})
    name: str = "<function>"
    filename: str = "<unknown>"
    # Constant loads run once at the start (the front end puts them there;
    # kregs: (kind, value key) -> the register holding that constant).
    prologue: list[Instr] = field(default_factory=list)
    kregs: dict[tuple[str, object], int] = field(default_factory=dict)

    def reg(self, kind: str) -> int:
        n = self.nregs[kind]
        self.nregs[kind] = n + 1
        return n

    def iconst(self, v: int) -> int:
        assert type(v) is int and -2**63 <= v < 2**63
        if v in self.iconsts:
            return self.iconsts.index(v)
        self.iconsts.append(v)
        return len(self.iconsts) - 1

    def fconst(self, v: float) -> int:
        assert type(v) is float
        key = float_key(v)
        for k, w in enumerate(self.fconsts):
            if float_key(w) == key:
                return k
        self.fconsts.append(v)
        return len(self.fconsts) - 1

    def cconst(self, v: complex) -> int:
        """A complex constant: two consecutive floats of the pool (real,
        imaginary), by bit pattern."""
        assert type(v) is complex
        re, im = float_key(v.real), float_key(v.imag)
        for k in range(len(self.fconsts) - 1):
            if float_key(self.fconsts[k]) == re and \
                    float_key(self.fconsts[k + 1]) == im:
                return k
        self.fconsts += [v.real, v.imag]
        return len(self.fconsts) - 2

    # -- checks ----------------------------------------------------------

    def validate(self) -> None:
        """What the VM checks before running a program (it rejects a
        malformed one): operands in range, every jump target in range
        (backward too: loops), no path falling off the end. An AssertionError here is a front-end bug."""
        n = len(self.instrs)
        assert n > 0
        for pc, ins in enumerate(self.instrs):
            for kind, v in ins.operands():
                if kind in REGISTER_FILES:
                    assert isinstance(v, int) and 0 <= v < self.nregs[kind], (pc, ins)
                elif kind == "ki":
                    assert isinstance(v, int) and 0 <= v < len(self.iconsts)
                elif kind == "kf":
                    assert isinstance(v, int) and 0 <= v < len(self.fconsts)
                elif kind == "kc":
                    assert isinstance(v, int) and 0 <= v < len(self.fconsts) - 1
                elif kind == "tgt":
                    assert isinstance(v, int) and 0 <= v < n, (pc, ins)
                elif kind == "fn":
                    assert v in (MATH1 if ins.op == "F_CALL1" else MATH2)
                elif kind == "imm":
                    assert v in (0, 1)
                else:
                    assert not v, (pc, ins)
        assert self.instrs[-1].op in TERMINATORS

    # -- moves -------------------------------------------------------------

    def _successors(self, pc: int) -> tuple[int, ...]:
        ins = self.instrs[pc]
        if ins.op == "JMP":
            assert isinstance(ins.a, int)
            return (ins.a,)
        if ins.op == "BR":
            assert isinstance(ins.b, int) and isinstance(ins.c, int)
            return (ins.b, ins.c)
        return () if ins.op in TERMINATORS else (pc + 1,)

    def _bit(self, reg: tuple[str, int]) -> int:
        """Register ``reg`` as one bit of a set (an int)."""
        base = 0
        for kind in REGISTER_FILES:
            if kind == reg[0]:
                return 1 << (base + reg[1])
            base += self.nregs[kind]
        raise AssertionError(reg)

    def _liveness(self) -> tuple[list[int], list[int]]:
        """Per instruction, the registers (bit sets) some path from it
        reads before writing them, on entry and on exit (backward data
        flow to its fixed point)."""
        n = len(self.instrs)
        reads, kills = [], []
        for ins in self.instrs:
            written = _register_written(ins)
            kills.append(~self._bit(written) if written else -1)
            mask = 0
            for reg in _registers_read(ins):
                mask |= self._bit(reg)
            reads.append(mask)
        succ = [self._successors(pc) for pc in range(n)]
        live_in, live_out = [0] * n, [0] * n
        changed = True
        while changed:
            changed = False
            for pc in range(n - 1, -1, -1):
                out = 0
                for t in succ[pc]:
                    out |= live_in[t]
                inn = reads[pc] | (out & kills[pc])
                if inn != live_in[pc] or out != live_out[pc]:
                    live_in[pc], live_out[pc] = inn, out
                    changed = True
        return live_in, live_out

    def _coalescible(self, pc: int, entry: int, live_out: list[int],
                     defs: dict[tuple[str, int], list[int]]) -> bool:
        """Whether the move ``d = s`` at pc can go, ``s`` renamed ``d``
        (``s`` has one definition D, not the move): no path from the
        entry reads ``s`` before D; the old ``d`` is dead after D (the
        paths from D write it again before reading it: the move does);
        and no other write of ``d`` happens while ``s`` is live. Then
        ``d`` holds ``s``'s value wherever ``s`` is read, and its own old
        value is read nowhere ``s``'s is."""
        ins = self.instrs[pc]
        kind = SIGNATURES[ins.op][0]
        assert isinstance(ins.a, int) and kind is not None
        src, dst = self._bit((kind, ins.a)), self._bit((kind, ins.dst))
        d = defs[(kind, ins.a)][0]
        if src & entry or dst & live_out[d]:
            return False
        return all(not src & live_out[x]
                   for x in defs.get((kind, ins.dst), []) if x != pc)

    def _reach(self, start: int, avoid: int, stop: int) -> set[int]:
        """The instructions a path from ``start`` (exclusive) reaches
        without passing ``avoid``; ``stop`` is reached but not passed."""
        seen: set[int] = set()
        todo = list(self._successors(start))
        while todo:
            pc = todo.pop()
            if pc in seen or pc == avoid:
                continue
            seen.add(pc)
            if pc != stop:
                todo.extend(self._successors(pc))
        return seen

    def _sinkable(self, m: int, d: int) -> bool:
        """Whether the move ``x = s`` at m may compute ``s``'s definition D
        (at d; the move alone reads ``s``, and no path from the entry reads
        it without D) itself: every path from D to the move leaves D's
        operands unwritten, and no path from the move comes back to it
        without D. Then the move computes what D did; a path from D that
        does not reach the move never needed its value -- nor its bail,
        when D is SKIPPABLE (no Python exception). One that may raise stays
        where it is: Python raises there on every path (the fuzzer's
        ``0.0 ** -1`` whose value only one arm of an ``and`` read)."""
        if self.instrs[d].op not in SKIPPABLE:
            return False
        operands = _registers_read(self.instrs[d])
        between = self._reach(d, d, m)
        if m not in between or m in self._reach(m, d, -1):
            return False
        return all(_register_written(self.instrs[pc]) not in operands
                   for pc in between - {m})

    def _rename(self, reg: tuple[str, int], to: int) -> None:
        """Every write and read of register ``reg`` goes to ``to`` (same
        file) instead."""
        for ins in self.instrs:
            for field_name, kind in zip(("dst", "a", "b", "c"),
                                        SIGNATURES[ins.op]):
                if kind == reg[0] and getattr(ins, field_name) == reg[1]:
                    setattr(ins, field_name, to)

    def coalesce_moves(self) -> None:
        """Removes a move ``d = s`` where ``s`` can be renamed ``d``
        (_coalescible: their live ranges do not overlap): a loop's ``s +=
        x`` becomes one instruction instead of an add and a move at the
        back edge, and the Mandelbrot's ``z = z * z + c`` is computed into
        ``z``'s register although ``abs(z)`` reads it before the branch
        whose arm holds the move. Where they overlap, the move may compute
        ``s`` itself (_sinkable) and ``s``'s definition goes: a range
        loop's next value ``n + 1``, computed on entering the body while
        ``return n`` may still read ``n``, is computed at the back edge
        into ``n``'s register. Same values on every path. The VM's
        operations read a lane's operands before writing its result, so
        the definition may read ``d`` too. A register renamed or read
        later in a pass waits for the next (its liveness changed). Then a
        jump to the instruction after one that went goes too. Targets are
        renumbered."""
        removed: set[int] = set()
        while True:
            defs: dict[tuple[str, int], list[int]] = {}
            reads: dict[tuple[str, int], int] = {}
            for pc, ins in enumerate(self.instrs):
                written = _register_written(ins)
                if written:
                    defs.setdefault(written, []).append(pc)
                for reg in _registers_read(ins):
                    reads[reg] = reads.get(reg, 0) + 1
            moves = []
            for pc, ins in enumerate(self.instrs):
                kind = SIGNATURES[ins.op][0]
                if ins.op.endswith("_MOV") and isinstance(ins.a, int) and \
                        kind is not None and ins.a != ins.dst and \
                        len(defs.get((kind, ins.a), ())) == 1:
                    moves.append(pc)
            if not moves:
                break
            live_in, live_out = self._liveness()
            renamed: set[tuple[str, int]] = set()
            for pc in moves:
                ins = self.instrs[pc]
                kind = SIGNATURES[ins.op][0]
                assert kind is not None and isinstance(ins.a, int)
                src = (kind, ins.a)
                if {src, (kind, ins.dst)} & renamed:
                    continue
                if self._coalescible(pc, live_in[0], live_out, defs):
                    self._rename(src, ins.dst)
                    renamed |= {src, (kind, ins.dst)}
                    gone = pc
                elif reads[src] == 1 and not self._bit(src) & live_in[0] \
                        and self._sinkable(pc, defs[src][0]):
                    gone = defs[src][0]
                    d = self.instrs[gone]
                    renamed |= {src, (kind, ins.dst)} | \
                        _registers_read(d)     # read later now
                    self.instrs[pc] = Instr(d.op, ins.dst, d.a, d.b, d.c,
                                            d.line)
                    ins = d
                else:
                    continue
                removed.add(gone)
                # As a jump to the next instruction, what is gone is nothing
                # to the next pass's liveness (a move reads its own
                # destination after the rename).
                ins.op, ins.a = "JMP", gone + 1
            if not renamed:
                break
        instrs = self.instrs
        # A jump to what follows it, once the moves are gone: falling
        # through is the same path.
        for pc, ins in enumerate(instrs):
            if ins.op == "JMP" and isinstance(ins.a, int) and ins.a > pc and \
                    all(k in removed for k in range(pc + 1, ins.a)):
                removed.add(pc)
        if not removed:
            return
        # A jump to a removed move or jump lands where that one would have
        # gone on: each old index maps to the next kept one.
        new_pc, kept = [], 0
        for pc in range(len(instrs) + 1):
            new_pc.append(kept)
            kept += pc < len(instrs) and pc not in removed
        self.instrs = [ins for pc, ins in enumerate(instrs)
                       if pc not in removed]
        for ins in self.instrs:
            sig = SIGNATURES[ins.op]
            if sig[1] == "tgt":
                assert isinstance(ins.a, int)
                ins.a = new_pc[ins.a]
            if sig[2] == "tgt":
                assert isinstance(ins.b, int) and isinstance(ins.c, int)
                ins.b, ins.c = new_pc[ins.b], new_pc[ins.c]

    # -- the VM's form -----------------------------------------------------

    def serialize(self, opcodes: Mapping[str, int],
                  functions: Mapping[str, int]) -> tuple[bytes, bytes, bytes]:
        """``(code, iconsts, fconsts)`` as ``_core.fill_translated`` takes
        them, with op numbers and math function ids from the VM's tables;
        TranslationError for what this VM cannot run."""
        words: list[int] = []
        for pc, ins in enumerate(self.instrs):
            if ins.op not in opcodes:
                raise TranslationError(f"{ins.op} (not in this VM's opcode "
                                       f"table)", self.filename, ins.line)
            targets = [v for kind, v in ins.operands() if kind == "tgt"]
            if not VM_BACK_EDGES and any(
                    isinstance(t, int) and t <= pc for t in targets):
                # The front end translates loops (issue 12); the VM does not
                # run backward jumps yet, so such a function is left to Python.
                raise TranslationError("loop (the VM runs no backward jumps "
                                       "yet)", self.filename, ins.line)
            words.append(opcodes[ins.op])
            for kind, v in ins.operands():
                if kind == "fn":
                    assert isinstance(v, str)
                    if v not in functions:
                        raise TranslationError(
                            f"math.{v} (not in this VM's function table)",
                            self.filename, ins.line)
                    words.append(functions[v])
                else:
                    assert isinstance(v, int)
                    words.append(v if kind else 0)
        code = struct.pack(f"<{len(words)}i", *words)
        ik = struct.pack(f"<{len(self.iconsts)}q", *self.iconsts)
        fk = struct.pack(f"<{len(self.fconsts)}d", *self.fconsts)
        return code, ik, fk

    # -- the listing -------------------------------------------------------

    def operand(self, kind: Operand, v: object) -> str:
        if kind in REGISTER_FILES:
            return f"{kind}{v}"
        if kind == "kc":
            assert isinstance(v, int)
            return repr(complex(self.fconsts[v], self.fconsts[v + 1]))
        if kind == "ki":
            assert isinstance(v, int)
            return repr(self.iconsts[v])
        if kind == "kf":
            assert isinstance(v, int)
            x = self.fconsts[v]
            return repr(x) if math.isfinite(x) else f"float('{x}')"
        if kind == "imm":
            return repr(bool(v))
        if kind == "tgt":
            return f"@{v}"
        return str(v)

    def render(self, ins: Instr) -> str:
        sig = SIGNATURES[ins.op]
        ops = [self.operand(k, v)
               for k, v in zip(sig[1:], (ins.a, ins.b, ins.c)) if k]
        base = ins.op.split("_", 1)[-1]
        if ins.op == "BR":
            return f"if {ops[0]} goto {ops[1]} else {ops[2]}"
        if ins.op == "JMP":
            return f"goto {ops[0]}"
        if ins.op.startswith("RET_"):
            return f"return {ops[0]}"
        if ins.op == "BAIL":
            return "bail (Python computes this element)"
        rhs = f"{ins.op} " + ", ".join(ops)
        if len(ops) == 2 and base in _SYMBOL and sig[3] is None:
            rhs = f"{ops[0]} {_SYMBOL[base]} {ops[1]}"
        elif ins.op.endswith("_CONST") or ins.op.endswith("_MOV"):
            rhs = ops[0]
        elif ins.op.endswith("_SELECT"):
            rhs = f"{ops[1]} if {ops[0]} else {ops[2]}"
        elif ins.op in ("F_CALL1", "F_CALL2"):
            rhs = f"math.{ops[-1]}({', '.join(ops[:-1])})"
        else:
            rhs = f"{ins.op}({', '.join(ops)})"
        return f"{self.operand(sig[0], ins.dst)} = {rhs}"

    def listing(self) -> str:
        """One line per instruction: its index, what it does with register
        names, and the Python source line it came from."""
        regs = " ".join(f"{k}{self.nregs[k]}" for k in REGISTER_FILES
                        if k != "C" or self.nregs[k])
        head = (f"# {self.name} ({self.filename}), ndim={self.ndim}, "
                f"registers {regs}; parameters in "
                + (", ".join(f"I{k}" for k in range(self.ndim)) or "none"))
        lines = [head]
        last: int | None = None
        for pc, ins in enumerate(self.instrs):
            text = f"{pc:4d}  {self.render(ins)}"
            if ins.line is not None and ins.line != last:
                src = linecache.getline(self.filename, ins.line).strip()
                text = f"{text:<48} # line {ins.line}" + (f": {src}" if src else "")
                last = ins.line
            lines.append(text)
        return "\n".join(lines)
