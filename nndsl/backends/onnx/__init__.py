"""ONNX backend: the IR lowered directly to an ``onnx.ModelProto`` (opset 21)."""

from nndsl.backends.onnx.builder import IR_VERSION, OPSET
from nndsl.backends.onnx.export import EXTERNAL_DATA_THRESHOLD, save, to_onnx
from nndsl.backends.onnx.lowering import ONNX_LOWERINGS

__all__ = ["to_onnx", "save", "ONNX_LOWERINGS", "OPSET", "IR_VERSION", "EXTERNAL_DATA_THRESHOLD"]
