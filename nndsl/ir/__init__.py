"""The typed graph IR: types, the ``Graph`` class, per-op tables, ``verify`` and the printer."""

from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.printer import print_graph
from nndsl.ir.types import DTYPES, SymDim, TensorType
from nndsl.ir.verify import verify

__all__ = ["Graph", "Node", "Value", "TensorType", "SymDim", "DTYPES", "verify", "print_graph"]
