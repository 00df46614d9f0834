"""flash_dmattn_func's outputs and gradients (q, k, v and the bias, reduced to its broadcast shape)
against a float64 PyTorch reference for every mask and bias layout and head count, rows with no
visible key (zero output and gradients, no NaN), and the library's errors for bad shapes. Needs
torch and a CUDA GPU: reported as skipped without them."""
import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import dmattn  # noqa: E402

B, LQ, LK, H, HKV, D = 2, 45, 70, 4, 2, 64


def reference(q, k, v, mask, bias, scale, causal):
    """SPEC 2 in float64 on (B, L, H, D) tensors; a mask or bias with Hkv heads serves the group
    of query heads (repeat_interleave), GQA likewise."""
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = scale * q @ k.transpose(-1, -2)
    if bias is not None:
        b = bias.double()
        s = s + (b.repeat_interleave(group, 1) if b.shape[1] == HKV and group > 1 else b)
    if mask is not None:
        m = mask.repeat_interleave(group, 1) if mask.shape[1] == HKV and group > 1 else mask
        s = s.masked_fill(~m, float("-inf"))
    if causal:
        Lq, Lk = s.shape[-2:]
        s = s.masked_fill(torch.ones(Lq, Lk, dtype=torch.bool, device=s.device).triu(Lk - Lq + 1),
                          float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)  # a row with no visible key: p = 0, o = 0
    return (p @ v).transpose(1, 2)


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def randn(shape, seed, dtype=torch.bfloat16):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(*shape, device="cuda", dtype=dtype, generator=g)


def layout(kind, heads, seed):
    """The (batch, heads, rows) of a mask or bias: key (one row for every query), full (a row
    per query), batch-broadcast full; heads H, Hkv or 1."""
    n = {"H": H, "Hkv": HKV, "1": 1}[heads]
    return {"key": (B, n, 1, LK), "full": (B, n, LQ, LK), "bcast": (1, n, LQ, LK)}[kind]


CASES = [  # (mask layout or None, bias layout or None, heads, causal)
    (None, None, "H", False), (None, "key", "H", True), (None, "full", "Hkv", False),
    (None, "bcast", "1", True), ("key", None, "H", False), ("full", "key", "Hkv", True),
    ("key", "full", "H", False), ("bcast", "bcast", "H", True), ("full", "full", "1", False),
]


@pytest.mark.parametrize("mask_kind,bias_kind,heads,causal", CASES)
def test_outputs_and_gradients_match_the_float64_reference(mask_kind, bias_kind, heads, causal):
    q, k, v = randn((B, LQ, H, D), 1), randn((B, LK, HKV, D), 2), randn((B, LK, HKV, D), 3)
    mask = None
    if mask_kind:
        g = torch.Generator(device="cuda").manual_seed(4)
        mask = torch.rand(layout(mask_kind, heads, 4), device="cuda", generator=g) > 0.25
    bias = randn(layout(bias_kind, heads, 5), 5) if bias_kind else None
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    if bias is not None:
        leaves.append(bias.detach().requires_grad_(True))
    do = randn((B, LQ, H, D), 6)
    o = dmattn.flash_dmattn_func(*leaves[:3], attn_mask=mask,
                                 attn_bias=leaves[3] if bias is not None else None,
                                 is_causal=causal)
    o.backward(do)
    refs = [t.detach().double().requires_grad_(True) for t in leaves]
    ref = reference(*refs[:3], mask, refs[3] if bias is not None else None, 1 / math.sqrt(D),
                    causal)
    ref.backward(do.double())
    assert rel(o, ref) < 2e-2
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), leaves, refs):
        assert a.grad.shape == a.shape and torch.isfinite(a.grad).all(), name
        assert rel(a.grad, b.grad) < 3e-2, name


def test_rows_with_no_visible_key_give_zero_output_and_gradients():
    q, k, v = randn((B, LQ, H, D), 7), randn((B, LK, HKV, D), 8), randn((B, LK, HKV, D), 9)
    mask = torch.ones(B, H, LQ, LK, dtype=torch.bool, device="cuda")
    mask[0, :, 3] = False  # row 3 of batch 0 sees nothing in any head
    mask[1, 2, :, :] = False  # head 2 of batch 1: every row
    bias = randn((B, H, LQ, LK), 10).requires_grad_(True)
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    o, lse, _ = dmattn.flash_dmattn_func(*leaves, attn_mask=mask, attn_bias=bias,
                                         return_attn_probs=True)
    o.float().sum().backward()
    assert (o[0, 3] == 0).all() and (o[1, :, 2] == 0).all()
    assert torch.isinf(lse[0, :, 3]).all() and (lse[0, :, 3] > 0).all()
    assert (leaves[0].grad[0, 3] == 0).all() and (leaves[0].grad[1, :, 2] == 0).all()
    assert (bias.grad[0, :, 3] == 0).all() and (bias.grad[1, 2] == 0).all()
    for t in leaves + [bias]:
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("what,expect", [
    ("bias_keys", "bias.shape[3]"), ("mask_dtype", "mask.dtype"), ("heads", "(Hkv)"),
    ("head_dim", "(D)")])
def test_bad_inputs_raise_the_librarys_message(what, expect):
    q, k, v = randn((B, LQ, H, D), 11), randn((B, LK, HKV, D), 12), randn((B, LK, HKV, D), 13)
    kwargs = {}
    if what == "bias_keys":
        kwargs["attn_bias"] = randn((B, H, 1, LK + 1), 14)
    elif what == "mask_dtype":
        kwargs["attn_mask"] = torch.ones(B, H, 1, LK, device="cuda", dtype=torch.float16)
    elif what == "heads":
        k, v = randn((B, LK, 3, D), 15), randn((B, LK, 3, D), 16)
    else:
        k, v = randn((B, LK, HKV, D + 8), 17), randn((B, LK, HKV, D + 8), 18)
    with pytest.raises(dmattn.DmError) as e:
        dmattn.flash_dmattn_func(q, k, v, **kwargs)
    assert expect in str(e.value), str(e.value)
