"""Human-readable reports of a compiled model: the per-layer table of ``nndsl inspect``."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table


def op_label(node) -> str:
    """The op as ``inspect`` and ``graph`` show it: with the activation fused into it, if any
    (``linear+gelu``, ``conv2d+relu``, ``qadd+relu``) — what the node runs, not just its op."""
    act = node.attr.get("act")
    return f"{node.op}+{act}" if act else node.op


def symbol_values(graph, batch: int = 1, hint: bool = True, **dims) -> str:
    """The values the symbolic dims take for FLOPs, as ``layers`` binds them: batch dims at
    ``batch``, ``dims`` as given, the rest at the first size the spec's asserts allow —
    ``N=1, T=16 (T by default; --dim T=INT to choose)``, in the order the inputs name them
    (without the parenthesis when ``hint`` is false)."""
    from nndsl.ir.symbols import batch_symbols, bind_symbols, symbols
    env = bind_symbols(graph, batch, **dims)
    names = symbols(graph)
    if not names:
        return "the inputs' fixed shapes"
    text = ", ".join(f"{s}={env[s]}" for s in names)
    chosen = [s for s in names if s not in dims and s not in batch_symbols(graph)]
    if chosen and hint:
        text += f" ({', '.join(chosen)} by default; --dim {chosen[0]}=INT to choose)"
    return text


def summary_table(compiled, batch: int = 1, **dims) -> str:
    rows = compiled.layers(batch, **dims)
    graph = compiled.graph
    table = Table(title=f"{compiled.name} ({compiled.opt})", show_footer=True)
    table.add_column("scope", footer="total")
    table.add_column("op")
    table.add_column("output", footer="")
    table.add_column("params", justify="right", footer=f"{compiled.param_count():,}")
    table.add_column("FLOPs", justify="right", footer=f"{sum(r.flops for r in rows):,}")
    for r in rows:
        table.add_row(r.name, op_label(graph.node(r.name)), r.shape,
                      f"{r.params:,}" if r.params else "", f"{r.flops:,}" if r.flops else "")
    buf = io.StringIO()
    Console(file=buf, width=140, color_system=None, force_terminal=False).print(table)
    note = ("inputs: " + ", ".join(f"{n}: {t}" for n, t in compiled.input_types.items())
            + "\noutputs: " + ", ".join(f"{n}: {t}" for n, t in compiled.output_types.items())
            + f"\nFLOPs at {symbol_values(graph, batch, **dims)}; "
            f"buffers: {compiled.buffer_count():,} elements")
    return buf.getvalue() + note + compression_note(compiled)


def _bytes(n: int) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n} B"


def compression_note(compiled) -> str:
    """What compression did: the weights' size against the float model's, the parameters left
    after pruning, the masks' sparsity, the layers left in float and why."""
    comp = getattr(compiled, "compression", None)
    if comp is None or comp.empty:
        return ""
    base = type(compiled)(compiled.unoptimized, compiled.file, "O0")   # the float model
    size, full = compiled.size_bytes(), base.size_bytes()
    lines = [f"\ncompression: {comp.describe()}",
             f"  weights: {_bytes(size)} ({size / full:.1%} of the float model's {_bytes(full)})"]
    if compiled.graph.meta.get("pruned_channels"):
        lines.append(f"  parameters: {compiled.param_count():,} of {base.param_count():,} "
                     f"({len(compiled.graph.meta['pruned_channels'])} tensors pruned)")
    if compiled.sparsity():
        lines.append(f"  masked weights: {compiled.sparsity():.1%} zeros")
    if comp.quantize:
        from nndsl.passes import quantize, quantize_static
        left = quantize_static.skipped(compiled.graph, comp.keep) \
            if comp.quantize == "int8-static" else \
            quantize.skipped(compiled.graph, comp.quantize, comp.keep)
        for node, why in left[:12]:
            lines.append(f"  float: {node.scope or node.name} ({node.op}): {why}")
        if len(left) > 12:
            lines.append(f"  ... and {len(left) - 12} more in float")
    return "\n".join(lines)


def _where(node) -> str:
    import os
    return f"{os.path.basename(node.span.file)}:{node.span.line}" if node.span else "?"


def _totals(compiled) -> tuple[int, int, int]:
    nodes = sum(1 for n in compiled.graph if n.op not in ("input", "param", "scalar"))
    return nodes, compiled.graph_param_count(), compiled.flops()


def explain_report(compiled, name: str) -> str:
    """What each rule of pass ``name`` did while ``compiled`` was compiled: every candidate it
    fired on, every candidate it declined and why (decisions recorded under
    ``nndsl.passes.rewrite.explaining``); one section per run of the pass."""
    import os
    runs = [r for r in compiled.passes if r.name == name]
    lines = []
    for i, record in enumerate(runs, 1):
        head = f"{name} ({compiled.opt}" + (f", run {i} of {len(runs)}" if len(runs) > 1 else "") \
            + ")"
        if record.decisions is None:
            lines.append(f"{head}: not a rule-driven pass (it is its own loop), so it records no "
                         f"decisions; it {'changed' if record.changed else 'did not change'} "
                         f"the graph (`nndsl inspect --diff` shows how)")
            continue
        seen, rows = set(), []
        for d in record.decisions:
            key = (d.rule, d.node, d.fired, d.why)
            if key not in seen:
                seen.add(key)
                rows.append(d)
        fired = sum(d.fired for d in rows)
        limit = [d for d in rows if d.rule.startswith("(")]
        declined = len(rows) - fired - len(limit)
        if not rows:
            lines.append(f"{head}: no rule saw a candidate")
            continue
        lines.append(f"{head}: {fired} fired, {declined} declined")
        width = max(len(d.rule) for d in rows)
        for d in rows:
            if d.rule.startswith("("):
                lines.append(f"  note: {d.why}")
                continue
            where = d.node
            if d.span is not None:
                where += f" ({os.path.basename(d.span.file)}:{d.span.line}:{d.span.col})"
            verdict = "fired   " if d.fired else "declined"
            lines.append(f"  {verdict} {d.rule:<{width}}  at {where}" +
                         ("" if d.fired else f": {d.why.removeprefix('declined: ')}"))
    return "\n".join(lines)


def diff_report(base, target, limit: int = 12) -> str:
    """What the passes did, pass by pass: nodes fused, folded or removed, with the spec lines
    they came from; then the totals of ``base`` and ``target``."""
    lines = [f"{target.name}: {base.opt} -> {target.opt}"]
    prev = target.unoptimized
    for record in target.passes:
        new = record.graph
        if not record.changed:
            lines.append(f"{record.name}: no change ({record.seconds * 1e3:.1f} ms)")
            prev = new
            continue
        old_nodes = {n.name: n for n in prev if n.op != "input"}
        new_nodes = {n.name: n for n in new if n.op != "input"}
        removed = [n for name, n in old_nodes.items() if name not in new_nodes]
        added = [n for name, n in new_nodes.items() if name not in old_nodes]
        kept = [(n, old_nodes[n.name]) for n in new_nodes.values() if n.name in old_nodes]
        changed = [n for n, o in kept if (n.op, n.attrs) != (o.op, o.attrs)]
        rewired = sum(1 for n, o in kept if (n.op, n.attrs) == (o.op, o.attrs) and
                      n.inputs != o.inputs)
        lines.append(f"{record.name}: {len(removed)} removed, {len(added)} added, "
                     f"{len(changed)} changed, {rewired} rewired "
                     f"({record.seconds * 1e3:.1f} ms)")
        shown = 0
        params_added = [n for n in added if n.op == "param"]
        params_removed = [n for n in removed if n.op == "param"]
        added = [n for n in added if n.op != "param"]
        removed = [n for n in removed if n.op != "param"]
        if params_added:
            lines.append(f"  + {len(params_added)} parameters derived from the spec's "
                         f"({', '.join(sorted({n.attr['derive'][0] for n in params_added if n.attr.get('derive')}))})")
        if params_removed:
            lines.append(f"  - {len(params_removed)} parameters no longer read")
        for mark, group in (("+", added), ("~", changed), ("-", removed)):
            for n in group:
                if shown == limit:
                    break
                extra = ""
                if mark == "~":
                    before = old_nodes[n.name]
                    diffs = [f"{k}={v}" for k, v in n.attrs if dict(before.attrs).get(k) != v]
                    extra = "  " + ", ".join(diffs)
                lines.append(f"  {mark} {n.op:<16} {n.name}  ({_where(n)}){extra}")
                shown += 1
        hidden = len(added) + len(changed) + len(removed) - shown
        if hidden > 0:
            lines.append(f"  ... and {hidden} more")
        prev = new
    table = Table(title="totals")
    for col in ("", base.opt, target.opt):
        table.add_column(col, justify="right" if col else "left")
    for label, a, b in zip(("nodes", "params", "FLOPs"), _totals(base), _totals(target)):
        table.add_row(label, f"{a:,}", f"{b:,}")
    buf = io.StringIO()
    Console(file=buf, width=100, color_system=None, force_terminal=False).print(table)
    return "\n".join(lines) + "\n" + buf.getvalue().rstrip()
