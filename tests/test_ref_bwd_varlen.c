/* test_ref_bwd_varlen.c: dm_ref_bwd_varlen (reference/ref_bwd_varlen.c) held to
 *   - the dense reference dm_ref_bwd, run per sequence on tensors this file unpacks itself from
 *     the packed buffers and the varlen mask and bias layouts (equal results);
 *   - central finite differences of sum(o * dout), o the float64 forward of each sequence, on
 *     shapes small enough to perturb every element of q, k, v and an f32 bias (the gradients in
 *     f16 are held to their rounding, dbias in f32 to 1e-6); the loss is the forward
 *     dm_ref_fwd_varlen computes (its o is compared with it first), in float64 so that a 1e-5
 *     step shows;
 *   - SPEC §5's layout rules: a query-based dbias is 0 past each sequence's keys, and nothing
 *     outside every sequence (or past max_seqlen) is written: outputs are poisoned first.
 * Random inputs come from fixed seeds, printed on failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwd_varlen_plan.h"
#include "half.h"
#include "harness.h"
#include "ref_util.h"
#include "reference.h"

#define POISON16 0xffff /* NaN in fp16 and bf16 */
#define FD_EPS 1e-5
#define MAX_B 4

/* ---- a test case ---- */

typedef struct bspec {
    uint64_t seed;
    dm_dtype dtype; /* q, k, v, o, dout and the gradients */
    int B, len_q[MAX_B], len_k[MAX_B];
    int pad_q, pad_k; /* tokens past cu_seqlens[B]: outside every sequence */
    int max_q, max_k; /* max_seqlen; 0: the least the check allows over the longest sequence */
    int extra_cols;   /* a query-based mask's and bias's row: max_seqlen_k + extra_cols keys */
    int H, Hkv, D;
    dm_layout mask, bias;
    int mask_heads, bias_heads;
    dm_dtype bias_dtype;
    bool causal;
    float softcap;
} bspec;

typedef struct bcase {
    bspec s;
    int32_t cu_q[MAX_B + 1], cu_k[MAX_B + 1];
    int64_t total_q, total_k, max_q, max_k, cols, n_q, n_k, n_mask, n_bias;
    uint16_t *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *lse;
    unsigned char *mask;
    void *bias, *dbias;
    dm_bwd_varlen_args a;
    char what[512];
} bcase;

/* Zeroed, 64-byte aligned (rows move 16 bytes at a time), never NULL. */
static void *alloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 64) / 64 * 64);
    ck_assert_ptr_nonnull(p);
    memset(p, 0, (bytes + 64) / 64 * 64);
    return p;
}

static size_t bias_bytes(dm_dtype t)
{
    return t == DM_F32 ? 4 : 2;
}

static double bias_value(dm_dtype t, const void *b, int64_t e)
{
    return t == DM_F32 ? ((const float *)b)[e] : from16(t, ((const uint16_t *)b)[e]);
}

/* Packed offsets of element (token t, stored head hm, key j) of a mask or bias: query-based
 * (total_q, heads, cols) with t the query, key-based (total_k, heads) with t the key. */
static int64_t mb_off(const bcase *c, dm_layout l, int64_t heads, int64_t t, int64_t hm, int64_t j)
{
    return l == DM_LAYOUT_Q ? (t * heads + hm) * c->cols + j : t * heads + hm;
}

/* Sequence b's lengths, clamped as SPEC §5's kernels clamp them. */
static int64_t len_q(const bcase *c, int b)
{
    return c->s.len_q[b] < c->max_q ? c->s.len_q[b] : c->max_q;
}

static int64_t len_k(const bcase *c, int b)
{
    return c->s.len_k[b] < c->max_k ? c->s.len_k[b] : c->max_k;
}

static int64_t least_max(int64_t longest, int64_t total, int B)
{
    int64_t m = (total + B - 1) / B;
    return longest > m ? longest : m;
}

static void describe(bcase *c)
{
    static const char *lay[] = {"none", "q", "k"};
    const bspec *s = &c->s;
    int w = snprintf(c->what, sizeof c->what,
                     "seed %llu: %s H=%d Hkv=%d D=%d mask=%s/%d bias=%s/%d/%s causal=%d "
                     "softcap=%g max=%lld/%lld pad=%d/%d lens(q,k)=",
                     (unsigned long long)s->seed, dm_dtype_name(s->dtype), s->H, s->Hkv, s->D,
                     lay[s->mask], s->mask_heads, lay[s->bias], s->bias_heads,
                     dm_dtype_name(s->bias_dtype), s->causal, (double)s->softcap,
                     (long long)c->max_q, (long long)c->max_k, s->pad_q, s->pad_k);
    for (int b = 0; b < s->B && w > 0 && (size_t)w < sizeof c->what; b++)
        w += snprintf(c->what + w, sizeof c->what - (size_t)w, " %d,%d", s->len_q[b], s->len_k[b]);
}

/* Random inputs, o and lse from dm_ref_fwd_varlen, the gradients poisoned. */
static void bcase_build(bcase *c, const bspec *s)
{
    rng r = {s->seed};
    memset(c, 0, sizeof *c);
    c->s = *s;
    int longest_q = 0, longest_k = 0;
    for (int b = 0; b < s->B; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + s->len_q[b];
        c->cu_k[b + 1] = c->cu_k[b] + s->len_k[b];
        longest_q = s->len_q[b] > longest_q ? s->len_q[b] : longest_q;
        longest_k = s->len_k[b] > longest_k ? s->len_k[b] : longest_k;
    }
    c->total_q = c->cu_q[s->B] + s->pad_q;
    c->total_k = c->cu_k[s->B] + s->pad_k;
    c->max_q = s->max_q ? s->max_q : least_max(longest_q, c->total_q, s->B);
    c->max_k = s->max_k ? s->max_k : least_max(longest_k, c->total_k, s->B);
    c->cols = c->max_k + s->extra_cols;
    describe(c);
    const int64_t H = s->H, Hkv = s->Hkv, D = s->D;
    c->n_q = c->total_q * H * D;
    c->n_k = c->total_k * Hkv * D;
    uint16_t **rows_q[] = {&c->q, &c->o, &c->dout, &c->dq},
             **rows_k[] = {&c->k, &c->v, &c->dk, &c->dv};
    for (int t = 0; t < 4; t++) {
        *rows_q[t] = alloc((size_t)c->n_q * 2);
        *rows_k[t] = alloc((size_t)c->n_k * 2);
    }
    for (int64_t e = 0; e < c->n_q; e++) {
        c->q[e] = to16(s->dtype, uniform(&r, -1, 1));
        c->dout[e] = to16(s->dtype, uniform(&r, -1, 1));
        c->o[e] = c->dq[e] = POISON16;
    }
    for (int64_t e = 0; e < c->n_k; e++) {
        c->k[e] = to16(s->dtype, uniform(&r, -1, 1));
        c->v[e] = to16(s->dtype, uniform(&r, -1, 1));
        c->dk[e] = c->dv[e] = POISON16;
    }
    c->lse = alloc((size_t)(H * c->total_q) * 4);

    dm_bwd_varlen_args *a = &c->a;
    memset(a, 0, sizeof *a);
    a->q = (dm_tensor){c->q, s->dtype, 3, {c->total_q, H, D}, {H * D, D, 1}};
    a->o = (dm_tensor){c->o, s->dtype, 3, {c->total_q, H, D}, {H * D, D, 1}};
    a->dout = (dm_tensor){c->dout, s->dtype, 3, {c->total_q, H, D}, {H * D, D, 1}};
    a->dq = (dm_tensor){c->dq, s->dtype, 3, {c->total_q, H, D}, {H * D, D, 1}};
    a->k = (dm_tensor){c->k, s->dtype, 3, {c->total_k, Hkv, D}, {Hkv * D, D, 1}};
    a->v = (dm_tensor){c->v, s->dtype, 3, {c->total_k, Hkv, D}, {Hkv * D, D, 1}};
    a->dk = (dm_tensor){c->dk, s->dtype, 3, {c->total_k, Hkv, D}, {Hkv * D, D, 1}};
    a->dv = (dm_tensor){c->dv, s->dtype, 3, {c->total_k, Hkv, D}, {Hkv * D, D, 1}};
    a->lse = (dm_tensor){c->lse, DM_F32, 2, {H, c->total_q}, {c->total_q, 1}};
    a->cu_seqlens_q = (dm_tensor){c->cu_q, DM_I32, 1, {s->B + 1}, {1}};
    a->cu_seqlens_k = (dm_tensor){c->cu_k, DM_I32, 1, {s->B + 1}, {1}};
    a->max_seqlen_q = c->max_q;
    a->max_seqlen_k = c->max_k;
    a->softcap = s->softcap;
    a->causal = s->causal;

    if (s->mask != DM_LAYOUT_NONE) {
        const int64_t h = s->mask_heads;
        c->n_mask = s->mask == DM_LAYOUT_Q ? c->total_q * h * c->cols : c->total_k * h;
        c->mask = alloc((size_t)c->n_mask);
        for (int64_t e = 0; e < c->n_mask; e++) /* any non-zero byte means visible */
            c->mask[e] = uniform(&r, 0, 1) < 0.75 ? (unsigned char)pick(&r, 1, 255) : 0;
        a->mask = s->mask == DM_LAYOUT_Q
                      ? (dm_tensor){c->mask,
                                    DM_BOOL,
                                    3,
                                    {c->total_q, h, c->cols},
                                    {h * c->cols, c->cols, 1}}
                      : (dm_tensor){c->mask, DM_BOOL, 2, {c->total_k, h}, {h, 1}};
    }
    if (s->bias != DM_LAYOUT_NONE) {
        const int64_t h = s->bias_heads;
        const size_t eb = bias_bytes(s->bias_dtype);
        c->n_bias = s->bias == DM_LAYOUT_Q ? c->total_q * h * c->cols : c->total_k * h;
        c->bias = alloc((size_t)c->n_bias * eb);
        c->dbias = alloc((size_t)c->n_bias * eb);
        for (int64_t e = 0; e < c->n_bias; e++) {
            const double x = uniform(&r, -2, 2);
            if (s->bias_dtype == DM_F32) {
                ((float *)c->bias)[e] = (float)x;
                ((float *)c->dbias)[e] = NAN;
            } else {
                ((uint16_t *)c->bias)[e] = to16(s->bias_dtype, x);
                ((uint16_t *)c->dbias)[e] = POISON16;
            }
        }
        a->bias = s->bias == DM_LAYOUT_Q
                      ? (dm_tensor){c->bias,
                                    s->bias_dtype,
                                    3,
                                    {c->total_q, h, c->cols},
                                    {h * c->cols, c->cols, 1}}
                      : (dm_tensor){c->bias, s->bias_dtype, 2, {c->total_k, h}, {h, 1}};
        a->dbias = a->bias;
        a->dbias.data = c->dbias;
    }

    /* o and lse: the forward's, as a caller of dm_bwd_varlen has them */
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_fwd_varlen_args f = {.q = a->q,
                            .k = a->k,
                            .v = a->v,
                            .o = a->o,
                            .lse = a->lse,
                            .cu_seqlens_q = a->cu_seqlens_q,
                            .cu_seqlens_k = a->cu_seqlens_k,
                            .max_seqlen_q = a->max_seqlen_q,
                            .max_seqlen_k = a->max_seqlen_k,
                            .mask = a->mask,
                            .bias = a->bias,
                            .softcap = a->softcap,
                            .causal = a->causal};
    dm_fwd_varlen_plan fp;
    dm_status st = dm_fwd_varlen_check(ctx, "dm_ref_fwd_varlen", &f, &fp);
    if (st == DM_OK)
        st = dm_ref_fwd_varlen(ctx, &f, &fp);
    ck_assert_msg(st == DM_OK, "%s: forward: %s", c->what, dm_errmsg(ctx));
    dm_ctx_destroy(ctx);
}

static void bcase_free(bcase *c)
{
    void *all[] = {c->q,  c->k,  c->v,   c->o,    c->dout, c->dq,
                   c->dk, c->dv, c->lse, c->mask, c->bias, c->dbias};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
        free(all[t]);
    memset(c, 0, sizeof *c);
}

static void run_bwd(bcase *c)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_status st = dm_ref_bwd_varlen(ctx, &c->a);
    ck_assert_msg(st == DM_OK, "%s: %s", c->what, dm_errmsg(ctx));
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
}

/* The sequence holding query (key) token t inside its clamped length, or -1: outside every
 * sequence, or past max_seqlen. */
static int seq_of(const bcase *c, const int32_t *cu, int64_t t, bool keys)
{
    for (int b = 0; b < c->s.B; b++)
        if (t >= cu[b] && t < cu[b + 1])
            return t - cu[b] < (keys ? len_k(c, b) : len_q(c, b)) ? b : -1;
    return -1;
}

/* Every output element: written (not poison) exactly where a sequence owns it. A query-based
 * dbias is written for columns below max_seqlen_k, 0 past the sequence's keys. */
static void check_written_where_owned(const bcase *c)
{
    const bspec *s = &c->s;
    const int64_t qrow = s->H * s->D, krow = s->Hkv * s->D;
    for (int64_t e = 0; e < c->n_q; e++) {
        bool owned = seq_of(c, c->cu_q, e / qrow, false) >= 0;
        CHECK((c->dq[e] == POISON16) != owned, "%s: dq[%lld] (token %lld) %s", c->what,
              (long long)e, (long long)(e / qrow), owned ? "was not written" : "was written");
    }
    for (int64_t e = 0; e < c->n_k; e++) {
        bool owned = seq_of(c, c->cu_k, e / krow, true) >= 0;
        CHECK((c->dk[e] == POISON16) != owned && (c->dv[e] == POISON16) != owned,
              "%s: dk/dv[%lld] (key token %lld) %s", c->what, (long long)e, (long long)(e / krow),
              owned ? "was not written" : "was written");
    }
    for (int64_t e = 0; c->dbias && e < c->n_bias; e++) {
        const double x = bias_value(s->bias_dtype, c->dbias, e);
        bool owned;
        if (s->bias == DM_LAYOUT_Q) {
            const int64_t t = e / (s->bias_heads * c->cols), j = e % c->cols;
            const int b = seq_of(c, c->cu_q, t, false);
            owned = b >= 0 && j < c->max_k;
            if (owned && j >= len_k(c, b))
                CHECK(x == 0 && !signbit(x), "%s: dbias(%lld, %lld, %lld) past the keys is %g",
                      c->what, (long long)t, (long long)(e / c->cols % s->bias_heads), (long long)j,
                      x);
        } else {
            owned = seq_of(c, c->cu_k, e / s->bias_heads, true) >= 0;
        }
        CHECK(isnan(x) != owned, "%s: dbias[%lld] %s", c->what, (long long)e,
              owned ? "was not written" : "was written");
    }
}

/* ---- (a) the dense reference per sequence ---- */

static dm_tensor dense(void *data, dm_dtype dt, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    dm_tensor t = {data, dt, 4, {s0, s1, s2, s3}, {s1 * s2 * s3, s2 * s3, s3, 1}};
    return t;
}

/* Sequence b's rows of a packed (total, heads, D) 16-bit tensor, contiguous. */
static uint16_t *unpack_rows(const uint16_t *packed, int64_t t0, int64_t L, int64_t heads,
                             int64_t D)
{
    uint16_t *out = alloc((size_t)(L * heads * D) * 2);
    memcpy(out, packed + t0 * heads * D, (size_t)(L * heads * D) * 2);
    return out;
}

/* A varlen mask or bias of sequence b as the dense (1, heads, Lq or 1, Lk) one, bytes `eb` per
 * element. */
static void *unpack_mb(const bcase *c, const void *packed, dm_layout l, int64_t heads, size_t eb,
                       int b, dm_tensor *t, dm_dtype dt)
{
    const int64_t Lq = len_q(c, b), Lk = len_k(c, b), rows = l == DM_LAYOUT_Q ? Lq : 1;
    unsigned char *out = alloc((size_t)(heads * rows * Lk) * eb);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < Lk; j++) {
                const int64_t t = l == DM_LAYOUT_Q ? c->cu_q[b] + i : c->cu_k[b] + j;
                memcpy(out + (size_t)((h * rows + i) * Lk + j) * eb,
                       (const unsigned char *)packed + (size_t)mb_off(c, l, heads, t, h, j) * eb,
                       eb);
            }
    *t = dense(out, dt, 1, heads, rows, Lk);
    return out;
}

static void expect_close(const bcase *c, const char *name, int b, int64_t e, double got,
                         double want)
{
    CHECK(fabs(got - want) <= 1e-12 * (1 + fabs(want)),
          "%s: sequence %d: %s[%lld] = %.17g, the dense reference %.17g", c->what, b, name,
          (long long)e, got, want);
}

/* Every sequence's gradients equal dm_ref_bwd's on its unpacked tensors. */
static void check_against_dense(const bcase *c)
{
    const bspec *s = &c->s;
    const int64_t H = s->H, Hkv = s->Hkv, D = s->D;
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    for (int b = 0; b < s->B; b++) {
        const int64_t Lq = len_q(c, b), Lk = len_k(c, b), q0 = c->cu_q[b], k0 = c->cu_k[b];
        dm_bwd_args a = {.softcap = s->softcap, .causal = s->causal};
        uint16_t *q = unpack_rows(c->q, q0, Lq, H, D), *dout = unpack_rows(c->dout, q0, Lq, H, D);
        uint16_t *k = unpack_rows(c->k, k0, Lk, Hkv, D), *v = unpack_rows(c->v, k0, Lk, Hkv, D);
        uint16_t *o = alloc((size_t)(Lq * H * D) * 2), *dq = alloc((size_t)(Lq * H * D) * 2);
        uint16_t *dk = alloc((size_t)(Lk * Hkv * D) * 2), *dv = alloc((size_t)(Lk * Hkv * D) * 2);
        float *lse = alloc((size_t)(H * Lq) * 4);
        void *mask = NULL, *bias = NULL, *dbias = NULL;
        a.q = dense(q, s->dtype, 1, Lq, H, D);
        a.o = dense(o, s->dtype, 1, Lq, H, D);
        a.dout = dense(dout, s->dtype, 1, Lq, H, D);
        a.dq = dense(dq, s->dtype, 1, Lq, H, D);
        a.k = dense(k, s->dtype, 1, Lk, Hkv, D);
        a.v = dense(v, s->dtype, 1, Lk, Hkv, D);
        a.dk = dense(dk, s->dtype, 1, Lk, Hkv, D);
        a.dv = dense(dv, s->dtype, 1, Lk, Hkv, D);
        a.lse = dense(lse, DM_F32, 1, H, Lq, 1);
        a.lse.rank = 3;
        if (c->mask)
            mask = unpack_mb(c, c->mask, s->mask, s->mask_heads, 1, b, &a.mask, DM_BOOL);
        if (c->bias) {
            const size_t eb = bias_bytes(s->bias_dtype);
            bias = unpack_mb(c, c->bias, s->bias, s->bias_heads, eb, b, &a.bias, s->bias_dtype);
            a.dbias = a.bias;
            a.dbias.data = dbias = alloc((size_t)(a.bias.shape[1] * a.bias.shape[2] * Lk) * eb);
        }
        dm_status st = dm_ref_bwd(ctx, &a);
        ck_assert_msg(st == DM_OK, "%s: sequence %d: %s", c->what, b, dm_errmsg(ctx));

        for (int64_t e = 0; e < Lq * H * D; e++)
            expect_close(c, "dq", b, e, from16(s->dtype, c->dq[q0 * H * D + e]),
                         from16(s->dtype, dq[e]));
        for (int64_t e = 0; e < Lk * Hkv * D; e++) {
            expect_close(c, "dk", b, e, from16(s->dtype, c->dk[k0 * Hkv * D + e]),
                         from16(s->dtype, dk[e]));
            expect_close(c, "dv", b, e, from16(s->dtype, c->dv[k0 * Hkv * D + e]),
                         from16(s->dtype, dv[e]));
        }
        if (c->bias) {
            const int64_t heads = s->bias_heads, rows = a.bias.shape[2];
            for (int64_t h = 0; h < heads; h++)
                for (int64_t i = 0; i < rows; i++)
                    for (int64_t j = 0; j < Lk; j++) {
                        const int64_t t = s->bias == DM_LAYOUT_Q ? q0 + i : k0 + j;
                        const int64_t e = mb_off(c, s->bias, heads, t, h, j);
                        expect_close(c, "dbias", b, e, bias_value(s->bias_dtype, c->dbias, e),
                                     bias_value(s->bias_dtype, dbias, (h * rows + i) * Lk + j));
                    }
        }
        void *all[] = {q, dout, k, v, o, dq, dk, dv, lse, mask, bias, dbias};
        for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
            free(all[t]);
    }
    dm_ctx_destroy(ctx);
}

/* ---- (b) finite differences ---- */

/* The inputs in float64 (q, k, v, dout as (token, head, D), bias packed as the case has it); the
 * loss perturbs them. */
typedef struct fd_inputs {
    double *q, *k, *v, *dout, *bias;
} fd_inputs;

/* sum(o * dout) over every sequence's rows, o each sequence's float64 attention on the packed
 * inputs, the mask and bias read through their varlen layouts here; o (total_q, H, D) kept when
 * o_out is set. */
static double loss(const bcase *c, const fd_inputs *x, double *o_out)
{
    const bspec *s = &c->s;
    const int64_t H = s->H, Hkv = s->Hkv, D = s->D;
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    double l = 0;
    for (int b = 0; b < s->B; b++) {
        const int64_t Lq = len_q(c, b), Lk = len_k(c, b), q0 = c->cu_q[b], k0 = c->cu_k[b];
        if (Lq == 0)
            continue;
        double *o = alloc((size_t)(Lq * H * D) * sizeof(double));
        double *bias = c->bias ? alloc((size_t)(H * Lq * Lk) * sizeof(double)) : NULL;
        unsigned char *mask = c->mask ? alloc((size_t)(H * Lq * Lk)) : NULL;
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t j = 0; j < Lk; j++) {
                    const int64_t e = (h * Lq + i) * Lk + j;
                    if (mask) {
                        const int64_t t = s->mask == DM_LAYOUT_Q ? q0 + i : k0 + j;
                        mask[e] = c->mask[mb_off(c, s->mask, s->mask_heads, t,
                                                 h / (H / s->mask_heads), j)] != 0;
                    }
                    if (bias) {
                        const int64_t t = s->bias == DM_LAYOUT_Q ? q0 + i : k0 + j;
                        bias[e] = x->bias[mb_off(c, s->bias, s->bias_heads, t,
                                                 h / (H / s->bias_heads), j)];
                    }
                }
        dm_ref_attn64 a = {.B = 1,
                           .H = H,
                           .Hkv = Hkv,
                           .Lq = Lq,
                           .Lk = Lk,
                           .D = D,
                           .scale = (float)(1 / sqrt((double)D)), /* the plan's, in float */
                           .softcap = s->softcap,
                           .causal = s->causal,
                           .q = x->q + q0 * H * D,
                           .k = x->k + k0 * Hkv * D,
                           .v = x->v + k0 * Hkv * D,
                           .bias = bias,
                           .mask = mask};
        ck_assert_int_eq(dm_ref_attention64_fwd(ctx, &a, o, NULL), DM_OK);
        for (int64_t e = 0; e < Lq * H * D; e++)
            l += o[e] * x->dout[q0 * H * D + e];
        if (o_out)
            memcpy(o_out + q0 * H * D, o, (size_t)(Lq * H * D) * sizeof *o);
        free(o);
        free(bias);
        free(mask);
    }
    dm_ctx_destroy(ctx);
    return l;
}

static double *decode16(dm_dtype t, const uint16_t *p, int64_t n)
{
    double *out = alloc((size_t)n * sizeof *out);
    for (int64_t e = 0; e < n; e++)
        out[e] = from16(t, p[e]);
    return out;
}

/* The central difference of the loss in x[e], against the analytic `got`: within the output
 * dtype's rounding (f16, bf16: an ulp at the value; f32: 1e-6 relative). */
static void check_fd(const bcase *c, const fd_inputs *in, double *x, int64_t e, double got,
                     dm_dtype out_dtype, const char *name, int64_t token)
{
    const double keep = x[e];
    x[e] = keep + FD_EPS;
    const double up = loss(c, in, NULL);
    x[e] = keep - FD_EPS;
    const double down = loss(c, in, NULL);
    x[e] = keep;
    const double numeric = (up - down) / (2 * FD_EPS);
    const double tol =
        out_dtype == DM_F32 ? 1e-6 * (1 + fabs(numeric)) : ulp_at(out_dtype, numeric) + 1e-7;
    CHECK(fabs(got - numeric) <= tol,
          "%s: %s[%lld] (token %lld): analytic %.9g, finite differences %.9g", c->what, name,
          (long long)e, (long long)token, got, numeric);
}

/* Every element of q, k, v and the bias that a sequence owns perturbed by +-FD_EPS. */
static void check_finite_differences(bcase *c)
{
    const bspec *s = &c->s;
    const int64_t qrow = s->H * s->D, krow = s->Hkv * s->D;
    ck_assert_int_eq(s->dtype, DM_F16);
    ck_assert(!c->bias || s->bias_dtype == DM_F32);
    fd_inputs in = {.q = decode16(s->dtype, c->q, c->n_q),
                    .k = decode16(s->dtype, c->k, c->n_k),
                    .v = decode16(s->dtype, c->v, c->n_k),
                    .dout = decode16(s->dtype, c->dout, c->n_q)};
    if (c->bias) {
        in.bias = alloc((size_t)c->n_bias * sizeof(double));
        for (int64_t e = 0; e < c->n_bias; e++)
            in.bias[e] = ((const float *)c->bias)[e];
    }
    /* the loss is dm_ref_fwd_varlen's forward: its o, rounded (another summation order) */
    double *o = alloc((size_t)c->n_q * sizeof *o);
    loss(c, &in, o);
    for (int64_t e = 0; e < c->n_q; e++)
        if (seq_of(c, c->cu_q, e / qrow, false) >= 0)
            CHECK(fabs(from16(s->dtype, c->o[e]) - o[e]) <= ulp_at(s->dtype, o[e]),
                  "%s: o[%lld] = %g from dm_ref_fwd_varlen, %.9g from the loss", c->what,
                  (long long)e, from16(s->dtype, c->o[e]), o[e]);
    free(o);

    run_bwd(c);
    check_written_where_owned(c);
    int64_t checked = 0;
    for (int64_t e = 0; e < c->n_q; e++)
        if (seq_of(c, c->cu_q, e / qrow, false) >= 0) {
            check_fd(c, &in, in.q, e, from16(s->dtype, c->dq[e]), s->dtype, "dq", e / qrow);
            checked++;
        }
    for (int64_t e = 0; e < c->n_k; e++)
        if (seq_of(c, c->cu_k, e / krow, true) >= 0) {
            check_fd(c, &in, in.k, e, from16(s->dtype, c->dk[e]), s->dtype, "dk", e / krow);
            check_fd(c, &in, in.v, e, from16(s->dtype, c->dv[e]), s->dtype, "dv", e / krow);
            checked += 2;
        }
    for (int64_t e = 0; c->bias && e < c->n_bias; e++) {
        const bool by_query = s->bias == DM_LAYOUT_Q;
        const int64_t t = by_query ? e / (s->bias_heads * c->cols) : e / s->bias_heads;
        if (seq_of(c, by_query ? c->cu_q : c->cu_k, t, !by_query) < 0 ||
            (by_query && e % c->cols >= c->max_k))
            continue;
        check_fd(c, &in, in.bias, e, ((const float *)c->dbias)[e], DM_F32, "dbias", t);
        checked++;
    }
    ck_assert_int_gt(checked, 0);
    free(in.q);
    free(in.k);
    free(in.v);
    free(in.dout);
    free(in.bias);
}

/* Three sequences: 3 queries over 4 keys, none over 2 (its keys get dk = dv = 0), 1 over none
 * (dq = 0); a token of each kind outside every sequence. A key-based mask (one head) and a
 * key-based f32 bias (H heads), summed over each sequence's queries. */
START_TEST(key_mask_and_key_bias_gradients_match_finite_differences)
{
    bspec s = {.seed = 11,
               .dtype = DM_F16,
               .B = 3,
               .len_q = {3, 0, 1},
               .len_k = {4, 2, 0},
               .pad_q = 1,
               .pad_k = 1,
               .H = 2,
               .Hkv = 1,
               .D = 8,
               .mask = DM_LAYOUT_K,
               .mask_heads = 1,
               .bias = DM_LAYOUT_K,
               .bias_heads = 2,
               .bias_dtype = DM_F32};
    bcase c;
    bcase_build(&c, &s);
    check_finite_differences(&c);
    bcase_free(&c);
}
END_TEST

/* Causal bottom-right per sequence (3 queries over 2 keys: the first sees none), softcap, a
 * query-based f32 bias of one head (summed over both), its rows two columns longer than
 * max_seqlen_k, and a sequence without queries. */
START_TEST(a_query_bias_under_causal_and_softcap_matches_finite_differences)
{
    bspec s = {.seed = 12,
               .dtype = DM_F16,
               .B = 3,
               .len_q = {1, 3, 0},
               .len_k = {3, 2, 1},
               .pad_q = 1,
               .pad_k = 1,
               .extra_cols = 2,
               .H = 2,
               .Hkv = 1,
               .D = 8,
               .bias = DM_LAYOUT_Q,
               .bias_heads = 1,
               .bias_dtype = DM_F32,
               .causal = true,
               .softcap = 2};
    bcase c;
    bcase_build(&c, &s);
    check_finite_differences(&c);
    bcase_free(&c);
}
END_TEST

/* A query-based mask (H heads) with a key-based f32 bias of one head (summed over the heads
 * and the queries), causal, one query over one key, one query over none. */
START_TEST(a_query_mask_with_a_one_head_key_bias_matches_finite_differences)
{
    bspec s = {.seed = 13,
               .dtype = DM_F16,
               .B = 3,
               .len_q = {3, 1, 1},
               .len_k = {4, 1, 0},
               .pad_k = 1,
               .H = 2,
               .Hkv = 1,
               .D = 8,
               .mask = DM_LAYOUT_Q,
               .mask_heads = 2,
               .bias = DM_LAYOUT_K,
               .bias_heads = 1,
               .bias_dtype = DM_F32,
               .causal = true};
    bcase c;
    bcase_build(&c, &s);
    check_finite_differences(&c);
    bcase_free(&c);
}
END_TEST

/* ---- (a), (c), (d) ---- */

/* bf16 inputs, every pair of mask and bias layouts, bias f32 or bf16 with 1, Hkv or H heads,
 * lengths 0 and 1 among them, GQA 4 over 2: each sequence as the dense reference has it. */
START_TEST(each_sequence_equals_the_dense_reference_on_its_unpacked_tensors)
{
    static const dm_layout layouts[] = {DM_LAYOUT_NONE, DM_LAYOUT_Q, DM_LAYOUT_K};
    static const int heads[] = {1, 2, 4};
    uint64_t seed = 100;
    for (int m = 0; m < 3; m++)
        for (int bl = 0; bl < 3; bl++)
            for (int f32 = 0; f32 < 2; f32++)
                for (int hm = 0; hm < 3; hm++) {
                    if (layouts[bl] == DM_LAYOUT_NONE && (f32 || hm))
                        continue;
                    seed++;
                    bspec s = {.seed = seed,
                               .dtype = DM_BF16,
                               .B = 4,
                               .len_q = {3, 0, 1, 5},
                               .len_k = {6, 3, 0, 4},
                               .pad_q = (int)(seed % 3),
                               .pad_k = (int)(seed % 2),
                               .extra_cols = (int)(seed % 2),
                               .H = 4,
                               .Hkv = 2,
                               .D = 16,
                               .mask = layouts[m],
                               .mask_heads = heads[(hm + 1) % 3],
                               .bias = layouts[bl],
                               .bias_heads = heads[hm],
                               .bias_dtype = f32 ? DM_F32 : DM_BF16,
                               .causal = seed % 2 == 0,
                               .softcap = seed % 5 == 0 ? 1.5f : 0};
                    bcase c;
                    bcase_build(&c, &s);
                    run_bwd(&c);
                    check_written_where_owned(&c);
                    check_against_dense(&c);
                    bcase_free(&c);
                }
}
END_TEST

/* cu_seqlens longer than max_seqlen: the rows past max_seqlen_q and the keys past max_seqlen_k
 * are neither read nor written, the rest is the dense reference on the clamped lengths. */
START_TEST(lengths_past_max_seqlen_are_clamped_as_the_forward_clamps_them)
{
    for (int bl = 0; bl < 2; bl++) {
        bspec s = {.seed = 21 + (uint64_t)bl,
                   .dtype = DM_BF16,
                   .B = 2,
                   .len_q = {3, 1},
                   .len_k = {5, 1},
                   .max_q = 2,
                   .max_k = 3,
                   .H = 2,
                   .Hkv = 2,
                   .D = 8,
                   .mask = DM_LAYOUT_K,
                   .mask_heads = 2,
                   .bias = bl ? DM_LAYOUT_Q : DM_LAYOUT_K,
                   .bias_heads = 1,
                   .bias_dtype = DM_F32,
                   .causal = true};
        bcase c;
        bcase_build(&c, &s);
        run_bwd(&c);
        check_written_where_owned(&c); /* query 2 and keys 3, 4 of sequence 0 stay poisoned */
        ck_assert_int_eq(c.dq[2 * 2 * 8], POISON16);
        ck_assert_int_eq(c.dk[4 * 2 * 8], POISON16);
        check_against_dense(&c);
        bcase_free(&c);
    }
}
END_TEST

/* A query-based dbias, f32 and bf16, rows 3 columns longer than max_seqlen_k: a sequence's
 * columns from its key count to max_seqlen_k are +0; those past max_seqlen_k are left alone. */
START_TEST(a_query_based_dbias_is_zero_past_each_sequences_keys)
{
    for (int f32 = 0; f32 < 2; f32++) {
        bspec s = {.seed = 31 + (uint64_t)f32,
                   .dtype = DM_BF16,
                   .B = 3,
                   .len_q = {2, 3, 1},
                   .len_k = {5, 1, 0},
                   .pad_q = 1,
                   .extra_cols = 3,
                   .H = 4,
                   .Hkv = 2,
                   .D = 8,
                   .bias = DM_LAYOUT_Q,
                   .bias_heads = 2,
                   .bias_dtype = f32 ? DM_F32 : DM_BF16};
        bcase c;
        bcase_build(&c, &s);
        run_bwd(&c);
        check_written_where_owned(&c);
        int64_t zeros = 0;
        for (int b = 0; b < s.B; b++)
            for (int64_t t = c.cu_q[b]; t < c.cu_q[b + 1]; t++)
                for (int64_t h = 0; h < s.bias_heads; h++)
                    for (int64_t j = s.len_k[b]; j < c.cols; j++) {
                        const double x =
                            bias_value(s.bias_dtype, c.dbias, mb_off(&c, DM_LAYOUT_Q, 2, t, h, j));
                        if (j < c.max_k) {
                            CHECK(x == 0 && !signbit(x), "%s: column %lld is %g", c.what,
                                  (long long)j, x);
                            zeros++;
                        } else {
                            CHECK(isnan(x), "%s: column %lld past max_seqlen_k was written", c.what,
                                  (long long)j);
                        }
                    }
        ck_assert_int_eq(zeros, 2 * (2 * 0 + 3 * 4 + 1 * 5)); /* heads x rows x columns */
        check_against_dense(&c);
        bcase_free(&c);
    }
}
END_TEST

/* Tokens past cu_seqlens[B] (queries and keys) keep their poison in dq, dk, dv and dbias of
 * either layout, whatever the sequences around them. */
START_TEST(rows_outside_every_sequence_keep_their_poison)
{
    for (int bl = 0; bl < 2; bl++) {
        bspec s = {.seed = 41 + (uint64_t)bl,
                   .dtype = DM_F16,
                   .B = 2,
                   .len_q = {2, 0},
                   .len_k = {3, 0},
                   .pad_q = 3,
                   .pad_k = 4,
                   .H = 2,
                   .Hkv = 1,
                   .D = 8,
                   .bias = bl ? DM_LAYOUT_Q : DM_LAYOUT_K,
                   .bias_heads = 2,
                   .bias_dtype = DM_F16};
        bcase c;
        bcase_build(&c, &s);
        run_bwd(&c);
        check_written_where_owned(&c);
        for (int64_t e = 2 * 2 * 8; e < c.n_q; e++)
            CHECK(c.dq[e] == POISON16, "%s: dq[%lld] was written", c.what, (long long)e);
        for (int64_t e = 3 * 8; e < c.n_k; e++)
            CHECK(c.dk[e] == POISON16 && c.dv[e] == POISON16, "%s: dk/dv[%lld] was written", c.what,
                  (long long)e);
        bcase_free(&c);
    }
}
END_TEST

/* A refused call (a bad argument, or cu_seqlens that decrease) writes nothing. */
START_TEST(a_refused_call_writes_nothing)
{
    bspec s = {.seed = 51,
               .dtype = DM_BF16,
               .B = 2,
               .len_q = {2, 2},
               .len_k = {3, 2},
               .H = 2,
               .Hkv = 1,
               .D = 8,
               .bias = DM_LAYOUT_K,
               .bias_heads = 1,
               .bias_dtype = DM_F32};
    for (int bad = 0; bad < 2; bad++) {
        bcase c;
        bcase_build(&c, &s);
        if (bad == 0)
            c.a.dbias.dtype = DM_BF16;
        else
            c.cu_k[1] = 6; /* past cu_seqlens_k[2] = 5 */
        dm_ctx *ctx = NULL;
        ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
        ck_assert_int_eq(dm_ref_bwd_varlen(ctx, &c.a), DM_ERR_INVALID_ARG);
        const char *msg = dm_errmsg(ctx);
        ck_assert_msg(strncmp(msg, "dm_ref_bwd_varlen: ", 19) == 0, "message '%s'", msg);
        ck_assert_msg(strstr(msg, bad == 0 ? "dbias.dtype" : "cu_seqlens_k") != NULL,
                      "message '%s'", msg);
        dm_ctx_destroy(ctx);
        for (int64_t e = 0; e < c.n_q; e++)
            CHECK(c.dq[e] == POISON16, "dq[%lld] was written", (long long)e);
        for (int64_t e = 0; e < c.n_k; e++)
            CHECK(c.dk[e] == POISON16 && c.dv[e] == POISON16, "dk/dv[%lld] was written",
                  (long long)e);
        for (int64_t e = 0; e < c.n_bias; e++)
            CHECK(isnan(((float *)c.dbias)[e]), "dbias[%lld] was written", (long long)e);
        bcase_free(&c);
    }
}
END_TEST

#define TESTS(X) \
    X(key_mask_and_key_bias_gradients_match_finite_differences) \
    X(a_query_bias_under_causal_and_softcap_matches_finite_differences) \
    X(a_query_mask_with_a_one_head_key_bias_matches_finite_differences) \
    X(each_sequence_equals_the_dense_reference_on_its_unpacked_tensors) \
    X(lengths_past_max_seqlen_are_clamped_as_the_forward_clamps_them) \
    X(a_query_based_dbias_is_zero_past_each_sequences_keys) \
    X(rows_outside_every_sequence_keep_their_poison) \
    X(a_refused_call_writes_nothing)
DM_TEST_MAIN("ref_bwd_varlen", TESTS)
