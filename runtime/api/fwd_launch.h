/* fwd_launch.h: the launch of a dense forward call already through dm_fwd_check, shared by
 * dm_fwd (fwd.c) and its window path (fwd_window.c). */
#ifndef DM_FWD_LAUNCH_H
#define DM_FWD_LAUNCH_H

#include "ctx.h"
#include "fwd_plan.h"

/* Enters ctx, gets the plan's kernel (building it if needed) and queues it on stream with args'
 * pointers. Messages are prefixed "dm_fwd". */
dm_status dm_fwd_launch(dm_ctx *ctx, const dm_fwd_args *args, const dm_fwd_plan *plan,
                        CUstream stream);

#endif
