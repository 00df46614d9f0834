"""compare_varlen.py: `compare.py --case NAME`: issue 15's varlen and decode cases, dmattn's
dm_fwd_varlen next to FlexAttention and SDPA on the same data, in one process.

Every case (bf16, D=128, H=32, Hkv=8 unless the options say otherwise) packs its sequences as
dm_fwd_varlen takes them: q (total_q, H, D), k, v (total_k, Hkv, D), cu_seqlens int32 on the
device, key-based bias (total_k, Hkv) (and mask, where the case has one). The peers get views of
the same tensors where the layout allows (equal lengths: (B, L, H, D).transpose(1, 2)), else
padded copies (mixed lengths), said in each case's notes. Correctness: each peer's output against
dm_fwd_varlen's (max abs, relative L2; MISMATCH above compare.MISMATCH_REL).

Cases (one command line each: python3 bench/compare.py --case NAME):
  decode        64 seqs x 8 queries x 4096 keys, key bias + key mask. Flex: the equal-length
                dense version, score_mod adding the bias, the mask through torch.where in the
                same score_mod. SDPA: dense, one broadcast float mask (B, H, 1, Lk) = bias with
                -inf where masked, enable_gqa.
  decode_q1     the same with 1 query per sequence
  decode_mixed  64 seqs of 512..16384 keys (dmbench's `64x512..16384` at --seed), 8 queries
                each. Flex and SDPA on K/V padded to the longest sequence: Flex with a BlockMask
                of the lengths (padding blocks skipped) + the same score_mod; SDPA with -inf on
                the padding in its float mask.
  long_row      1 sequence x 1 query x 524288 keys, key bias, no mask (split-KV's case)
  prefill       16 seqs of 256..4096 tokens (dmbench's `16x256..4096`), queries = keys, key
                bias, non-causal and causal. Flex: packed (1, H, total, D), a document BlockMask
                (create_block_mask with a document-id mask_mod, & q >= kv for causal) and the
                bias score_mod. SDPA: not run (it has no packed-document form short of a
                total x total mask). Also dm_fwd dense on the same work: B=16, L = the root mean
                square of the lengths (so 16 L^2 = sum of L_i^2), the same key bias (B, Hkv, 1,
                L): the varlen TFLOP/s should be within 10% of it.
  layouts       the decode batch with mask and bias query-based (total_q, Hkv, 4096) against
                key-based (total_k, Hkv): the memory of each, dm_fwd_varlen's speed ratio and
                the max abs difference of the two outputs (the same values, laid out twice).
  varlen        all of the above

Bytes (GB/s, % of copy) follow the issue: q, k, v, mask, bias, o each counted once, for the
layout dm_fwd_varlen gets; the peers are given the same figure, so GB/s ratios are speed ratios.
TFLOP/s counts useful work: 4 * D * H * the (query, key) pairs inside each sequence, causal-
visible only. The copy bandwidth is torch's dst.copy_(src) of --copy-mib MiB (2 x that moved a
copy), timed with the same bencher at the start of the run.
"""
import copy
import math
import time

import compare as C

CASES = ["decode", "decode_q1", "decode_mixed", "long_row", "prefill", "layouts"]

# ---- lengths: the same generator as dmbench --varlen (bench/dmbench_varlen.c, length_at) -------

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SALT_KEYS, SALT_QUERIES = 0x6B657973, 0x71756572


def mix64(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


def hash4(a, b, c, d):
    k = GOLDEN
    h = mix64((a + k) & M64)
    h = mix64(h ^ ((b + 2 * k) & M64))
    h = mix64(h ^ ((c + 3 * k) & M64))
    return mix64(h ^ ((d + 5 * k) & M64))


def text_hash(s):
    h = 0xCBF29CE484222325
    for ch in s.encode():
        h = ((h ^ ch) * 0x100000001B3) & M64
    return h


def spec_lengths(text, seed, salt=SALT_KEYS):
    """Lengths of a dmbench SPEC: 'NxL', 'NxLO..HI' (seeded as dmbench draws them) or 'a,b,c'."""
    if "x" not in text:
        return [int(t) for t in text.split(",")]
    n, rng = text.split("x", 1)
    lo, hi = (int(t) for t in rng.split("..")) if ".." in rng else (int(rng), int(rng))
    out = []
    for i in range(int(n)):
        if lo == hi:
            out.append(lo)
            continue
        u = (hash4(seed & M64, text_hash(text), salt, i) >> 11) * 2.0 ** -53
        out.append(min(hi, lo + int(math.floor(u * (hi - lo + 1)))))
    return out


def visible_pairs(lq, lk, causal):
    """(query, key) pairs of one sequence, causal bottom-right aligned: as dmbench counts them."""
    if not causal:
        return lq * lk
    return sum(max(0, min(lk, i + lk - lq + 1)) for i in range(lq))


# ---- one batch --------------------------------------------------------------------------------


class Batch:
    """Packed tensors of one case; lq, lk: per-sequence lengths."""

    def __init__(self, lq, lk, H, Hkv, D, dtype, seed, mask_density, with_mask):
        import torch

        self.lq, self.lk, self.H, self.Hkv, self.D, self.dtype = lq, lk, H, Hkv, D, dtype
        self.B = len(lk)
        self.total_q, self.total_k = sum(lq), sum(lk)
        self.max_q, self.max_k = max(lq), max(lk)
        g = torch.Generator(device="cuda")
        g.manual_seed(seed)
        self.q = torch.randn((self.total_q, H, D), device="cuda", dtype=dtype, generator=g)
        self.k = torch.randn((self.total_k, Hkv, D), device="cuda", dtype=dtype, generator=g)
        self.v = torch.randn((self.total_k, Hkv, D), device="cuda", dtype=dtype, generator=g)
        self.bias = torch.randn((self.total_k, Hkv), device="cuda", dtype=dtype, generator=g)
        self.mask = None
        if with_mask:
            self.mask = torch.rand((self.total_k, Hkv), device="cuda", generator=g) < mask_density
        cu = [0]
        for n in lq:
            cu.append(cu[-1] + n)
        self.cu_q = torch.tensor(cu, dtype=torch.int32, device="cuda")
        cu = [0]
        for n in lk:
            cu.append(cu[-1] + n)
        self.cu_k = torch.tensor(cu, dtype=torch.int32, device="cuda")
        self.cu_k_host = cu

    def esz(self):
        return self.q.element_size()

    def qkvo_bytes(self):
        return 2 * self.q.numel() * self.esz() + 2 * self.k.numel() * self.esz()

    def flops(self, causal):
        return 4.0 * self.D * self.H * sum(visible_pairs(a, b, causal) for a, b in zip(self.lq, self.lk))


def dm_varlen_args(b, o, mask, bias, causal, opt):
    a = C.DmFwdVarlenArgs()
    a.q, a.k, a.v = C.dm_tensor(b.q), C.dm_tensor(b.k), C.dm_tensor(b.v)
    a.cu_seqlens_q, a.cu_seqlens_k = C.dm_tensor(b.cu_q), C.dm_tensor(b.cu_k)
    a.max_seqlen_q, a.max_seqlen_k = b.max_q, b.max_k
    a.mask, a.bias = C.dm_tensor(mask), C.dm_tensor(bias)
    a.o, a.lse = C.dm_tensor(o), C.dm_tensor(None)
    a.scale, a.softcap = 0.0, 0.0
    a.causal, a.window = int(causal), 0
    a.path, a.num_splits = C.PATHS[opt.path], opt.num_splits
    return a


def compare_packed(o_dm, out):
    """max abs and rel L2 of two (total_q, H, D) outputs, in float32."""
    import torch

    a, b = o_dm.float(), out.float()
    d = a - b
    den = torch.linalg.vector_norm(b).item()
    num = torch.linalg.vector_norm(d).item()
    return d.abs().max().item(), (num / den if den > 0 else (0.0 if num == 0 else float("inf")))


# ---- the runner ---------------------------------------------------------------------------------


class Runner:
    def __init__(self, dm, bench, flex, create_block_mask, opt, dtype, copy_gbps):
        self.dm, self.bench, self.flex, self.cbm, self.opt = dm, bench, flex, create_block_mask, opt
        self.dtype, self.copy_gbps = dtype, copy_gbps

    def stream(self):
        import torch

        return torch.cuda.current_stream().cuda_stream

    def timed(self, res, name, fn, nbytes, flops, ref=None, to_packed=None, note=None):
        """Runs fn once (compiles, first call), checks its output against ref, times it."""
        import torch

        e = {"ok": False}
        if note:
            e["note"] = note
        res["impls"][name] = e
        try:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn()
            torch.cuda.synchronize()
            e["first_call_ms"] = (time.perf_counter() - t0) * 1e3
            if ref is not None and out is not None:
                got = to_packed(out) if to_packed else out
                e["max_abs"], e["rel_l2"] = compare_packed(ref, got)
                e["mismatch"] = not (e["rel_l2"] <= C.MISMATCH_REL)
                if e["mismatch"]:
                    C.log("MISMATCH dmattn vs %s: rel L2 %.3e (max abs %.3e)" % (name, e["rel_l2"], e["max_abs"]))
            del out
            ms = self.bench(fn)
            e.update(ok=True, ms=ms, gbps=nbytes / ms / 1e6, tflops=flops / ms / 1e9)
            if self.copy_gbps:
                e["pct_copy"] = 100.0 * e["gbps"] / self.copy_gbps
        except Exception as ex:  # noqa: BLE001
            e["error"] = C.short(ex, 2000 if self.opt.verbose_errors else 300)
            C.log("%s n/a: %s" % (name, e["error"]))
        finally:
            torch.cuda.synchronize()
        return e

    def run_dm(self, res, b, mask, bias, causal, nbytes, flops, name="dmattn"):
        """dm_fwd_varlen on the batch: returns (entry, o)."""
        import torch

        o = torch.empty_like(b.q)
        args = dm_varlen_args(b, o, mask, bias, causal, self.opt)
        stream = self.stream()

        def fn():
            self.dm.fwd_varlen(args, stream)
            return None

        e = self.timed(res, name, fn, nbytes, flops)
        if e["ok"] and not torch.isfinite(o).all().item():
            e["note"] = "non-finite values in output"
        return e, (o if e["ok"] else None)

    def ratios(self, res, base="dmattn"):
        d = res["impls"].get(base, {})
        for name, e in res["impls"].items():  # peers only: dm_fwd dense does other work
            if not name.startswith("dm") and e.get("ok") and d.get("ok"):
                e["ratio"] = e["ms"] / d["ms"]  # > 1: dmattn is faster

    # ---- decode-shaped cases: few queries per sequence -----------------------------------------

    def decode_case(self, name, lk_spec, q_per_seq, with_mask, mixed):
        import torch
        import torch.nn.functional as F

        opt = self.opt
        lk = spec_lengths(lk_spec, opt.seed)
        lq = [q_per_seq] * len(lk)
        res = self.new_result(name, "seqlens %s, %d quer%s per sequence" % (lk_spec, q_per_seq,
                                                                             "y" if q_per_seq == 1 else "ies"))
        b = Batch(lq, lk, opt.H, opt.Hkv, opt.D, self.dtype, 1234, opt.mask_density, with_mask)
        nbytes = b.qkvo_bytes() + b.bias.numel() * b.esz() + (b.mask.numel() if with_mask else 0)
        flops = b.flops(False)
        res.update(B=b.B, total_q=b.total_q, total_k=b.total_k, max_k=b.max_k, bytes=nbytes, flops=flops)
        e, o_dm = self.run_dm(res, b, b.mask, b.bias, False, nbytes, flops)

        B, Lq, H, Hkv, D, G = b.B, q_per_seq, b.H, b.Hkv, b.D, b.H // b.Hkv
        L = b.max_k
        q4 = b.q.view(B, Lq, H, D).transpose(1, 2)  # (B, H, Lq, D) view
        if not mixed:
            k4 = b.k.view(B, L, Hkv, D).transpose(1, 2)
            v4 = b.v.view(B, L, Hkv, D).transpose(1, 2)
            bias3 = b.bias.view(B, L, Hkv)
            mask3 = b.mask.view(B, L, Hkv) if with_mask else None
            layout_note = "equal-length dense views"
        else:  # padded copies, keys past a sequence's end masked
            k4 = torch.zeros((B, L, Hkv, D), device="cuda", dtype=b.dtype)
            v4 = torch.zeros_like(k4)
            bias3 = torch.zeros((B, L, Hkv), device="cuda", dtype=b.dtype)
            mask3 = torch.zeros((B, L, Hkv), device="cuda", dtype=torch.bool)
            for i, n in enumerate(lk):
                s = b.cu_k_host[i]
                k4[i, :n] = b.k[s:s + n]
                v4[i, :n] = b.v[s:s + n]
                bias3[i, :n] = b.bias[s:s + n]
                mask3[i, :n] = b.mask[s:s + n] if with_mask else True
            k4, v4 = k4.transpose(1, 2), v4.transpose(1, 2)
            layout_note = "padded to %d keys (%.1f GB of K/V instead of %.1f)" % (
                L, 2 * k4.numel() * b.esz() / 1e9, 2 * b.k.numel() * b.esz() / 1e9)
        res["peer_layout"] = layout_note

        def to_packed(out):  # (B, H, Lq, D) -> (total_q, H, D)
            return out.transpose(1, 2).reshape(b.total_q, H, D)

        # Flex: bias (and key mask) in one score_mod; lengths of mixed batches as a BlockMask
        if self.flex is None:
            res["impls"]["flex"] = {"ok": False, "error": "FlexAttention unavailable"}
        else:
            if mask3 is not None:
                def sm(score, bi, h, q_idx, kv_idx):
                    hk = h // G
                    return torch.where(mask3[bi, kv_idx, hk], score + bias3[bi, kv_idx, hk], -float("inf"))
            else:
                def sm(score, bi, h, q_idx, kv_idx):
                    return score + bias3[bi, kv_idx, h // G]
            bm, note = None, "score_mod: bias%s" % (" + mask (where)" if mask3 is not None else "")
            if mixed:
                lens = torch.tensor(lk, device="cuda", dtype=torch.int32)

                def in_seq(bi, h, q_idx, kv_idx):
                    return kv_idx < lens[bi]

                bm = self.cbm(in_seq, B=B, H=None, Q_LEN=Lq, KV_LEN=L, device="cuda")
                note += "; BlockMask of the lengths"
            flex = self.flex
            self.timed(res, "flex", lambda: flex(q4, k4, v4, score_mod=sm, block_mask=bm, enable_gqa=True),
                       nbytes, flops, o_dm, to_packed, note)

        # SDPA: one float mask (B, H, 1, L): bias, -inf where masked or past the sequence
        fm = bias3 if mask3 is None else bias3.masked_fill(~mask3, float("-inf"))
        fm = fm.permute(0, 2, 1).repeat_interleave(G, dim=1).unsqueeze(2).contiguous()  # (B, H, 1, L)
        sdpa = (lambda: F.scaled_dot_product_attention(q4, k4, v4, attn_mask=fm, enable_gqa=True))
        note = "float mask (B, H, 1, Lk), enable_gqa"
        try:
            F.scaled_dot_product_attention(q4[:1, :, :1], k4[:1], v4[:1], attn_mask=fm[:1], enable_gqa=True)
        except TypeError:  # torch without enable_gqa: K/V repeated per query head
            kr, vr = k4.repeat_interleave(G, dim=1), v4.repeat_interleave(G, dim=1)
            sdpa = (lambda: F.scaled_dot_product_attention(q4, kr, vr, attn_mask=fm))
            note = "float mask (B, H, 1, Lk), K/V repeated to H heads (no enable_gqa)"
        except Exception:  # noqa: BLE001  (timed() below reports it)
            pass
        self.timed(res, "sdpa", sdpa, nbytes, flops, o_dm, to_packed, note)
        self.ratios(res)
        return res

    # ---- varlen prefill -----------------------------------------------------------------------

    def prefill_case(self, causal):
        import torch

        opt = self.opt
        spec = "16x256..4096"
        lk = spec_lengths(spec, opt.seed)
        name = "prefill_causal" if causal else "prefill"
        res = self.new_result(name, "seqlens %s (queries = keys)%s" % (spec, ", causal" if causal else ""))
        b = Batch(list(lk), lk, opt.H, opt.Hkv, opt.D, self.dtype, 4321, 1.0, False)
        nbytes = b.qkvo_bytes() + b.bias.numel() * b.esz()
        flops = b.flops(causal)
        res.update(B=b.B, total_q=b.total_q, total_k=b.total_k, max_k=b.max_k, bytes=nbytes, flops=flops,
                   causal=causal, lengths=lk)
        e, o_dm = self.run_dm(res, b, None, b.bias, causal, nbytes, flops)

        H, Hkv, D, G, T = b.H, b.Hkv, b.D, b.H // b.Hkv, b.total_q
        q1 = b.q.unsqueeze(0).transpose(1, 2)  # (1, H, total, D) views of the packed tensors
        k1 = b.k.unsqueeze(0).transpose(1, 2)
        v1 = b.v.unsqueeze(0).transpose(1, 2)
        doc = torch.repeat_interleave(torch.arange(b.B, device="cuda", dtype=torch.int32),
                                      torch.tensor(lk, device="cuda"))
        bias = b.bias

        if self.flex is None:
            res["impls"]["flex"] = {"ok": False, "error": "FlexAttention unavailable"}
        else:
            if causal:
                def doc_mask(bi, h, q_idx, kv_idx):
                    return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)
            else:
                def doc_mask(bi, h, q_idx, kv_idx):
                    return doc[q_idx] == doc[kv_idx]

            def sm(score, bi, h, q_idx, kv_idx):
                return score + bias[kv_idx, h // G]

            bm = self.cbm(doc_mask, B=None, H=None, Q_LEN=T, KV_LEN=T, device="cuda")
            flex = self.flex
            self.timed(res, "flex", lambda: flex(q1, k1, v1, score_mod=sm, block_mask=bm, enable_gqa=True),
                       nbytes, flops, o_dm, lambda out: out[0].transpose(0, 1),
                       "packed (1, H, %d, D), document BlockMask%s, bias score_mod" % (T, " & causal" if causal else ""))
        res["impls"]["sdpa"] = {"ok": False, "error": "not run: no packed-document form without a total x total mask"}

        # dm_fwd dense on the same work: 16 sequences of the RMS length
        L = int(round(math.sqrt(sum(n * n for n in lk) / len(lk))))
        Bd = len(lk)
        g = torch.Generator(device="cuda")
        g.manual_seed(99)
        qd = torch.randn((Bd, L, H, D), device="cuda", dtype=b.dtype, generator=g)
        kd = torch.randn((Bd, L, Hkv, D), device="cuda", dtype=b.dtype, generator=g)
        vd = torch.randn((Bd, L, Hkv, D), device="cuda", dtype=b.dtype, generator=g)
        bd = torch.randn((Bd, Hkv, 1, L), device="cuda", dtype=b.dtype, generator=g)
        od = torch.empty_like(qd)
        a = C.DmFwdArgs()
        a.q, a.k, a.v, a.bias, a.o = C.dm_tensor(qd), C.dm_tensor(kd), C.dm_tensor(vd), C.dm_tensor(bd), C.dm_tensor(od)
        a.mask, a.lse = C.dm_tensor(None), C.dm_tensor(None)
        a.causal = int(causal)
        stream = self.stream()
        dflops = 4.0 * D * H * Bd * visible_pairs(L, L, causal)
        dbytes = 2 * qd.numel() * b.esz() + 2 * kd.numel() * b.esz() + bd.numel() * b.esz()

        def dense():
            self.dm.fwd(a, stream)
            return None

        de = self.timed(res, "dm_fwd dense", dense, dbytes, dflops, note="B=%d L=%d (RMS length: %.3g of the "
                        "varlen work)" % (Bd, L, dflops / flops))
        if de.get("ok") and e.get("ok"):
            res["varlen_vs_dense_tflops"] = e["tflops"] / de["tflops"]
        self.ratios(res)
        return res

    # ---- key- vs query-based layouts ----------------------------------------------------------

    def layouts_case(self):
        import torch

        opt = self.opt
        spec, nq = "64x4096", 8
        lk = spec_lengths(spec, opt.seed)
        res = self.new_result("layouts", "seqlens %s, %d queries: mask + bias key-based (total_k, Hkv) vs "
                              "query-based (total_q, Hkv, max_seqlen_k)" % (spec, nq))
        b = Batch([nq] * len(lk), lk, opt.H, opt.Hkv, opt.D, self.dtype, 1234, opt.mask_density, True)
        B, L, Hkv = b.B, b.max_k, b.Hkv
        # query-based copies of the same values: row t of sequence s = sequence s's key row
        bias_q = b.bias.view(B, L, Hkv).permute(0, 2, 1).unsqueeze(1).expand(B, nq, Hkv, L)
        bias_q = bias_q.reshape(b.total_q, Hkv, L).contiguous()
        mask_q = b.mask.view(B, L, Hkv).permute(0, 2, 1).unsqueeze(1).expand(B, nq, Hkv, L)
        mask_q = mask_q.reshape(b.total_q, Hkv, L).contiguous()
        kb = b.bias.numel() * b.esz() + b.mask.numel()
        qb = bias_q.numel() * b.esz() + mask_q.numel()
        flops = b.flops(False)
        res.update(B=b.B, total_q=b.total_q, total_k=b.total_k, max_k=L, flops=flops,
                   mask_bias_bytes_key=kb, mask_bias_bytes_query=qb)
        ek, ok_ = self.run_dm(res, b, b.mask, b.bias, False, b.qkvo_bytes() + kb, flops, "dmattn key-based")
        eq, oq = self.run_dm(res, b, mask_q, bias_q, False, b.qkvo_bytes() + qb, flops, "dmattn query-based")
        ek["note"] = "mask+bias %.1f MB" % (kb / 1e6)
        eq["note"] = "mask+bias %.1f MB (%.0fx)" % (qb / 1e6, qb / kb)
        if ok_ is not None and oq is not None:
            eq["max_abs"], eq["rel_l2"] = compare_packed(ok_, oq)
        if ek.get("ok") and eq.get("ok"):
            eq["ratio"] = eq["ms"] / ek["ms"]  # > 1: the key-based layout is faster
            res["query_over_key_ms"] = eq["ratio"]
        return res

    # ---- reports ------------------------------------------------------------------------------

    def new_result(self, name, what):
        opt = self.opt
        C.log("\n== %s: %s; H=%d Hkv=%d D=%d %s ==" % (name, what, opt.H, opt.Hkv, opt.D, opt.dtype))
        return {"case": name, "what": what, "H": opt.H, "Hkv": opt.Hkv, "D": opt.D, "dtype": opt.dtype,
                "path": opt.path, "num_splits": opt.num_splits, "impls": {}}

    def table(self, res):
        C.log("%-20s | %9s | %8s | %6s | %8s | %8s | %10s | %9s | %s" % (
            "impl", "ms", "GB/s", "%copy", "TFLOP/s", "dm faster", "max abs", "rel L2", "note"))
        for name, e in res["impls"].items():
            if not e.get("ok"):
                C.log("%-20s | %9s | %8s | %6s | %8s | %8s | %10s | %9s | n/a: %s" % (
                    name, "-", "-", "-", "-", "-", "-", "-", e.get("error", "")))
                continue
            C.log("%-20s | %9.4f | %8.1f | %6s | %8.1f | %8s | %10s | %9s | %s%s" % (
                name, e["ms"], e["gbps"], "%.1f" % e["pct_copy"] if "pct_copy" in e else "-", e["tflops"],
                "%.2fx" % e["ratio"] if "ratio" in e else "-",
                "%.3e" % e["max_abs"] if "max_abs" in e else "-",
                "%.3e" % e["rel_l2"] if "rel_l2" in e else "-", e.get("note", ""),
                " MISMATCH" if e.get("mismatch") else ""))
        if "peer_layout" in res:
            C.log("peers' K/V: " + res["peer_layout"])
        if "varlen_vs_dense_tflops" in res:
            C.log("dm_fwd_varlen TFLOP/s / dm_fwd dense TFLOP/s: %.3f (target >= 0.90)" % res["varlen_vs_dense_tflops"])
        if "query_over_key_ms" in res:
            C.log("query-based / key-based time: %.2fx; memory %.1f MB vs %.1f MB" % (
                res["query_over_key_ms"], res["mask_bias_bytes_query"] / 1e6, res["mask_bias_bytes_key"] / 1e6))


def measure_copy(bench, mib):
    """torch's device copy bandwidth, GB/s (read + write counted: 2 x bytes a copy)."""
    import torch

    n = mib << 20
    src = torch.ones(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    del src, dst
    torch.cuda.empty_cache()
    return 2.0 * n / ms / 1e6, ms


def run(opt, dtype, dm, bench, flex, create_block_mask, cases):
    """Runs the named cases; returns (copy figures, results, number of mismatches)."""
    copy_gbps, copy_ms = measure_copy(bench, opt.copy_mib)
    C.log("device copy: %.1f GB/s (torch dst.copy_(src) of %d MiB, %.4f ms; 2 x bytes a copy)" % (
        copy_gbps, opt.copy_mib, copy_ms))
    C.log("speed: ms are %s; 'dm faster' = peer ms / dmattn ms; path %s, num_splits %d" % (
        bench.how, opt.path, opt.num_splits))
    # the varlen cases run one head dim: the first of --D (compare.py parses it as a list)
    opt = copy.copy(opt)
    opt.D = opt.D[0] if isinstance(opt.D, (list, tuple)) else opt.D
    r = Runner(dm, bench, flex, create_block_mask, opt, dtype, copy_gbps)
    make = {
        "decode": lambda: [r.decode_case("decode", "64x4096", 8, True, False)],
        "decode_q1": lambda: [r.decode_case("decode_q1", "64x4096", 1, True, False)],
        "decode_mixed": lambda: [r.decode_case("decode_mixed", "64x512..16384", 8, True, True)],
        "long_row": lambda: [r.decode_case("long_row", "1x524288", 1, False, False)],
        "prefill": lambda: [r.prefill_case(False), r.prefill_case(True)],
        "layouts": lambda: [r.layouts_case()],
    }
    results = []
    for case in cases:
        try:
            for res in make[case]():
                r.table(res)
                results.append(res)
        except Exception as e:  # noqa: BLE001  (setup failure, e.g. out of memory)
            results.append({"case": case, "skipped": "error: " + C.short(e, 2000 if opt.verbose_errors else 300),
                            "impls": {}})
            C.log("case %s failed: %s" % (case, results[-1]["skipped"]))
        C.free_gpu()

    C.log("\n== summary (copy %.1f GB/s; %%copy = achieved GB/s / copy; ratio = peer ms / dmattn ms) ==" % copy_gbps)
    C.log("%-16s | %9s %6s %8s | %9s %6s %7s | %9s %6s %7s | %s" % (
        "case", "dm ms", "%copy", "TFLOP/s", "flex ms", "%copy", "ratio", "sdpa ms", "%copy", "ratio", "max abs vs flex"))
    n_mismatch = 0
    for res in results:
        if res.get("skipped"):
            C.log("%-16s | skipped: %s" % (res["case"], res["skipped"]))
            continue
        im = res["impls"]
        first = next(iter(im.values()), {})

        def cols(e, ratio=True):
            if not e.get("ok"):
                return "%9s %6s %7s" % ("n/a", "", "")
            return "%9.4f %6s %7s" % (e["ms"], "%.1f" % e["pct_copy"] if "pct_copy" in e else "-",
                                      "%.2fx" % e["ratio"] if ratio and "ratio" in e else
                                      ("%.1f" % e["tflops"] if not ratio else "-"))

        n_mismatch += sum(1 for e in im.values() if e.get("mismatch"))
        flex = im.get("flex", {})
        extra = "%.2e" % flex["max_abs"] if "max_abs" in flex else "-"
        if "varlen_vs_dense_tflops" in res:
            extra += "; varlen/dense TFLOP/s %.2f" % res["varlen_vs_dense_tflops"]
        if "query_over_key_ms" in res:
            q = im.get("dmattn query-based", {})
            extra = "query/key time %.2fx, memory %.0fx, max abs %s" % (
                res["query_over_key_ms"], res["mask_bias_bytes_query"] / res["mask_bias_bytes_key"],
                "%.1e" % q["max_abs"] if "max_abs" in q else "-")
        C.log("%-16s | %s | %s | %s | %s" % (res["case"], cols(first, ratio=False), cols(flex),
                                             cols(im.get("sdpa", {})), extra))
    if n_mismatch:
        C.log("%d MISMATCH(es)" % n_mismatch)
    return {"copy_gbps": copy_gbps, "copy_ms": copy_ms, "copy_mib": opt.copy_mib}, results, n_mismatch
