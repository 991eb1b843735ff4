"""fia.models.dsa: the layer's chain against the float64 reference (tests/python/dsa_harness.py
states the tolerance rule), on the fia operators and on the pure-torch goldens of the
torch_npu contracts (tests/python/npu_golden.py, which checks the composition itself)."""
import numpy as np
import pytest
import torch

import npu_golden
from dsa_harness import missing_ops, run_session
from fia.models.dsa import BlockAllocator, Step
from fia.models.dsa_config import DEEPSEEK_V32, GLM5, small_config

CFGS = [small_config(DEEPSEEK_V32), small_config(GLM5)]


def _fia_ops():
    try:
        import fia
    except ImportError as e:
        pytest.skip(f"fia package not importable: {e}")
    miss = missing_ops(fia)
    if miss:
        pytest.skip(f"fia lacks {miss}")
    return fia


@pytest.mark.parametrize("cfg", [DEEPSEEK_V32, GLM5], ids=lambda c: c.name)
def test_rope_tables_match_reference(cfg):
    """The layer's per-step RoPE tables (numpy float64, rounded once to bf16) equal the
    reference's rope_cos_sin rounded to bf16, in both layouts, up to 300K positions."""
    from fia.models.dsa import DSAAttention
    from fia.models.dsa_reference import rope_cos_sin

    layer = DSAAttention.__new__(DSAAttention)
    layer.cfg, layer._inv_freq = cfg, None
    pos = np.r_[np.arange(0, 300000, 13), 131071, 131072, 163839]
    c, s = rope_cos_sin(cfg, pos)
    half = (torch.cat((c, c), -1), torch.cat((s, s), -1))
    inter = (c.repeat_interleave(2, -1), s.repeat_interleave(2, -1))
    for il, ref in ((False, half), (True, inter)):
        got = layer._rope_table(pos, il)
        for g, r in zip(got, ref):
            assert g.dtype == torch.bfloat16 and g.shape == (len(pos), cfg.qk_rope_head_dim)
            assert torch.equal(g, r.to(torch.bfloat16))
    one = layer.rope_tables(np.array([131072]))
    assert torch.equal(one[0][0], half[0][-2].to(torch.bfloat16))


def test_allocator_and_step():
    a = BlockAllocator(6, 4)
    a.add("x")
    a.add("y")
    s = Step.build(a, ["x", "y"], [5, 3])
    assert s.prefill and list(s.q_lens) == [5, 3] and list(s.kv_lens) == [5, 3]
    assert list(s.cu_q) == [5, 8]
    assert list(s.slots) == [0, 1, 2, 3, 4, 8, 9, 10]  # x: blocks 0, 1; y: block 2
    assert s.block_table.tolist() == [[0, 1], [2, 0]]
    s = Step.build(a, ["x", "y"], [1, 1])
    assert not s.prefill and list(s.slots) == [5, 11] and list(s.positions) == [5, 3]
    a.drop("x")
    a.add("z")
    s = Step.build(a, ["z"], [6])
    assert list(s.slots[:4]) == [0, 1, 2, 3] and list(s.slots[4:]) == [4, 5]  # reused blocks
    with pytest.raises(MemoryError):
        Step.build(a, ["z"], [100])
    with pytest.raises(ValueError):
        a.add("z")


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("c8", [False, True], ids=["bf16", "c8"])
def test_layer_golden_ops(cfg, c8):
    # the pure-torch goldens are slow: 6 decode steps (the join at step 4 included) suffice to
    # check the composition; the fia runs below take 16. A = 5e-3 for both: the golden rounds
    # its fp32 projections (the BLAS's own summation order) to bf16 where the contract does,
    # and the reference rounds float64 sums at the same points, so a rounding that falls the
    # other way moves an intermediate by one bf16 step. Measured A needed: bf16 3.3e-3 with
    # torch 2.15's MKL on AMD Zen 3 (under 2.5e-3 on the Xeons), fia's own ops 5.5e-4 under
    # the unchanged 2.5e-3 of test_layer_fia_ops.
    ses = run_session(cfg, npu_golden, c8=c8, seed=11, decode_steps=6, a_tol=5e-3)
    assert ses.checked_rows == 103  # 72 prefill + 12 + 15 (mixed) + 4 decode


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("c8", [False, True], ids=["bf16", "c8"])
def test_layer_fia_ops(cfg, c8):
    fia = _fia_ops()
    if c8:
        try:  # the C8 latent cache is the prolog's kv_cache_quant_mode 3
            import torch as _t
            z = _t.zeros
            fia.npu_mla_prolog_v3(z(1, 8, dtype=_t.bfloat16), z(8, 8, dtype=_t.bfloat16),
                                  z(8, 192, dtype=_t.bfloat16), z(1, 128, 512, dtype=_t.bfloat16),
                                  z(8, 576, dtype=_t.bfloat16), z(8, dtype=_t.bfloat16),
                                  z(512, dtype=_t.bfloat16), z(1, 64, dtype=_t.bfloat16),
                                  z(1, 64, dtype=_t.bfloat16), z(1, 16, 1, 656, dtype=_t.int8),
                                  z(1, 1, 1, 64, dtype=_t.bfloat16),
                                  cache_index=_t.zeros(1, dtype=_t.int64), kv_cache_quant_mode=3,
                                  ckvkr_repo_mode=1, quant_scale_repo_mode=1,
                                  k_nope_clip_alpha=_t.ones(1))
        except NotImplementedError as e:
            pytest.skip(f"the C8 layer needs npu_mla_prolog_v3 kv_cache_quant_mode=3: {e}")
        except ValueError:
            pass  # implemented (the probe's shapes need not be valid)
    # C8: fia's prolog quantizes the unrounded (fp32) normalized latent row, the golden its
    # bf16 rounding; the reference follows fia's point here (A = 5e-3 as for the golden's;
    # measured worst 3.4e-3). Against the golden's point the codes differ by one int8 step in
    # ~6% of the elements (test_c8_prolog_rows_within_one_step) and the outputs by up to
    # 1.9e-2 of max|out|.
    ses = run_session(cfg, fia, c8=c8, seed=12, decode_steps=16, c8_latent_bf16=not c8)
    assert ses.checked_rows == 136  # 72 prefill + 12 + 15 (mixed) + 16 + 21 decode


def test_layer_from_safetensors(tmp_path):
    """A layer built from a safetensors file with HF names equals the one built from memory."""
    fia = _fia_ops()
    import ml_dtypes
    from fia.models.dsa import DSAAttention, KVPool
    from fia.models.dsa_weights import random_weights, save_layer
    cfg = CFGS[0]
    w = random_weights(cfg, seed=3, dtype=ml_dtypes.bfloat16)
    p = str(tmp_path / "layer5.safetensors")
    save_layer(p, w, layer=5)
    outs = []
    for layer in (DSAAttention(cfg, w, ops=fia), DSAAttention.from_safetensors(p, cfg, layer=5,
                                                                               ops=fia)):
        a = BlockAllocator(8, 16)
        pool = KVPool(cfg, 8, 16)
        a.add(0)
        g = torch.Generator().manual_seed(0)
        h = torch.randn(20, cfg.hidden_size, generator=g).bfloat16()
        r = torch.randn(20, cfg.hidden_size, generator=g).bfloat16()
        outs.append(layer.forward(h, r, Step.build(a, [0], [20]), pool)[0])
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_layer_c8_fia_indexer_and_attention(cfg):
    """The C8 layer with fia's dynamic_quant, quant_lightning_indexer, scatter ops and
    kv_quant_sparse_flash_attention, the 656-byte latent rows written by the pure-torch golden
    of npu_mla_prolog_v3 (kv_cache_quant_mode 3, which fia's prolog does not implement yet)."""
    import types
    fia = _fia_ops()
    from dsa_harness import NEED_OPS
    ops = types.SimpleNamespace(**{n: getattr(fia, n) for n in NEED_OPS})
    ops.npu_mla_prolog_v3 = npu_golden.npu_mla_prolog_v3
    ses = run_session(cfg, ops, c8=True, seed=13, decode_steps=16)
    assert ses.checked_rows == 136


def test_forward_dense_equals_sparse_when_topk_covers_the_context():
    """forward_dense (dense MLA through npu_fused_infer_attention_score, the demo's comparison)
    attends every cached token: with a top-k at least the context length the sparse layer
    selects every token too, and the two decode steps agree (same residual, outputs within the
    bf16 rounding of two attention kernels). Also checks that it refuses prefill calls."""
    import copy
    fia = _fia_ops()
    from fia.models.dsa import DSAAttention, KVPool
    from fia.models.dsa_weights import random_weights
    cfg = small_config(DEEPSEEK_V32, index_topk=4096)
    layer = DSAAttention(cfg, random_weights(cfg, seed=1), ops=fia)
    a, pool = BlockAllocator(16, 16), KVPool(cfg, 16, 16)
    a.add(0)
    a.add(1)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, cfg.hidden_size, generator=g).bfloat16()
    r = torch.randn(50, cfg.hidden_size, generator=g).bfloat16()
    step = Step.build(a, [0, 1], [30, 20])
    with pytest.raises(NotImplementedError):
        layer.forward_dense(h, r, step, copy.deepcopy(pool))
    layer.forward(h, r, step, pool)
    for _ in range(3):
        h = torch.randn(2, cfg.hidden_size, generator=g).bfloat16()
        r = torch.randn(2, cfg.hidden_size, generator=g).bfloat16()
        step = Step.build(a, [0, 1], [1, 1])
        pool2 = copy.deepcopy(pool)
        o1, x1 = layer.forward(h, r, step, pool)
        o2, x2 = layer.forward_dense(h, r, step, pool2)
        assert torch.equal(x1, x2)
        assert torch.equal(pool.kv_cache, pool2.kv_cache)
        err = float((o1.float() - o2.float()).abs().max())
        assert err <= 2e-2 * float(o1.float().abs().max()), err


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_c8_prolog_rows_within_one_step(cfg):
    """The 656-byte C8 rows fia's npu_mla_prolog_v3 writes (kv_cache_quant_mode 3) against the
    pure-torch golden's: the contract (per 128-tile amax / 127 scale, round) leaves the
    rounding point of the normalized latent open (fia: fp32, golden: bf16), so every int8 code
    is within one step of the golden's, the bf16 rope bytes are identical and the tile scales
    agree to a bf16 ulp (the tile max of the fp32 vs bf16 row)."""
    fia = _fia_ops()
    from dsa_harness import bf16_weights
    from fia.models.dsa import DSAAttention, KVPool
    w = bf16_weights(cfg, 12)
    rows = []
    for ops in (fia, npu_golden):
        layer = DSAAttention(cfg, w, c8=True, ops=ops)
        pool = KVPool(cfg, 4, 16, c8=True)
        g = torch.Generator().manual_seed(0)
        u = torch.randn(40, cfg.hidden_size, generator=g).bfloat16()
        layer._pos = np.arange(40)
        cos, sin = layer.rope_tables(np.arange(40))
        try:
            layer._prolog(u, cos, sin, pool.kv_cache, pool.kr_cache, torch.arange(40), "PA_BSND")
        except NotImplementedError as e:
            pytest.skip(f"fia's prolog lacks kv_cache_quant_mode 3: {e}")
        rows.append(pool.kv_cache.view(-1, 656)[:40].clone())
    a, b = rows
    d = (a[:, :512].int() - b[:, :512].int()).abs()
    assert int(d.max()) <= 1
    assert torch.equal(a[:, 512:640], b[:, 512:640])
    sa = a[:, 640:].contiguous().view(torch.float32)
    sb = b[:, 640:].contiguous().view(torch.float32)
    assert float(((sa - sb).abs() / sb).max()) <= 2 ** -8
