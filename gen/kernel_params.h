/* kernel_params.h: the parameter structs kernels take by value, each field listed once.
 *
 * The library fills these structs (api/fwd_launch.c, api/window_mask.c); the templates declare the
 * same structs in CUDA. Both come from the lists below: the C struct is made from them here,
 * and emit.c hands the templates each field's name, CUDA type, count, byte offset (offsetof on
 * this C struct) and comment, plus the struct's size (require("host_layout") in Lua).
 * templates/kernel_params.lua emits the CUDA struct from that table and a static_assert on each
 * field's type and offset, so a template whose struct differs from the library's (two fields
 * swapped, a type changed) fails to compile, naming the field.
 *
 * X(type, name, count, doc): type is U64, I64, I32, U32 or F32 (CUDA u64, i64, int, u32,
 * float); count is 1 (a scalar) or 3 (an array). 8-byte fields first, so host and device
 * layouts agree without padding. The layouts are ABI: templates built against them (embedded or
 * under DMATTN_TEMPLATE_DIR) must keep working, so a change here is a new field at the end. */
#ifndef DM_KERNEL_PARAMS_H
#define DM_KERNEL_PARAMS_H

#include <stdint.h>

/* dm_fwd, the dense forward family (templates/attn_fwd.lua): struct FwdParams. */
#define DM_FWD_PARAMS(X) \
    X(U64, q, 1, "") \
    X(U64, k, 1, "") \
    X(U64, v, 1, "") \
    X(U64, mask, 1, "") \
    X(U64, bias, 1, "") \
    X(U64, o, 1, "") \
    X(U64, lse, 1, "") \
    X(I64, q_stride, 3, "batch, row, head") \
    X(I64, k_stride, 3, "batch, row, head") \
    X(I64, v_stride, 3, "batch, row, head") \
    X(I64, o_stride, 3, "batch, row, head") \
    X(I64, mask_stride, 3, "batch, head, row (keys contiguous)") \
    X(I64, bias_stride, 3, "batch, head, row (keys contiguous)") \
    X(I64, lse_stride, 3, "batch, head, row") \
    X(I64, mask_head_div, 1, "H / heads stored in mask, bias") \
    X(I64, bias_head_div, 1, "H / heads stored in mask, bias") \
    X(I32, B, 1, "") \
    X(I32, H, 1, "") \
    X(I32, Hkv, 1, "") \
    X(I32, Lq, 1, "") \
    X(I32, Lk, 1, "") \
    X(I32, group, 1, "H / Hkv") \
    X(F32, scale_log2, 1, "scale * log2(e)") \
    X(F32, softcap, 1, "") \
    X(I32, bias_f32, 1, "bias stored as fp32, not q's dtype") \
    X(I32, bias_vec16, 1, \
      "bias rows start 16-byte aligned: a q-layout bias tile can go by cp.async (k layout: " \
      "the base is, and the key row is staged from the aligned address before it)") \
    X(I32, mask_pairs, 1, "mask rows start 2-byte aligned: two keys per load") \
    X(I32, mask_vec16, 1, \
      "mask rows start 16-byte aligned: a q-layout mask tile can go by cp.async (k layout: " \
      "the base is, and the key row is staged from the aligned address before it)") \
    X(F32, scale, 1, "scores with a bias or softcap stage stay in natural units") \
    X(F32, softcap_k, 1, "2 * log2(e) / softcap: tanh on ex2 (0 when softcap is off)") \
    X(U64, cu_seqlens_q, 1, "varlen: int32 (B + 1) prefix of query counts; batch index = token") \
    X(U64, cu_seqlens_k, 1, "varlen: int32 (B + 1) prefix of key counts") \
    X(U64, o_part, 1, "decode split (blockIdx.x): fp32 partial o (splits, rows, H, D); 0: o") \
    X(U64, lse_part, 1, "decode split: fp32 partial lse (splits, rows, H)") \
    X(I64, mask_key_stride, 1, "elements from one key to the next (1 but in varlen key layout)") \
    X(I64, bias_key_stride, 1, "elements from one key to the next (1 but in varlen key layout)") \
    X(I64, part_stride, 1, "decode split: rows * H, the partial lse entries of one split") \
    X(I32, total_q, 1, "varlen: q's first dimension (cu_seqlens_q clamped to it)") \
    X(I32, total_k, 1, "varlen: k's first dimension") \
    X(I32, max_seqlen_q, 1, "varlen: a sequence's query count clamped to it") \
    X(I32, max_seqlen_k, 1, "varlen: a sequence's key count clamped to it") \
    X(I32, split_keys, 1, "decode: keys per split, a multiple of kBlockN") \
    X(I32, mask_words, 1, \
      "varlen key layout, keys strided: a tile staged a 4-byte word a key (key stride and base " \
      "4-byte aligned)") \
    X(I32, bias_words, 1, \
      "varlen key layout, keys strided: a tile staged a 4-byte word a key (key stride and base " \
      "4-byte aligned)") \
    X(I32, split_order, 1, \
      "varlen decode: 1 = blockIdx.x is a work item, longest first (decode_item); 0 = the grid " \
      "is (split, K/V head, sequence)") \
    X(I32, n_splits, 1, "decode: the partials' splits (the combine reads this many)")
#define DM_FWD_PARAMS_BYTES 392

/* dm_window_mask, the top-k window-mask family (templates/window_mask.lua): struct WmaskParams. */
#define DM_WMASK_PARAMS(X) \
    X(U64, bias, 1, "") \
    X(U64, mask, 1, "") \
    X(U64, out, 1, "") \
    X(U64, scratch, 1, "split rows: per-slice histograms, then per-row select state") \
    X(I64, bias_stride, 3, "batch, head, row of out's (b, h, i); 0 where the tensor broadcasts") \
    X(I64, mask_stride, 3, "batch, head, row of out's (b, h, i); 0 where the tensor broadcasts") \
    X(I64, out_stride, 3, "batch, head, row of out's (b, h, i); 0 where the tensor broadcasts") \
    X(I32, n_heads, 1, "out.shape[1], out.shape[2]: blockIdx.x = (b * n_heads + h) * n_rows + i") \
    X(I32, n_rows, 1, "out.shape[1], out.shape[2]: blockIdx.x = (b * n_heads + h) * n_rows + i") \
    X(I32, Lk, 1, "") \
    X(I32, mask_pad, 1, "keys [0, mask_pad) are visible without a mask byte (2-D Lq mask)") \
    X(I32, block_size, 1, "smoothing block (smooth variants)") \
    X(U32, min_key, 1, "order-preserving image of min_value in the bias dtype") \
    X(I32, resident, 1, "the row's keys fit in shared memory: global memory is read once") \
    X(I32, vec, 1, "bias, mask and out rows aligned for 8-key vector loads and stores") \
    X(I32, phase, 1, "0: one block per row; > 0: a stage of a split row") \
    X(I32, n_slices, 1, \
      "split: blocks per row; a count or write pass has blockIdx.x = row * n_slices + slice, " \
      "a pick pass blockIdx.x = row") \
    X(I32, slice_keys, 1, \
      "split: keys per slice, a multiple of kVec (the last slice may be short)") \
    X(I32, split_rows, 1, "split: rows in the call (the scratch layout)") \
    X(U64, cu_seqlens_q, 1, "varlen: int32 (n_seqs + 1) query offsets") \
    X(U64, cu_seqlens_k, 1, "varlen: int32 (n_seqs + 1) key offsets") \
    X(I64, bias_key_stride, 1, \
      "varlen: elements from one key to the next; the strides are then query token, head, " \
      "first key of the sequence (0 where the layout has none)") \
    X(I64, mask_key_stride, 1, "varlen: as bias_key_stride") \
    X(I64, out_key_stride, 1, "varlen: as bias_key_stride") \
    X(I32, n_seqs, 1, "varlen: B, the sequences") \
    X(I32, total_q, 1, "varlen: q tokens (cu_seqlens_q clamped to it)") \
    X(I32, total_k, 1, "varlen: keys (cu_seqlens_k clamped to it)") \
    X(I32, max_seqlen_k, 1, "varlen: a row's keys clamped to it; a query-based out's columns") \
    X(I32, window, 1, "varlen: a row of at most this many keys keeps its mask") \
    X(I32, out_by_key, 1, \
      "varlen: out is key-based, blockIdx.x = sequence * n_heads + head (else query token)")
#define DM_WMASK_PARAMS_BYTES 216

/* The split-KV combine family (templates/attn_combine.lua): struct CombineParams. Row t of the
 * partials is query token t (dense: b * Lq + i; varlen: the global index); head h. */
#define DM_COMBINE_PARAMS(X) \
    X(U64, o_part, 1, "fp32 (n_splits, rows, H, D): each split's normalized o") \
    X(U64, lse_part, 1, "fp32 (n_splits, rows, H): each split's lse, -inf when it saw nothing") \
    X(U64, o, 1, "the output, q's dtype") \
    X(U64, lse, 1, "fp32 output or 0") \
    X(I64, o_stride, 3, "batch, row, head") \
    X(I64, lse_stride, 3, "batch, head, row") \
    X(I64, part_stride, 1, "rows * H") \
    X(I32, n_splits, 1, "") \
    X(I32, rows, 1, "tokens: B * Lq (dense) or total_q (varlen)") \
    X(I32, H, 1, "") \
    X(I32, Lq, 1, "rows per batch entry: token t is (t / Lq, t % Lq)") \
    X(I32, split_lanes, 1, \
      "thread groups sharing a pair's splits (a power of two, at most block_m), merged in " \
      "shared memory: many splits over few pairs (one long row)")
#define DM_COMBINE_PARAMS_BYTES 112

/* dm_bwd, the backward family (templates/attn_bwd.lua): struct BwdParams. One kernel, launched
 * once per phase (0: rows, 1: keys, 2: dbias, 3: dq from the fp32 scratch); element (b, h, i, j)
 * of mask, bias and dbias is at b * stride[0] + (h / head_div) * stride[1] + i * stride[2] +
 * j * key_stride, strides 0 where the tensor broadcasts. */
#define DM_BWD_PARAMS(X) \
    X(U64, q, 1, "") \
    X(U64, k, 1, "") \
    X(U64, v, 1, "") \
    X(U64, o, 1, "") \
    X(U64, dout, 1, "") \
    X(U64, lse, 1, "fp32 (B, H, Lq), the forward's") \
    X(U64, mask, 1, "") \
    X(U64, bias, 1, "") \
    X(U64, dq, 1, "") \
    X(U64, dk, 1, "") \
    X(U64, dv, 1, "") \
    X(U64, dbias, 1, "0: not asked for") \
    X(U64, row_dot, 1, "fp32 scratch (B, H, Lq): dO_i . O_i, written by phase 0") \
    X(U64, dq_accum, 1, \
      "0: dq by phase 0 (deterministic mode, or an engine without reductions); else fp32 " \
      "scratch (B, H, Lq, D) that phase 0 zeroes, phase 1 adds each tile's dq to and phase 3 " \
      "turns into dq") \
    X(I64, q_stride, 3, "batch, row, head") \
    X(I64, k_stride, 3, "batch, row, head") \
    X(I64, v_stride, 3, "batch, row, head") \
    X(I64, o_stride, 3, "batch, row, head") \
    X(I64, dout_stride, 3, "batch, row, head: dO and the gradients") \
    X(I64, dq_stride, 3, "batch, row, head: dO and the gradients") \
    X(I64, dk_stride, 3, "batch, row, head: dO and the gradients") \
    X(I64, dv_stride, 3, "batch, row, head: dO and the gradients") \
    X(I64, lse_stride, 3, "batch, head, row") \
    X(I64, mask_stride, 3, "batch, head, row") \
    X(I64, bias_stride, 3, "batch, head, row") \
    X(I64, dbias_stride, 3, "batch, head, row") \
    X(I64, mask_key_stride, 1, "") \
    X(I64, bias_key_stride, 1, "") \
    X(I64, dbias_key_stride, 1, "") \
    X(I64, mask_head_div, 1, "H / heads stored") \
    X(I64, bias_head_div, 1, "H / heads stored (dbias: the same heads)") \
    X(I32, B, 1, "") \
    X(I32, H, 1, "") \
    X(I32, Hkv, 1, "") \
    X(I32, Lq, 1, "") \
    X(I32, Lk, 1, "") \
    X(I32, group, 1, "H / Hkv") \
    X(F32, scale, 1, "") \
    X(F32, softcap, 1, "0 = off") \
    X(I32, bias_f32, 1, "bias (and dbias) stored as fp32, not q's dtype") \
    X(I32, phase, 1, \
      "0: query rows: row_dot, dq; 1: keys: dk, dv (and dq's reductions); 2: a warp a dbias " \
      "element; 3: dq = scale dq_accum") \
    X(I32, dbias_B, 1, "dbias's sizes: B or 1, heads (H, Hkv or 1), Lq or 1") \
    X(I32, dbias_H, 1, "dbias's sizes: B or 1, heads (H, Hkv or 1), Lq or 1") \
    X(I32, dbias_Lq, 1, "dbias's sizes: B or 1, heads (H, Hkv or 1), Lq or 1") \
    X(I32, dbias_fused, 1, \
      "1: no dbias reduction crosses blocks: phase 1 writes a key-layout dbias (column sums), " \
      "phase 0 a query-layout one (ds; phase 1 when dq_accum is set), and phase 2 is not " \
      "launched") \
    X(U64, cu_seqlens_q, 1, \
      "varlen: int32 (B + 1) prefix of query counts; each block views its sequence (the " \
      "tensors' batch stride is then the token stride)") \
    X(U64, cu_seqlens_k, 1, "varlen: int32 (B + 1) prefix of key counts") \
    X(I32, total_q, 1, "varlen: q's first dimension (cu_seqlens_q clamped to it)") \
    X(I32, total_k, 1, "varlen: k's first dimension") \
    X(I32, max_seqlen_q, 1, "varlen: a sequence's query count clamped to it") \
    X(I32, max_seqlen_k, 1, \
      "varlen: a sequence's key count clamped to it; a query-layout dbias's columns") \
    X(U64, query_rows, 1, \
      "0, or fp32 scratch of 2 kTile floats a query tile of each (b, h): lse log2(e), then " \
      "row_dot, written by phase 0 for the keys phase's bulk copies (a kernel with tma_maps)") \
    X(U64, key_split, 1, \
      "0, or int32 scratch of a kernel with key_split (attn_bwd_split.lua), zeroed before phase " \
      "0: the key blocks some query sees, each one's rank + 1, each one's parts done") \
    X(U64, key_partials, 1, \
      "with key_split: fp32 scratch, key_split_cap x key_split slots of a key block's dk, dv") \
    X(I32, key_slots, 1, \
      "with key_split: the keys phase's blocks resident at once (SMs x blocks an SM)") \
    X(I32, key_split_cap, 1, "with key_split: the most marked key blocks key_partials holds") \
    X(U64, dq_turns, 1, \
      "0, or u64 scratch of a kernel with dq_turns (attn_bwd_turns.lua), turn_words words of " \
      "bits a query tile of each (b, h), zeroed by phase 0: the deterministic mode's order of " \
      "dq's sums") \
    X(U64, dbias_part, 1, \
      "phase 2 (dense): 0, or the partials phases 0 and 1 wrote as their fused dbias (bias's " \
      "dtype, (B, H / dbias_head_div, dbias_Lq, Lk)), which it sums into dbias") \
    X(I32, dbias_head_div, 1, \
      "query heads a head of the fused dbias (phases 0, 1) sums: bias_head_div, or with " \
      "dbias_part a divisor of group") \
    X(I32, turn_shift, 1, \
      "with dq_turns: log2 of the K/V heads whose key blocks phase 1's launch order " \
      "interleaves (attn_bwd_turns.lua: grid (key blocks << turn_shift, Hkv >> turn_shift, B))")
#define DM_BWD_PARAMS_BYTES 584

/* The C and CUDA spellings of each type; DM_PARAM_DIM_<count> the array part of a member. */
#define DM_PARAM_CTYPE_U64 uint64_t
#define DM_PARAM_CTYPE_I64 int64_t
#define DM_PARAM_CTYPE_I32 int32_t
#define DM_PARAM_CTYPE_U32 uint32_t
#define DM_PARAM_CTYPE_F32 float
#define DM_PARAM_CUDA_U64 "u64"
#define DM_PARAM_CUDA_I64 "i64"
#define DM_PARAM_CUDA_I32 "int"
#define DM_PARAM_CUDA_U32 "u32"
#define DM_PARAM_CUDA_F32 "float"
#define DM_PARAM_DIM_1
#define DM_PARAM_DIM_3 [3]
#define DM_PARAM_MEMBER(type, name, count, doc) DM_PARAM_CTYPE_##type name DM_PARAM_DIM_##count;

typedef struct dm_fwd_params {
    DM_FWD_PARAMS(DM_PARAM_MEMBER)
} dm_fwd_params;

typedef struct dm_wmask_params {
    DM_WMASK_PARAMS(DM_PARAM_MEMBER)
} dm_wmask_params;

typedef struct dm_combine_params {
    DM_COMBINE_PARAMS(DM_PARAM_MEMBER)
} dm_combine_params;

typedef struct dm_bwd_params {
    DM_BWD_PARAMS(DM_PARAM_MEMBER)
} dm_bwd_params;

/* The sizes templates from before a change were written against. */
_Static_assert(sizeof(dm_fwd_params) == DM_FWD_PARAMS_BYTES, "dm_fwd_params layout changed");
_Static_assert(sizeof(dm_wmask_params) == DM_WMASK_PARAMS_BYTES, "dm_wmask_params layout changed");
_Static_assert(sizeof(dm_combine_params) == DM_COMBINE_PARAMS_BYTES,
               "dm_combine_params layout changed");
_Static_assert(sizeof(dm_bwd_params) == DM_BWD_PARAMS_BYTES, "dm_bwd_params layout changed");

#endif
