/* test_ref_varlen.c: dm_ref_fwd_varlen against a brute-force float64 attention written here from
 * SPEC §5 alone: it walks the packed (token, head) buffers and the cu_seqlens itself, reads
 * masks and biases through their varlen layouts, softmax without max subtraction; nothing of
 * dm_ref_attention's per-sequence views. Random inputs come from fixed seeds, printed on failure;
 * outputs are poisoned first, and what must stay unwritten is checked to still hold the poison.
 * The plan comes from dm_fwd_varlen_check, as the GPU test's reference gets it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_varlen_plan.h"
#include "half.h"
#include "harness.h"
#include "ref_util.h"
#include "reference.h"

#define POISON16 0xffff /* NaN in fp16 and bf16 */

/* ---- a test case ---- */

#define MAX_B 8

enum { HM_H = 0, HM_HKV, HM_ONE }; /* a mask's or bias's head count: H, Hkv or 1 */
enum { MHA = 0, GQA, MQA };

typedef struct vspec {
    uint64_t seed;
    dm_dtype dtype;
    int B;
    int len_q[MAX_B], len_k[MAX_B];
    int max_q, max_k; /* max_seqlen_q/k; -1 = the longest sequence's */
    int H, Hkv, D;
    dm_layout mask, bias;
    int mask_hm, bias_hm; /* HM_* */
    dm_dtype bias_dtype;
    double p_visible;
    bool causal;
    float softcap, scale;
} vspec;

/* Packed buffers: q, o (total_q, H, D); k, v (total_k, Hkv, D); lse (H, total_q); mask, bias
 * (total_q, Hm, max_k) or (total_k, Hm). */
typedef struct vcase {
    vspec s;
    int32_t cu_q[MAX_B + 1], cu_k[MAX_B + 1];
    int64_t total_q, total_k, max_q, max_k, mask_heads, bias_heads;
    uint16_t *q, *k, *v, *o;
    float *lse;
    unsigned char *mask;
    void *bias;
    dm_fwd_varlen_args a;
} vcase;

static int64_t heads_of(const vspec *s, int hm)
{
    return hm == HM_H ? s->H : hm == HM_HKV ? s->Hkv : 1;
}

/* Lengths 0..13 queries over 0..19 keys (not multiples of 8, often 0 or 1), heads by kind. */
static vspec random_vspec(uint64_t seed, int kind, dm_layout mask, dm_layout bias)
{
    static const int dims[] = {8, 16, 24, 40, 64};
    rng r = {seed};
    vspec s;
    memset(&s, 0, sizeof s);
    s.seed = seed;
    s.dtype = pick(&r, 0, 1) ? DM_BF16 : DM_F16;
    s.B = pick(&r, 1, 5);
    for (int b = 0; b < s.B; b++) {
        int x = pick(&r, 0, 5);
        s.len_q[b] = x == 0 ? 0 : x == 1 ? 1 : pick(&r, 2, 13);
        int y = pick(&r, 0, 5);
        s.len_k[b] = y == 0 ? 0 : y == 1 ? 1 : pick(&r, 2, 19);
    }
    s.max_q = s.max_k = -1;
    s.Hkv = kind == MHA ? pick(&r, 1, 3) : kind == GQA ? pick(&r, 2, 3) : 1;
    s.H = kind == MHA ? s.Hkv : kind == GQA ? s.Hkv * pick(&r, 2, 3) : pick(&r, 2, 4);
    s.D = dims[pick(&r, 0, 4)];
    s.mask = mask;
    s.bias = bias;
    s.mask_hm = pick(&r, HM_H, HM_ONE);
    s.bias_hm = pick(&r, HM_H, HM_ONE);
    s.bias_dtype = pick(&r, 0, 3) == 0 ? DM_F32 : s.dtype;
    s.p_visible = 0.7;
    s.causal = pick(&r, 0, 1);
    s.scale = pick(&r, 0, 1) ? 0.0f : (float)uniform(&r, 0.05, 0.5);
    if (pick(&r, 0, 4) == 0) {
        s.softcap = (float)uniform(&r, 0.5, 3.0);
        s.scale = 1.0f; /* large scores, so that the cap bends them */
    }
    return s;
}

static void describe(const vspec *s, char *buf, size_t n)
{
    static const char *lay[] = {"none", "q", "k"}, *hm[] = {"H", "Hkv", "1"};
    int w = snprintf(buf, n,
                     "seed %llu: %s B=%d H=%d Hkv=%d D=%d mask=%s/%s bias=%s/%s/%s causal=%d "
                     "softcap=%g scale=%g max=%d/%d lens(q,k)=",
                     (unsigned long long)s->seed, dm_dtype_name(s->dtype), s->B, s->H, s->Hkv, s->D,
                     lay[s->mask], hm[s->mask_hm], lay[s->bias], hm[s->bias_hm],
                     dm_dtype_name(s->bias_dtype), s->causal, (double)s->softcap, (double)s->scale,
                     s->max_q, s->max_k);
    for (int b = 0; b < s->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(buf + w, n - (size_t)w, " %d,%d", s->len_q[b], s->len_k[b]);
}

static size_t elem_bytes(dm_dtype t)
{
    return t == DM_F32 ? 4 : t == DM_BOOL ? 1 : 2;
}

/* A mask or bias buffer of c's shape for layout l: its element count and its descriptor. */
static dm_tensor mb_tensor(const vcase *c, dm_layout l, int64_t heads, dm_dtype dt, void *data)
{
    if (l == DM_LAYOUT_Q)
        return (dm_tensor){
            data, dt, 3, {c->total_q, heads, c->max_k}, {heads * c->max_k, c->max_k, 1}};
    return (dm_tensor){data, dt, 2, {c->total_k, heads}, {heads, 1}};
}

static size_t mb_elems(const vcase *c, dm_layout l, int64_t heads)
{
    return (size_t)(l == DM_LAYOUT_Q ? c->total_q * heads * c->max_k : c->total_k * heads);
}

/* The sequence a query (key) token belongs to, and its index inside it. */
static int seq_of(const int32_t *cu, int B, int64_t t)
{
    for (int b = 0; b < B; b++)
        if (t < cu[b + 1])
            return b;
    return B;
}

static void vcase_free(vcase *c)
{
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->o);
    free(c->lse);
    free(c->mask);
    free(c->bias);
    memset(c, 0, sizeof *c);
}

/* Is element e of a query-layout mask or bias with `heads` heads a column past its query's
 * sequence's keys? */
static bool past_the_keys(const vcase *c, dm_layout l, int64_t heads, size_t e)
{
    if (l != DM_LAYOUT_Q)
        return false;
    int64_t j = (int64_t)(e % (size_t)c->max_k), t = (int64_t)(e / (size_t)c->max_k) / heads;
    return j >= c->s.len_k[seq_of(c->cu_q, c->s.B, t)];
}

/* Random inputs for s; outputs poisoned. Query-layout columns past a sequence's keys hold what
 * must never be read: NaN bias, true mask. */
static void vcase_build(vcase *c, const vspec *s)
{
    rng r = {s->seed ^ 0x5eed};
    memset(c, 0, sizeof *c);
    c->s = *s;
    int longest_q = 0, longest_k = 0;
    for (int b = 0; b < s->B; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + s->len_q[b];
        c->cu_k[b + 1] = c->cu_k[b] + s->len_k[b];
        longest_q = s->len_q[b] > longest_q ? s->len_q[b] : longest_q;
        longest_k = s->len_k[b] > longest_k ? s->len_k[b] : longest_k;
    }
    c->total_q = c->cu_q[s->B];
    c->total_k = c->cu_k[s->B];
    c->max_q = s->max_q >= 0 ? s->max_q : longest_q;
    c->max_k = s->max_k >= 0 ? s->max_k : longest_k;
    c->mask_heads = heads_of(s, s->mask_hm);
    c->bias_heads = heads_of(s, s->bias_hm);
    int64_t H = s->H, Hkv = s->Hkv, D = s->D;
    size_t nq = (size_t)(c->total_q * H * D), nk = (size_t)(c->total_k * Hkv * D);

    /* +1: malloc(0) may be NULL, and an empty batch is a valid call */
    c->q = malloc(nq * 2 + 1);
    c->o = malloc(nq * 2 + 1);
    c->k = malloc(nk * 2 + 1);
    c->v = malloc(nk * 2 + 1);
    c->lse = malloc((size_t)(H * c->total_q) * sizeof(float) + 1);
    ck_assert(c->q && c->o && c->k && c->v && c->lse);
    for (size_t e = 0; e < nq; e++) {
        c->q[e] = to16(s->dtype, uniform(&r, -1, 1));
        c->o[e] = POISON16;
    }
    for (size_t e = 0; e < nk; e++) {
        c->k[e] = to16(s->dtype, uniform(&r, -1, 1));
        c->v[e] = to16(s->dtype, uniform(&r, -1, 1));
    }
    for (int64_t e = 0; e < H * c->total_q; e++)
        c->lse[e] = NAN;

    dm_fwd_varlen_args *a = &c->a;
    a->q = (dm_tensor){c->q, s->dtype, 3, {c->total_q, H, D}, {H * D, D, 1}};
    a->o = (dm_tensor){c->o, s->dtype, 3, {c->total_q, H, D}, {H * D, D, 1}};
    a->k = (dm_tensor){c->k, s->dtype, 3, {c->total_k, Hkv, D}, {Hkv * D, D, 1}};
    a->v = (dm_tensor){c->v, s->dtype, 3, {c->total_k, Hkv, D}, {Hkv * D, D, 1}};
    a->lse = (dm_tensor){c->lse, DM_F32, 2, {H, c->total_q}, {c->total_q, 1}};
    a->cu_seqlens_q = (dm_tensor){c->cu_q, DM_I32, 1, {s->B + 1}, {1}};
    a->cu_seqlens_k = (dm_tensor){c->cu_k, DM_I32, 1, {s->B + 1}, {1}};
    a->max_seqlen_q = c->max_q;
    a->max_seqlen_k = c->max_k;
    a->scale = s->scale;
    a->softcap = s->softcap;
    a->causal = s->causal;

    if (s->mask != DM_LAYOUT_NONE) {
        size_t n = mb_elems(c, s->mask, c->mask_heads);
        c->mask = malloc(n + 1);
        ck_assert_ptr_nonnull(c->mask);
        for (size_t e = 0; e < n; e++) { /* any non-zero byte means visible */
            bool on =
                past_the_keys(c, s->mask, c->mask_heads, e) || uniform(&r, 0, 1) < s->p_visible;
            c->mask[e] = on ? (unsigned char)pick(&r, 1, 255) : 0;
        }
        a->mask = mb_tensor(c, s->mask, c->mask_heads, DM_BOOL, c->mask);
    }
    if (s->bias != DM_LAYOUT_NONE) {
        size_t n = mb_elems(c, s->bias, c->bias_heads);
        c->bias = malloc(n * 4 + 1);
        ck_assert_ptr_nonnull(c->bias);
        for (size_t e = 0; e < n; e++) {
            double x = past_the_keys(c, s->bias, c->bias_heads, e) ? NAN : uniform(&r, -3, 3);
            if (s->bias_dtype == DM_F32)
                ((float *)c->bias)[e] = (float)x;
            else
                ((uint16_t *)c->bias)[e] = to16(s->bias_dtype, x);
        }
        a->bias = mb_tensor(c, s->bias, c->bias_heads, s->bias_dtype, c->bias);
    }
    /* A tensor with no elements goes in as PyTorch passes one: data NULL (the check allows it,
     * and nothing may read it). */
    dm_tensor *all[] = {&a->q, &a->o, &a->k, &a->v, &a->lse, &a->mask, &a->bias};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
        for (int d = 0; d < all[t]->rank; d++)
            if (all[t]->shape[d] == 0)
                all[t]->data = NULL;
}

static dm_status run_ref(vcase *c, char *err, size_t n)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_fwd_varlen_plan p;
    dm_status st = dm_fwd_varlen_check(ctx, "dm_ref_fwd_varlen", &c->a, &p);
    if (st == DM_OK)
        st = dm_ref_fwd_varlen(ctx, &c->a, &p);
    snprintf(err, n, "%s", dm_errmsg(ctx));
    dm_ctx_destroy(ctx);
    return st;
}

/* ---- brute force ---- */

typedef struct outcome {
    int64_t rows, empty_rows, unwritten_rows;
} outcome;

static double bias_at(const vcase *c, int64_t off)
{
    return c->s.bias_dtype == DM_F32 ? ((const float *)c->bias)[off]
                                     : from16(c->s.bias_dtype, ((const uint16_t *)c->bias)[off]);
}

/* Walks every query token: rows of a sequence (clamped to max_seqlen_q) against brute force,
 * every other row (past max_seqlen_q) still poisoned. */
static outcome check_against_brute_force(const vcase *c)
{
    const vspec *s = &c->s;
    char what[768];
    int64_t H = s->H, D = s->D, group = s->H / s->Hkv;
    double scale = s->scale != 0 ? (double)s->scale : (double)(float)(1.0 / sqrt((double)D));
    double *e = malloc(sizeof(double) * (size_t)(c->max_k + 1));
    outcome out = {0, 0, 0};

    ck_assert_ptr_nonnull(e);
    describe(s, what, sizeof what);
    for (int64_t t = 0; t < c->total_q; t++) {
        int b = seq_of(c->cu_q, s->B, t);
        int64_t i = t - c->cu_q[b];
        int64_t Lq = s->len_q[b] < c->max_q ? s->len_q[b] : c->max_q;
        int64_t Lk = s->len_k[b] < c->max_k ? s->len_k[b] : c->max_k;
        int64_t k0 = c->cu_k[b];
        for (int64_t h = 0; h < H; h++) {
            const uint16_t *o = c->o + (t * H + h) * D;
            float lse = c->lse[h * c->total_q + t];
            if (i >= Lq) { /* past max_seqlen_q: not written */
                for (int64_t d = 0; d < D; d++)
                    CHECK(o[d] == POISON16, "%s: o(%lld, %lld) past max_seqlen_q was written", what,
                          (long long)t, (long long)h);
                CHECK(isnan(lse), "%s: lse(%lld, %lld) past max_seqlen_q was written", what,
                      (long long)h, (long long)t);
                out.unwritten_rows++;
                continue;
            }
            out.rows++;
            double sum = 0;
            for (int64_t j = 0; j < Lk; j++) {
                e[j] = 0;
                if (s->causal && j > i + Lk - Lq)
                    continue;
                if (c->mask) {
                    int64_t hm = h / (H / c->mask_heads);
                    int64_t off = s->mask == DM_LAYOUT_Q ? (t * c->mask_heads + hm) * c->max_k + j
                                                         : (k0 + j) * c->mask_heads + hm;
                    if (!c->mask[off])
                        continue;
                }
                double x = 0;
                for (int64_t d = 0; d < D; d++)
                    x += from16(s->dtype, c->q[(t * H + h) * D + d]) *
                         from16(s->dtype, c->k[((k0 + j) * s->Hkv + h / group) * D + d]);
                x *= scale;
                if (c->bias) {
                    int64_t hb = h / (H / c->bias_heads);
                    x += bias_at(c, s->bias == DM_LAYOUT_Q ? (t * c->bias_heads + hb) * c->max_k + j
                                                           : (k0 + j) * c->bias_heads + hb);
                }
                if (s->softcap > 0)
                    x = s->softcap * tanh(x / s->softcap);
                e[j] = exp(x);
                sum += e[j];
            }
            if (sum == 0) { /* no visible key */
                out.empty_rows++;
                for (int64_t d = 0; d < D; d++)
                    CHECK(o[d] == 0, "%s: empty row (%lld, %lld): o[%lld] = 0x%04x, expected +0",
                          what, (long long)t, (long long)h, (long long)d, o[d]);
                CHECK(isinf(lse) && lse > 0, "%s: empty row (%lld, %lld): lse = %g, expected +inf",
                      what, (long long)t, (long long)h, (double)lse);
                continue;
            }
            for (int64_t d = 0; d < D; d++) {
                double want = 0;
                for (int64_t j = 0; j < Lk; j++)
                    if (e[j] > 0)
                        want += e[j] / sum *
                                from16(s->dtype, c->v[((k0 + j) * s->Hkv + h / group) * D + d]);
                double got = from16(s->dtype, o[d]), tol = ulp_at(s->dtype, want);
                CHECK(fabs(got - want) <= tol,
                      "%s: o(%lld, %lld, %lld) = %.9g, brute force %.9g, tol %.3g", what,
                      (long long)t, (long long)h, (long long)d, got, want, tol);
            }
            double want = log(sum);
            CHECK(fabs(lse - want) <= 0x1p-23 * fabs(want) + 1e-12,
                  "%s: lse(%lld, %lld) = %.9g, brute force %.12g", what, (long long)h, (long long)t,
                  (double)lse, want);
        }
    }
    free(e);
    return out;
}

static outcome run_vspec(const vspec *s)
{
    vcase c;
    char err[512], what[768];
    vcase_build(&c, s);
    dm_status st = run_ref(&c, err, sizeof err);
    describe(s, what, sizeof what);
    ck_assert_msg(st == DM_OK, "%s: dm_ref_fwd_varlen: %s", what, err);
    outcome out = check_against_brute_force(&c);
    vcase_free(&c);
    return out;
}

static void add(outcome *total, outcome one)
{
    total->rows += one.rows;
    total->empty_rows += one.empty_rows;
    total->unwritten_rows += one.unwritten_rows;
}

/* ---- the reference against brute force ---- */

START_TEST(every_mask_and_bias_layout_pair_matches_brute_force)
{
    outcome total = {0, 0, 0};
    uint64_t seed = 100;
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++)
            for (int n = 0; n < 12; n++) {
                vspec s = random_vspec(seed++, n % 3, (dm_layout)m, (dm_layout)b);
                add(&total, run_vspec(&s));
            }
    ck_assert_int_gt(total.rows, 1000);
    ck_assert_int_gt(total.empty_rows, 0);
}
END_TEST

START_TEST(every_mask_and_bias_head_count_matches_for_mha_gqa_and_mqa)
{
    uint64_t seed = 1000;
    for (int kind = MHA; kind <= MQA; kind++)
        for (int hm = HM_H; hm <= HM_ONE; hm++)
            for (int l = DM_LAYOUT_Q; l <= DM_LAYOUT_K; l++)
                for (int n = 0; n < 3; n++) {
                    vspec s = random_vspec(seed++, kind, (dm_layout)l, (dm_layout)(3 - l));
                    s.mask_hm = s.bias_hm = hm;
                    run_vspec(&s);
                }
}
END_TEST

START_TEST(causal_is_bottom_right_aligned_per_sequence)
{
    /* Fewer queries than keys, more, equal, one of each, and empty sides, in one batch. */
    static const int lens[][2] = {{3, 11}, {9, 4}, {7, 7}, {1, 13}, {5, 1}, {0, 6}, {4, 0}};
    for (uint64_t seed = 2000; seed < 2040; seed++) {
        vspec s =
            random_vspec(seed, (int)(seed % 3), (dm_layout)(seed % 3), (dm_layout)(seed / 3 % 3));
        s.causal = true;
        s.B = 7;
        for (int b = 0; b < s.B; b++) {
            s.len_q[b] = lens[(b + seed) % 7][0];
            s.len_k[b] = lens[(b + seed) % 7][1];
        }
        run_vspec(&s);
    }
}
END_TEST

START_TEST(sequences_without_queries_or_keys_and_with_one_query_match)
{
    outcome total = {0, 0, 0};
    for (uint64_t seed = 3000; seed < 3060; seed++) {
        vspec s =
            random_vspec(seed, (int)(seed % 3), (dm_layout)(seed % 3), (dm_layout)(seed / 3 % 3));
        s.B = 6;
        static const int lq[] = {0, 1, 5, 1, 0, 9}, lk[] = {4, 0, 0, 17, 0, 1};
        for (int b = 0; b < s.B; b++) {
            s.len_q[b] = lq[(b + seed) % 6];
            s.len_k[b] = lk[(b + seed) % 6];
        }
        add(&total, run_vspec(&s));
    }
    ck_assert_int_gt(total.empty_rows, 0); /* the 0-key sequences' rows */
}
END_TEST

START_TEST(an_empty_batch_and_all_empty_sequences_are_valid)
{
    vspec s = random_vspec(4000, MHA, DM_LAYOUT_K, DM_LAYOUT_K);
    s.B = 3;
    for (int b = 0; b < 3; b++)
        s.len_q[b] = s.len_k[b] = 0; /* total_q = total_k = 0 */
    run_vspec(&s);
    s.len_k[1] = 5; /* keys without queries */
    run_vspec(&s);
    s.mask = s.bias = DM_LAYOUT_Q;
    run_vspec(&s);
}
END_TEST

START_TEST(rows_past_max_seqlen_q_are_not_written_and_keys_past_max_seqlen_k_are_ignored)
{
    outcome total = {0, 0, 0};
    for (uint64_t seed = 5000; seed < 5040; seed++) {
        vspec s =
            random_vspec(seed, (int)(seed % 3), (dm_layout)(seed % 3), (dm_layout)(seed / 3 % 3));
        s.B = 3;
        s.len_q[0] = 9;
        s.len_k[0] = 15;
        s.len_q[1] = 3;
        s.len_k[1] = 4;
        s.len_q[2] = 6;
        s.len_k[2] = 12;
        s.max_q = 6; /* the least dm_fwd_varlen_check allows: ceil(total / B) */
        s.max_k = 11;
        add(&total, run_vspec(&s));
    }
    ck_assert_int_gt(total.unwritten_rows, 0);
}
END_TEST

/* The key layout is one value per key, the same for every query of its sequence: the reference on
 * it equals the reference on the query layout holding that row for every query, bitwise. */
static void broadcast_to_query_layout(const vcase *k_case, vcase *q_case, bool mask)
{
    const vspec *s = &k_case->s;
    int64_t heads = mask ? k_case->mask_heads : k_case->bias_heads;
    size_t es = mask ? 1 : elem_bytes(s->bias_dtype);
    size_t n = mb_elems(k_case, DM_LAYOUT_Q, heads);
    unsigned char *dst = calloc(n * es + 1, 1);
    const unsigned char *src = mask ? k_case->mask : k_case->bias;
    ck_assert_ptr_nonnull(dst);
    for (int64_t t = 0; t < k_case->total_q; t++) {
        int b = seq_of(k_case->cu_q, s->B, t);
        for (int64_t h = 0; h < heads; h++)
            for (int64_t j = 0; j < s->len_k[b] && j < k_case->max_k; j++)
                memcpy(dst + ((t * heads + h) * k_case->max_k + j) * es,
                       src + ((k_case->cu_k[b] + j) * heads + h) * es, es);
    }
    if (mask) {
        free(q_case->mask);
        q_case->mask = dst;
        q_case->s.mask = DM_LAYOUT_Q;
        q_case->a.mask = mb_tensor(q_case, DM_LAYOUT_Q, heads, DM_BOOL, dst);
    } else {
        free(q_case->bias);
        q_case->bias = dst;
        q_case->s.bias = DM_LAYOUT_Q;
        q_case->a.bias = mb_tensor(q_case, DM_LAYOUT_Q, heads, s->bias_dtype, dst);
    }
}

START_TEST(a_key_based_mask_and_bias_equal_the_query_based_ones_broadcast)
{
    char err[512], what[768];
    for (uint64_t seed = 6000; seed < 6060; seed++) {
        /* key-based mask and bias, and each one alone turned into the query layout */
        int which = (int)(seed % 3); /* 0: both, 1: mask only, 2: bias only */
        vspec s = random_vspec(seed, (int)(seed / 3 % 3), DM_LAYOUT_K, DM_LAYOUT_K);
        vcase kc, qc;
        vcase_build(&kc, &s);
        vcase_build(&qc, &s); /* the same seed: the same q, k, v, mask and bias values */
        if (which != 2)
            broadcast_to_query_layout(&kc, &qc, true);
        if (which != 1)
            broadcast_to_query_layout(&kc, &qc, false);
        describe(&s, what, sizeof what);
        ck_assert_msg(run_ref(&kc, err, sizeof err) == DM_OK, "%s: %s", what, err);
        ck_assert_msg(run_ref(&qc, err, sizeof err) == DM_OK, "%s: %s", what, err);
        size_t no = (size_t)(kc.total_q * s.H * s.D), nl = (size_t)(kc.total_q * s.H);
        CHECK(memcmp(kc.o, qc.o, no * 2) == 0, "%s (%d): o differs between the layouts", what,
              which);
        CHECK(memcmp(kc.lse, qc.lse, nl * sizeof(float)) == 0,
              "%s (%d): lse differs between the layouts", what, which);
        check_against_brute_force(&qc);
        vcase_free(&kc);
        vcase_free(&qc);
    }
}
END_TEST

START_TEST(lse_may_be_omitted)
{
    vspec s = random_vspec(7000, GQA, DM_LAYOUT_K, DM_LAYOUT_Q);
    vcase c;
    char err[512];
    vcase_build(&c, &s);
    c.a.lse = (dm_tensor){0};
    ck_assert_int_eq(run_ref(&c, err, sizeof err), DM_OK);
    for (int64_t e = 0; e < s.H * c.total_q; e++)
        CHECK(isnan(c.lse[e]), "lse[%lld] written though lse was absent", (long long)e);
    vcase_free(&c);
}
END_TEST

START_TEST(bad_cu_seqlens_are_rejected_before_anything_is_written)
{
    static const struct {
        int32_t cu[4];
        bool query_side;
        const char *expect;
    } bad[] = {
        {{0, 5, 3, 9}, true, "cu_seqlens_q[2] = 3: expected at least cu_seqlens_q[1] = 5"},
        {{0, 2, 4, 99}, false, "cu_seqlens_k[3] = 99: expected within [0, "},
        {{-1, 2, 4, 6}, true, "cu_seqlens_q[0] = -1: expected within [0, "},
    };
    char err[512];
    for (size_t n = 0; n < sizeof bad / sizeof bad[0]; n++) {
        vspec s = random_vspec(8000, MHA, DM_LAYOUT_K, DM_LAYOUT_NONE);
        s.B = 3;
        for (int b = 0; b < 3; b++) {
            s.len_q[b] = 3;
            s.len_k[b] = 4;
        }
        vcase c;
        vcase_build(&c, &s);
        memcpy(bad[n].query_side ? c.cu_q : c.cu_k, bad[n].cu, sizeof bad[n].cu);
        ck_assert_int_eq(run_ref(&c, err, sizeof err), DM_ERR_INVALID_ARG);
        ck_assert_msg(strstr(err, bad[n].expect), "message '%s' lacks '%s'", err, bad[n].expect);
        ck_assert_ptr_nonnull(strstr(err, "dm_ref_fwd_varlen: "));
        for (size_t e = 0; e < (size_t)(c.total_q * s.H * s.D); e++)
            CHECK(c.o[e] == POISON16, "o[%zu] written on a bad cu_seqlens", e);
        vcase_free(&c);
    }
}
END_TEST

#define TESTS(X) \
    X(every_mask_and_bias_layout_pair_matches_brute_force) \
    X(every_mask_and_bias_head_count_matches_for_mha_gqa_and_mqa) \
    X(causal_is_bottom_right_aligned_per_sequence) \
    X(sequences_without_queries_or_keys_and_with_one_query_match) \
    X(an_empty_batch_and_all_empty_sequences_are_valid) \
    X(rows_past_max_seqlen_q_are_not_written_and_keys_past_max_seqlen_k_are_ignored) \
    X(a_key_based_mask_and_bias_equal_the_query_based_ones_broadcast) \
    X(lse_may_be_omitted) \
    X(bad_cu_seqlens_are_rejected_before_anything_is_written)
DM_TEST_MAIN("ref_varlen", TESTS)
