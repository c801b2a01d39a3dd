"""Per-op knowledge, one table per concern, all keyed by op name.

- :mod:`signatures` — operands, attributes, kinds and traits (``SIGNATURES``; the lists of
  ops with a trait come from :func:`ops_with` and :func:`ops_of_kind`)
- :mod:`shapes` — shape rules (``SHAPE_RULES``)
- :mod:`flops` — FLOP counts (``FLOP_RULES``)
- :mod:`reference` — NumPy references (``REFERENCES``), which complete the records here:
  ``SIGNATURES[op].reference`` and ``.exact``

The torch lowering table lives with the torch backend (``nndsl.backends.torch.lowering``).
"""

from nndsl.ir.ops.flops import FLOP_RULES, flops
from nndsl.ir.ops.shapes import SHAPE_RULES, infer
from dataclasses import replace as _replace

from nndsl.ir.ops.reference import EXACT as _EXACT, REFERENCES as _REFERENCES
from nndsl.ir.ops.signatures import SIGNATURES, ops_of_kind, ops_with

if set(_REFERENCES) - set(SIGNATURES):
    raise AssertionError(f"references of ops that do not exist: "
                         f"{sorted(set(_REFERENCES) - set(SIGNATURES))}")
# the records are completed in place, so every holder of SIGNATURES sees them whole
SIGNATURES.update({op: _replace(SIGNATURES[op], reference=fn, exact=op in _EXACT)
                   for op, fn in _REFERENCES.items()})

__all__ = ["SIGNATURES", "SHAPE_RULES", "FLOP_RULES", "infer", "flops", "ops_with",
           "ops_of_kind"]
