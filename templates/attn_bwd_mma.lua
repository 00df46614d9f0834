-- attn_bwd_mma.lua: the mma.sync engine of the backward's tile phases (attn_bwd.lua): padded
-- shared-memory tiles (rows kHeadDimPad + 8 elements apart: ldmatrix conflict free, as
-- attn_fwd_mma.lua), S = X Y^T by ldmatrix + mma.sync m16n8k16, P Z from A fragments in
-- registers. Every product is done where it is issued (wait_products: nothing to wait for).
local common = require("cuda_common")
local ptx = require("cuda_ptx")

local M = {}

M.name = "mma.sync"
M.smem_align = 16

local zero_pad_fn = [=[
// Columns [kHeadDim, kHeadDimPad) of every tile are never loaded; they must read as zero.
__device__ __forceinline__ void zero_pad_columns(u16 *smem, int tiles)
{
    constexpr int kPad = kHeadDimPad - kHeadDim;
    for (int e = threadIdx.x; e < tiles * kTile * kPad; e += kThreads)
        smem[(e / kPad) * kPitch + kHeadDim + e % kPad] = 0;
}
]=]

local engine = [=[
constexpr int kPitch = kHeadDimPad + 8;  // padded rows: ldmatrix conflict free (attn_fwd_mma.lua)
constexpr int kTileElems = kTile * kPitch;
constexpr int kTilesElems = 4 * kTileElems;  // Q, dO, K, V (dq is phase 0's: no dS tile)
static_assert(kGroups == 1, "a warp's 16 rows of a block's one own tile (warpgroups: wgmma)");

// Rows [r0, r0 + kTile) of a (b, row, head) tensor into a padded tile; rows past `rows` read as
// zero (cp.async with 0 source bytes). Committed by the caller.
__device__ __forceinline__ void load_tile(u16 *tile, u64 base, const i64 stride[3], i64 b, i64 r0,
                                          i64 h, i64 rows)
{
    const u16 *src0 = (const u16 *)base + b * stride[0] + h * stride[2];
    for (int c = threadIdx.x; c < kTile * kChunks; c += kThreads) {
        const int r = c / kChunks, ch = c % kChunks;
        const bool in = r0 + r < rows;
        const u16 *src = in ? src0 + (r0 + r) * stride[1] + ch * 8 : src0;
        cp_async16(smem_u32(tile + r * kPitch + ch * 8), src, in ? 16 : 0);
    }
}

$zero_pad_fn// acc = X (this warp's 16 rows of tile x) . Y^T (the kTile rows of tile y), over D.
__device__ __forceinline__ void gemm_xyt(const u16 *x, const u16 *y, float (&acc)[kNT][4])
{
    const int lane = threadIdx.x % 32, mi = lane / 8, warp = threadIdx.x / 32;
    const u32 xa = smem_u32(x + (warp * 16 + lane % 16) * kPitch + (lane / 16) * 8);
    const u32 ya = smem_u32(y + ((mi / 2) * 8 + lane % 8) * kPitch + (mi % 2) * 8);
#pragma unroll
    for (int nt = 0; nt < kNT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[nt][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kHeadDimPad / 16; ks++) {
        u32 a[4];
        ldmatrix_x4(xa + ks * 32, a[0], a[1], a[2], a[3]);
#pragma unroll
        for (int nt = 0; nt < kNT; nt += 2) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4(ya + (nt * 8 * kPitch + ks * 16) * 2, b0, b1, b2, b3);
            mma_16816(acc[nt], a, b0, b1);
            mma_16816(acc[nt + 1], a, b2, b3);
        }
    }
}

// acc += P (16 x kTile, A fragments of 16-bit pairs) . Z (tile z: kTile rows x D).
__device__ __forceinline__ void gemm_pz(const u32 (&pp)[kTile / 16][4], const u16 *z,
                                        float (&acc)[kDT][4])
{
    const int lane = threadIdx.x % 32, mi = lane / 8;
    const u32 za = smem_u32(z + ((mi % 2) * 8 + lane % 8) * kPitch + (mi / 2) * 8);
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++)
#pragma unroll
        for (int dt = 0; dt < kDT; dt += 2) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4_trans(za + (kk * 16 * kPitch + dt * 8) * 2, b0, b1, b2, b3);
            mma_16816(acc[dt], pp[kk], b0, b1);
            mma_16816(acc[dt + 1], pp[kk], b2, b3);
        }
}
// This thread's cp.async copies landed (the caller's barrier makes them the block's).
__device__ __forceinline__ void tiles_landed()
{
    cp_async_wait<0>();
}

// The wgmma engine's issue / wait pairs (attn_bwd_wgmma.lua): here each product is computed
// where it is issued, so a wait has nothing left to wait for.
__device__ __forceinline__ void issue_xyt_pair(const u16 *x1, const u16 *y1, float (&acc1)[kNT][4],
                                               const u16 *x2, const u16 *y2, float (&acc2)[kNT][4])
{
    gemm_xyt(x1, y1, acc1);
    gemm_xyt(x2, y2, acc2);
}

__device__ __forceinline__ void issue_pz_async(const u32 (&pp)[kTile / 16][4], const u16 *z,
                                               float (&acc)[kDT][4])
{
    gemm_pz(pp, z, acc);
}

template <int N, int T>
__device__ __forceinline__ void wait_products(float (&)[T][4])
{
}]=]

-- The engine's text for a variant whose padded head_dim is d_pad.
function M.text(d, d_pad)
  return common.fill(engine, { zero_pad_fn = d_pad > d and zero_pad_fn or "" })
end

-- four tiles of `tile` rows (Q, dO, K, V; one warpgroup's worth of own rows)
function M.smem_tiles(tile, groups, d_pad)
  return 4 * tile * (d_pad + 8) * 2
end

function M.emit_ptx(buf, dtype)
  ptx.emit(buf, dtype, true)  -- cp.async, ldmatrix, mma.sync, pack2, ex2
end

function M.summary(row)
  return string.format("mma.sync m16n8k16, %dx%d tiles, %d warps x 16 rows, phases rows / " ..
    "keys / dbias", row.block_m, row.block_n, row.warps)
end

return M
