/* test_scratch_allocator.c: dm_ctx_set_allocator against the stub driver: the scratch a call
 * needs (the decode path's split partials, the backward's dO.O rows and dq sums, a window mask)
 * comes from the context's allocator and goes back to it once, in the call's stream, with the
 * same pointer and size; its failure is DM_ERR_NOMEM before any launch; NULL/NULL is the driver
 * again; one of the two NULL is refused by name. No GPU: the stub runs nothing. */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "kernel_params.h"
#include "kernels.h"
#include "stub_args.h"
#include "stub_libcuda.h"
#include "stub_util.h"
#include "test_fs.h"

static void *stub;
static dmstub_stats_t *stats;
static char cache_dir[64];

/* What the test allocator saw: one block of fake device addresses, never touched. */
static struct {
    int allocs, frees, fail;
    int fail_from; /* > 0: allocations from this one on (counted from 1) fail */
    size_t alloc_bytes, free_bytes;
    void *given, *freed;
    CUstream alloc_stream, free_stream;
    void *user;
} seen;

static int test_alloc(void **ptr, size_t bytes, CUstream stream, void *user)
{
    seen.allocs++;
    seen.alloc_bytes = bytes;
    seen.alloc_stream = stream;
    seen.user = user;
    if (seen.fail)
        return seen.fail;
    if (seen.fail_from > 0 && seen.allocs >= seen.fail_from)
        return 2;
    *ptr = seen.given = (void *)(uintptr_t)(0x70000000u + 0x100000u * (unsigned)seen.allocs);
    return 0;
}

static void test_free(void *ptr, size_t bytes, CUstream stream, void *user)
{
    seen.frees++;
    seen.freed = ptr;
    seen.free_bytes = bytes;
    seen.free_stream = stream;
}

/* A context on a stub device of compute capability cc ("90": sm_90a, whose backward sums dq in
 * the scratch too). */
static dm_ctx *stub_ctx_cc(const char *cc)
{
    memset(&seen, 0, sizeof seen);
    dm_test_use_stub(DM_STUB_LIBCUDA, cc, "scratch", &stub, &stats, cache_dir);
    return dm_test_stub_ctx(cache_dir);
}

static dm_ctx *stub_ctx(void)
{
    return stub_ctx_cc("80");
}

/* A decode call forced to 4 key splits: 2 sequences x 4 queries over 2048 keys, d64 f16. */
static dm_fwd_args split_decode(void)
{
    return (dm_fwd_args){.q = dm_test_t4(0x1000000, DM_F16, 2, 4, 4, 64),
                         .k = dm_test_t4(0x2000000, DM_F16, 2, 2048, 2, 64),
                         .v = dm_test_t4(0x3000000, DM_F16, 2, 2048, 2, 64),
                         .o = dm_test_t4(0x4000000, DM_F16, 2, 4, 4, 64),
                         .path = DM_PATH_DECODE,
                         .num_splits = 4};
}

static const CUstream kStream = (CUstream)(uintptr_t)0x5150;

START_TEST(one_of_the_two_functions_null_is_refused_by_name)
{
    dm_ctx *ctx = stub_ctx();
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, test_alloc, NULL, NULL), DM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dm_errmsg(ctx), "dm_ctx_set_allocator: free is NULL") != NULL, "%s",
                  dm_errmsg(ctx));
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, NULL, test_free, NULL), DM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(dm_errmsg(ctx), "alloc is NULL") != NULL, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(dm_ctx_set_allocator(NULL, NULL, NULL, NULL), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, NULL, NULL, NULL), DM_OK);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

START_TEST(the_split_partials_come_from_the_allocator_and_go_back_once)
{
    dm_ctx *ctx = stub_ctx();
    int user;
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, test_alloc, test_free, &user), DM_OK);
    dm_fwd_args a = split_decode();
    dm_status st = dm_fwd(ctx, &a, kStream);
    ck_assert_msg(st == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(stats->launches, 2); /* the decode kernel, then the combine */
    ck_assert_int_eq(seen.allocs, 1);
    ck_assert_int_eq(seen.frees, 1);
    ck_assert_ptr_eq(seen.freed, seen.given);
    ck_assert_uint_eq(seen.free_bytes, seen.alloc_bytes);
    /* fp32 partial o and lse: 4 splits x (2 x 4 tokens) x 4 heads x (64 + 1) floats */
    ck_assert_uint_eq(seen.alloc_bytes, (size_t)4 * 8 * 4 * 65 * 4);
    ck_assert_ptr_eq(seen.alloc_stream, kStream);
    ck_assert_ptr_eq(seen.free_stream, kStream);
    ck_assert_ptr_eq(seen.user, &user);

    /* back to the driver: the allocator is not asked again */
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, NULL, NULL, NULL), DM_OK);
    ck_assert_int_eq(dm_fwd(ctx, &a, kStream), DM_OK);
    ck_assert_int_eq(seen.allocs, 1);
    ck_assert_int_eq(stats->launches, 4);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

START_TEST(a_failing_allocator_is_nomem_before_any_launch)
{
    dm_ctx *ctx = stub_ctx();
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, test_alloc, test_free, NULL), DM_OK);
    seen.fail = 7;
    dm_fwd_args a = split_decode();
    ck_assert_int_eq(dm_fwd(ctx, &a, kStream), DM_ERR_NOMEM);
    ck_assert_msg(strstr(dm_errmsg(ctx), "dm_fwd: the context's allocator") != NULL &&
                      strstr(dm_errmsg(ctx), "returned 7") != NULL,
                  "%s", dm_errmsg(ctx));
    ck_assert_int_eq(stats->launches, 0);
    ck_assert_int_eq(seen.frees, 0);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* dm_bwd's arguments of the scratch tests: MHA, 2 x 100 queries and keys, 4 heads, d64 f16, no
 * bias (addresses the stub never touches). */
enum { BWD_B = 2, BWD_H = 4, BWD_L = 100, BWD_D = 64 };
static dm_bwd_args bwd_args(void)
{
    return dm_test_bwd_args(BWD_B, BWD_H, BWD_H, BWD_L, BWD_D);
}

/* dm_bwd's scratch, one allocation given back once: the rows' dO.O (B H Lq floats, rounded up
 * to 256 bytes) and, on sm_90a, dq's fp32 sums (B H Lq D floats) after them (phases 0, 1 and 3);
 * sm_80 only the rows (phases 0, 1). On sm_90a (a kernel with tensor maps) also lse and row_dot
 * by 64-query tile: 2 x 64 floats a tile of each (b, h), and in the deterministic mode the
 * sums' turns after those (256-aligned): a 64-query tile of each (b, h) has 2 bits a key block
 * in 64-bit words, one word at L 100. */
static void check_bwd_scratch(const char *cc, int deterministic, size_t dq_sum_bytes, int launches,
                              int tile_rows)
{
    dm_ctx *ctx = stub_ctx_cc(cc);
    ck_assert_int_eq(dm_ctx_set_allocator(ctx, test_alloc, test_free, NULL), DM_OK);
    enum { B = BWD_B, H = BWD_H, L = BWD_L, D = BWD_D };
    dm_bwd_args a = bwd_args();
    a.deterministic = deterministic;
    const long before = stats->launches; /* the stub's counts outlive a context */
    dm_status st = dm_bwd(ctx, &a, kStream);
    ck_assert_msg(st == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(seen.allocs, 1);
    ck_assert_int_eq(seen.frees, 1);
    ck_assert_ptr_eq(seen.freed, seen.given);
    const size_t rows = ((size_t)B * H * L * 4 + 256) / 256 * 256;
    const size_t tiles = tile_rows ? (size_t)B * H * ((L + 63) / 64) * 2 * 64 * 4 : 0;
    size_t bytes = rows + dq_sum_bytes * (size_t)B * H * L * D + tiles;
    if (deterministic && dq_sum_bytes) /* the turns */
        bytes = (bytes + 255) / 256 * 256 + (size_t)B * H * ((L + 63) / 64) * 8;
    ck_assert_uint_eq(seen.alloc_bytes, bytes);
    ck_assert_int_eq(stats->launches - before, launches);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}

START_TEST(the_backwards_rows_come_from_the_allocator)
{
    check_bwd_scratch("80", 0, 0, 2, 0);
}
END_TEST

START_TEST(the_backwards_dq_sums_come_from_the_allocator_too_on_sm90a)
{
    check_bwd_scratch("90", 0, sizeof(float), 3, 1);
    check_bwd_scratch("90", 1, sizeof(float), 3, 1);
}
END_TEST

/* A dbias whose sums cross blocks (bias (1, H, L, L) at B = 2) takes a second allocation for
 * its partials (B x H x L x L in bias's dtype, bwd.c), given back like the first; where the
 * allocator refuses it the call still succeeds, phase 2 recomputing ds: a warp an element. */
START_TEST(dbias_partials_come_from_the_allocator_or_phase_2_recomputes)
{
    enum { B = BWD_B, H = BWD_H, L = BWD_L, D = BWD_D };
    for (int refuse = 0; refuse < 2; refuse++) {
        dm_ctx *ctx = stub_ctx();
        stats->capture_bytes = sizeof(dm_bwd_params);
        ck_assert_int_eq(dm_ctx_set_allocator(ctx, test_alloc, test_free, NULL), DM_OK);
        seen.fail_from = refuse ? 2 : 0;
        dm_bwd_args a = bwd_args();
        a.bias = dm_test_t4(0xa000000, DM_F16, 1, BWD_H, BWD_L, BWD_L);
        a.dbias = dm_test_t4(0xb000000, DM_F16, 1, BWD_H, BWD_L, BWD_L);
        const long before = stats->launches;
        dm_status st = dm_bwd(ctx, &a, kStream);
        ck_assert_msg(st == DM_OK, "%s", dm_errmsg(ctx));
        ck_assert_str_eq(dm_errmsg(ctx), "");
        ck_assert_int_eq(seen.allocs, 2);
        ck_assert_int_eq(seen.frees, refuse ? 1 : 2);
        ck_assert_int_eq(stats->launches - before, 3);
        dm_bwd_params p;
        memcpy(&p, stats->params, sizeof p);
        ck_assert(p.phase == 2 && p.dbias_fused == 0);
        const int64_t elems = (int64_t)H * L * L, warps = refuse ? elems : (elems + 31) / 32;
        ck_assert(refuse ? p.dbias_part == 0 : p.dbias_part != 0);
        if (!refuse)
            ck_assert_uint_eq(seen.alloc_bytes, (size_t)B * H * L * L * 2);
        dm_variant v = {.dir = DM_DIR_BWD,
                        .head_dim = D,
                        .dtype = DM_F16,
                        .bias = DM_LAYOUT_Q,
                        .arch = DM_SM80};
        const dm_kernel *k = dm_module_find(ctx, &v);
        ck_assert_ptr_nonnull(k);
        ck_assert_uint_eq(stats->grid[0], (warps + k->block_n - 1) / k->block_n);
        dm_ctx_destroy(ctx);
        dm_test_remove_dir(cache_dir);
    }
}
END_TEST

#define TESTS(X) \
    X(one_of_the_two_functions_null_is_refused_by_name) \
    X(the_split_partials_come_from_the_allocator_and_go_back_once) \
    X(a_failing_allocator_is_nomem_before_any_launch) \
    X(the_backwards_rows_come_from_the_allocator) \
    X(the_backwards_dq_sums_come_from_the_allocator_too_on_sm90a) \
    X(dbias_partials_come_from_the_allocator_or_phase_2_recomputes)
DM_TEST_MAIN("scratch_allocator", TESTS)
