"""Pure-torch goldens of the torch_npu operators the DSA layer calls, restricted to the forms it
uses, written from the contracts in shared/spec (ascend-ops.md 3-6, python-api.md 1.3-1.9).

This is a TEST DOUBLE: it lets the layer's composition (paging, slot mapping, TND lengths,
context parallelism) be tested with operators whose semantics are known independently of fia,
and gives a second opinion on fia's operators inside the layer. It is never what
fia.models.dsa runs by default (that is the fia package).
"""
import math

import torch

F32, BF16 = torch.float32, torch.bfloat16


def _bf(x):
    return x.to(BF16).to(F32)


def npu_rms_norm(x, gamma, epsilon=1e-6):
    xf = x.float()
    rstd = torch.rsqrt((xf * xf).mean(-1, keepdim=True) + epsilon)
    return (xf * rstd * gamma.float()).to(x.dtype), rstd


def npu_add_rms_norm(x1, x2, gamma, epsilon=1e-6):
    x = (x1.float() + x2.float()).to(x1.dtype)
    y, rstd = npu_rms_norm(x, gamma, epsilon)
    return y, rstd, x


def _rotate(x, mode):
    if mode == "half":
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), -1)
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack((-xo, xe), -1).flatten(-2)


def npu_rotary_mul(x, r1, r2, rotary_mode="half", rotate=None):
    xf = x.float()
    return (xf * r1.float() + _rotate(xf, rotary_mode) * r2.float()).to(x.dtype)


def _round_half_away(x):
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def npu_dynamic_quant(x, *, smooth_scales=None, group_index=None, dst_type=None,
                      quant_mode="pertoken", dst_type_max=0.0):
    xf = x.float()
    scale = xf.abs().amax(-1) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    y = torch.round(xf / safe[..., None]).clamp(-128, 127).to(torch.int8)  # half to even
    return y, scale


def scatter_update_(data, indices, updates, axis):
    ax = axis % data.dim()
    for b in range(data.shape[0]):
        s = int(indices[b])
        n = updates.shape[ax]
        sl = [b] + [slice(None)] * (data.dim() - 1)
        sl[ax] = slice(s, s + n)
        data[tuple(sl)] = updates[b]
    return data


def npu_scatter_nd_update_(data, indices, updates):
    a = indices.shape[-1]
    idx = indices.reshape(-1, a).long()
    upd = updates.reshape((idx.shape[0],) + tuple(data.shape[a:]))
    for i in range(idx.shape[0]):
        data[tuple(idx[i].tolist())] = upd[i]
    return data


def _rope_ih(x, cos, sin):
    """The prolog's interleave-half RoPE: de-interleave, then rotate-half."""
    xd = torch.cat((x[..., 0::2], x[..., 1::2]), -1)
    return xd * cos + _rotate(xd, "half") * sin


def npu_mla_prolog_v3(token_x, weight_dq, weight_uq_qr, weight_uk, weight_dkv_kr,
                      rmsnorm_gamma_cq, rmsnorm_gamma_ckv, rope_sin, rope_cos, kv_cache,
                      kr_cache, *, cache_index=None, rmsnorm_epsilon_cq=1e-5,
                      rmsnorm_epsilon_ckv=1e-5, cache_mode="PA_BSND", query_norm_flag=False,
                      weight_quant_mode=0, kv_cache_quant_mode=0, ckvkr_repo_mode=0,
                      quant_scale_repo_mode=0, tile_size=128, k_nope_clip_alpha=None, **kw):
    assert weight_quant_mode == 0 and kv_cache_quant_mode in (0, 3)
    lead = token_x.shape[:-1]
    x = token_x.reshape(-1, token_x.shape[-1]).float()
    T = x.shape[0]
    N, D, C = weight_uk.shape
    Dr = rope_sin.shape[-1]
    cos = rope_cos.reshape(T, 1, Dr).float()
    sin = rope_sin.reshape(T, 1, Dr).float()
    cq = _bf(x @ weight_dq.float())
    cqn = _bf(cq * torch.rsqrt((cq * cq).mean(-1, keepdim=True) + rmsnorm_epsilon_cq)
              * rmsnorm_gamma_cq.float())
    q = _bf(cqn @ weight_uq_qr.float()).view(T, N, D + Dr)
    q_nope = torch.einsum("tnd,ndc->tnc", q[..., :D], weight_uk.float()).to(BF16)
    q_rope = _rope_ih(q[..., D:], cos, sin).to(BF16)
    kv = _bf(x @ weight_dkv_kr.float())
    c = kv[:, :C]
    c = _bf(c * torch.rsqrt((c * c).mean(-1, keepdim=True) + rmsnorm_epsilon_ckv)
            * rmsnorm_gamma_ckv.float())
    kr = _rope_ih(kv[:, None, C:], cos, sin)[:, 0].to(BF16)
    if kv_cache_quant_mode == 3:
        alpha = float(k_nope_clip_alpha.reshape(-1)[0]) if k_nope_clip_alpha is not None else 1.0
        t = c.view(T, C // tile_size, tile_size)
        amax = t.abs().amax(-1, keepdim=True).clamp_min(1e-8) * alpha
        scale = amax / 127.0
        q8 = _round_half_away(t.clamp(-amax, amax) / scale).clamp(-127, 127).to(torch.int8)
        rows = torch.cat((q8.view(T, C), kr.view(torch.int8).view(T, 2 * Dr),
                          scale.view(T, -1).float().contiguous().view(torch.int8)), -1)
        kv_rows, kr_rows = rows, None
    else:
        kv_rows, kr_rows = c.to(BF16), kr
    if cache_mode == "PA_BSND":
        idx = cache_index.reshape(-1)
        flat_kv = kv_cache.view(-1, kv_cache.shape[-1])
        flat_kr = kr_cache.view(-1, kr_cache.shape[-1]) if kr_rows is not None else None
        for t in range(T):
            s = int(idx[t])
            if s >= 0:
                flat_kv[s] = kv_rows[t]
                if kr_rows is not None:
                    flat_kr[s] = kr_rows[t]
    elif cache_mode == "BSND":
        kv_cache.view(-1, kv_cache.shape[-1])[:T] = kv_rows
        if kr_rows is not None:
            kr_cache.view(-1, kr_cache.shape[-1])[:T] = kr_rows
    else:
        raise NotImplementedError(cache_mode)
    e = torch.empty(0)
    qn = cqn.to(BF16).reshape(lead + (cqn.shape[-1],)) if query_norm_flag else e
    return (q_nope.reshape(lead + (N, C)), q_rope.reshape(lead + (N, Dr)), e, qn, e)


def _paged_rows(cache, block_table, b, n):
    bs = cache.shape[1]
    pos = torch.arange(n)
    blk = block_table[b, pos // bs].long()
    return cache[blk, pos % bs, 0]


def _li(score_fn, query, key, actual_seq_lengths_query, actual_seq_lengths_key, block_table,
        sparse_count, sparse_mode, return_value):
    T = query.shape[0]
    cu = [0] + [int(v) for v in actual_seq_lengths_query]
    out = torch.full((T, 1, sparse_count), -1, dtype=torch.int32)
    val = torch.full((T, 1, sparse_count), -math.inf, dtype=F32)
    for b in range(len(cu) - 1):
        q0, q1 = cu[b], cu[b + 1]
        Sq, Skv = q1 - q0, int(actual_seq_lengths_key[b])
        if Sq == 0 or Skv == 0:
            continue
        s = score_fn(b, q0, q1, Skv)  # [Sq, Skv] fp32
        for i in range(Sq):
            lim = Skv if sparse_mode == 0 else min(Skv, Skv - Sq + i + 1)
            if lim <= 0:
                continue
            row = s[i, :lim]
            order = torch.from_numpy((-row).numpy().argsort(kind="stable"))[:sparse_count]
            out[q0 + i, 0, :len(order)] = order.to(torch.int32)
            val[q0 + i, 0, :len(order)] = row[order]
    return out, val


def npu_lightning_indexer(query, key, weights, *, actual_seq_lengths_query=None,
                          actual_seq_lengths_key=None, block_table=None, layout_query="TND",
                          layout_key="PA_BSND", sparse_count=2048, sparse_mode=3,
                          return_value=False, **kw):
    assert layout_query == "TND" and layout_key == "PA_BSND"

    def score(b, q0, q1, Skv):
        k = _paged_rows(key, block_table, b, Skv).float()
        d = torch.einsum("thd,jd->thj", query[q0:q1].float(), k).clamp_min(0)
        return torch.einsum("th,thj->tj", weights[q0:q1].float(), d)
    idx, val = _li(score, query, key, actual_seq_lengths_query, actual_seq_lengths_key,
                   block_table, sparse_count, sparse_mode, return_value)
    return idx, (val if return_value else torch.empty(0))


def npu_quant_lightning_indexer(query, key, weights, query_dequant_scale, key_dequant_scale,
                                query_quant_mode=0, key_quant_mode=0, *,
                                actual_seq_lengths_query=None, actual_seq_lengths_key=None,
                                block_table=None, layout_query="TND", layout_key="PA_BSND",
                                sparse_count=2048, sparse_mode=3, **kw):
    def score(b, q0, q1, Skv):
        k = _paged_rows(key, block_table, b, Skv).to(torch.int64)
        ks = _paged_rows(key_dequant_scale[..., None], block_table, b, Skv)[:, 0].float()
        d = torch.einsum("thd,jd->thj", query[q0:q1].to(torch.int64), k).clamp_min(0).float()
        w = weights[q0:q1].float() * query_dequant_scale[q0:q1].float()
        return torch.einsum("th,thj->tj", w, d) * ks
    idx, _ = _li(score, query, key, actual_seq_lengths_query, actual_seq_lengths_key,
                 block_table, sparse_count, sparse_mode, False)
    return idx


def _sfa(q_full, rows_fn, sparse_indices, scale_value, actual_seq_lengths_query,
         actual_seq_lengths_kv, sparse_mode, C, round_p=False):
    T, N, _ = q_full.shape
    cu = [0] + [int(v) for v in actual_seq_lengths_query]
    out = torch.zeros(T, N, C, dtype=F32)
    smax = torch.zeros(1, T, N, dtype=F32)
    ssum = torch.zeros(1, T, N, dtype=F32)
    for b in range(len(cu) - 1):
        q0, q1 = cu[b], cu[b + 1]
        Sq, Skv = q1 - q0, int(actual_seq_lengths_kv[b])
        for i in range(Sq):
            thr = Skv if sparse_mode == 0 else min(Skv, Skv - Sq + i + 1)
            sel = []
            for e in sparse_indices[q0 + i, 0].tolist():
                if e == -1:
                    break
                if 0 <= e < thr:
                    sel.append(e)
            if not sel:
                continue
            k_full, v = rows_fn(b, torch.tensor(sel))
            s = (q_full[q0 + i].float() @ k_full.T) * scale_value       # [N, k]
            m = s.amax(-1, keepdim=True)
            e = torch.exp(s - m)
            if round_p:  # C8: P cast to bf16, its mantissa rounded independently of the max
                g = torch.round(m / math.log(2)) * math.log(2)
                w = _bf(torch.exp(s - g)) * torch.exp(g - m) / e.sum(-1, keepdim=True)
            else:
                w = e / e.sum(-1, keepdim=True)
            out[q0 + i] = w @ v
            smax[0, q0 + i] = m[:, 0]
            ssum[0, q0 + i] = e.sum(-1)
    return out, smax, ssum


def npu_sparse_flash_attention(query, key, value, sparse_indices, scale_value, *,
                               block_table=None, actual_seq_lengths_query=None,
                               actual_seq_lengths_kv=None, query_rope=None, key_rope=None,
                               sparse_block_size=1, layout_query="TND", layout_kv="PA_BSND",
                               sparse_mode=3, attention_mode=2, return_softmax_lse=False, **kw):
    assert sparse_block_size == 1 and attention_mode == 2 and layout_kv == "PA_BSND"
    bs = key.shape[1]

    def rows(b, sel):
        blk = block_table[b, sel // bs].long()
        kn = key[blk, sel % bs, 0].float()
        kr = key_rope[blk, sel % bs, 0].float()
        return torch.cat((kn, kr), -1), kn
    q = torch.cat((query.float(), query_rope.float()), -1)
    out, smax, ssum = _sfa(q, rows, sparse_indices, scale_value, actual_seq_lengths_query,
                           actual_seq_lengths_kv, sparse_mode, query.shape[-1])
    e = torch.empty(0)
    return (out.to(query.dtype), smax if return_softmax_lse else e,
            ssum if return_softmax_lse else e)


def npu_kv_quant_sparse_flash_attention(query, key, value, sparse_indices, scale_value,
                                        key_quant_mode, value_quant_mode, *, block_table=None,
                                        actual_seq_lengths_query=None,
                                        actual_seq_lengths_kv=None, sparse_block_size=1,
                                        layout_query="TND", layout_kv="PA_BSND", sparse_mode=3,
                                        attention_mode=2, quant_scale_repo_mode=1,
                                        tile_size=128, rope_head_dim=64, **kw):
    bs = key.shape[1]
    C = query.shape[-1] - rope_head_dim

    def rows(b, sel):
        blk = block_table[b, sel // bs].long()
        r = key[blk, sel % bs, 0]                                  # [k, 656] int8
        sc = r[:, C + 2 * rope_head_dim:].contiguous().view(F32)   # [k, C / tile]
        kn = (r[:, :C].float() * sc.repeat_interleave(tile_size, -1)).to(query.dtype).float()
        kr = r[:, C:C + 2 * rope_head_dim].contiguous().view(BF16).float()
        return torch.cat((kn, kr), -1), kn
    out, _, _ = _sfa(query.float(), rows, sparse_indices, scale_value,
                     actual_seq_lengths_query, actual_seq_lengths_kv, sparse_mode, C,
                     round_p=True)
    return out.to(query.dtype)
