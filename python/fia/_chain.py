"""The rest of the DeepSeek-V3.2 / GLM-5 attention chain (include/fia/norm.h, rope.h, quant.h):
npu_rms_norm, npu_add_rms_norm, npu_rotary_mul, npu_interleave_rope, npu_dynamic_quant; the cache writes (cache.h):
scatter_update_, npu_scatter_nd_update_, npu_gather_selection_kv_cache; npu_mla_prolog_v3."""

from . import _fia
from ._core import (FiaInvalidArgument, as_array, check_out, dtype_arg, empty, is_torch,
                    run, unsupported)

import numpy as np


def _arr(x):
    return x if type(x) is np.ndarray or is_torch(x) else as_array(x)


def _rstd_shape(x, gamma):
    xs, g = tuple(x.shape), len(tuple(gamma.shape))
    return xs[:len(xs) - g] + (1,) * min(g, len(xs))


def _norm_outputs(x, gamma, add):
    y = empty(x, tuple(x.shape), None)
    rstd = empty(x, _rstd_shape(x, gamma), "float32")
    return (y, rstd, empty(x, tuple(x.shape), None)) if add else (y, rstd)


def npu_rms_norm(self, gamma, epsilon=1e-06, *, out=None):
    """torch_npu.npu_rms_norm: y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + epsilon) over
    the trailing dims gamma has.

      self:  [..., trailing dims] float32 / float16 / bfloat16
      gamma: the trailing dims of self, self's dtype or float32
    Returns (y: self's shape and dtype, rstd: float32, self's leading dims then a 1 per gamma
    dim). fp32 arithmetic, y rounded once. out=(y, rstd) preallocates."""
    x, gamma = _arr(self), _arr(gamma)
    y, rstd = _norm_outputs(x, gamma, False) if out is None else check_out("npu_rms_norm", out, 2)
    return run(_fia.rms_norm, (x, None, gamma, y, rstd, None, float(epsilon)), (y, rstd))


def npu_add_rms_norm(x1, x2, gamma, epsilon=1e-06, *, out=None):
    """torch_npu.npu_add_rms_norm: x = x1 + x2 (rounded to x1's dtype), then rms_norm of x.

      x1, x2: [..., trailing dims] float32 / float16 / bfloat16, the same shape and dtype
      gamma:  the trailing dims, x1's dtype or float32
    Returns (y, rstd, x): y and x x1's shape and dtype, rstd float32 (x1's leading dims then
    1s). out=(y, rstd, x) preallocates (y or x may alias x1 / x2: the residual in place)."""
    x1, x2, gamma = _arr(x1), _arr(x2), _arr(gamma)
    outs = _norm_outputs(x1, gamma, True) if out is None else check_out("npu_add_rms_norm", out, 3)
    y, rstd, x = outs
    return run(_fia.rms_norm, (x1, x2, gamma, y, rstd, x, float(epsilon)), (y, rstd, x))


def npu_rotary_mul(self, r1, r2, rotary_mode="half", rotate=None, *, out=None):
    """torch_npu.npu_rotary_mul: y = x * r1 + rotate(x) * r2 over the last dim D (even, < 896);
    rotate(x) = cat(-x[D/2:], x[:D/2]) ("half") or (-x[2j+1], x[2j]) pairs ("interleave").

      self:   [..., D] float32 / float16 / bfloat16 (BSND, BNSD, SBND, TND: any leading dims)
      r1, r2: cos and sin, self's ndim, each dim self's or 1 (broadcast), self's dtype
    Returns y: self's shape and dtype. `rotate` (the NPU's rotation-matrix input) is not
    supported (NotImplementedError)."""
    if rotate is not None:
        unsupported("npu_rotary_mul", ["rotate"])
    x, c, s = _arr(self), _arr(r1), _arr(r2)
    y = empty(x, tuple(x.shape), None) if out is None else check_out("npu_rotary_mul", out, 1)
    return run(_fia.rotary_mul, (False, x, c, s, y, str(rotary_mode)), y)


def npu_interleave_rope(x, cos, sin, *, out=None):
    """torch_npu.npu_interleave_rope: the MLA k_rope RoPE: q = cat(x[..., 0::2], x[..., 1::2])
    (evens first), y = q * cos + rotate_half(q) * sin.

      x:        [B, N, S, 64] in torch_npu (fia: any shape npu_rotary_mul takes)
      cos, sin: [B, 1, S or 1, 64] (broadcast over size-1 dims), x's dtype
    Returns y: x's shape and dtype."""
    x, c, s = _arr(x), _arr(cos), _arr(sin)
    y = empty(x, tuple(x.shape), None) if out is None else check_out("npu_interleave_rope", out, 1)
    return run(_fia.rotary_mul, (True, x, c, s, y, "half"), y)


def _quant_scale_shape(x, quant_mode):
    xs = tuple(x.shape)
    if quant_mode == "pertensor":
        return (1,)
    if quant_mode == "perchannel":
        return xs[:-2] + xs[-1:]
    return xs[:-1]


def npu_dynamic_quant(input, *, smooth_scales=None, group_index=None, dst_type=None,
                      quant_mode="pertoken", dst_type_max=0.0, out=None):
    """torch_npu.npu_dynamic_quant: symmetric dynamic int8 quantization.

      v = input * smooth (per element of the last dim; 1 without smooth_scales)
      scale = max |v| / DTYPE_MAX per row ("pertoken"), over the tensor ("pertensor") or per
              column of dim -2 ("perchannel"); DTYPE_MAX = dst_type_max or 127
      y = sat_int8(round(v / scale)), round half to even (torch.round, as the golden)
    input float32 / float16 / bfloat16; smooth_scales [H] (with group_index: [E, H], rows of
    group e use row e); group_index int32 [E] cumulative row boundaries.
    Returns (y int8 input's shape, scale float32: pertoken input.shape[:-1], pertensor [1],
    perchannel input's shape without dim -2). dst_type must be None / int8 (quint4x2:
    NotImplementedError)."""
    op = "npu_dynamic_quant"
    dt = dtype_arg(dst_type)
    if dt not in (None, "int8"):
        unsupported(op, ["dst_type=%s" % dt])
    if quant_mode not in ("pertoken", "pertensor", "perchannel"):
        raise FiaInvalidArgument("%s: quant_mode is %r, expected pertoken, pertensor or "
                                 "perchannel" % (op, quant_mode))
    x = _arr(input)
    if out is None:
        y = empty(x, tuple(x.shape), "int8")
        scale = empty(x, _quant_scale_shape(x, quant_mode), "float32")
    else:
        y, scale = check_out(op, out, 2)
    sm = _arr(smooth_scales) if smooth_scales is not None else None
    gi = _arr(group_index) if group_index is not None else None
    return run(_fia.dynamic_quant, (x, sm, gi, y, scale, quant_mode, float(dst_type_max)),
               (y, scale))


# ---------------------------------------------------------------------------------------------
# cache writes (include/fia/cache.h)
# ---------------------------------------------------------------------------------------------

def scatter_update_(self, indices, updates, axis):
    """torch_npu.scatter_update_ (in place): for every entry k (batch b = k with indices [B],
    or (b, p) = indices[k] with indices [K, 2]) and start p = indices[k]:
        self[b, ..., p + j, ...] = updates[k, ..., j, ...]   along `axis` (not 0)
    the KV-cache append (cache [B, S, H] / [B, N, S, D], axis -2).
      self:    2..8 dims, any dtype, updated in place (numpy array or torch tensor)
      indices: int32 / int64 [B] or [K, 2]
      updates: self's dtype and ndim; dim 0 the entries, dim `axis` <= self's, others equal
    Every index is checked before anything is written (ValueError naming the entry, self
    unchanged). Returns self."""
    res = run(_fia.scatter_update, (self, _arr(indices), _arr(updates), int(axis)), self)
    return res


def scatter_update(self, indices, updates, axis):
    """torch_npu.scatter_update: scatter_update_ on a copy of self (self unchanged)."""
    data = self.clone() if is_torch(self) else np.array(self, copy=True)
    return scatter_update_(data, indices, updates, axis)


def npu_scatter_nd_update_(self, indices, updates, *, cache_mode="BSND"):
    """torch_npu.npu_scatter_nd_update_ (in place): self[indices[i]] = updates[i] for every
    index tuple i.
      self:    1..8 dims, any dtype, updated in place
      indices: int32 / int64 [..., a]: tuples indexing self's first a dims
      updates: indices.shape[:-1] + self.shape[a:], self's dtype
    fia extension: cache_mode="PA_BSND" takes a paged cache [blocks, block_size, (N,) D] with
    flat slots as [..., 1] indices (no flat view needed). Every index is checked before
    anything is written (negative or out-of-range: ValueError, self unchanged). Returns self."""
    return run(_fia.scatter_nd_update, (self, _arr(indices), _arr(updates), str(cache_mode)),
               self)


def npu_scatter_nd_update(self, indices, updates):
    """torch_npu.npu_scatter_nd_update: npu_scatter_nd_update_ on a copy of self."""
    data = self.clone() if is_torch(self) else np.array(self, copy=True)
    return npu_scatter_nd_update_(data, indices, updates)


def npu_gather_selection_kv_cache(selection_k_rope, selection_kv_cache, selection_kv_block_table,
                                  selection_kv_block_status, selection_topk_indices, full_k_rope,
                                  full_kv_cache, full_kv_block_table, full_kv_actual_seq,
                                  full_q_actual_seq, *, selection_topk_block_size=64, out=None):
    """custom.npu_gather_selection_kv_cache (cann-recipes-infer, KV offload; in place): gathers
    the top-k token blocks of a paged full cache into a compact selection cache. For batch b,
    query position s and head h (H = 1), with sbs = selection_topk_block_size:
      kv = full_kv_actual_seq[b] - (q - 1 - s) when s < q = full_q_actual_seq[b], else
           full_kv_actual_seq[b] (the MTP offset); kv <= 0: the row is skipped (status kept,
           length 0). n = ceil(kv / sbs) blocks, the last holding kv - (n - 1) sbs tokens.
      selection_topk_indices[b, s, h, :] is read in order: a negative entry ends the list, an
      entry >= n is skipped, a valid entry e (duplicates gathered again) is copied, as the v-th
      valid one, from full tokens [e sbs, e sbs + len(e)) (through full_kv_block_table[b]) to
      selection tokens [v sbs, ..) through row (b S + s) H + h of selection_kv_block_table, kv
      cache and k_rope alike; status[v] = e; then status[v..K) = -1, status[K] = the count.

      selection_k_rope / full_k_rope:   [blocks, block_size, R] (or [.., 1, R]); both empty
                                        (numel 0) for the no-rope (C8) form
      selection_kv_cache / full_kv_cache: [blocks, block_size, C], float16 / bfloat16 / int8
      selection_kv_block_table: int32 [B*S*H, S_MAX_BLOCKS] (not written)
      selection_kv_block_status: int32 [B, S, H, K+1] or [B*S, H, K+1] (written)
      selection_topk_indices: int32 [B, S, H, K] or [B*S, H, K], K <= 2048 (sbs 1 when K > 32)
      full_kv_block_table: int32 [B, F_MAX_BLOCKS]; full_kv_actual_seq / full_q_actual_seq
                           int32 [B]
    The selection caches and the status are updated in place (numpy arrays or torch tensors).
    Returns selection_kv_actual_seq: int32 [B*S*H], the gathered token count of each row
    (out= preallocates it). Bad indices (block ids out of range, lengths past the table) raise
    ValueError with nothing written."""
    op = "npu_gather_selection_kv_cache"
    skv = selection_kv_cache
    rows = tuple(selection_kv_block_table.shape)[0] if len(tuple(selection_kv_block_table.shape)) else 0
    res = empty(skv, (rows,), "int32") if out is None else check_out(op, out, 1)
    return run(_fia.gather_selection_kv_cache,
               (selection_k_rope, skv, _arr(selection_kv_block_table), selection_kv_block_status,
                _arr(selection_topk_indices), _arr(full_k_rope), _arr(full_kv_cache),
                _arr(full_kv_block_table), _arr(full_kv_actual_seq), _arr(full_q_actual_seq), res,
                int(selection_topk_block_size)), res)


# ---------------------------------------------------------------------------------------------
# MLA prolog (include/fia/prolog.h)
# ---------------------------------------------------------------------------------------------

_PROLOG_WEIGHT_QUANT_TENSORS = ("dequant_scale_x", "dequant_scale_w_dq", "dequant_scale_w_uq_qr",
                                "dequant_scale_w_dkv_kr", "smooth_scales_cq", "actual_seq_len")


def _prolog_outputs(token_x, weight_uk, rope_sin, weight_dq, query_norm_flag,
                    query_quant_mode=0):
    lead = tuple(token_x.shape[:-1])
    N, _, C = tuple(weight_uk.shape)
    Dr = tuple(rope_sin.shape)[-1]
    T = 1
    for d in lead:
        T *= int(d)
    e = (empty(token_x, (T, N, 1), "float32") if query_quant_mode
         else empty(token_x, (0,), "float32"))
    qn = (empty(token_x, lead + (tuple(weight_dq.shape)[-1],), None) if query_norm_flag
          else empty(token_x, (0,), None))
    qo = empty(token_x, lead + (N, C), "int8" if query_quant_mode else None)
    return (qo, empty(token_x, lead + (N, Dr), None), e, qn, empty(token_x, (0,), "float32"))


def npu_mla_prolog_v3(token_x, weight_dq, weight_uq_qr, weight_uk, weight_dkv_kr,
                      rmsnorm_gamma_cq, rmsnorm_gamma_ckv, rope_sin, rope_cos, kv_cache,
                      kr_cache, *, cache_index=None, dequant_scale_x=None,
                      dequant_scale_w_dq=None, dequant_scale_w_uq_qr=None,
                      dequant_scale_w_dkv_kr=None, quant_scale_ckv=None, quant_scale_ckr=None,
                      smooth_scales_cq=None, actual_seq_len=None, k_nope_clip_alpha=None,
                      rmsnorm_epsilon_cq=1e-05, rmsnorm_epsilon_ckv=1e-05, cache_mode="PA_BSND",
                      query_norm_flag=False, weight_quant_mode=0, kv_cache_quant_mode=0,
                      query_quant_mode=0, ckvkr_repo_mode=0, quant_scale_repo_mode=0,
                      tile_size=128, qc_qr_scale=1.0, kc_scale=1.0, token_x_dtype=None,
                      weight_dq_dtype=None, weight_uq_qr_dtype=None, weight_dkv_kr_dtype=None,
                      kv_cache_dtype=None, out=None):
    """torch_npu.npu_mla_prolog_v3 (DeepSeek-V3.2 / GLM-5): the MLA query and latent-KV
    projections, RMSNorms and RoPE, writing the latent (kv_cache) and rope (kr_cache) caches of
    the tokens in place.

      c_q  = bf16(x . W_DQ);  cq = bf16(qc_qr_scale * RmsNorm(c_q))           (= query_norm)
      qcqr = bf16(cq . W_UQ_QR) per head [D | Dr]
      query_out = bf16(qcqr[:D] . W_UK[n]) [T, N, 512];  query_rope_out = RoPE(qcqr[D:])
      kvkr = bf16(x . W_DKV_KR): kv row = bf16(kc_scale * RmsNorm(kvkr[:512])),
             kr row = RoPE(kvkr[512:])
    RoPE is the MLA interleave-half form (x' = [x[0::2], x[1::2]], then rotate-half with
    cos / sin in half layout): the rope outputs and the kr cache are de-interleaved.
    Shapes (bfloat16): token_x [T, He] or [B, S, He]; weight_dq [He, Hcq]; weight_uq_qr
    [Hcq, N*(D+Dr)]; weight_uk [N, D, 512]; weight_dkv_kr [He, 512+Dr]; gammas [Hcq], [512];
    rope_sin / rope_cos [T, Dr] (as token_x); kv_cache / kr_cache PA_BSND [blocks, block_size,
    1, 512] / [.., 64] with cache_index int64 [T] (flat slots; negative: not written), BSND
    [B, S, 1, 512] or TND [T, 1, 512] (row t).
    Quantized caches (int8 kv_cache; fia/prolog.h has the exact rounding):
      kv_cache_quant_mode=1: kv = int8(rint(kv row * quant_scale_ckv)), quant_scale_ckv [1];
      kv_cache_quant_mode=2: per channel, quant_scale_ckv [1, 512], and kr_cache int8 with
        quant_scale_ckr [1, 64];
      kv_cache_quant_mode=3 with ckvkr_repo_mode=1, quant_scale_repo_mode=1, tile_size=128: the
        C8 cache that npu_kv_quant_sparse_flash_attention reads, kv_cache int8
        [blocks, block_size, 1, 656] (or BSND / TND with 656), each row int8 latent per
        128-tile (clipped by k_nope_clip_alpha [1], default 1) | bf16 rope | 4 fp32 scales;
        kr_cache is not touched (pass any tensor, e.g. a dummy).
    query_quant_mode=1 (with kv_cache_quant_mode=1): query_out int8, dequant_scale_q_nope
    fp32 [T, N, 1], query_rope_out scaled by quant_scale_ckv / dequant_scale_q_nope.
    Returns (query_out, query_rope_out, dequant_scale_q_nope, query_norm,
    dequant_scale_q_norm): the unused ones are [0] tensors (query_norm [T, Hcq] with
    query_norm_flag).
    Not supported (NotImplementedError): weight_quant_mode 1 and 2 (int8 weights) and their
    tensors (dequant_scale_*, smooth_scales_cq), actual_seq_len, and the `*_dtype` arguments
    other than None / bfloat16 (kv_cache_dtype: also int8)."""
    op = "npu_mla_prolog_v3"
    given = [n for n, v in zip(_PROLOG_WEIGHT_QUANT_TENSORS,
                               (dequant_scale_x, dequant_scale_w_dq, dequant_scale_w_uq_qr,
                                dequant_scale_w_dkv_kr, smooth_scales_cq, actual_seq_len))
             if v is not None]
    modes = (["weight_quant_mode=%r" % (weight_quant_mode,)] if weight_quant_mode != 0 else [])
    dts = [("%s=%s" % (n, dtype_arg(v))) for n, v in (
        ("token_x_dtype", token_x_dtype), ("weight_dq_dtype", weight_dq_dtype),
        ("weight_uq_qr_dtype", weight_uq_qr_dtype), ("weight_dkv_kr_dtype", weight_dkv_kr_dtype))
        if dtype_arg(v) not in (None, "bfloat16")]
    if dtype_arg(kv_cache_dtype) not in (None, "bfloat16", "int8"):
        dts.append("kv_cache_dtype=%s" % dtype_arg(kv_cache_dtype))
    if given or modes or dts:
        unsupported(op, modes + given + dts)
    x = _arr(token_x)
    if out is None:
        outs = _prolog_outputs(x, weight_uk, rope_sin, weight_dq, query_norm_flag,
                               int(query_quant_mode))
    else:
        outs = check_out(op, out, 5)
    return run(_fia.mla_prolog_v3,
        (x, _arr(weight_dq), _arr(weight_uq_qr), _arr(weight_uk), _arr(weight_dkv_kr),
         _arr(rmsnorm_gamma_cq), _arr(rmsnorm_gamma_ckv), _arr(rope_sin), _arr(rope_cos),
         kv_cache, kr_cache, None if cache_index is None else _arr(cache_index), outs[0],
         outs[1], outs[3] if query_norm_flag else None,
         None if quant_scale_ckv is None else _arr(quant_scale_ckv),
         None if quant_scale_ckr is None else _arr(quant_scale_ckr),
         None if k_nope_clip_alpha is None else _arr(k_nope_clip_alpha),
         outs[2] if query_quant_mode else None, float(rmsnorm_epsilon_cq),
         float(rmsnorm_epsilon_ckv), str(cache_mode), bool(query_norm_flag), 0,
         int(kv_cache_quant_mode), int(query_quant_mode), int(ckvkr_repo_mode),
         int(quant_scale_repo_mode), int(tile_size), float(qc_qr_scale), float(kc_scale)), outs)


def _rms_fake(self, gamma, epsilon=1e-06):
    return _norm_outputs(self, gamma, False)


def _add_rms_fake(x1, x2, gamma, epsilon=1e-06):
    return _norm_outputs(x1, gamma, True)


def _rotary_fake(self, r1, r2, rotary_mode="half", rotate=None):
    return empty(self, tuple(self.shape), None)


def _interleave_fake(x, cos, sin):
    return empty(x, tuple(x.shape), None)


def _quant_fake(input, *, smooth_scales=None, group_index=None, dst_type=None,
                quant_mode="pertoken", dst_type_max=0.0):
    return (empty(input, tuple(input.shape), "int8"),
            empty(input, _quant_scale_shape(input, quant_mode), "float32"))


def _scatter_update_fake(self, indices, updates, axis):
    return self


def _scatter_nd_fake(self, indices, updates):
    return self


def _gather_selection_fake(selection_k_rope, selection_kv_cache, selection_kv_block_table,
                           selection_kv_block_status, selection_topk_indices, full_k_rope,
                           full_kv_cache, full_kv_block_table, full_kv_actual_seq,
                           full_q_actual_seq, *, selection_topk_block_size=64):
    return empty(selection_kv_cache, (tuple(selection_kv_block_table.shape)[0],), "int32")


def _prolog_fake(token_x, weight_dq, weight_uq_qr, weight_uk, weight_dkv_kr, rmsnorm_gamma_cq,
                 rmsnorm_gamma_ckv, rope_sin, rope_cos, kv_cache, kr_cache, **kw):
    return _prolog_outputs(token_x, weight_uk, rope_sin, weight_dq,
                           kw.get("query_norm_flag", False), kw.get("query_quant_mode", 0))


OPS = {
    "scatter_update_": (scatter_update_, _scatter_update_fake),
    "npu_scatter_nd_update_": (npu_scatter_nd_update_, _scatter_nd_fake),
    "npu_mla_prolog_v3": (npu_mla_prolog_v3, _prolog_fake),
    "npu_gather_selection_kv_cache": (npu_gather_selection_kv_cache, _gather_selection_fake),
    "npu_rms_norm": (npu_rms_norm, _rms_fake),
    "npu_add_rms_norm": (npu_add_rms_norm, _add_rms_fake),
    "npu_rotary_mul": (npu_rotary_mul, _rotary_fake),
    "npu_interleave_rope": (npu_interleave_rope, _interleave_fake),
    "npu_dynamic_quant": (npu_dynamic_quant, _quant_fake),
}
