#!/usr/bin/env python3
"""mask_read_floor.py: how fast PyTorch reads a (B,H,L,L) bool mask, the per-query skip floor's peer.

A kernel that must find out which tiles of a per-query mask are all false reads the whole mask once;
this times PyTorch reducing the same tensor (triton do_bench, median ms), to set our scan's rate
(dmbench --density 0) against. On the GPU machine:  python3 bench/mask_read_floor.py [--L 16384]
"""
import argparse

import torch
import triton

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--B", type=int, default=2)
ap.add_argument("--H", type=int, default=16)
ap.add_argument("--L", type=int, default=16384)
args = ap.parse_args()
m = torch.zeros(args.B, args.H, args.L, args.L, dtype=torch.bool, device="cuda")
for name, f in [("m.any()", lambda: m.any()), ("m.view(torch.uint8).amax()", lambda: m.view(torch.uint8).amax())]:
    ms = triton.testing.do_bench(f, warmup=5, rep=50)
    print(f"torch {name}: {ms:.3f} ms = {m.numel() / ms / 1e9:.2f} TB/s over {m.numel() / 1e9:.2f} GB")
