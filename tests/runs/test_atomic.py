"""Every file attnlab writes has the mode ``open()`` would give it: 0o666 less the user's umask."""

import contextlib
import os
from pathlib import Path

import pytest

from attnlab.runs.atomic import atomic_path, atomic_write_text
from tests.conftest import run_tool, run_train


@contextlib.contextmanager
def umask(mask: int):
    """This process (and the processes it starts) with umask ``mask``; the old one back afterwards."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """``{"run/config.yaml": "0o640", "run/": "0o750", ...}`` for everything below ``root``."""
    return {
        str(p.relative_to(root)) + ("/" if p.is_dir() else ""): oct(p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
    }


def test_a_written_file_follows_the_umask_of_the_moment_whatever_the_writer_does(tmp_path):
    with umask(0o077):  # set after attnlab was imported
        atomic_write_text(tmp_path / "a.txt", "a")
    with umask(0o002), atomic_path(tmp_path / "b.bin") as tmp:  # a writer that renames its own 0600 file over tmp
        fd = os.open(tmp_path / "own.tmp", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        os.replace(tmp_path / "own.tmp", tmp)
    assert modes(tmp_path) == {"a.txt": oct(0o600), "b.bin": oct(0o664)}


# what the run, export, eval and attend below write (one file of each kind at least), by path prefix
WRITTEN = (
    "run/config.yaml",
    "run/metrics.json",
    "run/model_summary.txt",
    "run/checkpoints/last.ckpt",
    "run/tensorboard/events.out.tfevents.",
    "data/cache/",
    "export/model.safetensors",
    "run/eval/",
    "run/attention/",
)


@pytest.mark.slow
def test_every_file_of_a_run_and_the_tools_follows_the_umask(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "data" / "cache"
    with umask(0o027):
        steps = [
            run_train("debug=tiny", f"hydra.run.dir={run}", f"data.cache_dir={cache}"),
            run_tool("export", f"ckpt_path={run}", f"out={tmp_path / 'export'}", cwd=tmp_path),
            run_tool("eval", f"ckpt_path={run}", "trainer.accelerator=cpu", cwd=tmp_path),
            run_tool("attend", f"ckpt_path={run}", cwd=tmp_path),
        ]
    for step in steps:
        assert step.returncode == 0, step.stderr[-2000:]
    found = modes(tmp_path)
    missing = [kind for kind in WRITTEN if not any(n.startswith(kind) and not n.endswith("/") for n in found)]
    assert missing == []  # the walk saw a file of every kind
    offenders = {name: mode for name, mode in found.items() if mode != oct(0o750 if name.endswith("/") else 0o640)}
    assert offenders == {}
