"""Warnings for what a spec writes and nothing uses (W0101–W0301), found on the elaborated
graph before any pass: the optimizer's dead-code elimination would hide them. The elaborator
records, while it runs, what the findings need (block applications, `param` statements, model
parameters read, shadowed or named only in code not run); this mixin turns that into
:class:`~nndsl.errors.NndslWarning`s.
"""

from __future__ import annotations

from nndsl.errors import NndslWarning
from nndsl.ir.graph import Graph, Node, body_of


class UnusedMixin:
    def _unused_warnings(self) -> list:
        """What the spec writes and nothing uses, found on the elaborated graph before any pass
        (the optimizer's dead-code elimination would hide it): layers, blocks and values no
        output depends on (W0101, W0103), `param`s (W0102), model inputs (W0201), and model
        parameters never read (W0301)."""
        found: list = []
        self._unused_in(self.root, lambda n: n if n.op == "param" else None, found)
        out = _merge(found)
        model = self.model_defn.name
        for name, p in self.unread_params.items():
            if name in self.skipped_names:
                continue
            out.append(NndslWarning(
                "W0301", f"model parameter `{name}` is never read: its value changes nothing",
                p.span, hint=f"remove it, or use it in `{model}`",
                subject=name))
        for name, (p, where) in self.shadowed_params.items():
            if name in self.skipped_names:
                continue
            out.append(NndslWarning(
                "W0301", f"model parameter `{name}` is reassigned before it is read: its value "
                         f"changes nothing", p.span, notes=[("reassigned here", where)],
                hint="give the new value another name, or read the parameter first",
                subject=name))
        return sorted(out, key=_warning_order)

    def _unused_in(self, g: Graph, param_of, found: list) -> None:
        """Findings in ``g`` (the model's graph or a scan body): ``param_of(node)`` is the model
        parameter a node stands for (itself, or the one a body input captures), or None."""
        nodes = list(g)
        live: set = set()
        stack = [v.node for _, v in g.outputs]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(v.node for v in g.node(n).inputs if v is not None)
        for n in nodes:   # a live scan's body: what the step computes and does not return
            b = body_of(n)
            if b is not None and n.name in live:
                self._unused_in(b.graph, _captured_param(b.graph, n, g, param_of), found)
        dead = {n.name for n in nodes if n.name not in live}
        if not dead:
            return
        pos = {n.name: i for i, n in enumerate(nodes)}
        users: dict = {}
        for n in nodes:
            for v in n.inputs:
                if v is not None:
                    users.setdefault(v.node, set()).add(n.name)
        live_spans = {n.span for n in nodes if n.name in live}
        claimed: set = set()

        def region(starts, inside=lambda name: True) -> set:
            got, todo = set(), list(starts)
            while todo:
                name = todo.pop()
                if name in got or name not in dead or name in claimed or not inside(name):
                    continue
                got.add(name)
                todo.extend(v.node for v in g.node(name).inputs if v is not None)
            return got

        def params_in(names) -> dict:
            ps = {}
            for name in names:
                p = param_of(g.node(name))
                if p is not None:
                    ps[p.name] = p
            return ps

        # a block (or scan) application whose results are not all used: the nodes only those
        # results need are the caller's finding, at the call; the widest application first
        calls = [(i, c) for i, c in enumerate(self.block_calls)
                 if self.final_graphs.get(c[0], c[0]) is g]
        calls.sort(key=lambda ic: (ic[1][1] - ic[1][2], -ic[0]))
        for _, (_, start, end, qual, block, span, outs) in calls:
            unused = [k for k, v in enumerate(outs) if v.node in dead]
            if not unused:
                continue
            got = region([outs[k].node for k in unused],
                         lambda name: start <= pos[name] < end)
            if not got:
                continue
            claimed |= got
            found.append(("block", span, qual, {"block": block, "unused": tuple(unused),
                                                "n": len(outs), "params": params_in(got),
                                                "loop": span in live_spans}))
        layers: dict = {}
        for n in nodes:
            if n.name not in dead or n.name in claimed:
                continue
            p = param_of(n)
            if p is not None:
                if p.name in self.param_stmts:
                    found.append(("param", p.span, p.name, {"params": {p.name: p}}))
                else:
                    layers.setdefault(p.scope, {})[p.name] = (p, n)
            elif n.op == "input" and g is self.root:
                found.append(("input", n.span, n.name, {"feeds": bool(users.get(n.name))}))
        for scope, ps in layers.items():
            first_p, first_n = next(iter(ps.values()))
            span = first_n.span or first_p.span
            found.append(("layer", span, scope, {"params": {k: p for k, (p, _) in ps.items()},
                                                 "loop": span in live_spans}))
        for n in nodes:
            if n.name in dead and n.name not in claimed and not users.get(n.name) and \
                    n.op not in ("input", "param") and n.span is not None:
                got = region([n.name])
                if not params_in(got):
                    found.append(("value", n.span, n.op, {}))
                claimed |= got


def _captured_param(body: Graph, node: Node, outer: Graph, param_of):
    """``param_of`` for a scan body: its inputs stand for the scan node's operands, in order."""
    stands = {name: v for name, v in zip(body.inputs, node.inputs) if v is not None}

    def of(n: Node):
        v = stands.get(n.name) if n.op == "input" else None
        return param_of(outer.node(v.node)) if v is not None else None
    return of


def _trainable(params: dict) -> int:
    total = 0
    for p in params.values():
        if p.attr.get("trainable", True):
            k = 1
            for d in p.type.shape:
                k *= d if isinstance(d, int) else 1
            total += k
    return total


def _names(names: list) -> str:
    shown = [f"`{n}`" for n in names[:3]]
    if len(names) > 3:
        return ", ".join(shown) + f" and {len(names) - 3} more"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


_LOOP_HINT = ("the same line's result is used in other iterations of its loop: compute it only "
              "in the iterations that use it (under an `if`), or use it after the loop")


def _merge(found: list) -> list:
    """One warning per kind and place: a line in a loop that is unused in several iterations
    (or several loop iterations' layers) is one warning that names them all."""
    groups: dict = {}
    for kind, span, subject, info in found:
        key = (kind, span, info.get("block"), info.get("unused"))
        g = groups.setdefault(key, {"subjects": [], "params": {}, "loop": False, "info": info})
        if subject not in g["subjects"]:
            g["subjects"].append(subject)
        g["params"].update(info.get("params", {}))
        g["loop"] |= bool(info.get("loop"))
    out = []
    for (kind, span, _, _), g in groups.items():
        subjects, info = g["subjects"], g["info"]
        n_params = _trainable(g["params"])
        one = n_params == 1
        counted = (f": {'its' if len(subjects) == 1 else 'their'} {n_params:,} "
                   f"{'parameter is' if one else 'parameters are'} counted but "
                   f"{'affects' if one else 'affect'} no output") if n_params else ""
        hint = _LOOP_HINT if g["loop"] else None
        if kind == "layer":
            what = (f"the result of layer {_names(subjects)} is never used" if len(subjects) == 1
                    else f"the results of the layers {_names(subjects)} are never used")
            out.append(NndslWarning("W0101", what + counted, span,
                                    hint=hint or "use its result, or remove the layer",
                                    subject=subjects[0]))
        elif kind == "block":
            block, unused, n = info["block"], info["unused"], info["n"]
            callee = "`scan`" if block == "scan" else f"block `{block}`"
            if len(unused) == n:
                what = f"the result of {callee} ({_names(subjects)}) is never used"
            else:
                which = " and ".join(str(k + 1) for k in unused)
                many = len(unused) > 1
                what = (f"result{'s' if many else ''} {which} of the {n} that {callee} "
                        f"({_names(subjects)}) returns {'are' if many else 'is'} never used")
            out.append(NndslWarning("W0101" if n_params else "W0103", what + counted, span,
                                    hint=hint or "use the result, or remove the call",
                                    subject=subjects[0]))
        elif kind == "param":
            out.append(NndslWarning("W0102", f"`param {subjects[0].rsplit('.', 1)[-1]}` is never "
                                    f"used{counted}", span, subject=subjects[0],
                                    hint="use it, or remove the declaration"))
        elif kind == "input":
            what = (f"input `{subjects[0]}` only feeds values that are never used"
                    if info["feeds"] else f"input `{subjects[0]}` is never used")
            out.append(NndslWarning("W0201", what + ": no output depends on it", span,
                                    subject=subjects[0],
                                    hint="remove the input, or use it"))
        else:
            out.append(NndslWarning("W0103", f"the result of `{subjects[0]}` is never used",
                                    span, subject=subjects[0],
                                    hint="use it, or remove it (the optimizer drops it at -O1)"))
    return out


def _warning_order(w: NndslWarning):
    s = w.span
    return (s.file, s.line, s.col, w.code) if s is not None else ("", 0, 0, w.code)
