/* cuda_loader.c: dlopen of libcuda for dmbench and dmlatency, and their table of entry points
 * (cuda_loader.h). The benchmarks' only file that includes dlfcn.h; the library is opened once
 * per process and never closed. */
#include "cuda_loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static bench_driver table;
static int opened; /* 0: not tried yet, 1: table filled, -1: failed (why_text says why) */
static char why_text[512];

/* "cuMemAlloc_v2": the symbol cuda.h maps the name to, by expanding the macro first. */
#define SYMBOL_TEXT(sym) #sym
#define SYMBOL_NAME(sym) SYMBOL_TEXT(sym)
#define BENCH_CUDA_SLOT(field, fn) {(void **)&table.field, SYMBOL_NAME(fn)},
static const struct {
    void **slot;
    const char *name;
} symbols[] = {BENCH_CUDA_CALLS(BENCH_CUDA_SLOT)};

static void open_driver(void)
{
    const char *env = getenv("DMATTN_LIBCUDA");
    const char *path = env && *env ? env : "libcuda.so.1";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why_text, sizeof why_text, "cannot open the CUDA driver (%s): %s", path,
                 dlerror());
        opened = -1;
        return;
    }
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(lib, symbols[i].name);
        if (!*symbols[i].slot) {
            snprintf(why_text, sizeof why_text,
                     "the CUDA driver (%s) has no %s: older than the CUDA %d.%d headers this was "
                     "built with?",
                     path, symbols[i].name, CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
            opened = -1;
            return;
        }
    }
    opened = 1;
}

const bench_driver *bench_driver_open(char *why, size_t why_bytes)
{
    if (!opened)
        open_driver();
    if (opened > 0)
        return &table;
    if (why && why_bytes)
        snprintf(why, why_bytes, "%s", why_text);
    return NULL;
}
