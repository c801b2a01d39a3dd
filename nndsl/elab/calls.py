"""Calls: binding arguments, and creating and applying layer and block instances.

A call binds its arguments to the callee's parameters (leading tensors to tensor operands, the
rest in order, then keywords) and checks each against its declared kind. A built-in function
with all its tensors builds its IR at once; a layer or block becomes an :class:`Instance` that
is named in the current scope when first applied (``{op}_{k}`` unless named) and reuses its
parameters when applied again. A block's body runs in a fresh :class:`Frame` whose scope is the
instance's qualified name; its nodes are recorded as a region for readable code generation.
:class:`CallMixin` holds these methods; the :class:`Elaborator` inherits them.
"""

from __future__ import annotations

from typing import Any

from nndsl.elab.builtins import _coerce, _describe, _is_tensorish, _suggest
from nndsl.elab.context import BuildCtx, Frame, _join, _Return
from nndsl.elab.space import default_value, is_space
from nndsl.elab.values import (REQUIRED, Builtin, DType, Instance, ParamSpec, Partial, Surface,
                               TensorVal)
from nndsl.errors import ArgumentError, DefinitionError, LimitError, NndslError, ShapeError, Span
from nndsl.ir.types import FLOAT_DTYPES, SymDim
from nndsl.limits import MAX_CALL_DEPTH
from nndsl.syntax import ast


def _block_inputs(defn: ast.Definition) -> list[str]:
    return [s.name for s in defn.body if isinstance(s, ast.InputStmt)]


class CallMixin:
    """Binds arguments and applies functions, layers and blocks for the :class:`Elaborator`.

    Uses the host's ``graph``, ``counters``, ``instances`` and ``call_stack``, its ``_eval``
    (parameter defaults), ``_exec_body`` (block bodies) and ``_provenance`` (error notes).
    """

    # ------------------------------------------------------------- parameters
    def _bind_params(self, defn: ast.Definition, given: dict, overrides: dict, span: Span,
                     from_user: bool = False) -> dict:
        names = [p.name for p in defn.params]
        for k in overrides:
            if k not in names:
                raise ArgumentError(f"`{defn.name}` has no parameter `{k}`", span=defn.name_span,
                                    code="E0213", hint=_suggest(k, names) or
                                    ("its parameters: " + ", ".join(names) if names
                                     else f"`{defn.name}` takes no parameters"))
        env: dict = {}
        frame = Frame(env, "", defn, is_model=False)
        for p in defn.params:
            if p.name in overrides:
                v = overrides[p.name]
                where = p.span
                if from_user and isinstance(v, list):
                    v = tuple(v)
            elif p.name in given:
                v, where = given[p.name]
            elif p.default is not None and is_space(p):   # a search space: its first value
                v, where = default_value(p), p.default.span
            elif p.default is not None:
                v = self._eval(p.default, frame)
                where = p.default.span
            else:
                raise ArgumentError(f"missing argument `{p.name}` of `{defn.name}`", span=span,
                                    code="E0211", notes=[(f"`{p.name}` is declared here", p.span)])
            env[p.name] = self._check_param_type(p, v, where, defn)
        return env

    def _check_param_type(self, p: ast.ParamDef, v, where: Span, defn) -> Any:
        t = p.type
        if t is None or t == "any":
            return v
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "str": isinstance(v, str),
            "dim": isinstance(v, (int, SymDim)) and not isinstance(v, bool),
            "list": isinstance(v, tuple), "tuple": isinstance(v, tuple),
            "dtype": isinstance(v, DType),
        }
        if t not in ok:
            raise ArgumentError(f"unknown parameter type `{t}`", span=p.span, code="E0214",
                                hint="use one of: " + ", ".join(sorted(ok)) + ", any")
        if not ok[t]:
            raise ArgumentError(f"parameter `{p.name}` of `{defn.name}` is declared `{t}` but "
                                f"got {_describe(v)}", span=where, code="E0259",
                                notes=[(f"`{p.name}` is declared here", p.span)]
                                if where != p.span else [],
                                hint=f"give `{p.name}` a value of type `{t}`, as declared")
        return float(v) if t == "float" else v

    # ------------------------------------------------------------------ calls
    def call(self, callee, pos: list, kw: dict, frame: Frame, span: Span, name: str | None,
             piped: bool = False):
        """Call ``callee``; ``piped``: the first argument is the value piped into it
        (``x |> f(...)``), which must apply it."""
        pos = [p if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Span)
               else (p, span) for p in pos]
        if isinstance(callee, Builtin):
            if kw:
                raise ArgumentError(f"`{callee.name}` takes no keyword arguments", span=span,
                                    code="E0222")
            try:
                return callee.fn(*[v for v, _ in pos])
            except NndslError as err:
                raise err.with_span(span)
            except TypeError:
                raise ArgumentError(f"wrong arguments for `{callee.name}`", span=span,
                                    code="E0211") from None
            except (ValueError, OverflowError) as err:
                raise ArgumentError(f"`{callee.name}` of "
                                    f"{', '.join(_describe(v) for v, _ in pos)}: {err}",
                                    span=span, code="E0258") from None
        if isinstance(callee, Surface):
            if callee.numeric is not None and pos and not any(
                    isinstance(v, TensorVal) for v, _ in pos) and not kw:
                vals = [v for v, _ in pos]
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) or
                       isinstance(v, tuple) for v in vals):
                    try:
                        return callee.numeric(*vals)
                    except (TypeError, ValueError, ZeroDivisionError) as err:
                        shown = ", ".join(_describe(v) if isinstance(v, tuple) else str(v)
                                          for v in vals)
                        raise ArgumentError(f"`{callee.name}` on {shown}: "
                                            f"{err}", span=span, code="E0212") from None
            args, complete = self._bind(callee.name, callee.params, pos, kw, span)
            if callee.weights:
                inst = Instance(callee, args, span, name=name)
                if not complete:
                    return inst
                return self.apply(inst, {}, frame, span)
            if not complete:
                if name:
                    raise ArgumentError(f"`{callee.name}` has no weights; it cannot be named",
                                        span=span, code="E0246")
                return Partial(callee, args, span)
            ctx = BuildCtx(self, frame, span, frame.scope, None)
            return self._build(callee, ctx, args)
        if isinstance(callee, Partial):
            args, complete = self._bind(callee.callee.name, callee.callee.params, pos, kw, span,
                                        prebound=callee.args)
            if not complete:
                return Partial(callee.callee, args, span)
            return self._build(callee.callee, BuildCtx(self, frame, span, frame.scope, None),
                               args)
        if isinstance(callee, ast.Definition):
            inputs = _block_inputs(callee)
            params = [ParamSpec(n, "tensor", REQUIRED) for n in inputs] + \
                [ParamSpec(p.name, "block_param", REQUIRED if p.default is None
                           else "__default__") for p in callee.params]
            args, complete = self._bind(callee.name, tuple(params), pos, kw, span, block=True)
            if not complete and piped:
                self._piped_arity(callee, inputs, [n for n in inputs if n in args], span)
            inst = Instance(callee, args, span, name=name,
                            arg_spans=dict(self.last_arg_spans))
            if not complete:
                return inst
            return self.apply(inst, {}, frame, span)
        if isinstance(callee, Instance):
            if name:
                raise ArgumentError("a layer is named where it is created, not where it is "
                                    "applied", span=span, code="E0246")
            if kw or any(not isinstance(v, TensorVal) for v, _ in pos):
                raise ArgumentError(f"the layer `{callee.qualname or callee.name}` has its "
                                    f"options already; pass only tensors", span=span,
                                    code="E0261")
            if not pos:
                shown = callee.qualname or callee.name
                raise ArgumentError(f"the layer `{shown}` is applied to nothing: it needs a "
                                    f"tensor", span=span, code="E0261",
                                    hint=f"apply it to its input: `x |> {shown}` or "
                                         f"`{shown}(x)`")
            return self.apply(callee, {"__pos__": [v for v, _ in pos]}, frame, span)
        raise ArgumentError(f"{_describe(callee)} is not callable", span=span, code="E0221")

    def _piped_arity(self, defn: ast.Definition, inputs: list, given: list, span: Span):
        """``x |> blk`` where ``blk`` takes more tensor inputs than the pipeline gives it."""
        missing = [n for n in inputs if n not in given]
        shown = ", ".join(given[1:] + missing)
        raise ArgumentError(
            f"block `{defn.name}` takes {len(inputs)} tensor inputs ({', '.join(inputs)}), but "
            f"the pipeline gives it {len(given)} ({', '.join(given)}): "
            f"{', '.join(f'`{m}`' for m in missing)} {'is' if len(missing) == 1 else 'are'} "
            f"missing", span=span, code="E0211",
            notes=[(f"`{defn.name}` is defined here", defn.name_span)],
            hint=f"pass the other tensor{'s' if len(missing) > 1 else ''} in the call, before "
                 f"any options: `x |> {defn.name}({shown}, ...)` is `{defn.name}(x, {shown}, "
                 f"...)`; or by name: `{defn.name}(..., {missing[0]}=...)`")

    def _bind(self, fname: str, params: tuple, pos: list, kw: dict, span: Span,
              prebound: dict | None = None, block: bool = False):
        """Bind arguments to ``params``: leading tensors to tensor operands, the rest in order.

        Returns ``(args, complete)``; ``complete`` is False when tensor operands are missing
        (a layer waiting for its input).
        """
        args = dict(prebound or {})
        tensor_params = [p for p in params if p.kind in ("tensor", "tensors", "operand")
                         and p.default is REQUIRED]
        option_params = [p for p in params if p not in tensor_params]
        i = 0
        if not prebound:
            for p in tensor_params:
                if i < len(pos) and (_is_tensorish(pos[i][0], p.kind) or p.kind == "operand"):
                    args[p.name] = pos[i]
                    i += 1
                else:
                    break
        else:
            for p in tensor_params:
                if p.name not in args and i < len(pos):
                    args[p.name] = pos[i]
                    i += 1
        rest = pos[i:]
        opts = [p for p in option_params if p.name not in args]
        if len(rest) > len(opts):
            v, sp = rest[len(opts)]
            if isinstance(v, TensorVal) and not opts:
                raise ArgumentError(f"`{fname}` takes {len(tensor_params)} tensor "
                                    f"argument{'s' if len(tensor_params) != 1 else ''}, got more",
                                    span=sp, code="E0211")
            raise ArgumentError(f"too many arguments for `{fname}`: its parameters are "
                                f"{', '.join(p.name for p in params)}", span=sp, code="E0211",
                                hint="in `x |> f(...)` the piped tensor is the first argument"
                                if i > 0 else None)
        for p, (v, sp) in zip(opts, rest):
            args[p.name] = (v, sp)
        names = [p.name for p in params]
        for k, (v, sp) in kw.items():
            if k not in names:
                raise ArgumentError(f"`{fname}` has no parameter `{k}`", span=sp, code="E0213",
                                    hint=_suggest(k, names) or "parameters: " + ", ".join(names))
            if k in args and not (prebound and k in prebound):
                raise ArgumentError(f"`{fname}` got `{k}` both by position and by keyword",
                                    span=sp, code="E0222")
            args[k] = (v, sp)
        # where each argument was written, for messages about combinations of them (scan)
        self.last_arg_spans = {k: v[1] for k, v in args.items() if isinstance(v, tuple) and
                               len(v) == 2 and isinstance(v[1], Span)}
        out: dict = {}
        complete = True
        for p in params:
            if p.name in args:
                v, sp = args[p.name] if isinstance(args[p.name], tuple) and len(
                    args[p.name]) == 2 and isinstance(args[p.name][1], Span) else (
                    args[p.name], span)
                out[p.name] = v if block else _coerce(fname, p, v, sp)
            elif p.default is REQUIRED:
                if p.kind in ("tensor", "tensors", "operand"):
                    complete = False
                    continue
                raise ArgumentError(f"`{fname}` is missing its argument `{p.name}`", span=span,
                                    code="E0211",
                                    hint="parameters: " + ", ".join(
                                        p.name + ("" if p.default is REQUIRED else "=…")
                                        for p in params))
            elif not block:
                out[p.name] = p.default
        return out, complete

    def apply(self, inst: Instance, extra: dict, frame: Frame, span: Span):
        """Apply a layer or block instance to tensors (creating or reusing its weights)."""
        callee = inst.callee
        args = dict(inst.args)
        pos = list(extra.get("__pos__", []))
        if isinstance(callee, Surface):
            tps = callee.tensor_params
            missing = [p for p in tps if p.name not in args or args[p.name] is None]
            if pos:
                if len(pos) != len([p for p in missing if p.default is REQUIRED]):
                    raise ArgumentError(f"`{callee.name}` takes "
                                        f"{len([p for p in missing if p.default is REQUIRED])} "
                                        f"tensor(s), got {len(pos)}", span=span, code="E0211")
                for p, v in zip(missing, pos):
                    args[p.name] = _coerce(callee.name, p, v, span)
        else:
            names = _block_inputs(callee)
            missing = [n for n in names if n not in args]
            if pos:
                if len(pos) != len(missing):
                    raise ArgumentError(f"block `{callee.name}` takes {len(missing)} tensor "
                                        f"input{'s' if len(missing) != 1 else ''} "
                                        f"({', '.join(missing)}), got {len(pos)}", span=span,
                                        code="E0211",
                                        notes=[(f"`{callee.name}` is defined here",
                                                callee.name_span)])
                args.update(zip(missing, pos))
        qual = self._name_instance(inst, frame, span)
        reuse = frame.reuse or inst.applied > 0
        if isinstance(callee, Surface):
            ctx = BuildCtx(self, frame, span, qual, inst, reuse)
            out = self._build(callee, ctx, args)
            self.root.meta.setdefault("layers", {}).setdefault(qual, {
                "kind": callee.name,
                "args": {k: v for k, v in args.items() if not isinstance(v, TensorVal)
                         and k not in ("h0", "c0")}})
        else:
            out = self._apply_block(inst, args, frame, span, qual, reuse)
        inst.applied += 1
        return out

    def _build(self, surface: Surface, ctx: BuildCtx, args: dict):
        """Run a surface function; a shape error it raises says where its tensors came from."""
        for v in args.values():     # a layer's parameters take its float input's dtype
            for t in (v if isinstance(v, tuple) else (v,)):
                if isinstance(t, TensorVal) and t.type.dtype in FLOAT_DTYPES:
                    ctx.float_dtype = t.type.dtype
                    break
            if ctx.float_dtype != "f32":
                break
        try:
            return surface.build(ctx, args)
        except ShapeError as e:
            e.with_span(ctx.span)   # a shape rule's check the function ran before emitting
            if getattr(e, "located", False):   # the function said where its tensors came from
                raise
            tensors = []
            for v in args.values():
                tensors.extend(v if isinstance(v, tuple) else (v,))
            for note in self._provenance(tensors, at=ctx.span):
                if note not in e.notes:
                    e.notes.append(note)
            raise

    def _name_instance(self, inst: Instance, frame: Frame, span: Span) -> str:
        if inst.qualname is not None:
            return inst.qualname
        name = inst.name or self._auto_name(frame.scope, inst.callee.name)
        qual = _join(frame.scope, name)
        owner = self.instances.get(qual)
        if owner is not None and owner is not inst and not frame.reuse:
            raise DefinitionError(f"the layer name `{qual}` is used twice", span=span,
                                  code="E0502", notes=[("first used here", owner.span)],
                                  hint="give each layer its own name, or label the loop "
                                       "(`stages: for ...`) so each iteration gets a scope")
        self.instances[qual] = inst
        inst.qualname = qual
        return qual

    def _auto_name(self, scope: str, kind: str) -> str:
        c = self.counters.setdefault(scope, {})
        k = c.get(kind, 0)
        c[kind] = k + 1
        return f"{kind}_{k}"

    def _apply_block(self, inst: Instance, args: dict, frame: Frame, span: Span, qual: str,
                     reuse: bool):
        defn: ast.Definition = inst.callee
        if defn.name in self.call_stack:
            chain = " -> ".join(self.call_stack[self.call_stack.index(defn.name):] + [defn.name])
            raise DefinitionError(f"`{defn.name}` calls itself ({chain})", span=span,
                                  code="E0505", hint="blocks cannot be recursive; use a loop")
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            raise LimitError(f"blocks nested more than {MAX_CALL_DEPTH} deep", span=span,
                             code="E0615")
        self._check_steps(1, span)   # a block application is a step, as a loop iteration is
        self.steps += 1
        inputs = {n: args[n] for n in _block_inputs(defn)}
        given = {p.name: (args[p.name], inst.arg_spans.get(p.name, span))
                 for p in defn.params if p.name in args}
        env = self._bind_params(defn, given, {}, span)
        inner = Frame(env, qual, defn, is_model=False, inputs=inputs, reuse=reuse,
                      call_span=span)
        self.counters.pop(qual, None)
        self.call_stack.append(defn.name)
        start = len(self.graph)
        try:
            self._exec_body(defn.body, inner)
        except _Return as r:
            self._record_region(defn, qual, env, inputs, r.value)
            outs = r.value if isinstance(r.value, tuple) else (r.value,)
            if all(isinstance(o, TensorVal) for o in outs):   # for unused-result warnings
                self.block_calls.append((self.graph, start, len(self.graph), qual, defn.name,
                                         span, [o.value for o in outs]))
            return r.value
        except NndslError as err:  # an error inside the block: say which call led there
            note = (f"`{defn.name}` is applied here", span)
            if err.span is not None and err.span != span and note not in err.notes:
                err.notes.append(note)
            raise
        finally:
            self.call_stack.pop()
        raise DefinitionError(f"block `{defn.name}` ends without `return`",
                              span=defn.name_span, code="E0506",
                              hint="end the block with `return y`")

    def _record_region(self, defn, qual, env, inputs, result) -> None:
        """Remember a block application (its name, block, parameters, inputs and outputs), for
        readable code generation; where its nodes are is found from the graph when asked
        (:func:`nndsl.ir.regions.placed_regions`)."""
        outs = result if isinstance(result, tuple) else (result,)
        if not all(isinstance(o, TensorVal) for o in outs):
            return
        self.graph.meta.setdefault("regions", []).append({
            "qualname": qual, "block": defn.name,
            "params": {p.name: env[p.name] for p in defn.params},
            "inputs": [v.value for v in inputs.values()],
            "input_names": list(inputs),
            "outputs": [o.value for o in outs], "tuple": isinstance(result, tuple),
        })
