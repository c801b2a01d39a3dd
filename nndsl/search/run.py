"""One search: the spec's space and limits, the objectives checked against its train section,
the trials (compile, check the limits, train), and the outputs.

Outputs, in ``-o OUT`` (default ``runs/search-MODEL``)::

    study.db        the optuna study (unless --storage names another place)
    trials/NNNN/    the run folder of each trained trial (nndsl train's layout)
    search.json     every trial (values, objectives, parameters and FLOPs, state), the Pareto
                    front and the best trial: what --json prints
    pareto.png      the first metric objective against parameters (or FLOPs), front marked
    best.nn         the spec with the best trial's values in place of its search space

A worker (``--worker``) runs trials and writes only their run folders; the outputs are written
by a run without ``--worker`` (which runs what is left of the total, maybe nothing).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.elab.space import (SearchError, broken, limits_of, measure, search_section, space_of,
                              space_size, spec_literal)
from nndsl.errors import NndslError
from nndsl.fsutil import atomic_write_text
from nndsl.search.objectives import parse_objectives, resolve_objectives
from nndsl.search.pareto import best_of_front, pareto_front, plot_front

MAX_TRIALS = 100_000
PROBE_ALL = 256        # a finite space this small is checked whole for a configuration in limits
PROBE_SECONDS = 20.0   # how long the check of the limits may compile configurations


@dataclass
class SearchResult:
    out: Path
    study: str
    storage: str
    objectives: list
    dims: list
    trials: list              # rows (dicts), by trial number
    front: list               # trial numbers on the Pareto front of the objectives
    best: dict | None
    ran: int                  # trials this process ran
    seconds: float
    repeats: int = 0          # proposals of configurations tried before (not counted)
    stopped: str | None = None  # why fewer trials than asked ran, if they did
    files: dict = field(default_factory=dict)

    def counts(self) -> dict:
        out = {"trials": sum(1 for t in self.trials if t["state"] != "interrupted")}
        for s in ("trained", "rejected", "failed", "running", "interrupted"):
            out[s] = sum(1 for t in self.trials if t["state"] == s)
        out["repeats"] = self.repeats
        return out

    def to_json(self) -> dict:
        return {"study": self.study, "storage": self.storage,
                "objectives": [o.to_json() for o in self.objectives],
                "space": [d.to_json() for d in self.dims], "counts": self.counts(),
                "trials": self.trials, "pareto": self.front,
                "best": self.best, "stopped": self.stopped, "files": self.files}


class _Spec:
    """The spec being searched: its program, model, space, limits and compile options."""

    def __init__(self, spec, model, lib):
        import nndsl
        from nndsl.api import load
        from nndsl.syntax import read_source
        self.path = Path(spec)
        self.lib = tuple(lib)
        program, _ = load(path=self.path, lib=self.lib)
        if model is None and len(program.models) > 1 and len(program.main.searches) == 1:
            model = program.main.searches[0].model
        # the default configuration (first values): checks the spec, picks the model
        self.default = nndsl.compile(path=self.path, model=model, opt="O1",
                                     optimize_section=False, lib=self.lib)
        self.model = self.default.name
        self.program = program
        defn = program.definitions[self.model]
        self.dims = space_of(defn)
        if not self.dims:
            raise SearchError(f"model `{self.model}` declares no search space", span=defn.name_span,
                              code="E1530", hint="give parameters defaults such as `width: int = "
                                                 "choice(64, 128)` or `depth: int = range(1, 4)`")
        section = search_section(program.main, self.model)
        self.limits = limits_of(section) if section is not None else []
        self.text = read_source(self.path).lstrip("\ufeff")

    def compile(self, values: dict):
        import nndsl
        return nndsl.compile(path=self.path, model=self.model, params=values, opt="O1",
                             optimize_section=False, lib=self.lib)


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"
    if isinstance(v, float):
        text = f"{v:.4g}"
        return text if any(c in text for c in ".en") else text + ".0"   # 0.0, not 0
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return spec_literal(v)


def _values_text(values: dict) -> str:
    return " ".join(f"{k}={spec_literal(v)}" for k, v in values.items())


def _broken_text(brk) -> str:
    return "; ".join(f"{lim.quantity} {v:,} breaks `{lim.text()}`" for lim, v in brk)


def _probe(spec: _Spec) -> None:
    """Refuse a search whose space has no configuration within the limits. A space of at most
    PROBE_ALL configurations is tried whole (until one fits); a larger one at its smallest
    numbers (each numeric parameter at its least value, with every combination of the others,
    when they are at most PROBE_ALL) against its upper bounds (`<=`, `<`)."""
    if not spec.limits:
        return
    numeric = [d for d in spec.dims if all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           for v in d.options)]
    whole = space_size(spec.dims) <= PROBE_ALL
    if whole:
        grid, limits = [d.options for d in spec.dims], spec.limits
    else:   # the least numbers make the least sizes: only upper bounds can be judged there
        grid = [(min(d.options),) if d in numeric else d.options for d in spec.dims]
        limits = [lim for lim in spec.limits if lim.op in ("<=", "<")]
        if not limits or math.prod(len(g) for g in grid) > PROBE_ALL:
            return
    start = time.perf_counter()
    smallest = {}
    tried = 0
    for combo in itertools.islice(itertools.product(*grid), PROBE_ALL):
        values = dict(zip((d.name for d in spec.dims), combo))
        try:
            m = measure(spec.compile(values))
        except NndslError:
            continue
        tried += 1
        brk = broken(limits, m)
        if not brk:
            return
        for lim, v in brk:
            if lim.quantity not in smallest or v < smallest[lim.quantity][0]:
                smallest[lim.quantity] = (v, values)
        if time.perf_counter() - start > PROBE_SECONDS:
            return   # no proof either way in the time: let the trials tell
    if not tried:
        return       # nothing compiled: the trials report why
    notes = [(f"the least {q} of a configuration tried: {v:,} ({_values_text(vals)})", None)
             for q, (v, vals) in smallest.items()]
    section = search_section(spec.program.main, spec.model)
    what = (f"none of its {space_size(spec.dims):,} configurations keeps the limits" if whole
            else "even with every number of the space at its least value, no configuration "
                 "keeps the limits")
    raise SearchError(f"the search space of `{spec.model}` is empty under its limits: {what}",
                      span=section.span if section is not None else None, code="E1531",
                      notes=notes, hint="loosen the limits of the search section, or let the "
                                        "space reach smaller configurations")


def _objective_values(objectives, measured: dict, result) -> tuple[list, dict]:
    out, shown = [], {}
    record = {} if result is None else result.best or (result.history[-1] if result.history
                                                        else {})
    for o in objectives:
        if not o.trained:
            v = float(measured[o.name])
        elif o.name.startswith("test_"):
            v = float(result.test.get(o.name, float("nan")))
        else:
            v = float(record.get(o.name, float("nan")))
        out.append(v)
        shown[o.name] = v
    return out, shown


class _Evaluator:
    def __init__(self, spec: _Spec, objectives, out: Path, overrides: dict):
        self.spec, self.objectives, self.out, self.overrides = spec, objectives, out, overrides
        self.train = any(o.trained for o in objectives)

    def __call__(self, number: int, values: dict):
        t0 = time.perf_counter()
        try:
            c = self.spec.compile(values)
        except NndslError as e:
            return "fail", None, {"kind": "failed", "reason": f"error[{e.code}]: {e.message}"[:500]}
        m = measure(c)
        attrs = {"measured": m}
        brk = broken(self.spec.limits, m)
        if brk:
            attrs.update(kind="rejected", reason=_broken_text(brk))
            return "pruned", None, attrs
        if not self.train:
            vals, shown = _objective_values(self.objectives, m, None)
            attrs.update(kind="trained", objectives=shown,
                         seconds=round(time.perf_counter() - t0, 3))
            return "complete", vals, attrs
        from nndsl.train.run import run_training
        run = self.out / "trials" / f"{number:04d}"
        try:
            result = run_training(self.spec.path, model=self.spec.model, params=values,
                                  overrides=self.overrides, out=run, quiet=True,
                                  lib=self.spec.lib)
        except NndslError as e:
            attrs.update(kind="failed", reason=f"error[{e.code}]: {e.message}"[:500],
                         run=run.relative_to(self.out).as_posix())
            return "fail", None, attrs
        if result.interrupted:
            raise KeyboardInterrupt
        vals, shown = _objective_values(self.objectives, m, result)
        attrs.update(kind="trained", objectives=shown, run=run.relative_to(self.out).as_posix(),
                     seconds=round(time.perf_counter() - t0, 3))
        if result.stopped:
            attrs["stopped"] = str(result.stopped)[:200]
        return "complete", vals, attrs


def _rows(study, dims, objectives) -> list[dict]:
    from nndsl.search.study import decode
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if a.get("surplus") or a.get("repeat_of") is not None or t.state.name == "WAITING":
            continue
        a = {**a, **(a.get("outcome") or {})}
        if t.state.name == "RUNNING":
            state = "running"
        elif a.get("interrupted"):
            state = "interrupted"
        else:
            state = {"COMPLETE": "trained", "PRUNED": "rejected"}.get(t.state.name, "failed")
        try:
            values = decode(dims, t.params)
        except (KeyError, ValueError):
            values = dict(t.params)
        row = {"number": t.number, "state": state, "values": values,
               "objectives": ({o.name: v for o, v in zip(objectives, t.values)}
                              if state == "trained" and t.values else None),
               "measured": a.get("measured"), "reason": a.get("reason"), "run": a.get("run"),
               "seconds": a.get("seconds")}
        rows.append(row)
    return rows


def _table(result: SearchResult) -> str:
    import io

    from rich.console import Console
    from rich.table import Table
    counts = result.counts()
    table = Table(title=f"search {result.study} ({counts['trials']} trials)")
    table.add_column("trial", justify="right")
    for d in result.dims:
        table.add_column(d.name, justify="right")
    for o in result.objectives:
        table.add_column(o.name + (" ↑" if o.direction == "maximize" else " ↓"), justify="right")
    shown = [q for q in ("params", "flops") if q not in [o.name for o in result.objectives]]
    for q in shown:
        table.add_column(q, justify="right")
    table.add_column("state")
    front = set(result.front)
    for r in result.trials:
        cells = [str(r["number"]) + (" *" if r["number"] in front else "")]
        cells += [_fmt(r["values"].get(d.name, "")) for d in result.dims]
        m = r["measured"] or {}
        objs = {**m, **(r["objectives"] or {})}
        cells += [_fmt(objs[o.name]) if o.name in objs else "" for o in result.objectives]
        cells += [_fmt(m[q]) if q in m else "" for q in shown]
        state = r["state"]
        if r["state"] in ("rejected", "failed") and r.get("reason"):
            state += f": {r['reason']}"
        cells.append(state)
        table.add_row(*cells)
    buf = io.StringIO()
    Console(file=buf, width=160, color_system=None, force_terminal=False).print(table)
    lines = [f"{counts['trials']} trials: {counts['trained']} trained, {counts['rejected']} "
             f"rejected by the limits (not trained), {counts['failed']} failed"
             + (f", {counts['running']} running" if counts["running"] else "")
             + (f"; {counts['interrupted']} interrupted (not counted, run again)"
                if counts["interrupted"] else "")
             + (f"; the sampler proposed {counts['repeats']} configurations again (told their "
                f"outcome, not counted)" if counts["repeats"] else "")]
    if result.stopped:
        lines.append(f"stopped early: {result.stopped}")
    if result.front:
        lines.append("Pareto front (*): " + ", ".join(f"#{n}" for n in result.front))
    if result.best is not None:
        b = result.best
        lines.append(f"best: #{b['number']} " + _values_text(b["values"]) + " — "
                     + ", ".join(f"{k} {_fmt(v)}" for k, v in b["objectives"].items()))
    for name, path in result.files.items():
        lines.append(f"{name}: {path}")
    return buf.getvalue() + "\n".join(lines)


def _check_trials(trials) -> int:
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise SearchError(f"--trials must be a whole number from 1 to {MAX_TRIALS:,}, got "
                          f"{str(trials)[:20]}", code="E1522",
                          hint="the number of trials the study holds in all, e.g. --trials 20")
    return trials


def run_search(spec, *, trials: int, objective: str | None = None, out=None,
               storage: str | None = None, study: str | None = None, sampler: str | None = None,
               seed: int = 0, worker: bool = False, model: str | None = None,
               overrides: dict | None = None, lib=(), quiet: bool = False,
               as_json: bool = False) -> SearchResult:
    """Search the space of ``spec`` (a path) until its study holds ``trials`` trials.

    ``objective``: comma-separated names (default: the train section's ``monitor``);
    ``overrides``: the training options of every trial (``data``, ``epochs``, ``batch``, ``lr``,
    as ``nndsl train`` takes them); ``storage``: a SQLite path or database URL (default
    ``OUT/study.db``); ``study``: the study's name (default the model's); ``seed`` seeds the
    sampler (training uses the train section's seed). ``worker``: run trials only, write no
    outputs. Returns the :class:`SearchResult` (after the outputs are written)."""
    t_start = time.perf_counter()
    total = _check_trials(trials)
    from nndsl.search.study import (StorageLock, fail_orphans, import_optuna, make_sampler,
                                    open_storage, run_trials, shown_url, storage_url)
    optuna = import_optuna()
    s = _Spec(spec, model, lib)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    from nndsl.train.config import resolve
    cfg = resolve(s.default, s.default.train_section, overrides) \
        if s.default.train_section is not None or overrides.get("data") else None
    if objective is None:
        if cfg is None:
            raise SearchError(f"{s.path} has no train section to take an objective from",
                              code="E1520", hint="add a train section (or give --data), or "
                                                 "search the sizes alone: --objective params")
        names = [cfg.monitor]
    else:
        names = parse_objectives(objective)
    objectives = resolve_objectives(names, cfg, "the train section" if cfg is not None else
                                    "a spec without a train section")
    _probe(s)
    out = Path(out) if out is not None else Path("runs") / f"search-{s.model}"
    out.mkdir(parents=True, exist_ok=True)
    url = storage_url(storage, out)
    name = study or s.model
    lock = StorageLock(url)
    meta = {"model": s.model, "space": [d.to_json() for d in s.dims],
            "objectives": [o.to_json() for o in objectives],
            "limits": [lim.text() for lim in s.limits]}
    with lock():   # processes creating the database's tables at once would clash
        storage_obj = open_storage(optuna, url)
        existing = [x.study_name for x in storage_obj.get_all_studies()]
        before = 0
        if name in existing:
            st = optuna.load_study(study_name=name, storage=storage_obj)
            before = len(st.get_trials(deepcopy=False))
        seed_here = seed + 7919 * before + (os.getpid() if worker else 0)
        st = optuna.create_study(study_name=name, storage=storage_obj, load_if_exists=True,
                                 directions=[o.direction for o in objectives],
                                 sampler=make_sampler(optuna, sampler, seed_here, len(objectives),
                                                      total))
        old = st.user_attrs.get("nndsl")
        if old is None:
            if before == 0 and (out / "trials").is_dir() and any((out / "trials").iterdir()):
                raise SearchError(f"{out / 'trials'} holds the trials of another search",
                                  code="E1524", hint="choose another -o, or remove the folder")
            st.set_user_attr("nndsl", meta)
        elif old != meta:
            diff = [k for k in meta if old.get(k) != meta[k]]
            raise SearchError(f"the study `{name}` in {shown_url(url)} was made for another "
                              f"search: its {' and '.join(diff)} differ", code="E1523",
                              notes=[(f"the study's {k}: {json.dumps(old.get(k))}", None)
                                     for k in diff],
                              hint="continue it with the same spec and --objective, or start "
                                   "another: --study NAME or another -o/--storage")
        fail_orphans(optuna, storage_obj, st)

    def report(number, values, state, attrs):
        if quiet or as_json:
            return
        what = {"complete": "trained", "pruned": "rejected", "fail": "failed"}[state]
        if state == "complete":
            what = ", ".join(f"{k} {_fmt(v)}" for k, v in attrs.get("objectives", {}).items())
        elif attrs.get("reason"):
            what += f": {attrs['reason']}"
        print(f"trial {number}: {_values_text(values)} — {what}", flush=True)

    ev = _Evaluator(s, objectives, out, overrides)
    ran, stopped = run_trials(optuna, storage_obj, st, lock, total, s.dims, ev, report,
                              space=space_size(s.dims), seed=seed_here)
    with lock():
        rows = _rows(st, s.dims, objectives)
        repeats = sum(1 for t in st.get_trials(deepcopy=False)
                      if t.user_attrs.get("repeat_of") is not None)
    trained = [r for r in rows if r["state"] == "trained"]
    points = [tuple(r["objectives"][o.name] for o in objectives) for r in trained]
    dirs = [o.direction for o in objectives]
    front_idx = pareto_front(points, dirs)
    front = [trained[i]["number"] for i in front_idx]
    best = None
    if front_idx:
        b = trained[best_of_front(points, front_idx, dirs)]
        best = {"number": b["number"], "values": b["values"], "objectives": b["objectives"],
                "measured": b["measured"], "run": b["run"]}
    result = SearchResult(out, name, shown_url(url), objectives, s.dims, rows, front, best, ran,
                          time.perf_counter() - t_start, repeats, stopped)
    if worker:
        if as_json:
            print(json.dumps(result.to_json(), indent=2))
        elif not quiet:
            c = result.counts()
            print(f"worker: ran {ran} trial{'s' if ran != 1 else ''}; the study holds "
                  f"{c['trials']} of {total} ({c['trained']} trained, {c['rejected']} rejected, "
                  f"{c['failed']} failed)")
        return result
    _write_outputs(result, s, objectives, trained)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    elif not quiet:
        print(_table(result))
        if not trained:
            print(f"note: no trial trained: {result.counts()['rejected']} broke the limits, "
                  f"{result.counts()['failed']} failed; see the reasons above")
    return result


def _write_outputs(result: SearchResult, s: _Spec, objectives, trained) -> None:
    out = result.out
    files = {}
    if result.best is not None:
        from nndsl.search.rewrite import fill_values
        b = result.best
        head = (f"# the configuration of trial #{b['number']} of `nndsl search` (study "
                f"{result.study}): " + ", ".join(f"{k} {_fmt(v)}"
                                                  for k, v in b["objectives"].items()) + "\n")
        atomic_write_text(out / "best.nn", head + fill_values(s.text, s.dims, b["values"]))
        files["best spec"] = str(out / "best.nn")
    metric = next((o for o in objectives if o.trained), None)
    if trained and metric is not None:
        size = next((o.name for o in objectives if o.name in ("params", "flops")), "params")
        pts = [(r["objectives"][metric.name], (r["measured"] or {}).get(size, 0)) for r in trained]
        front2 = set(pareto_front(pts, [metric.direction, "minimize"]))
        rows = [{"number": r["number"], "metric": p[0], "size": p[1], "front": i in front2}
                for i, (r, p) in enumerate(zip(trained, pts))]
        plot_front(out / "pareto.png", rows, metric.name, size, metric.direction,
                   f"{s.model}: {metric.name} against {size}")
        files["Pareto front"] = str(out / "pareto.png")
    files["trials"] = str(out / "search.json")
    result.files = files
    atomic_write_text(out / "search.json", json.dumps(result.to_json(), indent=2) + "\n")

