"""Safetensors I/O and the HF-named layer loader, on small files the tests write themselves."""
import json
import os

import numpy as np
import pytest

from fia.models import safetensors_io as st
from fia.models.dsa_config import DEEPSEEK_V32, GLM5, small_config
from fia.models.dsa_weights import PARAM_NAMES, load_layer, param_shapes, random_weights, save_layer

ml_dtypes = pytest.importorskip("ml_dtypes")
CFG = small_config(DEEPSEEK_V32)


def test_names_cover_the_layer():
    assert set(PARAM_NAMES) == set(param_shapes(CFG))
    assert "self_attn.kv_a_proj_with_mqa.weight" in PARAM_NAMES
    assert "self_attn.indexer.k_norm.bias" in PARAM_NAMES


def test_roundtrip_bf16_two_layers(tmp_path):
    w0 = random_weights(CFG, seed=0, dtype=ml_dtypes.bfloat16)
    w1 = random_weights(CFG, seed=1, dtype=ml_dtypes.bfloat16)
    p = str(tmp_path / "two.safetensors")
    t = {f"model.layers.3.{k}": v for k, v in w0.items()}
    t.update({f"model.layers.4.{k}": v for k, v in w1.items()})
    t["model.layers.4.mlp.gate.weight"] = np.zeros((8, CFG.hidden_size), np.float32)  # ignored
    t["model.embed_tokens.weight"] = np.zeros((4, 4), np.float32)
    st.save(p, t)
    got = load_layer(p, layer=4, cfg=CFG)
    assert set(got) == set(w1)
    for k in w1:
        assert got[k].dtype == ml_dtypes.bfloat16 and np.array_equal(got[k].view(np.uint16), w1[k].view(np.uint16))
    with pytest.raises(ValueError, match="layers"):
        load_layer(p, cfg=CFG)  # two layers: ambiguous
    with pytest.raises(KeyError):
        load_layer(p, layer=5, cfg=CFG)


def test_cross_check_with_safetensors_package(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    w = random_weights(CFG, seed=2)
    p = str(tmp_path / "a.safetensors")
    save_layer(p, w, layer=7)
    ours = load_layer(p, layer=7, cfg=CFG)
    theirs = safetensors.load_file(p)
    for k, v in w.items():
        assert np.array_equal(theirs[f"model.layers.7.{k}"], v)
        assert np.array_equal(ours[k], v)
    # a file written by the package reads back through ours
    p2 = str(tmp_path / "b.safetensors")
    safetensors.save_file({f"model.layers.0.{k}": v for k, v in w.items()}, p2)
    back = load_layer(p2, cfg=CFG)
    assert all(np.array_equal(back[k], w[k]) for k in w)


def test_directory_with_index_and_fp8(tmp_path):
    cfg = small_config(GLM5)
    w = random_weights(cfg, seed=3)
    # FP8 block-scaled q_a_proj, as the DeepSeek checkpoints store it
    name = "self_attn.q_a_proj.weight"
    wf = w[name]
    o, i = wf.shape
    scale = np.abs(wf).reshape(-1).max() / 448 * np.ones((-(-o // 128), -(-i // 128)), np.float32)
    q8 = (wf / np.repeat(np.repeat(scale, 128, 0), 128, 1)[:o, :i]).astype(ml_dtypes.float8_e4m3fn)
    files = {"a.safetensors": {}, "b.safetensors": {}}
    for j, (k, v) in enumerate(w.items()):
        files["ab"[j % 2] + ".safetensors"][f"model.layers.1.{k}"] = v
    files["a.safetensors"].pop(f"model.layers.1.{name}", None)
    files["b.safetensors"].pop(f"model.layers.1.{name}", None)
    files["a.safetensors"][f"model.layers.1.{name}"] = q8
    files["b.safetensors"][f"model.layers.1.{name}_scale_inv"] = scale
    wm = {}
    for fn, t in files.items():
        st.save(str(tmp_path / fn), t)
        wm.update({k: fn for k in t})
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)
    got = load_layer(str(tmp_path), layer=1, cfg=cfg)
    deq = q8.astype(np.float32) * np.repeat(np.repeat(scale, 128, 0), 128, 1)[:o, :i]
    assert got[name].dtype == np.float32 and np.array_equal(got[name], deq)
    assert np.max(np.abs(got[name] - wf)) <= np.abs(wf).max() * 0.07  # e4m3 has 3 mantissa bits
    assert np.array_equal(got["self_attn.o_proj.weight"], w["self_attn.o_proj.weight"])


def test_errors(tmp_path):
    w = random_weights(CFG, seed=4)
    bad = dict(w)
    bad["self_attn.o_proj.weight"] = bad["self_attn.o_proj.weight"][:, :-1]
    p = str(tmp_path / "bad.safetensors")
    save_layer(p, bad)
    with pytest.raises(ValueError, match="o_proj"):
        load_layer(p, cfg=CFG)
    del bad["self_attn.indexer.wk.weight"]
    save_layer(p, bad)
    with pytest.raises(KeyError, match="indexer.wk"):
        load_layer(p, cfg=CFG)
    with open(p, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(st.SafetensorsError):
        st.read_header(p)
    # a byte range outside the data section
    with open(p, "wb") as f:
        h = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
        h += b" " * (-(len(h)) % 8)
        f.write(len(h).to_bytes(8, "little") + h + b"\0" * 8)
    with pytest.raises(st.SafetensorsError, match="x"):
        st.load(p)
