"""The tiny run the observe tests read: trained once for the package (TensorBoard's tabs, the
explorer's side data, its plugin and pages)."""

from __future__ import annotations

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ROOT

OVERRIDES = ["debug=tiny", "optim.lr=0.003", "model.bias=false"]  # as Hydra records a command line


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory):
    """A `python train.py debug=tiny optim.lr=0.003 model.bias=false` run, trained in process:
    ``(run folder, its events)``."""
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
