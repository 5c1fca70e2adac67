"""The run's hyperparameters for TensorBoard's HPARAMS tab."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

HPARAM_METRICS = ("val/loss", "val/bpb", "val/ppl", "model/num_parameters", "train/tokens_per_sec")
_HPARAM_SECTIONS = ("model", "data", "optim", "trainer", "seed")
_SKIPPED = ("data.cache_dir", "data.data_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary")


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters as ``{"model.d_model": 128, ...}``: numbers, strings and booleans
    (what TensorBoard's HParams dashboard can show); lists and nulls become strings."""

    def walk(prefix: str, node: Any, out: dict[str, Any]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, out)
        elif prefix not in _SKIPPED:
            out[prefix] = node if isinstance(node, (bool, int, float, str)) else str(node)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {}
    for section in _HPARAM_SECTIONS:
        if section in resolved:
            walk(section, resolved[section], out)
    return out


def log_hparams(trainer: L.Trainer, hparams: dict[str, Any], num_parameters: int) -> None:
    """Record the run in TensorBoard's HPARAMS tab. Its metric columns read the last value of the
    named scalar tags, so the final ``val/loss`` and ``val/bpb`` appear as the run goes on."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        logger.hparams.update(hparams)  # also saved as <run>/tensorboard/hparams.yaml
        writer = logger.experiment
        experiment, start, end = hparams_summary(hparams, dict.fromkeys(HPARAM_METRICS, 0.0))
        file_writer = writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        writer.add_scalar("model/num_parameters", num_parameters, 0)
