"""``attnlab heads``: every head of a trained model, what it attends to and what it is worth.

On a text (default the run's validation split, ``data.path=`` another), with inputs fixed by
the text and the config alone (windows at evenly spaced offsets,
:func:`attnlab.observe.head_scores.spread_windows`), for each layer and head:

* the scores of :mod:`attnlab.observe.heads` on the probe the ``heads`` training callback uses
  (:func:`attnlab.observe.head_scores.head_probe`: ``score_windows`` text windows and as many
  sequences of repeated random tokens), and the model's ``in_context`` score on the text;
* the loss increase when the head is zero-ablated and when it is mean-ablated
  (:mod:`attnlab.observe.ablation`) on a subset of about ``tokens`` predicted tokens: one pass
  over the subset per head and kind.

It writes ``heads.json`` (everything, and the config used), ``heads.csv`` (one row per head),
``heads.md`` (the table, most important head first: largest zero-ablation loss increase) and one
heatmap PNG per score and per ablation kind, into ``<run>/heads/`` or ``out_dir=``, then prints
the top heads and the paths. Config: conf/heads.yaml.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.checks import is_int, require_int
from attnlab.errors import ConfigError, DataError
from attnlab.observe.ablation import ABLATION_SCORES, ABLATIONS, ablate_every_head, ablation_score
from attnlab.observe.attention_maps import save_png
from attnlab.observe.head_maps import UNBOUNDED, score_images
from attnlab.observe.head_scores import head_probe, measure, spread_windows
from attnlab.observe.heads import SCORES, score_table
from attnlab.runs import layout
from attnlab.runs.atomic import atomic_write_json, atomic_write_text
from attnlab.runs.checkpoint import gpt_config, model_from_checkpoint, read_checkpoint
from attnlab.system.console import shown_path
from attnlab.system.hardware import pick_device
from attnlab.system.memory import keep_freed_memory
from attnlab.tools.eval import text_to_evaluate

COLUMNS = ("layer", "head", *ABLATION_SCORES, *SCORES)  # of heads.csv and heads.md
IMPORTANCE = ablation_score("zero")  # what heads.md and the summary sort by
SHARES = tuple(name for name in SCORES if name not in UNBOUNDED)  # the scores that are shares of attention
REPORT_FILES = ("heads.json", "heads.csv", "heads.md")


def check_settings(cfg: DictConfig) -> None:
    """The values of conf/heads.yaml that need more than Hydra's composition, each one line."""
    require_int(cfg.tokens, "tokens")
    require_int(cfg.data.batch_size, "data.batch_size")
    require_int(cfg.score_windows, "score_windows")
    require_int(cfg.in_context_windows, "in_context_windows")
    require_int(cfg.top, "top", minimum=0)
    if not is_int(cfg.seed):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")


def head_report(cfg: DictConfig) -> dict[str, Any]:
    """Measure every head as ``cfg`` (conf/heads.yaml) says; write the report, print its top; return it."""
    check_settings(cfg)
    started = time.perf_counter()
    if cfg.system.keep_freed_memory:
        keep_freed_memory()  # each batch's (B, T, V) logits reuse the heap instead of fresh pages
    ckpt = layout.find_checkpoint(cfg.ckpt_path)
    run_dir = layout.run_of_checkpoint(ckpt)
    checkpoint = read_checkpoint(ckpt)
    T = gpt_config(checkpoint).context_length  # an encoder–decoder's checkpoint is refused here
    if cfg.tokens < T:  # before the tokenizer loads (and says which it is)
        raise ConfigError(
            f"tokens={cfg.tokens} is less than one window of the model's context_length={T}; pass tokens={T} or more"
        )
    model, tokenizer = model_from_checkpoint(checkpoint)
    text = text_to_evaluate(cfg.data, run_dir, tokenizer)
    if len(text.ids) < T + 1:
        raise DataError(
            f"{text.source} has {len(text.ids)} tokens; the head report needs at least context_length+1 = {T + 1}; "
            "use a longer text"
        )
    windows = min(cfg.tokens // T, (len(text.ids) - 1) // T)  # no more than the text holds without overlap
    device = pick_device(str(cfg.device))
    model.to(device)
    subset = spread_windows(text.ids, T + 1, windows).to(device)  # (N, T+1): no token predicted twice
    L, nh = model.cfg.num_layers, model.cfg.num_heads
    print(
        f"heads of {ckpt.name} on {text.shown}: {windows * T:,} tokens in {windows} window{'s' * (windows > 1)} "
        f"of {T}; "
        f"{L * nh} heads ablated {len(ABLATIONS)} ways, {L * nh * len(ABLATIONS) + 1} passes ({device.type})",
        file=sys.stderr,
        flush=True,
    )
    ablations = ablate_every_head(model, subset, cfg.data.batch_size)
    probe = head_probe(text.ids, T, model.cfg.vocab_size, cfg.score_windows, cfg.in_context_windows, cfg.seed)
    scores, in_context = measure(model, probe)  # {name: (L, nh)}, a float
    per_head = {**ablations.scores(), **scores}
    report = {
        "checkpoint": str(ckpt),
        "step": checkpoint.get("global_step"),
        "data": text.source,
        "tokens": windows * T,
        "windows": windows,
        "context_length": T,
        "base_loss": ablations.base_loss,
        "in_context": in_context,
        "seconds": round(time.perf_counter() - started, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "heads": score_table(per_head),  # layer by layer, head by head
    }
    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else run_dir / layout.HEADS_DIR
    caption = f"{ckpt.name}, step {report['step'] if report['step'] is not None else '?'}"
    paths = write_report(out_dir, report, score_images(per_head, caption))
    print("\n".join([*summary_lines(report, cfg.top), *map(shown_path, paths)]), flush=True)
    return report


def by_importance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The heads, the largest zero-ablation loss increase first (ties: layer, then head order)."""
    return sorted(rows, key=lambda row: (-row[IMPORTANCE], row["layer"], row["head"]))


def summary_lines(report: dict[str, Any], top: int) -> list[str]:
    """The base loss and the ``top`` most important heads, each with its largest share of attention."""
    lines = [
        f"base loss {report['base_loss']:.4f} on {report['tokens']:,} tokens, in_context {report['in_context']:+.4f} "
        f"({report['seconds']:.1f} s)"
    ]
    if top:
        lines.append("most important heads (loss increase when zero-ablated / mean-ablated; its largest share):")
    for row in by_importance(report["heads"])[:top]:
        share = max(SHARES, key=lambda name: row[name])
        lines.append(
            f"  layer {row['layer']} head {row['head']}  {row[IMPORTANCE]:+.4f} / {row[ablation_score('mean')]:+.4f}"
            f"  {share} {row[share]:.2f}"
        )
    return lines


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` as CSV with the :data:`COLUMNS` header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(name: str, value: float | int) -> str:
    if name in ("layer", "head"):
        return str(value)
    return f"{value:+.4f}" if name in ABLATION_SCORES else f"{value:.3f}"


def markdown_text(report: dict[str, Any]) -> str:
    """heads.md: what was measured, then one row per head, the most important first."""
    step = f" (step {report['step']})" if report["step"] is not None else ""
    lines = [
        f"# Heads of {Path(report['checkpoint']).name}{step}",
        "",
        f"`{report['checkpoint']}` on {report['data']}: {report['tokens']:,} tokens in {report['windows']} windows "
        f"of {report['context_length']}; base loss {report['base_loss']:.4f} nats; in_context "
        f"{report['in_context']:+.4f}. Sorted by {IMPORTANCE}, the largest first.",
        "",
        "| " + " | ".join(["rank", *COLUMNS]) + " |",
        "| " + " | ".join(["---:"] * (len(COLUMNS) + 1)) + " |",
    ]
    for rank, row in enumerate(by_importance(report["heads"]), 1):
        lines.append("| " + " | ".join([str(rank), *(_cell(name, row[name]) for name in COLUMNS)]) + " |")
    lines += [
        "",
        f"{', '.join(ABLATION_SCORES)}: the loss with the head's output zeroed / replaced by its mean output at each "
        "position, minus the base loss (nats). entropy in nats, distance in tokens, the other scores shares of "
        "attention (0 to 1); docs/tools.md#heads says what each measures.",
        "",
    ]
    return "\n".join(lines)


def write_report(out_dir: Path, report: dict[str, Any], images: dict[str, Any]) -> list[Path]:
    """heads.json, heads.csv, heads.md and ``images`` ({"heads/<score>": (H, W, 3) uint8}) as
    ``<score>.png``, each written atomically into ``out_dir``; their paths."""
    json_path, csv_path, md_path = (out_dir / name for name in REPORT_FILES)
    atomic_write_json(json_path, report)
    atomic_write_text(csv_path, csv_text(report["heads"]))
    atomic_write_text(md_path, markdown_text(report))
    pngs = [save_png(image, out_dir / f"{tag.removeprefix('heads/')}.png") for tag, image in images.items()]
    return [json_path, csv_path, md_path, *pngs]


main = head_report  # attnlab heads
