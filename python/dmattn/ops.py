"""PyTorch operators over dm_fwd and dm_bwd: flash_dmattn_func and its autograd.

dmattn::fwd and dmattn::bwd are torch.library custom operators (with fake implementations, so
torch.compile traces them without graph breaks); autograd runs dmattn::bwd. Calls run on PyTorch's
current stream of the tensors' device, in PyTorch's CUDA context (one dmattn context per device,
made while PyTorch's is current). Every check and message is the C library's (DmError).
Written 2026-12-02 without torch or a GPU at hand: tests/test_torch.py runs it on the GPU machine.
"""
import math
import threading
from typing import Optional, Tuple

import torch

from . import capi

_DTYPES = {torch.float16: capi.DM_F16, torch.bfloat16: capi.DM_BF16, torch.float32: capi.DM_F32,
           torch.bool: capi.DM_BOOL, torch.int32: capi.DM_I32}

_contexts = {}
_contexts_lock = threading.Lock()


def _context(device):
    """The dmattn context of a CUDA device, made once while PyTorch's context is current, its
    scratch from PyTorch's caching allocator (so from a CUDA graph's pool while one captures)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    ctx = _contexts.get(index)  # a dict read is atomic: the lock only guards creation
    if ctx is not None:
        return ctx
    with _contexts_lock:
        ctx = _contexts.get(index)
        if ctx is None:
            with torch.cuda.device(index):
                torch.cuda.init()
                torch.empty(1, device="cuda")  # PyTorch's primary context, current on this thread
                ctx = capi.Context(index)
            ctx.set_allocator(
                lambda nbytes, stream: torch.cuda.caching_allocator_alloc(nbytes, index, stream),
                lambda address, nbytes, stream: torch.cuda.caching_allocator_delete(address))
            _contexts[index] = ctx
        return ctx


def _tensor(name, t):
    """A DmTensor describing t (None: the absent tensor). Only what a DmTensor cannot hold is
    refused here; everything else is the library's to check."""
    d = capi.DmTensor()
    if t is None:
        return d
    if t.dtype not in _DTYPES:
        raise TypeError("dmattn: %s.dtype = %s: expected float16, bfloat16, float32, bool or int32"
                        % (name, t.dtype))
    if t.dim() > capi.DM_MAX_RANK:
        raise ValueError("dmattn: %s has rank %d: expected at most %d" % (name, t.dim(),
                                                                          capi.DM_MAX_RANK))
    d.data = t.data_ptr() if t.numel() else None
    d.dtype = _DTYPES[t.dtype]
    n = d.rank = t.dim()
    d.shape[:n] = t.shape
    d.strides[:n] = t.stride()
    return d


def _deterministic(flag):
    """The backward's mode: asked for by the caller, or by torch.use_deterministic_algorithms."""
    return bool(flag) or torch.are_deterministic_algorithms_enabled()


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def _fwd_impl(q, k, v, mask, bias, scale, softcap, causal):
    B, Lq, H, _ = q.shape
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, Lq), dtype=torch.float32, device=q.device)
    a = capi.DmFwdArgs()
    a.q, a.k, a.v = _tensor("query", q), _tensor("key", k), _tensor("value", v)
    a.mask, a.bias = _tensor("attn_mask", mask), _tensor("attn_bias", bias)
    a.o, a.lse = _tensor("o", o), _tensor("lse", lse)
    a.scale, a.softcap, a.causal = scale, softcap, int(causal)
    device = q.device
    capi.fwd(_context(device), a, _stream(device))
    return o, lse


@torch.library.custom_op("dmattn::fwd", mutates_args=())
def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
         bias: Optional[torch.Tensor], scale: float, softcap: float, causal: bool,
         deterministic: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    # deterministic: not the forward's (always the same bits); recorded for its backward
    return _fwd_impl(q, k, v, mask, bias, scale, softcap, causal)


@_fwd.register_fake
def _(q, k, v, mask, bias, scale, softcap, causal, deterministic):
    B, Lq, H, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((B, H, Lq), dtype=torch.float32)


def _bwd_impl(dout, q, k, v, o, lse, mask, bias, scale, softcap, causal, deterministic,
              want_dbias):
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    # no dbias: an empty tensor (an operator's outputs are tensors)
    dbias = (torch.empty(bias.shape, dtype=bias.dtype, device=bias.device) if want_dbias
             else q.new_empty(0))
    a = capi.DmBwdArgs()
    a.dout, a.q, a.k, a.v = (_tensor(n, t) for n, t in (("dout", dout), ("query", q),
                                                        ("key", k), ("value", v)))
    a.o, a.lse = _tensor("o", o), _tensor("lse", lse)
    a.mask, a.bias = _tensor("attn_mask", mask), _tensor("attn_bias", bias)
    a.dq, a.dk, a.dv = _tensor("dq", dq), _tensor("dk", dk), _tensor("dv", dv)
    a.dbias = _tensor("dbias", dbias if want_dbias else None)
    a.scale, a.softcap, a.causal, a.deterministic = scale, softcap, int(causal), int(deterministic)
    capi.bwd(_context(q.device), a, _stream(q.device))
    return dq, dk, dv, dbias


@torch.library.custom_op("dmattn::bwd", mutates_args=())
def _bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
         lse: torch.Tensor, mask: Optional[torch.Tensor], bias: Optional[torch.Tensor],
         scale: float, softcap: float, causal: bool, deterministic: bool,
         want_dbias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _bwd_impl(dout, q, k, v, o, lse, mask, bias, scale, softcap, causal, deterministic,
                     want_dbias)


@_bwd.register_fake
def _(dout, q, k, v, o, lse, mask, bias, scale, softcap, causal, deterministic, want_dbias):
    dbias = bias.new_empty(bias.shape) if want_dbias else q.new_empty(0)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dbias


def _setup_context(ctx, inputs, output):
    q, k, v, mask, bias, scale, softcap, causal, deterministic = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse, mask, bias)
    ctx.scale, ctx.softcap, ctx.causal = scale, softcap, causal
    ctx.deterministic = deterministic
    ctx.want_dbias = bias is not None and bias.requires_grad


def _backward(ctx, dout, dlse):
    # lse is an auxiliary output: its gradient is not propagated (dlse is ignored)
    q, k, v, o, lse, mask, bias = ctx.saved_tensors
    dq, dk, dv, dbias = torch.ops.dmattn.bwd(dout.contiguous(), q, k, v, o, lse, mask, bias,
                                             ctx.scale, ctx.softcap, ctx.causal,
                                             ctx.deterministic, ctx.want_dbias)
    return dq, dk, dv, None, (dbias if ctx.want_dbias else None), None, None, None, None


_fwd.register_autograd(_backward, setup_context=_setup_context)


class _EagerAttention(torch.autograd.Function):
    """The same forward and backward as dmattn::fwd with its autograd, called directly: outside
    torch.compile the operator's dispatch costs more than the rest of a small call (issue 17's
    host overhead); under torch.compile the operator is what gets traced."""

    @staticmethod
    def forward(ctx, q, k, v, mask, bias, scale, softcap, causal, deterministic):
        o, lse = _fwd_impl(q, k, v, mask, bias, scale, softcap, causal)
        _setup_context(ctx, (q, k, v, mask, bias, scale, softcap, causal, deterministic),
                       (o, lse))
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, o, lse, mask, bias = ctx.saved_tensors
        dq, dk, dv, dbias = _bwd_impl(dout.contiguous(), q, k, v, o, lse, mask, bias, ctx.scale,
                                      ctx.softcap, ctx.causal, ctx.deterministic,
                                      ctx.want_dbias)
        return dq, dk, dv, None, (dbias if ctx.want_dbias else None), None, None, None, None


def _attention(q, k, v, mask, bias, scale, softcap, causal, deterministic):
    """(o, lse): the operator under torch.compile; eagerly, the implementation itself (through
    the autograd.Function only when a gradient is wanted)."""
    if torch.compiler.is_compiling():
        return torch.ops.dmattn.fwd(q, k, v, mask, bias, scale, softcap, causal, deterministic)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        return _EagerAttention.apply(q, k, v, mask, bias, scale, softcap, causal, deterministic)
    return _fwd_impl(q, k, v, mask, bias, scale, softcap, causal)


def flash_dmattn_func(query, key, value, attn_mask=None, attn_bias=None, softmax_scale=None,
                      is_causal=None, softcap=None, deterministic=None, return_attn_probs=None,
                      window_size=None):
    """Dynamic mask attention, flash-dmattn's signature and layouts.

    query (B, Lq, H, D); key, value (B, Lk, Hkv, D), H a multiple of Hkv; float16 or bfloat16.
    attn_mask: bool, broadcastable (B|1, H|Hkv|1, Lq|1, Lk), True = visible; a key tile whose mask
    is False for every query of the tile is skipped. attn_bias: the same shape rules, the query's
    dtype or float32, added to the scaled scores. softmax_scale: default 1/sqrt(D). is_causal:
    bottom-right aligned (query i sees keys up to i + Lk - Lq). softcap: s = c tanh(s / c) when
    given. deterministic: the backward's dq in a fixed summation order (the same bits run to run,
    slower on sm_90); also when torch.use_deterministic_algorithms(True) is on. Otherwise dq may
    differ in its last bits run to run (dk, dv and dbias never do), as in FlashAttention.
    Returns the output (B, Lq, H, D); with return_attn_probs, (output, softmax_lse (B, H, Lq),
    None): unlike flash-dmattn, no attention probabilities are returned.
    Gradients flow to query, key, value and attn_bias (reduced to its broadcast shape).
    window_size (beyond flash-dmattn's signature, which takes it in maybe_create_mask): with a
    bias and Lk > window_size, attention runs on maybe_create_mask(attn_bias, attn_mask, ...,
    window_size), the window_size largest bias values of each row (the mask may then be 2-D
    (B, S)); the backward uses that same mask (the selection itself has no gradient).
    """
    if window_size and attn_bias is not None and key.shape[1] > window_size:
        attn_mask = maybe_create_mask(attn_bias, attn_mask, query.shape[0], query.shape[1],
                                      key.shape[1], window_size)
    D = query.shape[-1]
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(D)
    o, lse = _attention(query, key, value, attn_mask, attn_bias, scale,
                        float(softcap) if softcap else 0.0, bool(is_causal),
                        _deterministic(deterministic))
    if return_attn_probs:
        return o, lse, None
    return o


flash_sparse_attn_func = flash_dmattn_func


# ---- top-k window masks (SPEC 4): dm_window_mask -------------------------------------------------

def _window_out_shape(bias, mask, batch_size, key_len):
    """mask' shape: the broadcast of bias (4-D) and the mask normalized to 4-D ((B, S) ->
    (B, 1, 1, Lk)); each leading dimension equal or 1 (the library checks and says which)."""
    m = None if mask is None else (
        (mask.shape[0], 1, 1, key_len) if mask.dim() == 2 else tuple(mask.shape))
    out = []
    for i in range(3):
        a = bias.shape[i]
        b = 1 if m is None else m[i]
        out.append(max(a, b) if 1 in (a, b) else a)
    return out + [key_len]


@torch.library.custom_op("dmattn::window_mask", mutates_args=())
def _window_mask(bias: torch.Tensor, mask: Optional[torch.Tensor], batch_size: int,
                 query_len: int, key_len: int, window: int, min_value: Optional[float],
                 relu: bool, block_size: int) -> torch.Tensor:
    out = torch.empty(_window_out_shape(bias, mask, batch_size, key_len), dtype=torch.bool,
                      device=bias.device)
    a = capi.DmWindowMaskArgs()
    a.bias, a.mask, a.out = _tensor("bias", bias), _tensor("mask", mask), _tensor("out", out)
    a.B, a.Lq, a.Lk, a.window = batch_size, query_len, key_len, window
    a.has_min_value = int(min_value is not None)
    a.min_value = float(min_value) if min_value is not None else 0.0
    a.relu, a.block_size = int(relu), int(block_size)
    if not capi.window_mask(_context(bias.device), a, _stream(bias.device)):
        raise AssertionError("dmattn: dm_window_mask did not apply a window the caller checked")
    return out


@_window_mask.register_fake
def _(bias, mask, batch_size, query_len, key_len, window, min_value, relu, block_size):
    return bias.new_empty(_window_out_shape(bias, mask, batch_size, key_len), dtype=torch.bool)


def _as_min_value(min_dtype):
    if min_dtype is None:
        return None
    if isinstance(min_dtype, torch.Tensor):
        return float(min_dtype.item())
    return float(min_dtype)


def create_mask(attention_bias, attention_mask, batch_size, query_len, key_len, window_size,
                min_dtype=None, block_size=None, type="topk"):
    """The window mask of dmattn's C helper (dm_window_mask, SPEC 4), with its options.

    attention_bias: float (B|1, H|Hkv|1, Lq|1, Lk); attention_mask: bool, None, 4-D broadcastable
    or 2-D (B, S): S == key_len, or S == query_len < key_len (left-padded with True: the queries
    are the last keys). b' = bias where the mask is True, else min_dtype (default: the lowest
    finite value of the bias's dtype); type "topk" keeps the window_size largest b' of each row
    (ties to the lower key index), "relu" keeps b' > 0; mask'_j is True where j is kept and
    b'_j != min_dtype. block_size smooths by a majority vote over aligned blocks of keys.
    Returns mask' (bool) of the broadcast shape of bias and the (4-D) mask; with window_size None
    or 0, or key_len <= window_size, attention_mask unchanged (as the C helper: nothing runs; for
    "relu" too, whose selection the window does not bound).
    Differs from flash-dmattn: ties are broken toward the lower key index, so the result is
    deterministic (topk's order on ties is unspecified there); the computation is one kernel.
    """
    if type not in ("topk", "relu"):
        raise ValueError("dmattn: create_mask: type = %r: expected 'topk' or 'relu'" % (type,))
    if not window_size or key_len <= window_size:
        return attention_mask
    # the selection has no gradient: the operator sees a detached bias
    return torch.ops.dmattn.window_mask(attention_bias.detach(), attention_mask, int(batch_size),
                                        int(query_len), int(key_len), int(window_size),
                                        _as_min_value(min_dtype), type == "relu",
                                        int(block_size or 0))


def maybe_create_mask(attention_bias, attention_mask, batch_size, query_len, key_len, window_size,
                      min_dtype=None):
    """flash-dmattn's maybe_create_mask: the top-k window mask when one applies.

    With window_size None or 0, no attention_bias, or key_len <= window_size, attention_mask is
    returned unchanged (it may be None; a 2-D mask stays 2-D: every attention function here takes
    it). Otherwise create_mask(..., type="topk"): the window_size largest bias values of each row
    among the visible keys (attention_mask True), as masked_fill(~mask, min) -> topk(window) ->
    scatter(values != min) computes them, ties broken toward the lower key index.
    """
    if attention_bias is None:
        return attention_mask
    return create_mask(attention_bias, attention_mask, batch_size, query_len, key_len,
                       window_size, min_dtype)
