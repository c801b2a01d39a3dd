"""Every limit the compiler enforces, in one place: its name, its default and how to raise it.

A spec is a program that runs at compile time, so a small one can ask for unbounded work: a
number squared sixty times, a string doubled sixty times, blocks that apply the next block
twice forty levels deep, loops nested six deep, a parameter of 2^33 floats. Each of these fails
fast, where the limit is crossed, with a :class:`~nndsl.errors.LimitError` that names the limit
and says how to raise it.

:class:`Limits` holds the budgets of one compilation; :data:`DEFAULT` is what is used when none
is given. A raisable limit has a command-line flag (``--max-nodes``) and a keyword of the same
name (``nndsl.compile(..., limits=Limits(max_nodes=...))``); :data:`LIMITS` describes each one,
and :func:`raise_hint` spells the sentence an error ends with. The fixed limits (at the end) are
not budgets but the ranges of the values themselves (what a float or an int64 can hold).

:class:`Progress` is the hook for a progress note on long compilations: the elaborator calls
``progress.tick(nodes, what)`` as the graph grows (cheaply: only every ``every`` nodes), and a
front end that wants to print something past a few seconds passes its own ``Progress``.
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Callable


@dataclass(frozen=True)
class LimitInfo:
    """What one raisable limit bounds, its unit, and the flag that raises it."""

    name: str      # the field of Limits and the keyword: max_nodes
    what: str      # what it counts, for messages: "graph nodes"
    unit: str      # how a value is shown: "count" or "bytes"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


LIMITS: dict[str, LimitInfo] = {i.name: i for i in (
    LimitInfo("max_nodes", "graph nodes", "count"),
    LimitInfo("max_steps", "compile-time steps (loop iterations and block applications)",
              "count"),
    LimitInfo("max_list", "items in one list", "count"),
    LimitInfo("max_string", "characters in one string", "count"),
    LimitInfo("max_param_bytes", "the size of all parameters together", "bytes"),
    LimitInfo("max_input_bytes", "the size of one drawn input tensor", "bytes"),
)}


@dataclass(frozen=True)
class Limits:
    """The budgets of one compilation. Every spec of the zoo (``specs/``) stays far below the
    defaults: the largest has 1,448 nodes (resnet152), 127 steps (densenet121) and 884 MB of
    parameters; ResNet-50 with 4,748 bottlenecks in one stage (133,000 nodes) is within them.
    They are also small enough to be reached in seconds, so a runaway spec fails fast."""

    max_nodes: int = 250_000
    max_steps: int = 50_000      # ResNet-50 with 4,748 bottlenecks in a stage takes 9,521
    max_list: int = 100_000
    max_string: int = 100_000
    max_param_bytes: int = 64 * 2**30      # 64 GiB: a 16-billion-parameter f32 model
    max_input_bytes: int = 4 * 2**30       # 4 GiB per drawn tensor

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"limit {f.name} must be a positive int, got {v!r}")

    def with_(self, **changes) -> "Limits":
        """These limits with some changed (``None`` values are ignored, so command-line
        options that were not given can be passed through as they are)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULT = Limits()

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("nndsl_limits", default=DEFAULT)


def active() -> Limits:
    """The limits of the compilation running now (what compile-time builtins such as ``range``
    check against); :data:`DEFAULT` outside one."""
    return _ACTIVE.get()


@contextmanager
def using(limits: Limits):
    """Make ``limits`` the :func:`active` ones inside the ``with`` block."""
    token = _ACTIVE.set(limits)
    try:
        yield limits
    finally:
        _ACTIVE.reset(token)


def show(name: str, value: int) -> str:
    """A limit's value as a person reads it: ``500,000`` or ``64 GiB``."""
    if LIMITS[name].unit == "bytes":
        return show_bytes(value)
    return f"{value:,}"


def show_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            v = n / size
            return f"{v:,.0f} {unit}" if v >= 100 or v == int(v) else f"{v:.1f} {unit}"
    return f"{n} bytes"


def raise_hint(name: str, value: int, advice: str | None = None) -> str:
    """The sentence a limit's error ends with: what to check first (``advice``), then how to
    raise the limit, on the command line and in Python."""
    info = LIMITS[name]
    if info.unit == "bytes":
        flag, py = f"{info.flag} {size_arg(2 * value)}", f"{_py_bytes(2 * value)}"
    else:
        flag = py = f"{2 * value}"
        flag = f"{info.flag} {flag}"
    text = (f"the limit on {info.what} is {show(name, value)}; if the spec is right, raise it: "
            f"`{flag}` (Python: `nndsl.compile(..., limits=Limits({name}={py}))`)")
    return f"{advice}; {text}" if advice else text


_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def size_arg(n: int) -> str:
    """``n`` bytes as :func:`parse_size` reads it: ``128G`` when it is a whole number of them."""
    for suffix, size in sorted(_SUFFIXES.items(), key=lambda kv: -kv[1]):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _py_bytes(n: int) -> str:
    for suffix, size in sorted(_SUFFIXES.items(), key=lambda kv: -kv[1]):
        if n % size == 0:
            return f"{n // size} * 2**{size.bit_length() - 1}"
    return str(n)


def parse_size(text: str) -> int:
    """A count or a byte size as a command line gives it: ``500000``, ``500_000``, ``64G``,
    ``512M`` (binary units: K = 2^10 ... T = 2^40). Raises ``ValueError`` for anything else,
    and for a value that is not positive."""
    t = text.strip().upper().replace("_", "").replace(",", "")
    if t.endswith("IB"):
        t = t[:-2]
    elif t.endswith("B") and len(t) > 1 and t[-2] in _SUFFIXES:
        t = t[:-1]
    mult = 1
    if t and t[-1] in _SUFFIXES:
        mult, t = _SUFFIXES[t[-1]], t[:-1]
    if not t.isdigit() or len(t) > 30:
        raise ValueError(f"not a size: {text!r} (write 500000, 64G or 512M)")
    v = int(t) * mult
    if v <= 0:
        raise ValueError(f"a limit must be positive, got {text!r}")
    return v


# The fixed limits: ranges of values, not budgets, so no flag raises them.
MAX_INT_BITS = 1024        # compile-time integers lie within ±2^1024, what a float can hold
MAX_CALL_DEPTH = 64        # blocks nested in blocks (Python's own stack bounds the elaborator)
MAX_PARAM_ELEMENTS = 2**34  # elements of one parameter: far beyond any real layer
MAX_INT = 2**62            # an int argument of an op (the backends hold them as int64)
MAX_SIZE = 2**40           # a size, stride, kernel or padding: no tensor dimension is larger


class Progress:
    """A hook for long compilations: ``tick`` is called as the graph grows, ``phase`` when a
    phase of the pipeline starts. By default it does nothing; ``Progress(report)`` calls
    ``report(message)`` once a compilation has run ``after`` seconds, and then at most every
    ``interval`` seconds, with a line such as ``elaborating: 120,000 nodes, 4.2 s``."""

    every = 4096   # nodes between two looks at the clock

    def __init__(self, report: Callable[[str], None] | None = None, after: float = 3.0,
                 interval: float = 2.0):
        self.report, self.after, self.interval = report, after, interval
        self.start = time.monotonic()
        self._last = None
        self._phase = "elaborating"

    def phase(self, name: str) -> None:
        """A new phase begins (``elaborating``, ``verifying``, ``pass cse``, ``lowering``)."""
        self._phase = name
        self._maybe(None)

    def tick(self, nodes: int) -> None:
        """The graph has ``nodes`` nodes; called every :attr:`every` nodes."""
        self._maybe(nodes)

    def _maybe(self, nodes: int | None) -> None:
        if self.report is None:
            return
        now = time.monotonic()
        spent = now - self.start
        if spent < self.after or self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        count = f": {nodes:,} nodes" if nodes is not None else ""
        self.report(f"{self._phase}{count}, {spent:.1f} s")


QUIET = Progress()
