"""Robustness to adversarial perturbations: accuracy under FGSM and PGD attacks.

Both attacks come from captum (``captum.robust.FGSM``, ``captum.robust.PGD``) and maximize the
cross-entropy of the model's scores against the true label within an L∞ ball of radius ``eps``
around each sample, clipped to the range the data set's values span (for images in [0, 1],
that range). FGSM (Goodfellow et al. 2015) takes one signed-gradient step of size ``eps``;
PGD (Madry et al. 2018) takes ``steps`` steps of ``2.5 · eps / steps``, projecting back onto
the ball after each, from the clean sample (no random start, so the table is reproducible).
A binary classifier's one logit z is scored as the two classes (0, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.explain.common import (Scores, bad_option, does_not_fit, predictions, split_inputs,
                                  unknown_choice)

ATTACKS = ("fgsm", "pgd")
SOURCE = {"fgsm": "captum.robust.FGSM", "pgd": "captum.robust.PGD"}


@dataclass
class RobustResult:
    """Accuracy on clean samples and under each attack at each radius."""

    clean_accuracy: float
    rows: list            # {"attack", "eps", "accuracy"}, in the order asked
    samples: int
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"clean_accuracy": self.clean_accuracy, "samples": self.samples,
                "results": list(self.rows), **self.info}

    def table(self) -> str:
        attacks = list(dict.fromkeys(r["attack"] for r in self.rows))
        eps = list(dict.fromkeys(r["eps"] for r in self.rows))
        acc = {(r["attack"], r["eps"]): r["accuracy"] for r in self.rows}
        head = f"{'eps':>8}  " + "  ".join(f"{a:>8}" for a in attacks)
        lines = [head, f"{'0 (clean)':>8}  " + "  ".join(f"{self.clean_accuracy:8.3f}"
                                                          for _ in attacks)]
        for e in eps:
            lines.append(f"{e:>8g}  " + "  ".join(f"{acc[(a, e)]:8.3f}" for a in attacks))
        return "\n".join(lines)


def _loss(scores, labels):
    """Per-sample cross-entropy of the scores (logits): what the attacks increase (captum's
    default, -log(output), expects probabilities)."""
    import torch.nn.functional as F
    return F.cross_entropy(scores, labels, reduction="none")


def parse_attacks(text) -> list:
    names = [a.strip() for a in (text.split(",") if isinstance(text, str) else text)]
    names = [a for a in names if a]
    if not names:
        raise bad_option("--attack names no attack", hint="attacks: " + ", ".join(ATTACKS))
    for a in names:
        if a not in ATTACKS:
            raise unknown_choice("attack", a, ATTACKS, code="E1702")
    return list(dict.fromkeys(names))


def parse_eps(text) -> list:
    """``--eps 0.05,0.1``: radii in (0, 1]."""
    import math
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    out = []
    for p in parts:
        try:
            v = float(p)
        except (TypeError, ValueError):
            raise bad_option(f"--eps takes numbers in (0, 1], not `{str(p)[:40]}`",
                             hint="for example --eps 0.05,0.1") from None
        if not math.isfinite(v) or not 0 < v <= 1:
            raise bad_option(f"--eps {p}: a radius must lie in (0, 1]",
                             hint="radii are in the units of the (standardized) inputs; "
                                  "images lie in [0, 1]")
        out.append(v)
    if not out:
        raise bad_option("--eps names no radius", hint="for example --eps 0.05,0.1")
    return list(dict.fromkeys(out))


def robustness(compiled, samples, attacks=("fgsm", "pgd"), eps=(0.05, 0.1), *, module=None,
               weights=None, output: str | None = None, steps: int = 10,
               batch: int = 256) -> RobustResult:
    """Accuracy of ``compiled`` on ``samples`` (with labels) clean and under each attack at
    each radius in ``eps``."""
    attacks = parse_attacks(attacks)
    eps = parse_eps(eps)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise bad_option(f"--steps must be a positive int, got {steps!r}")
    if samples.labels is None:
        from nndsl.explain.common import ExplainError
        raise ExplainError("robustness is accuracy against labels, and the samples have none",
                           code="E1705", hint="give --data with a labelled data set")
    floats, fixed = split_inputs(compiled)
    if not floats:
        raise does_not_fit(f"the attacks perturb float inputs, but {compiled.name}'s inputs are "
                           f"integers", hint="adversarial text attacks are not supported")
    if module is None:
        module = compiled.to_torch(weights=weights)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    scores = Scores(compiled, module, floats, fixed, output, two_class=True)
    if scores.kind == "value":
        raise does_not_fit(f"output `{scores.output}` has one value per sample: robustness "
                           f"is measured on a classifier's accuracy")
    lo = min(samples.bounds.get(n, (float("-inf"),))[0] for n in floats)
    hi = max(samples.bounds.get(n, (None, float("inf")))[1] for n in floats)
    n = samples.n
    correct = {("clean", 0.0): 0}
    for a in attacks:
        for e in eps:
            correct[(a, e)] = 0
    import warnings
    with warnings.catch_warnings():    # PGD detaches its inputs between steps, by design
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require")
        _attack_all(scores, samples, floats, fixed, attacks, eps, steps, batch, lo, hi,
                    correct)
    rows = [{"attack": a, "eps": e, "accuracy": correct[(a, e)] / n}
            for a in attacks for e in eps]
    info = {"bounds": [lo, hi], "pgd_steps": steps if "pgd" in attacks else None,
            "source": {a: SOURCE[a] for a in attacks}}
    return RobustResult(correct[("clean", 0.0)] / n, rows, n, info)


def _attack_all(scores, samples, floats, fixed, attacks, eps, steps, batch, lo, hi,
                correct) -> None:
    import torch
    from captum.robust import FGSM, PGD
    y, n = samples.labels, samples.n
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        xs = tuple(samples.inputs[k][sl].float().clone().requires_grad_(True) for k in floats)
        fx = tuple(samples.inputs[k][sl] for k in fixed) or None
        yb = y[sl]
        with torch.no_grad():
            correct[("clean", 0.0)] += int((predictions(scores(*xs, *(fx or ()))) == yb).sum())
        for a in attacks:
            for e in eps:
                if a == "fgsm":
                    adv = FGSM(scores, _loss, lower_bound=lo, upper_bound=hi).perturb(
                        xs if len(xs) > 1 else xs[0], epsilon=e, target=yb,
                        additional_forward_args=fx)
                else:
                    adv = PGD(scores, _loss, lower_bound=lo, upper_bound=hi).perturb(
                        xs if len(xs) > 1 else xs[0], radius=e, step_size=2.5 * e / steps,
                        step_num=steps, target=yb, additional_forward_args=fx,
                        random_start=False, norm="Linf")
                adv = adv if isinstance(adv, tuple) else (adv,)
                with torch.no_grad():
                    got = predictions(scores(*(t.detach() for t in adv), *(fx or ())))
                correct[(a, e)] += int((got == yb).sum())
