"""Metrics that reduce exactly across batches and processes (torchmetrics): the language model's,
and the encoder–decoder's."""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.text import CHRFScore, SacreBLEUScore


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


class Seq2SeqMetrics(Metric):
    """Sums over val pairs of teacher-forced NLL, target tokens and correct argmax tokens, and of
    decoded outputs equal to their reference; chrF and SacreBLEU over the decoded outputs (corpus
    level, as torchmetrics computes them, across processes too).

    ``compute()``: ``loss`` (nats/token), ``ppl``, ``token_accuracy``, ``exact_match``, ``chrf``,
    ``bleu``; all but the first two are fractions, 0 to 1.
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("exact", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.chrf = CHRFScore(n_word_order=0)  # chrF (character n-grams only), not chrF++
        self.bleu = SacreBLEUScore()

    def update(
        self,
        nll_sum: torch.Tensor,
        tokens: torch.Tensor,
        correct: torch.Tensor,
        outputs: list[str],
        references: list[str],
    ) -> None:
        self.nll += nll_sum.detach().double()
        self.tokens += tokens.detach().long()
        self.correct += correct.detach().long()
        self.exact += sum(o == r for o, r in zip(outputs, references, strict=True))
        self.pairs += len(outputs)
        self.chrf.update(outputs, [[r] for r in references])
        self.bleu.update(outputs, [[r] for r in references])

    def compute(self) -> dict[str, torch.Tensor]:
        loss = self.nll / self.tokens.clamp(min=1)
        return {
            "loss": loss.float(),
            "ppl": torch.exp(loss).float(),
            "token_accuracy": (self.correct / self.tokens.clamp(min=1)).float(),
            "exact_match": (self.exact / self.pairs.clamp(min=1)).float(),
            "chrf": self.chrf.compute().float(),
            "bleu": self.bleu.compute().float(),
        }

    def reset(self) -> None:
        super().reset()
        self.chrf.reset()
        self.bleu.reset()
