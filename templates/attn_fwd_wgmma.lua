-- attn_fwd_wgmma.lua: the sm_90a engine of the forward kernel (attn_fwd.lua): operand layout,
-- tile loads and the two GEMMs on wgmma. Each warpgroup (4 warps) owns 64 query rows; S = Q K^T
-- reads Q and K from shared memory through matrix descriptors, O += P V takes P from registers
-- (the score fragment, repacked as for mma.sync) and V from shared memory, N-major. The
-- accumulator layout per warp is mma.sync's m16n8 layout repeated over N, so every score stage
-- of attn_fwd.lua runs unchanged on kMTiles = 1. Loads stay cp.async by every thread.
local errors = require("errors")
local ptx = require("cuda_ptx")

local M = {}

M.layout = [=[
// Operands sit in 128-byte-swizzled shared memory, the layout wgmma reads through descriptors: a
// tile of R rows is cut into atoms of 64 columns (128 bytes of a row); atom a holds rows [0, R)
// at 128 bytes each, the 16-byte chunk c of row r stored at chunk c ^ (r % 8). Every atom starts
// 1024-byte aligned, as the swizzle works on address bits 4-9: by the dynamic array's declared
// alignment where two blocks must share an SM (4 warps), else by kSmemSlack bytes of slack.
constexpr int kAtoms = (kHeadDimPad + 63) / 64;
constexpr int kSmemQ = kAtoms * kBlockM * 128;
constexpr int kSmemKV = kAtoms * kBlockN * 128;  // one K or V buffer
constexpr int kSmemAlign = 1024;
static_assert(kMTiles == 1 && kWarps % 4 == 0, "a warpgroup's 4 warps own 16 rows each");
static_assert(kBlockN <= 256 && kHeadDimPad <= 256, "wgmma n is at most 256");]=]

M.loads_and_gemms = [=[
// Byte offset of the 16-byte chunk `chunk` (8 elements) of row r in a kRows-row swizzled tile.
template <int kRows>
__device__ __forceinline__ u32 swz(int r, int chunk)
{
    return (chunk / 8) * (kRows * 128) + r * 128 + (((chunk % 8) ^ (r % 8)) * 16);
}

// Rows [r0, r0 + kRows) of a (row, D) matrix into a swizzled tile; rows at or past `limit` are
// zero-filled (cp.async with 0 source bytes reads nothing). When the block covers whole rows in
// steps of 8 rows, each thread's chunk and swizzle are fixed, so the loop only steps pointers.
template <int kRows>
__device__ __forceinline__ void load_rows(const u16 *base, i64 row_stride, int r0, int limit,
                                          u16 *dst)
{
    const u32 d0 = smem_u32(dst);
    if constexpr (kThreads % kChunks == 0 && (kRows * kChunks) % kThreads == 0 &&
                  (kThreads / kChunks) % 8 == 0) {
        constexpr int kRowStep = kThreads / kChunks;
        const int row = threadIdx.x / kChunks, ch = threadIdx.x % kChunks;
        const u16 *src = base + (i64)(r0 + row) * row_stride + ch * 8;
        const i64 src_step = kRowStep * row_stride;
        const u32 d = d0 + swz<kRows>(row, ch);
        if (kFastLoads && r0 + kRows <= limit) {  // interior: no row checks (2 instructions a
                                                  // copy in SASS, not 6)
#pragma unroll
            for (int k = 0; k < kRows * kChunks / kThreads; k++) {
                cp_async16(d + k * kRowStep * 128, src, 16);
                src += src_step;  // (not src + k * src_step: 8 hoisted 64-bit offsets spill)
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < kRows * kChunks / kThreads; k++) {
            const bool in = r0 + row + k * kRowStep < limit;
            cp_async16(d + k * kRowStep * 128, in ? src : base, in ? 16 : 0);
            src += src_step;
        }
    } else {
#pragma unroll
        for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
            const int r = c / kChunks, ch = c % kChunks;
            const bool in = r0 + r < limit;
            const u16 *src = in ? base + (i64)(r0 + r) * row_stride + ch * 8 : base;
            cp_async16(d0 + swz<kRows>(r, ch), src, in ? 16 : 0);
        }
    }
}

// Columns [kHeadDim, kHeadDimPad) (one chunk when D % 16 == 8) are never loaded; they must read
// as zero in both products.
template <int kRows>
__device__ __forceinline__ void zero_pad_columns(u16 *s)
{
    if constexpr (kHeadDim != kHeadDimPad) {
        for (int r = threadIdx.x; r < kRows; r += kThreads)
            *(uint4 *)((unsigned char *)s + swz<kRows>(r, kChunks)) = make_uint4(0, 0, 0, 0);
    }
}

// wgmma matrix descriptor, 128-byte swizzle: start address, leading byte offset (N-major: from
// one 64-column atom to the next; K-major: unused, 16), stride byte offset 1024 (8 rows).
__device__ __forceinline__ u64 smem_desc(u32 addr, u32 lead_bytes)
{
    return (u64)((addr & 0x3ffff) >> 4) | (u64)((lead_bytes >> 4) & 0x3fff) << 16 |
           (u64)(1024 >> 4) << 32 | 1ull << 62;
}

// Descriptors of this warpgroup's operands, fixed for the whole kernel: a k-step only adds a
// compile-time offset (in 16-byte units; shared addresses stay under 2^18, so no carry).
struct Operands {
    u64 q, k, v;
};
__device__ __forceinline__ Operands operands(const u16 *sQ, const u16 *sK, const u16 *sV,
                                             int warp_row0)
{
    Operands o;
    o.q = smem_desc(smem_u32(sQ) + (warp_row0 / 64) * 64 * 128, 16);
    o.k = smem_desc(smem_u32(sK), 16);
    o.v = smem_desc(smem_u32(sV), kBlockN * 128);
    return o;
}

// acc[0][nt][*] = Q (this warpgroup's 64 rows) x K^T (the tile's keys), raw dot products.
// Issued and committed as one group; qk_wait waits for it while a P V issued after it runs on.
__device__ __forceinline__ void qk_issue(const Operands &ops, float (&acc)[kMTiles][kNTiles][4])
{
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kKSteps; ks++) {
        const int atom = ks / 4, in_atom = (ks % 4) * 32;  // 16 columns = 32 bytes per k-step
        wgmma_qk(&acc[0][0][0], ops.q + ((atom * kBlockM * 128 + in_atom) >> 4),
                 ops.k + ((atom * kBlockN * 128 + in_atom) >> 4), ks > 0);
    }
    wgmma_commit();
}
__device__ __forceinline__ void qk_wait(float (&acc)[kMTiles][kNTiles][4])
{
    wgmma_wait<1>();  // groups retire in order: this one, not a P V committed after it
#pragma unroll
    for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            reg_fence(acc[0][nt][e]);
}

// acc_o[0][dt][*] += P (a tile's probabilities, 16-bit pairs) x V (that tile's rows, in V
// buffer `buf`), issued and committed; pv_wait waits for it. pp and acc_o must not be touched
// in between.
__device__ __forceinline__ void pv_issue(const u32 (&pp)[kMTiles][kBlockN / 16][4],
                                         const Operands &ops, int buf,
                                         float (&acc_o)[kMTiles][kDTiles][4])
{
    const u64 v = ops.v + buf * (kSmemKV >> 4);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; kk++)  // 16 keys = 16 rows of 128 bytes per k-step
        wgmma_pv(&acc_o[0][0][0], pp[0][kk], v + ((kk * 16 * 128) >> 4), 1);
    wgmma_commit();
}
// The first tile has no P V before it: an empty group in its place.
__device__ __forceinline__ void pv_none() { wgmma_commit(); }
__device__ __forceinline__ void pv_wait(float (&acc_o)[kMTiles][kDTiles][4])
{
    wgmma_wait<0>();
#pragma unroll
    for (int dt = 0; dt < kDTiles; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            reg_fence(acc_o[0][dt][e]);
}
]=]

M.launch_bounds = "kThreads, 1"  -- one block per SM: the register file is the budget
M.async_fence = "        fence_proxy_async();  // cp.async writes, then wgmma reads"

function M.check(row, d_pad)
  if row.m_tiles ~= 1 or row.warps % 4 ~= 0 then
    error("tuning.lua: a wgmma row needs m_tiles = 1 and whole warpgroups", 0)
  end
  if row.block_n > 256 or d_pad > 256 then
    errors.unsupported("wgmma n above 256")
  end
end

function M.smem_operands(block_m, block_n, d_pad)
  local atoms = (d_pad + 63) // 64
  return atoms * block_m * 128 + 3 * atoms * block_n * 128  -- Q, K, two V buffers
end

function M.emit_ptx(buf, dtype, block_n, d_pad)
  ptx.emit_wgmma(buf, dtype, {
    { name = "wgmma_qk", n = block_n, a_regs = false, trans_b = 0 },
    { name = "wgmma_pv", n = d_pad, a_regs = true, trans_b = 1 },
  })
end

function M.summary(block_m, block_n, warps)
  return string.format("tile %dx%d, %d warpgroups, wgmma m64n%dk16 from 128-byte-swizzled " ..
    "smem, cp.async K/V overlap", block_m, block_n, warps // 4, block_n)
end

return M
