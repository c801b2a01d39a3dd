"""Files a train section names: data, ``init`` weights, a distill teacher and its weights.

A relative path in a spec is relative to the spec's folder, and only to it: a file of the same
name in the current folder never stands in for the spec's. Only regular files are read (and
folders where a folder is asked for): a device (``/dev/zero``), a FIFO or a socket is refused
before anything opens it, so nothing hangs or reads without end. A teacher spec is a ``.nn``
file under the spec's folder tree, the rule of a spec's imports.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nndsl.errors import Span, TrainError


def spec_path(value: str, base: Path | str | None, span: Span | None, what: str, code: str, *,
              folder: bool = False, suffixes: tuple = (), under_base: bool = False) -> Path:
    """The file ``value`` names, relative to ``base`` (the spec's folder), checked: it exists,
    it is a regular file (or a folder when ``folder``), its suffix is one of ``suffixes`` and,
    with ``under_base``, it lies under ``base`` (after following links)."""
    p = Path(value)
    base = Path(base) if base is not None else Path(".")
    if not p.is_absolute():
        p = base / p
    where = f"a relative path in a spec is relative to the spec's folder ({os.path.normpath(base)}" \
            f"{os.sep})"
    if under_base:
        try:
            real, root = p.resolve(), base.resolve()
        except (OSError, RuntimeError) as e:
            raise TrainError(f"{what} {value}: cannot resolve the path ({e})", span=span,
                             code=code) from None
        if real != root and root not in real.parents:
            raise TrainError(f"{what} {value} is outside the spec's folder {root}", span=span,
                             code=code, hint=f"put it in {root}{os.sep} or a folder below, "
                                             f"and name it relative to the spec")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise TrainError(f"{what} not found: {p}", span=span, code=code, hint=where) from None
    except NotADirectoryError:
        raise TrainError(f"{what} not found: {p} (a part of the path is a file)", span=span,
                         code=code, hint=where) from None
    except OSError as e:
        raise TrainError(f"cannot read {what} {p}: {e.strerror or e}", span=span,
                         code=code) from None
    if stat.S_ISDIR(st.st_mode):
        if folder:
            return p
        raise TrainError(f"{what} {p} is a folder, not a file", span=span, code=code,
                         hint=f"name a file{' (' + ', '.join(suffixes) + ')' if suffixes else ''}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if \
            stat.S_ISSOCK(st.st_mode) else "a device" if (stat.S_ISCHR(st.st_mode) or
                                                         stat.S_ISBLK(st.st_mode)) else \
            "not a regular file"
        raise TrainError(f"{what} {p} is {kind}, not a regular file", span=span, code=code,
                         hint="name a regular file; nndsl does not read devices or pipes")
    if suffixes and p.suffix.lower() not in suffixes:
        raise TrainError(f"{what} {p} is not a {' or '.join(suffixes)} file", span=span,
                         code=code)
    return p


def regular_file(p: Path, what: str, code: str, limit: int | None = None) -> None:
    """Refuse ``p`` unless it is a regular file (of at most ``limit`` bytes)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise TrainError(f"{what} {p} is missing", code=code) from None
    except OSError as e:
        raise TrainError(f"cannot read {what} {p}: {e.strerror or e}", code=code) from None
    if not stat.S_ISREG(st.st_mode):
        raise TrainError(f"{what} {p} is not a regular file", code=code,
                         hint="nndsl reads run folders it wrote; this one was changed")
    if limit is not None and st.st_size > limit:
        raise TrainError(f"{what} {p} is {st.st_size:,} bytes, more than such a file ever is "
                         f"({limit:,})", code=code,
                         hint="nndsl reads run folders it wrote; this one was changed")


def writable_folder(out: Path) -> list:
    """Make the run folder ``out`` (and its parents) and make sure files can be written in it,
    before any training: a clear error naming the path otherwise. Returns the folders it made
    (innermost first), for :func:`remove_empty`."""
    hint = "choose another --out: a folder you can write to"
    made = []
    p = out
    while not os.path.lexists(p) and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TrainError(f"cannot use {out} as the run folder: it is a file", code="E1228",
                         hint=hint) from None
    except NotADirectoryError:
        raise TrainError(f"cannot make the run folder {out}: a part of the path is a file",
                         code="E1228", hint=hint) from None
    except OSError as e:
        raise TrainError(f"cannot make the run folder {out}: {e.strerror or e}", code="E1228",
                         hint=hint) from None
    if not out.is_dir():
        raise TrainError(f"cannot use {out} as the run folder: it is not a folder",
                         code="E1228", hint=hint)
    probe = out / f".nndsl-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise TrainError(f"cannot write in the run folder {out}: {e.strerror or e}",
                         code="E1228", hint=hint) from None
    return made


def remove_empty(folders: list) -> None:
    """Remove the folders :func:`writable_folder` made, where they are still empty."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            return
