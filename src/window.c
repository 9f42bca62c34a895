/*
 * window.c -- windows of a larger index space (parfill.h: pf_window).
 *
 * A Dask block is a box of the whole array; an MPI rank's slab is a range of
 * its flat indices. Kernels compute element values from the whole's flat
 * index, so a window only has to say, for each element of the output in C
 * order, which flat index of the whole it is -- and where the next gap is,
 * because a kernel call covers consecutive flat indices.
 *
 * A box is contiguous in the whole along its trailing axes as long as they
 * span the whole's axes entirely: with `axis` the first of the trailing run
 * of full axes' predecessor (the last axis that is cut), a run of the output
 * of run = box[axis] * ... * box[ndim-1] elements is one stretch of the
 * whole's flat indices. Element k of the output lies in run r = k / run at
 * position q = k % run, and its flat index is the whole's flat index of the
 * run's first element plus q. Both directions are monotonic, so "the lowest
 * failing element" and "nothing at or past the limit" mean the same in
 * either numbering.
 */
#include <assert.h>
#include <string.h>

#include "internal.h"

int pf_window_check(const pf_window *window, int out_ndim,
                    const int64_t *out_shape, pf_error *err) {
  if (window == NULL || window->ndim < 0 || window->ndim > PF_MAX_DIMS ||
      (window->ndim > 0 && window->shape == NULL) || out_ndim < 0 ||
      out_ndim > PF_MAX_DIMS || (out_ndim > 0 && out_shape == NULL))
    return pf__error_set(err, PF_EINVAL, -1, "invalid window");
  int64_t whole;
  int rc = pf_shape_size(window->ndim, window->shape, 1, &whole);
  if (rc == PF_EOVERFLOW)
    return pf__error_set(err, rc, -1, "the window's whole array has more "
                                      "than 2**63 - 1 elements");
  if (rc != 0)
    return pf__error_set(err, PF_EINVAL, -1,
                         "the window's whole shape has a negative length");
  int64_t size;
  rc = pf_shape_size(out_ndim, out_shape, 1, &size);
  if (rc != 0) return pf__error_set(err, PF_EINVAL, -1, "invalid shape");
  if (window->origin == NULL) {
    if (window->offset < 0 || window->offset > whole ||
        size > whole - window->offset)
      return pf__error_set(err, PF_EINVAL, -1,
                           "window range [%lld, %lld + %lld) outside the "
                           "whole's %lld elements",
                           (long long)window->offset,
                           (long long)window->offset, (long long)size,
                           (long long)whole);
    return 0;
  }
  if (out_ndim != window->ndim)
    return pf__error_set(err, PF_EINVAL, -1,
                         "a window box of %d dimensions in a whole of %d",
                         out_ndim, window->ndim);
  for (int d = 0; d < out_ndim; d++)
    if (window->origin[d] < 0 || window->origin[d] > window->shape[d] ||
        out_shape[d] > window->shape[d] - window->origin[d])
      return pf__error_set(err, PF_EINVAL, -1,
                           "window box [%lld, %lld + %lld) outside axis %d "
                           "of length %lld",
                           (long long)window->origin[d],
                           (long long)window->origin[d],
                           (long long)out_shape[d], d,
                           (long long)window->shape[d]);
  return 0;
}

void pf__window_map_init(pf__window_map *m, const pf_window *window,
                         int out_ndim, const int64_t *out_shape) {
  memset(m, 0, sizeof *m);
  pf_shape_size(out_ndim, out_shape, 1, &m->size);
  if (window->origin == NULL || window->ndim == 0) {
    m->box = 0; /* a 0-d box is its one element: flat index 0 */
    m->offset = window->origin == NULL ? window->offset : 0;
    m->run = m->size > 0 ? m->size : 1;
    return;
  }
  m->box = 1;
  m->ndim = window->ndim;
  int64_t inner = 1;
  for (int d = m->ndim - 1; d >= 0; d--) {
    m->inner[d] = inner;
    inner *= window->shape[d];
    m->whole[d] = window->shape[d];
    m->origin[d] = window->origin[d];
    m->shape[d] = out_shape[d];
  }
  /* The cut axis: the last one the box does not span. */
  int axis = m->ndim - 1;
  while (axis > 0 && out_shape[axis] == window->shape[axis]) axis--;
  m->axis = axis;
  int64_t run = 1;
  for (int d = axis; d < m->ndim; d++) run *= out_shape[d];
  m->run = run > 0 ? run : 1;
}

int64_t pf__window_to_whole(const pf__window_map *m, int64_t k) {
  if (!m->box) return m->offset + k;
  const int64_t r = k / m->run, q = k % m->run;
  /* The run's N-d position over the axes before the cut one, from the
   * innermost: its index r counts those axes' combinations in C order. */
  int64_t flat = m->origin[m->axis] * m->inner[m->axis] + q, rest = r;
  for (int d = m->axis - 1; d >= 0; d--) {
    const int64_t i = m->shape[d] > 0 ? rest % m->shape[d] : 0;
    rest = m->shape[d] > 0 ? rest / m->shape[d] : 0;
    flat += (m->origin[d] + i) * m->inner[d];
  }
  return flat;
}

int64_t pf__window_from_whole(const pf__window_map *m, int64_t flat) {
  if (!m->box) return flat - m->offset;
  /* Each axis's index in the whole, less the box's origin, raveled in the
   * box. `flat` is an element of the box, so no length is 0. */
  int64_t k = 0, step = 1, rest = flat;
  for (int d = m->ndim - 1; d >= 0; d--) {
    k += (rest % m->whole[d] - m->origin[d]) * step;
    rest /= m->whole[d];
    step *= m->shape[d];
  }
  return k;
}

int64_t pf__window_limit_to_whole(const pf__window_map *m, int64_t limit) {
  if (limit <= 0) return 0;
  if (limit >= m->size)
    return m->size > 0 ? pf__window_to_whole(m, m->size - 1) + 1 : 0;
  return pf__window_to_whole(m, limit);
}

int64_t pf__window_stretch(const pf__window_map *m, int64_t k) {
  return m->run - k % m->run;
}

int64_t pf_window_flat(const pf_window *window, int out_ndim,
                       const int64_t *out_shape, int64_t k) {
  pf__window_map m;
  pf__window_map_init(&m, window, out_ndim, out_shape);
  assert(k >= 0 && k < m.size);
  return pf__window_to_whole(&m, k);
}

void pf__index_space(const pf_array *out, const pf_fill_options *o,
                     int *ndim, const int64_t **shape) {
  if (o != NULL && o->window != NULL) {
    *ndim = o->window->ndim;
    *shape = o->window->shape;
  } else {
    *ndim = out->ndim;
    *shape = out->shape;
  }
}
