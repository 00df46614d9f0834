/* fwd_window.c: dm_fwd with a top-k window (SPEC §4): the one window-mask helper computes mask'
 * from the call's bias and mask, then the ordinary forward runs on mask'. Going through the
 * helper, not a fused path, is what makes attention(window = W) equal attention(mask =
 * window_mask(...)) bitwise. mask' lives in stream-ordered scratch, so nothing synchronizes. */
#include "fwd_launch.h"
#include "fwd_plan.h"
#include "fwd_window.h"
#include "wmask_plan.h"

/* The forward on args without a window (checked again: mask' replaces the mask argument). */
static dm_status plain_forward(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream)
{
    dm_fwd_plan plan;
    dm_status st = dm_fwd_check(ctx, "dm_fwd", args, &plan);
    return st != DM_OK ? st : dm_fwd_launch(ctx, args, &plan, stream);
}

dm_status dm_fwd_window(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream)
{
    dm_window_mask_args w = dm_fwd_window_args(args);
    dm_fwd_args plain = *args;
    dm_wmask_plan plan;
    CUdeviceptr scratch = 0;
    char buf[160];
    CUresult r;

    plain.window = 0;
    dm_status st = dm_wmask_check(ctx, "dm_fwd", &w, false, &plan);
    if (st != DM_OK)
        return st;
    if (!plan.applied) /* Lk <= window: every key is in the window; the mask stands */
        return plain_forward(ctx, &plain, stream);

    if ((st = dm_ctx_enter(ctx, "dm_fwd")) != DM_OK)
        return st;
    r = ctx->drv->MemAllocAsync(&scratch, dm_wmask_out_bytes(&plan), stream);
    if (r != CUDA_SUCCESS) {
        st = dm_set_error(ctx, DM_ERR_CUDA,
                          "dm_fwd: window = %d: cuMemAllocAsync of %zu bytes for the window mask: %s",
                          args->window, dm_wmask_out_bytes(&plan),
                          dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
        dm_ctx_leave(ctx);
        return st;
    }
    w.out = dm_wmask_packed_out(&plan, (void *)(uintptr_t)scratch);
    st = dm_wmask_check(ctx, "dm_fwd", &w, true, &plan);
    if (st == DM_OK)
        st = dm_wmask_launch(ctx, "dm_fwd", &w, &plan, stream);
    dm_ctx_leave(ctx);

    if (st == DM_OK) {
        plain.mask = w.out;
        st = plain_forward(ctx, &plain, stream);
    }

    /* Freed in stream order: the forward kernel queued before has finished reading it. */
    if (dm_ctx_enter(ctx, "dm_fwd") == DM_OK) {
        r = ctx->drv->MemFreeAsync(scratch, stream);
        if (r != CUDA_SUCCESS && st == DM_OK)
            st = dm_set_error(ctx, DM_ERR_CUDA, "dm_fwd: cuMemFreeAsync of the window mask: %s",
                              dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
        dm_ctx_leave(ctx);
    }
    return st;
}
