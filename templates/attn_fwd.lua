-- attn_fwd.lua: the dense forward attention family (SPEC §2), one kernel per variant.
--
-- FlashAttention-2 structure on mma.sync m16n8k16 (fp16/bf16 in, fp32 accumulate): a block owns
-- kBlockM query rows of one (batch, head), each warp 16 * kMTiles of them. Keys are walked in
-- tiles of kBlockN. K and V tiles are staged in padded shared memory with cp.async (V of this tile
-- and K of the next stream in while the tensor cores work), read back with ldmatrix; the online
-- softmax runs in registers in the log2 domain (scale folded in, ex2). Before a tile's K is
-- requested, a block-wide vote over its mask (and the causal diagonal) skips it whole when no
-- entry is visible: no K, V or bias bytes are read for it, no MMA runs. Tiles past the causal
-- diagonal are never visited. A feature that is off is absent from the text.
local common = require("cuda_common")
local ptx = require("cuda_ptx")
local tune = require("tune")
-- the engine: operand layout, tile loads and GEMMs, chosen by the tuning row's `mma`
local engines = { ["mma.sync"] = require("attn_fwd_mma"), wgmma = require("attn_fwd_wgmma") }

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
    int bias_vec16;  // bias rows start 16-byte aligned: a q-layout bias tile can go by cp.async
    int mask_pairs;  // mask rows start 2-byte aligned: two keys per load
    int mask_vec16;  // mask rows start 16-byte aligned: a q-layout mask tile can go by cp.async
    float scale;      // scores with a bias or softcap stage stay in natural units
    float softcap_k;  // 2 * log2(e) / softcap: tanh on ex2
};
static_assert(sizeof(FwdParams) == 296, "FwdParams must match dm_fwd_params in runtime/fwd.c");]=]

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
static_assert(kHeadDim % 8 == 0 && kHeadDim <= 256, "head_dim a multiple of 8 up to 256");
constexpr int kBiasRows = $bias_rows;          // staged bias rows: kBlockM (q layout) or 1 (k)
constexpr int kBiasPitch = $bias_pitch;        // bytes per staged row (+16: banks)
constexpr int kSmemBias = 2 * kBiasRows * kBiasPitch;  // double buffered: this tile, the next
constexpr int kMaskRows = $mask_rows;          // staged mask rows: kBlockM (q layout) or 1 (k)
constexpr int kMaskPitch = kBlockN + 16;       // bytes per staged mask row; +16: banks
constexpr int kSmemMask = $mask_smem;
constexpr int kSmemBytes = kSmemAlign + kSmemQ + 3 * kSmemKV + kSmemBias + kSmemMask;
static_assert(kSmemBytes == $smem_bytes, "launch smem (from Lua) matches the layout");]=]

-- Reading one score's bias: from the staged tile (q layout, aligned rows), else from global.
local bias_helpers = [=[
__device__ __forceinline__ float bias_at(const FwdParams &p, i64 off)
{
    if (p.bias_f32)
        return ((const float *)p.bias)[off];
    return elem_to_float(((const u16 *)p.bias)[off]);
}]=]

local bias_tile = [=[
// The tile's bias (kBiasRows x kBlockN; one row for the key-side layout) into shared memory by
// cp.async, when rows start 16-byte aligned. Issued with the tile's K, a whole tile ahead.
// Interior tiles of a per-query bias: a fixed (row, chunk) per thread, copies at fixed shared
// offsets (kEsize, 2 or 4 for fp32, a template argument so that every count is a constant).
template <int kEsize>
__device__ __forceinline__ void load_bias_rows(const FwdParams &p, const unsigned char *bias_bh,
                                               int m0, int n0, unsigned char *sB)
{
    constexpr int kRowChunks = kBlockN * kEsize / 16;
    static_assert(kThreads % kRowChunks == 0, "whole rows per pass");
    constexpr int kRowStep = kThreads / kRowChunks;
    const int r = threadIdx.x / kRowChunks, c = threadIdx.x % kRowChunks;
    const i64 src_step = (i64)kRowStep * p.bias_stride[2] * kEsize;
    const unsigned char *src = bias_bh + ((i64)(m0 + r) * p.bias_stride[2] + n0) * kEsize + c * 16;
    const u32 dst = smem_u32(sB + r * kBiasPitch + c * 16);
#pragma unroll
    for (int k = 0; k < kBiasRows * kRowChunks / kThreads; k++) {
        cp_async16(dst + k * kRowStep * kBiasPitch, src, 16);
        src += src_step;
    }
}
__device__ __forceinline__ void load_bias_tile(const FwdParams &p, const unsigned char *bias_bh,
                                               int m0, int n0, unsigned char *sB)
{
    // (kThreads is a multiple of a row's chunks and of the rows they cover: powers of two)
    if constexpr (kBiasRows > 1 && (kBiasRows * kBlockN * 2 / 16) % kThreads == 0) {
        if (m0 + kBiasRows <= p.Lq && n0 + kBlockN <= p.Lk) {
            if (kBiasPitch >= kBlockN * 4 && p.bias_f32)
                load_bias_rows<4>(p, bias_bh, m0, n0, sB);
            else
                load_bias_rows<2>(p, bias_bh, m0, n0, sB);
            return;
        }
    }
    // Edge tiles and the key-side row. A row's chunk count is a power of two: shifts, no division.
    const int esize = p.bias_f32 ? 4 : 2;
    const int shift = p.bias_f32 ? __ffs(kBlockN * 4 / 16) - 1 : __ffs(kBlockN * 2 / 16) - 1;
    const int chunks = 1 << shift;  // per row
    for (int c = threadIdx.x; c < kBiasRows * chunks; c += kThreads) {
        const int r = c >> shift, col = (c & (chunks - 1)) * (16 / esize);
        const int i = m0 + r, j = n0 + col;
        unsigned char *dst = sB + r * kBiasPitch + (c & (chunks - 1)) * 16;
        const bool row_in = kBiasRows == 1 || i < p.Lq;
        const unsigned char *src = bias_bh + ((i64)i * p.bias_stride[2] + j) * esize;
        if (row_in && j + 16 / esize <= p.Lk) {
            cp_async16(smem_u32(dst), src, 16);
        } else {  // the row's tail (or no row): copy what exists, zero the rest, read nothing more
            for (int e = 0; e < 16; e++)
                dst[e] = row_in && j + e / esize < p.Lk ? src[e] : 0;
        }
    }
}

// Scores plus bias, in natural units: s = s * scale + bias, one FMA a score (the softmax's ex2
// takes log2(e) in its own FMA, so no stage multiplies by it). kMode picks the
// bias source once per tile, outside the element loops: 0 global (unaligned rows), 1 staged
// fp32, 2 staged q dtype.
template <int kMode>
__device__ __forceinline__ void add_bias(const FwdParams &p, const unsigned char *sB, i64 off,
                                         int m0, int n0, int warp_row0,
                                         float (&s)[kMTiles][kNTiles][4])
{
    const int lane = threadIdx.x % 32;
    const float scale = p.scale;  // read from the parameter bank: no register held for it
    if (kBiasRows == 1 && kMode != 0) {
        // key-side: one value per key, shared by this thread's rows: convert each once
        float kb[kNTiles][2];
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++) {
            const int cc = nt * 8 + 2 * (lane % 4);  // two adjacent keys: one 8- or 4-byte read
            if (kMode == 1) {
                const float2 two = *(const float2 *)(sB + cc * 4);
                kb[nt][0] = two.x;
                kb[nt][1] = two.y;
            } else {
                const u32 two = *(const u32 *)(sB + cc * 2);
                kb[nt][0] = elem_to_float((u16)(two & 0xffffu));
                kb[nt][1] = elem_to_float((u16)(two >> 16));
            }
        }
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    s[mt][nt][e] = fmaf(s[mt][nt][e], scale, kb[nt][e % 2]);
        return;
    }
    if (kMode != 0) {  // staged: this thread's two adjacent keys in one 8- or 4-byte read
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int r = kBiasRows == 1 ? 0 : warp_row0 + mt * 16 + lane / 4 + hf * 8;
#pragma unroll
                for (int nt = 0; nt < kNTiles; nt++) {
                    const int cc = nt * 8 + 2 * (lane % 4);
                    float b0, b1;
                    if (kMode == 1) {
                        const float2 two = *(const float2 *)(sB + r * kBiasPitch + cc * 4);
                        b0 = two.x;
                        b1 = two.y;
                    } else {
                        const u32 two = *(const u32 *)(sB + r * kBiasPitch + cc * 2);
                        b0 = elem_to_float((u16)(two & 0xffffu));
                        b1 = elem_to_float((u16)(two >> 16));
                    }
                    s[mt][nt][2 * hf] = fmaf(s[mt][nt][2 * hf], scale, b0);
                    s[mt][nt][2 * hf + 1] = fmaf(s[mt][nt][2 * hf + 1], scale, b1);
                }
            }
        return;
    }
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = kBiasRows == 1 ? 0 : warp_row0 + mt * 16 + lane / 4 + (e / 2) * 8;
                const int cc = nt * 8 + 2 * (lane % 4) + e % 2;
                const int i = m0 + r, j = n0 + cc;
                const float bv =
                    (kBiasRows == 1 || i < p.Lq) && j < p.Lk
                        ? bias_at(p, off + (kBiasRows == 1 ? 0 : (i64)i * p.bias_stride[2]) + j)
                        : 0.f;
                s[mt][nt][e] = fmaf(s[mt][nt][e], scale, bv);
            }
}]=]

-- The vote: reads the tile's mask entries of this thread's fragment into bits and tells the
-- block whether any entry of the tile is visible (mask, bounds and causal together).
local vote_common = [=[
// A mask byte is true when non-zero. True when none of w's four bytes is zero.
__device__ __forceinline__ bool no_zero_byte(u32 w) { return ((w - 0x01010101u) & ~w & 0x80808080u) == 0; }]=]

local vote = {
  k = [=[
typedef u32 MaskBits;  // bit nt * 2 + c: key n0 + nt * 8 + 2 * (lane % 4) + c
constexpr MaskBits kMaskFull = (MaskBits)((1ull << (2 * kNTiles)) - 1);
// kStaged: read the row from sM, where load_mask_tile put it (zero past Lk).
template <bool kStaged>
__device__ __forceinline__ MaskBits load_mask(const FwdParams &p, const unsigned char *mask_bh,
                                              const unsigned char *sM, int n0, int warp_row0,
                                              int m0, bool &any)
{
    const int lane = threadIdx.x % 32;
    MaskBits bits = 0;
    const unsigned char *row = kStaged ? sM - n0 : mask_bh;  // indexed by the absolute key j
#pragma unroll
    for (int nt = 0; nt < kNTiles; nt++) {
        const int j = n0 + nt * 8 + 2 * (lane % 4);
        unsigned m0b = 0, m1b = 0;
        if (kStaged || (p.mask_pairs && j + 1 < p.Lk)) {  // both keys in one 2-byte load
            const unsigned short two = *(const unsigned short *)(row + j);
            m0b = two & 0xffu;
            m1b = two >> 8;
        } else {
            if (j < p.Lk) m0b = mask_bh[j];
            if (j + 1 < p.Lk) m1b = mask_bh[j + 1];
        }
        bits |= (m0b ? 1u : 0u) << (nt * 2);
        bits |= (m1b ? 1u : 0u) << (nt * 2 + 1);
    }
    // visible to some row of the block: rows < Lq, and (causal) up to the last row's diagonal
    const int last_row = min(m0 + kBlockM, p.Lq) - 1;
    const int j_max = min(p.Lk - 1, $causal_last_key);
    if (n0 + kBlockN - 1 <= j_max) {  // the whole tile is in range: only the mask decides
        any = bits != 0;
        return bits;
    }
    u32 ok = 0;
#pragma unroll
    for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
        for (int c = 0; c < 2; c++)
            if (n0 + nt * 8 + 2 * (lane % 4) + c <= j_max)
                ok |= 1u << (nt * 2 + c);
    any = (bits & ok) != 0;
    (void)warp_row0;
    (void)sM;
    (void)last_row;
    return bits;
}
__device__ __forceinline__ bool mask_bit(MaskBits bits, int mt, int hf, int nt, int c)
{
    return (bits >> (nt * 2 + c)) & 1u;
}

// Every byte of the staged row true. Each warp reads the whole row, so every warp reaches the
// same answer without a barrier.
__device__ __forceinline__ bool mask_tile_full(const unsigned char *sM)
{
    bool full = true;
#pragma unroll
    for (int b = (threadIdx.x % 32) * 4; b < kBlockN; b += 128)
        full &= no_zero_byte(*(const u32 *)(sM + b));
    return __all_sync(0xffffffffu, full);
}
// The first tile at or after n (a multiple of kBlockN from it) with a visible key, n_end if none:
// each thread reads one 16-byte chunk, so one memory round trip covers kScanTiles tiles, and a
// run of all-false tiles costs one round trip per kScanTiles, not one per tile. Rows must be
// 16-byte aligned (p.mask_vec16). Keys from n_end on are visible to no row (bounds, causal).
constexpr int kScanTiles = kThreads * 16 / kBlockN;
__device__ __forceinline__ int scan_visible(const FwdParams &p, const unsigned char *mask_bh, int n,
                                            int n_end, int m0)
{
    __shared__ unsigned ballots[2][kWarps];  // per warp: which lanes saw a visible key
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int round = 0; n < n_end; n += kScanTiles * kBlockN, round ^= 1) {
        const int j = n + threadIdx.x * 16;
        bool vis = false;
        if (j < n_end) {
            if (j + 16 <= n_end) {
                const uint4 w = *(const uint4 *)(mask_bh + j);
                vis = (w.x | w.y | w.z | w.w) != 0;
            } else {
                for (int e = 0; j + e < n_end; e++)
                    vis |= mask_bh[j + e] != 0;
            }
        }
        const unsigned b = __ballot_sync(0xffffffffu, vis);
        if (lane == 0)
            ballots[round][warp] = b;
        __syncthreads();  // (the other round's buffer is free: everyone passed its read)
#pragma unroll
        for (int w = 0; w < kWarps; w++) {
            const unsigned bw = ballots[round][w];
            if (bw)  // the same in every thread: the first visible chunk's tile
                return n + ((w * 32 + __ffs(bw) - 1) * 16 / kBlockN) * kBlockN;
        }
    }
    (void)m0;
    return n_end;
}]=],
  q = [=[
typedef unsigned long long MaskBits;  // bit ((mt * 2 + hf) * kNTiles + nt) * 2 + c
constexpr MaskBits kMaskFull =
    kMTiles * 4 * kNTiles == 64 ? ~0ull : (1ull << (kMTiles * 4 * kNTiles)) - 1;
static_assert(kMTiles * 2 * kNTiles * 2 <= 64, "mask bits fit one register pair");
// kStaged: read the tile from sM, where load_mask_tile put it (zero past Lq and Lk).
template <bool kStaged>
__device__ __forceinline__ MaskBits load_mask(const FwdParams &p, const unsigned char *mask_bh,
                                              const unsigned char *sM, int n0, int warp_row0,
                                              int m0, bool &any)
{
    const int lane = threadIdx.x % 32;
    MaskBits bits = 0;
    bool vis = false;
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int i = m0 + warp_row0 + mt * 16 + lane / 4 + hf * 8;
            if (i >= p.Lq)
                continue;
            // indexed by the absolute key j either way
            const unsigned char *row = kStaged ? sM + (i - m0) * kMaskPitch - n0
                                               : mask_bh + (i64)i * p.mask_stride[2];
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt++) {
                const int j = n0 + nt * 8 + 2 * (lane % 4);
                unsigned m0b = 0, m1b = 0;
                if (kStaged || (p.mask_pairs && j + 1 < p.Lk)) {
                    const unsigned short two = *(const unsigned short *)(row + j);
                    m0b = two & 0xffu;
                    m1b = two >> 8;
                } else {
                    if (j < p.Lk) m0b = row[j];
                    if (j + 1 < p.Lk) m1b = row[j + 1];
                }
                const int bit = ((mt * 2 + hf) * kNTiles + nt) * 2;
                if (m0b) {
                    bits |= 1ull << bit;
                    vis |= $causal_ok0;
                }
                if (m1b) {
                    bits |= 1ull << (bit + 1);
                    vis |= $causal_ok1;
                }
            }
        }
    any = vis;
    return bits;
}
__device__ __forceinline__ bool mask_bit(MaskBits bits, int mt, int hf, int nt, int c)
{
    return (bits >> (((mt * 2 + hf) * kNTiles + nt) * 2 + c)) & 1ull;
}

// Every byte of this thread's chunks of the staged tile true. They are the chunks this thread
// copied (load_mask_tile maps threads to chunks the same way), so after its cp.async wait they
// need no barrier: the block's verdict is the AND at the loop's first barrier.
__device__ __forceinline__ bool mask_chunks_full(const unsigned char *sM)
{
    constexpr int kRowChunks = kBlockN / 16;
    bool full = true;
#pragma unroll
    for (int c = threadIdx.x; c < kBlockM * kRowChunks; c += kThreads) {
        const uint4 w = *(const uint4 *)(sM + (c / kRowChunks) * kMaskPitch + (c % kRowChunks) * 16);
        full &= no_zero_byte(w.x) & no_zero_byte(w.y) & no_zero_byte(w.z) & no_zero_byte(w.w);
    }
    return full;
}
__device__ __forceinline__ bool mask_tile_full(const unsigned char *sM)
{
    return __syncthreads_and(mask_chunks_full(sM));
}
// The first tile at or after n with a visible entry (rows below Lq, keys below Lk, on or left of
// the causal diagonal), n_end if none: every thread reads its 16-byte chunks of kScanTiles tiles
// before the block votes on each, so a run of all-false tiles costs one memory round trip per
// kScanTiles tiles, not one per tile. Rows must be 16-byte aligned (p.mask_vec16).
// One tile per round trip in registers (2 spill where the loop holds S, O and P), so the rounds
// read L2: the tiles kScanAhead ahead are prefetched into it (no registers held), and the scan
// runs at DRAM bandwidth instead of one tile per DRAM latency. Measured (NOTES step 20, L=16384,
// 1/8 of the tiles visible; speed relative to 2 ahead): 1 ahead 0.98x, 3 0.97-0.99x, 4 0.93x,
// 8 0.77-0.80x, 16 0.61x, none 0.89x. A longer reach is slower, not faster: presumably the
// prefetched lines crowd out the ones about to be read (not profiled). 3, not 2: with 2 (and 1)
// ptxas spilled 4-8 bytes in fwd.d128.bf16.mask-q.bias-q.w0.softcap.sm90a.
constexpr int kScanTiles = 1;
constexpr int kScanAhead = 3;
__device__ __forceinline__ void prefetch_l2(const void *ptr)
{
    asm volatile("prefetch.global.L2 [%0];\n" :: "l"(ptr));
}
// Tile n's mask rows into L2: each row's first and last 128-byte line (rows are 16-byte aligned,
// so kBlockN = 128 bytes may straddle two lines).
__device__ __forceinline__ void prefetch_mask_tile(const FwdParams &p, const unsigned char *mask_bh,
                                                   int n, int n_end, int m0)
{
    if (n >= n_end)
        return;
    const int last = min(kBlockN, n_end - n) - 1;
    for (int r = threadIdx.x; r < kBlockM && m0 + r < p.Lq; r += kThreads) {
        const unsigned char *row = mask_bh + (i64)(m0 + r) * p.mask_stride[2] + n;
        prefetch_l2(row);
        prefetch_l2(row + last);
    }
}
__device__ __forceinline__ int scan_visible(const FwdParams &p, const unsigned char *mask_bh, int n,
                                            int n_end, int m0)
{
    constexpr int kRowChunks = kBlockN / 16;
    constexpr int kPer = kBlockM * kRowChunks / kThreads;  // chunks per thread per tile
    static_assert(kBlockM * kRowChunks % kThreads == 0, "whole chunks per thread");
    static_assert(kBlockN <= 128, "a row's tile spans at most two 128-byte lines");
    const int diag = p.Lk - p.Lq;
    (void)diag;
$scan_fast_end
#pragma unroll 1
    for (int a = 1; a < kScanAhead; a++)
        prefetch_mask_tile(p, mask_bh, n + a * kBlockN, n_end, m0);
#pragma unroll 1
    for (; n < n_end; n += kScanTiles * kBlockN) {
        prefetch_mask_tile(p, mask_bh, n + kScanAhead * kBlockN, n_end, m0);
        bool vis[kScanTiles];
$scan_fast_path
#pragma unroll
        for (int g = 0; g < kScanTiles; g++) {
            vis[g] = false;
#pragma unroll
            for (int k = 0; k < kPer; k++) {
                const int c = threadIdx.x + k * kThreads;
                const int i = m0 + c / kRowChunks, j = n + g * kBlockN + (c % kRowChunks) * 16;
                const int j_end = min(n_end, $scan_row_key_end);  // keys from here on: invisible
                if (i >= p.Lq || j >= j_end)
                    continue;
                const unsigned char *src = mask_bh + (i64)i * p.mask_stride[2] + j;
                if (j + 16 <= j_end) {
                    const uint4 w = *(const uint4 *)src;
                    vis[g] |= (w.x | w.y | w.z | w.w) != 0;
                } else {
                    for (int e = 0; j + e < j_end; e++)
                        vis[g] |= src[e] != 0;
                }
            }
        }
#pragma unroll
        for (int g = 0; g < kScanTiles; g++)
            if (__syncthreads_or(vis[g]))
                return n + g * kBlockN;
    }
    return n_end;
}]=],
}

-- The candidate tile's mask (kMaskRows x kBlockN bytes) staged by cp.async with the K of the tile
-- before it, so the vote on it reads shared memory.
local mask_tile = [=[
// Rows must start 16-byte aligned (p.mask_vec16). Interior tiles take the fast path: each thread
// has a fixed (row, chunk) and only steps pointers; edge tiles check every chunk, copy what
// exists and zero the rest.
__device__ __forceinline__ void load_mask_tile(const FwdParams &p, const unsigned char *mask_bh,
                                               int m0, int n0, unsigned char *sM)
{
    constexpr int kRowChunks = kBlockN / 16;
    const bool interior = (kMaskRows == 1 || m0 + kMaskRows <= p.Lq) && n0 + kBlockN <= p.Lk;
    if constexpr (kThreads % kRowChunks == 0 && (kMaskRows * kRowChunks) % kThreads == 0) {
        if (interior) {
            constexpr int kRowStep = kThreads / kRowChunks;
            const int r = threadIdx.x / kRowChunks, col = (threadIdx.x % kRowChunks) * 16;
            const unsigned char *src = mask_bh + (i64)(m0 + r) * p.mask_stride[2] + n0 + col;
            const u32 dst = smem_u32(sM + r * kMaskPitch + col);
#pragma unroll
            for (int k = 0; k < kMaskRows * kRowChunks / kThreads; k++)
                cp_async16(dst + k * kRowStep * kMaskPitch, src + k * kRowStep * p.mask_stride[2],
                           16);
            return;
        }
    }
    for (int c = threadIdx.x; c < kMaskRows * kRowChunks; c += kThreads) {
        const int r = c / kRowChunks, col = (c % kRowChunks) * 16;
        const int i = m0 + r, j = n0 + col;
        const bool row_in = kMaskRows == 1 || i < p.Lq;
        unsigned char *dst = sM + r * kMaskPitch + col;
        const unsigned char *src = mask_bh + (kMaskRows == 1 ? 0 : (i64)i * p.mask_stride[2]) + j;
        if (row_in && j + 16 <= p.Lk) {
            cp_async16(smem_u32(dst), src, 16);
        } else {  // the row's tail (or no row): copy what exists, zero the rest
            for (int e = 0; e < 16; e++)
                dst[e] = row_in && j + e < p.Lk ? src[e] : 0;
        }
    }
}]=]

local next_tile_fn = [=[
// The first tile at or after n whose mask has a visible entry, its bits in *bits; n_end if none.
// Block-uniform: every thread votes, __syncthreads_or decides.
__device__ __forceinline__ int next_tile(const FwdParams &p, const unsigned char *mask_bh, int n,
                                         int n_end, int warp_row0, int m0, MaskBits &bits)
{
    if (p.mask_vec16) {  // many tiles per memory round trip, then this thread's bits of the one
        n = scan_visible(p, mask_bh, n, n_end, m0);
        bool any;
        bits = n < n_end ? load_mask<false>(p, mask_bh, nullptr, n, warp_row0, m0, any) : 0;
        return n;
    }
    for (; n < n_end; n += kBlockN) {
        bool any = false;
        bits = load_mask<false>(p, mask_bh, nullptr, n, warp_row0, m0, any);
        if (__syncthreads_or(any))
            return n;
    }
    bits = 0;  // nothing visible: a pass over n_end masks every score
    return n_end;
}]=]

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
    extern __shared__ __align__(16) unsigned char smem_raw[];
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
    error("unsupported: attn_fwd.lua emits direction fwd, not " .. v.dir, 0)
  end
  if v.window ~= 0 then
    error("unsupported: top-k windows (w" .. v.window .. ") are not built yet", 0)
  end
  if v.varlen then
    error("unsupported: varlen forward is not built yet", 0)
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
  local bias_esize = (v.bias == "q" and row.mma == "wgmma") and 2 or 4
  local bias_pitch = v.bias ~= "none" and row.block_n * bias_esize + 16 or 0
  local bias_smem = 2 * bias_rows * bias_pitch
  local mask_rows = v.mask == "q" and block_m or v.mask == "k" and 1 or 0
  local mask_smem = mask_rows * (row.block_n + 16)
  local smem = engine.smem_align + engine.smem_operands(block_m, row.block_n, d_pad) + bias_smem +
    mask_smem

  local vars = {
    d = v.d, d_pad = d_pad, block_n = row.block_n, warps = row.warps, m_tiles = row.m_tiles,
    entry = entry, bias_rows = bias_rows, bias_pitch = bias_pitch, smem_bytes = smem,
    mask_smem = mask_smem, mask_rows = mask_rows, operand_layout = engine.layout, launch_bounds = engine.launch_bounds,
    async_fence = engine.async_fence,
    smem_base = row.mma == "wgmma" and
      "    unsigned char *smem = smem_raw + (0u - smem_u32(smem_raw)) % kSmemAlign;  // atoms 1024-aligned"
      or "    unsigned char *smem = smem_raw;",
    -- causal: heavy (long) row blocks first, so the tail of the grid is short work
    m_block = v.causal and "gridDim.x - 1 - blockIdx.x" or "blockIdx.x",
    causal_last_key = v.causal and "last_row + p.Lk - p.Lq" or "p.Lk - 1",
    causal_ok0 = v.causal and "(i < p.Lq && j <= i + p.Lk - p.Lq)" or "true",
    causal_ok1 = v.causal and "(i < p.Lq && j + 1 <= i + p.Lk - p.Lq)" or "true",
    scan_row_key_end = v.causal and "i + diag + 1" or "p.Lk",
    -- Row-check-free K/V copies. Per-query-mask variants keep the row checks where the fast
    -- copies made ptxas spill: causal on wgmma (fwd.d128.bf16.mask-q.bias-k.w0.causal.sm90a,
    -- 4 bytes) and every mma.sync one (fwd.d128.bf16.mask-q.bias-q.w0.sm80: 0 -> 108 bytes).
    fast_loads = (v.mask == "q" and (v.causal or row.mma ~= "wgmma")) and "false" or "true",
    -- Interior scan rounds with their loads batched: not in causal variants, where the extra
    -- registers made ptxas spill (fwd.d128.bf16.mask-q.bias-q.w0.causal.sm90a: 12 bytes).
    scan_fast_end = v.causal and "" or
      "    // rounds ending here or before are interior (see below); none when rows run past Lq\n" ..
      "    const int fast_end = m0 + kBlockM <= p.Lq ? n_end : 0;",
    scan_fast_path = v.causal and "" or [=[
        // Interior rounds (every row below Lq, every key below n_end) issue all their loads
        // before using any: one round trip, not one per chunk.
        if (n + kScanTiles * kBlockN <= fast_end) {
            const unsigned char *src = mask_bh + (i64)(m0 + threadIdx.x / kRowChunks) * p.mask_stride[2] +
                                       n + (threadIdx.x % kRowChunks) * 16;
            const i64 step = (i64)(kThreads / kRowChunks) * p.mask_stride[2];  // rows between k
#pragma unroll
            for (int g = 0; g < kScanTiles; g++) {
                uint4 w[kPer];
#pragma unroll
                for (int k = 0; k < kPer; k++)
                    w[k] = *(const uint4 *)(src + k * step + g * kBlockN);
                u32 any = 0;
#pragma unroll
                for (int k = 0; k < kPer; k++)
                    any |= w[k].x | w[k].y | w[k].z | w[k].w;
                vis[g] = any != 0;
            }
        } else]=],
  }
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
  buf.add(params_struct)
  buf.add(constants, vars)
  common.conversions(buf, v.dtype)
  ptx.emit(buf, v.dtype, engine == engines["mma.sync"])  -- ldmatrix, mma.sync: that engine only
  engine.emit_ptx(buf, v.dtype, row.block_n, d_pad)
  buf.add(engine.loads_and_gemms)
  if v.bias ~= "none" then
    buf.add(bias_helpers)
  end
  if v.bias ~= "none" then
    buf.add(bias_tile)
  end
  if v.mask ~= "none" then
    buf.add(vote_common)
    buf.add(vote[v.mask], vars)
    buf.add(mask_tile)
    buf.add(next_tile_fn)
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
