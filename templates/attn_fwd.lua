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
-- the engine: operand layout, tile loads and GEMMs, chosen by the tuning row's `mma`
local engines = { ["mma.sync"] = require("attn_fwd_mma"), wgmma = require("attn_fwd_wgmma") }

local M = {}

local constants = [=[
constexpr int kHeadDim = $d;
constexpr int kHeadDimPad = $d_pad;     // rounded up to 16: whole k-steps and ldmatrix pairs
constexpr int kBlockN = $block_n;       // keys per tile: also the skip granularity
constexpr int kWarps = $warps;
constexpr int kMTiles = $m_tiles;       // 16-row MMA tiles per warp
constexpr int kBlockM = 16 * kMTiles * kWarps;
constexpr int kThreads = 32 * kWarps;
constexpr int kNTiles = kBlockN / 8;    // score n-tiles per warp row
constexpr int kDTiles = kHeadDimPad / 8;
constexpr int kKSteps = kHeadDimPad / 16;
constexpr int kChunks = kHeadDim / 8;   // 16-byte chunks of a global row
// Interior K/V tiles load without row checks; not in per-query-mask variants, which sit at the
// register limit (with it, sm90a d128 mask-q.bias-q spilled 4 bytes, mask-q.bias-k.causal 12).
constexpr bool kFastLoads = $fast_loads;
$operand_layout
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kBlockN % 16 == 0, "whole k-steps of P V");
static_assert((kBlockN & (kBlockN - 1)) == 0 && (kWarps & (kWarps - 1)) == 0,
              "powers of two: the fast tile loaders map threads to (row, chunk) exactly");
static_assert(kHeadDim % $head_dim_step == 0 && kHeadDim <= $head_dim_max, "head_dim a multiple of $head_dim_step up to $head_dim_max");
constexpr int kBiasRows = $bias_rows;          // staged bias rows: kBlockM (q layout) or 1 (k)
constexpr int kBiasPitch = $bias_pitch;        // bytes per staged row (+16: banks)
constexpr int kSmemBias = 2 * kBiasRows * kBiasPitch;  // double buffered: this tile, the next
constexpr int kMaskRows = $mask_rows;          // staged mask rows: kBlockM (q layout) or 1 (k)
constexpr int kMaskPitch = kBlockN + 16;       // bytes per staged mask row; +16: banks
constexpr int kSmemMask = $mask_smem;
constexpr int kSmemScan = $scan_smem;          // the key-mask scan's ballots, after sM
constexpr int kSmemDeclAlign = $smem_decl_align;  // smem_raw's declared alignment
constexpr int kSmemSlack = $smem_slack;        // bytes to reach kSmemAlign when not declared
constexpr int kSmemBytes = kSmemSlack + kSmemQ + 3 * kSmemKV + kSmemBias + kSmemMask + kSmemScan;
static_assert(kSmemBytes == $smem_bytes, "launch smem (from Lua) matches the layout");]=]

-- Pieces every kernel body of this family shares (spliced in before the variables are filled).
-- Accumulators and running row statistics, zeroed.
local acc_init = [=[
    float acc_o[kMTiles][kDTiles][4];
    float row_max[kMTiles][2], row_sum[kMTiles][2];
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
]=]

-- A tile's scores through the SPEC §2 stages, in registers (s, this tile n0).
local score_stages_text = [=[
        // Scores in SPEC §2 order: scale, bias, softcap, then mask and causal; natural units. Each
        // stage is its own loop with its choices made once per tile, not per score.
$scale_bias
$softcap_stage
$mask_stage
        if (n0 + kBlockN > p.Lk$causal_edge) {  // only edge tiles pay for bounds and diagonal
#pragma unroll
            for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
                for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int i = m0 + warp_row0 + mt * 16 + lane / 4 + (e / 2) * 8;
                        const int j = n0 + nt * 8 + 2 * (lane % 4) + e % 2;
                        (void)i;
                        if (j >= p.Lk$causal_test)
                            s[mt][nt][e] = -kInf;
                    }
        }
]=]

-- Online softmax of s, then (once the P V in flight is in) acc_o rescaled and s packed to p_prev.
local softmax_pack = [=[
        // Online softmax; a row with nothing visible yet keeps max -inf and uses 0 in its place,
        // so -inf - -inf never reaches ex2. acc_o is rescaled by alpha once the P V in flight is in.
        float alpha[kMTiles][2];
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
                // kSoftmaxScale: p.scale_log2 while scores are raw dot products (no stage ran),
                // log2(e) once a stage scaled them; ex2(fma(s, kSoftmaxScale, -max * kSoftmaxScale)).
                const float use = mx == -kInf ? 0.f : mx * kSoftmaxScale;
                alpha[mt][hf] = fast_exp2(fmaf(row_max[mt][hf], kSoftmaxScale, -use));
                row_max[mt][hf] = mx;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNTiles; nt++) {
                    s[mt][nt][2 * hf] = fast_exp2(fmaf(s[mt][nt][2 * hf], kSoftmaxScale, -use));
                    s[mt][nt][2 * hf + 1] =
                        fast_exp2(fmaf(s[mt][nt][2 * hf + 1], kSoftmaxScale, -use));
                    sum += s[mt][nt][2 * hf] + s[mt][nt][2 * hf + 1];
                }
                row_sum[mt][hf] = row_sum[mt][hf] * alpha[mt][hf] + sum;
            }

        pv_wait(acc_o);  // the tile before's P V is in: now rescale to this tile's row max
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int dt = 0; dt < kDTiles; dt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc_o[mt][dt][e] *= alpha[mt][e / 2];
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int kk = 0; kk < kBlockN / 16; kk++) {  // as mma's A fragment: k16 = 2 n-tiles
                p_prev[mt][kk][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                p_prev[mt][kk][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                p_prev[mt][kk][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                p_prev[mt][kk][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }]=]

-- o and lse from the accumulators.
local epilogue = [=[
    // Empty row: o = 0 exactly and lse = +inf (backward then gives zero gradients).
    u16 *o = (u16 *)p.o + b * p.o_stride[0] + h * p.o_stride[2];
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float sum = row_sum[mt][hf];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const int i = m0 + warp_row0 + mt * 16 + lane / 4 + hf * 8;
            if (i >= p.Lq)
                continue;
            const float inv = sum > 0.f ? 1.f / sum : 0.f;
            u16 *orow = o + (i64)i * p.o_stride[1];
#pragma unroll
            for (int dt = 0; dt < kDTiles; dt++) {
                const int col = dt * 8 + 2 * (lane % 4);
                if (col < kHeadDim)
                    *(u32 *)(orow + col) =
                        pack2(acc_o[mt][dt][2 * hf] * inv, acc_o[mt][dt][2 * hf + 1] * inv);
            }
            if (p.lse && lane % 4 == 0) {
                float *lse = (float *)p.lse;
                lse[b * p.lse_stride[0] + h * p.lse_stride[1] + (i64)i * p.lse_stride[2]] =
                    sum > 0.f ? (row_max[mt][hf] * kSoftmaxScale + __log2f(sum)) * kLn2 : kInf;
            }
        }
}]=]

local kernel = [=[
extern "C" __global__ void __launch_bounds__($launch_bounds) $entry(const FwdParams p)
{
    extern __shared__ __align__(kSmemDeclAlign) unsigned char smem_raw[];
$smem_base
    u16 *sQ = (u16 *)smem;
    u16 *sK = (u16 *)(smem + kSmemQ);
    u16 *sV = (u16 *)(smem + kSmemQ + kSmemKV);  // two buffers: this tile's, the one before
    unsigned char *sB = smem + kSmemQ + 3 * kSmemKV;
    unsigned char *sM = sB + kSmemBias;
    (void)sB;
    (void)sM;

    const int m_block = $m_block;
    const int m0 = m_block * kBlockM;
    const int h = blockIdx.y, b = blockIdx.z;
    const int hk = h / p.group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_row0 = warp * 16 * kMTiles;
    const int diag = p.Lk - p.Lq;  // causal: query i sees keys up to i + diag
    (void)diag;
    const float kSoftmaxScale = $softmax_scale;
    const Operands lb = operands(sQ, sK, sV, warp_row0);

    int n_end = p.Lk;
$causal_end
    const int kv_limit = max(0, n_end);  // keys from n_end on are seen by no row of the block
    const u16 *k_base = (const u16 *)p.k + b * p.k_stride[0] + hk * p.k_stride[2];
    const u16 *v_base = (const u16 *)p.v + b * p.v_stride[0] + hk * p.v_stride[2];
$mask_base
$bias_base
$bias_bufs
    zero_pad_columns<kBlockM>(sQ);
    zero_pad_columns<kBlockN>(sK);
    zero_pad_columns<kBlockN>(sV);
    zero_pad_columns<kBlockN>(sV + kSmemKV / 2);
    load_rows<kBlockM>((const u16 *)p.q + b * p.q_stride[0] + h * p.q_stride[2], p.q_stride[1],
                       m0, p.Lq, sQ);
    cp_async_commit();

$first_tile
$k_loads_first

$acc_init
    // Software pipeline: the P V of the tile before runs (on wgmma, asynchronously) while this
    // tile's scores go through the stages and the softmax. p_prev holds its probabilities.
    u32 p_prev[kMTiles][kBlockN / 16][4];
    bool have_prev = false;
    int v_buf = 0;  // the V buffer this tile loads into; the tile before used the other
$loop_head
        load_rows<kBlockN>(v_base, p.v_stride[1], n0, kv_limit, sV + v_buf * (kSmemKV / 2));
        cp_async_commit();
        cp_async_wait<1>();  // Q, this tile's K and bias, the tile before's V have landed
$async_fence
$top_barrier

$mask_prefetch
        float s[kMTiles][kNTiles][4];
        qk_issue(lb, s);
        if (have_prev)
            pv_issue(p_prev, lb, v_buf ^ 1, acc_o);
        else
            pv_none();  // keeps qk_wait's count of groups in flight right
        qk_wait(s);

$score_stages
$next_tile
        __syncthreads();  // every warp is done reading sK
$k_loads_next

$softmax_pack
        have_prev = true;
        __syncthreads();  // every warp is done with the tile before's V buffer and the bias tile
        v_buf ^= 1;
        n0 = n_next;
$mask_advance
$bias_flip
$loop_tail
    cp_async_wait<0>();  // the last tile's V
$async_fence
    __syncthreads();
    if (have_prev) {
        pv_issue(p_prev, lb, v_buf ^ 1, acc_o);
        pv_wait(acc_o);
    }

$epilogue]=]

-- A tile's K, with its bias and the mask tile after it (the pieces given, possibly empty), into
-- shared memory by cp.async as one group: the first tile before the loop, the next one inside.
local function k_tile_loads(indent, n, bias_text, mask_text)
  return indent .. "if (" .. n .. " < n_end) {\n" ..
    indent .. "    load_rows<kBlockN>(k_base, p.k_stride[1], " .. n .. ", kv_limit, sK);\n" ..
    bias_text .. "\n" .. mask_text .. "\n" ..
    indent .. "}\n" .. indent .. "cp_async_commit();"
end

local function check_variant(v)
  if v.dir ~= "fwd" then
    errors.unsupported("attn_fwd.lua emits direction fwd, not " .. v.dir)
  end
  if v.window ~= 0 then
    errors.unsupported("top-k windows (w" .. v.window .. ") are not built yet")
  end
  if v.varlen then
    errors.unsupported("varlen forward is not built yet")
  end
end

local elementwise = [=[
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    $body
                }]=]

local function each_score(body)
  return (elementwise:gsub("%$body", function() return body end))
end

-- The per-tile score stages (natural units, scale applied, after the first).
local function score_stages(v, vars)
  if v.bias ~= "none" then
    vars.scale_bias = [=[
        if (!bias_staged)
            add_bias<0>(p, sB_cur, bias_off, m0, n0, warp_row0, s);
        else if (p.bias_f32)
            add_bias<1>(p, sB_cur, bias_off, m0, n0, warp_row0, s);
        else
            add_bias<2>(p, sB_cur, bias_off, m0, n0, warp_row0, s);]=]
  elseif v.softcap then
    vars.scale_bias = each_score("s[mt][nt][e] *= p.scale;")
  else
    vars.scale_bias = ""  -- the softmax folds the scale into its ex2 argument
  end
  vars.softmax_scale = (v.bias ~= "none" or v.softcap) and "kLog2e" or "p.scale_log2"
  if v.softcap then
    -- softcap * tanh(x / softcap), natural units in and out
    -- tanh(y) = 1 - 2 / (e^{2y} + 1) on ex2 and rcp: absolute error ~1e-7 (what the logit
    -- needs), few registers, no branches: with tanhf the mask-k.bias-q.softcap sm90a loop
    -- spilled 24 bytes
    vars.softcap_stage = each_score("s[mt][nt][e] = p.softcap * " ..
      "fmaf(-2.f, fast_rcp(fast_exp2(s[mt][nt][e] * p.softcap_k) + 1.f), 1.f);")
  else
    vars.softcap_stage = ""
  end
  if v.mask ~= "none" then
    vars.mask_stage = "        if (!__all_sync(0xffffffffu, cur_bits == kMaskFull))  // all-true tiles skip the loop\n" ..
      each_score("if (!mask_bit(cur_bits, mt, e / 2, nt, e % 2))\n                        s[mt][nt][e] = -kInf;")
  else
    vars.mask_stage = ""
  end
  vars.causal_edge = v.causal and " || n0 + kBlockN - 1 > m0 + diag" or ""
  vars.causal_test = v.causal and " || j > i + diag" or ""
end

function M.emit(v)
  check_variant(v)
  local row = tune.lookup("fwd", v.d, v.arch, v.causal, { mask = v.mask, bias = v.bias })
  local entry = common.entry_name(v.key)
  local d_pad = (v.d + 15) // 16 * 16
  local block_m = 16 * row.m_tiles * row.warps
  local engine = engines[row.mma or "mma.sync"]
  if not engine then
    error("tuning.lua: unknown mma engine '" .. tostring(row.mma) .. "'", 0)
  end
  engine.check(row, d_pad)
  -- staged bias: rows of block_n elements plus 16 bytes, two buffers. Room for fp32 rows unless
  -- that would not fit next to wgmma's larger tiles: then fp32 per-query bias is read from global.
  local bias_rows = v.bias == "q" and block_m or v.bias == "k" and 1 or 0
  local declared = row.mma == "wgmma" and row.warps == 4  -- two blocks an SM: see smem_slack
  -- staged bias at 2 bytes a value (fp32 bias then read from global) where the room is short:
  -- per-query rows next to wgmma's tiles, and the key row where two blocks must share an SM
  local bias_esize = (row.mma == "wgmma" and (v.bias == "q" or declared)) and 2 or 4
  local bias_pitch = v.bias ~= "none" and row.block_n * bias_esize + 16 or 0
  local bias_smem = 2 * bias_rows * bias_pitch
  local mask_rows = v.mask == "q" and block_m or v.mask == "k" and 1 or 0
  local mask_smem = mask_rows * (row.block_n + 16)
  -- the key-mask scan's ballots: in the dynamic array where its alignment is declared (a static
  -- array would move its base off 1024), else static (in the dynamic array, ptxas spilled 4 bytes
  -- in fwd.d256.bf16.mask-k.bias-q.w0.sm90a)
  local scan_smem = (v.mask == "k" and declared) and 2 * row.warps * 4 or 0
  -- wgmma atoms need 1024-byte alignment: declared on the dynamic array where two blocks of 4 warps
  -- must share an SM (slack would push them past 114 KB each), else reached with 1024 bytes of
  -- slack (declaring it in 8-warp variants made ptxas spill 4-16 bytes in two of them)
  local smem_slack = (row.mma == "wgmma" and not declared) and 1024 or 0
  local smem = smem_slack + engine.smem_operands(block_m, row.block_n, d_pad) + bias_smem +
    mask_smem + scan_smem

  local vars = {
    d = v.d, d_pad = d_pad, block_n = row.block_n, warps = row.warps, m_tiles = row.m_tiles,
    entry = entry, bias_rows = bias_rows, bias_pitch = bias_pitch, smem_bytes = smem,
    mask_smem = mask_smem, mask_rows = mask_rows, scan_smem = scan_smem, smem_slack = smem_slack,
    smem_decl_align = declared and 1024 or 16,
    ballots_decl = declared and [=[
    extern __shared__ __align__(kSmemDeclAlign) unsigned char smem_raw[];
    unsigned (*ballots)[kWarps] =
        (unsigned (*)[kWarps])(smem_raw + kSmemSlack + kSmemQ + 3 * kSmemKV + kSmemBias + kSmemMask);]=]
      or "    __shared__ unsigned ballots[2][kWarps];", operand_layout = engine.layout, launch_bounds = engine.launch_bounds,
    async_fence = engine.async_fence,
    smem_base = row.mma == "wgmma" and
      "    unsigned char *smem = smem_raw + (0u - smem_u32(smem_raw)) % kSmemAlign;  // atoms 1024-aligned"
      or "    unsigned char *smem = smem_raw;",
    -- causal: heavy (long) row blocks first, so the tail of the grid is short work
    m_block = v.causal and "gridDim.x - 1 - blockIdx.x" or "blockIdx.x",
    causal_last_key = v.causal and "last_row + p.Lk - p.Lq" or "p.Lk - 1",
    causal_ok0 = v.causal and "(i < p.Lq && j <= i + p.Lk - p.Lq)" or "true",
    causal_ok1 = v.causal and "(i < p.Lq && j + 1 <= i + p.Lk - p.Lq)" or "true",
    -- Row-check-free K/V copies. Per-query-mask variants keep the row checks where the fast
    -- copies made ptxas spill: causal on wgmma (fwd.d128.bf16.mask-q.bias-k.w0.causal.sm90a,
    -- 4 bytes) and every mma.sync one (fwd.d128.bf16.mask-q.bias-q.w0.sm80: 0 -> 108 bytes).
    fast_loads = (v.mask == "q" and (v.causal or row.mma ~= "wgmma")) and "false" or "true",
  }
  for name, text in pairs(mask.scan_vars(v)) do
    vars[name] = text
  end
  vars.head_dim_step, vars.head_dim_max = limits.head_dim_step, limits.head_dim_max
  vars.causal_end = v.causal and
    "    n_end = min(p.Lk, min(m0 + kBlockM, p.Lq) + diag);  // <= 0: every row is empty" or ""
  vars.mask_base = v.mask ~= "none" and
    "    const unsigned char *mask_bh = (const unsigned char *)p.mask + b * p.mask_stride[0] +\n" ..
    "                                   (h / p.mask_head_div) * p.mask_stride[1];" or ""
  if v.bias ~= "none" then
    vars.bias_base =
      "    const i64 bias_off = b * p.bias_stride[0] + (h / p.bias_head_div) * p.bias_stride[1];\n" ..
      "    const unsigned char *bias_bh = (const unsigned char *)p.bias + bias_off * (p.bias_f32 ? 4 : 2);\n" ..
      "    (void)bias_bh;"
  else
    vars.bias_base = ""
  end
  if v.mask ~= "none" then
    vars.first_tile = "    MaskBits cur_bits = 0, next_bits = 0;\n" ..
      "    int n0 = next_tile(p, mask_bh, 0, n_end, warp_row0, m0, cur_bits);"
    -- The next tile's mask is read before this tile's QK^T, so its latency hides under the MMAs;
    -- only when that tile is all false does the vote walk on synchronously.
    -- A staged candidate whose bytes are all true (the dense case) needs no bits gathered and no
    -- vote: cand < n_end makes some key of it visible to the block's last row. Key layout: every
    -- warp reads the row (no barrier); per-query layout: the AND rides on the loop's first barrier
    -- (a barrier of its own in causal variants: there the reads before the barrier made ptxas
    -- spill 8 bytes in fwd.d128.bf16.mask-q.bias-q.w0.causal.sm90a).
    vars.top_barrier = (v.mask == "q" and not v.causal) and [=[
        const int cand = n0 + kBlockN;
        const bool cand_full =
            __syncthreads_and($staged_mask && cand < n_end && mask_chunks_full(sM));]=] or [=[
        __syncthreads();
        const int cand = n0 + kBlockN;
        const bool cand_full = $staged_mask && cand < n_end && mask_tile_full(sM);]=]
    vars.mask_prefetch = [=[
        bool cand_any = false;
        MaskBits cand_bits = kMaskFull;
        if (!cand_full)
            cand_bits = cand >= n_end ? 0
                        : $staged_mask
                            ? load_mask<true>(p, mask_bh, sM, cand, warp_row0, m0, cand_any)
                            : load_mask<false>(p, mask_bh, sM, cand, warp_row0, m0, cand_any);
$early_loads]=]
    vars.next_tile = [=[
        int n_next = n_end;
        if (cand_full) {  // block-uniform (a barrier's AND, or the same row read in every warp)
            n_next = cand;
            next_bits = kMaskFull;
        } else if (cand < n_end) {
            if (__syncthreads_or(cand_any)) {
                n_next = cand;
                next_bits = cand_bits;
            } else {
                n_next = next_tile(p, mask_bh, cand + kBlockN, n_end, warp_row0, m0, next_bits);
            }
        }]=]
    vars.mask_advance = "        cur_bits = next_bits;"
    do
      -- the candidate tile's mask travels with the K of the tile before it (see load_mask_tile)
      vars.staged_mask = "p.mask_vec16"
      vars.mask_tile_first = "        if (p.mask_vec16 && n0 + kBlockN < n_end)\n" ..
        "            load_mask_tile(p, mask_bh, m0, n0 + kBlockN, sM);"
      vars.mask_tile_next = "            if (p.mask_vec16 && n_next + kBlockN < n_end)\n" ..
        "                load_mask_tile(p, mask_bh, m0, n_next + kBlockN, sM);"
    end
    vars.mask_prefetch = vars.mask_prefetch:gsub("%$staged_mask", vars.staged_mask)
    vars.top_barrier = vars.top_barrier:gsub("%$staged_mask", vars.staged_mask)
    -- An all-true candidate is the next tile, known before this tile's QK^T: its bias (and a
    -- per-query mask's next tile: every read of sM came before the verdict's barrier) load now,
    -- under this tile's whole MMA and softmax, instead of under the softmax alone.
    local early = {}
    if v.bias ~= "none" then
      early[#early + 1] = "            if (bias_staged)\n" ..
        "                load_bias_tile(p, bias_bh, m0, cand, sB_next);"
      vars.bias_tile_next = "            if (bias_staged && !cand_full)\n" ..
        "                load_bias_tile(p, bias_bh, m0, n_next, sB_next);"
    end
    if v.mask == "q" then
      early[#early + 1] = "            if (cand + kBlockN < n_end)\n" ..
        "                load_mask_tile(p, mask_bh, m0, cand + kBlockN, sM);"
      vars.mask_tile_next = "            if (!cand_full && p.mask_vec16 && n_next + kBlockN < n_end)\n" ..
        "                load_mask_tile(p, mask_bh, m0, n_next + kBlockN, sM);"
    end
    vars.early_loads = #early == 0 and "" or
      "        if (cand_full) {  // block-uniform\n" .. table.concat(early, "\n") ..
      "\n            cp_async_commit();\n        }"
    vars.mask_prefetch = vars.mask_prefetch:gsub("%$early_loads", function() return vars.early_loads end)
  else
    vars.first_tile = "    int n0 = 0;"
    vars.top_barrier = "        __syncthreads();"
    vars.mask_prefetch, vars.mask_tile_first, vars.mask_tile_next = "", "", ""
    if v.bias ~= "none" then
      -- the next tile is always n0 + kBlockN: its bias loads under this tile's whole work (after
      -- the wait above, so that wait never waits for it)
      vars.mask_prefetch = "        if (bias_staged && n0 + kBlockN < n_end)\n" ..
        "            load_bias_tile(p, bias_bh, m0, n0 + kBlockN, sB_next);\n" ..
        "        cp_async_commit();"
    end
    vars.bias_tile_next = ""
    vars.next_tile = "        const int n_next = n0 + kBlockN;"
    vars.mask_advance = ""
  end
  if v.bias ~= "none" then
    vars.bias_tile_first = "        if (bias_staged)\n            load_bias_tile(p, bias_bh, m0, n0, sB_cur);"
    -- (set above where the next tile's bias may load early)
    vars.bias_flip = "        { unsigned char *t = sB_cur; sB_cur = sB_next; sB_next = t; }"
    vars.bias_bufs = "    unsigned char *sB_cur = sB, *sB_next = sB + kBiasRows * kBiasPitch;\n" ..
      "    // staged by cp.async: 16-byte aligned rows, and room for fp32 ones when kBiasPitch has it\n" ..
      "    const bool bias_staged = p.bias_vec16 && (!p.bias_f32 || kBiasPitch >= kBlockN * 4);"
  else
    vars.bias_tile_first, vars.bias_tile_next, vars.bias_flip, vars.bias_bufs = "", "", "", ""
  end
  vars.k_loads_first = k_tile_loads("    ", "n0", vars.bias_tile_first, vars.mask_tile_first)
  vars.k_loads_next = k_tile_loads("        ", "n_next", vars.bias_tile_next, vars.mask_tile_next)
  score_stages(v, vars)
  if v.mask ~= "none" then
    -- n0 comes from a vote: a loop entered on it makes ptxas serialize the wgmma pipeline
    -- (C7520), so the first pass runs unconditionally. When no tile is visible (n0 == n_end) it
    -- loads nothing (rows past kv_limit are zero-filled; K's buffer stays unwritten) and the
    -- mask stage (bits 0) assigns -inf to every score.
    vars.loop_head = "    do {"
    vars.loop_tail = "    } while (n0 < n_end);"
  else
    vars.loop_head = "    while (n0 < n_end) {"
    vars.loop_tail = "    }"
  end

  local buf = common.buffer()
  common.header(buf, v, "attn_fwd.lua", engine.summary(block_m, row.block_n, row.warps, row.m_tiles))
  buf.add(kernel_params.struct("FwdParams"))  -- from the library's layout (gen/kernel_params.h)
  buf.add(constants, vars)
  common.conversions(buf, v.dtype)
  ptx.emit(buf, v.dtype, engine == engines["mma.sync"])  -- ldmatrix, mma.sync: that engine only
  engine.emit_ptx(buf, v.dtype, row.block_n, d_pad)
  buf.add(engine.loads_and_gemms)
  if v.bias ~= "none" then
    buf.add(bias.helpers)
    buf.add(bias.tile)
  end
  if v.mask ~= "none" then
    buf.add(mask.vote_common)
    buf.add(mask.vote[v.mask], vars)
    buf.add(mask.tile)
    buf.add(mask.next_tile_fn)
  end
  local text = kernel:gsub("%$([%a_]+)", function(name)
    local piece = ({ acc_init = acc_init, score_stages = score_stages_text,
                     softmax_pack = softmax_pack, epilogue = epilogue })[name]
    return piece and piece:sub(1, -1) or nil
  end)
  buf.add(text, vars)

  return {
    source = buf.text(),
    entry = entry,
    threads = row.warps * 32,
    block_m = block_m,
    block_n = row.block_n,
    smem_bytes = smem,
  }
end

return M
