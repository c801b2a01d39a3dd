"""nndsl — a declarative language for neural networks, and its compiler.

    import nndsl
    c = nndsl.compile("specs/vision/resnet18.nn", params={"classes": 10})
    m = c.to_torch()
    y = m(**c.example_inputs(batch=2))
"""

from nndsl.api import Compiled, compile, compile_source
from nndsl.errors import (ArgumentError, DefinitionError, InputError, LimitError, LoweringError,
                          NndslError, ParseError, PassError, ShapeError, SourceFileError,
                          SpecAssertionError, UnknownNameError, VerifyError, WeightsError)

__version__ = "0.1.0"

__all__ = ["compile", "compile_source", "Compiled", "NndslError", "ParseError", "SourceFileError",
           "UnknownNameError", "ArgumentError", "ShapeError", "SpecAssertionError",
           "DefinitionError", "LimitError", "VerifyError", "PassError", "LoweringError",
           "WeightsError", "InputError", "import_onnx", "__version__"]


def import_onnx(src, **options):
    """An ONNX model (a path, its bytes or an ``onnx.ModelProto``) as a ``.nn`` spec and its
    weights: :func:`nndsl.importer.import_onnx` (imported on first use; docs/IMPORT.md)."""
    from nndsl.importer import import_onnx as run
    return run(src, **options)
