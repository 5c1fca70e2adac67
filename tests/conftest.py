"""Shared fixtures: the seed sample, composed Hydra configs, and the repository's paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import attnlab.cli  # noqa: F401  (registers the config resolvers, as every entry point does)

ROOT = Path(__file__).resolve().parents[1]
SEED_SAMPLE = ROOT / "data" / "trans_instance.txt"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def seed_text() -> str:
    return SEED_SAMPLE.read_text(encoding="utf-8")


@pytest.fixture
def compose(tmp_path):
    """compose(*overrides) -> the config `python train.py *overrides` would run, writing to tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return hydra_compose(
                "config",
                overrides=[
                    f"paths.root={ROOT}",
                    f"paths.output_dir={tmp_path / 'run'}",
                    f"data.cache_dir={tmp_path / 'cache'}",
                    *overrides,
                ],
            )

    return _compose
