/* ref_fwd_varlen_window.c: the window half of the CPU reference of dm_fwd_varlen (SPEC §4 per
 * sequence): mask' from the varlen window-mask reference into a host buffer, and the call without
 * a window on it, which ref_fwd_varlen.c then runs, as dm_fwd_varlen does on the GPU. For tests
 * and tools; production code never calls it. */
#include <stdlib.h>

#include "fwd_varlen_window.h"
#include "reference.h"

dm_status dm_ref_fwd_varlen_window_mask(dm_ctx *ctx, const dm_fwd_varlen_args *host_args,
                                        dm_fwd_varlen_args *plain, unsigned char **mask)
{
    dm_window_mask_varlen_args w = dm_fwd_varlen_window_args(host_args);
    dm_wmask_varlen_plan plan;
    int applied = 0;

    *mask = NULL;
    *plain = *host_args;
    plain->window = 0;
    dm_status st = dm_wmask_varlen_check(ctx, "dm_ref_fwd_varlen", &w, false, &plan);
    if (st != DM_OK || !plan.applied)
        return st;
    size_t bytes = dm_wmask_varlen_out_bytes(&plan);
    *mask = malloc(bytes > 0 ? bytes : 1);
    if (!*mask)
        return dm_set_error(ctx, DM_ERR_NOMEM,
                            "dm_ref_fwd_varlen: out of memory for the window mask");
    w.out = dm_wmask_varlen_packed_out(&plan, *mask);
    st = dm_ref_window_mask_varlen(ctx, &w, &applied);
    if (st == DM_OK)
        plain->mask = w.out;
    return st;
}
