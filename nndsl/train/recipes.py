"""Training recipes beyond plain supervised learning: ``recipe = gan(...)`` in a train section.

A recipe decides what a training step is. The default (``supervised``) evaluates the section's
loss on the model's outputs, inputs and targets. The others:

- ``vae(decoder="NAME")``: supervised on the spec's own ELBO (``mse(recon, image) +
  kl_normal(mu, logvar)``), with the reparameterization noise a random input
  (``input eps: f32[N, k] ~ normal()``) drawn fresh for every batch. ``decoder`` names a model of
  the same file that maps ``z ~ normal()`` to a sample; it shares the VAE's weights by name.
- ``gan(discriminator="NAME", loss=...)``: the trained model is the generator (its inputs are
  all random); the data feeds the discriminator. Each batch takes ``d_steps`` discriminator steps,
  then one generator step. Losses: ``minimax`` (the generator minimizes log(1 − D(G(z)))),
  ``non_saturating`` (it maximizes log D(G(z))), ``wgan_gp`` (Wasserstein critic with a gradient
  penalty of weight ``gp`` on interpolates).
- ``ddpm(steps=1000, beta_start=1e-4, beta_end=0.02)``: denoising diffusion (Ho et al. 2020). The
  model maps a noisy sample and its integer timestep to the noise; the step draws t and ε, forms
  x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε and regresses ε. Data in [0, 1] is mapped to [−1, 1].
- ``distill(teacher="teacher.nn", weights="...", temperature=4, alpha=0.5)``: knowledge
  distillation (Hinton et al. 2015): (1 − α) · the section's loss + α · T² · KL(teacher ‖ student)
  of the temperature-softened distributions.
- ``contrastive(temperature=0.1)``: two augmented views of each sample (the section's
  ``augment``), and InfoNCE between their embeddings: the other samples are the negatives.
- ``maml(inner_steps=1, inner_lr=0.4, first_order=false)``: model-agnostic meta-learning (Finn
  et al. 2017) on the section's ``episodes``: the weights take ``inner_steps`` gradient steps
  of the section's loss on each episode's support set (``torch.func``: ``functional_call`` and
  ``grad``), and the loss on its queries with the adapted weights trains the initial ones,
  through the inner steps (second order) or, with ``first_order``, treating the inner
  gradients as constants. ``adapt`` lists the scopes the inner steps change (all trained
  weights by default); ``eval_steps`` (0: as many as ``inner_steps``) the steps at evaluation.

Generative recipes (vae, gan, ddpm) can draw samples (:func:`sample`) and report ``mmd`` each
epoch: the squared maximum mean discrepancy between generated and held-out real samples (Gaussian
kernels at three bandwidths around the median distance), lower is better.
"""

from __future__ import annotations

import math
from pathlib import Path

from nndsl.errors import NndslError, TrainError
from nndsl.ir.types import FLOAT_DTYPES, INT_DTYPES
from nndsl.train.choices import REQUIRED, Choice, Picked
from nndsl.train.scopes import in_scope, scope_names

GAN_LOSSES = ("minimax", "non_saturating", "wgan_gp")


def _check_gan(a):
    if a["loss"] not in GAN_LOSSES:
        return f"`loss` is one of {', '.join(GAN_LOSSES)}, got {a['loss']!r}"
    if a["d_steps"] < 1:
        return "`d_steps` must be at least 1"
    return None


def _check_ddpm(a):
    if not 0 < a["beta_start"] < a["beta_end"] < 1:
        return "needs 0 < beta_start < beta_end < 1"
    if a["steps"] < 2:
        return "`steps` must be at least 2"
    return None


def _check_distill(a):
    if not 0 <= a["alpha"] <= 1:
        return "`alpha` must be in [0, 1]"
    if a["temperature"] <= 0:
        return "`temperature` must be positive"
    return None


RECIPES: dict[str, Choice] = {c.name: c for c in [
    Choice("supervised", {}, "the train section's loss on outputs and targets"),
    Choice("vae", {"decoder": ""}, "variational autoencoder: the spec's ELBO; `decoder` names "
           "the model that samples"),
    Choice("gan", {"discriminator": REQUIRED, "loss": "non_saturating", "d_steps": 1,
                   "gp": 10.0}, "generative adversarial training", positional=("discriminator",),
           check=_check_gan),
    Choice("ddpm", {"steps": 0, "beta_start": 1e-4, "beta_end": 0.02, "rescale": True},
           "denoising diffusion: noise-prediction training and ancestral sampling",
           check=lambda a: _check_ddpm({**a, "steps": a["steps"] or 1000})),
    Choice("distill", {"teacher": REQUIRED, "model": "", "weights": "", "temperature": 4.0,
                       "alpha": 0.5}, "knowledge distillation from a teacher spec",
           positional=("teacher",), check=_check_distill),
    Choice("contrastive", {"temperature": 0.1}, "two augmented views, InfoNCE between their "
           "embeddings"),
    Choice("maml", {"inner_steps": 1, "inner_lr": 0.4, "first_order": False, "eval_steps": 0,
                    "adapt": ()}, "model-agnostic meta-learning on episodes: adapt on the "
           "support set, learn from the queries", positional=("inner_steps", "inner_lr",
                                                              "first_order")),
]}

# recipes whose loss is their own (a `loss` entry would be ignored: it is an error)
OWN_LOSS = ("gan", "ddpm", "contrastive")
GENERATIVE = ("vae", "gan", "ddpm")


def _err(msg, span, hint=None, code="E1224"):
    return TrainError(msg, span=span, code=code, hint=hint)


# ------------------------------------------------------------------ compile-time checks

def check(recipe: Picked, compiled, span, base: Path) -> dict:
    """Check ``recipe`` against the model; return what the loop needs to know:
    ``data_inputs`` (inputs the data set feeds), ``output`` and other recipe facts."""
    inputs, outputs = compiled.input_types, compiled.output_types
    random = compiled.random_inputs
    fed = {n: t for n, t in inputs.items() if n not in random}
    name, a = recipe.name, recipe.args
    info = {"data_inputs": fed}
    if name == "vae":
        if not random:
            raise _err("the vae recipe needs a random input for the reparameterization noise",
                       span, "declare e.g. `input eps: f32[N, latent] ~ normal()` and compute "
                             "z = mu + exp(0.5 * logvar) * eps")
        if a["decoder"]:
            info["sampler"] = _other_model(compiled, a["decoder"], span, "decoder")
    elif name == "gan":
        if fed:
            raise _err(f"in the gan recipe the trained model is the generator, whose inputs are "
                       f"all random; `{next(iter(fed))}` is not", span,
                       f"declare `input {next(iter(fed))}: {fed[next(iter(fed))]} ~ normal()`")
        if len(outputs) != 1:
            raise _err(f"a generator has one output (the sample), `{compiled.name}` has "
                       f"{len(outputs)}", span)
        d = _other_model(compiled, a["discriminator"], span, "discriminator")
        (gout, gt), = outputs.items()
        if len(d.input_types) != 1:
            raise _err(f"the discriminator `{d.name}` must have one input (a sample), it has "
                       f"{len(d.input_types)}", span)
        (din, dt), = d.input_types.items()
        if dt.dtype != gt.dtype or len(dt.shape) != len(gt.shape) or any(
                x != y for x, y in zip(dt.shape[1:], gt.shape[1:])):
            raise _err(f"the generator's output `{gout}`: {gt} does not fit the "
                       f"discriminator's input `{din}`: {dt}", span)
        if len(d.output_types) != 1:
            raise _err(f"the discriminator `{d.name}` must have one output (a score per sample)",
                       span)
        (dout, dot), = d.output_types.items()
        if dot.dtype not in FLOAT_DTYPES or not (dot.rank == 1 or dot.rank == 2
                                                 and dot.shape[1] == 1):
            raise _err(f"the discriminator's output `{dout}` must be one score per sample "
                       f"([N] or [N, 1]), it is {dot}", span)
        info.update(data_inputs={din: dt}, discriminator=d, sample_output=gout)
    elif name == "ddpm":
        floats = {n: t for n, t in inputs.items() if t.dtype in FLOAT_DTYPES}
        ints = {n: t for n, t in inputs.items() if t.dtype in INT_DTYPES and t.rank == 1}
        if len(floats) != 1 or len(ints) != 1 or len(inputs) != 2:
            raise _err("a ddpm denoiser has two inputs: the noisy sample (floats) and its "
                       "timestep (i64[N])", span,
                       "input x: f32[N, 1, 8, 8]  input t: i64[N] ~ randint(0, steps)")
        (x, xt), (t, _) = next(iter(floats.items())), next(iter(ints.items()))
        if len(outputs) != 1 or not _same(next(iter(outputs.values())), xt):
            raise _err(f"a ddpm denoiser has one output, the predicted noise, of the sample's "
                       f"type {xt}", span)
        steps = a["steps"]
        declared = random.get(t)
        if declared and declared["dist"] == "randint":
            if declared["low"] != 0 or (steps and declared["high"] != steps):
                raise _err(f"the timestep input `{t}` is drawn from randint({declared['low']}, "
                           f"{declared['high']}), but the recipe has {steps} steps", span,
                           f"declare `input {t}: i64[N] ~ randint(0, {steps})`")
            steps = steps or declared["high"]
        recipe.args["steps"] = steps or 1000
        info.update(data_inputs={x: xt}, sample_input=x, time_input=t,
                    sample_output=next(iter(outputs)))
    elif name == "distill":
        teacher = _teacher(a, span, base)
        for n, t in compiled.input_types.items():
            if n not in teacher.input_types or not _same(teacher.input_types[n], t):
                raise _err(f"the teacher `{teacher.name}` must take the student's input "
                           f"`{n}`: {t}", span, "teacher inputs: " + ", ".join(
                               f"{k}: {v}" for k, v in teacher.input_types.items()))
        shared = [n for n, t in outputs.items() if n in teacher.output_types
                  and _same(teacher.output_types[n], t)]
        if not shared:
            raise _err(f"the teacher `{teacher.name}` has no output with the name and type of "
                       f"one of the student's ({', '.join(f'{n}: {t}' for n, t in outputs.items())})",
                       span, "name the logits the same in both specs")
        info.update(teacher=teacher, distill_output=shared[0])
    elif name == "maml":
        _check_maml(recipe, compiled, span)
    elif name == "contrastive":
        emb = [n for n, t in outputs.items() if t.dtype in FLOAT_DTYPES and t.rank == 2]
        if len(emb) != 1:
            raise _err("the contrastive recipe needs one embedding output of shape [N, D]",
                       span, "outputs: " + ", ".join(f"{n}: {t}" for n, t in outputs.items()))
        info.update(embedding=emb[0])
    return info


def _trainable_names(compiled) -> list:
    from nndsl.ir.weights import spec_params
    return [n.name for n in spec_params(compiled.graph) if n.attr["trainable"]]


def _check_maml(recipe: Picked, compiled, span) -> None:
    a = recipe.args
    if not 1 <= a["inner_steps"] <= 10_000:
        raise _err(f"`inner_steps` of maml must be an integer from 1 to 10,000, got "
                   f"{a['inner_steps']}", span, "MAML takes a few steps: 1 to 10", code="E1233")
    if not 0 <= a["eval_steps"] <= 10_000:
        raise _err(f"`eval_steps` of maml must be an integer from 0 (as inner_steps) to 10,000, "
                   f"got {a['eval_steps']}", span, code="E1233")
    if not (a["inner_lr"] > 0 and a["inner_lr"] < 1e6):
        raise _err(f"`inner_lr` of maml must be a positive number, got {a['inner_lr']}", span,
                   "for example inner_lr=0.4", code="E1233")
    names = _trainable_names(compiled)
    if not names:
        raise _err(f"the maml recipe adapts the model's parameters on each support set, and "
                   f"`{compiled.name}` has none to adapt", span,
                   "give the model layers with weights (linear, conv2d, ...)", code="E1233")
    adapt = a["adapt"]
    if isinstance(adapt, str):
        adapt = a["adapt"] = (adapt,)
    from nndsl.train.choices import suggest
    for sc in adapt:
        if not isinstance(sc, str):
            raise _err("`adapt` of maml is a list of scope names in quotes, like [\"head\"]",
                       span, code="E1233")
        if not any(in_scope(n, sc) for n in names):
            scopes = scope_names(compiled)
            raise _err(f"maml: no trained parameters under scope `{sc}` to adapt", span,
                       suggest(sc, scopes) + "scopes: " + ", ".join(sorted(
                           {x.split(".")[0] for x in scopes})), code="E1233")


def check_adapt_frozen(recipe: Picked, compiled, freeze: list, span) -> None:
    """Refuse a maml recipe whose parameters to adapt are all frozen."""
    adapt = recipe.args["adapt"]
    left = [n for n in _trainable_names(compiled)
            if not any(in_scope(n, f) for f in freeze)
            and (not adapt or any(in_scope(n, sc) for sc in adapt))]
    if not left:
        raise _err("maml: every parameter it would adapt is frozen", span,
                   "adapt scopes that `freeze` leaves trained", code="E1233")


def _same(a, b) -> bool:
    return a.dtype == b.dtype and len(a.shape) == len(b.shape) and all(
        x == y for x, y in zip(a.shape, b.shape))


def _other_model(compiled, name: str, span, role: str):
    import nndsl
    try:   # with the parameter values given for the file: the other model takes its own
        return nndsl.compile(compiled.source, model=name, params=compiled.overrides or None,
                             opt="O1")
    except NndslError as e:
        raise _err(f"the {role} `{name}`: {e.message}", span, e.hint) from None


def _teacher(a, span, base: Path):
    import nndsl
    from nndsl.train.paths import spec_path
    path = spec_path(a["teacher"], base, span, "teacher spec", "E1225", suffixes=(".nn",),
                     under_base=True)
    try:
        return nndsl.compile(path, model=a["model"] or None, opt="O1")
    except NndslError as e:
        raise _err(f"the teacher {a['teacher']}: {e.message}", span, e.hint) from None


# ------------------------------------------------------------------ running

class Supervised:
    """The loss of the train section, on the model's outputs, inputs and targets."""

    name = "supervised"
    custom_step = False
    generative = False

    def __init__(self, run, info: dict):
        self.run, self.info = run, info

    def prepare_training(self) -> None:
        """Set up what only training needs (other models' optimizers, a teacher)."""

    def forward_loss(self, batch: dict, xs: dict, train: bool):
        from nndsl.train.losses import evaluate_loss
        run = self.run
        outs = run.run_model(**xs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        env = dict(batch)
        env.update(xs)
        env.update(zip(run.output_names, outs))
        loss, _ = evaluate_loss(run.cfg.loss, env)
        return loss, env

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def episode_extra(self) -> dict:
        """What the last step measured on its episode besides the query accuracy."""
        return {}

    def sample(self, n: int, gen):
        raise TrainError(f"the {self.name} recipe does not generate samples", code="E1224")


class VAE(Supervised):
    name = "vae"
    generative = True

    def __init__(self, run, info):
        super().__init__(run, info)
        self.decoder = None
        sampler = info.get("sampler")
        if sampler is not None:
            self.decoder = sampler.to_torch(seed=0).to(run.device).eval()
            self.decoder.requires_grad_(False)

    def sample(self, n: int, gen):
        import torch

        from nndsl.backends.torch.inputs import draw_missing
        if self.decoder is None:
            raise TrainError("the vae recipe samples with its `decoder` model: name it, e.g. "
                             "`recipe = vae(decoder=\"vae_decoder\")`", code="E1224")
        own = self.run.model.state_dict()
        sd = self.decoder.state_dict()
        missing = [k for k in sd if k not in own or own[k].shape != sd[k].shape]
        if missing:
            raise TrainError(f"the decoder's weights {', '.join(missing[:3])} are not in the "
                             f"VAE under the same names and shapes", code="E1224",
                             hint="apply the same decoder block with the same `as` name in both "
                                  "models")
        self.decoder.load_state_dict({k: own[k] for k in sd})
        sampler = self.info["sampler"]
        normal = {"dist": "normal", "mean": 0.0, "std": 1.0}    # for a z declared without one
        dists = {k: sampler.random_inputs.get(k) or normal for k in sampler.input_names}
        xs = draw_missing(sampler.input_types, dists, {}, gen, self.run.device, batch=n)
        with torch.no_grad():
            out = self.decoder(**xs)
        return out[0] if isinstance(out, tuple) else out


class Distill(Supervised):
    name = "distill"

    def prepare_training(self):
        run, info = self.run, self.info
        a = run.cfg.recipe.args
        self.T, self.alpha = float(a["temperature"]), float(a["alpha"])
        teacher = info["teacher"]
        self.teacher = teacher.to_torch(seed=run.cfg.seed + 17).to(run.device).eval()
        if a["weights"]:
            from nndsl.train.paths import spec_path
            path = spec_path(a["weights"], run.cfg.base, run.cfg.spans.get("recipe"),
                             "the teacher's weights", "E1225", suffixes=(".safetensors",))
            try:
                self.teacher.load_weights(path)
            except NndslError as e:
                raise TrainError(f"the teacher's weights: {e.message}", code="E1225",
                                 span=run.cfg.spans.get("recipe"), hint=e.hint,
                                 notes=e.notes) from None
            run.note(f"distill: teacher `{teacher.name}` ({teacher.param_count():,} parameters) "
                     f"from {path}")
        else:
            run.note(f"distill: the teacher `{teacher.name}` has no `weights`: it keeps its "
                     f"random initial weights")
        self.teacher.requires_grad_(False)
        self.output = info["distill_output"]

    def forward_loss(self, batch, xs, train):
        import torch
        import torch.nn.functional as F
        loss, env = super().forward_loss(batch, xs, train)
        with torch.no_grad():
            t_out = self.teacher(**xs)
        if isinstance(t_out, tuple):
            t_out = t_out[list(self.info["teacher"].output_names).index(self.output)]
        s = env[self.output]
        kd = F.kl_div(F.log_softmax(s.float() / self.T, dim=-1),
                      F.log_softmax(t_out.float() / self.T, dim=-1), reduction="batchmean",
                      log_target=True) * self.T ** 2
        env["teacher_" + self.output] = t_out
        return (1 - self.alpha) * loss + self.alpha * kd, env


class Contrastive(Supervised):
    name = "contrastive"

    def prepare_training(self):
        run = self.run
        if not run.cfg.augment:
            raise TrainError("the contrastive recipe makes two views of each sample with the "
                             "section's `augment`, and it has none", code="E1224",
                             span=run.cfg.spans.get("recipe"),
                             hint="add e.g. `augment = [noise(0.2), crop(pad=1)]`")
        self.temperature = float(run.cfg.recipe.args["temperature"])

    def forward_loss(self, batch, xs, train):
        from nndsl.train import augment as augment_mod
        from nndsl.train.losses import loss_value
        run = self.run
        gen = run.aug_gen if train else run.eval_gen
        views = []
        for _ in range(2):
            v = dict(xs)
            for n in run.float_inputs:
                if n in batch:
                    v[n] = augment_mod.apply(run.cfg.augment, batch[n], gen)
            out = run.run_model(**v)
            out = out if isinstance(out, tuple) else (out,)
            views.append(dict(zip(run.output_names, out)))
        e = self.info["embedding"]
        loss = loss_value("info_nce", [views[0][e], views[1][e]],
                          {"temperature": self.temperature, "symmetric": True})
        return loss, {**batch, **views[0]}


class DDPM(Supervised):
    name = "ddpm"
    generative = True

    def __init__(self, run, info):
        super().__init__(run, info)
        import torch
        a = run.cfg.recipe.args
        self.steps = int(a["steps"])
        self.rescale = bool(a["rescale"])
        betas = torch.linspace(float(a["beta_start"]), float(a["beta_end"]), self.steps,
                               dtype=torch.float64)
        self.betas = betas
        self.alpha_bar = torch.cumprod(1 - betas, 0)
        self.x, self.t = info["sample_input"], info["time_input"]

    def noisy(self, x0, t, eps):
        ab = self.alpha_bar.to(x0.device)[t].to(x0.dtype)
        ab = ab.reshape([-1] + [1] * (x0.dim() - 1))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def forward_loss(self, batch, xs, train):
        import torch
        import torch.nn.functional as F
        run = self.run
        gen = run.noise_gen if train else run.eval_gen
        x0 = batch[self.x].float()
        if self.rescale:
            x0 = x0 * 2 - 1
        n = x0.shape[0]
        t = torch.randint(0, self.steps, (n,), generator=gen).to(x0.device)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        out = run.run_model(**{self.x: self.noisy(x0, t, eps), self.t: t})
        pred = out[0] if isinstance(out, tuple) else out
        return F.mse_loss(pred.float(), eps), {**batch, self.info["sample_output"]: pred}

    def sample(self, n: int, gen):
        import torch
        run = self.run
        shape = [n] + [int(d) for d in run.c.input_types[self.x].shape[1:]]
        x = torch.randn(shape, generator=gen).to(run.device)
        model = run.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                for step in reversed(range(self.steps)):
                    t = torch.full((n,), step, dtype=torch.long, device=run.device)
                    eps = model(**{self.x: x, self.t: t})
                    eps = eps[0] if isinstance(eps, tuple) else eps
                    beta = float(self.betas[step])
                    ab = float(self.alpha_bar[step])
                    x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
                    if step > 0:
                        x = x + math.sqrt(beta) * torch.randn(shape, generator=gen).to(x.device)
        finally:
            model.train(was)
        return ((x.clamp(-1, 1) + 1) / 2) if self.rescale else x


class GAN(Supervised):
    name = "gan"
    custom_step = True
    generative = True

    def __init__(self, run, info):
        super().__init__(run, info)
        a = run.cfg.recipe.args
        self.loss_kind, self.d_steps, self.gp = a["loss"], int(a["d_steps"]), float(a["gp"])
        self.d_in = next(iter(info["discriminator"].input_names))

    def prepare_training(self):
        from nndsl.train.optim import build_optimizer
        from nndsl.train.schedules import Schedule
        run = self.run
        if run.dist.active:
            raise TrainError("the gan recipe trains on one process (--ddp is not supported "
                             "for it yet)", code="E1224")
        self.d = self.info["discriminator"].to_torch(seed=run.cfg.seed + 1).to(run.device)
        self.d.train()
        self.d_opt = build_optimizer(run.cfg.optimizer, list(self.d.parameters()))
        self.d_schedule = Schedule(run.cfg.schedule, self.d_opt, run.schedule.total,
                                   run.steps_per_epoch)

    def _z(self, n: int, gen):
        from nndsl.backends.torch.inputs import draw_missing
        c = self.run.c
        return draw_missing(c.input_types, c.random_inputs, {}, gen, self.run.device, batch=n)

    def _gen(self, z):
        out = self.run.run_model(**z)
        return out[0] if isinstance(out, tuple) else out

    def _score(self, x):
        return self.d(**{self.d_in: x}).reshape(-1).float()

    def d_loss(self, real, fake, with_penalty: bool = True):
        import torch
        import torch.nn.functional as F
        sr, sf = self._score(real), self._score(fake)
        if self.loss_kind == "wgan_gp":
            loss = sf.mean() - sr.mean()
            if with_penalty and self.gp > 0:
                gen = self.run.noise_gen
                e = torch.rand([real.shape[0]] + [1] * (real.dim() - 1),
                               generator=gen).to(real.device)
                mix = (e * real + (1 - e) * fake).requires_grad_(True)
                with torch.enable_grad():
                    g, = torch.autograd.grad(self._score(mix).sum(), mix, create_graph=True)
                loss = loss + self.gp * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
            return loss
        return F.binary_cross_entropy_with_logits(sr, torch.ones_like(sr)) + \
            F.binary_cross_entropy_with_logits(sf, torch.zeros_like(sf))

    def g_loss(self, fake):
        import torch
        import torch.nn.functional as F
        s = self._score(fake)
        if self.loss_kind == "wgan_gp":
            return -s.mean()
        if self.loss_kind == "minimax":     # minimize log(1 - D(G(z))) = -BCE(s, 0)
            return -F.binary_cross_entropy_with_logits(s, torch.zeros_like(s))
        return F.binary_cross_entropy_with_logits(s, torch.ones_like(s))

    def train_step(self, batch: dict, xs: dict) -> tuple:
        run = self.run
        real = batch[self.d_in].float()
        n = real.shape[0]
        d_total = 0.0
        for _ in range(self.d_steps):
            fake = self._gen(self._z(n, run.noise_gen)).detach()
            self.d_opt.zero_grad(set_to_none=True)
            dl = self.d_loss(real, fake)
            dl.backward()
            if run.cfg.clip_grad:
                import torch
                torch.nn.utils.clip_grad_norm_(self.d.parameters(), run.cfg.clip_grad)
            self.d_opt.step()
            d_total += float(dl.detach())
        self.d_opt.zero_grad(set_to_none=True)
        run.optimizer.zero_grad(set_to_none=True)
        gl = self.g_loss(self._gen(self._z(n, run.noise_gen)))
        gl.backward()
        self.d.zero_grad(set_to_none=True)
        self.d_schedule.step()
        return gl, {"d_loss": d_total / self.d_steps}

    def forward_loss(self, batch, xs, train):
        import torch
        real = batch[self.d_in].float()
        fake = self._gen(self._z(real.shape[0], self.run.eval_gen))
        with torch.enable_grad():
            dl = self.d_loss(real, fake.detach(), with_penalty=False)
        return self.g_loss(fake), {"d_loss": dl}

    def state_dict(self) -> dict:
        return {"discriminator": dict(self.d.state_dict()),
                "d_optimizer": self.d_opt.state_dict(),
                "d_schedule": self.d_schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.d.load_state_dict(state["discriminator"])
        self.d_opt.load_state_dict(state["d_optimizer"])
        self.d_schedule.load_state_dict(state["d_schedule"])

    def sample(self, n: int, gen):
        import torch
        was = self.run.model.training
        self.run.model.eval()
        try:
            with torch.no_grad():
                return self._gen(self._z(n, gen))
        finally:
            self.run.model.train(was)


class MAML(Supervised):
    """MAML on episodes: the inner steps adapt a copy of the weights (a dict of tensors, run
    with ``torch.func.functional_call``; the gradients from ``torch.func.grad``) on the support
    set; the query loss with the adapted weights is the step's loss, and its backward pass goes
    through the inner steps to the initial weights (unless ``first_order``)."""

    name = "maml"

    def __init__(self, run, info):
        super().__init__(run, info)
        a = run.cfg.recipe.args
        self.steps, self.lr = int(a["inner_steps"]), float(a["inner_lr"])
        self.eval_steps = int(a["eval_steps"]) or self.steps
        self.first_order = bool(a["first_order"])
        self.scopes = tuple(a["adapt"])
        self.before = None

    def prepare_training(self):
        run = self.run
        if run.dist.active:
            raise TrainError("the maml recipe trains on one process (--ddp is not supported "
                             "for it yet)", code="E1233")
        self.adapt = [n for n, p in run.model.named_parameters() if p.requires_grad and (
            not self.scopes or any(in_scope(n, s) for s in self.scopes))]
        if not self.adapt:
            raise TrainError("maml: every parameter it would adapt is frozen", code="E1233",
                             span=run.cfg.spans.get("recipe"))
        ep = run.cfg.episodes
        self.x, self.target = ep.roles["x"], ep.target
        if run.cfg.compile:
            run.note("maml runs the model through torch.func, not torch.compile")

    def _loss(self, params: dict, x, y):
        from torch.func import functional_call

        from nndsl.train.losses import evaluate_loss
        run = self.run
        outs = functional_call(run.model, params, (), {self.x: x})
        outs = outs if isinstance(outs, tuple) else (outs,)
        env = {self.x: x, self.target: y, **dict(zip(run.output_names, outs))}
        loss, _ = evaluate_loss(run.cfg.loss, env)
        return loss, env

    def adapted(self, x, y, steps: int) -> dict:
        """The adapted weights after ``steps`` inner steps on the support set (x, y)."""
        from torch.func import grad
        params = dict(self.run.model.named_parameters())
        fast = {n: params[n] for n in self.adapt}

        def inner(weights):
            return self._loss(weights, x, y)[0].float()
        for _ in range(steps):
            g = grad(inner)(fast)
            fast = {n: fast[n] - self.lr * (g[n].detach() if self.first_order else g[n])
                    for n in fast}
        return fast

    def forward_loss(self, batch, xs, train):
        import torch

        from nndsl.train.episodes import SUPPORT
        sx, sy = batch[SUPPORT + self.x], batch[SUPPORT + self.target]
        qx, qy = xs[self.x], batch[self.target]
        ways = int(sy.max()) + 1
        with torch.no_grad():
            _, env0 = self._loss({}, qx, qy)
        scores = env0[self.run.cfg.episodes.scores].float()
        self.before = float((scores[:, :ways].argmax(-1) == qy).float().mean())
        fast = self.adapted(sx, sy, self.steps if train else self.eval_steps)
        loss, env = self._loss(fast, qx, qy)
        return loss, {**batch, **env}

    def episode_extra(self) -> dict:
        return {"query_accuracy_before": self.before} if self.before is not None else {}


RUNTIME = {"supervised": Supervised, "vae": VAE, "gan": GAN, "ddpm": DDPM, "distill": Distill,
           "contrastive": Contrastive, "maml": MAML}


def runtime(run, info: dict) -> Supervised:
    picked = run.cfg.recipe
    return RUNTIME[picked.name if picked else "supervised"](run, info)


# ------------------------------------------------------------------ sample quality

def mmd(x, y) -> float:
    """Unbiased squared MMD between samples ``x`` and ``y`` ([n, ...], flattened), with a sum of
    Gaussian kernels at 0.5, 1 and 2 times the median pairwise distance of ``y``."""
    import torch
    x = x.detach().flatten(1).double().cpu()
    y = y.detach().flatten(1).double().cpu()
    dyy = torch.cdist(y, y)
    med = dyy[~torch.eye(len(y), dtype=torch.bool)].median().clamp_min(1e-6)
    dxx, dxy = torch.cdist(x, x), torch.cdist(x, y)

    def k(d):
        return sum(torch.exp(-(d ** 2) / (2 * (s * med) ** 2)) for s in (0.5, 1.0, 2.0))

    n, m = len(x), len(y)
    kxx = (k(dxx).sum() - k(torch.zeros(())) * n) / (n * (n - 1))
    kyy = (k(dyy).sum() - k(torch.zeros(())) * m) / (m * (m - 1))
    return float(kxx + kyy - 2 * k(dxy).mean())
