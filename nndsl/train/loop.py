"""The training loop: epochs of batches, validation, checkpoints, early stopping, resume.

:func:`train` runs a :class:`~nndsl.train.config.TrainConfig` on a compiled model (compiled at
O1, training-safe) and writes the run folder (:mod:`nndsl.train.checkpoint`). A run is a pure
function of its configuration and seed: the initial weights, the splits, every epoch's order
and the augmentation draws come from seeded generators, and the global RNG (dropout) is saved in
each checkpoint — so ``resume=True`` continues with exactly the losses an uninterrupted run has.

Ctrl-C (SIGINT) asks the loop to stop after the current step; it then saves ``last`` (mid-epoch,
with its position and the epoch's accumulators) and returns. A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nndsl.errors import NndslError, TrainError
from nndsl.ir.derive import is_constant
from nndsl.train import augment as augment_mod
from nndsl.train import checkpoint as ckpt
from nndsl.train import curriculum as curriculum_mod
from nndsl.train import data as data_mod
from nndsl.train import episodes as episodes_mod
from nndsl.train import recipes
from nndsl.train import distributed as D
from nndsl.train.config import TrainConfig
from nndsl.train.scopes import in_scope
from nndsl.train.console import Console
from nndsl.train.metrics import compute as compute_metric
from nndsl.train.optim import build_optimizer
from nndsl.train.paths import remove_empty, spec_path, writable_folder
from nndsl.train.plots import write_plots
from nndsl.train.schedules import Schedule


@dataclass
class RunResult:
    out: Path
    history: list
    best: dict | None
    test: dict
    stopped: str | None
    interrupted: bool
    seconds: float
    notes: list = field(default_factory=list)


def _non_finite(tensors: dict) -> str | None:
    """The name of the first float tensor holding NaN or an infinity, or None."""
    return next((k for k, v in tensors.items() if v.is_floating_point()
                 and not bool(torch.isfinite(v).all())), None)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available here", code="E1223",
                         hint="use --device cpu (or auto)")
    return torch.device(name)


def train(compiled, cfg: TrainConfig, out: Path, *, resume: bool = False, ddp: bool = False,
          quiet: bool = False, hooks=(), extra_config: dict | None = None) -> RunResult:
    """Train ``compiled`` as ``cfg`` says, writing the run folder ``out``."""
    device = pick_device(cfg.device)
    dist = D.setup(bool(ddp), device.type)
    dist.fsdp = ddp == "fsdp"
    if dist.active and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    console = Console(enabled=dist.main and not quiet)
    try:
        return _Run(compiled, cfg, Path(out), device, dist, console, resume, hooks,
                    extra_config or {}).fit()
    finally:
        console.stop_progress()
        D.teardown(dist)


class _Run:
    def __init__(self, compiled, cfg: TrainConfig, out: Path, device, dist, console: Console,
                 resume: bool, hooks, extra_config: dict):
        self.c, self.cfg, self.out, self.device = compiled, cfg, out, device
        self.dist, self.con, self.resume, self.hooks = dist, console, resume, list(hooks)
        self.extra_config = extra_config
        self.ckdir = out / "checkpoints"
        self.stop_requested = False
        self.notes: list[str] = []
        self.history: list[dict] = []
        self.lrs: list[float] = []
        self.best: dict | None = None
        self.bad_epochs = 0
        self.step = 0
        self.saves = 0
        self.last_finite = None     # (loss, step, epoch, batch) of the last finite batch loss

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        cfg, c = self.cfg, self.c
        torch.manual_seed(cfg.seed)
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 2)   # random inputs, recipes
        self.eval_gen = torch.Generator().manual_seed(cfg.seed + 3)    # reset per evaluation
        if cfg.data is None:
            raise TrainError("no data to train on", span=cfg.spans.get("section"), code="E1220",
                             hint="set `data = digits` (or a path) in the train section, or "
                                  "give --data NAME|PATH")
        self.input_names = c.input_names
        self.output_names = c.output_names
        self.data_inputs = dict(cfg.recipe_info.get("data_inputs", c.input_types))
        self.episodes = None        # an EpisodeSource: every batch is an episode
        self.curriculum = None      # a CurriculumRun: each epoch's samples, easy to hard
        self.order = None           # the training samples of the epoch being trained
        self.batch_size = cfg.batch
        if cfg.episodes is not None:
            self._setup_episodes()
        else:
            extra = curriculum_mod.extra_targets(cfg)
            self.data = data_mod.load(cfg.data, self.data_inputs, {**cfg.targets, **extra},
                                      cfg.seed, cfg.spans.get("data"), base=Path(cfg.base),
                                      ranges=dict(c.graph.meta.get("input_ranges", {})))
            column = self.data.arrays.pop(next(iter(extra)), None) if extra else None
            for n in self.data.notes:
                self.note(n)
            types = {**c.input_types, **c.output_types}
            limits = data_mod.value_limits(cfg.loss_info, types, cfg.targets,
                                           dict(c.graph.meta.get("input_ranges", {})),
                                           self.data_inputs)
            data_mod.check_values(self.data, limits, cfg.spans.get("data"))
            self.splits = data_mod.split(self.data.n, cfg.val_split, cfg.test_split, cfg.seed)
            self.stats = data_mod.standardize(self.data, self.splits.train)
            if cfg.curriculum is not None:
                self.curriculum = curriculum_mod.CurriculumRun(self, column)
        self.model = c.to_torch(seed=cfg.seed).to(self.device).checkpoint_blocks(cfg.checkpoint)
        # folded constants (O1 and up) are the graph's own values: checkpoints leave them out,
        # so a run's weights load at every level, and loads keep the model's values
        self.constants = frozenset(n.name for n in c.graph.params() if is_constant(n))
        if cfg.init and not self.resume:
            self._load_init()
        if self.dist.active and self.dist.fsdp:
            from torch.distributed.fsdp import fully_shard
            fully_shard(self.model)      # one unit: parameters gathered for each forward
        frozen = 0
        for name, p in self.model.named_parameters():
            if any(in_scope(name, s) for s in cfg.freeze):
                p.requires_grad_(False)
                frozen += p.numel()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise TrainError("every parameter is frozen: nothing to train",
                             span=cfg.spans.get("freeze"), code="E1216")
        if frozen:
            self.note(f"frozen: {frozen:,} parameters under {', '.join(cfg.freeze)}")
        run_model = self.model
        if self.dist.active and not self.dist.fsdp:
            from torch.nn.parallel import DistributedDataParallel
            run_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        if cfg.compile:
            run_model = torch.compile(run_model)
        self.run_model = run_model
        self.optimizer = build_optimizer(cfg.optimizer, self.params)
        order = data_mod.epoch_order(self.splits.train, cfg.seed, 0, self.dist.rank,
                                     self.dist.world)
        self.batches_per_epoch = math.ceil(len(order) / self.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.accumulate)
        total = cfg.epochs * self.steps_per_epoch
        if cfg.curriculum is not None:
            total = self._curriculum_steps()
        self.schedule = Schedule(cfg.schedule, self.optimizer, total, self.steps_per_epoch)
        self.amp_dtype, self.scaler = None, None
        if cfg.amp:
            if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                self.amp_dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")
                if not isinstance(self.optimizer, torch.optim.Optimizer):
                    raise TrainError("float16 mixed precision with gradient scaling does not "
                                     "work with lookahead or sam here", code="E1231",
                                     hint="train without --amp, or with another optimizer")
            else:
                self.amp_dtype = torch.bfloat16
        self.float_inputs = [n for n, t in c.input_types.items()
                             if t.dtype in ("f32", "f16", "bf16", "f64")]
        self.metric_names = sorted({n for m in cfg.metrics for n in (m.pred, m.target)})
        self.random_inputs = {n: d for n, d in c.random_inputs.items()
                              if n not in self.data_inputs}
        self.needs_input_grad = any(t.fn == "contractive" for t in cfg.loss_info.terms)
        self.recipe = recipes.runtime(self, cfg.recipe_info)
        self.recipe.prepare_training()
        if self.recipe.name != "supervised":
            self.note(f"recipe: {self.recipe.name}")
        if self.curriculum is not None:
            self.curriculum.prepare()

    def _setup_episodes(self) -> None:
        cfg = self.cfg
        ep = cfg.episodes
        if self.dist.active:
            raise TrainError("episodic training runs on one process (--ddp is not supported "
                             "for it yet)", code="E1232")
        span = cfg.spans.get("data") or ep.span
        self.data = episodes_mod.load(cfg, ep, span, cfg.base, cfg.seed)
        for n in self.data.notes:
            self.note(n)
        where = f"`{cfg.data['name']}`" if "name" in cfg.data else str(self.data.source or
                                                                          cfg.data["path"])
        self.episodes = episodes_mod.EpisodeSource(ep, self.data, cfg.seed, where)
        self.note(self.episodes.describe())
        self.stats = data_mod.standardize(self.data, self.episodes.train_samples())
        self.splits = data_mod.Splits(torch.arange(ep.per_epoch), torch.arange(ep.eval),
                                      torch.arange(ep.eval))
        self.batch_size = 1

    def _curriculum_steps(self) -> int:
        """Optimizer steps of the whole run when each epoch uses its share of the samples."""
        cfg, cur = self.cfg, self.cfg.curriculum
        n, world = len(self.splits.train), self.dist.world
        paced = min(cfg.epochs, cur.epochs)
        if paced > 100_000:
            return cfg.epochs * self.steps_per_epoch
        total = 0
        for e in range(paced):
            per = math.ceil(cur.count(e, n) / world)
            total += math.ceil(math.ceil(per / self.batch_size) / cfg.accumulate)
        return max(1, total + (cfg.epochs - paced) * self.steps_per_epoch)

    def _batches(self, order, start: int):
        """(index, batch) of this epoch's training batches, from ``start`` on."""
        if self.episodes is None:
            yield from data_mod.batches(self.data, order, self.batch_size, start)
            return
        for b in range(start, len(order)):
            yield b, self.episodes.batch("train", self.episodes.gen)

    def _episode_extra(self, batch: dict, env: dict) -> dict:
        return {"query_accuracy": self.episodes.query_accuracy(batch, env),
                **self.recipe.episode_extra()}

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.con.note(text)

    def _load_init(self) -> None:
        from nndsl.backends.torch import read_weights
        from nndsl.ir.weights import mismatch_error
        init = self.cfg.init
        span = self.cfg.spans.get("init")
        path = spec_path(init["path"], self.cfg.base, span, "init weights", "E1217",
                         suffixes=(".safetensors",))
        try:
            sd = dict(read_weights(path))
            own = self.model.state_dict()
            only = init.get("only")
            if only:
                sd = {k: v for k, v in sd.items() if any(in_scope(k, s) for s in only)}
                want = {k: tuple(v.shape) for k, v in own.items()
                        if any(in_scope(k, s) for s in only) and k not in self.constants}
                if not sd:
                    raise TrainError(f"{path} has no weights under {', '.join(only)}", span=span,
                                     code="E1217")
                err = mismatch_error(want, sd)
                if err is not None:
                    raise err
                with torch.no_grad():
                    for k, v in sd.items():
                        own[k].copy_(v.to(own[k].dtype))
                self.note(f"init: {len(sd)} tensors under {', '.join(only)} from {path}")
            else:
                self.model.load_weights(sd)
                self.note(f"init: weights from {path}")
        except NndslError as e:
            if isinstance(e, TrainError):
                raise
            raise TrainError(f"init: {e.message}", span=span, code="E1217", hint=e.hint,
                             notes=e.notes) from None

    # ------------------------------------------------------------------ running
    def fit(self) -> RunResult:
        t_start = time.perf_counter()
        made = writable_folder(self.out) if self.dist.main else []
        try:
            self._setup()
            start_epoch, start_batch, acc = 0, 0, None
            if self.resume:
                start_epoch, start_batch, acc = self._restore()
        except BaseException:
            remove_empty(made)      # a run refused before it began leaves no folder behind
            raise
        cfg = self.cfg
        if self.dist.main:
            self._write_config()
        old_handler = self._install_sigint()
        stopped = None
        interrupted = False
        try:
            for epoch in range(start_epoch, cfg.epochs):
                done = self._train_epoch(epoch, start_batch if epoch == start_epoch else 0,
                                         acc if epoch == start_epoch else None)
                if done is None:     # interrupted mid-epoch: saved
                    interrupted = True
                    stopped = (f"interrupted in epoch {epoch + 1}: saved {self.ckdir / 'last'}"
                               f".*; continue with --resume {self.out}")
                    break
                record = done
                improved = self._update_best(record)
                if self.dist.main:
                    ckpt.write_metrics(self.out / "metrics.jsonl", self.history)
                self._save("last", epoch + 1, 0, None)
                if improved:
                    self._save("best", epoch + 1, 0, None)
                self.con.end_epoch(record)
                if self.stop_requested:
                    interrupted = True
                    stopped = (f"interrupted after epoch {epoch + 1}; continue with "
                               f"--resume {self.out}")
                    break
                if cfg.early_stopping and self.bad_epochs >= cfg.early_stopping:
                    stopped = (f"early stopping after epoch {epoch + 1}: {cfg.monitor} has not "
                               f"improved for {self.bad_epochs} epochs")
                    break
        finally:
            self._restore_sigint(old_handler)
        test = {}
        if not interrupted and len(self.splits.test):
            test = self._test()
        seconds = time.perf_counter() - t_start
        if self.dist.main:
            if test and self.history:
                self.history[-1].update(test)
                ckpt.write_metrics(self.out / "metrics.jsonl", self.history)
            try:
                write_plots(self.out / "plots", self.history, self.lrs)
            except Exception as e:  # plots are a convenience; never lose a run over them
                self.note(f"could not write plots: {type(e).__name__}: {e}")
            ckpt.write_json(self.out / "summary.json", {
                "model": self.c.name, "epochs": len(self.history), "best": self.best,
                "monitor": cfg.monitor, "test": test, "stopped": stopped,
                "interrupted": interrupted, "seconds": round(seconds, 3),
                "final": self.history[-1] if self.history else None})
            self.con.summary(self.history, self.best, cfg.monitor, self.out, test, seconds,
                             stopped)
        return RunResult(self.out, self.history, self.best, test, stopped, interrupted,
                         seconds, self.notes)

    def _write_config(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        conf = self.cfg.to_json()
        conf["data_stats"] = self.stats
        conf["samples"] = {"train": len(self.splits.train), "val": len(self.splits.val),
                           "test": len(self.splits.test)}
        if self.episodes is not None:
            conf["samples"] = {"labelled": self.data.n, "episodes_per_epoch": len(
                self.splits.train), "eval_episodes": len(self.splits.val)}
            conf["episode_classes"] = {"train": list(self.episodes.train_classes),
                                       "held_out": list(self.episodes.test_classes)}
        conf["world_size"] = self.dist.world
        conf.update(self.extra_config)
        ckpt.write_json(self.out / "config.json", conf)

    # ---- one epoch
    def _inputs(self, batch: dict, train: bool) -> dict:
        """The model's inputs for ``batch``: the data's (augmented when training), and the
        random inputs drawn from their distributions (per batch when training; from a
        generator reset for every evaluation, so validation is reproducible)."""
        from nndsl.backends.torch.inputs import draw_missing
        xs = {n: batch[n] for n in self.input_names if n in batch}
        if train and self.cfg.augment and self.recipe.name != "contrastive":
            for n in self.float_inputs:
                if n in xs:
                    xs[n] = augment_mod.apply(self.cfg.augment, xs[n], self.aug_gen)
        if self.random_inputs:
            xs.update(draw_missing(self.c.input_types, self.random_inputs, xs,
                                   self.noise_gen if train else self.eval_gen, self.device,
                                   batch=next(iter(batch.values())).shape[0]))
        if self.needs_input_grad:
            for n in self.float_inputs:
                if n in xs:
                    xs[n] = xs[n].detach().clone().requires_grad_(True)
        return xs

    def _forward_loss(self, batch: dict, xs: dict):
        ctx = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype \
            else nullcontext()
        with ctx:
            loss, env = self.recipe.forward_loss(batch, xs, self.model.training)
        loss = loss.float()
        if self.cfg.l1:
            loss = loss + self.cfg.l1 * sum(p.abs().sum() for p in self.params)
        return loss, env

    def _to_device(self, batch: dict) -> dict:
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _train_epoch(self, epoch: int, start: int, acc: dict | None):
        cfg = self.cfg
        self.model.train()
        if self.episodes is not None:
            order = self.splits.train          # episode numbers: each is drawn when its turn comes
        elif self.curriculum is not None:
            order = self.curriculum.order(epoch)
        else:
            order = data_mod.epoch_order(self.splits.train, cfg.seed, epoch, self.dist.rank,
                                         self.dist.world)
        self.order = order
        nb = math.ceil(len(order) / self.batch_size)
        acc = acc or {"loss_sum": 0.0, "count": 0, "seconds": 0.0,
                      "collected": {n: [] for n in self.metric_names}}
        self.con.start_epoch(epoch + 1, cfg.epochs, nb, start)
        t0 = time.perf_counter() - acc["seconds"]
        seen_now, t_now = 0, time.perf_counter()
        for b, batch in self._batches(order, start):
            batch = self._to_device(batch)
            bs = next(iter(batch.values())).shape[0]
            xs = self._inputs(batch, train=True)
            if self.recipe.custom_step:     # the recipe runs its own backward passes
                loss, extra = self.recipe.train_step(batch, xs)
                env = {}
                lv = self._finite_loss(loss, epoch, b)
                self._optimizer_step(batch, xs)
                for k, v in extra.items():
                    acc.setdefault("extra", {}).setdefault(k, 0.0)
                    acc["extra"][k] += float(v) * bs
            else:
                loss, env = self._forward_loss(batch, xs)
                lv = self._finite_loss(loss, epoch, b)
                if self.episodes is not None:
                    for k, v in self._episode_extra(batch, env).items():
                        acc.setdefault("extra", {}).setdefault(k, 0.0)
                        acc["extra"][k] += float(v) * bs
                scaled = loss / cfg.accumulate if cfg.accumulate > 1 else loss
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
                if (b + 1) % cfg.accumulate == 0 or b == nb - 1:
                    self._optimizer_step(batch, xs)
            acc["loss_sum"] += lv * bs
            acc["count"] += bs
            for n in self.metric_names:
                acc["collected"][n].append(env[n].detach().float().cpu())
            seen_now += bs
            self.con.step(b + 1, acc["loss_sum"] / max(1, acc["count"]),
                          seen_now / max(1e-9, time.perf_counter() - t_now))
            for hook in self.hooks:
                hook(self, epoch, b)
            if self._should_stop() and b + 1 < nb:
                acc["seconds"] = time.perf_counter() - t0
                self._save("last", epoch, b + 1, acc)
                self.con.stop_progress()
                return None
        seconds = time.perf_counter() - t0
        return self._finish_epoch(epoch, acc, seconds)

    def _finite_loss(self, loss, epoch: int, b: int) -> float:
        """The batch's loss as a float; a clear stop when it is NaN or infinite (every process
        stops together), before the step that would spread it into the weights."""
        lv = float(loss.detach())
        bad = not math.isfinite(lv)
        if self.dist.active:
            bad = D.all_sum(self.dist, [1.0 if bad else 0.0], self.device)[0] > 0
        if not bad:
            self.last_finite = (lv, self.step + 1, epoch + 1, b + 1)
            return lv
        self._raise_non_finite(f"the loss became {lv} at step {self.step + 1} (epoch "
                               f"{epoch + 1}, batch {b + 1})")

    def _raise_non_finite(self, what: str):
        last = self.last_finite
        said = [what]
        if last is not None:
            said.append(f"the last finite loss was {last[0]:.6g} at step {last[1]} (epoch "
                        f"{last[2]}, batch {last[3]})")
        if (self.ckdir / "last.safetensors").exists():
            said.append(f"the last good checkpoint is kept in {self.ckdir} (continue from it "
                        f"with --resume {self.out} after a change)")
        else:
            said.append("no checkpoint was written")
        raise TrainError("training stopped: " + "; ".join(said), code="E1227",
                         hint="lower the learning rate (--lr, or the optimizer's lr), clip "
                              "gradients (clip_grad = 1.0), or check the data for extreme "
                              "values")

    def _optimizer_step(self, batch: dict, xs: dict) -> None:
        cfg = self.cfg
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad)
        if getattr(self.optimizer, "needs_closure", False):
            def closure():
                self.optimizer.zero_grad(set_to_none=True)
                loss2, _ = self._forward_loss(batch, xs)
                loss2.backward()
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad)
                return loss2
            self.optimizer.step(closure)
        elif self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.lrs.append(self.schedule.lr)
        self.schedule.step()
        self.step += 1

    def _should_stop(self) -> bool:
        if not self.dist.active:
            return self.stop_requested
        flag = D.all_sum(self.dist, [1.0 if self.stop_requested else 0.0], self.device)[0]
        self.stop_requested = flag > 0
        return self.stop_requested

    def _finish_epoch(self, epoch: int, acc: dict, seconds: float) -> dict:
        cfg = self.cfg
        loss_sum, count = D.all_sum(self.dist, [acc["loss_sum"], float(acc["count"])],
                                    self.device)
        record = {"epoch": epoch + 1, "step": self.step, "lr": self.lrs[-1] if self.lrs else
                  self.schedule.lr, "time": round(seconds, 3),
                  "train_loss": loss_sum / max(1.0, count)}
        if self.curriculum is not None and self.curriculum.current is not None:
            record["curriculum_samples"] = len(self.curriculum.current[1])
        for k, v in sorted(acc.get("extra", {}).items()):
            total, = D.all_sum(self.dist, [v], self.device)
            record[f"train_{k}"] = total / max(1.0, count)
        if cfg.metrics:
            got = {n: D.all_gather_cat(self.dist, torch.cat(v).to(self.device)).cpu()
                   for n, v in acc["collected"].items()}
            for m in cfg.metrics:
                record[f"train_{m.key}"] = compute_metric(m, got[m.pred], got[m.target])
        if len(self.splits.val):
            record.update(self._evaluate(self.splits.val, "val"))
            if self.recipe.generative and self._can_sample():
                record["val_mmd"] = self.sample_mmd()
        record["samples_per_s"] = round(count / max(1e-9, seconds), 1)
        self.history.append(record)
        return record

    def _can_sample(self) -> bool:
        return not (self.recipe.name == "vae" and self.recipe.decoder is None)

    def sample_mmd(self, n: int = 256) -> float:
        """MMD² between ``n`` generated samples and held-out real ones (seeded: reproducible)."""
        idx = self.splits.val[:n]
        name = next(iter(self.data_inputs))
        real = self.data.arrays[name][idx]
        gen = torch.Generator().manual_seed(self.cfg.seed + 5)
        fake = self.recipe.sample(len(idx), gen)
        return recipes.mmd(fake.reshape(real.shape), real)

    @torch.no_grad()
    def _evaluate(self, idx, split: str) -> dict:
        self.model.eval()
        self.eval_gen.manual_seed(self.cfg.seed + 3)
        grad = torch.enable_grad() if self.needs_input_grad else nullcontext()
        try:
            total, count = 0.0, 0
            collected = {n: [] for n in self.metric_names}
            extra: dict = {}
            if self.episodes is not None:   # the same episodes every time: a fresh generator
                gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 +
                                                    (5 if split == "val" else 6))
                batches = ((i, self.episodes.batch("test", gen)) for i in range(len(idx)))
            else:
                batches = data_mod.batches(self.data, idx, max(self.cfg.batch, 256))
            for _, batch in batches:
                batch = self._to_device(batch)
                bs = next(iter(batch.values())).shape[0]
                with grad:
                    loss, env = self._forward_loss(batch, self._inputs(batch, train=False))
                total += float(loss.detach()) * bs
                count += bs
                for n in self.metric_names:
                    collected[n].append(env[n].float().cpu())
                if self.episodes is not None:
                    for k, v in self._episode_extra(batch, env).items():
                        extra[k] = extra.get(k, 0.0) + float(v) * bs
            out = {f"{split}_loss": total / max(1, count)}
            out.update({f"{split}_{k}": v / max(1, count) for k, v in sorted(extra.items())})
            got = {n: torch.cat(v) for n, v in collected.items()}
            for m in self.cfg.metrics:
                out[f"{split}_{m.key}"] = compute_metric(m, got[m.pred], got[m.target])
            return out
        finally:
            self.model.train()

    def _test(self) -> dict:
        best = self.ckdir / "best.safetensors"
        if self.best is not None and best.exists():
            from safetensors.torch import load_file
            self._load_full_states(load_file(str(best)), None)
        return self._evaluate(self.splits.test, "test")

    def _update_best(self, record: dict) -> bool:
        key = self.cfg.monitor
        v = record.get(key)
        if not all(getattr(h, "final", True) for h in self.hooks):
            return False     # pruning still on its way: the best model is a pruned one
        if v is None or (isinstance(v, float) and math.isnan(v)):
            self.bad_epochs += 1
            return False
        if self.best is None:
            better = True
        elif self.cfg.monitor_mode == "max":
            better = v > self.best[key]
        else:
            better = v < self.best[key]
        if better:
            self.best = dict(record)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return better

    # ------------------------------------------------------------------ checkpoints
    def _rng_state(self) -> dict:
        cpu = torch.get_rng_state()
        aug = self.aug_gen.get_state()
        if self.dist.active:
            cpu = D.all_gather_cat(self.dist, cpu[None].to(self.device)).cpu()
            aug = D.all_gather_cat(self.dist, aug[None].to(self.device)).cpu()
        else:
            cpu, aug = cpu[None], aug[None]
        state = {"torch": cpu, "augment": aug, "noise": self.noise_gen.get_state()[None]}
        if self.episodes is not None:
            state["episodes"] = self.episodes.gen.get_state()[None]
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _save(self, tag: str, epoch: int, batch: int, acc: dict | None) -> None:
        """Every process calls this (the RNG states are gathered); the main one writes."""
        self.saves += 1
        rng = self._rng_state()
        weights, optim_state = self._full_states()
        weights = {k: v for k, v in weights.items() if k not in self.constants}
        bad = _non_finite(weights)
        if bad is not None:     # never overwrite a good checkpoint with broken weights
            self._raise_non_finite(f"the weights `{bad}` became NaN or infinite by step "
                                   f"{self.step}")
        try:
            if self.dist.main:
                self._write_checkpoint(tag, epoch, batch, acc, rng, weights, optim_state)
        finally:
            if self.dist.active:   # every process sees the files once this returns
                import torch.distributed
                torch.distributed.barrier()

    def _write_checkpoint(self, tag, epoch, batch, acc, rng, weights, optim_state) -> None:
        state = {
            "epoch": epoch, "batch": batch, "step": self.step, "history": self.history,
            "best": self.best, "bad_epochs": self.bad_epochs, "lrs": self.lrs,
            "optimizer": optim_state, "schedule": self.schedule.state_dict(),
            "rng": rng, "world_size": self.dist.world,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "recipe": self.recipe.state_dict(),
            "curriculum": self.curriculum.state_dict() if self.curriculum is not None else None,
            "accumulators": None if acc is None else {
                "loss_sum": acc["loss_sum"], "count": acc["count"], "seconds": acc["seconds"],
                "extra": dict(acc.get("extra", {})),
                "collected": {n: torch.cat(v) if v else torch.zeros(0)
                              for n, v in acc["collected"].items()}},
        }
        token = f"{self.step}.{self.saves}.{time.time_ns()}"
        ckpt.save_checkpoint(self.ckdir, tag, weights, state, token)

    def _full_states(self) -> tuple:
        """The model's and the optimizer's whole states (gathered from the shards under FSDP:
        every process takes part)."""
        if not getattr(self.dist, "fsdp", False):
            return self.model.state_dict(), self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             get_model_state_dict,
                                                             get_optimizer_state_dict)
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(self.model, options=opts),
                get_optimizer_state_dict(self.model, self.optimizer, options=opts))

    def _load_full_states(self, weights: dict, optim_state: dict | None) -> None:
        if self.constants:
            own = self.model.state_dict()
            weights = {**{k: own[k] for k in self.constants}, **weights}
        if not getattr(self.dist, "fsdp", False):
            self.model.load_state_dict(weights)
            if optim_state is not None:
                self.optimizer.load_state_dict(optim_state)
            return
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             set_model_state_dict,
                                                             set_optimizer_state_dict)
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, weights, options=opts)
        if optim_state is not None:
            set_optimizer_state_dict(self.model, self.optimizer, optim_state, options=opts)

    def _restore(self):
        weights, state = ckpt.load_checkpoint(self.ckdir, "last")
        weights = {k: v for k, v in weights.items() if k not in self.constants}
        from nndsl.train.resume import check_state
        check_state(self, weights, state)     # every field, before any of it is used
        try:
            return self._apply_state(weights, state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError,
                AttributeError) as e:
            raise TrainError(f"cannot resume from the checkpoint in {self.ckdir}: "
                             f"{type(e).__name__}: {e}", code="E1218", hint=ckpt.DAMAGED) \
                from None

    def _apply_state(self, weights: dict, state: dict):
        self._load_full_states(weights, state["optimizer"])
        old_total = state["schedule"].get("total", self.schedule.total)
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler") and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        row = self.dist.rank if rng["torch"].shape[0] == self.dist.world else 0
        torch.set_rng_state(rng["torch"][row].clone())
        self.aug_gen.set_state(rng["augment"][row].clone())
        if "noise" in rng:
            self.noise_gen.set_state(rng["noise"][0].clone())
        if self.episodes is not None:
            self.episodes.gen.set_state(rng["episodes"][0].clone())
        if self.curriculum is not None and state.get("curriculum"):
            self.curriculum.load_state_dict(state["curriculum"])
        if state.get("recipe"):
            self.recipe.load_state_dict(state["recipe"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if state.get("world_size", 1) != self.dist.world:
            self.note(f"the run began with {state.get('world_size', 1)} processes and continues "
                      f"with {self.dist.world}: the trajectory will differ from an "
                      f"uninterrupted run")
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.best = state["best"]
        if self.best is not None and self.cfg.monitor not in self.best:
            self.note(f"the run's best epoch was picked by another value than "
                      f"{self.cfg.monitor}: the best checkpoint starts over")
            self.best = None
        self.bad_epochs = int(state["bad_epochs"])
        self.lrs = list(state.get("lrs") or [])
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if self.schedule.total != old_total and self.schedule.picked.name in (
                "cosine", "one_cycle", "linear"):
            self.note(f"the {self.schedule.picked.name} schedule now spans {self.cfg.epochs} "
                      f"epochs instead of {old_total // max(1, self.steps_per_epoch)}: its "
                      f"remaining steps are stretched to fit")
        if self.dist.main:
            ckpt.write_metrics(self.out / "metrics.jsonl", self.history)
        acc = None
        if state.get("accumulators"):
            a = state["accumulators"]
            acc = {"loss_sum": float(a["loss_sum"]), "count": int(a["count"]),
                   "seconds": float(a["seconds"]), "extra": dict(a.get("extra") or {}),
                   "collected": {n: ([a["collected"][n]] if a["collected"].get(n) is not None
                                     and a["collected"][n].numel() else [])
                                 for n in self.metric_names}}
        where = f"epoch {epoch + 1}, batch {batch + 1}" if batch else f"epoch {epoch + 1}"
        if epoch >= self.cfg.epochs:
            self.note(f"the run in {self.out} already has {epoch} epochs; nothing to do (ask "
                      f"for more with --epochs)")
        else:
            self.note(f"resuming {self.out} at {where} of {self.cfg.epochs}")
        return epoch, batch, acc

    # ------------------------------------------------------------------ Ctrl-C
    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.con.stop_progress()
            if self.dist.main:
                self.con.print("stopping after this step to save a checkpoint "
                               "(Ctrl-C again to abort without saving)")
        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, old) -> None:
        if old is not None:
            signal.signal(signal.SIGINT, old)
