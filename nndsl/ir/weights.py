"""Matching a checkpoint against the graph's parameters, by name and shape.

Both backends load weights through :func:`match_weights`, so a checkpoint is judged the same
way everywhere: strict by name, tied weights accepted under either name, ``num_batches_tracked``
optional, and every problem listed in one error.
"""

from __future__ import annotations

from typing import Mapping

from nndsl.errors import WeightsError
from nndsl.ir.derive import is_constant
from nndsl.ir.graph import Graph

OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def spec_params(graph: Graph) -> list:
    """The parameters in the spec's names: the unoptimized graph's, which checkpoints hold."""
    return [n for n in graph.meta.get("source_params") or graph.params() if not is_constant(n)]


def match_weights(graph: Graph, weights: Mapping) -> dict:
    """``weights`` renamed to the spec's parameter names (aliases resolved), after checking that
    names and shapes match the spec's parameters exactly. Values are returned untouched."""
    sd = dict(weights)
    for alias, name in graph.meta.get("aliases", {}).items():
        if alias in sd:
            value = sd.pop(alias)
            sd.setdefault(name, value)
    for n in graph.params():     # folded constants: buffers of a saved module, not weights
        if is_constant(n):
            sd.pop(n.name, None)
    err = mismatch_error({n.name: tuple(n.type.shape) for n in spec_params(graph)}, sd)
    if err is not None:
        raise err
    return sd


def mismatch_error(own: dict, sd: Mapping) -> WeightsError | None:
    """One error listing every missing, unexpected and mis-shaped tensor, or None."""
    missing = [k for k in own if k not in sd and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k}: expected {list(own[k])}, got {list(sd[k].shape)}"
             for k in own if k in sd and tuple(sd[k].shape) != own[k]]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected: " + ", ".join(unexpected))
    if wrong:
        parts.append("wrong shape: " + "; ".join(wrong))
    return WeightsError("the weights do not match the spec\n  " + "\n  ".join(parts),
                        code="E1001", hint="weights are keyed by the spec's parameter names; "
                                           "see `nndsl inspect --params`")
