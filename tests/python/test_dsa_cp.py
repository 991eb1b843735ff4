"""Context parallelism of fia.models.dsa on 2 processes (torch.distributed, gloo over
loopback): prefill split by query tokens with all-gathered latent / indexer keys, decode with
the KV sharded by tokens and the partial states merged by merge_attention_states. The 2-rank
session is checked call by call against the float64 reference (the rule of dsa_harness, with
A = 6e-3 for decode calls: dsa_cp_worker.A_CP_DECODE says why) and
against the single-process session: top-k and residuals identical; the outputs of the prefill
calls equal where torch's GEMMs (V absorb, o_proj) round a rank's rows as they round the whole
call's (oneDNN may pick another kernel for another row count: then within a bf16 ulp), those of
decode calls differ by the merge's rounding only (the partial outputs are bf16, merged in fp32
in rank order: bitwise reproducible run to run). The C8 path (test_cp2_fia_ops_c8) is checked
the same way, with A = 7e-3 for its decode calls (dsa_cp_worker.A_CP_DECODE_C8)."""
import socket

import pytest
import torch
import torch.multiprocessing as mp

import dsa_cp_worker
from dsa_harness import missing_ops


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cfg_name, ops_name, c8, world=2):
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    port = _port()
    procs = [ctx.Process(target=dsa_cp_worker.rank_main,
                         args=(r, world, port, cfg_name, ops_name, c8, q)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    for p in procs:
        if p.is_alive():
            p.kill()
    msgs = []
    while not q.empty():
        msgs.append(q.get())
    errs = [m for m in msgs if m[0] == "error"]
    assert not errs, errs[0][2]
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    ok = [m for m in msgs if m[0] == "ok"]
    assert ok, msgs
    return ok[0]


@pytest.mark.parametrize("cfg_name", ["deepseek-v3.2"])
def test_cp2_golden_ops(cfg_name):
    _, same, n, worst, need = _run(cfg_name, "npu_golden", False)
    print(f"{cfg_name}: {same}/{n} calls bitwise equal to one process, largest difference "
          f"{worst:.2e} of max|out|, reference rule met with A = {need:.2e}")
    assert n == 18 and same >= 2 and worst < 0.01  # the two prefill calls at least


@pytest.mark.parametrize("cfg_name", ["deepseek-v3.2", "glm-5"])
def test_cp2_fia_ops(cfg_name):
    try:
        import fia
    except ImportError as e:
        pytest.skip(f"fia not importable: {e}")
    if missing_ops(fia):
        pytest.skip(f"fia lacks {missing_ops(fia)}")
    _, same, n, worst, need = _run(cfg_name, "fia", False)
    print(f"fia: {same}/{n} calls bitwise equal to one process, largest difference "
          f"{worst:.2e} of max|out|, reference rule met with A = {need:.2e}")
    assert n == 18 and worst < 0.01


def _fia_prolog_has_c8(fia):
    """Whether fia's npu_mla_prolog_v3 writes the 656-byte C8 row (kv_cache_quant_mode 3)."""
    z, bf = torch.zeros, torch.bfloat16
    try:
        fia.npu_mla_prolog_v3(z(1, 8, dtype=bf), z(8, 8, dtype=bf), z(8, 192, dtype=bf),
                              z(1, 128, 512, dtype=bf), z(8, 576, dtype=bf), z(8, dtype=bf),
                              z(512, dtype=bf), z(1, 64, dtype=bf), z(1, 64, dtype=bf),
                              z(1, 16, 1, 656, dtype=torch.int8), z(1, 1, 1, 64, dtype=bf),
                              cache_index=torch.zeros(1, dtype=torch.int64),
                              kv_cache_quant_mode=3, ckvkr_repo_mode=1, quant_scale_repo_mode=1,
                              k_nope_clip_alpha=torch.ones(1))
    except NotImplementedError:
        return False
    except ValueError:
        pass  # implemented (the probe's shapes need not be valid)
    return True


@pytest.mark.parametrize("cfg_name", ["deepseek-v3.2", "glm-5"])
def test_cp2_fia_ops_c8(cfg_name):
    """The C8 path on 2 ranks: decode merges the partial states of
    npu_kv_quant_sparse_flash_attention (its softmax_max / softmax_sum, fia's extension) and
    ranks the global top-k by npu_quant_lightning_indexer's scores (return_value, fia's
    extension). The 656-byte rows come from fia's prolog when it implements
    kv_cache_quant_mode 3, else from the pure-torch golden of npu_mla_prolog_v3."""
    try:
        import fia
    except ImportError as e:
        pytest.skip(f"fia not importable: {e}")
    if missing_ops(fia):
        pytest.skip(f"fia lacks {missing_ops(fia)}")
    ops_name = "fia" if _fia_prolog_has_c8(fia) else "fia+golden_prolog"
    _, same, n, worst, need = _run(cfg_name, ops_name, True)
    print(f"{ops_name} C8: {same}/{n} calls bitwise equal to one process, largest difference "
          f"{worst:.2e} of max|out|, reference rule met with A = {need:.2e}")
    assert n == 18 and worst < 0.01
