"""What an ONNX value is while the graph is walked, and the small facts the converter and the
op table (:mod:`nndsl.importer.ops`) share: dtypes, :class:`Sym` (a tensor the spec computes),
:class:`ShapeVec` (a vector of dims, some symbolic), :class:`Unsupported`, layer and scope
names from ONNX names, a node's attributes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


ONNX_DTYPES = {1: "f32", 2: "u8", 3: "i8", 6: "i32", 7: "i64", 9: "bool", 10: "f16",
               11: "f64", 16: "bf16"}
NP_DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64,
             "i32": np.int32, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}
FLOATS = ("f32", "f64", "f16", "bf16")


class Unsupported(Exception):
    """A node the op table cannot express (the reason is the message)."""


@dataclass(frozen=True)
class Sym:
    var: str
    dtype: str
    shape: tuple | None

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class ShapeVec:
    """A 1-d i64 vector (or a scalar, ``scalar=True``) of dims, some symbolic."""

    dims: tuple
    scalar: bool = False

    def static(self):
        if all(isinstance(d, int) for d in self.dims):
            a = np.array(self.dims, dtype=np.int64)
            return a.reshape(()) if self.scalar else a
        return None


class Poison:
    """The output of a node that could not be converted: what reads it is skipped."""


POISON = Poison()


def dtype_of(elem: int, what: str) -> str:
    if elem not in ONNX_DTYPES:
        import onnx
        name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() \
            else str(elem)
        raise Unsupported(f"{what} has element type {name}, which nndsl has no dtype for")
    return ONNX_DTYPES[elem]


def np_dtype_name(a: np.ndarray) -> str:
    for k, v in NP_DTYPES.items():
        if a.dtype == v:
            return k
    raise Unsupported(f"a constant of dtype {a.dtype}")


def scope_of(node_name: str) -> str:
    """The module path of a node named by torch's exporter: ``/layer1/layer1.0/conv1/Conv`` ->
    ``layer1.0.conv1`` (a segment that extends the path so far, or its last part, replaces
    it: ``/layer1/layer1.1/down/down.0/Conv`` -> ``layer1.1.down.0``)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return ""
    path = ""
    for p in parts[:-1]:
        last = path.rsplit(".", 1)[-1]
        if not path or p.startswith(path + "."):
            path = p
        elif p.startswith(last + "."):         # /down/down.0: a child of a Sequential
            path = path[: len(path) - len(last)] + p
        else:
            path = f"{path}.{p}"
    return path


WEIGHT_SUFFIXES = (".weight", ".bias", "_w_0", "_b_0", "_w", "_b", "_W", "_B", "/weight",
                   "_weight", "_bias", "_scale_0", "_bn_s_0", "_bn_s", "_s_0")


def layer_hint(weight_name: str | None, node_name: str) -> str:
    """Where a layer's name comes from: its weight's initializer (``layer1.0.conv1.weight`` ->
    ``layer1.0.conv1``; ``conv1_w_0`` -> ``conv1``), else the node's scope or name."""
    if weight_name:
        for sfx in WEIGHT_SUFFIXES:
            if weight_name.endswith(sfx) and len(weight_name) > len(sfx):
                return weight_name[: -len(sfx)]
    scope = scope_of(node_name)
    if scope:
        return scope
    return node_name


def _attrs(node) -> dict:
    import onnx.helper
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
