"""Section 2: attention alone — a naive per-query loop, ``explicit`` and ``sdpa`` (attnlab's two
implementations of :class:`attnlab.model.CausalSelfAttention`), forward and forward+backward time
and peak memory per sequence length; and the seed's single small attention, per call."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.model import CausalSelfAttention, ModelConfig
from bench import fresh
from bench.common import make_rss_exact, median_seconds, peak_bytes

IMPLS = ("naive", "explicit", "sdpa")


def naive_attention(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The seed's causal attention one query at a time: query i scores keys 0..i, softmax, mixes
    values 0..i. Same parameters as ``attn``; every head at once, no (T, T) matrix."""
    B, T, C = x.shape  # (B, T, C)
    q, k, v = (attn.split_heads(proj(x)) for proj in (attn.query, attn.key, attn.value))  # (B, nh, T, hs) each
    rows = []
    for i in range(T):
        scores = q[:, :, i : i + 1] @ k[:, :, : i + 1].transpose(-2, -1) / math.sqrt(attn.head_size)  # (B, nh, 1, i+1)
        rows.append(F.softmax(scores, dim=-1) @ v[:, :, : i + 1])  # (B, nh, 1, hs)
    out = torch.cat(rows, dim=2).transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
    return attn.out_proj(out)  # (B, T, C)


def run_layer(attn: CausalSelfAttention, impl: str, x: torch.Tensor, backward: bool) -> None:
    """One call of the layer: forward (no autograd), or forward and backward."""
    if not backward:
        with torch.no_grad():
            naive_attention(attn, x) if impl == "naive" else attn(x, impl=impl)  # (B, T, C)
        return
    out = naive_attention(attn, x) if impl == "naive" else attn(x, impl=impl)  # (B, T, C)
    out.sum().backward()
    x.grad = None
    attn.zero_grad(set_to_none=True)


def layer_and_input(T: int, d_model: int, num_heads: int) -> tuple[CausalSelfAttention, torch.Tensor]:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=1, context_length=T, d_model=d_model, num_heads=num_heads, dropout=0.0)
    attn = CausalSelfAttention(cfg)
    attn.causal = attn.causal.clone()  # (T, T) bool mask buffer: resident before each measurement
    return attn, torch.randn(1, T, d_model, requires_grad=True)  # (B=1, T, C)


def cell_memory(T: int, impl: str, d_model: int, num_heads: int, readings: int) -> dict:
    """Peak memory of one (T, impl) cell, forward and forward+backward, measured in a process of its
    own (``bench.fresh``): no memory that earlier cells freed (and glibc or the kernel kept) can
    hide a peak. A tiny call first pays the process's one-time allocations (thread pool, kernels)."""
    make_rss_exact()
    tiny, tiny_x = layer_and_input(16, d_model, num_heads)
    for backward in (False, True):
        run_layer(tiny, impl, tiny_x, backward)
    del tiny, tiny_x
    attn, x = layer_and_input(T, d_model, num_heads)
    # the largest of a few readings: the kernel's high-water mark can miss a peak, never invent one
    return {
        f"{key}_peak_mib": max(peak_bytes(lambda: run_layer(attn, impl, x, backward)) for _ in range(readings)) / 2**20
        for backward, key in ((False, "forward"), (True, "forward_backward"))
    }


def measure_lengths(lengths: list[int], d_model: int, num_heads: int, repeats: int) -> list[dict]:
    rows = []
    for T in lengths:
        attn, x = layer_and_input(T, d_model, num_heads)
        for impl in IMPLS:
            # the naive loop's backward takes seconds at T >= 1024: one timed run there
            reps = 1 if impl == "naive" and T >= 1024 else repeats
            row = {"T": T, "impl": impl, "repeats": reps}
            for backward, key in ((False, "forward"), (True, "forward_backward")):
                row[f"{key}_ms"] = 1e3 * median_seconds(
                    lambda: run_layer(attn, impl, x, backward), reps, warmup=1 if reps > 1 else 0
                )
            row.update(
                fresh.call(
                    "bench.attention:cell_memory",
                    T=T,
                    impl=impl,
                    d_model=d_model,
                    num_heads=num_heads,
                    readings=min(3, reps),
                )
            )
            rows.append(row)
            print(
                f"  attention T={T:5d} {impl:8s} fwd {row['forward_ms']:9.2f} ms  fwd+bwd "
                f"{row['forward_backward_ms']:9.2f} ms  peak {row['forward_peak_mib']:7.1f} / "
                f"{row['forward_backward_peak_mib']:7.1f} MiB",
                flush=True,
            )
    return rows


def measure_training_shape(lengths: list[int], tokens: int, d_model: int, num_heads: int, repeats: int) -> list[dict]:
    """Forward+backward of one layer at a training batch of ``tokens`` tokens (B = tokens / T) under
    bf16 autocast, as a CPU run trains: on this CPU the fused kernel's bf16 backward has a large
    fixed cost that the explicit math does not, so for short windows ``explicit`` trains faster."""
    rows = []
    for T in lengths:
        torch.manual_seed(0)
        attn = CausalSelfAttention(ModelConfig(vocab_size=1, context_length=T, d_model=d_model, num_heads=num_heads))
        x = torch.randn(tokens // T, T, d_model, requires_grad=True)  # (B, T, C)
        row = {"T": T, "batch": tokens // T}
        for impl in ("explicit", "sdpa"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                row[f"{impl}_ms"] = 1e3 * median_seconds(lambda: run_layer(attn, impl, x, backward=True), repeats)
        rows.append(row)
        print(
            f"  attention bf16 training shape T={T:5d} B={row['batch']:4d}: explicit {row['explicit_ms']:7.2f} ms, "
            f"sdpa {row['sdpa_ms']:7.2f} ms",
            flush=True,
        )
    return rows


def seed_attention(number: int, repeats: int) -> dict:
    """The seed's single small attention: a (6, 3) input, d_k = 4, scaled dot products, softmax,
    weighted sum of values — written out, and through ``scaled_dot_product_attention``."""
    torch.manual_seed(0)
    x = torch.randn(6, 3)  # (T=6, d_in=3)
    Wq, Wk, Wv = (torch.randn(3, 4) for _ in range(3))  # (d_in, d_k)

    def written_out():
        q, k, v = x @ Wq, x @ Wk, x @ Wv  # (6, 4) each
        weights = torch.softmax(q @ k.T / math.sqrt(4), dim=-1)  # (6, 6)
        return weights @ v  # (6, 4)

    def fused():
        return F.scaled_dot_product_attention(x @ Wq, x @ Wk, x @ Wv)  # (6, 4)

    torch.testing.assert_close(written_out(), fused())
    with torch.no_grad():
        return {
            "written_out_us": 1e6 * median_seconds(written_out, repeats, number=number, warmup=100),
            "sdpa_us": 1e6 * median_seconds(fused, repeats, number=number, warmup=100),
            "calls_per_repeat": number,
        }


def run(quick: bool = False) -> dict:
    make_rss_exact()
    lengths = [32] if quick else [64, 256, 1024, 2048]  # quick: one length (a process per cell)
    repeats = 1 if quick else 5
    d_model, num_heads = 256, 4
    return {
        "d_model": d_model,
        "num_heads": num_heads,
        "batch": 1,
        "repeats": repeats,
        "dtype": "float32",
        "lengths": measure_lengths(lengths, d_model, num_heads, repeats),
        "training_shape": {
            "tokens": 256 if quick else 4096,
            "d_model": 128,
            "num_heads": 4,
            "rows": measure_training_shape(
                [32] if quick else [64, 128, 256, 512, 1024], 256 if quick else 4096, 128, 4, repeats
            ),
        },
        "seed_attention": seed_attention(number=100 if quick else 10_000, repeats=repeats),
    }


def table(result: dict) -> str:
    lines = [
        f"Batch {result['batch']}, d_model {result['d_model']}, {result['num_heads']} heads, {result['dtype']}, "
        f"one `CausalSelfAttention` layer (projections included); median of {result['repeats']} runs (naive at "
        "T ≥ 1024: one run, its backward takes seconds). Peak memory: what one call adds to the process at its "
        "peak (resident-set high-water mark, the largest of up to 3 calls; freed memory returned to the system "
        "at once while measuring), each (T, impl) cell in a new process of its own; it includes the layer's "
        "weight gradients (1 MiB) in forward+backward.",
        "",
        "| T | impl | forward (ms) | forward+backward (ms) | peak, forward (MiB) | peak, forward+backward (MiB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["lengths"]:
        lines.append(
            f"| {r['T']} | {r['impl']} | {r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} | "
            f"{r['forward_peak_mib']:.1f} | {r['forward_backward_peak_mib']:.1f} |"
        )
    s = result["seed_attention"]
    lines += [
        "",
        f"The seed's single attention (a 6×3 input, d_k 4, no batch), per call, median of "
        f"{result['repeats']} × {s['calls_per_repeat']:,} calls: written out (QKᵀ/√d_k, softmax, ·V) "
        f"{s['written_out_us']:.1f} µs, `scaled_dot_product_attention` {s['sdpa_us']:.1f} µs.",
    ]
    if "training_shape" in result:
        t = result["training_shape"]
        lines += [
            "",
            f"At a training batch under bf16 autocast (as training runs on a CPU with native bf16): "
            f"{t['tokens']:,} tokens a batch (B = {t['tokens']:,} / T), d_model {t['d_model']}, "
            f"{t['num_heads']} heads, one layer's forward+backward, median of {result['repeats']} runs.",
            "",
            "| T | B | explicit (ms) | sdpa (ms) | sdpa / explicit |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['T']} | {r['batch']} | {r['explicit_ms']:.2f} | {r['sdpa_ms']:.2f} | "
            f"{r['sdpa_ms'] / r['explicit_ms']:.2f}× |"
            for r in t["rows"]
        ]
    return "\n".join(lines)
