"""Section 4: quality at a budget — the final ``val/bpb`` after 90 s of training wall clock.

Each run is ``python train.py <overrides> trainer.max_time=00:00:01:30``, a fresh process exactly
as a user starts it (Lightning's ``Timer`` stops training when the 90 s are spent; the LR schedule
ends with them; one full validation of the final weights follows). Two configs: the classic
default (``python train.py``) and the preset ``experiment=speedrun_cpu``. The ablation
(``--only ablation``, about 17 minutes on 2 cores, not part of a plain ``make bench``) reruns the
preset with one of its choices undone at a time, to show what each one buys on this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT

BUDGET = "00:00:01:30"  # DD:HH:MM:SS
CONFIGS = {"classic default": [], "experiment=speedrun_cpu": ["experiment=speedrun_cpu"]}
PRESET = ["experiment=speedrun_cpu"]
ABLATIONS = {  # the preset with one choice undone: (what changes, overrides)
    "bf16 autocast → fp32": ["trainer.precision=32-true"],
    "Muon → AdamW everywhere": ["optim=adamw"],
    "explicit attention → sdpa": ["model.attention=sdpa"],
    "RoPE → sinusoidal table": ["model.positional=sinusoidal"],
    "RMSNorm → LayerNorm": ["model.norm=layernorm"],
    "QK-norm → none": ["model.qk_norm=false"],
    "ReLU² → GELU": ["model.activation=gelu"],
    "untied output layer → tied": ["model.tie_embeddings=true"],
    "vocabulary cap 8192 → whole corpus vocabulary (20,505)": ["data.tokenizer.max_vocab=null"],
}
# quiet, and nothing after the budget that does not change the figures
QUIET = ["trainer.enable_progress_bar=false", "~callbacks.attention", "~callbacks.samples", "~callbacks.heads"]
# --quick: the seed sample and a tiny model for 2 s (a smoke test of the code path)
QUICK = [
    "data=seed_sample",
    "data.context_length=8",
    "data.batch_size=4",
    "model.d_model=16",
    "model.num_heads=2",
    "model.num_layers=1",
]


def train_for(overrides: list[str], budget: str, run_dir: Path) -> dict:
    """One ``train.py`` run in a fresh process with a wall-clock budget; its final figures."""
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        *overrides,
        *QUIET,
        f"trainer.max_time={budget}",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    print(
        f"  budget {' '.join(overrides) or 'default'}: val/bpb {metrics['val/bpb']:.4f} ({metrics['steps']} steps)",
        flush=True,
    )
    return {
        "val_bpb": metrics["val/bpb"],
        "val_loss": metrics["val/loss"],
        "steps": int(metrics["steps"]),
        "parameters": int(metrics["model/num_parameters"]),
        "run_s": metrics["seconds"],
    }


def measure(configs: dict[str, list[str]], quick: bool) -> dict:
    budget = "00:00:00:02" if quick else BUDGET
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(configs.items()):
            row = train_for([*overrides, *(QUICK if quick else [])], budget, Path(tmp) / str(i))
            rows.append({"config": name, "overrides": overrides, **row})
    return {"budget": budget, "rows": rows}


def run(quick: bool = False) -> dict:
    # --quick: one config is enough to run the code path (each run is a process start)
    return measure(dict(list(CONFIGS.items())[-1:]) if quick else CONFIGS, quick)


def run_ablation(quick: bool = False) -> dict:
    ablations = dict(list(ABLATIONS.items())[:1]) if quick else ABLATIONS
    return measure(
        {"speedrun_cpu (all choices)": PRESET, **{name: [*PRESET, *undo] for name, undo in ablations.items()}}, quick
    )


def table(result: dict) -> str:
    lines = [
        f"`python train.py` with the overrides of its row and `trainer.max_time={result['budget']}`, one run each in a fresh process: "
        "training stops when the budget is spent, then one full validation of the final weights.",
        "",
        "| config | val/bpb | val/loss | steps in the budget | parameters |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['config']} | {r['val_bpb']:.4f} | {r['val_loss']:.4f} | {r['steps']:,} | {r['parameters']:,} |"
        for r in result["rows"]
    ]
    return "\n".join(lines)


def ablation_table(result: dict) -> str:
    base = result["rows"][0]["val_bpb"]
    lines = [
        f"The preset, then the preset with one choice undone, each for `trainer.max_time={result['budget']}` "
        "(one run each: differences under about 0.02 bpb are within run-to-run noise on a shared machine). "
        "Positive Δ: undoing the choice costs that much, so the choice buys it.",
        "",
        "| run | val/bpb | Δ bpb vs the preset | steps in the budget |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        delta = "" if r is result["rows"][0] else f"{r['val_bpb'] - base:+.4f}"
        lines.append(f"| {r['config']} | {r['val_bpb']:.4f} | {delta} | {r['steps']:,} |")
    return "\n".join(lines)
