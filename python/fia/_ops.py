"""The operator registry: every family module's OPS merged (name -> (function, fake)).
Adding an operator family: write fia/_<family>.py with its OPS dict and list it here."""

from . import _attention, _chain, _sparse

OPS = {}
for _m in (_attention, _sparse, _chain):
    OPS.update(_m.OPS)
