"""What every explanation and attack shares: the errors, the model's scores as a function of
its inputs, the samples (a data set's held-out split, or input files), and the names of the
values a method may target.

The *scores* of a model are the output a method explains, one row per sample:

- ``[N, C]``: the C class scores (``[N, 1]``: one score, a binary classifier's logit);
- ``[N]``: one value per sample (a regression);
- ``[N, T, C]``: the scores at the last position (a language model's next-token scores).

Other output shapes are refused (E1703): pick another output with ``--output``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import NndslError
from nndsl.ir.types import FLOAT_DTYPES


class ExplainError(NndslError):
    """A mistake in what ``nndsl explain`` or ``nndsl robust`` was asked to do."""

    code = "E1702"


def unknown_choice(kind: str, name: str, known, code: str = "E1702") -> ExplainError:
    import difflib
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    shown = name if len(name) <= 60 else name[:57] + "..."
    hint = (f"did you mean {', '.join(close)}? " if close else "") + \
        f"{kind}s: " + ", ".join(known)
    return ExplainError(f"unknown {kind} `{shown}`", code=code, hint=hint)


def does_not_fit(message: str, hint: str | None = None) -> ExplainError:
    return ExplainError(message, code="E1703", hint=hint)


def bad_option(message: str, hint: str | None = None) -> ExplainError:
    return ExplainError(message, code="E1704", hint=hint)


# ------------------------------------------------------------------ the model's scores

class Scores:
    """The model as ``f(*attributed inputs, *fixed inputs) -> scores [B, C]`` (or ``[B]``),
    the function captum's methods and the attacks call. ``hooks`` (value name -> function) are
    passed to the module's ``capture=`` on every call: a tap module there lets captum's layer
    methods see (and replace) that value."""

    def __init__(self, compiled, module, attributed: list, fixed: list, output: str | None = None,
                 hooks: dict | None = None, two_class: bool = False):
        self.module = module
        self.attributed, self.fixed = list(attributed), list(fixed)
        self.hooks = dict(hooks or {})
        self.two_class = two_class
        names = compiled.output_names
        if output is None:
            output = names[0]
        if output not in names:
            raise unknown_choice("output", output, names, code="E1704")
        self.output = output
        self.out_index = names.index(output)
        self.n_outputs = len(names)
        t = compiled.output_types[output]
        if t.dtype not in FLOAT_DTYPES or t.rank not in (1, 2, 3):
            raise does_not_fit(f"output `{output}` is {t}: explaining needs scores per sample, "
                               f"[N, C], [N] or [N, T, C]",
                               hint="pick another output with --output" if len(names) > 1
                               else None)
        self.kind = {1: "value", 2: "classes", 3: "sequence"}[t.rank]
        self.classes = t.shape[-1] if t.rank >= 2 and isinstance(t.shape[-1], int) else None

    def __call__(self, *xs):
        feeds = dict(zip(self.attributed + self.fixed, xs))
        if self.hooks:
            out, _ = self.module(**feeds, capture=self.hooks)
        else:
            out = self.module(**feeds)
        if self.n_outputs > 1:
            out = out[self.out_index]
        if self.kind == "sequence":
            out = out[:, -1, :]
        if self.two_class and out.dim() == 2 and out.shape[1] == 1:
            out = _two_class(out)
        return out.float()


def _two_class(z):
    """One logit ``z`` as two class scores with the same softmax: ``(0, z)``."""
    import torch
    return torch.cat([torch.zeros_like(z), z], dim=1)


def predictions(scores) -> "object":
    """Class predictions from scores ``[B, C]`` (``[B, 1]``: the sign of the logit)."""
    if scores.dim() == 2 and scores.shape[1] == 1:
        return (scores[:, 0] > 0).long()
    return scores.argmax(dim=1)


# ------------------------------------------------------------------ samples

@dataclass
class Samples:
    """The inputs to explain (name -> tensor, every model input), their labels (or None), and
    where they came from."""

    inputs: dict
    labels: object = None
    source: str = ""
    notes: list = field(default_factory=list)
    bounds: dict = field(default_factory=dict)   # float input -> (low, high) of the data set

    @property
    def n(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


def load_samples(compiled, *, data: str | None = None, input_files=(), samples: int = 16,
                 seed: int | None = None, base: Path | None = None,
                 labels_needed: bool = False) -> Samples:
    """The first ``samples`` samples of the held-out split of ``data`` (the test split when the
    train section makes one, else the validation split, else all samples), standardized as
    training standardized them; or the arrays of ``input_files`` (``NAME=FILE.npy``,
    ``FILE.npz``), checked against the model's inputs as ``nndsl run`` checks them."""
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise bad_option(f"--samples must be a positive int, got {samples!r}")
    if data is not None and input_files:
        raise bad_option("give --data or --input, not both")
    if input_files:
        return _from_files(compiled, list(input_files), samples, labels_needed)
    if data is None:
        raise ExplainError("nothing to explain: give --data NAME|PATH or --input NAME=FILE.npy",
                           code="E1705", hint="for example --data digits")
    import torch

    from nndsl.train import data as data_mod
    from nndsl.train.config import data_from_cli, resolve
    cfg = resolve(compiled, compiled.train_section, {"data": data})
    if seed is not None:
        cfg.seed = seed
    spec = cfg.data if cfg.data is not None else data_from_cli(data)
    where = base if base is not None else Path(cfg.base)
    inputs = dict(cfg.recipe_info.get("data_inputs", compiled.input_types))
    d = data_mod.load(spec, inputs, cfg.targets, cfg.seed, None, base=where,
                      ranges=dict(compiled.graph.meta.get("input_ranges", {})))
    splits = data_mod.split(d.n, cfg.val_split, cfg.test_split, cfg.seed)
    data_mod.standardize(d, splits.train)
    held = splits.test if len(splits.test) else splits.val if len(splits.val) else \
        torch.arange(d.n)
    which = "test" if len(splits.test) else "validation" if len(splits.val) else "all"
    idx = held[:samples]
    xs = {n: d.arrays[n][idx] for n in inputs}
    missing = [n for n in compiled.input_names if n not in xs and n not in
               compiled.random_inputs]
    if missing:
        raise does_not_fit(f"{d.source} gives {', '.join(xs)}, but the model also takes "
                           f"{', '.join(missing)}", hint="give every input with --input")
    bounds = {n: (float(d.arrays[n].min()), float(d.arrays[n].max())) for n in xs
              if d.arrays[n].is_floating_point()}
    labels = None
    if cfg.targets:
        tname = next(iter(cfg.targets))
        y = d.arrays[tname][idx]
        if y.dim() == 2 and y.shape[1] > 1:      # one-hot
            y = y.argmax(1)
        labels = y.reshape(-1).round().long() if y.is_floating_point() else y.reshape(-1).long()
    if labels_needed and labels is None:
        raise ExplainError(f"{d.source} has no labels for the model's output", code="E1705",
                           hint="give a data set with targets (a built-in set, or an .npz "
                                "with the train section's target arrays)")
    notes = list(d.notes) + [f"{len(idx)} samples of {d.source} ({which} split)"]
    return Samples(xs, labels, d.source, notes, bounds)


def _from_files(compiled, files: list, samples: int, labels_needed: bool) -> Samples:
    import numpy as np
    import torch

    from nndsl.errors import InputError
    from nndsl.ir.symbols import check_inputs
    from nndsl.runner import _check_dtype, load_inputs
    arrays = load_inputs(files)
    for name in arrays:
        if name not in compiled.input_names:
            raise InputError(f"the model has no input `{name}`; its inputs are "
                             f"{', '.join(compiled.input_names)}", code="E1101")
    missing = [n for n in compiled.input_names if n not in arrays and n not in
               compiled.random_inputs]
    if missing:
        raise InputError(f"missing input{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                         code="E1101", hint="give every input with --input NAME=FILE.npy")
    for name, t in compiled.input_types.items():
        if name in arrays:
            _check_dtype(name, arrays[name], t.dtype)
    check_inputs(compiled.graph, arrays)
    if labels_needed:
        raise ExplainError("input files carry no labels", code="E1705",
                           hint="give --data (a data set with targets)")
    xs = {n: torch.from_numpy(np.ascontiguousarray(a[:samples])) for n, a in arrays.items()}
    bounds = {n: (float(x.min()), float(x.max())) for n, x in xs.items()
              if x.is_floating_point() and x.numel()}
    return Samples(xs, None, ", ".join(files), [], bounds)


def split_inputs(compiled, layer: str | None = None) -> tuple[list, list]:
    """(inputs a method attributes to: the float ones; the others, held fixed)."""
    drawn = compiled.random_inputs     # `~ normal()` inputs: the module draws them per call
    floats = [n for n, t in compiled.input_types.items() if t.dtype in FLOAT_DTYPES
              and n not in drawn]
    fixed = [n for n in compiled.input_names if n not in floats and n not in drawn]
    return floats, fixed


# ------------------------------------------------------------------ value names

def node_names(compiled) -> list:
    return [n.name for n in compiled.graph if n.op not in ("input", "param")]


def find_node(compiled, name: str, what: str = "layer"):
    """The graph node named ``name`` (as ``nndsl inspect`` shows it); an unknown name is an
    error listing the close ones."""
    from nndsl.backends.torch.module import unknown_value_error
    names = node_names(compiled)
    if name in names:
        return compiled.graph.node(name)
    raise unknown_value_error(name, names, compiled.name, what=what)


def tap_module():
    """An identity ``nn.Module``: a value passed through it can be hooked like a layer's
    output (captum's layer methods hook modules)."""
    from torch import nn
    return nn.Identity()


def model_targets(target: str | None, samples: Samples, scores_fn, batch=None):
    """The class each sample's attribution explains: ``pred`` (default: the model's
    prediction), ``label`` (the data's label) or a class index."""
    import torch
    if scores_fn.kind == "value" or (scores_fn.classes == 1 and not scores_fn.two_class):
        if target not in (None, "pred", "0"):
            raise bad_option(f"--target {target}: output `{scores_fn.output}` has one score "
                             f"per sample, so there is no class to choose")
        return None
    if target in (None, "pred"):
        with torch.no_grad():
            s = scores_fn(*(batch if batch is not None else ()))
        return predictions(s) if not scores_fn.two_class else s.argmax(1)
    if target == "label":
        if samples.labels is None:
            raise ExplainError("--target label: the samples have no labels", code="E1705",
                               hint="use --data with a labelled data set, or --target pred")
        return samples.labels
    try:
        k = int(target)
    except ValueError:
        raise bad_option(f"--target takes pred, label or a class index, not `{target}`") \
            from None
    if scores_fn.classes is not None and not 0 <= k < scores_fn.classes:
        raise bad_option(f"--target {k}: output `{scores_fn.output}` has {scores_fn.classes} "
                         f"classes (0 to {scores_fn.classes - 1})")
    return torch.full((samples.n,), k, dtype=torch.long)


@dataclass
class Explanation:
    """What a method found: ``maps`` (name -> array: per input, per layer or per attention
    node, batch first), the class each sample's map explains (``targets``), the model's
    ``predictions``, and method-specific numbers in ``info`` (integrated gradients' largest
    completeness error, the metric permutation importance uses, ...)."""

    method: str
    maps: dict
    targets: object = None
    predictions: object = None
    labels: object = None
    info: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)     # the samples explained, by input name
    kinds: dict = field(default_factory=dict)      # map name -> image | table | tokens | ...
    feature_names: dict = field(default_factory=dict)
