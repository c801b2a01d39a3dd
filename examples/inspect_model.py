"""Inspect a model: the per-layer table and the typed IR."""

from pathlib import Path

import nndsl

SPEC = Path(__file__).resolve().parents[1] / "specs" / "transformers" / "gpt_mini.nn"

c = nndsl.compile(SPEC, params={"layers": 1})
print(c.summary())
print()
print("\n".join(c.ir().splitlines()[:12]))
print("...")
