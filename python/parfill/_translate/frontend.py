"""Symbolic execution of canonical bytecode into a typed program.

The code is cut into basic blocks (leaders: jump targets and what follows a
jump or a return). Blocks are translated in order -- every jump goes forward
in acyclic code, so all predecessors of a block are done before it -- by
simulating CPython's value stack with symbolic values (values.py). Each edge
carries the stack and the local variables; where edges meet, a value that
differs between them gets a fresh register and each edge moves its own value
into it (the merged variable must have one Python type on every edge, or the
translation is refused naming it). Branches on constants are decided here,
so the untaken side is never translated.

Loops (issue 12). A loop header -- the target of a backward jump -- is
entered by its forward edges when its block comes in order, before any back
edge is known. The translation starts from the hypothesis that every value at
the header is what the forward edges bring (a constant stays a constant, so a
loop invariant folds); each back edge is then checked against it. A value
that a back edge changes is marked *varying* at that header and the whole
translation restarts (the marks only grow, so this reaches a fixpoint): a
varying value gets a fresh register at the header, moved in on every forward
edge and, as a parallel move, on every back edge. A varying value must keep
its Python type (``x = 0`` then ``x = x / 2`` is refused naming ``x``). The
hypothesis is sound once every back edge agrees with it: by induction over
iterations, every visit of the header sees the values assumed.

A ``for v in range(...)`` loop keeps a ``RangeIter`` on the stack: its
``cur`` is the next value (an int64 register once varying), ``FOR_ITER``
tests it against ``stop`` in the step's direction and, on the edge into the
body, computes ``cur + step`` (an overflow bails).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Optional, Union

from . import bytecode, calls, semantics
from .bytecode import Ins
from .errors import Refusal
from .program import Instr, Program
from .semantics import Builder, DeadPath, Guard, Item, scalar
from .values import (KIND, MATH, MISSING, NULL, K, Obj, RangeIter, Read, Reg,
                     Rng, Tup, Unbound, Value, classify, current, is_null,
                     is_numpy, parts, rebuild, same_value)

# A value's place in a State: ('L', name, path) for a local, ('S', depth,
# path) for a stack slot; the path indexes into tuples and range iterators.
Key = tuple[str, Union[str, int], tuple[int, ...]]

_MAX_ATTEMPTS = 400


class _Restart(Exception):
    """A back edge changed a value assumed constant at its loop header."""


@dataclass
class State:
    stack: list[Value]
    locals: dict[str, Value]

    def copy(self) -> State:
        return State(list(self.stack), dict(self.locals))


@dataclass
class Edge:
    target: int                 # the target block's first instruction
    state: State
    moves: list[Instr] = field(default_factory=list)


@dataclass
class Jump:
    edge: Edge
    line: int | None = None


@dataclass
class Branch:
    cond: int                   # a B register
    if_true: Edge
    if_false: Edge
    line: int | None = None


@dataclass
class Leave:
    instr: Instr                # RET_* or BAIL


Exit = Union[Jump, Branch, Leave]


@dataclass
class Block:
    start: int
    end: int
    body: list[Item] = field(default_factory=list)
    exit: Optional[Exit] = None


class Frontend:
    def __init__(self, func: FunctionType, ndim: int) -> None:
        self.func = func
        self.code: CodeType = func.__code__
        self.ndim = ndim
        self.reads: list[tuple[Read, object]] = []
        self.prog = Program(ndim, name=self.code.co_qualname,
                            filename=self.code.co_filename)
        self.prog.nregs["I"] = ndim
        self.line: int | None = self.code.co_firstlineno
        # header start -> keys of values that change around that loop
        self.varying: dict[int, set[Key]] = {}
        # header start -> (its entry state, {key: its header register})
        self.headers: dict[int, tuple[State, dict[Key, Reg]]] = {}
        self.fresh: set[Reg] = set()

    # -- reading the outside world -------------------------------------------

    def read(self, r: Read, label: str) -> Value:
        v = current(self.func, r)
        if all(r != seen for seen, _ in self.reads):
            self.reads.append((r, v))   # the cache checks each read once
        if v is MISSING:
            raise Refusal(f"undefined name '{label}'")
        return classify(v, label)

    def parameters(self) -> dict[str, Value]:
        code = self.code
        nargs = code.co_argcount
        names = code.co_varnames[:nargs]
        if nargs < self.ndim:
            raise Refusal(f"{nargs} parameters for {self.ndim} indices",
                          code.co_firstlineno)
        defaults = self.func.__defaults__ or ()
        first_default = nargs - len(defaults)
        env: dict[str, Value] = {}
        for k, name in enumerate(names):
            if k < self.ndim:
                env[name] = Reg("I", k)
            elif k >= first_default:
                env[name] = self.read(Read("default", k - first_default),
                                      name)
            else:
                raise Refusal(f"parameter '{name}' without a default beyond "
                              f"the {self.ndim} indices", code.co_firstlineno)
        return env

    # -- the driver ----------------------------------------------------------

    def translate(self) -> Program:
        try:
            self.ins = bytecode.decode(self.code)   # once for every attempt
            for _ in range(_MAX_ATTEMPTS):
                self.reads = []
                self.prog = Program(self.ndim, name=self.code.co_qualname,
                                    filename=self.code.co_filename)
                self.prog.nregs["I"] = self.ndim
                self.line = self.code.co_firstlineno
                self.headers = {}
                try:
                    return self._translate()
                except _Restart:
                    continue
            raise Refusal("loop whose values do not settle")
        except Refusal as e:
            if e.lineno is None:
                e.lineno = self.line
            raise

    def _translate(self) -> Program:
        code = self.code
        if self.ndim < 0:
            raise Refusal("negative ndim")
        ins = self.ins
        env = self.parameters()
        blocks = self.blocks(ins)
        heads = {t for k, t in self.targets(ins) if t <= k}
        incoming: dict[int, list[Edge]] = {0: [Edge(0, State([], env))]}
        for blk in blocks:
            edges = incoming.pop(blk.start, [])
            if not edges:
                continue                      # unreachable
            b = Builder(self.prog)
            self.fresh = set()
            state = self.merge(edges, b)
            if blk.start in heads:
                state = self.widen(blk.start, state, edges)
            self.run_block(blk, ins, state, b)
            blk.body = b.body
            assert blk.exit is not None
            for e in self.edges(blk.exit):
                if e.target <= blk.start:
                    self.back_edge(e)
                else:
                    incoming.setdefault(e.target, []).append(e)
        assert not incoming
        return self.layout([b for b in blocks if b.exit is not None])

    @staticmethod
    def targets(ins: list[Ins]) -> list[tuple[int, int]]:
        """(index, target) of every jump."""
        out = []
        for k, i in enumerate(ins):
            if i.op in ("JUMP", "FOR_ITER"):
                assert isinstance(i.arg, int)
                out.append((k, i.arg))
            elif i.op in ("JUMP_IF", "JUMP_IF_OR_POP"):
                assert isinstance(i.arg, tuple)
                out.append((k, i.arg[1]))
        return out

    def blocks(self, ins: list[Ins]) -> list[Block]:
        leaders = {0}
        for k, i in enumerate(ins):
            if i.op in ("JUMP", "JUMP_IF", "JUMP_IF_OR_POP", "RETURN",
                        "FOR_ITER"):
                leaders.add(k + 1)
        leaders.update(t for _, t in self.targets(ins))
        starts = sorted(x for x in leaders if x < len(ins))
        ends = starts[1:] + [len(ins)]
        return [Block(s, e) for s, e in zip(starts, ends)]

    @staticmethod
    def edges(x: Exit) -> list[Edge]:
        if isinstance(x, Jump):
            return [x.edge]
        if isinstance(x, Branch):
            return [x.if_true, x.if_false]
        return []

    # -- merging ---------------------------------------------------------------

    def merge(self, edges: list[Edge], b: Builder) -> State:
        if len(edges) == 1:
            return edges[0].state.copy()
        depth = {len(e.state.stack) for e in edges}
        if len(depth) != 1:
            raise Refusal("paths with different stack depths")
        stack = [self.merge_values([e.state.stack[k] for e in edges], edges,
                                   "the value of a conditional expression "
                                   "or and/or", b)
                 for k in range(depth.pop())]
        names: list[str] = []
        for e in edges:
            names += [n for n in e.state.locals if n not in names]
        local: dict[str, Value] = {}
        for n in names:
            vals = [e.state.locals.get(n) for e in edges]
            if any(v is None or isinstance(v, Unbound) for v in vals):
                local[n] = Unbound(n)
            else:
                local[n] = self.merge_values(
                    [v for v in vals if v is not None], edges,
                    f"variable '{n}'", b)
        return State(stack, local)

    def merge_values(self, vals: list[Value], edges: list[Edge], what: str,
                     b: Builder) -> Value:
        first = vals[0]
        if all(same_value(v, first) for v in vals[1:]):
            return first
        ps = [p for v in vals if (p := parts(v)) is not None]
        if len(ps) == len(vals) and len({type(v) for v in vals}) == 1:
            n = {len(p) for p in ps}
            if len(n) == 1:
                return rebuild(first, [
                    self.merge_values([p[k] for p in ps], edges, what, b)
                    for k in range(n.pop())])
        types = []
        for v in vals:
            if not isinstance(v, (Reg, K)):
                raise Refusal(f"{what}: {semantics.describe(v)} on one path")
            types.append(v.pytype)
        if len(set(types)) != 1:
            names = " and ".join(sorted({t.__name__ for t in types}))
            raise Refusal(f"{what} has different types on different paths "
                          f"({names})")
        kind = KIND[types[0]]
        dst = Reg(kind, self.prog.reg(kind))
        for v, e in zip(vals, edges):
            e.moves += self.moves(dst, v)
        self.fresh.add(dst)
        return dst

    def moves(self, dst: Reg, v: Value) -> list[Instr]:
        """The instructions that put scalar ``v`` into ``dst``."""
        eb = Builder(self.prog)
        eb.line = self.line
        if isinstance(v, Reg):
            assert v.kind == dst.kind
            if v != dst:
                eb.emit(dst.kind + "_MOV", dst.n, v.n)
        else:
            assert isinstance(v, K)
            eb.const(v, dst.n)
        return eb.instrs()

    # -- loops -----------------------------------------------------------------

    @staticmethod
    def what(key: Key) -> str:
        if key[0] == "L":
            return f"variable '{key[1]}'"
        return "the loop's iterator" if key[2] else "a value on the stack"

    def slots(self, st: State) -> list[tuple[Key, Value]]:
        return [(("L", n, ()), v) for n, v in st.locals.items()] + \
            [(("S", k, ()), v) for k, v in enumerate(st.stack)]

    def widen(self, start: int, st: State, edges: list[Edge]) -> State:
        """The header's entry state: every value marked varying gets a
        register of its own, moved in on each forward edge."""
        var = self.varying.get(start, set())
        regs: dict[Key, Reg] = {}

        def go(key: Key, v: Value) -> Value:
            p = parts(v)
            if p is not None:
                return rebuild(v, [go((key[0], key[1], key[2] + (k,)), x)
                                   for k, x in enumerate(p)])
            if key not in var or isinstance(v, Unbound):
                return v
            if not isinstance(v, (Reg, K)):
                raise Refusal(f"{self.what(key)}: {semantics.describe(v)} "
                              "that changes in the loop")
            if isinstance(v, Reg) and v in self.fresh:
                r = v                  # made for this join: only edges set it
            else:
                r = Reg(v.kind, self.prog.reg(v.kind))
                for e in edges:
                    e.moves += self.moves(r, v)
            regs[key] = r
            return r

        out = State([go(("S", k, ()), v) for k, v in enumerate(st.stack)],
                    {n: go(("L", n, ()), v) for n, v in st.locals.items()})
        self.headers[start] = (out.copy(), regs)   # the block mutates its own
        return out

    def back_edge(self, e: Edge) -> None:
        """Check a back edge against its header's hypothesis: the moves of
        its varying values, or a restart if it changes another one."""
        if e.target not in self.headers:
            raise Refusal("loop entered only from inside")
        hs, regs = self.headers[e.target]
        bs = e.state
        if len(bs.stack) != len(hs.stack):
            raise Refusal("paths with different stack depths")
        pairs: list[tuple[Reg, Value]] = []
        changed: set[Key] = set()

        def go(key: Key, hv: Value, bv: Value | None) -> None:
            if isinstance(hv, Unbound):
                return
            if bv is None or isinstance(bv, Unbound):
                raise Refusal(f"{self.what(key)} that may be unbound in the "
                              "loop")
            hp, bp = parts(hv), parts(bv)
            if hp is not None:
                if bp is None or type(hv) is not type(bv) or \
                        len(hp) != len(bp):
                    raise Refusal(f"{self.what(key)}: "
                                  f"{semantics.describe(hv)} that changes "
                                  "shape in the loop")
                for k, (x, y) in enumerate(zip(hp, bp)):
                    go((key[0], key[1], key[2] + (k,)), x, y)
                return
            if key in regs:
                r = regs[key]              # what widen() put at the header
                if not isinstance(bv, (Reg, K)):
                    raise Refusal(f"{self.what(key)} becomes "
                                  f"{semantics.describe(bv)} in the loop")
                if bv.pytype is not r.pytype:
                    raise Refusal(
                        f"{self.what(key)} changes type in the loop "
                        f"({r.pytype.__name__}, then "
                        f"{bv.pytype.__name__})")
                pairs.append((r, bv))
            elif not same_value(hv, bv):
                changed.add(key)

        for key, hv in self.slots(hs):
            where = key[1]          # a local's name or a stack slot's depth
            if isinstance(where, str):
                go(key, hv, bs.locals.get(where))
            else:
                go(key, hv, bs.stack[where])
        if changed:
            self.varying.setdefault(e.target, set()).update(changed)
            raise _Restart()
        e.moves += self.parallel(pairs)

    def parallel(self, pairs: list[tuple[Reg, Value]]) -> list[Instr]:
        """Moves ``dst = src`` all at once (``a, b = b, a`` around a loop):
        a source that is also a destination is copied first."""
        pairs = [(d, v) for d, v in pairs if v != d or isinstance(v, K)]
        dsts = {d for d, _ in pairs}
        out: list[Instr] = []
        final: list[tuple[Reg, Value]] = []
        for d, v in pairs:
            if isinstance(v, Reg) and v in dsts:
                t = Reg(v.kind, self.prog.reg(v.kind))
                out += self.moves(t, v)
                v = t
            final.append((d, v))
        for d, v in final:
            out += self.moves(d, v)
        return out

    # -- one block -------------------------------------------------------------

    def run_block(self, blk: Block, ins: list[Ins], st: State,
                  b: Builder) -> None:
        k = blk.start
        try:
            while k < blk.end:
                i = ins[k]
                self.line = i.line if i.line is not None else self.line
                b.line = self.line
                done = self.step(i, k, st, b, blk)
                if done:
                    return
                k += 1
        except DeadPath:
            # Python raises on every call reaching this point: the VM bails
            # and Python redoes the element (and raises).
            blk.exit = Leave(Instr("BAIL", line=self.line))
            return
        if blk.end >= len(ins):
            raise Refusal("code that does not end in a return")
        blk.exit = Jump(Edge(blk.end, st), self.line)

    def step(self, i: Ins, k: int, st: State, b: Builder,
             blk: Block) -> bool:
        """Simulate one instruction; True when it ended the block."""
        s = st.stack
        op, arg = i.op, i.arg
        if op == "LOAD_FAST":
            assert isinstance(arg, str)
            if arg not in st.locals:
                raise Refusal(f"variable '{arg}' used before assignment")
            v = st.locals[arg]
            if isinstance(v, Unbound):
                raise Refusal(f"variable '{arg}' that may be unbound")
            s.append(v)
        elif op == "STORE_FAST":
            assert isinstance(arg, str)
            st.locals[arg] = s.pop()
        elif op == "LOAD_CONST":
            s.append(classify(arg, repr(arg)))
        elif op == "LOAD_GLOBAL":
            assert isinstance(arg, str)
            s.append(self.read(Read("global", arg), arg))
        elif op == "LOAD_DEREF":
            assert isinstance(arg, str)
            free = self.code.co_freevars
            if arg not in free:
                raise Refusal(f"closure variable '{arg}'")
            s.append(self.read(Read("deref", free.index(arg)), arg))
        elif op == "PUSH_NULL":
            s.append(NULL)
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            assert isinstance(arg, str)
            v = self.attribute(s.pop(), arg, b)
            if op == "LOAD_METHOD":
                s.append(NULL)
            s.append(v)
        elif op == "BINARY":
            assert isinstance(arg, str)
            y = s.pop()
            x = s.pop()
            s.append(semantics.binary(b, arg, x, y))
        elif op == "COMPARE":
            assert isinstance(arg, str)
            y = s.pop()
            x = s.pop()
            s.append(semantics.compare(b, arg, x, y))
        elif op == "UNARY":
            assert isinstance(arg, str)
            s.append(semantics.unary(b, arg, s.pop()))
        elif op == "TO_BOOL":
            s.append(semantics.truth(b, s.pop()))
        elif op == "CALL":
            assert isinstance(arg, int)
            args = s[len(s) - arg:]
            del s[len(s) - arg:]
            x, y = s.pop(), s.pop()
            # [callable, NULL] in 3.13, [NULL, callable] before: either way
            # one of the two slots is NULL for a plain function call.
            if is_null(x) == is_null(y):
                raise Refusal("method call")
            s.append(calls.call(b, y if is_null(x) else x, args))
        elif op == "SUBSCR":
            idx = s.pop()
            t = s.pop()
            if not isinstance(t, Tup) or not isinstance(idx, K) \
                    or type(idx.value) is not int:
                raise Refusal(f"subscript of {semantics.describe(t)}")
            try:
                s.append(t.items[int(idx.value)])
            except IndexError:
                raise DeadPath("tuple index out of range")
        elif op == "BUILD_TUPLE":
            assert isinstance(arg, int)
            items = tuple(s[len(s) - arg:])
            del s[len(s) - arg:]
            s.append(Tup(items))
        elif op == "UNPACK":
            assert isinstance(arg, int)
            t = s.pop()
            if not isinstance(t, Tup):
                raise Refusal(f"unpacking {semantics.describe(t)}")
            if len(t.items) != arg:
                raise DeadPath("unpacking a tuple of another length")
            s.extend(reversed(t.items))
        elif op == "COPY":
            assert isinstance(arg, int)
            s.append(s[-arg])
        elif op == "SWAP":
            assert isinstance(arg, int)
            s[-1], s[-arg] = s[-arg], s[-1]
        elif op == "POP":
            s.pop()
        elif op == "RETURN":
            blk.exit = Leave(self.ret(s.pop(), b))
            return True
        elif op == "GET_ITER":
            r = s.pop()
            if isinstance(r, Tup):
                raise Refusal("for loop over a tuple")
            if not isinstance(r, Rng):
                raise Refusal(f"for loop over {semantics.describe(r)}")
            s.append(RangeIter(r.start, r.stop, r.step))
        elif op == "FOR_ITER":
            assert isinstance(arg, int)
            it = s[-1]
            assert isinstance(it, RangeIter)
            more = semantics.range_more(b, it)
            out = st.copy()
            out.stack.pop()
            # The next value is computed on the edge into the body only: an
            # exhausted iterator never adds (no overflow past the end).
            eb = Builder(self.prog)
            eb.line = self.line
            nxt = semantics.binary(eb, "+", it.cur, it.step)
            assert isinstance(nxt, (Reg, K))
            body = State(s[:-1] + [RangeIter(nxt, it.stop, it.step), it.cur],
                         dict(st.locals))
            into, done = Edge(k + 1, body, eb.instrs()), Edge(arg, out)
            if isinstance(more, K):
                blk.exit = Jump(into if more.value else done, self.line)
            else:
                assert isinstance(more, Reg)
                blk.exit = Branch(more.n, into, done, self.line)
            return True
        elif op == "JUMP":
            assert isinstance(arg, int)
            blk.exit = Jump(Edge(arg, st), self.line)
            return True
        elif op in ("JUMP_IF", "JUMP_IF_OR_POP"):
            assert isinstance(arg, tuple)
            sense, target = arg
            v = s[-1] if op == "JUMP_IF_OR_POP" else s.pop()
            t = semantics.truth(b, v)
            taken = st.copy()
            if op == "JUMP_IF_OR_POP":
                s.pop()                        # the fall-through pops it
            if isinstance(t, K):
                blk.exit = Jump(Edge(target, taken) if t.value == sense
                                else Edge(k + 1, st), self.line)
            else:
                assert isinstance(t, Reg)
                jump, fall = Edge(target, taken), Edge(k + 1, st)
                yes, no = (jump, fall) if sense else (fall, jump)
                blk.exit = Branch(t.n, yes, no, self.line)
            return True
        else:
            raise Refusal(f"bytecode {op}")
        return False

    def attribute(self, obj: Value, name: str, b: Builder) -> Value:
        if isinstance(obj, Obj) and (obj.value is MATH or is_numpy(obj.value)):
            mod = obj.value
            label = f"{getattr(mod, '__name__')}.{name}"
            return self.read(Read("attr", (mod, name)), label)
        v = semantics.attribute(b, obj, name)
        if v is not None:
            return v
        raise Refusal(f"attribute .{name} of {semantics.describe(obj)}")

    def ret(self, v: Value, b: Builder) -> Instr:
        x = scalar(v, "return")
        r = b.reg(x)
        return Instr("RET_" + x.kind, 0, r, line=self.line)

    # -- layout ----------------------------------------------------------------

    def layout(self, blocks: list[Block]) -> Program:
        """Blocks in bytecode order (every forward edge goes forward; back
        edges close loops), each followed by the move stubs of its branch
        edges; then
        a shared BAIL for guards. Jumps to the next instruction are left out
        and labels resolved to instruction indices."""
        out: list[Union[Instr, str]] = []       # a str is a label
        label = {b.start: f"b{b.start}" for b in blocks}
        need_bail = False
        out.extend(self.prog.prologue)
        for n, blk in enumerate(blocks):
            out.append(label[blk.start])
            nxt = blocks[n + 1].start if n + 1 < len(blocks) else None
            for it in blk.body:
                if isinstance(it, Guard):
                    need_bail = True
                    ok = f"g{len(out)}"
                    t, f = ("bail", ok) if it.bail_if else (ok, "bail")
                    out.append(Instr("BR", 0, it.cond, 0, 0, it.line))
                    out.append(f"{t}|{f}")      # resolved below
                    out.append(ok)
                else:
                    out.append(it)
            x = blk.exit
            if isinstance(x, Leave):
                out.append(x.instr)
            elif isinstance(x, Jump):
                out.extend(x.edge.moves)
                if x.edge.target != nxt:
                    out.append(Instr("JMP", 0, 0, line=x.line))
                    out.append(f"->{label[x.edge.target]}")
            else:
                assert isinstance(x, Branch)
                tl, fl = self.stub_label(x.if_true, label), \
                    self.stub_label(x.if_false, label)
                out.append(Instr("BR", 0, x.cond, 0, 0, x.line))
                out.append(f"{tl}|{fl}")
                for e, lab in ((x.if_true, tl), (x.if_false, fl)):
                    if e.moves and lab.startswith("e"):
                        out.append(lab)
                        out.extend(e.moves)
                        out.append(Instr("JMP", 0, 0, line=x.line))
                        out.append(f"->{label[e.target]}")
        if need_bail:
            out.append("bail")
            out.append(Instr("BAIL", line=self.line))
        # Resolve: a plain str is a label at the next instruction's index;
        # 'x|y' patches the previous BR's targets, '->x' the previous JMP's.
        pos: dict[str, int] = {}
        pc = 0
        for item in out:
            if isinstance(item, Instr):
                pc += 1
            elif "|" not in item and not item.startswith("->"):
                pos[item] = pc
        prog = self.prog
        prev: Instr | None = None
        for item in out:
            if isinstance(item, Instr):
                prog.instrs.append(item)
                prev = item
            elif "|" in item:
                assert prev is not None and prev.op == "BR"
                t, f = item.split("|")
                prev.b, prev.c = pos[t], pos[f]
            elif item.startswith("->"):
                assert prev is not None and prev.op == "JMP"
                prev.a = pos[item[2:]]
        prog.coalesce_moves()
        prog.validate()
        return prog

    _stubs = 0

    def stub_label(self, e: Edge, label: dict[int, str]) -> str:
        if not e.moves:
            return label[e.target]
        Frontend._stubs += 1
        return f"e{Frontend._stubs}"


def translate_program(func: FunctionType, ndim: int
                      ) -> tuple[Program, list[tuple[Read, object]]]:
    """The program of ``func`` and every outside value it read."""
    fe = Frontend(func, ndim)
    return fe.translate(), fe.reads
