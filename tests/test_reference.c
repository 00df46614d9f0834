/* test_reference.c: dm_ref_fwd against a brute-force float64 attention written here from SPEC §2
 * alone (full (B, H, Lq, Lk) mask and bias arrays materialized from the broadcast inputs, softmax
 * without max subtraction), and the fp16/bf16 converters against a nearest-even oracle.
 * Random inputs come from fixed seeds, printed on failure; outputs are poisoned first. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_plan.h"
#include "half.h"
#include "harness.h"
#include "ref_util.h"
#include "reference.h"

/* ---- a test case ---- */

enum { HEADS_H = 0, HEADS_HKV, HEADS_ONE };

typedef struct mb_spec {
    bool on;
    dm_layout layout; /* Q: (.., Lq, Lk); K: (.., 1, Lk) */
    int heads;        /* HEADS_H, HEADS_HKV or HEADS_ONE */
    bool batch_one;   /* shape[0] = 1 */
    bool expanded;    /* given at full B, H and Lq with stride 0 where the storage broadcasts */
} mb_spec;

typedef struct spec {
    uint64_t seed;
    dm_dtype dtype;
    int64_t B, Lq, Lk, H, Hkv, D;
    mb_spec mask, bias;
    dm_dtype bias_dtype; /* q's dtype or DM_F32 */
    double p_visible;
    int empty_row; /* >= 0: this stored mask row is all false (layout Q) */
    int causal;
    float softcap, scale;
    bool lse;
    bool strided; /* q and o stored (B, H, Lq, D + 8), k and v rows padded, lse (B, Lq, H) */
} spec;

enum {
    F_MASK_Q = 1 << 0,
    F_MASK_K = 1 << 1,
    F_BIAS_Q = 1 << 2,
    F_BIAS_K = 1 << 3,
    F_BIAS_F32 = 1 << 4,
    F_CAUSAL = 1 << 5,
    F_SOFTCAP = 1 << 6,
    F_BF16 = 1 << 7,
    F_GQA = 1 << 8, /* 1 < Hkv < H */
    F_MQA = 1 << 9, /* Hkv = 1 < H */
    F_STRIDED = 1 << 10,
    F_EXPAND = 1 << 11,
    F_LQ1 = 1 << 12,
    F_LK1 = 1 << 13,
    F_LQ_LT_LK = 1 << 14,
    F_LQ_GT_LK = 1 << 15,
    F_SPARSE = 1 << 16, /* mask mostly false: many empty rows */
};

static mb_spec random_mb(rng *r, dm_layout layout, bool expand)
{
    mb_spec m = {.on = true, .layout = layout};
    m.heads = (int)pick(r, HEADS_H, HEADS_ONE);
    m.batch_one = pick(r, 0, 1);
    m.expanded = expand;
    return m;
}

static spec random_spec(uint64_t seed, unsigned f)
{
    static const int64_t dims[] = {8, 16, 24, 32, 40, 64};
    rng r = {seed};
    spec s;

    memset(&s, 0, sizeof s);
    s.seed = seed;
    s.dtype = f & F_BF16 ? DM_BF16 : DM_F16;
    s.B = pick(&r, 1, 3);
    s.Lq = pick(&r, 1, 9);
    s.Lk = pick(&r, 1, 12);
    if (f & F_LQ1)
        s.Lq = 1;
    if (f & F_LK1)
        s.Lk = 1;
    if (f & F_LQ_LT_LK) {
        s.Lq = pick(&r, 1, 6);
        s.Lk = s.Lq + pick(&r, 1, 7);
    }
    if (f & F_LQ_GT_LK) {
        s.Lk = pick(&r, 1, 6);
        s.Lq = s.Lk + pick(&r, 1, 7);
    }
    s.Hkv = pick(&r, 1, 3);
    s.H = s.Hkv;
    if (f & F_GQA) {
        s.Hkv = pick(&r, 2, 3);
        s.H = s.Hkv * pick(&r, 2, 3);
    }
    if (f & F_MQA) {
        s.Hkv = 1;
        s.H = pick(&r, 2, 5);
    }
    s.D = dims[pick(&r, 0, 5)];
    s.p_visible = f & F_SPARSE ? 0.15 : 0.7;
    s.empty_row = -1;
    if (f & (F_MASK_Q | F_MASK_K))
        s.mask = random_mb(&r, f & F_MASK_Q ? DM_LAYOUT_Q : DM_LAYOUT_K, f & F_EXPAND);
    if (f & (F_BIAS_Q | F_BIAS_K))
        s.bias = random_mb(&r, f & F_BIAS_Q ? DM_LAYOUT_Q : DM_LAYOUT_K, f & F_EXPAND);
    s.bias_dtype = f & F_BIAS_F32 ? DM_F32 : s.dtype;
    s.causal = (f & F_CAUSAL) != 0;
    if (f & F_SOFTCAP) {
        s.softcap = (float)uniform(&r, 0.5, 3.0);
        s.scale = 1.0f; /* large scores, so that the cap bends them */
    } else {
        s.scale = pick(&r, 0, 1) ? 0.0f : (float)uniform(&r, 0.05, 0.5);
    }
    s.lse = true;
    s.strided = (f & F_STRIDED) != 0;
    return s;
}

static void describe(const spec *s, char *buf, size_t n)
{
    snprintf(buf, n,
             "seed %llu: %s B=%lld Lq=%lld Lk=%lld H=%lld Hkv=%lld D=%lld mask=%d/%d/%d/%d "
             "bias=%d/%d/%d/%d/%s causal=%d softcap=%g scale=%g strided=%d",
             (unsigned long long)s->seed, dm_dtype_name(s->dtype), (long long)s->B,
             (long long)s->Lq, (long long)s->Lk, (long long)s->H, (long long)s->Hkv,
             (long long)s->D, s->mask.on, (int)s->mask.layout, s->mask.heads, s->mask.batch_one,
             s->bias.on, (int)s->bias.layout, s->bias.heads, s->bias.batch_one,
             dm_dtype_name(s->bias_dtype), s->causal, (double)s->softcap, (double)s->scale,
             s->strided);
}

/* A mask or bias tensor: storage over its own shape, and the descriptor the caller passes. */
static void make_mb(const spec *s, const mb_spec *m, dm_dtype dt, dm_tensor *t, size_t *elems)
{
    int64_t heads = m->heads == HEADS_H ? s->H : m->heads == HEADS_HKV ? s->Hkv : 1;
    int64_t st[4],
        shape[4] = {m->batch_one ? 1 : s->B, heads, m->layout == DM_LAYOUT_Q ? s->Lq : 1, s->Lk};

    st[3] = 1;
    for (int d = 2; d >= 0; d--)
        st[d] = st[d + 1] * shape[d + 1];
    *elems = (size_t)(st[0] * shape[0]);
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = 4;
    for (int d = 0; d < 4; d++) {
        t->shape[d] = shape[d];
        t->strides[d] = st[d];
    }
    if (m->expanded) { /* what torch's expand() hands over: full sizes, stride 0 */
        if (shape[0] == 1) {
            t->shape[0] = s->B;
            t->strides[0] = 0;
        }
        if (heads == 1) {
            t->shape[1] = s->H;
            t->strides[1] = 0;
        }
        if (shape[2] == 1) {
            t->shape[2] = s->Lq;
            t->strides[2] = 0;
        }
    }
}

/* Offset of logical element (b, h, i, j) in a mask or bias, from its shape and strides alone. */
static int64_t mb_index(const spec *s, const dm_tensor *t, int64_t b, int64_t h, int64_t i,
                        int64_t j)
{
    int64_t tb = t->shape[0] == 1 ? 0 : b;
    int64_t th = t->shape[1] == s->H ? h : t->shape[1] == s->Hkv ? h / (s->H / s->Hkv) : 0;
    int64_t ti = t->shape[2] == 1 ? 0 : i;
    return tb * t->strides[0] + th * t->strides[1] + ti * t->strides[2] + j * t->strides[3];
}

typedef struct outcome {
    int64_t rows, empty_rows;
} outcome;

#define IDX4(a, b, c, d, n1, n2, n3) ((((a) * (n1) + (b)) * (n2) + (c)) * (n3) + (d))

static outcome run_case(const spec *s)
{
    char what[512];
    rng r = {s->seed ^ 0x5eed};
    int64_t B = s->B, Lq = s->Lq, Lk = s->Lk, H = s->H, Hkv = s->Hkv, D = s->D;
    int64_t Dp = s->strided ? D + 8 : D;
    dm_fwd_args a;
    outcome out = {0, 0};
    size_t mask_elems = 0, bias_elems = 0;

    describe(s, what, sizeof what);
    memset(&a, 0, sizeof a);

    /* q and o: (B, Lq, H, D) logically; stored (B, H, Lq, Dp) when strided. */
    size_t q_elems = (size_t)(B * Lq * H * Dp);
    int64_t q_st[4] = {Lq * H * D, H * D, D, 1};
    if (s->strided) {
        q_st[0] = H * Lq * Dp;
        q_st[1] = Dp;
        q_st[2] = Lq * Dp;
    }
    size_t kv_row = (size_t)(Hkv * D + (s->strided ? 8 : 0));
    size_t kv_elems = (size_t)B * (size_t)Lk * kv_row;
    int64_t kv_st[4] = {Lk * (int64_t)kv_row, (int64_t)kv_row, D, 1};

    uint16_t *q = malloc(q_elems * 2), *o = malloc(q_elems * 2);
    uint16_t *k = malloc(kv_elems * 2), *v = malloc(kv_elems * 2);
    float *lse = malloc((size_t)(B * H * Lq) * sizeof(float));
    double *qd = malloc((size_t)(B * Lq * H * D) * sizeof(double));
    double *kd = malloc((size_t)(B * Lk * Hkv * D) * sizeof(double));
    double *vd = malloc((size_t)(B * Lk * Hkv * D) * sizeof(double));
    unsigned char *fmask = malloc((size_t)(B * H * Lq * Lk));
    double *fbias = malloc((size_t)(B * H * Lq * Lk) * sizeof(double));
    double *s_row = malloc((size_t)Lk * sizeof(double));
    bool *written = calloc(q_elems, 1);
    ck_assert(q && o && k && v && lse && qd && kd && vd && fmask && fbias && s_row && written);

    a.q = (dm_tensor){q, s->dtype, 4, {B, Lq, H, D}, {q_st[0], q_st[1], q_st[2], 1}};
    a.o = (dm_tensor){o, s->dtype, 4, {B, Lq, H, D}, {q_st[0], q_st[1], q_st[2], 1}};
    a.k = (dm_tensor){k, s->dtype, 4, {B, Lk, Hkv, D}, {kv_st[0], kv_st[1], kv_st[2], 1}};
    a.v = (dm_tensor){v, s->dtype, 4, {B, Lk, Hkv, D}, {kv_st[0], kv_st[1], kv_st[2], 1}};
    if (s->lse) {
        a.lse = (dm_tensor){lse, DM_F32, 3, {B, H, Lq}, {H * Lq, Lq, 1}};
        if (s->strided)
            a.lse = (dm_tensor){lse, DM_F32, 3, {B, H, Lq}, {Lq * H, 1, H}};
    }
    a.scale = s->scale;
    a.softcap = s->softcap;
    a.causal = s->causal;

    /* Inputs: random values rounded to the dtype; padding holds garbage the reference must skip. */
    for (size_t e = 0; e < q_elems; e++)
        q[e] = 0x7e00; /* NaN in fp16, a large number in bf16: poisons any read of padding */
    for (size_t e = 0; e < kv_elems; e++)
        k[e] = v[e] = 0x7e00;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++) {
                    uint16_t c = to16(s->dtype, uniform(&r, -1, 1));
                    q[b * q_st[0] + i * q_st[1] + h * q_st[2] + d] = c;
                    qd[IDX4(b, i, h, d, Lq, H, D)] = from16(s->dtype, c);
                }
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < Lk; j++)
            for (int64_t h = 0; h < Hkv; h++)
                for (int64_t d = 0; d < D; d++) {
                    int64_t off = b * kv_st[0] + j * kv_st[1] + h * kv_st[2] + d;
                    uint16_t ck = to16(s->dtype, uniform(&r, -1, 1));
                    uint16_t cv = to16(s->dtype, uniform(&r, -1, 1));
                    k[off] = ck;
                    v[off] = cv;
                    kd[IDX4(b, j, h, d, Lk, Hkv, D)] = from16(s->dtype, ck);
                    vd[IDX4(b, j, h, d, Lk, Hkv, D)] = from16(s->dtype, cv);
                }

    /* Mask and bias, then their full (B, H, Lq, Lk) materializations. */
    unsigned char *mask = NULL;
    void *bias = NULL;
    if (s->mask.on) {
        make_mb(s, &s->mask, DM_BOOL, &a.mask, &mask_elems);
        mask = malloc(mask_elems);
        ck_assert_ptr_nonnull(mask);
        for (size_t e = 0; e < mask_elems; e++) /* any non-zero byte means visible */
            mask[e] = uniform(&r, 0, 1) < s->p_visible ? (unsigned char)pick(&r, 1, 255) : 0;
        if (s->empty_row >= 0 && s->mask.layout == DM_LAYOUT_Q && s->empty_row < Lq)
            for (size_t e = 0; e < mask_elems; e++)
                if ((int64_t)(e / (size_t)Lk) % Lq == s->empty_row)
                    mask[e] = 0;
        a.mask.data = mask;
    }
    if (s->bias.on) {
        make_mb(s, &s->bias, s->bias_dtype, &a.bias, &bias_elems);
        bias = malloc(bias_elems * 4);
        ck_assert_ptr_nonnull(bias);
        for (size_t e = 0; e < bias_elems; e++) {
            double x = uniform(&r, -3, 3);
            if (s->bias_dtype == DM_F32)
                ((float *)bias)[e] = (float)x;
            else
                ((uint16_t *)bias)[e] = to16(s->bias_dtype, x);
        }
        a.bias.data = bias;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t j = 0; j < Lk; j++) {
                    int64_t f = IDX4(b, h, i, j, H, Lq, Lk);
                    fmask[f] = !mask || mask[mb_index(s, &a.mask, b, h, i, j)] != 0;
                    fbias[f] = 0;
                    if (bias) {
                        int64_t off = mb_index(s, &a.bias, b, h, i, j);
                        fbias[f] = s->bias_dtype == DM_F32
                                       ? ((float *)bias)[off]
                                       : from16(s->bias_dtype, ((uint16_t *)bias)[off]);
                    }
                }

    /* Poison the outputs, run the reference. */
    for (size_t e = 0; e < q_elems; e++)
        o[e] = 0xffff; /* NaN in fp16 and bf16 */
    for (int64_t e = 0; e < B * H * Lq; e++)
        lse[e] = NAN;
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_status st = dm_ref_fwd(ctx, &a);
    ck_assert_msg(st == DM_OK, "%s: dm_ref_fwd: %s", what, dm_errmsg(ctx));
    dm_ctx_destroy(ctx);

    /* Brute force, straight from SPEC §2, and the comparison. */
    double scale = s->scale != 0 ? (double)s->scale : (double)(float)(1.0 / sqrt((double)D));
    int64_t group = H / Hkv;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                double sum = 0;
                int visible = 0;
                for (int64_t j = 0; j < Lk; j++) {
                    int64_t f = IDX4(b, h, i, j, H, Lq, Lk);
                    if (!fmask[f] || (s->causal && j > i + Lk - Lq)) {
                        s_row[j] = NAN;
                        continue;
                    }
                    double x = 0;
                    for (int64_t d = 0; d < D; d++)
                        x += qd[IDX4(b, i, h, d, Lq, H, D)] *
                             kd[IDX4(b, j, h / group, d, Lk, Hkv, D)];
                    x = scale * x + fbias[f];
                    if (s->softcap > 0)
                        x = s->softcap * tanh(x / s->softcap);
                    s_row[j] = exp(x);
                    sum += s_row[j];
                    visible++;
                }
                float got_lse =
                    lse[b * a.lse.strides[0] + h * a.lse.strides[1] + i * a.lse.strides[2]];
                out.rows++;
                for (int64_t d = 0; d < D; d++) {
                    int64_t off = b * q_st[0] + i * q_st[1] + h * q_st[2] + d;
                    written[off] = true;
                    if (!visible) {
                        CHECK(o[off] == 0,
                              "%s: empty row (%lld, %lld, %lld): o[%lld] = 0x%04x, "
                              "expected +0 exactly",
                              what, (long long)b, (long long)h, (long long)i, (long long)d, o[off]);
                        continue;
                    }
                    double want = 0;
                    for (int64_t j = 0; j < Lk; j++)
                        if (!isnan(s_row[j]))
                            want += s_row[j] / sum * vd[IDX4(b, j, h / group, d, Lk, Hkv, D)];
                    double got = from16(s->dtype, o[off]);
                    double tol = ulp_at(s->dtype, want);
                    CHECK(fabs(got - want) <= tol,
                          "%s: o(%lld, %lld, %lld, %lld) = %.9g, brute force %.9g, tol %.3g", what,
                          (long long)b, (long long)i, (long long)h, (long long)d, got, want, tol);
                }
                if (!visible) {
                    out.empty_rows++;
                    CHECK(isinf(got_lse) && got_lse > 0, "%s: empty row lse = %g, expected +inf",
                          what, (double)got_lse);
                } else {
                    double want = log(sum);
                    CHECK(fabs(got_lse - want) <= 0x1p-23 * fabs(want) + 1e-12,
                          "%s: lse(%lld, %lld, %lld) = %.9g, brute force %.12g", what, (long long)b,
                          (long long)h, (long long)i, (double)got_lse, want);
                }
            }
    for (size_t e = 0; e < q_elems; e++)
        CHECK(written[e] || o[e] == 0xffff, "%s: o padding element %zu was written", what, e);

    free(bias);
    free(mask);
    free(written);
    free(s_row);
    free(fbias);
    free(fmask);
    free(vd);
    free(kd);
    free(qd);
    free(lse);
    free(v);
    free(k);
    free(o);
    free(q);
    return out;
}

/* Runs `n` random cases with the features `f`; returns the totals. */
static outcome run_cases(uint64_t first_seed, int n, unsigned f)
{
    outcome total = {0, 0};
    for (int c = 0; c < n; c++) {
        spec s = random_spec(first_seed + (uint64_t)c, f);
        outcome one = run_case(&s);
        total.rows += one.rows;
        total.empty_rows += one.empty_rows;
    }
    return total;
}

/* ---- the reference against brute force ---- */

START_TEST(ref_matches_brute_force_without_mask_or_bias)
{
    run_cases(100, 30, 0);
}
END_TEST

START_TEST(ref_matches_brute_force_with_a_mask_in_layout_q)
{
    run_cases(200, 30, F_MASK_Q);
}
END_TEST

START_TEST(ref_matches_brute_force_with_a_mask_in_layout_k)
{
    run_cases(300, 30, F_MASK_K);
}
END_TEST

START_TEST(ref_matches_brute_force_with_a_bias_in_layout_q_broadcast_over_batch_and_heads)
{
    run_cases(400, 30, F_BIAS_Q | F_GQA);
}
END_TEST

START_TEST(ref_matches_brute_force_with_a_bias_in_layout_k_broadcast_over_batch_and_heads)
{
    run_cases(500, 30, F_BIAS_K | F_GQA);
}
END_TEST

START_TEST(ref_matches_brute_force_with_an_f32_bias)
{
    run_cases(600, 20, F_BIAS_Q | F_BIAS_F32);
    run_cases(650, 20, F_BIAS_K | F_BIAS_F32 | F_BF16);
}
END_TEST

START_TEST(ref_matches_brute_force_with_mask_and_bias_expanded_by_stride_0)
{
    run_cases(700, 30, F_MASK_K | F_BIAS_Q | F_EXPAND | F_MQA);
    run_cases(750, 30, F_MASK_Q | F_BIAS_K | F_EXPAND | F_GQA);
}
END_TEST

START_TEST(ref_matches_brute_force_for_gqa_and_mqa)
{
    run_cases(800, 20, F_GQA | F_MASK_Q | F_BIAS_K);
    run_cases(850, 20, F_MQA | F_MASK_K | F_BIAS_Q);
}
END_TEST

START_TEST(ref_matches_brute_force_causal_with_fewer_queries_than_keys)
{
    run_cases(900, 30, F_CAUSAL | F_LQ_LT_LK | F_BIAS_Q);
}
END_TEST

START_TEST(ref_matches_brute_force_causal_with_more_queries_than_keys)
{
    /* Queries i < Lq - Lk see no key at all: those rows must come out o = 0, lse = +inf. */
    outcome t = run_cases(1000, 30, F_CAUSAL | F_LQ_GT_LK | F_MASK_K);
    ck_assert_int_gt(t.empty_rows, 0);
}
END_TEST

START_TEST(ref_matches_brute_force_with_softcap)
{
    run_cases(1100, 30, F_SOFTCAP | F_BIAS_Q);
    run_cases(1150, 10, F_SOFTCAP | F_BF16 | F_MASK_K | F_CAUSAL);
}
END_TEST

START_TEST(ref_gives_zero_output_and_infinite_lse_for_fully_masked_rows)
{
    int64_t empty = 0;
    for (uint64_t seed = 1200; seed < 1230; seed++) {
        spec s = random_spec(seed, F_MASK_Q | F_BIAS_Q);
        s.empty_row = 0; /* stored row 0 all false: query 0 sees nothing in every batch/head */
        empty += run_case(&s).empty_rows;
    }
    ck_assert_int_gt(empty, 0);
    outcome t = run_cases(1250, 30, F_MASK_Q | F_SPARSE);
    ck_assert_int_gt(t.empty_rows, 0);
}
END_TEST

START_TEST(ref_matches_brute_force_with_one_query)
{
    run_cases(1300, 20, F_LQ1 | F_MASK_Q | F_BIAS_K);
    run_cases(1350, 20, F_LQ1 | F_CAUSAL | F_GQA);
}
END_TEST

START_TEST(ref_matches_brute_force_with_one_key)
{
    run_cases(1400, 20, F_LK1 | F_MASK_Q | F_BIAS_Q);
    run_cases(1450, 20, F_LK1 | F_CAUSAL);
}
END_TEST

START_TEST(ref_matches_brute_force_in_bf16)
{
    run_cases(1500, 30, F_BF16 | F_MASK_Q | F_BIAS_K | F_GQA);
}
END_TEST

START_TEST(ref_reads_strided_layouts_and_writes_nothing_outside_the_output_rows)
{
    run_cases(1600, 30, F_STRIDED | F_MASK_K | F_BIAS_Q | F_CAUSAL);
}
END_TEST

START_TEST(ref_matches_brute_force_with_every_feature_at_once)
{
    run_cases(1700, 40,
              F_MASK_Q | F_BIAS_K | F_CAUSAL | F_SOFTCAP | F_GQA | F_STRIDED | F_EXPAND |
                  F_BIAS_F32);
    run_cases(1750, 40, F_MASK_K | F_BIAS_Q | F_CAUSAL | F_MQA | F_BF16 | F_STRIDED);
}
END_TEST

START_TEST(ref_treats_any_nonzero_mask_byte_as_visible)
{
    /* One query, two keys: the mask byte 0x80 must count as true, like 1. */
    uint16_t q[8] __attribute__((aligned(16))), o[8] __attribute__((aligned(16)));
    uint16_t k[16] __attribute__((aligned(16))), v[16] __attribute__((aligned(16)));
    unsigned char mask[2] = {0x80, 0};
    float lse = 0;
    dm_fwd_args a;
    dm_ctx *ctx = NULL;

    for (int d = 0; d < 8; d++) {
        q[d] = dm_float_to_half(0.5f);
        k[d] = dm_float_to_half(1.0f);
        k[8 + d] = dm_float_to_half(-1.0f);
        v[d] = dm_float_to_half(3.0f);
        v[8 + d] = dm_float_to_half(-7.0f);
    }
    memset(&a, 0, sizeof a);
    a.q = (dm_tensor){q, DM_F16, 4, {1, 1, 1, 8}, {8, 8, 8, 1}};
    a.o = (dm_tensor){o, DM_F16, 4, {1, 1, 1, 8}, {8, 8, 8, 1}};
    a.k = (dm_tensor){k, DM_F16, 4, {1, 2, 1, 8}, {16, 8, 8, 1}};
    a.v = (dm_tensor){v, DM_F16, 4, {1, 2, 1, 8}, {16, 8, 8, 1}};
    a.mask = (dm_tensor){mask, DM_BOOL, 4, {1, 1, 1, 2}, {2, 2, 2, 1}};
    a.lse = (dm_tensor){&lse, DM_F32, 3, {1, 1, 1}, {1, 1, 1}};
    a.scale = 1.0f;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    ck_assert_int_eq(dm_ref_fwd(ctx, &a), DM_OK);
    for (int d = 0; d < 8; d++)
        ck_assert_float_eq(dm_half_to_float(o[d]), 3.0f); /* only key 0 is visible */
    ck_assert_float_eq_tol(lse, 4.0f, 1e-6f);             /* log(exp(0.5 * 8)) */
    dm_ctx_destroy(ctx);
}
END_TEST

/* Lk = 0 with k, v, mask and bias NULL (no elements), causal and a window too: every row is
 * empty, o = 0 exactly and lse = +inf. Lq = 0 with q and o NULL writes nothing. */
START_TEST(ref_with_no_keys_gives_empty_rows_and_with_no_queries_writes_nothing)
{
    uint16_t q[2 * 3 * 8] __attribute__((aligned(16))), o[2 * 3 * 8] __attribute__((aligned(16)));
    float lse[2 * 3];
    dm_fwd_args a;
    dm_ctx *ctx = NULL;

    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        q[i] = dm_float_to_half(0.25f);
    memset(o, 0xff, sizeof o);
    memset(lse, 0xff, sizeof lse);
    memset(&a, 0, sizeof a);
    a.q = (dm_tensor){q, DM_F16, 4, {1, 2, 3, 8}, {48, 24, 8, 1}};
    a.o = (dm_tensor){o, DM_F16, 4, {1, 2, 3, 8}, {48, 24, 8, 1}};
    a.k = (dm_tensor){NULL, DM_F16, 4, {1, 0, 1, 8}, {8, 8, 8, 1}};
    a.v = a.k;
    a.mask = (dm_tensor){NULL, DM_BOOL, 4, {1, 1, 1, 0}, {1, 1, 1, 1}};
    a.bias = (dm_tensor){NULL, DM_F16, 4, {1, 3, 2, 0}, {1, 1, 1, 1}};
    a.lse = (dm_tensor){lse, DM_F32, 3, {1, 3, 2}, {6, 2, 1}};
    a.causal = 1;
    a.window = 4;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    ck_assert_msg(dm_ref_fwd(ctx, &a) == DM_OK, "%s", dm_errmsg(ctx));
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        ck_assert_uint_eq(o[i], 0);
    for (size_t i = 0; i < sizeof lse / sizeof lse[0]; i++)
        ck_assert(isinf(lse[i]) && lse[i] > 0);

    memset(o, 0x5a, sizeof o);
    a = (dm_fwd_args){0};
    a.q = (dm_tensor){NULL, DM_F16, 4, {1, 0, 3, 8}, {24, 24, 8, 1}};
    a.o = a.q;
    a.k = (dm_tensor){q, DM_F16, 4, {1, 2, 1, 8}, {16, 8, 8, 1}};
    a.v = a.k;
    ck_assert_msg(dm_ref_fwd(ctx, &a) == DM_OK, "%s", dm_errmsg(ctx));
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        ck_assert_uint_eq(o[i], 0x5a5a);
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(ref_rejects_bad_args_in_its_own_name_and_writes_nothing)
{
    uint16_t q[8] __attribute__((aligned(16))), o[8] __attribute__((aligned(16)));
    dm_fwd_args a;
    dm_ctx *ctx = NULL;

    memset(&a, 0, sizeof a);
    memset(q, 0, sizeof q);
    memset(o, 0x5a, sizeof o);
    a.q = (dm_tensor){q, DM_F16, 4, {1, 1, 2, 8}, {16, 16, 8, 1}};
    a.o = (dm_tensor){o, DM_F16, 4, {1, 1, 1, 8}, {8, 8, 8, 1}}; /* wrong H */
    a.k = (dm_tensor){q, DM_F16, 4, {1, 1, 1, 8}, {8, 8, 8, 1}};
    a.v = a.k;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    ck_assert_int_eq(dm_ref_fwd(ctx, &a), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "dm_ref_fwd: o.shape[2]"));
    for (int d = 0; d < 8; d++)
        ck_assert_uint_eq(o[d], 0x5a5a);
    ck_assert_int_eq(dm_ref_fwd(NULL, &a), DM_ERR_INVALID_ARG);
    dm_ctx_destroy(ctx);
}
END_TEST

/* ---- converters ---- */

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Is code c the nearest-even rounding of finite f in a format whose largest finite code is
 * max_code, whose inf is max_code + 1, and whose value one step past max is `beyond`? */
static bool is_nearest_even(float f, uint16_t c, uint16_t sign_bit, uint16_t max_code,
                            double beyond, double (*val)(uint16_t))
{
    double x = fabs((double)f);
    uint16_t m = c & (uint16_t)(sign_bit - 1);

    if ((c & sign_bit) != (signbit(f) ? sign_bit : 0))
        return false;
    if (m > max_code + 1)
        return false; /* NaN for a finite input */
    double here = m == max_code + 1 ? beyond : val(m);
    if (m == max_code + 1) /* inf: only when x rounds past the largest finite value */
        return x - val(max_code) > beyond - x || (x - val(max_code) == beyond - x);
    double up = m == max_code ? beyond : val((uint16_t)(m + 1));
    double down = m == 0 ? -val(1) : val((uint16_t)(m - 1));
    double dh = fabs(x - here), du = fabs(up - x), dd = fabs(x - down);
    if (dh > du || dh > dd)
        return false;
    if ((dh == du || dh == dd) && (m & 1))
        return false; /* a tie goes to the even code */
    return true;
}

static double half_val(uint16_t c)
{
    return dm_half_to_float(c);
}
static double bf16_val(uint16_t c)
{
    return dm_bf16_to_float(c);
}

static void check_half(float f)
{
    uint16_t c = dm_float_to_half(f);
    if (isnan(f)) {
        CHECK((c & 0x7c00) == 0x7c00 && (c & 0x3ff), "half(NaN) = 0x%04x", c);
        return;
    }
    CHECK(is_nearest_even(f, c, 0x8000, 0x7bff, 65536.0, half_val),
          "half(%.9g) = 0x%04x is not the nearest-even fp16", (double)f, c);
}

static void check_bf16(float f)
{
    uint16_t c = dm_float_to_bf16(f);
    if (isnan(f)) {
        CHECK((c & 0x7f80) == 0x7f80 && (c & 0x7f), "bf16(NaN) = 0x%04x", c);
        return;
    }
    CHECK(is_nearest_even(f, c, 0x8000, 0x7f7f, 0x1p128, bf16_val),
          "bf16(%.9g) = 0x%04x is not the nearest-even bf16", (double)f, c);
}

START_TEST(half_round_trips_every_code)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float f = dm_half_to_float((uint16_t)c);
        uint16_t back = dm_float_to_half(f);
        if ((c & 0x7c00) == 0x7c00 && (c & 0x3ff)) {
            CHECK(isnan(f), "half 0x%04x should decode to NaN", c);
            CHECK((back & 0x7c00) == 0x7c00 && (back & 0x3ff), "NaN 0x%04x -> 0x%04x", c, back);
        } else {
            CHECK(back == c, "half 0x%04x -> %.9g -> 0x%04x", c, (double)f, back);
        }
    }
}
END_TEST

START_TEST(bf16_round_trips_every_code)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float f = dm_bf16_to_float((uint16_t)c);
        uint16_t back = dm_float_to_bf16(f);
        if ((c & 0x7f80) == 0x7f80 && (c & 0x7f)) {
            CHECK(isnan(f), "bf16 0x%04x should decode to NaN", c);
            CHECK((back & 0x7f80) == 0x7f80 && (back & 0x7f), "NaN 0x%04x -> 0x%04x", c, back);
        } else {
            CHECK(back == c, "bf16 0x%04x -> %.9g -> 0x%04x", c, (double)f, back);
        }
    }
}
END_TEST

START_TEST(half_decodes_known_values)
{
    ck_assert_float_eq(dm_half_to_float(0x3c00), 1.0f);
    ck_assert_float_eq(dm_half_to_float(0xc000), -2.0f);
    ck_assert_float_eq(dm_half_to_float(0x7bff), 65504.0f);
    ck_assert_float_eq(dm_half_to_float(0x0400), 0x1p-14f);
    ck_assert_float_eq(dm_half_to_float(0x0001), 0x1p-24f);
    ck_assert_float_eq(dm_half_to_float(0x03ff), 0x1p-14f - 0x1p-24f);
    ck_assert(isinf(dm_half_to_float(0x7c00)) && dm_half_to_float(0x7c00) > 0);
    ck_assert(isinf(dm_half_to_float(0xfc00)) && dm_half_to_float(0xfc00) < 0);
    ck_assert(signbit(dm_half_to_float(0x8000)) && dm_half_to_float(0x8000) == 0);
    ck_assert(isnan(dm_half_to_float(0x7e00)));
}
END_TEST

START_TEST(half_rounds_ties_to_even)
{
    ck_assert_uint_eq(dm_float_to_half(1.0f + 0x1p-11f), 0x3c00);            /* tie, down to even */
    ck_assert_uint_eq(dm_float_to_half(1.0f + 3 * 0x1p-11f), 0x3c02);        /* tie, up to even */
    ck_assert_uint_eq(dm_float_to_half(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above the tie */
    ck_assert_uint_eq(dm_float_to_half(-(1.0f + 0x1p-11f)), 0xbc00);
    ck_assert_uint_eq(dm_float_to_half(2048.0f + 1.0f), 0x6800); /* 2049: tie -> 2048 */
    ck_assert_uint_eq(dm_float_to_half(2048.0f + 3.0f), 0x6802); /* 2051: tie -> 2052 */
}
END_TEST

START_TEST(half_handles_subnormals_overflow_infinity_nan_and_signed_zero)
{
    ck_assert_uint_eq(dm_float_to_half(0x1p-24f), 0x0001);
    ck_assert_uint_eq(dm_float_to_half(0x1p-25f), 0x0000);            /* tie with 0: even */
    ck_assert_uint_eq(dm_float_to_half(0x1.000002p-25f), 0x0001);     /* just above the tie */
    ck_assert_uint_eq(dm_float_to_half(3 * 0x1p-25f), 0x0002);        /* tie 1|2 -> 2 */
    ck_assert_uint_eq(dm_float_to_half(5 * 0x1p-25f), 0x0002);        /* tie 2|3 -> 2 */
    ck_assert_uint_eq(dm_float_to_half(0x1p-14f - 0x1p-25f), 0x0400); /* tie into the normals */
    ck_assert_uint_eq(dm_float_to_half(0x1p-30f), 0x0000);
    ck_assert_uint_eq(dm_float_to_half(-0x1p-30f), 0x8000);
    ck_assert_uint_eq(dm_float_to_half(FLT_TRUE_MIN), 0x0000);
    ck_assert_uint_eq(dm_float_to_half(65504.0f), 0x7bff);
    ck_assert_uint_eq(dm_float_to_half(65519.996f), 0x7bff);
    ck_assert_uint_eq(dm_float_to_half(65520.0f), 0x7c00); /* tie: to inf */
    ck_assert_uint_eq(dm_float_to_half(1e10f), 0x7c00);
    ck_assert_uint_eq(dm_float_to_half(-FLT_MAX), 0xfc00);
    ck_assert_uint_eq(dm_float_to_half(INFINITY), 0x7c00);
    ck_assert_uint_eq(dm_float_to_half(-INFINITY), 0xfc00);
    ck_assert_uint_eq(dm_float_to_half(0.0f), 0x0000);
    ck_assert_uint_eq(dm_float_to_half(-0.0f), 0x8000);
    uint16_t n = dm_float_to_half(NAN);
    ck_assert((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
    n = dm_float_to_half(bits_to_float(0x7f800001u)); /* payload only in the low bits */
    ck_assert((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
    n = dm_float_to_half(bits_to_float(0xff800001u));
    ck_assert((n & 0xfc00) == 0xfc00 && (n & 0x3ff) != 0);
}
END_TEST

START_TEST(bf16_rounds_ties_to_even_and_overflows_to_infinity)
{
    ck_assert_uint_eq(dm_float_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(dm_float_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie, down to even */
    ck_assert_uint_eq(dm_float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie, up to even */
    ck_assert_uint_eq(dm_float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    ck_assert_uint_eq(dm_float_to_bf16(-(1.0f + 3 * 0x1p-8f)), 0xbf82);
    ck_assert_uint_eq(dm_float_to_bf16(bits_to_float(0x7f7f7fffu)), 0x7f7f);
    ck_assert_uint_eq(dm_float_to_bf16(bits_to_float(0x7f7f8000u)), 0x7f80); /* tie: to inf */
    ck_assert_uint_eq(dm_float_to_bf16(FLT_MAX), 0x7f80);
    ck_assert_uint_eq(dm_float_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(dm_float_to_bf16(-INFINITY), 0xff80);
    ck_assert_uint_eq(dm_float_to_bf16(-0.0f), 0x8000);
    ck_assert_uint_eq(dm_float_to_bf16(FLT_TRUE_MIN), 0x0000);               /* below half a step */
    ck_assert_uint_eq(dm_float_to_bf16(bits_to_float(0x00008001u)), 0x0001); /* subnormal */
}
END_TEST

START_TEST(bf16_keeps_nan_a_nan)
{
    static const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                                    0x7f80ffffu};
    for (int i = 0; i < 5; i++) {
        uint16_t c = dm_float_to_bf16(bits_to_float(nans[i]));
        ck_assert_msg((c & 0x7f80) == 0x7f80 && (c & 0x7f) != 0, "bf16(0x%08x) = 0x%04x", nans[i],
                      c);
        ck_assert_uint_eq(c & 0x8000, (nans[i] >> 16) & 0x8000);
        ck_assert(isnan(dm_bf16_to_float(c)));
    }
}
END_TEST

START_TEST(converters_round_to_nearest_even_at_every_tie_and_over_sampled_floats)
{
    /* Every midpoint between neighbouring codes, and the floats just around it. */
    for (uint32_t c = 0; c < 0x7c00; c++) {
        float mid = (float)((half_val((uint16_t)c) +
                             (c == 0x7bff ? 65536.0 : half_val((uint16_t)(c + 1)))) /
                            2);
        for (int s = 0; s < 2; s++) {
            float m = s ? -mid : mid;
            check_half(m);
            check_half(nextafterf(m, 0));
            check_half(nextafterf(m, s ? -INFINITY : INFINITY));
        }
    }
    for (uint32_t c = 0; c < 0x7f80; c++) {
        double next = c == 0x7f7f ? 0x1p128 : bf16_val((uint16_t)(c + 1));
        float mid = (float)((bf16_val((uint16_t)c) + next) / 2); /* exact: 9 bits suffice */
        for (int s = 0; s < 2; s++) {
            float m = s ? -mid : mid;
            check_bf16(m);
            check_bf16(nextafterf(m, 0));
            check_bf16(nextafterf(m, s ? -INFINITY : INFINITY));
        }
    }
    /* A sweep over the float bit patterns (every 257th). */
    for (uint64_t u = 0; u <= 0xffffffffull; u += 257) {
        float f = bits_to_float((uint32_t)u);
        check_half(f);
        check_bf16(f);
    }
}
END_TEST

START_TEST(half_conversion_agrees_with_the_compilers_float16)
{
#ifdef __FLT16_MAX__
    rng r = {42};
    for (int n = 0; n < 2000000; n++) {
        uint32_t u = (uint32_t)next_u64(&r);
        float f = bits_to_float(u);
        if (isnan(f))
            continue;
        _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, sizeof want);
        CHECK(dm_float_to_half(f) == want, "half(0x%08x = %.9g) = 0x%04x, compiler 0x%04x", u,
              (double)f, dm_float_to_half(f), want);
        CHECK(dm_half_to_float(want) == (float)h, "decode 0x%04x", want);
    }
#endif /* else nothing to compare with: the oracle test above stands alone */
}
END_TEST

#define TESTS(X) \
    X(ref_matches_brute_force_without_mask_or_bias) \
    X(ref_matches_brute_force_with_a_mask_in_layout_q) \
    X(ref_matches_brute_force_with_a_mask_in_layout_k) \
    X(ref_matches_brute_force_with_a_bias_in_layout_q_broadcast_over_batch_and_heads) \
    X(ref_matches_brute_force_with_a_bias_in_layout_k_broadcast_over_batch_and_heads) \
    X(ref_matches_brute_force_with_an_f32_bias) \
    X(ref_matches_brute_force_with_mask_and_bias_expanded_by_stride_0) \
    X(ref_matches_brute_force_for_gqa_and_mqa) \
    X(ref_matches_brute_force_causal_with_fewer_queries_than_keys) \
    X(ref_matches_brute_force_causal_with_more_queries_than_keys) \
    X(ref_matches_brute_force_with_softcap) \
    X(ref_gives_zero_output_and_infinite_lse_for_fully_masked_rows) \
    X(ref_matches_brute_force_with_one_query) \
    X(ref_matches_brute_force_with_one_key) \
    X(ref_matches_brute_force_in_bf16) \
    X(ref_reads_strided_layouts_and_writes_nothing_outside_the_output_rows) \
    X(ref_matches_brute_force_with_every_feature_at_once) \
    X(ref_treats_any_nonzero_mask_byte_as_visible) \
    X(ref_with_no_keys_gives_empty_rows_and_with_no_queries_writes_nothing) \
    X(ref_rejects_bad_args_in_its_own_name_and_writes_nothing) \
    X(half_round_trips_every_code) \
    X(bf16_round_trips_every_code) \
    X(half_decodes_known_values) \
    X(half_rounds_ties_to_even) \
    X(half_handles_subnormals_overflow_infinity_nan_and_signed_zero) \
    X(bf16_rounds_ties_to_even_and_overflows_to_infinity) \
    X(bf16_keeps_nan_a_nan) \
    X(converters_round_to_nearest_even_at_every_tie_and_over_sampled_floats) \
    X(half_conversion_agrees_with_the_compilers_float16)

DM_TEST_MAIN("reference", TESTS)
