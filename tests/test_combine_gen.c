/* test_combine_gen.c: the split-KV combine family (templates/attn_combine.lua) through codegen, no
 * GPU needed: deterministic text, header lines, the launch facts api/fwd_combine.c reads, keys the
 * template refuses; and the combine's math in float64 (tests/combine_ref.c, what the GPU test
 * holds the kernel to) against attention computed without splitting. Every head dim compiling
 * with NVRTC is in test_nvrtc, the text's shape in test_gen_text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combine_ref.h"
#include "gen.h"
#include "harness.h"
#include "test_compile.h"

static dm_variant combine(int d, dm_dtype t, dm_arch a)
{
    dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = d, .dtype = t, .arch = a};
    return v;
}

START_TEST(emit_is_byte_identical_in_fresh_states_for_every_head_dim_dtype_and_arch)
{
    int n = 0;
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP)
        for (int t = 0; t < 2; t++)
            for (int a = 0; a < DM_ARCH_COUNT; a++) {
                dm_variant v = combine(d, t ? DM_BF16 : DM_F16, (dm_arch)a);
                char *x = dm_test_emit_ok(&v, NULL), *y = dm_test_emit_ok(&v, NULL);
                ck_assert_str_eq(x, y);
                free(x);
                free(y);
                n++;
            }
    ck_assert_int_eq(n, 32 * 2 * DM_ARCH_COUNT);
}
END_TEST

START_TEST(source_opens_with_the_key_and_the_template_line_and_names_the_entry)
{
    dm_variant v = combine(128, DM_BF16, DM_SM90A);
    dm_kernel_src k;
    char *src = dm_test_emit_ok(&v, &k);
    const char *want = "// combine.d128.bf16.sm90a\n// dmattn 0.1.0, attn_combine.lua: 8 threads "
                       "per (row, head), 16 pairs per block of 128 threads\n";
    ck_assert_msg(strncmp(src, want, strlen(want)) == 0, "source starts: %.200s", src);
    ck_assert_ptr_null(strstr(src, "#include"));
    ck_assert_str_eq(k.entry, "dm_combine_d128_bf16_sm90a");
    ck_assert_ptr_nonnull(strstr(src, "dm_combine_d128_bf16_sm90a(const CombineParams p)"));
    ck_assert_ptr_null(strstr(src, "$")); /* every template variable filled */
    ck_assert_ptr_nonnull(strstr(src, "static_assert(sizeof(CombineParams) == 112"));
    ck_assert_ptr_nonnull(strstr(src, "cvt.rn.bf16.f32"));
    ck_assert_ptr_null(strstr(src, "cvt.rn.f16.f32"));
    dm_kernel_src_free(&k);

    dm_variant h = combine(64, DM_F16, DM_SM80);
    src = dm_test_emit_ok(&h, NULL);
    ck_assert_ptr_nonnull(strstr(src, "cvt.rn.f16.f32"));
    ck_assert_ptr_nonnull(strstr(src, "constexpr int kD = 64;"));
    free(src);
}
END_TEST

/* api/fwd_combine.c launches ceil(rows * H / block_m) blocks of `threads`: block_n threads (a
 * power of two, at most a warp) per (row, head) pair, each thread summing at most four (at least
 * two, unless one thread takes the row) of the row's float4 columns, whole warps, no shared
 * memory. */
START_TEST(launch_facts_give_each_pair_a_group_of_threads_in_whole_warps)
{
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP) {
        dm_variant v = combine(d, DM_F16, DM_SM90);
        dm_kernel_src k;
        free(dm_test_emit_ok(&v, &k));
        const int group = k.block_n, chunks = d / 4;
        ck_assert_msg(group >= 1 && group <= 32 && (group & (group - 1)) == 0, "d%d: group %d",
                      d, group);
        ck_assert_msg(4 * group >= chunks || group == 32, "d%d: group %d for %d float4s", d,
                      group, chunks);
        ck_assert_msg(group == 1 || 2 * group < chunks, "d%d: group %d: threads of under two "
                      "float4s", d, group);
        ck_assert_int_eq(k.threads % 32, 0);
        ck_assert_int_eq(k.block_m * group, k.threads);
        ck_assert_int_eq(k.smem_bytes, 0);
    }
    dm_variant v = combine(8, DM_BF16, DM_SM80);
    dm_kernel_src k;
    free(dm_test_emit_ok(&v, &k));
    ck_assert_int_eq(k.block_n, 1); /* two float4s: one thread */
    ck_assert_int_eq(k.block_m, 128);
}
END_TEST

START_TEST(a_head_dim_the_kernel_cannot_move_in_float4s_is_refused_by_the_template)
{
    /* dm_variant_format refuses d130 (so the runtime never asks); the template checks anyway */
    dm_variant v = combine(130, DM_F16, DM_SM80);
    dm_kernel_src k;
    char err[512] = "";
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "head_dim 130"), "%s", err);
}
END_TEST

/* ---- the combine's math (tests/combine_ref.c) -------------------------------------------- */

static uint64_t rng_next(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double uniform(uint64_t *s) /* [-1, 1) */
{
    return (double)(rng_next(s) >> 11) / 4503599627370496.0 - 1.0;
}

enum { D = 16, LK = 300, MAX_SPLITS = 64 };

/* One (row, head) of attention over LK keys with scores `score` (-inf = masked) and values v:
 * computed whole (o_full, lse_full), and as n_splits partials over contiguous key ranges, in
 * float32 as the decode kernel leaves them (an empty range: lse -inf and its o_s NaN, which the
 * combine must never use). */
static void attention_whole_and_split(const double *score, const double *v, int n_splits,
                                      double *o_full, double *lse_full, float *o_part,
                                      float *lse_part)
{
    double m = -INFINITY, sum = 0;
    for (int j = 0; j < LK; j++)
        m = fmax(m, score[j]);
    for (int d = 0; d < D; d++)
        o_full[d] = 0;
    for (int j = 0; j < LK && m > -INFINITY; j++)
        sum += exp(score[j] - m);
    for (int j = 0; j < LK && m > -INFINITY; j++)
        for (int d = 0; d < D; d++)
            o_full[d] += exp(score[j] - m) / sum * v[j * D + d];
    *lse_full = m > -INFINITY ? m + log(sum) : INFINITY;

    const int per_split = (LK + n_splits - 1) / n_splits;
    for (int s = 0; s < n_splits; s++) {
        const int j0 = s * per_split, j1 = j0 + per_split < LK ? j0 + per_split : LK;
        double ms = -INFINITY, ss = 0, os[D] = {0};
        for (int j = j0; j < j1; j++)
            ms = fmax(ms, score[j]);
        for (int j = j0; j < j1 && ms > -INFINITY; j++) {
            ss += exp(score[j] - ms);
            for (int d = 0; d < D; d++)
                os[d] += exp(score[j] - ms) * v[j * D + d];
        }
        lse_part[s] = ms > -INFINITY ? (float)(ms + log(ss)) : -INFINITY;
        for (int d = 0; d < D; d++)
            o_part[s * D + d] = ms > -INFINITY ? (float)(os[d] / ss) : NAN;
    }
}

/* Splitting the keys and combining the partials gives attention over all keys, whatever the
 * split count, with ranges fully masked (leading, inner, trailing) and score scales that
 * underflow exp without the max subtracted. */
START_TEST(combined_partials_equal_attention_over_all_keys)
{
    static const int splits[] = {1, 2, 3, 7, 64};
    static double score[LK], v[LK * D], o_full[D], o[D], lse_full, lse;
    static float o_part[MAX_SPLITS * D], lse_part[MAX_SPLITS];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int trial = 0; trial < 40; trial++)
        for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
            const double scale = trial % 4 == 3 ? 400.0 : 4.0;
            for (int j = 0; j < LK; j++) {
                score[j] = scale * uniform(&seed);
                /* masked: a leading run, an inner run, a tail run, and scattered keys */
                if (j < trial * 2 || (j >= 100 && j < 100 + trial * 3) || j >= LK - trial ||
                    (trial % 3 == 1 && rng_next(&seed) % 4 == 0))
                    score[j] = -INFINITY;
                for (int d = 0; d < D; d++)
                    v[j * D + d] = uniform(&seed);
            }
            attention_whole_and_split(score, v, splits[k], o_full, &lse_full, o_part, lse_part);
            combine_ref(o_part, lse_part, splits[k], 1, 1, 1, D, o, &lse);
            /* the partials are float: lse_s is off by up to |lse| * 2^-24, and so each weight
             * by that much relatively */
            const double tol = 1e-6 + 4 * fabs(lse_full) * 0x1p-24;
            ck_assert_msg(fabs(lse - lse_full) <= tol,
                          "trial %d, %d splits: lse %.9g, whole %.9g", trial, splits[k], lse,
                          lse_full);
            for (int d = 0; d < D; d++)
                ck_assert_msg(fabs(o[d] - o_full[d]) <= tol,
                              "trial %d, %d splits, column %d: o %.9g, whole %.9g", trial,
                              splits[k], d, o[d], o_full[d]);
        }
}
END_TEST

START_TEST(a_row_whose_every_split_is_empty_gives_zero_output_and_infinite_lse)
{
    static double score[LK], v[LK * D], o_full[D], o[D], lse_full, lse;
    static float o_part[MAX_SPLITS * D], lse_part[MAX_SPLITS];
    for (int j = 0; j < LK; j++) {
        score[j] = -INFINITY;
        for (int d = 0; d < D; d++)
            v[j * D + d] = 1.0;
    }
    for (int n = 1; n <= MAX_SPLITS; n *= 4) {
        attention_whole_and_split(score, v, n, o_full, &lse_full, o_part, lse_part);
        combine_ref(o_part, lse_part, n, 1, 1, 1, D, o, &lse);
        ck_assert(isinf(lse) && lse > 0);
        for (int d = 0; d < D; d++)
            ck_assert(o[d] == 0 && !signbit(o[d]));
    }
}
END_TEST

/* The layout: split s of pair (t, h) at s * part_stride + t * H + h, part_stride >= rows * H. */
START_TEST(partials_are_read_at_split_times_part_stride_plus_pair)
{
    enum { ROWS = 3, H = 2, DD = 4, SPLITS = 2, STRIDE = ROWS * H + 5 };
    float o_part[SPLITS * STRIDE * DD], lse_part[SPLITS * STRIDE];
    double o[ROWS * H * DD], lse[ROWS * H];
    for (int i = 0; i < SPLITS * STRIDE * DD; i++)
        o_part[i] = NAN; /* the gap between splits is never read */
    for (int i = 0; i < SPLITS * STRIDE; i++)
        lse_part[i] = NAN;
    for (int s = 0; s < SPLITS; s++)
        for (int p = 0; p < ROWS * H; p++) {
            lse_part[s * STRIDE + p] = (float)log(s + 1.0); /* weights 1/3, 2/3 */
            for (int d = 0; d < DD; d++)
                o_part[(s * STRIDE + p) * DD + d] = (float)(100 * p + d + 3 * s);
        }
    combine_ref(o_part, lse_part, SPLITS, STRIDE, ROWS, H, DD, o, lse);
    for (int p = 0; p < ROWS * H; p++) {
        ck_assert(fabs(lse[p] - log(3.0)) < 1e-6); /* log 2 rounded to float */
        for (int d = 0; d < DD; d++)
            ck_assert_msg(fabs(o[p * DD + d] - (100 * p + d + 2)) < 1e-4, "pair %d column %d: %g",
                          p, d, o[p * DD + d]);
    }
}
END_TEST

#define TESTS(X) \
    X(emit_is_byte_identical_in_fresh_states_for_every_head_dim_dtype_and_arch) \
    X(source_opens_with_the_key_and_the_template_line_and_names_the_entry) \
    X(launch_facts_give_each_pair_a_group_of_threads_in_whole_warps) \
    X(a_head_dim_the_kernel_cannot_move_in_float4s_is_refused_by_the_template) \
    X(combined_partials_equal_attention_over_all_keys) \
    X(a_row_whose_every_split_is_empty_gives_zero_output_and_infinite_lse) \
    X(partials_are_read_at_split_times_part_stride_plus_pair)
DM_TEST_MAIN("combine_gen", TESTS)
