/* latency.c (dmlatency): the host-side costs of the JIT path, for one d128 forward variant:
 *   cold   - codegen + NVRTC + cache write into an empty cache directory (dm_prebuild);
 *   first  - the first dm_fwd in a new process whose disk cache is warm (context creation,
 *            codegen, cache read, module load, launch, sync), measured in a child process;
 *   warm   - host time of one dm_fwd once the kernel is loaded (launch overhead, no sync);
 *   floor  - host time of a bare cuLaunchKernel of an empty kernel taking as many parameter
 *            bytes, timed the same way: what any library pays the driver. warm - floor is ours.
 * Uses only dmattn.h plus the driver API for memory (opened at run time, cuda_loader.h), so it
 * measures what users get. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cuda_loader.h"
#include "dmattn.h"

#define DMLATENCY_VERSION "0.1.0"

static const char usage[] =
    "usage: dmlatency [OPTIONS]\n"
    "\n"
    "Measures the host-side costs of dmattn's JIT path for one forward variant (d128, bf16, no\n"
    "mask or bias, on the arch of CUDA device 0) and prints one figure a line:\n"
    "  cold_compile_ms           codegen + NVRTC + cache write, into an empty cache directory\n"
    "  first_call_warm_disk_ms   the first dm_fwd in a new process whose disk cache is warm\n"
    "                            (context, codegen, cache read, load, launch, sync); median of 5\n"
    "  per_call_host_us          host time of one dm_fwd on a loaded kernel, no sync\n"
    "  per_call_with_sync_us     the same, each call followed by cuCtxSynchronize\n"
    "  launch_floor_us           a bare cuLaunchKernel of an empty kernel taking as many\n"
    "                            parameter bytes, timed the same way: what any library pays\n"
    "  per_call_ours_us          per_call_host_us - launch_floor_us: what dmattn adds\n"
    "The cache is a temporary directory (DMATTN_CACHE_DIR), removed at the end.\n"
    "\n"
    "options:\n"
    "  -h, --help          this text\n"
    "  --version           the version\n"
    "  --first-call        (internal) the child process that times the first call\n"
    "\n"
    "Exit status: 0 success, 1 failure (no CUDA driver or GPU included), 2 usage error.\n";

/* The driver's entry points, opened by make_current once the arguments are parsed. */
static const bench_driver *drv;

/* CHECK_CU(MemAlloc(&q, bytes)) calls drv->MemAlloc and exits 1 on failure, naming the call
 * as written with its cu prefix: "dmlatency: cuMemAlloc(&q, bytes) failed: CUDA_ERROR_... (2)". */
#define CHECK_CU(call) check_cu(drv->call, "cu" #call)

static void check_cu(CUresult r, const char *what)
{
    if (r == CUDA_SUCCESS)
        return;
    const char *name = NULL;
    if (drv->GetErrorName(r, &name) != CUDA_SUCCESS || !name)
        name = "unknown error";
    fprintf(stderr, "dmlatency: %s failed: %s (%d)\n", what, name, (int)r);
    exit(1);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* The variant run_calls' dm_fwd runs, on the context's arch (filled in by main). */
static char kVariant[96];

static dm_tensor make(CUdeviceptr p, int64_t b, int64_t l, int64_t h, int64_t d)
{
    dm_tensor t = {.data = (void *)(uintptr_t)p, .dtype = DM_BF16, .rank = 4,
                   .shape = {b, l, h, d}, .strides = {l * h * d, h * d, d, 1}};
    return t;
}

/* One d128 bf16 call on small tensors: the kernel is trivial, so timing is host time. */
static double run_calls(dm_ctx *ctx, int calls, int sync_each)
{
    const int64_t B = 1, L = 16, H = 1, D = 128;
    CUdeviceptr q, o;
    CHECK_CU(MemAlloc(&q, B * L * H * D * 2));
    CHECK_CU(MemAlloc(&o, B * L * H * D * 2));
    CHECK_CU(MemsetD8(q, 0x3c, B * L * H * D * 2));
    dm_fwd_args a = {.q = make(q, B, L, H, D), .k = make(q, B, L, H, D), .v = make(q, B, L, H, D),
                     .o = make(o, B, L, H, D)};
    double total = 0;
    for (int i = 0; i < calls; i++) {
        double t0 = now_ms();
        dm_status st = dm_fwd(ctx, &a, NULL);
        if (sync_each)
            CHECK_CU(CtxSynchronize());
        total += now_ms() - t0;
        if (st != DM_OK) {
            fprintf(stderr, "dmlatency: dm_fwd: %s\n", dm_errmsg(ctx));
            exit(1);
        }
        if (!sync_each && i % 256 == 255)
            CHECK_CU(CtxSynchronize()); /* keep the launch queue short; not timed */
    }
    CHECK_CU(CtxSynchronize());
    drv->MemFree(q);
    drv->MemFree(o);
    return total / calls;
}

/* An empty kernel with a parameter block the size of dm_fwd's (296 bytes: the copy into the
 * launch is part of the driver's cost), as PTX the driver JIT-compiles for the device. */
static const char kEmptyPtx[] = ".version 8.0\n.target sm_80\n.address_size 64\n"
                                ".visible .entry dm_latency_empty(.param .align 8 .b8 p[296])\n"
                                "{\n    ret;\n}\n";

/* Host time of one bare launch, in the pattern run_calls times dm_fwd (no sync; the queue
 * drained every 256 launches, untimed). */
static double launch_floor(int calls)
{
    CUmodule mod;
    CUfunction fn;
    unsigned char params[296] = {0};
    void *args[] = {params};
    CHECK_CU(ModuleLoadData(&mod, kEmptyPtx));
    CHECK_CU(ModuleGetFunction(&fn, mod, "dm_latency_empty"));
    double total = 0;
    for (int i = 0; i < calls; i++) {
        double t0 = now_ms();
        CHECK_CU(LaunchKernel(fn, 1, 1, 1, 128, 1, 1, 0, NULL, args, NULL));
        total += now_ms() - t0;
        if (i % 256 == 255)
            CHECK_CU(CtxSynchronize());
    }
    CHECK_CU(CtxSynchronize());
    CHECK_CU(ModuleUnload(mod));
    return total / calls;
}

static int first_call_child(void)
{
    double t0 = now_ms();
    dm_ctx *ctx = NULL;
    if (dm_ctx_create(&ctx, 0) != DM_OK) {
        fprintf(stderr, "dmlatency: %s\n", dm_errmsg(ctx));
        return 1;
    }
    double t1 = now_ms();
    double call = run_calls(ctx, 1, 1);
    printf("first_call_ms %.3f ctx_create_ms %.3f\n", t1 - t0 + call, t1 - t0);
    dm_ctx_destroy(ctx);
    return 0;
}

/* An application's own context, current on this thread; dm_ctx_create shares it. */
static void make_current(void)
{
    CUdevice dev;
    CUcontext cu;
    char why[512];
    if (!(drv = bench_driver_open(why, sizeof why))) {
        fprintf(stderr, "dmlatency: %s\n", why);
        exit(1);
    }
    CHECK_CU(Init(0));
    CHECK_CU(DeviceGet(&dev, 0));
    CHECK_CU(DevicePrimaryCtxRetain(&cu, dev));
    CHECK_CU(CtxSetCurrent(cu));
}

int main(int argc, char **argv)
{
    bool first_call = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("dmlatency %s (dmattn %s)\n", DMLATENCY_VERSION, dm_version_string());
            return 0;
        }
        if (strcmp(argv[i], "--first-call") == 0) {
            first_call = true;
            continue;
        }
        fprintf(stderr, "dmlatency: %s '%s' (see dmlatency --help)\n",
                argv[i][0] == '-' ? "unknown option" : "unexpected argument", argv[i]);
        return 2;
    }
    make_current(); /* first: no temporary directory is left behind when there is no GPU */
    if (first_call)
        return first_call_child();
    char dir[] = "/tmp/dmlatency_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    setenv("DMATTN_CACHE_DIR", dir, 1);

    dm_ctx *ctx = NULL;
    if (dm_ctx_create(&ctx, 0) != DM_OK) {
        fprintf(stderr, "dmlatency: %s\n", dm_errmsg(ctx));
        return 1;
    }
    /* exactly what dm_fwd will pick: an H100/H200 context is sm90a, not sm90 */
    snprintf(kVariant, sizeof kVariant, "fwd.d128.bf16.mask-none.bias-none.w0.%s",
             dm_ctx_arch(ctx));
    int cached = 0;
    double t0 = now_ms();
    if (dm_prebuild(ctx, kVariant, &cached) != DM_OK) {
        fprintf(stderr, "dmlatency: %s\n", dm_errmsg(ctx));
        return 1;
    }
    double cold = now_ms() - t0;

    /* first call in new processes, the disk cache now warm: median of 5 */
    double first[5];
    for (int i = 0; i < 5; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s --first-call", argv[0]);
        FILE *p = popen(cmd, "r");
        if (!p || fscanf(p, "first_call_ms %lf", &first[i]) != 1) {
            fprintf(stderr, "dmlatency: first-call child failed\n");
            return 1;
        }
        pclose(p);
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (first[j] < first[i]) {
                double t = first[i];
                first[i] = first[j];
                first[j] = t;
            }

    run_calls(ctx, 100, 0); /* load and warm */
    double warm_us = run_calls(ctx, 20000, 0) * 1e3;
    double warm_sync_us = run_calls(ctx, 2000, 1) * 1e3;
    launch_floor(100);
    double floor_us = launch_floor(20000) * 1e3;

    printf("variant                      %s\n", kVariant);
    printf("cold_compile_ms              %.1f   (codegen + NVRTC + cache write, empty cache)\n",
           cold);
    printf("first_call_warm_disk_ms      %.2f   (new process: ctx + codegen + cache read + load "
           "+ launch + sync; median of 5)\n",
           first[2]);
    printf("per_call_host_us             %.2f   (dm_fwd on a loaded kernel, no sync; mean of "
           "20000)\n",
           warm_us);
    printf("per_call_with_sync_us        %.2f   (dm_fwd + cuCtxSynchronize, 16x128 problem)\n",
           warm_sync_us);
    printf("launch_floor_us              %.2f   (bare cuLaunchKernel, empty kernel, 296 parameter "
           "bytes, same pattern)\n",
           floor_us);
    printf("per_call_ours_us             %.2f   (per_call_host_us - launch_floor_us)\n",
           warm_us - floor_us);
    dm_ctx_destroy(ctx);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
