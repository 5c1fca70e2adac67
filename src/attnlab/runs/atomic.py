"""Writing files so that a crash never leaves a half-written one behind.

:func:`atomic_write` writes to a temporary file in the target's folder, flushes it to the disk
(``fsync``) and renames it over the target with ``os.replace``, which is atomic on POSIX and
Windows: a reader, or a run that resumes after a ``kill -9``, sees the old file or the whole new
one, never a mix. Every file attnlab writes goes this way: checkpoints, the token cache, a run's
``config.yaml`` and ``metrics.json``, eval results, sweep reports, exports and attention PNGs.
(Not the run folder's ``.lock``, which is locked in place: :mod:`attnlab.runs.lock`.)

A write the filesystem refuses (a full disk, a quota, a file-size limit, no permission, a
read-only mount) raises a one-line :class:`~attnlab.errors.StorageError` naming the target
(:mod:`attnlab.runs.storage`), and the previous file stays as it was.

The file gets the mode ``open()`` would give it: ``0o666`` less the process umask at the time of
the write (and the folder's default ACL, where it has one), whatever the writer does with its
temporary file (safetensors, for one, writes its own and renames it over ours, mode ``0600``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from attnlab.runs.storage import raise_if_refused


def temp_prefix(path: Path) -> str:
    """Name prefix of the temporary files :func:`atomic_write` makes for ``path``."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_path(path: str | Path, needed: int | None = None) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: writer(tmp)``: for writers that take a file name. ``tmp`` is
    a new file beside ``p``; ``p`` appears whole when the block succeeds, and stays as it was
    (the temporary file removed) when the block raises. A write the filesystem refuses (full,
    no permission, read-only) raises :class:`~attnlab.errors.StorageError`, one line that names
    ``p`` and, for a full one, ``needed`` (the bytes it needs, where the caller knows them)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, mode = _new_temp(path)
        yield tmp
        os.chmod(tmp, mode)  # the writer may have put a file of its own mode in its place
        _fsync(tmp)  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
        _fsync(path.parent)  # and the rename itself survives a power cut
    except BaseException as err:
        written = tmp.stat().st_size if tmp is not None and tmp.is_file() else 0
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise_if_refused(err, path, needed, written)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, needed: int | None = None) -> Iterator[BinaryIO]:
    """``with atomic_write(p) as f: f.write(...)``: :func:`atomic_path` with the file open for writing."""
    with atomic_path(path, needed) as tmp, open(tmp, "wb") as f:
        yield f


def _new_temp(path: Path) -> tuple[Path, int]:
    """A new, empty temporary file beside ``path`` and its mode: created as ``open()`` creates a
    file (0o666, which the kernel narrows by the umask), unlike ``tempfile.mkstemp`` (0o600)."""
    while True:
        tmp = path.parent / f"{temp_prefix(path)}{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:  # 48 random bits: another writer's name, practically never
            continue
        mode = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        return tmp, mode


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
