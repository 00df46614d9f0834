/* ref_bwd.c: dm_ref_bwd, the CPU reference of the dense backward (SPEC §3) over host tensors laid
 * out as dm_bwd_check accepts them: the tensors into float64 dense arrays, the float64 core
 * (ref_attention_bwd.c), the gradients back in their dtypes. For tests and tools. */
#include <math.h>
#include <stdlib.h>

#include "half.h"
#include "reference.h"

/* Element e (of D) of row (b, i, h) of a (B, L, H, D) tensor with plan strides s. */
static int64_t row_at(const int64_t s[3], int64_t b, int64_t i, int64_t h)
{
    return b * s[0] + i * s[1] + h * s[2];
}

/* A (B, L, H, D) tensor of dtype into a dense double array. */
static void rows_in(const void *t, const int64_t s[3], dm_dtype dtype, int64_t B, int64_t L,
                    int64_t H, int64_t D, double *out)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++)
                    out[((b * L + i) * H + h) * D + d] =
                        dm_ref_value_at(dtype, t, row_at(s, b, i, h) + d);
}

static void rows_out(const double *in, void *t, const int64_t s[3], dm_dtype dtype, int64_t B,
                     int64_t L, int64_t H, int64_t D)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++)
                    ((uint16_t *)t)[row_at(s, b, i, h) + d] =
                        dm_double_to_16(in[((b * L + i) * H + h) * D + d], dtype);
}

dm_status dm_ref_bwd_attention(dm_ctx *ctx, const char *call, const dm_bwd_args *host_args,
                               const dm_bwd_plan *plan)
{
    const dm_fwd_plan *f = &plan->fwd;
    const dm_bwd_args *a = host_args;
    dm_status st = DM_OK;
    const int64_t n_q = f->B * f->Lq * f->H * f->D, n_k = f->B * f->Lk * f->Hkv * f->D;
    const int64_t n_s = f->B * f->H * f->Lq * f->Lk;
    double *q = malloc((size_t)(n_q + 1) * sizeof *q),
           *dout = malloc((size_t)(n_q + 1) * sizeof *q);
    double *dq = malloc((size_t)(n_q + 1) * sizeof *q), *k = malloc((size_t)(n_k + 1) * sizeof *q);
    double *v = malloc((size_t)(n_k + 1) * sizeof *q), *dk = malloc((size_t)(n_k + 1) * sizeof *q);
    double *dv = malloc((size_t)(n_k + 1) * sizeof *q);
    double *bias = f->bias_layout ? malloc((size_t)(n_s + 1) * sizeof *q) : NULL;
    double *dscore = plan->has_dbias ? malloc((size_t)(n_s + 1) * sizeof *q) : NULL;
    unsigned char *mask = f->mask_layout ? malloc((size_t)(n_s + 1)) : NULL;
    double *dbias = NULL;
    const int64_t *bs = a->bias.shape;
    if (plan->has_dbias)
        dbias = malloc((size_t)(bs[0] * bs[1] * bs[2] * bs[3] + 1) * sizeof *dbias);
    if (!q || !dout || !dq || !k || !v || !dk || !dv || (f->bias_layout && !bias) ||
        (plan->has_dbias && (!dscore || !dbias)) || (f->mask_layout && !mask)) {
        st = dm_set_error(ctx, DM_ERR_NOMEM,
                          "%s: out of memory for B = %lld, H = %lld, Lq = %lld, Lk = %lld", call,
                          (long long)f->B, (long long)f->H, (long long)f->Lq, (long long)f->Lk);
        goto out;
    }
    rows_in(a->q.data, f->q_stride, f->dtype, f->B, f->Lq, f->H, f->D, q);
    rows_in(a->dout.data, plan->dout_stride, f->dtype, f->B, f->Lq, f->H, f->D, dout);
    rows_in(a->k.data, f->k_stride, f->dtype, f->B, f->Lk, f->Hkv, f->D, k);
    rows_in(a->v.data, f->v_stride, f->dtype, f->B, f->Lk, f->Hkv, f->D, v);
    /* mask and bias expanded to (B, H, Lq, Lk) through the plan's broadcast strides */
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t h = 0; h < f->H; h++)
            for (int64_t i = 0; i < f->Lq; i++)
                for (int64_t j = 0; j < f->Lk; j++) {
                    const int64_t e = ((b * f->H + h) * f->Lq + i) * f->Lk + j;
                    if (mask)
                        mask[e] = ((const unsigned char *)a->mask.data)[dm_ref_mb_offset(
                                      f->mask_stride, f->mask_head_div, b, h, i, j)] != 0;
                    if (bias)
                        bias[e] = dm_ref_value_at(
                            f->bias_dtype, a->bias.data,
                            dm_ref_mb_offset(f->bias_stride, f->bias_head_div, b, h, i, j));
                }
    dm_ref_attn64 at = {.B = f->B,
                        .H = f->H,
                        .Hkv = f->Hkv,
                        .Lq = f->Lq,
                        .Lk = f->Lk,
                        .D = f->D,
                        .scale = f->scale,
                        .softcap = f->softcap,
                        .causal = f->causal,
                        .q = q,
                        .k = k,
                        .v = v,
                        .bias = bias,
                        .mask = mask};
    dm_ref_grads64 g = {.dq = dq, .dk = dk, .dv = dv, .dscore = dscore};
    if ((st = dm_ref_attention64_bwd(ctx, &at, dout, &g)) != DM_OK)
        goto out;
    rows_out(dq, a->dq.data, plan->dq_stride, f->dtype, f->B, f->Lq, f->H, f->D);
    rows_out(dk, a->dk.data, plan->dk_stride, f->dtype, f->B, f->Lk, f->Hkv, f->D);
    rows_out(dv, a->dv.data, plan->dv_stride, f->dtype, f->B, f->Lk, f->Hkv, f->D);
    if (plan->has_dbias) {
        dm_ref_reduce_bias_grad(&at, dscore, bs, dbias);
        const int64_t *s = plan->dbias_stride;
        for (int64_t b = 0; b < bs[0]; b++)
            for (int64_t h = 0; h < bs[1]; h++)
                for (int64_t i = 0; i < bs[2]; i++)
                    for (int64_t j = 0; j < bs[3]; j++) {
                        const double x = dbias[((b * bs[1] + h) * bs[2] + i) * bs[3] + j];
                        const int64_t off = b * s[0] + h * s[1] + i * s[2] + j * s[3];
                        if (f->bias_dtype == DM_F32)
                            ((float *)a->dbias.data)[off] = (float)x;
                        else
                            ((uint16_t *)a->dbias.data)[off] = dm_double_to_16(x, f->bias_dtype);
                    }
    }
out:
    free(q);
    free(dout);
    free(dq);
    free(k);
    free(v);
    free(dk);
    free(dv);
    free(bias);
    free(dscore);
    free(mask);
    free(dbias);
    return st;
}

dm_status dm_ref_bwd(dm_ctx *ctx, const dm_bwd_args *host_args)
{
    dm_bwd_plan plan;
    dm_status st = dm_bwd_check(ctx, "dm_ref_bwd", host_args, &plan);
    return st != DM_OK ? st : dm_ref_bwd_attention(ctx, "dm_ref_bwd", host_args, &plan);
}
