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
-- ceil(rows * H / kPairs). Every thread reads each split's lse itself (one address for the group:
-- one transaction, from L1 after the first pass): a max pass, then one pass that sums the weights
-- and the weighted o columns together; no shuffles. Measured (ncu, H200, the mixed decode batch,
-- 4096 blocks): with one float4 a thread and the lse merged across the group by shuffles, the
-- kernel was bound by issue (SM 61% busy, memory 25%) at 17 us for 18 MB; four columns a thread
-- share the per-pair work.
local common = require("cuda_common")
local errors = require("errors")
local ptx = require("cuda_ptx")
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

// The pair's lse over every split and acc = sum_s exp(lse_s - lse) o_s over the thread's columns;
// -inf (acc untouched: 0) when every split is empty. The weights are taken against the largest
// lse_s (m), summed with the columns in one pass, and divided out at the end.
//
// The loads of kUnroll splits are written before the first sum, and unconditionally: predicated
// ones, or loads interleaved with the sums, left at most two in flight (SASS under CUDA 13.0). So
// addresses are clamped into the partials (split and column), and what a clamped or an empty
// split's load returns is discarded (an empty split's o_s may be garbage, even NaN). A batch whose
// splits are all empty reads nothing.
__device__ __forceinline__ float combine_pair(const CombineParams &p, i64 pair, int lane,
                                              float4 acc[kPerLane])
{
    const float *lse_part = reinterpret_cast<const float *>(p.lse_part) + pair;
    const float4 *part = reinterpret_cast<const float4 *>(p.o_part) + pair * kChunks;
    const i64 split_step = p.part_stride * kChunks;  // float4s from one split's row to the next
    const int n = p.n_splits;
    float m = -kInf;
#pragma unroll 4
    for (int s = 0; s < n; s++)
        m = fmaxf(m, lse_part[s * p.part_stride]);
    if (m == -kInf)
        return -kInf;  // no visible key in any split: -inf - -inf never reaches expf
    int col[kPerLane];  // the thread's float4 columns (a clamped one's sum is never stored)
#pragma unroll
    for (int c = 0; c < kPerLane; c++)
        col[c] = min(lane + c * kGroup, kChunks - 1);
    float sum = 0.f;
    for (int s0 = 0; s0 < n; s0 += kUnroll) {
        float w[kUnroll];
        bool any = false;
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const float x = s0 + u < n ? lse_part[(s0 + u) * p.part_stride] : -kInf;
            w[u] = x == -kInf ? 0.f : expf(x - m);
            sum += w[u];
            any = any || w[u] != 0.f;
        }
        if (!any)
            continue;
        float4 x[kUnroll][kPerLane];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const float4 *src = part + min(s0 + u, n - 1) * split_step;  // past the end: clamped
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
    const float inv = 1.f / sum;  // sum >= 1: the largest split's weight is exp(0)
#pragma unroll
    for (int c = 0; c < kPerLane; c++) {
        acc[c].x *= inv;
        acc[c].y *= inv;
        acc[c].z *= inv;
        acc[c].w *= inv;
    }
    return m + logf(sum);
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

// blockIdx.x * kPairs + threadIdx.x / kGroup = the pair t * H + h; token t = b * Lq + i.
extern "C" __global__ void __launch_bounds__(kThreads, kMinBlocks)
$entry(const CombineParams p)
{
    $wait
    const int lane = threadIdx.x % kGroup;
    const i64 pair = (i64)blockIdx.x * kPairs + threadIdx.x / kGroup;
    if (pair >= (i64)p.rows * p.H)
        return;
    float4 acc[kPerLane];
#pragma unroll
    for (int c = 0; c < kPerLane; c++)
        acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);  // o = 0 exactly when every split is empty
    const float lse = combine_pair(p, pair, lane, acc);
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
  local griddep = ptx.griddep(v.cc)
  if griddep then  -- launched as the decode grid's programmatic dependent (kernels.h)
    buf.add(griddep)
    buf.add("")
  end
  vars.wait = griddep and "griddep_wait();  // the decode grid's partials: finished and visible"
    or "// launched after the decode grid: its partials are visible"
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
