"""Learning-rate schedules, stepped once per optimizer step.

Each schedule is a function of the step ``t`` (0-based: the rate used by step ``t``), the
run's length in steps and the steps per epoch. ``warmup=W`` (every schedule but one_cycle)
ramps linearly, ``lr·(t+1)/W`` for ``t < W``, and the schedule proper then runs over the
remaining steps. Epoch-based arguments (``step(every=2)``, ``exponential``'s per-epoch
``gamma``, ``cosine_restarts(period=1)``) count epochs of steps.

A schedule's state is its step count (plus the base rates), so checkpoints restore it exactly.
"""

from __future__ import annotations

import math

from nndsl.train.choices import REQUIRED, Choice, Picked


def _warm(args):
    if args.get("warmup", 0) < 0:
        return "`warmup` is a number of steps >= 0"
    return None


def _check_restarts(args):
    if args["period"] <= 0 or args["mult"] < 1:
        return "needs period > 0 (epochs) and mult >= 1"
    return _warm(args)


def _check_cycle(args):
    if not 0 < args["pct_start"] < 1:
        return "`pct_start` must be in (0, 1)"
    if args["div_factor"] <= 0 or args["final_div_factor"] <= 0:
        return "the div factors must be positive"
    return None


SCHEDULES: dict[str, Choice] = {c.name: c for c in [
    Choice("constant", {"warmup": 0}, "the optimizer's rate throughout", check=_warm),
    Choice("warmup", {"steps": REQUIRED}, "linear warm-up over `steps`, then constant",
           positional=("steps",),
           check=lambda a: None if a["steps"] >= 1 else "`steps` must be >= 1"),
    Choice("step", {"every": 1, "gamma": 0.1, "warmup": 0},
           "multiply by gamma every `every` epochs", check=_warm),
    Choice("multistep", {"milestones": REQUIRED, "gamma": 0.1, "warmup": 0},
           "multiply by gamma at each epoch in `milestones`", positional=("milestones",),
           check=_warm),
    Choice("exponential", {"gamma": 0.95, "warmup": 0}, "multiply by gamma every epoch",
           check=_warm),
    Choice("cosine", {"min_lr": 0.0, "warmup": 0}, "cosine annealing to min_lr over the run",
           check=_warm),
    Choice("cosine_restarts", {"period": 1, "mult": 1, "min_lr": 0.0, "warmup": 0},
           "cosine annealing with warm restarts (SGDR): the first cycle lasts `period` epochs, "
           "each next one `mult` times longer", check=_check_restarts),
    Choice("one_cycle", {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
           "one cycle: from lr/div_factor up to the optimizer's lr over pct_start of the run, "
           "then down to lr/(div_factor·final_div_factor) (cosine)", check=_check_cycle),
    Choice("linear", {"end": 0.0, "warmup": 0}, "linear decay to end·lr over the run",
           check=_warm),
]}


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_at(p: Picked, t: int, base: float, total: int, per_epoch: int) -> float:
    """The learning rate of step ``t`` for a group whose optimizer rate is ``base``."""
    a = p.args
    name = p.name
    total = max(1, total)
    per_epoch = max(1, per_epoch)
    if name == "one_cycle":
        initial = base / a["div_factor"]
        low = initial / a["final_div_factor"]
        end1 = float(a["pct_start"] * total) - 1
        end2 = total - 1
        if t <= end1:
            return _cos(initial, base, t / end1 if end1 > 0 else 1.0)
        span = end2 - end1
        return _cos(base, low, min(1.0, (t - end1) / span) if span > 0 else 1.0)
    if name == "warmup":
        w = a["steps"]
        return base * (t + 1) / w if t < w else base
    w = a.get("warmup", 0)
    if t < w:
        return base * (t + 1) / w
    t, total = t - w, max(1, total - w)
    if name == "constant":
        return base
    if name == "step":
        return base * a["gamma"] ** (t // (a["every"] * per_epoch))
    if name == "multistep":
        epoch = t // per_epoch
        return base * a["gamma"] ** sum(1 for m in a["milestones"] if epoch >= m)
    if name == "exponential":
        return base * a["gamma"] ** (t // per_epoch)
    if name == "cosine":
        return _cos(base, a["min_lr"], min(1.0, t / total))
    if name == "linear":
        return base * (1 + (a["end"] - 1) * min(1.0, t / total))
    if name == "cosine_restarts":
        t0 = a["period"] * per_epoch
        mult = a["mult"]
        if mult == 1:
            cur, length = t % t0, t0
        else:
            n = int(math.log(t / t0 * (mult - 1) + 1, mult))
            cur = t - t0 * (mult ** n - 1) / (mult - 1)
            length = t0 * mult ** n
        return _cos(base, a["min_lr"], cur / length)
    raise KeyError(name)


class Schedule:
    """Sets the optimizer's rates for each step; ``state_dict`` holds the step count."""

    def __init__(self, picked: Picked | None, optimizer, total_steps: int, steps_per_epoch: int):
        self.picked = picked or Picked("constant", {"warmup": 0})
        self.optimizer = optimizer
        self.total, self.per_epoch = total_steps, steps_per_epoch
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.t = 0
        self._apply()

    def _apply(self) -> None:
        for g, b in zip(self.optimizer.param_groups, self.base):
            g["lr"] = lr_at(self.picked, self.t, b, self.total, self.per_epoch)

    def step(self) -> None:
        self.t += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"t": self.t, "base": list(self.base), "total": self.total}

    def load_state_dict(self, sd: dict) -> None:
        self.t = int(sd["t"])
        self.base = [float(b) for b in sd["base"]]
        self._apply()
