-- attn_bwd_turns.lua: the deterministic mode's dq sums in a fixed order (the tuning row's knob
-- dq_turns: dense kernels of an engine with dq reductions). The library then runs the default
-- mode's five-product scheme (the keys phase adds each tile pair's dS K to fp32 sums) instead of
-- recomputing S and dP in a rows phase of its own (seven products a tile pair).
--
-- Why the order is fixed: p.dq_turns holds an int32 count a query tile of each (b, h), zeroed by
-- phase 0. Key block kb (of kRows keys) adds its share of a tile's dq once the count reaches
-- kb kGroups, i.e. once every key block before it has passed the tile, and passes it by adding
-- kGroups (the warpgroups' first threads 1 each where each adds its own columns: the query
-- ring). Each dq element's fp32 sum then runs over the key blocks in order: the same bits every
-- run. A block passes even the tiles it skips (a query-layout mask's vote, a head none of its
-- keys is visible to): blocks after it count on it. Causal walks start at a block's first
-- visible tile, which only grows with the block: the blocks that walk a tile are 0 .. some kb.
-- Under a key-layout mask (the split kernels, attn_bwd_split.lua) phase 0 marks the key blocks
-- some head of the group sees, and kb is a block's rank among the marked ones of its (batch,
-- K/V head): an unmarked block walks nothing and passes nothing, so that it ends at once instead
-- of holding an SM while it passes the turns of every tile (the deterministic walk at 1/8 of
-- the key blocks visible would otherwise last as long as the dense one).
-- A block waits only on blocks before it, which the hardware starts first (grid x: key blocks),
-- as FlashAttention 3's deterministic backward relies on too.
-- Cost: a turn is passed once the sums are complete in memory, at the thread's next tile's sums
-- (or the walk's end) rather than right after it issued them: no thread waits for the
-- reductions' round trip; block kb + 1 runs about a tile behind block kb, which costs the first
-- wave its stagger (block kb waits kb tiles before its first sums).
local M = {}

local fns = [=[
// The deterministic mode's dq turns (attn_bwd_turns.lua): a tile's count at p.dq_turns, passed by
// kTurnAdd from each thread threadIdx.x % kTurnHolder == 0 (the threads that issue the sums).
constexpr int kTurnAdd = $turn_add;
constexpr int kTurnHolder = kThreads / kGroups * kTurnAdd;

// A block's turn state, in shared memory at a fixed address: the walk's registers are at their
// limit (a held turn in a register spilled 4 bytes in bwd.d128.bf16.mask-k.bias-q.w0.causal.sm90a,
// a reference to it 16). held[g]: the turn warpgroup g's first thread holds (-1: none); rank: the
// block's (dq_turn), set by dq_turns_start.
struct TurnState {
    int held[kGroups];
    int rank;
};
__shared__ TurnState g_turns;

// This thread's warpgroup's held turn (its holder's: the warpgroup's first thread, or thread 0).
__device__ __forceinline__ int &turn_held()
{
    return g_turns.held[threadIdx.x / (kThreads / kGroups)];
}

// The walk's start: no turn held, the block's rank kept (read behind the walk's first barrier).
__device__ __forceinline__ void dq_turns_start(int rank)
{
    if (threadIdx.x % (kThreads / kGroups) == 0) {
        turn_held() = -1;
        if (threadIdx.x == 0)
            g_turns.rank = rank;
    }
}

// Query tile m0 of head h, batch b: its count's index, and the count at which it is the turn of
// the key block of rank `rank` (the key blocks before it that pass turns: its index, or where
// phase 0 marked them its rank among the marked). at = -1: no turns (the default mode: sums in
// any order).
struct DqTurn {
    int at, want;
};
__device__ __forceinline__ DqTurn dq_turn(const BwdParams &p, i64 b, i64 h, i64 m0, int rank)
{
    if (!p.dq_turns)
        return {-1, 0};
    return {(int)((b * p.H + h) * ((p.Lq + kTile - 1) / kTile) + m0 / kTile), rank * kGroups};
}

// Waits until every key block before this one has passed the tile; the sums issued after are
// async-proxy writes, ordered after the wait by the proxy fence.
__device__ __forceinline__ void dq_turn_wait(const BwdParams &p, DqTurn t)
{
    const int *count = (const int *)p.dq_turns + t.at;
    int seen;
    do
        asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(seen) : "l"(count) : "memory");
    while (seen < t.want);
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
}

// Count `at` passed by `add`, after this thread's writes (release).
__device__ __forceinline__ void dq_turn_pass(const BwdParams &p, int at, int add)
{
    asm volatile("red.release.gpu.global.add.s32 [%0], %1;\n"
                 :: "l"((int *)p.dq_turns + at), "r"(add) : "memory");
}

// The turn this holder issued sums for (held >= 0), passed once those are written (its own bulk
// groups complete, not just read).
__device__ __forceinline__ void dq_turn_release(const BwdParams &p)
{
    int &held = turn_held();
    if (held >= 0) {
        bulk_wait();
        asm volatile("fence.proxy.async.global;\n" ::: "memory");
        dq_turn_pass(p, held, kTurnAdd);
        held = -1;
    }
}

// Query tiles [m_from, m_to) of head h that the block walks without sums (a vote skipped it, or
// the head sees none of the block's keys): passed in turn all the same, by thread 0 (the rank's
// writer). Rank < 0: an unmarked block, which passes none.
__device__ __forceinline__ void dq_turns_skip(const BwdParams &p, i64 b, i64 h, i64 m_from,
                                              i64 m_to)
{
    if (!p.dq_turns || threadIdx.x != 0)
        return;
    const int rank = g_turns.rank;
    if (rank < 0)
        return;
    for (i64 m0 = m_from; m0 < m_to; m0 += kTile) {
        const DqTurn t = dq_turn(p, b, h, m0, rank);
        dq_turn_wait(p, t);
        dq_turn_pass(p, t.at, kGroups);
    }
}

// The walk's end: every thread's sums written, then the held turns passed by their holders
// (red_tile's sums are issued by threads other than their holder: the barrier orders them).
__device__ __forceinline__ void dq_turns_end(const BwdParams &p)
{
    if (!p.dq_turns)
        return;
    int &held = turn_held();
    bulk_wait();
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
    __threadfence();
    __syncthreads();
    if (threadIdx.x % kTurnHolder == 0 && held >= 0) {
        dq_turn_pass(p, held, kTurnAdd);
        held = -1;
    }
}
]=]

-- The module's functions: the query ring's holders are its warpgroups' first threads (each adds
-- its own columns, red_map_group), elsewhere thread 0 adds for the block.
function M.fns(common, ring)
  return common.fill(fns, { turn_add = ring and "1" or "kGroups" })
end

return M
