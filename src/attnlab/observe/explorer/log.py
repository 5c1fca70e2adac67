"""The explorer's side data: ``<run>/attention_log/``, written at step 0 and at every validation.

Per logged step (rank zero, each file written atomically):

* ``step_<step:08d>.npz`` (the ``attention`` callback; ``numpy.load`` reads it, no pickle):
  ``weights`` (L, nh, T, T) float16, every layer's and head's attention on the probe (query
  rows, key columns; the masked future is 0); ``ids`` (T,) int64; ``tokens`` (T,) str, each
  token's text as the tokenizer decodes it alone; ``step`` () int64. Compressed (the zero
  future compresses away): about 17 kB at the default run's 32 probe tokens and 16 heads.
* ``heads_<step:08d>.json`` (the ``heads`` callback): ``{"step", "scores": {name: [[L x nh]]},
  "in_context"}``, a few kB.

:func:`wire` packs one step for the browser: a little-endian uint32 header length, the header
as UTF-8 JSON (step, tokens, ids, shape, scores), zero padding to a multiple of 2 bytes, then
the weights as float16 (L, nh, T, T), row-major.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnlab.errors import AttnlabError
from attnlab.runs.atomic import atomic_write, atomic_write_text

LOG_DIR = "attention_log"  # <run>/attention_log/
_STEP = re.compile(r"step_(\d{8})\.npz")


class AttentionLogError(AttnlabError):
    """A step file that cannot be read (damaged, cut short, not attnlab's): one line."""


@dataclass(frozen=True)
class Step:
    """One logged step: the probe's tokens and every head's weights, and the scores when logged."""

    step: int
    tokens: list[str]
    ids: list[int]
    weights: np.ndarray  # (L, nh, T, T) float16
    scores: dict[str, list[list[float | None]]] | None = None  # {name: L x nh}
    in_context: float | None = None


def step_file(log_dir: Path, step: int) -> Path:
    return Path(log_dir) / f"step_{step:08d}.npz"


def scores_file(log_dir: Path, step: int) -> Path:
    return Path(log_dir) / f"heads_{step:08d}.json"


def write_attention(log_dir: Path, step: int, tokens: list[str], ids: list[int], weights: list) -> Path:
    """Write one step's weights: ``weights`` a list over layers of (nh, T, T) tensors or arrays."""
    stacked = np.stack([np.asarray(w, dtype=np.float32) for w in weights]).astype(np.float16)  # (L, nh, T, T)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        weights=stacked,
        ids=np.asarray(ids, dtype=np.int64),  # (T,)
        tokens=np.asarray(tokens, dtype=np.str_),  # (T,)
        step=np.asarray(step, dtype=np.int64),
    )
    path = step_file(log_dir, step)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return path


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def write_scores(log_dir: Path, step: int, scores: dict, in_context: float | None = None) -> Path:
    """Write one step's head scores: ``scores`` {name: (L, nh) tensor or array}."""
    table = {name: [[_finite(float(v)) for v in row] for row in np.asarray(value)] for name, value in scores.items()}
    record = {"step": step, "scores": table, "in_context": None if in_context is None else _finite(in_context)}
    path = scores_file(log_dir, step)
    atomic_write_text(path, json.dumps(record) + "\n")
    return path


def logged_steps(log_dir: Path) -> list[int]:
    """The steps with a step file in ``log_dir``, in order (none when it does not exist)."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in log_dir.iterdir() if (m := _STEP.fullmatch(p.name)))


def read_step(log_dir: Path, step: int) -> Step:
    """One logged step, with its scores when the heads callback wrote them; a damaged file raises
    :class:`AttentionLogError` (one line naming it)."""
    path = step_file(log_dir, step)
    try:
        with np.load(path, allow_pickle=False) as data:
            weights = data["weights"]
            ids, tokens = data["ids"].tolist(), data["tokens"].tolist()
    except FileNotFoundError:
        raise AttentionLogError(f"no attention logged at step {step} in {log_dir}") from None
    except Exception as err:  # a zip cut short, a bad CRC, a missing array, not an .npz at all
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AttentionLogError(f"{path} is damaged ({reason}); delete it, or log the run again") from None
    if weights.ndim != 4 or weights.shape[2:] != (len(ids), len(ids)) or len(tokens) != len(ids):
        raise AttentionLogError(f"{path} is damaged (weights {weights.shape} for {len(ids)} tokens)")
    scores, in_context = None, None
    side = scores_file(log_dir, step)
    if side.is_file():
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
            scores, in_context = record["scores"], record.get("in_context")
        except (ValueError, KeyError, TypeError) as err:
            raise AttentionLogError(f"{side} is damaged ({type(err).__name__}); delete it") from None
    return Step(step, tokens, ids, weights.astype(np.float16), scores, in_context)


def wire(step: Step) -> bytes:
    """``step`` as the browser reads it (module docstring)."""
    L, nh, T, _ = step.weights.shape
    header = {
        "step": step.step,
        "tokens": step.tokens,
        "ids": step.ids,
        "layers": L,
        "heads": nh,
        "T": T,
        "scores": step.scores or {},
        "in_context": step.in_context,
    }
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    head += b" " * (len(head) % 2)  # the weights start at an even offset (float16)
    return struct.pack("<I", len(head)) + head + np.ascontiguousarray(step.weights, dtype="<f2").tobytes()
