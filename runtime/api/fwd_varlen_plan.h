/* fwd_varlen_plan.h: a varlen forward call's arguments after validation (SPEC §5), in one
 * normalized form that the launcher and the CPU reference both read. */
#ifndef DM_FWD_VARLEN_PLAN_H
#define DM_FWD_VARLEN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "dmattn.h"
#include "gen.h"

/* Strides are in elements. A head dimension of size 1 has stride 0 here, whatever the caller
 * passed. */
typedef struct dm_fwd_varlen_plan {
    int64_t B; /* cu_seqlens_q.shape[0] - 1 */
    int64_t H, Hkv, D;
    int64_t total_q, total_k; /* q.shape[0], k.shape[0] */
    int64_t max_seqlen_q, max_seqlen_k;
    dm_dtype dtype; /* of q, k, v, o */
    float scale;    /* resolved: 1/sqrt(D) when the caller passed 0 */
    float softcap;  /* 0 = off */
    bool causal;

    int64_t q_stride[2]; /* token, head (the last dimension is contiguous) */
    int64_t k_stride[2];
    int64_t v_stride[2];
    int64_t o_stride[2];

    /* mask and bias: layout NONE (absent), Q (query-based, rank 3: (total_q, Hm, max_seqlen_k))
     * or K (key-based, rank 2: (total_k, Hm)). Element (token t, head h, key j inside the
     * sequence) is at t*stride[0] + (h / head_div)*stride[1] + j*stride[2], where t is the
     * query's global index for Q (stride[2] = 1) and for K the global index of the sequence's
     * first key (stride[2] = stride[0]: the key's own row). head_div = H / Hm. */
    dm_layout mask_layout;
    int64_t mask_stride[3];
    int64_t mask_head_div;
    dm_layout bias_layout;
    dm_dtype bias_dtype; /* q's dtype or DM_F32 */
    int64_t bias_stride[3];
    int64_t bias_head_div;

    bool has_lse;
    int64_t lse_stride[2]; /* head, token: lse is (H, total_q) */
} dm_fwd_varlen_plan;

/* Checks every argument that the host can see (dmattn.h, dm_fwd_varlen_args) and fills plan:
 * DM_ERR_INVALID_ARG with a message naming the argument, e.g.
 * "dm_fwd_varlen: cu_seqlens_k.shape[0] = 4: expected B + 1 = 5 (cu_seqlens_q's length)".
 * Never reads memory behind a pointer (cu_seqlens included: they are on the device); whether
 * cu_seqlens are device memory is the entry point's check (device_check.c, from fwd_varlen.c), so
 * the CPU reference can run this on host buffers. `call` prefixes messages. */
dm_status dm_fwd_varlen_check(dm_ctx *ctx, const char *call, const dm_fwd_varlen_args *args,
                              dm_fwd_varlen_plan *plan);

/* A varlen mask or bias (plan strides: token, head, key) as the kernels' (batch, head, row)
 * strides, the batch index being the token the kernel starts the sequence at (its first query
 * for Q, first key for K), and the step from one key to the next (*key_stride). Rows of the K
 * layout are never stepped (one row). FwdParams and BwdParams alike (fwd_varlen.c). */
void dm_varlen_layout_strides(dm_layout l, const int64_t plan_stride[3], int64_t out[3],
                              int64_t *key_stride);

/* A (token, head) tensor's plan strides as the kernels' (batch, row, head): the batch index is
 * the sequence's first token (the kernel moves the base there), rows are tokens. */
void dm_varlen_token_strides(const int64_t plan_stride[2], int64_t out[3]);

/* lse (H, total_q) as the kernels' (batch = first token, head, row = token) strides. */
void dm_varlen_lse_strides(const int64_t plan_stride[2], int64_t out[3]);

/* The variant key of a plan's forward kernel on arch (the tiled or the decode path). */
void dm_fwd_varlen_plan_variant(const dm_fwd_varlen_plan *p, dm_arch arch, bool decode,
                                dm_variant *v);

#endif
