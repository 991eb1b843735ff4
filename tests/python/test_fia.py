"""fia.npu_fused_infer_attention_score / _v2 through the Python API against the float64 oracle:
layouts, masks and sparse modes, paged caches, int8 antiquant, MLA (float and int8), numpy /
torch / bf16, strided views, out=, plans, length argument kinds."""

import numpy as np
import pytest

import fia
from conftest import KINDS, assert_close, f64, kind_of, need, rnd, to_kind, torch
from oracles import fia_batch

INT32_MAX = 2147483647


def expect(q, k, v, scale, lq, lkv, mode=0, pre=INT32_MAX, nxt=INT32_MAX, mask=None,
           decode=False, qr=None, kr=None):
    """q [B, N1, S1, D], k/v [B, N2, S2, D] float64 (BNSD); mask bool [B, S1, S2] or None."""
    outs, lses = [], []
    for b in range(q.shape[0]):
        o, l = fia_batch(q[b], k[b], v[b], scale, lq[b], lkv[b], mode, pre, nxt,
                         None if mask is None else mask[b], decode,
                         None if qr is None else qr[b], None if kr is None else kr[b])
        outs.append(o)
        lses.append(l)
    return np.stack(outs), np.stack(lses)


def to_layout(x, layout):
    """BNSD float array -> layout (BSH, BSND, BNSD)."""
    if layout == "BNSD":
        return x
    x = x.transpose(0, 2, 1, 3)
    if layout == "BSH":
        return x.reshape(x.shape[0], x.shape[1], -1)
    return x


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["BSH", "BSND", "BNSD", "BNSD_BSND"])
def test_layouts_gqa_lengths_lse(kind, dtype, layout, rng):
    need(kind)
    B, N1, N2, S1, S2, D = 2, 4, 2, 3, 20, 32
    q = rnd(rng, (B, N1, S1, D), dtype)
    k = rnd(rng, (B, N2, S2, D), dtype)
    v = rnd(rng, (B, N2, S2, D), dtype)
    lin = layout.split("_")[0]
    lkv = [20, 13]
    lens = lkv if kind == "numpy" else torch.tensor(lkv, dtype=torch.int32)
    out, lse = fia.npu_fused_infer_attention_score(
        to_kind(np.ascontiguousarray(to_layout(q, lin)), kind),
        to_kind(np.ascontiguousarray(to_layout(k, lin)), kind),
        to_kind(np.ascontiguousarray(to_layout(v, lin)), kind),
        actual_seq_lengths_kv=lens, num_heads=N1, num_key_value_heads=N2, scale=D ** -0.5,
        input_layout=layout, softmax_lse_flag=True)
    assert kind_of(out) == kind and kind_of(lse) == kind
    wo, wl = expect(f64(q), f64(k), f64(v), D ** -0.5, [S1] * B, lkv)
    olayout = "BSND" if layout == "BNSD_BSND" else lin
    assert_close(out, to_layout(wo, olayout), dtype, "attention_out")
    assert_close(lse, wl[..., None], "float32", "softmax_lse")
    assert str(out.dtype).endswith(dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_tnd_causal_compressed_mask(kind, rng):
    need(kind)
    N1, N2, D = 4, 1, 64
    lq, lkv = [3, 5], [7, 9]  # per batch
    cq, ckv = np.cumsum(lq).tolist(), np.cumsum(lkv).tolist()
    q = rnd(rng, (cq[-1], N1, D))
    k = rnd(rng, (ckv[-1], N2, D))
    v = rnd(rng, (ckv[-1], N2, D))
    mask = np.triu(np.ones((2048, 2048), np.bool_), 1)
    out, lse = fia.npu_fused_infer_attention_score(
        to_kind(q, kind), to_kind(k, kind), to_kind(v, kind), atten_mask=to_kind(mask, kind),
        actual_seq_lengths=cq, actual_seq_lengths_kv=ckv, num_heads=N1, num_key_value_heads=N2,
        scale=0.125, input_layout="TND", sparse_mode=3, softmax_lse_flag=True)
    assert tuple(out.shape) == (cq[-1], N1, D) and tuple(lse.shape) == (cq[-1], N1, 1)
    q0, k0 = 0, 0
    for b in range(2):
        qb = f64(q[q0:q0 + lq[b]]).transpose(1, 0, 2)
        kb = f64(k[k0:k0 + lkv[b]]).transpose(1, 0, 2)
        vb = f64(v[k0:k0 + lkv[b]]).transpose(1, 0, 2)
        wo, wl = fia_batch(qb, kb, vb, 0.125, lq[b], lkv[b], 3)
        assert_close(f64(out)[q0:q0 + lq[b]], wo.transpose(1, 0, 2), "float16", "out b%d" % b)
        assert_close(f64(lse)[q0:q0 + lq[b], :, 0], wl.T, "float32", "lse b%d" % b)
        q0 += lq[b]
        k0 += lkv[b]


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 4])
def test_sparse_modes_and_masks(mode, rng):
    B, N1, S1, S2, D = 2, 2, 6, 9, 16
    q = rnd(rng, (B, N1, S1, D), "float32")
    k = rnd(rng, (B, N1, S2, D), "float32")
    v = rnd(rng, (B, N1, S2, D), "float32")
    pre, nxt = (2, 1) if mode in (0, 4) else (INT32_MAX, INT32_MAX)
    if mode in (0, 1):
        full = rng.random((B, 1, S1, S2)) < 0.3
        mask, ref_mask = full, full[:, 0]
    else:
        mask, ref_mask = np.triu(np.ones((2048, 2048), np.bool_), 1), None
    lq, lkv = [6, 4], [9, 7]
    out, lse = fia.npu_fused_infer_attention_score(
        q, k, v, atten_mask=mask, actual_seq_lengths=lq, actual_seq_lengths_kv=lkv,
        num_heads=N1, scale=0.3, pre_tokens=pre, next_tokens=nxt, input_layout="BNSD",
        sparse_mode=mode, softmax_lse_flag=True)
    wo, wl = expect(f64(q), f64(k), f64(v), 0.3, lq, lkv, mode, pre, nxt, ref_mask)
    assert_close(out, wo, "float32", "out")
    assert_close(lse, wl[..., None], "float32", "lse")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cache", ["BnBsH", "BnNBsD"])
def test_decode_paged(kind, cache, rng):
    need(kind)
    B, N1, N2, D, bs, blocks = 3, 8, 2, 64, 16, 12
    lkv = [40, 1, 17]
    q = rnd(rng, (B, 1, N1 * D), "bfloat16")
    kc = rnd(rng, (blocks, bs, N2, D), "bfloat16")
    vc = rnd(rng, (blocks, bs, N2, D), "bfloat16")
    bt = np.full((B, 4), -1, np.int32)
    perm = rng.permutation(blocks)
    for b in range(B):
        nb = -(-lkv[b] // bs)
        bt[b, :nb] = perm[b * 4:b * 4 + nb]
    if cache == "BnBsH":
        kk, vv = kc.reshape(blocks, bs, N2 * D), vc.reshape(blocks, bs, N2 * D)
    else:
        kk, vv = np.ascontiguousarray(kc.transpose(0, 2, 1, 3)), np.ascontiguousarray(
            vc.transpose(0, 2, 1, 3))
    out, _ = fia.npu_fused_infer_attention_score(
        to_kind(q, kind), to_kind(kk, kind), to_kind(vv, kind), block_table=to_kind(bt, kind),
        actual_seq_lengths_kv=lkv, num_heads=N1, num_key_value_heads=N2, scale=D ** -0.5,
        input_layout="BSH", block_size=bs)
    S2 = 64
    kl = np.zeros((B, N2, S2, D))
    vl = np.zeros((B, N2, S2, D))
    for b in range(B):
        for t in range(lkv[b]):
            kl[b, :, t] = f64(kc[bt[b, t // bs], t % bs])
            vl[b, :, t] = f64(vc[bt[b, t // bs], t % bs])
    qq = f64(q).reshape(B, 1, N1, D).transpose(0, 2, 1, 3)
    wo, _ = expect(qq, kl, vl, D ** -0.5, [1] * B, lkv, decode=True)
    assert_close(out, wo.transpose(0, 2, 1, 3).reshape(B, 1, N1 * D), "bfloat16", "out")


@pytest.mark.parametrize("mode", [0, 1])
def test_antiquant_int8(mode, rng):
    B, N1, N2, S1, S2, D = 2, 4, 2, 1, 24, 32
    q = rnd(rng, (B, S1, N1, D))
    k8 = rnd(rng, (B, S2, N2, D), "int8")
    v8 = rnd(rng, (B, S2, N2, D), "int8")
    if mode == 0:
        sc = (rng.random((2, N2, 1, D)) * 0.02 + 0.005).astype(np.float32)
        off = rng.integers(-3, 4, (2, N2, 1, D)).astype(np.float32)
        kd = (f64(k8) + off[0][:, 0][None, None]) * sc[0][:, 0][None, None]
        vd = (f64(v8) + off[1][:, 0][None, None]) * sc[1][:, 0][None, None]
    else:
        sc = (rng.random((2, B, S2)) * 0.02 + 0.005).astype(np.float32)
        off = rng.integers(-3, 4, (2, B, S2)).astype(np.float32)
        kd = (f64(k8) + off[0][:, :, None, None]) * sc[0][:, :, None, None]
        vd = (f64(v8) + off[1][:, :, None, None]) * sc[1][:, :, None, None]
    out, _ = fia.npu_fused_infer_attention_score(
        q, k8, v8, antiquant_scale=sc, antiquant_offset=off, antiquant_mode=mode, num_heads=N1,
        num_key_value_heads=N2, scale=D ** -0.5, input_layout="BSND")
    t = lambda x: x.transpose(0, 2, 1, 3)
    wo, _ = expect(t(f64(q)), t(kd), t(vd), D ** -0.5, [S1] * B, [S2] * B)
    assert_close(out, t(wo), "float16", "out")


def _mla_inputs(rng, dtype, B=2, S1=2, N=8, S2=40):
    return (rnd(rng, (B, S1, N, 512), dtype, 0.3), rnd(rng, (B, S1, N, 64), dtype, 0.3),
            rnd(rng, (B, S2, 1, 512), dtype, 0.3), rnd(rng, (B, S2, 1, 64), dtype, 0.3))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rescale", [0, 2])
def test_mla_float_and_v2(kind, rescale, rng):
    need(kind)
    q, qr, k, kr = _mla_inputs(rng, "bfloat16")
    B, S1, N, S2 = q.shape[0], q.shape[1], q.shape[2], k.shape[1]
    lkv = [S2, 25]
    args = [to_kind(x, kind) for x in (q, k, k)]
    out, lse = fia.npu_fused_infer_attention_score(
        *args, query_rope=to_kind(qr, kind), key_rope=to_kind(kr, kind),
        actual_seq_lengths_kv=lkv, num_heads=N, scale=0.05, input_layout="BSND", sparse_mode=3,
        softmax_lse_flag=True, mla_rescale=rescale)
    t = lambda x: x.transpose(0, 2, 1, 3)
    wo, wl = expect(t(f64(q)), t(f64(k)), t(f64(k)), 0.05, [S1] * B, lkv, 3,
                    qr=t(f64(qr)), kr=t(f64(kr)))
    assert_close(out, t(wo), "bfloat16", "out")
    assert_close(lse, wl[..., None], "float32", "lse")
    out2, lse2 = fia.npu_fused_infer_attention_score_v2(
        *args, query_rope=to_kind(qr, kind), key_rope=to_kind(kr, kind), actual_seq_kvlen=lkv,
        num_query_heads=N, softmax_scale=0.05, input_layout="BSND", sparse_mode=3,
        return_softmax_lse=True, mla_rescale=rescale)
    assert np.array_equal(f64(out), f64(out2)) and np.array_equal(f64(lse), f64(lse2))


def test_mla_paged(rng):
    q, qr, _, _ = _mla_inputs(rng, "float16", B=2, S1=1)
    bs, blocks = 16, 6
    kc = rnd(rng, (blocks, bs, 1, 512), "float16", 0.3)
    krc = rnd(rng, (blocks, bs, 1, 64), "float16", 0.3)
    bt = np.array([[3, 0, 5], [1, 4, -1]], np.int32)
    lkv = [40, 20]
    out, _ = fia.npu_fused_infer_attention_score(
        q, kc, kc, query_rope=qr, key_rope=krc, block_table=bt, actual_seq_lengths_kv=lkv,
        num_heads=8, scale=0.05, input_layout="BSND", block_size=bs)
    kl = np.zeros((2, 1, 48, 512))
    krl = np.zeros((2, 1, 48, 64))
    for b in range(2):
        for t in range(lkv[b]):
            kl[b, 0, t] = f64(kc[bt[b, t // bs], t % bs, 0])
            krl[b, 0, t] = f64(krc[bt[b, t // bs], t % bs, 0])
    t = lambda x: x.transpose(0, 2, 1, 3)
    wo, _ = expect(t(f64(q)), kl, kl, 0.05, [1, 1], lkv, decode=True, qr=t(f64(qr)), kr=krl)
    assert_close(out, t(wo), "float16", "out")


@pytest.mark.parametrize("kind", KINDS)
def test_mla_int8_v2(kind, rng):
    need(kind)
    B, S1, N, S2 = 2, 1, 8, 48
    q8 = rnd(rng, (B, S1, N, 512), "int8")
    qr = rnd(rng, (B, S1, N, 64), "bfloat16", 0.3)
    k8 = rnd(rng, (B, S2, 1, 512), "int8")
    kr = rnd(rng, (B, S2, 1, 64), "bfloat16", 0.3)
    sq = (rng.random((B, S1, N)) * 0.004 + 0.001).astype(np.float32)
    sk = np.array([0.003], np.float32)
    sv = np.array([0.004], np.float32)
    out, _ = fia.npu_fused_infer_attention_score_v2(
        *[to_kind(x, kind) for x in (q8, k8, k8)], query_rope=to_kind(qr, kind),
        key_rope=to_kind(kr, kind), dequant_scale_query=to_kind(sq, kind),
        dequant_scale_key=to_kind(sk, kind), dequant_scale_value=to_kind(sv, kind),
        num_query_heads=N, softmax_scale=0.06, input_layout="BSND", query_quant_mode=3,
        key_quant_mode=0, value_quant_mode=0)
    assert str(out.dtype).endswith("bfloat16")
    t = lambda x: x.transpose(0, 2, 1, 3)
    qd = f64(q8) * sq[..., None]
    wo, _ = expect(t(qd), t(f64(k8) * sk[0]), t(f64(k8) * sv[0]), 0.06, [S1] * B, [S2] * B,
                   decode=True, qr=t(f64(qr)), kr=t(f64(kr)))
    # P.V runs in int8 (u8-quantized probabilities): a few 1/255 steps of max |v|
    got = f64(out)
    assert np.abs(got - t(wo)).max() <= 0.03 * np.abs(f64(k8) * sv[0]).max()


def _dense(rng, dtype="float16"):
    q = rnd(rng, (2, 3, 4, 32), dtype)
    k = rnd(rng, (2, 16, 2, 32), dtype)
    v = rnd(rng, (2, 16, 2, 32), dtype)
    return q, k, v


KW = dict(num_heads=4, num_key_value_heads=2, scale=0.17, input_layout="BSND")


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_numpy_torch_bf16_parity(rng):
    q, k, v = _dense(rng, "bfloat16")
    o_np, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    o_t, _ = fia.npu_fused_infer_attention_score(*[to_kind(x, "torch") for x in (q, k, v)], **KW)
    assert o_np.dtype == q.dtype and o_t.dtype == torch.bfloat16
    assert np.array_equal(o_np.view(np.uint16), o_t.view(torch.int16).numpy().view(np.uint16))


@pytest.mark.parametrize("kind", KINDS)
def test_strided_views_are_read_in_place(kind, rng):
    need(kind)
    q, k, v = _dense(rng)
    ref, ref_lse = fia.npu_fused_infer_attention_score(q, k, v, softmax_lse_flag=True, **KW)
    # query as a transposed view of a BNSD buffer, key/value as every other row of a longer one
    qb = np.ascontiguousarray(q.transpose(0, 2, 1, 3))
    kbig = np.zeros((2, 32, 2, 32), np.float16)
    kbig[:, ::2] = k
    vbig = np.zeros((2, 16, 2, 64), np.float16)
    vbig[..., 16:48] = v
    qv, kv, vv = (to_kind(qb, kind).transpose(1, 2) if kind == "torch" else qb.transpose(0, 2, 1, 3),
                  to_kind(kbig, kind)[:, ::2], to_kind(vbig, kind)[..., 16:48])
    assert not (qv.is_contiguous() if kind == "torch" else qv.flags.c_contiguous)
    out, lse = fia.npu_fused_infer_attention_score(qv, kv, vv, softmax_lse_flag=True, **KW)
    assert np.array_equal(f64(out), f64(ref)) and np.array_equal(f64(lse), f64(ref_lse))


def test_readonly_numpy_inputs(rng):
    q, k, v = _dense(rng)
    ref, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    for x in (q, k, v):
        x.flags.writeable = False
    out, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("kind", KINDS)
def test_out_preallocated(kind, rng):
    need(kind)
    q, k, v = _dense(rng)
    ref, ref_lse = fia.npu_fused_infer_attention_score(q, k, v, softmax_lse_flag=True, **KW)
    o = to_kind(np.zeros_like(ref), kind)
    l = to_kind(np.zeros_like(ref_lse), kind)
    res = fia.npu_fused_infer_attention_score(*[to_kind(x, kind) for x in (q, k, v)],
                                              softmax_lse_flag=True, out=(o, l), **KW)
    assert res[0] is o and res[1] is l
    assert np.array_equal(f64(o), f64(ref)) and np.array_equal(f64(l), f64(ref_lse))
    # flag off: the lse buffer (torch_npu's .out passes a (1,) tensor) is not touched
    l1 = to_kind(np.full((1,), 7.0, np.float32), kind)
    fia.npu_fused_infer_attention_score(*[to_kind(x, kind) for x in (q, k, v)], out=(o, l1), **KW)
    assert f64(l1)[0] == 7.0


@pytest.mark.parametrize("lens", ["list", "tuple", "numpy", "torch"])
def test_length_argument_kinds(lens, rng):
    if lens == "torch" and torch is None:
        pytest.skip("torch not installed")
    q, k, v = _dense(rng)
    base = [16, 9]
    arg = {"list": base, "tuple": tuple(base), "numpy": np.array(base, np.int64),
           "torch": None if torch is None else torch.tensor(base, dtype=torch.int32)}[lens]
    out, _ = fia.npu_fused_infer_attention_score(q, k, v, actual_seq_lengths_kv=arg, **KW)
    ref, _ = fia.npu_fused_infer_attention_score(q, k, v, actual_seq_lengths_kv=base, **KW)
    assert np.array_equal(out, ref)
    t = lambda x: x.transpose(0, 2, 1, 3)
    wo, _ = expect(t(f64(q)), t(f64(k)), t(f64(v)), 0.17, [3, 3], base)
    assert_close(out, t(wo), "float16")


@pytest.mark.parametrize("kind", KINDS)
def test_plan_reexecute_with_new_data(kind, rng):
    need(kind)
    q, k, v = _dense(rng)
    qk, kk, vk = [to_kind(x.copy(), kind) for x in (q, k, v)]
    plan = fia.plan.npu_fused_infer_attention_score(qk, kk, vk, softmax_lse_flag=True, **KW)
    assert isinstance(plan, fia.Plan) and plan.workspace_size >= 0
    out, lse = plan.execute()
    ref, ref_lse = fia.npu_fused_infer_attention_score(q, k, v, softmax_lse_flag=True, **KW)
    assert np.array_equal(f64(out), f64(ref)) and np.array_equal(f64(lse), f64(ref_lse))
    for step in range(3):  # decode loop: new contents in the planned buffers
        q2, k2, v2 = _dense(rng)
        for dst, src in ((qk, q2), (kk, k2), (vk, v2)):
            dst[...] = to_kind(src, kind)
        res = plan() if step % 2 else plan.execute(
            workspace=to_kind(np.empty(max(plan.workspace_size, 1), np.uint8), kind))
        assert res[0] is out
        ref, _ = fia.npu_fused_infer_attention_score(q2, k2, v2, **KW)
        assert np.array_equal(f64(out), f64(ref))
    if plan.workspace_size:
        with pytest.raises(ValueError, match="workspace"):
            plan.execute(workspace=np.empty(plan.workspace_size - 1, np.uint8))
