"""A trained model as plain files, and back: no Lightning, no Hydra, no pickle.

An export folder holds

* ``model.safetensors`` — the GPT's weights (the tied embedding/output matrix stored once);
* ``config.json`` — the :class:`attnlab.model.ModelConfig` and where the weights came from;
* ``tokenizer.json`` — the tokenizer: the tiktoken encoding and, for a corpus vocabulary, the
  base id of every model id (``vocab[i]`` is the cl100k id of model id ``i``).

``attnlab export ckpt_path=... out=<dir>`` writes one (:func:`export`); ``attnlab.load(<dir>)``
returns the model and tokenizer (:func:`load`), ready to generate. Config: conf/export.yaml.

``format=hf`` writes the model as a Hugging Face ``transformers`` GPT-2 checkpoint instead, under
the same three names (:mod:`attnlab.tools.export_hf`); :func:`load_tokenizer` reads the
tokenizer.json of either kind.
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
from attnlab.checks import require_choice
from attnlab.data.tokenizer import Tokenizer, tokenizer_from_state
from attnlab.errors import CheckpointError, ConfigError
from attnlab.model import GPT, ModelConfig
from attnlab.runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from attnlab.runs.layout import find_checkpoint
from attnlab.tools.export_hf import write_gpt2

FORMAT = "attnlab-gpt"
FORMAT_VERSION = 1
FILES = ("model.safetensors", "config.json", "tokenizer.json")  # in either format
FORMATS = ("attnlab", "hf")  # format=: attnlab's own (attnlab.load), a transformers GPT-2


def _plain(value: Any) -> Any:
    """A tokenizer state with tensors as lists: JSON-ready."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def export(
    ckpt_path: str | Path | None, out: str | Path | None, overwrite: bool = False, format: str = "attnlab"
) -> Path:
    """Write the checkpoint's model and tokenizer to the folder ``out``, in ``format`` (one of
    :data:`FORMATS`); return ``out``.

    Each file is written atomically (:mod:`attnlab.runs.atomic`), so an interrupted export never
    leaves a half-written one; an existing export (of either format) is replaced only with
    ``overwrite``, and a folder that holds anything else never. A model GPT-2 cannot express is
    refused with ``format=hf`` before anything is written.
    """
    # here, not at the top: attnlab.runs.checkpoint uses Lightning, which load() must not import
    from attnlab.runs.checkpoint import load_model

    require_choice(format, "format", FORMATS)
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
    record = {  # what the weights are and where they came from
        "attnlab_version": attnlab.__version__,
        "model": asdict(model.cfg),
        "source_checkpoint": str(ckpt.resolve()),
    }

    if format == "hf":
        write_gpt2(model, out, record)
    else:
        with atomic_path(out / "model.safetensors") as tmp:
            save_safetensors(model, str(tmp), metadata={"format": "pt"})
        atomic_write_json(out / "config.json", {"format": FORMAT, "format_version": FORMAT_VERSION, **record})
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
    _require_files(folder, FILES)
    config = _read_json(folder / "config.json")
    if config.get("model_type") == "gpt2":
        raise CheckpointError(
            f"{folder} is a transformers GPT-2 export (format=hf); load it with "
            f"transformers.GPT2LMHeadModel.from_pretrained({str(folder)!r}), its tokenizer with "
            f"attnlab.load_tokenizer({str(folder)!r})"
        )
    if config.get("format") != FORMAT or config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder}/config.json is not a format-{FORMAT_VERSION} {FORMAT} export; export it again with this attnlab"
        )
    tokenizer = load_tokenizer(folder)
    model = GPT(ModelConfig.from_dict(config["model"]))
    try:
        load_safetensors(model, str(folder / "model.safetensors"), device=str(device))
    except Exception as err:  # truncated file, other shapes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot load {folder}/model.safetensors ({first}); export it again") from None
    return model.to(device).eval(), tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of an export folder of either format (its tokenizer.json): the ids the model reads.

    >>> tokenizer = attnlab.load_tokenizer("exports/shakespeare-gpt2")
    >>> ids = torch.as_tensor(tokenizer.encode("ROMEO:", respell=True)).long()
    """
    folder = Path(path).expanduser()
    _require_files(folder, ("tokenizer.json",))
    return tokenizer_from_state(_read_json(folder / "tokenizer.json"))


def _require_files(folder: Path, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} is not an attnlab export (no {', '.join(missing)}); "
            f"write one with `attnlab export ckpt_path=<run> out={folder}`"
        )


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file.parent}: damaged {file.name} ({err}); export it again") from None


def main(cfg: Any) -> None:
    """``attnlab export``: export, then list the files and how to load them."""
    out = export(cfg.get("ckpt_path"), cfg.get("out"), overwrite=cfg.overwrite, format=cfg.format)
    sizes = ", ".join(f"{p.name} ({_size(p.stat().st_size)})" for p in sorted(out.iterdir()))
    if cfg.format == "hf":
        how = (
            f"transformers.GPT2LMHeadModel.from_pretrained({str(out)!r}); "
            f"its tokenizer: attnlab.load_tokenizer({str(out)!r})"
        )
    else:
        how = f"attnlab.load({str(out)!r})"
    print(f"exported to {out}: {sizes}\nload it with: {how}", flush=True)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} kB"
