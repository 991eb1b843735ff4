"""Per-call overhead of the Python binding on a decode-sized FIA call (3 tensors): the fia op
from numpy and from torch, the raw binding call (nanobind import + C plan + execute) and
Plan.execute (C execute only). Usage: python tools/py_overhead.py [kv_len]"""
import sys
import time
import timeit

import numpy as np

import fia
from fia import _fia

S = int(sys.argv[1]) if len(sys.argv) > 1 else 16
B, N1, N2, D = 1, 32, 8, 128
rng = np.random.default_rng(0)
q = rng.standard_normal((B, 1, N1, D)).astype(np.float16)
k = rng.standard_normal((B, S, N2, D)).astype(np.float16)
v = rng.standard_normal((B, S, N2, D)).astype(np.float16)
kw = dict(num_heads=N1, num_key_value_heads=N2, input_layout="BSND", scale=D ** -0.5)
fia.set_num_threads(1)


def best(fn, n=2000, r=9):
    """Best of r runs of n calls, in CPU time of this thread (time.thread_time: not inflated by
    other processes preempting us on a shared machine); microseconds per call."""
    fn()
    return min(timeit.Timer(fn, timer=time.thread_time).repeat(number=n, repeat=r)) / n * 1e6


res = {}
res["numpy op"] = best(lambda: fia.npu_fused_infer_attention_score(q, k, v, **kw))
o = np.empty_like(q)
res["numpy op, out="] = best(lambda: fia.npu_fused_infer_attention_score(q, k, v, out=(o, None), **kw))
ctx = fia.current_context()._c
args = (q, k, v, None, None, None, None, None, None, None, None, None, o, None, None, None, N1, N2,
        D ** -0.5, 2147483647, 2147483647, "BSND", 0, 0, 0, 0, False, 0)
res["numpy raw binding (import + C plan + execute)"] = best(
    lambda: _fia.fused_infer_attention_score(ctx, False, *args))
p = fia.plan.npu_fused_infer_attention_score(q, k, v, **kw)
res["numpy Plan.execute (C execute)"] = best(p.execute)
try:
    import torch

    torch.set_num_threads(1)
    qt, kt, vt = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v)
    res["torch op"] = best(lambda: fia.npu_fused_infer_attention_score(qt, kt, vt, **kw))
    ot = torch.empty_like(qt)
    res["torch op, out="] = best(
        lambda: fia.npu_fused_infer_attention_score(qt, kt, vt, out=(ot, None), **kw))
    targs = (qt, kt, vt) + args[3:12] + (ot,) + args[13:]
    res["torch raw binding (import + C plan + execute)"] = best(
        lambda: _fia.fused_infer_attention_score(ctx, False, *targs))
    res["torch.ops.fia (dispatcher)"] = best(
        lambda: torch.ops.fia.npu_fused_infer_attention_score(qt, kt, vt, **kw), n=500)
except ImportError:
    pass
print("FIA decode B=%d N1=%d N2=%d D=%d S_kv=%d fp16, 1 thread (CPU microseconds per call, best of 9)"
      % (B, N1, N2, D, S))
for name, us in res.items():
    print("  %-48s %7.2f" % (name, us))
c = res["numpy Plan.execute (C execute)"]
print("  binding overhead vs Plan.execute: numpy %.2f us, torch %.2f us"
      % (res["numpy op"] - c, res.get("torch op", float("nan")) - c))
