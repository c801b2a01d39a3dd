"""What a spec may read and where the command line may write.

Imports read only regular ``.nn`` files inside the main spec's folder tree or a ``--lib``
folder (symbolic links resolved first); nothing else is opened, so no file's text is quoted
back and no device or FIFO can block or flood the compiler. Output paths that cannot be
written are refused up front with the path named. ``--debug`` works before or after the
command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nndsl
from nndsl.cli import main

MODEL = "model m() { input x: f32[N, 4]  output y = x |> linear(2) }\n"
SECRET = "top secret: do not print me\n"
ROOT = Path(__file__).resolve().parents[1]


def _check(capsys, *argv) -> tuple[int, str]:
    rc = main(["check", *map(str, argv)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def _spec(folder: Path, target: str, name: str = "main.nn") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f'import "{target}"\n' + MODEL)
    return p


def _at_import(err: str, spec: Path) -> None:
    assert f" --> {spec}:1:1" in err, err
    assert '1 | import "' in err, err


@pytest.mark.parametrize("target", ["/etc/passwd", "../../secret.txt", "/dev/zero",
                                    "/dev/urandom", "/dev/stdin", "notes.txt"])
def test_only_nn_files_are_imported(tmp_path, capsys, target):
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "box" / "sub").mkdir(parents=True)
    (tmp_path / "box" / "sub" / "notes.txt").write_text(SECRET)
    spec = _spec(tmp_path / "box" / "sub", target)
    rc, err = _check(capsys, spec)
    assert rc == 1 and err.startswith(f'error[E0006]: cannot import "{target}": only .nn files'), err
    _at_import(err, spec)
    assert "root:" not in err and "do not print" not in err


def test_a_spec_outside_the_tree_is_refused(tmp_path, capsys):
    (tmp_path / "secret.nn").write_text("# " + SECRET + MODEL)
    spec = _spec(tmp_path / "box", "../secret.nn")
    rc, err = _check(capsys, spec)
    assert rc == 1 and "error[E0520]" in err and "outside the folders imports may read" in err
    _at_import(err, spec)
    assert "do not print" not in err
    assert f"--lib {tmp_path}" in err   # how to allow it


def test_an_absolute_path_inside_the_tree_is_allowed(tmp_path, capsys):
    (tmp_path / "blocks.nn").write_text("block b() { input x: f32[..., F]  return x }\n")
    spec = _spec(tmp_path, str(tmp_path / "blocks.nn"))
    assert _check(capsys, spec)[0] == 0


@pytest.mark.parametrize("link_to", ["/etc/passwd", "/dev/zero", "../outside.nn"])
def test_symlinks_are_resolved_then_checked(tmp_path, capsys, link_to):
    (tmp_path / "outside.nn").write_text("# " + SECRET + MODEL)
    box = tmp_path / "box"
    box.mkdir()
    os.symlink(link_to if link_to.startswith("/") else tmp_path / "outside.nn", box / "link.nn")
    spec = _spec(box, "link.nn")
    rc, err = _check(capsys, spec)
    assert rc == 1 and "error[E0520]" in err and "it resolves to" in err, err
    _at_import(err, spec)
    assert "root:" not in err and "do not print" not in err


def test_a_symlink_within_the_tree_is_followed(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "b.nn").write_text("block b() { input x: f32[..., F]  return x }\n")
    os.symlink(tmp_path / "real" / "b.nn", tmp_path / "b.nn")
    assert _check(capsys, _spec(tmp_path, "b.nn"))[0] == 0


def test_a_symlink_to_a_text_file_inside_the_tree_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text(SECRET)
    os.symlink(tmp_path / "notes.txt", tmp_path / "n.nn")
    rc, err = _check(capsys, _spec(tmp_path, "n.nn"))
    assert rc == 1 and "error[E0006]" in err and "not a .nn file" in err
    assert "do not print" not in err


def _run(*argv, timeout=60) -> subprocess.CompletedProcess:
    """The real command in a subprocess (a hang fails by timeout, not by blocking the suite);
    stdin is a pipe nobody writes to, so reading it would block."""
    return subprocess.run([sys.executable, "-m", "nndsl", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.PIPE)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.nn")
    spec = _spec(tmp_path, "pipe.nn")
    r = _run("check", spec)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert 'error[E0005]: cannot import "pipe.nn"' in r.stderr and "named pipe" in r.stderr
    assert f" --> {spec}:1:1" in r.stderr
    r = _run("check", tmp_path / "pipe.nn")        # as the main spec
    assert r.returncode == 1 and "error[E0005]" in r.stderr and "named pipe" in r.stderr


def test_devices_as_the_main_spec(tmp_path):
    for dev in ("/dev/stdin", "/dev/zero"):
        r = _run("check", dev)
        assert r.returncode == 1 and "error[E0006]" in r.stderr and "Traceback" not in r.stderr
    os.symlink("/dev/zero", tmp_path / "zero.nn")
    r = _run("check", tmp_path / "zero.nn")
    assert r.returncode == 1 and "error[E0005]" in r.stderr and "character device" in r.stderr


def test_lib_folders(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "blocks.nn").write_text("block twice() { input x: f32[..., F]  return x + x }\n")
    box = tmp_path / "box"
    box.mkdir()
    spec = box / "main.nn"
    spec.write_text('import "blocks.nn"\nmodel m() { input x: f32[N, 4]  output y = x |> twice }\n')
    rc, err = _check(capsys, spec)
    assert rc == 1 and "error[E0504]" in err and "file not found" in err
    assert _check(capsys, spec, "--lib", lib)[0] == 0        # searched after the spec's folder
    spec.write_text(f'import "{lib / "blocks.nn"}"\n'
                    'model m() { input x: f32[N, 4]  output y = x |> twice }\n')
    assert _check(capsys, spec)[0] == 1
    assert _check(capsys, spec, "--lib", lib)[0] == 0        # an absolute path inside a lib
    rc, err = _check(capsys, spec, "--lib", tmp_path / "nope")
    assert rc == 1 and "error[E0007]: library folder" in err and "does not exist" in err
    assert nndsl.compile(spec, lib=[lib]).name == "m"
    with pytest.raises(nndsl.SourceFileError, match="outside the folders"):
        nndsl.compile(spec)


def test_source_text_imports_from_its_base(tmp_path, monkeypatch):
    (tmp_path / "b.nn").write_text("block twice() { input x: f32[..., F]  return x + x }\n")
    text = 'import "b.nn"\nmodel m() { input x: f32[N, 4]  output y = x |> twice }\n'
    assert nndsl.compile(source=text, base=tmp_path).name == "m"
    monkeypatch.chdir(tmp_path / "..")
    with pytest.raises(nndsl.SourceFileError, match="file not found"):
        nndsl.compile(source=text)
    monkeypatch.chdir(tmp_path)
    assert nndsl.compile(source=text).name == "m"
    with pytest.raises(nndsl.SourceFileError, match="outside the folders"):
        nndsl.compile(source='import "/etc/x.nn"\n' + MODEL, base=tmp_path)


# ---- --debug before or after the command ----

def _boom(args):
    raise RuntimeError("a bug")


@pytest.mark.parametrize("argv", [["--debug", "check", "X.nn"], ["check", "X.nn", "--debug"]])
def test_debug_shows_the_traceback(monkeypatch, argv):
    monkeypatch.setattr("nndsl.cli.cmd_check", _boom)
    with pytest.raises(RuntimeError, match="a bug"):
        main(argv)


def test_without_debug_an_internal_error_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr("nndsl.cli.cmd_check", _boom)
    assert main(["check", "X.nn"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("internal error: RuntimeError: a bug") and "Traceback" not in err


# ---- output paths ----

SPEC = ROOT / "specs" / "fundamentals" / "perceptron.nn"


@pytest.mark.parametrize("argv,blame", [
    (["compile", SPEC, "-o", "{f}/x"], "{f} is a file, not a folder"),
    (["compile", SPEC, "--to", "onnx", "-o", "{f}/x.onnx"], "{f} is a file, not a folder"),
    (["compile", SPEC, "-o", "{f}"], "it is a file, and the output is a folder"),
    (["compile", SPEC, "--to", "onnx", "-o", "{d}"], "it is a folder, and the output is a file"),
    (["compile", SPEC, "--to", "onnx", "-o", "/proc/x.onnx"], "it is in /proc, a system folder"),
    (["graph", SPEC, "-o", "/sys/x.dot"], "it is in /sys, a system folder"),
    (["graph", SPEC, "-o", "{f}/deep/x.dot"], "{f} is a file, not a folder"),
    (["run", SPEC, "--save", "{f}/o.npz"], "{f} is a file, not a folder"),
])
def test_unwritable_outputs(tmp_path, capsys, argv, blame):
    f = tmp_path / "file.txt"
    f.write_text("x")
    fill = {"f": str(f), "d": str(tmp_path)}
    argv = [str(a).format(**fill) for a in argv]
    out = argv[argv.index("-o" if "-o" in argv else "--save") + 1]
    assert main(argv) == 1
    cap = capsys.readouterr()
    assert cap.err.startswith(f"error[E1008]: cannot write {out}: {blame.format(**fill)}"), cap.err
    assert "Traceback" not in cap.err and "NotADirectoryError" not in cap.err
    assert cap.out == ""    # refused before compiling or running anything
    assert f.read_text() == "x"


def test_a_missing_output_folder_is_created(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "g.dot"
    assert main(["graph", str(SPEC), "-o", str(out)]) == 0
    assert out.read_text().startswith("digraph")
