/* reference.h: the CPU references (float64) the GPU tests hold kernels to. They read and write
 * HOST pointers laid out as the entry points' checks describe, and check their arguments as the
 * entry points do. Production code never calls them: reference/ sits above api/. */
#ifndef DM_REFERENCE_H
#define DM_REFERENCE_H

#include "bwd_plan.h"
#include "bwd_varlen_plan.h"
#include "fwd_plan.h"
#include "fwd_varlen_plan.h"
#include "wmask_plan.h"
#include "wmask_varlen_plan.h"

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
 * queries writes nothing; one with no keys gives o = 0 and lse = +inf. window > 0: mask' by
 * dm_ref_window_mask_varlen, then the same on it, as dm_fwd_varlen does (ref_fwd_varlen.c). */
dm_status dm_ref_fwd_varlen(dm_ctx *ctx, const dm_fwd_varlen_args *host_args,
                            const dm_fwd_varlen_plan *plan);

/* Sequence b of a varlen batch on the host (ref_fwd_varlen.c): its first query q0 and key k0,
 * and its lengths clamped as the kernels clamp them (Lq at most max_seqlen_q, Lk at most
 * max_seqlen_k; the tokens past them are neither read nor written). */
typedef struct dm_ref_varlen_seq {
    int64_t q0, k0, Lq, Lk;
} dm_ref_varlen_seq;

/* Both cu_seqlens of plan p on the host, checked by dm_ref_check_cu_seqlens. */
dm_status dm_ref_check_varlen_seqlens(dm_ctx *ctx, const char *call, const dm_fwd_varlen_plan *p,
                                      const int32_t *cu_q, const int32_t *cu_k);
dm_ref_varlen_seq dm_ref_varlen_sequence(const dm_fwd_varlen_plan *p, const int32_t *cu_q,
                                         const int32_t *cu_k, int64_t b);

/* A sequence's dense B = 1 view of the packed buffers (the dense plan's strides, 0 for the
 * batch; the returned pointer at the sequence's first element). Rows: a (token, head, D) tensor
 * of plan strides vs from token first_token. Masks, biases (and dbias): layout Q's rows start at
 * the sequence's first query; layout K's one value per key serves every query (row stride 0). */
void *dm_ref_varlen_rows(void *data, dm_dtype dtype, const int64_t vs[2], int64_t first_token,
                         int64_t ds[3]);
void *dm_ref_varlen_mb_view(void *data, dm_dtype dtype, dm_layout layout, const int64_t vs[3],
                            const dm_ref_varlen_seq *seq, int64_t ds[4]);

/* The whole forward call of sequence seq as a dense one: da's pointers (shapes left 0) and dp,
 * the plan dm_ref_attention reads. */
void dm_ref_varlen_view(const dm_fwd_varlen_args *a, const dm_fwd_varlen_plan *p,
                        const dm_ref_varlen_seq *seq, dm_fwd_args *da, dm_fwd_plan *dp);

/* dm_window_mask_varlen on the host (cu_seqlens too, checked as dm_ref_fwd_varlen checks them):
 * each row's b' gathered from its own sequence's keys and handed to dm_ref_wmask_row;
 * *applied as in dm_window_mask_varlen (ref_window_mask_varlen.c). */
dm_status dm_ref_window_mask_varlen(dm_ctx *ctx, const dm_window_mask_varlen_args *host_args,
                                    int *applied);

/* The pieces the window-mask references share (ref_window_mask.c). A row entry: b'_j and j. */
typedef struct dm_ref_ranked {
    double value;
    int64_t j;
} dm_ref_ranked;

/* SPEC §4's selection on one row of n keys whose b' the caller put in row[j].value (min_value
 * where masked): out[j * out_step] for j < n = among the `window` largest (NaN first, ties to the
 * lower j) and not min_value, or (relu) b'_j > 0; then block smoothing when block_size > 0.
 * Reorders row. */
void dm_ref_wmask_row(dm_ref_ranked *row, int64_t n, int window, bool relu, int block_size,
                      double min_value, unsigned char *out, int64_t out_step);

/* Element off of a tensor of dtype (f16, bf16, f32) as a double: a bias, or q, k, v rows. */
double dm_ref_value_at(dm_dtype dtype, const void *t, int64_t off);

/* Element (b, h, i, j) of a mask or bias with a plan's normalized strides (0 where it
 * broadcasts) and head divisor (ref_attention.c). */
int64_t dm_ref_mb_offset(const int64_t s[4], int64_t head_div, int64_t b, int64_t h, int64_t i,
                         int64_t j);

/* cu_seqlens on the host (ref_seqlens.c): B + 1 entries within [0, total] and non-decreasing, else
 * DM_ERR_INVALID_ARG naming `name` and the entry (messages start with `call`). */
dm_status dm_ref_check_cu_seqlens(dm_ctx *ctx, const char *call, const char *name,
                                  const int32_t *cu, int64_t B, int64_t total);

/* The window half of dm_ref_fwd_varlen (ref_fwd_varlen_window.c): for a call with window > 0,
 * mask' into a buffer it allocates (*mask, freed by the caller; NULL when the window keeps every
 * key) and *plain = the call without a window on mask'. */
dm_status dm_ref_fwd_varlen_window_mask(dm_ctx *ctx, const dm_fwd_varlen_args *host_args,
                                        dm_fwd_varlen_args *plain, unsigned char **mask);

/* The float64 math of SPEC §2 and §3 on dense double arrays (ref_attention_bwd.c), the core the
 * backward reference converts its tensors into and the finite-difference tests check. Layouts,
 * all contiguous: q, o, do, dq (B, Lq, H, D); k, v, dk, dv (B, Lk, Hkv, D); mask and bias (either
 * NULL) expanded to (B, H, Lq, Lk); lse (B, H, Lq). Causal is bottom-right aligned. */
typedef struct dm_ref_attn64 {
    int64_t B, H, Hkv, Lq, Lk, D;
    double scale, softcap; /* softcap 0: off */
    bool causal;
    const double *q, *k, *v, *bias;
    const unsigned char *mask;
} dm_ref_attn64;

/* What the backward writes: dq, dk, dv (dk, dv summed over each K/V head's group of query
 * heads) and, when dscore is not NULL, the gradient of each score's bias term, (B, H, Lq, Lk). */
typedef struct dm_ref_grads64 {
    double *dq, *dk, *dv, *dscore;
} dm_ref_grads64;

/* o (and lse when not NULL) of attention on a; a row with no visible key gives o = 0 and
 * lse = +inf. DM_ERR_NOMEM is the only failure. */
dm_status dm_ref_attention64_fwd(dm_ctx *ctx, const dm_ref_attn64 *a, double *o, double *lse);

/* The gradients of sum(o * dout) (dout laid out as o): a row with no visible key, and every
 * masked score, contributes exactly 0. DM_ERR_NOMEM is the only failure. */
dm_status dm_ref_attention64_bwd(dm_ctx *ctx, const dm_ref_attn64 *a, const double *dout,
                                 dm_ref_grads64 *g);

/* SPEC §3 as dm_bwd (bwd_plan.h) on host tensors, after the same check: dq, dk, dv and (when
 * given) dbias from the float64 core; lse is checked but not read (the core recomputes the
 * probabilities exactly). */
dm_status dm_ref_bwd(dm_ctx *ctx, const dm_bwd_args *host_args);

/* The conversions of dm_ref_bwd for a plan dm_bwd_check accepted (or a dense view of one, as
 * dm_ref_bwd_varlen builds per sequence): host_args gives only the data pointers and bias's shape
 * (dbias's reduction); `call` names the call in an out-of-memory message. */
dm_status dm_ref_bwd_attention(dm_ctx *ctx, const char *call, const dm_bwd_args *host_args,
                               const dm_bwd_plan *plan);

/* SPEC §3 and §5 as dm_bwd_varlen (bwd_varlen_plan.h) on host tensors (cu_seqlens too), after
 * the same check: each sequence unpacked to dense float64 arrays, the float64 core, the gradients
 * back in their dtypes (ref_bwd_varlen.c). Rows outside every sequence are not written. */
dm_status dm_ref_bwd_varlen(dm_ctx *ctx, const dm_bwd_varlen_args *host_args);

/* dbias of a bias of `shape` ({B|1}, {H|Hkv|1}, {Lq|1}, Lk) from dscore (B, H, Lq, Lk): summed over
 * every dimension the bias broadcasts, and over the query heads sharing a stored head. */
void dm_ref_reduce_bias_grad(const dm_ref_attn64 *a, const double *dscore, const int64_t shape[4],
                             double *dbias);

#endif
