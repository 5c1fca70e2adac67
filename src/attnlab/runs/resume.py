"""Resuming a run after a crash: ``python train.py resume=<run folder>``.

``resume=<run>`` resumes from ``<run>/checkpoints/last.ckpt``; ``ckpt_path=<file>`` from that
checkpoint. Either way the run continues where the checkpoint left it (weights, optimizer, LR
schedule, RNGs, step count and so the data order) and *in the checkpoint's run folder*:

* the folder: ``hydra.run.dir`` resolves through :func:`run_dir`, so Hydra appends to the run's
  ``train.log`` and TensorBoard adds an event file to the same run. Hydra's record of this launch
  goes to ``.hydra/resume-<time>/`` (:func:`record_dir`), keeping the original ``.hydra/``;
* the configuration: the run's ``config.yaml`` is the source of truth. The command line changes
  only the keys it names (``trainer.max_steps=5000``, ``optim.lr=1e-4``), plus the keys that
  interpolate them (``data.context_length`` carries ``model.context_length``); ``paths.*`` are this
  checkout's. Changes of the model's architecture are refused by
  :func:`attnlab.runs.checkpoint.require_same_model`, which lists them;
* the record: ``metrics.json`` lists the overrides of every launch of the run, the original ones
  first, each resume's after them (:func:`run_overrides`), so they still compose the run's config.

A checkpoint outside a run folder (no ``config.yaml`` beside ``checkpoints/``) resumes into a new
run folder with this command's configuration.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from attnlab.errors import CheckpointError, ConfigError
from attnlab.runs import layout
from attnlab.runs.layout import saved_run

CONTINUATION_KEYS = ("sweep_dir", "sweep_retry_failed")  # continue a sweep (attnlab.sweeps.continuation)
HOW_TO_RESUME = ("resume", "ckpt_path", *CONTINUATION_KEYS)  # the overrides that say where a launch resumes from
NOT_CARRIED = (*HOW_TO_RESUME, "hydra", "paths")  # overrides that say how to resume, not what


def resume_checkpoint(resume: str | None, ckpt_path: str | None) -> Path | None:
    """The checkpoint ``resume=`` / ``ckpt_path=`` name (None when neither is set)."""
    if resume and ckpt_path:
        raise ConfigError("set resume=<run folder> or ckpt_path=<file>, not both")
    if resume:
        folder = Path(resume).expanduser()
        if not folder.is_dir():
            raise CheckpointError(f"resume={resume} is not a folder; pass a run folder such as outputs/<date>/<time>")
        if not layout.last_checkpoint(folder).is_file():
            raise CheckpointError(
                f"{folder} has no {layout.LAST_CHECKPOINT} (the run saved no checkpoint); start a new run instead"
            )
        return layout.last_checkpoint(folder)
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"ckpt_path={ckpt_path} does not exist; pass a .ckpt file, e.g. <run>/{layout.LAST_CHECKPOINT}"
            )
        return path
    return None


# --------------------------------------------------------------------------------------------
# Hydra's run folder (the ${attnlab.run_dir:...} resolvers, attnlab.system.resolvers)
# --------------------------------------------------------------------------------------------


def _resumed_run(resume: Any, ckpt_path: Any) -> Path | None:
    try:
        checkpoint = resume_checkpoint(resume, ckpt_path)
    except (ConfigError, CheckpointError):
        return None  # the task reports it, in one line, before writing anything
    return saved_run(checkpoint) if checkpoint is not None else None


def run_dir(resume: Any, ckpt_path: Any, new_run_dir: str) -> str:
    """``hydra.run.dir``: the resumed run's folder, else ``new_run_dir``."""
    run = _resumed_run(resume, ckpt_path)
    return str(run.resolve()) if run is not None else new_run_dir


def record_dir(resume: Any, ckpt_path: Any, output_dir: Any = None) -> str:
    """``hydra.output_subdir``: ``.hydra``, or ``.hydra/resume-<time>`` so that a later launch in a
    folder keeps the record of the first: a resume, or a sweep job run again in its folder
    (``output_dir``, Hydra's job folder, holds a record already; Hydra reads this before writing)."""
    earlier = (
        output_dir not in (None, "") and (Path(str(output_dir)) / layout.HYDRA_DIR / layout.HYDRA_OVERRIDES).is_file()
    )
    if earlier or _resumed_run(resume, ckpt_path) is not None:
        return layout.resume_record(datetime.now())
    return layout.HYDRA_DIR


# --------------------------------------------------------------------------------------------
# The resumed run's configuration
# --------------------------------------------------------------------------------------------


def key_of(override: Any) -> str:
    """The config key a parsed Hydra override sets: ``seed=7`` sets ``seed``, ``~logger``
    ``logger``, ``model/x=y`` ``model.x``."""
    return override.package if override.package else override.key_or_group.replace("/", ".")


def key_of_each(overrides: list[str]) -> list[str]:
    """The config key each override sets (:func:`key_of`), one per override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [key_of(o) for o in OverridesParser.create().parse_overrides(list(overrides))]


def override_keys(overrides: list[str]) -> list[str]:
    """The config keys ``overrides`` set, Hydra's own keys left out."""
    return [k for k in key_of_each(overrides) if k.split(".")[0] != "hydra"]


def command_line_keys() -> list[str]:
    """The config keys this launch's command line sets (Hydra's task overrides)."""
    from hydra.core.hydra_config import HydraConfig

    return override_keys(list(HydraConfig.get().overrides.task)) if HydraConfig.initialized() else []


def resume_config(cfg: DictConfig, keys: list[str] | None = None) -> tuple[DictConfig, Path | None]:
    """``(config to train with, checkpoint to resume from or None)``.

    Resuming a run folder: its saved config, with the keys the command line sets (``keys``;
    by default Hydra's task overrides) and what interpolates them taken from ``cfg``, ``paths``
    from ``cfg`` and ``paths.output_dir`` the run folder.
    """
    checkpoint = resume_checkpoint(cfg.get("resume"), cfg.get("ckpt_path"))
    run = saved_run(checkpoint) if checkpoint is not None else None
    if run is None:
        return cfg, checkpoint
    keys = command_line_keys() if keys is None else keys
    current = OmegaConf.to_container(cfg, resolve=True)
    merged = OmegaConf.load(layout.config_file(run))
    taken = [k for k in _with_dependents(cfg, keys) if k.split(".")[0] not in NOT_CARRIED]
    for key in sorted(taken, key=lambda k: k.count(".")):  # a group before its members
        value = OmegaConf.select(OmegaConf.create(current), key, default=_MISSING)
        if value is _MISSING:  # deleted with ~key
            _delete(merged, key)
        else:
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
    merged.paths = current["paths"]
    merged.paths.output_dir = str(run.resolve())  # the folder Hydra chose through run_dir()
    merged.resume, merged.ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    return merged, checkpoint


_MISSING = object()
_REFERENCE = re.compile(r"\$\{([\w.]+)\}")  # ${a.b}: a reference to another key


def _with_dependents(cfg: DictConfig, keys: list[str]) -> list[str]:
    """``keys`` plus every key whose value interpolates one of them (``model.context_length``
    is ``${data.context_length}``), transitively."""
    raw: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, str):
            raw[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    found = set(keys)
    changed = True
    while changed:
        changed = False
        for key, value in raw.items():
            refs = _REFERENCE.findall(value)
            if key not in found and any(r == k or r.startswith(k + ".") for r in refs for k in found):
                found.add(key)
                changed = True
    return sorted(found)


def _delete(cfg: DictConfig, key: str) -> None:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if isinstance(parent, DictConfig) and leaf in parent:
        del parent[leaf]


# --------------------------------------------------------------------------------------------
# The run's launches: the one that started it, then each resume
# --------------------------------------------------------------------------------------------


def launch_overrides(run: Path) -> list[list[str]]:
    """The command-line overrides of each launch of ``run``, oldest first, as Hydra recorded them
    (:func:`attnlab.runs.layout.launch_records`)."""
    return [[str(o) for o in yaml.safe_load(p.read_text(encoding="utf-8")) or []] for p in layout.launch_records(run)]


def run_overrides(launches: list[list[str]]) -> list[str]:
    """The overrides that compose the run's config: each launch's in turn but :data:`HOW_TO_RESUME`.

    As :func:`resume_config` takes the keys a resume sets, its overrides replace those of earlier
    launches that set the same keys or keys under them (``optim=muon`` replaces ``optim.lr=0.01``);
    the others stay.
    """
    kept: list[tuple[str, str]] = []  # (key, override), in launch order
    for overrides in launches:
        this = [(key, o) for key, o in zip(key_of_each(overrides), overrides) if key not in HOW_TO_RESUME]
        keys = {key for key, _ in this}
        kept = [(k, o) for k, o in kept if not any(k == key or k.startswith(f"{key}.") for key in keys)]
        kept += this
    return [o for _, o in kept]
