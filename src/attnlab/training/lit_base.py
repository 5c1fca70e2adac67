"""What every attnlab LightningModule shares: the optimizer and its warmup-cosine schedule over
``trainer.max_steps`` (or ``trainer.max_time``), the logging cadence, and gradient clipping that
logs ``train/grad_norm``. :class:`attnlab.training.lit_gpt.LitGPT` (the GPT) and
:class:`attnlab.training.lit_seq2seq.LitSeq2Seq` (the encoder–decoder) add their model, loss and
metrics; each keeps its model as ``self.model`` and its :class:`OptimConfig` as ``self.optim_cfg``.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from attnlab.errors import ConfigError
from attnlab.training.fsdp import clip_grad_norm, sharded
from attnlab.training.optim import OptimConfig, build_optimizer
from attnlab.training.schedule import warmup_cosine


class LitBase(L.LightningModule):
    """The optimisation half of a training module (see the module docstring)."""

    model: torch.nn.Module
    optim_cfg: OptimConfig
    timer: Timer | None = None  # Lightning's, when trainer.max_time is set (on_train_start)

    def writes_logs(self) -> bool:
        """Whether this training step's logged values are written: every ``trainer.log_every_n_steps``
        steps, as Lightning's loggers write, and the last step of ``trainer.max_steps`` (the final
        ``train/loss``). Between them nothing is logged: each ``self.log`` costs Lightning about
        0.5 ms of bookkeeping, about 2% of a small model's CPU step (docs/benchmarks.md)."""
        step, every = self.global_step + 1, self.trainer.log_every_n_steps
        return (every > 0 and step % every == 0) or step >= self.trainer.max_steps

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip as ``trainer.gradient_clip_*`` say and log ``train/grad_norm``, the global L2 norm
        of the gradients before clipping. Norm clipping returns that norm, so it is computed once.
        Under FSDP (``trainer=fsdp``) FSDP's own clipping measures it over every rank's shard."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        by_norm = bool(gradient_clip_val) and gradient_clip_algorithm in (None, "norm")
        if sharded(self.trainer):  # FSDP: a shard of the gradients on each rank; the norm over all of them
            norm = clip_grad_norm(self.trainer, gradient_clip_val if by_norm else math.inf)
            if gradient_clip_val and not by_norm:
                self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)  # by value: per element
        elif not params:
            return
        elif by_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)  # what Lightning would call
        else:  # no clipping, or clipping by value
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if self.writes_logs():
            self.log("train/grad_norm", norm)  # a device tensor: no sync

    # -- optimisation --------------------------------------------------------------------------

    def configure_optimizers(self):
        cfg = self.optim_cfg
        total = self.trainer.max_steps
        if total is None or total < 1:
            raise ConfigError("the LR schedule needs a step budget; set trainer.max_steps to a positive integer")
        optimizer = build_optimizer(self.model, cfg)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, cfg.warmup_steps, total, cfg.min_lr_ratio, self.time_used())
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_start(self) -> None:
        # Lightning adds a Timer when trainer.max_time is set; the LR schedule reads it every step
        self.timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)

    def time_used(self) -> float:
        """The spent fraction (0..1) of ``trainer.max_time``, as Lightning's Timer counts it (the
        training stage, validations included); 0 without a time budget."""
        timer = self.timer
        if timer is None:
            return 0.0
        elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train")
        if remaining is None or elapsed + remaining <= 0:
            return 0.0
        return min(1.0, elapsed / (elapsed + remaining))
