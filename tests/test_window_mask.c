/* test_window_mask.c: the window-mask helper (SPEC §4) without a GPU: its CPU reference against
 * a brute-force reading of the rules, each rule on its own (early exit, 2-D normalization, the
 * bad-S error, non-floating bias, broadcast shapes, masked keys never selected, ties, relu,
 * smoothing, min_value), every bad argument's status and message, dm_ref_fwd with a window
 * equal to dm_ref_fwd on the explicit mask, and the split of long rows over blocks: when the plan
 * splits, and a model of the split kernel's stages (slice histograms, picks, ties ranked from
 * the equal keys of earlier slices) against the reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_plan.h"
#include "half.h"
#include "harness.h"
#include "reference.h"
#include "wmask_plan.h"

#define POISON 0x5a

static dm_ctx *offline(void)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    return ctx;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t elem_bytes(dm_dtype t) { return t == DM_F32 ? 4 : t == DM_BOOL ? 1 : 2; }

/* A packed host tensor of the given shape (rank = number of non-zero leading sizes given). */
static dm_tensor host_tensor(dm_dtype t, int rank, const int64_t *shape)
{
    dm_tensor x = {.dtype = t, .rank = rank};
    int64_t n = 1;
    for (int d = rank - 1; d >= 0; d--) {
        x.shape[d] = shape[d];
        x.strides[d] = n;
        n *= shape[d];
    }
    x.data = malloc((size_t)n * elem_bytes(t) + 16);
    ck_assert_ptr_nonnull(x.data);
    return x;
}

static int64_t numel(const dm_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

static void put(dm_tensor *t, int64_t i, double v)
{
    if (t->dtype == DM_F32)
        ((float *)t->data)[i] = (float)v;
    else if (t->dtype == DM_F16)
        ((uint16_t *)t->data)[i] = dm_float_to_half((float)v);
    else
        ((uint16_t *)t->data)[i] = dm_float_to_bf16((float)v);
}

static double get(const dm_tensor *t, int64_t i)
{
    if (t->dtype == DM_F32)
        return ((float *)t->data)[i];
    if (t->dtype == DM_F16)
        return dm_half_to_float(((uint16_t *)t->data)[i]);
    return dm_bf16_to_float(((uint16_t *)t->data)[i]);
}

/* Random values from a small set (ties are common) or spread out, plus NaN now and then. */
static void fill_bias(dm_tensor *t, uint64_t *s, int distinct, bool nans)
{
    for (int64_t i = 0; i < numel(t); i++) {
        double v = distinct ? (double)(int)(rng_next(s) % (uint64_t)distinct) - distinct / 2
                            : (double)(int64_t)(rng_next(s) >> 11) / 4503599627370496.0 * 8 - 4;
        if (nans && rng_next(s) % 17 == 0)
            v = NAN;
        put(t, i, v);
    }
}

static void fill_mask(dm_tensor *t, uint64_t *s, int percent_true)
{
    unsigned char *m = t->data;
    for (int64_t i = 0; i < numel(t); i++)
        m[i] = rng_next(s) % 100 < (uint64_t)percent_true ? (unsigned char)(1 + rng_next(s) % 200)
                                                          : 0;
}

static void free_tensor(dm_tensor *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* ---- brute force: the rules read literally, O(Lk^2) per row ---------------------------- */

/* i beats j: a larger value (NaN largest), or an equal one at a lower index. */
static bool beats(double vi, int64_t i, double vj, int64_t j)
{
    if (isnan(vi) || isnan(vj)) {
        if (isnan(vi) && isnan(vj))
            return i < j;
        return isnan(vi);
    }
    return vi > vj || (vi == vj && i < j);
}

/* Element (b, h, i, j) of a 4-D tensor with broadcasting (size-1 dims read index 0). */
static int64_t at4(const dm_tensor *t, int64_t b, int64_t h, int64_t i, int64_t j)
{
    int64_t idx[4] = {b, h, i, j}, off = 0;
    for (int d = 0; d < 4; d++)
        off += (t->shape[d] == 1 ? 0 : idx[d]) * t->strides[d];
    return off;
}

/* Brute-force mask' for 4-D (or absent) masks; min is min_value in the bias dtype. */
static void brute_force(const dm_window_mask_args *a, double min, unsigned char *want)
{
    const dm_tensor *o = &a->out;
    int64_t Lk = a->Lk;
    double *row = malloc((size_t)Lk * sizeof *row);
    for (int64_t b = 0; b < o->shape[0]; b++)
        for (int64_t h = 0; h < o->shape[1]; h++)
            for (int64_t i = 0; i < o->shape[2]; i++) {
                for (int64_t j = 0; j < Lk; j++) {
                    bool vis = a->mask.data == NULL ||
                               ((unsigned char *)a->mask.data)[at4(&a->mask, b, h, i, j)] != 0;
                    row[j] = vis ? get(&a->bias, at4(&a->bias, b, h, i, j)) : min;
                }
                for (int64_t j = 0; j < Lk; j++) {
                    int64_t better = 0;
                    for (int64_t k = 0; k < Lk; k++)
                        better += beats(row[k], k, row[j], j);
                    bool kept = a->relu ? row[j] > 0 : better < a->window;
                    want[at4(o, b, h, i, j)] = kept && (a->relu || row[j] != min);
                }
            }
    free(row);
}

static void run_ref(const dm_window_mask_args *a, int want_applied)
{
    dm_ctx *ctx = offline();
    int applied = -1;
    dm_status st = dm_ref_window_mask(ctx, a, &applied);
    ck_assert_msg(st == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(applied, want_applied);
    dm_ctx_destroy(ctx);
}

static double lowest(dm_dtype t)
{
    return t == DM_F16 ? -65504.0 : t == DM_BF16 ? (double)dm_bf16_to_float(0xff7f) : -3.4028234663852886e38;
}

START_TEST(reference_matches_brute_force_on_random_shapes)
{
    const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    uint64_t seed = 0x9e3779b97f4a7c15ull, s = seed;
    for (int n = 0; n < 300; n++) {
        int64_t B = 1 + rng_next(&s) % 2, H = 1 + rng_next(&s) % 3, Lq = 1 + rng_next(&s) % 4;
        int64_t Lk = 1 + rng_next(&s) % 40;
        dm_dtype dt = dtypes[n % 3];
        int64_t bshape[4] = {rng_next(&s) % 2 ? B : 1, H, rng_next(&s) % 2 ? Lq : 1, Lk};
        int64_t mshape[4] = {rng_next(&s) % 2 ? B : 1, rng_next(&s) % 2 ? H : 1,
                             rng_next(&s) % 2 ? Lq : 1, Lk};
        bool has_mask = n % 4 != 0;
        dm_window_mask_args a = {.B = B, .Lq = Lq, .Lk = Lk,
                                 .window = (int)(1 + rng_next(&s) % (uint64_t)(Lk + 2)),
                                 .relu = n % 7 == 3};
        a.bias = host_tensor(dt, 4, bshape);
        fill_bias(&a.bias, &s, n % 2 ? 5 : 0, n % 5 == 1);
        if (has_mask) {
            a.mask = host_tensor(DM_BOOL, 4, mshape);
            fill_mask(&a.mask, &s, 60);
        }
        int64_t oshape[4] = {bshape[0] > mshape[0] || !has_mask ? bshape[0] : mshape[0],
                             has_mask && mshape[1] > 1 ? mshape[1] : bshape[1],
                             bshape[2] > mshape[2] || !has_mask ? bshape[2] : mshape[2], Lk};
        if (n % 3 == 2) { /* an explicit min_value, sometimes one that occurs in the bias */
            a.has_min_value = 1;
            a.min_value = n % 2 ? -2.0 : -1e30;
        }
        a.out = host_tensor(DM_BOOL, 4, oshape);
        unsigned char *want = malloc((size_t)numel(&a.out));
        memset(a.out.data, POISON, (size_t)numel(&a.out));
        bool applies = a.window < Lk;
        run_ref(&a, applies);
        if (applies) {
            double min = a.has_min_value ? (dt == DM_F32 ? (double)(float)a.min_value
                                           : dt == DM_F16 ? dm_half_to_float(dm_float_to_half((float)a.min_value))
                                                          : dm_bf16_to_float(dm_float_to_bf16((float)a.min_value)))
                                         : lowest(dt);
            brute_force(&a, min, want);
            for (int64_t e = 0; e < numel(&a.out); e++)
                ck_assert_msg(((unsigned char *)a.out.data)[e] == want[e],
                              "case %d (seed %llu): element %lld: ref %d, brute force %d", n,
                              (unsigned long long)seed, (long long)e,
                              ((unsigned char *)a.out.data)[e], want[e]);
        } else {
            for (int64_t e = 0; e < numel(&a.out); e++)
                ck_assert_int_eq(((unsigned char *)a.out.data)[e], POISON);
        }
        free(want);
        free_tensor(&a.bias);
        free_tensor(&a.mask);
        free_tensor(&a.out);
    }
}
END_TEST

/* A small valid call: bias (2, 3, 4, 10) bf16 ramp, window 3, no mask. */
static dm_window_mask_args small_args(void)
{
    int64_t bshape[4] = {2, 3, 4, 10}, oshape[4] = {2, 3, 4, 10};
    dm_window_mask_args a = {.B = 2, .Lq = 4, .Lk = 10, .window = 3};
    a.bias = host_tensor(DM_BF16, 4, bshape);
    for (int64_t e = 0; e < numel(&a.bias); e++)
        put(&a.bias, e, (double)((e * 7) % 10));
    a.out = host_tensor(DM_BOOL, 4, oshape);
    memset(a.out.data, POISON, (size_t)numel(&a.out));
    return a;
}

static void free_args(dm_window_mask_args *a)
{
    free_tensor(&a->bias);
    free_tensor(&a->mask);
    free_tensor(&a->out);
}

START_TEST(no_window_or_a_window_covering_every_key_leaves_everything_untouched)
{
    dm_ctx *ctx = offline(); /* no device: proves no kernel is even looked for */
    dm_window_mask_args a = small_args();
    int applied = -1;
    const int windows[] = {0, 10, 11, 1 << 24};
    for (size_t k = 0; k < 4; k++) {
        a.window = windows[k];
        applied = -1;
        ck_assert_int_eq(dm_window_mask(ctx, &a, &applied, NULL), DM_OK);
        ck_assert_int_eq(applied, 0);
        for (int64_t e = 0; e < numel(&a.out); e++)
            ck_assert_int_eq(((unsigned char *)a.out.data)[e], POISON);
    }
    /* the early exit comes before the other rules: absent or bad bias, absent out */
    dm_window_mask_args bare = {.B = 1, .Lq = 1, .Lk = 5, .window = 5};
    ck_assert_int_eq(dm_window_mask(ctx, &bare, &applied, NULL), DM_OK);
    ck_assert_int_eq(applied, 0);
    bare.window = 0;
    bare.bias.dtype = DM_I32;
    ck_assert_int_eq(dm_window_mask(ctx, &bare, &applied, NULL), DM_OK);
    /* ... but with a window that applies, an offline context has no device to run on */
    a.window = 3;
    ck_assert_int_eq(dm_window_mask(ctx, &a, &applied, NULL), DM_ERR_NO_DEVICE);
    ck_assert_int_eq(applied, 0);
    free_args(&a);
    dm_ctx_destroy(ctx);
}
END_TEST

/* Runs the reference on a and returns out's bytes (malloc'd). */
static unsigned char *ref_out(const dm_window_mask_args *a)
{
    run_ref(a, 1);
    unsigned char *copy = malloc((size_t)numel(&a->out));
    memcpy(copy, a->out.data, (size_t)numel(&a->out));
    return copy;
}

START_TEST(a_2d_mask_of_lk_keys_is_one_row_for_every_query)
{
    uint64_t s = 7;
    int64_t bshape[4] = {2, 2, 3, 12}, m2[2] = {2, 12}, m4[4] = {2, 1, 1, 12};
    dm_window_mask_args a = {.B = 2, .Lq = 3, .Lk = 12, .window = 4};
    a.bias = host_tensor(DM_F16, 4, bshape);
    fill_bias(&a.bias, &s, 0, false);
    a.out = host_tensor(DM_BOOL, 4, bshape);
    a.mask = host_tensor(DM_BOOL, 2, m2);
    fill_mask(&a.mask, &s, 50);
    unsigned char *two_d = ref_out(&a);
    dm_tensor m = a.mask;
    a.mask = host_tensor(DM_BOOL, 4, m4);
    memcpy(a.mask.data, m.data, 24);
    unsigned char *four_d = ref_out(&a);
    ck_assert_int_eq(memcmp(two_d, four_d, (size_t)numel(&a.out)), 0);
    free(two_d);
    free(four_d);
    free_tensor(&m);
    free_args(&a);
}
END_TEST

START_TEST(a_2d_mask_of_lq_keys_is_left_padded_with_true)
{
    uint64_t s = 11;
    int64_t Lq = 5, Lk = 13;
    int64_t bshape[4] = {2, 1, Lq, Lk}, m2[2] = {2, Lq}, m4[4] = {2, 1, 1, Lk};
    dm_window_mask_args a = {.B = 2, .Lq = Lq, .Lk = Lk, .window = 6};
    a.bias = host_tensor(DM_BF16, 4, bshape);
    fill_bias(&a.bias, &s, 0, false);
    a.out = host_tensor(DM_BOOL, 4, bshape);
    a.mask = host_tensor(DM_BOOL, 2, m2);
    fill_mask(&a.mask, &s, 30);
    unsigned char *two_d = ref_out(&a);
    dm_tensor m = a.mask;
    a.mask = host_tensor(DM_BOOL, 4, m4); /* the padded mask written out */
    unsigned char *p = a.mask.data, *q = m.data;
    for (int64_t b = 0; b < 2; b++)
        for (int64_t j = 0; j < Lk; j++)
            p[b * Lk + j] = j < Lk - Lq ? 1 : q[b * Lq + j - (Lk - Lq)];
    unsigned char *four_d = ref_out(&a);
    ck_assert_int_eq(memcmp(two_d, four_d, (size_t)numel(&a.out)), 0);
    free(two_d);
    free(four_d);
    free_tensor(&m);
    free_args(&a);
}
END_TEST

static void expect_msg(dm_window_mask_args *a, dm_status want, const char *text)
{
    dm_ctx *ctx = offline();
    int applied = -1;
    dm_status st = dm_window_mask(ctx, a, &applied, NULL);
    ck_assert_msg(st == want, "status %s (%s), expected %s", dm_status_name(st), dm_errmsg(ctx),
                  dm_status_name(want));
    ck_assert_str_eq(dm_errmsg(ctx), text);
    ck_assert_int_eq(applied, 0);
    for (int64_t e = 0; a->out.data && e < numel(&a->out); e++)
        ck_assert_int_eq(((unsigned char *)a->out.data)[e], POISON);
    dm_ctx_destroy(ctx);
}

/* The status and that the message names `needle` and starts with the call. */
static void expect_names(dm_window_mask_args *a, const char *needle)
{
    dm_ctx *ctx = offline();
    int applied = -1;
    ck_assert_int_eq(dm_window_mask(ctx, a, &applied, NULL), DM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dm_errmsg(ctx), needle), "'%s' does not name '%s'", dm_errmsg(ctx),
                  needle);
    ck_assert_int_eq(strncmp(dm_errmsg(ctx), "dm_window_mask: ", 16), 0);
    ck_assert_int_eq(applied, 0);
    dm_ctx_destroy(ctx);
}

START_TEST(a_2d_mask_of_any_other_length_is_an_error)
{
    int64_t m2[2] = {2, 7};
    dm_window_mask_args a = small_args(); /* Lq 4, Lk 10 */
    a.mask = host_tensor(DM_BOOL, 2, m2);
    expect_msg(&a, DM_ERR_INVALID_ARG,
               "dm_window_mask: mask.shape[1] = 7: expected Lk (10) or Lq (4) < Lk for a 2-D mask");
    /* S == Lq is only a padded mask when Lq < Lk */
    free_args(&a);
    int64_t b4[4] = {1, 1, 10, 10}, m10[2] = {1, 10}, m3[2] = {1, 3};
    dm_window_mask_args c = {.B = 1, .Lq = 10, .Lk = 10, .window = 2};
    c.bias = host_tensor(DM_F32, 4, b4);
    c.out = host_tensor(DM_BOOL, 4, b4);
    memset(c.out.data, POISON, 100);
    c.mask = host_tensor(DM_BOOL, 2, m3);
    expect_msg(&c, DM_ERR_INVALID_ARG,
               "dm_window_mask: mask.shape[1] = 3: expected Lk (10) or Lq (10) < Lk for a 2-D mask");
    free_tensor(&c.mask);
    c.mask = host_tensor(DM_BOOL, 2, m10);
    memset(c.mask.data, 1, 10);
    memset(c.bias.data, 0, 400);
    run_ref(&c, 1); /* S == Lq == Lk reads as S == Lk */
    free_args(&c);
}
END_TEST

START_TEST(a_non_floating_bias_is_an_error_when_a_window_applies)
{
    const dm_dtype bad[] = {DM_BOOL, DM_I32, DM_DTYPE_NONE};
    const char *names[] = {"bool", "i32", "none"};
    for (int k = 0; k < 3; k++) {
        dm_window_mask_args a = small_args();
        a.bias.dtype = bad[k];
        char want[256];
        snprintf(want, sizeof want,
                 "dm_window_mask: bias.dtype = %s: expected a floating dtype (f16, bf16 or f32) "
                 "when window = 3",
                 names[k]);
        expect_msg(&a, DM_ERR_INVALID_ARG, want);
        free_args(&a);
    }
}
END_TEST

START_TEST(out_has_the_broadcast_shape_of_bias_and_mask)
{
    uint64_t s = 3;
    /* bias (1, 4, 1, 9) with mask (2, 1, 3, 9) -> out (2, 4, 3, 9) */
    int64_t bshape[4] = {1, 4, 1, 9}, mshape[4] = {2, 1, 3, 9}, oshape[4] = {2, 4, 3, 9};
    dm_window_mask_args a = {.B = 2, .Lq = 3, .Lk = 9, .window = 2};
    a.bias = host_tensor(DM_F32, 4, bshape);
    fill_bias(&a.bias, &s, 0, false);
    a.mask = host_tensor(DM_BOOL, 4, mshape);
    fill_mask(&a.mask, &s, 70);
    a.out = host_tensor(DM_BOOL, 4, oshape);
    unsigned char *want = malloc(2 * 4 * 3 * 9);
    run_ref(&a, 1);
    brute_force(&a, lowest(DM_F32), want);
    ck_assert_int_eq(memcmp(want, a.out.data, 2 * 4 * 3 * 9), 0);
    /* any other out shape is refused, naming the expected one */
    free_tensor(&a.out);
    int64_t wrong[4] = {2, 4, 1, 9};
    a.out = host_tensor(DM_BOOL, 4, wrong);
    memset(a.out.data, POISON, 72);
    expect_msg(&a, DM_ERR_INVALID_ARG,
               "dm_window_mask: out.shape[2] = 1: expected 3 (the broadcast of bias and mask is "
               "(2, 4, 3, 9))");
    /* heads that do not broadcast */
    free_tensor(&a.mask);
    int64_t m2h[4] = {2, 2, 3, 9};
    a.mask = host_tensor(DM_BOOL, 4, m2h);
    expect_msg(&a, DM_ERR_INVALID_ARG,
               "dm_window_mask: mask.shape[1] = 2 and bias.shape[1] = 4 do not broadcast: "
               "expected equal sizes or 1");
    free(want);
    free_args(&a);
}
END_TEST

START_TEST(masked_out_keys_are_never_selected)
{
    /* 3 visible keys, window 6: the other keys fill the window with min_value and stay false,
     * even where their bias is the largest of the row */
    int64_t shape[4] = {1, 1, 1, 16};
    dm_window_mask_args a = {.B = 1, .Lq = 1, .Lk = 16, .window = 6};
    a.bias = host_tensor(DM_F16, 4, shape);
    a.mask = host_tensor(DM_BOOL, 4, shape);
    a.out = host_tensor(DM_BOOL, 4, shape);
    unsigned char *m = a.mask.data, *o = a.out.data;
    for (int j = 0; j < 16; j++) {
        put(&a.bias, j, j % 2 ? 1000.0 : -1.0 * j);
        m[j] = j == 2 || j == 4 || j == 9;
    }
    run_ref(&a, 1);
    for (int j = 0; j < 16; j++)
        ck_assert_msg(o[j] == (j == 2 || j == 4 || j == 9), "key %d: %d", j, o[j]);
    /* a visible key whose bias equals min_value is not selected either */
    a.has_min_value = 1;
    a.min_value = -4.0;
    run_ref(&a, 1);
    ck_assert_int_eq(o[4], 0);
    ck_assert_int_eq(o[2], 1);
    free_args(&a);
}
END_TEST

START_TEST(ties_go_to_the_lower_key_index)
{
    int64_t shape[4] = {1, 1, 2, 20};
    dm_window_mask_args a = {.B = 1, .Lq = 2, .Lk = 20, .window = 5};
    a.bias = host_tensor(DM_BF16, 4, shape);
    a.out = host_tensor(DM_BOOL, 4, shape);
    unsigned char *o = a.out.data;
    for (int j = 0; j < 20; j++) {
        put(&a.bias, j, 0.5);                          /* row 0: all equal */
        put(&a.bias, 20 + j, j == 3 || j >= 17 ? 2.0 : 1.0); /* row 1: 4 above, 16 tied */
    }
    run_ref(&a, 1);
    for (int j = 0; j < 20; j++) {
        ck_assert_msg(o[j] == (j < 5), "row 0 key %d", j);
        ck_assert_msg(o[20 + j] == (j == 3 || j >= 17 || j == 0), "row 1 key %d", j);
    }
    /* -0 and +0 tie (as values), so the lower index wins whichever sign it has */
    int64_t s1[4] = {1, 1, 1, 4};
    dm_window_mask_args z = {.B = 1, .Lq = 1, .Lk = 4, .window = 1};
    z.bias = host_tensor(DM_F32, 4, s1);
    z.out = host_tensor(DM_BOOL, 4, s1);
    put(&z.bias, 0, -1.0);
    put(&z.bias, 1, -0.0);
    put(&z.bias, 2, 0.0);
    put(&z.bias, 3, -2.0);
    run_ref(&z, 1);
    ck_assert_int_eq(((unsigned char *)z.out.data)[1], 1);
    ck_assert_int_eq(((unsigned char *)z.out.data)[2], 0);
    free_args(&z);
    free_args(&a);
}
END_TEST

START_TEST(relu_selects_positive_values_and_smoothing_votes_per_block)
{
    int64_t shape[4] = {1, 1, 1, 11};
    dm_window_mask_args a = {.B = 1, .Lq = 1, .Lk = 11, .window = 1, .relu = 1};
    a.bias = host_tensor(DM_F16, 4, shape);
    a.out = host_tensor(DM_BOOL, 4, shape);
    const double v[11] = {1, -1, 2, 0, NAN, 3, 3, -0.0, 1, 1, -5};
    for (int j = 0; j < 11; j++)
        put(&a.bias, j, v[j]);
    unsigned char *o = a.out.data;
    run_ref(&a, 1);
    const unsigned char relu[11] = {1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0};
    ck_assert_int_eq(memcmp(o, relu, 11), 0);
    /* blocks of 4: {1,0,1,0} -> 2 of 4 is no majority, {0,1,1,0} -> none, tail {1,1,0} -> yes */
    a.block_size = 4;
    run_ref(&a, 1);
    const unsigned char smooth[11] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
    ck_assert_int_eq(memcmp(o, smooth, 11), 0);
    /* top-k: window 6 keeps NaN (4), 3 (5, 6), 2 (2) and the first two 1s (0, 8) ... */
    a.relu = 0;
    a.window = 6;
    a.block_size = 0;
    run_ref(&a, 1);
    const unsigned char topk[11] = {1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0};
    ck_assert_int_eq(memcmp(o, topk, 11), 0);
    a.block_size = 3; /* ... then blocks {1,0,1} {0,1,1} {1,0,1} and the tail {0,0} vote */
    run_ref(&a, 1);
    const unsigned char topk_smooth[11] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    ck_assert_int_eq(memcmp(o, topk_smooth, 11), 0);
    free_args(&a);
}
END_TEST

START_TEST(min_value_defaults_to_the_dtype_lowest_and_rounds_like_the_bias)
{
    const dm_dtype dts[] = {DM_F16, DM_BF16, DM_F32};
    for (int k = 0; k < 3; k++) {
        dm_ctx *ctx = offline();
        dm_window_mask_args a = small_args();
        dm_wmask_plan p;
        a.bias.dtype = dts[k];
        ck_assert_int_eq(dm_wmask_check(ctx, "t", &a, true, &p), DM_OK);
        ck_assert(p.min_value == lowest(dts[k]));
        a.has_min_value = 1;
        a.min_value = -1e6; /* beyond f16: rounds to -inf there, as masked_fill would */
        ck_assert_int_eq(dm_wmask_check(ctx, "t", &a, true, &p), DM_OK);
        if (dts[k] == DM_F16)
            ck_assert(isinf(p.min_value) && p.min_value < 0);
        else
            ck_assert(p.min_value > -1.01e6 && p.min_value < -0.99e6);
        ck_assert_uint_eq(p.min_key, dm_wmask_key(dts[k], p.min_bits));
        free_args(&a);
        dm_ctx_destroy(ctx);
    }
}
END_TEST

START_TEST(key_images_order_every_16_bit_code_as_its_value)
{
    /* dm_wmask_key (the kernel's order_key on the host) must order codes exactly as their values
     * compare, NaN above everything, -0 equal to +0. */
    for (int t = 0; t < 2; t++) {
        dm_dtype dt = t ? DM_BF16 : DM_F16;
        for (uint32_t a = 0; a < 65536; a += 37)
            for (uint32_t b = 0; b < 65536; b += 41) {
                double x = t ? dm_bf16_to_float(a) : dm_half_to_float(a);
                double y = t ? dm_bf16_to_float(b) : dm_half_to_float(b);
                uint32_t kx = dm_wmask_key(dt, a), ky = dm_wmask_key(dt, b);
                if (isnan(x) || isnan(y)) {
                    ck_assert(isnan(x) ? kx == 0xffff : kx < 0xffff);
                    continue;
                }
                ck_assert_msg((x < y) == (kx < ky) && (x == y) == (kx == ky),
                              "%s codes %04x %04x", dm_dtype_name(dt), a, b);
            }
    }
    ck_assert_uint_lt(dm_wmask_key(DM_F32, 0xff800000u), dm_wmask_key(DM_F32, 0xff7fffffu));
    ck_assert_uint_eq(dm_wmask_key(DM_F32, 0x80000000u), dm_wmask_key(DM_F32, 0));
    ck_assert_uint_eq(dm_wmask_key(DM_F32, 0x7fc00000u), 0xffffffffu);
}
END_TEST

START_TEST(every_bad_argument_is_named)
{
    dm_ctx *ctx = offline();
    dm_window_mask_args a = small_args();
    int applied;
    ck_assert_int_eq(dm_window_mask(NULL, &a, &applied, NULL), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_window_mask(ctx, NULL, &applied, NULL), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx),
                     "dm_window_mask: args is NULL: expected a dm_window_mask_args");
    ck_assert_int_eq(dm_window_mask(ctx, &a, NULL, NULL), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "applied is NULL"));
    dm_ctx_destroy(ctx);

    dm_window_mask_args b;
    b = a, b.window = -1, expect_names(&b, "window = -1");
    b = a, b.Lk = 0, expect_names(&b, "Lk = 0");
    b = a, b.relu = 2, expect_names(&b, "relu = 2");
    b = a, b.block_size = -3, expect_names(&b, "block_size = -3");
    b = a, b.has_min_value = 1, b.min_value = NAN, expect_names(&b, "min_value is NaN");
    b = a, b.window = (1 << 20) + 1, b.Lk = 1 << 22, b.bias.shape[3] = 1 << 22,
    expect_names(&b, "window = 1048577");
    b = a, memset(&b.bias, 0, sizeof b.bias), expect_names(&b, "bias is absent");
    b = a, b.bias.shape[0] = 3, expect_names(&b, "bias.shape[0] = 3: expected B = 2 or 1");
    b = a, b.bias.shape[2] = 2, expect_names(&b, "bias.shape[2] = 2: expected Lq = 4 or 1");
    b = a, b.bias.shape[3] = 9, expect_names(&b, "bias.shape[3] = 9: expected Lk = 10");
    b = a, b.bias.strides[3] = 2, expect_names(&b, "bias.strides[3]");
    b = a, b.bias.rank = 3, expect_names(&b, "bias.rank = 3");
    b = a, b.mask = a.bias, b.mask.dtype = DM_F16, expect_names(&b, "mask.dtype = f16");
    b = a, b.mask = a.out, b.mask.data = NULL, expect_names(&b, "mask.data is NULL");
    b = a, b.mask = a.out, b.mask.rank = 3, expect_names(&b, "mask.rank = 3");
    b = a, memset(&b.out, 0, sizeof b.out), expect_names(&b, "out is absent");
    b = a, b.out.dtype = DM_F16, expect_names(&b, "out.dtype = f16");
    b = a, b.out.strides[3] = 2, expect_names(&b, "out.strides[3] = 2");
    b = a, b.out.strides[1] = 0, expect_names(&b, "out.strides[1] = 0");
    b = a, b.out.data = a.bias.data, expect_names(&b, "out overlaps bias");
    b = a, b.mask = a.out, b.out.data = (char *)a.out.data + 5, expect_names(&b, "out overlaps mask");
    free_args(&a);
}
END_TEST

START_TEST(ref_fwd_with_a_window_equals_ref_fwd_on_the_explicit_mask)
{
    enum { Bn = 1, Lq = 3, Lk = 24, H = 2, D = 8 };
    uint64_t s = 5;
    int64_t q4[4] = {Bn, Lq, H, D}, k4[4] = {Bn, Lk, H, D}, b4[4] = {Bn, H, Lq, Lk};
    int64_t m2[2] = {Bn, Lk};
    dm_fwd_args f = {.window = 7};
    f.q = host_tensor(DM_BF16, 4, q4);
    f.k = host_tensor(DM_BF16, 4, k4);
    f.v = host_tensor(DM_BF16, 4, k4);
    f.o = host_tensor(DM_BF16, 4, q4);
    f.bias = host_tensor(DM_BF16, 4, b4);
    fill_bias(&f.q, &s, 0, false);
    fill_bias(&f.k, &s, 0, false);
    fill_bias(&f.v, &s, 0, false);
    fill_bias(&f.bias, &s, 0, false);
    dm_ctx *ctx = offline();
    ck_assert_msg(dm_ref_fwd(ctx, &f) == DM_OK, "%s", dm_errmsg(ctx));
    size_t o_bytes = (size_t)Bn * Lq * H * D * 2;
    void *o_window = malloc(o_bytes);
    memcpy(o_window, f.o.data, o_bytes);

    dm_window_mask_args w = {.bias = f.bias, .B = Bn, .Lq = Lq, .Lk = Lk, .window = 7};
    w.out = host_tensor(DM_BOOL, 4, b4);
    run_ref(&w, 1);
    dm_fwd_args e = f;
    e.window = 0;
    e.mask = w.out;
    memset(e.o.data, 0, o_bytes);
    ck_assert_msg(dm_ref_fwd(ctx, &e) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(memcmp(o_window, e.o.data, o_bytes), 0);
    /* and a window differs from no window at all: the mask did something */
    e.mask = (dm_tensor){0};
    ck_assert_int_eq(dm_ref_fwd(ctx, &e), DM_OK);
    ck_assert_int_ne(memcmp(o_window, e.o.data, o_bytes), 0);
    (void)m2;
    free(o_window);
    free_tensor(&w.out);
    free_tensor(&f.q);
    free_tensor(&f.k);
    free_tensor(&f.v);
    free_tensor(&f.o);
    free_tensor(&f.bias);
    dm_ctx_destroy(ctx);
}
END_TEST

/* ---- dm_fwd with a window and a 2-D mask ------------------------------------------------ */

/* A dense forward call on host buffers: B = 2, Lq = 4, Lk = 12, H = 2, D = 8, bf16, bias (B, H,
 * Lq, Lk), window 5, mask 2-D (mask_b, S). */
static dm_fwd_args fwd_2d_args(int64_t mask_b, int64_t S, uint64_t *s)
{
    int64_t q4[4] = {2, 4, 2, 8}, k4[4] = {2, 12, 2, 8}, b4[4] = {2, 2, 4, 12}, m2[2] = {mask_b, S};
    dm_fwd_args f = {.window = 5};
    f.q = host_tensor(DM_BF16, 4, q4);
    f.k = host_tensor(DM_BF16, 4, k4);
    f.v = host_tensor(DM_BF16, 4, k4);
    f.o = host_tensor(DM_BF16, 4, q4);
    f.bias = host_tensor(DM_BF16, 4, b4);
    f.mask = host_tensor(DM_BOOL, 2, m2);
    fill_bias(&f.q, s, 0, false);
    fill_bias(&f.k, s, 0, false);
    fill_bias(&f.v, s, 0, false);
    fill_bias(&f.bias, s, 0, false);
    fill_mask(&f.mask, s, 60);
    for (int64_t b = 0; b < mask_b; b++) /* one hidden key a row: the mask always matters */
        ((unsigned char *)f.mask.data)[b * S + S - 1] = 0;
    return f;
}

static void free_fwd(dm_fwd_args *f)
{
    free_tensor(&f->q);
    free_tensor(&f->k);
    free_tensor(&f->v);
    free_tensor(&f->o);
    free_tensor(&f->bias);
    free_tensor(&f->mask);
}

static void expect_fwd_check(const dm_fwd_args *f, dm_status want, const char *text)
{
    dm_ctx *ctx = offline();
    ck_assert_int_eq(dm_fwd_check(ctx, "dm_fwd", f, NULL), want);
    ck_assert_msg(strstr(dm_errmsg(ctx), text), "'%s' does not hold '%s'", dm_errmsg(ctx), text);
    dm_ctx_destroy(ctx);
}

START_TEST(fwd_takes_a_2d_mask_only_with_a_window_and_checks_its_shape)
{
    uint64_t s = 3;
    dm_fwd_args f = fwd_2d_args(2, 12, &s);
    expect_fwd_check(&f, DM_OK, "");
    f.window = 12; /* Lk <= window: still a 2-D mask, normalized without a top-k */
    expect_fwd_check(&f, DM_OK, "");
    f.window = 0;
    expect_fwd_check(&f, DM_ERR_INVALID_ARG,
                     "dm_fwd: mask.rank = 2: expected 4 ({B|1}, {H|Hkv|1}, {Lq|1}, Lk) (or 2-D "
                     "({B|1}, Lk or Lq) with window > 0)");
    f.window = 5;
    f.mask.shape[1] = 7;
    expect_fwd_check(&f, DM_ERR_INVALID_ARG,
                     "dm_fwd: mask.shape[1] = 7: expected Lk (12) or Lq (4) < Lk for a 2-D mask");
    f.mask.shape[1] = 12;
    f.mask.shape[0] = 3;
    expect_fwd_check(&f, DM_ERR_INVALID_ARG,
                     "dm_fwd: mask.shape[0] = 3: expected B = 2 or 1 for a 2-D mask");
    f.mask.shape[0] = 2;
    f.mask.strides[1] = 2;
    expect_fwd_check(&f, DM_ERR_INVALID_ARG, "dm_fwd: mask.strides[1]");
    free_fwd(&f);
}
END_TEST

/* dm_ref_fwd with a 2-D mask equals it on the normalized ({B|1}, 1, 1, Lk) mask, bitwise, for
 * S = Lk and S = Lq < Lk, a mask per batch entry or one for all, the window applying (5 < Lk) or
 * keeping every key (12 = Lk: no top-k, the 2-D mask still applied as SPEC 4 normalizes it). */
START_TEST(ref_fwd_with_a_2d_mask_equals_ref_fwd_on_the_normalized_mask)
{
    static const int64_t widths[] = {12, 4}, batches[] = {2, 1};
    static const int windows[] = {5, 12};
    uint64_t s = 17;
    for (int w = 0; w < 2; w++)
        for (int bb = 0; bb < 2; bb++)
            for (int ww = 0; ww < 2; ww++) {
                int64_t S = widths[w], Bm = batches[bb], Lk = 12;
                dm_fwd_args f = fwd_2d_args(Bm, S, &s);
                f.window = windows[ww];
                size_t o_bytes = (size_t)numel(&f.o) * 2;
                dm_ctx *ctx = offline();
                ck_assert_msg(dm_ref_fwd(ctx, &f) == DM_OK, "%s", dm_errmsg(ctx));
                unsigned char *o2d = malloc(o_bytes);
                memcpy(o2d, f.o.data, o_bytes);
                int64_t m4[4] = {Bm, 1, 1, Lk};
                dm_fwd_args e = f;
                e.mask = host_tensor(DM_BOOL, 4, m4);
                unsigned char *p = e.mask.data, *m = f.mask.data;
                for (int64_t b = 0; b < Bm; b++)
                    for (int64_t j = 0; j < Lk; j++)
                        p[b * Lk + j] = j < Lk - S ? 1 : m[b * S + j - (Lk - S)] != 0;
                memset(e.o.data, 0, o_bytes);
                ck_assert_msg(dm_ref_fwd(ctx, &e) == DM_OK, "%s", dm_errmsg(ctx));
                ck_assert_msg(memcmp(o2d, e.o.data, o_bytes) == 0, "S=%lld Bm=%lld window=%d",
                              (long long)S, (long long)Bm, f.window);
                /* and the mask mattered: without it the output differs */
                e.mask = (dm_tensor){0};
                e.window = 0;
                ck_assert_int_eq(dm_ref_fwd(ctx, &e), DM_OK);
                ck_assert_int_ne(memcmp(o2d, e.o.data, o_bytes), 0);
                free(p);
                free(o2d);
                free_fwd(&f);
                dm_ctx_destroy(ctx);
            }
}
END_TEST

/* ---- split rows (api/window_mask.c, templates/window_mask.lua) ---------------------------- */

/* An applied top-k plan of `rows` rows of Lk keys, as far as dm_wmask_plan_split reads it. */
static dm_wmask_plan split_plan(int64_t rows, int64_t Lk, bool relu)
{
    dm_wmask_plan p = {.applied = true, .B = 1, .Lq = 1, .Lk = Lk, .window = relu ? 0 : 16,
                       .relu = relu, .bias_dtype = DM_BF16};
    p.out_shape[0] = 1, p.out_shape[1] = rows, p.out_shape[2] = 1, p.out_shape[3] = Lk;
    return p;
}

static void assert_slices_cover(const dm_wmask_split *s, int64_t Lk)
{
    ck_assert_int_ge(s->slices, 2);
    ck_assert_int_eq(s->slice_keys % DM_WMASK_SLICE_ALIGN, 0);
    ck_assert_int_ge((int64_t)s->slices * s->slice_keys, Lk);       /* every key has a slice */
    ck_assert_int_lt((int64_t)(s->slices - 1) * s->slice_keys, Lk); /* and every slice a key */
}

START_TEST(rows_are_split_only_when_few_and_longer_than_one_block_holds)
{
    const int sms = 132, resident = 32768;
    /* the decode case: 32 rows of 512k keys on 132 SMs fill about 4 blocks per SM */
    dm_wmask_plan p = split_plan(32, 524288, false);
    dm_wmask_split s = dm_wmask_plan_split(&p, resident, sms, 0);
    assert_slices_cover(&s, 524288);
    ck_assert_int_le(32 * s.slices, sms * DM_WMASK_SPLIT_BLOCKS_PER_SM);
    ck_assert_int_ge(32 * s.slices, sms * DM_WMASK_SPLIT_BLOCKS_PER_SM / 2);
    /* one row: as many slices as the minimum slice length allows */
    p = split_plan(1, 524288, false);
    s = dm_wmask_plan_split(&p, resident, sms, 0);
    assert_slices_cover(&s, 524288);
    ck_assert_int_ge(s.slice_keys, DM_WMASK_MIN_SLICE_KEYS);
    ck_assert_int_eq(s.slices, 524288 / DM_WMASK_MIN_SLICE_KEYS);
    /* just past the resident length: a few slices */
    p = split_plan(2, resident + 1, false);
    s = dm_wmask_plan_split(&p, resident, sms, 0);
    assert_slices_cover(&s, resident + 1);
    ck_assert_int_ge(s.slice_keys, DM_WMASK_MIN_SLICE_KEYS);
    /* one block per row: a resident row, rows that fill the GPU, relu, an unknown device */
    p = split_plan(1, resident, false);
    ck_assert_int_eq(dm_wmask_plan_split(&p, resident, sms, 0).slices, 1);
    p = split_plan(sms * DM_WMASK_SPLIT_BLOCKS_PER_SM, 524288, false);
    ck_assert_int_eq(dm_wmask_plan_split(&p, resident, sms, 0).slices, 1);
    p = split_plan(sms * DM_WMASK_SPLIT_BLOCKS_PER_SM / 2 + 1, 524288, false);
    ck_assert_int_eq(dm_wmask_plan_split(&p, resident, sms, 0).slices, 1);
    p = split_plan(1, 524288, true);
    ck_assert_int_eq(dm_wmask_plan_split(&p, 0, sms, 0).slices, 1);
    p = split_plan(1, 524288, false);
    ck_assert_int_eq(dm_wmask_plan_split(&p, resident, 0, 0).slices, 1);
    p.applied = false;
    ck_assert_int_eq(dm_wmask_plan_split(&p, resident, sms, 0).slices, 1);
}
END_TEST

START_TEST(forced_slices_split_any_top_k_row_into_aligned_slices)
{
    dm_wmask_plan p = split_plan(1000, 3000, false); /* resident, and rows enough to fill */
    dm_wmask_split s = dm_wmask_plan_split(&p, 32768, 132, 7);
    assert_slices_cover(&s, 3000);
    ck_assert_int_eq(s.slices, 7); /* 429 keys a slice, 448 aligned: still 7 */
    s = dm_wmask_plan_split(&p, 32768, 132, 1000000);
    assert_slices_cover(&s, 3000);
    ck_assert_int_eq(s.slice_keys, DM_WMASK_SLICE_ALIGN); /* the finest split there is */
    ck_assert_int_eq(dm_wmask_plan_split(&p, 32768, 132, 1).slices, 1);
    p = split_plan(1, 64, false); /* one aligned slice holds the row */
    ck_assert_int_eq(dm_wmask_plan_split(&p, 32768, 132, 5).slices, 1);
    p = split_plan(1, 524288, true); /* relu never splits */
    ck_assert_int_eq(dm_wmask_plan_split(&p, 0, 132, 5).slices, 1);
    p = split_plan(1 << 30, 524288, false); /* grid.x would overflow */
    ck_assert_int_eq(dm_wmask_plan_split(&p, 32768, 132, 64).slices, 1);
}
END_TEST

/* The launcher runs the stages the emitter returns for the plan's variant (test_wmask_gen checks
 * them against the kernel's text): a count and a pick per digit, write, and smooth if asked. */
START_TEST(split_stages_come_from_the_emitted_kernel_and_scratch_follows_the_digits)
{
    static const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++)
        for (int smooth = 0; smooth < 2; smooth++) {
            dm_wmask_plan p = split_plan(4, 524288, false);
            p.bias_dtype = dtypes[t];
            p.block_size = smooth ? 64 : 0;
            dm_variant v;
            dm_kernel_src k;
            char err[512];
            dm_wmask_plan_variant(&p, DM_SM90A, &v);
            ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_OK);
            int digits = dtypes[t] == DM_F32 ? 4 : 2; /* 10 + 6 bits, or 10 + 10 + 10 + 2 */
            ck_assert_int_eq(k.split_digit_stages, 2 * digits);
            ck_assert_int_eq(k.split_stages, 2 * digits + 1 + smooth);
            dm_kernel_src_free(&k);
        }
    ck_assert_uint_eq(dm_wmask_split_scratch_bytes(32, 17, 1024), (32 * 17 * 1024 + 32 * 4) * 4);
}
END_TEST

/* The split kernel's stages on the host: per digit, each slice's histogram of the keys under the
 * row's prefix, then the pick over their sum; then each slice writes, ranking keys equal to T
 * from the number of them in the slices before it (T's bin of the last digit). */
static void model_split(const uint32_t *key, int64_t Lk, int window, uint32_t min_key,
                        int key_bits, const dm_wmask_split *sp, unsigned char *out)
{
    enum { BITS = 10, BINS = 1 << BITS };
    uint32_t *hist = calloc((size_t)sp->slices * BINS, sizeof *hist);
    uint32_t prefix = 0, pm = 0, want = (uint32_t)window, eq = 0, last_bins = 0;
    ck_assert_ptr_nonnull(hist);
    for (int left = key_bits; left > 0;) {
        int bits = left < BITS ? left : BITS;
        left -= bits;
        uint32_t bins = 1u << bits, acc = 0, digit = 0, above = 0;
        for (int sl = 0; sl < sp->slices; sl++) {
            uint32_t *h = hist + (size_t)sl * BINS;
            memset(h, 0, BINS * sizeof *h);
            for (int64_t j = (int64_t)sl * sp->slice_keys;
                 j < Lk && j < (int64_t)(sl + 1) * sp->slice_keys; j++)
                if ((key[j] & pm) == prefix)
                    h[(key[j] >> left) & (bins - 1)]++;
        }
        for (int b = (int)bins - 1; b >= 0; b--) {
            uint32_t c = 0;
            for (int sl = 0; sl < sp->slices; sl++)
                c += hist[(size_t)sl * BINS + b];
            if (acc + c >= want) {
                digit = (uint32_t)b, above = acc, eq = c;
                break;
            }
            acc += c;
        }
        prefix |= digit << left;
        pm |= (bins - 1) << left;
        want -= above;
        last_bins = bins;
    }
    uint32_t T = prefix, need = want;
    bool ties = eq > need && T != min_key;
    for (int sl = 0; sl < sp->slices; sl++) {
        uint32_t rank = 0;
        for (int b = 0; b < sl; b++)
            rank += hist[(size_t)b * BINS + (T & (last_bins - 1))];
        for (int64_t j = (int64_t)sl * sp->slice_keys;
             j < Lk && j < (int64_t)(sl + 1) * sp->slice_keys; j++) {
            bool is_eq = key[j] == T;
            bool keep = key[j] > T || (is_eq && (!ties || rank < need));
            rank += is_eq;
            out[j] = keep && key[j] != min_key;
        }
    }
    free(hist);
}

START_TEST(a_row_split_into_slices_keeps_what_the_reference_keeps)
{
    const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    static const int forced[] = {2, 3, 7, 64, 1000};
    uint64_t seed = 0x5eed5a1175ull, s = seed;
    for (int n = 0; n < 60; n++) {
        dm_dtype dt = dtypes[n % 3];
        int64_t Lk = 2 + rng_next(&s) % (n % 2 ? 300 : 20000);
        int64_t bshape[4] = {1, 1, 1, Lk}, mshape[2] = {1, Lk};
        dm_window_mask_args a = {.B = 1, .Lq = 1, .Lk = Lk,
                                 .window = (int)(1 + rng_next(&s) % (uint64_t)(Lk - 1))};
        a.bias = host_tensor(dt, 4, bshape);
        fill_bias(&a.bias, &s, n % 4 == 0 ? 1 : n % 4 == 1 ? 3 : n % 4 == 2 ? 200 : 0,
                  n % 5 == 4);
        if (n % 3 != 0) {
            a.mask = host_tensor(DM_BOOL, 2, mshape);
            fill_mask(&a.mask, &s, (int)(rng_next(&s) % 101));
        }
        if (n % 7 == 3)
            a.has_min_value = 1, a.min_value = -1.0;
        a.out = host_tensor(DM_BOOL, 4, bshape);
        run_ref(&a, 1);

        dm_ctx *ctx = offline();
        dm_wmask_plan plan;
        ck_assert_int_eq(dm_wmask_check(ctx, "test", &a, true, &plan), DM_OK);
        dm_ctx_destroy(ctx);
        uint32_t *key = malloc((size_t)Lk * sizeof *key);
        unsigned char *got = malloc((size_t)Lk);
        for (int64_t j = 0; j < Lk; j++) {
            uint32_t bits = dt == DM_F32 ? ((uint32_t *)a.bias.data)[j]
                                         : ((uint16_t *)a.bias.data)[j];
            bool vis = !a.mask.data || ((unsigned char *)a.mask.data)[j] != 0;
            key[j] = vis ? dm_wmask_key(dt, bits) : plan.min_key;
        }
        for (size_t f = 0; f < sizeof forced / sizeof forced[0]; f++) {
            dm_wmask_split sp = dm_wmask_plan_split(&plan, 32768, 132, forced[f]);
            if (sp.slices < 2)
                continue;
            memset(got, POISON, (size_t)Lk);
            model_split(key, Lk, a.window, plan.min_key, dt == DM_F32 ? 32 : 16, &sp, got);
            for (int64_t j = 0; j < Lk; j++)
                ck_assert_msg(got[j] == ((unsigned char *)a.out.data)[j],
                              "case %d (seed %llu), %d slices of %d keys: key %lld: model %d, "
                              "reference %d",
                              n, (unsigned long long)seed, sp.slices, sp.slice_keys,
                              (long long)j, got[j], ((unsigned char *)a.out.data)[j]);
        }
        free(key);
        free(got);
        free_args(&a);
    }
}
END_TEST

#define TESTS(X) \
    X(reference_matches_brute_force_on_random_shapes) \
    X(no_window_or_a_window_covering_every_key_leaves_everything_untouched) \
    X(a_2d_mask_of_lk_keys_is_one_row_for_every_query) \
    X(a_2d_mask_of_lq_keys_is_left_padded_with_true) \
    X(a_2d_mask_of_any_other_length_is_an_error) \
    X(a_non_floating_bias_is_an_error_when_a_window_applies) \
    X(out_has_the_broadcast_shape_of_bias_and_mask) \
    X(masked_out_keys_are_never_selected) \
    X(ties_go_to_the_lower_key_index) \
    X(relu_selects_positive_values_and_smoothing_votes_per_block) \
    X(min_value_defaults_to_the_dtype_lowest_and_rounds_like_the_bias) \
    X(key_images_order_every_16_bit_code_as_its_value) \
    X(every_bad_argument_is_named) \
    X(ref_fwd_with_a_window_equals_ref_fwd_on_the_explicit_mask) \
    X(fwd_takes_a_2d_mask_only_with_a_window_and_checks_its_shape) \
    X(ref_fwd_with_a_2d_mask_equals_ref_fwd_on_the_normalized_mask) \
    X(rows_are_split_only_when_few_and_longer_than_one_block_holds) \
    X(forced_slices_split_any_top_k_row_into_aligned_slices) \
    X(split_stages_come_from_the_emitted_kernel_and_scratch_follows_the_digits) \
    X(a_row_split_into_slices_keeps_what_the_reference_keeps)
DM_TEST_MAIN("window_mask", TESTS)
