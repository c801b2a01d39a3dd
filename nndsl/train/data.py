"""Training data: built-in data sets, the user's files, splits and batches.

Built-in sets load offline: scikit-learn's bundled ``digits``, ``iris``, ``breast_cancer``,
``wine`` and ``diabetes``; ``blobs`` (Gaussian clusters from scikit-learn's generator, sized to
the model's input) and ``sequences`` (a synthetic token-sequence task: is the first half of the
vocabulary in the majority?) are generated from the seed. Image sets are resized to the model's
declared input size, with a note saying so; tabular features are standardized with the training
split's statistics.

A path is an ``.npz`` archive (one array per model input and target, by name), an ``.npy``
array (the model's one input; no targets), a ``.csv`` file with a header row (columns named like
targets are targets, the others are the model's one input, in order), or a folder of images with
one subfolder per class (sorted names are class 0, 1, ...). Relative paths in a spec are relative
to the spec's folder.

Splits are a seeded permutation: test, then validation, then training samples. Each epoch
shuffles the training split with a generator seeded by (seed, epoch), so an epoch's batches do
not depend on anything that happened before it — which is what makes resuming exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import Span, TrainError
from nndsl.ir.types import FLOAT_DTYPES, TensorType
from nndsl.train.choices import Choice
from nndsl.train.paths import spec_path


@dataclass(frozen=True)
class BuiltinSet:
    name: str
    kind: str             # "image", "tabular", "sequence"
    features: int | None  # tabular: features per sample
    classes: int | None   # None: regression
    samples: int | None
    doc: str


BUILTINS: dict[str, BuiltinSet] = {b.name: b for b in [
    BuiltinSet("digits", "image", None, 10, 1797, "8x8 grayscale handwritten digits, 10 classes"),
    BuiltinSet("iris", "tabular", 4, 3, 150, "iris flowers: 4 measurements, 3 species"),
    BuiltinSet("breast_cancer", "tabular", 30, 2, 569, "Wisconsin breast cancer: 30 features, "
               "benign or malignant"),
    BuiltinSet("wine", "tabular", 13, 3, 178, "wine: 13 chemical measurements, 3 cultivars"),
    BuiltinSet("diabetes", "tabular", 10, None, 442, "diabetes progression: 10 features, "
               "a regression target"),
    BuiltinSet("blobs", "tabular", None, None, None, "Gaussian clusters sized to the model's "
               "input (scikit-learn's make_blobs)"),
    BuiltinSet("sequences", "sequence", None, 2, None, "synthetic token sequences: label 1 when "
               "most tokens come from the first half of the vocabulary"),
    BuiltinSet("graphs", "graph", None, 3, None, "synthetic graphs (node features and a dense "
               "adjacency matrix): class c has c + 1 communities"),
]}

MAX_SAMPLES = 2**31 - 1

# arguments of the generated sets (the bundled ones take none), with their valid ranges
DATASETS: dict[str, Choice] = {
    **{n: Choice(n, {}, b.doc) for n, b in BUILTINS.items() if b.samples is not None},
    "blobs": Choice("blobs", {"n": 1000, "classes": 3, "spread": 1.0}, BUILTINS["blobs"].doc,
                    ranges={"n": (1, MAX_SAMPLES), "classes": (1, 65536),
                            "spread": (0.0, 1e6, True)}),
    "sequences": Choice("sequences", {"n": 2000, "length": 20}, BUILTINS["sequences"].doc,
                        ranges={"n": (1, MAX_SAMPLES), "length": (1, 2**20)}),
    "graphs": Choice("graphs", {"n": 600, "classes": 3, "nodes": 16}, BUILTINS["graphs"].doc,
                     ranges={"n": (1, MAX_SAMPLES), "classes": (1, 1024), "nodes": (1, 4096)}),
}

SMALLER = {"blobs": "ask for fewer samples (n)",
           "sequences": "ask for fewer or shorter sequences (n, length)",
           "graphs": "ask for fewer or smaller graphs (n, nodes)"}

# how much data training holds in memory, at most: generated sets and files alike
DEFAULT_MAX_DATA_BYTES = 4 << 30
MAX_BYTES_ENV = "NNDSL_MAX_DATA_BYTES"


def max_data_bytes() -> int:
    import os
    text = os.environ.get(MAX_BYTES_ENV)
    if text is None or not text.strip():
        return DEFAULT_MAX_DATA_BYTES
    try:
        v = int(text.strip())
    except ValueError:
        v = 0
    if v < 1:
        raise TrainError(f"{MAX_BYTES_ENV}={text!r} is not a positive number of bytes",
                         code="E1229", hint=f"for example {MAX_BYTES_ENV}={8 << 30} for 8 GiB")
    return v


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.1f} MiB"


def check_size(nbytes: int, what: str, span: Span | None, hint: str | None = None) -> None:
    """Refuse to hold more than :func:`max_data_bytes` of data."""
    limit = max_data_bytes()
    if nbytes > limit:
        raise data_error(f"{what} would take {_gib(nbytes)} of memory, more than the limit of "
                         f"{_gib(limit)}", span,
                         (hint + "; or " if hint else "") + f"raise the limit with the "
                         f"environment variable {MAX_BYTES_ENV}=BYTES", code="E1229")


def generated_bytes(name: str, args: dict, inputs: dict) -> int:
    """The memory a generated set takes (its arrays and the largest intermediate)."""
    if name == "graphs":
        fa = graph_inputs(inputs)
        if fa is None:
            return 0
        ft = inputs[fa[0]]
        v = _static(ft.shape[1]) or int(args["nodes"])
        f = _static(ft.shape[2]) or 4
        return int(args["n"]) * (v * v * (4 + 4 + 1) + v * f * 4 + 8)
    if len(inputs) != 1:
        return 0
    itype = next(iter(inputs.values()))
    if name == "blobs":
        feats = _static(itype.shape[1]) if itype.rank == 2 else None
        return int(args["n"]) * ((feats or 1) * (8 + 4) + 8 + 8)
    if name == "sequences":
        t = _static(itype.shape[1]) if itype.rank == 2 else None
        return int(args["n"]) * ((t or int(args["length"])) * 8 * 2 + 16)
    return 0


def graph_inputs(inputs: dict):
    """The (features, adjacency) inputs of a graph model: [N, V, F] and [N, V, V] floats, or
    None when the inputs are not that."""
    floats = {n: t for n, t in inputs.items() if t.dtype in FLOAT_DTYPES and t.rank == 3}
    if len(inputs) != 2 or len(floats) != 2:
        return None
    adj = [n for n, t in floats.items() if t.shape[1] == t.shape[2]]
    names = list(floats)
    if len(adj) == 2:       # both square: the adjacency is the one whose name says so
        adj = [n for n in names if "adj" in n.lower()] or names[1:]
    if len(adj) != 1:
        return None
    feats = next(n for n in names if n != adj[0])
    return feats, adj[0]


def data_error(msg: str, span: Span | None, hint: str | None = None, code: str = "E1214"):
    return TrainError(msg, span=span, code=code, hint=hint)


def check_builtin(name: str, args: dict, inputs: dict, targets: dict, loss_info, types: dict,
                  span) -> None:
    """Compile-time checks of a built-in set against the model's input and the targets."""
    b = BUILTINS[name]
    if b.samples is None:
        check_size(generated_bytes(name, args, inputs), f"`{name}` with these sizes", span,
                   SMALLER[name])
    if b.kind == "graph":
        if graph_inputs(inputs) is None:
            raise data_error(f"`{name}` gives node features [N, V, F] and an adjacency matrix "
                             f"[N, V, V], but the model's inputs are "
                             + ", ".join(f"{n}: {t}" for n, t in inputs.items()), span,
                             "declare `input x: f32[N, V, F]` and `input adj: f32[N, V, V]`")
        for tname, ttype in targets.items():
            _check_target(name, args.get("classes", b.classes), tname, ttype, span)
        return
    if len(inputs) != 1:
        raise data_error(f"`{name}` gives one input, but the model has {len(inputs)}: "
                         f"{', '.join(inputs)}", span, "use an .npz file with one array per input")
    (iname, itype), = inputs.items()
    if b.kind == "tabular" and b.features is not None:
        ok = itype.rank == 2 and itype.shape[1] == b.features and itype.dtype in FLOAT_DTYPES
        if not ok:
            raise data_error(f"`{name}` has {b.features} features per sample, but the model's "
                             f"input `{iname}` is {itype}", span,
                             f"declare `input {iname}: f32[N, {b.features}]`")
    if b.kind == "image" and (itype.dtype not in FLOAT_DTYPES or itype.rank not in (2, 3, 4)):
        raise data_error(f"`{name}` holds images, but the model's input `{iname}` is {itype}",
                         span, f"declare `input {iname}: f32[N, 1, 28, 28]` (or [N, 64])")
    if b.kind == "image" and itype.rank == 2 and isinstance(itype.shape[1], int) and \
            math.isqrt(itype.shape[1]) ** 2 != itype.shape[1]:
        raise data_error(f"`{name}` holds square images, but the model's input `{iname}` is "
                         f"{itype}: {itype.shape[1]} is not a square number of pixels", span)
    if b.kind == "sequence" and (itype.dtype in FLOAT_DTYPES or itype.rank != 2):
        raise data_error(f"`{name}` gives token ids, but the model's input `{iname}` is {itype}",
                         span, f"declare `input {iname}: i64[N, T]`")
    if b.kind == "sequence" and isinstance(itype.shape[1], int) and \
            args.get("length", itype.shape[1]) not in (itype.shape[1],
                                                        DATASETS[name].kwargs["length"]):
        raise data_error(f"`{name}(length={args['length']})` does not fit the model's input "
                         f"`{iname}`: {itype}, {itype.shape[1]} tokens per sequence", span,
                         f"leave out `length` (it follows the input), or declare "
                         f"`input {iname}: {itype.dtype}[N, T]`")
    if len(targets) > 1:
        raise data_error(f"`{name}` gives one target, but the train section declares "
                         f"{len(targets)}: {', '.join(targets)}", span)
    classes = args.get("classes", b.classes) if name != "sequences" else 2
    for tname, ttype in targets.items():
        _check_target(name, classes, tname, ttype, span)
        if loss_info is None:
            continue
        for term in loss_info.terms:
            if term.fn in ("cross_entropy", "nll") and len(term.args) == 2 and \
                    term.args[1] == tname and classes:
                st = types.get(term.args[0])
                out_c = st.shape[-1 if st.rank >= 3 and _classes_last(st, ttype) else 1] \
                    if st is not None and st.rank >= 2 else None
                if isinstance(out_c, int) and out_c < classes:
                    raise data_error(f"`{name}` has {classes} classes, but `{term.args[0]}` "
                                     f"scores {out_c}", span,
                                     f"`{term.args[0]}` needs {classes} scores per sample")


def _classes_last(scores: TensorType, target: TensorType) -> bool:
    return tuple(target.shape) == tuple(scores.shape[:-1])


def _check_target(name, classes, tname, t: TensorType, span) -> None:
    if classes is None:   # regression: float [N] or [N, 1]
        if t.dtype in FLOAT_DTYPES and (t.rank == 1 or t.rank == 2 and t.shape[1] == 1):
            return
        raise data_error(f"`{name}` gives one regression value per sample, but target "
                         f"`{tname}` is {t}", span, f"declare `target {tname}: f32[N, 1]`")
    if t.dtype not in FLOAT_DTYPES and t.rank == 1:
        return
    if t.dtype in FLOAT_DTYPES and t.rank == 2 and t.shape[1] == classes:
        return   # one-hot
    if t.rank in (1, 2) and (t.rank == 1 or t.shape[1] == 1) and classes == 2:
        return   # binary, 0/1
    raise data_error(f"`{name}` gives class indices i64[N] ({classes} classes), but target "
                     f"`{tname}` is {t}", span, f"declare `target {tname}: i64[N]`")


# ------------------------------------------------------------------------- loading

@dataclass
class Data:
    """Every sample of every array, by name (model inputs and targets), on the CPU."""

    arrays: dict
    n: int
    notes: list = field(default_factory=list)
    source: str = ""
    standardize: tuple = ()     # names of inputs to standardize with training statistics
    locate: object = None       # (name, flat index) -> where that value is, for messages

    def where(self, name: str, flat: int) -> str:
        if self.locate is not None:
            return self.locate(name, flat)
        shape = tuple(self.arrays[name].shape)
        sample = flat // max(1, math.prod(shape[1:]))
        return f"`{self.source}`, `{name}` of sample {sample}"


def _static(d) -> int | None:
    return d if isinstance(d, int) else None


def names_a_path(text: str) -> bool:
    """Whether a data value (``--data``, ``--calibrate``, a train section's ``data``) names a
    file or folder rather than a built-in set: it holds a path separator or a dot."""
    return any(c in text for c in "/\\.")


def load(spec: dict, inputs: dict, targets: dict, seed: int, span: Span | None,
         base: Path | None = None, ranges: dict | None = None) -> Data:
    """Load the data named by ``spec`` (``{"name": ...}`` or ``{"path": ...}``) for a model
    with ``inputs`` and training ``targets`` (name -> TensorType); ``ranges`` are the valid
    id ranges of integer inputs (from the graph)."""
    if "path" in spec:
        p = spec_path(spec["path"], base, span, "data", "E1215", folder=True)
        return _load_path(p, inputs, targets, span)
    return _load_builtin(spec["name"], spec.get("args", {}), inputs, targets, seed, span,
                         ranges or {})


def _load_builtin(name, args, inputs, targets, seed, span, ranges) -> Data:
    import numpy as np
    import torch
    if name not in BUILTINS:   # --calibrate's name (a train section's is checked when compiling)
        raise data_error(f"unknown data set `{name}`", span,
                         hint="built-in sets: " + ", ".join(BUILTINS) + "; or give a path (.npz, "
                              ".npy, .csv, a folder of images)")
    if BUILTINS[name].samples is None:
        check_size(generated_bytes(name, args, inputs), f"`{name}` with these sizes", span,
                   SMALLER[name])
    if name == "graphs":
        return _graphs(args, inputs, targets, seed)
    (iname, itype), = inputs.items()
    notes = []
    if name == "digits" or name in ("iris", "breast_cancer", "wine", "diabetes"):
        import sklearn.datasets as skd
        loader = getattr(skd, f"load_{name}")
        ds = loader()
        x = torch.from_numpy(np.asarray(ds.data, dtype=np.float32))
        y = np.asarray(ds.target)
    elif name == "blobs":
        from sklearn.datasets import make_blobs
        feats = _static(itype.shape[1]) if itype.rank == 2 else None
        if feats is None:
            raise data_error(f"`blobs` needs a model input of shape [N, F], got `{iname}`: "
                             f"{itype}", span)
        xa, y = make_blobs(n_samples=int(args["n"]), n_features=feats,
                           centers=int(args["classes"]), cluster_std=float(args["spread"]),
                           random_state=seed)
        x = torch.from_numpy(xa.astype(np.float32))
    elif name == "sequences":
        x, y = _sequences(int(args["n"]), int(args["length"]), iname, itype, seed, ranges)
        notes.append(f"sequences: {x.shape[0]} sequences of {x.shape[1]} tokens")
    else:   # checked at compile time
        raise data_error(f"unknown data set `{name}`", span)
    if name == "digits":
        x = x.reshape(-1, 8, 8) / 16.0
        x, note = _fit_images(x, iname, itype, name)
        if note:
            notes.append(note)
    arrays = {iname: x.to(_torch_dtype(itype.dtype))}
    for tname, ttype in targets.items():
        arrays[tname] = _fit_labels(y, ttype)
    std = (iname,) if BUILTINS[name].kind == "tabular" and name != "blobs" else ()
    return Data(arrays, int(x.shape[0]), notes, name, std)


def _sequences(n, length, iname, itype, seed, ranges):
    import torch
    t = _static(itype.shape[1]) or length
    lo, hi = 1, 100
    if iname in ranges:
        from nndsl.ir.symbols import concrete_range
        try:
            lo, hi = concrete_range(ranges[iname], {})
        except Exception:
            raise data_error(f"`sequences` draws token ids from a fixed vocabulary, but the "
                             f"valid ids of `{iname}` depend on the input's size", None,
                             "train this model on your own data (.npz)") from None
        lo = max(lo, 1) if hi - lo > 2 else lo
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(lo, hi, (n, t), generator=g)
    mid = (lo + hi) // 2
    y = ((x < mid).sum(1) * 2 > t).long().numpy()
    return x, y


def _graphs(args, inputs, targets, seed) -> Data:
    """Stochastic block model graphs: a graph of class c has c + 1 equal communities, edges
    inside a community with probability 0.5 and across with 0.05; node features are Gaussian
    noise plus the node's degree, so the class is in the structure, not in the features."""
    import torch
    feats, adj = graph_inputs(inputs)
    ft = inputs[feats]
    v = _static(ft.shape[1]) or int(args["nodes"])
    f = _static(ft.shape[2]) or 4
    n, classes = int(args["n"]), int(args["classes"])
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    community = (torch.arange(v)[None, :] * (y[:, None] + 1)) // v          # [n, v]
    same = community[:, :, None] == community[:, None, :]
    p = torch.where(same, torch.tensor(0.5), torch.tensor(0.05))
    upper = torch.triu(torch.rand(n, v, v, generator=g) < p, diagonal=1)
    a = (upper | upper.transpose(1, 2)).float()
    x = torch.randn(n, v, f, generator=g) * 0.5
    x[:, :, 0] = a.sum(2) / v
    arrays = {feats: x.to(_torch_dtype(ft.dtype)), adj: a.to(_torch_dtype(inputs[adj].dtype))}
    for tname, ttype in targets.items():
        arrays[tname] = _fit_labels(y.numpy(), ttype)
    note = f"graphs: {n} graphs of {v} nodes, {classes} classes (1 to {classes} communities)"
    return Data(arrays, n, [note], "graphs", ())


def _torch_dtype(d: str):
    from nndsl.backends.torch.lowering import DTYPES
    return DTYPES[d]


def _fit_images(x, iname, itype, name):
    """[n, h, w] images in [0, 1] to the model's input shape; a note when resized."""
    import torch.nn.functional as F
    h0, w0 = x.shape[1], x.shape[2]
    if itype.rank == 4:
        c, h, w = (_static(d) for d in itype.shape[1:])
    elif itype.rank == 3:
        c, h, w = None, _static(itype.shape[1]), _static(itype.shape[2])
    else:
        f = _static(itype.shape[1])
        s = math.isqrt(f) if f else h0
        c, h, w = None, s, s
    h, w = h or h0, w or w0
    note = None
    if (h, w) != (h0, w0):
        x = F.interpolate(x[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        note = (f"{name} images are {h0}x{w0}; resized to {h}x{w} to fit `{iname}: {itype}`")
    if itype.rank == 4:
        x = x[:, None].expand(-1, c or 1, -1, -1).contiguous()
    elif itype.rank == 2:
        x = x.reshape(x.shape[0], -1)
    return x, note


def _fit_labels(y, t: TensorType):
    """Labels (class indices or regression values) in the declared target type."""
    import numpy as np
    import torch
    y = np.asarray(y)
    dtype = _torch_dtype(t.dtype)
    if t.dtype in FLOAT_DTYPES and t.rank == 2 and _static(t.shape[1]) not in (None, 1):
        return torch.nn.functional.one_hot(torch.from_numpy(y.astype(np.int64)),
                                           int(t.shape[1])).to(dtype)
    out = torch.from_numpy(y).to(dtype)
    return out.reshape(-1, 1) if t.rank == 2 else out


def _load_path(p: Path, inputs, targets, span) -> Data:
    import zipfile

    import numpy as np
    if p.is_dir():
        return _load_image_folder(p, inputs, targets, span)
    suffix = p.suffix.lower()
    located = None
    try:
        if suffix == ".npz":
            arrays = _load_npz(p, inputs, targets, span)
        elif suffix == ".npy":
            if len(inputs) != 1 or targets:
                raise data_error(f"an .npy file holds one array, but training needs "
                                 f"{len(inputs) + len(targets)} "
                                 f"({', '.join(list(inputs) + list(targets))})", span,
                                 code="E1215", hint="save them by name in an .npz file")
            a = np.load(p, mmap_mode="r", allow_pickle=False)
            check_size(int(a.nbytes), str(p), span)
            arrays = {next(iter(inputs)): np.array(a)}
        elif suffix == ".csv":
            arrays, located = _load_csv(p, inputs, targets, span)
        else:
            raise data_error(f"{p}: unknown data format `{suffix or p.name}`", span,
                             code="E1215", hint="use .npz, .npy, .csv or a folder of images")
    except UnicodeDecodeError:
        raise data_error(f"cannot read {p}: it is not UTF-8 text", span, code="E1215",
                         hint="a .csv file is UTF-8 text with a header line") from None
    except (ValueError, EOFError, zipfile.BadZipFile, KeyError):
        raise data_error(f"cannot read {p}: it is not a valid {suffix} file", span,
                         code="E1215", hint="an .npz is numpy.savez's archive of arrays by "
                         "name, an .npy numpy.save's one array (no pickled objects)") from None
    except OSError as e:
        raise data_error(f"cannot read {p}: {e.strerror or type(e).__name__}", span,
                         code="E1215") from None

    def locate(name, flat):
        if located is not None:
            return located(name, flat)
        shape = arrays[name].shape
        idx = np.unravel_index(flat, shape) if shape else ()
        at = f", position [{', '.join(str(int(i)) for i in idx[1:])}]" if len(idx) > 1 else ""
        return f"{p}, array `{name}`, sample {int(idx[0]) if idx else 0}{at}"

    out = {}
    n = None
    for name, a in arrays.items():
        t = inputs.get(name) or targets[name]
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise data_error(f"array `{name}` in {p} has dtype {a.dtype}, not numbers", span,
                             code="E1215")
        if a.ndim == 0:
            raise data_error(f"array `{name}` in {p} is a single number, not one value per "
                             f"sample", span, code="E1214",
                             hint=f"the model needs {t} for it, batch dim first")
        x = _convert(a, t, name, lambda flat, name=name: locate(name, flat), span)
        x = _fit_shape(x, t, name, p, span)
        if n is not None and x.shape[0] != n:
            raise data_error(f"arrays in {p} hold different numbers of samples: "
                             f"{n} and {x.shape[0]} (`{name}`)", span, code="E1214")
        n = x.shape[0]
        out[name] = x
    if not n:
        raise data_error(f"{p} holds no samples", span, code="E1214")
    data = Data(out, int(n), [], str(p))
    data.locate = locate
    return data


INT_LIMITS = {"i64": (-2**63, 2**63 - 1), "i32": (-2**31, 2**31 - 1), "i16": (-2**15, 2**15 - 1),
              "i8": (-128, 127), "u8": (0, 255), "bool": (0, 1)}


def _convert(a, t: TensorType, name: str, locate, span):
    """``a`` (a NumPy array) as a tensor of ``t``'s dtype, refusing what the conversion would
    change silently: NaN and infinities, values beyond the dtype's range, and fractions where
    the type holds integers."""
    import numpy as np
    import torch
    dtype = _torch_dtype(t.dtype)
    if t.dtype in FLOAT_DTYPES:
        x = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            flat = int(bad.flatten().nonzero()[0, 0])
            raw = a.reshape(-1)[flat]
            what = f"{raw}" if not np.isfinite(raw) else f"{raw:g} is out of range for {t.dtype}"
            raise data_error(f"{locate(flat)}: the value {what}; training needs finite numbers",
                             span, code="E1226",
                             hint="fix or drop that sample; rescale values beyond the type's "
                                  "range")
        return x
    lo, hi = INT_LIMITS.get(t.dtype, (-2**63, 2**63 - 1))
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        bad = ~finite
        if not bad.any():
            bad = a != np.floor(a)
            if bad.any():
                flat = int(np.flatnonzero(bad)[0])
                raise data_error(f"{locate(flat)}: {a.reshape(-1)[flat]:g} is not a whole "
                                 f"number, but `{name}` is {t}", span, code="E1226",
                                 hint="class labels are 0, 1, 2, ...; declare a float target "
                                      "for real values")
            bad = (a < lo) | (a > hi)
        if bad.any():
            flat = int(np.flatnonzero(bad)[0])
            raise data_error(f"{locate(flat)}: the value {a.reshape(-1)[flat]:g} does not fit "
                             f"`{name}`: {t} (from {lo:,} to {hi:,})", span, code="E1226")
        return torch.from_numpy(a.astype(np.int64)).to(dtype)
    if a.dtype.kind == "u" and a.dtype.itemsize == 8:
        bad = a > np.uint64(hi)
    else:
        bad = (a < lo) | (a > hi)
    if bad.any():
        flat = int(np.flatnonzero(bad)[0])
        raise data_error(f"{locate(flat)}: the value {a.reshape(-1)[flat]} does not fit "
                         f"`{name}`: {t} (from {lo:,} to {hi:,})", span, code="E1226")
    return torch.from_numpy(np.ascontiguousarray(a).astype(np.int64)).to(dtype)


def _npz_member_bytes(z, name: str) -> int:
    import numpy.lib.format as fmt
    member = name if name in z.zip.namelist() else name + ".npy"
    with z.zip.open(member) as fh:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    return math.prod(shape) * dtype.itemsize


def _load_npz(p: Path, inputs, targets, span) -> dict:
    import numpy as np
    arrays = {}
    with np.load(p, allow_pickle=False) as z:
        if not hasattr(z, "files"):
            raise ValueError("not an archive")
        found = list(z.files)
        for n in list(inputs) + list(targets):
            if n not in found:
                shown = ", ".join(f"`{f}`" for f in found[:20]) + (", ..." if len(found) > 20
                                                                   else "")
                raise data_error(f"{p} has no array `{n}`", span, code="E1215",
                                 hint="its arrays: " + (shown or "none")
                                 + "; an .npz needs one array per model input and target, "
                                   "by name")
        total = sum(_npz_member_bytes(z, n) for n in list(inputs) + list(targets))
        check_size(total, str(p), span)
        for n in list(inputs) + list(targets):
            arrays[n] = z[n]
    return arrays


def _fit_shape(x, t: TensorType, name, p, span):
    shape = list(x.shape)
    want = [d for d in t.shape]
    if len(shape) + 1 == len(want) and want[-1] == 1:
        x = x.unsqueeze(-1)
    elif len(shape) == len(want) + 1 and shape[-1] == 1:
        x = x.squeeze(-1)
    ok = x.dim() == len(want) and all(
        not isinstance(d, int) or x.shape[i] == d for i, d in enumerate(want) if i > 0)
    if not ok:
        role = "target" if t is not None else "input"
        raise data_error(f"`{name}` in {p} is {list(shape)}, but the model needs {t} "
                         f"for it", span, code="E1214",
                         hint=f"the data's {role} must match the declared type, batch dim first")
    return x


def _plain_names(header: list) -> bool:
    """Whether a CSV header reads like column names (and may be quoted back in messages)."""
    import re
    return len(header) <= 256 and all(re.fullmatch(r"[A-Za-z_][\w .\-]{0,63}", h)
                                      for h in header)


def _load_csv(p: Path, inputs, targets, span):
    """The arrays of a CSV file, and a function naming the line and column of a value."""
    import array
    import csv

    import numpy as np
    size = p.stat().st_size
    check_size(size * 4, str(p), span)     # every value takes 2 bytes of text or more
    if len(inputs) != 1:
        raise data_error(f"a CSV file feeds one model input, but the model has {len(inputs)}",
                         span, code="E1215", hint="use an .npz file with one array per input")
    values = array.array("d")
    lines = array.array("q")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise data_error(f"{p} is empty", span, code="E1215",
                                 hint="a CSV file starts with a header line naming its columns")
            header = [h.strip() for h in header]
            plain = _plain_names(header)
            missing = [t for t in targets if t not in header]
            if missing:
                hint = (f"its columns: {', '.join(header)}" if plain else
                        "its first line does not read like a header of column names")
                raise data_error(f"{p} has no column `{missing[0]}` for the target", span,
                                 code="E1215", hint=hint + "; the first line of a CSV file "
                                 "names its columns, and the columns named like targets (" +
                                 ", ".join(targets) + ") are the targets")
            width = len(header)

            def col(j):
                return f"column {j + 1}" + (f" (`{header[j]}`)" if plain else "")
            for r in reader:
                if not r:
                    continue
                if len(r) != width:
                    raise data_error(f"{p}, line {reader.line_num}: {len(r)} values, but the "
                                     f"header names {width} columns", span, code="E1215")
                for j, v in enumerate(r):
                    try:
                        x = float(v)
                    except ValueError:
                        raise data_error(f"{p}, line {reader.line_num}, {col(j)}: not a number",
                                         span, code="E1215",
                                         hint="every value after the header line is a "
                                              "number") from None
                    if not math.isfinite(x):
                        what = "NaN" if x != x else "infinite (or beyond a float's range)"
                        raise data_error(f"{p}, line {reader.line_num}, {col(j)}: the value is "
                                         f"{what}; training needs finite numbers", span,
                                         code="E1226", hint="fix or drop that row")
                    values.append(x)
                lines.append(reader.line_num)
        except csv.Error as e:
            raise data_error(f"{p}, line {reader.line_num}: not valid CSV ({e})", span,
                             code="E1215") from None
    data = np.frombuffer(values, dtype=np.float64).reshape(-1, width) if width else \
        np.zeros((0, 0))
    feats = [i for i, h in enumerate(header) if h not in targets]
    iname = next(iter(inputs))
    out = {iname: data[:, feats]}
    for t in targets:
        out[t] = data[:, header.index(t)]

    def locate(name, flat):
        if name == iname:
            row, j = divmod(int(flat), max(1, len(feats)))
            j = feats[j] if feats else 0
        else:
            row, j = int(flat), header.index(name)
        return f"{p}, line {lines[row]}, {col(j)}"
    return out, locate


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _load_image_folder(p: Path, inputs, targets, span) -> Data:
    import numpy as np
    import torch
    from PIL import Image
    if len(inputs) != 1 or len(targets) > 1:
        raise data_error("a folder of images feeds one image input and one class target",
                         span, code="E1215")
    (iname, itype), = inputs.items()
    if itype.rank != 4 or not all(isinstance(d, int) for d in itype.shape[1:]):
        raise data_error(f"a folder of images needs an input like f32[N, 3, 32, 32], but "
                         f"`{iname}` is {itype}", span, code="E1214")
    c, h, w = itype.shape[1:]
    if c not in (1, 3):
        raise data_error(f"images have 1 or 3 channels, but `{iname}` is {itype}", span,
                         code="E1214")
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise data_error(f"{p} has no class subfolders", span, code="E1215",
                         hint="put each class's images in a subfolder: DIR/cat/1.png, ...")
    xs, ys = [], []
    for k, cls in enumerate(classes):
        for f in sorted((p / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not f.is_file():
                raise data_error(f"{f} is not a regular file", span, code="E1215",
                                 hint="a class folder holds image files only")
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if c == 1 else "RGB").resize((w, h))
                    a = np.asarray(im, dtype=np.float32) / 255.0
            except OSError as e:
                raise data_error(f"cannot read image {f}: {e}", span, code="E1215") from None
            xs.append(a[None] if c == 1 else a.transpose(2, 0, 1))
            if len(xs) % 1024 == 0:
                check_size(len(xs) * c * h * w * 4, f"the images of {p}", span)
            ys.append(k)
    if not xs:
        raise data_error(f"{p} holds no images", span, code="E1215")
    arrays = {iname: torch.from_numpy(np.stack(xs)).to(_torch_dtype(itype.dtype))}
    for tname, ttype in targets.items():
        arrays[tname] = _fit_labels(np.array(ys), ttype)
    return Data(arrays, len(xs), [f"{p}: {len(xs)} images in {len(classes)} classes "
                                   f"({', '.join(classes)})"], str(p))


# ------------------------------------------------------------------ value ranges

def value_limits(loss_info, types: dict, targets: dict, input_ranges: dict,
                 data_inputs: dict) -> dict:
    """What values each target and integer input may hold: name -> (low, high or None, why),
    both ends included. Class indices lie in [0, C) of the scores they are compared with,
    binary cross-entropy targets in [0, 1], token ids in the input's declared range."""
    limits: dict = {}
    for term in (loss_info.terms if loss_info is not None else ()):
        if len(term.args) != 2 or term.args[1] not in targets:
            continue
        sname, tname = term.args
        tt, st = targets[tname], types.get(sname)
        if term.fn in ("cross_entropy", "nll") and tt.dtype not in FLOAT_DTYPES and \
                st is not None and st.rank >= 2:
            at1 = tuple(tt.shape) == (st.shape[0],) + tuple(st.shape[2:])
            c = _static(st.shape[1] if at1 else st.shape[-1])
            why = f"`{sname}` scores {c} classes" if c else f"class indices of `{sname}`"
            _narrow(limits, tname, 0, c - 1 if c else None, why)
        elif term.fn in ("bce", "bce_probs"):
            _narrow(limits, tname, 0, 1, f"{term.fn} compares `{sname}` with targets in [0, 1]")
    for name, rng in input_ranges.items():
        if name not in data_inputs:
            continue
        from nndsl.ir.symbols import concrete_range
        try:
            lo, hi = concrete_range(rng, {})
        except Exception:    # a bound that depends on sizes: checked where the model runs
            continue
        if lo is None or hi is None:
            continue
        _narrow(limits, name, int(lo), int(hi) - 1, f"`{name}` takes ids from {lo} to {hi - 1}")
    return limits


def _narrow(limits: dict, name, lo, hi, why) -> None:
    old = limits.get(name)
    if old is None or (hi is not None and (old[1] is None or hi < old[1])):
        limits[name] = (lo, hi, why)


def check_values(data: Data, limits: dict, span: Span | None) -> None:
    """Refuse a value outside its limits (a label 7 of 2 classes, -1, a token id past the
    vocabulary), naming where it is."""
    for name, (lo, hi, why) in limits.items():
        x = data.arrays.get(name)
        if x is None or x.numel() == 0:
            continue
        bad = x < lo
        if hi is not None:
            bad |= x > hi
        if not bool(bad.any()):
            continue
        flat = int(bad.flatten().nonzero()[0, 0])
        v = x.flatten()[flat].item()
        shown = f"{v:g}" if isinstance(v, float) else str(v)
        rng = f"from {lo} to {hi}" if hi is not None else f"{lo} or more"
        raise data_error(f"{data.where(name, flat)}: {shown} is out of range for `{name}`: "
                         f"{why}, so its values are {rng}", span, code="E1226",
                         hint="fix the data, or change the model to fit it")


# ------------------------------------------------------------------ splits, batches

@dataclass
class Splits:
    train: object       # LongTensor of sample indices
    val: object
    test: object


def split(n: int, val: float, test: float, seed: int) -> Splits:
    import torch
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    n_test = int(round(n * test))
    n_val = int(round(n * val))
    if n - n_test - n_val < 1:
        raise TrainError(f"no training samples left: {n} samples, validation {n_val}, test "
                         f"{n_test}", code="E1214")
    return Splits(perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test])


def standardize(data: Data, train_idx) -> dict:
    """Standardize the named float inputs in place with the training split's statistics."""
    stats = {}
    for name in data.standardize:
        x = data.arrays[name]
        mean = x[train_idx].mean(0, keepdim=True)
        std = x[train_idx].std(0, keepdim=True).clamp_min(1e-8)
        data.arrays[name] = (x - mean) / std
        stats[name] = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return stats


def epoch_order(train_idx, seed: int, epoch: int, rank: int = 0, world: int = 1):
    """This process's training samples for ``epoch``, shuffled by (seed, epoch). With several
    processes the order is padded to a multiple of ``world`` and dealt out round-robin."""
    import torch
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * int(epoch) + 1)
    order = train_idx[torch.randperm(len(train_idx), generator=g)]
    if world > 1:
        extra = (-len(order)) % world
        if extra:
            order = torch.cat([order, order[:extra]])
        order = order[rank::world]
    return order


def steps_per_epoch(n_train: int, batch: int, world: int = 1) -> int:
    per = math.ceil(n_train / world)
    return max(1, math.ceil(per / batch))


def batches(data: Data, order, batch: int, start: int = 0):
    """Dicts of tensors for consecutive batches of ``order``, from batch ``start`` on."""
    for b in range(start, math.ceil(len(order) / batch)):
        idx = order[b * batch:(b + 1) * batch]
        yield b, {k: v[idx] for k, v in data.arrays.items()}


