"""flash_dmattn_func captured in a CUDA graph (torch.cuda.graph) and replayed on new inputs gives
the bits an eager call gives: forward and backward (dq, dk, dv, dbias), and a decode-shaped call
whose split-KV scratch comes from PyTorch's allocator, so from the graph's pool. Needs torch and
a CUDA GPU: reported as skipped without them."""
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import dmattn  # noqa: E402


def fresh(shape, seed, dtype=torch.bfloat16):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(*shape, device="cuda", dtype=dtype, generator=g)


def warm_up(fn, times=2):
    """As torch.cuda.graph's documentation asks: a few calls on a side stream first (here they
    also compile and load the kernels, which a capture must not do)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(times):
            fn()
    torch.cuda.current_stream().wait_stream(s)


def test_forward_and_backward_replay_with_the_eager_bits():
    B, L, H, Hkv, D = 2, 200, 4, 2, 64
    shapes = [(B, L, H, D), (B, L, Hkv, D), (B, L, Hkv, D), (B, H, 1, L)]
    q, k, v, bias = (fresh(s, i).requires_grad_(True) for i, s in enumerate(shapes))
    do = fresh((B, L, H, D), 9)

    def step():
        for t in (q, k, v, bias):
            t.grad = None
        dmattn.flash_dmattn_func(q, k, v, attn_bias=bias, is_causal=True).backward(do)

    warm_up(step)
    graph = torch.cuda.CUDAGraph()
    for t in (q, k, v, bias):
        t.grad = None
    with torch.cuda.graph(graph):
        o = dmattn.flash_dmattn_func(q, k, v, attn_bias=bias, is_causal=True)
        o.backward(do)
    for round_ in range(2):  # new values in the captured tensors, then replay
        new = [fresh(s, 20 + 4 * round_ + i) for i, s in enumerate(shapes)]
        with torch.no_grad():
            for t, n in zip((q, k, v, bias), new):
                t.copy_(n)
        graph.replay()
        torch.cuda.synchronize()
        leaves = [n.clone().requires_grad_(True) for n in new]
        ref = dmattn.flash_dmattn_func(*leaves[:3], attn_bias=leaves[3], is_causal=True)
        ref.backward(do)
        assert torch.equal(o, ref)
        for name, t, r in zip(("dq", "dk", "dv", "dbias"), (q, k, v, bias), leaves):
            assert torch.equal(t.grad, r.grad), name


def test_a_split_decode_call_replays_with_its_scratch_from_the_graph_pool():
    B, Lq, Lk, H, Hkv, D = 4, 1, 8192, 8, 2, 128
    q, k, v = fresh((B, Lq, H, D), 1), fresh((B, Lk, Hkv, D), 2), fresh((B, Lk, Hkv, D), 3)
    bias = fresh((B, Hkv, 1, Lk), 4)
    warm_up(lambda: dmattn.flash_dmattn_func(q, k, v, attn_bias=bias))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o = dmattn.flash_dmattn_func(q, k, v, attn_bias=bias)
    k2 = fresh((B, Lk, Hkv, D), 5)
    k.copy_(k2)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(o, dmattn.flash_dmattn_func(q, k2, v, attn_bias=bias))
