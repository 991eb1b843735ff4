"""Weights of one DSA attention layer under the Hugging Face DeepSeek-V3.2 parameter names.

Names are those of a layer of the published checkpoints (deepseek-ai/DeepSeek-V3.2(-Exp),
zai-org/GLM-5) without the `model.layers.<i>.` prefix, with HF's [out_features, in_features]
Linear layout:

    input_layernorm.weight                  [He]
    self_attn.q_a_proj.weight               [Hcq, He]
    self_attn.q_a_layernorm.weight          [Hcq]
    self_attn.q_b_proj.weight               [N * (D + Dr), Hcq]     per head [nope D | rope Dr]
    self_attn.kv_a_proj_with_mqa.weight     [Hckv + Dr, He]         [latent 512 | rope 64]
    self_attn.kv_a_layernorm.weight         [Hckv]
    self_attn.kv_b_proj.weight              [N * (D + Dv), Hckv]    per head [k_nope D | v Dv]
    self_attn.o_proj.weight                 [He, N * Dv]
    self_attn.indexer.wq_b.weight           [Hi * Di, Hcq]          per head [rope Dr | nope]
    self_attn.indexer.wk.weight             [Di, He]
    self_attn.indexer.k_norm.weight         [Di]                    LayerNorm (with bias)
    self_attn.indexer.k_norm.bias           [Di]
    self_attn.indexer.weights_proj.weight   [Hi, He]

FP8 checkpoints store a Linear weight as float8_e4m3fn with `<name>_scale_inv` (float32, one
per 128 x 128 block): the loader dequantizes them (w * scale_inv per block).
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np

from . import safetensors_io
from .dsa_config import DSAConfig

__all__ = ["param_shapes", "random_weights", "load_layer", "save_layer", "LINEAR_NAMES",
           "PARAM_NAMES"]

LINEAR_NAMES = ("self_attn.q_a_proj.weight", "self_attn.q_b_proj.weight",
                "self_attn.kv_a_proj_with_mqa.weight", "self_attn.kv_b_proj.weight",
                "self_attn.o_proj.weight", "self_attn.indexer.wq_b.weight",
                "self_attn.indexer.wk.weight", "self_attn.indexer.weights_proj.weight")

FP8_BLOCK = 128

PARAM_NAMES = ("input_layernorm.weight", "self_attn.q_a_proj.weight",
               "self_attn.q_a_layernorm.weight", "self_attn.q_b_proj.weight",
               "self_attn.kv_a_proj_with_mqa.weight", "self_attn.kv_a_layernorm.weight",
               "self_attn.kv_b_proj.weight", "self_attn.o_proj.weight",
               "self_attn.indexer.wq_b.weight", "self_attn.indexer.wk.weight",
               "self_attn.indexer.k_norm.weight", "self_attn.indexer.k_norm.bias",
               "self_attn.indexer.weights_proj.weight")


def param_shapes(cfg: DSAConfig) -> Dict[str, tuple]:
    """{name: shape} of every parameter of one layer of `cfg`."""
    He, N, Hcq, Hckv = cfg.hidden_size, cfg.num_heads, cfg.q_lora_rank, cfg.kv_lora_rank
    D, Dr, Dv = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    Hi, Di = cfg.index_n_heads, cfg.index_head_dim
    return {
        "input_layernorm.weight": (He,),
        "self_attn.q_a_proj.weight": (Hcq, He),
        "self_attn.q_a_layernorm.weight": (Hcq,),
        "self_attn.q_b_proj.weight": (N * (D + Dr), Hcq),
        "self_attn.kv_a_proj_with_mqa.weight": (Hckv + Dr, He),
        "self_attn.kv_a_layernorm.weight": (Hckv,),
        "self_attn.kv_b_proj.weight": (N * (D + Dv), Hckv),
        "self_attn.o_proj.weight": (He, N * Dv),
        "self_attn.indexer.wq_b.weight": (Hi * Di, Hcq),
        "self_attn.indexer.wk.weight": (Di, He),
        "self_attn.indexer.k_norm.weight": (Di,),
        "self_attn.indexer.k_norm.bias": (Di,),
        "self_attn.indexer.weights_proj.weight": (Hi, He),
    }


def random_weights(cfg: DSAConfig, seed: int = 0, dtype=np.float32) -> Dict[str, np.ndarray]:
    """Seeded random weights of one layer: Linear weights N(0, 1/in_features) so activations
    stay O(1) through the chain, norm gains 1 + N(0, 0.1^2), the k_norm bias N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in param_shapes(cfg).items():
        if len(shape) == 2:
            w = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif name.endswith("bias"):
            w = 0.1 * rng.standard_normal(shape)
        else:
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        out[name] = w.astype(np.float32).astype(dtype)
    return out


def _fp8_dequant(w: np.ndarray, scale_inv: np.ndarray, name: str) -> np.ndarray:
    o, i = w.shape
    bo, bi = -(-o // FP8_BLOCK), -(-i // FP8_BLOCK)
    if scale_inv.shape != (bo, bi):
        raise ValueError(f"{name}_scale_inv: shape {scale_inv.shape}, expected {(bo, bi)} for "
                         f"{name} {w.shape} in {FP8_BLOCK}x{FP8_BLOCK} blocks")
    s = np.repeat(np.repeat(scale_inv.astype(np.float32), FP8_BLOCK, 0), FP8_BLOCK, 1)[:o, :i]
    return w.astype(np.float32) * s


def _files_of(path: Union[str, Sequence[str]]):
    if isinstance(path, (list, tuple)):
        return list(path), None
    if os.path.isdir(path):
        idx = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            return None, {k: os.path.join(path, v) for k, v in wm.items()}
        return sorted(os.path.join(path, f) for f in os.listdir(path)
                      if f.endswith(".safetensors")), None
    return [path], None


_LAYER_RE = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.*)$")


def load_layer(path: Union[str, Sequence[str]], layer: Optional[int] = None,
               cfg: Optional[DSAConfig] = None, dtype=None) -> Dict[str, np.ndarray]:
    """Reads the attention parameters of one layer from safetensors file(s) with HF names.

    path:  a .safetensors file, a list of them, or a checkpoint directory (with or without a
           model.safetensors.index.json weight map).
    layer: the layer index (`model.layers.<layer>.`); None: the file must hold exactly one
           layer's attention parameters (with or without the prefix).
    cfg:   when given, every shape is checked against it (ValueError naming the tensor).
    dtype: convert every tensor to this numpy dtype (default: keep the stored dtype, except
           FP8 weights, which are dequantized to float32).
    Returns {short name: array} with the names of param_shapes().
    """
    files, wmap = _files_of(path)
    keys = {}  # short name -> (file, full name)
    if wmap is not None:
        items = wmap.items()
    else:
        items = [(k, f) for f in files for k in safetensors_io.read_header(f)
                 if not k.startswith("__")]
    wanted = set(param_shapes(cfg)) if cfg else None
    layers_seen = set()
    for full, f in items:
        m = _LAYER_RE.match(full)
        if m:
            li, short = int(m.group(1)), m.group(2)
            if layer is not None and li != layer:
                continue
            layers_seen.add(li)
        else:
            short = full
            if layer is not None:
                continue
        keys[short] = (f, full)
    if layer is None and len(layers_seen) > 1:
        raise ValueError(f"{path}: holds layers {sorted(layers_seen)}; pass layer=")
    names = list(wanted) if wanted else list(PARAM_NAMES)
    missing = [n for n in names if n not in keys]
    if missing:
        where = f"layer {layer}" if layer is not None else "the file"
        raise KeyError(f"{path}: {where} lacks {missing}")
    out = {}
    cache = {}
    for n in names:
        f, full = keys[n]
        arrs = cache.setdefault(f, {})
        if full not in arrs:
            arrs.update(safetensors_io.load(f, [full]))
        a = arrs[full]
        if str(a.dtype).startswith("float8"):
            sn = n + "_scale_inv"
            if sn not in keys:
                raise KeyError(f"{path}: {full} is {a.dtype} but {full}_scale_inv is missing")
            sf, sfull = keys[sn]
            s = safetensors_io.load(sf, [sfull])[sfull]
            a = _fp8_dequant(a, s, full)
        if cfg is not None and tuple(a.shape) != param_shapes(cfg)[n]:
            raise ValueError(f"{full}: shape {tuple(a.shape)}, {cfg.name} expects "
                             f"{param_shapes(cfg)[n]}")
        out[n] = a.astype(dtype) if dtype is not None else a
    return out


def save_layer(path: str, weights: Dict[str, np.ndarray], layer: int = 0,
               extra: Optional[Dict[str, np.ndarray]] = None):
    """Writes `weights` (short names) as `model.layers.<layer>.<name>` to a safetensors file."""
    t = {f"model.layers.{layer}.{k}": np.asarray(v) for k, v in weights.items()}
    if extra:
        t.update(extra)
    safetensors_io.save(path, t, metadata={"format": "pt"})
