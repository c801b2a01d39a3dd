"""``nndsl train``: compile the spec at O1, resolve its train section with the command line's
overrides, pick the run folder, and run the loop."""

from __future__ import annotations

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


# the command line a run began with, as config.json keeps it: key -> what it must be
_CLI_TYPES = {"data": str, "epochs": int, "batch": int, "lr": (int, float), "seed": int,
              "device": str, "amp": bool, "compile": bool, "checkpoint": bool, "params": dict,
              "prune": str, "qat": str, "group": int}


def _saved_config(conf: Path) -> dict:
    """A run folder's config.json, checked as far as resuming reads it."""
    from nndsl.train.checkpoint import DAMAGED, read_json
    saved = read_json(conf, "the run's configuration", limit=64 << 20)

    def bad(where, what):
        return TrainError(f"{conf}: `{where}` {what}", code="E1218", hint=DAMAGED)
    if not isinstance(saved, dict):
        raise TrainError(f"{conf} must hold an object of configuration entries, not "
                         f"{type(saved).__name__}", code="E1218", hint=DAMAGED)
    if not isinstance(saved.get("model"), str):
        raise bad("model", "must be the name of the trained model")
    cli = saved.get("cli", {})
    if not isinstance(cli, dict):
        raise bad("cli", "must be an object (the command line's options)")
    for k, v in cli.items():
        want = _CLI_TYPES.get(k)
        if want is None:
            continue        # not read by training
        if isinstance(v, bool) and want is not bool or not isinstance(v, want):
            raise bad(f"cli.{k}", f"has the wrong type ({type(v).__name__})")
    for k, v in cli.get("params", {}).items():
        if not isinstance(v, (int, float, str, bool, list)):
            raise bad(f"cli.params.{k}", "must be a number, a string, a boolean or a list")
    return saved


def _trained_model(spec, lib=()) -> str | None:
    """In a file of several models, the one its train section names (if just one has one)."""
    from nndsl.api import load
    program, _ = load(spec, lib=lib)
    trained = list(dict.fromkeys(t.model for t in program.main.trains))
    if len(program.models) > 1 and len(trained) == 1:
        return trained[0]
    return None


def run_training(spec, *, model: str | None = None, params: dict | None = None,
                 overrides: dict | None = None, out=None, resume=None, ddp: bool = False,
                 quiet: bool = False, hooks=(), prune: str | None = None,
                 qat: str | None = None, group: int | None = None, lib=(), limits=None):
    """Train the model of ``spec`` (a path or source text); returns a ``RunResult``.

    ``lib`` lists folders imports may read besides the spec's own (``nndsl train --lib``);
    ``limits`` (:class:`nndsl.limits.Limits`) are the compilation's budgets (``--max-...``).

    ``prune`` (``magnitude=S`` gradually, or ``N:M``) keeps masks applied while training;
    ``qat`` (``int8``, ``int4``, with ``group`` for int4) trains with quantization noise on the
    weights (see :mod:`nndsl.train.sparsity` and :mod:`nndsl.passes.quantize`)."""
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
        saved = _saved_config(conf)
        cli = {**saved.get("cli", {}), **cli}
        prune = prune or cli.get("prune")
        qat = qat or cli.get("qat")
        group = group or cli.get("group")
        if out is not None and Path(out).resolve() != rdir.resolve():
            raise TrainError("--resume continues a run in its own folder; leave out --out",
                             code="E1218")
        out = rdir
    if model is None:
        model = _trained_model(spec, lib)
    for key, value in (("prune", prune), ("qat", qat), ("group", group)):
        if value is not None:
            cli[key] = value
    if ddp == "fsdp" and prune:
        raise TrainError("--prune needs whole weights; it does not combine with --fsdp",
                         code="E1230", hint="use --ddp, or train on one process")
    c = nndsl.compile(spec, model=model, params=cli.get("params"), opt="O1", qat=qat,
                      group=group if qat else None, optimize_section=False, lib=tuple(lib),
                      limits=limits)
    hooks = list(hooks)
    if prune is not None:
        from nndsl.train.sparsity import PruneDuringTraining
        hooks.append(PruneDuringTraining(c, prune))
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
    result = train(c, cfg, Path(out), resume=resume is not None, ddp=ddp, quiet=quiet,
                   hooks=hooks, extra_config={"cli": cli})
    if (prune or qat) and not quiet and not result.interrupted:
        how = []
        if prune:
            how.append(f"--prune {prune}")
        if qat:
            how.append("--quantize " + ("int4-weight" if qat == "int4" else "int8-weight") +
                       (f" --group {group}" if group else ""))
        spec_name = spec if isinstance(spec, (str, Path)) and "\n" not in str(spec) else "SPEC"
        print(f"to compile the compressed model: nndsl compile {spec_name} {' '.join(how)} "
              f"--weights {Path(out) / 'checkpoints' / 'best.safetensors'}")
    return result
