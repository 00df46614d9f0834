/* test_nvrtc.c: every value of every axis compiles with NVRTC for sm80, sm90 and sm90a (no GPU
 * needed), so a broken template fails CI rather than a user. Each test covers one axis. On sm90a
 * ptxas must also keep the wgmma pipeline (no serialization) and spill nothing. */
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "harness.h"
#include "nvrtc_compile.h"
#include "test_compile.h"

static const dm_arch ci_archs[] = {DM_SM80, DM_SM90, DM_SM90A};
#define N_CI_ARCHS (sizeof ci_archs / sizeof ci_archs[0])

/* Every head_dim, the other axes rotating so each combination of dtype and layout is reached. */
static void every_head_dim(dm_arch arch)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int d = DM_HEAD_DIM_MIN, i = 0; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP, i++) {
        dm_variant v = {.dir = DM_DIR_FWD, .head_dim = d, .dtype = i % 2 ? DM_BF16 : DM_F16,
                        .mask = (dm_layout)(i % 3), .bias = (dm_layout)((i / 3) % 3),
                        .causal = i % 4 == 1, .softcap = i % 5 == 2, .arch = arch};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}

START_TEST(every_head_dim_compiles_for_sm80) { every_head_dim(DM_SM80); }
END_TEST

START_TEST(every_head_dim_compiles_for_sm90) { every_head_dim(DM_SM90); }
END_TEST

START_TEST(every_head_dim_compiles_for_sm90a) { every_head_dim(DM_SM90A); }
END_TEST

/* ptxas's report (-v) for v, compiled with the library's own options. */
static char *ptxas_report(const dm_variant *v)
{
    char text[DM_VARIANT_TEXT_MAX], err[1024];
    dm_kernel_src k;
    const char *opts[DM_NVRTC_MAX_OPTIONS + 1];
    int n = dm_nvrtc_options(v->arch, opts);
    nvrtcProgram prog;
    size_t bytes = 0;

    dm_variant_format(v, text, sizeof text);
    ck_assert_msg(dm_gen_emit(v, &k, err, sizeof err) == DM_OK, "%s: %s", text, err);
    opts[n++] = "--ptxas-options=-v";
    ck_assert_int_eq(nvrtcCreateProgram(&prog, k.source, "k.cu", 0, NULL, NULL), NVRTC_SUCCESS);
    nvrtcResult r = nvrtcCompileProgram(prog, n, opts);
    ck_assert_int_eq(nvrtcGetProgramLogSize(prog, &bytes), NVRTC_SUCCESS);
    char *log = malloc(bytes + 1);
    ck_assert_ptr_nonnull(log);
    ck_assert_int_eq(nvrtcGetProgramLog(prog, log), NVRTC_SUCCESS);
    log[bytes] = '\0';
    ck_assert_msg(r == NVRTC_SUCCESS, "%s: %s", text, log);
    nvrtcDestroyProgram(&prog);
    dm_kernel_src_free(&k);
    return log;
}

/* The largest "N bytes spill stores" in a ptxas report, over every function it lists (the
 * entries and their noinline callees); -1 where the report names none. */
static long max_spill_store_bytes(const char *log)
{
    long most = -1;
    for (const char *at = strstr(log, " bytes spill stores"); at;
         at = strstr(at + 1, " bytes spill stores")) {
        const char *num = at;
        while (num > log && num[-1] >= '0' && num[-1] <= '9')
            num--;
        const long n = strtol(num, NULL, 10);
        most = n > most ? n : most;
    }
    return most;
}

/* v compiles on sm90a with ptxas keeping the wgmma pipeline (no serialization) and spilling at
 * most spill_bound bytes in any function. */
static void assert_wgmma_pipeline_kept(const dm_variant *v, long spill_bound)
{
    char text[DM_VARIANT_TEXT_MAX];
    dm_variant_format(v, text, sizeof text);
    char *log = ptxas_report(v);
    ck_assert_msg(strstr(log, "serialized") == NULL, "%s: %s", text, log);
    ck_assert_msg(strstr(log, "Used ") != NULL, "%s: no ptxas report: %s", text, log);
    const long spill = max_spill_store_bytes(log);
    ck_assert_msg(spill >= 0 && spill <= spill_bound, "%s: %ld bytes spilled (at most %ld): %s",
                  text, spill, spill_bound, log);
    free(log);
}

/* The wgmma engine's speed rests on ptxas keeping the async pipeline: a loop entered on a vote
 * once made it serialize every wgmma (C7520), silently. Its mask variants sit at the register
 * limit, where one more live value spills: every layout pair at three head_dims, with causal
 * `causal` and softcap `softcap` (one test each, so ctest runs them side by side). */
static void wgmma_pipeline_kept_without_spills(bool causal, bool softcap, int n_dims)
{
    static const int dims[] = {128, 64, 256};
    for (int d = 0; d < n_dims; d++)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++) {
                dm_variant v = {.dir = DM_DIR_FWD, .head_dim = dims[d], .dtype = DM_BF16,
                                .mask = (dm_layout)m, .bias = (dm_layout)b, .causal = causal,
                                .softcap = softcap, .arch = DM_SM90A};
                assert_wgmma_pipeline_kept(&v, 0);
            }
}
START_TEST(sm90a_keeps_the_wgmma_pipeline_and_spills_nothing)
{
    wgmma_pipeline_kept_without_spills(false, false, 3);
}
END_TEST
START_TEST(sm90a_causal_keeps_the_wgmma_pipeline_and_spills_nothing)
{
    wgmma_pipeline_kept_without_spills(true, false, 3);
}
END_TEST
/* softcap at d128 only: the head_dim the performance targets are measured at */
START_TEST(sm90a_softcap_keeps_the_wgmma_pipeline_and_spills_nothing)
{
    wgmma_pipeline_kept_without_spills(false, true, 1);
}
END_TEST

/* The split-KV combine family (attn_combine.lua): every head dim in both dtypes, with no warning
 * from NVRTC or ptxas and no spill. Its kernel is tiny: about 0.2 s a compile. */
static void combine_every_head_dim(dm_arch arch)
{
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP)
        for (int t = 0; t < 2; t++) {
            dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = d,
                            .dtype = t ? DM_BF16 : DM_F16, .arch = arch};
            char text[DM_VARIANT_TEXT_MAX];
            dm_variant_format(&v, text, sizeof text);
            char *log = ptxas_report(&v);
            ck_assert_msg(strstr(log, "warning") == NULL, "%s: %s", text, log);
            ck_assert_msg(strstr(log, " 0 bytes spill stores") != NULL, "%s: %s", text, log);
            free(log);
        }
}

START_TEST(combine_every_head_dim_compiles_without_warnings_for_sm80)
{
    combine_every_head_dim(DM_SM80);
}
END_TEST

START_TEST(combine_every_head_dim_compiles_without_warnings_for_sm90a)
{
    combine_every_head_dim(DM_SM90A);
}
END_TEST

START_TEST(every_mask_and_bias_layout_pair_compiles_in_both_dtypes)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (size_t a = 0; a < N_CI_ARCHS; a++)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++) {
                dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 64,
                                .dtype = (m + b) % 2 ? DM_BF16 : DM_F16, .mask = (dm_layout)m,
                                .bias = (dm_layout)b, .arch = ci_archs[a]};
                dm_test_compile_ok(ctx, &v);
            }
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(causal_and_softcap_compile_in_both_dtypes_and_archs)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (size_t a = 0; a < N_CI_ARCHS; a++)
        for (int t = 0; t < 2; t++)
            for (int f = 1; f < 4; f++) {
                dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 128, .dtype = t ? DM_BF16 : DM_F16,
                                .mask = DM_LAYOUT_K, .bias = DM_LAYOUT_Q, .causal = f & 1,
                                .softcap = f & 2, .arch = ci_archs[a]};
                dm_test_compile_ok(ctx, &v);
            }
    dm_ctx_destroy(ctx);
}
END_TEST

/* Varlen (tiled): every mask x bias layout pair on sm80, sm90 and sm90a, causal and softcap
 * rotating. */
START_TEST(varlen_every_layout_pair_compiles_for_sm80_sm90_and_sm90a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    int i = 0;
    for (size_t a = 0; a < N_CI_ARCHS; a++)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++, i++) {
                dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 128, .dtype = i % 2 ? DM_BF16 : DM_F16,
                                .mask = (dm_layout)m, .bias = (dm_layout)b, .varlen = true,
                                .causal = i % 3 == 1, .softcap = i % 4 == 2,
                                .arch = ci_archs[a]};
                dm_test_compile_ok(ctx, &v);
            }
    dm_ctx_destroy(ctx);
}
END_TEST

/* Varlen (tiled) at every head_dim: its tile rows are the dense ones, but its addressing (token
 * strides, per-sequence extents) is its own text. The other axes rotate as in every_head_dim. */
static void varlen_every_head_dim(dm_arch arch)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int d = DM_HEAD_DIM_MIN, i = 0; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP, i++) {
        dm_variant v = {.dir = DM_DIR_FWD, .head_dim = d, .dtype = i % 2 ? DM_BF16 : DM_F16,
                        .mask = (dm_layout)(i % 3), .bias = (dm_layout)((i / 3) % 3),
                        .varlen = true, .causal = i % 4 == 1, .softcap = i % 5 == 2,
                        .arch = arch};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}

START_TEST(varlen_every_head_dim_compiles_for_sm80) { varlen_every_head_dim(DM_SM80); }
END_TEST

START_TEST(varlen_every_head_dim_compiles_for_sm90a) { varlen_every_head_dim(DM_SM90A); }
END_TEST

/* The decode path at every head_dim: it has tuning rows of its own (d <= 128 and d > 128 differ
 * in key tile), and dm_fwd / dm_fwd_varlen take it for any D. Mask and bias none or per key (the
 * layouts it runs), dense and varlen, dtype, causal and softcap rotating. */
static void decode_every_head_dim(dm_arch arch)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int d = DM_HEAD_DIM_MIN, i = 0; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP, i++) {
        dm_variant v = {.dir = DM_DIR_FWD, .head_dim = d, .dtype = i % 2 ? DM_BF16 : DM_F16,
                        .mask = (i / 2) % 2 ? DM_LAYOUT_K : DM_LAYOUT_NONE,
                        .bias = (i / 4) % 2 ? DM_LAYOUT_K : DM_LAYOUT_NONE,
                        .varlen = (i / 3) % 2, .causal = i % 3 == 1, .softcap = i % 5 == 2,
                        .decode = true, .arch = arch};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}

START_TEST(decode_every_head_dim_compiles_for_sm80) { decode_every_head_dim(DM_SM80); }
END_TEST

START_TEST(decode_every_head_dim_compiles_for_sm90a) { decode_every_head_dim(DM_SM90A); }
END_TEST

/* The decode path's kernels (mask and bias none or per key), dense and varlen, on sm80, sm90 and
 * sm90a; a query-layout decode variant is refused as unsupported, naming the reason. */
START_TEST(decode_compiles_for_sm80_sm90_and_sm90a)
{
    static const dm_layout layouts[] = {DM_LAYOUT_NONE, DM_LAYOUT_K};
    dm_ctx *ctx = dm_test_offline_ctx();
    int i = 0;
    for (size_t a = 0; a < N_CI_ARCHS; a++)
        for (int m = 0; m < 2; m++)
            for (int b = 0; b < 2; b++)
                for (int varlen = 0; varlen < 2; varlen++, i++) {
                    dm_variant v = {.dir = DM_DIR_FWD, .head_dim = i % 3 ? 128 : 64,
                                    .dtype = i % 2 ? DM_BF16 : DM_F16, .mask = layouts[m],
                                    .bias = layouts[b], .varlen = varlen, .causal = i % 3 == 1,
                                    .softcap = i % 5 == 2, .decode = true,
                                    .arch = ci_archs[a]};
                    dm_test_compile_ok(ctx, &v);
                }
    dm_variant q = {.dir = DM_DIR_FWD, .head_dim = 128, .dtype = DM_BF16, .mask = DM_LAYOUT_Q,
                    .decode = true, .arch = DM_SM90A};
    dm_kernel_src k;
    char err[512];
    ck_assert_int_eq(dm_gen_emit(&q, &k, err, sizeof err), DM_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "one row per key") != NULL, "%s", err);
    dm_ctx_destroy(ctx);
}
END_TEST

/* The decode kernels the speed targets run (d128, sm90a, mask and bias none or per key, varlen
 * and dense) keep the wgmma pipeline and spill at most 32 bytes: at three blocks an SM (168
 * registers) ptxas reloads a few loop-invariant values (bench/NOTES.md, issue 15 session 13); 72
 * bytes, with the P V overlapped, was 4% slower at two blocks an SM. */
START_TEST(sm90a_decode_keeps_the_wgmma_pipeline_and_spills_little)
{
    static const dm_layout layouts[] = {DM_LAYOUT_NONE, DM_LAYOUT_K};
    for (int m = 0; m < 2; m++)
        for (int b = 0; b < 2; b++)
            for (int varlen = 0; varlen < 2; varlen++) {
                dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 128, .dtype = DM_BF16,
                                .mask = layouts[m], .bias = layouts[b], .varlen = varlen,
                                .decode = true, .arch = DM_SM90A};
                assert_wgmma_pipeline_kept(&v, 32);
            }
}
END_TEST

/* The backward family (attn_bwd.lua): every mask x bias layout pair at d128 on sm80 and sm90a,
 * causal and softcap rotating (both on for one pair). */
START_TEST(bwd_every_layout_pair_compiles_for_sm80_and_sm90a)
{
    static const dm_arch archs[] = {DM_SM80, DM_SM90A};
    dm_ctx *ctx = dm_test_offline_ctx();
    int i = 0;
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++, i++) {
                dm_variant v = {.dir = DM_DIR_BWD, .head_dim = 128, .dtype = DM_BF16,
                                .mask = (dm_layout)m, .bias = (dm_layout)b, .causal = i % 3 == 1,
                                .softcap = i % 4 == 2, .arch = archs[a]};
                dm_test_compile_ok(ctx, &v);
            }
    dm_ctx_destroy(ctx);
}
END_TEST

/* The backward at every head_dim the forward takes (dm_bwd accepts what dm_fwd accepts), the
 * other axes rotating as in every_head_dim. */
START_TEST(bwd_every_head_dim_compiles_for_sm80)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int d = DM_HEAD_DIM_MIN, i = 0; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP, i++) {
        dm_variant v = {.dir = DM_DIR_BWD, .head_dim = d, .dtype = i % 2 ? DM_BF16 : DM_F16,
                        .mask = (dm_layout)(i % 3), .bias = (dm_layout)((i / 3) % 3),
                        .causal = i % 4 == 1, .softcap = i % 5 == 2, .arch = DM_SM80};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}
END_TEST

/* The sm90a backward's wgmma engine (attn_bwd_wgmma.lua) at every head_dim it takes (up to 128:
 * one swizzle atom or two, the zero-padded chunk where D % 16 == 8), the other axes rotating. */
START_TEST(bwd_every_wgmma_head_dim_compiles_for_sm90a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int d = DM_HEAD_DIM_MIN, i = 0; d <= 128; d += DM_HEAD_DIM_STEP, i++) {
        dm_variant v = {.dir = DM_DIR_BWD, .head_dim = d, .dtype = i % 2 ? DM_F16 : DM_BF16,
                        .mask = (dm_layout)((i + 1) % 3), .bias = (dm_layout)((i / 3) % 3),
                        .causal = i % 4 == 2, .softcap = i % 5 == 3, .arch = DM_SM90A};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}
END_TEST

/* The varlen backward (each block's sequence from cu_seqlens, a varlen phase 2 for dbias sums
 * across blocks): every mask x bias layout pair at d128, the arch alternating between sm80 and
 * sm90a, causal and softcap rotating; the SIMT engine (d256, query bias) and d64 once each. */
START_TEST(bwd_varlen_every_layout_pair_compiles_for_sm80_and_sm90a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int i = 0; i < 11; i++) {
        dm_variant v = {.dir = DM_DIR_BWD, .head_dim = i < 9 ? 128 : i == 9 ? 256 : 64,
                        .dtype = i % 3 ? DM_BF16 : DM_F16,
                        .mask = (dm_layout)(i < 9 ? i % 3 : 2),
                        .bias = (dm_layout)(i < 9 ? i / 3 : i - 8), .varlen = true,
                        .causal = i % 3 == 1, .softcap = i % 4 == 2,
                        .arch = i % 2 ? DM_SM90A : DM_SM80};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}
END_TEST

/* The deterministic rows phase alone (bwdrows keys): every mask x bias layout pair at d128 on
 * sm90a, dense and varlen alternating, causal and softcap rotating; d64 and the mma.sync engine
 * (sm80) once each. */
START_TEST(bwdrows_every_layout_pair_compiles_for_sm90a_and_sm80)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    for (int i = 0; i < 11; i++) {
        dm_variant v = {.dir = DM_DIR_BWD_ROWS, .head_dim = i == 9 ? 64 : 128,
                        .dtype = i % 3 ? DM_BF16 : DM_F16, .mask = (dm_layout)(i % 3),
                        .bias = (dm_layout)(i / 3 % 3), .varlen = i % 2 == 1,
                        .causal = i % 3 == 1, .softcap = i % 4 == 2,
                        .arch = i == 10 ? DM_SM80 : DM_SM90A};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}
END_TEST

/* The backward's dense sm90a d128 kernels (the ones issue 16's speed targets run) keep the wgmma
 * pipeline and spill nothing in any function but where bounded below: the keys phase overlaps its
 * products with the element work, and a divergent store between a product's issue and its wait
 * once made ptxas serialize them (C7520); its registers sit at 234-255. Every mask x bias layout
 * pair of the direction, plain or with causal and softcap together (one test each, so ctest runs
 * them side by side). Known and bounded (bench/NOTES.md, issue 16 session 21): with causal,
 * softcap and a query-layout bias the keys phase spills, 160 bytes without a mask and 12 with a
 * key mask under this NVRTC (172 and 36 before the products overlapped); a bound, not zero,
 * there. */
static void bwd_wgmma_pipeline_kept_without_spills(dm_dir dir, bool causal_softcap)
{
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++) {
            dm_variant v = {.dir = dir, .head_dim = 128, .dtype = DM_BF16,
                            .mask = (dm_layout)m, .bias = (dm_layout)b, .causal = causal_softcap,
                            .softcap = causal_softcap, .arch = DM_SM90A};
            assert_wgmma_pipeline_kept(&v, causal_softcap && b == DM_LAYOUT_Q ? 160 : 0);
        }
}
START_TEST(bwd_sm90a_keeps_the_wgmma_pipeline_and_spills_nothing)
{
    bwd_wgmma_pipeline_kept_without_spills(DM_DIR_BWD, false);
}
END_TEST
START_TEST(bwd_sm90a_causal_softcap_keeps_the_wgmma_pipeline_and_spills_within_bound)
{
    bwd_wgmma_pipeline_kept_without_spills(DM_DIR_BWD, true);
}
END_TEST
/* The deterministic mode's kernels (bwddet keys: the dq turns' text in the keys phase). */
START_TEST(bwddet_sm90a_keeps_the_wgmma_pipeline_and_spills_nothing)
{
    bwd_wgmma_pipeline_kept_without_spills(DM_DIR_BWD_DET, false);
}
END_TEST
START_TEST(bwddet_sm90a_causal_softcap_keeps_the_wgmma_pipeline_and_spills_within_bound)
{
    bwd_wgmma_pipeline_kept_without_spills(DM_DIR_BWD_DET, true);
}
END_TEST
START_TEST(bwdrows_sm90a_keeps_the_wgmma_pipeline_and_spills_within_bound)
{
    bwd_wgmma_pipeline_kept_without_spills(DM_DIR_BWD_ROWS, false);
    bwd_wgmma_pipeline_kept_without_spills(DM_DIR_BWD_ROWS, true);
}
END_TEST

START_TEST(other_archs_compile)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    const dm_arch others[] = {DM_SM86, DM_SM89, DM_SM90A};
    for (size_t a = 0; a < 3; a++) {
        dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 96, .dtype = DM_BF16, .mask = DM_LAYOUT_Q,
                        .bias = DM_LAYOUT_K, .causal = true, .arch = others[a]};
        dm_test_compile_ok(ctx, &v);
    }
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(broken_source_is_a_compile_error_with_the_log)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    void *cubin = (void *)1;
    size_t bytes = 1;
    dm_status st = dm_nvrtc_compile(ctx, "test", "fwd.d64.f16.mask-none.bias-none.w0.sm80",
                                    "extern \"C\" __global__ void k() { undeclared_x = 1; }\n",
                                    DM_SM80, &cubin, &bytes, NULL);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_ptr_null(cubin);
    ck_assert_uint_eq(bytes, 0);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "undeclared_x"));
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "fwd.d64.f16.mask-none.bias-none.w0.sm80"));
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(options_name_the_arch_and_differ_per_arch)
{
    char a[512], b[512];
    dm_nvrtc_options_text(DM_SM80, a, sizeof a);
    dm_nvrtc_options_text(DM_SM90A, b, sizeof b);
    ck_assert_ptr_nonnull(strstr(a, "sm_80"));
    ck_assert_ptr_nonnull(strstr(b, "sm_90a"));
    ck_assert_str_ne(a, b);
}
END_TEST

#define TESTS(X) \
    X(every_head_dim_compiles_for_sm80) \
    X(every_head_dim_compiles_for_sm90) \
    X(every_head_dim_compiles_for_sm90a) \
    X(sm90a_keeps_the_wgmma_pipeline_and_spills_nothing) \
    X(sm90a_causal_keeps_the_wgmma_pipeline_and_spills_nothing) \
    X(sm90a_softcap_keeps_the_wgmma_pipeline_and_spills_nothing) \
    X(combine_every_head_dim_compiles_without_warnings_for_sm80) \
    X(combine_every_head_dim_compiles_without_warnings_for_sm90a) \
    X(every_mask_and_bias_layout_pair_compiles_in_both_dtypes) \
    X(causal_and_softcap_compile_in_both_dtypes_and_archs) \
    X(varlen_every_layout_pair_compiles_for_sm80_sm90_and_sm90a) \
    X(varlen_every_head_dim_compiles_for_sm80) \
    X(varlen_every_head_dim_compiles_for_sm90a) \
    X(decode_every_head_dim_compiles_for_sm80) \
    X(decode_every_head_dim_compiles_for_sm90a) \
    X(decode_compiles_for_sm80_sm90_and_sm90a) \
    X(sm90a_decode_keeps_the_wgmma_pipeline_and_spills_little) \
    X(bwd_every_layout_pair_compiles_for_sm80_and_sm90a) \
    X(bwd_every_head_dim_compiles_for_sm80) \
    X(bwd_every_wgmma_head_dim_compiles_for_sm90a) \
    X(bwd_varlen_every_layout_pair_compiles_for_sm80_and_sm90a) \
    X(bwdrows_every_layout_pair_compiles_for_sm90a_and_sm80) \
    X(bwd_sm90a_keeps_the_wgmma_pipeline_and_spills_nothing) \
    X(bwd_sm90a_causal_softcap_keeps_the_wgmma_pipeline_and_spills_within_bound) \
    X(bwddet_sm90a_keeps_the_wgmma_pipeline_and_spills_nothing) \
    X(bwddet_sm90a_causal_softcap_keeps_the_wgmma_pipeline_and_spills_within_bound) \
    X(bwdrows_sm90a_keeps_the_wgmma_pipeline_and_spills_within_bound) \
    X(other_archs_compile) \
    X(broken_source_is_a_compile_error_with_the_log) \
    X(options_name_the_arch_and_differ_per_arch)
DM_TEST_MAIN("nvrtc", TESTS)
