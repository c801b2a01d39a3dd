"""The abstract syntax tree of a .nn file. Every node carries the :class:`Span` it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.errors import Span


@dataclass(frozen=True)
class Node:
    span: Span = field(compare=False, repr=False)


# ---- expressions ----

@dataclass(frozen=True)
class Num(Node):
    value: int | float


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Const(Node):
    """``true``, ``false`` or ``none``."""

    value: bool | None


@dataclass(frozen=True)
class TupleLit(Node):
    items: tuple


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple


@dataclass(frozen=True)
class IfExpr(Node):
    cond: Node
    then: Node
    other: Node


@dataclass(frozen=True)
class BinOp(Node):
    """Arithmetic (``+ - * / // % @ **``), comparisons and ``and``/``or``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True)
class Pipe(Node):
    """``value |> target``: call ``target`` with ``value`` as its first argument."""

    value: Node
    target: Node


@dataclass(frozen=True)
class Arg(Node):
    name: str | None
    value: Node


@dataclass(frozen=True)
class Call(Node):
    func: Node
    args: tuple  # of Arg


@dataclass(frozen=True)
class SliceExpr(Node):
    start: Node | None
    stop: Node | None
    step: Node | None


@dataclass(frozen=True)
class EllipsisExpr(Node):
    pass


@dataclass(frozen=True)
class Index(Node):
    value: Node
    subscripts: tuple


@dataclass(frozen=True)
class Attr(Node):
    value: Node
    name: str


@dataclass(frozen=True)
class Named(Node):
    """``call as name``: give a layer instance an explicit scope name."""

    value: Node
    name: str


# ---- statements ----

@dataclass(frozen=True)
class TensorTypeExpr(Node):
    dtype: str
    dims: tuple | None  # of expression nodes / EllipsisExpr; None = any shape


@dataclass(frozen=True)
class InputStmt(Node):
    name: str
    type: TensorTypeExpr | None
    dist: Node | None = None    # `~ normal()`: the distribution of a random input


@dataclass(frozen=True)
class ParamStmt(Node):
    name: str
    type: TensorTypeExpr
    init: Node | None


@dataclass(frozen=True)
class AssignStmt(Node):
    targets: tuple  # of str
    value: Node


@dataclass(frozen=True)
class OutputStmt(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class ReturnStmt(Node):
    values: tuple


@dataclass(frozen=True)
class AssertStmt(Node):
    cond: Node
    message: Node | None


@dataclass(frozen=True)
class ForStmt(Node):
    label: str | None
    targets: tuple  # of str
    destructure: bool
    iterable: Node
    body: tuple


@dataclass(frozen=True)
class RepeatStmt(Node):
    label: str | None
    count: Node
    body: tuple


@dataclass(frozen=True)
class IfStmt(Node):
    cond: Node
    body: tuple
    orelse: tuple | None


# ---- top level ----

@dataclass(frozen=True)
class ParamDef(Node):
    name: str
    type: str | None
    default: Node | None


@dataclass(frozen=True)
class Definition(Node):
    """A ``block`` or a ``model``: a parametric graph fragment."""

    kind: str  # "block" | "model"
    name: str
    params: tuple  # of ParamDef
    body: tuple
    name_span: Span = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class TrainTarget(Node):
    """``target NAME: TYPE`` in a train section: a typed training target."""

    name: str
    type: TensorTypeExpr


@dataclass(frozen=True)
class TrainEntry(Node):
    """``NAME = expr`` in a train section. The value is kept as an expression: the trainer
    interprets it (it is never evaluated as Python)."""

    name: str
    value: Node
    name_span: Span = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class TrainDef(Node):
    """``train MODEL { ... }``: how to train a model, defined here or in an imported file."""

    model: str
    targets: tuple  # of TrainTarget
    entries: tuple  # of TrainEntry, in written order
    name_span: Span = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class OptimizeDef(Node):
    """``optimize MODEL { ... }``: how to compress a model (quantization, pruning)."""

    model: str
    entries: tuple  # of TrainEntry (``NAME = value``), in written order
    name_span: Span = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class SearchLimit(Node):
    """``params <= 200_000`` in a search section: a quantity, a comparison and its bound (an
    expression of numbers, read by :mod:`nndsl.elab.space`)."""

    quantity: str
    op: str
    value: Node
    quantity_span: Span = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class SearchDef(Node):
    """``search MODEL { ... }``: the limits a configuration of ``nndsl search`` must keep."""

    model: str
    limits: tuple  # of SearchLimit, in written order
    name_span: Span = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class Import(Node):
    target: str
    is_file: bool


@dataclass(frozen=True)
class Module(Node):
    file: str
    imports: tuple
    definitions: tuple
    trains: tuple = ()  # of TrainDef
    optimizes: tuple = ()  # of OptimizeDef
    searches: tuple = ()  # of SearchDef
