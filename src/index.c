/* index.c -- the index space: shapes, sizes, flat C-order indices, strides. */
#include "internal.h"

int pf_shape_size(int ndim, const int64_t *shape, size_t itemsize,
                  int64_t *size) {
  if (ndim < 0 || ndim > PF_MAX_DIMS || (ndim > 0 && shape == NULL) ||
      size == NULL)
    return PF_EINVAL;
  int64_t n = 1;
  int overflow = 0;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return PF_EINVAL;
    /* Keep multiplying after an overflow: a later zero length makes the whole
     * space empty, which is valid (as in NumPy). */
    if (__builtin_mul_overflow(n, shape[d], &n)) overflow = 1;
  }
  for (int d = 0; d < ndim; d++)
    if (shape[d] == 0) {
      *size = 0;
      return 0;
    }
  /* An itemsize above INT64_MAX would turn negative in the cast below. */
  int64_t bytes;
  if (overflow || itemsize > (size_t)INT64_MAX ||
      __builtin_mul_overflow(n, (int64_t)itemsize, &bytes))
    return PF_EOVERFLOW;
  *size = n;
  return 0;
}

void pf_array_set_contiguous(pf_array *a) {
  int64_t stride = (int64_t)pf_dtype_size(a->dtype);
  for (int d = a->ndim - 1; d >= 0; d--) {
    a->strides[d] = stride;
    stride *= a->shape[d] > 0 ? a->shape[d] : 1;
  }
}

static uint64_t pf__abs_stride(const pf_array *a, int d) {
  int64_t s = a->strides[d];
  /* INT64_MIN has no positive int64: compute in unsigned. */
  return s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
}

int pf_array_is_contiguous(const pf_array *a) {
  int64_t stride = (int64_t)pf_dtype_size(a->dtype);
  for (int d = a->ndim - 1; d >= 0; d--) {
    if (a->shape[d] == 0) return 1;
    if (a->shape[d] != 1 && a->strides[d] != stride) return 0;
    stride *= a->shape[d];
  }
  return 1;
}

int pf_array_overlaps(const pf_array *a) {
  /* Conservative: order the axes by |stride|; each must step over everything
   * the smaller ones span (their extent plus one element), which makes the
   * map from index to address one-to-one. Layouts that interleave axes in
   * other ways (rare, and only from as_strided) are reported as overlapping
   * even when they are not -- a false alarm costs a copy, a miss corrupts. */
  int axes[PF_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < a->ndim; d++) {
    if (a->shape[d] == 0) return 0; /* no elements at all */
    if (a->shape[d] > 1) axes[n++] = d;
  }
  /* Insertion sort by |stride|: at most PF_MAX_DIMS axes. */
  for (int k = 1; k < n; k++) {
    int d = axes[k];
    int m = k;
    for (; m > 0 && pf__abs_stride(a, axes[m - 1]) > pf__abs_stride(a, d); m--)
      axes[m] = axes[m - 1];
    axes[m] = d;
  }
  uint64_t extent = (uint64_t)pf_dtype_size(a->dtype);
  if (extent == 0) extent = 1;
  for (int k = 0; k < n; k++) {
    int d = axes[k];
    uint64_t stride = pf__abs_stride(a, d);
    if (stride < extent) return 1;
    /* extent += stride * (shape - 1), saturating: beyond 2**64 bytes no
     * larger stride can follow, and then that axis is reported. */
    uint64_t span;
    if (__builtin_mul_overflow(stride, (uint64_t)(a->shape[d] - 1), &span) ||
        __builtin_add_overflow(extent, span, &extent))
      extent = UINT64_MAX;
  }
  return 0;
}

void pf_index_unravel(int ndim, const int64_t *shape, int64_t flat,
                      int64_t *index) {
  for (int d = ndim - 1; d >= 0; d--) {
    if (shape[d] <= 0) {
      index[d] = 0;
      continue;
    }
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
}

int pf_index_next_strided(int ndim, const int64_t *shape,
                          const int64_t *strides, int64_t *index,
                          int64_t *offset) {
  for (int d = ndim - 1; d > 0; d--) {
    /* Compared before the increment, so no value can overflow it. */
    if (index[d] < shape[d] - 1) {
      index[d]++;
      if (strides != NULL) *offset += strides[d];
      return d;
    }
    /* Carry: this axis back to 0, the next outer one steps. */
    if (strides != NULL) *offset -= index[d] * strides[d];
    index[d] = 0;
  }
  if (ndim <= 0 || index[0] >= shape[0]) return 0; /* past the end stays */
  index[0]++;
  if (strides != NULL) *offset += strides[0];
  return 0;
}

int pf_index_next(int ndim, const int64_t *shape, int64_t *index) {
  return pf_index_next_strided(ndim, shape, NULL, index, NULL);
}

int64_t pf__offset_of(const pf_array *a, int64_t flat) {
  int64_t offset = 0;
  for (int d = a->ndim - 1; d >= 0; d--) {
    offset += (flat % a->shape[d]) * a->strides[d];
    flat /= a->shape[d];
  }
  return offset;
}

int64_t pf__auto_chunk(pf_schedule schedule, int64_t size, int workers) {
  if (workers < 1) workers = 1;
  switch (schedule) {
    case PF_SCHEDULE_STATIC:
      /* One contiguous part per worker: ceil(size / workers), written so
       * that a size near INT64_MAX cannot overflow. */
      return size / workers + (size % workers != 0);
    case PF_SCHEDULE_GUIDED:
      return 1;
    case PF_SCHEDULE_DYNAMIC:
    default: {
      /* About 16 chunks per worker balances uneven costs; each claim is one
       * compare-and-swap, so small chunks are cheap. */
      int64_t chunk = size / ((int64_t)workers * 16);
      return chunk < 1 ? 1 : chunk;
    }
  }
}
