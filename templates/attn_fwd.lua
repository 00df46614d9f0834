-- attn_fwd.lua: the dense forward attention family (SPEC §2), one kernel per variant.
--
-- Structure (the simple, correct kernel of issue 3; issue 4 replaces the inner loops with
-- tensor-core MMAs): a block owns kBlockM query rows of one (batch, head); its warps split the
-- rows. Keys are walked in tiles of kBlockN = 32, one key per lane. Per tile: a block-wide vote
-- over the mask (and causal diagonal) skips a tile with no visible entry before any K, V or bias
-- byte is read; else K and V rows are staged in shared memory with 16-byte loads, each lane
-- forms one score, and the online softmax runs in registers (exp2, scale folded in).
-- A feature that is off (mask, bias, causal, softcap) is absent from the text.
local common = require("cuda_common")
local tune = require("tune")

local M = {}

-- Must match struct dm_fwd_params in runtime/fwd.c field for field (8-byte fields first).
local params_struct = [=[
struct FwdParams {
    u64 q, k, v, mask, bias, o, lse;
    i64 q_stride[3], k_stride[3], v_stride[3], o_stride[3]; // batch, row, head
    i64 mask_stride[3], bias_stride[3];                     // batch, head, row (keys contiguous)
    i64 lse_stride[3];                                      // batch, head, row
    i64 mask_head_div, bias_head_div;                       // H / heads stored in mask, bias
    int B, H, Hkv, Lq, Lk, group;                           // group = H / Hkv
    float scale_log2;                                       // scale * log2(e)
    float softcap;
    int bias_f32;                                           // bias stored as fp32, not q's dtype
    int pad_;
};]=]

local constants = [=[
constexpr int kHeadDim = $d;
constexpr int kBlockM = $block_m;  // query rows per block
constexpr int kBlockN = $block_n;  // keys per tile: also the skip granularity
constexpr int kWarps = $warps;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = kBlockM / kWarps;
constexpr int kColsPerLane = (kHeadDim + 31) / 32;  // output columns lane, lane+32, ...
constexpr int kChunks = kHeadDim / 8;               // 16-byte chunks per row
// Shared K/V rows padded by 16 bytes: lanes reading 16 bytes of consecutive rows then hit
// different banks whenever kChunks + 1 is odd (kHeadDim 128: 17 chunks, conflict free).
constexpr int kRowPitch = kHeadDim + 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kBlockN == 32, "one key per lane");
static_assert(kBlockM % kWarps == 0, "rows split evenly across warps");
static_assert(kHeadDim % 8 == 0 && kHeadDim <= 256, "head_dim a multiple of 8 up to 256");
constexpr int kSmemQ = kBlockM * kHeadDim * 4;            // q rows as fp32, pre-scaled
constexpr int kSmemKV = kBlockN * kRowPitch * 2;          // one of K or V
constexpr int kSmemMask = $mask_smem;                     // the mask tile, one byte per entry
constexpr int kSmemBytes = kSmemQ + 2 * kSmemKV + kSmemMask;
static_assert(kSmemBytes == $smem_bytes, "launch smem (from Lua) matches the layout");]=]

local helpers = [=[
__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ void unpack8(uint4 u, float *f)
{
    const u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = elem_to_float((u16)(w[i] & 0xffffu));
        f[2 * i + 1] = elem_to_float((u16)(w[i] >> 16));
    }
}

// q rows of this block into shared memory as fp32 times scale*log2(e); rows past Lq are zero.
__device__ __forceinline__ void load_q(const FwdParams &p, int b, int h, int m0, float *sQ)
{
    const u16 *q = (const u16 *)p.q + b * p.q_stride[0] + h * p.q_stride[2];
    for (int c = threadIdx.x; c < kBlockM * kChunks; c += kThreads) {
        const int r = c / kChunks, d = (c % kChunks) * 8;
        float f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (m0 + r < p.Lq)
            unpack8(*(const uint4 *)(q + (i64)(m0 + r) * p.q_stride[1] + d), f);
#pragma unroll
        for (int i = 0; i < 8; i++)
            sQ[r * kHeadDim + d + i] = f[i] * p.scale_log2;
    }
}

// K and V rows n0 .. n0 + kBlockN - 1 of kv head hk into shared memory; rows past Lk are zero.
__device__ __forceinline__ void load_kv_tile(const FwdParams &p, int b, int hk, int n0, u16 *sK,
                                             u16 *sV)
{
    const u16 *k = (const u16 *)p.k + b * p.k_stride[0] + hk * p.k_stride[2];
    const u16 *v = (const u16 *)p.v + b * p.v_stride[0] + hk * p.v_stride[2];
    for (int c = threadIdx.x; c < kBlockN * kChunks; c += kThreads) {
        const int r = c / kChunks, d = (c % kChunks) * 8;
        uint4 kk = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
        if (n0 + r < p.Lk) {
            kk = *(const uint4 *)(k + (i64)(n0 + r) * p.k_stride[1] + d);
            vv = *(const uint4 *)(v + (i64)(n0 + r) * p.v_stride[1] + d);
        }
        *(uint4 *)(sK + r * kRowPitch + d) = kk;
        *(uint4 *)(sV + r * kRowPitch + d) = vv;
    }
}

// <q_row, k_lane> in the log2 domain: q was pre-scaled by scale*log2(e).
__device__ __forceinline__ float dot_row(const float *q_row, const u16 *k_row)
{
    float s = 0.f;
#pragma unroll 4
    for (int d = 0; d < kHeadDim; d += 8) {
        float kf[8];
        unpack8(*(const uint4 *)(k_row + d), kf);
        const float4 q0 = *(const float4 *)(q_row + d), q1 = *(const float4 *)(q_row + d + 4);
        s += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3];
        s += q1.x * kf[4] + q1.y * kf[5] + q1.z * kf[6] + q1.w * kf[7];
    }
    return s;
}]=]

local bias_load = [=[
__device__ __forceinline__ float load_bias(const FwdParams &p, i64 off)
{
    if (p.bias_f32)
        return ((const float *)p.bias)[off];
    return elem_to_float(((const u16 *)p.bias)[off]);
}]=]

-- The vote: loads the tile's mask into shared memory and tells the block whether any entry is
-- visible. Layout k: one row of kBlockN bytes; layout q: kBlockM x kBlockN.
local vote = {
  k = [=[
__device__ __forceinline__ bool tile_visible(const FwdParams &p, int b, int h, int m0, int n0,
                                             int n_end, unsigned char *sMask)
{
    const unsigned char *mask = (const unsigned char *)p.mask + b * p.mask_stride[0] +
                                (h / p.mask_head_div) * p.mask_stride[1];
    bool vis = false;
    if (threadIdx.x < kBlockN) {
        const int j = n0 + threadIdx.x;
        const unsigned char m = j < n_end ? mask[j] : 0;
        sMask[threadIdx.x] = m;
        vis = m != 0;
    }
    return __syncthreads_or(vis) != 0;
}
__device__ __forceinline__ bool mask_at(const unsigned char *sMask, int r, int c)
{
    return sMask[c] != 0;
}]=],
  q = [=[
__device__ __forceinline__ bool tile_visible(const FwdParams &p, int b, int h, int m0, int n0,
                                             int n_end, unsigned char *sMask)
{
    const unsigned char *mask = (const unsigned char *)p.mask + b * p.mask_stride[0] +
                                (h / p.mask_head_div) * p.mask_stride[1];
    bool vis = false;
    for (int e = threadIdx.x; e < kBlockM * kBlockN; e += kThreads) {
        const int r = e / kBlockN, c = e % kBlockN;
        const int i = m0 + r, j = n0 + c;
        unsigned char m = 0;
        if (i < p.Lq && j < n_end$causal_vote)
            m = mask[(i64)i * p.mask_stride[2] + j];
        sMask[e] = m;
        vis |= m != 0;
    }
    return __syncthreads_or(vis) != 0;
}
__device__ __forceinline__ bool mask_at(const unsigned char *sMask, int r, int c)
{
    return sMask[r * kBlockN + c] != 0;
}]=],
}

local kernel = [=[
extern "C" __global__ void __launch_bounds__(kThreads) $entry(const FwdParams p)
{
    extern __shared__ __align__(16) unsigned char smem[];
    float *sQ = (float *)smem;
    u16 *sK = (u16 *)(smem + kSmemQ);
    u16 *sV = (u16 *)(smem + kSmemQ + kSmemKV);
    unsigned char *sMask = smem + kSmemQ + 2 * kSmemKV;
    (void)sMask;

    const int m0 = blockIdx.x * kBlockM;
    const int h = blockIdx.y, b = blockIdx.z;
    const int hk = h / p.group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int diag = p.Lk - p.Lq;  // causal: key j is visible to query i up to i + diag

    load_q(p, b, h, m0, sQ);

    // Keys past the last row's diagonal are never visited.
    int n_end = p.Lk;
$causal_end
    float acc[kRowsPerWarp][kColsPerLane];
    float row_max[kRowsPerWarp], row_sum[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++) {
        row_max[r] = -kInf;
        row_sum[r] = 0.f;
#pragma unroll
        for (int t = 0; t < kColsPerLane; t++)
            acc[r][t] = 0.f;
    }
$bias_base
    for (int n0 = 0; n0 < n_end; n0 += kBlockN) {
        __syncthreads();  // the previous tile's shared K, V and mask are no longer read
$vote_call
        load_kv_tile(p, b, hk, n0, sK, sV);
        __syncthreads();

        const int j = n0 + lane;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; r++) {
            const int rr = warp * kRowsPerWarp + r;
            const int i = m0 + rr;
            if (i >= p.Lq)  // warp-uniform
                continue;
            float s = dot_row(sQ + rr * kHeadDim, sK + lane * kRowPitch);
            bool visible = j < p.Lk;
$score_mods
            s = visible ? s : -kInf;

            // Online softmax in the log2 domain; -inf - -inf never reaches exp2.
            const float m_new = fmaxf(row_max[r], warp_max(s));
            if (m_new == -kInf)  // nothing visible in this row yet: warp-uniform
                continue;
            const float alpha = exp2f(row_max[r] - m_new);
            const float pj = exp2f(s - m_new);
            row_sum[r] = row_sum[r] * alpha + warp_sum(pj);
            row_max[r] = m_new;
#pragma unroll
            for (int t = 0; t < kColsPerLane; t++)
                acc[r][t] *= alpha;
#pragma unroll 8
            for (int jj = 0; jj < kBlockN; jj++) {
                const float pv = __shfl_sync(0xffffffffu, pj, jj);
#pragma unroll
                for (int t = 0; t < kColsPerLane; t++) {
                    const int col = lane + 32 * t;
                    if (col < kHeadDim)
                        acc[r][t] += pv * elem_to_float(sV[jj * kRowPitch + col]);
                }
            }
        }
    }

    // Empty row: o = 0 exactly and lse = +inf (backward then gives zero gradients).
    u16 *o = (u16 *)p.o + b * p.o_stride[0] + h * p.o_stride[2];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++) {
        const int i = m0 + warp * kRowsPerWarp + r;
        if (i >= p.Lq)
            continue;
        const float inv = row_sum[r] > 0.f ? 1.f / row_sum[r] : 0.f;
#pragma unroll
        for (int t = 0; t < kColsPerLane; t++) {
            const int col = lane + 32 * t;
            if (col < kHeadDim)
                o[(i64)i * p.o_stride[1] + col] = float_to_elem(acc[r][t] * inv);
        }
        if (p.lse && lane == 0) {
            float *lse = (float *)p.lse;
            lse[b * p.lse_stride[0] + h * p.lse_stride[1] + (i64)i * p.lse_stride[2]] =
                row_sum[r] > 0.f ? (row_max[r] + log2f(row_sum[r])) * kLn2 : kInf;
        }
    }
}]=]

local function check_variant(v)
  if v.dir ~= "fwd" then
    error("unsupported: attn_fwd.lua emits direction fwd, not " .. v.dir, 0)
  end
  if v.window ~= 0 then
    error("unsupported: top-k windows (w" .. v.window .. ") are not built yet", 0)
  end
  if v.varlen then
    error("unsupported: varlen forward is not built yet", 0)
  end
end

function M.emit(v)
  check_variant(v)
  local row = tune.lookup("fwd", v.d, v.arch)
  local entry = common.entry_name(v.key)
  local mask_smem = ({ none = 16, k = row.block_n, q = row.block_m * row.block_n })[v.mask]
  local vars = {
    d = v.d, block_m = row.block_m, block_n = row.block_n, warps = row.warps, entry = entry,
    mask_smem = mask_smem,
    smem_bytes = row.block_m * v.d * 4 + 2 * row.block_n * (v.d + 8) * 2 + mask_smem,
    causal_vote = v.causal and " && j <= i + p.Lk - p.Lq" or "",
  }

  -- What each score goes through, in SPEC §2 order: bias, softcap, then mask and causal.
  local mods = {}
  if v.bias ~= "none" then
    local row_term = v.bias == "q" and "(i64)i * p.bias_stride[2] + " or ""
    mods[#mods + 1] = "            if (j < p.Lk)\n" ..
      "                s += load_bias(p, bias_base + " .. row_term .. "j) * kLog2e;"
  end
  if v.softcap then
    -- s is in log2 units: cap in natural units, softcap * tanh(s / softcap), then back.
    mods[#mods + 1] = "            s = p.softcap * kLog2e * tanhf(s * kLn2 / p.softcap);"
  end
  if v.mask ~= "none" then
    mods[#mods + 1] = "            visible = visible && mask_at(sMask, rr, lane);"
  end
  if v.causal then
    mods[#mods + 1] = "            visible = visible && j <= i + diag;"
  end
  vars.score_mods = table.concat(mods, "\n")
  vars.causal_end = v.causal and
    "    n_end = min(p.Lk, min(m0 + kBlockM, p.Lq) + diag);  // <= 0: every row is empty" or ""
  vars.vote_call = v.mask ~= "none" and
    "        if (!tile_visible(p, b, h, m0, n0, n_end, sMask))  // all false: skip, no loads\n" ..
    "            continue;" or ""
  vars.bias_base = v.bias ~= "none" and
    "    const i64 bias_base = b * p.bias_stride[0] + (h / p.bias_head_div) * p.bias_stride[1];"
    or ""

  local buf = common.buffer()
  common.header(buf, v, "attn_fwd.lua", string.format(
    "tile %dx%d, %d warps, simple kernel (one key per lane)", row.block_m, row.block_n, row.warps))
  buf.add(params_struct)
  buf.add(constants, vars)
  common.conversions(buf, v.dtype)
  buf.add(helpers)
  if v.bias ~= "none" then
    buf.add(bias_load)
  end
  if v.mask ~= "none" then
    buf.add(vote[v.mask], vars)
  end
  buf.add(kernel, vars)

  return {
    source = buf.text(),
    entry = entry,
    threads = row.warps * 32,
    block_m = row.block_m,
    block_n = row.block_n,
    smem_bytes = vars.smem_bytes,
  }
end

return M
