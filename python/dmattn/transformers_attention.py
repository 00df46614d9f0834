"""A transformers attention function over flash_dmattn_func, and its registration.

dmattn_attention_forward has the signature transformers' AttentionInterface calls (as
transformers/integrations/sdpa_attention.py's sdpa_attention_forward): tensors (B, H, L, D) in,
(B, Lq, H, D) out. It maps transformers' masks onto dmattn's bool mask and float bias and adds
nothing of its own: every check and message on shapes, dtypes and strides is the C library's.
Importing this module imports torch, never transformers: register() imports it when called.
Written 2026-12-02 without torch or transformers at hand, against transformers' source (5.x):
tests/test_transformers_attention.py runs it on the GPU machine.
"""
import torch

from . import ops

# A float (additive) mask becomes the bias; with this switch on, its entries at or below
# _masked_below(dtype) (-inf, or the dtype's lowest value, which transformers' eager masks use)
# also become False in a bool mask, so the kernel skips tiles that mask covers whole instead of
# adding a bias of -inf to them. Off: the float mask is only a bias (no mask bytes read, no tile
# skipped). None (the default) = on where no gradient is taken, off where one is: measured by
# bench/float_mask_bench.py on the H200 (B 4, H 16, Hkv 4, L 2048, causal + padding, 51.5% masked;
# RESULTS.md "Issue 17, session 14"): the forward 0.365 ms on vs 0.403 off (on 1.10x faster), the
# forward + backward 10.5 ms on vs 7.2 off (the backward reads a query-layout mask per element
# and does not skip its tiles yet). The results agree except on a row with no visible key:
# o = 0 with the switch on (as for a bool mask and as SDPA), the mean of V (as eager) without
# it when the row is finite, 0 when it is -inf.
FLOAT_MASK_AS_BOOL = None


def _masked_below(dtype):
    """The value at or below which a float mask entry counts as masked: half of the dtype's
    lowest value, so that -inf, finfo.min and finfo.min plus a score all count, and no learned
    bias does."""
    return torch.finfo(dtype).min / 2


def _rows(t):
    """t (a transposed (B, L, H, D) view) as the library reads it: the last dimension contiguous
    and every other stride a whole number of 16-byte rows. A copy only where t is not."""
    elems = max(1, 16 // t.element_size())
    strided = t.stride(-1) != 1 and t.shape[-1] > 1
    unaligned = t.storage_offset() % elems != 0 or any(
        s % elems != 0 for n, s in zip(t.shape[:-1], t.stride()[:-1]) if n > 1)
    return t.contiguous() if strided or unaligned else t


def _keys(t, key_len):
    """A mask or bias as the library reads it: 4-D (a 2-D (B, S) padding mask becomes
    (B, 1, 1, S)), its last dimension cut to the key length (as transformers' older SDPA path
    sliced a static cache's longer mask) and contiguous."""
    if t.dim() == 2:
        t = t[:, None, None, :]
    if t.shape[-1] > key_len:
        t = t[..., :key_len]
    if t.stride(-1) != 1 and t.shape[-1] > 1:
        t = t.contiguous()
    return t


def _as_bias(t, query):
    """A float bias in a dtype the library takes (the query's or float32), gradient kept."""
    return t if t.dtype in (query.dtype, torch.float32) else t.to(query.dtype)


def dmattn_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                             softcap=None, window_size=None, attention_bias=None, is_causal=None,
                             **kwargs):
    """Attention for transformers models (attn_implementation="dmattn" after register()).

    query (B, H, Lq, D); key, value (B, Hkv, Lk, D), H a multiple of Hkv (GQA without repeating
    K/V); float16 or bfloat16. attention_mask: None, a bool or integer mask (True / nonzero =
    visible) or a float additive mask (0 = visible, -inf or the dtype's lowest value = masked,
    anything else a bias), 4-D broadcastable (B|1, H|Hkv|1, Lq|1, Lk) or 2-D (B, Lk). A float
    mask is passed as attn_bias and, with FLOAT_MASK_AS_BOOL (by default where no gradient is
    taken), also as the bool mask of its entries above the masked threshold, so masked tiles are
    skipped. attention_bias (a keyword
    transformers passes through from the model's forward): a float bias (a learned one keeps its
    gradient), 4-D broadcastable, added to a float mask or used alone. scaling: the softmax scale
    (default 1/sqrt(D)). softcap: tanh soft-capping of the scores (Gemma 2's
    attn_logit_softcapping). window_size: the top-k window of flash_dmattn_func (needs a bias).
    is_causal: as sdpa_attention_forward decides it: the argument, else module.is_causal (default
    True), and only with no attention_mask and more than one query (transformers then passes no
    mask because the mask is purely causal with Lq == Lk or Lq == 1). dmattn's causal mask is
    bottom-right aligned: with Lq != Lk it differs from SDPA's top-left is_causal, a case
    transformers never sends without a mask.
    dropout must be 0: models pass their attention dropout only in training, and dmattn has no
    dropout, so a nonzero dropout raises ValueError rather than being ignored.
    Returns (attn_output (B, Lq, H, D), None): no attention weights.
    """
    if dropout:
        raise ValueError("dmattn: dropout = %r: dmattn attention has no dropout; set the model's "
                         "attention_dropout to 0 to train with it" % (dropout,))
    if kwargs.get("s_aux") is not None:
        raise ValueError("dmattn: s_aux (attention sinks) is not supported")
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    # the shape first, as sdpa_attention_forward: under compile the rest may be symbolic
    is_causal = bool(query.shape[2] > 1 and attention_mask is None and is_causal)

    key_len = key.shape[2]
    mask, bias = None, None
    if attention_mask is not None:
        attention_mask = _keys(attention_mask, key_len)
        if attention_mask.is_floating_point():
            bias = attention_mask
            as_bool = FLOAT_MASK_AS_BOOL
            if as_bool is None:
                as_bool = not (torch.is_grad_enabled() and any(
                    t.requires_grad for t in (query, key, value, attention_mask)))
            if as_bool:
                mask = attention_mask.detach() > _masked_below(attention_mask.dtype)
        elif attention_mask.dtype == torch.bool:
            mask = attention_mask
        else:
            mask = attention_mask != 0
    if attention_bias is not None:
        attention_bias = _keys(attention_bias, key_len)
        bias = attention_bias if bias is None else bias + attention_bias
    if bias is not None:
        bias = _as_bias(bias, query)

    q, k, v = (_rows(t.transpose(1, 2)) for t in (query, key, value))
    out = ops.flash_dmattn_func(q, k, v, attn_mask=mask, attn_bias=bias, softmax_scale=scaling,
                                is_causal=is_causal, softcap=softcap, window_size=window_size)
    return out, None


def register(name="dmattn"):
    """Registers dmattn_attention_forward with transformers under `name` and returns the name,
    for from_pretrained(..., attn_implementation=name) or model.set_attn_implementation(name).

    transformers (5.x, masking_utils) builds a model's mask only for an implementation that
    AttentionMaskInterface knows, and passes attention_mask=None otherwise (padding and causal
    masks silently dropped), so `name` is registered there too, with sdpa_mask: a 4-D bool mask,
    or None where SDPA would use is_causal (no padding, Lq == Lk or Lq == 1), which this function
    then also uses. Both registrations are class-wide (GeneralInterface.register), so every model
    sees them. Transformers without masking_utils (4.x before it) builds its masks in the model
    and gets only the attention function."""
    import transformers

    transformers.AttentionInterface.register(name, dmattn_attention_forward)
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return name
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


# the name the package exports register() under (dmattn.register would say too little)
register_transformers_attention = register
