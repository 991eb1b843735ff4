"""Exact merge of partial attention states (out, lse) computed over disjoint key sets.

An attention state over a key set K is the pair (o, l): o = sum_{t in K} softmax(s)_t v_t and
l = log sum_{t in K} exp(s_t) (natural log, the softmax_lse fia and torch_npu return). Over the
union of disjoint sets K_1..K_P the state is

    l = m + log sum_i exp(l_i - m),        m = max_i l_i
    o = sum_i exp(l_i - l) * o_i

which is exact (the same numbers as one softmax over the union, up to rounding). It is how
split-KV partials, context-parallel shards and cascade levels are combined.

An empty part (no valid key) carries lse +inf under the fia / torch_npu / FlashMLA convention
and -inf under FlashInfer's; both are accepted and given weight 0. A row empty in every part
gets o = 0 and lse = +inf (fia's convention).

Determinism: the parts are combined in the order given, in float32 (float64 when an input is
float64), so the result is bitwise reproducible for the same parts in the same order; a
different order may differ in the last bits.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

__all__ = ["merge_attention_states"]


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def merge_attention_states(outs: Sequence, lses: Sequence) -> Tuple[object, object]:
    """Merges P partial attention states.

    outs: P arrays (numpy arrays or torch CPU tensors) of one shape [..., D] and dtype
          (float16, bfloat16 -- torch or ml_dtypes --, float32 or float64).
    lses: P float arrays of shape [...] or [..., 1] (the out's shape without D, or with D = 1:
          fia's TND softmax_lse [T, N, 1] next to out [T, N, D]); all P the same shape.
    Returns (out, lse): out in the outs' shape, dtype and kind; lse float32 (float64 for
    float64 inputs) in the lses' shape and kind.
    Raises ValueError for an empty list, mismatched counts, shapes or dtypes.
    """
    P = len(outs)
    if P == 0 or len(lses) != P:
        raise ValueError(f"merge_attention_states: {P} outs and {len(lses)} lses (need the same "
                         f"count, at least 1)")
    torch_in = _is_torch(outs[0])
    if torch_in:
        import torch
        o_np = [o.detach().cpu() for o in outs]
        out_dtype = o_np[0].dtype
        f64 = out_dtype == torch.float64 or any(l.dtype == torch.float64 for l in lses)
        acc_t = torch.float64 if f64 else torch.float32
        O = [o.to(acc_t).numpy() for o in o_np]
        Lz = [(l.detach().cpu().to(acc_t).numpy()) for l in lses]
        lse_shape = tuple(lses[0].shape)
    else:
        o_np = [np.asarray(o) for o in outs]
        out_dtype = o_np[0].dtype
        f64 = out_dtype == np.float64 or any(np.asarray(l).dtype == np.float64 for l in lses)
        acc = np.float64 if f64 else np.float32
        O = [o.astype(acc) for o in o_np]
        Lz = [np.asarray(l).astype(acc) for l in lses]
        lse_shape = Lz[0].shape
    shp = O[0].shape
    for i in range(P):
        if O[i].shape != shp:
            raise ValueError(f"merge_attention_states: outs[{i}] shape {O[i].shape}, outs[0] {shp}")
        if (o_np[i].dtype != out_dtype):
            raise ValueError(f"merge_attention_states: outs[{i}] dtype {o_np[i].dtype}, "
                             f"outs[0] {out_dtype}")
        if Lz[i].shape != tuple(lse_shape):
            raise ValueError(f"merge_attention_states: lses[{i}] shape {Lz[i].shape}, lses[0] "
                             f"{tuple(lse_shape)}")
    lead = shp[:-1]
    if tuple(lse_shape) not in (lead, lead + (1,)):
        raise ValueError(f"merge_attention_states: lse shape {tuple(lse_shape)} does not match out "
                         f"shape {shp} (expected {lead} or {lead + (1,)})")
    acc = O[0].dtype
    Ls = [l.reshape(lead) for l in Lz]
    # empty parts (+inf or -inf) weigh nothing
    valid = [np.isfinite(l) for l in Ls]
    neg = np.array(-np.inf, dtype=acc)
    Lv = [np.where(v, l, neg) for l, v in zip(Ls, valid)]
    m = Lv[0]
    for l in Lv[1:]:
        m = np.maximum(m, l)
    any_valid = np.isfinite(m)
    m0 = np.where(any_valid, m, np.zeros_like(m))
    ssum = np.zeros_like(m0)
    for l in Lv:
        ssum = ssum + np.exp(l - m0)
    with np.errstate(divide="ignore"):
        lse = np.where(any_valid, m0 + np.log(np.where(any_valid, ssum, 1)),
                       np.array(np.inf, dtype=acc))
    out = np.zeros(shp, dtype=acc)
    for o, l, v in zip(O, Lv, valid):
        wgt = np.where(v, np.exp(l - np.where(any_valid, lse, 0)), 0).astype(acc)
        out = out + wgt[..., None] * np.where(v[..., None], o, 0)
    lse = lse.reshape(lse_shape)
    if torch_in:
        import torch
        return torch.from_numpy(out).to(out_dtype), torch.from_numpy(np.ascontiguousarray(lse))
    return out.astype(out_dtype), lse
