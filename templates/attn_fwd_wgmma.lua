-- attn_fwd_wgmma.lua: the sm_90a engine of the forward kernel (attn_fwd.lua): operand layout and
-- the two GEMMs on wgmma. Each warpgroup (4 warps) owns 64 query rows; S = Q K^T reads Q and K
-- from shared memory through matrix descriptors, O += P V takes P from registers (the score
-- fragment, repacked as for mma.sync) and V from shared memory, N-major. The accumulator layout
-- per warp is mma.sync's m16n8 layout repeated over N, so every score stage of attn_fwd.lua runs
-- unchanged on kMTiles = 1. Loads stay cp.async by every thread (attn_fwd.lua's load_rows).
local errors = require("errors")
local ptx = require("cuda_ptx")

local M = {}

-- The 128-byte swizzle: an atom is 8 rows of 128 bytes (64 16-bit columns), 1024 bytes, and
-- must start 1024-byte aligned, as the swizzle works on address bits 4-9.
local atom_row_bytes = 128
local atom_bytes = 8 * atom_row_bytes

M.name = "wgmma"
M.launch_bounds = "kThreads, 1"  -- one block per SM: the register file is the budget
M.async_fence = "fence_proxy_async();  // cp.async writes, then wgmma reads"

M.layout = string.format([=[
// Operands sit in 128-byte-swizzled shared memory, the layout wgmma reads through descriptors: a
// tile of R rows is cut into atoms of 64 columns (kAtomRowBytes of a row); atom a holds rows
// [0, R) at kAtomRowBytes each, the 16-byte chunk c of row r stored at chunk c ^ (r %% 8). Every
// 8-row group starts kAtomBytes-aligned, as the swizzle works on address bits 4-9: by the dynamic
// array's declared alignment or by kSmemSlack bytes of slack (tuning.lua: align_declared).
constexpr int kAtomRowBytes = %d;                  // one row of an atom: 64 16-bit columns
constexpr int kAtomBytes = 8 * kAtomRowBytes;      // the swizzle's period, and its alignment
constexpr int kAtoms = (kHeadDimPad + 63) / 64;
constexpr int kSmemQ = kAtoms * kBlockM * kAtomRowBytes;
constexpr int kSmemKV = kAtoms * kBlockN * kAtomRowBytes;  // one K or V buffer
constexpr int kSmemAlign = kAtomBytes;
constexpr int kRowBytes = kAtomRowBytes;           // from one row of a tile to the next
constexpr int kRowGroup = 8;                       // a thread's rows step by whole swizzle periods
static_assert(kMTiles == 1 && kWarps %% 4 == 0, "a warpgroup's 4 warps own 16 rows each");
static_assert(kBlockN <= 256 && kHeadDimPad <= 256, "wgmma n is at most 256");]=], atom_row_bytes)

M.tile_access = [=[
// Byte offset of the 16-byte chunk `chunk` (8 elements) of row r in a kRows-row swizzled tile.
template <int kRows>
__device__ __forceinline__ u32 swz(int r, int chunk)
{
    return (chunk / 8) * (kRows * kAtomRowBytes) + r * kAtomRowBytes +
           ((chunk % 8) ^ (r % 8)) * 16;
}
// Shared address of that chunk in `tile`.
template <int kRows>
__device__ __forceinline__ u32 chunk_addr(u16 *tile, int r, int chunk)
{
    return smem_u32(tile) + swz<kRows>(r, chunk);
}]=]

-- Only where kHeadDim < kHeadDimPad.
M.zero_pad = [=[
// Columns [kHeadDim, kHeadDimPad) (one chunk: D % 16 == 8) are never loaded; they must read as
// zero in both products.
template <int kRows>
__device__ __forceinline__ void zero_pad_columns(u16 *s)
{
    for (int r = threadIdx.x; r < kRows; r += kThreads)
        *(uint4 *)((unsigned char *)s + swz<kRows>(r, kChunks)) = make_uint4(0, 0, 0, 0);
}]=]

-- wgmma's shared-memory descriptor of a 128-byte-swizzled operand (the backward's engine too).
M.smem_desc = [=[
// wgmma matrix descriptor, 128-byte swizzle: start address, leading byte offset (N-major: from
// one 64-column atom to the next; K-major: unused, 16), stride byte offset kAtomBytes (8 rows).
// Addresses and offsets go in 16-byte units.
__device__ __forceinline__ u64 smem_desc(u32 addr, u32 lead_bytes)
{
    return (u64)((addr & 0x3ffff) >> 4) | (u64)((lead_bytes >> 4) & 0x3fff) << 16 |
           (u64)(kAtomBytes >> 4) << 32 | 1ull << 62;
}]=]

M.gemms = M.smem_desc .. "\n" .. [=[

// Descriptors of this warpgroup's operands, fixed for the whole kernel: a k-step only adds a
// compile-time offset (in 16-byte units; shared addresses stay under 2^18, so no carry).
struct Operands {
    u64 q, k, v;
};
__device__ __forceinline__ Operands operands(const u16 *sQ, const u16 *sK, const u16 *sV,
                                             int warp_row0)
{
    Operands o;
    o.q = smem_desc(smem_u32(sQ) + (warp_row0 / 64) * 64 * kAtomRowBytes, 16);
    o.k = smem_desc(smem_u32(sK), 16);
    o.v = smem_desc(smem_u32(sV), kBlockN * kAtomRowBytes);
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
        wgmma_qk(&acc[0][0][0], ops.q + ((atom * kBlockM * kAtomRowBytes + in_atom) >> 4),
                 ops.k + ((atom * kBlockN * kAtomRowBytes + in_atom) >> 4), ks > 0);
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
    for (int kk = 0; kk < kBlockN / 16; kk++)  // a k-step: 16 keys, 16 rows of an atom
        wgmma_pv(&acc_o[0][0][0], pp[0][kk], v + ((kk * 16 * kAtomRowBytes) >> 4), 1);
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
}]=]

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
  return atoms * block_m * atom_row_bytes + 3 * atoms * block_n * atom_row_bytes  -- Q, K, 2 V
end

M.smem_align = atom_bytes  -- bytes the operand tiles need their base aligned to

function M.emit_ptx(buf, dtype, pl)
  ptx.emit_wgmma(buf, dtype, {
    { name = "wgmma_qk", n = pl.block_n, a_regs = false, trans_b = 0 },
    { name = "wgmma_pv", n = pl.d_pad, a_regs = true, trans_b = 1 },
  })
end

function M.summary(pl)
  return string.format("tile %dx%d, %d warpgroups, wgmma m64n%dk16 from %d-byte-swizzled " ..
    "smem, cp.async K/V overlap", pl.block_m, pl.block_n, pl.warps // 4, pl.block_n,
    atom_row_bytes)
end

return M
