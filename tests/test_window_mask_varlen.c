/* test_window_mask_varlen.c: dm_window_mask_varlen without a GPU: the CPU reference against a
 * brute force built from the dense reference one sequence at a time (each sequence's rows copied
 * out as a B = 1 dm_window_mask problem), the whole-call "mask unchanged" case, every bad
 * argument's status and message, and dm_ref_fwd_varlen with a window equal to dm_ref_fwd_varlen
 * on the explicit mask. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_varlen_plan.h"
#include "harness.h"
#include "reference.h"
#include "wmask_varlen_case.h"
#include "wmask_varlen_plan.h"

static dm_ctx *offline(void)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    return ctx;
}

/* ---- brute force: the dense reference, one sequence at a time ---------------------------- */

/* A packed dense (1, heads, rows, Lk) copy of sequence b's part of a varlen bias or mask; rows is
 * the sequence's query count for a query-based tensor, 1 for a key-based one. */
static dm_tensor dense_copy(const dm_tensor *x, const wv_case *c, int b, int64_t Lk)
{
    size_t e = wv_elem_bytes(x->dtype);
    int64_t rows = x->rank == 3 ? c->s.len_q[b] : 1, heads = x->shape[1];
    dm_tensor d = {.dtype = x->dtype, .rank = 4, .shape = {1, heads, rows, Lk},
                   .strides = {heads * rows * Lk, rows * Lk, Lk, 1}};
    d.data = malloc((size_t)(heads * rows * Lk) * e + 1);
    ck_assert_ptr_nonnull(d.data);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < Lk; j++) {
                int64_t token = x->rank == 3 ? c->cu_q[b] + i : c->cu_k[b];
                memcpy((char *)d.data + (size_t)((h * rows + i) * Lk + j) * e,
                       (const char *)x->data + (size_t)wv_at(x, token, h, j) * e, e);
            }
    return d;
}

/* Sequence b's rows of the varlen out against dm_ref_window_mask on the dense copies (or, when
 * the window keeps every key, against the mask itself); a query-based out's columns past the
 * sequence's keys must be false. Returns the rows compared. */
static long check_sequence(const wv_case *c, int b, const char *what)
{
    const unsigned char *got = c->out.data;
    int64_t Lk = c->s.len_k[b], by_q = c->out_layout == DM_LAYOUT_Q;
    int64_t rows = by_q ? c->s.len_q[b] : 1;
    long compared = 0;

    if (by_q) /* columns past the keys */
        for (int64_t i = 0; i < rows; i++)
            for (int64_t h = 0; h < c->heads; h++)
                for (int64_t j = Lk; j < c->max_k; j++)
                    ck_assert_msg(got[wv_at(&c->out, c->cu_q[b] + i, h, j)] == 0,
                                  "%s: seq %d row %lld head %lld: column %lld past its %lld keys "
                                  "is not false",
                                  what, b, (long long)i, (long long)h, (long long)j, (long long)Lk);
    if (Lk == 0 || rows == 0)
        return 0;
    dm_window_mask_args w = {.B = 1, .Lq = rows, .Lk = Lk, .window = c->s.window,
                             .relu = c->s.relu, .block_size = c->s.block_size,
                             .has_min_value = c->s.has_min, .min_value = c->s.min_value};
    w.bias = dense_copy(&c->bias, c, b, Lk);
    if (c->mask.data)
        w.mask = dense_copy(&c->mask, c, b, Lk);
    w.out = (dm_tensor){.dtype = DM_BOOL, .rank = 4, .shape = {1, c->heads, rows, Lk},
                        .strides = {c->heads * rows * Lk, rows * Lk, Lk, 1}};
    unsigned char *want = malloc((size_t)(c->heads * rows * Lk) + 1);
    ck_assert_ptr_nonnull(want);
    w.out.data = want;
    dm_ctx *ctx = offline();
    int applied = -1;
    ck_assert_msg(dm_ref_window_mask(ctx, &w, &applied) == DM_OK, "%s: %s", what,
                  dm_errmsg(ctx));
    dm_ctx_destroy(ctx);
    ck_assert_int_eq(applied, Lk > c->s.window);
    for (int64_t h = 0; h < c->heads; h++)
        for (int64_t i = 0; i < rows; i++) {
            for (int64_t j = 0; j < Lk; j++) {
                unsigned char m = 1;
                if (w.mask.data) {
                    int64_t hm = w.mask.shape[1] == 1 ? 0 : h, im = w.mask.shape[2] == 1 ? 0 : i;
                    m = ((unsigned char *)w.mask.data)[hm * w.mask.strides[1] + im * Lk + j] != 0;
                }
                unsigned char e = applied ? want[(h * rows + i) * Lk + j] : m;
                int64_t token = by_q ? c->cu_q[b] + i : c->cu_k[b];
                ck_assert_msg(got[wv_at(&c->out, token, h, j)] == e,
                              "%s: seq %d row %lld head %lld key %lld: %d, dense reference %d",
                              what, b, (long long)i, (long long)h, (long long)j,
                              got[wv_at(&c->out, token, h, j)], e);
            }
            compared++;
        }
    free(want);
    free(w.bias.data);
    free(w.mask.data);
    return compared;
}

static void run_varlen_ref(wv_case *c, int want_applied, const char *what)
{
    dm_window_mask_varlen_args a = wv_args(c);
    dm_ctx *ctx = offline();
    int applied = -1;
    ck_assert_msg(dm_ref_window_mask_varlen(ctx, &a, &applied) == DM_OK, "%s: %s", what,
                  dm_errmsg(ctx));
    ck_assert_int_eq(applied, want_applied);
    dm_ctx_destroy(ctx);
}

static wv_spec random_spec(uint64_t *r)
{
    static const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    wv_spec s = {0};
    s.dtype = dtypes[wv_rng(r) % 3];
    s.B = 1 + (int)(wv_rng(r) % 5);
    s.window = 1 + (int)(wv_rng(r) % 6);
    for (int b = 0; b < s.B; b++) {
        int x = (int)(wv_rng(r) % 5); /* 0 keys, 1 key, at most the window, past it */
        s.len_k[b] = x == 0 ? 0 : x == 1 ? 1 : x == 2 ? 1 + (int)(wv_rng(r) % s.window)
                                                      : s.window + 1 + (int)(wv_rng(r) % 15);
        s.len_q[b] = (int)(wv_rng(r) % 5);
    }
    s.bias = wv_rng(r) % 2 ? DM_LAYOUT_Q : DM_LAYOUT_K;
    s.mask = (dm_layout)(wv_rng(r) % 3);
    int64_t H = 1 + (int64_t)(wv_rng(r) % 3);
    s.bias_heads = wv_rng(r) % 2 ? H : 1;
    s.mask_heads = wv_rng(r) % 2 ? H : 1;
    s.head_major = wv_rng(r) % 2;
    s.relu = wv_rng(r) % 8 == 0;
    s.block_size = wv_rng(r) % 6 == 0 ? 2 + (int)(wv_rng(r) % 3) : 0;
    s.distinct = wv_rng(r) % 2 ? 4 : 0;
    s.nans = wv_rng(r) % 4 == 0;
    s.percent_true = 50 + (int)(wv_rng(r) % 51);
    if (wv_rng(r) % 5 == 0) {
        s.has_min = 1;
        s.min_value = -1.0;
    }
    return s;
}

START_TEST(reference_matches_the_dense_reference_per_sequence)
{
    long rows = 0, layouts[3] = {0, 0, 0};
    uint64_t r = 0x77aa;
    for (int n = 0; n < 400; n++) {
        wv_spec s = random_spec(&r);
        wv_case c;
        char what[512];
        wv_build(&c, &s, 1000 + (uint64_t)n);
        wv_describe(&c, what, sizeof what);
        if (c.max_k <= s.window) { /* the whole call keeps its mask: nothing is written */
            run_varlen_ref(&c, 0, what);
            for (size_t e = 0; e < c.out_elems; e++)
                ck_assert_int_eq(((unsigned char *)c.out.data)[e], WV_POISON);
            wv_free(&c);
            continue;
        }
        run_varlen_ref(&c, 1, what);
        for (int b = 0; b < s.B; b++)
            rows += check_sequence(&c, b, what);
        layouts[c.out_layout]++;
        wv_free(&c);
    }
    ck_assert_int_gt(rows, 2000);
    ck_assert_int_gt(layouts[DM_LAYOUT_Q], 50);
    ck_assert_int_gt(layouts[DM_LAYOUT_K], 20);
}
END_TEST

/* A fixed batch: sequences of 0, 1, W and 3W keys, one of them with no queries. */
static wv_spec fixed_spec(dm_layout bias, dm_layout mask)
{
    wv_spec s = {.B = 5, .len_q = {2, 3, 0, 1, 2}, .len_k = {0, 1, 4, 12, 9}, .dtype = DM_BF16,
                 .bias = bias, .mask = mask, .bias_heads = 2, .mask_heads = 1, .window = 4,
                 .percent_true = 80};
    return s;
}

START_TEST(key_based_bias_and_mask_give_one_row_per_sequence_and_head)
{
    static const dm_layout bias[] = {DM_LAYOUT_K, DM_LAYOUT_K, DM_LAYOUT_K, DM_LAYOUT_Q},
                           mask[] = {DM_LAYOUT_NONE, DM_LAYOUT_K, DM_LAYOUT_Q, DM_LAYOUT_K};
    for (int i = 0; i < 4; i++) {
        wv_spec s = fixed_spec(bias[i], mask[i]);
        wv_case c;
        wv_build(&c, &s, 9);
        dm_window_mask_varlen_args a = wv_args(&c);
        dm_wmask_varlen_plan p;
        dm_ctx *ctx = offline();
        ck_assert_msg(dm_wmask_varlen_check(ctx, "t", &a, true, &p) == DM_OK, "%s",
                      dm_errmsg(ctx));
        dm_ctx_destroy(ctx);
        bool by_key = bias[i] == DM_LAYOUT_K && mask[i] != DM_LAYOUT_Q;
        ck_assert_int_eq(p.out_layout, by_key ? DM_LAYOUT_K : DM_LAYOUT_Q);
        ck_assert_int_eq(dm_wmask_varlen_rows(&p), by_key ? 5 * 2 : c.total_q * 2);
        /* scratch for the forward's mask': (total_k, Hm') key-based, never total_q x max_k */
        ck_assert_uint_eq(dm_wmask_varlen_out_bytes(&p),
                          by_key ? (size_t)c.total_k * 2 : (size_t)(c.total_q * 2 * c.max_k));
        wv_free(&c);
    }
}
END_TEST

START_TEST(no_window_or_max_seqlen_k_within_the_window_touches_nothing)
{
    wv_spec s = fixed_spec(DM_LAYOUT_K, DM_LAYOUT_NONE);
    wv_case c;
    wv_build(&c, &s, 3);
    dm_ctx *ctx = offline();
    for (int i = 0; i < 2; i++) {
        dm_window_mask_varlen_args a = wv_args(&c);
        a.window = i == 0 ? 0 : 12; /* max_seqlen_k = 12 */
        if (i == 1)
            a.out = (dm_tensor){0}; /* out may be absent */
        int applied = -1;
        ck_assert_msg(dm_window_mask_varlen(ctx, &a, &applied, NULL) == DM_OK, "%s",
                      dm_errmsg(ctx));
        ck_assert_int_eq(applied, 0);
        ck_assert_msg(dm_ref_window_mask_varlen(ctx, &a, &applied) == DM_OK, "%s",
                      dm_errmsg(ctx));
        ck_assert_int_eq(applied, 0);
    }
    for (size_t e = 0; e < c.out_elems; e++)
        ck_assert_int_eq(((unsigned char *)c.out.data)[e], WV_POISON);
    dm_ctx_destroy(ctx);
    wv_free(&c);
}
END_TEST

/* ---- bad arguments ----------------------------------------------------------------------- */

/* DM_ERR_INVALID_ARG with a message that starts with the call and names `needle`; applied 0 and
 * out untouched. */
static void expect_names(wv_case *c, const dm_window_mask_varlen_args *a, const char *needle)
{
    dm_ctx *ctx = offline();
    int applied = -1;
    ck_assert_int_eq(dm_window_mask_varlen(ctx, a, &applied, NULL), DM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dm_errmsg(ctx), needle), "'%s' does not name '%s'", dm_errmsg(ctx),
                  needle);
    ck_assert_int_eq(strncmp(dm_errmsg(ctx), "dm_window_mask_varlen: ", 23), 0);
    ck_assert_int_eq(applied, 0);
    for (size_t e = 0; e < c->out_elems; e++)
        ck_assert_int_eq(((unsigned char *)c->out.data)[e], WV_POISON);
    dm_ctx_destroy(ctx);
}

START_TEST(every_bad_argument_is_named)
{
    wv_spec s = fixed_spec(DM_LAYOUT_Q, DM_LAYOUT_K); /* out query-based (8, 2, 12) */
    wv_case c;
    wv_build(&c, &s, 5);
    dm_window_mask_varlen_args a = wv_args(&c), b;
    dm_ctx *ctx = offline();
    int applied;
    ck_assert_int_eq(dm_window_mask_varlen(NULL, &a, &applied, NULL), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_window_mask_varlen(ctx, NULL, &applied, NULL), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx),
                     "dm_window_mask_varlen: args is NULL: expected a dm_window_mask_varlen_args");
    ck_assert_int_eq(dm_window_mask_varlen(ctx, &a, NULL, NULL), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "applied is NULL"));
    dm_ctx_destroy(ctx);

    b = a, b.window = -1, expect_names(&c, &b, "window = -1: expected >= 0");
    b = a, b.total_q = -1, expect_names(&c, &b, "total_q = -1");
    b = a, b.total_k = (int64_t)INT32_MAX + 1, expect_names(&c, &b, "total_k = 2147483648");
    b = a, b.cu_seqlens_q.data = NULL, expect_names(&c, &b, "cu_seqlens_q.data is NULL");
    b = a, b.cu_seqlens_k.rank = 2, expect_names(&c, &b, "cu_seqlens_k.rank = 2");
    b = a, b.cu_seqlens_q.dtype = DM_F32, expect_names(&c, &b, "cu_seqlens_q.dtype = f32");
    b = a, b.cu_seqlens_k.dtype = DM_BOOL, expect_names(&c, &b, "cu_seqlens_k.dtype = bool");
    b = a, b.cu_seqlens_q.shape[0] = 1, b.cu_seqlens_k.shape[0] = 1,
    expect_names(&c, &b, "cu_seqlens_q.shape[0] = 1: expected B + 1 >= 2");
    b = a, b.cu_seqlens_k.shape[0] = 4, expect_names(&c, &b, "cu_seqlens_k.shape[0] = 4");
    b = a, b.cu_seqlens_k.strides[0] = 2, expect_names(&c, &b, "cu_seqlens_k.strides[0]");
    b = a, b.max_seqlen_q = -1, expect_names(&c, &b, "max_seqlen_q = -1");
    b = a, b.max_seqlen_k = c.total_k + 1,
    expect_names(&c, &b, "max_seqlen_k = 27: expected at most total_k");
    b = a, b.max_seqlen_k = 5, expect_names(&c, &b, "max_seqlen_k = 5: expected at least ceil");
    b = a, b.relu = 2, expect_names(&c, &b, "relu = 2");
    b = a, b.block_size = -1, expect_names(&c, &b, "block_size = -1");
    b = a, b.has_min_value = 1, b.min_value = NAN, expect_names(&c, &b, "min_value is NaN");
    b = a, b.window = (1 << 20) + 1, b.max_seqlen_k = 1 << 22, b.total_k = 1 << 22,
    expect_names(&c, &b, "window = 1048577: expected at most");
    b = a, memset(&b.bias, 0, sizeof b.bias), expect_names(&c, &b, "bias is absent");
    b = a, b.bias.rank = 4, expect_names(&c, &b, "bias.rank = 4");
    b = a, b.bias.dtype = DM_BOOL, expect_names(&c, &b, "bias.dtype = bool: expected a floating");
    b = a, b.bias.shape[0] = c.total_k, expect_names(&c, &b, "bias.shape[0] = 26");
    b = a, b.bias.shape[1] = 0, expect_names(&c, &b, "bias.shape[1] (Hm) = 0");
    b = a, b.bias.shape[2] = 11,
    expect_names(&c, &b, "bias.shape[2] = 11: expected at least max_seqlen_k");
    b = a, b.bias.strides[2] = 2, expect_names(&c, &b, "bias.strides[2]");
    b = a, b.mask.dtype = DM_F16, expect_names(&c, &b, "mask.dtype = f16: expected bool");
    b = a, b.mask.rank = 1, expect_names(&c, &b, "mask.rank = 1");
    b = a, b.mask.shape[0] = c.total_q, expect_names(&c, &b, "mask.shape[0] = 8");
    b = a, b.mask.shape[1] = 3, b.mask.strides[1] = 1, b.mask.strides[0] = 3,
    expect_names(&c, &b, "mask.shape[1] = 3 and bias.shape[1] = 2 do not broadcast");
    b = a, b.mask.strides[0] = -1, expect_names(&c, &b, "mask.strides");
    b = a, memset(&b.out, 0, sizeof b.out), expect_names(&c, &b, "out is absent");
    b = a, b.out.rank = 2, expect_names(&c, &b, "out.rank = 2: expected 3 query-based");
    b = a, b.out.dtype = DM_F16, expect_names(&c, &b, "out.dtype = f16: expected bool");
    b = a, b.out.shape[1] = 1, expect_names(&c, &b, "out.shape[1] = 1: expected 2");
    b = a, b.out.shape[2] = 13, expect_names(&c, &b, "out.shape[2] = 13: expected 12");
    b = a, b.out.strides[2] = 2, expect_names(&c, &b, "out.strides[2] = 2");
    b = a, b.out.strides[0] = 0, expect_names(&c, &b, "out.strides");
    b = a, b.out.data = c.bias.data, expect_names(&c, &b, "out overlaps bias");
    b = a, b.out.data = c.mask.data, expect_names(&c, &b, "out overlaps mask");
    wv_free(&c);

    /* a key-based out: its shape is (total_k, Hm') */
    s = fixed_spec(DM_LAYOUT_K, DM_LAYOUT_K);
    wv_build(&c, &s, 6);
    a = wv_args(&c);
    b = a, b.out.rank = 3, expect_names(&c, &b, "out.rank = 3: expected 2 key-based");
    b = a, b.out.shape[0] = c.total_q, expect_names(&c, &b, "out.shape[0] = 8: expected 26");
    wv_free(&c);
}
END_TEST

/* ---- the forward reference with a window ------------------------------------------------- */

/* dm_ref_fwd_varlen with window = 4 on a wv_case's bias and mask equals it on the explicit mask
 * dm_ref_window_mask_varlen gives, bitwise; and differs from no window at all. */
static void forward_with_window(dm_layout bias, dm_layout mask)
{
    enum { H = 2, Hkv = 1, D = 8 };
    wv_spec s = fixed_spec(bias, mask);
    wv_case c;
    uint64_t r = 11;
    wv_build(&c, &s, 7);
    size_t nq = (size_t)(c.total_q * H * D), nk = (size_t)(c.total_k * Hkv * D);
    uint16_t *q = malloc(nq * 2), *k = malloc(nk * 2), *v = malloc(nk * 2);
    uint16_t *o1 = malloc(nq * 2), *o2 = malloc(nq * 2);
    ck_assert(q && k && v && o1 && o2);
    for (size_t e = 0; e < nq; e++)
        q[e] = dm_float_to_bf16((float)((double)(wv_rng(&r) >> 11) * 0x1.0p-53 * 2 - 1));
    for (size_t e = 0; e < nk; e++) {
        k[e] = dm_float_to_bf16((float)((double)(wv_rng(&r) >> 11) * 0x1.0p-53 * 2 - 1));
        v[e] = dm_float_to_bf16((float)((double)(wv_rng(&r) >> 11) * 0x1.0p-53 * 2 - 1));
    }
    memset(o1, 0xff, nq * 2);
    memset(o2, 0xff, nq * 2);
    dm_fwd_varlen_args f = {
        .q = {q, DM_BF16, 3, {c.total_q, H, D}, {H * D, D, 1}},
        .k = {k, DM_BF16, 3, {c.total_k, Hkv, D}, {Hkv * D, D, 1}},
        .v = {v, DM_BF16, 3, {c.total_k, Hkv, D}, {Hkv * D, D, 1}},
        .o = {o1, DM_BF16, 3, {c.total_q, H, D}, {H * D, D, 1}},
        .cu_seqlens_q = c.cu_seqlens_q, .cu_seqlens_k = c.cu_seqlens_k,
        .max_seqlen_q = c.max_q, .max_seqlen_k = c.max_k, .bias = c.bias, .mask = c.mask,
        .window = 4, .causal = 1};
    dm_ctx *ctx = offline();
    dm_fwd_varlen_plan p;
    ck_assert_msg(dm_fwd_varlen_check(ctx, "t", &f, &p) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_msg(dm_ref_fwd_varlen(ctx, &f, &p) == DM_OK, "%s", dm_errmsg(ctx));

    run_varlen_ref(&c, 1, "explicit mask");
    dm_fwd_varlen_args e = f;
    e.window = 0;
    e.mask = c.out;
    e.o.data = o2;
    ck_assert_msg(dm_fwd_varlen_check(ctx, "t", &e, &p) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_msg(dm_ref_fwd_varlen(ctx, &e, &p) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(memcmp(o1, o2, nq * 2), 0);
    e.mask = f.mask;
    ck_assert_msg(dm_fwd_varlen_check(ctx, "t", &e, &p) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(dm_ref_fwd_varlen(ctx, &e, &p), DM_OK);
    ck_assert_int_ne(memcmp(o1, o2, nq * 2), 0);

    /* a bias the window cannot use: the window's own rules, named */
    e = f;
    e.bias.dtype = DM_F32;
    e.bias.data = NULL;
    e.bias.rank = 0;
    ck_assert_int_eq(dm_fwd_varlen_check(ctx, "t", &e, &p), DM_OK);
    ck_assert_int_eq(dm_ref_fwd_varlen(ctx, &e, &p), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "bias is absent"));
    dm_ctx_destroy(ctx);
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
    wv_free(&c);
}

START_TEST(ref_fwd_varlen_with_a_window_equals_it_on_the_explicit_mask)
{
    forward_with_window(DM_LAYOUT_K, DM_LAYOUT_NONE);
    forward_with_window(DM_LAYOUT_K, DM_LAYOUT_K);
    forward_with_window(DM_LAYOUT_Q, DM_LAYOUT_K);
    forward_with_window(DM_LAYOUT_K, DM_LAYOUT_Q);
}
END_TEST

/* dm_fwd_varlen checks the window's rules before anything needs a device. */
START_TEST(fwd_varlen_names_the_window_rules_before_any_device_work)
{
    enum { H = 2, D = 8 };
    wv_spec s = fixed_spec(DM_LAYOUT_K, DM_LAYOUT_NONE);
    wv_case c;
    wv_build(&c, &s, 8);
    static _Alignas(16) uint16_t buf[4096];
    dm_fwd_varlen_args f = {
        .q = {buf, DM_BF16, 3, {c.total_q, H, D}, {H * D, D, 1}},
        .k = {buf, DM_BF16, 3, {c.total_k, 1, D}, {D, D, 1}},
        .v = {buf, DM_BF16, 3, {c.total_k, 1, D}, {D, D, 1}},
        .o = {buf + 2048, DM_BF16, 3, {c.total_q, H, D}, {H * D, D, 1}},
        .cu_seqlens_q = c.cu_seqlens_q, .cu_seqlens_k = c.cu_seqlens_k,
        .max_seqlen_q = c.max_q, .max_seqlen_k = c.max_k, .window = 4};
    dm_ctx *ctx = offline();
    ck_assert_int_eq(dm_fwd_varlen(ctx, &f, NULL), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx),
                     "dm_fwd_varlen: bias is absent: expected a bias (rank 3 (total_q, Hm, "
                     "max_seqlen_k) query-based or rank 2 (total_k, Hm) key-based) when window "
                     "= 4 (the window keeps the largest bias values)");
    f.bias = c.bias;
    f.mask = c.bias;
    f.mask.dtype = DM_BOOL;
    f.mask.shape[1] = 1; /* (total_k, 1) bool against a bias of 2 heads: fine for the window */
    f.bias.shape[1] = 3; /* but 3 heads are neither H = 2, Hkv = 1 nor 1: the forward's rule */
    ck_assert_int_eq(dm_fwd_varlen(ctx, &f, NULL), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "bias.shape[1] (Hm) = 3"));
    dm_ctx_destroy(ctx);
    wv_free(&c);
}
END_TEST

#define TESTS(X) \
    X(reference_matches_the_dense_reference_per_sequence) \
    X(key_based_bias_and_mask_give_one_row_per_sequence_and_head) \
    X(no_window_or_max_seqlen_k_within_the_window_touches_nothing) \
    X(every_bad_argument_is_named) \
    X(ref_fwd_varlen_with_a_window_equals_it_on_the_explicit_mask) \
    X(fwd_varlen_names_the_window_rules_before_any_device_work)
DM_TEST_MAIN("window_mask_varlen", TESTS)
