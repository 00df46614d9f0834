/* bwd_varlen.c: dm_bwd_varlen, the varlen backward entry point (dmattn.h, SPEC §3 and §5): check
 * the arguments, then the bwd variant's varlen kernel once per phase (bwd_launch.h), each block
 * viewing its sequence from cu_seqlens on the device, the rows' dO.O in stream-ordered scratch.
 * Nothing is read or written before the checks pass. */
#include <stdint.h>
#include <string.h>

#include "bwd_launch.h"
#include "bwd_varlen_plan.h"
#include "device_check.h"
#include "scratch.h"

#define CALL "dm_bwd_varlen"

/* Whether every dbias element is summed inside one block (phase 2 not launched): a key-layout
 * dbias whose stored heads each gather query heads of one K/V head (each key belongs to one
 * sequence, so no sum crosses sequences), or a query-layout one with a head per query head. */
static int dbias_fused(const dm_fwd_varlen_plan *f)
{
    if (f->bias_layout == DM_LAYOUT_K)
        return (f->H / f->Hkv) % f->bias_head_div == 0;
    return f->bias_head_div == 1;
}

/* Everything but the scratch (dm_bwd_scratch). */
static void fill_params(const dm_bwd_varlen_args *a, const dm_bwd_varlen_plan *bp, dm_bwd_params *p)
{
    const dm_fwd_varlen_plan *f = &bp->fwd;
    memset(p, 0, sizeof *p);
    p->q = (uint64_t)(uintptr_t)a->q.data;
    p->k = (uint64_t)(uintptr_t)a->k.data;
    p->v = (uint64_t)(uintptr_t)a->v.data;
    p->o = (uint64_t)(uintptr_t)a->o.data;
    p->dout = (uint64_t)(uintptr_t)a->dout.data;
    p->lse = (uint64_t)(uintptr_t)a->lse.data;
    p->dq = (uint64_t)(uintptr_t)a->dq.data;
    p->dk = (uint64_t)(uintptr_t)a->dk.data;
    p->dv = (uint64_t)(uintptr_t)a->dv.data;
    p->cu_seqlens_q = (uint64_t)(uintptr_t)a->cu_seqlens_q.data;
    p->cu_seqlens_k = (uint64_t)(uintptr_t)a->cu_seqlens_k.data;
    dm_varlen_token_strides(f->q_stride, p->q_stride);
    dm_varlen_token_strides(f->k_stride, p->k_stride);
    dm_varlen_token_strides(f->v_stride, p->v_stride);
    dm_varlen_token_strides(f->o_stride, p->o_stride);
    dm_varlen_token_strides(bp->dout_stride, p->dout_stride);
    dm_varlen_token_strides(bp->dq_stride, p->dq_stride);
    dm_varlen_token_strides(bp->dk_stride, p->dk_stride);
    dm_varlen_token_strides(bp->dv_stride, p->dv_stride);
    dm_varlen_lse_strides(f->lse_stride, p->lse_stride);
    p->mask_key_stride = p->bias_key_stride = p->dbias_key_stride = 1;
    p->mask_head_div = p->bias_head_div = 1;
    if (f->mask_layout != DM_LAYOUT_NONE) {
        p->mask = (uint64_t)(uintptr_t)a->mask.data;
        dm_varlen_layout_strides(f->mask_layout, f->mask_stride, p->mask_stride,
                                 &p->mask_key_stride);
        p->mask_head_div = f->mask_head_div;
    }
    if (f->bias_layout != DM_LAYOUT_NONE) {
        p->bias = (uint64_t)(uintptr_t)a->bias.data;
        p->bias_f32 = f->bias_dtype == DM_F32;
        dm_varlen_layout_strides(f->bias_layout, f->bias_stride, p->bias_stride,
                                 &p->bias_key_stride);
        p->bias_head_div = f->bias_head_div;
    }
    p->dbias_head_div = p->bias_head_div;
    p->B = (int32_t)f->B;
    p->H = (int32_t)f->H;
    p->Hkv = (int32_t)f->Hkv;
    p->Lq = (int32_t)f->max_seqlen_q; /* the kernels take each sequence's own counts */
    p->Lk = (int32_t)f->max_seqlen_k;
    p->group = (int32_t)(f->H / f->Hkv);
    p->scale = f->scale;
    p->softcap = f->softcap;
    p->total_q = (int32_t)f->total_q;
    p->total_k = (int32_t)f->total_k;
    p->max_seqlen_q = (int32_t)f->max_seqlen_q;
    p->max_seqlen_k = (int32_t)f->max_seqlen_k;
    if (bp->has_dbias) {
        p->dbias = (uint64_t)(uintptr_t)a->dbias.data;
        dm_varlen_layout_strides(f->bias_layout, bp->dbias_stride, p->dbias_stride,
                                 &p->dbias_key_stride);
        p->dbias_B = (int32_t)f->B; /* unused by the varlen kernels: no batch broadcast */
        p->dbias_H = (int32_t)(f->H / f->bias_head_div);
        p->dbias_Lq = 1;
        p->dbias_fused = dbias_fused(f);
    }
}

/* Phase 2's elements (dbias sums across blocks): every element of dbias, found by token. */
static int64_t dbias_elems(const dm_fwd_varlen_plan *f, const dm_bwd_params *p)
{
    if (!p->dbias || p->dbias_fused)
        return 0;
    return f->bias_layout == DM_LAYOUT_K ? f->total_k * p->dbias_H
                                         : f->total_q * p->dbias_H * f->max_seqlen_k;
}

dm_status dm_bwd_varlen(dm_ctx *ctx, const dm_bwd_varlen_args *args, CUstream stream)
{
    dm_bwd_varlen_plan plan;
    dm_variant v;
    const dm_kernel *kernel, *rows = NULL;
    dm_bwd_params params = {0}; /* params.row_dot: 0 (nothing to free) until the scratch */
    size_t bytes = 0;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_status st = dm_bwd_varlen_check(ctx, CALL, args, &plan);
    if (st != DM_OK)
        return st;
    /* Only the kernels read cu_seqlens: host memory there would fault on the device. Asked even
     * of an empty batch, so a call that passes empty passes full. */
    if ((st = dm_check_device_readable(ctx, CALL, "cu_seqlens_q", &args->cu_seqlens_q)) != DM_OK ||
        (st = dm_check_device_readable(ctx, CALL, "cu_seqlens_k", &args->cu_seqlens_k)) != DM_OK)
        return st;
    const dm_fwd_varlen_plan *f = &plan.fwd;
    if (f->B == 0 || (f->total_q == 0 && f->total_k == 0))
        return DM_OK; /* no element of any gradient (no query: dk, dv = 0 still, phase 1) */
    if ((st = dm_ctx_enter(ctx, CALL)) != DM_OK)
        return st;
    dm_fwd_varlen_plan_variant(f, ctx->arch, false, &v);
    v.dir = DM_DIR_BWD;
    if ((st = dm_kernel_get(ctx, CALL, &v, &kernel, NULL)) != DM_OK ||
        (st = dm_bwd_rows_kernel(ctx, CALL, &v, kernel, plan.deterministic, &rows)) != DM_OK)
        goto out;
    fill_params(args, &plan, &params);
    if ((st = dm_bwd_scratch(ctx, CALL, kernel, plan.deterministic, f->H * f->total_q, (int)f->D,
                             stream, &params, &bytes)) != DM_OK)
        goto out;
    const dm_bwd_grid grid = {.rows = {f->max_seqlen_q, f->max_seqlen_k},
                              .heads = {f->H, f->Hkv},
                              .batches = f->B,
                              .dbias_elems = dbias_elems(f, &params)};
    st = dm_bwd_launch_phases(ctx, CALL, &v, kernel, rows, &params, NULL, &grid, NULL, stream);
out: /* freed in stream order, behind the kernels that read it */
    st = dm_scratch_free(ctx, st, CALL, "the backward's scratch", params.row_dot, bytes, stream);
    dm_ctx_leave(ctx);
    return st;
}
