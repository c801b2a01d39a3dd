"""Measuring an import: does the spec compute what the ONNX file computes?

Shared by ``tests/test_import*.py`` and ``benchmarks/import_conformance.py``:

- :func:`light_models`: the real model graphs the onnx wheel ships
  (``onnx/backend/test/data/light/``). Their weights are made by ``ConstantOfShape`` and are
  one value each (0.02), so every class gets the same score; :func:`randomize_weights` gives
  the same graph random weights (fan-in scaled filters, batch-norm statistics near 1), which is
  what makes a comparison of outputs mean something.
- :func:`node_cases`: onnx's own node tests, read from the wheel's ``data/node/*`` folders
  (``model.onnx`` with ``test_data_set_0/{input,output}_*.pb``).
- :func:`run_ort`, :func:`run_torch`, :func:`run_reexport`: one model's outputs in onnxruntime,
  from the imported spec's torch module, and from its own ONNX export in onnxruntime.
- :func:`tolerance`: ``atol = 1e-4 · max|ref| + 1e-5``, a function of the values compared (the
  last bits of AVX2 and AVX-512 kernels differ; no machine gets its own tolerance).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def onnx_data() -> Path:
    import onnx
    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data"


def light_models() -> dict:
    """``{name: path}`` of the wheel's light models (``bvlc_alexnet``, ``resnet50``, ...)."""
    folder = onnx_data() / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(folder.glob("light_*.onnx"))}


def tolerance(ref: np.ndarray, rel: float = 1e-4) -> float:
    ref = np.asarray(ref)
    if ref.dtype.kind not in "fc" or not ref.size:
        return 0.0
    finite = np.abs(ref[np.isfinite(ref)])
    return rel * (float(finite.max()) if finite.size else 0.0) + 1e-5


# ---- random weights for the light models ----

_FILTERS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
_BN = {1: (0.5, 1.5), 2: (-0.1, 0.1), 3: (-0.1, 0.1), 4: (0.5, 1.5)}


def randomize_weights(model, seed: int = 0, logits: bool = True):
    """A copy of ``model`` whose float constants (initializers and the ``ConstantOfShape``s of
    constant shapes) hold random values: filters uniform in ±sqrt(6 / fan-in), batch-norm
    scales and variances in [0.5, 1.5], everything else in ±0.1 (multipliers in [0.5, 1.5]).
    With ``logits``, a Softmax that makes a graph output is left out (its input becomes the
    output): random filters make scores that a softmax over 1,000 classes flattens to nearly
    1/1000 each, or saturates, and either hides errors."""
    import onnx
    from onnx import helper
    from onnx import numpy_helper as nh
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in g.initializer}
    readers: dict = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            readers.setdefault(name, []).append((n, i))

    def draw(name: str, shape: tuple) -> np.ndarray:
        lo, hi = -0.1, 0.1
        for n, i in readers.get(name, []):
            if _FILTERS.get(n.op_type) == i and len(shape) >= 2:
                fan = int(np.prod(shape[1:])) if n.op_type.startswith("Conv") else shape[0]
                if n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute):
                    fan = shape[1]
                lo, hi = -np.sqrt(6.0 / fan), np.sqrt(6.0 / fan)
            elif n.op_type == "BatchNormalization" and i in _BN:
                lo, hi = _BN[i]
            elif n.op_type == "Mul" or n.op_type in ("Unsqueeze", "Reshape") and any(
                    r.op_type == "Mul" for r, _ in readers.get(n.output[0], [])):
                lo, hi = 0.5, 1.5
        return rng.uniform(lo, hi, size=shape).astype(np.float32)

    kept = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = tuple(int(d) for d in nh.to_array(inits[n.input[0]]))
            value = next((nh.to_array(a.t) for a in n.attribute if a.name == "value"), None)
            if value is None or value.dtype == np.float32:
                g.initializer.append(nh.from_array(draw(n.output[0], shape), n.output[0]))
                if out.ir_version < 4:      # then every initializer is also a graph input
                    g.input.append(helper.make_tensor_value_info(
                        n.output[0], onnx.TensorProto.FLOAT, shape))
                continue
        kept.append(n)
    if logits:
        outs = {o.name: o for o in g.output}
        for n in list(kept):
            if n.op_type == "Softmax" and n.output[0] in outs and len(readers.get(
                    n.output[0], [])) == 0:
                kept.remove(n)
                o = outs[n.output[0]]
                o.name = n.input[0]
    del g.node[:]
    g.node.extend(kept)
    for k, t in enumerate(g.initializer):
        if t.data_type == onnx.TensorProto.FLOAT and t.dims and t.name in readers:
            g.initializer[k].CopyFrom(nh.from_array(draw(t.name, tuple(t.dims)), t.name))
    return out


def random_inputs(model, seed: int = 0) -> dict:
    """N(0, 1) floats for every input that is not an initializer (symbolic dims set to 1)."""
    from onnx import helper
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


# ---- running ----

def run_ort(model, feeds: dict) -> list:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def _spec_feeds(compiled, imported, feeds: dict) -> dict:
    """The ONNX inputs under the spec's input names (the import keeps their order)."""
    by_order = [v for k, v in feeds.items() if k in imported.input_names]
    return dict(zip(compiled.input_names, by_order))


def run_torch(imported, feeds: dict, compiled=None) -> list:
    import torch
    c = compiled if compiled is not None else imported.compile()
    m = c.to_torch().eval()
    args = {k: torch.from_numpy(np.ascontiguousarray(v))
            for k, v in _spec_feeds(c, imported, feeds).items()}
    with torch.no_grad():
        out = m(**args)
    if isinstance(out, dict):
        out = [out[k] for k in c.output_names]
    elif not isinstance(out, (list, tuple)):
        out = [out]
    return [o.detach().numpy() for o in out]


def run_reexport(imported, feeds: dict, compiled=None) -> list:
    c = compiled if compiled is not None else imported.compile()
    return run_ort(c.to_onnx(), _spec_feeds(c, imported, feeds))


@dataclass
class Compared:
    ok: bool
    error: float          # the largest |got - want| over the outputs (inf: shapes differ)
    detail: str = ""


def compare(got: list, want: list, rel: float = 1e-4) -> Compared:
    if len(got) != len(want):
        return Compared(False, float("inf"), f"{len(got)} outputs, expected {len(want)}")
    worst = 0.0
    for k, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return Compared(False, float("inf"), f"output {k}: shape {list(g.shape)}, "
                                                 f"expected {list(w.shape)}")
        if w.dtype == np.bool_ or w.dtype.kind in "iu":
            if not np.array_equal(g.astype(w.dtype), w):
                return Compared(False, float("inf"), f"output {k}: values differ")
            continue
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        if not np.array_equal(np.isnan(g64), np.isnan(w64)):
            return Compared(False, float("inf"), f"output {k}: NaNs differ")
        fin = np.isfinite(w64)
        if not np.array_equal(g64[~fin & ~np.isnan(w64)], w64[~fin & ~np.isnan(w64)]):
            return Compared(False, float("inf"), f"output {k}: infinities differ")
        err = float(np.abs(g64[fin] - w64[fin]).max()) if fin.any() else 0.0
        worst = max(worst, err)
        tol = tolerance(w, rel) if w.dtype != np.float16 else 1e-2 * (
            float(np.abs(w64[fin]).max()) if fin.any() else 0) + 1e-3
        if err > tol:
            return Compared(False, worst, f"output {k}: max error {err:.3g} > {tol:.3g}")
    return Compared(True, worst)


@dataclass
class RoundTrip:
    compared: Compared
    params: tuple         # (the spec's parameter count, the re-imported spec's)
    imported: object      # the Imported spec
    proto: object         # the spec's ONNX export it was imported from


def round_trip(compiled) -> RoundTrip:
    """A compiled spec exported to ONNX (its weights as initialised) and imported back: the
    imported spec's torch outputs against onnxruntime's on the export, and both parameter
    counts."""
    from nndsl.importer import import_onnx
    proto = compiled.to_onnx(weights=compiled.to_torch().state_dict())
    feeds = {k: v.numpy() for k, v in compiled.example_inputs(batch=2).items()}
    want = run_ort(proto, feeds)
    imported = import_onnx(proto)
    back = imported.compile()
    return RoundTrip(compare(run_torch(imported, feeds, back), want),
                     (compiled.param_count(), back.param_count()), imported, proto)


# ---- onnx's node tests ----

@dataclass
class NodeCase:
    name: str
    model: object          # the onnx.ModelProto
    inputs: list           # arrays, in the order of the graph's inputs
    outputs: list          # the expected arrays, in the order of the graph's outputs

    @property
    def ops(self) -> tuple:
        """The op types of the graph (without its subgraphs)."""
        return tuple(sorted({n.op_type for n in self.model.graph.node}))

    def load(self):
        """The model, its inputs by name and its expected outputs (in order)."""
        inits = {t.name for t in self.model.graph.initializer}
        names = [vi.name for vi in self.model.graph.input if vi.name not in inits]
        return self.model, dict(zip(names, self.inputs)), list(self.outputs)


_NUMPY_TYPES = frozenset("float16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 "
                         "uint64 bool".split())


@functools.lru_cache(maxsize=1)
def node_cases() -> tuple:
    """onnx's node tests (``onnx.backend.test.case.node.collect_testcases()``, the cases of
    the wheel's ``data/node`` folders): those whose inputs and outputs are plain tensors, with
    their first data set."""
    import warnings
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = collect_testcases()
    cases = []
    for c in found:
        if c.kind != "node" or c.model is None or not c.data_sets:
            continue
        g = c.model.graph
        if any(not vi.type.HasField("tensor_type") for vi in list(g.input) + list(g.output)):
            continue
        ins, outs = c.data_sets[0]
        if any(not isinstance(a, np.ndarray) or a.dtype.name not in _NUMPY_TYPES
               for a in list(ins) + list(outs)):
            continue        # strings, sequences, and the dtypes NumPy itself lacks (bfloat16)
        cases.append(NodeCase(c.name.removeprefix("test_"), c.model, list(ins), list(outs)))
    return tuple(cases)


def bind_inputs(model, feeds: dict, keep: int = 1):
    """``model`` with every input after the first ``keep`` made an initializer holding the
    case's value. onnx's node tests pass filters, axes, pads and shapes as graph inputs;
    nndsl reads those at import time (a layer's weights, a reshape's target), so a case whose
    import needs them is run again with them bound, and counted as such."""
    import onnx
    from onnx import numpy_helper as nh
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    ins = [vi for vi in g.input if vi.name not in inits]
    for vi in ins[keep:]:
        g.initializer.append(nh.from_array(np.asarray(feeds[vi.name]), vi.name))
        if out.ir_version >= 4:
            g.input.remove(vi)
    return out, {vi.name: feeds[vi.name] for vi in ins[:keep]}


@dataclass
class CaseResult:
    name: str
    status: str            # pass, import-fail, mismatch, error
    bound: bool = False    # passed only with its non-data inputs bound (bind_inputs)
    torch_ok: bool = False
    ort_ok: bool = False
    detail: str = ""


def run_case(case: NodeCase, reexport: bool = True) -> CaseResult:
    """Import a node test (as given, else with its non-data inputs bound) and compare the
    torch module's outputs (and the re-export's in onnxruntime) with the expected ones."""
    from nndsl.errors import NndslError
    from nndsl.importer import ImportFailure, import_onnx
    model, feeds, want = case.load()
    bound = False
    try:
        try:
            imported = import_onnx(model)
        except ImportFailure:
            if len(feeds) < 2:
                raise
            model, feeds = bind_inputs(model, feeds)
            bound = True
            imported = import_onnx(model)
        compiled = imported.compile()
        t = compare(run_torch(imported, feeds, compiled), want)
        o = compare(run_reexport(imported, feeds, compiled), want) if reexport else t
    except ImportFailure as e:
        return CaseResult(case.name, "import-fail", bound, detail=_detail(e))
    except NndslError as e:
        return CaseResult(case.name, "error", bound, detail=f"{e.code}: {e.message}")
    except Exception as e:  # noqa: BLE001 - a backend or onnxruntime refusing the spec
        return CaseResult(case.name, "error", bound, detail=f"{type(e).__name__}: {e}")
    ok = t.ok and o.ok
    detail = "" if ok else (f"torch: {t.detail}" if not t.ok else f"onnxruntime: {o.detail}")
    return CaseResult(case.name, "pass" if ok else "mismatch", bound, t.ok, o.ok, detail)


def _detail(e) -> str:
    return " ".join([e.message] + [n for n, _ in e.notes])
