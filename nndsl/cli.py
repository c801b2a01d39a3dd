"""The ``nndsl`` command line: check, inspect, compile, passes.

Every user mistake prints a located ``error[CODE]`` on stderr and exits 1; usage errors exit 2.
No Python traceback reaches the user unless ``--debug`` asks for one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nndsl.errors import ArgumentError, NndslError

EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


def parse_value(text: str):
    """A ``--param`` value: int, float, true/false, a [list], else a string. Never evaluated."""
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    if t.startswith("[") and t.endswith("]") or t.startswith("(") and t.endswith(")"):
        inner = t[1:-1].strip()
        return tuple(parse_value(p) for p in inner.split(",")) if inner else ()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def _params(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ArgumentError(f"--param expects NAME=VALUE, got `{p}`", code="E0227",
                                hint="for example --param classes=10")
        k, v = p.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


def _dims(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        try:
            out[k.strip()] = int(v)
        except ValueError:
            raise ArgumentError(f"--dim expects NAME=INT, got `{p}`", code="E0227") from None
    return out


def _compile(args):
    import nndsl
    return nndsl.compile(args.spec, model=args.model, params=_params(args.param),
                         opt=args.opt)


def cmd_check(args) -> int:
    c = _compile(args)
    print(f"ok: {c.name} — {c.param_count():,} parameters")
    return 0


def cmd_inspect(args) -> int:
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
    c = _compile(args)
    if args.to == "torch":
        from nndsl.backends.torch.codegen import write_package
        out = Path(args.output or f"build/{c.name}")
        write_package(c, out)
        print(f"wrote {out}/model.py and {out}/weights.safetensors "
              f"({c.param_count():,} parameters)")
        return 0
    raise ArgumentError(f"unknown target `{args.to}`", code="E0228", hint="use --to torch")


def cmd_passes(args) -> int:
    from nndsl.passes import PASSES, PIPELINES
    for level, names in PIPELINES.items():
        print(f"{level}: " + (" -> ".join(names) if names else "(verify only)"))
    for p in PASSES.values():
        print(f"  {p.name:24s} {p.level}  {p.doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nndsl", description="Compile .nn neural-network specs.")
    ap.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)

    def spec_cmd(name, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("spec", help="a .nn file")
        p.add_argument("--model", help="which model of the file (when it defines several)")
        p.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="override a model parameter (repeatable)")
        p.add_argument("-O", dest="opt", default="O1", choices=["O0", "O1", "O2"],
                       type=lambda s: s if s.startswith("O") else f"O{s}",
                       help="optimization level (default O1)")
        p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        return p

    p = spec_cmd("check", "parse, elaborate and verify a spec; print its parameter count")
    p.set_defaults(fn=cmd_check)
    p = spec_cmd("inspect", "per-layer table (shapes, params, FLOPs), the IR, or JSON")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ir", action="store_true", help="print the typed IR")
    g.add_argument("--json", action="store_true", help="print JSON only")
    g.add_argument("--params", action="store_true", help="list parameters and buffers")
    p.add_argument("--batch", type=int, default=1, help="batch size for FLOPs (default 1)")
    p.add_argument("--dim", action="append", metavar="NAME=INT", help="bind a symbolic dim")
    p.set_defaults(fn=cmd_inspect)
    p = spec_cmd("compile", "compile to a backend")
    p.add_argument("--to", default="torch", choices=["torch"], help="backend")
    p.add_argument("-o", "--output", help="output directory")
    p.set_defaults(fn=cmd_compile)
    p = sub.add_parser("passes", help="list the optimization pipelines and passes")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
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
