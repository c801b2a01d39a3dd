"""What a search optimizes: the measured quantities (``params``, ``flops``) and the values a
trial's training records (``val_accuracy``, ``val_loss``, ``train_f1``...), each with the
direction that is better."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from nndsl.elab.space import QUANTITIES, SearchError

MAX_OBJECTIVES = 4


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str       # "maximize" | "minimize"

    @property
    def trained(self) -> bool:
        """Whether its value comes from training (not from the compiled graph)."""
        return self.name not in QUANTITIES

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b

    def to_json(self) -> dict:
        return {"name": self.name, "direction": self.direction}


def produced(cfg) -> dict[str, str]:
    """The values a training run of ``cfg`` (a :class:`TrainConfig`) records, each with its
    direction: ``{split}_loss`` and ``{split}_{metric}`` for the splits it has."""
    from nndsl.train import config
    episode_keys = getattr(config, "EPISODE_KEYS", ())
    episodes = getattr(cfg, "episodes", None)
    splits = ["train"]
    if cfg.val_split > 0 or episodes is not None and episodes.eval:
        splits.append("val")
    if cfg.test_split > 0:
        splits.append("test")
    keys = {"loss": "minimize", **{m.key: "maximize" if m.mode == "max" else "minimize"
                                   for m in cfg.metrics}}
    if episodes is not None:
        keys.update({k: "maximize" for k in episode_keys if k.endswith("accuracy")})
    out = {f"{s}_{k}": d for s in splits for k, d in keys.items()}
    recipe = getattr(cfg, "recipe", None)
    if recipe is not None and recipe.name == "gan" and "val" in splits:
        out["val_mmd"] = "minimize"
    return out


def parse_objectives(text: str) -> list[str]:
    """``--objective val_accuracy,params`` as names, checked for shape (not yet for meaning)."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise SearchError(f"--objective {text!r} names no objective", code="E1521",
                          hint="for example --objective val_accuracy or --objective "
                               "val_accuracy,params")
    if len(names) > MAX_OBJECTIVES:
        raise SearchError(f"--objective names {len(names)} objectives (at most "
                          f"{MAX_OBJECTIVES})", code="E1521",
                          hint="a Pareto front over more objectives says little; keep two or three")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise SearchError(f"--objective names `{dup}` twice", code="E1521",
                          hint="name each objective once")
    return names


def resolve_objectives(names: list[str], cfg, where: str) -> list[Objective]:
    """The objectives, checked against what the train section produces (``cfg`` None: the
    model is not trained, only ``params`` and ``flops`` can be objectives)."""
    made = produced(cfg) if cfg is not None else {}
    out = []
    for n in names:
        if n in QUANTITIES:
            out.append(Objective(n, "minimize"))
            continue
        if n in made:
            out.append(Objective(n, made[n]))
            continue
        allowed = list(made) + list(QUANTITIES)
        close = difflib.get_close_matches(n, allowed, n=1, cutoff=0.6)
        split_note = ""
        if n.startswith("val_") and cfg is not None and cfg.val_split <= 0:
            split_note = "the train section holds out no validation split (val_split = 0); "
        elif n.startswith("test_") and cfg is not None and cfg.test_split <= 0:
            split_note = "the train section holds out no test split (set test_split); "
        raise SearchError(f"the objective `{n}` is not something {where} produces",
                          code="E1520", hint=split_note + (f"did you mean `{close[0]}`? "
                                                           if close else "")
                          + "objectives here: " + ", ".join(allowed)
                          + "; add a metric to the train section's `metrics` for more")
    return out
