"""Export a spec as plain PyTorch source plus safetensors weights, and load it back."""

import importlib.util
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

import nndsl
from nndsl.backends.torch.codegen import write_package

SPEC = Path(__file__).resolve().parents[1] / "specs" / "vision" / "mnist_cnn.nn"

c = nndsl.compile(SPEC)
out = Path(tempfile.mkdtemp()) / "mnist_cnn"
write_package(c, out)                     # what `nndsl compile SPEC --to torch -o DIR` does
print((out / "model.py").read_text().splitlines()[0])

spec = importlib.util.spec_from_file_location("generated_model", out / "model.py")
module = importlib.util.module_from_spec(spec)
sys.modules["generated_model"] = module
spec.loader.exec_module(module)

net = module.MnistCnn()
net.load_state_dict(load_file(str(out / "weights.safetensors")))
net.eval()

x = c.example_inputs(batch=4)["image"]
with torch.no_grad():
    same = torch.allclose(net(x), c.to_torch().eval()(x), atol=1e-6)
print(f"generated module matches the compiled one: {same}")
