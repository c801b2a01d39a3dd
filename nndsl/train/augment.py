"""Image augmentation for training batches: ``augment = [flip, crop(pad=2), noise(std=0.05)]``.

They apply to training batches only, drawing from the run's augmentation generator (saved in
checkpoints, so resuming is exact): ``flip`` and ``crop`` to image inputs ([N, C, H, W]),
``noise`` to every floating-point input. The loss still sees the clean inputs, so a model whose
loss compares its output with its input learns to denoise.

- ``flip(p=0.5)``: mirror left-right with probability p per sample.
- ``crop(pad=2)``: pad by ``pad`` zeros on each side, cut a random window of the original size.
- ``noise(std=0.05)``: add Gaussian noise.
"""

from __future__ import annotations

from nndsl.train.choices import Choice, Picked

AUGMENTS: dict[str, Choice] = {c.name: c for c in [
    Choice("flip", {"p": 0.5}, "horizontal flip", positional=("p",),
           check=lambda a: None if 0 <= a["p"] <= 1 else "`p` must be in [0, 1]"),
    Choice("crop", {"pad": 2}, "random crop after zero padding", positional=("pad",),
           check=lambda a: None if a["pad"] >= 0 else "`pad` must be >= 0"),
    Choice("noise", {"std": 0.05}, "additive Gaussian noise", positional=("std",),
           check=lambda a: None if a["std"] >= 0 else "`std` must be >= 0"),
]}


def apply(augs: list[Picked], x, gen):
    """The float tensor ``x`` augmented, drawing from the CPU generator ``gen``."""
    import torch
    import torch.nn.functional as F
    n = x.shape[0]
    for a in augs:
        if a.name in ("flip", "crop") and x.dim() != 4:
            continue
        if a.name == "flip":
            mask = torch.rand(n, generator=gen) < a.args["p"]
            if bool(mask.any()):
                x = torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)
        elif a.name == "crop":
            pad = int(a.args["pad"])
            if pad:
                h, w = x.shape[-2:]
                padded = F.pad(x, (pad, pad, pad, pad))
                dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
                dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
                rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)   # [n, h]
                cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)   # [n, w]
                idx_r = rows[:, None, :, None].expand(-1, x.shape[1], -1, padded.shape[-1])
                padded = padded.gather(2, idx_r)
                idx_c = cols[:, None, None, :].expand(-1, x.shape[1], h, -1)
                x = padded.gather(3, idx_c)
        elif a.name == "noise":
            std = float(a.args["std"])
            if std:
                x = x + std * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return x
