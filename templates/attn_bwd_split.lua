-- attn_bwd_split.lua: the key-mask backward's keys phase split across blocks where its busy key
-- blocks would leave most SMs idle in a last wave (the tuning row's knob key_split: dense kernels
-- of an engine with dq reductions, whose default mode runs phase 0 as a memory pass).
--
-- Why: under a key-layout mask a key block no query sees walks nothing, and one that some query
-- sees walks every query tile, so the keys phase is c equal walks on n slots (SMs x blocks an
-- SM): ceil(c / n) walks of time. 138 busy blocks of 128 keys on 132 SMs take two walks for 1.05
-- of work (bench/NOTES.md, issue 16, session 23, item 8). Split in s parts: ceil(c s / n) / s.
-- How: phase 0 marks each key block that a head of its group sees and ranks the marked ones
-- (p.key_split: their count, then a block's rank + 1, then a ticket a block, zeroed by the host
-- before phase 0). The keys phase's grid has kKeyParts blocks a key block (grid z = batch + B
-- part: every part 0 launches first), and each reads the count and picks the part count that
-- finishes first (1 where c <= n or c exceeds the scratch's p.key_split_cap); a part walks its
-- share of each head's query tiles, writes its dk, dv sums to p.key_partials and takes a ticket,
-- and the last to take one adds the sums in part order (the same bits whichever finishes last)
-- and stores dk, dv. No block waits for another: the parts may run in any order.
local common = require("cuda_common")

local M = {}

-- The most parts a key block's walk is split in (a power of two: the parts tried are 2, 4, ...):
-- the grid's blocks a key block, and p.key_partials' slots a marked block (api/bwd.c).
M.parts = 4

local fns = [=[
// The keys phase split across blocks (attn_bwd_split.lua): at most kKeyParts parts a key block.
constexpr int kKeyParts = $parts;

// Phase 0, query block blockIdx.x of head h: key blocks blockIdx.x, + gridDim.x, ... that head
// h sees get their group's mark, the first head to see one also its rank among the marked.
__device__ __forceinline__ void mark_busy_keys(const BwdParams &p, i64 b, i64 h)
{
    int *marks = (int *)p.key_split;  // [0]: marked blocks; [1 + block]: its rank + 1, 0 unseen
    const i64 blocks = key_blocks(p);
    for (i64 jb = blockIdx.x; jb < blocks; jb += gridDim.x) {
        const i64 j = jb * kRows + threadIdx.x;  // kThreads >= kRows: a key a thread
        const bool seen = threadIdx.x < kRows && j < p.Lk && mask_at(p, b, h, 0, j);
        if (__syncthreads_or(seen) && threadIdx.x == 0) {
            int *mark = marks + 1 + (b * p.Hkv + h / p.group) * blocks + jb;
            if (atomicCAS(mark, 0, -1) == 0)  // the group's first head to see it ranks it
                *mark = 1 + atomicAdd(marks, 1);  // read by the next kernel: phase 1
        }
    }
}

// Key block (b, hk, n0)'s index among the (batch, K/V head, key block)s: its mark and ticket.
__device__ __forceinline__ i64 key_block_of(const BwdParams &p, i64 b, i64 hk, i64 n0)
{
    return (b * p.Hkv + hk) * key_blocks(p) + n0 / kRows;
}

// Key block (b, hk, n0) seen by no head of its group (phase 0 left it unmarked: it walks no tile,
// writes zeros); false without marks (p.key_split = 0).
__device__ __forceinline__ bool key_block_idle(const BwdParams &p, i64 b, i64 hk, i64 n0)
{
    return p.key_split && ((const int *)p.key_split)[1 + key_block_of(p, b, hk, n0)] == 0;
}

// The parts key block (b, hk, n0)'s walk is split in, 1 where not: counted in 1 / kKeyParts
// walks, ceil(c s / n) waves of walks of 1 / s, the fewest (ties: fewer parts); c <= n is one wave
// whole, and past p.key_split_cap the scratch has no room. Read where needed (the start, each
// head, the end), not kept: the walk's registers are at their limit.
__device__ __forceinline__ int key_parts_of(const BwdParams &p, i64 b, i64 hk, i64 n0)
{
    if (!p.key_split || turns_on(p))
        return 1;  // the deterministic mode's (its dq turns wait on lower blocks, which parts 1+
                   // are not), or a call's with no scratch for it
    $no_split_with_dbias
    const int *marks = (const int *)p.key_split;
    const int busy = marks[0], slots = p.key_slots;
    if (key_block_idle(p, b, hk, n0) || busy <= slots || busy > p.key_split_cap)
        return 1;  // (unmarked: no head sees the block, part 0 walks nothing)
    int best = (busy + slots - 1) / slots * kKeyParts, parts = 1;
    for (int s = 2; s <= kKeyParts; s *= 2) {
        const int t = (busy * s + slots - 1) / slots * (kKeyParts / s);
        if (t < best) {
            best = t;
            parts = s;
        }
    }
    return parts;
}

// The deterministic mode's dq turns (attn_bwd_turns.lua): the marks of (batch b, K/V head hk)'s
// key blocks (null without marks: p.key_split = 0).
__device__ __forceinline__ const int *dq_turn_marks(const BwdParams &p, i64 b, i64 hk)
{
    return p.key_split ? (const int *)p.key_split + 1 + key_block_of(p, b, hk, 0) : nullptr;
}

// Key block (b, hk, n0)'s place in the sums' order: $rank_doc; -1 where
// unmarked (no head sees it: it passes none). Without marks (p.key_split = 0) its index.
// (not inlined: its loop, inlined at the walk's start, made ptxas spill in the walk)
__device__ __noinline__ int dq_turn_rank(const BwdParams &p, i64 b, i64 hk, i64 n0)
{
    const int kb = (int)(n0 / kRows);
    if (!turns_on(p) || !p.key_split)
        return kb;
    const int *marks = dq_turn_marks(p, b, hk);
$rank_body
}

// acc = the parts' sums of it, from p.key_partials (slots: the block's first slot, this thread's
// first float4 of acc), in part order.
__device__ __forceinline__ void add_parts(const float4 *slots, int parts, float (&acc)[kDT][4])
{
#pragma unroll
    for (int t = 0; t < kDT; t++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[t][e] = 0.f;
    for (int s = 0; s < parts; s++) {  // its own sums re-read too: this thread wrote them
#pragma unroll
        for (int t = 0; t < kDT; t++) {
            const float4 x = __ldcg(slots + (s * 2 * kDT + t) * kThreads);
            acc[t][0] += x.x, acc[t][1] += x.y, acc[t][2] += x.z, acc[t][3] += x.w;
        }
    }
}

// A part at its end: true where dk, dv are the block's to store. Where the block is split, the
// part's sums go to its slot of p.key_partials (the block's rank x kKeyParts + part; a thread's
// float4s kThreads apart: each store coalesced), then it takes a ticket; the last part to take
// one has then added every part's sums in part order into dk, dv (the same bits whichever part
// finishes last).
__device__ __forceinline__ bool sum_parts(const BwdParams &p, i64 b, i64 hk, i64 n0, int part,
                                          float (&dk)[kDT][4], float (&dv)[kDT][4])
{
    const int parts = key_parts_of(p, b, hk, n0);
    if (parts == 1)
        return true;
    const i64 block = key_block_of(p, b, hk, n0);
    int *marks = (int *)p.key_split;
    const i64 rank = marks[1 + block] - 1;
    int *ticket = marks + 1 + p.B * p.Hkv * key_blocks(p) + block;
    float4 *slots = (float4 *)p.key_partials + rank * kKeyParts * 2 * kDT * kThreads + threadIdx.x;
    float4 *own = slots + (i64)part * 2 * kDT * kThreads;
#pragma unroll
    for (int t = 0; t < kDT; t++) {
        own[t * kThreads] = make_float4(dk[t][0], dk[t][1], dk[t][2], dk[t][3]);
        own[(kDT + t) * kThreads] = make_float4(dv[t][0], dv[t][1], dv[t][2], dv[t][3]);
    }
    __threadfence();  // the sums seen device-wide before the ticket says they are there
    __syncthreads();
    int done = 0;
    if (threadIdx.x == 0)
        done = atomicAdd(ticket, 1) + 1;
    if (!__syncthreads_or(done == parts))
        return false;
    __threadfence();  // the other parts' sums, fenced before their tickets
    add_parts(slots, parts, dk);  // dk's, then dv's: 16 loads in flight a thread, not 32
    add_parts(slots + kDT * kThreads, parts, dv);
    return true;
}
]=]

-- The pieces of attn_bwd.lua's keys_tile, entry and memory pass; split = false: the unsplit
-- kernel's (its text as before the split existed). maps_arg: the entry's ", maps" or "".
local own_load = "load_own_tiles(sK, p.k, p.k_stride, sV, p.v, p.v_stride, b, n0, hk, p.Lk);"

local store_lines = table.concat({
  "store_tile(dk, p.dk, p.dk_stride, b, n0, hk, p.Lk, p.scale);",
  "store_tile(dv, p.dv, p.dv_stride, b, n0, hk, p.Lk, 1.f);" }, "\n")

-- An idle block (no head of the group sees it) of a call without dbias stores zeros for dk, dv at
-- once: its walk would read each head's mask and meet a barrier a head, for nothing (at 1/8 of
-- the key blocks busy, 7/8 of the grid's first parts; NOTES issue 16 session 28). Not in the
-- deterministic mode's kernels (bwddet: 4 bytes of spills in mask-k bias-q).
local idle_exit_lines = table.concat({
  "if (!p.dbias && key_block_idle(p, b, hk, n0)) {  // uniform too",
  "    float zero[kDT][4];",
  "    zero_acc(zero);",
  "    store_tile(zero, p.dk, p.dk_stride, b, n0, hk, p.Lk, 1.f);",
  "    store_tile(zero, p.dv, p.dv_stride, b, n0, hk, p.Lk, 1.f);",
  "    return;",
  "}" }, "\n")

-- idle_exit: idle_exit_lines at the walk's start.
function M.pieces(split, causal, key_bias, maps_arg, idle_exit)
  local m_first = causal and
    "max((i64)0, n0 - (p.Lk - p.Lq)) / kTile * kTile;  // causal" or "0;"
  if not split then
    return {
      keys_part_param = "", keys_part_start = "", mark_busy_keys = "",
      keys_m_begin = "const i64 m_begin = " .. m_first,
      keys_store = store_lines, keys_own_load = own_load,
      keys_call = "keys_tile(p" .. maps_arg ..
        ", smem, blockIdx.z, blockIdx.y, (i64)blockIdx.x * kRows)",
    }
  end
  return {
    fns = common.fill(fns, { parts = M.parts,
      rank_doc = causal and "its key block (causal:\n// attn_bwd_turns.lua's marked_above " ..
        "counts the marked blocks above it at each tile)" or "its rank among the\n// marked " ..
        "blocks of its (batch, K/V head), those before it that pass turns",
      rank_body = causal and "    return marks[kb] != 0 ? kb : -1;" or table.concat({
        "    int rank = 0;",
        "    for (int j0 = 0; j0 < kb; j0 += kThreads)  // uniform: the block counts together",
        "        rank += __syncthreads_count(j0 + (int)threadIdx.x < kb && " ..
          "marks[j0 + threadIdx.x] != 0);",
        "    return marks[kb] != 0 ? rank : -1;" }, "\n"),
      no_split_with_dbias = key_bias and table.concat({
        "if (p.dbias)",
        "    return 1;  // its column sums a head's, stored at the head's end: not split" },
        "\n") or "" }),
    keys_part_param = ", int part",
    keys_part_start = table.concat({
      "if (part >= key_parts_of(p, b, hk, n0))",
      "    return;  // the block's walk has fewer parts (a uniform exit: no barrier yet)",
      idle_exit and idle_exit_lines or nil }, "\n"),
    mark_busy_keys = "if (p.key_split)\n    mark_busy_keys(p, b, h);",
    -- a block no head sees (unmarked) walks no tile: its K and V are never read
    keys_own_load = table.concat({
      "if (!key_block_idle(p, b, hk, n0))  // (an idle block walks nothing: stores zeros)",
      "    " .. own_load }, "\n"),
    keys_m_begin = "const i64 m_first = " .. m_first,
    -- the head's walk [m_first, m_last) by the vote, then this part's share of its tiles
    keys_m_end = table.concat({
      "const i64 m_last = __syncthreads_or(km[0] || km[1]) ? p.Lq : m_first;",
      "const int parts = key_parts_of(p, b, hk, n0);  // read again: no register across heads",
      "const i64 tiles = (m_last - m_first + kTile - 1) / kTile;  // part's share: its tiles",
      "const i64 m_begin = m_first + tiles * part / parts * kTile;",
      "const i64 m_end = min(m_last, m_first + tiles * (part + 1) / parts * kTile);" }, "\n"),
    qdbias_skipped = table.concat({
      "if (part == 0 && p.dq_accum && p.dbias_fused)  // rows no part walks (all: none walked)",
      "    zero_dbias_rows<kRows>(p, b, h, 0, m_last > m_first ? m_first : p.Lq, n0);" }, "\n"),
    keys_store = table.concat({
      "if (!sum_parts(p, b, hk, n0, part, dk, dv))",
      "    return;  // a split block's part, not the last to finish: its sums wait for that one",
      store_lines }, "\n"),
    -- parts in z's high values: blockIdx.z = batch + B part (api/bwd.c's grid); the entry's
    -- line is indented 8, its call's arguments 18
    keys_call = "keys_tile(p" .. maps_arg ..
      ", smem, blockIdx.z % p.B, blockIdx.y, (i64)blockIdx.x * kRows,\n" ..
      string.rep(" ", 18) .. "blockIdx.z / p.B)",
  }
end

return M
