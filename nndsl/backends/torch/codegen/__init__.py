"""Readable PyTorch source for a compiled model: ``model.py`` and ``weights.safetensors``.

:func:`generate_source` writes the typed graph as a standalone Python module that needs only
torch, with one class per block and the standard layers as the ``nn`` modules a person would
write, and :func:`write_package` writes it next to the weights. The modules, each importing only
those before it: :mod:`.source` (Python literals and names), :mod:`.layers` (layer ops as ``nn``
modules, :data:`LAYER_MODULES`), :mod:`.ops` (the per-op source table, :data:`TORCH_CODEGEN`),
:mod:`.regions` (block applications and the module tree), :mod:`.generalize` (one class for all
specializations of a block), :mod:`.loops` (a list of modules applied in turn as a ``for`` loop)
and :mod:`.generator` (the classes, the file, and the entry points).
"""

from nndsl.backends.torch.codegen.generalize import param_variants
from nndsl.backends.torch.codegen.generator import generate_source, weights_bytes, write_package
from nndsl.backends.torch.codegen.layers import LAYER_MODULES, LayerForm
from nndsl.backends.torch.codegen.ops import TORCH_CODEGEN, Emitted, OpSource
from nndsl.backends.torch.codegen.source import TORCH_DTYPES, camel_case, py_literal

__all__ = ["TORCH_CODEGEN", "LAYER_MODULES", "generate_source", "write_package", "param_variants",
           "weights_bytes", "camel_case", "py_literal", "LayerForm", "OpSource", "Emitted",
           "TORCH_DTYPES"]
