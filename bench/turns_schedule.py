#!/usr/bin/env python3
"""turns_schedule.py: a schedule model of the deterministic backward's keys phase (dq turns,
templates/attn_bwd_turns.lua) against the default mode's, no GPU needed.

What it models. Each block of the keys phase walks the query tiles of one key block (kRows = 128
keys, tiles of 64 queries); a tile costs one unit, a block's start and end (K, V in; dk, dv out)
F units together. Blocks start in launch order on `slots` SMs (one block an SM: the d128 kernels'
shared memory), the next one where a block ends. The default mode adds dq in any order. The
deterministic mode adds a tile's dq once the block before it in the tile's order has passed the
tile, which a block does at its next tile's sums (one tile later; --lag: that long after its own
sums, where sooner) or at its walk's end. Orders:
ascending key blocks (kb waits for kb - 1), or descending (kb + 1 first: causal walks, where a
block's first tile grows with it). Launch order: a (batch, K/V head)'s key blocks in a row, or
the key blocks of `heads` K/V heads of a batch interleaved (block kb of each, then kb + 1 ...),
as key_block_order does (a power of two dividing H, as api/bwd.c picks).
jitter: each tile's cost drawn from 1 +- jitter (memory stalls), the same draws in both modes.

It prints the deterministic mode's time over the default's. Reading: bench/NOTES.md, issue 16,
session 26. --density D models a query-layout mask's skipped tiles instead (session 27: its
counts measured 7.27x at 1/8, modelled 9.2x; the bits on wip-bits modelled 1.28x). A model, not
a measurement: the GPU's numbers are what count.
"""
import argparse
import heapq
import random
import statistics


def launch_order(B, H, kbs, heads):
    """The keys phase's blocks, (batch x head, key block), in launch order: the key blocks kbs of
    g K/V heads of a batch interleaved, g api/bwd.c's 1 << turn_shift (the largest power of two
    <= heads that divides H)."""
    g = 1
    while g * 2 <= heads and H % (g * 2) == 0:
        g *= 2
    return [(b * H + h, kb) for b in range(B) for h0 in range(0, H, g) for kb in kbs
            for h in range(h0, h0 + g)]


def keys_phase_time(B, H, L, causal, det, desc, heads, jitter, seed, slots=132, F=2.0, tile=64,
                    rows=128, lag=None):
    rnd = random.Random(seed)
    n_tiles, n_blocks = L // tile, L // rows

    def walk(kb):  # the query tiles key block kb walks
        return range(kb * rows // tile if causal else 0, n_tiles)

    kbs = list(range(n_blocks - 1, -1, -1)) if desc else list(range(n_blocks))
    order = launch_order(B, H, kbs, heads)
    passed = {}  # (head, tile, kb): when kb passed the tile
    free = [0.0] * slots
    end_all = 0.0
    for u, kb in order:  # a block's predecessor in the tile's order started before it
        t = heapq.heappop(free) + F / 2
        before = kb + 1 if desc else kb - 1
        before_walks = set(walk(before)) if 0 <= before < n_blocks else set()
        sums = []
        for q in walk(kb):
            t += 1.0 + (rnd.uniform(-jitter, jitter) if jitter else 0.0)
            if det and q in before_walks:
                t = max(t, passed[(u, q, before)])
            sums.append((q, t))
        end = t + F / 2
        for i, (q, at) in enumerate(sums):  # at the next tile's sums, or `lag` after its own
            nxt = sums[i + 1][1] if i + 1 < len(sums) else end
            passed[(u, q, kb)] = nxt if lag is None else min(nxt, at + lag)
        heapq.heappush(free, end)
        end_all = max(end_all, end)
    return end_all


def masked_keys_phase_time(B, H, L, density, scheme, heads, jitter, seed, skip=0.33, hop=0.4,
                           slots=132, F=2.0, tile=64, rows=128):
    """A query-layout mask's keys phase (ascending, not causal): a 128 x 128 block of (query,
    key) visible with probability `density` (dmbench's pattern=blocks), a skipped tile costing
    `skip` (its vote), a wait and a pass `hop` (an acquire load's and a release's round trips).
    scheme: "default" (no order), "counts" (session 26: a skipped tile waits for the block before
    it and passes; a held turn passes at the next visible tile's sums) or "bits" (session 27's
    wip-bits: a skipped tile passes at once, a held turn at the first skipped tile after it; a
    visible tile waits for every block before it)."""
    rnd, vis = random.Random(seed), random.Random(seed + 1000)
    n_tiles, n_blocks = L // tile, L // rows
    order = launch_order(B, H, range(n_blocks), heads)
    visible = {(u, q2, kb): vis.random() < density for u in range(B * H)
               for q2 in range(n_tiles // 2) for kb in range(n_blocks)}
    passed, upto = {}, {}  # (u, q, kb): when kb passed q; (u, q): the latest pass of kb' < kb
    free = [0.0] * slots
    end_all = 0.0
    for u, kb in order:
        t = heapq.heappop(free) + F / 2
        held = None  # the visible tile whose turn the block holds
        for q in range(n_tiles):
            cost = rnd.uniform(-jitter, jitter) if jitter else 0.0
            if not visible[(u, q // 2, kb)]:
                t += skip * (1.0 + cost)
                if scheme == "counts":
                    t = max(t, passed.get((u, q, kb - 1), 0.0)) + hop
                elif scheme == "bits" and held is not None:
                    passed[(u, held, kb)], held = t + hop, None
                    t += hop
                passed[(u, q, kb)] = t
                continue
            t += 1.0 + cost
            if held is not None:  # red_tile: the last one's turn passes at this tile's sums
                passed[(u, held, kb)], held = t, None
            if scheme == "counts":
                t = max(t, passed.get((u, q, kb - 1), 0.0) + hop)
            elif scheme == "bits":
                t = max(t, upto.get((u, q), 0.0) + hop)
            held = q
        end = t + F / 2
        if held is not None:
            passed[(u, held, kb)] = end
        for q in range(n_tiles):
            upto[(u, q)] = max(upto.get((u, q), 0.0), passed.get((u, q, kb), 0.0))
        heapq.heappush(free, end)
        end_all = max(end_all, end)
    return end_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="2x16x4096,2x16x16384,1x32x8192,4x8x2048,1x4x4096",
                    help="BxHxL list (H: K/V heads; the model's blocks walk one query head)")
    ap.add_argument("--heads", default="1,2,4,8", help="K/V heads interleaved by the launch")
    ap.add_argument("--jitter", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lag", type=float, default=None,
                    help="a turn passed this long after its sums (default: at the next tile's)")
    ap.add_argument("--density", type=float, default=None,
                    help="a query-layout mask's visible blocks instead: counts against bits")
    a = ap.parse_args()
    heads = [int(x) for x in a.heads.split(",")]
    if a.density is not None:
        print("query mask at density %g: deterministic / default time (mean of %d seeds)"
              % (a.density, a.seeds))
        for shape in a.shapes.split(","):
            B, H, L = (int(x) for x in shape.split("x"))
            seeds = range(1, a.seeds + 1)
            base = [masked_keys_phase_time(B, H, L, a.density, "default", 4, a.jitter, s)
                    for s in seeds]
            cells = ["%s %.3f" % (sc, statistics.mean(
                masked_keys_phase_time(B, H, L, a.density, sc, 4, a.jitter, s) / t
                for s, t in zip(seeds, base))) for sc in ("counts", "bits")]
            print("%-14s %s" % (shape, "   ".join(cells)))
        return
    print("deterministic / default time (mean of %d seeds, jitter %.2f)" % (a.seeds, a.jitter))
    print("%-14s %-22s %s" % ("B x H x L", "order", "  ".join("heads %d" % g for g in heads)))
    for shape in a.shapes.split(","):
        B, H, L = (int(x) for x in shape.split("x"))
        for causal, desc in ((False, False), (True, False), (True, True)):
            seeds = range(1, a.seeds + 1)  # the default mode's time, once a seed
            base = [keys_phase_time(B, H, L, causal, False, False, 1, a.jitter, s) for s in seeds]
            cells = []
            for g in heads:
                r = [keys_phase_time(B, H, L, causal, True, desc, g, a.jitter, s, lag=a.lag) / t
                     for s, t in zip(seeds, base)]
                cells.append("%7.3f" % statistics.mean(r))
            name = ("causal, " if causal else "") + ("descending" if desc else "ascending")
            print("%-14s %-22s %s" % (shape, name, "  ".join(cells)))


if __name__ == "__main__":
    main()
