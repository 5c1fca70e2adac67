"""The real entry points, end to end, on the seed sample."""

import os
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnlab.lit_module import LitGPT
from attnlab.train import train
from tests.conftest import ROOT

FAST = ["data=seed_sample", "trainer.max_steps=6", "trainer.val_check_interval=4", "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "model.d_model=32",
        "model.num_layers=1", "model.num_heads=2", "optim.warmup_steps=2"]


def run_train(*args, cwd=ROOT):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_overrides_reach_the_model(compose):
    cfg = compose("data=seed_sample", "model.num_heads=8", "model.d_model=64", "data.context_length=8")
    from attnlab.train import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    module = LitGPT(model={**cfg.model, "vocab_size": dm.vocab_size}, optim=dict(cfg.optim), tokenizer=dm.tokenizer)
    attn = module.model.blocks[0].attn
    assert attn.num_heads == 8 and attn.head_size == 8
    assert module.model_cfg.context_length == 8  # read from data.context_length
    assert module.model.token_embedding.weight.shape == (58, 64)  # the sample's 58-token vocabulary


def test_train_py_writes_events_and_checkpoints(tmp_path, seed_text):
    run_dir = tmp_path / "run"
    result = run_train(*FAST, f"hydra.run.dir={run_dir}", f"data.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run ") and "val/loss" in last and "val/bpb" in last and "(6 steps" in last

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "val/loss", "val/ppl", "val/bpb", "lr"):
        assert tag in scalars, scalars
    # every 4 steps and after the last; Lightning files a validation under its last training batch (0-based)
    assert [e.step for e in events.Scalars("val/loss")] == [3, 5]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(6))

    for name in ("best.ckpt", "last.ckpt"):
        assert (run_dir / "checkpoints" / name).is_file()
    assert (run_dir / "config.yaml").read_text().count("context_length: 16") == 2  # resolved: data and model

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)  # no code in it
    assert ckpt["global_step"] == 6
    assert ckpt["tokenizer"]["kind"] == "corpus_vocab" and len(ckpt["tokenizer"]["vocab"]) == 58
    module = LitGPT.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert module.tokenizer.decode(module.tokenizer.encode(seed_text)) == seed_text


def test_bad_config_fails_fast_with_one_line(tmp_path):
    result = run_train("data=seed_sample", "model.d_model=30", "model.num_heads=4", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == ("error: model.d_model=30 is not divisible by model.num_heads=4; "
                         "pick num_heads from [1, 2, 3, 5, 6, 10, 15, 30] or change d_model")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_in_process_training_learns(compose):
    cfg = compose(*FAST[:1], "trainer.max_steps=40", "trainer.val_check_interval=40", "trainer.enable_progress_bar=false",
                  "trainer.num_sanity_val_steps=0", "model.dropout=0.0", "optim.lr=3e-3", "~logger")
    metrics = train(cfg)
    assert metrics["steps"] == 40
    # on 58 tokens the untrained model's loss is about ln(58) = 4.06; 40 steps learn the train split
    assert metrics["train/loss"] < 2.5


def test_same_seed_same_run(compose, tmp_path):
    def run(name, *extra):
        cfg = compose(*FAST, "~logger", f"paths.output_dir={tmp_path / name}", *extra)
        return train(cfg)

    a, b, c = run("a"), run("b"), run("c", "seed=2")
    assert a["train/loss"] == b["train/loss"] and a["val/loss"] == b["val/loss"]
    assert c["val/loss"] != a["val/loss"]
