"""One writer per run folder: a second process is refused in one line naming the holder, a killed
holder's lock never blocks, the lock is re-entrant, DDP ranks > 0 never take it, and two resumes of
one run at once leave the files of one process only."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import attnlab.runs.lock
from attnlab.errors import RunInUseError
from attnlab.runs.lock import acquire, hold_run_folder, in_use_line, release, run_folder_lock
from attnlab.training.task import train
from tests.conftest import ROOT


def holder(run: Path) -> int:
    """A forked process that takes the lock on ``run`` and waits to be killed; its pid."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but the lock, then sleep
        try:
            hold_run_folder(run)
            os.write(write, b"held")
            time.sleep(600)
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 4) == b"held"
    os.close(read)
    return pid


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def lockable_elsewhere(run: Path) -> bool:
    """Whether another process could take the lock on ``run`` now."""
    pid = os.fork()
    if pid == 0:
        try:
            hold_run_folder(run)
            os._exit(0)
        except RunInUseError:
            os._exit(1)
        finally:
            os._exit(2)
    return os.waitpid(pid, 0)[1] == 0


def test_a_second_process_is_refused_in_one_line_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    pid = holder(run)
    try:
        with pytest.raises(RunInUseError) as refused:
            acquire(run)
        line = str(refused.value)
        assert "\n" not in line
        assert line.startswith(f"run folder {run} is in use by pid {pid} on host {socket.gethostname()} (")
        assert "since " in line and line.endswith(
            f"; wait for it to end or stop it (kill {pid}), then run the command again"
        )
        recorded = json.loads((run / ".lock").read_text())
        assert recorded["pid"] == pid and recorded["host"] == socket.gethostname()
        assert recorded["command"].startswith(Path(sys.executable).name)  # the holder's (the forked test's) command
        assert recorded["command"][:200] in line  # the line names it (its first 200 characters)
    finally:
        kill(pid)
    with run_folder_lock(run):  # the kernel dropped the killed holder's lock: nothing stale blocks
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()


def test_an_empty_or_partial_lock_file_still_gives_one_line(tmp_path):
    run = tmp_path / "run"
    pid = holder(run)
    try:
        for text in ("", '{"host": "n1", "pi'):  # the holder is between taking the lock and writing who it is
            (run / ".lock").write_text(text)  # another process's writes leave the holder's lock alone
            with pytest.raises(RunInUseError) as refused:
                acquire(run)
            assert str(refused.value) == (
                f"run folder {run} is in use by another process (fuser -v {run / '.lock'} names it); "
                "wait for it to end or stop it, then run the command again"
            )
    finally:
        kill(pid)
    (run / ".lock").write_text(json.dumps({"host": "n1", "pid": 4242, "started": "2025-01-31T10:00:03"}))
    assert in_use_line(run) == (
        f"run folder {run} is in use by pid 4242 on host n1 (since 2025-01-31 10:00:03); "
        "wait for it to end or stop it (kill 4242 on n1), then run the command again"
    )


def test_the_lock_is_re_entrant_and_the_last_release_lets_it_go(tmp_path):
    run = tmp_path / "run"
    hold = acquire  # the bootstrap's check, then the job, in one process
    hold(run)
    with run_folder_lock(run):
        assert not lockable_elsewhere(run)
    assert not lockable_elsewhere(run)  # the first hold is still there
    release(run)
    assert lockable_elsewhere(run)
    with run_folder_lock(run), run_folder_lock(tmp_path / "run" / ".." / "run"):  # the same folder
        assert not lockable_elsewhere(run)
    assert lockable_elsewhere(run)


@pytest.mark.parametrize("env", [{"LOCAL_RANK": "1"}, {"NODE_RANK": "1"}, {"RANK": "3"}, {"SLURM_PROCID": "2"}])
def test_ddp_ranks_above_zero_never_take_it(tmp_path, monkeypatch, env):
    run = tmp_path / "run"
    pid = holder(run)  # rank zero
    try:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with run_folder_lock(run):  # a rank of the same run: not refused, and takes nothing
            pass
    finally:
        kill(pid)


def test_a_filesystem_without_locks_warns_once_and_goes_on(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(attnlab.runs.lock.fcntl, "lockf", no_locks)
    monkeypatch.setattr(attnlab.runs.lock, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="attnlab.runs.lock"):
        for name in ("a", "b"):
            with run_folder_lock(tmp_path / name):
                pass
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "is not locked: its filesystem does not support locks" in warnings[0]


def _resume(run: Path, steps: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"resume={run}", f"trainer.max_steps={steps}"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


def _files(run: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.stat().st_size) for p in run.rglob("*")}


@pytest.mark.slow
def test_two_resumes_of_one_run_at_once_one_trains_and_the_other_writes_nothing(tmp_path, compose):
    run = tmp_path / "run"
    train(compose("debug=tiny", f"paths.output_dir={run}"))  # a finished run folder, as train.py leaves it

    pid = holder(run)  # deterministic first: a process that holds the run
    before = _files(run)
    refused = _resume(run, 8)
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and err.count("\n") == 1, err[-2000:]
    assert err.startswith(f"error: run folder {run} is in use by pid {pid} on host ")
    assert _files(run) == before  # no .hydra/resume-*, no train.log line, no checkpoint
    kill(pid)  # killed with SIGKILL: its lock goes with it

    first, second = _resume(run, 8), _resume(run, 8)  # at once
    results = [(p, *p.communicate(timeout=300)) for p in (first, second)]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [err[-2000:] for _, _, err in results]
    (winner,) = [p for p, _, _ in results if p.returncode == 0]
    (loser_err,) = [err for p, _, err in results if p.returncode == 2]
    assert loser_err.count("\n") == 1 and f"is in use by pid {winner.pid} " in loser_err
    assert "resume=" in loser_err  # the holder's command line
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the first launch's and one more
    assert len(list((run / ".hydra").glob("resume-*"))) == 1
    assert (run / "train.log").read_text().count("resuming from") == 1
