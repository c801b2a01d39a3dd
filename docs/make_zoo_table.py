"""Write docs/zoo.md, the table of every model in ``specs/``, from the specs themselves.

    python docs/make_zoo_table.py            # (re)write docs/zoo.md
    python docs/make_zoo_table.py --check    # exit 1 and print a diff if docs/zoo.md is stale

One row per model (a file may define several). Every value is computed, none typed by hand:

- lines of ``.nn``: the file's non-blank lines that are not only a comment;
- parameters: ``param_count()`` at the model's default params;
- FLOPs: ``flops(batch=1)`` at the default params; other symbolic dims take the values that
  ``example_inputs`` uses (``nndsl.ir.symbols.bind_symbols``), shown next to the count;
- reference: the published count of ``tests/sizes/*.py`` ``REFERENCE``, ✓ when it matches;
- ONNX: ``to_onnx`` of the model at its reduced test size (``tests/sizes/*.py`` ``SMALL``, the
  defaults where it has none) run by onnxruntime on ``example_inputs``, compared with torch;
- PyTorch lines: the hand-written equivalent in ``tests/reference_models.py``, for the specs that
  ``tests/test_reference.py`` pairs with one (its ``Case(...)`` list, read with ``ast``);
- generated lines: ``generate_source`` of the compiled model (what ``nndsl compile --to torch``
  writes), counted as the hand-written code is.

A spec that fails to compile or export gets its error code in its row instead of a crash.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import inspect
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nndsl  # noqa: E402
from nndsl.backends.torch.codegen import generate_source  # noqa: E402
from nndsl.elab import load_program  # noqa: E402
from nndsl.ir.symbols import batch_symbols, bind_symbols  # noqa: E402
from nndsl.syntax import read_source  # noqa: E402

SPECS_DIR = ROOT / "specs"
OUT = ROOT / "docs" / "zoo.md"
COMMAND = "python docs/make_zoo_table.py"
ONNX_BATCH = 2
RTOL, ATOL = 1e-4, 1e-5      # as tests/test_onnx.py: atol is relative to the output's scale
# members of a reference class that serve the tests (state-dict key mapping), not the model
TEST_ONLY_MEMBERS = {"from_nndsl_key", "tied", "_KEYS"}


# ---- reading the project ----

def spec_files() -> list[Path]:
    return sorted(SPECS_DIR.rglob("*.nn"))


def _exec_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod       # dataclasses and inspect look modules up by name
    spec.loader.exec_module(mod)
    return mod


def load_sizes() -> tuple[dict, dict]:
    """``SMALL`` and ``REFERENCE`` merged over ``tests/sizes/*.py`` (as ``tests/zoo.py`` does)."""
    small, reference = {}, {}
    for path in sorted((ROOT / "tests" / "sizes").glob("*.py")):
        if path.stem == "__init__":
            continue
        mod = _exec_file(path, f"zoo_table_sizes_{path.stem}")
        small.update(getattr(mod, "SMALL", {}))
        reference.update(getattr(mod, "REFERENCE", {}))
    return small, reference


def reference_classes() -> dict[str, type]:
    """Spec path relative to ``specs/`` -> hand-written class, from the ``Case(name, spec,
    R.Class, ...)`` calls of ``tests/test_reference.py``."""
    tests = ROOT / "tests"
    tree = ast.parse((tests / "test_reference.py").read_text(encoding="utf-8"))
    pairs = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "Case" and len(node.args) >= 3
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[2],
                                                                          ast.Attribute)):
            pairs[node.args[1].value] = node.args[2].attr
    if not pairs:
        return {}
    mod = _exec_file(tests / "reference_models.py", "zoo_table_reference_models")
    return {spec: getattr(mod, cls) for spec, cls in pairs.items() if hasattr(mod, cls)}


def nn_lines(text: str) -> int:
    """Non-blank lines that are not only a comment."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def description(text: str) -> str:
    """The file's first comment line, without the ``#``."""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip()
    return ""


def _code_lines(obj) -> int:
    """Source lines of a class or function: non-blank, not only a comment, outside docstrings
    and the members in ``TEST_ONLY_MEMBERS``."""
    return source_code_lines(textwrap.dedent(inspect.getsource(obj)))


def source_code_lines(source: str) -> int:
    """Lines of Python source as :func:`_code_lines` counts them (a whole file: its module
    docstring goes too)."""
    lines = source.splitlines()
    skip: set[int] = set()     # 1-based line numbers within ``lines``
    tree = ast.parse(source)

    def drop(node):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        skip.update(range(first, node.end_lineno + 1))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and body:
            first = body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                drop(first)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                names = ({member.name} if isinstance(member, (ast.FunctionDef,
                                                              ast.AsyncFunctionDef))
                         else {t.id for t in getattr(member, "targets", [])
                               if isinstance(t, ast.Name)})
                if names & TEST_ONLY_MEMBERS:
                    drop(member)
    return sum(1 for i, line in enumerate(lines, 1)
               if i not in skip and line.strip() and not line.strip().startswith("#"))


def _names_used(node: ast.AST):
    """Names read by the code under ``node``, type annotations left out (a ResNet constructor
    annotated with both block kinds builds only one of them)."""
    if isinstance(node, ast.Name):
        yield node.id
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns"):
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield from _names_used(child)


def _dependencies(cls) -> list:
    """``cls`` and the classes and functions of its own module that it needs (bases, blocks,
    helpers), transitively, in source order."""
    mod = sys.modules[cls.__module__]
    local = {name: obj for name, obj in vars(mod).items()
             if (inspect.isclass(obj) or inspect.isfunction(obj))
             and getattr(obj, "__module__", None) == mod.__name__}
    seen, todo = {}, [cls]
    while todo:
        obj = todo.pop()
        if obj.__name__ in seen:
            continue
        seen[obj.__name__] = obj
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        for name in _names_used(tree):
            if name in local:
                todo.append(local[name])
        if inspect.isclass(obj):
            todo.extend(b for b in obj.__mro__[1:] if b.__name__ in local
                        and local[b.__name__] is b)
    return sorted(seen.values(), key=lambda o: inspect.getsourcelines(o)[1])


def torch_lines(cls) -> int:
    return sum(_code_lines(o) for o in _dependencies(cls))


# ---- one row per model ----

@dataclass
class Row:
    spec: str                   # path relative to the repository, posix
    family: str
    model: str                  # the model's name ("" when the file could not be read)
    description: str
    nn_lines: int
    models_in_file: int
    params: int | None = None
    flops: int | None = None
    dims: dict = field(default_factory=dict)     # symbolic dims other than the batch
    reference: int | None = None
    onnx: str = ""              # "ok", or why not
    onnx_reduced: bool = False  # checked at the SMALL size
    torch_lines: int | None = None
    torch_class: str = ""
    generated_lines: int | None = None  # nndsl compile --to torch's model.py
    error: str = ""             # compile error: "E0305: message"

    @property
    def reference_ok(self) -> bool | None:
        if self.reference is None or self.params is None:
            return None
        return self.reference == self.params


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _error(e: BaseException) -> str:
    if isinstance(e, nndsl.NndslError):
        text = f"{e.code}: {e.message}"
    else:
        text = f"{type(e).__name__}: {e}"
    text = text.replace(str(ROOT) + "/", "").splitlines()[0] if text else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def check_onnx(c: nndsl.Compiled) -> str:
    """"ok" when onnxruntime's outputs match torch's on example inputs, else the reason."""
    import numpy as np
    import onnxruntime as ort
    import torch

    try:
        m = c.to_torch(seed=0).eval()
        model = c.to_onnx(weights=m.state_dict())
    except Exception as e:       # noqa: BLE001 - reported in the row
        return "export failed: " + _error(e)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        xs = c.example_inputs(batch=ONNX_BATCH)
        with torch.no_grad():
            want = m(**xs)
        want = want if isinstance(want, tuple) else (want,)
        got = sess.run(None, {k: v.numpy() for k, v in xs.items()})
    except Exception as e:       # noqa: BLE001
        return "run failed: " + _error(e)
    for name, g, w in zip(c.output_names, got, want):
        w = w.numpy()
        scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
        if g.shape != w.shape or not np.allclose(g, w, rtol=RTOL, atol=ATOL * scale):
            return f"output `{name}` differs from torch"
    return "ok"


def model_rows(path: Path, small: dict, reference: dict, refs: dict,
               onnx: bool = True) -> list[Row]:
    """The rows of one spec file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    rel = _relative(path)
    try:
        family = path.resolve().relative_to(SPECS_DIR).parts[0]
    except ValueError:
        family = path.parent.name
    base = dict(spec=rel, family=family, description=description(text), nn_lines=nn_lines(text))
    try:
        models = list(load_program(read_source(str(path)), str(path)).models)
    except Exception as e:       # noqa: BLE001
        return [Row(model="", models_in_file=0, error=_error(e), **base)]
    if not models:
        return [Row(model="", models_in_file=0, error="E0510: the file defines no model", **base)]
    try:
        spec_key = path.resolve().relative_to(SPECS_DIR).as_posix()
    except ValueError:
        spec_key = ""
    ref_cls = refs.get(spec_key) if len(models) == 1 else None
    rows = []
    for name in models:
        key = path.stem if len(models) == 1 else f"{path.stem}:{name}"
        row = Row(model=name, models_in_file=len(models), reference=reference.get(key), **base)
        if ref_cls is not None:
            row.torch_class, row.torch_lines = ref_cls.__name__, torch_lines(ref_cls)
        rows.append(row)
        try:
            c = nndsl.compile(path, model=name)
            row.params = c.param_count()
            row.flops = c.flops(batch=1)
            batch = set(batch_symbols(c.graph))
            row.dims = {k: v for k, v in bind_symbols(c.graph, 1).items() if k not in batch}
        except Exception as e:   # noqa: BLE001
            row.error = _error(e)
            continue
        try:
            row.generated_lines = source_code_lines(generate_source(c.graph))
        except Exception:        # noqa: BLE001
            row.generated_lines = None
        if onnx:
            sizes = small.get(key)
            row.onnx_reduced = bool(sizes)
            try:
                cs = nndsl.compile(path, model=name, params=dict(sizes)) if sizes else c
            except Exception as e:   # noqa: BLE001
                row.onnx = "reduced size failed: " + _error(e)
                continue
            row.onnx = check_onnx(cs)
    return rows


def build_rows(paths=None, onnx: bool = True, progress=None) -> list[Row]:
    """Rows for ``paths`` (every spec under ``specs/`` by default), sorted by family, then spec
    path, then the order of the models in their file. ``progress(path)`` is called per file."""
    import torch
    torch.set_num_threads(min(2, torch.get_num_threads()))
    small, reference = load_sizes()
    refs = reference_classes()
    paths = spec_files() if paths is None else [Path(p) for p in paths]
    rows = []
    for p in paths:
        if progress is not None:
            progress(p)
        rows.extend(model_rows(p, small, reference, refs, onnx=onnx))
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted(rows, key=lambda r: (r.family, r.spec, order[id(r)]))


# ---- Markdown ----

def _cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _n(x: int) -> str:
    return f"{x:,}"


def _onnx_cell(r: Row) -> str:
    if r.error or not r.onnx:
        return ""
    if r.onnx == "ok":
        return "ONNX ✓" + (" (reduced)" if r.onnx_reduced else "")
    return "✗ " + _cell(r.onnx)


def render(rows: list[Row]) -> str:
    specs = sorted({r.spec for r in rows})
    families = sorted({r.family for r in rows})
    models = [r for r in rows if r.model]
    errors = [r for r in rows if r.error]
    onnx_ok = [r for r in rows if r.onnx == "ok"]
    onnx_bad = [r for r in rows if r.onnx and r.onnx != "ok"]
    refs = [r for r in rows if r.reference is not None]
    refs_ok = [r for r in refs if r.reference_ok]
    with_torch = [r for r in rows if r.torch_lines is not None]

    out = [
        "# The zoo",
        "",
        f"Generated from the specs by `{COMMAND}` — do not edit by hand; run it again after "
        "adding or changing a spec (`--check` tells whether this file is up to date).",
        "",
        f"**{len(specs)} specs, {len(models)} models** in {len(families)} families (models: "
        + ", ".join(f"{f} {sum(1 for r in rows if r.family == f)}" for f in families) + "). "
        f"Published parameter counts matched: {len(refs_ok)} of {len(refs)}. "
        f"ONNX export matches torch: {len(onnx_ok)} of {len(models)}"
        + (f" ({len(onnx_bad)} failing)" if onnx_bad else "") + ". "
        f"Hand-written PyTorch equivalents: {len(with_torch)}."
        + (f" **{len(errors)} failed to compile.**" if errors else ""),
        "",
        "| family | spec | model | description | `.nn` lines | PyTorch lines | parameters "
        "| reference | FLOPs (batch 1) | ONNX | generated lines |",
        "|---|---|---|---|--:|--:|--:|--:|--:|---|--:|",
    ]
    for r in rows:
        lines = _n(r.nn_lines) + (f" (file of {r.models_in_file} models)"
                                  if r.models_in_file > 1 else "")
        if r.error:
            params, flops = f"error {_cell(r.error)}", ""
        else:
            params = _n(r.params)
            flops = _n(r.flops) + (" (" + ", ".join(f"{k}={v}" for k, v in r.dims.items()) + ")"
                                   if r.dims else "")
        ref = "" if r.reference is None else _n(r.reference) + (
            " ✓" if r.reference_ok else " ✗" if r.reference_ok is False else "")
        torch_cell = "" if r.torch_lines is None else f"{r.torch_lines} (`{r.torch_class}`)"
        out.append("| " + " | ".join([
            r.family, f"[`{r.spec}`](../{r.spec})", f"`{r.model}`" if r.model else "",
            _cell(r.description), lines, torch_cell, params, ref, flops, _onnx_cell(r),
            "" if r.generated_lines is None else _n(r.generated_lines),
        ]) + " |")
    out += [
        "",
        "Notes:",
        "",
        "- **description**: the spec file's first comment line.",
        "- **`.nn` lines**: non-blank lines of the spec file that are not only a comment; a file "
        "that defines several models is counted once, as a whole, and says so. Blocks imported "
        "from the standard library (`import std.NAME`, `nndsl/stdlib/`) are not counted.",
        "- **PyTorch lines**: the hand-written equivalent in `tests/reference_models.py` that "
        "`tests/test_reference.py` checks the spec against: the class and the classes and "
        "functions of that file it uses (base classes, blocks, helpers), counted from "
        "`inspect.getsource` as non-blank lines that are not only a comment, without docstrings "
        "and without the state-dict key mapping used by the tests (`from_nndsl_key`, `tied`, "
        "`_KEYS`). Empty where the project has no hand-written equivalent.",
        "- **parameters**: `param_count()` at the spec's default params (unique trainable "
        "parameters; tied weights once, buffers excluded).",
        "- **reference**: the published count from `tests/sizes/*.py` (`REFERENCE`); ✓ when "
        "**parameters** equals it.",
        "- **FLOPs**: `flops(batch=1)` at the default params (a multiply-add counts 2). Symbolic "
        "dims other than the batch take the sizes `example_inputs` would use "
        "(`nndsl.ir.symbols.bind_symbols`), shown in parentheses.",
        f"- **ONNX**: ✓ when the model exports with `to_onnx` and onnxruntime's outputs match "
        f"torch's on `example_inputs(batch={ONNX_BATCH})` (rtol {RTOL:g}, atol {ATOL:g} × the "
        "output's scale). To keep generation fast and light this is done at the reduced test "
        "size of `tests/sizes/*.py` (`SMALL`) where one exists — marked *(reduced)* — and at the "
        "defaults otherwise; parameters and FLOPs are always at the defaults.",
        "- **generated lines**: the `model.py` that `nndsl compile SPEC --to torch` writes for "
        "the model at its default params, counted as **PyTorch lines** are (the whole file: imports, "
        "helpers, block classes and the model class; no docstrings).",
        "",
    ]
    return "\n".join(out)


# ---- command line ----

def _progress_reporter():
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:       # rich is optional here
        return None, lambda p: print(f"  {_relative(p)}", file=sys.stderr)
    prog = Progress(console=Console(stderr=True), transient=True)
    task = prog.add_task("specs", total=len(spec_files()))
    state = {"started": False}

    def step(p: Path):
        if state["started"]:
            prog.advance(task)
        state["started"] = True
        prog.update(task, description=_relative(p))
    return prog, step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/zoo.md from the specs.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 with a diff if docs/zoo.md is out of date")
    ap.add_argument("-o", "--output", type=Path, default=OUT, help="where to write (docs/zoo.md)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    prog, step = _progress_reporter()
    if prog is not None:
        with prog:
            rows = build_rows(progress=step)
    else:
        rows = build_rows(progress=step)
    text = render(rows)
    seconds = time.perf_counter() - t0
    for r in rows:
        if r.error:
            print(f"{r.spec} {r.model}: compile failed: {r.error}", file=sys.stderr)
        elif r.onnx != "ok":
            print(f"{r.spec} {r.model}: ONNX: {r.onnx}", file=sys.stderr)

    out: Path = args.output
    if args.check:
        old = out.read_text(encoding="utf-8") if out.exists() else ""
        if old == text:
            print(f"{_relative(out)} is up to date ({len(rows)} rows, {seconds:.1f} s)",
                  file=sys.stderr)
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"{_relative(out)} (committed)", tofile=f"{_relative(out)} (from the specs)"))
        print(f"{_relative(out)} is out of date: run `{COMMAND}`", file=sys.stderr)
        return 1
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {_relative(out)}: {len(rows)} rows in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
