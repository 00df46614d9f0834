/* wmask_varlen_case.h: one dm_window_mask_varlen problem on host buffers, for the CPU test
 * (test_window_mask_varlen.c) and the GPU test (test_gpu_window_varlen.c): sequence lengths,
 * layouts and heads in, random bias and mask, cu_seqlens and a poisoned out of the layout the
 * helper must write. Query-layout columns past a sequence's keys hold what must never be read:
 * a bias of +30 (it would win every top-k), a true mask. Header only. */
#ifndef DM_WMASK_VARLEN_CASE_H
#define DM_WMASK_VARLEN_CASE_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmattn.h"
#include "gen.h"
#include "half.h"

#define WV_MAX_B 16
#define WV_POISON 0x5a
#define WV_HOT_BIAS 30.0

typedef struct wv_spec {
    int B;
    int len_q[WV_MAX_B], len_k[WV_MAX_B];
    dm_dtype dtype;          /* the bias's: f16, bf16 or f32 */
    dm_layout bias, mask;    /* bias Q or K; mask NONE, Q or K */
    int64_t bias_heads, mask_heads;
    bool head_major;         /* key-based bias/mask stored (Hm, total_k): strides (1, total_k) */
    int window, relu, block_size;
    int distinct;            /* > 0: bias values from that many integers (ties); 0: spread */
    bool nans;
    int percent_true;        /* of the mask */
    bool has_min;
    double min_value;
} wv_spec;

typedef struct wv_case {
    wv_spec s;
    int32_t cu_q[WV_MAX_B + 1], cu_k[WV_MAX_B + 1];
    int64_t total_q, total_k, max_q, max_k, heads;
    dm_layout out_layout;
    dm_tensor bias, mask, out, cu_seqlens_q, cu_seqlens_k; /* host descriptors */
    size_t bias_elems, mask_elems, out_elems;             /* of the allocations */
} wv_case;

static inline uint64_t wv_rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static inline size_t wv_elem_bytes(dm_dtype t)
{
    return t == DM_F32 || t == DM_I32 ? 4 : t == DM_BOOL ? 1 : 2; /* cu_seqlens: int32 */
}

static inline void wv_put(dm_dtype t, void *buf, size_t i, double v)
{
    if (t == DM_F32)
        ((float *)buf)[i] = (float)v;
    else if (t == DM_F16)
        ((uint16_t *)buf)[i] = dm_float_to_half((float)v);
    else
        ((uint16_t *)buf)[i] = dm_float_to_bf16((float)v);
}

/* A tensor of layout l (rank 3 (total_q, heads, max_k) or rank 2 (total_k, heads), packed or
 * head-major), data allocated (never 0 bytes); *elems is the allocation's element count. */
static inline dm_tensor wv_tensor(const wv_case *c, dm_layout l, int64_t heads, dm_dtype t,
                                  bool head_major, size_t *elems)
{
    dm_tensor x = {.dtype = t};
    if (l == DM_LAYOUT_Q) {
        x.rank = 3;
        x.shape[0] = c->total_q;
        x.shape[1] = heads;
        x.shape[2] = c->max_k;
        x.strides[0] = heads * c->max_k;
        x.strides[1] = c->max_k;
        x.strides[2] = 1;
        *elems = (size_t)(c->total_q * heads * c->max_k);
    } else {
        x.rank = 2;
        x.shape[0] = c->total_k;
        x.shape[1] = heads;
        x.strides[0] = head_major ? 1 : heads;
        x.strides[1] = head_major ? c->total_k : 1;
        *elems = (size_t)(c->total_k * heads);
    }
    x.data = malloc(*elems * wv_elem_bytes(t) + 16);
    return x;
}

/* The sequence holding query token t, or -1. */
static inline int wv_seq_of(const wv_case *c, int64_t t)
{
    for (int b = 0; b < c->s.B; b++)
        if (c->cu_q[b] <= t && t < c->cu_q[b + 1])
            return b;
    return -1;
}

/* Element (token, head, key j) of a tensor: row = the query token (Q) or the sequence's first
 * key (K). */
static inline int64_t wv_at(const dm_tensor *x, int64_t token, int64_t h, int64_t j)
{
    if (x->rank == 3)
        return token * x->strides[0] + (x->shape[1] == 1 ? 0 : h) * x->strides[1] + j;
    return (token + j) * x->strides[0] + (x->shape[1] == 1 ? 0 : h) * x->strides[1];
}

static inline void wv_build(wv_case *c, const wv_spec *s, uint64_t seed)
{
    uint64_t r = seed | 1;
    memset(c, 0, sizeof *c);
    c->s = *s;
    for (int b = 0; b < s->B; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + s->len_q[b];
        c->cu_k[b + 1] = c->cu_k[b] + s->len_k[b];
        c->max_q = s->len_q[b] > c->max_q ? s->len_q[b] : c->max_q;
        c->max_k = s->len_k[b] > c->max_k ? s->len_k[b] : c->max_k;
    }
    c->total_q = c->cu_q[s->B];
    c->total_k = c->cu_k[s->B];
    c->heads = s->mask == DM_LAYOUT_NONE || s->mask_heads == 1 ? s->bias_heads : s->mask_heads;
    c->out_layout = s->bias == DM_LAYOUT_Q || s->mask == DM_LAYOUT_Q ? DM_LAYOUT_Q : DM_LAYOUT_K;
    c->cu_seqlens_q = (dm_tensor){c->cu_q, DM_I32, 1, {s->B + 1}, {1}};
    c->cu_seqlens_k = (dm_tensor){c->cu_k, DM_I32, 1, {s->B + 1}, {1}};

    c->bias = wv_tensor(c, s->bias, s->bias_heads, s->dtype, s->head_major, &c->bias_elems);
    for (size_t i = 0; i < c->bias_elems; i++) {
        double v = s->distinct ? (double)(int)(wv_rng(&r) % (uint64_t)s->distinct) - s->distinct / 2
                               : (double)(int64_t)(wv_rng(&r) >> 11) / 4503599627370496.0 * 8 - 4;
        if (s->nans && wv_rng(&r) % 23 == 0)
            v = NAN;
        wv_put(s->dtype, c->bias.data, i, v);
    }
    if (s->mask != DM_LAYOUT_NONE) {
        c->mask = wv_tensor(c, s->mask, s->mask_heads, DM_BOOL, s->head_major, &c->mask_elems);
        unsigned char *m = c->mask.data;
        for (size_t i = 0; i < c->mask_elems; i++)
            m[i] = wv_rng(&r) % 100 < (uint64_t)s->percent_true
                       ? (unsigned char)(1 + wv_rng(&r) % 250)
                       : 0;
    }
    /* query-layout columns past the sequence's keys: never to be read */
    for (int64_t t = 0; t < c->total_q; t++) {
        int b = wv_seq_of(c, t);
        for (int64_t j = b < 0 ? 0 : s->len_k[b]; j < c->max_k; j++)
            for (int64_t h = 0; h < c->heads; h++) {
                if (s->bias == DM_LAYOUT_Q)
                    wv_put(s->dtype, c->bias.data, (size_t)wv_at(&c->bias, t, h, j), WV_HOT_BIAS);
                if (s->mask == DM_LAYOUT_Q)
                    ((unsigned char *)c->mask.data)[wv_at(&c->mask, t, h, j)] = 1;
            }
    }
    c->out = wv_tensor(c, c->out_layout, c->heads, DM_BOOL, false, &c->out_elems);
    memset(c->out.data, WV_POISON, c->out_elems + 1);
}

static inline dm_window_mask_varlen_args wv_args(const wv_case *c)
{
    dm_window_mask_varlen_args a = {
        .bias = c->bias, .mask = c->mask, .out = c->out, .cu_seqlens_q = c->cu_seqlens_q,
        .cu_seqlens_k = c->cu_seqlens_k, .total_q = c->total_q, .total_k = c->total_k,
        .max_seqlen_q = c->max_q, .max_seqlen_k = c->max_k, .window = c->s.window,
        .relu = c->s.relu, .block_size = c->s.block_size, .has_min_value = c->s.has_min,
        .min_value = c->s.min_value};
    return a;
}

static inline void wv_free(wv_case *c)
{
    free(c->bias.data);
    free(c->mask.data);
    free(c->out.data);
    memset(c, 0, sizeof *c);
}

static inline void wv_describe(const wv_case *c, char *buf, size_t n)
{
    static const char *lay[] = {"none", "q", "k"};
    const wv_spec *s = &c->s;
    int w = snprintf(buf, n,
                     "%s bias=%s(%lld) mask=%s(%lld, p=%d)%s window=%d relu=%d block=%d "
                     "distinct=%d nans=%d min=%s%g lens(q,k)=",
                     dm_dtype_name(s->dtype), lay[s->bias], (long long)s->bias_heads,
                     lay[s->mask], (long long)s->mask_heads, s->percent_true,
                     s->head_major ? " head-major" : "", s->window, s->relu, s->block_size,
                     s->distinct, s->nans, s->has_min ? "" : "default ",
                     s->has_min ? s->min_value : 0.0);
    for (int b = 0; b < s->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(buf + w, n - (size_t)w, " %d,%d", s->len_q[b], s->len_k[b]);
}

#endif
