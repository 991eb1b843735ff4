"""`import fia.torch_npu as torch_npu`: the operators under the torch_npu module names, so golden
scripts written for torch_npu run on the CPU unchanged (for the operators fia implements)."""

from ._ops import OPS as _OPS

globals().update({_name: _fn for _name, (_fn, _fake) in _OPS.items()})
__all__ = sorted(_OPS)
