/* fwd_window.c: dm_fwd with a top-k window (SPEC §4): the one window-mask helper computes mask'
 * from the call's bias and mask, then the ordinary forward runs on mask'. Going through the
 * helper, not a fused path, is what makes attention(window = W) equal attention(mask =
 * window_mask(...)) bitwise. mask' lives in stream-ordered scratch, so nothing synchronizes. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "fwd_plan.h"
#include "wmask_plan.h"

/* The helper's arguments for a forward call (already through dm_fwd_check). */
static dm_window_mask_args window_args(const dm_fwd_args *a)
{
    dm_window_mask_args w = {.bias = a->bias, .mask = a->mask, .B = a->q.shape[0],
                             .Lq = a->q.shape[1], .Lk = a->k.shape[1], .window = a->window};
    return w;
}

/* A packed bool tensor of the plan's out shape at data. */
static dm_tensor packed_out(const dm_wmask_plan *p, void *data)
{
    dm_tensor t = {.data = data, .dtype = DM_BOOL, .rank = 4};
    int64_t step = 1;
    for (int d = 3; d >= 0; d--) {
        t.shape[d] = p->out_shape[d];
        t.strides[d] = step;
        step *= p->out_shape[d];
    }
    return t;
}

static size_t out_bytes(const dm_wmask_plan *p)
{
    return (size_t)(p->out_shape[0] * p->out_shape[1] * p->out_shape[2] * p->out_shape[3]);
}

dm_status dm_fwd_window(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream)
{
    dm_window_mask_args w = window_args(args);
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
        return dm_fwd(ctx, &plain, stream);

    if ((st = dm_ctx_enter(ctx, "dm_fwd")) != DM_OK)
        return st;
    r = ctx->drv->MemAllocAsync(&scratch, out_bytes(&plan), stream);
    if (r != CUDA_SUCCESS) {
        st = dm_set_error(ctx, DM_ERR_CUDA,
                          "dm_fwd: window = %d: cuMemAllocAsync of %zu bytes for the window mask: %s",
                          args->window, out_bytes(&plan),
                          dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
        dm_ctx_leave(ctx);
        return st;
    }
    w.out = packed_out(&plan, (void *)(uintptr_t)scratch);
    st = dm_wmask_check(ctx, "dm_fwd", &w, true, &plan);
    if (st == DM_OK)
        st = dm_wmask_launch(ctx, "dm_fwd", &w, &plan, stream);
    dm_ctx_leave(ctx);

    if (st == DM_OK) {
        plain.mask = w.out;
        st = dm_fwd(ctx, &plain, stream);
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

dm_status dm_ref_fwd_window(dm_ctx *ctx, const dm_fwd_args *host_args)
{
    dm_window_mask_args w = window_args(host_args);
    dm_fwd_args plain = *host_args;
    dm_wmask_plan plan;
    unsigned char *mask = NULL;
    int applied = 0;

    plain.window = 0;
    dm_status st = dm_wmask_check(ctx, "dm_ref_fwd", &w, false, &plan);
    if (st != DM_OK)
        return st;
    if (!plan.applied)
        return dm_ref_fwd(ctx, &plain);
    mask = malloc(out_bytes(&plan));
    if (!mask)
        return dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_fwd: out of memory for the window mask");
    w.out = packed_out(&plan, mask);
    st = dm_ref_window_mask(ctx, &w, &applied);
    if (st == DM_OK) {
        plain.mask = w.out;
        st = dm_ref_fwd(ctx, &plain);
    }
    free(mask);
    return st;
}
