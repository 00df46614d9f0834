/* fwd_decode.c: the decode path's launch (fwd_decode.h): splits, scratch, kernel, combine. */
#include <string.h>

#include "attn_check.h"
#include "fwd_combine.h"
#include "fwd_decode.h"
#include "kernels.h"
#include "scratch.h"

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

/* Equal lengths: the fewest splits giving at least two waves of blocks (one wave leaves each
 * SM's loads to its few resident blocks: the 524288-key row ran at 81% of copy on 49 splits, 102%
 * on 64) whose last wave is 85% full or more (a ragged last wave idles the rest of the device),
 * else the best fill found; never more than the tiles. */
static int64_t equal_splits(int64_t pairs, int64_t most, int64_t slots, double *fill_out)
{
    int64_t best = 1;
    double best_fill = 0;
    for (int64_t n = 1; n <= most; n++) {
        int64_t blocks = pairs * n, waves = (blocks + slots - 1) / slots;
        double fill = (double)blocks / (double)(waves * slots);
        if (waves >= 2 && fill >= 0.85) {
            *fill_out = fill;
            return n;
        }
        if (fill > best_fill + 1e-9) {
            best_fill = fill;
            best = n;
        }
    }
    *fill_out = best_fill;
    return best;
}

/* Unequal lengths: splits sized from the longest sequence leave the short ones' blocks light and
 * the long ones' heavy, and the device waits on the heaviest (64 sequences of 512..16384 keys
 * ran at 31% of copy on 2 splits of 8192 keys in grid order). Instead every split gets a share
 * of the work: in the grid's order a quarter of a slot's, so four or more waves of alike blocks
 * hide the last one's raggedness. Run longest first (decode_item) the short partial splits fill
 * the last wave, so half a share suffices: a quarter (more, smaller blocks) measured 88.8% of
 * copy on that batch against 90.7% (each block's start and each split's partial o cost more
 * than the finer last wave gained). */
static int64_t unequal_split_tiles(int64_t work_tiles, int64_t slots, bool longest_first)
{
    const int64_t waves = longest_first ? 2 : 4;
    int64_t t = (work_tiles + slots * waves - 1) / (slots * waves);
    return t > DM_DECODE_MIN_SPLIT_TILES ? t : DM_DECODE_MIN_SPLIT_TILES;
}

dm_decode_splits dm_fwd_decode_splits(int requested, int64_t pairs, int64_t max_tiles,
                                      int64_t work_tiles, int sm_count, int blocks_per_sm,
                                      bool longest_first)
{
    int64_t tiles = max_tiles > 0 ? max_tiles : 1;
    int64_t most = tiles < DM_NUM_SPLITS_MAX ? tiles : DM_NUM_SPLITS_MAX;
    int64_t slots = (int64_t)(sm_count > 0 ? sm_count : 1) * (blocks_per_sm > 0 ? blocks_per_sm : 1);
    int64_t per; /* tiles a split takes */
    bool unequal = work_tiles < pairs * max_tiles;
    double fill = 1;
    if (requested > 0 || !unequal) {
        int64_t n = requested > 0 ? (requested < most ? requested : most)
                                  : equal_splits(pairs, most, slots, &fill);
        per = (tiles + n - 1) / n;
    } else {
        per = unequal_split_tiles(work_tiles, slots, longest_first);
        if (per > tiles)
            per = tiles;
        if ((tiles + per - 1) / per > most) /* the grid's limit */
            per = (tiles + most - 1) / most;
    }
    /* n from the tiles a split takes: no split left empty in the longest sequence */
    return (dm_decode_splits){.n = (int)((tiles + per - 1) / per),
                              .tiles_per_split = per,
                              .unequal = unequal,
                              .fill = fill};
}

int64_t dm_fwd_decode_items(int64_t B, int64_t total_k, int64_t block_n, int64_t tiles_per_split)
{
    /* sequence s has ceil(k_s / block_n) tiles, so all of them at most (total_k + B x (block_n -
     * 1)) / block_n; its items are floor(tiles_s / per) full ones and at most one more */
    int64_t tiles = (total_k + B * (block_n - 1)) / block_n;
    return tiles / tiles_per_split + B;
}

dm_decode_grid dm_fwd_decode_grid(dm_decode_splits sp, bool can_order, int64_t B, int64_t Hkv,
                                  int64_t total_k, int64_t block_n)
{
    dm_decode_grid g = {.x = (unsigned)sp.n, .y = (unsigned)Hkv, .z = (unsigned)B,
                        .by_items = can_order && sp.unequal && sp.n > 1};
    if (g.by_items) {
        int64_t items = dm_fwd_decode_items(B, total_k, block_n, sp.tiles_per_split);
        if (items > (int64_t)sp.n * B) /* no sequence has more than n */
            items = (int64_t)sp.n * B;
        g.x = (unsigned)(items * Hkv);
        g.y = g.z = 1;
    }
    return g;
}

static dm_status run_entered(dm_ctx *ctx, dm_decode_job *job, CUstream stream)
{
    const dm_kernel *kernel;
    dm_fwd_params *p = &job->params;
    CUdeviceptr scratch = 0;
    dm_status st;

    if ((st = dm_kernel_get(ctx, job->call, &job->variant, &kernel, NULL)) != DM_OK)
        return st;
    int64_t bn = kernel->block_n, tiles = (job->max_k + bn - 1) / bn;
    /* every pair's tiles: a sequence's last tile may be partial, so up to one more per pair */
    int64_t work = job->total_k == job->B * job->max_k ? job->B * job->Hkv * tiles
                                                       : job->Hkv * ((job->total_k + bn - 1) / bn);
    /* unequal lengths: blocks as work items, longest first, on a 1-D grid (decode_item) */
    bool can_order = job->variant.varlen && job->B <= DM_DECODE_ORDER_MAX_SEQS;
    dm_decode_splits sp = dm_fwd_decode_splits(job->num_splits, job->B * job->Hkv, tiles, work,
                                               ctx->sm_count, kernel->blocks_per_sm, can_order);
    /* Equal lengths: a block fewer an SM where its waves fill the device better (64 x 4096 keys
     * on 3 blocks an SM took 2 splits at fill 0.86, 10% slower than 1 split on 2 at 0.97) */
    dm_kernel fewer;
    if (!sp.unequal && job->num_splits <= 0 && kernel->fewer_blocks_smem_bytes > 0) {
        dm_decode_splits sp2 =
            dm_fwd_decode_splits(0, job->B * job->Hkv, tiles, work, ctx->sm_count,
                                 kernel->blocks_per_sm - 1, can_order);
        if (sp2.fill > sp.fill + DM_DECODE_FILL_MARGIN) {
            sp = sp2;
            fewer = *kernel;
            fewer.smem_bytes = kernel->fewer_blocks_smem_bytes;
            fewer.blocks_per_sm = kernel->blocks_per_sm - 1;
            kernel = &fewer;
        }
    }
    int n = sp.n;
    /* one split: every key (a count past any sequence, so no key is cut off) */
    p->split_keys = n > 1 ? (int32_t)(sp.tiles_per_split * bn) : INT32_MAX / 2;
    p->n_splits = n;
    dm_decode_grid grid = dm_fwd_decode_grid(sp, can_order, job->B, job->Hkv, job->total_k, bn);
    p->split_order = grid.by_items;
    p->part_stride = job->rows * p->H;
    size_t o_bytes = (size_t)n * (size_t)p->part_stride * (size_t)job->variant.head_dim * 4;
    size_t lse_bytes = (size_t)n * (size_t)p->part_stride * 4;
    if (n > 1) {
        if ((st = dm_scratch_alloc(ctx, job->call, "the key splits' partials",
                                   o_bytes + lse_bytes, stream, &scratch)) != DM_OK)
            return st;
        p->o_part = scratch;
        p->lse_part = scratch + o_bytes;
    }

    st = dm_kernel_launch(ctx, job->call, &job->variant, kernel, grid.x, grid.y, grid.z, p, stream);
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
    /* in stream order: after the combine has read it */
    return dm_scratch_free(ctx, st, job->call, "the key splits' partials", scratch,
                           o_bytes + lse_bytes, stream);
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
