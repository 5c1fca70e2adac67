"""Continuing a sweep that stopped halfway: ``python train.py -m <its overrides> sweep_dir=<its folder>``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from attnlab.errors import ConfigError
from attnlab.runs.atomic import atomic_write_json
from attnlab.runs.checkpoint import safe_load
from attnlab.sweeps.continuation import (
    check_same_sweep,
    clear_attempt,
    continue_command,
    plan_job,
    sweep_differences,
)
from attnlab.sweeps.plan import first_job
from attnlab.sweeps.report import load_summary
from attnlab.training.task import train
from tests.conftest import ROOT, run_train


def _job(folder: Path, status: str | None = None, step: int | None = None) -> Path:
    """A job folder as a sweep leaves it: metrics.json with ``status``, a last.ckpt at ``step``."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    if status is not None:
        atomic_write_json(folder / "metrics.json", {"status": status, "metrics": {"val/bpb": 2.5}})
    if step is not None:
        (folder / "checkpoints").mkdir()
        torch.save(
            {"state_dict": {}, "hyper_parameters": {}, "global_step": step}, folder / "checkpoints" / "last.ckpt"
        )
    return folder


@pytest.mark.parametrize(
    ("status", "step", "retry", "how"),
    [
        ("ok", 20, True, "skip"),  # finished: never again
        ("failed", 10, False, "skip"),  # kept failed
        ("failed", 10, True, "resume"),  # run again, from its checkpoint
        ("preempted", 10, True, "resume"),
        (None, 10, True, "resume"),  # the job the kill interrupted
        (None, 20, True, "restart"),  # its checkpoint is at max_steps already: nothing to resume
        (None, None, True, "new"),  # only Hydra's record of this launch: nothing to clear
        ("failed", None, True, "restart"),
    ],
)
def test_each_job_is_skipped_resumed_or_started_again(tmp_path, status, step, retry, how):
    job = _job(tmp_path / "2", status, step)
    assert plan_job(job, max_steps=20, retry_failed=retry).how == how


def test_a_job_killed_before_its_first_checkpoint_starts_again(tmp_path):
    job = _job(tmp_path / "0")
    (job / "tensorboard").mkdir()
    assert plan_job(job, max_steps=20).how == "restart"


def test_starting_again_clears_the_earlier_attempt_but_keeps_its_log(tmp_path):
    job = _job(tmp_path / "1", "failed", 3)
    (job / "tensorboard").mkdir()
    (job / "tensorboard" / "events.out.tfevents.1").write_bytes(b"x")
    (job / "train.log").write_text("the first attempt\n")
    clear_attempt(job)
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "train.log"]


def test_differences_are_listed_key_by_key():
    old = [["model.num_heads=2", "seed=1"], ["model.num_heads=4", "seed=1"]]
    new = [["model.num_heads=2", "seed=1"], ["model.num_heads=8", "seed=1"]]
    assert sweep_differences(old, new) == ["model.num_heads 2,4 -> 2,8"]
    assert sweep_differences(old, [["model.num_heads=2"], ["model.num_heads=4"]]) == ["seed 1 -> (not set)"]
    assert sweep_differences(old, old) == []


def test_the_continue_command_replaces_any_earlier_sweep_folder(tmp_path):
    argv = [
        "-m",
        "model.num_heads=2,4",
        "prompt=To be, or not",
        f"hydra.sweep.dir={tmp_path}",
        "sweep_retry_failed=false",
    ]
    command = continue_command(tmp_path / "s", argv)
    assert command == f"python train.py -m model.num_heads=2,4 'prompt=To be, or not' sweep_dir={tmp_path / 's'}"


def _sweep_config(compose_with_hydra, folder: Path, *overrides: str):
    cfg = compose_with_hydra(*first_job(list(overrides)), f"hydra.sweep.dir={folder}")
    cfg.hydra.overrides.task = list(overrides)  # as Hydra records a multirun's command line
    return cfg


def test_another_sweep_in_the_same_folder_is_refused(tmp_path, compose_with_hydra):
    folder = tmp_path / "sweep"
    folder.mkdir()
    first = _sweep_config(compose_with_hydra, folder, "model.num_heads=2,4", "seed=1")
    OmegaConf.save(first, folder / "multirun.yaml")
    check_same_sweep(_sweep_config(compose_with_hydra, folder, "model.num_heads=2,4", "seed=1", f"sweep_dir={folder}"))
    with pytest.raises(ConfigError, match=r"another sweep \(model.num_heads 2,4 -> 2,8; seed 1 -> 2;") as err:
        check_same_sweep(_sweep_config(compose_with_hydra, folder, "model.num_heads=2,8", "seed=2"))
    assert "python train.py -m model.num_heads=2,4 seed=1 sweep_dir=" in str(err.value)
    named = _sweep_config(compose_with_hydra, folder, "sweep=heads")  # a named sweep's values count too
    with pytest.raises(ConfigError, match="model.num_heads 2,4 -> 1,2,4,8"):
        check_same_sweep(named)


def test_sweep_dir_must_name_a_sweep(tmp_path, compose_with_hydra):
    with pytest.raises(ConfigError, match=r"sweep_dir=.* holds no sweep \(no multirun.yaml\)"):
        check_same_sweep(_sweep_config(compose_with_hydra, tmp_path, "seed=1,2", f"sweep_dir={tmp_path}"))


# --------------------------------------------------------------------------------------------
# The whole path: a real sweep killed during job 2, continued
# --------------------------------------------------------------------------------------------

JOB_STEPS = 24
SWEEP = [
    "-m",
    "debug=tiny",
    "model.d_model=32,32,128,32",  # job 2 is the slow one: the kill lands in it
    f"trainer.max_steps={JOB_STEPS}",
    "trainer.val_check_interval=8",
    "callbacks.last_checkpoint.every_n_train_steps=4",
    "model.dropout=0.1",  # exact only if the RNG state comes back too
    "~callbacks.attention",
    "~callbacks.samples",
    "~callbacks.heads",
]


def _figures(folder: Path) -> dict[str, dict]:
    return {
        job.name: (job.status, job.metrics.get("val/loss"), job.metrics.get("steps"))
        for job in load_summary(folder).jobs
    }


@pytest.mark.slow
def test_a_sweep_killed_during_job_2_continues_with_jobs_2_and_3_only(tmp_path, compose):
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    killed = tmp_path / "killed"
    console = tmp_path / "console.txt"  # the killed sweep's stdout and stderr
    with console.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *SWEEP, cache, f"hydra.sweep.dir={killed}"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        )
    checkpoint = killed / "2" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, console.read_text()[-2000:]
    assert "if it stops early, continue with: python train.py -m" in console.read_text()
    interrupted_at = safe_load(checkpoint)["global_step"]
    assert 0 < interrupted_at < JOB_STEPS
    finished = {n: (killed / n / "metrics.json").stat().st_mtime_ns for n in ("0", "1")}

    again = run_train(*SWEEP, cache, f"sweep_dir={killed}")
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert {n: (killed / n / "metrics.json").stat().st_mtime_ns for n in ("0", "1")} == finished  # not run again
    assert "job 0 finished earlier" in said and "job 1 finished earlier" in said
    assert f"job 2 continues from its checkpoints/last.ckpt (step {interrupted_at})" in said
    assert "job 3 " not in said  # job 3 is new: it starts as any job does
    assert (killed / "3" / "metrics.json").is_file()

    got = _figures(killed)
    assert list(got) == ["0", "1", "2", "3"] and all(status == "ok" for status, _, _ in got.values())
    for job, d_model in (("2", 128), ("3", 32)):  # jobs 2 and 3 of the sweep, never interrupted
        overrides = [o for o in SWEEP[1:] if not o.startswith("model.d_model=")]
        reference = train(compose(*overrides, f"model.d_model={d_model}", cache, f"paths.output_dir={tmp_path / job}"))
        assert got[job][2] == reference["steps"] == JOB_STEPS
        assert got[job][1] == pytest.approx(reference["val/loss"], abs=1e-5), job
    record = json.loads((killed / "2" / "metrics.json").read_text())
    assert not any(o.startswith("sweep_dir=") for o in record["overrides"])  # how to continue, not what the job is
