"""PyTorch operators over dm_fwd_varlen and dm_bwd_varlen: flash_dmattn_varlen_func (SPEC 5).

dmattn::fwd_varlen and dmattn::bwd_varlen are torch.library custom operators with fake
implementations, so torch.compile traces them without graph breaks; autograd runs
dmattn::bwd_varlen. They run as ops.py's operators do (PyTorch's current stream, one dmattn
context per device, every check and message the C library's: DmError).
Written without torch or a GPU at hand: tests/test_varlen_torch.py runs it on the GPU machine.
"""
import math
from typing import Optional, Tuple

import torch

from . import capi
from .ops import _DTYPES, _context, _deterministic, _stream, _tensor

def _offsets(name, t):
    """cu_seqlens as a DmTensor. A dtype a DmTensor cannot name (int64, what torch.cumsum gives)
    goes as DM_DTYPE_NONE, so that the library refuses it by name like any other wrong dtype
    ("cu_seqlens_q.dtype = none: expected i32"), rather than _tensor's TypeError."""
    if t.dtype in _DTYPES or t.dim() > capi.DM_MAX_RANK:
        return _tensor(name, t)
    d = _tensor(name, None)
    d.data = t.data_ptr() if t.numel() else None
    d.rank = t.dim()
    d.shape[:d.rank] = [int(n) for n in t.shape]
    d.strides[:d.rank] = [int(s) for s in t.stride()]
    return d


def _lse_shape(q):
    # (H, total_q); a q of another rank is the library's to refuse (it checks q first)
    return (q.shape[1], q.shape[0]) if q.dim() == 3 else (0,)


@torch.library.custom_op("dmattn::fwd_varlen", mutates_args=())
def _fwd_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
                mask: Optional[torch.Tensor], bias: Optional[torch.Tensor], scale: float,
                softcap: float, causal: bool, window: int,
                deterministic: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    # deterministic: not the forward's (always the same bits); recorded for its backward
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(_lse_shape(q), dtype=torch.float32, device=q.device)
    a = capi.DmFwdVarlenArgs()
    a.q, a.k, a.v = _tensor("query", q), _tensor("key", k), _tensor("value", v)
    a.cu_seqlens_q = _offsets("cu_seqlens_q", cu_seqlens_q)
    a.cu_seqlens_k = _offsets("cu_seqlens_k", cu_seqlens_k)
    a.max_seqlen_q, a.max_seqlen_k = max_seqlen_q, max_seqlen_k
    a.mask, a.bias = _tensor("attn_mask", mask), _tensor("attn_bias", bias)
    a.o, a.lse = _tensor("o", o), _tensor("lse", lse)
    a.scale, a.softcap, a.causal, a.window = scale, softcap, int(causal), window
    capi.fwd_varlen(_context(q.device), a, _stream(q.device))
    return o, lse


@_fwd_varlen.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask, bias, scale, softcap,
      causal, window, deterministic):
    return q.new_empty(q.shape), q.new_empty(_lse_shape(q), dtype=torch.float32)


def _bwd_varlen_impl(dout, q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                     max_seqlen_k, mask, bias, scale, softcap, causal, deterministic,
                     want_dbias):
    # zeros: the library leaves the rows of tokens outside every sequence alone, and their
    # gradient is 0 (the output does not depend on them)
    dq, dk, dv = (torch.zeros(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    dbias = (torch.zeros(bias.shape, dtype=bias.dtype, device=bias.device) if want_dbias
             else q.new_empty(0))
    a = capi.DmBwdVarlenArgs()
    a.dout, a.q, a.k, a.v = (_tensor(n, t) for n, t in (("dout", dout), ("query", q),
                                                        ("key", k), ("value", v)))
    a.o, a.lse = _tensor("o", o), _tensor("lse", lse)
    a.cu_seqlens_q = _offsets("cu_seqlens_q", cu_seqlens_q)
    a.cu_seqlens_k = _offsets("cu_seqlens_k", cu_seqlens_k)
    a.max_seqlen_q, a.max_seqlen_k = max_seqlen_q, max_seqlen_k
    a.mask, a.bias = _tensor("attn_mask", mask), _tensor("attn_bias", bias)
    a.dq, a.dk, a.dv = _tensor("dq", dq), _tensor("dk", dk), _tensor("dv", dv)
    a.dbias = _tensor("dbias", dbias if want_dbias else None)
    a.scale, a.softcap, a.causal = scale, softcap, int(causal)
    a.deterministic = int(deterministic)
    capi.bwd_varlen(_context(q.device), a, _stream(q.device))
    return dq, dk, dv, dbias


@torch.library.custom_op("dmattn::bwd_varlen", mutates_args=())
def _bwd_varlen(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                o: torch.Tensor, lse: torch.Tensor, cu_seqlens_q: torch.Tensor,
                cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
                mask: Optional[torch.Tensor], bias: Optional[torch.Tensor], scale: float,
                softcap: float, causal: bool, deterministic: bool,
                want_dbias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _bwd_varlen_impl(dout, q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                            max_seqlen_k, mask, bias, scale, softcap, causal, deterministic,
                            want_dbias)


@_bwd_varlen.register_fake
def _(dout, q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask, bias,
      scale, softcap, causal, deterministic, want_dbias):
    dbias = bias.new_empty(bias.shape) if want_dbias else q.new_empty(0)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dbias


def _window_mask_varlen(q, k, bias, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                        max_seqlen_k, window):
    """The mask a forward with a window attends with: dm_window_mask_varlen's mask' (key-based
    when bias and mask are, else query-based (total_q, heads, max_seqlen_k); heads the broadcast
    of bias's and mask's), or mask itself where no window applies (max_seqlen_k <= window). The
    selection has no gradient. Shapes the library would refuse are passed on for it to name."""
    key_based = bias.dim() == 2 and (mask is None or mask.dim() == 2)
    hb = bias.shape[1] if bias.dim() >= 2 else 1
    hm = mask.shape[1] if mask is not None and mask.dim() >= 2 else 1
    heads = hb if hm in (1, hb) else hm
    shape = (k.shape[0], heads) if key_based else (q.shape[0], heads, max_seqlen_k)
    out = torch.empty(shape, dtype=torch.bool, device=q.device)
    a = capi.DmWindowMaskVarlenArgs()
    a.bias, a.mask, a.out = (_tensor("attn_bias", bias.detach()), _tensor("attn_mask", mask),
                             _tensor("out", out))
    a.cu_seqlens_q = _offsets("cu_seqlens_q", cu_seqlens_q)
    a.cu_seqlens_k = _offsets("cu_seqlens_k", cu_seqlens_k)
    a.total_q, a.total_k = q.shape[0], k.shape[0]
    a.max_seqlen_q, a.max_seqlen_k, a.window = max_seqlen_q, max_seqlen_k, window
    applied = capi.window_mask_varlen(_context(q.device), a, _stream(q.device))
    return out if applied else mask


def _setup_context(ctx, inputs, output):
    (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask, bias, scale, softcap,
     causal, window, deterministic) = inputs
    o, lse = output
    if window:  # the backward reads the mask the forward attended with
        mask = _window_mask_varlen(q, k, bias, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                   max_seqlen_k, window)
    ctx.save_for_backward(q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, mask, bias)
    ctx.max_seqlen_q, ctx.max_seqlen_k = max_seqlen_q, max_seqlen_k
    ctx.scale, ctx.softcap, ctx.causal = scale, softcap, causal
    ctx.deterministic = deterministic
    ctx.want_dbias = bias is not None and bias.requires_grad


def _backward(ctx, dout, dlse):
    # lse is an auxiliary output: its gradient is not propagated (dlse is ignored)
    q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, mask, bias = ctx.saved_tensors
    dq, dk, dv, dbias = torch.ops.dmattn.bwd_varlen(
        dout.contiguous(), q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, ctx.max_seqlen_q,
        ctx.max_seqlen_k, mask, bias, ctx.scale, ctx.softcap, ctx.causal, ctx.deterministic,
        ctx.want_dbias)
    return (dq, dk, dv) + (None,) * 5 + ((dbias if ctx.want_dbias else None),) + (None,) * 5


_fwd_varlen.register_autograd(_backward, setup_context=_setup_context)


def flash_dmattn_varlen_func(query, key, value, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                             max_seqlen_k, attn_mask=None, attn_bias=None, softmax_scale=None,
                             is_causal=None, softcap=None, deterministic=None,
                             return_attn_probs=None, window_size=None):
    """Dynamic mask attention over a varlen batch (cu_seqlens), flash-dmattn's arguments.

    Supports multi-query and grouped-query attention (MQA/GQA) by passing in K, V with fewer heads
    than Q. Note that the number of heads in Q must be divisible by the number of heads in KV.
    For example, if Q has 6 heads and K, V have 2 heads, head 0, 1, 2 of Q will attend to head 0
    of K, V, and head 3, 4, 5 of Q will attend to head 1 of K, V.
    Similarly, attn_mask and attn_bias may have a head dimension of 1, nheads_k or nheads: with 1,
    all heads use the same mask/bias; with 2 (of 6), heads 0, 1, 2 of Q use head 0 of mask/bias,
    heads 3, 4, 5 head 1; with 6, each head uses its own.
    If is_causal=True, the causal mask is aligned to the bottom right corner of each sequence's
    attention matrix: with seqlen_q = 2 and seqlen_k = 5 (1 = keep, 0 = masked out):
        1 1 1 1 0
        1 1 1 1 1
    If the row of the mask is all zero, the output will be zero (and softmax_lse +inf).

    Arguments:
        query: (total_q, nheads, headdim), total_q = the number of query tokens in the batch;
            float16 or bfloat16.
        key, value: (total_k, nheads_k, headdim), total_k = the number of key tokens.
        cu_seqlens_q, cu_seqlens_k: int32 (batch_size + 1,) on the GPU: the cumulative sequence
            lengths, from 0 to total_q (total_k); sequence b holds queries [cu_seqlens_q[b],
            cu_seqlens_q[b + 1]) and keys [cu_seqlens_k[b], cu_seqlens_k[b + 1]).
        max_seqlen_q, max_seqlen_k: int. Maximum query (key) sequence length in the batch.
        attn_mask: bool, optional, True = visible; query-based (total_q, {nheads|nheads_k|1},
            max_seqlen_k) (row = the query's index in the batch, column = the key's index inside
            its sequence) or key-based (total_k, {nheads|nheads_k|1}) (one value per key, shared
            by every query of its sequence). A key tile masked for every query of a query tile
            is skipped.
        attn_bias: optional, the query's dtype or float32, added to the scaled scores; the same
            two layouts as attn_mask, chosen independently of it.
        softmax_scale: float. The scaling of QK^T before applying softmax. Default 1/sqrt(headdim).
        is_causal: bool. Whether to apply the causal mask (bottom right aligned, per sequence).
        softcap: float. Anything > 0 activates softcapping attention (s = c tanh(s / c)).
        deterministic: the backward's dq in a fixed summation order (the same bits run to run,
            slower on sm_90); also when torch.use_deterministic_algorithms(True) is on.
            Otherwise dq may differ in its last bits run to run (dk, dv, dbias never do).
        return_attn_probs: whether to return softmax_lse too (no probabilities: see below).
        window_size: int, optional (beyond flash-dmattn's varlen signature): with an attn_bias,
            each query attends to the window_size keys of its own sequence with the largest bias
            among those attn_mask leaves visible (maybe_create_mask per sequence, ties to the
            lower key index; a sequence of at most window_size keys keeps its mask), computed by
            the C library (dm_window_mask_varlen). Ignored without attn_bias, as in
            flash_dmattn_func.
    Return:
        out: (total_q, nheads, headdim), the query's dtype.
        With return_attn_probs, (out, softmax_lse, None): softmax_lse (nheads, total_q) float32,
            the logsumexp of each row of the (scaled, biased, masked) scores.

    Differs from flash-dmattn:
      - argument order: cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k follow value (as in
        flash-attn's flash_attn_varlen_func), and attn_mask, attn_bias are keywords defaulting to
        None (flash-dmattn's varlen function takes them positionally before cu_seqlens_q);
      - the mask and bias layouts are told apart by rank alone, each on its own: rank 3 is
        query-based, rank 2 key-based, also when total_q == total_k;
      - no block_table (paged KV cache) and no attention probabilities (None in their place);
      - gradients flow to query, key, value and attn_bias (dbias in attn_bias's layout: a
        key-based one summed over its sequence's queries); under a window the backward uses the
        forward's window mask (recomputed, deterministic), the selection itself has no gradient;
      - query tokens past max_seqlen_q in their sequence are not computed (out holds no defined
        value there): max_seqlen_q and max_seqlen_k must be at least every sequence's length.
    """
    D = query.shape[-1]
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(D)
    window = int(window_size) if window_size and attn_bias is not None else 0
    o, lse = torch.ops.dmattn.fwd_varlen(query, key, value, cu_seqlens_q, cu_seqlens_k,
                                         max_seqlen_q, max_seqlen_k, attn_mask, attn_bias, scale,
                                         float(softcap) if softcap else 0.0, bool(is_causal),
                                         window, _deterministic(deterministic))
    if return_attn_probs:
        return o, lse, None
    return o


flash_sparse_attn_varlen_func = flash_dmattn_varlen_func
