#!/usr/bin/env python3
"""torch_peer.py - torch's CPU path beside `fia bench` on the same DeepSeek cases, alternated.

usage: python3 bench/torch_peer.py [--fia build/fia] [--rounds 3] [--reps 10] [--threads N]
                                   [--cases mla_decode_b1_kv16k,...]

For each case and round: `fia bench --json --filter =CASE --reps R` (cold caches, its own
roofline), then torch's bf16 path with the same thread count, R timed runs over rotated copies of
the cache (together more than twice the last-level cache, at most 1 GiB: cold too) after warm-up
runs (torch's oneDNN path speeds up over its first calls). Rounds alternate fia and torch; the
report gives the median of the round medians, the spread (min..max of the round medians) and
ratio torch / fia (> 1: fia faster), plus fia's roofline fraction and compute unit.

torch paths (what an engine would write with plain torch ops, contiguous bf16 caches):
  mla_*: S = (q @ kv^T).float() * scale, P = softmax(S).bfloat16(), O = P @ kv[:, :512]
         (q [128, 576], kv [L, 576]);
  sfa_*: the same on kv[topk] (2048 gathered rows);
  li_*:  s = relu(q @ k^T).float() (q [64, 128], k [L, 128]), score = w . s, topk(2048).
Skips cleanly (exit 0, a message) when torch cannot be imported: run it with a Python that has
torch (e.g. the project's venv: `.venv/bin/python bench/torch_peer.py`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "mla_decode_b1_kv4k": ("mla", 4096),
    "mla_decode_b1_kv16k": ("mla", 16384),
    "mla_decode_b1_kv32k": ("mla", 32768),
    "sfa_decode_b1_kv32k": ("sfa", 32768),
    "sfa_decode_b1_kv128k": ("sfa", 131072),
    "li_decode_bf16_kv32k": ("li", 32768),
    "li_decode_bf16_kv128k": ("li", 131072),
}
DEFAULT = "mla_decode_b1_kv4k,mla_decode_b1_kv16k,sfa_decode_b1_kv32k,li_decode_bf16_kv32k"


def llc_bytes():
    best = 0
    for i in range(8):
        base = "/sys/devices/system/cpu/cpu0/cache/index%d/" % i
        try:
            with open(base + "size") as f:
                t = f.read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1], 1)
        v = int(t[:-1] if t[-1] in "KMG" else t) * mult
        best = max(best, v)
    return best or 32 << 20


def torch_case(torch, kind, L, copies_bytes, reps):
    g = torch.Generator().manual_seed(1)
    bf = torch.bfloat16
    if kind in ("mla", "sfa"):
        per = L * 576 * 2
        q = torch.rand(128, 576, generator=g).mul_(2).sub_(1).to(bf)
        scale = 576 ** -0.5
        idx = torch.randperm(L, generator=g)[:2048] if kind == "sfa" else None
    else:
        per = L * 128 * 2
        q = torch.rand(64, 128, generator=g).mul_(2).sub_(1).to(bf)
        w = torch.rand(64, 1, generator=g)
    copies = max(1, min(int(copies_bytes // per) + 1, int((1 << 30) // per)))
    width = 576 if kind != "li" else 128
    kvs = [torch.rand(L, width, generator=g).mul_(2).sub_(1).to(bf) for _ in range(copies)]

    def run(kv):
        if kind == "li":
            s = torch.relu(q @ kv.t()).float()
            return torch.topk((w * s).sum(0), 2048).indices
        if idx is not None:
            kv = kv[idx]
        s = (q @ kv.t()).float() * scale
        p = torch.softmax(s, -1).to(bf)
        return p @ kv[:, :512]

    for i in range(max(5, copies)):  # warm-up (oneDNN primitive caches), every copy touched
        run(kvs[i % copies])
    ts = []
    for r in range(reps):
        kv = kvs[(r + 1) % copies]
        t0 = time.perf_counter()
        run(kv)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def fia_case(fia, name, reps, threads, env):
    cmd = [fia, "bench", "--json", "--filter", "=" + name, "--reps", str(reps)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            if d.get("case") == name and "seconds" in d:
                return d
    raise RuntimeError("fia bench %s failed: %s" % (name, out.stderr.strip() or out.stdout.strip()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fia", default=os.path.join(os.path.dirname(__file__), "..", "build", "fia"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cases", default=DEFAULT)
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_peer: torch is not importable with %s: skipped" % sys.executable)
        return 0
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    env = dict(os.environ)
    names = [c for c in a.cases.split(",") if c]
    for c in names:
        if c not in CASES:
            print("torch_peer: unknown case %s (known: %s)" % (c, ", ".join(CASES)))
            return 2
    cold = 2 * llc_bytes()
    print("torch %s, %d threads; fia %s; %d rounds x %d runs, alternated, cold caches"
          % (torch.__version__, threads, a.fia, a.rounds, a.reps))
    print("%-24s %22s %22s %18s %9s %9s" % ("case", "fia ms (min..max)", "torch ms (min..max)",
                                           "torch/fia", "fia roof", "fia unit"))
    for name in names:
        kind, L = CASES[name]
        f_t, t_t, last = [], [], None
        for _ in range(a.rounds):
            last = fia_case(a.fia, name, a.reps, threads, env)
            f_t.append(last["seconds"])
            t_t.append(torch_case(torch, kind, L, cold, a.reps))
        fm, tm = statistics.median(f_t), statistics.median(t_t)
        ratios = [t / f for t, f in zip(t_t, f_t)]
        print("%-24s %7.3f (%.3f..%.3f) %7.3f (%.3f..%.3f) %5.2f (%.2f..%.2f) %8.1f%% %9s"
              % (name, fm * 1e3, min(f_t) * 1e3, max(f_t) * 1e3, tm * 1e3, min(t_t) * 1e3,
                 max(t_t) * 1e3, statistics.median(ratios), min(ratios), max(ratios),
                 100 * last.get("roofline_fraction", 0), last.get("unit", "fma")))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
