"""Section 7: the ``heads`` callback's cost per validation — one measurement of
:class:`attnlab.observe.head_scores.HeadScores` (its forward passes, then drawing and writing one
image per score) against one full validation pass, both of the default config (model, data,
precision, callback options) in the same process.

Untrained weights (seeded): neither a forward pass nor a drawing takes longer for other values."""

from __future__ import annotations

import tempfile
import time

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger

from attnlab.data.datamodule import TextDataModule
from attnlab.observe.head_scores import measure
from attnlab.observe.heads import SCORES
from attnlab.system.console import tidy_output
from attnlab.system.memory import keep_freed_memory
from attnlab.training.lit_gpt import LitGPT
from bench.common import compose, median

QUICK = ["data=seed_sample", "model.d_model=32", "model.num_layers=1", "model.num_heads=2"]


class ValidationClock(L.Callback):
    """The seconds of each validation loop, as a run pays it (the trainer's own setup left out)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_validation_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def run(quick: bool = False) -> dict:
    cfg = compose(*(QUICK if quick else []))
    repeats = 1 if quick else 3
    tidy_output()
    if cfg.system.keep_freed_memory:
        keep_freed_memory()  # as train() does: the run's allocator settings
    datamodule = TextDataModule.from_config(cfg)
    datamodule.setup("fit")
    torch.manual_seed(0)
    module = LitGPT(
        model={**cfg.model, "vocab_size": datamodule.vocab_size}, optim=dict(cfg.optim), tokenizer=datamodule.tokenizer
    )
    heads = instantiate(cfg.callbacks.heads)  # not in the trainer: validation is timed without it
    clock = ValidationClock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=1,
            precision=cfg.trainer.precision,
            logger=TensorBoardLogger(tmp, name="tensorboard", version=""),
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            callbacks=[clock],
        )
        rounds = []  # (validation, scores, callback) seconds, interleaved: a busy machine slows all three alike
        for step in range(repeats + 1):  # round 0: a warm-up (first kernels, matplotlib's import and font scan)
            trainer.validate(module, datamodule=datamodule, verbose=False)
            heads.setup(trainer, module, "validate")
            start = time.perf_counter()
            with trainer.precision_plugin.forward_context():
                measure(module.model, heads.probe)
            scores = time.perf_counter() - start
            start = time.perf_counter()
            heads.log_at(trainer, module, step)  # a new step each round: the callback measures a step once
            rounds.append((clock.seconds[-1], scores, time.perf_counter() - start))
    timed = rounds[1:]
    validation_s, scores_s, callback_s = (median([r[k] for r in timed]) for k in range(3))
    result = {
        "precision": str(cfg.trainer.precision),
        "d_model": module.model.cfg.d_model,
        "num_layers": module.model.cfg.num_layers,
        "num_heads": module.model.cfg.num_heads,
        "context_length": module.model.cfg.context_length,
        "vocab_size": datamodule.vocab_size,
        "val_tokens": int(len(datamodule.val_ids)),
        "val_batches": len(datamodule.val_dataloader()),
        "val_batch_size": int(cfg.data.batch_size),
        "batch_size": heads.batch_size,
        "in_context_windows": heads.in_context_windows,
        "images": len(SCORES),
        "repeats": repeats,
        "validation_s": validation_s,
        "scores_s": scores_s,
        "callback_s": callback_s,
        "share": median([callback / validation for validation, _, callback in timed]),
    }
    print(
        f"  head_scores: validation {validation_s:.2f} s, scores {scores_s:.3f} s, callback {callback_s:.2f} s "
        f"({100 * result['share']:.1f}%)",
        flush=True,
    )
    return result


def table(result: dict) -> str:
    r = result
    lines = [
        f"`callbacks.heads` at one validation of the default config (d_model {r['d_model']}, {r['num_heads']} heads, "
        f"{r['num_layers']} layers, context {r['context_length']}, vocabulary {r['vocab_size']:,}, {r['precision']}), "
        f"untrained weights, median of {r['repeats']} rounds of the three, interleaved. Scores: the forward passes on {r['batch_size']} validation "
        f"windows, {r['batch_size']} repeated random sequences and {r['in_context_windows']} pairs of windows for "
        f"`in_context` ({r['batch_size']} windows at a time); the callback: those, then the scalars and {r['images']} images drawn and "
        f"written to TensorBoard. Against the run's own validation pass ({r['val_tokens']:,} tokens, "
        f"{r['val_batches']} batches of {r['val_batch_size']}).",
        "",
        "| per validation | seconds | share of the validation pass |",
        "| --- | ---: | ---: |",
        f"| validation pass | {r['validation_s']:.2f} | 100% |",
        f"| `heads`: the scores' forward passes | {r['scores_s']:.3f} | {100 * r['scores_s'] / r['validation_s']:.1f}% |",
        f"| `heads`: all of it (with the images) | {r['callback_s']:.2f} | {100 * r['share']:.1f}% |",
    ]
    return "\n".join(lines)
