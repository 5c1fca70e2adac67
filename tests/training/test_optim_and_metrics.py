import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.text import Perplexity

from attnlab.model import GPT, ModelConfig
from attnlab.training.metrics import LanguageModelMetrics
from attnlab.training.optim import MuonWithAdamW, OptimConfig, build_optimizer, hidden_matrices, param_groups
from attnlab.training.schedule import warmup_cosine


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
    # a wall-clock budget (trainer.max_time) ends the cosine when it is spent, whatever the step
    assert warmup_cosine(20, 10, 10**6, 0.1, time_used=0.5) == pytest.approx(0.55)
    assert warmup_cosine(20, 10, 10**6, 0.1, time_used=1.0) == pytest.approx(0.1)
    assert warmup_cosine(60, 10, 110, 0.1, time_used=0.1) == pytest.approx(0.55)  # the steps ran out faster


def test_weight_decay_only_on_matrices():
    model = GPT(ModelConfig(vocab_size=20, context_length=8, d_model=16, num_heads=2, num_layers=1))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_parameters()


def test_embedding_and_output_layer_can_take_their_own_lr_under_the_schedule():
    untied = GPT(
        ModelConfig(vocab_size=20, context_length=8, d_model=16, num_heads=2, num_layers=1, tie_embeddings=False)
    )
    assert len(build_optimizer(untied, OptimConfig()).param_groups) == 2  # unset: the groups of earlier checkpoints
    opt = build_optimizer(untied, OptimConfig(name="muon", lr=1e-3, embed_lr=0.05, head_lr=4e-3))
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(untied.token_embedding.weight)] == 0.05 and lrs[id(untied.lm_head.weight)] == 4e-3
    assert lrs[id(untied.ln_f.weight)] == 1e-3 and lrs[id(untied.blocks[0].ffn.up.weight)] == 0.02  # AdamW's lr, Muon's
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == untied.num_parameters()
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)  # scales each group's own peak
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(untied.token_embedding.weight)] == 0.025 and lrs[id(untied.lm_head.weight)] == 2e-3

    tied = GPT(ModelConfig(vocab_size=20, context_length=8, d_model=16, num_heads=2, num_layers=1))
    opt = build_optimizer(tied, OptimConfig(embed_lr=0.05, head_lr=4e-3))  # one matrix: the embedding's LR
    assert [g["lr"] for g in opt.param_groups if any(p is tied.token_embedding.weight for p in g["params"])] == [0.05]
    assert 4e-3 not in [g["lr"] for g in opt.param_groups]


def test_muon_takes_the_hidden_matrices_and_checkpoints_like_one_optimizer(tmp_path):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=20, context_length=8, d_model=16, num_heads=2, num_layers=2))
    opt = build_optimizer(model, OptimConfig(name="muon", lr=1e-3, muon_lr=0.02))
    adamw, muon = opt.optimizers
    assert isinstance(opt, MuonWithAdamW) and isinstance(muon, torch.optim.Muon)
    names = hidden_matrices(model)
    assert len(names) == 2 * 6 and all(
        n.startswith("blocks.") and n.endswith("weight") for n in names
    )  # q k v out up down
    muon_params = {id(p) for g in muon.param_groups for p in g["params"]}
    adamw_params = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert not muon_params & adamw_params and len(muon_params | adamw_params) == len(list(model.parameters()))
    assert id(model.token_embedding.weight) in adamw_params  # the embedding (and tied head) stay with AdamW

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)  # edits the inner groups too
    assert [g["lr"] for g in muon.param_groups] == [0.01] and adamw.param_groups[0]["lr"] == 5e-4
    x = torch.randint(0, 20, (4, 8))

    def step() -> float:
        opt.zero_grad()
        loss = F.cross_entropy(model(x).view(-1, 20), x.view(-1))
        loss.backward()
        opt.step()
        schedule.step()
        return loss.item()

    first = [step() for _ in range(3)]
    assert first[2] < first[0]
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "c.pt")
    after = [step() for _ in range(3)]
    saved = torch.load(tmp_path / "c.pt", weights_only=True)  # as Lightning's checkpoints are read back
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    assert muon.state is opt.state and muon.param_groups[0] is opt.param_groups[-1]  # relinked
    assert [step() for _ in range(3)] == after  # momentum and Adam moments came back exactly


def test_optimizer_config_is_validated():
    from attnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown optim.name='sgd'; use one of adamw, muon"):
        OptimConfig(name="sgd")
    with pytest.raises(ConfigError, match=r"optim.embed_lr must be positive or null \(optim.lr\), got 0"):
        OptimConfig(embed_lr=0)
