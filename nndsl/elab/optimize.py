"""The `optimize` section: a model's compression choices, written in the spec.

    optimize lm {
        quantize = "int8-dynamic"
        keep = ["lm_head"]              # scopes left in float
        prune = "channels=0.5"
        prune_only = ["stages"]         # prune these scopes ...
        prune_exclude = ["stem"]        # ... but never these
    }

(``quantize = "int8-static"`` takes ``calibrate = "digits"`` (or a data path) and
``observer = "minmax" | "moving_average" | "percentile"``.)

Values are literals (strings, numbers, lists of strings); nothing is evaluated. Options given
to ``nndsl.compile`` or on the command line override the section's, entry by entry.
"""

from __future__ import annotations

import difflib

from nndsl.errors import ArgumentError
from nndsl.syntax import ast

# entry -> (the keyword of nndsl.compile it sets, the kind of literal it takes)
ENTRIES = {
    "quantize": ("quantize", "string"),
    "group": ("group", "int"),
    "keep": ("keep", "scopes"),
    "prune": ("prune", "string"),
    "prune_only": ("prune_scopes", "scopes"),
    "prune_exclude": ("prune_exclude", "scopes"),
    "calibrate": ("calibrate", "string"),
    "observer": ("observer", "string"),
}


def _literal(e, kind: str, name: str):
    if kind == "string" and isinstance(e, ast.Str):
        return e.value
    if kind == "int" and isinstance(e, ast.Num) and isinstance(e.value, int):
        return e.value
    if kind == "scopes":
        items = e.items if isinstance(e, (ast.ListLit, ast.TupleLit)) else (e,)
        if all(isinstance(i, ast.Str) for i in items):
            return tuple(i.value for i in items)
    what = {"string": 'a string, e.g. "int8-dynamic"', "int": "an integer",
            "scopes": 'a list of scope names, e.g. ["fc", "stages.0"]'}[kind]
    raise ArgumentError(f"`{name}` in an optimize section takes {what}", span=e.span,
                        code="E0234")


def section_options(section: ast.OptimizeDef) -> tuple[dict, dict]:
    """The section's options as ``nndsl.compile`` keywords, and the span of each (for errors
    that concern an entry)."""
    options, spans = {}, {}
    for entry in section.entries:
        if entry.name not in ENTRIES:
            close = difflib.get_close_matches(entry.name, ENTRIES, n=1)
            raise ArgumentError(f"unknown optimize entry `{entry.name}`",
                                span=entry.name_span or entry.span, code="E0234",
                                hint=(f"did you mean `{close[0]}`? " if close else "") +
                                "entries: " + ", ".join(ENTRIES))
        key, kind = ENTRIES[entry.name]
        if key in options:
            raise ArgumentError(f"`{entry.name}` is set twice", span=entry.span, code="E0234")
        options[key] = _literal(entry.value, kind, entry.name)
        spans[key] = entry.span
    return options, spans
