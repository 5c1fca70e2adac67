"""Per-head scores drawn as a layer x head grid, each cell printed with its value.

One image per score (:data:`attnlab.observe.heads.SCORES`): rows are layers, columns heads. The
shares of attention (``prev_token``, ``induction``, ...) use one fixed scale, 0 to 1, so images
of different steps and runs compare directly; ``entropy`` and ``distance`` are scaled to their
own largest value. The loss increases of ablated heads (:mod:`attnlab.observe.ablation`,
``zero_ablation``, ``mean_ablation``) can be negative: a diverging scale centred on 0, as far
each way as the largest of them.
"""

from __future__ import annotations

import numpy as np
import torch

from attnlab.observe.ablation import ABLATION_SCORES

UNBOUNDED = {"entropy": "nats", "distance": "tokens"}  # the scores that are not shares of attention
SIGNED = dict.fromkeys(ABLATION_SCORES, "loss increase, nats")  # centred on 0


def color_scale(name: str, grid: np.ndarray) -> tuple[str, float, float]:
    """The color map and its range (vmin, vmax) for score ``name``'s values ``grid``."""
    largest = max(float(np.abs(grid).max()), 1e-6)
    if name in SIGNED:
        return "RdBu_r", -largest, largest
    return "viridis", 0.0, largest if name in UNBOUNDED else 1.0


def score_image(name: str, values: torch.Tensor, caption: str = "") -> np.ndarray:
    """``values`` (L, nh) as an (H, W, 3) uint8 heatmap with the numbers in the cells."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = values.detach().float().cpu().numpy()  # (L, nh)
    L, nh = grid.shape
    cmap, vmin, vmax = color_scale(name, grid)
    cell = 0.55  # inches per cell
    width, height = 1.6 + nh * cell + 1.0, 1.1 + L * cell
    fig = Figure(figsize=(max(width, 3.6), height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((1.1 / max(width, 3.6), 0.45 / height, nh * cell / max(width, 3.6), L * cell / height))
    image = ax.imshow(grid, cmap=colormaps[cmap], vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    for i in range(L):
        for j in range(nh):
            value = grid[i, j]
            light = abs(value) < 0.6 * vmax if name in SIGNED else value > 0.6 * vmax  # the cell's color
            text = f"{value:+.3f}" if name in SIGNED else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if light else "white")  # fmt: skip
    ax.set_xticks(range(nh), [str(j) for j in range(nh)], fontsize=7)
    ax.set_yticks(range(L), [str(i) for i in range(L)], fontsize=7)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    units = {**UNBOUNDED, **SIGNED}
    unit = f" ({units[name]})" if name in units else ""
    fig.colorbar(image, ax=ax, fraction=0.08, pad=0.04)
    fig.suptitle(f"{name}{unit}" + (f" — {caption}" if caption else ""), fontsize=9, y=1 - 0.1 / height, va="top")
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8


def score_images(scores: dict[str, torch.Tensor], caption: str = "") -> dict[str, np.ndarray]:
    """``{"heads/<score>": image}`` for every score."""
    return {f"heads/{name}": score_image(name, values, caption) for name, values in scores.items()}
