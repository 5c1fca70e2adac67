"""A trained model as plain files, and back: no Lightning, no Hydra, no pickle.

An export folder holds

* ``model.safetensors`` — the GPT's weights (the tied embedding/output matrix stored once);
* ``config.json`` — the :class:`attnlab.model.ModelConfig` and where the weights came from;
* ``tokenizer.json`` — the tokenizer: the tiktoken encoding and, for a corpus vocabulary, the
  base id of every model id (``vocab[i]`` is the cl100k id of model id ``i``).

``attnlab export ckpt_path=... out=<dir>`` writes one (:func:`export`); ``attnlab.load(<dir>)``
returns the model and tokenizer (:func:`load`), ready to generate. Config: conf/export.yaml.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

import attnlab
from attnlab.data.tokenizer import Tokenizer, tokenizer_from_state
from attnlab.errors import CheckpointError, ConfigError
from attnlab.model import GPT, ModelConfig
from attnlab.runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from attnlab.runs.layout import find_checkpoint

FORMAT = "attnlab-gpt"
FORMAT_VERSION = 1
FILES = ("model.safetensors", "config.json", "tokenizer.json")


def _plain(value: Any) -> Any:
    """A tokenizer state with tensors as lists: JSON-ready."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def export(ckpt_path: str | Path | None, out: str | Path | None, overwrite: bool = False) -> Path:
    """Write the checkpoint's model and tokenizer to the folder ``out``; return ``out``.

    Each file is written atomically (:mod:`attnlab.runs.atomic`), so an interrupted export never
    leaves a half-written one; an existing export is replaced only with ``overwrite``, and a folder
    that holds anything else never.
    """
    # here, not at the top: attnlab.runs.checkpoint uses Lightning, which load() must not import
    from attnlab.runs.checkpoint import load_model

    ckpt = find_checkpoint(ckpt_path)
    if not out:
        raise ConfigError("no export folder given; pass out=<folder>, e.g. out=exports/shakespeare")
    out = Path(out).expanduser()
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"out={out} is a file; pass a folder for the export")
        others = sorted(p.name for p in out.iterdir() if p.name not in FILES)
        if others:
            raise ConfigError(f"out={out} holds other files ({', '.join(others[:4])}); pass a new or empty folder")
        if any(out.iterdir()) and not overwrite:
            raise ConfigError(f"out={out} already holds an export; pass overwrite=true to replace it, or another out")
    model, tokenizer = load_model(ckpt)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "attnlab_version": attnlab.__version__,
        "model": asdict(model.cfg),
        "source_checkpoint": str(ckpt.resolve()),
    }

    with atomic_path(out / "model.safetensors") as tmp:
        save_safetensors(model, str(tmp), metadata={"format": "pt"})
    atomic_write_json(out / "config.json", config)
    atomic_write_text(
        out / "tokenizer.json", json.dumps(_plain(tokenizer.state_dict())) + "\n"
    )  # compact: the vocabulary
    return out


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` from an export folder: the GPT in eval mode on ``device``.

    >>> model, tokenizer = attnlab.load("exports/shakespeare")
    >>> ids = torch.as_tensor(tokenizer.encode("ROMEO:", respell=True)).long()
    >>> text = tokenizer.decode([int(t) for t in attnlab.model.generate(model, ids, 50)])
    """
    folder = Path(path).expanduser()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} is not an attnlab export (no {', '.join(missing)}); "
            f"write one with `attnlab export ckpt_path=<run> out={folder}`"
        )
    try:
        config = json.loads((folder / "config.json").read_text())
        tokenizer_state = json.loads((folder / "tokenizer.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{folder}: damaged config.json or tokenizer.json ({err}); export it again") from None
    if config.get("format") != FORMAT or config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder}/config.json is not a format-{FORMAT_VERSION} {FORMAT} export; export it again with this attnlab"
        )
    model = GPT(ModelConfig.from_dict(config["model"]))
    try:
        load_safetensors(model, str(folder / "model.safetensors"), device=str(device))
    except Exception as err:  # truncated file, other shapes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot load {folder}/model.safetensors ({first}); export it again") from None
    return model.to(device).eval(), tokenizer_from_state(tokenizer_state)


def main(cfg: Any) -> None:
    """``attnlab export``: export, then list the files and how to load them."""
    out = export(cfg.get("ckpt_path"), cfg.get("out"), overwrite=cfg.overwrite)
    sizes = ", ".join(f"{p.name} ({_size(p.stat().st_size)})" for p in sorted(out.iterdir()))
    print(f"exported to {out}: {sizes}\nload it with: attnlab.load({str(out)!r})", flush=True)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} kB"
