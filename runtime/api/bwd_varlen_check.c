/* bwd_varlen_check.c: dm_bwd_varlen_check (bwd_varlen_plan.h): the forward's arguments through
 * dm_fwd_varlen_check, then what the backward adds (lse required, dout, dq, dk, dv, dbias), as
 * bwd_check.c does for the dense call. Reads no memory behind the tensors' pointers, cu_seqlens
 * included. */
#include <string.h>

#include "bwd_varlen_plan.h"
#include "tensor_check.h"

dm_status dm_bwd_varlen_check(dm_ctx *ctx, const char *call, const dm_bwd_varlen_args *args,
                              dm_bwd_varlen_plan *plan)
{
    dm_bwd_varlen_plan p;
    dm_status st;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!call)
        call = "dm_bwd_varlen";
    if (!args)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: args is NULL: expected a dm_bwd_varlen_args", call);
    memset(&p, 0, sizeof p);

    /* The forward's arguments, by the forward's rules (a window was applied to the mask). */
    dm_fwd_varlen_args fwd = {.q = args->q,
                              .k = args->k,
                              .v = args->v,
                              .cu_seqlens_q = args->cu_seqlens_q,
                              .cu_seqlens_k = args->cu_seqlens_k,
                              .max_seqlen_q = args->max_seqlen_q,
                              .max_seqlen_k = args->max_seqlen_k,
                              .mask = args->mask,
                              .bias = args->bias,
                              .o = args->o,
                              .lse = args->lse,
                              .scale = args->scale,
                              .softcap = args->softcap,
                              .causal = args->causal};
    if ((st = dm_fwd_varlen_check(ctx, call, &fwd, &p.fwd)) != DM_OK)
        return st;
    if (!p.fwd.has_lse)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: lse is absent: expected the forward's fp32 (H, total_q) lse (the "
                            "backward recomputes the probabilities from it)",
                            call);

    /* dout and the gradients of q, k, v. */
    const dm_tensor *const grads[4] = {&args->dout, &args->dq, &args->dk, &args->dv};
    const dm_tensor *const likes[4] = {&args->o, &args->q, &args->k, &args->v};
    if ((st = dm_check_bwd_grads(ctx, call, 3, grads, likes)) != DM_OK)
        return st;

    /* dbias: bias's layout, shape and dtype, one element per stored bias element; a query-based
     * one's keys contiguous, as bias's are (the kernels write rows of keys). */
    const dm_layout bias_layout = p.fwd.bias_layout;
    if ((st =
             dm_check_bias_grad(ctx, call, &args->dbias, &args->bias, bias_layout != DM_LAYOUT_NONE,
                                bias_layout == DM_LAYOUT_Q, &p.has_dbias)) != DM_OK)
        return st;
    if (p.has_dbias) { /* fwd.bias_stride's convention: token, head, key */
        for (int d = 0; d < 2; d++)
            p.dbias_stride[d] = args->dbias.shape[d] == 1 ? 0 : args->dbias.strides[d];
        p.dbias_stride[2] = bias_layout == DM_LAYOUT_Q ? 1 : p.dbias_stride[0];
    }

    for (int d = 0; d < 2; d++) {
        p.dout_stride[d] = args->dout.shape[d] == 1 ? 0 : args->dout.strides[d];
        p.dq_stride[d] = args->dq.shape[d] == 1 ? 0 : args->dq.strides[d];
        p.dk_stride[d] = args->dk.shape[d] == 1 ? 0 : args->dk.strides[d];
        p.dv_stride[d] = args->dv.shape[d] == 1 ? 0 : args->dv.strides[d];
    }
    p.deterministic = args->deterministic != 0;
    if (plan)
        *plan = p;
    return DM_OK;
}
