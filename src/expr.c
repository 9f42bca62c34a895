/*
 * expr.c -- the public expression API: compile, fill, free.
 *
 * A fill prepares a run (pf__expr_run) -- what every block shares: the scalar
 * slots (constants, the shape's `size` and `n0`..., and the values computed
 * from them by the uniform program), the steps of each axis -- and then runs
 * pf_fill with the run's kernel, which evaluates the vector program block by
 * block. Each worker gets its own registers, allocated by the worker on its
 * first block (so they are local to its core), reused for every later block
 * and freed with the run. .npy fills (npy_file.c) use one run for all the
 * blocks of a file.
 *
 * A run-time error (an integer to a negative power) fails the fill through
 * the kernel's handle at the first element of the failing VM block, with the
 * message as users see it; the fill keeps the lowest failing element's.
 * Expression errors are positioned in the text, so each worker also notes
 * its failure's operator offset, which pf__expr_run_finish puts in
 * err->position after the fill.
 *
 * When the output has the result's representation (float64 for float
 * results, int64 for integer ones) and is aligned, the last instruction
 * writes straight into it; otherwise the result register is cast into it.
 */
#include <assert.h>
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

/* ------------------------------------------------------------------ runs */

/* A worker's registers (then, when streaming, a block of output to stream
 * from) and its run-time error: a worker's task stops at its first failure,
 * so there is at most one; INT64_MAX while none. */
typedef struct run_worker {
  char *regs;
  int64_t fail_index; /* first element of the failing VM block */
  int32_t fail_pos;   /* the operator's offset in the text */
} run_worker;

struct pf__expr_run {
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
  run_worker *w;   /* per worker */
};

/* The scalar slots: constants, `size`, `n0`..., then the uniform program. */
static int run_slots(pf__expr_run *r, const int64_t *shape, int64_t size,
                     pf_error *err) {
  const pf_expr *e = r->expr;
  r->slots = pf__malloc((size_t)(e->nslots > 0 ? e->nslots : 1) *
                        sizeof *r->slots);
  if (r->slots == NULL)
    return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  if (e->nslots > 0)
    memcpy(r->slots, e->init, (size_t)e->nslots * sizeof *r->slots);
  if (e->size_slot >= 0) r->slots[e->size_slot].i = size;
  for (int d = 0; d < e->ndim; d++)
    if (e->dim_slot[d] >= 0) r->slots[e->dim_slot[d]].i = shape[d];
  pf__vm_env env = {.slots = r->slots, .isa = e->isa};
  int32_t pos;
  if (e->nuniform > 0 &&
      pf__vm_exec(e->uniform, e->nuniform, &env, 1, NULL, &pos) != 0)
    return pf__error_set(err, PF_ETYPE, pos, NEGATIVE_POWER_MESSAGE);
  return 0;
}

int pf__expr_run_new(pf__expr_run **run, const pf_expr *e,
                     const int64_t *shape, pf_dtype dtype, int workers,
                     int stream, pf_error *err) {
  assert(run != NULL && e != NULL && workers >= 1);
  *run = NULL;
  pf__expr_run *r = pf__calloc(1, sizeof *r);
  if (r == NULL) return pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  *r = (pf__expr_run){.expr = e, .ndim = e->ndim, .dtype = dtype,
                      .itemsize = pf_dtype_size(dtype), .workers = workers,
                      .stream = stream};
  int64_t size = 1;
  for (int d = e->ndim - 1; d >= 0; d--) {
    r->shape[d] = shape[d];
    r->inner[d] = size;
    size *= shape[d] > 0 ? shape[d] : 1;
  }
  r->direct = (e->type == PF__T_F && dtype == PF_FLOAT64) ||
              (e->type == PF__T_I && dtype == PF_INT64);
  /* Registers of a block, with shorter blocks for expressions that need
   * very many (hostile texts can keep thousands of values alive): at most
   * about EXPR_SCRATCH_BYTES per worker. */
  r->reg_len = size < PF__VM_BLOCK ? (size + 7) & ~(int64_t)7 : PF__VM_BLOCK;
  int64_t most = EXPR_SCRATCH_BYTES / (8 * (int64_t)(e->nregs + 1));
  most = most < 8 ? 8 : most & ~(int64_t)7;
  if (r->reg_len > most) r->reg_len = most;
  r->w = pf__calloc((size_t)workers, sizeof *r->w);
  int rc = r->w != NULL ? 0
                        : pf__error_set(err, PF_ENOMEM, -1, "out of memory");
  if (rc == 0) {
    for (int k = 0; k < workers; k++) r->w[k].fail_index = INT64_MAX;
    rc = run_slots(r, shape, size, err);
  }
  if (rc != 0) {
    pf__expr_run_free(r);
    return rc;
  }
  *run = r;
  return 0;
}

void pf__expr_run_free(pf__expr_run *r) {
  if (r == NULL) return;
  if (r->w != NULL)
    for (int k = 0; k < r->workers; k++) free(r->w[k].regs);
  free(r->w);
  free(r->slots);
  free(r);
}

int pf__expr_run_kernel(void *ctx, int64_t start, int64_t count, void *out,
                        pf_fill_worker *handle) {
  pf__expr_run *r = ctx;
  const int worker = pf_fill_worker_id(handle);
  const pf_expr *e = r->expr;
  assert(worker >= 0 && worker < r->workers);
  if (e->result_kind == PF__RESULT_SLOT) {
    pf__vm_store(e->type, &r->slots[e->result], 1, count, r->dtype, out,
                 e->isa);
    return 0;
  }
  run_worker *w = &r->w[worker];
  if (w->regs == NULL) {
    size_t bytes = (size_t)e->nregs * (size_t)r->reg_len * 8 +
                   (r->stream ? (size_t)r->reg_len * r->itemsize : 0);
    w->regs = pf__aligned_alloc(64, bytes);
    if (w->regs == NULL)
      return pf_fill_worker_fail(handle, PF_ENOMEM, -1,
                                 "out of memory for expression registers");
  }
  pf__vm_block block = {.ndim = r->ndim, .shape = r->shape,
                        .inner = r->inner};
  pf__vm_env env = {.slots = r->slots, .regs = w->regs,
                    .reg_len = r->reg_len, .block = &block, .isa = e->isa};
  char *result = w->regs + (size_t)e->result * (size_t)r->reg_len * 8;
  char *staging = w->regs + (size_t)e->nregs * (size_t)r->reg_len * 8;
  int rc = 0;
  for (int64_t done = 0; done < count; done += r->reg_len) {
    int64_t n = count - done < r->reg_len ? count - done : r->reg_len;
    char *o = (char *)out + done * (int64_t)r->itemsize;
    block.start = start + done;
    pf_index_unravel(r->ndim, r->shape, block.start, block.index);
    void *direct = r->direct && !r->stream && ((uintptr_t)o & 7) == 0 ? o
                                                                       : NULL;
    int32_t pos;
    if (pf__vm_exec(e->code, e->ncode, &env, n, direct, &pos) != 0) {
      if (block.start < w->fail_index) {
        w->fail_index = block.start;
        w->fail_pos = pos;
      }
      rc = pf_fill_worker_fail(handle, PF_ETYPE, block.start, "%s",
                               NEGATIVE_POWER_MESSAGE);
      break;
    }
    if (r->stream) {
      const char *from = result;
      if (!r->direct) {
        pf__vm_store(e->type, result, 0, n, r->dtype, staging, e->isa);
        from = staging;
      }
      pf__vm_stream(o, from, (size_t)n * r->itemsize, e->isa);
    } else if (direct == NULL) {
      pf__vm_store(e->type, result, 0, n, r->dtype, o, e->isa);
    }
  }
  if (r->stream) pf__vm_stream_fence();
  return rc;
}

/* The text offset of the lowest failing element's operator, or -1. */
static int32_t lowest_failure(const pf__expr_run *r) {
  int64_t lowest = INT64_MAX;
  int32_t pos = -1;
  for (int k = 0; k < r->workers; k++)
    if (r->w[k].fail_index < lowest) {
      lowest = r->w[k].fail_index;
      pos = r->w[k].fail_pos;
    }
  return pos;
}

int pf__expr_run_finish(const pf__expr_run *r, int rc, pf_error *err) {
  int32_t pos = rc == PF_ETYPE ? lowest_failure(r) : -1;
  if (pos >= 0 && err != NULL) err->position = pos;
  return rc;
}

/* ------------------------------------------------------------------ fills */

int pf_expr_fill(const pf_expr *expr, const pf_array *out,
                 const pf_fill_options *options, pf_error *err) {
  if (expr == NULL || out == NULL)
    return pf__error_set(err, PF_EINVAL, -1, "invalid arguments");
  /* With a window the index variables are the whole array's. */
  int ndim;
  const int64_t *space;
  pf__index_space(out, options, &ndim, &space);
  if (ndim != expr->ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "the expression was compiled for %d dimensions, the "
                         "array has %d", expr->ndim, ndim);
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
  /* The worker count is fixed here, so the run's per-worker registers and
   * pf_fill agree even if the pool grows meanwhile; the run lives on this
   * stack frame until pf_fill returns (no release). */
  o.workers = pf_fill_workers(&o, size);
  o.release = NULL;
  if (o.chunk == 0) {
    o.chunk = pf__auto_chunk(o.schedule, size, o.workers);
    if (o.chunk > EXPR_MAX_CHUNK) o.chunk = EXPR_MAX_CHUNK;
    if (o.chunk < EXPR_MIN_CHUNK) o.chunk = EXPR_MIN_CHUNK;
  }
  int stream = pf_array_is_contiguous(out) &&
               size * (int64_t)pf_dtype_size(out->dtype) >= EXPR_STREAM_BYTES;
  pf__expr_run *run;
  if (o.window != NULL &&
      (rc = pf_window_check(o.window, out->ndim, out->shape, err)) != 0)
    return rc;
  rc = pf__expr_run_new(&run, expr, space, out->dtype, o.workers, stream,
                        err);
  if (rc != 0) return rc;
  rc = pf__expr_run_finish(run, pf_fill(out, pf__expr_run_kernel, run, &o,
                                        err), err);
  pf__expr_run_free(run);
  return rc;
}

int pf__expr_eval_block(const pf_expr *expr, const int64_t *shape,
                        pf_dtype dtype, int64_t start, int64_t count,
                        void *out, pf_error *err) {
  pf__expr_run *run;
  int rc = pf__expr_run_new(&run, expr, shape, dtype, 1, 0, err);
  if (rc != 0) return rc;
  pf_fill_worker alone;
  pf__fill_worker_detached(&alone, 0);
  if (count > 0) rc = pf__expr_run_kernel(run, start, count, out, &alone);
  /* No fill keeps a detached handle's failure: report it here. */
  if (rc == PF_ETYPE)
    pf__error_set(err, rc, lowest_failure(run), NEGATIVE_POWER_MESSAGE);
  else if (rc != 0)
    pf__error_set(err, rc, -1, NULL);
  pf__expr_run_free(run);
  return rc;
}
