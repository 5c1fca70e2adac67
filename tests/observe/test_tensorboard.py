"""What a run's TensorBoard opens on: the CUSTOM SCALARS layout, SCALARS without ``epoch``, the
HPARAMS columns, the TEXT samples and the attention maps' key and scale."""

from __future__ import annotations

import re

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar.layout_pb2 import Layout

from attnlab.observe.tensorboard import CHARTS
from tests.conftest import ROOT

OVERRIDES = ["debug=tiny", "optim.lr=0.003", "model.bias=false"]  # as Hydra records a command line


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A `python train.py debug=tiny optim.lr=0.003 model.bias=false` run, trained in process."""
    from hydra import compose, initialize_config_dir

    from attnlab.training.task import train

    tmp = tmp_path_factory.mktemp("tensorboard")
    run = tmp / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(OVERRIDES))  # what Hydra writes at launch
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"paths.root={ROOT}", f"paths.output_dir={run}", f"data.cache_dir={tmp / 'cache'}", *OVERRIDES],
        )
    train(cfg)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return run, events


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
