"""What a run folder holds, and where: the one place these names are spelled (no torch, no Lightning).

    <run>/
      .lock                    held by the process training in the folder (attnlab.runs.lock)
      config.yaml              the resolved config; resume=<run> reads it back
      .hydra/                  Hydra's record of each launch (overrides.yaml: its overrides;
                               .hydra/resume-<date>_<time>/ for a resume)
      train.log                the log (Hydra's, named after hydra.job.name)
      metrics.json             the job record: overrides, status, final metrics, wall time
      model_summary.txt        parameters per module
      tensorboard/             TensorBoard events
      checkpoints/best.ckpt    the lowest val/loss so far
      checkpoints/last.ckpt    the latest training state, to resume from
      eval/<ckpt>-<data>.json  figures written by ``attnlab eval``
      attention/<date>_<time>/ PNG maps written by a call of ``attnlab attend``
      heads/                   the head report of ``attnlab heads`` (heads.json, .csv, .md, PNGs)

conf/callbacks/default.yaml and conf/logger/ name the checkpoint and TensorBoard folders for
Lightning; a test checks that they agree with the names here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from attnlab.errors import CheckpointError

LOCK_FILE = ".lock"  # one writer per run folder (attnlab.runs.lock)
CONFIG_FILE = "config.yaml"
HYDRA_DIR = ".hydra"
HYDRA_OVERRIDES = "overrides.yaml"  # Hydra's record of a launch's command-line overrides
RESUME_RECORD = "resume-"  # .hydra/resume-<date>_<time>/: the record of a resume
JOB_RECORD = "metrics.json"
MODEL_SUMMARY = "model_summary.txt"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"
BEST = "best"  # checkpoint file stems, as ModelCheckpoint / LastCheckpoint take them
LAST = "last"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/{LAST}.ckpt"  # relative to the run folder, as error lines show it
EVAL_DIR = "eval"
ATTENTION_DIR = "attention"
HEADS_DIR = "heads"
STAMP = "%Y-%m-%d_%H-%M-%S"  # <date>_<time> in the names above


def config_file(run: Path) -> Path:
    return Path(run) / CONFIG_FILE


def job_record(run: Path) -> Path:
    return Path(run) / JOB_RECORD


def checkpoint_file(run: Path, stem: str) -> Path:
    """``<run>/checkpoints/<stem>.ckpt`` (stem: :data:`BEST` or :data:`LAST`)."""
    return Path(run) / CHECKPOINT_DIR / f"{stem}.ckpt"


def last_checkpoint(run: Path) -> Path:
    return Path(run) / LAST_CHECKPOINT


def attention_dir(run: Path, when: datetime, n: int = 1) -> Path:
    """``<run>/attention/<date>_<time>/``: the maps of the ``attnlab attend`` call at ``when``;
    ``<date>_<time>-<n>/`` for the n-th call in that second (the names sort in call order)."""
    return Path(run) / ATTENTION_DIR / (f"{when:{STAMP}}" + (f"-{n}" if n > 1 else ""))


def resume_record(when: datetime) -> str:
    """``.hydra/resume-<date>_<time>``, relative to the run: where Hydra records a resume at ``when``."""
    return f"{HYDRA_DIR}/{RESUME_RECORD}{when:{STAMP}}"


def launch_records(run: Path) -> list[Path]:
    """Hydra's record of the overrides of each launch of ``run``, oldest first: the launch that
    started it (``.hydra/overrides.yaml``), then each resume (``.hydra/resume-<date>_<time>/overrides.yaml``)."""
    hydra = Path(run) / HYDRA_DIR
    records = [hydra / HYDRA_OVERRIDES, *sorted(hydra.glob(f"{RESUME_RECORD}*/{HYDRA_OVERRIDES}"))]
    return [record for record in records if record.is_file()]


def run_of_checkpoint(ckpt: Path) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` -> ``<run>``)."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == CHECKPOINT_DIR else ckpt.parent


def saved_run(ckpt: Path) -> Path | None:
    """The run folder ``ckpt`` belongs to, if it is one (it has a ``config.yaml``)."""
    run = run_of_checkpoint(ckpt)
    return run if config_file(run).is_file() else None


def find_checkpoint(path: str | Path | None) -> Path:
    """A checkpoint file from a file path or a run folder (its ``best.ckpt``, else ``last.ckpt``)."""
    if path is None or str(path) in ("", "???"):  # ??? is Hydra's "mandatory, not set"
        raise CheckpointError("no model given; pass ckpt_path=<run folder or .ckpt file>")
    p = Path(path).expanduser()
    if p.is_dir():
        for stem in (BEST, LAST):
            if checkpoint_file(p, stem).is_file():
                return checkpoint_file(p, stem)
        raise CheckpointError(
            f"no {CHECKPOINT_DIR}/{BEST}.ckpt or {LAST_CHECKPOINT} in {p}; pass a run folder or a .ckpt file"
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a run folder or a .ckpt file")
    return p
