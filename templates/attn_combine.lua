-- attn_combine.lua: the split-KV combine family, combine.d<D>.<dtype>.sm<NN>: merges the decode
-- path's per-split partial results into o (and lse).
--
-- The decode kernel splits a sequence's keys over n_splits blocks; split s leaves, in fp32,
-- o_s (normalized within the split: sum_j p_j v_j / sum_j p_j) and lse_s (natural log; -inf when
-- the split saw no visible key). For each (row t, head h):
--     lse = log sum_s exp(lse_s),   o = sum_s exp(lse_s - lse) o_s
-- A row whose every split is empty gets o = 0 exactly and lse = +inf (SPEC §2), never NaN. A split
-- with lse_s = -inf adds nothing whatever its o_s holds (garbage, NaN): the decode kernel need not
-- write it.
--
-- Mapping: a group of kGroup threads (a power of two, at most a warp) per (row, head) pair,
-- pair = t * H + h, the partials' own order; each thread sums up to four float4 columns of the
-- pair (kPerLane) over the splits: 16-byte loads, a group reading a split's row in one coalesced
-- sweep. A block of kThreads holds kPairs = kThreads / kGroup pairs (block_m); grid.x =
-- ceil(rows * H / kPairs). With many splits over few pairs (one long row: 85 splits, 32 pairs)
-- p.split_lanes groups share a pair, each taking every split_lanes-th split, and merge their
-- (max, sum, columns) in shared memory: one group walking 85 splits two at a time was 2.5% of
-- the long row's time slower than 32 threads spreading them. Every thread reads each split's lse
-- itself (one address for the group: one transaction, from L1 after the first pass): a max pass,
-- then one pass that sums the weights and the weighted o columns together; no shuffles. Measured (ncu, H200, the mixed decode batch,
-- 4096 blocks): with one float4 a thread and the lse merged across the group by shuffles, the
-- kernel was bound by issue (SM 61% busy, memory 25%) at 17 us for 18 MB; four columns a thread
-- share the per-pair work.
local common = require("cuda_common")
local errors = require("errors")
local kernel_params = require("kernel_params")
local limits = require("limits")

local M = {}

-- Not measured yet (no GPU run of this family): 128 threads fill an SM with blocks on every
-- target (sm86 holds at most 16 blocks: 1536 threads at 128), while staying small enough that a
-- call with few pairs (one long row: 32 pairs) still spreads over several SMs.
local THREADS = 128
-- float4 loads a thread keeps in flight across splits (the unroll of the split loop times
-- kPerLane): the kernel is bound by memory latency when there are few pairs.
local LOADS_IN_FLIGHT = 8
-- Blocks an SM must hold (__launch_bounds__' second argument), i.e. at most 64 registers. With
-- the first argument alone, ptxas aimed at full occupancy: 40 registers, a 4-byte spill (NVRTC
-- 13.0, d128 on sm80; d40 on sm90a) and loads waited on one by one; with 8, no head dim spills
-- (30..63 registers) and d128 keeps its 8 loads in flight (SASS). 8 blocks are 32 warps an SM,
-- 4 KB in flight each: far above an SM's share of bandwidth x latency (~25 KB on an H100).
-- (Measured with one float4 column a thread; with four, kUnroll is 2 splits.)
local MIN_BLOCKS = 8

local constants = [=[
constexpr int kD = $d;  // head_dim: o columns of a (row, head) pair
constexpr int kChunks = kD / 4;  // float4 columns of a partial row
constexpr int kGroup = $group;  // threads per (row, head) pair
constexpr int kPerLane = (kChunks + kGroup - 1) / kGroup;  // float4 columns a thread sums
constexpr int kThreads = $threads;
constexpr int kMinBlocks = $min_blocks;  // blocks an SM holds: at most 64 registers a thread
constexpr int kPairs = kThreads / kGroup;  // (row, head) pairs per block: block_m
constexpr int kUnroll = $unroll;  // splits a thread has loads in flight for
static_assert(kD % 4 == 0, "partial rows move in float4s");
static_assert((kGroup & (kGroup - 1)) == 0 && kGroup <= 32, "a group is a power of two in a warp");
static_assert(kChunks <= kGroup * kPerLane && kThreads % 32 == 0, "every column has a thread");
static_assert(kPerLane <= 4, "at most four float4 sums a thread");]=]

local body = [=[
// 16 bytes of a partial o, read once: cache-streaming, so they leave the caches first.
__device__ __forceinline__ float4 load_part(const float4 *p)
{
    float4 x;
    asm("ld.global.cs.v4.f32 {%0, %1, %2, %3}, [%4];"
        : "=f"(x.x), "=f"(x.y), "=f"(x.z), "=f"(x.w)
        : "l"(p));
    return x;
}

// Over the splits part, part + split_lanes, ... of the pair: m = the largest lse_s (-inf when every
// one is empty: sum and acc stay 0), sum = sum_s exp(lse_s - m) and acc = sum_s exp(lse_s - m) o_s
// over the thread's columns, weights and columns summed in one pass.
//
// The loads of kUnroll splits are written before the first sum, and unconditionally: predicated
// ones, or loads interleaved with the sums, left at most two in flight (SASS under CUDA 13.0). So
// addresses are clamped into the partials (split and column), and what a clamped or an empty
// split's load returns is discarded (an empty split's o_s may be garbage, even NaN). A batch whose
// splits are all empty reads nothing.
__device__ __forceinline__ void combine_pair(const CombineParams &p, i64 pair, int lane, int part,
                                             float &m, float &sum, float4 acc[kPerLane])
{
    const float *lse_part = reinterpret_cast<const float *>(p.lse_part) + pair;
    const float4 *o_part = reinterpret_cast<const float4 *>(p.o_part) + pair * kChunks;
    const i64 split_step = p.part_stride * kChunks;  // float4s from one split's row to the next
    const int n = p.n_splits, step = p.split_lanes;
#pragma unroll 4
    for (int s = part; s < n; s += step)
        m = fmaxf(m, lse_part[s * p.part_stride]);
    if (m == -kInf)
        return;  // no visible key in these splits: -inf - -inf never reaches expf
    int col[kPerLane];  // the thread's float4 columns (a clamped one's sum is never stored)
#pragma unroll
    for (int c = 0; c < kPerLane; c++)
        col[c] = min(lane + c * kGroup, kChunks - 1);
    for (int s0 = part; s0 < n; s0 += kUnroll * step) {
        float w[kUnroll];
        bool any = false;
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int s = s0 + u * step;
            const float x = s < n ? lse_part[s * p.part_stride] : -kInf;
            w[u] = x == -kInf ? 0.f : expf(x - m);
            sum += w[u];
            any = any || w[u] != 0.f;
        }
        if (!any)
            continue;
        float4 x[kUnroll][kPerLane];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const float4 *src = o_part + min(s0 + u * step, n - 1) * split_step;  // clamped
#pragma unroll
            for (int c = 0; c < kPerLane; c++)
                x[u][c] = load_part(src + col[c]);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++)
#pragma unroll
            for (int c = 0; c < kPerLane; c++)
                if (w[u] != 0.f) {
                    acc[c].x += w[u] * x[u][c].x;
                    acc[c].y += w[u] * x[u][c].y;
                    acc[c].z += w[u] * x[u][c].z;
                    acc[c].w += w[u] * x[u][c].w;
                }
    }
}

// Folds the (m, sum, acc) of the split_lanes - 1 groups after this one (the same pair, the same
// columns) into this group's, through shared memory. Every thread of the block must call it.
__device__ __forceinline__ void merge_split_lanes(int lanes, int part, float &m, float &sum,
                                                  float4 acc[kPerLane])
{
    __shared__ float sh_m[kThreads], sh_sum[kThreads];
    __shared__ float4 sh_acc[kPerLane][kThreads];
    sh_m[threadIdx.x] = m;
    sh_sum[threadIdx.x] = sum;
#pragma unroll
    for (int c = 0; c < kPerLane; c++)
        sh_acc[c][threadIdx.x] = acc[c];
    __syncthreads();
    if (part != 0)
        return;
    for (int j = 1; j < lanes; j++) {
        const int t = threadIdx.x + j * kGroup;  // group j of the pair, the same lane
        const float m2 = sh_m[t], mx = fmaxf(m, m2);
        if (mx == -kInf)
            continue;
        const float a = m == -kInf ? 0.f : expf(m - mx), b = m2 == -kInf ? 0.f : expf(m2 - mx);
        sum = sum * a + sh_sum[t] * b;
#pragma unroll
        for (int c = 0; c < kPerLane; c++) {
            const float4 y = sh_acc[c][t];  // b = 0: its columns (0, never loaded) are dropped
            acc[c].x = acc[c].x * a + (b != 0.f ? y.x * b : 0.f);
            acc[c].y = acc[c].y * a + (b != 0.f ? y.y * b : 0.f);
            acc[c].z = acc[c].z * a + (b != 0.f ? y.z * b : 0.f);
            acc[c].w = acc[c].w * a + (b != 0.f ? y.w * b : 0.f);
        }
        m = mx;
    }
}

// The pair's o row: 4 elements (8 bytes) a column, one store each where the row allows it.
__device__ __forceinline__ void store_o(const CombineParams &p, i64 b, i64 i, i64 h, int lane,
                                       const float4 acc[kPerLane])
{
    u16 *o = reinterpret_cast<u16 *>(p.o) + b * p.o_stride[0] + i * p.o_stride[1] +
             h * p.o_stride[2];
    const bool vec = (reinterpret_cast<u64>(o) & 7) == 0;
#pragma unroll
    for (int c = 0; c < kPerLane; c++) {
        const int col = 4 * (lane + c * kGroup);
        if (kChunks % kGroup != 0 && col >= kD)
            continue;
        const u16 e0 = float_to_elem(acc[c].x), e1 = float_to_elem(acc[c].y);
        const u16 e2 = float_to_elem(acc[c].z), e3 = float_to_elem(acc[c].w);
        if (vec) {
            *reinterpret_cast<uint2 *>(o + col) =
                make_uint2(e0 | (u32)e1 << 16, e2 | (u32)e3 << 16);
        } else {
            o[col] = e0;
            o[col + 1] = e1;
            o[col + 2] = e2;
            o[col + 3] = e3;
        }
    }
}

// A block holds kPairs / split_lanes pairs t * H + h (token t = b * Lq + i), split_lanes groups
// of threads each.
extern "C" __global__ void __launch_bounds__(kThreads, kMinBlocks)
$entry(const CombineParams p)
{
    const int lane = threadIdx.x % kGroup, lanes = p.split_lanes;
    const int part = threadIdx.x / kGroup % lanes;  // which of the pair's groups this is
    const i64 pair = (i64)blockIdx.x * (kPairs / lanes) + threadIdx.x / kGroup / lanes;
    const bool valid = pair < (i64)p.rows * p.H;
    float m = -kInf, sum = 0.f;
    float4 acc[kPerLane];
#pragma unroll
    for (int c = 0; c < kPerLane; c++)
        acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);  // o = 0 exactly when every split is empty
    if (valid)
        combine_pair(p, pair, lane, part, m, sum, acc);
    if (lanes > 1)  // the same for the whole block
        merge_split_lanes(lanes, part, m, sum, acc);
    if (!valid || part != 0)
        return;
    const float lse = m == -kInf ? -kInf : m + logf(sum);
    const float inv = m == -kInf ? 0.f : 1.f / sum;  // sum >= 1: the largest split weighs 1
#pragma unroll
    for (int c = 0; c < kPerLane; c++) {
        acc[c].x *= inv;
        acc[c].y *= inv;
        acc[c].z *= inv;
        acc[c].w *= inv;
    }
    const i64 t = pair / p.H, h = pair % p.H;
    const i64 b = t / p.Lq, i = t % p.Lq;
    store_o(p, b, i, h, lane, acc);
    if (p.lse && lane == 0)
        reinterpret_cast<float *>(p.lse)[b * p.lse_stride[0] + h * p.lse_stride[1] +
                                         i * p.lse_stride[2]] = lse == -kInf ? kInf : lse;
}]=]

local function check_variant(v)
  if v.family ~= "combine" then
    errors.unsupported("attn_combine.lua emits the combine family, not " .. tostring(v.family))
  end
  if v.d < limits.head_dim_min or v.d > limits.head_dim_max or v.d % 4 ~= 0 then
    errors.unsupported("head_dim " .. v.d .. " is not a multiple of 4 in the supported range")
  end
end

-- The smallest power of two whose threads cover the row with at most four float4 columns each
-- (kPerLane): 8 threads a pair at D = 128.
local function group_size(chunks)
  local g = 1
  while g * 4 < chunks and g < 32 do
    g = g * 2
  end
  return g
end

function M.emit(v)
  check_variant(v)
  local chunks = v.d // 4
  local group = group_size(chunks)
  local per_lane = (chunks + group - 1) // group
  local vars = {
    d = v.d,
    group = group,
    threads = THREADS,
    min_blocks = MIN_BLOCKS,
    unroll = math.max(1, LOADS_IN_FLIGHT // per_lane),
    entry = common.entry_name(v.key),
  }
  local buf = common.buffer()
  common.header(buf, v, "attn_combine.lua", string.format(
    "%d threads per (row, head), %d pairs per block of %d threads", group, THREADS // group,
    THREADS))
  buf.add(kernel_params.struct("CombineParams"))  -- from the library's layout (kernel_params.h)
  buf.add("")
  buf.add(constants, vars)
  buf.add("")
  common.conversions(buf, v.dtype)
  buf.add("")
  buf.add(body, vars)
  -- block_n: the threads per pair (the family has no key tiles)
  return { source = buf.text(), entry = vars.entry, threads = THREADS, block_m = THREADS // group,
           block_n = group, smem_bytes = 0 }
end

return M
