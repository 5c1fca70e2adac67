"""What each head is worth to the loss: remove its output and measure how much the loss rises.

On fixed text windows (N, T+1) (inputs :T, targets 1:), the base loss is the model's mean
next-token loss over all N * T targets. Ablating head h of layer i replaces its output,
the hook point ``blocks.{i}.attn.z`` (B, nh, T, hs) at head h, downstream of which everything
is recomputed (:func:`attnlab.model.hooks.ablate_head`):

    zero   the output set to 0: the same as zeroing head h's columns of that layer's out_proj
    mean   the output replaced by its mean over the same N windows at each position (T, hs):
           the head's average contribution kept, what it does with this particular input removed

The loss increase (ablated loss minus base loss, in nats) is one number per layer and head, an
(L, nh) tensor per kind; near 0 for a head the model can do without, negative where the head
hurts. Each head and kind costs one pass over the windows, in batches of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnlab.model import GPT
from attnlab.model.hooks import Hook, ablate_head

ABLATIONS = ("zero", "mean")


def ablation_score(kind: str) -> str:
    """The name of ablation ``kind``'s loss increase as a per-head score: ``zero_ablation``, ``mean_ablation``."""
    return f"{kind}_ablation"


ABLATION_SCORES = tuple(map(ablation_score, ABLATIONS))


def head_output(layer: int) -> str:
    """The hook point of layer ``layer``'s per-head outputs, (B, nh, T, hs)."""
    return f"blocks.{layer}.attn.z"


@torch.no_grad()
def mean_loss(model: GPT, windows: torch.Tensor, batch_size: int, hooks: Mapping[str, Hook] | None = None) -> float:
    """Mean next-token loss (nats) over ``windows`` (N, T+1) (inputs :T, targets 1:),
    ``batch_size`` windows per forward pass, with ``hooks`` run at their points."""
    total = 0.0
    for chunk in windows.split(batch_size):  # (b, T+1)
        logits = model.run_with_hooks(chunk[:, :-1], hooks or {})  # (b, T, V)
        total += float(F.cross_entropy(logits.float().flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum"))
    return total / (windows.size(0) * (windows.size(1) - 1))


@torch.no_grad()
def loss_and_mean_outputs(model: GPT, windows: torch.Tensor, batch_size: int) -> tuple[float, torch.Tensor]:
    """The base loss of ``windows`` (N, T+1) and every head's mean output over the N windows at
    each position, (L, nh, T, hs), from one pass."""
    cfg = model.cfg
    N, T = windows.size(0), windows.size(1) - 1
    sums = torch.zeros(cfg.num_layers, cfg.num_heads, T, cfg.head_size, device=windows.device)  # (L, nh, T, hs)

    def add_to(layer: int) -> Hook:
        def add(z: torch.Tensor, name: str) -> None:  # z: (B, nh, T, hs)
            sums[layer] += z.float().sum(dim=0)

        return add

    base = mean_loss(model, windows, batch_size, {head_output(i): add_to(i) for i in range(cfg.num_layers)})
    return base, sums / N


@dataclass
class HeadAblations:
    """The base loss and, per ablation kind, each head's loss increase."""

    base_loss: float  # nats, on the windows unablated
    loss_increase: dict[str, torch.Tensor]  # {"zero": (L, nh), "mean": (L, nh)}: ablated minus base, nats

    def scores(self) -> dict[str, torch.Tensor]:
        """The loss increases named as per-head scores: ``{"zero_ablation": (L, nh), ...}``."""
        return {ablation_score(kind): increase for kind, increase in self.loss_increase.items()}


def ablate_every_head(model: GPT, windows: torch.Tensor, batch_size: int) -> HeadAblations:
    """Each head of ``model`` ablated in turn, each way of :data:`ABLATIONS`, on ``windows``
    (N, T+1). The model is left as it was (eval mode during the passes)."""
    was_training = model.training
    model.eval()
    try:
        base, means = loss_and_mean_outputs(model, windows, batch_size)  # means: (L, nh, T, hs)
        L, nh = means.shape[:2]
        increase = {kind: torch.zeros(L, nh, dtype=torch.float64) for kind in ABLATIONS}
        for i in range(L):
            for h in range(nh):
                for kind in ABLATIONS:
                    hook = ablate_head(h, mean=means[i, h] if kind == "mean" else None)
                    increase[kind][i, h] = mean_loss(model, windows, batch_size, {head_output(i): hook}) - base
    finally:
        model.train(was_training)
    return HeadAblations(base_loss=base, loss_increase=increase)
