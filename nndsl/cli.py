"""The ``nndsl`` command line: check, inspect, compile, run, train, sample, passes, graph,
explain, robust, search, import, fmt, lsp. ``check``, ``inspect`` and ``compile`` also take an
``.onnx`` file, imported first (``nndsl import``).

Every user mistake prints a located ``error[CODE]`` on stderr and exits 1; usage errors exit 2.
No Python traceback reaches the user unless ``--debug`` asks for one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nndsl.backends.torch.reserved import check_names
from nndsl.errors import ArgumentError, NndslError
from nndsl.fsutil import write_error
from nndsl.cli_args import (_count, _dims, _limits, _params, _progress, _seed, _typed_path,
                            _warn, check_output, limit_flags, spec_arguments)

EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


def _compile(args, opt: str | None = None):
    import nndsl
    from nndsl.importer.cli_commands import spec_of
    spec, weights = spec_of(args.spec, args.weights)     # an .onnx file is imported first
    c = nndsl.compile(**spec, lib=tuple(args.lib or ()), model=args.model,
                      limits=_limits(args), progress=_progress(),
                      params=_params(args.param),
                      opt=opt or args.opt, disable=tuple(getattr(args, "disable_pass", None) or ()),
                      after=getattr(args, "after", None), quantize=args.quantize,
                      group=args.group, prune=args.prune, keep=tuple(args.keep or ()),
                      prune_scopes=tuple(args.prune_only) if args.prune_only else None,
                      prune_exclude=tuple(args.prune_exclude or ()),
                      calibrate=_typed_path(args.calibrate), observer=args.observer,
                      weights=weights)
    _warn(c, args)
    which = getattr(args, "print_after", None)
    if which and opt is None:
        for record in c.passes:
            if which in ("all", record.name):
                print(f"// IR after pass {record.name}"
                      f"{'' if record.changed else ' (no change)'}")
                print(c.__class__(record.graph, c.file, c.opt).ir())
    return c


def _variants(args, c) -> list:
    """The model compiled again with other values of its integer parameters (the first of
    param_variants' proposals that compiles), so the generated classes take those parameters
    as constructor arguments. None where the structure depends on data: calibration or
    pruning ranked on weights."""
    import nndsl
    from nndsl.backends.torch.codegen import param_variants
    if args.quantize == "int8-static" or args.prune:
        return []
    given = _params(args.param)
    out = []
    for name, values in param_variants(dict(c.graph.meta.get("params") or {})).items():
        for v in values:
            try:
                out.append(nndsl.compile(path=args.spec, lib=tuple(args.lib or ()),
                                         model=args.model, limits=_limits(args),
                                         params={**given, name: v}, opt=args.opt,
                                         disable=tuple(args.disable_pass or ()),
                                         quantize=args.quantize, group=args.group,
                                         keep=tuple(args.keep or ())))
                break
            except NndslError:
                continue
    return out


def _written_params(c) -> str:
    """The parameters of the graph a backend wrote (folding batch norms at -O2 leaves fewer
    than the spec has; a quantized weight still counts), and the spec's when they differ."""
    from nndsl.api import _numel, _quantized
    n = sum(_numel(p.type) for p in c.graph.params() if p.attr["trainable"] or _quantized(p))
    spec = c.param_count()
    return f"{n:,} parameters" + (f" (the spec has {spec:,})" if n != spec else "")


def cmd_check(args) -> int:
    """Check the spec's model, or every model of a file that defines several (each takes the
    --param values it declares)."""
    models = [args.model]
    if args.model is None and not str(args.spec).lower().endswith(".onnx"):
        from nndsl.api import load
        found = load(path=args.spec, lib=tuple(args.lib or ()))[0].models
        models = found if len(found) > 1 else [None]
    for m in models:
        args.model = m
        c = _compile(args)
        check_names(c.graph)   # names the torch module could not take
        print(f"ok: {c.name} — {c.param_count():,} parameters")
    return 0


def cmd_inspect(args) -> int:
    if args.explain:
        from nndsl.passes.rewrite import explaining
        from nndsl.report import explain_report
        with explaining():
            c = _compile(args)
        ran = list(dict.fromkeys(r.name for r in c.passes))
        if args.explain not in ran:
            raise ArgumentError(f"--explain {args.explain}: no such pass ran at {c.opt}",
                                code="E0264", hint=f"{c.opt} runs: " + (", ".join(ran) or
                                                                         "no pass (try -O1)"))
        print(explain_report(c, args.explain))
        return 0
    if args.diff:
        from nndsl.report import diff_report
        base_level, level = args.diff
        base, target = _compile(args, base_level), _compile(args, level)
        print(diff_report(base, target))
        return 0
    c = _compile(args)
    if args.json:
        print(json.dumps(c.to_json(), indent=2))
    elif args.ir:
        print(c.ir())
    elif args.params:
        for n in c.graph.params():
            kind = "" if n.attr["trainable"] else "  (buffer)"
            print(f"{n.name}: {n.type}{kind}")
    else:
        print(c.summary(batch=args.batch, **_dims(args.dim)))
    return 0


def cmd_compile(args) -> int:
    if args.onnx_int8 is not None and args.to != "onnx":
        raise ArgumentError("--onnx-int8 chooses how an ONNX export runs int8-dynamic",
                            code="E0257", hint="use it with --to onnx")
    if args.output:
        check_output(args.output, folder=args.to == "torch")
    c = _compile(args)
    if args.to == "onnx":
        from nndsl.backends.onnx import save
        out = check_output(args.output or f"build/{c.name}.onnx")
        model = c.to_onnx(weights=args.weights, int8=args.onnx_int8 or "u8u8")
        try:
            files = save(model, out, external_threshold=args.external_data_threshold)
        except (OSError, ValueError) as e:
            raise write_error(out, e) from None
        print(f"wrote {', '.join(map(str, files))} (onnx opset {model.opset_import[0].version}, "
              f"{c.opt}): {_written_params(c)}")
        return 0
    if args.to == "torch":
        from nndsl.backends.torch.codegen import write_package
        out = check_output(args.output or f"build/{c.name}", folder=True)
        variants = _variants(args, c)
        try:
            write_package(c, out, weights=args.weights, variants=variants)
        except (OSError, ValueError) as e:
            raise write_error(out, e) from None
        print(f"wrote {out}/model.py and {out}/weights.safetensors (torch, {c.opt}): "
              f"{_written_params(c)}")
        return 0
    raise ArgumentError(f"unknown target `{args.to}`", code="E0228", hint="use --to torch")


def cmd_run(args) -> int:
    from nndsl import runner
    if args.save:
        check_output(args.save)
    inputs = runner.load_inputs(args.input)
    path = Path(args.spec)
    if path.suffix == ".onnx":
        if args.backend == "torch":
            raise ArgumentError(f"--backend torch: {path.name} is an ONNX file, which "
                                f"onnxruntime runs", code="E1806",
                                hint="leave out --backend, or run the .nn spec with torch")
        outputs = runner.run_onnx(path, inputs, args.batch, args.seed)
        label = f"{path.name} (onnxruntime)"
    else:
        c = _compile(args)
        outputs, used = runner.run_spec(c, inputs, args.batch, weights=args.weights,
                                        seed=args.seed, backend=args.backend or "torch")
        label = f"{c.name} ({used})"
    print(f"ran {label}" + ("" if inputs else f" on example inputs, batch {args.batch}"))
    print(runner.describe(outputs))
    if args.save:
        runner.save_outputs(outputs, Path(args.save))
        print(f"saved {len(outputs)} output(s) to {args.save}")
    return 0


def cmd_train(args) -> int:
    from nndsl.train.run import run_training
    overrides = {"data": _typed_path(args.data), "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                 "seed": args.seed, "device": args.device, "amp": args.amp,
                 "compile": args.compile, "checkpoint": args.checkpoint}
    from nndsl.api import on_compile
    with on_compile(lambda c: _warn(c, args)):   # the models training compiles
        result = run_training(args.spec, model=args.model, params=_params(args.param),
                              overrides=overrides, out=args.out, resume=args.resume,
                              ddp="fsdp" if args.fsdp else args.ddp,
                              quiet=args.quiet, prune=args.prune, qat=args.qat,
                              group=args.group, lib=tuple(args.lib or ()),
                              limits=_limits(args))
    return 130 if result.interrupted else 0


def cmd_sample(args) -> int:
    from nndsl.train.plots import write_image_grid
    from nndsl.train.sampling import sample_run
    if args.n < 1:
        from nndsl.errors import ArgumentError
        raise ArgumentError(f"-n must be at least 1, got {args.n}", code="E0223")
    samples, name = sample_run(args.run, n=args.n, seed=args.seed, which=args.which)
    if args.output:
        check_output(args.output)
    out = Path(args.output) if args.output else Path(args.run) / "samples.png"
    if out.suffix == ".npz":
        from nndsl import runner
        runner.save_outputs({"samples": samples.numpy()}, out)
    else:
        write_image_grid(out, samples)
    lo, hi = float(samples.min()), float(samples.max())
    print(f"{args.n} samples of {name}, shape {list(samples.shape)}, values in "
          f"[{lo:.3g}, {hi:.3g}]: wrote {out}")
    return 0


def cmd_passes(args) -> int:
    from nndsl.passes import PASSES, PIPELINES
    from nndsl.passes.pipeline import level_of
    for level, names in PIPELINES.items():
        print(f"{level}: " + (" -> ".join(names) if names else "(verify only)"))
    print()
    for p in PASSES.values():
        note = "  [inference only]" if p.inference_only else ""
        print(f"{p.name:24s} {level_of(p.name)}  {p.doc}{note}")
    print("\ncompression (--prune runs before the level's passes, --quantize and --qat after):")
    for name, doc in COMPRESSION_HELP:
        print(f"  {name:25s} {doc}")
    return 0


COMPRESSION_HELP = [
    ("--prune magnitude=S", "zero the fraction S of smallest weights of each conv/linear"),
    ("--prune global=S", "the same with one threshold over all those weights"),
    ("--prune 2:4", "keep the 2 largest of every 4 input weights of each linear"),
    ("--prune channels=S", "remove the fraction S of channels (groups joined by residuals)"),
    ("--prune heads=S", "remove the fraction S of attention heads (-O1 and up)"),
    ("--quantize int8-dynamic", "int8 weights, activations quantized per call (linear)"),
    ("--quantize int8-static", "int8 weights, u8 activations calibrated (--calibrate)"),
    ("--quantize int8-weight", "int8 weights of linears and embeddings, float compute"),
    ("--quantize int4-weight", "int4 weights in groups (--group, default 32)"),
    ("--quantize f16 | bf16", "half precision; norms, softmax and reductions in f32"),
    ("train --qat int8|int4", "quantization noise on the weights while training"),
    ("train --prune ...", "magnitude (gradual) or N:M masks kept while training"),
]


def cmd_graph(args) -> int:
    from nndsl import draw
    from nndsl.fsutil import atomic_write_text
    fmt = draw.format_for(args.output, args.format)
    if args.output is not None:
        check_output(args.output)
    c = _compile(args)
    text = draw.render(c, fmt)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write_text(args.output, text)
    except (OSError, ValueError) as e:
        raise write_error(args.output, e) from None
    print(f"wrote {args.output} ({fmt})")
    return 0


def cmd_fmt(args) -> int:
    from nndsl.editor.fmt import run
    return run(args.paths, check=args.check, width=args.width)


def cmd_lsp(args) -> int:
    from nndsl.editor.lsp import main as lsp_main
    argv = (["--stdio"] if args.stdio else []) + \
        (["--log-file", args.log_file] if args.log_file else [])
    return lsp_main(argv)


def _width(text: str) -> int:
    """``nndsl fmt --width``: a line width the layout can work with."""
    from nndsl.editor.fmt import MAX_WIDTH, MIN_WIDTH
    try:
        v = int(text.strip()) if len(text) <= 20 else None
    except ValueError:
        v = None
    if v is None or not MIN_WIDTH <= v <= MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a width: an integer from "
                                         f"{MIN_WIDTH} to {MAX_WIDTH}")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nndsl", description="Compile .nn neural-network specs.")
    ap.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)

    def spec_cmd(name, help_):
        p = sub.add_parser(name, help=help_)
        spec_arguments(p, lib_help="a folder imports may read from, besides the spec's own "
                                   "(repeatable; searched after the importing file's folder)")
        p.add_argument("-O", dest="opt", default="O1", choices=["O0", "O1", "O2"],
                       type=lambda s: s if s.startswith("O") else f"O{s}",
                       help="optimization level (default O1)")
        p.add_argument("--disable-pass", action="append", metavar="NAME",
                       help="skip a pass of the pipeline (repeatable; see `nndsl passes`)")
        p.add_argument("--print-after", metavar="NAME|all",
                       help="print the IR after that pass (or after every pass)")
        p.add_argument("--weights", help="a .safetensors file of weights in the spec's names")
        p.add_argument("--deny-warnings", action="store_true",
                       help="treat warnings (unused layers, inputs, parameters) as errors")
        c = p.add_argument_group("compression")
        c.add_argument("--quantize", metavar="SCHEME",
                       help="int8-dynamic, int8-static, int8-weight, int4-weight, f16 or bf16")
        c.add_argument("--calibrate", metavar="NAME|PATH",
                       help="int8-static: calibration data (a built-in set such as digits, or "
                            "a data path as `train` takes)")
        c.add_argument("--observer", choices=["minmax", "moving_average", "percentile"],
                       help="int8-static: how calibration reads ranges (default minmax)")
        c.add_argument("--group", type=int, metavar="COLS",
                       help="int8/int4-weight: columns per scale (default: per row; int4: 32)")
        c.add_argument("--prune", metavar="KIND",
                       help="magnitude=S, global=S, 2:4, channels=S or heads=S (S in (0, 1)); "
                            "channels, heads and global magnitudes are ranked on --weights")
        c.add_argument("--prune-only", action="append", metavar="SCOPE",
                       help="prune only these scopes (repeatable)")
        c.add_argument("--prune-exclude", action="append", metavar="SCOPE",
                       help="never prune these scopes (repeatable)")
        c.add_argument("--keep", action="append", metavar="SCOPE",
                       help="leave this scope in float when quantizing (repeatable)")
        limit_flags(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)   # after the command too; never resets it
        return p

    p = spec_cmd("check", "parse, elaborate and verify a spec; print its parameter count")
    p.set_defaults(fn=cmd_check)
    p = spec_cmd("inspect", "per-layer table (shapes, params, FLOPs), the IR, or JSON")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ir", action="store_true", help="print the typed IR")
    g.add_argument("--json", action="store_true", help="print JSON only")
    g.add_argument("--params", action="store_true", help="list parameters and buffers")
    p.add_argument("--batch", type=_count, default=1, help="batch size for FLOPs (default 1)")
    p.add_argument("--dim", action="append", metavar="NAME=INT", help="bind a symbolic dim")
    p.add_argument("--after", metavar="PASS", help="stop the pipeline after this pass")
    g.add_argument("--diff", nargs=2, metavar=("LEVEL", "LEVEL"),
                   help="what the passes did between two levels, e.g. --diff O0 O2")
    g.add_argument("--explain", metavar="PASS",
                   help="what each rule of a pass did: every candidate it fired on or declined, "
                        "and why")
    p.set_defaults(fn=cmd_inspect)
    p = spec_cmd("compile", "compile to a backend")
    p.add_argument("--to", default="torch", choices=["torch", "onnx"], help="backend")
    p.add_argument("-o", "--output", help="output directory (torch) or .onnx file")
    p.add_argument("--external-data-threshold", type=int, default=None, metavar="BYTES",
                   help="ONNX: weights larger than this go to FILE.onnx.HASH.data (default 1 GiB)")
    p.add_argument("--onnx-int8", choices=["u8u8", "u8s8"], default=None,
                   help="ONNX, int8-dynamic: u8u8 (default) is exact on every CPU; u8s8 runs "
                        "onnxruntime's faster kernels, exact only on CPUs with VNNI (or ARM)")
    p.set_defaults(fn=cmd_compile)
    p = spec_cmd("run", "run a spec (torch) or an .onnx file (onnxruntime) on inputs")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy|FILE.npz",
                   help="input arrays (default: random example inputs)")
    p.add_argument("--batch", type=_count, default=2, help="batch size of example inputs")
    p.add_argument("--seed", type=_seed, default=0, help="seed of example inputs")
    p.add_argument("--save", metavar="OUT.npz", help="write every output to an .npz file")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "auto"], default=None,
                   help="what runs a spec: torch (default), onnxruntime (its ONNX export) or "
                        "auto (whichever a short measurement finds faster)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("train", help="train a spec's model as its train section says")
    spec_arguments(p, "a .nn file with a train section (or one that imports the model)")
    p.add_argument("--data", metavar="NAME|PATH",
                   help="a built-in data set (digits, iris, ...) or .npz/.npy/.csv/image folder")
    p.add_argument("--epochs", type=_count, help="epochs in all (with --resume: the new total)")
    p.add_argument("--batch", type=_count, help="batch size (per process)")
    p.add_argument("--lr", type=float, help="learning rate of the optimizer")
    p.add_argument("--seed", type=_seed, help="seed of weights, splits, shuffling and dropout")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--checkpoint", action="store_true",
                   help="gradient checkpointing per block (less memory, more compute)")
    p.add_argument("--fsdp", action="store_true",
                   help="fully sharded data-parallel under torchrun (parameters, gradients and "
                        "optimizer state split across processes)")
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel under torchrun (gloo on CPU, NCCL on CUDA)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--prune", metavar="KIND",
                   help="prune while training: magnitude=S or global=S (gradually, to "
                        "sparsity S), or 2:4")
    p.add_argument("--qat", metavar="BITS", help="quantization-aware training: int8 or int4")
    p.add_argument("--group", type=int, metavar="COLS", help="--qat int4: columns per scale")
    p.add_argument("--deny-warnings", action="store_true",
                   help="treat warnings (unused layers, inputs, parameters) as errors")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    limit_flags(p)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("sample", help="draw samples from a trained vae, gan or ddpm run")
    p.add_argument("run", help="the run folder (--out of nndsl train)")
    p.add_argument("-n", type=_count, default=16, help="how many samples (default 16)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the sampling noise")
    p.add_argument("--which", choices=["best", "last"], default="best", help="which checkpoint")
    p.add_argument("-o", "--output", help="a .png grid (default RUN/samples.png) or an .npz")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_sample)
    p = spec_cmd("graph", "draw the compiled graph: Graphviz DOT, SVG or an HTML page")
    p.add_argument("--format", choices=["dot", "svg", "html"],
                   help="default: from the -o suffix (.dot/.gv, .svg, .html), else dot")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.set_defaults(fn=cmd_graph)
    from nndsl.explain.cli_commands import add_explain_parser, add_robust_parser
    add_explain_parser(sub)     # nndsl explain: attributions, attention maps, importances
    add_robust_parser(sub)      # nndsl robust: accuracy under FGSM/PGD attacks
    from nndsl.search.cli_commands import add_search_parser
    add_search_parser(sub)      # nndsl search: architecture search (optuna)
    from nndsl.bench.cli_commands import add_bench_parser
    add_bench_parser(sub)       # nndsl bench: every way to run a spec, timed side by side
    from nndsl.importer.cli_commands import add_import_parser
    add_import_parser(sub)      # nndsl import: an ONNX model as a .nn spec and its weights
    p = sub.add_parser("fmt", help="lay out .nn specs in the canonical style (in place)")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a .nn file, a folder (every .nn file below it) or - (stdin to stdout)")
    p.add_argument("--check", action="store_true",
                   help="change nothing: print a diff and exit 1 when a file is not formatted")
    p.add_argument("--width", type=_width, default=100, metavar="N",
                   help="the line width (default 100)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_fmt)
    p = sub.add_parser("lsp", help="the language server (LSP over stdin/stdout), for editors")
    p.add_argument("--stdio", action="store_true",
                   help="talk over stdin/stdout (the default and only transport)")
    p.add_argument("--log-file", metavar="PATH", help="write the server's log to this file")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_lsp)
    p = sub.add_parser("passes", help="list the optimization pipelines and passes")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_passes)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if e.code in (0, None) else EXIT_USAGE
    try:
        return args.fn(args)
    except NndslError as e:
        if args.debug:
            raise
        print(e.render(), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RecursionError:
        if args.debug:
            raise
        print("error[E0605]: the spec is nested too deeply to compile\n"
              "  = hint: split deep expressions into several assignments", file=sys.stderr)
        return EXIT_USER
    except Exception as e:  # an nndsl bug: say so plainly, keep the traceback behind --debug
        if args.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e}\n"
              f"  = note: this is a bug in nndsl; rerun with --debug for a traceback and report it",
              file=sys.stderr)
        return EXIT_INTERNAL
