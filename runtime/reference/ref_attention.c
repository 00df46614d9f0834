/* ref_attention.c: the CPU reference of dense forward attention (SPEC §2) in float64, for a
 * plan dm_fwd_check accepted, without a window (ref_fwd.c dispatches). Reads host pointers only,
 * laid out as the plan says; it is for tests and tools, not for speed. */
#include <math.h>
#include <stdlib.h>

#include "half.h"
#include "reference.h"

int64_t dm_ref_mb_offset(const int64_t s[4], int64_t head_div, int64_t b, int64_t h, int64_t i,
                         int64_t j)
{
    return b * s[0] + (h / head_div) * s[1] + i * s[2] + j * s[3];
}

dm_status dm_ref_attention(dm_ctx *ctx, const dm_fwd_args *host_args, const dm_fwd_plan *plan)
{
    const dm_fwd_plan p = *plan;
    const dm_fwd_args *a = host_args;
    float *table = NULL, *qrow = NULL;
    double *s = NULL, *acc = NULL;
    unsigned char *visible = NULL;
    dm_status st = DM_OK;

    /* Every 16-bit code decoded once: the loops below read each K and V element many times. */
    table = malloc(65536 * sizeof *table);
    qrow = malloc((size_t)p.D * sizeof *qrow);
    acc = malloc((size_t)p.D * sizeof *acc);
    /* Lk = 0 (every row empty) still gets buffers: malloc(0) may return NULL */
    s = malloc((size_t)(p.Lk > 0 ? p.Lk : 1) * sizeof *s);
    visible = malloc((size_t)(p.Lk > 0 ? p.Lk : 1));
    if (!table || !qrow || !acc || !s || !visible) {
        st = dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_fwd: out of memory for Lk = %lld, D = %lld",
                          (long long)p.Lk, (long long)p.D);
        goto out;
    }
    for (uint32_t c = 0; c < 65536; c++)
        table[c] =
            p.dtype == DM_BF16 ? dm_bf16_to_float((uint16_t)c) : dm_half_to_float((uint16_t)c);

    const uint16_t *q = a->q.data, *k = a->k.data, *v = a->v.data;
    uint16_t *o = a->o.data;
    const unsigned char *mask = a->mask.data;
    const void *bias = a->bias.data;
    float *lse = a->lse.data;
    int64_t group = p.H / p.Hkv;
    double scale = p.scale, cap = p.softcap;

    for (int64_t b = 0; b < p.B; b++)
        for (int64_t h = 0; h < p.H; h++) {
            int64_t hk = h / group;
            /* k and v may be NULL when Lk = 0 (no elements): no key row is then formed */
            const uint16_t *kh = p.Lk ? k + b * p.k_stride[0] + hk * p.k_stride[2] : NULL;
            const uint16_t *vh = p.Lk ? v + b * p.v_stride[0] + hk * p.v_stride[2] : NULL;
            for (int64_t i = 0; i < p.Lq; i++) {
                const uint16_t *qi = q + b * p.q_stride[0] + i * p.q_stride[1] + h * p.q_stride[2];
                for (int64_t d = 0; d < p.D; d++)
                    qrow[d] = table[qi[d]];
                double m = -INFINITY;
                for (int64_t j = 0; j < p.Lk; j++) {
                    visible[j] = !(p.causal && j > i + p.Lk - p.Lq);
                    if (visible[j] && p.mask_layout != DM_LAYOUT_NONE)
                        visible[j] =
                            mask[dm_ref_mb_offset(p.mask_stride, p.mask_head_div, b, h, i, j)] != 0;
                    if (!visible[j])
                        continue;
                    const uint16_t *kj = kh + j * p.k_stride[1];
                    double dot = 0;
                    for (int64_t d = 0; d < p.D; d++)
                        dot += (double)qrow[d] * (double)table[kj[d]];
                    double x = scale * dot;
                    if (p.bias_layout != DM_LAYOUT_NONE) {
                        int64_t off = dm_ref_mb_offset(p.bias_stride, p.bias_head_div, b, h, i, j);
                        x += p.bias_dtype == DM_F32 ? (double)((const float *)bias)[off]
                                                    : (double)table[((const uint16_t *)bias)[off]];
                    }
                    if (cap > 0)
                        x = cap * tanh(x / cap);
                    s[j] = x;
                    if (x > m)
                        m = x;
                }
                uint16_t *oi = o + b * p.o_stride[0] + i * p.o_stride[1] + h * p.o_stride[2];
                float *lse_i = p.has_lse ? lse + b * p.lse_stride[0] + h * p.lse_stride[1] +
                                               i * p.lse_stride[2]
                                         : NULL;
                /* No visible key (or only -inf scores): o = 0 exactly, lse = +inf, never NaN. */
                if (m == -INFINITY) {
                    for (int64_t d = 0; d < p.D; d++)
                        oi[d] = 0;
                    if (lse_i)
                        *lse_i = INFINITY;
                    continue;
                }
                double sum = 0;
                for (int64_t d = 0; d < p.D; d++)
                    acc[d] = 0;
                for (int64_t j = 0; j < p.Lk; j++) {
                    if (!visible[j])
                        continue;
                    double e = exp(s[j] - m);
                    const uint16_t *vj = vh + j * p.v_stride[1];
                    sum += e;
                    for (int64_t d = 0; d < p.D; d++)
                        acc[d] += e * (double)table[vj[d]];
                }
                for (int64_t d = 0; d < p.D; d++)
                    oi[d] = dm_double_to_16(acc[d] / sum, p.dtype);
                if (lse_i)
                    *lse_i = (float)(m + log(sum));
            }
        }
out:
    free(visible);
    free(s);
    free(acc);
    free(qrow);
    free(table);
    return st;
}
