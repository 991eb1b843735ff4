"""One DeepSeek-V3.2 / GLM-5 sparse attention layer (DSA) composed of fia operators.

The chain is the seed's `forward_absorb`, shared by prefill and decode:

    npu_add_rms_norm (or npu_rms_norm)        -> u, the new residual
    npu_mla_prolog_v3  (PA_BSND, cache_index = slot mapping)
                       -> q_nope absorbed [T, N, 512], q_pe [T, N, 64], qr [T, Hcq];
                          writes the latent (kv_cache) and k_pe (kr_cache) of the new tokens;
                          C8: the 656-byte int8 row (kv_cache_quant_mode 3)
    indexer: qr @ wq_b^T, LayerNorm(u @ wk^T), npu_rotary_mul on the first 64 dims,
             weights = u @ weights_proj^T * Hi^-0.5 * Di^-0.5;
             C8: Hadamard (128^-0.5 Sylvester) then npu_dynamic_quant (int8 per token, head)
    indexer cache write: scatter_update_ (prefill) / npu_scatter_nd_update_ (decode)
    npu_lightning_indexer (C8: npu_quant_lightning_indexer)   -> top-k logical positions
    npu_sparse_flash_attention (C8: npu_kv_quant_sparse_flash_attention) -> [T, N, 512]
    V absorb: torch.matmul with the value half of kv_b_proj;  o_proj

Tokens of a call are TND: the requests' new tokens concatenated, with cumulative query lengths;
a call may mix requests that prefill (many new tokens) and requests that decode (one).

Decode performance: calls of at most PLAN_MAX_TOKENS tokens run the prolog through a fia.Plan
kept per token count (weights packed once at plan time where fia packs them; reset_plans()
after changing weights); the indexer and attention are planned per call (their plans copy the
lengths and block tables, which change every step; planning costs microseconds); the
projections outside the prolog are torch bf16 GEMMs on [out, in] weights (F.linear), which
stream the weights at the read bandwidth for a decode step. torch's OpenMP pool and fia's pool
take turns on the same cores: set OMP_WAIT_POLICY=PASSIVE before torch is imported (the demo
does), or libgomp's idle workers spin through fia's calls and take cores from them (a decode
step at 128K on 2 cores: 24 -> 21 ms).

State is explicit: a KVPool holds one layer's paged caches, a BlockAllocator the block lists
and lengths of the requests (share it between the layers of a model), and Step describes one
call (positions, slot mapping, block table, lengths). Nothing is global.

Context parallelism (`group` of P ranks, torch.distributed): the KV of every request is
sharded by token, position g on rank g % P at local position g // P.
  * prefill: the query tokens are split (each request's new tokens in P contiguous chunks), each
    rank runs the prolog on its chunk with cache_mode BSND, the latent, k_pe and indexer keys
    of all chunks are all-gathered, every rank writes the whole context into a scratch paged
    pool (scatter_update_) to run the indexer and attention of its chunk, and its own shard into
    its persistent pool; the outputs are all-gathered so every rank returns all rows.
  * decode: every rank computes the (replicated) query; the owner of each new position writes
    its cache rows (the prolog's cache_index is -1 elsewhere); each rank runs the indexer over
    its shard with scores, the global top-k is the merge of the P lists (descending score, ties
    to the lower position, exactly the single-process ranking), each rank attends over the
    selected tokens of its shard with softmax_lse, and the partial states are combined with
    fia.merge.merge_attention_states in rank order. The C8 path does the same with fia's
    extensions: npu_quant_lightning_indexer(return_value=True) for the scores and
    npu_kv_quant_sparse_flash_attention(return_softmax_lse=True) for softmax_max / softmax_sum
    (lse = max + log(sum); a shard whose row sees nothing gives max = sum = 0, lse +inf,
    weight 0 in the merge).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..merge import merge_attention_states
from .dsa_config import DSAConfig
from .dsa_reference import hadamard, rope_inv_freq

__all__ = ["BlockAllocator", "KVPool", "Step", "DSAAttention"]

BF16 = torch.bfloat16
C8_ROW = 656  # 512 int8 latent + 64 bf16 rope (128 bytes) + 4 fp32 tile scales (16 bytes)


class BlockAllocator:
    """Paged-cache bookkeeping for one rank: a free list of `num_blocks` blocks of
    `block_size` tokens and, per request id, its block list and its (local) token count.
    Requests are added, extended by their new tokens, and dropped (their blocks freed)."""

    def __init__(self, num_blocks: int, block_size: int, *, rank: int = 0, world: int = 1):
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError(f"BlockAllocator: num_blocks {num_blocks} and block_size "
                             f"{block_size} must be positive")
        if not 0 <= rank < world:
            raise ValueError(f"BlockAllocator: rank {rank} outside world {world}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.rank, self.world = rank, world
        self.free: List[int] = list(range(num_blocks - 1, -1, -1))  # pop() gives 0, 1, ...
        self.blocks: Dict[object, List[int]] = {}
        self.length: Dict[object, int] = {}   # tokens stored on this rank
        self.glength: Dict[object, int] = {}  # tokens of the request on all ranks

    def add(self, rid):
        if rid in self.blocks:
            raise ValueError(f"request {rid!r} already present")
        self.blocks[rid], self.length[rid], self.glength[rid] = [], 0, 0

    def drop(self, rid):
        self.free.extend(reversed(self.blocks.pop(rid)))
        del self.length[rid], self.glength[rid]

    def extend(self, rid, n: int) -> np.ndarray:
        """Appends n tokens (global positions G..G+n-1) to request rid; returns the slot of
        each on this rank (block * block_size + row), -1 for positions another rank stores
        (position g lives on rank g % world, at local position g // world)."""
        G, P, bs = self.glength[rid], self.world, self.block_size
        g = np.arange(G, G + n)
        own = g % P == self.rank
        L = self.length[rid]
        m = int(own.sum())
        need = -(-(L + m) // bs) - len(self.blocks[rid])
        if need > len(self.free):
            raise MemoryError(f"BlockAllocator: request {rid!r} needs {need} more blocks, "
                              f"{len(self.free)} free")
        for _ in range(need):
            self.blocks[rid].append(self.free.pop())
        blk = np.asarray(self.blocks[rid] or [0], dtype=np.int64)
        loc = g[own] // P
        slots = np.full(n, -1, dtype=np.int64)
        slots[own] = blk[loc // bs] * bs + loc % bs
        self.length[rid] = L + m
        self.glength[rid] = G + n
        return slots

    def block_table(self, rids: Sequence) -> np.ndarray:
        """int32 [B, max blocks] (rows padded with 0, never read beyond the lengths)."""
        w = max([len(self.blocks[r]) for r in rids] + [1])
        bt = np.zeros((len(rids), w), dtype=np.int32)
        for i, r in enumerate(rids):
            bt[i, :len(self.blocks[r])] = self.blocks[r]
        return bt


class KVPool:
    """The paged caches of one layer on one rank (torch CPU tensors, caller-visible):
        kv_cache   bf16 [blocks, block_size, 1, 512]  (C8: int8 [blocks, block_size, 1, 656])
        kr_cache   bf16 [blocks, block_size, 1, 64]   (C8: unused, [1, 1, 1, 64])
        idx_cache  bf16 [blocks, block_size, 1, Di]   (C8: int8)
        idx_scale  C8 only: float32 [blocks, block_size, 1]
    The latent and k_pe rows are in the prolog's de-interleaved RoPE layout."""

    def __init__(self, cfg: DSAConfig, num_blocks: int, block_size: int, *, c8: bool = False):
        self.cfg, self.c8 = cfg, c8
        self.num_blocks, self.block_size = num_blocks, block_size
        nb, bs = num_blocks, block_size
        if c8:
            self.kv_cache = torch.zeros(nb, bs, 1, C8_ROW, dtype=torch.int8)
            self.kr_cache = torch.zeros(1, 1, 1, cfg.qk_rope_head_dim, dtype=BF16)
            self.idx_cache = torch.zeros(nb, bs, 1, cfg.index_head_dim, dtype=torch.int8)
            self.idx_scale = torch.zeros(nb, bs, 1, dtype=torch.float32)
        else:
            self.kv_cache = torch.zeros(nb, bs, 1, cfg.kv_lora_rank, dtype=BF16)
            self.kr_cache = torch.zeros(nb, bs, 1, cfg.qk_rope_head_dim, dtype=BF16)
            self.idx_cache = torch.zeros(nb, bs, 1, cfg.index_head_dim, dtype=BF16)
            self.idx_scale = None


@dataclass
class Step:
    """One call of the layer on one rank: the requests it covers and their new tokens.

    rids       request ids, in TND order
    q_lens     new tokens per request (int64 [B])
    positions  int64 [T]: the position of every new token within its request
    kv_lens    int64 [B]: context length on this rank after the call, new tokens included
    glens      int64 [B]: context length on all ranks (= kv_lens without parallelism)
    slots      int64 [T]: cache slot of each new token on this rank (-1: not stored here)
    block_table int32 [B, W]
    prefill    whether the indexer cache is written with scatter_update_ (else scatter_nd)
    """
    rids: list
    q_lens: np.ndarray
    positions: np.ndarray
    kv_lens: np.ndarray
    glens: np.ndarray
    slots: np.ndarray
    block_table: np.ndarray
    prefill: bool

    @property
    def cu_q(self) -> np.ndarray:
        return np.cumsum(self.q_lens).astype(np.int64)

    @staticmethod
    def build(alloc: BlockAllocator, rids: Sequence, q_lens: Sequence[int],
              prefill: Optional[bool] = None) -> "Step":
        """Allocates the new tokens of each request (which must have been add()ed) and
        describes the call."""
        q = np.asarray(q_lens, dtype=np.int64)
        pos, slots = [], []
        for r, n in zip(rids, q):
            G = alloc.glength[r]
            slots.append(alloc.extend(r, int(n)))
            pos.append(np.arange(G, G + n))
        kv = np.asarray([alloc.length[r] for r in rids], dtype=np.int64)
        gl = np.asarray([alloc.glength[r] for r in rids], dtype=np.int64)
        pf = bool((q > 1).any()) if prefill is None else prefill
        return Step(list(rids), q, np.concatenate(pos or [np.zeros(0, np.int64)]), kv, gl,
                    np.concatenate(slots or [np.zeros(0, np.int64)]),
                    alloc.block_table(rids), pf)


def _i32(a):
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int32)


def _i64(a):
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)


class DSAAttention:
    """One DSA attention layer. weights: {HF short name: array} (fia.models.dsa_weights);
    ops: the module providing the torch_npu-named operators (default: fia)."""

    def __init__(self, cfg: DSAConfig, weights: dict, *, c8: bool = False, ops=None,
                 group=None):
        if ops is None:
            import fia as ops  # the package this module belongs to
        self.cfg, self.c8, self.ops = cfg.check(), c8, ops
        self.group = group
        if group is not None:
            import torch.distributed as dist
            self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        else:
            self.rank, self.world = 0, 1

        def t(name):
            a = weights[name]
            if not isinstance(a, torch.Tensor):
                a = np.asarray(a)
                if a.dtype.kind not in "fiu":
                    a = a.astype(np.float32)
                a = torch.from_numpy(np.ascontiguousarray(a))
            return a.to(torch.float32)

        N, D, Dr, Dv, C = (cfg.num_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim,
                           cfg.v_head_dim, cfg.kv_lora_rank)
        self.gamma_in = t("input_layernorm.weight").to(BF16)
        # the prolog's weights, ND row-major: x @ W
        self.w_dq = t("self_attn.q_a_proj.weight").T.contiguous().to(BF16)           # [He, Hcq]
        self.w_uq_qr = t("self_attn.q_b_proj.weight").T.contiguous().to(BF16)        # [Hcq, N(D+Dr)]
        wkv_b = t("self_attn.kv_b_proj.weight").view(N, D + Dv, C)
        self.w_uk = wkv_b[:, :D].contiguous().to(BF16)                               # [N, D, 512]
        self.w_uv_t = wkv_b[:, D:].transpose(1, 2).contiguous().to(BF16)             # [N, 512, Dv]
        self.w_dkv_kr = t("self_attn.kv_a_proj_with_mqa.weight").T.contiguous().to(BF16)
        self.gamma_cq = t("self_attn.q_a_layernorm.weight").to(BF16)
        self.gamma_ckv = t("self_attn.kv_a_layernorm.weight").to(BF16)
        # The projections outside the prolog keep the HF [out, in] layout and run as
        # torch.nn.functional.linear: for a decode step (one row per request) torch's bf16 GEMV
        # streams an [out, in] weight at the read bandwidth, while x @ W^T stored [in, out]
        # measured 2x slower (o_proj at 128K: the largest weight of the step).
        self.w_o = t("self_attn.o_proj.weight").contiguous().to(BF16)                # [He, N Dv]
        self.wq_b = t("self_attn.indexer.wq_b.weight").contiguous().to(BF16)         # [Hi Di, Hcq]
        self.wk = t("self_attn.indexer.wk.weight").contiguous().to(BF16)             # [Di, He]
        self.k_norm_w = t("self_attn.indexer.k_norm.weight")
        self.k_norm_b = t("self_attn.indexer.k_norm.bias")
        self.w_proj = t("self_attn.indexer.weights_proj.weight").contiguous()        # fp32 [Hi, He]
        self.hadamard = hadamard(cfg.index_head_dim, torch.float32) if c8 else None
        self.clip_alpha = torch.ones(1, dtype=torch.float32)
        # Phase timings: set to a dict to accumulate seconds per phase ("prolog" = norm +
        # mla_prolog_v3, "indexer" = projection, RoPE, quant, cache write and lightning_indexer,
        # "attention" = sparse_flash_attention, "projections" = V absorb + o_proj).
        self.timings: Optional[Dict[str, float]] = None
        # Kept prolog plans (fia.plan), by token count: see _prolog_paged.
        self._prolog_plans: Dict[int, tuple] = {}
        self._inv_freq = None  # the RoPE frequencies (numpy float64), see _rope_table

    @contextlib.contextmanager
    def _phase(self, name):
        if self.timings is None:
            yield
            return
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    @classmethod
    def from_safetensors(cls, path, cfg: DSAConfig, layer: Optional[int] = None, **kw):
        """The layer with the weights of `model.layers.<layer>.` (HF DeepSeek-V3.2 names) read
        from a safetensors file, file list or checkpoint directory (see dsa_weights.load_layer;
        FP8 block-scaled weights are dequantized)."""
        from .dsa_weights import load_layer
        return cls(cfg, load_layer(path, layer=layer, cfg=cfg), **kw)

    # ---------------------------------------------------------------------------- helpers
    def _rope_table(self, positions, interleave):
        """cos, sin [T, Dr] bf16 of `positions` (half layout: frequency i at i and i + Dr/2;
        interleave: at 2i and 2i + 1): rope_cos_sin's float64 angles (position * frequency)
        and cos / sin, rounded once to bf16, computed with numpy on the T rows (a decode
        step's torch version, with its concatenations and casts, cost ~0.3 ms)."""
        if self._inv_freq is None:
            self._inv_freq = rope_inv_freq(self.cfg).numpy()
        ang = np.asarray(positions, dtype=np.float64).reshape(-1, 1) * self._inv_freq
        c, s = np.cos(ang), np.sin(ang)
        if interleave:
            c, s = np.repeat(c, 2, -1), np.repeat(s, 2, -1)
        else:
            c, s = np.concatenate((c, c), -1), np.concatenate((s, s), -1)
        return torch.from_numpy(c).to(BF16), torch.from_numpy(s).to(BF16)

    def rope_tables(self, positions):
        """cos, sin [T, Dr] bf16 in the half layout (frequency i at i and i + Dr/2)."""
        return self._rope_table(positions, False)

    def _norm(self, hidden, residual):
        ops, eps = self.ops, self.cfg.rms_norm_eps
        if residual is None:
            y, _ = ops.npu_rms_norm(hidden, self.gamma_in, eps)
            return y, hidden
        y, _, x = ops.npu_add_rms_norm(residual, hidden, self.gamma_in, eps)
        return y, x

    def _prolog_kw(self, cache_index, cache_mode):
        cfg = self.cfg
        kw = dict(rmsnorm_epsilon_cq=cfg.rms_norm_eps, rmsnorm_epsilon_ckv=cfg.rms_norm_eps,
                  cache_mode=cache_mode, query_norm_flag=True, weight_quant_mode=0)
        if cache_index is not None:
            kw["cache_index"] = cache_index
        if self.c8:
            kw.update(kv_cache_quant_mode=3, ckvkr_repo_mode=1, quant_scale_repo_mode=1,
                      tile_size=128, k_nope_clip_alpha=self.clip_alpha)
        return kw

    def _prolog(self, u, cos, sin, kv_cache, kr_cache, cache_index, cache_mode):
        q_nope, q_pe, _, qr, _ = self.ops.npu_mla_prolog_v3(
            u, self.w_dq, self.w_uq_qr, self.w_uk, self.w_dkv_kr, self.gamma_cq,
            self.gamma_ckv, sin, cos, kv_cache, kr_cache,
            **self._prolog_kw(cache_index, cache_mode))
        return q_nope, q_pe, qr

    PLAN_MAX_TOKENS = 64  # calls of at most this many tokens reuse a kept prolog plan

    def _prolog_paged(self, u, cos, sin, pool, slots):
        """The prolog of a call writing the paged caches at `slots` (-1: not stored here).

        With fia's operators (fia.plan) and a small call (decode), the prolog is planned once
        per token count and kept across calls: the plan reads its inputs from buffers this
        layer owns (rewritten in place each call) and writes the latent / k_pe rows of the new
        tokens to TND staging rows, which npu_scatter_nd_update_ then puts at the slots (the
        plan copies cache_index at plan time, so a kept plan cannot write the paged cache
        itself). Weights packed at plan time are thus packed once, not per step. Otherwise the
        one-shot call with cache_mode PA_BSND."""
        T = u.shape[0]
        plan_ns = getattr(self.ops, "plan", None)
        if (plan_ns is None or T > self.PLAN_MAX_TOKENS
                or not hasattr(plan_ns, "npu_mla_prolog_v3")):
            return self._prolog(u, cos, sin, pool.kv_cache, pool.kr_cache, _i64(slots),
                                "PA_BSND")
        ent = self._prolog_plans.get(T)
        if ent is None:
            cfg = self.cfg
            bu, bc, bsn = torch.empty_like(u), torch.empty_like(cos), torch.empty_like(sin)
            if self.c8:  # the 656-byte row; the rope lives in it (kr_cache is a dummy)
                kv = torch.empty(T, 1, C8_ROW, dtype=torch.int8)
            else:
                kv = torch.empty(T, 1, cfg.kv_lora_rank, dtype=BF16)
            kr = torch.empty(T, 1, cfg.qk_rope_head_dim, dtype=BF16)
            plan = plan_ns.npu_mla_prolog_v3(bu, self.w_dq, self.w_uq_qr, self.w_uk,
                                             self.w_dkv_kr, self.gamma_cq, self.gamma_ckv, bsn,
                                             bc, kv, kr, **self._prolog_kw(None, "TND"))
            ent = self._prolog_plans[T] = (plan, bu, bc, bsn, kv, kr)
        plan, bu, bc, bsn, kv, kr = ent
        bu.copy_(u)
        bc.copy_(cos)
        bsn.copy_(sin)
        q_nope, q_pe, _, qr, _ = plan.execute()
        keep = np.asarray(slots) >= 0
        if keep.any():
            idx = _i64(np.asarray(slots)[keep]).view(-1, 1)
            sel = torch.from_numpy(keep)
            self.ops.npu_scatter_nd_update_(pool.kv_cache.view(-1, kv.shape[-1]), idx,
                                            kv[sel, 0].contiguous())
            if not self.c8:
                self.ops.npu_scatter_nd_update_(pool.kr_cache.view(-1, kr.shape[-1]), idx,
                                                kr[sel, 0].contiguous())
        return q_nope, q_pe, qr

    def reset_plans(self):
        """Drops the kept prolog plans: a plan captures the weights' values when it is made
        (fia packs them at plan time), so call this after changing the layer's weights."""
        self._prolog_plans.clear()

    def _index_qk(self, u, qr, cos, sin):
        """Indexer query [T, Hi, Di], key [T, Di] (bf16, or int8 with scales) and weights.
        The torch work (the three projections, the key's LayerNorm) runs first and fia's
        RoPE after it, so that the step changes between torch's and fia's thread pools as
        few times as it can (libgomp's workers spin a while after each torch call unless
        OMP_WAIT_POLICY=PASSIVE, taking a core from fia's next call when cores are few)."""
        cfg, ops = self.cfg, self.ops
        T, Hi, Di, Dr = u.shape[0], cfg.index_n_heads, cfg.index_head_dim, cfg.qk_rope_head_dim
        mode = "interleave" if cfg.indexer_rope_interleave else "half"
        if mode == "interleave":
            cos, sin = self._rope_table(self._pos, True)
        qi = F.linear(qr, self.wq_b).view(T, Hi, Di)
        k = F.linear(u, self.wk).float()
        k = torch.nn.functional.layer_norm(k, (Di,), self.k_norm_w, self.k_norm_b,
                                           cfg.index_norm_eps).to(BF16)
        w = F.linear(u.float(), self.w_proj) * cfg.index_weight_scale
        q_pe = ops.npu_rotary_mul(qi[None, :, :, :Dr].contiguous(), cos[None, :, None],
                                  sin[None, :, None], mode)[0]
        k_pe = ops.npu_rotary_mul(k[None, :, None, :Dr].contiguous(), cos[None, :, None],
                                  sin[None, :, None], mode)[0, :, 0]
        qi = torch.cat((q_pe, qi[..., Dr:]), -1)
        ki = torch.cat((k_pe, k[:, Dr:]), -1)
        if not self.c8:
            return qi, ki, None, None, w
        qh = torch.matmul(qi.float(), self.hadamard)
        kh = torch.matmul(ki.float(), self.hadamard)
        q8, qs = ops.npu_dynamic_quant(qh)            # [T, Hi, Di] int8, [T, Hi]
        k8, ks = ops.npu_dynamic_quant(kh)            # [T, Di] int8, [T]
        return q8, k8, qs, ks, w

    def _write_index(self, pool, k, ks, slots, prefill):
        """The indexer keys (and C8 scales) of the new tokens into the indexer cache."""
        keep = np.asarray(slots) >= 0
        if not keep.any():
            return
        sel = torch.from_numpy(keep)
        self._scatter_rows(pool.idx_cache.view(-1, pool.idx_cache.shape[-1]), slots[keep],
                           k[sel], prefill)
        if ks is not None:
            self._scatter_rows(pool.idx_scale.view(-1, 1), slots[keep],
                               ks[sel].reshape(-1, 1).float(), prefill)

    def _scatter_rows(self, cache2d, slots, rows, prefill):
        """Writes rows [n, W] at the flat slots of cache2d [slots, W] in place. Prefill:
        scatter_update_ on the cache viewed as one batch [1, slots, W], one call per run of
        consecutive slots (a block run); decode: npu_scatter_nd_update_ with the slots as
        [n, 1] indices."""
        slots = np.asarray(slots, dtype=np.int64)
        rows = rows.contiguous()
        if not prefill:
            self.ops.npu_scatter_nd_update_(cache2d, _i64(slots).view(-1, 1), rows)
            return
        data = cache2d.unsqueeze(0)
        cut = np.nonzero(np.diff(slots) != 1)[0] + 1
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(slots)]):
            self.ops.scatter_update_(data, _i64([slots[a]]), rows[a:b].unsqueeze(0), -2)

    def _indexer(self, pool, qi, qs, w, step_q_cu, kv_lens, block_table, return_value):
        cfg, ops = self.cfg, self.ops
        kw = dict(actual_seq_lengths_query=_i32(step_q_cu), actual_seq_lengths_key=_i32(kv_lens),
                  block_table=_i32(block_table), layout_query="TND", layout_key="PA_BSND",
                  sparse_count=cfg.index_topk, sparse_mode=3)
        if self.c8:
            if return_value:  # fia extension: the fp32 scores the ranking used
                return ops.npu_quant_lightning_indexer(qi, pool.idx_cache, w, qs, pool.idx_scale,
                                                       0, 0, return_value=True, **kw)
            idx = ops.npu_quant_lightning_indexer(qi, pool.idx_cache, w, qs, pool.idx_scale, 0, 0,
                                                  **kw)
            return idx, None
        if return_value:  # fia extension: the fp32 scores (torch_npu returns the query dtype)
            kw["sparse_values_dtype"] = "float32"
        idx, val = ops.npu_lightning_indexer(qi, pool.idx_cache, w, return_value=return_value,
                                             **kw)
        return idx, val

    def _sfa(self, pool, q_nope, q_pe, idx, q_cu, kv_lens, block_table, lse):
        cfg, ops = self.cfg, self.ops
        kw = dict(block_table=_i32(block_table), actual_seq_lengths_query=_i32(q_cu),
                  actual_seq_lengths_kv=_i32(kv_lens), sparse_block_size=1, layout_query="TND",
                  layout_kv="PA_BSND", sparse_mode=3, attention_mode=2)
        if self.c8:
            q = torch.cat((q_nope, q_pe), -1).contiguous()
            res = ops.npu_kv_quant_sparse_flash_attention(
                q, pool.kv_cache, pool.kv_cache, idx, cfg.softmax_scale, 2, 2,
                quant_scale_repo_mode=1, tile_size=128, rope_head_dim=cfg.qk_rope_head_dim,
                **(dict(return_softmax_lse=True) if lse else {}), **kw)
            if not lse:
                return res, None
            # fia extension: softmax_max / softmax_sum as npu_sparse_flash_attention's
            out, smax, ssum = res
        else:
            out, smax, ssum = ops.npu_sparse_flash_attention(
                q_nope, pool.kv_cache, pool.kv_cache, idx, cfg.softmax_scale, query_rope=q_pe,
                key_rope=pool.kr_cache, return_softmax_lse=lse, **kw)
            if not lse:
                return out, None
        # softmax_max / softmax_sum [N2=1, T, N]: lse = max + log(sum) (natural log; the max is
        # the largest scaled logit); a row that sees no token holds max = sum = 0: lse +inf,
        # which merge_attention_states weighs 0
        l = smax[0].float() + torch.log(ssum[0].float())
        l = torch.where(ssum[0] > 0, l, torch.full_like(l, float("inf")))
        return out, l

    def _epilogue(self, lat):
        """V absorb (matmul with the value half of kv_b_proj) and o_proj: [T, N, 512] -> [T, He]."""
        T, N = lat.shape[0], self.cfg.num_heads
        o = torch.matmul(lat.transpose(0, 1), self.w_uv_t)          # [N, T, Dv]
        return F.linear(o.transpose(0, 1).reshape(T, -1), self.w_o)

    # ----------------------------------------------------------------------------- forward
    def forward(self, hidden, residual, step: Step, pool: KVPool, *, return_topk=False):
        """hidden, residual: bf16 [T, He] (residual None for a first layer: rms_norm only).
        Returns (out [T, He] bf16, new residual [T, He]) and, if asked, the top-k [T, k]."""
        if self.world > 1:
            return self._forward_cp(hidden, residual, step, pool, return_topk)
        cfg = self.cfg
        self._pos = step.positions
        with self._phase("prolog"):
            u, x = self._norm(hidden, residual)
            cos, sin = self.rope_tables(step.positions)
            q_nope, q_pe, qr = self._prolog_paged(u, cos, sin, pool, step.slots)
        with self._phase("indexer"):
            qi, ki, qs, ks, w = self._index_qk(u, qr, cos, sin)
            self._write_index(pool, ki, ks, step.slots, step.prefill)
            idx, _ = self._indexer(pool, qi, qs, w, step.cu_q, step.kv_lens, step.block_table,
                                   False)
        with self._phase("attention"):
            lat, _ = self._sfa(pool, q_nope, q_pe, idx, step.cu_q, step.kv_lens,
                               step.block_table, False)
        with self._phase("projections"):
            out = self._epilogue(lat)
        return (out, x, idx) if return_topk else (out, x)

    __call__ = forward

    def forward_dense(self, hidden, residual, step: Step, pool: KVPool):
        """The same decode step as dense MLA (every cached token attended, no indexer: the
        attention of MLA models before DSA), for comparison: norm, prolog, then
        npu_fused_infer_attention_score over the whole latent cache (BSND query, one token per
        request, PA_BSND cache), V absorb and o_proj. Decode steps of the bf16 path on one
        process only (every request one new token). Returns (out, new residual)."""
        if self.world > 1 or self.c8 or not (np.asarray(step.q_lens) == 1).all():
            raise NotImplementedError("forward_dense: decode steps (one token per request) of "
                                      "the bf16 path on one process")
        cfg, B = self.cfg, len(step.rids)
        self._pos = step.positions
        with self._phase("prolog"):
            u, x = self._norm(hidden, residual)
            cos, sin = self.rope_tables(step.positions)
            q_nope, q_pe, _ = self._prolog_paged(u, cos, sin, pool, step.slots)
        with self._phase("attention"):
            N = cfg.num_heads
            lat, _ = self.ops.npu_fused_infer_attention_score(
                q_nope.view(B, 1, N, -1), pool.kv_cache, pool.kv_cache,
                query_rope=q_pe.view(B, 1, N, -1), key_rope=pool.kr_cache,
                block_table=_i32(step.block_table), actual_seq_lengths_kv=_i32(step.kv_lens),
                num_heads=N, num_key_value_heads=1, scale=cfg.softmax_scale,
                input_layout="BSND", block_size=pool.block_size)
        with self._phase("projections"):
            out = self._epilogue(lat.view(B, N, -1))
        return out, x

    # ------------------------------------------------------------------ context parallelism
    def _gather(self, t, counts):
        """All-gathers rows t [counts[rank], ...] of every rank (gloo moves raw bytes);
        returns the list of the P ranks' tensors."""
        import torch.distributed as dist
        P, mx = self.world, max(counts)
        shape = tuple(t.shape[1:])
        raw = t.contiguous().view(torch.uint8).reshape(t.shape[0], -1)
        w = raw.shape[1]
        pad = torch.zeros(mx, w, dtype=torch.uint8)
        pad[:raw.shape[0]] = raw
        bufs = [torch.empty(mx, w, dtype=torch.uint8) for _ in range(P)]
        dist.all_gather(bufs, pad, group=self.group)
        return [b[:c].contiguous().view(t.dtype).reshape((c,) + shape)
                for b, c in zip(bufs, counts)]

    def _forward_cp(self, hidden, residual, step, pool, return_topk):
        if step.prefill:
            return self._prefill_cp(hidden, residual, step, pool, return_topk)
        return self._decode_cp(hidden, residual, step, pool, return_topk)

    def _prefill_cp(self, hidden, residual, step, pool, return_topk):
        cfg, P, rk = self.cfg, self.world, self.rank
        if not np.array_equal(step.q_lens, step.glens):
            raise NotImplementedError("context-parallel prefill covers new requests only (every "
                                      "request of the call must start at position 0)")
        n = step.q_lens
        off = np.r_[0, np.cumsum(n)[:-1]]
        lo = [[r * int(nb) // P for nb in n] for r in range(P + 1)]   # chunk r: [lo[r], lo[r+1])
        cnt = [int(sum(lo[r + 1][b] - lo[r][b] for b in range(len(n)))) for r in range(P)]
        mine = np.concatenate([np.arange(off[b] + lo[rk][b], off[b] + lo[rk + 1][b])
                               for b in range(len(n))] + [np.zeros(0, np.int64)]).astype(np.int64)
        Tl = len(mine)
        sel = torch.from_numpy(mine)
        u, x_loc = self._norm(hidden[sel], residual[sel] if residual is not None else None)
        self._pos = step.positions[mine]
        cos, sin = self.rope_tables(self._pos)
        W = C8_ROW if self.c8 else cfg.kv_lora_rank
        kv_buf = torch.zeros(1, max(Tl, 1), 1, W, dtype=pool.kv_cache.dtype)
        kr_buf = torch.zeros(1, max(Tl, 1), 1, cfg.qk_rope_head_dim, dtype=BF16)
        if Tl:
            q_nope, q_pe, qr = self._prolog(u[None], cos[None], sin[None], kv_buf, kr_buf,
                                            None, "BSND")
            q_nope, q_pe, qr = q_nope[0], q_pe[0], qr[0]
            qi, ki, qs, ks, w = self._index_qk(u, qr, cos, sin)
        else:
            ki = torch.zeros(0, cfg.index_head_dim, dtype=torch.int8 if self.c8 else BF16)
            ks = torch.zeros(0, dtype=torch.float32)
        # all-gather the context: latent (C8: 656-byte rows), k_pe, indexer keys (+ scales)
        parts = [self._gather(kv_buf[0, :Tl, 0], cnt), self._gather(kr_buf[0, :Tl, 0], cnt),
                 self._gather(ki, cnt)]
        if self.c8:
            parts.append(self._gather(ks.reshape(-1, 1).float(), cnt))
        # context rows in request order: request b's chunk of rank r sits at
        # sum_{b' < b} (size of rank r's chunk of b') in rank r's rows
        order = []
        for b in range(len(n)):
            for r in range(P):
                base = sum(lo[r + 1][bb] - lo[r][bb] for bb in range(b))
                order.append((r, base, lo[r + 1][b] - lo[r][b]))
        full = [torch.cat([pr[r][a:a + c] for r, a, c in order]) for pr in parts]
        # scratch pool with the whole context of every request, consecutive blocks
        bs = pool.block_size
        nblk = [-(-int(nb) // bs) for nb in n]
        scratch = KVPool(cfg, max(sum(nblk), 1), bs, c8=self.c8)
        first = np.r_[0, np.cumsum(nblk)[:-1]]
        bt = np.zeros((len(n), max(nblk + [1])), dtype=np.int32)
        for b in range(len(n)):
            bt[b, :nblk[b]] = np.arange(first[b], first[b] + nblk[b])
        sslots = np.concatenate([first[b] * bs + np.arange(n[b]) for b in range(len(n))])
        self._write_context(scratch, full, sslots)
        # indexer and attention of this rank's chunk over the whole context
        out_loc = torch.zeros(Tl, cfg.hidden_size, dtype=BF16)
        topk_loc = torch.full((Tl, 1, cfg.index_topk), -1, dtype=torch.int32)
        if Tl:
            bsel = [b for b in range(len(n)) if lo[rk + 1][b] > lo[rk][b]]
            qlen = np.asarray([lo[rk + 1][b] - lo[rk][b] for b in bsel], dtype=np.int64)
            kvl = np.asarray([lo[rk + 1][b] for b in bsel], dtype=np.int64)
            q_cu = np.cumsum(qlen)
            idx, _ = self._indexer(scratch, qi, qs, w, q_cu, kvl, bt[bsel], False)
            lat, _ = self._sfa(scratch, q_nope, q_pe, idx, q_cu, kvl, bt[bsel], False)
            out_loc = self._epilogue(lat)
            topk_loc = idx
        # this rank's shard of the context into its persistent pool
        own = step.slots >= 0
        if own.any():
            self._write_context(pool, [f[torch.from_numpy(own)] for f in full], step.slots[own])
        # every rank returns all rows
        outs = self._gather(out_loc, cnt)
        xs = self._gather(x_loc, cnt)
        tks = self._gather(topk_loc, cnt) if return_topk else None
        T = int(n.sum())
        out = torch.empty(T, cfg.hidden_size, dtype=BF16)
        x = torch.empty(T, cfg.hidden_size, dtype=x_loc.dtype)
        topk = torch.empty(T, 1, cfg.index_topk, dtype=torch.int32) if return_topk else None
        for r in range(P):
            rows = torch.from_numpy(np.concatenate(
                [np.arange(off[b] + lo[r][b], off[b] + lo[r + 1][b]) for b in range(len(n))]
                + [np.zeros(0, np.int64)]).astype(np.int64))
            out[rows], x[rows] = outs[r], xs[r]
            if return_topk:
                topk[rows] = tks[r]
        return (out, x, topk) if return_topk else (out, x)

    def _write_context(self, pool, full, slots):
        """Context rows (latent or C8 row, k_pe, indexer key, C8 key scale) into `pool` at
        `slots` with scatter_update_ (one call per run of consecutive slots)."""
        self._scatter_rows(pool.kv_cache.view(-1, pool.kv_cache.shape[-1]), slots, full[0], True)
        if not self.c8:
            self._scatter_rows(pool.kr_cache.view(-1, pool.kr_cache.shape[-1]), slots, full[1],
                               True)
        self._scatter_rows(pool.idx_cache.view(-1, pool.idx_cache.shape[-1]), slots, full[2],
                           True)
        if self.c8:
            self._scatter_rows(pool.idx_scale.view(-1, 1), slots, full[3], True)

    def _decode_cp(self, hidden, residual, step, pool, return_topk):
        cfg, P, rk = self.cfg, self.world, self.rank
        T = hidden.shape[0]
        self._pos = step.positions
        u, x = self._norm(hidden, residual)
        cos, sin = self.rope_tables(step.positions)
        q_nope, q_pe, qr = self._prolog_paged(u, cos, sin, pool, step.slots)
        qi, ki, qs, ks, w = self._index_qk(u, qr, cos, sin)
        self._write_index(pool, ki, ks, step.slots, False)
        k = cfg.index_topk
        idx, val = self._indexer(pool, qi, qs, w, step.cu_q, step.kv_lens, step.block_table,
                                 True)
        idx = idx.reshape(T, k).to(torch.int64)
        g = torch.where(idx >= 0, idx * P + rk, torch.full_like(idx, -1))
        cnt = [T] * P
        gs = self._gather(g, cnt)
        vs = self._gather(val.reshape(T, k).float(), cnt)
        G = torch.cat(gs, 1).numpy()            # [T, P k] global positions, -1 invalid
        V = torch.cat(vs, 1).numpy()
        sel_g = np.full((T, k), -1, dtype=np.int64)
        sel_l = np.full((T, 1, k), -1, dtype=np.int32)
        for t in range(T):
            ok = G[t] >= 0
            gg, vv = G[t][ok], V[t][ok]
            o = np.lexsort((gg, -vv))[:k]       # descending score, ties to the lower position
            top = gg[o]
            sel_g[t, :len(top)] = top
            m = top[top % P == rk] // P
            sel_l[t, 0, :len(m)] = m
        lat, lse = self._sfa(pool, q_nope, q_pe, torch.from_numpy(sel_l), step.cu_q,
                             step.kv_lens, step.block_table, True)
        lats = self._gather(lat, cnt)
        lses = self._gather(lse.contiguous(), cnt)
        lat, _ = merge_attention_states(lats, lses)
        out = self._epilogue(lat.to(BF16))
        if return_topk:
            return out, x, torch.from_numpy(sel_g.astype(np.int32)).view(T, 1, k)
        return out, x
