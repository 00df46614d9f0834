-- attn_bwd_wgmma.lua: the sm_90a engine of the backward's tile phases (attn_bwd.lua). Each of the
-- block's warpgroups (4 warps, 16 rows each: the phases' thread layout unchanged) computes the
-- 64-row products of its own tile with wgmma: S = X Y^T from two K-major tiles in shared memory,
-- P Z with P from registers (mma.sync's A fragments) and Z N-major in shared memory. Tiles sit in
-- the forward's 128-byte-swizzled layout (attn_fwd_wgmma.lua). Products are issued as groups and
-- waited for apart (issue_xyt_pair, issue_pz_async, wait_products), so that the keys phase
-- computes P while dP^T runs and dS while dV^T does.
-- It also offers the keys phase a tile's share of dq (M.dq_atomic): dS^T goes to a kTile x kTile
-- tile a warpgroup, read back as dS's M-major A operand of dS K (warpgroup g: dq's columns of
-- atom g over all the block's keys), and the product is added to an fp32 scratch by the
-- bulk-copy engine's reductions, a row each (red_tile; attn_bwd.lua's red_tile_map adds it
-- through a tensor map where the keys phase has maps) in the default, non-deterministic mode: a
-- block of two warpgroups adds one tile's dq for 128 keys, half the fp32 bytes of one a 64 keys.
local common = require("cuda_common")
local fwd_wgmma = require("attn_fwd_wgmma")
local ptx = require("cuda_ptx")

local M = {}

M.name = "wgmma"
M.smem_align = 1024  -- the swizzle's period: every tile starts on it

local engine = [=[
// A tile of kTile rows is cut into atoms of 64 columns (128 bytes of a row); atom a holds rows
// [0, kTile) at kAtomRowBytes each, the 16-byte chunk c of row r stored at chunk c ^ (r % 8).
constexpr int kAtomRowBytes = 128;
constexpr int kAtomBytes = 8 * kAtomRowBytes;  // the swizzle's period, and a tile's alignment
constexpr int kAtoms = (kHeadDimPad + 63) / 64;
constexpr int kTileElems = kAtoms * kTile * kAtomRowBytes / 2;  // one tile, in 16-bit elements
constexpr int kDsElems = kTile * kAtomRowBytes / 2;  // a warpgroup's dS^T: one atom wide
// the own tiles (K, V or Q, dO: kGroups each), the streamed ones ($query_stages stages of Q and
// dO in the keys phase) and a dS^T a warpgroup
constexpr int kTilesElems = (2 * kGroups + 2 * $query_stages) * kTileElems + kGroups * kDsElems;
$ds_at_decl
constexpr int kDqCols = kHeadDimPad / kGroups;  // dq's columns a warpgroup in dS K
constexpr int kDqT = kDqCols / 8;
static_assert(kTile == 64 && kWarps % 4 == 0, "warpgroups: a wgmma's 64 rows are a group's tile");
static_assert(kGroups == 1 || kDqCols == 64, "dq's columns split by whole atoms");

// Byte offset of the 16-byte chunk `chunk` (8 elements) of row r in a tile.
__device__ __forceinline__ u32 swz(int r, int chunk)
{
    return (chunk / 8) * (kTile * kAtomRowBytes) + r * kAtomRowBytes + ((chunk % 8) ^ (r % 8)) * 16;
}

$load_tile_fn
$zero_pad_fn
// This thread's cp.async copies landed and, with the zero padding, made visible to the async
// proxy wgmma reads through (the caller's barrier makes them the block's).
__device__ __forceinline__ void tiles_landed()
{
    cp_async_wait<0>();
    fence_proxy_async();
}

$smem_desc

// The k-steps of X Y^T: x and y K-major (rows of D), 16 columns (32 bytes) a step.
__device__ __forceinline__ void issue_xyt(const u16 *x, const u16 *y, float (&acc)[kNT][4])
{
    const u64 dx = smem_desc(smem_u32(x), 16), dy = smem_desc(smem_u32(y), 16);
#pragma unroll
    for (int ks = 0; ks < kHeadDimPad / 16; ks++) {
        const u32 off = ((ks / 4) * kTile * kAtomRowBytes + (ks % 4) * 32) >> 4;
        wgmma_xyt(&acc[0][0], dx + off, dy + off, ks > 0);
    }
}

// The k-steps of P Z: P's A fragments, z N-major (kTile rows of D columns), 16 rows a step.
__device__ __forceinline__ void issue_pz(const u32 (&pp)[kTile / 16][4], const u16 *z,
                                         float (&acc)[kDT][4])
{
    const u64 dz = smem_desc(smem_u32(z), kTile * kAtomRowBytes);
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++)
        wgmma_pz(&acc[0][0], pp[kk], dz + ((kk * 16 * kAtomRowBytes) >> 4), 1);
}

template <int N>
__device__ __forceinline__ void wait_all(float (&acc)[N][4])
{
#pragma unroll
    for (int t = 0; t < N; t++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            reg_fence(acc[t][e]);
}

// acc1 = X1 Y1^T and acc2 = X2 Y2^T (the warpgroup's 64 rows of x, the kTile rows of y, over D):
// issued as two groups, acc1's first, so that acc1 can be used while acc2's still runs.
__device__ __forceinline__ void issue_xyt_pair(const u16 *x1, const u16 *y1, float (&acc1)[kNT][4],
                                               const u16 *x2, const u16 *y2, float (&acc2)[kNT][4])
{
    wgmma_fence();
    issue_xyt(x1, y1, acc1);
    wgmma_commit();
    issue_xyt(x2, y2, acc2);
    wgmma_commit();
}

// acc += P Z (P: the warpgroup's 64 x kTile, 16-bit pairs; z: kTile rows x D), issued as a
// group of its own: pp must not be written, nor acc read, until a wait_products covers it.
__device__ __forceinline__ void issue_pz_async(const u32 (&pp)[kTile / 16][4], const u16 *z,
                                               float (&acc)[kDT][4])
{
    wgmma_fence();
    issue_pz(pp, z, acc);
    wgmma_commit();
}

// Until at most N of the warpgroup's product groups run: acc's (issued before them) is done.
template <int N, int T>
__device__ __forceinline__ void wait_products(float (&acc)[T][4])
{
    wgmma_wait<N>();
    wait_all(acc);
}

// acc += P Z, waited for.
__device__ __forceinline__ void gemm_pz(const u32 (&pp)[kTile / 16][4], const u16 *z,
                                        float (&acc)[kDT][4])
{
    issue_pz_async(pp, z, acc);
    wait_products<0>(acc);
}

// dS^T (this warp's 16 keys of the accumulator layout, packed as the A operand of dK) into the
// swizzled kTile x kTile tile sds: rows are keys, columns queries, so the tile is dS's M-major
// (transposed) A operand. A store instruction's 8 rows hit 8 distinct chunks: no bank conflict.
__device__ __forceinline__ void store_ds(const u32 (&pd)[kTile / 16][4], u16 *sds)
{
    const int lane = threadIdx.x % 32, r = group_warp() * 16 + lane / 4;
    // swz(r, chunk) with chunk < 8 (one atom) as one XOR a store: rows r and r + 8 swizzle alike
    unsigned char *t = (unsigned char *)sds + r * kAtomRowBytes + 4 * (lane % 4);
    const int sw = (r % 8) * 16;
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++) {
        *(u32 *)(t + ((2 * kk * 16) ^ sw)) = pd[kk][0];
        *(u32 *)(t + 8 * kAtomRowBytes + ((2 * kk * 16) ^ sw)) = pd[kk][1];
        *(u32 *)(t + (((2 * kk + 1) * 16) ^ sw)) = pd[kk][2];
        *(u32 *)(t + 8 * kAtomRowBytes + (((2 * kk + 1) * 16) ^ sw)) = pd[kk][3];
    }
}

// acc = dS K for the tile's kTile queries, this warpgroup's kDqCols columns: over every group's
// keys, dS M-major from its dS^T tile in sds (store_ds, fenced and behind a barrier), K N-major
// (its kTile keys x the columns, atom g of its K tile), 16 keys a step.
__device__ __forceinline__ void gemm_ds_k(const u16 *sds, const u16 *sk, float (&acc)[kDqT][4])
{
    const u32 cols = smem_u32(sk) + warp_group() * kTile * kAtomRowBytes;  // K's atom g
    wgmma_fence();
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
        const u64 da = smem_desc(smem_u32(sds + g * kDsElems), kTile * kAtomRowBytes);
        const u64 db = smem_desc(cols + g * kTileElems * 2, kTile * kAtomRowBytes);
#pragma unroll
        for (int kk = 0; kk < kTile / 16; kk++) {
            const u32 off = (kk * 16 * kAtomRowBytes) >> 4;
            wgmma_dsk(&acc[0][0], da + off, db + off, g > 0 || kk > 0);
        }
    }
    wgmma_commit();
    wgmma_wait<0>();
    wait_all(acc);
}

// fp32 rows staged for the bulk reductions: kD values, then 32 bytes that turn a row's banks by
// 8, so that a half-warp's float2 stores (4 rows, 32 bytes each) hit distinct banks.
constexpr int kDqPitch = 4 * kD + 32;
static_assert(kTile * kDqPitch <= 2 * kTileElems * 2 + kGroups * kTile * kAtomRowBytes,
              "the staged dq rows fit in the Q, dO and dS^T tiles");

// acc (the warpgroup's kDqCols columns of the tile's kTile rows) added to rows m0 + ... (below
// `rows`) of a row-major fp32 matrix of kD columns at base: staged as fp32 rows in buf (the Q,
// dO and dS^T tiles, read by then), then a row a thread of the first kTile / kWarps lanes by the
// bulk-copy engine: one instruction a row instead of a reduction request a lane every 16 bytes.
// On return the engine has read buf (the caller's next barrier frees it for every thread).
// The deterministic mode (t.at >= 0, attn_bwd_turns.lua): the sums wait for the tile's turn
// (thread 0, before the second barrier, takes it: the block's kGroups bits); the last tile's
// turn, held by thread 0 (if a query-layout mask's vote has not passed it), is passed behind the
// first barrier, its sums written by then (each issuing thread waited for its own).
__device__ __forceinline__ void red_tile(const float (&acc)[kDqT][4], float *base, i64 m0,
                                         i64 rows, u16 *buf, const BwdParams &p, DqTurn t)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, r = group_warp() * 16 + lane / 4;
    const int col0 = warp_group() * kDqCols;
    unsigned char *row = (unsigned char *)buf + r * kDqPitch + (col0 + (lane % 4) * 2) * 4;
    // each warp its own kTile / kWarps rows: the bulk ops (a uniform-datapath loop over the
    // issuing lanes) run in every warp at once, 16 a warp with four, not 32 in each of two
    constexpr int kWarpRows = kTile / kWarps;
    const int own = warp * kWarpRows + lane;
    if (t.at >= 0 && lane < kWarpRows) {  // the last tile's sums written, before its turn passes
        bulk_wait();
        asm volatile("fence.proxy.async.global;\n" ::: "memory");
        __threadfence();
    }
    __syncthreads();  // every warp's dS K has read the dS^T tiles
    if (t.at >= 0 && threadIdx.x == 0 && turn_held().word >= 0) {  // (the holder: below)
        dq_turn_pass(p, turn_held().word, turn_held().bits);
        turn_held().word = -1;
    }
#pragma unroll
    for (int dt = 0; dt < kDqT; dt++)
        if (col0 + dt * 8 < kHeadDim) {
            *(float2 *)(row + dt * 32) = make_float2(acc[dt][0], acc[dt][1]);
            *(float2 *)(row + 8 * kDqPitch + dt * 32) = make_float2(acc[dt][2], acc[dt][3]);
        }
    fence_proxy_async();  // the stores, visible to the bulk-copy engine
    if (t.at >= 0 && threadIdx.x == 0)  // the key blocks before this one have added theirs
        dq_turn_take(p, t, kGroups);        // (the block's bits: every warp issues sums here)
    __syncthreads();
    if (lane < kWarpRows && m0 + own < rows) {
        if (t.at >= 0)  // after the turn (thread 0's wait, the barrier)
            asm volatile("fence.proxy.async.global;\n" ::: "memory");
        bulk_red_add_f32(base + (m0 + own) * kD, smem_u32((unsigned char *)buf + own * kDqPitch),
                         4 * kHeadDim);
        bulk_commit();
        bulk_wait_read();
    }
}]=]

-- load_tile, by the layouts (measured, NOTES "Issue 16, session 17"): where a query-layout mask or
-- bias tile is staged too, a thread keeps its chunk column and swizzle phase on every pass (one
-- pointer step a copy; the block covers whole rows a pass, a multiple of 8, at D 64 and 128):
-- +5% full bias, and the q-layout variants' spills gone. Without them the same copies cost 7%
-- (no bias): the per-copy index arithmetic of the plain loop spaces a block's requests out. The
-- strided form's condition is written once, in the kernel's `if constexpr`: the template only
-- says which the variant would like.
local load_tile_fn = [=[
// Rows [r0, r0 + kTile) of a (b, row, head) tensor into a swizzled tile; rows past `rows` read
// as zero (cp.async with 0 source bytes). Committed by the caller.
constexpr bool kStridedCopies = $strided_copies;  // a query-layout mask or bias tile is staged
constexpr int kTilePassRows = kThreads / kChunks;  // rows a pass of the strided form
__device__ __forceinline__ void load_tile(u16 *tile, u64 base, const i64 stride[3], i64 b, i64 r0,
                                          i64 h, i64 rows)
{
    const u16 *src0 = (const u16 *)base + b * stride[0] + h * stride[2];
    if constexpr (kStridedCopies && kThreads % kChunks == 0 && kTilePassRows % 8 == 0 &&
                  kTile % kTilePassRows == 0) {
        // a thread keeps its chunk column and swizzle phase on every pass of the block (whole
        // rows a pass, the swizzle's period a multiple of them)
        const int r = threadIdx.x / kChunks, ch = threadIdx.x % kChunks;
        const u16 *src = src0 + (r0 + r) * stride[1] + ch * 8;
        const i64 step = kTilePassRows * stride[1];
        const u32 dst = smem_u32(tile) + swz(r, ch);
#pragma unroll
        for (int k = 0; k < kTile / kTilePassRows; k++) {
            const bool in = r0 + r + k * kTilePassRows < rows;
            cp_async16(dst + k * kTilePassRows * kAtomRowBytes, in ? src + k * step : src0,
                       in ? 16 : 0);
        }
    } else {
        const u32 dst = smem_u32(tile);
        for (int c = threadIdx.x; c < kTile * kChunks; c += kThreads) {
            const int r = c / kChunks, ch = c % kChunks;
            const bool in = r0 + r < rows;
            const u16 *src = in ? src0 + (r0 + r) * stride[1] + ch * 8 : src0;
            cp_async16(dst + swz(r, ch), src, in ? 16 : 0);
        }
    }
}]=]

-- Only where kHeadDim < kHeadDimPad (D % 16 == 8: one chunk a row).
local zero_pad_fn = [=[

// Columns [kHeadDim, kHeadDimPad) of every tile are never loaded; they must read as zero in both
// products.
__device__ __forceinline__ void zero_pad_columns(u16 *smem, int tiles)
{
    for (int r = threadIdx.x; r < tiles * kTile; r += kThreads)
        *(uint4 *)((unsigned char *)(smem + (r / kTile) * kTileElems) + swz(r % kTile, kChunks)) =
            make_uint4(0, 0, 0, 0);
}]=]

-- staged_q: the variant stages a query-layout mask or bias tile (load_tile's choice, above);
-- tma: the keys phase keeps two stages of Q and dO (attn_bwd.lua's keys_query_tma); ring: its
-- query ring instead (stage_fns_ring places the dS^T tiles)
function M.text(d, d_pad, staged_q, tma, ring)
  return common.fill(engine, { zero_pad_fn = d_pad > d and zero_pad_fn or "",
    ds_at_decl = ring and "" or table.concat({
      "// the keys phase's dS^T tiles: after the own tiles and a stage of Q and dO",
      "constexpr int kDsAt = (2 * kGroups + 2) * kTileElems;" }, "\n"),
    query_stages = tma and 2 or 1,
    smem_desc = fwd_wgmma.smem_desc,
    load_tile_fn = common.fill(load_tile_fn, { strided_copies = staged_q and "true" or "false" }) })
end

-- swizzled tiles of `tile` rows: the own ones (K, V or Q, dO: `groups` each), the streamed ones
-- (with tma two stages of Q and dO) and a dS^T a warpgroup (tile x tile)
function M.smem_tiles(tile, groups, d_pad, tma)
  return (2 * groups + (tma and 4 or 2)) * ((d_pad + 63) // 64) * tile * 128 + groups * tile * 128
end

-- The keys phase's query ring (attn_bwd.lua's stage_fns_ring): the own tiles, three stages of Q
-- and dO, two dS^T buffers, dq's staging buffer (kD / 32 boxes of tile rows x 128 bytes), each
-- stage's lse and row_dot and its mbarrier: bytes a block.
function M.ring_smem(tile, groups, d_pad, d)
  local tile_bytes = (d_pad + 63) // 64 * tile * 128
  return (2 * groups + 6) * tile_bytes + 2 * groups * tile * 128 + d // 32 * tile * 128 +
    3 * 2 * tile * 4 + 3 * 8
end
-- shared memory a block may opt in to on sm_90 (227 KB)
M.smem_max = 227 * 1024

-- the keys phase adds dq itself (store_ds, gemm_ds_k, red_tile) where the library asks
M.dq_atomic = true
-- the keys phase can load its query tiles by the tensor memory accelerator (tma in M.text)
M.tma_keys = true

function M.emit_ptx(buf, dtype, d_pad, tile, groups, tma, ring)
  ptx.emit(buf, dtype, true)  -- cp.async, pack2, ex2
  buf.add("")
  buf.add(ptx.bulk_red_add)
  if tma then
    buf.add("")
    buf.add(ptx.tma)
  end
  if ring then
    buf.add("")
    buf.add(ptx.named_barrier)
  end
  buf.add("")
  ptx.emit_wgmma(buf, dtype, {
    { name = "wgmma_xyt", n = tile, a_regs = false, trans_b = 0 },
    { name = "wgmma_pz", n = d_pad, a_regs = true, trans_b = 1 },
    { name = "wgmma_dsk", n = d_pad // groups, a_regs = false, trans_a = 1, trans_b = 1 },
  })
end

function M.summary(row)
  return string.format("wgmma m64n%dk16, %dx%d tiles from 128-byte-swizzled smem, %s, " ..
    "phases rows / keys / dbias", row.block_n, row.block_m, row.block_n,
    row.warps == 4 and "one warpgroup" or (row.warps // 4) .. " warpgroups of 64 own rows")
end

return M
