/* bwd_check.c: dm_bwd_check (bwd_plan.h): the forward's arguments through dm_fwd_check, then
 * what the backward adds (dout, lse required, dq, dk, dv, dbias). Reads no memory behind the
 * tensors' pointers. */
#include <string.h>

#include "bwd_plan.h"
#include "tensor_check.h"

dm_status dm_bwd_check(dm_ctx *ctx, const char *call, const dm_bwd_args *args, dm_bwd_plan *plan)
{
    dm_bwd_plan p;
    dm_status st;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!call)
        call = "dm_bwd";
    if (!args)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: args is NULL: expected a dm_bwd_args",
                            call);
    memset(&p, 0, sizeof p);

    /* The forward's arguments, by the forward's rules (a window was applied to the mask). */
    dm_fwd_args fwd = {.q = args->q,
                       .k = args->k,
                       .v = args->v,
                       .mask = args->mask,
                       .bias = args->bias,
                       .o = args->o,
                       .lse = args->lse,
                       .scale = args->scale,
                       .softcap = args->softcap,
                       .causal = args->causal};
    if ((st = dm_fwd_check(ctx, call, &fwd, &p.fwd)) != DM_OK)
        return st;
    if (!p.fwd.has_lse)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: lse is absent: expected the forward's fp32 (B, H, Lq) lse (the "
                            "backward recomputes the probabilities from it)",
                            call);

    /* dout and the gradients of q, k, v. */
    const dm_tensor *const grads[4] = {&args->dout, &args->dq, &args->dk, &args->dv};
    const dm_tensor *const likes[4] = {&args->o, &args->q, &args->k, &args->v};
    if ((st = dm_check_bwd_grads(ctx, call, 4, grads, likes)) != DM_OK)
        return st;

    /* dbias: bias's shape and dtype, one element per stored bias element. */
    if ((st = dm_check_bias_grad(ctx, call, &args->dbias, &args->bias,
                                 p.fwd.bias_layout != DM_LAYOUT_NONE, false, &p.has_dbias)) !=
        DM_OK)
        return st;
    if (p.has_dbias)
        for (int d = 0; d < 4; d++)
            p.dbias_stride[d] = args->dbias.shape[d] == 1 ? 0 : args->dbias.strides[d];

    dm_plan_rows(&args->dout, p.dout_stride);
    dm_plan_rows(&args->dq, p.dq_stride);
    dm_plan_rows(&args->dk, p.dk_stride);
    dm_plan_rows(&args->dv, p.dv_stride);
    p.deterministic = args->deterministic != 0;
    if (plan)
        *plan = p;
    return DM_OK;
}
