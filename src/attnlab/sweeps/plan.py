"""The jobs a multirun launches, worked out from its overrides without launching anything.

Hydra's grid sweeper runs every combination of the comma lists of ``hydra.sweeper.params``
(``sweep=heads``) and the command line, a later value of a key replacing an earlier one:
:func:`grid_jobs` lists them as Hydra will. Optuna's sweeper picks each trial's values while the
study runs, so its jobs cannot be listed; :func:`search_probes` gives the configurations that
reach every end of its space instead (each choice, both ends of each interval, every other
parameter at its first value), which a dry run checks in place of the trials.

Pure override handling: no composing, no torch. ``python train.py -m ... --dry-run`` uses it
(:mod:`attnlab.preflight`), and so does the test of the docs' commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from attnlab.errors import ConfigError

OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"  # hydra/sweeper=optuna


def is_optuna(sweeper: Any) -> bool:
    """Whether ``hydra.sweeper`` (composed) is Optuna's."""
    return str(sweeper.get("_target_", "")) == OPTUNA_SWEEPER


@dataclass
class SweepPlan:
    """What a multirun will launch: ``jobs`` (each a list of overrides), and whether they are the
    jobs themselves (a grid) or the probes of a search space (``trials`` of them will run)."""

    jobs: list[list[str]]
    search: bool = False  # True: jobs are probes of an Optuna space, not the trials
    trials: int | None = None  # an Optuna study's n_trials

    @property
    def swept(self) -> list[str]:
        """Keys whose value differs between jobs, in the order they first appear."""
        values: dict[str, set[str]] = {}
        for job in self.jobs:
            for override in job:
                key, _, value = override.partition("=")
                values.setdefault(key, set()).add(value)
        return [key for key, seen in values.items() if len(seen) > 1]


def sweeper_overrides(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> list[Override]:
    """``hydra.sweeper.params`` then the command line's overrides, parsed, as both sweepers read them."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    return OverridesParser.create().parse_overrides(lines)


def grid_jobs(overrides: Sequence[Override]) -> list[list[str]]:
    """Every job of Hydra's grid sweeper, in its order (the last axis varies fastest)."""
    (batch,) = BasicSweeper.split_arguments(list(overrides), max_batch_size=None)
    return [list(job) for job in batch]


def _values(override: Override) -> list[str]:
    """The values of ``override`` a probe of a search space tries: every choice or range value,
    both ends of an interval, or the one fixed value."""
    key = override.get_key_element()
    if not override.is_sweep_override():
        return [f"{key}={override.get_value_element_as_str()}"]
    sweep = override.value()
    if isinstance(sweep, (ChoiceSweep, RangeSweep)):
        return [f"{key}={value}" for value in override.sweep_string_iterator()]
    if not isinstance(sweep, IntervalSweep):  # glob(*): the group's options, known only to Hydra's config loader
        raise ConfigError(f"cannot list the jobs of {override.input_line!r}; write the choices out (optim=adamw,muon)")
    ends = (sweep.start, sweep.end)
    if "int" in sweep.tags:
        ends = tuple(int(end) for end in ends)
    return [f"{key}={end}" for end in ends]


def search_probes(overrides: Sequence[Override]) -> list[list[str]]:
    """The first value of every parameter, then each other value of one parameter at a time."""
    values = {o.get_key_element(): _values(o) for o in overrides}  # a later key replaces an earlier one
    first = [options[0] for options in values.values()]
    probes = [first]
    for i, options in enumerate(values.values()):
        probes += [first[:i] + [option] + first[i + 1 :] for option in options[1:]]
    return probes


def plan_sweep(sweeper: Mapping[str, Any], arguments: Sequence[str]) -> SweepPlan:
    """The plan of a multirun whose composed ``hydra.sweeper`` is ``sweeper`` and whose command
    line's overrides are ``arguments``."""
    overrides = sweeper_overrides(sweeper.get("params"), arguments)
    if is_optuna(sweeper):
        return SweepPlan(search_probes(overrides), search=True, trials=int(sweeper.get("n_trials") or 0))
    return SweepPlan(grid_jobs(overrides))


def first_job(arguments: Sequence[str]) -> list[str]:
    """One job of a multirun's command line: each sweep at its first value (to compose and check)."""
    return [options[0] for options in map(_values, OverridesParser.create().parse_overrides(list(arguments)))]
