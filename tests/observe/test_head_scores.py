"""The `heads` callback: per-head scores on fixed inputs, logged at each validation."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnlab.data.datamodule import TextDataModule
from attnlab.errors import ConfigError, DataError
from attnlab.model import GPT, ModelConfig
from attnlab.observe.head_scores import IN_CONTEXT, HeadScores, head_probe, measure, spread_windows
from attnlab.observe.heads import SCORES
from attnlab.training.lit_gpt import LitGPT


def test_windows_sit_at_the_same_evenly_spaced_offsets():
    ids = np.arange(100)
    windows = spread_windows(ids, 10, 4)  # offsets 0, 30, 60, 90: the last window ends at the split's end
    assert windows.shape == (4, 10) and windows[:, 0].tolist() == [0, 30, 60, 90] and windows[-1, -1] == 99
    assert torch.equal(spread_windows(ids, 10, 4), windows)
    assert spread_windows(np.arange(12), 10, 8)[:, 0].tolist() == [0, 1, 2]  # a short split: fewer, all distinct


def test_probe_of_the_seed_samples_short_split():
    probe = head_probe(np.arange(21), context_length=16, vocab_size=58, batch_size=8, in_context_windows=32, seed=0)
    assert probe.text.shape == (6, 16)  # as many as 21 tokens hold
    assert probe.spans.shape == (1, 16 + 1 + 14)  # one window pair, the split repeated to fill it
    assert probe.repeated.shape == (8, 16) and torch.equal(probe.repeated[:, :8], probe.repeated[:, 8:])
    assert int(probe.repeated.max()) < 58
    assert torch.equal(head_probe(np.arange(21), 16, 58, 8, 32, seed=0).repeated, probe.repeated)  # seeded
    with pytest.raises(DataError, match="need at least 17 tokens"):
        head_probe(np.arange(16), 16, 58, 8, 32, seed=0)


def test_window_counts_below_one_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^callbacks.heads.in_context_windows=0 is a number of windows; set it"):
        HeadScores(in_context_windows=0)


@pytest.mark.parametrize("mlp", [True, False])
def test_scores_are_the_same_on_both_attention_paths_and_fp32_under_bf16_autocast(mlp):
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, context_length=16, d_model=32, num_heads=2, num_layers=2, mlp=mlp)
    explicit = GPT(ModelConfig(**cfg, attention="explicit"))
    fused = GPT(ModelConfig(**cfg, attention="sdpa"))
    fused.load_state_dict(explicit.state_dict())
    probe = head_probe(np.random.default_rng(0).integers(0, 40, 400), 16, 40, 4, 10, seed=0)

    scores, in_context = measure(explicit, probe)
    assert set(scores) == set(SCORES) and all(v.shape == (2, 2) and v.dtype == torch.float32 for v in scores.values())
    fused_scores, fused_in_context = measure(fused, probe)  # the pattern hook takes the explicit path itself
    for name in SCORES:
        torch.testing.assert_close(fused_scores[name], scores[name], atol=1e-5, rtol=1e-5)
    assert fused_in_context == pytest.approx(in_context, abs=1e-4)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, low_in_context = measure(fused, probe)
    for name in SCORES:
        assert low[name].dtype == torch.float32
        torch.testing.assert_close(low[name], scores[name], atol=0.05 * max(1.0, float(scores[name].max())), rtol=0.05)
    assert low_in_context == pytest.approx(in_context, abs=0.1)


def test_a_validation_logs_every_heads_scalar_and_image_and_the_sweep_figures(compose, tmp_path):
    cfg = compose("debug=tiny", "model.num_layers=2")
    datamodule = TextDataModule.from_config(cfg)
    datamodule.setup("fit")
    module = LitGPT(model={**cfg.model, "vocab_size": datamodule.vocab_size}, tokenizer=datamodule.tokenizer)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="bf16-mixed",  # the run's autocast is applied; the scores stay fp32
        logger=TensorBoardLogger(tmp_path, name="tensorboard", version=""),
        callbacks=[HeadScores()],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    expected = {f"heads/{s}/layer_{i}/head_{j}" for s in SCORES for i in range(2) for j in range(2)} | {IN_CONTEXT}
    assert {t for t in events.Tags()["scalars"] if t.startswith("heads/")} == expected
    assert sorted(events.Tags()["images"]) == sorted(f"heads/{s}" for s in SCORES)
    assert [e.step for e in events.Scalars("heads/induction/layer_1/head_0")] == [0]
    assert all(0.0 <= events.Scalars(f"heads/prev_token/layer_{i}/head_0")[0].value <= 1.0 for i in range(2))

    figures = trainer.callback_metrics  # what metrics.json gets at the end of a run
    assert {"heads/max/induction", "heads/max/prev_token", "heads/mean_entropy/layer_1", IN_CONTEXT} <= set(figures)
    assert all(isinstance(figures[k], torch.Tensor) and figures[k].numel() == 1 for k in figures)
    assert float(figures[IN_CONTEXT]) == pytest.approx(events.Scalars(IN_CONTEXT)[0].value, abs=1e-6)
    top = max(events.Scalars(f"heads/induction/layer_{i}/head_{j}")[0].value for i in range(2) for j in range(2))
    assert float(figures["heads/max/induction"]) == pytest.approx(top, abs=1e-6)


@pytest.mark.slow
def test_training_measures_at_every_n_steps_and_each_validation_once_but_not_in_the_sanity_check(compose, tmp_path):
    from attnlab.training.task import train

    run = tmp_path / "run"  # the compose fixture's paths.output_dir
    train(
        compose(
            "debug=tiny",
            "trainer.max_steps=4",
            "trainer.num_sanity_val_steps=1",
            "callbacks.heads.every_n_steps=2",
            "model.mlp=false",
        )
    )
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    # every 2 steps (filed under steps 1, 3), the validation after step 4 (step 3: the same weights, not again)
    assert [e.step for e in events.Scalars(IN_CONTEXT)] == [1, 3]
