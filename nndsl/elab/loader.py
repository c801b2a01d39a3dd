"""Load a program: the main file plus everything it imports, transitively.

``import "other.nn"`` is resolved relative to the importing file; ``import std.NAME`` loads
``nndsl/stdlib/NAME.nn`` from the installed package. All definitions share one namespace; a name
defined twice is an error that points at both definitions.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import DefinitionError, SourceFileError, TrainError
from nndsl.syntax import ast, parse, read_source


@dataclass
class Program:
    main: ast.Module
    definitions: dict = field(default_factory=dict)  # name -> ast.Definition
    trains: list = field(default_factory=list)  # ast.TrainDef of the main file, then of imports

    @property
    def models(self) -> list[str]:
        """The main file's models; a file that only trains models (its `train` sections name
        models it imports) stands for those models."""
        own = [d.name for d in self.main.definitions if d.kind == "model"]
        if own:
            return own
        return list(dict.fromkeys(t.model for t in self.main.trains))

    def params_for(self, model: str, given: dict) -> dict:
        """Of parameter values given for a file of several models (a GAN's generator and
        discriminator), those ``model`` declares. A name no model of the file declares is an
        error; with one model, compiling reports an unknown name where it is declared."""
        models = self.models
        if not given or len(models) < 2:
            return dict(given)
        declared = {m: {q.name for q in self.definitions[m].params} for m in models
                    if m in self.definitions}
        known = set().union(*declared.values())
        for k in given:
            if k not in known:
                from nndsl.errors import ArgumentError
                close = difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.6)
                raise ArgumentError(f"no model of the file has a parameter `{k}`", code="E0213",
                                    hint=(f"did you mean `{close[0]}`? " if close else "")
                                    + "parameters: " + ", ".join(sorted(known)))
        return {k: v for k, v in given.items() if k in declared.get(model, ())}

    def optimize_section(self, model: str):
        """The main file's `optimize` section for ``model``, if it has one."""
        for o in self.main.optimizes:
            if o.model == model:
                return o
        return None

    def train_section(self, model: str):
        """The `train` section for ``model``: the main file's, else the first imported one."""
        for t in self.trains:
            if t.model == model:
                return t
        return None


def std_source(name: str) -> str | None:
    try:
        res = importlib.resources.files("nndsl.stdlib").joinpath(f"{name}.nn")
        return res.read_text("utf-8") if res.is_file() else None
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def std_modules() -> list[str]:
    root = importlib.resources.files("nndsl.stdlib")
    return sorted(p.name[:-3] for p in root.iterdir() if p.name.endswith(".nn"))


@functools.lru_cache(maxsize=None)
def _parse_std(name: str, text: str) -> ast.Module:
    """Standard-library modules are package files: parse each once per process (ASTs are
    immutable, so sharing them is safe)."""
    return parse(text, f"std/{name}.nn")


def load_program(text: str, file: str) -> Program:
    main = parse(text, file)
    prog = Program(main)
    _load(prog, main, [file], seen=set())
    _check_trains(prog)
    return prog


def _load(prog: Program, module: ast.Module, stack: list[str], seen: set[str]) -> None:
    for imp in module.imports:
        if imp.is_file:
            base = Path(module.file).parent if not module.file.startswith("<") else Path(".")
            # identity: the resolved path; in messages: the path as the user would write it
            shown = os.path.normpath(base / imp.target)
            path = str((base / imp.target).resolve())
            if path in stack:
                chain = " -> ".join(Path(p).name for p in stack[stack.index(path):] + [path])
                raise DefinitionError(f"import cycle: {chain}", span=imp.span, code="E0503",
                                      hint="move the shared definitions into a third file")
            if path in seen:
                continue
            try:
                text = read_source(shown)
            except SourceFileError as e:
                hint = e.hint
                if e.code == "E0001":
                    hint = (f"an import path is relative to the importing file's folder "
                            f"({os.path.normpath(base)}{os.sep})")
                raise SourceFileError(f"cannot import \"{imp.target}\": {e.message}", span=imp.span,
                                      code="E0504", hint=hint) from None
            sub = parse(text, shown)
        else:
            parts = imp.target.split(".")
            if parts[0] != "std" or len(parts) != 2:
                raise SourceFileError(f"cannot import `{imp.target}`", span=imp.span,
                                      code="E0504", hint='write `import std.NAME` for the '
                                      'standard library or `import "path/file.nn"` for a file')
            name = parts[1]
            key = f"<std.{name}>"
            if key in stack:
                raise DefinitionError(f"import cycle through std.{name}", span=imp.span,
                                      code="E0503")
            if key in seen:
                continue
            text = std_source(name)
            if text is None:
                close = difflib.get_close_matches(name, std_modules(), n=1, cutoff=0.6)
                raise SourceFileError(f"no standard library module `std.{name}`",
                                      span=imp.span, code="E0504",
                                      hint=f"did you mean `std.{close[0]}`?" if close else
                                      "available: " + ", ".join(f"std.{m}"
                                                                for m in std_modules()))
            path = key
            sub = _parse_std(name, text)
        seen.add(path)
        _load(prog, sub, stack + [path], seen)
        _add_defs(prog, sub)
        prog.trains.extend(sub.trains)
    if len(stack) == 1:
        _add_defs(prog, module)
        prog.trains[:0] = module.trains


def _add_defs(prog: Program, module: ast.Module) -> None:
    for d in module.definitions:
        old = prog.definitions.get(d.name)
        if old is not None and old is not d:
            raise DefinitionError(f"`{d.name}` is defined twice", span=d.name_span, code="E0501",
                                  notes=[("first defined here", old.name_span)],
                                  hint="rename one of the definitions")
        prog.definitions[d.name] = d


def _check_trains(prog: Program) -> None:
    """Every `train` section names a model; one file trains a model at most once."""
    models = [n for n, d in prog.definitions.items() if d.kind == "model"]
    owners: dict[tuple, ast.TrainDef] = {}
    for t in prog.trains:
        d = prog.definitions.get(t.model)
        if d is None or d.kind != "model":
            close = difflib.get_close_matches(t.model, models, n=1, cutoff=0.6)
            what = "a block, not a model" if d is not None else "not defined"
            raise TrainError(f"the train section names model `{t.model}`, which is {what}",
                             span=t.name_span, code="E1209",
                             hint=(f"did you mean `{close[0]}`?" if close else
                                   ("models here: " + ", ".join(models) if models else
                                    "define the model here, or import the file that defines it")))
        key = (t.span.file, t.model)
        if key in owners:
            raise TrainError(f"`{t.model}` has two train sections in one file", span=t.name_span,
                             code="E1212", notes=[("the first one is here",
                                                   owners[key].name_span)],
                             hint="merge them into one section")
        owners[key] = t
