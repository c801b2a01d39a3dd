"""Writing files so that a failure never leaves a half-written file behind.

A file is written to a temporary file in its own folder, flushed to disk, then renamed over the
destination, so readers see the old file or the new one, never part of one. Temporaries are
named ``.NAME.PID.XXXXXXXX.tmp`` (``NAME`` the destination's name, ``PID`` the writing
process): an exception removes them, and the ones a killed process (``kill -9``, a power cut)
left behind are recognisable by that name and removed by the next write to the same
destination, once no process of that id is running. Files get the mode a plain ``open`` would
give them (0666 less the umask), not the 0600 of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

_TEMP_SUFFIX = ".tmp"
_NAME_PART = 100      # characters of the destination's name kept in a temporary's name


def _stem(name: str) -> str:
    return "." + name[:_NAME_PART] + "."


def create_temp(path: str | Path, tag: str = "") -> tuple[int, Path]:
    """A new temporary file next to ``path``, opened for writing: ``(fd, temp path)``.

    ``tag`` (``data``) tells apart several temporaries of one destination."""
    path = Path(path)
    mode = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / (f"{_stem(path.name)}{os.getpid()}.{secrets.token_hex(4)}"
                             f"{'.' + tag if tag else ''}{_TEMP_SUFFIX}")
        try:
            return os.open(tmp, mode, 0o666), tmp     # 0666 less the umask, as open() does
        except FileExistsError:
            continue


def write_fd(fd: int, chunks) -> None:
    """Write every chunk (bytes-like) to ``fd``, flush it to disk and close it."""
    try:
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                n = os.write(fd, view[:1 << 30])
                view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def clean_stale_temps(path: str | Path) -> None:
    """Remove the temporaries that dead processes left while writing ``path``.

    Only files named as :func:`create_temp` names them for this destination, whose process id
    runs no process any more, are removed; a write in progress keeps its own."""
    path = Path(path)
    pattern = re.compile(re.escape(_stem(path.name)) + r"(\d+)\.[0-9a-f]{8}(\.[a-z]+)?"
                         + re.escape(_TEMP_SUFFIX))

    def stale(name: str) -> bool:
        m = pattern.fullmatch(name)
        return m is not None and not _running(int(m.group(1)))
    remove_files(path.parent, stale)


def remove_files(folder: Path, wanted) -> None:
    """Remove the regular files of ``folder`` whose name ``wanted`` accepts, as a clean-up:
    quietly, leaving whatever cannot be removed (links and folders are never touched)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if wanted(entry.name):
            try:
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
            except OSError:
                pass


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True      # someone else's process (or a number we cannot ask about): keep it
    return True


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(21, "it is a folder", str(path))
    clean_stale_temps(path)
    fd, tmp = create_temp(path)
    try:
        write_fd(fd, [data])
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_error(path, e: Exception):
    """The user-facing error for a failed write of ``path`` (an ``OSError`` or a bad name)."""
    from nndsl.errors import NndslError
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return NndslError(f"cannot write {path}: {reason}", code="E1008",
                      hint="choose a path in a writable folder")
