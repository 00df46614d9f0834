/* bwd_plan.h: the dense backward pass's arguments (SPEC §3, issue 16), their check and the plan
 * the launcher and the CPU reference will both read. dm_bwd_args moves into dmattn.h together with
 * dm_bwd when the backward kernels land; until then the check and the CPU reference (dm_ref_bwd)
 * are what exists, for the tests and the kernels to be built against. */
#ifndef DM_BWD_PLAN_H
#define DM_BWD_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "fwd_plan.h"

/* Gradients of a dm_fwd call, SPEC §3.
 *   dout (B, Lq, H, D), q's dtype: the gradient of the forward's o.
 *   q, k, v, o, mask, bias, scale, softcap, causal: the forward's, as dm_fwd_args has them (o is
 *     the forward's output, read). A forward with a window attended with mask' =
 *     dm_window_mask(bias, mask, window): pass that mask' as mask (4-D). The top-k is not redone:
 *     dm_window_mask is deterministic, so the mask' of the forward is the one to use.
 *   lse: the forward's, fp32 (B, H, Lq): required (the probabilities are recomputed from it).
 *   dq, dk, dv: outputs shaped as q, k, v, in q's dtype. dk and dv sum over the query heads of
 *     their K/V head's group.
 *   dbias (optional output, only with a bias): bias's shape and dtype; the sum over every
 *     dimension bias broadcasts (size 1 for B, heads or Lq) and over the query heads that share
 *     a stored head (Hkv-headed: the group's; 1-headed: all).
 *   deterministic: nonzero = the same bits run to run (a fixed order for every reduction).
 * Masked scores and rows with no visible key (lse = +inf) contribute exactly zero. */
typedef struct dm_bwd_args {
    dm_tensor dout;
    dm_tensor q, k, v;
    dm_tensor o;
    dm_tensor lse;
    dm_tensor mask;
    dm_tensor bias;
    dm_tensor dq, dk, dv;
    dm_tensor dbias;
    float scale;
    float softcap;
    int causal;
    int deterministic;
} dm_bwd_args;

/* The forward's plan (q, k, v, o, mask, bias, lse as the forward read them) and the gradients'
 * layouts; strides in elements, 0 where a dimension has size 1. */
typedef struct dm_bwd_plan {
    dm_fwd_plan fwd;
    int64_t dout_stride[3]; /* batch, row, head */
    int64_t dq_stride[3];
    int64_t dk_stride[3];
    int64_t dv_stride[3];
    bool has_dbias;
    int64_t dbias_stride[4]; /* batch, head, row, key: bias's shape */
    bool deterministic;
} dm_bwd_plan;

/* Checks every argument: the forward's by dm_fwd_check's rules (its messages, prefixed with
 * call), then lse's presence and the gradients' shapes, dtypes, strides and alignment. On a bad
 * argument DM_ERR_INVALID_ARG with a message naming it; touches no memory behind the pointers. */
dm_status dm_bwd_check(dm_ctx *ctx, const char *call, const dm_bwd_args *args, dm_bwd_plan *plan);

#endif
