"""An independent float64 reference of one DSA attention layer (DeepSeek-V3.2 / GLM-5).

Written from the model's published semantics (the DeepSeek-V3.2 paper and the official
inference demo's formulas; the layer module fia.models.dsa composes fia operators instead and
is checked against this). One request at a time, statelessly: the caller passes the layer input
of every position 0..L-1 of the request and gets the outputs of positions q_start..L-1, with the
keys of all L positions recomputed from scratch, so no cache, paging or operator of fia is
involved.

The layer, for a request's positions p (hidden h_p, residual r_p):
    x_p   = h_p + r_p  (the new residual);   u_p = RMSNorm(x_p) * input_layernorm
    qr_p  = RMSNorm(u_p @ q_a_proj^T) * q_a_layernorm
    q_p   = qr_p @ q_b_proj^T  -> per head [q_nope D | q_pe Dr], q_pe RoPE'd (interleaved pairs)
    kv_p  = u_p @ kv_a_proj_with_mqa^T -> [c 512 | k_pe Dr];  c = RMSNorm(c) * kv_a_layernorm;
            k_pe RoPE'd (interleaved pairs)
    W_UK, W_UV = kv_b_proj.view(N, D + Dv, 512) split [D | Dv]
    indexer: qi = qr @ wq_b^T per head [rope Dr | rest], ki = LayerNorm(u @ wk^T) (weight, bias,
            eps 1e-6); RoPE on the first Dr dims of both (half split unless
            cfg.indexer_rope_interleave); w = u @ weights_proj^T * Hi^-0.5 * Di^-0.5;
            I[p, t] = sum_h w[p, h] * ReLU(qi[p, h] . ki[t])   for t <= p (causal)
            T(p) = the min(topk, p + 1) positions of highest I, ties to the lower position
    attention (absorbed MLA, exactly the expanded MHA form of the demo's prefill):
            s[h, t] = scale * ((q_nope[h] @ W_UK[h]) . c_t + q_pe[h] . k_pe_t),  t in T(p)
            o[h] = (softmax_t s[h]) @ c   ->  o[h] @ W_UV[h]^T  ->  concat heads @ o_proj^T
    scale = qk_head_dim^-0.5 (* mscale^2 under YaRN).

Options:
  emulate_bf16: round to bfloat16 where the fia chain stores a tensor (the layer input sum,
      every projection and norm output, the RoPE tables and outputs, the absorbed query, the
      indexer q/k, the attention output and each later product), so a comparison with the
      chain isolates accumulation-order differences;
  c8: the seed's C8 path: indexer q and k Hadamard-rotated (orthogonal, 128^-0.5 Sylvester) and
      quantized to int8 per token (and head) with scale amax/127; the latent cache quantized
      per token per 128-wide tile (scale amax/127, amax >= 1e-8), k_pe kept in bfloat16; the
      attention runs on the dequantized values (with emulate_bf16 also at the C8 contract's
      rounding points: the dequantized row and the probabilities P cast to bf16);
  round_out: round the layer output to bfloat16 (default: as emulate_bf16); comparisons of a
      bf16 output use the unrounded value, so the output's own rounding counts once;
  mode="mha": the expanded (non-absorbed) prefill form of the demo, as a self-check;
  selection: per query row, the token positions to attend to (instead of the reference's own
      top-k), to evaluate the attention on another implementation's selection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from .dsa_config import DSAConfig

__all__ = ["rope_inv_freq", "rope_cos_sin", "rope_interleaved", "rope_half", "hadamard",
           "quant_int8_rows", "quant_int8_tiles", "reference_layer", "RefOutput",
           "topk_positions", "compare_topk"]

F64 = torch.float64


# ------------------------------------------------------------------------------------------ RoPE
def rope_inv_freq(cfg: DSAConfig) -> torch.Tensor:
    """The Dr/2 rotary frequencies, with DeepSeek's YaRN correction when cfg.yarn."""
    dim, base = cfg.qk_rope_head_dim, cfg.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=F64) / dim))
    if cfg.yarn:
        def corr_dim(rot):
            return dim * math.log(cfg.original_seq_len / (rot * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(corr_dim(cfg.beta_fast)), 0)
        high = min(math.ceil(corr_dim(cfg.beta_slow)), dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=F64) - low) / (high - low)).clamp(0, 1)
        smooth = 1 - ramp
        freqs = freqs / cfg.rope_factor * (1 - smooth) + freqs * smooth
    return freqs


def rope_cos_sin(cfg: DSAConfig, positions) -> tuple:
    """cos, sin [L, Dr/2] (float64) of the angles position * frequency."""
    pos = torch.as_tensor(np.asarray(positions), dtype=F64).reshape(-1)
    ang = torch.outer(pos, rope_inv_freq(cfg))
    return torch.cos(ang), torch.sin(ang)


def rope_interleaved(x, cos, sin):
    """Rotates the pairs (x[2i], x[2i+1]) by angle i (complex multiply), x [L, ..., Dr],
    cos/sin [L, Dr/2]."""
    shp = (cos.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[1],)
    c, s = cos.reshape(shp), sin.reshape(shp)
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack((xe * c - xo * s, xe * s + xo * c), dim=-1).flatten(-2)


def rope_half(x, cos, sin):
    """Rotates the pairs (x[i], x[i + Dr/2]) by angle i (NeoX / rotate-half layout)."""
    shp = (cos.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[1],)
    c, s = cos.reshape(shp), sin.reshape(shp)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


# -------------------------------------------------------------------------------- quantization
def hadamard(n: int, dtype=F64) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix scaled by n^-0.5 (orthogonal, symmetric)."""
    if n & (n - 1):
        raise ValueError(f"hadamard: n {n} is not a power of two")
    h = torch.ones(1, 1, dtype=F64)
    while h.shape[0] < n:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return (h * n ** -0.5).to(dtype)


def _round_half_away(x):
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def quant_int8_rows(x):
    """Symmetric int8 per row (last dim), npu_dynamic_quant's rule: scale = amax/127 (fp32),
    q = round(x/scale) half to even. Returns (q as float64, scale [..., 1] float64)."""
    amax = x.abs().amax(-1, keepdim=True)
    scale = (amax / 127.0).to(torch.float32).to(F64)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(x / safe).clamp(-127, 127)
    return q, scale


def quant_int8_tiles(x, tile: int = 128, clip_alpha: float = 1.0):
    """Per row per `tile`-wide tile: amax = max(max|x|, 1e-8) * clip_alpha, x clipped to
    +-amax, scale = amax/127 (stored as fp32), q = round(x/scale). Returns the dequantized
    values and the scales [..., tiles]."""
    shp = x.shape
    t = x.reshape(*shp[:-1], shp[-1] // tile, tile)
    amax = t.abs().amax(-1, keepdim=True).clamp_min(1e-8) * clip_alpha
    scale = (amax / 127.0).to(torch.float32).to(F64)
    q = _round_half_away(t.clamp(-amax, amax) / scale).clamp(-127, 127)
    return (q * scale).reshape(shp), scale.squeeze(-1)


# ------------------------------------------------------------------------------------- helpers
def _rms(x, g, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g


def _layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps) * g + b


def _t(a):
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", F64)
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":  # ml_dtypes (bfloat16, float8)
        a = a.astype(np.float32)
    return torch.from_numpy(np.array(a, dtype=np.float64))


def topk_positions(scores_row, k: int):
    """The k positions of highest score (finite or not), by descending score, ties to the
    lower position; scores_row float64 [L] with -inf at invisible positions."""
    order = np.argsort(-scores_row.numpy(), kind="stable")
    return torch.from_numpy(order[:k].copy())


@dataclass
class RefOutput:
    out: torch.Tensor            # [Lq, He] float64
    residual: torch.Tensor       # [Lq, He] the new residual x = h + r
    topk: List[torch.Tensor]     # per query row: the selected positions (by descending score)
    index_scores: torch.Tensor   # [Lq, L] indexer scores, -inf where not visible
    lse: torch.Tensor            # [Lq, N] natural-log sum exp of the scaled logits
    attn_latent: torch.Tensor    # [Lq, N, 512] attention output in latent space (before W_UV)
    q_nope_abs: torch.Tensor     # [Lq, N, 512]
    q_pe: torch.Tensor           # [Lq, N, Dr] (interleaved RoPE layout)
    latent: torch.Tensor         # [L, 512] the (dequantized under c8) latent cache rows
    k_pe: torch.Tensor           # [L, Dr]


def reference_layer(cfg: DSAConfig, w: dict, hidden, residual=None, q_start: int = 0, *,
                    positions=None, c8: bool = False, emulate_bf16: bool = False,
                    mode: str = "absorb", round_out: Optional[bool] = None,
                    selection: Optional[Sequence] = None,
                    c8_latent_bf16: bool = True) -> RefOutput:
    """One request: hidden/residual [L, He] for positions 0..L-1 (or `positions`), outputs of
    rows q_start..L-1. w: {HF short name: array} (see dsa_weights).
    c8_latent_bf16 (with c8 and emulate_bf16): the rounding point of the C8 latent
    quantization. True: the normalized latent row is rounded to bf16 and then quantized (the
    pure-torch golden of npu_mla_prolog_v3, tests/python/npu_golden.py); False: the unrounded
    normalized row is quantized (fia's prolog: its fp32 row). The contract (per 128-tile,
    scale amax/127, round) does not fix this point; the two differ by one int8 step in a few
    percent of the elements."""
    if mode not in ("absorb", "mha"):
        raise ValueError(f"mode {mode!r}: 'absorb' or 'mha'")
    bf = (lambda a: a.to(torch.bfloat16).to(F64)) if emulate_bf16 else (lambda a: a)
    W = {k: _t(v) for k, v in w.items()}
    h = _t(hidden)
    L, He = h.shape
    N, D, Dr, Dv = cfg.num_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    C, Hi, Di = cfg.kv_lora_rank, cfg.index_n_heads, cfg.index_head_dim
    pos = np.arange(L) if positions is None else np.asarray(positions).reshape(-1)
    x = bf(h + _t(residual)) if residual is not None else h
    u = bf(_rms(x, W["input_layernorm.weight"], cfg.rms_norm_eps))
    cos, sin = rope_cos_sin(cfg, pos)
    cos, sin = bf(cos), bf(sin)

    # MLA query and latent
    cq = bf(u @ W["self_attn.q_a_proj.weight"].T)
    qr = bf(_rms(cq, W["self_attn.q_a_layernorm.weight"], cfg.rms_norm_eps))
    q = bf(qr @ W["self_attn.q_b_proj.weight"].T).view(L, N, D + Dr)
    q_nope, q_pe = q[..., :D], bf(rope_interleaved(q[..., D:], cos, sin))
    kv = bf(u @ W["self_attn.kv_a_proj_with_mqa.weight"].T)
    c_f = _rms(kv[:, :C], W["self_attn.kv_a_layernorm.weight"], cfg.rms_norm_eps)
    c = bf(c_f)
    k_pe = bf(rope_interleaved(kv[:, C:].unsqueeze(1), cos, sin).squeeze(1))
    wkv_b = W["self_attn.kv_b_proj.weight"].view(N, D + Dv, C)
    w_uk, w_uv = wkv_b[:, :D], wkv_b[:, D:]
    q_abs = bf(torch.einsum("lhd,hdc->lhc", q_nope, w_uk))
    # C8: dequantized K cast to bf16
    c_att = bf(quant_int8_tiles(c if c8_latent_bf16 else c_f)[0]) if c8 else c

    # indexer
    qi = bf(qr @ W["self_attn.indexer.wq_b.weight"].T).view(L, Hi, Di)
    ki = bf(u @ W["self_attn.indexer.wk.weight"].T)
    ki = bf(_layer_norm(ki, W["self_attn.indexer.k_norm.weight"],
                        W["self_attn.indexer.k_norm.bias"], cfg.index_norm_eps))
    rope = rope_interleaved if cfg.indexer_rope_interleave else rope_half
    qi = torch.cat((bf(rope(qi[..., :Dr], cos, sin)), qi[..., Dr:]), -1)
    ki = torch.cat((bf(rope(ki[:, None, :Dr], cos, sin)[:, 0]), ki[:, Dr:]), -1)
    wts = (u @ W["self_attn.indexer.weights_proj.weight"].T) * cfg.index_weight_scale
    if c8:
        H = hadamard(Di)
        qh, kh = qi @ H, ki @ H
        qq, qs = quant_int8_rows(qh)
        kq, ks = quant_int8_rows(kh)
        qi, ki = qq * qs, kq * ks
    iscore = torch.einsum("phd,td->pht", qi[q_start:], ki).clamp_min(0)
    iscore = torch.einsum("ph,pht->pt", wts[q_start:], iscore)
    vis = torch.as_tensor(pos[None, :] <= pos[q_start:, None])
    iscore = torch.where(vis, iscore, torch.full_like(iscore, -math.inf))

    Lq = L - q_start
    topk, outs, lses = [], [], []
    scale = cfg.softmax_scale
    if mode == "mha":
        kvb = torch.einsum("tc,hec->the", c_att, wkv_b)  # [L, N, D + Dv]
        k_full = torch.cat((kvb[..., :D], k_pe[:, None, :].expand(L, N, Dr)), -1)
        v_full = kvb[..., D:]
        q_full = torch.cat((q_nope, q_pe), -1)
    for r in range(Lq):
        nvis = int(vis[r].sum())
        sel = (topk_positions(iscore[r], min(cfg.index_topk, nvis)) if selection is None
               else torch.as_tensor(np.asarray(selection[r]), dtype=torch.long))
        topk.append(sel)
        p = q_start + r
        if mode == "absorb":
            s = (q_abs[p] @ c_att[sel].T + q_pe[p] @ k_pe[sel].T) * scale   # [N, k]
            m = s.amax(-1, keepdim=True)
            e = torch.exp(s - m)
            lse = (m + torch.log(e.sum(-1, keepdim=True))).squeeze(-1)
            if c8 and emulate_bf16:
                # the C8 contract casts P to the query dtype: the mantissa of exp(s - m),
                # rounded independently of the max (exp(s - g), g = round(m / ln2) ln2)
                g = torch.round(m / math.log(2)) * math.log(2)
                pr = bf(torch.exp(s - g)) * torch.exp(g - m) / e.sum(-1, keepdim=True)
            else:
                pr = e / e.sum(-1, keepdim=True)
            o = pr @ c_att[sel]                                             # [N, C]
        else:
            s = torch.einsum("he,the->ht", q_full[p], k_full[sel]) * scale
            m = s.amax(-1, keepdim=True)
            e = torch.exp(s - m)
            lse = (m + torch.log(e.sum(-1, keepdim=True))).squeeze(-1)
            o = torch.einsum("ht,the->he", e / e.sum(-1, keepdim=True), v_full[sel])
        outs.append(o)
        lses.append(lse)
    o = torch.stack(outs) if outs else torch.zeros(0, N, C if mode == "absorb" else Dv, dtype=F64)
    lse = torch.stack(lses) if lses else torch.zeros(0, N, dtype=F64)
    if mode == "absorb":
        lat = bf(o)
        ov = bf(torch.einsum("lhc,hvc->lhv", lat, w_uv))
    else:
        lat = torch.zeros(Lq, N, C, dtype=F64)
        ov = o
    out = ov.reshape(Lq, N * Dv) @ W["self_attn.o_proj.weight"].T
    if emulate_bf16 if round_out is None else round_out:
        out = out.to(torch.bfloat16).to(F64)
    return RefOutput(out=out, residual=x[q_start:], topk=topk, index_scores=iscore, lse=lse,
                     attn_latent=lat, q_nope_abs=q_abs[q_start:], q_pe=q_pe[q_start:],
                     latent=c_att, k_pe=k_pe)


def compare_topk(scores, ref_sel, got_sel, rel_tol: float):
    """Checks one row's selection against the reference's: the two sets may differ only at
    near-ties, i.e. every position in one set but not the other must score within
    rel_tol * max|finite score| of the reference's k-th score. Returns (ok, n_diff)."""
    a = set(int(v) for v in ref_sel)
    b = set(int(v) for v in got_sel if int(v) >= 0)
    if len(a) != len(b):
        return False, abs(len(a) - len(b))
    diff = a ^ b
    if not diff:
        return True, 0
    s = scores.numpy()
    fin = s[np.isfinite(s)]
    tol = rel_tol * (np.abs(fin).max() if fin.size else 0.0)
    kth = s[int(ref_sel[-1])] if len(ref_sel) else 0.0
    ok = all(np.isfinite(s[j]) and abs(s[j] - kth) <= tol for j in diff)
    return ok, len(diff)
