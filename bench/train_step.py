"""Section 1: one training step, attnlab's Lightning training vs a minimal hand-written loop.

Both train the same :class:`attnlab.model.GPT` (same seed, so the same initial weights) on the same
batches (:class:`attnlab.data.windows.RandomWindows` of the run's datamodule) with the same optimizer
(:func:`attnlab.training.optim.build_adamw`, the warmup-cosine schedule, gradient clipping at 1.0), in the
same process, taking turns step by step: after Lightning's step k a callback runs the hand loop's
step k and times it apart, and that time is taken out of Lightning's clock. So the two see the
same machine at the same moment (a shared 2-core machine's speed drifts by 5-10% within seconds,
more than the 5% target), not one run after the other. With ``torch.compile`` each repeat runs
in a new process (compilation caches and limits). Lightning's side is :func:`attnlab.training.task.train` itself, as
``python train.py`` runs it (TensorBoard logging, the throughput and NaN callbacks), with
validation and checkpoints switched off, timed by a callback at the end of every batch. A step's
time covers fetching its batch, forward, backward, clipping, the optimizer and everything the
framework does around them; the first steps of each run are not timed (warmup).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F

from attnlab.data.windows import RandomWindows
from attnlab.model import GPT, ModelConfig
from attnlab.system.memory import keep_freed_memory
from attnlab.training.lit_gpt import compiled_forward, split_runtime_options
from attnlab.training.optim import OptimConfig, build_adamw
from attnlab.training.schedule import warmup_cosine
from bench import fresh
from bench.common import compose, median

# nanoGPT's CPU recipe (README of karpathy/nanoGPT, shakespeare_char on a laptop), dropout 0
NANOGPT_CPU = [
    "data/tokenizer=char",
    "model.num_layers=4",
    "model.num_heads=4",
    "model.d_model=128",
    "data.context_length=64",
    "data.batch_size=12",
    "model.dropout=0.0",
]
SHAPES = {"nanogpt_cpu_char": NANOGPT_CPU, "attnlab_default": []}
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
# validation, checkpoints, progress bar off: the figures are of training steps
TIMING = [
    "trainer=cpu",
    "trainer.num_sanity_val_steps=0",
    "+trainer.limit_val_batches=0",
    "trainer.enable_progress_bar=false",
    "~callbacks.best_checkpoint",
    "callbacks.last_checkpoint.every_n_train_steps=0",
    "~callbacks.attention",
    "~callbacks.samples",
    "~callbacks.heads",
]


class HandLoop:
    """The same training, written out: batch, forward, loss, backward, clip, AdamW, schedule
    (``model.compile=true``: the forward compiled as LitGPT compiles it). :meth:`step` runs batch k."""

    def __init__(self, overrides: list[str], steps: int):
        from attnlab.data.datamodule import TextDataModule

        cfg = compose(*overrides, f"trainer.max_steps={steps}")
        dm = TextDataModule.from_config(cfg)
        dm.setup("fit")
        L.seed_everything(cfg.seed, verbose=False)  # as train() does before building the model
        model_dict, compile_ = split_runtime_options(dict(cfg.model))
        self.model = GPT(ModelConfig.from_dict({**model_dict, "vocab_size": dm.vocab_size})).train()
        self.forward = compiled_forward(self.model) if compile_ else self.model
        optim_cfg = OptimConfig.from_dict(dict(cfg.optim))
        self.optimizer = build_adamw(self.model, optim_cfg)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, optim_cfg.warmup_steps, steps, optim_cfg.min_lr_ratio)
        )
        self.windows = RandomWindows(dm.train_ids, dm.cfg.context_length, dm.cfg.batch_size, cfg.seed)
        bf16 = cfg.trainer.precision == "bf16-mixed"
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
        self.clip = cfg.trainer.gradient_clip_val

    def step(self, k: int) -> float:
        x, y = self.windows.batch(k)  # (B, T), (B, T)
        with self.autocast():
            logits = self.forward(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.schedule.step()
        return loss.item()


class StepClock(L.Callback):
    """Wall-clock time at the start of the first training batch and at the end of every batch
    (the last instance made is kept). With a :class:`HandLoop` in ``StepClock.interleave``, it
    also runs the hand loop's step k after Lightning's step k and times it apart: the two loops
    take turns step by step, so a drift of the machine's speed falls on both alike."""

    latest: StepClock | None = None
    interleave: HandLoop | None = None

    def __init__(self):
        self.started: float | None = None
        self.times: list[float] = []  # end of each Lightning step, the hand steps' time taken out
        self.hand_seconds: list[float] = []  # each interleaved hand step
        self.hand_total = 0.0
        self.hand_loss: float | None = None
        self.hand = StepClock.interleave
        StepClock.latest = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = time.perf_counter()
        self.times.append(end - self.hand_total)  # Lightning's own clock: the hand steps taken out
        if self.hand is not None:
            self.hand_loss = self.hand.step(batch_idx)
            self.hand_seconds.append(time.perf_counter() - end)
            self.hand_total += self.hand_seconds[-1]


def step_times(started: float, times: list[float], warmup: int, loss: float) -> dict:
    """Seconds per step over the steps after ``warmup`` (times: the end of each step), and the
    first step's seconds (with ``torch.compile``: the compilation)."""
    return {
        "seconds": (times[-1] - times[warmup - 1]) / (len(times) - warmup),
        "first_step_s": times[0] - started,
        "loss": loss,
    }


def measure(overrides: list[str], steps: int, warmup: int) -> dict:
    """attnlab's training and the hand loop, ``steps`` steps each, taking turns step by step in
    this process: {"lightning": ..., "hand": ...}. The allocator is set as train() sets it."""
    from attnlab.training.task import train

    keep_freed_memory()  # as train() does: both loops run with the same allocator settings
    StepClock.interleave = HandLoop(overrides, steps)
    try:
        with tempfile.TemporaryDirectory() as out_dir:
            cfg = compose(
                *overrides,
                *TIMING,
                f"trainer.max_steps={steps}",
                f"paths.output_dir={out_dir}",
                "+callbacks.step_clock._target_=bench.train_step.StepClock",
            )
            metrics = train(cfg)
    finally:
        StepClock.interleave = None
    clock = StepClock.latest
    hand_ends = list(itertools.accumulate(clock.hand_seconds))  # the hand loop's own clock
    return {
        "lightning": step_times(clock.started, clock.times, warmup, metrics["train/loss"]),
        "hand": step_times(0.0, hand_ends, warmup, clock.hand_loss),
    }


def run(quick: bool = False) -> dict:
    if quick:
        shapes = {"smoke": ["data=seed_sample", "model.d_model=32", "model.num_layers=1", "model.num_heads=2"]}
        variants = {("fp32", False): "32-true", ("fp32", True): "32-true"}
        repeats, plan = {False: 1, True: 1}, {"smoke": (4, 2)}
    else:
        shapes = SHAPES
        variants = {(name, compile_): precision for compile_ in (False, True) for name, precision in PRECISIONS.items()}
        repeats = {False: 3, True: 1}  # a compiled run pays its compilation first (tens of seconds)
        plan = {"nanogpt_cpu_char": (105, 5), "attnlab_default": (35, 5)}  # (steps, of which warmup)
    rows = []
    for shape, shape_overrides in shapes.items():
        for (name, compile_), precision in variants.items():
            steps, warmup = plan[shape]
            if compile_:  # the compiled code may settle over a few more steps (recompiles)
                steps, warmup = steps + 5, warmup + 5
            overrides = [*shape_overrides, f"trainer.precision={precision}", f"model.compile={str(compile_).lower()}"]
            runs = {"lightning": [], "hand": []}
            for _ in range(repeats[compile_]):
                if compile_ and not quick:
                    # a new process with an empty inductor cache: Lightning's first step compiles (what a
                    # user's first run pays), the hand loop's finds those kernels (a later run's); no
                    # recompilation limit reached by earlier runs
                    with tempfile.TemporaryDirectory() as cache:
                        result = fresh.call(
                            "bench.train_step:measure",
                            env={"TORCHINDUCTOR_CACHE_DIR": cache},
                            overrides=overrides,
                            steps=steps,
                            warmup=warmup,
                        )
                else:
                    result = measure(overrides, steps, warmup)
                for loop, loop_result in result.items():
                    runs[loop].append(loop_result)
            cfg = compose(*shape_overrides)
            tokens = cfg.data.batch_size * cfg.data.context_length
            row = {
                "shape": shape,
                "precision": name,
                "compile": compile_,
                "steps_timed": steps - warmup,
                "warmup_steps": warmup,
                "repeats": repeats[compile_],
                "tokens_per_step": tokens,
                "final_loss": {loop: results[-1]["loss"] for loop, results in runs.items()},
            }
            for loop, results in runs.items():
                seconds = median([r["seconds"] for r in results])
                row[f"{loop}_ms"] = 1e3 * seconds
                row[f"{loop}_tokens_per_s"] = tokens / seconds
                row[f"{loop}_all_ms"] = [1e3 * r["seconds"] for r in results]
                row[f"{loop}_first_step_s"] = median([r["first_step_s"] for r in results])
            row["pair_overhead_pct"] = [
                100 * (lit["seconds"] / hand["seconds"] - 1) for lit, hand in zip(runs["lightning"], runs["hand"])
            ]
            row["overhead_pct"] = median(row["pair_overhead_pct"])
            rows.append(row)
            print(
                f"  train step {shape:17s} {variant(row):13s}: lightning {row['lightning_ms']:8.2f} ms, hand "
                f"{row['hand_ms']:8.2f} ms ({row['overhead_pct']:+.1f}%)  first step {row['lightning_first_step_s']:.1f} / "
                f"{row['hand_first_step_s']:.1f} s  loss {row['final_loss']['lightning']:.4f} / "
                f"{row['final_loss']['hand']:.4f}",
                flush=True,
            )
    return {"rows": rows}


def repeats(row: dict) -> str:
    return f"{row['repeats']} repeat{'s' if row['repeats'] != 1 else ''}"


def pair_range(row: dict) -> str:
    pairs = row.get("pair_overhead_pct", [])
    return f"{min(pairs):+.1f}% … {max(pairs):+.1f}%" if len(pairs) > 1 else ""


def variant(row: dict) -> str:
    return row["precision"] + (" + compile" if row.get("compile") else "")


def table(result: dict) -> str:
    lines = [
        "attnlab's Lightning training (`attnlab.training.task.train`, validation and checkpoints off) against a "
        "hand-written loop over the same model, batches and optimizer; each figure the median "
        "of the repeats' mean step time after warmup. The two loops run in one process taking "
        "turns step by step (after Lightning's step k a callback runs and times the hand loop's step k, and that "
        "time is taken out of Lightning's clock), so both see the machine's speed at the same moment. Lightning "
        "overhead: the median over the repeats of each repeat's ratio, with the repeats' range. `nanogpt_cpu_char`: nanoGPT's CPU recipe (`data/tokenizer=char`, "
        "4 layers, 4 heads, d_model 128, context 64, batch 12, dropout 0); `attnlab_default`: `python train.py` "
        "(cl100k corpus vocabulary, batch 16). bf16: autocast (`trainer.precision=bf16-mixed`). compile: "
        "`model.compile=true` (the forward through `torch.compile`, inductor; the hand loop compiles it the same "
        "way), each repeat in a new process; its first step, which compiles the forward and the backward, is not in "
        "ms/step but in its own column: Lightning's with an empty inductor cache (a first run), the hand loop's "
        "with the cache Lightning's run filled (a later run of the same shapes). The last column: the training loss of the last "
        "step, Lightning / hand (same weights and batches: equal up to rounding).",
        "",
        "| config | precision | Lightning ms/step | hand loop ms/step | Lightning tokens/s | hand loop tokens/s | "
        "Lightning overhead | repeats' range | first step (s), Lightning / hand | loss after the run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['shape']} | {variant(r)} | {r['lightning_ms']:.1f} | {r['hand_ms']:.1f} | "
            f"{r['lightning_tokens_per_s']:,.0f} | {r['hand_tokens_per_s']:,.0f} | {r['overhead_pct']:+.1f}% | "
            f"{pair_range(r)} | {r['lightning_first_step_s']:.1f} / {r['hand_first_step_s']:.1f} | "
            f"{r['final_loss']['lightning']:.4f} / {r['final_loss']['hand']:.4f} |"
        )
    plain = [r for r in result["rows"] if not r.get("compile")]
    compiled = [r for r in result["rows"] if r.get("compile")]
    lines += [
        "",
        f"Without compile: {repeats(plain[0])} of "
        f"{', '.join(sorted({str(r['steps_timed']) for r in plain}))} timed steps per config (fewer for the "
        "slower default config, to keep `make bench` short on 2 cores)."
        + (
            f" With compile: {repeats(compiled[0])} of "
            f"{', '.join(sorted({str(r['steps_timed']) for r in compiled}))} timed steps after "
            f"{compiled[0]['warmup_steps']} warmup steps (5 more than without)."
            if compiled
            else ""
        ),
    ]
    return "\n".join(lines)
