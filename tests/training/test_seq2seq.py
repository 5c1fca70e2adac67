"""The encoder–decoder through the same train(): `python train.py model=transformer data=dates`."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import attnlab.runs.resume
from attnlab.errors import CheckpointError, ConfigError
from attnlab.runs.checkpoint import model_from_checkpoint, read_checkpoint
from attnlab.training.preemption import Preempted
from attnlab.training.task import is_seq2seq, train
from tests.conftest import ROOT
from tests.training.test_preemption import SignalAtStep

TINY = [  # a dates run in seconds
    "model=transformer",
    "data=dates",
    "data.num_pairs=400",
    "data.batch_size=16",
    "model.d_model=32",
    "model.dropout=0.1",  # resumed runs must draw the same dropout masks
    "model.num_heads=2",
    "model.num_encoder_layers=1",
    "model.num_decoder_layers=1",
    "optim.warmup_steps=2",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
]


def configured(run, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"paths.root={ROOT}", f"paths.output_dir={run}", *TINY, *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("seq2seq") / "run"
    return run, train(configured(run))


def test_the_encoder_decoder_trains_and_logs_its_metrics(trained):
    run, metrics = trained
    assert metrics["steps"] == 6
    for key in ("val/loss", "val/ppl", "val/token_accuracy", "val/exact_match", "val/chrf", "val/bleu"):
        assert key in metrics, key
    for key in ("val/token_accuracy", "val/exact_match", "val/chrf", "val/bleu"):
        assert 0.0 <= metrics[key] <= 1.0
    summary = (run / "model_summary.txt").read_text()
    assert "decoder.0.cross_attn" in summary and "encoder.0.self_attn" in summary


def test_tensorboard_gets_the_three_attentions_of_every_layer_and_the_translations(trained):
    run, _ = trained
    events = EventAccumulator(
        str(next((run / "tensorboard").glob("events.*"))), size_guidance={"images": 0, "tensors": 0}
    )
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"attention/encoder_layer_0", "attention/decoder_layer_0", "attention/cross_layer_0"} <= images
    assert [e.step for e in events.Images("attention/cross_layer_0")] == [
        2,
        5,
    ]  # logged_step: Lightning's step of val/*
    text = events.Tensors("translations")[-1].tensor_proto.string_val[0].decode()
    assert text.startswith("| source | reference | output | exact |")
    assert text.count("\n") == 2 + 8 - 1  # the header, its rule, and 8 val pairs


def test_the_checkpoint_is_an_encoder_decoders_and_gpt_tools_refuse_it_in_one_line(trained):
    run, _ = trained
    checkpoint = read_checkpoint(run)
    assert checkpoint["hyper_parameters"]["model"]["architecture"] == "transformer"
    assert "beam_size" not in checkpoint["hyper_parameters"]["model"]  # a runtime option, not saved
    assert checkpoint["tokenizer"]["kind"] == "seq2seq"
    with pytest.raises(CheckpointError, match=r"encoder–decoder \(model=transformer\).*GPT checkpoints only") as err:
        model_from_checkpoint(checkpoint)
    assert "\n" not in str(err.value)


def test_a_preempted_run_resumes_exactly(trained, tmp_path, monkeypatch):
    """SIGTERM at step 2 saves last.ckpt after step 3; the resume's steps 4-6 (its bucketed batches,
    dropout draws, LR schedule) equal the uninterrupted run's: the same val figures at step 6."""
    _, uninterrupted = trained
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run = tmp_path / "run"
    cfg = configured(run, "~logger")
    with open_dict(cfg):
        cfg.callbacks.signal_at_step = {"_target_": f"{SignalAtStep.__module__}.SignalAtStep", "step": 2, "signum": 15}
    with pytest.raises(Preempted, match="at step 3"):
        train(cfg)
    monkeypatch.setattr(attnlab.runs.resume, "command_line_keys", lambda: ["resume"])
    resumed = train(configured(run, "~logger", f"resume={run}"))
    assert resumed["steps"] == 6
    for key in ("val/loss", "val/token_accuracy", "val/exact_match"):
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-5), key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=transformer", "data=shakespeare"], r"model=transformer .* trains on source/target pairs.*data=dates"),
        (["data=dates"], r"holds source/target pairs, which the GPT does not train on; add model=transformer"),
    ],
)
def test_a_model_and_data_that_do_not_go_together_are_one_line(overrides, message, tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={ROOT}", f"paths.output_dir={tmp_path}", *overrides])
    with pytest.raises(ConfigError, match=message) as err:
        is_seq2seq(cfg)
    assert "\n" not in str(err.value)


def test_a_bleu_and_chrf_of_exact_outputs_are_one():
    from attnlab.training.metrics import Seq2SeqMetrics

    metrics = Seq2SeqMetrics()
    metrics.update(
        torch.tensor(2.0), torch.tensor(4), torch.tensor(3), ["2021-03-03", "1999-12-31"], ["2021-03-03", "1999-12-31"]
    )
    m = metrics.compute()
    assert m["exact_match"] == 1.0 and m["chrf"] == pytest.approx(1.0) and m["bleu"] == pytest.approx(1.0)
    assert m["token_accuracy"] == 0.75 and m["loss"] == pytest.approx(0.5)
    metrics.reset()
    metrics.update(torch.tensor(1.0), torch.tensor(1), torch.tensor(0), ["2021-03-04"], ["2021-03-03"])
    assert metrics.compute()["exact_match"] == 0.0  # the reset emptied every state, chrF's and BLEU's too


def generate_settings(**values):
    from omegaconf import OmegaConf

    base = OmegaConf.load(ROOT / "conf" / "generate.yaml")
    base.pop("defaults"), base.pop("hydra")
    return OmegaConf.merge(base, values)


def test_generate_translates_sources_with_greedy_and_beam_search(trained, tmp_path):
    import io

    from attnlab.tools.generate import generate_text

    run, _ = trained
    sources = tmp_path / "sources.txt"
    sources.write_text("3rd of March 2021\n\n12/03/21\n", encoding="utf-8")
    for beam_size in (1, 3):
        out, err = io.StringIO(), io.StringIO()
        result = generate_text(
            generate_settings(ckpt_path=str(run), source_file=str(sources), beam_size=beam_size), out=out, err=err
        )
        assert len(result["outputs"]) == 2 and out.getvalue().splitlines() == result["outputs"]  # blank lines skipped
        assert "2 source(s) in" in err.getvalue()
    with pytest.raises(ConfigError, match=r"holds an encoder–decoder: give it source="):
        generate_text(generate_settings(ckpt_path=str(run)))
    with pytest.raises(ConfigError, match=r"source 1 has \d+ tokens, more than the model's src_context_length=40"):
        generate_text(generate_settings(ckpt_path=str(run), source="1" * 41))
    gpt = ROOT / "tests" / "fixtures" / "checkpoint-0.1.0.ckpt"
    with pytest.raises(ConfigError, match=r"holds a GPT, which continues a prompt: give prompt="):
        generate_text(generate_settings(ckpt_path=str(gpt), source="3rd of March 2021"))
