"""Checking a checkpoint before ``--resume`` uses any of it.

A run folder is the user's file system, not nndsl's memory: it may have been edited, truncated
or mixed with another run's files. :func:`check_state` holds the unpacked state of
``last.state.json`` (and its tensors) against what the loop wrote — every key, its type and
range, and the tensors' names and shapes against the model, the optimizer and the RNGs of this
run — and raises a :class:`~nndsl.errors.TrainError` naming the file and the field otherwise.
"""

from __future__ import annotations

import math

import torch

from nndsl.errors import TrainError
from nndsl.train.checkpoint import DAMAGED


class _Checker:
    def __init__(self, file):
        self.file = file

    def fail(self, where: str, message: str):
        raise TrainError(f"{self.file}: `{where}` {message}", code="E1218", hint=DAMAGED)

    def get(self, d: dict, key: str, where: str):
        if key not in d:
            self.fail(f"{where}.{key}", "is missing")
        return d[key]

    def dict(self, v, where: str) -> dict:
        if not isinstance(v, dict):
            self.fail(where, f"must be an object, got {_kind(v)}")
        return v

    def list(self, v, where: str) -> list:
        if not isinstance(v, (list, tuple)):
            self.fail(where, f"must be a list, got {_kind(v)}")
        return list(v)

    def int(self, v, where: str, low: int = 0, high: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(where, f"must be an integer, got {_kind(v)}")
        if v < low or (high is not None and v > high):
            rng = f"from {low} to {high}" if high is not None else f">= {low}"
            self.fail(where, f"must be an integer {rng}, got {v}")
        return v

    def number(self, v, where: str, low: float | None = None, finite: bool = True) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(where, f"must be a number, got {_kind(v)}")
        if finite and not math.isfinite(v):
            self.fail(where, f"must be a finite number, got {v}")
        if low is not None and v < low:
            self.fail(where, f"must be >= {low}, got {v}")
        return float(v)

    def tensor(self, v, where: str, shape=None, dtype=None, finite: bool = False):
        if not isinstance(v, torch.Tensor):
            self.fail(where, f"must be a tensor, got {_kind(v)}")
        if dtype is not None and v.dtype != dtype:
            self.fail(where, f"must be a {str(dtype).replace('torch.', '')} tensor, got "
                             f"{str(v.dtype).replace('torch.', '')}")
        if shape is not None and tuple(v.shape) != tuple(shape):
            self.fail(where, f"has shape {list(v.shape)}, but this run needs {list(shape)}")
        if finite and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            self.fail(where, "holds NaN or infinite values")
        return v

    def plain(self, v, where: str):
        """A JSON-like value without tensors (a history record's values, hyperparameters)."""
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                self.plain(x, f"{where}[{i}]")
            return v
        if isinstance(v, dict):
            for k, x in v.items():
                self.plain(x, f"{where}.{k}")
            return v
        self.fail(where, f"must be a plain value, got {_kind(v)}")


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {list(v.shape)}"
    return type(v).__name__


def check_state(run, weights: dict, state) -> None:
    """Raise unless ``state`` (and ``weights``) are a checkpoint this run can resume from."""
    from nndsl.ir.weights import mismatch_error
    folder = run.ckdir
    own = {k: tuple(v.shape) for k, v in run.model.state_dict().items()
           if k not in run.constants}
    err = mismatch_error(own, weights)
    if err is not None:
        raise TrainError(f"the checkpoint in {folder} does not fit the model: "
                         f"{err.message}", code="E1218", notes=err.notes,
                         hint="resume with the spec (and --param values) the run began with")
    for k, v in weights.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise TrainError(f"{folder / 'last.safetensors'}: the weights `{k}` hold NaN or "
                             f"infinite values", code="E1218", hint=DAMAGED)

    c = _Checker(folder / "last.state.json")
    s = c.dict(state, "state")
    g = lambda key: c.get(s, key, "state")      # noqa: E731
    epoch = c.int(g("epoch"), "state.epoch", 0, 2**31)
    c.int(g("batch"), "state.batch", 0, max(0, run.batches_per_epoch - 1))
    c.int(g("step"), "state.step", 0)
    history = c.list(g("history"), "state.history")
    if len(history) != epoch:
        c.fail("state.history", f"has {len(history)} epochs, but `state.epoch` says {epoch}")
    for i, r in enumerate(history):
        c.dict(r, f"state.history[{i}]")
        c.plain(r, f"state.history[{i}]")
        c.int(c.get(r, "epoch", f"state.history[{i}]"), f"state.history[{i}].epoch", 1)
        c.number(c.get(r, "train_loss", f"state.history[{i}]"),
                 f"state.history[{i}].train_loss", finite=False)
    best = g("best")
    if best is not None:
        c.dict(best, "state.best")
        c.plain(best, "state.best")
        if run.cfg.monitor in best:
            c.number(best[run.cfg.monitor], f"state.best.{run.cfg.monitor}", finite=False)
    c.int(g("bad_epochs"), "state.bad_epochs", 0)
    lrs = s.get("lrs")
    if lrs is not None:
        for i, x in enumerate(c.list(lrs, "state.lrs")):
            c.number(x, f"state.lrs[{i}]", low=0.0)
    _check_optimizer(c, run, g("optimizer"), "state.optimizer")
    _check_schedule(c, run, g("schedule"), "state.schedule")
    _check_rng(c, run, g("rng"), "state.rng")
    c.int(g("world_size"), "state.world_size", 1)
    scaler = s.get("scaler")
    if scaler is not None:
        c.plain(c.dict(scaler, "state.scaler"), "state.scaler")
    recipe = s.get("recipe")
    if recipe is not None:
        _check_recipe(c, run, c.dict(recipe, "state.recipe"), "state.recipe")
    cur = s.get("curriculum")
    if cur is not None and getattr(run, "curriculum", None) is not None:
        _check_curriculum(c, run, c.dict(cur, "state.curriculum"), "state.curriculum")
    acc = s.get("accumulators")
    if acc is not None:
        _check_accumulators(c, run, c.dict(acc, "state.accumulators"), "state.accumulators")


def _params_of(opt) -> list:
    return [p for grp in opt.param_groups for p in grp["params"]]


def _check_optimizer(c: _Checker, run, sd, where: str, opt=None) -> None:
    opt = run.optimizer if opt is None else opt
    sd = c.dict(sd, where)
    if getattr(run.dist, "fsdp", False) and opt is run.optimizer:
        return      # sharded state by parameter name: checked by torch's loader
    if hasattr(opt, "inner"):     # lookahead, sam
        _check_optimizer(c, run, c.get(sd, "inner", where), f"{where}.inner", opt.inner)
        if hasattr(opt, "slow"):
            c.int(c.get(sd, "counter", where), f"{where}.counter", 0)
            slow = c.list(c.get(sd, "slow", where), f"{where}.slow")
            if len(slow) != len(opt.slow):
                c.fail(f"{where}.slow", f"has {len(slow)} tensors, the model {len(opt.slow)}")
            for i, (v, p) in enumerate(zip(slow, opt.slow)):
                c.tensor(v, f"{where}.slow[{i}]", shape=p.shape, finite=True)
        return
    groups = c.list(c.get(sd, "param_groups", where), f"{where}.param_groups")
    if len(groups) != len(opt.param_groups):
        c.fail(f"{where}.param_groups", f"has {len(groups)} groups, this run's optimizer "
                                        f"{len(opt.param_groups)}")
    shapes = {}
    for i, (grp, mine) in enumerate(zip(groups, opt.param_groups)):
        w = f"{where}.param_groups[{i}]"
        c.dict(grp, w)
        ids = c.list(c.get(grp, "params", w), f"{w}.params")
        if len(ids) != len(mine["params"]):
            c.fail(f"{w}.params", f"has {len(ids)} parameters, this run's optimizer "
                                  f"{len(mine['params'])}")
        for j, (pid, p) in enumerate(zip(ids, mine["params"])):
            c.int(pid, f"{w}.params[{j}]", 0)
            if pid in shapes:
                c.fail(f"{w}.params[{j}]", f"repeats the parameter {pid}")
            shapes[pid] = tuple(p.shape)
        for k, v in grp.items():
            if k == "params":
                continue
            c.plain(v, f"{w}.{k}")
            if k == "lr":
                c.number(v, f"{w}.lr", low=0.0)
    state = c.dict(c.get(sd, "state", where), f"{where}.state")
    for pid, ps in state.items():
        w = f"{where}.state.{pid}"
        if pid not in shapes:
            c.fail(w, "is the state of a parameter the optimizer does not have")
        for k, v in c.dict(ps, w).items():
            if isinstance(v, torch.Tensor):
                if v.dim() > 0:
                    c.tensor(v, f"{w}.{k}", shape=shapes[pid], finite=True)
                elif v.is_floating_point() and not math.isfinite(float(v)):
                    c.fail(f"{w}.{k}", f"must be finite, got {float(v)}")
            else:
                c.plain(v, f"{w}.{k}")


def _check_schedule(c: _Checker, run, sd, where: str, sched=None) -> None:
    sched = run.schedule if sched is None else sched
    sd = c.dict(sd, where)
    c.int(c.get(sd, "t", where), f"{where}.t", 0)
    base = c.list(c.get(sd, "base", where), f"{where}.base")
    if len(base) != len(sched.base):
        c.fail(f"{where}.base", f"has {len(base)} rates, this run's optimizer "
                                f"{len(sched.base)} groups")
    for i, b in enumerate(base):
        c.number(b, f"{where}.base[{i}]", low=0.0)
    if "total" in sd:
        c.int(sd["total"], f"{where}.total", 1)


def _check_rng(c: _Checker, run, rng, where: str) -> None:
    rng = c.dict(rng, where)
    cpu = c.tensor(c.get(rng, "torch", where), f"{where}.torch", dtype=torch.uint8)
    want = torch.get_rng_state().numel()
    if cpu.dim() != 2 or cpu.shape[1] != want or cpu.shape[0] < 1:
        c.fail(f"{where}.torch", f"has shape {list(cpu.shape)}, but a generator state is "
                                 f"[processes, {want}]")
    aug = c.tensor(c.get(rng, "augment", where), f"{where}.augment", dtype=torch.uint8)
    want = run.aug_gen.get_state().numel()
    if aug.dim() != 2 or aug.shape[1] != want or aug.shape[0] != cpu.shape[0]:
        c.fail(f"{where}.augment", f"has shape {list(aug.shape)}, but this run needs "
                                   f"[{cpu.shape[0]}, {want}]")
    if "noise" in rng:
        noise = c.tensor(rng["noise"], f"{where}.noise", dtype=torch.uint8)
        want = run.noise_gen.get_state().numel()
        if noise.dim() != 2 or noise.shape[1] != want or noise.shape[0] < 1:
            c.fail(f"{where}.noise", f"has shape {list(noise.shape)}, but this run needs "
                                     f"[1, {want}]")
    if getattr(run, "episodes", None) is not None:
        eps = c.tensor(c.get(rng, "episodes", where), f"{where}.episodes", dtype=torch.uint8)
        want = run.episodes.gen.get_state().numel()
        if eps.dim() != 2 or eps.shape != (1, want):
            c.fail(f"{where}.episodes", f"has shape {list(eps.shape)}, but this run needs "
                                        f"[1, {want}]")
    if "cuda" in rng:
        c.tensor(rng["cuda"], f"{where}.cuda", dtype=torch.uint8)
        if run.device.type == "cuda" and rng["cuda"].shape != \
                torch.cuda.get_rng_state(run.device).shape:
            c.fail(f"{where}.cuda", f"has shape {list(rng['cuda'].shape)}, not a CUDA "
                                    f"generator state of this machine")


def _check_recipe(c: _Checker, run, sd: dict, where: str) -> None:
    rec = run.recipe
    if not hasattr(rec, "d"):        # only the gan recipe keeps state of its own
        c.plain(sd, where)
        return
    own = {k: tuple(v.shape) for k, v in rec.d.state_dict().items()}
    disc = c.dict(c.get(sd, "discriminator", where), f"{where}.discriminator")
    for k in own:
        if k not in disc:
            c.fail(f"{where}.discriminator.{k}", "is missing")
    for k, v in disc.items():
        if k not in own:
            c.fail(f"{where}.discriminator.{k}", "is not a tensor of the discriminator")
        c.tensor(v, f"{where}.discriminator.{k}", shape=own[k], finite=True)
    _check_optimizer(c, run, c.get(sd, "d_optimizer", where), f"{where}.d_optimizer",
                     rec.d_opt)
    _check_schedule(c, run, c.get(sd, "d_schedule", where), f"{where}.d_schedule",
                    rec.d_schedule)


def _check_curriculum(c: _Checker, run, cur: dict, where: str) -> None:
    c.int(c.get(cur, "epoch", where), f"{where}.epoch", 0, 2**31)
    order = c.tensor(c.get(cur, "order", where), f"{where}.order", dtype=torch.int64)
    n = len(run.splits.train)
    if order.dim() != 1 or not 1 <= order.numel() <= n:
        c.fail(f"{where}.order", f"has shape {list(order.shape)}, but an epoch's samples are "
                                 f"a list of 1 to {n} indices")
    allowed = torch.zeros(run.data.n, dtype=torch.bool)
    allowed[run.splits.train] = True
    if bool(((order < 0) | (order >= run.data.n)).any()) or not bool(allowed[order].all()):
        c.fail(f"{where}.order", "holds indices that are not samples of the training split")


def _check_accumulators(c: _Checker, run, a: dict, where: str) -> None:
    c.number(c.get(a, "loss_sum", where), f"{where}.loss_sum")
    count = c.int(c.get(a, "count", where), f"{where}.count", 0)
    c.number(c.get(a, "seconds", where), f"{where}.seconds", low=0.0)
    extra = a.get("extra") or {}
    for k, v in c.dict(extra, f"{where}.extra").items():
        c.number(v, f"{where}.extra.{k}")
    collected = c.dict(c.get(a, "collected", where), f"{where}.collected")
    types = {**run.c.output_types, **run.c.input_types, **run.cfg.targets}
    for n in run.metric_names:
        v = collected.get(n)
        if v is None:
            continue
        w = f"{where}.collected.{n}"
        c.tensor(v, w)
        if v.numel() == 0:
            continue
        t = types.get(n)
        ok = t is not None and v.dim() == t.rank and v.shape[0] == count and all(
            not isinstance(d, int) or v.shape[i] == d for i, d in enumerate(t.shape) if i)
        if not ok:
            c.fail(w, f"has shape {list(v.shape)}, but {count} samples of `{n}`"
                      + (f": {t}" if t is not None else "") + " are collected")
