"""What an encoder–decoder run shows in TensorBoard (conf/callbacks/seq2seq.yaml): its three kinds
of attention on one val pair, and decoded val pairs against their references.

:func:`seq2seq_attention` runs one pair teacher-forced (the decoder reads ``BOS + reference``) and
keeps, per layer, every head's weights of

* the encoder's self-attention: source x source, every cell visible (bidirectional);
* the decoder's self-attention: target x target, the future masked (causal);
* the decoder's **cross-attention**: one row per output token (the token that position predicts),
  one column per source token: which source token each output token looks at.

Images share the PNG maps' drawing (:mod:`attnlab.observe.attention_maps`): one colour scale
0 to 1, named on the bar, tokens on the axes up to 32, positions and a key beyond.
"""

from __future__ import annotations

import lightning as L
import torch

from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.data.seq2seq import collate
from attnlab.errors import ConfigError
from attnlab.model import EncoderDecoder
from attnlab.observe.attention_maps import MAX_LABELLED_TOKENS, SCALES, draw_maps, visible_whitespace
from attnlab.observe.samples import escape_markdown
from attnlab.observe.tensorboard import AtEachValidation, add_text, logged_step, tensorboard_writers

KINDS = {  # image tag -> (what the rows are, what the columns are, causal)
    "encoder": ("source", "source", False),
    "decoder": ("target in", "target in", True),
    "cross": ("output", "source", False),
}


@torch.no_grad()
def seq2seq_attention(model: EncoderDecoder, src: torch.Tensor, tgt_in: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """``{"encoder" | "decoder" | "cross": per layer (nh, rows, cols) fp32}`` for one pair: source
    ids ``src`` (S,), decoder input ``tgt_in`` (T,) = BOS + reference."""
    names = [f"encoder.{i}.self_attn.pattern" for i in range(len(model.encoder))]
    names += [f"decoder.{i}.{attn}.pattern" for attn in ("self_attn", "cross_attn") for i in range(len(model.decoder))]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        # (1, S) and (1, T) in; each pattern kept, (1, nh, rows, cols)
        _, cache = model.run_with_cache(src.to(device)[None], names, tgt_ids=tgt_in.to(device)[None])
    finally:
        model.train(was_training)
    weights: dict[str, list[torch.Tensor]] = {kind: [] for kind in KINDS}
    for name in names:  # layer order within each kind
        weights[kind_of(name)].append(cache[name][0].float().cpu())  # (nh, rows, cols)
    return weights


def kind_of(name: str) -> str:
    """``decoder.1.cross_attn.pattern`` -> ``cross``: which of :data:`KINDS` a hook point's pattern is."""
    if name.startswith("encoder."):
        return "encoder"
    return "cross" if ".cross_attn." in name else "decoder"


def axis_labels(vocab: Seq2SeqVocab, ids: torch.Tensor) -> list[str]:
    return [visible_whitespace(s) or "∅" for s in vocab.token_strings(ids)]


def seq2seq_images(
    model: EncoderDecoder,
    vocab: Seq2SeqVocab,
    src: torch.Tensor,
    tgt_in: torch.Tensor,
    tgt_out: torch.Tensor,
    caption: str = "",
    scale: str = "linear",
) -> dict[str, object]:
    """``{"attention/{encoder|decoder|cross}_layer_{i}": (H, W, 3) uint8}``: a grid of every head.
    ``tgt_out`` (T,) names the cross-attention's rows: the token each position predicts."""
    weights = seq2seq_attention(model, src, tgt_in)
    names = {
        "source": axis_labels(vocab, src),
        "target in": axis_labels(vocab, tgt_in),
        "output": axis_labels(vocab, tgt_out),
    }
    suffix = f" — {caption}" if caption else ""
    images = {}
    for kind, (rows, cols, causal) in KINDS.items():
        row_labels, col_labels = names[rows], names[cols]
        labelled = max(len(row_labels), len(col_labels)) <= MAX_LABELLED_TOKENS
        for i, w in enumerate(weights[kind]):
            heads = [(f"head {h}", w[h].numpy()) for h in range(w.size(0))]
            title = f"{kind} attention, layer {i}: rows {rows}, columns {cols}{suffix}"
            images[f"attention/{kind}_layer_{i}"] = draw_maps(
                heads,
                row_labels if labelled else None,
                title,
                None,
                None if labelled else col_labels,  # beyond 32 tokens: the columns' tokens as a key
                scale,
                key_labels=col_labels if labelled else None,
                causal=causal,
            )
    return images


class Seq2SeqAttentionMaps(AtEachValidation):
    """IMAGES tab: the encoder's, decoder's and cross-attention of val pair ``pair`` (in val order,
    shortest first: -1 is the longest), every layer and head, at each validation end (and every
    ``every_n_steps`` steps when set)."""

    def __init__(self, pair: int = -1, every_n_steps: int | None = None, scale: str = "linear"):
        if scale not in SCALES:
            raise ConfigError(f"callbacks.seq2seq_attention.scale={scale}: set it to one of {', '.join(SCALES)}")
        self.pair, self.every_n_steps, self.scale = pair, every_n_steps, scale
        self.batch = None

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        val_pairs = getattr(trainer.datamodule, "val_pairs", None)
        if not val_pairs:
            return
        if not -len(val_pairs) <= self.pair < len(val_pairs):
            raise ConfigError(
                f"callbacks.seq2seq_attention.pair={self.pair} but the val split has {len(val_pairs)} pairs; "
                f"use 0..{len(val_pairs) - 1} (or -1 for the longest)"
            )
        self.batch = collate([val_pairs[self.pair]], pl_module.vocab.pad_id)  # one pair, no padding

    def log_at(self, trainer: L.Trainer, pl_module, step: int) -> None:
        writers = tensorboard_writers(trainer)
        if not writers or self.batch is None or not trainer.is_global_zero:
            return
        b = self.batch
        images = seq2seq_images(
            pl_module.model, pl_module.vocab, b.src[0], b.tgt_in[0], b.tgt_out[0], f"step {step}", self.scale
        )
        for writer in writers:
            for tag, image in images.items():
                writer.add_image(tag, image, step, dataformats="HWC")


def translations_markdown(sources: list[str], references: list[str], outputs: list[str]) -> str:
    """A table: each source, its reference, the model's output and whether it is exact."""
    lines = ["| source | reference | output | exact |", "| --- | --- | --- | --- |"]
    for s, r, o in zip(sources, references, outputs, strict=True):
        mark = "✓" if o == r else "✗"
        lines.append(f"| {escape_markdown(s)} | {escape_markdown(r)} | **{escape_markdown(o) or '∅'}** | {mark} |")
    return "\n".join(lines)


class Translations(L.Callback):
    """TEXT tab, tag ``translations``: the first ``num_pairs`` val pairs decoded (the module's
    ``beam_size``) beside their references, at each validation end."""

    def __init__(self, num_pairs: int = 8):
        if not isinstance(num_pairs, int) or num_pairs < 1:
            raise ConfigError(f"callbacks.translations.num_pairs must be a positive integer, got {num_pairs!r}")
        self.num_pairs = num_pairs
        self.batch, self.texts = None, []

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        datamodule = trainer.datamodule
        if getattr(datamodule, "val_pairs", None):
            self.texts = datamodule.val_texts[: self.num_pairs]
            self.batch = collate(datamodule.val_pairs[: self.num_pairs], pl_module.vocab.pad_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        writers = tensorboard_writers(trainer)
        if trainer.sanity_checking or not writers or self.batch is None or not trainer.is_global_zero:
            return
        device = pl_module.device
        outputs = pl_module.translate(self.batch.src.to(device), self.batch.src_mask.to(device))
        sources = [s for s, _ in self.texts]
        references = [pl_module.vocab.decode(row) for row in self.batch.tgt_out]
        text = translations_markdown(sources, references, outputs)
        for writer in writers:
            add_text(writer, "translations", text, logged_step(trainer))
