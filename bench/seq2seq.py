"""Section 9: the encoder–decoder (``model=transformer``) of ``experiment=dates_transformer``.

1. Training step: attnlab's Lightning training of the preset's model on its data (``data=dates``,
   :class:`attnlab.data.seq2seq.BucketedPairs`) against a hand-written loop over
   ``torch.nn.Transformer`` of the same size (:class:`TorchTransformer`), timed as section 1 times
   the GPT (:mod:`bench.train_step`): :func:`attnlab.training.task.train` with validation and
   checkpoints off, and after its step k a callback runs and times the hand loops' step k on the
   same batch, so all see the machine's speed at the same moment. The second hand loop, attnlab's
   own model by hand, splits the difference into the framework's part and the model's. Every loop
   starts from the weights Lightning's run starts from (same seed; copied into ``nn.Transformer``):
   all three end on the same loss. The batches' lengths vary (bucketed), so before any step each
   model meets every batch shape of the run once (:meth:`HandLoops.warm_up`).
2. Decoding: :func:`attnlab.model.search.beam_search`, greedy (1 beam) and 4 beams taking turns
   batch by batch, over every val pair of ``data=dates``, with the weights the preset trained (3).
3. The preset's quality: ``python train.py experiment=dates_transformer`` as it is (its
   ``trainer.max_time`` budget; the progress bar off), :func:`attnlab.training.task.train` in a
   fresh process, and the final validation's figures.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from attnlab.data.seq2seq import BucketedPairs, Seq2SeqDataModule, collate
from attnlab.data.windows import IGNORE_INDEX
from attnlab.model import EncoderDecoder, TransformerConfig
from attnlab.model.layers import sinusoidal_table
from attnlab.model.search import beam_search
from attnlab.runs import layout
from attnlab.runs.checkpoint import read_checkpoint, seq2seq_from_checkpoint
from attnlab.system.hardware import cpu_has_bf16
from attnlab.system.memory import keep_freed_memory
from attnlab.training.lit_seq2seq import split_seq2seq_options
from attnlab.training.optim import OptimConfig, build_adamw
from attnlab.training.schedule import warmup_cosine
from bench import fresh, train_step
from bench.common import compose, median
from bench.train_step import StepClock, step_times

PRESET = ["experiment=dates_transformer"]
PROBES = ["~callbacks.seq2seq_attention", "~callbacks.translations"]  # the encoder–decoder's images and texts
# section 1's settings (validation, checkpoints, progress bar off; the GPT's probes are off in callbacks=seq2seq)
TIMING = [*(o for o in train_step.TIMING if not o.startswith("~callbacks.")), "~callbacks.best_checkpoint", *PROBES]
TIMING += ["trainer.max_time=null"]  # a step budget: trainer.max_steps
BEAMS = (1, 4)
# --quick: a tiny model on 100 pairs cut to 12 tokens (a smoke test of the code paths)
QUICK = [
    "data.num_pairs=100",
    "data.context_length=12",
    "data.too_long=truncate",
    "data.batch_size=8",
    "model.d_model=16",
    "model.num_heads=2",
    "model.num_encoder_layers=1",
    "model.num_decoder_layers=1",
]
# --quick's preset run: a second of training, no images
QUICK_PRESET = [*QUICK, "trainer.max_time=00:00:00:01", *PROBES]


def model_config(cfg, vocab_size: int) -> TransformerConfig:
    """The composed config's encoder–decoder, for the pairs' shared vocabulary."""
    model, _ = split_seq2seq_options(OmegaConf.to_container(cfg.model, resolve=True))
    return TransformerConfig.from_dict({**model, "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size})


def autocast_of(precision: str):
    """A context factory: bf16 autocast for ``bf16-mixed`` (as Lightning's CPU plugin), else nothing."""
    return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16-mixed" else nullcontext


# --------------------------------------------------------------------------------------------
# 1. The same training over torch.nn.Transformer
# --------------------------------------------------------------------------------------------


class TorchTransformer(nn.Module):
    """``torch.nn.Transformer`` at the encoder–decoder's size, with what attnlab's has around its
    blocks: one embedding table for source and target scaled by sqrt(C), the same sinusoidal
    positions, and the output layer tied to the table. The preset's choices only (checked)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        preset = dict(share_embeddings=True, tie_embeddings=True, positional="sinusoidal", norm="layernorm")
        preset.update(qk_norm=False, activation="relu")
        if other := {k: getattr(cfg, k) for k, v in preset.items() if getattr(cfg, k) != v}:
            raise ValueError(f"TorchTransformer builds {preset}, not {other}")
        C = cfg.d_model
        self.embedding = nn.Embedding(cfg.tgt_vocab_size, C)  # (V, C), both sides
        length = max(cfg.src_context_length, cfg.tgt_context_length)
        self.register_buffer("positions", sinusoidal_table(length, C), persistent=False)  # (Tmax, C)
        with warnings.catch_warnings():  # pre-norm has no nested-tensor fast path, which it says
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.transformer = nn.Transformer(
                d_model=C,
                nhead=cfg.num_heads,
                num_encoder_layers=cfg.num_encoder_layers,
                num_decoder_layers=cfg.num_decoder_layers,
                dim_feedforward=cfg.ffn_mult * C,
                dropout=cfg.dropout,
                activation="relu",
                batch_first=True,
                norm_first=cfg.norm_first,
                bias=cfg.bias,
            )
        self.lm_head = nn.Linear(C, cfg.tgt_vocab_size, bias=False)  # (C -> V)
        self.lm_head.weight = self.embedding.weight  # tied
        self.scale = math.sqrt(C)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids) * self.scale + self.positions[: ids.size(1)]  # (B, T, C)

    def forward(self, src, tgt_in, src_mask, tgt_mask) -> torch.Tensor:
        """Logits (B, T, V); masks (B, S) and (B, T) True at real tokens (PyTorch's: True at padding)."""
        T = tgt_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu(1)  # (T, T) True: hidden
        h = self.transformer(
            self.embed(src),  # (B, S, C)
            self.embed(tgt_in),  # (B, T, C)
            tgt_mask=causal,
            src_key_padding_mask=~src_mask,
            tgt_key_padding_mask=~tgt_mask,
            memory_key_padding_mask=~src_mask,
        )  # (B, T, C)
        return self.lm_head(h)  # (B, T, V)

    def load_from(self, model: EncoderDecoder) -> None:
        """Take ``model``'s weights (q, k, v stacked into PyTorch's ``in_proj``); every parameter set."""

        def attention(theirs: str, mine: str) -> dict:
            parts = [f"{theirs}.{p}" for p in ("query", "key", "value")]
            return {
                f"{mine}.in_proj_weight": torch.cat([w[f"{p}.weight"] for p in parts]),  # (3C, C)
                f"{mine}.in_proj_bias": torch.cat([w[f"{p}.bias"] for p in parts]),  # (3C,)
                **{f"{mine}.out_proj.{x}": w[f"{theirs}.out_proj.{x}"] for x in ("weight", "bias")},
            }

        def same(theirs: str, mine: str) -> dict:
            return {f"{mine}.{x}": w[f"{theirs}.{x}"] for x in ("weight", "bias")}

        w = model.state_dict()
        state = {"embedding.weight": w["src_embedding.weight"], "lm_head.weight": w["lm_head.weight"]}
        for side, blocks in (("encoder", model.encoder), ("decoder", model.decoder)):
            for i in range(len(blocks)):
                theirs, mine = f"{side}.{i}", f"transformer.{side}.layers.{i}"
                state |= attention(f"{theirs}.self_attn", f"{mine}.self_attn")
                state |= same(f"{theirs}.ffn.up", f"{mine}.linear1") | same(f"{theirs}.ffn.down", f"{mine}.linear2")
                norms = ["ln1", "ln2"] if side == "encoder" else ["ln1", "ln2", "ln3"]
                for n, norm in enumerate(norms, 1):
                    state |= same(f"{theirs}.{norm}", f"{mine}.norm{n}")
                if side == "decoder":
                    state |= attention(f"{theirs}.cross_attn", f"{mine}.multihead_attn")
        state |= same("ln_enc", "transformer.encoder.norm") | same("ln_dec", "transformer.decoder.norm")
        self.load_state_dict(state, strict=True)


class HandLoop:
    """The preset's training written out over ``model`` (attnlab's or :class:`TorchTransformer`):
    batch k of the run's :class:`BucketedPairs`, forward with the masks, loss, backward, clipping,
    AdamW, the warmup-cosine schedule over ``steps``. :meth:`step` runs batch k."""

    def __init__(self, cfg, batches: BucketedPairs, model: nn.Module, steps: int):
        self.model, self.batches = model.train(), batches
        optim_cfg = OptimConfig.from_dict(OmegaConf.to_container(cfg.optim, resolve=True))
        self.optimizer = build_adamw(model, optim_cfg)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, optim_cfg.warmup_steps, steps, optim_cfg.min_lr_ratio)
        )
        self.autocast = autocast_of(cfg.trainer.precision)
        self.clip = cfg.trainer.gradient_clip_val

    def step(self, k: int) -> float:
        b = self.batches.batch(k)  # src (B, S), tgt_in / tgt_out (B, T), masks
        with self.autocast():
            logits = self.model(b.src, b.tgt_in, b.src_mask, b.tgt_mask)  # (B, T, V)
            V = logits.size(-1)
            loss = F.cross_entropy(logits.reshape(-1, V).float(), b.tgt_out.reshape(-1), ignore_index=IGNORE_INDEX)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.schedule.step()
        return loss.item()


class HandLoops:
    """The two hand-written loops, both from the weights Lightning's run starts from (same seed):
    ``"hand"`` over :class:`TorchTransformer`, ``"hand_attnlab"`` over attnlab's
    :class:`EncoderDecoder`. A :class:`bench.train_step.StepClock` calls :meth:`step` after
    Lightning's step k; it runs both on batch k (in turns: which goes first alternates), timed apart."""

    def __init__(self, overrides: list[str], steps: int):
        cfg = compose(*PRESET, *overrides, f"trainer.max_steps={steps}")
        dm = Seq2SeqDataModule.from_config(cfg)
        dm.setup("fit")
        L.seed_everything(cfg.seed, verbose=False)  # as train() does before building the model
        model_cfg = model_config(cfg, dm.vocab_size)
        attnlab_model = EncoderDecoder(model_cfg)  # the weights Lightning's run starts from
        torch_model = TorchTransformer(model_cfg)
        torch_model.load_from(attnlab_model)
        self.parameters = {
            "attnlab": attnlab_model.num_parameters(),
            "torch": sum(p.numel() for p in torch_model.parameters()),
        }
        batches = BucketedPairs(dm.train_pairs, dm.cfg.batch_size, dm.vocab.pad_id, cfg.seed)  # Lightning's
        self.loops = {
            "hand": HandLoop(cfg, batches, torch_model, steps),
            "hand_attnlab": HandLoop(cfg, batches, attnlab_model, steps),
        }
        self.seconds: dict[str, list[float]] = {name: [] for name in self.loops}
        self.loss: dict[str, float] = {}
        self.warm_up(steps)

    def warm_up(self, steps: int) -> None:
        """One forward and backward of each model at every batch shape of the ``steps`` batches (no
        update; the loops' ``step`` zeroes the gradients first): the kernels of a shape are built
        before any timed step, so which loop meets a shape first (Lightning does) costs nothing."""
        first_of_shape = {}
        for k in range(steps):
            batch = self.loops["hand"].batches.batch(k)
            first_of_shape.setdefault((batch.src.shape, batch.tgt_in.shape), batch)
        with torch.random.fork_rng():  # dropout draws nothing the runs would see
            for loop in self.loops.values():
                for b in first_of_shape.values():
                    with loop.autocast():
                        logits = loop.model(b.src, b.tgt_in, b.src_mask, b.tgt_mask)  # (B, T, V)
                    logits.float().logsumexp(-1).mean().backward()

    def step(self, k: int) -> float:
        names = list(self.loops)
        for name in names if k % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            self.loss[name] = self.loops[name].step(k)
            self.seconds[name].append(time.perf_counter() - start)
        return self.loss["hand"]


LOOPS = ("lightning", "hand_attnlab", "hand")


def measure(overrides: list[str], steps: int, warmup: int) -> dict:
    """attnlab's training and the two hand loops, ``steps`` steps each, taking turns step by step."""
    from attnlab.training.task import train

    keep_freed_memory()  # as train() does: the loops run with the same allocator settings
    hand = StepClock.interleave = HandLoops(overrides, steps)
    try:
        with tempfile.TemporaryDirectory() as out_dir:
            cfg = compose(
                *PRESET,
                *overrides,
                *TIMING,
                f"trainer.max_steps={steps}",
                f"paths.output_dir={out_dir}",
                "+callbacks.step_clock._target_=bench.train_step.StepClock",
            )
            metrics = train(cfg)  # the hand loops' time is taken out of its clock
    finally:
        StepClock.interleave = None
    clock = StepClock.latest
    result = {"lightning": step_times(clock.started, clock.times, warmup, metrics["train/loss"])}
    for name, seconds in hand.seconds.items():
        result[name] = step_times(0.0, list(itertools.accumulate(seconds)), warmup, hand.loss[name])
    return {**result, "parameters": hand.parameters}


def overheads(runs: list[dict], slower: str, faster: str) -> list[float]:
    """Per repeat, % more time per step of loop ``slower`` than of loop ``faster``."""
    return [100 * (r[slower]["seconds"] / r[faster]["seconds"] - 1) for r in runs]


def training_steps(shape: list[str], precisions: dict[str, str], steps: int, warmup: int, repeats: int) -> list[dict]:
    """One row per precision: each loop's ms/step (median of ``repeats``), the ratios, the losses."""
    rows = []
    for name, precision in precisions.items():
        runs = [measure([*shape, f"trainer.precision={precision}"], steps, warmup) for _ in range(repeats)]
        row = {
            "precision": name,
            "steps_timed": steps - warmup,
            "warmup_steps": warmup,
            "repeats": repeats,
            "parameters": runs[-1]["parameters"],
            "final_loss": {loop: runs[-1][loop]["loss"] for loop in LOOPS},
        }
        for loop in LOOPS:
            row[f"{loop}_ms"] = 1e3 * median([r[loop]["seconds"] for r in runs])
            row[f"{loop}_all_ms"] = [1e3 * r[loop]["seconds"] for r in runs]
        # Lightning vs nn.Transformer, and its two parts: the framework (the same model by hand), the model
        for key, (slower, faster) in {
            "overhead": ("lightning", "hand"),
            "framework": ("lightning", "hand_attnlab"),
            "model": ("hand_attnlab", "hand"),
        }.items():
            row[f"pair_{key}_pct"] = overheads(runs, slower, faster)
            row[f"{key}_pct"] = median(row[f"pair_{key}_pct"])
        rows.append(row)
        print(
            f"  seq2seq step {name}: lightning {row['lightning_ms']:.2f} ms, attnlab by hand "
            f"{row['hand_attnlab_ms']:.2f} ms, nn.Transformer {row['hand_ms']:.2f} ms ({row['overhead_pct']:+.1f}%: "
            f"framework {row['framework_pct']:+.1f}%, model {row['model_pct']:+.1f}%)  loss "
            + " / ".join(f"{row['final_loss'][loop]:.4f}" for loop in LOOPS),
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------------------------
# 3. The preset as it is; 2. decoding with its weights
# --------------------------------------------------------------------------------------------


def train_preset(overrides: list[str], out_dir: str) -> dict:
    """``python train.py experiment=dates_transformer <overrides>``'s training into ``out_dir``: its final figures."""
    from attnlab.training.task import train

    cfg = compose(*PRESET, *overrides, "trainer.enable_progress_bar=false", f"paths.output_dir={out_dir}")
    started = time.perf_counter()
    metrics = train(cfg)
    wall = time.perf_counter() - started
    figures = {k.removeprefix("val/"): metrics[k] for k in ("val/exact_match", "val/chrf", "val/token_accuracy")}
    print(
        f"  dates_transformer: exact match {figures['exact_match']:.4f} ({int(metrics['steps'])} steps, {wall:.0f} s)",
        flush=True,
    )
    return {
        **figures,
        "val_loss": metrics["val/loss"],
        "steps": int(metrics["steps"]),
        "parameters": int(metrics["model/num_parameters"]),
        "max_time": cfg.trainer.max_time,
        "precision": cfg.trainer.precision,
        "wall_s": wall,
    }


def decoding(overrides: list[str], checkpoint: Path, repeats: int) -> dict:
    """Greedy and beam search over every val pair with the checkpoint's weights, in the preset's
    precision: pairs/s (median of the repeats) and exact match. The two take turns batch by batch."""
    cfg = compose(*PRESET, *overrides)
    dm = Seq2SeqDataModule.from_config(cfg)
    dm.setup("validate")
    model, vocab = seq2seq_from_checkpoint(read_checkpoint(checkpoint))
    pairs, B = dm.val_pairs, dm.cfg.batch_size
    batches = [collate(pairs[i : i + B], vocab.pad_id) for i in range(0, len(pairs), B)]  # val's batches
    references = [vocab.decode(tgt[1:]) for _, tgt in pairs]  # target + EOS, as validation scores it
    autocast = autocast_of(cfg.trainer.precision)

    def search(batch, beams: int) -> list[str]:
        with autocast():
            found = beam_search(model, batch.src, batch.src_mask, vocab.bos_id, vocab.eos_id, beam_size=beams)
        return [vocab.decode(ids) for ids in found.ids]

    for beams in BEAMS:  # warm up: first calls allocate and pick kernels
        search(batches[0], beams)
    outputs = {beams: [] for beams in BEAMS}
    seconds = {beams: [] for beams in BEAMS}
    for repeat in range(repeats):
        total = dict.fromkeys(BEAMS, 0.0)
        for batch in batches:
            for beams in BEAMS:
                start = time.perf_counter()
                found = search(batch, beams)
                total[beams] += time.perf_counter() - start
                if repeat == 0:
                    outputs[beams] += found
        for beams in BEAMS:
            seconds[beams].append(total[beams])
    rows = []
    for beams in BEAMS:
        exact = sum(o == r for o, r in zip(outputs[beams], references, strict=True)) / len(references)
        rows.append({"beams": beams, "pairs_per_s": len(pairs) / median(seconds[beams]), "exact_match": exact})
        print(
            f"  decoding, {beams} beam(s): {rows[-1]['pairs_per_s']:.0f} pairs/s, exact match {exact:.4f}", flush=True
        )
    return {"pairs": len(pairs), "batch_size": B, "repeats": repeats, "precision": cfg.trainer.precision, "rows": rows}


def run(quick: bool = False) -> dict:
    cfg = compose(*PRESET, *(QUICK if quick else []))
    model = ("d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "activation", "norm_first")
    result = {"config": {**{k: cfg.model[k] for k in model}, "batch_size": cfg.data.batch_size}}
    precisions = {"fp32": "32-true"}
    if cpu_has_bf16() and not quick:  # bf16 autocast only where the CPU multiplies bf16 natively
        precisions["bf16"] = "bf16-mixed"
    steps, warmup, repeats = (4, 2, 1) if quick else (45, 5, 3)
    result["steps"] = training_steps(QUICK if quick else [], precisions, steps, warmup, repeats)
    with tempfile.TemporaryDirectory() as run_dir:
        # the preset in a process of its own (quick: in this one, a smoke test), as train.py starts it
        call = fresh.call_here if quick else fresh.call
        result["preset"] = call("bench.seq2seq:train_preset", overrides=QUICK_PRESET if quick else [], out_dir=run_dir)
        checkpoint = layout.last_checkpoint(Path(run_dir))  # the final weights, written after the last validation
        result["decoding"] = decoding(QUICK if quick else [], checkpoint, repeats=1 if quick else 3)
    return result


# --------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------


def table(result: dict) -> str:
    steps, preset, dec, c = result["steps"], result["preset"], result["decoding"], result["config"]
    p = steps[0]["parameters"]
    same = "equal" if p["attnlab"] == p["torch"] else "not equal"
    norm = "pre-norm" if c["norm_first"] else "post-norm"
    lines = [
        f"`experiment=dates_transformer`'s model (d_model {c['d_model']}, {c['num_heads']} heads, "
        f"{c['num_encoder_layers']} encoder and {c['num_decoder_layers']} decoder layers, {norm}, {c['activation']}, "
        "sinusoidal positions, one embedding table for both sides tied to the output layer) on its `data=dates` "
        f"batches ({c['batch_size']} pairs, bucketed by length), three loops taking turns step by step in one "
        "process, as in section 1 (after Lightning's step k a callback runs both hand loops' step k on the same "
        "batch, which goes first alternating, and their time is taken out of Lightning's clock). **Lightning**: "
        "`attnlab.training.task.train` with validation and checkpoints off. **attnlab by hand**: the same "
        "`EncoderDecoder` in a hand-written loop. **`nn.Transformer`**: the hand-written loop over "
        "`torch.nn.Transformer` of the same size (`batch_first`, `norm_first`, the same activation, feed-forward "
        "4 × d_model, dropout) with `nn.Embedding` × √d_model, the same sinusoidal table and a tied output `Linear`, "
        "the padding masks (`src_key_padding_mask`, `tgt_key_padding_mask`, `memory_key_padding_mask`) and a "
        "causal `tgt_mask`. The hand loops: the same batches, AdamW with the same groups and schedule, clipping at "
        "1.0, from Lightning's initial weights (copied into `nn.Transformer`, q, k, v stacked into `in_proj`). "
        "Each figure the median of the repeats' mean step time after warmup. Lightning vs `nn.Transformer` (the "
        "repeats' median ratio, with their range) splits into the framework (Lightning vs attnlab by hand: the "
        "same model) and the model (attnlab's `EncoderDecoder` vs `nn.Transformer`, both by hand). Parameters: "
        f"attnlab {p['attnlab']:,}, `nn.Transformer` {p['torch']:,} ({same}). The last column: the training loss "
        "of the last step, Lightning / attnlab by hand / `nn.Transformer` (the same weights and batches: equal up "
        "to rounding).",
        "",
        "| precision | Lightning ms/step | attnlab by hand ms/step | `nn.Transformer` ms/step | Lightning vs "
        "`nn.Transformer` | repeats' range | of which framework | of which model | loss after the run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in steps:
        losses = " / ".join(f"{r['final_loss'][loop]:.4f}" for loop in LOOPS)
        lines.append(
            f"| {r['precision']} | {r['lightning_ms']:.1f} | {r['hand_attnlab_ms']:.1f} | {r['hand_ms']:.1f} | "
            f"{r['overhead_pct']:+.1f}% | {train_step.pair_range(r)} | {r['framework_pct']:+.1f}% | "
            f"{r['model_pct']:+.1f}% | {losses} |"
        )
    minutes = preset["wall_s"] / 60
    lines += [
        "",
        f"{train_step.repeats(steps[0])} of {steps[0]['steps_timed']} timed steps after "
        f"{steps[0]['warmup_steps']} warmup steps per precision. The batches' lengths vary (bucketed): before "
        "the runs, each model does one forward and backward at every batch shape of the run, so that which loop "
        "meets a shape first (and builds its kernels) does not count.",
        "",
        "The training `python train.py experiment=dates_transformer` runs, as it is (`attnlab.training.task.train` "
        f"on the same config, `trainer.max_time={preset['max_time']}`, {preset['precision']}; the progress bar off) "
        "in a fresh process: the final validation's figures, over every val pair "
        "(decoded greedily); wall time: the whole of `train()` (data, training, validations, checkpoints). "
        "Target: exact match ≥ 95% within 5 minutes.",
        "",
        "| val/exact_match | val/chrf | val/token_accuracy | val/loss | steps | wall time | parameters | target |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {preset['exact_match']:.2%} | {preset['chrf']:.4f} | {preset['token_accuracy']:.2%} | "
        f"{preset['val_loss']:.4f} | {preset['steps']:,} | {minutes:.1f} min | {preset['parameters']:,} | "
        f"{'met' if preset['exact_match'] >= 0.95 and preset['wall_s'] <= 300 else 'not met'} |",
        "",
        f"Decoding the {dec['pairs']:,} val pairs with the run's final weights "
        f"(`attnlab.model.search.beam_search`, batches of {dec['batch_size']} in validation's order, "
        f"{dec['precision']}); greedy and 4 beams take turns batch by batch, median of {dec['repeats']} "
        f"pass{'es' if dec['repeats'] != 1 else ''}. Greedy's exact match is the run's val/exact_match found again (the same weights, pairs, "
        "batches and precision).",
        "",
        "| decoding | pairs/s | exact match |",
        "| --- | ---: | ---: |",
    ]
    for r in dec["rows"]:
        name = "greedy" if r["beams"] == 1 else f"beam search, {r['beams']} beams"
        lines.append(f"| {name} | {r['pairs_per_s']:,.0f} | {r['exact_match']:.2%} |")
    return "\n".join(lines)
