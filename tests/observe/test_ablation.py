"""Head ablation: the loss increase of each head is the edit of the model it stands for."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnlab.model import GPT, ModelConfig
from attnlab.observe.ablation import ABLATION_SCORES, ablate_every_head, head_output, mean_loss
from attnlab.observe.head_maps import color_scale, score_images
from attnlab.observe.head_scores import spread_windows


def tiny_model() -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=61, context_length=16, d_model=32, num_heads=4, num_layers=2, tie_embeddings=False)
    model = GPT(cfg).eval()
    with torch.no_grad():  # sharp predictions and heads that write 20 times more than at init: each one matters
        model.lm_head.weight.mul_(20.0)
        for block in model.blocks:
            block.attn.out_proj.weight.mul_(20.0)
    return model


def text_windows(count: int = 7) -> torch.Tensor:
    ids = np.random.default_rng(3).integers(0, 61, size=200)
    return spread_windows(ids, 17, count)  # (7, T+1)


def test_the_base_loss_is_the_mean_next_token_loss_whatever_the_batch():
    model, windows = tiny_model(), text_windows()
    x, y = windows[:, :-1], windows[:, 1:]  # (N, T) each
    with torch.no_grad():
        whole = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    assert mean_loss(model, windows, batch_size=3) == pytest.approx(whole, abs=1e-6)  # batches of 3, 3, 1
    assert ablate_every_head(model, windows, batch_size=2).base_loss == pytest.approx(whole, abs=1e-6)


def test_zero_ablation_is_zeroing_the_heads_out_proj_slice():
    model, windows = tiny_model(), text_windows()
    x, y = windows[:, :-1], windows[:, 1:]  # (N, T) each
    ablations = ablate_every_head(model, windows, batch_size=3)
    increase = ablations.loss_increase["zero"]  # (L, nh)
    assert increase.shape == (2, 4)
    hs = model.cfg.head_size
    for i in range(2):
        for h in range(4):
            edited = copy.deepcopy(model)
            with torch.no_grad():
                edited.blocks[i].attn.out_proj.weight[:, h * hs : (h + 1) * hs] = 0.0  # (C, hs) columns of head h
                loss = F.cross_entropy(edited(x).flatten(0, 1), y.flatten()).item()  # one batch, no hooks
            assert increase[i, h].item() == pytest.approx(loss - ablations.base_loss, abs=2e-6), (i, h)
    assert (increase.abs() > 1e-3).all()  # far above the tolerance: the check has teeth


def test_mean_ablation_puts_the_heads_mean_output_at_each_position():
    model, windows = tiny_model(), text_windows()
    ablations = ablate_every_head(model, windows, batch_size=3)
    x, y = windows[:, :-1], windows[:, 1:]  # (N, T) each
    _, cache = model.run_with_cache(x, names=[head_output(1)])
    mean = cache[head_output(1)].mean(dim=0)  # (nh, T, hs): over the windows, at each position

    def put_mean(z, name):  # z: (B, nh, T, hs)
        z = z.clone()
        z[:, 2] = mean[2]
        return z

    with torch.no_grad():
        logits = model.run_with_hooks(x, {head_output(1): put_mean})  # (B, T, V)
    expected = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item() - ablations.base_loss
    assert ablations.loss_increase["mean"][1, 2].item() == pytest.approx(expected, abs=2e-6)
    assert not torch.allclose(ablations.loss_increase["mean"], ablations.loss_increase["zero"])


def test_a_head_with_no_output_costs_nothing_either_way():
    model, windows = tiny_model(), text_windows()
    hs = model.cfg.head_size
    with torch.no_grad():
        model.blocks[0].attn.out_proj.weight[:, hs : 2 * hs] = 0.0  # head 1 of layer 0 writes nothing
    scores = ablate_every_head(model, windows, batch_size=4).scores()
    assert set(scores) == set(ABLATION_SCORES)
    for name in ABLATION_SCORES:
        assert scores[name][0, 1].item() == pytest.approx(0.0, abs=2e-6)
        assert scores[name][1].abs().min().item() > 1e-4  # the heads that do write: 50 times the tolerance


def test_loss_increases_are_drawn_on_a_scale_centred_on_zero():
    values = torch.tensor([[-0.05, 0.0], [0.2, 0.01]])  # (L, nh)
    assert color_scale("zero_ablation", values.numpy()) == ("RdBu_r", pytest.approx(-0.2), pytest.approx(0.2))
    assert color_scale("mean_ablation", -values.numpy()) == ("RdBu_r", pytest.approx(-0.2), pytest.approx(0.2))
    assert color_scale("prev_token", values.abs().numpy()) == ("viridis", 0.0, 1.0)  # shares: one fixed scale
    assert color_scale("distance", 3 * values.abs().numpy()) == ("viridis", 0.0, pytest.approx(0.6))
    images = score_images({"zero_ablation": values, "prev_token": values.abs()})
    assert set(images) == {"heads/zero_ablation", "heads/prev_token"}
    assert all(image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8 for image in images.values())
