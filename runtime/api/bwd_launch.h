/* bwd_launch.h: the backward's phases on a stream, shared by dm_bwd (bwd.c) and dm_bwd_varlen
 * (bwd_varlen.c): one bwd kernel launched once per phase (templates/attn_bwd.lua), and, for a
 * deterministic call on a kernel with dq reductions, the variant's bwdrows kernel for phase 0. */
#ifndef DM_BWD_LAUNCH_H
#define DM_BWD_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bwd_maps.h"
#include "kernel_params.h"
#include "kernels.h"

/* The phases' grids: 0 = query rows over (rows[0] / block_m, heads[0] = H, batches), 1 = keys
 * over (rows[1] / block_m, heads[1] = Hkv, batches x key_parts), 2 = dbias_elems over
 * block_n-element blocks (0: phase 2 not launched). Varlen: rows are max_seqlen and batches the
 * sequences. */
typedef struct dm_bwd_grid {
    int64_t rows[2];
    int64_t heads[2];
    int64_t batches;
    int64_t dbias_elems;
    int64_t key_parts; /* phase 1's blocks a key block (grid.z = batches x key_parts: the keys
                        * phase split, p->key_split); 0 or 1: one */
} dm_bwd_grid;

/* The rows' scratch of one call, stream-ordered: row_dot (`rows` floats: B H Lq, varlen H
 * total_q) and, where dq is summed by reductions, dq_accum (rows x head_dim floats, 256-byte
 * aligned after it). Reductions are the default mode's, on a kernel that has them (k->dq_atomic;
 * the keys phase then also writes a query-layout dbias), and the deterministic mode's on a kernel
 * that orders them (k->dq_turns, dense: p's B, H, Lq set), which also gets p->dq_turns, the
 * counts that order them (zeroed by phase 0). Sets p->row_dot, p->dq_accum (0 when
 * not) and *bytes, for dm_scratch_free(..., p->row_dot, *bytes, ...) once the phases are
 * queued. A kernel with tensor maps (k->tma_maps, dense: p's B, H, Lq set) also gets
 * p->query_rows, lse and row_dot by query tile for its keys phase; one that splits its keys phase
 * (k->key_split, dense, the default mode: p's B, Hkv, Lk set) p->key_split, zeroed on stream,
 * and p->key_partials, with p->key_slots and p->key_split_cap (all 0 where it does not). */
dm_status dm_bwd_scratch(dm_ctx *ctx, const char *call, const dm_kernel *k, bool deterministic,
                         int64_t rows, int head_dim, CUstream stream, dm_bwd_params *p,
                         size_t *bytes);

/* The kernel of v's deterministic rows phase where k leaves it out (k->dq_atomic: the bwdrows
 * variant of v, loaded or built as any kernel), into *rows; NULL where the call is not
 * deterministic, k runs the phase itself, or k needs none (k->dq_turns: dq summed in order). */
dm_status dm_bwd_rows_kernel(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel *k,
                             bool deterministic, const dm_kernel **rows);

/* The phases in stream order, p->phase set for each: 0 rows, 1 keys, 2 dbias, then 3 (dq from
 * the scratch) when p->dq_accum is set; a phase with no block is skipped. DM_ERR_UNSUPPORTED
 * when a grid's x exceeds the device limit, naming call. maps: the kernel's second parameter
 * where it takes one (k->tma_maps), else NULL. The default mode's memory passes (0 with
 * p->dq_accum, and 3) go to k->fn_rows where the kernel has one: no shared memory, their own
 * registers; the deterministic rows phase (0 without p->dq_accum) to rows where given
 * (dm_bwd_rows_kernel; a kernel with dq reductions has no phase 0 of its own). sums: phase 2's
 * parameters where they differ from p's (dense dbias through partials, bwd.c; its dbias_part
 * set, g->dbias_elems then counting warps of 32 elements), else NULL. */
dm_status dm_bwd_launch_phases(dm_ctx *ctx, const char *call, const dm_variant *v,
                               const dm_kernel *k, const dm_kernel *rows, dm_bwd_params *p,
                               const dm_bwd_maps *maps, const dm_bwd_grid *g,
                               const dm_bwd_params *sums, CUstream stream);

#endif
