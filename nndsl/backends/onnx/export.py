"""IR -> ``onnx.ModelProto``, built node by node from the graph (no tracing of the torch module)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
from onnx import helper

from nndsl.backends.onnx.builder import IR_VERSION, OPSET, Builder, value_info
from nndsl.backends.onnx.lowering import INT8_FORMS, lower_graph
from nndsl.errors import ArgumentError, LoweringError
from nndsl.fsutil import (clean_stale_temps, create_temp, fsync_dir, remove_files, remove_quietly,
                          write_fd)
from nndsl.ir.graph import Graph
from nndsl.ir.symbols import batch_symbols, bind_symbols, constraint_to_json, range_to_json
from nndsl.ir.types import SymDim, storage_shape

EXTERNAL_DATA_THRESHOLD = 1 << 30   # bytes of weights above which the model is saved with external data


# The NumPy dtype each IR dtype is stored in (``i4``: packed two a byte, checked by shape).
_STORED_DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64,
                  "i32": np.int32, "i16": np.int16, "i8": np.int8, "u8": np.uint8,
                  "bool": np.bool_}


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


def to_onnx(graph: Graph, weights: Mapping[str, np.ndarray], producer_version: str = "",
            int8: str = "u8u8") -> onnx.ModelProto:
    """Lower ``graph`` to ONNX with the given parameter values (numpy arrays by spec name);
    ``int8``: how int8-dynamic's matrix products run (``lowering.INT8_FORMS``)."""
    if int8 not in INT8_FORMS:
        raise ArgumentError(f"unknown int8 form `{int8}`", code="E0257",
                            hint="the forms: " + ", ".join(INT8_FORMS))
    half = next((n for n in graph if any(t.dtype == "bf16" for t in n.types)), None)
    if half is not None:
        raise LoweringError("bf16 graphs run on the torch backend only: onnxruntime has no "
                            "bf16 kernels on the CPU", span=half.span, code="E0905",
                            hint="quantize with f16 for ONNX, or export the float model")
    b = Builder(_symbol_sources(graph), int8)
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
        want = _STORED_DTYPES.get(node.type.dtype)
        if want is not None and arr.dtype != want:
            raise LoweringError(f"parameter `{node.name}` holds {arr.dtype} values, the spec "
                                f"says {node.type}", code="E0908",
                                hint=f"convert the weight to {np.dtype(want).name} "
                                     f"before exporting")
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
        "nndsl.constraints": json.dumps([constraint_to_json(c, msg) for c, msg, _ in
                                         graph.meta.get("constraints", [])]),
    })
    return model


PROTOBUF_LIMIT = (1 << 31) - (64 << 20)   # one protobuf message holds under 2 GiB (and the graph)
EXTERNAL_TENSOR_MIN = 1024                # bytes: smaller tensors stay inside the .onnx file
_DATA_NAME = re.compile(r"(.+)\.[0-9a-f]{16}\.data")
_LEGACY_TEMP_DIR = re.compile(r"\.(.+)\.[a-z0-9_]{8}")   # tempfile.mkdtemp's, before the above


def save(model: onnx.ModelProto, path: str | Path, external_threshold: int | None = None) -> list[Path]:
    """Write ``model`` atomically; its weights go to an external data file when their size
    exceeds the threshold (the graph's tensors of 1 KiB or more; no file if there are none).
    Returns the files written.

    The data file is named ``PATH.HASH.data``, ``HASH`` from its contents, and the ``.onnx``
    file names it. The data file is renamed into place first and the ``.onnx`` file last, so
    whenever a write stops (an exception, a crash, ``kill -9``) the ``.onnx`` file on disk is
    either the old one, still reading its own old data file, or the new one with the new data,
    never a mix. Once the new ``.onnx`` file is in place, the data files of earlier exports to
    ``PATH`` (``PATH.*.data``, and ``PATH.data`` of earlier versions) are removed. An exception
    removes every temporary and the new data file; what a killed export leaves (named as
    :mod:`nndsl.fsutil` names temporaries) is removed by the next export to ``PATH``.
    ``model`` is left as it was, and its weights are not copied but one tensor at a time.
    """
    path = Path(path)
    threshold = EXTERNAL_DATA_THRESHOLD if external_threshold is None else external_threshold
    size = sum(t.ByteSize() for t in _initializers(model.graph))
    external = size > threshold
    if not external and size > PROTOBUF_LIMIT:
        raise LoweringError(f"the weights ({size:,} bytes) do not fit in one .onnx file: "
                            f"protobuf files hold under 2 GiB", code="E0909",
                            hint="save them as external data: lower --external-data-threshold "
                                 "(by default weights over 1 GiB go to a .data file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(21, "it is a folder", str(path))
    folder = path.parent
    clean_stale_temps(path)
    _clean_legacy_temp_dirs(path)
    temps: list[Path] = []
    data_path = None
    placed = None     # the new data file, once renamed into place (removed if the .onnx is not)
    try:
        if external:
            fd, data_tmp = create_temp(path, "data")
            temps.append(data_tmp)
            light, digest = _split_weights(model, fd)
            if digest is not None:
                data_path = folder / f"{path.name}.{digest}.data"
                for t in light.graph.initializer:
                    for entry in t.external_data:
                        if entry.key == "location":
                            entry.value = data_path.name
            proto = light.SerializeToString()
            del light
        else:
            proto = model.SerializeToString()
        fd, onnx_tmp = create_temp(path)
        temps.append(onnx_tmp)
        write_fd(fd, [proto])
        del proto
        if data_path is not None:
            existed = data_path.exists()     # the same weights as the file on disk: same name
            os.replace(data_tmp, data_path)
            placed = None if existed else data_path
        os.replace(onnx_tmp, path)           # the commit point: the new pair is in place
        placed = None
        fsync_dir(folder)
    except BaseException:
        for tmp in temps:
            remove_quietly(tmp)
        if placed is not None:
            remove_quietly(placed)
        raise
    for tmp in temps:                        # (an empty data file, when nothing was moved)
        remove_quietly(tmp)
    _remove_old_data(path, keep=data_path)
    return [path] if data_path is None else [path, data_path]


def _initializers(graph):
    """The initializers of ``graph`` and of the graphs inside its nodes (``Loop`` bodies)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _initializers(attr.g)
            for g in attr.graphs:
                yield from _initializers(g)


def _copy_fields(src, dst, skip: str) -> None:
    """Every field of the message ``src`` but ``skip``, into ``dst``."""
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def _split_weights(model: onnx.ModelProto, fd: int):
    """``(light model, content hash or None)``: the model without the bytes of its graph's
    tensors of 1 KiB or more, which are written to ``fd`` one after another (the light model's
    tensors point into the file, under a location to fill in); None when none was moved.
    Initializers of subgraphs (``Loop`` bodies) stay inside the model."""
    light = onnx.ModelProto()
    _copy_fields(model, light, "graph")
    _copy_fields(model.graph, light.graph, "initializer")
    h = hashlib.sha256()
    state = {"offset": 0}

    def chunks():
        for t in model.graph.initializer:
            raw = t.raw_data                 # (a copy: one tensor at a time)
            out = light.graph.initializer.add()
            _copy_fields(t, out, "raw_data")
            if len(raw) < EXTERNAL_TENSOR_MIN:
                out.raw_data = raw
                continue
            h.update(t.name.encode() + b"\0" + len(raw).to_bytes(8, "little"))
            h.update(raw)
            out.data_location = onnx.TensorProto.EXTERNAL
            del out.external_data[:]
            for key, value in (("location", ""), ("offset", str(state["offset"])),
                               ("length", str(len(raw)))):
                entry = out.external_data.add()
                entry.key, entry.value = key, value
            state["offset"] += len(raw)
            yield raw

    write_fd(fd, chunks())
    return light, (h.hexdigest()[:16] if state["offset"] else None)


def _remove_old_data(path: Path, keep: Path | None) -> None:
    """The data files of earlier exports to ``path``, which no file reads any more."""
    def old(name: str) -> bool:
        m = _DATA_NAME.fullmatch(name)
        ours = m is not None and m.group(1) == path.name or name == path.name + ".data"
        return ours and (keep is None or name != keep.name)
    remove_files(path.parent, old)


def _clean_legacy_temp_dirs(path: Path) -> None:
    """Temporary folders ``.NAME.XXXXXXXX/`` that killed exports of earlier versions left,
    holding nothing but ``NAME`` and ``NAME.data``."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = _LEGACY_TEMP_DIR.fullmatch(entry.name)
        if not (m and m.group(1) == path.name and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            inside = list(os.scandir(entry.path))
            if all(e.name in (path.name, path.name + ".data") and
                   e.is_file(follow_symlinks=False) for e in inside):
                for e in inside:
                    os.unlink(e.path)
                os.rmdir(entry.path)
        except OSError:
            pass
