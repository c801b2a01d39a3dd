"""Compile a zoo spec, run it, and look at its size."""

from pathlib import Path

import torch

import nndsl

SPEC = Path(__file__).resolve().parents[1] / "specs" / "vision" / "resnet18.nn"

c = nndsl.compile(SPEC, params={"classes": 10})
model = c.to_torch().eval()
inputs = c.example_inputs(batch=2)

with torch.no_grad():
    logits = model(**inputs)

print(f"{c.name}: {c.param_count():,} parameters, {c.flops():,} FLOPs per image")
print(f"input  {tuple(inputs['image'].shape)} -> logits {tuple(logits.shape)}")
print("first parameters:", [name for name, _ in list(model.named_parameters())[:3]])
