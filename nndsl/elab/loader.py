"""Load a program: the main file plus everything it imports, transitively.

``import "other.nn"`` is resolved relative to the importing file, then against each library
folder (``--lib DIR``, ``lib=``); ``import std.NAME`` loads ``nndsl/stdlib/NAME.nn`` from the
installed package. All definitions share one namespace; a name defined twice is an error that
points at both definitions.

Containment (docs/LANGUAGE.md, "Imports and files"): an imported file must be a regular file
named ``*.nn`` that lies, once symbolic links are resolved, inside the main spec's folder tree
or a library folder's. Nothing else is opened, so an import cannot read ``/etc/passwd``, block
on a FIFO or stream ``/dev/zero``. Chains of imports are at most :data:`MAX_IMPORT_DEPTH` deep,
and a program reads at most :data:`MAX_IMPORTED_FILES` files and twice the size limit of
one file in all.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import DefinitionError, LimitError, NndslError, SourceFileError, TrainError
from nndsl.syntax import ast, parse, read_source
from nndsl.syntax.parser import SPEC_SUFFIX, max_source_bytes

MAX_IMPORT_DEPTH = 64      # files importing files importing files...
MAX_IMPORTED_FILES = 1000  # distinct files one program reads


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


@dataclass
class _Reading:
    """What a program may read, and what it has read so far."""

    base: Path          # the main spec's folder (the working folder for source text)
    roots: list         # resolved folders imports may read: the main spec's, then the libraries
    lib: list           # the library folders as given, searched for relative imports
    files: int = 0
    size: int = 0


def library_folders(lib) -> list[Path]:
    """The library folders, checked: each must be an existing folder."""
    out = []
    for d in lib or ():
        p = Path(d)
        if not p.is_dir():
            raise SourceFileError(f"library folder {d} " + ("is not a folder" if p.exists() else
                                                             "does not exist"), code="E0007",
                                  hint="--lib (lib=) names a folder that imports may read from")
        out.append(p)
    return out


def load_program(text: str, file: str, *, lib=(), base: str | Path | None = None) -> Program:
    """Parse ``text`` (the main file, named ``file``) and everything it imports. ``base`` is the
    folder a text that is not a file (``file`` like ``<string>``) imports from (default: the
    working folder); ``lib`` lists further folders imports may read from."""
    folder = Path(base) if base is not None else \
        (Path(".") if file.startswith("<") else Path(file).parent)
    libs = library_folders(lib)
    reading = _Reading(folder, [Path(os.path.realpath(d)) for d in [folder, *libs]], libs)
    main = parse(text, file)
    reading.size = len(text.encode("utf-8", "surrogatepass"))
    prog = Program(main)
    me = file if file.startswith("<") else os.path.realpath(file)
    _load(prog, main, [me], set(), reading)
    _check_trains(prog)
    return prog


def _inside(real: Path, roots: list[Path]) -> bool:
    return any(real == r or real.is_relative_to(r) for r in roots)


def _shown(p: Path) -> str:
    return os.path.normpath(p)


def _locate(imp: ast.Import, module: ast.Module, reading: _Reading) -> tuple[str, Path]:
    """The file an ``import "PATH"`` names: its path as shown in messages and its resolved path,
    checked against what the program may read."""
    target = imp.target
    name = Path(target).name
    if not name.endswith(SPEC_SUFFIX) or name == SPEC_SUFFIX:
        raise SourceFileError(f"cannot import \"{target}\": only .nn files can be imported",
                              span=imp.span, code="E0006",
                              hint='import a spec by its file name, e.g. `import "blocks.nn"`')
    base = reading.base if module.file.startswith("<") else Path(module.file).parent
    candidates = [base / target]
    if not Path(target).is_absolute():
        candidates += [d / target for d in reading.lib]
    found = next((c for c in candidates if os.path.lexists(c)), candidates[0])
    real = Path(os.path.realpath(found))
    if not _inside(real, reading.roots):
        linked = os.path.islink(found) or real != Path(os.path.abspath(found))
        where = f"it resolves to {real}, " if linked else ""
        folders = ", ".join(_shown(r) + os.sep for r in reading.roots)
        raise SourceFileError(f"cannot import \"{target}\": {where}outside the folders imports "
                              f"may read", span=imp.span, code="E0520",
                              notes=[(f"imports may read: {folders} (the main spec's folder"
                                      + (" and the library folders)" if reading.lib else ")"),
                                      None)],
                              hint=f"to import from {_shown(real.parent)}, add it as a library "
                                   f"folder: --lib {_shown(real.parent)} (nndsl.compile(..., "
                                   f"lib=[...]))")
    if not real.name.endswith(SPEC_SUFFIX):
        raise SourceFileError(f"cannot import \"{target}\": it links to {real.name}, which is "
                              f"not a .nn file", span=imp.span, code="E0006")
    return _shown(found), real


def _read_import(imp: ast.Import, module: ast.Module, shown: str, real: Path,
                 reading: _Reading) -> ast.Module:
    if reading.files >= MAX_IMPORTED_FILES:
        raise LimitError(f"the program imports more than {MAX_IMPORTED_FILES} files",
                         span=imp.span, code="E0614",
                         hint="a hand-written program imports a few files; check how these "
                              "imports are generated")
    try:
        text = read_source(real, name=shown)
        size = len(text.encode("utf-8", "surrogatepass"))
        total = 2 * max_source_bytes()
        if reading.size + size > total:
            raise LimitError(f"the program's files add up to more than {total:,} bytes "
                             f"(twice the limit of one file)", code="E0614",
                             hint="the environment variable NNDSL_MAX_SOURCE_BYTES raises the "
                                  "limit of one file, and this one with it")
        reading.files += 1
        reading.size += size
        return parse(text, shown)
    except NndslError as e:
        if e.span is not None:   # located in the imported file (bad UTF-8, a syntax error)
            e.notes.append(("imported here", imp.span))
            raise
        hint = e.hint
        message = e.message
        if e.code == "E0001" and "not found" in e.message:
            where = _shown(reading.base if module.file.startswith("<") else
                           Path(module.file).parent)
            hint = (f"an import path is relative to the importing file's folder "
                    f"({where}{os.sep})" + (" or to a library folder" if reading.lib else
                                            "; add a library folder with `--lib DIR`"))
        elif e.code == "E0104":
            message = f"{shown} is empty"
            hint = "an imported file defines blocks or models; write one, or remove the import"
        if e.code in ("E0001", "E0104"):   # a missing or empty file: the import cannot resolve
            raise type(e)(f"cannot import \"{imp.target}\": {message}", span=imp.span,
                          hint=hint, notes=e.notes, code="E0504") from None
        raise type(e)(f"cannot import \"{imp.target}\": {message}", span=imp.span, hint=hint,
                      notes=e.notes, code=e.code) from None


def _load(prog: Program, module: ast.Module, stack: list[str], seen: set[str],
          reading: _Reading) -> None:
    for imp in module.imports:
        if len(stack) > MAX_IMPORT_DEPTH:
            raise LimitError(f"imports nested more than {MAX_IMPORT_DEPTH} files deep",
                             span=imp.span, code="E0613",
                             hint="import the files from one place instead of through a chain")
        if imp.is_file:
            shown, real = _locate(imp, module, reading)
            path = str(real)   # identity: the resolved path; in messages: as the user wrote it
            if path in stack:
                chain = " -> ".join(Path(p).name for p in stack[stack.index(path):] + [path])
                raise DefinitionError(f"import cycle: {chain}", span=imp.span, code="E0503",
                                      hint="move the shared definitions into a third file")
            if path in seen:
                continue
            sub = _read_import(imp, module, shown, real, reading)
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
        _load(prog, sub, stack + [path], seen, reading)
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
