"""``make clean`` and ``make distclean`` delete what their help text says, and never the user's runs."""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

# a checkout after `make train`, `make test`, `make lint` and `attnlab export`: what each target keeps
TREE = {
    "Makefile": "both",
    "src/attnlab/gpt.py": "both",
    "tests/test_gpt.py": "both",
    "data/trans_instance.txt": "both",
    "outputs/2026-12-01/22-10-38/checkpoints/last.ckpt": "both",
    "exports/shakespeare/model.safetensors": "both",
    ".venv/bin/python": "clean",
    ".venv/lib/python3/site-packages/torch/__pycache__/a.pyc": "clean",
    "src/attnlab.egg-info/PKG-INFO": "clean",
    "data/shakespeare/tragedies/hamlet.txt": "clean",
    "data/repeats/repeats.txt": "clean",  # data=repeats, generated on first use
    "data/cache/532cf76fc51d8e99b9fb-cl100k_base.tokens": "neither",  # a token file and its sidecar
    "data/cache/532cf76fc51d8e99b9fb-cl100k_base.json": "neither",
    "src/attnlab/__pycache__/gpt.cpython-312.pyc": "neither",
    "tests/__pycache__/test_gpt.cpython-312.pyc": "neither",
    "bench/__pycache__/run.cpython-312.pyc": "neither",
    ".pytest_cache/v/cache/lastfailed": "neither",
    ".ruff_cache/0.9.0/123": "neither",
}


def files_after(target: str, checkout) -> set[str]:
    for name in TREE:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("x")
    shutil.copy(ROOT / "Makefile", checkout / "Makefile")
    result = subprocess.run(["make", target], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {str(p.relative_to(checkout)) for p in checkout.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_make_clean_removes_the_caches_only(tmp_path):
    assert files_after("clean", tmp_path) == {name for name, kept in TREE.items() if kept in ("both", "clean")}


@pytest.mark.slow
def test_make_distclean_also_removes_the_venv_and_the_corpus_but_never_the_runs(tmp_path):
    assert files_after("distclean", tmp_path) == {name for name, kept in TREE.items() if kept == "both"}
