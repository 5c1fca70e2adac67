"""The LightningModule of the encoder–decoder (:class:`attnlab.model.EncoderDecoder`): teacher-forced
next-token training on source/target pairs, and validation that decodes.

Training: the decoder reads ``BOS + target`` and is scored on ``target + EOS`` (cross-entropy over
the real target tokens). Validation adds, on the same val pairs each time, the outputs found by
:func:`attnlab.model.search.beam_search` (``model.beam_size``; 1 = greedy), scored against the
references: ``val/loss``, ``val/ppl``, ``val/token_accuracy`` (teacher-forced argmax),
``val/exact_match`` (the decoded output equals the reference), ``val/chrf`` and ``val/bleu``
(torchmetrics' chrF and SacreBLEU with its default ``13a`` word split); all fractions, 0 to 1. Every metric sums over the val pairs and across
processes, so the figures are exact under DDP too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attnlab.checks import require_bool, require_int
from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.data.seq2seq import Seq2SeqBatch
from attnlab.data.windows import IGNORE_INDEX
from attnlab.errors import ConfigError
from attnlab.model import EncoderDecoder, TransformerConfig
from attnlab.model.search import beam_search
from attnlab.training.lit_base import LitBase
from attnlab.training.metrics import Seq2SeqMetrics
from attnlab.training.optim import OptimConfig

RUNTIME_OPTIONS = {"compile": False, "beam_size": 1}  # how the model runs, not what it is: not saved


def split_seq2seq_options(model: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model.*`` config -> (the :class:`TransformerConfig` dict, the runtime options
    ``compile`` and ``beam_size``), as :func:`attnlab.training.lit_gpt.split_runtime_options` does
    for the GPT: a checkpoint is the same whatever they were."""
    model = dict(model)
    options = {name: model.pop(name, default) for name, default in RUNTIME_OPTIONS.items()}
    require_bool(options["compile"], "model.compile")
    require_int(options["beam_size"], "model.beam_size")
    return model, options


class LitSeq2Seq(LitBase):
    """Wraps the encoder–decoder with its loss, decoding and metrics (optimizer and schedule:
    :class:`LitBase`). ``model`` and ``optim`` are plain dicts saved as hyperparameters; the
    :class:`Seq2SeqVocab` is saved in every checkpoint under ``"tokenizer"``."""

    def __init__(
        self,
        model: dict[str, Any],
        optim: dict[str, Any] | None = None,
        vocab: Seq2SeqVocab | None = None,
    ):
        super().__init__()
        model, options = split_seq2seq_options(model)
        self.save_hyperparameters({"model": model, "optim": optim}, logger=False)
        self.model_cfg = TransformerConfig.from_dict(model)
        self.optim_cfg = OptimConfig.from_dict(dict(optim or {}))
        self.model = EncoderDecoder(self.model_cfg)
        self.beam_size = options["beam_size"]
        self.compiled = torch.compile(self.model.forward) if options["compile"] else None  # training steps only
        self.val_metrics = Seq2SeqMetrics()
        self.vocab: Seq2SeqVocab | None = None
        if vocab is not None:
            self.set_vocab(vocab)

    def set_vocab(self, vocab: Seq2SeqVocab) -> None:
        for side in ("src", "tgt"):
            size = getattr(self.model_cfg, f"{side}_vocab_size")
            if vocab.vocab_size != size:
                raise ConfigError(
                    f"the pairs' vocabulary has {vocab.vocab_size} ids but model.{side}_vocab_size={size}"
                )
        self.vocab = vocab

    def forward(self, src, tgt_in, src_mask=None, tgt_mask=None) -> torch.Tensor:
        return self.model(src, tgt_in, src_mask, tgt_mask)  # (B, T, V)

    # -- steps ---------------------------------------------------------------------------------

    def _nll(self, logits: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
        V = logits.size(-1)
        # (B*T, V) logits vs (B*T,) targets, in fp32 whatever the autocast dtype; padding ignored
        return F.cross_entropy(
            logits.reshape(-1, V).float(), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
        )

    def training_step(self, batch: Seq2SeqBatch, batch_idx: int) -> torch.Tensor:
        forward = self.compiled or self.model
        logits = forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_mask)  # (B, T, V)
        loss = self._nll(logits, batch.tgt_out, "mean")  # scalar
        if self.writes_logs():
            self.log("train/loss", loss, prog_bar=True)
            self.log("lr", self.lr_schedulers().get_last_lr()[0])
        return loss

    def translate(self, src: torch.Tensor, src_mask: torch.Tensor | None, beam_size: int | None = None) -> list[str]:
        """The decoded outputs of a batch of sources (B, S), as text."""
        found = beam_search(
            self.model,
            src,
            src_mask,
            self.vocab.bos_id,
            self.vocab.eos_id,
            beam_size=beam_size or self.beam_size,
        )
        return [self.vocab.decode(ids) for ids in found.ids]

    def validation_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        logits = self.model(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_mask)  # (B, T, V)
        nll = self._nll(logits, batch.tgt_out, "sum")
        real = batch.tgt_out != IGNORE_INDEX  # (B, T): target tokens and EOS
        correct = ((logits.argmax(dim=-1) == batch.tgt_out) & real).sum()
        references = [self.vocab.decode(row) for row in batch.tgt_out.masked_fill(~real, self.vocab.pad_id)]
        self.val_metrics.update(nll, real.sum(), correct, self.translate(batch.src, batch.src_mask), references)

    def on_validation_epoch_end(self) -> None:
        m = self.val_metrics.compute()  # sums reduced across processes: the same figures on every rank
        self.val_metrics.reset()
        self.log("val/loss", m["loss"], prog_bar=True, sync_dist=True)
        self.log("val/ppl", m["ppl"], sync_dist=True)
        self.log("val/token_accuracy", m["token_accuracy"], sync_dist=True)
        self.log("val/exact_match", m["exact_match"], prog_bar=True, sync_dist=True)
        self.log("val/chrf", m["chrf"], sync_dist=True)
        self.log("val/bleu", m["bleu"], sync_dist=True)

    # -- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.vocab is not None:
            checkpoint["tokenizer"] = self.vocab.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizer" in checkpoint:
            self.set_vocab(Seq2SeqVocab.from_state(checkpoint["tokenizer"]))
