"""A sweep's report, rebuilt from its job folders: summary.csv, summary.md and summary.png.

Each job folder ``<sweep>/<n>/`` (``n``: Hydra's job number, ``hydra.sweep.subdir``) holds ``metrics.json`` (written by the job when it ends, see
:mod:`attnlab.sweeps.job`) and Hydra's ``.hydra/overrides.yaml`` (written when it starts). A folder
with only the latter is a job that has not finished: still running, or interrupted. So the
report of a sweep that was stopped halfway shows what finished and what did not. The sweep of an
Optuna study kept in a storage also names it (``optuna_study.json``, :mod:`attnlab.sweeps.study`):
the report adds the study's best trial so far, from every call, with all of its overrides.

``attnlab report <sweep dir>`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attnlab.errors import ConfigError, DataError, user_errors
from attnlab.runs.atomic import atomic_path, atomic_write_text
from attnlab.runs.layout import HYDRA_DIR, HYDRA_OVERRIDES, JOB_RECORD
from attnlab.sweeps.job import OBJECTIVE
from attnlab.sweeps.study import StudyBest, read_study

STATUSES = ("ok", "failed", "preempted", "unfinished")


@dataclass
class Job:
    name: str  # the job's folder name (Hydra's job number)
    status: str  # ok | failed | preempted | unfinished
    overrides: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    error: str | None = None

    @property
    def params(self) -> dict[str, str]:
        """``{"model.d_model": "64", ...}`` from overrides ``model.d_model=64``."""
        return dict(override.partition("=")[::2] for override in self.overrides)

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return float(value) if value is not None else None


@dataclass
class Summary:
    sweep_dir: Path
    jobs: list[Job]
    swept: list[str]  # override keys whose value differs between jobs
    common: list[str]  # overrides every job shares
    study: StudyBest | None = None  # the Optuna study the sweep added to, if it is kept in a storage

    @property
    def failed(self) -> int:
        return sum(job.status == "failed" for job in self.jobs)

    def best(self) -> Job | None:
        scored = [j for j in self.jobs if j.status == "ok" and _finite(j.metric(OBJECTIVE))]
        return min(scored, key=lambda j: j.metric(OBJECTIVE)) if scored else None

    def counts_line(self) -> str:
        counts = ", ".join(
            f"{sum(j.status == s for j in self.jobs)} {s}" for s in STATUSES if any(j.status == s for j in self.jobs)
        )
        return f"{len(self.jobs)} job{'s' * (len(self.jobs) != 1)}" + (f": {counts}" if counts else "")

    def swept_overrides(self, job: Job) -> str:
        params = job.params
        return " ".join(f"{k}={params[k]}" for k in self.swept if k in params)

    def head_figures(self) -> list[str]:
        """The per-head figures (``heads/...``) any job's metrics hold, sorted."""
        return sorted({name for job in self.jobs for name in job.metrics if name.startswith(HEAD_FIGURES)})

    def columns(self) -> list[str]:
        """summary.md's figure columns: :data:`COLUMNS`, then those of :data:`HEAD_COLUMNS` some job has."""
        found = self.head_figures()
        return [*COLUMNS, *(column for column, name in HEAD_COLUMNS.items() if name in found)]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# Reading the job folders
# --------------------------------------------------------------------------------------------


def read_job(folder: Path) -> Job | None:
    """The job in ``folder``, or None when the folder is not a job's."""
    record_path, overrides_path = folder / JOB_RECORD, folder / HYDRA_DIR / HYDRA_OVERRIDES
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(
                f"{record_path} is not a job record ({err}); delete it to list the job as unfinished"
            ) from err
        return Job(
            folder.name,
            record["status"],
            list(record.get("overrides") or []),
            record.get("metrics") or {},
            record.get("seconds"),
            record.get("error"),
        )
    if overrides_path.is_file():
        overrides = yaml.safe_load(overrides_path.read_text(encoding="utf-8")) or []
        return Job(folder.name, "unfinished", [str(o) for o in overrides])
    return None


def load_summary(sweep_dir: str | Path) -> Summary:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(
            f"no sweep folder at {sweep_dir}; pass the folder a multirun wrote, e.g. outputs/multirun/<date>/<time>"
        )
    folders = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    jobs = [job for job in map(read_job, folders) if job is not None]
    if not jobs:
        raise ConfigError(
            f"{sweep_dir} holds no job folders (<n>/.hydra/ or <n>/{JOB_RECORD}, n = the job number); "
            "pass a sweep folder, e.g. outputs/multirun/<date>/<time>"
        )
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.params if k not in keys]
    swept = [k for k in keys if len({job.params.get(k) for job in jobs}) > 1]
    common = [f"{k}={jobs[0].params[k]}" for k in keys if k not in swept]
    return Summary(sweep_dir, jobs, swept, common, read_study(sweep_dir))


# --------------------------------------------------------------------------------------------
# Writing the report
# --------------------------------------------------------------------------------------------

COLUMNS = ("parameters", "val/loss", "val/bpb", "tokens/s", "wall time")
# the per-head figures of a run with callbacks.heads (attnlab.observe.head_scores): every one in
# summary.csv, these two in summary.md
HEAD_FIGURES = "heads/"
HEAD_COLUMNS = {"max induction": "heads/max/induction", "in_context": "heads/in_context"}


def _cells(job: Job) -> dict[str, str]:
    """The table's figures for one job, formatted; blank where the job has none."""

    def fmt(value: float | None, spec: str) -> str:
        return format(value, spec) if _finite(value) else ""

    seconds = job.seconds
    if seconds is None:
        wall = ""
    elif seconds < 60:
        wall = f"{seconds:.1f}s"
    else:
        wall = f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"
    return {
        "parameters": fmt(job.metric("model/num_parameters"), ",.0f"),
        "val/loss": fmt(job.metric("val/loss"), ".4f"),
        "val/bpb": fmt(job.metric("val/bpb"), ".4f"),
        "tokens/s": fmt(job.metric("train/tokens_per_sec"), ",.0f"),
        "wall time": wall,
        **{column: fmt(job.metric(name), ".3f") for column, name in HEAD_COLUMNS.items()},
    }


def summary_csv(summary: Summary) -> str:
    """One row per job, unformatted figures; every swept parameter and every per-head figure
    (``heads/...``, of runs with ``callbacks.heads``) also has a column of its own."""

    def number(value: float | None, cast=float) -> Any:
        return "" if value is None else cast(value)

    heads = summary.head_figures()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "job",
            "status",
            "overrides",
            *summary.swept,
            "num_parameters",
            "val/loss",
            "val/bpb",
            "tokens_per_sec",
            "wall_seconds",
            "steps",
            *heads,
            "error",
        ]
    )
    for job in summary.jobs:
        params = job.params
        writer.writerow(
            [
                job.name,
                job.status,
                " ".join(job.overrides),
                *(params.get(k, "") for k in summary.swept),
                number(job.metric("model/num_parameters"), int),
                number(job.metric("val/loss")),
                number(job.metric("val/bpb")),
                number(job.metric("train/tokens_per_sec")),
                number(job.seconds),
                number(job.metric("steps"), int),
                *(number(job.metric(name)) for name in heads),
                job.error or "",
            ]
        )
    return out.getvalue()


def summary_md(summary: Summary) -> str:
    def code(text: str) -> str:
        return f"`{text}`" if text else ""

    lines = [f"# Sweep {summary.sweep_dir}", "", summary.counts_line() + "."]
    best = summary.best()
    if best is not None:
        lines.append(
            f"Best {OBJECTIVE} {best.metric(OBJECTIVE):.4f}: job {best.name} "
            f"({code(summary.swept_overrides(best)) or 'no swept parameters'})."
        )
    if summary.common:
        lines.append(f"Common to every job: {code(' '.join(summary.common))}.")
    columns = summary.columns()
    lines += [
        "",
        "| job | overrides | " + " | ".join(columns) + " | status |",
        "| ---: | --- | " + " | ".join("---:" for _ in columns) + " | --- |",
    ]
    for job in summary.jobs:
        cells = _cells(job)
        if job is best:
            cells[OBJECTIVE] = f"**{cells[OBJECTIVE]}**"
        lines.append(
            f"| {job.name} | {code(summary.swept_overrides(job))} | "
            + " | ".join(cells[c] for c in columns)
            + f" | {job.status} |"
        )
    if summary.study is not None:
        lines += ["", *summary.study.markdown()]
    failed = [job for job in summary.jobs if job.status == "failed"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- job {job.name} ({code(summary.swept_overrides(job))}): {job.error}" for job in failed]
    lines += ["", f"![{OBJECTIVE} against each swept parameter](summary.png)", ""]
    return "\n".join(lines)


def _positions(raw: Sequence[str], ax) -> list[float]:
    """x positions of the values ``raw`` on ``ax``. A few distinct values (a grid sweep's) are
    evenly spaced, in numeric order when they are numbers, labelled as written; many numbers (a
    search's) go on a numeric axis, logarithmic when they span 8x or more."""
    try:
        numbers = [float(v) for v in raw]
    except ValueError:
        numbers = None
    distinct = list(dict.fromkeys(raw))
    if numbers is None or len(distinct) <= 8:
        if numbers is not None:
            distinct.sort(key=float)
        ax.set_xticks(range(len(distinct)), distinct)
        ax.set_xlim(-0.5, len(distinct) - 0.5)
        return [float(distinct.index(v)) for v in raw]
    if min(numbers) > 0 and max(numbers) / min(numbers) >= 8:
        ax.set_xscale("log")
    return numbers


def summary_png(summary: Summary, path: Path) -> None:
    """``val/bpb`` against each swept parameter, one panel each: every finished job a dot, the
    best job at each value joined by a line, failed jobs a red x on the axis. Without swept
    parameters: ``val/bpb`` per job."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [j for j in summary.jobs if j.status == "ok" and _finite(j.metric(OBJECTIVE))]
    failed = [j for j in summary.jobs if j.status == "failed"]
    keys = summary.swept or ["job"]
    fig = Figure(figsize=(max(4.2 * len(keys), 5.0), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        ax.set_xlabel(key)
        ax.set_ylabel(OBJECTIVE if i == 0 else "")
        ax.grid(True, alpha=0.3)
        shown = [j for j in done + failed if key == "job" or key in j.params]
        if not shown:
            ax.text(0.5, 0.5, "no finished job", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = _positions([j.name if key == "job" else j.params[key] for j in shown], ax)
        points = [(x, j.metric(OBJECTIVE)) for x, j in zip(xs, shown) if j in done]
        if points:
            ax.scatter(*zip(*points), s=24, alpha=0.7, zorder=3)
            best_at = {x: min(y for xx, y in points if xx == x) for x, _ in points}
            line_x = sorted(best_at)
            ax.plot(line_x, [best_at[x] for x in line_x], lw=1, alpha=0.8)
        fails = [x for x, j in zip(xs, shown) if j in failed]
        if fails:  # at the bottom edge, whatever the y scale
            ax.margins(y=0.15)  # room below the dots
            ax.scatter(
                fails,
                [0.04] * len(fails),
                marker="x",
                color="tab:red",
                transform=ax.get_xaxis_transform(),
                zorder=4,
                label="failed",
            )
            ax.update_datalim([(x, 0.0) for x in fails], updatey=False)  # a numeric x axis must reach them
            ax.autoscale_view()
            ax.legend(loc="upper right", fontsize=8)
    left_out = len(summary.jobs) - len(done) - len(failed)
    title = f"{OBJECTIVE} of {len(done)} finished job{'s' * (len(done) != 1)}; line: best at each value"
    fig.suptitle(title + (f"; {left_out} unfinished not shown" if left_out else ""), fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_report(sweep_dir: str | Path) -> Summary:
    """Write summary.csv, summary.md and summary.png into ``sweep_dir``; return what they show."""
    summary = load_summary(sweep_dir)
    atomic_write_text(summary.sweep_dir / "summary.csv", summary_csv(summary))
    atomic_write_text(summary.sweep_dir / "summary.md", summary_md(summary))
    summary_png(summary, summary.sweep_dir / "summary.png")
    return summary


def argument_parser() -> argparse.ArgumentParser:
    """``attnlab report``'s command line."""
    parser = argparse.ArgumentParser(
        prog="attnlab report",
        description="Rebuild a sweep's summary.csv, summary.md and summary.png from its job folders.",
    )
    parser.add_argument("sweep_dir", help="the sweep folder, e.g. outputs/multirun/2026-11-22/10-00-00")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    with user_errors():
        summary = write_report(args.sweep_dir)
        print(summary_md(summary).rsplit("\n![", 1)[0])
        for name in ("summary.csv", "summary.md", "summary.png"):
            print(summary.sweep_dir / name)
    return 0
