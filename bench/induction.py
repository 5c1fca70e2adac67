"""The induction-head phase change, reproduced: ``python -m bench.induction`` (docs/inside.md).

Trains ``python train.py experiment=induction_heads`` twice, as a user starts it (a fresh process
each): the two-layer attention-only model of the preset and the same with ``model.num_layers=1``,
into ``outputs/induction/<date>_<time>/layers_2`` and ``layers_1`` (``make tensorboard`` shows
them). Then it reads each run's TensorBoard scalars: at every validation the best ``induction``
score over all heads (``heads/induction/layer_{i}/head_{j}``, logged by ``callbacks.heads``) and
``heads/in_context``; it prints the figures docs/inside.md quotes and draws both curves of both
models into ``docs/images/induction.png``. ``--runs <folder>`` redraws from earlier runs without
training. Both runs take about 1.5 minutes on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, machine

PRESET = ["experiment=induction_heads", "trainer.enable_progress_bar=false"]
LAYERS = (2, 1)
FIGURE = ROOT / "docs" / "images" / "induction.png"
# the jump: from the last validation with the best induction score below LOW to the first above HIGH
LOW, HIGH = 0.2, 0.8


@dataclass
class Curves:
    """One run's figures at each validation."""

    steps: list[int]
    induction: list[float]  # the best induction score over all heads
    best_head: list[str]  # which head has it: "layer_1/head_3"
    in_context: list[float]
    seconds: float  # the run's own wall time (metrics.json)


def train(layers: int, run_dir: Path) -> None:
    cmd = [sys.executable, str(ROOT / "train.py"), *PRESET, f"model.num_layers={layers}", f"hydra.run.dir={run_dir}"]
    print(f"  {' '.join(cmd[1:])}", flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def read_curves(run_dir: Path) -> Curves:
    """The run's ``heads/induction/*`` and ``heads/in_context`` scalars, from its TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 1})
    events.Reload()
    prefix = "heads/induction/"
    heads = {
        tag: {e.step: e.value for e in events.Scalars(tag)}
        for tag in events.Tags()["scalars"]
        if tag.startswith(prefix)
    }
    if not heads:
        raise RuntimeError(f"{run_dir} has no {prefix}... scalars; is callbacks.heads in the run?")
    in_context = {e.step: e.value for e in events.Scalars("heads/in_context")}
    steps = sorted(in_context)
    best = [max(heads, key=lambda tag: heads[tag].get(step, float("-inf"))) for step in steps]
    seconds = json.loads((run_dir / "metrics.json").read_text())["metrics"]["seconds"]
    return Curves(
        steps=steps,
        induction=[heads[tag][step] for tag, step in zip(best, steps)],
        best_head=[tag.removeprefix(prefix) for tag in best],
        in_context=[in_context[step] for step in steps],
        seconds=seconds,
    )


def jump(curves: Curves) -> tuple[int, int] | None:
    """``(i, j)``: indices of the last validation below :data:`LOW` before the first above
    :data:`HIGH`, and of that first one; None when the best score never passes HIGH."""
    above = next((j for j, value in enumerate(curves.induction) if value > HIGH), None)
    if above is None:
        return None
    below = max((i for i in range(above) if curves.induction[i] < LOW), default=0)
    return below, above


def summary(layers: int, curves: Curves) -> str:
    c = curves
    lines = [f"{layers} layer{'s' if layers > 1 else ''}: {len(c.steps)} validations, {c.seconds:.0f} s"]
    band = jump(c)
    if band is None:
        top = max(range(len(c.steps)), key=lambda k: c.induction[k])
        lines.append(
            f"  no jump: best induction at most {c.induction[top]:.3f} ({c.best_head[top]}, step {c.steps[top]}), "
            f"final {c.induction[-1]:.3f}"
        )
    else:
        i, j = band
        lines.append(
            f"  jump between steps {c.steps[i]} and {c.steps[j]}: best induction {c.induction[i]:.3f} -> "
            f"{c.induction[j]:.3f} ({c.best_head[j]}); in_context {c.in_context[i]:+.3f} -> {c.in_context[j]:+.3f}"
        )
    lines.append(
        f"  first validation (step {c.steps[0]}): best induction {c.induction[0]:.3f}, in_context {c.in_context[0]:+.3f}; "
        f"final (step {c.steps[-1]}): {c.induction[-1]:.3f} ({c.best_head[-1]}), in_context {c.in_context[-1]:+.3f}"
    )
    return "\n".join(lines)


def draw(curves: dict[int, Curves], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.runs.atomic import atomic_write

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    colors = {2: "tab:blue", 1: "tab:orange"}
    for layers, c in curves.items():
        label = f"{layers} layer{'s' if layers > 1 else ''}"
        left.plot(c.steps, c.induction, color=colors.get(layers), label=label)
        right.plot(c.steps, c.in_context, color=colors.get(layers), label=label)
        band = jump(c)
        if band is not None:
            for axis in (left, right):
                axis.axvspan(c.steps[band[0]], c.steps[band[1]], color=colors.get(layers), alpha=0.15, lw=0)
    left.set(xlabel="step", ylabel="best induction score", ylim=(0, 1), title="induction (best head)")
    right.set(xlabel="step", ylabel="late minus early loss (nats)", title="in_context")
    right.axhline(0, color="grey", lw=0.5)
    left.legend(loc="upper left", frameon=False)
    fig.suptitle("experiment=induction_heads: attention-only, data=repeats", fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.induction", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="redraw from the layers_2/ and layers_1/ runs in this folder")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="where the PNG goes (default docs/images/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    runs = args.runs or ROOT / "outputs" / "induction" / time.strftime("%Y-%m-%d_%H-%M-%S")
    started = time.perf_counter()
    if args.runs is None:
        for layers in LAYERS:
            train(layers, runs / f"layers_{layers}")
    curves = {layers: read_curves(runs / f"layers_{layers}") for layers in LAYERS}
    draw(curves, args.figure)
    m = machine()
    print(f"runs in {runs}; {m['cpu']}, {m['cores']} cores, torch {m['torch']}")
    for layers, c in curves.items():
        print(summary(layers, c))
    if args.runs is None:
        print(f"both runs and the figure: {time.perf_counter() - started:.0f} s")
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
