"""trainer=fsdp: each block its own FSDP unit, full checkpoints that resume and the tools read like
any other; for real with trainer=fsdp_cpu (2 processes on the CPU over gloo)."""

import io
import json
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

import attnlab
from attnlab.errors import ConfigError
from attnlab.model import EncoderDecoder, TransformerConfig
from attnlab.runs.checkpoint import model_from_checkpoint, read_checkpoint
from attnlab.tools.eval import evaluate
from attnlab.tools.export import export
from attnlab.tools.generate import generate_text
from attnlab.training.fsdp import BLOCKS, BlockFSDP
from attnlab.training.lit_gpt import LitGPT
from attnlab.training.safe_io import SafeCheckpointIO
from attnlab.training.task import build_trainer
from tests.conftest import run_train
from tests.tools.test_tools import PROMPT
from tests.tools.test_tools import compose as compose_tool

TINY = ["debug=tiny", "trainer.max_steps=4", "trainer.precision=32-true"]  # fp32: FSDP and DDP agree exactly


@pytest.mark.parametrize("name, accelerator, devices", [("fsdp", "gpu", -1), ("fsdp_cpu", "cpu", 2)])
def test_fsdp_configs_compose(compose, name, accelerator, devices):
    trainer = OmegaConf.to_container(compose(f"trainer={name}").trainer, resolve=True)
    assert (trainer["accelerator"], trainer["devices"]) == (accelerator, devices)
    assert trainer["strategy"] == {
        "_target_": "attnlab.training.fsdp.BlockFSDP",
        "sharding_strategy": "FULL_SHARD",
        "state_dict_type": "full",
    }
    assert trainer["max_steps"] == 1000 and trainer["gradient_clip_val"] == 1.0  # the rest from default.yaml


def test_build_trainer_makes_the_strategy_each_block_a_unit(compose, tmp_path):
    trainer = build_trainer(compose("trainer=fsdp_cpu", *TINY), tmp_path)  # builds; launches nothing yet
    strategy = trainer.strategy
    assert type(strategy) is BlockFSDP and strategy.root_device == torch.device("cpu")
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and set(policy._module_classes) == BLOCKS
    assert strategy.sharding_strategy.name == "FULL_SHARD" and strategy._state_dict_type == "full"
    assert isinstance(strategy.checkpoint_io, SafeCheckpointIO)  # rank 0 saves the full dict atomically
    assert trainer.num_devices == 2


def test_sharded_checkpoints_and_the_encoder_decoder_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="state_dict_type=sharded: attnlab writes full checkpoints only"):
        BlockFSDP(state_dict_type="sharded")
    cfg = TransformerConfig(src_vocab_size=8, tgt_vocab_size=8, d_model=8, num_heads=2)
    with pytest.raises(ConfigError, match="trainer=fsdp trains the GPT only for now.*use trainer=ddp"):
        BlockFSDP().connect(SimpleNamespace(model=EncoderDecoder(cfg)))


@pytest.mark.slow
def test_fsdp_run_resumes_and_every_tool_reads_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    overrides = [*TINY, "trainer.max_steps=6", f"data.cache_dir={tmp_path / 'cache'}"]  # validates at 4 and 6
    result = run_train("trainer=fsdp_cpu", *overrides, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(6 steps" in result.stdout
    log = (run / "train.log").read_text()
    assert "trainer=fsdp: AttentionMaps, HeadScores, Samples not run" in log  # one notice, rank 0's
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]

    # one full checkpoint, as a single-device run writes it: the LightningModule's keys and shapes,
    # AdamW's state keyed by parameter index, with the single-device groups (decay on matrices)
    checkpoint = read_checkpoint(run / "checkpoints" / "last.ckpt")
    single = LitGPT(model=checkpoint["hyper_parameters"]["model"], optim=checkpoint["hyper_parameters"]["optim"])
    assert {k: v.shape for k, v in checkpoint["state_dict"].items()} == {
        k: v.shape for k, v in single.state_dict().items()
    }
    decay, no_decay = checkpoint["optimizer_states"][0]["param_groups"]
    assert len(decay["params"]) == 7 and len(no_decay["params"]) == 12  # embedding + 6 block matrices
    model, _ = model_from_checkpoint(checkpoint)
    total = model.num_parameters()
    summary = (run / "model_summary.txt").read_text()  # counted whole, though each rank holds half
    assert "blocks.0.attn" in summary and f"total {total:,} parameters" in summary

    # eval (one process, the whole checkpoint) gives the figures the two ranks computed on it; export, generate
    logged = json.loads((run / "metrics.json").read_text())["metrics"]
    figures = evaluate(
        compose_tool("eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.accelerator=cpu")
    )
    assert figures["loss"] == pytest.approx(logged["val/loss"], rel=1e-6)
    loaded, _ = attnlab.load(export(run, tmp_path / "export"))
    text = io.StringIO()
    generate_text(compose_tool("generate", f"ckpt_path={run}", f"prompt='{PROMPT}'", "max_new_tokens=5"), out=text)
    assert loaded.num_parameters() == total and text.getvalue().startswith(PROMPT)

    # resumed from step 4 (best.ckpt: val/loss rose after it), each rank reading the full checkpoint
    # (weights_only) and keeping its shard, it ends as the uninterrupted run did, to the last bit
    assert read_checkpoint(run / "checkpoints" / "best.ckpt")["global_step"] == 4
    resumed = run_train(f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert "(6 steps" in resumed.stdout and len(record["launches"]) == 2
    for key in ("train/loss", "train/grad_norm", "val/loss"):
        assert record["metrics"][key] == logged[key], key


@pytest.mark.slow
def test_fsdp_trains_as_ddp_does_clipping_by_the_global_norm(tmp_path):
    """Same seed, same batches per rank: FSDP's sharded steps equal DDP's, with the gradients
    clipped (the norm over both ranks' shards, ~0.6, against a limit of 0.05) and AdamW's groups."""
    runs = {}
    for name in ("fsdp_cpu", "ddp_cpu"):
        run = tmp_path / name
        overrides = [*TINY, "trainer.gradient_clip_val=0.05", "~callbacks.attention", "~callbacks.samples"]
        result = run_train(f"trainer={name}", *overrides, "~callbacks.heads", f"hydra.run.dir={run}")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = json.loads((run / "metrics.json").read_text())["metrics"], read_checkpoint(run)
    (fsdp, fsdp_checkpoint), (ddp, ddp_checkpoint) = runs["fsdp_cpu"], runs["ddp_cpu"]
    assert fsdp["train/grad_norm"] > 0.05  # clipping was active
    for key in ("train/loss", "train/grad_norm", "val/loss", "val/bpb"):
        assert fsdp[key] == pytest.approx(ddp[key], rel=1e-5), key
    # the same weights, and AdamW's state under the same parameter indices and groups as DDP's (one device's)
    torch.testing.assert_close(fsdp_checkpoint["state_dict"], ddp_checkpoint["state_dict"], rtol=1e-5, atol=1e-6)
    fsdp_adamw, ddp_adamw = fsdp_checkpoint["optimizer_states"][0], ddp_checkpoint["optimizer_states"][0]
    assert [g["params"] for g in fsdp_adamw["param_groups"]] == [g["params"] for g in ddp_adamw["param_groups"]]
    torch.testing.assert_close(fsdp_adamw["state"], ddp_adamw["state"], rtol=1e-4, atol=1e-9)
