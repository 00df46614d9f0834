/* gpu_util.c: one forward case on the GPU and on the CPU reference (gpu_util.h). The host holds
 * byte-for-byte copies of the device tensors, so the reference reads exactly what the kernel
 * reads, through the same strides. */
#include "gpu_util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"
#include "fwd_plan.h"

static const dm_driver *drv(void)
{
    char why[256];
    return dm_driver_get(why, sizeof why);
}

int dm_gpu_absent(void)
{
    const dm_driver *d = drv();
    int n = 0;
    if (!d || d->DeviceGetCount(&n) != CUDA_SUCCESS || n == 0) {
        fprintf(stderr, "no CUDA device: GPU tests skipped\n");
        return 1;
    }
    return 0;
}

uint64_t gpu_fresh_seed(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000007ull ^ (uint64_t)t.tv_nsec;
}

/* xorshift64*: small, seedable, the same on every machine. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double rng_uniform(uint64_t *s) /* [-1, 1) */
{
    return (double)(rng_next(s) >> 11) / 4503599627370496.0 - 1.0;
}

static size_t elem_bytes(dm_dtype t)
{
    return t == DM_F32 ? 4 : t == DM_BOOL ? 1 : 2;
}

static void put(void *buf, dm_dtype t, size_t i, float x)
{
    if (t == DM_F32)
        ((float *)buf)[i] = x;
    else if (t == DM_F16)
        ((uint16_t *)buf)[i] = dm_float_to_half(x);
    else
        ((uint16_t *)buf)[i] = dm_float_to_bf16(x);
}

static float get(const void *buf, dm_dtype t, size_t i)
{
    if (t == DM_F32)
        return ((const float *)buf)[i];
    if (t == DM_F16)
        return dm_half_to_float(((const uint16_t *)buf)[i]);
    return dm_bf16_to_float(((const uint16_t *)buf)[i]);
}

/* A tensor living twice: host copy and device copy of the same bytes. */
typedef struct twin {
    dm_tensor t;   /* device descriptor */
    void *host;
    CUdeviceptr dev;
    size_t bytes;
} twin;

static void twin_alloc(twin *w, dm_dtype dtype, int rank, const int64_t *shape,
                       const int64_t *strides, size_t elems)
{
    memset(w, 0, sizeof *w);
    w->t.dtype = dtype;
    w->t.rank = rank;
    for (int i = 0; i < rank; i++) {
        w->t.shape[i] = shape[i];
        w->t.strides[i] = strides[i];
    }
    w->bytes = elems * elem_bytes(dtype);
    w->host = calloc(1, w->bytes);
    ck_assert_ptr_nonnull(w->host);
    ck_assert_int_eq(drv()->MemAlloc(&w->dev, w->bytes), CUDA_SUCCESS);
    w->t.data = (void *)(uintptr_t)w->dev;
}

static void twin_upload(twin *w)
{
    ck_assert_int_eq(drv()->MemcpyHtoD(w->dev, w->host, w->bytes), CUDA_SUCCESS);
}

static void twin_free(twin *w)
{
    if (w->dev)
        drv()->MemFree(w->dev);
    free(w->host);
    memset(w, 0, sizeof *w);
}

static dm_tensor host_view(const twin *w)
{
    dm_tensor t = w->t;
    t.data = w->host;
    return t;
}

/* q/k/v/o as (B, L, Hx, D): packed, or stored (B, Hx, L, D + 8) when strided (pad columns are
 * never touched by a correct kernel). */
static void qkvo_alloc(twin *w, const gpu_case *c, int L, int heads)
{
    int64_t shape[4] = {c->B, L, heads, c->D}, strides[4];
    int64_t pitch = c->strided ? c->D + 8 : c->D;
    if (c->strided) {
        strides[3] = 1;
        strides[1] = pitch;
        strides[2] = (int64_t)L * pitch;
        strides[0] = (int64_t)heads * L * pitch;
    } else {
        strides[3] = 1;
        strides[2] = c->D;
        strides[1] = (int64_t)heads * c->D;
        strides[0] = (int64_t)L * heads * c->D;
    }
    twin_alloc(w, c->dtype, 4, shape, strides, (size_t)c->B * L * heads * pitch);
}

static size_t qkvo_index(const gpu_case *c, const twin *w, int b, int l, int h, int d)
{
    return (size_t)(b * w->t.strides[0] + l * w->t.strides[1] + h * w->t.strides[2] + d);
}

static void fill_random(twin *w, uint64_t *s)
{
    size_t n = w->bytes / elem_bytes(w->t.dtype);
    for (size_t i = 0; i < n; i++)
        put(w->host, w->t.dtype, i, (float)rng_uniform(s));
}

/* mask or bias: ({B|1}, {H|Hkv|1}, {Lq|1}, Lk), packed. */
static void mb_alloc(twin *w, const gpu_case *c, dm_layout layout, int batch, int heads,
                     dm_dtype dtype)
{
    int rows = layout == DM_LAYOUT_Q ? c->Lq : 1;
    int64_t shape[4] = {batch, heads, rows, c->Lk};
    int64_t strides[4] = {(int64_t)heads * rows * c->Lk, (int64_t)rows * c->Lk, c->Lk, 1};
    twin_alloc(w, dtype, 4, shape, strides, (size_t)batch * heads * rows * c->Lk);
}

static bool key_forced_masked(const gpu_case *c, int j)
{
    return j >= c->masked_key_begin && j < c->masked_key_end;
}

dm_status gpu_run_case(const gpu_case *c, uint64_t seed, gpu_result *r, char *msg, size_t msg_bytes)
{
    static dm_ctx *ctx; /* one per test process: kernels stay loaded across cases */
    twin q, k, v, o, mask, bias, lse, o_ref, lse_ref;
    uint64_t s = seed ? seed : 1;
    dm_status st;
    memset(r, 0, sizeof *r);
    r->seed = seed;
    memset(&mask, 0, sizeof mask);
    memset(&bias, 0, sizeof bias);
    memset(&lse, 0, sizeof lse);
    memset(&lse_ref, 0, sizeof lse_ref);

    if (!ctx) {
        /* The test allocates through the driver, as an application would: make device 0's
         * primary context current first; dm_ctx_create then shares it. */
        CUdevice dev;
        CUcontext cu;
        ck_assert_int_eq(drv()->DeviceGet(&dev, 0), CUDA_SUCCESS);
        ck_assert_int_eq(drv()->DevicePrimaryCtxRetain(&cu, dev), CUDA_SUCCESS);
        ck_assert_int_eq(drv()->CtxSetCurrent(cu), CUDA_SUCCESS);
        st = dm_ctx_create(&ctx, 0);
        ck_assert_msg(st == DM_OK, "dm_ctx_create: %s", dm_errmsg(ctx));
        /* DMATTN_TEST_ARCH runs the suite on another engine of the same device (sm90 on an
         * H100: the mma.sync kernels instead of wgmma) */
        const char *arch = getenv("DMATTN_TEST_ARCH");
        if (arch && *arch) {
            st = dm_ctx_set_arch(ctx, arch);
            ck_assert_msg(st == DM_OK, "dm_ctx_set_arch(%s): %s", arch, dm_errmsg(ctx));
        }
        fprintf(stderr, "gpu tests run arch %s\n", dm_ctx_arch(ctx));
    }

    qkvo_alloc(&q, c, c->Lq, c->H);
    qkvo_alloc(&k, c, c->Lk, c->Hkv);
    qkvo_alloc(&v, c, c->Lk, c->Hkv);
    qkvo_alloc(&o, c, c->Lq, c->H);
    qkvo_alloc(&o_ref, c, c->Lq, c->H);
    fill_random(&q, &s);
    fill_random(&k, &s);
    fill_random(&v, &s);
    for (int b = 0; b < c->B; b++) /* keys that every mask row hides get NaN K and V */
        for (int j = 0; j < c->Lk; j++)
            if (key_forced_masked(c, j))
                for (int h = 0; h < c->Hkv; h++)
                    for (int d = 0; d < c->D; d++) {
                        put(k.host, c->dtype, qkvo_index(c, &k, b, j, h, d), NAN);
                        put(v.host, c->dtype, qkvo_index(c, &v, b, j, h, d), NAN);
                    }
    memset(o.host, 0xff, o.bytes); /* NaN in f16 and bf16: poison */
    memset(o_ref.host, 0xff, o_ref.bytes);

    if (c->mask != DM_LAYOUT_NONE) {
        mb_alloc(&mask, c, c->mask, c->mask_batch, c->mask_heads, DM_BOOL);
        unsigned char *m = mask.host;
        int rows = c->mask == DM_LAYOUT_Q ? c->Lq : 1;
        for (int b = 0; b < c->mask_batch; b++)
            for (int h = 0; h < c->mask_heads; h++)
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < c->Lk; j++) {
                        bool on = (rng_uniform(&s) + 1) / 2 < c->mask_density;
                        if (key_forced_masked(c, j) || j == c->hot_key - 1)
                            on = false;
                        if (c->masked_row_every && i % c->masked_row_every == 0 &&
                            c->mask == DM_LAYOUT_Q)
                            on = false;
                        /* any non-zero byte is true */
                        m[((size_t)(b * c->mask_heads + h) * rows + i) * c->Lk + j] =
                            on ? (unsigned char)(1 + (rng_next(&s) % 255)) : 0;
                    }
    }
    if (c->bias != DM_LAYOUT_NONE) {
        mb_alloc(&bias, c, c->bias, c->bias_batch, c->bias_heads,
                 c->bias_f32 ? DM_F32 : c->dtype);
        size_t n = bias.bytes / elem_bytes(bias.t.dtype);
        for (size_t i = 0; i < n; i++) {
            int j = (int)(i % c->Lk);
            put(bias.host, bias.t.dtype, i, key_forced_masked(c, j) ? NAN
                                            : j == c->hot_key - 1 ? 30.0f
                                                                  : (float)(2 * rng_uniform(&s)));
        }
    }
    if (!c->no_lse) {
        int64_t shape[3] = {c->B, c->H, c->Lq};
        int64_t strides[3] = {(int64_t)c->H * c->Lq, c->Lq, 1};
        twin_alloc(&lse, DM_F32, 3, shape, strides, (size_t)c->B * c->H * c->Lq);
        twin_alloc(&lse_ref, DM_F32, 3, shape, strides, (size_t)c->B * c->H * c->Lq);
        memset(lse.host, 0xff, lse.bytes);
    }
    twin_upload(&q);
    twin_upload(&k);
    twin_upload(&v);
    twin_upload(&o);
    if (mask.dev)
        twin_upload(&mask);
    if (bias.dev)
        twin_upload(&bias);
    if (lse.dev)
        twin_upload(&lse);

    dm_fwd_args a = {.q = q.t, .k = k.t, .v = v.t, .o = o.t, .scale = c->scale,
                     .softcap = c->softcap, .causal = c->causal};
    if (mask.dev)
        a.mask = mask.t;
    if (bias.dev)
        a.bias = bias.t;
    if (lse.dev)
        a.lse = lse.t;
    st = dm_fwd(ctx, &a, NULL);
    if (st == DM_OK) {
        CUresult cr = drv()->CtxSynchronize();
        if (cr != CUDA_SUCCESS) {
            snprintf(msg, msg_bytes, "kernel failed: CUresult %d", (int)cr);
            st = DM_ERR_CUDA;
        }
    } else {
        snprintf(msg, msg_bytes, "dm_fwd: %s", dm_errmsg(ctx));
    }
    if (st == DM_OK) {
        drv()->MemcpyDtoH(o.host, o.dev, o.bytes);
        if (lse.dev)
            drv()->MemcpyDtoH(lse.host, lse.dev, lse.bytes);

        dm_fwd_args h = a;
        h.q = host_view(&q);
        h.k = host_view(&k);
        h.v = host_view(&v);
        h.o = host_view(&o_ref);
        if (mask.dev)
            h.mask = host_view(&mask);
        if (bias.dev)
            h.bias = host_view(&bias);
        if (lse_ref.dev)
            h.lse = host_view(&lse_ref);
        dm_ctx *ref_ctx = NULL;
        dm_ctx_create(&ref_ctx, DM_NO_DEVICE);
        st = dm_ref_fwd(ref_ctx, &h);
        if (st != DM_OK)
            snprintf(msg, msg_bytes, "dm_ref_fwd: %s", dm_errmsg(ref_ctx));
        dm_ctx_destroy(ref_ctx);
    }
    if (st == DM_OK) {
        double num = 0, den = 0;
        for (int b = 0; b < c->B; b++)
            for (int i = 0; i < c->Lq; i++)
                for (int hh = 0; hh < c->H; hh++) {
                    bool empty = false;
                    if (lse.dev) {
                        size_t li = ((size_t)b * c->H + hh) * c->Lq + i;
                        float lr = ((float *)lse_ref.host)[li], lg = ((float *)lse.host)[li];
                        empty = isinf(lr) && lr > 0;
                        if (empty && !(isinf(lg) && lg > 0))
                            r->empty_row_errors++;
                        else if (!empty) {
                            if (!isfinite(lg))
                                r->nan_count++;
                            else if (fabs(lg - lr) > r->lse_max_abs_err)
                                r->lse_max_abs_err = fabs(lg - lr);
                        }
                    }
                    for (int d = 0; d < c->D; d++) {
                        size_t ix = qkvo_index(c, &o, b, i, hh, d);
                        float g = get(o.host, c->dtype, ix), e = get(o_ref.host, c->dtype, ix);
                        if (!isfinite(g)) {
                            r->nan_count++;
                            continue;
                        }
                        if (empty && g != 0.f)
                            r->empty_row_errors++;
                        num += (double)(g - e) * (g - e);
                        den += (double)e * e;
                        if (fabs(g - e) > r->o_max_abs_err)
                            r->o_max_abs_err = fabs(g - e);
                    }
                    if (c->strided) /* the pad columns stay poisoned */
                        for (int d = c->D; d < c->D + 8; d++) {
                            uint16_t bits = ((uint16_t *)o.host)[qkvo_index(c, &o, b, i, hh, d)];
                            if (bits != 0xffff)
                                r->guard_writes++;
                        }
                }
        r->o_rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
    }
    twin_free(&q);
    twin_free(&k);
    twin_free(&v);
    twin_free(&o);
    twin_free(&o_ref);
    twin_free(&mask);
    twin_free(&bias);
    twin_free(&lse);
    twin_free(&lse_ref);
    return st;
}

static void describe(const gpu_case *c, char *buf, size_t n)
{
    static const char *lay[] = {"none", "q", "k"};
    snprintf(buf, n,
             "B=%d H=%d Hkv=%d Lq=%d Lk=%d D=%d %s mask=%s(%dx%d, p=%.2f) bias=%s(%dx%d%s) "
             "causal=%d softcap=%g scale=%g strided=%d lse=%d masked_keys=[%d,%d) "
             "masked_row_every=%d hot_key=%d",
             c->B, c->H, c->Hkv, c->Lq, c->Lk, c->D, dm_dtype_name(c->dtype), lay[c->mask],
             c->mask_batch, c->mask_heads, c->mask_density, lay[c->bias], c->bias_batch,
             c->bias_heads, c->bias_f32 ? ", f32" : "", c->causal, c->softcap, c->scale,
             c->strided, !c->no_lse, c->masked_key_begin, c->masked_key_end, c->masked_row_every,
             c->hot_key - 1);
}

void gpu_check_case(const gpu_case *c, const char *label)
{
    gpu_result r;
    char msg[1024] = "", what[512];
    uint64_t seed = gpu_fresh_seed();
    dm_status st = gpu_run_case(c, seed, &r, msg, sizeof msg);
    describe(c, what, sizeof what);
    /* bf16 keeps 8 significant bits, f16 11: the output's own rounding dominates the error. */
    double tol = c->dtype == DM_BF16 ? 1e-2 : 2e-3;
    bool ok = st == DM_OK && r.nan_count == 0 && r.empty_row_errors == 0 && r.guard_writes == 0 &&
              r.o_rel_err < tol && r.lse_max_abs_err < 2e-3;
    fprintf(stderr, "%-34s %s rel=%.2e max_abs=%.2e lse=%.2e nan=%ld empty_err=%ld guard=%ld\n",
            label, ok ? "ok  " : "FAIL", r.o_rel_err, r.o_max_abs_err, r.lse_max_abs_err,
            r.nan_count, r.empty_row_errors, r.guard_writes);
    ck_assert_msg(ok,
                  "%s: %s [seed %llu] status=%s %s rel_err=%.3e (tol %.0e) max_abs=%.3e "
                  "lse_err=%.3e nan=%ld empty_row_errors=%ld guard_writes=%ld",
                  label, what, (unsigned long long)seed, dm_status_name(st), msg, r.o_rel_err, tol,
                  r.o_max_abs_err, r.lse_max_abs_err, r.nan_count, r.empty_row_errors,
                  r.guard_writes);
}
