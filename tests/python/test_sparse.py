"""npu_sparse_flash_attention, npu_kv_quant_sparse_flash_attention, npu_lightning_indexer,
npu_quant_lightning_indexer and npu_smallq_flash_attention through the Python API against the
float64 oracles."""

import ml_dtypes
import numpy as np
import pytest

import fia
from conftest import KINDS, assert_close, f64, kind_of, need, rnd, to_kind, torch
from oracles import check_topk, li_scores, sfa_batch, smallq


def _paged(rng, logical, lens, bs):
    """logical [B, S2, ...] -> (cache [blocks, bs, ...], block_table int32) with shuffled blocks."""
    B = logical.shape[0]
    nb = [-(-n // bs) for n in lens]
    blocks = sum(nb) + 2
    cache = np.zeros((blocks, bs) + logical.shape[2:], logical.dtype)
    bt = np.full((B, max(nb) + 1), -1, np.int32)
    perm = rng.permutation(blocks)
    p = 0
    for b in range(B):
        for i in range(nb[b]):
            bt[b, i] = perm[p]
            n = min(bs, logical.shape[1] - i * bs)
            cache[perm[p], :n] = logical[b, i * bs:i * bs + n]
            p += 1
    return cache, bt


def _indices(rng, B, S1, K, nblocks):
    idx = np.full((B, S1, 1, K), -1, np.int32)
    for b in range(B):
        for i in range(S1):
            n = rng.integers(1, K + 1)
            idx[b, i, 0, :n] = rng.integers(0, nblocks, n)
    return idx


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout_kv", ["BSND", "PA_BSND"])
@pytest.mark.parametrize("dtype,sbs,mode", [("bfloat16", 1, 3), ("float16", 4, 0)])
def test_sparse_flash_attention(kind, layout_kv, dtype, sbs, mode, rng):
    need(kind)
    B, S1, N1, S2, K = 2, 3, 4, 64, 12
    q = rnd(rng, (B, S1, N1, 512), dtype)
    qr = rnd(rng, (B, S1, N1, 64), dtype)
    k = rnd(rng, (B, S2, 1, 512), dtype)
    kr = rnd(rng, (B, S2, 1, 64), dtype)
    lkv = [64, 41]
    idx = _indices(rng, B, S1, K, S2 // sbs)
    extra = {}
    kk, kkr = k, kr
    if layout_kv == "PA_BSND":
        kk, bt = _paged(rng, k, lkv, 16)
        kkr = np.zeros(kk.shape[:3] + (64,), kr.dtype)
        for b in range(B):
            for i in range(-(-lkv[b] // 16)):
                kkr[bt[b, i], :] = kr[b, i * 16:(i + 1) * 16]
        extra["block_table"] = to_kind(bt, kind)
    lens_kv = to_kind(np.array(lkv, np.int32), kind)
    out, smax, ssum = fia.npu_sparse_flash_attention(
        to_kind(q, kind), to_kind(kk, kind), to_kind(kk, kind), to_kind(idx, kind), 0.06,
        query_rope=to_kind(qr, kind), key_rope=to_kind(kkr, kind), actual_seq_lengths_kv=lens_kv,
        sparse_block_size=sbs, layout_kv=layout_kv, sparse_mode=mode, attention_mode=2, **extra)
    assert kind_of(out) == kind and tuple(smax.shape) == (0,) and tuple(ssum.shape) == (0,)
    for b in range(B):
        wo, _ = sfa_batch(f64(q[b]), f64(qr[b]), f64(k[b, :, 0]), f64(kr[b, :, 0]),
                          idx[b, :, 0], 0.06, S1, lkv[b], sbs, mode)
        assert_close(f64(out)[b], wo, dtype, "out b%d" % b)


def test_sparse_flash_attention_tnd(rng):
    N1, K = 2, 8
    lq, lkv = [2, 3], [20, 30]
    cq, ckv = np.cumsum(lq), np.cumsum(lkv)
    q = rnd(rng, (cq[-1], N1, 512), "float16", 0.3)
    qr = rnd(rng, (cq[-1], N1, 64), "float16", 0.3)
    k = rnd(rng, (ckv[-1], 1, 512), "float16", 0.3)
    kr = rnd(rng, (ckv[-1], 1, 64), "float16", 0.3)
    idx = _indices(rng, 1, cq[-1], K, 20)[0]
    out, _, _ = fia.npu_sparse_flash_attention(
        q, k, None, idx, 0.05, query_rope=qr, key_rope=kr,
        actual_seq_lengths_query=cq.astype(np.int32), actual_seq_lengths_kv=ckv.astype(np.int32),
        layout_query="TND", layout_kv="TND", attention_mode=2)
    q0 = k0 = 0
    for b in range(2):
        wo, _ = sfa_batch(f64(q[q0:q0 + lq[b]]), f64(qr[q0:q0 + lq[b]]), f64(k[k0:k0 + lkv[b], 0]),
                          f64(kr[k0:k0 + lkv[b], 0]), idx[q0:q0 + lq[b], 0], 0.05, lq[b], lkv[b],
                          1, 3)
        assert_close(f64(out)[q0:q0 + lq[b]], wo, "float16", "b%d" % b)
        q0 += lq[b]
        k0 += lkv[b]


def _c8_rows(rng, n):
    """n C8 rows (int8 [n, 656]) and their dequantized k_nope [n, 512], k_rope [n, 64]."""
    k8 = rng.integers(-127, 128, (n, 512)).astype(np.int8)
    kr = rnd(rng, (n, 64), "bfloat16", 0.3)
    sc = (rng.random((n, 4)) * 0.004 + 0.001).astype(np.float32)
    rows = np.zeros((n, 656), np.uint8)
    rows[:, :512] = k8.view(np.uint8)
    rows[:, 512:640] = kr.view(np.uint8).reshape(n, 128)
    rows[:, 640:656] = sc.astype("<f4").view(np.uint8).reshape(n, 16)
    knope = k8.astype(np.float64) * np.repeat(sc, 128, axis=1)
    return rows.view(np.int8), knope, f64(kr)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout_kv", ["BSND", "PA_BSND"])
def test_kv_quant_sparse_flash_attention(kind, layout_kv, rng):
    need(kind)
    B, S1, N1, S2, K = 2, 2, 4, 48, 10
    q = rnd(rng, (B, S1, N1, 576), "bfloat16", 2.0)
    rows, knope, krope = _c8_rows(rng, B * S2)
    key = rows.reshape(B, S2, 1, 656)
    lkv = [48, 30]
    idx = _indices(rng, B, S1, K, S2)
    extra = {}
    if layout_kv == "PA_BSND":
        key, bt = _paged(rng, key, lkv, 16)
        extra["block_table"] = to_kind(bt, kind)
    out = fia.npu_kv_quant_sparse_flash_attention(
        to_kind(q, kind), to_kind(key, kind), to_kind(key, kind), to_kind(idx, kind), 0.1, 2, 2,
        actual_seq_lengths_kv=to_kind(np.array(lkv, np.int32), kind), layout_kv=layout_kv,
        attention_mode=2, **extra)
    assert tuple(out.shape) == (B, S1, N1, 512) and str(out.dtype).endswith("bfloat16")
    kn, krp = knope.reshape(B, S2, 512), krope.reshape(B, S2, 64)
    for b in range(B):
        qb = f64(q[b])
        wo, _ = sfa_batch(qb[..., :512], qb[..., 512:], kn[b], krp[b], idx[b, :, 0], 0.1, S1,
                          lkv[b], 1, 3)
        assert_close(f64(out)[b], wo, "bfloat16", "b%d" % b)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout_key", ["BSND", "PA_BSND"])
@pytest.mark.parametrize("dtype,mode", [("bfloat16", 3), ("float16", 0)])
def test_lightning_indexer(kind, layout_key, dtype, mode, rng):
    need(kind)
    B, S1, N1, S2, D, k = 2, 4, 8, 80, 64, 16
    q = rnd(rng, (B, S1, N1, D), dtype)
    key = rnd(rng, (B, S2, 1, D), dtype)
    w = rnd(rng, (B, S1, N1), "float32")
    lq, lkv = [4, 3], [80, 9]
    extra = {}
    kk = key
    if layout_key == "PA_BSND":
        kk, bt = _paged(rng, key, lkv, 16)
        extra["block_table"] = to_kind(bt, kind)
    idx, vals = fia.npu_lightning_indexer(
        to_kind(q, kind), to_kind(kk, kind), to_kind(w, kind),
        actual_seq_lengths_query=to_kind(np.array(lq, np.int32), kind),
        actual_seq_lengths_key=to_kind(np.array(lkv, np.int32), kind), layout_key=layout_key,
        sparse_count=k, sparse_mode=mode, return_value=True, **extra)
    assert tuple(idx.shape) == (B, S1, 1, k) and str(idx.dtype).endswith("int32")
    assert tuple(vals.shape) == (B, S1, 1, k) and str(vals.dtype).endswith(dtype)
    gi, gv = f64(idx).astype(np.int64), f64(vals)
    for b in range(B):
        sc = li_scores(f64(q[b]), f64(key[b, :, 0]), f64(w[b]), lq[b], lkv[b], mode)
        check_topk(gi[b, :, 0], sc, k, 1e-4, gv[b, :, 0], 1e-2 if dtype == "bfloat16" else 2e-3)
    # flag off: sparse_values is a [0] tensor of the query dtype; fp32 values as an extension
    idx2, v2 = fia.npu_lightning_indexer(
        to_kind(q, kind), to_kind(kk, kind), to_kind(w, kind),
        actual_seq_lengths_query=lq, actual_seq_lengths_key=lkv, layout_key=layout_key,
        sparse_count=k, sparse_mode=mode, **extra)
    assert tuple(v2.shape) == (0,) and str(v2.dtype).endswith(dtype)
    assert np.array_equal(f64(idx2), f64(idx))
    _, v3 = fia.npu_lightning_indexer(
        to_kind(q, kind), to_kind(kk, kind), to_kind(w, kind),
        actual_seq_lengths_query=lq, actual_seq_lengths_key=lkv, layout_key=layout_key,
        sparse_count=k, sparse_mode=mode, return_value=True, sparse_values_dtype="float32", **extra)
    assert str(v3.dtype).endswith("float32")
    assert np.allclose(f64(v3).astype(NP_BF(dtype)).astype(np.float64), gv, equal_nan=True)


def NP_BF(dtype):
    return ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16


def test_lightning_indexer_tnd(rng):
    N1, D, k = 4, 32, 8
    lq, lkv = [3, 2], [10, 20]
    cq, ckv = np.cumsum(lq), np.cumsum(lkv)
    q = rnd(rng, (cq[-1], N1, D))
    key = rnd(rng, (ckv[-1], 1, D))
    w = rnd(rng, (cq[-1], N1))
    idx, _ = fia.npu_lightning_indexer(q, key, w, actual_seq_lengths_query=cq.tolist(),
                                       actual_seq_lengths_key=ckv.tolist(), layout_query="TND",
                                       layout_key="TND", sparse_count=k)
    assert idx.shape == (cq[-1], 1, k)
    q0 = k0 = 0
    for b in range(2):
        sc = li_scores(f64(q[q0:q0 + lq[b]]), f64(key[k0:k0 + lkv[b], 0]), f64(w[q0:q0 + lq[b]]),
                       lq[b], lkv[b], 3)
        check_topk(idx[q0:q0 + lq[b], 0].astype(np.int64), sc, k, 1e-4)
        q0 += lq[b]
        k0 += lkv[b]


@pytest.mark.parametrize("kind", KINDS)
def test_quant_lightning_indexer(kind, rng):
    need(kind)
    B, S1, N1, S2, D, k = 2, 3, 8, 40, 64, 12
    q = rnd(rng, (B, S1, N1, D), "int8")
    key = rnd(rng, (B, S2, 1, D), "int8")
    w = rnd(rng, (B, S1, N1), "float16")
    sq = (rng.random((B, S1, N1)) * 0.01).astype(np.float16)
    sk = (rng.random((B, S2, 1)) * 0.01).astype(np.float16)
    lkv = [40, 17]
    idx = fia.npu_quant_lightning_indexer(
        *[to_kind(x, kind) for x in (q, key, w, sq, sk)], 0, 0,
        actual_seq_lengths_key=to_kind(np.array(lkv, np.int32), kind), sparse_count=k)
    assert tuple(idx.shape) == (B, S1, 1, k)
    gi = f64(idx).astype(np.int64)
    for b in range(B):
        ws = f64(w[b]) * f64(sq[b])
        sc = li_scores(f64(q[b]), f64(key[b, :, 0]), ws, S1, lkv[b], 3) * f64(sk[b, :, 0])[None]
        check_topk(gi[b, :, 0], sc, k, 1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_smallq(kind, rng):
    need(kind)
    q = rnd(rng, (4, 3, 72))
    k = rnd(rng, (4, 50, 72))
    v = rnd(rng, (4, 50, 72))
    out = fia.npu_smallq_flash_attention(*[to_kind(x, kind) for x in (q, k, v)])
    assert kind_of(out) == kind and str(out.dtype).endswith("float16")
    assert_close(out, smallq(f64(q), f64(k), f64(v)), "float16")
    o = to_kind(np.zeros((4, 3, 72), np.float16), kind)
    assert fia.npu_smallq_flash_attention(*[to_kind(x, kind) for x in (q, k, v)], out=o) is o
    assert np.array_equal(f64(o), f64(out))
    # strided: heads of a [H, S, 2D] buffer
    kb = np.zeros((4, 50, 144), np.float16)
    kb[..., :72] = k
    out2 = fia.npu_smallq_flash_attention(q, kb[..., :72], v)
    assert np.array_equal(f64(out2), f64(out))


def test_plans_of_sparse_ops(rng):
    q = rnd(rng, (1, 2, 4, 32))
    key = rnd(rng, (1, 30, 1, 32))
    w = rnd(rng, (1, 2, 4), "float32")
    p = fia.plan.npu_lightning_indexer(q, key, w, sparse_count=8, return_value=True)
    idx, vals = p.execute()
    key[...] = rnd(rng, (1, 30, 1, 32))
    idx2, vals2 = p.execute()
    assert idx2 is idx
    ri, rv = fia.npu_lightning_indexer(q, key, w, sparse_count=8, return_value=True)
    assert np.array_equal(idx, ri) and np.array_equal(vals, rv)
