"""Section 5: generation — tokens/s of :func:`attnlab.model.sampling.generate` with the KV cache and
without it (every step recomputes the whole window), at attnlab's default model shape.

Untrained weights (seeded): the speed of a step does not depend on their values. Greedy decoding
from a one-token prompt, batch 1, so both runs write the same tokens (checked)."""

from __future__ import annotations

import time

import torch

from attnlab.data.datamodule import TextDataModule
from attnlab.model import GPT, ModelConfig
from attnlab.model.sampling import generate
from attnlab.training.lit_gpt import split_runtime_options
from bench.common import compose, median


def timed_generation(model: GPT, new_tokens: int, use_cache: bool) -> tuple[list[int], list[float]]:
    """The generated ids and the seconds of each step (one new token each)."""
    prompt = torch.zeros(1, 1, dtype=torch.long)  # (B=1, T0=1)
    ids, seconds = [], []
    last = time.perf_counter()
    for nxt in generate(model, prompt, new_tokens, temperature=0.0, use_cache=use_cache):  # nxt: (1,)
        now = time.perf_counter()
        ids.append(int(nxt))
        seconds.append(now - last)
        last = now
    return ids, seconds


def run(quick: bool = False) -> dict:
    if quick:
        base = ["data=seed_sample", "model.d_model=32", "model.num_layers=1", "model.num_heads=2"]
        contexts, new_tokens, repeats = [8, 16], 24, 1
    else:
        base, contexts, new_tokens, repeats = [], [64, 512], 512, 3
    dm = TextDataModule.from_config(compose(*base))
    dm.setup("fit")  # the corpus vocabulary: the output layer's rows
    rows = []
    for context in contexts:
        cfg = compose(*base, f"data.context_length={context}")
        model_dict, _ = split_runtime_options(dict(cfg.model))
        torch.manual_seed(0)
        model = GPT(ModelConfig.from_dict({**model_dict, "vocab_size": dm.vocab_size})).eval()
        timed_generation(model, 8, use_cache=True)  # warm up: first calls allocate and pick kernels
        row = {
            "context_length": context,
            "new_tokens": new_tokens,
            "repeats": repeats,
            "vocab_size": dm.vocab_size,
            "d_model": model.cfg.d_model,
            "num_layers": model.cfg.num_layers,
            "num_heads": model.cfg.num_heads,
        }
        tokens = {}
        for use_cache, key in ((True, "cache"), (False, "no_cache")):
            totals, steps = [], []
            for _ in range(repeats):
                tokens[key], seconds = timed_generation(model, new_tokens, use_cache)
                totals.append(sum(seconds))
                steps.extend(seconds)
            row[f"{key}_tokens_per_s"] = new_tokens / median(totals)
            # the typical step: the median skips the rare steps that refill the cache after a slide
            row[f"{key}_step_ms"] = 1e3 * median(steps)
        if tokens["cache"] != tokens["no_cache"]:
            raise AssertionError(f"context {context}: the KV cache changed the greedy text")
        row["speedup"] = row["cache_tokens_per_s"] / row["no_cache_tokens_per_s"]
        rows.append(row)
        print(
            f"  generation context {context:4d}: cache {row['cache_tokens_per_s']:7.1f} tokens/s "
            f"({row['cache_step_ms']:.2f} ms/step), no cache {row['no_cache_tokens_per_s']:7.1f} tokens/s "
            f"({row['no_cache_step_ms']:.2f} ms/step), x{row['speedup']:.2f}",
            flush=True,
        )
    return {"rows": rows}


def table(result: dict) -> str:
    r0 = result["rows"][0]
    lines = [
        f"`attnlab.model.sampling.generate`, {r0['new_tokens']} new tokens from a 1-token prompt, batch 1, greedy, "
        f"model d_model {r0['d_model']}, {r0['num_heads']} heads, {r0['num_layers']} layers, vocabulary "
        f"{r0['vocab_size']:,} (the corpus vocabulary), untrained weights; median of {r0['repeats']} runs. KV cache: "
        "each step runs the new token alone against the cached keys and values (the window slides by the default "
        "context/4, refilling the cache); no cache: each step runs the whole window (`use_cache=false`). Both write "
        "the same tokens. ms/step: the median step (a cache refill is a rare, slower step).",
        "",
        "| context_length | KV cache (tokens/s) | no cache (tokens/s) | speed-up | KV cache, ms/step | no cache, ms/step |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['context_length']} | {r['cache_tokens_per_s']:.0f} | {r['no_cache_tokens_per_s']:.0f} | "
            f"{r['speedup']:.2f}× | {r['cache_step_ms']:.2f} | {r['no_cache_step_ms']:.2f} |"
        )
    return "\n".join(lines)
