"""Per-head scores over training: the ``heads`` callback of conf/callbacks/default.yaml.

At each validation end (and every ``every_n_steps`` training steps when set) rank zero measures
the model on inputs fixed when fitting starts, the same at every step, so a curve shows the model
change and nothing else:

* ``batch_size`` windows of the validation split at evenly spaced offsets, and as many sequences
  of R = context_length // 2 random ids repeated once (seeded): the scores of
  :func:`attnlab.observe.heads.head_scores`;
* ``in_context_windows`` spans of the split, also evenly spaced, each a pair of windows d tokens
  apart (:func:`attnlab.observe.heads.in_context_pairs`), run ``batch_size`` windows at a time:
  ``heads/in_context`` (:func:`attnlab.observe.heads.in_context_score`).

So one measurement costs a few forward passes of one small batch, whatever the split's size. The
model runs under the run's precision (bf16 autocast where training uses it); the scores are fp32.

It logs the scalars ``heads/<score>/layer_{i}/head_{j}`` and ``heads/in_context`` to every logger
and one image per score, ``heads/<score>`` (:func:`attnlab.observe.head_maps.score_images`), to
every TensorBoard writer, at the validation's step; and it puts a sweep's figures
(:func:`attnlab.observe.heads.summary_metrics` and ``heads/in_context``) into
``trainer.callback_metrics``, so the run's ``metrics.json`` holds them. Under DDP the other ranks
skip it: nothing here waits for another process.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from attnlab.data.windows import require_one_window
from attnlab.errors import ConfigError
from attnlab.model import GPT
from attnlab.observe.head_maps import score_images
from attnlab.observe.heads import (
    head_scores,
    in_context_pairs,
    in_context_score,
    in_context_shift,
    position_losses,
    repeated_random_tokens,
    scalar_tags,
    summary_metrics,
)
from attnlab.observe.tensorboard import AtEachValidation, side_data_logs, tensorboard_writers, validation_ids

IN_CONTEXT = "heads/in_context"  # the scalar, and its name in callback_metrics and metrics.json


@dataclass(frozen=True)
class HeadProbe:
    """The fixed inputs the scores are measured on."""

    text: torch.Tensor  # (B, T) validation windows
    repeated: torch.Tensor  # (B, 2R) random ids, each sequence repeated once
    spans: torch.Tensor  # (W, T+1+d) validation text, each span a pair of windows d tokens apart (in_context)


def spread_windows(ids: np.ndarray, length: int, count: int) -> torch.Tensor:
    """Up to ``count`` windows of ``length`` ids at evenly spaced offsets over ``ids`` (fewer when
    ``ids`` is too short to hold that many distinct ones): (count, length) int64."""
    offsets = np.unique(np.linspace(0, len(ids) - length, num=count).round().astype(np.int64))  # (count,)
    return torch.from_numpy(np.asarray(ids)[offsets[:, None] + np.arange(length)].astype(np.int64))


def in_context_spans(ids: np.ndarray, context_length: int, count: int) -> torch.Tensor:
    """``count`` spans of T+1+d ids spread over ``ids`` (:func:`attnlab.observe.heads.in_context_pairs`
    cuts each into its two windows); a split shorter than one span is repeated to fill it."""
    length = context_length + 1 + in_context_shift(context_length)
    if len(ids) < length:
        ids = np.resize(np.asarray(ids), length)  # the text again after its end: still real tokens
    return spread_windows(ids, length, count)


def head_probe(
    val_ids: np.ndarray, context_length: int, vocab_size: int, batch_size: int, in_context_windows: int, seed: int
) -> HeadProbe:
    """The probe of a model with ``context_length`` T and ``vocab_size`` ids, on the split ``val_ids``."""
    require_one_window(val_ids, context_length)
    return HeadProbe(
        text=spread_windows(val_ids, context_length, batch_size),
        repeated=repeated_random_tokens(vocab_size, context_length, batch_size, seed),
        spans=in_context_spans(val_ids, context_length, in_context_windows),
    )


def measure(model: GPT, probe: HeadProbe) -> tuple[dict[str, torch.Tensor], float]:
    """``model``'s scores on ``probe``, {name: (L, nh)} in fp32, and its in-context score (the
    per-position losses of the windows, ``len(probe.text)`` windows per forward pass)."""
    device = next(model.parameters()).device
    scores = head_scores(model, probe.text.to(device), probe.repeated.to(device))
    first, second = in_context_pairs(probe.spans.to(device), probe.text.size(1))  # (W, T+1) each
    losses = [torch.cat([position_losses(model, c) for c in w.split(len(probe.text))]) for w in (first, second)]
    return {name: value.float().cpu() for name, value in scores.items()}, in_context_score(*losses)  # (W, T) each


class HeadScores(AtEachValidation):
    """Log every head's scores on fixed inputs at each validation end (SCALARS and IMAGES tabs),
    and every ``every_n_steps`` training steps when set; see the module docstring."""

    def __init__(
        self, batch_size: int = 8, in_context_windows: int = 32, seed: int = 0, every_n_steps: int | None = None
    ):
        for key, value in (("batch_size", batch_size), ("in_context_windows", in_context_windows)):
            if value < 1:
                raise ConfigError(
                    f"callbacks.heads.{key}={value} is a number of windows; set it to 1 or more (default 8 and 32)"
                )
        self.batch_size, self.in_context_windows, self.seed = batch_size, in_context_windows, seed
        self.every_n_steps = every_n_steps
        self.probe: HeadProbe | None = None
        self.last_step: int | None = None  # the step last measured

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        self.last_step = None
        val_ids = validation_ids(trainer)
        if val_ids is not None:
            cfg = pl_module.model.cfg
            self.probe = head_probe(
                val_ids, cfg.context_length, cfg.vocab_size, self.batch_size, self.in_context_windows, self.seed
            )

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        """The untrained model's scores, for the explorer's side data only (the attention callback's step 0)."""
        logs = side_data_logs(trainer)
        if trainer.global_step == 0 and logs and self.probe is not None and trainer.is_global_zero:
            with trainer.precision_plugin.forward_context():
                scores, in_context = measure(pl_module.model, self.probe)
            for side in logs:
                side.add_scores(0, scores, in_context)

    def log_at(self, trainer: L.Trainer, pl_module, step: int) -> None:
        if self.probe is None or not trainer.is_global_zero or step == self.last_step:
            return  # no split, another rank, or these weights are measured (every_n_steps at a validation)
        self.last_step = step
        with trainer.precision_plugin.forward_context():  # the run's autocast, if any
            scores, in_context = measure(pl_module.model, self.probe)
        for side in side_data_logs(trainer):  # the explorer shows them beside each head
            side.add_scores(step, scores, in_context)
        scalars = {**scalar_tags(scores), IN_CONTEXT: in_context}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step)
        writers = tensorboard_writers(trainer)
        images = score_images(scores, caption=f"step {step}") if writers else {}
        for writer in writers:
            for tag, image in images.items():
                writer.add_image(tag, image, step, dataformats="HWC")
        figures = {**summary_metrics(scores), IN_CONTEXT: in_context}
        trainer.callback_metrics.update({name: torch.tensor(value) for name, value in figures.items()})
