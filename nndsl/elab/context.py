"""What running code sees: the frame of a definition and the context surface functions build in.

A :class:`Frame` is one running model or block body: its variables, the scope that names its
layers, and for a block the tensors it was applied to. A :class:`BuildCtx` is what a built-in
function or layer of :mod:`nndsl.elab.library` sees while it builds IR: it emits ops (typed by
their shape rules), creates parameters (or finds those of a shared layer), records tied-weight
aliases and the value ranges of integer inputs. ``_Return`` carries a block's ``return`` value
out of its body, and ``_join`` spells a qualified name inside a scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.elab.builtins import _describe
from nndsl.elab.values import Instance, TensorVal
from nndsl.errors import ArgumentError, DefinitionError, LimitError, ShapeError, Span
from nndsl.ir.graph import Graph, Node
from nndsl.ir.ops import SIGNATURES, infer, ops_with
from nndsl.ir.symbols import tighter_bound
from nndsl.ir.types import BITS, FLOAT_DTYPES, SymDim, TensorType
from nndsl.limits import MAX_PARAM_ELEMENTS, raise_hint, show_bytes
from nndsl.syntax import ast

SHAPE_ONLY_OPS = ops_with("view")


class _Return(Exception):
    """Unwinds a body at ``return``: the block's result (or, in a model, the statement's span)."""

    def __init__(self, value):
        self.value = value


@dataclass
class Frame:
    """One running model or block body: its variables and the scope that names its layers."""

    env: dict
    scope: str
    definition: ast.Definition
    is_model: bool
    inputs: dict = field(default_factory=dict)  # block: name -> bound TensorVal
    reuse: bool = False
    call_span: Span | None = None  # block: where it was applied


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


class BuildCtx:
    """What a surface function sees while it builds IR: emit ops, create parameters.

    ``el`` is the running :class:`~nndsl.elab.elaborate.Elaborator`; ``scope`` names what the
    context creates, and ``inst`` is the layer being applied (None for a plain function).
    """

    def __init__(self, el, frame: Frame, span: Span, scope: str,
                 inst: Instance | None, reuse: bool = False):
        self.el, self.frame, self.span, self.scope, self.inst = el, frame, span, scope, inst
        self.reuse = reuse
        self.float_dtype = "f32"   # the dtype of the layer's float input: its parameters' dtype

    @property
    def graph(self) -> Graph:
        return self.el.graph

    def error(self, message: str, code: str = "E0300", hint: str | None = None):
        raise ShapeError(message, span=self.span, code=code, hint=hint)

    def param(self, local: str, shape: tuple, init: tuple, dtype: str | None = None,
              trainable: bool = True) -> TensorVal:
        dtype = dtype or self.float_dtype
        g = self.el.root   # parameters live in the model's graph, even when a scan body uses them
        qual = _join(self.scope, local)
        t = TensorType(dtype, tuple(shape))
        if qual in self.graph and self.graph is not g:
            raise DefinitionError(f"`{qual}` names both a parameter and another value",
                                  span=self.span, code="E0502")
        if qual in g:
            node = g.node(qual)
            if node.op != "param":
                raise DefinitionError(f"`{qual}` names both a parameter and another value",
                                      span=self.span, code="E0502")
            if node.type != t:
                raise ShapeError(f"the shared layer `{self.scope}` was built with {local} "
                                 f"{node.type} when first applied; this input would need {t}",
                                 span=self.span, code="E0318",
                                 notes=[("first applied here", node.span)],
                                 hint="a shared layer must see inputs of the same size; use "
                                      "separate layers, or project the inputs to one size")
            if not self.reuse and (self.inst is None or not self.inst.applied):
                raise DefinitionError(f"the parameter `{qual}` is defined twice", span=self.span,
                                      code="E0502", notes=[("first defined here", node.span)])
            tv = TensorVal(node.out(), node.type)
        else:
            numel = 1
            for d in shape:
                if not isinstance(d, int) or d <= 0:
                    raise ShapeError(f"parameter `{qual}` needs positive static dims, got "
                                     f"[{', '.join(map(str, shape))}]", span=self.span,
                                     code="E0315")
                numel *= d
            if numel > MAX_PARAM_ELEMENTS:
                raise LimitError(f"parameter `{qual}` would have {numel:,} elements",
                                 span=self.span, code="E0601",
                                 hint="that is far beyond any real model; check the sizes")
            self._param_bytes(qual, numel * BITS[dtype] // 8, t)
            node = g.add(Node.make(qual, "param", (), {"name": qual, "shape": t.shape,
                                                       "dtype": dtype, "init": init,
                                                       "trainable": trainable},
                                   (t,), self.span, self.scope))
            self.el.grew(node, self.span)
            tv = TensorVal(node.out(), t)
        if self.inst is not None and self.scope == self.inst.qualname:
            self.inst.params.setdefault(local, tv)
        return tv

    def _param_bytes(self, qual: str, size: int, t: TensorType) -> None:
        """Count a new parameter's bytes against ``max_param_bytes``: the error points at the
        parameter that crosses the limit, before anything is allocated."""
        el = self.el
        cap = el.limits.max_param_bytes
        if el.param_bytes + size > cap:
            before = f", after {show_bytes(el.param_bytes)} of parameters before it" \
                if el.param_bytes else ""
            raise LimitError(f"parameter `{qual}` ({t}, {show_bytes(size)}) takes the model's "
                             f"parameters past {show_bytes(cap)}{before}", span=self.span,
                             code="E0608", notes=el._loop_notes(),
                             hint=raise_hint("max_param_bytes", cap, "check the sizes"))
        el.param_bytes += size

    def alias(self, local: str, value: TensorVal) -> None:
        """``{scope}.{local}`` is another name for the parameter ``value`` (tied weights)."""
        node = self.el.producer(value.value)
        if node is not None and node.op == "param":
            self.el.root.meta.setdefault("aliases", {})[_join(self.scope, local)] = node.name

    def emit(self, op: str, inputs: list, attrs: dict, name: str | None = None) -> tuple:
        g = self.graph
        # inside a scan body, a value of an enclosing graph is read through a body input
        inputs = [self.el.local(v) if v is not None else None for v in inputs]
        sig = SIGNATURES[op]
        full = {**sig.attrs, **attrs}
        in_types = [v.type if v is not None else None for v in inputs]
        try:
            types = infer(op, in_types, full)
        except ShapeError as e:
            e.with_span(self.span)
            e.notes.extend(self.el._provenance(inputs, at=self.span))
            raise
        base = name or (self.inst.qualname if (self.inst is not None and self.scope ==
                                               self.inst.qualname) else _join(self.scope, op))
        name = g.fresh_name(base)
        node = g.add(Node.make(name, op, [v.value if v is not None else None for v in inputs],
                               attrs, types, self.span, self.frame.scope))
        self.el.grew(node, self.span)
        return tuple(TensorVal(node.out(i), t) for i, t in enumerate(types))

    def scalar(self, value, like: TensorVal) -> TensorVal:
        dtype = like.type.dtype
        if isinstance(value, float) and dtype not in FLOAT_DTYPES:
            dtype = "f32"
        if isinstance(value, bool):
            dtype = "bool"
        return self.emit("scalar", [], {"value": value, "dtype": dtype})[0]

    def operands(self, vals: list) -> list:
        like = next((v for v in vals if isinstance(v, TensorVal)), None)
        if like is None:
            self.error("at least one operand must be a tensor", code="E0240")
        out = []
        for v in vals:
            if isinstance(v, TensorVal):
                out.append(v)
            elif isinstance(v, (int, float)):  # bools too
                out.append(self.scalar(v, like))
            elif isinstance(v, SymDim):
                self.error(f"a symbolic dim ({v}) cannot be used as a tensor value",
                           code="E0240", hint="use arange/full to make a tensor")
            else:
                raise ArgumentError(f"expected a tensor or a number, got {_describe(v)}",
                                    span=self.span, code="E0240")
        return out

    def binary(self, op: str, a, b) -> TensorVal:
        if op == "matmul" and not (isinstance(a, TensorVal) and isinstance(b, TensorVal)):
            self.error("`@` needs two tensors", code="E0240")
        x, y = self.operands([a, b])
        return self.emit(op, [x, y], {})[0]

    def index_range(self, x: TensorVal, high) -> None:
        """Record that the integer input ``x`` comes from must hold values in [0, high).

        ``high`` is an int or a symbolic dim (node ids index the ``V`` rows of the node
        features). Values reach ``x`` through reshapes and the like, and through every operand
        of a ``concat`` (edges with self-loops appended): each input they come from is bounded.
        """
        for node in self._index_sources(x.value):
            ranges = self.el.root.meta["input_ranges"]
            lo, hi = ranges.get(node.name, (0, high))
            ranges[node.name] = (lo, tighter_bound(hi, high))

    def _index_sources(self, v) -> list:
        node = self.el.source_node(v, SHAPE_ONLY_OPS)
        if node is None:
            return []
        if node.op == "input":
            return [node]
        if node.op == "concat":
            return [n for u in node.inputs if u is not None for n in self._index_sources(u)]
        return []
