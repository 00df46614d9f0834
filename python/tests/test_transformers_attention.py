"""dmattn_attention_forward (the transformers attention function) against SDPA in float64 (bool,
float and 2-D masks, GQA, causal, a learned bias with its gradient), its dropout refusal, its
registration, and a tiny random Llama run with attn_implementation="dmattn" against the same
weights on "sdpa" and "eager" (logits, parameter gradients, a decode step; left padding). Needs
torch, a CUDA GPU and transformers: reported as skipped without them."""
import copy
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
transformers = pytest.importorskip("transformers")

import dmattn.ops  # noqa: E402
from dmattn import transformers_attention as ta  # noqa: E402

F = torch.nn.functional
B, H, HKV, D = 2, 4, 2, 64


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def qkv(Lq=77, Lk=200, dtype=torch.bfloat16, seed=0):
    """query (B, H, Lq, D), key and value (B, HKV, Lk, D): transformers' layout."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, H, Lq, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(B, HKV, Lk, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(B, HKV, Lk, D, device="cuda", dtype=dtype, generator=g)
    return q, k, v


def reference(q, k, v, attn_mask=None, scale=None, is_causal=False):
    """SDPA in float64 (the math backend), K/V heads repeated for GQA; returns (B, Lq, H, D)."""
    group = q.shape[1] // k.shape[1]
    k, v = (t.double().repeat_interleave(group, 1) for t in (k, v))
    if attn_mask is not None and attn_mask.is_floating_point():
        attn_mask = attn_mask.double()
    o = F.scaled_dot_product_attention(q.double(), k, v, attn_mask=attn_mask, scale=scale,
                                       is_causal=is_causal)
    return o.transpose(1, 2)


def module(is_causal=False, training=False):
    m = torch.nn.Module()
    m.is_causal = is_causal
    m.train(training)
    return m


def visible(shape, p=0.3, seed=1):
    """A random bool mask with a whole masked block of keys (tiles to skip) and key 0 always
    visible (no row without a visible key: SDPA's answer there is not the question here)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    m = torch.rand(*shape, device="cuda", generator=g) > p
    m[..., 64:128] = False
    m[..., 0] = True
    return m


# ---- the function against SDPA ----------------------------------------------------------------

def test_bool_mask_with_gqa_matches_sdpa():
    q, k, v = qkv()
    mask = visible((B, 1, 77, 200))
    o, w = ta.dmattn_attention_forward(module(), q, k, v, mask, scaling=0.1)
    assert w is None and o.shape == (B, 77, H, D) and o.dtype == q.dtype
    assert rel(o, reference(q, k, v, mask, scale=0.1)) < 2e-2


def test_a_2d_padding_mask_is_expanded():
    q, k, v = qkv()
    mask = visible((B, 200))
    o, _ = ta.dmattn_attention_forward(module(), q, k, v, mask)
    assert rel(o, reference(q, k, v, mask[:, None, None, :])) < 2e-2


@pytest.mark.parametrize("as_bool", [True, False])
@pytest.mark.parametrize("fill", ["-inf", "min"])
def test_float_additive_mask_matches_sdpa(monkeypatch, as_bool, fill):
    monkeypatch.setattr(ta, "FLOAT_MASK_AS_BOOL", as_bool)
    q, k, v = qkv()
    g = torch.Generator(device="cuda").manual_seed(2)
    bias = 0.5 * torch.randn(B, H, 77, 200, device="cuda", generator=g)
    value = float("-inf") if fill == "-inf" else torch.finfo(torch.bfloat16).min
    mask = bias.masked_fill(~visible((B, H, 77, 200)), value).to(torch.bfloat16)
    o, _ = ta.dmattn_attention_forward(module(), q, k, v, mask)
    assert rel(o, reference(q, k, v, mask)) < 2e-2


@pytest.mark.parametrize("grad", [False, True])
def test_float_mask_as_bool_by_default_only_without_gradients(monkeypatch, grad):
    # FLOAT_MASK_AS_BOOL = None: the bool mask where no gradient is taken (the forward is faster
    # with it), the bias alone where one is (the backward is faster without it)
    assert ta.FLOAT_MASK_AS_BOOL is None
    seen, dm = [], dmattn.ops.flash_dmattn_func

    def recorder(*args, **kwargs):
        seen.append(kwargs.get("attn_mask"))
        return dm(*args, **kwargs)

    monkeypatch.setattr(dmattn.ops, "flash_dmattn_func", recorder)
    q, k, v = qkv()
    mask = torch.zeros(B, H, 77, 200, device="cuda", dtype=torch.bfloat16)
    mask = mask.masked_fill(~visible((B, H, 77, 200)), float("-inf"))
    q.requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        o, _ = ta.dmattn_attention_forward(module(), q, k, v, mask)
    assert rel(o, reference(q.detach(), k, v, mask)) < 2e-2
    assert (seen[0] is None) == grad, seen
    if not grad:
        assert torch.equal(seen[0], visible((B, H, 77, 200)).expand(B, H, 77, 200))


@pytest.mark.parametrize("Lq", [91, 1])
def test_no_mask_is_causal_as_sdpa_decides_it(Lq):
    q, k, v = qkv(Lq=Lq, Lk=91)
    o, _ = ta.dmattn_attention_forward(module(is_causal=True), q, k, v, None)
    # one query: no causal mask (the query is the last position); several: causal, Lq == Lk
    assert rel(o, reference(q, k, v, is_causal=Lq > 1)) < 2e-2
    o, _ = ta.dmattn_attention_forward(module(is_causal=True), q, k, v, None, is_causal=False)
    assert rel(o, reference(q, k, v)) < 2e-2


def test_a_mask_turns_is_causal_off():
    q, k, v = qkv(Lq=91, Lk=91)
    mask = visible((B, 1, 91, 91))
    o, _ = ta.dmattn_attention_forward(module(is_causal=True), q, k, v, mask)
    assert rel(o, reference(q, k, v, mask)) < 2e-2


@pytest.mark.parametrize("as_bool", [True, False])
def test_learned_attention_bias_gets_the_sdpa_gradient(monkeypatch, as_bool):
    monkeypatch.setattr(ta, "FLOAT_MASK_AS_BOOL", as_bool)
    q, k, v = qkv()
    g = torch.Generator(device="cuda").manual_seed(3)
    learned = torch.randn(1, H, 1, 200, device="cuda", generator=g).to(torch.bfloat16)
    padding = torch.zeros(B, 1, 1, 200, device="cuda", dtype=torch.bfloat16).masked_fill(
        ~visible((B, 1, 1, 200)), float("-inf"))
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v, learned)]
    do = torch.randn(B, 77, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    o, _ = ta.dmattn_attention_forward(module(), *leaves[:3], padding, attention_bias=leaves[3])
    o.backward(do)
    refs = [t.detach().double().requires_grad_(True) for t in (q, k, v, learned)]
    ref = reference(*refs[:3], padding.double() + refs[3])
    ref.backward(do.double())
    assert rel(o, ref) < 2e-2
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), leaves, refs):
        assert a.grad is not None and a.grad.shape == b.shape, name
        assert rel(a.grad, b.grad) < (5e-2 if name == "dbias" else 2e-2), name


def test_attention_bias_alone_is_the_bias():
    q, k, v = qkv()
    g = torch.Generator(device="cuda").manual_seed(4)
    bias = torch.randn(B, 1, 77, 200, device="cuda", generator=g).to(torch.bfloat16)
    o, _ = ta.dmattn_attention_forward(module(), q, k, v, None, attention_bias=bias)
    assert rel(o, reference(q, k, v, bias)) < 2e-2


def test_dropout_in_training_raises():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="dropout"):
        ta.dmattn_attention_forward(module(training=True), q, k, v, None, dropout=0.1)
    o, _ = ta.dmattn_attention_forward(module(training=True), q, k, v, None, dropout=0.0)
    assert o.shape == (B, 77, H, D)


# ---- registration --------------------------------------------------------------------------

def test_importing_the_module_does_not_import_transformers():
    code = ("import sys, dmattn.transformers_attention as t; "
            "assert 'transformers' not in sys.modules, 'imported'; print(t.FLOAT_MASK_AS_BOOL)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_register_adds_the_function_and_the_sdpa_mask():
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert ta.register("dmattn_test_name") == "dmattn_test_name"
    assert ALL_ATTENTION_FUNCTIONS["dmattn_test_name"] is ta.dmattn_attention_forward
    # masking_utils looks in the class-wide mapping, not the instance: check that one
    assert ALL_MASK_ATTENTION_FUNCTIONS._global_mapping["dmattn_test_name"] is sdpa_mask


# ---- a tiny Llama: dmattn against the same weights on sdpa and eager --------------------------

L = 37


@pytest.fixture(scope="module")
def models():
    """One random bfloat16 Llama on SDPA and deep copies switched to eager and to dmattn."""
    name = ta.register()
    config = transformers.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=H, num_key_value_heads=HKV,
                                      vocab_size=128, head_dim=D, initializer_range=0.1,
                                      max_position_embeddings=256)
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    base.set_attn_implementation("sdpa")
    out = {"sdpa": base}
    for impl in ("eager", name):
        m = copy.deepcopy(base)
        m.set_attn_implementation(impl)
        out[impl] = m
    for impl, m in out.items():
        # set_attn_implementation only warns where a model cannot switch: make sure it did
        assert m.config._attn_implementation == impl, (impl, m.config._attn_implementation)
    return out


@pytest.fixture
def calls(monkeypatch):
    """Counts flash_dmattn_func calls: proof that the dmattn model ran dmattn."""
    n = [0]
    inner = dmattn.ops.flash_dmattn_func

    def counting(*args, **kwargs):
        n[0] += 1
        return inner(*args, **kwargs)

    monkeypatch.setattr(dmattn.ops, "flash_dmattn_func", counting)
    return n


def batch(padded):
    """input_ids (3, L) and an attention_mask with left padding (rows padded by 0, 5 and 13)
    or without, and labels that ignore the padding."""
    g = torch.Generator(device="cuda").manual_seed(5)
    ids = torch.randint(0, 128, (3, L), device="cuda", generator=g)
    am = torch.ones(3, L, dtype=torch.long, device="cuda")
    if padded:
        am[1, :5] = 0
        am[2, :13] = 0
    # causal LM labels are shifted: position p's logits predict token p + 1, so the last padding
    # position's logits would predict the first real token. Its row sees no key: dmattn (and
    # SPEC) give o = 0, eager and SDPA's unmasked-row fix a mean of V, so the loss would depend
    # on a convention, not on attention. So the first real token is no label either.
    after_pad = torch.zeros_like(am, dtype=torch.bool)
    after_pad[:, 1:] = am[:, :-1] == 0
    labels = ids.masked_fill((am == 0) | after_pad, -100)
    return ids, am, labels


@pytest.mark.parametrize("ref", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [True, False])
def test_llama_logits_and_gradients_match(models, calls, ref, padded):
    ids, am, labels = batch(padded)
    results = {}
    for impl in (ref, "dmattn"):
        m = models[impl]
        m.zero_grad(set_to_none=True)
        out = m(input_ids=ids, attention_mask=am, labels=labels, use_cache=False)
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        # padded positions are compared nowhere: their rows see no key (o = 0 for dmattn and
        # SDPA, the mean of V for eager) and nothing real attends to them
        results[impl] = (out.logits.detach()[am.bool()], out.loss.detach(), grads)
    assert calls[0] == 2  # one call per layer, all in the dmattn model
    (lr, loss_r, gr), (ld, loss_d, gd) = results[ref], results["dmattn"]
    assert rel(ld, lr) < 2e-2
    assert abs(loss_d.item() - loss_r.item()) < 2e-2 * abs(loss_r.item())
    for n in gr:
        assert rel(gd[n], gr[n]) < 5e-2, n


@torch.no_grad()
def test_llama_decode_step_with_a_cache_matches_sdpa(models, calls):
    ids, am, _ = batch(True)
    logits = {}
    for impl in ("sdpa", "dmattn"):
        m = models[impl]
        prefill = m(input_ids=ids[:, :-1], attention_mask=am[:, :-1], use_cache=True)
        step = m(input_ids=ids[:, -1:], attention_mask=am, past_key_values=prefill.past_key_values,
                 use_cache=True)
        logits[impl] = (prefill.logits[am[:, :-1].bool()], step.logits[:, -1])
    assert calls[0] == 4  # prefill and step, two layers each
    assert rel(logits["dmattn"][0], logits["sdpa"][0]) < 2e-2
    assert rel(logits["dmattn"][1], logits["sdpa"][1]) < 2e-2


def test_llama_with_attention_dropout_in_training_raises(models):
    m = copy.deepcopy(models["dmattn"]).train()
    for layer in m.model.layers:
        layer.self_attn.attention_dropout = 0.1
    ids, am, _ = batch(False)
    with pytest.raises(ValueError, match="dropout"):
        m(input_ids=ids, attention_mask=am)
