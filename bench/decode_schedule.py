#!/usr/bin/env python3
"""decode_schedule.py: predicts how well the decode path's blocks fill the device for a batch of
unequal lengths, before any run: each (sequence, K/V head, split) block costs its keys plus a
fixed start cost, blocks go to the first free slot (SMs x blocks an SM) in launch order, and the
fill is the work over slots x the last slot's finish; the library's two orders: the grid's
(split fastest) and, for unequal varlen batches, work items (decode_item in attn_fwd.lua). No GPU;
the lengths are dmbench's (compare_varlen.spec_lengths).

    python3 bench/decode_schedule.py --seqlens 64x512..16384 --split-keys 1024,2048,4096,8192
"""
import argparse
import heapq
import math

import compare_varlen as V


def blocks_of(lengths, hkv, split_keys, start_keys):
    """(launch key, cost) a block: blockIdx.x (split) fastest, then the head, then the sequence;
    an empty split costs a sixteenth of the start (it writes lse and exits)."""
    n = max(1, math.ceil(max(lengths) / split_keys))
    out = []
    for s, L in enumerate(lengths):
        for h in range(hkv):
            for x in range(n):
                keys = max(0, min(split_keys, L - x * split_keys))
                out.append(((s, h, x), keys + start_keys if keys else start_keys / 16))
    return n, out


def work_items(lengths, hkv, split_keys, start_keys, tile=64):
    """The library's order for unequal lengths (decode_item): every sequence's whole splits in
    sequence order, then one partial split per sequence (its last tiles; an empty item for a
    sequence without keys) by tiles, most first, ties to the lower sequence; K/V head fastest."""
    per = split_keys // tile
    full, part = [], []
    for s, L in enumerate(lengths):
        t = -(-L // tile)
        full += [(s, x) for x in range(t // per)]
        if t % per or t == 0:
            part.append((-(t % per), s, t // per, min(L - (t // per) * split_keys, L)))
    out = []
    for s, x in full:
        out += [((s, h, x), split_keys + start_keys) for h in range(hkv)]
    for _, s, x, keys in sorted(part):
        out += [((s, h, x), keys + start_keys if keys else start_keys / 16) for h in range(hkv)]
    return out


def fill(blocks, slots, order, start_keys=None):
    """Work over slots x makespan, blocks dealt in launch order or longest first; with
    start_keys, only the keys count as work (the useful share: what bigger splits trade)."""
    if order == "longest":
        blocks = sorted(blocks, key=lambda b: -b[1])
    free = [0.0] * slots
    for _, cost in blocks:
        heapq.heappush(free, heapq.heappop(free) + cost)
    if start_keys is None:
        return sum(c for _, c in blocks) / (slots * max(free))
    return sum(max(0.0, c - start_keys) for _, c in blocks) / (slots * max(free))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqlens", default="64x512..16384")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hkv", type=int, default=8)
    ap.add_argument("--slots", type=int, default=264, help="SMs x blocks an SM (H200 decode: 132 x 2)")
    ap.add_argument("--split-keys", default="1024,2048,4096,8192")
    ap.add_argument("--start-keys", type=float, default=256,
                    help="a block's fixed cost (Q load, pipeline fill, partial store) in keys")
    opt = ap.parse_args()
    lengths = V.spec_lengths(opt.seqlens, opt.seed)
    print("# %s (seed %d): %d sequences, %d keys; %d slots, start cost %g keys"
          % (opt.seqlens, opt.seed, len(lengths), sum(lengths), opt.slots, opt.start_keys))
    print("split_keys  splits  busy_blocks  fill(grid order)  fill(work items)  fill(longest first)"
          "  useful(work items)")
    for sk in (int(x) for x in opt.split_keys.split(",")):
        n, blocks = blocks_of(lengths, opt.hkv, sk, opt.start_keys)
        busy = sum(1 for _, c in blocks if c >= opt.start_keys)
        items = work_items(lengths, opt.hkv, sk, opt.start_keys)
        print("%10d  %6d  %11d  %16.3f  %16.3f  %19.3f  %18.3f" % (
            sk, n, busy, fill(blocks, opt.slots, "launch"), fill(items, opt.slots, "launch"),
            fill(blocks, opt.slots, "longest"), fill(items, opt.slots, "launch", opt.start_keys)))


if __name__ == "__main__":
    main()
