/* bwd.c: dm_bwd, the dense backward entry point (dmattn.h, SPEC §3): check the arguments, then
 * run the bwd variant's kernel once per phase (templates/attn_bwd.lua: rows, keys, dbias) on the
 * stream, the rows' dO.O in stream-ordered scratch. Nothing is read or written before the check
 * passes. */
#include <stdint.h>
#include <string.h>

#include "attn_check.h"
#include "bwd_launch.h"
#include "bwd_plan.h"
#include "kernel_params.h"
#include "kernels.h"
#include "scratch.h"

/* Whether every dbias element is summed inside one block (templates/attn_bwd.lua writes it from
 * phase 1 or 0, and phase 2 is not run): a key-layout dbias whose batch does not broadcast and
 * whose heads each gather query heads of one K/V head (H or Hkv heads; 1 when Hkv = 1), or a
 * query-layout dbias that broadcasts nothing. */
static int dbias_fused(const dm_fwd_plan *f, const dm_bwd_params *p)
{
    if (p->dbias_B != p->B)
        return 0;
    if (f->bias_layout == DM_LAYOUT_K)
        return p->group % p->bias_head_div == 0;
    return p->dbias_H == p->H && p->dbias_Lq == p->Lq;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        const int64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* A dbias whose sums cross blocks goes through partials: phases 0 and 1 write it fused into
 * scratch of bias's dtype shaped (B, H / d, Lq or 1, Lk), d the query heads a partial head sums
 * (the key layout: gcd(bias_head_div, group), a divisor of a block's heads; the query layout:
 * 1), and phase 2 sums the partials into dbias, a memory pass in a fixed order (template
 * attn_bwd.lua's dbias_sum_parts), where it recomputed ds a warp an element. Points p's fused
 * dbias at part (p->dbias_* of the partials, dbias_fused = 1, dbias_head_div = d) and makes
 * *sums phase 2's parameters (p's, with the caller's dbias and dbias_part = part); p must be
 * complete (scratch included). Returns the partials' bytes, 0 where dbias needs none. */
static size_t dbias_part_bytes(const dm_fwd_plan *f, const dm_bwd_params *p, int *head_div)
{
    if (!p->dbias || p->dbias_fused)
        return 0;
    const int64_t d = f->bias_layout == DM_LAYOUT_K ? gcd64(p->bias_head_div, p->group) : 1;
    const int64_t rows = f->bias_layout == DM_LAYOUT_K ? 1 : p->Lq;
    *head_div = (int)d;
    return (size_t)p->B * (size_t)(p->H / d) * (size_t)rows * (size_t)p->Lk *
           (p->bias_f32 ? 4u : 2u);
}

static void dbias_into_part(const dm_fwd_plan *f, dm_bwd_params *p, uint64_t part, int head_div,
                            dm_bwd_params *sums)
{
    const int64_t rows = f->bias_layout == DM_LAYOUT_K ? 1 : p->Lq;
    *sums = *p;
    sums->dbias_part = part;
    sums->dbias_head_div = head_div;
    p->dbias = part;
    p->dbias_B = p->B;
    p->dbias_H = p->H / head_div;
    p->dbias_Lq = (int32_t)rows;
    p->dbias_stride[2] = p->Lk; /* packed: (B, H / d, rows, Lk) */
    p->dbias_stride[1] = rows * p->Lk;
    p->dbias_stride[0] = p->dbias_H * p->dbias_stride[1];
    p->dbias_key_stride = 1;
    p->dbias_fused = 1;
    p->dbias_head_div = head_div;
}

/* Everything but the scratch (dm_bwd_scratch). */
static void fill_params(const dm_bwd_args *a, const dm_bwd_plan *bp, dm_bwd_params *p)
{
    const dm_fwd_plan *f = &bp->fwd;
    memset(p, 0, sizeof *p);
    p->q = (uint64_t)(uintptr_t)a->q.data;
    p->k = (uint64_t)(uintptr_t)a->k.data;
    p->v = (uint64_t)(uintptr_t)a->v.data;
    p->o = (uint64_t)(uintptr_t)a->o.data;
    p->dout = (uint64_t)(uintptr_t)a->dout.data;
    p->lse = (uint64_t)(uintptr_t)a->lse.data;
    p->mask = f->mask_layout != DM_LAYOUT_NONE ? (uint64_t)(uintptr_t)a->mask.data : 0;
    p->bias = f->bias_layout != DM_LAYOUT_NONE ? (uint64_t)(uintptr_t)a->bias.data : 0;
    p->dq = (uint64_t)(uintptr_t)a->dq.data;
    p->dk = (uint64_t)(uintptr_t)a->dk.data;
    p->dv = (uint64_t)(uintptr_t)a->dv.data;
    p->dbias = bp->has_dbias ? (uint64_t)(uintptr_t)a->dbias.data : 0;
    memcpy(p->q_stride, f->q_stride, sizeof p->q_stride);
    memcpy(p->k_stride, f->k_stride, sizeof p->k_stride);
    memcpy(p->v_stride, f->v_stride, sizeof p->v_stride);
    memcpy(p->o_stride, f->o_stride, sizeof p->o_stride);
    memcpy(p->dout_stride, bp->dout_stride, sizeof p->dout_stride);
    memcpy(p->dq_stride, bp->dq_stride, sizeof p->dq_stride);
    memcpy(p->dk_stride, bp->dk_stride, sizeof p->dk_stride);
    memcpy(p->dv_stride, bp->dv_stride, sizeof p->dv_stride);
    memcpy(p->lse_stride, f->lse_stride, sizeof p->lse_stride);
    memcpy(p->mask_stride, f->mask_stride, sizeof p->mask_stride); /* batch, head, row */
    memcpy(p->bias_stride, f->bias_stride, sizeof p->bias_stride);
    memcpy(p->dbias_stride, bp->dbias_stride, sizeof p->dbias_stride);
    p->mask_key_stride = f->mask_stride[3];
    p->bias_key_stride = f->bias_stride[3];
    p->dbias_key_stride = bp->dbias_stride[3];
    p->mask_head_div = f->mask_head_div > 0 ? f->mask_head_div : 1;
    p->bias_head_div = f->bias_head_div > 0 ? f->bias_head_div : 1;
    p->dbias_head_div = p->bias_head_div;
    p->B = (int32_t)f->B;
    p->H = (int32_t)f->H;
    p->Hkv = (int32_t)f->Hkv;
    p->Lq = (int32_t)f->Lq;
    p->Lk = (int32_t)f->Lk;
    p->group = (int32_t)(f->H / f->Hkv);
    p->scale = f->scale;
    p->softcap = f->softcap;
    p->bias_f32 = f->bias_layout != DM_LAYOUT_NONE && f->bias_dtype == DM_F32;
    if (bp->has_dbias) {
        p->dbias_B = (int32_t)a->dbias.shape[0];
        p->dbias_H = (int32_t)a->dbias.shape[1];
        p->dbias_Lq = (int32_t)a->dbias.shape[2];
        p->dbias_fused = dbias_fused(f, p);
    }
}

/* The keys phase split across blocks (k->key_split, templates/attn_bwd_split.lua; dense, the
 * default mode, whose phase 0 marks the key blocks some query sees): the marks (a count, then a
 * rank and a ticket a key block: int32, zeroed on the stream before phase 0) and the parts' fp32
 * dk, dv sums of up to key_split_cap marked blocks, k->key_split slots each. The kernels split
 * only where the marked blocks number more than the blocks resident at once (p->key_slots) and
 * at most the cap: 1.25 x those, past which the last wave is most of a wave. The deterministic
 * mode's ordered dq sums (marks_only) take the marks alone: no split, the marked blocks ranked
 * for their dq turns (templates/attn_bwd_turns.lua). Sets p's key_slots and key_split_cap,
 * *marks_bytes and *partial_bytes; all 0 where there is no split. */
static void key_split_sizes(const dm_ctx *ctx, const dm_kernel *k, bool reduce, bool marks_only,
                            int head_dim, dm_bwd_params *p, size_t *marks_bytes,
                            size_t *partial_bytes)
{
    *marks_bytes = *partial_bytes = 0;
    p->key_slots = p->key_split_cap = 0;
    if (!reduce || k->key_split < 2 || (int64_t)p->B * k->key_split > DM_GRID_YZ_MAX)
        return; /* (phase 1's grid.z: B x the parts) */
    const int64_t blocks =
        (int64_t)p->B * p->Hkv * (((int64_t)p->Lk + k->block_m - 1) / k->block_m);
    *marks_bytes = ((size_t)(1 + 2 * blocks) * sizeof(int32_t) + 255) / 256 * 256;
    if (marks_only)
        return;
    const int64_t slots = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 1) *
                          (k->blocks_per_sm > 0 ? k->blocks_per_sm : 1);
    const int64_t cap = blocks < slots * 5 / 4 ? blocks : slots * 5 / 4;
    const int64_t d_pad = (head_dim + 15) / 16 * 16; /* the accumulators' columns */
    *partial_bytes =
        (size_t)cap * (size_t)k->key_split * (size_t)k->block_m * (size_t)d_pad * 2 * sizeof(float);
    p->key_slots = (int32_t)slots;
    p->key_split_cap = (int32_t)cap;
}

dm_status dm_bwd_scratch(dm_ctx *ctx, const char *call, const dm_kernel *k, bool deterministic,
                         int64_t rows, int head_dim, CUstream stream, dm_bwd_params *p,
                         size_t *bytes)
{
    /* the deterministic mode sums dq by reductions too where the kernel orders them (dq_turns) */
    const bool ordered = deterministic && k->dq_atomic && k->dq_turns;
    const bool reduce = k->dq_atomic && (!deterministic || ordered);
    const size_t dot_bytes = ((size_t)rows * sizeof(float) + 256) / 256 * 256; /* never 0 */
    const size_t dq_bytes = reduce ? (size_t)rows * (size_t)head_dim * sizeof(float) : 0;
    /* the keys phase's tiles of lse and row_dot (dense kernels with tensor maps) */
    const size_t tile_bytes =
        k->tma_maps ? (size_t)p->B * (size_t)p->H *
                          (size_t)(((int64_t)p->Lq + k->query_tile - 1) / k->query_tile) * 2 *
                          (size_t)k->query_tile * sizeof(float)
                    : 0;
    size_t marks_bytes, partial_bytes;
    key_split_sizes(ctx, k, reduce, deterministic, head_dim, p, &marks_bytes, &partial_bytes);
    /* the dq turns: a query tile of each (b, h) has 2 bits a key block (one a warpgroup, at most
     * 2: attn_bwd_turns.lua's turn_words) in whole 64-bit words, zeroed by phase 0 */
    const int64_t turn_words = (((int64_t)p->Lk + k->block_m - 1) / k->block_m * 2 + 63) / 64;
    const int64_t turn_tiles =
        (int64_t)p->B * p->H * (((int64_t)p->Lq + k->query_tile - 1) / k->query_tile);
    /* the kernels index the words by int32: past that (2^46 scores and more) no fixed order */
    if (ordered && turn_tiles > INT32_MAX / turn_words)
        return dm_set_error(ctx, DM_ERR_UNSUPPORTED,
                            "%s: deterministic: B x H x ceil(Lq / %d) x %lld words of dq turns "
                            "(2 bits a key block of %d) exceed 2^31 - 1: call with deterministic = "
                            "0, or split the batch or heads",
                            call, k->query_tile, (long long)turn_words, k->block_m);
    const size_t turn_bytes =
        ordered ? (size_t)turn_tiles * (size_t)turn_words * sizeof(uint64_t) : 0;
    const size_t marks_at = (dot_bytes + dq_bytes + tile_bytes + 255) / 256 * 256; /* after */
    CUdeviceptr base = 0;
    *bytes = marks_bytes || turn_bytes ? marks_at + marks_bytes + partial_bytes + turn_bytes
                                       : dot_bytes + dq_bytes + tile_bytes;
    dm_status st = dm_scratch_alloc(ctx, call,
                                    partial_bytes ? "dO.O, dq's and the split keys' fp32 sums"
                                    : turn_bytes  ? "dO.O, dq's fp32 sums and their turns"
                                    : reduce      ? "dO.O and dq's fp32 sums"
                                                  : "dO.O",
                                    *bytes, stream, &base);
    p->row_dot = (uint64_t)base;
    p->dq_accum = reduce && base ? (uint64_t)(base + dot_bytes) : 0;
    p->query_rows = tile_bytes && base ? (uint64_t)(base + dot_bytes + dq_bytes) : 0;
    p->key_split = marks_bytes && base ? (uint64_t)(base + marks_at) : 0;
    p->key_partials = partial_bytes && base ? (uint64_t)(base + marks_at + marks_bytes) : 0;
    p->dq_turns =
        turn_bytes && base ? (uint64_t)(base + marks_at + marks_bytes + partial_bytes) : 0;
    /* The turns' launch order interleaves the key blocks of up to 4 K/V heads (a power of two
     * dividing Hkv), where the kernel decodes it (k->turn_order): a block's predecessor in dq's
     * order then starts 4 blocks before it, not just before it, and is about a tile ahead when
     * it needs it (bench/turns_schedule.py: 1.19x-1.28x of the default mode's time at B 2,
     * H 16, L 4096 with one head, 1.05x-1.09x with 4; 8 would hold twice the heads' Q, dO and
     * dq sums in the L2 cache). */
    p->turn_shift = 0;
    while (ordered && k->turn_order && p->turn_shift < 2 && p->Hkv % (2 << p->turn_shift) == 0)
        p->turn_shift++;
    if (st == DM_OK && p->key_split) {
        CUresult r = ctx->drv->MemsetD8Async((CUdeviceptr)p->key_split, 0, marks_bytes, stream);
        if (r != CUDA_SUCCESS) {
            char why[160];
            st = dm_set_error(ctx, DM_ERR_CUDA,
                              "%s: cuMemsetD8Async of the keys phase's split marks: %s", call,
                              dm_driver_error_text(ctx->drv, r, why, sizeof why));
        }
    }
    return st;
}

dm_status dm_bwd_rows_kernel(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel *k,
                             bool deterministic, const dm_kernel **rows)
{
    *rows = NULL;
    if (!deterministic || !k->dq_atomic || k->dq_turns)
        return DM_OK; /* (dq_turns: the keys phase sums dq in order, no rows phase) */
    dm_variant r = *v;
    r.dir = DM_DIR_BWD_ROWS;
    return dm_kernel_get(ctx, call, &r, rows, NULL);
}

dm_status dm_bwd_launch_phases(dm_ctx *ctx, const char *call, const dm_variant *v,
                               const dm_kernel *k, const dm_kernel *rows, dm_bwd_params *p,
                               const dm_bwd_maps *maps, const dm_bwd_grid *g,
                               const dm_bwd_params *sums, CUstream stream)
{
    if (k->tma_maps && !maps)
        return dm_set_error(ctx, DM_ERR_UNSUPPORTED, "%s: the kernel takes tensor maps, none given",
                            call);
    if (k->dq_atomic && !p->dq_accum && !rows)
        return dm_set_error(ctx, DM_ERR_UNSUPPORTED,
                            "%s: the deterministic rows phase needs the bwdrows kernel, none given",
                            call);
    dm_variant rows_v = *v; /* rows' variant, for its messages */
    rows_v.dir = DM_DIR_BWD_ROWS;
    for (int phase = 0; phase < (p->dq_accum ? 4 : 3); phase++) {
        int64_t gx, gy = 1, gz = 1;
        if (phase != 2) { /* 3: over the query rows, as 0 */
            gx = (g->rows[phase % 3] + k->block_m - 1) / k->block_m;
            gy = g->heads[phase % 3];
            gz = g->batches * (phase == 1 && g->key_parts > 1 ? g->key_parts : 1);
            if (phase == 1 && p->dq_turns) { /* the turns' launch order (attn_bwd_turns.lua) */
                gx <<= p->turn_shift;
                gy >>= p->turn_shift;
            }
        } else {
            gx = (g->dbias_elems + k->block_n - 1) / k->block_n;
        }
        if (gx == 0)
            continue;
        if (gx > DM_GRID_X_MAX)
            return dm_set_error(ctx, DM_ERR_UNSUPPORTED,
                                "%s: phase %d needs %lld blocks: expected at most %lld", call,
                                phase, (long long)gx, DM_GRID_X_MAX);
        p->phase = phase;
        dm_bwd_params p2; /* phase 2 from dbias's partials: sums' parameters */
        dm_bwd_params *pp = p;
        if (phase == 2 && sums) {
            p2 = *sums;
            p2.phase = 2;
            pp = &p2;
        }
        const unsigned x = (unsigned)gx, y = (unsigned)gy, z = (unsigned)gz;
        dm_status st;
        if (k->fn_rows && (phase == 3 || (phase == 0 && p->dq_accum)))
            st = dm_kernel_launch_rows(ctx, call, v, k, x, y, z, p, stream); /* memory passes */
        else if (phase == 0 && rows)
            st = dm_kernel_launch(ctx, call, &rows_v, rows, x, y, z, p, stream);
        else if (k->tma_maps)
            st = dm_kernel_launch2(ctx, call, v, k, x, y, z, pp, (void *)maps, stream);
        else
            st = dm_kernel_launch(ctx, call, v, k, x, y, z, pp, stream);
        if (st != DM_OK)
            return st;
    }
    return DM_OK;
}

dm_status dm_bwd(dm_ctx *ctx, const dm_bwd_args *args, CUstream stream)
{
    dm_bwd_plan plan;
    dm_variant v;
    const dm_kernel *kernel, *rows = NULL;
    dm_bwd_params params = {0}; /* params.row_dot: 0 (nothing to free) until the scratch */
    dm_bwd_params sums;         /* phase 2's, where dbias goes through partials */
    size_t bytes = 0, part_bytes = 0;
    CUdeviceptr part = 0;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_status st = dm_bwd_check(ctx, "dm_bwd", args, &plan);
    if (st != DM_OK)
        return st;
    const dm_fwd_plan *f = &plan.fwd;
    if (f->B == 0)
        return DM_OK; /* no element of any gradient (Lq = 0 still zeroes dk, dv: phase 1) */
    if ((st = dm_ctx_enter(ctx, "dm_bwd")) != DM_OK)
        return st;
    dm_fwd_plan_variant(f, ctx->arch, &v);
    /* the deterministic mode's kernel has the dq turns, the default mode's none (gen.h) */
    v.dir = plan.deterministic ? DM_DIR_BWD_DET : DM_DIR_BWD;
    v.decode = false;
    if ((st = dm_kernel_get(ctx, "dm_bwd", &v, &kernel, NULL)) != DM_OK ||
        (st = dm_bwd_rows_kernel(ctx, "dm_bwd", &v, kernel, plan.deterministic, &rows)) != DM_OK)
        goto out;
    fill_params(args, &plan, &params);
    if ((st = dm_bwd_scratch(ctx, "dm_bwd", kernel, plan.deterministic, f->B * f->H * f->Lq,
                             (int)f->D, stream, &params, &bytes)) != DM_OK)
        goto out;
    /* dbias's elements for phase 2 where its sums cross blocks (else phase 0 or 1 writes it) */
    int64_t dbias_elems =
        params.dbias && !params.dbias_fused
            ? (int64_t)params.dbias_B * params.dbias_H * params.dbias_Lq * params.Lk
            : 0;
    int part_div = 1;
    if ((part_bytes = dbias_part_bytes(f, &params, &part_div)) != 0) {
        /* where the partials get no memory (B x H x Lq x Lk of a broadcast query-layout bias can
         * be many GB) phase 2 recomputes ds instead: slower, the same result */
        if (dm_scratch_alloc(ctx, "dm_bwd", "dbias's partials", part_bytes, stream, &part) ==
            DM_OK) {
            dbias_into_part(f, &params, (uint64_t)part, part_div, &sums);
            dbias_elems = (dbias_elems + 31) / 32; /* dbias_sum_parts: a lane an element */
        } else {
            dm_clear_error(ctx);
            part = 0;
            part_bytes = 0;
        }
    }
    const dm_bwd_grid grid = {.rows = {params.Lq, params.Lk},
                              .heads = {params.H, params.Hkv},
                              .batches = params.B,
                              .dbias_elems = dbias_elems,
                              .key_parts = params.key_partials ? kernel->key_split : 1};
    dm_bwd_maps maps;
    if (kernel->tma_maps)
        dm_bwd_maps_fill(ctx->drv, &params, (int)f->D, kernel->query_tile,
                         f->bias_layout == DM_LAYOUT_Q, &maps);
    st = dm_bwd_launch_phases(ctx, "dm_bwd", &v, kernel, rows, &params,
                              kernel->tma_maps ? &maps : NULL, &grid, part ? &sums : NULL, stream);
out: /* freed in stream order, behind the kernels that read it */
    st = dm_scratch_free(ctx, st, "dm_bwd", "dbias's partials", part, part_bytes, stream);
    st =
        dm_scratch_free(ctx, st, "dm_bwd", "the backward's scratch", params.row_dot, bytes, stream);
    dm_ctx_leave(ctx);
    return st;
}
