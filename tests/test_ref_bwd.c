/* test_ref_bwd.c: the float64 backward core (reference/ref_attention_bwd.c) against central
 * finite differences of its own forward, on shapes small enough to perturb every input element:
 * plain, causal with Lq < Lk and Lq > Lk, GQA, softcap, each bias broadcast (the gradient summed
 * to the bias's shape), and masks leaving whole rows empty (zero gradients, never NaN). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "harness.h"
#include "reference.h"

#define FD_EPS 1e-5
#define FD_TOL 1e-6 /* |analytic - numeric| <= FD_TOL x (1 + |analytic|) */

typedef struct fd_case {
    int64_t B, H, Hkv, Lq, Lk, D;
    double softcap;
    bool causal;
    int64_t bias_shape[4]; /* {0} = no bias */
    double mask_density;   /* 0: no mask; else each entry visible with this probability */
    int64_t empty_row;     /* >= 0: every key of this query row (all b, h) masked */
} fd_case;

typedef struct fd_data {
    dm_ref_attn64 a;
    double *q, *k, *v, *bias_small, *bias, *dout, *o;
    unsigned char *mask;
    int64_t n_q, n_k, n_bias_small, n_full;
} fd_data;

static uint64_t rng = 88172645463325252ull;

static double uniform(void) /* [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2 - 1;
}

/* The bias of the small shape expanded to (B, H, Lq, Lk), as the kernels read it. */
static void expand_bias(const fd_case *c, fd_data *f)
{
    const int64_t *s = c->bias_shape, heads_per = c->H / (s[1] ? s[1] : 1);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < c->Lq; i++)
                for (int64_t j = 0; j < c->Lk; j++) {
                    int64_t bb = s[0] == 1 ? 0 : b, hh = h / heads_per, ii = s[2] == 1 ? 0 : i;
                    f->bias[((b * c->H + h) * c->Lq + i) * c->Lk + j] =
                        f->bias_small[((bb * s[1] + hh) * s[2] + ii) * s[3] + j];
                }
}

static double *filled(int64_t n, double scale)
{
    double *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int64_t e = 0; e < n; e++)
        x[e] = scale * uniform();
    return x;
}

static void fd_build(const fd_case *c, fd_data *f)
{
    memset(f, 0, sizeof *f);
    f->n_q = c->B * c->Lq * c->H * c->D;
    f->n_k = c->B * c->Lk * c->Hkv * c->D;
    f->n_full = c->B * c->H * c->Lq * c->Lk;
    f->q = filled(f->n_q, 1);
    f->k = filled(f->n_k, 1);
    f->v = filled(f->n_k, 1);
    f->dout = filled(f->n_q, 1);
    f->o = filled(f->n_q, 0);
    f->a = (dm_ref_attn64){.B = c->B,
                           .H = c->H,
                           .Hkv = c->Hkv,
                           .Lq = c->Lq,
                           .Lk = c->Lk,
                           .D = c->D,
                           .scale = 1 / sqrt((double)c->D),
                           .softcap = c->softcap,
                           .causal = c->causal,
                           .q = f->q,
                           .k = f->k,
                           .v = f->v};
    if (c->bias_shape[3]) {
        const int64_t *s = c->bias_shape;
        f->n_bias_small = s[0] * s[1] * s[2] * s[3];
        f->bias_small = filled(f->n_bias_small, 2);
        f->bias = filled(f->n_full, 0);
        expand_bias(c, f);
        f->a.bias = f->bias;
    }
    if (c->mask_density > 0) {
        f->mask = malloc((size_t)f->n_full);
        ck_assert_ptr_nonnull(f->mask);
        for (int64_t e = 0; e < f->n_full; e++) {
            int64_t i = e / c->Lk % c->Lq;
            f->mask[e] = i != c->empty_row && (uniform() + 1) / 2 < c->mask_density;
        }
        f->a.mask = f->mask;
    }
}

static void fd_free(fd_data *f)
{
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->bias_small);
    free(f->bias);
    free(f->dout);
    free(f->o);
    free(f->mask);
}

/* sum(o * dout) at the current inputs */
static double loss(dm_ctx *ctx, fd_data *f)
{
    ck_assert_int_eq(dm_ref_attention64_fwd(ctx, &f->a, f->o, NULL), DM_OK);
    double l = 0;
    for (int64_t e = 0; e < f->n_q; e++)
        l += f->o[e] * f->dout[e];
    return l;
}

/* Every element of x (n of them) perturbed by +-FD_EPS against grad; `expand` re-derives the
 * expanded bias after a change of the small one. Returns the elements checked. */
static int64_t check_grad(dm_ctx *ctx, const fd_case *c, fd_data *f, double *x, int64_t n,
                          const double *grad, const char *name, bool expand)
{
    for (int64_t e = 0; e < n; e++) {
        const double keep = x[e];
        x[e] = keep + FD_EPS;
        if (expand)
            expand_bias(c, f);
        const double up = loss(ctx, f);
        x[e] = keep - FD_EPS;
        if (expand)
            expand_bias(c, f);
        const double down = loss(ctx, f);
        x[e] = keep;
        if (expand)
            expand_bias(c, f);
        const double numeric = (up - down) / (2 * FD_EPS);
        ck_assert_msg(!isnan(grad[e]), "%s[%lld] is NaN", name, (long long)e);
        ck_assert_msg(fabs(grad[e] - numeric) <= FD_TOL * (1 + fabs(grad[e])),
                      "%s[%lld]: analytic %.12g, finite differences %.12g", name, (long long)e,
                      grad[e], numeric);
    }
    return n;
}

/* The backward's gradients against finite differences for every input element; returns the
 * largest |gradient| of the empty row (-1 when the case has none). */
static double fd_check(const fd_case *c)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    fd_data f;
    fd_build(c, &f);
    double *dq = filled(f.n_q, 0), *dk = filled(f.n_k, 0), *dv = filled(f.n_k, 0);
    double *dscore = filled(f.n_full, 0), *dbias = filled(f.n_bias_small, 0);
    dm_ref_grads64 g = {.dq = dq, .dk = dk, .dv = dv, .dscore = dscore};
    ck_assert_int_eq(dm_ref_attention64_bwd(ctx, &f.a, f.dout, &g), DM_OK);
    int64_t checked = check_grad(ctx, c, &f, f.q, f.n_q, dq, "dq", false);
    checked += check_grad(ctx, c, &f, f.k, f.n_k, dk, "dk", false);
    checked += check_grad(ctx, c, &f, f.v, f.n_k, dv, "dv", false);
    if (f.bias_small) {
        dm_ref_reduce_bias_grad(&f.a, dscore, c->bias_shape, dbias);
        checked += check_grad(ctx, c, &f, f.bias_small, f.n_bias_small, dbias, "dbias", true);
    }
    ck_assert_int_eq(checked, f.n_q + 2 * f.n_k + f.n_bias_small); /* every element perturbed */
    for (int64_t e = 0; f.mask && e < f.n_full; e++)
        ck_assert_msg(f.mask[e] || dscore[e] == 0, "a masked score's gradient is %g", dscore[e]);
    double empty_max = -1;
    if (c->empty_row >= 0) {
        empty_max = 0;
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->H; h++)
                for (int64_t d = 0; d < c->D; d++) {
                    double x = dq[((b * c->Lq + c->empty_row) * c->H + h) * c->D + d];
                    empty_max = fmax(empty_max, fabs(x));
                }
    }
    free(dq);
    free(dk);
    free(dv);
    free(dscore);
    free(dbias);
    fd_free(&f);
    dm_ctx_destroy(ctx);
    return empty_max;
}

START_TEST(gradients_match_finite_differences_without_bias_or_mask)
{
    fd_case c = {.B = 2, .H = 2, .Hkv = 2, .Lq = 3, .Lk = 5, .D = 4, .empty_row = -1};
    fd_check(&c);
}
END_TEST

START_TEST(a_full_bias_with_causal_lq_below_lk_matches)
{
    fd_case c = {.B = 2,
                 .H = 2,
                 .Hkv = 1,
                 .Lq = 3,
                 .Lk = 5,
                 .D = 4,
                 .causal = true,
                 .bias_shape = {2, 2, 3, 5},
                 .empty_row = -1};
    fd_check(&c);
}
END_TEST

/* Lq > Lk, causal bottom-right: query rows 0 and 1 see no key at all. */
START_TEST(causal_rows_without_a_key_get_zero_gradients)
{
    fd_case c = {.B = 1,
                 .H = 2,
                 .Hkv = 2,
                 .Lq = 5,
                 .Lk = 3,
                 .D = 4,
                 .causal = true,
                 .bias_shape = {1, 2, 5, 3},
                 .empty_row = 0};
    ck_assert(fd_check(&c) == 0);
}
END_TEST

/* The key bias (1, 1, 1, Lk) sums over batch, heads and queries; softcap's derivative in the
 * chain. */
START_TEST(a_key_bias_under_softcap_sums_over_batch_heads_and_queries)
{
    fd_case c = {.B = 2,
                 .H = 4,
                 .Hkv = 2,
                 .Lq = 3,
                 .Lk = 6,
                 .D = 4,
                 .softcap = 1.5,
                 .bias_shape = {1, 1, 1, 6},
                 .empty_row = -1};
    fd_check(&c);
}
END_TEST

/* GQA: dk, dv sum the group's query heads; an Hkv-headed bias sums them too. MQA as well. */
START_TEST(grouped_heads_sum_into_their_kv_head_and_bias_head)
{
    fd_case gqa = {.B = 1,
                   .H = 4,
                   .Hkv = 2,
                   .Lq = 4,
                   .Lk = 5,
                   .D = 4,
                   .bias_shape = {1, 2, 1, 5},
                   .empty_row = -1};
    fd_check(&gqa);
    fd_case mqa = {.B = 2,
                   .H = 3,
                   .Hkv = 1,
                   .Lq = 2,
                   .Lk = 4,
                   .D = 3,
                   .bias_shape = {2, 1, 2, 4},
                   .empty_row = -1};
    fd_check(&mqa);
}
END_TEST

/* A random mask (masked scores: exactly zero gradient) and one query row masked whole: its dq is
 * exactly 0 and nothing is NaN, while the other rows still match. */
START_TEST(masked_scores_and_a_fully_masked_row_give_zero_never_nan)
{
    fd_case c = {.B = 2,
                 .H = 2,
                 .Hkv = 1,
                 .Lq = 4,
                 .Lk = 5,
                 .D = 4,
                 .causal = false,
                 .bias_shape = {2, 2, 4, 5},
                 .mask_density = 0.6,
                 .empty_row = 2};
    ck_assert(fd_check(&c) == 0);
}
END_TEST

/* dm_ref_bwd over bf16 host tensors (q with padded rows, GQA, a full mask, a key bias (1, Hkv,
 * 1, Lk) with its dbias) equals the core run on the same values, rounded once: the tensors'
 * indexing, broadcast and conversions, bit for bit. */
START_TEST(the_tensor_reference_is_the_core_on_the_tensors_values)
{
    enum { TB = 2, TH = 4, THKV = 2, TLQ = 3, TLK = 5, TD = 8, PAD = 8 };
    const int64_t nq = TB * TLQ * TH * TD, nk = TB * TLK * THKV * TD;
    uint16_t q[TB * TLQ * TH * (TD + PAD)], k[nk], v[nk], o[nq], dout[nq], dq[nq], dk[nk], dv[nk];
    uint16_t bias[THKV * TLK], dbias[THKV * TLK];
    unsigned char mask[TB * TH * TLQ * TLK];
    float lse[TB * TH * TLQ];
    double qd[nq], kd[nk], vd[nk], doutd[nq], biasd[TB * TH * TLQ * TLK];
    memset(q, 0, sizeof q);
    for (int64_t b = 0; b < TB; b++)
        for (int64_t i = 0; i < TLQ; i++)
            for (int64_t h = 0; h < TH; h++)
                for (int64_t d = 0; d < TD; d++) {
                    uint16_t x = dm_double_to_16(uniform(), DM_BF16);
                    q[((b * TLQ + i) * TH + h) * (TD + PAD) + d] = x;
                    qd[((b * TLQ + i) * TH + h) * TD + d] = dm_bf16_to_float(x);
                }
    for (int64_t e = 0; e < nk; e++) {
        k[e] = dm_double_to_16(uniform(), DM_BF16);
        v[e] = dm_double_to_16(uniform(), DM_BF16);
        kd[e] = dm_bf16_to_float(k[e]);
        vd[e] = dm_bf16_to_float(v[e]);
    }
    for (int64_t e = 0; e < nq; e++) {
        dout[e] = dm_double_to_16(uniform(), DM_BF16);
        doutd[e] = dm_bf16_to_float(dout[e]);
    }
    for (int64_t e = 0; e < THKV * TLK; e++)
        bias[e] = dm_double_to_16(2 * uniform(), DM_BF16);
    for (int64_t e = 0; e < TB * TH * TLQ * TLK; e++) {
        mask[e] = uniform() > -0.6;
        biasd[e] = dm_bf16_to_float(bias[(e / (TLQ * TLK) % TH) / (TH / THKV) * TLK + e % TLK]);
    }
    dm_bwd_args a;
    memset(&a, 0, sizeof a);
    const struct {
        dm_tensor *t;
        void *data;
        dm_dtype dtype;
        int rank;
        int64_t shape[4], strides[4];
    } ts[] = {
        {&a.q,
         q,
         DM_BF16,
         4,
         {TB, TLQ, TH, TD},
         {TLQ * TH * (TD + PAD), TH * (TD + PAD), TD + PAD, 1}},
        {&a.k, k, DM_BF16, 4, {TB, TLK, THKV, TD}, {TLK * THKV * TD, THKV * TD, TD, 1}},
        {&a.v, v, DM_BF16, 4, {TB, TLK, THKV, TD}, {TLK * THKV * TD, THKV * TD, TD, 1}},
        {&a.o, o, DM_BF16, 4, {TB, TLQ, TH, TD}, {TLQ * TH * TD, TH * TD, TD, 1}},
        {&a.dout, dout, DM_BF16, 4, {TB, TLQ, TH, TD}, {TLQ * TH * TD, TH * TD, TD, 1}},
        {&a.dq, dq, DM_BF16, 4, {TB, TLQ, TH, TD}, {TLQ * TH * TD, TH * TD, TD, 1}},
        {&a.dk, dk, DM_BF16, 4, {TB, TLK, THKV, TD}, {TLK * THKV * TD, THKV * TD, TD, 1}},
        {&a.dv, dv, DM_BF16, 4, {TB, TLK, THKV, TD}, {TLK * THKV * TD, THKV * TD, TD, 1}},
        {&a.lse, lse, DM_F32, 3, {TB, TH, TLQ}, {TH * TLQ, TLQ, 1}},
        {&a.mask, mask, DM_BOOL, 4, {TB, TH, TLQ, TLK}, {TH * TLQ * TLK, TLQ * TLK, TLK, 1}},
        {&a.bias, bias, DM_BF16, 4, {1, THKV, 1, TLK}, {THKV * TLK, TLK, TLK, 1}},
        {&a.dbias, dbias, DM_BF16, 4, {1, THKV, 1, TLK}, {THKV * TLK, TLK, TLK, 1}},
    };
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        *ts[t].t = (dm_tensor){.data = ts[t].data, .dtype = ts[t].dtype, .rank = ts[t].rank};
        memcpy(ts[t].t->shape, ts[t].shape, sizeof ts[t].shape);
        memcpy(ts[t].t->strides, ts[t].strides, sizeof ts[t].strides);
    }
    a.causal = 1;
    a.softcap = 3;
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_status st = dm_ref_bwd(ctx, &a);
    ck_assert_msg(st == DM_OK, "%s", dm_errmsg(ctx));

    double gq[nq], gk[nk], gv[nk], gs[TB * TH * TLQ * TLK], gb[THKV * TLK];
    dm_ref_attn64 at = {.B = TB,
                        .H = TH,
                        .Hkv = THKV,
                        .Lq = TLQ,
                        .Lk = TLK,
                        .D = TD,
                        .scale = (float)(1 / sqrt((double)TD)),
                        .softcap = 3,
                        .causal = true,
                        .q = qd,
                        .k = kd,
                        .v = vd,
                        .bias = biasd,
                        .mask = mask};
    dm_ref_grads64 g = {.dq = gq, .dk = gk, .dv = gv, .dscore = gs};
    ck_assert_int_eq(dm_ref_attention64_bwd(ctx, &at, doutd, &g), DM_OK);
    const int64_t bias_shape[4] = {1, THKV, 1, TLK};
    dm_ref_reduce_bias_grad(&at, gs, bias_shape, gb);
    for (int64_t e = 0; e < nq; e++)
        ck_assert_int_eq(dq[e], dm_double_to_16(gq[e], DM_BF16));
    for (int64_t e = 0; e < nk; e++) {
        ck_assert_int_eq(dk[e], dm_double_to_16(gk[e], DM_BF16));
        ck_assert_int_eq(dv[e], dm_double_to_16(gv[e], DM_BF16));
    }
    for (int64_t e = 0; e < THKV * TLK; e++)
        ck_assert_int_eq(dbias[e], dm_double_to_16(gb[e], DM_BF16));
    dm_ctx_destroy(ctx);
}
END_TEST

#define TESTS(X) \
    X(gradients_match_finite_differences_without_bias_or_mask) \
    X(a_full_bias_with_causal_lq_below_lk_matches) \
    X(causal_rows_without_a_key_get_zero_gradients) \
    X(a_key_bias_under_softcap_sums_over_batch_heads_and_queries) \
    X(grouped_heads_sum_into_their_kv_head_and_bias_head) \
    X(masked_scores_and_a_fully_masked_row_give_zero_never_nan) \
    X(the_tensor_reference_is_the_core_on_the_tensors_values)
DM_TEST_MAIN("ref_bwd", TESTS)
