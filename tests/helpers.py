"""Shared helpers for the tests: compile small specs from text, evaluate symbolic types."""

from __future__ import annotations

import nndsl
from nndsl.ir.types import evaluate_dim


def compile_text(text: str, **kw) -> nndsl.Compiled:
    return nndsl.compile(text, **kw)


def concrete(t, env) -> tuple:
    return tuple(int(evaluate_dim(d, env)) for d in t.shape)
