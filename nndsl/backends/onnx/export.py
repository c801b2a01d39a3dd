"""IR -> ``onnx.ModelProto``, built node by node from the graph (no tracing of the torch module)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
from onnx import helper

from nndsl.backends.onnx.builder import IR_VERSION, OPSET, Builder, value_info
from nndsl.backends.onnx.lowering import lower_graph
from nndsl.errors import LoweringError
from nndsl.ir.graph import Graph
from nndsl.ir.symbols import batch_symbols, bind_symbols, range_to_json
from nndsl.ir.types import SymDim, storage_shape

EXTERNAL_DATA_THRESHOLD = 1 << 30   # bytes of weights above which the model is saved with external data


def _symbol_sources(graph: Graph) -> dict:
    out = {}
    for name in graph.inputs:
        for axis, d in enumerate(graph.node(name).type.shape):
            if isinstance(d, SymDim) and str(d) in d.symbols() and str(d) not in out:
                out[str(d)] = (name, axis)
    return out


def _read_names(nodes) -> set:
    """Every name the nodes read, in their subgraphs (``Loop`` bodies) too."""
    out: set = set()
    for n in nodes:
        out.update(n.input)
        for attr in n.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out |= _read_names(attr.g.node)
            for g in attr.graphs:
                out |= _read_names(g.node)
    return out


def to_onnx(graph: Graph, weights: Mapping[str, np.ndarray], producer_version: str = "") -> onnx.ModelProto:
    """Lower ``graph`` to ONNX with the given parameter values (numpy arrays by spec name)."""
    half = next((n for n in graph if any(t.dtype == "bf16" for t in n.types)), None)
    if half is not None:
        raise LoweringError("bf16 graphs run on the torch backend only: onnxruntime has no "
                            "bf16 kernels on the CPU", span=half.span, code="E0905",
                            hint="quantize with f16 for ONNX, or export the float model")
    b = Builder(_symbol_sources(graph))
    names: dict = {}
    for n in graph.inputs:
        b.reserve(n)
    for node in graph.params():
        b.reserve(node.name)
    lower_graph(b, graph, names)
    b.scope = ""
    outputs = []
    for out_name, v in graph.outputs:
        src = names[v]
        if src != out_name:
            b.op1("Identity", [src], out=out_name)
        outputs.append(value_info(out_name, graph.type_of(v)))
    used = _read_names(b.nodes)
    packed: dict[str, tuple] = {}
    for node in graph.params():
        if node.name not in used:
            continue
        if node.name not in weights:
            raise LoweringError(f"no value for parameter `{node.name}`", code="E0908")
        arr = np.asarray(weights[node.name])
        arr = np.ascontiguousarray(arr) if arr.ndim else arr.copy()   # (it makes 0-d arrays 1-d)
        if tuple(arr.shape) != storage_shape(node.type.dtype, node.type.shape):
            raise LoweringError(f"parameter `{node.name}` has shape {list(arr.shape)}, the spec "
                                f"says {node.type}", code="E0908")
        b.initializer(node.name, arr)
        if node.type.dtype == "i4":      # stored packed, as ONNX's INT4 is
            packed[node.name] = tuple(node.type.shape)
    # Build the protos in place: make_graph/make_model would copy every weight twice.
    model = onnx.ModelProto()
    model.ir_version = IR_VERSION
    model.producer_name, model.producer_version = "nndsl", producer_version
    model.opset_import.add().CopyFrom(helper.make_opsetid("", OPSET))
    g = model.graph
    g.name = graph.name
    g.node.extend(b.nodes)
    g.value_info.extend(b.value_infos)
    g.input.extend(value_info(n, graph.node(n).type) for n in graph.inputs)
    g.output.extend(outputs)
    for name, arr in b.initializers:
        t = g.initializer.add()
        t.name = name
        if name in packed:
            t.data_type = onnx.TensorProto.INT4
            t.dims.extend(packed[name])
        else:
            t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
            t.dims.extend(arr.shape)
        t.raw_data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    dims = {k: v for k, v in bind_symbols(graph, 1).items() if k not in batch_symbols(graph)}
    helper.set_model_props(model, {
        "nndsl.example_dims": json.dumps(dims, sort_keys=True),
        "nndsl.input_ranges": json.dumps({k: range_to_json(r) for k, r in
                                          graph.meta.get("input_ranges", {}).items()},
                                         sort_keys=True),
        "nndsl.input_dists": json.dumps(graph.meta.get("input_dists", {}), sort_keys=True),
    })
    return model


def save(model: onnx.ModelProto, path: str | Path, external_threshold: int | None = None) -> list[Path]:
    """Write ``model`` atomically; weights go to ``PATH.data`` when they exceed the threshold.

    Returns the files written. Nothing is left behind if writing fails.
    """
    path = Path(path)
    threshold = EXTERNAL_DATA_THRESHOLD if external_threshold is None else external_threshold
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tmp = tmpdir / path.name
        written = [path]
        if size > threshold:
            data_name = path.name + ".data"
            m = onnx.ModelProto()
            m.CopyFrom(model)
            onnx.save_model(m, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024, convert_attribute=False)
            os.replace(tmpdir / data_name, path.parent / data_name)
            written.append(path.parent / data_name)
        else:
            onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
        return written
    finally:
        for p in tmpdir.iterdir():
            p.unlink()
        tmpdir.rmdir()
