/* test_device_check.c: dm_fwd_varlen refuses cu_seqlens the device cannot read (device_check.c),
 * against the stub driver (stub_libcuda.c), whose `dmstub_memory` says which addresses are host
 * memory and of what kind. No GPU: the stub launches nothing; only what is refused, what is
 * accepted and that the driver was asked with the dm_ctx's context current are checked. */
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmattn.h"
#include "harness.h"
#include "stub_libcuda.h"
#include "stub_util.h"
#include "test_fs.h"

typedef CUresult (*set_current_fn)(CUcontext);

static void *stub;
static dmstub_stats_t *stats;
static dmstub_memory_t *memory;
static char cache_dir[64];

#define CUQ_ADDR 0x800000u
#define CUK_ADDR 0x900000u

static dm_ctx *stub_ctx(void)
{
    dm_test_use_stub(DM_STUB_LIBCUDA, "80", "devcheck", &stub, &stats, cache_dir);
    memory = dm_test_stub_memory(stub);
    return dm_test_stub_ctx(cache_dir);
}

static void done(dm_ctx *ctx)
{
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}

static dm_tensor tensor3(uintptr_t addr, dm_dtype t, int64_t a, int64_t b, int64_t c)
{
    return (dm_tensor){
        .data = (void *)addr, .dtype = t, .rank = 3, .shape = {a, b, c}, .strides = {b * c, c, 1}};
}

static dm_tensor seqlens(uintptr_t addr)
{
    return (dm_tensor){
        .data = (void *)addr, .dtype = DM_I32, .rank = 1, .shape = {3}, .strides = {1}};
}

/* 2 sequences, 6 queries and 10 keys in all, d64 f16, the tiled path (one kernel to build). */
static dm_fwd_varlen_args args(void)
{
    return (dm_fwd_varlen_args){.q = tensor3(0x100000, DM_F16, 6, 2, 64),
                                .k = tensor3(0x200000, DM_F16, 10, 2, 64),
                                .v = tensor3(0x300000, DM_F16, 10, 2, 64),
                                .o = tensor3(0x400000, DM_F16, 6, 2, 64),
                                .cu_seqlens_q = seqlens(CUQ_ADDR),
                                .cu_seqlens_k = seqlens(CUK_ADDR),
                                .max_seqlen_q = 3,
                                .max_seqlen_k = 5,
                                .path = DM_PATH_TILED};
}

/* Host memory of `kind` over [lo, lo + 4096). */
static void host_at(uintptr_t lo, dmstub_host_kind kind)
{
    memory->host_lo = lo;
    memory->host_hi = lo + 4096;
    memory->host_kind = kind;
}

static void call_ok(dm_ctx *ctx, const dm_fwd_varlen_args *a)
{
    dm_status st = dm_fwd_varlen(ctx, a, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
}

/* Refused with DM_ERR_INVALID_ARG, the message holding each of needles (NULL-terminated). */
static void call_refused(dm_ctx *ctx, const dm_fwd_varlen_args *a, const char *const *needles)
{
    dm_status st = dm_fwd_varlen(ctx, a, NULL);
    ck_assert_msg(st == DM_ERR_INVALID_ARG, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(dm_errmsg(ctx), needles[i]), "'%s' does not say '%s'", dm_errmsg(ctx),
                      needles[i]);
    ck_assert_msg(strncmp(dm_errmsg(ctx), "dm_fwd_varlen: ", 15) == 0, "%s", dm_errmsg(ctx));
}

START_TEST(device_memory_is_accepted_and_asked_about_in_the_contexts_own_cuda_context)
{
    dm_ctx *ctx = stub_ctx();
    static int other_storage;
    CUcontext other = (CUcontext)(void *)&other_storage;
    ((set_current_fn)dlsym(stub, "cuCtxSetCurrent"))(other); /* the caller's, not ctx's */
    dm_fwd_varlen_args a = args();
    call_ok(ctx, &a);
    ck_assert_int_eq(stats->pointer_queries, 2); /* cu_seqlens_q and cu_seqlens_k */
    ck_assert_int_eq(stats->launches, 1);
    ck_assert_ptr_nonnull(stats->pointer_ctx);
    ck_assert_ptr_eq(stats->pointer_ctx, stats->launch_ctx);
    ck_assert_ptr_ne(stats->pointer_ctx, other);
    done(ctx);
}
END_TEST

START_TEST(pageable_host_cu_seqlens_are_refused_by_name_before_anything_is_built)
{
    dm_ctx *ctx = stub_ctx();
    dm_fwd_varlen_args a = args();
    host_at(CUQ_ADDR, DMSTUB_PAGEABLE);
    call_refused(ctx, &a,
                 (const char *const[]){"cu_seqlens_q.data = 0x800000", "not memory CUDA allocated",
                                       "expected device memory", NULL});
    host_at(CUK_ADDR, DMSTUB_PAGEABLE);
    call_refused(
        ctx, &a,
        (const char *const[]){"cu_seqlens_k.data = 0x900000", "not memory CUDA allocated", NULL});
    ck_assert_int_eq(stats->module_loads, 0);
    ck_assert_int_eq(stats->launches, 0);
    done(ctx);
}
END_TEST

/* An empty batch (q and o NULL, as PyTorch passes empty tensors) does nothing, but its arguments
 * are checked as a full one's. */
START_TEST(host_cu_seqlens_are_refused_even_when_total_q_is_0)
{
    dm_ctx *ctx = stub_ctx();
    dm_fwd_varlen_args a = args();
    a.q.shape[0] = a.o.shape[0] = 0;
    a.q.data = a.o.data = NULL;
    a.max_seqlen_q = 0;
    call_ok(ctx, &a);
    host_at(CUQ_ADDR, DMSTUB_PAGEABLE);
    call_refused(ctx, &a, (const char *const[]){"cu_seqlens_q.data", NULL});
    ck_assert_int_eq(stats->launches, 0);
    done(ctx);
}
END_TEST

/* cudaHostAlloc memory is mapped at its own address: the kernel reads it over the bus. Memory
 * registered with a different device address would fault at the host one. */
START_TEST(page_locked_host_memory_is_accepted_only_where_the_device_maps_it_at_that_address)
{
    dm_ctx *ctx = stub_ctx();
    dm_fwd_varlen_args a = args();
    host_at(CUQ_ADDR, DMSTUB_PINNED_MAPPED);
    call_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 1);
    host_at(CUK_ADDR, DMSTUB_PINNED_UNMAPPED);
    call_refused(ctx, &a,
                 (const char *const[]){"cu_seqlens_k.data = 0x900000", "page-locked host memory",
                                       "another address (0x100000900000)", NULL});
    ck_assert_int_eq(stats->launches, 1);
    done(ctx);
}
END_TEST

START_TEST(managed_memory_is_accepted_even_where_the_driver_calls_it_host_memory)
{
    dm_ctx *ctx = stub_ctx();
    dm_fwd_varlen_args a = args();
    host_at(CUQ_ADDR, DMSTUB_MANAGED);
    call_ok(ctx, &a);
    host_at(CUK_ADDR, DMSTUB_MANAGED);
    call_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 2);
    done(ctx);
}
END_TEST

/* The query failing says nothing against the caller's pointer: the call goes on, and stderr
 * hears of it once per context (at the default verbosity). */
START_TEST(a_failing_query_is_warned_about_once_and_the_call_goes_on)
{
    dm_ctx *ctx = stub_ctx();
    dm_ctx_set_verbosity(ctx, 1);
    char log_path[96];
    snprintf(log_path, sizeof log_path, "%s.stderr", cache_dir);
    fflush(stderr);
    int saved = dup(2);
    ck_assert(freopen(log_path, "w", stderr) != NULL);
    memory->fail = CUDA_ERROR_INVALID_CONTEXT;
    dm_fwd_varlen_args a = args();
    call_ok(ctx, &a);
    call_ok(ctx, &a);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(stats->launches, 2);
    ck_assert_int_eq(stats->pointer_queries, 4);

    FILE *f = fopen(log_path, "r");
    ck_assert_ptr_nonnull(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(log_path);
    const char *hit = strstr(text, "dm_fwd_varlen: cannot tell what memory cu_seqlens_q.data");
    ck_assert_msg(hit != NULL, "stderr: '%s'", text);
    ck_assert_msg(strstr(hit, "cuPointerGetAttributes") != NULL, "stderr: '%s'", text);
    ck_assert_msg(strstr(hit + strlen("dm_fwd_varlen: cannot tell"), "cannot tell") == NULL,
                  "warned twice: '%s'", text);
    done(ctx);
}
END_TEST

START_TEST(an_offline_context_reports_no_device)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_fwd_varlen_args a = args();
    ck_assert_int_eq(dm_fwd_varlen(ctx, &a, NULL), DM_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "dm_fwd_varlen"));
    dm_ctx_destroy(ctx);
}
END_TEST

#define TESTS(X) \
    X(device_memory_is_accepted_and_asked_about_in_the_contexts_own_cuda_context) \
    X(pageable_host_cu_seqlens_are_refused_by_name_before_anything_is_built) \
    X(host_cu_seqlens_are_refused_even_when_total_q_is_0) \
    X(page_locked_host_memory_is_accepted_only_where_the_device_maps_it_at_that_address) \
    X(managed_memory_is_accepted_even_where_the_driver_calls_it_host_memory) \
    X(a_failing_query_is_warned_about_once_and_the_call_goes_on) \
    X(an_offline_context_reports_no_device)
DM_TEST_MAIN("device_check", TESTS)
