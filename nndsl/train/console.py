"""What a training run shows: a progress bar per epoch (running loss, samples/s), a row of
metrics per epoch, and a final summary table. Only the main process prints."""

from __future__ import annotations

import math
import sys


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


class Console:
    def __init__(self, enabled: bool = True, file=None):
        from rich.console import Console as RichConsole
        self.enabled = enabled
        self.rich = RichConsole(file=file or sys.stdout, highlight=False, soft_wrap=True)
        if not self.rich.is_terminal:
            self.rich.width = max(self.rich.width, 160)
        self._progress = None
        self._task = None
        self._columns: list[str] = []

    def print(self, text: str = "") -> None:
        if self.enabled:
            self.rich.print(text, markup=False)

    def note(self, text: str) -> None:
        self.print(f"note: {text}")

    # ---- per epoch
    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        if not self.enabled or not self.rich.is_terminal:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} samples/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.rich, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, completed=done, loss="-",
                                             rate="-")

    def step(self, done: int, loss: float, rate: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, loss=f"{loss:.4f}",
                                  rate=f"{rate:,.0f}")

    def end_epoch(self, record: dict) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if not self.enabled:
            return
        cols = [k for k in record if k not in ("epoch", "step")]
        if cols != self._columns:
            self._columns = cols
            self.print("  ".join(f"{c:>12s}" for c in ["epoch"] + cols))
        self.print("  ".join(f"{_fmt(record.get(c)):>12s}" for c in ["epoch"] + cols))

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ---- the end
    def summary(self, history: list, best: dict | None, monitor: str, out, test: dict,
                seconds: float, stopped: str | None) -> None:
        if not self.enabled:
            return
        if not history:
            if stopped:
                self.print(stopped)
            self.print(f"run folder: {out}")
            return
        from rich.table import Table
        keys = [k for k in history[-1] if k.startswith(("train_", "val_", "test_"))]
        t = Table(title=f"training summary ({len(history)} epochs, {seconds:.1f} s)")
        t.add_column("epoch", justify="right")
        for k in keys:
            t.add_column(k, justify="right")
        best_epoch = best.get("epoch") if best else None
        for r in history:
            mark = " *" if r["epoch"] == best_epoch else ""
            t.add_row(f"{r['epoch']}{mark}", *[_fmt(r.get(k, "")) for k in keys])
        self.rich.print(t)
        if best:
            self.print(f"best epoch {best['epoch']} by {monitor}: {_fmt(best[monitor])}")
        if test:
            self.print("test: " + ", ".join(f"{k} {_fmt(v)}" for k, v in test.items()))
        if stopped:
            self.print(stopped)
        self.print(f"run folder: {out}")
