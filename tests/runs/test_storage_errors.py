"""A full disk, a quota, a file-size limit, no permission, a read-only mount: one line at every
write attnlab does, the earlier file byte-identical, nothing left behind; and the checks before a
run starts (a folder it cannot write, too little room for its checkpoints)."""

from __future__ import annotations

import errno
import io
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.summary.writer.record_writer import RecordWriter

import attnlab.runs.atomic
import attnlab.runs.checkpoint
import attnlab.runs.resume
import attnlab.runs.storage
from attnlab.data.token_file import TokenizedCorpus, write_token_cache
from attnlab.errors import StorageError
from attnlab.preflight import preflight
from attnlab.runs.checkpoint import safe_load, tensor_bytes
from attnlab.runs.storage import byte_size
from attnlab.sweeps.job import record_job
from attnlab.system.console import shown_path
from attnlab.training.safe_io import SafeCheckpointIO
from attnlab.training.task import save_config, train
from tests.conftest import ROOT
from train import check_train_job

TINY = [
    "debug=tiny",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "callbacks.last_checkpoint.every_n_train_steps=1",
]


class FullDisk(io.FileIO):
    """A file on a disk with room for ``room`` more bytes: the write past them fails as write(2)
    does, a short write first, then ``OSError(code)``."""

    def __init__(self, path: Path, room: int, code: int) -> None:
        super().__init__(path, "w")
        self.room, self.code = room, code

    def write(self, data) -> int:
        if self.room == 0:
            raise OSError(self.code, os.strerror(self.code))
        n = super().write(memoryview(data).cast("B")[: self.room])  # a short write where it does not fit
        self.room -= n
        return n


def fill_disk(monkeypatch, name: str, room: int = 100, code: int = errno.ENOSPC) -> None:
    """Make attnlab's writes of files named ``name`` meet a full disk after ``room`` bytes."""

    def opened(path, mode="r", *args, **kwargs):
        if Path(path).name.startswith(f".{name}.") and str(path).endswith(".tmp"):  # its temporary file
            return io.BufferedWriter(FullDisk(Path(path), room, code))  # as open(path, "wb") is
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(attnlab.runs.atomic, "open", opened, raising=False)


def only_the(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.") or p == path)


def test_a_full_disk_at_a_checkpoint_save_inside_fit_is_one_line_and_the_last_checkpoint_stays(
    tmp_path, compose, monkeypatch
):
    run = tmp_path / "run"
    train(compose(*TINY, f"paths.output_dir={run}", "~logger"))
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    fill_disk(monkeypatch, "last.ckpt", room=4096)  # torch.save's writer fails inside its own C++ code
    monkeypatch.setattr(attnlab.runs.resume, "command_line_keys", lambda: ["trainer.max_steps", "resume"])
    with pytest.raises(StorageError) as refused:
        train(compose("trainer.max_steps=8", f"resume={run}"))  # its first save: last.ckpt at step 5
    line = str(refused.value)
    needed = byte_size(tensor_bytes(safe_load(last)))
    assert "\n" not in line
    assert line.startswith(f"cannot write {last}: no space left on its filesystem (it needs about {needed}, ")
    assert line.endswith(
        " free there); free some space (or quota) there or write to another filesystem, then run the command again"
    )
    assert last.read_bytes() == before
    assert only_the(last) == ["last.ckpt"]  # no temporary file left


@pytest.mark.parametrize("kind", ["token cache", "config.yaml", "metrics.json"])
def test_a_full_disk_at_any_write_is_one_line_and_the_earlier_file_stays(tmp_path, monkeypatch, kind):
    tokens = TokenizedCorpus(ids=np.arange(5000, dtype=np.uint16), vocab=np.arange(5000, dtype=np.int64))
    path, write, needed = {
        "token cache": (
            tmp_path / "cache" / "x.tokens",
            lambda p: write_token_cache(p, tokens),
            " (it needs about 50.0 kB, ",
        ),
        "config.yaml": (tmp_path / "config.yaml", lambda p: save_config(OmegaConf.create({"seed": 1}), p.parent), None),
        "metrics.json": (tmp_path / "metrics.json", lambda p: record_job(p.parent, "ok", 1.0, {"val/loss": 2.0}), None),
    }[kind]
    write(path)
    before = path.read_bytes()
    fill_disk(monkeypatch, path.name, room=4)
    with pytest.raises(StorageError) as refused:
        write(path)
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"cannot write {path}: no space left on its filesystem (")
    assert (needed or " (it needs more than the 4 B written so far, ") in line
    assert path.read_bytes() == before and only_the(path) == [path.name]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EACCES, "cannot write {path}: permission denied in {folder}; give this user write access there"),
        (
            errno.EROFS,
            "cannot write {path}: / is mounted read-only; remount it read-write or write to another filesystem",
        ),
        (errno.EDQUOT, "cannot write {path}: the disk quota is used up ("),
    ],
)
def test_no_permission_a_read_only_mount_or_a_quota_is_one_line(tmp_path, monkeypatch, code, expected):
    def refused(path):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(attnlab.runs.atomic, "_new_temp", refused)
    monkeypatch.setattr(attnlab.runs.storage, "_mount_point", lambda path: Path("/"))
    path = tmp_path / "eval" / "x.json"
    with pytest.raises(StorageError) as err:
        attnlab.runs.atomic.atomic_write_json(path, {})
    assert str(err.value).startswith(expected.format(path=path, folder=path.parent))


def test_tensorboard_s_writer_thread_on_a_full_disk_is_one_line(tmp_path, compose, monkeypatch, capsys):
    written = RecordWriter.write

    def full_after_a_few(self, data):
        full_after_a_few.calls += 1
        if full_after_a_few.calls > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written(self, data)

    full_after_a_few.calls = 0
    monkeypatch.setattr(RecordWriter, "write", full_after_a_few)
    run = tmp_path / "run"
    with pytest.raises(StorageError) as refused:
        train(compose(*TINY, f"paths.output_dir={run}"))
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"cannot write in {run}: no space left on its filesystem (")
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err


def test_too_little_room_for_the_checkpoints_stops_the_run_before_it_writes(tmp_path, compose, monkeypatch):
    monkeypatch.setattr(attnlab.runs.checkpoint, "free_bytes", lambda path: 2_000_000)
    run = tmp_path / "run"
    with pytest.raises(StorageError) as refused:
        train(compose(*TINY, f"paths.output_dir={run}", "~logger"))
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith(f"only 2.0 MB free on the filesystem of {run}, but its checkpoints need about ")
    assert "(best.ckpt, last.ckpt and a copy being saved, each ~" in line and "x 12 bytes" in line
    assert not (run / "config.yaml").exists() and not (run / "checkpoints").exists()


def test_a_folder_it_cannot_write_fails_before_hydra_starts(tmp_path, monkeypatch):
    real_open = os.open

    def no_write(path, flags, mode=0o777, **kwargs):
        if Path(path).name.startswith(".attnlab-write-test-"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(attnlab.runs.storage.os, "open", no_write)
    run = tmp_path / "finished"
    run.mkdir()
    with pytest.raises(StorageError) as refused:
        preflight(ROOT, "config", ["debug=tiny", f"hydra.run.dir={run / 'new'}"], check_train_job)
    monkeypatch.undo()
    outputs = attnlab.runs.storage.existing_parent(ROOT / "outputs" / "x")  # a new run's folder is made there
    assert str(refused.value) == (
        f"cannot create files in {shown_path(outputs)}: permission denied; give this user write access "
        f"(ls -ld {shown_path(outputs)}) or write to another folder"
    )


def test_a_real_file_size_limit_at_a_checkpoint_save_is_one_line(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    saver = SafeCheckpointIO()
    saver.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, path)
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))  # the kernel refuses to write past 200 kB: EFBIG
    try:
        with pytest.raises(StorageError) as refused:
            saver.save_checkpoint({"state_dict": {"w": torch.zeros(250_000)}, "hyper_parameters": {}}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(refused.value) == (
        f"cannot write {path}: it is larger than this process may write (the file-size limit, ulimit -f, is 200.0 kB; "
        "it needs about 1.0 MB); raise the limit (ulimit -f unlimited), then run the command again"
    )
    assert path.read_bytes() == before and only_the(path) == ["last.ckpt"]


@pytest.mark.slow
def test_a_resume_past_the_file_size_limit_exits_2_with_one_line_and_keeps_last_ckpt(tmp_path, compose):
    run = tmp_path / "run"
    train(compose(*TINY, f"paths.output_dir={run}"))  # a finished run folder, as train.py leaves it
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    limit = len(before) // 2  # above what the log, config.yaml and TensorBoard write before the first save

    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"resume={run}", "trainer.max_steps=8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert resumed.stderr.count("\n") == 1 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert resumed.stderr.startswith(f"error: cannot write {last}: it is larger than this process may write")
    assert last.read_bytes() == before and only_the(last) == ["last.ckpt"]
