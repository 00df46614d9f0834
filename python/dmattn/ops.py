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
    """The dmattn context of a CUDA device, made once while PyTorch's context is current."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _contexts_lock:
        ctx = _contexts.get(index)
        if ctx is None:
            with torch.cuda.device(index):
                torch.cuda.init()
                torch.empty(1, device="cuda")  # PyTorch's primary context, current on this thread
                ctx = capi.Context(index)
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
    d.rank = t.dim()
    for i, (n, s) in enumerate(zip(t.shape, t.stride())):
        d.shape[i] = int(n)
        d.strides[i] = int(s)
    return d


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


@torch.library.custom_op("dmattn::fwd", mutates_args=())
def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
         bias: Optional[torch.Tensor], scale: float, softcap: float,
         causal: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    B, Lq, H, _ = q.shape
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, Lq), dtype=torch.float32, device=q.device)
    a = capi.DmFwdArgs()
    a.q, a.k, a.v = _tensor("query", q), _tensor("key", k), _tensor("value", v)
    a.mask, a.bias = _tensor("attn_mask", mask), _tensor("attn_bias", bias)
    a.o, a.lse = _tensor("o", o), _tensor("lse", lse)
    a.scale, a.softcap, a.causal = scale, softcap, int(causal)
    capi.fwd(_context(q.device), a, _stream(q.device))
    return o, lse


@_fwd.register_fake
def _(q, k, v, mask, bias, scale, softcap, causal):
    B, Lq, H, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((B, H, Lq), dtype=torch.float32)


@torch.library.custom_op("dmattn::bwd", mutates_args=())
def _bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
         lse: torch.Tensor, mask: Optional[torch.Tensor], bias: Optional[torch.Tensor],
         scale: float, softcap: float, causal: bool, deterministic: bool,
         want_dbias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
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


@_bwd.register_fake
def _(dout, q, k, v, o, lse, mask, bias, scale, softcap, causal, deterministic, want_dbias):
    dbias = bias.new_empty(bias.shape) if want_dbias else q.new_empty(0)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dbias


def _setup_context(ctx, inputs, output):
    q, k, v, mask, bias, scale, softcap, causal = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse, mask, bias)
    ctx.scale, ctx.softcap, ctx.causal = scale, softcap, causal
    ctx.want_dbias = bias is not None and bias.requires_grad


def _backward(ctx, dout, dlse):
    # lse is an auxiliary output: its gradient is not propagated (dlse is ignored)
    q, k, v, o, lse, mask, bias = ctx.saved_tensors
    dq, dk, dv, dbias = torch.ops.dmattn.bwd(dout.contiguous(), q, k, v, o, lse, mask, bias,
                                             ctx.scale, ctx.softcap, ctx.causal,
                                             False, ctx.want_dbias)  # deterministic regardless
    return dq, dk, dv, None, (dbias if ctx.want_dbias else None), None, None, None


_fwd.register_autograd(_backward, setup_context=_setup_context)


def flash_dmattn_func(query, key, value, attn_mask=None, attn_bias=None, softmax_scale=None,
                      is_causal=None, softcap=None, deterministic=None, return_attn_probs=None):
    """Dynamic mask attention, flash-dmattn's signature and layouts.

    query (B, Lq, H, D); key, value (B, Lk, Hkv, D), H a multiple of Hkv; float16 or bfloat16.
    attn_mask: bool, broadcastable (B|1, H|Hkv|1, Lq|1, Lk), True = visible; a key tile whose mask
    is False for every query of the tile is skipped. attn_bias: the same shape rules, the query's
    dtype or float32, added to the scaled scores. softmax_scale: default 1/sqrt(D). is_causal:
    bottom-right aligned (query i sees keys up to i + Lk - Lq). softcap: s = c tanh(s / c) when
    given. deterministic: accepted for compatibility; dmattn's backward is always deterministic.
    Returns the output (B, Lq, H, D); with return_attn_probs, (output, softmax_lse (B, H, Lq),
    None): unlike flash-dmattn, no attention probabilities are returned.
    Gradients flow to query, key, value and attn_bias (reduced to its broadcast shape).
    """
    D = query.shape[-1]
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(D)
    o, lse = torch.ops.dmattn.fwd(query, key, value, attn_mask, attn_bias, scale,
                                  float(softcap) if softcap else 0.0, bool(is_causal))
    if return_attn_probs:
        return o, lse, None
    return o


flash_sparse_attn_func = flash_dmattn_func
