"""``nndsl sample RUN``: samples from the generative model a finished run trained (vae, gan,
ddpm), from the run folder's configuration and checkpoint, with the recipe's own sampler."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from nndsl.errors import TrainError
from nndsl.train.recipes import GENERATIVE, RUNTIME


def sample_run(run_dir, n: int = 16, seed: int = 0, which: str = "best"):
    """``n`` samples from the generative model trained in ``run_dir`` (its ``which``
    checkpoint), drawn from a generator seeded with ``seed``; returns (tensor, model name)."""
    import torch

    import nndsl
    from nndsl.train.checkpoint import DAMAGED, read_json
    from nndsl.train.config import resolve
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise TrainError(f"{run_dir} is not a run folder (no config.json)",
                         code="E1218", hint="give the --out folder of an `nndsl train` run")
    conf = read_json(run_dir / "config.json", "the run's configuration", limit=64 << 20)
    recipe = conf.get("recipe") if isinstance(conf, dict) else None
    cli = conf.get("cli") if isinstance(conf, dict) else None
    if not isinstance(conf, dict) or not isinstance(conf.get("spec"), str) or \
            not isinstance(conf.get("model"), str) or \
            not isinstance(recipe or {}, dict) or not isinstance(cli or {}, dict) or \
            not isinstance((cli or {}).get("params") or {}, dict) or \
            not isinstance((recipe or {}).get("name", "supervised"), str):
        raise TrainError(f"{run_dir / 'config.json'} is not a run's configuration (it needs "
                         f"`spec`, `model`, `recipe` and `cli` as nndsl writes them)",
                         code="E1218", hint=DAMAGED)
    name = (recipe or {}).get("name", "supervised")
    if name not in GENERATIVE:
        raise TrainError(f"{run_dir} is a run of the {name} recipe, which does not generate "
                         f"samples", code="E1224", hint="sampling works for vae, gan and ddpm runs")
    weights = run_dir / "checkpoints" / f"{which}.safetensors"
    if not weights.exists():
        raise TrainError(f"{weights} does not exist", code="E1218",
                         hint="which is best or last")
    spec, model = conf["spec"], conf["model"]
    params = dict((conf.get("cli") or {}).get("params") or {})
    c = nndsl.compile(spec, model=model, params=params or None, opt="O1")
    cfg = resolve(c, c.train_section)
    module = c.to_torch(weights=str(weights)).eval()
    run = SimpleNamespace(c=c, cfg=cfg, model=module, run_model=module,
                          device=torch.device("cpu"))
    recipe = RUNTIME[name](run, cfg.recipe_info)
    with torch.no_grad():
        out = recipe.sample(n, torch.Generator().manual_seed(seed))
    return out.detach().float().cpu(), c.name
