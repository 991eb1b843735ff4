"""npu_gather_selection_kv_cache (the cann-recipes-infer `custom` op) through the Python package:
in place on numpy arrays and torch tensors (bf16, fp16, int8; with and without k_rope), against a
float64 numpy oracle written from the contract in include/fia/cache.h; the MTP offset, skipped
rows (kv <= 0), a -1 ending the list, entries past the end and duplicates; a bad block id
raising ValueError with nothing written; torch.ops.fia dispatch and the fake implementation."""
import numpy as np
import pytest

import fia
from conftest import KINDS, f64, need, rnd, to_kind

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def oracle(skr, skv, st, ss, tk, fkr, fkv, ft, kl, ql, sbs):
    """The contract (cache.h) in float64 numpy; returns (skr, skv, status, lengths) after the
    call (copies). skr / fkr may be None (no rope). Caches [blocks, block_size, W]."""
    skv, ss = skv.copy(), ss.copy()
    skr = None if skr is None else skr.copy()
    B = kl.shape[0]
    K = tk.shape[-1]
    tk4 = tk.reshape(B, -1, tk.shape[-2], K)
    ss4 = ss.reshape(B, -1, ss.shape[-2], K + 1)
    S, H = tk4.shape[1], tk4.shape[2]
    bsf, bss = fkv.shape[1], skv.shape[1]
    lens = np.zeros(B * S * H, np.int64)
    for b in range(B):
        q = int(ql[b])
        for s in range(S):
            kv = int(kl[b]) - (q - 1 - s) if s < q else int(kl[b])
            for h in range(H):
                row = (b * S + s) * H + h
                if kv <= 0:
                    continue
                n = -(-kv // sbs)
                v, count = 0, 0
                for e in tk4[b, s, h]:
                    e = int(e)
                    if e < 0:
                        break
                    if e >= n:
                        continue
                    ln = sbs if e < n - 1 else kv - (n - 1) * sbs
                    for j in range(ln):
                        ft_tok, st_tok = e * sbs + j, v * sbs + j
                        fb, fr = ft[b, ft_tok // bsf], ft_tok % bsf
                        sb, sr = st[row, st_tok // bss], st_tok % bss
                        skv[sb, sr] = fkv[fb, fr]
                        if skr is not None:
                            skr[sb, sr] = fkr[fb, fr]
                    ss4[b, s, h, v] = e
                    v += 1
                    count += ln
                ss4[b, s, h, v:K] = -1
                ss4[b, s, h, K] = count
                lens[row] = count
    return skr, skv, ss4.reshape(ss.shape), lens


def make_case(rng, dtype="bfloat16", rope=True, B=2, S=3, K=4, sbs=2, bsf=4, bss=4, C=16, R=8,
              flat_status=False):
    H = 1
    nfull = 8
    fkv = rnd(rng, (B * nfull, bsf, C), dtype)
    fkr = rnd(rng, (B * nfull, bsf, R), dtype) if rope else None
    ft = rng.permutation(B * nfull).astype(np.int32).reshape(B, nfull)
    kl = np.array([11, 2], np.int32)[:B]           # batch 1: short, some rows skipped (kv <= 0)
    ql = np.array([2, 3], np.int32)[:B]            # batch 0: s = 2 >= q (no MTP offset)
    per_row = -(-K * sbs // bss)
    rows = B * S * H
    st = rng.permutation(rows * per_row).astype(np.int32).reshape(rows, per_row)
    skv = rnd(rng, (rows * per_row, bss, C), dtype)
    skr = rnd(rng, (rows * per_row, bss, R), dtype) if rope else None
    tk = rng.integers(-1, 7, size=(B, S, H, K)).astype(np.int32)
    tk[0, 0] = [3, 0, 9, -1]    # a skipped id, then the end
    tk[0, 1] = [1, 1, 2, 0]     # duplicates
    tk[0, 2] = [5, 4, 0, 1]     # e = 5 the last (partial) block of kv 11
    shape = (B * S, H, K + 1) if flat_status else (B, S, H, K + 1)
    ss = np.full(shape, 77, np.int32)
    if flat_status:
        tk = tk.reshape(B * S, H, K)
    return [skr, skv, st, ss, tk, fkr, fkv, ft, kl, ql], sbs




def run_kind(args, sbs, kind, dtype):
    conv = [None if a is None else to_kind(a.copy(), kind) for a in args]
    if conv[0] is None:
        conv[0] = to_kind(np.zeros((0, 1, 8), args[1].dtype), kind)
        conv[5] = to_kind(np.zeros((0, 1, 8), args[6].dtype), kind)
    res = fia.npu_gather_selection_kv_cache(*conv, selection_topk_block_size=sbs)
    return conv, res


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype,rope,flat", [("bfloat16", True, False), ("float16", True, True),
                                             ("int8", False, False), ("bfloat16", False, True)])
def test_gather_selection_matches_oracle(rng, kind, dtype, rope, flat):
    need(kind)
    args, sbs = make_case(rng, dtype, rope, flat_status=flat)
    f = [None if a is None else (f64(a) if a.dtype.kind in "fV" or a.dtype.name == "bfloat16"
                                 else a.astype(np.int64)) for a in args]
    wkr, wkv, wss, wlen = oracle(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], sbs)
    conv, res = run_kind(args, sbs, kind, dtype)
    assert type(res) is type(conv[1])
    assert tuple(res.shape) == (args[2].shape[0],) and str(res.dtype).endswith("int32")
    assert np.array_equal(f64(res), wlen)
    assert np.array_equal(f64(conv[1]), wkv)             # selection_kv_cache in place
    assert np.array_equal(f64(conv[3]), wss)             # status in place
    if rope:
        assert np.array_equal(f64(conv[0]), wkr)
    assert np.array_equal(f64(conv[2]), f64(args[2]))    # block table read only
    assert wlen.max() > 0 and (wlen == 0).any()          # the case covers both


@pytest.mark.parametrize("kind", KINDS)
def test_gather_selection_bad_block_id_writes_nothing(rng, kind):
    need(kind)
    args, sbs = make_case(rng)
    args[7] = args[7].copy()
    args[7][0, 0] = 1000                                 # a full block id past the cache
    conv = [to_kind(a.copy(), kind) for a in args]
    out = to_kind(np.full(args[2].shape[0], 5, np.int32), kind)
    with pytest.raises(ValueError):
        fia.npu_gather_selection_kv_cache(*conv, selection_topk_block_size=sbs, out=out)
    for a, c in zip(args, conv):
        assert np.array_equal(f64(c), f64(a))
    assert np.all(f64(out) == 5)


def test_gather_selection_rope_mismatch_is_an_error(rng):
    args, sbs = make_case(rng)
    args[5] = np.zeros((0, 1, 8), args[6].dtype)         # full_k_rope empty, selection's not
    before = [a.copy() for a in args]
    with pytest.raises(ValueError, match="full_k_rope"):
        fia.npu_gather_selection_kv_cache(*args, selection_topk_block_size=sbs)
    for a, b in zip(args, before):
        assert np.array_equal(f64(a), f64(b))


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_gather_selection_torch_library(rng):
    from torch._subclasses.fake_tensor import FakeTensorMode

    args, sbs = make_case(rng)
    direct = [to_kind(a.copy(), "torch") for a in args]
    via = [to_kind(a.copy(), "torch") for a in args]
    r1 = fia.npu_gather_selection_kv_cache(*direct, selection_topk_block_size=sbs)
    r2 = torch.ops.fia.npu_gather_selection_kv_cache(*via, selection_topk_block_size=sbs)
    assert torch.equal(r1, r2)
    for a, b in zip(direct, via):
        assert torch.equal(a, b)
    with FakeTensorMode() as mode:
        fargs = [mode.from_tensor(to_kind(a.copy(), "torch")) for a in args]
        fake = torch.ops.fia.npu_gather_selection_kv_cache(*fargs, selection_topk_block_size=sbs)
    assert (fake.shape, fake.dtype) == (r2.shape, r2.dtype)
