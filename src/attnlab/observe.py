"""Seeing inside a run: attention maps, samples, throughput, model summary and hparams.

The callbacks here write to every TensorBoard logger of the trainer (other loggers get the
scalars only). Images and text are filed under the same step as the validation scalars, so the
IMAGES and TEXT tabs line up with the SCALARS tab: Lightning files a validation that runs after
``n`` training steps under step ``n - 1``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from attnlab.attention_maps import attention_images
from attnlab.generation import generate
from attnlab.model import GPT
from attnlab.tokenizer import Tokenizer

log = logging.getLogger(__name__)

PROBE_MAX_TOKENS = 32  # the default probe: a val-split line of 8 to 32 tokens (labels fit on the axes)
PROBE_MIN_TOKENS = 8


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def tensorboard_writers(trainer: L.Trainer) -> list:
    """The SummaryWriters of the trainer's TensorBoard loggers (rank zero only has them)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def logged_step(trainer: L.Trainer) -> int:
    """The step Lightning files the current validation's scalars under (see module docstring)."""
    return max(trainer.global_step - 1, 0)


def default_probe(tokenizer: Tokenizer, val_ids: np.ndarray, context_length: int) -> np.ndarray:
    """A short line of the validation text: the first run of 8 to 32 tokens (at most
    ``context_length``) between tokens holding a line break, else the text's first tokens.

    Lines are cut in token space, so the probe is made of the corpus's own ids (re-encoding a
    cut line could produce tokens the corpus vocabulary lacks).
    """
    longest = min(PROBE_MAX_TOKENS, context_length)
    line: list[int] = []
    for i in np.asarray(val_ids[:2048]).tolist():
        if "\n" not in tokenizer.decode([i]):
            line.append(i)
            continue
        if min(PROBE_MIN_TOKENS, longest) <= len(line) <= longest:
            return np.asarray(line)
        line = []
    return np.asarray(val_ids[:longest])


def _probe_ids(text: str | None, tokenizer: Tokenizer, val_ids: np.ndarray | None, context_length: int) -> torch.Tensor:
    if text:
        ids = tokenizer.encode(text, respell=True)  # unseen tokens spelled with corpus ones, or one line
    elif val_ids is not None:
        ids = default_probe(tokenizer, val_ids, context_length)
    else:
        raise ValueError("no probe text and no validation split to take one from")
    if len(ids) == 0:
        raise ValueError("the probe text has no tokens")
    if len(ids) > context_length:
        log.warning("probe text has %d tokens; showing the first context_length=%d", len(ids), context_length)
        ids = ids[:context_length]
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))  # (T,)


def _val_ids(trainer: L.Trainer) -> np.ndarray | None:
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "val_ids", None)


# --------------------------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------------------------


class AttentionMaps(L.Callback):
    """Log every layer's attention on a fixed probe text (IMAGES tab) at each validation end,
    and every ``every_n_steps`` training steps when set.

    Tags ``attention/layer_{i}`` (a grid of all heads) and ``attention/layer_{i}_mean``. The
    probe runs the trained weights through the ``explicit`` attention path in eval mode; training
    keeps its own path and pays nothing between logs.
    """

    def __init__(self, text: str | None = None, every_n_steps: int | None = None):
        self.text = text
        self.every_n_steps = every_n_steps
        self.ids: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        tokenizer = pl_module.tokenizer
        if tokenizer is not None:
            self.ids = _probe_ids(self.text, tokenizer, _val_ids(trainer), pl_module.model.cfg.context_length)

    def log_maps(self, trainer: L.Trainer, pl_module, step: int) -> None:
        writers = tensorboard_writers(trainer)
        if not writers or self.ids is None or not trainer.is_global_zero:
            return
        images = attention_images(pl_module.model, pl_module.tokenizer, self.ids, caption=f"step {step}")
        for writer in writers:
            for tag, image in images.items():
                writer.add_image(tag, image, step, dataformats="HWC")

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.log_maps(trainer, pl_module, logged_step(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.log_maps(trainer, pl_module, logged_step(trainer))


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------


def sample_markdown(model: GPT, tokenizer: Tokenizer, prompt: torch.Tensor, max_new_tokens: int,
                    temperature: float, top_k: int | None, seed: int) -> str:
    """A greedy and a sampled continuation of ``prompt`` (T0,), as Markdown for the TEXT tab."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        prompt = prompt.to(device)
        greedy = torch.stack(list(generate(model, prompt, max_new_tokens, temperature=0.0)), dim=1)  # (1, N)
        g = torch.Generator(device=device).manual_seed(seed)  # the same draw at every step
        sampled = torch.stack(list(generate(model, prompt, max_new_tokens, temperature=temperature,
                                            top_k=top_k, generator=g)), dim=1)  # (1, N)
    finally:
        model.train(was_training)
    prompt_text = tokenizer.decode(prompt.cpu())
    sample_desc = f"sampled (temperature {temperature}" + (f", top_k {top_k}" if top_k else "") + f", seed {seed})"

    def block(ids: torch.Tensor) -> str:  # a Markdown code block keeps line breaks and spacing
        text = prompt_text + tokenizer.decode(ids[0].cpu())
        return "\n".join("    " + line for line in text.split("\n"))

    return f"**greedy**\n\n{block(greedy)}\n\n**{sample_desc}**\n\n{block(sampled)}"


class Samples(L.Callback):
    """At each validation end, continue a fixed prompt (greedy and one seeded sample) and log the
    text under ``samples`` (TEXT tab). Default prompt: the start of the validation text."""

    def __init__(self, prompt: str | None = None, max_new_tokens: int = 64, temperature: float = 0.8,
                 top_k: int | None = 200, seed: int = 0, prompt_tokens: int = 8):
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
            val_ids = _val_ids(trainer)
            context_length = pl_module.model.cfg.context_length
            ids = default_probe(tokenizer, val_ids, context_length)[: self.prompt_tokens] if val_ids is not None else []
        if len(ids):
            self.ids = torch.from_numpy(np.asarray(ids[-pl_module.model.cfg.context_length:], dtype=np.int64))

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        writers = tensorboard_writers(trainer)
        if trainer.sanity_checking or not writers or self.ids is None or not trainer.is_global_zero:
            return
        text = sample_markdown(pl_module.model, pl_module.tokenizer, self.ids, self.max_new_tokens,
                               self.temperature, self.top_k, self.seed)
        for writer in writers:
            writer.add_text("samples", text, logged_step(trainer))


# --------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------


class Throughput(L.Callback):
    """``train/tokens_per_sec``: training tokens (all processes) per second of wall clock between
    logs, validation excluded. Reads only shapes and the clock: no device synchronisation."""

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
        if self.seconds > 0 and trainer.global_step % trainer.log_every_n_steps == 0:
            pl_module.log("train/tokens_per_sec", self.tokens / self.seconds)
            self.tokens, self.seconds = 0, 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module) -> None:
        self.last = None  # the next interval starts after validation

    on_train_start = on_validation_start


# --------------------------------------------------------------------------------------------
# Model summary
# --------------------------------------------------------------------------------------------


def model_summary(model: GPT) -> str:
    """Parameters per module as a table: embedding, positions, each block's parts, head, total."""
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    cfg = model.cfg
    rows: list[tuple[str, str, str]] = [
        ("token_embedding", f"Embedding({cfg.vocab_size}, {cfg.d_model})", f"{count(model.token_embedding):,}"),
    ]
    if model.positional is not None:  # RoPE has no module here: it rotates q, k inside attention
        rows.append(("positional", type(model.positional).__name__, f"{count(model.positional):,}"))
    for i, block in enumerate(model.blocks):
        for name in ("ln1", "attn", "ln2", "ffn"):
            part = getattr(block, name)
            rows.append((f"blocks.{i}.{name}", type(part).__name__, f"{count(part):,}"))
    rows.append(("ln_f", type(model.ln_f).__name__, f"{count(model.ln_f):,}"))
    head = "tied to token_embedding" if cfg.tie_embeddings else f"{count(model.lm_head):,}"
    rows.append(("lm_head", f"Linear({cfg.d_model}, {cfg.vocab_size})", head))
    total = model.num_parameters()
    body = total - count(model.token_embedding) - (0 if cfg.tie_embeddings else count(model.lm_head))
    widths = [max(len(r[k]) for r in rows + [("module", "type", "parameters")]) for k in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
    out = [line(("module", "type", "parameters")), "-" * (sum(widths) + 4)]
    out += [line(r) for r in rows]
    out += ["-" * (sum(widths) + 4),
            f"total {total:,} parameters ({body:,} without the embedding), {total * 4 / 2**20:.1f} MiB in fp32",
            f"config: d_model={cfg.d_model} num_heads={cfg.num_heads} head_size={cfg.head_size} "
            f"num_layers={cfg.num_layers} context_length={cfg.context_length} vocab_size={cfg.vocab_size} "
            f"attention={cfg.attention} positional={cfg.positional} norm={cfg.norm} qk_norm={cfg.qk_norm} "
            f"activation={cfg.activation} tie_embeddings={cfg.tie_embeddings}"]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Hyperparameters
# --------------------------------------------------------------------------------------------

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
        experiment, start, end = hparams_summary(hparams, {tag: 0.0 for tag in HPARAM_METRICS})
        file_writer = writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        writer.add_scalar("model/num_parameters", num_parameters, 0)


class RunRecord(L.Callback):
    """At fit start (rank zero): print the model summary and save it as ``<run>/model_summary.txt``;
    record the hyperparameters for the HPARAMS tab."""

    def __init__(self, output_dir: str | Path, hparams: dict[str, Any]):
        self.output_dir, self.hparams = Path(output_dir), hparams

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        summary = model_summary(pl_module.model)
        log.info("model summary\n%s", summary)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "model_summary.txt").write_text(summary + "\n", encoding="utf-8")
        log_hparams(trainer, self.hparams, pl_module.model.num_parameters())
