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

/* Lk <= window with a 2-D mask, as dm_fwd_window does it: (Bm, Lk) as a strided view, (Bm, Lq)
 * left-padded with true to Lk in a host copy. */
static dm_status attention_on_2d_mask(dm_ctx *ctx, const dm_fwd_args *plain)
{
    dm_fwd_args a = *plain;
    const dm_tensor *m = &plain->mask;
    int64_t Lk = plain->k.shape[1], rows = m->shape[0], width = m->shape[1];

    if (width == Lk) {
        a.mask = dm_fwd_mask_2d_view(m);
        return plain_attention(ctx, &a);
    }
    unsigned char *padded = malloc((size_t)(rows * Lk));
    if (!padded)
        return dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_fwd: out of memory for the padded mask");
    for (int64_t b = 0; b < rows; b++)
        for (int64_t j = 0; j < Lk; j++)
            padded[b * Lk + j] =
                j < Lk - width || ((const unsigned char *)m->data)[b * m->strides[0] + j -
                                                                   (Lk - width)] != 0;
    a.mask = dm_fwd_mask_2d_padded(m, Lk, padded);
    dm_status st = plain_attention(ctx, &a);
    free(padded);
    return st;
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
        return plain.mask.data && plain.mask.rank == 2 ? attention_on_2d_mask(ctx, &plain)
                                                       : plain_attention(ctx, &plain);
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
