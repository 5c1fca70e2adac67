"""What a run's TensorBoard opens on: the CUSTOM SCALARS layout, SCALARS without ``epoch``, the
HPARAMS columns, the TEXT samples and the attention maps' key and scale (the run: conftest.tiny_run)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.plugin_util import markdown_to_safe_html
from tensorboard.plugins.custom_scalar.layout_pb2 import Layout
from tensorboard.plugins.hparams.api_pb2 import DataType
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from attnlab.errors import ConfigError
from attnlab.observe.attention_maps import draw_maps, token_key
from attnlab.observe.hparams import run_hparams
from attnlab.observe.samples import continuation_markdown
from attnlab.observe.tensorboard import CHARTS, AttentionMaps


def test_custom_scalars_put_train_and_val_loss_on_one_chart_with_the_runs_own_tags(tiny_run):
    _, events = tiny_run
    (config,) = events.Tensors("custom_scalars__config__")  # written once
    layout = Layout.FromString(config.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    scalars = events.Tags()["scalars"]

    def matched(regexes):  # the plugin matches each regex against the run's tags
        return sorted(t for t in scalars if any(re.match(r, t) for r in regexes))

    assert matched(charts["loss (train and val)"]) == ["train/loss", "val/loss"]
    for title, tags in CHARTS["run"].items():
        assert matched(charts[title]) == sorted(tags)  # every chart finds its tags, and only them
    assert {"val/bpb", "lr", "train/grad_norm", "train/tokens_per_sec"} <= {
        t for ts in CHARTS["run"].values() for t in ts
    }


def test_no_epoch_scalar_and_checkpoints_still_monitor_val_loss(tiny_run):
    run, events = tiny_run
    scalars = events.Tags()["scalars"]
    assert "epoch" not in scalars and "val/loss" in scalars
    assert (run / "checkpoints" / "best.ckpt").is_file()  # ModelCheckpoint(monitor="val/loss") still saves


def test_hparams_columns_are_the_command_line_then_the_experiments_shape(tiny_run):
    _, events = tiny_run
    content = events.PluginTagToContent("hparams")
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    infos = {h.name: h for h in experiment.hparam_infos}
    assert [h.name for h in experiment.hparam_infos if h.differs] == ["debug", "optim.lr", "model.bias"]
    assert {"model.d_model", "model.num_heads", "model.num_layers", "data.context_length", "data.batch_size"} <= set(
        infos
    )
    assert {"data.tokenizer.kind", "seed"} <= set(infos) and "trainer.max_steps" not in infos
    # TensorBoard's order (differs first, then by name) and the HPARAMS table's first five shown
    shown = sorted(infos.values(), key=lambda h: (not h.differs, h.name))[:5]
    assert [h.name for h in shown] == ["debug", "model.bias", "optim.lr", "data.batch_size", "data.context_length"]
    assert infos["model.bias"].type == DataType.DATA_TYPE_STRING
    assert all(h.type != DataType.DATA_TYPE_BOOL for h in experiment.hparam_infos)

    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert start["model.bias"].string_value == "false" and start["model.mlp"].string_value == "true"  # not 0.0/1.0
    assert start["optim.betas"].string_value == "[0.9, 0.95]" and start["debug"].string_value == "tiny"
    assert start["optim.lr"].number_value == 0.003 and start["model.num_layers"].number_value == 1


def test_run_hparams_columns_from_each_kind_of_override():
    cfg = OmegaConf.create(
        {"model": {"d_model": 64, "num_layers": 2}, "data": {"path": "x", "cache_dir": "c"}, "seed": 1, "resume": None}
    )
    overrides = ["model.num_layers=2", "data=seed_sample", "debug=tiny", "data.cache_dir=/c", "resume=/r"]
    hparams, columns = run_hparams(cfg, [*overrides, "hydra.run.dir=/y", "~callbacks.heads", "paths.root=/p"])
    assert columns == [
        ("model.num_layers", True),
        ("data", True),
        ("debug", True),
        ("model.d_model", False),
        ("seed", False),
    ]
    assert hparams["data"] == "seed_sample" and hparams["debug"] == "tiny"
    assert not {"resume", "data.cache_dir", "paths.root", "hydra.run.dir", "callbacks.heads"} & set(hparams)


def test_samples_are_filed_as_samples_with_the_prompt_in_bold(tiny_run):
    _, events = tiny_run
    assert "samples" in events.Tags()["tensors"] and "samples/text_summary" not in events.Tags()["tensors"]
    samples = events.Tensors("samples")
    assert [e.step for e in samples] == [3, 5]
    text = samples[-1].tensor_proto.string_val[0].decode()
    assert text.startswith("**greedy**\n\n**") and "**sampled (temperature 0.8" in text
    assert markdown_to_safe_html(text).count("<strong>") >= 4  # two headings, and the prompt of each sample


def test_sample_markdown_shows_the_text_as_typed():
    markdown = continuation_markdown("First *Citizen*:\n# Be", "fore  we <b>go</b> | x_1\n\n- 2. on\\")
    html = markdown_to_safe_html(markdown)
    assert html == (
        "<p><strong>First *Citizen*:</strong><br>\n"
        "<strong># Be</strong>fore&nbsp; we &lt;b&gt;go&lt;/b&gt; | x_1<br>\n"
        "&nbsp;<br>\n"
        "- 2. on\\</p>"
    )


def test_token_key_lists_every_position_in_lines_that_fit():
    labels = [f"t{i}" for i in range(40)]
    lines = token_key(labels, width=30)
    assert all(len(line) <= 30 for line in lines) and lines[0].startswith("0: t0   1: t1")
    entries = [e for line in lines for e in line.split("   ")]
    assert entries == [f"{i}: t{i}" for i in range(40)]
    assert token_key(["a-very-long-token"], width=5) == ["0: a-very-long-token"]


def test_maps_beyond_32_tokens_carry_a_key_and_name_their_scale():
    T = 40
    weights = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]  # (T, T) uniform causal rows
    plain = draw_maps([("mean", weights)], None, "t", None)
    keyed = draw_maps([("mean", weights)], None, "t", None, key=[f"tok{i}" for i in range(T)])
    assert keyed.shape[1] == plain.shape[1] and keyed.shape[0] > plain.shape[0]  # the key, below the map
    sqrt = draw_maps([("mean", weights)], None, "t", None, scale="sqrt")
    assert sqrt.shape == plain.shape and not np.array_equal(sqrt, plain)
    with pytest.raises(ValueError, match="scale='log'"):
        draw_maps([("mean", weights)], None, "t", None, scale="log")
    with pytest.raises(ConfigError, match=r"^callbacks.attention.scale=log: set it to one of linear, sqrt"):
        AttentionMaps(scale="log")


def test_attention_images_switch_to_a_key_past_32_tokens(monkeypatch):
    from attnlab.data.tokenizer import TiktokenTokenizer
    from attnlab.model import GPT, ModelConfig
    from attnlab.observe import attention_maps

    tok = TiktokenTokenizer()
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=48, d_model=16, num_heads=2, num_layers=1))
    drawn = []
    monkeypatch.setattr(
        attention_maps, "draw_maps", lambda panels, labels, title, note, key, scale: drawn.append((labels, key))
    )
    attention_maps.attention_images(model, tok, torch.arange(33))
    attention_maps.attention_images(model, tok, torch.arange(32))
    (labels33, key33), _, (labels32, key32), _ = drawn  # the heads grid and the mean of each call
    assert labels33 is None and len(key33) == 33 and len(labels32) == 32 and key32 is None
