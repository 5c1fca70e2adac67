#!/usr/bin/env python
"""Rebuild a sweep's report: ``python report.py outputs/multirun/<date>/<time>``.

Writes summary.csv, summary.md and summary.png into the sweep folder from its job folders (a
multirun writes them itself when it ends; this also works for one that was interrupted). The
work is done by :func:`attnlab.report.main`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # run from a checkout even before `pip install -e .`

from attnlab.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
