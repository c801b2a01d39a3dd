"""``nndsl search``: the command's parser and what it runs (docs/SEARCH.md)."""

from __future__ import annotations

import argparse


def _trials(text: str) -> int:
    from nndsl.search.run import MAX_TRIALS
    try:
        v = int(text.strip()) if len(text) <= 20 else None
    except ValueError:
        v = None
    if v is None or not 1 <= v <= MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a number of trials: a whole "
                                         f"number from 1 to {MAX_TRIALS:,}")
    return v


def cmd_search(args) -> int:
    from nndsl.cli_args import _typed_path
    from nndsl.search.run import run_search
    overrides = {"data": _typed_path(args.data), "epochs": args.epochs, "batch": args.batch,
                 "lr": args.lr}
    run_search(args.spec, trials=args.trials, objective=args.objective, out=args.output,
               storage=args.storage, study=args.study, sampler=args.sampler, seed=args.seed,
               worker=args.worker, model=args.model, overrides=overrides,
               lib=tuple(args.lib or ()), quiet=args.quiet, as_json=args.json)
    return 0


def add_search_parser(sub) -> None:
    from nndsl.cli_args import _count, _seed
    from nndsl.search.study import SAMPLERS
    p = sub.add_parser("search", help="architecture search over a spec's choice(...)/range(...) "
                                      "parameters, under its search section's limits")
    p.add_argument("spec", help="a .nn file whose model parameters declare a search space")
    p.add_argument("--trials", type=_trials, required=True,
                   help="trials the study holds in all (a resumed study runs the rest)")
    p.add_argument("--objective", metavar="NAME[,NAME...]",
                   help="what to optimize: val_accuracy, val_loss, params, flops, ... "
                        "(default: the train section's monitor)")
    p.add_argument("--sampler", choices=sorted(SAMPLERS),
                   help="tpe (default for one objective), random, nsga2 (default for several), "
                        "evolutionary (= nsga2)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the sampler (default 0)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="the search's folder (default runs/search-MODEL)")
    p.add_argument("--storage", metavar="PATH|URL",
                   help="the optuna study: a SQLite file or a database URL (default OUT/study.db)")
    p.add_argument("--study", metavar="NAME", help="the study's name (default: the model's)")
    p.add_argument("--worker", action="store_true",
                   help="run trials of a shared study and write only their run folders")
    p.add_argument("--model", help="which model of the file (when it defines several)")
    p.add_argument("--lib", action="append", metavar="DIR",
                   help="a folder imports may read from, besides the spec's own (repeatable)")
    t = p.add_argument_group("training of each trial (overriding the train section)")
    t.add_argument("--data", metavar="NAME|PATH", help="a built-in data set or a data file")
    t.add_argument("--epochs", type=_count, help="epochs per trial")
    t.add_argument("--batch", type=_count, help="batch size")
    t.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_search)
