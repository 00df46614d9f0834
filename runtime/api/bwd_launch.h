/* bwd_launch.h: the backward's phases on a stream, shared by dm_bwd (bwd.c) and dm_bwd_varlen
 * (bwd_varlen.c): one bwd kernel launched once per phase (templates/attn_bwd.lua). */
#ifndef DM_BWD_LAUNCH_H
#define DM_BWD_LAUNCH_H

#include <stdint.h>

#include "kernel_params.h"
#include "kernels.h"

/* The phases' grids: 0 = query rows over (rows[0] / block_m, heads[0] = H, batches), 1 = keys
 * over (rows[1] / block_m, heads[1] = Hkv, batches), 2 = dbias_elems over block_n-element blocks
 * (0: phase 2 not launched). Varlen: rows are max_seqlen and batches the sequences. */
typedef struct dm_bwd_grid {
    int64_t rows[2];
    int64_t heads[2];
    int64_t batches;
    int64_t dbias_elems;
} dm_bwd_grid;

/* The three phases in stream order, p->phase set for each; a phase with no block is skipped.
 * DM_ERR_UNSUPPORTED when a grid's x exceeds the device limit, naming call. */
dm_status dm_bwd_launch_phases(dm_ctx *ctx, const char *call, const dm_variant *v,
                               const dm_kernel *k, dm_bwd_params *p, const dm_bwd_grid *g,
                               CUstream stream);

#endif
