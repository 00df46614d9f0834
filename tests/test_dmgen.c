/* test_dmgen.c: the dmgen command line as a user meets it: the built binary run as a subprocess
 * ($DMATTN_BUILD_DIR/dmgen), its stdout, stderr and exit status, each test on a cache directory
 * of its own. Exit statuses: 0 success, 1 failure, 2 usage error (a VARIANT that does not parse,
 * for emit and build alike, is a usage error). Compiles are few: NVRTC takes seconds each. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "harness.h"
#include "run_util.h"
#include "test_fs.h"

/* Runs dmgen with the NULL-terminated arguments; env ("NAME=value") may be NULL. */
static run_result run_env(const char *env, const char *arg0, ...)
{
    const char *env_list[] = {env, NULL};
    va_list ap;
    va_start(ap, arg0);
    run_result r = dm_test_run_built("dmgen", env ? env_list : NULL, arg0, ap);
    va_end(ap);
    return r;
}

#define run(...) run_env(NULL, __VA_ARGS__, (const char *)NULL)

static bool has(const char *haystack, const char *needle)
{
    return strstr(haystack, needle);
}

/* The cache dir a test uses: "<tmp>/cache", not created yet (dmgen build creates it). */
static void cache_in(const char *tmp, char *cache, size_t n)
{
    snprintf(cache, n, "%s/cache", tmp);
}

#define V1 "fwd.d64.f16.mask-none.bias-none.w0.sm80"
#define V2 "fwd.d64.bf16.mask-k.bias-none.w0.sm80"

START_TEST(help_lists_every_command_on_stdout_and_exits_0)
{
    run_result r = run("--help");
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.err, "");
    const char *commands[] = {"emit", "build", "list", "clear", "info"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_msg(has(r.out, commands[i]), "--help does not mention %s", commands[i]);
    run_free(&r);
}
END_TEST

START_TEST(each_command_has_help_on_stdout)
{
    const char *commands[] = {"emit", "build", "list", "clear", "info"};
    for (size_t i = 0; i < 5; i++) {
        run_result r = run(commands[i], "--help");
        ck_assert_msg(r.code == 0, "%s --help: exit %d", commands[i], r.code);
        ck_assert_msg(strncmp(r.out, "usage: dmgen ", 13) == 0, "%s --help: %s", commands[i],
                      r.out);
        ck_assert_str_eq(r.err, "");
        run_free(&r);
    }
    run_result r = run("help", "build");
    ck_assert_int_eq(r.code, 0);
    ck_assert(has(r.out, "--preset"));
    ck_assert(has(r.out, "default")); /* the presets are listed */
    run_free(&r);
}
END_TEST

START_TEST(version_names_dmgen_nvrtc_and_lua)
{
    run_result r = run("--version");
    ck_assert_int_eq(r.code, 0);
    int maj, min, lmaj, lmin, lpatch, used = 0;
    ck_assert_msg(sscanf(r.out, "dmgen 0.1.0 (NVRTC %d.%d, Lua %d.%d.%d)\n%n", &maj, &min, &lmaj,
                         &lmin, &lpatch, &used) == 5 &&
                      used == (int)strlen(r.out),
                  "version line: '%s'", r.out);
    ck_assert_int_eq(lmaj, 5);
    ck_assert_int_eq(lmin, 4);
    run_free(&r);
}
END_TEST

START_TEST(unknown_command_exits_2_with_a_one_line_reason)
{
    run_result r = run("frobnicate");
    ck_assert_int_eq(r.code, 2);
    ck_assert_str_eq(r.out, "");
    ck_assert_int_eq(count_lines(r.err), 1);
    ck_assert(strncmp(r.err, "dmgen: ", 7) == 0);
    ck_assert(has(r.err, "'frobnicate'"));
    run_free(&r);

    r = run_env(NULL, (const char *)NULL); /* no command at all */
    ck_assert_int_eq(r.code, 2);
    ck_assert_int_eq(count_lines(r.err), 1);
    run_free(&r);
}
END_TEST

START_TEST(unknown_option_exits_2_naming_it)
{
    const char *commands[] = {"emit", "build", "list", "clear", "info"};
    for (size_t i = 0; i < 5; i++) {
        run_result r = run(commands[i], "--frob");
        ck_assert_msg(r.code == 2, "%s --frob: exit %d", commands[i], r.code);
        ck_assert_int_eq(count_lines(r.err), 1);
        ck_assert_msg(has(r.err, "'--frob'"), "%.800s", r.err);
        run_free(&r);
    }
    run_result r = run("--frob");
    ck_assert_int_eq(r.code, 2);
    ck_assert_int_eq(count_lines(r.err), 1);
    run_free(&r);
}
END_TEST

START_TEST(emit_prints_source_opening_with_the_variant_line)
{
    run_result r = run("emit", V1);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_str_eq(r.err, "");
    ck_assert_msg(strncmp(r.out, "// " V1 "\n", strlen("// " V1 "\n")) == 0, "%.200s", r.out);
    ck_assert(has(r.out, "extern \"C\""));
    run_free(&r);
}
END_TEST

START_TEST(emit_of_a_malformed_variant_exits_2_naming_the_field)
{
    run_result r = run("emit", "fwd.d64.fp16.mask-none.bias-none.w0.sm80");
    ck_assert_int_eq(r.code, 2);
    ck_assert_str_eq(r.out, "");
    ck_assert_int_eq(count_lines(r.err), 1);
    ck_assert_msg(has(r.err, "dmgen: emit: cannot parse 'fwd.d64.fp16.mask-none.bias-none.w0."
                             "sm80'"),
                  "%.800s", r.err);
    ck_assert_msg(has(r.err, "field 3 (dtype)"), "%.800s", r.err);
    run_free(&r);
}
END_TEST

START_TEST(emit_of_an_unsupported_variant_prints_the_library_message_as_is)
{
    run_result r = run("emit", "fwd.d64.f16.mask-none.bias-none.w16.sm80");
    ck_assert_int_eq(r.code, 1);
    ck_assert_str_eq(r.out, "");
    ck_assert_str_eq(r.err, "dmgen: emit: variant 'fwd.d64.f16.mask-none.bias-none.w16.sm80': "
                            "top-k windows (w16) are not built yet\n");
    run_free(&r);
}
END_TEST

START_TEST(build_stores_two_variants_then_finds_them_cached)
{
    char tmp[64], cache[128];
    dm_test_temp_dir(tmp, "dmgen");
    cache_in(tmp, cache, sizeof cache);

    run_result r = run("build", "-j", "2", "--cache", cache, V1, V2);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strncmp(r.err, "built 2, cached 0, failed 0 in ", 31) == 0, "%.800s", r.err);
    ck_assert_msg(has(r.err, cache), "the summary names the cache: %.800s", r.err);
    ck_assert_int_eq(count_lines(r.err), 1); /* not a terminal: no progress, only the summary */
    ck_assert_int_eq(dm_test_count_entries(cache), 2);
    run_free(&r);

    r = run("build", "--cache", cache, V2, V1);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_msg(strncmp(r.err, "built 0, cached 2, failed 0 in ", 31) == 0, "%.800s", r.err);
    ck_assert_int_eq(dm_test_count_entries(cache), 2);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(list_shows_the_variants_and_clear_empties_the_cache)
{
    char tmp[64], cache[128], expect[256];
    dm_test_temp_dir(tmp, "dmgen");
    cache_in(tmp, cache, sizeof cache);

    /* An axis list: two variants from one argument. */
    run_result r = run("build", "--cache", cache, "fwd.d64.f16,bf16.mask-none.bias-none.w0.sm80");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_msg(strncmp(r.err, "built 2,", 8) == 0, "%.800s", r.err);
    run_free(&r);

    r = run("list", "--cache", cache);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 2);
    ck_assert_msg(has(r.out, " " V1 "\n"), "%.800s", r.out);
    ck_assert_msg(has(r.out, " fwd.d64.bf16.mask-none.bias-none.w0.sm80\n"), "%.800s", r.out);
    ck_assert(!has(r.out, "CORRUPT"));
    ck_assert_msg(strncmp(r.err, "2 entries, ", 11) == 0, "%.800s", r.err);
    run_free(&r);

    r = run("clear", "--cache", cache);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    snprintf(expect, sizeof expect, "removed 2 entries (");
    ck_assert_msg(strncmp(r.out, expect, strlen(expect)) == 0, "%.800s", r.out);
    snprintf(expect, sizeof expect, " bytes) from %s\n", cache);
    ck_assert_msg(has(r.out, expect), "%.800s", r.out);
    run_free(&r);
    ck_assert_int_eq(dm_test_count_entries(cache), 0);

    r = run("list", "--cache", cache);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strncmp(r.err, "0 entries, ", 11) == 0, "%.800s", r.err);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(list_marks_a_corrupt_entry)
{
    char tmp[64], path[256];
    dm_test_temp_dir(tmp, "dmgen");
    snprintf(path, sizeof path, "%s/0123456789abcdef0123456789abcdef.cubin", tmp);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a cubin", f);
    fclose(f);

    run_result r = run("list", "--cache", tmp);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 1);
    ck_assert_msg(strncmp(r.out, "0123456789abcdef0123456789abcdef ", 33) == 0, "%.800s", r.out);
    ck_assert_msg(has(r.out, "CORRUPT\n"), "%.800s", r.out);
    ck_assert_msg(has(r.err, "1 corrupt"), "%.800s", r.err);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(window_mask_keys_emit_expand_and_build)
{
    run_result r = run("emit", "wmask.w2048.bf16.mask-k.sm90");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert(strncmp(r.out, "// wmask.w2048.bf16.mask-k.sm90\n", 32) == 0);
    ck_assert(has(r.out, "extern \"C\""));
    run_free(&r);

    r = run("build", "-n", "wmask.w64,2048.f16,f32.mask-none,k.sm80");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 8);
    ck_assert(has(r.out, "wmask.w2048.f32.mask-k.sm80\n"));
    run_free(&r);

    r = run("emit", "wmask.w0.bf16.mask-k.sm90"); /* top-k needs a window */
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(has(r.err, "field 2 (window) 'w0'"), "%.800s", r.err);
    run_free(&r);

    char tmp[64], cache[128];
    dm_test_temp_dir(tmp, "dmgen");
    cache_in(tmp, cache, sizeof cache);
    r = run("build", "--cache", cache, "wmask.w16.bf16.mask-q.smooth.sm90",
            "wmask.w0.f16.mask-none.relu.sm80");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(dm_test_count_entries(cache), 2);
    run_free(&r);
    r = run("list", "--cache", cache);
    ck_assert_msg(has(r.out, "wmask.w16.bf16.mask-q.smooth.sm90"), "%.800s", r.out);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(combine_keys_emit_expand_and_build)
{
    run_result r = run("emit", "combine.d128.bf16.sm90a");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert(strncmp(r.out, "// combine.d128.bf16.sm90a\n", 27) == 0);
    ck_assert(has(r.out, "extern \"C\""));
    ck_assert(has(r.out, "dm_combine_d128_bf16_sm90a("));
    run_free(&r);

    r = run("build", "-n", "combine.d64,128.f16,bf16.sm80");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 4);
    ck_assert(has(r.out, "combine.d128.bf16.sm80\n"));
    run_free(&r);

    r = run("emit", "combine.d130.bf16.sm90a");
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(has(r.err, "field 2 (head_dim) 'd130'"), "%.800s", r.err);
    run_free(&r);

    char tmp[64], cache[128];
    dm_test_temp_dir(tmp, "dmgen");
    cache_in(tmp, cache, sizeof cache);
    r = run("build", "--cache", cache, "combine.d128.bf16.sm90a");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(dm_test_count_entries(cache), 1);
    run_free(&r);
    r = run("list", "--cache", cache);
    ck_assert_msg(has(r.out, "combine.d128.bf16.sm90a"), "%.800s", r.out);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(axis_lists_expand_to_the_cartesian_product)
{
    run_result r = run("build", "-n", "fwd.d64,128.bf16,f16.mask-none,k.bias-none.w0.sm80,sm90");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 16);
    ck_assert(strncmp(r.out, "fwd.d64.bf16.mask-none.bias-none.w0.sm80\n", 41) == 0);
    ck_assert(has(r.out, "\nfwd.d128.f16.mask-k.bias-none.w0.sm90\n"));
    run_free(&r);

    /* Repeats, within an axis list or across arguments, are built once. */
    r = run("build", "--dry-run", "fwd.d64.f16,f16.mask-none.bias-none.w0.sm80", V1);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.out, V1 "\n");
    run_free(&r);
}
END_TEST

/* Per arch: 48 tiled forward kernels, 32 decode kernels (d128 x 2 dtypes x mask none/k x bias
 * none/k x causal x dense/varlen) and 2 combine kernels. */
START_TEST(preset_default_expands_once_per_arch)
{
    run_result r = run("build", "-n", "--preset", "default");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 2 * (48 + 32 + 2)); /* sm80 and sm90a */
    ck_assert(has(r.out, "fwd.d128.bf16.mask-k.bias-q.w0.causal.sm90a\n"));
    ck_assert(has(r.out, "fwd.d64.f16.mask-none.bias-none.w0.sm80\n"));
    /* what a decode server hits first: the decode batch and its combine */
    ck_assert(has(r.out, "fwd.d128.bf16.mask-k.bias-k.w0.varlen.decode.sm90a\n"));
    ck_assert(has(r.out, "fwd.d128.f16.mask-none.bias-k.w0.causal.decode.sm80\n"));
    ck_assert(has(r.out, "combine.d128.bf16.sm90a\n"));
    ck_assert(has(r.out, "combine.d128.f16.sm80\n"));
    ck_assert(!has(r.out, "mask-q.bias-none.w0.decode")); /* no decode kernel for per-query rows */
    run_free(&r);

    r = run("build", "-n", "--preset", "default", "--arch", "sm86");
    ck_assert_int_eq(r.code, 0);
    ck_assert_int_eq(count_lines(r.out), 48 + 32 + 2);
    ck_assert(!has(r.out, "sm80"));
    run_free(&r);

    r = run("build", "-n", "--preset", "default", "--arch", "sm70");
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(has(r.err, "'sm70'"), "%.800s", r.err);
    run_free(&r);
}
END_TEST

/* `dmgen build -n --preset name` lists `lines` variants, among them `first` and `second`, none
 * with `absent` in its text; preset `other` lists none with `only` (a text name's own). */
static void check_preset(const char *name, int lines, const char *first, const char *second,
                         const char *absent, const char *other, const char *only)
{
    run_result r = run("build", "-n", "--preset", name);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), lines);
    ck_assert_msg(has(r.out, first) && has(r.out, second), "%.800s", r.out);
    ck_assert_msg(!has(r.out, absent), "%.800s", r.out);
    run_free(&r);
    r = run("build", "-n", "--preset", other);
    ck_assert_msg(!has(r.out, only), "%.800s", r.out);
    run_free(&r);
}

/* The backward kernels a training run hits: 32 per arch, none in the default preset. */
START_TEST(preset_training_lists_the_backward_kernels)
{
    check_preset("training", 2 * 32, "bwd.d128.bf16.mask-k.bias-k.w0.causal.sm90a\n",
                 "bwd.d64.f16.mask-none.bias-none.w0.sm80\n", "fwd.", "default", "bwd.");
}
END_TEST

/* The deterministic mode's backward kernels (bwddet keys): 32 per arch, none in "training". */
START_TEST(preset_training_deterministic_lists_the_bwddet_kernels)
{
    check_preset("training-deterministic", 2 * 32,
                 "bwddet.d128.bf16.mask-k.bias-k.w0.causal.sm90a\n",
                 "bwddet.d64.f16.mask-none.bias-none.w0.sm80\n", "fwd.", "training", "bwddet.");
}
END_TEST

/* A varlen training run's kernels: the tiled varlen forward and the varlen backward, 64 per arch,
 * none of them in "training" (dense) or "default". */
START_TEST(preset_training_varlen_lists_the_varlen_forward_and_backward_kernels)
{
    check_preset("training-varlen", 2 * 64, "bwd.d128.bf16.mask-k.bias-k.w0.varlen.causal.sm90a\n",
                 "fwd.d64.f16.mask-none.bias-none.w0.varlen.sm80\n", ".decode.", "training",
                 ".varlen");
}
END_TEST

START_TEST(unknown_preset_exits_2_listing_the_known_ones)
{
    run_result r = run("build", "--preset", "everything");
    ck_assert_int_eq(r.code, 2);
    ck_assert_int_eq(count_lines(r.err), 1);
    ck_assert_msg(has(r.err, "'everything'") && has(r.err, "default"), "%.800s", r.err);
    run_free(&r);
}
END_TEST

START_TEST(build_of_a_malformed_axis_list_exits_2_before_building)
{
    char tmp[64], cache[128];
    dm_test_temp_dir(tmp, "dmgen");
    cache_in(tmp, cache, sizeof cache);
    run_result r =
        run("build", "--cache", cache, V1, "fwd.d64.f16,fp16.mask-none.bias-none.w0.sm80");
    ck_assert_int_eq(r.code, 2);
    ck_assert_int_eq(count_lines(r.err), 1);
    ck_assert_msg(has(r.err, "dmgen: build: cannot parse 'fwd.d64.fp16.mask-none.bias-none.w0."
                             "sm80': field 3 (dtype)"),
                  "%.800s", r.err);
    run_free(&r);
    struct stat sb;
    ck_assert_int_ne(stat(cache, &sb), 0); /* nothing was built, not even the directory */
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(build_usage_errors_exit_2)
{
    run_result r = run("build");
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(has(r.err, "nothing to build"), "%.800s", r.err);
    run_free(&r);

    r = run("build", "-j", "0", V1);
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(has(r.err, "-j"), "%.800s", r.err);
    run_free(&r);

    r = run("build", "--cache");
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(has(r.err, "--cache"), "%.800s", r.err);
    run_free(&r);

    r = run("build", "--arch", "sm80", V1); /* --arch is for presets */
    ck_assert_int_eq(r.code, 2);
    run_free(&r);
}
END_TEST

START_TEST(build_into_a_directory_under_a_regular_file_fails_with_exit_1)
{
    char tmp[64], file[128], cache[192];
    dm_test_temp_dir(tmp, "dmgen");
    snprintf(file, sizeof file, "%s/file", tmp);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(cache, sizeof cache, "%s/sub", file);

    run_result r = run("build", "--cache", cache, V1);
    ck_assert_int_eq(r.code, 1);
    ck_assert_int_eq(count_lines(r.err), 1);
    ck_assert_msg(has(r.err, "dmgen: build: ") && has(r.err, cache), "%.800s", r.err);
    ck_assert_msg(has(r.err, "unusable"), "%.800s", r.err);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(build_of_an_unsupported_variant_fails_with_its_reason)
{
    char tmp[64], cache[128];
    dm_test_temp_dir(tmp, "dmgen");
    cache_in(tmp, cache, sizeof cache);
    /* Parses, but a window is applied by the window-mask kernels before attention, so no
     * attention variant has one: fails in codegen, before NVRTC. */
    run_result r = run("build", "--cache", cache, "fwd.d64.f16.mask-none.bias-none.w16.sm80");
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(has(r.err, "dmgen: build: variant 'fwd.d64.f16.mask-none.bias-none.w16.sm80': "
                             "top-k windows (w16) are not built yet\n"),
                  "%s", r.err);
    ck_assert_msg(has(r.err, "built 0, cached 0, failed 1 in "), "%.800s", r.err);
    run_free(&r);
    ck_assert_int_eq(dm_test_count_entries(cache), 0);
    dm_test_remove_dir(tmp);
}
END_TEST

START_TEST(info_without_a_driver_exits_0_and_says_so)
{
    char tmp[64];
    dm_test_temp_dir(tmp, "dmgen");
    run_result r = run_env("DMATTN_LIBCUDA=/nonexistent/libcuda.so", "info", "--cache", tmp,
                           (const char *)NULL);
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_msg(strncmp(r.out, "dmattn 0.1.0\nNVRTC ", 19) == 0, "%.800s", r.out);
    ck_assert_msg(has(r.out, "\nLua 5.4"), "%.800s", r.out);
    ck_assert_msg(has(r.out, "attn_fwd.lua"), "%.800s", r.out);
    ck_assert_msg(has(r.out, tmp) && has(r.out, "0 entries"), "%.800s", r.out);
    ck_assert_msg(has(r.out, "no CUDA driver (") && has(r.out, "/nonexistent/libcuda.so"), "%s",
                  r.out);
    run_free(&r);
    dm_test_remove_dir(tmp);
}
END_TEST

#define TESTS(X) \
    X(help_lists_every_command_on_stdout_and_exits_0) \
    X(each_command_has_help_on_stdout) \
    X(version_names_dmgen_nvrtc_and_lua) \
    X(unknown_command_exits_2_with_a_one_line_reason) \
    X(unknown_option_exits_2_naming_it) \
    X(emit_prints_source_opening_with_the_variant_line) \
    X(emit_of_a_malformed_variant_exits_2_naming_the_field) \
    X(emit_of_an_unsupported_variant_prints_the_library_message_as_is) \
    X(build_stores_two_variants_then_finds_them_cached) \
    X(list_shows_the_variants_and_clear_empties_the_cache) \
    X(list_marks_a_corrupt_entry) \
    X(window_mask_keys_emit_expand_and_build) \
    X(combine_keys_emit_expand_and_build) \
    X(axis_lists_expand_to_the_cartesian_product) \
    X(preset_default_expands_once_per_arch) \
    X(preset_training_lists_the_backward_kernels) \
    X(preset_training_deterministic_lists_the_bwddet_kernels) \
    X(preset_training_varlen_lists_the_varlen_forward_and_backward_kernels) \
    X(unknown_preset_exits_2_listing_the_known_ones) \
    X(build_of_a_malformed_axis_list_exits_2_before_building) \
    X(build_usage_errors_exit_2) \
    X(build_into_a_directory_under_a_regular_file_fails_with_exit_1) \
    X(build_of_an_unsupported_variant_fails_with_its_reason) \
    X(info_without_a_driver_exits_0_and_says_so)

DM_TEST_MAIN("dmgen", TESTS)
