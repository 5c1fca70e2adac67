"""One writer per run folder: the lock a process holds on ``<run>/.lock`` while it trains there.

Two launches that resume one run at once would both train: one dies saving a checkpoint, and the
run's TensorBoard events interleave. So a run takes the lock before it writes in its folder, and a
second process stops with one line that names the holder (:class:`attnlab.errors.RunInUseError`).

* The lock is a POSIX record lock (``fcntl.lockf``): the kernel drops it when its holder dies, so
  the lock of a killed run (``kill -9``, a lost node) never blocks the next launch; it also works on
  NFS (through lockd). The file stays in the folder; the JSON in it (host, pid, start time and
  command line of the holder, written once the lock is taken) only feeds the message.
* Re-entrant within a process: ``python train.py resume=<run>`` takes it in the bootstrap's check,
  before Hydra writes its record and log there, and keeps it (:func:`hold_run_folder`);
  :func:`attnlab.training.task.train` takes it again for the job (:func:`run_folder_lock`), which
  is how the jobs of a sweep, one after another in one process, each hold their own folder.
* DDP ranks of one run are one writer: only the process of global rank 0 takes the lock (ranks
  started by Lightning's launcher have ``LOCAL_RANK`` > 0, SLURM's and torchrun's a rank > 0).
* A filesystem without locks (``lockf`` fails with ENOLCK, EOPNOTSUPP or EINVAL), or a system
  without ``fcntl``: a warning, once, and the run goes on unlocked.

The lock file is written in place, never renamed over (a new file would be a new, unlocked one),
and so is the one file attnlab writes without :mod:`attnlab.runs.atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from attnlab.errors import RunInUseError
from attnlab.runs.layout import LOCK_FILE
from attnlab.runs.storage import raise_if_refused
from attnlab.system.console import shown_path
from attnlab.system.distributed import launcher_rank

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}  # lockf on a filesystem without locks
HELD_ELSEWHERE = {errno.EACCES, errno.EAGAIN}  # lockf: another process holds it


@dataclass
class _Held:
    fd: int | None  # the open lock file; None where the run goes unlocked
    count: int = 1


_held: dict[Path, _Held] = {}  # this process's locks, by run folder
_guard = threading.Lock()
_warned = False


def _forget_after_fork() -> None:
    """A forked process holds none of its parent's locks (the kernel keeps them with the parent)."""
    global _held, _guard
    _held, _guard = {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def is_rank_zero() -> bool:
    """Whether this process is the global rank 0 of its run (or the run has one process)."""
    local = int(os.environ.get("LOCAL_RANK") or 0)  # set by Lightning's launcher in the ranks it starts
    node = int(os.environ.get("NODE_RANK") or 0)
    return local == 0 and node == 0 and launcher_rank() == 0


def acquire(run: str | Path) -> None:
    """Take the lock on ``run`` (made if missing), or raise :class:`RunInUseError` naming the process
    that holds it. Taken again by the process that holds it, it counts: :func:`release` as often."""
    folder = Path(run).resolve()
    with _guard:
        if folder in _held:
            _held[folder].count += 1
            return
        _held[folder] = _Held(_lock(folder) if is_rank_zero() else None)


def release(run: str | Path) -> None:
    """Undo one :func:`acquire`; the last one lets the lock go."""
    folder = Path(run).resolve()
    with _guard:
        held = _held[folder]
        held.count -= 1
        if held.count == 0:
            del _held[folder]
            if held.fd is not None:
                os.close(held.fd)  # closing the file drops the lock


@contextlib.contextmanager
def run_folder_lock(run: str | Path) -> Iterator[None]:
    """Hold the lock on ``run`` in the block (re-entrant)."""
    acquire(run)
    try:
        yield
    finally:
        release(run)


def hold_run_folder(run: str | Path) -> None:
    """Take the lock on ``run`` for the rest of this process (the kernel lets it go when it exits)."""
    acquire(run)


def _lock(folder: Path) -> int | None:
    """The lock file of ``folder``, open and locked by this process (None where locks do not work)."""
    path = folder / LOCK_FILE
    if fcntl is None:
        return _unlocked(folder, "this system has no fcntl")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise_if_refused(err, path)
        raise
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in HELD_ELSEWHERE:
            raise RunInUseError(in_use_line(folder)) from None
        if err.errno in UNSUPPORTED:
            return _unlocked(folder, f"its filesystem does not support locks ({os.strerror(err.errno)})")
        raise
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, shown_path(sys.argv[0]), *sys.argv[1:]]),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    except OSError as err:
        os.close(fd)
        raise_if_refused(err, path)
        raise
    return fd


def _unlocked(folder: Path, why: str) -> None:
    global _warned
    if not _warned:
        log.warning("run folder %s is not locked: %s; do not train two processes in it at once", folder, why)
        _warned = True
    return None


def in_use_line(folder: Path) -> str:
    """The line for a run folder another process holds, from what it wrote in the lock file (which
    may be empty or partial: the holder writes it just after taking the lock)."""
    shown = shown_path(folder)
    try:
        holder = json.loads((folder / LOCK_FILE).read_text(encoding="utf-8"))
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return (
            f"run folder {shown} is in use by another process (fuser -v {shown_path(folder / LOCK_FILE)} names it); "
            "wait for it to end or stop it, then run the command again"
        )
    parts = [str(holder.get("command") or "")[:200], _since(str(holder.get("started") or ""))]
    about = f" ({', '.join(p for p in parts if p)})" if any(parts) else ""
    kill = f"kill {pid}" if host == socket.gethostname() else f"kill {pid} on {host}"
    return (
        f"run folder {shown} is in use by pid {pid} on host {host}{about}; "
        f"wait for it to end or stop it ({kill}), then run the command again"
    )


def _since(started: str) -> str:
    try:
        when = datetime.fromisoformat(started)
    except ValueError:
        return ""
    return f"since {when:%H:%M:%S}" if when.date() == datetime.now().date() else f"since {when:%Y-%m-%d %H:%M:%S}"
