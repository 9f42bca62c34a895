/*
 * expr.h -- internals of the expression engine, shared by its files.
 *
 * The pipeline, one file per stage (a file uses only those above it):
 *   expr_lexer.c     text -> tokens with byte positions
 *   expr_parser.c    tokens -> syntax tree, nodes in post order
 *   expr_vm.c        bytecode -> values, one block of flat indices at a time
 *   expr_compiler.c  syntax tree -> typed SSA (constants folded by running the
 *                    VM on them, common subexpressions shared) -> register
 *                    bytecode
 *   expr.c           the public pf_expr_* functions; fills through pf_fill
 *
 * Values have one of three types, all stored in 8 bytes so that registers are
 * interchangeable: bool (int64_t 0 or 1), int64 and float64. A value is a
 * compile-time constant, a per-fill scalar (it depends on the shape: `size`,
 * `n0`...), or a vector with one element per index of the block.
 */
#ifndef PF_EXPR_H
#define PF_EXPR_H

#include <stdint.h>

#include "expr_opcodes.h"
#include "internal.h"

/* ------------------------------------------------------------------ types */

typedef enum pf__type { PF__T_B, PF__T_I, PF__T_F } pf__type;

typedef union pf__scalar {
  int64_t i;
  double f;
} pf__scalar;

typedef enum pf__opcode {
#define PF__OP_ENUM(name, ...) PF__OP_##name,
  PF__EXPR_OPCODES(PF__OP_ENUM)
#undef PF__OP_ENUM
  PF__OP_COUNT
} pf__opcode;

/* "ADD_I", ... for messages and tests. */
const char *pf__op_name(int op);

/* Limits of the language; beyond them compilation fails with PF_ELIMIT. */
#define PF__EXPR_MAX_LENGTH 65536 /* bytes of text */
#define PF__EXPR_MAX_DEPTH 100    /* nested parentheses, calls, unary ops */

/* ------------------------------------------------------------------ lexer */

typedef enum pf__tok {
  PF__TOK_END,
  PF__TOK_INT,   /* value.i; INT64_MIN stands for 2**63 (see the parser) */
  PF__TOK_FLOAT, /* value.f */
  PF__TOK_NAME,
  PF__TOK_PLUS,
  PF__TOK_MINUS,
  PF__TOK_STAR,
  PF__TOK_SLASH,
  PF__TOK_FLOORDIV,
  PF__TOK_PERCENT,
  PF__TOK_POW,
  PF__TOK_LT,
  PF__TOK_LE,
  PF__TOK_GT,
  PF__TOK_GE,
  PF__TOK_EQ,
  PF__TOK_NE,
  PF__TOK_AMP,
  PF__TOK_PIPE,
  PF__TOK_TILDE,
  PF__TOK_LPAREN,
  PF__TOK_RPAREN,
  PF__TOK_COMMA
} pf__tok;

typedef struct pf__token {
  pf__tok kind;
  int32_t pos; /* byte offset in the text */
  int32_t len; /* bytes */
  pf__scalar value;
} pf__token;

typedef struct pf__lexer {
  const char *text; /* NUL-terminated */
  int32_t length;
  int32_t pos;
} pf__lexer;

/* Reads the next token. Returns 0, or PF_ESYNTAX with err filled. */
int pf__lex(pf__lexer *lx, pf__token *tok, pf_error *err);
/* The operator's spelling ("**"), or "" for literals and names. */
const char *pf__tok_text(pf__tok kind);

/* ------------------------------------------------------------------ parser */

typedef enum pf__node_kind {
  PF__N_INT,    /* value.i */
  PF__N_FLOAT,  /* value.f */
  PF__N_NAME,   /* text[pos, pos+len) */
  PF__N_UNARY,  /* op arg[0] */
  PF__N_BINARY, /* arg[0] op arg[1]; a chained comparison shares operands */
  PF__N_CALL    /* name text[pos, pos+len), nargs in arg[0..3) */
} pf__node_kind;

#define PF__MAX_ARGS 3

typedef struct pf__node {
  uint8_t kind;  /* pf__node_kind */
  uint8_t op;    /* pf__tok of an operator */
  uint8_t nargs; /* calls */
  int32_t pos;   /* operator / name position, for messages */
  int32_t len;
  int32_t arg[PF__MAX_ARGS]; /* earlier nodes */
  pf__scalar value;
} pf__node;

/* The syntax tree. Children always come before their parent, so a forward
 * walk visits operands first with no recursion (left-leaning chains such as
 * a+b+c+... are as deep as they are long). The root is the last node. */
typedef struct pf__ast {
  pf__node *nodes;
  int32_t count, capacity;
} pf__ast;

/* Parses `text` (length bytes, NUL-terminated). On success fills *ast, which
 * the caller releases with pf__ast_free; on failure returns PF_ESYNTAX,
 * PF_ELIMIT or PF_ENOMEM with err filled and nothing to release. */
int pf__parse(const char *text, int32_t length, pf__ast *ast, pf_error *err);
void pf__ast_free(pf__ast *ast);

/* ---------------------------------------------------------------- bytecode */

enum { PF__VV, PF__VS, PF__SV }; /* BIN operand layouts: S = scalar slot */

/* Operand locations (pf__instr.slots bits): a slot, else a register. */
#define PF__LOC_DST 1
#define PF__LOC_A 2
#define PF__LOC_B 4
#define PF__LOC_C 8

typedef struct pf__instr {
  uint8_t op;      /* pf__opcode */
  uint8_t variant; /* PF__VV/VS/SV */
  uint8_t slots;   /* PF__LOC_* bits */
  uint8_t axis;    /* AXIS_*: which index variable */
  int32_t dst, a, b, c; /* register or slot numbers; -1 when unused */
  int32_t pos;          /* source position, for run-time errors */
} pf__instr;

/* How a compiled expression produces its result. */
typedef enum pf__result_kind {
  PF__RESULT_SLOT,    /* one value for every element: slots[result] */
  PF__RESULT_REGISTER /* registers[result] after the vector program */
} pf__result_kind;

struct pf_expr {
  int ndim;
  pf__type type;
  int isa; /* pf__vm_isa() at compile time; tests may lower it */
  /* Scalar slots: constants, then per-fill values. `init` holds the
   * constants; a fill copies it, stores the shape inputs and runs the
   * uniform program. */
  int32_t nslots;
  pf__scalar *init;
  int32_t size_slot;             /* -1 when `size` is not used */
  int32_t dim_slot[PF_MAX_DIMS]; /* n0..n31; -1 when not used */
  pf__instr *uniform;            /* slot-only program, run once per fill */
  int32_t nuniform;
  pf__instr *code; /* vector program, run per block */
  int32_t ncode;
  int32_t nregs;
  pf__result_kind result_kind;
  int32_t result;
};

/* Compiles a syntax tree (compiler). Fills *expr's program fields; text is
 * needed for names. Returns 0 or a PF_E* code with err filled. */
int pf__compile(pf_expr *expr, const char *text, const pf__ast *ast,
                const pf_param *params, size_t nparams, pf_error *err);

/* ---------------------------------------------------------------------- VM */

/* Elements per VM block: the registers of one block stay in L1/L2. */
#define PF__VM_BLOCK 1024

/* Instruction sets for the float functions: chosen at run time. */
enum { PF__ISA_SCALAR, PF__ISA_AVX2, PF__ISA_AVX512 };
int pf__vm_isa(void);

/* Where a block lies in the index space. */
typedef struct pf__vm_block {
  int64_t start; /* flat index of the first element */
  int ndim;
  const int64_t *shape;
  const int64_t *inner; /* elements per step of each axis (C order) */
  int64_t index[PF_MAX_DIMS]; /* N-d index of `start` */
} pf__vm_block;

/* What a program runs on. */
typedef struct pf__vm_env {
  pf__scalar *slots;
  char *regs;         /* registers, reg_len elements of 8 bytes each */
  int64_t reg_len;
  const pf__vm_block *block; /* NULL for slot-only programs */
  int isa;
} pf__vm_env;

/* Runs `code` on `n` elements (1 for slot-only programs). When last_dst is
 * not NULL, the last instruction writes there instead of its register (the
 * output, when it has the register's representation). Returns 0, or PF_ETYPE
 * with *fail_pos set to the failing instruction's source position. */
int pf__vm_exec(const pf__instr *code, int32_t ncode, const pf__vm_env *env,
                int64_t n, void *last_dst, int32_t *fail_pos);

/* Converts n values of `type` at src (or src[0] for all n when `broadcast`)
 * to `dtype` at out (contiguous, any alignment), as ndarray.astype. */
void pf__vm_store(pf__type type, const void *src, int broadcast, int64_t n,
                  pf_dtype dtype, void *out, int isa);

/* Copies `bytes` to dst with non-temporal stores (for outputs much larger
 * than the cache); pf__vm_stream_fence orders them before later stores. */
void pf__vm_stream(void *dst, const void *src, size_t bytes, int isa);
void pf__vm_stream_fence(void);

/* ------------------------------------------------- prepared evaluations */

/* An expression prepared for one output shape and dtype: what every block
 * shares (the scalar slots with the uniform program's values, the axis
 * steps) computed once, and one set of registers per worker, allocated by
 * that worker on its first block and reused for every later one. Its kernel
 * (pf__expr_run_kernel) is a pf_kernel_fn with the run as ctx, for pf_fill
 * and for fills that call it on their own blocks (npy_file.c). */
typedef struct pf__expr_run pf__expr_run;

/* Prepares a run of `expr` for an array of `shape` (expr->ndim axes) in
 * `dtype`, for kernel worker ids below `workers`; `stream`: write the output
 * with non-temporal stores (contiguous outputs far larger than the cache).
 * *run is the caller's (pf__expr_run_free). Returns 0, PF_ENOMEM, or PF_ETYPE
 * for a run-time error of the per-fill scalars (err->position: the operator's
 * offset in the text). */
int pf__expr_run_new(pf__expr_run **run, const pf_expr *expr,
                     const int64_t *shape, pf_dtype dtype, int workers,
                     int stream, pf_error *err);

/* The kernel: elements [start, start+count) into `out` (contiguous, the
 * run's dtype). A run-time error fails the fill through the handle at the
 * first element of the failing VM block. Thread-safe for distinct worker
 * ids. */
int pf__expr_run_kernel(void *run, int64_t start, int64_t count, void *out,
                        pf_fill_worker *worker);

/* After the fill that called the kernel returned `rc` (all its kernel calls
 * done): the fill's error position of a run-time error is an element index;
 * an expression's error is reported at the operator's offset in the text
 * (callers show a caret there), so this sets err->position to the offset of
 * the lowest failing element's operator. The message is the fill's, as the
 * kernel gave it. Returns rc. */
int pf__expr_run_finish(const pf__expr_run *run, int rc, pf_error *err);

/* Frees the run and its registers; NULL is fine. */
void pf__expr_run_free(pf__expr_run *run);

/* Evaluates elements [start, start+count) of `expr` for an array of `shape`
 * into `out` (contiguous, `dtype`), on the calling thread: a fill's whole
 * per-element path without pf_fill (tests, fuzzing). Allocates its own run,
 * so concurrent calls may share expr. Returns 0, PF_ENOMEM, or PF_ETYPE
 * (run-time error) with err filled. */
int pf__expr_eval_block(const pf_expr *expr, const int64_t *shape,
                        pf_dtype dtype, int64_t start, int64_t count,
                        void *out, pf_error *err);

/* Lowers the instruction set of the VM's loops and float functions (tests
 * compare the paths). Not thread-safe: before the expression is shared. */
void pf__expr_set_isa(pf_expr *expr, int isa);

#endif /* PF_EXPR_H */
