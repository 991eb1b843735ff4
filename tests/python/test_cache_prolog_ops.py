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
    with pytest.raises(NotImplementedError, match="kv_cache_quant_mode"):
        fia.npu_mla_prolog_v3(*a3.values(), kv, kr, cache_mode="BSND", kv_cache_quant_mode=3)
    with pytest.raises(ValueError):  # slot beyond the cache: nothing written
        kvp = torch.zeros(2, 4, 1, 512, dtype=torch.bfloat16)
        fia.npu_mla_prolog_v3(*a.values(), kvp, torch.zeros(2, 4, 1, 64, dtype=torch.bfloat16),
                              cache_index=torch.arange(7) * 2)
    assert not kvp.any()
