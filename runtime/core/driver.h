/* driver.h: the CUDA driver entry points dmattn calls, opened at run time with dlopen so that
 * codegen, NVRTC and AOT builds work on a machine with no GPU driver. Only driver.c sees dlfcn. */
#ifndef DM_DRIVER_H
#define DM_DRIVER_H

#include <cuda.h>

/* Named without the cu prefix: cuda.h #defines many cu* names to their _v2 symbols. */
typedef struct dm_driver {
    CUresult (*Init)(unsigned int);
    CUresult (*DriverGetVersion)(int *);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetName)(char *, int, CUdevice);
    CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxGetDevice)(CUdevice *);
    CUresult (*CtxPushCurrent)(CUcontext);
    CUresult (*CtxPopCurrent)(CUcontext *);
    CUresult (*CtxSynchronize)(void);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*FuncSetAttribute)(CUfunction, CUfunction_attribute, int);
    CUresult (*OccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction, int, size_t);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*GetErrorString)(CUresult, const char **);
    /* Used by tests and tools to move data. The library itself allocates device memory only as
     * stream-ordered scratch (MemAllocAsync below). */
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
    /* Stream-ordered scratch (dm_fwd's window mask): no device-wide sync, freed in stream order. */
    CUresult (*MemAllocAsync)(CUdeviceptr *, size_t, CUstream);
    CUresult (*MemFreeAsync)(CUdeviceptr, CUstream);
    /* What memory a pointer is (device_check.c: cu_seqlens must be readable by the kernels).
     * The plural form answers SUCCESS with zeroed attributes for an address CUDA does not know,
     * so "not CUDA memory" and "the query failed" stay apart. */
    CUresult (*PointerGetAttributes)(unsigned, CUpointer_attribute *, void **, CUdeviceptr);
    /* Filling scratch on the stream (dm_fwd's 2-D (B, Lq) mask left-padded to Lk, fwd_window.c). */
    CUresult (*MemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
    CUresult (*Memcpy2DAsync)(const CUDA_MEMCPY2D *, CUstream);
    /* The backward's tile loads by the tensor memory accelerator (api/bwd_maps.c); NULL where
     * the driver predates it (CUDA 12.0): the kernels then copy by cp.async. */
    CUresult (*TensorMapEncodeTiled)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                     const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                     const cuuint32_t *, CUtensorMapInterleave,
                                     CUtensorMapSwizzle, CUtensorMapL2promotion,
                                     CUtensorMapFloatOOBfill);
} dm_driver;

/* Opens libcuda once per process (pthread_once) and calls cuInit(0). Returns the table, or NULL
 * with the reason written to why (the same reason on every later call). */
const dm_driver *dm_driver_get(char *why, size_t why_bytes);

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" for messages. */
const char *dm_driver_error_text(const dm_driver *d, CUresult r, char *buf, size_t buf_bytes);

#endif
