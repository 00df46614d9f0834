/* ref_fwd_window.c: the CPU reference of dm_fwd with a window (SPEC §4): mask' from the window
 * mask reference, then the dense forward reference on it, as dm_fwd_window does on the GPU. For
 * tests and tools; production code never calls it. */
#include <stdlib.h>

#include "fwd_window.h"
#include "reference.h"

/* Attention on args without a window (the check again: mask' changes the mask argument). */
static dm_status plain_attention(dm_ctx *ctx, const dm_fwd_args *args)
{
    dm_fwd_plan plan;
    dm_status st = dm_fwd_check(ctx, "dm_ref_fwd", args, &plan);
    return st != DM_OK ? st : dm_ref_attention(ctx, args, &plan);
}

dm_status dm_ref_fwd_window(dm_ctx *ctx, const dm_fwd_args *host_args)
{
    dm_window_mask_args w = dm_fwd_window_args(host_args);
    dm_fwd_args plain = *host_args;
    dm_wmask_plan plan;
    unsigned char *mask = NULL;
    int applied = 0;

    plain.window = 0;
    dm_status st = dm_wmask_check(ctx, "dm_ref_fwd", &w, false, &plan);
    if (st != DM_OK)
        return st;
    if (!plan.applied)
        return plain_attention(ctx, &plain);
    mask = malloc(dm_wmask_out_bytes(&plan));
    if (!mask)
        return dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_fwd: out of memory for the window mask");
    w.out = dm_wmask_packed_out(&plan, mask);
    st = dm_ref_window_mask(ctx, &w, &applied);
    if (st == DM_OK) {
        plain.mask = w.out;
        st = plain_attention(ctx, &plain);
    }
    free(mask);
    return st;
}
