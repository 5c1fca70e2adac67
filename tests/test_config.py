"""Every config option composes, and what it names can be built."""

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from attnlab.observe.tensorboard import TensorBoard
from attnlab.training.callbacks import LastCheckpoint
from attnlab.training.task import validate_config
from tests.conftest import run_train


@pytest.mark.parametrize("data", ["shakespeare", "seed_sample"])
@pytest.mark.parametrize("logger, logger_cls", [("tensorboard", TensorBoard), ("csv", CSVLogger)])
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


def test_each_optimizer_has_its_own_keys_and_builds(compose):
    from attnlab.model import GPT, ModelConfig
    from attnlab.training.optim import MuonWithAdamW, OptimConfig, build_optimizer

    adamw, muon = compose().optim, compose("optim=muon").optim
    assert adamw.name == "adamw" and "muon_lr" not in adamw
    assert muon.name == "muon" and {"muon_lr", "muon_momentum"} <= set(muon)
    assert {k: muon[k] for k in adamw if k != "name"} == {k: adamw[k] for k in adamw if k != "name"}  # AdamW's part
    model = GPT(ModelConfig(vocab_size=10, d_model=16, num_heads=2, num_layers=1))
    assert isinstance(build_optimizer(model, OptimConfig.from_dict(dict(adamw))), torch.optim.AdamW)
    assert isinstance(build_optimizer(model, OptimConfig.from_dict(dict(muon))), MuonWithAdamW)
    assert compose("experiment=speedrun_cpu").optim.name == "muon"
    assert compose("experiment=speedrun_cpu", "optim=adamw").optim.name == "adamw"  # the ablation's row


def test_the_debug_preset_is_a_tiny_smoke_run(compose):
    cfg = compose("debug=tiny")
    validate_config(cfg)
    assert cfg.data.path.endswith("trans_instance.txt") and cfg.trainer.max_steps == 6
    assert (cfg.model.d_model, cfg.model.num_heads, cfg.model.num_layers) == (32, 2, 1)
    assert compose("debug=tiny", "model.d_model=64").model.d_model == 64  # still overridable


def test_paths_are_a_group(compose):
    from tests.conftest import ROOT

    cfg = compose()
    assert cfg.paths.root == str(ROOT) and cfg.paths.data_dir == f"{ROOT}/data"


@pytest.mark.slow
def test_cfg_job_resolve_prints_the_values_a_run_gets():
    """The docs' `python train.py --cfg job --resolve`: no interpolation left (precision, paths)."""
    raw = run_train("--cfg", "job", "debug=tiny")
    resolved = run_train("--cfg", "job", "--resolve", "debug=tiny")
    assert raw.returncode == 0 and resolved.returncode == 0, resolved.stderr
    assert "${attnlab.precision:" in raw.stdout
    assert "${" not in resolved.stdout and "precision: " in resolved.stdout
