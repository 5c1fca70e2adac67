"""Continuations of a fixed prompt, greedy and sampled, as Markdown for TensorBoard's TEXT tab.

The prompt is in bold, the continuation follows it in plain text; the text itself is escaped, so
it shows as the model wrote it (a ``*`` or ``#`` of the corpus is not formatting), line breaks and
runs of spaces kept.
"""

from __future__ import annotations

import re

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
    greedy_md = continuation_markdown(prompt_text, tokenizer.decode(greedy[0].cpu()))
    sampled_md = continuation_markdown(prompt_text, tokenizer.decode(sampled[0].cpu()))
    return f"**greedy**\n\n{greedy_md}\n\n**{sample_desc}**\n\n{sampled_md}"


_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>])")  # what Markdown (with tables) would read as formatting


def escape_markdown(text: str) -> str:
    """``text`` (one line) as Markdown that shows it as typed: formatting characters escaped, HTML
    as entities, and every space but a lone one between words kept (HTML would fold them)."""
    text = _SPECIAL.sub(r"\\\1", text.replace("&", "&amp;").replace("<", "&lt;"))
    return re.sub(r"^ | (?= )| $", "&nbsp;", text)


def continuation_markdown(prompt: str, continuation: str) -> str:
    """The prompt in bold, then the continuation, as escaped Markdown: one hard line break per
    line break of the text (a bold span cannot cross one, so each line of the prompt is bold)."""
    lines = []
    prompt_lines = prompt.split("\n")
    continuation_lines = continuation.split("\n")
    for i, line in enumerate(prompt_lines):
        bold = f"**{escape_markdown(line)}**" if line.strip() else escape_markdown(line)
        rest = escape_markdown(continuation_lines[0]) if i == len(prompt_lines) - 1 else ""
        lines.append(bold + rest)
    lines += [escape_markdown(line) for line in continuation_lines[1:]]
    return "<br>\n".join(line or "&nbsp;" for line in lines)
