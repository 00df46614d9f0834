/* bwd_varlen_plan.h: the varlen backward pass's check (dm_bwd_varlen_args, SPEC §3 and §5, in
 * dmattn.h) and the plan the launcher (api/bwd_varlen.c) and the CPU reference
 * (dm_ref_bwd_varlen) both read. */
#ifndef DM_BWD_VARLEN_PLAN_H
#define DM_BWD_VARLEN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "fwd_varlen_plan.h"

/* The forward's plan (q, k, v, o, cu_seqlens, mask, bias and lse as dm_fwd_varlen_check reads
 * them; fwd.has_lse is true) and the gradients' layouts; strides in elements. */
typedef struct dm_bwd_varlen_plan {
    dm_fwd_varlen_plan fwd;
    int64_t dout_stride[2]; /* token, head (the last dimension is contiguous) */
    int64_t dq_stride[2];
    int64_t dk_stride[2];
    int64_t dv_stride[2];
    bool has_dbias;
    int64_t dbias_stride[3]; /* as fwd.bias_stride: token, head (0 when Hm = 1), key */
    bool deterministic;
} dm_bwd_varlen_plan;

/* Checks every argument: the forward's by dm_fwd_varlen_check's rules (its messages, prefixed
 * with call; o and lse required), then dout and the gradients' shapes, dtypes, strides and
 * alignment. On a bad argument DM_ERR_INVALID_ARG with a message naming it; touches no memory
 * behind the pointers (cu_seqlens included: whether they are device memory is the entry point's
 * check, so the CPU reference can run this on host buffers). */
dm_status dm_bwd_varlen_check(dm_ctx *ctx, const char *call, const dm_bwd_varlen_args *args,
                              dm_bwd_varlen_plan *plan);

#endif
