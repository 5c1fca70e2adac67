"""`model.compile=true`: a runtime switch. The run trains through torch.compile; its checkpoints are
those of an uncompiled run (same keys, no `compile` hyperparameter), so they load, resume and
evaluate with either setting."""

import pytest
import torch

import attnlab.runs.resume
from attnlab.errors import ConfigError
from attnlab.runs.checkpoint import load_model, safe_load
from attnlab.training.lit_gpt import LitGPT
from attnlab.training.task import train

TINY = [
    "debug=tiny",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "~logger",
    "~callbacks.attention",
    "~callbacks.samples",
]


@pytest.mark.slow
def test_a_compiled_run_trains_and_its_checkpoint_loads_uncompiled(tmp_path, compose, monkeypatch):
    run, reference = tmp_path / "run", tmp_path / "eager"
    metrics = train(compose(*TINY, "model.compile=true", f"paths.output_dir={run}"))
    assert metrics["steps"] == 3 and torch.isfinite(torch.tensor(metrics["val/loss"]))
    expected = train(compose(*TINY, f"paths.output_dir={reference}"))  # the same run, uncompiled
    assert metrics["val/loss"] == pytest.approx(expected["val/loss"], abs=1e-4)

    checkpoint = safe_load(run / "checkpoints" / "last.ckpt")
    assert "compile" not in checkpoint["hyper_parameters"]["model"]  # not part of the architecture
    assert not any("_orig_mod" in key for key in checkpoint["state_dict"])  # no wrapper module's keys
    eager = LitGPT(model={**checkpoint["hyper_parameters"]["model"], "compile": False})
    assert set(eager.state_dict()) == set(checkpoint["state_dict"])

    model, tokenizer = load_model(run)  # as generate / eval / export / attend load it: uncompiled
    eager_model, _ = load_model(reference)
    ids = torch.arange(16).view(1, 16) % tokenizer.vocab_size  # (1, T)
    with torch.no_grad():
        # compiled training computed what eager training computes (up to kernel rounding)
        torch.testing.assert_close(model(ids), eager_model(ids), atol=1e-4, rtol=1e-4)  # (1, T, V)
        _, weights = model(ids, impl="explicit", return_attention=True)  # the probe's path still works
    assert weights[0].shape == (1, 2, 16, 16)

    # resumed with the other setting: the same model, accepted
    later = compose("trainer.max_steps=4", "model.compile=false", f"resume={run}")
    monkeypatch.setattr(
        attnlab.runs.resume, "command_line_keys", lambda: ["trainer.max_steps", "model.compile", "resume"]
    )
    assert train(later)["steps"] == 4
    assert (run / "config.yaml").read_text().count("compile: false") == 1


def test_model_compile_must_be_a_boolean(compose):
    with pytest.raises(ConfigError, match=r"model.compile must be true or false, got 'yes'"):
        train(compose(*TINY, "model.compile=yes"))
