/* test_gen_text.c: the generated CUDA reads like hand-written code: in every variant of every family
 * no line over 100 columns and no two blank lines in a row (emit only, cheap), and NVRTC with its
 * warnings on reports no unused variable for a set of variants covering every code path (front
 * end only: compute_XX targets, no ptxas). The window-mask family has tests of its own. */
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dm_limits.h"
#include "gen.h"
#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Fails naming the variant and the line when src has a line over 100 columns or two blank lines
 * in a row. */
static void check_text(const dm_variant *v, const char *src)
{
    char key[DM_VARIANT_TEXT_MAX];
    dm_variant_format(v, key, sizeof key);
    int line = 1, blank_before = 0;
    for (const char *p = src; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        ck_assert_msg(len <= 100, "%s: line %d has %zu columns: %.*s", key, line, len, (int)len,
                      p);
        ck_assert_msg(!(len == 0 && blank_before), "%s: two blank lines in a row at line %d", key,
                      line);
        blank_before = len == 0;
        if (!end)
            break;
        p = end + 1;
        line++;
    }
}

static void emit_and_check_text(const dm_variant *v)
{
    char err[1024], key[DM_VARIANT_TEXT_MAX];
    dm_kernel_src k;
    dm_variant_format(v, key, sizeof key);
    ck_assert_msg(dm_gen_emit(v, &k, err, sizeof err) == DM_OK, "%s: %s", key, err);
    check_text(v, k.source);
    dm_kernel_src_free(&k);
}

/* Every forward variant of one arch: every head dim dm_limits.h allows, both dtypes, every mask
 * and bias layout, causal, softcap. One test per arch, so ctest runs them side by side. */
static void every_fwd_variant_of(dm_arch arch)
{
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP)
        for (int t = 0; t < 2; t++)
            for (int m = 0; m < 3; m++)
                for (int b = 0; b < 3; b++)
                    for (int f = 0; f < 4; f++) {
                        dm_variant v = {.dir = DM_DIR_FWD, .head_dim = d,
                                        .dtype = t ? DM_BF16 : DM_F16, .mask = (dm_layout)m,
                                        .bias = (dm_layout)b, .causal = f & 1, .softcap = f & 2,
                                        .arch = arch};
                        emit_and_check_text(&v);
                    }
}

/* The varlen and decode forms of every head dim, layout, causal and softcap on one arch (bf16:
 * the dtype changes no line's length); decode has no per-query layouts. */
static void every_varlen_and_decode_variant_of(dm_arch arch)
{
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++)
                for (int f = 0; f < 4; f++)
                    for (int form = 1; form < 4; form++) { /* varlen, decode, both */
                        bool decode = form & 2;
                        if (decode && (m == DM_LAYOUT_Q || b == DM_LAYOUT_Q))
                            continue;
                        dm_variant v = {.dir = DM_DIR_FWD, .head_dim = d, .dtype = DM_BF16,
                                        .mask = (dm_layout)m, .bias = (dm_layout)b,
                                        .varlen = form & 1, .causal = f & 1, .softcap = f & 2,
                                        .decode = decode, .arch = arch};
                        emit_and_check_text(&v);
                    }
}

START_TEST(varlen_and_decode_text_fits_100_columns_without_double_blank_lines_on_sm80)
{
    every_varlen_and_decode_variant_of(DM_SM80);
}
END_TEST

START_TEST(varlen_and_decode_text_fits_100_columns_without_double_blank_lines_on_sm90a)
{
    every_varlen_and_decode_variant_of(DM_SM90A);
}
END_TEST

START_TEST(fwd_text_fits_100_columns_without_double_blank_lines_on_sm80)
{
    every_fwd_variant_of(DM_SM80);
}
END_TEST

START_TEST(fwd_text_fits_100_columns_without_double_blank_lines_on_sm86)
{
    every_fwd_variant_of(DM_SM86);
}
END_TEST

START_TEST(fwd_text_fits_100_columns_without_double_blank_lines_on_sm89)
{
    every_fwd_variant_of(DM_SM89);
}
END_TEST

START_TEST(fwd_text_fits_100_columns_without_double_blank_lines_on_sm90)
{
    every_fwd_variant_of(DM_SM90);
}
END_TEST

START_TEST(fwd_text_fits_100_columns_without_double_blank_lines_on_sm90a)
{
    every_fwd_variant_of(DM_SM90A);
}
END_TEST

static dm_variant wmask(int window, dm_dtype t, dm_layout mask, bool relu, bool smooth, dm_arch a)
{
    dm_variant v = {.family = DM_FAMILY_WMASK, .window = relu ? 0 : window, .dtype = t,
                    .mask = mask, .relu = relu, .smooth = smooth, .arch = a};
    return v;
}

/* Every window-mask axis (a few windows: one key, one block's worth, past the resident rows). */
START_TEST(wmask_text_fits_100_columns_without_double_blank_lines)
{
    static const int windows[] = {1, 16, 300, 2048, 40000};
    static const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    for (int a = 0; a < DM_ARCH_COUNT; a++)
        for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
            for (int m = 0; m < 3; m++)
                for (int f = 0; f < 8; f++) { /* relu, smooth, varlen */
                    if (f & 1) { /* relu: w0 only */
                        dm_variant v = wmask(0, dtypes[t], (dm_layout)m, true, f & 2, (dm_arch)a);
                        v.varlen = f & 4;
                        emit_and_check_text(&v);
                        continue;
                    }
                    for (size_t w = 0; w < ARRAY_LEN(windows); w++) {
                        dm_variant v = wmask(windows[w], dtypes[t], (dm_layout)m, false, f & 2,
                                             (dm_arch)a);
                        v.varlen = f & 4;
                        emit_and_check_text(&v);
                    }
                }
}
END_TEST

/* Every split-KV combine variant: each head dim, dtype and arch. */
START_TEST(combine_text_fits_100_columns_without_double_blank_lines)
{
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP)
        for (int t = 0; t < 2; t++)
            for (int a = 0; a < DM_ARCH_COUNT; a++) {
                dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = d,
                                .dtype = t ? DM_BF16 : DM_F16, .arch = (dm_arch)a};
                emit_and_check_text(&v);
            }
}
END_TEST

/* NVRTC's front end on v (to PTX for the compute_XX of its arch: no ptxas, so it is quick); fails
 * naming the variant when the log reports an unused variable. */
static void no_unused_variable_warning(const dm_variant *v)
{
    static const char *const targets[DM_ARCH_COUNT] = {
        "--gpu-architecture=compute_80", "--gpu-architecture=compute_86",
        "--gpu-architecture=compute_89", "--gpu-architecture=compute_90",
        "--gpu-architecture=compute_90a"};
    char err[1024], key[DM_VARIANT_TEXT_MAX];
    dm_kernel_src k;
    nvrtcProgram prog;
    size_t bytes = 0;
    dm_variant_format(v, key, sizeof key);
    ck_assert_msg(dm_gen_emit(v, &k, err, sizeof err) == DM_OK, "%s: %s", key, err);
    const char *opts[] = {targets[v->arch], "--std=c++17", "--fmad=true"};
    ck_assert_int_eq(nvrtcCreateProgram(&prog, k.source, "k.cu", 0, NULL, NULL), NVRTC_SUCCESS);
    nvrtcResult r = nvrtcCompileProgram(prog, (int)ARRAY_LEN(opts), opts);
    ck_assert_int_eq(nvrtcGetProgramLogSize(prog, &bytes), NVRTC_SUCCESS);
    char *log = malloc(bytes + 1);
    ck_assert_ptr_nonnull(log);
    ck_assert_int_eq(nvrtcGetProgramLog(prog, log), NVRTC_SUCCESS);
    log[bytes] = '\0';
    nvrtcDestroyProgram(&prog);
    dm_kernel_src_free(&k);
    ck_assert_msg(r == NVRTC_SUCCESS, "%s: %s", key, log);
    ck_assert_msg(strstr(log, "declared but never referenced") == NULL, "%s: %s", key, log);
    ck_assert_msg(strstr(log, "set but never used") == NULL, "%s: %s", key, log);
    free(log);
}

/* One variant per code path of an engine (not the product: ~6 s a variant): each mask x bias
 * pair once, causal in one and softcap in the next, so each mask layout is seen with and without
 * causal (its vote and scan differ); the dtypes alternate; d72 takes the padded-column path. */
static void fwd_code_paths_without_unused_variables(dm_arch arch)
{
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++) {
            const bool causal = (m + b) % 2;
            dm_variant v = {.dir = DM_DIR_FWD, .head_dim = b == 0 ? 72 : 128,
                            .dtype = (m + 2 * b) % 2 ? DM_BF16 : DM_F16, .mask = (dm_layout)m,
                            .bias = (dm_layout)b, .causal = causal, .softcap = !causal,
                            .arch = arch};
            no_unused_variable_warning(&v);
        }
}

START_TEST(nvrtc_finds_no_unused_variable_on_the_mma_sync_engine)
{
    fwd_code_paths_without_unused_variables(DM_SM80);
}
END_TEST

START_TEST(nvrtc_finds_no_unused_variable_on_the_wgmma_engine)
{
    fwd_code_paths_without_unused_variables(DM_SM90A);
}
END_TEST

/* The varlen and decode forms: each mask x bias pair varlen (causal alternating, the key layouts'
 * strided reads included), and the decode kernel dense and varlen over the per-key layouts. */
START_TEST(nvrtc_finds_no_unused_variable_in_varlen_and_decode_kernels)
{
    for (int a = 0; a < 2; a++)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++) {
                const bool causal = (m + b + a) % 2, decode = m != 1 && b != 1;
                dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 128, .dtype = DM_BF16,
                                .mask = (dm_layout)m, .bias = (dm_layout)b, .varlen = true,
                                .causal = causal, .arch = a ? DM_SM90A : DM_SM80};
                no_unused_variable_warning(&v);
                if (decode) {
                    v.decode = true;
                    v.varlen = (m + b) % 2;
                    no_unused_variable_warning(&v);
                }
            }
}
END_TEST

/* The window-mask family's paths: top-k resident and split (a window past the resident rows),
 * relu, smooth, every dtype and mask layout; varlen rows (sm80 and sm90a) likewise. */
START_TEST(nvrtc_finds_no_unused_variable_in_the_window_mask_family)
{
    static const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
        for (int m = 0; m < 3; m++) {
            dm_variant top = wmask(2048, dtypes[t], (dm_layout)m, false, m == 1, DM_SM80);
            dm_variant relu = wmask(0, dtypes[t], (dm_layout)m, true, m == 2, DM_SM90);
            no_unused_variable_warning(&top);
            no_unused_variable_warning(&relu);
            top.varlen = relu.varlen = true;
            top.arch = t % 2 ? DM_SM90A : DM_SM80;
            relu.arch = t % 2 ? DM_SM80 : DM_SM90A;
            no_unused_variable_warning(&top);
            no_unused_variable_warning(&relu);
        }
}
END_TEST

/* The combine family's paths: a group smaller than a warp (d8), a column count that leaves
 * threads of the group idle (d72), two columns a thread (d256); both dtypes. */
START_TEST(nvrtc_finds_no_unused_variable_in_the_combine_family)
{
    static const int dims[] = {8, 72, 128, 256};
    for (size_t d = 0; d < ARRAY_LEN(dims); d++) {
        dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = dims[d],
                        .dtype = d % 2 ? DM_BF16 : DM_F16, .arch = d < 2 ? DM_SM80 : DM_SM90A};
        no_unused_variable_warning(&v);
    }
}
END_TEST

/* The backward family: every head dim (both engines), layout pair, causal, softcap and varlen on
 * sm80 and sm90a (bf16: the dtype changes no line's length). */
START_TEST(bwd_text_fits_100_columns_without_double_blank_lines)
{
    for (int d = DM_HEAD_DIM_MIN; d <= DM_HEAD_DIM_MAX; d += DM_HEAD_DIM_STEP)
        for (int m = 0; m < 3; m++)
            for (int b = 0; b < 3; b++)
                for (int f = 0; f < 16; f++) {
                    dm_variant v = {.dir = DM_DIR_BWD, .head_dim = d, .dtype = DM_BF16,
                                    .mask = (dm_layout)m, .bias = (dm_layout)b, .causal = f & 1,
                                    .softcap = f & 2, .arch = f & 4 ? DM_SM90A : DM_SM80,
                                    .varlen = f & 8};
                    emit_and_check_text(&v);
                }
}
END_TEST

/* Each layout pair with causal and softcap toggled, on both engines (d128: mma.sync, d256: SIMT). */
START_TEST(nvrtc_finds_no_unused_variable_in_the_backward_family)
{
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++)
            for (int e = 0; e < 2; e++) {
                dm_variant v = {.dir = DM_DIR_BWD, .head_dim = e ? 256 : 128,
                                .dtype = e ? DM_F16 : DM_BF16, .mask = (dm_layout)m,
                                .bias = (dm_layout)b, .causal = (m + b + e) % 2,
                                .softcap = (m + e) % 2, .arch = e ? DM_SM80 : DM_SM90A};
                no_unused_variable_warning(&v);
            }
}
END_TEST

#define TESTS(X) \
    X(bwd_text_fits_100_columns_without_double_blank_lines) \
    X(nvrtc_finds_no_unused_variable_in_the_backward_family) \
    X(varlen_and_decode_text_fits_100_columns_without_double_blank_lines_on_sm80) \
    X(varlen_and_decode_text_fits_100_columns_without_double_blank_lines_on_sm90a) \
    X(fwd_text_fits_100_columns_without_double_blank_lines_on_sm80) \
    X(fwd_text_fits_100_columns_without_double_blank_lines_on_sm86) \
    X(fwd_text_fits_100_columns_without_double_blank_lines_on_sm89) \
    X(fwd_text_fits_100_columns_without_double_blank_lines_on_sm90) \
    X(fwd_text_fits_100_columns_without_double_blank_lines_on_sm90a) \
    X(wmask_text_fits_100_columns_without_double_blank_lines) \
    X(combine_text_fits_100_columns_without_double_blank_lines) \
    X(nvrtc_finds_no_unused_variable_on_the_mma_sync_engine) \
    X(nvrtc_finds_no_unused_variable_on_the_wgmma_engine) \
    X(nvrtc_finds_no_unused_variable_in_the_window_mask_family) \
    X(nvrtc_finds_no_unused_variable_in_the_combine_family) \
    X(nvrtc_finds_no_unused_variable_in_varlen_and_decode_kernels)
DM_TEST_MAIN("gen_text", TESTS)
