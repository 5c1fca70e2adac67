"""Before Hydra runs: Hydra's composition errors as one line, the first-second checks (a refused
resume writes nothing), and ``--dry-run``, which lists and checks a sweep's jobs."""

from __future__ import annotations

import os

import pytest

from attnlab.cli import run_hydra_app
from attnlab.errors import AttnlabError
from attnlab.preflight import preflight
from attnlab.sweeps.plan import first_job, grid_jobs, search_probes, sweeper_overrides
from attnlab.training.task import checked_config
from tests.conftest import ROOT, SEED_SAMPLE, run_train


def refused(*argv: str) -> str:
    with pytest.raises(AttnlabError) as err:
        preflight(ROOT, "config", list(argv), checked_config)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["trainer.foo=1"], "trainer.foo is not a key of the config (nor an argument of lightning.Trainer)"),
        (["trainer.max_step=9"], "trainer.max_step is not a key of the config; did you mean trainer.max_steps"),
        (
            ["trainer.detect_anomaly=true"],
            "trainer.detect_anomaly is a lightning.Trainer argument that conf/trainer does not set; "
            "add it with a plus: +trainer.detect_anomaly=true",
        ),
        (["model.num_head=2"], "model.num_head is not a key of the config; did you mean model.num_heads?"),
        (["-m", "debug=tiny", "model.num_head=1,2"], "model.num_head is not a key of the config; did you mean"),
        (["model=gtp"], "model=gtp is not an option of model; choose from gpt, transformer (conf/model/)"),
        (["+model.d_model=64"], "model.d_model is already in the config: set it without the plus, model.d_model=64"),
        (
            ["~model.dropot"],
            "~model.dropot deletes a key, but the config has no model.dropot; did you mean model.dropout?",
        ),
        (["trainer.max_steps=1,2"], "trainer.max_steps=1,2 gives several values: add -m to run one job per value"),
        (["-m", "--cfg", "job"], "-m launches a sweep and --cfg/--info print one config"),
        (["data.path=/no/such/file.txt"], "data.path '/no/such/file.txt' does not exist"),
        (["model.d_model=30", "model.num_heads=4"], "model.d_model=30 is not divisible by model.num_heads=4"),
    ],
)
def test_a_mistake_is_one_line_that_names_the_key_and_the_fix(argv, expected):
    assert refused(*argv).startswith(expected)


def test_what_composes_and_checks_passes():
    preflight(ROOT, "config", ["debug=tiny", "+trainer.detect_anomaly=true"], checked_config)
    preflight(ROOT, "config", ["-m", "sweep=heads", "model.d_model=64,128"], checked_config)
    preflight(ROOT, "config", ["--cfg", "job", "model.num_heads=8"], checked_config)
    preflight(ROOT, "config", ["--help"], checked_config)


@pytest.mark.parametrize(
    ("override", "error"),
    [("trainer.foo=1", "trainer.foo is not a key of the config"), ("data.path=/no/such.txt", "data.path '/no/such")],
)
def test_bad_input_exits_2_with_one_line_and_creates_no_run_folder(tmp_path, capsys, override, error):
    run_dir = tmp_path / "run"

    def never(cfg):
        raise AssertionError("the task ran")

    with pytest.raises(SystemExit) as exit_:
        run_hydra_app("config", never, [f"hydra.run.dir={run_dir}", override], check=checked_config)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {error}") and err.count("\n") == 1  # no log lines before it
    assert not run_dir.exists()


# --------------------------------------------------------------------------------------------
# The jobs of a sweep, and the dry run
# --------------------------------------------------------------------------------------------


def test_grid_jobs_are_hydras_grid_with_later_values_replacing_earlier_ones():
    overrides = sweeper_overrides({"model.num_heads": "1,2"}, ["model.d_model=32,64", "model.num_heads=4,8"])
    assert grid_jobs(overrides) == [
        ["model.num_heads=4", "model.d_model=32"],
        ["model.num_heads=4", "model.d_model=64"],
        ["model.num_heads=8", "model.d_model=32"],
        ["model.num_heads=8", "model.d_model=64"],
    ]


def test_search_probes_reach_every_choice_and_both_ends_of_each_interval():
    overrides = sweeper_overrides(
        {"optim.lr": "tag(log, interval(1e-4, 1e-2))", "model.num_layers": "range(2, 5)"}, ["model.d_model=64"]
    )
    assert search_probes(overrides) == [
        ["optim.lr=0.0001", "model.num_layers=2", "model.d_model=64"],
        ["optim.lr=0.01", "model.num_layers=2", "model.d_model=64"],
        ["optim.lr=0.0001", "model.num_layers=3", "model.d_model=64"],
        ["optim.lr=0.0001", "model.num_layers=4", "model.d_model=64"],
    ]
    assert first_job(["model.d_model=64,128", "seed=3"]) == ["model.d_model=64", "seed=3"]


def dry_run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run_hydra_app("config", None, [*argv, "--dry-run"], check=checked_config)
    return exit_.value.code, capsys.readouterr().out


def test_a_dry_run_lists_the_jobs_and_checks_each_without_launching(tmp_path, capsys):
    code, out = dry_run(capsys, "-m", "sweep=shape", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0 and out.startswith("dry run: 8 jobs (nothing is launched)")
    assert "  job 7  model.d_model=128 model.num_heads=4 data.context_length=64  ok" in out
    assert out.rstrip().endswith("8 jobs: all would start")
    code, out = dry_run(capsys, "-m", "model.d_model=30,32", "model.num_heads=4")
    assert code == 1  # as the sweep would end
    assert (
        "job 0  model.d_model=30  error: model.d_model=30 is not divisible" in out
        and "job 1  model.d_model=32  ok" in out
    )
    code, out = dry_run(capsys, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert code == 0 and out.startswith("dry run: an Optuna search of 5 trials; 11 probes")
    code, out = dry_run(capsys, "model.num_heads=7", "model.d_model=64")  # one run: exit 2, as the run would
    assert code == 2 and "error: model.d_model=64 is not divisible by model.num_heads=7" in out
    assert not (tmp_path / "sweep").exists() and not (ROOT / "outputs" / "not-launched").exists()


@pytest.mark.slow
def test_a_refused_resume_leaves_the_finished_run_as_it_was(tmp_path):
    run = tmp_path / "run"
    done = run_train("debug=tiny", f"data.path={SEED_SAMPLE}", f"hydra.run.dir={run}", f"data.cache_dir={tmp_path}")
    assert done.returncode == 0, done.stderr

    def snapshot():
        return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.stat().st_size) for p in run.rglob("*")}

    before = snapshot()
    again = run_train(f"resume={run}")  # already at trainer.max_steps
    assert again.returncode == 2 and again.stderr.startswith("error: ") and again.stderr.count("\n") == 1
    assert "already trainer.max_steps=6" in again.stderr
    assert snapshot() == before  # no .hydra/resume-<time>/, no line added to train.log
    assert not any(name.startswith(".hydra" + os.sep + "resume-") for name in before)
