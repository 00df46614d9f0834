/* fwd_decode.c: the decode path's launch (fwd_decode.h): splits, scratch, kernel, combine. */
#include <string.h>

#include "attn_check.h"
#include "fwd_combine.h"
#include "fwd_decode.h"
#include "kernels.h"

#define SMEM_PER_SM_BYTES (228 * 1024) /* Hopper and A100; fewer elsewhere only shifts the waves */
#define SMEM_RESERVED_BYTES 1024       /* per block, taken by the system */

bool dm_fwd_decode_fits(dm_layout mask, int64_t mask_head_div, dm_layout bias,
                        int64_t bias_head_div, int64_t group, int64_t max_q, const char **why)
{
    const char *w = NULL;
    if (group * max_q > DM_DECODE_ROWS)
        w = "(H / Hkv) x the most queries of a sequence is more than the decode tile's 64 rows";
    else if (mask == DM_LAYOUT_Q || bias == DM_LAYOUT_Q)
        w = "a query-layout mask or bias has a row per query, not one per key";
    else if ((mask == DM_LAYOUT_K && mask_head_div % group) ||
             (bias == DM_LAYOUT_K && bias_head_div % group))
        w = "a key-layout mask or bias with H heads differs between the group's query heads";
    if (why)
        *why = w;
    return w == NULL;
}

/* The fewest splits giving at least two waves of blocks (one wave leaves each SM's loads to
 * its few resident blocks: the 524288-key row ran at 81% of copy on 49 splits, 102% on 64) whose
 * last wave is 85% full or more (a ragged last wave idles the rest of the device), else the
 * best fill found; never more than the tiles. */
int dm_fwd_decode_splits(int requested, int64_t pairs, int64_t tiles, int sm_count,
                         int blocks_per_sm)
{
    int64_t most = tiles < DM_NUM_SPLITS_MAX ? tiles : DM_NUM_SPLITS_MAX;
    if (most < 1)
        most = 1;
    if (requested > 0)
        return (int)(requested < most ? requested : most);
    int64_t slots = (int64_t)(sm_count > 0 ? sm_count : 1) * (blocks_per_sm > 0 ? blocks_per_sm : 1);
    int best = 1;
    double best_fill = 0;
    for (int64_t n = 1; n <= most; n++) {
        int64_t blocks = pairs * n, waves = (blocks + slots - 1) / slots;
        double fill = (double)blocks / (double)(waves * slots);
        if (waves >= 2 && fill >= 0.85)
            return (int)n;
        if (fill > best_fill + 1e-9) {
            best_fill = fill;
            best = (int)n;
        }
    }
    return best;
}

static dm_status run_entered(dm_ctx *ctx, dm_decode_job *job, CUstream stream)
{
    const dm_kernel *kernel;
    dm_fwd_params *p = &job->params;
    CUdeviceptr scratch = 0;
    char buf[160];
    dm_status st;
    CUresult r;

    if ((st = dm_kernel_get(ctx, job->call, &job->variant, &kernel, NULL)) != DM_OK)
        return st;
    int64_t tiles = (job->max_k + kernel->block_n - 1) / kernel->block_n;
    int per_sm = SMEM_PER_SM_BYTES / (kernel->smem_bytes + SMEM_RESERVED_BYTES);
    int n = dm_fwd_decode_splits(job->num_splits, job->B * job->Hkv, tiles, ctx->sm_count,
                                 per_sm);
    int64_t tiles_per_split = (tiles + n - 1) / n;
    n = tiles_per_split ? (int)((tiles + tiles_per_split - 1) / tiles_per_split) : 1;
    /* one split: every key (a count past any sequence, so no key is cut off) */
    p->split_keys = n > 1 ? (int32_t)(tiles_per_split * kernel->block_n) : INT32_MAX / 2;
    p->part_stride = job->rows * p->H;
    size_t o_bytes = (size_t)n * (size_t)p->part_stride * (size_t)job->variant.head_dim * 4;
    size_t lse_bytes = (size_t)n * (size_t)p->part_stride * 4;
    if (n > 1) {
        r = ctx->drv->MemAllocAsync(&scratch, o_bytes + lse_bytes, stream);
        if (r != CUDA_SUCCESS)
            return dm_set_error(ctx, DM_ERR_CUDA,
                                "%s: cuMemAllocAsync of %zu bytes for %d key splits: %s",
                                job->call, o_bytes + lse_bytes, n,
                                dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
        p->o_part = scratch;
        p->lse_part = scratch + o_bytes;
    }

    st = dm_kernel_launch(ctx, job->call, &job->variant, kernel, (unsigned)n, (unsigned)job->Hkv,
                          (unsigned)job->B, p, stream);
    if (st == DM_OK && n > 1) {
        dm_combine_params c;
        memset(&c, 0, sizeof c);
        c.o_part = p->o_part;
        c.lse_part = p->lse_part;
        c.o = p->o;
        c.lse = p->lse;
        memcpy(c.o_stride, job->o_stride, sizeof c.o_stride);
        memcpy(c.lse_stride, job->lse_stride, sizeof c.lse_stride);
        c.part_stride = p->part_stride;
        c.n_splits = n;
        c.rows = (int32_t)job->rows;
        c.H = p->H;
        c.Lq = (int32_t)job->combine_Lq;
        st = dm_fwd_combine_launch(ctx, job->call, job->variant.dtype, job->variant.head_dim, &c,
                                   stream);
    }
    if (scratch) { /* in stream order: after the combine has read it */
        r = ctx->drv->MemFreeAsync(scratch, stream);
        if (r != CUDA_SUCCESS && st == DM_OK)
            st = dm_set_error(ctx, DM_ERR_CUDA, "%s: cuMemFreeAsync of the split scratch: %s",
                              job->call, dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    }
    return st;
}

dm_status dm_fwd_decode_run(dm_ctx *ctx, dm_decode_job *job, CUstream stream)
{
    dm_status st = dm_ctx_enter(ctx, job->call);
    if (st != DM_OK)
        return st;
    st = run_entered(ctx, job, stream);
    dm_ctx_leave(ctx);
    return st;
}
