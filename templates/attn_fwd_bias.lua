-- attn_fwd_bias.lua: the forward family's bias pieces (attn_fwd.lua): one score's bias read from
-- global memory, and a tile's bias (kBiasRows x kBlockN; one row for the key-side layout) staged
-- into shared memory by cp.async and added to the scores. M.text(v) is all of it.
local common = require("cuda_common")

local M = {}

-- Reading one score's bias: from the staged tile (q layout, aligned rows), else from global.
local helpers = [=[
__device__ __forceinline__ float bias_at(const FwdParams &p, i64 off)
{
    if (p.bias_f32)
        return ((const float *)p.bias)[off];
    return elem_to_float(((const u16 *)p.bias)[off]);
}]=]

local tile = [=[
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
$words_loader
__device__ __forceinline__ void load_bias_tile(const FwdParams &p, const unsigned char *bias_bh,
                                               int m0, int n0, unsigned char *sB)
{
    $tile_words
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
// fp32, 2 staged q dtype$mode3_doc.
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
            $key_reads
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
    if constexpr (kMode == 2 && kBiasRows > 1) {
        // staged q dtype: ldmatrix hands out the tile in the accumulator's layout, two 8x8 blocks
        // a load (rows 0-7 and 8-15 of key block nt; lanes 0-15 give the row addresses, 16-byte
        // aligned, 8 rows on 8 bank groups as kBiasPitch is an odd multiple of 16): half the
        // shared loads of one 4-byte read per two keys (x4, two key blocks a load, spilled)
        static_assert(kBiasRows == 1 || kBiasPitch % 32 == 16,  // (a key row: this is not taken)
                      "ldmatrix rows on distinct bank groups");
        const u32 base = smem_u32(sB) + (warp_row0 + lane % 16) * kBiasPitch;
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt++) {
                u32 two[2];
                ldmatrix_x2(base + mt * 16 * kBiasPitch + nt * 16, two[0], two[1]);
#pragma unroll
                for (int e = 0; e < 4; e++) {  // as in s: e / 2 the row half, e % 2 the key
                    const u32 w = two[e / 2];
                    const float b = elem_to_float((u16)(e % 2 ? w >> 16 : w & 0xffffu));
                    s[mt][nt][e] = fmaf(s[mt][nt][e], scale, b);
                }
            }
        return;
    }
    if (kMode == 1) {  // staged fp32 q layout: this thread's two adjacent keys in one 8-byte read
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int r = warp_row0 + mt * 16 + lane / 4 + hf * 8;
#pragma unroll
                for (int nt = 0; nt < kNTiles; nt++) {
                    const int cc = nt * 8 + 2 * (lane % 4);
                    const float2 two = *(const float2 *)(sB + r * kBiasPitch + cc * 4);
                    s[mt][nt][2 * hf] = fmaf(s[mt][nt][2 * hf], scale, two.x);
                    s[mt][nt][2 * hf + 1] = fmaf(s[mt][nt][2 * hf + 1], scale, two.y);
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
                        ? bias_at(p, $bias_index)
                        : 0.f;
                s[mt][nt][e] = fmaf(s[mt][nt][e], scale, bv);
            }
}

// The bias stage of a tile's scores, its source picked once per tile: global (rows not staged),
// staged fp32, staged q dtype.
__device__ __forceinline__ void add_bias_tile(const FwdParams &p, const unsigned char *sB,
                                              bool staged, i64 off, int m0, int n0, int warp_row0,
                                              float (&s)[kMTiles][kNTiles][4])
{
    $staged_row
    if (!staged)
        add_bias<0>(p, sB, off, m0, n0, warp_row0, s);
    else if (p.bias_f32)
        add_bias<1>(p, sB, off, m0, n0, warp_row0, s);$word_mode
    else
        add_bias<2>(p, sB, off, m0, n0, warp_row0, s);
}]=]

-- A varlen key-layout bias (total_k, Hm) steps p.bias_key_stride elements a key; its rows are
-- staged only where that is 1 (the library clears bias_vec16 otherwise), so only the global read
-- needs the stride.
-- Strided varlen keys ((total_k, Hm), Hm > 1; p.bias_words): a tile staged a 4-byte word a key.
local words_loader = [=[
// p.bias_words: the host checked that the base and the key and token steps are multiples of 4
// bytes, so the key's value is at the same place in every word. The tile's kBlockN words (one a
// key, zero past Lk: nothing read there) by cp.async: 16-byte copies would bring Hm keys' worth
// of other heads' values for each of ours. An fp32 word is the value: the staged fp32 layout.
__device__ __forceinline__ void load_bias_words(const FwdParams &p, const unsigned char *bias_bh,
                                                int n0, unsigned char *sB)
{
    const unsigned char *word0 = bias_bh - ((u64)bias_bh & 3);
    const i64 key_bytes = p.bias_key_stride * (p.bias_f32 ? 4 : 2);
    for (int c = threadIdx.x; c < kBlockN; c += kThreads) {
        const int j = n0 + c;
        cp_async4(smem_u32(sB + c * 4), word0 + (j < p.Lk ? j * key_bytes : 0), j < p.Lk ? 4 : 0);
    }
}]=]

-- A tile's two keys of this thread from the staged key-side row: dense rows are 16-byte aligned
-- (one 8- or 4-byte read); a varlen row starts `lead` bytes into its staged copy, at any even
-- byte (one read a key), or is a word a key (strided keys, mode 3).
local key_reads = {
  dense = [=[
if (kMode == 1) {
    const float2 two = *(const float2 *)(sB + cc * 4);
    kb[nt][0] = two.x;
    kb[nt][1] = two.y;
} else {
    const u32 two = *(const u32 *)(sB + cc * 2);
    kb[nt][0] = elem_to_float((u16)(two & 0xffffu));
    kb[nt][1] = elem_to_float((u16)(two >> 16));
}]=],
  -- a row from stage_key_row; $words: the strided varlen words' branch, or nothing
  row = [=[
if (kMode == 1) {
    kb[nt][0] = *(const float *)(sB + cc * 4);
    kb[nt][1] = *(const float *)(sB + cc * 4 + 4);
}$words else {
    kb[nt][0] = elem_to_float(*(const u16 *)(sB + cc * 2));
    kb[nt][1] = elem_to_float(*(const u16 *)(sB + cc * 2 + 2));
}]=],
  words = [=[
 else if (kMode == 3) {  // staged words: the key's 2 bytes at `half` of each
    const int half = (int)(((u64)p.bias + off * 2) & 2) * 8;
    const uint2 two = *(const uint2 *)(sB + cc * 4);
    kb[nt][0] = elem_to_float((u16)(two.x >> half));
    kb[nt][1] = elem_to_float((u16)(two.y >> half));
}]=],
}

-- A key row's tile staged: strided varlen keys a word a key, else from the aligned address
-- before the row; and the readers' start, `lead` bytes into the staged row (words: 0).
local stage_row = [=[
if (p.bias_f32)  // from the aligned address before the row
    stage_key_row<4>(bias_bh, n0, p.Lk, sB);
else
    stage_key_row<2>(bias_bh, n0, p.Lk, sB);
return;]=]
local stage_words = [=[
if (p.bias_words) {  // strided keys: a word a key
    load_bias_words(p, bias_bh, n0, sB);
    return;
}]=]
local row_start = [=[
// the row starts `lead` bytes into its staged copy (stage_key_row)
if (staged$not_words)
    sB += key_row_lead((const unsigned char *)p.bias + off * (p.bias_f32 ? 4 : 2));]=]

function M.text(v)
  local strided = v.varlen and v.bias == "k"
  local pieces = {
    bias_index = strided and "off + (i64)j * p.bias_key_stride" or
      "off + (kBiasRows == 1 ? 0 : (i64)i * p.bias_stride[2]) + j",
    words_loader = strided and words_loader or "",
    tile_words = v.bias == "k" and (strided and stage_words .. "\n" or "") .. stage_row or "",
    staged_row = v.bias == "k" and
      common.fill(row_start, { not_words = strided and " && !p.bias_words" or "" }) or "",
    key_reads = v.bias == "k" and common.fill(key_reads.row, { words = strided and key_reads.words or "" })
      or key_reads.dense,
    word_mode = strided and "\n    else if (p.bias_words)\n" ..
      "        add_bias<3>(p, sB, off, m0, n0, warp_row0, s);" or "",
    mode3_doc = strided and ", 3 staged words (strided keys, q dtype)" or "",
  }
  return helpers .. "\n" .. common.fill(tile, pieces)
end

return M
