"""``nndsl search`` and search spaces (nndsl/search/, nndsl/elab/space.py, docs/SEARCH.md).

- Syntax: ``choice(...)``/``range(...)`` defaults and a ``search`` section parse, format to the
  canonical layout and back; outside a search a space compiles with its first value.
- Mistakes in spaces, limits and the command are located errors (E15xx), exit 1.
- A search: rejected configurations are counted and never trained (no run folder); trained ones
  have their run folder; best.nn compiles with the chosen values; the Pareto front equals a
  hand computation; resuming to a larger total runs only the rest; two worker processes share
  one SQLite study without running more trials than asked or any trial twice; the sampled values
  depend on the seed only.

Trials train one epoch on scikit-learn's digits (8x8, 64 inputs) with a small MLP; searches of
the sizes alone (``--objective params``) train nothing and test the sampling quickly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nndsl
from nndsl.cli import main
from nndsl.editor.fmt import format_text
from nndsl.elab.space import SearchError, space_of
from nndsl.search import run_search
from nndsl.search.pareto import best_of_front, dominates, pareto_front
from nndsl.syntax import ast, parse

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
model mlp(width: int = choice(16, 32, 256), depth: int = range(1, 3),
          act: str = choice("relu", "gelu")) {
    input x: f32[N, 64]
    h = x
    repeat depth {
        h = h |> linear(width)
        h = if act == "relu" { h |> relu } else { h |> gelu }
    }
    output logits = h |> linear(10)
}

search mlp {
    params <= 12_000
}

train mlp {
    target label: i64[N]
    data = digits
    loss = cross_entropy(logits, label)
    optimizer = adam(lr=3e-3)
    metrics = [accuracy]
    monitor = val_accuracy
    epochs = 1
    batch = 128
}
"""

# parameters of the MLP above: 64 inputs, `depth` hidden layers of `width`, 10 classes
def mlp_params(width: int, depth: int) -> int:
    return 64 * width + width + (depth - 1) * (width * width + width) + width * 10 + 10


def write(tmp_path, text=SPEC, name="mlp.nn") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def search(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["search", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def results(out_dir: Path) -> dict:
    return json.loads((out_dir / "search.json").read_text(encoding="utf-8"))


# ---- syntax ----

def test_search_syntax_parses_and_formats():
    messy = ("model m(w: int = choice( 8,16 ), d: int=range(1,4), a: str = choice(\"relu\",\"gelu\"))"
             " { input x: f32[N, 4]  output y = x |> linear(w) }\n"
             "search m { params <= 2e5 flops<5_000_000 }\n")
    want = ("model m(w: int = choice(8, 16), d: int = range(1, 4), a: str = choice(\"relu\", "
            "\"gelu\")) {\n"
            "    input x: f32[N, 4]\n    output y = x |> linear(w)\n}\n\n"
            "search m {\n    params <= 2e5\n    flops < 5_000_000\n}\n")
    assert format_text(messy) == want
    assert format_text(want) == want
    m = parse(want)
    (s,) = m.searches
    assert s.model == "m" and [(lim.quantity, lim.op) for lim in s.limits] == [
        ("params", "<="), ("flops", "<")]
    assert isinstance(s.limits[1].value, ast.Num) and s.limits[1].value.value == 5_000_000
    dims = space_of(m.definitions[0])
    assert [(d.name, d.kind, d.options) for d in dims] == [
        ("w", "choice", (8, 16)), ("d", "range", (1, 2, 3)), ("a", "choice", ("relu", "gelu"))]


def test_search_stays_a_name_inside_a_model():
    c = nndsl.compile(source="model m(search: int = 3) {\n input x: f32[N, 2]\n"
                             " choice = x |> linear(search)\n output y = choice\n}\n")
    assert c.param_count() == 2 * 3 + 3


def test_the_lexer_highlights_search_and_choice():
    from pygments.token import Keyword, Name
    from nndsl.editor.lexer import NndslLexer
    toks = [(t, v) for t, v in NndslLexer().get_tokens(
        "model m(w: int = choice(1, 2)) { input x: f32[N, 1]  output y = x }\n"
        "search m { params <= 10 }\n") if v.strip()]
    assert (Keyword.Declaration, "search") in toks
    assert (Name.Builtin, "choice") in toks
    i = toks.index((Keyword.Declaration, "search"))
    assert toks[i + 1] == (Name.Function, "m")


def test_a_space_compiles_with_its_first_value(tmp_path):
    c = nndsl.compile(write(tmp_path))
    assert c.param_count() == mlp_params(16, 1)
    c2 = nndsl.compile(write(tmp_path), params={"width": 32, "depth": 2, "act": "gelu"})
    assert c2.param_count() == mlp_params(32, 2)
    # `range` keeps its meaning for a parameter that is not an int: a list
    listy = nndsl.compile(source="model m(ws: list = range(2, 4)) { input x: f32[N, 3]\n"
                                 "h = x\n for w in ws { h = h |> linear(w) }\n output y = h }")
    assert listy.param_count() == (3 * 2 + 2) + (2 * 3 + 3)


# ---- errors in spaces and sections (nndsl check) ----

BAD = [
    ("choice()", None, "E1501", "has no values"),
    ('choice(16, "a")', None, "E1502", "mixes kinds"),
    ("choice(16, 16)", None, "E1502", "twice"),
    ("choice(16, depth)", None, "E1503", "must be a literal"),
    ("range(3, 1)", None, "E1504", "holds no value"),
    ("range(1.5, 3)", None, "E1504", "integer literals"),
    (None, "parms <= 5", "E1510", "cannot limit `parms`"),
    (None, "params <= width", "E1511", "must be a number"),
    (None, "params == 5", "E1511", "a bound"),
]


@pytest.mark.parametrize("width, limit, code, words", BAD)
def test_mistakes_in_spaces_and_limits_are_located(tmp_path, capsys, width, limit, code, words):
    text = SPEC
    if width is not None:
        text = text.replace("choice(16, 32, 256)", width)
    if limit is not None:
        text = text.replace("params <= 12_000", limit)
    p = write(tmp_path, text)
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and words in err, err
    line = 1 if width is not None else 13
    assert f"{p}:{line}:" in err and "^" in err and "Traceback" not in err


def test_choice_outside_a_default_and_an_unknown_search_model(tmp_path, capsys):
    p = write(tmp_path, SPEC.replace("h |> relu }", "h |> relu |> dropout(choice(0.1, 0.2)) }"))
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "error[E1505]" in err and f"{p}:7:" in err
    p = write(tmp_path, SPEC.replace("search mlp", "search mpl"))
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "error[E1512]" in err and "did you mean `mlp`" in err and f"{p}:12:" in err


# ---- errors of the command ----

def test_command_mistakes(tmp_path, capsys):
    p = write(tmp_path)
    out = tmp_path / "s"
    rc, _, err = search(capsys, p, "--trials", 2, "--objective", "val_acc", "-o", out)
    assert rc == 1 and "error[E1520]" in err and "did you mean `val_accuracy`" in err
    rc, _, err = search(capsys, p, "--trials", 2, "--objective", "test_accuracy", "-o", out)
    assert rc == 1 and "error[E1520]" in err and "no test split" in err
    rc, _, err = search(capsys, p, "--trials", 2, "--objective", "params,params", "-o", out)
    assert rc == 1 and "error[E1521]" in err
    rc, _, err = search(capsys, p, "--trials", 0, "-o", out)
    assert rc == 2 and "not a number of trials" in err
    with pytest.raises(SearchError) as e:
        run_search(p, trials=-3, out=out)
    assert e.value.code == "E1522"
    plain = write(tmp_path, SPEC.replace("choice(16, 32, 256)", "16").replace(
        "range(1, 3)", "1").replace('choice("relu", "gelu")', '"relu"'), "plain.nn")
    rc, _, err = search(capsys, plain, "--trials", 2, "-o", out)
    assert rc == 1 and "error[E1530]" in err and "declares no search space" in err
    assert not out.exists()    # nothing was written for a search that could not start
    rc, _, err = search(capsys, p, "--trials", 2, "--objective", "params", "--storage", tmp_path,
                        "-o", out)
    assert rc == 1 and "error[E1541]" in err and "is a folder" in err
    (out / "trials" / "0000").mkdir(parents=True)
    rc, _, err = search(capsys, p, "--trials", 2, "--objective", "params", "-o", out)
    assert rc == 1 and "error[E1524]" in err and "trials of another search" in err


def test_an_empty_space_under_the_limits_is_refused_before_any_trial(tmp_path, capsys):
    p = write(tmp_path, SPEC.replace("params <= 12_000", "params <= 1_000"))
    out = tmp_path / "s"
    rc, _, err = search(capsys, p, "--trials", 3, "-o", out)
    assert rc == 1 and "error[E1531]" in err and "empty under its limits" in err
    assert "none of its 12 configurations" in err
    assert f"least params of a configuration tried: {mlp_params(16, 1):,}" in err
    assert f"{p}:12:" in err and not out.exists()


def test_a_large_space_is_judged_at_its_least_numbers_against_upper_bounds(tmp_path, capsys):
    big = SPEC.replace("choice(16, 32, 256)", "choice(" + ", ".join(
        str(8 * k) for k in range(1, 17)) + ")").replace("range(1, 3)", "range(1, 10)")
    p = write(tmp_path, big.replace("params <= 12_000", "params <= 100"))
    rc, _, err = search(capsys, p, "--trials", 3, "--objective", "params", "-o", tmp_path / "a")
    assert rc == 1 and "error[E1531]" in err and "every number of the space at its least" in err
    assert f"least params of a configuration tried: {mlp_params(8, 1):,}" in err
    # a lower bound says nothing at the least numbers: the search runs, its trials are rejected
    p = write(tmp_path, big.replace("params <= 12_000", "params >= 1e9"))
    rc, text, err = search(capsys, p, "--trials", 3, "--objective", "params", "-o", tmp_path / "b")
    assert rc == 0, err
    assert results(tmp_path / "b")["counts"]["rejected"] == 3 and "no trial trained" in text
    assert not (tmp_path / "b" / "best.nn").exists()


def test_without_optuna_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)   # `import optuna` raises ImportError
    rc, _, err = search(capsys, write(tmp_path), "--trials", 2, "-o", tmp_path / "s")
    assert rc == 1 and "error[E1540]" in err and 'pip install "nndsl[search]"' in err


# ---- the Pareto front ----

def test_pareto_front_by_hand():
    pts = [(0.90, 5000), (0.92, 9000), (0.85, 4000), (0.90, 6000), (0.92, 9000), (0.80, 9500)]
    dirs = ["maximize", "minimize"]
    # (0.90, 6000) is dominated by (0.90, 5000); (0.80, 9500) by all; equal points both stay
    assert pareto_front(pts, dirs) == [0, 1, 2, 4]
    assert dominates(pts[0], pts[3], dirs) and not dominates(pts[1], pts[4], dirs)
    assert best_of_front(pts, [0, 1, 2, 4], dirs) == 1          # best accuracy, earlier trial
    assert pareto_front([(3,), (1,), (2,)], ["minimize"]) == [1]


# ---- searches ----

def test_a_search_rejects_without_training_and_writes_its_outputs(tmp_path, capsys):
    p = write(tmp_path)
    out = tmp_path / "s"
    rc, text, err = search(capsys, p, "--trials", 8, "--sampler", "random", "--seed", 3,
                           "--objective", "val_accuracy,params", "-o", out)
    assert rc == 0, err
    r = results(out)
    rows = r["trials"]
    numbers = [t["number"] for t in rows]
    assert len(rows) == 8 and numbers == sorted(set(numbers))
    for t in rows:
        want = mlp_params(t["values"]["width"], t["values"]["depth"])
        assert t["measured"]["params"] == want
        folder = out / "trials" / f"{t['number']:04d}"
        if want > 12_000:
            assert t["state"] == "rejected" and "breaks `params <= 12,000`" in t["reason"]
            assert not folder.exists() and t["run"] is None
        else:
            assert t["state"] == "trained", t
            assert (folder / "metrics.jsonl").exists() and t["run"] == f"trials/{folder.name}"
            assert 0.0 < t["objectives"]["val_accuracy"] <= 1.0
            assert t["objectives"]["params"] == want
    rejected = [t for t in rows if t["state"] == "rejected"]
    assert rejected and r["counts"]["rejected"] == len(rejected)
    # optuna was told: rejected trials are pruned, trained ones complete with their values
    import optuna
    study = optuna.load_study(study_name="mlp", storage=f"sqlite:///{out / 'study.db'}")
    states = {t.number: t.state.name for t in study.get_trials()}
    assert {states[t["number"]] for t in rejected} == {"PRUNED"}
    assert {states[t["number"]] for t in rows if t["state"] == "trained"} == {"COMPLETE"}
    assert f"{len(rejected)} rejected by the limits (not trained)" in text
    # every trial is a row of the table, the front marked
    cells = {}
    for line in text.splitlines():
        if line.startswith("│"):
            first = line.split("│")[1].strip()
            cells[int(first.split()[0])] = first.endswith("*")
    # each configuration once
    assert len({tuple(t["values"].values()) for t in rows}) == len(rows)
    # the front by hand, over the trained trials
    trained = [t for t in rows if t["state"] == "trained"]
    front = []
    for a in trained:
        acc, n = a["objectives"]["val_accuracy"], a["objectives"]["params"]
        beaten = False
        for b in trained:
            acc2, n2 = b["objectives"]["val_accuracy"], b["objectives"]["params"]
            if acc2 >= acc and n2 <= n and (acc2 > acc or n2 < n):
                beaten = True
        if not beaten:
            front.append(a["number"])
    assert r["pareto"] == front and front
    assert cells == {t["number"]: t["number"] in front for t in rows}
    best = r["best"]
    top = max(a["objectives"]["val_accuracy"] for a in trained if a["number"] in front)
    assert best["objectives"]["val_accuracy"] == top and best["number"] in front
    # best.nn: the chosen values in place of the space, and it compiles as is
    best_nn = (out / "best.nn").read_text(encoding="utf-8")
    assert "choice(" not in best_nn and "range(" not in best_nn
    v = best["values"]
    assert f'width: int = {v["width"]}, depth: int = {v["depth"]}' in best_nn
    assert f'act: str = "{v["act"]}"' in best_nn
    c = nndsl.compile(out / "best.nn")
    assert c.param_count() == best["measured"]["params"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --json on the finished study: runs nothing more, prints the same results
    rc, text, _ = search(capsys, p, "--trials", 8, "--sampler", "random", "--seed", 3,
                         "--objective", "val_accuracy,params", "-o", out, "--json")
    assert rc == 0 and json.loads(text)["trials"] == rows


def test_resume_runs_only_the_rest(tmp_path, capsys):
    p = write(tmp_path)
    out = tmp_path / "s"
    args = ("--objective", "params", "--sampler", "random", "-o", out, "--quiet")
    assert search(capsys, p, "--trials", 3, *args)[0] == 0
    first = results(out)["trials"]
    assert len(first) == 3
    assert search(capsys, p, "--trials", 5, *args)[0] == 0
    rows = results(out)["trials"]
    assert len(rows) == 5 and rows[:3] == first
    # the same study with another objective is refused, not mixed
    rc, _, err = search(capsys, p, "--trials", 6, "--objective", "flops", "-o", out)
    assert rc == 1 and "error[E1523]" in err and "its objectives differ" in err


def test_a_space_smaller_than_the_trials_is_tried_whole_once(tmp_path, capsys):
    out = tmp_path / "s"
    rc, text, err = search(capsys, write(tmp_path), "--trials", 30, "--objective", "params",
                           "-o", out)
    assert rc == 0, err
    r = results(out)
    configs = {(t["values"]["width"], t["values"]["depth"], t["values"]["act"]) for t in r["trials"]}
    assert len(r["trials"]) == len(configs) == 12
    assert r["stopped"] == "all 12 configurations of the space are tried"
    assert "stopped early: all 12 configurations" in text
    # the single objective's best: the fewest parameters within the limit
    assert (r["best"]["values"]["width"], r["best"]["values"]["depth"]) == (16, 1)
    assert r["best"]["objectives"]["params"] == mlp_params(16, 1)


def test_a_configuration_that_does_not_compile_is_a_failed_trial(tmp_path, capsys):
    p = write(tmp_path, SPEC.replace("range(1, 3)", "range(1, 4)").replace(
        "    h = x\n", '    h = x\n    assert depth < 3, "at most two layers"\n'))
    out = tmp_path / "s"
    rc, text, err = search(capsys, p, "--trials", 20, "--objective", "params", "-o", out)
    assert rc == 0, err
    rows = results(out)["trials"]
    failed = [t for t in rows if t["state"] == "failed"]
    assert {t["values"]["depth"] for t in failed} == {3} and len(failed) == 6
    assert all("error[E0400]" in t["reason"] and "at most two layers" in t["reason"]
               for t in failed)
    assert all(t["values"]["depth"] < 3 for t in rows if t["state"] != "failed")
    assert "6 failed" in text


def test_a_choice_of_lists_and_floats_is_written_back_as_spec_text(tmp_path, capsys):
    text = ("model m(hidden: list = choice([32], [32, 16], [8, 8, 8]),\n"
            "        p: float = choice(0, 0.25)) {\n"
            "    input x: f32[N, 64]\n    h = x\n"
            "    for w in hidden {\n        h = h |> linear(w) |> relu |> dropout(p)\n    }\n"
            "    output logits = h |> linear(10)\n}\n")
    c = nndsl.compile(source=text)
    assert c.param_count() == 64 * 32 + 32 + 32 * 10 + 10     # the first list, p = 0.0
    p = write(tmp_path, text, "lists.nn")
    rc, _, err = search(capsys, p, "--trials", 6, "--objective", "params", "-o", tmp_path / "s")
    assert rc == 0, err
    r = results(tmp_path / "s")
    assert sorted(map(str, (t["values"]["hidden"] for t in r["trials"]))) == sorted(
        map(str, [[32], [32], [32, 16], [32, 16], [8, 8, 8], [8, 8, 8]]))
    assert {t["values"]["p"] for t in r["trials"]} == {0.0, 0.25}
    assert r["best"]["values"]["hidden"] == [8, 8, 8]
    best = (tmp_path / "s" / "best.nn").read_text(encoding="utf-8")
    assert re.search(r"hidden: list = \[8, 8, 8\],\n        p: float = (0\.0|0\.25)\)", best)
    assert nndsl.compile(tmp_path / "s" / "best.nn").param_count() == r["best"]["objectives"]["params"]


def test_an_interrupted_trial_is_not_counted_and_runs_again(tmp_path, capsys, monkeypatch):
    import nndsl.train.run as train_run
    real, calls = train_run.run_training, []

    def interrupted_second(*a, **k):
        calls.append(k["out"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(train_run, "run_training", interrupted_second)
    p = write(tmp_path)
    out = tmp_path / "s"
    args = ("--trials", 3, "--objective", "val_accuracy", "--sampler", "random", "-o", out)
    rc, _, err = search(capsys, p, *args)
    assert rc == 130 and "interrupted" in err and len(calls) == 2
    monkeypatch.setattr(train_run, "run_training", real)
    rc, text, err = search(capsys, p, *args)
    assert rc == 0, err
    r = results(out)
    assert r["counts"]["trials"] == 3 and r["counts"]["trained"] + r["counts"]["rejected"] == 3
    assert [t["state"] for t in r["trials"]].count("interrupted") == 1
    assert "1 interrupted (not counted, run again)" in text


def _sampled(capsys, p, out, seed, sampler):
    rc, _, err = search(capsys, p, "--trials", 6, "--objective", "params,flops", "--sampler",
                        sampler, "--seed", seed, "-o", out, "--quiet")
    assert rc == 0, err
    return [t["values"] for t in results(out)["trials"]]


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_the_sampled_values_depend_on_the_seed_only(tmp_path, capsys, sampler):
    p = write(tmp_path, SPEC.replace("choice(16, 32, 256)", "choice(" + ", ".join(
        str(8 * k) for k in range(1, 17)) + ")").replace("range(1, 3)", "range(1, 9)")
        .replace("params <= 12_000", "params <= 1e9"))
    a = _sampled(capsys, p, tmp_path / "a", 5, sampler)
    b = _sampled(capsys, p, tmp_path / "b", 5, sampler)
    c = _sampled(capsys, p, tmp_path / "c", 6, sampler)
    assert a == b and a != c


def test_two_workers_share_one_study(tmp_path, capsys):
    p = write(tmp_path)
    out = tmp_path / "s"
    db = tmp_path / "shared.db"
    cmd = [sys.executable, "-m", "nndsl", "search", str(p), "--trials", "7", "--objective",
           "val_accuracy", "--epochs", "1", "--storage", str(db), "-o", str(out), "--worker"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [pr.communicate(timeout=240) for pr in procs]
    assert all(pr.returncode == 0 for pr in procs), outs
    ran = [int(o.split("worker: ran ")[1].split()[0]) for o, _ in outs]
    assert sum(ran) == 7
    # the report: no trial more, none twice
    rc, _, err = search(capsys, p, "--trials", 7, "--objective", "val_accuracy", "--storage", db,
                        "-o", out, "--quiet")
    assert rc == 0, err
    rows = results(out)["trials"]
    assert len(rows) == 7 and len({t["number"] for t in rows}) == 7
    assert all(t["state"] in ("trained", "rejected") for t in rows)
    assert len({tuple(t["values"].values()) for t in rows}) == 7   # none trained twice
    runs = [t["run"] for t in rows if t["run"] is not None]
    assert len(runs) == len(set(runs))
    assert sorted(d.name for d in (out / "trials").iterdir()) == sorted(
        Path(r).name for r in runs)


def test_the_language_server_lists_the_section_and_reports_its_mistakes():
    from nndsl.editor.lsp.analysis import analyze
    text = (ROOT / "examples" / "search_mlp.nn").read_text(encoding="utf-8")
    a = analyze(text, str(ROOT / "examples" / "search_mlp.nn"))
    assert a.diagnostics == []
    assert ("search mlp", "search") in [(s.name, s.kind) for s in a.symbols()]
    bad = analyze(text.replace("params <= 50_000", "parms <= 3"),
                  str(ROOT / "examples" / "search_mlp.nn"))
    assert [(d.code, d.span.line) for d in bad.diagnostics] == [("E1510", 19)]
