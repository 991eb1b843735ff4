"""fia.merge.merge_attention_states against one softmax over the union of the key sets."""
import numpy as np
import pytest

from fia.merge import merge_attention_states


def _state(s, v):
    """(out, lse) of softmax(s) @ v over the last axis of s [R, K], v [K, D]; empty K:
    out 0, lse +inf (fia's convention)."""
    if s.shape[-1] == 0:
        return np.zeros(s.shape[:-1] + (v.shape[-1],)), np.full(s.shape[:-1], np.inf)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - m)
    return (e / e.sum(-1, keepdims=True)) @ v, (m + np.log(e.sum(-1, keepdims=True)))[..., 0]


@pytest.mark.parametrize("P", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_equals_union(P, seed):
    rng = np.random.default_rng(seed)
    R, K, D = 7, 40, 16
    s = rng.standard_normal((R, K)) * 4
    v = rng.standard_normal((K, D))
    part = rng.integers(0, P, K)
    outs, lses = [], []
    for p in range(P):
        idx = np.nonzero(part == p)[0]
        o, l = _state(s[:, idx], v[idx])
        outs.append(o)
        lses.append(l[:, None])  # [R, 1] like fia's TND softmax_lse
    o_ref, l_ref = _state(s, v)
    o, l = merge_attention_states(outs, lses)
    assert o.shape == (R, D) and l.shape == (R, 1) and o.dtype == np.float64
    np.testing.assert_allclose(o, o_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(l[:, 0], l_ref, rtol=1e-12, atol=1e-12)


def test_empty_parts_both_conventions():
    rng = np.random.default_rng(3)
    s = rng.standard_normal((4, 10))
    v = rng.standard_normal((10, 8))
    o_ref, l_ref = _state(s, v)
    e_fia = (np.zeros((4, 8)), np.full(4, np.inf))
    e_fi = (np.full((4, 8), np.nan), np.full(4, -np.inf))  # garbage out must not leak
    o, l = merge_attention_states([e_fia[0], o_ref, e_fi[0]], [e_fia[1], l_ref, e_fi[1]])
    np.testing.assert_allclose(o, o_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(l, l_ref, rtol=1e-12)
    o, l = merge_attention_states([e_fia[0], e_fia[0]], [e_fia[1], e_fi[1]])
    assert np.all(o == 0) and np.all(np.isposinf(l))


def test_float32_and_order_determinism():
    rng = np.random.default_rng(4)
    outs = [rng.standard_normal((3, 5, 64)).astype(np.float32) for _ in range(4)]
    lses = [(rng.standard_normal((3, 5)) * 10).astype(np.float32) for _ in range(4)]
    o1, l1 = merge_attention_states(outs, lses)
    o2, l2 = merge_attention_states(outs, lses)
    assert o1.dtype == np.float32 and l1.dtype == np.float32
    assert np.array_equal(o1, o2) and np.array_equal(l1, l2)
    o64, l64 = merge_attention_states([o.astype(np.float64) for o in outs], lses)
    np.testing.assert_allclose(o1, o64, rtol=1e-5, atol=1e-6)
    # another order: same numbers within rounding
    o3, _ = merge_attention_states(outs[::-1], lses[::-1])
    np.testing.assert_allclose(o1, o3, rtol=1e-5, atol=1e-6)


def test_bf16_numpy_and_torch():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(5)
    outs = [rng.standard_normal((6, 32)).astype(ml_dtypes.bfloat16) for _ in range(2)]
    lses = [rng.standard_normal(6).astype(np.float32) for _ in range(2)]
    o, l = merge_attention_states(outs, lses)
    assert o.dtype == ml_dtypes.bfloat16 and l.dtype == np.float32
    torch = pytest.importorskip("torch")
    to = [torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16) for x in outs]
    tl = [torch.from_numpy(x) for x in lses]
    ot, lt = merge_attention_states(to, tl)
    assert isinstance(ot, torch.Tensor) and ot.dtype == torch.bfloat16
    assert np.array_equal(ot.float().numpy(), o.astype(np.float32))
    assert np.array_equal(lt.numpy(), l)


def test_errors():
    a = np.zeros((2, 4))
    with pytest.raises(ValueError):
        merge_attention_states([], [])
    with pytest.raises(ValueError):
        merge_attention_states([a], [])
    with pytest.raises(ValueError):
        merge_attention_states([a, np.zeros((3, 4))], [np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError):
        merge_attention_states([a], [np.zeros(3)])
    with pytest.raises(ValueError):
        merge_attention_states([a, a.astype(np.float32)], [np.zeros(2), np.zeros(2)])
