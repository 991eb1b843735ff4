"""A DeepSeek-V3.2 (or GLM-5) attention layer on fia: prefill and decode, time per phase,
tokens per second and the share of the machine's memory roofline.

    python -m fia.models.dsa_demo [--config deepseek-v3.2|glm-5] [--prefill 4096]
                                  [--contexts 32768,131072] [--steps 3]

One layer with seeded random bf16 weights. The prefill runs one request in chunks of 512
tokens (chunked prefill through the same TND path, with a progress bar). Decode steps run one
token against caches of 32K and 128K tokens whose contents are random (a decode step's cost
does not depend on the values), then the same step's attention with every token selected
(dense MLA through the sparse kernel) for comparison. Roofline: the bytes each phase must read
(weights once, the indexer keys of the whole context, the selected latent rows) over the read
bandwidth a numpy streaming probe measures in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from .dsa import BlockAllocator, DSAAttention, KVPool, Step
from .dsa_config import CONFIGS
from .dsa_weights import param_shapes

PHASES = ("prolog", "indexer", "attention", "projections")


def _bar(done, total, t0, what):
    w = 30
    f = done / total
    el = time.perf_counter() - t0
    eta = el / f - el if f > 0 else 0.0
    sys.stderr.write("\r  %s [%s%s] %3d%% %6.1fs eta %5.1fs" % (what, "#" * int(w * f),
                     "." * (w - int(w * f)), int(100 * f), el, eta))
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def read_bandwidth():
    """GB/s of a streaming read: a sum over a 256 MiB float32 array with torch's threads, best
    of 5 (a probe of this run, on a machine that may be shared)."""
    a = torch.ones(64 << 20, dtype=torch.float32)
    a.sum()
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.numel() * 4 / best / 1e9


def fast_random_weights(cfg, seed=0):
    """random_weights' distribution (Linear N(0, 1/in), gains 1 + N(0, 0.01), bias N(0, 0.01))
    drawn with torch in float32: seconds instead of half a minute at the full sizes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(cfg).items():
        w = torch.randn(*shape, generator=g)
        if len(shape) == 2:
            w.mul_(shape[1] ** -0.5)
        elif name.endswith("bias"):
            w.mul_(0.1)
        else:
            w.mul_(0.1).add_(1.0)
        out[name] = w
    return out


def phase_bytes(cfg, L):
    """Bytes a decode step of one token must read per phase (bf16 weights, fp32 weights_proj)."""
    He, N, Hcq, C = cfg.hidden_size, cfg.num_heads, cfg.q_lora_rank, cfg.kv_lora_rank
    D, Dr, Dv, Hi, Di = (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim,
                         cfg.index_n_heads, cfg.index_head_dim)
    k = min(cfg.index_topk, L)
    return {
        "prolog": 2 * (He * Hcq + Hcq * N * (D + Dr) + He * (C + Dr) + N * D * C),
        "indexer": 2 * (Hcq * Hi * Di + He * Di) + 4 * He * Hi + 2 * L * Di,
        "attention": k * 2 * (C + Dr),
        "projections": 2 * (N * Dv * C + N * Dv * He),
    }


def synthetic_pool(cfg, alloc, pool, rid, L, gen):
    """Appends L tokens of random cache contents to request rid."""
    alloc.add(rid)
    slots = torch.from_numpy(alloc.extend(rid, L))
    kv = pool.kv_cache.view(-1, pool.kv_cache.shape[-1])
    kr = pool.kr_cache.view(-1, pool.kr_cache.shape[-1])
    ix = pool.idx_cache.view(-1, pool.idx_cache.shape[-1])
    for a in range(0, L, 16384):
        s = slots[a:a + 16384]
        kv[s] = torch.randn(len(s), kv.shape[1], generator=gen).bfloat16()
        kr[s] = torch.randn(len(s), kr.shape[1], generator=gen).bfloat16()
        ix[s] = torch.randn(len(s), ix.shape[1], generator=gen).bfloat16()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="deepseek-v3.2", choices=sorted(CONFIGS))
    ap.add_argument("--prefill", type=int, default=4096, help="prefill tokens (0: skip)")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--contexts", default="32768,131072")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--block-size", type=int, default=128)
    a = ap.parse_args(argv)
    import fia
    cfg = CONFIGS[a.config]
    ctxs = [int(c) for c in a.contexts.split(",") if c]
    print("fia %s: one %s attention layer (hidden %d, %d heads, q_lora %d, kv_lora %d, "
          "indexer %d x %d, top-%d), %d threads" % (fia.__version__, cfg.name, cfg.hidden_size,
          cfg.num_heads, cfg.q_lora_rank, cfg.kv_lora_rank, cfg.index_n_heads,
          cfg.index_head_dim, cfg.index_topk, fia.get_num_threads()))
    bw = read_bandwidth()
    print("read bandwidth (streaming-sum probe, this run): %.1f GB/s" % bw)
    t0 = time.perf_counter()
    layer = DSAAttention(cfg, fast_random_weights(cfg), ops=fia)
    print("random weights: %.1fs" % (time.perf_counter() - t0))
    gen = torch.Generator().manual_seed(1)
    bs = a.block_size
    need = max([a.prefill] + ctxs) + a.steps + 1
    nb = -(-need // bs) + 2
    alloc = BlockAllocator(nb, bs)
    pool = KVPool(cfg, nb, bs)

    if a.prefill:
        print("\nprefill: one request of %d tokens in chunks of %d" % (a.prefill, a.chunk))
        alloc.add("p")
        layer.timings = {}
        t0 = time.perf_counter()
        done = 0
        while done < a.prefill:
            n = min(a.chunk, a.prefill - done)
            h = torch.randn(n, cfg.hidden_size, generator=gen).bfloat16()
            r = torch.randn(n, cfg.hidden_size, generator=gen).bfloat16()
            layer.forward(h, r, Step.build(alloc, ["p"], [n], prefill=True), pool)
            done += n
            _bar(done, a.prefill, t0, "prefill")
        tot = time.perf_counter() - t0
        print("  %.2fs, %.0f tokens/s;  " % (tot, a.prefill / tot) + ",  ".join(
            "%s %.2fs" % (k, layer.timings.get(k, 0.0)) for k in PHASES))
        alloc.drop("p")

    for L in ctxs:
        print("\ndecode: 1 token at %dK context (synthetic cache contents)" % (L // 1024))
        alloc = BlockAllocator(nb, bs)
        synthetic_pool(cfg, alloc, pool, "d", L - 1, gen)
        layer.timings = {k: 0.0 for k in PHASES}
        t0 = time.perf_counter()
        for s in range(a.steps):
            h = torch.randn(1, cfg.hidden_size, generator=gen).bfloat16()
            r = torch.randn(1, cfg.hidden_size, generator=gen).bfloat16()
            step = Step.build(alloc, ["d"], [1])
            layer.forward(h, r, step, pool)
            _bar(s + 1, a.steps, t0, "steps")
        tot = (time.perf_counter() - t0) / a.steps
        by = phase_bytes(cfg, int(step.kv_lens[0]))
        roof = sum(by.values()) / (bw * 1e9)
        print("  %-12s %9s %10s %9s" % ("phase", "ms/step", "MB read", "roofline"))
        for k in PHASES:
            t = layer.timings[k] / a.steps
            print("  %-12s %9.2f %10.1f %8.0f%%" % (k, 1e3 * t, by[k] / 1e6,
                                                  100 * by[k] / (bw * 1e9) / t))
        print("  step %.2f ms = %.1f tokens/s per layer; roofline sum %.2f ms (%.2fx)" % (
            1e3 * tot, 1 / tot, 1e3 * roof, tot / roof))
        # the same step's attention, dense: every token selected
        q_nope = torch.randn(1, cfg.num_heads, cfg.kv_lora_rank, generator=gen).bfloat16()
        q_pe = torch.randn(1, cfg.num_heads, cfg.qk_rope_head_dim, generator=gen).bfloat16()
        Lk = int(step.kv_lens[0])
        dense = torch.arange(Lk, dtype=torch.int32).view(1, 1, Lk)
        kw = dict(block_table=torch.from_numpy(step.block_table),
                  actual_seq_lengths_query=torch.tensor([1], dtype=torch.int32),
                  actual_seq_lengths_kv=torch.tensor([Lk], dtype=torch.int32), query_rope=q_pe,
                  key_rope=pool.kr_cache, layout_query="TND", layout_kv="PA_BSND",
                  sparse_mode=3, attention_mode=2)
        t0 = time.perf_counter()
        fia.npu_sparse_flash_attention(q_nope, pool.kv_cache, pool.kv_cache, dense,
                                       cfg.softmax_scale, **kw)
        td = time.perf_counter() - t0
        dby = Lk * 2 * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
        print("  dense MLA attention over all %d tokens: %.2f ms (%.0f%% of roofline) vs "
              "sparse top-%d %.2f ms" % (Lk, 1e3 * td, 100 * dby / (bw * 1e9) / td,
                                         cfg.index_topk, 1e3 * layer.timings["attention"] / a.steps))
        alloc.drop("d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
