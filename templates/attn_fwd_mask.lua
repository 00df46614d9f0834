-- attn_fwd_mask.lua: the forward family's mask pieces (attn_fwd.lua): the vote that gathers a
-- tile's mask bits for this thread's fragment and tells the block whether any entry is visible,
-- the skip scan over runs of all-false tiles (one per layout: `k`, `q`), the staged candidate
-- tile's loader, next_tile, which walks to the next tile with a visible entry, and the choice of
-- the tile after this one from the candidate read ahead. M.text(v, pl) is all of it for a variant.
local common = require("cuda_common")

local M = {}

-- The vote: reads the tile's mask entries of this thread's fragment into bits and tells the
-- block whether any entry of the tile is visible (mask, bounds and causal together).
local vote_common = [=[
// A mask byte is true when non-zero. True when none of w's four bytes is zero.
__device__ __forceinline__ bool no_zero_byte(u32 w)
{
    return ((w - 0x01010101u) & ~w & 0x80808080u) == 0;
}

// Mask bytes j and j + 1 of `row` (indexed by the absolute key), zero past Lk: both in one 2-byte
// load where rows allow it (p.mask_pairs; a staged row always does: it is zero past Lk).
template <bool kStaged>
__device__ __forceinline__ void read_mask_pair(const FwdParams &p, const unsigned char *row, int j,
                                               unsigned &m0b, unsigned &m1b)
{
    m0b = 0;
    m1b = 0;
    if (kStaged || (p.mask_pairs && j + 1 < p.Lk)) {
        const unsigned short two = *(const unsigned short *)(row + j);
        m0b = two & 0xffu;
        m1b = two >> 8;
    } else {
        if (j < p.Lk)
            m0b = row[$key_j];
        if (j + 1 < p.Lk)
            m1b = row[$key_j1];
    }
}]=]

local vote = {
  k = [=[
typedef u32 MaskBits;  // bit nt * 2 + c: key n0 + nt * 8 + 2 * (lane % 4) + c
constexpr MaskBits kMaskFull = (MaskBits)((1ull << (2 * kNTiles)) - 1);
// This thread's bits of the tile at n0 (one key row serves every query row: warp_row0 unused).
// kStaged: read the row from sM, where load_mask_tile put it (zero past Lk), else from mask_bh.
template <bool kStaged>
__device__ __forceinline__ MaskBits load_mask(const FwdParams &p, const unsigned char *mask_bh,
                                              const unsigned char *sM, int n0, int warp_row0,
                                              int m0, bool &any)
{
    const int lane = threadIdx.x % 32;
    MaskBits bits = 0;
    $word_shift
#pragma unroll
    for (int nt = 0; nt < kNTiles; nt++) {
        unsigned m0b, m1b;
        $read_pair
        bits |= (m0b ? 1u : 0u) << (nt * 2);
        bits |= (m1b ? 1u : 0u) << (nt * 2 + 1);
    }
    // visible to some row of the block: rows < Lq, and (causal) up to the last row's diagonal
    $j_max
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
    return bits;
}
__device__ __forceinline__ bool mask_bit(MaskBits bits, int mt, int hf, int nt, int c)
{
    return (bits >> (nt * 2 + c)) & 1u;
}

// The first tile at or after n (a multiple of kBlockN from it) with a visible key, n_end if none:
// each thread reads one 16-byte chunk, so one memory round trip covers kScanTiles tiles, and a
// run of all-false tiles costs one round trip per kScanTiles, not one per tile. Rows must be
// 16-byte aligned (p.mask_vec16). Keys from n_end on are visible to no row (bounds, causal).
constexpr int kScanTiles = kThreads * 16 / kBlockN;
// (m0 unused: the key row is every query row's)
__device__ __forceinline__ int scan_visible(const FwdParams &p, const unsigned char *mask_bh,
                                            int n, int n_end, int m0)
{
    $ballots_decl
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
                unsigned m0b, m1b;
                read_mask_pair<kStaged>(p, row, j, m0b, m1b);
                const int bit = ((mt * 2 + hf) * kNTiles + nt) * 2;
                if (m0b) {
                    bits |= 1ull << bit;
                    $vis0
                }
                if (m1b) {
                    bits |= 1ull << (bit + 1);
                    $vis1
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
        const uint4 w =
            *(const uint4 *)(sM + (c / kRowChunks) * kMaskPitch + (c % kRowChunks) * 16);
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
constexpr int kScanRowChunks = kBlockN / 16;                   // 16-byte chunks of a tile's row
constexpr int kScanPer = kBlockM * kScanRowChunks / kThreads;  // chunks per thread per tile
static_assert(kBlockM * kScanRowChunks % kThreads == 0, "whole chunks per thread");
static_assert(kBlockN <= 128, "a row's tile spans at most two 128-byte lines");
__device__ __forceinline__ void prefetch_l2(const void *ptr)
{
    asm volatile("prefetch.global.L2 [%0];\n" :: "l"(ptr));
}
// Tile n's mask rows into L2: each row's first and last 128-byte line (rows are 16-byte aligned,
// so kBlockN = 128 bytes may straddle two lines).
__device__ __forceinline__ void prefetch_mask_tile(const FwdParams &p,
                                                   const unsigned char *mask_bh, int n, int n_end,
                                                   int m0)
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
// One round of the scan at n, every chunk checked: vis[g] is whether this thread saw a visible
// entry of tile n + g * kBlockN (rows below Lq, keys below n_end$scan_diag_note).
__device__ __forceinline__ void scan_round(const FwdParams &p, const unsigned char *mask_bh, int n,
                                           int n_end, int m0, bool (&vis)[kScanTiles])
{
    $scan_diag
#pragma unroll
    for (int g = 0; g < kScanTiles; g++) {
        vis[g] = false;
#pragma unroll
        for (int k = 0; k < kScanPer; k++) {
            const int c = threadIdx.x + k * kThreads;
            const int i = m0 + c / kScanRowChunks, j = n + g * kBlockN + (c % kScanRowChunks) * 16;
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
}
$scan_round_interior
__device__ __forceinline__ int scan_visible(const FwdParams &p, const unsigned char *mask_bh,
                                            int n, int n_end, int m0)
{
    $scan_fast_end
#pragma unroll 1
    for (int a = 1; a < kScanAhead; a++)
        prefetch_mask_tile(p, mask_bh, n + a * kBlockN, n_end, m0);
#pragma unroll 1
    for (; n < n_end; n += kScanTiles * kBlockN) {
        prefetch_mask_tile(p, mask_bh, n + kScanAhead * kBlockN, n_end, m0);
        bool vis[kScanTiles];
        $scan_round
#pragma unroll
        for (int g = 0; g < kScanTiles; g++)
            if (__syncthreads_or(vis[g]))
                return n + g * kBlockN;
    }
    return n_end;
}]=],
}

-- A varlen key layout whose keys are strided ((total_k, Hm), Hm > 1): a tile staged a 4-byte
-- word a key (p.mask_words), the key's byte at a fixed place in each word.
local words = [=[
// p.mask_words: the host checked that the base and the key and token steps are multiples of 4
// bytes, so the key's byte is at the same place in every word: this bit.
__device__ __forceinline__ int mask_word_shift(const unsigned char *mask_bh)
{
    return (int)((u64)mask_bh & 3) * 8;
}
// The tile's kBlockN words (one a key, zero past Lk: nothing read there) by cp.async: 16-byte
// copies would bring Hm keys' worth of other heads' bytes for each of ours.
__device__ __forceinline__ void load_mask_words(const FwdParams &p, const unsigned char *mask_bh,
                                                int n0, unsigned char *sM)
{
    const unsigned char *word0 = mask_bh - ((u64)mask_bh & 3);
    for (int c = threadIdx.x; c < kBlockN; c += kThreads) {
        const int j = n0 + c;
        cp_async4(smem_u32(sM + c * 4), word0 + (j < p.Lk ? (i64)j * p.mask_key_stride : 0),
                  j < p.Lk ? 4 : 0);
    }
}
// Every key of the staged words visible. Each warp reads the whole row, so every warp reaches
// the same answer without a barrier.
__device__ __forceinline__ bool mask_words_full(const unsigned char *mask_bh,
                                                const unsigned char *sM)
{
    const int shift = mask_word_shift(mask_bh);
    bool full = true;
#pragma unroll
    for (int c = threadIdx.x % 32; c < kBlockN; c += 32)
        full &= ((*(const u32 *)(sM + c * 4) >> shift) & 0xffu) != 0;
    return __all_sync(0xffffffffu, full);
}
]=]

-- A key row with adjacent keys, staged from the aligned address before it (stage_key_row).
local row_full = [=[
// Every key of the staged row visible (adjacent keys: stage_key_row, `lead` bytes in), by each
// warp alone, as mask_words_full does.
__device__ __forceinline__ bool mask_row_full(const unsigned char *mask_bh, const unsigned char *sM)
{
    const unsigned char *row = sM + key_row_lead(mask_bh);
    bool full = true;
#pragma unroll
    for (int c = threadIdx.x % 32; c < kBlockN; c += 32)
        full &= row[c] != 0;
    return __all_sync(0xffffffffu, full);
}
]=]

-- The candidate tile's mask (kMaskRows x kBlockN bytes) staged by cp.async with the K of the tile
-- before it, so the vote on it reads shared memory.
local tile = [=[
// Rows must start 16-byte aligned (p.mask_vec16). Interior tiles take the fast path: each thread
// has a fixed (row, chunk) and only steps pointers; edge tiles check every chunk, copy what
// exists and zero the rest.
__device__ __forceinline__ void load_mask_tile(const FwdParams &p, const unsigned char *mask_bh,
                                               int m0, int n0, unsigned char *sM)
{
    $tile_words
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

local next_tile = [=[
// The first tile at or after n whose mask has a visible entry, its bits in *bits; n_end if none.
// Block-uniform: every thread votes, __syncthreads_or decides.
__device__ __forceinline__ int next_tile(const FwdParams &p, const unsigned char *mask_bh, int n,
                                         int n_end, int warp_row0, int m0, MaskBits &bits)
{
    // many tiles per memory round trip, then this thread's bits of the one
    if ($scan_ok) {
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

-- The tile after this one, from the candidate read ahead (attn_fwd.lua's loop).
local choose_next = [=[
// The candidate (the tile after this one) read before this tile's QK^T: this thread's bits of
// it, and in `any` whether it saw an entry of it visible. Past n_end nothing is visible.
__device__ __forceinline__ MaskBits candidate_bits(const FwdParams &p,
                                                   const unsigned char *mask_bh,
                                                   const unsigned char *sM, int cand, int n_end,
                                                   int warp_row0, int m0, bool &any)
{
    if (cand >= n_end)
        return 0;
    $candidate_return
}

// The tile after this one: the candidate when it is all true (cand_full: block-uniform, a
// barrier's AND or the same row read in every warp) or the block's vote finds it visible, else
// the next visible tile past it; n_end if none. Its bits in `bits`.
__device__ __forceinline__ int next_after(const FwdParams &p, const unsigned char *mask_bh,
                                          int cand, bool cand_full, bool cand_any,
                                          MaskBits cand_bits, int n_end, int warp_row0, int m0,
                                          MaskBits &bits)
{
    if (cand_full) {
        bits = kMaskFull;
        return cand;
    }
    if (cand >= n_end)
        return n_end;
    $cand_vote
        bits = cand_bits;
        return cand;
    }
    return next_tile(p, mask_bh, cand + kBlockN, n_end, warp_row0, m0, bits);
}]=]

-- The per-query scan's batched interior rounds (tuning.lua: scan_batched).
local scan_round_interior = [=[
// An interior round (every row below Lq, every key below n_end) issues all its loads before using
// any: one memory round trip, not one per chunk.
__device__ __forceinline__ void scan_round_interior(const FwdParams &p,
                                                    const unsigned char *mask_bh, int n, int m0,
                                                    bool (&vis)[kScanTiles])
{
    const unsigned char *src = mask_bh +
                               (i64)(m0 + threadIdx.x / kScanRowChunks) * p.mask_stride[2] + n +
                               (threadIdx.x % kScanRowChunks) * 16;
    const i64 step = (i64)(kThreads / kScanRowChunks) * p.mask_stride[2];  // rows between k
#pragma unroll
    for (int g = 0; g < kScanTiles; g++) {
        uint4 w[kScanPer];
#pragma unroll
        for (int k = 0; k < kScanPer; k++)
            w[k] = *(const uint4 *)(src + k * step + g * kBlockN);
        u32 any = 0;
#pragma unroll
        for (int k = 0; k < kScanPer; k++)
            any |= w[k].x | w[k].y | w[k].z | w[k].w;
        vis[g] = any != 0;
    }
}]=]

-- The ballots of the key-mask scan: in the dynamic array where its alignment is declared (a
-- static array would move its base off kAtomBytes), else static (in the dynamic array, ptxas
-- spilled 4 bytes in fwd.d256.bf16.mask-k.bias-q.w0.sm90a).
local ballots_dynamic = [=[
// per warp: which lanes saw a visible key; after the operand tiles, the bias and mask tiles
extern __shared__ __align__(kSmemDeclAlign) unsigned char smem_raw[];
unsigned (*ballots)[kWarps] = (unsigned (*)[kWarps])(smem_raw + kSmemScanAt);]=]
local ballots_static = [=[
__shared__ unsigned ballots[2][kWarps];  // per warp: which lanes saw a visible key]=]

function M.text(v, pl)
  local causal = v.causal
  -- a varlen key-layout mask (total_k, Hm) steps p.mask_key_stride bytes a key; the library
  -- clears mask_pairs and mask_vec16 then, so only the byte reads above see it
  local strided = v.varlen and v.mask == "k"
  local pieces = {
    word_shift = (strided and "const int shift = mask_word_shift(mask_bh);  // p.mask_words\n" or
      "") .. "const int lead = key_row_lead(mask_bh);  // the staged row's first key (stage_key_row)",
    read_pair = (strided and [[
if (kStaged && p.mask_words) {  // the staged words: the key's byte at `shift`
    const uint2 two = *(const uint2 *)(sM + (nt * 8 + 2 * (lane % 4)) * 4);
    m0b = (two.x >> shift) & 0xffu;
    m1b = (two.y >> shift) & 0xffu;
} else ]] or "") .. [[
if (kStaged) {  // the staged row, `lead` bytes in: any alignment, so byte reads
    const unsigned char *b = sM + lead + nt * 8 + 2 * (lane % 4);
    m0b = b[0];
    m1b = b[1];
} else {
    read_mask_pair<false>(p, mask_bh, n0 + nt * 8 + 2 * (lane % 4), m0b, m1b);
}]],
    tile_words = strided and "if (p.mask_words)  // strided keys: a word a key\n" ..
      "    load_mask_words(p, mask_bh, n0, sM);\nelse  // adjacent keys: from the aligned address " ..
      "before the row\n    stage_key_row<1>(mask_bh, n0, p.Lk, sM);\nreturn;" or
      v.mask == "k" and "stage_key_row<1>(mask_bh, n0, p.Lk, sM);  // from the aligned address " ..
      "before the row\nreturn;" or "",
    scan_ok = v.mask == "k" and "p.mask_vec16 && (u64)mask_bh % 16 == 0" or "p.mask_vec16",
    -- a key mask's candidate is one row every warp reads whole: a warp's vote is the block's
    cand_vote = v.mask == "k" and
      "if (__any_sync(0xffffffffu, cand_any)) {  // one key row: every warp's vote is the block's" or
      "if (__syncthreads_or(cand_any)) {",
    candidate_return = strided and [[
const bool staged = p.mask_vec16 || p.mask_words;  // 16-byte rows, or a word a key
return staged ? load_mask<true>(p, mask_bh, sM, cand, warp_row0, m0, any)
              : load_mask<false>(p, mask_bh, sM, cand, warp_row0, m0, any);]] or [[
return p.mask_vec16 ? load_mask<true>(p, mask_bh, sM, cand, warp_row0, m0, any)
                    : load_mask<false>(p, mask_bh, sM, cand, warp_row0, m0, any);]],
    key_j = strided and "(i64)j * p.mask_key_stride" or "j",
    key_j1 = strided and "(i64)(j + 1) * p.mask_key_stride" or "j + 1",
    j_max = causal and "const int last_row = min(m0 + kBlockM, p.Lq) - 1;\n" ..
      "const int j_max = min(p.Lk - 1, last_row + p.Lk - p.Lq);" or "const int j_max = p.Lk - 1;",
    ballots_decl = pl.scan_smem > 0 and ballots_dynamic or ballots_static,
    vis0 = causal and "vis |= i < p.Lq && j <= i + p.Lk - p.Lq;" or "vis = true;",
    vis1 = causal and "vis |= i < p.Lq && j + 1 <= i + p.Lk - p.Lq;" or "vis = true;",
    scan_diag = causal and "const int diag = p.Lk - p.Lq;  // query i sees keys up to i + diag" or "",
    scan_diag_note = causal and ",\n// on or left of the causal diagonal" or "",
    scan_row_key_end = causal and "i + diag + 1" or "p.Lk",
    scan_fast_end = pl.scan_batched and
      "// rounds ending here or before are interior; none when rows run past Lq\n" ..
      "const int fast_end = m0 + kBlockM <= p.Lq ? n_end : 0;" or "",
    scan_round_interior = pl.scan_batched and scan_round_interior or "",
    scan_round = pl.scan_batched and "if (n + kScanTiles * kBlockN <= fast_end)\n" ..
      "    scan_round_interior(p, mask_bh, n, m0, vis);\nelse\n" ..
      "    scan_round(p, mask_bh, n, n_end, m0, vis);" or
      "scan_round(p, mask_bh, n, n_end, m0, vis);",
  }
  local parts = { common.fill(vote_common, pieces) }
  if strided then
    parts[#parts + 1] = words
  end
  if v.mask == "k" then
    parts[#parts + 1] = row_full
  end
  for _, t in ipairs({ common.fill(vote[v.mask], pieces), common.fill(tile, pieces),
      common.fill(next_tile, pieces), common.fill(choose_next, pieces) }) do
    parts[#parts + 1] = t
  end
  return table.concat(parts, "\n")
end

return M
