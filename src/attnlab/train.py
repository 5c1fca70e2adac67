"""The training task: a composed Hydra config in, a trained model and its metrics out.

``train.py`` at the repository root is the thin Hydra entry point that calls :func:`train`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from omegaconf import DictConfig, OmegaConf

from attnlab.callbacks import ValidateAtEnd
from attnlab.cli import tidy_output
from attnlab.data import TextDataModule
from attnlab.distributed import use_rank_command
from attnlab.hardware import check_devices
from attnlab.lit_module import LitGPT
from attnlab.observe import RunRecord, flat_hparams
from attnlab.model import ModelConfig
from attnlab.optim import OptimConfig
from attnlab.runtime import keep_freed_memory

log = logging.getLogger(__name__)


def _container(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def build_datamodule(cfg: DictConfig) -> TextDataModule:
    data = _container(cfg.data)
    return TextDataModule(**data, seed=cfg.seed, data_dir=cfg.paths.data_dir)


def validate_config(cfg: DictConfig) -> None:
    """Fail in the first second on values that would fail later (vocab_size is not known yet)."""
    ModelConfig.from_dict({**_container(cfg.model), "vocab_size": 1})
    OptimConfig.from_dict(_container(cfg.optim))
    check_devices(_container(cfg.trainer))


def train(cfg: DictConfig) -> dict[str, float]:
    """Train as ``cfg`` says; return the final metrics (``val/loss``, ``val/bpb``, ...)."""
    started = time.perf_counter()
    tidy_output()
    validate_config(cfg)
    if cfg.get("system", {}).get("keep_freed_memory", False):
        keep_freed_memory()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")  # prepares the data too; the model's vocab_size comes from it
    module = LitGPT(
        model={**_container(cfg.model), "vocab_size": datamodule.vocab_size},
        optim=_container(cfg.optim),
        tokenizer=datamodule.tokenizer,
    )
    trainer_args = _container(cfg.trainer)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not trainer_args.get("enable_progress_bar", True):  # the bar callback would contradict it
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBarBase)]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    callbacks += [ValidateAtEnd(), RunRecord(output_dir, flat_hparams(cfg))]
    use_rank_command()  # DDP ranks > 0 re-run this job in this folder (attnlab.distributed)
    trainer = L.Trainer(**trainer_args, callbacks=callbacks,
                        logger=loggers or False, default_root_dir=str(output_dir))

    if trainer.is_global_zero:
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    log.info("run folder %s", output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["model/num_parameters"] = module.model.num_parameters()
    metrics["steps"] = trainer.global_step
    metrics["seconds"] = time.perf_counter() - started
    if trainer.is_global_zero:
        print(final_line(output_dir, metrics), flush=True)
    return metrics


def final_line(output_dir: Path, metrics: dict[str, float]) -> str:
    try:
        shown = output_dir.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = output_dir
    minutes, seconds = divmod(int(metrics.get("seconds", 0)), 60)
    figures = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("val/loss", "val/bpb") if k in metrics)
    return f"run {shown}  {figures}  ({metrics.get('steps', 0)} steps, {minutes}m{seconds:02d}s)"
