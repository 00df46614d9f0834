/* test_gpu_args.c: argument forms a real driver and GPU must take as the CPU tests promise:
 * cu_seqlens in each kind of memory (device_check.c asks the driver; the stub only plays its
 * answers), and tensors with no elements passed with data NULL (dense B, Lq or Lk = 0, varlen
 * total_q or total_k = 0) on the tiled and the decode path. Outputs poisoned first. Skipped
 * without a GPU. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_util.h"
#include "harness.h"
#include "reference.h"

enum { NSEQ = 3, H = 4, HKV = 2, D = 64 };
static const int32_t cu_q_host[NSEQ + 1] = {0, 2, 3, 7}, cu_k_host[NSEQ + 1] = {0, 50, 51, 180};
#define TQ 7
#define TK 180

/* Driver calls the library never makes (it allocates no host or managed memory), looked up in
 * the same libcuda the library opened. */
typedef struct extra_driver {
    CUresult (*MemHostAlloc)(void **, size_t, unsigned);
    CUresult (*MemFreeHost)(void *);
    CUresult (*MemAllocManaged)(CUdeviceptr *, size_t, unsigned);
    CUresult (*MemHostRegister)(void *, size_t, unsigned);
    CUresult (*MemHostUnregister)(void *);
} extra_driver;

static extra_driver extra(void)
{
    const char *path = getenv("DMATTN_LIBCUDA");
    void *lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(lib != NULL, "%s", dlerror());
    extra_driver x = {
        .MemHostAlloc = (CUresult(*)(void **, size_t, unsigned))dlsym(lib, "cuMemHostAlloc"),
        .MemFreeHost = (CUresult(*)(void *))dlsym(lib, "cuMemFreeHost"),
        .MemAllocManaged =
            (CUresult(*)(CUdeviceptr *, size_t, unsigned))dlsym(lib, "cuMemAllocManaged"),
        .MemHostRegister =
            (CUresult(*)(void *, size_t, unsigned))dlsym(lib, "cuMemHostRegister_v2"),
        .MemHostUnregister = (CUresult(*)(void *))dlsym(lib, "cuMemHostUnregister"),
    };
    ck_assert(x.MemHostAlloc && x.MemFreeHost && x.MemAllocManaged && x.MemHostRegister &&
              x.MemHostUnregister);
    return x;
}

static void fill(gpu_twin *w, uint64_t *s)
{
    size_t n = w->bytes / 2;
    for (size_t i = 0; i < n; i++)
        gpu_put(w->host_base, w->host.dtype, i, (float)gpu_uniform(s));
    gpu_twin_upload(w);
}

typedef struct vl_setup {
    gpu_twin q, k, v, o, lse, bias, cu_q, cu_k;
} vl_setup;

/* 3 sequences (2, 1, 4 queries over 50, 1, 129 keys), GQA 4 over 2, a key-based bias. */
static void vl_alloc(vl_setup *t, uint64_t seed)
{
    int64_t qs[3] = {TQ, H, D}, ks[3] = {TK, HKV, D}, ls[2] = {H, TQ}, bs[2] = {TK, HKV};
    int64_t cs[1] = {NSEQ + 1};
    gpu_twin_alloc(&t->q, DM_BF16, 3, qs, NULL, 0, 0);
    gpu_twin_alloc(&t->o, DM_BF16, 3, qs, NULL, 0, 0);
    gpu_twin_alloc(&t->k, DM_BF16, 3, ks, NULL, 0, 0);
    gpu_twin_alloc(&t->v, DM_BF16, 3, ks, NULL, 0, 0);
    gpu_twin_alloc(&t->lse, DM_F32, 2, ls, NULL, 0, 0);
    gpu_twin_alloc(&t->bias, DM_BF16, 2, bs, NULL, 0, 0);
    gpu_twin_alloc(&t->cu_q, DM_I32, 1, cs, NULL, 0, 0);
    gpu_twin_alloc(&t->cu_k, DM_I32, 1, cs, NULL, 0, 0);
    uint64_t s = seed;
    fill(&t->q, &s);
    fill(&t->k, &s);
    fill(&t->v, &s);
    fill(&t->bias, &s);
    memcpy(t->cu_q.host_base, cu_q_host, sizeof cu_q_host);
    memcpy(t->cu_k.host_base, cu_k_host, sizeof cu_k_host);
    gpu_twin_upload(&t->cu_q);
    gpu_twin_upload(&t->cu_k);
}

static void vl_free(vl_setup *t)
{
    gpu_twin *all[] = {&t->q, &t->k, &t->v, &t->o, &t->lse, &t->bias, &t->cu_q, &t->cu_k};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        gpu_twin_free(all[i]);
}

static dm_fwd_varlen_args vl_args(const vl_setup *t, void *cu_q, void *cu_k, int path)
{
    dm_fwd_varlen_args a = {.q = t->q.dev,
                            .k = t->k.dev,
                            .v = t->v.dev,
                            .o = t->o.dev,
                            .lse = t->lse.dev,
                            .bias = t->bias.dev,
                            .cu_seqlens_q = t->cu_q.dev,
                            .cu_seqlens_k = t->cu_k.dev,
                            .max_seqlen_q = 4,
                            .max_seqlen_k = 129,
                            .path = path};
    a.cu_seqlens_q.data = cu_q;
    a.cu_seqlens_k.data = cu_k;
    return a;
}

static void poison(gpu_twin *w)
{
    memset(w->host_base, 0xff, w->bytes);
    gpu_twin_upload(w);
}

/* Runs the call with o and lse poisoned; returns its status, o and lse downloaded on DM_OK. */
static dm_status vl_run(vl_setup *t, void *cu_q, void *cu_k, int path)
{
    dm_ctx *ctx = gpu_ctx();
    poison(&t->o);
    poison(&t->lse);
    dm_fwd_varlen_args a = vl_args(t, cu_q, cu_k, path);
    dm_status st = dm_fwd_varlen(ctx, &a, NULL);
    if (st != DM_OK)
        return st;
    ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
    gpu_twin_download(&t->o);
    gpu_twin_download(&t->lse);
    return st;
}

/* o and lse of this run against `want` (the device-memory run): the same kernel on the same
 * values, so bit for bit. */
static void expect_same(const vl_setup *t, const void *want_o, const void *want_lse,
                        const char *what)
{
    ck_assert_msg(memcmp(t->o.host_base, want_o, t->o.bytes) == 0, "%s: o differs", what);
    ck_assert_msg(memcmp(t->lse.host_base, want_lse, t->lse.bytes) == 0, "%s: lse differs", what);
}

START_TEST(cu_seqlens_in_device_managed_and_mapped_pinned_memory_give_one_result)
{
    const dm_driver *drv = gpu_drv();
    extra_driver x = extra();
    uint64_t seed = gpu_fresh_seed();
    vl_setup t;
    vl_alloc(&t, seed);
    for (int path = DM_PATH_TILED; path <= DM_PATH_DECODE; path++) {
        /* device memory, checked against the CPU reference so that "the same" means right */
        ck_assert_int_eq(vl_run(&t, t.cu_q.dev.data, t.cu_k.dev.data, path), DM_OK);
        dm_fwd_varlen_args h = vl_args(&t, t.cu_q.host_base, t.cu_k.host_base, path);
        h.q = t.q.host;
        h.k = t.k.host;
        h.v = t.v.host;
        h.bias = t.bias.host;
        h.o = t.o.host;
        h.lse = t.lse.host;
        void *o_dev = malloc(t.o.bytes), *lse_dev = malloc(t.lse.bytes);
        ck_assert(o_dev && lse_dev);
        memcpy(o_dev, t.o.host_base, t.o.bytes);
        memcpy(lse_dev, t.lse.host_base, t.lse.bytes);
        dm_ctx *ref = NULL;
        ck_assert_int_eq(dm_ctx_create(&ref, DM_NO_DEVICE), DM_OK);
        dm_fwd_varlen_plan plan;
        ck_assert_int_eq(dm_fwd_varlen_check(ref, "ref", &h, &plan), DM_OK);
        ck_assert_msg(dm_ref_fwd_varlen(ref, &h, &plan) == DM_OK, "%s", dm_errmsg(ref));
        dm_ctx_destroy(ref);
        double num = 0, den = 0;
        for (size_t i = 0; i < (size_t)TQ * H * D; i++) {
            double g = gpu_get(o_dev, DM_BF16, i), r = gpu_get(t.o.host_base, DM_BF16, i);
            num += (g - r) * (g - r);
            den += r * r;
        }
        ck_assert_msg(sqrt(num / den) < 1e-2, "path %d [seed %llu]: rel. error %g", path,
                      (unsigned long long)seed, sqrt(num / den));

        /* page-locked, mapped (cuMemHostAlloc DEVICEMAP): read over the bus */
        int32_t *pinned_q, *pinned_k;
        ck_assert_int_eq(
            x.MemHostAlloc((void **)&pinned_q, sizeof cu_q_host, CU_MEMHOSTALLOC_DEVICEMAP),
            CUDA_SUCCESS);
        ck_assert_int_eq(
            x.MemHostAlloc((void **)&pinned_k, sizeof cu_k_host, CU_MEMHOSTALLOC_DEVICEMAP),
            CUDA_SUCCESS);
        memcpy(pinned_q, cu_q_host, sizeof cu_q_host);
        memcpy(pinned_k, cu_k_host, sizeof cu_k_host);
        dm_status st = vl_run(&t, pinned_q, pinned_k, path);
        ck_assert_msg(st == DM_OK, "pinned: %s", dm_errmsg(gpu_ctx()));
        expect_same(&t, o_dev, lse_dev, "pinned cu_seqlens");

        /* managed (cuMemAllocManaged, attached globally) */
        CUdeviceptr managed;
        ck_assert_int_eq(x.MemAllocManaged(&managed, 2 * sizeof cu_q_host, CU_MEM_ATTACH_GLOBAL),
                         CUDA_SUCCESS);
        int32_t *m = (int32_t *)(uintptr_t)managed;
        memcpy(m, cu_q_host, sizeof cu_q_host);
        memcpy(m + NSEQ + 1, cu_k_host, sizeof cu_k_host);
        st = vl_run(&t, m, m + NSEQ + 1, path);
        ck_assert_msg(st == DM_OK, "managed: %s", dm_errmsg(gpu_ctx()));
        expect_same(&t, o_dev, lse_dev, "managed cu_seqlens");
        drv->MemFree(managed);

        /* pageable host memory: refused by name, o and lse untouched (still poisoned) */
        int32_t *pageable = malloc(2 * sizeof cu_q_host);
        ck_assert_ptr_nonnull(pageable);
        memcpy(pageable, cu_q_host, sizeof cu_q_host);
        memcpy(pageable + NSEQ + 1, cu_k_host, sizeof cu_k_host);
        st = vl_run(&t, t.cu_q.dev.data, pageable + NSEQ + 1, path);
        ck_assert_msg(st == DM_ERR_INVALID_ARG && strstr(dm_errmsg(gpu_ctx()), "cu_seqlens_k.data"),
                      "pageable: %s: %s", dm_status_name(st), dm_errmsg(gpu_ctx()));
        gpu_twin_download(&t.o);
        for (size_t i = 0; i < t.o.bytes; i++)
            ck_assert_msg(((unsigned char *)t.o.host_base)[i] == 0xff, "o written at byte %zu", i);

        /* pageable memory registered with the driver: accepted only where the device reads it at
         * the host address; either way never a wrong result or a fault */
        size_t page = 4096;
        void *reg = aligned_alloc(page, page);
        ck_assert_ptr_nonnull(reg);
        memcpy(reg, cu_q_host, sizeof cu_q_host);
        ck_assert_int_eq(x.MemHostRegister(reg, page, CU_MEMHOSTREGISTER_DEVICEMAP), CUDA_SUCCESS);
        st = vl_run(&t, reg, t.cu_k.dev.data, path);
        fprintf(stderr, "registered host cu_seqlens (path %d): %s%s%s\n", path, dm_status_name(st),
                st == DM_OK ? "" : ": ", st == DM_OK ? "" : dm_errmsg(gpu_ctx()));
        if (st == DM_OK)
            expect_same(&t, o_dev, lse_dev, "registered cu_seqlens");
        else
            ck_assert_msg(st == DM_ERR_INVALID_ARG &&
                              strstr(dm_errmsg(gpu_ctx()), "another address"),
                          "registered: %s: %s", dm_status_name(st), dm_errmsg(gpu_ctx()));
        x.MemHostUnregister(reg);
        free(reg);
        free(pageable);
        x.MemFreeHost(pinned_q);
        x.MemFreeHost(pinned_k);
        free(o_dev);
        free(lse_dev);
    }
    vl_free(&t);
}
END_TEST

/* o all zero (+0 or -0) and lse all +inf over n rows of H x D. */
static void expect_empty_rows(const gpu_twin *o, const gpu_twin *lse, size_t rows, const char *what)
{
    const uint16_t *ov = o->host_base;
    const float *lv = lse->host_base;
    for (size_t i = 0; i < rows * H * D; i++)
        ck_assert_msg((ov[i] & 0x7fff) == 0, "%s: o[%zu] = 0x%04x, expected 0", what, i, ov[i]);
    for (size_t i = 0; i < rows * H; i++)
        ck_assert_msg(isinf(lv[i]) && lv[i] > 0, "%s: lse[%zu] = %g, expected +inf", what, i,
                      (double)lv[i]);
}

static dm_tensor null_tensor(dm_dtype t, int rank, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    dm_tensor x = {.data = NULL, .dtype = t, .rank = rank, .shape = {s0, s1, s2, s3}};
    int64_t n = 1;
    for (int d = rank - 1; d >= 0; d--) {
        x.strides[d] = n;
        n *= x.shape[d] ? x.shape[d] : 1;
    }
    return x;
}

/* Dense Lk = 0 with k, v, a key mask and a bias all NULL (no elements): every row has no visible
 * key, on both paths, causal or not, with a window too. B = 0 and Lq = 0 with NULL tensors do
 * nothing and leave the context healthy. */
START_TEST(dense_calls_with_empty_tensors_passed_as_null)
{
    dm_ctx *ctx = gpu_ctx();
    enum { B = 2, LQ = 3 };
    int64_t qs[4] = {B, LQ, H, D}, ls[3] = {B, H, LQ};
    gpu_twin q, o, lse;
    gpu_twin_alloc(&q, DM_F16, 4, qs, NULL, 0, 0);
    gpu_twin_alloc(&o, DM_F16, 4, qs, NULL, 0, 0);
    gpu_twin_alloc(&lse, DM_F32, 3, ls, NULL, 0, 0);
    uint64_t s = gpu_fresh_seed();
    fill(&q, &s);
    for (int path = DM_PATH_TILED; path <= DM_PATH_DECODE; path++)
        for (int causal = 0; causal < 2; causal++)
            for (int window = 0; window < 2; window++) {
                char what[96];
                snprintf(what, sizeof what, "Lk = 0, path %d, causal %d, window %d", path, causal,
                         window * 8);
                dm_fwd_args a = {.q = q.dev,
                                 .o = o.dev,
                                 .lse = lse.dev,
                                 .k = null_tensor(DM_F16, 4, B, 0, HKV, D),
                                 .v = null_tensor(DM_F16, 4, B, 0, HKV, D),
                                 .mask = null_tensor(DM_BOOL, 4, B, 1, 1, 0),
                                 .bias = null_tensor(DM_F16, 4, 1, HKV, 1, 0),
                                 .causal = causal,
                                 .window = window * 8,
                                 .path = path};
                poison(&o);
                poison(&lse);
                dm_status st = dm_fwd(ctx, &a, NULL);
                ck_assert_msg(st == DM_OK, "%s: %s", what, dm_errmsg(ctx));
                ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
                gpu_twin_download(&o);
                gpu_twin_download(&lse);
                expect_empty_rows(&o, &lse, (size_t)B * LQ, what);
            }
    dm_fwd_args none = {.q = null_tensor(DM_F16, 4, 0, LQ, H, D),
                        .k = null_tensor(DM_F16, 4, 0, 5, HKV, D),
                        .v = null_tensor(DM_F16, 4, 0, 5, HKV, D),
                        .o = null_tensor(DM_F16, 4, 0, LQ, H, D)};
    ck_assert_int_eq(dm_fwd(ctx, &none, NULL), DM_OK);
    none.q = none.o = null_tensor(DM_F16, 4, B, 0, H, D);
    none.k = none.v = null_tensor(DM_F16, 4, B, 5, HKV, D);
    none.k.data = none.v.data = q.dev.data; /* holds elements: must be a pointer */
    ck_assert_int_eq(dm_fwd(ctx, &none, NULL), DM_OK);
    ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
    gpu_twin_free(&q);
    gpu_twin_free(&o);
    gpu_twin_free(&lse);
}
END_TEST

/* Varlen total_k = 0 with k, v and a key-based mask and bias NULL: every query's row is empty,
 * on both paths. total_q = 0 with q, o and lse NULL does nothing. */
START_TEST(varlen_calls_with_empty_tensors_passed_as_null)
{
    dm_ctx *ctx = gpu_ctx();
    vl_setup t;
    vl_alloc(&t, gpu_fresh_seed());
    static const int32_t no_keys[NSEQ + 1] = {0, 0, 0, 0};
    memcpy(t.cu_k.host_base, no_keys, sizeof no_keys);
    gpu_twin_upload(&t.cu_k);
    for (int path = DM_PATH_TILED; path <= DM_PATH_DECODE; path++)
        for (int causal = 0; causal < 2; causal++) {
            char what[64];
            snprintf(what, sizeof what, "total_k = 0, path %d, causal %d", path, causal);
            dm_fwd_varlen_args a = vl_args(&t, t.cu_q.dev.data, t.cu_k.dev.data, path);
            a.k = a.v = null_tensor(DM_BF16, 3, 0, HKV, D, 0);
            a.mask = null_tensor(DM_BOOL, 2, 0, 1, 0, 0);
            a.bias = null_tensor(DM_BF16, 2, 0, HKV, 0, 0);
            a.max_seqlen_k = 0;
            a.causal = causal;
            poison(&t.o);
            poison(&t.lse);
            dm_status st = dm_fwd_varlen(ctx, &a, NULL);
            ck_assert_msg(st == DM_OK, "%s: %s", what, dm_errmsg(ctx));
            ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
            gpu_twin_download(&t.o);
            gpu_twin_download(&t.lse);
            expect_empty_rows(&t.o, &t.lse, TQ, what);
        }
    static const int32_t no_queries[NSEQ + 1] = {0, 0, 0, 0};
    memcpy(t.cu_q.host_base, no_queries, sizeof no_queries);
    memcpy(t.cu_k.host_base, cu_k_host, sizeof cu_k_host);
    gpu_twin_upload(&t.cu_q);
    gpu_twin_upload(&t.cu_k);
    dm_fwd_varlen_args a = vl_args(&t, t.cu_q.dev.data, t.cu_k.dev.data, DM_PATH_AUTO);
    a.q = a.o = null_tensor(DM_BF16, 3, 0, H, D, 0);
    a.lse = null_tensor(DM_F32, 2, H, 0, 0, 0);
    a.max_seqlen_q = 0;
    ck_assert_msg(dm_fwd_varlen(ctx, &a, NULL) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
    vl_free(&t);
}
END_TEST

#define TESTS(X) \
    X(cu_seqlens_in_device_managed_and_mapped_pinned_memory_give_one_result) \
    X(dense_calls_with_empty_tensors_passed_as_null) \
    X(varlen_calls_with_empty_tensors_passed_as_null)
DM_TEST_MAIN_SKIP("gpu_args", TESTS, dm_gpu_absent)
