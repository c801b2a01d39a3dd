"""The pass manager: named passes, the pipeline table, verification between passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nndsl.errors import ArgumentError, NndslError, PassError
from nndsl.ir.graph import Graph
from nndsl.ir.verify import verify


@dataclass(frozen=True)
class PassResult:
    graph: Graph
    changed: bool


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[Graph], PassResult]
    level: str
    doc: str


# Passes register here by name. The optimizing passes (fusion, folding, clean-up) are not
# built yet, so every level currently verifies the graph and changes nothing.
PASSES: dict[str, Pass] = {}

PIPELINES: dict[str, tuple[str, ...]] = {
    "O0": (),
    "O1": (),
    "O2": (),
}


def run_pipeline(graph: Graph, level: str = "O1", disable: tuple = ()) -> Graph:
    if level not in PIPELINES:
        raise ArgumentError(f"unknown optimization level `{level}`", code="E0225",
                            hint="use one of " + ", ".join(PIPELINES))
    verify(graph)
    ran: list[str] = []
    for name in PIPELINES[level]:
        if name in disable:
            continue
        p = PASSES[name]
        try:
            result = p.fn(graph)
            verify(result.graph)
        except NndslError:
            raise
        except Exception as e:  # a crashing pass is a compiler bug: say which, after what
            raise PassError(f"pass `{name}` crashed: {type(e).__name__}: {e}", code="E0801",
                            hint="passes that ran before it: " + (", ".join(ran) or "none"))
        graph = result.graph
        ran.append(name)
    return graph
