"""The two fia extensions the C8 layer's context-parallel decode stands on, at the operator
level, on one process:

* npu_kv_quant_sparse_flash_attention(return_softmax_lse=True) returns (out, softmax_max,
  softmax_sum) with npu_sparse_flash_attention's convention: max = the largest scaled logit,
  sum = sum exp(s - max), lse = max + log(sum) (natural log); a row that sees no token holds
  max = sum = 0 (its lse is taken as +inf, weight 0 in merge_attention_states).
* npu_quant_lightning_indexer(return_value=True) returns the fp32 scores its ranking used
  (-inf where the index is -1), so shards' lists can be merged into the global top-k.

And the composition: a C8 cache split into two token shards (position g on shard g % 2),
attended shard by shard and merged with merge_attention_states, equals the attention over the
whole cache within the bf16 output tolerance (each part is a bf16 output: one more rounding).
"""
import numpy as np
import pytest

import fia
from conftest import assert_close, f64, rnd
from fia.merge import merge_attention_states
from oracles import check_topk, qli_contract_scores, sfa_batch_stats

torch = pytest.importorskip("torch")


def _c8_rows(rng, n):
    """n C8 rows (int8 view [n, 656]) and their dequantized k_nope (rounded to bf16) / k_rope."""
    import ml_dtypes
    k8 = rng.integers(-127, 128, size=(n, 512)).astype(np.int8)
    kr = rnd(rng, (n, 64), "bfloat16", 0.3)
    sc = (rng.random((n, 4)) * 0.004 + 0.001).astype(np.float32)
    rows = np.zeros((n, 656), np.uint8)
    rows[:, :512] = k8.view(np.uint8)
    rows[:, 512:640] = kr.view(np.uint8).reshape(n, 128)
    rows[:, 640:656] = sc.astype("<f4").view(np.uint8).reshape(n, 16)
    kn = (k8.astype(np.float32) * np.repeat(sc, 128, axis=1)).astype(ml_dtypes.bfloat16)
    return rows.view(np.int8), f64(kn), f64(kr)


def _lse(smax, ssum):
    l = smax.float() + torch.log(ssum.float())
    return torch.where(ssum > 0, l, torch.full_like(l, float("inf")))


def test_kv_quant_sfa_softmax_stats_tnd(rng):
    T, N1, S2, K = 3, 8, 40, 12
    q = rnd(rng, (T, N1, 576), "bfloat16", 2.0)
    rows, kn, kr = _c8_rows(rng, S2)
    idx = np.full((T, 1, K), -1, np.int32)
    idx[0, 0, :K] = rng.permutation(S2)[:K]
    idx[1, 0, :5] = rng.permutation(S2)[:5]   # row 2 sees nothing
    qt, kt, it = (torch.from_numpy(np.ascontiguousarray(a)) for a in
                  (q.view(np.uint16), rows.reshape(S2, 1, 656), idx))
    qt = qt.view(torch.bfloat16)
    kw = dict(actual_seq_lengths_query=torch.tensor([T], dtype=torch.int32),
              actual_seq_lengths_kv=torch.tensor([S2], dtype=torch.int32), layout_query="TND",
              layout_kv="TND", sparse_mode=0, attention_mode=2)
    out, smax, ssum = fia.npu_kv_quant_sparse_flash_attention(
        qt, kt, kt, it, 0.07, 2, 2, return_softmax_lse=True, **kw)
    assert tuple(smax.shape) == (1, T, N1) and tuple(ssum.shape) == (1, T, N1)
    plain = fia.npu_kv_quant_sparse_flash_attention(qt, kt, kt, it, 0.07, 2, 2, **kw)
    assert torch.equal(out, plain)  # the flag changes nothing but the extra outputs
    qd = f64(q)
    wo, wm, ws = sfa_batch_stats(qd[..., :512], qd[..., 512:], kn, kr, idx[:, 0], 0.07, T, S2,
                                 1, 0)
    assert_close(out.float().numpy(), wo, "bfloat16", "out")
    assert np.allclose(smax[0].numpy(), wm, rtol=1e-5, atol=1e-5)
    assert np.allclose(ssum[0].numpy(), ws, rtol=1e-3, atol=1e-5)
    assert (smax[0, 2] == 0).all() and (ssum[0, 2] == 0).all()
    assert torch.isinf(_lse(smax[0], ssum[0])[2]).all()


def test_kv_quant_sfa_shards_merge_to_the_whole(rng):
    """Two token shards of a paged C8 cache, merged, equal the whole cache's attention."""
    T, N1, S2, K, bs, P = 2, 16, 200, 48, 16, 2
    q = rnd(rng, (T, N1, 576), "bfloat16", 2.0)
    rows, _, _ = _c8_rows(rng, S2)
    sel = np.stack([rng.permutation(S2)[:K] for _ in range(T)]).astype(np.int32)
    qt = torch.from_numpy(q.view(np.uint16)).view(torch.bfloat16)

    def attend(logical_rows, n, idx):
        nb = -(-n // bs)
        cache = np.zeros((nb + 1, bs, 1, 656), np.int8)
        cache.reshape(-1, 656)[bs:bs + n] = logical_rows  # blocks 1..nb
        bt = torch.arange(1, nb + 1, dtype=torch.int32).view(1, -1)
        ck = torch.from_numpy(cache)
        return fia.npu_kv_quant_sparse_flash_attention(
            qt, ck, ck, torch.from_numpy(idx), 0.07, 2, 2, block_table=bt,
            actual_seq_lengths_query=torch.tensor([T], dtype=torch.int32),
            actual_seq_lengths_kv=torch.tensor([n], dtype=torch.int32), layout_query="TND",
            layout_kv="PA_BSND", sparse_mode=0, attention_mode=2, return_softmax_lse=True)

    whole, _, _ = attend(rows, S2, sel.reshape(T, 1, K))
    outs, lses = [], []
    for r in range(P):
        loc = np.full((T, 1, K), -1, np.int32)
        for t in range(T):
            m = sel[t][sel[t] % P == r] // P
            loc[t, 0, :len(m)] = m
        if r == 1:
            loc[1, 0, :] = -1  # row 1 sees nothing on shard 1: weight 0 in the merge
        o, mx, sm = attend(rows[r::P], len(rows[r::P]), loc)
        outs.append(o)
        lses.append(_lse(mx[0], sm[0]))
    merged, lse = merge_attention_states(outs, lses)
    # row 1: only shard 0's tokens count, i.e. shard 0's own output
    assert torch.equal(merged[1], outs[0][1]) and torch.equal(lse[1], lses[0][1])
    # row 0: the union (one more bf16 rounding than the whole: the tolerance of bf16 outputs)
    assert_close(merged[0].float().numpy(), whole[0].double().numpy(), "bfloat16", "merged")


def test_quant_lightning_indexer_return_value(rng):
    B, S1, N1, S2, D, k = 1, 3, 8, 300, 128, 32
    q = rnd(rng, (B, S1, N1, D), "int8")
    key = rnd(rng, (B, S2, 1, D), "int8")
    w = rnd(rng, (B, S1, N1), "float16")
    sq = (rng.random((B, S1, N1)) * 0.01).astype(np.float16)
    sk = (rng.random((B, S2, 1)) * 0.01).astype(np.float16)
    args = (q, key, w, sq, sk, 0, 0)
    idx0 = fia.npu_quant_lightning_indexer(*args, sparse_count=k)
    idx, val = fia.npu_quant_lightning_indexer(*args, sparse_count=k, return_value=True)
    assert np.array_equal(idx, idx0) and val.dtype == np.float32 and val.shape == idx.shape
    sc = qli_contract_scores(q[0], key[0, :, 0], w[0], sq[0], f64(sk[0, :, 0]), S1, S2, 3)
    check_topk(idx[0, :, 0].astype(np.int64), sc, k, 1e-5)
    got = np.where(idx[0, :, 0] >= 0, sc[np.arange(S1)[:, None],
                                         np.maximum(idx[0, :, 0], 0)], -np.inf)
    assert np.allclose(val[0, :, 0], got, rtol=1e-5, atol=0)
    assert np.isneginf(val[0, :, 0][idx[0, :, 0] < 0]).all()
    # the values rank the list: non-increasing along each row
    v = val[0, :, 0]
    assert (np.diff(v, axis=1)[np.isfinite(v[:, 1:])] <= 0).all()
