#!/usr/bin/env python
"""Measure a trained model on text: ``python eval.py ckpt_path=<run or .ckpt> [data.path=<file or folder>]``.

Prints ``loss``, ``ppl`` and ``bpb`` over every window of the text (default: the run's own
validation split) and saves them as JSON beside the checkpoint. Options are in ``conf/eval.yaml``;
the work is done by :func:`attnlab.evaluate.evaluate`.
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


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    from attnlab.evaluate import evaluate  # imported here so that --help answers at once

    with user_errors():
        return evaluate(cfg)["bpb"]


if __name__ == "__main__":
    main()
