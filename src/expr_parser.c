/*
 * expr_parser.c -- recursive descent over Python's expression grammar,
 * restricted to SPEC section 4.
 *
 * Each function parses one rule, written above it. Precedence, loosest
 * first: comparisons (chained as in Python), |, &, + -, * / // %, unary
 * + - ~, ** (right-associative; it binds tighter than a unary operator on its
 * left and looser than one on its right: -2**-2 is -(2**(-2))).
 *
 * Nodes are appended to one array as they are completed, so children precede
 * their parents. Recursion depth is bounded by PF__EXPR_MAX_DEPTH (nesting of
 * parentheses, calls, unary operators and powers); operator chains are loops.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

typedef struct parser {
  pf__lexer lx;
  pf__token tok; /* the current (lookahead) token */
  pf__ast *ast;
  int depth;
  pf_error *err;
} parser;

static int next(parser *p) { return pf__lex(&p->lx, &p->tok, p->err); }

/* Appends a node; returns its index, or -1 with err set (out of memory). */
static int32_t add_node(parser *p, const pf__node *node) {
  pf__ast *ast = p->ast;
  if (ast->count == ast->capacity) {
    int32_t cap = ast->capacity ? ast->capacity * 2 : 32;
    pf__node *nodes = pf__realloc(ast->nodes, (size_t)cap * sizeof *nodes);
    if (nodes == NULL) {
      pf__error_set(p->err, PF_ENOMEM, -1, "out of memory");
      return -1;
    }
    ast->nodes = nodes;
    ast->capacity = cap;
  }
  ast->nodes[ast->count] = *node;
  return ast->count++;
}

static int32_t add_op(parser *p, pf__node_kind kind, pf__tok op, int32_t pos,
                      int32_t a, int32_t b) {
  pf__node node = {.kind = (uint8_t)kind, .op = (uint8_t)op, .pos = pos,
                   .arg = {a, b, -1}};
  return add_node(p, &node);
}

static int32_t fail(parser *p, int code, int32_t pos, const char *message) {
  pf__error_set(p->err, code, pos, "%s", message);
  return -1;
}

static int name_is(const parser *p, const char *word);

/* Error for a token where an operand or an operator was expected. */
static int32_t unexpected(parser *p) {
  const pf__token *t = &p->tok;
  if (name_is(p, "and") || name_is(p, "or") || name_is(p, "not")) {
    pf__error_set(p->err, PF_ESYNTAX, t->pos,
                  "'%.*s' is not supported; use '&', '|' or '~'", (int)t->len,
                  p->lx.text + t->pos);
    return -1;
  }
  if (t->kind == PF__TOK_END)
    return fail(p, PF_ESYNTAX, t->pos, "unexpected end of expression");
  if (t->kind == PF__TOK_RPAREN)
    return fail(p, PF_ESYNTAX, t->pos, "unmatched ')'");
  if (t->kind == PF__TOK_INT || t->kind == PF__TOK_FLOAT ||
      t->kind == PF__TOK_NAME)
    return fail(p, PF_ESYNTAX, t->pos, "expected an operator");
  pf__error_set(p->err, PF_ESYNTAX, t->pos, "unexpected '%s'",
                pf__tok_text(t->kind));
  return -1;
}

static int name_is(const parser *p, const char *word) {
  size_t n = strlen(word);
  return p->tok.kind == PF__TOK_NAME && (size_t)p->tok.len == n &&
         memcmp(p->lx.text + p->tok.pos, word, n) == 0;
}

static int enter(parser *p) {
  if (++p->depth > PF__EXPR_MAX_DEPTH) {
    pf__error_set(p->err, PF_ELIMIT, p->tok.pos,
                  "expression nested too deeply (more than %d levels)",
                  PF__EXPR_MAX_DEPTH);
    return -1;
  }
  return 0;
}

static int32_t expression(parser *p);
static int32_t factor(parser *p);

/* arguments := expression (',' expression)* [','] */
static int32_t call(parser *p, int32_t name_pos, int32_t name_len) {
  pf__node node = {.kind = PF__N_CALL, .pos = name_pos, .len = name_len,
                   .arg = {-1, -1, -1}};
  if (next(p) != 0) return -1; /* '(' */
  while (p->tok.kind != PF__TOK_RPAREN) {
    if (node.nargs == PF__MAX_ARGS)
      return fail(p, PF_ESYNTAX, p->tok.pos, "too many arguments");
    int32_t arg = expression(p);
    if (arg < 0) return -1;
    node.arg[node.nargs++] = arg;
    if (p->tok.kind == PF__TOK_COMMA) {
      if (next(p) != 0) return -1;
    } else if (p->tok.kind != PF__TOK_RPAREN) {
      if (p->tok.kind == PF__TOK_END)
        return fail(p, PF_ESYNTAX, p->tok.pos, "expected ')' or ','");
      return unexpected(p);
    }
  }
  if (next(p) != 0) return -1; /* ')' */
  return add_node(p, &node);
}

/* primary := INT | FLOAT | NAME | NAME '(' arguments ')' | '(' expression ')'
 */
static int32_t primary(parser *p) {
  pf__token t = p->tok;
  switch (t.kind) {
    case PF__TOK_INT:
      if (t.value.i == INT64_MIN)
        return fail(p, PF_ESYNTAX, t.pos,
                    "integer literal too large for int64");
      /* fall through */
    case PF__TOK_FLOAT: {
      pf__node node = {.kind = t.kind == PF__TOK_INT ? PF__N_INT : PF__N_FLOAT,
                       .pos = t.pos, .len = t.len, .value = t.value,
                       .arg = {-1, -1, -1}};
      if (next(p) != 0) return -1;
      return add_node(p, &node);
    }
    case PF__TOK_NAME: {
      if (name_is(p, "and") || name_is(p, "or") || name_is(p, "not"))
        return unexpected(p);
      if (next(p) != 0) return -1;
      if (p->tok.kind == PF__TOK_LPAREN) return call(p, t.pos, t.len);
      pf__node node = {.kind = PF__N_NAME, .pos = t.pos, .len = t.len,
                       .arg = {-1, -1, -1}};
      return add_node(p, &node);
    }
    case PF__TOK_LPAREN: {
      if (next(p) != 0) return -1;
      int32_t inner = expression(p);
      if (inner < 0) return -1;
      if (p->tok.kind != PF__TOK_RPAREN) {
        if (p->tok.kind == PF__TOK_END)
          return fail(p, PF_ESYNTAX, t.pos, "'(' was never closed");
        return unexpected(p);
      }
      if (next(p) != 0) return -1;
      return inner;
    }
    default:
      return unexpected(p);
  }
}

/* power := primary ['**' factor] */
static int32_t power(parser *p) {
  int32_t base = primary(p);
  if (base < 0 || p->tok.kind != PF__TOK_POW) return base;
  int32_t pos = p->tok.pos;
  if (enter(p) != 0 || next(p) != 0) return -1;
  int32_t exponent = factor(p);
  if (exponent < 0) return -1;
  p->depth--;
  return add_op(p, PF__N_BINARY, PF__TOK_POW, pos, base, exponent);
}

/* factor := ('+' | '-' | '~') factor | power */
static int32_t factor(parser *p) {
  pf__token t = p->tok;
  if (t.kind != PF__TOK_PLUS && t.kind != PF__TOK_MINUS &&
      t.kind != PF__TOK_TILDE)
    return power(p);
  if (enter(p) != 0) return -1;
  if (next(p) != 0) return -1;
  /* -9223372036854775808 is the one literal 2**63 may appear in. */
  if (t.kind == PF__TOK_MINUS && p->tok.kind == PF__TOK_INT &&
      p->tok.value.i == INT64_MIN) {
    pf__lexer saved = p->lx;
    pf__token literal = p->tok;
    if (next(p) != 0) return -1;
    if (p->tok.kind != PF__TOK_POW) {
      pf__node node = {.kind = PF__N_INT, .pos = t.pos,
                       .len = literal.pos + literal.len - t.pos,
                       .value = literal.value, .arg = {-1, -1, -1}};
      p->depth--;
      return add_node(p, &node);
    }
    p->lx = saved; /* -(2**63 ** x): let primary() reject the literal */
    p->tok = literal;
  }
  int32_t operand = factor(p);
  if (operand < 0) return -1;
  p->depth--;
  return add_op(p, PF__N_UNARY, t.kind, t.pos, operand, -1);
}

/* One level of left-associative binary operators: operand (op operand)*,
 * where op is any token of ops (ended by PF__TOK_END). */
static int32_t left_assoc(parser *p, int32_t (*operand)(parser *),
                          const pf__tok *ops) {
  int32_t left = operand(p);
  while (left >= 0) {
    int k = 0;
    while (ops[k] != PF__TOK_END && p->tok.kind != ops[k]) k++;
    if (ops[k] == PF__TOK_END) break;
    pf__token op = p->tok;
    if (next(p) != 0) return -1;
    int32_t right = operand(p);
    if (right < 0) return -1;
    left = add_op(p, PF__N_BINARY, op.kind, op.pos, left, right);
  }
  return left;
}

/* term := factor (('*' | '/' | '//' | '%') factor)* */
static int32_t term(parser *p) {
  static const pf__tok ops[] = {PF__TOK_STAR, PF__TOK_SLASH, PF__TOK_FLOORDIV,
                                PF__TOK_PERCENT, PF__TOK_END};
  return left_assoc(p, factor, ops);
}

/* sum := term (('+' | '-') term)* */
static int32_t sum(parser *p) {
  static const pf__tok ops[] = {PF__TOK_PLUS, PF__TOK_MINUS, PF__TOK_END};
  return left_assoc(p, term, ops);
}

/* bitand := sum ('&' sum)* */
static int32_t bitand(parser *p) {
  static const pf__tok ops[] = {PF__TOK_AMP, PF__TOK_END};
  return left_assoc(p, sum, ops);
}

/* bitor := bitand ('|' bitand)* */
static int32_t bitor(parser *p) {
  static const pf__tok ops[] = {PF__TOK_PIPE, PF__TOK_END};
  return left_assoc(p, bitand, ops);
}

static int is_comparison(pf__tok kind) {
  return kind == PF__TOK_LT || kind == PF__TOK_LE || kind == PF__TOK_GT ||
         kind == PF__TOK_GE || kind == PF__TOK_EQ || kind == PF__TOK_NE;
}

/* comparison := bitor (('<' | '<=' | '>' | '>=' | '==' | '!=') bitor)*
 * As in Python, a < b <= c means (a < b) & (b <= c), with b computed once:
 * both comparisons refer to b's node. */
static int32_t comparison(parser *p) {
  int32_t left = bitor(p);
  int32_t result = left;
  while (left >= 0 && is_comparison(p->tok.kind)) {
    pf__token op = p->tok;
    if (next(p) != 0) return -1;
    int32_t right = bitor(p);
    if (right < 0) return -1;
    int32_t cmp = add_op(p, PF__N_BINARY, op.kind, op.pos, left, right);
    if (cmp < 0) return -1;
    result = result == left ? cmp
                            : add_op(p, PF__N_BINARY, PF__TOK_AMP, op.pos,
                                     result, cmp);
    if (result < 0) return -1;
    left = right;
  }
  return left < 0 ? -1 : result;
}

/* expression := comparison */
static int32_t expression(parser *p) {
  if (enter(p) != 0) return -1;
  int32_t node = comparison(p);
  p->depth--;
  return node;
}

int pf__parse(const char *text, int32_t length, pf__ast *ast, pf_error *err) {
  assert(text != NULL && ast != NULL);
  *ast = (pf__ast){NULL, 0, 0};
  parser p = {.lx = {text, length, 0}, .ast = ast, .err = err};
  int32_t root = -1;
  if (next(&p) == 0) {
    if (p.tok.kind == PF__TOK_END)
      fail(&p, PF_ESYNTAX, p.tok.pos, "empty expression");
    else
      root = expression(&p);
    if (root >= 0 && p.tok.kind != PF__TOK_END) root = unexpected(&p);
  }
  if (root < 0) {
    pf__ast_free(ast);
    return err != NULL ? err->code : PF_ESYNTAX;
  }
  /* The root was completed last, except a parenthesised root: nothing
   * follows it either, so the last node is the root in every case. */
  assert(root == ast->count - 1);
  return 0;
}

void pf__ast_free(pf__ast *ast) {
  if (ast == NULL) return;
  free(ast->nodes);
  *ast = (pf__ast){NULL, 0, 0};
}
