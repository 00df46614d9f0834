/* driver.c: dlopen of libcuda and the table of entry points (driver.h). The only file that
 * includes dlfcn.h; loaded once per process under pthread_once, never unloaded. */
#include "driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dm_driver table;
static int table_ok;
static char table_why[256];

/* Each symbol by its exported name: cuda.h maps several to _v2 versions through macros. An
 * optional one (OPT) may be missing from an older driver: its slot stays NULL. */
#define SYM(field, name) {(void **)&table.field, name, 0}
#define OPT(field, name) {(void **)&table.field, name, 1}
static const struct {
    void **slot;
    const char *name;
    int optional;
} symbols[] = {
    SYM(Init, "cuInit"),
    SYM(DriverGetVersion, "cuDriverGetVersion"),
    SYM(DeviceGetCount, "cuDeviceGetCount"),
    SYM(DeviceGet, "cuDeviceGet"),
    SYM(DeviceGetName, "cuDeviceGetName"),
    SYM(DeviceGetAttribute, "cuDeviceGetAttribute"),
    SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
    SYM(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
    SYM(CtxGetCurrent, "cuCtxGetCurrent"),
    SYM(CtxSetCurrent, "cuCtxSetCurrent"),
    SYM(CtxGetDevice, "cuCtxGetDevice"),
    SYM(CtxPushCurrent, "cuCtxPushCurrent_v2"),
    SYM(CtxPopCurrent, "cuCtxPopCurrent_v2"),
    SYM(CtxSynchronize, "cuCtxSynchronize"),
    SYM(ModuleLoadData, "cuModuleLoadData"),
    SYM(ModuleUnload, "cuModuleUnload"),
    SYM(ModuleGetFunction, "cuModuleGetFunction"),
    SYM(FuncSetAttribute, "cuFuncSetAttribute"),
    SYM(OccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor"),
    SYM(LaunchKernel, "cuLaunchKernel"),
    SYM(GetErrorName, "cuGetErrorName"),
    SYM(GetErrorString, "cuGetErrorString"),
    SYM(MemAlloc, "cuMemAlloc_v2"),
    SYM(MemFree, "cuMemFree_v2"),
    SYM(MemcpyHtoD, "cuMemcpyHtoD_v2"),
    SYM(MemcpyDtoH, "cuMemcpyDtoH_v2"),
    SYM(MemsetD8, "cuMemsetD8_v2"),
    SYM(MemAllocAsync, "cuMemAllocAsync"),
    SYM(MemFreeAsync, "cuMemFreeAsync"),
    SYM(PointerGetAttributes, "cuPointerGetAttributes"),
    SYM(MemsetD8Async, "cuMemsetD8Async"),
    SYM(Memcpy2DAsync, "cuMemcpy2DAsync_v2"),
    OPT(TensorMapEncodeTiled, "cuTensorMapEncodeTiled"), /* CUDA 12.0 */
};

static void open_driver(void)
{
    /* DMATTN_LIBCUDA lets tests point at a library that is not there (the no-driver path). */
    const char *path = getenv("DMATTN_LIBCUDA");
    void *lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(table_why, sizeof table_why, "cannot open the CUDA driver (%s): %s",
                 path && *path ? path : "libcuda.so.1", dlerror());
        return;
    }
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(lib, symbols[i].name);
        if (!*symbols[i].slot && !symbols[i].optional) {
            snprintf(table_why, sizeof table_why, "the CUDA driver has no %s (too old?)",
                     symbols[i].name);
            return;
        }
    }
    CUresult r = table.Init(0);
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        table.GetErrorName(r, &name);
        snprintf(table_why, sizeof table_why, "cuInit failed: %s", name);
        return;
    }
    table_ok = 1;
}

const dm_driver *dm_driver_get(char *why, size_t why_bytes)
{
    pthread_once(&once, open_driver);
    if (table_ok)
        return &table;
    if (why && why_bytes)
        snprintf(why, why_bytes, "%s", table_why);
    return NULL;
}

const char *dm_driver_error_text(const dm_driver *d, CUresult r, char *buf, size_t buf_bytes)
{
    const char *name = NULL, *text = NULL;
    if (d) {
        d->GetErrorName(r, &name);
        d->GetErrorString(r, &text);
    }
    snprintf(buf, buf_bytes, "%s (%s)", name ? name : "CUDA error", text ? text : "no text");
    return buf;
}
