"""The Optuna study of ``python train.py -m hparams_search=optuna``: its sampler's seed, and its best
trial with every override that trial ran with.

A study lives on between calls in its storage (an SQLite file by default). Two things follow:

- :func:`study_seed` seeds the sampler from ``seed`` and the number of trials the study already
  holds (``hydra.sweeper.sampler.seed`` in conf/hparams_search/optuna.yaml, through the resolver
  ``${attnlab.study_seed:...}``): the same command on the same study replays nothing, while a
  new study with the same ``seed`` proposes the same trials.
- a call may fix other values than the call before (``trainer.max_steps=300``), so a trial's
  searched values are not all it ran with. Optuna's sweeper launches each trial with its searched
  values (``trial.params``) followed by the call's fixed overrides, which it stores as the trial's
  user attributes: :func:`trial_overrides` puts the two back together. At multirun start
  :class:`attnlab.sweeps.multirun.SweepReport` writes which study a sweep adds to
  (:func:`record_study`, ``<sweep>/optuna_study.json``); the sweep's report reads its best trial
  from there (:func:`read_study`), at the end of the multirun and in ``attnlab report``.

Optuna is imported only when a study is read: Hydra builds the callback for every command.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from attnlab.errors import DataError
from attnlab.runs.atomic import atomic_write_json
from attnlab.sweeps.job import OBJECTIVE
from attnlab.sweeps.plan import is_optuna

STUDY_RECORD = "optuna_study.json"  # in a sweep folder: the study its trials were added to
SQLITE = "sqlite:///"


def sqlite_file(storage: str | None) -> Path | None:
    """The file of an SQLite storage URL (``sqlite:////abs/s.db`` -> ``/abs/s.db``); None for
    other storages, in memory included."""
    if isinstance(storage, str) and storage.startswith(SQLITE) and storage != SQLITE + ":memory:":
        return Path(storage[len(SQLITE) :])
    return None


def load_study(storage: str | None, study_name: str) -> Any:
    """The ``optuna.Study`` named ``study_name`` in ``storage``, or None when there is none yet (in
    memory, no SQLite file, or no such study in it). Creates no file."""
    if storage is None:
        return None
    file = sqlite_file(storage)
    if storage.startswith(SQLITE) and (file is None or not file.is_file()):
        return None
    import optuna

    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None


def study_seed(seed: int | None, storage: str | None, study_name: str) -> int | None:
    """The sampler's seed: ``seed`` itself for a new study (or one in memory), and for a study that
    already holds n trials a seed drawn from (``seed``, n): each call on a study proposes new
    trials, and reproducibly so. None (no seed) stays None."""
    if seed is None:
        return None
    study = load_study(storage, study_name)
    held = len(study.get_trials(deepcopy=False)) if study is not None else 0
    return seed if held == 0 else int(np.random.SeedSequence([seed, held]).generate_state(1)[0])


def trial_overrides(trial: Any) -> list[str]:
    """The overrides a trial's job ran with: hydra_optuna_sweeper's ``_configure_trials`` launches
    each trial with ``name=value`` of its searched values, then of the call's fixed overrides,
    which it stores as the trial's user attributes (an SQLite storage gives those back by name)."""
    return [f"{name}={value}" for name, value in {**trial.params, **trial.user_attrs}.items()]


# --------------------------------------------------------------------------------------------
# The study a sweep added to
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyBest:
    """What a sweep's report says of its Optuna study: its size and its best trial so far."""

    name: str
    storage: str
    trials: int  # finished trials (a failed job's among them, scored +inf)
    number: int | None = None  # the best trial's; None: no finished trial has a finite value
    value: float | None = None
    overrides: tuple[str, ...] = ()

    def line(self) -> str:
        """``study attnlab: best of 4 trials is #2, val/bpb 3.1234: optim.lr=... trainer.max_steps=300``"""
        if self.number is None:
            return f"study {self.name}: {self.count()} finished, none with a finite {OBJECTIVE}"
        return (
            f"study {self.name}: best of {self.count()} is #{self.number}, "
            f"{OBJECTIVE} {self.value:.4f}: {' '.join(self.overrides)}"
        )

    def count(self) -> str:
        return f"{self.trials} trial{'s' * (self.trials != 1)}"

    def markdown(self) -> list[str]:
        """The report's "Optuna study" section."""
        lines = ["## Optuna study", "", f"Study `{self.name}` in `{self.storage}`: {self.count()} finished."]
        if self.number is not None:
            lines.append(
                f"The best is trial #{self.number}, {OBJECTIVE} {self.value:.4f}, which ran with "
                f"`{' '.join(self.overrides)}`."
            )
        return lines


def best_of_study(storage: str, study_name: str) -> StudyBest:
    """The study's finished trials and the best of them (lowest finite value)."""
    import optuna

    study = load_study(storage, study_name)
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if study else []
    scored = [t for t in finished if t.value is not None and math.isfinite(t.value)]
    if not scored:
        return StudyBest(study_name, storage, len(finished))
    best = min(scored, key=lambda t: t.value)
    return StudyBest(study_name, storage, len(finished), best.number, best.value, tuple(trial_overrides(best)))


def record_study(config: DictConfig) -> None:
    """At multirun start: ``<sweep>/optuna_study.json``, the study an Optuna sweep adds its trials
    to, so that its report can read the study again (from any folder: an SQLite path is made
    absolute). Nothing for other sweepers, nor for a study in memory (it is gone when the sweep
    ends; the report's best job is the study's best)."""
    sweeper = config.hydra.sweeper
    storage = sweeper.get("storage")
    if not is_optuna(sweeper) or storage is None:
        return
    file = sqlite_file(storage)
    if file is not None:
        storage = SQLITE + str(file.resolve())
    atomic_write_json(
        Path(config.hydra.sweep.dir) / STUDY_RECORD, {"study_name": sweeper.study_name, "storage": storage}
    )


def read_study(sweep_dir: Path) -> StudyBest | None:
    """The best trial so far of the study the sweep in ``sweep_dir`` added to; None when it ran no
    Optuna study kept in a storage."""
    path = sweep_dir / STUDY_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        storage, study_name = str(record["storage"]), str(record["study_name"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"{path} does not name an Optuna study ({err!r}); delete it to leave the study out of the report"
        ) from err
    return best_of_study(storage, study_name)
