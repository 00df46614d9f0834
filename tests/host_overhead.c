/* host_overhead.c: nanoseconds of dmattn's own code per warm dm_fwd, measured on the CPU against
 * the stub driver (stub_libcuda.c), whose entry points return at once: what is left is ours.
 * The GPU-side twin is bench/latency.c ("per_call_host_us"), which includes cuLaunchKernel.
 *
 *   host_overhead [--calls N] [--rounds R]
 *
 * Scenarios, each on a loaded kernel (the first call compiles it, through the disk cache):
 *   current      the context's CUDA context is current on the thread (dmlatency, PyTorch)
 *   not_current  no CUDA context current: dm_fwd makes its own current around the launch
 *   mask_bias    as current, with a key mask, a per-query bias and lse (more to validate)
 * Prints, per scenario, the best and the median of R rounds of N calls (mean ns per call). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmattn.h"

typedef int (*retain_fn)(void **, int);
typedef int (*set_current_fn)(void *);

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static dm_tensor tensor4(uintptr_t addr, dm_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d)
{
    dm_tensor t = {.data = (void *)addr, .dtype = dt, .rank = 4, .shape = {a, b, c, d},
                   .strides = {b * c * d, c * d, d, 1}};
    return t;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* R rounds of N calls; best and median mean per call, in ns. */
static int time_calls(dm_ctx *ctx, const dm_fwd_args *a, int calls, int rounds, double *best,
                      double *median)
{
    double *per = calloc((size_t)rounds, sizeof *per);
    if (!per)
        return 1;
    if (dm_fwd(ctx, a, NULL) != DM_OK) { /* load (and compile or read from the cache) */
        fprintf(stderr, "host_overhead: dm_fwd: %s\n", dm_errmsg(ctx));
        free(per);
        return 1;
    }
    for (int r = 0; r < rounds; r++) {
        dm_status st = DM_OK;
        double t0 = now_ns();
        for (int i = 0; i < calls; i++)
            st |= dm_fwd(ctx, a, NULL);
        per[r] = (now_ns() - t0) / calls;
        if (st != DM_OK) {
            fprintf(stderr, "host_overhead: dm_fwd: %s\n", dm_errmsg(ctx));
            free(per);
            return 1;
        }
    }
    qsort(per, (size_t)rounds, sizeof *per, compare_doubles);
    *best = per[0];
    *median = per[rounds / 2];
    free(per);
    return 0;
}

int main(int argc, char **argv)
{
    int calls = 200000, rounds = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: host_overhead [--calls N] [--rounds R]\n");
            return 2;
        }
    }
    if (calls < 1 || rounds < 1) {
        fprintf(stderr, "host_overhead: --calls and --rounds must be >= 1\n");
        return 2;
    }
    setenv("DMATTN_LIBCUDA", DM_STUB_LIBCUDA, 0);
    const char *stub_path = getenv("DMATTN_LIBCUDA");
    /* The same handle the library's dlopen gets: make the device's context current first, as
     * an application (or PyTorch) has it when it calls dmattn. */
    void *stub = dlopen(stub_path, RTLD_NOW | RTLD_LOCAL);
    retain_fn retain = stub ? (retain_fn)dlsym(stub, "cuDevicePrimaryCtxRetain") : NULL;
    set_current_fn set_current = stub ? (set_current_fn)dlsym(stub, "cuCtxSetCurrent") : NULL;
    void *cu = NULL;
    if (!retain || !set_current || retain(&cu, 0) != 0 || set_current(cu) != 0) {
        fprintf(stderr, "host_overhead: cannot use the stub driver %s\n", stub_path);
        return 1;
    }

    dm_ctx *ctx = NULL;
    if (dm_ctx_create(&ctx, 0) != DM_OK) {
        fprintf(stderr, "host_overhead: %s\n", dm_errmsg(ctx));
        dm_ctx_destroy(ctx);
        return 1;
    }
    const int64_t B = 1, L = 16, H = 1, D = 128;
    dm_fwd_args plain = {
        .q = tensor4(0x100000, DM_BF16, B, L, H, D),
        .k = tensor4(0x200000, DM_BF16, B, L, H, D),
        .v = tensor4(0x300000, DM_BF16, B, L, H, D),
        .o = tensor4(0x400000, DM_BF16, B, L, H, D),
    };
    dm_fwd_args masked = plain;
    masked.mask = tensor4(0x500000, DM_BOOL, B, 1, 1, L);
    masked.bias = tensor4(0x600000, DM_BF16, B, H, L, L);
    masked.lse = (dm_tensor){.data = (void *)0x700000, .dtype = DM_F32, .rank = 3,
                             .shape = {B, H, L}, .strides = {H * L, L, 1}};

    double best[3], median[3];
    int failed = time_calls(ctx, &plain, calls, rounds, &best[0], &median[0]);
    failed = failed || time_calls(ctx, &masked, calls, rounds, &best[2], &median[2]);
    failed = failed || set_current(NULL) != 0;
    failed = failed || time_calls(ctx, &plain, calls, rounds, &best[1], &median[1]);
    if (!failed) {
        static const char *const names[] = {"current", "not_current", "mask_bias"};
        printf("arch %s, %d rounds of %d calls: ns per dm_fwd (best, median)\n", dm_ctx_arch(ctx),
               rounds, calls);
        for (int i = 0; i < 3; i++)
            printf("%-12s %7.1f %7.1f\n", names[i], best[i], median[i]);
    }
    dm_ctx_destroy(ctx);
    return failed;
}
