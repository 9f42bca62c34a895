/*
 * expr_compiler.c -- syntax tree -> typed SSA -> register bytecode.
 *
 * DESIGN
 * One forward walk over the tree (children precede parents) builds SSA
 * values. Each value has a type (bool, int64, float64, with NumPy's rules:
 * the common type of the operands, then the first entry of the opcode table
 * for that operator and type) and a location:
 *   CONST    known now: folded by running the VM's own opcode on it, so a
 *            folded value is bit-identical to the same value computed per
 *            element;
 *   UNIFORM  depends on the shape only (`size`, `n0`...): computed once per
 *            fill by a slot-only program;
 *   VECTOR   one value per element: computed per block in registers.
 * Identical values are shared (hash-consing), so `sin(i)*cos(i)` generates i
 * once. Liveness then counts uses from the root; dead values are dropped;
 * registers are allocated in program order and freed at their last use, so
 * an instruction may write over an operand that dies there.
 *
 * Type rules worth knowing (NumPy 2 on int64 arrays with Python scalars):
 * int ** int stays int unless the exponent is a negative constant (then
 * float, per SPEC section 4; a negative exponent computed per element is a
 * run-time error, as NumPy raises); x**2, x**-1, x**0.5 and x**1 with a
 * constant exponent are x*x, 1/x, sqrt(x) and x, as NumPy's fast scalar
 * power and glibc's correctly rounded pow give them; functions
 * of bool compute in float64 where NumPy would choose float16.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

enum shape {
  SHAPE_UN,
  SHAPE_BIN,
  SHAPE_BINX,
  SHAPE_MVEC1,
  SHAPE_MVEC2,
  SHAPE_INTR1,
  SHAPE_NOP,
  SHAPE_INDEX,
  SHAPE_SPECIAL,
  SHAPE_RANDOM
};

typedef struct op_info {
  const char *sym;
  uint8_t symlen, shape, out, in, flags;
  const char *name;
} op_info;

static const op_info op_table[PF__OP_COUNT] = {
#define PF__OP_INFO(name, shape, sym, out, in, flags, ...)             \
  {sym,        (uint8_t)(sizeof(sym) - 1), SHAPE_##shape, PF__T_##out, \
   PF__T_##in, flags,                      #name},
    PF__EXPR_OPCODES(PF__OP_INFO)
#undef PF__OP_INFO
};

const char *pf__op_name(int op) {
  return op >= 0 && op < PF__OP_COUNT ? op_table[op].name : "?";
}

static int arity(const op_info *o) {
  switch (o->shape) {
    case SHAPE_BIN:
    case SHAPE_BINX:
    case SHAPE_MVEC2:
      return 2;
    case SHAPE_INDEX:
      return 0;
    case SHAPE_SPECIAL:
      return o->symlen > 0 ? 3 : 1; /* where(c, a, b); broadcasts */
    default:
      return 1;
  }
}

static const char *type_name(int type) {
  return type == PF__T_B ? "bool" : type == PF__T_I ? "int64" : "float64";
}

/* ------------------------------------------------------------- SSA values */

enum { LOC_CONST, LOC_UNIFORM, LOC_VECTOR };
/* Pseudo-opcodes of values that are not computed by an instruction. */
enum { IR_CONST = PF__OP_COUNT, IR_INPUT };
#define IR_SIZE_AXIS 255 /* IR_INPUT of `size`; others are n<axis> */

typedef struct ir {
  uint16_t op;
  uint8_t type, loc, axis;
  int32_t arg[PF__MAX_ARGS];
  int32_t pos;
  pf__scalar value; /* IR_CONST */
  int32_t uses;
  int32_t home; /* slot or register */
} ir;

typedef struct compiler {
  const char *text;
  const pf__ast *ast;
  const pf_param *params;
  size_t nparams;
  int ndim, isa;
  ir *v;
  int32_t n, cap;
  int32_t *table; /* hash-consing: value indices, -1 empty */
  uint32_t mask;
  pf_error *err;
} compiler;

static uint64_t ir_hash(const ir *x) {
  uint64_t h = (uint64_t)x->op * UINT64_C(0x9E3779B97F4A7C15);
  h ^= (uint64_t)x->type << 8 | (uint64_t)x->axis << 16;
  for (int k = 0; k < PF__MAX_ARGS; k++)
    h = (h ^ (uint32_t)x->arg[k]) * UINT64_C(0x100000001B3);
  h = (h ^ (uint64_t)x->value.i) * UINT64_C(0xff51afd7ed558ccd);
  return h ^ (h >> 29);
}

static int ir_same(const ir *x, const ir *y) {
  return x->op == y->op && x->type == y->type && x->axis == y->axis &&
         memcmp(x->arg, y->arg, sizeof x->arg) == 0 &&
         x->value.i == y->value.i;
}

static int32_t oom(compiler *c) {
  pf__error_set(c->err, PF_ENOMEM, -1, "out of memory");
  return -1;
}

static int rehash(compiler *c, uint32_t size) {
  int32_t *table = pf__malloc(size * sizeof *table);
  if (table == NULL) return -1;
  memset(table, 0xff, size * sizeof *table);
  free(c->table);
  c->table = table;
  c->mask = size - 1;
  for (int32_t k = 0; k < c->n; k++) {
    uint32_t slot = (uint32_t)ir_hash(&c->v[k]) & c->mask;
    while (table[slot] >= 0) slot = (slot + 1) & c->mask;
    table[slot] = k;
  }
  return 0;
}

/* Returns the index of an equal value, or appends x. -1 when out of memory.
 * Values are only ever appended: indices stay valid, pointers do not. */
static int32_t intern(compiler *c, ir x) {
  x.uses = 0;
  x.home = -1;
  if ((uint32_t)c->n * 2 >= c->mask + 1 && rehash(c, (c->mask + 1) * 2) != 0)
    return oom(c);
  uint32_t slot = (uint32_t)ir_hash(&x) & c->mask;
  for (; c->table[slot] >= 0; slot = (slot + 1) & c->mask)
    if (ir_same(&c->v[c->table[slot]], &x)) return c->table[slot];
  if (c->n == c->cap) {
    int32_t cap = c->cap * 2;
    ir *v = pf__realloc(c->v, (size_t)cap * sizeof *v);
    if (v == NULL) return oom(c);
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n] = x;
  c->table[slot] = c->n;
  return c->n++;
}

static int32_t constant(compiler *c, pf__type type, pf__scalar value,
                        int32_t pos) {
  ir x = {.op = IR_CONST, .type = (uint8_t)type, .loc = LOC_CONST,
          .arg = {-1, -1, -1}, .pos = pos, .value = value};
  return intern(c, x);
}

static int32_t constant_f(compiler *c, double f, int32_t pos) {
  return constant(c, PF__T_F, (pf__scalar){.f = f}, pos);
}

/* Evaluates an opcode on constants with the VM itself. */
static int32_t fold(compiler *c, const ir *x) {
  pf__scalar s[PF__MAX_ARGS + 1] = {{0}};
  pf__instr ins = {.op = (uint8_t)x->op, .variant = PF__VV,
                   .slots = PF__LOC_DST | PF__LOC_A | PF__LOC_B | PF__LOC_C,
                   .dst = PF__MAX_ARGS, .a = -1, .b = -1, .c = -1,
                   .pos = x->pos};
  int32_t *operands[PF__MAX_ARGS] = {&ins.a, &ins.b, &ins.c};
  for (int k = 0; k < PF__MAX_ARGS && x->arg[k] >= 0; k++) {
    assert(c->v[x->arg[k]].loc == LOC_CONST);
    s[k] = c->v[x->arg[k]].value;
    *operands[k] = k;
  }
  pf__vm_env env = {.slots = s, .isa = c->isa};
  int32_t pos;
  if (pf__vm_exec(&ins, 1, &env, 1, NULL, &pos) != 0) {
    pf__error_set(c->err, PF_ETYPE, pos,
                  "integers to negative integer powers are not allowed");
    return -1;
  }
  return constant(c, (pf__type)x->type, s[PF__MAX_ARGS], x->pos);
}

static int32_t emit_index(compiler *c, int op, int axis, int32_t pos) {
  ir x = {.op = (uint16_t)op, .type = op_table[op].out, .loc = LOC_VECTOR,
          .axis = (uint8_t)axis, .arg = {-1, -1, -1}, .pos = pos};
  return intern(c, x);
}

/* A value computed by opcode `op` from args (-1 for none), of `type`. */
static int32_t emit(compiler *c, int op, pf__type type, int32_t a, int32_t b,
                    int32_t cc, int32_t pos) {
  ir x = {.op = (uint16_t)op, .type = (uint8_t)type, .arg = {a, b, cc},
          .pos = pos};
  int loc = LOC_CONST;
  for (int k = 0; k < PF__MAX_ARGS; k++)
    if (x.arg[k] >= 0 && c->v[x.arg[k]].loc > loc) loc = c->v[x.arg[k]].loc;
  const int shape = op_table[op].shape;
  const int broadcast = op == PF__OP_BCAST_I || op == PF__OP_BCAST_F;
  /* Random values depend on idx although their operands are constants. */
  if (broadcast || shape == SHAPE_RANDOM) loc = LOC_VECTOR;
  if (loc == LOC_CONST) return fold(c, &x);
  if (loc == LOC_VECTOR && !broadcast && shape != SHAPE_UN &&
      shape != SHAPE_BIN && shape != SHAPE_BINX && shape != SHAPE_RANDOM) {
    /* Only element-wise loops read scalar slots; broadcast for the rest. */
    for (int k = 0; k < PF__MAX_ARGS; k++) {
      if (x.arg[k] < 0 || c->v[x.arg[k]].loc == LOC_VECTOR) continue;
      int type_k = c->v[x.arg[k]].type;
      x.arg[k] = emit(c, type_k == PF__T_F ? PF__OP_BCAST_F : PF__OP_BCAST_I,
                      (pf__type)type_k, x.arg[k], -1, -1, pos);
      if (x.arg[k] < 0) return -1;
    }
  }
  x.loc = (uint8_t)loc;
  return intern(c, x);
}

/* Converts value v to type `to` (bool to int is free: same storage). */
static int32_t convert(compiler *c, int32_t v, pf__type to) {
  if (v < 0) return -1;
  const ir x = c->v[v];
  if (x.type == to || (x.type == PF__T_B && to == PF__T_I)) return v;
  if (to == PF__T_F) {
    /* Generate float index variables directly instead of converting. */
    if (x.op == PF__OP_AXIS_I)
      return emit_index(c, PF__OP_AXIS_F, x.axis, x.pos);
    if (x.op == PF__OP_FLAT_I) return emit_index(c, PF__OP_FLAT_F, 0, x.pos);
    /* float(-i) is 0.0 - float(i) for index variables (never INT64_MIN):
     * not -float(i), which is -0.0 at i = 0 where NumPy's int64 negation
     * gives 0 and so +0.0 (copysign(1, -i), 1/(-i*1.0)). */
    if (x.op == PF__OP_NEG_I && (c->v[x.arg[0]].op == PF__OP_AXIS_I ||
                                 c->v[x.arg[0]].op == PF__OP_FLAT_I)) {
      int32_t zero = constant_f(c, 0.0, x.pos);
      int32_t f = convert(c, x.arg[0], PF__T_F);
      if (zero < 0 || f < 0) return -1;
      return emit(c, PF__OP_SUB_F, PF__T_F, zero, f, -1, x.pos);
    }
    return emit(c, PF__OP_CVT_IF, PF__T_F, v, -1, -1, x.pos);
  }
  assert(to == PF__T_B);
  return emit(c, x.type == PF__T_F ? PF__OP_CVT_FB : PF__OP_CVT_IB, PF__T_B,
              v, -1, -1, x.pos);
}

static pf__type common_type(const compiler *c, const int32_t *args, int n) {
  int t = PF__T_B;
  for (int k = 0; k < n; k++)
    if (c->v[args[k]].type > t) t = c->v[args[k]].type;
  return (pf__type)t;
}

/* The opcode for `sym` with n operands of common type t: the first table
 * entry whose operand type is at least t (booleans need PF__OPF_BOOL unless
 * the entry takes booleans). Returns the opcode, -1 if no entry has this
 * name and arity, -2 if none accepts the type. */
static int resolve(const char *sym, size_t len, int n, pf__type t) {
  int named = 0;
  for (int op = 0; op < PF__OP_COUNT; op++) {
    const op_info *o = &op_table[op];
    if (o->symlen != len || memcmp(o->sym, sym, len) != 0 || arity(o) != n)
      continue;
    named = 1;
    if (o->in < t) continue;
    if (t == PF__T_B && o->in != PF__T_B && !(o->flags & PF__OPF_BOOL))
      return -2;
    return op;
  }
  return named ? -2 : -1;
}

/* (-x) * c and (-x) / c are x * -c and x / -c, exactly (IEEE signs):
 * the negation pass disappears into the constant. */
static int move_negation(compiler *c, int op, int32_t *args) {
  if (op != PF__OP_MUL_F && op != PF__OP_DIV_F) return 0;
  for (int k = 0; k < 2; k++) {
    const ir *neg = &c->v[args[k]], *other = &c->v[args[1 - k]];
    if (neg->op != PF__OP_NEG_F || other->loc != LOC_CONST ||
        (op == PF__OP_DIV_F && k == 1))
      continue;
    int32_t x = neg->arg[0];
    args[1 - k] = constant_f(c, -other->value.f, other->pos);
    if (args[1 - k] < 0) return -1;
    args[k] = x;
    return 0;
  }
  return 0;
}

/* Applies opcode op to n operands, converting them to its operand type. */
static int32_t apply(compiler *c, int op, int32_t *args, int n, int32_t pos) {
  const op_info *o = &op_table[op];
  for (int k = 0; k < n; k++) {
    args[k] = convert(c, args[k], (pf__type)o->in);
    if (args[k] < 0) return -1;
  }
  if (n == 2 && move_negation(c, op, args) != 0) return -1;
  if (o->shape == SHAPE_NOP) return args[0];
  return emit(c, op, (pf__type)o->out, n > 0 ? args[0] : -1,
              n > 1 ? args[1] : -1, n > 2 ? args[2] : -1, pos);
}

/* ---------------------------------------------------------------- nodes */

static int32_t operator_node(compiler *c, const pf__node *nd, int32_t *args,
                             int n) {
  const char *sym = pf__tok_text((pf__tok)nd->op);
  pf__type t = common_type(c, args, n);
  int op = resolve(sym, strlen(sym), n, t);
  if (op >= 0) return apply(c, op, args, n, nd->pos);
  if (n == 1)
    pf__error_set(c->err, PF_ETYPE, nd->pos,
                  "operator '%s' does not support a %s operand", sym,
                  type_name(c->v[args[0]].type));
  else
    pf__error_set(c->err, PF_ETYPE, nd->pos,
                  "operator '%s' does not support %s and %s operands", sym,
                  type_name(c->v[args[0]].type), type_name(c->v[args[1]].type));
  return -1;
}

/* a ** b: see the type rules at the top of this file. */
static int32_t power(compiler *c, const pf__node *nd, int32_t a, int32_t b) {
  const ir xa = c->v[a], xb = c->v[b];
  int32_t args[2] = {a, b};
  int negative_exponent =
      xb.loc == LOC_CONST && xb.type != PF__T_F && xb.value.i < 0;
  if (common_type(c, args, 2) != PF__T_F && !negative_exponent)
    return apply(c, PF__OP_POW_I, args, 2, nd->pos);
  args[0] = convert(c, a, PF__T_F);
  if (args[0] < 0) return -1;
  if (xa.loc != LOC_CONST && xb.loc == LOC_CONST) {
    /* Exponents whose powers are exact in other terms: glibc's pow rounds
     * correctly, so x*x, 1/x and x are what pow gives (and what NumPy's
     * fast scalar power computes). sqrt too, except that pow(-0.0, 0.5) is
     * +0.0 and pow(-inf, 0.5) is +inf: NumPy itself uses sqrt for float
     * arrays, and converted integers have neither value. */
    double y = xb.type == PF__T_F ? xb.value.f : (double)xb.value.i;
    if (y == 2)
      return emit(c, PF__OP_SQUARE_F, PF__T_F, args[0], -1, -1, nd->pos);
    if (y == -1)
      return emit(c, PF__OP_DIV_F, PF__T_F, constant_f(c, 1.0, nd->pos),
                  args[0], -1, nd->pos);
    if (y == 0.5)
      return emit(c, PF__OP_SQRT, PF__T_F, args[0], -1, -1, nd->pos);
    if (y == 1) return args[0];
  }
  args[1] = convert(c, b, PF__T_F);
  if (args[0] < 0 || args[1] < 0) return -1;
  return emit(c, PF__OP_POW_F, PF__T_F, args[0], args[1], -1, nd->pos);
}

/* where(cond, a, b): cond is true where nonzero; the result has the common
 * type of a and b. A constant condition selects at compile time. */
static int32_t where(compiler *c, const pf__node *nd, int32_t *args) {
  pf__type t = common_type(c, args + 1, 2);
  int32_t cond = convert(c, args[0], PF__T_B);
  int32_t a = convert(c, args[1], t), b = convert(c, args[2], t);
  if (cond < 0 || a < 0 || b < 0) return -1;
  if (c->v[cond].loc == LOC_CONST) return c->v[cond].value.i ? a : b;
  return emit(c, t == PF__T_F ? PF__OP_WHERE_F : PF__OP_WHERE_I, t, cond, a, b,
              nd->pos);
}

static const pf_param *find_param(compiler *c, const char *s, size_t len,
                                  int32_t pos, int *duplicate);

/* The random functions' key: the parameter `seed` (see parfill.h), else 0. */
static int seed_key(compiler *c, int32_t pos, uint64_t key[2]) {
  int duplicate;
  const pf_param *seed = find_param(c, "seed", 4, pos, &duplicate);
  if (duplicate) return -1;
  key[0] = key[1] = 0;
  if (seed == NULL) return 0;
  if (seed->kind == PF_PARAM_UINT128) {
    key[0] = seed->u[0];
    key[1] = seed->u[1];
    return 0;
  }
  if (seed->kind == PF_PARAM_INT && seed->i >= 0) {
    key[0] = (uint64_t)seed->i;
    return 0;
  }
  pf__error_set(c->err, PF_ETYPE, pos,
                "the seed of the random functions must be an integer in "
                "[0, 2**128)");
  return -1;
}

/* uniform(n) / normal(n), n = 0 when omitted. The operands are all slots --
 * the stream and the key's two words -- so that a random value is a pure
 * function of its instruction and the block's first flat index. */
static int32_t random_call(compiler *c, const pf__node *nd, int op,
                           int32_t *args) {
  const char *name = c->text + nd->pos;
  if (nd->nargs > 1) {
    pf__error_set(c->err, PF_ETYPE, nd->pos,
                  "%.*s() takes 0 or 1 arguments (%d given)", (int)nd->len,
                  name, nd->nargs);
    return -1;
  }
  int32_t stream = args[0];
  if (nd->nargs == 0) stream = constant(c, PF__T_I, (pf__scalar){0}, nd->pos);
  if (stream < 0) return -1;
  const ir *s = &c->v[stream];
  if (s->loc != LOC_CONST || s->type != PF__T_I || s->value.i < 0) {
    pf__error_set(c->err, PF_ETYPE, c->ast->nodes[nd->arg[0]].pos,
                  "the stream of %.*s() must be a non-negative integer "
                  "constant", (int)nd->len, name);
    return -1;
  }
  uint64_t key[2];
  if (seed_key(c, nd->pos, key) != 0) return -1;
  int32_t lo = constant(c, PF__T_I, (pf__scalar){.i = (int64_t)key[0]},
                        nd->pos);
  int32_t hi = constant(c, PF__T_I, (pf__scalar){.i = (int64_t)key[1]},
                        nd->pos);
  if (lo < 0 || hi < 0) return -1;
  return emit(c, op, PF__T_F, stream, lo, hi, nd->pos);
}

static int32_t call_node(compiler *c, const pf__node *nd, int32_t *args) {
  const char *name = c->text + nd->pos;
  size_t len = (size_t)nd->len;
  int n = nd->nargs;
  if (len == 5 && memcmp(name, "where", 5) == 0 && n == 3)
    return where(c, nd, args);
  for (int k = 0; k < PF__OP_COUNT; k++)
    if (op_table[k].shape == SHAPE_RANDOM && op_table[k].symlen == len &&
        memcmp(op_table[k].sym, name, len) == 0)
      return random_call(c, nd, k, args);
  int op = resolve(name, len, n, n > 0 ? common_type(c, args, n) : PF__T_B);
  if (op >= 0) return apply(c, op, args, n, nd->pos);
  if (op == -2) {
    pf__error_set(c->err, PF_ETYPE, nd->pos,
                  "%.*s() does not support %s arguments", (int)len, name,
                  type_name(common_type(c, args, n)));
    return -1;
  }
  for (int k = 0; k < PF__OP_COUNT; k++) {
    const op_info *o = &op_table[k];
    if (o->symlen != len || memcmp(o->sym, name, len) != 0) continue;
    pf__error_set(c->err, PF_ETYPE, nd->pos,
                  "%.*s() takes %d argument%s (%d given)", (int)len, name,
                  arity(o), arity(o) == 1 ? "" : "s", n);
    return -1;
  }
  pf__error_set(c->err, PF_ENAME, nd->pos, "unknown function '%.*s'",
                (int)len, name);
  return -1;
}

/* "i7" -> 7 for prefix 'i' (canonical decimal below PF_MAX_DIMS), else -1. */
static int numbered(const char *s, size_t len, char prefix) {
  if (len < 2 || len > 3 || s[0] != prefix) return -1;
  if (s[1] < '0' || s[1] > '9' || (len == 3 && (s[1] == '0' || s[2] < '0' ||
                                                s[2] > '9')))
    return -1;
  int v = s[1] - '0';
  if (len == 3) v = v * 10 + (s[2] - '0');
  return v < PF_MAX_DIMS ? v : -1;
}

static const pf_param *find_param(compiler *c, const char *s, size_t len,
                                  int32_t pos, int *duplicate) {
  const pf_param *found = NULL;
  *duplicate = 0;
  for (size_t k = 0; k < c->nparams; k++) {
    const char *name = c->params[k].name;
    if (strncmp(name, s, len) != 0 || name[len] != '\0') continue;
    if (found != NULL) {
      pf__error_set(c->err, PF_EINVAL, pos, "parameter '%.*s' is given twice",
                    (int)len, s);
      *duplicate = 1;
      return NULL;
    }
    found = &c->params[k];
  }
  return found;
}

static int32_t name_node(compiler *c, const pf__node *nd) {
  const char *s = c->text + nd->pos;
  const size_t len = (size_t)nd->len;
  static const struct {
    const char *name;
    int type;
    pf__scalar value;
  } constants[] = {
      {"pi", PF__T_F, {.f = 3.141592653589793}},
      {"e", PF__T_F, {.f = 2.718281828459045}},
      {"inf", PF__T_F, {.f = INFINITY}},
      {"nan", PF__T_F, {.f = NAN}},
      {"True", PF__T_B, {.i = 1}},
      {"False", PF__T_B, {.i = 0}},
  };
  int axis = -1, dim = -1, flat = 0, size = 0, constant_k = -1;
  for (size_t k = 0; k < sizeof constants / sizeof *constants; k++)
    if (strlen(constants[k].name) == len &&
        memcmp(constants[k].name, s, len) == 0)
      constant_k = (int)k;
  if (len == 1 && (s[0] == 'i' || s[0] == 'j' || s[0] == 'k' || s[0] == 'l'))
    axis = s[0] == 'l' ? 3 : s[0] - 'i';
  else if (numbered(s, len, 'i') >= 0)
    axis = numbered(s, len, 'i');
  else if (numbered(s, len, 'n') >= 0)
    dim = numbered(s, len, 'n');
  else if (len == 3 && memcmp(s, "idx", 3) == 0)
    flat = 1;
  else if (len == 4 && memcmp(s, "size", 4) == 0)
    size = 1;
  int duplicate;
  const pf_param *param = find_param(c, s, len, nd->pos, &duplicate);
  if (duplicate) return -1;
  int reserved = axis >= 0 || dim >= 0 || flat || size || constant_k >= 0;
  if (reserved && param != NULL) {
    pf__error_set(c->err, PF_EINVAL, nd->pos,
                  "'%.*s' is a built-in name; rename the parameter", (int)len,
                  s);
    return -1;
  }
  if (constant_k >= 0)
    return constant(c, (pf__type)constants[constant_k].type,
                    constants[constant_k].value, nd->pos);
  if (axis >= 0 || dim >= 0) {
    int d = axis >= 0 ? axis : dim;
    if (d >= c->ndim) {
      pf__error_set(c->err, PF_ENAME, nd->pos,
                    "'%.*s' refers to axis %d, but the array has %d "
                    "dimension%s", (int)len, s, d, c->ndim,
                    c->ndim == 1 ? "" : "s");
      return -1;
    }
    if (axis >= 0) return emit_index(c, PF__OP_AXIS_I, axis, nd->pos);
  }
  if (dim >= 0 || size) {
    ir x = {.op = IR_INPUT, .type = PF__T_I, .loc = LOC_UNIFORM,
            .axis = (uint8_t)(size ? IR_SIZE_AXIS : dim),
            .arg = {-1, -1, -1}, .pos = nd->pos};
    return intern(c, x);
  }
  if (flat) return emit_index(c, PF__OP_FLAT_I, 0, nd->pos);
  if (param != NULL) {
    switch (param->kind) {
      case PF_PARAM_INT:
        return constant(c, PF__T_I, (pf__scalar){.i = param->i}, nd->pos);
      case PF_PARAM_BOOL:
        return constant(c, PF__T_B, (pf__scalar){.i = param->i != 0},
                        nd->pos);
      case PF_PARAM_UINT128:
        if (param->u[1] != 0 || param->u[0] > (uint64_t)INT64_MAX) {
          pf__error_set(c->err, PF_ETYPE, nd->pos,
                        "parameter '%.*s' does not fit in int64", (int)len, s);
          return -1;
        }
        return constant(c, PF__T_I, (pf__scalar){.i = (int64_t)param->u[0]},
                        nd->pos);
      default:
        return constant_f(c, param->f, nd->pos);
    }
  }
  for (int k = 0; k < PF__OP_COUNT; k++)
    if (op_table[k].symlen == len && memcmp(op_table[k].sym, s, len) == 0) {
      pf__error_set(c->err, PF_ESYNTAX, nd->pos,
                    "'%.*s' is a function: call it as %.*s(...)", (int)len, s,
                    (int)len, s);
      return -1;
    }
  pf__error_set(c->err, PF_ENAME, nd->pos, "unknown name '%.*s'", (int)len, s);
  return -1;
}

/* Builds the SSA of every node; returns the root's value or -1. */
static int32_t build(compiler *c, const pf__ast *ast, int32_t *val) {
  for (int32_t k = 0; k < ast->count; k++) {
    const pf__node *nd = &ast->nodes[k];
    int32_t args[PF__MAX_ARGS];
    for (int m = 0; m < PF__MAX_ARGS; m++)
      args[m] = nd->arg[m] >= 0 ? val[nd->arg[m]] : -1;
    switch ((pf__node_kind)nd->kind) {
      case PF__N_INT:
        val[k] = constant(c, PF__T_I, nd->value, nd->pos);
        break;
      case PF__N_FLOAT:
        val[k] = constant(c, PF__T_F, nd->value, nd->pos);
        break;
      case PF__N_NAME:
        val[k] = name_node(c, nd);
        break;
      case PF__N_UNARY:
        val[k] = operator_node(c, nd, args, 1);
        break;
      case PF__N_BINARY:
        val[k] = nd->op == PF__TOK_POW ? power(c, nd, args[0], args[1])
                                       : operator_node(c, nd, args, 2);
        break;
      case PF__N_CALL:
        val[k] = call_node(c, nd, args);
        break;
    }
    if (val[k] < 0) return -1;
  }
  return val[ast->count - 1];
}

/* -------------------------------------------------------------- emission */

static pf__instr instr_of(const compiler *c, const ir *x) {
  pf__instr ins = {.op = (uint8_t)x->op, .variant = PF__VV, .axis = x->axis,
                   .dst = x->home, .a = -1, .b = -1, .c = -1, .pos = x->pos};
  int32_t *operands[PF__MAX_ARGS] = {&ins.a, &ins.b, &ins.c};
  static const uint8_t bits[PF__MAX_ARGS] = {PF__LOC_A, PF__LOC_B, PF__LOC_C};
  if (x->loc != LOC_VECTOR) ins.slots |= PF__LOC_DST;
  for (int k = 0; k < PF__MAX_ARGS; k++) {
    if (x->arg[k] < 0) continue;
    const ir *arg = &c->v[x->arg[k]];
    *operands[k] = arg->home;
    if (arg->loc != LOC_VECTOR) ins.slots |= bits[k];
  }
  if (x->loc == LOC_VECTOR && (ins.slots & PF__LOC_A)) ins.variant = PF__SV;
  if (x->loc == LOC_VECTOR && (ins.slots & PF__LOC_B)) ins.variant = PF__VS;
  return ins;
}

static int emit_programs(compiler *c, int32_t root, pf_expr *e) {
  /* Liveness: uses of each value by live values, plus one for the root. */
  c->v[root].uses = 1;
  int32_t nuniform = 0, ncode = 0, nslots = 0;
  for (int32_t k = root; k >= 0; k--) {
    ir *x = &c->v[k];
    if (x->uses == 0) continue;
    for (int m = 0; m < PF__MAX_ARGS; m++)
      if (x->arg[m] >= 0) c->v[x->arg[m]].uses++;
    if (x->loc == LOC_VECTOR) ncode++;
    else x->home = nslots++;
    if (x->loc == LOC_UNIFORM && x->op != IR_INPUT) nuniform++;
  }
  e->nslots = nslots;
  e->init = pf__calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *e->init);
  e->uniform =
      pf__malloc((size_t)(nuniform > 0 ? nuniform : 1) * sizeof *e->uniform);
  e->code = pf__malloc((size_t)(ncode > 0 ? ncode : 1) * sizeof *e->code);
  /* A free register stack: at most one register per vector value. */
  int32_t *free_regs =
      pf__malloc((size_t)(ncode > 0 ? ncode : 1) * sizeof *free_regs);
  if (e->init == NULL || e->uniform == NULL || e->code == NULL ||
      free_regs == NULL) {
    free(free_regs);
    return oom(c);
  }
  int32_t nfree = 0;
  for (int32_t k = 0; k <= root; k++) {
    ir *x = &c->v[k];
    if (x->uses == 0) continue;
    if (x->loc == LOC_CONST) {
      e->init[x->home] = x->value;
    } else if (x->op == IR_INPUT) {
      if (x->axis == IR_SIZE_AXIS)
        e->size_slot = x->home;
      else
        e->dim_slot[x->axis] = x->home;
    } else if (x->loc == LOC_UNIFORM) {
      e->uniform[e->nuniform++] = instr_of(c, x);
    } else {
      /* Operands dying here free their registers for the result. */
      for (int m = 0; m < PF__MAX_ARGS; m++) {
        if (x->arg[m] < 0) continue;
        ir *arg = &c->v[x->arg[m]];
        if (arg->loc == LOC_VECTOR && --arg->uses == 0)
          free_regs[nfree++] = arg->home;
      }
      x->home = nfree > 0 ? free_regs[--nfree] : e->nregs++;
      e->code[e->ncode++] = instr_of(c, x);
    }
  }
  free(free_regs);
  assert(e->ncode == ncode && e->nuniform == nuniform);
  const ir *r = &c->v[root];
  e->type = (pf__type)r->type;
  e->result_kind = r->loc == LOC_VECTOR ? PF__RESULT_REGISTER
                                        : PF__RESULT_SLOT;
  e->result = r->home;
  /* The root is the last live value, so the last instruction computes it:
   * fills may redirect that instruction into the output. */
  assert(r->loc != LOC_VECTOR || e->code[ncode - 1].dst == r->home);
  return 0;
}

int pf__compile(pf_expr *e, const char *text, const pf__ast *ast,
                const pf_param *params, size_t nparams, pf_error *err) {
  assert(ast->count > 0);
  compiler c = {.text = text, .ast = ast, .params = params, .nparams = nparams,
                .ndim = e->ndim, .isa = e->isa, .err = err};
  int32_t *val = pf__malloc((size_t)ast->count * sizeof *val);
  c.cap = 64;
  c.v = pf__malloc((size_t)c.cap * sizeof *c.v);
  int rc = PF_ENOMEM;
  if (val == NULL || c.v == NULL || rehash(&c, 128) != 0) {
    oom(&c);
    goto fail;
  }
  e->size_slot = -1;
  for (int d = 0; d < PF_MAX_DIMS; d++) e->dim_slot[d] = -1;
  int32_t root = build(&c, ast, val);
  if (root < 0 || emit_programs(&c, root, e) != 0) {
    rc = err->code;
    goto fail;
  }
  rc = 0;
fail:
  free(val);
  free(c.v);
  free(c.table);
  return rc;
}
