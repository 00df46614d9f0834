/* ref_fwd_varlen.c: the CPU reference of dm_fwd_varlen (SPEC §5) in float64, on host buffers (the
 * cu_seqlens included). Each sequence becomes a dense B = 1 problem, a view into the packed
 * buffers, handed to dm_ref_attention: one attention reference, so varlen and dense cannot
 * disagree about the math. For tests and tools; production code never calls it. */
#include <stdint.h>
#include <stdlib.h>

#include "reference.h"

/* Bytes per element of the dtypes the buffers hold (bool 1, f16/bf16 2, f32 4). */
static size_t elem_bytes(dm_dtype t)
{
    return t == DM_F32 ? 4 : t == DM_BOOL ? 1 : 2;
}

static void *at(void *base, dm_dtype t, int64_t elems)
{
    return (char *)base + (size_t)elems * elem_bytes(t);
}

/* A varlen mask/bias (token, head, key) as a dense one (b, h, i, j) with b always 0. Query
 * layout: rows start at the sequence's first query, one row per query, keys contiguous. Key
 * layout: one value per key, the same for every query (row stride 0), a key's own row apart. */
static void mb_view(dm_layout layout, const int64_t vs[3], int64_t first_q, int64_t first_k,
                    int64_t *first_token, int64_t ds[4])
{
    ds[0] = 0;
    ds[1] = vs[1];
    ds[2] = layout == DM_LAYOUT_Q ? vs[0] : 0;
    ds[3] = vs[2];
    *first_token = layout == DM_LAYOUT_Q ? first_q : first_k;
}

/* Sequence b's dense problem: B = 1, Lq x Lk, every pointer offset to its first token. */
static void sequence_view(const dm_fwd_varlen_args *a, const dm_fwd_varlen_plan *p, int64_t q0,
                          int64_t k0, int64_t Lq, int64_t Lk, dm_fwd_args *da, dm_fwd_plan *dp)
{
    *dp = (dm_fwd_plan){
        .B = 1,
        .H = p->H,
        .Hkv = p->Hkv,
        .Lq = Lq,
        .Lk = Lk,
        .D = p->D,
        .dtype = p->dtype,
        .scale = p->scale,
        .softcap = p->softcap,
        .causal = p->causal,
        .q_stride = {0, p->q_stride[0], p->q_stride[1]},
        .k_stride = {0, p->k_stride[0], p->k_stride[1]},
        .v_stride = {0, p->v_stride[0], p->v_stride[1]},
        .o_stride = {0, p->o_stride[0], p->o_stride[1]},
        .mask_layout = p->mask_layout,
        .mask_head_div = p->mask_head_div,
        .bias_layout = p->bias_layout,
        .bias_dtype = p->bias_dtype,
        .bias_head_div = p->bias_head_div,
        .has_lse = p->has_lse,
        .lse_stride = {0, p->lse_stride[0], p->lse_stride[1]},
    };
    *da = (dm_fwd_args){0};
    da->q.data = at(a->q.data, p->dtype, q0 * p->q_stride[0]);
    da->k.data = at(a->k.data, p->dtype, k0 * p->k_stride[0]);
    da->v.data = at(a->v.data, p->dtype, k0 * p->v_stride[0]);
    da->o.data = at(a->o.data, p->dtype, q0 * p->o_stride[0]);
    if (p->has_lse)
        da->lse.data = at(a->lse.data, DM_F32, q0 * p->lse_stride[1]);
    int64_t t;
    if (p->mask_layout != DM_LAYOUT_NONE) {
        mb_view(p->mask_layout, p->mask_stride, q0, k0, &t, dp->mask_stride);
        da->mask.data = at(a->mask.data, DM_BOOL, t * p->mask_stride[0]);
    }
    if (p->bias_layout != DM_LAYOUT_NONE) {
        mb_view(p->bias_layout, p->bias_stride, q0, k0, &t, dp->bias_stride);
        da->bias.data = at(a->bias.data, p->bias_dtype, t * p->bias_stride[0]);
    }
}

/* window > 0: mask' first (ref_fwd_varlen_window.c), then the call without a window on it, checked
 * again (mask' replaces the mask argument), as dm_fwd_varlen does on the GPU. */
static dm_status window_attention(dm_ctx *ctx, const dm_fwd_varlen_args *host_args)
{
    dm_fwd_varlen_args plain;
    dm_fwd_varlen_plan plan;
    unsigned char *mask = NULL;
    dm_status st = dm_ref_fwd_varlen_window_mask(ctx, host_args, &plain, &mask);
    if (st == DM_OK)
        st = dm_fwd_varlen_check(ctx, "dm_ref_fwd_varlen", &plain, &plan);
    if (st == DM_OK)
        st = dm_ref_fwd_varlen(ctx, &plain, &plan);
    free(mask);
    return st;
}

dm_status dm_ref_fwd_varlen(dm_ctx *ctx, const dm_fwd_varlen_args *host_args,
                            const dm_fwd_varlen_plan *plan)
{
    const dm_fwd_varlen_plan *p = plan;
    const int32_t *cu_q = host_args->cu_seqlens_q.data, *cu_k = host_args->cu_seqlens_k.data;

    if (host_args->window > 0)
        return window_attention(ctx, host_args);
    dm_status st =
        dm_ref_check_cu_seqlens(ctx, "dm_ref_fwd_varlen", "cu_seqlens_q", cu_q, p->B, p->total_q);
    if (st == DM_OK)
        st = dm_ref_check_cu_seqlens(ctx, "dm_ref_fwd_varlen", "cu_seqlens_k", cu_k, p->B,
                                     p->total_k);
    for (int64_t b = 0; st == DM_OK && b < p->B; b++) {
        /* Clamped as the kernels clamp: rows past max_seqlen_q are not written, keys past
         * max_seqlen_k are ignored, and causal aligns the clamped lengths bottom-right. */
        int64_t q0 = cu_q[b], k0 = cu_k[b];
        int64_t Lq = cu_q[b + 1] - q0, Lk = cu_k[b + 1] - k0;
        if (Lq > p->max_seqlen_q)
            Lq = p->max_seqlen_q < 0 ? 0 : p->max_seqlen_q;
        if (Lk > p->max_seqlen_k)
            Lk = p->max_seqlen_k < 0 ? 0 : p->max_seqlen_k;
        if (Lq == 0)
            continue;
        dm_fwd_args da;
        dm_fwd_plan dp;
        sequence_view(host_args, p, q0, k0, Lq, Lk, &da, &dp);
        st = dm_ref_attention(ctx, &da, &dp); /* Lk = 0: every row empty, o = 0, lse = +inf */
    }
    return st;
}
