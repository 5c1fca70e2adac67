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
from attnlab.lit_module import compiled_forward, split_runtime_options
from attnlab.model import GPT, ModelConfig
from attnlab.optim import OptimConfig, build_adamw, warmup_cosine
from attnlab.runtime import keep_freed_memory
from bench import fresh
from bench.common import compose, median

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
    """Wall-clock time at the start of the first training batch and at the end of every batch
    (the last instance made is kept)."""

    latest: "StepClock | None" = None

    def __init__(self):
        self.started: float | None = None
        self.times: list[float] = []
        StepClock.latest = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())


def step_times(started: float, times: list[float], warmup: int, loss: float) -> dict:
    """Seconds per step over the steps after ``warmup`` (times: the end of each step), and the
    first step's seconds (with ``torch.compile``: the compilation)."""
    return {"seconds": (times[-1] - times[warmup - 1]) / (len(times) - warmup),
            "first_step_s": times[0] - started, "loss": loss}


def lightning_run(overrides: list[str], steps: int, warmup: int) -> dict:
    from attnlab.train import train

    with tempfile.TemporaryDirectory() as out_dir:
        cfg = compose(*overrides, *TIMING, f"trainer.max_steps={steps}", f"paths.output_dir={out_dir}",
                      "+callbacks.step_clock._target_=bench.train_step.StepClock")
        metrics = train(cfg)
    return step_times(StepClock.latest.started, StepClock.latest.times, warmup, metrics["train/loss"])


def hand_loop(overrides: list[str], steps: int, warmup: int) -> dict:
    """The same training, written out: batch, forward, loss, backward, clip, AdamW, schedule
    (``model.compile=true``: the forward compiled as LitGPT compiles it)."""
    from attnlab.train import build_datamodule

    cfg = compose(*overrides, f"trainer.max_steps={steps}")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    L.seed_everything(cfg.seed, verbose=False)  # as train() does before building the model
    model_dict, compile_ = split_runtime_options(dict(cfg.model))
    model = GPT(ModelConfig.from_dict({**model_dict, "vocab_size": dm.vocab_size})).train()
    forward = compiled_forward(model) if compile_ else model
    optim_cfg = OptimConfig.from_dict(dict(cfg.optim))
    optimizer = build_adamw(model, optim_cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, optim_cfg.warmup_steps, steps, optim_cfg.min_lr_ratio))
    windows = RandomWindows(dm.train_ids, dm.context_length, dm.batch_size, cfg.seed)
    bf16 = cfg.trainer.precision == "bf16-mixed"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    started, times = time.perf_counter(), []
    for k in range(steps):
        x, y = windows.batch(k)  # (B, T), (B, T)
        with autocast:
            logits = forward(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        schedule.step()
        times.append(time.perf_counter())
    return step_times(started, times, warmup, loss.item())


def measure(loop: str, overrides: list[str], steps: int, warmup: int) -> dict:
    """One run of ``loop`` ("lightning" or "hand"); the process's allocator set as train() sets it."""
    keep_freed_memory()  # as train() does: both loops run with the same allocator settings
    return (lightning_run if loop == "lightning" else hand_loop)(overrides, steps, warmup)


def run(quick: bool = False) -> dict:
    if quick:
        shapes = {"smoke": ["data=seed_sample", "model.d_model=32", "model.num_layers=1", "model.num_heads=2"]}
        variants = {("fp32", False): "32-true", ("fp32", True): "32-true"}
        repeats, plan = {False: 1, True: 1}, {"smoke": (4, 2)}
    else:
        shapes = SHAPES
        variants = {(name, compile_): precision for compile_ in (False, True) for name, precision in PRECISIONS.items()}
        repeats = {False: 5, True: 1}  # a compiled run pays its compilation first (tens of seconds)
        plan = {"nanogpt_cpu_char": (105, 5), "attnlab_default": (35, 5)}  # (steps, of which warmup)
    rows = []
    for shape, shape_overrides in shapes.items():
        for (name, compile_), precision in variants.items():
            steps, warmup = plan[shape]
            if compile_:  # the compiled code may settle over a few more steps (recompiles)
                steps, warmup = steps + 5, warmup + 5
            overrides = [*shape_overrides, f"trainer.precision={precision}", f"model.compile={str(compile_).lower()}"]
            runs = {"lightning": [], "hand": []}
            for k in range(repeats[compile_]):
                # compiled, full mode: each run in a new process (no recompilation limit reached by earlier
                # runs) with an inductor cache that is empty for Lightning (the compilation a user's first
                # run pays) and holds Lightning's kernels for the hand loop (a second run's). Quick mode
                # compiles in this process (two compilations, far from the limit) to keep the smoke test short.
                # Without compile the loops take turns going first, so a drift of the machine's speed
                # during a pair does not always fall on the same loop.
                order = ("lightning", "hand") if compile_ or k % 2 == 0 else ("hand", "lightning")
                with tempfile.TemporaryDirectory() as cache:
                    for loop in order:
                        if compile_ and not quick:
                            env = {"TORCHINDUCTOR_CACHE_DIR": cache}
                            runs[loop].append(fresh.call("bench.train_step:measure", env=env, loop=loop,
                                                         overrides=overrides, steps=steps, warmup=warmup))
                        else:
                            runs[loop].append(measure(loop, overrides, steps, warmup))
            cfg = compose(*shape_overrides)
            tokens = cfg.data.batch_size * cfg.data.context_length
            row = {"shape": shape, "precision": name, "compile": compile_, "steps_timed": steps - warmup, "warmup_steps": warmup,
                   "repeats": repeats[compile_], "tokens_per_step": tokens,
                   "final_loss": {loop: results[-1]["loss"] for loop, results in runs.items()}}
            for loop, results in runs.items():
                seconds = median([r["seconds"] for r in results])
                row[f"{loop}_ms"] = 1e3 * seconds
                row[f"{loop}_tokens_per_s"] = tokens / seconds
                row[f"{loop}_all_ms"] = [1e3 * r["seconds"] for r in results]
                row[f"{loop}_first_step_s"] = median([r["first_step_s"] for r in results])
            # each repeat is a pair run back to back: the median of the pairs' ratios cancels the machine's
            # slower drift (a shared 2-core machine's speed moves 5-10% over minutes)
            row["pair_overhead_pct"] = [100 * (lit["seconds"] / hand["seconds"] - 1)
                                        for lit, hand in zip(runs["lightning"], runs["hand"])]
            row["overhead_pct"] = median(row["pair_overhead_pct"])
            rows.append(row)
            print(f"  train step {shape:17s} {variant(row):13s}: lightning {row['lightning_ms']:8.2f} ms, hand "
                  f"{row['hand_ms']:8.2f} ms ({row['overhead_pct']:+.1f}%)  first step {row['lightning_first_step_s']:.1f} / "
                  f"{row['hand_first_step_s']:.1f} s  loss {row['final_loss']['lightning']:.4f} / "
                  f"{row['final_loss']['hand']:.4f}", flush=True)
    return {"rows": rows}


def pair_range(row: dict) -> str:
    pairs = row.get("pair_overhead_pct", [])
    return f"{min(pairs):+.1f}% … {max(pairs):+.1f}%" if len(pairs) > 1 else ""


def variant(row: dict) -> str:
    return row["precision"] + (" + compile" if row.get("compile") else "")


def table(result: dict) -> str:
    lines = [
        "attnlab's Lightning training (`attnlab.train.train`, validation and checkpoints off) against a "
        "hand-written loop over the same model, batches and optimizer; each figure the median "
        "of the repeats' mean step time after warmup. Lightning overhead: the median over the repeats of each "
        "pair's ratio (a Lightning run and a hand-loop run back to back, taking turns going first), with the "
        "pairs' range. `nanogpt_cpu_char`: nanoGPT's CPU recipe (`data/tokenizer=char`, "
        "4 layers, 4 heads, d_model 128, context 64, batch 12, dropout 0); `attnlab_default`: `python train.py` "
        "(cl100k corpus vocabulary, batch 16). bf16: autocast (`trainer.precision=bf16-mixed`). compile: "
        "`model.compile=true` (the forward through `torch.compile`, inductor; the hand loop compiles it the same "
        "way), each run in a new process; its first step, which compiles the forward and the backward, is not in "
        "ms/step but in its own column: Lightning's with an empty inductor cache (a first run), the hand loop's "
        "with the cache Lightning's run filled (a later run of the same shapes). The last column: the training loss of the last "
        "step, Lightning / hand (same weights and batches: equal up to rounding).",
        "",
        "| config | precision | Lightning ms/step | hand loop ms/step | Lightning tokens/s | hand loop tokens/s | "
        "Lightning overhead | pairs' range | first step (s), Lightning / hand | loss after the run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['shape']} | {variant(r)} | {r['lightning_ms']:.1f} | {r['hand_ms']:.1f} | "
            f"{r['lightning_tokens_per_s']:,.0f} | {r['hand_tokens_per_s']:,.0f} | {r['overhead_pct']:+.1f}% | "
            f"{pair_range(r)} | {r['lightning_first_step_s']:.1f} / {r['hand_first_step_s']:.1f} | "
            f"{r['final_loss']['lightning']:.4f} / {r['final_loss']['hand']:.4f} |")
    plain = [r for r in result["rows"] if not r.get("compile")]
    compiled = [r for r in result["rows"] if r.get("compile")]
    lines += ["", f"Without compile: {plain[0]['repeats']} repeats (each loop in turn, one process) of "
                  f"{', '.join(sorted({str(r['steps_timed']) for r in plain}))} timed steps per config (fewer for the "
                  "slower default config, to keep `make bench` short on 2 cores)."
              + (f" With compile: {compiled[0]['repeats']} run per loop of "
                 f"{', '.join(sorted({str(r['steps_timed']) for r in compiled}))} timed steps after "
                 f"{compiled[0]['warmup_steps']} warmup steps (5 more than without)." if compiled else "")]
    return "\n".join(lines)
