/* test_launch.c: the launch path of dm_fwd and the context's CUDA bookkeeping, against the stub
 * driver (stub_libcuda.c, loaded through DMATTN_LIBCUDA): kernels are loaded once and found again
 * by variant, the caller's current CUDA context is left as it was, and device queries that fail
 * are reported by name. No GPU: the stub launches nothing, so only host behaviour is checked. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels.h"
#include "stub_libcuda.h"
#include "stub_util.h"
#include "test_fs.h"

typedef CUresult (*set_current_fn)(CUcontext);
typedef CUresult (*get_current_fn)(CUcontext *);
typedef CUresult (*retain_fn)(CUcontext *, CUdevice);

static void *stub;
static dmstub_stats_t *stats;
static char cache_dir[64];

/* Points the library at the stub (before its first dlopen) with an sm80 device: its kernels
 * compile fastest. Each test runs in a process of its own, so the driver opens afresh. */
static void use_stub(const char *cc)
{
    dm_test_use_stub(DM_STUB_LIBCUDA, cc, "launch", &stub, &stats, cache_dir);
}

static void *stub_fn(const char *name)
{
    void *f = dlsym(stub, name);
    ck_assert_msg(f != NULL, "stub has no %s", name);
    return f;
}

static CUcontext current_context(void)
{
    CUcontext c = NULL;
    ((get_current_fn)stub_fn("cuCtxGetCurrent"))(&c);
    return c;
}

static void set_current(CUcontext c) { ((set_current_fn)stub_fn("cuCtxSetCurrent"))(c); }

static dm_ctx *device_ctx(void)
{
    return dm_test_stub_ctx(cache_dir);
}

static dm_tensor tensor4(uintptr_t addr, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return (dm_tensor){.data = (void *)addr, .dtype = DM_F16, .rank = 4, .shape = {a, b, c, d},
                       .strides = {b * c * d, c * d, d, 1}};
}

/* d64 f16, 100 queries and keys, 2 heads: device addresses are never touched by the stub. */
static dm_fwd_args small_args(void)
{
    return (dm_fwd_args){.q = tensor4(0x100000, 1, 100, 2, 64),
                         .k = tensor4(0x200000, 1, 100, 2, 64),
                         .v = tensor4(0x300000, 1, 100, 2, 64),
                         .o = tensor4(0x400000, 1, 100, 2, 64)};
}

static void fwd_ok(dm_ctx *ctx, const dm_fwd_args *a)
{
    dm_status st = dm_fwd(ctx, a, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
}

START_TEST(warm_calls_find_the_loaded_kernel_and_load_nothing)
{
    use_stub("80");
    dm_ctx *ctx = device_ctx();
    dm_fwd_args a = small_args();
    fwd_ok(ctx, &a);
    ck_assert_int_eq(stats->module_loads, 1);
    void *fn = stats->launch_fn;
    unsigned grid_x = stats->grid[0], threads = stats->block_threads, smem = stats->smem_bytes;
    stats->grid[0] = stats->block_threads = stats->smem_bytes = 0;
    for (int i = 0; i < 100; i++)
        fwd_ok(ctx, &a);
    ck_assert_int_eq(stats->module_loads, 1);
    ck_assert_int_eq(stats->launches, 101);
    ck_assert_ptr_eq(stats->launch_fn, fn);
    ck_assert_uint_eq(stats->grid[0], grid_x); /* the launch shape the cold call found */
    ck_assert_uint_eq(stats->block_threads, threads);
    ck_assert_uint_eq(stats->smem_bytes, smem);
    ck_assert_uint_eq(stats->grid[1], 2);
    ck_assert_uint_eq(stats->grid[2], 1);
    dm_ctx_destroy(ctx);
    ck_assert_int_eq(stats->module_unloads, 1);
    dm_test_remove_dir(cache_dir);
}
END_TEST

START_TEST(a_call_differing_in_one_variant_field_gets_its_own_kernel)
{
    use_stub("80");
    dm_ctx *ctx = device_ctx();
    dm_fwd_args a = small_args();
    fwd_ok(ctx, &a);
    void *plain = stats->launch_fn;
    a.causal = 1;
    fwd_ok(ctx, &a);
    void *causal = stats->launch_fn;
    ck_assert_int_eq(stats->module_loads, 2);
    ck_assert_ptr_ne(plain, causal);
    a.causal = 0;
    fwd_ok(ctx, &a);
    ck_assert_ptr_eq(stats->launch_fn, plain);
    a.causal = 1;
    fwd_ok(ctx, &a);
    ck_assert_ptr_eq(stats->launch_fn, causal);
    ck_assert_int_eq(stats->module_loads, 2);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* PyTorch's case: the context dmattn uses is current; nothing to push or pop. */
START_TEST(when_its_context_is_current_dm_fwd_neither_pushes_nor_pops)
{
    use_stub("80");
    CUcontext primary;
    ((retain_fn)stub_fn("cuDevicePrimaryCtxRetain"))(&primary, 0);
    set_current(primary);
    dm_ctx *ctx = device_ctx();
    dm_fwd_args a = small_args();
    fwd_ok(ctx, &a);
    long pushes = stats->pushes, pops = stats->pops;
    for (int i = 0; i < 10; i++)
        fwd_ok(ctx, &a);
    ck_assert_int_eq(stats->pushes, pushes);
    ck_assert_int_eq(stats->pops, pops);
    ck_assert_ptr_eq(stats->launch_ctx, primary);
    ck_assert_ptr_eq(current_context(), primary);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

START_TEST(with_another_context_current_dm_fwd_launches_in_its_own_and_restores_the_callers)
{
    use_stub("80");
    dm_ctx *ctx = device_ctx(); /* nothing current: it retains the primary context */
    CUcontext primary;
    ((retain_fn)stub_fn("cuDevicePrimaryCtxRetain"))(&primary, 0);
    static int other_storage;
    CUcontext other = (CUcontext)(void *)&other_storage;
    set_current(other);
    dm_fwd_args a = small_args();
    fwd_ok(ctx, &a);
    fwd_ok(ctx, &a);
    ck_assert_ptr_eq(stats->launch_ctx, primary);
    ck_assert_ptr_eq(current_context(), other);
    ck_assert_int_eq(stats->pushes, stats->pops);

    set_current(NULL);
    fwd_ok(ctx, &a);
    ck_assert_ptr_eq(stats->launch_ctx, primary);
    ck_assert_ptr_null(current_context());
    ck_assert_int_eq(stats->pushes, stats->pops);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* Each attribute dm_ctx_create reads: its failure is reported by name, and the context is left
 * offline (dm_fwd says so) instead of launching on a device it could not vet. */
START_TEST(a_failing_device_attribute_is_named_and_leaves_the_context_offline)
{
    static const struct {
        CUdevice_attribute attr;
        const char *name;
    } attrs[] = {
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "COMPUTE_CAPABILITY_MAJOR"},
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "COMPUTE_CAPABILITY_MINOR"},
        {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN"},
    };
    use_stub("80");
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", (int)attrs[i].attr);
        setenv("DMSTUB_FAIL_ATTRIBUTE", n, 1);
        dm_ctx *ctx = NULL;
        ck_assert_int_eq(dm_ctx_create(&ctx, 0), DM_ERR_CUDA);
        ck_assert_msg(strstr(dm_errmsg(ctx), attrs[i].name) &&
                          strstr(dm_errmsg(ctx), "cuDeviceGetAttribute"),
                      "%s", dm_errmsg(ctx));
        dm_fwd_args a = small_args();
        ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_ERR_NO_DEVICE);
        dm_ctx_destroy(ctx);
    }
    ck_assert_int_eq(stats->launches, 0);
    dm_test_remove_dir(cache_dir);
}
END_TEST

START_TEST(an_unsupported_device_leaves_the_context_offline)
{
    use_stub("75");
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, 0), DM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "7.5"));
    ck_assert_str_eq(dm_ctx_arch(ctx), "");
    dm_fwd_args a = small_args();
    ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_ERR_NO_DEVICE);
    ck_assert_int_eq(stats->module_loads, 0);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* B = 0 or Lq = 0 (data NULL, as PyTorch passes empty tensors) launches nothing and builds
 * nothing; Lk = 0 still launches: its rows are written as empty (o = 0, lse = +inf), on the
 * tiled and the decode path alike. */
START_TEST(no_query_launches_nothing_and_no_key_still_launches)
{
    use_stub("80");
    dm_ctx *ctx = device_ctx();
    dm_fwd_args a = small_args();
    a.q = a.o = tensor4(0, 0, 100, 2, 64);
    a.k = a.v = tensor4(0, 0, 100, 2, 64);
    fwd_ok(ctx, &a);
    a = small_args();
    a.q = a.o = tensor4(0, 1, 0, 2, 64);
    fwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 0);
    ck_assert_int_eq(stats->module_loads, 0);

    a = small_args();
    a.k = a.v = tensor4(0, 1, 0, 2, 64);
    a.path = DM_PATH_TILED;
    fwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 1);
    a.q = a.o = tensor4(0x100000, 1, 4, 2, 64);
    a.path = DM_PATH_DECODE;
    fwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 2);
    ck_assert_uint_eq(stats->grid[0], 1); /* one split: there is no key to split */
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* Equal lengths on a decode kernel of three blocks an SM (DMSTUB_BLOCKS_PER_SM): 64 x 8 pairs
 * fill 2 x 264 slots at two blocks an SM in one split, where three an SM need two splits at
 * fill 0.86; so the launch asks for padded shared memory that fits only two. 99 x 8 pairs fill
 * two waves of 396 slots exactly: the kernel's own shared memory, three an SM. */
START_TEST(equal_decode_lengths_take_a_block_fewer_an_sm_where_waves_fill_better)
{
    setenv("DMSTUB_BLOCKS_PER_SM", "3", 1);
    use_stub("90");
    dm_ctx *ctx = device_ctx();
    const uintptr_t gib = (uintptr_t)1 << 30;
    dm_fwd_args a = {.q = tensor4(1 * gib, 64, 8, 32, 64), .o = tensor4(2 * gib, 64, 8, 32, 64),
                     .k = tensor4(4 * gib, 64, 4096, 8, 64), .v = tensor4(8 * gib, 64, 4096, 8, 64),
                     .path = DM_PATH_DECODE};
    fwd_ok(ctx, &a);
    ck_assert_uint_eq(stats->grid[0], 1); /* one split */
    const unsigned padded = stats->smem_bytes;
    ck_assert_uint_eq(233472 / (padded + 1024), 2);

    a.q = tensor4(1 * gib, 99, 8, 32, 64);
    a.o = tensor4(2 * gib, 99, 8, 32, 64);
    a.k = tensor4(4 * gib, 99, 4096, 8, 64);
    a.v = tensor4(8 * gib, 99, 4096, 8, 64);
    fwd_ok(ctx, &a);
    ck_assert_uint_eq(stats->grid[0], 1);
    ck_assert_uint_ge(233472 / (stats->smem_bytes + 1024), 3); /* the kernel's own */
    unsetenv("DMSTUB_BLOCKS_PER_SM");
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

START_TEST(nested_enters_push_once_and_the_last_leave_restores)
{
    use_stub("80");
    dm_ctx *ctx = device_ctx();
    static int other_storage;
    CUcontext other = (CUcontext)(void *)&other_storage;
    set_current(other);
    ck_assert_int_eq(dm_ctx_enter(ctx, "test"), DM_OK);
    ck_assert_int_eq(dm_ctx_enter(ctx, "test"), DM_OK);
    ck_assert_int_eq(stats->pushes, 1);
    dm_ctx_leave(ctx);
    ck_assert_ptr_ne(current_context(), other); /* the outer pair still holds */
    dm_ctx_leave(ctx);
    ck_assert_int_eq(stats->pops, 1);
    ck_assert_ptr_eq(current_context(), other);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

#define TESTS(X) \
    X(warm_calls_find_the_loaded_kernel_and_load_nothing) \
    X(a_call_differing_in_one_variant_field_gets_its_own_kernel) \
    X(when_its_context_is_current_dm_fwd_neither_pushes_nor_pops) \
    X(with_another_context_current_dm_fwd_launches_in_its_own_and_restores_the_callers) \
    X(nested_enters_push_once_and_the_last_leave_restores) \
    X(no_query_launches_nothing_and_no_key_still_launches) \
    X(equal_decode_lengths_take_a_block_fewer_an_sm_where_waves_fill_better) \
    X(a_failing_device_attribute_is_named_and_leaves_the_context_offline) \
    X(an_unsupported_device_leaves_the_context_offline)
DM_TEST_MAIN("launch", TESTS)
