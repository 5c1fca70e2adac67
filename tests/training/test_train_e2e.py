"""The real entry points, end to end, on the seed sample."""

import io
import json
import math
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from attnlab.training.lit_gpt import LitGPT
from attnlab.training.task import train
from tests.conftest import run_tool, run_train

FAST = ["debug=tiny"]  # conf/debug/tiny.yaml: the seed sample, a 32-wide 1-layer model, 6 steps


def test_overrides_reach_the_model(compose):
    cfg = compose("data=seed_sample", "model.num_heads=8", "model.d_model=64", "data.context_length=8")
    from attnlab.data.datamodule import TextDataModule

    dm = TextDataModule.from_config(cfg)
    dm.setup("fit")
    module = LitGPT(model={**cfg.model, "vocab_size": dm.vocab_size}, optim=dict(cfg.optim), tokenizer=dm.tokenizer)
    attn = module.model.blocks[0].attn
    assert attn.num_heads == 8 and attn.head_size == 8
    assert module.model_cfg.context_length == 8  # read from data.context_length
    assert module.model.token_embedding.weight.shape == (58, 64)  # the sample's 58-token vocabulary


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short `python train.py` run on the seed sample, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("e2e")
    run_dir = tmp / "run"
    result = run_train(*FAST, "model.num_layers=2", f"hydra.run.dir={run_dir}", f"data.cache_dir={tmp / 'cache'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def read_events(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    events.Reload()
    return events


@pytest.mark.slow
def test_train_py_writes_events_and_checkpoints(trained_run, seed_text):
    run_dir, result = trained_run
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run ") and "val/loss" in last and "val/bpb" in last and "(6 steps" in last
    log = (run_dir / "train.log").read_text()
    assert "[lightning.pytorch" in log and "GPU available" in log  # Lightning's lines reach the run's log

    events = read_events(run_dir)
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "val/loss", "val/ppl", "val/bpb", "lr", "train/tokens_per_sec", "train/grad_norm"):
        assert tag in scalars, scalars
    # every 4 steps and after the last; Lightning files a validation under its last training batch (0-based)
    assert [e.step for e in events.Scalars("val/loss")] == [3, 5]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(6))
    assert all(e.value > 0 for e in events.Scalars("train/tokens_per_sec"))
    assert all(0 < e.value < 100 for e in events.Scalars("train/grad_norm"))

    for name in ("best.ckpt", "last.ckpt"):
        assert (run_dir / "checkpoints" / name).is_file()
    assert (run_dir / "config.yaml").read_text().count("context_length: 16") == 2  # resolved: data and model

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6
    assert ckpt["tokenizer"]["kind"] == "corpus_vocab" and len(ckpt["tokenizer"]["vocab"]) == 58
    module = LitGPT.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    assert module.tokenizer.decode(module.tokenizer.encode(seed_text)) == seed_text


@pytest.mark.slow
def test_attention_maps_samples_and_hparams_reach_tensorboard(trained_run):
    run_dir, result = trained_run
    events = read_events(run_dir)
    images = [tag for tag in events.Tags()["images"] if tag.startswith("attention/")]  # heads/*: below
    assert sorted(images) == [
        "attention/layer_0",
        "attention/layer_0_mean",
        "attention/layer_1",
        "attention/layer_1_mean",
    ]
    for tag in images:
        logged = events.Images(tag)
        assert [e.step for e in logged] == [3, 5]  # with the validation scalars
        for e in logged:
            png = Image.open(io.BytesIO(e.encoded_image_string))
            assert png.format == "PNG" and png.size == (e.width, e.height) and min(png.size) > 200

    samples = events.Tensors("samples")
    assert [e.step for e in samples] == [3, 5]
    text = samples[-1].tensor_proto.string_val[0].decode()
    assert "**greedy**" in text and "**sampled (temperature 0.8" in text

    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.num_layers"].number_value == 2
    assert start.hparams["data.context_length"].number_value == 16
    assert start.hparams["model.attention"].string_value == "sdpa"
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"val/loss", "val/bpb", "model/num_parameters"}
    num_parameters = events.Scalars("model/num_parameters")[0].value

    summary = (run_dir / "model_summary.txt").read_text()
    assert f"total {int(num_parameters):,} parameters" in summary and "blocks.1.attn" in summary
    assert "blocks.1.attn" in result.stdout + result.stderr  # printed at start too


@pytest.mark.slow
def test_head_scores_reach_tensorboard_and_metrics_json(trained_run):
    from attnlab.observe.heads import SCORES

    run_dir, _ = trained_run
    events = read_events(run_dir)
    heads = {f"heads/{s}/layer_{i}/head_{j}" for s in SCORES for i in range(2) for j in range(2)}
    assert heads | {"heads/in_context"} <= set(events.Tags()["scalars"])
    for tag in ("heads/induction/layer_1/head_1", "heads/in_context", "heads/prev_token/layer_0/head_0"):
        assert [e.step for e in events.Scalars(tag)] == [3, 5]  # with the validation scalars
    for score in SCORES:
        assert [e.step for e in events.Images(f"heads/{score}")] == [3, 5]

    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert {f"heads/max/{s}" for s in SCORES} | {"heads/mean_entropy/layer_1", "heads/in_context"} <= set(metrics)
    last = {tag: events.Scalars(tag)[-1].value for tag in heads}
    assert metrics["heads/max/induction"] == pytest.approx(
        max(v for t, v in last.items() if t.startswith("heads/induction/")), abs=1e-6
    )
    assert metrics["heads/in_context"] == pytest.approx(events.Scalars("heads/in_context")[-1].value, abs=1e-6)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tensorboard_serves_the_run(trained_run):
    run_dir, _ = trained_run
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(run_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                scalars = json.loads(urllib.request.urlopen(f"{base}/scalars/tags", timeout=5).read())
                if scalars.get("tensorboard"):
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "tensorboard did not come up"
            time.sleep(0.5)
        assert {"val/bpb", "train/loss", "train/grad_norm"} <= set(scalars["tensorboard"])
        images = json.loads(urllib.request.urlopen(f"{base}/images/tags", timeout=10).read())
        assert "attention/layer_0" in images["tensorboard"]
        series = json.loads(
            urllib.request.urlopen(f"{base}/scalars/scalars?run=tensorboard&tag=val%2Fbpb", timeout=10).read()
        )
        assert [step for _, step, _ in series] == [3, 5]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_attnlab_attend_writes_pngs_into_the_run(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_tool("attend", f"ckpt_path={run_dir}", f"out_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if line.endswith(".png")]
    assert printed == [str(tmp_path / f"layer_{i}{s}.png") for i in range(2) for s in ("", "_mean")]
    assert Image.open(printed[0]).size[0] > 200
    assert result.stdout.splitlines()[-1] == str(tmp_path / "attention.html")  # the explorer, beside the maps
    written = sorted(["attention.html", *(p.split("/")[-1] for p in printed)])
    assert sorted(p.name for p in tmp_path.iterdir()) == written  # nothing else

    bad = run_tool("attend", f"ckpt_path={run_dir}", "text=zebra xylophone", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "cannot spell" in bad.stderr  # the 58-token sample vocabulary has no Latin letters


@pytest.mark.slow
def test_bad_config_fails_fast_with_one_line(tmp_path):
    result = run_train("data=seed_sample", "model.d_model=30", "model.num_heads=4", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: model.d_model=30 is not divisible by model.num_heads=4; "
        "pick num_heads from [1, 2, 3, 5, 6, 10, 15, 30] or change d_model"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_in_process_training_learns(compose):
    cfg = compose(
        "data=seed_sample",
        "trainer.max_steps=40",
        "trainer.val_check_interval=40",
        "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0",
        "model.dropout=0.0",
        "optim.lr=3e-3",
        "~logger",
    )
    metrics = train(cfg)
    assert metrics["steps"] == 40
    # on 58 tokens the untrained model's loss is about ln(58) = 4.06; 40 steps learn the train split
    assert metrics["train/loss"] < 2.5


def test_modern_model_with_muon_learns_and_checkpoints_both_optimizers(compose, tmp_path):
    from attnlab.runs.checkpoint import safe_load

    modern = [
        "model.positional=rope",
        "model.norm=rmsnorm",
        "model.qk_norm=true",
        "model.activation=relu2",
        "model.tie_embeddings=false",
        "model.bias=false",
        "optim=muon",
    ]
    common = [
        "data=seed_sample",
        "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0",
        "model.dropout=0.0",
        "optim.lr=3e-3",
        "~logger",
        *modern,
    ]
    metrics = train(
        compose(*common, "trainer.max_steps=30", "trainer.val_check_interval=30", f"paths.output_dir={tmp_path}")
    )
    assert metrics["steps"] == 30 and metrics["train/loss"] < 2.5  # untrained: about ln(58) = 4.06
    state = safe_load(tmp_path / "checkpoints" / "last.ckpt")["optimizer_states"][0]
    assert {"exp_avg", "momentum_buffer"} <= {k for s in state["state"].values() for k in s}  # AdamW's and Muon's


def test_same_seed_same_run(compose, tmp_path):
    def run(name, *extra):
        cfg = compose(*FAST, "~logger", f"paths.output_dir={tmp_path / name}", *extra)
        return train(cfg)

    a, b, c = run("a"), run("b"), run("c", "seed=2")
    assert a["train/loss"] == b["train/loss"] and a["val/loss"] == b["val/loss"]
    assert c["val/loss"] != a["val/loss"]


def test_char_tokenizer_trains_and_its_checkpoint_decodes(compose, tmp_path, seed_text):
    import math

    import numpy as np

    from attnlab.data.datamodule import TextDataModule
    from attnlab.runs.checkpoint import load_model

    cfg = compose(*FAST, "data/tokenizer=char", "~logger", f"paths.output_dir={tmp_path / 'char'}")
    metrics = train(cfg)
    assert metrics["steps"] == 6
    assert [p.name.split("-", 1)[1] for p in (tmp_path / "cache").glob("*.tokens")] == ["char.tokens"]

    # val/bpb divides by the UTF-8 bytes of the val characters (3 per Chinese character), not by characters
    dm = TextDataModule.from_config(cfg)
    dm.setup("fit")
    targets = dm.val_ids[1:].astype(np.int64)  # (N-1,) every val character after the first, predicted once
    nbytes = int(dm.tokenizer.token_bytes()[targets].sum())
    assert nbytes > len(targets)
    assert metrics["val/bpb"] == pytest.approx(metrics["val/loss"] * len(targets) / (math.log(2) * nbytes), rel=1e-4)

    model, tokenizer = load_model(tmp_path / "char")
    assert model.token_embedding.weight.shape[0] == tokenizer.vocab_size == len(set(seed_text))
    assert tokenizer.decode(tokenizer.encode(seed_text)) == seed_text


@pytest.mark.slow
def test_speedrun_preset_trains_for_its_wall_clock_budget_and_ends_its_schedule_with_it(compose, tmp_path):
    cfg = compose(
        "experiment=speedrun_cpu",
        "data=seed_sample",
        "trainer.max_time=00:00:00:03",
        "data.context_length=8",
        "model.d_model=32",
        "model.num_heads=2",
        "model.num_layers=1",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        "optim.warmup_steps=2",
        f"paths.output_dir={tmp_path}",
    )
    assert cfg.trainer.precision == "bf16-mixed" and cfg.optim.name == "muon" and cfg.model.positional == "rope"
    metrics = train(cfg)
    assert 3 < metrics["steps"] < cfg.trainer.max_steps and math.isfinite(metrics["val/bpb"])  # time ended it
    import csv

    (log,) = tmp_path.rglob("metrics.csv")
    lrs = [float(r["lr"]) for r in csv.DictReader(log.open()) if r.get("lr")]
    assert max(lrs) == pytest.approx(cfg.optim.lr, rel=0.05) and lrs[-1] < 0.2 * max(
        lrs
    )  # the cosine ran out with the time
