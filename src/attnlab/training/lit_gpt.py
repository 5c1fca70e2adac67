"""The LightningModule: next-token training of :class:`attnlab.model.GPT`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from attnlab.checks import require_bool
from attnlab.data.tokenizer import Tokenizer, tokenizer_from_state
from attnlab.data.windows import IGNORE_INDEX
from attnlab.errors import ConfigError
from attnlab.model import GPT, ModelConfig
from attnlab.training.lit_base import LitBase
from attnlab.training.metrics import LanguageModelMetrics
from attnlab.training.optim import OptimConfig


def split_runtime_options(model: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``model.*`` config -> (the :class:`ModelConfig` dict, ``compile``).

    ``model.compile`` says how the model runs, not what it is: it stays out of the saved
    hyperparameters, so checkpoints of compiled and uncompiled runs are the same, and a run may be
    resumed (or a checkpoint evaluated, exported, probed) with either setting."""
    model = dict(model)
    compile_ = model.pop("compile", False)
    require_bool(compile_, "model.compile")
    return model, compile_


def compiled_forward(model: GPT) -> Callable[..., torch.Tensor]:
    """``model``'s forward through ``torch.compile`` (inductor), compiled at its first call.

    The module itself is left as it is (no wrapper module, so its state_dict keys do not change)
    and callers that want the eager model (validation, attention probes, samples) keep calling
    ``model(...)``."""
    return torch.compile(model.forward)


class LitGPT(LitBase):
    """Wraps the GPT with its loss and metrics (the optimizer and schedule: :class:`LitBase`).

    ``model`` and ``optim`` are plain dicts (saved as hyperparameters, so
    ``LitGPT.load_from_checkpoint(path)`` rebuilds the model); the tokenizer, which holds the
    corpus vocabulary, is saved in every checkpoint under ``"tokenizer"``. ``model["compile"]``
    (``model.compile``) compiles the training step's forward pass and is not saved.
    """

    def __init__(self, model: dict[str, Any], optim: dict[str, Any] | None = None, tokenizer: Tokenizer | None = None):
        super().__init__()
        model, self.compile_model = split_runtime_options(model)
        # the run logs its whole config (observe.py); the tokenizer is saved on its own
        self.save_hyperparameters({"model": model, "optim": optim}, logger=False)
        self.model_cfg = ModelConfig.from_dict(model)
        self.optim_cfg = OptimConfig.from_dict(dict(optim or {}))
        self.model = GPT(self.model_cfg)
        # training steps only: validation and the probes run eager (other shapes, modes, a KV cache).
        # A plain function, not a module: nothing is added to the state_dict.
        self.compiled = compiled_forward(self.model) if self.compile_model else None
        self.val_metrics = LanguageModelMetrics()
        # bytes of text each token id stands for: turns summed NLL into bits per byte
        self.register_buffer("token_bytes", torch.zeros(self.model_cfg.vocab_size, dtype=torch.long), persistent=False)
        self.tokenizer: Tokenizer | None = None
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)

    def set_tokenizer(self, tokenizer: Tokenizer) -> None:
        if tokenizer.vocab_size != self.model_cfg.vocab_size:
            raise ConfigError(
                f"tokenizer has {tokenizer.vocab_size} ids but the model has vocab_size={self.model_cfg.vocab_size}"
            )
        self.tokenizer = tokenizer
        self.token_bytes.copy_(torch.from_numpy(tokenizer.token_bytes()))

    def forward(self, idx: torch.Tensor, **kwargs):
        return self.model(idx, **kwargs)

    # -- steps ---------------------------------------------------------------------------------

    def _nll(self, logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        V = logits.size(-1)
        # (B*T, V) logits vs (B*T,) targets, in fp32 whatever the autocast dtype
        return F.cross_entropy(
            logits.view(-1, V).float(), y.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # (B, T), (B, T)
        forward = self.compiled or self.model
        loss = self._nll(forward(x), y, "mean")  # (B, T, V) logits -> scalar
        if self.writes_logs():
            self.log("train/loss", loss, prog_bar=True)
            self.log("lr", self.lr_schedulers().get_last_lr()[0])  # a Python float: a host-to-device copy
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch  # (B, T), (B, T); y == IGNORE_INDEX marks padding
        nll = self._nll(self.model(x), y, "sum")
        mask = y != IGNORE_INDEX  # (B, T)
        nbytes = (self.token_bytes[y.clamp(min=0)] * mask).sum()
        self.val_metrics.update(nll, mask.sum(), nbytes)

    def on_validation_epoch_end(self) -> None:
        m = self.val_metrics.compute()  # sums reduced across processes: the same figures on every rank
        self.val_metrics.reset()
        # sync_dist averages those equal figures (exactly) and tells Lightning they are global
        self.log("val/loss", m["loss"], prog_bar=True, sync_dist=True)
        self.log("val/ppl", m["ppl"], sync_dist=True)
        self.log("val/bpb", m["bpb"], prog_bar=True, sync_dist=True)

    # -- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizer" in checkpoint:
            self.set_tokenizer(tokenizer_from_state(checkpoint["tokenizer"]))
