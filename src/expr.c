/*
 * expr.c -- the public expression API: compile, fill, free.
 *
 * A fill prepares what every block shares -- the scalar slots (constants,
 * the shape's `size` and `n0`..., and the values computed from them by the
 * uniform program), the steps of each axis -- and then runs pf_fill with a
 * kernel that evaluates the vector program block by block. Each worker gets
 * its own registers, allocated by the worker on its first block (so they
 * are local to its core) and freed by the caller after the fill.
 *
 * When the output has the result's representation (float64 for float
 * results, int64 for integer ones) and is aligned, the last instruction
 * writes straight into it; otherwise the result register is cast into it.
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "pool.h"

#define EXPR_MIN_CHUNK (16 * PF__VM_BLOCK)
#define EXPR_MAX_CHUNK (INT64_C(1) << 20)
#define EXPR_SCRATCH_BYTES (INT64_C(8) << 20)
/* Contiguous outputs this large are written with non-temporal stores: they
 * would not stay in the cache anyway (glibc's memcpy switches at a similar
 * size). */
#define EXPR_STREAM_BYTES (INT64_C(32) << 20)

#define NEGATIVE_POWER_MESSAGE \
  "integers to negative integer powers are not allowed"

int pf_expr_compile(pf_expr **expr, const char *text, int ndim,
                    const pf_param *params, size_t nparams, pf_error *err) {
  pf_error local;
  if (err == NULL) err = &local;
  if (expr == NULL || text == NULL || ndim < 0 || ndim > PF_MAX_DIMS ||
      (params == NULL && nparams > 0))
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  *expr = NULL;
  for (size_t k = 0; k < nparams; k++)
    if (params[k].name == NULL ||
        (unsigned)params[k].kind > (unsigned)PF_PARAM_UINT128)
      return pf__error_set(err, PF_EINVAL, -1, "invalid parameter %zu", k);
  size_t length = strnlen(text, PF__EXPR_MAX_LENGTH + 1);
  if (length > PF__EXPR_MAX_LENGTH)
    return pf__error_set(err, PF_ELIMIT, PF__EXPR_MAX_LENGTH,
                         "expression longer than %d bytes",
                         PF__EXPR_MAX_LENGTH);
  pf__ast ast;
  int rc = pf__parse(text, (int32_t)length, &ast, err);
  if (rc != 0) return rc;
  pf_expr *e = pf__calloc(1, sizeof *e);
  if (e == NULL) {
    rc = pf__error_set(err, PF_ENOMEM, -1, "out of memory");
    goto fail;
  }
  e->ndim = ndim;
  e->isa = pf__vm_isa();
  rc = pf__compile(e, text, &ast, params, nparams, err);
  if (rc != 0) goto fail;
  pf__ast_free(&ast);
  *expr = e;
  return 0;
fail:
  pf__ast_free(&ast);
  pf_expr_free(e);
  return rc;
}

pf_dtype pf_expr_type(const pf_expr *expr) {
  assert(expr != NULL);
  return expr->type == PF__T_F   ? PF_FLOAT64
         : expr->type == PF__T_I ? PF_INT64
                                 : PF_BOOL;
}

void pf_expr_free(pf_expr *expr) {
  if (expr == NULL) return;
  free(expr->init);
  free(expr->uniform);
  free(expr->code);
  free(expr);
}

void pf__expr_set_isa(pf_expr *expr, int isa) {
  if (isa < expr->isa) expr->isa = isa;
}

/* ------------------------------------------------------------------ fills */

typedef struct expr_fill {
  const pf_expr *expr;
  pf__scalar *slots; /* read-only while workers run */
  int ndim;
  int64_t shape[PF_MAX_DIMS];
  int64_t inner[PF_MAX_DIMS];
  pf_dtype dtype;
  size_t itemsize;
  int direct;      /* the output has the result's representation */
  int stream;      /* write blocks with non-temporal stores */
  int64_t reg_len; /* elements per register */
  int workers;
  char **regs;              /* per worker, allocated by the worker */
  _Atomic int32_t fail_pos; /* first run-time error's position, or -1 */
} expr_fill;

/* Prepares a fill of an array of `shape`: slots and axis steps. */
static int fill_init(expr_fill *f, const pf_expr *e, const int64_t *shape,
                     pf_dtype dtype, int workers, pf_error *err) {
  *f = (expr_fill){.expr = e, .ndim = e->ndim, .dtype = dtype,
                   .itemsize = pf_dtype_size(dtype), .workers = workers};
  atomic_init(&f->fail_pos, -1);
  int64_t size = 1;
  for (int d = e->ndim - 1; d >= 0; d--) {
    f->shape[d] = shape[d];
    f->inner[d] = size;
    size *= shape[d] > 0 ? shape[d] : 1;
  }
  f->direct = (e->type == PF__T_F && dtype == PF_FLOAT64) ||
              (e->type == PF__T_I && dtype == PF_INT64);
  /* Registers of a block, with shorter blocks for expressions that need
   * very many (hostile texts can keep thousands of values alive): at most
   * about EXPR_SCRATCH_BYTES per worker. */
  f->reg_len = size < PF__VM_BLOCK ? (size + 7) & ~(int64_t)7 : PF__VM_BLOCK;
  int64_t most = EXPR_SCRATCH_BYTES / (8 * (int64_t)(e->nregs + 1));
  most = most < 8 ? 8 : most & ~(int64_t)7;
  if (f->reg_len > most) f->reg_len = most;
  f->slots = pf__malloc((size_t)(e->nslots > 0 ? e->nslots : 1) *
                    sizeof *f->slots);
  f->regs = pf__calloc((size_t)workers, sizeof *f->regs);
  if (f->slots == NULL || f->regs == NULL)
    return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  if (e->nslots > 0)
    memcpy(f->slots, e->init, (size_t)e->nslots * sizeof *f->slots);
  if (e->size_slot >= 0) f->slots[e->size_slot].i = size;
  for (int d = 0; d < e->ndim; d++)
    if (e->dim_slot[d] >= 0) f->slots[e->dim_slot[d]].i = shape[d];
  pf__vm_env env = {.slots = f->slots, .isa = e->isa};
  int32_t pos;
  if (e->nuniform > 0 &&
      pf__vm_exec(e->uniform, e->nuniform, &env, 1, NULL, &pos) != 0)
    return pf__error_set(err, PF_ETYPE, pos, NEGATIVE_POWER_MESSAGE);
  return 0;
}

static void fill_release(expr_fill *f) {
  if (f->regs != NULL)
    for (int w = 0; w < f->workers; w++) free(f->regs[w]);
  free(f->regs);
  free(f->slots);
}

/* The pf_kernel_fn of expression fills. */
static int expr_kernel(void *ctx, int64_t start, int64_t count, void *out,
                       pf_fill_worker *handle) {
  expr_fill *f = ctx;
  const int worker = pf_fill_worker_id(handle);
  const pf_expr *e = f->expr;
  assert(worker >= 0 && worker < f->workers);
  if (e->result_kind == PF__RESULT_SLOT) {
    pf__vm_store(e->type, &f->slots[e->result], 1, count, f->dtype, out,
                 e->isa);
    return 0;
  }
  if (f->regs[worker] == NULL) {
    /* Registers, then (when streaming) a block of output to stream from. */
    size_t bytes = (size_t)e->nregs * (size_t)f->reg_len * 8 +
                   (f->stream ? (size_t)f->reg_len * f->itemsize : 0);
    f->regs[worker] = pf__alloc_should_fail()
                          ? NULL
                          : aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (f->regs[worker] == NULL) return PF_ENOMEM;
  }
  pf__vm_block block = {.ndim = f->ndim, .shape = f->shape,
                        .inner = f->inner};
  pf__vm_env env = {.slots = f->slots, .regs = f->regs[worker],
                    .reg_len = f->reg_len, .block = &block, .isa = e->isa};
  char *result = f->regs[worker] + (size_t)e->result * (size_t)f->reg_len * 8;
  char *staging = f->regs[worker] + (size_t)e->nregs * (size_t)f->reg_len * 8;
  int rc = 0;
  for (int64_t done = 0; done < count; done += f->reg_len) {
    int64_t n = count - done < f->reg_len ? count - done : f->reg_len;
    char *o = (char *)out + done * (int64_t)f->itemsize;
    block.start = start + done;
    pf_index_unravel(f->ndim, f->shape, block.start, block.index);
    void *direct = f->direct && !f->stream && ((uintptr_t)o & 7) == 0 ? o
                                                                       : NULL;
    int32_t pos;
    if (pf__vm_exec(e->code, e->ncode, &env, n, direct, &pos) != 0) {
      int32_t none = -1;
      atomic_compare_exchange_strong(&f->fail_pos, &none, pos);
      rc = PF_ETYPE;
      break;
    }
    if (f->stream) {
      const char *from = result;
      if (!f->direct) {
        pf__vm_store(e->type, result, 0, n, f->dtype, staging, e->isa);
        from = staging;
      }
      pf__vm_stream(o, from, (size_t)n * f->itemsize, e->isa);
    } else if (direct == NULL) {
      pf__vm_store(e->type, result, 0, n, f->dtype, o, e->isa);
    }
  }
  if (f->stream) pf__vm_stream_fence();
  return rc;
}

/* A run-time error of the expression replaces pf_fill's generic message. */
static int fill_result(expr_fill *f, int rc, pf_error *err) {
  int32_t pos = atomic_load(&f->fail_pos);
  if (rc == PF_ETYPE && pos >= 0)
    return pf__error_set(err, rc, pos, NEGATIVE_POWER_MESSAGE);
  return rc;
}

int pf_expr_fill(const pf_expr *expr, const pf_array *out,
                 const pf_fill_options *options, pf_error *err) {
  if (expr == NULL || out == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  if (out->ndim != expr->ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "the expression was compiled for %d dimensions, the "
                         "array has %d", expr->ndim, out->ndim);
  int64_t size;
  if (pf_dtype_size(out->dtype) == 0)
    return pf__error_set(err, PF_EDTYPE, -1, "unsupported dtype");
  int rc = pf_shape_size(out->ndim, out->shape, 1, &size);
  if (rc != 0) return pf__error_set(err, rc, -1, "invalid shape");
  /* An automatic chunk is at least EXPR_MIN_CHUNK elements: an element costs
   * nanoseconds, and smaller chunks cost more in handing out than they
   * gain in balance (a 1000-element fill then runs on the caller alone).
   * It is at most EXPR_MAX_CHUNK (except guided's shrinking claims): workers
   * notice a cancellation (Ctrl-C) or another's failure between chunks. */
  static const pf_fill_options defaults = PF_FILL_OPTIONS_DEFAULTS;
  pf_fill_options o = options != NULL ? *options : defaults;
  int workers = pf_fill_workers(&o, size);
  if (o.chunk == 0) {
    o.chunk = pf__auto_chunk(o.schedule, size, workers);
    if (o.chunk > EXPR_MAX_CHUNK) o.chunk = EXPR_MAX_CHUNK;
    if (o.chunk < EXPR_MIN_CHUNK) o.chunk = EXPR_MIN_CHUNK;
  }
  expr_fill f;
  rc = fill_init(&f, expr, out->shape, out->dtype, workers, err);
  f.stream = pf_array_is_contiguous(out) &&
             size * (int64_t)f.itemsize >= EXPR_STREAM_BYTES;
  if (rc == 0)
    rc = fill_result(&f, pf_fill(out, expr_kernel, &f, &o, err), err);
  fill_release(&f);
  return rc;
}

int pf__expr_eval_block(const pf_expr *expr, const int64_t *shape,
                        pf_dtype dtype, int64_t start, int64_t count,
                        void *out, pf_error *err) {
  expr_fill f;
  int rc = fill_init(&f, expr, shape, dtype, 1, err);
  pf_fill_worker alone;
  pf__fill_worker_detached(&alone, 0);
  if (rc == 0 && count > 0)
    rc = fill_result(&f, expr_kernel(&f, start, count, out, &alone), err);
  fill_release(&f);
  return rc;
}
