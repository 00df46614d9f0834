-- attn_fwd_mma.lua: the sm_80 engine of the forward kernel (attn_fwd.lua): operand layout and the
-- two GEMMs on mma.sync m16n8k16. Each warp owns 16 * kMTiles query rows; operands are read from
-- padded shared memory with ldmatrix (per-lane bases fixed for the whole kernel).
local M = {}

M.name = "mma.sync"
M.launch_bounds = "kThreads"
M.async_fence = ""  -- mma.sync reads shared memory through the generic proxy, as cp.async writes

M.layout = [=[
// Rows padded by 16 bytes: the 8 row addresses of one ldmatrix then fall in 8 different 16-byte
// bank groups ((kHeadDimPad + 8) / 8 is odd), so reads are conflict free without a swizzle.
constexpr int kPitch = kHeadDimPad + 8;
constexpr int kSmemQ = kBlockM * kPitch * 2;
constexpr int kSmemKV = kBlockN * kPitch * 2;  // one K or V buffer
constexpr int kRowBytes = kPitch * 2;          // from one row of a tile to the next
constexpr int kRowGroup = 1;                   // a thread's rows may step by any count]=]

-- Where load_rows (attn_fwd.lua) puts a chunk, and the padding columns.
M.tile_access = [=[
// Shared address of the 16-byte chunk `chunk` (8 elements) of row r in a kRows-row tile.
template <int kRows>
__device__ __forceinline__ u32 chunk_addr(u16 *tile, int r, int chunk)
{
    return smem_u32(tile + r * kPitch + chunk * 8);
}]=]

-- Only where kHeadDim < kHeadDimPad.
M.zero_pad = [=[
// Shared columns [kHeadDim, kHeadDimPad) are never loaded; they must read as zero.
template <int kRows>
__device__ __forceinline__ void zero_pad_columns(u16 *s)
{
    constexpr int kPad = kHeadDimPad - kHeadDim;
    for (int e = threadIdx.x; e < kRows * kPad; e += kThreads)
        s[(e / kPad) * kPitch + kHeadDim + e % kPad] = 0;
}]=]

M.gemms = [=[
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
__device__ __forceinline__ void pv_wait(float (&)[kMTiles][kDTiles][4]) {}]=]

-- What the plan (attn_fwd.lua) needs from the engine: no alignment beyond 16 bytes.
function M.check(row, d_pad)
end

function M.smem_operands(block_m, block_n, d_pad)
  local pitch = d_pad + 8
  return block_m * pitch * 2 + 3 * block_n * pitch * 2  -- Q, K, two V buffers
end

M.smem_align = 0  -- bytes the operand tiles need their base aligned to, beyond 16

function M.emit_ptx(buf, dtype, pl)
end

function M.summary(pl)
  return string.format("tile %dx%d, %d warps x %d m-tiles, mma.sync m16n8k16, cp.async K/V overlap",
    pl.block_m, pl.block_n, pl.warps, pl.m_tiles)
end

return M
