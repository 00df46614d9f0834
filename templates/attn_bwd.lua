-- attn_bwd.lua: the backward family, bwd.d<D>.<dtype>.mask-<..>.bias-<..>.w0[.causal][.softcap]
-- .sm<NN> (SPEC §3): dq, dk, dv and dbias of the dense forward.
--
-- This is the correctness baseline the tensor-core backward (issue 16) is to replace behind the
-- same call: fp32 arithmetic on the SIMT cores, one warp per output row, every sum in a fixed
-- order (so the same bits run to run), no atomics and no scratch but the rows' dO.O. A warp holds
-- a row of D elements spread over its lanes (element d in lane d % 32) and takes dot products by
-- shuffles. One kernel, launched once per phase (p.phase), in this order on one stream:
--   0  a warp per query row (b, h, i): row_dot_i = dO_i . O_i, then dq_i = scale sum_j ds_ij k_j
--   1  a warp per key (b, hk, j): dv_j = sum p_ij dO_i, dk_j = scale sum ds_ij q_i over the
--      group's heads and every query
--   2  a warp per dbias element: the sum of ds over the (b, h, i) it stands for (broadcast
--      dimensions, the heads sharing a stored head), when dbias is asked for
-- with p_ij = exp(s_ij - lse_i) from the forward's lse, ds_ij = p_ij (dO_i . v_j - row_dot_i)
-- (times 1 - tanh^2 through softcap): the gradient of the score before softcap, i.e. of the bias.
-- A masked pair, and every pair of a row with no visible key (lse = +inf), adds exactly nothing.
local common = require("cuda_common")
local errors = require("errors")
local kernel_params = require("kernel_params")
local limits = require("limits")

local M = {}

-- Not tuned: a baseline for correctness. Four warps a block keep blocks small enough that a
-- call of a few hundred rows still spreads over the SMs.
local WARPS = 4

local constants = [=[
constexpr int kD = $d;  // head_dim
constexpr int kPerLane = (kD + 31) / 32;  // elements of a row a lane holds: d = lane + 32 t
constexpr int kWarps = $warps;  // output rows a block: query rows, keys or dbias elements
constexpr int kThreads = 32 * kWarps;
constexpr u32 kAllLanes = 0xffffffffu;]=]

local rows = [=[
__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
        x += __shfl_xor_sync(kAllLanes, x, off);
    return x;
}

// A row of kD elements (q, k, v, o or dO) into the lanes.
__device__ __forceinline__ void load_row(const u16 *row, int lane, float r[kPerLane])
{
#pragma unroll
    for (int t = 0; t < kPerLane; t++) {
        const int d = lane + 32 * t;
        r[t] = d < kD ? elem_to_float(row[d]) : 0.f;
    }
}

__device__ __forceinline__ void store_row(u16 *row, int lane, const float r[kPerLane], float mul)
{
#pragma unroll
    for (int t = 0; t < kPerLane; t++) {
        const int d = lane + 32 * t;
        if (d < kD)
            row[d] = float_to_elem(r[t] * mul);
    }
}

__device__ __forceinline__ float dot(const float a[kPerLane], const float b[kPerLane])
{
    float s = 0.f;
#pragma unroll
    for (int t = 0; t < kPerLane; t++)
        s += a[t] * b[t];
    return warp_sum(s);
}

__device__ __forceinline__ void axpy(float a, const float x[kPerLane], float y[kPerLane])
{
#pragma unroll
    for (int t = 0; t < kPerLane; t++)
        y[t] += a * x[t];
}

__device__ __forceinline__ const u16 *row_of(u64 base, const i64 stride[3], i64 b, i64 i, i64 h)
{
    return (const u16 *)base + b * stride[0] + i * stride[1] + h * stride[2];
}]=]

local visible_causal = [=[
// Whether key j is visible to query i of head h in batch b: the causal edge (bottom-right) and
// the mask.
__device__ __forceinline__ bool visible(const BwdParams &p, i64 b, i64 h, i64 i, i64 j)
{
    if (j > i + p.Lk - p.Lq)
        return false;
    $mask_test
}]=]

local visible_plain = [=[
// Whether key j is visible to query i of head h in batch b: the mask.
__device__ __forceinline__ bool visible(const BwdParams &p, i64 b, i64 h, i64 i, i64 j)
{
    $mask_test
}]=]

local mask_test = [=[
const unsigned char *m = (const unsigned char *)p.mask;
return m[b * p.mask_stride[0] + h / p.mask_head_div * p.mask_stride[1] +
         i * p.mask_stride[2] + j * p.mask_key_stride] != 0;]=]

local bias_fn = [=[
__device__ __forceinline__ float bias_at(const BwdParams &p, i64 b, i64 h, i64 i, i64 j)
{
    const i64 off = b * p.bias_stride[0] + h / p.bias_head_div * p.bias_stride[1] +
                    i * p.bias_stride[2] + j * p.bias_key_stride;
    return p.bias_f32 ? ((const float *)p.bias)[off] : elem_to_float(((const u16 *)p.bias)[off]);
}]=]

local grad_fn = [=[
// p_ij and ds_ij (the gradient of the score before softcap) from q_i . k_j, dO_i . v_j, the
// forward's lse_i and row_dot_i. The caller has checked visibility and lse_i < +inf.
struct ScoreGrad {
    float p, ds;
};
__device__ __forceinline__ ScoreGrad score_grad(const BwdParams &p, i64 b, i64 h, i64 i, i64 j,
                                                float qk, float dov, float lse, float row_dot)
{
    float s = p.scale * qk;
    $bias_add
    $softcap_fwd
    ScoreGrad g;
    g.p = expf(s - lse);
    g.ds = g.p * (dov - row_dot);
    $softcap_bwd
    return g;
}]=]

local body = [=[
// Phase 0: a warp per query row (b, h, i).
__device__ __forceinline__ void rows_phase(const BwdParams &p, i64 r, int lane)
{
    const i64 i = r % p.Lq, h = r / p.Lq % p.H, b = r / ((i64)p.Lq * p.H);
    const i64 hk = h / p.group;
    float q[kPerLane], dout[kPerLane], acc[kPerLane];
    load_row(row_of(p.dout, p.dout_stride, b, i, h), lane, dout);
    load_row(row_of(p.o, p.o_stride, b, i, h), lane, acc);  // o, for the row's dO . O only
    const float row_dot = dot(dout, acc);
    if (lane == 0)
        ((float *)p.row_dot)[(b * p.H + h) * p.Lq + i] = row_dot;
#pragma unroll
    for (int t = 0; t < kPerLane; t++)
        acc[t] = 0.f;
    const float lse = ((const float *)p.lse)[b * p.lse_stride[0] + h * p.lse_stride[1] +
                                             i * p.lse_stride[2]];
    if (lse != kInf) {  // +inf: no visible key, dq = 0
        load_row(row_of(p.q, p.q_stride, b, i, h), lane, q);
        for (i64 j = 0; j < p.Lk; j++) {
            if (!visible(p, b, h, i, j))
                continue;  // no K or V bytes read for it
            float kj[kPerLane], vj[kPerLane];
            load_row(row_of(p.k, p.k_stride, b, j, hk), lane, kj);
            load_row(row_of(p.v, p.v_stride, b, j, hk), lane, vj);
            const ScoreGrad g = score_grad(p, b, h, i, j, dot(q, kj), dot(dout, vj), lse, row_dot);
            axpy(g.ds, kj, acc);
        }
    }
    store_row((u16 *)row_of(p.dq, p.dq_stride, b, i, h), lane, acc, p.scale);
}

// Phase 1: a warp per key (b, hk, j), over the group's heads and every query.
__device__ __forceinline__ void keys_phase(const BwdParams &p, i64 r, int lane)
{
    const i64 j = r % p.Lk, hk = r / p.Lk % p.Hkv, b = r / ((i64)p.Lk * p.Hkv);
    float kj[kPerLane], vj[kPerLane], dk[kPerLane], dv[kPerLane];
    load_row(row_of(p.k, p.k_stride, b, j, hk), lane, kj);
    load_row(row_of(p.v, p.v_stride, b, j, hk), lane, vj);
#pragma unroll
    for (int t = 0; t < kPerLane; t++)
        dk[t] = dv[t] = 0.f;
    for (i64 h = hk * p.group; h < (hk + 1) * p.group; h++)
        for (i64 i = 0; i < p.Lq; i++) {
            if (!visible(p, b, h, i, j))
                continue;
            const float lse = ((const float *)p.lse)[b * p.lse_stride[0] + h * p.lse_stride[1] +
                                                     i * p.lse_stride[2]];
            if (lse == kInf)
                continue;
            float q[kPerLane], dout[kPerLane];
            load_row(row_of(p.q, p.q_stride, b, i, h), lane, q);
            load_row(row_of(p.dout, p.dout_stride, b, i, h), lane, dout);
            const float row_dot = ((const float *)p.row_dot)[(b * p.H + h) * p.Lq + i];
            const ScoreGrad g = score_grad(p, b, h, i, j, dot(q, kj), dot(dout, vj), lse, row_dot);
            axpy(g.p, dout, dv);
            axpy(g.ds, q, dk);
        }
    store_row((u16 *)row_of(p.dk, p.dk_stride, b, j, hk), lane, dk, p.scale);
    store_row((u16 *)row_of(p.dv, p.dv_stride, b, j, hk), lane, dv, 1.f);
}
$dbias_phase
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const BwdParams p)
{
    const int lane = threadIdx.x % 32;
    const i64 r = (i64)blockIdx.x * kWarps + threadIdx.x / 32;
    if (p.phase == 0) {
        if (r < (i64)p.B * p.H * p.Lq)
            rows_phase(p, r, lane);
    } else if (p.phase == 1) {
        if (r < (i64)p.B * p.Hkv * p.Lk)
            keys_phase(p, r, lane);
    }$dbias_call
}]=]

local dbias_phase = [=[

// Phase 2: a warp per dbias element (bb, bh, bi, j) of dbias's (dbias_B, dbias_H, dbias_Lq, Lk):
// the sum of ds over the batches, heads and queries it stands for, in that order.
__device__ __forceinline__ void dbias_phase(const BwdParams &p, i64 r, int lane)
{
    const i64 j = r % p.Lk, bi = r / p.Lk % p.dbias_Lq;
    const i64 bh = r / ((i64)p.Lk * p.dbias_Lq) % p.dbias_H;
    const i64 bb = r / ((i64)p.Lk * p.dbias_Lq * p.dbias_H);
    const i64 b0 = p.dbias_B == p.B ? bb : 0, b1 = p.dbias_B == p.B ? bb + 1 : p.B;
    const i64 i0 = p.dbias_Lq == p.Lq ? bi : 0, i1 = p.dbias_Lq == p.Lq ? bi + 1 : p.Lq;
    const i64 h0 = bh * p.bias_head_div, h1 = h0 + p.bias_head_div;
    float sum = 0.f;
    for (i64 b = b0; b < b1; b++)
        for (i64 h = h0; h < h1; h++) {
            const i64 hk = h / p.group;
            float kj[kPerLane], vj[kPerLane];
            bool loaded = false;  // K and V rows only for a visible pair
            for (i64 i = i0; i < i1; i++) {
                if (!visible(p, b, h, i, j))
                    continue;
                const float lse = ((const float *)p.lse)[b * p.lse_stride[0] +
                                                         h * p.lse_stride[1] + i * p.lse_stride[2]];
                if (lse == kInf)
                    continue;
                if (!loaded) {
                    load_row(row_of(p.k, p.k_stride, b, j, hk), lane, kj);
                    load_row(row_of(p.v, p.v_stride, b, j, hk), lane, vj);
                    loaded = true;
                }
                float q[kPerLane], dout[kPerLane];
                load_row(row_of(p.q, p.q_stride, b, i, h), lane, q);
                load_row(row_of(p.dout, p.dout_stride, b, i, h), lane, dout);
                const float row_dot = ((const float *)p.row_dot)[(b * p.H + h) * p.Lq + i];
                sum += score_grad(p, b, h, i, j, dot(q, kj), dot(dout, vj), lse, row_dot).ds;
            }
        }
    if (lane != 0)
        return;
    const i64 off = bb * p.dbias_stride[0] + bh * p.dbias_stride[1] + bi * p.dbias_stride[2] +
                    j * p.dbias_key_stride;
    if (p.bias_f32)
        ((float *)p.dbias)[off] = sum;
    else
        ((u16 *)p.dbias)[off] = float_to_elem(sum);
}
]=]

local dbias_call = [=[
 else if (r < (i64)p.dbias_B * p.dbias_H * p.dbias_Lq * p.Lk) {
        dbias_phase(p, r, lane);
    }]=]

local function check_variant(v)
  if v.dir ~= "bwd" then
    errors.unsupported("attn_bwd.lua emits the backward family, not " .. tostring(v.dir))
  end
  if v.d < limits.head_dim_min or v.d > limits.head_dim_max or v.d % limits.head_dim_step ~= 0 then
    errors.unsupported("head_dim " .. v.d .. " outside the supported range")
  end
  if v.window ~= 0 then
    errors.unsupported("the backward takes the forward's window mask as its mask: w0 only")
  end
  if v.varlen then
    errors.unsupported("no varlen backward yet (issue 16)")
  end
end

function M.emit(v)
  check_variant(v)
  local vars = { d = v.d, warps = WARPS, entry = common.entry_name(v.key) }
  local buf = common.buffer()
  common.header(buf, v, "attn_bwd.lua", string.format(
    "SIMT baseline, a warp a row, %d warps a block, phases rows / keys / dbias", WARPS))
  buf.add(kernel_params.struct("BwdParams"))  -- from the library's layout (kernel_params.h)
  buf.add("")
  buf.add(constants, vars)
  buf.add("")
  common.conversions(buf, v.dtype)
  buf.add("")
  buf.add(rows)
  buf.add("")
  local test = v.mask ~= "none" and mask_test or "return true;"
  buf.add(common.fill(v.causal and visible_causal or visible_plain, { mask_test = test }))
  buf.add("")
  if v.bias ~= "none" then
    buf.add(bias_fn)
    buf.add("")
  end
  buf.add(common.fill(grad_fn, {
    bias_add = v.bias ~= "none" and "s += bias_at(p, b, h, i, j);" or "// no bias",
    softcap_fwd = v.softcap and "const float th = tanhf(s / p.softcap);\ns = p.softcap * th;"
      or "// no softcap",
    softcap_bwd = v.softcap and "g.ds *= 1.f - th * th;  // through s = c tanh(x / c)"
      or "// no softcap",
  }))
  buf.add("")
  vars.dbias_phase = v.bias ~= "none" and dbias_phase or ""
  vars.dbias_call = v.bias ~= "none" and dbias_call or ""
  buf.add(body, vars)
  return { source = buf.text(), entry = vars.entry, threads = 32 * WARPS, block_m = WARPS,
           block_n = 1, smem_bytes = 0 }
end

return M
