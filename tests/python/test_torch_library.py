"""torch.ops.fia.*: the torch_npu schemas registered with torch.library, eager calls through the
dispatcher, fake implementations, and torch.compile(fullgraph=True) on one operator of each
family (attention: FIA and SmallQ; sparse: lightning indexer and SFA)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fia  # noqa: E402
from fia._schemas import SCHEMAS  # noqa: E402
from conftest import rnd, to_kind  # noqa: E402


def T(rng, shape, dtype="bfloat16", scale=1.0):
    return to_kind(rnd(rng, shape, dtype, scale), "torch")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_registered_with_torch_npu_schema(name):
    op = getattr(torch.ops.fia, name).default
    assert str(op._schema).replace("fia::", "") == str(
        torch._C.parse_schema(SCHEMAS[name]))


def test_keyword_only_is_enforced(rng):
    q = T(rng, (1, 1, 2, 16))
    with pytest.raises(Exception, match="positional"):
        torch.ops.fia.npu_fused_infer_attention_score(q, q, q, 2)


def _fia_case(rng):
    q, k, v = T(rng, (2, 1, 8, 64)), T(rng, (2, 32, 2, 64)), T(rng, (2, 32, 2, 64))
    kw = dict(num_heads=8, num_key_value_heads=2, scale=0.125, input_layout="BSND",
              actual_seq_lengths_kv=[32, 20], softmax_lse_flag=True)
    return (q, k, v), kw


def _li_case(rng):
    q, k, w = T(rng, (1, 4, 8, 64)), T(rng, (1, 64, 1, 64)), T(rng, (1, 4, 8), "float32")
    kw = dict(actual_seq_lengths_key=torch.tensor([50], dtype=torch.int32), sparse_count=16,
              return_value=True)
    return (q, k, w), kw


def _sfa_case(rng):
    q, k = T(rng, (1, 2, 4, 512)), T(rng, (1, 32, 1, 512))
    qr, kr = T(rng, (1, 2, 4, 64)), T(rng, (1, 32, 1, 64))
    idx = torch.arange(8, dtype=torch.int32).reshape(1, 1, 1, 8).repeat(1, 2, 1, 1)
    kw = dict(query_rope=qr, key_rope=kr, attention_mode=2)
    return (q, k, k, idx, 0.05), kw


def _smallq_case(rng):
    return tuple(T(rng, s, "float16") for s in ((2, 2, 32), (2, 40, 32), (2, 40, 32))), {}


CASES = {"npu_fused_infer_attention_score": _fia_case, "npu_lightning_indexer": _li_case,
         "npu_sparse_flash_attention": _sfa_case, "npu_smallq_flash_attention": _smallq_case}


def _flat(x):
    return [x] if isinstance(x, torch.Tensor) else list(x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_dispatcher_eager_equals_direct(name, rng):
    args, kw = CASES[name](rng)
    direct = _flat(getattr(fia, name)(*args, **kw))
    via = _flat(getattr(torch.ops.fia, name)(*args, **kw))
    assert len(direct) == len(via)
    for a, b in zip(direct, via):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fake_impl_shapes(name, rng):
    from torch._subclasses.fake_tensor import FakeTensorMode

    args, kw = CASES[name](rng)
    real = _flat(getattr(torch.ops.fia, name)(*args, **kw))
    with FakeTensorMode() as mode:
        fargs = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        fkw = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        fake = _flat(getattr(torch.ops.fia, name)(*fargs, **fkw))
    assert [(t.shape, t.dtype) for t in fake] == [(t.shape, t.dtype) for t in real]


@pytest.mark.parametrize("name", ["npu_fused_infer_attention_score", "npu_lightning_indexer"])
def test_torch_compile_fullgraph(name, rng):
    args, kw = CASES[name](rng)
    op = getattr(torch.ops.fia, name)

    def fn(*a):
        res = _flat(op(*a, **kw))
        return [r * 1 if r.is_floating_point() else r for r in res]

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    got = compiled(*args)
    want = fn(*args)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["npu_smallq_flash_attention", "npu_sparse_flash_attention"])
def test_torch_compile_fullgraph_aot_eager(name, rng):
    args, kw = CASES[name](rng)
    op = getattr(torch.ops.fia, name)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: _flat(op(*a, **kw)), fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(*args), _flat(op(*args, **kw))):
        assert torch.equal(a, b)


def test_opcheck(rng):
    args, kw = _fia_case(rng)
    torch.library.opcheck(torch.ops.fia.npu_fused_infer_attention_score.default, args, kw,
                          test_utils=("test_schema", "test_faketensor"))
