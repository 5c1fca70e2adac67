"""Writing and reading attnlab checkpoints (where they are: :mod:`attnlab.runs.layout`).

A checkpoint is Lightning's dict: ``state_dict`` (the LitGPT's tensors, model under ``model.``),
``hyper_parameters`` (``model`` and ``optim`` dicts), ``tokenizer`` (attnlab's tokenizer state)
and the trainer's own state. It is read with ``torch.load(weights_only=True)``: tensors and plain
containers only, so opening a checkpoint never runs code stored in it. That holds for every
reader: :func:`read_checkpoint` (the tools: attend, generate, eval, export) and
:class:`attnlab.training.safe_io.SafeCheckpointIO`, through which Lightning saves checkpoints
(atomically: a kill during a save leaves the previous file intact) and loads the one a run resumes
from. No Lightning here, so the tools that only read a checkpoint start without it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.data.tokenizer import Tokenizer, tokenizer_from_state
from attnlab.errors import CheckpointError, StorageError
from attnlab.model import GPT, EncoderDecoder, ModelConfig, TransformerConfig
from attnlab.model.config import architecture_of
from attnlab.runs.layout import BEST, LAST, checkpoint_file, find_checkpoint
from attnlab.runs.storage import byte_size, free_bytes
from attnlab.system.console import shown_path


def safe_load(path: Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: a checkpoint dict, never code from the file.

    ``mmap=True`` maps the tensors instead of reading them (for a look at the step or the
    hyperparameters). A truncated file, a foreign pickle (one that names a class or function to call) or anything
    not an attnlab checkpoint raises :class:`CheckpointError` with one line.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # truncated file, foreign pickle, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} ({first[:200]}); it is damaged or not an attnlab checkpoint"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{path} is not an attnlab checkpoint (no state_dict / hyper_parameters)")
    return checkpoint


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (from a file or a run folder), loaded on CPU without executing anything."""
    return safe_load(find_checkpoint(path))


def tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor in a checkpoint dict (nested dicts, lists and tuples): about what
    its file needs."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


# A checkpoint of a model of N parameters: fp32 weights and AdamW's two moments (12 N bytes), and a
# little for the rest (RNG states, the tokenizer, the pickle). While it saves, a temporary copy.
CHECKPOINT_BYTES_PER_PARAMETER = 4 + 8
CHECKPOINT_OVERHEAD = 1 << 20


def check_room_for_checkpoints(run: Path, num_parameters: int) -> None:
    """Before training: refuse in one line if the filesystem of ``run`` cannot hold its checkpoints,
    ``best.ckpt``, ``last.ckpt`` and the temporary copy of one of them while it is saved, beyond
    what the run's checkpoints already take (a resumed run replaces them)."""
    each = num_parameters * CHECKPOINT_BYTES_PER_PARAMETER + CHECKPOINT_OVERHEAD
    there = sum(p.stat().st_size for stem in (BEST, LAST) if (p := checkpoint_file(run, stem)).is_file())
    needed, free = 3 * each - there, free_bytes(run)
    if free < needed:
        raise StorageError(
            f"only {byte_size(free)} free on the filesystem of {shown_path(run)}, but its checkpoints need about "
            f"{byte_size(needed)} more (best.ckpt, last.ckpt and a copy being saved, each ~{byte_size(each)}: "
            f"{num_parameters:,} parameters x 12 bytes of fp32 weights and AdamW moments); free some space there, "
            "or train in a folder on another filesystem (hydra.run.dir=<folder>)"
        )


# What the weights depend on, for each architecture. dropout and the attention implementation may
# change between a checkpoint and the run that loads it: same parameters, same function at eval time.
CONFIGS = {"gpt": ModelConfig, "transformer": TransformerConfig}
ARCHITECTURE_KEYS = {
    name: tuple(f.name for f in fields(config) if f.name not in ("dropout", "attention"))
    for name, config in CONFIGS.items()
}


def model_mismatch(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``["d_model 32 -> 64", ...]``: the architecture hyperparameters where ``wanted`` differs
    from ``saved`` (both ``model.*`` dicts of a GPT or an encoder–decoder, defaults filled in)."""
    before, after = architecture_of(saved), architecture_of(wanted)
    if before != after:
        return [f"architecture {before!r} -> {after!r}"]
    config = CONFIGS[before]
    old, new = config.from_dict(dict(saved)), config.from_dict(dict(wanted))
    return [
        f"{k} {getattr(old, k)!r} -> {getattr(new, k)!r}"
        for k in ARCHITECTURE_KEYS[before]
        if getattr(old, k) != getattr(new, k)
    ]


def require_same_model(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse to load checkpoint ``path`` (model hyperparameters ``saved``) into a model built from
    ``wanted`` unless their architectures agree."""
    differ = model_mismatch(saved, wanted)
    if differ:
        raise CheckpointError(
            f"checkpoint {path} holds a different model ({', '.join(differ)}, checkpoint -> config); "
            f"drop the overrides that change it, or train a new run without resume/ckpt_path"
        )


def gpt_config(checkpoint: dict[str, Any]) -> ModelConfig:
    """The GPT's hyperparameters; an encoder–decoder's checkpoint is refused in one line (the
    GPT-only tools read their checkpoint through here)."""
    saved = dict(checkpoint["hyper_parameters"]["model"])
    if architecture_of(saved) != "gpt":
        raise CheckpointError(
            "this checkpoint holds an encoder–decoder (model=transformer), and this tool reads GPT checkpoints "
            'only; translate with it by attnlab generate source="..."'
        )
    return ModelConfig.from_dict(saved)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[GPT, Tokenizer]:
    """The trained GPT (eval mode, CPU) and its tokenizer."""
    cfg = gpt_config(checkpoint)
    model = GPT(cfg)
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights)
    if "tokenizer" not in checkpoint:
        raise CheckpointError("the checkpoint has no tokenizer state; it was not written by attnlab")
    return model.eval(), tokenizer_from_state(checkpoint["tokenizer"])


def seq2seq_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[EncoderDecoder, Seq2SeqVocab]:
    """The trained encoder–decoder (eval mode, CPU) and its vocabulary."""
    model = EncoderDecoder(TransformerConfig.from_dict(dict(checkpoint["hyper_parameters"]["model"])))
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights)
    if "tokenizer" not in checkpoint:
        raise CheckpointError("the checkpoint has no vocabulary state; it was not written by attnlab")
    return model.eval(), Seq2SeqVocab.from_state(checkpoint["tokenizer"])


def load_model(path: str | Path) -> tuple[GPT, Tokenizer]:
    """``load_model(ckpt or run dir)`` -> (GPT in eval mode on CPU, tokenizer)."""
    return model_from_checkpoint(read_checkpoint(path))
