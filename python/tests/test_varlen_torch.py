"""flash_dmattn_varlen_func against a float64 PyTorch reference that unpacks each sequence to a
dense one (o and lse; both mask and bias layouts, GQA, empty sequences, decode-sized batches),
its window_size, the library's errors, gradients (q, k, v and the bias in either layout) against
float64 autograd, and torch.compile(fullgraph) without graph breaks, forward and backward. Needs
torch and a CUDA GPU: reported as skipped without them."""
import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import dmattn  # noqa: E402

H, HKV, D = 4, 2, 64
# (queries, keys) per sequence. Prefill: long and short rows, a sequence with no keys (o = 0),
# one with no queries, more queries than keys (causal leaves rows with no visible key), one
# query over many keys. Decode: every sequence 1-4 queries, so the decode path runs where the
# layouts allow it (split keys over the 517-key sequence).
PREFILL = [(17, 90), (3, 0), (70, 70), (0, 5), (9, 4), (1, 300)]
DECODE = [(1, 300), (1, 0), (2, 517), (1, 1), (4, 64)]


def per_sequence(t, q0, q1, k0, k1):
    """A mask or bias's block for one sequence, (Hm, Lq, Lk): rank 3 query-based, rank 2
    key-based (broadcast over the sequence's queries)."""
    if t.dim() == 3:
        return t[q0:q1, :, :k1 - k0].permute(1, 0, 2)
    return t[k0:k1].t()[:, None, :].expand(-1, q1 - q0, -1)


def reference(q, k, v, cu_q, cu_k, mask, bias, scale, causal):
    """SPEC 5 in float64: each sequence as a dense (H, Lq, Lk) problem, causal bottom-right per
    sequence, GQA and mask/bias heads by repeating. Returns o (total_q, H, D) and lse (H,
    total_q), o = 0 and lse = +inf on rows with no visible key."""
    nh = q.shape[1]
    o = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    lse = torch.full((nh, q.shape[0]), math.inf, dtype=torch.float64, device=q.device)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for b in range(len(cq) - 1):
        q0, q1, k0, k1 = cq[b], cq[b + 1], ck[b], ck[b + 1]
        lq, lk = q1 - q0, k1 - k0
        if lq == 0:
            continue
        qs = q[q0:q1].double().transpose(0, 1)  # (H, Lq, D)
        ks, vs = (t[k0:k1].double().transpose(0, 1).repeat_interleave(nh // t.shape[1], 0)
                  for t in (k, v))
        s = scale * qs @ ks.transpose(-1, -2)
        if bias is not None:
            bs = per_sequence(bias, q0, q1, k0, k1)
            s = s + bs.double().repeat_interleave(nh // bs.shape[0], 0)
        if mask is not None:
            ms = per_sequence(mask, q0, q1, k0, k1)
            s = s.masked_fill(~ms.repeat_interleave(nh // ms.shape[0], 0), -math.inf)
        if causal:
            hidden = torch.ones(lq, lk, dtype=torch.bool, device=s.device).triu(lk - lq + 1)
            s = s.masked_fill(hidden, -math.inf)
        row_lse = torch.logsumexp(s, -1)  # -inf on a row with no visible key
        p = torch.exp(s - row_lse[..., None]).nan_to_num(0.0)
        o[q0:q1] = (p @ vs).transpose(0, 1)
        lse[:, q0:q1] = row_lse.masked_fill(row_lse == -math.inf, math.inf)
    return o, lse


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def batch(lengths, seed=0, dtype=torch.bfloat16):
    """q, k, v packed from lengths, with int32 cu_seqlens on the GPU and the max lengths."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    total_q, total_k = sum(n for n, _ in lengths), sum(n for _, n in lengths)
    q = torch.randn(total_q, H, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(total_k, HKV, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(total_k, HKV, D, device="cuda", dtype=dtype, generator=g)
    cu = [[0], [0]]
    for lq, lk in lengths:
        cu[0].append(cu[0][-1] + lq)
        cu[1].append(cu[1][-1] + lk)
    cu_q, cu_k = (torch.tensor(c, dtype=torch.int32, device="cuda") for c in cu)
    max_q, max_k = max(n for n, _ in lengths), max(n for _, n in lengths)
    return q, k, v, cu_q, cu_k, max_q, max_k, g


def layouts(kind, q, k, max_k, g):
    """(mask, bias) for a layout case."""
    total_q, total_k = q.shape[0], k.shape[0]
    key_mask = torch.rand(total_k, HKV, device="cuda", generator=g) > 0.2
    if kind == "none":
        return None, None
    if kind == "key_mask_key_bias":
        return key_mask, torch.randn(total_k, HKV, device="cuda", dtype=q.dtype, generator=g)
    assert kind == "key_mask_query_bias"
    return key_mask, torch.randn(total_q, H, max_k, device="cuda", dtype=q.dtype, generator=g)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["none", "key_mask_key_bias", "key_mask_query_bias"])
@pytest.mark.parametrize("lengths", [PREFILL, DECODE], ids=["prefill", "decode"])
def test_forward_and_lse_match_the_float64_reference(lengths, kind, causal):
    q, k, v, cu_q, cu_k, max_q, max_k, g = batch(lengths)
    mask, bias = layouts(kind, q, k, max_k, g)
    o, lse, probs = dmattn.flash_dmattn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k,
                                                    attn_mask=mask, attn_bias=bias,
                                                    is_causal=causal, return_attn_probs=True)
    ref_o, ref_lse = reference(q, k, v, cu_q, cu_k, mask, bias, 1 / math.sqrt(D), causal)
    assert o.shape == q.shape and o.dtype == q.dtype and probs is None
    assert lse.shape == (H, q.shape[0]) and lse.dtype == torch.float32
    assert rel(o, ref_o) < 2e-2
    empty = torch.isinf(ref_lse)
    assert torch.equal(torch.isinf(lse), empty) and (lse[empty] > 0).all()
    assert (lse[~empty].double() - ref_lse[~empty]).abs().max().item() < 1e-2
    # rows with no visible key (no keys, or causal with more queries than keys): o = 0 exactly
    assert (o.transpose(0, 1)[empty] == 0).all()


def test_a_sequence_without_keys_gives_zero_output_exactly():
    q, k, v, cu_q, cu_k, max_q, max_k, _ = batch([(5, 0), (3, 40)])
    o = dmattn.flash_dmattn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k)
    assert torch.equal(o[:5], torch.zeros_like(o[:5]))


def test_window_size_equals_attention_on_the_per_sequence_top_k_mask():
    lengths, window = [(3, 100), (1, 20), (2, 64)], 32
    q, k, v, cu_q, cu_k, max_q, max_k, g = batch(lengths)
    # tie-free key-based bias: distinct float32 values (exact: multiples of 1/64 below 6)
    bias = (torch.randperm(k.shape[0] * HKV, device="cuda", generator=g).float() / 64).view(
        k.shape[0], HKV)
    o = dmattn.flash_dmattn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, attn_bias=bias,
                                        window_size=window)
    mask = torch.zeros(k.shape[0], HKV, dtype=torch.bool, device="cuda")
    ck = cu_k.tolist()
    for b in range(len(lengths)):
        k0, k1 = ck[b], ck[b + 1]
        if k1 - k0 <= window:
            mask[k0:k1] = True
        else:
            top = bias[k0:k1].topk(window, 0).indices
            mask[k0:k1].scatter_(0, top, torch.ones_like(top, dtype=torch.bool))
    ref = dmattn.flash_dmattn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, attn_mask=mask,
                                          attn_bias=bias)
    assert torch.equal(o, ref)


def test_int64_cu_seqlens_raise_the_librarys_message_naming_them():
    q, k, v, cu_q, cu_k, max_q, max_k, _ = batch(PREFILL)
    with pytest.raises(dmattn.DmError) as e:
        dmattn.flash_dmattn_varlen_func(q, k, v, cu_q.long(), cu_k.long(), max_q, max_k)
    assert e.value.status == "DM_ERR_INVALID_ARG"
    assert "cu_seqlens" in str(e.value)


def reference_grads(q, k, v, cu_q, cu_k, mask, bias, scale, causal, dout):
    """dq, dk, dv (and dbias when bias is given) of sum(o * dout) in float64 by autograd, each
    sequence a dense problem as in reference(); rows with no visible key give o = 0 and no
    gradient (their softmax is taken over zeros and multiplied out, so no NaN reaches a sum)."""
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    if bias is not None:
        leaves.append(bias.detach().double().requires_grad_(True))
    q64, k64, v64 = leaves[:3]
    b64 = leaves[3] if bias is not None else None
    nh = q.shape[1]
    outs = []
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for b in range(len(cq) - 1):
        q0, q1, k0, k1 = cq[b], cq[b + 1], ck[b], ck[b + 1]
        lq, lk = q1 - q0, k1 - k0
        if lq == 0:
            continue
        if lk == 0:
            outs.append(q64[q0:q1] * 0)
            continue
        qs = q64[q0:q1].transpose(0, 1)
        ks, vs = (t[k0:k1].transpose(0, 1).repeat_interleave(nh // t.shape[1], 0)
                  for t in (k64, v64))
        s = scale * qs @ ks.transpose(-1, -2)
        if b64 is not None:
            bs = per_sequence(b64, q0, q1, k0, k1)
            s = s + bs.repeat_interleave(nh // bs.shape[0], 0)
        visible = torch.ones_like(s, dtype=torch.bool)
        if mask is not None:
            visible = visible & per_sequence(mask, q0, q1, k0, k1).repeat_interleave(
                nh // mask.shape[1], 0)
        if causal:
            visible = visible & ~torch.ones(lq, lk, dtype=torch.bool,
                                            device=s.device).triu(lk - lq + 1)
        row = visible.any(-1, keepdim=True)
        s = s.masked_fill(~visible, -math.inf).masked_fill(~row, 0.0)
        p = torch.softmax(s, -1) * row
        outs.append((p @ vs).transpose(0, 1))
    o = torch.cat(outs) if outs else q64 * 0
    grads = torch.autograd.grad((o * dout[:o.shape[0]].double()).sum(), leaves)
    return grads


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["none", "key_mask_key_bias", "key_mask_query_bias"])
@pytest.mark.parametrize("lengths", [PREFILL, DECODE], ids=["prefill", "decode"])
def test_gradients_match_the_float64_reference(lengths, kind, causal):
    q, k, v, cu_q, cu_k, max_q, max_k, g = batch(lengths)
    mask, bias = layouts(kind, q, k, max_k, g)
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    if bias is not None:
        bias = bias.detach().requires_grad_(True)
    o = dmattn.flash_dmattn_varlen_func(*leaves, cu_q, cu_k, max_q, max_k, attn_mask=mask,
                                        attn_bias=bias, is_causal=causal)
    dout = torch.randn(o.shape, device="cuda", dtype=o.dtype, generator=g)
    got = torch.autograd.grad(o, leaves + ([bias] if bias is not None else []), dout)
    want = reference_grads(q, k, v, cu_q, cu_k, mask, bias, 1 / math.sqrt(D), causal, dout)
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), got, want):
        assert a.shape == b.shape and torch.isfinite(a).all(), name
        assert rel(a, b) < 3e-2, (name, rel(a, b))


def test_window_size_gradients_are_those_of_the_window_mask():
    lengths, window = [(3, 100), (1, 20), (2, 64)], 32
    q, k, v, cu_q, cu_k, max_q, max_k, g = batch(lengths)
    bias = (torch.randperm(k.shape[0] * HKV, device="cuda", generator=g).float() / 64).view(
        k.shape[0], HKV)
    mask = torch.zeros(k.shape[0], HKV, dtype=torch.bool, device="cuda")
    ck = cu_k.tolist()
    for b in range(len(lengths)):
        k0, k1 = ck[b], ck[b + 1]
        if k1 - k0 <= window:
            mask[k0:k1] = True
        else:
            top = bias[k0:k1].topk(window, 0).indices
            mask[k0:k1].scatter_(0, top, torch.ones_like(top, dtype=torch.bool))
    grads = []
    for kwargs in ({"window_size": window}, {"attn_mask": mask}):
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v, bias)]
        o = dmattn.flash_dmattn_varlen_func(*leaves[:3], cu_q, cu_k, max_q, max_k,
                                            attn_bias=leaves[3], **kwargs)
        grads.append(torch.autograd.grad(o.float().square().sum(), leaves))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_compile_fullgraph_has_no_graph_break():
    q, k, v, cu_q, cu_k, max_q, max_k, _ = batch(DECODE)

    def f(q, k, v, cu_q, cu_k):
        return dmattn.flash_dmattn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k,
                                               is_causal=True) * 2

    explanation = torch._dynamo.explain(f)(q, k, v, cu_q, cu_k)
    assert explanation.graph_break_count == 0
    torch.testing.assert_close(torch.compile(f, fullgraph=True)(q, k, v, cu_q, cu_k),
                               f(q, k, v, cu_q, cu_k))


def test_a_compiled_forward_and_backward_match_eager():
    q, k, v, cu_q, cu_k, max_q, max_k, g = batch(PREFILL)
    bias = torch.randn(k.shape[0], HKV, device="cuda", dtype=q.dtype, generator=g)

    def f(q, k, v, bias):
        return dmattn.flash_dmattn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k,
                                               attn_bias=bias, is_causal=True)

    grads = []
    for fn in (f, torch.compile(f, fullgraph=True)):
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v, bias)]
        o = fn(*leaves)
        grads.append((o.detach(),) + torch.autograd.grad(o.float().sum(), leaves))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
