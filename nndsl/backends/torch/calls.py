"""The PyTorch functions that compute an op from its one operand, named once.

The torch module calls them (:mod:`nndsl.backends.torch.lowering`) and the code generator
writes their names (:mod:`nndsl.backends.torch.codegen.ops`), so a call is never written twice.
Names are as generated code spells them, with ``torch`` and ``torch.nn.functional as F``
imported; :func:`function` finds the function by attribute lookup.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# op -> the function that computes it from its operand (nothing else: no attributes)
PLAIN: dict[str, str] = {
    "relu": "F.relu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "silu": "F.silu",
    "selu": "F.selu", "exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt",
    "rsqrt": "torch.rsqrt", "abs": "torch.abs", "erf": "torch.erf", "sin": "torch.sin",
    "cos": "torch.cos", "logical_not": "torch.logical_not", "hardswish": "F.hardswish",
    "hardsigmoid": "F.hardsigmoid", "mish": "F.mish",
}

# the epilogue activations a layer applies to its result (the `epilogue` trait), at their
# defaults: gelu is exact there
EPILOGUE: dict[str, str] = {**{op: PLAIN[op] for op in ("relu", "sigmoid", "tanh", "silu")},
                            "gelu": "F.gelu"}

_NAMESPACES = {"torch": torch, "F": F}


def function(name: str):
    """The function a name of :data:`PLAIN` or :data:`EPILOGUE` stands for."""
    namespace, _, attr = name.partition(".")
    return getattr(_NAMESPACES[namespace], attr)
