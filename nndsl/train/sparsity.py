"""Pruning while training: ``nndsl train --prune magnitude=S`` or ``global=S`` (gradual), or
``--prune N:M``.

Gradual magnitude pruning (Zhu & Gupta, 2017): after optimizer step ``t`` of ``T``, every conv
and linear weight holds its ``s_t`` fraction of smallest-magnitude entries at zero, with

    s_t = 0                                    for t < a·T
    s_t = S · (1 − (1 − (t − a·T) / ((b − a)·T))³)   for a·T <= t < b·T
    s_t = S                                    afterwards          (a = 0.3, b = 0.7)

so the model first trains dense (pruning a network that has not learned yet removes weights at
random), sparsity then rises quickly at first and slowly later, and the last 30% of training
fine-tunes at the final sparsity (``global=S``: one threshold over all those weights together).
(On digits, mnist_cnn at 80%: starting at 0 and ending at 3/4 lost 1.8 points; this 0.9.)
``N:M`` holds the N largest of every M consecutive input weights of each
linear layer from the first step on. Masks are recomputed from the weights' magnitudes at every
step; pruned weights stay at zero (their gradient is masked too), so the checkpoint already is
the pruned model, and ``nndsl compile --prune magnitude=S --weights best.safetensors`` gives the
same masks (the zeros are the smallest entries).
"""

from __future__ import annotations

import math

import torch

from nndsl.errors import TrainError
from nndsl.passes.prune import PRUNABLE, parse_prune

START_FRACTION, END_FRACTION = 0.3, 0.7


def target_sparsity(final: float, step: int, total: int) -> float:
    """``s_t`` of the cubic schedule above."""
    start, end = int(START_FRACTION * total), max(1, int(END_FRACTION * total))
    if step < start:
        return 0.0
    if step >= end:
        return final
    return final * (1.0 - (1.0 - (step - start) / (end - start)) ** 3)


def prunable_weights(compiled) -> list[str]:
    """Names of the conv and linear weights a training-time pruning applies to."""
    g = compiled.graph
    out = []
    for node in g:
        if node.op in PRUNABLE and node.inputs[1] is not None:
            p = g.node(node.inputs[1].node)
            if p.op == "param" and p.attr["trainable"] and p.name not in out:
                out.append(p.name)
    return out


def _magnitude_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = int(round(sparsity * w.numel()))
    mask = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
    if k:
        order = torch.argsort(w.detach().abs().reshape(-1), stable=True)
        mask[order[:k]] = False
    return mask.reshape(w.shape)


def _n_m_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    rows = w.detach().abs().reshape(w.shape[0], -1, m)
    order = torch.argsort(rows, dim=-1, stable=True)
    mask = torch.ones_like(rows, dtype=torch.bool)
    mask.scatter_(-1, order[..., : m - n], False)
    return mask.reshape(w.shape)


class MaskKeeper:
    """Keeps pruning masks applied to ``params`` (name -> tensor) of any module: call
    :meth:`apply` after every optimizer step with the step number and the optimizer."""

    def __init__(self, kind: str, value, params: dict, total_steps: int):
        self.kind, self.value, self.params = kind, value, params
        self.total = max(1, total_steps)
        self.sparsity = 0.0

    def apply(self, step: int, optimizer=None) -> None:
        with torch.no_grad():
            if self.kind == "n_m":
                self.sparsity = 1.0 - self.value[0] / self.value[1]
                masks = {n: _n_m_mask(w, *self.value) for n, w in self.params.items()}
            else:
                self.sparsity = target_sparsity(self.value, step, self.total)
                masks = self._magnitude_masks()
            for name, w in self.params.items():
                mask = masks[name]
                w.mul_(mask)
                state = optimizer.state.get(w) if optimizer is not None else None
                if state:     # momentum would grow pruned weights back: mask it too
                    for v in state.values():
                        if isinstance(v, torch.Tensor) and v.shape == w.shape:
                            v.mul_(mask)

    def _magnitude_masks(self) -> dict:
        if self.kind == "magnitude":
            return {n: _magnitude_mask(w, self.sparsity) for n, w in self.params.items()}
        # global: one ranking over every weight (position breaks ties, as each mask does)
        names = list(self.params)
        flat = torch.cat([self.params[n].detach().abs().reshape(-1) for n in names])
        k = int(round(self.sparsity * flat.numel()))
        keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
        if k:
            keep[torch.argsort(flat, stable=True)[:k]] = False
        out, start = {}, 0
        for n in names:
            size = self.params[n].numel()
            out[n] = keep[start:start + size].reshape(self.params[n].shape)
            start += size
        return out


def training_targets(compiled, prune: str) -> tuple[str, object, list[str]]:
    """``(kind, value, weight names)`` for pruning ``compiled`` while training it."""
    kind, value = parse_prune(prune)
    if kind == "channels":
        raise TrainError("channel pruning changes the model's shapes: prune the trained "
                         "model with `nndsl compile --prune channels=S --weights ...`",
                         code="E1230", hint="while training, use --prune magnitude=S, "
                                            "global=S or 2:4")
    names = prunable_weights(compiled)
    if kind == "n_m":
        g = compiled.graph
        names = [n for n in names if g.node(n).type.rank == 2 and
                 g.node(n).type.shape[-1] % value[1] == 0]
    if not names:
        raise TrainError(f"--prune {prune}: the model has no weight it applies to",
                         code="E1230")
    return kind, value, names


class PruneDuringTraining:
    """The trainer's hook (``hook(run, epoch, batch)``) around a :class:`MaskKeeper`."""

    def __init__(self, compiled, prune: str):
        self.kind, self.value, self.names = training_targets(compiled, prune)
        self.keeper = None

    @property
    def sparsity(self) -> float:
        return 0.0 if self.keeper is None else self.keeper.sparsity

    @property
    def final(self) -> bool:
        """Whether the masks have reached their final sparsity (the trainer picks its best
        checkpoint, and counts epochs for early stopping, only from then on)."""
        if self.kind == "n_m":
            return True
        return self.keeper is not None and self.keeper.sparsity >= self.value

    def __call__(self, run, epoch: int, batch: int) -> None:
        if self.keeper is None:
            per_epoch = math.ceil(len(run.splits.train) / run.cfg.batch / run.cfg.accumulate)
            params = dict(run.model.named_parameters())
            self.keeper = MaskKeeper(self.kind, self.value,
                                     {n: params[n] for n in self.names},
                                     per_epoch * run.cfg.epochs)
        self.keeper.apply(run.step, run.optimizer)
