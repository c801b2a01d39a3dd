"""``nndsl bench``: every way nndsl can run a spec, timed against each other in one process.

:func:`bench` builds each path of :func:`nndsl.bench.paths.plan` (torch at O0, O1 and O2,
``torch.compile``, onnxruntime on the O2 export, the quantized schemes on both backends; on
CUDA also autocast), checks each path's outputs against torch O0's, times them alternately
(:mod:`.measure`), reads each one's peak memory (:mod:`.memory`) and returns a
:class:`Report`: the rows, the fastest path with the command that gives it, and the paths that
cannot be told from it on this machine. :func:`fastest_backend` is the short version that
``nndsl run --backend auto`` uses.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from nndsl.bench.measure import Result, deviation, ratios, time_rounds, verdict
from nndsl.bench.paths import SCHEMES, Options, PathSpec, Unavailable, plan
from nndsl.errors import ArgumentError, NndslError

__all__ = ["Report", "bench", "fastest_backend", "Options", "SCHEMES"]


@dataclass
class Report:
    model: str
    options: Options
    results: list
    reference: str
    rounds: int
    machine: dict = field(default_factory=dict)
    best: Result | None = None
    ties: list = field(default_factory=list)
    noisy: bool = False

    def to_json(self) -> dict:
        return {"model": self.model, "options": self.options.to_json(),
                "reference": self.reference, "rounds": self.rounds, "machine": self.machine,
                "fastest": self.best.name if self.best else None,
                "within_noise": [r.name for r in self.ties], "noisy": self.noisy,
                "paths": [r.to_json() for r in self.results]}


def machine() -> dict:
    import onnxruntime
    import torch
    info = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        pass
    if hasattr(os, "getloadavg"):
        info["load"] = round(os.getloadavg()[0], 2)
    return info


def check_device(device: str) -> None:
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(
            f"--device cuda: this torch ({torch.__version__}) sees no CUDA device",
            code="E1801", hint="run on a machine with an NVIDIA GPU and a CUDA build of torch "
                               "(pip install torch from the CUDA index), or leave out --device")
    if device not in ("cpu", "cuda"):
        raise ArgumentError(f"--device {device}: nndsl bench runs on cpu or cuda", code="E1801")


def schemes_of(text: str | None) -> tuple:
    """``--quantize int8-dynamic,int8-weight`` (or ``none``) as a tuple of schemes."""
    if text is None:
        return ("int8-dynamic",)
    if text.strip() == "none":
        return ()
    out = []
    for s in (p.strip() for p in text.split(",")):
        if s not in SCHEMES:
            raise ArgumentError(f"--quantize {text}: `{s}` is not a scheme",
                                code="E1802", hint="schemes: " + ", ".join(SCHEMES) +
                                " (comma-separated), or none")
        if s not in out:
            out.append(s)
    return tuple(out)


def select(paths: list[PathSpec], skip: tuple) -> list[PathSpec]:
    """The paths whose names share no word with ``skip`` (``--skip compile``, ``--skip O0``,
    ``--skip onnxruntime``, or a whole name)."""
    words = {w for p in paths for w in p.name.split()}
    for s in skip:
        if s not in words and s not in {p.name for p in paths}:
            raise ArgumentError(f"--skip {s}: no path is called that",
                                code="E1803", hint="the words of the paths' names: " +
                                ", ".join(sorted(words)))
    return [p for p in paths if p.name not in skip and not set(p.name.split()) & set(skip)]


def bench(options: Options, *, schemes: tuple = ("int8-dynamic",), compile_: bool = True,
          skip: tuple = (), rounds: int | None = None, budget_s: float = 10.0,
          memory: bool = True, passes: bool = False, progress=None) -> Report:
    """Build, check and time every path; see the module's docstring."""
    from nndsl.bench import memory as mem
    from nndsl.bench.paths import compile_for
    check_device(options.device)
    if rounds is not None and not 1 <= rounds <= 10_000:
        raise ArgumentError(f"--rounds {rounds}: from 1 to 10,000", code="E1804")
    if not 0 < budget_s <= 3600:
        raise ArgumentError(f"--time {budget_s:g}: seconds from 0 to 3,600", code="E1804")
    say = progress or (lambda msg: None)
    model = compile_for(options, "O0")          # the spec's own errors surface here, first
    model.example_inputs(batch=options.batch, seed=options.seed, **options.dims)   # and --dim's
    without = ()
    if passes:      # O2 without each pass that changed this spec's graph: what each one buys
        o2 = compile_for(options, "O2")
        without = tuple(dict.fromkeys(r.name for r in o2.passes
                                      if r.changed and r.name not in ("dce", "prune_params")))
    paths = select(plan(options.device, schemes, compile_, without), tuple(skip))
    if not paths:
        raise ArgumentError("--skip leaves no path to time", code="E1803")
    results, built = [], []
    for p in paths:
        r = Result(p.name, p.command(options.spec))
        results.append(r)
        say(f"building {p.name}")
        if p.scheme == "int8-static" and not options.calibrate:
            r.unavailable = "int8-static calibrates on data: give --calibrate NAME|PATH"
            continue
        try:
            b = p.build(options)
        except (NndslError, Unavailable) as e:
            r.unavailable = _first_line(e)
            continue
        except Exception as e:      # torch.compile without a compiler, an onnxruntime or CUDA
            if not (p.compiled or p.backend == "onnxruntime" or   # kernel missing: the limits
                    options.device != "cpu"):                     # of the machine, not bugs
                raise
            r.unavailable = f"{type(e).__name__}: {_first_line(e)}"
            continue
        r.build_s, r.compile_s = b.build_s, b.compile_s
        built.append((r, b, p))
    if not built:
        raise ArgumentError("no path could run this spec: " +
                            "; ".join(f"{r.name}: {r.unavailable}" for r in results),
                            code="E1805")
    ref, ref_b, _ = next((x for x in built if x[0].name == "torch O0"), built[0])
    for r, b, _ in built:
        r.deviation = deviation(b.outputs, ref_b.outputs)
    say(f"timing {len(built)} paths alternately")
    times = time_rounds([b.call for _, b, _ in built], [b.sync for _, b, _ in built], rounds, budget_s)
    for (r, _, _), t in zip(built, times):
        r.times = t
    ratios([r for r, _, _ in built], ref)
    if memory:
        for r, b, p in built:
            say(f"peak memory of {p.name}")
            if options.device == "cuda":   # torch's allocator does not see onnxruntime's
                r.peak_bytes = mem.cuda_peak(b) if p.backend == "torch" else None
            else:
                r.peak_bytes, r.memory_note = mem.probe(p, options)
    best, ties, noisy = verdict([r for r, _, _ in built])
    return Report(model.name, options, results, ref.name, len(ref.times), machine(), best,
                  ties, noisy)


def fastest_backend(runners: dict, rounds: int = 7) -> tuple[str, str]:
    """Of two built runners (``{"torch": call, "onnxruntime": call}``, each a call that runs
    the model once), the one that is faster over ``rounds`` alternating rounds, and a line
    saying by how much. onnxruntime wins only when faster in more than three rounds of four;
    otherwise torch."""
    a, b = Result("torch", ""), Result("onnxruntime", "")
    a.times, b.times = time_rounds([runners["torch"], runners["onnxruntime"]],
                                   [lambda: None] * 2, rounds, 0.0, min_rounds=rounds)
    ratios([a, b], a)
    if b.low > 1.0:
        return "onnxruntime", (f"auto: onnxruntime, {b.speedup:.2f}× as fast as torch over "
                               f"{rounds} rounds")
    return "torch", (f"auto: torch; onnxruntime ran at {b.speedup:.2f}× its speed over "
                     f"{rounds} rounds")


def _first_line(e: Exception) -> str:
    text = getattr(e, "message", None) or str(e) or type(e).__name__
    return text.strip().splitlines()[0][:300]
