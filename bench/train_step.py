"""Section 1: one training step, attnlab's Lightning training vs a minimal hand-written loop.

Both train the same :class:`attnlab.model.GPT` (same seed, so the same initial weights) on the same
batches (:class:`attnlab.data.RandomWindows` of the run's datamodule) with the same optimizer
(:func:`attnlab.optim.build_adamw`, the warmup-cosine schedule, gradient clipping at 1.0), in the
same process, one after the other. Lightning's side is :func:`attnlab.train.train` itself, as
``python train.py`` runs it (TensorBoard logging, the throughput and NaN callbacks), with
validation and checkpoints switched off, timed by a callback at the end of every batch. A step's
time covers fetching its batch, forward, backward, clipping, the optimizer and everything the
framework does around them; the first steps of each run are not timed (warmup).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F

from attnlab.data import RandomWindows
from attnlab.model import GPT, ModelConfig
from attnlab.optim import OptimConfig, build_adamw, warmup_cosine
from attnlab.runtime import keep_freed_memory
from bench.common import section_main, compose, median

# nanoGPT's CPU recipe (README of karpathy/nanoGPT, shakespeare_char on a laptop), dropout 0
NANOGPT_CPU = ["data/tokenizer=char", "model.num_layers=4", "model.num_heads=4", "model.d_model=128",
               "data.context_length=64", "data.batch_size=12", "model.dropout=0.0"]
SHAPES = {"nanogpt_cpu_char": NANOGPT_CPU, "attnlab_default": []}
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
# validation, checkpoints, progress bar off: the figures are of training steps
TIMING = ["trainer=cpu", "trainer.num_sanity_val_steps=0", "+trainer.limit_val_batches=0",
          "trainer.enable_progress_bar=false", "~callbacks.best_checkpoint",
          "callbacks.last_checkpoint.every_n_train_steps=0", "~callbacks.attention", "~callbacks.samples"]


class StepClock(L.Callback):
    """Wall-clock time at the end of every training batch (the last instance made is kept)."""

    latest: "StepClock | None" = None

    def __init__(self):
        self.times: list[float] = []
        StepClock.latest = self

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())


def per_step(times: list[float], warmup: int) -> float:
    """Seconds per step over the steps after ``warmup`` (times: the end of each step)."""
    return (times[-1] - times[warmup - 1]) / (len(times) - warmup)


def lightning_run(overrides: list[str], steps: int, warmup: int, out_dir: str) -> tuple[float, float]:
    from attnlab.train import train

    cfg = compose(*overrides, *TIMING, f"trainer.max_steps={steps}", f"paths.output_dir={out_dir}",
                  "+callbacks.step_clock._target_=bench.train_step.StepClock")
    metrics = train(cfg)
    return per_step(StepClock.latest.times, warmup), metrics["train/loss"]


def hand_loop(overrides: list[str], precision: str, steps: int, warmup: int) -> tuple[float, float]:
    """The same training, written out: batch, forward, loss, backward, clip, AdamW, schedule."""
    from attnlab.train import build_datamodule

    cfg = compose(*overrides, f"trainer.max_steps={steps}")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    L.seed_everything(cfg.seed, verbose=False)  # as train() does before building the model
    model = GPT(ModelConfig.from_dict({**dict(cfg.model), "vocab_size": dm.vocab_size})).train()
    optim_cfg = OptimConfig.from_dict(dict(cfg.optim))
    optimizer = build_adamw(model, optim_cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, optim_cfg.warmup_steps, steps, optim_cfg.min_lr_ratio))
    windows = RandomWindows(dm.train_ids, dm.context_length, dm.batch_size, cfg.seed)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    times = []
    for k in range(steps):
        x, y = windows.batch(k)  # (B, T), (B, T)
        with autocast:
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        schedule.step()
        times.append(time.perf_counter())
    return per_step(times, warmup), loss.item()


def run(quick: bool = False) -> dict:
    keep_freed_memory()  # as train() does: both loops run with the same allocator settings
    if quick:
        shapes = {"smoke": ["data=seed_sample", "model.d_model=32", "model.num_layers=1", "model.num_heads=2"]}
        precisions, repeats, plan = {"fp32": "32-true"}, 1, {"smoke": (4, 2)}
    else:
        shapes, precisions, repeats = SHAPES, PRECISIONS, 3
        plan = {"nanogpt_cpu_char": (105, 5), "attnlab_default": (35, 5)}  # (steps, of which warmup)
    rows = []
    for shape, overrides in shapes.items():
        steps, warmup = plan[shape]
        for name, precision in precisions.items():
            runs = {"lightning": [], "hand": []}
            losses = {}
            for _ in range(repeats):
                with tempfile.TemporaryDirectory() as out_dir:
                    seconds, losses["lightning"] = lightning_run(
                        [*overrides, f"trainer.precision={precision}"], steps, warmup, out_dir)
                runs["lightning"].append(seconds)
                seconds, losses["hand"] = hand_loop(overrides, precision, steps, warmup)
                runs["hand"].append(seconds)
            cfg = compose(*overrides)
            tokens = cfg.data.batch_size * cfg.data.context_length
            row = {"shape": shape, "precision": name, "steps_timed": steps - warmup, "repeats": repeats,
                   "tokens_per_step": tokens, "final_loss": losses}
            for loop, seconds in runs.items():
                row[f"{loop}_ms"] = 1e3 * median(seconds)
                row[f"{loop}_tokens_per_s"] = tokens / median(seconds)
                row[f"{loop}_all_ms"] = [1e3 * s for s in seconds]
            row["overhead_pct"] = 100 * (row["lightning_ms"] / row["hand_ms"] - 1)
            rows.append(row)
            print(f"  train step {shape:17s} {name}: lightning {row['lightning_ms']:8.2f} ms, hand {row['hand_ms']:8.2f} ms "
                  f"({row['overhead_pct']:+.1f}%)  loss {losses['lightning']:.4f} / {losses['hand']:.4f}", flush=True)
    return {"rows": rows}


def table(result: dict) -> str:
    lines = [
        "attnlab's Lightning training (`attnlab.train.train`, validation and checkpoints off) against a "
        "hand-written loop over the same model, batches and optimizer, in one process; each figure the median "
        "of the repeats' mean step time after warmup. `nanogpt_cpu_char`: nanoGPT's CPU recipe (`data/tokenizer=char`, "
        "4 layers, 4 heads, d_model 128, context 64, batch 12, dropout 0); `attnlab_default`: `python train.py` "
        "(cl100k corpus vocabulary, batch 16). bf16: autocast (`trainer.precision=bf16-mixed`). The last column: "
        "the training loss of the last step, Lightning / hand (same weights and batches: equal up to rounding).",
        "",
        "| config | precision | Lightning ms/step | hand loop ms/step | Lightning tokens/s | hand loop tokens/s | "
        "Lightning overhead | loss after the run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['shape']} | {r['precision']} | {r['lightning_ms']:.1f} | {r['hand_ms']:.1f} | "
            f"{r['lightning_tokens_per_s']:,.0f} | {r['hand_tokens_per_s']:,.0f} | {r['overhead_pct']:+.1f}% | "
            f"{r['final_loss']['lightning']:.4f} / {r['final_loss']['hand']:.4f} |")
    r0 = result["rows"][0]
    lines += ["", f"{r0['repeats']} repeats of {r0['steps_timed']}+ timed steps per config (fewer steps for the "
                  "slower default config to keep `make bench` near 5 minutes on 2 cores); torch.compile not measured yet."]
    return "\n".join(lines)


if __name__ == "__main__":
    section_main("bench.train_step")
