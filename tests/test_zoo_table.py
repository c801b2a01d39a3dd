"""docs/make_zoo_table.py: the values in its rows, and that the committed docs/zoo.md is current
enough to list every spec."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import nndsl
from nndsl.elab import load_program

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_zoo_table",
                                                  ROOT / "docs" / "make_zoo_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_zoo_table"] = mod
    spec.loader.exec_module(mod)
    return mod


table = _load_script()


def code_lines(path: Path) -> int:
    n = 0
    for line in path.read_text(encoding="utf-8").split("\n"):
        text = line.strip()
        if text != "" and text[0] != "#":
            n += 1
    return n


def first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.lstrip().startswith("#"):
            return line.lstrip()[1:].strip()
    return ""


@pytest.fixture(scope="module")
def rows():
    paths = [SPECS / "fundamentals" / "perceptron.nn", SPECS / "vision" / "mnist_cnn.nn"]
    return {r.model: r for r in table.build_rows(paths)}


@pytest.mark.parametrize("rel, model, params, cls", [
    ("fundamentals/perceptron.nn", "perceptron", 5, "Perceptron"),
    ("vision/mnist_cnn.nn", "mnist_cnn", 121_930, "MnistCNN"),
])
def test_row_values(rows, rel, model, params, cls):
    path = SPECS / rel
    r = rows[model]
    assert r.spec == f"specs/{rel}" and r.family == rel.split("/")[0]
    assert r.error == ""
    assert r.params == params
    assert r.flops == nndsl.compile(path).flops(batch=1)
    assert r.flops > 0 and r.dims == {}
    assert r.nn_lines == code_lines(path) and r.models_in_file == 1
    assert r.description == first_comment(path) != ""
    assert r.reference == params and r.reference_ok
    assert r.onnx == "ok" and not r.onnx_reduced          # small enough to check at full size
    assert r.torch_class == cls and r.torch_lines > 0


def test_rendered_rows(rows):
    text = table.render(list(rows.values()))
    assert text == table.render(list(rows.values()))      # deterministic
    assert "**2 specs, 2 models**" in text
    line = next(x for x in text.splitlines() if "`specs/vision/mnist_cnn.nn`" in x)
    cells = [c.strip() for c in line.strip("|").split(" | ")]
    c = nndsl.compile(SPECS / "vision" / "mnist_cnn.nn")
    assert cells[0] == "vision" and cells[2] == "`mnist_cnn`"
    assert cells[4] == str(code_lines(SPECS / "vision" / "mnist_cnn.nn"))
    assert cells[6] == "121,930" and cells[7] == "121,930 ✓"
    assert cells[8] == f"{c.flops(batch=1):,}" and cells[9] == "ONNX ✓"


def test_reference_class_lines_leave_out_test_plumbing():
    perceptron = table.reference_classes()["fundamentals/perceptron.nn"]
    # class, __init__, super().__init__(), self.fc = ..., forward, return
    assert table.torch_lines(perceptron) == 6


def test_file_with_several_models():
    path = SPECS / "generative" / "vae.nn"
    got = table.build_rows([path], onnx=False)
    assert [r.model for r in got] == list(
        load_program(path.read_text(encoding="utf-8"), str(path)).models)
    assert len(got) > 1
    for r in got:
        assert r.models_in_file == len(got) and r.nn_lines == code_lines(path)
        c = nndsl.compile(path, model=r.model)
        assert (r.params, r.flops) == (c.param_count(), c.flops(batch=1))
    assert f"(file of {len(got)} models)" in table.render(got)


def test_a_spec_that_does_not_compile_gets_its_error_code(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("# broken on purpose\nmodel bad() {\n    input x: f32[N, 4]\n"
                   "    output y = x @ x\n}\n", encoding="utf-8")
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(bad)
    (r,) = table.build_rows([bad])
    assert r.model == "bad" and r.params is None
    assert r.error.startswith(err.value.code + ":")
    assert f"error {err.value.code}:" in table.render([r])


def test_committed_table_lists_every_spec():
    text = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\[`(specs/[^`]+\.nn)`\]", text))
    on_disk = {p.relative_to(ROOT).as_posix() for p in SPECS.rglob("*.nn")}
    assert on_disk - listed == set(), (
        f"docs/zoo.md misses {sorted(on_disk - listed)}: run `python docs/make_zoo_table.py`")
    assert listed - on_disk == set(), (
        f"docs/zoo.md lists removed specs {sorted(listed - on_disk)}: "
        "run `python docs/make_zoo_table.py`")
