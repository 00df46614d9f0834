"""A tiny random transformers model whose attention takes a learned float mask gives the same
logits, loss and parameter gradients (the mask's included) with attn_implementation="dmattn" as
with "sdpa", with FLOAT_MASK_AS_BOOL on and off. Needs torch, a CUDA GPU and transformers:
reported as skipped without them.

The model: the tiny bfloat16 LlamaForCausalLM of test_transformers_attention.py (same config),
plus a learned mask, a torch.nn.Parameter (1, 1 or H, L, L) in float32 or bfloat16: random
values where visible, -inf above the diagonal (causal), bf16's lowest value on a block of whole
key tiles below it (keys 64..127 for queries from 128 on) and on 15% of the other entries below
it; the diagonal always visible, so no query row is fully masked and every label counts.

The route: the Parameter itself is the model's `attention_mask`, a 4-D float mask, used as-is
by both implementations (no wrapper, no monkeypatched model code). In transformers 5.x:
- masking_utils._preprocess_mask_arguments returns a 4-D tensor mask as-is ("If the mask is
  already 4D, simply return as-is (it was already prepared, or it is custom)"), before it looks
  at the implementation's mask function, so create_causal_mask (called by LlamaModel.forward)
  hands the user's tensor, its dtype, values and autograd graph unchanged, to every layer;
- LlamaAttention.forward calls the implementation's function (ALL_ATTENTION_FUNCTIONS) with
  that tensor as attention_mask (and its **kwargs);
- integrations/sdpa_attention.py's sdpa_attention_forward passes a given mask to
  F.scaled_dot_product_attention as attn_mask (is_causal False, K/V heads repeated), which
  adds a float mask to the scores (torch takes a float32 mask with bf16 queries, or the
  query's dtype); dmattn_attention_forward makes a float mask the bias (and with
  FLOAT_MASK_AS_BOOL also the bool mask of its entries above finfo.min / 2).
Both facts are checked here too: the recorders below see the learned mask itself reach SDPA's
attn_mask and flash_dmattn_func's attn_bias (so the attention_bias keyword, the other route
into dmattn_attention_forward, is not needed).
"""
import copy

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
transformers = pytest.importorskip("transformers")

import dmattn.ops  # noqa: E402
from dmattn import transformers_attention as ta  # noqa: E402

B, H, HKV, D = 3, 4, 2, 64
L = 160  # several 64-key tiles, the last one partial for 128-row or 128-key tiles


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def models():
    """One random bfloat16 Llama on SDPA and a deep copy switched to dmattn."""
    name = ta.register()
    config = transformers.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=H, num_key_value_heads=HKV,
                                      vocab_size=128, head_dim=D, initializer_range=0.1,
                                      max_position_embeddings=256)
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    base.set_attn_implementation("sdpa")
    dm = copy.deepcopy(base)
    dm.set_attn_implementation(name)
    out = {"sdpa": base, "dmattn": dm}
    for impl, m in out.items():
        # set_attn_implementation only warns where a model cannot switch: make sure it did
        assert m.config._attn_implementation == impl, (impl, m.config._attn_implementation)
    return out


@pytest.fixture
def seen(monkeypatch):
    """What reached SDPA (attn_mask) and flash_dmattn_func (attn_mask, attn_bias), per call."""
    calls = {"sdpa": [], "dmattn": []}
    sdpa, dm = torch.nn.functional.scaled_dot_product_attention, dmattn.ops.flash_dmattn_func

    def sdpa_recorder(*args, **kwargs):
        mask = kwargs.get("attn_mask")
        calls["sdpa"].append(mask)
        # SDPA takes a float mask only in the query's dtype (dmattn takes an fp32 bias as it is):
        # the reference gets the fp32 learned mask cast, its gradient flowing back through the cast
        if mask is not None and mask.is_floating_point() and mask.dtype != args[0].dtype:
            kwargs["attn_mask"] = mask.to(args[0].dtype)
        return sdpa(*args, **kwargs)

    def dm_recorder(*args, **kwargs):
        calls["dmattn"].append((kwargs.get("attn_mask"), kwargs.get("attn_bias")))
        return dm(*args, **kwargs)

    # sdpa_attention_forward looks the function up on torch.nn.functional at each call, and
    # dmattn_attention_forward looks up ops.flash_dmattn_func
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa_recorder)
    monkeypatch.setattr(dmattn.ops, "flash_dmattn_func", dm_recorder)
    return calls


def learned_mask_values(heads, dtype, seed=7):
    """The learned mask's initial values (1, heads, L, L) in dtype, and where it is visible."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    values = 0.5 * torch.randn(1, heads, L, L, device="cuda", generator=g)
    q = torch.arange(L, device="cuda")[:, None]
    k = torch.arange(L, device="cuda")[None, :]
    dropped = torch.rand(1, heads, L, L, device="cuda", generator=g) < 0.15
    dropped |= (q >= 128) & (k >= 64) & (k < 128)  # whole key tiles masked below the diagonal
    dropped &= k < q  # the diagonal stays visible
    values = values.masked_fill(dropped, torch.finfo(torch.bfloat16).min)
    values = values.masked_fill(k > q, float("-inf"))
    visible = (k <= q) & ~dropped
    assert visible.any(-1).all()  # no query row without a visible key
    return values.to(dtype), visible


@pytest.mark.parametrize("as_bool", [True, False])
@pytest.mark.parametrize("heads", [1, H])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_learned_float_mask_model_matches_sdpa(models, seen, monkeypatch, as_bool, heads, dtype):
    monkeypatch.setattr(ta, "FLOAT_MASK_AS_BOOL", as_bool)
    values, visible = learned_mask_values(heads, dtype)
    g = torch.Generator(device="cuda").manual_seed(5)
    ids = torch.randint(0, 128, (B, L), device="cuda", generator=g)
    results = {}
    for impl in ("sdpa", "dmattn"):
        m = models[impl]
        m.zero_grad(set_to_none=True)
        mask = torch.nn.Parameter(values.clone())  # a fresh leaf per model: its own gradient
        # labels = ids: the model shifts them; no row is fully masked, so every label counts
        out = m(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False)
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        assert mask.grad is not None and mask.grad.shape == mask.shape, impl
        results[impl] = (out.logits.detach(), out.loss.detach(), grads, mask.grad.detach())

    # the learned mask reached both implementations unchanged, one call per layer each
    assert len(seen["sdpa"]) == 2 and len(seen["dmattn"]) == 2, seen
    for attn_mask in seen["sdpa"]:
        assert attn_mask is not None and attn_mask.dtype == dtype and attn_mask.requires_grad
        assert torch.equal(attn_mask.detach(), values)
    for attn_mask, attn_bias in seen["dmattn"]:
        assert attn_bias is not None and attn_bias.dtype == dtype and attn_bias.requires_grad
        assert torch.equal(attn_bias.detach(), values)
        if as_bool:
            assert attn_mask is not None and torch.equal(attn_mask, visible), "the bool mask"
        else:
            assert attn_mask is None

    (lr, loss_r, gr, mr), (ld, loss_d, gd, md) = results["sdpa"], results["dmattn"]
    assert rel(ld, lr) < 2e-2
    assert abs(loss_d.item() - loss_r.item()) < 2e-2 * abs(loss_r.item())
    assert gd.keys() == gr.keys()
    for n in gr:
        assert rel(gd[n], gr[n]) < 5e-2, n
    # the mask's gradient: SDPA's everywhere, and exactly 0 where the mask is masked (those
    # probabilities are 0), whether dmattn skipped the tile or added -inf or the lowest value
    assert torch.isfinite(md).all()
    assert rel(md, mr) < 5e-2
    assert (md[~visible.expand_as(md)] == 0).all()
