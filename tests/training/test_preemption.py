"""Preemption: SIGTERM / SIGUSR1 save last.ckpt after the step, requeue under SLURM, exit 75."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
from omegaconf import open_dict

from attnlab.errors import ConfigError
from attnlab.runs.checkpoint import safe_load
from attnlab.training.preemption import PREEMPTED_EXIT_STATUS, Preempted, Preemption, signal_numbers, slurm_job_id
from attnlab.training.task import train
from tests.conftest import ROOT
from tests.runs.test_resume import RUN, scalars


def test_signal_names_are_checked():
    assert signal_numbers(["SIGTERM", "sigusr1"]) == [signal.SIGTERM, signal.SIGUSR1]
    with pytest.raises(ConfigError, match="'SIGKILL' is not a signal a run can catch"):
        signal_numbers(["SIGKILL"])
    with pytest.raises(ConfigError, match="'SIGNOPE'"):
        Preemption(signals=["SIGNOPE"])
    with pytest.raises(ConfigError, match="unknown callbacks.preemption.requeue='always'"):
        Preemption(requeue="always")


def test_the_slurm_job_of_an_array_task(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    assert slurm_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "812")
    assert slurm_job_id() == "812"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "800")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "12")
    assert slurm_job_id() == "800_12"


class SignalAtStep(L.Callback):
    """Send this process ``signum`` when training reaches ``step`` (a scheduler's notice, mid-run)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _signal_at(cfg, step: int, signum: int) -> None:
    with open_dict(cfg):
        cfg.callbacks.signal_at_step = {"_target_": f"{__name__}.SignalAtStep", "step": step, "signum": int(signum)}


def _fake_scontrol(folder: Path) -> Path:
    """An ``scontrol`` that writes its arguments to ``folder/scontrol.args``."""
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" > {folder / "scontrol.args"}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_saves_the_step_it_arrives_in_and_requeues_the_slurm_job(tmp_path, compose, monkeypatch, signum):
    _fake_scontrol(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # not a SLURM environment to Lightning: no SLURM_NTASKS
    cfg = compose("debug=tiny", "trainer.max_steps=20", "~logger", f"paths.output_dir={tmp_path / 'run'}")
    _signal_at(cfg, step=5, signum=signum)
    before = signal.getsignal(signum)
    with pytest.raises(Preempted, match=rf"preempted by {signum.name} at step 6: saved .*last.ckpt and requeued"):
        train(cfg)
    assert safe_load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 6  # the step in progress
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert signal.getsignal(signum) == before  # the run's handlers are gone with it


def test_outside_slurm_nothing_is_requeued_and_the_state_still_goes_to_last_ckpt(tmp_path, compose, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    cfg = compose("debug=tiny", "trainer.max_steps=20", "~logger", "~callbacks.last_checkpoint")
    cfg.paths.output_dir = str(tmp_path / "run")
    _signal_at(cfg, step=2, signum=signal.SIGTERM)
    with pytest.raises(Preempted) as stop:
        train(cfg)
    assert str(stop.value).endswith("checkpoints/last.ckpt")  # no "requeued"
    assert safe_load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 3


@pytest.mark.slow
def test_sigterm_to_a_training_process_saves_exits_75_and_the_resume_is_exact(tmp_path, compose):
    run, cache = tmp_path / "preempted", tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *RUN, f"hydra.run.dir={run}", f"data.cache_dir={cache}"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    first = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_STATUS, err[-2000:]
    assert time.monotonic() - sent < 30
    (line,) = [ln for ln in out.splitlines() if "preempted by SIGTERM" in ln]
    assert line in (run / "train.log").read_text()
    assert f"resume with: python train.py resume={run}" in line and "Traceback" not in err
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "preempted"
    stopped_at = safe_load(first)["global_step"]
    assert 0 < stopped_at < 30

    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"resume={run}"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = train(compose(*RUN, f"paths.output_dir={tmp_path / 'reference'}", f"data.cache_dir={cache}"))
    events = sorted((run / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    (expected,) = (tmp_path / "reference" / "tensorboard").glob("events.out.tfevents.*")
    got, want = scalars(events[-1], "train/loss"), scalars(expected, "train/loss")
    assert sorted(got) == list(range(stopped_at, 30))
    for step in got:
        assert got[step] == pytest.approx(want[step], abs=1e-5), step
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok" and reference["steps"] == 30
