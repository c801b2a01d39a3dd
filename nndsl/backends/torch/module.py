"""The IR as a trainable ``torch.nn.Module``.

Parameters and buffers are registered under the spec's scope paths (``stages.0.conv2d_0.weight``)
in a tree of plain sub-modules, so ``state_dict()`` keys are the spec's names and ``.to()``,
``.train()``/``.eval()``, autograd, ``torch.compile`` and DDP behave as for any module. The
forward pass walks a precomputed plan of the graph's nodes in order, calling the lowering of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.utils.checkpoint
from torch import nn

from nndsl.backends.torch.init import initial_value
from nndsl.backends.torch import lowering as L
from nndsl.backends.torch.lowering import DTYPES, TORCH_LOWERINGS
from nndsl.errors import InputError, LimitError, LoweringError, WeightsError
from nndsl.gc_pause import paused_gc
from nndsl.ir.derive import constant_value, is_constant
from nndsl.ir.graph import Graph
from nndsl.ir.ops import SIGNATURES
from nndsl.ir.regions import placed_regions
from nndsl.ir.types import BITS, SymDim, storage_shape
from nndsl.limits import DEFAULT, raise_hint, show_bytes


class _Runtime:
    """What a lowering sees of one forward call: mode, device, symbolic dim values."""

    __slots__ = ("training", "env", "device", "recompute")

    def __init__(self, training: bool, env: dict, device, recompute: bool = False):
        self.training, self.env, self.device = training, env, device
        self.recompute = recompute   # re-running a checkpointed block in backward

    def recomputing(self) -> "_Runtime":
        return _Runtime(self.training, self.env, self.device, True)

    def dim(self, d):
        return d if isinstance(d, int) else d.evaluate(self.env)


class _Scope(nn.Module):
    """A container for the parameters of one scope; it has no forward of its own."""


class GraphModule(nn.Module):
    """A compiled nndsl model. Call it with inputs by name or position, in declared order."""

    def __init__(self, graph: Graph, seed: int | None = 0):
        with paused_gc():   # building a module of many nodes: see nndsl.gc_pause
            self._build(graph, seed)

    def _build(self, graph: Graph, seed: int | None) -> None:
        super().__init__()
        self.graph_name = graph.name
        self.input_names = list(graph.inputs)
        self.output_names = [n for n, _ in graph.outputs]
        self._input_types = [graph.node(n).type for n in graph.inputs]
        self._limits = graph.meta.get("limits") or DEFAULT
        self._check_param_bytes(graph)
        self._init_params(graph, seed)
        self._onednn = bool(graph.meta.get("channels_last"))   # O2's channels-last mode
        self._plan = self._make_plan(graph)
        self._fused = _fused_plan(graph, self._plan) if self._onednn else None
        self._plans = {self._onednn: (self._plan, self._fused)}
        if self._onednn:
            self._plans[False] = (self._make_plan(graph, onednn=False), None)
        self._outputs = [(v.node, v.index if len(graph.node(v.node).types) > 1 else None)
                         for _, v in graph.outputs]
        self._symbols = self._symbol_sites()
        self._segments = self._block_segments(graph)
        self.checkpointing = False
        self._params = graph.params()
        self._aliases = dict(graph.meta.get("aliases", {}))
        self._inference_only = bool(graph.meta.get("inference_only"))
        self._input_dists = dict(graph.meta.get("input_dists", {}))
        if self._inference_only:
            super().train(False)

    # ---- construction ----
    def _check_param_bytes(self, graph: Graph) -> None:
        """Refuse, before allocating anything, parameters that together take more than
        ``max_param_bytes`` (the limits the graph was compiled with): the error names the
        parameter that crosses it."""
        cap, total = self._limits.max_param_bytes, 0
        for node in graph.params():
            n = 1
            for d in node.type.shape:
                n *= d if isinstance(d, int) else 1
            total += n * BITS[node.attr["dtype"]] // 8
            if total > cap:
                raise LimitError(f"the parameters up to `{node.name}` take {show_bytes(total)}, "
                                 f"more than {show_bytes(cap)}", span=node.span, code="E0608",
                                 hint=raise_hint("max_param_bytes", cap, "check the sizes"))

    def _init_params(self, graph: Graph, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self._param_sites = {}
        for node in graph.params():
            a = node.attr
            *path, leaf = a["name"].split(".")
            owner = self
            for part in path:
                child = owner._modules.get(part)
                if child is None:
                    if hasattr(owner, part):
                        raise LoweringError(f"the scope name `{part}` is reserved in PyTorch",
                                            span=node.span, code="E0902",
                                            hint="rename the layer")
                    child = _Scope()
                    owner.add_module(part, child)
                owner = child
            if hasattr(owner, leaf) and leaf not in owner._parameters and \
                    leaf not in owner._buffers:
                raise LoweringError(f"the name `{leaf}` is reserved in PyTorch", span=node.span,
                                    code="E0902", hint="rename the parameter")
            if is_constant(node):    # a folded constant: the graph's own value
                value = torch.from_numpy(constant_value(node)).to(DTYPES[a["dtype"]])
            elif gen is None:   # weights will be loaded: skip drawing random values
                value = torch.zeros(storage_shape(a["dtype"], node.type.shape),
                                    dtype=DTYPES[a["dtype"]])
            else:
                value = initial_value(a["init"], node.type.shape, DTYPES[a["dtype"]], gen)
            if graph.meta.get("channels_last") and value.dim() == 4 and value.is_floating_point():
                value = value.contiguous(memory_format=torch.channels_last)
            if a["trainable"]:
                owner.register_parameter(leaf, nn.Parameter(value))
            else:
                owner.register_buffer(leaf, value)
            self._param_sites[node.name] = (owner, leaf)

    def _make_plan(self, graph: Graph, onednn: bool | None = None) -> list:
        """One step per op node: (name, lowering, attrs, operand reads, values to free after).
        In the oneDNN mode (O2's channels-last graphs) conv2d runs in oneDNN's inference
        form where it can."""
        onednn = self._onednn if onednn is None else onednn
        multi = {n.name for n in graph if len(n.types) > 1}
        steps = []
        for node in graph:
            if node.op in ("input", "param"):
                continue
            low = TORCH_LOWERINGS.get(node.op)
            if node.op == "conv2d" and onednn and node.type.rank == 4:
                low = L._conv2d_onednn
            elif node.op == "adaptive_avg_pool2d" and onednn and \
                    tuple(_pair(node.attr.get("output_size"))) == (1, 1):
                low = L.global_avg_pool_nhwc
            if low is None:
                raise LoweringError(f"op `{node.op}` has no torch lowering", span=node.span,
                                    code="E0903")
            reads = tuple((v.node, v.index if v.node in multi else None) if v is not None
                          else None for v in node.inputs)
            steps.append((node.name, low, {**SIGNATURES[node.op].attrs, **node.attr}, reads))
        keep = _kept(graph)
        return _with_frees(steps, keep)

    def _block_segments(self, graph: Graph) -> dict:
        """Plan ranges of the outermost block applications, for gradient checkpointing:
        ``{first step: (end step, values read from outside, values used after)}``."""
        step_of = {step[0]: i for i, step in enumerate(self._plan)}
        order = [n.name for n in graph]
        spans = []
        for r in placed_regions(graph):
            names = [order[j] for j in range(max(0, r["start"]), min(len(order), r["end"]))
                     if order[j] in step_of]
            if names and step_of[names[-1]] - step_of[names[0]] + 1 == len(names):
                spans.append((step_of[names[0]], step_of[names[-1]] + 1))
        chosen: list[tuple[int, int]] = []
        for lo, hi in sorted(set(spans), key=lambda s: (s[0], -s[1])):
            if not chosen or lo >= chosen[-1][1]:
                chosen.append((lo, hi))
        outputs = {v.node for _, v in graph.outputs}
        last_read: dict[str, int] = {}   # the last step reading each value: linear, not a
        for i, step in enumerate(self._plan):   # scan of the rest of the plan per segment
            for r in step[3]:
                if r is not None:
                    last_read[r[0]] = i
        segments = {}
        for lo, hi in chosen:
            made = [self._plan[i][0] for i in range(lo, hi)]
            inside = set(made)
            # parameters and buffers are read where they live, not passed through the
            # checkpoint (batch norm updates its buffers in place)
            ins = list(dict.fromkeys(r[0] for i in range(lo, hi) for r in self._plan[i][3]
                                     if r is not None and r[0] not in inside and
                                     r[0] not in self._param_sites))
            outs = [n for n in made if last_read.get(n, -1) >= hi or n in outputs]
            segments[lo] = (hi, tuple(ins), tuple(outs))
        return segments

    def use_onednn(self, enabled: bool = True) -> "GraphModule":
        """Turn the O2 module's oneDNN mode off (or back on): with it, 2-d convolutions that
        autograd does not follow run as oneDNN's fused inference convolutions, their weights
        packed once (and again when they change), their activation, relu6 clamp, residual add
        and relu as post-ops; without it, every op runs as its plain torch op. Only graphs
        in the channels-last layout (O2 with convolutions) have the mode; elsewhere this
        changes nothing."""
        plans = self._plans.get(bool(enabled))
        if plans is not None:
            self._plan, self._fused = plans
            if not enabled:
                L.forget_onednn_weights(self.parameters())
        return self

    def checkpoint_blocks(self, enabled: bool = True) -> "GraphModule":
        """Gradient checkpointing per block: in training, each outermost block's activations are
        recomputed in the backward pass instead of kept (less memory, one more forward of each
        block). Batch norm updates its running statistics once, not again while recomputing."""
        self.checkpointing = enabled
        return self

    def _symbol_sites(self) -> list:
        sites = []
        for i, t in enumerate(self._input_types):
            for ax, d in enumerate(t.shape):
                if isinstance(d, SymDim) and len(d.symbols()) == 1 and str(d) in d.symbols():
                    sites.append((str(d), i, ax))
        return sites

    # ---- running ----
    def forward(self, *args, **kwargs):
        """The outputs (one tensor, or a tuple in declared order).

        ``capture=NAMES`` (a name or a list of them: node names as ``nndsl inspect`` shows
        them, ``NAME#i`` for output ``i`` of a node with several, input and parameter names)
        returns ``(outputs, {name: value})`` as well: the values computed on the way, still in
        autograd's graph. ``capture={NAME: fn}`` is a hook: ``fn(value)`` is called when the
        value is computed, and what it returns (unless ``None``) is used in its place from
        then on. A model with an input named ``capture`` takes ``capture=`` as that input.
        Without ``capture`` nothing of this runs."""
        watch = None
        if "capture" in kwargs and "capture" not in self.input_names:
            capture = kwargs.pop("capture")
            if capture is not None:
                watch, order = _watch_plan(self, capture)
                seen: dict = {}
        if watch is None:
            vals = self._run(args, kwargs, keep_all=False)
        else:
            vals = self._run(args, kwargs, keep_all=False, watch=(watch, seen))
        outs = [vals[n] if i is None else vals[n][i] for n, i in self._outputs]
        out = outs[0] if len(outs) == 1 else tuple(outs)
        if watch is None:
            return out
        return out, {name: seen[name] for name in order}

    def run_all(self, *args, **kwargs) -> dict:
        """Every value the graph computes, by node name (multi-output nodes give tuples)."""
        return self._run(args, kwargs, keep_all=True)

    def _run(self, args, kwargs, keep_all: bool, watch=None) -> dict:
        xs = self._bind_inputs(args, kwargs)
        env = {}
        for sym, i, ax in self._symbols:
            size = xs[i].shape[ax]
            if sym in env and not torch.compiler.is_compiling() and env[sym] != size:
                raise InputError(f"dim `{sym}` is {env[sym]} in one input and {size} in "
                                 f"`{self.input_names[i]}`", code="E1102")
            env[sym] = size
        rt = _Runtime(self.training, env, xs[0].device if xs else None)
        vals = {}
        for name, x in zip(self.input_names, xs):
            vals[name] = x
        for name, (owner, leaf) in self._param_sites.items():
            vals[name] = getattr(owner, leaf)
        plan, i = self._plan, 0
        segments = self._segments if (self.checkpointing and self.training and not keep_all
                                      and watch is None and torch.is_grad_enabled()) else {}
        if self._fused is not None and not keep_all and watch is None and not segments:
            plan = self._fused     # every value of the graph is wanted: the step-per-node plan
        if watch is not None:
            hooks, seen = watch
            for name in list(vals):     # inputs and parameters
                if name in hooks:
                    _apply_hooks(hooks[name], name, vals, seen)
        while i < len(plan):
            if i in segments:
                end, ins, outs = segments[i]
                results = torch.utils.checkpoint.checkpoint(
                    self._segment(i, end, ins, outs, rt, vals), *[vals[n] for n in ins],
                    use_reentrant=False)
                vals.update(zip(outs, results))
                for step in plan[i:end]:
                    for dead in step[4]:
                        vals.pop(dead, None)
                i = end
                continue
            name, low, attrs, reads, free = plan[i]
            ins = [None if r is None else (vals[r[0]] if r[1] is None else vals[r[0]][r[1]])
                   for r in reads]
            vals[name] = low(rt, attrs, ins)
            if watch is not None and name in hooks:
                _apply_hooks(hooks[name], name, vals, seen)
            if not keep_all:
                for dead in free:
                    del vals[dead]
            i += 1
        return vals

    def _segment(self, lo: int, hi: int, ins: tuple, outs: tuple, rt: _Runtime, vals: dict):
        """The function a checkpointed block runs: its steps, from its inputs to its outputs
        (parameters come from ``vals``, which keeps them for the whole call)."""
        calls = []
        params = {n: vals[n] for n in self._param_sites}

        def run(*args):
            r = rt if not calls else rt.recomputing()
            calls.append(1)
            local = {**params, **dict(zip(ins, args))}
            for name, low, attrs, reads, _ in self._plan[lo:hi]:
                xs = [None if q is None else (local[q[0]] if q[1] is None else local[q[0]][q[1]])
                      for q in reads]
                local[name] = low(r, attrs, xs)
            return tuple(local[n] for n in outs)
        return run

    def _bind_inputs(self, args, kwargs) -> list:
        names = self.input_names
        if len(args) > len(names):
            raise InputError(f"{self.graph_name} takes {len(names)} inputs "
                             f"({', '.join(names)}), got {len(args)}", code="E1101")
        bound = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise InputError(f"{self.graph_name} has no input `{k}`; its inputs are "
                                 f"{', '.join(names)}", code="E1101")
            if k in bound:
                raise InputError(f"input `{k}` given twice", code="E1101")
            bound[k] = v
        missing = [n for n in names if n not in bound and n not in self._input_dists]
        if not missing and len(bound) < len(names):
            self._draw_random_inputs(bound, [n for n in names if n not in bound])
        if missing:
            raise InputError(f"missing input{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)}", code="E1101")
        xs = [bound[n] for n in names]
        if not torch.compiler.is_compiling():
            for n, x, t in zip(names, xs, self._input_types):
                self._check_input(n, x, t)
        return xs

    def _draw_random_inputs(self, bound: dict, missing: list) -> None:
        """Random inputs not given are drawn from their distribution with torch's global
        generator, sized by the symbols the given inputs bind."""
        from nndsl.backends.torch.inputs import draw_missing
        types = dict(zip(self.input_names, self._input_types))
        try:
            bound.update(draw_missing(types, {n: self._input_dists[n] for n in missing}, bound,
                                      limit=self._limits.max_input_bytes))
        except ValueError as e:
            n = str(e)
            raise InputError(f"cannot draw the random input `{n}`: {types[n]} has dims no given "
                             f"input determines", code="E1101",
                             hint=f"pass `{n}` explicitly") from None

    @staticmethod
    def _check_input(name, x, t) -> None:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"input `{name}` must be a tensor of type {t}, got "
                             f"{type(x).__name__}", code="E1103")
        want = DTYPES[t.dtype]
        if x.dtype != want and not (x.is_floating_point() and want.is_floating_point):
            raise InputError(f"input `{name}` must be {t}, got dtype {x.dtype}", code="E1103")
        if x.dim() != t.rank:
            raise InputError(f"input `{name}` must be {t} (rank {t.rank}), got shape "
                             f"{list(x.shape)}", code="E1104")
        for ax, d in enumerate(t.shape):
            if isinstance(d, int) and x.shape[ax] != d:
                raise InputError(f"input `{name}` must be {t}, got shape {list(x.shape)} "
                                 f"(dim {ax} is {x.shape[ax]}, not {d})", code="E1104")

    # ---- weights ----
    def state_dict(self, *args, **kwargs):
        """The weights in the spec's order (torch would list a module's own tensors before its
        submodules', so a model-level `param` declared after a layer would come first)."""
        sd = super().state_dict(*args, **kwargs)
        if args or kwargs.get("destination") is not None or kwargs.get("prefix"):
            return sd
        rank = {n.name: i for i, n in enumerate(self._params)}
        items = sorted(sd.items(), key=lambda kv: rank.get(kv[0], len(rank)))
        sd.clear()
        sd.update(items)
        return sd

    def train(self, mode: bool = True):
        if getattr(self, "_onednn", False):    # weights packed for oneDNN: packed again from
            L.forget_onednn_weights(self.parameters())  # their values on the next call
        if mode and getattr(self, "_inference_only", False):
            raise InputError(f"{self.graph_name} was compiled for inference only (at O2, or "
                             f"quantized): it cannot be put in training mode", code="E1108",
                             hint="compile with opt=\"O1\" (CLI: -O1) and without --quantize "
                                  "to train (--qat trains with quantization noise)")
        return super().train(mode)

    def load_weights(self, weights) -> None:
        """Strictly load a state dict or a ``.safetensors`` file in the spec's names."""
        sd = dict(read_weights(weights))
        for alias, name in self._aliases.items():
            if alias in sd:
                sd.setdefault(name, sd.pop(alias))
        # folded constants are the graph's own: a checkpoint may leave them out
        _check_names([n for n in self._params if n.name in sd or not is_constant(n)], sd)
        state = self.state_dict()
        lost = [n.name for n in self._params if n.name in sd and n.name not in state]
        if lost:    # a value checked by name must also land: never run on initial weights
            raise LoweringError(f"weights {', '.join(lost[:5])} have no place in the module "
                                f"(its parameters: {', '.join(list(state)[:5])}, ...)",
                                code="E0912", hint="a bug in nndsl: please report it")
        with torch.no_grad():
            for k, v in state.items():
                if k in sd:
                    v.copy_(sd[k].to(v.dtype))


def _pair(v) -> list:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _kept(graph: Graph) -> set:
    """The values a plan never frees: the outputs, the inputs, the parameters."""
    return {v.node for _, v in graph.outputs} | set(graph.inputs) | \
        {n.name for n in graph.params()}


def _with_frees(steps: list, keep: set) -> list:
    """Plan steps ``(name, lowering, attrs, reads)`` with the values each one frees: every
    intermediate after its last reader, as hand-written code would."""
    last: dict[str, int] = {}
    for i, (_, _, _, reads) in enumerate(steps):
        for r in reads:
            if r is not None:
                last[r[0]] = i
    free: list[list[str]] = [[] for _ in steps]
    for name, i in last.items():
        if name not in keep:
            free[i].append(name)
    return [(name, low, attrs, reads, tuple(sorted(free[i])))
            for i, (name, low, attrs, reads) in enumerate(steps)]


def _scalar_of(graph: Graph, r) -> float | None:
    """The number a plan read names, if it is a `scalar` node's."""
    if r is None or r[1] is not None:
        return None
    node = graph.node(r[0])
    v = node.attr.get("value") if node.op == "scalar" else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _fused_plan(graph: Graph, plan: list) -> list | None:
    """The O2 plan with each 2-d convolution and the elementwise ops only it feeds as one step
    (:func:`lowering.conv2d_chain`): a ``clamp(conv, lo, hi)`` (ReLU6), a relu6 written
    ``minimum(maximum(conv, 0), 6)``, a
    ``maximum(conv, 0)``, a residual ``conv + x`` and the relu after it. The fused step runs
    where the last op of its chain ran, under that op's name; the values in between are never
    made. None when nothing fuses."""
    readers: dict[str, int] = {}
    for step in plan:
        for r in step[3]:
            if r is not None:
                readers[r[0]] = readers.get(r[0], 0) + 1
    outputs = {v.node for _, v in graph.outputs}
    reader_of: dict[str, int] = {}
    for i, step in enumerate(plan):
        for r in step[3]:
            if r is not None:
                reader_of[r[0]] = i

    def sole_reader(name):
        """The step that alone reads ``name`` (once), or None."""
        if readers.get(name) != 1 or name in outputs or name not in reader_of:
            return None
        return reader_of[name]

    def operand_pos(step, name):
        return next(k for k, r in enumerate(step[3]) if r is not None and r[0] == name)

    gone: set = set()
    fused_at: dict = {}
    for i, (name, low, attrs, reads, _) in enumerate(plan):
        node = graph.node(name)
        if node.op != "conv2d" or len(graph.type_of(node.out()).shape) != 4:
            continue
        act = attrs.get("act")
        chain, extra, onednn, cur = [], [], None, name
        j = sole_reader(cur)
        nxt = graph.node(plan[j][0]) if j is not None else None
        if act is None and nxt is not None and nxt.op == "maximum":
            lo = _scalar_of(graph, plan[j][3][1 - operand_pos(plan[j], cur)])
            if lo is not None:
                chain.append(j)
                k = sole_reader(plan[j][0])
                hi = None
                if k is not None and graph.node(plan[k][0]).op == "minimum":
                    hi = _scalar_of(graph, plan[k][3][1 - operand_pos(plan[k], plan[j][0])])
                    if hi is not None:
                        chain.append(k)
                if hi is not None and lo <= hi:
                    onednn = ("unary", "hardtanh", [lo, hi])
                elif hi is None and lo == 0.0:
                    onednn = ("unary", "relu", [])
                else:
                    onednn = None
        elif act is None and nxt is not None and nxt.op == "clamp":    # O2's clamp_bounds
            lo, hi = nxt.attr.get("min"), nxt.attr.get("max")
            chain.append(j)         # one bound only: one plan step, the plain ops
            if lo is not None and hi is not None and lo <= hi:
                onednn = ("unary", "hardtanh", [float(lo), float(hi)])
        elif act is None and nxt is not None and nxt.op == "add":
            pos = operand_pos(plan[j], cur)
            other = plan[j][3][1 - pos]
            t_conv, t_other = graph.type_of(node.out()), None
            if other is not None and other[0] != cur:
                ov = graph.node(plan[j][0]).inputs[1 - pos]
                t_other = graph.type_of(ov)
            if t_other is not None and t_other.shape == t_conv.shape and \
                    t_other.dtype == t_conv.dtype:
                chain.append(j)
                onednn = ("add", None)
                k = sole_reader(plan[j][0])
                if k is not None and graph.node(plan[k][0]).op == "relu":
                    chain.append(k)
                    onednn = ("add", "relu")
        if not chain or any(j in fused_at or j in gone for j in chain):
            continue        # nothing follows, or another conv's chain ends in the same add
        post, prev = [], name
        for j in chain:
            pname, plow, pattrs, preads, _ = plan[j]
            pos = operand_pos(plan[j], prev)
            post.append((plow, pattrs, len(preads), pos))
            extra += [r for k, r in enumerate(preads) if k != pos]
            prev = pname
        last = chain[-1]
        fused_at[last] = (plan[last][0], L.conv2d_chain,
                          {"conv": attrs, "post": tuple(post), "onednn": onednn},
                          tuple(reads) + tuple(extra))
        gone.add(i)
        gone.update(chain[:-1])
    if not fused_at:
        return None
    steps = [fused_at.get(i, step[:4]) for i, step in enumerate(plan) if i not in gone]
    return _with_frees(steps, _kept(graph))


def _value_names(module: GraphModule) -> list:
    """Every name ``capture=`` takes, in graph order: inputs, parameters, op nodes."""
    return [*module.input_names, *module._param_sites, *(step[0] for step in module._plan)]


def _watch_plan(module: GraphModule, capture) -> tuple[dict, list]:
    """``capture`` (a name, a list of names, or a dict of name -> hook) checked against the
    module's values: ``({node: [(key, index, hook)]}, keys in order)``. An unknown name is an
    error naming the closest known ones."""
    if isinstance(capture, str):
        capture = [capture]
    if isinstance(capture, Mapping):
        items = list(capture.items())
    else:
        try:
            items = [(name, None) for name in capture]
        except TypeError:
            raise InputError(f"capture= takes a name, a list of names or a dict of name -> "
                             f"function, not {type(capture).__name__}", code="E1701") from None
    known = _value_names(module)
    index = set(known)
    hooks: dict = {}
    order = []
    for key, fn in items:
        if not isinstance(key, str):
            raise InputError(f"capture= names values by their names (str), not "
                             f"{type(key).__name__}", code="E1701")
        if fn is not None and not callable(fn):
            raise InputError(f"capture hook for `{key}` is a {type(fn).__name__}, not a "
                             f"function", code="E1701")
        node, sep, which = key.rpartition("#")
        idx = None
        if sep and node in index and which.isdigit():
            idx = int(which)
        else:
            node = key
        if node not in index:
            raise unknown_value_error(key, known, module.graph_name)
        hooks.setdefault(node, []).append((key, idx, fn))
        if key not in order:
            order.append(key)
    return hooks, order


def unknown_value_error(name: str, known: list, model: str, what: str = "value",
                        code: str = "E1701") -> InputError:
    """The error for a name no value of the model has, with the closest names as a hint."""
    import difflib
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    if not close:   # a scope prefix: the names under it
        close = [k for k in known if k.startswith(name + ".")][:5]
    if close:
        hint = "close names: " + ", ".join(close)
    else:
        hint = "`nndsl inspect SPEC` lists the names (the scope column)"
    shown = name if len(name) <= 80 else name[:77] + "..."
    return InputError(f"{model} has no {what} named `{shown}`", code=code, hint=hint)


def _apply_hooks(entries, name: str, vals: dict, seen: dict) -> None:
    """Run the hooks on the value ``name`` (or one output of it) and record what they see."""
    for key, idx, fn in entries:
        v = vals[name]
        if idx is not None:
            if not isinstance(v, tuple) or idx >= len(v):
                raise InputError(f"`{name}` has no output {idx}", code="E1701",
                                 hint=f"`{name}` has {len(v) if isinstance(v, tuple) else 1} "
                                      f"output(s), numbered from 0")
            v = v[idx]
        if fn is not None:
            new = fn(v)
            if new is not None:
                v = new
                if idx is None:
                    vals[name] = v
                else:
                    vals[name] = vals[name][:idx] + (v,) + vals[name][idx + 1:]
        seen[key] = v


def _check_names(params, sd) -> None:
    """The module's own parameters, strictly (derived ones included)."""
    from nndsl.ir.weights import mismatch_error
    err = mismatch_error({n.name: storage_shape(n.type.dtype, n.type.shape) for n in params}, sd,
                         dtypes={n.name: n.type.dtype for n in params if not n.attr.get("derive")})
    if err is not None:
        raise err


def read_weights(weights) -> Mapping[str, torch.Tensor]:
    if isinstance(weights, Mapping):
        bad = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise WeightsError(f"weights must map names to tensors; {bad[0]} is "
                               f"{type(weights[bad[0]]).__name__}", code="E1002")
        return weights
    path = Path(weights)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}", code="E1003")
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: weights must be a .safetensors file", code="E1004",
                           hint="nndsl never unpickles weights; convert with "
                                "safetensors.torch.save_file")
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file: {e}",
                           code="E1005") from None
