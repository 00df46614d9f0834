/* stub_libcuda.h: what the stub driver (stub_libcuda.c) records, read by tests through dlsym of
 * "dmstub_stats" in the library DMATTN_LIBCUDA names. Plain counters: one thread at a time. */
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
    unsigned grid[3];
    unsigned block_threads;
    unsigned smem_bytes;
} dmstub_stats_t;

#endif
