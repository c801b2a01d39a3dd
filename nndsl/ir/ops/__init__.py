"""Per-op knowledge, one table per concern, all keyed by op name.

- :mod:`signatures` — operands, attributes, kinds and traits (``SIGNATURES``; the lists of
  ops with a trait come from :func:`ops_with` and :func:`ops_of_kind`)
- :mod:`shapes` — shape rules (``SHAPE_RULES``)
- :mod:`flops` — FLOP counts (``FLOP_RULES``)

The torch lowering table lives with the torch backend (``nndsl.backends.torch.lowering``).
"""

from nndsl.ir.ops.flops import FLOP_RULES, flops
from nndsl.ir.ops.shapes import SHAPE_RULES, infer
from nndsl.ir.ops.signatures import SIGNATURES, ops_of_kind, ops_with

__all__ = ["SIGNATURES", "SHAPE_RULES", "FLOP_RULES", "infer", "flops", "ops_with",
           "ops_of_kind"]
