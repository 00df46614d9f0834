/* varlen_case.c: the varlen problem builders the GPU tests share (varlen_case.h). Inputs only:
 * no kernel runs here and no reference is computed. */
#include "varlen_case.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vl_fill16(uint16_t *buf, dm_dtype t, size_t n, uint64_t *s)
{
    const int mant_bits = t == DM_BF16 ? 7 : 10, one_exp = t == DM_BF16 ? 127 : 15;
    for (size_t i = 0; i < n; i += 4) {
        uint64_t r = gpu_rng_next(s);
        for (size_t j = i; j < i + 4 && j < n; j++, r >>= 16) {
            unsigned sign = (unsigned)(r >> 15) & 1, e = (unsigned)(r >> 12) & 7;
            unsigned mant = (unsigned)r & ((1u << mant_bits) - 1);
            buf[j] = (uint16_t)(sign << 15 | (unsigned)(one_exp - 1 - e) << mant_bits | mant);
        }
    }
}

void vl_twin(gpu_twin *w, dm_dtype t, int rank, const int64_t *shape, int64_t alloc_rows)
{
    int64_t strides[DM_MAX_RANK], n = 1;
    for (int d = rank - 1; d >= 0; d--) {
        strides[d] = n;
        n *= d > 0 ? shape[d] : 1;
    }
    gpu_twin_alloc(w, t, rank, shape, strides, (size_t)((alloc_rows > 0 ? alloc_rows : 1) * n), 0);
}

void vl_mb_twin(gpu_twin *w, dm_dtype t, dm_layout l, const int64_t *shape, bool head_major)
{
    if (l == DM_LAYOUT_K && head_major) {
        int64_t st[2] = {1, shape[0] > 0 ? shape[0] : 1};
        gpu_twin_alloc(w, t, 2, shape, st, (size_t)(shape[0] * shape[1] + 1), 0);
        return;
    }
    vl_twin(w, t, l == DM_LAYOUT_Q ? 3 : 2, shape, shape[0]);
}

size_t vl_mb_index(const gpu_twin *w, int64_t t, int64_t e, int64_t row_elems)
{
    if (w->host.rank == 2)
        return (size_t)(t * w->host.strides[0] + e * w->host.strides[1]);
    return (size_t)(t * row_elems + e);
}

int vl_seq_of(const int32_t *cu, int B, int64_t t)
{
    for (int b = 0; b < B; b++)
        if (t < cu[b + 1])
            return b;
    return B;
}

void vl_describe(const vl_case *c, char *buf, size_t n)
{
    static const char *lay[] = {"none", "q", "k"};
    int w = snprintf(buf, n,
                     "H=%d Hkv=%d D=%d %s mask=%s(%d, p=%.2f) bias=%s(%d%s) causal=%d softcap=%g "
                     "max=%lld/%lld window=%d head_major=%d tail=%d/%d lens(q,k)=",
                     c->H, c->Hkv, c->D, dm_dtype_name(c->dtype), lay[c->mask], c->mask_heads,
                     c->mask_density, lay[c->bias], c->bias_heads, c->bias_f32 ? ", f32" : "",
                     c->causal, (double)c->softcap, (long long)c->max_q, (long long)c->max_k,
                     c->window, c->head_major, c->tail_q, c->tail_k);
    for (int b = 0; b < c->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(buf + w, n - (size_t)w, " %d,%d", c->len_q[b], c->len_k[b]);
}

void vl_free(vl_data *d)
{
    gpu_twin_free(&d->q);
    gpu_twin_free(&d->k);
    gpu_twin_free(&d->v);
    gpu_twin_free(&d->o);
    gpu_twin_free(&d->lse);
    gpu_twin_free(&d->mask);
    gpu_twin_free(&d->bias);
    gpu_twin_free(&d->cu_q);
    gpu_twin_free(&d->cu_k);
    free(d->o_ref);
    free(d->lse_ref);
    memset(d, 0, sizeof *d);
}

void vl_build(vl_data *d, const vl_case *c, uint64_t seed)
{
    uint64_t s = seed ? seed : 1;
    int64_t longest_q = 0, longest_k = 0;
    memset(d, 0, sizeof *d);
    for (int b = 0; b < c->B; b++) {
        d->cu_q_host[b + 1] = d->cu_q_host[b] + c->len_q[b];
        d->cu_k_host[b + 1] = d->cu_k_host[b] + c->len_k[b];
        longest_q = c->len_q[b] > longest_q ? c->len_q[b] : longest_q;
        longest_k = c->len_k[b] > longest_k ? c->len_k[b] : longest_k;
    }
    d->total_q = d->cu_q_host[c->B] + c->tail_q;
    d->total_k = d->cu_k_host[c->B] + c->tail_k;
    d->max_q = c->max_q ? c->max_q : longest_q;
    d->max_k = c->max_k ? c->max_k : longest_k;
    int64_t H = c->H, Hkv = c->Hkv, D = c->D;

    int64_t qs[3] = {d->total_q, H, D}, ks[3] = {d->total_k, Hkv, D};
    vl_twin(&d->q, c->dtype, 3, qs, d->total_q);
    vl_twin(&d->o, c->dtype, 3, qs, d->total_q + VL_GUARD_ROWS);
    vl_twin(&d->k, c->dtype, 3, ks, d->total_k);
    vl_twin(&d->v, c->dtype, 3, ks, d->total_k);
    /* lse (H, total_q) with VL_GUARD_ROWS poisoned columns after each head's row */
    int64_t ls[2] = {H, d->total_q}, lst[2] = {d->total_q + VL_GUARD_ROWS, 1};
    d->lse_elems = (size_t)(H * lst[0]);
    gpu_twin_alloc(&d->lse, DM_F32, 2, ls, lst, d->lse_elems, 0);
    d->o_elems = (size_t)((d->total_q + VL_GUARD_ROWS) * H * D);
    int64_t cs[1] = {c->B + 1};
    vl_twin(&d->cu_q, DM_I32, 1, cs, c->B + 1);
    vl_twin(&d->cu_k, DM_I32, 1, cs, c->B + 1);
    memcpy(d->cu_q.host.data, d->cu_q_host, sizeof(int32_t) * (size_t)(c->B + 1));
    memcpy(d->cu_k.host.data, d->cu_k_host, sizeof(int32_t) * (size_t)(c->B + 1));

    vl_fill16(d->q.host.data, c->dtype, (size_t)(d->total_q * H * D), &s);
    vl_fill16(d->k.host.data, c->dtype, (size_t)(d->total_k * Hkv * D), &s);
    vl_fill16(d->v.host.data, c->dtype, (size_t)(d->total_k * Hkv * D), &s);
    if (c->mask != DM_LAYOUT_NONE) {
        int64_t ms[3] = {c->mask == DM_LAYOUT_Q ? d->total_q : d->total_k, c->mask_heads, d->max_k};
        vl_mb_twin(&d->mask, DM_BOOL, c->mask, ms, c->head_major);
        unsigned char *m = d->mask.host.data;
        int64_t row = c->mask == DM_LAYOUT_Q ? d->max_k : 1;
        for (int64_t t = 0; t < ms[0]; t++) {
            int b = c->mask == DM_LAYOUT_Q ? vl_seq_of(d->cu_q_host, c->B, t) : 0;
            for (int64_t e = 0; e < c->mask_heads * row; e++) {
                bool past = c->mask == DM_LAYOUT_Q && (b == c->B || e % row >= c->len_k[b]);
                bool on = past || (gpu_uniform(&s) + 1) / 2 < c->mask_density;
                /* any non-zero byte is true */
                m[vl_mb_index(&d->mask, t, e, c->mask_heads * row)] =
                    on ? (unsigned char)(1 + gpu_rng_next(&s) % 255) : 0;
            }
        }
    }
    if (c->bias != DM_LAYOUT_NONE) {
        dm_dtype bt = c->bias_f32 ? DM_F32 : c->dtype;
        int64_t bs[3] = {c->bias == DM_LAYOUT_Q ? d->total_q : d->total_k, c->bias_heads, d->max_k};
        vl_mb_twin(&d->bias, bt, c->bias, bs, c->head_major);
        int64_t row = c->bias == DM_LAYOUT_Q ? d->max_k : 1;
        for (int64_t t = 0; t < bs[0]; t++) {
            int b = c->bias == DM_LAYOUT_Q ? vl_seq_of(d->cu_q_host, c->B, t) : 0;
            for (int64_t e = 0; e < c->bias_heads * row; e++) {
                bool past = c->bias == DM_LAYOUT_Q && (b == c->B || e % row >= c->len_k[b]);
                gpu_put(d->bias.host.data, bt, vl_mb_index(&d->bias, t, e, c->bias_heads * row),
                        past ? VL_HOT_BIAS : 2 * gpu_uniform(&s));
            }
        }
    }
    gpu_twin_upload(&d->q);
    gpu_twin_upload(&d->k);
    gpu_twin_upload(&d->v);
    gpu_twin_upload(&d->cu_q);
    gpu_twin_upload(&d->cu_k);
    if (d->mask.dev_base)
        gpu_twin_upload(&d->mask);
    if (d->bias.dev_base)
        gpu_twin_upload(&d->bias);
}

dm_fwd_varlen_args vl_args(const vl_data *d, const vl_case *c, bool host)
{
#define PICK(w) (host ? (w).host : (w).dev)
    dm_fwd_varlen_args a = {.q = PICK(d->q),
                            .k = PICK(d->k),
                            .v = PICK(d->v),
                            .o = PICK(d->o),
                            .lse = PICK(d->lse),
                            .cu_seqlens_q = PICK(d->cu_q),
                            .cu_seqlens_k = PICK(d->cu_k),
                            .max_seqlen_q = d->max_q,
                            .max_seqlen_k = d->max_k,
                            .causal = c->causal,
                            .softcap = c->softcap,
                            .window = c->window};
    if (d->mask.dev_base)
        a.mask = PICK(d->mask);
    if (d->bias.dev_base)
        a.bias = PICK(d->bias);
#undef PICK
    return a;
}
