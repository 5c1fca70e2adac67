"""Language-model metrics that reduce exactly across batches and processes (torchmetrics)."""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


class LanguageModelMetrics(Metric):
    """Sums of token NLL, predicted tokens and the UTF-8 bytes they stand for.

    ``compute()`` gives the mean loss (nats/token), perplexity ``exp(loss)`` and bits per byte
    ``sum NLL / (ln 2 * bytes)``. Bits per byte divides by the text's bytes, not its tokens, so
    it compares runs with different tokenizers.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bytes", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, tokens: torch.Tensor, nbytes: torch.Tensor) -> None:
        self.nll += nll_sum.detach().double()
        self.tokens += tokens.detach().long()
        self.bytes += nbytes.detach().long()

    def compute(self) -> dict[str, torch.Tensor]:
        loss = self.nll / self.tokens.clamp(min=1)
        return {
            "loss": loss.float(),
            "ppl": torch.exp(loss).float(),
            "bpb": (self.nll / (math.log(2) * self.bytes.clamp(min=1))).float(),
        }
