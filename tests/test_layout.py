"""The package's shape: one home per concept, no twin names, no import cycles, short modules, and
a model package that needs neither Lightning nor Hydra."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "attnlab"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """``{"attnlab.model.gpt": path, ...}`` for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The attnlab modules ``path`` imports anywhere in it (a function's own imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attnlab"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return out


def test_no_module_is_longer_than_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_twin_names():
    stems = [path.stem for path in modules().values() if path.stem != "__init__"]
    assert len(stems) == len(set(stems)), sorted(s for s in stems if stems.count(s) > 1)

    def root(stem):  # generate / generation, report / reports, optim / optimizer
        return re.sub(r"(ion|ing|izer|er|or|ed|e|s)$", "", stem)

    twins = [(a, b) for a in stems for b in stems if a < b and root(a) == root(b)]
    assert twins == []
    root_scripts = {p.stem for p in ROOT.glob("*.py")}
    assert root_scripts == {"train"} and root_scripts.isdisjoint(stems)


def test_no_import_cycles():
    found = modules()
    # every module imports the root package as its parent, before anything else: an edge to it closes no cycle
    graph = {name: imports(path, set(found)) - {name, "attnlab"} for name, path in found.items()}
    # attnlab.load and attnlab.show_attention, imported when called
    assert imports(found["attnlab"], set(found)) <= {"attnlab.tools.export", "attnlab.tools.attend"}

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return trail
                if nxt not in trail:
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = {name: trail for name in graph if (trail := cycle_from(name))}
    assert cycles == {}


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        ("attnlab.model, attnlab.tools.export", {"lightning", "pytorch_lightning", "hydra", "omegaconf"}),
        # attnlab generate starts in ~1 s instead of ~4.5: Lightning (and its torchmetrics) stays unloaded
        ("attnlab.runs.checkpoint, attnlab.tools.generate", {"lightning", "pytorch_lightning", "torchmetrics"}),
    ],
    ids=["the model: neither lightning nor hydra", "reading a checkpoint and generating: no lightning"],
)
def test_light_parts_import_without_the_heavy_ones(modules, absent):
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(absent)!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_run_folder_names_of_conf_are_those_of_the_layout(compose, tmp_path):
    from attnlab.runs import layout

    cfg = compose()
    run = Path(cfg.paths.output_dir)
    assert Path(cfg.callbacks.best_checkpoint.dirpath) == layout.checkpoint_file(run, layout.BEST).parent
    assert (cfg.callbacks.best_checkpoint.filename, cfg.callbacks.last_checkpoint.filename) == (
        layout.BEST,
        layout.LAST,
    )
    assert Path(cfg.callbacks.last_checkpoint.dirpath) == layout.last_checkpoint(run).parent
    assert cfg.logger.tensorboard.name == layout.TENSORBOARD_DIR


def test_every_callback_a_run_uses_is_in_conf(compose, tmp_path):
    from hydra.utils import get_class

    from attnlab.training.task import build_trainer

    cfg = compose()
    trainer = build_trainer(cfg, tmp_path)
    listed = {get_class(c._target_) for c in cfg.callbacks.values()}
    ours = {type(c) for c in trainer.callbacks if type(c).__module__.startswith("attnlab")}
    assert ours == {c for c in listed if c.__module__.startswith("attnlab")}
