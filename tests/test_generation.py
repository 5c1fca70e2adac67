"""Sampling rules and the generation loop."""

import torch

from attnlab.generation import generate, sample_next
from attnlab.model import GPT, ModelConfig


def test_greedy_takes_the_argmax():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]


def test_top_k_and_top_p_never_pick_excluded_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks_k = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert picks_k == {0, 1}
    picks_p = {sample_next(logits, 1.0, top_p=0.7, generator=g).item() for _ in range(200)}
    assert picks_p == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: tokens 2 and 3 are dropped


def test_generate_is_seeded_and_slides_past_the_context():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, context_length=8, d_model=16, num_heads=2, num_layers=1)).eval()
    prompt = torch.tensor([1, 2, 3])

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.stack(list(generate(model, prompt, 20, temperature=1.0, generator=g)), dim=1)

    a, b = run(5), run(5)
    assert a.shape == (1, 20) and torch.equal(a, b)
