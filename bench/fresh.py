"""Run one function in a fresh Python process and get its JSON-able result back.

``call("bench.attention:measure_cell", T=64, ...)`` starts ``python -m bench.fresh``, which imports
the module, calls the function with the keyword arguments and writes the result as JSON. Every
section runs this way (one section's settings, such as the training section's malloc tuning, never
leak into another's figures), and so do measurements that a used process would distort: peak
memory (what earlier calls left resident), ``torch.compile`` (its caches, and its recompilation
limit when one process compiles many models).

The function runs from its imported module (not ``__main__``), so classes that Hydra
instantiates by name are the ones the caller reads back.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def call(target: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """``module:function(**kwargs)`` in a new process (extra environment ``env``); its result.
    The child's output goes to stderr, so a caller's stdout stays its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(
            [sys.executable, "-m", "bench.fresh", target, json.dumps(kwargs), str(out)],
            cwd=ROOT,
            check=True,
            stdout=sys.stderr,
            env={**os.environ, **(env or {})},
        )
        return json.loads(out.read_text())


def call_here(target: str, **kwargs: Any) -> Any:
    """``module:function(**kwargs)`` in this process, its result as JSON would give it back."""
    module, function = target.split(":")
    return json.loads(json.dumps(getattr(importlib.import_module(module), function)(**kwargs)))


def main(target: str, kwargs: str, out: str) -> None:
    Path(out).write_text(json.dumps(call_here(target, **json.loads(kwargs))))


if __name__ == "__main__":
    main(*sys.argv[1:])
