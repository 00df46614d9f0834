/* test_wmask_gen.c: the window-mask family (templates/window_mask.lua) through codegen and NVRTC,
 * no GPU needed: deterministic text, header lines, features that are off absent from the text,
 * the split-row stages where api/window_mask.c launches them, every axis value compiling for sm80,
 * sm90 and sm90a, unsupported keys refused by the template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "harness.h"
#include "nvrtc_compile.h"
#include "test_compile.h"
#include "wmask_plan.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static dm_variant wmask(int window, dm_dtype t, dm_layout mask, bool relu, bool smooth, dm_arch a)
{
    dm_variant v = {.family = DM_FAMILY_WMASK, .window = relu ? 0 : window, .dtype = t,
                    .mask = mask, .relu = relu, .smooth = smooth, .arch = a};
    return v;
}

static dm_variant wmask_varlen(int window, dm_dtype t, dm_layout mask, bool relu, bool smooth,
                               dm_arch a)
{
    dm_variant v = wmask(window, t, mask, relu, smooth, a);
    v.varlen = true;
    return v;
}

static const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};

START_TEST(emit_is_byte_identical_in_fresh_states_for_every_axis)
{
    static const int windows[] = {1, 100, 2048, 1 << 20};
    int n = 0;
    for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
        for (int m = 0; m < 3; m++)
            for (int f = 0; f < 8; f++)
                for (size_t w = 0; w < ARRAY_LEN(windows); w++) {
                    dm_variant v = wmask(windows[w], dtypes[t], (dm_layout)m, f & 1, f & 2,
                                         (dm_arch)(n % DM_ARCH_COUNT));
                    v.varlen = f & 4;
                    char *a = dm_test_emit_ok(&v, NULL), *b = dm_test_emit_ok(&v, NULL);
                    ck_assert_str_eq(a, b);
                    free(a);
                    free(b);
                    n++;
                }
    ck_assert_int_eq(n, 3 * 3 * 8 * 4);
}
END_TEST

START_TEST(source_opens_with_the_key_and_the_template_line_and_names_the_entry)
{
    dm_variant v = wmask(2048, DM_BF16, DM_LAYOUT_K, false, false, DM_SM90);
    dm_kernel_src k;
    char *src = dm_test_emit_ok(&v, &k);
    const char *want = "// wmask.w2048.bf16.mask-k.sm90\n// dmattn 0.1.0, window_mask.lua: top-2048 "
                       "radix select";
    ck_assert_msg(strncmp(src, want, strlen(want)) == 0, "source starts: %.160s", src);
    ck_assert_ptr_null(strstr(src, "#include"));
    ck_assert_str_eq(k.entry, "dm_wmask_w2048_bf16_mask_k_sm90");
    ck_assert_ptr_nonnull(strstr(src, "constexpr u32 kWindow = 2048u;"));
    ck_assert_int_gt(k.smem_bytes, 0);
    ck_assert_int_gt(k.block_n, 0); /* the resident row length */
    dm_kernel_src_free(&k);
}
END_TEST

START_TEST(features_that_are_off_are_absent_from_the_text)
{
    dm_variant plain = wmask(16, DM_F16, DM_LAYOUT_NONE, false, false, DM_SM80);
    char *src = dm_test_emit_ok(&plain, NULL);
    ck_assert_ptr_null(strstr(src, "r.mask["));     /* no mask reads */
    ck_assert_ptr_null(strstr(src, "n_blocks"));    /* no smoothing */
    ck_assert_ptr_nonnull(strstr(src, "digit_pass<kRes, 10, 6, kRes>"));
    ck_assert_ptr_nonnull(strstr(src, "digit_pass<kRes, 6, 0, false>"));
    free(src);
    dm_variant all = wmask(16, DM_F16, DM_LAYOUT_Q, false, true, DM_SM80);
    src = dm_test_emit_ok(&all, NULL);
    ck_assert_ptr_nonnull(strstr(src, "r.mask["));
    ck_assert_ptr_nonnull(strstr(src, "n_blocks"));
    free(src);
    dm_variant relu = wmask(0, DM_F16, DM_LAYOUT_K, true, false, DM_SM80);
    dm_kernel_src k;
    src = dm_test_emit_ok(&relu, &k);
    ck_assert_ptr_null(strstr(src, "digit_pass")); /* no selection, no window */
    ck_assert_ptr_null(strstr(src, "kWindow"));
    ck_assert_int_eq(k.smem_bytes, 0);
    free(src);
}
END_TEST

START_TEST(f32_bias_takes_four_digits_and_16_bit_two)
{
    dm_variant v = wmask(5, DM_F32, DM_LAYOUT_K, false, false, DM_SM80);
    char *src = dm_test_emit_ok(&v, NULL);
    ck_assert_ptr_nonnull(strstr(src, "digit_pass<kRes, 10, 22, kRes>"));
    ck_assert_ptr_nonnull(strstr(src, "digit_pass<kRes, 10, 12, false>"));
    ck_assert_ptr_nonnull(strstr(src, "digit_pass<kRes, 10, 2, false>"));
    ck_assert_ptr_nonnull(strstr(src, "digit_pass<kRes, 2, 0, false>"));
    free(src);
}
END_TEST

START_TEST(template_refuses_a_key_that_format_would_refuse)
{
    /* Keys that dm_variant_format refuses never reach a template through the runtime, but the
     * template checks too: a relu key with a window is unsupported, named. */
    dm_variant v = wmask(8, DM_F16, DM_LAYOUT_K, false, false, DM_SM80);
    v.relu = true;
    dm_kernel_src k;
    char err[512] = "";
    ck_assert_int_ne(dm_gen_emit(&v, &k, err, sizeof err), DM_OK);
}
END_TEST

/* api/window_mask.c launches split stages 1..split_stages as the emitter returns them, the first
 * split_digit_stages of them as count (odd) and pick (even) passes: the kernel's switch must have
 * exactly those cases, count and pick alternating per digit (16-bit keys: 10 + 6 bits, f32:
 * 10 + 10 + 10 + 2), then write (then smooth). */
START_TEST(split_stages_are_the_ones_the_launcher_runs)
{
    for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
        for (int smooth = 0; smooth < 2; smooth++) {
            dm_variant v = wmask(300, dtypes[t], DM_LAYOUT_K, false, smooth, DM_SM90);
            dm_kernel_src k;
            char *src = dm_test_emit_ok(&v, &k), want[64];
            int digits = dtypes[t] == DM_F32 ? 4 : 2;
            ck_assert_int_eq(k.split_digit_stages, 2 * digits);
            ck_assert_int_eq(k.split_stages, 2 * digits + 1 + smooth);
            for (int phase = 1; phase <= k.split_stages; phase++) {
                const char *what = phase > k.split_digit_stages + 1 ? "split_smooth("
                                   : phase > k.split_digit_stages ? "split_write("
                                   : phase % 2                    ? "split_count<"
                                                                  : "split_pick<";
                snprintf(want, sizeof want, "case %d: %s", phase, what);
                ck_assert_msg(strstr(src, want), "%s: no '%s'", dm_dtype_name(dtypes[t]), want);
            }
            snprintf(want, sizeof want, "case %d:", k.split_stages + 1);
            ck_assert_ptr_null(strstr(src, want));
            ck_assert_ptr_nonnull(strstr(src, dtypes[t] == DM_F32
                                                  ? "case 7: split_count<2, 0, false>"
                                                  : "case 3: split_count<6, 0, false>"));
            ck_assert_ptr_nonnull(strstr(src, "static_assert(sizeof(WmaskParams) == 216"));
            free(src);
        }
    /* relu rows are never split: no split stages, no split code at all */
    dm_variant relu = wmask(0, DM_BF16, DM_LAYOUT_K, true, true, DM_SM90);
    dm_kernel_src k;
    char *src = dm_test_emit_ok(&relu, &k);
    ck_assert_int_eq(k.split_stages, 0);
    ck_assert_int_eq(k.split_digit_stages, 0);
    ck_assert_ptr_null(strstr(src, "split_count<"));
    ck_assert_ptr_null(strstr(src, "split_write("));
    free(src);
}
END_TEST

/* Varlen variants: a row's keys through cu_seqlens and each tensor's key stride, short rows
 * copying the mask, a query-based out's tail cleared; never split, so no split stages. Dense
 * variants have none of it. */
START_TEST(varlen_rows_come_from_cu_seqlens_and_are_never_split)
{
    for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
        for (int relu = 0; relu < 2; relu++) {
            dm_variant v = wmask_varlen(300, dtypes[t], DM_LAYOUT_K, relu, true, DM_SM90A);
            dm_kernel_src k;
            char *src = dm_test_emit_ok(&v, &k);
            ck_assert_ptr_nonnull(strstr(src, relu ? "// wmask.w0." : "// wmask.w300."));
            ck_assert_ptr_nonnull(strstr(src, relu ? ".mask-k.relu.smooth.varlen.sm90a\n"
                                                   : ".mask-k.smooth.varlen.sm90a\n"));
            ck_assert_ptr_nonnull(strstr(src, "sequence_of_token(p, u)"));
            ck_assert_ptr_nonnull(strstr(src, "r.bias[(i64)j * p.bias_key_stride]"));
            ck_assert_ptr_nonnull(strstr(src, "r.mask[(i64)j * p.mask_key_stride]"));
            ck_assert_ptr_nonnull(strstr(src, "clear_tail(p, r);"));
            ck_assert_ptr_nonnull(strstr(src, "copy_row(p, r);"));
            ck_assert_ptr_nonnull(strstr(src, "smooth_row(p, r,"));
            ck_assert_ptr_null(strstr(src, "split_count<"));
            ck_assert_ptr_null(strstr(src, "p.Lk"));
            ck_assert_int_eq(k.split_stages, 0);
            ck_assert_int_eq(k.split_digit_stages, 0);
            free(src);
        }
    dm_variant dense = wmask(300, DM_BF16, DM_LAYOUT_K, false, true, DM_SM90A);
    char *src = dm_test_emit_ok(&dense, NULL);
    ck_assert_ptr_null(strstr(src, "sequence_of_token"));
    ck_assert_ptr_null(strstr(src, "key_stride]"));
    ck_assert_ptr_null(strstr(src, "clear_tail"));
    free(src);
    dm_variant none = wmask_varlen(8, DM_F16, DM_LAYOUT_NONE, false, false, DM_SM80);
    src = dm_test_emit_ok(&none, NULL);
    ck_assert_ptr_null(strstr(src, "r.mask"));
    ck_assert_ptr_nonnull(strstr(src, "r.out[(i64)j * p.out_key_stride] = 1;")); /* no mask */
    free(src);
}
END_TEST

/* Every dtype, mask layout and flag combination for one arch, dense and varlen. */
static void every_axis_compiles(dm_arch arch)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
        for (int m = 0; m < 3; m++)
            for (int f = 0; f < 8; f++) {
                dm_variant v = wmask(m == 1 ? 1 : 2048, dtypes[t], (dm_layout)m, f & 1, f & 2,
                                     arch);
                v.varlen = f & 4;
                dm_test_compile_ok(ctx, &v);
            }
    dm_ctx_destroy(ctx);
}

START_TEST(every_axis_compiles_for_sm80) { every_axis_compiles(DM_SM80); }
END_TEST

START_TEST(every_axis_compiles_for_sm90) { every_axis_compiles(DM_SM90); }
END_TEST

START_TEST(every_axis_compiles_for_sm90a) { every_axis_compiles(DM_SM90A); }
END_TEST

#define TESTS(X) \
    X(emit_is_byte_identical_in_fresh_states_for_every_axis) \
    X(source_opens_with_the_key_and_the_template_line_and_names_the_entry) \
    X(features_that_are_off_are_absent_from_the_text) \
    X(f32_bias_takes_four_digits_and_16_bit_two) \
    X(template_refuses_a_key_that_format_would_refuse) \
    X(split_stages_are_the_ones_the_launcher_runs) \
    X(varlen_rows_come_from_cu_seqlens_and_are_never_split) \
    X(every_axis_compiles_for_sm80) \
    X(every_axis_compiles_for_sm90) \
    X(every_axis_compiles_for_sm90a)
DM_TEST_MAIN("wmask_gen", TESTS)
