"""Attributions: which parts of an input a model's score depends on.

Gradient methods (captum): ``saliency`` (|∂f/∂x|), ``input_x_gradient`` (x · ∂f/∂x),
``integrated_gradients`` (Sundararajan et al. 2017: (x − x₀) · ∫ ∂f/∂x along the straight path
from the baseline x₀ = 0, by Gauss–Legendre quadrature; the attributions add up to
f(x) − f(x₀)). On integer inputs (token ids) these attribute to a float layer instead, named
with ``layer`` (an embedding's output), and are summed over its last dim to one value per token.

``grad_cam`` (captum's LayerGradCam, Selvaraju et al. 2017): the layer's channels weighted by
the mean gradient of the score over their positions, summed — a map of the layer's spatial
shape. Perturbation methods (captum): ``occlusion`` (the score's drop when a window is set to
the baseline), ``lime`` and ``kernel_shap`` (a weighted linear model of the score over random
subsets of features). ``permutation`` is nndsl's own: a metric's drop when one feature is
shuffled across the samples.

Every method runs on a batch of samples at once (captum's LIME and KernelSHAP fit one linear
model per sample, batching the perturbations of each).
"""

from __future__ import annotations


from nndsl.explain.common import (Explanation, Scores, bad_option, does_not_fit, find_node,
                                  model_targets, node_names, split_inputs, tap_module,
                                  unknown_choice)

GRADIENT = ("saliency", "input_x_gradient", "integrated_gradients")
PERTURBATION = ("occlusion", "lime", "kernel_shap")
METHODS = (*GRADIENT, "grad_cam", *PERTURBATION, "permutation", "attention")

# which library computes each method (docs/EXPLAIN.md says the same)
SOURCE = {"saliency": "captum.attr.Saliency", "input_x_gradient": "captum.attr.InputXGradient",
          "integrated_gradients": "captum.attr.IntegratedGradients",
          "grad_cam": "captum.attr.LayerGradCam", "occlusion": "captum.attr.Occlusion",
          "lime": "captum.attr.Lime", "kernel_shap": "captum.attr.KernelShap",
          "permutation": "nndsl (permutation importance on a metric)",
          "attention": "nndsl (softmax probabilities of each attention node)"}
LAYER_SOURCE = {"saliency": "captum.attr.LayerGradientXActivation (gradient only)",
                "input_x_gradient": "captum.attr.LayerGradientXActivation",
                "integrated_gradients": "captum.attr.LayerIntegratedGradients"}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS, code="E1702")
    return method


def explain(compiled, method: str, samples, *, module=None, weights=None, target=None,
            layer: str | None = None, output: str | None = None, steps: int = 32,
            window: int | None = None, n_samples: int = 200, repeats: int = 5,
            seed: int = 0) -> Explanation:
    """Explain ``compiled``'s scores on ``samples`` (:class:`nndsl.explain.common.Samples`)
    with ``method`` (one of :data:`METHODS`). ``module`` is the torch module (default:
    ``compiled.to_torch(weights)``); ``target`` is ``pred``, ``label`` or a class index;
    ``layer`` names a value (as ``nndsl inspect`` shows it) for ``grad_cam``, for the gradient
    methods on integer inputs, and to pick one attention node; ``steps`` are integrated
    gradients' steps, ``window`` the patch size of occlusion, LIME, KernelSHAP and permutation
    on images, ``n_samples`` the perturbations LIME and KernelSHAP draw, ``repeats`` the
    shuffles permutation importance averages."""
    import torch
    check_method(method)
    for name, v, lo in (("steps", steps, 1), ("n_samples", n_samples, 1),
                        ("repeats", repeats, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise bad_option(f"{name} must be a positive int, got {v!r}")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise bad_option(f"window must be a positive int, got {window!r}")
    if module is None:
        module = compiled.to_torch(weights=weights)
    module.eval()
    torch.manual_seed(seed)
    if method == "attention":
        from nndsl.explain.attention import attention_maps
        return attention_maps(compiled, module, samples, layer=layer)
    floats, fixed = split_inputs(compiled)
    xs = samples.inputs
    exp_inputs = {n: x.detach().cpu().numpy() for n, x in xs.items()}
    if method in GRADIENT and not floats or method in GRADIENT and layer is not None:
        return _layer_gradient(compiled, module, method, samples, target, layer, output, steps)
    if not floats:
        ints = ", ".join(f"{n}: {t}" for n, t in compiled.input_types.items())
        hint = _embedding_hint(compiled)
        raise does_not_fit(f"{method} works on float inputs, but the model's inputs are "
                           f"integers ({ints})",
                           hint=(hint + "; " if hint else "") + "try --method attention")
    scores = Scores(compiled, module, floats, fixed, output)
    batch = tuple(xs[n] for n in floats + fixed)
    tgt = model_targets(target, samples, scores, batch)
    with torch.no_grad():
        preds = _preds(scores(*batch))
    fixed_args = tuple(xs[n] for n in fixed) or None
    attributed = tuple(xs[n].detach().float().clone() for n in floats)
    info: dict = {"source": SOURCE[method]}
    if method == "grad_cam":
        maps, kinds = _grad_cam(compiled, module, scores, floats, fixed, attributed,
                                fixed_args, tgt, layer, output, info)
    elif method == "permutation":
        maps, kinds, names = _permutation(scores, floats, attributed, fixed_args, samples,
                                          preds, window, repeats, seed, info)
        return Explanation(method, maps, None, _np(preds), _np(samples.labels), info,
                           exp_inputs, kinds, names)
    else:
        attrs = _captum(method, scores, attributed, fixed_args, tgt, steps, window, n_samples,
                        info)
        maps = {n: a.detach().cpu().numpy() for n, a in zip(floats, attrs)}
        kinds = {n: _kind(compiled.input_types[n]) for n in floats}
    return Explanation(method, maps, _np(tgt), _np(preds), _np(samples.labels), info,
                       exp_inputs, kinds, feature_names(samples, floats))


def _np(t):
    return None if t is None else t.detach().cpu().numpy()


def _preds(s):
    from nndsl.explain.common import predictions
    return predictions(s) if s.dim() == 2 else s


def _kind(t) -> str:
    return {2: "table", 3: "sequence", 4: "image"}.get(t.rank, "tensor")


def feature_names(samples, floats) -> dict:
    """Column names of a built-in tabular set (scikit-learn's), for tables and charts."""
    src = samples.source
    if src not in ("iris", "breast_cancer", "wine", "diabetes") or len(floats) != 1:
        return {}
    import sklearn.datasets as skd
    names = list(getattr(skd, f"load_{src}")().feature_names)
    x = samples.inputs[floats[0]]
    return {floats[0]: names} if x.dim() == 2 and x.shape[1] == len(names) else {}


def _captum(method, scores, attributed, fixed_args, tgt, steps, window, n_samples, info):
    import captum.attr as ca
    import torch
    xs = tuple(a.requires_grad_(method in GRADIENT) for a in attributed)
    if method == "saliency":
        out = ca.Saliency(scores).attribute(xs, target=tgt, abs=True,
                                            additional_forward_args=fixed_args)
    elif method == "input_x_gradient":
        out = ca.InputXGradient(scores).attribute(xs, target=tgt,
                                                  additional_forward_args=fixed_args)
    elif method == "integrated_gradients":
        baselines = tuple(torch.zeros_like(a) for a in xs)
        out, delta = ca.IntegratedGradients(scores).attribute(
            xs, baselines=baselines, target=tgt, additional_forward_args=fixed_args,
            n_steps=steps, method="gausslegendre", internal_batch_size=_internal(xs, steps),
            return_convergence_delta=True)
        info["steps"] = steps
        info["baseline"] = "zeros"
        _completeness(info, out, delta)
    elif method == "occlusion":
        shapes = tuple(_window_shape(a, window) for a in xs)
        strides = tuple(_strides(a, s) for a, s in zip(xs, shapes))
        out = ca.Occlusion(scores).attribute(xs, sliding_window_shapes=shapes, strides=strides,
                                             baselines=0.0, target=tgt,
                                             additional_forward_args=fixed_args,
                                             perturbations_per_eval=16)
        info["window"] = [list(s) for s in shapes]
    else:
        masks, count = feature_masks(xs, window)
        cls = ca.Lime if method == "lime" else ca.KernelShap
        import warnings
        with warnings.catch_warnings():   # one linear model per sample is what is asked for
            warnings.filterwarnings("ignore", message="You are providing multiple inputs")
            out = cls(scores).attribute(xs, baselines=0.0, target=tgt, feature_mask=masks,
                                        additional_forward_args=fixed_args,
                                        n_samples=n_samples,
                                        perturbations_per_eval=min(n_samples, 64))
        info["n_samples"] = n_samples
        info["features"] = count
    return out if isinstance(out, tuple) else (out,)


def _completeness(info: dict, attrs, delta) -> None:
    """Integrated gradients' completeness: the attributions of a sample add up to
    f(x) − f(x₀) up to ``delta`` (captum's convergence delta, the quadrature's error)."""
    total = sum(a.detach().reshape(a.shape[0], -1).sum(1) for a in attrs)
    change = (total - delta).abs()
    info["max_completeness_error"] = float(delta.abs().max())
    info["max_relative_completeness_error"] = float((delta.abs() / change.clamp_min(1e-12))
                                                    .max())


def _internal(xs, steps) -> int:
    """Integrated gradients' rows per forward call: all steps of all samples at once, up to a
    few million input values."""
    per_row = max(1, sum(a[0].numel() for a in xs))
    return max(xs[0].shape[0], min(xs[0].shape[0] * steps, (1 << 22) // per_row))


def _default_window(a) -> int:
    h = a.shape[-1]
    return max(1, round(h / 7))


def _window_shape(a, window) -> tuple:
    if a.dim() == 2:
        return (1,)
    if a.dim() == 3:
        return (1, a.shape[2])
    w = window or _default_window(a)
    return (a.shape[1],) + (min(w, a.shape[2]), min(w, a.shape[3])) + tuple(a.shape[4:])


def _strides(a, shape) -> tuple:
    if a.dim() <= 3:
        return tuple(1 for _ in shape)
    return (shape[0],) + tuple(max(1, s // 2) for s in shape[1:3]) + tuple(shape[3:])


def feature_masks(xs, window) -> tuple:
    """captum feature masks: each column of a table, each position of a sequence, each
    ``window`` x ``window`` patch of an image (all channels together); features of several
    inputs numbered on from each other. Returns (masks, the number of features)."""
    import torch
    masks, start = [], 0
    for a in xs:
        shape = tuple(a.shape[1:])
        if a.dim() == 2:
            m = torch.arange(shape[0])
        elif a.dim() == 3:
            m = torch.arange(shape[0])[:, None].expand(shape)
        elif a.dim() == 4:
            w = window or _default_window(a)
            h, wd = shape[1], shape[2]
            rows = torch.arange(h) // w
            cols = torch.arange(wd) // w
            per_row = (wd + w - 1) // w
            m = (rows[:, None] * per_row + cols[None, :])[None].expand(shape)
        else:
            m = torch.arange(a[0].numel()).reshape(shape)
        m = m + start
        start = int(m.max()) + 1
        masks.append(m.unsqueeze(0).contiguous())
    return tuple(masks), start


def _embedding_hint(compiled) -> str | None:
    embs = [n.name for n in compiled.graph if n.op == "embedding"]
    if not embs:
        return None
    return f"attribute to an embedding's output with --layer {embs[0]}"


def _layer_gradient(compiled, module, method, samples, target, layer, output, steps):
    """A gradient method on the float value ``layer`` (an embedding's output for token
    inputs): captum's layer methods see it through a tap."""
    import captum.attr as ca
    import torch
    ints = [n for n, t in compiled.input_types.items() if n not in split_inputs(compiled)[0]]
    if layer is None:
        hint = _embedding_hint(compiled)
        shown = ", ".join(f"{n}: {compiled.input_types[n]}" for n in ints)
        raise does_not_fit(f"{method} needs float inputs to take gradients of, but the model's "
                           f"inputs are integers ({shown})",
                           hint=hint or "name a float value to attribute to with --layer")
    node = find_node(compiled, layer)
    t = node.types[0]
    if t.dtype not in ("f32", "f16", "bf16", "f64"):
        raise does_not_fit(f"`{layer}` is {t}: gradients need a float value",
                           hint=_embedding_hint(compiled))
    order = [n for n in compiled.input_names if n in samples.inputs]
    tap = tap_module()
    scores = Scores(compiled, module, order, [], output, hooks={layer: tap})
    xs = tuple(samples.inputs[n] for n in order)
    tgt = model_targets(target, samples, scores, xs)
    with torch.no_grad():
        preds = _preds(scores(*xs))
    info = {"source": LAYER_SOURCE[method], "layer": layer}
    if method == "integrated_gradients":
        baselines = tuple(_baseline(compiled, n, x) for n, x in zip(order, xs))
        attr, delta = ca.LayerIntegratedGradients(scores, tap).attribute(
            xs, baselines=baselines, target=tgt, n_steps=steps, method="gausslegendre",
            internal_batch_size=max(xs[0].shape[0], min(xs[0].shape[0] * steps, 4096)),
            return_convergence_delta=True)
        info["steps"] = steps
        _completeness(info, (attr,) if not isinstance(attr, (list, tuple)) else attr, delta)
    else:
        attr = ca.LayerGradientXActivation(scores, tap,
                                           multiply_by_inputs=method == "input_x_gradient"
                                           ).attribute(xs, target=tgt)
        if method == "saliency":
            attr = attr.abs()
    if isinstance(attr, (list, tuple)):
        attr = attr[0]
    maps = {layer: attr.detach().cpu().numpy()}
    kinds = {layer: "layer"}
    if attr.dim() == 3:   # [N, T, D]: one value per position
        maps["tokens"] = attr.sum(-1).detach().cpu().numpy()
        kinds["tokens"] = "tokens"
    inputs = {n: samples.inputs[n].detach().cpu().numpy() for n in order}
    return Explanation(method, maps, _np(tgt), _np(preds), _np(samples.labels), info, inputs,
                       kinds)


def _baseline(compiled, name, x):
    """Integer inputs start from the lowest valid id (0, or the declared range's start)."""
    import torch
    if x.is_floating_point():
        return torch.zeros_like(x)
    lo = 0
    rng = compiled.graph.meta.get("input_ranges", {}).get(name)
    if rng is not None:
        from nndsl.ir.symbols import concrete_range
        try:
            lo = int(concrete_range(rng, {})[0] or 0)
        except Exception:
            lo = 0
    return torch.full_like(x, lo)


def conv_layers(compiled) -> list:
    """Names of the nodes Grad-CAM can use: convolutions (and any value with positions:
    [N, C, H, W] or [N, C, L]), in graph order."""
    return [n.name for n in compiled.graph if "conv" in n.op and n.op != "param"
            and len(n.types) == 1 and n.types[0].rank in (3, 4)]


def _grad_cam(compiled, module, scores, floats, fixed, attributed, fixed_args, tgt, layer,
              output, info):
    import captum.attr as ca
    convs = conv_layers(compiled)
    if layer is None:
        if not convs:
            raise does_not_fit(f"grad_cam needs a convolution layer, and {compiled.name} has "
                               f"none", hint="try --method integrated_gradients or occlusion")
        layer = convs[-1]
    node = find_node(compiled, layer)
    t = node.types[0] if len(node.types) == 1 else None
    if t is None or t.rank not in (3, 4) or t.dtype not in ("f32", "f16", "bf16", "f64"):
        shown = t if t is not None else f"{len(node.types)} values"
        raise does_not_fit(f"grad_cam needs a layer with positions ([N, C, H, W] or "
                           f"[N, C, L]), but `{layer}` is {shown}",
                           hint=("conv layers: " + ", ".join(convs[-6:])) if convs else
                           "the model has no convolution layer")
    tap = tap_module()
    tapped = Scores(compiled, module, floats, fixed, output, hooks={layer: tap})
    cam = ca.LayerGradCam(tapped, tap).attribute(attributed, target=tgt,
                                                 additional_forward_args=fixed_args,
                                                 relu_attributions=True)
    info["layer"] = layer
    info["layer_shape"] = list(cam.shape[2:])
    maps = {layer: cam.detach().cpu().numpy()}
    kinds = {layer: "cam"}
    if len(floats) == 1 and attributed[0].dim() == cam.dim():
        up = ca.LayerAttribution.interpolate(cam, tuple(attributed[0].shape[2:]),
                                             interpolate_mode="bilinear" if cam.dim() == 4
                                             else "linear")
        maps[floats[0]] = up.detach().cpu().numpy()
        kinds[floats[0]] = "image" if cam.dim() == 4 else "sequence"
    return maps, kinds


def _permutation(scores, floats, attributed, fixed_args, samples, preds, window, repeats, seed,
                 info):
    """Permutation importance (Breiman 2001): for each feature (a column, a position, an
    image patch), the metric's drop when that feature's values are shuffled across the
    samples, averaged over ``repeats`` shuffles. The metric is accuracy against the labels
    (agreement with the model's own predictions without labels); for one value per sample,
    the mean squared error's rise (against the unshuffled outputs)."""
    import torch
    n = attributed[0].shape[0]
    if n < 2:
        raise bad_option("permutation importance shuffles features across samples: give "
                         "--samples 2 or more (a few hundred is better)")
    masks, count = feature_masks(attributed, window)
    fixed = tuple(fixed_args or ())
    regression = scores.kind == "value" or scores.classes == 1 and samples.labels is None
    with torch.no_grad():
        base_out = scores(*attributed, *fixed)
    if regression:
        ref = base_out.reshape(n, -1)
        info["metric"] = "mean squared error rise (against the unshuffled outputs)"

        def metric(out):
            return -((out.reshape(out.shape[0] // n, n, -1) - ref) ** 2).mean(dim=(1, 2))
        base = 0.0
    else:
        truth = samples.labels if samples.labels is not None else preds
        info["metric"] = ("accuracy" if samples.labels is not None else
                          "agreement with the model's predictions")

        def metric(out):
            return (_preds(out).reshape(-1, n) == truth.reshape(1, n)).float().mean(1)
        base = float(metric(base_out)[0])
    info["baseline_metric"] = base
    gen = torch.Generator().manual_seed(int(seed))
    perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(repeats)])   # [R, n]
    drops = torch.zeros(count, repeats)
    rows_per_call = max(1, (1 << 22) // max(1, sum(a[0].numel() for a in attributed)))
    with torch.no_grad():
        for g in range(count):
            inside = [(m == g) for m in masks]
            parts = []
            for a, m in zip(attributed, inside):
                shuffled = a[perms.reshape(-1)].reshape(repeats, *a.shape)      # [R, n, ...]
                parts.append(torch.where(m, shuffled, a.unsqueeze(0)).reshape(-1, *a.shape[1:]))
            rep = tuple(f.repeat(repeats, *([1] * (f.dim() - 1))) for f in fixed)
            outs = []
            for lo in range(0, repeats * n, max(n, rows_per_call // n * n)):
                hi = min(repeats * n, lo + max(n, rows_per_call // n * n))
                outs.append(scores(*(p[lo:hi] for p in parts), *(f[lo:hi] for f in rep)))
            drops[g] = base - metric(torch.cat(outs))
    imp = drops.mean(1)
    std = drops.std(1) if repeats > 1 else torch.zeros(count)
    info["repeats"] = repeats
    info["features"] = count
    maps = {"importance": imp.numpy(), "std": std.numpy()}
    kinds = {"importance": "features", "std": "spread"}
    names = feature_names(samples, floats)
    if len(attributed) == 1 and attributed[0].dim() == 4:   # a map of the patches' importance
        m = masks[0][0, 0]
        maps[floats[0]] = imp[m].numpy()[None, None]
        kinds[floats[0]] = "image"
    return maps, kinds, names


__all__ = ["METHODS", "SOURCE", "Explanation", "explain", "check_method", "conv_layers",
           "feature_masks", "node_names"]
