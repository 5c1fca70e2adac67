#!/usr/bin/env python
"""Continue a prompt with a trained model: ``python generate.py ckpt_path=<run or .ckpt> prompt="..."``.

The text streams to stdout as it is produced; the tokens/s line goes to stderr. Options
(temperature, top_k, top_p, num_samples, seed, ...) are in ``conf/generate.yaml``; the work is
done by :func:`attnlab.generate.generate_text`.
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


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    from attnlab.generate import generate_text  # imported here so that --help answers at once

    with user_errors():
        try:
            generate_text(cfg)
        except KeyboardInterrupt:  # Ctrl-C ends the stream, not with a traceback
            print(file=sys.stderr)
            sys.exit(130)


if __name__ == "__main__":
    main()
