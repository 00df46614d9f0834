"""compare_bwd.py: `compare.py --bwd`: dmattn's backward (dm_bwd) next to the backward of PyTorch's
SDPA and compiled FlexAttention, on the same tensors, in one process (issue 16's cases).

Timing, as the issue counts it: backward TFLOP/s = 2.5 x the forward's FLOPs / backward time.
dmattn's backward is timed alone (dm_bwd on the o and lse of one dm_fwd); a peer's backward is
(forward + backward) - forward, both timed with the same bencher (autograd has no backward-only
call that replays the graph). Gradients of dmattn are checked against SDPA's (rel L2 <= 2e-2 for
dq, dk, dv and dbias).

Cases (B, H, L, D from compare.py's options; q, k, v (B, L, H, D), peers get (B, H, L, D) views):
  nobias            no mask, no bias
  keybias           bias (B, H, 1, L), no dbias
  keybias_dbias     the same with dbias (bias.requires_grad for the peers)
  fullbias          bias (B, H, L, L), no dbias (L <= 4096)
  fullbias_dbias    the same with dbias
"""
import ctypes

import compare as C

CASES = ["nobias", "keybias", "keybias_dbias", "fullbias", "fullbias_dbias"]
FULLBIAS_MAX_L = 4096


DmBwdArgs = C.DmBwdArgs  # dmattn.h's dm_bwd_args (python/dmattn/capi.py)


def bind(dm):
    f = dm.lib.dm_bwd
    f.argtypes = [ctypes.c_void_p, ctypes.POINTER(DmBwdArgs), ctypes.c_void_p]
    f.restype = ctypes.c_int
    return f


def rel_l2(a, b):
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def run_case(dm, dm_bwd, bench, flex, case, B, H, L, D, dtype):
    import torch
    import torch.nn.functional as F

    flops = 2.5 * 4.0 * B * H * L * L * D
    res = {"case": case, "B": B, "H": H, "L": L, "D": D, "flops": flops, "impls": {}, "skipped": None}
    C.log("\n== bwd %s  B=%d H=%d L=%d D=%d ==" % (case, B, H, L, D))
    if case.startswith("fullbias") and L > FULLBIAS_MAX_L:
        res["skipped"] = "full bias only up to L = %d" % FULLBIAS_MAX_L
        C.log("skipped: " + res["skipped"])
        return res
    g = torch.Generator(device="cuda")
    g.manual_seed(4321 + L + D)
    shp = (B, L, H, D)
    q, k, v, do = (torch.randn(shp, device="cuda", dtype=dtype, generator=g) for _ in range(4))
    bias = None
    if case.startswith("keybias"):
        bias = torch.randn((B, H, 1, L), device="cuda", dtype=dtype, generator=g)
    elif case.startswith("fullbias"):
        bias = torch.randn((B, H, L, L), device="cuda", dtype=dtype, generator=g)
    want_dbias = case.endswith("_dbias")

    # ---- dmattn: forward once for o and lse, then the backward alone
    o = torch.empty_like(q)
    lse = torch.empty((B, H, L), device="cuda", dtype=torch.float32)
    fa = C.DmFwdArgs()
    fa.q, fa.k, fa.v, fa.o, fa.lse = (C.dm_tensor(t) for t in (q, k, v, o, lse))
    fa.bias = C.dm_tensor(bias)
    stream = torch.cuda.current_stream().cuda_stream
    dm.fwd(fa, stream)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias = torch.empty_like(bias) if want_dbias else None
    ba = DmBwdArgs()
    ba.dout, ba.q, ba.k, ba.v, ba.o, ba.lse = (C.dm_tensor(t) for t in (do, q, k, v, o, lse))
    ba.bias, ba.dbias = C.dm_tensor(bias), C.dm_tensor(dbias)
    ba.dq, ba.dk, ba.dv = C.dm_tensor(dq), C.dm_tensor(dk), C.dm_tensor(dv)

    def run_dm():
        st = dm_bwd(dm.ctx, ctypes.byref(ba), stream)
        if st != 0:
            raise RuntimeError("dm_bwd: %s: %s" % (dm.status_name(st), dm.errmsg()))

    entry = {"ok": False}
    res["impls"]["dmattn"] = entry
    try:
        run_dm()
        torch.cuda.synchronize()
        ms = bench(run_dm)
        entry.update(ok=True, ms=ms, tflops=flops / (ms * 1e-3) / 1e12, ratio=1.0)
    except Exception as e:  # noqa: BLE001
        entry["error"] = C.short(e)
        C.log("dmattn n/a: " + entry["error"])

    # ---- peers: (B, H, L, D) leaves with grads
    qt, kt, vt = (t.transpose(1, 2).detach().requires_grad_(True) for t in (q, k, v))
    dot = do.transpose(1, 2)
    bt = bias.detach().requires_grad_(want_dbias) if bias is not None else None

    def sdpa():
        return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bt)

    def flex_fn():
        if bt is None:
            return flex(qt, kt, vt)
        if case.startswith("keybias"):
            return flex(qt, kt, vt, score_mod=lambda s, b, h, i, j: s + bt[b, h, 0, j])
        return flex(qt, kt, vt, score_mod=lambda s, b, h, i, j: s + bt[b, h, i, j])

    def peer(name, fwd):
        pe = {"ok": False}
        res["impls"][name] = pe
        try:
            leaves = [qt, kt, vt] + ([bt] if want_dbias else [])

            def fwd_bwd():
                for t in leaves:
                    t.grad = None
                fwd().backward(dot)

            fwd_bwd()  # compiles Flex; the grads of this run are checked
            torch.cuda.synchronize()
            if entry["ok"] and name == "sdpa":
                errs = {"dq": rel_l2(dq, qt.grad.transpose(1, 2)), "dk": rel_l2(dk, kt.grad.transpose(1, 2)),
                        "dv": rel_l2(dv, vt.grad.transpose(1, 2))}
                if want_dbias:
                    errs["dbias"] = rel_l2(dbias, bt.grad)
                pe["rel_l2"] = errs
                bad = {n: e for n, e in errs.items() if not e <= C.MISMATCH_REL}
                if bad:
                    C.log("MISMATCH dmattn vs sdpa gradients: %s" % bad)
                    entry["mismatch"] = bad

            def fwd_only():
                with torch.no_grad():
                    fwd()

            ms_all = bench(fwd_bwd)
            ms_fwd = bench(fwd_only)
            ms = ms_all - ms_fwd
            pe.update(ok=True, ms=ms, ms_fwd_bwd=ms_all, ms_fwd=ms_fwd, tflops=flops / (ms * 1e-3) / 1e12)
            if entry["ok"]:
                pe["ratio"] = ms / entry["ms"]  # > 1: dmattn faster
        except Exception as e:  # noqa: BLE001
            pe["error"] = C.short(e)
            C.log("%s n/a: %s" % (name, pe["error"]))
        finally:
            for t in (qt, kt, vt, bt):
                if t is not None:
                    t.grad = None
            torch.cuda.synchronize()

    peer("sdpa", sdpa)
    if flex is not None:
        peer("flex", flex_fn)

    C.log("%-8s | %9s | %8s | %11s | %s" % ("impl", "bwd ms", "TFLOP/s", "dm speedup", "grad rel L2 vs dmattn"))
    for name, pe in res["impls"].items():
        if pe.get("ok"):
            r = pe.get("ratio")
            C.log("%-8s | %9.3f | %8.1f | %11s | %s" % (name, pe["ms"], pe["tflops"],
                                                      "%.2fx" % r if r is not None else "-",
                                                      pe.get("rel_l2", "")))
        else:
            C.log("%-8s | n/a: %s" % (name, pe.get("error", "")))
    return res


def run(opt, dtype, dm, bench, flex, Ls):
    dm_bwd = bind(dm)
    cases = [c for c in (opt.bwd_cases or ",".join(CASES)).split(",") if c]
    out = []
    for L in Ls:
        for case in cases:
            try:
                out.append(run_case(dm, dm_bwd, bench, flex, case, opt.B, opt.H, L, 128, dtype))
            except Exception as e:  # noqa: BLE001
                C.log("case %s failed: %s" % (case, C.short(e)))
                out.append({"case": case, "L": L, "skipped": "error: " + C.short(e), "impls": {}})
            C.free_gpu()
    return out
