"""Shared fixtures: the seed sample, composed Hydra configs, the repository's paths, and the commands
(``python train.py``, ``attnlab <tool>``) run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnlab.system.resolvers import register_resolvers  # as every entry point does (attnlab.cli)

register_resolvers()

ROOT = Path(__file__).resolve().parents[1]
SEED_SAMPLE = ROOT / "data" / "trans_instance.txt"
ATTNLAB = Path(sys.executable).with_name("attnlab")  # `attnlab`, installed beside this Python by `make install`

if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs one pytest worker per core (pytest-xdist):
    os.environ["OMP_NUM_THREADS"] = "1"  # one thread each, here and in the processes the tests start
    torch.set_num_threads(1)
else:
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


class CodeRunningPickle:
    """Unpickling this runs a shell command (it writes ``pwned.txt``): a checkpoint must never be read that way."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _run(argv: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def run_train(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python train.py *args``, as a user runs it."""
    return _run([sys.executable, str(ROOT / "train.py"), *args], cwd, timeout)


def run_tool(tool: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``attnlab <tool> *args``: the console script of the environment running the tests."""
    return _run([str(ATTNLAB), tool, *args], cwd, timeout)
