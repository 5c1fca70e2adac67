"""Faults: a run killed mid-training resumes exactly; saves are atomic; divergence stops the run."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import attnlab.runs.resume
from attnlab.errors import CheckpointError, ConfigError
from attnlab.runs.checkpoint import safe_load
from attnlab.runs.resume import resume_config, run_overrides
from attnlab.training.callbacks import TrainingDiverged
from attnlab.training.lit_gpt import LitGPT
from attnlab.training.safe_io import SafeCheckpointIO
from attnlab.training.task import train
from tests.conftest import ROOT, CodeRunningPickle, run_train

# dropout > 0, so the resumed run matches only if the RNG state comes back too
RUN = [
    "debug=tiny",
    "trainer.max_steps=30",
    "trainer.val_check_interval=10",
    "model.dropout=0.2",
    "callbacks.last_checkpoint.every_n_train_steps=3",
]


def train_py(*args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


def scalars(event_file: Path, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(event_file))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.mark.slow
def test_a_killed_run_resumes_exactly_in_its_own_folder(tmp_path, compose):
    run, cache = tmp_path / "killed", tmp_path / "cache"
    proc = train_py(*RUN, f"hydra.run.dir={run}", f"data.cache_dir={cache}")
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-training: the first checkpoint has just appeared
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    resumed_from = safe_load(last)["global_step"]
    assert 0 < resumed_from < 30

    resumed = train_py(f"resume={run}")  # nothing else: the run's config.yaml is the configuration
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1].startswith(f"run {run}") and "(30 steps" in out

    reference = train(compose(*RUN, f"paths.output_dir={tmp_path / 'reference'}", f"data.cache_dir={cache}"))

    # the same run folder and TensorBoard run: a second event file beside the first, Hydra's record kept
    events = sorted((run / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    assert len(events) == 2
    assert [p.name for p in (run / ".hydra").iterdir() if p.name.startswith("resume-")]
    assert (run / ".hydra" / "overrides.yaml").read_text().count("model.dropout=0.2") == 1
    (expected,) = (tmp_path / "reference" / "tensorboard").glob("events.out.tfevents.*")
    got, want = scalars(events[-1], "train/loss"), scalars(expected, "train/loss")
    assert sorted(got) == list(range(resumed_from, 30))  # from the checkpoint on, every step once
    for step in got:  # the same loss at every step: weights, optimizer, LR schedule, RNG and data order restored
        assert got[step] == pytest.approx(want[step], abs=1e-5), step
    assert scalars(events[-1], "val/loss") == pytest.approx(
        {k: v for k, v in scalars(expected, "val/loss").items() if k >= resumed_from}, abs=1e-5
    )
    assert safe_load(last)["global_step"] == 30 and reference["steps"] == 30


def test_resume_keeps_the_runs_config_and_takes_only_named_keys(tmp_path, compose, monkeypatch):
    run = tmp_path / "run"
    train(compose(*RUN, "trainer.max_steps=4", "trainer.val_check_interval=4", f"paths.output_dir={run}", "~logger"))
    # `python train.py resume=<run> trainer.max_steps=8 data.context_length=8`: defaults otherwise
    later = compose("trainer.max_steps=8", "data.context_length=8", f"resume={run}")
    monkeypatch.setattr(
        attnlab.runs.resume, "command_line_keys", lambda: ["trainer.max_steps", "data.context_length", "resume"]
    )
    cfg, checkpoint = resume_config(later)
    assert checkpoint == run / "checkpoints" / "last.ckpt"
    assert cfg.paths.output_dir == str(run)
    assert cfg.model.d_model == 32 and cfg.model.dropout == 0.2 and cfg.data.batch_size == 4  # the run's
    assert cfg.trainer.max_steps == 8  # named on the command line
    assert cfg.model.context_length == cfg.data.context_length == 8  # and what interpolates it
    assert "logger" not in cfg  # the run had none
    saved = (run / "config.yaml").read_bytes()
    with pytest.raises(
        CheckpointError, match=r"holds a different model \(context_length 16 -> 8, checkpoint -> config\)"
    ):
        train(later)
    assert safe_load(run / "checkpoints" / "last.ckpt")["global_step"] == 4  # refused before writing anything
    assert (run / "config.yaml").read_bytes() == saved

    monkeypatch.setattr(attnlab.runs.resume, "command_line_keys", lambda: ["trainer.max_steps", "resume"])
    assert train(later)["steps"] == 8  # a longer run, continued
    with pytest.raises(
        ConfigError, match=r"is at step 8, already trainer.max_steps=8; resume with a larger trainer.max_steps"
    ):
        train(later)


def test_a_runs_overrides_are_the_originals_with_each_resumes_latest_values():
    original = ["debug=tiny", "seed=7", "optim.lr=0.01", "trainer.max_steps=6", "~logger"]
    first_resume = ["resume=outputs/r", "trainer.max_steps=8"]
    second_resume = ["ckpt_path=outputs/r/checkpoints/last.ckpt", "optim.lr=0.02", "optim=muon", "trainer.max_steps=12"]
    assert run_overrides([original, first_resume, second_resume]) == [
        "debug=tiny",
        "seed=7",
        "~logger",
        "optim.lr=0.02",  # within one launch the order does not matter: Muon with lr 0.02
        "optim=muon",  # the whole group again: the original optim.lr=0.01 no longer applies
        "trainer.max_steps=12",
    ]


@pytest.mark.slow
def test_a_resumed_runs_record_keeps_how_it_was_started(tmp_path, compose):
    run = tmp_path / "run"
    original = ["debug=tiny", "seed=7", "model.d_model=48", f"data.cache_dir={tmp_path / 'cache'}"]
    resume = [f"resume={run}", "trainer.max_steps=8"]
    for launch in ([*original, f"hydra.run.dir={run}"], resume):
        result = run_train(*launch)
        assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["overrides"] == [*original, "trainer.max_steps=8"]
    assert record["launches"] == [original, resume]
    composed = compose(*record["overrides"])  # the record still composes the run's config
    saved = OmegaConf.load(run / "config.yaml")
    for key in ("seed", "model", "optim", "trainer", "data"):
        assert OmegaConf.to_container(composed, resolve=True)[key] == OmegaConf.to_container(saved)[key], key


def _save_and_die(path: str) -> None:
    """Child process: save a checkpoint through SafeCheckpointIO, killed half-way through writing it."""

    def torch_save_half(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = torch_save_half
    SafeCheckpointIO().save_checkpoint({"state_dict": {}, "hyper_parameters": {"step": 2}}, path)


@pytest.mark.slow
def test_a_kill_during_a_save_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "hyper_parameters": {"step": 1}}, path)
    child = multiprocessing.get_context("fork").Process(target=_save_and_die, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert io.load_checkpoint(path)["hyper_parameters"] == {"step": 1}  # the old file, whole
    assert len(list(path.parent.iterdir())) == 2  # and the dead writer's temporary file
    io.save_checkpoint({"state_dict": {}, "hyper_parameters": {"step": 3}}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # the next save cleans it up
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_lightning_resume_never_unpickles_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": CodeRunningPickle()}}, evil)
    with pytest.raises(CheckpointError, match="damaged or not an attnlab checkpoint"):
        SafeCheckpointIO().load_checkpoint(evil, weights_only=False)  # even when asked to
    assert not (tmp_path / "pwned.txt").exists()


def test_a_non_finite_loss_stops_the_run_before_it_is_saved(tmp_path, compose, monkeypatch):
    nll = LitGPT._nll

    def nll_diverging_at_step_6(self, logits, y, reduction):
        loss = nll(self, logits, y, reduction)
        return loss * float("nan") if self.training and self.trainer.global_step >= 6 else loss

    monkeypatch.setattr(LitGPT, "_nll", nll_diverging_at_step_6)
    run = tmp_path / "run"
    # checks when checkpointing (step 8), not at logging (every 50 steps): the bad state is never written
    cfg = compose(
        *RUN,
        "callbacks.last_checkpoint.every_n_train_steps=4",
        "trainer.log_every_n_steps=50",
        f"paths.output_dir={run}",
        "~logger",
    )
    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(TrainingDiverged) as err:
        train(cfg)
    assert str(err.value).startswith(
        f"train/loss became NaN or infinite at step 6; the last good checkpoint is {last}: resume from it with a lower optim.lr"
    )
    checkpoint = safe_load(last)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
