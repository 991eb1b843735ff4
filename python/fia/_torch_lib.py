"""torch.library registration (only imported when torch is importable): every operator as
torch.ops.fia.<name>, defined with its torch_npu schema string, a CPU kernel (the fia function
itself) and a fake implementation with the same output shapes (for torch.compile)."""

import torch

from ._ops import OPS
from ._schemas import SCHEMAS

_lib = None


def register():
    global _lib
    if _lib is not None:
        return
    if hasattr(torch.ops, "fia") and hasattr(torch.ops.fia, "npu_fused_infer_attention_score"):
        return  # already defined in this process (e.g. a second copy of the package)
    lib = torch.library.Library("fia", "DEF")
    for name, (fn, fake) in OPS.items():
        lib.define(SCHEMAS[name])
        lib.impl(name, fn, "CPU")
        torch.library.register_fake("fia::" + name, fake, lib=lib)
    _lib = lib
