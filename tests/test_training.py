import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.text import Perplexity

from attnlab.metrics import LanguageModelMetrics
from attnlab.model import GPT, ModelConfig
from attnlab.optim import param_groups, warmup_cosine


def test_metrics_match_definitions_and_torchmetrics():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    y = torch.randint(0, 11, (3, 5))
    nbytes = torch.randint(1, 4, (11,))
    metric = LanguageModelMetrics()
    for b in range(3):  # batch by batch, as validation does
        nll = F.cross_entropy(logits[b], y[b], reduction="sum")
        metric.update(nll, torch.tensor(5), nbytes[y[b]].sum())
    m = metric.compute()
    mean_nll = F.cross_entropy(logits.view(-1, 11), y.view(-1))
    ppl = Perplexity()
    ppl.update(logits, y)
    torch.testing.assert_close(m["loss"], mean_nll)
    torch.testing.assert_close(m["ppl"], ppl.compute())
    torch.testing.assert_close(m["bpb"], mean_nll * 15 / (math.log(2) * nbytes[y].sum()))


def test_warmup_then_cosine():
    lrs = [warmup_cosine(s, warmup_steps=10, total_steps=110, min_ratio=0.1) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))  # rising
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then falling
    assert lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1)


def test_weight_decay_only_on_matrices():
    model = GPT(ModelConfig(vocab_size=20, context_length=8, d_model=16, num_heads=2, num_layers=1))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_parameters()
