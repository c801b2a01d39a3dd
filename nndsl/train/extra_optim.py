"""LAMB, Lookahead and SAM, written from their papers' update rules.

- LAMB (You et al., "Large Batch Optimization for Deep Learning", 2020, Algorithm 2): Adam's
  bias-corrected moments give a direction ``r = m̂ / (√v̂ + ε)``; with weight decay ``λ`` the
  update ``u = r + λx`` is scaled per parameter tensor by the trust ratio ``‖x‖ / ‖u‖``
  (1 when either norm is 0): ``x ← x − η (‖x‖ / ‖u‖) u``.
- Lookahead (Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back", 2019,
  Algorithm 1): the inner optimizer takes ``k`` steps on the fast weights ``θ``; then the slow
  weights move ``φ ← φ + α(θ − φ)`` and the fast weights restart from them, ``θ ← φ``.
- SAM (Foret et al., "Sharpness-Aware Minimization", 2021, Algorithm 1): with the gradient ``g``
  at ``w``, step to ``w + ε``, ``ε = ρ g / ‖g‖₂`` (the norm over all parameters; ASAM's
  ``adaptive`` variant scales by ``|w|``: ``ε = ρ w² g / ‖w g‖``), take the gradient there, go
  back to ``w`` and let the inner optimizer step with that gradient. It needs a closure that
  recomputes the loss and its gradient.

The wrappers expose ``param_groups`` (the inner optimizer's, so learning-rate schedules apply),
``zero_grad``, ``step``, ``state_dict`` and ``load_state_dict``.
"""

from __future__ import annotations

import torch


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float64)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = int(st["step"].item())
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = m / (1 - b1 ** t)
                v_hat = v / (1 - b2 ** t)
                u = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    u = u.add(p, alpha=group["weight_decay"])
                w_norm = p.norm()
                u_norm = u.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm,
                                    torch.ones_like(w_norm))
                p.sub_(u * (group["lr"] * trust))
        return loss


class _Wrapper:
    needs_closure = False

    def __init__(self, inner):
        self.inner = inner

    @property
    def param_groups(self):
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    def zero_grad(self, set_to_none: bool = True):
        self.inner.zero_grad(set_to_none=set_to_none)

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]


class Lookahead(_Wrapper):
    def __init__(self, inner, k: int = 5, alpha: float = 0.5):
        super().__init__(inner)
        self.k, self.alpha = int(k), float(alpha)
        self.counter = 0
        self.slow = [p.detach().clone() for p in self._params()]

    @property
    def needs_closure(self):
        return getattr(self.inner, "needs_closure", False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.inner.step(closure) if closure is not None else self.inner.step()
        self.counter += 1
        if self.counter % self.k == 0:
            for p, s in zip(self._params(), self.slow):
                s.add_(p.detach() - s, alpha=self.alpha)
                p.copy_(s)
        return loss

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "counter": self.counter,
                "slow": [s.clone() for s in self.slow]}

    def load_state_dict(self, sd: dict) -> None:
        self.inner.load_state_dict(sd["inner"])
        self.counter = int(sd["counter"])
        with torch.no_grad():
            for s, v in zip(self.slow, sd["slow"]):
                s.copy_(v)


class SAM(_Wrapper):
    needs_closure = True

    def __init__(self, inner, rho: float = 0.05, adaptive: bool = False):
        super().__init__(inner)
        self.rho, self.adaptive = float(rho), bool(adaptive)

    @torch.no_grad()
    def step(self, closure=None):
        """The gradient at ``w`` must be in ``.grad``; ``closure`` recomputes loss and
        gradient (zeroing them first) at the current weights."""
        if closure is None:
            raise RuntimeError("SAM needs a closure that recomputes the loss and its gradient")
        params = [p for p in self._params() if p.grad is not None]
        if self.adaptive:
            norm = torch.norm(torch.stack([(p.abs() * p.grad).norm() for p in params]))
        else:
            norm = torch.norm(torch.stack([p.grad.norm() for p in params]))
        scale = self.rho / (norm + 1e-12)
        eps = []
        for p in params:
            e = p.grad * scale
            if self.adaptive:
                e = e * p.pow(2)
            p.add_(e)
            eps.append(e)
        with torch.enable_grad():
            loss = closure()
        for p, e in zip(params, eps):
            p.sub_(e)
        self.inner.step()
        return loss

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.inner.load_state_dict(sd["inner"])
