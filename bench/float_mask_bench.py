#!/usr/bin/env python3
"""float_mask_bench.py: what a transformers float (additive) mask costs through
dmattn_attention_forward, with FLOAT_MASK_AS_BOOL on (the mask is also read as a bool mask, so
fully masked tiles are skipped) and off (the mask is only a bias), next to the equivalent bool
mask and to torch SDPA with the float mask, in one process.

Problem (defaults): B=4, H=16, Hkv=4, L=2048, D=128, bfloat16; query, key, value made as
transformers makes them ((B, L, H, D) projections viewed as (B, H, L, D)). The mask, (B, 1, L, L):
causal, and for the second half of the batch the last 25% of the keys are padding (right
padding: every query row keeps a visible key, so no row is empty and no NaN is involved).
  float mask, as_bool=1  float: 0 visible, -inf masked; FLOAT_MASK_AS_BOOL = True
  float mask, as_bool=0  the same mask, FLOAT_MASK_AS_BOOL = False
  bool mask              the same mask as bool (True = visible)
  torch sdpa, float      F.scaled_dot_product_attention(attn_mask=float mask) as transformers'
                         sdpa_attention_forward calls it with a mask (K/V heads repeated, the
                         output transposed to (B, L, H, D))
Each case: median ms over --n iterations (CUDA events around each call, after --warmup calls,
which include dmattn's first-call kernel builds) of the forward (under no_grad) and of forward +
backward (autograd.grad of the output for q, k, v; the mask has no gradient), and the output's
relative L2 error against SDPA's. The FLOAT_MASK_AS_BOOL cost includes building the bool mask
(one comparison over the float mask per call), as the function does it.

    PYTHONPATH=<installed dmattn> python3 bench/float_mask_bench.py [--n 20] [--warmup 5]
"""
import argparse
import contextlib
import statistics

import torch
import torch.nn.functional as F

import dmattn
from dmattn import transformers_attention as ta


def median_ms(fn, n, warmup):
    """Median of n CUDA-event timings of fn(), after warmup calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(n)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


@contextlib.contextmanager
def float_mask_as_bool(flag):
    saved = ta.FLOAT_MASK_AS_BOOL
    ta.FLOAT_MASK_AS_BOOL = flag
    try:
        yield
    finally:
        ta.FLOAT_MASK_AS_BOOL = saved


def sdpa_forward(module, q, k, v, mask):
    """transformers' sdpa_attention_forward with a mask: K/V repeated, (B, L, H, D) out."""
    group = q.shape[1] // k.shape[1]
    k, v = (t[:, :, None].expand(t.shape[0], t.shape[1], group, *t.shape[2:])
            .reshape(t.shape[0], -1, *t.shape[2:]) for t in (k, v))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
    return o.transpose(1, 2).contiguous()


def dmattn_forward(module, q, k, v, mask):
    return ta.dmattn_attention_forward(module, q, k, v, mask)[0]


def rel_l2(a, b):
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--hkv", type=int, default=4)
    ap.add_argument("--L", type=int, default=2048)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--pad", type=float, default=0.25, help="padded fraction of the keys")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    opt = ap.parse_args()
    B, H, HKV, L, D = opt.B, opt.H, opt.hkv, opt.L, opt.D
    dtype = torch.bfloat16
    g = torch.Generator(device="cuda").manual_seed(0)

    # transformers' layout: (B, L, heads, D) projections seen as (B, heads, L, D)
    q0 = torch.randn(B, L, H, D, device="cuda", dtype=dtype, generator=g)
    k0, v0 = (torch.randn(B, L, HKV, D, device="cuda", dtype=dtype, generator=g)
              for _ in range(2))
    do = torch.randn(B, L, H, D, device="cuda", dtype=dtype, generator=g)
    for t in (q0, k0, v0):
        t.requires_grad_(True)

    pos = torch.arange(L, device="cuda")
    visible = (pos[None, :] <= pos[:, None]).expand(B, 1, L, L).clone()
    visible[B // 2:, ..., L - int(L * opt.pad):] = False
    assert visible.any(-1).all()  # no empty row
    float_mask = torch.zeros(B, 1, L, L, device="cuda", dtype=dtype).masked_fill(~visible,
                                                                                float("-inf"))
    module = torch.nn.Module()
    module.is_causal = True  # as a decoder's attention; a mask is given, so it is not used

    cases = [
        ("float mask, as_bool=1", dmattn_forward, float_mask, True),
        ("float mask, as_bool=0", dmattn_forward, float_mask, False),
        ("bool mask", dmattn_forward, visible, None),
        ("torch sdpa, float", sdpa_forward, float_mask, None),
    ]

    def run(fn, mask):
        return fn(module, q0.transpose(1, 2), k0.transpose(1, 2), v0.transpose(1, 2), mask)

    def step(fn, mask):
        o = run(fn, mask)
        return torch.autograd.grad(o, (q0, k0, v0), do)

    with torch.no_grad():
        reference = run(sdpa_forward, float_mask)
    rows = []
    for name, fn, mask, flag in cases:
        with float_mask_as_bool(ta.FLOAT_MASK_AS_BOOL if flag is None else flag):
            with torch.no_grad():
                err = rel_l2(run(fn, mask), reference)
                fwd = median_ms(lambda: run(fn, mask), opt.n, opt.warmup)
            both = median_ms(lambda: step(fn, mask), opt.n, opt.warmup)
        rows.append((name, fwd, both, err))

    masked = 1.0 - visible.float().mean().item()
    print("# %s, torch %s, dmattn %s" % (torch.cuda.get_device_name(), torch.__version__,
                                         dmattn.version_string()))
    print("# B=%d H=%d Hkv=%d L=%d D=%d bf16; mask (B,1,L,L) causal + %d%% right padding of the "
          "keys for rows %d..%d (%.1f%% masked); median of %d after %d warmup"
          % (B, H, HKV, L, D, round(opt.pad * 100), B // 2, B - 1, 100 * masked, opt.n,
             opt.warmup))
    print("%-24s %10s %12s %10s" % ("case", "fwd ms", "fwd+bwd ms", "rel err"))
    for name, fwd, both, err in rows:
        print("%-24s %10.3f %12.3f %10.2e" % (name, fwd, both, err))


if __name__ == "__main__":
    main()
