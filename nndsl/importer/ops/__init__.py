"""The op table: one function per ONNX operator, writing the spec's statements for a node.

Each entry takes the converter, the node, its input values (``Sym``, a constant array, a
``ShapeVec`` or None for an absent optional input) and its attributes, and returns the values of
its outputs. It reads the operator as opset :data:`~nndsl.importer.reader.TABLE_OPSET` defines it
(older models are converted to that first); an attribute value nndsl cannot express raises
:class:`~nndsl.importer.values.Unsupported` with the reason, which the import error lists.
"""

from __future__ import annotations

OPS: dict = {}


def op(*names):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return register


# the modules fill OPS as they are imported
from nndsl.importer.ops import (constants, elementwise, layers, pooling,  # noqa: E402
                                reductions, sequence, shapes)

__all__ = ["OPS", "op", "constants", "elementwise", "layers", "pooling", "reductions",
           "sequence", "shapes"]
