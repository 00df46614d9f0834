-- window_mask.lua: the top-k window-mask family (SPEC §4), one kernel per variant
-- wmask.w<W>.<dtype>.mask-<l>[.relu][.smooth][.varlen].sm<NN>.
--
-- One block per output row (b, h, i); varlen (dm_window_mask_varlen): one per (query token, head),
-- or per (sequence, head) when every layout is key-based, over the row's own sequence's keys. Each key becomes the order-preserving integer image of its
-- value (NaN above +inf, -0 equal to +0; a masked-out key takes min_value's image), and a radix
-- select finds the W-th largest image without sorting: a histogram of the top digit in shared
-- memory names the bin holding the threshold, the next digit is counted only among keys in that
-- bin, and so on until the threshold T is exact. Keys above T are kept; of the keys equal to T,
-- the first `need` by index are (ties toward the lower key index), ranked by block scans only
-- when equal keys straddle the window edge. A row that fits in shared memory is read from global
-- memory once ("resident"); a longer one is re-read per digit.
--
-- Split rows (few rows, each longer than shared memory: decode rows of 512k keys): the same entry,
-- launched once per stage with p.phase > 0, spreads each row over p.n_slices blocks. Per digit, a
-- count pass has every block histogram its slice into global scratch (one histogram per slice,
-- plain stores: nothing to clear), then a pick pass (one block per row) sums the slices' bins and
-- narrows the row's select state. A write pass then writes every slice in parallel; of the keys
-- equal to T, a slice starts ranking at the count of equal keys in the slices before it (the last
-- digit's bin of T in their histograms), so ties still go to the lowest key indices.
--
-- Varlen rows (.varlen): a row's keys are its sequence's, found through cu_seqlens (clamped to
-- [0, total] and max_seqlen_k as the varlen forward clamps them, so a bad cu_seqlens gives wrong
-- rows, never an access outside the tensors), read with each tensor's key stride (a key-based
-- tensor's keys are a token stride apart). A row of at most `window` keys keeps its mask (SPEC
-- §4's "mask unchanged", per sequence); a query-based out's columns past the row's keys are false.
-- Varlen rows are never split.
local common = require("cuda_common")
local errors = require("errors")
local kernel_params = require("kernel_params")

local M = {}

-- Measured choices (bench/NOTES.md, issue 5). THREADS: the most threads a block is launched with;
-- the host picks 128..THREADS per call (about 32 keys a thread: short per-query rows want small
-- blocks, long key-side rows wide ones). FIRST_BITS: the first digit; wider spreads the
-- histogram (fewer same-bin atomics in a warp: bf16's top bits are mostly exponent) at the cost
-- of more bins to clear and search per row.
local THREADS = 512
local FIRST_BITS = 10
local RESIDENT_BYTES = 64 * 1024 -- keys of one row kept in shared memory

-- The bias element and its order-preserving key, by key width: a key of the same width as the
-- element (sign flipped for positives, all bits for negatives), so a resident key is one Elem.
local key_types = {
  [16] = { elem = "u16", abs = "0x7fffu", sign = "0x8000u", nan = "0xffffu",
           neg = "(~(u32)x & 0xffffu)", pos = "(u32)x | 0x8000u" },
  [32] = { elem = "u32", abs = "0x7fffffffu", sign = "0x80000000u", nan = "0xffffffffu",
           neg = "~x", pos = "x | 0x80000000u" },
}
local inf_bits = { f16 = "0x7c00u", bf16 = "0x7f80u", f32 = "0x7f800000u" }

local order_key = [=[
__device__ __forceinline__ u32 order_key(Elem x)
{
    const u32 a = x & $abs;
    if (a > kInfBits)
        return kNanKey;
    if (a == 0)
        return kZeroKey;  // -0 == +0 as values: they must tie, not rank
    return (x & $sign) ? $neg : ($pos);
}

// The block size is the launch's (a power of two from 128 to kThreads): strides use this.
__device__ __forceinline__ int n_threads() { return (int)blockDim.x; }]=]

local row_struct = [=[
// The row's tensors, located once per block.
struct Row {
    const Elem *bias;
$row_mask_field
    unsigned char *out;
$row_varlen_fields
};]=]

local dense_row_of = [=[
__device__ __forceinline__ Row row_of(const WmaskParams &p, int row)
{
    const i64 i = row % p.n_rows, t = row / p.n_rows, h = t % p.n_heads, b = t / p.n_heads;
    Row r;
    r.bias = reinterpret_cast<const Elem *>(p.bias) + b * p.bias_stride[0] +
             h * p.bias_stride[1] + i * p.bias_stride[2];
$row_mask_init
    r.out = reinterpret_cast<unsigned char *>(p.out) + b * p.out_stride[0] +
            h * p.out_stride[1] + i * p.out_stride[2];
    return r;
}]=]

local varlen_row_fields = [=[
    int n;     // the row's keys: its sequence's, clamped to max_seqlen_k
    int cols;  // out's columns: n, or max_seqlen_k for a query-based out]=]

-- A tensor's element (query token t, head h, key j of the sequence starting at key k0) is at
-- t * stride[0] + h * stride[1] + k0 * stride[2] + j * key_stride: a query-based tensor has
-- stride[2] = 0, a key-based one stride[0] = 0 (api/window_mask_varlen.c).
local varlen_row_of = [=[
// The sequence whose queries hold token t: the last s whose first query is at most t, the
// entries clamped to [0, total_q] as the varlen forward clamps them; -1 when none holds t.
__device__ __forceinline__ int sequence_of_token(const WmaskParams &p, int t)
{
    const int *cu = reinterpret_cast<const int *>(p.cu_seqlens_q);
    int lo = 0, hi = p.n_seqs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (min(max(cu[mid], 0), p.total_q) <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    const int q0 = min(max(cu[lo], 0), p.total_q), q1 = min(max(cu[lo + 1], q0), p.total_q);
    return q0 <= t && t < q1 ? lo : -1;
}

// blockIdx.x = u * n_heads + h: u is a sequence (out key-based) or a query token.
__device__ __forceinline__ Row row_of(const WmaskParams &p, int row)
{
    const int h = row % p.n_heads, u = row / p.n_heads;
    const int s = p.out_by_key ? u : sequence_of_token(p, u), t = p.out_by_key ? 0 : u;
    const int *cu_k = reinterpret_cast<const int *>(p.cu_seqlens_k);
    int k0 = 0, n = 0;
    if (s >= 0) {
        k0 = min(max(cu_k[s], 0), p.total_k);
        n = min(min(max(cu_k[s + 1], k0), p.total_k) - k0, p.max_seqlen_k);
    }
    Row r;
    r.n = n;
    r.cols = p.out_by_key ? n : p.max_seqlen_k;
    r.bias = reinterpret_cast<const Elem *>(p.bias) + t * p.bias_stride[0] +
             h * p.bias_stride[1] + k0 * p.bias_stride[2];
$row_mask_init
    r.out = reinterpret_cast<unsigned char *>(p.out) + t * p.out_stride[0] +
            h * p.out_stride[1] + k0 * p.out_stride[2];
    return r;
}]=]

local key_access = [=[
// b'_j's image: the bias value where the mask is true, min_value's where it is false.
__device__ __forceinline__ u32 global_key(const WmaskParams &p, const Row &r, int j)
{
    u32 k = order_key(r.bias[$bias_j]);
$mask_scalar
    return k;
}

// Keys [8v, 8v + 8) from global memory (p.vec: every row and mask_pad are 8-key aligned).
__device__ __forceinline__ void global_keys8(const WmaskParams &p, const Row &r, int v,
                                             u32 k[kVec])
{
    Elem e[kVec];
#pragma unroll
    for (int c = 0; c < kVec * (int)sizeof(Elem) / 16; c++)
        reinterpret_cast<uint4 *>(e)[c] = reinterpret_cast<const uint4 *>(r.bias + v * kVec)[c];
#pragma unroll
    for (int i = 0; i < kVec; i++)
        k[i] = order_key(e[i]);
$mask_vec
}

template <bool kRes>
__device__ __forceinline__ u32 key_at(const WmaskParams &p, const Row &r, const KeyStore *sk,
                                      int j)
{
    if constexpr (kRes)
        return sk[j];
    else
        return global_key(p, r, j);
}

template <bool kRes>
__device__ __forceinline__ void keys8(const WmaskParams &p, const Row &r, const KeyStore *sk, int v,
                                      u32 k[kVec])
{
    if constexpr (kRes) {
        KeyStore s[kVec];
#pragma unroll
        for (int c = 0; c < kVec * (int)sizeof(KeyStore) / 16; c++)
            reinterpret_cast<uint4 *>(s)[c] = reinterpret_cast<const uint4 *>(sk + v * kVec)[c];
#pragma unroll
        for (int i = 0; i < kVec; i++)
            k[i] = s[i];
    } else {
        global_keys8(p, r, v, k);
    }
}

// Calls f(j, key) once for every key j in [j0, j1) of the row, spread over the block (no order
// promised). j0 is a multiple of kVec (0, or a slice's start).
template <bool kRes, typename F>
__device__ __forceinline__ void each_key(const WmaskParams &p, const Row &r, const KeyStore *sk,
                                         int j0, int j1, F &&f)
{
    int j = j0 + threadIdx.x;
    if (p.vec) {
        const int v1 = j1 / kVec;
        for (int v = j0 / kVec + threadIdx.x; v < v1; v += n_threads()) {
            u32 k[kVec];
            keys8<kRes>(p, r, sk, v, k);
#pragma unroll
            for (int i = 0; i < kVec; i++)
                f(v * kVec + i, k[i]);
        }
        j = v1 * kVec + threadIdx.x;
    }
    for (; j < j1; j += n_threads())
        f(j, key_at<kRes>(p, r, sk, j));
}]=]

local row_mask_field = "    const unsigned char *mask;  // indexed by key - mask_pad"
local row_mask_init = [=[
    r.mask = reinterpret_cast<const unsigned char *>(p.mask) + b * p.mask_stride[0] +
             h * p.mask_stride[1] + i * p.mask_stride[2];]=]
local varlen_row_mask_field = "    const unsigned char *mask;"
local varlen_row_mask_init = [=[
    r.mask = reinterpret_cast<const unsigned char *>(p.mask) + t * p.mask_stride[0] +
             h * p.mask_stride[1] + k0 * p.mask_stride[2];]=]

local mask_scalar = [=[
    if (j >= p.mask_pad && r.mask[j - p.mask_pad] == 0)  // any non-zero byte is true
        k = p.min_key;]=]
local varlen_mask_scalar = [=[
    if (r.mask[(i64)j * p.mask_key_stride] == 0)  // any non-zero byte is true
        k = p.min_key;]=]

local mask_vec = [=[
    if (v * kVec >= p.mask_pad) {  // else all 8 keys sit in the left padding: visible
        const u64 m = *reinterpret_cast<const u64 *>(r.mask + (v * kVec - p.mask_pad));
#pragma unroll
        for (int i = 0; i < kVec; i++)
            if (((m >> (8 * i)) & 0xff) == 0)
                k[i] = p.min_key;
    }]=]

local load_resident = [=[
// The row's keys into shared memory, the only read of global memory for a resident row, with
// the first digit's histogram counted on the way. Ends with a barrier.
__device__ __forceinline__ void load_resident(const WmaskParams &p, const Row &r, KeyStore *sk,
                                              u32 *hist)
{
    for (int b = threadIdx.x; b < kHistBins; b += n_threads())
        hist[b] = 0;
    __syncthreads();
    int j = threadIdx.x;
    if (p.vec) {
        const int nvec = $n_keys / kVec;
        for (int v = threadIdx.x; v < nvec; v += n_threads()) {
            u32 k[kVec];
            KeyStore s[kVec];
            global_keys8(p, r, v, k);
#pragma unroll
            for (int i = 0; i < kVec; i++) {
                s[i] = (KeyStore)k[i];
                atomicAdd(&hist[k[i] >> kFirstShift], 1u);
            }
#pragma unroll
            for (int c = 0; c < kVec * (int)sizeof(KeyStore) / 16; c++)
                reinterpret_cast<uint4 *>(sk + v * kVec)[c] = reinterpret_cast<const uint4 *>(s)[c];
        }
        j += nvec * kVec;
    }
    for (; j < $n_keys; j += n_threads()) {
        const u32 k = global_key(p, r, j);
        sk[j] = (KeyStore)k;
        atomicAdd(&hist[k >> kFirstShift], 1u);
    }
    __syncthreads();
}]=]

local scans = [=[
__device__ __forceinline__ u32 warp_prefix_incl(u32 x)
{
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const u32 y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o)
            x += y;
    }
    return x;
}

__device__ __forceinline__ u32 warp_suffix_incl(u32 x)
{
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const u32 y = __shfl_down_sync(0xffffffffu, x, o);
        if (lane + o < 32)
            x += y;
    }
    return x;
}

// Sum of x over the threads before this one (index order); *total = the block's sum.
// Every thread of the block must call it (it synchronizes).
__device__ __forceinline__ u32 block_prefix_excl(u32 x, u32 *warp_sums, u32 *total)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const u32 incl = warp_prefix_incl(x);
    if (lane == 31)
        warp_sums[warp] = incl;
    __syncthreads();
    u32 before = 0, all = 0;
#pragma unroll
    for (int w = 0; w < n_threads() / 32; w++) {
        const u32 s = warp_sums[w];
        before += w < warp ? s : 0;
        all += s;
    }
    __syncthreads();  // warp_sums is reused by the next scan
    *total = all;
    return before + incl - x;
}

// Sum of x over the threads after this one.
__device__ __forceinline__ u32 block_suffix_excl(u32 x, u32 *warp_sums)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const u32 incl = warp_suffix_incl(x);
    if (lane == 0)
        warp_sums[warp] = incl;
    __syncthreads();
    u32 after = 0;
#pragma unroll
    for (int w = 0; w < n_threads() / 32; w++)
        after += w > warp ? warp_sums[w] : 0;
    __syncthreads();
    return after + incl - x;
}]=]

local select_stages = [=[
struct Sel {
    u32 digit;  // the bin holding the want-th largest key
    u32 above;  // keys in higher bins
    u32 eq;     // keys in that bin
};

// The bin where the count from the top reaches `want`. Each thread sums a contiguous run of bins
// (read in a rotated order: runs start 16 words apart, which would put a warp on 2 banks), a
// block suffix scan places the runs, and the one thread whose run holds the edge walks it.
template <int kBins>
__device__ __forceinline__ void find_bin(const u32 *hist, u32 want, u32 *warp_sums, Sel *sel)
{
    const int per = kBins >= n_threads() ? kBins / n_threads() : 1;
    const int first = threadIdx.x * per;
    u32 local = 0;
    if (first < kBins) {
        for (int i = 0; i < per; i++)
            local += hist[first + (i + threadIdx.x) % per];
    }
    const u32 after = block_suffix_excl(local, warp_sums);
    if (first < kBins && after < want && want <= after + local) {
        u32 acc = after;
        for (int b = first + per - 1; b >= first; b--) {
            const u32 c = hist[b];
            if (acc + c >= want) {
                sel->digit = (u32)b;
                sel->above = acc;
                sel->eq = c;
                break;
            }
            acc += c;
        }
    }
    __syncthreads();
}

// The histogram of one digit: hist[b] = the keys j in [j0, j1) whose higher digits equal pre
// (the bits under pm) and whose digit is b. Ends with a barrier.
template <bool kRes, int kBits, int kShift>
__device__ __forceinline__ void count_digit(const WmaskParams &p, const Row &r, const KeyStore *sk,
                                            int j0, int j1, u32 pre, u32 pm, u32 *hist)
{
    constexpr int kBins = 1 << kBits;
    static_assert(kBins <= kHistBins, "digit fits the histogram");
    for (int b = threadIdx.x; b < kBins; b += n_threads())
        hist[b] = 0;
    __syncthreads();
    each_key<kRes>(p, r, sk, j0, j1, [&](int, u32 k) {
        if ((k & pm) == pre)
            atomicAdd(&hist[(k >> kShift) & (kBins - 1)], 1u);
    });
    __syncthreads();
}

// Narrows the select state to the bin find_bin chose for a digit: the want-th largest key has
// that digit, and `above` keys of higher bins are kept whatever comes next.
template <int kBits, int kShift>
__device__ __forceinline__ void narrow(const Sel *sel, u32 &prefix, u32 &prefix_mask, u32 &want)
{
    prefix |= sel->digit << kShift;
    prefix_mask |= (u32)((1 << kBits) - 1) << kShift;
    want -= sel->above;
}

// One radix digit: histogram the keys whose higher digits equal `prefix`, find the bin of the
// want-th largest, and narrow prefix and want to it.
// kCounted: the histogram was filled while the row was loaded (a resident row's first digit).
template <bool kRes, int kBits, int kShift, bool kCounted>
__device__ __forceinline__ void digit_pass(const WmaskParams &p, const Row &r, const KeyStore *sk,
                                           u32 *hist, u32 *warp_sums, Sel *sel, u32 &prefix,
                                           u32 &prefix_mask, u32 &want)
{
    if constexpr (!kCounted)
        count_digit<kRes, kBits, kShift>(p, r, sk, 0, $n_keys, prefix, prefix_mask, hist);
    find_bin<1 << kBits>(hist, want, warp_sums, sel);
    narrow<kBits, kShift>(sel, prefix, prefix_mask, want);
}

// mask'_j for j in [j0, j1) (j0 a multiple of kVec) = kept and b'_j != min_value. Keys above T
// are kept; keys equal to T are kept while fewer than `need` of them precede in index order,
// `taken` of them before j0. Without ties every equal key is kept and no ranking runs; with
// ties, rounds of the block go in index order, each ranked by a block scan.
template <bool kRes>
__device__ __forceinline__ void write_topk(const WmaskParams &p, const Row &r, const KeyStore *sk,
                                           int j0, int j1, u32 T, u32 need, bool ties, u32 taken,
                                           u32 *warp_sums)
{
    const int v0 = j0 / kVec, v1 = p.vec ? j1 / kVec : v0;
    for (int base = v0; base < v1; base += n_threads()) {
        const int v = base + threadIdx.x;
        u32 k[kVec], c = 0;
        if (v < v1) {
            keys8<kRes>(p, r, sk, v, k);
#pragma unroll
            for (int i = 0; i < kVec; i++)
                c += k[i] == T;
        }
        u32 rank = 0, total = 0;
        if (ties)  // uniform over the block: every thread scans or none does
            rank = taken + block_prefix_excl(c, warp_sums, &total);
        if (v < v1) {
            u64 bits = 0;
#pragma unroll
            for (int i = 0; i < kVec; i++) {
                const bool eq = k[i] == T;
                const bool keep = k[i] > T || (eq && (!ties || rank < need));
                rank += eq;
                bits |= (u64)(keep && k[i] != p.min_key) << (8 * i);
            }
            *reinterpret_cast<u64 *>(r.out + v * kVec) = bits;
        }
        taken += total;
    }
    for (int base = v1 * kVec; base < j1; base += n_threads()) {
        const int j = base + threadIdx.x;
        u32 k = 0, c = 0;
        if (j < j1) {
            k = key_at<kRes>(p, r, sk, j);
            c = k == T;
        }
        u32 rank = 0, total = 0;
        if (ties)
            rank = taken + block_prefix_excl(c, warp_sums, &total);
        if (j < j1)
            r.out[$out_j] =
                (k > T || (c && (!ties || rank < need))) && k != p.min_key;
        taken += total;
    }
}

// The one-block kernel's row: every digit, then mask'.
template <bool kRes>
__device__ __forceinline__ void select_and_write(const WmaskParams &p, const Row &r,
                                                 const KeyStore *sk, u32 *hist, u32 *warp_sums,
                                                 Sel *sel)
{
    u32 prefix = 0, prefix_mask = 0, want = kWindow;  // $long_rows
$passes
    // T == min_key: the equal keys are all fill values and all false, so no ranking is needed.
    write_topk<kRes>(p, r, sk, 0, $n_keys, prefix, want, sel->eq > want && prefix != p.min_key, 0,
                     warp_sums);
}]=]

-- Split rows (p.phase > 0): p.n_slices blocks per row, one launch per stage (api/window_mask.c).
local split_layout = [=[
constexpr int kLastBins = $last_bins;  // the last digit's bins (shift 0): a key's low bits

// scratch: the current digit's histogram of every (row, slice), kHistBins words each (a count pass
// stores all of its digit's bins: nothing needs clearing), then per row the select state
// {prefix, prefix_mask, want, eq} that each pick pass narrows.
__device__ __forceinline__ u32 *split_hist(const WmaskParams &p, int row, int slice)
{
    return reinterpret_cast<u32 *>(p.scratch) + ((i64)row * p.n_slices + slice) * kHistBins;
}

__device__ __forceinline__ u32 *split_state(const WmaskParams &p, int row)
{
    return reinterpret_cast<u32 *>(p.scratch) + (i64)p.split_rows * p.n_slices * kHistBins +
           4 * (i64)row;
}

struct Slice {
    int row, slice;
    int j0, j1;  // its keys [j0, j1): j0 a multiple of kVec, j1 <= Lk
};

__device__ __forceinline__ Slice slice_of(const WmaskParams &p)
{
    Slice s;
    s.row = blockIdx.x / p.n_slices;
    s.slice = blockIdx.x % p.n_slices;
    s.j0 = s.slice * p.slice_keys;
    s.j1 = min(p.Lk, s.j0 + p.slice_keys);
    return s;
}]=]

local split_passes = [=[
// Count pass of one digit: the slice's keys whose higher digits equal the row's prefix, by bin,
// counted in shared memory and stored as the slice's histogram.
template <int kBits, int kShift, bool kFirst>
__device__ __forceinline__ void split_count(const WmaskParams &p, u32 *hist)
{
    constexpr int kBins = 1 << kBits;
    const Slice s = slice_of(p);
    const Row r = row_of(p, s.row);
    u32 pre = 0, pm = 0;  // the first digit counts every key
    if constexpr (!kFirst) {
        const u32 *st = split_state(p, s.row);
        pre = st[0];
        pm = st[1];
    }
    count_digit<false, kBits, kShift>(p, r, nullptr, s.j0, s.j1, pre, pm, hist);
    u32 *g = split_hist(p, s.row, s.slice);
    for (int b = threadIdx.x; b < kBins; b += n_threads())
        g[b] = hist[b];
}

// Pick pass of one digit, one block per row: the slices' histograms summed, the bin of the
// want-th largest found as in the one-block kernel, the row's state narrowed to it.
template <int kBits, int kShift, bool kFirst>
__device__ __forceinline__ void split_pick(const WmaskParams &p, u32 *hist, u32 *warp_sums,
                                           Sel *sel)
{
    constexpr int kBins = 1 << kBits;
    const int row = blockIdx.x;
    u32 *st = split_state(p, row);
    u32 prefix = 0, prefix_mask = 0, want = kWindow;  // Lk > kWindow: the host exits early else
    if constexpr (!kFirst) {
        prefix = st[0];
        prefix_mask = st[1];
        want = st[2];
    }
    for (int b = threadIdx.x; b < kBins; b += n_threads()) {
        u32 c = 0;
        for (int sl = 0; sl < p.n_slices; sl++)
            c += split_hist(p, row, sl)[b];
        hist[b] = c;
    }
    __syncthreads();
    find_bin<kBins>(hist, want, warp_sums, sel);  // ends with a barrier: every read of st is done
    if (threadIdx.x == 0) {
        narrow<kBits, kShift>(sel, prefix, prefix_mask, want);
        st[0] = prefix;
        st[1] = prefix_mask;
        st[2] = want;
        st[3] = sel->eq;
    }
}

// Write pass: the slice's mask'. Of the keys equal to T, the slices before this one hold
// `before` (T's bin in their last-digit histograms), so this slice's ranks start there.
__device__ __forceinline__ void split_write(const WmaskParams &p, u32 *warp_sums)
{
    const Slice s = slice_of(p);
    const Row r = row_of(p, s.row);
    const u32 *st = split_state(p, s.row);
    const u32 T = st[0], need = st[2], eq = st[3];
    // As in select_and_write: T == min_key needs no ranking (those keys are false anyway).
    const bool ties = eq > need && T != p.min_key;
    u32 before = 0;
    if (ties) {  // uniform over the block: every thread scans or none does
        u32 c = 0;
        for (int sl = threadIdx.x; sl < s.slice; sl += n_threads())
            c += split_hist(p, s.row, sl)[T & (kLastBins - 1)];
        block_prefix_excl(c, warp_sums, &before);
    }
    write_topk<false>(p, r, nullptr, s.j0, s.j1, T, need, ties, before, warp_sums);
}]=]

local split_smooth = [=[
// Smoothing pass: warps of every block of the row take the smoothing blocks in turn.
__device__ __forceinline__ void split_smooth(const WmaskParams &p)
{
    const Slice s = slice_of(p);
    const int warps = n_threads() / 32;
    smooth_row(p, row_of(p, s.row), s.slice * warps + threadIdx.x / 32, p.n_slices * warps);
}]=]

local split_switch = [=[
// The split stages in launch order (api/window_mask.c launches p.phase = 1, 2, ...): count and
// pick per digit, most significant first, then write (and smooth).
__device__ __forceinline__ void split_stage(const WmaskParams &p, u32 *hist, u32 *warp_sums,
                                            Sel *sel)
{
    switch (p.phase) {
$split_cases
    }
}]=]

local topk_kernel = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const WmaskParams p)
{
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ u32 warp_sums[kWarps];
    __shared__ Sel sel;
    u32 *hist = reinterpret_cast<u32 *>(smem);
    KeyStore *sk = reinterpret_cast<KeyStore *>(smem + kHistBytes);
    if (p.phase != 0) {  // uniform: the whole grid runs one stage of split rows
        split_stage(p, hist, warp_sums, &sel);
        return;
    }
    const Row r = row_of(p, blockIdx.x);
    if (p.resident) {
        load_resident(p, r, sk, hist);
        select_and_write<true>(p, r, sk, hist, warp_sums, &sel);
    } else {
        select_and_write<false>(p, r, sk, hist, warp_sums, &sel);
    }
$smooth
}]=]

-- Varlen rows: the tail of a query-based out row, and rows the window keeps whole.
local varlen_rows = [=[
// Columns past the row's keys (a query-based out has max_seqlen_k of them): false, so the
// forward never sees a key outside the query's sequence.
__device__ __forceinline__ void clear_tail(const WmaskParams &p, const Row &r)
{
    for (int j = r.n + threadIdx.x; j < r.cols; j += n_threads())
        r.out[$out_j] = 0;
}

// A row of at most `window` keys: the window keeps every key, so mask' is the mask (SPEC §4's
// "mask unchanged", per sequence; no smoothing).
__device__ __forceinline__ void copy_row(const WmaskParams &p, const Row &r)
{
    for (int j = threadIdx.x; j < r.n; j += n_threads())
        r.out[$out_j] = $copy_value;
}]=]

local varlen_topk_kernel = [=[
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const WmaskParams p)
{
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ u32 warp_sums[kWarps];
    __shared__ Sel sel;
    u32 *hist = reinterpret_cast<u32 *>(smem);
    KeyStore *sk = reinterpret_cast<KeyStore *>(smem + kHistBytes);
    const Row r = row_of(p, blockIdx.x);
    clear_tail(p, r);
    if (r.n <= (int)kWindow) {  // uniform over the block
        copy_row(p, r);
        return;
    }
    if (p.resident) {  // the host sizes shared memory for max_seqlen_k keys
        load_resident(p, r, sk, hist);
        select_and_write<true>(p, r, sk, hist, warp_sums, &sel);
    } else {
        select_and_write<false>(p, r, sk, hist, warp_sums, &sel);
    }
$smooth
}]=]

local varlen_relu_kernel = [=[
// relu selection: mask'_j = b'_j > 0 (NaN is not > 0) on rows longer than the window. No shared
// memory.
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const WmaskParams p)
{
    const Row r = row_of(p, blockIdx.x);
    clear_tail(p, r);
    if (r.n <= p.window) {  // uniform over the block
        copy_row(p, r);
        return;
    }
    each_key<false>(p, r, nullptr, 0, $n_keys, [&](int j, u32 k) {
        r.out[$out_j] = k > kZeroKey && k != kNanKey;
    });
$smooth
}]=]

local relu_kernel = [=[
// relu selection: mask'_j = b'_j > 0 (NaN is not > 0). No window, no shared memory.
extern "C" __global__ void __launch_bounds__(kThreads)
$entry(const WmaskParams p)
{
    const Row r = row_of(p, blockIdx.x);
    each_key<false>(p, r, nullptr, 0, $n_keys, [&](int j, u32 k) {
        r.out[$out_j] = k > kZeroKey && k != kNanKey;
    });
$smooth
}]=]

-- Majority vote over aligned blocks of block_size keys (the tail block over its own length):
-- a block is all true when more than half its keys are, else all false. Each smoothing block is
-- one warp's: it reads back mask' written before a barrier (one-block kernels) or by an earlier
-- launch (split rows).
local smooth_fn = [=[
// Warp `warp` of `n_warps` over the row votes smoothing blocks warp, warp + n_warps, ...
__device__ __forceinline__ void smooth_row(const WmaskParams &p, const Row &r, int warp,
                                           int n_warps)
{
    const int lane = threadIdx.x % 32;
    const int n_blocks = ($n_keys + p.block_size - 1) / p.block_size;
    for (int blk = warp; blk < n_blocks; blk += n_warps) {
        const int j0 = blk * p.block_size, len = min(p.block_size, $n_keys - j0);
        int c = 0;
        for (int j = j0 + lane; j < j0 + len; j += 32)
            c += r.out[$out_j] != 0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            c += __shfl_xor_sync(0xffffffffu, c, o);
        const unsigned char keep = 2 * c > len;
        for (int j = j0 + lane; j < j0 + len; j += 32)
            r.out[$out_j] = keep;
    }
}]=]

local smooth_stage = [=[
    __syncthreads();
    smooth_row(p, r, threadIdx.x / 32, n_threads() / 32);]=]

-- The radix digits, most significant first: FIRST_BITS, then what is left in digits of at most
-- FIRST_BITS bits.
local function digits(key_bits)
  local list, left = {}, key_bits
  while left > 0 do
    local bits = math.min(FIRST_BITS, left)
    left = left - bits
    list[#list + 1] = { bits = bits, shift = left }
  end
  assert(list[#list].shift == 0, "the last digit is the key's low bits")
  return list
end

local function check_variant(v)
  if v.family ~= "wmask" then
    errors.unsupported("window_mask.lua emits wmask variants, not " .. v.key)
  end
  if v.dtype ~= "f16" and v.dtype ~= "bf16" and v.dtype ~= "f32" then
    errors.unsupported("bias dtype " .. tostring(v.dtype))
  end
  if v.relu ~= (v.window == 0) then
    errors.unsupported("relu variants have w0 and top-k variants w >= 1 (" .. v.key .. ")")
  end
end

-- Lines of declarations with their comments in one column, two spaces past the longest code
-- that has one. rows: { code, comment or nil }.
local function aligned(rows)
  local width = 0
  for _, row in ipairs(rows) do
    if row[2] then width = math.max(width, #row[1]) end
  end
  local lines = {}
  for _, row in ipairs(rows) do
    lines[#lines + 1] = row[2] and row[1] .. string.rep(" ", width + 2 - #row[1]) .. "// " .. row[2]
      or row[1]
  end
  return table.concat(lines, "\n")
end

-- The split stages in launch order: a count and a pick pass per digit, then write (and smooth).
-- Their number is what the launcher runs (the emitter returns it), and the switch over p.phase
-- is written from the same list.
local function split_stage_calls(list, smooth)
  local calls = {}
  for i, d in ipairs(list) do
    local args = string.format("%d, %d, %s", d.bits, d.shift, i == 1 and "true" or "false")
    calls[#calls + 1] = string.format("split_count<%s>(p, hist)", args)
    calls[#calls + 1] = string.format("split_pick<%s>(p, hist, warp_sums, sel)", args)
  end
  calls[#calls + 1] = "split_write(p, warp_sums)"
  if smooth then
    calls[#calls + 1] = "split_smooth(p)"
  end
  return calls
end

function M.emit(v)
  check_variant(v)
  local key_bits = v.dtype == "f32" and 32 or 16
  local key_bytes = key_bits // 8
  local list = digits(key_bits)
  local max_resident = v.relu and 0 or RESIDENT_BYTES // key_bytes
  local hist_bins = 1 << FIRST_BITS
  local smem_bytes = v.relu and 0 or hist_bins * 4 + max_resident * key_bytes
  local stages = (v.relu or v.varlen) and {} or split_stage_calls(list, v.smooth)

  local masked = v.mask ~= "none"
  local vars = {
    entry = common.entry_name(v.key),
    row_mask_field = masked and (v.varlen and varlen_row_mask_field or row_mask_field) or "",
    row_mask_init = masked and (v.varlen and varlen_row_mask_init or row_mask_init) or "",
    row_varlen_fields = v.varlen and varlen_row_fields or "",
    mask_scalar = masked and (v.varlen and varlen_mask_scalar or mask_scalar) or "",
    mask_vec = masked and mask_vec or "",
    smooth = v.smooth and smooth_stage or "",
    -- a row's keys, and the offsets of key j in bias and out: varlen rows have their own length
    -- and step by each tensor's key stride (p.vec, the 8-key steps, only where it is 1)
    n_keys = v.varlen and "r.n" or "p.Lk",
    bias_j = v.varlen and "(i64)j * p.bias_key_stride" or "j",
    out_j = v.varlen and "(i64)j * p.out_key_stride" or "j",
    copy_value = masked and "r.mask[(i64)j * p.mask_key_stride] != 0" or "1",
    long_rows = v.varlen and "r.n > kWindow: shorter rows copy the mask" or
      "Lk > kWindow: the host exits early else",
  }
  local key_type = key_types[key_bits]
  vars.abs, vars.sign, vars.neg, vars.pos = key_type.abs, key_type.sign, key_type.neg, key_type.pos

  local buf = common.buffer()
  common.header(buf, v, "window_mask.lua", (v.relu and
    string.format("relu selection, up to %d threads", THREADS) or
    string.format("top-%d radix select, up to %d threads", v.window, THREADS)) ..
    (v.varlen and ", varlen rows" or ""))
  -- Sections one blank line apart (common.fill leaves out a line holding only a $name that
  -- is "", so a feature that is off leaves no line behind).
  local first = true
  local function add(text, with)
    if not first then
      buf.add("")
    end
    first = false
    buf.add(text, with)
  end

  add(kernel_params.struct("WmaskParams"))  -- from the library's layout (gen/kernel_params.h)
  local consts = {
    { "typedef " .. key_type.elem .. " Elem;", "the bias element" },
    { "typedef Elem KeyStore;", "a key in shared memory: as wide as Elem" },
    { "constexpr u32 kInfBits = " .. inf_bits[v.dtype] .. ";" },
    { "constexpr u32 kNanKey = " .. key_type.nan .. ";",
      "NaN ranks above every number, as in torch.topk" },
    { "constexpr u32 kZeroKey = " .. key_type.sign .. ";", "the image of +0 (and of -0)" },
  }
  if not v.relu then
    consts[#consts + 1] = { "constexpr u32 kWindow = " .. v.window .. "u;", "keys kept per row" }
  end
  consts[#consts + 1] = { "constexpr int kThreads = " .. THREADS .. ";",
    "the most a block is launched with (blockDim.x <= this)" }
  consts[#consts + 1] = { "constexpr int kVec = 8;",
    "keys per vector step: 16 bytes of 16-bit bias" }
  if not v.relu then
    consts[#consts + 1] = { "constexpr int kWarps = kThreads / 32;" }
    consts[#consts + 1] = { "constexpr int kHistBins = " .. hist_bins .. ";",
      "the widest digit's bins" }
    consts[#consts + 1] = { "constexpr int kHistBytes = kHistBins * 4;" }
    consts[#consts + 1] = { "constexpr int kMaxResident = " .. max_resident .. ";",
      "keys of a row kept in shared memory" }
    consts[#consts + 1] = { "constexpr int kFirstShift = " .. (key_bits - FIRST_BITS) .. ";",
      "the first digit is key >> kFirstShift" }
  end
  consts[#consts + 1] = { 'static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");' }
  if not v.relu then
    consts[#consts + 1] = { 'static_assert((kHistBins & (kHistBins - 1)) == 0, ' ..
      '"bins split evenly over 128..kThreads threads");' }
    consts[#consts + 1] = { "static_assert(" .. smem_bytes .. " == kHistBytes + kMaxResident * " ..
      '(int)sizeof(KeyStore), "smem from Lua");' }
  end
  add(aligned(consts) .. "\n\n" .. order_key, vars)
  add(row_struct .. "\n\n" .. (v.varlen and varlen_row_of or dense_row_of) .. "\n\n" .. key_access,
    vars)
  if v.smooth then
    add(smooth_fn, vars)
  end
  if v.varlen then
    add(varlen_rows, vars)
  end
  if v.relu then
    add(v.varlen and varlen_relu_kernel or relu_kernel, vars)
  else
    local passes, cases = {}, {}
    for i, d in ipairs(list) do
      passes[i] = string.format("    digit_pass<kRes, %d, %d, %s>(p, r, sk, hist, warp_sums, " ..
        "sel, prefix, prefix_mask, want);", d.bits, d.shift, i == 1 and "kRes" or "false")
    end
    for i, call in ipairs(stages) do
      cases[i] = string.format("    case %d: %s; break;", i, call)
    end
    add(load_resident, vars)
    add(scans)
    vars.passes = table.concat(passes, "\n")
    add(select_stages, vars)
    if v.varlen then  -- rows are never split
      add(varlen_topk_kernel, vars)
    else
      add(split_layout, { last_bins = 1 << list[#list].bits })
      add(split_passes)
      if v.smooth then
        add(split_smooth)
      end
      add(split_switch, { split_cases = table.concat(cases, "\n") })
      add(topk_kernel, vars)
    end
  end
  return {
    source = buf.text(),
    entry = vars.entry,
    threads = THREADS,
    block_m = 1,
    block_n = max_resident,
    smem_bytes = smem_bytes,
    split_stages = #stages,
    split_digit_stages = #stages > 0 and 2 * #list or 0,
  }
end

return M
