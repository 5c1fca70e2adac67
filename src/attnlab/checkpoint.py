"""Finding and reading attnlab checkpoints outside training (attend, generate, eval, export).

A checkpoint is Lightning's dict: ``state_dict`` (the LitGPT's tensors, model under ``model.``),
``hyper_parameters`` (``model`` and ``optim`` dicts), ``tokenizer`` (attnlab's tokenizer state)
and the trainer's own state. It is read with ``torch.load(weights_only=True)``: tensors and plain
containers only, so opening a checkpoint never runs code stored in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attnlab.errors import CheckpointError
from attnlab.model import GPT, ModelConfig
from attnlab.tokenizer import Tokenizer, tokenizer_from_state


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a file path or a run folder (its ``checkpoints/best.ckpt``,
    else ``checkpoints/last.ckpt``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise CheckpointError(f"no checkpoints/best.ckpt or checkpoints/last.ckpt in {p}; pass a run folder or a .ckpt file")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a run folder or a .ckpt file")
    return p


def run_dir_of(ckpt: Path) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` -> ``<run>``)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded on CPU without executing anything from the file."""
    p = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {p} ({first}); it is damaged or not an attnlab checkpoint") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{p} is not an attnlab checkpoint (no state_dict / hyper_parameters)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[GPT, Tokenizer]:
    """The trained GPT (eval mode, CPU) and its tokenizer."""
    cfg = ModelConfig.from_dict(dict(checkpoint["hyper_parameters"]["model"]))
    model = GPT(cfg)
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights)
    if "tokenizer" not in checkpoint:
        raise CheckpointError("the checkpoint has no tokenizer state; it was not written by attnlab")
    return model.eval(), tokenizer_from_state(checkpoint["tokenizer"])


def load_model(path: str | Path) -> tuple[GPT, Tokenizer]:
    """``load_model(ckpt or run dir)`` -> (GPT in eval mode on CPU, tokenizer)."""
    return model_from_checkpoint(read_checkpoint(path))
