"""``--baselines``: the thesis recipes as a study's first trials, and early stopping end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from advhpo import ConfigError
from advhpo.objectives import NetConfig, TrialConfig, thesis_mnist
from advhpo.search import (
    BASELINE_ATTR,
    EARLY_STOP_ATTR,
    baseline_params,
    create_or_check_study,
    suggest_config,
)
from advhpo.storage import CheckpointStore, open_storage
from tests.search._factories import mnist_settings


def test_baselines_are_the_thesis_recipes_inside_the_space() -> None:
    recipes = baseline_params(mnist_settings())
    assert set(recipes) == {"thesis-mnist", "thesis-mnist-fgsm"}
    assert recipes["thesis-mnist"]["adv_method"] == "none"
    assert recipes["thesis-mnist-fgsm"]["adv_method"] == "fgsm"
    assert recipes["thesis-mnist-fgsm"]["adv_eps"] == 0.3
    assert all(r["lr"] == 0.01 and r["ensemble"] == 1 for r in recipes.values())
    cifar = baseline_params(mnist_settings(dataset="cifar10", eval_eps=0.05))
    assert cifar["thesis-cifar10-fgsm"]["adv_eps"] == 0.05


def test_baselines_take_the_lowest_choice_of_a_listed_space() -> None:
    space = {"layers": {"choices": [2, 1]}, "weight_decay": {"choices": [1e-4, 0.0]}}
    recipes = baseline_params(mnist_settings(space=space))
    assert all(r["layers"] == 1 and r["weight_decay"] == 0.0 for r in recipes.values())


def test_a_space_without_the_thesis_values_is_refused() -> None:
    with pytest.raises(ConfigError, match="ensemble=1"):
        baseline_params(mnist_settings(space={"ensemble": {"choices": [3, 5]}}))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")  # study.ask
def test_baselines_are_enqueued_once_and_train_the_thesis_net(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url)
    settings = mnist_settings()
    study = create_or_check_study(study_name, storage, settings, baselines=True)
    create_or_check_study(study_name, storage, settings, baselines=True)  # a second host
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs[BASELINE_ATTR] for t in waiting) == [
        "thesis-mnist",
        "thesis-mnist-fgsm",
    ]
    trial = study.ask()
    cfg = suggest_config(trial, settings)
    assert cfg.net == thesis_mnist() and cfg.adv_method == "none"
    assert cfg.epoch_eval == settings.epoch_eval
    searched = suggest_config(optuna.create_study(directions=["maximize"] * 2).ask(), settings)
    assert searched.net != thesis_mnist() and isinstance(searched.net, NetConfig)


@pytest.mark.real_data
def test_dominated_baselines_stop_early_and_spend_the_budget(
    real_data_dir: Path, tmp_path: Path
) -> None:
    url, name, artifacts = f"sqlite:///{tmp_path / 'db.sqlite'}", "early", tmp_path / "art"
    common = ["--storage", url, "--data-dir", str(real_data_dir), "--offline", "--quiet"]
    subprocess.run(
        [sys.executable, "-m", "advhpo", "run", name, "--dataset", "mnist", "--trials", "4",
         "--epochs", "1", "--train-subset", "256", "--eval-subset", "64", "--epoch-eval", "64",
         "--early-stop", "0.5", "--early-stop-min-trials", "2", "--baselines", "--create-only",
         *common],
        check=True, timeout=120,
    )  # fmt: skip
    # Two finished trials no one can beat at epoch 1: every new trial is dominated by both.
    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    perfect = [{"epoch": 1, "clean_acc": 1.0, "fgsm_acc": 1.0}]
    for _ in range(2):
        study.add_trial(create_trial(values=[1.0, 1.0], user_attrs={"epoch_values": perfect}))

    subprocess.run(
        [sys.executable, "-m", "advhpo", "resume", name, "--workers", "1", "--devices", "cpu",
         "--artifacts", str(artifacts), *common],
        check=True, timeout=600,
    )  # fmt: skip
    trials = study.get_trials()
    assert len(trials) == 4  # the two stopped trials met the budget: nothing more started
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    assert sorted(t.user_attrs[BASELINE_ATTR] for t in stopped) == [
        "thesis-mnist",
        "thesis-mnist-fgsm",
    ]
    for t in stopped:
        assert t.user_attrs[EARLY_STOP_ATTR] == 1 and t.user_attrs["early_stop_share"] == 1.0
        assert [r["epoch"] for r in t.user_attrs["epoch_values"]] == [1]
        assert t.user_attrs["train_seconds"] > 0  # what the stopped trial cost
        assert "fail_reason" not in t.user_attrs or t.user_attrs["fail_reason"] is None
        saved = CheckpointStore(artifacts).load(name, t.number)
        assert saved is not None
        assert TrialConfig.from_dict(saved[1]["config"]).net == thesis_mnist()
    status = subprocess.run(
        [sys.executable, "-m", "advhpo", "status", name, "--storage", url, "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(status.stdout)["spent"] == 4
