"""Reading an ONNX file for import: parsed, confined, checked, converted and shape-inferred.

``read_model(src)`` takes a path, the file's bytes or an ``onnx.ModelProto`` and returns a
model ready for :mod:`nndsl.importer.convert`:

1. the bytes are parsed as a protobuf ``ModelProto`` (nothing in the file is executed: ONNX is
   data, and custom operator domains are refused before anything reads them);
2. tensors stored as external data are read only from regular files inside the model's own
   folder (after resolving links), within each file's size;
3. the opset of the default domain is checked (7 through the newest the installed onnx package
   defines), ``onnx.checker`` validates the graph, models older than :data:`TABLE_OPSET` are
   converted to it with onnx's version converter, so the op table reads one version of every
   operator, and shapes are inferred (``data_prop``, so shape arithmetic folds).

Every failure is an :class:`ImportFailure` naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nndsl.errors import NndslError

MIN_OPSET = 7
TABLE_OPSET = 21            # the version of each operator the op table reads (export's opset)
MAX_BYTES = 2 ** 31         # protobuf's own limit on one message
DEFAULT_DOMAINS = ("", "ai.onnx")


class ImportFailure(NndslError):
    """An ONNX file that cannot be imported (codes E1601-E1699)."""


def newest_opset() -> int:
    import onnx.defs
    return onnx.defs.onnx_opset_version()


def read_model(src, name: str | None = None):
    """The checked, converted and shape-inferred ``ModelProto`` of ``src``, the name it is
    reported under, and the file's own opset and node count."""
    import onnx
    folder = None
    if isinstance(src, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(src)
        label = name or "<model>"
    elif isinstance(src, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        model = _parse(bytes(src), label)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        label = name or str(path)
        model = _parse(_read_file(path, label), label)
        folder = Path(os.path.realpath(path)).parent
    else:
        raise ImportFailure(f"import_onnx takes a path, bytes or an onnx.ModelProto, not "
                            f"{type(src).__name__}", code="E1601")
    _check_domains(model, label)
    _load_external(model, folder, label)
    opset, nodes = _opset(model), len(model.graph.node)
    big, added = _set_aside(model)
    _check(model, label)
    model = _convert(model, label)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds
        raise ImportFailure(f"{label}: ONNX shape inference failed: {_first_line(e)}",
                            code="E1606", hint="check the model with onnx.checker and "
                                               "onnx.shape_inference first") from None
    _put_back(model, big, added)
    return model, label, opset, nodes


BIG = 4096      # initializers of more elements are weights: set aside while the graph is checked


def _set_aside(model):
    """The large float initializers taken out of ``model``, each replaced by a graph input of
    its type (all that the checker, the version converter and shape inference read of a
    weight), so that those do not copy the weights over and over: ``{name: tensor}`` and the
    names of the inputs added for them."""
    from onnx import helper
    g = model.graph
    inputs = {vi.name for vi in g.input}
    big = {t.name: t for t in g.initializer
           if t.data_type in _FLOAT_TYPES and _numel(t.dims) > BIG}
    if not big:
        return {}, []
    added = []
    for name, t in big.items():
        if name not in inputs:
            g.input.append(helper.make_tensor_value_info(name, t.data_type, t.dims))
            added.append(name)
    big = {name: _copy(t) for name, t in big.items()}
    rest = [_copy(t) for t in g.initializer if t.name not in big]
    del g.initializer[:]
    g.initializer.extend(rest)
    return big, added


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _copy(t):
    import onnx
    c = onnx.TensorProto()
    c.CopyFrom(t)
    return c


def _put_back(model, big: dict, added: list) -> None:
    g = model.graph
    if added:
        names = set(added)
        keep = [vi for vi in g.input if vi.name not in names]
        del g.input[:]
        g.input.extend(keep)
    g.initializer.extend(big.values())


_FLOAT_TYPES = (1, 10, 11, 16)      # float, float16, double, bfloat16


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _read_file(path: Path, label: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError as e:
        raise ImportFailure(f"cannot read {label}: {e.strerror}", code="E1601",
                            hint="give the path of an .onnx file") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImportFailure(f"{label} is not a regular file", code="E1601",
                            hint="give the path of an .onnx file")
    if st.st_size > MAX_BYTES:
        raise ImportFailure(f"{label} is {st.st_size:,} bytes, more than an ONNX model (one "
                            f"protobuf message) can be", code="E1601",
                            hint="large weights belong in external data files")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ImportFailure(f"cannot read {label}: {e.strerror}", code="E1601") from None


def _parse(data: bytes, label: str):
    import onnx
    from google.protobuf.message import DecodeError
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ImportFailure(f"{label} is not an ONNX model (it does not parse as one: "
                            f"{_first_line(e)})", code="E1601",
                            hint="a truncated download or another kind of file? re-export it "
                                 "with torch.onnx.export or onnx.save") from None
    if not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise ImportFailure(f"{label} is not an ONNX model: it has no graph, no nodes or no "
                            f"opset", code="E1601",
                            hint="a truncated download or another kind of file?")
    return model


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


def _all_nodes(graph):
    """Every node of a graph and of the subgraphs its attributes hold (If, Loop, Scan bodies)."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _all_nodes(g)


def _check_domains(model, label: str) -> None:
    from collections import Counter
    opset = _opset(model)
    newest = newest_opset()
    if opset == 0:
        raise ImportFailure(f"{label} imports no version of the default ONNX domain",
                            code="E1604", hint="the model's opset_import needs a version of "
                                               "domain \"\" (ai.onnx)")
    if opset > newest:
        raise ImportFailure(f"{label} uses opset {opset}, newer than {newest}, the newest the "
                            f"installed onnx package defines", code="E1604",
                            hint="upgrade the onnx package, or export with an older opset")
    if opset < MIN_OPSET:
        raise ImportFailure(f"{label} uses opset {opset}; nndsl imports opsets {MIN_OPSET} "
                            f"through {newest}", code="E1604",
                            hint="convert it first: onnx.version_converter.convert_version("
                                 f"model, {TABLE_OPSET})")
    custom = Counter(f"{n.domain}::{n.op_type}" for n in _all_nodes(model.graph)
                     if n.domain not in DEFAULT_DOMAINS)
    if custom:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(custom.items()))
        raise ImportFailure(f"{label} uses operators of custom domains, which nndsl does not "
                            f"know: {listed}", code="E1605",
                            hint="export with standard ONNX operators only (no custom or "
                                 "contrib ops)")
    if model.functions:
        raise ImportFailure(f"{label} defines local functions "
                            f"({', '.join(sorted(f.name for f in model.functions))})",
                            code="E1605", hint="inline them first: onnx.inliner.inline_local_"
                                               "functions(model)")


def _tensors(graph):
    """Every TensorProto of a graph: initializers, Constant values, subgraphs'."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _tensors(g)


def _load_external(model, folder: Path | None, label: str) -> None:
    """Fill tensors stored as external data from files inside the model's folder only."""
    import onnx
    external = [t for t in _tensors(model.graph)
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return
    if folder is None:
        raise ImportFailure(f"{label} keeps tensors in external data files, and was not read "
                            f"from a file, so there is no folder to read them from",
                            code="E1603", hint="give the model's path instead of its bytes")
    sizes: dict = {}
    for t in external:
        info = {e.key: e.value for e in t.external_data}
        where = info.get("location", "")
        p = Path(where)
        real = Path(os.path.realpath(folder / p))
        if not where or p.is_absolute() or not real.is_relative_to(folder):
            raise ImportFailure(f"{label}: tensor `{t.name}` names external data "
                                f"`{where}`, outside the model's folder {folder}",
                                code="E1603", hint="external data files must lie in the "
                                                   "model's own folder (or below it)")
        try:
            st = os.stat(real)
        except OSError as e:
            raise ImportFailure(f"{label}: tensor `{t.name}`'s external data `{where}` cannot "
                                f"be read: {e.strerror}", code="E1603",
                                hint="keep the data file next to the model") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImportFailure(f"{label}: tensor `{t.name}`'s external data `{where}` is not "
                                f"a regular file", code="E1603")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise ImportFailure(f"{label}: tensor `{t.name}` has a bad external data offset "
                                f"or length", code="E1603") from None
        end = st.st_size if length < 0 else offset + length
        if offset < 0 or end > st.st_size:
            raise ImportFailure(f"{label}: tensor `{t.name}` reads bytes {offset}..{end} of "
                                f"`{where}`, which has {st.st_size}", code="E1603",
                                hint="the data file is truncated or belongs to another model")
        sizes[t.name] = (real, offset, end)
    for t in external:
        real, offset, end = sizes[t.name]
        with open(real, "rb") as f:
            f.seek(offset)
            t.raw_data = f.read(end - offset)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def _check(model, label: str) -> None:
    import onnx
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, Exception) as e:  # noqa: BLE001
        raise ImportFailure(f"{label} is not a valid ONNX model: {_first_line(e)}",
                            code="E1602", hint="onnx.checker.check_model(model) says why; "
                                               "re-export it") from None


def _convert(model, label: str):
    """Models older than the table's opset, converted to it (newer ones are read as they are:
    the operators the table knows did not change their attributes after it)."""
    from onnx import version_converter
    opset = _opset(model)
    if opset >= TABLE_OPSET:
        return model
    try:
        out = version_converter.convert_version(model, TABLE_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises RuntimeError and others
        raise ImportFailure(f"{label}: onnx's version converter could not bring opset {opset} "
                            f"to {TABLE_OPSET}: {_first_line(e)}", code="E1604",
                            hint="export the model with a newer opset") from None
    return out
