"""The ways nndsl can run one spec, each built into a call that runs one forward pass.

A :class:`PathSpec` names a path (``torch O1``, ``onnxruntime O2``, ``torch O1 int8-dynamic``),
says which command gives it, and builds it: :meth:`PathSpec.build` compiles the spec at the
path's level and scheme, makes the module or the onnxruntime session, and returns a
:class:`Built` whose ``call()`` runs the model once on inputs fixed at build time. The same
seed gives every path the same inputs and the same weights, so their outputs can be compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

LEVELS = ("O0", "O1", "O2")
SCHEMES = ("int8-dynamic", "int8-static", "int8-weight", "int4-weight", "f16", "bf16")
ORT_LEVEL = "O2"         # onnxruntime runs nndsl's most optimized export


@dataclass
class Options:
    """What every path of one benchmark shares: the spec, its model and parameters, the
    weights, the inputs' batch and dims, the device."""
    spec: str
    model: str | None = None
    params: dict = field(default_factory=dict)
    lib: tuple = ()
    weights: str | None = None
    batch: int = 1
    dims: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    calibrate: str | None = None
    limits: object = None

    def to_json(self) -> dict:
        from dataclasses import asdict
        return {"spec": self.spec, "model": self.model, "params": self.params,
                "lib": list(self.lib), "weights": self.weights, "batch": self.batch,
                "dims": self.dims, "seed": self.seed, "device": self.device,
                "calibrate": self.calibrate,
                "limits": asdict(self.limits) if self.limits is not None else None}

    @classmethod
    def from_json(cls, d: dict) -> "Options":
        from nndsl.limits import Limits
        limits = d.get("limits")
        return cls(**{**d, "lib": tuple(d.get("lib", ())),
                      "limits": Limits(**limits) if limits else None})


@dataclass
class Built:
    call: Callable[[], object]      # one forward pass on the fixed inputs
    outputs: list                   # the first call's outputs, as NumPy arrays
    build_s: float                  # compile + module or session construction
    compile_s: float | None = None  # torch.compile's first call, apart from build_s
    sync: Callable[[], None] = lambda: None   # wait for the device (CUDA) before the clock


@dataclass
class PathSpec:
    name: str
    backend: str                    # "torch" or "onnxruntime"
    opt: str
    scheme: str | None = None       # a --quantize scheme
    compiled: bool = False          # torch.compile
    autocast: str | None = None     # "bf16" / "f16" autocast on CUDA
    int8: str = "u8u8"              # onnxruntime int8-dynamic form
    disable: tuple = ()             # passes left out (--disable-pass)

    def command(self, spec: str) -> str:
        """The command that runs the model this way."""
        q = f" --quantize {self.scheme}" if self.scheme else ""
        q += "".join(f" --disable-pass {d}" for d in self.disable)
        if self.backend == "onnxruntime":
            form = " --onnx-int8 u8s8" if self.int8 != "u8u8" else ""
            return (f"nndsl compile {spec} -{self.opt}{q} --to onnx{form} -o model.onnx && "
                    f"nndsl run model.onnx")
        cmd = f"nndsl run {spec} -{self.opt}{q}"
        if self.compiled:
            return f"{cmd}  (the module under torch.compile)"
        if self.autocast:
            return f"{cmd}  (under torch.autocast, {self.autocast})"
        return cmd

    def build(self, o: Options) -> Built:
        t0 = time.perf_counter()
        c = compile_for(o, self.opt, self.scheme, tuple(self.disable))
        if self.backend == "onnxruntime":
            return _ort(c, o, t0, self.int8)
        return _torch(c, o, t0, self.compiled, self.autocast)


def compile_for(o: Options, opt: str, scheme: str | None = None, disable: tuple = ()):
    import nndsl
    return nndsl.compile(path=o.spec, model=o.model, params=o.params, lib=o.lib, opt=opt,
                         disable=disable,
                         quantize=scheme, weights=o.weights, limits=o.limits,
                         calibrate=o.calibrate if scheme == "int8-static" else None)


def example_inputs(c, o: Options) -> dict:
    """The inputs every path runs on: the spec's example inputs from ``o.seed`` (CPU)."""
    return c.example_inputs(batch=o.batch, seed=o.seed, **o.dims)


def _torch(c, o: Options, t0: float, compiled: bool, autocast: str | None) -> Built:
    import torch
    device = torch.device(o.device)
    m = c.to_torch(seed=o.seed).eval().to(device)
    feeds = {k: v.to(device) for k, v in example_inputs(c, o).items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(autocast)

    def forward(module):
        def call():
            with torch.no_grad():
                if dtype is not None:
                    with torch.autocast(device.type, dtype=dtype):
                        return module(**feeds)
                return module(**feeds)
        return call

    build_s = time.perf_counter() - t0
    compile_s = None
    call = forward(m)
    if compiled:
        call = forward(torch.compile(m))
        t1 = time.perf_counter()
        call()          # torch.compile compiles on the first call
        sync()
        compile_s = time.perf_counter() - t1
    out = call()
    sync()
    return Built(call, _numpy(out), build_s, compile_s, sync)


def _ort(c, o: Options, t0: float, int8: str) -> Built:
    import onnxruntime as ort
    if o.device != "cpu":
        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
        if not providers:
            raise Unavailable("this onnxruntime has no CUDA provider (pip install "
                              "onnxruntime-gpu)")
    else:
        providers = ["CPUExecutionProvider"]
    proto = c.to_onnx(seed=o.seed, int8=int8)
    sess = ort.InferenceSession(proto.SerializeToString(), session_options(),
                                providers=providers)
    feeds = {k: np.ascontiguousarray(v.numpy()) for k, v in example_inputs(c, o).items()}
    build_s = time.perf_counter() - t0

    def call():
        return sess.run(None, feeds)
    return Built(call, _numpy(call()), build_s)


def session_options():
    """onnxruntime's options in a benchmark: as many threads as torch uses, and no spinning
    (idle worker threads that spin would take the cores of the torch path timed next)."""
    import onnxruntime as ort
    import torch
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class Unavailable(Exception):
    """A path this machine or this spec cannot run; the message says why."""


def _numpy(out) -> list:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    res = []
    for v in outs:
        if hasattr(v, "detach"):
            v = v.detach().float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
        res.append(np.asarray(v))
    return res


def plan(device: str, schemes: tuple, compile_: bool = True,
         without: tuple = ()) -> list[PathSpec]:
    """Every path to time, in table order: the levels, O2 without each pass of ``without``,
    torch.compile, onnxruntime, then the quantized schemes on each backend (and autocast on
    CUDA)."""
    paths = [PathSpec(f"torch {lv}", "torch", lv) for lv in LEVELS]
    paths += [PathSpec(f"torch O2 without {w}", "torch", "O2", disable=(w,)) for w in without]
    if compile_:
        paths.append(PathSpec("torch O1 compile", "torch", "O1", compiled=True))
    if device == "cuda":
        paths += [PathSpec(f"torch O1 autocast {d}", "torch", "O1", autocast=d)
                  for d in ("bf16", "f16")]
    paths.append(PathSpec(f"onnxruntime {ORT_LEVEL}", "onnxruntime", ORT_LEVEL))
    for s in schemes:
        paths.append(PathSpec(f"torch O1 {s}", "torch", "O1", scheme=s))
        paths.append(PathSpec(f"onnxruntime O1 {s}", "onnxruntime", "O1", scheme=s))
        if s == "int8-dynamic":
            paths.append(PathSpec(f"onnxruntime O1 {s} u8s8", "onnxruntime", "O1", scheme=s,
                                  int8="u8s8"))
    return paths
