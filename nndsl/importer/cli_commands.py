"""``nndsl import FILE.onnx -o OUT.nn [--weights-out W.safetensors]``: its parser and command.

``add_import_parser(sub)`` adds the subcommand to an argparse subparsers object; it sets ``fn``
to :func:`run_import`. Both files are written only after the spec compiled and its parameters
matched the weights, each atomically, so a failed import writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_import_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("import", help="an ONNX model as a .nn spec and its weights")
    p.add_argument("onnx", metavar="FILE.onnx", help="the ONNX model to import")
    p.add_argument("-o", "--output", required=True, metavar="OUT.nn",
                   help="the spec to write")
    p.add_argument("--weights-out", metavar="W.safetensors",
                   help="where the weights go (default: OUT.safetensors next to the spec)")
    p.add_argument("--name", help="the model's name in the spec (default: the graph's)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=run_import)
    return p


def run_import(args) -> int:
    from nndsl.cli_args import check_output
    from nndsl.errors import ArgumentError
    from nndsl.fsutil import write_error
    from nndsl.importer import import_onnx
    out = Path(args.output)
    if out.suffix != ".nn":
        raise ArgumentError(f"-o {out}: a spec's name ends in .nn", code="E1611",
                            hint=f"-o {out.with_suffix('.nn')}")
    weights = Path(args.weights_out) if args.weights_out else out.with_suffix(".safetensors")
    if weights.suffix != ".safetensors":
        raise ArgumentError(f"--weights-out {weights}: weights are written as .safetensors",
                            code="E1611",
                            hint=f"--weights-out {weights.with_suffix('.safetensors')}")
    check_output(out)
    check_output(weights)
    imported = import_onnx(args.onnx, name=args.name)
    try:
        files = imported.save(out, weights)
    except (OSError, ValueError) as e:
        raise write_error(out, e) from None
    n = sum(int(v.size) for k, v in imported.weights.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    print(f"wrote {', '.join(map(str, files))}: model {imported.name}, {imported.lines} lines "
          f"from {imported.onnx_nodes} ONNX nodes (opset {imported.opset}), {n:,} parameters")
    return 0


def spec_of(spec: str, weights=None) -> tuple[dict, object]:
    """What ``nndsl compile`` (and ``check``, ``inspect``) compile for the spec argument: a
    ``.onnx`` file is imported first (the spec's text, and its weights unless ``--weights``
    gives others); anything else is a spec path. ``(compile keywords, weights)``."""
    if not str(spec).lower().endswith(".onnx"):
        return {"path": spec}, weights
    from nndsl.importer import import_onnx
    imported = import_onnx(spec)
    return {"source": imported.text}, weights if weights is not None else imported.state()
