/* test_key_staging.c: how the library tells the kernels to stage a key-layout mask or bias row
 * (FwdParams mask_vec16 / mask_words, bias_vec16 / bias_words; fwd_varlen.c and fwd_launch.c),
 * read back from the parameter struct the stub driver (stub_libcuda.c) was launched with. Keys
 * adjacent: staged 16 bytes at a time from the aligned address before the row, which needs only
 * a 16-byte aligned base. Keys apart: a 4-byte word a key, which needs the base and the key step
 * to be multiples of 4 bytes. Anything else: read key by key (both flags 0). No GPU: the stub
 * launches nothing; what the kernels do with the flags is test_gpu_varlen's and test_gpu_fwd's. */
#include <stdint.h>
#include <string.h>

#include "dmattn.h"
#include "harness.h"
#include "kernel_params.h"
#include "stub_util.h"
#include "test_fs.h"

static void *stub;
static dmstub_stats_t *stats;
static char cache_dir[64];

static dm_ctx *stub_ctx(void)
{
    dm_test_use_stub(DM_STUB_LIBCUDA, "80", "staging", &stub, &stats, cache_dir);
    stats->capture_bytes = sizeof(dm_fwd_params);
    return dm_test_stub_ctx(cache_dir);
}

static void done(dm_ctx *ctx)
{
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}

/* A contiguous tensor at a fake device address (the stub reads nothing). */
static dm_tensor tensor(uintptr_t addr, dm_dtype t, int rank, const int64_t *shape)
{
    dm_tensor x = {.data = (void *)addr, .dtype = t, .rank = rank};
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        x.shape[d] = shape[d];
        x.strides[d] = stride;
        stride *= shape[d];
    }
    return x;
}

/* 2 sequences, 40 tokens each side, H = 8 over Hkv = 2, D = 64, f16; tiled path. */
enum { TOK = 40, H = 8, HKV = 2, D = 64 };

/* The flags of one dm_fwd_varlen call with a key mask (total_k, mask_heads) at mask_addr and a
 * key bias (total_k, bias_heads) of bias_dtype at bias_addr. */
static dm_fwd_params varlen_flags(dm_ctx *ctx, uintptr_t mask_addr, int64_t mask_heads,
                                  uintptr_t bias_addr, dm_dtype bias_dtype, int64_t bias_heads)
{
    const int64_t qs[3] = {TOK, H, D}, ks[3] = {TOK, HKV, D}, cs[1] = {3};
    const int64_t ms[2] = {TOK, mask_heads}, bs[2] = {TOK, bias_heads};
    dm_fwd_varlen_args a = {
        .q = tensor(0x100000, DM_F16, 3, qs),
        .k = tensor(0x200000, DM_F16, 3, ks),
        .v = tensor(0x300000, DM_F16, 3, ks),
        .o = tensor(0x400000, DM_F16, 3, qs),
        .cu_seqlens_q = tensor(0x500000, DM_I32, 1, cs),
        .cu_seqlens_k = tensor(0x510000, DM_I32, 1, cs),
        .mask = tensor(mask_addr, DM_BOOL, 2, ms),
        .bias = tensor(bias_addr, bias_dtype, 2, bs),
        .max_seqlen_q = 30,
        .max_seqlen_k = 30,
        .path = DM_PATH_TILED,
    };
    long before = stats->launches;
    dm_status st = dm_fwd_varlen(ctx, &a, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
    ck_assert_int_eq(stats->launches, before + 1);
    dm_fwd_params p;
    memcpy(&p, stats->params, sizeof p);
    return p;
}

START_TEST(varlen_key_rows_are_staged_by_their_key_step_and_base)
{
    dm_ctx *ctx = stub_ctx();
    const uintptr_t m16 = 0x600000, b16 = 0x700000;

    /* keys adjacent (Hm = 1), base 16-byte aligned: rows from the aligned address before */
    dm_fwd_params p = varlen_flags(ctx, m16, 1, b16, DM_F16, 1);
    ck_assert_int_eq(p.mask_vec16, 1);
    ck_assert_int_eq(p.mask_words, 0);
    ck_assert_int_eq(p.bias_vec16, 1);
    ck_assert_int_eq(p.bias_words, 0);
    /* ... base off 16 bytes: key by key (a chunk would start before the tensor) */
    p = varlen_flags(ctx, m16 + 4, 1, b16 + 2, DM_F16, 1);
    ck_assert_int_eq(p.mask_vec16 | p.mask_words | p.bias_vec16 | p.bias_words, 0);

    /* keys H = 8 apart: an 8-byte mask step and a 16-byte f16 step are word multiples */
    p = varlen_flags(ctx, m16, H, b16, DM_F16, H);
    ck_assert_int_eq(p.mask_words, 1);
    ck_assert_int_eq(p.bias_words, 1);
    ck_assert_int_eq(p.mask_vec16 | p.bias_vec16, 0);
    ck_assert_int_eq(p.mask_key_stride, H);
    /* ... keys Hkv = 2 apart: a 2-byte mask step is not, a 4-byte f16 step is */
    p = varlen_flags(ctx, m16, HKV, b16, DM_F16, HKV);
    ck_assert_int_eq(p.mask_words, 0);
    ck_assert_int_eq(p.bias_words, 1);
    /* ... an fp32 bias: every step is a word multiple */
    p = varlen_flags(ctx, m16, H, b16, DM_F32, HKV);
    ck_assert_int_eq(p.bias_f32, 1);
    ck_assert_int_eq(p.bias_words, 1);
    /* ... a base off 4 bytes: the key's value would not sit at one place in every word */
    p = varlen_flags(ctx, m16 + 2, H, b16 + 2, DM_F16, H);
    ck_assert_int_eq(p.mask_words | p.bias_words, 0);
    ck_assert_int_eq(p.mask_vec16 | p.bias_vec16, 0);
    done(ctx);
}
END_TEST

/* dm_fwd with a key bias (B, Hkv, 1, Lk) of Lk = 37 keys: rows are 74 bytes apart, so only the
 * first starts 16-byte aligned; each is staged from the aligned address before it. */
START_TEST(dense_key_rows_need_only_an_aligned_base)
{
    dm_ctx *ctx = stub_ctx();
    const int64_t qs[4] = {2, 5, H, D}, ks[4] = {2, 37, HKV, D}, bs[4] = {2, HKV, 1, 37};
    dm_fwd_args a = {
        .q = tensor(0x100000, DM_F16, 4, qs),
        .k = tensor(0x200000, DM_F16, 4, ks),
        .v = tensor(0x300000, DM_F16, 4, ks),
        .o = tensor(0x400000, DM_F16, 4, qs),
        .bias = tensor(0x700000, DM_F16, 4, bs),
        .path = DM_PATH_TILED,
    };
    dm_status st = dm_fwd(ctx, &a, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
    dm_fwd_params p;
    memcpy(&p, stats->params, sizeof p);
    ck_assert_int_eq(p.bias_vec16, 1);
    ck_assert_int_eq(p.bias_words, 0);

    a.bias.data = (void *)(uintptr_t)0x700008; /* base off 16 bytes: key by key */
    st = dm_fwd(ctx, &a, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
    memcpy(&p, stats->params, sizeof p);
    ck_assert_int_eq(p.bias_vec16, 0);
    done(ctx);
}
END_TEST

#define TESTS(X) \
    X(varlen_key_rows_are_staged_by_their_key_step_and_base) \
    X(dense_key_rows_need_only_an_aligned_base)
DM_TEST_MAIN("key_staging", TESTS)
