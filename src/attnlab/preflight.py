"""What a launch checks before Hydra writes anything, and the dry run that checks every job.

:func:`preflight` runs in the bootstrap (:func:`attnlab.cli.run_hydra_app`), before Hydra:

1. the command line composes with conf/. Hydra's own messages for an unknown key, a group option
   that does not exist or a ``+`` on a key that does span several lines and exit 1; here each is
   one line that names the key, the closest known keys and the fix (:func:`explain`);
2. the task's first-second checks (``check(cfg, keys)``; for training
   :func:`attnlab.training.task.checked_config`) run on the composed config, so a bad value or a
   refused resume stops before Hydra creates a run folder, a log or a ``.hydra/`` record.

A multirun checks its first job here; every job checks itself when it starts, and one that fails
lets the sweep go on. ``--dry-run`` (:func:`dry_run`) checks every job of a sweep and lists them,
launching nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from attnlab.errors import AttnlabError, ConfigError
from attnlab.runs.resume import override_keys
from attnlab.sweeps.plan import SweepPlan, first_job, plan_sweep

Check = Callable[[DictConfig, list[str]], Any]  # (composed config, the keys the command line sets)

# paths.output_dir is ${hydra:runtime.output_dir}, known once Hydra runs the job; the checks only
# need it to resolve (a resume puts the resumed run's folder there).
UNLAUNCHED = ["++paths.output_dir=${paths.root}/outputs/not-launched"]


@contextlib.contextmanager
def composing(root: Path) -> Iterator[None]:
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        yield


def compose_checked(config_name: str, overrides: Sequence[str], *, hydra: bool = False) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides`` (inside :func:`composing`), or a
    :class:`ConfigError` with one line."""
    try:
        return compose(config_name, overrides=list(overrides), return_hydra_config=hydra)
    except ConfigCompositionException as err:
        raise ConfigError(explain(err, config_name, overrides)) from None


# --------------------------------------------------------------------------------------------
# Hydra's composition errors, in one line
# --------------------------------------------------------------------------------------------


def _keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config container, groups and leaves."""
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        found += [prefix + str(key), *_keys(value, f"{prefix}{key}.")]
    return found


def known_keys(config_name: str, overrides: Sequence[str], leave_out: str) -> list[str]:
    """The keys of the config composed with ``overrides`` but those setting ``leave_out``."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != leave_out]
    try:
        cfg = compose(config_name, overrides=kept, return_hydra_config=leave_out.startswith("hydra."))
    except ConfigCompositionException:  # another bad override: the defaults' keys will do
        cfg = compose(config_name, overrides=[])
    return _keys(OmegaConf.to_container(cfg, resolve=False))


def closest(key: str, known: Sequence[str]) -> str:
    """``; did you mean a or b?`` for the known keys nearest ``key``: the same parent's keys with
    a similar name, else keys elsewhere of that name or a similar one."""
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    matches = [siblings[m] for m in difflib.get_close_matches(leaf, list(siblings), n=3, cutoff=0.6)]
    if not matches:
        matches = difflib.get_close_matches(key, known, n=3, cutoff=0.8)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


def trainer_arguments() -> set[str]:
    """The keyword arguments of ``lightning.Trainer``."""
    import inspect

    import lightning

    return set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}


def _override_of(key: str, overrides: Sequence[str]) -> str:
    return next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), key)


def explain(err: ConfigCompositionException, config_name: str, overrides: Sequence[str]) -> str:
    """One line for a composition error: what is wrong, and the fix."""
    message = str(err).strip()
    if isinstance(err, MissingConfigException):
        group, choice = (re.search(r"Could not find '([^']+)'", message) or [None, ""])[1].rpartition("/")[::2]
        options = re.findall(r"^\t(\S+)$", message.split("Config search path")[0], flags=re.M)
        if group and options:
            return f"{group}={choice} is not an option of {group}; choose from {', '.join(options)} (conf/{group}/)"
    unknown = re.match(r"Could not override '([^']+)'", message)
    if unknown:
        key = unknown[1]
        override = _override_of(key, overrides).lstrip("+")
        leaf = key.rpartition(".")[2]
        if key.startswith("trainer.") and key.count(".") == 1 and leaf in trainer_arguments():
            return (
                f"{key} is a lightning.Trainer argument that conf/trainer does not set; add it with a plus: +{override}"
            )
        hint = closest(key, known_keys(config_name, overrides, key))
        if key.startswith("trainer."):
            return f"{key} is not a key of the config{hint} (nor an argument of lightning.Trainer)"
        return (
            f"{key} is not a key of the config{hint} (--cfg job prints every key; a new key needs a plus: +{override})"
        )
    present = re.match(r"Could not append to config. An item is already at '([^']+)'", message)
    if present:
        override = _override_of(present[1], overrides)
        return f"{present[1]} is already in the config: set it without the plus, {override.lstrip('+')}"
    absent = re.match(r"Could not delete from config. '([^']+)' does not exist", message)
    if absent:
        hint = closest(absent[1], known_keys(config_name, overrides, absent[1]))
        return f"~{absent[1]} deletes a key, but the config has no {absent[1]}{hint}"
    several = re.match(r"Ambiguous value for argument '([^']+)'", message)
    if several:
        key, _, value = several[1].partition("=")
        return (
            f"{several[1]} gives several values: add -m to run one job per value, write a list as {key}=[{value}], "
            f"or quote it as text, {key}=\"'{value}'\""
        )
    return f"{message.splitlines()[0]} (HYDRA_FULL_ERROR=1 shows Hydra's whole message)"


# --------------------------------------------------------------------------------------------
# Before Hydra runs, and the dry run
# --------------------------------------------------------------------------------------------


def preflight(root: Path, config_name: str, argv: Sequence[str], check: Check | None = None) -> None:
    """Raise :class:`ConfigError` (one line) if ``argv`` would fail in its first second."""
    args = get_args_parser().parse_args(list(argv))
    if args.help or args.hydra_help or args.shell_completion:
        return
    if args.multirun and (args.cfg or args.info):
        raise ConfigError(
            "-m launches a sweep and --cfg/--info print one config: to list a sweep's jobs and check each, "
            "use --dry-run in place of --cfg; to see one job's config, drop -m"
        )
    overrides = list(args.overrides)
    inspecting = bool(args.cfg or args.info)  # Hydra prints the config and stops: composing is enough
    if not overrides and (check is None or inspecting):
        return
    job = first_job(overrides) if args.multirun else overrides
    with composing(root):
        cfg = compose_checked(config_name, [*job, *UNLAUNCHED])
    if check is not None and not args.multirun and not inspecting:
        check(cfg, override_keys(job))


def plan(root: Path, config_name: str, argv: Sequence[str]) -> SweepPlan:
    """The jobs ``argv`` launches: one without ``-m``; the sweep's (or its search probes) with it."""
    args = get_args_parser().parse_args(list(argv))
    if not args.multirun:
        return SweepPlan([list(args.overrides)])
    with composing(root):
        composed = compose_checked(config_name, first_job(args.overrides), hydra=True)
    return plan_sweep(OmegaConf.to_container(composed.hydra.sweeper, resolve=False), args.overrides)


def dry_run(root: Path, config_name: str, argv: Sequence[str], check: Check | None = None) -> int:
    """Print the jobs ``argv`` would launch and whether each passes its first-second checks;
    launch nothing. Exit status: 0 when all pass; 2 (one run) or 1 (a sweep) when one would fail."""
    sweep = plan(root, config_name, argv)
    errors: list[str | None] = []
    with composing(root):
        for job in sweep.jobs:
            try:
                cfg = compose_checked(config_name, [*job, *UNLAUNCHED])
                if check is not None:
                    check(cfg, override_keys(job))
                errors.append(None)
            except AttnlabError as err:
                errors.append(str(err))
    print(dry_run_report(sweep, errors))
    if not any(errors):
        return 0
    return 1 if len(sweep.jobs) > 1 or sweep.search else 2


def dry_run_report(sweep: SweepPlan, errors: Sequence[str | None]) -> str:
    n = len(sweep.jobs)
    what = "probe" if sweep.search else "job"
    if sweep.search:
        head = (
            f"dry run: an Optuna search of {sweep.trials} trials; {n} probe{'s' * (n != 1)} reach every choice and "
            "both ends of each interval (nothing is launched)"
        )
    else:
        head = f"dry run: {n} job{'s' * (n != 1)} (nothing is launched)"
    lines = [head]
    swept = sweep.swept if n > 1 else [o.split("=", 1)[0] for o in sweep.jobs[0]]  # one job: show it whole
    common = [o for o in sweep.jobs[0] if o.split("=", 1)[0] not in swept]
    if common:
        lines.append("common to every " + what + ": " + " ".join(common))
    for i, (job, error) in enumerate(zip(sweep.jobs, errors)):
        shown = " ".join(o for o in job if o.split("=", 1)[0] in swept) or "(the defaults)"
        lines.append(f"  {what} {i}  {shown}  " + (f"error: {error}" if error else "ok"))
    failing = sum(e is not None for e in errors)
    lines.append(
        f"{n} {what}{'s' * (n != 1)}: {n - failing} would start, {failing} would fail in the first second"
        if failing
        else f"{n} {what}{'s' * (n != 1)}: all would start"
    )
    return "\n".join(lines)
