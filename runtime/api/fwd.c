/* fwd.c: dm_fwd, the dense forward entry point: check the arguments, then launch the plan
 * (fwd_launch.c), or with window > 0 take the window path (fwd_window.c). Nothing is read from or
 * written to the caller's tensors before validation passes. */
#include "fwd_launch.h"
#include "fwd_plan.h"
#include "fwd_window.h"

dm_status dm_fwd(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream)
{
    dm_fwd_plan plan;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_status st = dm_fwd_check(ctx, "dm_fwd", args, &plan);
    if (st != DM_OK)
        return st;
    if (plan.B == 0 || plan.Lq == 0) /* no query anywhere: nothing to write */
        return DM_OK;
    /* mask' = dm_window_mask(...) first, then this call without a window. With no keys every key
     * is in the window (Lk <= window): the mask stands, as the helper would say. */
    if (args->window > 0 && plan.Lk > 0)
        return dm_fwd_window(ctx, args, stream);
    return dm_fwd_launch(ctx, args, &plan, stream);
}
