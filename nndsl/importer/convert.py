"""An ONNX graph as a :class:`~nndsl.importer.program.Program`: the spec's statements and weights.

The graph is walked in its (topological) node order. Each ONNX value is, while it is walked,
one of three things:

- a ``np.ndarray``: a constant known at import time (an initializer, a ``Constant``, a
  ``ConstantOfShape`` of a constant shape, and anything computed only from constants, which is
  folded here with onnx's reference implementation of the standard operator);
- a :class:`ShapeVec`: a 1-d integer vector of dims some of which are symbolic (``Shape`` of a
  tensor with a batch dim ``N``, and the arithmetic on it), folded with :class:`SymDim`, so a
  ``Reshape`` to ``[N, -1]`` reads as that;
- a :class:`Sym`: a tensor the spec computes, one variable of the ``.nn`` text, with its dtype
  and shape.

The op table (:mod:`nndsl.importer.ops`) turns a node into statements. A constant becomes a
layer's weights where an op takes it as such (a Conv's filters, a BatchNormalization's
statistics, a Gemm's matrix), a literal where it is one number, ``full``/``tril(ones)`` where it
is one of those, and otherwise a ``param`` of the spec. Ops the table does not know or cannot
express are collected, and reported all at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from nndsl.importer.program import Namer, Program, Stmt, dims_text, identifier, number, \
    reserved_names
from nndsl.importer.reader import ImportFailure
from nndsl.importer.values import (
    FLOATS, Unsupported, Sym, ShapeVec, POISON, dtype_of, np_dtype_name, scope_of, _attrs)
from nndsl.ir.types import SymDim


class Converter:
    def __init__(self, model, label: str, name: str | None = None):
        from nndsl.importer.ops import OPS
        from nndsl.importer.ops.sequence import sdpa
        self.model = model
        self.graph = model.graph
        self.label = label
        self.ops = {**OPS, "nndsl.Attention": sdpa}     # the importer's own (patterns.py)
        reserved = reserved_names()
        self.vars = Namer(reserved)
        from nndsl.importer.program import DTYPES, KEYWORDS
        self.layers = Namer(KEYWORDS | DTYPES)   # `as lstm`, `as embedding`: labels may be
        #                                          the names of the layers they label
        self.params = self.vars     # a param is a variable of the spec: one namespace
        self.dims = Namer(reserved)
        self.values: dict[str, object] = {}
        self.syms: dict[str, SymDim] = {}
        self.uses: Counter = Counter()
        self.data_uses: Counter = Counter()     # readers of a value's elements (not Shape)
        self.readers: dict = defaultdict(list)  # value -> the nodes that read it
        self.done: set = set()                  # nodes whose outputs an earlier node gave
        self.tables: list = []                  # (embedding layer, its table), for ties
        self.shared: dict = {}                  # (op, ids of its constants) -> (layer, call)
        self.init_names: set[str] = set()
        from nndsl.importer.reader import _opset
        self.opset = _opset(model)      # after conversion: the table's, or the file's if newer
        self.prog = Program(identifier(name or model.graph.name or "imported", "m"))
        self.unsupported: dict[str, list] = defaultdict(list)
        self.types: dict[str, object] = {}
        self.node = None
        self.last_linear = None
        self.const_names: dict[int, str] = {}    # id(array) -> the ONNX value it came from
        self.const_syms: dict[int, tuple] = {}   # id(array) -> (array, its Sym), made once
        self.init_ids: set = set()               # id(array) of the initializers
        self._keys: dict = {}                    # id(node) -> (its instance key,)

    # ---- the walk ----
    def run(self) -> Program:
        import onnx.numpy_helper as nh
        g = self.graph
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            self.types[vi.name] = vi.type
        for t in g.initializer:
            self.values[t.name] = nh.to_array(t).copy()
            self.const_names[id(self.values[t.name])] = t.name
            self.init_ids.add(id(self.values[t.name]))
            self.init_names.add(t.name)
        for t in g.sparse_initializer:
            raise ImportFailure(f"{self.label}: sparse initializer `{t.values.name}` is not "
                                f"supported", code="E1610")
        from nndsl.importer.patterns import recover
        nodes = _live(recover(g), g)    # GELU, SiLU in pieces: one node each; no dead nodes
        for node in nodes:
            for i in node.input:
                if i:
                    self.readers[i].append(node)
                    self.uses[i] += 1
                    if node.op_type not in ("Shape", "Size"):
                        self.data_uses[i] += 1
        for o in g.output:
            self.uses[o.name] += 1
            self.data_uses[o.name] += 1
        self._inputs()
        missing = Counter(n.op_type for n in nodes if n.op_type not in self.ops)
        for node in nodes:
            self.node = node
            if id(node) in self.done:
                continue
            if node.op_type not in self.ops:
                self._poison(node, "")
                self.unsupported[node.op_type].append(_where(node))
                continue
            ins = [self.values.get(i, POISON) if i else None for i in node.input]
            if any(v is POISON for v in ins):
                self._poison(node, "")
                continue
            try:
                outs = self._fold(node, ins)
                if outs is None:
                    outs = self.ops[node.op_type](self, node, ins, _attrs(node))
            except Unsupported as e:
                self._poison(node, str(e))
                self.unsupported[node.op_type].append(
                    f"{_where(node)}: {e}")
                continue
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError,
                    AttributeError) as e:     # a case the table does not foresee: its node
                self._poison(node, "")
                self.unsupported[node.op_type].append(
                    f"{_where(node)}: not foreseen by the importer ({type(e).__name__}: "
                    f"{str(e)[:120]})")
                continue
            for name, v in zip(node.output, outs):
                if name:
                    self.values[name] = v
                    if isinstance(v, np.ndarray):
                        self.const_names.setdefault(id(v), name)
        if not self.unsupported:
            try:
                self._outputs()
            except Unsupported as e:
                self.unsupported["(graph output)"].append(str(e))
        if self.unsupported:
            self._fail(missing)
        _drop_dead(self.prog)
        return self.prog

    def _poison(self, node, why: str) -> None:
        for o in node.output:
            self.values[o] = POISON

    def _fail(self, missing: Counter) -> None:
        """One error naming every node that could not be converted, one note per op."""
        notes = []
        total = 0
        for op, where in sorted(self.unsupported.items()):
            total += len(where)
            kind = "not in nndsl's op table" if op in missing else "cannot be expressed"
            shown = "; ".join(where[:6]) + (f"; ... ({len(where) - 6} more)"
                                            if len(where) > 6 else "")
            notes.append((f"{op} ×{len(where)} ({kind}): {shown}", None))
        ops = ", ".join(f"{op} ×{len(w)}" for op, w in sorted(self.unsupported.items()))
        raise ImportFailure(f"{self.label}: {total} node(s) of {len(self.unsupported)} op(s) "
                            f"cannot be imported: {ops}", code="E1620", notes=notes,
                            hint="docs/IMPORT.md lists the supported ops and attributes; "
                                 "nothing was written")

    def _inputs(self) -> None:
        for vi in self.graph.input:
            if vi.name in self.init_names:
                continue     # old-style: an initializer listed as an input is a weight
            t = vi.type
            if not t.HasField("tensor_type"):
                raise ImportFailure(f"{self.label}: input `{vi.name}` is not a tensor",
                                    code="E1610", hint="nndsl models take tensors only")
            try:
                dtype = dtype_of(t.tensor_type.elem_type, f"input `{vi.name}`")
            except Unsupported as e:
                raise ImportFailure(f"{self.label}: {e}", code="E1610") from None
            if not t.tensor_type.HasField("shape"):
                raise ImportFailure(f"{self.label}: input `{vi.name}` has no shape",
                                    code="E1610", hint="give the input a shape (dim_param "
                                                       "for the sizes that vary)")
            dims = []
            for i, d in enumerate(t.tensor_type.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(d.dim_value)
                else:
                    key = d.dim_param or f"{vi.name}:{i}"
                    if key not in self.syms:
                        hint = d.dim_param or ("N" if i == 0 else f"D{len(self.syms)}")
                        self.syms[key] = SymDim.symbol(self.dims.take(hint, "D"))
                    dims.append(self.syms[key])
            var = self.vars.take(vi.name)
            self.prog.inputs.append((var, dtype, dims))
            self.prog.onnx_inputs.append(vi.name)
            self.values[vi.name] = Sym(var, dtype, tuple(dims))

    def _outputs(self) -> None:
        names = Namer(reserved_names())
        for vi in self.graph.output:
            v = self.values[vi.name]
            name = names.take(vi.name, "y")
            self.prog.outputs.append((name, self.tensor(v, hint=vi.name).var))

    # ---- constants ----
    def _fold(self, node, ins):
        """The outputs of a node whose inputs are all constants, computed now (or None)."""
        if node.op_type in ("Constant", "Shape", "Size") or any(
                isinstance(v, Sym) for v in ins if v is not None):
            return None
        arrays = [v if v is None or isinstance(v, np.ndarray) else v.static() for v in ins]
        if any(a is None and v is not None for a, v in zip(arrays, ins)):
            return None     # symbolic dims: the op's own shape handler folds them
        if node.op_type in NOT_FOLDED:
            return None
        if any(isinstance(v, np.ndarray) and v.size == 1 and id(v) in self.init_ids and
               v.dtype.kind == "f" and _param_like(self.const_names.get(id(v), ""))
               for v in ins):
            return None     # a learned scalar stays a parameter the spec computes with
        for name in node.output:
            n = self._elements(name)
            if n is None and node.op_type in GROWING:
                n = _grown(node.op_type, arrays)
            if n is None and node.op_type in GROWING or n is not None and n > MAX_FOLDED:
                raise Unsupported(f"its constant output {name!r} would have "
                                  f"{'an unknown number of' if n is None else f'{n:,}'} "
                                  f"elements (nndsl folds at most {MAX_FOLDED:,})")
        return _evaluate(node, arrays, self.opset)

    def _elements(self, name: str):
        """The element count shape inference gives a value (None: unknown)."""
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        n = 1
        for d in t.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                return None
            n *= d.dim_value
        return n

    def const(self, v):
        """The value of ``v`` when it is known at import time, else None."""
        if isinstance(v, np.ndarray):
            return v
        if isinstance(v, ShapeVec):
            return v.static()
        return None

    def const_ints(self, v, what: str) -> list:
        c = self.const(v)
        if c is None:
            raise Unsupported(f"{what} is computed at run time; nndsl needs it known at import")
        return [int(x) for x in np.asarray(c).reshape(-1)]

    def shape_of(self, v) -> tuple:
        if isinstance(v, Sym):
            if v.shape is None:
                raise Unsupported("a tensor of unknown shape")
            return v.shape
        if isinstance(v, ShapeVec):
            return () if v.scalar else (len(v.dims),)
        return tuple(np.asarray(v).shape)

    def dtype(self, v) -> str:
        if isinstance(v, Sym):
            return v.dtype
        if isinstance(v, ShapeVec):
            return "i64"
        return np_dtype_name(np.asarray(v))

    def tensor(self, v, hint: str = "c") -> Sym:
        """``v`` as a tensor of the spec: a constant becomes ``full``, ``tril(ones)`` or a
        ``param``."""
        if isinstance(v, Sym):
            return v
        if isinstance(v, ShapeVec):
            if v.static() is None:
                raise Unsupported("a shape with symbolic dims used as a tensor")
            v = v.static()
        key = id(v)
        made = self.const_syms.get(key)
        if made is not None and made[0] is v:
            return made[1]
        if hint == "c" and key in self.const_names:
            hint = self.const_names[key]
        sym = self._constant(np.asarray(v), hint, key in self.init_ids)
        if isinstance(v, np.ndarray):
            self.const_syms[key] = (v, sym)
        return sym

    def _constant(self, a: np.ndarray, hint: str, initializer: bool = False) -> Sym:
        """A constant as the spec writes it. A float initializer of several elements is a
        ``param`` even when its values are one (a norm's scale of ones is still a weight)."""
        dt = np_dtype_name(a)
        dims = tuple(int(d) for d in a.shape)
        flat = a.reshape(-1)
        if initializer and a.size > 1 and dt in FLOATS:
            return self._param(a, dt, dims, hint)
        if initializer and a.size == 1 and dt in FLOATS and _param_like(hint):
            return self._param(a, dt, dims, hint)     # a learned scalar (CLIP's temperature)
        if a.size and np.all(flat == flat[0]):
            kw = "" if dt == "f32" else f", dtype={dt}"
            value = flat[0]
            if dt == "bool":
                value = int(value)
            return self.emit(f"full({dims_text(dims)}, {number(value, dt)}{kw})", dt, dims,
                             hint=hint)
        if a.ndim == 2 and a.shape[0] == a.shape[1] and dt in FLOATS + ("bool",):
            for k in (0,):
                for fn, ref in (("tril", np.tril), ("triu", np.triu)):
                    if np.array_equal(a, ref(np.ones_like(a), k)):
                        kw = "" if dt == "f32" else f", dtype={dt}"
                        text = f"{fn}(ones({dims_text(dims)}{kw}))" if dt != "bool" else \
                            f"{fn}(ones({dims_text(dims)})) > 0.5"
                        return self.emit(text, dt, dims, hint=hint)
        if a.ndim > 2 and all(d == 1 for d in a.shape[:-2]) and dt == "bool" and \
                a.shape[-1] == a.shape[-2] > 1:
            # a causal mask kept in a buffer of shape [1, 1, T, T] (nanoGPT's `bias`, its
            # negation for masked_fill): a triangle, reshaped
            sq = a.reshape(a.shape[-2:])
            square = dims_text(sq.shape)
            for fn, ref, k in (("tril", np.tril, 0), ("triu", np.triu, 1)):
                if np.array_equal(sq, ref(np.ones_like(sq), k)):
                    arg = f", {k}" if k else ""
                    return self.emit(f"(({fn}(ones({square}){arg}) > 0.5) |> reshape("
                                     f"{dims_text(dims)}))", dt, dims, hint=hint)
        if a.ndim == 2 and a.shape[0] == a.shape[1] > 1 and dt == "f32":
            # a causal mask: one value on and below the diagonal, another above it
            low = np.tril(np.ones(a.shape, dtype=bool))
            on, above = a[low], a[~low]
            if np.all(on == on[0]) and np.all(above == above[0]):
                return self.emit(f"where(tril(ones({dims_text(dims)})) > 0.5, "
                                 f"{number(on[0], dt)}, {number(above[0], dt)})", dt, dims,
                                 hint=hint)
        if a.ndim == 1 and dt in ("i64", "i32") and a.size and \
                np.array_equal(a, np.arange(a.size, dtype=a.dtype)):
            kw = "" if dt == "i64" else f", dtype={dt}"
            return self.emit(f"arange({a.size}{kw})", dt, dims, hint=hint)
        if a.ndim > 1 and dt in ("i64", "i32") and a.size > 1 and \
                sum(d > 1 for d in a.shape) == 1 and \
                np.array_equal(a.reshape(-1), np.arange(a.size, dtype=a.dtype)):
            # an arange given unit dims (``unsqueeze(arange(T), 0)`` folded by an exporter)
            kw = "" if dt == "i64" else f", dtype={dt}"
            return self.emit(f"arange({a.size}{kw}) |> reshape({dims_text(dims)})", dt, dims,
                             hint=hint)
        if dt not in FLOATS:
            raise Unsupported(f"a {dt} constant of shape {list(dims)} that is not a fill, an "
                              f"arange or a triangle (the spec has no integer tensor literals)")
        if a.ndim == 0:
            return self.emit(f"full([], {number(a.item(), dt)})", dt, (), hint=hint)
        return self._param(a, dt, dims, hint)

    def _param(self, a: np.ndarray, dt: str, dims: tuple, hint: str) -> Sym:
        name = self.params.take(self._param_hint(hint), "p")
        self.vars.taken.add(name)
        # a name the file did not give (onnx::MatMul_214 -> MatMul_214): the original beside it
        origin = hint if hint != name else None
        self.prog.params.append((name, dt, dims, origin))
        self.prog.weights[name] = a
        return Sym(name, dt, dims)

    def _param_hint(self, hint: str) -> str:
        return hint.removeprefix("onnx::").strip("/")

    # ---- emitting ----
    def emit(self, call: str, dtype: str, shape, head: Sym | None = None, reads=(),
             hint: str | None = None, targets: int = 1, comment: str | None = None,
             kind: str = "", info: dict | None = None):
        """A statement ``var = head |> call`` (or ``var = call``); its new variable(s)."""
        node = self.node
        base = hint or (self._var_hint(node) if node is not None else "x")
        names = [self.vars.take(base if targets == 1 else f"{base}_{i}")
                 for i in range(targets)]
        read = ([head.var] if head is not None else []) + [r.var if isinstance(r, Sym) else r
                                                           for r in reads]
        self.prog.stmts.append(Stmt(names, call, head.var if head is not None else None, read,
                                    comment, kind, dict(info or {}),
                                    key=self._instance_key(node) if node is not None else "",
                                    dtypes=[dtype] if targets == 1 else list(dtype),
                                    shapes=[shape] if targets == 1 else list(shape or ())))
        if shape is None or targets > 1 and any(s is None for s in shape):
            raise Unsupported("an output whose shape ONNX's shape inference leaves unknown "
                              "(nndsl types every value)")
        if targets == 1:
            return Sym(names[0], dtype, tuple(shape))
        return [Sym(n, d, None if s is None else tuple(s)) for n, (d, s) in
                zip(names, zip(dtype, shape))]

    def _instance_key(self, node):
        """The module instance a node belongs to, from its name (:mod:`.blocks` folds the
        instances of one structure into a block): torch's exporter's scopes
        (``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0``: the path up to its first index),
        nndsl's own export (``layer1.0.b.conv1/Conv`` -> ``layer1.0.b``: the application in
        the innermost loop iteration, or the block applied at the top), a Caffe2 file's weight names (``fire2/squeeze1x1_w_0`` -> ``fire2``,
        ``res2_0_branch2a_w_0`` -> ``res2_0``); "" at the top level, None where the node says
        nothing (it belongs with the node before)."""
        cached = self._keys.get(id(node))
        if cached is not None:
            return cached[0]
        key = _instance_key(node, lambda v: isinstance(self.values.get(v), np.ndarray))
        self._keys[id(node)] = (key,)
        return key

    def _var_hint(self, node) -> str:
        """A variable's name: the innermost module of the node's scope (``conv1`` for
        ``/layer1/layer1.0/conv1/Conv``, ``attn`` for ``h.0.block.attn/split``), the last
        part of a scoped value name (``split`` for ``h.0.block.attn.split``), else its
        output's name; the namer numbers repeats (``attn_1``)."""
        out = node.output[0] if node.output else node.op_type
        scope = scope_of(node.name) if node.name.startswith("/") else ""
        if not scope and "/" in out:
            scope = out.rsplit("/", 1)[0]
        elif not scope and "." in out:      # nndsl's own names: the value's scope path
            scope = out.split(":", 1)[0]
        if scope:
            parts = [p for p in scope.replace("/", ".").split(".") if p]
            while len(parts) > 1 and parts[-1].isdigit():
                parts[-2:] = [f"{parts[-2]}_{parts[-1]}"]
            if parts:
                return parts[-1]
        base = out.removesuffix("_output_0").rsplit("/", 1)[-1]
        if base.isdigit() or not base:
            return node.op_type.lower()
        return base.lower() if base == node.op_type else base      # /Relu -> relu_1

    def layer(self, hint: str) -> str:
        return self.layers.take(hint.replace(".", "_").replace("/", "_"), "layer")

    def out_shape(self, i: int = 0):
        """The shape ONNX's inference gives output ``i`` of the current node (None: unknown)."""
        name = self.node.output[i]
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        dims = []
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif d.dim_param in self.syms:
                dims.append(self.syms[d.dim_param])
            else:
                return None
        return tuple(dims)

    def out_dtype(self, i: int = 0, default: str = "f32") -> str:
        t = self.types.get(self.node.output[i])
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
            return default
        return dtype_of(t.tensor_type.elem_type, f"output `{self.node.output[i]}`")


# A constant folded at import is held in memory: at most 2^29 elements (2 GiB of f32, the
# size of the largest ONNX file); ops whose output can outgrow their inputs are folded only
# where shape inference says how large it is.
MAX_FOLDED = 2 ** 29
GROWING = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad",
                     "OneHot"})

def _grown(op: str, arrays: list):
    """The element count of a growing op's output, from its constant inputs (None: unknown)."""
    try:
        if op == "ConstantOfShape":
            return int(np.prod(arrays[0].astype(np.float64)))
        if op == "Expand":
            x, shape = arrays[0].shape, [int(d) for d in arrays[1].reshape(-1)]
            rank = max(len(x), len(shape))
            x = (1,) * (rank - len(x)) + tuple(x)
            shape = [1] * (rank - len(shape)) + shape
            return int(np.prod([max(a, b) for a, b in zip(x, shape)], dtype=np.float64))
        if op == "Tile":
            return int(arrays[0].size * np.prod(arrays[1].astype(np.float64)))
        if op == "Range":
            start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in arrays[:3])
            return max(0, int(np.ceil((limit - start) / delta))) if delta else None
        if op == "Pad":
            pads = arrays[1].reshape(-1).astype(np.float64)
            x = arrays[0].shape
            if len(pads) != 2 * len(x):
                return None
            return int(np.prod([d + pads[i] + pads[i + len(x)] for i, d in enumerate(x)]))
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    return None


NOT_FOLDED = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                        "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"})


def _evaluate(node, arrays, opset: int):
    """One standard node on constant inputs, with onnx's reference implementation."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    names = [f"i{k}" if a is not None else "" for k, a in enumerate(arrays)]
    n = helper.make_node(node.op_type, names, [f"o{k}" for k in range(len(node.output))],
                         domain=node.domain)
    n.attribute.extend(node.attribute)
    g = helper.make_graph([n], "fold", [helper.make_tensor_value_info(
        nm, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for nm, a in zip(names, arrays)
        if a is not None], [helper.make_empty_tensor_value_info(f"o{k}")
                            for k in range(len(node.output))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    try:
        ev = ReferenceEvaluator(m)
        outs = ev.run(None, {nm: a for nm, a in zip(names, arrays) if a is not None})
    except Exception as e:  # noqa: BLE001 - the reference raises what numpy raises
        raise Unsupported(f"folding its constant inputs failed: {str(e).splitlines()[0][:200]}")
    return [np.asarray(o) for o in outs]


def convert(model, label: str, name: str | None = None) -> Program:
    return Converter(model, label, name).run()


def _live(nodes: list, graph) -> list:
    """The nodes some graph output depends on, in their order (an exporter's leftovers, such
    as the final states of a recurrent layer nothing reads, would be spec statements)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for a in node.attribute:    # what a subgraph reads from the enclosing graph
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    needed.update(i for n in sub.node for i in n.input if i)
    return keep[::-1]


def _param_like(name: str) -> bool:
    """Whether a one-element initializer is named as a model's parameter (``logit_scale``,
    ``conv1.eps``) rather than as an exporter's constant (``onnx::Mul_12``, ``/Constant``,
    ``const_3``)."""
    import re
    return bool(name) and not name.startswith("onnx::") and "/" not in name and \
        re.match(r"(const|Constant|_)", name) is None and \
        re.fullmatch(r"[A-Za-z_][\w.]*", name) is not None


def _drop_dead(prog: Program) -> None:
    """Statements whose values nothing reads (a permutation another absorbed after it was
    written, the keys' transpose an attention took over) go, where they hold no layer."""
    read = {v for _, v in prog.outputs}
    keep = []
    for st in reversed(prog.stmts):
        if st.targets and not any(t in read for t in st.targets) and " as " not in st.call \
                and not st.info.get("instance") and not any(
                    k.startswith(f"{t}.") for t in st.targets for k in prog.weights):
            continue
        keep.append(st)
        read.update(st.reads)
    prog.stmts = keep[::-1]


def _instance_key(node, is_const) -> str | None:
    import re
    name = node.name
    if name.startswith("/"):                        # torch: /layer1/layer1.0/conv1/Conv
        parts = [p for p in scope_of(name).split(".") if p]
        for i, p in enumerate(parts):
            if i and p.isdigit():
                return ".".join(parts[: i + 1])
        return ""
    if "/" in name:                                 # nndsl: layer1.0.b.conv1/Conv
        path = name.split("/", 1)[0]
        parts = path.split(".")[:-1]
        # the innermost loop iteration's application (layers.0.blocks_rest.1.b), else the
        # block applied at the top (first)
        digits = [i for i, p in enumerate(parts) if i and p.isdigit()]
        if digits:
            return ".".join(parts[: digits[-1] + 2])
        return parts[0] if parts else ""
    weight = next((i for i in node.input[1:] if i and is_const(i)), None)   # Caffe2
    if weight is None:
        return None
    w = re.sub(r"^gpu_\d+/", "", weight)
    if "/" in w:
        return w.split("/", 1)[0]
    m = re.match(r"([A-Za-z]+\d+_\d+)_", w)
    return m[1] if m else ""


def _where(node) -> str:
    """How an error names a node: its name, or the value it makes when it has none."""
    return f"`{node.name}`" if node.name else f"the node making `{node.output[0]}`"
