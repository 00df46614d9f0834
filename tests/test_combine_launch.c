/* test_combine_launch.c: dm_fwd_combine_launch (runtime/api/fwd_combine.c) against the stub driver
 * (stub_libcuda.c, loaded through DMATTN_LIBCUDA): the grid it launches, the kernel found again on
 * a warm call, no launch for zero rows, and each bad parameter refused by name before anything
 * is built or launched. No GPU: the stub launches nothing; the kernel's results are
 * test_gpu_combine's. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_combine.h"
#include "harness.h"
#include "kernels.h"
#include "stub_libcuda.h"
#include "stub_util.h"
#include "test_fs.h"

static void *stub;
static dmstub_stats_t *stats;
static char cache_dir[64];

/* Points the library at the stub (before its first dlopen) with an sm80 device. */
static dm_ctx *stub_ctx(void)
{
    dm_test_use_stub(DM_STUB_LIBCUDA, "80", "combine", &stub, &stats, cache_dir);
    return dm_test_stub_ctx(cache_dir);
}

static void done(dm_ctx *ctx)
{
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}

/* 37 tokens (B = 1) x 3 heads, 7 splits: pointers the stub never touches, aligned as the kernel
 * needs. */
static dm_combine_params params(void)
{
    return (dm_combine_params){.o_part = 0x100000, .lse_part = 0x200000, .o = 0x300000,
                               .lse = 0x400000, .o_stride = {37 * 3 * 64, 3 * 64, 64},
                               .lse_stride = {3 * 37, 37, 1}, .part_stride = 37 * 3,
                               .n_splits = 7, .rows = 37, .H = 3, .Lq = 37};
}

static void launch_ok(dm_ctx *ctx, dm_dtype t, int d, const dm_combine_params *p)
{
    dm_status st = dm_fwd_combine_launch(ctx, "dm_fwd_varlen", t, d, p, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
}

/* The grid covers every (token, head) pair: ceil(rows * H / block_m) blocks in x. */
START_TEST(the_grid_covers_every_token_and_head_in_blocks_of_block_m_pairs)
{
    dm_ctx *ctx = stub_ctx();
    dm_combine_params p = params();
    launch_ok(ctx, DM_F16, 64, &p);
    ck_assert_int_eq(stats->launches, 1);
    dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = 64, .dtype = DM_F16,
                    .arch = DM_SM80};
    const dm_kernel *k = dm_module_find(ctx, &v);
    ck_assert_ptr_nonnull(k);
    ck_assert_uint_eq(stats->grid[0], (37 * 3 + k->block_m - 1) / k->block_m);
    ck_assert_uint_eq(stats->grid[1], 1);
    ck_assert_uint_eq(stats->grid[2], 1);
    ck_assert_uint_eq(stats->block_threads, (unsigned)k->threads);
    ck_assert_uint_eq(stats->smem_bytes, 0);
    done(ctx);
}
END_TEST

/* Few pairs over many splits (one long row: 32 pairs, 85 splits) share each pair among
 * split_lanes groups of threads, each taking 8 or more splits; a handful of splits keeps one
 * group a pair. The grid shrinks to match: block_m / split_lanes pairs a block. */
START_TEST(many_splits_over_few_pairs_share_each_pair_among_groups_of_threads)
{
    dm_ctx *ctx = stub_ctx();
    stats->capture_bytes = sizeof(dm_combine_params);
    dm_combine_params p = params(); /* 7 splits */
    p.split_lanes = 5;               /* the launcher's to set: ignored */
    launch_ok(ctx, DM_BF16, 128, &p);
    dm_combine_params got;
    memcpy(&got, stats->params, sizeof got);
    ck_assert_int_eq(got.split_lanes, 1);
    p = (dm_combine_params){.o_part = 0x100000, .lse_part = 0x200000, .o = 0x300000,
                            .o_stride = {32 * 128, 32 * 128, 128}, .part_stride = 32,
                            .n_splits = 85, .rows = 1, .H = 32, .Lq = 1};
    launch_ok(ctx, DM_BF16, 128, &p);
    memcpy(&got, stats->params, sizeof got);
    dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = 128, .dtype = DM_BF16,
                    .arch = DM_SM80};
    const dm_kernel *k = dm_module_find(ctx, &v);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_ge(k->block_m, 8);
    ck_assert_int_eq(got.split_lanes, 8); /* 85 splits: 8 groups of 10-11 */
    ck_assert_uint_eq(stats->grid[0], (32 + k->block_m / 8 - 1) / (k->block_m / 8));
    ck_assert_int_eq(got.n_splits, 85);
    done(ctx);
}
END_TEST

START_TEST(a_warm_call_finds_the_loaded_kernel_and_each_dtype_and_head_dim_has_its_own)
{
    dm_ctx *ctx = stub_ctx();
    dm_combine_params p = params();
    launch_ok(ctx, DM_BF16, 128, &p);
    void *fn = stats->launch_fn;
    for (int i = 0; i < 10; i++)
        launch_ok(ctx, DM_BF16, 128, &p);
    ck_assert_int_eq(stats->module_loads, 1);
    ck_assert_ptr_eq(stats->launch_fn, fn);
    launch_ok(ctx, DM_F16, 128, &p);
    launch_ok(ctx, DM_BF16, 64, &p);
    ck_assert_int_eq(stats->module_loads, 3);
    ck_assert_int_eq(stats->launches, 13);
    done(ctx);
}
END_TEST

/* total_q = 0 is a no-op: no kernel built, nothing launched, pointers not looked at. */
START_TEST(zero_rows_launch_nothing)
{
    dm_ctx *ctx = stub_ctx();
    dm_combine_params p = {.n_splits = 4, .rows = 0, .H = 8, .Lq = 1};
    launch_ok(ctx, DM_F16, 128, &p);
    ck_assert_int_eq(stats->launches, 0);
    ck_assert_int_eq(stats->module_loads, 0);
    done(ctx);
}
END_TEST

/* params() with one field broken (case i of N_BROKEN); *want is what the message must quote. */
enum { N_BROKEN = 9 };
static dm_combine_params broken(int i, const char **want)
{
    dm_combine_params p = params();
    switch (i) {
    case 0: p.n_splits = 0; *want = "n_splits = 0"; break;
    case 1: p.H = 0; *want = "H = 0"; break;
    case 2: p.rows = -1; *want = "rows = -1"; break;
    case 3: p.Lq = 0; *want = "Lq = 0"; break;
    case 4: p.part_stride = 37 * 3 - 1; *want = "part_stride = 110"; break;
    case 5: p.o_part += 8; *want = "o_part = 0x100008"; break; /* float4 loads: 16 bytes */
    case 6: p.lse_part = 0; *want = "lse_part = 0x0"; break;
    case 7: p.o = 0; *want = "o = 0x0"; break;
    default: p.lse += 2; *want = "lse = 0x400002"; break;
    }
    return p;
}

/* Each parameter the kernel relies on, broken in turn: DM_ERR_INVALID_ARG naming it, prefixed
 * with the caller's name, and nothing built or launched. */
START_TEST(each_bad_parameter_is_refused_by_name_before_any_launch)
{
    dm_ctx *ctx = stub_ctx();
    for (int i = 0; i < N_BROKEN; i++) {
        const char *want = "";
        dm_combine_params p = broken(i, &want);
        dm_status st = dm_fwd_combine_launch(ctx, "dm_fwd_varlen", DM_F16, 64, &p, NULL);
        ck_assert_msg(st == DM_ERR_INVALID_ARG, "%s: %s", want, dm_status_name(st));
        ck_assert_msg(strstr(dm_errmsg(ctx), want), "want '%s' in: %s", want, dm_errmsg(ctx));
        ck_assert_msg(strncmp(dm_errmsg(ctx), "dm_fwd_varlen: combine: ", 24) == 0, "%s",
                      dm_errmsg(ctx));
    }
    ck_assert_int_eq(dm_fwd_combine_launch(ctx, "dm_fwd_varlen", DM_F16, 64, NULL, NULL),
                     DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "params is NULL"));
    ck_assert_int_eq(stats->launches, 0);
    ck_assert_int_eq(stats->module_loads, 0);
    done(ctx);
}
END_TEST

START_TEST(a_head_dim_or_dtype_without_a_combine_variant_is_refused_naming_both)
{
    dm_ctx *ctx = stub_ctx();
    dm_combine_params p = params();
    ck_assert_int_eq(dm_fwd_combine_launch(ctx, "dm_fwd", DM_F16, 100, &p, NULL),
                     DM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dm_errmsg(ctx), "dm_fwd: combine: head_dim 100, dtype f16"), "%s",
                  dm_errmsg(ctx));
    ck_assert_int_eq(dm_fwd_combine_launch(ctx, "dm_fwd", DM_F32, 64, &p, NULL),
                     DM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dm_errmsg(ctx), "head_dim 64, dtype f32"), "%s", dm_errmsg(ctx));
    ck_assert_int_eq(stats->launches, 0);
    done(ctx);
}
END_TEST

START_TEST(an_offline_context_has_no_device_to_launch_on)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_combine_params p = params();
    ck_assert_int_eq(dm_fwd_combine_launch(ctx, "dm_fwd", DM_F16, 64, &p, NULL),
                     DM_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "dm_fwd: "));
    dm_ctx_destroy(ctx);
}
END_TEST

#define TESTS(X) \
    X(the_grid_covers_every_token_and_head_in_blocks_of_block_m_pairs) \
    X(many_splits_over_few_pairs_share_each_pair_among_groups_of_threads) \
    X(a_warm_call_finds_the_loaded_kernel_and_each_dtype_and_head_dim_has_its_own) \
    X(zero_rows_launch_nothing) \
    X(each_bad_parameter_is_refused_by_name_before_any_launch) \
    X(a_head_dim_or_dtype_without_a_combine_variant_is_refused_naming_both) \
    X(an_offline_context_has_no_device_to_launch_on)
DM_TEST_MAIN("combine_launch", TESTS)
