/* bwd_check.c: dm_bwd_check (bwd_plan.h): the forward's arguments through dm_fwd_check, then
 * what the backward adds (dout, lse required, dq, dk, dv, dbias). Reads no memory behind the
 * tensors' pointers. */
#include <stdio.h>
#include <string.h>

#include "bwd_plan.h"
#include "tensor_check.h"

/* A gradient or dout: present, rank 4, q's dtype, like's shape, rows as an input's (dout) or an
 * output's (the gradients: no two elements at one address). */
static dm_status check_like(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            const char *like_name, const dm_tensor *like, dm_dtype dtype,
                            bool output)
{
    dm_status st;
    char dims[64];
    snprintf(dims, sizeof dims, "%s's shape", like_name);
    if ((st = dm_check_required(ctx, call, name, t, 4, dims)) != DM_OK ||
        (st = dm_check_same_dtype(ctx, call, name, t, dtype)) != DM_OK ||
        (st = dm_check_same_shape(ctx, call, name, t, like_name, like)) != DM_OK)
        return st;
    return output ? dm_check_output_rows(ctx, call, name, t)
                  : dm_check_input_rows(ctx, call, name, t);
}

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
    const dm_dtype dtype = args->q.dtype;
    if ((st = check_like(ctx, call, "dout", &args->dout, "o", &args->o, dtype, false)) != DM_OK ||
        (st = check_like(ctx, call, "dq", &args->dq, "q", &args->q, dtype, true)) != DM_OK ||
        (st = check_like(ctx, call, "dk", &args->dk, "k", &args->k, dtype, true)) != DM_OK ||
        (st = check_like(ctx, call, "dv", &args->dv, "v", &args->v, dtype, true)) != DM_OK)
        return st;

    /* dbias: bias's shape and dtype, one element per stored bias element. */
    if ((st = dm_check_optional(ctx, call, "dbias", &args->dbias, 4, "bias's shape",
                                &p.has_dbias)) != DM_OK)
        return st;
    if (p.has_dbias) {
        if (p.fwd.bias_layout == DM_LAYOUT_NONE)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: dbias is given but bias is absent: expected no dbias", call);
        if (args->dbias.dtype != args->bias.dtype)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: dbias.dtype = %s: expected bias's dtype %s", call,
                                dm_dtype_name(args->dbias.dtype), dm_dtype_name(args->bias.dtype));
        if ((st = dm_check_same_shape(ctx, call, "dbias", &args->dbias, "bias", &args->bias)) !=
                DM_OK ||
            (st = dm_check_output_elems(ctx, call, "dbias", &args->dbias)) != DM_OK)
            return st;
        for (int d = 0; d < 4; d++)
            p.dbias_stride[d] = args->dbias.shape[d] == 1 ? 0 : args->dbias.strides[d];
    }

    dm_plan_rows(&args->dout, p.dout_stride);
    dm_plan_rows(&args->dq, p.dq_stride);
    dm_plan_rows(&args->dk, p.dk_stride);
    dm_plan_rows(&args->dv, p.dv_stride);
    p.deterministic = args->deterministic != 0;
    if (plan)
        *plan = p;
    return DM_OK;
}
