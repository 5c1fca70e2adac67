"""Fixtures of the sweep tests."""

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from tests.conftest import ROOT


@pytest.fixture
def compose_with_hydra():
    """Like `compose`, with the `hydra` node (sweeper, launcher) in the result."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=[f"paths.root={ROOT}", *overrides], return_hydra_config=True)

    return _compose
