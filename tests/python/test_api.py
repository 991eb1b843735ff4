"""The Python surface: signatures against the torch_npu schemas, errors (right exception, the
library's message, nothing written), contexts and threads (GIL released, parallel calls on
separate contexts), import without torch, docstrings."""

import inspect
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fia
from fia._schemas import SCHEMAS
from conftest import f64, rnd, to_kind, torch

# fia's keyword-only extensions beyond the torch_npu schemas (never a changed torch_npu default)
EXTENSIONS = {"out", "mla_rescale", "sparse_values_dtype", "exact_ranking", "cache_mode",
              "return_softmax_lse", "return_value"}  # the last two: C8 extensions (CP decode)


def parse_schema(s):
    name, rest = s.split("(", 1)
    args = rest.rsplit(") ->", 1)[0]
    out, kwonly = [], False
    for a in [x.strip() for x in args.split(", ")] if args else []:
        if a == "*":
            kwonly = True
            continue
        decl, _, default = a.partition("=")
        pname = decl.split()[-1]
        out.append((pname, kwonly, default if _ else inspect.Parameter.empty))
    return name, out


def py_default(text):
    if text is inspect.Parameter.empty:
        return text
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text[:1] in "\"'":  # the YAML quotes strings either way ('half', "pertoken")
        return text[1:-1]
    return float(text) if any(c in text for c in ".eE") else int(text)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_signature_matches_torch_npu_schema(name):
    sname, params = parse_schema(SCHEMAS[name])
    assert sname == name
    sig = inspect.signature(getattr(fia, name))
    got = list(sig.parameters.values())
    assert [p.name for p in got[:len(params)]] == [p[0] for p in params]
    for p, (pname, kwonly, default) in zip(got, params):
        assert (p.kind == p.KEYWORD_ONLY) == kwonly, pname
        d = py_default(default)
        assert p.default == d and type(p.default) is type(d), (pname, p.default, d)
    for p in got[len(params):]:
        assert p.name in EXTENSIONS and p.kind == p.KEYWORD_ONLY, p.name
    # the same signature under fia.plan and fia.torch_npu
    import fia.torch_npu as tn

    assert inspect.signature(getattr(fia.plan, name)) == sig
    assert getattr(tn, name) is getattr(fia, name)


def test_docstrings_have_shape_lines():
    for name in SCHEMAS:
        fn = getattr(fia, name)
        doc = fn.__doc__
        first = next(iter(inspect.signature(fn).parameters))  # query, self, x1, input, ...
        assert doc and first in doc and "[" in doc, name
    assert "sparse_indices:  int32, BSND query [B, S1, 1, k]" in fia.npu_lightning_indexer.__doc__
    assert "BNSD / BNSD_BSND [B, N1, S1, D]" in fia.npu_fused_infer_attention_score.__doc__


def _fia_args(rng):
    return rnd(rng, (2, 1, 4, 32)), rnd(rng, (2, 16, 2, 32)), rnd(rng, (2, 16, 2, 32))


KW = dict(num_heads=4, num_key_value_heads=2, scale=0.2, input_layout="BSND")


def _sentinel_out(kind="numpy"):
    return (to_kind(np.full((2, 1, 4, 32), 3.0, np.float16), kind),
            to_kind(np.full((2, 4, 1, 1), 5.0, np.float32), kind))


def _untouched(out):
    return (f64(out[0]) == 3.0).all() and (f64(out[1]) == 5.0).all()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("case,exc,msg", [
    ("dtype", ValueError, "query"),
    ("rank", ValueError, "query"),
    ("heads", ValueError, "head"),
    ("block_id", ValueError, "block_table"),
    ("pse_shift", NotImplementedError, "pse_shift"),
    ("key_antiquant_mode", NotImplementedError, "key_antiquant_mode"),
    ("not_an_array", ValueError, "key"),
    ("layout", ValueError, "input_layout"),
    ("lengths", ValueError, "actual_seq_lengths_kv"),
])
def test_fia_errors_write_nothing(kind, case, exc, msg, rng):
    if kind == "torch" and torch is None:
        pytest.skip("torch not installed")
    q, k, v = _fia_args(rng)
    kw = dict(KW, softmax_lse_flag=True)
    if case == "dtype":
        q = q.astype(np.float64)
    elif case == "rank":
        q = q[0]
    elif case == "heads":
        kw["num_heads"] = 6
    elif case == "block_id":
        k, v = k.reshape(4, 8, 64), v.reshape(4, 8, 64)
        kw.update(block_table=np.array([[0, 1], [2, 9]], np.int32), block_size=8,
                  actual_seq_lengths_kv=[16, 16])
    elif case == "pse_shift":
        kw["pse_shift"] = q
    elif case == "key_antiquant_mode":
        kw["key_antiquant_mode"] = 1
    elif case == "not_an_array":
        k = "not an array"
    elif case == "layout":
        kw["input_layout"] = "XYZ"
    elif case == "lengths":
        kw["actual_seq_lengths_kv"] = ["a", "b"]
    out = _sentinel_out(kind)
    args = [q, k, v] if kind == "numpy" or case == "dtype" else [
        to_kind(x, kind) if isinstance(x, np.ndarray) else x for x in (q, k, v)]
    with pytest.raises(exc, match=msg) as ei:
        fia.npu_fused_infer_attention_score(*args, out=out, **kw)
    assert _untouched(out)
    if exc is ValueError and case not in ("dtype", "not_an_array"):
        assert isinstance(ei.value, fia.FiaInvalidArgument)


def test_library_message_names_tensor_dim_values(rng):
    q, k, v = _fia_args(rng)
    with pytest.raises(fia.FiaInvalidArgument) as ei:
        fia.npu_fused_infer_attention_score(q, k[..., :16], v, **KW)
    m = str(ei.value)
    assert "key" in m and "16" in m and "32" in m, m
    assert ei.value.status == 1


@pytest.mark.parametrize("call,name", [
    (lambda a: fia.npu_sparse_flash_attention(*a, 0.1, attention_mode=0), "attention_mode"),
    (lambda a: fia.npu_sparse_flash_attention(*a, 0.1, attention_mode=2, pre_tokens=5),
     "pre_tokens"),
    (lambda a: fia.npu_kv_quant_sparse_flash_attention(*a, 0.1, 1, 2, attention_mode=2),
     "key_quant_mode"),
    (lambda a: fia.npu_kv_quant_sparse_flash_attention(*a, 0.1, 2, 2, attention_mode=2,
                                                       tile_size=64), "tile_size"),
    (lambda a: fia.npu_lightning_indexer(a[0], a[1], a[2], next_tokens=0), "next_tokens"),
    (lambda a: fia.npu_quant_lightning_indexer(*a[:3], a[0], a[0], 1, 0), "query_quant_mode"),
    (lambda a: fia.npu_quant_lightning_indexer(*a[:3], a[0], a[0], 0, 0,
                                                     key_dtype=290),
     "key_dtype"),
    (lambda a: fia.npu_fused_infer_attention_score_v2(*a[:3], learnable_sink=a[0]), "learnable_sink"),
    (lambda a: fia.npu_fused_infer_attention_score_v2(*a[:3], quant_scale_out=a[0]),
     "quant_scale_out"),
    (lambda a: fia.npu_fused_infer_attention_score_v2(*a[:3], dequant_scale_key=a[0]),
     "dequant_scale_key"),
    (lambda a: fia.npu_fused_infer_attention_score_v2(*a[:3], key_quant_mode=1), "key_quant_mode"),
    (lambda a: fia.npu_fused_infer_attention_score_v2(*a[:3], out_dtype=1), "out_dtype"),
    (lambda a: fia.npu_fused_infer_attention_score_v2(*a[:3], query_dtype=290), "query_dtype"),
])
def test_unsupported_keywords_raise_not_implemented(call, name, rng):
    a = tuple(rnd(rng, (1, 1, 1, 8)) for _ in range(4))
    with pytest.raises(NotImplementedError, match=name):
        call(a)


def test_sparse_errors_write_nothing(rng):
    q = rnd(rng, (1, 2, 2, 512))
    qr = rnd(rng, (1, 2, 2, 64))
    k = rnd(rng, (1, 16, 1, 512))
    kr = rnd(rng, (1, 16, 1, 64))
    idx = np.zeros((1, 2, 1, 4), np.int32)
    out = (np.full((1, 2, 2, 512), 3.0, np.float16), np.empty(0, np.float32),
           np.empty(0, np.float32))
    with pytest.raises(ValueError, match="query_rope"):  # query_rope dtype mismatch
        fia.npu_sparse_flash_attention(q, k, k, idx, 0.1, query_rope=qr.astype(np.float32),
                                       key_rope=kr, attention_mode=2, out=out)
    assert (out[0] == 3.0).all()
    li_out = (np.full((1, 2, 1, 4), 7, np.int32), np.full((1, 2, 1, 4), 7, np.float16))
    with pytest.raises(ValueError):
        fia.npu_lightning_indexer(q[..., :64], k[..., :32], rnd(rng, (1, 2, 2)), sparse_count=4,
                                  return_value=True, out=li_out)
    assert (li_out[0] == 7).all() and (li_out[1] == 7).all()


def test_context_and_num_threads(rng):
    q, k, v = _fia_args(rng)
    ref, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    with fia.Context(num_threads=1, isa="scalar") as c:
        assert fia.get_num_threads() == 1 and c.isa == "scalar"
        scalar, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    assert np.allclose(scalar.astype(np.float32), ref.astype(np.float32), atol=2e-3)
    try:
        fia.set_num_threads(1)
        assert fia.get_num_threads() == 1
        one, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
        fia.set_num_threads(2)
        assert fia.get_num_threads() == 2
        two, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    finally:
        fia.set_num_threads(0)
    assert np.array_equal(one, ref) and np.array_equal(two, ref)  # deterministic
    with pytest.raises(ValueError):
        fia.Context(isa="sse9")


def test_two_threads_run_concurrently_and_correctly(rng):
    """Each Python thread has its own default context; results equal the serial ones."""
    inputs = [_fia_args(np.random.default_rng(s)) for s in range(8)]
    refs = [fia.npu_fused_infer_attention_score(*x, **KW)[0] for x in inputs]
    errors = []

    def worker(tid):
        try:
            for rep in range(25):
                for i in range(tid, 8, 2):
                    out, _ = fia.npu_fused_infer_attention_score(*inputs[i], **KW)
                    if not np.array_equal(out, refs[i]):
                        errors.append((tid, rep, i))
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_gil_is_released_during_a_call():
    """While one thread is inside a long fia call, another Python thread keeps running."""
    rng = np.random.default_rng(5)
    q = rnd(rng, (1, 512, 8, 128))
    k = rnd(rng, (1, 4096, 8, 128))
    span = {}

    def long_call():
        with fia.Context(num_threads=1):
            span["t0"] = time.perf_counter()
            for _ in range(3):
                fia.npu_fused_infer_attention_score(q, k, k, num_heads=8, scale=0.1,
                                                    input_layout="BSND")
            span["t1"] = time.perf_counter()

    t = threading.Thread(target=long_call)
    stamps = []
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
        time.sleep(0.0005)
    t.join()
    inside = [s for s in stamps if span["t0"] < s < span["t1"]]
    assert len(inside) >= 5, (len(inside), span["t1"] - span["t0"])


def test_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, ml_dtypes, fia\n"
            "q = np.ones((1, 1, 2, 8), ml_dtypes.bfloat16)\n"
            "o, l = fia.npu_fused_infer_attention_score(q, q, q, num_heads=2, input_layout='BSND')\n"
            "assert o.dtype == ml_dtypes.bfloat16 and l.shape == (0,)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_dlpack_producer_gives_numpy_outputs(rng):
    class Producer:  # any object with __dlpack__ (here a wrapper around a numpy array)
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    q, k, v = _fia_args(rng)
    ref, _ = fia.npu_fused_infer_attention_score(q, k, v, **KW)
    out, _ = fia.npu_fused_infer_attention_score(Producer(q), Producer(k), Producer(v), **KW)
    assert isinstance(out, np.ndarray) and np.array_equal(out, ref)
