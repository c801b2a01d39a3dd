"""Repeated structure folded into blocks: the instances of one module as one ``block``.

An exporter flattens a model: the sixteen bottlenecks of a ResNet-50 are sixteen runs of
statements. Each statement remembers the module instance its node came from (its ``key``:
``layer1.0`` for torch's ``/layer1/layer1.0/conv1/Conv``, see ``Converter._instance_key``).
The statements of one instance, consecutive in the program, are a *segment*; a segment reads
some values from before it (its inputs) and gives one value to what follows (its output).

Two segments are instances of one block when their statements are the same up to numbers:
the same calls, the same layer labels (once the instance's own prefix is taken off:
``layer1_0_conv1`` -> ``conv1``), the same data flow between them, keyword arguments with a
number compared against the layer's defaults (``stride=2`` against an omitted ``stride``). The
numbers that differ become the block's parameters (``conv1_out``, ``conv2_stride``), one
parameter for positions that differ in the same way. A block is written once, and each
instance becomes an application of it, ``h = x |> layer_block(8, 32, 1) as layer1_0``;
consecutive applications that chain (each reads the one before) become one loop,
``layer1: repeat 2 { h = h |> layer_block_1(8, 32) as b }`` (``for (a, b) in [...]`` where
their numbers differ).

The weights follow the names: a layer ``layer1_0_conv1`` of an instance applied as
``layer1_0`` is ``layer1_0.conv1`` (its weights ``layer1_0.conv1.weight``); in a loop
``layer1``, iteration ``i``, it is ``layer1.{i}.b.conv1``. The import's check (the spec
compiled, its parameters matched against the weights) runs on the folded text; where it fails
the flat text is kept, so folding never makes an import fail.

Everything here works on the program's text: the statements' calls are tokenized, never
evaluated.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from nndsl.importer.program import Namer, Program, Stmt, identifier, reserved_names

TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|\d+)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<op>\|>|\*\*|//|==|!=|<=|>=|\S))""", re.X)


class NoFold(Exception):
    """A segment that cannot be a block application (it reads a layer or a dim of the model,
    or gives more than one value)."""


def tokens(text: str) -> list:
    """``(kind, text, start, end)`` for each token of ``text``."""
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        kind = m.lastgroup
        out.append((kind, m[kind], m.start(kind), m.end(kind)))
        pos = m.end()
    return out


def _role(toks: list, i: int) -> str:
    """What an identifier token is: an attribute (``.weight``), a keyword argument's name, a
    layer label (after ``as``), a called name, or a plain name."""
    prev = toks[i - 1][1] if i else ""
    nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
    if prev == ".":
        return "attr"
    if nxt == "=":
        return "kwarg"
    if prev == "as":
        return "label"
    return "name"


def rename_vars(stmt: Stmt, mapping: dict) -> None:
    """Variables renamed in a statement: its targets, head, reads and call text."""
    if not mapping:
        return
    stmt.targets = [mapping.get(t, t) for t in stmt.targets]
    if stmt.head is not None:
        stmt.head = mapping.get(stmt.head, stmt.head)
    stmt.reads = [mapping.get(r, r) for r in stmt.reads]
    toks = tokens(stmt.call)
    text, shift = stmt.call, 0
    for i, (kind, t, a, b) in enumerate(toks):
        if kind == "id" and t in mapping and _role(toks, i) == "name":
            text = text[: a + shift] + mapping[t] + text[b + shift:]
            shift += len(mapping[t]) - len(t)
    stmt.call = text


# ---- segments ----

@dataclass
class Segment:
    key: str
    start: int                     # index of its first statement in the program
    stmts: list
    inputs: list = field(default_factory=list)     # external variables, in order of use
    output: str = ""
    sig: tuple = ()
    numbers: list = field(default_factory=list)    # (text, fn, arg name) per number position
    kwargs: dict = field(default_factory=dict)     # (stmt, paren, fn, kw) -> number text
    labels: dict = field(default_factory=dict)     # label or instance variable -> local name
    plan: list = field(default_factory=list)       # per statement: its tokens, analysed
    dims: set = field(default_factory=set)         # the model's symbolic dims it reads
    inlined: int = 0            # constant statements copied in front (not in the program)

    @property
    def span(self) -> int:
        """How many of the program's statements it covers."""
        return len(self.stmts) - self.inlined
    pattern: tuple = ()                            # the first input's dims as the block binds


def _local_label(label: str, key: str) -> str | None:
    """A layer's label inside its instance: ``layer1_0_conv1`` of ``layer1.0`` -> ``conv1``,
    ``transformer_h_0_ln_1`` of ``h.0`` -> ``ln_1``."""
    k = identifier(key)
    if label.startswith(k + "_"):
        rest = label[len(k) + 1:]
    elif f"_{k}_" in label:
        rest = label.split(f"_{k}_", 1)[1]
    else:
        return None
    return identifier(rest, "l") if rest else None


def _surface_params(fn: str) -> list:
    from nndsl.elab.library import SURFACE
    s = SURFACE.get(fn)
    if s is None:
        return []
    return [p for p in s.params if p.kind not in ("tensor", "tensors")]


def _default(fn: str, kw: str):
    """The default of a built-in's numeric option, as text (None: none, or not a number)."""
    for p in _surface_params(fn):
        if p.name == kw:
            d = p.default
            if isinstance(d, bool) or not isinstance(d, (int, float)):
                return None
            return repr(d)
    return None


def _analyse(seg: Segment, model_vars: set, dims: set, weight_prefixes: set) -> None:
    """The segment's inputs, output, signature, numbers and keyword numbers."""
    local_index: dict[str, int] = {}
    ext: list[str] = []

    def ref(name: str):
        if name in local_index:
            return ("V", local_index[name])
        if name not in ext:
            ext.append(name)
        return ("E", ext.index(name))

    # layers of the instance: labels after `as`, and instance variables (`wte = embedding(..)`)
    for s in seg.stmts:
        toks = tokens(s.call)
        for i, (kind, t, _, _) in enumerate(toks):
            if kind == "id" and _role(toks, i) == "label":
                local = _local_label(t, seg.key)
                if local is None:
                    raise NoFold(f"label {t} outside the instance's names")
                seg.labels[t] = local
        for t in s.targets:
            if t in weight_prefixes:
                local = _local_label(t, seg.key)
                if local is None:
                    raise NoFold(f"layer {t} outside the instance's names")
                seg.labels[t] = local
    sig = []
    for si, s in enumerate(seg.stmts):
        toks = tokens(s.call)
        head = ref(s.head) if s.head is not None else None
        norm, plan, parens = [], [], []
        n_paren = 0
        skip = 0
        for i, (kind, t, a, b) in enumerate(toks):
            if skip:
                skip -= 1
                continue
            if kind == "op" and t == "(":
                fn = toks[i - 1][1] if i and toks[i - 1][0] == "id" else ""
                parens.append((n_paren, fn))
                n_paren += 1
            elif kind == "op" and t == ")" and parens:
                plan.append(("close", parens[-1][0], a, toks[i - 1][1] == "("))
                parens.pop()
            if kind == "num":
                fn = parens[-1][1] if parens else ""
                norm.append(("N",))
                plan.append(("num", len(seg.numbers), a, b))
                seg.numbers.append((t, fn, _positional_name(toks, i)))
                continue
            if kind == "id":
                role = _role(toks, i)
                if role == "kwarg" and parens and i + 2 < len(toks) and \
                        toks[i + 1][1] == "=" and toks[i + 2][0] == "num" and \
                        (i + 3 >= len(toks) or toks[i + 3][1] in (",", ")")) and \
                        toks[i - 1][1] == ",":
                    paren, fn = parens[-1]
                    seg.kwargs[(si, paren, fn, t)] = toks[i + 2][1]
                    # the `, kw = number` goes: its text span is cut from the call
                    norm.pop()          # the comma before it
                    plan.append(("cut", toks[i - 1][2], toks[i + 2][3], (si, paren, fn, t)))
                    skip = 2
                    continue
                if role == "label":
                    norm.append(("L", seg.labels[t]))
                    plan.append(("label", t, a, b))
                    continue
                if role in ("name",) and t in dims:
                    seg.dims.add(t)         # bound by the first input's pattern, or no fold
                if role == "name" and (t in model_vars or t in local_index):
                    nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
                    r = ref(t)
                    if r[0] == "E" and nxt in ("(", "."):
                        raise NoFold(f"applies or reads the layer {t} from outside")
                    norm.append(r)
                    plan.append(("var", t, a, b))
                    continue
                if role == "name" and t in weight_prefixes:
                    raise NoFold(f"reads the layer {t}")
            norm.append(("T", t))
        for t in s.targets:
            local_index[t] = len(local_index)
        sig.append((tuple(norm), head, len(s.targets)))
        seg.plan.append(plan)
    seg.inputs = ext
    seg.sig = tuple(sig)


def _positional_name(toks: list, i: int) -> str:
    """What a number is an argument of, for the name of a parameter it becomes:
    ``conv2d(8, 3)``'s 8 -> ``out``, ``stride=2`` -> ``stride``; else ``n``."""
    if i >= 2 and toks[i - 1][1] == "=" and toks[i - 2][0] == "id":
        return toks[i - 2][1]
    if i and toks[i - 1][1] in ("(", ","):
        depth, k, pos = 0, i - 1, 0
        while k >= 0:
            t = toks[k][1]
            if t in (")", "]"):
                depth += 1
            elif t in ("(", "["):
                if depth == 0:
                    break
                depth -= 1
            elif t == "," and depth == 0:
                pos += 1
            k -= 1
        if k >= 1 and toks[k][1] == "(" and toks[k - 1][0] == "id":
            names = [p.name for p in _surface_params(toks[k - 1][1])]
            if pos < len(names):
                return names[pos]
    return "n"


def segments(prog: Program) -> list[Segment]:
    keys = []
    last = ""
    for s in prog.stmts:
        k = s.key if s.key is not None else last
        keys.append(k)
        last = k
    # a statement the file does not place (a Caffe2 node without weights) belongs to the
    # instance before it up to where the instance's branches have merged (one of its values
    # still read: the concat, the sum), then while it only applies a function without numbers
    # to one value (the relu after a sum; not the pool after a module)
    last_read: dict = {}
    for n, s in enumerate(prog.stmts):
        for r in s.reads:
            last_read[r] = n
    for _, v in prog.outputs:
        last_read[v] = len(prog.stmts)
    i = 0
    while i < len(keys):
        j = i
        while j + 1 < len(keys) and keys[j + 1] == keys[i]:
            j += 1
        if keys[i] and any(prog.stmts[k].key is None for k in range(i, j + 1)):
            e = max(k for k in range(i, j + 1) if prog.stmts[k].key is not None)
            end = j
            for k in range(e, j + 1):
                live = {t for s in prog.stmts[i:k + 1] for t in s.targets
                        if last_read.get(t, -1) > k}
                if len(live) == 1:
                    end = k
                    break
            while end + 1 <= j and len(set(prog.stmts[end + 1].reads)) == 1 and \
                    not any(t[0] == "num" for t in tokens(prog.stmts[end + 1].call)):
                end += 1
            for k in range(end + 1, j + 1):
                keys[k] = ""
        i = j + 1
    runs: list[Segment] = []
    for i, (s, k) in enumerate(zip(prog.stmts, keys)):
        if runs and runs[-1].key == k and runs[-1].start + len(runs[-1].stmts) == i:
            runs[-1].stmts.append(s)
        else:
            runs.append(Segment(k, i, [s]))
    seen = Counter(r.key for r in runs)
    # an instance is one run of two statements or more (a key in two places is no instance)
    return [r for r in runs if r.key and seen[r.key] == 1 and len(r.stmts) >= 2]


# ---- folding ----

@dataclass
class Group:
    name: str
    members: list
    params: list          # (name, type) of the block
    columns: list         # per member: the parameter values, as text
    constant: dict        # number position or kwarg key -> text, where every member agrees
    pos_param: dict       # number position or kwarg key -> parameter name
    kwarg_keys: list      # the keyword arguments of the block body, in order


def _stem(key: str) -> str:
    """A name for what the instances are: the words of the key before its first number
    (``layer1.0`` -> ``layer``, ``layers_0_b0`` -> ``layers``, ``inception_3a`` ->
    ``inception``)."""
    first = key.split(".")[0]
    m = re.match(r"[A-Za-z]+(?:_[A-Za-z]+)*", first)
    return m[0] if m else first


def fold_blocks(prog: Program) -> bool:
    """Fold the program's repeated instances into blocks, in place; whether any were."""
    dims = set()
    for _, _, ds in prog.inputs:
        for d in ds:
            dims.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(d)))
    model_vars = {n for n, _, _ in prog.inputs} | {p[0] for p in prog.params}
    for s in prog.stmts:
        model_vars.update(s.targets)
    weight_prefixes = {k.split(".", 1)[0] for k in prog.weights}
    readers: dict[str, list] = defaultdict(list)
    for i, s in enumerate(prog.stmts):
        for r in s.reads:
            readers[r].append(i)
    outputs = {v for _, v in prog.outputs}

    _hoist_constants(prog, weight_prefixes, model_vars)
    readers = defaultdict(list)
    for i, s in enumerate(prog.stmts):
        for r in s.reads:
            readers[r].append(i)
    consts = _constants(prog, weight_prefixes)
    found = []
    for seg in segments(prog):
        _inline_constants(seg, consts)
        try:
            _analyse(seg, model_vars, dims, weight_prefixes)
        except NoFold:
            continue
        end = seg.start + seg.span
        outs = [t for s in seg.stmts[seg.inlined:] for t in s.targets
                if t in outputs or any(j >= end for j in readers[t])]
        if len(outs) != 1 or not seg.inputs or seg.inputs[0] in outs:
            continue
        seg.output = outs[0]
        if seg.dims:
            shape = _shape(prog, seg.inputs[0])
            texts = [str(d) for d in shape] if shape is not None else []
            if not seg.dims <= set(texts):
                continue            # a dim the first input's pattern cannot bind
            seg.pattern = tuple(t if t in seg.dims else "_" for t in texts)
        j = next(i for i, s in enumerate(seg.stmts) if seg.output in s.targets)
        if len(seg.stmts[j].targets) != 1:
            continue
        found.append(seg)
    by_sig: dict = defaultdict(list)
    for seg in found:
        out_at = next((i, s.targets.index(seg.output)) for i, s in enumerate(seg.stmts)
                      if seg.output in s.targets)
        dtypes = tuple(_dtype(prog, v) for v in seg.inputs)
        by_sig[(seg.sig, out_at, dtypes, seg.pattern)].append(seg)
    groups = []
    names = Namer(reserved_names())
    names.taken.update(model_vars)
    for sig, members in by_sig.items():
        if len(members) < 2:
            continue
        for sub in _kwarg_groups(members):
            if len(sub) >= 2:
                groups.append(sub)
    if not groups:
        return False
    groups.sort(key=lambda g: g[0].start)
    made = []
    for members in groups:
        g = _make_group(members, names)
        if g is not None:
            made.append(g)
    if not made:
        return False
    _rewrite(prog, made, names, readers, outputs)
    return True


def _constants(prog: Program, weight_prefixes: set) -> dict:
    """The statements that compute a constant (they read nothing but other constants and hold
    no layer: a causal mask ``full([T, T], -inf) |> triu(1)``), by target."""
    params = {n for n, _, _ in prog.inputs} | {p[0] for p in prog.params}
    out: dict = {}
    for s in prog.stmts:
        if len(s.targets) == 1 and s.kind != "raw" and " as " not in s.call and \
                s.targets[0] not in weight_prefixes and not (set(s.reads) & params) and \
                all(r in out for r in s.reads):
            out[s.targets[0]] = s
    return out


def _hoist_constants(prog: Program, weight_prefixes: set, model_vars: set) -> None:
    """A constant an instance computes and later instances read (nndsl's compiler computes a
    mask shared by every layer once, in the first): moved to the top level in front of that
    instance, so that every instance reads it alike (each block computes its own copy)."""
    consts = _constants(prog, weight_prefixes)
    key_of = {t: s.key for s in prog.stmts for t in s.targets}
    moved = True
    while moved:
        moved = False
        for i, s in enumerate(prog.stmts):
            if s.targets and s.targets[0] in consts and s.key and any(
                    s.targets[0] in o.reads and o.key != s.key for o in prog.stmts[i + 1:]):
                j = i
                while j > 0 and prog.stmts[j - 1].key == s.key:
                    j -= 1
                deps, todo = set(), list(s.reads)
                while todo:
                    d = todo.pop()
                    if d not in deps:
                        deps.add(d)
                        todo.extend(consts[d].reads)
                # it, and the constants it reads from its instance, in front of the instance
                chain = [k for k in range(j, i + 1)
                         if k == i or prog.stmts[k].targets and prog.stmts[k].targets[0] in deps]
                picked = [prog.stmts[k] for k in chain]
                for k in reversed(chain):
                    prog.stmts.pop(k)
                for n, st in enumerate(picked):
                    prog.stmts.insert(j + n, st)
                    st.key = ""
                    key_of[st.targets[0]] = ""
                moved = True
                break
    del model_vars


def _inline_constants(seg: Segment, consts: dict) -> None:
    """The top-level constants an instance reads, copied in front of its statements."""
    import dataclasses
    mine = {t for s in seg.stmts for t in s.targets}
    need: list = []

    def want(v):
        if v in consts and v not in mine and v not in [n.targets[0] for n in need]:
            for r in consts[v].reads:
                want(r)
            need.append(consts[v])

    for s in seg.stmts:
        for r in s.reads:
            want(r)
    if need:
        seg.stmts[:0] = [dataclasses.replace(n, targets=list(n.targets), reads=list(n.reads))
                         for n in need]
        seg.inlined = len(need)


def _shape(prog: Program, var: str):
    for n, _, dims in prog.inputs:
        if n == var:
            return tuple(dims)
    for p in prog.params:
        if p[0] == var:
            return tuple(p[2])
    for s in prog.stmts:
        if var in s.targets and s.shapes:
            return s.shapes[s.targets.index(var)]
    return None


def weights_of(prog: Program) -> set:
    return {k.split(".", 1)[0] for k in prog.weights}


def _dtype(prog: Program, var: str) -> str:
    for n, dt, _ in prog.inputs:
        if n == var:
            return dt
    for p in prog.params:
        if p[0] == var:
            return p[1]
    for s in prog.stmts:
        if var in s.targets and s.dtypes:
            return s.dtypes[s.targets.index(var)]
    return "?"


def _kwarg_groups(members: list) -> list:
    """Members whose keyword numbers agree where one omits what another gives (its default
    stands in): one group; else the members split by the keywords they give."""
    keys = []
    for m in members:
        for k in m.kwargs:
            if k not in keys:
                keys.append(k)
    if all(k in m.kwargs or _default(k[2], k[3]) is not None for m in members for k in keys):
        return [members]
    by: dict = defaultdict(list)
    for m in members:
        by[tuple(sorted(m.kwargs))].append(m)
    return list(by.values())


def _make_group(members: list, names: Namer) -> Group | None:
    first = members[0]
    keys = []
    for m in members:
        for k in m.kwargs:
            if k not in keys:
                keys.append(k)
    positions = [("num", i) for i in range(len(first.numbers))] + [("kw", k) for k in keys]

    def value(m, p):
        if p[0] == "num":
            return m.numbers[p[1]][0]
        return m.kwargs.get(p[1], _default(p[1][2], p[1][3]))

    constant, pos_param, params, columns = {}, {}, [], [[] for _ in members]
    seen: dict = {}
    local = Namer(reserved_names())
    local.taken.update(first.dims)
    for s in first.stmts:       # parameter names must not be the block's variables
        local.taken.update(_local_var(t, first) for t in s.targets)
    for p in positions:
        vals = tuple(value(m, p) for m in members)
        if any(v is None for v in vals):
            return None
        if len(set(_num(v) for v in vals)) == 1:
            constant[p] = vals[0]
            continue
        norm = tuple(_num(v) for v in vals)
        if norm in seen:
            pos_param[p] = seen[norm]
            continue
        if p[0] == "num":
            _, fn, arg = first.numbers[p[1]]
            label = _label_near(first, p[1])
        else:
            arg, label = p[1][3], _label_of_paren(first, p[1][0], p[1][1])
        hint = f"{label}_{arg}" if label and arg != "n" else arg
        pname = local.take(hint, "n")
        seen[norm] = pname
        pos_param[p] = pname
        typ = "int" if all(re.fullmatch(r"\d+", v) for v in vals) else "float"
        params.append((pname, typ))
        for c, v in zip(columns, vals):
            c.append(v)
    name = names.take(f"{_stem(first.key)}_block", "b")
    return Group(name, members, params, columns, constant, pos_param, keys)


def _num(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def _label_near(seg: Segment, num_index: int) -> str:
    """The local label of the layer call a number position is an argument of."""
    for plan in seg.plan:
        items = [it for it in plan if it[0] in ("num", "label")]
        for k, it in enumerate(items):
            if it[0] == "num" and it[1] == num_index:
                after = next((x for x in items[k:] if x[0] == "label"), None)
                return seg.labels.get(after[1], "") if after else ""
    return ""


def _label_of_paren(seg: Segment, si: int, paren: int) -> str:
    plan = seg.plan[si]
    close = next((it for it in plan if it[0] == "close" and it[1] == paren), None)
    if close is not None:
        lab = next((it for it in plan if it[0] == "label" and it[2] > close[2]), None)
        return seg.labels.get(lab[1], "") if lab else ""
    return ""


def _local_var(name: str, seg: Segment) -> str:
    """A variable's name inside the block: an instance's layer by its local label, others
    without the instance's prefix and the namer's numbers (``h_0_attn_Where_output_0`` ->
    ``attn_Where_output``)."""
    if name in seg.labels:
        return seg.labels[name]
    name = _local_label(name, seg.key) or name
    return re.sub(r"(_\d+)+$", "", name) or name


# ---- the text ----

def _body(g: Group) -> str:
    from nndsl.importer.printer import chain_stmts
    seg = g.members[0]
    vars_ = Namer(reserved_names())
    vars_.taken.update(p for p, _ in g.params)
    vars_.taken.update(seg.dims)
    inputs = [vars_.take("x" if i == 0 else f"x{i + 1}") for i in range(len(seg.inputs))]
    rename = dict(zip(seg.inputs, inputs))
    for s in seg.stmts:
        for t in s.targets:
            rename[t] = vars_.take(_local_var(t, seg))
    stmts = []
    for si, (s, plan) in enumerate(zip(seg.stmts, seg.plan)):
        edits = []      # (start, end, text)
        for it in plan:
            if it[0] == "num":
                p = ("num", it[1])
                edits.append((it[2], it[3], g.pos_param.get(p) or g.constant[p]))
            elif it[0] == "cut":
                k = it[3]
                p = ("kw", k)
                edits.append((it[1], it[2], f", {k[3]}={g.pos_param.get(p) or g.constant[p]}"))
            elif it[0] == "label":
                edits.append((it[2], it[3], seg.labels[it[1]]))
            elif it[0] == "var":
                edits.append((it[2], it[3], rename[it[1]]))
        given = {it[3] for it in plan if it[0] == "cut"}
        for it in plan:       # keyword numbers other instances give and this one omits
            if it[0] != "close":
                continue
            for k in g.kwarg_keys:
                if k[0] == si and k[1] == it[1] and k not in given:
                    p = ("kw", k)
                    text = g.pos_param.get(p) or g.constant[p]
                    edits.append((it[2], it[2], f"{'' if it[3] else ', '}{k[3]}={text}"))
        call = s.call
        for a, b, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
            call = call[:a] + text + call[b:]
        stmts.append(Stmt([rename[t] for t in s.targets], call,
                          rename.get(s.head, s.head) if s.head is not None else None,
                          [rename.get(r, r) for r in s.reads]))
    out = rename[seg.output]
    entries = chain_stmts(stmts, [out])
    lines = [f"block {g.name}({', '.join(f'{p}: {t}' for p, t in g.params)}) {{"]
    for k, (name, var) in enumerate(zip(inputs, seg.inputs)):
        dims = ", ".join(seg.pattern) if k == 0 and seg.pattern else "..."
        lines.append(f"    input {name}: {seg_dtype(g, var)}[{dims}]")
    ret = None
    if entries and entries[-1][0] == [out] and \
            sum(out in s.reads for s in stmts) == 0:
        ret = entries.pop()[1]
    for targets, expr, _ in entries:
        lines.append(f"    {', '.join(targets)} = {expr}")
    lines.append(f"    return {ret if ret is not None else out}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def seg_dtype(g: Group, var: str) -> str:
    return g.dtypes[var]


def _rewrite(prog: Program, groups: list, names: Namer, readers: dict, outputs: set) -> None:
    """The program with each member's statements replaced by an application, consecutive
    chained applications by a loop, the weights renamed, the block texts in ``prog.defs``."""
    member_of = {}
    for g in groups:
        g.dtypes = {v: _dtype(prog, v) for m in g.members for v in m.inputs}
        for k, m in enumerate(g.members):
            member_of[m.start] = (g, k)
    labels = Namer(reserved_names())
    inside = {id(s) for g in groups for m in g.members for s in m.stmts}
    labels.taken.update(re.findall(r"\bas\s+([A-Za-z_]\w*)", " ".join(
        s.call for s in prog.stmts if id(s) not in inside)))
    new: list = []
    apps = []          # (index in new, group, member index, app label)
    i = 0
    while i < len(prog.stmts):
        if i in member_of:
            g, k = member_of[i]
            m = g.members[k]
            label = None        # the application's label, once it is known not to be a loop's
            args = m.inputs[1:] + g.columns[k]
            st = Stmt([m.output], f"{g.name}({', '.join(args)})", m.inputs[0],
                      list(m.inputs), key="", dtypes=[_dtype(prog, m.output)],
                      kind="block_app")
            apps.append((len(new), g, k, label))
            new.append(st)
            i += m.span
            continue
        new.append(prog.stmts[i])
        i += 1
    # runs of chained applications of one block
    runs, cur = [], []
    for a in apps:
        if cur:
            pi, pg, pk, _ = cur[-1]
            pm, m = pg.members[pk], a[1].members[a[2]]
            if a[0] == pi + 1 and a[1] is pg and m.inputs[0] == pm.output and \
                    m.inputs[1:] == pm.inputs[1:] and \
                    all(m.start <= j < m.start + m.span for j in readers[pm.output]) \
                    and pm.output not in outputs:
                cur.append(a)
                continue
        if len(cur) >= 2:
            runs.append(cur)
        cur = [a]
    if len(cur) >= 2:
        runs.append(cur)
    renames_w: dict = {}
    in_run = {}
    for run in runs:
        for a in run:
            in_run[a[0]] = run
    replace: dict = {}
    var_rename: dict = {}
    for run in runs:
        g = run[0][1]
        members = [g.members[a[2]] for a in run]
        keys = [m.key for m in members]
        parts = [k.split(".") for k in keys]
        if all(len(p) == len(parts[0]) >= 3 and p[-2].isdigit() for p in parts) and \
                len({(tuple(p[:-2]), p[-1]) for p in parts}) == 1:
            base, inner = ".".join(parts[0][:-2]), parts[0][-1]   # nndsl's own loop, read back
        else:
            common = keys[0].split(".")
            for p in parts[1:]:
                n = 0
                while n < min(len(common), len(p)) and common[n] == p[n]:
                    n += 1
                common = common[:n]
            base = ".".join(common)
            if not common or len(common) == len(parts[0]):
                base = os.path.commonprefix(keys).rstrip("_.") or _stem(keys[0])
            inner = "b"
        label = labels.take(identifier(base), "blocks")
        first = members[0]
        v = first.inputs[0]
        pre = []
        if v in {n for n, _, _ in prog.inputs} | {p[0] for p in prog.params} or \
                any(not first.start <= j < first.start + first.span for j in readers[v]):
            nv = names.take("h")
            pre.append(Stmt([nv], v, None, [v], key="", dtypes=[_dtype(prog, v)]))
            v = nv
        extra = first.inputs[1:]
        cols = [g.columns[a[2]] for a in run]
        varying = [j for j in range(len(g.params)) if len({c[j] for c in cols}) > 1]
        loopvars = {j: names.take(g.params[j][0], "n") for j in varying}
        args = extra + [loopvars[j] if j in loopvars else cols[0][j]
                        for j in range(len(g.params))]
        body = f"{v} = {v} |> {g.name}({', '.join(args)}) as {inner}"
        if varying:
            if len(varying) == 1:
                head = loopvars[varying[0]]
                items = ", ".join(c[varying[0]] for c in cols)
            else:
                head = "(" + ", ".join(loopvars[j] for j in varying) + ")"
                items = ", ".join("(" + ", ".join(c[j] for j in varying) + ")" for c in cols)
            text = f"{label}: for {head} in [{items}] {{ {body} }}"
        else:
            text = f"{label}: repeat {len(run)} {{ {body} }}"
        loop = Stmt([], text, None, [v] + extra, key="", kind="raw")
        replace[run[0][0]] = pre + [loop]
        for a in run[1:]:
            replace[a[0]] = []
        var_rename[members[-1].output] = v
        for j, (a, m) in enumerate(zip(run, members)):
            for old, loc in m.labels.items():
                renames_w[old] = f"{label}.{j}.{inner}.{loc}"
    for idx, g, k, _ in apps:
        if idx in in_run:
            continue
        m = g.members[k]
        label = labels.take(identifier(m.key), "b")
        new[idx].call += f" as {label}"
        for old, loc in m.labels.items():
            renames_w[old] = f"{label}.{loc}"
    out = []
    for idx, st in enumerate(new):
        out.extend(replace.get(idx, [st]))
    for old in list(var_rename):
        v, seen = var_rename[old], {old}
        while v in var_rename and v not in seen:
            seen.add(v)
            v = var_rename[v]
        var_rename[old] = v
    for st in out:
        rename_vars(st, var_rename)
    prog.outputs = [(n, var_rename.get(v, v)) for n, v in prog.outputs]
    # constants hoisted for the instances that now compute their own: gone where unread
    consts = {id(s) for s in _constants(Program("", stmts=out), set(weights_of(prog))).values()}
    while True:
        read = {r for st in out for r in st.reads} | {v for _, v in prog.outputs}
        keep = [st for st in out if id(st) not in consts or st.targets[0] in read]
        if len(keep) == len(out):
            break
        out = keep
    prog.stmts = out
    weights = {}
    for key, w in prog.weights.items():
        prefix, _, rest = key.partition(".")
        weights[f"{renames_w[prefix]}.{rest}" if prefix in renames_w and rest else key] = w
    prog.weights = weights
    prog.defs = [_body(g) for g in groups]
