"""Named activation points: look inside the model, and intervene, TransformerLens-style.

Every point is a :class:`HookPoint`, an identity module at one step of the forward pass, named by
its place in the module tree:

    embed                    (B, T, C)      token embedding * sqrt(C) + positions, before dropout
    blocks.{i}.resid_pre     (B, T, C)      the residual stream entering block i
    blocks.{i}.attn.scores   (B, nh, T, S)  q k^T / sqrt(hs), the future masked to -inf, before softmax
    blocks.{i}.attn.pattern  (B, nh, T, S)  the attention weights (rows sum to 1)
    blocks.{i}.attn.z        (B, nh, T, hs) each head's output (weights @ v), before out_proj
    blocks.{i}.attn_out      (B, T, C)      the attention sub-layer's output, added to the stream
    blocks.{i}.mlp_out       (B, T, C)      the feed-forward sub-layer's output (models with an MLP)
    blocks.{i}.resid_post    (B, T, C)      the residual stream leaving block i
    ln_final                 (B, T, C)      after the final norm
    logits                   (B, T, V)

:meth:`HookedModel.run_with_cache` returns the logits and the activations asked for;
:meth:`HookedModel.run_with_hooks` calls ``fn(activation, name)`` at each named point, and what
``fn`` returns (a tensor of the same shape) replaces the activation downstream (None keeps it).
A point without a hook costs one call that returns its input, so training pays nothing; the
attention scores and pattern exist only on the explicit attention path, which the model takes
whenever a hook asks for them (``sdpa`` never forms the (T, S) matrix).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn as nn

from attnlab.errors import ConfigError

Hook = Callable[[torch.Tensor, str], "torch.Tensor | None"]  # fn(activation, name) -> replacement or None


class HookPoint(nn.Module):
    """The identity, at a named step of the forward pass; hooks attach here. No parameters, so
    state dicts and checkpoints are the same with or without hook points."""

    def __init__(self):
        super().__init__()
        self.name = ""  # set by HookedModel.__init__ from the module tree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def active(self) -> bool:
        """Whether a hook is attached (the attention asks, to form the pattern only when needed)."""
        return bool(self._forward_hooks)

    def attach(self, fn: Hook) -> torch.utils.hooks.RemovableHandle:
        """Run ``fn(activation, name)`` on this point's activation; a returned tensor replaces it."""

        def call(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor | None:
            replaced = fn(output, self.name)
            if replaced is not None and replaced.shape != output.shape:
                raise ValueError(
                    f"the hook on {self.name} returned shape {tuple(replaced.shape)}, not {tuple(output.shape)}"
                )
            return replaced

        return self.register_forward_hook(call)


class HookedModel(nn.Module):
    """What a model with :class:`HookPoint` s gains: their names, and the two ways to use them."""

    def name_hook_points(self) -> None:
        """Give every hook point its name in the module tree (call at the end of ``__init__``)."""
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name

    @property
    def hook_points(self) -> dict[str, HookPoint]:
        """``{name: point}`` in the order the forward pass reaches them."""
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}

    def _points(self, names: Iterable[str]) -> list[HookPoint]:
        points = self.hook_points
        unknown = [n for n in names if n not in points]
        if unknown:
            near = difflib.get_close_matches(unknown[0], list(points), n=3)
            hint = (
                f"; did you mean {' or '.join(near)}?"
                if near
                else f"; the names are {', '.join(list(points)[:12])}, ..."
            )
            raise ConfigError(f"no hook point named {unknown[0]!r}{hint}")
        return [points[n] for n in names]

    @contextlib.contextmanager
    def hooks(self, hooks: Mapping[str, Hook]) -> Iterator[None]:
        """``with model.hooks({name: fn}): model(ids)``: the hooks attached for the block's forward passes."""
        handles = [point.attach(fn) for point, fn in zip(self._points(list(hooks)), hooks.values())]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def run_with_hooks(self, idx: torch.Tensor, hooks: Mapping[str, Hook], **forward) -> torch.Tensor:
        """Logits of ``idx`` with ``hooks`` ({name: fn(activation, name)}) run at their points."""
        with self.hooks(hooks):
            return self(idx, **forward)

    def run_with_cache(
        self, idx: torch.Tensor, names: Iterable[str] | None = None, **forward
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, {name: activation})`` for the points ``names`` (default: every point). The
        activations are detached; ``forward`` passes on to the model (``impl=``, ...)."""
        names = list(self.hook_points) if names is None else list(names)
        cache: dict[str, torch.Tensor] = {}

        def keep(activation: torch.Tensor, name: str) -> None:
            cache[name] = activation.detach()

        logits = self.run_with_hooks(idx, dict.fromkeys(names, keep), **forward)
        return logits, cache


# --------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------


def ablate_head(head: int, mean: torch.Tensor | None = None) -> Hook:
    """A hook for ``blocks.{i}.attn.z`` that removes head ``head``'s output: zero (``mean=None``)
    or replaced by ``mean`` (hs,) or (T, hs), its mean output over some reference text."""

    def ablate(z: torch.Tensor, name: str) -> torch.Tensor:  # z: (B, nh, T, hs)
        if not 0 <= head < z.size(1):
            raise ConfigError(f"{name} has heads 0..{z.size(1) - 1}; head {head} is out of range")
        z = z.clone()
        z[:, head] = 0.0 if mean is None else mean.to(z.dtype)  # (B, T, hs) <- (hs,) or (T, hs)
        return z

    return ablate


def patch(source: Mapping[str, torch.Tensor]) -> dict[str, Hook]:
    """Hooks that replace each named activation with ``source``'s (a :meth:`run_with_cache` cache
    of another input of the same shape): activation patching."""
    return {name: (lambda activation, n, value=value: value.to(activation.dtype)) for name, value in source.items()}
