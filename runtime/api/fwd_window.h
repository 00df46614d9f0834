/* fwd_window.h: dm_fwd with window > 0 (fwd_window.c), and the helpers that turn a forward
 * call into its window-mask call, shared with the CPU reference's window path. */
#ifndef DM_FWD_WINDOW_H
#define DM_FWD_WINDOW_H

#include <stddef.h>

#include "ctx.h"
#include "dmattn.h"
#include "wmask_plan.h"

/* dm_fwd with window > 0, after dm_fwd_check passed: the window mask of the call's bias and mask
 * (mask'), then the forward without a window on mask'. Both are queued on `stream` with mask' in
 * stream-ordered scratch. */
dm_status dm_fwd_window(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream);

/* The helper's arguments for a forward call (already through dm_fwd_check). */
static inline dm_window_mask_args dm_fwd_window_args(const dm_fwd_args *a)
{
    dm_window_mask_args w = {.bias = a->bias, .mask = a->mask, .B = a->q.shape[0],
                             .Lq = a->q.shape[1], .Lk = a->k.shape[1], .window = a->window};
    return w;
}

/* A packed bool tensor of the plan's out shape at data. */
static inline dm_tensor dm_wmask_packed_out(const dm_wmask_plan *p, void *data)
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

/* A 2-D mask ({B|1}, Lk) (dm_fwd with a window) as the forward's ({B|1}, 1, 1, Lk): a view of
 * the same bytes, one row of keys for every query and head. */
static inline dm_tensor dm_fwd_mask_2d_view(const dm_tensor *m)
{
    dm_tensor t = {.data = m->data, .dtype = DM_BOOL, .rank = 4,
                   .shape = {m->shape[0], 1, 1, m->shape[1]},
                   .strides = {m->shape[0] == 1 ? 0 : m->strides[0], 0, 0, 1}};
    return t;
}

/* The packed ({B|1}, 1, 1, Lk) tensor at data that a 2-D ({B|1}, Lq) mask, Lq < Lk, becomes when
 * left-padded with true (SPEC §4); the caller fills it. */
static inline dm_tensor dm_fwd_mask_2d_padded(const dm_tensor *m, int64_t Lk, void *data)
{
    dm_tensor t = {.data = data, .dtype = DM_BOOL, .rank = 4, .shape = {m->shape[0], 1, 1, Lk},
                   .strides = {Lk, Lk, Lk, 1}};
    return t;
}

static inline size_t dm_wmask_out_bytes(const dm_wmask_plan *p)
{
    return (size_t)(p->out_shape[0] * p->out_shape[1] * p->out_shape[2] * p->out_shape[3]);
}

#endif
