"""The model summary: parameters per module, printed when training starts and saved in the run."""

from __future__ import annotations

import torch

from attnlab.model import GPT


def model_summary(model: GPT) -> str:
    """Parameters per module as a table: embedding, positions, each block's parts, head, total."""

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    cfg = model.cfg
    rows: list[tuple[str, str, str]] = [
        ("token_embedding", f"Embedding({cfg.vocab_size}, {cfg.d_model})", f"{count(model.token_embedding):,}"),
    ]
    if model.positional is not None:  # RoPE has no module here: it rotates q, k inside attention
        rows.append(("positional", type(model.positional).__name__, f"{count(model.positional):,}"))
    for i, block in enumerate(model.blocks):
        for name in ("ln1", "attn", "ln2", "ffn"):
            part = getattr(block, name)
            if part is None:  # model.mlp=false: no ln2, no ffn
                continue
            rows.append((f"blocks.{i}.{name}", type(part).__name__, f"{count(part):,}"))
    rows.append(("ln_f", type(model.ln_f).__name__, f"{count(model.ln_f):,}"))
    head = "tied to token_embedding" if cfg.tie_embeddings else f"{count(model.lm_head):,}"
    rows.append(("lm_head", f"Linear({cfg.d_model}, {cfg.vocab_size})", head))
    total = model.num_parameters()
    body = total - count(model.token_embedding) - (0 if cfg.tie_embeddings else count(model.lm_head))
    widths = [max(len(r[k]) for r in rows + [("module", "type", "parameters")]) for k in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
    out = [line(("module", "type", "parameters")), "-" * (sum(widths) + 4)]
    out += [line(r) for r in rows]
    out += [
        "-" * (sum(widths) + 4),
        f"total {total:,} parameters ({body:,} without the embedding), {total * 4 / 2**20:.1f} MiB in fp32",
        f"config: d_model={cfg.d_model} num_heads={cfg.num_heads} head_size={cfg.head_size} "
        f"num_layers={cfg.num_layers} context_length={cfg.context_length} vocab_size={cfg.vocab_size} "
        f"attention={cfg.attention} positional={cfg.positional} norm={cfg.norm} qk_norm={cfg.qk_norm} "
        f"activation={cfg.activation} tie_embeddings={cfg.tie_embeddings} mlp={cfg.mlp}",
    ]
    return "\n".join(out)
