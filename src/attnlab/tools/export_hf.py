"""A trained model as a Hugging Face ``transformers`` GPT-2 checkpoint: ``attnlab export format=hf``.

:func:`write_gpt2` writes, into the export folder,

* ``config.json`` — a ``GPT2Config`` (``"model_type": "gpt2"``); attnlab's own model config and the
  source checkpoint under the extra key ``"attnlab"``;
* ``model.safetensors`` — the weights under GPT-2's names;

and export.py adds attnlab's ``tokenizer.json`` (the ids are the corpus vocabulary's, which no
Hugging Face tokenizer holds). ``transformers.GPT2LMHeadModel.from_pretrained(folder)`` loads it
and computes attnlab's logits, to float rounding; writing one needs no ``transformers``.

attnlab's GPT, term by term, in GPT-2's (C = d_model, V = vocab size, Tmax = context length):

    attnlab                                      GPT-2
    token_embedding W (V, C), used as W * sqrt(C)  transformer.wte = W * sqrt(C)  (GPT-2 does not scale)
    lm_head (tied: the same W)                   lm_head = W, tie_word_embeddings=false (wte was scaled)
    sinusoidal table, or learned positions       transformer.wpe (Tmax, C)
    attn.query / key / value: Linear (C -> C)    attn.c_attn: one Conv1D, weight (C, 3C) = [Wq; Wk; Wv]^T
    attn.out_proj, ffn.up, ffn.down: Linear      attn.c_proj, mlp.c_fc, mlp.c_proj: Conv1D (weight^T)
    ln1, ln2, ln_f: LayerNorm                    ln_1, ln_2, ln_f (the same eps)
    model.bias=false: no biases                  zero biases (GPT-2 always has them)
    nn.GELU() (exact, erf)                       activation_function="gelu" (GPT-2's own is tanh's)

Conv1D computes ``x @ weight + bias`` with weight (in, out): a Linear's (out, in) weight transposed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from attnlab.errors import ConfigError
from attnlab.model import GPT, ModelConfig
from attnlab.model.layers import LearnedPositions
from attnlab.runs.atomic import atomic_path, atomic_write_json

# nn.GELU's ``approximate`` -> the transformers activation that computes the same function
GELU_NAMES = {"none": "gelu", "tanh": "gelu_pytorch_tanh"}


def gpt2_refusals(cfg: ModelConfig) -> list[str]:
    """Each setting of ``cfg`` that GPT-2 cannot express, with why; empty when it can express them all."""
    reasons = []
    if cfg.positional == "rope":
        reasons.append(
            "model.positional=rope (GPT-2 adds a position table to the embeddings and rotates no queries or keys)"
        )
    if cfg.norm == "rmsnorm":
        reasons.append("model.norm=rmsnorm (GPT-2's norms are LayerNorms, which subtract the mean)")
    if cfg.qk_norm:
        reasons.append("model.qk_norm=true (GPT-2 has no norm on queries and keys)")
    if cfg.activation == "relu2":
        reasons.append(
            "model.activation=relu2 (GPT-2's MLP is GELU, and GPT-2 readers such as TransformerLens have no relu(x)**2)"
        )
    if not cfg.mlp:  # attention-only blocks
        reasons.append("model.mlp=false (every GPT-2 block has an MLP)")
    return reasons


def check_gpt2_can_express(cfg: ModelConfig) -> None:
    """Raise :class:`ConfigError`, one line naming every setting GPT-2 lacks, unless it has them all."""
    reasons = gpt2_refusals(cfg)
    if reasons:
        raise ConfigError(
            f"format=hf writes a GPT-2 checkpoint, and GPT-2 cannot express {'; nor '.join(reasons)}; "
            f"export this model with format=attnlab (the default) and read it with attnlab.load"
        )


def _bias(module: nn.Module) -> torch.Tensor:
    """``module``'s bias, or the zeros that stand for it (a Linear's (out,), a LayerNorm's (C,))."""
    return module.bias if module.bias is not None else module.weight.new_zeros(module.weight.shape[0])


def _norm(name: str, norm: nn.LayerNorm) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": norm.weight, f"{name}.bias": _bias(norm)}  # (C,) each


def _conv1d(name: str, *linears: nn.Linear) -> dict[str, torch.Tensor]:
    """GPT-2's Conv1D ``name`` from one Linear, or several stacked along the outputs (q, k, v)."""
    weight = torch.cat([linear.weight for linear in linears]).T  # (in, sum of outs)
    bias = torch.cat([_bias(linear) for linear in linears])  # (sum of outs,)
    return {f"{name}.weight": weight, f"{name}.bias": bias}


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """``model``'s weights under GPT2LMHeadModel's names, fp32 (call :func:`check_gpt2_can_express` first)."""
    positions = model.positional
    wpe = positions.embedding.weight if isinstance(positions, LearnedPositions) else positions.table  # (Tmax, C)
    state = {
        "transformer.wte.weight": model.token_embedding.weight * model.embed_scale,  # (V, C): GPT-2 does not scale
        "transformer.wpe.weight": wpe,
        **_norm("transformer.ln_f", model.ln_f),
        "lm_head.weight": model.lm_head.weight,  # (V, C): the unscaled W when tied
    }
    for i, block in enumerate(model.blocks):
        h = f"transformer.h.{i}"
        attn = block.attn
        state |= {
            **_norm(f"{h}.ln_1", block.ln1),
            **_conv1d(f"{h}.attn.c_attn", attn.query, attn.key, attn.value),  # (C, 3C): q, k, v side by side
            **_conv1d(f"{h}.attn.c_proj", attn.out_proj),  # (C, C)
            **_norm(f"{h}.ln_2", block.ln2),
            **_conv1d(f"{h}.mlp.c_fc", block.ffn.up),  # (C, ffn_mult*C)
            **_conv1d(f"{h}.mlp.c_proj", block.ffn.down),  # (ffn_mult*C, C)
        }
    return {name: t.detach().float().contiguous().clone() for name, t in state.items()}


def gpt2_config(model: GPT) -> dict[str, Any]:
    """The ``config.json`` of ``model`` as a ``transformers.GPT2Config``."""
    cfg = model.cfg
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_embd": cfg.d_model,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": cfg.ffn_mult * cfg.d_model,
        "activation_function": GELU_NAMES[model.blocks[0].ffn.act.approximate],
        "layer_norm_epsilon": model.ln_f.eps,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True,  # scores q·k / sqrt(hs), as attnlab's
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": False,  # wte holds W * sqrt(C), lm_head W
        "bos_token_id": None,  # the corpus vocabulary has no end-of-text token
        "eos_token_id": None,
    }


def write_gpt2(model: GPT, out: Path, attnlab_record: dict[str, Any]) -> None:
    """Write ``model`` into the folder ``out`` as a GPT-2 checkpoint, each file atomically;
    ``attnlab_record`` (attnlab's config, the source checkpoint) goes into config.json as ``"attnlab"``."""
    check_gpt2_can_express(model.cfg)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(gpt2_state_dict(model), str(tmp), metadata={"format": "pt"})
    atomic_write_json(out / "config.json", {**gpt2_config(model), "attnlab": attnlab_record})
