"""npu_rms_norm, npu_add_rms_norm, npu_rotary_mul, npu_interleave_rope and npu_dynamic_quant
through the Python package against float64 oracles written from the contracts (ascend-ops.md
section 6), on numpy and torch inputs, bf16 / fp16 / fp32, strided views, out= and errors."""
import ml_dtypes
import numpy as np
import pytest

import fia
from conftest import KINDS, f64, kind_of, need, rnd, to_kind

TOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 2e-6}  # ~2 ulps of the output dtype


def _close(got, want, dtype, what):
    got = f64(got)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want) - TOL[dtype] * np.maximum(np.abs(want), 1e-3)
    assert err.max() <= 1e-6, (what, float(np.abs(got - want).max()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("gshape", [(64,), (3, 64)])
def test_rms_norm_and_add(rng, kind, dtype, gshape):
    need(kind)
    x1 = rnd(rng, (2, 5, 3, 64), dtype)
    x2 = rnd(rng, (2, 5, 3, 64), dtype)
    g = rnd(rng, gshape, dtype)
    eps = 1e-5
    nd = len(gshape)
    ax = tuple(range(4 - nd, 4))
    y, rstd = fia.npu_rms_norm(to_kind(x1, kind), to_kind(g, kind), eps)
    assert kind_of(y) == kind and kind_of(rstd) == kind
    X = f64(x1)
    R = 1 / np.sqrt((X * X).mean(ax, keepdims=True) + eps)
    _close(y, X * R * f64(g), dtype, "y")
    assert rstd.shape == (2, 5, 3, 64)[:4 - nd] + (1,) * nd
    np.testing.assert_allclose(f64(rstd), R, rtol=1e-5)
    y, rstd, x = fia.npu_add_rms_norm(to_kind(x1, kind), to_kind(x2, kind), to_kind(g, kind), eps)
    S = (f64(x1) + f64(x2)).astype(x1.dtype).astype(np.float64)  # rounded to the dtype
    assert np.array_equal(f64(x), S)
    R = 1 / np.sqrt((S * S).mean(ax, keepdims=True) + eps)
    _close(y, S * R * f64(g), dtype, "y")


def test_add_rms_norm_out_in_place_and_errors(rng):
    x1 = rnd(rng, (4, 32), "bfloat16")
    x2 = rnd(rng, (4, 32), "bfloat16")
    g = rnd(rng, (32,), "bfloat16")
    want = fia.npu_add_rms_norm(x1, x2, g)
    r1 = x1.copy()
    y = np.empty_like(x1)
    rstd = np.empty((4, 1), np.float32)
    fia.npu_add_rms_norm(r1, x2, g, out=(y, rstd, r1))  # residual updated in place
    assert np.array_equal(r1.view(np.uint16), want[2].view(np.uint16))
    assert np.array_equal(y.view(np.uint16), want[0].view(np.uint16))
    y0 = np.zeros_like(x1)
    with pytest.raises(ValueError, match="gamma"):
        fia.npu_add_rms_norm(x1, x2, rnd(rng, (31,), "bfloat16"), out=(y0, rstd, np.zeros_like(x1)))
    assert not y0.view(np.uint16).any()


def _rot(x, mode):
    if mode == "half":
        h = x.shape[-1] // 2
        return np.concatenate((-x[..., h:], x[..., :h]), -1)
    r = np.empty_like(x)
    r[..., 0::2], r[..., 1::2] = -x[..., 1::2], x[..., 0::2]
    return r


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("mode", ["half", "interleave"])
def test_rotary_mul(rng, kind, dtype, mode):
    need(kind)
    x = rnd(rng, (2, 7, 4, 64), dtype)
    c = rnd(rng, (1, 7, 1, 64), dtype)
    s = rnd(rng, (1, 7, 1, 64), dtype)
    y = fia.npu_rotary_mul(to_kind(x, kind), to_kind(c, kind), to_kind(s, kind), mode)
    X = f64(x)
    _close(y, X * f64(c) + _rot(X, mode) * f64(s), dtype, mode)
    # a strided (sliced) view of x: the first 64 of 128 dims
    xw = rnd(rng, (2, 7, 4, 128), dtype)
    y = fia.npu_rotary_mul(to_kind(xw, kind)[..., :64], to_kind(c, kind), to_kind(s, kind), mode)
    X = f64(xw)[..., :64]
    _close(y, X * f64(c) + _rot(X, mode) * f64(s), dtype, "strided")
    with pytest.raises(NotImplementedError, match="rotate"):
        fia.npu_rotary_mul(x, c, s, mode, rotate=c)


def test_interleave_rope(rng):
    x = rnd(rng, (2, 1, 5, 64), "bfloat16")
    c = rnd(rng, (2, 1, 5, 64), "bfloat16")
    s = rnd(rng, (2, 1, 5, 64), "bfloat16")
    X = f64(x)
    q = np.concatenate((X[..., 0::2], X[..., 1::2]), -1)
    _close(fia.npu_interleave_rope(x, c, s), q * f64(c) + _rot(q, "half") * f64(s), "bfloat16", "ir")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dynamic_quant(rng, kind, dtype):
    need(kind)
    x = rnd(rng, (3, 4, 128), dtype, scale=3.0)
    y, scale = fia.npu_dynamic_quant(to_kind(x, kind))
    assert kind_of(y) == kind and tuple(y.shape) == (3, 4, 128) and tuple(scale.shape) == (3, 4)
    X = f64(x).astype(np.float32)
    sc = np.abs(X).max(-1) / np.float32(127)
    assert np.array_equal(f64(scale), sc.astype(np.float64))
    q = np.clip(np.round((X / sc[..., None]).astype(np.float32)), -128, 127)  # half to even
    assert np.array_equal(f64(y), q)
    sm = rnd(rng, (128,), "float32")
    y, scale = fia.npu_dynamic_quant(to_kind(x, kind), smooth_scales=to_kind(sm, kind))
    V = (X * sm).astype(np.float32)
    sc = np.abs(V).max(-1) / np.float32(127)
    assert np.abs(f64(y) - np.round(V / sc[..., None])).max() <= 1
    y, scale = fia.npu_dynamic_quant(to_kind(x, kind), quant_mode="pertensor")
    assert tuple(scale.shape) == (1,)
    with pytest.raises(NotImplementedError, match="dst_type"):
        fia.npu_dynamic_quant(x, dst_type=16)
    with pytest.raises(ValueError, match="quant_mode"):
        fia.npu_dynamic_quant(x, quant_mode="pergroup")
