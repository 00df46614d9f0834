/* cuda_loader.h: the CUDA driver entry points dmbench and dmlatency call, opened at run time
 * with dlopen (cuda_loader.c) so that --help, --version, --dry-run and usage errors work on a
 * machine without a GPU driver, as dmgen's do. The benchmarks may not use the library's own
 * table (runtime/core/driver.h: they include only dmattn.h), hence this small one of theirs. */
#ifndef BENCH_CUDA_LOADER_H
#define BENCH_CUDA_LOADER_H

#include <cuda.h>
#include <stddef.h>

/* Every entry point the benchmarks call, once: the table's field (the cu prefix dropped) and the
 * function as cuda.h declares it. cuda.h #defines many of these names to versioned symbols
 * (cuMemAlloc to cuMemAlloc_v2, cuEventElapsedTime to cuEventElapsedTime_v2, ...): the field's
 * type and the symbol looked up both come from that expansion, so they are what a link against
 * libcuda would have bound, never a second hand-written prototype or name. */
#define BENCH_CUDA_CALLS(X) \
    X(Init, cuInit) \
    X(GetErrorName, cuGetErrorName) \
    X(DeviceGet, cuDeviceGet) \
    X(DeviceGetName, cuDeviceGetName) \
    X(DeviceGetAttribute, cuDeviceGetAttribute) \
    X(DevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain) \
    X(DevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease) \
    X(CtxSetCurrent, cuCtxSetCurrent) \
    X(CtxSynchronize, cuCtxSynchronize) \
    X(StreamCreate, cuStreamCreate) \
    X(StreamDestroy, cuStreamDestroy) \
    X(StreamSynchronize, cuStreamSynchronize) \
    X(EventCreate, cuEventCreate) \
    X(EventDestroy, cuEventDestroy) \
    X(EventRecord, cuEventRecord) \
    X(EventElapsedTime, cuEventElapsedTime) \
    X(MemGetInfo, cuMemGetInfo) \
    X(MemAlloc, cuMemAlloc) \
    X(MemFree, cuMemFree) \
    X(MemAllocHost, cuMemAllocHost) \
    X(MemFreeHost, cuMemFreeHost) \
    X(MemcpyHtoD, cuMemcpyHtoD) \
    X(MemcpyDtoD, cuMemcpyDtoD) \
    X(MemcpyDtoDAsync, cuMemcpyDtoDAsync) \
    X(MemsetD8, cuMemsetD8) \
    X(ModuleLoadData, cuModuleLoadData) \
    X(ModuleGetFunction, cuModuleGetFunction) \
    X(ModuleUnload, cuModuleUnload) \
    X(LaunchKernel, cuLaunchKernel)

typedef struct bench_driver {
#define BENCH_CUDA_FIELD(field, fn) __typeof__(&fn) field;
    BENCH_CUDA_CALLS(BENCH_CUDA_FIELD)
#undef BENCH_CUDA_FIELD
} bench_driver;

/* Opens the CUDA driver on first call: $DMATTN_LIBCUDA when set (as the library does, so both
 * load the same one), else libcuda.so.1; then looks up every entry point. Does not call cuInit.
 * Returns the table, or NULL with a one-line reason in why, "cannot open the CUDA driver
 * (libcuda.so.1): <dlerror>" (the same table or reason on every later call). Not thread-safe:
 * the benchmarks call it from main's thread only. */
const bench_driver *bench_driver_open(char *why, size_t why_bytes);

#endif
