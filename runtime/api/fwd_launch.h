/* fwd_launch.h: the launch of a dense forward call already through dm_fwd_check, shared by
 * dm_fwd (fwd.c) and its window path (fwd_window.c). */
#ifndef DM_FWD_LAUNCH_H
#define DM_FWD_LAUNCH_H

#include "ctx.h"
#include "fwd_plan.h"
#include "kernel_params.h"

/* Enters ctx, gets the plan's kernel (building it if needed) and queues it on stream with args'
 * pointers: the tiled kernel or the decode path (fwd_decode.h), as args->path and the shapes
 * decide. Messages are prefixed "dm_fwd". */
dm_status dm_fwd_launch(dm_ctx *ctx, const dm_fwd_args *args, const dm_fwd_plan *plan,
                        CUstream stream);

/* Whether every row of a mask or bias starts `align`-byte aligned: the base pointer and each of
 * the three strides (in elements, times elem_bytes) are multiples of it. Kernels then use wider
 * loads. */
int dm_rows_aligned(const void *data, const int64_t *strides, int64_t elem_bytes, int align);

/* The parameters every forward kernel derives from scale and softcap. */
void dm_fwd_params_scalars(dm_fwd_params *k, float scale, float softcap);

#endif
