"""Distributions of random model inputs: ``input eps: f32[N, 16] ~ normal()``.

A model's randomness (a VAE's ε, a denoising mask, diffusion timesteps) enters as an explicit
input whose declaration names the distribution it is drawn from. The graph records it in
``graph.meta["input_dists"]``; whoever runs the model draws the input when no value is given:
``Compiled.example_inputs`` from its seeded generator, the trainer once per batch, the PyTorch
module from torch's global generator. Evaluation stays deterministic: the value is an input.

This module is the table only; drawing tensors is the backends' business.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUIRED = object()


@dataclass(frozen=True)
class Distribution:
    name: str
    args: dict            # name -> default (REQUIRED: must be given), in positional order
    kinds: tuple          # dtype kinds it can fill: "float", "int", "bool"
    doc: str


DISTRIBUTIONS: dict[str, Distribution] = {d.name: d for d in [
    Distribution("normal", {"mean": 0.0, "std": 1.0}, ("float",),
                 "Gaussian with the given mean and standard deviation"),
    Distribution("uniform", {"low": 0.0, "high": 1.0}, ("float",), "uniform on [low, high)"),
    Distribution("randint", {"low": 0, "high": REQUIRED}, ("int",),
                 "integers uniform on [low, high)"),
    Distribution("bernoulli", {"p": 0.5}, ("bool", "float"),
                 "true (1.0) with probability p, else false (0.0)"),
]}


def signature(d: Distribution) -> str:
    args = ", ".join(k if v is REQUIRED else f"{k}={v!r}" for k, v in d.args.items())
    return f"{d.name}({args})"
