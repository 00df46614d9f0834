/* fwd_varlen_window.h: dm_fwd_varlen with window > 0 (fwd_varlen_window.c): mask' from the varlen
 * window-mask helper into stream-ordered scratch, around the plain varlen forward that
 * fwd_varlen.c runs on it. Also the helper's arguments for a forward call, which the CPU
 * reference shares. */
#ifndef DM_FWD_VARLEN_WINDOW_H
#define DM_FWD_VARLEN_WINDOW_H

#include "ctx.h"
#include "dmattn.h"
#include "wmask_varlen_plan.h"

/* The window mask's scratch between begin and end: 0 when the window did not apply. */
typedef struct dm_varlen_window {
    CUdeviceptr scratch;
    size_t scratch_bytes;
} dm_varlen_window;

/* The window-mask helper's arguments for a varlen forward call. */
static inline dm_window_mask_varlen_args dm_fwd_varlen_window_args(const dm_fwd_varlen_args *a)
{
    dm_window_mask_varlen_args w = {
        .bias = a->bias, .mask = a->mask, .cu_seqlens_q = a->cu_seqlens_q,
        .cu_seqlens_k = a->cu_seqlens_k, .total_q = a->q.shape[0], .total_k = a->k.shape[0],
        .max_seqlen_q = a->max_seqlen_q, .max_seqlen_k = a->max_seqlen_k, .window = a->window};
    return w;
}

/* For a call that passed dm_fwd_varlen_check with window > 0: checks the window's own rules,
 * queues mask' = dm_window_mask_varlen(bias, mask, window) on `stream` into scratch, and sets
 * *plain to the call without a window on mask' (on the call's own mask when the window keeps
 * every key: max_seqlen_k <= window). On failure nothing is left allocated. */
dm_status dm_fwd_varlen_window_begin(dm_ctx *ctx, const dm_fwd_varlen_args *args,
                                     dm_fwd_varlen_args *plain, dm_varlen_window *win,
                                     CUstream stream);

/* Frees begin's scratch in stream order, behind the forward queued on it. Returns st, or the
 * free's failure when st is DM_OK. */
dm_status dm_fwd_varlen_window_end(dm_ctx *ctx, const dm_varlen_window *win, dm_status st,
                                   CUstream stream);

#endif
