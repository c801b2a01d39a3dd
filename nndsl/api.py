"""The Python API: ``nndsl.compile(...)`` and the :class:`Compiled` model it returns."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nndsl.elab import Elaborator, load_program
from nndsl.errors import ArgumentError, DefinitionError, ParseError
from nndsl.ir.graph import Graph
from nndsl.ir.ops import SIGNATURES
from nndsl.ir.ops import flops as op_flops
from nndsl.ir.printer import print_graph
from nndsl.ir.symbols import bind_symbols, concrete_range, symbols
from nndsl.ir.types import SymDim, TensorType, evaluate_dim
from nndsl.passes import run_pipeline
from nndsl.limits import DEFAULT, QUIET, Limits, Progress
from nndsl.syntax import read_source


def is_path(spec: str | Path) -> bool:
    """How a spec given without saying what it is (``compile(spec)``) is read: a
    :class:`pathlib.Path` (or other ``os.PathLike``) is a path; a ``str`` is a path when it is one
    line ending in ``.nn``, and source text otherwise. Nothing is looked up on disk to decide;
    ``path=`` and ``source=`` say it explicitly."""
    if isinstance(spec, os.PathLike):
        return True
    return "\n" not in spec and spec.endswith(".nn")


def _spec_args(spec, path, source) -> tuple[Path | None, str | None]:
    given = [x is not None for x in (spec, path, source)]
    if sum(given) != 1:
        raise ArgumentError("give a spec as one of: a path (compile(path) or path=...) or its "
                            "text (source=...)", code="E0265",
                            hint="nndsl.compile(\"net.nn\") or nndsl.compile(source=\"model m() "
                                 "{ ... }\")")
    if spec is not None:
        if not isinstance(spec, (str, os.PathLike)):
            raise ArgumentError(f"a spec is a path or source text, not {type(spec).__name__}",
                                code="E0265")
        return (Path(spec), None) if is_path(spec) else (None, spec)
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentError(f"path= is a file path, not {type(path).__name__}", code="E0265")
        return Path(path), None
    if not isinstance(source, str):
        raise ArgumentError(f"source= is the spec's text (a str), not {type(source).__name__}",
                            code="E0265")
    return None, source


def load(spec: str | Path | None = None, *, path: str | Path | None = None,
         source: str | None = None, lib=(), base: str | Path | None = None,
         name: str | Path | None = None):
    """The parsed program of a spec and its file name: ``path`` names a ``.nn`` file, ``source``
    is the text itself (its imports resolve in ``base``, default the working folder), and a
    positional ``spec`` is either, as :func:`is_path` decides. ``lib`` lists further folders
    imports may read from. ``name`` gives source text the file it stands for (an editor's
    unsaved buffer): it is read as if it were that file, imports and messages included."""
    file_path, text = _spec_args(spec, path, source)
    if file_path is not None:
        file = str(file_path)
        return load_program(read_source(file_path, name=file), file, lib=lib), file
    if name is not None:
        return load_program(text, str(name), lib=lib), str(name)
    try:
        return load_program(text, "<string>", lib=lib, base=base), "<string>"
    except ParseError as e:
        if spec is not None and "\n" not in text and "{" not in text:
            # one line that is no spec: most likely a path that does not end in `.nn`
            e.hint = (f"to read a file, give it as a path: nndsl.compile(path={text!r}); "
                      "spec files end in `.nn`")
        raise


def compile_source(source: str, **options) -> "Compiled":
    """Compile a spec's text: :func:`compile` with ``source=``."""
    return compile(source=source, **options)


def compile(spec: str | Path | None = None, *, path: str | Path | None = None,
            source: str | None = None, lib=(), base: str | Path | None = None,
            name: str | Path | None = None, model: str | None = None, params: dict | None = None,
            opt: str = "O1", disable: tuple = (), after: str | None = None,
            quantize: str | None = None, group: int | None = None, prune: str | None = None,
            keep: tuple = (), prune_scopes: tuple | None = None, prune_exclude: tuple = (),
            qat: str | None = None, calibrate=None, observer: str | None = None,
            calibrate_samples: int = 256, weights=None,
            optimize_section: bool = True, limits: Limits | None = None,
            progress: Progress | None = None) -> "Compiled":
    """Compile a ``.nn`` spec to a :class:`Compiled` model.

    The spec is a file, ``path=`` (a ``str`` or :class:`pathlib.Path`), or its text,
    ``source=`` (:func:`compile_source`); given positionally, a ``Path`` is a path and a ``str``
    is a path when it is one line ending in ``.nn`` (:func:`is_path`), else source text.
    ``import "FILE.nn"`` reads files inside the spec's folder (``base`` for source text, default
    the working folder) and the folders ``lib`` lists (docs/LANGUAGE.md, "Imports and files").
    ``name`` compiles source text as the file it names (:func:`load`).

    ``model`` picks one model of a file that defines several; ``params`` overrides the model's
    parameters (in a file of several models, values for the others are kept for them: a GAN's
    recipe builds its discriminator with those it declares); ``opt`` is the optimization level
    (``O0``, ``O1``, ``O2``); ``disable`` names passes to skip and ``after`` stops the pipeline
    after that pass.

    Compression: ``quantize`` is a scheme (``int8-dynamic``, ``int8-weight``, ``int4-weight``,
    ``f16``, ``bf16``) with ``group`` columns per scale for the weight-only ones; ``prune`` is
    ``magnitude=S``, ``global=S``, ``2:4``, ``channels=S`` or ``heads=S``; ``keep`` lists scopes
    left in float;
    ``prune_scopes`` limits pruning to some scopes and ``prune_exclude`` spares some. The
    spec's ``optimize`` section gives the defaults of these options (``optimize_section=False``
    ignores it, as ``nndsl train`` does). ``qat`` (``int8``,
    ``int4``) adds quantization noise to the weights for quantization-aware training.
    ``int8-static`` calibrates on ``calibrate`` (a built-in data set such as ``"digits"``, or a
    data path as ``train`` takes), ``calibrate_samples`` samples of it, reading ranges with
    ``observer`` (``minmax``, ``moving_average``, ``percentile``).
    ``weights`` (a state dict or ``.safetensors`` path in the spec's names) are the values
    channel pruning ranks channels by, and the default weights of ``to_torch``/``to_onnx``.
    """
    program, file = load(spec, path=path, source=source, lib=lib, base=base, name=name)
    models = program.models
    if not models:
        raise DefinitionError(f"{file} defines no model", code="E0510",
                              hint="add `model NAME() { ... }`; blocks alone cannot be compiled")
    if model is None:
        if len(models) > 1:
            raise DefinitionError(f"{file} defines several models: {', '.join(models)}",
                                  code="E0511", hint="pick one with model=NAME (CLI: --model)")
        model = models[0]
    elif model not in models:
        raise DefinitionError(f"{file} has no model `{model}`", code="E0512",
                              hint="its models: " + ", ".join(models))
    seen_sections: dict = {}
    for o in program.main.optimizes:
        if o.model in seen_sections:
            raise DefinitionError(f"`optimize {o.model}` is written twice", span=o.span,
                                  code="E0514", notes=[("first here", seen_sections[o.model])],
                                  hint="put every option of a model in one optimize section")
        seen_sections[o.model] = o.span
        if o.model not in models:
            raise DefinitionError(f"`optimize {o.model}`: the file has no model `{o.model}`",
                                  span=o.name_span or o.span, code="E0512",
                                  hint="its models: " + ", ".join(models))
    from nndsl.elab.space import check_sections
    check_sections(program.main, models)   # `search` sections: their models and limits
    if limits is not None and not isinstance(limits, Limits):
        raise ArgumentError(f"limits= is an nndsl.limits.Limits, not {type(limits).__name__}",
                            code="E0265", hint="nndsl.compile(..., limits=Limits(max_nodes=500_000))")
    progress = progress if progress is not None else QUIET
    elaborator = Elaborator(program, limits, progress)
    graph = elaborator.elaborate(model, program.params_for(model, params or {}) or None)
    warnings = _train_reads(elaborator.warnings, program.train_section(model))
    given = {"quantize": quantize, "group": group, "prune": prune, "keep": tuple(keep),
             "prune_scopes": prune_scopes, "prune_exclude": tuple(prune_exclude), "qat": qat,
             "calibrate": calibrate, "observer": observer}
    section = program.optimize_section(model) if optimize_section else None
    compression = _compression(section, given, graph)
    if weights is not None:
        _check_weights(graph, weights)
    run = run_pipeline(graph, opt, tuple(disable), stop_after=after,
                       on_pass=lambda rec: progress.phase(f"pass {rec.name}"),
                       before=compression.before(lambda: _spec_arrays(graph, weights)),
                       after=compression.after(lambda: _spec_arrays(graph, weights)))
    if compression.calibrate is not None:
        stats = _calibrate(run.graph, weights, compression, calibrate_samples,
                           Path(file).parent if file != "<string>" else Path(base or "."))
        static = run_pipeline(run.graph, "O0", after=compression.static(stats))
        run.records += static.records
        run.graph = static.graph
    c = Compiled(run.graph, file, opt, run.records, graph)
    c.compression = compression
    c.weights = weights
    c.source = file if file != "<string>" else (source if source is not None else spec)
    c.overrides = dict(params or {})
    c.warnings = warnings
    section = program.train_section(model)
    if section is not None:   # a mistake in the model's train section is a compile-time error
        from nndsl.train.config import resolve
        resolve(c, section)
        c.train_section = section
    for listener in list(_LISTENERS):
        listener(c)
    return c


# Called with every Compiled that compile() returns (the command line prints the warnings of
# the models `nndsl train` compiles, for instance). See :func:`on_compile`.
_LISTENERS: list = []


class on_compile:
    """``with on_compile(fn): ...`` calls ``fn(compiled)`` for every model compiled inside."""

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        _LISTENERS.append(self.fn)
        return self

    def __exit__(self, *exc):
        _LISTENERS.remove(self.fn)
        return False


def _train_reads(warnings: list, section) -> list:
    """The model's warnings, less the model parameters its train section reads (a target's
    type, `target label: i64[N, classes]`, may be the only place a parameter is used)."""
    if section is None:
        return list(warnings)
    from nndsl.elab.elaborate import _names_in
    read = {n.id for node in (*section.targets, *section.entries) for n in _names_in(node)}
    return [w for w in warnings if not (w.code == "W0301" and w.subject in read)]


def _compression(section, given: dict, graph: Graph):
    """The compression asked for: the ``optimize`` section's entries, overridden by the options
    given. A mistake in an entry is reported at the entry."""
    from nndsl.errors import NndslError
    from nndsl.passes.compress import Compression
    from nndsl.passes.quantize import check_scopes
    options, spans = {}, {}
    if section is not None:
        from nndsl.elab.optimize import section_options
        options, spans = section_options(section)
    for k, v in given.items():
        if v not in (None, ()):
            options[k] = v
            spans.pop(k, None)
    key = None
    try:
        for key, what in (("keep", "keep"), ("prune_scopes", "prune_only"),
                          ("prune_exclude", "prune_exclude")):
            if options.get(key):
                check_scopes(graph, options[key], what)
        for key in ("quantize", "prune", "qat"):
            Compression.check_entry(key, options.get(key))
        key = "observer"
        if options.get("observer") is not None:
            from nndsl.backends.torch.calibrate import OBSERVERS
            if options["observer"] not in OBSERVERS:
                raise ArgumentError(f"unknown observer `{options['observer']}`", code="E0237",
                                    hint="observers: " + ", ".join(OBSERVERS))
        key = next((k for k in ("calibrate", "group", "quantize", "qat") if k in spans), None)
        return Compression(**options)
    except NndslError as e:
        if e.span is None and key in spans:
            e.span = spans[key]
        raise


def _calibrate(graph: Graph, weights, compression, samples: int, base: Path) -> dict:
    """Calibration ranges of ``graph``'s values on the data ``compression.calibrate`` names."""
    import torch

    from nndsl.backends.torch.calibrate import calibrate
    from nndsl.ir.derive import derive_state
    from nndsl.train import data as data_mod
    name = compression.calibrate
    spec = {"path": str(name)} if data_mod.names_a_path(str(name)) else {"name": str(name)}
    inputs = {n: graph.node(n).type for n in graph.inputs}
    data = data_mod.load(spec, inputs, {}, 0, None, base=base,
                         ranges=dict(graph.meta.get("input_ranges", {})))
    idx = torch.arange(data.n)
    data_mod.standardize(data, idx)
    if not isinstance(samples, int) or samples < 1:
        raise ArgumentError(f"calibrate_samples must be a positive int, got {samples!r}",
                            code="E0237")
    take = idx[torch.linspace(0, data.n - 1, min(samples, data.n)).long()]
    batches = [{k: data.arrays[k][take[i:i + 32]] for k in inputs}
               for i in range(0, len(take), 32)]
    state = {k: torch.from_numpy(v) for k, v in
             derive_state(graph, _spec_arrays(graph, weights)).items()}
    return calibrate(graph, state, batches, compression.observer)


def _check_weights(graph: Graph, weights) -> None:
    from nndsl.backends.torch import read_weights
    from nndsl.ir.weights import match_weights
    match_weights(graph, read_weights(weights))


def _spec_arrays(graph: Graph, weights, seed: int = 0) -> dict:
    """The spec's weights as NumPy arrays: ``weights`` checked strictly, or the initial ones."""
    from nndsl.backends.torch import read_weights
    from nndsl.backends.torch.init import initial_state
    from nndsl.ir.weights import match_weights, spec_params
    state = initial_state(spec_params(graph), seed) if weights is None else \
        match_weights(graph, read_weights(weights))
    return {k: v.detach().cpu().contiguous().numpy() for k, v in state.items()}


@dataclass
class LayerRow:
    scope: str
    name: str
    op: str
    shape: str
    params: int
    flops: int


class Compiled:
    """A compiled model: the typed graph and everything derived from it."""

    train_section = None   # the model's `train` section (an AST node), if the spec has one
    source: str | Path = ""   # the spec's path, or its text when compiled from a string
    overrides: dict = {}   # the parameter values given to compile (params=...)
    compression = None     # the Compression asked for (quantize=, prune=, ...)
    weights = None         # the weights given to compile: the default of to_torch/to_onnx
    warnings: list = []    # NndslWarning: what the spec writes and nothing uses (code, span...)

    def __init__(self, graph: Graph, file: str, opt: str, passes: list | None = None,
                 unoptimized: Graph | None = None):
        self.graph = graph
        self.file = file
        self.opt = opt
        self.passes = list(passes or [])          # PassRecord per pass run, in order
        self.unoptimized = unoptimized or graph   # the elaborated graph, before any pass

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def input_names(self) -> list[str]:
        return list(self.graph.inputs)

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self.graph.outputs]

    @property
    def input_types(self) -> dict[str, TensorType]:
        return {n: self.graph.node(n).type for n in self.graph.inputs}

    @property
    def output_types(self) -> dict[str, TensorType]:
        return {n: self.graph.type_of(v) for n, v in self.graph.outputs}

    # ---- counting ----
    def param_count(self) -> int:
        """Unique trainable parameters of the spec (tied weights once, buffers excluded) — the
        same at every optimization level; after channel pruning, what is left of them."""
        from nndsl.ir.weights import spec_params
        pruned = self.graph.meta.get("pruned_channels") or {}
        return sum(_numel(n.type.with_shape(pruned.get(n.name, n.type.shape)))
                   for n in spec_params(self.graph) if n.attr["trainable"])

    def size_bytes(self) -> int:
        """Bytes the graph's parameters and buffers take as stored (int4: half a byte each)."""
        from nndsl.ir.types import BITS
        return sum((_numel(n.type) * BITS[n.type.dtype] + 7) // 8 for n in self.graph.params())

    def sparsity(self) -> float:
        """The fraction of zeros a mask-pruned graph's masks leave in its conv and linear
        weights (0.0 when nothing is masked)."""
        from nndsl.ir.derive import find
        total = masked = 0
        for n in self.graph.params():
            mask = find(n.attr.get("derive"), ("magnitude_mask", "n_m_mask"))
            if mask is not None:
                d = dict(mask[2])
                frac = d["sparsity"] if "sparsity" in d else 1 - d["n"] / d["m"]
                masked += frac * _numel(n.type)
                total += _numel(n.type)
        return masked / total if total else 0.0

    def graph_param_count(self) -> int:
        """Trainable parameter elements of the (optimized) graph itself: folding batch norms
        into convolutions, for example, makes it smaller than :meth:`param_count`."""
        return sum(_numel(n.type) for n in self.graph.params() if n.attr["trainable"])

    def buffer_count(self) -> int:
        return sum(_numel(n.type) for n in self.graph.params() if not n.attr["trainable"])

    def layers(self, batch: int = 1, **dims) -> list[LayerRow]:
        env = bind_symbols(self.graph, batch, **dims)
        g = self.graph
        counted: set[str] = set()
        rows = []
        for node in g:
            if node.op in ("input", "param", "scalar"):
                continue
            own = 0
            for v in node.inputs:
                if v is None:
                    continue
                p = g.node(v.node)
                if p.op == "dequantize":     # a quantized weight counts where it is used
                    p = g.node(p.inputs[0].node)
                if p.op == "param" and (p.attr["trainable"] or _quantized(p)) and \
                        p.name not in counted:
                    counted.add(p.name)
                    own += _numel(p.type)
            in_types = [g.type_of(v) if v is not None else None for v in node.inputs]
            f = op_flops(node.op, in_types, node.types, {**SIGNATURES[node.op].attrs, **node.attr})
            shape = ", ".join(str(t) for t in node.types)
            rows.append(LayerRow(node.scope, node.name, node.op, shape, own,
                                 int(evaluate_dim(f, env))))
        return rows

    def flops(self, batch: int = 1, **dims) -> int:
        return sum(r.flops for r in self.layers(batch, **dims))

    # ---- views ----
    def ir(self) -> str:
        return print_graph(self.graph)

    def summary(self, batch: int = 1, **dims) -> str:
        from nndsl.report import summary_table
        return summary_table(self, batch, **dims)

    def to_json(self) -> dict[str, Any]:
        def t(tt: TensorType) -> dict:
            return {"dtype": tt.dtype, "shape": [d if isinstance(d, int) else str(d)
                                                 for d in tt.shape]}
        rows = self.layers()
        return {
            "model": self.name,
            "file": self.file,
            "opt": self.opt,
            "params": self.param_count(),
            "buffers": self.buffer_count(),
            "flops": sum(r.flops for r in rows),
            "symbols": symbols(self.graph),
            "inputs": [{"name": n, **t(tt)} for n, tt in self.input_types.items()],
            "outputs": [{"name": n, **t(tt)} for n, tt in self.output_types.items()],
            "nodes": [{"name": r.name, "scope": r.scope, "op": r.op,
                       "act": self.graph.node(r.name).attr.get("act"), "types": [
                t(x) for x in self.graph.node(r.name).types], "params": r.params,
                "flops": r.flops} for r in rows],
            "parameters": [{"name": n.name, "shape": list(n.type.shape), "dtype": n.type.dtype,
                            "trainable": n.attr["trainable"]} for n in self.graph.params()],
            "size_bytes": self.size_bytes(),
            "compression": None if self.compression is None or self.compression.empty else {
                "quantize": self.compression.quantize, "group": self.compression.group,
                "prune": self.compression.prune, "keep": list(self.compression.keep),
                "sparsity": self.sparsity()},
        }

    # ---- backends ----
    def to_torch(self, weights=None, seed: int = 0):
        """A ``torch.nn.Module``; ``weights`` is a state dict or a ``.safetensors`` path in the
        spec's names (at O2 they are transformed along with the graph). O2 modules are for
        inference: they start in eval mode and refuse training mode."""
        import torch

        from nndsl.backends.torch import GraphModule
        weights = self.weights if weights is None else weights
        if not self._restructured():
            m = GraphModule(self.graph, seed=seed if weights is None else None)
            if weights is not None:
                m.load_weights(weights)
            return m
        state = {k: torch.from_numpy(v) for k, v in self._derived_arrays(weights, seed).items()}
        m = GraphModule(self.graph, seed=None)
        m.load_weights(state)
        return m

    def spec_state(self, weights=None, seed: int = 0) -> dict:
        """Weights in the spec's names: ``weights`` checked strictly, or the default initial
        values from ``seed``."""
        from nndsl.backends.torch import read_weights
        from nndsl.backends.torch.init import initial_state
        from nndsl.ir.weights import match_weights, spec_params
        if weights is None:
            return initial_state(spec_params(self.graph), seed)
        return match_weights(self.graph, read_weights(weights))

    def _restructured(self) -> bool:
        from nndsl.ir.derive import has_derived
        src = self.graph.meta.get("source_params")
        return has_derived(self.graph) or src is not None and \
            [n.name for n in src] != [n.name for n in self.graph.params()]

    def _derived_arrays(self, weights, seed: int) -> dict:
        from nndsl.ir.derive import derive_state
        return derive_state(self.graph, _spec_arrays(self.graph, weights, seed))

    def to_onnx(self, weights=None, seed: int = 0, int8: str = "u8u8"):
        """An ``onnx.ModelProto`` carrying ``weights`` (a state dict or a ``.safetensors`` path;
        the default initial weights when none are given), for inference. ``int8`` is how
        int8-dynamic's matrix products run in onnxruntime: ``u8u8`` (exact on every CPU) or
        ``u8s8`` (int8 weights: faster kernels, exact where the CPU has VNNI dot products;
        without VNNI, x86's AVX2 kernels can saturate)."""
        from nndsl import __version__
        from nndsl.backends.onnx import to_onnx
        weights = self.weights if weights is None else weights
        return to_onnx(self.graph, self._derived_arrays(weights, seed),
                       producer_version=__version__, int8=int8)

    def run(self, inputs: dict | None = None, *, backend: str = "torch", batch: int = 2,
            seed: int = 0, weights=None) -> dict:
        """The outputs by name (NumPy arrays) on ``inputs`` (NumPy arrays by input name; the
        example inputs of ``batch`` from ``seed`` when None), run by ``backend``: ``torch``,
        ``onnxruntime`` (the ONNX export, in memory) or ``auto`` (whichever a short
        alternating measurement finds faster; ``last_backend`` says which and by how much)."""
        from nndsl.runner import run_spec
        outputs, self.last_backend = run_spec(self, inputs or {}, batch, weights=weights,
                                              seed=seed, backend=backend)
        return outputs

    def example_inputs(self, batch: int = 2, seed: int = 0, **dims) -> dict:
        """Random valid inputs by name, from a generator seeded with ``seed``: random inputs
        from their declared distribution (``~ normal()``), other floats ~ N(0, 1), integer ids
        within their valid range."""
        import torch

        from nndsl.backends.torch.inputs import draw
        if not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0:
            raise ArgumentError(f"batch must be a positive int, got {batch!r}", code="E0223")
        env = bind_symbols(self.graph, batch, **dims)
        gen = torch.Generator().manual_seed(seed)
        ranges = self.graph.meta.get("input_ranges", {})
        dists = self.graph.meta.get("input_dists", {})
        limit = self.graph.meta.get("limits", DEFAULT).max_input_bytes
        return {name: draw([evaluate_dim(d, env) for d in tt.shape], tt.dtype, dists.get(name),
                           concrete_range(ranges.get(name), env), gen, name=name, limit=limit,
                           span=self._input_span(name))
                for name, tt in self.input_types.items()}

    def _input_span(self, name: str):
        try:
            return self.graph.node(name).span
        except KeyError:
            return None

    @property
    def random_inputs(self) -> dict:
        """The random inputs (``input eps: ... ~ normal()``): name -> distribution."""
        return dict(self.graph.meta.get("input_dists", {}))


def _quantized(p) -> bool:
    d = p.attr.get("derive")
    return bool(d) and d[0] == "quantize_weight"


def _numel(t: TensorType) -> int:
    n = 1
    for d in t.shape:
        if isinstance(d, SymDim):
            raise ArgumentError("a parameter with a symbolic shape", code="E0226")
        n *= d
    return n
