/* attn_check.h: the rules every attention entry point (dm_fwd, dm_fwd_varlen) applies to its q,
 * k, v, o, mask, bias, lse and scalars alike, with the same words (attn_check.c). The layout
 * rules of each call (batch dimension, sequence lengths, mask shapes) stay in its own check. */
#ifndef DM_ATTN_CHECK_H
#define DM_ATTN_CHECK_H

#include "ctx.h"
#include "dmattn.h"

#define DM_GRID_YZ_MAX 65535   /* cuLaunchKernel's limit on grid.y and grid.z (heads, batches) */
#define DM_GRID_X_MAX 2147483647LL /* and on grid.x (2^31 - 1) */
#define DM_NUM_SPLITS_MAX 1024 /* dm_fwd_args.num_splits and dm_fwd_varlen_args.num_splits */

/* q f16 or bf16; k, v and o q's dtype; mask bool, bias q's dtype or f32, lse f32 where present
 * (NULL: absent). */
dm_status dm_check_attn_dtypes(dm_ctx *ctx, const char *call, const dm_tensor *q,
                               const dm_tensor *k, const dm_tensor *v, const dm_tensor *o,
                               const dm_tensor *mask, const dm_tensor *bias, const dm_tensor *lse);

/* q (.., H, D) and k (.., Hkv, D), heads at dimension h_axis and D after it: D a multiple of
 * DM_HEAD_DIM_STEP from DM_HEAD_DIM_MIN to DM_HEAD_DIM_MAX, k's D q's, v shaped as k and o as q,
 * Hkv dividing H, H at most DM_GRID_YZ_MAX. The ranks are already known right. */
dm_status dm_check_attn_heads(dm_ctx *ctx, const char *call, const dm_tensor *q,
                              const dm_tensor *k, const dm_tensor *v, const dm_tensor *o,
                              int h_axis);

/* scale and softcap finite and >= 0, causal 0 or 1, path a dm_fwd_path, num_splits from 0 to
 * DM_NUM_SPLITS_MAX, window >= 0. */
dm_status dm_check_attn_scalars(dm_ctx *ctx, const char *call, float scale, float softcap,
                                int causal, int path, int num_splits, int window);

#endif
