/* fwd_plan.h: a dense forward call's arguments after validation, in one normalized form that the
 * launcher and the CPU reference both read (so the two can never disagree about a layout). */
#ifndef DM_FWD_PLAN_H
#define DM_FWD_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "dmattn.h"
#include "gen.h"

/* Strides are in elements. A broadcast dimension (size 1) has stride 0 here, whatever the
 * caller passed, so indexing never needs to know which dimensions broadcast. */
typedef struct dm_fwd_plan {
    int64_t B, H, Hkv, Lq, Lk, D;
    dm_dtype dtype;        /* of q, k, v, o */
    float scale;           /* resolved: 1/sqrt(D) when the caller passed 0 */
    float softcap;         /* 0 = off */
    bool causal;

    int64_t q_stride[3];   /* batch, row, head (the last dimension is contiguous) */
    int64_t k_stride[3];
    int64_t v_stride[3];
    int64_t o_stride[3];

    /* mask and bias: layout NONE (absent, or a 2-D mask: window > 0 only, left to the window
     * path), Q ((.., Lq, Lk) rows) or K ((.., 1, Lk)). Element
     * (b, h, i, j) is at b*stride[0] + (h / head_div)*stride[1] + i*stride[2] + j*stride[3];
     * stride[2] is 0 for layout K. head_div = H / (heads in the tensor): 1, H/Hkv or H. */
    dm_layout mask_layout;
    int64_t mask_stride[4];
    int64_t mask_head_div;
    dm_layout bias_layout;
    dm_dtype bias_dtype;   /* q's dtype or DM_F32 */
    int64_t bias_stride[4];
    int64_t bias_head_div;

    bool has_lse;
    int64_t lse_stride[3]; /* batch, head, row */
} dm_fwd_plan;

/* Checks every argument (SPEC §2 and dmattn.h) and fills plan. On a bad argument returns
 * DM_ERR_INVALID_ARG (or DM_ERR_UNSUPPORTED for a valid request not built yet, e.g. window) with a
 * message naming it, e.g. "dm_fwd: k.shape[2] (Hkv) = 3 does not divide q.shape[2] (H) = 8".
 * Touches no memory behind the tensors' pointers. `call` prefixes messages ("dm_fwd"). */
dm_status dm_fwd_check(dm_ctx *ctx, const char *call, const dm_fwd_args *args, dm_fwd_plan *plan);

/* The batch, row and head strides of a (B, L, H, D) tensor, 0 where a dimension has size 1. */
void dm_plan_rows(const dm_tensor *t, int64_t out[3]);

/* The variant key a plan needs on arch. */
void dm_fwd_plan_variant(const dm_fwd_plan *plan, dm_arch arch, dm_variant *out);

#endif
