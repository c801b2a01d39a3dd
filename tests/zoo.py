"""The zoo as test cases: one :class:`ZooModel` per model of every spec under ``specs/``.

A file may define several models (a GAN's generator and discriminator); each is its own case,
keyed ``stem:model``. Reduced sizes and reference counts come from ``tests/sizes/*.py``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nndsl
from nndsl.elab import load_program
from nndsl.syntax import read_source

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").rglob("*.nn"))


def _load_sizes() -> tuple[dict, dict]:
    small, reference = {}, {}
    for path in sorted((ROOT / "tests" / "sizes").glob("*.py")):
        if path.stem == "__init__":
            continue
        spec = importlib.util.spec_from_file_location(f"zoo_sizes_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for table, own in ((small, getattr(mod, "SMALL", {})),
                           (reference, getattr(mod, "REFERENCE", {}))):
            twice = set(table) & set(own)
            assert not twice, f"{path.name}: sizes given twice for {sorted(twice)}"
            table.update(own)
    return small, reference


SMALL, REFERENCE = _load_sizes()


@dataclass(frozen=True)
class ZooModel:
    path: Path
    model: str | None     # None: the file's only model

    @property
    def key(self) -> str:
        return self.path.stem if self.model is None else f"{self.path.stem}:{self.model}"

    @property
    def small(self) -> dict:
        return dict(SMALL.get(self.key, {}))

    def compile(self, small: bool = True, params: dict | None = None, **kw) -> nndsl.Compiled:
        p = {**(self.small if small else {}), **(params or {})}
        return nndsl.compile(self.path, model=self.model, params=p or None, **kw)


def _entries() -> list[ZooModel]:
    out = []
    for path in SPECS:
        models = list(load_program(read_source(str(path)), str(path)).models)
        if len(models) == 1:
            out.append(ZooModel(path, None))
        else:
            out.extend(ZooModel(path, m) for m in models)
    return out


ZOO = _entries()


def zoo_id(z: ZooModel) -> str:
    return z.key


def zoo(key: str) -> ZooModel:
    return next(z for z in ZOO if z.key == key)
