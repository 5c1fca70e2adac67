"""Optuna studies (attnlab.sweeps.study): the sampler's seed is new for each call of a study, and a
sweep's report names the study's best trial with every override it ran with; the docs' way to look
inside a study works."""

import json
import math
import re
import warnings

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import LogUniformDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState, create_trial

from attnlab.sweeps.report import main as report_main
from attnlab.sweeps.study import STUDY_RECORD, record_study, study_seed, trial_overrides
from tests.conftest import ROOT, run_train

LR = {"optim.lr": LogUniformDistribution(1e-4, 1e-2)}


def make_study(storage: str, name: str, trials: list[tuple[float, str, float]]) -> optuna.Study:
    """A study of finished trials, each (lr, fixed trainer.max_steps, val/bpb), as the sweeper records them."""
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # add_trial, create_trial: stable since optuna 3
        for lr, max_steps, value in trials:
            study.add_trial(
                create_trial(
                    params={"optim.lr": lr},
                    distributions=LR,
                    user_attrs={"trainer.max_steps": max_steps, "debug": "tiny"},  # the fixed overrides, as strings
                    value=value,
                )
            )
    return study


def test_the_sampler_seed_is_new_for_each_call_of_a_study(tmp_path, compose_with_hydra):
    storage = f"sqlite:///{tmp_path / 'optuna' / 's.db'}"
    assert study_seed(7, None, "attnlab") == 7  # in memory: a new study every call
    assert study_seed(7, storage, "attnlab") == 7  # no study file yet ...
    assert not (tmp_path / "optuna").exists()  # ... and none created
    (tmp_path / "optuna").mkdir()
    make_study(storage, "attnlab", [(1e-3, "100", 2.5)])
    one = study_seed(7, storage, "attnlab")
    assert study_seed(7, storage, "other") == 7  # another study in the same file: new
    make_study(storage, "attnlab", [(2e-3, "100", 2.4)])
    two = study_seed(7, storage, "attnlab")
    assert len({7, one, two, study_seed(8, storage, "attnlab")}) == 4  # the seed and the trials held both count
    assert study_seed(7, storage, "attnlab") == two  # reproducible
    assert study_seed(None, storage, "attnlab") is None  # unseeded stays unseeded
    cfg = compose_with_hydra("hparams_search=optuna", "seed=7", f"hydra.sweeper.storage={storage}")
    assert cfg.hydra.sweeper.sampler.seed == two  # conf/hparams_search/optuna.yaml asks the resolver


def test_the_report_shows_the_best_trial_of_the_study_with_its_fixed_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_study("sqlite:///s.db", "attnlab", [(1e-3, "300", 2.1), (2e-3, "100", 2.5), (3e-3, "100", math.inf)])
    sweep = tmp_path / "sweep"  # the second call: trials #1 and #2, with trainer.max_steps=100
    for n, lr in enumerate((2e-3, 3e-3)):
        (sweep / str(n)).mkdir(parents=True)
        record = {"status": "ok", "overrides": [f"optim.lr={lr}", "debug=tiny", "trainer.max_steps=100"], "metrics": {}}
        (sweep / str(n) / "metrics.json").write_text(json.dumps(record))
    sweeper = {"study_name": "attnlab", "storage": "sqlite:///s.db"}
    record_study(OmegaConf.create({"hydra": {"sweeper": sweeper, "sweep": {"dir": str(sweep)}}}))
    assert not (sweep / STUDY_RECORD).exists()  # not an Optuna sweep
    sweeper["_target_"] = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    record_study(OmegaConf.create({"hydra": {"sweeper": sweeper, "sweep": {"dir": str(sweep)}}}))

    monkeypatch.chdir(sweep)  # `attnlab report` from another folder: the study file's path was made absolute
    assert report_main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    section = (
        f"## Optuna study\n\nStudy `attnlab` in `sqlite:///{tmp_path / 's.db'}`: 3 trials finished.\n"
        "The best is trial #0, val/bpb 2.1000, which ran with `optim.lr=0.001 debug=tiny trainer.max_steps=300`."
    )
    assert section in printed and section in (sweep / "summary.md").read_text()


def test_the_docs_way_to_look_inside_a_study_runs(tmp_path, monkeypatch, capsys):
    docs = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"```python\n(.*?)```", docs.split("## Hyperparameter search with Optuna")[1], re.S)
    monkeypatch.chdir(tmp_path)  # the snippet's path is relative, as run from the checkout
    (tmp_path / "outputs" / "optuna").mkdir(parents=True)
    make_study("sqlite:///outputs/optuna/attnlab.db", "attnlab", [(1e-3, "300", 2.3), (2e-3, "100", 2.1)])
    make_study("sqlite:///outputs/optuna/attnlab.db", "attnlab", [(3e-3, "100", math.inf)])
    exec(compile(snippet, "docs/sweeps.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "best: trial #1, val/bpb 2.1000" in printed
    assert "'trainer.max_steps': '100'" in printed  # the fixed overrides are shown
    assert re.search(r"^1 2\.1000 .*\n0 2\.3000 .*\n2 inf ", printed, re.M)  # trials, best first


@pytest.mark.slow
def test_a_resumed_study_proposes_new_trials_and_reports_its_best_with_every_override(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = [
        "hparams_search=optuna",
        f"hydra.sweeper.storage={storage}",
        "optim.lr=tag(log, interval(1e-3, 3e-2))",  # the only searched value
        "model.d_model=32",
        "model.num_layers=1",
        "data.context_length=16",
        "debug=tiny",
        "trainer.max_steps=2",
        "~callbacks.attention",
        "~callbacks.samples",
        "hydra.sweeper.n_trials=2",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    # the same command twice, but for a fixed value; the second call's heads do not divide d_model
    first = run_train("-m", *search, "model.num_heads=2", f"hydra.sweep.dir={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_train("-m", *search, "model.num_heads=3", f"hydra.sweep.dir={tmp_path / 'b'}")
    assert second.returncode == 1, second.stderr[-3000:]  # its two trials failed (+inf)

    trials = optuna.load_study(study_name="attnlab", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # one study: the second call resumed it
    assert len({t.params["optim.lr"] for t in trials}) == 4  # new values, not the first call's again
    # each trial's overrides are exactly those its job ran with: trials #0, #1 are the first call's jobs
    ran = [json.loads((tmp_path / s / n / "metrics.json").read_text())["overrides"] for s in "ab" for n in "01"]
    assert [sorted(trial_overrides(t)) for t in trials] == [sorted(overrides) for overrides in ran]

    best = min(trials, key=lambda t: t.value)
    assert best.number in (0, 1) and "model.num_heads=2" in trial_overrides(best)
    shown = " ".join(trial_overrides(best))
    line = f"study attnlab: best of 4 trials is #{best.number}, val/bpb {best.value:.4f}: {shown}"
    assert line in second.stdout + second.stderr  # printed at the end of the second call, with num_heads=2
    md = (tmp_path / "b" / "summary.md").read_text()
    assert f"The best is trial #{best.number}, val/bpb {best.value:.4f}, which ran with `{shown}`." in md
