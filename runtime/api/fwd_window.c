/* fwd_window.c: dm_fwd with a top-k window (SPEC §4): the one window-mask helper computes mask'
 * from the call's bias and mask, then the ordinary forward runs on mask'. Going through the
 * helper, not a fused path, is what makes attention(window = W) equal attention(mask =
 * window_mask(...)) bitwise. mask' lives in stream-ordered scratch, so nothing synchronizes.
 * The helper's 2-D masks are accepted too; when Lk <= window no helper runs, and the 2-D mask is
 * normalized here: (B, Lk) as a strided view, (B, Lq < Lk) as a left-padded copy in scratch. */
#include <stdbool.h>

#include "fwd_launch.h"
#include "fwd_plan.h"
#include "fwd_window.h"
#include "scratch.h"
#include "wmask_plan.h"

/* what the scratch holds, for messages */
#define MASK_2D "the left-padded 2-D mask"
#define WINDOW_MASK "the window mask"

/* The forward on args without a window (checked again: mask' replaces the mask argument). */
static dm_status plain_forward(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream)
{
    dm_fwd_plan plan;
    dm_status st = dm_fwd_check(ctx, "dm_fwd", args, &plan);
    return st != DM_OK ? st : dm_fwd_launch(ctx, args, &plan, stream);
}

/* Queues the padded copy of a 2-D (Bm, Lq) mask into scratch (Bm, 1, 1, Lk): the first Lk - Lq
 * keys of each row true, then the mask's row. Rows closer than Lq bytes apart (a broadcast
 * stride) go one copy each: a 2-D copy's pitch must be at least its width. */
static dm_status pad_mask(dm_ctx *ctx, const dm_tensor *m, int64_t Lk, CUdeviceptr scratch,
                          CUstream stream)
{
    int64_t rows = m->shape[0], width = m->shape[1], pitch = m->strides[0];
    bool one_copy = rows == 1 || pitch >= width;
    CUDA_MEMCPY2D c = {.srcMemoryType = CU_MEMORYTYPE_DEVICE,
                       .srcPitch = (size_t)(rows == 1 ? width : pitch),
                       .dstMemoryType = CU_MEMORYTYPE_DEVICE,
                       .dstPitch = (size_t)Lk,
                       .WidthInBytes = (size_t)width,
                       .Height = (size_t)(one_copy ? rows : 1)};
    char buf[160];
    const char *what = "cuMemsetD8Async";
    CUresult r = ctx->drv->MemsetD8Async(scratch, 1, (size_t)(rows * Lk), stream);
    for (int64_t b = 0; r == CUDA_SUCCESS && b < (one_copy ? 1 : rows); b++) {
        c.srcDevice = (CUdeviceptr)(uintptr_t)m->data + (CUdeviceptr)(b * pitch);
        c.dstDevice = scratch + (CUdeviceptr)(b * Lk + Lk - width);
        what = "cuMemcpy2DAsync";
        r = ctx->drv->Memcpy2DAsync(&c, stream);
    }
    if (r != CUDA_SUCCESS)
        return dm_set_error(ctx, DM_ERR_CUDA, "dm_fwd: %s of the left-padded 2-D mask: %s", what,
                            dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    return DM_OK;
}

/* Lk <= window with a 2-D mask (SPEC §4's normalization without a top-k): (Bm, Lk) as a strided
 * view; (Bm, Lq), Lq < Lk, as a left-padded copy in stream-ordered scratch. */
static dm_status forward_on_2d_mask(dm_ctx *ctx, const dm_fwd_args *plain, CUstream stream)
{
    dm_fwd_args a = *plain;
    const dm_tensor *m = &plain->mask;
    int64_t Lk = plain->k.shape[1];
    CUdeviceptr scratch = 0;
    dm_status st;

    if (m->shape[1] == Lk) {
        a.mask = dm_fwd_mask_2d_view(m);
        return plain_forward(ctx, &a, stream);
    }
    if ((st = dm_ctx_enter(ctx, "dm_fwd")) != DM_OK)
        return st;
    size_t bytes = (size_t)(m->shape[0] * Lk);
    if ((st = dm_scratch_alloc(ctx, "dm_fwd", MASK_2D, bytes, stream, &scratch)) != DM_OK) {
        dm_ctx_leave(ctx);
        return st;
    }
    st = pad_mask(ctx, m, Lk, scratch, stream);
    dm_ctx_leave(ctx);
    if (st == DM_OK) {
        a.mask = dm_fwd_mask_2d_padded(m, Lk, (void *)(uintptr_t)scratch);
        st = plain_forward(ctx, &a, stream);
    }
    /* Freed in stream order, behind the forward that reads it. */
    if (dm_ctx_enter(ctx, "dm_fwd") == DM_OK) {
        st = dm_scratch_free(ctx, st, "dm_fwd", MASK_2D, scratch, bytes, stream);
        dm_ctx_leave(ctx);
    }
    return st;
}

dm_status dm_fwd_window(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream)
{
    dm_window_mask_args w = dm_fwd_window_args(args);
    dm_fwd_args plain = *args;
    dm_wmask_plan plan;
    CUdeviceptr scratch = 0;

    plain.window = 0;
    dm_status st = dm_wmask_check(ctx, "dm_fwd", &w, false, &plan);
    if (st != DM_OK)
        return st;
    if (!plan.applied) /* Lk <= window: every key is in the window; the mask stands */
        return plain.mask.data && plain.mask.rank == 2 ? forward_on_2d_mask(ctx, &plain, stream)
                                                       : plain_forward(ctx, &plain, stream);

    if ((st = dm_ctx_enter(ctx, "dm_fwd")) != DM_OK)
        return st;
    const size_t bytes = dm_wmask_out_bytes(&plan);
    if ((st = dm_scratch_alloc(ctx, "dm_fwd", WINDOW_MASK, bytes, stream, &scratch)) != DM_OK) {
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
        st = dm_scratch_free(ctx, st, "dm_fwd", WINDOW_MASK, scratch, bytes, stream);
        dm_ctx_leave(ctx);
    }
    return st;
}
