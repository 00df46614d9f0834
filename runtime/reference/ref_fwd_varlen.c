/* ref_fwd_varlen.c: the CPU reference of dm_fwd_varlen (SPEC §5) in float64, on host buffers (the
 * cu_seqlens included). Each sequence becomes a dense B = 1 problem, a view into the packed
 * buffers, handed to dm_ref_attention: one attention reference, so varlen and dense cannot
 * disagree about the math. The views serve the backward's reference too (ref_bwd_varlen.c). For
 * tests and tools; production code never calls it. */
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

void *dm_ref_varlen_rows(void *data, dm_dtype dtype, const int64_t vs[2], int64_t first_token,
                         int64_t ds[3])
{
    ds[0] = 0;
    ds[1] = vs[0];
    ds[2] = vs[1];
    return at(data, dtype, first_token * vs[0]);
}

/* Query layout: rows start at the sequence's first query, one row per query, keys contiguous.
 * Key layout: one value per key, the same for every query (row stride 0), a key's own row apart. */
void *dm_ref_varlen_mb_view(void *data, dm_dtype dtype, dm_layout layout, const int64_t vs[3],
                            const dm_ref_varlen_seq *seq, int64_t ds[4])
{
    ds[0] = 0;
    ds[1] = vs[1];
    ds[2] = layout == DM_LAYOUT_Q ? vs[0] : 0;
    ds[3] = vs[2];
    return at(data, dtype, (layout == DM_LAYOUT_Q ? seq->q0 : seq->k0) * vs[0]);
}

void dm_ref_varlen_view(const dm_fwd_varlen_args *a, const dm_fwd_varlen_plan *p,
                        const dm_ref_varlen_seq *seq, dm_fwd_args *da, dm_fwd_plan *dp)
{
    *dp = (dm_fwd_plan){
        .B = 1,
        .H = p->H,
        .Hkv = p->Hkv,
        .Lq = seq->Lq,
        .Lk = seq->Lk,
        .D = p->D,
        .dtype = p->dtype,
        .scale = p->scale,
        .softcap = p->softcap,
        .causal = p->causal,
        .mask_layout = p->mask_layout,
        .mask_head_div = p->mask_head_div,
        .bias_layout = p->bias_layout,
        .bias_dtype = p->bias_dtype,
        .bias_head_div = p->bias_head_div,
        .has_lse = p->has_lse,
        .lse_stride = {0, p->lse_stride[0], p->lse_stride[1]},
    };
    *da = (dm_fwd_args){0};
    da->q.data = dm_ref_varlen_rows(a->q.data, p->dtype, p->q_stride, seq->q0, dp->q_stride);
    da->k.data = dm_ref_varlen_rows(a->k.data, p->dtype, p->k_stride, seq->k0, dp->k_stride);
    da->v.data = dm_ref_varlen_rows(a->v.data, p->dtype, p->v_stride, seq->k0, dp->v_stride);
    da->o.data = dm_ref_varlen_rows(a->o.data, p->dtype, p->o_stride, seq->q0, dp->o_stride);
    if (p->has_lse)
        da->lse.data = at(a->lse.data, DM_F32, seq->q0 * p->lse_stride[1]);
    if (p->mask_layout != DM_LAYOUT_NONE)
        da->mask.data = dm_ref_varlen_mb_view(a->mask.data, DM_BOOL, p->mask_layout, p->mask_stride,
                                              seq, dp->mask_stride);
    if (p->bias_layout != DM_LAYOUT_NONE)
        da->bias.data = dm_ref_varlen_mb_view(a->bias.data, p->bias_dtype, p->bias_layout,
                                              p->bias_stride, seq, dp->bias_stride);
}

/* Clamped as the kernels clamp: rows past max_seqlen_q are not written, keys past max_seqlen_k
 * are ignored, and causal aligns the clamped lengths bottom-right. */
dm_ref_varlen_seq dm_ref_varlen_sequence(const dm_fwd_varlen_plan *p, const int32_t *cu_q,
                                         const int32_t *cu_k, int64_t b)
{
    dm_ref_varlen_seq s = {.q0 = cu_q[b], .k0 = cu_k[b]};
    s.Lq = cu_q[b + 1] - s.q0;
    s.Lk = cu_k[b + 1] - s.k0;
    if (s.Lq > p->max_seqlen_q)
        s.Lq = p->max_seqlen_q < 0 ? 0 : p->max_seqlen_q;
    if (s.Lk > p->max_seqlen_k)
        s.Lk = p->max_seqlen_k < 0 ? 0 : p->max_seqlen_k;
    return s;
}

dm_status dm_ref_check_varlen_seqlens(dm_ctx *ctx, const char *call, const dm_fwd_varlen_plan *p,
                                      const int32_t *cu_q, const int32_t *cu_k)
{
    dm_status st = dm_ref_check_cu_seqlens(ctx, call, "cu_seqlens_q", cu_q, p->B, p->total_q);
    if (st == DM_OK)
        st = dm_ref_check_cu_seqlens(ctx, call, "cu_seqlens_k", cu_k, p->B, p->total_k);
    return st;
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
    dm_status st = dm_ref_check_varlen_seqlens(ctx, "dm_ref_fwd_varlen", p, cu_q, cu_k);
    for (int64_t b = 0; st == DM_OK && b < p->B; b++) {
        const dm_ref_varlen_seq seq = dm_ref_varlen_sequence(p, cu_q, cu_k, b);
        if (seq.Lq == 0)
            continue;
        dm_fwd_args da;
        dm_fwd_plan dp;
        dm_ref_varlen_view(host_args, p, &seq, &da, &dp);
        st = dm_ref_attention(ctx, &da, &dp); /* Lk = 0: every row empty, o = 0, lse = +inf */
    }
    return st;
}
