"""Cell-level recurrence: ``scan(step, over=xs, init=state, dim=1, steps=n)``.

A scan applies a step block once per time step with one set of weights, carrying state from
step to step and collecting per-step outputs. The step is elaborated once, into a *body*: a
graph of its own whose inputs are the per-step slices of ``over``, the carried state, then every
outer value the step reads (its "captures": parameters, bound tensors such as an encoder's
outputs). The scan is one IR node whose operands are the sequences, the initial state and the
captured values, and whose results are the final state followed by the per-step outputs stacked
along ``dim``. Parameters the step creates live in the model's graph under the step's scope
(``decoder.cell.weight_ih``), so they are ordinary model parameters.

While a body is built, ``self.graph`` is the body and ``self.root`` the model's graph;
:meth:`ScanMixin.local` turns a value of an enclosing graph into a body input the first time the
body reads it. :class:`ScanMixin` holds these methods; the :class:`Elaborator` inherits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.elab.builtins import _describe
from nndsl.elab.context import BuildCtx, _join
from nndsl.elab.values import Instance, TensorVal
from nndsl.errors import ArgumentError, DefinitionError, NndslError, ShapeError, Span
from nndsl.ir.graph import Body, Graph, Node, Value
from nndsl.ir.types import SymDim, TensorType
from nndsl.syntax import ast

STEP_HINT = ("a step is a block applied without its step inputs: `scan(my_step(64) as step, "
             "over=xs, init=h0)`, where `block my_step(hidden: int) { input x ... input h ... "
             "return h2, y }`")


class _BodyGraph(Graph):
    """A scan body being built: fresh names also avoid every name of the enclosing graphs, so
    a value's name says which graph it belongs to (a captured value keeps its outer name)."""

    def __init__(self, name: str, outer: list):
        super().__init__(name)
        self._outer = outer

    def _taken(self, name: str) -> bool:
        return name in self._nodes or any(name in g for g in self._outer)

    def fresh_name(self, hint: str) -> str:
        if not self._taken(hint):
            return hint
        i = self._fresh.get(hint, 1)
        while self._taken(f"{hint}_{i}"):
            i += 1
        self._fresh[hint] = i
        return f"{hint}_{i}"

    def own_name(self, hint: str) -> str:
        """A name free in this graph only (a capture is named after the outer value it reads)."""
        if hint not in self._nodes:
            return hint
        return Graph.fresh_name(self, hint)


@dataclass
class _Body:
    """One body under construction: its graph and the outer values it reads."""

    graph: _BodyGraph
    captures: dict = field(default_factory=dict)   # outer Value -> body Value
    sources: dict = field(default_factory=dict)    # body input name -> outer Value it stands for
    capture_of: dict = field(default_factory=dict)  # capture input name -> the outer Value
    captured: list = field(default_factory=list)   # outer TensorVals, in the order they came in


def _tensors(v) -> tuple | None:
    """``none``, one tensor or a list of tensors, as a tuple; None when it is something else."""
    if v is None:
        return ()
    if isinstance(v, TensorVal):
        return (v,)
    if isinstance(v, tuple) and all(isinstance(x, TensorVal) for x in v):
        return v
    return None


def _block_inputs(defn: ast.Definition) -> list[str]:
    return [s.name for s in defn.body if isinstance(s, ast.InputStmt)]


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


class ScanMixin:
    """Builds ``scan`` nodes for the :class:`Elaborator` (uses its ``graph``, ``root``,
    ``apply`` and ``_name_instance``)."""

    # ------------------------------------------------------------ graph levels
    def _graphs(self) -> list:
        """The model's graph, then each body being built, innermost last."""
        return [self.root] + [b.graph for b in self._bodies]

    def _level_of(self, v: Value, below: int | None = None) -> int | None:
        graphs = self._graphs()
        top = len(graphs) if below is None else below
        return next((i for i in reversed(range(top)) if v.node in graphs[i]), None)

    def producer(self, v: Value) -> Node | None:
        """The node that computes ``v``, in the graph being built or an enclosing one."""
        lvl = self._level_of(v)
        return None if lvl is None else self._graphs()[lvl].node(v.node)

    def source_node(self, v: Value, through: tuple) -> Node | None:
        """Where ``v`` comes from through ops in ``through`` (reshapes and the like) and through
        scan bodies (a step slice is its sequence, a captured value the outer one); None when it
        comes from carried state, which changes from step to step."""
        lvl = self._level_of(v)
        graphs = self._graphs()
        while lvl is not None:
            node = graphs[lvl].node(v.node)
            if node.op in through and node.inputs and node.inputs[0] is not None:
                v = node.inputs[0]
                continue
            if node.op == "input" and lvl > 0:
                src = self._bodies[lvl - 1].sources.get(node.name)
                if src is None:
                    return None
                v, lvl = src, self._level_of(src, below=lvl)
                continue
            return node
        return None

    def local(self, tv: TensorVal) -> TensorVal:
        """``tv`` as a value of the graph being built: a value of an enclosing graph becomes a
        body input the first time a body reads it."""
        if not self._bodies or not isinstance(tv, TensorVal):
            return tv
        b = self._bodies[-1]
        v = tv.value
        if v.node in b.graph and b.capture_of.get(v.node, v) == v:
            return tv       # made in the body (a capture is named after output 0 it reads)
        got = b.captures.get(v)
        if got is None:
            # named after the value it reads (another output of a node gets a name of its own)
            name = b.graph.own_name(v.node) if v.index == 0 else \
                b.graph.fresh_name(f"{v.node}_{v.index}")
            node = b.graph.add(Node.make(name, "input", (), {"name": name, "dtype": tv.type.dtype,
                                                             "shape": tv.type.shape},
                                         (tv.type,), None, ""))
            got = b.captures[v] = node.out()
            b.sources[name] = b.capture_of[name] = v
            b.captured.append(tv)
        return TensorVal(got, tv.type)

    # ------------------------------------------------------------------- scan
    def scan(self, ctx: BuildCtx, a: dict):
        try:
            return self._scan(ctx, a)
        except NndslError as err:
            err.located = True   # its notes are chosen here; no list of every argument's origin
            raise

    def _scan(self, ctx: BuildCtx, a: dict):
        frame, span = ctx.frame, ctx.span
        spans = dict(getattr(self, "last_arg_spans", {}) or {})
        where = lambda k: spans.get(k, span)  # noqa: E731
        inst = self._scan_step(a["step"], where("step"))
        defn: ast.Definition = inst.callee
        over, init = _tensors(a["over"]), _tensors(a["init"])
        for key, val, got in (("over", over, a["over"]), ("init", init, a["init"])):
            if val is None:
                raise ArgumentError(f"scan's `{key}` must be a tensor or a list of tensors, got "
                                    f"{_describe(got)}", span=where(key), code="E0233",
                                    hint="`over` holds the sequences to step through, `init` "
                                         "the initial state: `init=(h0, c0)`")
        dim, steps = a["dim"], a["steps"]
        length = self._scan_length(over, dim, steps, where, spans)
        names = [n for n in _block_inputs(defn) if n not in inst.args]
        if len(names) != len(over) + len(init):
            bound = [n for n in _block_inputs(defn) if n in inst.args]
            raise ArgumentError(
                f"the step `{defn.name}` has {_count(len(names), 'input')} to fill "
                f"({', '.join(names) or 'none'}), but scan passes "
                f"{_count(len(over), 'step of `over`')} and "
                f"{_count(len(init), 'state tensor')} from `init`",
                span=where("step"), code="E0231",
                notes=[(f"`{defn.name}` is defined here", defn.name_span)] +
                      ([(f"bound by name: {', '.join(bound)}", None)] if bound else []),
                hint="a step's free inputs are the slices of `over` (in order), then the carried "
                     "state (one per tensor of `init`); pass any other input by name: "
                     f"`{defn.name}(enc=memory, ...)`")
        qual = self._name_instance(inst, frame, where("step"))
        start = len(self.graph)
        body = _Body(_BodyGraph(defn.name, self._graphs()))
        step_ins = []
        for i, (name, x) in enumerate(zip(names, over + init)):
            t = x.type
            if i < len(over):
                d = dim % t.rank
                t = TensorType(t.dtype, t.shape[:d] + t.shape[d + 1:])
            bname = body.graph.fresh_name(_join(qual, name))
            node = body.graph.add(Node.make(bname, "input", (), {"name": bname, "dtype": t.dtype,
                                                                 "shape": t.shape}, (t,),
                                            where("over" if i < len(over) else "init"), ""))
            if i < len(over):
                body.sources[bname] = x.value
            step_ins.append(TensorVal(node.out(), t))
        outer = self.graph
        self._bodies.append(body)
        self.graph = body.graph
        try:
            result = self.apply(inst, {"__pos__": step_ins}, frame, where("step"))
            res = result if isinstance(result, tuple) else (result,)
            if not all(isinstance(r, TensorVal) for r in res):
                bad = next(r for r in res if not isinstance(r, TensorVal))
                raise ArgumentError(f"the step `{defn.name}` returns {_describe(bad)}; a step "
                                    f"returns tensors: its new state, then its per-step outputs",
                                    span=where("step"), code="E0232",
                                    notes=[(f"`{defn.name}` is defined here", defn.name_span)])
            res = tuple(self.local(r) for r in res)
        finally:
            self.graph = outer
            self._bodies.pop()
        self._check_state(defn, init, res, where, span)
        outs = res[len(init):]
        for k, y in enumerate(outs):
            if not -(y.type.rank + 1) <= dim <= y.type.rank:
                raise ShapeError(f"scan cannot stack the per-step output {k} ({y.type}) along "
                                 f"dim {dim}", span=where("dim"), code="E0319",
                                 hint=f"stacked outputs have rank {y.type.rank + 1}; use a dim "
                                      f"in [{-(y.type.rank + 1)}, {y.type.rank}]")
        g = Graph(defn.name)
        for node in body.graph:
            g.add(node)
        state_names = names[len(over):]
        g.outputs = [(state_names[i] if i < len(init) else f"y{i - len(init)}", r.value)
                     for i, r in enumerate(res)]
        attrs = {"body": Body(g), "n_over": len(over), "n_state": len(init), "dim": dim,
                 "steps": None if over else length}
        made = ctx.emit("scan", list(over) + list(init) + list(body.captured), attrs, name=qual)
        calls = getattr(self, "block_calls", None)
        if calls is not None:   # for unused-result warnings
            self.final_graphs[body.graph] = g
            calls.append((self.graph, start, len(self.graph), qual, "scan", span,
                          [m.value for m in made]))
        return made[0] if len(made) == 1 else tuple(made)

    def _scan_step(self, step, span: Span) -> Instance:
        """The step as a block instance (a bare block name makes a fresh one)."""
        if isinstance(step, ast.Definition) and step.kind == "block":
            return Instance(step, {}, span)
        if isinstance(step, Instance) and isinstance(step.callee, ast.Definition) and \
                step.callee.kind == "block":
            return step
        if isinstance(step, ast.Definition):
            raise ArgumentError(f"scan's step must be a block, not the model `{step.name}`",
                                span=span, code="E0230", hint=STEP_HINT)
        if isinstance(step, TensorVal):
            raise ArgumentError("scan's step must be a block, got a tensor: was the block "
                                "applied to all its inputs already?", span=span, code="E0230",
                                hint="leave the step's per-step inputs and state out: scan "
                                     "passes them; " + STEP_HINT)
        raise ArgumentError(f"scan's step must be a block, got {_describe(step)}", span=span,
                            code="E0230", hint=STEP_HINT)

    def _scan_length(self, over: tuple, dim: int, steps, where, spans: dict):
        """The number of steps: the sequences' length along ``dim`` (all alike), else ``steps``."""
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, SymDim))
                                  or isinstance(steps, int) and steps <= 0):
            raise ArgumentError(f"scan's `steps` must be a positive int or a dim, got "
                                f"{_describe(steps)}", span=where("steps"), code="E0233")
        if not over:
            if steps is None:
                raise ArgumentError("scan needs sequences to step through (`over=xs`) or a "
                                    "number of steps (`steps=20`)", span=where("step"),
                                    code="E0233")
            return steps
        length = None
        for x in over:
            if x.type.rank == 0 or not -x.type.rank <= dim < x.type.rank:
                raise ShapeError(f"scan steps along dim {dim}, which {x.type} does not have",
                                 span=where("dim" if "dim" in spans else "over"),
                                 code="E0319",
                                 hint="`dim` is the time axis of every tensor of `over` "
                                      "(1 for batch-first [N, T, ...])")
            n = x.type.shape[dim % x.type.rank]
            if length is None:
                length = n
            elif not (type(n) is type(length) and n == length):
                raise ShapeError(f"the sequences of `over` differ in length along dim {dim}: "
                                 f"{over[0].type} and {x.type}", span=where("over"),
                                 code="E0319", notes=self._provenance(list(over)))
        if steps is not None and not (type(steps) is type(length) and steps == length):
            raise ShapeError(f"scan has `steps={steps}` but its sequences have {length} steps "
                             f"along dim {dim}", span=where("steps"), code="E0319",
                             hint="leave `steps` out: the length of `over` sets it")
        return length

    def _check_state(self, defn, init: tuple, res: tuple, where, span: Span) -> None:
        """The step returns its new state first: as many tensors as `init`, of the same types."""
        if len(res) < len(init):
            raise ArgumentError(
                f"the step `{defn.name}` returns {_count(len(res), 'tensor')}, but the state has "
                f"{_count(len(init), 'tensor')} (`init`)", span=where("init"), code="E0232",
                notes=[(f"`{defn.name}` is defined here", defn.name_span)],
                hint="a step returns its new state first (one tensor per tensor of `init`), then "
                     "its per-step outputs: `return h2, c2, y`")
        for j, (x, r) in enumerate(zip(init, res)):
            if x.type != r.type:
                which = f"state {j} " if len(init) > 1 else "the state "
                raise ShapeError(
                    f"{which}of scan is {x.type} from `init`, but the step `{defn.name}` "
                    f"returns {r.type} for it", span=where("init"), code="E0319",
                    notes=[(f"`{defn.name}` is defined here", defn.name_span)] +
                    self._provenance([x]),
                    hint="the state a step returns must have the type of the state it gets, so "
                         "that the next step can take it")
        if not res:
            raise DefinitionError(f"the step `{defn.name}` returns nothing", span=span,
                                  code="E0232")
