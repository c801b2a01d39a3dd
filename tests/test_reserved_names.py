"""Names torch reserves are refused by `nndsl check`, as the torch module refuses them, and
the table check uses (without importing torch) matches the installed torch."""

from __future__ import annotations

import pytest
import torch.nn as nn

import nndsl
from nndsl.backends.torch.module import GraphModule
from nndsl.backends.torch.reserved import (GRAPH_MODULE_ATTRIBUTES, MODULE_ATTRIBUTES,
                                           reserved_part)
from nndsl.cli import main


def test_the_table_holds_every_attribute_of_the_installed_torch():
    # names with two leading underscores are Python's and torch's own (torch.compile adds
    # `___needs_generation_tag_patch` to nn.Module once it has run): not names a spec writes
    module = {n for n in dir(nn.Module()) if not n.startswith("__")}
    assert module <= MODULE_ATTRIBUTES, sorted(module - MODULE_ATTRIBUTES)
    c = nndsl.compile(source="model m() { input x: f32[N, 4]\n output y = x |> linear(2) }")
    built = GraphModule(c.graph)
    own = {n for n in dir(built) if not n.startswith("__")}
    own -= {"linear_0"}   # the spec's own scope
    assert own <= GRAPH_MODULE_ATTRIBUTES, sorted(own - GRAPH_MODULE_ATTRIBUTES)


def test_reserved_part():
    assert reserved_part("train.weight") == ("train", False)
    assert reserved_part("stem.eval.bias") == ("eval", False)
    assert reserved_part("stem.to") == ("to", True)
    assert reserved_part("graph_name") == ("graph_name", True)
    assert reserved_part("stem.graph_name.weight") is None   # only the top module has it
    assert reserved_part("trainer.weight") is None


@pytest.mark.parametrize("name", ["train", "eval", "forward", "to", "state_dict", "training"])
def test_check_refuses_what_to_torch_refuses(tmp_path, capsys, name):
    spec = tmp_path / "m.nn"
    spec.write_text("model m() {\n    input x: f32[N, 4]\n"
                    f"    output y = x |> linear(3) as {name} |> relu\n}}\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error[E0902]: the scope name `{name}` is reserved in PyTorch"), err
    assert f"{spec}:3:21" in err and "Traceback" not in err
    c = nndsl.compile(spec)
    with pytest.raises(nndsl.LoweringError) as e:
        c.to_torch()
    assert e.value.code == "E0902" and e.value.span.line == 3


def test_check_without_reserved_names_does_not_import_torch(root):
    import subprocess
    import sys
    code = ("import sys, nndsl.cli; rc = nndsl.cli.main(['check', 'specs/vision/mnist_cnn.nn']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.split()[-2:] == ["0", "False"], out.stdout + out.stderr
