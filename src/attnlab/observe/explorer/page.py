"""The explorer as one self-contained HTML file: ``attention.html`` (``attnlab attend``) and
``attnlab.show_attention`` (Jupyter).

The page inlines static/explorer.css, static/explorer.js (the code the TensorBoard tab runs) and
the data (each step's :func:`attnlab.observe.explorer.log.wire` bytes in base64), so it works from
a ``file://`` URL with no network.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch

from attnlab.data.tokenizer import Tokenizer
from attnlab.model import GPT
from attnlab.observe.explorer.log import Step, wire
from attnlab.observe.heads import head_scores, repeated_random_tokens
from attnlab.observe.probe import probe_attention
from attnlab.runs.atomic import atomic_write_text

STATIC = Path(__file__).with_name("static")
REPEATS = 8  # sequences of repeated random tokens for the induction and duplicate scores


def model_step(model: GPT, tokenizer: Tokenizer, ids: torch.Tensor, step: int = 0) -> Step:
    """``model``'s attention on ``ids`` (T,) and its head scores: the pattern scores on ``ids``
    itself, ``induction`` and ``duplicate`` on repeated random tokens (seed 0)."""
    weights = torch.stack(probe_attention(model, ids)).numpy()  # (L, nh, T, T)
    device = next(model.parameters()).device
    repeated = repeated_random_tokens(model.cfg.vocab_size, model.cfg.context_length, REPEATS).to(device)  # (B, 2R)
    scores = head_scores(model, ids.to(device).unsqueeze(0), repeated)  # {name: (L, nh)}
    table = {
        name: [[None if v != v else float(v) for v in row] for row in value.float().cpu().tolist()]
        for name, value in scores.items()
    }
    tokens = [tokenizer.decode([i]) for i in ids.tolist()]
    return Step(step, tokens, ids.tolist(), weights.astype("float16"), table)


def explorer_html(steps: list[Step], title: str) -> str:
    """The page of ``steps`` (one run, named ``title``)."""
    embedded = {"run": title, "steps": [{"step": s.step, "data": base64.b64encode(wire(s)).decode()} for s in steps]}
    data = json.dumps(embedded).replace("</", "<\\/")  # never ends the script element
    script = (STATIC / "explorer.js").read_text(encoding="utf-8")
    if "</script" in script.lower():
        raise AssertionError("explorer.js must not contain '</script'")
    css = (STATIC / "explorer.css").read_text(encoding="utf-8")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>attention: {html.escape(title)}</title>
<style>
body {{ margin: 0; }}
{css}
</style>
</head>
<body>
<div id="explorer"></div>
<script type="application/json" id="attention-data">{data}</script>
<script type="module">
{script}
mount(document.getElementById("explorer"), embeddedSource(JSON.parse(document.getElementById("attention-data").textContent)));
</script>
</body>
</html>
"""


def write_explorer_html(steps: list[Step], title: str, path: Path) -> Path:
    """Write :func:`explorer_html` to ``path`` (atomically)."""
    atomic_write_text(path, explorer_html(steps, title))
    return Path(path)


def iframe(page: str, height: int = 900) -> str:
    """``page`` in an ``<iframe srcdoc>``: its script runs apart from the notebook's."""
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width: 100%; height: {height}px; border: 0"'
        ' sandbox="allow-scripts"></iframe>'
    )
