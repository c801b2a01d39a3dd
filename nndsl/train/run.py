"""``nndsl train``: compile the spec at O1, resolve its train section with the command line's
overrides, pick the run folder, and run the loop."""

from __future__ import annotations

import json
from pathlib import Path

from nndsl.errors import TrainError

# configuration keys that may differ between a run and its resumption
RUNTIME_KEYS = ("epochs", "device", "amp", "compile", "checkpoint", "cli", "data_stats", "samples",
                "world_size", "spec")


def default_out(name: str) -> Path:
    base = Path("runs") / name
    if not base.exists():
        return base
    k = 2
    while (base.parent / f"{name}-{k}").exists():
        k += 1
    return base.parent / f"{name}-{k}"


def _program(spec):
    from nndsl.api import _looks_like_path
    from nndsl.elab import load_program
    from nndsl.syntax import read_source
    if isinstance(spec, Path) or _looks_like_path(str(spec)):
        text, file = read_source(spec), str(spec)
    else:
        text, file = str(spec), "<string>"
    return load_program(text, file)


def _trained_model(spec_or_program) -> str | None:
    """In a file of several models, the one its train section names (if just one has one)."""
    program = spec_or_program if hasattr(spec_or_program, "main") else _program(spec_or_program)
    trained = list(dict.fromkeys(t.model for t in program.main.trains))
    if len(program.models) > 1 and len(trained) == 1:
        return trained[0]
    return None


def _split_params(program, model: str | None, params: dict) -> dict:
    """In a file of several models (a GAN's generator and discriminator), ``--param`` values
    may be for any of them: the trained model gets those it declares; the recipe passes the
    others on. A value no model declares is an error."""
    if not params or len(program.models) < 2 or model is None:
        return params
    declared = {d.name: {q.name for q in d.params} for d in program.main.definitions
                if d.kind == "model"}
    known = set().union(*declared.values())
    for k in params:
        if k not in known:
            raise TrainError(f"no model of the spec has a parameter `{k}`", code="E0213",
                             hint="parameters: " + ", ".join(sorted(known)))
    return {k: v for k, v in params.items() if k in declared.get(model, ())}


def run_training(spec, *, model: str | None = None, params: dict | None = None,
                 overrides: dict | None = None, out=None, resume=None, ddp: bool = False,
                 quiet: bool = False, hooks=()):
    """Train the model of ``spec`` (a path or source text); returns a ``RunResult``."""
    import nndsl
    from nndsl.train.config import resolve
    from nndsl.train.loop import train
    cli = {k: v for k, v in (overrides or {}).items() if v is not None and v is not False}
    if params:
        cli["params"] = dict(params)
    saved = None
    if resume is not None:
        rdir = Path(resume)
        conf = rdir / "config.json"
        if not conf.exists():
            raise TrainError(f"{rdir} is not a run folder (no config.json)", code="E1218",
                             hint="give --resume the --out folder of an earlier run")
        try:
            saved = json.loads(conf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise TrainError(f"cannot read {conf}: {e}", code="E1218") from None
        cli = {**saved.get("cli", {}), **cli}
        if out is not None and Path(out).resolve() != rdir.resolve():
            raise TrainError("--resume continues a run in its own folder; leave out --out",
                             code="E1218")
        out = rdir
    program = _program(spec)
    if model is None:
        model = _trained_model(program)
    given = dict(cli.get("params") or {})
    c = nndsl.compile(spec, model=model, params=_split_params(program, model, given) or None,
                      opt="O1")
    c.overrides = given       # the recipe's other models take the values they declare
    if resume is not None and saved is not None and saved.get("model") != c.name:
        raise TrainError(f"{out} is a run of `{saved.get('model')}`, not `{c.name}`",
                         code="E1218", hint="pick the model with --model")
    cfg = resolve(c, c.train_section, cli)
    if resume is None:
        out = Path(out) if out is not None else default_out(c.name)
        if (out / "checkpoints").exists() or (out / "metrics.jsonl").exists():
            raise TrainError(f"{out} already holds a run", code="E1218",
                             hint=f"continue it with --resume {out}, or choose another --out")
    result_notes = []
    if saved is not None:
        now = cfg.to_json()
        changed = [k for k in now if k not in RUNTIME_KEYS and now.get(k) != saved.get(k)]
        if changed:
            result_notes.append("the configuration differs from the run's config.json in: "
                                + ", ".join(changed) + " (the current one is used)")
    if not quiet:
        for n in result_notes:
            print(f"note: {n}")
    return train(c, cfg, Path(out), resume=resume is not None, ddp=ddp, quiet=quiet,
                 hooks=hooks, extra_config={"cli": cli})
