"""maybe_create_mask / create_mask (the C window-mask helper) against PyTorch's masked_fill ->
topk -> scatter path on tie-free inputs, bitwise; flash_dmattn_func's window_size. Needs torch
and a CUDA GPU: reported as skipped without them."""
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import dmattn  # noqa: E402


def torch_window(bias, mask, B, Lq, Lk, window, min_value):
    """flash-dmattn's path: normalize a 2-D mask, masked_fill, topk, scatter(values != min)."""
    if mask is not None and mask.dim() == 2:
        if mask.shape[-1] == Lq and Lq < Lk:
            mask = torch.nn.functional.pad(mask, (Lk - Lq, 0), value=True)
        mask = mask.view(mask.shape[0], 1, 1, Lk)
    b = bias if mask is None else bias.masked_fill(~mask, min_value)
    values, index = torch.topk(b, window, dim=-1, largest=True, sorted=False)
    return torch.zeros_like(b, dtype=torch.bool).scatter(-1, index, values != min_value)


def tie_free_bias(shape, dtype, seed):
    """Distinct values in every row: a random permutation of 0..Lk-1, scaled (exact in bf16 up to
    256 keys, in fp16 up to 2048)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    rows = torch.rand(*shape, device="cuda", generator=g).argsort(-1)
    return (rows.to(torch.float32) - shape[-1] / 2).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mask_kind", ["none", "4d", "2d_keys", "2d_queries"])
def test_maybe_create_mask_equals_the_torch_topk_path_bitwise(dtype, mask_kind):
    B, H, Lq, Lk, window = 2, 3, 5, 200, 37
    bias = tie_free_bias((B, H, Lq, Lk), dtype, seed=1)
    g = torch.Generator(device="cuda").manual_seed(2)
    mask = {"none": None,
            "4d": torch.rand(B, 1, Lq, Lk, device="cuda", generator=g) > 0.3,
            "2d_keys": torch.rand(B, Lk, device="cuda", generator=g) > 0.3,
            "2d_queries": torch.rand(B, Lq, device="cuda", generator=g) > 0.3}[mask_kind]
    lowest = torch.finfo(dtype).min
    got = dmattn.maybe_create_mask(bias, mask, B, Lq, Lk, window)
    want = torch_window(bias, mask, B, Lq, Lk, window, lowest)
    assert got.dtype == torch.bool and got.shape == want.shape
    assert torch.equal(got, want)
    # an explicit min_dtype, as the seed's callers pass it
    got = dmattn.maybe_create_mask(bias, mask, B, Lq, Lk, window, min_dtype=lowest)
    assert torch.equal(got, want)


def test_no_window_or_few_keys_returns_the_mask_unchanged():
    bias = tie_free_bias((1, 2, 4, 64), torch.bfloat16, seed=3)
    mask = torch.ones(1, 64, dtype=torch.bool, device="cuda")
    assert dmattn.maybe_create_mask(bias, mask, 1, 4, 64, 64) is mask
    assert dmattn.maybe_create_mask(bias, mask, 1, 4, 64, None) is mask
    assert dmattn.maybe_create_mask(bias, None, 1, 4, 64, 0) is None
    assert dmattn.maybe_create_mask(None, mask, 1, 4, 64, 8) is mask


def test_create_mask_relu_keeps_the_positive_visible_values():
    bias = tie_free_bias((2, 1, 3, 100), torch.float32, seed=4)
    got = dmattn.create_mask(bias, None, 2, 3, 100, 50, type="relu")
    assert torch.equal(got, bias > 0)
    with pytest.raises(ValueError, match="type"):
        dmattn.create_mask(bias, None, 2, 3, 100, 50, type="nope")


def test_a_bad_mask_length_raises_the_librarys_message():
    bias = tie_free_bias((1, 1, 4, 64), torch.float32, seed=5)
    mask = torch.ones(1, 7, dtype=torch.bool, device="cuda")
    with pytest.raises(dmattn.DmError) as e:
        dmattn.maybe_create_mask(bias, mask, 1, 4, 64, 8)
    assert "mask" in str(e.value)


def test_window_size_attends_on_the_window_mask_with_gradients():
    B, L, H, D, window = 2, 96, 4, 64, 24
    g = torch.Generator(device="cuda").manual_seed(6)
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
               for _ in range(3))
    bias = tie_free_bias((B, H, L, L), torch.bfloat16, seed=7).requires_grad_(True)
    o = dmattn.flash_dmattn_func(q, k, v, attn_bias=bias, window_size=window)
    m = dmattn.maybe_create_mask(bias, None, B, L, L, window)
    assert int(m.sum(-1).max()) == window
    ref = dmattn.flash_dmattn_func(q, k, v, attn_mask=m, attn_bias=bias)
    assert torch.equal(o, ref)
    o.float().sum().backward()
    assert bias.grad is not None and torch.isfinite(bias.grad).all()
    assert (bias.grad.float()[~m] == 0).all()  # masked-out keys get no gradient


def test_compile_fullgraph_of_the_window_mask_has_no_graph_break():
    bias = tie_free_bias((1, 2, 8, 128), torch.float16, seed=8)

    def f(bias):
        return dmattn.maybe_create_mask(bias, None, 1, 8, 128, 16)

    explanation = torch._dynamo.explain(f)(bias)
    assert explanation.graph_break_count == 0
    assert torch.equal(torch.compile(f, fullgraph=True)(bias), f(bias))
