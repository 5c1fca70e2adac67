"""The training task: a composed Hydra config in, a trained model and its metrics out.

Read as a recipe: resume? -> check the config -> lock the run folder -> data -> model (the GPT on
text, or the encoder–decoder on pairs) -> room for
the checkpoints? -> trainer with the callbacks and loggers of conf/ -> fit -> the final line.
``train.py`` at the repository root runs it as one job (:func:`attnlab.sweeps.job.run_job`)
through :func:`attnlab.cli.run_hydra_app`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from omegaconf import DictConfig, OmegaConf

from attnlab.data.corpus import check_text_path
from attnlab.data.datamodule import DataConfig, TextDataModule
from attnlab.data.pairs import check_pairs_path
from attnlab.data.seq2seq import Seq2SeqDataConfig, Seq2SeqDataModule
from attnlab.errors import ConfigError
from attnlab.model import ModelConfig, TransformerConfig
from attnlab.model.config import architecture_of
from attnlab.runs import layout
from attnlab.runs.atomic import atomic_write_text
from attnlab.runs.checkpoint import check_room_for_checkpoints, require_same_model, safe_load
from attnlab.runs.lock import hold_run_folder, run_folder_lock
from attnlab.runs.resume import resume_config
from attnlab.runs.storage import check_writable, writes_into
from attnlab.system.console import shown_path, tidy_output
from attnlab.system.distributed import use_rank_command
from attnlab.system.hardware import check_devices
from attnlab.system.memory import keep_freed_memory
from attnlab.training.lit_base import LitBase
from attnlab.training.lit_gpt import LitGPT, split_runtime_options
from attnlab.training.lit_seq2seq import LitSeq2Seq, split_seq2seq_options
from attnlab.training.optim import OptimConfig
from attnlab.training.safe_io import SafeCheckpointIO

log = logging.getLogger(__name__)


def _container(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def is_seq2seq(cfg: DictConfig) -> bool:
    """Whether the run trains the encoder–decoder on pairs (model=transformer) rather than the GPT
    on text; one line when the model and the data do not go together."""
    model, data = _container(cfg.model), _container(cfg.data)
    seq2seq, pairs = architecture_of(model) == "transformer", data.get("kind") == "pairs"
    if seq2seq and not pairs:
        raise ConfigError(
            "model=transformer (the encoder–decoder) trains on source/target pairs, not on a text corpus; "
            "add data=dates, or data=pairs data.path=<pairs.tsv or .jsonl>"
        )
    if pairs and not seq2seq:
        raise ConfigError(
            f"data {data.get('name') or data.get('builtin') or data.get('path')!r} holds source/target pairs, which "
            f"the GPT does not train on; add model=transformer, or choose a text corpus (data=shakespeare)"
        )
    return seq2seq


def validate_config(cfg: DictConfig) -> None:
    """Fail in the first second on values that would fail later (vocab_size is not known yet)."""
    validate_settings(cfg)
    data = _container(cfg.data)
    if data.get("path") is not None:  # the data's file or folder is there, in a format attnlab reads
        (check_pairs_path if is_seq2seq(cfg) else check_text_path)(data["path"])
    check_devices(_container(cfg.trainer))


def validate_settings(cfg: DictConfig) -> None:
    """The values of model.*, optim.* and data.*, checked (:func:`validate_config` without the
    files and devices, which the docs' examples name but this machine need not have)."""
    OptimConfig.from_dict(_container(cfg.optim))
    if is_seq2seq(cfg):
        model, _ = split_seq2seq_options(_container(cfg.model))  # compile, beam_size: runtime switches
        TransformerConfig.from_dict({**model, "src_vocab_size": 1, "tgt_vocab_size": 1})
        Seq2SeqDataConfig.from_dict(_container(cfg.data))
    else:
        model, _ = split_runtime_options(_container(cfg.model))  # model.compile: a runtime switch
        ModelConfig.from_dict({**model, "vocab_size": 1})
        DataConfig.from_dict(_container(cfg.data))


def build_trainer(cfg: DictConfig, output_dir: Path) -> L.Trainer:
    """The Trainer with the callbacks of ``callbacks.*`` and the loggers of ``logger.*`` (each built
    with ``hydra.utils.instantiate``); Lightning's objections to ``trainer.*`` as one line."""
    trainer_args = _container(cfg.trainer)
    if isinstance(trainer_args.get("strategy"), dict):  # a strategy object (trainer=fsdp: attnlab.training.fsdp)
        trainer_args["strategy"] = instantiate(trainer_args["strategy"])
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not trainer_args.get("enable_progress_bar", True):  # the bar callback would contradict it
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBarBase)]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    use_rank_command()  # DDP ranks > 0 re-run this job in this folder (attnlab.system.distributed)
    try:
        trainer = L.Trainer(
            **trainer_args,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(output_dir),
            plugins=[SafeCheckpointIO()],
        )
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"invalid trainer config: {str(err).strip().splitlines()[0]}") from None
    cores = os.cpu_count() or 1
    if isinstance(trainer.accelerator, CPUAccelerator) and trainer.num_devices > cores:
        raise ConfigError(
            f"trainer.devices={trainer_args.get('devices')} asks for {trainer.num_devices} CPU processes but this "
            f"machine has {cores} cores and no GPU in use; set trainer.devices=1 (or at most {cores})"
        )
    return trainer


def data_and_module(cfg: DictConfig) -> tuple[L.LightningDataModule, LitBase]:
    """The run's data, set up (the model's vocabulary sizes come from it), and its LightningModule:
    the GPT on text, or the encoder–decoder on pairs (:func:`is_seq2seq`)."""
    if is_seq2seq(cfg):
        datamodule = Seq2SeqDataModule.from_config(cfg)
        datamodule.setup("fit")
        V = datamodule.vocab_size  # one vocabulary for both sides
        module = LitSeq2Seq(
            model={**_container(cfg.model), "src_vocab_size": V, "tgt_vocab_size": V},
            optim=_container(cfg.optim),
            vocab=datamodule.vocab,
        )
        return datamodule, module
    datamodule = TextDataModule.from_config(cfg)
    datamodule.setup("fit")  # prepares the data too; the model's vocab_size comes from it
    module = LitGPT(
        model={**_container(cfg.model), "vocab_size": datamodule.vocab_size},
        optim=_container(cfg.optim),
        tokenizer=datamodule.tokenizer,
    )
    return datamodule, module


def check_resumable(cfg: DictConfig, checkpoint: Path) -> dict[str, Any]:
    """Read the checkpoint a run resumes from (weights_only; one line if damaged); its model hyperparameters."""
    saved = safe_load(checkpoint, mmap=True)  # the step and hyperparameters, without reading the weights
    if saved.get("global_step", 0) >= cfg.trainer.max_steps:
        raise ConfigError(
            f"{checkpoint} is at step {saved['global_step']}, already trainer.max_steps={cfg.trainer.max_steps}; "
            f"resume with a larger trainer.max_steps to train on"
        )
    return saved["hyper_parameters"]["model"]


def checked_config(cfg: DictConfig, keys: list[str] | None = None) -> tuple[DictConfig, Path | None, dict | None]:
    """What a run checks in its first second, before it writes anything: ``(config to train with,
    checkpoint to resume from or None, that checkpoint's model hyperparameters or None)``.

    ``keys``: the config keys the command line sets (by default Hydra's task overrides). The
    bootstrap runs this before Hydra starts too (:mod:`attnlab.preflight`), so a refused resume
    leaves the finished run as it was.
    """
    cfg, resume_from = resume_config(cfg, keys)  # resume=<run> / ckpt_path=: the run's own config and folder
    validate_config(cfg)
    resumed_model = check_resumable(cfg, resume_from) if resume_from else None
    return cfg, resume_from, resumed_model


def claim_run_folder(cfg: DictConfig, resume_from: Path | None) -> None:
    """The bootstrap's part before Hydra writes in the run folder (``python train.py``'s check): a
    resumed run's folder locked for the rest of the process, so a second launch that resumes it
    stops here, having written nothing there (:mod:`attnlab.runs.lock`); and the folder, or the
    one a new run's will be made in, writable."""
    output_dir = Path(cfg.paths.output_dir)
    if resume_from is not None and layout.saved_run(resume_from) is not None:
        hold_run_folder(output_dir)
    check_writable(output_dir)


def save_config(cfg: DictConfig, output_dir: Path) -> None:
    """``<run>/config.yaml``: the resolved config, which a resumed run reads back (written atomically)."""
    atomic_write_text(layout.config_file(output_dir), OmegaConf.to_yaml(cfg, resolve=True))


def train(cfg: DictConfig) -> dict[str, float]:
    """Train as ``cfg`` says; return the final metrics (``val/loss``, ``val/bpb``, ...)."""
    started = time.perf_counter()
    tidy_output()
    cfg, resume_from, resumed_model = checked_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    with run_folder_lock(output_dir):  # one writer per run folder, until this job ends (attnlab.runs.lock)
        check_writable(output_dir)
        if cfg.get("system", {}).get("keep_freed_memory", False):
            keep_freed_memory()
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        trainer = build_trainer(cfg, output_dir)

        datamodule, module = data_and_module(cfg)
        if resume_from:
            require_same_model(resume_from, resumed_model, module.hparams["model"])
        num_parameters = module.model.num_parameters()  # before fit: under trainer=fsdp each rank then holds a shard
        if trainer.is_global_zero:
            check_room_for_checkpoints(output_dir, num_parameters)

        output_dir.mkdir(parents=True, exist_ok=True)
        if trainer.is_global_zero:
            save_config(cfg, output_dir)
        log.info("run folder %s", output_dir)  # the model summary follows when fit starts (callbacks.run_record)
        if resume_from:
            log.info("resuming from %s", resume_from)
        with writes_into(output_dir):  # TensorBoard's and Lightning's own writes: a full disk in one line too
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["model/num_parameters"] = num_parameters
    metrics["steps"] = trainer.global_step
    metrics["seconds"] = time.perf_counter() - started
    if trainer.is_global_zero:
        print(final_line(output_dir, metrics), flush=True)
    return metrics


def final_line(output_dir: Path, metrics: dict[str, float]) -> str:
    minutes, seconds = divmod(int(metrics.get("seconds", 0)), 60)
    figures = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("val/loss", "val/bpb", "val/exact_match") if k in metrics)
    return f"run {shown_path(output_dir)}  {figures}  ({metrics.get('steps', 0)} steps, {minutes}m{seconds:02d}s)"
