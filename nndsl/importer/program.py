"""What an import builds before it is printed: the spec as statements, and its weights.

A :class:`Program` is one model: its inputs (names and types), its statements in order (each
one assignment, a pipeline ``x |> f(...) as layer`` or a plain expression), its outputs, the
helper blocks it uses (``lrn``) and the weights of its layers and parameters, keyed by the
parameter names the spec gives them (``layer1_0_conv1.weight``). :mod:`nndsl.importer.printer`
writes it as ``.nn`` text; nothing here knows ONNX.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from nndsl.ir.types import SymDim

KEYWORDS = frozenset("""model block input output param for in repeat if else return assert
import true false none and or not as train optimize target inf pi""".split())
DTYPES = frozenset("f32 f16 bf16 f64 i64 i32 i16 i8 u8 bool".split())


def reserved_names() -> frozenset:
    """Names a generated variable, layer or dim must not take: keywords, dtypes, built-in
    functions and layers, compile-time helpers."""
    from nndsl.elab.builtins import BUILTINS
    from nndsl.elab.library import SURFACE
    return KEYWORDS | DTYPES | frozenset(SURFACE) | frozenset(BUILTINS)


def identifier(text: str, fallback: str = "x") -> str:
    """``text`` as an nndsl name: other characters become ``_``, runs of ``_`` one, and a name
    that would start with a digit gets ``fallback`` in front."""
    s = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    s = re.sub(r"_+", "_", s)
    if not s:
        return fallback
    if s[0].isdigit():
        s = f"{fallback}{s}"
    return s


class Namer:
    """Unique names in one namespace, avoiding the reserved ones; deterministic."""

    def __init__(self, reserved: frozenset):
        self.reserved = reserved
        self.taken: set[str] = set()

    def take(self, hint: str, fallback: str = "x") -> str:
        base = identifier(hint, fallback)
        name, i = base, 1
        while name in self.taken or name in self.reserved or name.startswith("__"):
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        return name


@dataclass
class Stmt:
    """``targets = expr``. ``head`` is the variable piped into ``call`` (``head |> call``), or
    None when ``call`` is the whole expression. ``reads`` are the variables it reads."""

    targets: list
    call: str
    head: str | None = None
    reads: list = field(default_factory=list)
    comment: str | None = None
    # for peepholes (a MatMul's linear taking the Add's bias): what the statement made
    kind: str = ""
    info: dict = field(default_factory=dict)
    # the module instance the statement belongs to (``layer1.0``: see nndsl.importer.blocks);
    # "" at the top level, None where the file does not say (filled from the one before)
    key: str | None = ""
    dtypes: list = field(default_factory=list)    # of the targets
    shapes: list = field(default_factory=list)    # of the targets (None: unknown)


@dataclass
class Program:
    name: str
    inputs: list = field(default_factory=list)        # (name, dtype, dims)
    onnx_inputs: list = field(default_factory=list)   # the ONNX names of the inputs, in order
    params: list = field(default_factory=list)        # (name, dtype, dims, comment)
    stmts: list = field(default_factory=list)
    outputs: list = field(default_factory=list)       # (name, expr text)
    blocks: list = field(default_factory=list)        # names of helper blocks used (lrn)
    defs: list = field(default_factory=list)          # block definitions found, as text
    weights: dict = field(default_factory=dict)       # spec parameter name -> np.ndarray
    header: list = field(default_factory=list)        # comment lines at the top


def dim_text(d) -> str:
    return str(d) if isinstance(d, (int, SymDim)) else str(d)


def dims_text(dims) -> str:
    return "[" + ", ".join(dim_text(d) for d in dims) + "]"


def number(v, dtype: str = "f32") -> str:
    """A number as the spec writes it: the shortest text that reads back to the same value of
    ``dtype`` (``1e-05`` for float32's 9.99999974737875e-06)."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if dtype in ("f32", "f16", "bf16", "f64") or isinstance(v, (float, np.floating)):
        f = float(v)
        if np.isinf(f):
            return "inf" if f > 0 else "-inf"
        if np.isnan(f):
            raise ValueError("nan has no literal")
        kind = np.float64 if dtype == "f64" else np.float32
        text = np.format_float_positional(kind(f), unique=True, trim="0")
        sci = np.format_float_scientific(kind(f), unique=True, trim="-").replace("e+", "e")
        return text if len(text) <= len(sci) + 2 else sci
    return str(int(v))
