"""The pass manager: the registry of named passes and the one table of pipelines.

A pass is ``fn(graph) -> (graph, changed)``; it never mutates its input. ``verify`` runs before
the first pass and after every pass; a pass that crashes is reported with the passes that ran
before it. The CLI (``-O``, ``--disable-pass``, ``--print-after``, ``nndsl passes``), the API
(``nndsl.compile(opt=...)``) and the tests all read :data:`PIPELINES`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from nndsl.errors import ArgumentError, NndslError, PassError
from nndsl.gc_pause import paused_gc
from nndsl.ir.graph import Body, Graph, body_of
from nndsl.ir.verify import verify
from nndsl.passes import cleanup, fold, fusion, inference
from nndsl.passes.rewrite import collecting


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[Graph], tuple]
    doc: str          # one line for `nndsl passes` (the level that runs it: level_of)
    inference_only: bool = False
    bodies: bool = True   # also run on the bodies of `scan` nodes (compression: the model only)


def _p(name, fn, doc, inference_only=False) -> Pass:
    return Pass(name, fn, doc, inference_only)


PASSES: dict[str, Pass] = {p.name: p for p in [
    _p("constant_fold", cleanup.constant_fold, "scalar arithmetic on constants becomes a constant"),
    _p("simplify", cleanup.simplify, "x*1, x+0, double transposes, reshape chains, no-op ops"),
    _p("cse", cleanup.cse, "one node per distinct computation"),
    _p("fuse_formulas", fusion.fuse_formulas, "GELU, SiLU and layer norm written as formulas become the op"),
    _p("fuse_attention", fusion.fuse_attention, "softmax(QKᵀ·s)V from primitives becomes fused attention (SDPA)"),
    _p("fuse_epilogue", fusion.fuse_epilogue, "an activation after a linear/conv runs inside it"),
    Pass("fold_constant_tensors", fold.fold_constant_tensors,
         "constant tensors (masks, position tables) computed once, into buffers", bodies=False),
    _p("dce", cleanup.dce, "drop computations no output depends on"),
    _p("remove_dropout", inference.remove_dropout, "dropout is the identity in eval mode", True),
    _p("fold_batch_norm", inference.fold_batch_norm, "batch norm folded into the conv/linear before it", True),
    _p("clamp_bounds", inference.clamp_bounds, "maximum/minimum with constant bounds (ReLU6 written out) become one clamp", True),
    _p("fold_scale", inference.fold_scale, "a constant factor after a conv/linear folded into its weights", True),
    _p("merge_parallel_linears", inference.merge_parallel_linears, "linears on one input (Q, K, V) become one linear + split", True),
    _p("channels_last", inference.channels_last, "NHWC memory layout through 2-d convolutions", True),
    _p("prune_params", inference.prune_params, "drop parameters nothing reads any more", True),
]}

_O1 = ("constant_fold", "simplify", "cse", "fuse_formulas", "fuse_attention", "fuse_epilogue",
       "fold_constant_tensors", "dce")
PIPELINES: dict[str, tuple[str, ...]] = {
    "O0": (),
    "O1": _O1,
    "O2": _O1[:-1] + ("remove_dropout", "simplify", "fold_batch_norm", "fold_scale", "clamp_bounds", "merge_parallel_linears",
                      "fuse_epilogue", "channels_last", "prune_params", "dce"),
}


def level_of(name: str) -> str:
    """The lowest pipeline that runs the pass ``name``."""
    return next(level for level, passes in PIPELINES.items() if name in passes)


def run_pass(fn: Callable[[Graph], tuple], graph: Graph) -> tuple[Graph, bool]:
    """``fn`` on the bodies of ``scan`` nodes (innermost first), then on ``graph``. A body is
    optimized like a graph of its own: its inputs and the types of its outputs stay."""
    rebuilt, inner = None, False
    for i, node in enumerate(graph):
        body = body_of(node)
        if body is None:
            continue
        new_body, changed = run_pass(fn, body.graph)
        if not changed:
            continue
        if rebuilt is None:
            rebuilt = list(graph)
        new_body.meta = {k: v for k, v in new_body.meta.items() if k != "regions"}
        attrs = {k: (Body(new_body) if isinstance(v, Body) else v) for k, v in node.attrs}
        rebuilt[i] = node.with_(attrs=attrs)
        inner = True
    if rebuilt is not None:
        g = Graph(graph.name)
        for node in rebuilt:
            g.add(node)
        g.outputs = list(graph.outputs)
        g.meta = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in graph.meta.items()}
        graph = g
    out, changed = fn(graph)
    return out, changed or inner


@dataclass
class PassRecord:
    name: str
    changed: bool
    seconds: float
    graph: Graph
    cpu_seconds: float = 0.0   # the CPU time of the pass and the verify after it
    decisions: list | None = None   # its rules' decisions (rewrite.Decision), when explaining;
                                    # None for a pass that does not run on the rule driver


@dataclass
class PipelineRun:
    graph: Graph
    records: list = field(default_factory=list)


def run_pipeline(graph: Graph, level: str = "O1", disable: tuple = (), stop_after: str | None = None,
                 on_pass: Callable[[PassRecord], None] | None = None,
                 before: list = (), after: list = ()) -> PipelineRun:
    """Run the passes of ``level`` in order, verifying after each. ``stop_after`` ends the run
    after the first pass of that name; ``on_pass`` sees every pass's result. ``before`` and
    ``after`` are :class:`Pass` es run before and after the level's own (compression:
    :mod:`nndsl.passes.compress`)."""
    with paused_gc():
        return _run_pipeline(graph, level, disable, stop_after, on_pass, before, after)


def _run_pipeline(graph, level, disable, stop_after, on_pass, before, after) -> PipelineRun:
    if level not in PIPELINES:
        raise ArgumentError(f"unknown optimization level `{level}`", code="E0225",
                            hint="use one of " + ", ".join(PIPELINES))
    extra = [p.name for p in list(before) + list(after)]
    for name in tuple(disable) + ((stop_after,) if stop_after else ()):
        if name not in PASSES and name not in extra:
            raise ArgumentError(f"unknown pass `{name}`", code="E0264",
                                hint="passes: " + ", ".join(list(PASSES) + extra))
    if stop_after and stop_after not in PIPELINES[level] and stop_after not in extra:
        raise ArgumentError(f"pass `{stop_after}` is not in the {level} pipeline", code="E0264",
                            hint=f"{level} runs: " + (", ".join(PIPELINES[level]) or "nothing"))
    verify(graph)
    graph = graph.copy()
    graph.meta.setdefault("source_params", tuple(graph.params()))
    if any(PASSES[n].inference_only for n in PIPELINES[level]) or \
            any(p.inference_only for p in list(before) + list(after)):
        graph.meta["inference_only"] = True
    run = PipelineRun(graph)
    ran: list[str] = []
    steps = [p for p in list(before) + [PASSES[n] for n in PIPELINES[level]] + list(after)
             if p.name not in disable]
    for p in steps:
        name, fn = p.name, p.fn
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with collecting() as log:
                out, changed = run_pass(fn, graph) if p.bodies else fn(graph)
            if changed or out is not graph:
                verify(out)
        except NndslError as e:
            if e.code.startswith("E07"):     # verify failed: the pass broke an invariant
                e.message = f"after pass `{name}` (ran before it: {', '.join(ran) or 'none'}): " \
                            f"{e.message}"
            raise
        except Exception as e:  # a crashing pass is a compiler bug: say which, after what
            raise PassError(f"pass `{name}` crashed: {type(e).__name__}: {e}", code="E0801",
                            hint="passes that ran before it: " + (", ".join(ran) or "none")
                                 + "; disable it with --disable-pass " + name) from e
        record = PassRecord(name, changed, time.perf_counter() - t0, out,
                            time.process_time() - c0, list(log) if log is not None and log.driven else None)
        run.records.append(record)
        if on_pass is not None:
            on_pass(record)
        graph = out
        ran.append(name)
        if name == stop_after:
            break
    run.graph = graph
    return run
