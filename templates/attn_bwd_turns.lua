-- attn_bwd_turns.lua: the deterministic mode's dq sums in a fixed order (the tuning row's knob
-- dq_turns: dense kernels of an engine with dq reductions). The library then runs the default
-- mode's five-product scheme (the keys phase adds each tile pair's dS K to fp32 sums) instead of
-- recomputing S and dP in a rows phase of its own (seven products a tile pair).
--
-- Why the order is fixed: p.dq_turns holds a bit set a query tile of each (b, h) (turn_words
-- 64-bit words, zeroed by phase 0), a bit a warpgroup of each key block that walks the tile, in
-- the sums' order. Key block kb (of kRows keys) adds its share of a tile's dq once the first
-- kb kGroups bits are set, i.e. once every key block before it has passed the tile, and passes it
-- by setting its own (the warpgroups' first threads one each where each adds its own columns:
-- the query ring). Each dq element's fp32 sum then runs over the key blocks in order: the same
-- bits every run. A block passes even the tiles it skips (a query-layout mask's vote, a head none
-- of its keys is visible to), since blocks after it wait for its bits, but without waiting for
-- the blocks before it: it adds nothing to the tile. (A count the blocks added to in order made
-- a skipped tile wait its turn too: at 1/8 of the tile pairs visible, every block then trailed
-- the one before it by a run of skipped tiles, 7.3x the default mode's time, session 27.)
-- Causal, the order is the other way round: a tile's blocks are 0 .. top (a block's first
-- visible tile grows with it), and block kb reaches the tile after block kb + 1 does (it walks
-- 128 / 64 = 2 tiles more before it), so kb adds once the first (top - kb) kGroups bits are set.
-- Ascending, block kb would wait for kb - 1 to pass the tile, which walked 2 tiles more to get
-- there: every block a tile behind the one before it, counted at 2.0x the default mode's time
-- (bench/turns_schedule.py), against 1.02x this way.
-- Under a key-layout mask (the split kernels, attn_bwd_split.lua) phase 0 marks the key blocks
-- some head of the group sees, and kb is a block's rank among the marked ones of its (batch,
-- K/V head): an unmarked block walks nothing and passes nothing, so that it ends at once instead
-- of holding an SM while it passes the turns of every tile (the deterministic walk at 1/8 of
-- the key blocks visible would otherwise last as long as the dense one); causal, a block's place
-- at a tile is the count of marked blocks in (kb, top], counted on by each holder (marked_above).
-- A block waits only on blocks before it in the launch order, which the hardware starts first
-- (as FlashAttention 3's deterministic backward relies on too): key_block_order maps the launch
-- order to key blocks, descending where causal, and interleaves the key blocks of up to 4 K/V
-- heads of a batch (block kb of each, then kb + 1, ...; api/bwd.c picks how many, p.turn_shift):
-- with one head's key blocks in a row, the blocks of a wave that start together each wait a tile
-- more than the one before (the turn passes a tile late, below), 1.19x-1.28x the default mode's
-- time at B 2, H 16, L 4096 in bench/turns_schedule.py; with 4 interleaved 1.05x-1.09x.
-- Cost: a turn is passed once the sums are complete in memory, behind the next tile's first
-- products where the holders issued all of the sums (red_tile_map), else at the next tile's sums
-- (or the walk's end), rather than right after they were issued: no thread waits for the
-- reductions' round trip; block kb + 1 runs a third of a tile to a tile behind block kb where
-- they start together (the interleaved launch order's job; a one-wave grid's blocks all do).
local M = {}

local fns = [=[
// The deterministic mode's dq turns (attn_bwd_turns.lua): a tile's bits at p.dq_turns, kTurnAdd
// of them set by each thread threadIdx.x % kTurnHolder == 0 where those issue the sums
// (red_tile_map); red_tile's (every warp's lanes issue them) by thread 0, the block's kGroups.
constexpr int kTurnAdd = $turn_add;
// The turns are in this kernel (a bwddet key's: the default mode's bwd kernel has none, so that
// their code costs it nothing; the calls below then compile to nothing).
constexpr bool kDqTurns = $on;
constexpr int kTurnHolder = kThreads / kGroups * kTurnAdd;
static_assert(kGroups <= 2, "api/bwd.c sizes the turns' words for 2 bits a key block");

// This call sums dq in turns: the kernel has them and the deterministic call gave their words.
__device__ __forceinline__ bool turns_on(const BwdParams &p)
{
    return kDqTurns && p.dq_turns;
}

// Key blocks of kRows keys a (batch, K/V head): the keys phase's grid x (times 1 << turn_shift
// in the deterministic mode), and the split's marks and tickets a block each.
__device__ __forceinline__ i64 key_blocks(const BwdParams &p)
{
    return (p.Lk + kRows - 1) / kRows;
}

// A query tile's turn: its first word's index at p.dq_turns (-1: no turns, the default mode: sums
// in any order) and its key in the sums' order ($key_doc).
struct DqTurn {
    int at, key;
};

// A turn held: the word at p.dq_turns (-1: none) and the bits its holder sets there once its sums
// are written (placed when it took the turn: a pass computes nothing, no call to marked_above in
// the walk's main path, where one spilled 48-60 bytes).
struct HeldTurn {
    int word;
    u64 bits;
};

// A block's turn state, in shared memory at a fixed address: the walk's registers are at their
// limit (a held turn in a register spilled 4 bytes in bwd.d128.bf16.mask-k.bias-q.w0.causal.sm90a,
// a reference to it 16). held[g]: the turn warpgroup g's first thread holds; rank: the block's
// place in the sums' order, set by dq_turns_start (-1: it passes none).
struct TurnState {
    HeldTurn held[kGroups];
    int rank;$marked_state
};
__shared__ TurnState g_turns;

// This thread's warpgroup's held turn (its holder's: the warpgroup's first thread, or thread 0).
__device__ __forceinline__ HeldTurn &turn_held()
{
    return g_turns.held[threadIdx.x / (kThreads / kGroups)];
}

// The key block (b, hk, n0) this block walks: blockIdx's in the default mode. The deterministic
// mode's launch order (the hardware starts blocks by their linear index, x fastest; a block waits
// only on blocks before it in the sums' order): the host's grid is (key blocks << turn_shift,
// Hkv >> turn_shift, B), x = a key block's place << turn_shift + its K/V head's in the group, so
// that a block's predecessor started 1 << turn_shift blocks before it$order_doc
__device__ __forceinline__ void key_block_order(const BwdParams &p, i64 &b, i64 &hk, i64 &n0)
{
    if (!turns_on(p))
        return;
    const int at = blockIdx.x >> p.turn_shift;  // the key block's place in the order
    hk = ((i64)blockIdx.y << p.turn_shift) + (blockIdx.x & ((1 << p.turn_shift) - 1));
    n0 = (i64)($order_kb) * kRows;
}

// The walk's start: no turn held, the block's place kept (read behind the walk's first barrier).
__device__ __forceinline__ void dq_turns_start(int rank$marks_param)
{
    if (kDqTurns && threadIdx.x % (kThreads / kGroups) == 0) {
        turn_held().word = -1;$marks_start
        if (threadIdx.x == 0) {
            g_turns.rank = rank;$marks_keep
        }
    }
}

// A query tile's 64-bit words of bits: kGroups bits a key block (at most 2: api/bwd.c's size);
// 64-bit, so that 32 key blocks of two warpgroups (4096 keys) are one acquire load a poll.
__device__ __forceinline__ int turn_words(const BwdParams &p)
{
    return (int)((key_blocks(p) * kGroups + 63) / 64);
}

// Query tile m0 of head h, batch b: its first word's index.
__device__ __forceinline__ int dq_turn_at(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    return (int)(((b * p.H + h) * ((p.Lq + kTile - 1) / kTile) + m0 / kTile) * turn_words(p));
}
$order_fns
// Query tile m0 of head h, batch b's turn.
__device__ __forceinline__ DqTurn dq_turn(const BwdParams &p, i64 b, i64 h, i64 m0)
{
    if (!turns_on(p))
        return {-1, 0};
    return {dq_turn_at(p, b, h, m0), $key};
}

// Waits until every key block before this one has passed the tile (the tile's first turn_want
// bits set: whole words first, each seen full once, then the rest of the last); the sums issued
// after are async-proxy writes, ordered after the wait by the proxy fence. A turn that never
// comes (a fault of the order's code, not of a caller's input: the blocks it waits on started
// before this one) traps after 2^26 polls, tens of seconds, rather than hang: the launch fails,
// and the context with it (a trap's error is sticky: the process must make a new one).
__device__ __forceinline__ int dq_turn_wait(const BwdParams &p, DqTurn t)
{
    const u64 *words = (const u64 *)p.dq_turns + t.at;
    const int want = turn_want(t);
    const u64 part = (1ull << (want % 64)) - 1;  // the last word's bits (want % 64 of them)
    int full = 0;                                 // words seen full: bits are only ever set
    for (int polls = 0;; polls++) {
        u64 seen = 0;
        while (full < want / 64) {
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];\n"
                         : "=l"(seen) : "l"(words + full) : "memory");
            if (seen != ~0ull)
                break;
            full++;
        }
        if (full == want / 64) {
            if (part == 0)
                break;
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];\n"
                         : "=l"(seen) : "l"(words + full) : "memory");
            if ((seen & part) == part)
                break;
        }
        if (polls == 1 << 26)
            __trap();
    }
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
    return want;
}

// Bits set at word `word`, after this thread's writes (release).
__device__ __forceinline__ void dq_turn_pass(const BwdParams &p, int word, u64 bits)
{
    asm volatile("red.release.gpu.global.or.b64 [%0], %1;\n"
                 :: "l"((u64 *)p.dq_turns + word), "l"(bits) : "memory");
}

// Tile t's `add` bits from bit `bit` of its words: the word and the bits a pass sets.
__device__ __forceinline__ HeldTurn turn_bits(DqTurn t, int bit, int add)
{
    return {t.at + bit / 64, ((1ull << add) - 1) << (bit % 64)};
}

// Tile t's turn waited for, then held by this thread: `add` bits from the block's first in the
// tile's order (its warpgroup's own where each holder issues its columns' sums, add 1; the
// block's, kGroups, where one thread passes for it).
__device__ __forceinline__ void dq_turn_take(const BwdParams &p, DqTurn t, int add)
{
    const int bit = dq_turn_wait(p, t) + (add == 1 ? (int)(threadIdx.x / (kThreads / kGroups)) : 0);
    turn_held() = turn_bits(t, bit, add);
}

// The turn this holder issued sums for (if any), passed once those are written (its own bulk
// groups complete, not just read).
__device__ __forceinline__ void dq_turn_release(const BwdParams &p)
{
    HeldTurn &held = turn_held();
    if (held.word >= 0) {
        bulk_wait();
        asm volatile("fence.proxy.async.global;\n" ::: "memory");
        dq_turn_pass(p, held.word, held.bits);
        held.word = -1;
    }
}

// The last tile's turn passed behind this tile's first products, a third of a tile sooner than
// at this tile's sums: the block after it waits that much less (a one-wave grid's blocks, which
// all start together, stagger by that much less: bench/turns_schedule.py --lag). The sums were
// issued at the last tile's end; the wait for their writes is most often over by now. Only where
// the holders issued all of them (by_maps: red_tile_map); where a call has no tensor maps,
// red_tile's lanes in every warp issue their own rows' and the turn passes behind its barrier.
__device__ __forceinline__ void dq_turn_release_early(const BwdParams &p, bool by_maps)
{
    if (turns_on(p) && by_maps && threadIdx.x % kTurnHolder == 0)
        dq_turn_release(p);
}

// Query tiles [m_from, m_to) of head h that the block walks without sums (a vote skipped it, or
// the head sees none of the block's keys): passed all the same, by thread 0 (the rank's writer),
// with no wait: the block adds nothing to them, and the blocks after it wait for every bit below
// theirs, whenever it was set. Rank < 0: an unmarked block, which passes none.
__device__ __forceinline__ void dq_turns_skip(const BwdParams &p, i64 b, i64 h, i64 m_from,
                                              i64 m_to)
{
    if (!turns_on(p) || threadIdx.x != 0 || g_turns.rank < 0)
        return;
    for (i64 m0 = m_from; m0 < m_to; m0 += kTile) {
        const DqTurn t = dq_turn(p, b, h, m0);
        const HeldTurn skip = turn_bits(t, turn_want(t), kGroups);
        dq_turn_pass(p, skip.word, skip.bits);
    }
}

// The walk's end: every thread's sums written, then the held turns passed by their holders
// (red_tile's sums are issued by threads other than their holder: the barrier orders them).
__device__ __forceinline__ void dq_turns_end(const BwdParams &p)
{
    if (!turns_on(p))
        return;
    HeldTurn &held = turn_held();
    bulk_wait();
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
    __threadfence();
    __syncthreads();
    if (threadIdx.x % kTurnHolder == 0 && held.word >= 0) {
        dq_turn_pass(p, held.word, held.bits);
        held.word = -1;
    }
}

// A query-layout mask's kernels (no tensor maps: red_tile's lanes in every warp issue a tile's
// sums, and thread 0 holds the block's turn) at a tile the vote skips: the turn held since the
// last visible tile is passed now, not at the next visible tile's sums (a run of skipped tiles
// and a tile later: the block after it waited that much). Every thread waits for its sums'
// writes, then a barrier, then thread 0 passes (dq_turns_end: thread 0 is these kernels' one
// holder, kTurnHolder = kThreads). Uniform: the held turn is read behind the vote's barrier, and
// thread 0 changed it only before one. Visible after visible keeps red_tile's pass, whose wait
// the next tile's products hide (a wait here would be right after the sums' issue).
__device__ __forceinline__ void dq_turn_skip_pass(const BwdParams &p)
{
    if (turns_on(p) && g_turns.held[0].word >= 0)
        dq_turns_end(p);
}
]=]

-- In key order (not causal): a tile's key is the block's rank, the same at every tile.
local ascending = {
  order_doc = ".", order_kb = "at", key = "g_turns.rank",
  key_doc = "the block's rank",
  order_fns = [=[

// The bits set before tile t is this block's turn: its rank's kGroups a block.
__device__ __forceinline__ int turn_want(DqTurn t)
{
    return t.key * kGroups;
}
]=],
}

-- Causal: a tile's key is its highest walking key block, top; the blocks in (kb, top] add first.
local top_fn = [=[

// Causal: the highest key block that walks query tile m0, the first in its order (a block's
// first tile is max(0, n0 - (Lk - Lq)) rounded down to kTile, at most m0 where it walks it); for
// a tile some block walks (the only ones waited on: where Lq > Lk, no block walks the first).
__device__ __forceinline__ int turn_top(const BwdParams &p, i64 m0)
{
    return (int)min((m0 + kTile - 1 + p.Lk - p.Lq) / kRows, key_blocks(p) - 1);
}
]=]

local descending = {
  order_doc = ";\n// causal, in descending key blocks (a tile's sums go from its highest " ..
    "walking block down).",
  order_kb = "key_blocks(p) - 1 - at", key = "turn_top(p, m0)",
  key_doc = "its highest walking key block",
  order_fns = top_fn .. [=[

// The bits set before tile t is this block's turn (rank: its key block): the blocks above it that
// walk the tile, kGroups each.
__device__ __forceinline__ int turn_want(DqTurn t)
{
    return (t.key - g_turns.rank) * kGroups;
}
]=],
}

-- Causal under a key mask's marks: the marked blocks in (kb, top] add first.
local descending_marked = {
  order_doc = descending.order_doc, order_kb = descending.order_kb, key = descending.key,
  key_doc = descending.key_doc,
  marked_state = table.concat({ "",
    "    // causal under a key mask: each holder's count of the marked key blocks in",
    "    // (rank, top[g]] (marked_above), and the (batch, K/V head)'s marks (null: every block",
    "    // passes turns)",
    "    int top[kGroups], above[kGroups];",
    "    const int *marks;" }, "\n"),
  marks_param = ", const int *marks",
  marks_start = table.concat({ "",
    "        g_turns.top[threadIdx.x / (kThreads / kGroups)] = rank;",
    "        g_turns.above[threadIdx.x / (kThreads / kGroups)] = 0;" }, "\n"),
  marks_keep = "\n            g_turns.marks = marks;",
  order_fns = top_fn .. [=[

// The marked key blocks in (rank, top] of the block's (batch, K/V head), which add to a tile
// whose highest walking block is top before this one. Each holder counts on from its last count
// (top grows along a head's walk; the next head's walk starts lower: counted again).
__device__ __noinline__ int marked_above(int top)
{
    const int g = threadIdx.x / (kThreads / kGroups), rank = g_turns.rank;
    if (!g_turns.marks)
        return top - rank;
    int seen = g_turns.top[g], above = g_turns.above[g];
    if (top < seen) {
        seen = rank;
        above = 0;
    }
    for (; seen < top; seen++)
        above += g_turns.marks[seen + 1] != 0;
    g_turns.top[g] = seen;
    g_turns.above[g] = above;
    return above;
}

// The bits set before tile t is this block's turn: the marked blocks above it that walk the tile,
// kGroups each.
__device__ __forceinline__ int turn_want(DqTurn t)
{
    return marked_above(t.key) * kGroups;
}
]=],
}

-- The module's functions: the query ring's holders are its warpgroups' first threads (each adds
-- its own columns, red_map_group), elsewhere thread 0 adds for the block. causal: the sums go
-- down the key blocks; marked: under a key mask's marks (the split kernels); on: the kernel has
-- the turns (else every call compiles to nothing).
function M.fns(common, ring, causal, marked, on)
  local order = causal and (marked and descending_marked or descending) or ascending
  return common.fill(fns, { turn_add = ring and "1" or "kGroups", on = on and "true" or "false",
    marked_state = order.marked_state or "", marks_param = order.marks_param or "",
    marks_start = order.marks_start or "", marks_keep = order.marks_keep or "",
    order_doc = order.order_doc, order_kb = order.order_kb, order_fns = order.order_fns,
    key = order.key, key_doc = order.key_doc })
end

-- The walk's first lines (keys_tile's, before anything reads b, hk or n0).
M.order_line = "key_block_order(p, b, hk, n0);  // the deterministic mode's launch order"
-- A tile's line behind its first products (red_tile_map's kernels).
M.early_line = "dq_turn_release_early(p, maps.tma);  // the last tile's turn, its sums written"

return M
