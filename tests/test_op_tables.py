"""Every op is in every per-op table; every surface function emits only known ops."""

from nndsl.backends.onnx.lowering import ONNX_LOWERINGS
from nndsl.backends.torch import TORCH_LOWERINGS
from nndsl.backends.torch.codegen.ops import TORCH_CODEGEN
from nndsl.elab.library import SURFACE
from nndsl.ir.ops import FLOP_RULES, SHAPE_RULES, SIGNATURES

SOURCES = {"input", "param"}


def test_every_op_in_every_table():
    ops = set(SIGNATURES)
    assert set(SHAPE_RULES) == ops
    assert set(FLOP_RULES) == ops
    assert set(TORCH_LOWERINGS) == ops - SOURCES
    assert set(ONNX_LOWERINGS) == ops - SOURCES
    assert set(TORCH_CODEGEN) == ops - SOURCES


def test_signature_attrs_are_hashable_defaults():
    for op, sig in SIGNATURES.items():
        for k, v in sig.attrs.items():
            hash((k, v))
        assert all(isinstance(o, str) for o in sig.operands), op


def test_surface_table_has_tensor_params_first():
    for name, s in SURFACE.items():
        kinds = [p.kind for p in s.params]
        tensor_idx = [i for i, k in enumerate(kinds) if k in ("tensor", "tensors", "operand")
                      and s.params[i].default is not None]
        assert tensor_idx == list(range(len(tensor_idx))), name
