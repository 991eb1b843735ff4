"""The sparse family (include/fia/sparse.h): npu_sparse_flash_attention,
npu_kv_quant_sparse_flash_attention, npu_lightning_indexer, npu_quant_lightning_indexer."""

import numpy as np

from . import _fia
from ._core import (INT64_MAX, FiaInvalidArgument, as_array, check_out, dtype_arg,
                    dtype_name, empty, is_torch, run, unsupported)


def _kw_check(op, items):
    """items: (name, value, ok) triples; raises NotImplementedError naming every one not ok."""
    bad = [n for n, v, ok in items if not ok]
    if bad:
        unsupported(op, ["%s=%r" % (n, v) for n, v, ok in items if not ok])


# ---------------------------------------------------------------------------------------------
# sparse_flash_attention (SFA)
# ---------------------------------------------------------------------------------------------

def sfa_outputs(query, key, layout_query="BSND", layout_kv="BSND", return_softmax_lse=False):
    """(attention_out, softmax_max, softmax_sum): attention_out the query's shape and dtype;
    max / sum float32 [B, N2, S1, N1/N2] (BSND) or [N2, T1, N1/N2] (TND), torch_npu's [0]
    tensors when return_softmax_lse is False."""
    qs = tuple(query.shape)
    out = empty(query, qs, None)
    if not return_softmax_lse:
        return out, empty(query, (0,), "float32"), empty(query, (0,), "float32")
    ks = tuple(key.shape)
    n2 = (ks[1] if layout_kv == "TND" else ks[2]) if len(ks) > 2 else 1
    n2 = n2 or 1
    if layout_query == "TND":
        shape = (n2, qs[0], qs[1] // n2)
    else:
        shape = (qs[0], n2, qs[1], qs[2] // n2)
    return out, empty(query, shape, "float32"), empty(query, shape, "float32")


def npu_sparse_flash_attention(
        query, key, value, sparse_indices, scale_value, *, block_table=None,
        actual_seq_lengths_query=None, actual_seq_lengths_kv=None, query_rope=None,
        key_rope=None, sparse_block_size=1, layout_query="BSND", layout_kv="BSND", sparse_mode=3,
        pre_tokens=INT64_MAX, next_tokens=INT64_MAX, attention_mode=0, return_softmax_lse=False,
        sinks=None, out=None):
    """torch_npu.npu_sparse_flash_attention (DeepSeek-V3.2 / GLM-5 DSA): MLA-absorbed attention
    over the top-k tokens the lightning indexer selected.

      s_t = scale_value * ([q_nope, q_rope] . [k_nope_t, k_rope_t])     (576-wide)
      out = sum_{t in T(b, i)} softmax(s)_t * k_nope_t                  (attention_mode 2)

    Shapes (N1 query heads 1..128; the cache has one head):
      query:           BSND [B, S1, N1, 512]   TND [T1, N1, 512]
      query_rope:      the query's shape with 64
      key:             BSND [B, S2, 1, 512]    TND [T2, 1, 512]
                       PA_BSND [blocks, block_size, 1, 512] with block_table
      key_rope:        the key's shape with 64
      value:           None or the same view as key (the values are k_nope)
      sparse_indices:  int32, BSND query [B, S1, 1, K], TND query [T1, 1, K]; -1 ends a row
      block_table:     int32 [B, >= ceil(max kv length / block_size)]
      lengths:         int32 tensors (or lists): BSND per batch, TND cumulative
    dtypes: query, query_rope, key, key_rope float16 or bfloat16, all the same.
      sinks:           None or float32 [N1]: one learnable sink logit per head (a logit with no
                       value: out = sum_t e^(s_t - m) v_t / (sum_t e^(s_t - m) + e^(sink - m)))
    Returns (attention_out, softmax_max, softmax_sum): attention_out the query's shape and dtype;
    with return_softmax_lse, softmax_max / softmax_sum are float32 [B, N2, S1, N1/N2] (BSND) or
    [N2, T1, N1/N2] (TND), N2 = 1: max = the largest logit of the row (scale included, the sink
    counts), sum = sum exp(s - max) (+ exp(sink - max)), so lse = max + log(sum); a row with no
    valid token holds max = 0, sum = 0. Without the flag they are float32 shape [0].
    attention_mode must be 2 (the only mode the NPU supports; torch_npu's default 0 raises
    NotImplementedError rather than guess). sparse_block_size: a power of two 1..128.
    sparse_mode 0 or 3. out=(attention_out, softmax_max, softmax_sum) preallocates (max / sum
    are not touched without the flag).
    Not supported (NotImplementedError): pre_tokens / next_tokens other than the default.
    """
    op = "npu_sparse_flash_attention"
    if attention_mode != 2 or pre_tokens != INT64_MAX or next_tokens != INT64_MAX:
        _kw_check(op, (("attention_mode", attention_mode, attention_mode == 2),
                       ("pre_tokens", pre_tokens, pre_tokens == INT64_MAX),
                       ("next_tokens", next_tokens, next_tokens == INT64_MAX)))
    if type(query) is not np.ndarray and not is_torch(query):
        query = as_array(query)
    if out is None:
        if type(key) is not np.ndarray and not is_torch(key):
            key = as_array(key)
        outs = sfa_outputs(query, key, layout_query, layout_kv, return_softmax_lse)
    else:
        outs = check_out(op, out, 3)
    flag = bool(return_softmax_lse)
    return run(_fia.sparse_flash_attention,
               (query, key, value, sparse_indices, block_table, query_rope, key_rope, sinks,
                outs[0], None, outs[1] if flag else None, outs[2] if flag else None,
                actual_seq_lengths_query, actual_seq_lengths_kv, scale_value, sparse_block_size,
                layout_query, layout_kv, sparse_mode, 2, flag), outs)


# ---------------------------------------------------------------------------------------------
# kv_quant_sparse_flash_attention (C8)
# ---------------------------------------------------------------------------------------------

def kv_quant_sfa_outputs(query, rope_head_dim=64, key=None, layout_query="BSND",
                         layout_kv="BSND", return_softmax_lse=False):
    """attention_out (the query's shape with D - rope_head_dim); with return_softmax_lse the
    tuple (attention_out, softmax_max, softmax_sum) shaped as sfa_outputs gives them."""
    qs = tuple(query.shape)
    o = empty(query, qs[:-1] + (qs[-1] - rope_head_dim,), None)
    if not return_softmax_lse:
        return o
    _, smax, ssum = sfa_outputs(query, key, layout_query, layout_kv, True)
    return o, smax, ssum


def npu_kv_quant_sparse_flash_attention(
        query, key, value, sparse_indices, scale_value, key_quant_mode, value_quant_mode, *,
        key_dequant_scale=None, value_dequant_scale=None, block_table=None,
        actual_seq_lengths_query=None, actual_seq_lengths_kv=None, sparse_block_size=1,
        layout_query="BSND", layout_kv="BSND", sparse_mode=3, pre_tokens=INT64_MAX,
        next_tokens=INT64_MAX, attention_mode=0, quant_scale_repo_mode=1, tile_size=128,
        rope_head_dim=64, key_dtype=None, value_dtype=None, sinks=None,
        return_softmax_lse=False, out=None):
    """torch_npu.npu_kv_quant_sparse_flash_attention: sparse flash attention over the C8 latent
    cache (DeepSeek-V3.2). Each cached token is one 656-byte int8 row: bytes [0, 512) int8
    k_nope, [512, 640) 64 bfloat16 k_rope values, [640, 656) 4 float32 scales (one per 128-value
    tile): k_nope[c] = int8[c] * scale[c / 128]. The result is that of npu_sparse_flash_attention
    on the dequantized row.

    Shapes:
      query:          BSND [B, S1, N1, 576]   TND [T1, N1, 576]   ([q_nope 512, q_rope 64])
      key:            int8 BSND [B, S2, 1, 656]   TND [T2, 1, 656]
                      PA_BSND [blocks, block_size, 1, 656] with block_table
      value:          None or the same view as key
      sparse_indices, block_table, lengths, selection rules: as npu_sparse_flash_attention
      (sparse_block_size 1..128).
      sinks:          None or float32 [N1], as npu_sparse_flash_attention.
    Returns attention_out: the query's shape with 512 (D - rope_head_dim), query dtype
    (float16 or bfloat16). out= preallocates it.
    fia extension (torch_npu's C8 op returns only the output): return_softmax_lse=True returns
    (attention_out, softmax_max, softmax_sum) with the shapes and convention of
    npu_sparse_flash_attention (lse = max + log(sum); max = sum = 0 on a row with no valid
    token), what context-parallel decode merges; out= is then the triple.
    Supported flags (anything else raises NotImplementedError naming it): key_quant_mode=2,
    value_quant_mode=2, attention_mode=2, quant_scale_repo_mode=1, tile_size=128,
    rope_head_dim=64, key_dtype / value_dtype None or int8, no key/value_dequant_scale
    (the scales are inside the rows), default pre/next_tokens.
    """
    op = "npu_kv_quant_sparse_flash_attention"
    kd, vd = dtype_arg(key_dtype), dtype_arg(value_dtype)
    _kw_check(op, (("key_quant_mode", key_quant_mode, key_quant_mode == 2),
                   ("value_quant_mode", value_quant_mode, value_quant_mode == 2),
                   ("attention_mode", attention_mode, attention_mode == 2),
                   ("quant_scale_repo_mode", quant_scale_repo_mode, quant_scale_repo_mode == 1),
                   ("tile_size", tile_size, tile_size == 128),
                   ("rope_head_dim", rope_head_dim, rope_head_dim == 64),
                   ("key_dequant_scale", "<tensor>", key_dequant_scale is None),
                   ("value_dequant_scale", "<tensor>", value_dequant_scale is None),
                   ("key_dtype", kd, kd in (None, "int8")),
                   ("value_dtype", vd, vd in (None, "int8")),
                   ("pre_tokens", pre_tokens, pre_tokens == INT64_MAX),
                   ("next_tokens", next_tokens, next_tokens == INT64_MAX)))
    if type(query) is not np.ndarray and not is_torch(query):
        query = as_array(query)
    flag = bool(return_softmax_lse)
    if flag:
        if out is None:
            if type(key) is not np.ndarray and not is_torch(key):
                key = as_array(key)
            outs = kv_quant_sfa_outputs(query, rope_head_dim, key, layout_query, layout_kv, True)
        else:
            outs = check_out(op, out, 3)
        o, smax, ssum = outs
    else:
        o = kv_quant_sfa_outputs(query, rope_head_dim) if out is None else check_out(op, out, 1)
        smax = ssum = None
        outs = o
    return run(_fia.kv_quant_sparse_flash_attention,
               (query, key, value, sparse_indices, block_table, sinks, o, None, smax, ssum,
                actual_seq_lengths_query, actual_seq_lengths_kv, scale_value, key_quant_mode,
                value_quant_mode, sparse_block_size, layout_query, layout_kv, sparse_mode,
                attention_mode, quant_scale_repo_mode, tile_size, rope_head_dim, flag), outs)


# ---------------------------------------------------------------------------------------------
# lightning_indexer (LI) and quant_lightning_indexer
# ---------------------------------------------------------------------------------------------

def li_outputs(query, key, layout_query, layout_key, sparse_count, return_value, values_dtype):
    """(sparse_indices int32 [B, S1, N2, k] / TND [T1, N2, k], sparse_values)."""
    qs, ks = tuple(query.shape), tuple(key.shape)
    n2 = ks[1] if layout_key == "TND" else (ks[2] if len(ks) > 2 else 1)
    if layout_query == "TND":
        shape = (qs[0], n2, sparse_count)
    else:
        shape = (qs[0], qs[1] if len(qs) > 1 else 1, n2, sparse_count)
    idx = empty(query, shape, "int32")
    vals = empty(query, shape if return_value else (0,), values_dtype)
    return idx, vals


_LI_DOC = """
    Shapes (N1 query heads 1..64, D 1..512; one key head shared by every query head):
      query:           BSND [B, S1, N1, D]   TND [T1, N1, D]
      key:             BSND [B, S2, 1, D]    TND [T2, 1, D]
                       PA_BSND [blocks, block_size, 1, D] with block_table
      weights:         BSND query [B, S1, N1]   TND query [T1, N1]
      block_table:     int32 [B, >= ceil(max key length / block_size)]
      sparse_indices:  int32, BSND query [B, S1, 1, k], TND query [T1, 1, k]
      lengths:         int32 tensors (or lists): BSND per batch, TND cumulative, PA_BSND
                       per batch (required)
    Visibility of key j to query row i: sparse_mode 0 all j < Skv; sparse_mode 3
    j <= (Skv - Sq) + i. Row i lists the visible keys (logical positions within the batch) by
    descending score, equal scores lower index first, -1 beyond the visible keys.
    sparse_count k: 1..8192. pre_tokens / next_tokens: only the default (else
    NotImplementedError).
"""


def npu_lightning_indexer(
        query, key, weights, *, actual_seq_lengths_query=None, actual_seq_lengths_key=None,
        block_table=None, layout_query="BSND", layout_key="BSND", sparse_count=2048,
        sparse_mode=3, pre_tokens=INT64_MAX, next_tokens=INT64_MAX, return_value=False,
        sparse_values_dtype=None, out=None):
    """torch_npu.npu_lightning_indexer (DeepSeek-V3.2 / GLM-5 DSA): which k cached tokens each
    query token attends to.

      score[t, j] = sum_h w[t, h] * ReLU(q[t, h] . k[j])      over the N1 query heads
      sparse_indices[t, :] = the k visible keys j of highest score, by descending score
    {shapes}
    dtypes: query and key float16 or bfloat16 (the same); weights the query dtype or float32.
    Returns (sparse_indices, sparse_values): sparse_values holds the scores rounded to the query
    dtype (as torch_npu; -inf where the index is -1), shape [0] when return_value is False.
    fia extensions: sparse_values_dtype="float32" returns the fp32 scores fia ranks by;
    out=(sparse_indices, sparse_values) preallocates.
    """
    op = "npu_lightning_indexer"
    if pre_tokens != INT64_MAX or next_tokens != INT64_MAX:
        _kw_check(op, (("pre_tokens", pre_tokens, pre_tokens == INT64_MAX),
                       ("next_tokens", next_tokens, next_tokens == INT64_MAX)))
    if type(query) is not np.ndarray and not is_torch(query):
        query = as_array(query)
    vdt = None
    if sparse_values_dtype is not None:
        vdt = dtype_arg(sparse_values_dtype)
        if vdt == dtype_name(query):
            vdt = None
        elif vdt != "float32":
            raise FiaInvalidArgument("%s: sparse_values_dtype is %s, expected None (the query "
                                     "dtype) or float32" % (op, vdt))
    if out is None:
        if type(key) is not np.ndarray and not is_torch(key):
            key = as_array(key)
        idx, vals = li_outputs(query, key, layout_query, layout_key, sparse_count, return_value,
                               vdt)
    else:
        idx, vals = check_out(op, out, 2)
    return run(_fia.lightning_indexer,
               (False, query, key, weights, None, None, block_table, idx,
                vals if return_value else None, actual_seq_lengths_query, actual_seq_lengths_key,
                layout_query, layout_key, sparse_count, sparse_mode, pre_tokens, next_tokens,
                bool(return_value), 0, 0, False), (idx, vals))


def npu_quant_lightning_indexer(
        query, key, weights, query_dequant_scale, key_dequant_scale, query_quant_mode,
        key_quant_mode, *, actual_seq_lengths_query=None, actual_seq_lengths_key=None,
        block_table=None, layout_query="BSND", layout_key="BSND", sparse_count=2048,
        sparse_mode=3, pre_tokens=INT64_MAX, next_tokens=INT64_MAX, query_dtype=None,
        key_dtype=None, exact_ranking=False, return_value=False, out=None):
    """torch_npu.npu_quant_lightning_indexer: the int8 ("A8C8") lightning indexer, with

      score[t, j] = sum_h w[t, h] * sq[t, h] * sk[j] * ReLU(q[t, h] . k[j])

    where q . k is the exact int32 dot product of the int8 vectors. By default the ranking uses
    the contract's rounding points (the NPU kernel and its golden): w~ = fp16(w * sq),
    S' = fp16(ReLU(q . k) / 1024), score = 1024 * sk * sum_h w~ S'. fia extension:
    exact_ranking=True ranks by the exact formula in fp32 instead.
    {shapes}
    dtypes: query and key int8; weights float16 (bfloat16, float32 accepted);
      query_dequant_scale sq: the weights' shape; key_dequant_scale sk: BSND [B, S2, 1],
      TND [T2, 1], PA_BSND [blocks, block_size, 1]; any float dtype, every scale >= 0.
    query_quant_mode, key_quant_mode: 0 (per-token symmetric int8, the only mode); query_dtype /
    key_dtype: None or int8 (else NotImplementedError).
    Returns sparse_indices (int32). out= preallocates it.
    fia extension: return_value=True returns (sparse_indices, sparse_values), the float32
    scores the ranking used (-inf where the index is -1); out= is then the pair. Context-
    parallel decode merges the ranks' lists by these scores.
    """
    op = "npu_quant_lightning_indexer"
    qd, kd = dtype_arg(query_dtype), dtype_arg(key_dtype)
    if (query_quant_mode != 0 or key_quant_mode != 0 or qd not in (None, "int8")
            or kd not in (None, "int8") or pre_tokens != INT64_MAX or next_tokens != INT64_MAX):
        _kw_check(op, (("query_quant_mode", query_quant_mode, query_quant_mode == 0),
                       ("key_quant_mode", key_quant_mode, key_quant_mode == 0),
                       ("query_dtype", qd, qd in (None, "int8")),
                       ("key_dtype", kd, kd in (None, "int8")),
                       ("pre_tokens", pre_tokens, pre_tokens == INT64_MAX),
                       ("next_tokens", next_tokens, next_tokens == INT64_MAX)))
    if type(query) is not np.ndarray and not is_torch(query):
        query = as_array(query)
    rv = bool(return_value)
    if out is None:
        if type(key) is not np.ndarray and not is_torch(key):
            key = as_array(key)
        idx, vals = li_outputs(query, key, layout_query, layout_key, sparse_count, rv,
                               "float32")
    elif rv:
        idx, vals = check_out(op, out, 2)
    else:
        idx, vals = check_out(op, out, 1), None
    return run(_fia.lightning_indexer,
               (True, query, key, weights, query_dequant_scale, key_dequant_scale, block_table,
                idx, vals if rv else None, actual_seq_lengths_query, actual_seq_lengths_key,
                layout_query, layout_key, sparse_count, sparse_mode, pre_tokens, next_tokens, rv,
                query_quant_mode, key_quant_mode, bool(exact_ranking)), (idx, vals) if rv else idx)


for _f in (npu_lightning_indexer, npu_quant_lightning_indexer):
    _f.__doc__ = _f.__doc__.replace("    {shapes}\n", _LI_DOC.lstrip("\n"))


def _sfa_fake(query, key, value, sparse_indices, scale_value, **kw):
    return sfa_outputs(query, key, kw.get("layout_query", "BSND"), kw.get("layout_kv", "BSND"),
                       kw.get("return_softmax_lse", False))


def _kv_quant_sfa_fake(query, key, value, sparse_indices, scale_value, key_quant_mode,
                       value_quant_mode, **kw):
    return kv_quant_sfa_outputs(query, kw.get("rope_head_dim", 64), key,
                                kw.get("layout_query", "BSND"), kw.get("layout_kv", "BSND"),
                                kw.get("return_softmax_lse", False))


def _li_fake(query, key, weights, **kw):
    return li_outputs(query, key, kw.get("layout_query", "BSND"), kw.get("layout_key", "BSND"),
                      kw.get("sparse_count", 2048), kw.get("return_value", False), None)


def _qli_fake(query, key, weights, query_dequant_scale, key_dequant_scale, query_quant_mode,
              key_quant_mode, **kw):
    rv = kw.get("return_value", False)
    res = li_outputs(query, key, kw.get("layout_query", "BSND"), kw.get("layout_key", "BSND"),
                     kw.get("sparse_count", 2048), rv, "float32")
    return res if rv else res[0]


OPS = {
    "npu_sparse_flash_attention": (npu_sparse_flash_attention, _sfa_fake),
    "npu_kv_quant_sparse_flash_attention": (npu_kv_quant_sparse_flash_attention,
                                            _kv_quant_sfa_fake),
    "npu_lightning_indexer": (npu_lightning_indexer, _li_fake),
    "npu_quant_lightning_indexer": (npu_quant_lightning_indexer, _qli_fake),
}
