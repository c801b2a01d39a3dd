"""PyTorch backend: IR -> ``nn.Module`` (and readable Python source)."""

from nndsl.backends.torch.lowering import TORCH_LOWERINGS
from nndsl.backends.torch.module import GraphModule, read_weights

__all__ = ["GraphModule", "TORCH_LOWERINGS", "read_weights"]
