"""Every config option composes, and what it names can be built."""

import pytest
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from attnlab.training.callbacks import LastCheckpoint
from attnlab.training.task import validate_config


@pytest.mark.parametrize("data", ["shakespeare", "seed_sample"])
@pytest.mark.parametrize("logger, logger_cls", [("tensorboard", TensorBoardLogger), ("csv", CSVLogger)])
def test_groups_compose_and_instantiate(compose, data, logger, logger_cls):
    cfg = compose(f"data={data}", f"logger={logger}")
    validate_config(cfg)
    assert cfg.model.context_length == cfg.data.context_length  # one home, read by interpolation
    loggers = [instantiate(c) for c in cfg.logger.values()]
    assert [type(lg) for lg in loggers] == [logger_cls]
    callbacks = {name: instantiate(c) for name, c in cfg.callbacks.items()}
    best, last = callbacks["best_checkpoint"], callbacks["last_checkpoint"]
    assert isinstance(best, ModelCheckpoint) and best.monitor == "val/loss"
    assert isinstance(last, LastCheckpoint) and last.every_n_train_steps > 0
    assert str(last.path.parent) == best.dirpath and best.dirpath.endswith("run/checkpoints")


def test_context_length_override_reaches_model(compose):
    cfg = compose("data.context_length=128")
    assert cfg.model.context_length == 128
