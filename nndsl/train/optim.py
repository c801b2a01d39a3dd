"""Optimizers: the table of names a train section may use, and building them.

PyTorch's own (``torch.optim``) where it has one; LAMB, Lookahead and SAM are written here
(:mod:`nndsl.train.extra_optim`) after their papers. ``lookahead`` and ``sam`` wrap another
optimizer: ``lookahead(adam(lr=1e-3), k=5, alpha=0.5)``, ``sam(sgd(lr=0.1, momentum=0.9))``.
"""

from __future__ import annotations

from nndsl.train.choices import REQUIRED, Choice, Picked

BETAS = (0.9, 0.999)


def _positive(key):
    def check(args):
        v = args.get(key)
        if v is not None and v <= 0:
            return f"`{key}` must be positive, got {v}"
        return None
    return check


def _sgd_check(args):
    if args["nesterov"] and (args["momentum"] <= 0 or args["dampening"] != 0):
        return "nesterov needs momentum > 0 and dampening = 0"
    return None


OPTIMIZERS: dict[str, Choice] = {c.name: c for c in [
    Choice("sgd", {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                   "weight_decay": 0.0}, "stochastic gradient descent, with momentum / Nesterov",
           check=_sgd_check),
    Choice("adam", {"lr": 1e-3, "betas": BETAS, "eps": 1e-8, "weight_decay": 0.0,
                    "amsgrad": False}, "Adam (L2 weight decay added to the gradient)"),
    Choice("adamw", {"lr": 1e-3, "betas": BETAS, "eps": 1e-8, "weight_decay": 0.01,
                     "amsgrad": False}, "Adam with decoupled weight decay"),
    Choice("adagrad", {"lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0, "eps": 1e-10,
                       "initial_accumulator_value": 0.0}, "AdaGrad"),
    Choice("rmsprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                       "momentum": 0.0, "centered": False}, "RMSprop"),
    Choice("radam", {"lr": 1e-3, "betas": BETAS, "eps": 1e-8, "weight_decay": 0.0,
                     "decoupled_weight_decay": False}, "rectified Adam"),
    Choice("lamb", {"lr": 1e-3, "betas": BETAS, "eps": 1e-6, "weight_decay": 0.0},
           "layer-wise adaptive moments (You et al., 2020)"),
    Choice("lookahead", {"inner": REQUIRED, "k": 5, "alpha": 0.5},
           "k fast steps of the inner optimizer, then slow weights move alpha of the way "
           "(Zhang et al., 2019)", positional=("inner",), nested=("inner",),
           check=lambda a: (None if a["k"] >= 1 and 0 < a["alpha"] <= 1
                            else "needs k >= 1 and 0 < alpha <= 1")),
    Choice("sam", {"inner": REQUIRED, "rho": 0.05, "adaptive": False},
           "sharpness-aware minimization: the inner step uses the gradient at the worst "
           "nearby point (Foret et al., 2021)", positional=("inner",), nested=("inner",),
           check=_positive("rho")),
]}

WRAPPERS = ("lookahead", "sam")


def innermost(p: Picked) -> Picked:
    while p.name in WRAPPERS:
        p = p.args["inner"]
    return p


def with_lr(p: Picked, lr: float) -> Picked:
    """``p`` with the learning rate of its innermost optimizer replaced."""
    if p.name in WRAPPERS:
        return Picked(p.name, {**p.args, "inner": with_lr(p.args["inner"], lr)}, p.span)
    return Picked(p.name, {**p.args, "lr": float(lr)}, p.span)


def build_optimizer(p: Picked, params):
    import torch

    from nndsl.train import extra_optim
    a = dict(p.args)
    if p.name == "lookahead":
        return extra_optim.Lookahead(build_optimizer(a["inner"], params), k=a["k"],
                                     alpha=a["alpha"])
    if p.name == "sam":
        return extra_optim.SAM(build_optimizer(a["inner"], params), rho=a["rho"],
                               adaptive=a["adaptive"])
    if "betas" in a:
        a["betas"] = tuple(float(b) for b in a["betas"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
           "radam": torch.optim.RAdam, "lamb": extra_optim.Lamb}[p.name]
    return cls(params, **a)
