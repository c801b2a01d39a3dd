"""The generator proper: a typed graph written as a standalone ``model.py``.

:func:`generate_source` writes one ``nn.Module`` class per block (from the regions the
elaborator recorded; the specializations of one block are merged by :mod:`.generalize`, their
differing values constructor arguments) and a model class named after the model, whose
parameter names are the spec's, so the weights load with ``strict=True``;
:func:`write_package` writes that source and the weights as ``weights.safetensors``. Each
``forward`` (a :class:`_Function`) walks its nodes in graph order, one line and one variable per
op with the value's shape as a comment, binding symbolic dims from the inputs' shapes. The code
is specialized to the parameter values the spec was compiled with, and its constructors refuse
any others (a block class whose specializations could not be merged, and the model's
parameters). When the structure cannot be expressed, the generator falls back to flatter forms:
without block classes, then without layer modules.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from nndsl.backends.torch.init import INITIALIZERS
from nndsl.backends.torch.codegen.generalize import (
    ARG_DIMS, COMMENT_DIMS, generalize, generalize_model, wrap_line)
from nndsl.backends.torch.codegen.layers import _find_layers, _static
from nndsl.backends.torch.codegen.loops import loop_lines
from nndsl.backends.torch.codegen.ops import HELPERS as OP_HELPERS
from nndsl.backends.torch.codegen.ops import _OUTPUT_SUFFIXES, TORCH_CODEGEN, Emitted, OpSource
from nndsl.backends.torch.codegen.regions import (
    _build_tree, _children, _effective_parent, _parse_regions, _Region, _settle, _step, _TNode,
    _validate)
from nndsl.backends.torch.codegen.source import (
    _HARD_RESERVED, TORCH_DTYPES, _docstring, _ident, _is_attr_name, _Names, _shape_text,
    _str_lit, _Unsupported, camel_case, py_literal)
from nndsl.errors import LoweringError, span_line
from nndsl.fsutil import atomic_write_bytes, atomic_write_text
from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.types import SymDim, TensorType, storage_shape


# ---- one forward ----

class _Function:
    """The body of one ``forward``: values to expressions, symbol binding, lines."""

    def __init__(self, gen: _Generator, cls: _TNode, prefix: str, region: _Region | None):
        self.gen = gen
        self.graph = gen.graph  # the graph being written: the model's, or a scan body's
        self.cls = cls  # the class's node in the module tree
        self.prefix = prefix  # the class's scope ("" for the model)
        self.region = region  # the block application it is written from (None for the model)
        self.names = _Names(gen.class_names | gen.symbols)
        self.vals: dict[Value, str] = {}
        self.consts: set[Value] = set()
        self.sites: list[tuple[str, TensorType]] = []  # tensors whose dims can bind symbols
        self.args: list[str] = []
        self.sym_names: dict[str, str] = {}
        self.bound: set[str] = set()
        self.top_bindings: list[tuple[str, str]] = []
        self.extra: list[tuple[str, str]] = []  # (symbol, keyword) a caller must pass
        self.pending: list[str] = []
        self.lines: list[str] = []
        self.preferred: dict[Value, str] = {}

    # ---- names and values ----
    def add_arg(self, want: str, v: Value | None, t: TensorType | None) -> str:
        """A new argument of ``forward``, holding value ``v`` of type ``t``."""
        name = self.names.take(want, shadow_builtins=True)
        self.args.append(name)
        if v is not None and v not in self.vals:
            self.vals[v] = name
        if t is not None:
            self.sites.append((name, t))
        return name

    def is_const(self, v: Value) -> bool:
        """Whether a value is written as a Python number (a ``scalar``) rather than a tensor."""
        return v in self.consts

    def expr(self, v: Value) -> str:
        """The expression for a value: its variable, or the parameter's attribute path."""
        if v in self.vals:
            return self.vals[v]
        p = self.graph.node(v.node)
        if p.op == "param":
            return self.access(p.name)
        if p.op == "scalar":  # a number from another scope (after CSE): written here too
            self.emit_node(p, p)
            return self.vals[v]
        raise _Unsupported(f"value {v} is not available in `{self.prefix or 'the model'}`")

    def access(self, path: str) -> str:
        """``self...`` for a module or parameter path of the spec, inside this class."""
        if self.prefix:
            if not path.startswith(self.prefix + "."):
                raise _Unsupported(f"`{path}` is outside `{self.prefix}`")
            path = path[len(self.prefix) + 1:]
        expr, t = "self", self.cls
        for k in path.split("."):
            child = t.children.get(k)
            if child is None:
                raise _Unsupported(f"no module path `{path}`")
            expr, t = _step(expr, t, k), child
        return expr

    def local_name(self, name: str) -> str:
        """A node name relative to this class's scope."""
        if self.prefix and name.startswith(self.prefix + "."):
            return name[len(self.prefix) + 1:]
        return name

    def new_var(self, v: Value, base: str) -> str:
        """A new variable for value ``v``, named ``base`` unless the value has a preferred name."""
        name = self.names.take(self.preferred.get(v, base))
        self.vals[v] = name
        return name

    # ---- symbolic dims ----
    def sym(self, s: str) -> str:
        """The variable that holds symbol ``s`` (``s`` itself where that name is free)."""
        if s not in self.sym_names:
            ok = _is_attr_name(s) and s not in _HARD_RESERVED and s not in self.args
            self.sym_names[s] = s if ok else self.names.take(s + "_dim")
        return self.sym_names[s]

    def dim(self, d) -> str:
        """A dim as an expression; its symbols are bound before the next line (:meth:`flush`)."""
        if isinstance(d, bool) or not isinstance(d, (int, SymDim)):
            return py_literal(d)
        if isinstance(d, int):
            return str(d)
        text = str(d)
        for s in sorted(d.symbols()):
            if s not in self.bound and s not in self.pending:
                self.pending.append(s)
            if self.sym(s) != s:
                text = re.sub(rf"\b{re.escape(s)}\b", self.sym(s), text)
        return text

    def _site(self, s: str):
        """(index, expression, axis) of the first known tensor with the dim ``s``, if any."""
        target = SymDim.symbol(s)
        for i, (expr, t) in enumerate(self.sites):
            for ax, d in enumerate(t.shape):
                if isinstance(d, SymDim) and d == target:
                    return i, expr, ax
        return None

    def flush(self) -> list[str]:
        """Bind the symbols the next line needs: from the inputs at the top, else from the
        first value that has the dim, else (in a block) from the caller."""
        inline = []
        for s in self.pending:
            self.bound.add(s)
            site = self._site(s)
            if site is None:
                if self.region is None:
                    raise _Unsupported(f"no input has the dim `{s}`")
                self.extra.append((s, self.sym(s)))
            elif site[0] < len(self.args):
                self.top_bindings.append((self.sym(s), f"{site[1]}.shape[{site[2]}]"))
            else:
                inline.append((self.sym(s), f"{site[1]}.shape[{site[2]}]"))
        self.pending = []
        if not inline:
            return []
        return [", ".join(n for n, _ in inline) + " = " + ", ".join(e for _, e in inline)]

    def device(self) -> str | None:
        """The device of the first tensor argument, for the tensors an op creates."""
        if self.args and self.sites:
            return f"{self.sites[0][0]}.device"
        return None

    # ---- lines ----
    def emit_node(self, node: Node, name_source: Node) -> None:
        """Write one node's line; its variables are named after ``name_source``."""
        if node.op in ("param", "input"):
            if node.op == "input" and Value(node.name) not in self.vals:
                raise _Unsupported(f"input `{node.name}` inside a block")
            return
        entry = TORCH_CODEGEN.get(node.op)
        if entry is None:
            raise LoweringError(f"op `{node.op}` has no PyTorch source form", span=node.span,
                                code="E0910")
        if node.op == "scalar":  # a Python number, written where it is used
            v = node.out()
            text = entry(OpSource(self, node, None))
            self.vals[v] = f"({text})" if text.startswith("-") else text
            self.consts.add(v)
            return
        layer = self.gen.layer_apps.get(node.name) if self.graph is self.gen.graph else None
        module = self.access(layer) if layer is not None else None
        res = entry(OpSource(self, node, module))
        res = res if isinstance(res, Emitted) else Emitted(res)
        base = _ident(self.local_name(name_source.name).replace(".", "_"))
        suffixes = _OUTPUT_SUFFIXES.get(node.op) or [f"_{i}" for i in range(len(node.types))]
        if len(node.types) == 1 and node.op not in _OUTPUT_SUFFIXES:
            suffixes = [""]
        wanted = [base + sfx for sfx in suffixes]
        if len(node.types) > 1 and node.op not in _OUTPUT_SUFFIXES:
            wanted = _unpacked_names(name_source, len(node.types)) or wanted
        targets = [self.new_var(node.out(i), wanted[i]) for i in range(len(node.types))]
        pattern = res.pattern or ", ".join("{%d}" % i for i in range(len(targets)))
        lhs = pattern.format(*targets)
        lines = self.flush() + list(res.pre)
        lines.append(f"{lhs} = {res.expr}  # {', '.join(_shape_text(t) for t in node.types)}")
        self.lines += lines
        for i, t in enumerate(node.types):
            self.sites.append((targets[i], t))

    def scan_source(self, e: OpSource) -> Emitted:
        """A scan as a ``for`` loop over the steps: the state in variables, the per-step outputs
        in lists stacked after the loop; the body's ops are written inside the loop, with the
        names of this function (so nothing in the loop shadows a value outside it)."""
        node = e.node
        a = e.a
        body = a["body"].graph
        n_over, n_state, dim = a["n_over"], a["n_state"], a["dim"]
        args = [e.x(i) for i in range(len(node.inputs))]
        base = _ident(self.local_name(node.name).replace(".", "_"))
        # the dims the body needs are bound before the loop, from values outside it
        for bn in body:
            for t in bn.types:
                for d in t.shape:
                    if isinstance(d, SymDim):
                        self.dim(d)
        length = None if n_over else self.dim(a["steps"])
        ranks = [e.t(i).rank for i in range(n_over)]
        if n_over:
            length = f"{args[0]}.shape[{dim % ranks[0]}]"
        pre = self.flush()
        saved_vals, saved_consts, saved_sites = dict(self.vals), set(self.consts), len(self.sites)
        outer = self.graph
        self.graph = body

        def short(name: str) -> str:
            return _ident(self.local_name(name).replace(".", "_"))
        state_vars = []
        for i, name in enumerate(body.inputs[n_over:n_over + n_state]):
            var = self.names.take(short(name))
            state_vars.append(var)
            pre.append(f"{var} = {args[n_over + i]}")
        out_lists = []
        for k in range(len(body.outputs) - n_state):
            var = self.names.take(f"{base}_steps" if len(body.outputs) - n_state == 1
                                  else f"{base}_steps_{k}")
            out_lists.append(var)
            pre.append(f"{var} = []")
        t = self.names.take("t")
        loop = []
        for i, name in enumerate(body.inputs):
            v = Value(name)
            if i < n_over:
                d = dim % ranks[i]
                var = self.names.take(short(name))
                index = f"{args[i]}[{', '.join([':'] * d + [t])}]" if d < 3 \
                    else f"{args[i]}.select({d}, {t})"
                loop.append(f"{var} = {index}  # {_shape_text(body.node(name).type)}")
                self.vals[v] = var
                self.sites.append((var, body.node(name).type))
            elif i < n_over + n_state:
                self.vals[v] = state_vars[i - n_over]
            else:
                self.vals[v] = args[i]
                if e.const(i):
                    self.consts.add(v)
        start = len(self.lines)
        try:
            for bn in body:
                if bn.op != "input":
                    self.emit_node(bn, bn)
            loop += self.lines[start:]
            results = [self.expr(v) for _, v in body.outputs]
        finally:
            del self.lines[start:]
            self.graph = outer
        if n_state:
            loop.append(f"{', '.join(state_vars)} = {', '.join(results[:n_state])}")
        for var, r in zip(out_lists, results[n_state:]):
            loop.append(f"{var}.append({r})")
        self.vals, self.consts = saved_vals, saved_consts
        del self.sites[saved_sites:]
        pre.append(f"for {t} in range({length}):")
        pre += ["    " + ln for ln in loop]
        stacked = []
        for var, (_, v) in zip(out_lists, body.outputs[n_state:]):
            d = dim % (body.type_of(v).rank + 1)
            stacked.append(f"torch.stack({var}, {d})")
        return Emitted(", ".join(state_vars + stacked), pre=tuple(pre))

    def emit_call(self, child: _Region) -> None:
        """Write the call of a nested block's module."""
        args = [self.expr(v) for v in child.inputs]
        info = self.gen.class_info[child.qual]
        for s, kw in info["extra"]:
            self.dim(SymDim.symbol(s))
            args.append(f"{kw}={self.sym(s)}")
        call = f"{self.access(child.qual)}({', '.join(args)})"
        base = _ident(self.local_name(child.qual).replace(".", "_"))
        outs = child.outputs
        names = [base] if len(outs) == 1 else [f"{base}_{i}" for i in range(len(outs))]
        targets = [self.names.take(want if v in self.vals else self.preferred.get(v, want))
                   for v, want in zip(outs, names)]
        for v, name in zip(outs, targets):
            self.vals[v] = name
        lhs = ", ".join(targets)
        if child.tuple and len(targets) == 1:
            lhs = f"({lhs},)"
        types = [self.gen.graph.type_of(v) for v in outs]
        self.lines += self.flush()
        self.lines.append(f"{lhs} = {call}  # {', '.join(_shape_text(t) for t in types)}")
        for name, t in zip(targets, types):
            self.sites.append((name, t))

    def head(self) -> list[str]:
        """The line that binds symbols from the arguments' shapes, at the top of ``forward``."""
        if not self.top_bindings:
            return []
        return [", ".join(n for n, _ in self.top_bindings) + " = " +
                ", ".join(e for _, e in self.top_bindings)]


_UNPACK = re.compile(r"^\s*((?:[A-Za-z_]\w*\s*,\s*)+[A-Za-z_]\w*)\s*=(?!=)")


def _unpacked_names(node: Node, n: int) -> list[str] | None:
    """The spec's names for a node's ``n`` results, where the statement it comes from unpacks
    exactly that many (``q, k, v = x |> linear(3 * C) |> split(3, dim=-1)``)."""
    span = node.span
    if span is None or span.line != getattr(span, "end_line", span.line):
        return None
    text = span_line(span, span.line)
    m = _UNPACK.match(text or "")
    if m is None or text[:span.col - 1].count("=") != 1:
        return None
    names = [t.strip() for t in m.group(1).split(",")]
    if len(names) != n or len(set(names)) != n or "_" in names:
        return None
    return names


# ---- the generated file ----

# The helpers at the top of every generated file: the constructors' parameter check.
_HELPERS = '''
def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _cli(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_cli(v) for v in value) + "]"
    return str(value)


def _check_params(module, given, compiled, block=None):
    """This code is specialized to the parameter values it was generated for: refuse others."""
    for name, value in given.items():
        if _same(value, compiled[name]):
            continue
        if block is None:
            how = (f"compile the spec again with that value: "
                   f"nndsl compile {_SPEC} --to torch --param {name}={_cli(value)}")
        else:
            how = (f"the parameters of block `{block}` follow from the model's, so compile "
                   f"the spec again with other model parameters: "
                   f"nndsl compile {_SPEC} --to torch --param NAME=VALUE")
        raise ValueError(
            f"{type(module).__name__} was generated for {name}={compiled[name]!r} and only "
            f"supports that value, not {name}={value!r}; {how}")
'''

# Written when a scope that holds parameters as well as modules needs a module of its own.
_SCOPE_HELPER = '''
def _scope(members):
    """A module that only holds parameters, buffers and modules of one scope of the spec."""
    scope = nn.Module()
    for name, member in members.items():
        if isinstance(member, nn.Parameter):
            scope.register_parameter(name, member)
        elif isinstance(member, torch.Tensor):
            scope.register_buffer(name, member)
        else:
            scope.add_module(name, member)
    return scope
'''


def _init_expr(node: Node) -> str:
    """A tensor expression for a parameter's initial value, after its ``init`` attribute."""
    a = node.attr
    shape = storage_shape(node.type.dtype, node.type.shape)
    dt = "" if a.get("dtype", "f32") == "f32" else f", dtype={TORCH_DTYPES[a['dtype']]}"
    kind, *args = tuple(a.get("init") or ("zeros",))
    return INITIALIZERS[kind].source([float(v) for v in args], shape, dt, py_literal)


class _Generator:
    """Writes one graph's source with the given regions and layer modules; raises
    ``_Unsupported`` when it cannot."""

    def __init__(self, graph: Graph, regions: list, layers: dict, spec: str):
        self.graph = graph
        self.order = list(graph)
        self.pos = {n.name: i for i, n in enumerate(self.order)}
        self.regions = regions
        self.layers = layers
        self.spec = spec
        self.layer_apps = {a: q for q, lay in layers.items() for a in lay.apps}
        self.model_class = camel_case(graph.name, "Model")
        # The inputs' symbolic dims, which name variables in every function.
        self.symbols: set[str] = {s for name in graph.inputs for d in graph.node(name).type.shape
                                  if isinstance(d, SymDim) for s in d.symbols()}
        self.class_names: set[str] = {self.model_class}
        self.class_info: dict[str, dict] = {}
        self.block_sources: list[str] = []
        self.calls: dict = {}  # region idx (None: the model) -> the block calls in its forward
        self.uses_scope = False
        self.helpers: set[str] = set()   # op helpers (ops.HELPERS) the file needs
        self.generic: dict[str, dict] = {}  # block -> its one class for all specializations
        self.registry: dict | None = None  # class names shared with the variants' generators
        # `range` is free in every constructor (no parameter shadows it): lists may use it
        self.range_free = "range" not in (graph.meta.get("params") or {}) and not any(
            "range" in r.params for r in regions)

    # ---- whole file ----
    def source(self, others: list | None = None) -> str:
        """The whole file; regions whose class cannot be written are dissolved on the way.

        ``others`` are generators of the same model compiled with other parameter values: their
        block applications join this graph's when a block's classes are merged, and the model
        parameters whose change the model class's code takes as arguments become free.
        """
        others = list(others or [])
        for o in others:
            o.generic = self.generic
        while True:
            if others:
                self.registry = _registry(self.model_class)
                for o in others:
                    o.registry = self.registry
            tree = self._round()
            for o in list(others):
                try:
                    o.tree = o._round()
                except _Unsupported:
                    others.remove(o)
            if not self._generalize_blocks(others):
                break
        free: list[str] = []
        if others:
            model, free = self._free_model(tree, others)
        if not free:
            model = self._model_class(tree)
        return self._file(model, free)

    def _round(self) -> _TNode:
        """One writing of the block classes, dissolving the regions that cannot be one."""
        while True:
            _settle(self.regions)
            tree = _build_tree(self.graph, self.order, self.pos, self.regions, self.layers)
            self.calls = {}
            for r in self.regions:
                if r.valid:
                    p = _effective_parent(r)
                    self.calls.setdefault(None if p is None else p.idx, []).append(r)
            if not self._classes(tree):
                return tree

    def _free_model(self, tree: _TNode, others: list) -> tuple[str, list]:
        """The model class with the parameters the variants show to be free as arguments."""
        params = dict(self.graph.meta.get("params") or {})

        def merge(gens, free):
            texts = [g._model_class(g.tree if g is not self else tree, free) for g in gens]
            bodies = [t.split("\n", 1)[1] for t in texts]
            ps = [dict(g.graph.meta.get("params") or {}) for g in gens]
            return texts[0], generalize_model(bodies, ps)

        ok = []
        for o in others:
            op = dict(o.graph.meta.get("params") or {})
            changed = [k for k in params if k in op and op[k] != params[k]]
            if sorted(o.block_sources) != sorted(self.block_sources) or not changed or \
                    set(op) != set(params):
                continue
            if merge([self, o], changed)[1] is not None:
                ok.append((o, changed))
        free = sorted({k for _, ch in ok for k in ch}, key=list(params).index)
        if not free:
            return "", []
        text, res = merge([self] + [o for o, _ in ok], free)
        if res is None:
            return "", []
        init, fwd_def, fwd, _args = res
        lines = text.rstrip("\n").split("\n")
        f = next(j for j, ln in enumerate(lines) if ln.startswith("    def forward("))
        i = lines.index("        super().__init__()")
        head = lines[:i + 1]
        rest = lines[i + 1:f]
        if rest and rest[0].lstrip().startswith("_check_params("):
            end = 1 if rest[0].rstrip().endswith(")") else rest.index("        )") + 1
            head += rest[:end]
        return "\n".join(head + init + ["", fwd_def] + fwd) + "\n", free

    def _classes(self, tree: _TNode) -> bool:
        """Generate the block classes bottom-up; ``True`` when a region had to be dissolved."""
        self.class_names = {self.model_class}
        self.class_info = {}
        self.block_sources = []
        self.uses_scope = False
        self.helpers = set()
        # one name per block body across this graph and its variants: a name means one class
        reg = self.registry if self.registry is not None else _registry(self.model_class)
        by_text: dict[tuple, str] = {}
        for r in self.regions:
            if not r.valid:
                continue
            cnode = self._class_node(tree, r.qual)
            try:
                body, extra = self._block_body(r, cnode)
            except _Unsupported:
                self._dissolve(r)
                return True
            seen = self.class_info.get(r.qual)
            if seen is not None:
                if seen["body"] != body:
                    self._dissolve(r)
                    return True
                continue
            key = (r.block, body)
            generic = self.generic.get(r.block)
            name = by_text.get(key)
            if name is None:
                name = reg["by_text"].get(key)
                source = f"class {name}(nn.Module):\n{body}"
                if generic is not None and body in generic["values"]:
                    name, source = generic["name"], generic["source"]
                elif name is None:
                    base = camel_case(r.block, "Block")
                    k = reg["counts"].get(base, 0) + 1
                    name = base if k == 1 else f"{base}{k}"
                    while name in reg["taken"]:
                        k += 1
                        name = f"{base}{k}"
                    reg["counts"][base] = k
                    source = f"class {name}(nn.Module):\n{body}"
                reg["by_text"][key] = name
                reg["taken"].add(name)
                by_text[key] = name
                if name not in self.class_names:
                    self.class_names.add(name)
                    self.block_sources.append(source)
            self.class_info[r.qual] = {"name": name, "body": body, "extra": extra, "region": r,
                                       "args": generic["values"].get(body) if generic else None}
        return False

    def _generalize_blocks(self, others=()) -> bool:
        """Merge the classes of each block's specializations (here and in ``others``) into one
        (``generalize``); ``True`` when a block was merged, and the classes must be written
        again."""
        specs: dict[str, dict[str, tuple]] = {}
        for gen in [self, *others]:
            for info in gen.class_info.values():
                r = info["region"]
                if r.block not in self.generic:
                    specs.setdefault(r.block, {}).setdefault(info["body"], (gen.graph, r))
        merged = False
        for block, by_body in specs.items():
            if len(by_body) < 2:
                continue
            bodies = list(by_body)
            regions = [by_body[b][1] for b in bodies]
            dims = [_arg_dims(*by_body[b]) for b in bodies]
            res = generalize(bodies, [r.params for r in regions], [d[0] for d in dims],
                             [d[1] for d in dims])
            if res is None:
                continue
            init, fwd, fwd_def, args, values = res
            name = camel_case(block, "Block")
            while name in self.class_names and name not in {
                    i["name"] for i in self.class_info.values() if i["region"].block == block}:
                name += "_"
            shown = _generic_shape([by_body[b] for b in bodies], dims)
            own = ", ".join(a for a in args if a in regions[0].params)
            doc = _docstring(f"Block `{block}({own})` of the spec{shown}.", "    ")
            sig = ", ".join(["self"] + args)
            lines = doc + ["", f"    def __init__({sig}):", "        super().__init__()"]
            lines += init + ["", fwd_def] + fwd
            source = f"class {name}(nn.Module):\n" + "\n".join(lines) + "\n"
            known = self.class_names | {g["name"] for g in self.generic.values()}
            if any(c not in known for c in re.findall(r"(?<![\w.])([A-Z]\w*)\(", "\n".join(init))):
                continue  # it would build a class only a variant has
            self.generic[block] = {"name": name, "source": source,
                                   "values": dict(zip(bodies, values))}
            merged = True
        return merged

    def _dissolve(self, r: _Region) -> None:
        """Write every application of ``r``'s block instance inline in its parent."""
        for other in self.regions:
            if other.qual == r.qual:
                other.valid = False

    @staticmethod
    def _class_node(tree: _TNode, qual: str) -> _TNode:
        """The module tree's node for a scope."""
        t = tree
        for k in qual.split("."):
            t = t.children[k]
        return t

    # ---- one class ----
    def _ctor(self, params: dict, block: str | None, free=()) -> tuple[str, list[str]]:
        """The constructor's signature and the line that checks its arguments (those not
        ``free``)."""
        names = _Names()
        sig, given, compiled = [], [], []
        for k, v in params.items():
            try:
                lit = py_literal(v)
            except _Unsupported:
                continue
            if not isinstance(k, str):
                continue
            arg = names.take(k, shadow_builtins=True)
            sig.append(f"{arg}={lit}")
            if k in free:
                continue
            given.append(f"{_str_lit(k)}: {arg}")
            compiled.append(f"{_str_lit(k)}: {lit}")
        if not sig:
            return "self", []
        if not given:
            return "self, " + ", ".join(sig), []
        tail = "" if block is None else f", block={_str_lit(block)}"
        one = f"_check_params(self, {{{', '.join(given)}}}, {{{', '.join(compiled)}}}{tail})"
        if len(one) <= 91:
            check = [one]
        else:
            check = ["_check_params(", "    self,", f"    {{{', '.join(given)}}},",
                     f"    {{{', '.join(compiled)}}},"]
            if block is not None:
                check.append(f"    block={_str_lit(block)},")
            check.append(")")
        return "self, " + ", ".join(sig), check

    def _init(self, cnode: _TNode, params: dict, block: str | None, free=()) -> list[str]:
        sig, check = self._ctor(params, block, free)
        lines = wrap_line(f"    def __init__({sig}):") + ["        super().__init__()"]
        lines += [w for ln in check for w in wrap_line("        " + ln)]
        for key, child in _children(cnode):
            lines += self._member_lines(key, child)
        return lines

    def _member_lines(self, key: str, child: _TNode) -> list[str]:
        ind = "        "
        if child.kind == "param":
            init = _init_expr(child.info)
            if not child.info.attr.get("trainable", True):
                return [f"{ind}self.register_buffer({_str_lit(key)}, {init})"]
            if _is_attr_name(key):
                return [f"{ind}self.{key} = nn.Parameter({init})"]
            return [f"{ind}self.register_parameter({_str_lit(key)}, nn.Parameter({init}))"]
        expr = self._member_expr(child, ind)
        if _is_attr_name(key):
            return [f"{ind}self.{key} = {expr}"]
        return [f"{ind}self.add_module({_str_lit(key)}, {expr})"]

    def _member_expr(self, t: _TNode, ind: str) -> str:
        if t.kind == "layer":
            return t.info.ctor
        if t.kind == "class":
            info = self.class_info.get(t.info.qual if t.info else None)
            if info is None:
                raise _Unsupported(f"no class for `{t.key}`")
            r = info["region"]
            if info.get("args") is not None:
                return f"{info['name']}({', '.join(py_literal(v) for v in info['args'])})"
            args = []
            names = _Names()
            for k, v in r.params.items():
                try:
                    lit = py_literal(v)
                except _Unsupported:
                    continue
                args.append(f"{names.take(k, shadow_builtins=True)}={lit}")
            return f"{info['name']}({', '.join(args)})"
        if t.kind == "param":
            init = _init_expr(t.info)
            return f"nn.Parameter({init})" if t.info.attr.get("trainable", True) else init
        inner = ind + "    "
        items = []
        for key, child in _children(t):
            expr = self._member_expr(child, inner)
            items.append(expr if t.style == "list" else f"{_str_lit(key)}: {expr}")
        if t.style == "list" and len(items) > 1 and len(set(items)) == 1 and self.range_free:
            # the same module n times: n modules built alike
            one = f"nn.ModuleList([{items[0]} for _ in range({len(items)})])"
            if "\n" not in one and len(ind) + len(one) <= 92:
                return one
            return "nn.ModuleList([\n" + f"{inner}{items[0]}\n{inner}for _ in range(" \
                f"{len(items)})\n" + ind + "])"
        if t.style == "list":
            opening, closing = "nn.ModuleList([", "])"
        elif t.style == "dict":
            opening, closing = "nn.ModuleDict({", "})"
        else:
            self.uses_scope = True
            opening, closing = "_scope({", "})"
        flat = opening + ", ".join(items) + closing
        if "\n" not in flat and len(ind) + len(flat) <= 92:
            return flat
        return opening + "\n" + "".join(f"{inner}{it},\n" for it in items) + ind + closing

    def _forward(self, fn: _Function, items: list, outputs: list, tuple_out: bool,
                 doc: str | None = None, pre: list | None = None) -> list[str]:
        for item in items:
            if isinstance(item, _Region):
                fn.emit_call(item)
            else:
                node, source = item
                fn.emit_node(node, source)
        rets = [fn.expr(v) for v in outputs]
        ret = ", ".join(rets)
        if tuple_out and len(rets) == 1:
            ret = f"({ret},)"
        fn.flush()
        args = list(fn.args)
        if fn.extra:
            args += ["*"] + [kw for _, kw in sorted(fn.extra)]
        lists = {k: len(c.children) for k, c in fn.cls.children.items()
                 if c.style == "list" and c.kind == "container" and _is_attr_name(k)}
        body, ret = loop_lines(fn.head() + (pre or []) + fn.lines, ret, lists,
                               set(args) | set(fn.sym_names.values()))
        lines = [f"    def forward({', '.join(['self'] + args)}):"]
        if doc:
            lines += _docstring(doc, "        ")
        lines += ["        " + ln for ln in body]
        lines.append(f"        return {ret}")
        return lines

    def _items(self, start: int, end: int, owner: _Region | None) -> list:
        """The own nodes and the nested block calls of one function, in order."""
        children = sorted(self.calls.get(None if owner is None else owner.idx, []),
                          key=lambda r: (r.start, r.end, r.idx))
        names = owner.names_from if owner is not None else {}
        items, i = [], start
        for c in children:
            items += [(self.order[j], self.order[names.get(j, j)]) for j in range(i, c.start)]
            items.append(c)
            i = max(i, c.end)
        items += [(self.order[j], self.order[names.get(j, j)]) for j in range(i, end)]
        return items

    def _block_body(self, r: _Region, cnode: _TNode) -> tuple[str, list]:
        fn = _Function(self, cnode, r.qual, r)
        for name, v in zip(r.input_names, r.inputs):
            fn.add_arg(name, v, self.graph.type_of(v))
        items = self._items(r.start, r.end, r)
        forward = self._forward(fn, items, r.outputs, r.tuple)
        shown = ", ".join(f"{k}={_show(v)}" for k, v in r.params.items())
        doc = _docstring(f"Block `{r.block}({shown})` of the spec, specialized to these "
                         f"parameter values.", "    ")
        lines = doc + [""] + self._init(cnode, r.params, r.block) + [""] + forward
        return "\n".join(lines) + "\n", sorted(fn.extra)

    def _model_class(self, tree: _TNode, free=()) -> str:
        g = self.graph
        fn = _Function(self, tree, "", None)
        for name in g.inputs:
            fn.add_arg(name, Value(name), g.node(name).type)
        for out_name, v in g.outputs:
            if v not in fn.preferred and v not in fn.vals:
                fn.preferred[v] = out_name
        checks = []
        for cond, msg, _span in g.meta.get("constraints", []):
            checks += self._constraint(fn, cond, msg)
        items = self._items(0, len(self.order), None)
        keep = str.maketrans(" ", "\xa0")  # wrap the docstring between items, not inside
        ins = ", ".join(f"{fn.args[i]}: {g.node(n).type}".translate(keep)
                        for i, n in enumerate(g.inputs))
        outs = ", ".join(f"{n}: {g.type_of(v)}".translate(keep) for n, v in g.outputs)
        forward = self._forward(fn, items, [v for _, v in g.outputs], False,
                                doc=f"({ins}) -> {outs}", pre=checks)
        params = dict(g.meta.get("params") or {})
        count = sum(math.prod(n.type.shape) for n in g.params()
                    if n.attr.get("trainable", True) and _static(n.type.shape))
        shown = ", ".join(f"{k}={_show(v)}" for k, v in params.items() if k not in free)
        doc = f"Model `{g.name}` of {self.spec} ({count:,} parameters), generated by nndsl."
        if free:
            doc += f"\n\n{_names_text(free)} may take other values."
        if shown:
            doc += (f"\n\n{'Specialized' if not free else 'The rest is specialized'} to "
                    f"{shown}; other values need a new compilation with `--param NAME=VALUE`.")
        lines = _docstring(doc, "    ") + [""] + self._init(tree, params, None, free)
        lines += [""] + forward
        return f"class {self.model_class}(nn.Module):\n" + "\n".join(lines) + "\n"

    def _constraint(self, fn: _Function, cond, msg) -> list[str]:
        op = getattr(cond, "op", None)
        try:
            left = fn.dim(cond.left)
            if op in ("divisible", "not_divisible"):
                test = f"({left}) % {int(cond.right)} {'==' if op == 'divisible' else '!='} 0"
            elif op in ("==", "!=", "<", "<=", ">", ">="):
                test = f"{left} {op} {fn.dim(cond.right)}"
            else:
                return []
        except (_Unsupported, AttributeError, TypeError, ValueError):
            return []
        text = f"{msg} (needs {cond})" if msg else f"the input dims break the spec's {cond}"
        return [f"if not ({test}):", f"    raise ValueError({_str_lit(text)})"]

    def _file(self, model: str, free=()) -> str:
        g = self.graph
        cls = self.model_class
        text = (f"PyTorch model `{g.name}`, generated by `nndsl compile` from {self.spec}.\n\n"
                f"It needs only torch. Load the weights written next to it with\n\n"
                f"    from safetensors.torch import load_file\n"
                f"    model = {cls}()\n"
                f'    model.load_state_dict(load_file("weights.safetensors"))\n\n')
        if free:
            text += (f"{_names_text(free)} may take other values ({cls}({free[0]}=...)); the "
                     f"rest of the code is\nspecialized to the values it was compiled with.\n")
        else:
            text += ("The code is specialized to the parameter values it was compiled with; "
                     "to change them,\ncompile the spec again with `--param NAME=VALUE`.\n")
        header = '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""\n'
        imports = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
        checks = any("_check_params(" in p for p in self.block_sources + [model])
        if checks:  # the parameter check, only where some constructor has one
            imports += f"\n_SPEC = {_str_lit(self.spec)}\n"
        parts = ([_HELPERS] if checks else []) + ([_SCOPE_HELPER] if self.uses_scope else [])
        parts += [OP_HELPERS[h] for h in sorted(self.helpers)]
        parts += self.block_sources + [model]
        return header + "\n" + imports + "".join(
            "\n\n" + p.strip("\n") + "\n" for p in parts)


def _registry(model_class: str) -> dict:
    """Class names given out: block body -> name, the names taken, a count per base name."""
    return {"by_text": {}, "taken": {model_class}, "counts": {}}


def _arg_dims(graph: Graph, r: _Region) -> tuple[list, list]:
    """The static dims of a block application's inputs, named as candidate constructor
    arguments, and those of its first input that may name sizes in shape comments."""
    taken = set(r.params)
    args, comments = [], []
    for i, (name, v) in enumerate(zip(r.input_names, r.inputs)):
        t = graph.type_of(v)
        for ax, d in enumerate(t.shape):
            base = ARG_DIMS.get(t.rank, {}).get(ax)
            if base is not None and isinstance(d, int):
                arg = base if i == 0 else f"{name}_{base.removeprefix('in_')}"
                if arg not in taken and arg.isidentifier():
                    taken.add(arg)
                    args.append((arg, d))
            cname = COMMENT_DIMS.get(t.rank, {}).get(ax)
            if i == 0 and cname is not None and isinstance(d, int) and cname not in taken:
                taken.add(cname)
                comments.append((cname, d))
    return args, comments


def _generic_shape(apps: list, dims: list) -> str:
    """``, for x of shape (N, in_c, H, W)``: the first input's shape with the dims that differ
    between specializations (``apps``: (graph, region) pairs) named."""
    r0 = apps[0][1]
    if not r0.inputs:
        return ""
    shapes = [g.type_of(r.inputs[0]).shape for g, r in apps]
    names = {}
    for k, _ in dims[0][0] + dims[0][1]:
        for ax in range(len(shapes[0])):
            vals = {s[ax] for s in shapes}
            if len(vals) > 1 and ax not in names:
                want = ARG_DIMS.get(len(shapes[0]), {}).get(ax) or \
                    COMMENT_DIMS.get(len(shapes[0]), {}).get(ax)
                if want == k:
                    names[ax] = k
    text = ", ".join(names.get(ax, str(d)) for ax, d in enumerate(shapes[0]))
    return f", for {r0.input_names[0]} of shape ({text})"


def _names_text(names) -> str:
    """``classes`` / ``classes and width`` / ``a, b and c``, as code."""
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _show(v) -> str:
    """A parameter value as shown in a docstring."""
    try:
        return py_literal(v)
    except _Unsupported:
        return str(v)


# ---- entry points ----

def _spec_name(graph: Graph) -> str:
    """The spec file's name, for the messages of the generated code."""
    span = graph.meta.get("model_span")
    file = getattr(span, "file", None)
    if isinstance(file, str) and file and not file.startswith("<"):
        return Path(file).name
    return "SPEC.nn"


def _check_names(graph: Graph) -> None:
    """Refuse scope names that are attributes of every ``nn.Module`` (as ``GraphModule`` does):
    ``self.train(x)`` would call ``Module.train``."""
    import torch

    reserved = set(dir(torch.nn.Module()))
    paths = [(n.name, n.span) for n in graph.params()]
    paths += [(r.get("qualname"), None) for r in graph.meta.get("regions") or []
              if isinstance(r, dict) and isinstance(r.get("qualname"), str)]
    for path, span in paths:
        for part in path.split("."):
            if part in reserved:
                raise LoweringError(f"the name `{part}` (in `{path}`) is reserved in PyTorch",
                                    span=span, code="E0902", hint="rename the layer")


def generate_source(graph: Graph, spec: str | None = None, *,
                    layers_as_modules: bool = True, variants=()) -> str:
    """The model as a standalone PyTorch module (Python source that imports only torch).

    ``spec`` names the spec file in the messages of the generated code (default: the file the
    model came from). With ``layers_as_modules=False`` every layer is written functionally
    (``F.conv2d(x, self.conv.weight, ...)``) over plain ``nn.Parameter``s.

    ``variants`` are the same model compiled with the same options but other parameter values
    (graphs or compiled models; :func:`~.generalize.param_variants` proposes the values): a
    parameter whose change the code takes as an expression of it becomes a free argument of the
    model's constructor (``Resnet18(classes=10)``); the others keep their check.
    """
    if not isinstance(graph, Graph) and isinstance(getattr(graph, "graph", None), Graph):
        graph = graph.graph  # a Compiled model
    spec = spec or _spec_name(graph)
    _check_names(graph)
    layers, regions = _prepared(graph, layers_as_modules)
    attempts = [(regions, layers), ([], layers), ([], {})]
    for level, (regs, lays) in enumerate(attempts):
        try:
            return _Generator(graph, regs, lays, spec).source(
                _variant_generators(variants, level, layers_as_modules, spec))
        except _Unsupported as e:
            last = e
    raise LoweringError(f"cannot write `{graph.name}` as PyTorch source: {last}", code="E0911")


def _prepared(graph: Graph, layers_as_modules: bool) -> tuple[dict, list]:
    """The layers written as modules and the checked block regions of a graph."""
    order = list(graph)
    pos = {n.name: i for i, n in enumerate(order)}
    layers = _find_layers(graph, order) if layers_as_modules else {}
    regions = _parse_regions(graph, order, pos) or []
    _validate(graph, order, pos, regions)
    return layers, regions


def _variant_generators(variants, level: int, layers_as_modules: bool, spec: str) -> list:
    """Generators for the variants (the model compiled with other parameter values), at the
    same fallback level as the model's own."""
    out = []
    for v in variants:
        v = v.graph if not isinstance(v, Graph) and isinstance(getattr(v, "graph", None),
                                                               Graph) else v
        layers, regions = _prepared(v, layers_as_modules)
        regs, lays = [(regions, layers), ([], layers), ([], {})][level]
        out.append(_Generator(v, regs, lays, spec))
    return out


def weights_bytes(state_dict) -> bytes:
    """A state dict as safetensors bytes (each tensor contiguous and on its own storage)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    return save(tensors, metadata={"format": "pt"})


def write_package(compiled, out_dir, weights=None, variants=()) -> tuple[Path, Path]:
    """Write ``model.py`` and ``weights.safetensors`` for a compiled model into ``out_dir``
    (``weights``: a state dict or ``.safetensors`` path; default, the initial weights;
    ``variants``: as for :func:`generate_source`).

    Both files are generated in memory first and each is written atomically, so an error never
    leaves a half-written file behind. Returns the two paths.
    """
    out = Path(out_dir)
    file = getattr(compiled, "file", None)
    spec = Path(file).name if isinstance(file, str) and file and not file.startswith("<") \
        else None
    source = generate_source(compiled.graph, spec, variants=variants)
    data = weights_bytes(compiled.to_torch(weights=weights).state_dict())
    model_path, weights_path = out / "model.py", out / "weights.safetensors"
    atomic_write_text(model_path, source)
    atomic_write_bytes(weights_path, data)
    return model_path, weights_path
