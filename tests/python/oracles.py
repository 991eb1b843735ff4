"""Double-precision numpy oracles written from the operator contracts (include/fia/*.h), for the
Python API tests. They take float64 arrays (inputs already rounded to their dtype) and return
float64 results."""

import numpy as np

INF = np.inf


def softmax_rows(s, values):
    """s [R, T] logits (-inf = not visible), values [T, Dv]: (out [R, Dv], lse [R]); rows that
    see nothing give 0 and +inf."""
    r = s.shape[0]
    out = np.zeros((r, values.shape[-1]))
    lse = np.full(r, INF)
    for i in range(r):
        row = s[i]
        ok = np.isfinite(row)
        if not ok.any():
            continue
        m = row[ok].max()
        p = np.where(ok, np.exp(np.where(ok, row, m) - m), 0.0)
        den = p.sum()
        out[i] = p @ values / den
        lse[i] = m + np.log(den)
    return out, lse


def fia_visible(sq, skv, s1, s2, sparse_mode, pre, nxt, mask, decode):
    """bool [s1, s2]: key j visible to query row i (rows >= sq and keys >= skv never)."""
    i = np.arange(s1)[:, None]
    j = np.arange(s2)[None, :]
    vis = (i < sq) & (j < skv)
    if decode:
        if mask is not None:
            vis &= ~mask[:s1, :s2]
        return vis
    if sparse_mode == 0:
        if mask is not None:
            vis &= (j - i >= -pre) & (j - i <= nxt) & ~mask[:s1, :s2]
    elif sparse_mode == 1:
        vis &= ~mask[:s1, :s2]
    elif sparse_mode == 2:
        vis &= j <= i
    elif sparse_mode == 3:
        vis &= j <= i + (skv - sq)
    elif sparse_mode == 4:
        d = j - i - (skv - sq)
        vis &= (d >= -pre) & (d <= nxt)
    return vis


def fia_batch(q, k, v, scale, sq, skv, sparse_mode=0, pre=2**31 - 1, nxt=2**31 - 1, mask=None,
              decode=False, qr=None, kr=None):
    """One batch: q [N1, S1, D], k [N2, S2, D], v [N2, S2, Dv] (MLA: qr [N1, S1, 64],
    kr [1, S2, 64]); mask bool [S1, S2m] (True = masked). Returns out [N1, S1, Dv], lse [N1, S1]."""
    n1, s1 = q.shape[0], q.shape[1]
    n2, s2 = k.shape[0], k.shape[1]
    vis = fia_visible(sq, skv, s1, s2, sparse_mode, pre, nxt, mask, decode)
    out = np.zeros((n1, s1, v.shape[-1]))
    lse = np.full((n1, s1), INF)
    g = n1 // n2
    for h in range(n1):
        s = q[h] @ k[h // g].T
        if qr is not None:
            s = s + qr[h] @ kr[h // g].T
        s = np.where(vis, scale * s, -INF)
        out[h], lse[h] = softmax_rows(s, v[h // g])
    return out, lse


def sfa_selected(idx_row, sbs, threshold):
    """Token list selected by one row of sparse indices (duplicates kept, in order)."""
    toks = []
    for e in idx_row:
        e = int(e)
        if e == -1:
            break
        if e < -1 or e * sbs >= threshold:
            continue
        toks.extend(range(e * sbs, min((e + 1) * sbs, threshold)))
    return toks


def sfa_batch(q, qr, k, kr, idx, scale, sq, skv, sbs, sparse_mode):
    """One batch: q [S1, N1, 512], qr [S1, N1, 64], k [S2, 512], kr [S2, 64] (the logical
    cache), idx [S1, K]. Returns out [S1, N1, 512], lse [S1, N1]."""
    s1, n1 = q.shape[0], q.shape[1]
    out = np.zeros((s1, n1, k.shape[-1]))
    lse = np.full((s1, n1), INF)
    for i in range(min(s1, sq)):
        thr = skv if sparse_mode == 0 else min(skv - sq + i + 1, skv)
        toks = sfa_selected(idx[i], sbs, thr)
        if not toks:
            continue
        kt, krt = k[toks], kr[toks]
        s = scale * (q[i] @ kt.T + qr[i] @ krt.T)  # [N1, T]
        out[i], lse[i] = softmax_rows(s, kt)
    return out, lse


def li_scores(q, k, w, sq, skv, sparse_mode):
    """One batch: q [S1, N1, D], k [S2, D], w [S1, N1]: scores [S1, S2] (-inf = not visible)."""
    s1 = q.shape[0]
    s2 = k.shape[0]
    dots = np.maximum(np.einsum("thd,jd->thj", q, k), 0.0)
    sc = np.einsum("th,thj->tj", w, dots)
    i = np.arange(s1)[:, None]
    j = np.arange(s2)[None, :]
    vis = (i < sq) & (j < skv)
    if sparse_mode == 3:
        vis &= j <= (skv - sq) + i
    return np.where(vis, sc, -INF)


def check_topk(got_idx, scores, k, tol, got_vals=None, vals_tol=None):
    """got_idx [S1, k] of one batch vs oracle scores [S1, S2]: per row, the number of valid
    entries, distinct visible indices, and the selected scores equal to the top-k scores (to
    tol: ties and near-ties may order differently). Returns the number of checks."""
    n = 0
    for i in range(scores.shape[0]):
        row = scores[i]
        nvis = int(np.isfinite(row).sum())
        cnt = min(k, nvis)
        g = got_idx[i]
        assert (g[cnt:] == -1).all(), (i, g)
        sel = g[:cnt]
        assert len(set(sel.tolist())) == cnt and (sel >= 0).all(), (i, sel)
        assert np.isfinite(row[sel]).all(), (i, sel)
        want = np.sort(row[np.isfinite(row)])[::-1][:cnt]
        have = row[sel]
        scale = max(1.0, np.abs(want).max()) if cnt else 1.0
        assert np.allclose(have, want, atol=tol * scale, rtol=0), (i, have, want)
        if got_vals is not None and cnt:
            assert np.allclose(got_vals[i][:cnt], have, atol=vals_tol * scale, rtol=vals_tol), i
        n += 1
    return n


def smallq(q, k, v):
    """q [H, Sq, D], k, v [H, Skv, D]: softmax(q k^T / sqrt(D)) v per head."""
    out = np.zeros(q.shape)
    for h in range(q.shape[0]):
        s = q[h] @ k[h].T / np.sqrt(q.shape[-1])
        out[h], _ = softmax_rows(s, v[h])
    return out
