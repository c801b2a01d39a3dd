"""Shared helpers for the tests: compile small specs from text, evaluate symbolic types."""

from __future__ import annotations

import nndsl
from nndsl.ir.types import evaluate_dim


def compile_text(text: str, **kw) -> nndsl.Compiled:
    return nndsl.compile(text, **kw)


def concrete(t, env) -> tuple:
    return tuple(int(evaluate_dim(d, env)) for d in t.shape)


def torch_export(module, args, **kw):
    """``module`` exported by ``torch.onnx.export`` (the TorchScript exporter, opset 17) to an
    in-memory ONNX model, one input ``x`` and one output ``y`` unless ``kw`` names others."""
    import io
    import warnings

    import onnx
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, dynamo=False, opset_version=17,
                          **{"input_names": ["x"], "output_names": ["y"], **kw})
    return onnx.load_from_string(f.getvalue())


def perturbed(m, seed: int = 0) -> dict:
    """The module ``m``'s state with every constant-initialised tensor (biases, norm affines
    and statistics) drawn at random, so that outputs depend on the input and a wrong fused
    epilogue shows: default statistics shrink the signal layer by layer to the biases."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sd = {k: v.clone() for k, v in m.state_dict().items()}
        for name, t in sd.items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.is_floating_point() and t.numel() > 0 and bool((t == t.flatten()[0]).all()):
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
    return sd


def copy_by_position(ours: list, theirs: list, seed: int = 3) -> None:
    """Give two lists of parameters (a compiled module's and a reference's, in the same order)
    the same random values."""
    import torch
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            a.copy_(torch.randn(a.shape, generator=gen) * 0.2 + (1.0 if a.ndim == 1 else 0.0))
            b.copy_(a)


def assert_same_in_eval_and_training(m, ref, x, seed: int = 11) -> None:
    """The compiled image model ``m`` and the reference agree at eval and in training from one
    torch seed (the same random draws in the same order), and training differs from eval."""
    import torch
    m.eval(), ref.eval()
    with torch.no_grad():
        want, got = ref(x), m(image=x)
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale)
    m.train(), ref.train()
    with torch.no_grad():
        torch.manual_seed(seed)
        want_t = ref(x)
        torch.manual_seed(seed)
        got_t = m(image=x)
    torch.testing.assert_close(got_t, want_t, rtol=1e-4, atol=1e-4 * scale)
    assert not torch.allclose(want_t, want, rtol=1e-3, atol=1e-3 * scale), \
        "stochastic depth changed nothing in training"


def assert_onnx_is_the_inference_graph(c, m, shape) -> None:
    """The export takes only the image and computes what the module computes at eval."""
    import numpy as np
    import onnxruntime as ort
    import torch
    proto = c.to_onnx(weights=m.state_dict())
    assert [i.name for i in proto.graph.input] == ["image"]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    (got,) = sess.run(None, {"image": x})
    with torch.no_grad():
        want = m.eval()(image=torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
