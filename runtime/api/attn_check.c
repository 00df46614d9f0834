/* attn_check.c: the rules dm_fwd and dm_fwd_varlen share (attn_check.h). Reads only the
 * descriptors: the pointers may be device pointers and are never dereferenced. */
#include <inttypes.h>
#include <math.h>

#include "attn_check.h"
#include "dm_limits.h"
#include "gen.h"
#include "tensor_check.h"

dm_status dm_check_attn_dtypes(dm_ctx *ctx, const char *call, const dm_tensor *q,
                               const dm_tensor *k, const dm_tensor *v, const dm_tensor *o,
                               const dm_tensor *mask, const dm_tensor *bias, const dm_tensor *lse)
{
    dm_status st;

    if (q->dtype != DM_F16 && q->dtype != DM_BF16)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: q.dtype = %s: expected f16 or bf16", call,
                            dm_dtype_name(q->dtype));
    if ((st = dm_check_same_dtype(ctx, call, "k", k, q->dtype)) != DM_OK ||
        (st = dm_check_same_dtype(ctx, call, "v", v, q->dtype)) != DM_OK ||
        (st = dm_check_same_dtype(ctx, call, "o", o, q->dtype)) != DM_OK)
        return st;
    if (mask && mask->dtype != DM_BOOL)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: mask.dtype = %s: expected bool", call,
                            dm_dtype_name(mask->dtype));
    if (bias && bias->dtype != q->dtype && bias->dtype != DM_F32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: bias.dtype = %s: expected q's dtype %s or f32", call,
                            dm_dtype_name(bias->dtype), dm_dtype_name(q->dtype));
    if (lse && lse->dtype != DM_F32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: lse.dtype = %s: expected f32", call,
                            dm_dtype_name(lse->dtype));
    return DM_OK;
}

dm_status dm_check_attn_heads(dm_ctx *ctx, const char *call, const dm_tensor *q,
                              const dm_tensor *k, const dm_tensor *v, const dm_tensor *o,
                              int h_axis)
{
    const int d_axis = h_axis + 1;
    const int64_t H = q->shape[h_axis], D = q->shape[d_axis], Hkv = k->shape[h_axis];
    dm_status st;

    if (D < DM_HEAD_DIM_MIN || D % DM_HEAD_DIM_STEP != 0 || D > DM_HEAD_DIM_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[%d] (D) = %" PRId64
                            ": expected a multiple of %d from %d to %d",
                            call, d_axis, D, DM_HEAD_DIM_STEP, DM_HEAD_DIM_MIN, DM_HEAD_DIM_MAX);
    if (k->shape[d_axis] != D)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[%d] (D) = %" PRId64
                            " does not match q.shape[%d] (D) = %" PRId64,
                            call, d_axis, k->shape[d_axis], d_axis, D);
    if ((st = dm_check_same_shape(ctx, call, "v", v, "k", k)) != DM_OK ||
        (st = dm_check_same_shape(ctx, call, "o", o, "q", q)) != DM_OK)
        return st;
    if (H % Hkv != 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[%d] (Hkv) = %" PRId64
                            " does not divide q.shape[%d] (H) = %" PRId64,
                            call, h_axis, Hkv, h_axis, H);
    if (H > DM_GRID_YZ_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[%d] (H) = %" PRId64
                            ": expected at most %d (kernels launch one grid.y block per head)",
                            call, h_axis, H, DM_GRID_YZ_MAX);
    return DM_OK;
}

dm_status dm_check_attn_scalars(dm_ctx *ctx, const char *call, float scale, float softcap,
                                int causal, int path, int num_splits, int window)
{
    if (!isfinite(scale) || scale < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: scale = %g: expected a finite value >= 0 (0 = 1/sqrt(D))", call,
                            (double)scale);
    if (!isfinite(softcap) || softcap < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: softcap = %g: expected a finite value >= 0 (0 = off)", call,
                            (double)softcap);
    if (causal != 0 && causal != 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: causal = %d: expected 0 or 1", call,
                            causal);
    if (path != DM_PATH_AUTO && path != DM_PATH_TILED && path != DM_PATH_DECODE)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: path = %d: expected DM_PATH_AUTO (%d), DM_PATH_TILED (%d) or "
                            "DM_PATH_DECODE (%d)",
                            call, path, DM_PATH_AUTO, DM_PATH_TILED, DM_PATH_DECODE);
    if (num_splits < 0 || num_splits > DM_NUM_SPLITS_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: num_splits = %d: expected 0 (picked from the shapes) to %d", call,
                            num_splits, DM_NUM_SPLITS_MAX);
    if (window < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: window = %d: expected >= 0 (0 = no window)", call, window);
    return DM_OK;
}
