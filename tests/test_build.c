/* test_build.c: the cache contract of SPEC §6 as the library applies it (kernels.c over cache.c):
 * hits skip NVRTC, corrupt entries are rebuilt, unusable directories degrade to memory only,
 * a read-only shipped directory serves its entries, two processes compiling at once both win,
 * and a changed template cannot be served a stale cubin. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "harness.h"
#include "kernels.h"
#include "test_fs.h"

static const char *kVariant = "fwd.d64.f16.mask-k.bias-none.w0.sm80";

static dm_ctx *offline_in(const char *dir)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_ctx_set_verbosity(ctx, 0);
    ck_assert_int_eq(dm_ctx_set_cache_dir(ctx, dir), DM_OK);
    return ctx;
}

static dm_build_source build_once(dm_ctx *ctx, dm_build_info *info)
{
    dm_variant v;
    dm_kernel_src src = {0};
    void *cubin = NULL;
    size_t bytes = 0;
    ck_assert_int_eq(dm_variant_parse(kVariant, &v, NULL, 0), DM_OK);
    dm_status st = dm_build_cubin(ctx, "test", &v, &src, &cubin, &bytes, info);
    ck_assert_msg(st == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(memcmp(cubin, "\177ELF", 4), 0);
    free(cubin);
    dm_kernel_src_free(&src);
    return info->source;
}

START_TEST(second_build_is_served_from_disk_without_nvrtc)
{
    char dir[64];
    dm_test_temp_dir(dir, "build");
    dm_ctx *ctx = offline_in(dir);
    dm_build_info info;
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_BY_NVRTC);
    ck_assert(info.cache_written);
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_FROM_DISK);
    ck_assert_int_eq(dm_test_count_entries(dir), 1);
    dm_ctx_destroy(ctx);

    ctx = offline_in(dir); /* a new context (as a new process would) */
    int cached = 0;
    ck_assert_int_eq(dm_prebuild(ctx, kVariant, &cached), DM_OK);
    ck_assert_int_eq(cached, 1);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(missing_cache_directory_is_created)
{
    char dir[64], sub[128];
    dm_test_temp_dir(dir, "build");
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    dm_ctx *ctx = offline_in(sub);
    int cached = 1;
    ck_assert_int_eq(dm_prebuild(ctx, kVariant, &cached), DM_OK);
    ck_assert_int_eq(cached, 0);
    ck_assert_int_eq(dm_test_count_entries(sub), 1);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(truncated_entry_is_rebuilt_and_valid_afterwards)
{
    char dir[64];
    dm_test_temp_dir(dir, "build");
    dm_ctx *ctx = offline_in(dir);
    dm_build_info info;
    build_once(ctx, &info);
    ck_assert_int_eq(truncate(info.entry_path, 100), 0);
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_BY_NVRTC);
    ck_assert(info.cache_written);
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_FROM_DISK);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(corrupt_payload_is_rebuilt)
{
    char dir[64];
    dm_test_temp_dir(dir, "build");
    dm_ctx *ctx = offline_in(dir);
    dm_build_info info;
    build_once(ctx, &info);
    int fd = open(info.entry_path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat stt;
    fstat(fd, &stt);
    unsigned char c;
    ck_assert_int_eq(pread(fd, &c, 1, stt.st_size - 10), 1);
    c ^= 0x5a;
    ck_assert_int_eq(pwrite(fd, &c, 1, stt.st_size - 10), 1);
    close(fd);
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_BY_NVRTC);
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_FROM_DISK);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(unusable_directory_degrades_to_memory_only)
{
    char dir[64], file[128], sub[160];
    dm_test_temp_dir(dir, "build");
    snprintf(file, sizeof file, "%s/plain_file", dir);
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);
    snprintf(sub, sizeof sub, "%s/cache", file); /* a directory under a regular file */
    dm_ctx *ctx = offline_in(sub);
    dm_build_info info;
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_BY_NVRTC);
    ck_assert(!info.cache_written);
    ck_assert_str_eq(dm_ctx_cache_dir(ctx), "");
    /* ahead-of-time builds exist to fill the cache: there it is an error */
    int cached;
    ck_assert_int_eq(dm_prebuild(ctx, kVariant, &cached), DM_ERR_IO);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "not stored"));
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(empty_cache_dir_means_memory_only)
{
    dm_ctx *ctx = offline_in("");
    dm_build_info info;
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_BY_NVRTC);
    ck_assert(!info.cache_written);
    ck_assert_str_eq(info.entry_path, "");
    dm_ctx_destroy(ctx);
}
END_TEST

/* Root ignores permission bits, so the read-only case runs in a child that drops to 'nobody'. */
START_TEST(read_only_shipped_directory_serves_entries_and_compiles_the_rest_in_memory)
{
    char dir[64];
    dm_test_temp_dir(dir, "build");
    dm_ctx *ctx = offline_in(dir);
    dm_build_info info;
    build_once(ctx, &info);
    dm_ctx_destroy(ctx);
    ck_assert_int_eq(chmod(dir, 0555), 0);
    chmod(info.entry_path, 0444);

    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        if (access(dir, W_OK) == 0)
            _exit(11); /* still writable: the test would prove nothing */
        dm_ctx *c = NULL;
        dm_ctx_create(&c, DM_NO_DEVICE);
        dm_ctx_set_verbosity(c, 0);
        dm_ctx_set_cache_dir(c, dir);
        dm_variant v;
        dm_kernel_src src = {0};
        void *cubin = NULL;
        size_t bytes;
        dm_build_info in;
        dm_variant_parse(kVariant, &v, NULL, 0);
        if (dm_build_cubin(c, "t", &v, &src, &cubin, &bytes, &in) != DM_OK ||
            in.source != DM_BUILT_FROM_DISK)
            _exit(12);
        free(cubin);
        dm_kernel_src_free(&src);
        dm_variant_parse("fwd.d32.f16.mask-none.bias-none.w0.sm80", &v, NULL, 0);
        if (dm_build_cubin(c, "t", &v, &src, &cubin, &bytes, &in) != DM_OK ||
            in.source != DM_BUILT_BY_NVRTC || in.cache_written)
            _exit(13);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
                  WEXITSTATUS(status));
    ck_assert_int_eq(dm_test_count_entries(dir), 1);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(two_processes_compiling_one_variant_at_once_both_succeed)
{
    char dir[64];
    dm_test_temp_dir(dir, "build");
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            dm_ctx *c = NULL;
            dm_ctx_create(&c, DM_NO_DEVICE);
            dm_ctx_set_verbosity(c, 0);
            dm_ctx_set_cache_dir(c, dir);
            int cached;
            _exit(dm_prebuild(c, kVariant, &cached) == DM_OK ? 0 : 1);
        }
    }
    for (int i = 0; i < 2; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    ck_assert_int_eq(dm_test_count_entries(dir), 1);
    dm_ctx *ctx = offline_in(dir);
    dm_build_info info;
    ck_assert_int_eq(build_once(ctx, &info), DM_BUILT_FROM_DISK);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(changed_template_gets_a_new_entry_never_the_stale_one)
{
    char dir[64], tpl[64], cmd[512];
    dm_test_temp_dir(dir, "build");
    dm_test_temp_dir(tpl, "build");
    dm_ctx *ctx = offline_in(dir);
    dm_build_info info;
    build_once(ctx, &info);

    /* an edit that changes the emitted text: the header comment line */
    snprintf(cmd, sizeof cmd,
             "cp %s/templates/*.lua %s/ && sed -i 's|// dmattn %%s, %%s: %%s|// dmattn %%s, %%s: "
             "%%s (edited)|' %s/cuda_common.lua && grep -q edited %s/cuda_common.lua",
             getenv("DMATTN_SOURCE_DIR"), tpl, tpl, tpl);
    ck_assert_int_eq(system(cmd), 0);
    setenv("DMATTN_TEMPLATE_DIR", tpl, 1);
    dm_build_source again = build_once(ctx, &info);
    unsetenv("DMATTN_TEMPLATE_DIR");
    ck_assert_int_eq(again, DM_BUILT_BY_NVRTC);
    ck_assert_int_eq(dm_test_count_entries(dir), 2);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
    dm_test_remove_dir(tpl);
}
END_TEST

START_TEST(prebuild_rejects_a_malformed_variant_naming_the_field)
{
    dm_ctx *ctx = offline_in("");
    int cached = 7;
    ck_assert_int_eq(dm_prebuild(ctx, "fwd.d64.fp16.mask-none.bias-none.w0.sm80", &cached),
                     DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "dtype"));
    ck_assert_int_eq(dm_prebuild(ctx, NULL, &cached), DM_ERR_INVALID_ARG);
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(launch_on_an_offline_context_fails_with_no_device)
{
    dm_ctx *ctx = offline_in("");
    ck_assert_int_eq(dm_ctx_enter(ctx, "dm_fwd"), DM_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "no CUDA device"));
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(context_on_a_machine_without_driver_reports_no_driver)
{
    setenv("DMATTN_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, 0), DM_ERR_NO_DRIVER);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "cannot open the CUDA driver"));
    /* the context still does offline work */
    dm_ctx_set_cache_dir(ctx, "");
    dm_ctx_set_verbosity(ctx, 0);
    ck_assert_int_eq(dm_ctx_set_arch(ctx, "sm90"), DM_OK);
    int cached;
    ck_assert_int_eq(dm_prebuild(ctx, "fwd.d64.f16.mask-none.bias-none.w0.sm90", &cached),
                     DM_ERR_IO); /* compiled fine; nothing to store it in */
    dm_ctx_destroy(ctx);
}
END_TEST

/* A kernel whose fn tells which insert made it. */
static dm_kernel tagged_kernel(uintptr_t tag)
{
    return (dm_kernel){.fn = (CUfunction)tag, .threads = 128, .block_m = 64, .block_n = 64};
}

START_TEST(variants_differing_in_one_field_each_get_their_own_kernel)
{
    dm_ctx *ctx = offline_in("");
    dm_variant base, v[14];
    ck_assert_int_eq(dm_variant_parse(kVariant, &base, NULL, 0), DM_OK);
    for (int i = 0; i < 14; i++)
        v[i] = base;
    v[1].family = DM_FAMILY_WMASK;
    v[2].dir = DM_DIR_BWD;
    v[3].head_dim = 128;
    v[4].dtype = DM_BF16;
    v[5].mask = DM_LAYOUT_Q;
    v[6].bias = DM_LAYOUT_K;
    v[7].window = 2048;
    v[8].varlen = true;
    v[9].causal = true;
    v[10].softcap = true;
    v[11].relu = true;
    v[12].smooth = true;
    v[13].arch = DM_SM90A;
    for (int i = 0; i < 14; i++) {
        ck_assert_ptr_null(dm_module_find(ctx, &v[i]));
        dm_kernel k = tagged_kernel(0x100 + (uintptr_t)i);
        const dm_kernel *out = NULL;
        ck_assert_int_eq(dm_module_insert(ctx, "test", &v[i], (CUmodule)(uintptr_t)(i + 1), &k,
                                          &out),
                         DM_OK);
        ck_assert_ptr_eq(out->fn, k.fn);
    }
    for (int i = 0; i < 14; i++) {
        const dm_kernel *k = dm_module_find(ctx, &v[i]);
        ck_assert_ptr_nonnull(k);
        ck_assert_msg(k->fn == (CUfunction)(0x100 + (uintptr_t)i), "variant %d got %p", i,
                      (void *)k->fn);
    }
    dm_variant other = base;
    other.head_dim = 256;
    ck_assert_ptr_null(dm_module_find(ctx, &other));
    dm_ctx_destroy(ctx);
}
END_TEST

/* Padding bytes are not part of a variant: one built field by field on a dirty stack finds the
 * entry a zeroed one made. */
START_TEST(lookup_ignores_the_bytes_between_fields)
{
    dm_ctx *ctx = offline_in("");
    dm_variant clean, dirty;
    memset(&clean, 0, sizeof clean);
    ck_assert_int_eq(dm_variant_parse(kVariant, &clean, NULL, 0), DM_OK);
    memset(&dirty, 0xa5, sizeof dirty);
    dirty.family = clean.family;
    dirty.dir = clean.dir;
    dirty.head_dim = clean.head_dim;
    dirty.dtype = clean.dtype;
    dirty.mask = clean.mask;
    dirty.bias = clean.bias;
    dirty.window = clean.window;
    dirty.varlen = clean.varlen;
    dirty.causal = clean.causal;
    dirty.softcap = clean.softcap;
    dirty.decode = clean.decode;
    dirty.relu = clean.relu;
    dirty.smooth = clean.smooth;
    dirty.arch = clean.arch;
    dm_kernel k = tagged_kernel(0x42);
    const dm_kernel *out;
    ck_assert_int_eq(dm_module_insert(ctx, "test", &clean, NULL, &k, &out), DM_OK);
    ck_assert_ptr_eq(dm_module_find(ctx, &dirty), out);
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(module_table_grows_and_kernel_pointers_survive_it)
{
    enum { kCount = 1000 };
    dm_ctx *ctx = offline_in("");
    const dm_kernel *first[kCount];
    dm_variant v;
    ck_assert_int_eq(dm_variant_parse(kVariant, &v, NULL, 0), DM_OK);
    for (int i = 0; i < kCount; i++) {
        v.head_dim = 8 * (1 + i % 32);
        v.window = i / 32;
        dm_kernel k = tagged_kernel(0x1000 + (uintptr_t)i);
        ck_assert_int_eq(dm_module_insert(ctx, "test", &v, NULL, &k, &first[i]), DM_OK);
    }
    ck_assert_uint_eq(ctx->modules.count, kCount);
    ck_assert_uint_ge(ctx->modules.n_slots, 2 * kCount); /* grown from 16, at most half full */
    for (int i = 0; i < kCount; i++) {
        v.head_dim = 8 * (1 + i % 32);
        v.window = i / 32;
        const dm_kernel *k = dm_module_find(ctx, &v);
        ck_assert_ptr_eq(k, first[i]); /* the pointer handed out at insert still holds */
        ck_assert_ptr_eq(k->fn, (CUfunction)(0x1000 + (uintptr_t)i));
    }
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(errmsg_is_never_null)
{
    ck_assert_ptr_nonnull(dm_errmsg(NULL));
    ck_assert_str_eq(dm_status_name(DM_ERR_NO_DEVICE), "DM_ERR_NO_DEVICE");
    ck_assert_int_eq(dm_version(), DM_VERSION_NUM);
    dm_ctx_destroy(NULL);
}
END_TEST

#define TESTS(X) \
    X(second_build_is_served_from_disk_without_nvrtc) \
    X(missing_cache_directory_is_created) \
    X(truncated_entry_is_rebuilt_and_valid_afterwards) \
    X(corrupt_payload_is_rebuilt) \
    X(unusable_directory_degrades_to_memory_only) \
    X(empty_cache_dir_means_memory_only) \
    X(read_only_shipped_directory_serves_entries_and_compiles_the_rest_in_memory) \
    X(two_processes_compiling_one_variant_at_once_both_succeed) \
    X(changed_template_gets_a_new_entry_never_the_stale_one) \
    X(prebuild_rejects_a_malformed_variant_naming_the_field) \
    X(launch_on_an_offline_context_fails_with_no_device) \
    X(context_on_a_machine_without_driver_reports_no_driver) \
    X(variants_differing_in_one_field_each_get_their_own_kernel) \
    X(lookup_ignores_the_bytes_between_fields) \
    X(module_table_grows_and_kernel_pointers_survive_it) \
    X(errmsg_is_never_null)
DM_TEST_MAIN("build", TESTS)
