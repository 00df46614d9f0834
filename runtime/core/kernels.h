/* kernels.h: variant -> cubin -> loaded kernel. The middle of every call:
 *   in-memory module table -> disk cache -> Lua codegen -> NVRTC -> cuModuleLoadData.
 * dmgen reaches each stage through these functions. */
#ifndef DM_KERNELS_H
#define DM_KERNELS_H

#include <stdbool.h>

#include "ctx.h"
#include "gen.h"

typedef struct dm_kernel {
    CUfunction fn;
    int threads;
    int block_m;
    int block_n;
    int smem_bytes;
    int blocks_per_sm; /* resident at once (registers and shared memory): the driver's count */
    /* decode kernels of 3+ blocks an SM: the dynamic shared memory a launch asks for to run
     * blocks_per_sm - 1 (padding, unused by the kernel); 0 when none */
    int fewer_blocks_smem_bytes;
    int split_stages, split_digit_stages; /* as in dm_kernel_src */
    int dq_atomic;                        /* as in dm_kernel_src */
    int tma_maps;                         /* as in dm_kernel_src */
    int query_tile;                       /* as in dm_kernel_src */
    int key_split;                        /* as in dm_kernel_src */
    int dq_turns;                         /* as in dm_kernel_src */
    int turn_order;                       /* as in dm_kernel_src */
    CUfunction fn_rows; /* bwd: dm_kernel_src.rows_entry's function; NULL when it has none */
} dm_kernel;

/* How a cubin was obtained, for dmgen's summary and the tests. */
typedef enum dm_build_source {
    DM_BUILT_FROM_MEMORY = 0, /* the context had it loaded */
    DM_BUILT_FROM_DISK,       /* a valid disk cache entry */
    DM_BUILT_BY_NVRTC,        /* compiled now */
} dm_build_source;

typedef struct dm_build_info {
    dm_build_source source;
    double compile_ms;  /* NVRTC time when compiled now */
    bool cache_written; /* a new entry landed on disk */
    char entry_path[DM_PATH_BYTES + 64]; /* cache_dir + "/" + name + suffix */
} dm_build_info;

/* Generates v's source, and fetches its cubin from the disk cache or compiles it (and stores
 * it). Needs no device. *cubin is malloc'd; src receives the template output. */
dm_status dm_build_cubin(dm_ctx *ctx, const char *call, const dm_variant *v, dm_kernel_src *src,
                         void **cubin, size_t *cubin_bytes, dm_build_info *info);

/* The loaded kernel for v in ctx (current CUDA context entered by the caller). The pointer stays
 * valid for the context's lifetime. info may be NULL. A kernel already loaded costs a hash of v
 * and a probe of the module table: no text is formatted. */
dm_status dm_kernel_get(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel **out,
                        dm_build_info *info);

/* Queues k (loaded for v) on stream over a grid of (gx, gy, gz) blocks of its own size and shared
 * memory, params passed by value (copied at launch). A failure is DM_ERR_CUDA: "CALL: variant
 * 'KEY': cuLaunchKernel: ...". The caller has entered ctx. */
dm_status dm_kernel_launch(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel *k,
                           unsigned gx, unsigned gy, unsigned gz, void *params, CUstream stream);

/* dm_kernel_launch for a kernel of two parameters (a bwd kernel with k->tma_maps): params, then
 * extra, both by value. */
dm_status dm_kernel_launch2(dm_ctx *ctx, const char *call, const dm_variant *v,
                            const dm_kernel *k, unsigned gx, unsigned gy, unsigned gz,
                            void *params, void *extra, CUstream stream);

/* dm_kernel_launch of k->fn_rows (set: a bwd kernel with a memory-pass entry), no dynamic shared
 * memory, params by value. */
dm_status dm_kernel_launch_rows(dm_ctx *ctx, const char *call, const dm_variant *v,
                                const dm_kernel *k, unsigned gx, unsigned gy, unsigned gz,
                                void *params, CUstream stream);

/* The module table behind dm_kernel_get (ctx->modules): the kernel loaded for v, or NULL; and
 * adding one (v must not be there) whose module the table then owns and unloads at
 * dm_module_table_destroy. Insert fails only for lack of memory (DM_ERR_NOMEM, message set;
 * the caller still owns the module). */
const dm_kernel *dm_module_find(const dm_ctx *ctx, const dm_variant *v);
dm_status dm_module_insert(dm_ctx *ctx, const char *call, const dm_variant *v, CUmodule module,
                           const dm_kernel *kernel, const dm_kernel **out);
void dm_module_table_destroy(dm_ctx *ctx); /* unloads in the current CUDA context */

#endif
