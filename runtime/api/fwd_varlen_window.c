/* fwd_varlen_window.c: dm_fwd_varlen with a top-k window (SPEC §4 per sequence): the one varlen
 * window-mask helper computes mask' from the call's bias and mask, then fwd_varlen.c runs the
 * plain forward on mask'. Going through the helper is what makes attention(window = W) equal
 * attention(mask = dm_window_mask_varlen(...)) bitwise. mask' lives in stream-ordered scratch, so
 * nothing synchronizes; a key-based mask' is (total_k, Hm'), never total_q x max_seqlen_k. */
#include "fwd_varlen_window.h"
#include "scratch.h"
#include "wmask_varlen_plan.h"

#define CALL "dm_fwd_varlen"
#define WINDOW_MASK "the window mask" /* for messages */

dm_status dm_fwd_varlen_window_begin(dm_ctx *ctx, const dm_fwd_varlen_args *args,
                                     dm_fwd_varlen_args *plain, dm_varlen_window *win,
                                     CUstream stream)
{
    dm_window_mask_varlen_args w = dm_fwd_varlen_window_args(args);
    dm_wmask_varlen_plan plan;
    CUdeviceptr scratch = 0;

    win->scratch = 0;
    win->scratch_bytes = 0;
    *plain = *args;
    plain->window = 0;
    dm_status st = dm_wmask_varlen_check(ctx, CALL, &w, false, &plan);
    if (st != DM_OK || !plan.applied) /* max_seqlen_k <= window: every key is in the window */
        return st;

    if ((st = dm_ctx_enter(ctx, CALL)) != DM_OK)
        return st;
    size_t bytes = dm_wmask_varlen_out_bytes(&plan);
    if ((st = dm_scratch_alloc(ctx, CALL, WINDOW_MASK, bytes, stream, &scratch)) != DM_OK) {
        dm_ctx_leave(ctx);
        return st;
    }
    w.out = dm_wmask_varlen_packed_out(&plan, (void *)(uintptr_t)scratch);
    st = dm_wmask_varlen_check(ctx, CALL, &w, true, &plan);
    if (st == DM_OK)
        st = dm_wmask_varlen_launch(ctx, CALL, &w, &plan, stream);
    if (st != DM_OK) {
        st = dm_scratch_free(ctx, st, CALL, WINDOW_MASK, scratch, bytes, stream);
        dm_ctx_leave(ctx);
        return st;
    }
    dm_ctx_leave(ctx);
    win->scratch = scratch;
    win->scratch_bytes = bytes;
    plain->mask = w.out;
    return DM_OK;
}

dm_status dm_fwd_varlen_window_end(dm_ctx *ctx, const dm_varlen_window *win, dm_status st,
                                   CUstream stream)
{

    if (!win->scratch)
        return st;
    /* Freed in stream order: the forward queued before has finished reading it. */
    if (dm_ctx_enter(ctx, CALL) != DM_OK)
        return st;
    st = dm_scratch_free(ctx, st, CALL, WINDOW_MASK, win->scratch, win->scratch_bytes, stream);
    dm_ctx_leave(ctx);
    return st;
}
