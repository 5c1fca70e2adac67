"""The model summary: parameters per module, printed when training starts and saved in the run.

One table for either model (the GPT, the encoder–decoder): each top-level module, and each part of
each block of its stacks (``blocks``, ``encoder``, ``decoder``). A parameter shared between modules
(a tied output layer, source and target sharing one embedding) counts once, where it first appears.
"""

from __future__ import annotations

from dataclasses import fields

import torch.nn as nn

from attnlab.model.hooks import HookPoint

SILENT = (nn.Dropout, nn.Identity, HookPoint)  # no parameters, nothing to learn about the model


def describe(module: nn.Module) -> str:
    if isinstance(module, nn.Embedding):
        return f"Embedding({module.num_embeddings}, {module.embedding_dim})"
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features}, {module.out_features})"
    return type(module).__name__


def model_summary(model: nn.Module) -> str:
    """Parameters per module as a table (embeddings, positions, each block's parts, norms, output
    layer), the totals, and the config the model was built from (``model.cfg``)."""
    seen: dict[int, str] = {}  # id(parameter) -> the module that holds it first

    def row(name: str, module: nn.Module) -> tuple[str, str, str]:
        params = list(module.parameters())
        new = [p for p in params if id(p) not in seen]
        for p in new:
            seen[id(p)] = name
        if params and not new:  # every parameter is another module's: a tied weight
            return name, describe(module), f"tied to {seen[id(params[0])]}"
        return name, describe(module), f"{sum(p.numel() for p in new):,}"

    rows: list[tuple[str, str, str]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):  # a stack of blocks: one row per part of each block
            for i, block in enumerate(child):
                block = getattr(block, "_fsdp_wrapped_module", block)  # trainer=fsdp: the block inside its FSDP unit
                rows += [
                    row(f"{name}.{i}.{part}", m) for part, m in block.named_children() if not isinstance(m, SILENT)
                ]
        elif not isinstance(child, SILENT):
            rows.append(row(name, child))
    total = model.num_parameters()
    tables = [m for m in model.children() if isinstance(m, nn.Embedding)]  # the token embeddings (not positions)
    embeddings = sum(m.weight.numel() for m in tables)
    if not any(model.lm_head.weight is m.weight for m in tables):  # an untied output layer maps tokens too
        embeddings += model.lm_head.weight.numel()
    widths = [max(len(r[k]) for r in rows + [("module", "type", "parameters")]) for k in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
    out = [line(("module", "type", "parameters")), "-" * (sum(widths) + 4)]
    out += [line(r) for r in rows]
    cfg = model.cfg
    out += [
        "-" * (sum(widths) + 4),
        f"total {total:,} parameters ({total - embeddings:,} without the embedding), {total * 4 / 2**20:.1f} MiB in fp32",
        "config: " + " ".join(f"{f.name}={getattr(cfg, f.name)}" for f in fields(cfg)),
    ]
    return "\n".join(out)
