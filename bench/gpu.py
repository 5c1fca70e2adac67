"""Section 6: GPU — training throughput of a 124M-parameter GPT (GPT-2 small: 12 layers, 12 heads,
d_model 768, context 1024) in bf16 autocast with ``torch.compile`` and fused AdamW, as tokens/s
and model FLOPs utilisation (MFU) against the device's peak dense bf16 rate.

FLOPs per token: 6·N for the weights' matrix products (forward and backward) plus 12·L·T·C for
attention's scores and mixing (PaLM, appendix B; nanoGPT's ``estimate_mfu``), N counting every
parameter once. Without a CUDA device the section records that it did not run; ``--quick`` runs a
tiny model on the CPU through the same code, uncompiled (a smoke test, no MFU).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from attnlab.model import GPT, ModelConfig
from attnlab.training.optim import OptimConfig, build_adamw

GPT2_SMALL = dict(
    vocab_size=50304, context_length=1024, d_model=768, num_heads=12, num_layers=12, dropout=0.0, positional="learned"
)  # 50,257 rounded up to a multiple of 64, as nanoGPT does
QUICK = dict(
    vocab_size=256, context_length=32, d_model=32, num_heads=2, num_layers=1, dropout=0.0, positional="learned"
)
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "4090": 165.0,
}  # dense, no sparsity


def peak_tflops(name: str) -> float | None:
    """The device's peak dense bf16 TFLOP/s, from its name (the most specific match); None if unknown."""
    matches = [key for key in PEAK_BF16_TFLOPS if key in name]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


def flops_per_token(model: GPT) -> float:
    cfg = model.cfg
    return 6 * model.num_parameters() + 12 * cfg.num_layers * cfg.context_length * cfg.d_model


def run(quick: bool = False) -> dict:
    if not torch.cuda.is_available() and not quick:
        return {"device": None, "rows": []}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape, batch_size, steps, warmup = (QUICK, 2, 3, 2) if quick else (GPT2_SMALL, 16, 30, 10)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = GPT(ModelConfig(**shape)).to(device)
    optimizer = build_adamw(model, OptimConfig(lr=6e-4))  # fused on CUDA
    forward = torch.compile(model) if device == "cuda" else model  # on the CPU (--quick): no compile wait
    V, T = shape["vocab_size"], shape["context_length"]
    x = torch.randint(0, V, (batch_size, T), device=device)
    y = torch.randint(0, V, (batch_size, T), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = forward(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, V).float(), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    for _ in range(warmup):  # compiles on the first
        step()
    sync()
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    step_s = (time.perf_counter() - started) / steps
    tokens_per_s = batch_size * T / step_s
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = peak_tflops(name) if device == "cuda" else None
    achieved = flops_per_token(model) * tokens_per_s / 1e12
    row = {
        "model": "124M" if not quick else "tiny",
        "parameters": model.num_parameters(),
        "batch_size": batch_size,
        "context_length": T,
        "ms_per_step": 1e3 * step_s,
        "tokens_per_s": tokens_per_s,
        "tflops": achieved,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "warmup_s": warmup_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    print(f"  gpu {name}: {tokens_per_s:,.0f} tokens/s, {achieved:.1f} TFLOP/s", flush=True)
    return {"device": name, "rows": [row]}


def table(result: dict) -> str:
    if not result.get("device"):
        return (
            "Not measured: this machine has no CUDA device. On one, this section trains a 124M-parameter GPT "
            "(12 layers, 12 heads, d_model 768, context 1024, bf16 autocast, `torch.compile`, fused AdamW) "
            "and reports tokens/s and MFU."
        )
    lines = [
        f"{result['device']}: one training step = bf16 autocast forward, fp32 loss, backward, clipping, fused AdamW; "
        "`torch.compile`d; mean over the timed steps after warmup (compilation). MFU: (6·N + 12·L·T·C) FLOPs per "
        "token × tokens/s against the device's peak dense bf16 rate.",
        "",
        "| model | parameters | batch × context | ms/step | tokens/s | TFLOP/s | peak TFLOP/s | MFU | warmup (s) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        peak = f"{r['peak_tflops']:.0f}" if r["peak_tflops"] else "n/a"
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['batch_size']}×{r['context_length']} | "
            f"{r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.1f} | {peak} | {mfu} | "
            f"{r['warmup_s']:.1f} |"
        )
    return "\n".join(lines)
