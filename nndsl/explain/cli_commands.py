"""``nndsl explain`` and ``nndsl robust``: their argparse parsers and what they run.

``add_explain_parser(sub)`` / ``add_robust_parser(sub)`` add the subcommands to an argparse
subparsers object (each sets ``fn`` to :func:`run_explain` / :func:`run_robust`, which take the
parsed arguments and return the exit status). Files are written only under ``-o DIR``, each
atomically; ``--json`` prints the results as JSON on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from nndsl.explain.attribution import METHODS, SOURCE

DEFAULT_SAMPLES = {"permutation": 256, "robust": 256}


def _common(p: argparse.ArgumentParser) -> None:
    from nndsl.cli_args import _seed, limit_flags, spec_arguments
    spec_arguments(p)
    p.add_argument("-O", dest="opt", default="O1", choices=["O0", "O1", "O2"],
                   type=lambda s: s if s.startswith("O") else f"O{s}",
                   help="optimization level (default O1; attention maps are the same at all)")
    p.add_argument("--weights", help="a .safetensors file of weights in the spec's names "
                                     "(a run's checkpoints/best.safetensors)")
    p.add_argument("--data", metavar="NAME|PATH",
                   help="a built-in data set (digits, breast_cancer, ...) or a data path: its "
                        "held-out split, standardized as training did")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy|FILE.npz",
                   help="input arrays instead of --data (repeatable)")
    p.add_argument("--output", dest="model_output", metavar="NAME",
                   help="which model output to explain (default the first)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="seed of the data split (default the train section's) and of sampling")
    p.add_argument("-o", "--out", metavar="DIR", help="write PNGs, .npz and .json here")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--deny-warnings", action="store_true",
                   help="treat warnings (unused layers, inputs, parameters) as errors")
    limit_flags(p)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


def add_explain_parser(sub) -> argparse.ArgumentParser:
    """``nndsl explain SPEC --method M ...``."""
    from nndsl.cli_args import _count
    p = sub.add_parser("explain", help="attributions, Grad-CAM, feature importance or "
                                       "attention maps of a model on data")
    _common(p)
    p.add_argument("--method", required=True, metavar="METHOD",
                   help="one of: " + ", ".join(METHODS))
    p.add_argument("--samples", type=_count, default=None,
                   help="samples to explain (default 16; permutation: 256)")
    p.add_argument("--target", default=None, metavar="pred|label|K",
                   help="the class each sample's attribution explains (default pred: the "
                        "model's prediction)")
    p.add_argument("--layer", metavar="NAME",
                   help="grad_cam: the conv layer (default the last); gradient methods on "
                        "token inputs: the float value to attribute to (an embedding); "
                        "attention: one attention node")
    p.add_argument("--steps", type=_count, default=32,
                   help="integrated gradients' steps (default 32)")
    p.add_argument("--window", type=_count, default=None,
                   help="image patch size of occlusion, lime, kernel_shap and permutation "
                        "(default: a seventh of the width)")
    p.add_argument("--perturbations", type=_count, default=200,
                   help="lime, kernel_shap: perturbed samples per input (default 200)")
    p.add_argument("--repeats", type=_count, default=5,
                   help="permutation: shuffles per feature (default 5)")
    p.set_defaults(fn=run_explain)
    return p


def add_robust_parser(sub) -> argparse.ArgumentParser:
    """``nndsl robust SPEC --attack fgsm,pgd --eps 0.05,0.1 ...``."""
    from nndsl.cli_args import _count
    p = sub.add_parser("robust", help="accuracy under adversarial attacks (FGSM, PGD)")
    _common(p)
    p.add_argument("--attack", default="fgsm,pgd", metavar="A[,A...]",
                   help="attacks: fgsm, pgd (default both)")
    p.add_argument("--eps", default="0.05,0.1", metavar="E[,E...]",
                   help="L∞ radii in (0, 1], in the inputs' units (default 0.05,0.1)")
    p.add_argument("--steps", type=_count, default=10, help="PGD steps (default 10)")
    p.add_argument("--samples", type=_count, default=None,
                   help="held-out samples to attack (default 256)")
    p.set_defaults(fn=run_robust)
    return p


# ------------------------------------------------------------------ running

def _prepare(args, labels_needed: bool, default_samples: int):
    """Check the output folder, compile (weights checked), and load the samples."""
    import nndsl
    from nndsl.cli_args import _limits, _params, _typed_path, _warn, check_output
    from nndsl.explain.common import load_samples
    out = check_output(args.out, folder=True) if args.out else None
    c = nndsl.compile(path=args.spec, lib=tuple(args.lib or ()), model=args.model,
                      params=_params(args.param), opt=args.opt, limits=_limits(args),
                      weights=args.weights)
    _warn(c, args)
    samples = load_samples(c, data=_typed_path(args.data), input_files=args.input or (),
                           samples=args.samples or default_samples, seed=args.seed,
                           labels_needed=labels_needed)
    return c, samples, out


def run_explain(args) -> int:
    from nndsl.explain.attribution import check_method, explain
    check_method(args.method)
    c, samples, out = _prepare(args, args.target == "label",
                               DEFAULT_SAMPLES.get(args.method, 16))
    module = c.to_torch()
    result = explain(c, args.method, samples, module=module, target=args.target,
                     layer=args.layer, output=args.model_output, steps=args.steps,
                     window=args.window, n_samples=args.perturbations, repeats=args.repeats,
                     seed=args.seed or 0)
    files = write_explanation(out, c, result) if out is not None else []
    report = explanation_json(c, result, samples, files)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(describe(report))
    return 0


def run_robust(args) -> int:
    from nndsl.explain.robust import parse_attacks, parse_eps, robustness
    attacks, eps = parse_attacks(args.attack), parse_eps(args.eps)
    c, samples, out = _prepare(args, True, DEFAULT_SAMPLES["robust"])
    result = robustness(c, samples, attacks, eps, module=c.to_torch(),
                        output=args.model_output, steps=args.steps)
    files = []
    report = {"model": c.name, "samples": samples.n, "data": samples.source,
              **result.to_json()}
    if out is not None:
        from nndsl.explain import plots
        from nndsl.fsutil import atomic_write_text
        files.append(str(plots.robust_curve(out / "robust.png", result,
                                            f"{c.name}: accuracy under attack")))
        atomic_write_text(out / "robust.json", json.dumps(report, indent=2) + "\n")
        files.append(str(out / "robust.json"))
    report["files"] = files
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{c.name}: accuracy on {samples.n} samples of {samples.source} "
              f"(clean {result.clean_accuracy:.3f})")
        print(result.table())
        for f in files:
            print(f"wrote {f}")
    return 0


# ------------------------------------------------------------------ outputs

def _captions(result) -> list | None:
    if result.predictions is None:
        return None
    preds = result.predictions.reshape(len(result.predictions), -1)[:, 0]
    caps = []
    for i, p in enumerate(preds):
        text = f"pred {int(p)}" if float(p).is_integer() else f"out {float(p):.3g}"
        if result.labels is not None:
            text += f" / label {int(result.labels[i])}"
        caps.append(text)
    return caps


def write_explanation(out: Path, c, result) -> list:
    """``METHOD.npz`` (maps, inputs, targets, predictions), ``METHOD.json`` and the PNGs."""
    import numpy as np

    from nndsl.explain import plots
    from nndsl.fsutil import atomic_write_bytes, atomic_write_text
    from nndsl.fsutil import write_error
    m = result.method
    files = []
    try:
        arrays = {f"map.{k}": np.asarray(v) for k, v in result.maps.items()}
        arrays.update({f"input.{k}": np.asarray(v) for k, v in result.inputs.items()})
        for k in ("targets", "predictions", "labels"):
            v = getattr(result, k)
            if v is not None:
                arrays[k] = np.asarray(v)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(out / f"{m}.npz", buf.getvalue())
        files.append(out / f"{m}.npz")
        caps = _captions(result)
        for key, kind in result.kinds.items():
            a = result.maps[key]
            name = plots.safe_name(key)
            title = f"{c.name}: {m} ({key})"
            if kind == "image" and key in result.inputs:
                files.append(plots.image_heatmaps(out / f"{m}.{name}.png", result.inputs[key],
                                                  a if a.shape[0] == len(result.inputs[key])
                                                  else np.repeat(a, len(result.inputs[key]), 0),
                                                  title, caps))
            elif kind == "table":
                files.append(plots.table_heatmap(out / f"{m}.{name}.png", a, title,
                                                 result.feature_names.get(key), caps))
            elif kind == "cam" and len(result.inputs) == 1:
                (img,) = result.inputs.values()
                if img.ndim == 4:
                    files.append(plots.image_heatmaps(out / f"{m}.{name}.png", img, a, title,
                                                      caps))
            elif kind == "tokens":
                tokens = next(iter(result.inputs.values()))
                files.append(plots.token_heatmap(out / f"{m}.tokens.png", a, tokens, title))
            elif kind == "features":
                files.append(plots.bar_chart(out / f"{m}.png", a, result.maps["std"],
                                             f"{c.name}: permutation importance "
                                             f"({result.info.get('metric')})",
                                             next(iter(result.feature_names.values()), None),
                                             ylabel="metric drop"))
        if m == "attention":
            n = next(iter(result.maps.values())).shape[0]
            for i in range(min(n, 4)):
                files.append(plots.attention_grid(out / f"attention.{i}.png", result.maps, i,
                                                  f"{c.name}: attention, sample {i}"))
        report = explanation_json(c, result, None, [str(f) for f in files]
                                  + [str(out / f"{m}.json")])
        atomic_write_text(out / f"{m}.json", json.dumps(report, indent=2) + "\n")
        files.append(out / f"{m}.json")
    except (OSError, ValueError) as e:
        raise write_error(out, e) from None
    return [str(f) for f in files]


def _list(a):
    return None if a is None else a.reshape(len(a), -1)[:, 0].tolist() if a.ndim > 1 \
        else a.tolist()


def explanation_json(c, result, samples, files) -> dict:
    import numpy as np
    report = {"model": c.name, "method": result.method,
              "source": result.info.get("source", SOURCE.get(result.method)),
              "samples": int(next(iter(result.inputs.values())).shape[0]) if result.inputs
              else 0,
              "targets": _list(result.targets), "predictions": _list(result.predictions),
              "labels": _list(result.labels),
              "maps": {k: {"shape": list(np.shape(v)), "kind": result.kinds.get(k)}
                       for k, v in result.maps.items()},
              "info": {k: v for k, v in result.info.items() if k != "source"}}
    if samples is not None:
        report["data"] = samples.source
    if result.method == "permutation":
        names = next(iter(result.feature_names.values()), None)
        imp, std = result.maps["importance"], result.maps["std"]
        report["importance"] = [{"feature": int(j), "name": names[j] if names else str(j),
                                 "importance": float(imp[j]), "std": float(std[j])}
                                for j in np.argsort(-imp, kind="stable")]
    for k, kind in result.kinds.items():
        if kind == "table":
            names = result.feature_names.get(k)
            mean = np.abs(result.maps[k]).mean(0)
            report.setdefault("mean_abs", {})[k] = [
                {"feature": int(j), "name": names[j] if names else str(j),
                 "value": float(mean[j])}
                for j in np.argsort(-mean, kind="stable")]
    report["files"] = list(files)
    return report


def describe(report: dict) -> str:
    lines = [f"{report['model']}: {report['method']} ({report['source']}) on "
             f"{report['samples']} samples" + (f" of {report['data']}" if report.get("data")
                                               else "")]
    for k, v in report["maps"].items():
        lines.append(f"  {k}: {v['kind']} map {v['shape']}")
    info = report["info"]
    if "max_completeness_error" in info:
        lines.append(f"  completeness: |sum of attributions - (f(x) - f(baseline))| <= "
                     f"{info['max_completeness_error']:.3g} ("
                     f"{info['max_relative_completeness_error']:.2%} of f(x) - f(baseline); "
                     f"more --steps make it smaller)")
    if "layer" in info:
        lines.append(f"  layer: {info['layer']}")
    if report.get("importance"):
        lines.append(f"  permutation importance ({info.get('metric')}, baseline "
                     f"{info.get('baseline_metric', 0):.3f}), largest first:")
        for r in report["importance"][:10]:
            lines.append(f"    {r['name']:>28}  {r['importance']:+.4f} ± {r['std']:.4f}")
    for k, rows in report.get("mean_abs", {}).items():
        lines.append(f"  mean |attribution| of `{k}`, largest first: " + ", ".join(
            f"{r['name']} {r['value']:.3g}" for r in rows[:8]))
    for f in report.get("files", []):
        lines.append(f"wrote {f}")
    return "\n".join(lines)


def main_for_tests(argv: list) -> int:
    """Parse ``argv`` with both subcommands on a fresh parser and run it as the ``nndsl``
    command would (located errors on stderr, exit 1)."""
    from nndsl.errors import NndslError
    ap = argparse.ArgumentParser(prog="nndsl")
    sub = ap.add_subparsers(dest="command", required=True)
    add_explain_parser(sub)
    add_robust_parser(sub)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    try:
        return args.fn(args)
    except NndslError as e:
        print(e.render(), file=sys.stderr)
        return 1
