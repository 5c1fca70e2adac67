"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from attnlab.config import from_dict
from attnlab.errors import ConfigError


@dataclass
class OptimConfig:
    lr: float = 2e-3  # peak learning rate, reached after warmup
    weight_decay: float = 0.1  # applied to matrices (Linear weights, embeddings) only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 100  # linear warmup from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "OptimConfig":
        return from_dict(cls, values, "optim")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay every parameter with 2+ dims (weights, embeddings); not biases or norm gains."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}  # tied: listed once
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_adamw(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    fused = all(p.device.type == "cuda" for p in model.parameters())
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             **({"fused": True} if fused else {"foreach": True}))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear 0 -> 1 over warmup, then cosine 1 -> min_ratio until total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
