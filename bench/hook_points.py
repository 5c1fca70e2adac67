"""Section 8: what the model's named hook points (:class:`attnlab.model.hooks.HookPoint`, an identity
module at each step of the forward pass) cost a training step when no hook is attached.

Two copies of the default config's model (same seed, so the same weights), each trained by section
1's hand loop (:class:`bench.train_step.HandLoop`: the run's batches, AdamW as the run builds it, the
schedule, clipping, the run's precision), take turns step by step in this process on the same
batches: A as it is, B with every hook point's call bypassed (``HookPoint.__call__`` set on the
class to ``lambda self, x: x`` during B's steps only). So both see the machine's speed at the same
moment, and they compute the same thing: their losses are compared at every step. Also measured:
the hook point calls of one step (a counting patch, in a pass of its own), one call's cost alone
(timeit), and, with ``model.compile=true``, whether the graph that dynamo captures is any
different with and without the calls (and one repeat of the same A/B timing, compiled).
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
import timeit
from collections.abc import Callable, Iterator

import torch

from attnlab.model.hooks import HookPoint
from attnlab.system.memory import keep_freed_memory
from bench.common import compose, median
from bench.train_step import HandLoop

QUICK = ["data=seed_sample", "model.d_model=32", "model.num_layers=1", "model.num_heads=2"]
BYPASS = "lambda self, x: x"


def bypass(self: HookPoint, x: torch.Tensor) -> torch.Tensor:
    return x


@contextlib.contextmanager
def hook_point_call(call: Callable[[HookPoint, torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Every HookPoint called as ``call(point, x)`` inside the block (set on the class, restored after)."""
    before = HookPoint.__dict__.get("__call__")  # None: nn.Module's, inherited
    HookPoint.__call__ = call
    try:
        yield
    finally:
        if before is None:
            del HookPoint.__call__
        else:
            HookPoint.__call__ = before


def calls_per_step(loop: HandLoop) -> list[str]:
    """The hook points one training step's forward calls, in order (backward calls no module)."""
    names: list[str] = []

    def counting(self: HookPoint, x: torch.Tensor) -> torch.Tensor:
        names.append(self.name)
        return x

    x, _ = loop.windows.batch(0)
    with hook_point_call(counting), loop.autocast(), torch.no_grad():
        loop.forward(x)
    return names


def per_call_seconds(shape: tuple[int, ...], repeats: int, number: int) -> dict:
    """One hook point's call on a tensor of ``shape``, and the bypass's, alone: the best of the
    repeats' mean (timeit's own loop; the statement is the call itself)."""
    point, x = HookPoint(), torch.randn(*shape)
    times = {
        "call_s": timeit.Timer("point(x)", globals={"point": point, "x": x}),
        "bypass_s": timeit.Timer("f(point, x)", globals={"f": bypass, "point": point, "x": x}),
        "active_s": timeit.Timer("point.active", globals={"point": point}),
    }
    return {key: min(t.repeat(repeats, number)) / number for key, t in times.items()}


def interleaved(
    a: HandLoop, b: HandLoop, steps: int, warmup: int, repeats: int, control: HandLoop | None = None
) -> dict:
    """A's and B's steps in turns (A, B, A, B, ...), B's with the hook points bypassed: each repeat's
    mean seconds per step of both after ``warmup`` steps, and every step's losses. ``control``: a
    second copy of A, stepped after B and not timed: how far two runs of A alone drift apart."""
    seconds: dict[str, list[float]] = {"a": [], "b": []}
    first: dict[str, float] = {}
    losses: list[tuple[float, float]] = []
    control_diff = 0.0
    k = 0
    for repeat in range(-1, repeats):  # repeat -1: the warmup steps, not timed
        times = {"a": [], "b": []}
        for _ in range(warmup if repeat < 0 else steps):
            start = time.perf_counter()
            loss_a = a.step(k)
            middle = time.perf_counter()
            with hook_point_call(bypass):
                loss_b = b.step(k)
            end = time.perf_counter()
            times["a"].append(middle - start)
            times["b"].append(end - middle)
            if k == 0:
                first = {"a": middle - start, "b": end - middle}
            losses.append((loss_a, loss_b))
            if control is not None:
                control_diff = max(control_diff, abs(control.step(k) - loss_a))
            k += 1
        if repeat >= 0:
            for key in seconds:
                seconds[key].append(statistics.fmean(times[key]))
    ratios = [ta / tb for ta, tb in zip(seconds["a"], seconds["b"])]
    return {
        "a_ms": 1e3 * median(seconds["a"]),
        "b_ms": 1e3 * median(seconds["b"]),
        "a_all_ms": [1e3 * s for s in seconds["a"]],
        "b_all_ms": [1e3 * s for s in seconds["b"]],
        "pair_overhead_pct": [100 * (r - 1) for r in ratios],
        "overhead_pct": 100 * (median(ratios) - 1),
        "first_step_s": first,
        "steps_timed": steps,
        "warmup_steps": warmup,
        "repeats": repeats,
        "final_loss": {"a": losses[-1][0], "b": losses[-1][1]},
        "max_loss_diff": max(abs(la - lb) for la, lb in losses),
        "losses_equal": all(la == lb for la, lb in losses),
        **({"control_max_loss_diff": control_diff} if control is not None else {}),
    }


def captured_graphs(loop: HandLoop, call: Callable | None) -> list[list[tuple[str, str]]]:
    """The FX graphs dynamo captures from the model's forward on a training batch (a recording
    backend, no inductor), each as its nodes' (op, target); ``call``: hook points called so."""
    graphs: list[list[tuple[str, str]]] = []

    def record(gm: torch.fx.GraphModule, example_inputs):
        graphs.append([(node.op, str(node.target)) for node in gm.graph.nodes])
        return gm.forward

    torch._dynamo.reset()
    x, _ = loop.windows.batch(0)
    with hook_point_call(call) if call else contextlib.nullcontext(), loop.autocast(), torch.no_grad():
        torch.compile(loop.model.forward, backend=record)(x)
    torch._dynamo.reset()
    return graphs


def compiled(overrides: list[str], steps: int, warmup: int) -> dict:
    """``model.compile=true``: the captured graphs with and without the calls, and one repeat of
    the A/B timing compiled (each loop's first step compiles; not timed)."""
    loop = HandLoop([*overrides, "model.compile=false"], steps + warmup)
    graph_a, graph_b = captured_graphs(loop, None), captured_graphs(loop, bypass)
    del loop
    result = {
        "graphs": len(graph_a),
        "graph_nodes": sum(len(g) for g in graph_a),
        "graph_nodes_bypassed": sum(len(g) for g in graph_b),
        "graphs_identical": graph_a == graph_b,
    }
    if steps:
        torch._dynamo.reset()
        a = HandLoop([*overrides, "model.compile=true"], steps + warmup)
        b = HandLoop([*overrides, "model.compile=true"], steps + warmup)
        control = HandLoop([*overrides, "model.compile=true"], steps + warmup)  # A again, not timed
        result["timing"] = interleaved(a, b, steps, warmup, repeats=1, control=control)
    return result


def run(quick: bool = False) -> dict:
    overrides = QUICK if quick else []
    cfg = compose(*overrides)
    if cfg.system.keep_freed_memory:
        keep_freed_memory()  # as train() does: the run's allocator settings
    steps, warmup, repeats = (3, 1, 1) if quick else (10, 3, 7)
    a = HandLoop([*overrides, "model.compile=false"], warmup + steps * repeats)
    b = HandLoop([*overrides, "model.compile=false"], warmup + steps * repeats)
    same_weights = all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    names = calls_per_step(a)
    hook_points, vocab_size = len(a.model.hook_points), a.model.cfg.vocab_size
    shape = (int(cfg.data.batch_size), int(cfg.data.context_length), a.model.cfg.d_model)
    per_call = per_call_seconds(shape, repeats=3 if quick else 5, number=2_000 if quick else 50_000)
    eager = interleaved(a, b, steps, warmup, repeats)
    del a, b
    compile_ = compiled(overrides, *((0, 0) if quick else (12, 3)))  # quick: the graphs only
    calls = len(names)
    result = {
        "precision": str(cfg.trainer.precision),
        "d_model": int(cfg.model.d_model),
        "num_layers": int(cfg.model.num_layers),
        "num_heads": int(cfg.model.num_heads),
        "context_length": int(cfg.data.context_length),
        "batch_size": int(cfg.data.batch_size),
        "vocab_size": vocab_size,
        "attention": str(cfg.model.attention),
        "hook_points": hook_points,
        "calls_per_step": calls,
        "called": list(dict.fromkeys(re.sub(r"^blocks\.\d+\.", "blocks.{i}.", name) for name in names)),
        "same_initial_weights": same_weights,
        "per_call_shape": list(shape),
        **{f"per_call_{k}": v for k, v in per_call.items()},
        "calls_ms": 1e3 * calls * per_call["call_s"],
        "calls_share": calls * per_call["call_s"] / (eager["a_ms"] / 1e3),
        "eager": eager,
        "compile": compile_,
    }
    timing = compile_.get("timing")
    print(
        f"  hook_points: {calls} calls/step; A {eager['a_ms']:.1f} ms, B {eager['b_ms']:.1f} ms "
        f"({eager['overhead_pct']:+.2f}%, {min(eager['pair_overhead_pct']):+.2f}% … {max(eager['pair_overhead_pct']):+.2f}%), "
        f"losses equal {eager['losses_equal']} (max diff {eager['max_loss_diff']:.2g}); one call "
        f"{1e6 * per_call['call_s']:.2f} µs × {calls} = {result['calls_ms']:.3f} ms ({100 * result['calls_share']:.3f}%); "
        f"compile graphs identical {compile_['graphs_identical']} ({compile_['graph_nodes']} nodes)"
        + (
            f", compiled A {timing['a_ms']:.1f} ms, B {timing['b_ms']:.1f} ms ({timing['overhead_pct']:+.2f}%), "
            f"losses equal {timing['losses_equal']}"
            if timing
            else ""
        ),
        flush=True,
    )
    return result


def loss_pair(r: dict) -> str:
    return f"{r['final_loss']['a']:.4f} / {r['final_loss']['b']:.4f}"


def pair_range(r: dict) -> str:
    pairs = r["pair_overhead_pct"]
    return f"{min(pairs):+.1f}% … {max(pairs):+.1f}%" if len(pairs) > 1 else ""


def losses(r: dict) -> str:
    if r["losses_equal"]:
        return "equal at every step, bit for bit"
    return f"equal at every step up to {r['max_loss_diff']:.1g}"


def agree(diff: float) -> str:
    return "exactly" if diff == 0 else f"to {diff:.1g}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def verdict(e: dict) -> str:
    pairs = e["pair_overhead_pct"]
    if len(pairs) < 2:
        return "(One repeat: no range to judge by.)"
    if min(pairs) <= 0 <= max(pairs):
        return (
            "A vs B lies within the repeats' range, which spans 0, and the calls' own cost is far below it: "
            "training pays nothing measurable for its hook points."
        )
    return f"Every repeat puts A {'above' if min(pairs) > 0 else 'below'} B (the range does not span 0)."


def table(result: dict) -> str:
    r, e, c = result, result["eager"], result["compile"]
    timing = c.get("timing")
    called = ", ".join(f"`{name}`" for name in r["called"])
    lines = [
        f"One training step of the default config (d_model {r['d_model']}, {r['num_layers']} layers, {r['num_heads']} heads, "
        f"context {r['context_length']}, batch {r['batch_size']}, vocabulary {r['vocab_size']:,}, {r['precision']}), as "
        "section 1's hand loop runs it: a training batch of the run, forward, loss, backward, clipping, AdamW, the "
        f"schedule. **A**: the model as it is, no hook attached; of its {r['hook_points']} hook points a step calls "
        f"{r['calls_per_step']} ({called}; `attn.scores` and `attn.pattern` sit on the explicit attention path, which "
        f"`attention={r['attention']}` takes only when a hook asks for them), counted by a patch in a pass of its own. "
        "**B**: the same weights on the same batches with every hook point's call bypassed: `HookPoint.__call__` set "
        f"on the class to `{BYPASS}` for B's steps only and restored after, so a point costs B one plain Python "
        f"call ({1e6 * r['per_call_bypass_s']:.2f} µs) instead of nn.Module's call; both still read each attention "
        f"layer's two `active` flags ({1e6 * r['per_call_active_s']:.2f} µs each). A and B take turns step by step in "
        f"one process (A, B, A, B, …), {plural(e['repeats'], 'repeat')} of {e['steps_timed']} timed steps after "
        f"{plural(e['warmup_steps'], 'warmup step')}; ms/step: the median of the repeats' mean; A vs B: the median of the "
        f"repeats' ratios, with their range. They compute the same thing: eager, the losses are {losses(e)}.",
        "",
        "| training step | A: hook points, no hook | B: hook points bypassed | A vs B | repeats' range | loss after the run, A / B |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| eager, ms/step | {e['a_ms']:.1f} | {e['b_ms']:.1f} | {e['overhead_pct']:+.2f}% | {pair_range(e)} | {loss_pair(e)} |",
    ]
    if timing:
        lines.append(
            f"| `model.compile=true`, ms/step ({plural(timing['repeats'], 'repeat')} of {timing['steps_timed']} steps "
            f"after {timing['warmup_steps']}) | {timing['a_ms']:.1f} | {timing['b_ms']:.1f} | {timing['overhead_pct']:+.2f}% | "
            f"{pair_range(timing)} | {loss_pair(timing)} |"
        )
    lines += [
        "",
        f"One hook point's call alone (timeit, a {tuple(r['per_call_shape'])} tensor): {1e6 * r['per_call_call_s']:.2f} µs; "
        f"× {r['calls_per_step']} calls = {r['calls_ms']:.3f} ms per step, {100 * r['calls_share']:.3f}% of A's step. "
        f"{verdict(e)} With `model.compile=true` the "
        f"graph dynamo captures from the forward is {'the same' if c['graphs_identical'] else 'not the same'} with and "
        f"without the calls ({c['graphs']} graph{'s' if c['graphs'] != 1 else ''}, {c['graph_nodes']} / "
        f"{c['graph_nodes_bypassed']} nodes)"
        + (": the hook points are traced away" if c["graphs_identical"] else "")
        + (
            f"; compiled, B's first step took {timing['first_step_s']['b']:.2f} s against A's "
            f"{timing['first_step_s']['a']:.1f} s (A's compiles the forward and backward, or finds them in "
            f"inductor's cache of an earlier run). Compiled, A's and B's losses agree {agree(timing['max_loss_diff'])}, "
            f"and A's and a second compiled copy's (stepped alongside, its hook points called) "
            f"{agree(timing['control_max_loss_diff'])}"
            + (
                ": compiled copies of one run need not agree bit for bit, bypass or not."
                if timing["control_max_loss_diff"] > 0
                else " in this run (compiled copies of one run need not agree bit for bit, bypass or not)."
            )
            if timing
            else "; compiled steps not timed (quick mode)."
        ),
    ]
    return "\n".join(lines)
