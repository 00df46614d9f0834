/* reference.h: the CPU references (float64) the GPU tests hold kernels to. They read and write
 * HOST pointers laid out as the entry points' checks describe, and check their arguments as the
 * entry points do. Production code never calls them: reference/ sits above api/. */
#ifndef DM_REFERENCE_H
#define DM_REFERENCE_H

#include "fwd_plan.h"
#include "fwd_varlen_plan.h"
#include "wmask_plan.h"

/* SPEC §2 (and §4 when window > 0): writes o (in the plan's dtype) and lse (if present). */
dm_status dm_ref_fwd(dm_ctx *ctx, const dm_fwd_args *host_args);

/* SPEC §4 as dm_window_mask, on the host: compares the values themselves (not the integer
 * images), sorting each row; *applied as in dm_window_mask. */
dm_status dm_ref_window_mask(dm_ctx *ctx, const dm_window_mask_args *host_args, int *applied);

/* The pieces dm_ref_fwd is made of. dm_ref_attention: attention for a plan dm_fwd_check
 * accepted, window ignored (ref_attention.c). dm_ref_fwd_window: mask' by dm_ref_window_mask,
 * then dm_ref_attention on it, as dm_fwd_window does on the GPU (ref_fwd_window.c). */
dm_status dm_ref_attention(dm_ctx *ctx, const dm_fwd_args *host_args, const dm_fwd_plan *plan);
dm_status dm_ref_fwd_window(dm_ctx *ctx, const dm_fwd_args *host_args);

/* SPEC §5 as dm_fwd_varlen, for a plan dm_fwd_varlen_check accepted, every buffer on the host
 * (cu_seqlens too: entries outside [0, total] or decreasing are DM_ERR_INVALID_ARG). Sequence b's
 * lengths are clamped as the kernels clamp them: rows past max_seqlen_q are not written, keys past
 * max_seqlen_k are ignored, causal aligns the clamped lengths bottom-right. A sequence with no
 * queries writes nothing; one with no keys gives o = 0 and lse = +inf. window > 0:
 * DM_ERR_UNSUPPORTED (ref_fwd_varlen.c). */
dm_status dm_ref_fwd_varlen(dm_ctx *ctx, const dm_fwd_varlen_args *host_args,
                            const dm_fwd_varlen_plan *plan);

#endif
