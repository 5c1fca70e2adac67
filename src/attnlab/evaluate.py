"""The eval task: a checkpoint and a text in, ``loss``, ``ppl`` and ``bpb`` out (printed and saved).

The text is cut into the same fixed, non-overlapping windows as validation during training
(:class:`attnlab.data.SequentialWindows`: every token after the first predicted exactly once) and
run through Lightning's ``validate`` with :class:`attnlab.lit_module.LitGPT`'s own validation
step, so the figures are the training run's ``val/*`` metrics. ``eval.py`` at the repository root
is the thin Hydra entry point that calls :func:`evaluate`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from attnlab.checkpoint import model_from_checkpoint, read_checkpoint, resolve_checkpoint, run_dir_of
from attnlab.cli import tidy_output
from attnlab.corpus import read_corpus
from attnlab.data import SequentialWindows
from attnlab.errors import CheckpointError, ConfigError, DataError
from attnlab.hardware import best_precision
from attnlab.lit_module import LitGPT
from attnlab.runtime import keep_freed_memory
from attnlab.tokenizer import Tokenizer
from attnlab.train import build_datamodule


def run_val_ids(run_dir: Path, tokenizer: Tokenizer,
                instead: str = "pass data.path=<file or folder> to evaluate a text") -> np.ndarray:
    """The validation split of the run in ``run_dir``, rebuilt from its resolved ``config.yaml``
    (also used by attend.py); ``instead`` is the fix the error lines offer."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise CheckpointError(f"no config.yaml in {run_dir} to rebuild the run's validation split; {instead}")
    datamodule = build_datamodule(OmegaConf.load(config))
    datamodule.setup("validate")
    if not _same_vocabulary(datamodule.tokenizer, tokenizer):
        raise DataError(f"the corpus of {run_dir} has changed since training (its vocabulary differs from the "
                        f"checkpoint's); {instead}")
    return datamodule.val_ids


def _same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(torch.equal(sa[k], sb[k]) if isinstance(sa[k], torch.Tensor) else sa[k] == sb[k] for k in sa)


def trained_precision(run_dir: Path, accelerator: str) -> str:
    """The precision the run in ``run_dir`` trained (and validated) with, from its ``config.yaml``;
    the device's best (:func:`attnlab.hardware.best_precision`) for a checkpoint without one."""
    config = run_dir / "config.yaml"
    if config.is_file():
        precision = OmegaConf.load(config).get("trainer", {}).get("precision")
        if precision is not None:
            return str(precision)
    return best_precision(accelerator)


def text_ids(path: str, tokenizer: Tokenizer) -> np.ndarray:
    """The ids of a file or folder of text under the checkpoint's tokenizer (respelled where needed)."""
    return tokenizer.encode(read_corpus(path).text, respell=True)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as ``cfg`` (conf/eval.yaml) says; print one line, save and return the figures."""
    tidy_output()
    if cfg.get("system", {}).get("keep_freed_memory", False):
        keep_freed_memory()  # each batch's (B, T, V) logits reuse the heap instead of fresh pages
    ckpt = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt)
    model, tokenizer = model_from_checkpoint(checkpoint)
    module = LitGPT(model=dict(checkpoint["hyper_parameters"]["model"]), tokenizer=tokenizer)
    module.model.load_state_dict(model.state_dict())
    T = module.model_cfg.context_length

    batch_size = cfg.data.batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"data.batch_size must be a positive integer, got {batch_size!r}")
    if cfg.data.path is None:
        name, source, ids = "val", f"{run_dir_of(ckpt)} validation split", run_val_ids(run_dir_of(ckpt), tokenizer)
    else:
        name, source, ids = Path(str(cfg.data.path)).stem, str(cfg.data.path), text_ids(str(cfg.data.path), tokenizer)
    if len(ids) < T + 1:
        raise DataError(f"{source} has {len(ids)} tokens; evaluation needs at least context_length+1 = {T + 1}; "
                        f"use a longer text")
    windows = SequentialWindows(ids, T)
    loader = DataLoader(windows, batch_size=batch_size, shuffle=False)

    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_args.get("precision") is None:  # as the run computed its val figures, so they reproduce
        trainer_args["precision"] = trained_precision(run_dir_of(ckpt), str(trainer_args.get("accelerator", "auto")))
    trainer = L.Trainer(**trainer_args, logger=False, enable_checkpointing=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, dataloaders=loader, verbose=False)
    result = {
        "loss": float(metrics["val/loss"]),
        "ppl": float(metrics["val/ppl"]),
        "bpb": float(metrics["val/bpb"]),
        "tokens": int(len(ids) - 1),  # predicted tokens: all but the first
        "windows": len(windows),
        "context_length": T,
        "checkpoint": str(ckpt),
        "data": source,
    }
    out = Path(cfg.out) if cfg.out is not None else run_dir_of(ckpt) / "eval" / f"{ckpt.stem}-{name}.json"
    write_json(out, result)
    print(f"eval {ckpt.name} on {source}: loss {result['loss']:.4f}  ppl {result['ppl']:.2f}  "
          f"bpb {result['bpb']:.4f}  ({result['tokens']:,} tokens) -> {out}", flush=True)
    return result


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` to ``path`` atomically: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(values, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
