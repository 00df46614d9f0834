/* fwd_varlen_window.c: dm_fwd_varlen with a top-k window (SPEC §4 per sequence): the one varlen
 * window-mask helper computes mask' from the call's bias and mask, then fwd_varlen.c runs the
 * plain forward on mask'. Going through the helper is what makes attention(window = W) equal
 * attention(mask = dm_window_mask_varlen(...)) bitwise. mask' lives in stream-ordered scratch, so
 * nothing synchronizes; a key-based mask' is (total_k, Hm'), never total_q x max_seqlen_k. */
#include "fwd_varlen_window.h"
#include "wmask_varlen_plan.h"

#define CALL "dm_fwd_varlen"

dm_status dm_fwd_varlen_window_begin(dm_ctx *ctx, const dm_fwd_varlen_args *args,
                                     dm_fwd_varlen_args *plain, dm_varlen_window *win,
                                     CUstream stream)
{
    dm_window_mask_varlen_args w = dm_fwd_varlen_window_args(args);
    dm_wmask_varlen_plan plan;
    CUdeviceptr scratch = 0;
    char buf[160];

    win->scratch = 0;
    *plain = *args;
    plain->window = 0;
    dm_status st = dm_wmask_varlen_check(ctx, CALL, &w, false, &plan);
    if (st != DM_OK || !plan.applied) /* max_seqlen_k <= window: every key is in the window */
        return st;

    if ((st = dm_ctx_enter(ctx, CALL)) != DM_OK)
        return st;
    size_t bytes = dm_wmask_varlen_out_bytes(&plan);
    CUresult r = ctx->drv->MemAllocAsync(&scratch, bytes, stream);
    if (r != CUDA_SUCCESS) {
        st = dm_set_error(ctx, DM_ERR_CUDA,
                          CALL ": window = %d: cuMemAllocAsync of %zu bytes for the window mask: %s",
                          args->window, bytes, dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
        dm_ctx_leave(ctx);
        return st;
    }
    w.out = dm_wmask_varlen_packed_out(&plan, (void *)(uintptr_t)scratch);
    st = dm_wmask_varlen_check(ctx, CALL, &w, true, &plan);
    if (st == DM_OK)
        st = dm_wmask_varlen_launch(ctx, CALL, &w, &plan, stream);
    if (st != DM_OK) {
        ctx->drv->MemFreeAsync(scratch, stream); /* the failure reported is the first one */
        dm_ctx_leave(ctx);
        return st;
    }
    dm_ctx_leave(ctx);
    win->scratch = scratch;
    plain->mask = w.out;
    return DM_OK;
}

dm_status dm_fwd_varlen_window_end(dm_ctx *ctx, const dm_varlen_window *win, dm_status st,
                                   CUstream stream)
{
    char buf[160];

    if (!win->scratch)
        return st;
    /* Freed in stream order: the forward queued before has finished reading it. */
    if (dm_ctx_enter(ctx, CALL) != DM_OK)
        return st;
    CUresult r = ctx->drv->MemFreeAsync(win->scratch, stream);
    if (r != CUDA_SUCCESS && st == DM_OK)
        st = dm_set_error(ctx, DM_ERR_CUDA, CALL ": cuMemFreeAsync of the window mask: %s",
                          dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    dm_ctx_leave(ctx);
    return st;
}
