#!/usr/bin/env python3
"""sass_counts.py: instructions a warp issues per key tile, by opcode, from Nsight Compute's
per-instruction source counters (bench/profile.sh with SOURCE=1 writes them, one CSV per layout
pair). Instructions are time while a kernel issues from two warps a scheduler: this says where.

  python3 bench/sass_counts.py src-q-q.csv[.gz] --warps 8192 --tiles 32 [--hot 0.5]

--warps: warps in the grid (blocks x warps a block); --tiles: key tiles each walks. --hot N also
lists, in address order, every instruction executed at least N times a warp a tile."""
import argparse
import collections
import csv
import gzip
import re


def rows_of(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = [line for line in fh if line.startswith('"')]
    header = None
    for row in csv.reader(lines):
        if row[0] == "Address":
            header = row
        elif header is not None and row[0] != "Kernel Name":
            yield dict(zip(header, row))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--warps", type=int, required=True)
    ap.add_argument("--tiles", type=int, required=True)
    ap.add_argument("--hot", type=float, default=None)
    ap.add_argument("--top", type=int, default=30)
    opt = ap.parse_args()
    per = float(opt.warps * opt.tiles)
    rows = list(rows_of(opt.csv))
    if not rows:
        raise SystemExit("sass_counts.py: no per-instruction rows in %s" % opt.csv)
    executed = collections.Counter()
    stalls = collections.Counter()
    total = samples = 0
    for r in rows:
        m = re.match(r"\s*(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", r["Source"])
        op = m.group(1) if m else r["Source"].strip()[:12]
        n = int(r["Instructions Executed"])
        s = int(r["Warp Stall Sampling (All Samples)"])
        executed[op] += n
        stalls[op] += s
        total += n
        samples += s
    print("%s: %.0f instructions a warp a tile" % (opt.csv, total / per))
    for op, n in executed.most_common(opt.top):
        print("  %-14s %8.1f   %5.1f%% of stall samples" % (op, n / per, 100.0 * stalls[op] / max(samples, 1)))
    if opt.hot is not None:
        for r in rows:
            n = int(r["Instructions Executed"]) / per
            if n >= opt.hot:
                print("%8s %6.2f %6s  %s" % (r["Address"][-6:], n, r["Warp Stall Sampling (All Samples)"],
                                             r["Source"].strip()))


if __name__ == "__main__":
    main()
