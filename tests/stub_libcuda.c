/* stub_libcuda.c: a libcuda stand-in for tests and the host-overhead benchmark, loaded through
 * DMATTN_LIBCUDA. Every entry point driver.c resolves returns success; nothing runs on a device.
 * One device whose compute capability is $DMSTUB_CC (default 90); $DMSTUB_FAIL_ATTRIBUTE=<n>
 * makes cuDeviceGetAttribute fail for attribute n. The per-thread context stack behaves as the
 * driver's does, `dmstub_stats` counts what the library asked for and `dmstub_memory` says which
 * addresses are host memory (tests reach both via dlsym). */
#include <cuda.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stub_libcuda.h"

#define STACK_MAX 16

dmstub_stats_t dmstub_stats;
dmstub_memory_t dmstub_memory;

static int primary[1]; /* the device's primary context: its address is the handle */
static __thread CUcontext stack[STACK_MAX];
static __thread int depth;

static CUcontext current(void)
{
    return depth ? stack[depth - 1] : NULL;
}

static int env_int(const char *name, int fallback)
{
    const char *e = getenv(name);
    return e && *e ? atoi(e) : fallback;
}

CUresult cuInit(unsigned int flags)
{
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int *v)
{
    *v = 13000;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *n)
{
    *n = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
    if (ordinal != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *dev = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    strncpy(name, "dmattn stub device", (size_t)len);
    if (len > 0)
        name[len - 1] = '\0';
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *out, CUdevice_attribute attr, CUdevice dev)
{
    dmstub_stats.attribute_queries++;
    if (env_int("DMSTUB_FAIL_ATTRIBUTE", -1) == (int)attr)
        return CUDA_ERROR_INVALID_VALUE;
    int cc = env_int("DMSTUB_CC", 90);
    switch (attr) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
        *out = cc / 10;
        break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
        *out = cc % 10;
        break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
        *out = cc >= 90 ? 232448 : 166912;
        break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
        *out = 132;
        break;
    default:
        *out = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
    *ctx = (CUcontext)(void *)&primary[0];
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *ctx)
{
    dmstub_stats.get_currents++;
    *ctx = current();
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx)
{
    if (depth == 0 && ctx)
        stack[depth++] = ctx;
    else if (depth > 0 && ctx)
        stack[depth - 1] = ctx;
    else if (depth > 0)
        depth--;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetDevice(CUdevice *dev)
{
    if (!current())
        return CUDA_ERROR_INVALID_CONTEXT;
    *dev = 0;
    return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    if (depth == STACK_MAX || !ctx)
        return CUDA_ERROR_INVALID_VALUE;
    dmstub_stats.pushes++;
    stack[depth++] = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent_v2(CUcontext *ctx)
{
    if (depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    dmstub_stats.pops++;
    *ctx = stack[--depth];
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void)
{
    return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    if (!current())
        return CUDA_ERROR_INVALID_CONTEXT;
    *module = (CUmodule)(uintptr_t)(0x1000 + 0x10 * ++dmstub_stats.module_loads);
    return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule module)
{
    dmstub_stats.module_unloads++;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *fn, CUmodule module, const char *name)
{
    /* one function per module, told apart by it; a bwd module's memory-pass entry (..._rows) is
     * the module's second */
    size_t n = strlen(name);
    *fn = (CUfunction)((uintptr_t)module + 1 + (n > 5 && strcmp(name + n - 5, "_rows") == 0));
    return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction fn, CUfunction_attribute attr, int value)
{
    return CUDA_SUCCESS;
}

/* DMSTUB_BLOCKS_PER_SM (default 2, as the decode kernels got on an H100) blocks an SM as far as
 * registers go, fewer where the shared memory asked for does not fit that many: the SM's
 * 228 KB (sm_90; 164 KB below), 1 KB of it reserved a block, as the driver counts. */
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, CUfunction fn, int threads,
                                                     size_t smem_bytes)
{
    size_t per_sm = env_int("DMSTUB_CC", 90) >= 90 ? 233472 : 167936;
    int by_regs = env_int("DMSTUB_BLOCKS_PER_SM", 2);
    int by_smem = (int)(per_sm / (smem_bytes + 1024));
    *blocks = by_regs < by_smem ? by_regs : by_smem;
    return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned smem, CUstream stream, void **params,
                        void **extra)
{
    if (!current())
        return CUDA_ERROR_INVALID_CONTEXT;
    dmstub_stats.launches++;
    dmstub_stats.launch_ctx = current();
    dmstub_stats.launch_fn = f;
    if (dmstub_stats.launches - 1 < 32) { /* launches counts this one already */
        dmstub_stats.fns[dmstub_stats.launches - 1] = f;
        dmstub_stats.grids[dmstub_stats.launches - 1][0] = gx;
        dmstub_stats.grids[dmstub_stats.launches - 1][1] = gy;
        dmstub_stats.grids[dmstub_stats.launches - 1][2] = gz;
    }
    dmstub_stats.grid[0] = gx;
    dmstub_stats.grid[1] = gy;
    dmstub_stats.grid[2] = gz;
    dmstub_stats.block_threads = bx * by * bz;
    dmstub_stats.smem_bytes = smem;
    memcpy(dmstub_stats.params_prev, dmstub_stats.params, sizeof dmstub_stats.params);
    if (dmstub_stats.capture_bytes && params && params[0])
        memcpy(dmstub_stats.params, params[0],
               dmstub_stats.capture_bytes < sizeof dmstub_stats.params
                   ? dmstub_stats.capture_bytes
                   : sizeof dmstub_stats.params);
    return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult r, const char **s)
{
    *s = r == CUDA_SUCCESS ? "CUDA_SUCCESS" : "CUDA_ERROR_STUB";
    return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult r, const char **s)
{
    *s = r == CUDA_SUCCESS ? "no error" : "stub error";
    return CUDA_SUCCESS;
}

/* Memory: addresses only, never backed; nothing in the stub reads or writes device data. */
static CUdeviceptr next_ptr = 0x10000000;

static CUdeviceptr fake_alloc(size_t n)
{
    CUdeviceptr p = next_ptr;
    next_ptr += (n + 255) / 256 * 256;
    return p;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
    *p = fake_alloc(n);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr p)
{
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    return CUDA_SUCCESS;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n)
{
    return CUDA_SUCCESS;
}

CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, CUstream s)
{
    *p = fake_alloc(n);
    return CUDA_SUCCESS;
}

CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s)
{
    return CUDA_SUCCESS;
}

/* As the driver's: SUCCESS with zeroed attributes for an address CUDA does not know (pageable
 * host memory); sizes as cuda.h documents them (memory type and is-managed 32-bit). */
CUresult cuPointerGetAttributes(unsigned n, CUpointer_attribute *attrs, void **data, CUdeviceptr p)
{
    dmstub_stats.pointer_queries++;
    dmstub_stats.pointer_ctx = current();
    if (dmstub_memory.fail)
        return (CUresult)dmstub_memory.fail;
    bool host = p >= dmstub_memory.host_lo && p < dmstub_memory.host_hi;
    dmstub_host_kind kind = dmstub_memory.host_kind;
    unsigned type = !host ? CU_MEMORYTYPE_DEVICE : kind == DMSTUB_PAGEABLE ? 0 : CU_MEMORYTYPE_HOST;
    CUdeviceptr dev = !host || kind == DMSTUB_PINNED_MAPPED || kind == DMSTUB_MANAGED ? p
                      : kind == DMSTUB_PINNED_UNMAPPED ? p ^ 0x100000000000ull
                                                       : 0;
    for (unsigned i = 0; i < n; i++)
        switch (attrs[i]) {
        case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
            *(unsigned *)data[i] = type;
            break;
        case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
            *(CUdeviceptr *)data[i] = dev;
            break;
        case CU_POINTER_ATTRIBUTE_IS_MANAGED:
            *(uint32_t *)data[i] = host && kind == DMSTUB_MANAGED;
            break;
        default:
            return CUDA_ERROR_INVALID_VALUE; /* the library asks for nothing else */
        }
    return CUDA_SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, CUstream s)
{
    dmstub_stats.memsets++;
    dmstub_stats.memset_ptr = p;
    dmstub_stats.memset_bytes = n;
    dmstub_stats.memset_value = v;
    return CUDA_SUCCESS;
}
CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *copy, CUstream s)
{
    return CUDA_SUCCESS;
}

/* The backward's tensor maps (api/bwd_maps.c): accepted, the map left zeroed. */
CUresult cuTensorMapEncodeTiled(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank,
                                void *addr, const cuuint64_t *dims, const cuuint64_t *strides,
                                const cuuint32_t *box, const cuuint32_t *elem_strides,
                                CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill fill)
{
    memset(map, 0, sizeof *map);
    return CUDA_SUCCESS;
}
