"""The TensorBoard side of every run: its logger (conf/logger/tensorboard.yaml) and callbacks
(conf/callbacks/default.yaml): attention maps (IMAGES, and the explorer's side data in
``<run>/attention_log/``), samples (TEXT), tokens/s (SCALARS), and the run record (model summary,
HPARAMS, the CUSTOM SCALARS layout).

They write to every TensorBoard logger of the trainer (other loggers get the scalars only). Images
and text are filed under the same step as the validation scalars, so the IMAGES and TEXT tabs line
up with the SCALARS tab: Lightning files a validation that runs after ``n`` training steps under
step ``n - 1``.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf
from torch.utils.tensorboard.summary import text as text_summary

from attnlab.errors import ConfigError
from attnlab.observe.attention_maps import SCALES, attention_images
from attnlab.observe.explorer.log import write_attention, write_scores
from attnlab.observe.hparams import log_hparams, run_hparams
from attnlab.observe.probe import default_probe, probe_attention, probe_ids
from attnlab.observe.samples import sample_markdown
from attnlab.observe.summary import model_summary
from attnlab.runs import layout
from attnlab.runs.atomic import atomic_write_text
from attnlab.runs.resume import launch_overrides, run_overrides
from attnlab.training.callbacks import reached_max_steps

log = logging.getLogger(__name__)

# The CUSTOM SCALARS tab: {category: {chart: tags}}, one chart a line per tag
CHARTS = {
    "run": {
        "loss (train and val)": ["train/loss", "val/loss"],
        "val/bpb (bits per byte)": ["val/bpb"],
        "lr": ["lr"],
        "train/grad_norm (before clipping)": ["train/grad_norm"],
        "train/tokens_per_sec": ["train/tokens_per_sec"],
    }
}


class TensorBoard(TensorBoardLogger):
    """Lightning's TensorBoard logger without the ``epoch`` scalar Lightning adds to every write
    (a count of passes over the data that says nothing the step axis does not). Callbacks read
    ``trainer.callback_metrics``, which keeps everything logged, so checkpoint monitors are
    unaffected."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)


def custom_scalars_layout(charts: dict[str, dict[str, list[str]]] = CHARTS) -> dict:
    """``charts`` as ``SummaryWriter.add_custom_scalars`` takes them: each tag as the regular
    expression that matches it alone (the plugin matches tags by regex)."""
    return {
        category: {title: ["Multiline", [re.escape(tag) + "$" for tag in tags]] for title, tags in group.items()}
        for category, group in charts.items()
    }


def tensorboard_writers(trainer: L.Trainer) -> list:
    """The SummaryWriters of the trainer's TensorBoard loggers (rank zero only has them)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def add_text(writer, tag: str, markdown: str, step: int) -> None:
    """Markdown for the TEXT tab under exactly ``tag`` (``SummaryWriter.add_text`` appends
    ``/text_summary`` to it)."""
    summary = text_summary(tag, markdown)
    summary.value[0].tag = tag
    writer._get_file_writer().add_summary(summary, step)


def logged_step(trainer: L.Trainer) -> int:
    """The step Lightning files the current validation's scalars under (see module docstring)."""
    return max(trainer.global_step - 1, 0)


def validation_ids(trainer: L.Trainer) -> np.ndarray | None:
    """The token ids of the trainer's validation split, when its datamodule has one."""
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "val_ids", None)


class AtEachValidation(L.Callback, ABC):
    """A callback that logs at each validation end (the sanity check aside) and every
    ``every_n_steps`` training steps when set, both under the step of :func:`logged_step`."""

    every_n_steps: int | None = None

    @abstractmethod
    def log_at(self, trainer: L.Trainer, pl_module, step: int) -> None:
        """Log what the callback shows under ``step``."""

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.log_at(trainer, pl_module, logged_step(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.log_at(trainer, pl_module, logged_step(trainer))


# --------------------------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------------------------


class AttentionMaps(AtEachValidation):
    """Log every layer's attention on a fixed probe text (IMAGES tab) at each validation end,
    and every ``every_n_steps`` training steps when set.

    Tags ``attention/layer_{i}`` (a grid of all heads) and ``attention/layer_{i}_mean``. The
    probe runs the trained weights through the ``explicit`` attention path in eval mode; training
    keeps its own path and pays nothing between logs.

    With ``log_dir`` (``<run>/attention_log``) it also writes the explorer's side data there
    (:mod:`attnlab.observe.explorer.log`) at the same steps and at step 0, before the first
    training step: the probe's tokens and every head's weights; the ``heads`` callback hands its
    scores to :meth:`add_scores`. Rank zero only.
    """

    def __init__(
        self,
        text: str | None = None,
        every_n_steps: int | None = None,
        scale: str = "linear",
        log_dir: str | Path | None = None,
    ):
        if scale not in SCALES:
            raise ConfigError(f"callbacks.attention.scale={scale}: set it to one of {', '.join(SCALES)}")
        self.text = text
        self.every_n_steps = every_n_steps
        self.scale = scale
        self.log_dir = Path(log_dir) if log_dir else None
        self.ids: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        tokenizer = pl_module.tokenizer
        if tokenizer is not None:
            self.ids = probe_ids(self.text, tokenizer, validation_ids(trainer), pl_module.model.cfg.context_length)

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.global_step == 0:  # the untrained model (a resumed run has logged it)
            self.write_side_data(trainer, pl_module, 0)

    def log_at(self, trainer: L.Trainer, pl_module, step: int) -> None:
        self.write_side_data(trainer, pl_module, step)
        writers = tensorboard_writers(trainer)
        if not writers or self.ids is None or not trainer.is_global_zero:
            return
        images = attention_images(
            pl_module.model, pl_module.tokenizer, self.ids, caption=f"step {step}", scale=self.scale
        )
        for writer in writers:
            for tag, image in images.items():
                writer.add_image(tag, image, step, dataformats="HWC")

    def write_side_data(self, trainer: L.Trainer, pl_module, step: int) -> None:
        """``<log_dir>/step_<step>.npz``: the probe's tokens and every head's weights."""
        if self.log_dir is None or self.ids is None or not trainer.is_global_zero:
            return
        ids = self.ids.tolist()
        tokens = [pl_module.tokenizer.decode([i]) for i in ids]
        write_attention(self.log_dir, step, tokens, ids, probe_attention(pl_module.model, self.ids))

    def add_scores(self, step: int, scores: dict[str, torch.Tensor], in_context: float | None) -> None:
        """``<log_dir>/heads_<step>.json``: the head scores measured at ``step`` ({name: (L, nh)})."""
        if self.log_dir is not None:
            write_scores(self.log_dir, step, {name: value.numpy() for name, value in scores.items()}, in_context)


def side_data_logs(trainer: L.Trainer) -> list[AttentionMaps]:
    """The trainer's attention callbacks that write the explorer's side data."""
    return [cb for cb in trainer.callbacks if isinstance(cb, AttentionMaps) and cb.log_dir is not None]


class Samples(L.Callback):
    """At each validation end, continue a fixed prompt (greedy and one seeded sample) and log the
    text under ``samples`` (TEXT tab). Default prompt: the start of the validation text."""

    def __init__(
        self,
        prompt: str | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_k: int | None = 200,
        seed: int = 0,
        prompt_tokens: int = 8,
    ):
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.prompt_tokens = prompt_tokens
        self.ids: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        tokenizer = pl_module.tokenizer
        if tokenizer is None:
            return
        if self.prompt:
            ids = tokenizer.encode(self.prompt, respell=True)
        else:
            val_ids = validation_ids(trainer)
            context_length = pl_module.model.cfg.context_length
            ids = default_probe(tokenizer, val_ids, context_length)[: self.prompt_tokens] if val_ids is not None else []
        if len(ids):
            self.ids = torch.from_numpy(np.asarray(ids[-pl_module.model.cfg.context_length :], dtype=np.int64))

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        writers = tensorboard_writers(trainer)
        if trainer.sanity_checking or not writers or self.ids is None or not trainer.is_global_zero:
            return
        text = sample_markdown(
            pl_module.model, pl_module.tokenizer, self.ids, self.max_new_tokens, self.temperature, self.top_k, self.seed
        )
        for writer in writers:
            add_text(writer, "samples", text, logged_step(trainer))


# --------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------


class Throughput(L.Callback):
    """``train/tokens_per_sec``: training tokens (all processes) per second of wall clock between
    logs, validation excluded; and at the last step, of the steps since the last log, so the final
    metrics of a run shorter than ``log_every_n_steps`` hold it too. Reads only shapes and the
    clock: no device synchronisation."""

    def __init__(self):
        self.last: float | None = None
        self.tokens, self.seconds = 0, 0.0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.last is not None:  # the time since the previous batch ended: loading, step, logging
            x = batch[0]  # (B, T)
            self.tokens += x.numel() * trainer.world_size
            self.seconds += now - self.last
        self.last = now
        if self.seconds > 0 and (trainer.global_step % trainer.log_every_n_steps == 0 or reached_max_steps(trainer)):
            pl_module.log("train/tokens_per_sec", self.tokens / self.seconds)
            self.tokens, self.seconds = 0, 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module) -> None:
        self.last = None  # the next interval starts after validation

    on_train_start = on_validation_start


class RunRecord(L.Callback):
    """At fit start (rank zero): print the model summary and save it as ``<run>/model_summary.txt``;
    record the run's hyperparameters (from its ``config.yaml``, which the train task saves before
    fitting, and Hydra's record of its command lines) for the HPARAMS tab, and the CUSTOM SCALARS
    layout (:data:`CHARTS`)."""

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        summary = model_summary(pl_module.model)
        log.info("model summary\n%s", summary)
        atomic_write_text(self.output_dir / layout.MODEL_SUMMARY, summary + "\n")
        config = layout.config_file(self.output_dir)
        overrides = run_overrides(launch_overrides(self.output_dir))
        hparams, columns = run_hparams(OmegaConf.load(config), overrides) if config.is_file() else ({}, [])
        log_hparams(trainer, hparams, columns, pl_module.model.num_parameters())
        for writer in tensorboard_writers(trainer):
            writer.add_custom_scalars(custom_scalars_layout())
