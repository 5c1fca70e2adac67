"""Continuations of a fixed prompt, greedy and sampled, as Markdown for TensorBoard's TEXT tab."""

from __future__ import annotations

import torch

from attnlab.data.tokenizer import Tokenizer
from attnlab.model import GPT
from attnlab.model.sampling import generate


def sample_markdown(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
) -> str:
    """A greedy and a sampled continuation of ``prompt`` (T0,), as Markdown for the TEXT tab."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        prompt = prompt.to(device)
        greedy = torch.stack(list(generate(model, prompt, max_new_tokens, temperature=0.0)), dim=1)  # (1, N)
        g = torch.Generator(device=device).manual_seed(seed)  # the same draw at every step
        sampled = torch.stack(
            list(generate(model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, generator=g)), dim=1
        )  # (1, N)
    finally:
        model.train(was_training)
    prompt_text = tokenizer.decode(prompt.cpu())
    sample_desc = f"sampled (temperature {temperature}" + (f", top_k {top_k}" if top_k else "") + f", seed {seed})"

    def block(ids: torch.Tensor) -> str:  # a Markdown code block keeps line breaks and spacing
        text = prompt_text + tokenizer.decode(ids[0].cpu())
        return "\n".join("    " + line for line in text.split("\n"))

    return f"**greedy**\n\n{block(greedy)}\n\n**{sample_desc}**\n\n{block(sampled)}"
