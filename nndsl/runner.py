"""``nndsl run``: run a spec (torch backend) or an ``.onnx`` file (onnxruntime) on input files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from nndsl.errors import InputError, SourceFileError
from nndsl.fsutil import atomic_write_bytes, write_error

ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                 "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                 "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
                 "tensor(bool)": np.bool_}


def load_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    """``name=file.npy`` pairs and ``file.npz`` archives (keys are input names)."""
    out: dict[str, np.ndarray] = {}
    for s in specs or []:
        name, sep, path = s.partition("=")
        if not sep:
            path, name = s, None
        p = Path(path)
        if not p.exists():
            raise InputError(f"input file not found: {p}", code="E1105")
        try:
            data = np.load(p, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise InputError(f"{p} is not a readable .npy/.npz file ({e})", code="E1106",
                             hint="save inputs with numpy.save or numpy.savez") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            if name is not None:
                raise InputError(f"{p} is an .npz archive; pass it without `NAME=`",
                                 code="E1106")
            with data:
                out.update({k: data[k] for k in data.files})
        else:
            if name is None:
                raise InputError(f"{p} is a single array: pass it as `--input NAME={p}`",
                                 code="E1106")
            out[name] = data
    return out


def run_spec(compiled, inputs: dict, batch: int, weights=None, seed: int = 0) -> dict:
    import torch
    m = compiled.to_torch(weights=weights).eval()
    if inputs:
        feeds = {}
        for name, arr in inputs.items():
            if name not in compiled.input_names:
                raise InputError(f"the model has no input `{name}`; its inputs are "
                                 f"{', '.join(compiled.input_names)}", code="E1101")
            feeds[name] = torch.from_numpy(np.ascontiguousarray(arr))
        for name, t in compiled.input_types.items():
            if name in feeds:
                _check_dtype(name, inputs[name], t.dtype)
    else:
        feeds = compiled.example_inputs(batch=batch, seed=seed)
    with torch.no_grad():
        out = m(**feeds)
    outs = out if isinstance(out, tuple) else (out,)
    return {n: o.numpy() for n, o in zip(compiled.output_names, outs)}


_NUMPY_OF = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64,
             "i32": np.int32, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}


def _check_dtype(name: str, arr: np.ndarray, dtype: str) -> None:
    want = _NUMPY_OF.get(dtype)
    if want is not None and arr.dtype != want:
        raise InputError(f"input `{name}` must be {dtype}, the file holds {arr.dtype}",
                         code="E1103", hint=f"convert it with arr.astype(numpy.{want.__name__})")


def run_onnx(path: Path, inputs: dict, batch: int, seed: int = 0) -> dict:
    import onnx
    import onnxruntime as ort
    if not path.exists():
        raise SourceFileError(f"file not found: {path}", code="E0001")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a corrupt protobuf: report it as the user's file problem
        raise SourceFileError(f"{path} is not a readable ONNX model ({type(e).__name__})",
                              code="E0004") from None
    meta = {p.key: p.value for p in model.metadata_props}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise SourceFileError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}",
                              code="E0004") from None
    specs = sess.get_inputs()
    if not inputs:
        inputs = _example_feeds(specs, meta, batch, seed)
    names = [s.name for s in specs]
    for k in inputs:
        if k not in names:
            raise InputError(f"the model has no input `{k}`; its inputs are {', '.join(names)}",
                             code="E1101")
    for s in specs:
        if s.name not in inputs:
            raise InputError(f"missing input `{s.name}`", code="E1101")
        arr = inputs[s.name]
        want = ONNX_TO_NUMPY.get(s.type)
        if want is not None and arr.dtype != want:
            raise InputError(f"input `{s.name}` must be {s.type}, the file holds {arr.dtype}",
                             code="E1103")
        if len(arr.shape) != len(s.shape) or any(
                isinstance(d, int) and d != a for d, a in zip(s.shape, arr.shape)):
            raise InputError(f"input `{s.name}` must have shape {s.shape}, the file holds "
                             f"{list(arr.shape)}", code="E1104")
    try:
        outs = sess.run(None, {k: np.ascontiguousarray(v) for k, v in inputs.items()})
    except Exception as e:
        raise InputError(f"onnxruntime failed: {str(e).splitlines()[0]}", code="E1107") from None
    return {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def _example_feeds(specs, meta: dict, batch: int, seed: int) -> dict:
    """Random inputs drawn exactly as ``Compiled.example_inputs`` draws them, so running the
    spec and running its ONNX export on example inputs give comparable outputs."""
    import torch

    from nndsl.backends.torch.inputs import draw
    from nndsl.ir.symbols import range_from_json
    gen = torch.Generator().manual_seed(seed)
    dims = json.loads(meta.get("nndsl.example_dims", "{}"))
    ranges = json.loads(meta.get("nndsl.input_ranges", "{}"))
    dists = json.loads(meta.get("nndsl.input_dists", "{}"))
    shapes, env = {}, {}
    for s in specs:
        shapes[s.name] = [d if isinstance(d, int) else
                          (batch if i == 0 else int(dims.get(str(d), 16)))
                          for i, d in enumerate(s.shape)]
        for d, v in zip(s.shape, shapes[s.name]):
            if isinstance(d, str) and d.isidentifier():
                env.setdefault(d, v)        # a symbolic id range ([0, V)) reads these
    feeds = {}
    for s in specs:
        dtype = ONNX_TO_NUMPY.get(s.type, np.float32)
        kind = "bool" if dtype == np.bool_ else "f32" if np.issubdtype(dtype, np.floating) \
            else "i64"
        feeds[s.name] = draw(shapes[s.name], kind, dists.get(s.name),
                             range_from_json(ranges.get(s.name), env), gen).numpy().astype(dtype)
    return feeds


def describe(outputs: dict) -> str:
    lines = []
    for name, v in outputs.items():
        line = f"{name}: {v.dtype} {list(v.shape)}"
        if v.size and np.issubdtype(v.dtype, np.number):
            f = v.astype(np.float64)
            line += (f"  mean {f.mean():.4g}  std {f.std():.4g}  min {f.min():.4g}  "
                     f"max {f.max():.4g}")
        lines.append(line)
    return "\n".join(lines)


def save_outputs(outputs: dict, path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, **outputs)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, ValueError) as e:
        raise write_error(path, e) from None
