"""``nndsl import``: an ONNX model as a readable ``.nn`` spec and its weights.

The spec is the product. An import reads the file (:mod:`.reader`: parsed, confined, checked,
converted to the table's opset, shapes inferred), turns its graph into statements
(:mod:`.convert`, with the per-op table :mod:`.ops`), prints them as ``.nn`` text
(:mod:`.printer`), and compiles that text through the ordinary pipeline, so the model a user
gets from ``nndsl import`` is exactly the one any spec compiles to; the weights are keyed by the
spec's parameter names (:mod:`.weights`) and checked against the compiled spec before anything
is written.

``import_onnx(path_or_bytes_or_proto)`` returns an :class:`Imported`: ``text`` (the spec),
``weights`` (NumPy arrays by parameter name), ``compile(**options)`` (a ``Compiled`` carrying the
weights), ``save(spec_path, weights_path)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nndsl.importer.reader import ImportFailure, read_model

__all__ = ["Imported", "ImportFailure", "import_onnx"]


@dataclass
class Imported:
    text: str                       # the .nn spec
    weights: dict                   # parameter name -> np.ndarray, in the spec's names
    name: str                       # the model's name in the spec
    source: str                     # where it came from (the path, or <bytes>)
    opset: int = 0                  # the file's opset, before conversion
    onnx_nodes: int = 0             # nodes of the file's graph
    input_names: list = field(default_factory=list)   # the file's input names, in order

    @property
    def lines(self) -> int:
        return self.text.count("\n")

    def state(self) -> dict:
        from nndsl.importer.weights import as_torch
        return as_torch(self.weights)

    def compile(self, **options):
        """The spec compiled (``nndsl.compile(source=text, weights=..., **options)``)."""
        from nndsl.api import compile_source
        options.setdefault("weights", self.state())
        return compile_source(self.text, **options)

    def save(self, spec: str | Path, weights: str | Path | None = None) -> list:
        """Write the spec and (when the model has weights) the weights, each atomically; the
        paths written."""
        from nndsl.fsutil import atomic_write_text
        from nndsl.importer.weights import write
        spec = Path(spec)
        written = []
        if self.weights:
            weights = Path(weights) if weights is not None else spec.with_suffix(".safetensors")
            write(weights, self.weights)
            written.append(weights)
        atomic_write_text(spec, self.text)
        return [spec] + written


def import_onnx(src, *, name: str | None = None, check: bool = True,
                blocks: bool = True) -> Imported:
    """Import an ONNX model (a path, its bytes or an ``onnx.ModelProto``) as a spec.

    ``name`` is the model's name in the spec (default: the graph's). With ``check`` (the
    default) the spec is compiled and its parameters matched against the weights before it is
    returned, so what comes back always compiles. With ``blocks`` (the default) repeated
    module instances are written as one block applied per instance (:mod:`.blocks`); where the
    folded text does not check, the flat one is returned."""
    import dataclasses
    from nndsl.importer.blocks import fold_blocks
    from nndsl.importer.convert import convert
    from nndsl.importer.printer import print_program
    model, label, opset, nodes = read_model(src)
    prog = convert(model, label, name)
    prog.header = [f"# imported from {Path(label).name} by nndsl import"]
    flat = (prog.stmts, prog.outputs, prog.weights)

    def make() -> Imported:
        return Imported(print_program(prog), prog.weights, prog.name, label, opset=opset,
                        onnx_nodes=nodes, input_names=list(prog.onnx_inputs))

    imported = make()
    if blocks:
        prog.stmts = [dataclasses.replace(s, targets=list(s.targets), reads=list(s.reads))
                      for s in flat[0]]
        try:
            if fold_blocks(prog):
                folded = make()
                if folded.lines < imported.lines:     # only where it is shorter
                    if check:
                        _check(folded)
                    return folded
        except Exception:   # noqa: BLE001 - folding is an improvement: the flat text stands
            pass
        prog.stmts, prog.outputs, prog.weights = flat
        prog.defs = []
    if check:
        _check(imported)
    return imported


def _check(imported: Imported) -> None:
    """The spec compiles, and its parameters are the weights' names, shapes and dtypes."""
    from nndsl.errors import NndslError
    from nndsl.api import compile_source
    from nndsl.ir.weights import match_weights
    try:
        c = compile_source(imported.text, opt="O0")
        match_weights(c.graph, imported.state())
    except NndslError as e:
        raise ImportFailure(f"{imported.source}: the spec written for it does not compile: "
                            f"{e.message}", code="E1690",
                            hint="an inconsistent file (onnx.checker does not compare shapes), "
                                 "or a bug in nndsl import: report it with the model") from None
