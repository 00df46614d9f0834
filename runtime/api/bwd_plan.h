/* bwd_plan.h: the dense backward pass's check (dm_bwd_args, SPEC §3, in dmattn.h) and the plan
 * the launcher (api/bwd.c) and the CPU reference (dm_ref_bwd) both read. */
#ifndef DM_BWD_PLAN_H
#define DM_BWD_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "fwd_plan.h"


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
