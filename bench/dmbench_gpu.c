/* dmbench_gpu.c: dmbench's device side, shared by its modes: the CUDA context, stream and
 * events, random inputs, input sets rotated past L2, timing with CUDA events and the copy
 * bandwidth. The CUDA driver API (through g->drv, cuda_loader.h) and dmattn.h only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dmbench.h"

/* ---- random inputs --------------------------------------------------------------------------- */

uint64_t mix64(uint64_t x) /* splitmix64's finalizer */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* A hash of four words; each step adds a constant, as mix64(0) = 0. */
uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    return mix64(mix64(mix64(mix64(a + k) ^ (b + 2 * k)) ^ (c + 3 * k)) ^ (d + 5 * k));
}

/* Uniform in [0, 1) from a 64-bit hash. */
double unit_of(uint64_t h) { return (double)(h >> 11) * 0x1.0p-53; }

/* Round to nearest even; NaN stays NaN (quiet), overflow goes to infinity. */
static uint16_t float_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return sign | 0x7e00; /* NaN */
    if (ax >= 0x477ff000u)    /* 65520 and up round to infinity (65504 is the largest finite) */
        return sign | 0x7c00;
    if (ax < 0x38800000u) /* below 2^-14: subnormal; x * 2^24 is exact, rint rounds to even */
        return sign | (uint16_t)lrintf(fabsf(f) * 16777216.0f);
    /* Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to even; a carry
     * into the exponent is the right result. */
    ax += 0xc8000fffu + ((ax >> 13) & 1);
    return sign | (uint16_t)(ax >> 13);
}

/* ---- the device ------------------------------------------------------------------------------ */

bool cu_ok(gpu *g, CUresult r, const char *what)
{
    g->last = r;
    if (r == CUDA_SUCCESS)
        return true;
    const char *name = NULL;
    if (g->drv->GetErrorName(r, &name) != CUDA_SUCCESS || !name)
        name = "unknown error";
    snprintf(g->err, sizeof g->err, "%s failed: %s (%d)", what, name, (int)r);
    return false;
}

bool host_alloc(gpu *g, host_buf *b, size_t bytes)
{
    if (b->p)
        return true;
    if (g->drv->MemAllocHost(&b->p, bytes) == CUDA_SUCCESS) {
        b->pinned = true;
        return true;
    }
    b->p = malloc(bytes); /* pageable: slower copies, same results */
    b->pinned = false;
    if (!b->p)
        snprintf(g->err, sizeof g->err, "out of host memory (%zu bytes)", bytes);
    return b->p != NULL;
}

void host_free(gpu *g, host_buf *b)
{
    if (b->p && b->pinned)
        g->drv->MemFreeHost(b->p);
    else
        free(b->p);
    b->p = NULL;
}

/* Uniform values in [-1, 1) in dtype t, HOST_BUF_BYTES of them, made once per dtype. */
static const void *random_values(gpu *g, dm_dtype t)
{
    host_buf *b = t == DM_BF16 ? &g->vals_bf16 : t == DM_F16 ? &g->vals_f16 : &g->vals_f32;
    if (b->p)
        return b->p;
    if (!host_alloc(g, b, HOST_BUF_BYTES))
        return NULL;
    uint64_t state = mix64(g->seed ^ (0x51ed27ull * (uint64_t)t));
    size_t n = HOST_BUF_BYTES / (size_t)dtype_size(t);
    for (size_t i = 0; i < n; i++) {
        float x = (float)(unit_of(mix64(state += 0x9e3779b97f4a7c15ull)) * 2 - 1);
        if (t == DM_F32)
            ((float *)b->p)[i] = x;
        else
            ((uint16_t *)b->p)[i] = t == DM_BF16 ? float_to_bf16(x) : float_to_half(x);
    }
    return b->p;
}

/* Fills `bytes` at dst with copies of src: one host copy, then device copies doubling the
 * filled part (a 17 GB bias takes ~10 copies, not 270 host transfers). */
bool fill_repeat(gpu *g, CUdeviceptr dst, uint64_t bytes, const void *src,
                        uint64_t src_bytes)
{
    uint64_t first = bytes < src_bytes ? bytes : src_bytes;
    if (!cu_ok(g, g->drv->MemcpyHtoD(dst, src, first), "cuMemcpyHtoD"))
        return false;
    for (uint64_t done = first; done < bytes;) {
        uint64_t n = done < bytes - done ? done : bytes - done;
        if (!cu_ok(g, g->drv->MemcpyDtoD(dst + done, dst, n), "cuMemcpyDtoD"))
            return false;
        done += n;
    }
    return true;
}

/* Random values of dtype t; `salt` picks where in the host buffer the copy starts, so that q,
 * k, v and bias differ. Offsets stay 16-byte aligned and leave at least half the buffer. */
bool fill_mask_random(gpu *g, CUdeviceptr dst, uint64_t bytes, double density)
{
    /* One buffer of independent entries, repeated: the period (64 MiB) is far longer than any
     * tile, so each tile sees fresh entries. */
    host_buf *b = &g->mask_random;
    if (!b->p || g->mask_random_density != density) {
        if (!host_alloc(g, b, HOST_BUF_BYTES))
            return false;
        uint32_t threshold = (uint32_t)llround(density * 65536.0);
        uint64_t state = mix64(g->seed ^ 0x6d61736bull);
        unsigned char *m = b->p;
        for (size_t i = 0; i < HOST_BUF_BYTES; i += 4) {
            uint64_t r = mix64(state += 0x9e3779b97f4a7c15ull);
            for (int k = 0; k < 4; k++)
                m[i + k] = ((r >> (16 * k)) & 0xffff) < threshold;
        }
        g->mask_random_density = density;
    }
    uint64_t off = mix64(g->seed) % (HOST_BUF_BYTES / 2);
    return fill_repeat(g, dst, bytes, (unsigned char *)b->p + off, HOST_BUF_BYTES - off);
}

bool fill_values(gpu *g, CUdeviceptr dst, uint64_t bytes, dm_dtype t, uint64_t salt)
{
    const unsigned char *src = random_values(g, t);
    if (!src)
        return false;
    uint64_t off = (mix64(salt + 1) % (HOST_BUF_BYTES / 2)) & ~(uint64_t)15;
    return fill_repeat(g, dst, bytes, src + off, HOST_BUF_BYTES - off);
}

bool gpu_open(gpu *g, int64_t device, int64_t iters, uint64_t seed, bool verbose)
{
    int l2 = 0;
    memset(g, 0, sizeof *g);
    g->seed = seed;
    g->mask_random_density = -1;
    /* The driver is opened here, after the options are parsed: --help, --version, --dry-run
     * and usage errors never need it. No driver is its own message, not a device's failure. */
    if (!(g->drv = bench_driver_open(g->err, sizeof g->err))) {
        fail("%s", g->err);
        return false;
    }
    if (!cu_ok(g, g->drv->Init(0), "cuInit") ||
        !cu_ok(g, g->drv->DeviceGet(&g->dev, (int)device), "cuDeviceGet") ||
        !cu_ok(g, g->drv->DeviceGetName(g->name, sizeof g->name, g->dev), "cuDeviceGetName") ||
        !cu_ok(g, g->drv->DeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, g->dev),
               "cuDeviceGetAttribute (L2 size)"))
        goto bad;
    /* The device's primary context, current on this thread: dm_ctx_create shares it, as it
     * would share PyTorch's. */
    if (!cu_ok(g, g->drv->DevicePrimaryCtxRetain(&g->cu, g->dev), "cuDevicePrimaryCtxRetain"))
        goto bad;
    g->retained = true;
    if (!cu_ok(g, g->drv->CtxSetCurrent(g->cu), "cuCtxSetCurrent") ||
        !cu_ok(g, g->drv->StreamCreate(&g->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate"))
        goto bad;
    g->l2_bytes = l2;
    g->n_events = (int)iters;
    g->ev_start = calloc((size_t)g->n_events, sizeof *g->ev_start);
    g->ev_stop = calloc((size_t)g->n_events, sizeof *g->ev_stop);
    if (!g->ev_start || !g->ev_stop) {
        snprintf(g->err, sizeof g->err, "out of host memory");
        goto bad;
    }
    for (int i = 0; i < g->n_events; i++)
        if (!cu_ok(g, g->drv->EventCreate(&g->ev_start[i], CU_EVENT_DEFAULT), "cuEventCreate") ||
            !cu_ok(g, g->drv->EventCreate(&g->ev_stop[i], CU_EVENT_DEFAULT), "cuEventCreate"))
            goto bad;
    if (dm_ctx_create(&g->ctx, (int)device) != DM_OK) {
        snprintf(g->err, sizeof g->err, "%s", dm_errmsg(g->ctx));
        goto bad;
    }
    dm_ctx_set_verbosity(g->ctx, verbose ? 2 : 1);
    return true;
bad:
    fail("cannot use CUDA device %lld: %s", (long long)device, g->err);
    return false;
}

void gpu_close(gpu *g)
{
    dm_ctx_destroy(g->ctx);
    for (int i = 0; i < g->n_events; i++) {
        if (g->ev_start && g->ev_start[i])
            g->drv->EventDestroy(g->ev_start[i]);
        if (g->ev_stop && g->ev_stop[i])
            g->drv->EventDestroy(g->ev_stop[i]);
    }
    free(g->ev_start);
    free(g->ev_stop);
    host_free(g, &g->vals_bf16);
    host_free(g, &g->vals_f16);
    host_free(g, &g->vals_f32);
    host_free(g, &g->mask_random);
    host_free(g, &g->stage);
    if (g->stream)
        g->drv->StreamDestroy(g->stream);
    if (g->retained)
        g->drv->DevicePrimaryCtxRelease(g->dev);
}

/* ---- input sets, timing ---------------------------------------------------------------------- */

static double round_up(double bytes)
{
    return ceil(bytes / (double)ALLOC_ROUND_BYTES) * (double)ALLOC_ROUND_BYTES;
}

void free_sets(gpu *g, buf_set *sets, int n_sets)
{
    for (int i = 0; i < n_sets; i++)
        for (int j = 0; j < MAX_BUFS; j++)
            if (sets[i].p[j]) {
                g->drv->MemFree(sets[i].p[j]);
                sets[i].p[j] = 0;
            }
}

/* One set; false with g->err set (g->last = CUDA_ERROR_OUT_OF_MEMORY when it did not fit).
 * Frees what it took on failure. */
static bool alloc_set(gpu *g, const double *bytes, int n, buf_set *s)
{
    memset(s, 0, sizeof *s);
    for (int j = 0; j < n; j++)
        if (bytes[j] > 0 && !cu_ok(g, g->drv->MemAlloc(&s->p[j], (size_t)bytes[j]), "cuMemAlloc")) {
            free_sets(g, s, 1);
            return false;
        }
    return true;
}

int alloc_sets(gpu *g, const double *bytes, int n, buf_set *sets, const char *label, bool *alive)
{
    size_t free_bytes = 0, total_bytes = 0;
    double set_bytes = 0, data_bytes = 0;
    for (int j = 0; j < n; j++) {
        data_bytes += bytes[j];
        set_bytes += bytes[j] > 0 ? round_up(bytes[j]) : 0;
    }
    memset(sets, 0, MAX_SETS * sizeof *sets);
    *alive = true;

    int want = 1;
    if (data_bytes < (double)(L2_FACTOR * g->l2_bytes)) {
        want = (int)floor((double)(L2_FACTOR * g->l2_bytes) / data_bytes) + 1;
        if (want > MAX_SETS)
            want = MAX_SETS;
    }
    if (!cu_ok(g, g->drv->MemGetInfo(&free_bytes, &total_bytes), "cuMemGetInfo")) {
        fail("%s: %s", label, g->err);
        *alive = false;
        return -1;
    }
    double usable = (double)free_bytes - (double)HEADROOM_BYTES;
    if (set_bytes > usable) {
        fail("skipped %s: needs %.2f GiB (+ %.1f GiB headroom), %.2f GiB free", label,
             set_bytes / 1073741824.0, (double)HEADROOM_BYTES / 1073741824.0,
             (double)free_bytes / 1073741824.0);
        return 0;
    }
    if (want * set_bytes > usable)
        want = (int)(usable / set_bytes);

    int n_sets = 0;
    for (; n_sets < want; n_sets++) {
        if (alloc_set(g, bytes, n, &sets[n_sets]))
            continue;
        if (g->last != CUDA_ERROR_OUT_OF_MEMORY) {
            fail("%s: %s", label, g->err);
            free_sets(g, sets, n_sets);
            return -1;
        }
        if (n_sets == 0) {
            fail("skipped %s: %s (%.2f GiB needed, %.2f GiB were free)", label, g->err,
                 set_bytes / 1073741824.0, (double)free_bytes / 1073741824.0);
            return 0;
        }
        break; /* fewer sets than wanted: still a valid measurement */
    }
    return n_sets;
}

/* Waits for what is queued (so that its buffers may be freed); false when that fails. */
static bool drain(gpu *g, const char *label)
{
    if (cu_ok(g, g->drv->StreamSynchronize(g->stream), "cuStreamSynchronize"))
        return true;
    fail("%s: %s", label, g->err);
    return false;
}

bool time_runs(gpu *g, int64_t warmup, int64_t iters, queue_fn queue, void *ctx,
               const char *label, result *r)
{
    int runs = (int)warmup + 1, n = (int)iters;
    double *ms = malloc((size_t)n * sizeof *ms);
    bool alive = true;

    r->out = OUT_FAILED;
    if (!ms) {
        fail("%s: out of host memory", label);
        return true;
    }
    /* The first call loads (or JIT-compiles) the kernel: host time, never timed. */
    for (int i = 0; i < runs; i++)
        if (!queue(ctx, i))
            goto sync;
    for (int i = 0; i < n; i++) {
        if (!cu_ok(g, g->drv->EventRecord(g->ev_start[i], g->stream), "cuEventRecord")) {
            fail("%s: %s", label, g->err);
            goto sync;
        }
        if (!queue(ctx, runs + i))
            goto sync;
        if (!cu_ok(g, g->drv->EventRecord(g->ev_stop[i], g->stream), "cuEventRecord")) {
            fail("%s: %s", label, g->err);
            goto sync;
        }
    }
    if (!drain(g, label)) {
        alive = false;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        float t = 0;
        if (!cu_ok(g, g->drv->EventElapsedTime(&t, g->ev_start[i], g->ev_stop[i]),
                   "cuEventElapsedTime")) {
            fail("%s: %s", label, g->err);
            goto out;
        }
        ms[i] = t;
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    r->ms_min = ms[0];
    r->ms_median = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
    r->iters = n;
    r->out = OUT_OK;
    goto out;
sync:
    /* Calls already queued must finish before their buffers are freed. */
    alive = drain(g, label);
out:
    free(ms);
    return alive;
}

typedef struct copy_job {
    gpu *g;
    CUdeviceptr src, dst;
    uint64_t bytes;
} copy_job;

static bool queue_copy(void *ctx, int run)
{
    copy_job *j = ctx;
    (void)run;
    if (cu_ok(j->g, j->g->drv->MemcpyDtoDAsync(j->dst, j->src, j->bytes, j->g->stream),
              "cuMemcpyDtoDAsync"))
        return true;
    fail("copy bandwidth: %s", j->g->err);
    return false;
}

double copy_bandwidth(gpu *g, uint64_t bytes, int64_t iters)
{
    copy_job j = {g, 0, 0, bytes};
    result r = {0};
    double gbps = 0;

    if (!cu_ok(g, g->drv->MemAlloc(&j.src, bytes), "cuMemAlloc (copy source)") ||
        !cu_ok(g, g->drv->MemAlloc(&j.dst, bytes), "cuMemAlloc (copy destination)") ||
        !cu_ok(g, g->drv->MemsetD8(j.src, 1, bytes), "cuMemsetD8")) {
        fail("copy bandwidth of %.2f GiB: %s", (double)bytes / 1073741824.0, g->err);
        goto out;
    }
    if (time_runs(g, 5, iters, queue_copy, &j, "copy bandwidth", &r) && r.out == OUT_OK) {
        gbps = 2.0 * (double)bytes / r.ms_median / 1e6;
        printf("# copy bandwidth %.1f GB/s (cuMemcpyDtoDAsync of %lld MiB, 2 x its size a copy, "
               "median of %lld)\n",
               gbps, (long long)(bytes >> 20), (long long)iters);
    }
out:
    if (j.src)
        g->drv->MemFree(j.src);
    if (j.dst)
        g->drv->MemFree(j.dst);
    return gbps;
}
