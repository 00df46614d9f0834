/* wmask_varlen_plan.h: a dm_window_mask_varlen call (dmattn.h) after validation, in the one form
 * the launcher, dm_fwd_varlen's window path and the CPU reference all read. */
#ifndef DM_WMASK_VARLEN_PLAN_H
#define DM_WMASK_VARLEN_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "dmattn.h"
#include "gen.h"

/* bias, mask and out each have a layout, Q (rank 3, a row per query token) or K (rank 2, a value
 * per key), and strides in elements {token, head, key}: element (token t of the tensor's first
 * dimension, head h, key j of the row) is at t*stride[0] + h*stride[1] + j*stride[2]. For Q the
 * token is the query's global index and stride[2] the column stride (1); for K it is the global
 * index of the row's first key and stride[2] = stride[0]. A head dimension of size 1 has stride 0
 * (broadcast over out's heads). */
typedef struct dm_wmask_varlen_plan {
    bool applied;         /* false: window 0 or max_seqlen_k <= window; only the sizes are set */
    int64_t B;            /* sequences: cu_seqlens_q.shape[0] - 1 */
    int64_t total_q, total_k, max_seqlen_q, max_seqlen_k;
    int window;
    bool relu;
    int block_size;       /* 0 = no smoothing */
    dm_dtype bias_dtype;  /* f16, bf16 or f32 */
    int64_t heads;        /* Hm': out's heads, the broadcast of bias's and mask's */
    dm_layout bias_layout;
    int64_t bias_stride[3];
    dm_layout mask_layout; /* NONE when absent */
    int64_t mask_stride[3];
    dm_layout out_layout; /* K iff bias and mask (if present) are K */
    bool has_out;
    int64_t out_stride[3];
    uint32_t min_bits;    /* min_value in bias's dtype (low 16 bits for f16/bf16) */
    double min_value;     /* the same value, exactly */
    uint32_t min_key;     /* its order-preserving image, as the kernel computes keys */
} dm_wmask_varlen_plan;

/* Rows of out, one selection each: (query token, head) for a query-based out, (sequence, head)
 * for a key-based one. */
static inline int64_t dm_wmask_varlen_rows(const dm_wmask_varlen_plan *p)
{
    return (p->out_layout == DM_LAYOUT_K ? p->B : p->total_q) * p->heads;
}

/* Bytes of a packed out: total_k x Hm' (key-based) or total_q x Hm' x max_seqlen_k. */
static inline size_t dm_wmask_varlen_out_bytes(const dm_wmask_varlen_plan *p)
{
    return (size_t)(p->out_layout == DM_LAYOUT_K ? p->total_k * p->heads
                                                 : p->total_q * p->heads * p->max_seqlen_k);
}

/* An out of the plan's shape at data: query-based packed (total_q, Hm', max_seqlen_k); key-based
 * stored head-major ((Hm', total_k) memory with strides (1, total_k)), so that each head's keys
 * are contiguous for the forward that reads it (README: about 4x faster on the decode path than
 * packed (total_k, Hm')). */
static inline dm_tensor dm_wmask_varlen_packed_out(const dm_wmask_varlen_plan *p, void *data)
{
    dm_tensor t = {.data = data, .dtype = DM_BOOL};
    if (p->out_layout == DM_LAYOUT_K) {
        t.rank = 2;
        t.shape[0] = p->total_k;
        t.shape[1] = p->heads;
        t.strides[0] = 1;
        t.strides[1] = p->total_k;
    } else {
        t.rank = 3;
        t.shape[0] = p->total_q;
        t.shape[1] = p->heads;
        t.shape[2] = p->max_seqlen_k;
        t.strides[0] = p->heads * p->max_seqlen_k;
        t.strides[1] = p->max_seqlen_k;
        t.strides[2] = 1;
    }
    return t;
}

/* Checks args (dmattn.h, dm_window_mask_varlen_args) and fills plan. need_out = false skips out
 * (dm_fwd_varlen's window path sizes its scratch from the plan first). Messages start with
 * `call`. Touches no memory behind the tensors' pointers (cu_seqlens included). */
dm_status dm_wmask_varlen_check(dm_ctx *ctx, const char *call,
                                const dm_window_mask_varlen_args *args, bool need_out,
                                dm_wmask_varlen_plan *plan);

/* The kernel variant an applied plan needs on arch: wmask...varlen (window_mask.lua). */
void dm_wmask_varlen_plan_variant(const dm_wmask_varlen_plan *plan, dm_arch arch,
                                  dm_variant *out);

/* Queues the kernel for an applied plan whose out is set (ctx entered by the caller). */
dm_status dm_wmask_varlen_launch(dm_ctx *ctx, const char *call,
                                 const dm_window_mask_varlen_args *args,
                                 const dm_wmask_varlen_plan *plan, CUstream stream);

#endif
