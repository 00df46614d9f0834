/* tensor_check.h: the per-tensor rules (tensor_check.c) that every entry point's check applies,
 * so that all of them word and enforce them alike. Each writes its message naming call and
 * tensor; none reads memory behind a pointer. Stride rules skip dimensions of size 1 (never
 * stepped); a tensor with a dimension of size 0 spans no memory. */
#ifndef DM_TENSOR_CHECK_H
#define DM_TENSOR_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "dmattn.h"

/* "(2, 5, 8, 64)" for messages: the first n entries of v, into buf. Returns buf. */
const char *dm_format_dims(const int64_t *v, int n, char *buf, size_t bytes);

/* Present with the given rank: data set, or NULL when a dimension is 0 (no elements, as PyTorch
 * passes them); dims names the dimensions in the message, e.g. "(B, Lq, H, D)". */
dm_status dm_check_required(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims);

/* Absent (data NULL, rank 0) or present with the given rank (data NULL only with a dimension of
 * size 0, as for dm_check_required); anything between is an error. */
dm_status dm_check_optional(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims, bool *present);

/* t's dtype is q's (want). */
dm_status dm_check_same_dtype(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                              dm_dtype want);

/* t has ref's shape over t's rank (the ranks are already known equal). */
dm_status dm_check_same_shape(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                              const char *ref_name, const dm_tensor *ref);

/* q, k, v: strides >= 0, the last one 1, the pointer 16-byte aligned and the other strides
 * multiples of 8 elements (rows move 16 bytes at a time), extent in range. */
dm_status dm_check_input_rows(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t);

/* o: as dm_check_input_rows, and no two elements at one address. */
dm_status dm_check_output_rows(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t);

/* An input read by rows of keys: strides >= 0, the last one 1, element-aligned, extent in
 * range. */
dm_status dm_check_input_keys(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t);

/* An input read element by element: strides >= 0, element-aligned, extent in range. */
dm_status dm_check_input_elems(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t);

/* An output: strides >= 0, element-aligned, extent in range, no two elements at one address. */
dm_status dm_check_output_elems(dm_ctx *ctx, const char *call, const char *name,
                                const dm_tensor *t);

/* A backward's dout and gradients, alike in dm_bwd and dm_bwd_varlen: dout (grads[0]) shaped as
 * o (likes[0]) and read by rows; dq, dk, dv (grads[1..3]) shaped as q, k, v (likes[1..3]) and
 * written by rows (no two elements at one address); all present with the given rank, in q's
 * dtype. */
dm_status dm_check_bwd_grads(dm_ctx *ctx, const char *call, int rank,
                             const dm_tensor *const grads[4], const dm_tensor *const likes[4]);

/* A backward's dbias, optional: given only with a bias (has_bias), then bias's rank, shape and
 * dtype, written as an output (element-aligned, no two elements at one address), with the last
 * stride 1 where the kernels write rows of keys (contiguous_keys). Sets *present. */
dm_status dm_check_bias_grad(dm_ctx *ctx, const char *call, const dm_tensor *dbias,
                             const dm_tensor *bias, bool has_bias, bool contiguous_keys,
                             bool *present);

#endif
