"""The float64 DSA layer reference (fia.models.dsa_reference) checked against independent
formulations: the demo's expanded MHA prefill, a dense score matrix with the top-k mask added
as -inf (the official demo's form), complex-number RoPE, and its own invariants."""
import math

import numpy as np
import pytest
import torch

from fia.models import dsa_reference as R
from fia.models.dsa_config import DEEPSEEK_V32, GLM5, small_config
from fia.models.dsa_weights import param_shapes, random_weights

CFGS = [small_config(DEEPSEEK_V32), small_config(GLM5)]


def _inputs(cfg, L, seed):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((L, cfg.hidden_size))
    r = rng.standard_normal((L, cfg.hidden_size))
    return h, r


def test_configs():
    assert abs(DEEPSEEK_V32.softmax_scale - 0.135234) < 1e-6  # 192^-0.5 * 1.36889^2
    assert GLM5.softmax_scale == 256 ** -0.5
    assert DEEPSEEK_V32.qk_head_dim == 192 and GLM5.qk_head_dim == 256
    s = param_shapes(DEEPSEEK_V32)
    assert s["self_attn.q_b_proj.weight"] == (128 * 192, 1536)
    assert s["self_attn.kv_b_proj.weight"] == (128 * 256, 512)
    assert s["self_attn.indexer.wq_b.weight"] == (64 * 128, 1536)
    g = param_shapes(GLM5)
    assert g["self_attn.kv_b_proj.weight"] == (64 * (192 + 256), 512)
    assert g["self_attn.o_proj.weight"] == (6144, 64 * 256)
    assert g["self_attn.indexer.weights_proj.weight"] == (32, 6144)
    with pytest.raises(ValueError):
        DEEPSEEK_V32.replace(qk_rope_head_dim=63).check()


def test_rope_matches_complex_and_half_permutation():
    cfg = DEEPSEEK_V32
    pos = np.array([0, 1, 17, 4095, 4096, 131071])
    cos, sin = R.rope_cos_sin(cfg, pos)
    x = torch.randn(len(pos), 3, 64, dtype=torch.float64)
    # interleaved pairs == complex multiply by e^{i pos f}
    z = torch.view_as_complex(x.view(len(pos), 3, 32, 2).contiguous())
    zr = torch.view_as_real(z * torch.polar(torch.ones_like(cos), torch.atan2(sin, cos))[:, None])
    torch.testing.assert_close(R.rope_interleaved(x, cos, sin), zr.flatten(-2), rtol=1e-12, atol=1e-12)
    # the prolog's "interleave-half": de-interleave, then rotate-half == de-interleaved output
    deint = lambda a: torch.cat((a[..., 0::2], a[..., 1::2]), -1)
    torch.testing.assert_close(R.rope_half(deint(x), cos, sin), deint(R.rope_interleaved(x, cos, sin)))
    # YaRN: the low frequencies are divided by the factor, the high ones kept
    f = R.rope_inv_freq(cfg)
    f0 = 1.0 / (1e4 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64))
    assert f[0] == f0[0] and abs(f[-1] - f0[-1] / 40) < 1e-18
    assert torch.equal(R.rope_inv_freq(GLM5), 1.0 / (8e6 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)))


def test_hadamard_and_quant():
    H = R.hadamard(128)
    torch.testing.assert_close(H @ H.T, torch.eye(128, dtype=torch.float64))
    x = torch.randn(5, 3, 128, dtype=torch.float64)
    q, s = R.quant_int8_rows(x)
    assert q.abs().max() <= 127 and torch.all(q == torch.round(q))
    assert torch.all((q * s - x).abs() <= s / 2 + 1e-15)
    assert torch.all(q.abs().amax(-1) == 127)
    d, ts = R.quant_int8_tiles(torch.cat((x.view(15, 128), torch.zeros(15, 384)), -1).double())
    assert ts.shape == (15, 4) and torch.all(ts[:, 1:] == torch.tensor(1e-8 / 127).float().double())
    assert torch.all(d[:, 128:] == 0)
    assert torch.all((d[:, :128] - x.view(15, 128)).abs() <= ts[:, :1] / 2 + 1e-12)


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("c8", [False, True])
def test_absorbed_equals_expanded_mha(cfg, c8):
    w = random_weights(cfg, seed=1)
    h, r = _inputs(cfg, 40, 2)
    a = R.reference_layer(cfg, w, h, r, q_start=5, c8=c8)
    b = R.reference_layer(cfg, w, h, r, q_start=5, c8=c8, mode="mha")
    torch.testing.assert_close(a.out, b.out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a.lse, b.lse, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(x, y) for x, y in zip(a.topk, b.topk))


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_dense_mask_form_and_indexer(cfg):
    """The demo's form: full score matrices, -inf outside the top-k and above the diagonal;
    the indexer written per (query, key, head) with explicit loops over heads."""
    w = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in random_weights(cfg, seed=3).items()}
    L = 37
    h, r = _inputs(cfg, L, 4)
    ref = R.reference_layer(cfg, w, h, r)
    x = torch.as_tensor(h + r)
    rms = lambda a, g, eps: a / torch.sqrt((a * a).mean(-1, keepdim=True) + eps) * g
    u = rms(x, w["input_layernorm.weight"], cfg.rms_norm_eps)
    N, D, Dr, C = cfg.num_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
    cos, sin = R.rope_cos_sin(cfg, np.arange(L))
    qr = rms(u @ w["self_attn.q_a_proj.weight"].T, w["self_attn.q_a_layernorm.weight"], cfg.rms_norm_eps)
    # indexer, head by head
    Hi, Di = cfg.index_n_heads, cfg.index_head_dim
    qi = (qr @ w["self_attn.indexer.wq_b.weight"].T).view(L, Hi, Di)
    k = u @ w["self_attn.indexer.wk.weight"].T
    k = torch.nn.functional.layer_norm(k, (Di,), w["self_attn.indexer.k_norm.weight"],
                                       w["self_attn.indexer.k_norm.bias"], 1e-6)
    qi = torch.cat((R.rope_half(qi[..., :Dr], cos, sin), qi[..., Dr:]), -1)
    k = torch.cat((R.rope_half(k[:, None, :Dr], cos, sin)[:, 0], k[:, Dr:]), -1)
    wts = u @ w["self_attn.indexer.weights_proj.weight"].T
    I = torch.zeros(L, L, dtype=torch.float64)
    for hh in range(Hi):
        I += wts[:, hh:hh + 1] * Hi ** -0.5 * torch.relu(qi[:, hh] @ k.T) * Di ** -0.5
    causal = torch.full((L, L), -math.inf, dtype=torch.float64).triu(1)
    I = I + causal
    torch.testing.assert_close(ref.index_scores, I, rtol=1e-12, atol=1e-12)
    topk = I.topk(min(cfg.index_topk, L), dim=-1).indices
    mask = torch.full((L, L), -math.inf, dtype=torch.float64)
    for p in range(L):
        mask[p, ref.topk[p]] = 0  # the reference's choice among exact ties
    mask = mask + causal
    for p in range(L):
        # torch.topk breaks ties arbitrarily (ReLU makes exact-zero ties common): equal sets
        # up to positions scoring exactly the k-th score
        got = [int(t) for t in topk[p] if t <= p]
        assert R.compare_topk(I[p], ref.topk[p], got, 0.0)[0], p
        # selected positions only ever have scores >= every unselected visible one
        sel = ref.topk[p]
        uns = [t for t in range(p + 1) if t not in set(sel.tolist())]
        if uns:
            assert I[p, sel].min() >= I[p, uns].max()
    # MLA, MHA form with the mask
    q = (qr @ w["self_attn.q_b_proj.weight"].T).view(L, N, D + Dr)
    q = torch.cat((q[..., :D], R.rope_interleaved(q[..., D:], cos, sin)), -1)
    kv = u @ w["self_attn.kv_a_proj_with_mqa.weight"].T
    c = rms(kv[:, :C], w["self_attn.kv_a_layernorm.weight"], cfg.rms_norm_eps)
    kpe = R.rope_interleaved(kv[:, None, C:], cos, sin)
    kvb = (c @ w["self_attn.kv_b_proj.weight"].T).view(L, N, D + cfg.v_head_dim)
    kk = torch.cat((kvb[..., :D], kpe.expand(L, N, Dr)), -1)
    s = torch.einsum("shd,thd->sht", q, kk) * cfg.softmax_scale + mask[:, None, :]
    o = torch.einsum("sht,thd->shd", s.softmax(-1), kvb[..., D:])
    out = o.flatten(1) @ w["self_attn.o_proj.weight"].T
    torch.testing.assert_close(ref.out, out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ref.residual, x)


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_stateless_rows_and_bf16_emulation(cfg):
    w = random_weights(cfg, seed=5)
    h, r = _inputs(cfg, 50, 6)
    full = R.reference_layer(cfg, w, h, r)
    tail = R.reference_layer(cfg, w, h, r, q_start=45)
    torch.testing.assert_close(tail.out, full.out[45:], rtol=1e-12, atol=1e-12)
    # bf16 storage points move the output by bf16 rounding only
    em = R.reference_layer(cfg, w, h, r, emulate_bf16=True, selection=full.topk)
    s = full.out.abs().max()
    assert (em.out - full.out).abs().max() <= 0.03 * s
    # the top-k of the emulated chain differs from the exact one at near-ties only
    em2 = R.reference_layer(cfg, w, h, r, emulate_bf16=True)
    for p in range(50):
        ok, _ = R.compare_topk(full.index_scores[p], full.topk[p], em2.topk[p], 0.05)
        assert ok, p


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_c8_close_to_bf16(cfg):
    w = random_weights(cfg, seed=7)
    h, r = _inputs(cfg, 30, 8)
    a = R.reference_layer(cfg, w, h, r)
    b = R.reference_layer(cfg, w, h, r, c8=True, selection=a.topk)
    s = a.out.abs().max()
    assert (a.out - b.out).abs().max() <= 0.03 * s
    b2 = R.reference_layer(cfg, w, h, r, c8=True)
    for p in range(30):
        ok, _ = R.compare_topk(a.index_scores[p], a.topk[p], b2.topk[p], 0.05)
        assert ok, p
