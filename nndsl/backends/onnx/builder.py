"""A small helper that accumulates ONNX nodes, constants and initializers deterministically."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from nndsl.errors import LoweringError
from nndsl.ir.types import SymDim

OPSET = 21          # GroupNormalization is per-channel from opset 21
IR_VERSION = 10     # the IR version of opset 21; onnxruntime 1.17+ loads it

ONNX_DTYPES = {"f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16,
               "bf16": TensorProto.BFLOAT16, "f64": TensorProto.DOUBLE,
               "i64": TensorProto.INT64, "i32": TensorProto.INT32, "i8": TensorProto.INT8,
               "u8": TensorProto.UINT8, "i4": TensorProto.INT4, "bool": TensorProto.BOOL}
NUMPY_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64,
                "i32": np.int32, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}
INT64_MAX = 2**63 - 1


class Builder:
    """Collects the nodes of one ONNX graph. Names are derived from IR scope paths."""

    def __init__(self, symbol_sources: dict[str, tuple[str, int]], int8: str = "u8u8"):
        self.int8 = int8          # the form of int8-dynamic's matrix products (lowering.INT8_FORMS)
        self.nodes: list = []
        self.initializers: list = []
        self.value_infos: list = []   # types of intermediate values that inference cannot know
        self._names: set[str] = set()
        self._consts: dict = {}
        self._dims: dict[str, str] = {}
        self.symbol_sources = symbol_sources   # symbol -> (graph input name, axis)
        self.scope = ""
        self.span = None

    def fresh(self, hint: str) -> str:
        name = hint
        i = 1
        while name in self._names:
            name = f"{hint}_{i}"
            i += 1
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        self._names.add(name)

    def sub(self) -> "Builder":
        """A builder for a subgraph (a ``Loop`` body): names stay unique across the whole model;
        the constants and dims already made here are outer-scope values the body may read, but
        what the body makes stays its own."""
        s = Builder(self.symbol_sources, self.int8)
        s._names = self._names
        s._consts = dict(self._consts)
        s._dims = dict(self._dims)
        s.scope, s.span = self.scope, self.span
        return s

    def op(self, op_type: str, inputs: list, n_out: int = 1, out_names: list | None = None,
           **attrs) -> list[str]:
        outs = out_names or [self.fresh(f"{self.scope}/{op_type}") for _ in range(n_out)]
        node_name = self.fresh(f"{self.scope}/{op_type}#node") if self.scope else \
            self.fresh(f"{op_type}#node")
        self.nodes.append(helper.make_node(op_type, [i if i is not None else "" for i in inputs],
                                           outs, name=node_name.replace("#node", ""), **attrs))
        return outs

    def op1(self, op_type: str, inputs: list, out: str | None = None, **attrs) -> str:
        return self.op(op_type, inputs, 1, [out] if out else None, **attrs)[0]

    def const(self, value, dtype: str = "i64") -> str:
        arr = np.asarray(value, dtype=NUMPY_DTYPES[dtype])
        key = (dtype, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.fresh(f"const_{len(self._consts)}")
            t = numpy_helper.from_array(arr, name)
            self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=t))
            self._consts[key] = name
        return self._consts[key]

    def initializer(self, name: str, array: np.ndarray) -> None:
        self.reserve(name)
        self.initializers.append((name, array))

    # ---- symbolic dims ----
    def dim(self, d) -> str:
        """A 1-element int64 tensor holding dim ``d`` (computed from input shapes if symbolic)."""
        if isinstance(d, int):
            return self.const([d])
        key = str(d)
        if key in self._dims:
            return self._dims[key]
        saved, self.scope = self.scope, "dims"
        try:
            out = self._poly(d)
        finally:
            self.scope = saved
        self._dims[key] = out
        return out

    def _symbol(self, name: str) -> str:
        if name not in self._dims:
            if name not in self.symbol_sources:
                raise LoweringError(f"the symbolic dim `{name}` is not the dim of any input",
                                    code="E0904", span=self.span)
            src, axis = self.symbol_sources[name]
            shape = self.op1("Shape", [src], start=axis, end=axis + 1)
            self._dims[name] = shape
        return self._dims[name]

    def _poly(self, d: SymDim) -> str:
        total = None
        for mono, coef in d.terms:
            term = None
            for atom in mono:
                if atom[0] == "s":
                    v = self._symbol(atom[1])
                else:
                    v = self.op1("Div", [self.dim(atom[1]), self.const([atom[2]])])
                term = v if term is None else self.op1("Mul", [term, v])
            if term is None:
                term = self.const([coef])
            elif coef != 1:
                term = self.op1("Mul", [term, self.const([coef])])
            total = term if total is None else self.op1("Add", [total, term])
        return total if total is not None else self.const([0])

    def shape(self, dims) -> str:
        """An int64 shape tensor for a tuple of dims."""
        if all(isinstance(d, int) for d in dims):
            return self.const(list(dims))
        return self.op1("Concat", [self.dim(d) for d in dims], axis=0)


def value_info(name: str, t) -> object:
    dims = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], dims)
