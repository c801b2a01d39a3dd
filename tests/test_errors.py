"""Golden tests for user mistakes.

Each case is a small spec ``tests/errors/NAME.nn``; ``tests/errors/NAME.err`` holds exactly what
``nndsl check tests/errors/NAME.nn`` prints on stderr. The check runs in-process from the
repository root, so the paths in the messages are the stable relative ones.

To accept new messages after a deliberate change, rerun with ``NNDSL_UPDATE_GOLDEN=1``; a
mismatch also prints the new text, ready to paste into the golden file.

Besides the exact text, every case asserts the exit code, the ``error[E....]`` header, and the
``-->`` location line (the line number it should point at) followed by a caret line, so a golden
file cannot silently accept a message that lost its location.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nndsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
ERRORS = ROOT / "tests" / "errors"
UPDATE = os.environ.get("NNDSL_UPDATE_GOLDEN") == "1"

# Where each case's error points: a line of its own spec, (file, line) for a location in another
# file, None for a file-level error that has no location, OK for a spec that must compile.
OK = "ok"
CASES: dict[str, object] = {
    # syntax
    "syntax_missing_bracket": 4,
    "keyword_run_into_name": 2,
    "parameter_declared_twice": 2,
    "layer_applied_to_nothing": 6,
    "syntax_missing_brace": 4,
    "syntax_missing_call_paren": 5,
    "syntax_stray_token": 4,
    "syntax_stray_char": 3,
    "syntax_unterminated_string": 3,
    # names
    "unknown_op": 3,
    "unknown_layer": 3,
    "unknown_block": 8,
    "unknown_name": 3,
    "unknown_attribute": 3,
    "std_not_imported": 4,
    "unknown_dtype": 2,
    # arguments
    "too_many_args": 3,
    "block_too_many_args": 8,
    "missing_arg": 3,
    "block_missing_arg": 8,
    "unknown_keyword": 3,
    "duplicate_keyword": 3,
    "wrong_type_string": 3,
    "wrong_type_float": 3,
    "wrong_type_float_dim": 3,
    "builtin_wrong_kind": 3,
    "block_param_type": 8,
    "block_input_not_tensor": 8,
    "param_init_kind": 3,
    "positional_after_keyword": 3,
    # values of the wrong kind where an argument is not what is wrong
    "operand_kind": 3,
    "symbolic_dim_divide": 3,
    "index_kind": 3,
    "index_two_ellipses": 3,
    "tensor_index_with_int": 4,
    "list_slice_step_zero": 3,
    "for_not_a_list": 4,
    "range_symbolic_dim": 4,
    "name_applied_layer": 4,
    "gelu_approximate": 3,
    "output_not_tensor": 3,
    "param_dim_kind": 3,
    # shapes, one or more per op family
    "shape_linear": 6,
    "shape_linear_tied_rows": 6,
    "shared_layer_mismatch": 6,
    "shape_matmul": 4,
    "shape_broadcast_add": 4,
    "shape_conv_channels": 7,
    "shape_conv_rank": 3,
    "conv_groups": 3,
    "shape_concat": 5,
    "shape_batch_norm_rank": 3,
    "shape_layer_norm": 3,
    "shape_embedding_float": 3,
    "shape_lstm_rank": 3,
    "shape_split": 3,
    "shape_split_sizes": 3,
    "shape_split_dim": 3,
    "shape_group_norm_groups": 3,
    "shape_block_rank": 8,
    "shape_block_dim": 8,
    "block_shape_inside": 6,
    "conv_output_size": 3,
    "conv_stride_zero": 3,
    "conv_kernel_list": 4,
    "pool_output_size": 6,
    "reshape_count": 3,
    "index_out_of_range": 3,
    "slice_out_of_range": 3,
    "shape_index_select_rank": 4,
    "shape_segment_ids": 5,
    "shape_gather_dtype": 4,
    "dtype_mix": 4,
    "conv_same_stride": 3,
    "rank_too_low": 3,
    "permute_dims": 3,
    "squeeze_size": 3,
    "block_input_dtype": 7,
    "absurd_input_dim": 2,
    "absurd_linear": 3,
    # scan: cell-level recurrence
    "scan_state_shape": 9,
    "scan_state_arity": 11,
    "scan_step_arity": 6,
    "scan_not_a_block": 3,
    "scan_no_steps": 5,
    "scan_over_lengths": 11,
    # assertions and compile-time conditions
    "assert_failed": 2,
    "block_assert": ("std/attention.nn", 7),
    "if_symbolic_dim": 3,
    "tensor_condition": 4,
    # definitions
    "duplicate_block": 6,
    "duplicate_layer_name": 4,
    "recursive_block": 3,
    "block_missing_return": 1,
    "model_return": 3,
    "no_outputs": 1,
    "no_model": None,
    "several_models": OK,          # check checks each model
    "model_not_found": None,
    "param_not_found": 1,
    # random inputs
    "random_unknown_distribution": 3,
    "random_wrong_dtype": 3,
    "random_block_input": 2,
    "random_bad_range": 3,
    # optimize sections
    "optimize_twice": 6,
    "quantize_unknown_scheme": 5,
    "quantize_group_width": None,  # found by the quantization pass, on the graph: no location
    "prune_bad_sparsity": 5,
    "keep_unknown_scope": 7,
    # imports
    "import_cycle": ("tests/errors/imports/cycle_b.nn", 1),
    "import_missing": 1,
    "import_unknown_std": 1,
    # files
    "missing_file": None,
    "directory": None,
    "empty": None,
    "only_comments": None,
    "not_utf8": 1,                 # located at its first bad byte
    "binary": None,
    # train sections
    "train_unknown_optimizer": 8,
    "train_unknown_loss": 7,
    "train_unknown_schedule": 8,
    "train_unknown_metric": 8,
    "train_unknown_data": 7,
    "train_unknown_entry": 8,
    "train_unknown_name": 7,
    "train_bad_kwarg": 8,
    "train_bad_epochs": 8,
    "train_duplicate_entry": 9,
    "train_no_loss": 5,
    "train_missing_model": 5,
    "train_loss_shape": 7,
    "train_mse_shape": 8,
    "train_weighted_sum": 10,
    "train_metric_task": 8,
    "train_data_features": 7,
    "train_data_classes": 7,
    "train_freeze_scope": 8,
    "train_separate_file": OK,
    # search spaces and search sections
    "search_choice_mixed": 2,
    "search_choice_empty": 2,
    "search_range_empty": 2,
    "search_choice_in_body": 4,
    "search_unknown_quantity": 8,
    # limits: deep nesting must give a clean error or compile, never a RecursionError
    "deep_parens": OK,
    "deep_calls": 3,
    "nested_loops": 4,
    "long_pipeline": OK,
}

# Extra command-line arguments of a case.
ARGS = {
    "model_not_found": ["--model", "medium"],
    "param_not_found": ["--param", "hiden=256"],
}

# Cases whose path is not tests/errors/NAME.nn.
PATHS = {"directory": "tests/errors/imports"}
NO_SPEC = {"missing_file", "directory"}  # cases with no spec file of their own

# Fixtures written by the suite itself: bytes that are awkward to keep by hand (not UTF-8, binary,
# empty) and generated stress specs. They live at stable paths so the golden text can name them.
_HEAD = "model deep() {\n    input x: f32[N, 4]\n"
GENERATED = {
    "empty": b"",
    "not_utf8": "# caf\xe9 au lait, saved as Latin-1\nmodel m() {\n    input x: f32[N, 4]\n"
                "    output y = x |> relu\n}\n".encode("latin-1"),
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06",
    "deep_parens": (_HEAD + "    output y = " + "(" * 1000 + "x" + ")" * 1000 + "\n}\n").encode(),
    "deep_calls": (_HEAD + "    output y = " + "relu(" * 1000 + "x" + ")" * 1000
                   + "\n}\n").encode(),
    "long_pipeline": (_HEAD + "    output y = x" + " |> relu" * 5000 + "\n}\n").encode(),
}


def _write_generated() -> None:
    for name, data in GENERATED.items():
        path = ERRORS / f"{name}.nn"
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)


@pytest.fixture(scope="module", autouse=True)
def generated_fixtures():
    _write_generated()


def _spec(name: str) -> str:
    return PATHS.get(name, f"tests/errors/{name}.nn")


def _check(name: str, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.chdir(ROOT)
    rc = main(["check", _spec(name), *ARGS.get(name, [])])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _compare_golden(name: str, actual: str) -> None:
    golden = ERRORS / f"{name}.err"
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
        return
    expected = golden.read_text(encoding="utf-8") if golden.exists() else None
    if expected == actual:
        return
    diff = "".join(difflib.unified_diff(
        (expected or "").splitlines(keepends=True), actual.splitlines(keepends=True),
        fromfile=f"tests/errors/{name}.err", tofile="actual stderr"))
    pytest.fail(
        f"stderr of `nndsl check {_spec(name)}` does not match tests/errors/{name}.err"
        + (" (missing)" if expected is None else "") + "\n\n" + diff
        + f"\nNew text for tests/errors/{name}.err (or rerun with NNDSL_UPDATE_GOLDEN=1):\n"
        + "-" * 72 + "\n" + actual + "-" * 72, pytrace=False)


_LOCATION = re.compile(r"^ --> (.+):(\d+):(\d+)$")


def _assert_shape_of_message(name: str, err: str, where) -> None:
    lines = err.splitlines()
    assert lines and re.match(r"^error\[E\d{4}\]: \S", lines[0]), err
    assert "Traceback" not in err and "internal error" not in err, err
    if where is None:
        assert not any(_LOCATION.match(ln) for ln in lines), \
            f"{name}: a file-level error should have no location\n{err}"
        return
    file, line = where if isinstance(where, tuple) else (_spec(name), where)
    assert len(lines) >= 5, err
    m = _LOCATION.match(lines[1])
    assert m, f"{name}: the second line should be the `-->` location\n{err}"
    assert (m.group(1), int(m.group(2))) == (file, line), \
        f"{name}: expected the error at {file}:{line}, got {m.group(1)}:{m.group(2)}\n{err}"
    gutter = " " * len(str(line))
    assert lines[2] == f"{gutter} |", err
    assert lines[3].startswith(f"{line} | "), f"{name}: the source line is not quoted\n{err}"
    caret = lines[4]
    assert caret.startswith(f"{gutter} | ") and re.fullmatch(r" *\^+", caret[len(gutter) + 3:]), \
        f"{name}: no caret line under the source\n{err}"
    col = int(m.group(3))
    if len(lines[3]) < 100:  # very long lines are quoted as a window; the column shifts there
        assert caret.index("^") - len(gutter) - 3 == col - 1, \
            f"{name}: the caret is not under column {col}\n{err}"


@pytest.mark.parametrize("name", list(CASES))
def test_error_message(name, capsys, monkeypatch):
    where = CASES[name]
    rc, out, err = _check(name, capsys, monkeypatch)
    if where == OK:
        assert rc == 0 and err == "", err
        assert out.startswith("ok: "), out
        return
    assert rc == 1, f"{name}: exit code {rc}\n{err}"
    assert out == "", out
    _assert_shape_of_message(name, err, where)
    _compare_golden(name, err)


def test_every_spec_and_golden_belongs_to_a_case():
    _write_generated()
    specs = {p.stem for p in ERRORS.glob("*.nn")}
    goldens = {p.stem for p in ERRORS.glob("*.err")}
    assert specs - set(CASES) == set(), "specs with no entry in CASES"
    assert set(CASES) - specs - NO_SPEC == set(), "cases with no spec"
    assert not (NO_SPEC & specs), "a case meant to have no spec file has one"
    expected_goldens = {n for n, w in CASES.items() if w != OK}
    if not UPDATE:
        assert goldens == expected_goldens, "orphan or missing golden files"


@pytest.mark.parametrize("name", ["shape_linear", "syntax_missing_bracket", "deep_calls",
                                  "not_utf8"])
def test_module_entry_point(name):
    """The real command: exit code 1, the same text, no traceback."""
    _write_generated()
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", _spec(name)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    golden = ERRORS / f"{name}.err"
    if not UPDATE:
        assert r.stderr == golden.read_text(encoding="utf-8")


def test_long_pipeline_compiles_in_a_subprocess():
    _write_generated()
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", _spec("long_pipeline")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok: deep"), r.stderr
