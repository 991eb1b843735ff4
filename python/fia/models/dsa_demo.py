"""A DeepSeek-V3.2 (or GLM-5) attention layer on fia: prefill and decode, time per phase,
tokens per second and the share of the machine's roofline each phase reaches, beside the same
decode step with dense MLA.

    python -m fia.models.dsa_demo [--config deepseek-v3.2|glm-5] [--prefill 4096]
                                  [--contexts 32768,131072] [--steps 3] [--fia-cli PATH]
                                  [--c8] [--omp-spin]

One layer with seeded random bf16 weights. The prefill runs one request in chunks of 512
tokens (chunked prefill through the same TND path). Decode steps run one token against caches
of 32K and 128K tokens whose contents are random (a decode step's cost does not depend on the
values), after one untimed warm-up step (the kept prolog plan is made there); then the same
steps as dense MLA (DSAAttention.forward_dense: every cached token attended by
npu_fused_infer_attention_score, no indexer). --c8 runs the C8 path (656-byte latent rows,
int8 indexer keys; no dense comparison).

Threads: torch's OpenMP pool (the projections) and fia's pool (the operators) take turns on the
same cores; the demo re-runs itself with OMP_WAIT_POLICY=PASSIVE (unless the environment sets
the OpenMP wait policy, or --omp-spin) so that torch's idle workers sleep instead of spinning
through fia's calls (see passive_omp). An engine mixing torch and fia should do the same.

Roofline, measured in this run: the read bandwidth by a streaming probe (128 MiB, torch's
threads: the faster of a float32 sum and a bf16 GEMV) just before and just after every timed call (the larger of the two: the bandwidth of
a shared machine changes within a second), and the peaks of the compute units (fp32 FMA, AMX
bf16) from `fia bench`'s probes when the fia command-line tool is found (--fia-cli, $FIA_CLI,
./build/fia, or fia on PATH); without it only the memory side counts. Each phase is cut into
parts, each with the bytes it must read (weights once, the indexer keys of the whole context,
the selected latent rows) and the FLOPs it must do; a part's roofline time is
max(bytes / bandwidth, FLOPs / peak of the unit it runs on), a phase's the sum of its parts',
and "share" is that time over the measured time. The units: torch's and the prolog's bf16
GEMMs, fia's bf16 sparse / MLA attention and fia's bf16 lightning indexer scoring run on AMX
where the CPU has it (else the fp32 FMA path).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch

from .dsa import BlockAllocator, DSAAttention, KVPool, Step
from .dsa_config import CONFIGS
from .dsa_weights import param_shapes

PHASES = ("prolog", "indexer", "attention", "projections")


class Bar:
    """A progress bar on stderr for runs longer than a few seconds (drawn after 1 s)."""

    def __init__(self, total, what):
        self.total, self.what, self.t0, self.shown = total, what, time.perf_counter(), False

    def update(self, done):
        el = time.perf_counter() - self.t0
        if el < 1.0 and done < self.total and not self.shown:
            return
        if done == self.total and not self.shown:
            return
        self.shown = True
        w, f = 30, done / self.total
        eta = el / f - el if f > 0 else 0.0
        sys.stderr.write("\r  %-8s [%s%s] %3d%% %6.1fs eta %5.1fs" % (
            self.what, "#" * int(w * f), "." * (w - int(w * f)), int(100 * f), el, eta))
        if done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Roofline:
    """The roofline of this run: compute peaks (GFLOP/s by unit, from `fia bench`) and a read
    bandwidth probe to run next to every timed call."""

    def __init__(self, cli=None):
        self.buf = torch.ones(32 << 20, dtype=torch.float32)  # 128 MiB
        self.mat = torch.ones(8192, 8192, dtype=torch.bfloat16)  # 128 MiB
        self.vec = torch.ones(1, 8192, dtype=torch.bfloat16)
        self.buf.sum()
        self.peaks = {}
        self.source = "none (memory side only)"
        self.cli_gbps = None
        if cli:
            try:
                res = subprocess.run([cli, "bench", "--json", "--reps", "1", "--threads",
                                      str(torch.get_num_threads()), "--filter",
                                      "=li_topk_2048_of_128k"], capture_output=True, text=True,
                                     timeout=300)
                d = json.loads(res.stdout.strip().splitlines()[-1])
                self.peaks = {"fma": d["fma_gflops"], "bf16dp": d.get("bf16dp_gflops", 0.0),
                              "amx_bf16": d.get("amx_bf16_gflops", 0.0)}
                self.cli_gbps = d.get("read_gbps")
                self.source = "%s bench" % cli
            except (OSError, ValueError, KeyError, IndexError, subprocess.SubprocessError) as e:
                self.source = "none (%s failed: %s; memory side only)" % (cli, e)

    def gemm_unit(self):
        """The unit of bf16 GEMMs and fia's bf16 attention: AMX where the CPU has it."""
        return "amx_bf16" if self.peaks.get("amx_bf16", 0) > 0 else "fma"

    def read_gbps(self):
        """The faster of two streaming reads of 128 MiB with torch's threads: a float32 sum
        and a bf16 GEMV (torch's GEMV streams its matrix faster than its sum on some CPUs:
        the roof must be the best read, or a phase would exceed it)."""
        t0 = time.perf_counter()
        self.buf.sum()
        t1 = time.perf_counter()
        torch.nn.functional.linear(self.vec, self.mat)
        t2 = time.perf_counter()
        return (128 << 20) / min(t1 - t0, t2 - t1) / 1e9

    def time_of(self, parts, gbps):
        """Roofline seconds of a list of (bytes, flops, unit) parts at `gbps`."""
        t = 0.0
        for b, f, unit in parts:
            pk = self.peaks.get(unit, 0.0)
            t += max(b / (gbps * 1e9), f / (pk * 1e9) if pk > 0 else 0.0)
        return t

    def timed(self, fn):
        """Runs fn() between two bandwidth probes: (seconds, the larger probe in GB/s)."""
        b0 = self.read_gbps()
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        return t, max(b0, self.read_gbps())


def find_cli(arg):
    for c in (arg, os.environ.get("FIA_CLI"), os.path.join("build", "fia"), shutil.which("fia")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


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


def phase_parts(cfg, start, T, gemm_unit, dense=False, c8=False):
    """(bytes, flops, unit) parts of each phase for T new tokens of one request whose context
    grows from `start` to start + T tokens (causal): bf16 weights read once, fp32
    weights_proj; the lightning indexer reads every visible key once; sparse attention the
    selected latent rows (576 bf16 each) once. dense: the attention of dense MLA over every
    visible token, and no indexer. c8: the C8 caches (a key of Di int8 and a float32 scale,
    a latent row of 656 bytes)."""
    He, N, Hcq, C = cfg.hidden_size, cfg.num_heads, cfg.q_lora_rank, cfg.kv_lora_rank
    D, Dr, Dv, Hi, Di = (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim,
                         cfg.index_n_heads, cfg.index_head_dim)
    k = cfg.index_topk
    vis = np.arange(start + 1, start + T + 1, dtype=np.float64)  # keys each new token sees
    L = start + T
    p_prolog = He * Hcq + Hcq * N * (D + Dr) + He * (C + Dr) + N * D * C
    p_iproj = Hcq * Hi * Di + He * Di
    p_proj = N * Dv * C + N * Dv * He
    sel = vis if dense else np.minimum(vis, k)
    att_rows = L if dense else min(L, k * T)  # latent rows read (at most the whole context)
    key_bytes = Di + 4 if c8 else 2 * Di
    row_bytes = 656 if c8 else 2 * (C + Dr)
    parts = {
        "prolog": [(2 * p_prolog, 2 * T * p_prolog, gemm_unit)],
        "indexer": [] if dense else [
            (2 * p_iproj + 4 * He * Hi, 2 * T * (p_iproj + He * Hi), gemm_unit),
            (key_bytes * L, 2 * Hi * Di * vis.sum(), gemm_unit)],
        "attention": [(row_bytes * att_rows, 2 * N * sel.sum() * (C + Dr + C), gemm_unit)],
        "projections": [(2 * p_proj, 2 * T * p_proj, gemm_unit)],
    }
    return parts


def synthetic_pool(cfg, alloc, pool, rid, L, gen):
    """Appends L tokens of random cache contents to request rid."""
    alloc.add(rid)
    slots = torch.from_numpy(alloc.extend(rid, L))
    kv = pool.kv_cache.view(-1, pool.kv_cache.shape[-1])
    kr = pool.kr_cache.view(-1, pool.kr_cache.shape[-1])
    ix = pool.idx_cache.view(-1, pool.idx_cache.shape[-1])
    bar = Bar(L, "cache")
    for a in range(0, L, 16384):
        s = slots[a:a + 16384]
        n = len(s)
        if pool.c8:  # int8 latent, bf16 rope (bytes 512..639), 4 float32 tile scales
            C = pool.cfg.kv_lora_rank
            row = torch.randint(-127, 128, (n, kv.shape[1]), generator=gen, dtype=torch.int8)
            row[:, C:C + 128] = torch.randn(n, 64, generator=gen).bfloat16().view(torch.int8)
            row[:, C + 128:] = torch.full((n, 4), 0.01).view(torch.int8)
            kv[s] = row
            ix[s] = torch.randint(-127, 128, (n, ix.shape[1]), generator=gen, dtype=torch.int8)
            pool.idx_scale.view(-1)[s] = 0.01
        else:
            kv[s] = torch.randn(n, kv.shape[1], generator=gen).bfloat16()
            kr[s] = torch.randn(n, kr.shape[1], generator=gen).bfloat16()
            ix[s] = torch.randn(n, ix.shape[1], generator=gen).bfloat16()
        bar.update(min(a + 16384, L))


class Tally:
    """Measured and roofline seconds per phase over timed calls."""

    def __init__(self):
        self.t = {p: 0.0 for p in PHASES}
        self.roof = {p: 0.0 for p in PHASES}
        self.bytes = {p: 0.0 for p in PHASES}
        self.flops = {p: 0.0 for p in PHASES}
        self.total = 0.0
        self.roof_total = 0.0
        self.gbps = []

    def add(self, roof, timings, total, parts, gbps):
        self.total += total
        self.gbps.append(gbps)
        for p in PHASES:
            self.t[p] += timings.get(p, 0.0)
            r = roof.time_of(parts[p], gbps)
            self.roof[p] += r
            self.roof_total += r
            self.bytes[p] += sum(b for b, _, _ in parts[p])
            self.flops[p] += sum(f for _, f, _ in parts[p])

    def table(self, n, phases=PHASES):
        print("  %-12s %9s %9s %9s %9s %8s" % ("phase", "ms/call", "MB read", "GFLOP",
                                               "roof ms", "share"))
        for p in phases:
            t = self.t[p] / n
            print("  %-12s %9.2f %9.1f %9.2f %9.2f %7.0f%%" % (
                p, 1e3 * t, self.bytes[p] / n / 1e6, self.flops[p] / n / 1e9,
                1e3 * self.roof[p] / n, 100 * self.roof[p] / max(self.t[p], 1e-12)))


def decode_steps(layer, roof, alloc, pool, cfg, gen, steps, dense):
    c8 = pool.c8
    """One warm-up step and `steps` timed decode steps of request "d"; returns the Tally."""
    fwd = layer.forward_dense if dense else layer.forward
    tally = Tally()
    bar = Bar(steps + 1, "dense" if dense else "steps")
    for s in range(steps + 1):
        h = torch.randn(1, cfg.hidden_size, generator=gen).bfloat16()
        r = torch.randn(1, cfg.hidden_size, generator=gen).bfloat16()
        step = Step.build(alloc, ["d"], [1])
        layer.timings = {}
        t, gbps = roof.timed(lambda: fwd(h, r, step, pool))
        if s:
            L = int(step.kv_lens[0])
            tally.add(roof, layer.timings, t,
                      phase_parts(cfg, L - 1, 1, roof.gemm_unit(), dense, c8), gbps)
        bar.update(s + 1)
    return tally


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="deepseek-v3.2", choices=sorted(CONFIGS))
    ap.add_argument("--prefill", type=int, default=4096, help="prefill tokens (0: skip)")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--contexts", default="32768,131072")
    ap.add_argument("--steps", type=int, default=3, help="timed decode steps per context")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--fia-cli", default=None, help="the fia tool for the compute peaks")
    ap.add_argument("--c8", action="store_true",
                    help="the C8 path (int8 656-byte latent rows, int8 indexer keys); no dense "
                         "comparison")
    ap.add_argument("--omp-spin", action="store_true",
                    help="keep libgomp's default wait policy (spinning idle workers) instead "
                         "of re-running with OMP_WAIT_POLICY=PASSIVE (see passive_omp)")
    a = ap.parse_args(argv)
    import fia
    cfg = CONFIGS[a.config]
    ctxs = [int(c) for c in a.contexts.split(",") if c]
    print("fia %s: one %s attention layer, %s path (hidden %d, %d heads, q_lora %d, kv_lora "
          "%d, indexer %d x %d, top-%d), %d threads" % (
              fia.__version__, cfg.name, "C8" if a.c8 else "bf16", cfg.hidden_size,
          cfg.num_heads, cfg.q_lora_rank, cfg.kv_lora_rank, cfg.index_n_heads,
          cfg.index_head_dim, cfg.index_topk, fia.get_num_threads()))
    print("torch: %d threads, OMP_WAIT_POLICY=%s" % (
        torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp spins)")))
    roof = Roofline(find_cli(a.fia_cli))
    print("roofline of this run: compute peaks from %s%s; read bandwidth probed next to every "
          "timed call (now %.1f GB/s)" % (
              roof.source, "".join(", %s %.0f GFLOP/s" % kv for kv in roof.peaks.items()),
              roof.read_gbps()))
    t0 = time.perf_counter()
    layer = DSAAttention(cfg, fast_random_weights(cfg), ops=fia, c8=a.c8)
    print("random weights: %.1fs" % (time.perf_counter() - t0))
    gen = torch.Generator().manual_seed(1)
    bs = a.block_size
    need = max([a.prefill] + ctxs) + 2 * a.steps + 4
    nb = -(-need // bs) + 2
    pool = KVPool(cfg, nb, bs, c8=a.c8)

    if a.prefill:
        print("\nprefill: one request of %d tokens in chunks of %d" % (a.prefill, a.chunk))
        alloc = BlockAllocator(nb, bs)
        alloc.add("p")
        tally = Tally()
        done = 0
        bar = Bar(a.prefill, "prefill")
        while done < a.prefill:
            n = min(a.chunk, a.prefill - done)
            h = torch.randn(n, cfg.hidden_size, generator=gen).bfloat16()
            r = torch.randn(n, cfg.hidden_size, generator=gen).bfloat16()
            step = Step.build(alloc, ["p"], [n], prefill=True)
            layer.timings = {}
            t, gbps = roof.timed(lambda: layer.forward(h, r, step, pool))
            tally.add(roof, layer.timings, t,
                      phase_parts(cfg, done, n, roof.gemm_unit(), c8=a.c8), gbps)
            done += n
            bar.update(done)
        nchunks = -(-a.prefill // a.chunk)
        tally.table(nchunks)
        print("  %.2f s, %.0f tokens/s; roofline sum %.2f s: %.0f%% of the roofline" % (
            tally.total, a.prefill / tally.total, tally.roof_total,
            100 * tally.roof_total / tally.total))

    for L in ctxs:
        print("\ndecode: 1 token at %dK context (synthetic cache contents), %d steps" % (
            L // 1024, a.steps))
        alloc = BlockAllocator(nb, bs)
        synthetic_pool(cfg, alloc, pool, "d", L - 1, gen)
        sp = decode_steps(layer, roof, alloc, pool, cfg, gen, a.steps, False)
        sp.table(a.steps)
        st = sp.total / a.steps
        print("  step %.2f ms = %.1f tokens/s (one layer, batch 1); parts' roofline sum "
              "%.2f ms: step / roofline %.2fx (bandwidth %.1f-%.1f GB/s)" % (
                  1e3 * st, 1 / st, 1e3 * sp.roof_total / a.steps, sp.total / sp.roof_total,
                  min(sp.gbps), max(sp.gbps)))
        if a.c8:
            alloc.drop("d")
            continue
        dn = decode_steps(layer, roof, alloc, pool, cfg, gen, a.steps, True)
        print("  the same step with dense MLA (every token attended, no indexer):")
        dn.table(a.steps, ("prolog", "attention", "projections"))
        dt = dn.total / a.steps
        print("  dense step %.2f ms = %.1f tokens/s (%.2fx the roofline); the sparse step is "
              "%.1fx faster, its attention + indexer %.1fx faster than dense attention" % (
                  1e3 * dt, 1 / dt, dn.total / dn.roof_total, dt / st,
                  dn.t["attention"] / max(sp.t["attention"] + sp.t["indexer"], 1e-12)))
        alloc.drop("d")
    return 0


def passive_omp(argv=None):
    """Re-runs this demo with OMP_WAIT_POLICY=PASSIVE unless the environment sets the OpenMP
    wait policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT) or --omp-spin is given.

    The step alternates torch's OpenMP pool (the projections' GEMVs) and fia's pool (the
    prolog, the indexer, the attention) on the same cores. libgomp's default lets an idle
    worker spin for ~300000 pauses (milliseconds) after every parallel region, so through a
    decode step torch's worker keeps spinning while fia's threads run, taking one core of
    two from the fia operators (measured at 128K on 2 cores: prolog 6.3 -> 4.8 ms, lightning
    indexer 4.7 -> 4.0 ms, the step 24 -> 21 ms). The policy is read when libgomp is loaded
    (importing torch, which importing fia does), hence the re-execution."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if ("--omp-spin" in argv or "OMP_WAIT_POLICY" in os.environ
            or "GOMP_SPINCOUNT" in os.environ):
        return
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "fia.models.dsa_demo"] + argv, env)


if __name__ == "__main__":
    passive_omp()
    sys.exit(main())
