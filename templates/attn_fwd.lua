-- attn_fwd.lua: the dense forward attention family (SPEC §2), one kernel per variant.
--
-- FlashAttention-2 structure (fp16/bf16 in, fp32 accumulate) on one of two engines, picked by
-- the tuning row: mma.sync m16n8k16 with ldmatrix (attn_fwd_mma.lua) or wgmma from swizzled
-- shared memory (attn_fwd_wgmma.lua, sm_90a). A block owns kBlockM query rows of one (batch,
-- head). Keys are walked in tiles of kBlockN; K and V tiles stream in by cp.async (V of this tile
-- and K of the next while the tensor cores work); the online softmax runs in registers. Before a
-- tile's K is requested, a block-wide vote over its mask (and the causal diagonal) skips it whole
-- when no entry is visible: no K, V or bias bytes are read for it, no MMA runs (the vote, scans
-- and staged mask tiles: attn_fwd_mask.lua; bias reads and tiles: attn_fwd_bias.lua). Tiles past
-- the causal diagonal are never visited. A feature that is off is absent from the text.
local common = require("cuda_common")
local errors = require("errors")
local kernel_params = require("kernel_params")
local limits = require("limits")  -- from the library (gen/dm_limits.h)
local ptx = require("cuda_ptx")
local tune = require("tune")
local bias = require("attn_fwd_bias")  -- bias_at, the staged bias tile and its add
local mask = require("attn_fwd_mask")  -- the vote, skip scans, staged mask tile, next_tile
-- the engine: operand layout and GEMMs, chosen by the tuning row's `mma`
local engines = { ["mma.sync"] = require("attn_fwd_mma"), wgmma = require("attn_fwd_wgmma") }

local M = {}

-- Every number and switch of a variant's kernel, from the variant and its tuning row (the tile
-- shape and the knobs, tuning.lua). The text below only reads it.
local function plan(v, row)
  local engine = engines[row.mma]
  if not engine then
    error("tuning.lua: unknown mma engine '" .. tostring(row.mma) .. "'", 0)
  end
  local pl = {
    engine = engine, entry = common.entry_name(v.key), d = v.d, d_pad = (v.d + 15) // 16 * 16,
    block_n = row.block_n, warps = row.warps, m_tiles = row.m_tiles,
    block_m = 16 * row.m_tiles * row.warps, threads = 32 * row.warps,
    fast_loads = row.fast_loads == true,
    scan_batched = row.scan_batched == true,     -- per-query mask only
    vote_on_barrier = row.vote_on_barrier == true,  -- per-query mask only
    -- __launch_bounds__: the row's blocks an SM (ptxas caps registers to fit them), else the
    -- engine's
    launch_bounds = row.min_blocks and "kThreads, " .. row.min_blocks or engine.launch_bounds,
    pv_overlap = row.pv_overlap ~= false,  -- the P V step (pv_steps)
  }
  engine.check(row, pl.d_pad)
  -- Shared memory, in this order: [slack] Q, K, V x2, [bias x2] [mask] [ballots]. The operand
  -- tiles' alignment (wgmma: 1024) is declared on the dynamic array or reached by slack.
  pl.align_declared = engine.smem_align > 0 and row.align_declared == true
  pl.smem_decl_align = pl.align_declared and engine.smem_align or 16
  pl.smem_slack = (engine.smem_align > 0 and not pl.align_declared) and engine.smem_align or 0
  -- staged bias: rows of block_n values plus 16 bytes (banks), two buffers; at 2 bytes a value
  -- an fp32 bias is read from global instead
  pl.bias_rows = v.bias == "q" and pl.block_m or v.bias == "k" and 1 or 0
  -- A varlen key-layout bias: 4 bytes a key without the bank padding (one row), for strided keys
  -- staged a word a key. Shared memory decides blocks an SM here: the sm90a 64x128 key-layout
  -- kernels hold two at 115712 bytes or less (2 x (smem + 1 KB reserved) <= 228 KB), which the
  -- dense ones meet and 512 more bytes of pitch broke (0.7x: bench/NOTES.md, issue 15 session 10).
  pl.bias_pitch = v.bias == "none" and 0 or row.bias_stage_f32 and 4 * row.block_n + 16 or
    (v.varlen and v.bias == "k") and 4 * row.block_n or 2 * row.block_n + 16
  pl.bias_smem = 2 * pl.bias_rows * pl.bias_pitch
  pl.mask_rows = v.mask == "q" and pl.block_m or v.mask == "k" and 1 or 0
  -- staged rows of block_n bytes plus 16 (banks); a varlen key-layout mask: 4 bytes a key, for
  -- strided keys staged a word a key
  pl.mask_pitch = (v.varlen and v.mask == "k") and 4 * row.block_n or row.block_n + 16
  pl.mask_smem = pl.mask_rows * pl.mask_pitch
  -- the key-mask scan's ballots go in the dynamic array where its alignment is declared (a static
  -- array would move its base), else static (attn_fwd_mask.lua)
  pl.scan_smem = (v.mask == "k" and pl.align_declared) and 2 * row.warps * 4 or 0
  pl.smem_bytes = pl.smem_slack + engine.smem_operands(pl.block_m, row.block_n, pl.d_pad) +
    pl.bias_smem + pl.mask_smem + pl.scan_smem
  -- a bias or softcap stage leaves scores in natural units: ex2 then takes log2(e), not the scale
  pl.softmax_scale = (v.bias ~= "none" or v.softcap) and "kLog2e" or "p.scale_log2"
  return pl
end

-- Named constants, each stated once; the shared-memory layout checked against the plan's total.
local function constants(v, pl)
  local bias_on, mask_on = v.bias ~= "none", v.mask ~= "none"
  local bias_at = "kSmemQ + 3 * kSmemKV"
  local mask_at = bias_on and "kSmemBiasAt + kSmemBias" or bias_at
  local total = { "kSmemQ", "3 * kSmemKV" }
  if pl.smem_slack > 0 then
    table.insert(total, 1, "kSmemSlack")
  end
  total[#total + 1] = bias_on and "kSmemBias" or nil
  total[#total + 1] = mask_on and "kSmemMask" or nil
  total[#total + 1] = pl.scan_smem > 0 and "kSmemScan" or nil
  return table.concat({
    common.aligned({
      "constexpr int kHeadDim = " .. pl.d .. ";",
      { "constexpr int kHeadDimPad = " .. pl.d_pad .. ";",
        "rounded up to 16: whole k-steps and ldmatrix pairs" },
      { "constexpr int kBlockN = " .. pl.block_n .. ";", "keys per tile: also the skip granularity" },
      "constexpr int kWarps = " .. pl.warps .. ";",
      { "constexpr int kMTiles = " .. pl.m_tiles .. ";", "16-row MMA tiles per warp" },
      "constexpr int kBlockM = 16 * kMTiles * kWarps;",
      "constexpr int kThreads = 32 * kWarps;",
      { "constexpr int kNTiles = kBlockN / 8;", "score n-tiles per warp row" },
      "constexpr int kDTiles = kHeadDimPad / 8;",
      "constexpr int kKSteps = kHeadDimPad / 16;",
      { "constexpr int kChunks = kHeadDim / 8;", "16-byte chunks of a global row" },
      { "constexpr bool kFastLoads = " .. tostring(pl.fast_loads) .. ";",
        "interior K/V tiles skip row checks (tuning.lua)" },
    }),
    common.fill([=[
static_assert(kBlockN % 16 == 0, "whole k-steps of P V");
static_assert((kBlockN & (kBlockN - 1)) == 0 && (kWarps & (kWarps - 1)) == 0,
              "powers of two: the fast tile loaders map threads to (row, chunk) exactly");
static_assert(kHeadDim % $step == 0 && kHeadDim <= $max, "head_dim a multiple of $step up to $max");]=],
      { step = limits.head_dim_step, max = limits.head_dim_max }),
    pl.engine.layout,
    (pl.softmax_scale == "kLog2e" and "constexpr float kLog2e = 1.4426950408889634f;\n" or "") ..
      "constexpr float kLn2 = 0.6931471805599453f;",
    common.aligned({
      bias_on and { "constexpr int kBiasRows = " .. pl.bias_rows .. ";",
        "kBlockM (q layout) or 1 (k)" },
      bias_on and { "constexpr int kBiasPitch = " .. pl.bias_pitch .. ";",
        pl.bias_pitch % 32 == 16 and "bytes per staged row (+16: banks)" or
        "bytes per staged row: 4 a key (one row)" },
      bias_on and { "constexpr int kSmemBiasAt = " .. bias_at .. ";",
        "this tile's and the next one's" },
      bias_on and "constexpr int kSmemBias = 2 * kBiasRows * kBiasPitch;",
      mask_on and { "constexpr int kMaskRows = " .. pl.mask_rows .. ";",
        "kBlockM (q layout) or 1 (k)" },
      mask_on and (pl.mask_pitch == pl.block_n + 16 and
        { "constexpr int kMaskPitch = kBlockN + 16;", "bytes per staged row (+16: banks)" } or
        { "constexpr int kMaskPitch = 4 * kBlockN;", "a word a key (strided keys): one row" }),
      mask_on and { "constexpr int kSmemMaskAt = " .. mask_at .. ";", "the candidate tile's mask" },
      mask_on and "constexpr int kSmemMask = kMaskRows * kMaskPitch;",
      pl.scan_smem > 0 and { "constexpr int kSmemScanAt = kSmemMaskAt + kSmemMask;",
        "the key-mask scan's ballots" },
      pl.scan_smem > 0 and "constexpr int kSmemScan = 2 * kWarps * 4;",
      { "constexpr int kSmemDeclAlign = " .. pl.smem_decl_align .. ";",
        "smem_raw's declared alignment" },
      pl.smem_slack > 0 and { "constexpr int kSmemSlack = " .. pl.smem_slack .. ";",
        "bytes to reach kSmemAlign, not declared" },
      "constexpr int kSmemBytes = " .. table.concat(total, " + ") .. ";",
      "static_assert(kSmemBytes == " .. pl.smem_bytes ..
        ", \"launch smem (from Lua) matches the layout\");",
    }),
  }, "\n")
end

-- The stages every kernel of the family shares, as device functions; $names are pieces().
local stages = [=[
$sequence_fn
$packed_q_fn
// Rows [r0, r0 + kRows) of a (row, D) matrix into a shared tile (the engine's layout:
// chunk_addr); rows at or past `limit` are zero-filled (cp.async with 0 source bytes reads
// nothing). When the block's threads cover whole rows, kRowGroup rows at a time, each thread's
// chunk and first row are fixed, so the loop only steps pointers; else the general index
// arithmetic runs.
template <int kRows>
__device__ __forceinline__ void load_rows(const u16 *base, i64 row_stride, int r0, int limit,
                                          u16 *dst)
{
    if constexpr (kThreads % kChunks == 0 && (kRows * kChunks) % kThreads == 0 &&
                  (kThreads / kChunks) % kRowGroup == 0) {
        constexpr int kRowStep = kThreads / kChunks;
        const int row = threadIdx.x / kChunks, ch = threadIdx.x % kChunks;
        const u16 *src = base + (i64)(r0 + row) * row_stride + ch * 8;
        const i64 src_step = kRowStep * row_stride;
        const u32 d = chunk_addr<kRows>(dst, row, ch);
        if (kFastLoads && r0 + kRows <= limit) {  // interior: no row checks
#pragma unroll
            for (int k = 0; k < kRows * kChunks / kThreads; k++) {
                cp_async16(d + k * kRowStep * kRowBytes, src, 16);
                src += src_step;  // (not src + k * src_step: hoisted 64-bit offsets spill)
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < kRows * kChunks / kThreads; k++) {
            const bool in = r0 + row + k * kRowStep < limit;
            cp_async16(d + k * kRowStep * kRowBytes, in ? src : base, in ? 16 : 0);
            src += src_step;
        }
    } else {
#pragma unroll
        for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
            const int r = c / kChunks, ch = c % kChunks;
            const bool in = r0 + r < limit;
            const u16 *src = in ? base + (i64)(r0 + r) * row_stride + ch * 8 : base;
            cp_async16(chunk_addr<kRows>(dst, r, ch), src, in ? 16 : 0);
        }
    }
}
$zero_pad_tiles

// Tile n's K into shared memory by cp.async$k_tile_what, as one group
// (empty past the last tile).
$k_tile_signature
{
    if (n < n_end) {
        load_rows<kBlockN>(k_base, p.k_stride[1], n, kv_limit, sK);
        $k_tile_bias
        $k_tile_mask
    }
    cp_async_commit();
}

// Accumulators and running row statistics, zeroed.
__device__ __forceinline__ void init_accumulators(float (&acc_o)[kMTiles][kDTiles][4],
                                                  float (&row_max)[kMTiles][2],
                                                  float (&row_sum)[kMTiles][2])
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++) {
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            row_max[mt][hf] = -kInf;
            row_sum[mt][hf] = 0.f;
        }
#pragma unroll
        for (int dt = 0; dt < kDTiles; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc_o[mt][dt][e] = 0.f;
    }
}
$score_stage_fns

// Keys past Lk to -inf; only edge tiles pay for the checks.$edge_what
$edge_signature
{
    $edge_test
        return;
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                $edge_row
                const int j = n0 + nt * 8 + 2 * (lane % 4) + e % 2;
                if (j >= p.Lk$edge_causal)
                    s[mt][nt][e] = -kInf;
            }
}

// Online softmax of a tile's scores, in place (s becomes P, unnormalized): row_max and row_sum
// take the tile in; alpha is what the row's acc_o must be scaled by. ex2 takes
// fma(s, scale_log2, -max * scale_log2): scale_log2 is p.scale_log2 while scores are raw dot
// products (no stage ran), log2(e) once a stage scaled them. A row with nothing visible yet keeps
// max -inf and uses 0 in its place, so -inf - -inf never reaches ex2.
__device__ __forceinline__ void online_softmax(float (&s)[kMTiles][kNTiles][4],
                                               float (&row_max)[kMTiles][2],
                                               float (&row_sum)[kMTiles][2],
                                               float (&alpha)[kMTiles][2], float scale_log2)
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float mx = row_max[mt][hf];
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt++)
                mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hf], s[mt][nt][2 * hf + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float use = mx == -kInf ? 0.f : mx * scale_log2;
            alpha[mt][hf] = fast_exp2(fmaf(row_max[mt][hf], scale_log2, -use));
            row_max[mt][hf] = mx;
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt++) {
                s[mt][nt][2 * hf] = fast_exp2(fmaf(s[mt][nt][2 * hf], scale_log2, -use));
                s[mt][nt][2 * hf + 1] = fast_exp2(fmaf(s[mt][nt][2 * hf + 1], scale_log2, -use));
                sum += s[mt][nt][2 * hf] + s[mt][nt][2 * hf + 1];
            }
            row_sum[mt][hf] = row_sum[mt][hf] * alpha[mt][hf] + sum;
        }
}

// acc_o to the row maxima online_softmax just took in.
__device__ __forceinline__ void rescale_o(float (&acc_o)[kMTiles][kDTiles][4],
                                          const float (&alpha)[kMTiles][2])
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int dt = 0; dt < kDTiles; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc_o[mt][dt][e] *= alpha[mt][e / 2];
}

// P as 16-bit pairs in the A fragment layout of P V: a k16 step is two score n-tiles.
__device__ __forceinline__ void pack_p(const float (&s)[kMTiles][kNTiles][4],
                                       u32 (&pp)[kMTiles][kBlockN / 16][4])
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; kk++) {
            pp[mt][kk][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
            pp[mt][kk][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
            pp[mt][kk][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
            pp[mt][kk][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
}

$store_fn]=]

-- o and lse, for the tiled kernel's rows (one head's queries m0, m0 + 1, ...) and the decode
-- kernel's packed ones; $names from store_pieces().
local store = [=[
$store_doc
$store_signature
{
    const int lane = threadIdx.x % 32;
    $store_setup
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float sum = row_sum[mt][hf];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            $store_row
            const float inv = sum > 0.f ? 1.f / sum : 0.f;
            $store_partial
            $store_orow
#pragma unroll
            for (int dt = 0; dt < kDTiles; dt++) {
                const int col = dt * 8 + 2 * (lane % 4);
                if (col < kHeadDim)
                    *(u32 *)(orow + col) =
                        pack2(acc_o[mt][dt][2 * hf] * inv, acc_o[mt][dt][2 * hf + 1] * inv);
            }
            if (p.lse && lane % 4 == 0) {
                float *lse = (float *)p.lse;
                lse[$lse_at] =
                    sum > 0.f ? (row_max[mt][hf] * scale_log2 + __log2f(sum)) * kLn2 : kInf;
            }
        }
}]=]


-- Decode with unequal lengths: blockIdx.x numbers a work item, longest first (bench/NOTES.md,
-- issue 15 session 11: the block schedule's fill 0.886 -> 0.987 for 64 sequences of 512..16384).
local decode_item_fn = [=[
// Decode over sequences of unequal lengths (p.split_order): blockIdx.x is a work item, not grid
// coordinates. A sequence's keys are full splits of p.split_keys and at most one partial split
// (its last keys; a sequence without keys has one empty item, which writes its rows' lse).
// Full items come first, in sequence order, then the partial ones, most tiles first (ties: the
// lower sequence), each item p.Hkv times, the K/V head fastest. So the device's last wave is the
// shortest blocks, not a few full ones next to idle slots. Every warp works it out alike (no
// barrier): its lanes take the sequences 32 at a time. Costs O(B / 32 x log2(tiles a split))
// reads of cu_seqlens_k (cached); the library orders so only for a few hundred sequences.
__device__ __forceinline__ int key_tiles_of(const FwdParams &p, int s)
{
    return (sequence_of(p, s).Lk + kBlockN - 1) / kBlockN;
}
// The sort key of sequence s's partial item: its tiles past its full splits, 0 for a sequence
// without keys, -1 when it has none (whole splits only).
__device__ __forceinline__ int partial_tiles_of(const FwdParams &p, int s, int per)
{
    const int t = key_tiles_of(p, s);
    return t == 0 ? 0 : (t % per ? t % per : -1);
}
// Partial items whose key is above v: the same in every lane.
__device__ int partials_above(const FwdParams &p, int per, int v)
{
    int n = 0;
    for (int s0 = 0; s0 < p.B; s0 += 32) {
        const int s = s0 + threadIdx.x % 32;
        n += __popc(__ballot_sync(~0u, s < p.B && partial_tiles_of(p, s, per) > v));
    }
    return n;
}
// Work item j's split, K/V head and sequence; seq = -1 when j is past the call's items.
struct DecodeItem {
    int split, hk, seq;
};
__device__ __forceinline__ DecodeItem decode_item(const FwdParams &p, int j)
{
    const int lane = threadIdx.x % 32, per = p.split_keys / kBlockN;
    int item = j / p.Hkv;
    DecodeItem it = {0, j % p.Hkv, -1};
    for (int s0 = 0; s0 < p.B; s0 += 32) {  // a full split: the sequence whose count passes item
        const int s = s0 + lane;
        const int full = s < p.B ? key_tiles_of(p, s) / per : 0;
        int upto = full;  // full splits of the chunk's sequences up to this lane's
        for (int d = 1; d < 32; d *= 2) {
            const int below = __shfl_up_sync(~0u, upto, d);
            upto += lane >= d ? below : 0;
        }
        const unsigned hit = __ballot_sync(~0u, item >= upto - full && item < upto);
        if (hit) {
            const int src = __ffs(hit) - 1;
            it.seq = s0 + src;
            it.split = item - __shfl_sync(~0u, upto - full, src);
            return it;
        }
        item -= __shfl_sync(~0u, upto, 31);
    }
    // a partial split: item is its rank, held by the least key v with at most item keys above
    if (item >= partials_above(p, per, -1))
        return it;
    int lo = 0, hi = per - 1;  // partials_above(p, per, per - 1) = 0
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (partials_above(p, per, mid) <= item)
            hi = mid;
        else
            lo = mid + 1;
    }
    item -= partials_above(p, per, lo);  // its rank among the keys equal to lo, sequence order
    for (int s0 = 0; s0 < p.B; s0 += 32) {
        const int s = s0 + lane;
        const bool eq = s < p.B && partial_tiles_of(p, s, per) == lo;
        const unsigned eqs = __ballot_sync(~0u, eq);
        const unsigned hit = __ballot_sync(~0u, eq && __popc(eqs & ((1u << lane) - 1)) == item);
        if (hit) {
            it.seq = s0 + __ffs(hit) - 1;
            it.split = key_tiles_of(p, it.seq) / per;
            return it;
        }
        item -= __popc(eqs);
    }
    return it;
}
]=]

-- The decode kernel's packed rows: row r of the tile is query r / group of the sequence, head
-- h + r % group (h: the group's first head), so the group's query heads share every K/V tile.
local packed_q = [=[
// The packed Q tile: rows from `rows` (= queries x group) on are zero-filled. Once per block.
__device__ __forceinline__ void load_q_packed(const FwdParams &p, const u16 *q_base, int rows,
                                              u16 *sQ)
{
    for (int c = threadIdx.x; c < kBlockM * kChunks; c += kThreads) {
        const int r = c / kChunks, ch = c % kChunks;
        const bool in = r < rows;
        const u16 *src = in ? q_base + (i64)(r / p.group) * p.q_stride[1] +
                                  (i64)(r % p.group) * p.q_stride[2] + ch * 8
                            : q_base;
        cp_async16(chunk_addr<kBlockM>(sQ, r, ch), src, in ? 16 : 0);
    }
}
]=]

-- The decode kernel's split partials: this split's normalized o and its lse (-inf: the split
-- saw nothing) to the fp32 buffers at token tok0 + i, for the combine kernel.
local store_partial = [=[
if (p.o_part) {
    const i64 slot = (i64)split * p.part_stride + (i64)(tok0 + i) * p.H + hh;
    float *orow = (float *)p.o_part + slot * kHeadDim;
#pragma unroll
    for (int dt = 0; dt < kDTiles; dt++) {
        const int col = dt * 8 + 2 * (lane % 4);
        if (col < kHeadDim)
            *(float2 *)(orow + col) = make_float2(acc_o[mt][dt][2 * hf] * inv,
                                                  acc_o[mt][dt][2 * hf + 1] * inv);
    }
    if (lane % 4 == 0)
        ((float *)p.lse_part)[slot] =
            sum > 0.f ? (row_max[mt][hf] * scale_log2 + __log2f(sum)) * kLn2 : -kInf;
    continue;
}]=]

-- Elementwise score stages (natural units in and out), each its own loop.
local each_score = [=[
$doc
__device__ __forceinline__ void $name(const FwdParams &p, float (&s)[kMTiles][kNTiles][4])
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                $body
            }
}]=]

local mask_scores = [=[
// The tile's mask bits applied (attn_fwd_mask.lua's vote gathered them); all-true tiles skip
// the loop.
__device__ __forceinline__ void mask_scores(MaskBits bits, float (&s)[kMTiles][kNTiles][4])
{
    if (__all_sync(0xffffffffu, bits == kMaskFull))
        return;
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (!mask_bit(bits, mt, e / 2, nt, e % 2))
                    s[mt][nt][e] = -kInf;
}]=]

-- The score stages of a tile in SPEC §2 order (scale, bias, softcap, mask, bounds and causal):
-- their functions, and the calls in the kernel.
local function score_stages(v, pl)
  local fns, calls = {}, {}
  if v.bias ~= "none" then
    calls[#calls + 1] = "add_bias_tile(p, sB_cur, bias_staged, bias_off, m0, n0, warp_row0, s);"
  elseif v.softcap then
    fns[#fns + 1] = common.fill(each_score, { name = "scale_scores",
      doc = "// Raw dot products to natural units (with a bias, its FMA does this).",
      body = "s[mt][nt][e] *= p.scale;" })
    calls[#calls + 1] = "scale_scores(p, s);"
  end
  if v.softcap then
    -- tanh(y) = 1 - 2 / (e^{2y} + 1) on ex2 and rcp: absolute error ~1e-7 (what the logit needs),
    -- few registers, no branches: with tanhf the mask-k.bias-q.softcap sm90a loop spilled 24 bytes.
    fns[#fns + 1] = common.fill(each_score, { name = "softcap_scores",
      doc = "// softcap * tanh(s / softcap), natural units in and out; tanh(y) = 1 - 2 / (e^{2y} + 1).",
      body = "const float e2y = fast_exp2(s[mt][nt][e] * p.softcap_k);\n" ..
        "s[mt][nt][e] = p.softcap * fmaf(-2.f, fast_rcp(e2y + 1.f), 1.f);" })
    calls[#calls + 1] = "softcap_scores(p, s);"
  end
  if v.mask ~= "none" then
    fns[#fns + 1] = mask_scores
    calls[#calls + 1] = "mask_scores(cur_bits, s);"
  end
  calls[#calls + 1] = v.causal and "mask_edges(p, diag, m0, n0, warp_row0, s);" or
    "mask_edges(p, n0, s);"
  return #fns > 0 and "\n" .. table.concat(fns, "\n\n") or "", table.concat(calls, "\n")
end

local kernel = [=[
extern "C" __global__ void __launch_bounds__($launch_bounds)
$entry(const FwdParams $param)
{
    extern __shared__ __align__(kSmemDeclAlign) unsigned char smem_raw[];
    $smem_pointers

    $coords
    const int warp = threadIdx.x / 32;
    const int warp_row0 = warp * 16 * kMTiles;
    $n_end
    const int kv_limit = max(0, n_end);  // keys from n_end on are seen by no row of the block
    const Operands lb = operands(sQ, sK, sV, warp_row0);
    const u16 *k_base = (const u16 *)p.k + $kb * p.k_stride[0] + hk * p.k_stride[2];
    const u16 *v_base = (const u16 *)p.v + $kb * p.v_stride[0] + hk * p.v_stride[2];
    $mask_base
    $bias_base
    $zero_pad_call
    $q_load
    cp_async_commit();
    $first_tile
    $k_tile_first

    float acc_o[kMTiles][kDTiles][4], row_max[kMTiles][2], row_sum[kMTiles][2];
    init_accumulators(acc_o, row_max, row_sum);
    $pipe_decl
    int v_buf = 0;  // the V buffer this tile loads into; the tile before used the other
    $loop_head
        load_rows<kBlockN>(v_base, p.v_stride[1], n0, kv_limit, sV + v_buf * (kSmemKV / 2));
        cp_async_commit();
        cp_async_wait<1>();  // Q, this tile's K and bias, the tile before's V have landed
        $async_fence
        $top_barrier
        $candidate

        float s[kMTiles][kNTiles][4];
        qk_issue(lb, s);
        $pv_under_qk
        qk_wait(s);
        // the stages of SPEC §2 in order: scale, bias, softcap, then mask, bounds and causal
        $score_stages

        $n_next
        __syncthreads();  // every warp is done reading sK
        $k_tile_next

        float alpha[kMTiles][2];
        online_softmax(s, row_max, row_sum, alpha, $softmax_scale);
        $pv_after_softmax
        __syncthreads();  // every warp is done with the tile before's V buffer and the bias tile
        v_buf ^= 1;
        n0 = n_next;
        $loop_advance
    $loop_tail
    cp_async_wait<0>();  // the last tile's V
    $async_fence
    __syncthreads();
    $pv_last
    $store
}]=]

-- The P V step, two ways (plan.pv_overlap). Overlapped (the default, for tiles whose matrix work
-- counts): the tile before's P V runs (on wgmma, asynchronously) under this tile's Q K^T and
-- softmax, its probabilities held in p_prev across the loop's top. In the tile (decode rows, bound
-- by memory): each tile's P V right after its softmax, on the V loaded at the loop's top; 16
-- registers fewer live across Q K^T (bench/NOTES.md, issue 15 session 13: what lets the d128
-- varlen decode kernel fit 168 registers, three blocks an SM).
local pv_steps = {
  [true] = {
    pipe_decl = [=[
// Software pipeline: the P V of the tile before runs (on wgmma, asynchronously) while this
// tile's scores go through the stages and the softmax. p_prev holds its probabilities.
u32 p_prev[kMTiles][kBlockN / 16][4];
bool have_prev = false;]=],
    pv_under_qk = [=[
if (have_prev)
    pv_issue(p_prev, lb, v_buf ^ 1, acc_o);
else
    pv_none();  // keeps qk_wait's count of groups in flight right]=],
    pv_after_softmax = [=[
pv_wait(acc_o);  // the tile before's P V is in: now rescale to this tile's row max
rescale_o(acc_o, alpha);
pack_p(s, p_prev);
have_prev = true;]=],
    pv_last = [=[
if (have_prev) {
    pv_issue(p_prev, lb, v_buf ^ 1, acc_o);
    pv_wait(acc_o);
}]=],
  },
  [false] = {
    pipe_decl = "// Each tile's P V runs in the tile, after its softmax (no probabilities carried).",
    pv_under_qk = "pv_none();  // keeps qk_wait's count of groups in flight right",
    pv_after_softmax = [=[
pv_wait(acc_o);  // nothing in flight (pv_none): keeps the engine's pairing
rescale_o(acc_o, alpha);
{
    u32 pp[kMTiles][kBlockN / 16][4];  // this tile's probabilities, used at once
    pack_p(s, pp);
    cp_async_wait<1>();  // this tile's V has landed (the next tile's K may not have)
    $async_fence
    __syncthreads();
    pv_issue(pp, lb, v_buf, acc_o);
    pv_wait(acc_o);
}]=],
    pv_last = "// every tile's P V is done",
  },
}

-- A key-layout row with adjacent keys starts wherever its batch entry, head or varlen sequence
-- does (a row of Lk keys: 16-byte aligned only when Lk is a multiple of 8 or 16): staged from the
-- 16-byte aligned address before it, read `lead` bytes in.
local stage_key_row = [=[
// One tile of a key row whose keys are adjacent (a key-layout mask or bias, kEsize bytes a key)
// into shared memory. A row starts at any key, so the 16-byte chunks come from the
// aligned address at or before key n0's, `lead` bytes early (the same for every tile: n0 x kEsize
// is a multiple of 16): the reader starts at dst + lead. The library checked that the tensor's
// base and head step are 16-byte aligned, so no chunk starts before the tensor. Keys from
// `limit` on read nothing and are zero (the chunk holding the last key byte by byte: a 16-byte
// cp.async with fewer source bytes is, to compute-sanitizer, a read of 16); the lead bytes are
// never read.
// Where a row's first key sits in its staged copy: the readers start there.
__device__ __forceinline__ int key_row_lead(const unsigned char *row)
{
    return (int)((u64)row & 15);
}
template <int kEsize>
__device__ __forceinline__ void stage_key_row(const unsigned char *row, int n0, int limit,
                                              unsigned char *dst)
{
    static_assert(kBlockN * kEsize % 16 == 0, "every tile's lead is the row's");
    constexpr int kRowChunks = kBlockN * kEsize / 16 + 1;  // + 1: the lead
    const int lead = key_row_lead(row);
    const unsigned char *src = row - lead + (i64)n0 * kEsize;
    const int end = lead + max(0, limit - n0) * kEsize;  // bytes from src that are keys < limit
    for (int c = threadIdx.x; c < kRowChunks; c += kThreads) {
        const int have = end - c * 16;  // bytes of this chunk that are keys < limit
        if (have >= 16) {
            cp_async16(smem_u32(dst + c * 16), src + c * 16, 16);
        } else {
            for (int e = 0; e < 16; e++)
                dst[c * 16 + e] = e < have ? src[c * 16 + e] : 0;
        }
    }
}]=]

-- A decode split past its sequence's keys (splits are sized from the longest sequence, or the
-- mean one's work): its rows' lse = -inf, which tells the combine to read none of its o, then out.
local empty_split = [=[
if (n_begin >= p.Lk && p.o_part) {  // no key of this sequence: nothing loaded, no o written
    for (int r = threadIdx.x; r < p.Lq * p.group; r += kThreads)
        ((float *)p.lse_part)[(i64)split * p.part_stride +
                              (i64)($tok0 + r / p.group) * p.H + h + r % p.group] = -kInf;
    return;
}]=]

-- The same for work items (varlen): no block is given a split past the sequence's last, so split
-- 0's block tells the combine about all of them (a sequence without keys: every split).
local empty_splits_ordered = [=[
if (p.o_part && (n_begin >= p.Lk || (p.split_order && split == 0))) {
    // splits without a key of this sequence: lse = -inf, so the combine reads none of their o
    const int first = n_begin >= p.Lk ? split : (p.Lk + p.split_keys - 1) / p.split_keys;
    const int last = p.split_order ? p.n_splits : split + 1;
    const int rows = p.Lq * p.group;
    for (int r = threadIdx.x; r < (last - first) * rows; r += kThreads) {
        const int x = first + r / rows, row = r % rows;
        const i64 slot = (i64)x * p.part_stride + (i64)($tok0 + row / p.group) * p.H;
        ((float *)p.lse_part)[slot + h + row % p.group] = -kInf;
    }
    if (n_begin >= p.Lk)  // nothing loaded, no o written
        return;
}]=]

-- The block's place in the grid and the names the kernel's bases use ($qb: the q-side batch index
-- or first token, $kb: the k side's; $mb, $bb: the mask's and bias's, by layout), by kind:
--   dense tiled: (query tile, head, batch); varlen tiled: (query tile, head, sequence), with p
--   the call's parameters carrying the sequence's counts; decode: (key split, K/V head, batch or
--   sequence), the group's heads x the sequence's queries packed into the one query tile.
local function coordinates(v, ps)
  local lines = {}
  local function add(text)
    lines[#lines + 1] = text
  end
  ps.param = v.varlen and "pv" or "p"
  if v.varlen then
    local seq = "blockIdx.z"
    if v.decode then
      add("// this block's split, K/V head and sequence: the grid's, or work item blockIdx.x")
      add("const DecodeItem it =")
      add("    pv.split_order ? decode_item(pv, blockIdx.x)")
      add("                   : DecodeItem{(int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z};")
      add("if (it.seq < 0)")
      add("    return;  // past the call's work items")
      add("const int split = it.split, hk = it.hk;")
      add("// for the store: kept here, they would hold two registers through the key loop (the")
      add("// grid's are special registers, read again for free); every warp writes the same")
      add("__shared__ int item_split, item_head;")
      add("item_split = split;")
      add("item_head = hk * pv.group;")
      seq = "it.seq"
    end
    add("// this block's sequence; p: the call's parameters with its query and key counts")
    add("FwdParams p = pv;")
    add("const Sequence sq = sequence_of(pv, " .. seq .. ");")
    add("p.Lq = sq.Lq;")
    add("p.Lk = sq.Lk;")
    ps.qb, ps.kb = "sq.q_tok", "sq.k_tok"
  else
    ps.qb, ps.kb = "b", "b"
  end
  ps.mb = v.mask == "k" and ps.kb or ps.qb
  ps.bb = v.bias == "k" and ps.kb or ps.qb
  local diag = "const int diag = p.Lk - p.Lq;  // query i sees keys up to i + diag"
  if v.decode then
    if not v.varlen then
      add("const int split = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;  // hk: the K/V head")
    end
    add("const int h = hk * p.group;  // the group's first query head: the Q, mask and bias bases")
    if v.mask ~= "none" or v.bias ~= "none" or v.causal then  -- the stages that take a tile's m0
      add("const int m0 = 0;  // one tile holds every row: the group's heads x the sequence's " ..
        "queries")
    end
    ps.n_end = (v.causal and diag .. "\n" or "") ..
      "const int n_begin = split * p.split_keys;  // this block's keys: [n_begin, n_end)\n" ..
      "const int n_end = min(p.Lk, n_begin + p.split_keys);\n" ..
      (v.varlen and common.fill(empty_splits_ordered, { tok0 = "sq.q_tok" }) or
        common.fill(empty_split, { tok0 = "b * p.Lq" }))
    ps.n_begin = "n_begin"
    ps.q_load = "load_q_packed(p, (const u16 *)p.q + " .. ps.qb ..
      " * p.q_stride[0] + h * p.q_stride[2],\n              p.Lq * p.group, sQ);"
    ps.store = common.call(4, "store_o_lse", { "p", ps.qb, v.varlen and "sq.q_tok" or "b * p.Lq",
      v.varlen and "item_head" or "h", v.varlen and "item_split" or "split", "warp_row0", "acc_o",
      "row_max", "row_sum", ps.softmax_scale }, ");")
    ps.store_doc = table.concat({
      "// o and lse of this thread's packed rows (query i = r / group, head h + r % group),",
      "// or with p.o_part the split's partials. An empty row (nothing visible) gets o = 0 exactly",
      "// and lse = +inf, so the backward pass gives it zero gradients." }, "\n")
    ps.store_signature = common.call(0, "__device__ __forceinline__ void store_o_lse",
      { "const FwdParams &p", "int b", "int tok0", "int h", "int split", "int warp_row0",
        "const float (&acc_o)[kMTiles][kDTiles][4]", "const float (&row_max)[kMTiles][2]",
        "const float (&row_sum)[kMTiles][2]", "float scale_log2" }, ")")
    ps.store_setup = "const int rows = p.Lq * p.group;"
    ps.store_row = "const int r = warp_row0 + mt * 16 + lane / 4 + hf * 8;\nif (r >= rows)\n" ..
      "    continue;\nconst int i = r / p.group, hh = h + r % p.group;"
    ps.store_partial = store_partial
    ps.store_orow = "u16 *orow =\n" ..
      "    (u16 *)p.o + b * p.o_stride[0] + (i64)i * p.o_stride[1] + hh * p.o_stride[2];"
    ps.lse_at = "b * p.lse_stride[0] + hh * p.lse_stride[1] + (i64)i * p.lse_stride[2]"
    ps.packed_q_fn = packed_q
  else
    add(v.causal and
      "const int m_block = gridDim.x - 1 - blockIdx.x;  // long rows first: a short tail" or
      "const int m_block = blockIdx.x;")
    add("const int m0 = m_block * kBlockM;")
    if v.varlen then
      add("const int h = blockIdx.y, hk = h / p.group;  // hk: the K/V head")
      add("if (m0 >= p.Lq)  // the grid covers max_seqlen_q: past this sequence's queries")
      add("    return;")
    else
      add("const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;  // hk: the K/V head")
    end
    ps.n_end = v.causal and diag .. "\n" ..
      "const int n_end = min(p.Lk, min(m0 + kBlockM, p.Lq) + diag);  // <= 0: every row is empty"
      or "const int n_end = p.Lk;"
    ps.n_begin = "0"
    -- (dense text as it was; a varlen first token's name takes the row stride to the next line)
    ps.q_load = "load_rows<kBlockM>((const u16 *)p.q + " .. ps.qb ..
      " * p.q_stride[0] + h * p.q_stride[2]," .. (v.varlen and "\n                   " or " ") ..
      "p.q_stride[1]," .. (v.varlen and " " or "\n                   ") .. "m0, p.Lq, sQ);"
    ps.store = "store_o_lse(p, " .. ps.qb .. ", h, m0, warp_row0, acc_o, row_max, row_sum, " ..
      ps.softmax_scale .. ");"
    ps.store_doc = table.concat({
      "// o and lse of this thread's rows. An empty row (nothing visible) gets o = 0 exactly and",
      "// lse = +inf, so the backward pass gives it zero gradients." }, "\n")
    ps.store_signature = [[
__device__ __forceinline__ void store_o_lse(const FwdParams &p, int b, int h, int m0,
                                            int warp_row0,
                                            const float (&acc_o)[kMTiles][kDTiles][4],
                                            const float (&row_max)[kMTiles][2],
                                            const float (&row_sum)[kMTiles][2], float scale_log2)]]
    ps.store_setup = "u16 *o = (u16 *)p.o + b * p.o_stride[0] + h * p.o_stride[2];"
    ps.store_row = "const int i = m0 + warp_row0 + mt * 16 + lane / 4 + hf * 8;\n" ..
      "if (i >= p.Lq)\n    continue;"
    ps.store_partial = ""
    ps.store_orow = "u16 *orow = o + (i64)i * p.o_stride[1];"
    ps.lse_at = "b * p.lse_stride[0] + h * p.lse_stride[1] + (i64)i * p.lse_stride[2]"
    ps.packed_q_fn = ""
  end
  ps.store_fn = common.fill(store, ps)
  ps.sequence_fn = v.varlen and common.sequence_fn("FwdParams") .. (v.decode and "\n" .. decode_item_fn or "") or ""
  ps.coords = table.concat(lines, "\n")
end

-- The pieces of stages and kernel for variant v under plan pl ($name -> text).
local function pieces(v, pl)
  local bias_on, mask_on = v.bias ~= "none", v.mask ~= "none"
  local padded = pl.d ~= pl.d_pad
  local ps = {
    entry = pl.entry, launch_bounds = pl.launch_bounds, async_fence = pl.engine.async_fence,
    softmax_scale = pl.softmax_scale,
  }
  for k, text in pairs(pv_steps[pl.pv_overlap]) do
    ps[k] = common.fill(text, { async_fence = pl.engine.async_fence })
  end
  -- shared memory and the block's coordinates
  ps.smem_pointers = common.aligned({
    pl.engine.smem_align > 0 and "unsigned char *smem = smem_raw + (0u - smem_u32(smem_raw)) % " ..
      "kSmemAlign;  // aligned" or "unsigned char *smem = smem_raw;",
    "u16 *sQ = (u16 *)smem;",
    "u16 *sK = (u16 *)(smem + kSmemQ);",
    { "u16 *sV = (u16 *)(smem + kSmemQ + kSmemKV);", "two buffers: this tile's, the one before" },
    bias_on and { "unsigned char *sB = smem + kSmemBiasAt;", "two: this tile's bias, the next's" },
    mask_on and { "unsigned char *sM = smem + kSmemMaskAt;", "the candidate tile's mask" },
  })
  coordinates(v, ps)
  ps.mask_base = mask_on and
    "const unsigned char *mask_bh = (const unsigned char *)p.mask + " .. ps.mb ..
    " * p.mask_stride[0] +\n" ..
    "                               (h / p.mask_head_div) * p.mask_stride[1];" ..
    (v.varlen and v.mask == "k" and
      "\n// a sequence starts at any key: two-byte reads only where its row is aligned (a staged\n" ..
      "// row starts at the aligned address before it: stage_key_row)\n" ..
      "p.mask_pairs = p.mask_pairs && (u64)mask_bh % 2 == 0;" or "") or ""
  ps.bias_base = bias_on and common.fill([=[
const i64 bias_off = $bb * p.bias_stride[0] + (h / p.bias_head_div) * p.bias_stride[1];
const unsigned char *bias_bh =
    (const unsigned char *)p.bias + bias_off * (p.bias_f32 ? 4 : 2);
unsigned char *sB_cur = sB, *sB_next = sB + kBiasRows * kBiasPitch;
// staged by cp.async: 16-byte aligned rows, and room for fp32 ones when kBiasPitch has it
$bias_staged]=],
    { bb = ps.bb, bias_staged = (v.varlen and v.bias == "k") and [[
// strided keys: a word a key; adjacent keys: the row from the aligned address before it
// (an fp32 row from before its first key needs 4 x kBlockN + 16 bytes: bias_stage_f32 rows)
const bool bias_staged =
    p.bias_words || (p.bias_vec16 && (!p.bias_f32 || kBiasPitch >= kBlockN * 4 + 16));]] or
      "const bool bias_staged = p.bias_vec16 && (!p.bias_f32 || kBiasPitch >= kBlockN * 4);" })
    or ""
  ps.zero_pad_tiles = padded and "\n" .. pl.engine.zero_pad .. [=[

// The padding columns of every operand tile: never loaded, read as zero by the products.
__device__ __forceinline__ void zero_pad_tiles(u16 *sQ, u16 *sK, u16 *sV)
{
    zero_pad_columns<kBlockM>(sQ);
    zero_pad_columns<kBlockN>(sK);
    zero_pad_columns<kBlockN>(sV);
    zero_pad_columns<kBlockN>(sV + kSmemKV / 2);
}]=] or ""
  ps.zero_pad_call = padded and "zero_pad_tiles(sQ, sK, sV);" or ""

  -- whether the candidate's mask is staged: 16-byte rows, or (strided varlen keys) a word a key
  local mask_staged = (v.varlen and v.mask == "k") and "p.mask_vec16 || p.mask_words" or
    "p.mask_vec16"
  -- K tiles, with the bias tile and the mask tile after them
  local params = { "const FwdParams &p", "const u16 *k_base", "u16 *sK", "int n", "int n_end",
    "int kv_limit" }
  local first = { "p", "k_base", "sK", "n0", "n_end", "kv_limit" }
  local next = { "p", "k_base", "sK", "n_next", "n_end", "kv_limit" }
  local what = {}
  if bias_on or mask_on then
    table.insert(params, "int m0")
    table.insert(first, "m0")
    table.insert(next, "m0")
  end
  if bias_on then
    what[#what + 1] = "\n// with its bias tile (with_bias)"
    for _, a in ipairs({ "const unsigned char *bias_bh", "unsigned char *sB", "bool with_bias" }) do
      table.insert(params, a)
    end
    for _, a in ipairs({ "bias_bh", "sB_cur", "bias_staged" }) do
      table.insert(first, a)
    end
    -- without a mask the next tile's bias went earlier, under all of this tile's work
    for _, a in ipairs({ "bias_bh", "sB_next", mask_on and "bias_staged && !cand_full" or "false" }) do
      table.insert(next, a)
    end
  end
  if mask_on then
    what[#what + 1] = (bias_on and " and" or "\n// with") .. " the mask tile after it (with_mask)"
    for _, a in ipairs({ "const unsigned char *mask_bh", "unsigned char *sM", "bool with_mask" }) do
      table.insert(params, a)
    end
    for _, a in ipairs({ "mask_bh", "sM", mask_staged }) do
      table.insert(first, a)
    end
    for _, a in ipairs({ "mask_bh", "sM", v.mask == "q" and "!cand_full && p.mask_vec16" or
        mask_staged }) do
      table.insert(next, a)
    end
  end
  ps.k_tile_what = table.concat(what)
  ps.k_tile_signature = common.call(0, "__device__ __forceinline__ void load_k_tile", params, ")")
  ps.k_tile_bias = bias_on and "if (with_bias)\n    load_bias_tile(p, bias_bh, m0, n, sB);" or ""
  ps.k_tile_mask = mask_on and "if (with_mask && n + kBlockN < n_end)\n" ..
    "    load_mask_tile(p, mask_bh, m0, n + kBlockN, sM);" or ""
  ps.k_tile_first = common.call(4, "load_k_tile", first, ");")
  ps.k_tile_next = common.call(8, "load_k_tile", next, ");")

  -- score stages and the edge tile's bounds (and causal diagonal)
  ps.score_stage_fns, ps.score_stages = score_stages(v, pl)
  -- diag from the kernel, not recomputed: recomputed, fwd.d128.bf16.mask-q.bias-k.w0.causal.sm90a
  -- spilled 8 bytes
  local edge_params = v.causal and { "const FwdParams &p", "int diag", "int m0", "int n0", "int warp_row0",
    "float (&s)[kMTiles][kNTiles][4]" } or { "const FwdParams &p", "int n0",
    "float (&s)[kMTiles][kNTiles][4]" }
  ps.edge_signature = common.call(0, "__device__ __forceinline__ void mask_edges", edge_params, ")")
  ps.edge_what = v.causal and "\n// Causal: keys past i + diag too (right of the diagonal)." or ""
  ps.edge_test = v.causal and "if (n0 + kBlockN <= p.Lk && n0 + kBlockN - 1 <= m0 + diag)" or
    "if (n0 + kBlockN <= p.Lk)"
  ps.edge_row = not v.causal and "" or v.decode and
    "const int i = (warp_row0 + mt * 16 + lane / 4 + (e / 2) * 8) / p.group;  // packed" or
    "const int i = m0 + warp_row0 + mt * 16 + lane / 4 + (e / 2) * 8;"
  ps.edge_causal = v.causal and " || j > i + diag" or ""

  -- the walk over key tiles: by the vote with a mask, else every tile up to n_end
  if mask_on then
    ps.first_tile = "MaskBits cur_bits = 0, next_bits = 0;\n" ..
      "int n0 = next_tile(p, mask_bh, " .. ps.n_begin .. ", n_end, warp_row0, m0, cur_bits);"
    -- n0 comes from a vote: a loop entered on it made ptxas serialize the wgmma pipeline (C7520)
    ps.loop_head = "// One pass even with no visible tile (a loop entered on the vote made ptxas " ..
      "serialize\n// wgmma, C7520): it loads nothing, and the mask stage (bits 0) masks every " ..
      "score.\ndo {"
    ps.loop_tail = "} while (n0 < n_end);"
    -- The next tile's mask is read before this tile's QK^T, so its latency hides under the
    -- MMAs; only when that tile is all false does the vote walk on synchronously.
    ps.top_barrier = (v.mask == "q" and pl.vote_on_barrier) and [=[
const int cand = n0 + kBlockN;  // the candidate next tile, its mask staged in sM
const bool cand_full =
    __syncthreads_and(p.mask_vec16 && cand < n_end && mask_chunks_full(sM));]=] or (v.varlen and v.mask == "k") and [=[
__syncthreads();
const int cand = n0 + kBlockN;  // the candidate next tile, its mask staged in sM
const bool cand_full =
    cand < n_end && (p.mask_words ? mask_words_full(mask_bh, sM)
                                  : p.mask_vec16 && mask_row_full(mask_bh, sM));]=] or v.mask == "k" and [=[
__syncthreads();
const int cand = n0 + kBlockN;  // the candidate next tile, its mask staged in sM
const bool cand_full = p.mask_vec16 && cand < n_end && mask_row_full(mask_bh, sM);]=] or [=[
__syncthreads();
const int cand = n0 + kBlockN;  // the candidate next tile, its mask staged in sM
const bool cand_full = p.mask_vec16 && cand < n_end && mask_tile_full(sM);]=]
    local early = {}
    if bias_on then
      early[#early + 1] = "    if (bias_staged)\n        load_bias_tile(p, bias_bh, m0, cand, sB_next);"
    end
    if v.mask == "q" then
      early[#early + 1] = "    if (cand + kBlockN < n_end)\n" ..
        "        load_mask_tile(p, mask_bh, m0, cand + kBlockN, sM);"
    end
    ps.candidate = "bool cand_any = false;\nMaskBits cand_bits = kMaskFull;\nif (!cand_full)\n" ..
      "    cand_bits = candidate_bits(p, mask_bh, sM, cand, n_end, warp_row0, m0, cand_any);" ..
      (#early == 0 and "" or "\n// An all-true candidate is the next tile, known now: its loads " ..
        "go under all of this tile.\nif (cand_full) {  // block-uniform\n" ..
        table.concat(early, "\n") .. "\n    cp_async_commit();\n}")
    ps.n_next = common.call(8, "const int n_next = next_after", { "p", "mask_bh", "cand",
      "cand_full", "cand_any", "cand_bits", "n_end", "warp_row0", "m0", "next_bits" }, ");")
  else
    ps.first_tile = "int n0 = " .. ps.n_begin .. ";"
    ps.loop_head = "while (n0 < n_end) {"
    ps.loop_tail = "}"
    ps.top_barrier = "__syncthreads();"
    ps.candidate = bias_on and
      "if (bias_staged && n0 + kBlockN < n_end)  // the next tile's bias, under all of this tile\n" ..
      "    load_bias_tile(p, bias_bh, m0, n0 + kBlockN, sB_next);\ncp_async_commit();" or ""
    ps.n_next = "const int n_next = n0 + kBlockN;"
  end
  local advance = {}
  if mask_on then
    advance[#advance + 1] = "cur_bits = next_bits;"
  end
  if bias_on then
    advance[#advance + 1] = "unsigned char *sB_done = sB_cur;  // this tile's bias buffer takes " ..
      "the one after next\nsB_cur = sB_next;\nsB_next = sB_done;"
  end
  ps.loop_advance = table.concat(advance, "\n")
  return ps
end

local function check_variant(v)
  if v.dir ~= "fwd" then
    errors.unsupported("attn_fwd.lua emits direction fwd, not " .. v.dir)
  end
  if v.window ~= 0 then
    errors.unsupported("top-k windows (w" .. v.window .. ") are not built yet")
  end
  if v.decode and (v.mask == "q" or v.bias == "q") then
    errors.unsupported("the decode path packs a group's heads and queries into one tile: its " ..
      "mask and bias must be absent or one row per key (mask-k, bias-k), not per query")
  end
end

function M.emit(v)
  check_variant(v)
  local row = tune.lookup("fwd", v.d, v.arch, v.causal,
    { mask = v.mask, bias = v.bias, decode = v.decode })
  local pl = plan(v, row)
  local ps = pieces(v, pl)
  local buf = common.buffer()
  common.header(buf, v, "attn_fwd.lua", pl.engine.summary(pl))
  buf.add(kernel_params.struct("FwdParams"))  -- from the library's layout (gen/kernel_params.h)
  buf.add(constants(v, pl))
  common.conversions(buf, v.dtype)
  ptx.emit(buf, v.dtype, pl.engine.name == "mma.sync")  -- ldmatrix.trans, mma.sync: that engine's
  if v.varlen and (v.mask == "k" or v.bias == "k") then
    buf.add(ptx.cp_async4)  -- strided key rows staged a word a key
  end
  if v.mask == "k" or v.bias == "k" then
    buf.add(stage_key_row)  -- adjacent keys from the aligned address before the row's first
  end
  pl.engine.emit_ptx(buf, v.dtype, pl)
  buf.add(pl.engine.tile_access)
  buf.add(pl.engine.gemms)
  if v.bias ~= "none" then
    buf.add(bias.text(v))
  end
  if v.mask ~= "none" then
    buf.add(mask.text(v, pl))
  end
  buf.add(stages, ps)
  buf.add(kernel, ps)
  return { source = buf.text(), entry = pl.entry, threads = pl.threads, block_m = pl.block_m,
           block_n = pl.block_n, smem_bytes = pl.smem_bytes }
end

return M
