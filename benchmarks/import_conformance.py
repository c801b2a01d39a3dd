"""How much of ONNX nndsl import reads, measured: onnx's node tests and the light models.

    python benchmarks/import_conformance.py            # both tables, about a minute on 2 cores
    python benchmarks/import_conformance.py --ops      # and a row per op of the node tests
    python benchmarks/import_conformance.py --failures # and every case that does not pass

Node tests (``onnx.backend.test.case.node.collect_testcases()``, the cases with plain tensor
inputs): a case is *attempted* when every op of its graph is in the op table; it passes when
the imported spec's torch module, and its ONNX re-export in onnxruntime, reproduce the expected
outputs (``atol = 1e-4 · max|ref| + 1e-5``). A case is run as given, and when its import needs
values the case passes as graph inputs (filters, axes, pads) again with them bound; those are
counted apart. An op is *covered* when at least one of its cases passes.

Light models (``onnx/backend/test/data/light/``, opset 9): each with random weights (its own
are one value each, which makes every output equal), its final softmax left out; the spec's
torch module and its re-export against onnxruntime on the original graph.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from nndsl.importer import import_onnx  # noqa: E402
from nndsl.importer import conformance as cf  # noqa: E402
from nndsl.importer.ops import OPS  # noqa: E402


def node_tests(show_ops: bool, show_failures: bool) -> None:
    t0 = time.perf_counter()
    cases = cf.node_cases()
    attempted = [c for c in cases if all(op in OPS for op in c.ops)]
    results = [cf.run_case(c) for c in attempted]
    seconds = time.perf_counter() - t0
    status = Counter(r.status for r in results)
    passed = [r for r in results if r.status == "pass"]
    torch_ok = sum(r.torch_ok for r in results)
    ort_ok = sum(r.ort_ok for r in results)
    all_ops = {op for c in cases for op in c.ops}
    by_op: dict = defaultdict(list)
    for c, r in zip(attempted, results):
        for op in c.ops:
            by_op[op].append(r)
    covered = sorted(op for op, rs in by_op.items() if any(r.status == "pass" for r in rs))
    n = len(attempted)
    print("onnx node tests")
    print(f"  cases with tensor inputs        {len(cases):5d}  over {len(all_ops)} ops")
    print(f"  attempted (ops in the table)    {n:5d}  ({len(by_op)} ops)")
    print(f"  ops covered (a case passes)     {len(covered):5d}")
    print(f"  pass, torch backend             {torch_ok:5d}  {100 * torch_ok / n:5.1f}%")
    print(f"  pass, re-export in onnxruntime  {ort_ok:5d}  {100 * ort_ok / n:5.1f}%")
    print(f"  pass, both                      {len(passed):5d}  {100 * len(passed) / n:5.1f}%"
          f"  ({sum(not r.bound for r in passed)} as given, "
          f"{sum(r.bound for r in passed)} with inputs bound)")
    print(f"  refused at import               {status['import-fail']:5d}")
    print(f"  imported, wrong or failing      {status['mismatch'] + status['error']:5d}")
    print(f"  ({seconds:.1f} s)")
    if show_ops:
        print(f"\n  {'op':26s} {'cases':>5s} {'pass':>5s}")
        for op in sorted(by_op):
            rs = by_op[op]
            print(f"  {op:26s} {len(rs):5d} {sum(r.status == 'pass' for r in rs):5d}")
    if show_failures:
        print()
        for r in results:
            if r.status != "pass":
                print(f"  {r.status:11s} {r.name}: {r.detail[:160]}")


def light_models() -> None:
    print("\nlight models (random weights)")
    print(f"  {'model':14s} {'ONNX nodes':>10s} {'flat lines':>10s} {'spec lines':>10s} "
          f"{'import s':>9s} "
          f"{'torch err':>10s} {'ORT err':>10s} {'max|ref|':>9s}")
    for name, path in cf.light_models().items():
        original = onnx.load(str(path))
        model = cf.randomize_weights(original, seed=1)
        feeds = cf.random_inputs(model, seed=2)
        want = cf.run_ort(model, feeds)
        t0 = time.perf_counter()
        imported = import_onnx(model)
        seconds = time.perf_counter() - t0
        flat = import_onnx(model, blocks=False, check=False)     # without repeated blocks
        compiled = imported.compile()
        t = cf.compare(cf.run_torch(imported, feeds, compiled), want)
        o = cf.compare(cf.run_reexport(imported, feeds, compiled), want)
        ref = float(np.abs(want[0]).max())
        flag = "" if t.ok and o.ok else "  FAIL " + (t.detail or o.detail)
        print(f"  {name:14s} {len(original.graph.node):10d} {flat.lines:10d} {imported.lines:10d} "
              f"{seconds:9.2f} {t.error:10.2e} {o.error:10.2e} {ref:9.3g}{flag}")


def zoo_round_trip(only: list) -> None:
    """Every single-model spec of the zoo: compiled, exported to ONNX with its weights,
    imported, compiled again; the same outputs (onnxruntime on the export against the
    imported spec's torch module) and the same parameter count."""
    import nndsl
    from nndsl.errors import NndslError
    root = Path(__file__).resolve().parent.parent
    print("\nzoo round trip (spec -> ONNX -> import -> spec)")
    specs = sorted((root / "specs").glob("*/*.nn"))
    same = ok = total = 0
    for path in specs:
        key = f"{path.parent.name}/{path.stem}"
        if only and not any(o in key for o in only):
            continue
        if path.read_text().count("\nmodel ") + path.read_text().startswith("model ") > 1:
            continue
        total += 1
        t0 = time.perf_counter()
        try:
            rt = cf.round_trip(nndsl.compile(path))
            r, (n0, n1), imported, proto = rt.compared, rt.params, rt.imported, rt.proto
            status = "pass" if r.ok and n0 == n1 else "outputs" if not r.ok else \
                f"params {n1 - n0:+,}"
            ok += r.ok
            same += r.ok and n0 == n1
            lines = f"{import_onnx(proto, blocks=False, check=False).lines} -> {imported.lines}"
        except (NndslError, Exception) as e:     # noqa: BLE001 - a row per model
            status, lines = f"{type(e).__name__}: {str(e).splitlines()[0][:110]}", "-"
        print(f"  {key:32s} {status:40s} lines {lines:>11s} {time.perf_counter() - t0:6.1f}s",
              flush=True)
    print(f"  {ok}/{total} same outputs, {same}/{total} also the same parameter count")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", action="store_true", help="a row per op of the node tests")
    ap.add_argument("--failures", action="store_true", help="list the cases that do not pass")
    ap.add_argument("--no-light", action="store_true", help="skip the light models")
    ap.add_argument("--no-nodes", action="store_true", help="skip onnx's node tests")
    ap.add_argument("--zoo", nargs="*", default=None, metavar="NAME",
                    help="also the zoo round trip (of the specs whose path holds a NAME)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if not args.no_nodes:
        node_tests(args.ops, args.failures)
    if not args.no_light:
        light_models()
    if args.zoo is not None:
        zoo_round_trip(args.zoo)


if __name__ == "__main__":
    main()
