"""The command line's argument types and shared checks: ``--param`` values, data paths, the
compile limits' flags, seeds and counts, output paths checked before any work, warnings. The
``nndsl`` command (:mod:`nndsl.cli`) and the commands other packages add to it read them here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nndsl.errors import ArgumentError, NndslError
from nndsl.fsutil import write_error
from nndsl.limits import DEFAULT, LIMITS, Limits, Progress, parse_size, show


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


def _limit(flag: str):
    def parse(text: str) -> int:
        try:
            return parse_size(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} expects a positive number (sizes may end in K, M, G or T), "
                f"got {text!r}") from None
    return parse


def _typed_path(value: str | None) -> str | None:
    """A data path typed on the command line is relative to the working folder (a spec's own
    paths are relative to the spec); a built-in name such as `digits` stays as it is."""
    from nndsl.train.data import names_a_path
    if value is None or not names_a_path(value):
        return value
    return os.path.abspath(value)


def _limits(args) -> Limits:
    return DEFAULT.with_(**{name: getattr(args, name, None) for name in LIMITS})


def _progress() -> Progress:
    """A note on stderr when a compilation runs past a few seconds, and every few seconds on."""
    return Progress(lambda m: print(f"note: {m}", file=sys.stderr, flush=True))


def _warn(c, args) -> None:
    """Print the warnings of a compiled model on stderr (each once per command);
    ``--deny-warnings`` makes them an error."""
    seen = args.__dict__.setdefault("_warned", set())
    new = [w for w in c.warnings if w.render() not in seen]
    for w in new:
        seen.add(w.render())
        if not getattr(args, "quiet", False):
            print(w.render(), file=sys.stderr)
    if getattr(args, "deny_warnings", False):
        from nndsl.errors import deny
        deny(new)


_SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def _cannot_write(path, reason: str, hint: str = "choose a path in a writable folder"):
    return NndslError(f"cannot write {path}: {reason}", code="E1008", hint=hint)


def check_output(path, *, folder: bool = False) -> Path:
    """Refuse, before any work, an output path nothing can be written to: one under a file, in
    a system folder (/proc, /sys, /dev), a folder where a file is wanted (or the reverse), or in a
    folder without write permission. Missing folders are fine: writing creates them."""
    p = Path(path)
    try:
        real = Path(os.path.realpath(p))
        for sysdir in _SYSTEM_FOLDERS:
            if real == Path(sysdir) or real.is_relative_to(sysdir):
                raise _cannot_write(path, f"it is in {sysdir}, a system folder, not a place for "
                                          f"files")
        if p.exists():
            if folder and not p.is_dir():
                raise _cannot_write(path, "it is a file, and the output is a folder",
                                    hint="name a new or existing folder")
            if not folder and p.is_dir():
                raise _cannot_write(path, "it is a folder, and the output is a file",
                                    hint="name the file to write inside it")
        place = p if folder and p.is_dir() else p.parent
        place = Path(os.path.abspath(place))
        while not place.exists() and place != place.parent:
            place = place.parent
        if not place.is_dir():
            raise _cannot_write(path, f"{place} is a file, not a folder")
        if not os.access(place, os.W_OK | os.X_OK):
            raise _cannot_write(path, f"no permission to write in {place}")
    except (OSError, ValueError) as e:   # a name too long, a NUL in it...
        raise write_error(path, e) from None
    return p


MAX_SEED = 2**63   # seeds lie in [0, 2^63): torch and NumPy generators take a 64-bit seed


def _seed(text: str) -> int:
    """``--seed``: an integer in [0, 2^63), else a usage error naming the range."""
    try:
        v = int(text.strip()) if len(text) <= 40 else None
    except ValueError:
        v = None
    if v is None:
        shown = text if len(text) <= 40 else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"{shown!r} is not an integer: a seed is an integer "
                                         f"from 0 to 2^63 - 1")
    if not 0 <= v < MAX_SEED:
        raise argparse.ArgumentTypeError(f"{v} is out of range: a seed is an integer from 0 to "
                                         f"2^63 - 1 ({MAX_SEED - 1})")
    return v


MAX_COUNT = 2**31   # batch sizes, epochs, sample counts


def _count(text: str) -> int:
    """A positive count (``--batch``, ``--epochs``, ``-n``): an integer in [1, 2^31)."""
    try:
        v = int(text.strip()) if len(text) <= 40 else None
    except ValueError:
        v = None
    if v is None or not 1 <= v < MAX_COUNT:
        shown = text if len(text) <= 40 else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"{shown!r} is not a count: an integer from 1 to "
                                         f"2^31 - 1 ({MAX_COUNT - 1:,})")
    return v


def limit_flags(p: argparse.ArgumentParser) -> None:
    """The ``--max-...`` options of nndsl/limits.py, on a command that compiles a spec."""
    lim = p.add_argument_group("limits (raise them for a spec that needs more)")
    for info in LIMITS.values():
        default = show(info.name, getattr(DEFAULT, info.name))
        lim.add_argument(info.flag, dest=info.name, type=_limit(info.flag), default=None,
                         metavar="N" if info.unit == "count" else "SIZE",
                         help=f"{info.what} (default {default}"
                              + ("; SIZE as 512M, 64G" if info.unit == "bytes" else "") + ")")


def spec_arguments(p: argparse.ArgumentParser, spec_help: str = "a .nn file",
                   lib_help: str = "a folder imports may read from, besides the spec's own "
                                   "(repeatable)") -> None:
    """The arguments every command that compiles a spec takes: the spec, ``--model``,
    ``--param NAME=VALUE`` and ``--lib DIR``."""
    p.add_argument("spec", help=spec_help)
    p.add_argument("--model", help="which model of the file (when it defines several)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="override a model parameter (repeatable)")
    p.add_argument("--lib", action="append", metavar="DIR", help=lib_help)
