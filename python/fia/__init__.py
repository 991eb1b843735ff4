"""fia: fused LLM-inference attention operators for CPUs, under their torch_npu names.

Every operator takes numpy arrays, torch CPU tensors or any __dlpack__ object (zero-copy, strided
views allowed; numpy bfloat16 as ml_dtypes.bfloat16) and returns outputs of the query's kind:

    import fia
    out, lse = fia.npu_fused_infer_attention_score(q, k, v, num_heads=32, input_layout="BSND",
                                                   scale=0.088, num_key_value_heads=8)

fia.plan.<op>(...) plans a call for re-execution (fia.Plan); fia.Context / fia.set_num_threads
choose the thread count (FIA_NUM_THREADS is the default). With torch installed, importing fia
also registers every operator as torch.ops.fia.<op> (torch_npu schema, fake implementation for
torch.compile). Errors: fia.FiaInvalidArgument (a ValueError) and fia.FiaUnsupported (a
NotImplementedError) carry the library's message naming the tensor, dim and values.
"""

from . import _fia
from ._core import (Context, FiaError, FiaInvalidArgument, FiaUnsupported, Plan,
                    current_context, get_num_threads, set_num_threads)
from ._attention import (npu_fused_infer_attention_score, npu_fused_infer_attention_score_v2,
                         npu_smallq_flash_attention)
from ._sparse import (npu_kv_quant_sparse_flash_attention, npu_lightning_indexer,
                      npu_quant_lightning_indexer, npu_sparse_flash_attention)
from ._chain import (npu_add_rms_norm, npu_dynamic_quant, npu_gather_selection_kv_cache,
                     npu_interleave_rope,
                     npu_mla_prolog_v3, npu_rms_norm, npu_rotary_mul, npu_scatter_nd_update,
                     npu_scatter_nd_update_, scatter_update, scatter_update_)
from .merge import merge_attention_states
from . import _ops
from . import plan

__version__ = _fia.version

OPS = _ops.OPS  # name -> (function, fake implementation)

try:  # torch is optional: without it fia works on numpy alone
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover
    _torch = None
if _torch is not None:
    from . import _torch_lib

    _torch_lib.register()

__all__ = sorted(OPS) + ["merge_attention_states", "Context", "FiaError", "FiaInvalidArgument",
                         "FiaUnsupported", "Plan",
                         "current_context", "get_num_threads", "set_num_threads", "plan"]
