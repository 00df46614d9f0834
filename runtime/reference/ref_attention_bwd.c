/* ref_attention_bwd.c: SPEC §2 forward and §3 backward in float64 on dense double arrays, the
 * math core the CPU reference of dm_bwd (issue 16) will convert its tensors into. Every array is
 * contiguous: q, o, do, dq (B, Lq, H, D); k, v, dk, dv (B, Lk, Hkv, D); mask and bias expanded to
 * (B, H, Lq, Lk), and the gradient of the score bias likewise (dm_ref_reduce_bias_grad sums it to
 * a bias's broadcast shape). For tests and tools, not for speed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

#define AT4(b, x, y, z, n1, n2, n3) ((((b) * (n1) + (x)) * (n2) + (y)) * (n3) + (z))

/* Row (b, h, i): the scores before the mask (after bias and softcap) into s, visibility into
 * `visible`, and the softmax into p (all zero when no key is visible). Returns the row's lse
 * (+inf when no key is visible, SPEC §2). */
static double row_probs(const dm_ref_attn64 *a, int64_t b, int64_t h, int64_t i, double *s,
                        unsigned char *visible, double *p)
{
    const int64_t hk = h / (a->H / a->Hkv);
    const double *qi = a->q + AT4(b, i, h, 0, a->Lq, a->H, a->D);
    double m = -INFINITY;
    for (int64_t j = 0; j < a->Lk; j++) {
        const double *kj = a->k + AT4(b, j, hk, 0, a->Lk, a->Hkv, a->D);
        double dot = 0;
        for (int64_t d = 0; d < a->D; d++)
            dot += qi[d] * kj[d];
        double x = a->scale * dot;
        if (a->bias)
            x += a->bias[AT4(b, h, i, j, a->H, a->Lq, a->Lk)];
        if (a->softcap > 0)
            x = a->softcap * tanh(x / a->softcap);
        s[j] = x;
        visible[j] = !(a->causal && j > i + a->Lk - a->Lq) &&
                     (!a->mask || a->mask[AT4(b, h, i, j, a->H, a->Lq, a->Lk)]);
        if (visible[j] && x > m)
            m = x;
    }
    double sum = 0;
    for (int64_t j = 0; j < a->Lk; j++) {
        p[j] = visible[j] && m > -INFINITY ? exp(s[j] - m) : 0;
        sum += p[j];
    }
    if (sum == 0)
        return INFINITY;
    for (int64_t j = 0; j < a->Lk; j++)
        p[j] /= sum;
    return m + log(sum);
}

dm_status dm_ref_attention64_fwd(dm_ctx *ctx, const dm_ref_attn64 *a, double *o, double *lse)
{
    double *s = malloc((size_t)(a->Lk + 1) * sizeof *s);
    double *p = malloc((size_t)(a->Lk + 1) * sizeof *p);
    unsigned char *visible = malloc((size_t)(a->Lk + 1));
    dm_status st = DM_OK;
    if (!s || !p || !visible) {
        st = dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_attention64_fwd: out of memory for Lk = %lld",
                          (long long)a->Lk);
        goto out;
    }
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++)
            for (int64_t i = 0; i < a->Lq; i++) {
                const int64_t hk = h / (a->H / a->Hkv);
                double l = row_probs(a, b, h, i, s, visible, p);
                double *oi = o + AT4(b, i, h, 0, a->Lq, a->H, a->D);
                for (int64_t d = 0; d < a->D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < a->Lk; j++)
                        acc += p[j] * a->v[AT4(b, j, hk, d, a->Lk, a->Hkv, a->D)];
                    oi[d] = acc;
                }
                if (lse)
                    lse[AT4(b, h, i, 0, a->H, a->Lq, 1)] = l;
            }
out:
    free(visible);
    free(p);
    free(s);
    return st;
}

/* For row (b, h, i) with probabilities p and upstream gradient do_i:
 *   dp_j = do_i . v_j,  D_i = sum_j p_j dp_j (= do_i . o_i),  dz_j = p_j (dp_j - D_i)
 * is the gradient of the score after softcap; through softcap (z = c tanh(x / c)) it becomes
 * dx_j = dz_j (1 - tanh^2(x / c)), and x = scale q.k + bias gives dbias = dx, dq += scale dx k,
 * dk += scale dx q, dv_j += p_j do_i. A row with no visible key has p = 0: every term is 0. */
dm_status dm_ref_attention64_bwd(dm_ctx *ctx, const dm_ref_attn64 *a, const double *dout,
                                 dm_ref_grads64 *g)
{
    const int64_t n_q = a->B * a->Lq * a->H * a->D, n_k = a->B * a->Lk * a->Hkv * a->D;
    double *s = malloc((size_t)(a->Lk + 1) * sizeof *s);
    double *p = malloc((size_t)(a->Lk + 1) * sizeof *p);
    double *dp = malloc((size_t)(a->Lk + 1) * sizeof *dp);
    unsigned char *visible = malloc((size_t)(a->Lk + 1));
    dm_status st = DM_OK;
    if (!s || !p || !dp || !visible) {
        st = dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_attention64_bwd: out of memory for Lk = %lld",
                          (long long)a->Lk);
        goto out;
    }
    memset(g->dq, 0, (size_t)n_q * sizeof *g->dq);
    memset(g->dk, 0, (size_t)n_k * sizeof *g->dk);
    memset(g->dv, 0, (size_t)n_k * sizeof *g->dv);
    if (g->dscore)
        memset(g->dscore, 0, (size_t)(a->B * a->H * a->Lq * a->Lk) * sizeof *g->dscore);
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++)
            for (int64_t i = 0; i < a->Lq; i++) {
                const int64_t hk = h / (a->H / a->Hkv);
                row_probs(a, b, h, i, s, visible, p);
                const double *doi = dout + AT4(b, i, h, 0, a->Lq, a->H, a->D);
                const double *qi = a->q + AT4(b, i, h, 0, a->Lq, a->H, a->D);
                double *dqi = g->dq + AT4(b, i, h, 0, a->Lq, a->H, a->D);
                double row_d = 0;
                for (int64_t j = 0; j < a->Lk; j++) {
                    const double *vj = a->v + AT4(b, j, hk, 0, a->Lk, a->Hkv, a->D);
                    double acc = 0;
                    for (int64_t d = 0; d < a->D; d++)
                        acc += doi[d] * vj[d];
                    dp[j] = acc;
                    row_d += p[j] * acc;
                }
                for (int64_t j = 0; j < a->Lk; j++) {
                    if (p[j] == 0)
                        continue; /* masked, or underflowed: contributes exactly nothing */
                    double dx = p[j] * (dp[j] - row_d);
                    if (a->softcap > 0) {
                        double t = s[j] / a->softcap; /* s = c tanh(x / c): tanh(x / c) = s / c */
                        dx *= 1 - t * t;
                    }
                    if (g->dscore)
                        g->dscore[AT4(b, h, i, j, a->H, a->Lq, a->Lk)] = dx;
                    const double *kj = a->k + AT4(b, j, hk, 0, a->Lk, a->Hkv, a->D);
                    double *dkj = g->dk + AT4(b, j, hk, 0, a->Lk, a->Hkv, a->D);
                    double *dvj = g->dv + AT4(b, j, hk, 0, a->Lk, a->Hkv, a->D);
                    for (int64_t d = 0; d < a->D; d++) {
                        dqi[d] += a->scale * dx * kj[d];
                        dkj[d] += a->scale * dx * qi[d];
                        dvj[d] += p[j] * doi[d];
                    }
                }
            }
out:
    free(visible);
    free(dp);
    free(p);
    free(s);
    return st;
}

void dm_ref_reduce_bias_grad(const dm_ref_attn64 *a, const double *dscore, const int64_t shape[4],
                             double *dbias)
{
    const int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    const int64_t heads_per = a->H / shape[1]; /* H, Hkv or 1 stored heads */
    memset(dbias, 0, (size_t)n * sizeof *dbias);
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++)
            for (int64_t i = 0; i < a->Lq; i++)
                for (int64_t j = 0; j < a->Lk; j++) {
                    int64_t bb = shape[0] == 1 ? 0 : b, hh = h / heads_per;
                    int64_t ii = shape[2] == 1 ? 0 : i;
                    dbias[AT4(bb, hh, ii, j, shape[1], shape[2], shape[3])] +=
                        dscore[AT4(b, h, i, j, a->H, a->Lq, a->Lk)];
                }
}
