"""Writing files so that a crash never leaves a half-written one behind.

:func:`atomic_write` writes to a temporary file in the target's folder, flushes it to the disk
(``fsync``) and renames it over the target with ``os.replace``, which is atomic on POSIX and
Windows: a reader, or a run that resumes after a ``kill -9``, sees the old file or the whole new
one, never a mix. Every file attnlab writes goes this way: checkpoints, the token cache, a run's
``config.yaml`` and ``metrics.json``, eval results, sweep reports, exports and attention PNGs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

_UMASK = os.umask(0o022)  # read the process umask (os.umask sets it, so put it back)
os.umask(_UMASK)


def temp_prefix(path: Path) -> str:
    """Name prefix of the temporary files :func:`atomic_write` makes for ``path``."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: writer(tmp)``: for writers that take a file name. ``tmp`` is
    a new file beside ``p``; ``p`` appears whole when the block succeeds, and stays as it was
    (the temporary file removed) when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.close(fd)
        yield tmp
        _fsync(tmp)  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)  # and the rename itself survives a power cut


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """``with atomic_write(p) as f: f.write(...)``: :func:`atomic_path` with the file open for writing."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def remove_stale_temps(path: str | Path) -> int:
    """Delete temporary files a killed writer of ``path`` left behind; returns how many.

    Only for files with a single writer (a run's checkpoints): a concurrent writer's live
    temporary file would be deleted too.
    """
    path = Path(path)
    stale = list(path.parent.glob(f"{temp_prefix(path)}*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _fsync(path: Path) -> None:
    if os.name != "posix" and Path(path).is_dir():  # folders cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


def atomic_write_json(path: str | Path, values: Any) -> None:
    """Write ``values`` as indented JSON (UTF-8, one trailing newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(values, indent=2, ensure_ascii=False) + "\n")
