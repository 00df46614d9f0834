/* stub_libcuda.h: what the stub driver (stub_libcuda.c) records, read by tests through dlsym of
 * "dmstub_stats" in the library DMATTN_LIBCUDA names, and what it answers of pointers
 * ("dmstub_memory"). Plain data: one thread at a time. */
#ifndef DM_STUB_LIBCUDA_H
#define DM_STUB_LIBCUDA_H

typedef struct dmstub_stats_t {
    long attribute_queries;
    long get_currents;
    long pushes, pops;
    long module_loads, module_unloads;
    long launches;
    void *launch_ctx; /* the context current at the last launch */
    void *launch_fn;  /* the function of the last launch */
    void *fns[32];    /* the function of launch n (launches counted from 0), for n < 32 */
    unsigned grid[3];
    unsigned grids[32][3]; /* the grid of launch n, for n < 32 */
    long memsets;          /* cuMemsetD8Async calls, and the last one's arguments */
    unsigned long long memset_ptr;
    unsigned long long memset_bytes;
    unsigned memset_value;
    unsigned block_threads;
    unsigned smem_bytes;
    long pointer_queries; /* cuPointerGetAttributes calls */
    void *pointer_ctx;    /* the context current at the last of them */
    /* Set by a test: how many bytes of each launch's first kernel argument (the parameter
     * struct) to keep in params; the stub cannot know the struct's size. */
    unsigned capture_bytes;
    unsigned char params[1024];
    unsigned char params_prev[1024]; /* the launch before the last one's */
} dmstub_stats_t;

/* What the stub's cuPointerGetAttributes says of an address, set by tests through dlsym of
 * "dmstub_memory": an address in [host_lo, host_hi) is host memory of kind host_kind, any other
 * device memory (what cuMemAlloc returns); fail != 0 makes every query fail with that CUresult.
 * All zero (the start): every address is device memory. */
typedef enum dmstub_host_kind {
    DMSTUB_PAGEABLE = 0,    /* malloc'd: unknown to CUDA, every attribute zero */
    DMSTUB_PINNED_MAPPED,   /* page-locked, the device reads it at the same address */
    DMSTUB_PINNED_UNMAPPED, /* page-locked, its device address differs (cuMemHostRegister) */
    DMSTUB_MANAGED,         /* cudaMallocManaged, reported as host memory (as the driver may) */
} dmstub_host_kind;

typedef struct dmstub_memory_t {
    unsigned long long host_lo, host_hi; /* as CUdeviceptr */
    dmstub_host_kind host_kind;
    int fail;
} dmstub_memory_t;

#endif
