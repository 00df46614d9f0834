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
#include "half.h"
#include "reference.h"

const dm_driver *gpu_drv(void)
{
    char why[256];
    return dm_driver_get(why, sizeof why);
}

int dm_gpu_absent(void)
{
    const dm_driver *d = gpu_drv();
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
uint64_t gpu_rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

double gpu_uniform(uint64_t *s)
{
    return (double)(gpu_rng_next(s) >> 11) / 4503599627370496.0 - 1.0;
}

size_t gpu_elem_bytes(dm_dtype t)
{
    return t == DM_F32 || t == DM_I32 ? 4 : t == DM_BOOL ? 1 : 2;
}

void gpu_put(void *buf, dm_dtype t, size_t i, float x)
{
    if (t == DM_F32)
        ((float *)buf)[i] = x;
    else if (t == DM_F16)
        ((uint16_t *)buf)[i] = dm_float_to_half(x);
    else
        ((uint16_t *)buf)[i] = dm_float_to_bf16(x);
}

float gpu_get(const void *buf, dm_dtype t, size_t i)
{
    if (t == DM_F32)
        return ((const float *)buf)[i];
    if (t == DM_F16)
        return dm_half_to_float(((const uint16_t *)buf)[i]);
    return dm_bf16_to_float(((const uint16_t *)buf)[i]);
}

void gpu_twin_alloc(gpu_twin *w, dm_dtype dtype, int rank, const int64_t *shape,
                    const int64_t *strides, size_t elems, int offset)
{
    gpu_ctx(); /* device memory needs the context current */
    memset(w, 0, sizeof *w);
    int64_t n = 1;
    w->host.dtype = dtype;
    w->host.rank = rank;
    for (int d = rank - 1; d >= 0; d--) {
        w->host.shape[d] = shape[d];
        w->host.strides[d] = strides ? strides[d] : n;
        n *= shape[d];
    }
    if (!strides)
        elems = (size_t)n;
    const size_t esize = gpu_elem_bytes(dtype);
    w->bytes = (elems + (size_t)offset) * esize;
    w->host_base = calloc(1, w->bytes);
    ck_assert_ptr_nonnull(w->host_base);
    ck_assert_int_eq(gpu_drv()->MemAlloc(&w->dev_base, w->bytes), CUDA_SUCCESS);
    w->dev = w->host;
    w->host.data = (char *)w->host_base + (size_t)offset * esize;
    w->dev.data = (void *)(uintptr_t)(w->dev_base + (size_t)offset * esize);
}

void gpu_twin_upload(gpu_twin *w)
{
    ck_assert_int_eq(gpu_drv()->MemcpyHtoD(w->dev_base, w->host_base, w->bytes), CUDA_SUCCESS);
}

void gpu_twin_download(gpu_twin *w)
{
    ck_assert_int_eq(gpu_drv()->MemcpyDtoH(w->host_base, w->dev_base, w->bytes), CUDA_SUCCESS);
}

void gpu_twin_free(gpu_twin *w)
{
    if (w->dev_base)
        gpu_drv()->MemFree(w->dev_base);
    free(w->host_base);
    memset(w, 0, sizeof *w);
}

void gpu_twin_poison(gpu_twin *w)
{
    ck_assert_int_eq(gpu_drv()->MemsetD8(w->dev_base, 0xff, w->bytes), CUDA_SUCCESS);
}

void gpu_case_rows_alloc(gpu_twin *w, const gpu_case *c, int L, int heads)
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
    gpu_twin_alloc(w, c->dtype, 4, shape, strides, (size_t)c->B * L * heads * pitch, 0);
}

size_t gpu_case_rows_index(const gpu_twin *w, int b, int l, int h, int d)
{
    return (size_t)(b * w->dev.strides[0] + l * w->dev.strides[1] + h * w->dev.strides[2] + d);
}

void gpu_fill_uniform(gpu_twin *w, uint64_t *s)
{
    size_t n = w->bytes / gpu_elem_bytes(w->dev.dtype);
    for (size_t i = 0; i < n; i++)
        gpu_put(w->host_base, w->dev.dtype, i, (float)gpu_uniform(s));
}

void gpu_case_mb_alloc(gpu_twin *w, const gpu_case *c, dm_layout layout, int batch, int heads,
                       dm_dtype dtype)
{
    int rows = layout == DM_LAYOUT_Q ? c->Lq : 1;
    int64_t shape[4] = {batch, heads, rows, c->Lk};
    int64_t strides[4] = {(int64_t)heads * rows * c->Lk, (int64_t)rows * c->Lk, c->Lk, 1};
    gpu_twin_alloc(w, dtype, 4, shape, strides, (size_t)batch * heads * rows * c->Lk, 0);
}

static bool key_forced_masked(const gpu_case *c, int j)
{
    return j >= c->masked_key_begin && j < c->masked_key_end;
}

void gpu_case_mask(gpu_twin *mask, const gpu_case *c, uint64_t *s)
{
    memset(mask, 0, sizeof *mask);
    if (c->mask == DM_LAYOUT_NONE)
        return;
    gpu_case_mb_alloc(mask, c, c->mask, c->mask_batch, c->mask_heads, DM_BOOL);
    unsigned char *m = mask->host_base;
    int rows = c->mask == DM_LAYOUT_Q ? c->Lq : 1;
    for (int b = 0; b < c->mask_batch; b++)
        for (int h = 0; h < c->mask_heads; h++)
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < c->Lk; j++) {
                    bool on = (gpu_uniform(s) + 1) / 2 < c->mask_density;
                    if (key_forced_masked(c, j) || j == c->hot_key - 1)
                        on = false;
                    if (c->masked_row_every && i % c->masked_row_every == 0 &&
                        c->mask == DM_LAYOUT_Q)
                        on = false;
                    /* any non-zero byte is true */
                    m[((size_t)(b * c->mask_heads + h) * rows + i) * c->Lk + j] =
                        on ? (unsigned char)(1 + (gpu_rng_next(s) % 255)) : 0;
                }
}

void gpu_case_bias(gpu_twin *bias, const gpu_case *c, uint64_t *s)
{
    memset(bias, 0, sizeof *bias);
    if (c->bias == DM_LAYOUT_NONE)
        return;
    gpu_case_mb_alloc(bias, c, c->bias, c->bias_batch, c->bias_heads,
                      c->bias_f32 ? DM_F32 : c->dtype);
    size_t n = bias->bytes / gpu_elem_bytes(bias->dev.dtype);
    for (size_t i = 0; i < n; i++) {
        int j = (int)(i % c->Lk);
        gpu_put(bias->host_base, bias->dev.dtype, i,
                key_forced_masked(c, j) ? NAN
                : j == c->hot_key - 1   ? 30.0f
                                        : (float)(2 * gpu_uniform(s)));
    }
}

void gpu_compare(const dm_tensor *got, const dm_tensor *ref, gpu_err *e)
{
    /* the shapes right-aligned into four dimensions, leading ones of size 1 */
    int64_t n[4] = {1, 1, 1, 1}, sg[4] = {0}, sr[4] = {0};
    const int pad = 4 - got->rank;
    for (int d = 0; d < got->rank; d++) {
        n[pad + d] = got->shape[d];
        sg[pad + d] = got->strides[d];
        sr[pad + d] = ref->strides[d];
    }
    double num = 0, den = 0;
    memset(e, 0, sizeof *e);
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t c = 0; c < n[2]; c++)
                for (int64_t d = 0; d < n[3]; d++) {
                    size_t ig = (size_t)(a * sg[0] + b * sg[1] + c * sg[2] + d * sg[3]);
                    size_t ir = (size_t)(a * sr[0] + b * sr[1] + c * sr[2] + d * sr[3]);
                    double g = gpu_get(got->data, got->dtype, ig),
                           r = gpu_get(ref->data, ref->dtype, ir);
                    if (!isfinite(g)) {
                        e->nan_count++;
                        continue;
                    }
                    num += (g - r) * (g - r);
                    den += r * r;
                    if (fabs(g - r) > e->max_abs)
                        e->max_abs = fabs(g - r);
                }
    e->rel = den > 0 ? sqrt(num / den) : sqrt(num);
}

dm_ctx *gpu_ctx(void)
{
    static dm_ctx *ctx; /* one per test process: kernels stay loaded across cases */
    if (!ctx) {
        /* The test allocates through the driver, as an application would: make device 0's
         * primary context current first; dm_ctx_create then shares it. */
        CUdevice dev;
        CUcontext cu;
        ck_assert_int_eq(gpu_drv()->DeviceGet(&dev, 0), CUDA_SUCCESS);
        ck_assert_int_eq(gpu_drv()->DevicePrimaryCtxRetain(&cu, dev), CUDA_SUCCESS);
        ck_assert_int_eq(gpu_drv()->CtxSetCurrent(cu), CUDA_SUCCESS);
        dm_status st = dm_ctx_create(&ctx, 0);
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
    return ctx;
}

dm_status gpu_run_case(const gpu_case *c, uint64_t seed, gpu_result *r, char *msg, size_t msg_bytes)
{
    dm_ctx *ctx = gpu_ctx();
    gpu_twin q, k, v, o, mask, bias, lse, o_ref, lse_ref;
    uint64_t s = seed ? seed : 1;
    dm_status st;
    memset(r, 0, sizeof *r);
    r->seed = seed;
    memset(&lse, 0, sizeof lse);
    memset(&lse_ref, 0, sizeof lse_ref);

    gpu_case_rows_alloc(&q, c, c->Lq, c->H);
    gpu_case_rows_alloc(&k, c, c->Lk, c->Hkv);
    gpu_case_rows_alloc(&v, c, c->Lk, c->Hkv);
    gpu_case_rows_alloc(&o, c, c->Lq, c->H);
    gpu_case_rows_alloc(&o_ref, c, c->Lq, c->H);
    gpu_fill_uniform(&q, &s);
    gpu_fill_uniform(&k, &s);
    gpu_fill_uniform(&v, &s);
    for (int b = 0; b < c->B; b++) /* keys that every mask row hides get NaN K and V */
        for (int j = 0; j < c->Lk; j++)
            if (key_forced_masked(c, j))
                for (int h = 0; h < c->Hkv; h++)
                    for (int d = 0; d < c->D; d++) {
                        gpu_put(k.host_base, c->dtype, gpu_case_rows_index(&k, b, j, h, d), NAN);
                        gpu_put(v.host_base, c->dtype, gpu_case_rows_index(&v, b, j, h, d), NAN);
                    }
    memset(o.host_base, 0xff, o.bytes); /* NaN in f16 and bf16: poison */
    memset(o_ref.host_base, 0xff, o_ref.bytes);

    gpu_case_mask(&mask, c, &s);
    gpu_case_bias(&bias, c, &s);
    if (!c->no_lse) {
        int64_t shape[3] = {c->B, c->H, c->Lq};
        int64_t strides[3] = {(int64_t)c->H * c->Lq, c->Lq, 1};
        gpu_twin_alloc(&lse, DM_F32, 3, shape, strides, (size_t)c->B * c->H * c->Lq, 0);
        gpu_twin_alloc(&lse_ref, DM_F32, 3, shape, strides, (size_t)c->B * c->H * c->Lq, 0);
        memset(lse.host_base, 0xff, lse.bytes);
    }
    gpu_twin_upload(&q);
    gpu_twin_upload(&k);
    gpu_twin_upload(&v);
    gpu_twin_upload(&o);
    if (mask.dev_base)
        gpu_twin_upload(&mask);
    if (bias.dev_base)
        gpu_twin_upload(&bias);
    if (lse.dev_base)
        gpu_twin_upload(&lse);

    dm_fwd_args a = {.q = q.dev,
                     .k = k.dev,
                     .v = v.dev,
                     .o = o.dev,
                     .scale = c->scale,
                     .softcap = c->softcap,
                     .causal = c->causal,
                     .path = c->path,
                     .num_splits = c->num_splits};
    if (mask.dev_base)
        a.mask = mask.dev;
    if (bias.dev_base)
        a.bias = bias.dev;
    if (lse.dev_base)
        a.lse = lse.dev;
    st = dm_fwd(ctx, &a, NULL);
    if (st == DM_OK) {
        CUresult cr = gpu_drv()->CtxSynchronize();
        if (cr != CUDA_SUCCESS) {
            snprintf(msg, msg_bytes, "kernel failed: CUresult %d", (int)cr);
            st = DM_ERR_CUDA;
        }
    } else {
        snprintf(msg, msg_bytes, "dm_fwd: %s", dm_errmsg(ctx));
    }
    if (st == DM_OK) {
        gpu_twin_download(&o);
        if (lse.dev_base)
            gpu_twin_download(&lse);

        dm_fwd_args h = a;
        h.q = q.host;
        h.k = k.host;
        h.v = v.host;
        h.o = o_ref.host;
        if (mask.dev_base)
            h.mask = mask.host;
        if (bias.dev_base)
            h.bias = bias.host;
        if (lse_ref.dev_base)
            h.lse = lse_ref.host;
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
                    if (lse.dev_base) {
                        size_t li = ((size_t)b * c->H + hh) * c->Lq + i;
                        float lr = ((float *)lse_ref.host_base)[li],
                              lg = ((float *)lse.host_base)[li];
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
                        size_t ix = gpu_case_rows_index(&o, b, i, hh, d);
                        float g = gpu_get(o.host_base, c->dtype, ix),
                              e = gpu_get(o_ref.host_base, c->dtype, ix);
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
                            uint16_t bits =
                                ((uint16_t *)o.host_base)[gpu_case_rows_index(&o, b, i, hh, d)];
                            if (bits != 0xffff)
                                r->guard_writes++;
                        }
                }
        r->o_rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
    }
    gpu_twin_free(&q);
    gpu_twin_free(&k);
    gpu_twin_free(&v);
    gpu_twin_free(&o);
    gpu_twin_free(&o_ref);
    gpu_twin_free(&mask);
    gpu_twin_free(&bias);
    gpu_twin_free(&lse);
    gpu_twin_free(&lse_ref);
    return st;
}

void gpu_case_describe(const gpu_case *c, char *buf, size_t n)
{
    static const char *lay[] = {"none", "q", "k"};
    snprintf(buf, n,
             "B=%d H=%d Hkv=%d Lq=%d Lk=%d D=%d %s mask=%s(%dx%d, p=%.2f) bias=%s(%dx%d%s) "
             "causal=%d softcap=%g scale=%g strided=%d lse=%d masked_keys=[%d,%d) "
             "masked_row_every=%d hot_key=%d path=%d num_splits=%d",
             c->B, c->H, c->Hkv, c->Lq, c->Lk, c->D, dm_dtype_name(c->dtype), lay[c->mask],
             c->mask_batch, c->mask_heads, c->mask_density, lay[c->bias], c->bias_batch,
             c->bias_heads, c->bias_f32 ? ", f32" : "", c->causal, c->softcap, c->scale,
             c->strided, !c->no_lse, c->masked_key_begin, c->masked_key_end, c->masked_row_every,
             c->hot_key - 1, c->path, c->num_splits);
}

void gpu_check_case(const gpu_case *c, const char *label)
{
    gpu_result r;
    char msg[1024] = "", what[512];
    uint64_t seed = gpu_fresh_seed();
    dm_status st = gpu_run_case(c, seed, &r, msg, sizeof msg);
    gpu_case_describe(c, what, sizeof what);
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
