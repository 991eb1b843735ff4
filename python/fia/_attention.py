"""The attention family (include/fia/attention.h): npu_fused_infer_attention_score, its _v2
form and npu_smallq_flash_attention."""

import numpy as np

from . import _fia
from ._core import (INT32_MAX, FiaInvalidArgument, check_out, dtype_arg, dtype_name, empty,
                    is_torch, as_array, run, unsupported)

_FIA_DOC_SHAPES = """
    Shapes (N1 = num_heads, N2 = num_key_value_heads, D = key head dim, Dv = value head dim):
      query:          BSH [B, S1, N1*D]   BSND [B, S1, N1, D]   BNSD / BNSD_BSND [B, N1, S1, D]
                      TND [T1, N1, D]
      key, value:     same layout as query with S2 / T2 and N2 (value with Dv), or, with
                      block_table, a paged cache: BnBsH [blocks, block_size, N2*D] (3-D) or
                      BnNBsD [blocks, N2, block_size, D] (4-D); value the same with Dv.
      attention_out:  the query's shape with Dv (BNSD_BSND: [B, S1, N1, Dv]); query dtype.
      softmax_lse:    float32 [B, N1, S1, 1], TND [T1, N1, 1] (natural log); shape [0] when
                      the flag is off.
      block_table:    int32 [B, max_blocks]; block_size 1..1024.
      atten_mask:     bool/int8/uint8, nonzero = masked: [S1, S2m], [B|1, S1, S2m],
                      [B|1, 1, S1, S2m] (decode also [B, S2m]); sparse_mode 2/3/4 take the
                      compressed [2048, 2048] form (not read).
      antiquant_scale / _offset (int8 key and value): index 0 is K, 1 is V; antiquant_mode 0:
                      [2], [2, N2, 1, D], [2, N2, D], [2, N2*D]; mode 1: [2, B, S2s].
    dtypes: query float16/bfloat16/float32; key and value one float dtype or int8.
    MLA (query_rope and key_rope given): query [.., N, 512], query_rope [.., N, 64], key = value
      the latent cache (one head of 512, also PA_BSND [blocks, block_size, 1, 512] or PA_NZ
      [blocks, 1, 32, block_size, 16]), key_rope the cache of 64; sparse_mode 0 or 3.
      int8 form: dequant_scale_query fp32 [B, S1, N], dequant_scale_key / _value fp32 [1].
    Visibility (sparse_mode): 0 mask and pre/next_tokens; 1 mask only; 2 j <= i;
      3 j <= i + Skv - Sq; 4 band around the bottom-right diagonal. Decode ignores the mode.
"""

_V1_UNSUPPORTED = (
    ("pse_shift", None), ("dequant_scale1", None), ("quant_scale1", None),
    ("dequant_scale2", None), ("quant_scale2", None), ("quant_offset2", None),
    ("key_antiquant_scale", None), ("key_antiquant_offset", None),
    ("value_antiquant_scale", None), ("value_antiquant_offset", None),
    ("query_padding_size", None), ("kv_padding_size", None), ("key_shared_prefix", None),
    ("value_shared_prefix", None), ("actual_shared_prefix_len", None),
    ("key_rope_antiquant_scale", None), ("key_antiquant_mode", 0), ("value_antiquant_mode", 0),
)


def _given(loc, table):
    """Names of the arguments in table (name, default) that differ from their default."""
    return [n for n, d in table if (loc[n] is not None if d is None else loc[n] != d)]


def _layout_parts(layout):
    if not isinstance(layout, str):
        raise FiaInvalidArgument("input_layout: expected a string, got %r" % (layout,))
    i = layout.find("_")
    return (layout, layout) if i < 0 else (layout[:i], layout[i + 1:])


def fia_outputs(query, value, input_layout, num_heads, num_key_value_heads, query_rope,
                block_table, lse_flag):
    """Allocates (attention_out, softmax_lse) of the query's kind with torch_npu's shapes and
    dtypes (also the fake implementation under torch.compile)."""
    lin, lout = _layout_parts(input_layout)
    qs = tuple(query.shape)
    vs = tuple(value.shape)
    n2 = 1 if query_rope is not None else (num_key_value_heads or num_heads)
    if len(vs) == 5:  # PA_NZ [blocks, 1, D/16, block_size, 16]
        dv = vs[2] * vs[4]
    elif len(vs) == 3 and (lin == "BSH" or block_table is not None):  # [.., N2*Dv]
        dv = vs[2] // n2 if n2 else vs[2]
    else:
        dv = vs[-1] if vs else 0
    if len(qs) < 3:
        raise FiaInvalidArgument("query: %d dims, layout %s needs %s" % (
            len(qs), input_layout, "3" if lin in ("BSH", "TND", "NTD") else "4"))
    if lin == "BSH":
        oshape = (qs[0], qs[1], num_heads * dv)
    elif lin in ("TND", "NTD") and lout != lin:  # TND_NTD / NTD_TND swap T and N
        oshape = (qs[1], qs[0], dv)
    elif lin == "BNSD" and lout == "BSND":
        oshape = (qs[0], qs[2], qs[1], dv)
    else:
        oshape = qs[:-1] + (dv,)
    if lin == "TND":
        lshape = (qs[0], num_heads, 1)
    elif lin == "NTD":
        lshape = (qs[1], num_heads, 1)
    elif lin == "BNSD":
        lshape = (qs[0], num_heads, qs[2], 1)
    else:
        lshape = (qs[0], num_heads, qs[1], 1)
    odt = None
    if dtype_name(query) == "int8":
        odt = dtype_name(query_rope) if query_rope is not None else "float16"
    out = empty(query, oshape, odt)
    lse = empty(query, lshape if lse_flag else (0,), "float32")
    return out, lse


def _fia_call(query, key, value, atten_mask, actual_seq_lengths, actual_seq_lengths_kv,
              block_table, antiquant_scale, antiquant_offset, query_rope, key_rope, dsq, dsk, dsv,
              num_heads, scale, pre_tokens, next_tokens, input_layout, num_key_value_heads,
              sparse_mode, inner_precise, block_size, antiquant_mode, lse_flag, mla_rescale, out,
              op):
    if type(query) is not np.ndarray and not is_torch(query):
        query = as_array(query)
    if out is None:
        if type(value) is not np.ndarray and not is_torch(value):
            value = as_array(value)
        o, lse = fia_outputs(query, value, input_layout, num_heads, num_key_value_heads,
                             query_rope, block_table, lse_flag)
    else:
        o, lse = check_out(op, out, 2)
    return run(_fia.fused_infer_attention_score,
               (query, key, value, atten_mask, block_table, antiquant_scale, antiquant_offset,
                query_rope, key_rope, dsq, dsk, dsv, o, lse if lse_flag else None,
                actual_seq_lengths, actual_seq_lengths_kv, num_heads, num_key_value_heads,
                scale, pre_tokens, next_tokens, input_layout, sparse_mode, block_size,
                antiquant_mode, inner_precise, bool(lse_flag), mla_rescale),
               (o, lse))


def npu_fused_infer_attention_score(
        query, key, value, *, pse_shift=None, atten_mask=None, actual_seq_lengths=None,
        actual_seq_lengths_kv=None, dequant_scale1=None, quant_scale1=None, dequant_scale2=None,
        quant_scale2=None, quant_offset2=None, antiquant_scale=None, antiquant_offset=None,
        key_antiquant_scale=None, key_antiquant_offset=None, value_antiquant_scale=None,
        value_antiquant_offset=None, block_table=None, query_padding_size=None,
        kv_padding_size=None, key_shared_prefix=None, value_shared_prefix=None,
        actual_shared_prefix_len=None, query_rope=None, key_rope=None,
        key_rope_antiquant_scale=None, num_heads=1, scale=1.0, pre_tokens=INT32_MAX,
        next_tokens=INT32_MAX, input_layout="BSH", num_key_value_heads=0, sparse_mode=0,
        inner_precise=0, block_size=0, antiquant_mode=0, key_antiquant_mode=0,
        value_antiquant_mode=0, softmax_lse_flag=False, mla_rescale=0, out=None):
    """torch_npu.npu_fused_infer_attention_score on the CPU: out = softmax(scale * Q.K^T + mask) . V.

    Returns (attention_out, softmax_lse), of the query's kind (numpy in, numpy out; torch in,
    torch out). Inputs are read in place (strided views allowed; innermost stride 1).
    {shapes}
    fia extensions: mla_rescale (0 default, 1 multiply, 2 AMLA: the MLA output rescale),
    out=(attention_out, softmax_lse) preallocated outputs (softmax_lse is not touched when
    softmax_lse_flag is False).
    Not supported (NotImplementedError naming them): pse_shift, full quant (dequant_scale1,
    quant_scale1, dequant_scale2, quant_scale2, quant_offset2), key_/value_antiquant_* and their
    modes, query/kv padding, shared prefix, key_rope_antiquant_scale.
    inner_precise is accepted and ignored (fia accumulates in fp32).
    """
    if (pse_shift is not None or dequant_scale1 is not None or quant_scale1 is not None
            or dequant_scale2 is not None or quant_scale2 is not None or quant_offset2 is not None
            or key_antiquant_scale is not None or key_antiquant_offset is not None
            or value_antiquant_scale is not None or value_antiquant_offset is not None
            or query_padding_size is not None or kv_padding_size is not None
            or key_shared_prefix is not None or value_shared_prefix is not None
            or actual_shared_prefix_len is not None or key_rope_antiquant_scale is not None
            or key_antiquant_mode or value_antiquant_mode):
        loc = locals()
        unsupported("npu_fused_infer_attention_score",
                    _given(loc, _V1_UNSUPPORTED))
    return _fia_call(query, key, value, atten_mask, actual_seq_lengths, actual_seq_lengths_kv,
                     block_table, antiquant_scale, antiquant_offset, query_rope, key_rope,
                     None, None, None, num_heads, scale, pre_tokens, next_tokens, input_layout,
                     num_key_value_heads, sparse_mode, inner_precise, block_size, antiquant_mode,
                     softmax_lse_flag, mla_rescale, out, "npu_fused_infer_attention_score")


_V2_UNSUPPORTED = (
    ("pse_shift", None), ("dequant_offset_key", None), ("dequant_offset_value", None),
    ("dequant_scale_key_rope", None), ("quant_scale_out", None), ("quant_offset_out", None),
    ("quant_scale_p", None), ("learnable_sink", None), ("key_shared_prefix_dtype", None),
    ("value_shared_prefix_dtype", None), ("dequant_scale_key_rope_dtype", None),
)


def npu_fused_infer_attention_score_v2(
        query, key, value, *, query_rope=None, key_rope=None, pse_shift=None, atten_mask=None,
        actual_seq_qlen=None, actual_seq_kvlen=None, block_table=None, dequant_scale_query=None,
        dequant_scale_key=None, dequant_offset_key=None, dequant_scale_value=None,
        dequant_offset_value=None, dequant_scale_key_rope=None, quant_scale_out=None,
        quant_offset_out=None, quant_scale_p=None, learnable_sink=None, num_query_heads=1,
        num_key_value_heads=0, softmax_scale=1.0, pre_tokens=INT32_MAX, next_tokens=INT32_MAX,
        input_layout="BSH", sparse_mode=0, block_size=0, query_quant_mode=0, key_quant_mode=0,
        value_quant_mode=0, inner_precise=0, return_softmax_lse=False, query_dtype=None,
        key_dtype=None, value_dtype=None, query_rope_dtype=None, key_rope_dtype=None,
        key_shared_prefix_dtype=None, value_shared_prefix_dtype=None,
        dequant_scale_query_dtype=None, dequant_scale_key_dtype=None,
        dequant_scale_value_dtype=None, dequant_scale_key_rope_dtype=None, out_dtype=None,
        mla_rescale=0, out=None):
    """torch_npu.npu_fused_infer_attention_score_v2: the same operator as
    npu_fused_infer_attention_score under the v2 keyword names (num_query_heads = num_heads,
    softmax_scale = scale, actual_seq_qlen / actual_seq_kvlen = the lengths,
    return_softmax_lse = softmax_lse_flag). Returns (attention_out, softmax_lse).
    {shapes}
    MLA int8: dequant_scale_query / dequant_scale_key / dequant_scale_value (with query_rope);
    the quant modes are then accepted as given (the scale shapes select fia's one int8 form);
    without the scales every quant mode must be 0.
    The *_dtype arguments accept None or the dtype the tensor already has (a c10 ScalarType
    int, a torch or numpy dtype); out_dtype None or the dtype fia produces.
    fia extensions: mla_rescale, out=(attention_out, softmax_lse).
    Not supported (NotImplementedError naming them): pse_shift, dequant_offset_key/value,
    dequant_scale_key_rope, quant_scale_out, quant_offset_out, quant_scale_p, learnable_sink,
    dequant_scale_key/value without query_rope (non-MLA int8 KV: use
    npu_fused_infer_attention_score's antiquant_scale), the shared-prefix dtypes.
    """
    op = "npu_fused_infer_attention_score_v2"
    if (pse_shift is not None or dequant_offset_key is not None
            or dequant_offset_value is not None or dequant_scale_key_rope is not None
            or quant_scale_out is not None or quant_offset_out is not None
            or quant_scale_p is not None or learnable_sink is not None
            or key_shared_prefix_dtype is not None or value_shared_prefix_dtype is not None
            or dequant_scale_key_rope_dtype is not None):
        loc = locals()
        unsupported(op, _given(loc, _V2_UNSUPPORTED))
    has_dq = (dequant_scale_query is not None or dequant_scale_key is not None
              or dequant_scale_value is not None)
    if has_dq and query_rope is None:
        unsupported(op, [n for n, t in (("dequant_scale_query", dequant_scale_query),
                                        ("dequant_scale_key", dequant_scale_key),
                                        ("dequant_scale_value", dequant_scale_value))
                         if t is not None],
                    "without query_rope (non-MLA int8 KV) is not implemented: use "
                    "npu_fused_infer_attention_score's antiquant_scale")
    if not has_dq and (query_quant_mode or key_quant_mode or value_quant_mode):
        unsupported(op, [n for n, v in (("query_quant_mode", query_quant_mode),
                                        ("key_quant_mode", key_quant_mode),
                                        ("value_quant_mode", value_quant_mode)) if v],
                    "without dequant scales is not implemented")
    if (query_dtype is not None or key_dtype is not None or value_dtype is not None
            or query_rope_dtype is not None or key_rope_dtype is not None
            or dequant_scale_query_dtype is not None or dequant_scale_key_dtype is not None
            or dequant_scale_value_dtype is not None):
        for name, d, t in (("query_dtype", query_dtype, query), ("key_dtype", key_dtype, key),
                           ("value_dtype", value_dtype, value),
                           ("query_rope_dtype", query_rope_dtype, query_rope),
                           ("key_rope_dtype", key_rope_dtype, key_rope),
                           ("dequant_scale_query_dtype", dequant_scale_query_dtype,
                            dequant_scale_query),
                           ("dequant_scale_key_dtype", dequant_scale_key_dtype, dequant_scale_key),
                           ("dequant_scale_value_dtype", dequant_scale_value_dtype,
                            dequant_scale_value)):
            if d is not None and (t is None or dtype_arg(d) != dtype_name(as_array(t))):
                unsupported(op, [name], "= %s (a reinterpretation of the tensor's dtype) is not "
                            "implemented" % dtype_arg(d))
    if out_dtype is not None:
        # accepted only when it names the dtype fia produces
        q = as_array(query)
        want = dtype_name(q)
        if want == "int8":
            want = dtype_name(as_array(query_rope)) if query_rope is not None else "float16"
        if dtype_arg(out_dtype) != want:
            unsupported(op, ["out_dtype"], "= %s is not implemented (fia writes %s)"
                        % (dtype_arg(out_dtype), want))
    return _fia_call(query, key, value, atten_mask, actual_seq_qlen, actual_seq_kvlen,
                     block_table, None, None, query_rope, key_rope, dequant_scale_query,
                     dequant_scale_key, dequant_scale_value, num_query_heads, softmax_scale,
                     pre_tokens, next_tokens, input_layout, num_key_value_heads, sparse_mode,
                     inner_precise, block_size, 0, return_softmax_lse, mla_rescale, out, op)


for _f in (npu_fused_infer_attention_score, npu_fused_infer_attention_score_v2):
    _f.__doc__ = _f.__doc__.replace("    {shapes}\n", _FIA_DOC_SHAPES.lstrip("\n"))


def smallq_outputs(query):
    return empty(query, tuple(query.shape), "float16")


def npu_smallq_flash_attention(query, key, value, *, out=None):
    """SmallQ flash attention (aclnnSmallqFlashAttention): O = softmax(Q . K^T / sqrt(headDim)) . V
    per head, no mask; decode, MTP and speculative decoding (a few query tokens, a long KV).

    Shapes (all float16, 3-D views with a unit innermost stride, other strides free):
      query: [numHeads, qLen, headDim]    key, value: [numHeads, kvLen, headDim]
      returns O: [numHeads, qLen, headDim] float16 (fp32 accumulation, rounded once).
    headDim 1..512. out=: a preallocated O.
    """
    if type(query) is not np.ndarray and not is_torch(query):
        query = as_array(query)
    o = smallq_outputs(query) if out is None else check_out("npu_smallq_flash_attention", out, 1)
    return run(_fia.smallq_flash_attention, (query, key, value, o), o)


# name -> (function, fake implementation) for the torch.library registration (fia/_torch.py).
def _fia_fake(query, key, value, **kw):
    return fia_outputs(query, value, kw.get("input_layout", "BSH"), kw.get("num_heads", 1),
                       kw.get("num_key_value_heads", 0), kw.get("query_rope"),
                       kw.get("block_table"), kw.get("softmax_lse_flag", False))


def _fia_v2_fake(query, key, value, **kw):
    return fia_outputs(query, value, kw.get("input_layout", "BSH"), kw.get("num_query_heads", 1),
                       kw.get("num_key_value_heads", 0), kw.get("query_rope"),
                       kw.get("block_table"), kw.get("return_softmax_lse", False))


def _smallq_fake(query, key, value):
    return smallq_outputs(query)


OPS = {
    "npu_fused_infer_attention_score": (npu_fused_infer_attention_score, _fia_fake),
    "npu_fused_infer_attention_score_v2": (npu_fused_infer_attention_score_v2, _fia_v2_fake),
    "npu_smallq_flash_attention": (npu_smallq_flash_attention, _smallq_fake),
}
