"""The nndsl command line, in-process (fast) and as a real process (no traceback, exit codes)."""

import json
import subprocess
import sys

import pytest

from nndsl.cli import main
from nndsl.cli_args import parse_value

RESNET = "specs/vision/resnet18.nn"


@pytest.fixture(autouse=True)
def _chdir(root, monkeypatch):
    monkeypatch.chdir(root)


def test_check_prints_the_parameter_count(capsys):
    assert main(["check", RESNET]) == 0
    assert capsys.readouterr().out == "ok: resnet18 — 11,689,512 parameters\n"


def test_check_with_params(capsys):
    assert main(["check", RESNET, "--param", "classes=10"]) == 0
    assert "11,181,642" in capsys.readouterr().out


def test_inspect_table(capsys):
    assert main(["inspect", "specs/vision/mnist_cnn.nn"]) == 0
    out = capsys.readouterr().out
    for text in ("conv1", "conv2d", "f32[N, 32, 26, 26]", "121,930", "total"):
        assert text in out


def test_inspect_ir(capsys):
    assert main(["inspect", "specs/vision/mnist_cnn.nn", "--ir"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("graph mnist_cnn(%image: f32[N, 1, 28, 28]) {")
    assert "%conv1: f32[N, 32, 26, 26] = conv2d(%image, %conv1.weight, %conv1.bias)" in out


def test_inspect_json_is_only_json(capsys):
    assert main(["inspect", RESNET, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 11_689_512
    assert data["inputs"] == [{"name": "image", "dtype": "f32", "shape": ["N", 3, 224, 224]}]
    assert data["outputs"][0]["shape"] == ["N", 1000]
    assert isinstance(data["flops"], int) and data["flops"] > 3_000_000_000
    assert {"name", "op", "params", "flops"} <= set(data["nodes"][0])


def test_inspect_params(capsys):
    assert main(["inspect", "specs/vision/mnist_cnn.nn", "--params"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "conv1.weight: f32[32, 1, 3, 3]"


def test_errors_go_to_stderr_with_exit_1(capsys, tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("model m() {\n  input x: f32[N, 3]\n  output y = x |> lineer(2)\n}\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[E0201]: unknown name `lineer`")
    assert "3:19" in err and "did you mean `linear`?" in err


def test_usage_errors_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["check"]) == 2


def test_param_values_are_parsed_not_evaluated():
    assert parse_value("10") == 10 and parse_value("0.5") == 0.5
    assert parse_value("true") is True and parse_value("[1, 2]") == (1, 2)
    assert parse_value("__import__('os')") == "__import__('os')"


def test_passes_lists_the_pipelines(capsys):
    assert main(["passes"]) == 0
    assert "O0:" in capsys.readouterr().out


def test_module_entry_point_no_traceback(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("model m() { input x: f32[N, 3]  output y = x |> linear(2) |> reshape([7]) }")
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "error[E0311]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", RESNET], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "11,689,512" in r.stdout


def test_lsp_subcommand_speaks_the_protocol_over_stdio():
    """`nndsl lsp` is the language server: initialize, shutdown and exit, framed as LSP."""
    import json
    import subprocess
    import sys

    def frame(i, method, params=None):
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {},
                           **({"id": i} if i is not None else {})}).encode()
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    messages = (frame(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
                + frame(None, "initialized") + frame(2, "shutdown") + frame(None, "exit"))
    out = subprocess.run([sys.executable, "-m", "nndsl", "lsp", "--stdio"], input=messages,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    replies = [json.loads(part.split(b"\r\n\r\n", 1)[1])
               for part in out.stdout.split(b"Content-Length: ")[1:]]
    init = next(r for r in replies if r.get("id") == 1)
    caps = init["result"]["capabilities"]
    assert caps["hoverProvider"] and caps["definitionProvider"]
    assert any(r.get("id") == 2 and "result" in r for r in replies)


def test_explain_and_robust_are_commands(capsys):
    spec = "specs/fundamentals/perceptron.nn"
    assert main(["explain", spec, "--data", "breast_cancer", "--param", "features=30",
                 "--method", "saliency", "--samples", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "saliency"
    assert main(["robust", spec, "--data", "breast_cancer", "--param", "features=30",
                 "--attack", "fgsm", "--eps", "2"]) == 1
    assert "E1704" in capsys.readouterr().err
