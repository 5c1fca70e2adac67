#!/usr/bin/env python
"""Export a trained model: ``python export.py ckpt_path=<run or .ckpt> out=<folder>``.

Writes the weights as safetensors, the model config as JSON and the tokenizer (with the corpus
vocabulary); ``attnlab.load(<folder>)`` returns the model and tokenizer without Lightning or
Hydra. Options are in ``conf/export.yaml``; the work is done by :func:`attnlab.export.export`.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("ATTNLAB_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout even before `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from attnlab.cli import user_errors  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from attnlab.export import export  # imported here so that --help answers at once

    with user_errors():
        out = export(cfg.get("ckpt_path"), cfg.get("out"), overwrite=cfg.overwrite)
        sizes = ", ".join(f"{p.name} ({_size(p.stat().st_size)})" for p in sorted(out.iterdir()))
        print(f"exported to {out}: {sizes}\nload it with: attnlab.load({str(out)!r})", flush=True)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} kB"


if __name__ == "__main__":
    main()
