"""fia from Python: one GQA decode call on numpy (bfloat16 via ml_dtypes) and, if installed, on
torch, checked against a float64 numpy reference."""
import ml_dtypes
import numpy as np

import fia

rng = np.random.default_rng(0)
B, S, N, NKV, D = 2, 256, 32, 8, 128
q = rng.standard_normal((B, 1, N, D)).astype(ml_dtypes.bfloat16)
k = rng.standard_normal((B, S, NKV, D)).astype(ml_dtypes.bfloat16)
v = rng.standard_normal((B, S, NKV, D)).astype(ml_dtypes.bfloat16)
out, _ = fia.npu_fused_infer_attention_score(q, k, v, num_heads=N, input_layout="BSND",
                                             scale=D ** -0.5, num_key_value_heads=NKV)

# reference: float64 softmax(q k^T * scale) v per head
qf, kf, vf = (x.astype(np.float64) for x in (q, k, v))
kf, vf = np.repeat(kf, N // NKV, axis=2), np.repeat(vf, N // NKV, axis=2)
s = np.einsum("bqhd,bshd->bhqs", qf, kf) * D ** -0.5
p = np.exp(s - s.max(-1, keepdims=True))
ref = np.einsum("bhqs,bshd->bqhd", p / p.sum(-1, keepdims=True), vf)
print("fia %s, context: %d threads, %s" % (fia.__version__, fia.get_num_threads(),
                                           fia.current_context().isa))
print("numpy bf16: out %s %s, max |error| vs float64 %.2e"
      % (out.shape, out.dtype, np.abs(out.astype(np.float64) - ref).max()))
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    qt, kt, vt = (torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16) for x in (q, k, v))
    out_t, _ = fia.npu_fused_infer_attention_score(qt, kt, vt, num_heads=N, input_layout="BSND",
                                                   scale=D ** -0.5, num_key_value_heads=NKV)
    print("torch bf16: bitwise equal to numpy: %s" % bool(
        (out_t.view(torch.int16).numpy().view(np.uint16) == out.view(np.uint16)).all()))
