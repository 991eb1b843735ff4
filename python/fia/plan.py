"""fia.plan.<op>(...): every operator with its own arguments, returning a fia.Plan to execute
again and again (see fia.Plan)."""

from ._core import planner as _planner
from ._ops import OPS as _OPS

for _name, (_fn, _fake) in _OPS.items():
    globals()[_name] = _planner(_fn)

__all__ = sorted(_OPS)
