-- attn_fwd_mma.lua: the sm_80 engine of the forward kernel (attn_fwd.lua): operand layout, tile
-- loads and the two GEMMs on mma.sync m16n8k16. Each warp owns 16 * kMTiles query rows; operands
-- are read from padded shared memory with ldmatrix (per-lane bases fixed for the whole kernel).
local ptx = require("cuda_ptx")

local M = {}

M.layout = [=[
// Rows padded by 16 bytes: the 8 row addresses of one ldmatrix then fall in 8 different 16-byte
// bank groups ((kHeadDimPad + 8) / 8 is odd), so reads are conflict free without a swizzle.
constexpr int kPitch = kHeadDimPad + 8;
constexpr int kSmemQ = kBlockM * kPitch * 2;
constexpr int kSmemKV = kBlockN * kPitch * 2;  // one K or V buffer
constexpr int kSmemAlign = 0;]=]

-- Tile loads and the two GEMMs. Every thread of the block takes part in each load.
M.loads_and_gemms = [=[
// Rows [r0, r0 + kRows) of a (row, D) matrix into shared memory; rows at or past `limit` are
// zero-filled (cp.async with 0 source bytes reads nothing). When the block's threads cover whole
// rows (kThreads % kChunks == 0), each thread's column and first row are fixed, so the loop only
// steps pointers; otherwise the general index arithmetic runs.
template <int kRows>
__device__ __forceinline__ void load_rows(const u16 *base, i64 row_stride, int r0, int limit,
                                          u16 *dst)
{
    if constexpr (kThreads % kChunks == 0 && (kRows * kChunks) % kThreads == 0) {
        constexpr int kRowStep = kThreads / kChunks;
        const int row = threadIdx.x / kChunks, col = (threadIdx.x % kChunks) * 8;
        const u16 *src = base + (i64)(r0 + row) * row_stride + col;
        const i64 src_step = kRowStep * row_stride;
        const u32 d = smem_u32(dst + row * kPitch + col);
        if (kFastLoads && r0 + kRows <= limit) {  // interior: no row checks (2 instructions a
                                                  // copy in SASS, not 6)
#pragma unroll
            for (int k = 0; k < kRows * kChunks / kThreads; k++) {
                cp_async16(d + k * kRowStep * kPitch * 2, src, 16);
                src += src_step;  // (not src + k * src_step: hoisted 64-bit offsets spill)
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < kRows * kChunks / kThreads; k++) {
            const bool in = r0 + row + k * kRowStep < limit;
            cp_async16(d + k * kRowStep * kPitch * 2, in ? src : base, in ? 16 : 0);
            src += src_step;
        }
    } else {
#pragma unroll
        for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
            const int r = c / kChunks, d = (c % kChunks) * 8;
            const bool in = r0 + r < limit;
            const u16 *src = in ? base + (i64)(r0 + r) * row_stride + d : base;
            cp_async16(smem_u32(dst + r * kPitch + d), src, in ? 16 : 0);
        }
    }
}

// Shared columns [kHeadDim, kHeadDimPad) are never loaded; they must read as zero.
template <int kRows>
__device__ __forceinline__ void zero_pad_columns(u16 *s)
{
    if constexpr (kHeadDim != kHeadDimPad) {
        constexpr int kPad = kHeadDimPad - kHeadDim;
        for (int e = threadIdx.x; e < kRows * kPad; e += kThreads)
            s[(e / kPad) * kPitch + kHeadDim + e % kPad] = 0;
    }
}

// Per-lane shared-memory byte addresses of the ldmatrix sources, fixed for the whole kernel:
// every tile only adds compile-time offsets.
struct Operands {
    u32 q, k, v;
};
__device__ __forceinline__ Operands operands(const u16 *sQ, const u16 *sK, const u16 *sV,
                                             int warp_row0)
{
    const int lane = threadIdx.x % 32, mi = lane / 8;
    Operands a;
    a.q = smem_u32(sQ + (warp_row0 + lane % 16) * kPitch + (lane / 16) * 8);
    a.k = smem_u32(sK + ((mi / 2) * 8 + lane % 8) * kPitch + (mi % 2) * 8);
    a.v = smem_u32(sV + ((mi % 2) * 8 + lane % 8) * kPitch + (mi / 2) * 8);
    return a;
}

// acc[mt][nt][*] = Q (this warp's rows) x K^T (the tile's keys), raw dot products. mma.sync is
// synchronous: the product is done on return and qk_wait has nothing left to do.
__device__ __forceinline__ void qk_issue(const Operands &lb, float (&acc)[kMTiles][kNTiles][4])
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[mt][nt][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ks++) {
        u32 a[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
            ldmatrix_x4(lb.q + (mt * 16 * kPitch + ks * 16) * 2, a[mt][0], a[mt][1], a[mt][2],
                        a[mt][3]);
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt += 2) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4(lb.k + (nt * 8 * kPitch + ks * 16) * 2, b0, b1, b2, b3);
#pragma unroll
            for (int mt = 0; mt < kMTiles; mt++) {
                mma_16816(acc[mt][nt], a[mt], b0, b1);
                mma_16816(acc[mt][nt + 1], a[mt], b2, b3);
            }
        }
    }
}
__device__ __forceinline__ void qk_wait(float (&)[kMTiles][kNTiles][4]) {}

// acc_o[mt][dt][*] += P (a tile's probabilities, 16-bit pairs) x V (that tile's rows, in V
// buffer `buf`). Synchronous, as qk_issue.
__device__ __forceinline__ void pv_issue(const u32 (&pp)[kMTiles][kBlockN / 16][4],
                                         const Operands &lb, int buf,
                                         float (&acc_o)[kMTiles][kDTiles][4])
{
    const u32 v = lb.v + buf * kSmemKV;
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; kk++) {
#pragma unroll
        for (int dt = 0; dt < kDTiles; dt += 2) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4_trans(v + (kk * 16 * kPitch + dt * 8) * 2, b0, b1, b2, b3);
#pragma unroll
            for (int mt = 0; mt < kMTiles; mt++) {
                mma_16816(acc_o[mt][dt], pp[mt][kk], b0, b1);
                mma_16816(acc_o[mt][dt + 1], pp[mt][kk], b2, b3);
            }
        }
    }
}
__device__ __forceinline__ void pv_none() {}
__device__ __forceinline__ void pv_wait(float (&)[kMTiles][kDTiles][4]) {}
]=]

M.launch_bounds = "kThreads"
M.async_fence = ""

function M.check(row, d_pad)
end

function M.smem_operands(block_m, block_n, d_pad)
  local pitch = d_pad + 8
  return block_m * pitch * 2 + 3 * block_n * pitch * 2  -- Q, K, two V buffers
end

function M.emit_ptx(buf, dtype, block_n, d_pad)
end

function M.summary(block_m, block_n, warps, m_tiles)
  return string.format("tile %dx%d, %d warps x %d m-tiles, mma.sync m16n8k16, cp.async K/V overlap",
    block_m, block_n, warps, m_tiles)
end

return M
