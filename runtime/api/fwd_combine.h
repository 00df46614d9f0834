/* fwd_combine.h: the launch of the split-KV combine kernel (templates/attn_combine.lua), which
 * merges the decode path's per-split partial (o, lse) into o and lse. Called by the decode
 * launchers after their split kernel, on the same stream; not an entry point of its own. */
#ifndef DM_FWD_COMBINE_H
#define DM_FWD_COMBINE_H

#include "ctx.h"
#include "kernel_params.h"

/* Queues combine.d<head_dim>.<dtype>.<ctx's arch> on stream over params (gen/kernel_params.h,
 * DM_COMBINE_PARAMS):
 *   o_part  fp32 (n_splits, rows, H, head_dim), 16-byte aligned: split s's normalized o for
 *           (token t, head h) at ((s * part_stride) + t * H + h) * head_dim;
 *   lse_part fp32 (n_splits, rows, H): split s's lse at s * part_stride + t * H + h, -inf when
 *           the split saw no visible key (its o_s is then never used, whatever it holds);
 *   o       dtype, token t = b * Lq + i at b * o_stride[0] + i * o_stride[1] + h * o_stride[2];
 *   lse     fp32 or 0 (not written), at b * lse_stride[0] + h * lse_stride[1] + i *
 *           lse_stride[2]. Varlen: Lq = rows = total_q, so b = 0 and i = t.
 * split_lanes is the launcher's to set (the caller's value is ignored).
 * A (token, head) whose every split is empty gets o = 0 and lse = +inf. rows = 0 queues nothing.
 * The parameters are the library's own, not a caller's: a bad one (n_splits < 1, part_stride <
 * rows * H, a misaligned o_part, ...) is DM_ERR_INVALID_ARG naming the field. Messages are
 * prefixed with `call` ("dm_fwd_varlen") and name the variant when the kernel fails. */
dm_status dm_fwd_combine_launch(dm_ctx *ctx, const char *call, dm_dtype dtype, int head_dim,
                                const dm_combine_params *params, CUstream stream);

#endif
