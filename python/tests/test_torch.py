"""flash_dmattn_func against a float64 PyTorch reference, forward and gradients (bias included),
the library's errors, and torch.compile(fullgraph) without graph breaks. Needs torch and a CUDA
GPU: reported as skipped without them."""
import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import dmattn  # noqa: E402


def reference(q, k, v, mask, bias, scale, causal):
    """SPEC §2 in float64 on (B, L, H, D) tensors; GQA by repeating K/V heads."""
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = scale * q @ k.transpose(-1, -2)
    if bias is not None:
        s = s + bias.double()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    if causal:
        Lq, Lk = s.shape[-2:]
        s = s.masked_fill(torch.ones(Lq, Lk, dtype=torch.bool, device=s.device).triu(Lk - Lq + 1),
                          float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return (p @ v).transpose(1, 2)


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def inputs(B=2, Lq=77, Lk=91, H=4, Hkv=2, D=64, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, Lq, H, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(B, Lk, Hkv, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(B, Lk, Hkv, D, device="cuda", dtype=dtype, generator=g)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_the_float64_reference(causal):
    q, k, v = inputs()
    mask = torch.rand(2, 4, 1, 91, device="cuda") > 0.2
    bias = torch.randn(2, 4, 1, 91, device="cuda", dtype=torch.bfloat16)
    o = dmattn.flash_dmattn_func(q, k, v, attn_mask=mask, attn_bias=bias, is_causal=causal)
    ref = reference(q, k, v, mask, bias, 1 / math.sqrt(64), causal)
    assert o.shape == q.shape and o.dtype == q.dtype
    assert rel(o, ref) < 2e-2


def test_gradients_match_the_float64_reference_including_dbias():
    q, k, v = inputs()
    bias = torch.randn(2, 2, 77, 91, device="cuda", dtype=torch.bfloat16)  # Hkv heads: group sums
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v, bias)]
    do = torch.randn_like(q)
    dmattn.flash_dmattn_func(*leaves[:3], attn_bias=leaves[3]).backward(do)
    got = [t.grad for t in leaves]
    refs = [t.detach().double().requires_grad_(True) for t in (q, k, v, bias)]
    rb = refs[3].repeat_interleave(2, 1)
    reference(*refs[:3], None, rb, 1 / math.sqrt(64), False).backward(do.double())
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), got, refs):
        assert rel(a, b.grad) < 2e-2, name


@pytest.mark.parametrize("deterministic", [False, True])
def test_both_backward_modes_match_and_deterministic_repeats_bitwise(deterministic):
    """The default mode (dq by fp32 reductions on sm_90) and the deterministic one (a fixed
    order) both match the reference; deterministic gives the same dq bits twice, and so does
    torch.use_deterministic_algorithms without the argument."""
    q, k, v = inputs(Lq=300, Lk=260)
    bias = torch.randn(2, 4, 1, 260, device="cuda", dtype=torch.bfloat16)  # a key-layout bias
    do = torch.randn_like(q)

    def grads():
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v, bias)]
        dmattn.flash_dmattn_func(*leaves[:3], attn_bias=leaves[3],
                                 deterministic=deterministic).backward(do)
        return [t.grad for t in leaves]

    got = grads()
    refs = [t.detach().double().requires_grad_(True) for t in (q, k, v, bias)]
    reference(*refs[:3], None, refs[3], 1 / math.sqrt(64), False).backward(do.double())
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), got, refs):
        assert rel(a, b.grad) < 2e-2, name
    if deterministic:
        assert all(torch.equal(a, b) for a, b in zip(got, grads()))
    else:
        torch.use_deterministic_algorithms(True)
        try:
            first, again = grads(), grads()
        finally:
            torch.use_deterministic_algorithms(False)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_a_wrong_dtype_raises_the_librarys_message():
    q, k, v = inputs()
    with pytest.raises(dmattn.DmError) as e:
        dmattn.flash_dmattn_func(q.float(), k.float(), v.float())
    assert "dtype" in str(e.value)


def test_compile_fullgraph_has_no_graph_break():
    q, k, v = inputs()

    def f(q, k, v):
        return dmattn.flash_dmattn_func(q, k, v, is_causal=True) * 2

    explanation = torch._dynamo.explain(f)(q, k, v)
    assert explanation.graph_break_count == 0
    torch.testing.assert_close(torch.compile(f, fullgraph=True)(q, k, v), f(q, k, v))
