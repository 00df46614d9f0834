/* varlen_case.h: one varlen attention problem (SPEC §5) for the GPU tests of dm_fwd_varlen
 * (test_gpu_varlen.c) and dm_bwd_varlen (test_gpu_bwd_varlen.c): sequence lengths, heads, dtype,
 * mask and bias layouts in; random q, k, v, mask and bias, cu_seqlens, and o and lse allocations
 * with guard rows out, kept twice (host and device, gpu_util.h). Query-layout columns past a
 * sequence's keys hold what must never be read: a true mask, a bias of VL_HOT_BIAS. Builds
 * inputs only: running the kernels, the references and the checks is each test's own. */
#ifndef DM_VARLEN_CASE_H
#define DM_VARLEN_CASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmattn.h"
#include "gen.h"
#include "gpu_util.h"

#define VL_MAX_SEQS 80
/* Tokens past total_q (total_k) in the output allocations: never written. */
#define VL_GUARD_ROWS 8
/* Query-layout columns past a sequence's keys are visible with this bias: a kernel that reads
 * them as keys of the sequence lands far off the reference. */
#define VL_HOT_BIAS 30.0f

typedef struct vl_case {
    int B;
    int len_q[VL_MAX_SEQS], len_k[VL_MAX_SEQS];
    int64_t max_q, max_k; /* max_seqlen_q/k; 0 = the longest sequence's */
    int H, Hkv, D;
    dm_dtype dtype;
    dm_layout mask, bias;
    int mask_heads, bias_heads; /* 1, Hkv or H */
    bool bias_f32;
    double mask_density;
    bool causal;
    float softcap;
    bool head_major;    /* key-based mask/bias stored (Hm, total_k): strides (1, total_k) */
    int window;         /* dm_fwd_varlen_args.window: top-k per sequence through the helper */
    int tail_q, tail_k; /* tokens past the last sequence: total_q = cu_seqlens_q[B] + tail_q */
} vl_case;

/* A case's tensors. o and lse are allocated with VL_GUARD_ROWS tokens past total_q (lse: columns
 * past each head's row of total_q), never poisoned or uploaded here. o_ref and lse_ref are for
 * a test that computes the forward reference (NULL until it does; vl_free frees them). */
typedef struct vl_data {
    gpu_twin q, k, v, o, lse, mask, bias, cu_q, cu_k;
    int32_t cu_q_host[VL_MAX_SEQS + 1], cu_k_host[VL_MAX_SEQS + 1];
    int64_t total_q, total_k, max_q, max_k;
    size_t o_elems, lse_elems; /* of the allocations, guard rows included */
    uint16_t *o_ref;
    float *lse_ref;
} vl_data;

/* n random 16-bit codes of dtype t (f16 or bf16), four per draw, straight from bits (no float
 * conversion: the 524288-key case fills a billion elements): random sign and mantissa, magnitude
 * in [2^-8, 1). */
void vl_fill16(uint16_t *buf, dm_dtype t, size_t n, uint64_t *s);

/* A twin of `rows` x row_elems packed elements described as shape (rank dims, the first one
 * `shape[0]`), allocated for alloc_rows >= shape[0] rows: the rows past the shape are guard rows
 * (and never 0 bytes are allocated). */
void vl_twin(gpu_twin *w, dm_dtype t, int rank, const int64_t *shape, int64_t alloc_rows);

/* A mask or bias: query-based (rank 3, shape (total_q, Hm, max_k)) packed, key-based (rank 2,
 * shape (total_k, Hm)) packed or, head_major, stored (Hm, total_k) and described as (total_k, Hm)
 * with strides (1, total_k): keys contiguous. */
void vl_mb_twin(gpu_twin *w, dm_dtype t, dm_layout l, const int64_t *shape, bool head_major);

/* Element e of token row t (e < row_elems: head x max_k + key for layout q, head for layout k)
 * of a twin vl_mb_twin made: packed, or by its strides. */
size_t vl_mb_index(const gpu_twin *w, int64_t t, int64_t e, int64_t row_elems);

/* The sequence token t belongs to (cu: B + 1 host entries); B for a token past cu[B]. */
int vl_seq_of(const int32_t *cu, int B, int64_t t);

/* One line naming every field of c (max_q/max_k as given: 0 = the longest), for messages. */
void vl_describe(const vl_case *c, char *buf, size_t n);

/* Fresh inputs for c from seed, uploaded (q, k, v, cu_seqlens, mask, bias); o and lse only
 * allocated. The query-layout mask and bias rows of tail tokens are drawn like columns past the
 * keys (true, VL_HOT_BIAS). */
void vl_build(vl_data *d, const vl_case *c, uint64_t seed);

/* Every twin and reference buffer of d freed; d zeroed. */
void vl_free(vl_data *d);

/* The forward call's arguments on the device, or (host) on the host copies; path, num_splits
 * and scale left 0. */
dm_fwd_varlen_args vl_args(const vl_data *d, const vl_case *c, bool host);

#endif
