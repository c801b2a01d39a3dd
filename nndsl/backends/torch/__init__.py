"""PyTorch backend: IR -> ``nn.Module`` (and readable Python source).

Its names are loaded when first used, so a torch-free part (``reserved``) can be imported
without importing torch."""

import importlib

_LAZY = {"TORCH_LOWERINGS": "nndsl.backends.torch.lowering",
         "GraphModule": "nndsl.backends.torch.module",
         "read_weights": "nndsl.backends.torch.module"}

__all__ = ["GraphModule", "TORCH_LOWERINGS", "read_weights"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
