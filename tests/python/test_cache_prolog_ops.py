"""scatter_update_, npu_scatter_nd_update_ and npu_mla_prolog_v3 through the Python package:
in place on numpy arrays and torch tensors, against direct indexing oracles and the pure-torch
golden of the prolog's contract (npu_golden.py, the golden's bf16 rounding points)."""
import numpy as np
import pytest
import torch

import fia
import npu_golden as G
from conftest import KINDS, f64, need, rnd, to_kind


@pytest.mark.parametrize("kind", KINDS)
def test_scatter_update(rng, kind):
    need(kind)
    data = rnd(rng, (3, 10, 8), "bfloat16")
    upd = rnd(rng, (3, 4, 8), "bfloat16")
    idx = np.array([0, 6, 3], np.int64)
    want = f64(data).copy()
    for b in range(3):
        want[b, idx[b]:idx[b] + 4] = f64(upd)[b]
    d = to_kind(data.copy(), kind)
    r = fia.scatter_update_(d, to_kind(idx, kind), to_kind(upd, kind), -2)
    assert r is d and np.array_equal(f64(d), want)
    # out of range: nothing written
    d = to_kind(data.copy(), kind)
    with pytest.raises(ValueError):
        fia.scatter_update_(d, to_kind(np.array([0, 7, 3], np.int64), kind), to_kind(upd, kind), -2)
    assert np.array_equal(f64(d), f64(data))
    c = fia.scatter_update(to_kind(data, kind), to_kind(idx, kind), to_kind(upd, kind), -2)
    assert np.array_equal(f64(c), want) and np.array_equal(f64(to_kind(data, kind)), f64(data))


@pytest.mark.parametrize("kind", KINDS)
def test_scatter_nd_update(rng, kind):
    need(kind)
    cache = rnd(rng, (6, 4, 1, 16), "bfloat16")
    rows = rnd(rng, (5, 16), "bfloat16")
    slots = np.array([3, 0, 22, 9, 3], np.int64)  # a duplicate: the later entry wins
    want = f64(cache).reshape(24, 16).copy()
    for i, s in enumerate(slots):
        want[s] = f64(rows)[i]
    c = to_kind(cache.copy(), kind)
    flat = c.reshape(24, 16) if kind == "numpy" else c.view(24, 16)
    r = fia.npu_scatter_nd_update_(flat, to_kind(slots.reshape(-1, 1), kind), to_kind(rows, kind))
    assert r is flat and np.array_equal(f64(c).reshape(24, 16), want)
    c2 = to_kind(cache.copy(), kind)  # the paged form without a flat view (fia extension)
    fia.npu_scatter_nd_update_(c2, to_kind(slots.reshape(-1, 1), kind),
                               to_kind(rows.reshape(5, 1, 16), kind), cache_mode="PA_BSND")
    assert np.array_equal(f64(c2).reshape(24, 16), want)
    bad = slots.copy()
    bad[2] = -1
    c3 = to_kind(cache.copy(), kind)
    flat = c3.reshape(24, 16) if kind == "numpy" else c3.view(24, 16)
    with pytest.raises(ValueError):
        fia.npu_scatter_nd_update_(flat, to_kind(bad.reshape(-1, 1), kind), to_kind(rows, kind))
    assert np.array_equal(f64(c3), f64(cache))


def _prolog_inputs(seed, T=7, He=96, Hcq=64, N=4, D=32, nb=4, bs=16):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, sc=1.0: (torch.randn(*s, generator=g) * sc).bfloat16()
    a = dict(token_x=r(T, He), weight_dq=r(He, Hcq, sc=He ** -0.5),
             weight_uq_qr=r(Hcq, N * (D + 64), sc=Hcq ** -0.5), weight_uk=r(N, D, 512, sc=D ** -0.5),
             weight_dkv_kr=r(He, 576, sc=He ** -0.5), rmsnorm_gamma_cq=r(Hcq) + 1,
             rmsnorm_gamma_ckv=r(512) + 1, rope_sin=r(T, 64), rope_cos=r(T, 64))
    kv = r(nb, bs, 1, 512)
    kr = r(nb, bs, 1, 64)
    return a, kv, kr


def _ulps_close(got, want, what, ulps=2):
    got, want = got.double(), want.double()
    tol = ulps * 2.0 ** -7 * want.abs() + 2e-3 * want.abs().max()
    bad = (got - want).abs() > tol
    assert not bad.any(), (what, float((got - want).abs().max()))


def test_mla_prolog_v3_pa_bsnd_against_golden():
    a, kv, kr = _prolog_inputs(1)
    idx = torch.tensor([5, 17, -1, 40, 63, 0, 22], dtype=torch.int64)
    kv1, kr1, kv2, kr2 = kv.clone(), kr.clone(), kv.clone(), kr.clone()
    kw = dict(cache_index=idx, rmsnorm_epsilon_cq=1e-6, rmsnorm_epsilon_ckv=1e-6,
              cache_mode="PA_BSND", query_norm_flag=True)
    got = fia.npu_mla_prolog_v3(*a.values(), kv1, kr1, **kw)
    want = G.npu_mla_prolog_v3(*a.values(), kv2, kr2, **kw)
    assert got[0].shape == (7, 4, 512) and got[1].shape == (7, 4, 64) and got[3].shape == (7, 64)
    assert got[2].shape == (0,) and got[4].shape == (0,)
    for i, n in ((0, "query_out"), (1, "query_rope_out"), (3, "query_norm")):
        _ulps_close(got[i], want[i], n)
    _ulps_close(kv1, kv2, "kv_cache")
    _ulps_close(kr1, kr2, "kr_cache")
    untouched = torch.ones(64, dtype=torch.bool)
    untouched[idx[idx >= 0]] = False
    assert torch.equal(kv1.view(64, 512)[untouched], kv.view(64, 512)[untouched])
    # the token with index -1 wrote nothing, the others their rows
    assert not torch.equal(kv1.view(64, 512)[5], kv.view(64, 512)[5])


def test_mla_prolog_v3_bsnd_and_errors():
    a, _, _ = _prolog_inputs(2)
    x = a["token_x"]
    a3 = dict(a, token_x=x.view(1, 7, -1), rope_sin=a["rope_sin"].view(1, 7, 64),
              rope_cos=a["rope_cos"].view(1, 7, 64))
    kv = torch.zeros(1, 7, 1, 512, dtype=torch.bfloat16)
    kr = torch.zeros(1, 7, 1, 64, dtype=torch.bfloat16)
    q, qr, _, _, _ = fia.npu_mla_prolog_v3(*a3.values(), kv, kr, cache_mode="BSND")
    kv2, kr2 = kv.clone().zero_(), kr.clone().zero_()
    gq, gqr, _, _, _ = G.npu_mla_prolog_v3(*a3.values(), kv2, kr2, cache_mode="BSND")
    assert q.shape == (1, 7, 4, 512)
    _ulps_close(q, gq, "query_out")
    _ulps_close(kv, kv2, "kv_cache")
    with pytest.raises(NotImplementedError, match="weight_quant_mode"):
        fia.npu_mla_prolog_v3(*a3.values(), kv, kr, cache_mode="BSND", weight_quant_mode=1)
    with pytest.raises(ValueError):  # slot beyond the cache: nothing written
        kvp = torch.zeros(2, 4, 1, 512, dtype=torch.bfloat16)
        fia.npu_mla_prolog_v3(*a.values(), kvp, torch.zeros(2, 4, 1, 64, dtype=torch.bfloat16),
                              cache_index=torch.arange(7) * 2)
    assert not kvp.any()


def test_mla_prolog_v3_c8_cache():
    """kv_cache_quant_mode=3: the 656-byte C8 rows (int8 latent per 128-tile | bf16 rope | 4 fp32
    scales) against the bf16 path of the same call: the rope bytes equal its kr row, each scale
    is the tile's max |latent| (clipped by k_nope_clip_alpha) / 127, the int8 latent times its
    scale is the bf16 latent within half a step (plus a bf16 ulp); rows of negative indices and
    the dummy kr_cache are untouched; nothing is written on a bad call."""
    a, kv, kr = _prolog_inputs(3)
    idx = torch.tensor([5, 17, -1, 40, 63, 0, 22], dtype=torch.int64)
    kv0, kr0 = kv.clone(), kr.clone()
    fia.npu_mla_prolog_v3(*a.values(), kv0, kr0, cache_index=idx)
    c8 = torch.full((4, 16, 1, 656), 7, dtype=torch.int8)
    dummy = torch.zeros(1, dtype=torch.bfloat16)
    alpha = torch.tensor([0.9], dtype=torch.float32)
    q, qr, _, _, _ = fia.npu_mla_prolog_v3(
        *a.values(), c8, dummy, cache_index=idx, kv_cache_quant_mode=3, ckvkr_repo_mode=1,
        quant_scale_repo_mode=1, tile_size=128, k_nope_clip_alpha=alpha)
    assert not dummy.any()
    rows = c8.view(64, 656)
    for t, s in enumerate(idx.tolist()):
        if s < 0:
            continue
        row = rows[s]
        assert torch.equal(row[512:640].view(torch.bfloat16), kr0.view(64, 64)[s])
        scale = row[640:656].view(torch.float32)
        lat = kv0.view(64, 512)[s].float().view(4, 128)
        amax = lat.abs().amax(-1) * 0.9
        assert torch.allclose(scale, amax / 127, rtol=2 ** -7)
        deq = row[:512].float().view(4, 128) * scale[:, None]
        want = torch.maximum(torch.minimum(lat, amax[:, None]), -amax[:, None])
        assert ((deq - want).abs() <= scale[:, None] * 0.5 + want.abs() * 2 ** -8 + 1e-6).all()
    untouched = torch.ones(64, dtype=torch.bool)
    untouched[idx[idx >= 0]] = False
    assert (rows[untouched] == 7).all()
    with pytest.raises(ValueError, match="kv_cache dim 3"):
        bad = torch.zeros(4, 16, 1, 512, dtype=torch.int8)
        fia.npu_mla_prolog_v3(*a.values(), bad, dummy, cache_index=idx, kv_cache_quant_mode=3,
                              ckvkr_repo_mode=1, quant_scale_repo_mode=1)
    assert not bad.any()


def test_mla_prolog_v3_int8_query_and_caches():
    """kv_cache_quant_mode=1 with query_quant_mode=1: query_out int8 = rint(q / s) of the bf16
    query of the same call, s = max|q| / 127 per token-head (dequant_scale_q_nope [T, N, 1]),
    query_rope_out = bf16(rope * quant_scale_ckv / s); the kv cache int8 rint(kv * scale)
    (within one step of the bf16 latent); kv_cache_quant_mode=2 quantizes kr per channel."""
    a, kv, kr = _prolog_inputs(4)
    idx = torch.tensor([3, 9, 1, -4, 60, 33, 12], dtype=torch.int64)
    kv0, kr0 = kv.clone(), kr.clone()
    q0, qr0, _, _, _ = fia.npu_mla_prolog_v3(*a.values(), kv0, kr0, cache_index=idx)
    qs = torch.tensor([30.0])
    kv8 = torch.zeros(4, 16, 1, 512, dtype=torch.int8)
    q, qr, dq, _, _ = fia.npu_mla_prolog_v3(*a.values(), kv8, kr.clone(), cache_index=idx,
                                            kv_cache_quant_mode=1, query_quant_mode=1,
                                            quant_scale_ckv=qs)
    assert q.dtype == torch.int8 and dq.shape == (7, 4, 1) and dq.dtype == torch.float32
    s = q0.float().abs().amax(-1, keepdim=True) / 127
    assert torch.equal(dq, s)
    assert torch.equal(q, torch.round(q0.float() / s).clamp(-128, 127).to(torch.int8))
    assert torch.equal(qr, (qr0.float() * 30.0 / s).bfloat16())
    for s_ in idx.tolist():
        if s_ >= 0:
            want = kv0.view(64, 512)[s_].float() * 30.0
            got = kv8.view(64, 512)[s_].float()
            assert ((got - want.clamp(-128, 127)).abs() <= 0.5 + want.abs() * 2 ** -8).all()
    # per channel, int8 kr
    kv8.zero_()
    kr8 = torch.zeros(4, 16, 1, 64, dtype=torch.int8)
    sc = torch.linspace(10, 40, 512).view(1, 512)
    sr = torch.linspace(20, 60, 64).view(1, 64)
    fia.npu_mla_prolog_v3(*a.values(), kv8, kr8, cache_index=idx, kv_cache_quant_mode=2,
                          quant_scale_ckv=sc, quant_scale_ckr=sr)
    for s_ in idx.tolist():
        if s_ >= 0:
            want = kv0.view(64, 512)[s_].float() * sc[0]
            got = kv8.view(64, 512)[s_].float()
            assert ((got - want.clamp(-128, 127)).abs() <= 0.5 + want.abs() * 2 ** -8).all()
            wr = kr0.view(64, 64)[s_].float() * sr[0]
            gr = kr8.view(64, 64)[s_].float()
            assert ((gr - wr.clamp(-128, 127)).abs() <= 0.5 + wr.abs() * 2 ** -8).all()
