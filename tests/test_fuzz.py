"""The fuzzer, seeded and bounded (``tools/fuzz.py`` runs the same generators for longer).

- Mutants of every zoo spec and every standard-library module compile or fail with a located
  ``NndslError``, within a few seconds each; a sample also goes through ``nndsl check``
  in-process (exit 0 or 1, no traceback, the same verdict as the API) and a sample of those that
  compile is lowered to torch and run.
- Random valid models (hypothesis) agree between torch at O0 and O2 and onnxruntime at O0 and
  O2.
- Hostile paths (``/dev/null``, a folder, a missing file, braces in a path, a FIFO, and imports
  of each) fail cleanly, or compile where they should.
- The minimized reproducers of ``tests/fuzz_cases/`` pass every oracle.

Every case is fixed by its seed: a failure names the spec, the mutant's index and its bytes, so
``python tools/fuzz.py --replay FILE`` (after writing the bytes to FILE) reproduces it.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("nndsl_fuzz", ROOT / "tools" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nndsl_fuzz"] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _load_fuzz()

SEED = 20240607
MUTANTS_PER_SEED = 30     # about 2,100 mutants in all
CLI_EVERY = 6             # every 6th mutant also through `nndsl check`
LOWER_EVERY = 10          # every 10th that compiles is also run in torch
SEEDS = fuzz.seed_corpus()


def test_seed_corpus_covers_the_zoo_and_the_stdlib():
    names = {s.name for s in SEEDS}
    for p in fuzz.SPECS:
        assert p.relative_to(ROOT).as_posix() in names
    inlined = {n.split(" ")[0] for n in names if n.startswith("std/")}
    assert inlined == {f"std/{p.name}" for p in fuzz.STDLIB}, \
        "a standard-library module could not be inlined into any zoo spec"


def _mutants(seed):
    rng = random.Random(f"{SEED}:{seed.name}")
    for i in range(MUTANTS_PER_SEED):
        data, how = fuzz.mutate(seed, rng)
        yield i, data, how


@pytest.mark.parametrize("seed", SEEDS, ids=[s.name.split(" ")[0] for s in SEEDS])
def test_mutants(seed, tmp_path):
    failures = []
    for i, data, how in _mutants(seed):
        key = f"{seed.name}#{i}"
        if key in fuzz.KNOWN_OPEN:
            continue     # checked by test_known_open_cases_still_fail
        out = fuzz.check_mutant(data, tmp_path, cli=i % CLI_EVERY == 0,
                                lower=i % LOWER_EVERY == 0)
        if out.finding:
            failures.append(f"mutant {key} ({how}): {out.finding}\n    bytes: {data!r}")
    assert not failures, "\n".join(failures)


def test_mutations_change_the_text():
    rng = random.Random(SEED)
    seed = SEEDS[0]
    changed = sum(fuzz.mutate(seed, rng)[0] != seed.data for _ in range(200))
    assert changed > 180
    for kind, fn in fuzz.MUTATORS.items():
        outs = {fn(seed.data, rng, 0, None) for _ in range(20)}
        assert outs - {seed.data}, f"the {kind} mutation never changes anything"


def test_stdlib_mutations_stay_inside_the_module():
    rng = random.Random(SEED)
    seed = next(s for s in SEEDS if s.name.startswith("std/"))
    lo, hi = seed.mutable
    for _ in range(100):
        data, _ = fuzz.mutate(seed, rng)
        assert data[:lo] == seed.data[:lo]


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.randoms(use_true_random=False))
def test_random_models_agree_across_levels_and_backends(rng):
    text = fuzz.random_model(rng)
    problem = fuzz.model_problem(text)
    assert problem is None, f"{problem}\n{text}"


def test_random_models_cover_the_ops():
    rng = random.Random(SEED)
    texts = "\n".join(fuzz.random_model(rng) for _ in range(200))
    for op in ("linear(", "conv2d(", "relu", "gelu", "tanh", "layer_norm", "batch_norm",
               "softmax(", "reshape(", "flatten", "concat(", " + (", "max_pool2d",
               "global_avg_pool", "groups=", "output z"):
        assert op in texts, op


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return fuzz.hostile_paths(tmp_path_factory.mktemp("hostile"))


HOSTILE_NAMES = ["dev_null", "directory", "missing", "braces_in_path", "import_dev_null",
                 "import_directory", "import_missing", "import_braces", "import_self",
                 "import_empty_name", "import_nul", "fifo", "import_fifo"]


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n not in fuzz.KNOWN_OPEN])
def test_hostile_path(name, hostile):
    if name not in hostile:
        assert name in ("fifo", "import_fifo"), name   # no FIFOs on this system
        return
    assert fuzz.hostile_problem(name, hostile[name]) is None


def test_known_open_cases_still_fail(hostile, tmp_path):
    """Every entry of KNOWN_OPEN is a bug not fixed yet. Once one passes, take it out of the
    list (the tests above then cover it again), and keep its reproducer in tests/fuzz_cases/."""
    fixed = []
    by_key = {f"{s.name}#{i}": data for s in SEEDS for i, data, _ in _mutants(s)}
    for key, case in fuzz.KNOWN_OPEN.items():
        if key in HOSTILE_NAMES:
            if key in hostile and fuzz.hostile_problem(key, hostile[key]) is None:
                fixed.append(key)
            continue
        data = by_key.get(key, case if isinstance(case, bytes) else None)
        assert data is not None, f"KNOWN_OPEN entry {key} names no case"
        if fuzz.check_mutant(data, tmp_path, cli=True, lower=True).finding is None:
            fixed.append(key)
    assert not fixed, f"fixed, take them out of KNOWN_OPEN in tools/fuzz.py: {fixed}"


CASES = sorted((ROOT / "tests" / "fuzz_cases").glob("*.nn"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fuzz_case(path, tmp_path):
    out = fuzz.check_mutant(path.read_bytes(), tmp_path, cli=True, lower=True)
    assert out.finding is None, out.finding


def test_the_oracle_catches_what_it_should(tmp_path):
    """The oracle itself: an error without a location, or at a line the file does not have, is
    a finding; a clean located error and a compiled spec are not."""
    from nndsl.errors import ShapeError, Span
    path = tmp_path / "case.nn"
    data = b"model m() {\n    input x: f32[N, 4]\n    output y = x @ x\n}\n"
    path.write_bytes(data)
    assert fuzz.error_problem(ShapeError("bad", code="E0305"), path, data)
    far = Span(str(path), 99, 1, 99, 2)
    assert "line 99" in fuzz.error_problem(ShapeError("bad", far, code="E0305"), path, data)
    out = fuzz.check_mutant(data, tmp_path, cli=True)
    assert out.finding is None and out.code == "E0305"
    ok = b"model m() {\n    input x: f32[N, 4]\n    output y = x |> relu\n}\n"
    out = fuzz.check_mutant(ok, tmp_path, cli=True, lower=True)
    assert out.ok and out.finding is None
    with fuzz.time_guard(0.2):
        pass
    with pytest.raises(fuzz.CaseTimeout):
        with fuzz.time_guard(0.2):
            while True:
                pass


def test_minimize_keeps_the_failure():
    data = b"aaa\nbbb XYZ ccc\nddd\n"
    small = fuzz.minimize(data, lambda d: b"XYZ" in d, budget=5)
    assert small == b"XYZ"
