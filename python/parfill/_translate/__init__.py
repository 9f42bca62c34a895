"""Exact translation of plain Python functions into parfill's native engine
(SPEC section 9).

``translate(func, ndim)`` reads ``func``'s bytecode (bytecode.py), executes
it symbolically into a typed, guarded program (frontend.py, semantics.py,
calls.py, values.py) and returns it as a :class:`Kernel`; ``reference.py``
runs such a program in Python, op by op, as the oracle for tests.

Pure Python with no import of NumPy or the extension at import time: the
front end runs, and is tested, on every supported CPython even where the
extension is not built. The VM's opcode numbers are read from
``parfill._core.pyvm_opcodes()`` only when a program is serialised.
"""
from __future__ import annotations

import importlib
import weakref
from types import CodeType, FunctionType
from typing import Mapping, NamedTuple

from .errors import Refusal, TranslationError
from .frontend import Frontend
from .program import Program
from .values import Read, current, same

__all__ = ["Kernel", "TranslationError", "translate", "vm_tables"]


class Kernel:
    """A Python function translated for parfill's native engine.

    ``source`` is a readable listing of the program (one line per
    instruction, with register names and the source line it came from),
    ``ndim`` the number of index parameters; ``code``, ``iconsts``,
    ``fconsts`` and ``nregs`` are the serialised program that
    ``parfill._core.fill_translated`` runs."""

    __slots__ = ("program", "ndim", "_source", "_serialized", "__weakref__")

    def __init__(self, program: Program) -> None:
        self.program = program
        self.ndim = program.ndim
        self._source: str | None = None
        self._serialized: tuple[bytes, bytes, bytes] | None = None

    @property
    def source(self) -> str:
        if self._source is None:
            self._source = self.program.listing()
        return self._source

    def _serial(self) -> tuple[bytes, bytes, bytes]:
        if self._serialized is None:
            opcodes, functions = vm_tables()
            self._serialized = self.program.serialize(opcodes, functions)
        return self._serialized

    @property
    def code(self) -> bytes:
        """Little-endian int32 words, five per instruction."""
        return self._serial()[0]

    @property
    def iconsts(self) -> bytes:
        return self._serial()[1]

    @property
    def fconsts(self) -> bytes:
        return self._serial()[2]

    @property
    def nregs(self) -> tuple[int, ...]:
        """``(nI, nF, nB)``, or ``(nI, nF, nB, nC)`` when the program uses
        complex registers (issue 12's contract: a 3-tuple means nC = 0)."""
        n = self.program.nregs
        base = (n["I"], n["F"], n["B"])
        return base + (n["C"],) if n["C"] else base

    def __repr__(self) -> str:
        p = self.program
        return (f"<parfill.Kernel {p.name} ndim={self.ndim} "
                f"{len(p.instrs)} instructions>")


_tables: tuple[Mapping[str, int], Mapping[str, int]] | None = None


def vm_tables() -> tuple[Mapping[str, int], Mapping[str, int]]:
    """``({op name: number}, {math function: id})`` from the extension --
    the one opcode table is the C one (src/pyvm_opcodes.h)."""
    global _tables
    if _tables is None:
        core = importlib.import_module("parfill._core")
        if not hasattr(core, "pyvm_opcodes"):
            raise RuntimeError("parfill._core has no translated-function VM "
                               "(pyvm_opcodes)")
        _tables = (dict(core.pyvm_opcodes()), dict(core.pyvm_functions()))
    return _tables


# -- the cache ------------------------------------------------------------------
#
# Per code object (weakly: a lambda made in a loop must not be kept alive;
# equal code objects -- same bytecode, constants, names and lines -- share),
# a short list of translations, each with the outside values it read. A hit
# needs every value to be the same now (same type and value, floats by bits,
# objects by identity): a changed global, closure cell or default gives a
# new translation. Refusals are cached the same way, so `populate` pays the
# attempt once per function and constants.

class _Entry(NamedTuple):
    ndim: int
    filename: str    # equal code objects may come from different files
    reads: tuple[tuple[Read, object], ...]
    kernel: Kernel | None
    refusal: tuple[str, str, int | None] | None


_CACHE: "weakref.WeakKeyDictionary[CodeType, list[_Entry]]" = \
    weakref.WeakKeyDictionary()
_PER_CODE = 8


def translate(func: object, ndim: int) -> Kernel:
    """Translate ``func`` (called as ``func(i0, ..., i{ndim-1})`` with int
    indices) into a :class:`Kernel`, or raise :class:`TranslationError`
    naming the construct, file and line that stopped it."""
    if type(ndim) is not int:
        raise TypeError(f"ndim must be an int, not {type(ndim).__name__}")
    if not 0 <= ndim <= 64:
        raise ValueError(f"ndim must be between 0 and 64, got {ndim}")
    if not isinstance(func, FunctionType):
        raise TranslationError(
            f"{type(func).__name__} object (only plain Python functions "
            "translate)")
    code = func.__code__
    entries = _CACHE.get(code)
    if entries is not None:
        for e in entries:
            if e.ndim == ndim and e.filename == code.co_filename and \
                    all(same(current(func, r), v) for r, v in e.reads):
                if e.kernel is not None:
                    return e.kernel
                assert e.refusal is not None
                raise TranslationError(*e.refusal)
    fe = Frontend(func, ndim)
    kernel: Kernel | None = None
    refusal: tuple[str, str, int | None] | None = None
    try:
        kernel = Kernel(fe.translate())
    except Refusal as r:
        refusal = (r.construct, code.co_filename, r.lineno)
    except RecursionError:
        refusal = ("expression nested too deeply", code.co_filename, None)
    if entries is None:
        entries = _CACHE.setdefault(code, [])
    entries.insert(0, _Entry(ndim, code.co_filename, tuple(fe.reads), kernel,
                             refusal))
    del entries[_PER_CODE:]
    if kernel is None:
        assert refusal is not None
        raise TranslationError(*refusal)
    return kernel
