"""``attnlab eval``: a checkpoint and a text in, ``loss``, ``ppl`` and ``bpb`` out (printed and saved).

The text is cut into the same fixed, non-overlapping windows as validation during training
(:class:`attnlab.data.windows.SequentialWindows`: every token after the first predicted exactly
once) and run through Lightning's ``validate`` with :class:`attnlab.training.lit_gpt.LitGPT`'s own
validation step, so the figures are the training run's ``val/*`` metrics. Config: conf/eval.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from attnlab.checks import require_int
from attnlab.data.corpus import read_corpus
from attnlab.data.datamodule import run_validation_ids
from attnlab.data.tokenizer import Tokenizer
from attnlab.data.windows import SequentialWindows
from attnlab.errors import DataError
from attnlab.runs import layout
from attnlab.runs.atomic import atomic_write_json
from attnlab.runs.checkpoint import model_from_checkpoint, read_checkpoint
from attnlab.system.console import shown_path, tidy_output
from attnlab.system.hardware import best_precision
from attnlab.system.memory import keep_freed_memory
from attnlab.training.lit_gpt import LitGPT


def trained_precision(run_dir: Path, accelerator: str) -> str:
    """The precision the run in ``run_dir`` trained (and validated) with, from its ``config.yaml``;
    the device's best (:func:`attnlab.system.hardware.best_precision`) for a checkpoint without one."""
    config = layout.config_file(run_dir)
    if config.is_file():
        precision = OmegaConf.load(config).get("trainer", {}).get("precision")
        if precision is not None:
            return str(precision)
    return best_precision(accelerator)


def text_ids(path: str, tokenizer: Tokenizer, text_field: str = "text") -> np.ndarray:
    """The ids of a file or folder of text (any format ``data.path`` reads; records' ``text_field``)
    under the checkpoint's tokenizer (respelled where needed), its documents joined as training
    joins them: by the end-of-text token, or by a blank line when the run's corpus was one
    document and its vocabulary has no such token."""
    corpus = read_corpus(path, text_field=text_field)
    eot = getattr(tokenizer, "eot_id", None)
    if eot is None:
        return tokenizer.encode(corpus.text, respell=True)
    pieces = []
    for n, document in enumerate(corpus.documents):
        if n:
            pieces.append(np.array([eot], dtype=np.int64))  # (1,) between documents
        pieces.append(np.asarray(tokenizer.encode(document, respell=True), dtype=np.int64))  # (len,)
    return np.concatenate(pieces)


@dataclass
class TextToEvaluate:
    """The token ids a tool measures the model on, and how to name them."""

    name: str  # in file names: "val", or the text file's stem
    source: str  # in error lines
    shown: str  # in the printed line (relative to the working folder where it can be)
    ids: np.ndarray


def text_to_evaluate(data: Any, run_dir: Path, tokenizer: Tokenizer) -> TextToEvaluate:
    """The text at ``data.path`` (a file or folder, records' ``data.text_field``), or with
    ``data.path`` null the validation split of the run in ``run_dir``, rebuilt from its
    ``config.yaml``; as the checkpoint's ``tokenizer``'s ids."""
    path = None if data.get("path") is None else str(data.path)
    if path is None:
        ids = run_validation_ids(run_dir, tokenizer, instead="pass data.path=<file or folder> to use another text")
        return TextToEvaluate("val", f"{run_dir} validation split", f"{shown_path(run_dir)} validation split", ids)
    return TextToEvaluate(Path(path).stem, path, path, text_ids(path, tokenizer, str(data.get("text_field", "text"))))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as ``cfg`` (conf/eval.yaml) says; print one line, save and return the figures."""
    tidy_output()
    if cfg.get("system", {}).get("keep_freed_memory", False):
        keep_freed_memory()  # each batch's (B, T, V) logits reuse the heap instead of fresh pages
    ckpt = layout.find_checkpoint(cfg.ckpt_path)
    run_dir = layout.run_of_checkpoint(ckpt)
    checkpoint = read_checkpoint(ckpt)
    model, tokenizer = model_from_checkpoint(checkpoint)
    module = LitGPT(model=dict(checkpoint["hyper_parameters"]["model"]), tokenizer=tokenizer)
    module.model.load_state_dict(model.state_dict())
    T = module.model_cfg.context_length

    batch_size = cfg.data.batch_size
    require_int(batch_size, "data.batch_size")
    text = text_to_evaluate(cfg.data, run_dir, tokenizer)
    if len(text.ids) < T + 1:
        raise DataError(
            f"{text.source} has {len(text.ids)} tokens; evaluation needs at least context_length+1 = {T + 1}; "
            "use a longer text"
        )
    windows = SequentialWindows(text.ids, T)
    loader = DataLoader(windows, batch_size=batch_size, shuffle=False)

    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_args.get("precision") is None:  # as the run computed its val figures, so they reproduce
        trainer_args["precision"] = trained_precision(run_dir, str(trainer_args.get("accelerator", "auto")))
    trainer = L.Trainer(**trainer_args, logger=False, enable_checkpointing=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, dataloaders=loader, verbose=False)
    result = {
        "loss": float(metrics["val/loss"]),
        "ppl": float(metrics["val/ppl"]),
        "bpb": float(metrics["val/bpb"]),
        "tokens": int(len(text.ids) - 1),  # predicted tokens: all but the first
        "windows": len(windows),
        "context_length": T,
        "checkpoint": str(ckpt),
        "data": text.source,
    }
    out = Path(cfg.out) if cfg.out is not None else run_dir / layout.EVAL_DIR / f"{ckpt.stem}-{text.name}.json"
    atomic_write_json(out, result)
    print(
        f"eval {ckpt.name} on {text.shown}: loss {result['loss']:.4f}  ppl {result['ppl']:.2f}  "
        f"bpb {result['bpb']:.4f}  ({result['tokens']:,} tokens) -> {shown_path(out)}",
        flush=True,
    )
    return result


def main(cfg: DictConfig) -> float:
    """``attnlab eval``: the final bpb (what a sweeper over checkpoints would minimise)."""
    return evaluate(cfg)["bpb"]
