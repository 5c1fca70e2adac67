"""The optimizers: ``optim=adamw`` or ``optim=muon`` (conf/optim/), and their parameter groups.

``optim=adamw`` (the default): AdamW on every parameter, weight decay on matrices only.
``optim=muon``: ``torch.optim.Muon`` (momentum, then the update orthogonalised by Newton–Schulz
iterations) on the blocks' hidden weight matrices (attention q, k, v, out and the feed-forward
up, down), AdamW on the rest (embedding, output layer, norms, biases), behind one
:class:`MuonWithAdamW` optimizer so that Lightning, the LR schedule, clipping and checkpoints see
one optimizer. The LR schedule is in :mod:`attnlab.training.schedule`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn as nn

from attnlab.checks import from_dict, require_choice, require_int
from attnlab.errors import ConfigError

OPTIMIZERS = ("adamw", "muon")


@dataclass
class OptimConfig:
    name: str = "adamw"  # "adamw" | "muon" (Muon for hidden matrices, AdamW for the rest)
    lr: float = 2e-3  # peak learning rate, reached after warmup (AdamW's)
    weight_decay: float = 0.1  # applied to matrices (Linear weights, embeddings) only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 100  # linear warmup from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    muon_lr: float = 0.02  # Muon's peak LR (name=muon), scaled by the same schedule
    muon_momentum: float = 0.95  # Muon's momentum (Nesterov)
    embed_lr: float | None = None  # AdamW's peak LR for the token embedding (None: lr)
    head_lr: float | None = None  # AdamW's peak LR for an untied output layer (None: lr)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        require_choice(self.name, "optim.name", OPTIMIZERS)
        if not self.muon_lr > 0:
            raise ConfigError(f"optim.muon_lr must be positive, got {self.muon_lr!r}")
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"optim.muon_momentum must be in [0, 1), got {self.muon_momentum!r}")
        for name in ("lr", "embed_lr", "head_lr"):
            value = getattr(self, name)
            if not (value is None and name != "lr") and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(
                    f"optim.{name} must be positive{'' if name == 'lr' else ' or null (optim.lr)'}, got {value!r}"
                )
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        require_int(self.warmup_steps, "optim.warmup_steps", minimum=0)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")

    @classmethod
    def from_dict(cls, values: dict) -> OptimConfig:
        return from_dict(cls, values, "optim")


# AdamW parameters that may take their own peak LR (optim.embed_lr, optim.head_lr): the rows that
# map tokens. A tied output layer is the embedding's matrix, listed once, under the embedding.
OWN_LR = {
    "token_embedding.weight": "embed_lr",  # the GPT's
    "src_embedding.weight": "embed_lr",  # the encoder–decoder's
    "tgt_embedding.weight": "embed_lr",
    "lm_head.weight": "head_lr",
}
BLOCK_PREFIXES = ("blocks.", "encoder.", "decoder.")  # the GPT's blocks, the encoder–decoder's


def param_groups(
    model: nn.Module, weight_decay: float, exclude: Collection[str] = (), own_lr: dict[str, float] | None = None
) -> list[dict]:
    """Decay every parameter with 2+ dims (weights, embeddings); not biases or norm gains.
    Parameters named in ``exclude`` are left out (another optimizer has them); each one named in
    ``own_lr`` gets a group of its own with that peak LR (after the two shared groups)."""
    own_lr = own_lr or {}
    params = {
        name: p for name, p in model.named_parameters() if p.requires_grad and name not in exclude
    }  # tied: listed once
    shared = {name: p for name, p in params.items() if name not in own_lr}
    decay = [p for p in shared.values() if p.dim() >= 2]
    no_decay = [p for p in shared.values() if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        *(
            {"params": [p], "weight_decay": weight_decay if p.dim() >= 2 else 0.0, "lr": own_lr[name]}
            for name, p in params.items()
            if name in own_lr
        ),
    ]


def build_adamw(model: nn.Module, cfg: OptimConfig, exclude: Collection[str] = ()) -> torch.optim.AdamW:
    """AdamW over the model's parameters (but ``exclude``): fused on CUDA, foreach elsewhere.
    ``cfg.embed_lr`` / ``cfg.head_lr``, when set, give the embedding / output layer their own LR."""
    own_lr = {name: getattr(cfg, field) for name, field in OWN_LR.items() if getattr(cfg, field) is not None}
    fused = all(p.device.type == "cuda" for p in model.parameters())
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay, exclude, own_lr),
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        **({"fused": True} if fused else {"foreach": True}),
    )


def hidden_matrices(model: nn.Module) -> list[str]:
    """Names of the 2-D weights inside the transformer blocks: Muon's parameters. The embedding
    and output layer map tokens, not hidden features, and stay with AdamW (as in Muon's recipe)."""
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and p.dim() == 2 and name.startswith(BLOCK_PREFIXES)
    ]


class MuonWithAdamW(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, seen from outside as one.

    Its ``param_groups`` are the inner optimizers' groups (the same dicts, so an LR scheduler or
    clipping that edits them edits theirs), and its ``state`` is shared with them, so the
    standard ``state_dict`` / ``load_state_dict`` save and restore every inner state.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        self._sizes = [len(o.param_groups) for o in optimizers]
        super().__init__([g for o in optimizers for g in o.param_groups], defaults={})
        self._link()

    def _link(self) -> None:
        """Point every inner optimizer at its slice of the groups and at the shared state."""
        first = 0
        for opt, size in zip(self.optimizers, self._sizes):
            opt.param_groups = self.param_groups[first : first + size]
            opt.state = self.state
            first += size

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # replaces self.state and the group dicts
        self._link()


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (``cfg.name=adamw``), or Muon on the hidden matrices with AdamW on the rest."""
    if cfg.name == "adamw":
        return build_adamw(model, cfg)
    names = hidden_matrices(model)
    named = dict(model.named_parameters())
    muon = torch.optim.Muon(
        [named[n] for n in names],
        lr=cfg.muon_lr,
        momentum=cfg.muon_momentum,
        weight_decay=cfg.weight_decay,
        adjust_lr_fn="original",
    )
    return MuonWithAdamW([build_adamw(model, cfg, exclude=set(names)), muon])  # AdamW first: its LR is the logged `lr`
