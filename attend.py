#!/usr/bin/env python
"""Draw a trained model's attention maps: ``python attend.py ckpt_path=<run dir or .ckpt> text="..."``.

Writes ``layer_{i}.png`` (every head) and ``layer_{i}_mean.png`` per layer into ``<run>/attention/``
(or ``out_dir=...``) and prints their paths. Config: ``conf/attend.yaml``.
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


@hydra.main(version_base="1.3", config_path="conf", config_name="attend")
def main(cfg: DictConfig) -> None:
    from attnlab.attend import attend

    with user_errors():
        attend(cfg)


if __name__ == "__main__":
    main()
