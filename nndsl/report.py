"""Human-readable reports of a compiled model: the per-layer table of ``nndsl inspect``."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table


def summary_table(compiled, batch: int = 1, **dims) -> str:
    rows = compiled.layers(batch, **dims)
    table = Table(title=f"{compiled.name} ({compiled.opt})", show_footer=True)
    table.add_column("scope", footer="total")
    table.add_column("op")
    table.add_column("output", footer="")
    table.add_column("params", justify="right", footer=f"{compiled.param_count():,}")
    table.add_column("FLOPs", justify="right", footer=f"{sum(r.flops for r in rows):,}")
    for r in rows:
        table.add_row(r.name, r.op, r.shape, f"{r.params:,}" if r.params else "",
                      f"{r.flops:,}" if r.flops else "")
    buf = io.StringIO()
    Console(file=buf, width=140, color_system=None, force_terminal=False).print(table)
    note = (f"inputs: " + ", ".join(f"{n}: {t}" for n, t in compiled.input_types.items())
            + f"\noutputs: " + ", ".join(f"{n}: {t}" for n, t in compiled.output_types.items())
            + f"\nFLOPs at batch {batch}; buffers: {compiled.buffer_count():,} elements")
    return buf.getvalue() + note
