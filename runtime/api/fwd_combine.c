/* fwd_combine.c: the launch of the split-KV combine kernel (fwd_combine.h): check the parameters
 * the decode launcher filled, pick the variant, get its kernel, cuLaunchKernel. */
#include <stdint.h>

#include "attn_check.h"
#include "fwd_combine.h"
#include "kernels.h"

/* The parameters against the kernel's assumptions; the variant (dtype, head_dim) is checked by
 * dm_variant_format. Everything here is the library's own bookkeeping, so a failure names the
 * field as the launcher filled it. */
static dm_status check_params(dm_ctx *ctx, const char *call, const dm_combine_params *p)
{
    if (!p)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: combine: params is NULL", call);
    if (p->n_splits < 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: combine: n_splits = %d: expected at least 1", call, p->n_splits);
    if (p->rows < 0 || p->H < 1 || p->Lq < 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: combine: rows = %d, H = %d, Lq = %d: expected rows >= 0, H >= 1, "
                            "Lq >= 1",
                            call, p->rows, p->H, p->Lq);
    const int64_t pairs = (int64_t)p->rows * p->H;
    if (p->part_stride < pairs)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: combine: part_stride = %lld: expected at least rows * H = %lld",
                            call, (long long)p->part_stride, (long long)pairs);
    if (pairs == 0)
        return DM_OK; /* no pointer is read */
    if (!p->o_part || p->o_part % 16 || !p->lse_part || p->lse_part % 4)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: combine: o_part = 0x%llx, lse_part = 0x%llx: expected non-null, "
                            "o_part 16-byte and lse_part 4-byte aligned",
                            call, (unsigned long long)p->o_part, (unsigned long long)p->lse_part);
    if (!p->o || p->o % 2 || p->lse % 4)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: combine: o = 0x%llx, lse = 0x%llx: expected o non-null and "
                            "2-byte aligned, lse 0 or 4-byte aligned",
                            call, (unsigned long long)p->o, (unsigned long long)p->lse);
    return DM_OK;
}

dm_status dm_fwd_combine_launch(dm_ctx *ctx, const char *call, dm_dtype dtype, int head_dim,
                                const dm_combine_params *params, CUstream stream)
{
    dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = head_dim, .dtype = dtype};
    const dm_kernel *kernel;
    char text[DM_VARIANT_TEXT_MAX];
    dm_status st;

    if ((st = check_params(ctx, call, params)) != DM_OK)
        return st;
    v.arch = ctx->arch;
    if (dm_variant_format(&v, text, sizeof text) < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: combine: head_dim %d, dtype %s: expected a head_dim of %d..%d "
                            "(a multiple of %d) and f16 or bf16",
                            call, head_dim, dm_dtype_name(dtype), DM_HEAD_DIM_MIN,
                            DM_HEAD_DIM_MAX, DM_HEAD_DIM_STEP);
    const int64_t pairs = (int64_t)params->rows * params->H;
    if (pairs == 0)
        return DM_OK; /* no token: nothing to combine, no launch (a grid of 0 is an error) */

    if ((st = dm_ctx_enter(ctx, call)) != DM_OK)
        return st;
    st = dm_kernel_get(ctx, call, &v, &kernel, NULL);
    if (st != DM_OK)
        goto out;
    /* Groups a pair: one, unless there are splits enough for each of several groups to take 8
     * or more (one long row: 85 splits, 32 pairs); kernel->block_m pairs a block at one. */
    int lanes = 1;
    while (2 * lanes <= kernel->block_m && params->n_splits >= 16 * lanes)
        lanes *= 2;
    const int pairs_per_block = kernel->block_m / lanes;
    const int64_t grid_x = (pairs + pairs_per_block - 1) / pairs_per_block;
    if (grid_x > DM_GRID_X_MAX) {
        st = dm_set_error(ctx, DM_ERR_INVALID_ARG,
                          "%s: variant '%s': rows * H = %lld pairs need %lld blocks: expected at "
                          "most %lld",
                          call, text, (long long)pairs, (long long)grid_x, DM_GRID_X_MAX);
        goto out;
    }
    dm_combine_params p = *params; /* cuLaunchKernel copies it; no const cast */
    p.split_lanes = lanes;
    st = dm_kernel_launch(ctx, call, &v, kernel, (unsigned)grid_x, 1, 1, &p, stream);
out:
    dm_ctx_leave(ctx);
    return st;
}
