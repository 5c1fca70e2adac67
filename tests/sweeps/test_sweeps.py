"""Sweeps and hardware: the configs compose, jobs record themselves, a sweep reports and survives
failed jobs (basic, joblib and Optuna sweepers), and DDP on CPU validates exactly."""

import csv
import json
import logging
import math
import sqlite3
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnlab.data.datamodule import TextDataModule
from attnlab.data.windows import SequentialWindows
from attnlab.errors import ConfigError, DataError
from attnlab.sweeps.multirun import SweepReport
from attnlab.sweeps.report import load_summary, write_report
from attnlab.sweeps.report import main as report_main
from attnlab.system.console import tidy_output
from attnlab.system.distributed import RankZeroLog
from attnlab.system.hardware import best_precision, check_devices
from attnlab.training.lit_gpt import LitGPT
from attnlab.training.task import validate_config
from tests.conftest import ROOT, SEED_SAMPLE, run_train

TINY = ["debug=tiny", "trainer.max_steps=4", "~callbacks.attention", "~callbacks.samples"]


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, accelerator, devices, strategy",
    [
        ("default", "auto", 1, "auto"),
        ("cpu", "cpu", 1, "auto"),
        ("gpu", "gpu", 1, "auto"),
        ("ddp", "gpu", -1, "ddp"),
        ("ddp_cpu", "cpu", 2, "ddp"),
        ("mps", "mps", 1, "auto"),
    ],
)
def test_trainer_configs_compose(compose, name, accelerator, devices, strategy):
    trainer = OmegaConf.to_container(compose(f"trainer={name}").trainer, resolve=True)
    assert (trainer["accelerator"], trainer["devices"], trainer["strategy"]) == (accelerator, devices, strategy)
    assert trainer["num_nodes"] == 1 and trainer["max_steps"] == 1000  # the rest comes from default.yaml
    # no CUDA here: on the CPU bf16 autocast where it has native bf16; elsewhere full precision
    assert trainer["precision"] == (best_precision("cpu") if accelerator in ("auto", "cpu") else "32-true")


def test_precision_and_devices_follow_the_hardware(monkeypatch):
    import attnlab.system.hardware

    monkeypatch.setattr(attnlab.system.hardware, "cpu_has_bf16", lambda: False)
    assert best_precision("cpu") == best_precision("auto") == "32-true"
    monkeypatch.setattr(attnlab.system.hardware, "cpu_has_bf16", lambda: True)  # AVX-512 BF16 or AMX
    assert best_precision("cpu") == best_precision("auto") == "bf16-mixed"
    assert best_precision("mps") == "32-true"
    monkeypatch.setattr(attnlab.system.hardware, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert best_precision("gpu") == best_precision("auto") == "bf16-mixed"
    assert best_precision("cpu") == best_precision("mps") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert best_precision("gpu") == "16-mixed"  # pre-Ampere

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_devices({"accelerator": "gpu", "devices": 2})
    with pytest.raises(ConfigError, match=r"trainer.devices=4 but only 2 GPU\(s\) are visible"):
        check_devices({"accelerator": "gpu", "devices": 4})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match="no CUDA GPU.*use trainer=cpu"):
        check_devices({"accelerator": "gpu", "devices": 1})
    with pytest.raises(ConfigError, match="num_nodes must be a positive integer"):
        check_devices({"accelerator": "cpu", "num_nodes": 0})


def test_gpu_trainer_without_a_gpu_fails_in_one_line(compose):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        validate_config(compose("trainer=gpu"))


@pytest.mark.parametrize(
    "name, swept",
    [
        ("heads", {"model.num_heads"}),
        ("depth", {"model.num_layers"}),
        ("context", {"data.context_length"}),
        ("shape", {"model.d_model", "model.num_heads", "data.context_length"}),
    ],
)
def test_named_sweeps_compose(compose_with_hydra, name, swept):
    cfg = compose_with_hydra(f"sweep={name}")
    params = cfg.hydra.sweeper.params
    assert set(params) == swept
    assert all("," in str(v) for v in params.values())  # each a list of values
    assert cfg.model.d_model == 128  # nothing else changed


def test_optuna_search_composes(compose_with_hydra, tmp_path):
    cfg = compose_with_hydra("hparams_search=optuna", "seed=7")
    sweeper = cfg.hydra.sweeper
    assert "Optuna" in sweeper._target_ and sweeper.direction == "minimize"
    assert sweeper.storage == f"sqlite:///{ROOT}/outputs/optuna/attnlab.db"
    assert "TPE" in sweeper.sampler._target_
    assert {"optim.lr", "model.d_model", "model.num_heads"} <= set(sweeper.params)
    moved = compose_with_hydra("hparams_search=optuna", "seed=7", f"hydra.sweeper.storage=sqlite:///{tmp_path}/s.db")
    assert moved.hydra.sweeper.storage == f"sqlite:///{tmp_path}/s.db"
    assert moved.hydra.sweeper.sampler.seed == 7  # a new study: the seed (tests/sweeps/test_study.py: a resumed one)


def test_launchers_compose(compose_with_hydra):
    slurm = compose_with_hydra(
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=30",
    ).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.partition == "gpu" and slurm.timeout_min == 30
    assert (slurm.nodes, slurm.gpus_per_node, slurm.tasks_per_node) == (2, 4, 4)
    joblib = compose_with_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2


def test_slurm_needs_a_number_of_gpus(compose_with_hydra, capsys):
    cfg = compose_with_hydra("hydra/launcher=slurm", "trainer=ddp")  # devices: -1 (all visible)
    with pytest.raises(SystemExit) as exit_info:
        SweepReport().on_multirun_start(config=cfg)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: hydra/launcher=slurm needs the GPUs per node as a number, got trainer.devices=-1; "
        "set trainer.devices=8 (for example)"
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _job(sweep, n, overrides, status=None, **metrics):
    folder = sweep / str(n)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status is not None:
        record = {
            "status": status,
            "overrides": overrides,
            "seconds": 75.5,
            "metrics": metrics,
            "error": "model.d_model=30 is not divisible by model.num_heads=4" if status == "failed" else None,
        }
        (folder / "metrics.json").write_text(json.dumps(record))


def test_report_of_an_interrupted_sweep(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    common = ["trainer.max_steps=100"]
    _job(
        sweep,
        0,
        common + ["model.d_model=64", "model.num_heads=2"],
        "ok",
        **{"val/loss": 5.0, "val/bpb": 2.5, "model/num_parameters": 1000, "train/tokens_per_sec": 4600.4, "steps": 100},
    )
    _job(
        sweep,
        1,
        common + ["model.d_model=128", "model.num_heads=2"],
        "ok",
        **{"val/loss": 4.8, "val/bpb": 2.4, "model/num_parameters": 3000, "train/tokens_per_sec": 3000.0, "steps": 100},
    )
    _job(sweep, 2, common + ["model.d_model=30", "model.num_heads=4"], "failed")
    _job(sweep, 10, common + ["model.d_model=128", "model.num_heads=4"])  # started, never finished
    (sweep / "not_a_job").mkdir()

    assert report_main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert "4 jobs: 2 ok, 1 failed, 1 unfinished." in printed and str(sweep / "summary.png") in printed

    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]  # numeric order
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "unfinished"]
    assert [r["model.d_model"] for r in rows] == ["64", "128", "30", "128"]  # a column per swept parameter
    assert "trainer.max_steps" not in rows[0]  # the same in every job: not swept
    assert rows[1]["val/bpb"] == "2.4" and rows[1]["num_parameters"] == "3000" and rows[1]["wall_seconds"] == "75.5"
    assert rows[2]["error"].startswith("model.d_model=30 is not divisible") and rows[2]["val/bpb"] == ""

    md = (sweep / "summary.md").read_text()
    assert "Best val/bpb 2.4000: job 1 (`model.d_model=128 model.num_heads=2`)." in md
    assert "Common to every job: `trainer.max_steps=100`." in md
    assert "| 1 | `model.d_model=128 model.num_heads=2` | 3,000 | 4.8000 | **2.4000** | 3,000 | 1m15s | ok |" in md
    assert "- job 2 (`model.d_model=30 model.num_heads=4`): model.d_model=30 is not divisible" in md
    png = Image.open(sweep / "summary.png")
    assert png.format == "PNG" and png.size[0] >= 2 * png.size[1]  # one panel per swept parameter, side by side

    summary = load_summary(sweep)
    assert summary.swept == ["model.d_model", "model.num_heads"] and summary.failed == 1


def test_report_shows_the_head_figures_of_the_jobs_that_have_them(tmp_path):
    sweep = tmp_path / "sweep"
    heads = {"heads/max/induction": 0.4321, "heads/mean_entropy/layer_0": 1.25, "heads/in_context": -0.75}
    _job(sweep, 0, ["model.num_heads=2"], "ok", **{"val/bpb": 2.5, "steps": 100}, **heads)
    _job(sweep, 1, ["model.num_heads=4"], "ok", **{"val/bpb": 2.4, "steps": 100})  # a run without callbacks.heads
    write_report(sweep)

    md = (sweep / "summary.md").read_text()
    assert "| wall time | max induction | in_context | status |" in md
    assert "| 1m15s | 0.432 | -0.750 | ok |" in md and "| 1m15s |  |  | ok |" in md
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert list(rows[0])[-4:] == ["heads/in_context", "heads/max/induction", "heads/mean_entropy/layer_0", "error"]
    assert rows[0]["heads/mean_entropy/layer_0"] == "1.25" and rows[1]["heads/max/induction"] == ""

    _job(tmp_path / "plain", 0, ["model.num_heads=2"], "ok", **{"val/bpb": 2.5})
    write_report(tmp_path / "plain")  # no job has them: no such columns
    assert "induction" not in (tmp_path / "plain" / "summary.md").read_text()
    assert "heads/" not in (tmp_path / "plain" / "summary.csv").read_text()


def test_report_needs_a_sweep_folder(tmp_path, capsys):
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            report_main([str(path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "outputs/multirun/<date>/<time>" in err


def test_multirun_end_exits_non_zero_only_if_a_job_failed(tmp_path):
    sweep = tmp_path / "sweep"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    _job(sweep, 0, ["model.num_heads=2"], "ok", **{"val/bpb": 2.5})
    _job(sweep, 1, ["model.num_heads=4"], "ok", **{"val/bpb": 2.4})
    SweepReport().on_multirun_end(config=config)  # returns: exit status 0
    assert (sweep / "summary.md").is_file()
    _job(sweep, 2, ["model.num_heads=3"], "failed")
    with pytest.raises(SystemExit) as exit_info:
        SweepReport().on_multirun_end(config=config)
    assert exit_info.value.code == 1
    assert "3 jobs: 2 ok, 1 failed." in (sweep / "summary.md").read_text()


# --------------------------------------------------------------------------------------------
# DDP data
# --------------------------------------------------------------------------------------------


def test_validation_windows_are_split_across_ranks_without_repeats(tmp_path):
    def loaders(rank, world_size):
        dm = TextDataModule(
            context_length=4,
            batch_size=2,
            tokenizer={"kind": "tiktoken"},
            path=str(SEED_SAMPLE),
            cache_dir=str(tmp_path),
            val_fraction=0.5,
            seed=0,
        )
        dm.setup("fit")
        dm.trainer = SimpleNamespace(
            world_size=world_size,
            global_rank=rank,
            max_steps=3,
            accumulate_grad_batches=1,
            global_step=0,
            strategy=SimpleNamespace(root_device=torch.device("cpu")),
        )
        return dm.val_dataloader(), dm.train_dataloader()

    single, _ = loaders(0, 1)
    everything = torch.cat([x for x, _ in single])  # (N, T): every window once
    shards = [loaders(rank, 3) for rank in range(3)]
    seen = torch.cat([x for val, _ in shards for x, _ in val])
    assert len(seen) == len(everything) == 9  # no padding, no repeats
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, everything.tolist()))
    first_batches = [next(iter(train))[0] for _, train in shards]
    assert not torch.equal(first_batches[0], first_batches[1])  # each rank its own training windows

    with pytest.raises(DataError, match="fewer than the 10 processes"):
        loaders(0, 10)[0]


# --------------------------------------------------------------------------------------------
# Real multiruns
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_sweep_with_an_invalid_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "trainer.log_every_n_steps=10",  # more than the 4 steps: tokens/s comes from the last step's log
        "model.num_heads=2,3",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 1, result.stderr[-3000:]  # a job failed: non-zero, at the end
    message = "error: model.d_model=32 is not divisible by model.num_heads=3"
    assert message in result.stderr + result.stdout  # on the console ...
    assert message in (sweep / "1" / "train.log").read_text()  # ... and in the job's folder
    assert "Traceback" not in result.stderr

    ok, failed = (json.loads((sweep / n / "metrics.json").read_text()) for n in ("0", "1"))
    assert ok["status"] == "ok" and "model.num_heads=2" in ok["overrides"]  # the other job ran
    assert math.isfinite(ok["metrics"]["val/bpb"]) and ok["metrics"]["model/num_parameters"] > 0
    assert ok["metrics"]["train/tokens_per_sec"] > 0 and ok["seconds"] > 0
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    assert failed["status"] == "failed" and failed["error"].startswith("model.d_model=32 is not divisible")
    assert not (sweep / "1" / "checkpoints").exists()

    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["model.num_heads"], r["status"]) for r in rows] == [("2", "ok"), ("3", "failed")]
    assert float(rows[0]["tokens_per_sec"]) == pytest.approx(ok["metrics"]["train/tokens_per_sec"])
    md = (sweep / "summary.md").read_text()
    assert "2 jobs: 1 ok, 1 failed." in md
    assert f"| {ok['metrics']['train/tokens_per_sec']:,.0f} |" in md  # the tokens/s column
    assert Image.open(sweep / "summary.png").format == "PNG"


@pytest.mark.slow
def test_optuna_search_survives_a_failed_trial_and_resumes(tmp_path):
    storage = tmp_path / "study.db"
    search = [
        "hparams_search=optuna",
        "hydra/sweeper/sampler=random",
        f"hydra.sweeper.storage=sqlite:///{storage}",
        "model.num_heads=choice(2,3)",  # 3 does not divide d_model=32
        "data.context_length=16",
        "optim.lr=0.002",
        "model.num_layers=1",
        "model.d_model=32",
        *TINY,  # fixed: not searched
        "hydra.sweeper.n_trials=1",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]

    def trials():
        with sqlite3.connect(storage) as db:
            return db.execute(
                "SELECT t.state, v.value FROM trials t LEFT JOIN trial_values v "
                "ON v.trial_id = t.trial_id ORDER BY t.number"
            ).fetchall()

    # the random sampler's first draw is num_heads=3 with seed 0, and 2 with seed 2
    first = run_train("-m", *search, "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={tmp_path / 'a'}")
    assert first.returncode == 1, first.stderr[-3000:]  # the trial failed; the study did not crash
    assert trials() == [("COMPLETE", math.inf)]  # told to Optuna as +inf, the worst value
    assert json.loads((tmp_path / "a" / "0" / "metrics.json").read_text())["status"] == "failed"

    again = run_train("-m", *search, "hydra.sweeper.sampler.seed=2", f"hydra.sweep.dir={tmp_path / 'b'}")
    assert again.returncode == 0, again.stderr[-3000:]  # every job of this sweep succeeded
    rows = trials()
    assert len(rows) == 2 and rows[0] == ("COMPLETE", math.inf)  # the same study, resumed from its SQLite file
    record = json.loads((tmp_path / "b" / "0" / "metrics.json").read_text())
    assert record["status"] == "ok" and rows[1] == ("COMPLETE", pytest.approx(record["metrics"]["val/bpb"]))
    results = yaml.safe_load((tmp_path / "b" / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"model.num_heads": 2} and math.isfinite(results["best_value"])


@pytest.mark.slow
def test_ddp_cpu_run_is_one_folder_with_exact_validation(tmp_path, compose):
    before = sorted((ROOT / "outputs").iterdir())
    run_dir = tmp_path / "run"
    overrides = [
        *TINY,
        "model.num_heads=2",
        "data.val_fraction=0.5",
        "data.context_length=8",
        f"data.cache_dir={tmp_path / 'cache'}",
        "trainer.precision=32-true",
    ]  # exact: no bf16 rounding
    result = run_train("trainer=ddp_cpu", *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    final = [line for line in result.stdout.splitlines() if line.startswith("run ")]
    assert len(final) == 1 and "(4 steps" in final[0]  # one final line, from rank zero

    # one run folder, written by rank zero only: no rank-1 log, .hydra record or checkpoint copies
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra",
        ".lock",  # the run lock (attnlab.runs.lock), taken by rank zero only
        "checkpoints",
        "config.yaml",
        "metrics.json",
        "model_summary.txt",
        "tensorboard",
        "train.log",
    ]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1
    log = (run_dir / "train.log").read_text()
    assert log.count("run folder") == 1 and "GLOBAL_RANK: 0" in log and "GLOBAL_RANK: 1" not in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]
    assert sorted((ROOT / "outputs").iterdir()) == before  # no stray folder from rank 1

    # the 2-process validation equals a single-process one on the same (final) weights
    record = json.loads((run_dir / "metrics.json").read_text())
    # the heads callback ran on rank zero alone, once, and the other rank went on without waiting for it
    assert {"heads/max/induction", "heads/in_context"} <= set(record["metrics"])
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("heads/in_context")] == [3]
    cfg = compose(*overrides)
    datamodule = TextDataModule.from_config(cfg)
    datamodule.setup("fit")
    assert len(SequentialWindows(datamodule.val_ids, 8)) == 5  # split 3 + 2 across the ranks
    module = LitGPT.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    tidy_output()  # as train.py runs: without warnings that do not apply
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    (single,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    for name in ("val/loss", "val/bpb"):
        assert single[name] == pytest.approx(record["metrics"][name], rel=1e-6)


def test_ranks_started_by_slurm_leave_the_log_file_to_rank_zero(tmp_path, monkeypatch):
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "train.log")
    root.addHandler(handler)
    try:
        monkeypatch.setenv("SLURM_PROCID", "0")
        RankZeroLog().on_job_start()
        assert handler in root.handlers
        monkeypatch.setenv("SLURM_PROCID", "3")
        RankZeroLog().on_job_start()
        assert handler not in root.handlers
    finally:
        root.removeHandler(handler)
        handler.close()
