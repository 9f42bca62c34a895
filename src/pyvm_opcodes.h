/*
 * pyvm_opcodes.h -- the one opcode table of the translated-function VM
 * (pyvm.c), and its table of math functions.
 *
 * X(NAME, SIG, DOC): SIG is four characters, one per operand word after the
 * opcode (dst, a, b, c):
 *   'I' 'F' 'B' 'C'  a register of that file (int64, double, bool,
 *                complex)
 *   'i' 'f'      an index into the int / float constant pool
 *   'c'          a complex constant: fconsts[a] (real), fconsts[a + 1]
 *   'm'          an immediate 0 or 1
 *   't'          a jump target: any instruction index (backward: a loop)
 *   '1' '2'      a math function id (PF_PYVM_FUNCTIONS) of that arity
 *   '-'          unused: must be 0
 * The numbering (enum pf__pyvm_op) follows the table; the extension gives
 * the front end {name: number} (_core.pyvm_opcodes()), so the table is the
 * only place an opcode is defined. Every operation computes what CPython
 * computes for the same Python operation, or bails (pyvm_ops.h).
 */
#ifndef PF_PYVM_OPCODES_H
#define PF_PYVM_OPCODES_H

#define PF__PYVM_CMP(X, P, SIG, WHAT)                   \
  X(P##_LT, SIG, WHAT " <")                             \
  X(P##_LE, SIG, WHAT " <=")                            \
  X(P##_EQ, SIG, WHAT " ==")                            \
  X(P##_NE, SIG, WHAT " !=")                            \
  X(P##_GT, SIG, WHAT " >")                             \
  X(P##_GE, SIG, WHAT " >=")

#define PF_PYVM_OPCODES(X)                                                    \
  X(I_CONST, "Ii--", "dst = iconsts[a]")                                      \
  X(F_CONST, "Ff--", "dst = fconsts[a]")                                      \
  X(B_CONST, "Bm--", "dst = bool(a)")                                         \
  X(I_MOV, "II--", "dst = a")                                                 \
  X(F_MOV, "FF--", "dst = a")                                                 \
  X(B_MOV, "BB--", "dst = a")                                                 \
  X(I_ADD, "III-", "a + b (int)")                                             \
  X(I_SUB, "III-", "a - b (int)")                                             \
  X(I_MUL, "III-", "a * b (int)")                                             \
  X(I_NEG, "II--", "-a (int)")                                                \
  X(I_ABS, "II--", "abs(a) (int)")                                            \
  X(I_INVERT, "II--", "~a (int)")                                             \
  X(I_FLOORDIV, "III-", "a // b (int)")                                       \
  X(I_MOD, "III-", "a % b (int)")                                             \
  X(I_POW, "III-", "a ** b (int, b >= 0)")                                    \
  X(I_AND, "III-", "a & b")                                                   \
  X(I_OR, "III-", "a | b")                                                    \
  X(I_XOR, "III-", "a ^ b")                                                   \
  X(I_RSHIFT, "III-", "a >> b")                                               \
  X(I_LSHIFT, "III-", "a << b")                                               \
  X(I_TRUEDIV, "FII-", "a / b (int / int -> float)")                          \
  X(F_ADD, "FFF-", "a + b (float)")                                           \
  X(F_SUB, "FFF-", "a - b (float)")                                           \
  X(F_MUL, "FFF-", "a * b (float)")                                           \
  X(F_DIV, "FFF-", "a / b (float)")                                           \
  X(F_FLOORDIV, "FFF-", "a // b (float)")                                     \
  X(F_MOD, "FFF-", "a % b (float)")                                           \
  X(F_POW, "FFF-", "a ** b (float)")                                          \
  X(F_NEG, "FF--", "-a (float)")                                              \
  X(F_ABS, "FF--", "abs(a) (float)")                                          \
  X(I2F, "FI--", "float(a)")                                                  \
  X(B2I, "IB--", "int(a)")                                                    \
  X(B2F, "FB--", "float(a)")                                                  \
  X(F2I_TRUNC, "IF--", "int(a)")                                              \
  X(F_FLOOR_I, "IF--", "math.floor(a)")                                       \
  X(F_CEIL_I, "IF--", "math.ceil(a)")                                         \
  X(F_ROUND_I, "IF--", "round(a)")                                            \
  X(I_TRUTH, "BI--", "bool(a)")                                               \
  X(F_TRUTH, "BF--", "bool(a)")                                               \
  PF__PYVM_CMP(X, I, "BII-", "int")                                           \
  PF__PYVM_CMP(X, F, "BFF-", "float")                                         \
  PF__PYVM_CMP(X, IF, "BIF-", "int vs float")                                 \
  PF__PYVM_CMP(X, FI, "BFI-", "float vs int")                                 \
  X(B_NOT, "BB--", "not a")                                                   \
  X(B_AND, "BBB-", "a and b (bools)")                                         \
  X(B_OR, "BBB-", "a or b (bools)")                                           \
  X(B_XOR, "BBB-", "a ^ b (bools)")                                           \
  X(I_SELECT, "IBII", "dst = b if a else c")                                  \
  X(F_SELECT, "FBFF", "dst = b if a else c")                                  \
  X(B_SELECT, "BBBB", "dst = b if a else c")                                  \
  X(F_CALL1, "FF1-", "dst = math.<b>(a)")                                     \
  X(F_CALL2, "FFF2", "dst = math.<c>(a, b)")                                  \
  X(F_ISNAN, "BF--", "math.isnan(a)")                                         \
  X(F_ISINF, "BF--", "math.isinf(a)")                                         \
  X(F_ISFINITE, "BF--", "math.isfinite(a)")                                   \
  X(C_CONST, "Cc--", "dst = complex(fconsts[a], fconsts[a + 1])")           \
  X(C_MOV, "CC--", "dst = a")                                                 \
  X(I2C, "CI--", "complex(a) (int)")                                          \
  X(F2C, "CF--", "complex(a) (float)")                                        \
  X(B2C, "CB--", "complex(a) (bool)")                                         \
  X(C_MAKE, "CFF-", "complex(a, b) (floats)")                                 \
  X(C_ADD, "CCC-", "a + b (complex)")                                         \
  X(C_SUB, "CCC-", "a - b (complex)")                                         \
  X(C_MUL, "CCC-", "a * b (complex)")                                         \
  X(C_DIV, "CCC-", "a / b (complex)")                                         \
  X(C_POW, "CCC-", "a ** b (complex)")                                        \
  X(C_NEG, "CC--", "-a (complex)")                                            \
  X(C_CONJ, "CC--", "a.conjugate()")                                          \
  X(C_REAL, "FC--", "a.real")                                                 \
  X(C_IMAG, "FC--", "a.imag")                                                 \
  X(C_ABS, "FC--", "abs(a) (complex)")                                        \
  X(C_EQ, "BCC-", "a == b (complex)")                                         \
  X(C_NE, "BCC-", "a != b (complex)")                                         \
  X(C_TRUTH, "BC--", "bool(a) (complex)")                                     \
  X(C_ABS_LT_F, "BCF-", "abs(a) < b (complex a, float b)")                    \
  X(C_ABS_LE_F, "BCF-", "abs(a) <= b (complex a, float b)")                   \
  X(C_ABS_GT_F, "BCF-", "abs(a) > b (complex a, float b)")                    \
  X(C_ABS_GE_F, "BCF-", "abs(a) >= b (complex a, float b)")                   \
  X(C_MULADD, "CCCC", "a * b + c (complex: C_MUL, C_ADD fused)")             \
  X(JMP, "-t--", "goto a")                                                    \
  X(BR, "-Btt", "goto b if a else c")                                         \
  X(RET_I, "-I--", "return a (int)")                                          \
  X(RET_F, "-F--", "return a (float)")                                        \
  X(RET_B, "-B--", "return a (bool)")                                         \
  X(RET_C, "-C--", "return a (complex)")                                      \
  X(BAIL, "----", "this element needs Python")

/* X(NAME, ARITY): the math functions of F_CALL1 (arity 1) and F_CALL2
 * (arity 2), numbered in this order (_core.pyvm_functions()). */
#define PF_PYVM_FUNCTIONS(X)                                                  \
  X(sin, 1) X(cos, 1) X(tan, 1) X(asin, 1) X(acos, 1) X(atan, 1)              \
  X(sinh, 1) X(cosh, 1) X(tanh, 1) X(asinh, 1) X(acosh, 1) X(atanh, 1)        \
  X(exp, 1) X(exp2, 1) X(expm1, 1) X(log, 1) X(log2, 1) X(log10, 1)           \
  X(log1p, 1) X(sqrt, 1) X(cbrt, 1) X(fabs, 1)                                \
  X(atan2, 2) X(hypot, 2) X(copysign, 2) X(fmod, 2) X(pow, 2)

typedef enum pf__pyvm_op {
#define PF__PYVM_ENUM(name, sig, doc) PF__OP_##name,
  PF_PYVM_OPCODES(PF__PYVM_ENUM)
#undef PF__PYVM_ENUM
  PF__OP_COUNT
} pf__pyvm_op;

typedef enum pf__pyvm_fn {
#define PF__PYVM_FN_ENUM(name, arity) PF__FN_##name,
  PF_PYVM_FUNCTIONS(PF__PYVM_FN_ENUM)
#undef PF__PYVM_FN_ENUM
  PF__FN_COUNT
} pf__pyvm_fn;

#endif /* PF_PYVM_OPCODES_H */
