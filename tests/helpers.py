"""Shared helpers for the tests: compile small specs from text, evaluate symbolic types."""

from __future__ import annotations

import nndsl
from nndsl.ir.types import evaluate_dim

# Keyword params that keep the big zoo models fast in tests (reduced width/classes).
SMALL = {
    "resnet18": {"classes": 10, "width": 16},
    "resnet50": {"classes": 10, "width": 16},
    "gpt_mini": {"layers": 2},
}


def compile_text(text: str, **kw) -> nndsl.Compiled:
    return nndsl.compile(text, **kw)


def concrete(t, env) -> tuple:
    return tuple(int(evaluate_dim(d, env)) for d in t.shape)
