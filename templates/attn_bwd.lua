-- attn_bwd.lua: the backward family, bwd.d<D>.<dtype>.mask-<..>.bias-<..>.w0[.causal][.softcap]
-- .sm<NN> (SPEC §3): dq, dk, dv and dbias of the dense forward.
--
-- One kernel, launched once per phase (p.phase), in this order on one stream:
--   0  query rows: row_dot_i = dO_i . O_i, then dq_i = scale sum_j ds_ij k_j (grid: row blocks,
--      H, B)
--   1  keys: dv_j = sum p_ij dO_i, dk_j = scale sum ds_ij q_i over the group's heads and every
--      query (grid: key blocks, Hkv, B)
--   2  a warp per dbias element: the sum of ds over the (b, h, i) it stands for (broadcast
--      dimensions, the heads sharing a stored head), when dbias is asked for (grid: 1-D)
--   3  only with p.dq_accum: dq = scale * the fp32 sums (grid: as phase 0)
-- Deterministic mode (p.dq_accum = 0): every sum has a fixed order, no atomics, no scratch but
-- the rows' dO.O; phases 0 and 1 recompute S and dP each (seven matrix products a tile pair):
-- FlexAttention's split. The default mode on an engine with M.dq_atomic (wgmma): phase 0 only
-- writes row_dot and zeroes the scratch, phase 1 also adds each tile pair's dS K to the fp32
-- sums (five products, FlashAttention's scheme), phase 3 converts them.
-- Engines, by the tuning row: the tile phases (a block of 4 warps owns 64 rows, 16 a warp, and
-- walks 64-row tiles of the other side) on "mma.sync" (attn_bwd_mma.lua: S = X Y^T and dP by
-- mma.sync m16n8k16 from padded shared memory, the products P Z from registers) or "wgmma"
-- (attn_bwd_wgmma.lua, sm_90a: the same products for the warpgroup's 64 rows from swizzled shared
-- memory), and "simt" (the correctness baseline: fp32 on the SIMT cores, a warp a row, dot
-- products by shuffles). In the tile phases key-layout masks and biases are staged (shared
-- memory in phase 0, registers in phase 1) and key tiles with no visible key skipped;
-- query-layout ones are staged a tile pair at a time (by tensor map, cp.async, or element by
-- element where their rows are not whole 16-byte chunks: the products' loops never branch on
-- it), the mask's tile pairs voted on and skipped. dbias is written by
-- phase 0 (query layout; phase 1 with p.dq_accum) or 1 (key layout) where no sum crosses blocks
-- (p.dbias_fused), else by phase 2.
-- Throughout p_ij = exp(s_ij - lse_i) from the forward's lse, ds_ij = p_ij (dO_i . v_j -
-- row_dot_i) (times 1 - tanh^2 through softcap): the gradient of the score before softcap, i.e.
-- of the bias. A masked pair, and every pair of a row with no visible key (lse = +inf), adds
-- exactly nothing.
local common = require("cuda_common")
local errors = require("errors")
local kernel_params = require("kernel_params")
local limits = require("limits")
local tune = require("tune")

-- The tile phases' engines, by the tuning row's mma (simt has none: its own phases).
local engines = { ["mma.sync"] = require("attn_bwd_mma"), wgmma = require("attn_bwd_wgmma") }
local key_split = require("attn_bwd_split")
local turns = require("attn_bwd_turns")

local M = {}

local constants = [=[
constexpr int kD = $d;  // head_dim
constexpr int kPerLane = (kD + 31) / 32;  // elements of a row a lane holds: d = lane + 32 t
constexpr int kWarps = $warps;  // simt: rows a block (query rows, keys, dbias elements)
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

local mask_fn = [=[
__device__ __forceinline__ bool mask_at(const BwdParams &p, i64 b, i64 h, i64 i, i64 j)
{
    const unsigned char *m = (const unsigned char *)p.mask;
    return m[b * p.mask_stride[0] + h / p.mask_head_div * p.mask_stride[1] +
             i * p.mask_stride[2] + j * p.mask_key_stride] != 0;
}]=]

local visible_fn = [=[
// Whether key j is visible to query i of head h in batch b: the causal edge (bottom-right, when
// the variant has it) and the mask.
__device__ __forceinline__ bool visible(const BwdParams &p, i64 b, i64 h, i64 i, i64 j)
{
    $causal_cut
    return $mask_expr;
}]=]

-- The fused dbias (p.dbias_fused, set by the host where no reduction crosses blocks), both
-- engines: a key-layout dbias gets the column sums of ds from the keys phase, a query-layout
-- one ds itself from the rows phase.
local dbias_store_fn = [=[
__device__ __forceinline__ void store_dbias(const BwdParams &p, i64 b, i64 bh, i64 i, i64 j,
                                            float x)
{
    const i64 off = b * p.dbias_stride[0] + bh * p.dbias_stride[1] + i * p.dbias_stride[2] +
                    j * p.dbias_key_stride;
    if (p.bias_f32)
        ((float *)p.dbias)[off] = x;
    else
        ((u16 *)p.dbias)[off] = float_to_elem(x);
}]=]

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

-- The SIMT engine's phases 0 and 1: a warp a row.
local simt_phases = [=[
// Phase 0: a warp per query row (b, h, i).
__device__ __forceinline__ void rows_phase(const BwdParams &p, i64 b, i64 h, i64 i, int lane)
{
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
            if (!visible(p, b, h, i, j)) {
                $simt_rows_dbias_zero
                continue;  // no K or V bytes read for it
            }
            float kj[kPerLane], vj[kPerLane];
            load_row(row_of(p.k, p.k_stride, b, j, hk), lane, kj);
            load_row(row_of(p.v, p.v_stride, b, j, hk), lane, vj);
            const ScoreGrad g = score_grad(p, b, h, i, j, dot(q, kj), dot(dout, vj), lse, row_dot);
            axpy(g.ds, kj, acc);
            $simt_rows_dbias
        }
    }
    $simt_rows_dbias_empty
    store_row((u16 *)row_of(p.dq, p.dq_stride, b, i, h), lane, acc, p.scale);
}

// Phase 1: a warp per key (b, hk, j), over the group's heads and every query.
__device__ __forceinline__ void keys_phase(const BwdParams &p, i64 b, i64 hk, i64 j, int lane)
{
    float kj[kPerLane], vj[kPerLane], dk[kPerLane], dv[kPerLane];
    load_row(row_of(p.k, p.k_stride, b, j, hk), lane, kj);
    load_row(row_of(p.v, p.v_stride, b, j, hk), lane, vj);
#pragma unroll
    for (int t = 0; t < kPerLane; t++)
        dk[t] = dv[t] = 0.f;
    $simt_keys_dbias_start
    for (i64 h = hk * p.group; h < (hk + 1) * p.group; h++) {
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
            $simt_keys_dbias_add
        }
        $simt_keys_dbias_end
    }
    store_row((u16 *)row_of(p.dk, p.dk_stride, b, j, hk), lane, dk, p.scale);
    store_row((u16 *)row_of(p.dv, p.dv_stride, b, j, hk), lane, dv, 1.f);
}]=]

local simt_entry = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const BwdParams p)
{
    const int lane = threadIdx.x % 32;
    const i64 r = (i64)blockIdx.x * kWarps + threadIdx.x / 32;  // phases 0, 1: the row
    if (p.phase == 0) {
        if (r < p.Lq)
            rows_phase(p, blockIdx.z, blockIdx.y, r, lane);
    } else if (p.phase == 1) {
        if (r < p.Lk)
            keys_phase(p, blockIdx.z, blockIdx.y, r, lane);
    }$dbias_call
}]=]

-- The mma.sync engine's phases 0 and 1: a block owns 64 rows (queries or keys), its warps 16
-- each, and walks the other side's 64-row tiles; shared memory holds the two own tiles (Q, dO
-- or K, V) and the two streamed ones. Tiles are loaded whole and waited for (no overlap yet).
local tile_constants = [=[
constexpr int kTile = $tile;  // rows of each streamed tile, and of a warpgroup's own
constexpr int kGroups = kWarps / 4;  // warpgroups: each owns a tile of the block's rows
constexpr int kRows = kGroups * kTile;  // rows a block owns (queries or keys)
constexpr int kHeadDim = kD;
constexpr int kHeadDimPad = $d_pad;  // a multiple of 16: the k-steps of Q K^T
constexpr int kNT = kTile / 8;  // n-tiles of a 16 x kTile product
constexpr int kDT = kHeadDimPad / 8;  // n-tiles of a 16 x D product
constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks of a row
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kRows == 16 * kWarps, "a warp owns 16 rows of the block's own tiles");

// This thread's warpgroup, and its warp in it: with one warpgroup the constants 0 and the warp,
// which the compiler folds (threadIdx.x / 128 it cannot: it would hold registers for the offsets).
__device__ __forceinline__ int warp_group() { return kGroups > 1 ? threadIdx.x / 128 : 0; }
__device__ __forceinline__ int group_warp()
{
    return kGroups > 1 ? threadIdx.x / 32 % 4 : threadIdx.x / 32;
}
static_assert(kHeadDimPad % 16 == 0 && kHeadDim % 8 == 0, "k-steps of 16, rows of 16-byte chunks");]=]

-- p_at, two ways (the tuning row's knob p_select). Branched around outside the problem...
local p_at_branch = [=[
// p of one score in place: s holds q . k on entry, p on return (0 outside the problem, where
// masked, or where lse2 = lse * log2(e) = +inf). kb, km: the bias and mask value staged by the
// caller (key layout, or the query layout's tile: both always staged). i and j are 32-bit
// (below Lq + a tile, Lk + a block): their compares one instruction each, not two.
__device__ __forceinline__ void p_at(const BwdParams &p, int i, int j, float &s, float lse2,
                                     float kb, bool km$th_param)
{
    if (i >= p.Lq || j >= p.Lk$causal_or$mask_or) {
        s = 0.f;$th_zero
        return;
    }
    float x = p.scale * s;
    $bias_add_x
    $softcap_x
    s = fast_exp2(x * kLog2e - lse2);
}]=]

-- ...or computed for every score and selected: in the keys phase the test then depends on the
-- thread's two key rows only, and the exp2 and lse2's loads need no predicate a score.
local p_at_select = [=[
// p of one score in place: s holds q . k on entry, p on return (0 past Lk, where masked, or
// where lse2 = lse * log2(e) = +inf: rows past Lq, whose lse2 the callers stage as +inf and
// whose Q and dO rows read as zero, so x is finite there). kb, km: the bias and mask value staged
// by the caller (key layout, or the query layout's tile: both always staged). i and j are 32-bit
// (below Lq + a tile, Lk + a block): their compares one instruction each, not two.
__device__ __forceinline__ void p_at(const BwdParams &p, int i, int j, float &s, float lse2,
                                     float kb, bool km$th_param)
{
    const bool off = j >= p.Lk$causal_or$mask_or;
    $score_x
    s = off ? 0.f : fast_exp2($exp_arg - lse2);
    $th_zero
}]=]

-- The phases over the engine's tiles and products (engine.text: kTileElems, load_tile,
-- zero_pad_columns, issue_xyt_pair, issue_pz_async, wait_products, gemm_pz): a warp's 16 rows of
-- every product in mma.sync's m16n8 accumulator layout, whichever engine computed them.
local tile_phases = [=[
// The accumulator layout (thread: rows lane / 4 and + 8, columns 2 (lane % 4) + 0, 1 of each
// 8-column n-tile) as the A operand of the next product, 16-bit pairs.
__device__ __forceinline__ void pack_a(const float (&s)[kNT][4], u32 (&pp)[kTile / 16][4])
{
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++) {
        pp[kk][0] = pack2(s[2 * kk][0], s[2 * kk][1]);
        pp[kk][1] = pack2(s[2 * kk][2], s[2 * kk][3]);
        pp[kk][2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pp[kk][3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

__device__ __forceinline__ void zero_acc(float (&acc)[kDT][4])
{
#pragma unroll
    for (int dt = 0; dt < kDT; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[dt][e] = 0.f;
}

// The block's own rows [r0, r0 + kRows) of two (b, row, head) tensors (Q and dO, or K and V),
// warpgroup g's kTile of them into tiles x + g kTileElems and y + g kTileElems; rows past `rows`
// read as zero. Not committed.
__device__ __forceinline__ void load_own_tiles(u16 *x, u64 xb, const i64 xs[3], u16 *y, u64 yb,
                                               const i64 ys[3], i64 b, i64 r0, i64 h, i64 rows)
{
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
        load_tile(x + g * kTileElems, xb, xs, b, r0 + g * kTile, h, rows);
        load_tile(y + g * kTileElems, yb, ys, b, r0 + g * kTile, h, rows);
    }
}

// This warp's 16 rows of acc (times mul) into rows r0 + ... of a (b, row, head) tensor, below
// `rows`.
__device__ __forceinline__ void store_tile(const float (&acc)[kDT][4], u64 base,
                                           const i64 stride[3], i64 b, i64 r0, i64 h, i64 rows,
                                           float mul)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const i64 r = r0 + warp * 16 + lane / 4 + hf * 8;
        if (r >= rows)
            continue;
        u16 *row = (u16 *)base + b * stride[0] + r * stride[1] + h * stride[2];
#pragma unroll
        for (int dt = 0; dt < kDT; dt++) {
            const int d = dt * 8 + 2 * (lane % 4);
            if (dt * 8 < kHeadDim)
                *(u32 *)(row + d) = pack2(acc[dt][2 * hf] * mul, acc[dt][2 * hf + 1] * mul);
        }
    }
}

$qbias_fns
$p_at_fn

// p and ds of one score in place: s as p_at; dp holds dO . v on entry, ds on return (0 where p
// is: dO . v is finite, rows past the problem read as zero).
__device__ __forceinline__ void grad_at(const BwdParams &p, int i, int j, float &s, float &dp,
                                        float lse2, float row_dot, float kb, bool km)
{
    $th_decl
    p_at(p, i, j, s, lse2, kb, km$th_arg);
    dp = s * (dp - row_dot);
    $softcap_ds
}

// row_dot of query rows [m0, m0 + kRows) of head h, batch b, a warp a row: dO . O, O read from
// global; into sRowDot and p.row_dot (the keys phase's).
__device__ __forceinline__ void row_dots(const BwdParams &p, i64 b, i64 h, i64 m0, float *sRowDot)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int r = warp; r < kRows; r += kWarps) {
        float acc = 0.f;
        if (m0 + r < p.Lq) {
            const u16 *o = row_of(p.o, p.o_stride, b, m0 + r, h);
            const u16 *dout = row_of(p.dout, p.dout_stride, b, m0 + r, h);
            for (int d = lane; d < kHeadDim; d += 32)
                acc += elem_to_float(dout[d]) * elem_to_float(o[d]);
        }
        acc = warp_sum(acc);
        if (lane == 0) {
            sRowDot[r] = acc;
            if (m0 + r < p.Lq)
                ((float *)p.row_dot)[(b * p.H + h) * p.Lq + m0 + r] = acc;
            $row_dots_query_rows
        }
    }
}
$dq_accum_fns
// Phase 0: query rows [m0, m0 + kRows) of head h, batch b: row_dot and dq (where the keys phase
// adds dq, p.dq_accum, phase 0 is the memory-pass entry's instead). Warpgroup g owns rows [m0 +
// g kTile, + kTile): its Q and dO tiles, its products.
__device__ __forceinline__ void rows_tile(const BwdParams &p, u16 *smem, i64 b, i64 h, i64 m0)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, group = warp_group();
    const i64 hk = h / p.group;
    u16 *sQ = smem, *sDO = smem + kGroups * kTileElems, *sK = smem + 2 * kGroups * kTileElems;
    u16 *sV = sK + kTileElems;
    float *sRowDot = (float *)(smem + kTilesElems);
    $key_arrays
    $qbias_decl
    $qmask_decl
    $zero_pad_call
    load_own_tiles(sQ, p.q, p.q_stride, sDO, p.dout, p.dout_stride, b, m0, h, p.Lq);
    cp_async_commit();
    row_dots(p, b, h, m0, sRowDot);
    float lse2[2], row_dot[2];
    tiles_landed();
    __syncthreads();
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const i64 i = m0 + warp * 16 + lane / 4 + hf * 8;
        lse2[hf] = i < p.Lq ? ((const float *)p.lse)[b * p.lse_stride[0] + h * p.lse_stride[1] +
                                                     i * p.lse_stride[2]] * kLog2e
                            : kInf;
        row_dot[hf] = sRowDot[warp * 16 + lane / 4 + hf * 8];
    }
    float dq[kDT][4];
    zero_acc(dq);
    $rows_n_end
    $rows_n_end_dbias
    $rows_first_copies
    for (i64 n0 = 0; n0 < n_end; n0 += kTile) {
        $rows_tile_barrier
        $rows_copies
        __syncthreads();
        float s[kNT][4], dp[kNT][4];
        $rows_keys_load
        issue_xyt_pair(sQ + group * kTileElems, sK, s, sDO + group * kTileElems, sV, dp);
        $rows_grad
        $rows_keys_store
        $rows_dbias
        u32 pp[kTile / 16][4];
        pack_a(dp, pp);
        gemm_pz(pp, sK, dq);
        $rows_tile_end
    }
    store_tile(dq, p.dq, p.dq_stride, b, m0, h, p.Lq, p.scale);
}

// Phase 1: keys [n0, n0 + kRows) of K/V head hk, batch b: dk and dv over the group's heads and
// every query tile that sees them. Warpgroup g owns keys [n0 + g kTile, + kTile): its K and V
// tiles, its products; the block's warpgroups walk the query tiles together.
__device__ __forceinline__ void keys_tile(const BwdParams &p$keys_maps_param, u16 *smem, i64 b,
                                          i64 hk, i64 n0$keys_part_param)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, group = warp_group();
    $keys_order
    $keys_part_start
    u16 *sK = smem, *sV = smem + kGroups * kTileElems;
    $keys_query_decl
    $keys_qbias_decl
    $keys_qmask_decl
    $zero_pad_call
    $keys_own_load
    cp_async_commit();
    $keys_prologue
    float dk[kDT][4], dv[kDT][4];
    zero_acc(dk);
    zero_acc(dv);
    $keys_turn_decl
    $keys_m_begin
    $keys_dbias_start
    for (i64 h = hk * p.group; h < (hk + 1) * p.group; h++) {
        $keys_head_start
        $keys_m_end
        $keys_turns_rest
        $keys_qdbias_skipped
        $keys_head_first_tile
        for (i64 m0 = m_begin; m0 < m_end; m0 += kTile) {
            $keys_tile_barrier
            $keys_tile_vote
            $keys_tile_load
            float s[kNT][4], dp[kNT][4];  // transposed: rows are keys, columns queries
            issue_xyt_pair(sK + group * kTileElems, sQ, s, sV + group * kTileElems, sDO, dp);
            $keys_turn_early
            $keys_grad
            $keys_dbias_add
            $keys_qdbias
            u32 pd[kTile / 16][4];
            pack_a(dp, pd);
            issue_pz_async(pd, sQ, dk);  // dK^T += dS^T Q
            $keys_dq
            wait_products<0>(dv);  // both done before the loop's barrier frees Q and dO
            wait_products<0>(dk);
            $keys_tile_end
        }
        $keys_dbias_end
    }
    $keys_end
    $keys_store
}]=]

-- dq by reductions (the engine's M.dq_atomic, used where the library sets p.dq_accum: the default
-- mode): phase 0 writes only row_dot and zeroes the scratch's rows, the keys phase adds each
-- tile's dS K to them (store_ds, gemm_ds_k, red_tile), phase 3 scales them into dq. Five
-- products a tile pair instead of seven, at the cost of fp32 reductions in L2 and a run-to-run
-- rounding order.
local dq_accum_fns = [=[
// The dq scratch (fp32 (B, H, Lq, kD)) of head h, batch b.
__device__ __forceinline__ float *dq_accum_of(const BwdParams &p, i64 b, i64 h)
{
    return (float *)p.dq_accum + (b * p.H + h) * p.Lq * kD;
}

// Query rows [m0, m0 + kRows) of the scratch zeroed: phase 0, before the keys phase adds.
__device__ __forceinline__ void zero_dq_rows(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    float4 *rows = (float4 *)(dq_accum_of(p, b, h) + m0 * kD);  // kD % 8 == 0: 16-byte rows
    const i64 quads = (min((i64)p.Lq, m0 + kRows) - m0) * (kD / 4);
    for (i64 e = threadIdx.x; e < quads; e += kThreads)
        rows[e] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (turns_on(p))  // its tiles' turn bits
        for (int e = threadIdx.x; e < kRows / kTile * turn_words(p); e += kThreads)
            if (m0 + e / turn_words(p) * kTile < p.Lq)
                ((u64 *)p.dq_turns)[dq_turn_at(p, b, h, m0 + e / turn_words(p) * kTile) +
                                    e % turn_words(p)] = 0;
}

// Phase 0's row_dot of query rows [m0, m0 + kRows) of head h, batch b into p.row_dot (and the
// keys phase's lse / row_dot tiles, where it copies them): half a warp a row, a 16-byte chunk of
// O and dO a lane, summed by shuffles.
__device__ __forceinline__ float dot_chunk(uint4 x, uint4 y)
{
    const u32 a[4] = {x.x, x.y, x.z, x.w}, c[4] = {y.x, y.y, y.z, y.w};
    float s = 0.f;
#pragma unroll
    for (int t = 0; t < 4; t++)
        s += elem_to_float((u16)(a[t] & 0xffff)) * elem_to_float((u16)(c[t] & 0xffff)) +
             elem_to_float((u16)(a[t] >> 16)) * elem_to_float((u16)(c[t] >> 16));
    return s;
}

__device__ __forceinline__ void row_dots_pass(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    static_assert(kChunks <= 16 && kRows % (2 * kWarps) == 0, "half a warp a row, whole passes");
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, ch = lane % 16;
    for (int r = 2 * warp + lane / 16; r < kRows; r += 2 * kWarps) {
        const i64 i = m0 + r;
        float acc = 0.f;
        if (i < p.Lq && ch < kChunks)  // rows of 16-byte chunks (tensor_check.c)
            acc = dot_chunk(*(const uint4 *)(row_of(p.o, p.o_stride, b, i, h) + 8 * ch),
                            *(const uint4 *)(row_of(p.dout, p.dout_stride, b, i, h) + 8 * ch));
#pragma unroll
        for (int off = 8; off > 0; off /= 2)
            acc += __shfl_xor_sync(kAllLanes, acc, off);
        if (ch == 0) {
            if (i < p.Lq)
                ((float *)p.row_dot)[(b * p.H + h) * p.Lq + i] = acc;
            $query_rows
        }
    }
}

// Phase 3: query rows [m0, m0 + kRows) of dq = scale * the scratch, in q's dtype.
__device__ __forceinline__ void dq_tile(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    const float *acc = dq_accum_of(p, b, h);
    constexpr int kQuads = kD / 4;
    for (int e = threadIdx.x; e < kRows * kQuads; e += kThreads) {
        const i64 i = m0 + e / kQuads;
        const int d = e % kQuads * 4;
        if (i >= p.Lq)
            break;  // e only grows
        const float4 x = *(const float4 *)(acc + i * kD + d);
        u32 *out = (u32 *)((u16 *)p.dq + b * p.dq_stride[0] + i * p.dq_stride[1] +
                           h * p.dq_stride[2] + d);
        out[0] = pack2(x.x * p.scale, x.y * p.scale);
        out[1] = pack2(x.z * p.scale, x.w * p.scale);
    }
}
]=]

-- A tile's p and ds, either phase (grad_pieces names its rows and columns): P while dP runs
-- (p kept in fp32 for ds), then the phase's lines after P (the keys phase issues dV^T += P^T dO
-- there) and ds once dP lands...
local grad_split = [=[
wait_products<1>(s);  // S landed; dP may still run
#pragma unroll
for (int nt = 0; nt < kNT; nt++) {
    $nt_loads
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int c = nt * 8 + 2 * (lane % 4) + e % 2;  // $c_is
        const int r = warp * 16 + lane / 4 + (e / 2) * 8;  // $r_is
        p_at(p, $i, $j, s[nt][e], $lse2,
             $kb,
             $km);
    }
}
$after_p
wait_products<$dp_wait>(dp);  // dP landed$dp_wait_note
#pragma unroll
for (int nt = 0; nt < kNT; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++)  // ds = p (dp - row_dot): 0 where p is
        dp[nt][e] = s[nt][e] * (dp[nt][e] - $row_dot_e);]=]

-- ...or, with a softcap (whose derivative needs tanh's value a score: 32 more registers held
-- across the wait), both waited for and computed together.
local grad_fused = [=[
wait_products<0>(s);
wait_products<0>(dp);
#pragma unroll
for (int nt = 0; nt < kNT; nt++) {
    $nt_loads
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int c = nt * 8 + 2 * (lane % 4) + e % 2;  // $c_is
        const int r = warp * 16 + lane / 4 + (e / 2) * 8;  // $r_is
        grad_at(p, $i, $j, s[nt][e], dp[nt][e],
                $lse2,
                $row_dot,
                $kb,
                $km);
    }
}
$after_p]=]

-- The two phases' names for grad_split / grad_fused: in the rows phase a thread's rows are
-- queries and its columns keys, in the keys phase (S^T) the other way round.
-- With p_select (the keys phase's p needs no predicate) a thread's two queries of an n-tile read
-- their lse2 as one pair, once for both key rows: the compiler loaded each value once a row.
local function grad_pieces(mp, keys)
  if keys then
    local pair = mp.p_select and mp.keys_lse2:gsub("%[c%]$", "")
    return { c_is = "the query in the tile", r_is = "the key row in the tile",
      i = "(int)(m0 + c)", j = "(int)(n0 + r)",
      nt_loads = pair and "const float2 l2 = *(const float2 *)&" .. pair ..
        "[nt * 8 + 2 * (lane % 4)];  // c, c + 1" or "",
      lse2 = pair and "e % 2 ? l2.y : l2.x" or mp.keys_lse2, kb = mp.kb_keys,
      km = mp.km_keys, row_dot = "sRowDot[c]",
      row_dot_e = "sRowDot[nt * 8 + 2 * (lane % 4) + e % 2]",
      after_p = table.concat({ "u32 pp[kTile / 16][4];", "pack_a(s, pp);",
        "issue_pz_async(pp, sDO, dv);  // dV^T += P^T dO" }, "\n"),
      dp_wait = "1", dp_wait_note = "; dV^T may still run" }
  end
  return { c_is = "the key in the tile", r_is = "the query row in the tile",
    i = "(int)(m0 + r)", j = "(int)(n0 + c)", nt_loads = "", lse2 = "lse2[e / 2]", kb = mp.kb_rows,
    km = mp.km_rows, row_dot = "row_dot[e / 2]", row_dot_e = "row_dot[e / 2]", after_p = "",
    dp_wait = "0", dp_wait_note = "" }
end

local keys_dq = [=[
if (p.dq_accum) {  // the tile pair's share of dq: dS^T to shared memory, dS K added
    u16 *sDS = $ds_at;
    store_ds(pd, sDS + group * kDsElems);
    fence_proxy_async();
    $dq_buf_wait
    __syncthreads();
    $keys_qdbias_out
    float dq[kDqT][4];  // this warpgroup's columns of dq, over all the block's keys
    gemm_ds_k(sDS, sK, dq);
    const DqTurn turn = dq_turn(p, b, h, m0);  // the sums' order, if any
    $keys_red
}]=]

-- The keys phase's query tiles (Q, dO, lse, row_dot), two ways. Copied by the block's threads
-- (cp.async and loads) at the top of each tile and waited for there:
local keys_query_copy = {
  decl = table.concat({
    "u16 *sQ = smem + 2 * kGroups * kTileElems, *sDO = sQ + kTileElems;",
    "float *sLse2 = (float *)(smem + kTilesElems), *sRowDot = sLse2 + kTile;" }, "\n"),
  load = [=[
load_tile(sQ, p.q, p.q_stride, b, m0, h, p.Lq);
load_tile(sDO, p.dout, p.dout_stride, b, m0, h, p.Lq);
$qbias_stage_keys
cp_async_commit();
for (int c = threadIdx.x; c < kTile; c += kThreads) {
    const i64 i = m0 + c;
    sLse2[c] = i < p.Lq ? ((const float *)p.lse)[b * p.lse_stride[0] +
                                                 h * p.lse_stride[1] +
                                                 i * p.lse_stride[2]] * kLog2e
                        : kInf;
    sRowDot[c] = i < p.Lq ? ((const float *)p.row_dot)[(b * p.H + h) * p.Lq + i] : 0.f;
}
tiles_landed();
__syncthreads();]=],
  lse2 = "sLse2[c]",
  red = table.concat({
    "// staged in the Q and dO tiles (read by now) and their neighbour",
    "red_tile(dq, dq_accum_of(p, b, h), m0, p.Lq, sQ, p, turn);" }, "\n"),
  -- a walk of no tile (Lq = 0: phase 1 only zeroes dk, dv) never waited for K and V
  keys_end = "tiles_landed();  // the own K and V copies, before the block's memory goes",
}

-- or by the tensor memory accelerator into two stages (keys_tma_fns), one thread issuing the
-- next tile's loads while the block works on this one: no copy instruction a thread, no wait
-- but the mbarrier's. lse log2(e) and row_dot come from p.query_rows, where phase 0 wrote them a
-- tile at a time (row_dots_query_rows): one aligned bulk copy, whatever lse's strides. Where the
-- library could not make the maps (BwdMaps.tma = 0) the threads copy as above, into the stage.
local keys_query_tma = {
  decl = table.concat({
    "u16 *sQ, *sDO;  // this tile's stage",
    "float *sLse, *sRowDot;  // the stage's lse log2(e) and row_dot",
    "u64 *bars = query_bars(smem);",
    "u32 it = 0;  // query tiles walked: stage it % 2, its barrier's phase it / 2 % 2" }, "\n"),
  prologue = table.concat({
    "if (threadIdx.x == 0) {",
    "    mbar_init(&bars[0], 1);",
    "    mbar_init(&bars[1], 1);",
    "}",
    "tiles_landed();",
    "__syncthreads();  // K, V and the barriers, the block's" }, "\n"),
  head_first = table.concat({
    "if (maps.tma && threadIdx.x == 0 && m_begin < m_end)  // the head's first tile",
    "    issue_query_tile(p, maps, smem, it, b, h, m_begin$n0_arg);" }, "\n"),
  load = [=[
sQ = query_stage(smem, it);
sDO = sQ + kTileElems;
sLse = query_rows_stage(smem, it);
sRowDot = sLse + kTile;
if (!maps.tma)
    copy_query_tile(p, smem, it, b, h, m0);
else if (threadIdx.x == 0 && m0 + kTile < m_end)  // the next tile: the last one's stage
    issue_query_tile(p, maps, smem, it + 1, b, h, m0 + kTile$n0_arg);
$bias_stage_line
if (maps.tma)
    mbar_wait(&bars[it % 2], it / 2 % 2);
$bias_fill]=],
  lse2 = "sLse[c]",
  red = table.concat({
    "// staged in the Q and dO tiles (read by now) and their neighbour (stage 1: dS^T)",
    "red_tile(dq, dq_accum_of(p, b, h), m0, p.Lq, it % 2 ? smem + kDsAt : sQ,",
    "         p, turn);" }, "\n"),
  red_map = table.concat({  -- kD % 32 == 0: by dq's map where the maps were made
    "if (maps.tma)  // staged in the stage's Q and dO tiles",
    "    red_tile_map(dq, maps, sQ, b, h, m0, p, turn);",
    "else  // staged in the Q and dO tiles and their neighbour (stage 1: dS^T)",
    "    red_tile(dq, dq_accum_of(p, b, h), m0, p.Lq, it % 2 ? smem + kDsAt : sQ,",
    "             p, turn);" }, "\n"),
  keys_end = table.concat({
    "if (threadIdx.x == 0)",
    "    bulk_wait_read();  // the block's last bulk reads done before it ends" }, "\n"),
  tile_end = "it++;",
  row_dots = table.concat({
    "const i64 t0 = m0 + r / kTile * kTile;  // the row's query tile",
    "if (p.query_rows && t0 < p.Lq) {  // the keys phase's copy: lse log2(e), row_dot",
    "    const float *lse = (const float *)p.lse + b * p.lse_stride[0];",
    "    float *rows = (float *)query_rows_of(p, b, h, t0) + r % kTile;",
    "    const i64 i = m0 + r;",
    "    rows[0] = i < p.Lq ? lse[h * p.lse_stride[1] + i * p.lse_stride[2]] * kLog2e : kInf;",
    "    rows[kTile] = acc;",
    "}" }, "\n"),
}

-- The query ring (row.query_ring; tensor maps, kD % 32 == 0, no query-layout bias: where the
-- shared memory holds it): three stages, the next tile's loads issued at a tile's top (as with
-- two) into the stage of the tile before the last; dS^T in two buffers and dq staged in a buffer
-- of its own (stage_fns_ring, red_map_group). A tile then meets its block at one barrier, dS^T's
-- (the deterministic mode: one at its end), where the two stages do at four (loop top, dS^T,
-- red_tile_map's two), and thread 0 no longer waits for dq's sums to read the stage before it
-- loads the next tile. Why that stage is free: thread 0 is past dS^T's barrier of tile it - 1,
-- which every thread reached after tile it - 2's products were waited for.
local keys_query_ring = setmetatable({
  decl = table.concat({
    "u16 *sQ, *sDO;  // this tile's stage",
    "float *sLse, *sRowDot;  // the stage's lse log2(e) and row_dot",
    "u64 *bars = query_bars(smem);",
    "u32 it = 0;  // tiles walked: stage it % kStages, its barrier's phase it / kStages % 2" },
    "\n"),
  prologue = table.concat({
    "if (threadIdx.x == 0)",
    "    for (int s = 0; s < kStages; s++)",
    "        mbar_init(&bars[s], 1);",
    "tiles_landed();",
    "__syncthreads();  // K, V and the barriers, the block's" }, "\n"),
  tile_barrier = "",
  load = [=[
sQ = query_stage(smem, it);
sDO = sQ + kTileElems;
sLse = query_rows_stage(smem, it);
sRowDot = sLse + kTile;
if (!maps.tma) {
    __syncthreads();  // the last tile's Q, dO, lse and row_dot are read
    copy_query_tile(p, smem, it, b, h, m0);
} else {
    if (threadIdx.x == 0 && m0 + kTile < m_end)  // the next tile: tile it - 2's stage
        issue_query_tile(p, maps, smem, it + 1, b, h, m0 + kTile$n0_arg);
    mbar_wait(&bars[it % kStages], it / kStages % 2);
}]=],
  red_map = table.concat({
    "if (maps.tma)  // staged in dq's buffer, a warpgroup its own boxes",
    "    red_tile_map(dq, maps, dq_buffer(smem), b, h, m0, p, turn);",
    "else  // staged in dq's buffer and dS^T buffer 1 (red_tile's first barrier: read)",
    "    red_tile(dq, dq_accum_of(p, b, h), m0, p.Lq, dq_buffer(smem), p, turn);" }, "\n"),
  ds_at = "ds_tiles(smem, it)",
  dq_buf_wait = table.concat({
    "if (threadIdx.x % 128 == 0)",
    "    bulk_wait_read();  // the warpgroup's last dq sums have read dq's buffer" }, "\n"),
  keys_end = table.concat({
    "if (threadIdx.x % 128 == 0)",
    "    bulk_wait_read();  // each warpgroup's last dq sums done before the block ends" }, "\n"),
  tile_end = table.concat({
    "if (maps.tma && !p.dq_accum)  // (with dq sums, dS^T's barrier is it)",
    "    __syncthreads();  // every thread past this tile before the next tile's loads",
    "it++;" }, "\n"),
}, { __index = keys_query_tma })

local keys_tma_fns = [=[
// The keys phase's tensor maps (api/bwd_maps.h, the same bytes): q and dO over (D, Lq, H, B),
// boxes of 64 columns x kTile rows, 128-byte swizzled as load_tile's tiles; a query-layout bias
// over (Lk, Lq, bias heads, bias batches) and the fused dbias over (Lk, Lq, H, B), boxes of 128
// bytes of keys x kTile rows, swizzled the same way (bias_stage); dq's fp32 scratch over (kD, Lq,
// H, B) where kD % 32 == 0, boxes of 32 columns x kTile rows, swizzled the same way (red_tile_map).
struct __align__(128) BwdMaps {
    u64 q[16];       // CUtensorMap
    u64 dout[16];    // CUtensorMap
    u64 bias[16];    // CUtensorMap
    u64 dbias[16];   // CUtensorMap
    u64 dq[16];      // CUtensorMap
    u32 tma;         // 1: q's and dO's maps made (and dq's, where kD % 32 == 0 and the keys phase
                     // sums dq); 0: the threads copy the tiles by cp.async and sum dq by rows
    u32 bias_tma;    // 1 (only with tma): bias's map made (and dbias's, where the keys phase
                     // writes it)
    u32 bias_batch_step;  // 1; 0 where bias broadcasts over the batch (its coordinate stays 0)
};
static_assert(sizeof(BwdMaps) == 768, "api/bwd_maps.h's dm_bwd_maps");
$bias_stage_fns
$stage_fns

// The tile's lse log2(e) and row_dot in the scratch phase 0 wrote them to (p.query_rows).
__device__ __forceinline__ const float *query_rows_of(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    return (const float *)p.query_rows +
           ((b * p.H + h) * ((p.Lq + kTile - 1) / kTile) + m0 / kTile) * 2 * kTile;
}

// One thread: query tile `it` (rows [m0, m0 + kTile) of head h, batch b) into its stage: Q and
// dO by the maps (rows past Lq zero), lse log2(e) and row_dot by one bulk copy. Not inlined, as
// copy_query_tile: their addresses would be hoisted out of the tile loop and held in registers
// the products need.
__device__ __noinline__ void issue_query_tile(const BwdParams &p, const BwdMaps &maps, u16 *smem,
                                              u32 it, i64 b, i64 h, i64 m0$n0_param)
{
    u64 *bar = &query_bars(smem)[it % kStages];
    u16 *q = query_stage(smem, it), *dout = q + kTileElems;
    $issue_wait
    $issue_bias_bytes
    mbar_arrive_expect(bar, 2 * kTileElems * 2 + 2 * kTile * 4$bias_bytes);
#pragma unroll
    for (int a = 0; a < kAtoms; a++) {
        tma_load_4d(q + a * kTile * kAtomRowBytes / 2, maps.q, 64 * a, (int)m0, (int)h, (int)b,
                    bar);
        tma_load_4d(dout + a * kTile * kAtomRowBytes / 2, maps.dout, 64 * a, (int)m0, (int)h,
                    (int)b, bar);
    }
    bulk_load(query_rows_stage(smem, it), query_rows_of(p, b, h, m0), 2 * kTile * 4, bar);
    $issue_bias
}

// The block, where the maps could not be made (!maps.tma): query tile `it` into its stage by
// cp.async, waited for.
__device__ __noinline__ void copy_query_tile(const BwdParams &p, u16 *smem, u32 it, i64 b, i64 h,
                                             i64 m0)
{
    u16 *q = query_stage(smem, it);
    load_tile(q, p.q, p.q_stride, b, m0, h, p.Lq);
    load_tile(q + kTileElems, p.dout, p.dout_stride, b, m0, h, p.Lq);
    for (int c = threadIdx.x; c < 2 * kTile / 4; c += kThreads)  // lse log2(e), row_dot
        cp_async16(smem_u32(query_rows_stage(smem, it) + 4 * c), query_rows_of(p, b, h, m0) + 4 * c,
                   16);
    cp_async_commit();
    tiles_landed();
    __syncthreads();
}
]=]

-- The two query stages' layout (keys_tma_fns' $stage_fns), and the query ring's (row.query_ring).
local stage_fns_two = [=[
// Stage s of the query tiles: Q then dO, stage 0 after K and V, stage 1 after dS^T, so that a
// stage's two tiles and the dS^T tiles beside them hold red_tile's staged dq rows without
// touching the other stage.
constexpr int kStages = 2;  // (issue_query_tile's barrier: the stage's, it % kStages)
__device__ __forceinline__ u16 *query_stage(u16 *smem, u32 it)
{
    return smem + (it % 2 ? kDsAt + kGroups * kDsElems : 2 * kGroups * kTileElems);
}
__device__ __forceinline__ float *query_rows_stage(u16 *smem, u32 it)
{
    return (float *)(smem + kTilesElems) + it % 2 * 2 * kTile;  // lse, then row_dot
}
__device__ __forceinline__ u64 *query_bars(u16 *smem)
{
    return (u64 *)((float *)(smem + kTilesElems) + 4 * kTile);
}]=]

local stage_fns_ring = [=[
// The keys phase's shared memory with three query stages (the query ring): after the own K and
// V tiles, stages 0-2 of Q and dO, dS^T buffer 0, dq's staging buffer (red_tile_map's boxes),
// dS^T buffer 1; then each stage's lse log2(e) and row_dot, then the stages' mbarriers. A tile's
// loads are issued a tile ahead of its use into the stage the tile before the last one used, so
// that no barrier at the loop's top waits for the last tile's readers (dS^T's barrier has), and
// dq's sums read a buffer of their own, not the stage the next loads go to.
constexpr int kStages = 3;
constexpr int kStagesAt = 2 * kGroups * kTileElems;  // 16-bit elements, as the offsets below
constexpr int kDsRingAt = kStagesAt + kStages * 2 * kTileElems;
constexpr int kDqBufAt = kDsRingAt + kGroups * kDsElems;
constexpr int kDqBufBytes = kD / 32 * kTile * 128;  // red_tile_map's kD / 32 boxes
constexpr int kDsRing1At = kDqBufAt + kDqBufBytes / 2;
constexpr int kRingRowsAt = kDsRing1At + kGroups * kDsElems;
static_assert(kTile * kDqPitch <= kDqBufBytes + kGroups * kDsElems * 2,
              "red_tile's rows (no maps): in dq's buffer and dS^T buffer 1");
__device__ __forceinline__ u16 *query_stage(u16 *smem, u32 it)
{
    return smem + kStagesAt + it % kStages * 2 * kTileElems;
}
__device__ __forceinline__ float *query_rows_stage(u16 *smem, u32 it)
{
    return (float *)(smem + kRingRowsAt) + it % kStages * 2 * kTile;  // lse, then row_dot
}
__device__ __forceinline__ u64 *query_bars(u16 *smem)
{
    return (u64 *)((float *)(smem + kRingRowsAt) + kStages * 2 * kTile);
}
// Query tile it's dS^T tiles (two buffers: a warpgroup may store the next tile's while the
// other's dS K still reads these) and dq's staging buffer.
__device__ __forceinline__ u16 *ds_tiles(u16 *smem, u32 it)
{
    return smem + (it % 2 ? kDsRing1At : kDsRingAt);
}
__device__ __forceinline__ u16 *dq_buffer(u16 *smem) { return smem + kDqBufAt; }]=]

-- dq's sums by the tensor map where kD % 32 == 0 (api/bwd_maps.h makes the map then): the
-- keys phase's red_tile_map.
local red_tile_map_fn = [=[
// acc (the warpgroup's kDqCols columns of the tile's kTile rows) added to rows m0 + ... of dq's
// scratch (head h, batch b) by its map (maps.tma): staged in buf (the stage's Q and dO tiles,
// read by then; the query ring's dq buffer) as the map's kD / 32 boxes of kTile rows x 128 bytes,
// the 16-byte chunk x of row r at x ^ (r % 8) (a warp's float2 stores, 8 rows x 32 bytes, then
// take two wavefronts, the least), and added by one thread (the ring: a warpgroup's first, its
// boxes): kD / 32 reductions a tile where red_tile's threads issue one a row, one lane after
// another. Their reads are waited for by that thread before the buffer is written again
// (issue_query_tile, or the ring's keys_dq) and before the block ends. The deterministic mode
// (t.at >= 0, attn_bwd_turns.lua): that thread passes the last tile's turn (turn_held) once its
// sums are written and waits for this one's before it adds.
constexpr int kDqBoxBytes = kTile * 128;
__device__ __forceinline__ void red_tile_map(const float (&acc)[kDqT][4], const BwdMaps &maps,
                                             u16 *buf, i64 b, i64 h, i64 m0, const BwdParams &p,
                                             DqTurn t)
{
    static_assert(kD % 32 == 0 && kD / 32 * kDqBoxBytes <= 2 * kTileElems * 2,
                  "whole boxes, in the stage's Q and dO tiles");
    const int lane = threadIdx.x % 32, r = group_warp() * 16 + lane / 4;
    // column c = warp_group() kDqCols + 2 (lane % 4) + 8 dt: box c / 32, 16-byte chunk
    // c % 32 / 4 = 2 (dt % 4) + lane % 4 / 2 (the sum is an XOR), word c % 4 = 2 (lane % 2); the
    // chunk's swizzle, (chunk ^ r % 8) 16, is then (32 (dt % 4)) ^ sw: one XOR a store
    const int sw = ((lane % 4 / 2) ^ (r % 8)) * 16;
    unsigned char *row = (unsigned char *)buf + r * 128 +
                         warp_group() * (kDqCols / 32) * kDqBoxBytes + lane % 2 * 8;
    $free_buf
#pragma unroll
    for (int dt = 0; dt < kDqT; dt++) {
        if (warp_group() * kDqCols + dt * 8 < kHeadDim) {
            unsigned char *at = row + dt / 4 * kDqBoxBytes + ((dt % 4 * 32) ^ sw);
            *(float2 *)at = make_float2(acc[dt][0], acc[dt][1]);
            *(float2 *)(at + 8 * 128) = make_float2(acc[dt][2], acc[dt][3]);  // row r + 8
        }
    }
    fence_proxy_async();  // the stores, visible to the tensor memory accelerator
    $reduce
}
]=]

-- red_tile_map's two forms: staged in the stage's Q and dO tiles, the block's barriers around the
-- stores and thread 0's reductions...
local red_map_block = {
  free_buf = "__syncthreads();  // every warpgroup's products have read Q and dO",
  reduce = [=[
__syncthreads();
if (threadIdx.x == 0) {
    if (t.at >= 0) {  // the last tile's turn passed, this tile's awaited and held
        dq_turn_release(p);
        dq_turn_take(p, t, kTurnAdd);
    }
    for (int a = 0; a < kD / 32; a++)
        tma_reduce_add_4d(maps.dq, (unsigned char *)buf + a * kDqBoxBytes, 32 * a, (int)m0,
                          (int)h, (int)b);
    bulk_commit();
}]=] }
-- ...or (the query ring) in dq's own buffer, whose last reads the warpgroup's first thread waited
-- for before dS^T's barrier: each warpgroup its own boxes (its kDqCols columns), behind a
-- barrier of its 128 threads, so that neither waits for the other.
local red_map_group = {
  free_buf = table.concat({
    "// buf: dq's buffer, free (keys_dq's wait and barrier)",
    "static_assert(kGroups <= 2, \"a barrier a warpgroup: 1, 2\");" }, "\n"),
  reduce = [=[
if (warp_group() == 0)  // the warpgroup's stores, fenced: barrier 1 + its index
    named_barrier_sync<1, 128>();
else
    named_barrier_sync<2, 128>();
if (threadIdx.x % 128 == 0) {  // the warpgroup's boxes (a fixed count: the loop unrolls)
    if (t.at >= 0) {  // the last tile's turn passed, this tile's awaited and held
        dq_turn_release(p);
        dq_turn_take(p, t, kTurnAdd);
    }
#pragma unroll
    for (int k = 0; k < kDqCols / 32; k++) {
        const int a = warp_group() * (kDqCols / 32) + k;
        tma_reduce_add_4d(maps.dq, (unsigned char *)buf + a * kDqBoxBytes, 32 * a, (int)m0,
                          (int)h, (int)b);
    }
    bulk_commit();
}]=] }

-- A query-layout bias in the keys phase of a kernel with tensor maps (keys_tma_fns): its tile of
-- kTile queries x kRows keys comes by the map with the query tiles, into a stage of its own, and
-- the fused dbias (the default mode) leaves from the same stage by the map: the bias tile's copies
-- were waited for at each tile's top, with one block an SM nothing covered them (NOTES issue 16,
-- session 19, item 11). Where bias's map could not be made the threads fill the stage element by
-- element: the products' loop reads the stage either way, with no per-element branch.
local keys_tma_bias = {
  fns = [=[
// The keys phase's bias stages, on the swizzle's period after the float arrays and the barriers
// (kQueryTilesAt): stage it % 2 holds the tile's kTile queries x kRows keys as the map writes
// them: boxes of 128 bytes of keys (32 fp32, 64 16-bit), each kTile rows of 128 bytes, the
// 16-byte chunk x of query row c at chunk x ^ (c % 8). A warp's reads of its accumulator layout
// (8 keys x 4 query rows c % 8 in {0, 2, 4, 6} + e % 2) then hit 32 distinct banks (fp32) or 16
// shared words (16-bit).
constexpr int kBiasStagesAt =
    (kTilesElems * 2 + (kRows + 2 * kTile > 4 * kTile ? kRows + 2 * kTile : 4 * kTile) * 4 + 16 +
     1023) / 1024 * 1024;
constexpr int kBiasStageBytes = kTile * kRows * 4;  // fp32; a 16-bit bias fills half
__device__ __forceinline__ unsigned char *bias_stage(u16 *smem, u32 it)
{
    return (unsigned char *)smem + kBiasStagesAt + it % 2 * kBiasStageBytes;
}
// Keys a box holds (128 bytes of them), for the loads and the dbias stores.
__device__ __forceinline__ int bias_box_keys(const BwdParams &p) { return p.bias_f32 ? 32 : 64; }
// Byte offset of query c, key r in a stage of kEs-byte elements.
template <int kEs>
__device__ __forceinline__ u32 stage_at(int c, int r)
{
    constexpr int kBoxKeys = 128 / kEs;
    const int k = r % kBoxKeys;
    return r / kBoxKeys * (kTile * 128) + c * 128 + ((k * kEs / 16) ^ (c % 8)) * 16 +
           k * kEs % 16;
}
__device__ __forceinline__ float staged_bias_at(const BwdParams &p, const unsigned char *sB, int c,
                                                int r)
{
    return p.bias_f32 ? *(const float *)(sB + stage_at<4>(c, r))
                      : elem_to_float(*(const u16 *)(sB + stage_at<2>(c, r)));
}

// This thread's ds (its 16-row warp's keys x the tile's queries, accumulator layout) into the
// stage in bias's dtype, over the very elements of bias it read (no barrier between them).
__device__ __forceinline__ void stage_ds(const BwdParams &p, const float (&ds)[kNT][4],
                                         unsigned char *sB)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int nt = 0; nt < kNT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int c = nt * 8 + 2 * (lane % 4) + e % 2;  // the query in the tile
            const int r = warp * 16 + lane / 4 + (e / 2) * 8;  // the key in the block
            if (p.bias_f32)
                *(float *)(sB + stage_at<4>(c, r)) = ds[nt][e];
            else
                *(u16 *)(sB + stage_at<2>(c, r)) = float_to_elem(ds[nt][e]);
        }
}

// One thread: the staged ds (fenced, behind a barrier) into dbias by the map, queries [m0, m0 +
// kTile) x keys [n0, n0 + kRows) (the unit drops what lies past Lq and Lk); the stage is read
// when this thread's bulk groups are (issue_query_tile waits before it loads the stage again).
__device__ __noinline__ void store_ds_tile(const BwdParams &p, const BwdMaps &maps,
                                           const unsigned char *sB, i64 b, i64 h, i64 m0, i64 n0)
{
    const int box_keys = bias_box_keys(p);
    for (int a = 0; a < kRows / box_keys; a++)
        tma_store_4d(maps.dbias, sB + a * kTile * 128, (int)n0 + a * box_keys, (int)m0, (int)h,
                     (int)b);
    bulk_commit();
}

// The block, where bias's map could not be made: the tile's bias into the stage element by
// element, zero past Lq and Lk as the map fills it (the caller's barrier makes it the block's).
__device__ __noinline__ void fill_bias_stage(const BwdParams &p, unsigned char *sB, i64 b, i64 h,
                                             i64 m0, i64 n0)
{
    for (int e = threadIdx.x; e < kTile * kRows; e += kThreads) {
        const int c = e / kRows, r = e % kRows;
        const float x = m0 + c < p.Lq && n0 + r < p.Lk ? bias_at(p, b, h, m0 + c, n0 + r) : 0.f;
        if (p.bias_f32)
            *(float *)(sB + stage_at<4>(c, r)) = x;
        else
            *(u16 *)(sB + stage_at<2>(c, r)) = float_to_elem(x);
    }
}

// The block, where the maps could not be made: the staged ds into dbias element by element.
__device__ __noinline__ void store_ds_staged(const BwdParams &p, const unsigned char *sB, i64 b,
                                             i64 h, i64 m0, i64 n0)
{
    for (int e = threadIdx.x; e < kTile * kRows; e += kThreads) {
        const int c = e / kRows, r = e % kRows;
        if (m0 + c >= p.Lq)
            break;  // e only grows
        if (n0 + r < p.Lk)
            store_dbias(p, b, h, m0 + c, n0 + r, staged_bias_at(p, sB, c, r));
    }
}
]=],
  n0_param = ", i64 n0",
  n0_arg = ", n0",
  issue_bias_bytes = table.concat({
    "const u32 bias_bytes = maps.bias_tma ? kTile * kRows * (p.bias_f32 ? 4 : 2) : 0;" }, "\n"),
  bias_bytes = " + bias_bytes",
  issue_bias = table.concat({
    "if (maps.bias_tma) {  // the bias tile: boxes of 128 bytes of keys",
    "    unsigned char *sb = bias_stage(smem, it);",
    "    const int box_keys = bias_box_keys(p);",
    "    const int hb = (int)((u32)h / (u32)p.bias_head_div);",
    "    const int bb = (int)b * (int)maps.bias_batch_step;",
    "    for (int a = 0; a < kRows / box_keys; a++)",
    "        tma_load_4d(sb + a * kTile * 128, maps.bias, (int)n0 + a * box_keys, (int)m0, hb, bb,",
    "                    bar);",
    "}" }, "\n"),
  bias_stage_line = "sBiasQ = bias_stage(smem, it);",
  bias_fill = table.concat({
    "if (!bias_staged) {  // no map: the threads fill the stage",
    "    fill_bias_stage(p, sBiasQ, b, h, m0, n0);",
    "    __syncthreads();",
    "}" }, "\n"),
  decl = table.concat({
    "// the query-layout bias: this tile's stage, loaded by the map where it was made",
    "unsigned char *sBiasQ = bias_stage(smem, 0);",
    "const bool bias_staged = maps.bias_tma;" }, "\n"),
  kb_keys = "staged_bias_at(p, sBiasQ, c, r)",
  qdbias = table.concat({
    "if (p.dq_accum && p.dbias_fused)  // ds is dbias: into the stage, over the bias read",
    "    stage_ds(p, dp, sBiasQ);" }, "\n"),
  qdbias_out = table.concat({
    "if (p.dbias_fused && bias_staged) {  // behind the barrier: the staged ds out",
    "    if (threadIdx.x == 0)",
    "        store_ds_tile(p, maps, sBiasQ, b, h, m0, n0);",
    "} else if (p.dbias_fused) {",
    "    store_ds_staged(p, sBiasQ, b, h, m0, n0);",
    "}" }, "\n"),
}

local mma_entry = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const __grid_constant__ BwdParams p$maps_param)
{
    extern __shared__ __align__($smem_align) unsigned char smem_raw[];
    u16 *smem = (u16 *)smem_raw;
    if (p.phase == 0)
        $rows_phase
    else if (p.phase == 1)
        $keys_call;$dbias_call_mma
}]=]

-- The deterministic rows phase alone (bwdrows keys): engines with dq reductions leave it out of
-- their bwd kernel, whose default mode never runs it (its phase 0 is the memory-pass entry's),
-- and the library loads this module only for deterministic calls (api/bwd.c).
local rows_only_entry = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const __grid_constant__ BwdParams p)
{
    extern __shared__ __align__($smem_align) unsigned char smem_raw[];
    rows_tile(p, (u16 *)smem_raw, blockIdx.z, blockIdx.y, (i64)blockIdx.x * kRows);
}]=]

-- A varlen entry over query rows (the rows phase alone, the memory passes): sequence blockIdx.z's
-- view, blocks past its rows return.
local varlen_rows_entry = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$name(const BwdParams pv)
{
    $smem_decl
    const Sequence sq = sequence_of(pv, blockIdx.z);
    const i64 r0 = (i64)blockIdx.x * kRows;
    if (r0 >= sq.Lq)
        return;  // the grid covers max_seqlen_q
    BwdParams p = pv;
    view_sequence(p, sq);
    $pad
    $call
}]=]

local dbias_phase = [=[
// The sum of ds_ij over heads [h0, h1) and queries [i0, i1) of batch entry b, for key j, in that
// order (the K and V rows read only for a visible pair).
__device__ __forceinline__ float ds_sum(const BwdParams &p, i64 b, i64 h0, i64 h1, i64 i0, i64 i1,
                                        i64 j, int lane)
{
    float sum = 0.f;
    for (i64 h = h0; h < h1; h++) {
        const i64 hk = h / p.group;
        float kj[kPerLane], vj[kPerLane];
        bool loaded = false;
        for (i64 i = i0; i < i1; i++) {
            if (!visible(p, b, h, i, j))
                continue;
            const float lse = ((const float *)p.lse)[b * p.lse_stride[0] + h * p.lse_stride[1] +
                                                     i * p.lse_stride[2]];
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
    return sum;
}
$dbias_element_fn]=]

-- Phase 2's element, dense: (bb, bh, bi, j) of dbias's (dbias_B, dbias_H, dbias_Lq, Lk); with
-- p.dbias_part (api/bwd.c: every dense call whose dbias sums cross blocks) the sum of the
-- partials phases 0 and 1 wrote, a memory pass, instead of ds recomputed a warp an element
-- (on the H200 ~50 ms for a (1, 16, 4096, 4096) dbias at B = 2, against ~2.4 ms for the rest).
local dbias_element_dense = [=[
// Phase 2 from the partials (p.dbias_part: bias's dtype, (B, H / p.dbias_head_div, dbias_Lq, Lk)
// as phases 0 and 1 wrote them in place of dbias): dbias element e, the sum of the partials of
// the batches and heads it stands for, batches first, in order: a lane an element.
__device__ __forceinline__ void dbias_sum_parts(const BwdParams &p, i64 e)
{
    const i64 j = e % p.Lk, bi = e / p.Lk % p.dbias_Lq;
    const i64 bh = e / ((i64)p.Lk * p.dbias_Lq) % p.dbias_H;
    const i64 bb = e / ((i64)p.Lk * p.dbias_Lq * p.dbias_H);
    const i64 b0 = p.dbias_B == p.B ? bb : 0, b1 = p.dbias_B == p.B ? bb + 1 : p.B;
    const i64 per = p.bias_head_div / p.dbias_head_div, heads = p.H / p.dbias_head_div;
    float sum = 0.f;
    for (i64 b = b0; b < b1; b++)
        for (i64 s = bh * per; s < (bh + 1) * per; s++) {
            const i64 at = ((b * heads + s) * p.dbias_Lq + bi) * p.Lk + j;
            sum += p.bias_f32 ? ((const float *)p.dbias_part)[at]
                              : elem_to_float(((const u16 *)p.dbias_part)[at]);
        }
    store_dbias(p, bb, bh, bi, j, sum);
}

// Phase 2: a warp per dbias element (bb, bh, bi, j) of dbias's (dbias_B, dbias_H, dbias_Lq, Lk):
// the sum of ds over the batches, heads and queries it stands for, in that order; with partials,
// 32 elements a warp from element 32 r on (the host's grid: a warp per 32).
__device__ __forceinline__ void dbias_phase(const BwdParams &p, i64 r, int lane)
{
    if (p.dbias_part) {
        const i64 e = 32 * r + lane;
        if (e < (i64)p.dbias_B * p.dbias_H * p.dbias_Lq * p.Lk)
            dbias_sum_parts(p, e);
        return;
    }
    const i64 j = r % p.Lk, bi = r / p.Lk % p.dbias_Lq;
    const i64 bh = r / ((i64)p.Lk * p.dbias_Lq) % p.dbias_H;
    const i64 bb = r / ((i64)p.Lk * p.dbias_Lq * p.dbias_H);
    const i64 b0 = p.dbias_B == p.B ? bb : 0, b1 = p.dbias_B == p.B ? bb + 1 : p.B;
    const i64 i0 = p.dbias_Lq == p.Lq ? bi : 0, i1 = p.dbias_Lq == p.Lq ? bi + 1 : p.Lq;
    const i64 h0 = bh * p.bias_head_div, h1 = h0 + p.bias_head_div;
    float sum = 0.f;
    for (i64 b = b0; b < b1; b++)
        sum += ds_sum(p, b, h0, h1, i0, i1, j, lane);
    if (lane == 0)
        store_dbias(p, bb, bh, bi, j, sum);
}
]=]

-- Phase 2's element, varlen: a key token's or a query token's, found in cu_seqlens.
local dbias_element_varlen = [=[
// The sequence holding token t: the last b whose first token cu[b] is at or before t (cu_seqlens
// are non-decreasing, dmattn.h). The caller checks t against that sequence's clamped extent, so
// other cu_seqlens leave elements unwritten and never move a read outside a tensor.
__device__ __forceinline__ int sequence_at(const int *cu, int n_seqs, i64 t)
{
    int lo = 0, hi = n_seqs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (cu[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// Phase 2, varlen: a warp per dbias element,
// $element_doc:
// the sum of ds over the query heads its stored head bh stands for
// $element_sum_doc.
__device__ __forceinline__ void dbias_phase(const BwdParams &pv, i64 r, int lane)
{
    $element_index
    const Sequence sq = sequence_of(pv, sequence_at((const int *)pv.$element_cu, pv.B, t));
    if (t < sq.$element_tok || t >= (i64)sq.$element_tok + sq.$element_len)
        return;  // outside every sequence: not written
    BwdParams p = pv;
    view_sequence(p, sq);
    const i64 h0 = bh * p.bias_head_div, h1 = h0 + p.bias_head_div;
    $element_sum
}
]=]

-- Varlen: a block's sequence as a dense problem of one batch entry (b = 0), every base moved to
-- the sequence's first token. The library sets each tensor's batch stride to its token stride
-- (api/bwd_varlen.c), so the dense phases run on the view unchanged.
local view_fn = [=[
// p as sequence sq's own problem (batch entry 0, sq.Lq x sq.Lk); row_dot: the sequence's H x Lq
// block of the (H x total_q) scratch, disjoint from every other sequence's.
__device__ __forceinline__ void view_sequence(BwdParams &p, const Sequence &sq)
{
    const i64 tq = sq.q_tok, tk = sq.k_tok;
    p.q += 2 * tq * p.q_stride[0];
    p.o += 2 * tq * p.o_stride[0];
    p.dout += 2 * tq * p.dout_stride[0];
    p.dq += 2 * tq * p.dq_stride[0];
    p.k += 2 * tk * p.k_stride[0];
    p.v += 2 * tk * p.v_stride[0];
    p.dk += 2 * tk * p.dk_stride[0];
    p.dv += 2 * tk * p.dv_stride[0];
    p.lse += 4 * tq * p.lse_stride[0];
    p.row_dot += 4 * tq * p.H;
    if (p.dq_accum)  // (H x total_q x kD): the sequence's H x Lq x kD block
        p.dq_accum += 4 * tq * p.H * kD;
    $view_mask
    $view_bias
    p.Lq = sq.Lq;
    p.Lk = sq.Lk;
}]=]

-- A query-layout dbias's columns past the sequence's keys (up to max_seqlen_k): 0, written by the
-- rows phase where it writes ds (dbias_fused), by phase 2's elements otherwise.
local dbias_pad_mma = [=[
// columns past the sequence's keys: dbias 0
const i64 pad = p.dbias_fused ? p.max_seqlen_k - p.Lk : 0;
for (i64 e = threadIdx.x; e < kRows * pad; e += kThreads)
    if (r0 + e / pad < p.Lq)
        store_dbias(p, 0, blockIdx.y, r0 + e / pad, p.Lk + e % pad, 0.f);]=]

local dbias_pad_simt = [=[
for (i64 j = p.Lk + lane; p.dbias_fused && j < p.max_seqlen_k; j += 32)
    store_dbias(p, 0, blockIdx.y, r, j, 0.f);  // past the keys: dbias 0]=]

local mma_entry_varlen = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const BwdParams pv)
{
    extern __shared__ __align__($smem_align) unsigned char smem_raw[];
    u16 *smem = (u16 *)smem_raw;
    if (pv.phase != 2) {
        // sequence blockIdx.z; the grid covers max_seqlen: blocks past its rows have nothing
        const Sequence sq = sequence_of(pv, blockIdx.z);
        const i64 r0 = (i64)blockIdx.x * kRows;
        if (r0 >= (pv.phase == 1 ? sq.Lk : sq.Lq))
            return;
        BwdParams p = pv;
        view_sequence(p, sq);
        if (p.phase == 0) {
            $rows_phase
        } else if (p.phase == 1) {
            keys_tile(p, smem, 0, blockIdx.y, r0);
        }
    }$dbias_call_mma
}]=]

local simt_entry_varlen = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const BwdParams pv)
{
    const int lane = threadIdx.x % 32;
    const i64 r = (i64)blockIdx.x * kWarps + threadIdx.x / 32;  // phases 0, 1: the row
    if (pv.phase < 2) {
        BwdParams p = pv;  // sequence blockIdx.z's view
        view_sequence(p, sequence_of(pv, blockIdx.z));
        if (p.phase == 0) {
            if (r < p.Lq) {
                $dbias_pad
                rows_phase(p, 0, blockIdx.y, r, lane);
            }
        } else if (r < p.Lk) {
            keys_phase(p, 0, blockIdx.y, r, lane);
        }
    }$dbias_call
}]=]

-- The default mode's memory passes (engines with M.dq_atomic), an entry point of their own in the
-- same module, launched without shared memory (api/bwd.c): phase 0 (row_dot, the dq scratch's
-- rows zeroed, the keys phase's lse / row_dot tiles) and phase 3 (dq from the sums). In the main
-- entry its registers and shared memory held them to one block an SM, 8 warps, for memory passes.
local memory_pass_fn = [=[
// Query rows [m0, m0 + kRows) of head h, batch b: phase 0 or 3 of the default mode.
__device__ __forceinline__ void memory_pass(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    if (p.phase == 0) {
        row_dots_pass(p, b, h, m0);
        zero_dq_rows(p, b, h, m0);
        $mark_busy_keys
    } else if (p.phase == 3) {
        dq_tile(p, b, h, m0);
    }
}
]=]

local rows_entry_dense = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry_rows(const BwdParams p)
{
    memory_pass(p, blockIdx.z, blockIdx.y, (i64)blockIdx.x * kRows);
}]=]


local dbias_call = [=[
 else if (r < $dbias_elems) {
        dbias_phase($params, r, lane);
    }]=]

local dbias_call_mma = [=[

    else if ((i64)blockIdx.x * kWarps + threadIdx.x / 32 <
             $dbias_elems)  // phase 2: a warp an element
        dbias_phase($params, (i64)blockIdx.x * kWarps + threadIdx.x / 32, threadIdx.x % 32);]=]

local function check_variant(v)
  if v.dir ~= "bwd" and v.dir ~= "bwdrows" and v.dir ~= "bwddet" then
    errors.unsupported("attn_bwd.lua emits the backward family, not " .. tostring(v.dir))
  end
  if v.d < limits.head_dim_min or v.d > limits.head_dim_max or v.d % limits.head_dim_step ~= 0 then
    errors.unsupported("head_dim " .. v.d .. " outside the supported range")
  end
  if v.window ~= 0 then
    errors.unsupported("the backward takes the forward's window mask as its mask: w0 only")
  end
end

-- The text pieces that depend on the mask and bias layouts (and causal), for both engines.
-- A tile pair's rows of a query-layout bias or mask, by cp.async (both tile phases).
local stage_rows_fn = [=[
// Rows [m0, m0 + kR) of a tile of kEs-byte elements, kC of them from column j0 on (rows `pitch`
// elements apart in global memory from base, kPitch bytes apart in s), by cp.async, 16 bytes a
// copy (not committed); rows past `rows` and columns from `cols` on read as zero. A thread keeps
// its chunk column on every pass: one pointer step a copy.
template <int kEs, int kPitch, int kR, int kC>
__device__ __forceinline__ void stage_rows(unsigned char *s, const unsigned char *base, i64 pitch,
                                           i64 m0, i64 rows, i64 j0, i64 cols)
{
    constexpr int kRowChunks = kC * kEs / 16, kPassRows = kThreads / kRowChunks;
    static_assert(kThreads % kRowChunks == 0 && kR % kPassRows == 0, "whole rows a pass");
    const int r = threadIdx.x / kRowChunks, ch = threadIdx.x % kRowChunks;
    const i64 j = j0 + ch * 16 / kEs;
    const unsigned char *src = base + ((m0 + r) * pitch + j) * kEs;
    const u32 dst = smem_u32(s + r * kPitch + ch * 16);
#pragma unroll
    for (int k = 0; k < kR / kPassRows; k++) {
        const bool in = m0 + r + k * kPassRows < rows && j < cols;  // whole chunks
        cp_async16(dst + k * kPassRows * kPitch, in ? src + k * kPassRows * pitch * kEs : base,
                   in ? 16 : 0);
    }
}

// A staged tile pair's rows are queries and its columns keys: kRows x kTile in the rows phase,
// kTile x kRows in the keys phase. Bytes a row of kC columns, banks offset:
__host__ __device__ constexpr int bias_pitch(int cols) { return cols * 4 + 16; }  // fp32
__host__ __device__ constexpr int mask_pitch(int cols) { return cols + 16; }
// Where they sit: bytes into shared memory after the phases' float arrays (phase 0's kRows + 2
// kTile floats are the most), the bias tile first, then the mask tile.
constexpr int kQueryTilesAt = $query_tiles_at;
]=]

-- The query-layout bias, staged a tile pair at a time (both tile phases): rows of the tile's
-- queries, its kTile keys contiguous, by cp.async with the tile's other loads where every row is
-- whole 16-byte chunks (contiguous keys, aligned base, strides and Lk); else by the threads
-- element by element (fill_bias_tile), so that the products' loops never branch on it.
local qbias_fns = [=[
constexpr int kBiasTileBytes = kRows * bias_pitch(kTile) > kTile * bias_pitch(kRows)
                                   ? kRows * bias_pitch(kTile) : kTile * bias_pitch(kRows);
static_assert(kBiasTileBytes % 16 == 0, "a mask tile staged after it stays 16-byte aligned");

__device__ __forceinline__ bool bias_stageable(const BwdParams &p)
{
    const i64 es = p.bias_f32 ? 4 : 2;
    return p.bias_key_stride == 1 &&
           ((p.bias | (u64)(p.bias_stride[0] * es) | (u64)(p.bias_stride[1] * es) |
             (u64)(p.bias_stride[2] * es) | (u64)(p.Lk * es)) & 15) == 0;
}

// Queries [m0, m0 + kR) x keys [n0, n0 + kC) of head h's bias into sB (not committed); rows and
// keys past the problem read as zero (p_at gives them p = 0).
template <int kR, int kC>
__device__ __forceinline__ void stage_bias_tile(const BwdParams &p, unsigned char *sB, i64 b,
                                                i64 h, i64 m0, i64 n0)
{
    constexpr int kPitch = bias_pitch(kC);
    const i64 off = b * p.bias_stride[0] + (u32)h / (u32)p.bias_head_div * p.bias_stride[1];
    if (p.bias_f32)
        stage_rows<4, kPitch, kR, kC>(sB, (const unsigned char *)p.bias + off * 4,
                                      p.bias_stride[2], m0, p.Lq, n0, p.Lk);
    else
        stage_rows<2, kPitch, kR, kC>(sB, (const unsigned char *)p.bias + off * 2,
                                      p.bias_stride[2], m0, p.Lq, n0, p.Lk);
}

// As stage_bias_tile, element by element, where bias's rows are not whole 16-byte chunks: the
// products read the staged tile either way, with no per-element branch (the caller's barrier
// makes the stores the block's).
template <int kR, int kC>
__device__ __noinline__ void fill_bias_tile(const BwdParams &p, unsigned char *sB, i64 b, i64 h,
                                            i64 m0, i64 n0)
{
    for (int e = threadIdx.x; e < kR * kC; e += kThreads) {
        const int r = e / kC, c = e % kC;
        const float x = m0 + r < p.Lq && n0 + c < p.Lk ? bias_at(p, b, h, m0 + r, n0 + c) : 0.f;
        unsigned char *row = sB + r * bias_pitch(kC);
        if (p.bias_f32)
            ((float *)row)[c] = x;
        else
            ((u16 *)row)[c] = float_to_elem(x);
    }
}

// The staged bias (kC columns a row) of the tile's query row r, key column c.
template <int kC>
__device__ __forceinline__ float staged_bias(const BwdParams &p, const unsigned char *sB, int r,
                                             int c)
{
    const unsigned char *row = sB + r * bias_pitch(kC);
    return p.bias_f32 ? ((const float *)row)[c] : elem_to_float(((const u16 *)row)[c]);
}

// Query rows [i0, i1) x keys [n0, n0 + kC) of a query-layout dbias set to 0: the tile pairs a
// tile phase that writes dbias skips.
template <int kC>
__device__ __forceinline__ void zero_dbias_rows(const BwdParams &p, i64 b, i64 h, i64 i0, i64 i1,
                                                i64 n0)
{
    const i64 rows = min(i1, (i64)p.Lq) - i0;
    for (i64 e = threadIdx.x; e < rows * kC; e += kThreads)
        if (n0 + e % kC < p.Lk)
            store_dbias(p, b, h, i0 + e / kC, n0 + e % kC, 0.f);
}
]=]

-- The keys phase writing a query-layout dbias (engines that sum dq there, with p.dq_accum): ds
-- staged as query rows, stored from them, zeros for the pairs its walk skips.
local keys_qdbias_fns = [=[
// The keys phase's ds^T (this warp's 16 keys x the tile's queries, accumulator layout) into sB
// as the bias is staged: a row a query, fp32. A store's 32 lanes hit 32 banks (pitch 4 mod 32
// words).
__device__ __forceinline__ void stage_ds_rows(const float (&ds)[kNT][4], unsigned char *sB)
{
    constexpr int kPitch = bias_pitch(kRows);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *t = (float *)(sB + 2 * (lane % 4) * kPitch) + warp * 16 + lane / 4;
#pragma unroll
    for (int nt = 0; nt < kNT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            t[(nt * 8 + e % 2) * (kPitch / 4) + (e / 2) * 8] = ds[nt][e];
}

// stage_ds_rows' tile (behind a barrier) into dbias: queries [m0, m0 + kTile) x keys [n0, n0 +
// kRows), four keys a thread, a row's threads adjacent.
__device__ __forceinline__ void store_ds_rows(const BwdParams &p, const unsigned char *sB, i64 b,
                                              i64 h, i64 m0, i64 n0)
{
    for (int c = threadIdx.x; c < kTile * kRows / 4; c += kThreads) {
        const int r = c / (kRows / 4), k4 = c % (kRows / 4) * 4;
        const float4 x = *(const float4 *)(sB + r * bias_pitch(kRows) + k4 * 4);
        const i64 i = m0 + r, j = n0 + k4;
        if (i >= p.Lq)
            break;  // c only grows
        const float v[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int t = 0; t < 4; t++)
            if (j + t < p.Lk)
                store_dbias(p, b, h, i, j + t, v[t]);
    }
}
]=]

-- The query-layout mask, staged as the bias above (bytes, kTile a row) and voted on: a tile pair
-- with no true element is skipped, as the key-layout mask's tiles are.
local qmask_fns = [=[

__device__ __forceinline__ bool mask_stageable(const BwdParams &p)
{
    return p.mask_key_stride == 1 &&
           ((p.mask | (u64)p.mask_stride[0] | (u64)p.mask_stride[1] | (u64)p.mask_stride[2] |
             (u64)p.Lk) & 15) == 0;
}

// Queries [m0, m0 + kR) x keys [n0, n0 + kC) of head h's mask into sM (not committed); rows and
// keys past the problem read as false.
template <int kR, int kC>
__device__ __forceinline__ void stage_mask_tile(const BwdParams &p, unsigned char *sM, i64 b,
                                                i64 h, i64 m0, i64 n0)
{
    stage_rows<1, mask_pitch(kC), kR, kC>(sM, (const unsigned char *)p.mask +
                                                  b * p.mask_stride[0] +
                                                  (u32)h / (u32)p.mask_head_div * p.mask_stride[1],
                                          p.mask_stride[2], m0, p.Lq, n0, p.Lk);
}

// As stage_mask_tile, element by element, where the mask's rows are not whole 16-byte chunks:
// each thread fills the chunks it would have staged, which staged_mask_any reads back (the
// vote's barrier makes them the block's).
template <int kR, int kC>
__device__ __noinline__ void fill_mask_tile(const BwdParams &p, unsigned char *sM, i64 b, i64 h,
                                            i64 m0, i64 n0)
{
    constexpr int kRowChunks = kC / 16;
    for (int c = threadIdx.x; c < kR * kRowChunks; c += kThreads) {
        const int r = c / kRowChunks, k0 = c % kRowChunks * 16;
        unsigned char *chunk = sM + r * mask_pitch(kC) + k0;
        for (int t = 0; t < 16; t++)
            chunk[t] = m0 + r < p.Lq && n0 + k0 + t < p.Lk && mask_at(p, b, h, m0 + r, n0 + k0 + t);
    }
}

// Whether any of the chunks this thread staged (stage_mask_tile's split) holds a true element.
template <int kR, int kC>
__device__ __forceinline__ bool staged_mask_any(const unsigned char *sM)
{
    constexpr int kRowChunks = kC / 16;
    u32 any = 0;
    for (int c = threadIdx.x; c < kR * kRowChunks; c += kThreads) {
        const unsigned char *chunk =
            sM + (c / kRowChunks) * mask_pitch(kC) + (c % kRowChunks) * 16;
        const uint4 w = *(const uint4 *)chunk;
        any |= w.x | w.y | w.z | w.w;
    }
    return any != 0;
}
]=]

-- The query-layout mask's vote of a tile pair in either tile phase (the caller's loop): staged,
-- waited for, and a pair with no true element skipped by `continue_line` after `skipped` (its
-- lines, indented for the inner block; nil: ds is 0 and nothing is written).
local function qmask_vote(shape, skipped, continue_line)
  return table.concat({
    "if (mask_staged) {  // the tile's mask: a tile with no visible pair is skipped",
    "    stage_mask_tile<" .. shape .. ">(p, sMaskQ, b, h, m0, n0);",
    "    cp_async_commit();",
    "    cp_async_wait<0>();",
    "} else {  // rows not of whole 16-byte chunks",
    "    fill_mask_tile<" .. shape .. ">(p, sMaskQ, b, h, m0, n0);",
    "}",
    "if (!__syncthreads_or(staged_mask_any<" .. shape .. ">(sMaskQ))) {",
    skipped or "    // ds = 0 here",
    "    " .. continue_line,
    "}" }, "\n")
end

-- The keys phase's vote with its mask tiles copied ahead (the tuning row's knob mask_ring): a
-- skipped tile then costs the vote's barrier, not a copy's round trip to memory as well (with
-- one block an SM nothing covered it; 7 of 8 tiles at 1/8 density). kMaskStages stages of the
-- mask tile in a ring from sMaskQ0; tile t's copies (t counted from the head's first tile,
-- m_begin) are issued kMaskAhead tiles before it, into the stage of tile t - 1, which every thread
-- has finished with once past the vote of tile t. The head's first kMaskAhead tiles are issued
-- before its loop (mask_ring_head); each tile then commits one group, so that waiting for all
-- but kMaskAhead - 1 leaves this tile's landed. The vote's barrier also orders the last tile's
-- readers of Q, dO and the rows before this tile's copies: the loop's top has no barrier.
local function qmask_vote_ring(skipped)
  return table.concat({
    "const u32 mt = (u32)((m0 - m_begin) / kTile);  // the head's tiles walked",
    "sMaskQ = mask_stage(sMaskQ0, mt);",
    "if (!mask_staged) {  // rows not of whole 16-byte chunks: filled here, none ahead",
    "    __syncthreads();  // the stage's last readers",
    "    fill_mask_tile<kTile, kRows>(p, sMaskQ, b, h, m0, n0);",
    "}",
    "cp_async_wait<kMaskAhead - 1>();  // this tile's mask; the next ones' may be in flight",
    "const bool visible = __syncthreads_or(staged_mask_any<kTile, kRows>(sMaskQ));",
    "if (mask_staged) {  // tile mt + kMaskAhead's, into tile mt - 1's stage",
    "    if (m0 + kMaskAhead * kTile < m_end)",
    "        stage_mask_tile<kTile, kRows>(p, mask_stage(sMaskQ0, mt + kMaskAhead), b, h,",
    "                                      m0 + kMaskAhead * kTile, n0);",
    "    cp_async_commit();",
    "}",
    "if (!visible) {",
    skipped or "    // ds = 0 here",
    "    continue;",
    "}" }, "\n")
end

local mask_ring_fns = [=[
// The keys phase's mask ring (qmask_vote_ring): stage t % kMaskStages of kTile queries x kRows
// keys, from the first mask tile's place on.
constexpr int kMaskAhead = $mask_ahead;
constexpr int kMaskStages = kMaskAhead + 1;
constexpr int kMaskStageBytes = kTile * mask_pitch(kRows);
__device__ __forceinline__ unsigned char *mask_stage(unsigned char *sMask0, u32 t)
{
    return sMask0 + t % kMaskStages * kMaskStageBytes;
}
]=]

-- The head's first kMaskAhead mask tiles, a group each (empty past m_end), behind a barrier: the
-- last head's last tile may still be read (its p, in the deterministic mode with no barrier after).
local mask_ring_head = [=[
__syncthreads();  // the last head's tiles have read their stages
for (int a = 0; a < kMaskAhead; a++) {  // the head's first mask tiles, a group each
    if (mask_staged && m_begin + a * kTile < m_end)
        stage_mask_tile<kTile, kRows>(p, mask_stage(sMaskQ0, a), b, h, m_begin + a * kTile,
                                      n0);
    cp_async_commit();
}]=]

-- A tile pair a walk skips, its query-layout dbias (where `guard` holds) set to 0: the lines, at
-- `indent`; rows: the pair's query rows (kRows in the rows phase, kTile in the keys phase), the
-- other side its keys.
local function zero_tile_dbias(guard, indent, rows)
  local keys = rows == "kRows" and "kTile" or "kRows"
  return indent .. "if (" .. guard .. ")  // the tile's dbias: 0\n" ..
    indent .. "    zero_dbias_rows<" .. keys .. ">(p, b, h, m0, m0 + " .. rows .. ", n0);"
end

-- The lines of a keys-phase tile pair a query-layout mask's vote skips (nil: none), an engine
-- with dq sums (dq_sums): its dbias 0 (a query-layout bias), its dq turn passed.
local function keys_skipped(qbias, dq_sums)
  if not dq_sums then
    return nil
  end
  local turn = table.concat({
    "    dq_turn_skip_pass(p);  // the turn held since the last visible tile, passed now",
    "    dq_turns_skip(p, b, h, m0, m0 + kTile);  // its dq turn passed all the same" }, "\n")
  return qbias and zero_tile_dbias("p.dq_accum && p.dbias_fused", "    ", "kTile") .. "\n" ..
    turn or turn
end

-- The rows phase's copies of a key tile (K, V, a query-layout bias tile, the key-layout values),
-- the lines for key tile `n` into the tile arrays named as the loop's (sK, sV, sBiasQ, sKB).
local rows_copy_lines = [=[
load_tile(sK, p.k, p.k_stride, b, n0, hk, p.Lk);
load_tile(sV, p.v, p.v_stride, b, n0, hk, p.Lk);
$qbias_stage_rows
cp_async_commit();]=]

-- Issued and waited for at each tile's top (where a mask's vote may skip the tile: nothing is
-- loaded ahead of it)...
local rows_copies_now = [=[
$copy_lines
$stage_keys
tiles_landed();]=]

-- ...or (no mask, and room for two stages: the kernels with tensor maps) a tile ahead, into the
-- stage the tile before used: the loads' latency, exposed at every tile with one block an SM,
-- overlaps the products. Stage t % 2 holds key tile t's copies.
local rows_first_copies = [=[
u32 t = 0;  // key tiles walked
if (n_end > 0) {  // tile 0's copies
    const i64 n0 = 0;
    $stage_ptrs0
    $copy_lines
    $stage_keys
}]=]
local rows_copies_ahead = [=[
if (n0 + kTile < n_end) {  // the next tile's, into the last one's stage (the barrier: read)
    const i64 n_next = n0 + kTile;
    const i64 n0 = n_next;
    $stage_ptrs1
    $copy_lines
    cp_async_wait<1>();  // this tile's landed
} else {
    cp_async_wait<0>();
}
fence_proxy_async();
$stage_ptrs_cur]=]
-- (the next tile's key-layout bias, a key a thread of the first kTile: loaded before this tile's
-- products are issued and stored after their waits, its latency under them, with no divergent
-- code between a product's issue and its wait, which would make ptxas serialize them)
local rows_keys_load = [=[
float next_kb = 0.f;  // the next tile's key-layout bias: key n0 + kTile + threadIdx.x
if (threadIdx.x < kTile && n0 + kTile < n_end && n0 + kTile + threadIdx.x < p.Lk)
    next_kb = bias_at(p, b, h, 0, n0 + kTile + threadIdx.x);]=]
local rows_keys_store = [=[
if (threadIdx.x < kTile && n0 + kTile < n_end)  // into its stage (read: two barriers ago)
    sRowDot[kRows + (t + 1) % 2 * kTile + threadIdx.x] = next_kb;]=]

-- dq_sums: the engine sums dq in the keys phase (M.dq_atomic), which then writes a query-layout
-- dbias too
local function layout_pieces(v, dq_sums)
  local mk, bk, bq = v.mask == "k", v.bias == "k", v.bias == "q"
  local x = {
    causal_cut = v.causal and "if (j > i + p.Lk - p.Lq)\n    return false;" or "",
    mask_expr = v.mask ~= "none" and "mask_at(p, b, h, i, j)" or "true",
    -- simt
    simt_rows_dbias_zero = "", simt_rows_dbias = "", simt_rows_dbias_empty = "",
    simt_keys_dbias_start = "", simt_keys_dbias_add = "", simt_keys_dbias_end = "",
    -- mma.sync
    causal_or = v.causal and " || j > i + p.Lk - p.Lq" or "",
    mask_or = v.mask ~= "none" and " || !km" or "",
    qmask_decl = v.mask == "q" and table.concat({
      "// the query-layout mask tile, voted on: by cp.async where its rows are whole 16-byte",
      "// chunks",
      bq and "unsigned char *sMaskQ = (unsigned char *)smem + kQueryTilesAt + kBiasTileBytes;" or
        "unsigned char *sMaskQ = (unsigned char *)smem + kQueryTilesAt;",
      "const bool mask_staged = mask_stageable(p);" }, "\n") or "",
    keys_tile_vote = v.mask == "q" and
      qmask_vote("kTile, kRows", keys_skipped(bq, dq_sums), "continue;") or "",
    bias_add_x = (bk or bq) and "x += kb;" or
      "// no bias",
    kb_rows = bk and "sKB[c]" or
      bq and "staged_bias<kTile>(p, sBiasQ, r, c)" or
      "0.f",
    qbias_decl = bq and table.concat({
      "// the query-layout bias tile: by cp.async where its rows are whole 16-byte chunks",
      "unsigned char *sBiasQ = (unsigned char *)smem + kQueryTilesAt;",
      "const bool bias_staged = bias_stageable(p);" }, "\n") or "",
    qbias_stage_rows = bq and table.concat({
      "if (bias_staged)",
      "    stage_bias_tile<kRows, kTile>(p, sBiasQ, b, h, m0, n0);",
      "else  // rows not of whole 16-byte chunks",
      "    fill_bias_tile<kRows, kTile>(p, sBiasQ, b, h, m0, n0);" }, "\n") or "",
    qbias_stage_keys = bq and table.concat({
      "if (bias_staged)",
      "    stage_bias_tile<kTile, kRows>(p, sBiasQ, b, h, m0, n0);",
      "else  // rows not of whole 16-byte chunks",
      "    fill_bias_tile<kTile, kRows>(p, sBiasQ, b, h, m0, n0);" }, "\n") or "",
    km_rows = mk and "sKM[c] != 0.f" or v.mask == "q" and
      "sMaskQ[r * mask_pitch(kTile) + c] != 0" or "true",
    kb_keys = bk and "kb[e / 2]" or
      bq and "staged_bias<kRows>(p, sBiasQ, c, r)" or
      "0.f",
    km_keys = mk and "km[e / 2]" or v.mask == "q" and
      "sMaskQ[c * mask_pitch(kRows) + r] != 0" or "true",
    key_arrays = bk and mk and
      "float *sKB = sRowDot + kRows, *sKM = sKB + kTile;  // the key tile's bias and mask" or
      bk and "float *sKB = sRowDot + kRows;  // the key tile's key-layout bias" or
      mk and "float *sKM = sRowDot + kRows + kTile;  // the key tile's key-layout mask" or "",
    rows_tile_barrier = "__syncthreads();  // the last tile's K and V are read",
    keys_m_end = "const i64 m_end = p.Lq;",
    stage_keys = "", rows_dbias = "", rows_n_end_dbias = "", keys_qdbias = "",
    keys_qdbias_skipped = "", keys_qdbias_out = "",
    keys_dbias_start = "", keys_head_start = "", keys_dbias_add = "", keys_dbias_end = "",
  }
  if mk or bk then
    local lines = { "for (int c = threadIdx.x; c < kTile; c += kThreads) {  // key-layout values",
      "    const i64 j = n0 + c;" }
    if bk then
      lines[#lines + 1] = "    sKB[c] = j < p.Lk ? bias_at(p, b, h, 0, j) : 0.f;"
    end
    if mk then
      lines[#lines + 1] = "    sKM[c] = j < p.Lk && mask_at(p, b, h, 0, j) ? 1.f : 0.f;"
    end
    lines[#lines + 1] = "}"
    x.stage_keys = table.concat(lines, "\n")
    local h = {}
    if bk then
      h[#h + 1] = "float kb[2] = {0.f, 0.f};  // this thread's two keys' bias and mask for head h"
    end
    if mk then
      h[#h + 1] = "bool km[2] = {false, false};"
    end
    h[#h + 1] = "#pragma unroll"
    h[#h + 1] = "for (int hf = 0; hf < 2; hf++) {"
    h[#h + 1] = "    const i64 j = n0 + warp * 16 + lane / 4 + hf * 8;"
    h[#h + 1] = "    if (j < p.Lk) {"
    if bk then
      h[#h + 1] = "        kb[hf] = bias_at(p, b, h, 0, j);"
    end
    if mk then
      h[#h + 1] = "        km[hf] = mask_at(p, b, h, 0, j);"
    end
    h[#h + 1] = "    }"
    h[#h + 1] = "}"
    x.keys_head_start = table.concat(h, "\n")
  end
  if mk then
    -- tile skipping by the key-layout mask (SPEC's speed contract): a key tile none of whose keys
    -- is visible to head h is neither loaded nor multiplied; the vote is the loop's barrier
    x.rows_tile_barrier = table.concat({
      "bool any_key = false;  // the tile's keys, for head h: any visible?",
      "for (int c = threadIdx.x; c < kTile; c += kThreads)",
      "    any_key = any_key || (n0 + c < p.Lk && mask_at(p, b, h, 0, n0 + c));",
      "if (!__syncthreads_or(any_key)) {  // also the barrier: the last tile's K, V are read",
      bq and zero_tile_dbias("p.dbias_fused", "    ", "kRows") or
        "    // ds = 0 here (a key-layout dbias is the keys phase's)",
      "    continue;  // no key visible: nothing loaded or multiplied",
      "}" }, "\n")
    -- the keys phase: a head for which none of the block's keys is visible walks no query tile
    -- (its dbias sums stay 0 and are still written)
    x.keys_m_end = "const i64 m_end = __syncthreads_or(km[0] || km[1]) ? p.Lq : m_begin;"
  end
  if v.mask == "q" then
    -- the rows phase's vote: the barrier first (the last tile's K, V and mask are read)
    x.rows_tile_barrier = "__syncthreads();  // the last tile's K, V and mask are read\n" ..
      qmask_vote("kRows, kTile", bq and zero_tile_dbias("p.dbias_fused", "    ", "kRows"),
        "continue;  // no pair visible: nothing loaded or multiplied")
  end
  if bq then
    x.simt_rows_dbias_zero = "if (p.dbias_fused && lane == 0)\n    store_dbias(p, b, h, i, j, 0.f);"
    x.simt_rows_dbias = "if (p.dbias_fused && lane == 0)\n    store_dbias(p, b, h, i, j, g.ds);"
    x.simt_rows_dbias_empty = table.concat({
      "if (p.dbias_fused && lse == kInf && lane == 0)  // no visible key: every element 0",
      "    for (i64 j = 0; j < p.Lk; j++)",
      "        store_dbias(p, b, h, i, j, 0.f);" }, "\n")
    x.rows_dbias = table.concat({
      "if (p.dbias_fused) {  // ds is dbias: none of its dimensions broadcasts",
      "#pragma unroll",
      "    for (int nt = 0; nt < kNT; nt++)",
      "#pragma unroll",
      "        for (int e = 0; e < 4; e++) {",
      "            const i64 i = m0 + warp * 16 + lane / 4 + (e / 2) * 8;",
      "            const i64 j = n0 + nt * 8 + 2 * (lane % 4) + e % 2;",
      "            if (i < p.Lq && j < p.Lk)",
      "                store_dbias(p, b, h, i, j, dp[nt][e]);",
      "        }",
      "}" }, "\n")
    -- with dq summed by the keys phase (p.dq_accum) the rows phase writes no dbias: the keys
    -- phase writes ds transposed from its registers, and zeros where its walk skips
    x.keys_qdbias = dq_sums and table.concat({
      "if (p.dq_accum && p.dbias_fused) {  // ds is dbias (the rows phase's without p.dq_accum)",
      "    __syncthreads();  // the staged bias is read: its tile takes ds, query rows",
      "    stage_ds_rows(dp, sBiasQ);",
      "}" }, "\n") or ""
    x.keys_qdbias_out = dq_sums and table.concat({
      "if (p.dbias_fused)  // behind the barrier: the staged ds rows out",
      "    store_ds_rows(p, sBiasQ, b, h, m0, n0);" }, "\n") or ""
    x.keys_qdbias_skipped = dq_sums and table.concat({
      "if (p.dq_accum && p.dbias_fused)  // rows the walk skips (all, when it walks none): dbias 0",
      "    zero_dbias_rows<kRows>(p, b, h, 0, m_end > m_begin ? m_begin : p.Lq, n0);" }, "\n") or
      ""
    if v.causal then
      x.rows_n_end_dbias =
        "if (p.dbias_fused)\n    n_end = p.Lk;  // dbias past the diagonal: 0, written"
    end
  end
  if bk then
    x.simt_keys_dbias_start = "float dbias_sum = 0.f;  // over the queries of the bias head's heads"
    x.simt_keys_dbias_add = "dbias_sum += g.ds;"
    x.simt_keys_dbias_end = table.concat({
      "if (p.dbias_fused && (h + 1) % p.dbias_head_div == 0) {  // the dbias head's last head",
      "    if (lane == 0)",
      "        store_dbias(p, b, h / p.dbias_head_div, 0, j, dbias_sum);",
      "    dbias_sum = 0.f;",
      "}" }, "\n")
    x.keys_dbias_start = "float dbias_sum[2] = {0.f, 0.f};  // this thread's two keys, its columns"
    x.keys_dbias_add = table.concat({
      "if (p.dbias_fused) {",
      "#pragma unroll",
      "    for (int nt = 0; nt < kNT; nt++)",
      "#pragma unroll",
      "        for (int e = 0; e < 4; e++)",
      "            dbias_sum[e / 2] += dp[nt][e];",
      "}" }, "\n")
    x.keys_dbias_end = table.concat({
      "if (p.dbias_fused && (h + 1) % p.dbias_head_div == 0) {  // the dbias head's last head",
      "#pragma unroll",
      "    for (int hf = 0; hf < 2; hf++) {",
      "        float sum = dbias_sum[hf];  // the quad's four threads hold the key's columns",
      "        sum += __shfl_xor_sync(kAllLanes, sum, 1);",
      "        sum += __shfl_xor_sync(kAllLanes, sum, 2);",
      "        const i64 j = n0 + warp * 16 + lane / 4 + hf * 8;",
      "        if (lane % 4 == 0 && j < p.Lk)",
      "            store_dbias(p, b, h / p.dbias_head_div, 0, j, sum);",
      "        dbias_sum[hf] = 0.f;",
      "    }",
      "}" }, "\n")
  end
  return x
end

-- view_sequence's lines for the mask and bias (and dbias, bias's dtype): moved to the first
-- token of their layout's side (the key layout's rows are keys, the query layout's queries).
local function varlen_view_pieces(v)
  local function tok(l)
    return l == "k" and "tk" or "tq"
  end
  return {
    view_mask = v.mask ~= "none" and "p.mask += " .. tok(v.mask) .. " * p.mask_stride[0];" or "",
    view_bias = v.bias ~= "none" and table.concat({
      "const i64 bias_bytes = p.bias_f32 ? 4 : 2;  // dbias: bias's dtype",
      "p.bias += bias_bytes * " .. tok(v.bias) .. " * p.bias_stride[0];",
      "if (p.dbias)  // 0: not asked for",
      "    p.dbias += bias_bytes * " .. tok(v.bias) .. " * p.dbias_stride[0];" }, "\n") or "",
  }
end

-- Phase 2 (dbias sums that cross blocks): the element function and the element count.
local function phase2_pieces(v)
  if not v.varlen then
    return { element_fn = dbias_element_dense,
             elems = "(i64)p.dbias_B * p.dbias_H * p.dbias_Lq * p.Lk" }
  end
  if v.bias == "k" then
    return {
      element_fn = common.fill(dbias_element_varlen, {
        element_doc = "(key token t, stored head bh) of the key-layout dbias (total_k, Hm)",
        element_sum_doc = "and over the sequence's queries, in that order",
        element_index = "const i64 t = r / pv.dbias_H, bh = r % pv.dbias_H;",
        element_cu = "cu_seqlens_k", element_tok = "k_tok", element_len = "Lk",
        element_sum = table.concat({
          "const float sum = ds_sum(p, 0, h0, h1, 0, p.Lq, t - sq.k_tok, lane);",
          "if (lane == 0)",
          "    store_dbias(p, 0, bh, 0, t - sq.k_tok, sum);" }, "\n") }),
      elems = "(i64)pv.total_k * pv.dbias_H" }
  end
  return {
    element_fn = common.fill(dbias_element_varlen, {
      element_doc = "(query token t, stored head bh, column j) of the query-layout dbias " ..
        "(total_q, Hm, max_seqlen_k)",
      element_sum_doc = "(0 past the sequence's keys)",
      element_index = table.concat({
        "const i64 j = r % pv.max_seqlen_k, bh = r / pv.max_seqlen_k % pv.dbias_H;",
        "const i64 t = r / ((i64)pv.max_seqlen_k * pv.dbias_H);" }, "\n"),
      element_cu = "cu_seqlens_q", element_tok = "q_tok", element_len = "Lq",
      element_sum = table.concat({
        "const i64 i = t - sq.q_tok;",
        "const float sum = j < p.Lk ? ds_sum(p, 0, h0, h1, i, i + 1, j, lane) : 0.f;",
        "if (lane == 0)",
        "    store_dbias(p, 0, bh, i, j, sum);" }, "\n") }),
    elems = "(i64)pv.total_q * pv.dbias_H * pv.max_seqlen_k" }
end

function M.emit(v)
  check_variant(v)
  local row = tune.lookup("bwd", v.d, v.arch, v.causal, { mask = v.mask, bias = v.bias })
  local simt = row.mma == "simt"
  local rows_only = v.dir == "bwdrows"  -- the deterministic rows phase alone (rows_only_entry)
  if rows_only and simt then
    errors.unsupported("bwdrows: the SIMT engine keeps its rows phase in its bwd kernel")
  end
  local warps = row.warps
  local d_pad = (v.d + 15) // 16 * 16
  local vars = { d = v.d, warps = warps, entry = common.entry_name(v.key), tile = row.block_m,
    d_pad = d_pad }
  local buf = common.buffer()
  local engine = engines[row.mma]
  common.header(buf, v, "attn_bwd.lua", simt and
    string.format("SIMT baseline, a warp a row, %d warps a block, phases rows / keys / dbias",
      warps) or engine.summary(row))
  buf.add(kernel_params.struct("BwdParams"))  -- from the library's layout (kernel_params.h)
  buf.add("")
  buf.add(constants, vars)
  buf.add("")
  common.conversions(buf, v.dtype)
  buf.add("")
  -- the keys phase's query tiles by the tensor memory accelerator (keys_query_tma): dense, an
  -- engine that has it, no query-layout mask (its staged tile and vote stay the threads'), no
  -- padding column (the tiles' zero columns stay those load_tile skips); a query-layout bias
  -- comes with them (keys_tma_bias)
  local tma = not simt and engine.tma_keys == true and not v.varlen and v.mask ~= "q" and
    d_pad == v.d
  local tma_bias = tma and v.bias == "q"
  -- the keys phase split across blocks where few key blocks are busy (attn_bwd_split.lua):
  -- key-layout masks, dense, an engine whose default mode runs phase 0 as a memory pass
  local split = not simt and row.key_split == true and v.mask == "k" and not v.varlen and
    not rows_only and engine.dq_atomic == true
  -- the deterministic mode's dq turns in a launch order of their own (attn_bwd_turns.lua): dense
  -- bwddet kernels of an engine that sums dq, where the tuning row keeps them (bwd kernels have
  -- none: the default mode's keys phase ran 7% slower with their text, NOTES session 28)
  local turn_kernel = engine ~= nil and engine.dq_atomic == true and not v.varlen and
    v.dir == "bwddet" and row.dq_turns == true
  local sp = key_split.pieces(split, v.causal, v.bias == "k", tma and ", maps" or "",
    not turn_kernel)
  -- tile: rows of a streamed tile (and of a warpgroup's own); groups: warpgroups a block, whose
  -- rows it owns (block_m = 16 warps)
  local tile, groups = row.block_n, warps // 4
  -- the query ring (keys_query_ring), where its shared memory fits the block's (sm_90: 227 KB)
  local ring = tma and not tma_bias and not rows_only and v.d % 32 == 0 and row.query_ring and
    engine.ring_smem(tile, groups, d_pad, v.d) <= engine.smem_max
  -- the keys phase's query-layout mask tiles copied ahead (qmask_vote_ring), mask_ahead of them;
  -- dense only (varlen f16 q/q spilled 8 bytes with it)
  local mask_ring = not simt and v.mask == "q" and not rows_only and not v.varlen and
    row.mask_ring
  local mask_ahead = 5
  if not simt then
    if row.block_m ~= 16 * warps or warps % 4 ~= 0 or row.block_m ~= groups * tile then
      errors.unsupported("tuning.lua: a bwd tile row owns 16 rows a warp, a tile a warpgroup")
    end
    engine.emit_ptx(buf, v.dtype, d_pad, tile, groups, tma, ring)
    buf.add("")
  end
  if v.varlen then
    buf.add(common.sequence_fn("BwdParams"))
    buf.add(view_fn, varlen_view_pieces(v))
    buf.add("")
  end
  buf.add(rows)
  buf.add("")
  local lp = layout_pieces(v, engine ~= nil and engine.dq_atomic == true)
  if v.mask ~= "none" then
    buf.add(mask_fn)
    buf.add("")
  end
  buf.add(visible_fn, lp)
  buf.add("")
  if v.bias ~= "none" then
    buf.add(bias_fn)
    buf.add("")
    buf.add(dbias_store_fn)
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
  if simt then
    buf.add(simt_phases, lp)
  else
    local mp = lp  -- plus the engine's own pieces
    mp.tile, mp.d_pad = tile, d_pad
    mp.keys_qmask_decl = mp.qmask_decl
    mp.keys_tile_barrier = "__syncthreads();  // the last tile's Q, dO, lse and row_dot are read"
    if mask_ring then  -- the keys phase's mask tiles in a ring (qmask_vote_ring)
      mp.keys_qmask_decl = mp.qmask_decl:gsub("char %*sMaskQ = ", "char *sMaskQ0 = ") ..
        "\nunsigned char *sMaskQ;  // this tile's stage"
      mp.keys_tile_vote = qmask_vote_ring(keys_skipped(v.bias == "q", engine.dq_atomic))
      mp.keys_tile_barrier = ""
    end
    -- the staged tiles sit after the float arrays (with a bias by the maps: on its stages)
    mp.qbias_fns = ((v.bias == "q" or v.mask == "q") and common.fill(stage_rows_fn,
      { query_tiles_at = tma_bias and "kBiasStagesAt" or
        "kTilesElems * 2 + (kRows + 2 * kTile) * 4" }) or "") ..
      (v.bias == "q" and qbias_fns or "") ..
      (v.bias == "q" and engine.dq_atomic and not tma_bias and keys_qdbias_fns or "") ..
      (v.mask == "q" and qmask_fns or "") ..
      (mask_ring and common.fill(mask_ring_fns, { mask_ahead = mask_ahead }) or "")
    mp.zero_pad_call = d_pad > v.d and "zero_pad_columns(smem, 4);  // never loaded" or ""
    mp.softcap_x = v.softcap and "th = tanhf(x / p.softcap);\nx = p.softcap * th;" or
      "// no softcap"
    mp.softcap_ds = v.softcap and "dp *= 1.f - th * th;  // through x = c tanh(x0 / c)" or
      "// no softcap"
    mp.th_param = v.softcap and ", float &th" or ""
    mp.p_select = row.p_select
    if row.p_select then
      mp.th_zero = v.softcap and "th = off ? 0.f : th;" or ""
      -- the score x = scale s (+ bias, through softcap) in log2 units; with neither, one
      -- product: s (scale log2(e)), the factor the compiler keeps uniform
      local plain = v.bias == "none" and not v.softcap
      mp.score_x = plain and "" or table.concat({ "float x = p.scale * s;", mp.bias_add_x,
        mp.softcap_x }, "\n")
      mp.exp_arg = plain and "s * (p.scale * kLog2e)" or "x * kLog2e"
      mp.p_at_fn = common.fill(p_at_select, mp)
    else
      mp.th_zero = v.softcap and "\n        th = 0.f;" or ""
      mp.p_at_fn = common.fill(p_at_branch, mp)
    end
    mp.th_decl = v.softcap and "float th;  // tanh's value, for its derivative" or ""
    mp.th_arg = v.softcap and ", th" or ""
    -- causal: query i sees keys up to i + Lk - Lq; a query tile's last key, a key tile's first
    -- query
    mp.rows_n_end = v.causal and
      "i64 n_end = min((i64)p.Lk, m0 + kRows + p.Lk - p.Lq);  // causal: keys seen" or
      "const i64 n_end = p.Lk;"
    buf.add(tile_constants, mp)
    buf.add("")
    if engine.dq_atomic then
      buf.add(turns.fns(common, ring, v.causal, split, turn_kernel))
    end
    buf.add(engine.text(v.d, d_pad, v.mask == "q" or v.bias == "q", tma, ring))
    buf.add("")
    local tb = tma_bias and keys_tma_bias or {}
    mp.n0_arg, mp.bias_stage_line = tb.n0_arg or "", tb.bias_stage_line or ""
    mp.bias_fill = tb.bias_fill or ""
    if tma then
      buf.add(keys_tma_fns, { bias_stage_fns = tb.fns or "", n0_param = tb.n0_param or "",
        issue_bias_bytes = tb.issue_bias_bytes or "", bias_bytes = tb.bias_bytes or "",
        issue_bias = tb.issue_bias or "", stage_fns = ring and stage_fns_ring or stage_fns_two,
        issue_wait = ring and "// (no bulk op reads a stage: dq's sums have their own buffer)" or
          "bulk_wait_read();  // the stage's last dq sums (red_tile_map) and dbias store have " ..
          "read it" })
      if v.d % 32 == 0 then  -- (keys_tma_fns ends in a blank line)
        buf.add(red_tile_map_fn, ring and red_map_group or red_map_block)
      end
    end
    local kq = ring and keys_query_ring or tma and keys_query_tma or keys_query_copy
    mp.keys_maps_param = tma and ", const BwdMaps &maps" or ""
    mp.keys_query_decl = kq.decl
    mp.keys_qbias_decl = tb.decl or mp.qbias_decl
    mp.kb_keys = tb.kb_keys or mp.kb_keys
    mp.keys_qdbias = tb.qdbias or mp.keys_qdbias
    mp.keys_qdbias_out = tb.qdbias_out or mp.keys_qdbias_out
    mp.keys_prologue = kq.prologue or ""
    mp.keys_head_first_tile = kq.head_first and common.fill(kq.head_first, mp) or
      mask_ring and mask_ring_head or ""
    mp.keys_tile_load = common.fill(kq.load, mp)
    mp.keys_lse2, mp.keys_tile_end = kq.lse2, common.fill(kq.tile_end or "", mp)
    mp.keys_tile_barrier = kq.tile_barrier or mp.keys_tile_barrier  -- the query ring: none
    mp.ds_at, mp.dq_buf_wait = kq.ds_at or "smem + kDsAt", kq.dq_buf_wait or ""
    mp.keys_red = v.d % 32 == 0 and kq.red_map or kq.red
    mp.keys_end = kq.keys_end or ""
    -- the deterministic mode's dq turns (attn_bwd_turns.lua), where the engine sums dq: a
    -- thread's held turn, the tiles a head with no visible key passes, the walk's last turns
    mp.keys_turn_decl, mp.keys_turns_rest = "", ""
    if engine.dq_atomic then
      mp.keys_turn_decl = split and (v.causal and "dq_turns_start(dq_turn_rank(p, b, hk, n0), " ..
          "dq_turn_marks(p, b, hk));  // (-1: passes none)" or
          "dq_turns_start(dq_turn_rank(p, b, hk, n0));  // (-1: passes none)") or
        "dq_turns_start((int)(n0 / kRows));  // the deterministic mode's dq turns"
      -- a head the block walks none of (no key visible, a uniform test): its held turns passed
      -- first (blocks after it wait on them; held across the head they trailed by a head, not a
      -- tile), then every tile of the head, before the walk, so that no bound of it is held
      -- across (the split kernels: every part count is 1 where the turns are kept, part 0 walks
      -- all)
      local none_visible, m0 = "m_end == m_begin", "m_begin"
      if split then
        none_visible, m0 = "part == 0 && m_last == m_first", "m_first"
      end
      mp.keys_turns_rest = table.concat({
        "if (" .. none_visible .. ") {  // no key of the block visible to head h",
        "    dq_turns_end(p);  // the held turns, passed now",
        "    dq_turns_skip(p, b, h, " .. m0 .. ", p.Lq);",
        "}" }, "\n")
      mp.keys_end = "dq_turns_end(p);\n" .. mp.keys_end
    end
    mp.row_dots_query_rows = kq.row_dots or ""
    mp.dq_accum_fns = engine.dq_atomic and
      common.fill(dq_accum_fns, { query_rows = kq.row_dots or "" }) or ""
    mp.keys_dq = engine.dq_atomic and common.fill(keys_dq, mp) or ""
    local grad = v.softcap and grad_fused or grad_split
    mp.keys_grad = common.fill(grad, grad_pieces(mp, true))
    mp.rows_grad = common.fill(grad, grad_pieces(mp, false))
    -- the rows phase's copies: a tile ahead where no vote skips a tile and two stages fit (the
    -- kernels with tensor maps: two query stages' room, and the float arrays' key mask slot)
    local copy_lines = common.fill(rows_copy_lines, mp)
    mp.rows_first_copies, mp.rows_tile_end = "", ""
    mp.rows_keys_load, mp.rows_keys_store = "", ""
    mp.rows_copies = common.fill(rows_copies_now,
      { copy_lines = copy_lines, stage_keys = mp.stage_keys })
    if tma and v.mask == "none" then
      local function stage_ptrs(stage, decl, no_keys)
        local u16, f32, u8 = "", "", ""  -- the declarations' types (a copy block's own names)
        if decl then
          u16, f32, u8 = "u16 *", "float *", "unsigned char *"
        end
        local l = {
          u16 .. "sK = smem + 2 * kGroups * kTileElems + " .. stage .. " * 2 * kTileElems;",
          u16 .. "sV = sK + kTileElems;" }
        if v.bias == "k" and not no_keys then
          l[#l + 1] = f32 .. "sKB = sRowDot + kRows + " .. stage .. " * kTile;"
        elseif v.bias == "q" then
          l[#l + 1] = u8 .. "sBiasQ =\n    (unsigned char *)smem + kQueryTilesAt + " .. stage ..
            " * kBiasTileBytes;"
        end
        return table.concat(l, "\n")
      end
      local f = { copy_lines = copy_lines, stage_keys = mp.stage_keys,
        stage_ptrs0 = stage_ptrs("0", true),
        stage_ptrs1 = stage_ptrs("(t + 1) % 2", true, true), stage_ptrs_cur = stage_ptrs("t % 2") }
      mp.rows_first_copies = common.fill(rows_first_copies, f)
      mp.rows_copies = common.fill(rows_copies_ahead, f)
      if v.bias == "k" then
        mp.rows_keys_load, mp.rows_keys_store = rows_keys_load, rows_keys_store
      end
      mp.rows_tile_end = "t++;"
    end
    mp.keys_m_begin, mp.keys_part_param = sp.keys_m_begin, sp.keys_part_param
    mp.keys_part_start, mp.keys_store = sp.keys_part_start, sp.keys_store
    mp.keys_own_load = sp.keys_own_load
    -- the deterministic mode's launch order (attn_bwd_turns.lua): dense kernels that sum dq;
    -- and the last tile's turn passed behind this tile's first products where its holders issued
    -- all of the tile's sums themselves (red_tile_map: where the call has tensor maps)
    mp.keys_order = turn_kernel and turns.order_line or ""
    mp.keys_turn_early = turn_kernel and tma and v.d % 32 == 0 and turns.early_line or ""
    if split then
      mp.keys_m_end = sp.keys_m_end
      if mp.keys_qdbias_skipped ~= "" then
        mp.keys_qdbias_skipped = sp.qdbias_skipped
      end
      buf.add(sp.fns)
    end
    buf.add(tile_phases, mp)
  end
  buf.add("")
  local ph2 = phase2_pieces(v)
  if v.bias ~= "none" then
    buf.add(common.fill(dbias_phase, { dbias_element_fn = ph2.element_fn }))
  end
  local call = v.bias ~= "none" and common.fill(simt and dbias_call or dbias_call_mma,
    { dbias_elems = ph2.elems, params = v.varlen and "pv" or "p" }) or ""
  local pad = ""
  if v.varlen and v.bias == "q" then
    pad = simt and dbias_pad_simt or dbias_pad_mma
  end
  -- the rows phase in the bwd kernel, unless the engine sums dq (then a bwdrows kernel's)
  local rows_apart = not simt and engine.dq_atomic == true
  if simt then
    buf.add(v.varlen and simt_entry_varlen or simt_entry,
      { entry = vars.entry, dbias_call = call, dbias_pad = pad })
  elseif rows_only then
    local smem_decl = "extern __shared__ __align__(" .. engine.smem_align ..
      ") unsigned char smem_raw[];"
    buf.add(v.varlen and varlen_rows_entry or rows_only_entry, v.varlen and
      { name = vars.entry, smem_decl = smem_decl, pad = pad,
        call = "rows_tile(p, (u16 *)smem_raw, 0, blockIdx.y, r0);" } or
      { entry = vars.entry, smem_align = engine.smem_align })
  else
    local rows_call = v.varlen and "rows_tile(p, smem, 0, blockIdx.y, r0);" or
      "rows_tile(p, smem, blockIdx.z, blockIdx.y, (i64)blockIdx.x * kRows);"
    buf.add(v.varlen and mma_entry_varlen or mma_entry,
      { entry = vars.entry, dbias_call_mma = call, keys_call = sp.keys_call,
        rows_phase = rows_apart and
          "return;  // the deterministic rows phase: the bwdrows kernel's (api/bwd.c)" or
          (pad ~= "" and pad .. "\n" or "") .. rows_call,
        smem_align = engine.smem_align,
        maps_param = tma and ",\n    const __grid_constant__ BwdMaps maps" or "",
        maps_arg = tma and ", maps" or "" })
  end
  -- the tiles, float arrays (phase 0: row_dot of the block's rows, a tile's key bias and key
  -- mask; phase 1: lse and row_dot, with two query stages one pair a stage, then the stages' two
  -- mbarriers), then a query-layout bias's and mask's staged tiles, the larger phase's shape
  -- (with a bias by the maps: its two stages, kBiasStagesAt, on the swizzle's period)
  local smem = simt and 0 or engine.smem_tiles(tile, groups, d_pad, tma) +
    math.max(row.block_m + 2 * tile, tma and 4 * tile or 2 * tile) * 4 + (tma and 16 or 0)
  local bias_tile = not simt and
    math.max(row.block_m * (tile * 4 + 16), tile * (row.block_m * 4 + 16)) or 0
  if ring then
    smem = engine.ring_smem(tile, groups, d_pad, v.d)
  elseif tma_bias then
    -- (the rows phase alone: two of its tiles, rows_copies_ahead)
    smem = (smem + 1023) // 1024 * 1024 +
      math.max(rows_only and 2 * bias_tile or bias_tile, 2 * tile * row.block_m * 4)
  else
    smem = smem + (v.bias == "q" and bias_tile or 0) +
      (v.mask == "q" and not simt and math.max(row.block_m * (tile + 16),
        (mask_ring and mask_ahead + 1 or 1) * tile * (row.block_m + 16)) or 0)
  end
  -- block_m: rows a block owns in phases 0 and 1 (grid.x = ceil(L / block_m)); block_n: dbias
  -- elements a block in phase 2 (a warp each); query_tile: rows of the keys phase's query tiles
  -- (p.query_rows' tiles, the tensor maps' boxes)
  -- dq_atomic: phases 0, 1 and 3 can compute dq by reductions into p.dq_accum (0 and 3 by
  -- rows_entry, the memory passes)
  local rows_entry = not simt and not rows_only and engine.dq_atomic and vars.entry .. "_rows" or
    nil
  if rows_entry then
    buf.add("")
    buf.add(memory_pass_fn, { mark_busy_keys = sp.mark_busy_keys })
    local phase0_pad = pad ~= "" and common.fill("if (p.phase == 0) {\n    $pad\n}",
      { pad = pad }) or ""
    buf.add(v.varlen and varlen_rows_entry or rows_entry_dense, v.varlen and
      { name = rows_entry, smem_decl = "", pad = phase0_pad,
        call = "memory_pass(p, 0, blockIdx.y, r0);" } or { entry_rows = rows_entry })
  end
  return { source = buf.text(), entry = vars.entry, rows_entry = rows_entry,
           threads = 32 * warps, block_m = simt and warps or row.block_m, block_n = warps,
           query_tile = simt and warps or tile, smem_bytes = smem,
           dq_atomic = engine and engine.dq_atomic and not rows_only and 1 or 0,
           tma_maps = tma and not rows_only and 1 or 0,
           dq_turns = turn_kernel and 1 or 0,
           turn_order = turn_kernel and 1 or 0,
           key_split = split and key_split.parts or 0 }
end

return M
