"""``nndsl run``: run a spec (torch backend) or an ``.onnx`` file (onnxruntime) on input files."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nndsl.errors import InputError, NndslError, SourceFileError
from nndsl.fsutil import atomic_write_bytes, write_error

ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                 "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                 "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
                 "tensor(bool)": np.bool_}


def load_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    """``name=file.npy`` pairs and ``file.npz`` archives (keys are input names).

    Files are read without unpickling anything: an array of Python objects is refused, as
    are damaged files (a bad checksum, a truncated archive); big-endian arrays are converted to
    the machine's byte order. An input given twice is an error."""
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for s in specs or []:
        name, sep, path = s.partition("=")
        if not sep:
            path, name = s, None
        p = Path(path)
        if not p.exists():
            raise InputError(f"input file not found: {p}", code="E1105")
        if p.is_dir():
            raise InputError(f"{p} is a folder, not an .npy/.npz file", code="E1106")
        try:
            data = np.load(p, allow_pickle=False)
        except _READ_ERRORS as e:
            raise _unreadable(p, None, e) from None
        if isinstance(data, np.lib.npyio.NpzFile):
            if name is not None:
                data.close()
                raise InputError(f"{p} is an .npz archive; pass it without `NAME=`",
                                 code="E1106")
            with data:
                arrays = {}
                for k in data.files:
                    try:
                        arrays[k] = data[k]
                    except _READ_ERRORS as e:
                        raise _unreadable(p, k, e) from None
        else:
            if name is None:
                raise InputError(f"{p} is a single array: pass it as `--input NAME={p}`",
                                 code="E1106")
            arrays = {name: data}
        for k, arr in arrays.items():
            if k in out:
                raise InputError(f"input `{k}` is given twice: in {origin[k]} and in {p}",
                                 code="E1106", hint="give each input once")
            if not arr.dtype.isnative:
                arr = arr.astype(arr.dtype.newbyteorder("="))
            out[k], origin[k] = arr, str(p)
    return out


_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _unreadable(p: Path, member, e: Exception) -> InputError:
    where = f"{p}" + (f" (array `{member}`)" if member else "")
    text = str(e)
    if "Object arrays" in text:
        return InputError(f"{where} holds an array of Python objects (dtype object), which "
                          f"would have to be unpickled: nndsl never loads pickles",
                          code="E1106", hint="save numeric arrays, e.g. "
                                             "numpy.save(path, arr.astype(numpy.int64))")
    if "pickle" in text:
        return InputError(f"{where} is neither an .npy nor an .npz file (NumPy would read it "
                          f"as a pickle, which nndsl never loads)", code="E1106",
                          hint="save inputs with numpy.save or numpy.savez")
    if isinstance(e, (zipfile.BadZipFile, EOFError, zlib.error)) or "CRC" in text:
        return InputError(f"{where} is damaged ({text or type(e).__name__})", code="E1106",
                          hint="write the file again with numpy.savez")
    return InputError(f"{where} is not a readable .npy/.npz file ({text or type(e).__name__})",
                      code="E1106", hint="save inputs with numpy.save or numpy.savez")


BACKENDS = ("torch", "onnxruntime", "auto")


def run_spec(compiled, inputs: dict, batch: int, weights=None, seed: int = 0,
             backend: str = "torch") -> tuple[dict, str]:
    """The model's outputs by name on ``inputs`` (or example inputs of ``batch``), and the
    backend that ran it: ``torch``, ``onnxruntime`` (the ONNX export, in memory) or ``auto``
    (whichever of the two a short alternating measurement finds faster, said in the second
    value)."""
    import torch
    from nndsl.ir.symbols import check_inputs
    if backend not in BACKENDS:
        raise InputError(f"unknown backend `{backend}`", code="E1806",
                         hint="one of: " + ", ".join(BACKENDS))
    if inputs:
        for name, arr in inputs.items():
            if name not in compiled.input_names:
                raise InputError(f"the model has no input `{name}`; its inputs are "
                                 f"{', '.join(compiled.input_names)}", code="E1101")
        for name, t in compiled.input_types.items():
            if name in inputs:
                _check_dtype(name, inputs[name], t.dtype)
        check_inputs(compiled.graph, inputs)
        feeds = {name: torch.from_numpy(np.ascontiguousarray(arr))
                 for name, arr in inputs.items()}
        _complete(compiled, feeds, seed)
    else:
        feeds = compiled.example_inputs(batch=batch, seed=seed)
    if backend != "auto":
        return _runner(backend, compiled, feeds, weights)(), backend
    from nndsl.bench import fastest_backend
    from nndsl.bench.paths import session_options
    built = {b: _runner(b, compiled, feeds, weights, session_options())   # each built once
             for b in ("torch", "onnxruntime")}
    backend, used = fastest_backend(built)
    return built[backend](), used


def _runner(backend: str, compiled, feeds: dict, weights, ort_options=None):
    """A call that runs ``compiled`` on ``feeds`` (torch tensors by input name) with
    ``backend`` and returns its outputs by name, as NumPy arrays."""
    import torch
    if backend == "onnxruntime":
        import onnxruntime as ort
        if ort_options is None:
            ort_options = ort.SessionOptions()
            ort_options.log_severity_level = 3
        sess = ort.InferenceSession(compiled.to_onnx(weights=weights).SerializeToString(),
                                    ort_options, providers=["CPUExecutionProvider"])
        np_feeds = {i.name: np.ascontiguousarray(feeds[i.name].numpy())
                    for i in sess.get_inputs()}
        return lambda: dict(zip(compiled.output_names, sess.run(None, np_feeds)))
    m = compiled.to_torch(weights=weights).eval()

    def run():
        with torch.no_grad():
            out = m(**feeds)
        outs = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(compiled.output_names, outs)}
    return run


def _complete(compiled, feeds: dict, seed: int) -> None:
    """Every backend gets every input: a required one missing is an error; a random one
    (``~ normal()``) missing is drawn from ``seed``, sized by the inputs given."""
    import torch

    from nndsl.backends.torch.inputs import draw_missing
    dists = compiled.random_inputs
    missing = [n for n in compiled.input_names if n not in feeds]
    required = [n for n in missing if n not in dists]
    if required:
        raise InputError(f"missing input{'s' if len(required) > 1 else ''} "
                         f"{', '.join(required)}", code="E1101",
                         hint="give each with --input NAME=FILE.npy (or leave out every "
                              "--input to run on example inputs)")
    if missing:
        try:
            feeds.update(draw_missing(compiled.input_types, {n: dists[n] for n in missing},
                                      feeds, torch.Generator().manual_seed(seed)))
        except ValueError as e:
            raise InputError(f"cannot draw the random input `{e}`: its dims are not set by the "
                             f"inputs given", code="E1101", hint=f"pass `{e}` too") from None


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
    _check_onnx_values(specs, inputs, meta)
    try:
        outs = sess.run(None, {k: np.ascontiguousarray(v) for k, v in inputs.items()})
    except Exception as e:
        raise InputError(f"onnxruntime failed: {str(e).splitlines()[0]}", code="E1107") from None
    return {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def _check_onnx_values(specs, inputs: dict, meta: dict) -> None:
    """One size per symbolic dim, the asserts and the id ranges the export recorded."""
    from nndsl.ir.symbols import check_id_range, check_json_constraints, range_from_json
    env: dict[str, int] = {}
    where: dict[str, tuple] = {}
    for s in specs:
        for ax, (d, n) in enumerate(zip(s.shape, inputs[s.name].shape)):
            if not (isinstance(d, str) and d.isidentifier()):
                continue
            if d in env and env[d] != n:
                other, oax = where[d]
                raise InputError(f"dim `{d}` is {env[d]} in `{other}` (dim {oax}) and {n} "
                                 f"in `{s.name}` (dim {ax})", code="E1102",
                                 hint=f"inputs that share `{d}` must agree on its size")
            env[d], where[d] = int(n), (s.name, ax)
    for d, n in env.items():
        if n < 1:
            name, ax = where[d]
            raise InputError(f"input `{name}` is empty: dim {ax} (`{d}`) is {n}",
                             code="E1104", hint="every size must be at least 1")
    try:
        constraints = json.loads(meta.get("nndsl.constraints", "[]"))
        ranges = json.loads(meta.get("nndsl.input_ranges", "{}"))
    except ValueError:
        return            # metadata someone else wrote: nothing to check against
    if isinstance(constraints, list) and all(isinstance(c, list) and len(c) == 4
                                             for c in constraints):
        check_json_constraints(constraints, env, where)
    if not isinstance(ranges, dict):
        return
    for name, rng in ranges.items():
        if name not in inputs:
            continue
        try:
            low, high = range_from_json(rng, env)
        except (NndslError, TypeError, ValueError, IndexError, SyntaxError):
            continue
        check_id_range(name, inputs[name], low, high)


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
                             range_from_json(ranges.get(s.name), env), gen,
                             name=s.name).numpy().astype(dtype)
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
    """The outputs as an ``.npz`` archive (one ``NAME.npy`` per output, as ``numpy.savez``
    writes them, whatever the names), written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in outputs.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, ValueError) as e:
        raise write_error(path, e) from None
