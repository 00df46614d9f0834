/* ref_fwd.c: dm_ref_fwd, the CPU reference of dm_fwd: the same argument check, then the window
 * reference (window > 0) or the attention reference. For tests and tools. */
#include "reference.h"

dm_status dm_ref_fwd(dm_ctx *ctx, const dm_fwd_args *host_args)
{
    dm_fwd_plan plan;
    dm_status st = dm_fwd_check(ctx, "dm_ref_fwd", host_args, &plan);
    if (st != DM_OK)
        return st;
    if (host_args->window > 0 && plan.Lk > 0) /* mask' on the host, then attention on it */
        return dm_ref_fwd_window(ctx, host_args);
    return dm_ref_attention(ctx, host_args, &plan);
}
