"""CPython bytecode, normalised to a small canonical instruction set.

Bytecode changes with every minor release (and sometimes a patch release):
superinstructions, NULL bits folded into other opcodes, comparison encodings,
explicit boolean conversions. This file is the only place that knows; the
rest of the translator sees canonical instructions:

    LOAD_FAST name      STORE_FAST name     LOAD_CONST value
    LOAD_GLOBAL name    LOAD_DEREF name     PUSH_NULL
    LOAD_ATTR name      LOAD_METHOD name    (pushes NULL, then the attribute)
    BINARY op           COMPARE op          UNARY op ('-', '+', '~', 'not')
    TO_BOOL             CALL nargs          SUBSCR
    BUILD_TUPLE n       UNPACK n            COPY n      SWAP n      POP
    RETURN              JUMP target         JUMP_IF (sense, target)
    JUMP_IF_OR_POP (sense, target)
    GET_ITER            FOR_ITER target     END_FOR

Jump targets are indices into the canonical list, backward ones too (loops).
``FOR_ITER target`` pushes the iterator's next value, or, when it is
exhausted, pops the iterator and continues at ``target`` -- in 3.12 and 3.13
CPython jumps past the loop's ``END_FOR`` (and 3.13's ``POP_TOP`` after it),
so ``target`` is the instruction after those and ``END_FOR`` itself is never
reached (the front end refuses it if it were). Anything not understood --
an opcode, a code flag, an exception table -- is refused by name: a guess
here would be a wrong result later.
"""
from __future__ import annotations

import dis
import sys
from types import CodeType
from typing import NamedTuple

from .errors import Refusal

SUPPORTED = ((3, 11), (3, 12), (3, 13))
VERSION = sys.version_info[:2]


class Ins(NamedTuple):
    op: str
    arg: object
    line: int | None


# Opcodes that only do bookkeeping the translation does not need.
_SKIP = frozenset({"NOP", "RESUME", "CACHE", "EXTENDED_ARG", "PRECALL",
                   "COPY_FREE_VARS"})

# Opcodes we refuse, with the construct a user would recognise.
_CONSTRUCTS = {
    "JUMP_BACKWARD_NO_INTERRUPT": "yield from / await",
    "POP_JUMP_BACKWARD_IF_NONE": "comparison with None",
    "POP_JUMP_BACKWARD_IF_NOT_NONE": "comparison with None",
    "POP_JUMP_IF_NONE": "comparison with None",
    "POP_JUMP_IF_NOT_NONE": "comparison with None",
    "POP_JUMP_FORWARD_IF_NONE": "comparison with None",
    "POP_JUMP_FORWARD_IF_NOT_NONE": "comparison with None",
    "IS_OP": "'is' comparison", "CONTAINS_OP": "'in' test",
    "BUILD_LIST": "list", "BUILD_SET": "set", "BUILD_MAP": "dict",
    "BUILD_CONST_KEY_MAP": "dict", "LIST_EXTEND": "list", "SET_UPDATE": "set",
    "LIST_APPEND": "list", "LIST_TO_TUPLE": "tuple from a list",
    "BUILD_SLICE": "slice", "BINARY_SLICE": "slice", "STORE_SLICE": "slice",
    "STORE_SUBSCR": "item assignment", "DELETE_SUBSCR": "del",
    "STORE_ATTR": "attribute assignment", "DELETE_ATTR": "del",
    "STORE_GLOBAL": "store to a global", "DELETE_GLOBAL": "del",
    "STORE_DEREF": "store to a closure variable", "DELETE_DEREF": "del",
    "DELETE_FAST": "del", "LOAD_CLOSURE": "nested function",
    "MAKE_CELL": "nested function", "MAKE_FUNCTION": "nested function",
    "LOAD_FAST_AND_CLEAR": "comprehension",
    "KW_NAMES": "keyword arguments", "CALL_KW": "keyword arguments",
    "CALL_FUNCTION_EX": "call with * or **", "DICT_MERGE": "call with **",
    "RAISE_VARARGS": "raise", "LOAD_ASSERTION_ERROR": "assert",
    "RERAISE": "try", "PUSH_EXC_INFO": "try", "POP_EXCEPT": "try",
    "CHECK_EXC_MATCH": "try", "BEFORE_WITH": "with",
    "FORMAT_VALUE": "f-string", "BUILD_STRING": "f-string",
    "CONVERT_VALUE": "f-string", "FORMAT_SIMPLE": "f-string",
    "FORMAT_WITH_SPEC": "f-string",
    "IMPORT_NAME": "import", "IMPORT_FROM": "import",
    "YIELD_VALUE": "generator", "RETURN_GENERATOR": "generator",
    "GET_AWAITABLE": "await", "SEND": "generator",
    "LOAD_NAME": "module-level code", "STORE_NAME": "module-level code",
    "MATCH_CLASS": "match", "MATCH_MAPPING": "match",
    "MATCH_SEQUENCE": "match", "MATCH_KEYS": "match", "GET_LEN": "match",
    "LOAD_BUILD_CLASS": "class definition", "LOAD_SUPER_ATTR": "super()",
    "UNPACK_EX": "starred assignment", "SETUP_ANNOTATIONS": "annotations",
    "LOAD_LOCALS": "locals()", "LOAD_FROM_DICT_OR_GLOBALS": "class body",
    "LOAD_FROM_DICT_OR_DEREF": "class body",
}

_FLAGS = ((0x20, "generator"), (0x80, "coroutine"), (0x100, "coroutine"),
          (0x200, "async generator"), (0x04, "*args parameter"),
          (0x08, "**kwargs parameter"))

# BINARY_OP's argument (3.11+): dis._nb_ops lists (name, symbol) pairs;
# in-place forms ('+=') mean the same on immutable scalars.
_NB_OPS = [sym[:-1] if sym.endswith("=") else sym
           # dis._nb_ops is private: typeshed does not declare it.
           for _, sym in dis._nb_ops]  # type: ignore[attr-defined]

_UNARY = {"UNARY_NEGATIVE": "-", "UNARY_POSITIVE": "+",
          "UNARY_INVERT": "~", "UNARY_NOT": "not"}
_INTRINSIC_UNARY_POSITIVE = 5


def check_version() -> None:
    if VERSION not in SUPPORTED:
        raise Refusal(f"Python {VERSION[0]}.{VERSION[1]} bytecode "
                      "(translation supports 3.11, 3.12, 3.13)")


def check_code(code: CodeType) -> None:
    """Refuse code whose flags or exception table change what the
    instructions mean."""
    for bit, what in _FLAGS:
        if code.co_flags & bit:
            raise Refusal(what, code.co_firstlineno)
    if code.co_kwonlyargcount:
        raise Refusal("keyword-only parameter", code.co_firstlineno)
    if code.co_exceptiontable:
        raise Refusal("try/with (exception handling)", code.co_firstlineno)
    if code.co_cellvars:
        raise Refusal("nested function", code.co_firstlineno)


def _compare(arg: int) -> str:
    # The encoding of COMPARE_OP's argument changes in every version:
    # the index into dis.cmp_op is the whole arg (3.11), arg >> 4 (3.12),
    # arg >> 5 with bit 4 meaning "convert the result to bool" (3.13).
    shift = {(3, 11): 0, (3, 12): 4, (3, 13): 5}[VERSION]
    return dis.cmp_op[arg >> shift]


def _for_exit(raw: list[dis.Instruction], position: dict[int, int],
              ins: dis.Instruction) -> int:
    """The offset where an exhausted FOR_ITER continues."""
    target = ins.argval
    assert isinstance(target, int)
    if VERSION < (3, 12):
        return target                  # 3.11: the target itself
    n = position.get(target)
    skip = ("END_FOR",) if VERSION < (3, 13) else ("END_FOR", "POP_TOP")
    line = ins.positions.lineno if ins.positions else None
    if n is None or n + len(skip) >= len(raw) or \
            tuple(i.opname for i in raw[n:n + len(skip)]) != skip:
        raise Refusal("for loop of an unknown shape", line)
    return raw[n + len(skip)].offset


def decode(code: CodeType) -> list[Ins]:
    """The canonical instructions of ``code``."""
    check_version()
    check_code(code)
    raw = list(dis.get_instructions(code))
    position = {ins.offset: n for n, ins in enumerate(raw)}
    out: list[Ins] = []
    index_of: dict[int, int] = {}   # bytecode offset -> canonical index
    jumps: list[int] = []           # canonical indices holding an offset

    for ins in raw:
        index_of[ins.offset] = len(out)
        name = ins.opname
        line = ins.positions.lineno if ins.positions else None
        arg = ins.arg

        def emit(op: str, value: object = None) -> None:
            out.append(Ins(op, value, line))

        def jump(op: str, sense: bool | None, target: object = None) -> None:
            jumps.append(len(out))
            if target is None:
                target = ins.argval
            assert isinstance(target, int)
            emit(op, target if sense is None else (sense, target))

        if name in _SKIP:
            continue
        if name in _CONSTRUCTS:
            raise Refusal(_CONSTRUCTS[name], line)
        if name in ("LOAD_FAST", "LOAD_FAST_CHECK"):
            emit("LOAD_FAST", ins.argval)
        elif name == "LOAD_FAST_LOAD_FAST":
            for n in ins.argval:
                emit("LOAD_FAST", n)
        elif name == "STORE_FAST":
            emit("STORE_FAST", ins.argval)
        elif name == "STORE_FAST_STORE_FAST":
            for n in ins.argval:
                emit("STORE_FAST", n)
        elif name == "STORE_FAST_LOAD_FAST":
            store, load = ins.argval
            emit("STORE_FAST", store)
            emit("LOAD_FAST", load)
        elif name == "LOAD_CONST":
            emit("LOAD_CONST", ins.argval)
        elif name == "RETURN_CONST":
            emit("LOAD_CONST", ins.argval)
            emit("RETURN")
        elif name == "RETURN_VALUE":
            emit("RETURN")
        elif name == "LOAD_GLOBAL":
            assert arg is not None
            # The low bit asks for a NULL (the call's self slot): pushed
            # below the global up to 3.12, above it from 3.13.
            null = bool(arg & 1)
            if null and VERSION < (3, 13):
                emit("PUSH_NULL")
            emit("LOAD_GLOBAL", ins.argval)
            if null and VERSION >= (3, 13):
                emit("PUSH_NULL")
        elif name == "LOAD_DEREF":
            emit("LOAD_DEREF", ins.argval)
        elif name == "PUSH_NULL":
            emit("PUSH_NULL")
        elif name == "LOAD_METHOD":
            emit("LOAD_METHOD", ins.argval)
        elif name == "LOAD_ATTR":
            assert arg is not None
            # 3.12+: the low bit is LOAD_METHOD's old meaning.
            method = VERSION >= (3, 12) and bool(arg & 1)
            emit("LOAD_METHOD" if method else "LOAD_ATTR", ins.argval)
        elif name == "BINARY_OP":
            assert arg is not None
            emit("BINARY", _NB_OPS[arg])
        elif name == "BINARY_SUBSCR":
            emit("SUBSCR")
        elif name == "COMPARE_OP":
            assert arg is not None
            emit("COMPARE", _compare(arg))
        elif name in _UNARY:
            emit("UNARY", _UNARY[name])
        elif name == "CALL_INTRINSIC_1":
            if arg != _INTRINSIC_UNARY_POSITIVE:
                raise Refusal(f"intrinsic {ins.argrepr}", line)
            emit("UNARY", "+")
        elif name == "TO_BOOL":
            emit("TO_BOOL")
        elif name == "CALL":
            emit("CALL", arg)
        elif name == "BUILD_TUPLE":
            emit("BUILD_TUPLE", arg)
        elif name == "UNPACK_SEQUENCE":
            emit("UNPACK", arg)
        elif name == "COPY":
            emit("COPY", arg)
        elif name == "SWAP":
            emit("SWAP", arg)
        elif name == "POP_TOP":
            emit("POP")
        elif name in ("JUMP_FORWARD", "JUMP_BACKWARD"):
            jump("JUMP", None)
        elif name in ("POP_JUMP_IF_TRUE", "POP_JUMP_FORWARD_IF_TRUE",
                      "POP_JUMP_BACKWARD_IF_TRUE"):
            jump("JUMP_IF", True)
        elif name in ("POP_JUMP_IF_FALSE", "POP_JUMP_FORWARD_IF_FALSE",
                      "POP_JUMP_BACKWARD_IF_FALSE"):
            jump("JUMP_IF", False)
        elif name == "GET_ITER":
            emit("GET_ITER")
        elif name == "FOR_ITER":
            jump("FOR_ITER", None, _for_exit(raw, position, ins))
        elif name == "END_FOR":
            emit("END_FOR")
        elif name == "JUMP_IF_TRUE_OR_POP":
            jump("JUMP_IF_OR_POP", True)
        elif name == "JUMP_IF_FALSE_OR_POP":
            jump("JUMP_IF_OR_POP", False)
        else:
            raise Refusal(f"bytecode {name}", line)

    # Offsets -> canonical indices. A target past the last instruction
    # cannot occur in well-formed code; refuse rather than trust it.
    for k in jumps:
        j = out[k]
        if isinstance(j.arg, tuple):
            sense, off = j.arg
            if off not in index_of:
                raise Refusal("jump into the middle of an instruction", j.line)
            out[k] = Ins(j.op, (sense, index_of[off]), j.line)
        else:
            assert isinstance(j.arg, int)
            if j.arg not in index_of:
                raise Refusal("jump into the middle of an instruction", j.line)
            out[k] = Ins(j.op, index_of[j.arg], j.line)
    return out
