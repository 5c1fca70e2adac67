"""Hook points: what the cache holds is what the model computes, and an intervention through a hook
is the same as the edit of the weights it stands for."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.model import GPT, ModelConfig
from attnlab.model.hooks import ablate_head, patch

SWITCHES = [
    {},
    {"attention": "explicit"},
    {"positional": "rope"},
    {"positional": "learned", "tie_embeddings": False},
    {"norm": "rmsnorm", "qk_norm": True, "activation": "relu2", "bias": False},
    {"mlp": False},
]


def model(**switches) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=61, context_length=16, d_model=32, num_heads=4, num_layers=2, **switches)
    return GPT(cfg).eval()


def ids(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 61, (batch, 12), generator=torch.Generator().manual_seed(seed))


def test_the_cache_holds_what_a_manual_recomputation_gives():
    m = model()
    x = ids()
    logits, cache = m.run_with_cache(x)
    T, hs = x.size(1), m.cfg.head_size
    embed = m.positional(m.token_embedding(x) * math.sqrt(m.cfg.d_model), start=0)  # (B, T, C)
    torch.testing.assert_close(cache["embed"], embed)
    torch.testing.assert_close(cache["blocks.0.resid_pre"], embed)
    for i, block in enumerate(m.blocks):
        resid = cache[f"blocks.{i}.resid_pre"]  # (B, T, C)
        h = block.ln1(resid)
        q, k, v = (block.attn.split_heads(lin(h)) for lin in (block.attn.query, block.attn.key, block.attn.value))
        scores = (q @ k.transpose(-2, -1) / math.sqrt(hs)).masked_fill(~torch.ones(T, T).tril().bool(), float("-inf"))
        torch.testing.assert_close(cache[f"blocks.{i}.attn.scores"], scores)  # (B, nh, T, T)
        pattern = F.softmax(scores, dim=-1)
        torch.testing.assert_close(cache[f"blocks.{i}.attn.pattern"], pattern)
        z = pattern @ v  # (B, nh, T, hs)
        torch.testing.assert_close(cache[f"blocks.{i}.attn.z"], z)
        attn_out = block.attn.out_proj(z.transpose(1, 2).reshape(resid.shape))
        torch.testing.assert_close(cache[f"blocks.{i}.attn_out"], attn_out)
        mid = resid + attn_out
        torch.testing.assert_close(cache[f"blocks.{i}.mlp_out"], block.ffn(block.ln2(mid)))
        torch.testing.assert_close(cache[f"blocks.{i}.resid_post"], mid + cache[f"blocks.{i}.mlp_out"])
        if i + 1 < len(m.blocks):
            torch.testing.assert_close(cache[f"blocks.{i + 1}.resid_pre"], cache[f"blocks.{i}.resid_post"])
    torch.testing.assert_close(cache["ln_final"], m.ln_f(cache["blocks.1.resid_post"]))
    torch.testing.assert_close(cache["logits"], m.lm_head(cache["ln_final"]))
    torch.testing.assert_close(logits, cache["logits"])


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_hooks_work_with_every_switch_and_an_identity_hook_changes_nothing(switches):
    m = model(**switches)
    x = ids()
    plain = m(x)  # sdpa by default: no (T, S) matrix formed
    logits, cache = m.run_with_cache(x, names=["blocks.1.attn.pattern", "blocks.0.attn.z"])
    assert set(cache) == {"blocks.1.attn.pattern", "blocks.0.attn.z"}
    assert cache["blocks.1.attn.pattern"].shape == (3, 4, 12, 12)
    torch.testing.assert_close(cache["blocks.1.attn.pattern"].sum(-1), torch.ones(3, 4, 12))
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)  # the explicit path the pattern needs
    every = {name: (lambda a, n: a) for name in m.hook_points}
    torch.testing.assert_close(m.run_with_hooks(x, every), plain, atol=1e-5, rtol=1e-5)
    assert ("blocks.0.mlp_out" in m.hook_points) == m.cfg.mlp
    assert not any(point.active for point in m.hook_points.values())  # every hook removed afterwards


def test_zero_ablating_a_head_through_its_hook_equals_zeroing_its_slice_of_the_output_projection():
    m = model()
    x = ids()
    layer, head, hs = 1, 2, m.cfg.head_size
    hooked = m.run_with_hooks(x, {f"blocks.{layer}.attn.z": ablate_head(head)})
    with torch.no_grad():
        m.blocks[layer].attn.out_proj.weight[:, head * hs : (head + 1) * hs] = 0.0  # (C, C): head's input columns
    torch.testing.assert_close(hooked, m(x))
    assert not torch.allclose(hooked, model()(x))


def test_mean_ablation_puts_the_mean_output_in_the_heads_place():
    m = model()
    x = ids()
    _, reference = m.run_with_cache(x, names=["blocks.0.attn.z"])
    mean = reference["blocks.0.attn.z"][:, 1].mean(dim=(0, 1))  # (hs,) head 1's mean output
    hooks = {"blocks.0.attn.z": ablate_head(1, mean=mean)}
    with m.hooks(hooks):
        _, cache = m.run_with_cache(x, names=["blocks.0.attn.z"])
    z = cache["blocks.0.attn.z"]  # (B, nh, T, hs), after the ablation
    torch.testing.assert_close(z[:, 1], mean.expand_as(z[:, 1]))
    torch.testing.assert_close(z[:, 0], reference["blocks.0.attn.z"][:, 0])


def test_patching_the_residual_stream_from_another_input_gives_that_inputs_logits():
    m = model()
    a, b = ids(seed=1), ids(seed=2)
    logits_b, cache_b = m.run_with_cache(b, names=["blocks.0.resid_post"])
    torch.testing.assert_close(m.run_with_hooks(a, patch(cache_b)), logits_b)


def test_unknown_names_and_heads_are_one_line_errors():
    m = model()
    with pytest.raises(
        ConfigError, match=r"no hook point named 'blocks.0.attn.patern'; did you mean blocks.0.attn.pattern"
    ):
        m.run_with_cache(ids(), names=["blocks.0.attn.patern"])
    with pytest.raises(ConfigError, match=r"blocks.0.attn.z has heads 0..3; head 9 is out of range"):
        m.run_with_hooks(ids(), {"blocks.0.attn.z": ablate_head(9)})
    with pytest.raises(ValueError, match="returned shape"):
        m.run_with_hooks(ids(), {"embed": lambda a, n: a[:, :1]})


def test_hook_points_add_nothing_to_the_state_dict():
    names = set(model().state_dict())
    assert not any(part in name for name in names for part in ("resid", "pattern", "scores", "embed.", "logits"))
