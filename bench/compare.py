#!/usr/bin/env python3
"""compare.py: dmattn's forward against PyTorch's SDPA and compiled FlexAttention, in one process.

Loads build/libdmattn.so with ctypes, shares PyTorch's primary CUDA context and current stream,
and for each case checks that the outputs agree (max abs diff, relative L2 error in float32) and
times every implementation (triton.testing.do_bench, median ms; CUDA events if triton is absent).

Cases (q, k, v are (B, L, H, D) contiguous tensors, dmattn's layout; the peers get
q.transpose(1, 2) views, (B, H, L, D)):
  nobias          no mask, no bias
  keybias         bias (B, H, 1, L) + all-true mask (B, H, 1, L); run for every D in --D
  fullbias        bias (B, H, L, L) + all-true mask (B, H, L, L); skipped when it does not fit
  causal_keybias  causal + key bias; SDPA gets bias + causal -inf as one float mask (L <= 8192)
With --window, instead: the top-k window mask against torch's masked_fill -> topk -> scatter
(bench/compare_window.py). With --bwd, instead: the backward (dm_bwd) next to SDPA's and Flex's
(bench/compare_bwd.py; --bwd-cases picks). With --case NAME (decode, decode_q1, decode_mixed, long_row, prefill,
layouts, or varlen for all), instead: issue 15's varlen and decode cases, dm_fwd_varlen against
Flex and SDPA with the device copy bandwidth measured in the same run (bench/compare_varlen.py).

Example (on the GPU machine, after `bash scripts/build.sh`):
  PYTHONUNBUFFERED=1 python3 bench/compare.py --json compare.json
  PYTHONUNBUFFERED=1 python3 bench/compare.py --case decode --json decode.json
"""
import argparse
import ctypes
import gc
import inspect
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_CASES = ["nobias", "keybias", "fullbias", "causal_keybias"]
VARLEN_CASES = ["decode", "decode_q1", "decode_mixed", "long_row", "prefill", "layouts"]  # compare_varlen.py
MISMATCH_REL = 2e-2
SDPA_CAUSAL_MASK_MAX_L = 8192


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------------------------
# ctypes mirror of runtime/dmattn.h: the Python package's (python/dmattn/capi.py), one copy

sys.path.insert(0, os.path.join(REPO, "python"))
from dmattn.capi import (DM_BF16, DM_BOOL, DM_DTYPE_NONE, DM_F16, DM_F32, DM_I32,  # noqa: E402,F401
                         DM_MAX_RANK, DM_OK, DM_PATH_AUTO, DM_PATH_DECODE, DM_PATH_TILED,
                         DmBwdArgs, DmFwdArgs, DmFwdVarlenArgs, DmTensor)

PATHS = {"auto": DM_PATH_AUTO, "tiled": DM_PATH_TILED, "decode": DM_PATH_DECODE}


class DmAttn:
    """The library and one context on the device torch uses."""

    def __init__(self, path, device_index, arch=None):
        self.lib = lib = ctypes.CDLL(path)
        vp = ctypes.c_void_p
        lib.dm_ctx_create.argtypes = [ctypes.POINTER(vp), ctypes.c_int]
        lib.dm_ctx_create.restype = ctypes.c_int
        lib.dm_ctx_destroy.argtypes = [vp]
        lib.dm_ctx_destroy.restype = None
        lib.dm_errmsg.argtypes = [vp]
        lib.dm_errmsg.restype = ctypes.c_char_p
        lib.dm_status_name.argtypes = [ctypes.c_int]
        lib.dm_status_name.restype = ctypes.c_char_p
        lib.dm_version_string.argtypes = []
        lib.dm_version_string.restype = ctypes.c_char_p
        lib.dm_ctx_arch.argtypes = [vp]
        lib.dm_ctx_arch.restype = ctypes.c_char_p
        lib.dm_ctx_set_arch.argtypes = [vp, ctypes.c_char_p]
        lib.dm_ctx_set_arch.restype = ctypes.c_int
        lib.dm_ctx_cache_dir.argtypes = [vp]
        lib.dm_ctx_cache_dir.restype = ctypes.c_char_p
        lib.dm_fwd.argtypes = [vp, ctypes.POINTER(DmFwdArgs), vp]
        lib.dm_fwd.restype = ctypes.c_int
        self._fwd = lib.dm_fwd
        # dm_fwd_varlen is bound on first use, so that a library without it still runs the rest
        self._fwd_varlen = None

        self.ctx = vp()
        st = lib.dm_ctx_create(ctypes.byref(self.ctx), int(device_index))
        if st != DM_OK:
            msg = self.errmsg()
            self.close()
            raise RuntimeError("dm_ctx_create(%d): %s: %s" % (device_index, self.status_name(st), msg))
        if arch:
            st = lib.dm_ctx_set_arch(self.ctx, arch.encode())
            if st != DM_OK:
                raise RuntimeError("dm_ctx_set_arch(%s): %s" % (arch, self.errmsg()))

    def status_name(self, st):
        return self.lib.dm_status_name(st).decode(errors="replace")

    def errmsg(self):
        return self.lib.dm_errmsg(self.ctx).decode(errors="replace")

    def version(self):
        return self.lib.dm_version_string().decode()

    def arch(self):
        return self.lib.dm_ctx_arch(self.ctx).decode()

    def cache_dir(self):
        return self.lib.dm_ctx_cache_dir(self.ctx).decode()

    def fwd(self, args, stream):
        """args: a DmFwdArgs; stream: an int CUstream (0 = legacy default)."""
        st = self._fwd(self.ctx, ctypes.byref(args), stream)
        if st != DM_OK:
            raise RuntimeError("dm_fwd: %s: %s" % (self.status_name(st), self.errmsg()))

    def fwd_varlen(self, args, stream):
        """args: a DmFwdVarlenArgs; stream: an int CUstream (0 = legacy default)."""
        if self._fwd_varlen is None:
            f = self.lib.dm_fwd_varlen  # AttributeError names the symbol when the library lacks it
            f.argtypes = [ctypes.c_void_p, ctypes.POINTER(DmFwdVarlenArgs), ctypes.c_void_p]
            f.restype = ctypes.c_int
            self._fwd_varlen = f
        st = self._fwd_varlen(self.ctx, ctypes.byref(args), stream)
        if st != DM_OK:
            raise RuntimeError("dm_fwd_varlen: %s: %s" % (self.status_name(st), self.errmsg()))

    def close(self):
        if self.ctx:
            self.lib.dm_ctx_destroy(self.ctx)
            self.ctx = ctypes.c_void_p()


def dm_tensor(t=None):
    """A DmTensor for a torch tensor (None: the absent tensor)."""
    d = DmTensor()
    if t is None:
        return d  # data NULL, rank 0, dtype NONE
    import torch

    codes = {torch.float16: DM_F16, torch.bfloat16: DM_BF16, torch.float32: DM_F32, torch.bool: DM_BOOL,
             torch.int32: DM_I32}
    if t.dtype not in codes:
        raise ValueError("no dm_dtype for %s" % t.dtype)
    if not t.is_cuda:
        raise ValueError("dmattn tensors must be on the GPU")
    if t.dim() > DM_MAX_RANK:
        raise ValueError("rank %d > %d" % (t.dim(), DM_MAX_RANK))
    d.data = t.data_ptr()
    d.dtype = codes[t.dtype]
    d.rank = t.dim()
    for i, (n, s) in enumerate(zip(t.shape, t.stride())):
        d.shape[i] = int(n)
        d.strides[i] = int(s)
    return d


# --------------------------------------------------------------------------------------------
# timing, comparison


class Bencher:
    def __init__(self, warmup, rep):
        self.warmup, self.rep = warmup, rep
        try:
            import triton.testing

            self.do_bench = triton.testing.do_bench
            self.has_return_mode = "return_mode" in inspect.signature(self.do_bench).parameters
            self.how = "triton.testing.do_bench(warmup=%d, rep=%d, median)" % (warmup, rep)
        except Exception as e:  # noqa: BLE001
            self.do_bench = None
            self.how = "CUDA events, median of 50 (triton unavailable: %s)" % e

    def __call__(self, fn):
        import torch

        if self.do_bench is not None:
            if self.has_return_mode:
                return float(self.do_bench(fn, warmup=self.warmup, rep=self.rep, return_mode="median"))
            return float(self.do_bench(fn, warmup=self.warmup, rep=self.rep, quantiles=[0.5]))  # older triton
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(50):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        return float(times[len(times) // 2])


def compare(o_dm, o_peer_bhld):
    """max abs diff and relative L2 error (float32) of dmattn's (B,L,H,D) vs a (B,H,L,D) output."""
    import torch

    a = o_dm.float()
    b = o_peer_bhld.transpose(1, 2).float()
    diff = a - b
    max_abs = diff.abs().max().item()
    den = torch.linalg.vector_norm(b).item()
    num = torch.linalg.vector_norm(diff).item()
    rel = num / den if den > 0 else (0.0 if num == 0 else float("inf"))
    del a, b, diff
    return max_abs, rel


def free_gpu():
    import torch

    gc.collect()
    try:
        torch._dynamo.reset()  # drops compiled flex graphs and the tensors their guards hold
    except Exception:  # noqa: BLE001
        pass
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def gib(n):
    return n / 2**30


def short(e, n=300):
    s = ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------------------------------------
# one case


def run_case(dm, bench, flex, create_block_mask, case, B, H, L, D, dtype, verbose_err):
    import torch
    import torch.nn.functional as F

    causal = case == "causal_keybias"
    flops = 4.0 * B * H * L * L * D * (0.5 if causal else 1.0)
    res = {"case": case, "B": B, "H": H, "L": L, "D": D, "dtype": str(dtype).replace("torch.", ""),
           "causal": causal, "flops": flops, "skipped": None, "impls": {}}
    log("\n== %s  B=%d H=%d L=%d D=%d %s%s ==" % (case, B, H, L, D, res["dtype"], "  causal" if causal else ""))

    esz = torch.tensor([], dtype=dtype).element_size()
    qkv_bytes = B * L * H * D * esz
    need = 6 * qkv_bytes + 2 * B * L * H * D * 4  # q,k,v, 3 outputs, float32 comparison temporaries
    if case in ("keybias", "causal_keybias"):
        need += B * H * L * (esz + 1)
    elif case == "fullbias":
        need += B * H * L * L * (esz + 1)
    need += 2 * 2**30  # margin: do_bench's L2 flush buffer, allocator slack, workspaces
    free, total = torch.cuda.mem_get_info()
    if need > free:
        res["skipped"] = "needs ~%.1f GiB, %.1f GiB free of %.1f GiB" % (gib(need), gib(free), gib(total))
        log("skipped: " + res["skipped"])
        return res

    g = torch.Generator(device="cuda")
    g.manual_seed(1234 + L + D)
    shp = (B, L, H, D)
    q = torch.randn(shp, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(shp, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(shp, device="cuda", dtype=dtype, generator=g)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, L, D) views

    bias = mask = None
    if case in ("keybias", "causal_keybias"):
        bias = torch.randn((B, H, 1, L), device="cuda", dtype=dtype, generator=g)
        mask = torch.ones((B, H, 1, L), device="cuda", dtype=torch.bool)
    elif case == "fullbias":
        bias = torch.randn((B, H, L, L), device="cuda", dtype=dtype, generator=g)
        mask = torch.ones((B, H, L, L), device="cuda", dtype=torch.bool)

    # ---- dmattn
    o_dm = torch.empty_like(q)
    args = DmFwdArgs()
    args.q, args.k, args.v = dm_tensor(q), dm_tensor(k), dm_tensor(v)
    args.mask, args.bias = dm_tensor(mask), dm_tensor(bias)
    args.o, args.lse = dm_tensor(o_dm), dm_tensor(None)
    args.scale, args.softcap = 0.0, 0.0  # defaults: 1/sqrt(D), no softcap
    args.causal, args.window = int(causal), 0
    stream = torch.cuda.current_stream().cuda_stream

    def run_dm():
        dm.fwd(args, stream)

    entry = {"ok": False}
    res["impls"]["dmattn"] = entry
    try:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run_dm()  # first call: codegen/NVRTC or disk cache, module load
        torch.cuda.synchronize()
        entry["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        if not torch.isfinite(o_dm).all().item():
            entry["note"] = "non-finite values in output"
        ms = bench(run_dm)
        entry.update(ok=True, ms=ms, tflops=flops / (ms * 1e-3) / 1e12, ratio=1.0)
    except Exception as e:  # noqa: BLE001
        entry["error"] = short(e, 2000 if verbose_err else 300)
        log("dmattn n/a: " + entry["error"])

    # ---- peers (default scale 1/sqrt(D), as dmattn's scale = 0)
    def peer(name, make_fn):
        pe = {"ok": False}
        res["impls"][name] = pe
        fn = None
        try:
            fn, note = make_fn()
            if fn is None:
                pe["error"] = note
                log("%s n/a: %s" % (name, note))
                return
            if note:
                pe["note"] = note
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn()  # compiles Flex
            torch.cuda.synchronize()
            pe["first_call_ms"] = (time.perf_counter() - t0) * 1e3
            if entry["ok"]:
                mx, rel = compare(o_dm, out)
                pe["max_abs"], pe["rel_l2"] = mx, rel
                pe["mismatch"] = not (rel <= MISMATCH_REL)
                if pe["mismatch"]:
                    log("MISMATCH dmattn vs %s: rel L2 %.3e > %.0e (max abs %.3e)" % (name, rel, MISMATCH_REL, mx))
            del out
            ms = bench(fn)
            pe.update(ok=True, ms=ms, tflops=flops / (ms * 1e-3) / 1e12)
            if entry["ok"]:
                pe["ratio"] = ms / entry["ms"]  # > 1: dmattn is faster
        except Exception as e:  # noqa: BLE001
            pe["ok"] = False
            pe["error"] = short(e, 2000 if verbose_err else 300)
            log("%s n/a: %s" % (name, pe["error"]))
        finally:
            del fn
            torch.cuda.synchronize()

    def make_sdpa():
        if case == "nobias":
            return (lambda: F.scaled_dot_product_attention(qt, kt, vt)), None
        if case in ("keybias", "fullbias"):
            return (lambda: F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias)), None
        # causal_keybias: is_causal cannot be combined with attn_mask: one float mask
        if L > SDPA_CAUSAL_MASK_MAX_L:
            return None, "causal + bias needs a (B,H,L,L) float mask; built only for L <= %d" % SDPA_CAUSAL_MASK_MAX_L
        mbytes = B * H * L * L * esz
        free_now = torch.cuda.mem_get_info()[0]
        if mbytes + 2 * 2**30 > free_now:
            return None, "the (B,H,L,L) float mask (%.1f GiB) does not fit (%.1f GiB free)" % (gib(mbytes), gib(free_now))
        cm = torch.full((L, L), float("-inf"), device="cuda", dtype=dtype).triu_(1)
        fm = (bias + cm).contiguous()  # (B, H, L, L)
        del cm
        return (lambda: F.scaled_dot_product_attention(qt, kt, vt, attn_mask=fm)), "float mask = bias + causal -inf"

    def make_flex():
        if flex is None:
            return None, "FlexAttention unavailable"
        if case == "nobias":
            return (lambda: flex(qt, kt, vt)), None
        if case == "keybias":
            def sm(score, b, h, q_idx, kv_idx):
                return score + bias[b, h, 0, kv_idx]

            return (lambda: flex(qt, kt, vt, score_mod=sm)), None
        if case == "fullbias":
            def sm(score, b, h, q_idx, kv_idx):
                return score + bias[b, h, q_idx, kv_idx]

            return (lambda: flex(qt, kt, vt, score_mod=sm)), None

        def sm(score, b, h, q_idx, kv_idx):
            return score + bias[b, h, 0, kv_idx]

        def causal_mod(b, h, q_idx, kv_idx):
            return q_idx >= kv_idx

        bm = create_block_mask(causal_mod, B=None, H=None, Q_LEN=L, KV_LEN=L, device="cuda")
        return (lambda: flex(qt, kt, vt, score_mod=sm, block_mask=bm)), "block_mask causal"

    peer("sdpa", make_sdpa)
    peer("flex", make_flex)

    # ---- table
    dm_ms = entry.get("ms")
    log("%-8s | %9s | %8s | %11s | %10s | %9s | %s" % ("impl", "ms", "TFLOP/s", "dm speedup", "max abs", "rel L2", "note"))
    for name, pe in res["impls"].items():
        if pe.get("ok"):
            ratio = pe.get("ratio")
            flag = " MISMATCH" if pe.get("mismatch") else ""
            log("%-8s | %9.3f | %8.1f | %11s | %10s | %9s | %s%s" % (
                name, pe["ms"], pe["tflops"], "%.2fx" % ratio if ratio is not None else "-",
                "%.3e" % pe["max_abs"] if "max_abs" in pe else "-",
                "%.3e" % pe["rel_l2"] if "rel_l2" in pe else "-",
                pe.get("note", ""), flag))
        else:
            log("%-8s | %9s | %8s | %11s | %10s | %9s | n/a: %s" % (name, "-", "-", "-", "-", "-", pe.get("error", "")))
    if "first_call_ms" in entry:
        log("dmattn first call (JIT or disk cache + load): %.1f ms" % entry["first_call_ms"])
    if dm_ms is None:
        log("dmattn failed: no speed ratios")
    return res


# --------------------------------------------------------------------------------------------


def int_list(s):
    return [int(x) for x in s.replace(" ", "").split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=os.path.join(REPO, "build", "libdmattn.so"), help="path of libdmattn.so")
    ap.add_argument("--L", type=int_list, default=None, help="sequence lengths, comma list (default 4096,16384)")
    ap.add_argument("--quick", action="store_true", help="L=4096 only (unless --L is given)")
    ap.add_argument("--D", type=int_list, default=None,
                    help="head dims for keybias, comma list (default 64,128,256); --case: the first (default 128)")
    ap.add_argument("--D-other", dest="D_other", type=int_list, default=[128],
                    help="head dims for nobias, fullbias, causal_keybias (default 128)")
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--H", type=int, default=None, help="query heads (default 16; --case: 32)")
    ap.add_argument("--Hkv", type=int, default=8, help="--case: key/value heads (default 8)")
    ap.add_argument("--cases", default=",".join(ALL_CASES), help="comma list of: " + ", ".join(ALL_CASES))
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    ap.add_argument("--rep", type=int, default=200, help="do_bench rep (ms)")
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention (no compile)")
    ap.add_argument("--verbose-errors", action="store_true", help="long error messages")
    ap.add_argument("--json", default=None, help="write all numbers to this file")
    ap.add_argument("--arch", default=None, help="dmattn arch override, e.g. sm90 (mma.sync) on an H100")
    ap.add_argument("--window-scale", dest="window_scale", action="store_true",
                    help="--window: also the sizes it must scale to (512k-key decode rows, 16k x 16k)")
    ap.add_argument("--bwd", action="store_true",
                    help="the backward instead (bench/compare_bwd.py): dm_bwd vs SDPA and Flex backward")
    ap.add_argument("--bwd-cases", dest="bwd_cases", default=None,
                    help="--bwd: comma list of nobias, keybias, keybias_dbias, fullbias, fullbias_dbias")
    ap.add_argument("--window", action="store_true",
                    help="instead: the top-k window mask, torch masked_fill->topk->scatter vs dm_window_mask "
                         "(bench/compare_window.py)")
    ap.add_argument("--template-dirs", dest="template_dirs", default=None,
                    help="--window: comma list of DMATTN_TEMPLATE_DIR values to time in turn (template sweeps)")
    ap.add_argument("--case", default=None,
                    help="instead: issue 15's varlen/decode cases, comma list of: %s, or varlen for all "
                         "(bench/compare_varlen.py)" % ", ".join(VARLEN_CASES))
    ap.add_argument("--path", choices=sorted(PATHS), default="auto", help="--case: dm_fwd_varlen's path (default auto)")
    ap.add_argument("--num-splits", dest="num_splits", type=int, default=0,
                    help="--case: decode path's key splits, 0 = the library's choice (default 0)")
    ap.add_argument("--seed", type=int, default=1,
                    help="--case: seed of the random lengths, drawn as dmbench --varlen --seed draws them (default 1)")
    ap.add_argument("--copy-mib", dest="copy_mib", type=int, default=1024,
                    help="--case: the buffer the copy bandwidth is measured on, MiB (default 1024)")
    ap.add_argument("--mask-density", dest="mask_density", type=float, default=0.95,
                    help="--case: fraction of visible keys in the key masks (default 0.95: no tile is all false, so "
                         "nothing is skipped, but the mask is checked)")
    opt = ap.parse_args()
    varlen_cases = []
    if opt.case:
        varlen_cases = [c for c in opt.case.replace(" ", "").split(",") if c]
        if "varlen" in varlen_cases:
            varlen_cases = list(VARLEN_CASES)
        bad = [c for c in varlen_cases if c not in VARLEN_CASES]
        if bad:
            ap.error("unknown --case %s; known: %s, varlen" % (", ".join(bad), ", ".join(VARLEN_CASES)))
    if opt.H is None:
        opt.H = 32 if varlen_cases else 16
    if opt.D is None:
        opt.D = [128] if varlen_cases else [64, 128, 256]

    cases = [c for c in opt.cases.replace(" ", "").split(",") if c]
    bad = [c for c in cases if c not in ALL_CASES]
    if bad:
        ap.error("unknown case(s) %s; known: %s" % (", ".join(bad), ", ".join(ALL_CASES)))
    Ls = opt.L if opt.L else ([4096] if opt.quick else [4096, 16384])

    import torch

    if not torch.cuda.is_available():
        sys.exit("compare.py: no CUDA device visible to torch")
    torch.cuda.init()
    dev = torch.cuda.current_device()
    torch.zeros(1, device="cuda")  # makes torch's primary context current on this thread
    torch.cuda.synchronize()
    dtype = torch.bfloat16 if opt.dtype == "bf16" else torch.float16
    if opt.window:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import compare_window

        results = compare_window.run(opt, dev, dtype)
        if opt.json:
            with open(opt.json, "w") as f:
                json.dump({"window": results, "gpu": torch.cuda.get_device_name(dev)}, f, indent=1)
        return

    try:
        import triton

        triton_ver = triton.__version__
    except Exception as e:  # noqa: BLE001
        triton_ver = "n/a (%s)" % short(e, 120)

    dm = DmAttn(opt.lib, dev, opt.arch)  # after torch: shares its primary context
    bench = Bencher(opt.warmup, opt.rep)

    flex = create_block_mask = None
    flex_err = None
    if not opt.no_flex:
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            for key in ("recompile_limit", "cache_size_limit"):  # one compile per case: keep them all compiled
                if hasattr(torch._dynamo.config, key):
                    setattr(torch._dynamo.config, key, max(64, getattr(torch._dynamo.config, key)))
            if hasattr(torch._dynamo.config, "accumulated_recompile_limit"):
                torch._dynamo.config.accumulated_recompile_limit = max(
                    1024, torch._dynamo.config.accumulated_recompile_limit)
            flex = torch.compile(flex_attention, dynamic=False)
        except Exception as e:  # noqa: BLE001
            flex_err = short(e)
            flex = create_block_mask = None

    props = torch.cuda.get_device_properties(dev)
    meta = {
        "gpu": torch.cuda.get_device_name(dev),
        "capability": "%d.%d" % (props.major, props.minor),
        "gpu_mem_gib": round(gib(props.total_memory), 1),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_ver,
        "python": sys.version.split()[0],
        "dmattn": dm.version(),
        "dmattn_lib": os.path.abspath(opt.lib),
        "dmattn_arch": dm.arch(),
        "dmattn_cache_dir": dm.cache_dir(),
        "timing": bench.how,
        "flex": "torch.compile(flex_attention, dynamic=False)" if flex is not None else "n/a: %s" % (
            flex_err or "--no-flex"),
        "args": dict(vars(opt)),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    log("GPU: %s (sm %s, %.1f GiB)" % (meta["gpu"], meta["capability"], meta["gpu_mem_gib"]))
    log("torch %s (CUDA %s), triton %s, Python %s" % (meta["torch"], meta["torch_cuda"], meta["triton"], meta["python"]))
    log("dmattn %s: %s, arch %s, cache %s" % (meta["dmattn"], meta["dmattn_lib"], meta["dmattn_arch"] or "?",
                                             meta["dmattn_cache_dir"] or "(memory)"))
    log("timing: %s; Flex: %s" % (meta["timing"], meta["flex"]))
    log("speedup = peer ms / dmattn ms (> 1: dmattn faster); MISMATCH when rel L2 > %.0e" % MISMATCH_REL)

    if opt.bwd:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        sys.modules.setdefault("compare", sys.modules[__name__])  # one copy of the ctypes classes
        import compare_bwd

        try:
            results = compare_bwd.run(opt, dtype, dm, bench, flex, Ls)
        finally:
            dm.close()
        if opt.json:
            with open(opt.json, "w") as f:
                json.dump({"meta": meta, "results": results}, f, indent=1)
            log("wrote " + opt.json)
        return 1 if any(r.get("impls", {}).get("dmattn", {}).get("mismatch") for r in results) else 0

    if varlen_cases:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        # compare_varlen does `import compare`: hand it this module, not a second copy whose
        # ctypes classes ctypes would not accept for this one's argtypes
        sys.modules.setdefault("compare", sys.modules[__name__])
        import compare_varlen

        try:
            copy, results, n_mismatch = compare_varlen.run(opt, dtype, dm, bench, flex, create_block_mask,
                                                           varlen_cases)
        finally:
            dm.close()
        if opt.json:
            meta["copy"] = copy
            with open(opt.json, "w") as f:
                json.dump({"meta": meta, "results": results}, f, indent=1)
            log("wrote " + opt.json)
        return 1 if n_mismatch else 0

    results = []
    try:
        for L in Ls:
            for case in cases:
                for D in (opt.D if case == "keybias" else opt.D_other):
                    try:
                        r = run_case(dm, bench, flex, create_block_mask, case, opt.B, opt.H, L, D, dtype,
                                     opt.verbose_errors)
                    except Exception as e:  # noqa: BLE001  (setup failure, e.g. out of memory)
                        r = {"case": case, "B": opt.B, "H": opt.H, "L": L, "D": D, "causal": case == "causal_keybias",
                             "skipped": "error: " + short(e), "impls": {}}
                        log("case failed: " + r["skipped"])
                    results.append(r)
                    free_gpu()
                    if opt.json:  # keep what we have if a later case kills the process
                        with open(opt.json, "w") as f:
                            json.dump({"meta": meta, "results": results}, f, indent=1)
    finally:
        dm.close()

    # ---- summary
    def tf(r, name):
        pe = r["impls"].get(name, {})
        return "%8.1f" % pe["tflops"] if pe.get("ok") else "%8s" % "n/a"

    def ratio(r, name):
        pe = r["impls"].get(name, {})
        return "%7.2fx" % pe["ratio"] if pe.get("ok") and pe.get("ratio") is not None else "%8s" % "n/a"

    log("\n== summary (TFLOP/s; ratio = peer ms / dmattn ms) ==")
    log("%-15s %6s %4s | %8s %8s %8s | %8s %8s | %s" % ("case", "L", "D", "dmattn", "SDPA", "Flex", "vs SDPA", "vs Flex",
                                                     "flags"))
    n_mismatch = 0
    for r in results:
        if r.get("skipped"):
            log("%-15s %6d %4d | skipped: %s" % (r["case"], r["L"], r["D"], r["skipped"]))
            continue
        flags = [n for n, pe in r["impls"].items() if pe.get("mismatch")]
        n_mismatch += len(flags)
        log("%-15s %6d %4d | %s %s %s | %s %s | %s" % (
            r["case"], r["L"], r["D"], tf(r, "dmattn"), tf(r, "sdpa"), tf(r, "flex"), ratio(r, "sdpa"),
            ratio(r, "flex"), ("MISMATCH vs " + ",".join(flags)) if flags else ""))
    if n_mismatch:
        log("%d MISMATCH(es)" % n_mismatch)

    if opt.json:
        with open(opt.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
        log("wrote " + opt.json)
    return 1 if n_mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
