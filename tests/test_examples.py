"""Every script in examples/ runs to completion and prints what it promises."""

import subprocess
import sys

import pytest

from conftest import ROOT

EXPECT = {
    "quickstart.py": "resnet18: 11,181,642 parameters",
    "inspect_model.py": "graph gpt_mini(%tokens: i64[N, T])",
    "custom_spec.py": "step 100",
    "export_torch.py": "generated module matches the compiled one: True",
}


def test_every_example_is_covered():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs(name, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert EXPECT[name] in r.stdout
