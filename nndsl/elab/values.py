"""The values an elaboration computes with: compile-time constants, tensors, callables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from nndsl.errors import Span
from nndsl.ir.graph import Value
from nndsl.ir.types import TensorType


@dataclass(frozen=True)
class TensorVal:
    """A tensor in the graph being built: the IR value and its type."""

    value: Value
    type: TensorType


@dataclass(frozen=True)
class DType:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class SymCond:
    """A comparison that involves symbolic dims and so cannot be decided at compile time."""

    op: str
    left: Any
    right: Any

    def __str__(self) -> str:
        if self.op == "divisible":
            return f"{self.left} % {self.right} == 0"
        if self.op == "not_divisible":
            return f"{self.left} % {self.right} != 0"
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a surface function or layer: name, kind, default (``REQUIRED``)."""

    name: str
    kind: str
    default: Any = None


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Surface:
    """A built-in function or layer of the language (``relu``, ``linear``, ``conv2d``...).

    ``params`` lists tensor operands first (kinds ``tensor``/``tensors``), then options.
    ``build(ctx, args)`` emits IR through ``ctx``; layers (``weights=True``) create their
    parameters through ``ctx.param``. ``numeric`` computes the result on plain numbers.
    """

    name: str
    params: tuple
    build: Callable
    weights: bool = False
    numeric: Callable | None = None
    doc: str = ""

    @property
    def tensor_params(self) -> tuple:
        return tuple(p for p in self.params if p.kind in ("tensor", "tensors", "operand"))


@dataclass
class Instance:
    """A layer or block with its options bound, not yet (or already) applied to tensors.

    Applying an instance twice reuses its parameters: that is how weights are shared.
    """

    callee: Any  # Surface or ast.Definition
    args: dict
    span: Span
    name: str | None = None
    qualname: str | None = None
    applied: int = 0
    params: dict = field(default_factory=dict)  # local name -> TensorVal (after first use)
    arg_spans: dict = field(default_factory=dict)  # argument name -> where it was written


@dataclass(frozen=True)
class Partial:
    """A parameterless function with options bound, waiting for its tensor operands."""

    callee: Surface
    args: dict
    span: Span


@dataclass(frozen=True)
class Builtin:
    """A compile-time function on plain values (``range``, ``len``, ``zip``...)."""

    name: str
    fn: Callable
