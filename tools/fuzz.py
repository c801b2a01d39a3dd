"""Fuzz the compiler: mutated specs must compile or fail cleanly, random valid models must agree
across optimization levels and backends.

    python tools/fuzz.py --seconds 600 --seed 7            # a long run
    python tools/fuzz.py --seconds 60 --only mutate        # mutations only
    python tools/fuzz.py --seconds 60 --only models        # random valid models only
    python tools/fuzz.py --replay tests/fuzz_cases/x.nn    # one input through every oracle

Two generators, shared with ``tests/test_fuzz.py`` (which runs a seeded, bounded sample of them):

- **mutations** (:func:`mutate`) of every zoo spec (``specs/**/*.nn``) and every standard-library
  module (``nndsl/stdlib/*.nn``, inlined into a zoo spec that imports it, see
  :func:`seed_corpus`): token deletion, duplication and swaps, line deletion and duplication,
  number changes (0, -1, huge, floats), truncation, random bytes, hostile Unicode (control
  characters, bidirectional overrides, U+2028, combining marks, invalid UTF-8). The oracle
  (:func:`check_mutant`): through ``nndsl.compile`` every case compiles or raises
  ``NndslError`` with an ``E`` code and a location in a file that exists and a line it has
  (only file-level codes, :data:`FILE_LEVEL`, may have none), its rendering quotes no raw
  control character, and no case takes longer than :data:`CASE_SECONDS`; through the command
  line (``nndsl.cli.main(["check", ...])`` in-process) the exit code is 0 or 1, agrees with the
  API, and nothing says ``Traceback`` or ``internal error``. Some successful cases are lowered
  to torch and run on their example inputs.
- **random valid models** (:func:`random_model`): small MLP, CNN and residual programs over
  linear, conv2d, relu/gelu/tanh, residual add, layer_norm, batch_norm, softmax,
  reshape/flatten and concat with consistent shapes. The oracle (:func:`check_model`): they
  compile at O0 and O2, and torch (eval mode) at both levels and onnxruntime at both levels
  agree on ``example_inputs`` within ``atol = 1e-4 * max(1, max|ref|)``.

A finding is printed minimized (:func:`minimize`: delta debugging over lines, then tokens) and,
with ``--save DIR``, written there as ``NAME.nn``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("nndsl") is None:   # PYTHONPATH=... picks another checkout
    sys.path.insert(0, str(ROOT))

import nndsl  # noqa: E402
from nndsl.errors import NndslError  # noqa: E402

SPECS = sorted((ROOT / "specs").rglob("*.nn"))
STDLIB = sorted((ROOT / "nndsl" / "stdlib").glob("*.nn"))

CASE_SECONDS = 5.0       # the longest a single case may take (compile and check)
LOWER_MAX_PARAMS = 3_000_000   # lower to torch only models this small...
LOWER_MAX_FLOPS = 2_000_000_000   # ... and this cheap at batch 2

# Errors about a file as a whole: they have no location to point at.
FILE_LEVEL = {
    "E0001",   # cannot read the file
    "E0002",   # binary
    "E0003",   # not UTF-8
    "E0005",   # not a regular file (a device, a FIFO, a socket)
    "E0006",   # not a .nn file
    "E0606",   # larger than the size limit of a spec
    "E0104",   # empty, or only comments
    "E0510",   # defines no model
    "E0511",   # several models, none picked
    "E0512",   # no model of that name
}

# Findings not fixed yet: (name, the case's input) pairs the committed tests leave out until the
# compiler is fixed. Every entry is a bug; this list is to be emptied, not grown to make a run
# pass. tests/test_fuzz.py runs these and fails once one starts passing, so a fixed entry gets
# moved into the committed corpus (tests/fuzz_cases/).
KNOWN_OPEN: dict[str, object] = {
    # hostile paths (tests/test_fuzz.py HOSTILE_NAMES): a description each
    # mutants of tests/test_fuzz.py (seed name#index): what goes wrong
}


# ---- the time guard ----

class CaseTimeout(BaseException):
    """A case ran past its time (a BaseException, so no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def time_guard(seconds: float | None, wall: float | None = None):
    """Interrupt the block once it has used ``seconds`` of CPU time, or ``wall`` seconds of
    wall-clock time (default: six times ``seconds``, for a block that waits, not computes).
    CPU time, so a busy shared machine does not make a case time out. Main thread, POSIX;
    elsewhere, or under another guard, no guard."""
    if seconds is None or not hasattr(signal, "setitimer") or \
            signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None) or \
            signal.getsignal(signal.SIGPROF) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        yield
        return
    wall = 6 * seconds if wall is None else wall

    def fire(signum, frame):
        what = "CPU" if signum == signal.SIGPROF else "wall-clock"
        raise CaseTimeout(f"took more than {seconds if what == 'CPU' else wall:g} s of {what} "
                          "time")
    old_prof = signal.signal(signal.SIGPROF, fire)
    old_alrm = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, wall)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alrm)


# ---- the seed corpus ----

@dataclass
class Seed:
    name: str      # a zoo spec's path, or "std/NAME.nn via specs/..."
    data: bytes
    mutable: tuple = (0, None)   # the byte range mutations touch (a stdlib module's text)


def _read(p: Path) -> bytes:
    return p.read_bytes()


def seed_corpus() -> list[Seed]:
    """Every zoo spec, and every standard-library module inlined into a zoo spec that imports
    it (its `import std.NAME` line replaced by the module's text, so mutations of the module
    are elaborated by a real model). A module no zoo spec imports in a way that inlines cleanly
    is inlined into the first spec that compiles with it."""
    seeds = [Seed(p.relative_to(ROOT).as_posix(), _read(p)) for p in SPECS]
    for std in STDLIB:
        name = std.stem
        text = std.read_bytes()
        pat = re.compile(rb"^import std\." + name.encode() + rb"[ \t]*(#[^\n]*)?$", re.M)
        for spec in SPECS:
            body = spec.read_bytes()
            m = pat.search(body)
            if not m:
                continue
            combined = body[:m.start()] + text + body[m.end():]
            if _compiles(combined):
                seeds.append(Seed(f"std/{name}.nn via {spec.relative_to(ROOT).as_posix()}",
                                  combined, (m.start(), m.start() + len(text))))
                break
    return seeds


def _compiles(data: bytes) -> bool:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.nn"
        path.write_bytes(data)
        try:
            for m in _models(path):
                nndsl.compile(path, model=m, opt="O0")
            return True
        except NndslError:
            return False


def _models(path: Path) -> list:
    """The models to compile in ``path``: each, in a file of several, else just the default."""
    from nndsl.api import load
    models = load(path)[0].models
    return models if len(models) > 1 else [None]


# ---- mutations ----

_TOKEN = re.compile(r"\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?|\w+|\"[^\"\n]*\"|"
                    r"\|>|\*\*|//|==|!=|<=|>=|->|\.\.\.|\S")
_NUMBER = re.compile(rb"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_IDENT = re.compile(rb"\b[A-Za-z_]\w*\b")

NUMBERS = [b"0", b"-1", b"1", b"2", b"3", b"-0", b"0.5", b"1.5", b"-2.5", b"1e-30", b"1e308",
           b"1e309", b"65536", b"2147483648", b"9223372036854775807", b"9223372036854775808",
           b"99999999999999999999999", b"1" + b"0" * 400, b"0.0", b"100000", b"1000000007",
           b"4294967296", b"7.0", b"1e3", b"-9999999"]

HOSTILE = [
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\r", "\x1b[31m", "\x7f", "\x85", "\x9b",
    "\u202e", "\u202d", "\u2066", "\u2069", "\u200e", "\u061c",       # bidirectional controls
    "\u2028", "\u2029",                                               # line and paragraph seps
    "\u0301", "e\u0301", "\u20dd",                                    # combining marks
    "\ufeff", "\u200b", "\u00a0", "\u3000", "\ufffd",                 # BOM, zero width, spaces
    "\uff11", "\u0661", "\u00b2", "\u2167",                           # digits of other scripts
    "\u0430", "\u212a", "\U0001d400", "\U0001f600", "\u00e9",         # letters, emoji
]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xe2\x82", b"\x80", b"\xef\xbb"]


def _tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _TOKEN.finditer(text)]


def _line_spans(data: bytes) -> list[tuple[int, int]]:
    spans, start = [], 0
    for i, b in enumerate(data):
        if b == 10:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(data):
        spans.append((start, len(data)))
    return spans


def _in(rng: random.Random, spans: list, lo: int, hi: int | None) -> list:
    hi = hi if hi is not None else 1 << 62
    inside = [s for s in spans if s[0] >= lo and s[1] <= hi]
    return inside


def _m_token(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    toks = [(a, b) for a, b in _tokens(text)]
    # token offsets are character offsets: map the byte range to characters
    clo = len(data[:lo].decode("utf-8", "surrogateescape"))
    chi = None if hi is None else len(data[:hi].decode("utf-8", "surrogateescape"))
    toks = _in(rng, toks, clo, chi)
    if not toks:
        return data
    op = rng.choice(["delete", "duplicate", "swap", "swap_far", "replace"])
    i = rng.randrange(len(toks))
    a, b = toks[i]
    if op == "delete":
        out = text[:a] + text[b:]
    elif op == "duplicate":
        out = text[:b] + " " + text[a:b] + text[b:]
    elif op in ("swap", "swap_far") and len(toks) > 1:
        j = min(i + 1, len(toks) - 1) if op == "swap" else rng.randrange(len(toks))
        if j == i:
            j = i - 1
        (a, b), (c, d) = sorted([toks[i], toks[j]])
        out = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
    else:  # replace with another token of the file
        c, d = rng.choice(toks)
        out = text[:a] + text[c:d] + text[b:]
    return out.encode("utf-8", "surrogateescape")


def _m_line(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    lines = _in(rng, _line_spans(data), lo, hi)
    if not lines:
        return data
    a, b = rng.choice(lines)
    op = rng.choice(["delete", "duplicate", "swap"])
    if op == "delete":
        return data[:a] + data[b:]
    if op == "duplicate":
        return data[:b] + data[a:b] + data[b:]
    c, d = rng.choice(lines)
    (a, b), (c, d) = sorted([(a, b), (c, d)])
    if (a, b) == (c, d):
        return data
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]


def _m_number(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    nums = _in(rng, [m.span() for m in _NUMBER.finditer(data)], lo, hi)
    if not nums:
        return _m_token(data, rng, lo, hi)
    a, b = rng.choice(nums)
    return data[:a] + rng.choice(NUMBERS) + data[b:]


def _m_ident(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    ids = _in(rng, [m.span() for m in _IDENT.finditer(data)], lo, hi)
    if not ids:
        return data
    a, b = rng.choice(ids)
    c, d = rng.choice(ids)
    return data[:a] + data[c:d] + data[b:]


def _pos(data: bytes, rng: random.Random, lo: int, hi) -> int:
    hi = len(data) if hi is None else hi
    return rng.randint(lo, max(lo, hi))


def _m_truncate(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    return data[:_pos(data, rng, lo, hi)]


def _m_bytes(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    p = _pos(data, rng, lo, hi)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.5:
        return data[:p] + junk + data[p:]
    return data[:p] + junk + data[p + len(junk):]


def _m_unicode(data: bytes, rng: random.Random, lo: int, hi) -> bytes:
    p = _pos(data, rng, lo, hi)
    while 0 < p < len(data) and (data[p] & 0xC0) == 0x80:   # not inside a character
        p -= 1
    ins = rng.choice(BAD_UTF8) if rng.random() < 0.2 else rng.choice(HOSTILE).encode("utf-8")
    return data[:p] + ins + data[p:]


MUTATORS = {
    "token": _m_token, "line": _m_line, "number": _m_number, "ident": _m_ident,
    "truncate": _m_truncate, "bytes": _m_bytes, "unicode": _m_unicode,
}
_WEIGHTS = {"token": 5, "line": 3, "number": 5, "ident": 3, "truncate": 1, "bytes": 1,
            "unicode": 2}


def mutate(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """One mutant of ``seed`` (one to three mutations) and what was done to it."""
    data, lo, hi = seed.data, seed.mutable[0], seed.mutable[1]
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
        before = len(data)
        data = MUTATORS[kind](data, rng, lo, hi)
        if hi is not None:
            hi = max(lo, min(len(data), hi + len(data) - before))
        done.append(kind)
    return data, "+".join(done)


# ---- the oracle of mutants ----

@dataclass
class Outcome:
    ok: bool                       # compiled (every model)
    finding: str | None = None     # what is wrong, if anything
    code: str | None = None        # the error code, when it failed cleanly
    seconds: float = 0.0
    compiled: list = field(default_factory=list)


_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _line_count(file: str, case_path: Path, case_data: bytes) -> int | None:
    """Lines of the file a span names, or None for a file that does not exist."""
    from nndsl.errors import source_lines
    if file == str(case_path):
        text = case_data.decode("utf-8", "replace")
    elif file.startswith("std/"):
        p = Path(nndsl.__file__).parent / "stdlib" / file[4:]
        if not p.is_file():
            return None
        text = p.read_text(encoding="utf-8")
    else:
        return None
    return len(source_lines(text))


def error_problem(e: NndslError, case_path: Path, case_data: bytes) -> str | None:
    """What is wrong with an error raised for the case at ``case_path``, if anything."""
    if not re.fullmatch(r"E\d{4}", str(e.code)):
        return f"error code {e.code!r} is not E####"
    try:
        text = e.render()
    except Exception as r:   # noqa: BLE001
        return f"{e.code}: render() raised {type(r).__name__}: {r}"
    first = text.split("\n", 1)[0]
    if _UNSAFE.search(text.replace("\n", " ")) or _UNSAFE.search(first):
        return f"{e.code}: the rendered message holds a raw control character"
    if e.span is None:
        if e.code in FILE_LEVEL:
            return None
        return f"{e.code}: no location ({e.message[:120]!r})"
    n = _line_count(e.span.file, case_path, case_data)
    if n is None:
        return f"{e.code}: located in {e.span.file!r}, which is not the spec or the stdlib"
    if not 1 <= e.span.line <= max(n, 1):
        return f"{e.code}: located at line {e.span.line} of a {n}-line file"
    if e.span.col < 1:
        return f"{e.code}: column {e.span.col}"
    for note, span in e.notes:
        if span is not None and _line_count(span.file, case_path, case_data) is None:
            return f"{e.code}: a note is located in {span.file!r}"
    return None


def _describe(exc: BaseException) -> str:
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        f = tb.tb_frame.f_code.co_filename
        if "/nndsl/" in f:
            where = f"{Path(f).relative_to(ROOT) if f.startswith(str(ROOT)) else f}:" \
                    f"{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{type(exc).__name__} at {where or '?'}: {str(exc)[:200]}"


def compile_case(path: Path, data: bytes, opt: str = "O0",
                 seconds: float = CASE_SECONDS) -> Outcome:
    """Compile the case at ``path`` (every model of a file of several) through the API."""
    t0 = time.process_time()
    out = Outcome(ok=False)
    try:
        with time_guard(seconds):
            for m in _models(path):
                out.compiled.append(nndsl.compile(path, model=m, opt=opt))
        out.ok = True
    except CaseTimeout as e:
        out.finding = f"timeout: {e}"
    except NndslError as e:
        out.code = e.code
        out.finding = error_problem(e, path, data)
    except RecursionError as e:
        out.finding = f"uncaught {_describe(e)}"
    except Exception as e:   # noqa: BLE001
        out.finding = f"uncaught {_describe(e)}"
    out.seconds = time.process_time() - t0   # CPU time
    return out


def cli_case(path: Path, seconds: float = CASE_SECONDS,
             wall: float | None = None) -> tuple[int | None, str, str | None]:
    """``nndsl check PATH`` in-process: (exit code, output, finding)."""
    from nndsl.cli import main
    out, err = io.StringIO(), io.StringIO()
    try:
        with time_guard(seconds, wall), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            rc = main(["check", str(path)])
    except CaseTimeout as e:
        return None, out.getvalue() + err.getvalue(), f"cli timeout: {e}"
    except BaseException as e:   # noqa: BLE001
        return None, out.getvalue() + err.getvalue(), f"cli raised {_describe(e)}"
    text = out.getvalue() + err.getvalue()
    if rc not in (0, 1):
        return rc, text, f"cli exit code {rc}: {err.getvalue()[:300]!r}"
    if "Traceback" in text or "internal error" in text:
        return rc, text, f"cli printed a traceback or an internal error: {text[-300:]!r}"
    if rc == 1 and not err.getvalue().startswith("error[E"):
        return rc, text, f"cli exit 1 without an error[E....] header: {err.getvalue()[:200]!r}"
    if rc == 0 and not out.getvalue().startswith("ok: "):
        return rc, text, f"cli exit 0 without `ok:`: {out.getvalue()[:200]!r}"
    return rc, text, None


def lower_case(c, seconds: float = 3 * CASE_SECONDS) -> str | None:
    """Lower a compiled model to torch and run it on its example inputs, when it is small."""
    import torch
    try:
        with time_guard(seconds):
            if c.param_count() > LOWER_MAX_PARAMS or c.flops(batch=2) > LOWER_MAX_FLOPS:
                return None
            inputs = c.example_inputs(batch=2, seed=0)
            if sum(v.numel() for v in inputs.values()) > 4_000_000:
                return None
            m = c.to_torch(seed=0).eval()
            with torch.no_grad():
                m(**inputs)
    except CaseTimeout as e:
        return f"lowering timeout: {e}"
    except NndslError as e:
        if e.span is None and e.code not in FILE_LEVEL:
            return None   # a runtime limit of a model that compiled: not a crash
        return None
    except Exception as e:   # noqa: BLE001
        return f"lowering raised {_describe(e)}"
    return None


def check_mutant(data: bytes, workdir: Path, *, cli: bool = False, lower: bool = False,
                 seconds: float = CASE_SECONDS) -> Outcome:
    """Every oracle of a mutant; ``Outcome.finding`` says what failed, if anything."""
    path = workdir / "case.nn"
    path.write_bytes(data)
    out = compile_case(path, data, seconds=seconds)
    if out.finding is None and out.seconds > seconds:
        out.finding = f"slow: {out.seconds:.1f} s"
    if out.finding is None and cli:
        rc, text, finding = cli_case(path, seconds)
        if finding is None and rc is not None and (rc == 0) != out.ok:
            # check compiles at O1 and the API case at O0: only a pass can tell them apart
            o1 = compile_case(path, data, opt="O1", seconds=seconds)
            if (rc == 0) != o1.ok:
                finding = f"cli exit {rc} but the API {'compiled' if o1.ok else 'failed'}"
        out.finding = finding
    if out.finding is None and lower and out.ok:
        for c in out.compiled:
            out.finding = lower_case(c)
            if out.finding:
                break
    return out


# ---- minimizing ----

def minimize(data: bytes, failing, budget: float = 60.0) -> bytes:
    """A smaller input for which ``failing(bytes)`` still holds: delta debugging over lines,
    then over tokens, then over characters, within ``budget`` seconds."""
    end = time.perf_counter() + budget

    def units_of(d: bytes, level: str) -> list[bytes]:
        if level == "lines":
            return [d[a:b] for a, b in _line_spans(d)]
        if level == "tokens":
            return re.findall(rb"\s+|\w+|[\x80-\xff]+|.", d, re.S)
        return [bytes([b]) for b in d]

    for level in ("lines", "tokens", "lines", "chars"):
        units = units_of(data, level)
        n = 2
        while len(units) >= 2 and time.perf_counter() < end:
            chunk = max(1, len(units) // n)
            removed = False
            for i in range(0, len(units), chunk):
                if time.perf_counter() >= end:
                    break
                trial = units[:i] + units[i + chunk:]
                cand = b"".join(trial)
                if cand != data and failing(cand):
                    units, data, removed = trial, cand, True
                    n = max(n - 1, 2)
                    break
            if not removed:
                if chunk == 1:
                    break
                n = min(len(units), n * 2)
        if level == "chars" and len(data) > 4000:
            break
    return data


def same_finding(workdir: Path, finding: str, **kw):
    """A predicate for :func:`minimize`: the mutant still fails with the same kind of finding
    (the same exception type and place, or the same code and complaint)."""
    key = _finding_key(finding)

    def failing(d: bytes) -> bool:
        out = check_mutant(d, workdir, **kw)
        return out.finding is not None and _finding_key(out.finding) == key
    return failing


def _finding_key(finding: str) -> str:
    m = re.match(r"(uncaught|cli raised|lowering raised) (\w+) at (\S+):", finding)
    if m:
        return m.group(0)
    m = re.match(r"(E\d{4}): (no location|located|the rendered)", finding)
    if m:
        return m.group(0)
    return finding.split(":")[0]


# ---- random valid models ----

def random_model(rng: random.Random, max_layers: int = 6) -> str:
    """The text of a small random valid model: an MLP or a CNN (then a head), with residual
    blocks, norms, activations, concatenations and reshapes, its shapes tracked here so every
    op is given a consistent input."""
    kind = rng.choice(["mlp", "cnn", "cnn"])
    lines: list[str] = []
    n_vals = [0]

    def fresh() -> str:
        n_vals[0] += 1
        return f"h{n_vals[0]}"

    act = lambda: rng.choice(["relu", "gelu", "tanh"])   # noqa: E731
    if kind == "mlp":
        d = rng.choice([3, 4, 8, 16])
        lines.append(f"    input x: f32[N, {d}]")
        cur = "x"
        shape: list = ["vec", d]
    else:
        c, hw = rng.choice([1, 3, 4]), rng.choice([5, 6, 8, 12])
        lines.append(f"    input x: f32[N, {c}, {hw}, {hw}]")
        cur = "x"
        shape = ["img", c, hw]
    for _ in range(rng.randint(1, max_layers)):
        v = fresh()
        if shape[0] == "img":
            _, c, hw = shape
            op = rng.choice(["conv", "conv", "res", "bn", "act", "pool", "cat", "flatten",
                             "ln"])
            if op == "conv":
                k = rng.choice([1, 3, 3, 5]) if hw >= 5 else 1
                stride = rng.choice([1, 1, 2]) if hw >= 4 else 1
                pad = rng.choice([0, k // 2])
                out_c = rng.choice([2, 4, 8])
                groups = rng.choice([g for g in (1, 2) if c % g == 0 and out_c % g == 0])
                g = f", groups={groups}" if groups > 1 else ""
                b = ", bias=false" if rng.random() < 0.3 else ""
                lines.append(f"    {v} = {cur} |> conv2d({out_c}, {k}, stride={stride}, "
                             f"padding={pad}{g}{b})")
                hw = (hw + 2 * pad - k) // stride + 1
                shape = ["img", out_c, hw]
            elif op == "res":
                lines.append(f"    {v} = {cur} + ({cur} |> conv2d({c}, 3, padding=1) |> "
                             f"batch_norm |> {act()})")
            elif op == "bn":
                lines.append(f"    {v} = {cur} |> batch_norm")
            elif op == "act":
                lines.append(f"    {v} = {cur} |> {act()}")
            elif op == "pool" and hw >= 2:
                if rng.random() < 0.5:
                    lines.append(f"    {v} = {cur} |> max_pool2d(2)")
                else:
                    lines.append(f"    {v} = {cur} |> avg_pool2d(2)")
                shape = ["img", c, hw // 2]
            elif op == "cat":
                extra = rng.choice([1, 2, 4])
                lines.append(f"    {v} = concat([{cur}, {cur} |> conv2d({extra}, 1)], dim=1)")
                shape = ["img", c + extra, hw]
            elif op == "ln":
                lines.append(f"    {v} = {cur} |> layer_norm")
            else:
                lines.append(f"    {v} = {cur} |> flatten")
                shape = ["vec", c * hw * hw]
        else:
            _, d = shape
            op = rng.choice(["linear", "linear", "res", "ln", "bn", "act", "softmax", "cat",
                             "reshape"])
            if op == "linear":
                out_d = rng.choice([2, 4, 8, 16])
                b = ", bias=false" if rng.random() < 0.3 else ""
                lines.append(f"    {v} = {cur} |> linear({out_d}{b})")
                shape = ["vec", out_d]
            elif op == "res":
                lines.append(f"    {v} = {cur} + ({cur} |> layer_norm |> linear({d}) |> "
                             f"{act()})")
            elif op == "ln":
                lines.append(f"    {v} = {cur} |> layer_norm")
            elif op == "bn":
                lines.append(f"    {v} = {cur} |> batch_norm")
            elif op == "act":
                lines.append(f"    {v} = {cur} |> {act()}")
            elif op == "softmax":
                lines.append(f"    {v} = {cur} |> softmax(dim=-1)")
            elif op == "cat":
                extra = rng.choice([1, 3, 4])
                lines.append(f"    {v} = concat([{cur} |> linear({extra}), {cur}], dim=-1)")
                shape = ["vec", d + extra]
            else:
                divs = [a for a in range(2, d) if d % a == 0]
                if not divs:
                    lines.append(f"    {v} = {cur} |> {act()}")
                else:
                    a = rng.choice(divs)
                    lines.append(f"    {v} = {cur} |> reshape([N, {a}, {d // a}]) |> "
                                 f"{act()} |> flatten")
        cur = v
    if shape[0] == "img":
        v = fresh()
        if rng.random() < 0.5:
            lines.append(f"    {v} = {cur} |> global_avg_pool")
            shape = ["vec", shape[1]]
        else:
            lines.append(f"    {v} = {cur} |> flatten")
            shape = ["vec", shape[1] * shape[2] * shape[2]]
        cur = v
    classes = rng.choice([2, 3, 5])
    head = f"{cur} |> linear({classes})"
    if rng.random() < 0.3:
        head += " |> softmax(dim=-1)"
    lines.append(f"    output y = {head}")
    if rng.random() < 0.25:
        lines.append(f"    output z = {cur}")
    return "model fuzzed() {\n" + "\n".join(lines) + "\n}\n"


def _run_ort(model, inputs: dict) -> list:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: inputs[n].numpy() for n in names})


def model_problem(text: str, seconds: float = 30.0) -> str | None:
    """Compile ``text`` at O0 and O2; torch at both levels and onnxruntime at both must agree
    with torch at O0 on example inputs."""
    import numpy as np
    import torch
    try:
        with time_guard(seconds):
            ref_c = nndsl.compile(text, opt="O0")
            inputs = ref_c.example_inputs(batch=3, seed=1)
            with torch.no_grad():
                ref = ref_c.to_torch(seed=0).eval()(**inputs)
            ref = [ref] if isinstance(ref, torch.Tensor) else \
                list(ref.values()) if isinstance(ref, dict) else list(ref)
            ref = [r.numpy() for r in ref]
            got = {}
            for opt in ("O0", "O2"):
                c = ref_c if opt == "O0" else nndsl.compile(text, opt=opt)
                if opt != "O0":
                    with torch.no_grad():
                        y = c.to_torch(seed=0).eval()(**inputs)
                    y = [y] if isinstance(y, torch.Tensor) else \
                        list(y.values()) if isinstance(y, dict) else list(y)
                    got[f"torch {opt}"] = [t.numpy() for t in y]
                got[f"onnxruntime {opt}"] = _run_ort(c.to_onnx(seed=0), inputs)
    except CaseTimeout as e:
        return f"timeout: {e}"
    except NndslError as e:
        return f"a valid model failed: {e.render()}"
    except Exception as e:   # noqa: BLE001
        return f"uncaught {_describe(e)}"
    for who, outs in got.items():
        if len(outs) != len(ref):
            return f"{who}: {len(outs)} outputs, torch O0 has {len(ref)}"
        for i, (g, r) in enumerate(zip(outs, ref)):
            g = np.asarray(g)
            if g.shape != r.shape:
                return f"{who}: output {i} has shape {g.shape}, torch O0 {r.shape}"
            atol = 1e-4 * max(1.0, float(np.abs(r).max()) if r.size else 1.0)
            if not np.allclose(g, r, rtol=1e-4, atol=atol):
                err = float(np.abs(g - r).max())
                return f"{who}: output {i} differs from torch O0 by {err:.3g} (atol {atol:.3g})"
    return None


def minimize_model(text: str, finding: str, budget: float = 60.0) -> str:
    """Drop statement lines of a failing random model while it keeps failing alike (a dropped
    line's value is replaced by its input, so the program stays valid)."""
    end = time.perf_counter() + budget
    key = finding.split(":")[0]
    lines = text.split("\n")
    changed = True
    while changed and time.perf_counter() < end:
        changed = False
        for i, ln in enumerate(lines):
            m = re.match(r"    (h\d+) = (\w+) (\|>|\+)", ln)
            if not m:
                continue
            name, src = m.group(1), m.group(2)
            rest = [re.sub(rf"\b{name}\b", src, x) for x in lines[:i] + lines[i + 1:]]
            cand = "\n".join(rest)
            p = model_problem(cand)
            if p is not None and p.split(":")[0] == key:
                lines, changed = rest, True
                break
    return "\n".join(lines)


# ---- hostile paths ----

def hostile_paths(tmp: Path) -> dict[str, str]:
    """Specs whose file or import is hostile: name -> path to compile. Each must fail with a
    clean NndslError (the command line: exit 1, no traceback)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ok_model = "model m() {\n    input x: f32[N, 4]\n    output y = x |> relu\n}\n"
    cases = {"dev_null": "/dev/null", "directory": str(tmp), "missing": str(tmp / "nope.nn")}
    brace = tmp / "odd{}dir"
    brace.mkdir(exist_ok=True)
    (brace / "a{}.nn").write_text(ok_model, encoding="utf-8")
    cases["braces_in_path"] = str(brace / "a{}.nn")
    for name, target in [("import_dev_null", "/dev/null"), ("import_directory", "."),
                         ("import_missing", "nope.nn"), ("import_braces", "odd{}dir/a{}.nn"),
                         ("import_self", "import_self.nn"), ("import_empty_name", ""),
                         ("import_nul", "a\\x00b.nn")]:
        p = tmp / f"{name}.nn"
        p.write_text(f'import "{target}"\n' + ok_model.replace("m()", f"{name}()"),
                     encoding="utf-8")
        cases[name] = str(p)
    fifo = tmp / "fifo.nn"
    if hasattr(os, "mkfifo") and not fifo.exists():
        try:
            os.mkfifo(fifo)
        except OSError:
            fifo = None
    if fifo is not None and fifo.exists():
        cases["fifo"] = str(fifo)
        p = tmp / "import_fifo.nn"
        p.write_text('import "fifo.nn"\n' + ok_model, encoding="utf-8")
        cases["import_fifo"] = str(p)
    return cases


# Hostile paths that should compile, not fail.
HOSTILE_OK = {"braces_in_path", "import_braces"}


def hostile_problem(name: str, path: str, seconds: float = 2.0, wall: float = 3.0) -> str | None:
    """The oracle of one hostile path, through the API (a ``Path``, and a ``str`` when it ends
    in ``.nn``: another string is spec text) and the CLI."""
    p = Path(path)
    data = p.read_bytes() if p.is_file() else b""
    for source in (p, path) if path.endswith(".nn") else (p,):
        try:
            with time_guard(seconds, wall):
                nndsl.compile(source, opt="O0")
            if name not in HOSTILE_OK:
                return f"compile({type(source).__name__}) succeeded"
        except CaseTimeout as e:
            return f"compile({type(source).__name__}) timeout: {e}"
        except NndslError as e:
            if name in HOSTILE_OK:
                return f"compile({type(source).__name__}) failed: {e.code} {e.message}"
            problem = error_problem(e, p, data)
            if problem:
                return f"compile({type(source).__name__}): {problem}"
        except Exception as e:   # noqa: BLE001
            return f"compile({type(source).__name__}) uncaught {_describe(e)}"
    rc, text, finding = cli_case(p, seconds, wall)
    if finding:
        return finding
    if rc != (0 if name in HOSTILE_OK else 1):
        return f"cli exit {rc}: {text[:200]!r}"
    return None


# ---- the long run ----

def run(seconds: float, seed: int, only: str | None = None, save: Path | None = None,
        cli_every: int = 5, lower_every: int = 10, log=print) -> dict:
    """Fuzz for ``seconds``; return counts and findings."""
    import torch
    torch.set_num_threads(1)
    rng = random.Random(seed)
    seeds = seed_corpus()
    end = time.perf_counter() + seconds
    stats = {"mutants": 0, "compiled": 0, "failed_cleanly": 0, "models": 0, "findings": []}
    seen_keys: set = set()
    codes: dict = {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        i = 0
        while time.perf_counter() < end:
            i += 1
            do_models = only == "models" or (only is None and i % 8 == 0)
            if do_models:
                text = random_model(rng)
                stats["models"] += 1
                problem = model_problem(text)
                if problem:
                    key = "model " + problem.split(":")[0]
                    if key not in seen_keys:
                        seen_keys.add(key)
                        small = minimize_model(text, problem)
                        stats["findings"].append(("random model", problem, small))
                        log(f"FINDING (random model): {problem}\n{small}")
                continue
            s = rng.choice(seeds)
            data, how = mutate(s, rng)
            stats["mutants"] += 1
            kw = {"cli": i % cli_every == 0, "lower": i % lower_every == 0}
            out = check_mutant(data, work, **kw)
            if out.ok:
                stats["compiled"] += 1
            elif out.code:
                stats["failed_cleanly"] += 1
                codes[out.code] = codes.get(out.code, 0) + 1
            if out.finding:
                key = _finding_key(out.finding)
                if key in seen_keys:
                    continue
                seen_keys.add(key)
                small = minimize(data, same_finding(work, out.finding, **kw))
                stats["findings"].append((f"{s.name} ({how})", out.finding, small))
                log(f"FINDING in a mutant of {s.name} ({how}): {out.finding}\n"
                    f"  minimized ({len(small)} bytes): {small!r}")
                if save is not None:
                    save.mkdir(parents=True, exist_ok=True)
                    (save / f"finding_{len(stats['findings'])}.nn").write_bytes(small)
            if stats["mutants"] % 500 == 0:
                log(f"... {stats['mutants']} mutants, {stats['models']} models, "
                    f"{len(stats['findings'])} findings")
        stats["codes"] = codes
        if only in (None, "paths"):
            for name, path in hostile_paths(work / "hostile").items():
                problem = hostile_problem(name, path)
                if problem:
                    stats["findings"].append((f"hostile path {name}", problem, path))
                    log(f"FINDING (hostile path {name}: {path}): {problem}")
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="wall-clock budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["mutate", "models", "paths"])
    ap.add_argument("--save", type=Path, help="write minimized findings to this folder")
    ap.add_argument("--replay", type=Path, help="run one file through the mutant oracles")
    args = ap.parse_args(argv)
    if args.replay is not None:
        data = args.replay.read_bytes()
        with tempfile.TemporaryDirectory() as d:
            out = check_mutant(data, Path(d), cli=True, lower=True)
        print(out.finding or f"no finding ({'compiled' if out.ok else out.code})")
        return 1 if out.finding else 0
    t0 = time.perf_counter()
    stats = run(args.seconds, args.seed, args.only, args.save)
    took = time.perf_counter() - t0
    print(f"\n{stats['mutants']} mutants ({stats['compiled']} compiled, "
          f"{stats['failed_cleanly']} failed cleanly), {stats['models']} random models, "
          f"in {took:.0f} s; {len(stats['findings'])} findings")
    top = sorted(stats.get("codes", {}).items(), key=lambda kv: -kv[1])[:12]
    if top:
        print("errors seen: " + ", ".join(f"{k} ×{v}" for k, v in top))
    for where, problem, small in stats["findings"]:
        print(f"- {where}: {problem}\n    {small!r}")
    return 1 if stats["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
