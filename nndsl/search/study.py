"""optuna's side of a search: the samplers, the storage, and the trial loop that several
processes (``nndsl search --worker``) share.

The loop asks the study for a trial, evaluates it (:mod:`nndsl.search.run` compiles, checks the
limits and trains) and tells the study the outcome, until the study holds the number of trials
asked for in all, whoever ran them. With a SQLite file every access to the study happens under
one file lock, so processes on one machine never ask for more trials than that and never wait
on SQLite's own locking; with a database server a process that finds the total reached only
after asking marks its trial ``surplus`` (failed, and counted nowhere).

A trial's outcome is one of: trained (optuna: complete), rejected by a limit at compile time
(pruned: no training, no run folder), failed (a configuration that does not compile, or a run
that stops on a non-finite loss), interrupted (Ctrl-C or a process that ended mid-trial; not
counted, so resuming runs it again). A configuration tried before is not evaluated again, nor counted: the
sampler is told the earlier outcome (``repeat_of``) and asked again, so ``--trials N`` evaluates
N configurations (or every one of a smaller space).
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path

from nndsl.elab.space import SearchError

INSTALL_HINT = 'pip install "nndsl[search]"'
SAMPLERS = {
    "tpe": "tree-structured Parzen estimator (the default for one objective)",
    "random": "independent uniform draws",
    "nsga2": "NSGA-II, a genetic algorithm (the default for several objectives)",
    "evolutionary": "the same genetic algorithm as nsga2, by its family's name",
}
SQLITE = "sqlite:///"


def import_optuna():
    """optuna, quietened; a clear error when it is not installed."""
    try:
        import optuna
    except ImportError:
        raise SearchError("`nndsl search` needs optuna, which is not installed", code="E1540",
                          hint=f"install it with: {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(storage: str | None, out: Path) -> str:
    """``--storage``: a database URL optuna accepts, or a path of a SQLite file (default
    ``OUT/study.db``)."""
    if storage is None:
        return SQLITE + str((out / "study.db").resolve())
    if "://" in storage:
        return storage
    return SQLITE + str(Path(storage).resolve())


def sqlite_file(url: str) -> Path | None:
    return Path(url[len(SQLITE):]) if url.startswith(SQLITE) and len(url) > len(SQLITE) else None


def shown_url(url: str) -> str:
    """A storage URL as messages show it: without a password."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:    # not a URL sqlalchemy reads: show it as given, but never a password
        return url.split("@")[-1] if "@" in url else url


def open_storage(optuna, url: str):
    path = sqlite_file(url)
    if path is not None:
        if path.is_dir():
            raise SearchError(f"--storage {path} is a folder, not a SQLite file", code="E1541",
                              hint="give a file, e.g. --storage runs/search/study.db")
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if path is not None:
        kwargs = {"creator": lambda: _sqlite_connection(path)}
    elif url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 300}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:   # sqlalchemy's and the drivers' errors: a bad URL, no server, no driver
        first = str(e).strip().split("\n")[0][:300]
        raise SearchError(f"cannot open the study storage {shown_url(url)}: {first}",
                          code="E1541", hint="give a SQLite file (--storage PATH.db) or a URL "
                                             "optuna accepts (sqlite:///..., postgresql://..., "
                                             "mysql://...) with its driver installed") from None


def _sqlite_connection(path: Path):
    """A connection to a study's SQLite file in write-ahead-log mode with normal syncing: a
    commit is one write to the log rather than several synced writes of a rollback journal (a
    trial commits a dozen times), and readers do not block the writer. A power cut may lose the
    last commits, never the file's consistency; a lost trial is run again when resumed."""
    import sqlite3
    conn = sqlite3.connect(str(path), timeout=300, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class StorageLock:
    """Every access to a SQLite study, under an exclusive lock of ``FILE.lock`` (processes of
    one machine); no lock for a database server, which has its own."""

    def __init__(self, url: str):
        path = sqlite_file(url)
        if importlib.util.find_spec("fcntl") is None:
            path = None   # not POSIX: the study runs as with a database server, unlocked
        self.path = path.with_name(path.name + ".lock") if path is not None else None
        self.held = 0
        self.fd = None

    @property
    def exclusive(self) -> bool:
        return self.path is not None

    @contextmanager
    def __call__(self):
        if self.path is None or self.held:
            self.held += 1
            try:
                yield
            finally:
                self.held -= 1
            return
        import fcntl
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.held += 1
            try:
                yield
            finally:
                self.held -= 1
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def make_sampler(optuna, name: str | None, seed: int, objectives: int, trials: int):
    if name is None:
        name = "tpe" if objectives == 1 else "nsga2"
    if name not in SAMPLERS:
        raise SearchError(f"unknown sampler `{name}`", code="E1522",
                          hint="samplers: " + "; ".join(f"{k} ({v})" for k, v in SAMPLERS.items()))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))


def _choices(d) -> tuple:
    """A choice's values as optuna stores them (lists as their spec text)."""
    from nndsl.elab.space import spec_literal
    return tuple(spec_literal(v) if isinstance(v, tuple) else v for v in d.values)


def distributions(optuna, dims: list) -> dict:
    from optuna.distributions import CategoricalDistribution, IntDistribution
    out = {}
    for d in dims:
        if d.kind == "range":
            opts = d.options
            out[d.name] = IntDistribution(opts[0], opts[-1], step=abs(d.values[2])) \
                if d.values[2] > 0 else IntDistribution(opts[-1], opts[0], step=-d.values[2])
        else:
            out[d.name] = CategoricalDistribution(_choices(d))
    return out


def decode(dims: list, params: dict) -> dict:
    """A trial's parameters as the spec's values."""
    out = {}
    for d in dims:
        v = params[d.name]
        if d.kind == "choice":
            v = d.values[_choices(d).index(v)]
        out[d.name] = v
    return out


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST = socket.gethostname()


def counted(trials) -> list:
    """The trials that count towards the total: each configuration once (not repeats), and
    neither surplus nor interrupted trials, nor those enqueued and not yet asked for."""
    return [t for t in trials if t.state.name != "WAITING" and not t.user_attrs.get("surplus")
            and not t.user_attrs.get("interrupted") and t.user_attrs.get("repeat_of") is None]


def fail_orphans(optuna, storage, study) -> int:
    """Trials left running by a process of this machine that has ended (killed mid-trial):
    marked interrupted, so the total leaves room to run them again."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner") or {}
        if owner.get("host") == HOST and not _alive(owner.get("pid")):
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            n += 1
    return n


MAX_REPEATS = 200   # proposals in a row of configurations tried before: the sampler is done


def encode(dims: list, values: dict) -> dict:
    """A configuration as optuna stores its parameters (the inverse of :func:`decode`)."""
    return {d.name: (_choices(d)[d.values.index(values[d.name])] if d.kind == "choice"
                     else values[d.name]) for d in dims}


def untried(dims: list, tried: set, rng) -> dict | None:
    """A configuration (optuna's parameters) that no trial of ``tried`` (tuples of parameters in
    ``dims`` order) has, drawn with ``rng``; None when every one is tried."""
    import itertools
    from nndsl.elab.space import space_size
    options = [[encode([d], {d.name: v})[d.name] for v in d.options] for d in dims]
    if space_size(dims) <= 100_000:
        left = [c for c in itertools.product(*options) if c not in tried]
        return dict(zip((d.name for d in dims), rng.choice(left))) if left else None
    for _ in range(10_000):
        c = tuple(rng.choice(o) for o in options)
        if c not in tried:
            return dict(zip((d.name for d in dims), c))
    return None


REPEATS_BEFORE_UNTRIED = 3   # proposals in a row of tried configurations: then an untried one


def run_trials(optuna, storage, study, lock: StorageLock, total: int, dims: list, evaluate,
               report=None, space: int | None = None, seed: int = 0) -> tuple[int, str | None]:
    """Ask, evaluate and tell until the study counts ``total`` configurations; returns the
    number evaluated here and why the loop stopped early (None: the total was reached).

    ``evaluate(number, values)`` returns ``(state, values, attrs)``: ``state`` one of
    ``"complete"``, ``"pruned"``, ``"fail"``. A proposal of a configuration the study has
    already finished is told that trial's outcome at once (``repeat_of``), one that another
    process is running is told failed; neither is evaluated or counted. After
    REPEATS_BEFORE_UNTRIED such proposals in a row the next trial is a configuration not tried
    yet, drawn with a generator seeded by ``seed`` (optuna's ``enqueue_trial``), so a sampler that
    has settled on a few configurations cannot stall the search. ``space``: the number of
    configurations (the loop stops once every one is counted).
    ``report(number, values, state, attrs)`` is told each outcome evaluated here."""
    from optuna.trial import TrialState
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
              "fail": TrialState.FAIL}
    dists = distributions(optuna, dims)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    rng = random.Random(seed)
    ran = repeats = 0
    while True:
        with lock():
            have = counted(study.get_trials(deepcopy=False))
            if len(have) >= total:
                return ran, None
            if space is not None and len(have) >= space:
                return ran, f"all {space:,} configurations of the space are tried"
            if repeats >= MAX_REPEATS:
                return ran, (f"the sampler proposed only configurations tried before "
                             f"{MAX_REPEATS} times in a row")
            trial = study.ask(dists)
            trial.set_user_attr("owner", {"host": HOST, "pid": os.getpid()})
            if not lock.exclusive:   # another process may have asked at the same time
                now = counted(study.get_trials(deepcopy=False))
                if len([t for t in now if t.number < trial.number]) >= total:
                    trial.set_user_attr("surplus", True)
                    study.tell(trial, state=TrialState.FAIL)
                    return ran, None
            earlier = next((t for t in have if t.params == trial.params), None)
            if earlier is not None:
                repeats += 1
                trial.set_user_attr("repeat_of", earlier.number)
                if earlier.state == TrialState.COMPLETE:
                    study.tell(trial, list(earlier.values))
                elif earlier.state in finished:
                    study.tell(trial, state=earlier.state)
                else:                # running in another process: not trained twice
                    study.tell(trial, state=TrialState.FAIL)
                if repeats % REPEATS_BEFORE_UNTRIED == 0:
                    tried = {tuple(t.params.get(d.name) for d in dims) for t in have}
                    fresh = untried(dims, tried, rng)
                    if fresh is not None:
                        study.enqueue_trial(fresh)
                continue
            repeats = 0
            number, values = trial.number, decode(dims, trial.params)
        try:
            state, objective_values, attrs = evaluate(number, values)
        except BaseException:
            with lock():
                trial.set_user_attr("interrupted", True)
                study.tell(trial, state=TrialState.FAIL)
            raise
        with lock():   # one attribute, one write: each is a transaction of the storage
            if state == "complete" and not all(math.isfinite(v) for v in objective_values):
                state = "fail"
                attrs = {**attrs, "kind": "failed", "reason": "an objective is not finite"}
            trial.set_user_attr("outcome", attrs)
            study.tell(trial, objective_values if state == "complete" else None,
                       state=states[state])
        ran += 1
        if report is not None:
            report(number, values, state, attrs)
