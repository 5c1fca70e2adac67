"""When the filesystem refuses a write: a full disk, a quota, a file-size limit, no permission, a
read-only mount.

Each is one line, a :class:`attnlab.errors.StorageError` that names the file, what it needs and
what is free there, and the fix, instead of a traceback from deep inside a writer:

* :func:`raise_if_refused` where attnlab writes a file (:mod:`attnlab.runs.atomic`, the one way
  attnlab writes; the previous file stays whole);
* :func:`writes_into` around code that lets others write into a folder (``trainer.fit``:
  TensorBoard's writer thread, Lightning's own files);
* :func:`check_writable` before a run starts, and :func:`free_bytes` for the room it needs.

A refused write is an :class:`OSError` with an errno of :data:`REFUSED`, raised itself or the
cause or context of what was raised (torch.save reports its writer's OSError as a RuntimeError).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from attnlab.errors import AttnlabError, StorageError
from attnlab.system.console import shown_path

NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}  # full disk, file-size limit, quota
NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}  # permission bits, ACLs, a read-only mount
REFUSED = NO_ROOM | NOT_ALLOWED


def byte_size(nbytes: int) -> str:
    """``1.2 MB``, ``340.0 kB``, ``5 B``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def existing_parent(path: str | Path) -> Path:
    """``path`` if it exists, else the nearest folder above it that does."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int:
    """The free bytes (for this user) on the filesystem ``path`` is or will be on."""
    return shutil.disk_usage(existing_parent(path)).free


def refused_write(err: BaseException | None) -> OSError | None:
    """The OSError with an errno of :data:`REFUSED` that ``err`` is or was caused by, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in REFUSED:
            return err
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


def _file_size_limit() -> int | None:
    """This process's limit on the size of a file it writes (``ulimit -f``), None if there is none."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def _mount_point(path: Path) -> Path:
    path = existing_parent(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def storage_error(err: OSError, path: str | Path, needed: int | None = None, written: int = 0) -> StorageError:
    """One line for the refused write ``err`` of ``path``, a file or a folder written into
    (``needed``: the bytes it needs, where known; ``written``: how many it had written)."""
    path = Path(path)
    shown = shown_path(path)
    target = f"in {shown}" if path.is_dir() else shown
    if needed:
        need = f"it needs about {byte_size(needed)}"
    else:
        need = f"it needs more than the {byte_size(written)} written so far" if written else ""
    if err.errno == errno.EFBIG:
        limit = _file_size_limit()
        if limit is not None:
            return StorageError(
                f"cannot write {target}: it is larger than this process may write (the file-size limit, ulimit -f, "
                f"is {byte_size(limit)}{'; ' + need if need else ''}); raise the limit (ulimit -f unlimited), "
                "then run the command again"
            )
        return StorageError(
            f"cannot write {target}: it is larger than its filesystem allows for one file"
            f"{' (' + need + ')' if need else ''}; write it to another filesystem"
        )
    if err.errno in NO_ROOM:
        what = "no space left on its filesystem" if err.errno == errno.ENOSPC else "the disk quota is used up"
        return StorageError(
            f"cannot write {target}: {what} ({need + ', ' if need else ''}{byte_size(free_bytes(path))} free there); "
            "free some space (or quota) there or write to another filesystem, then run the command again"
        )
    if err.errno == errno.EROFS:
        return StorageError(
            f"cannot write {target}: {_mount_point(path)} is mounted read-only; "
            "remount it read-write or write to another filesystem"
        )
    if path.is_dir():
        return StorageError(
            f"cannot create files in {shown}: permission denied; give this user write access (ls -ld {shown}) "
            "or write to another folder"
        )
    folder = shown_path(existing_parent(path.parent))
    return StorageError(
        f"cannot write {shown}: permission denied in {folder}; give this user write access there (ls -ld {folder}) "
        "or write to another folder"
    )


def raise_if_refused(err: BaseException, path: str | Path, needed: int | None = None, written: int = 0) -> None:
    """Raise :func:`storage_error`'s one line if ``err`` is a write the filesystem refused (called
    in an ``except`` block, which re-raises ``err`` otherwise)."""
    refused = None if isinstance(err, AttnlabError) else refused_write(err)  # attnlab's lines are said already
    if refused is not None:
        raise storage_error(refused, path, needed, written) from None


@contextlib.contextmanager
def writes_into(folder: str | Path) -> Iterator[None]:
    """Writes others make into ``folder`` in the block (TensorBoard's writer thread, Lightning's own
    files): a refused one is one line naming its file, or ``folder`` where the error names none.

    A writer thread's error reaches the main thread at its next write or flush; the traceback
    threading would print for it is left out.
    """
    previous = threading.excepthook

    def quiet(args: threading.ExceptHookArgs) -> None:
        if refused_write(args.exc_value) is None:
            previous(args)

    threading.excepthook = quiet
    try:
        yield
    except Exception as err:
        refused = refused_write(err)
        raise_if_refused(err, (refused.filename if refused is not None else None) or folder)
        raise
    finally:
        threading.excepthook = previous


def check_writable(folder: str | Path) -> None:
    """Raise :class:`StorageError` unless this process can create files in ``folder`` (or, if it is
    not there yet, in the folder it will be made in): a file is made and removed, since permission
    bits say nothing to root or about read-only mounts."""
    probe = existing_parent(folder) / f".attnlab-write-test-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise_if_refused(err, probe.parent)
        raise
