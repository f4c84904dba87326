"""The study's samplers on the real search space."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from advhpo.search import StudySettings, make_sampler, suggest_config


def _optimize(
    sampler: optuna.samplers.BaseSampler, settings: StudySettings, n: int
) -> optuna.Study:
    """``n`` trials on the real space (conditional adv_eps included) with a cheap objective."""
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        cfg = suggest_config(trial, settings)
        return cfg.lr * 10, cfg.adv_eps

    study.optimize(objective, n_trials=n)
    return study


def test_tpe_models_the_conditional_adv_eps_jointly(monkeypatch: pytest.MonkeyPatch) -> None:
    # adv_eps exists only in adversarially trained trials. Multivariate TPE without group
    # decomposition leaves such a parameter out of its joint model and falls back to
    # sample_independent (univariate TPE) for it after the random start-up trials.
    settings = StudySettings(dataset="mnist", budget=20, eval_eps=0.3, sampler="tpe")
    sampler = make_sampler(settings, worker_id=0)
    independent: list[tuple[int, str]] = []
    original = sampler.sample_independent

    def spy(study: optuna.Study, trial: Any, name: str, dist: Any) -> Any:
        independent.append((trial.number, name))
        return original(study, trial, name, dist)

    monkeypatch.setattr(sampler, "sample_independent", spy)
    study = _optimize(sampler, settings, 20)
    late = [t for t in study.trials[10:] if "adv_eps" in t.params]
    assert late, "no adversarially trained trial after the start-up to check"
    assert not [n for n, name in independent if n >= 10 and name == "adv_eps"]


def test_default_gp_leaves_adv_eps_to_its_random_sampler_without_a_warning_per_trial(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = StudySettings(dataset="mnist", budget=14, eval_eps=0.3)
    sampler = make_sampler(settings, worker_id=0)
    assert isinstance(sampler, optuna.samplers.GPSampler)
    optuna.logging.enable_propagation()  # Optuna's logger does not reach caplog otherwise
    try:
        with caplog.at_level("WARNING", logger="optuna"):
            study = _optimize(sampler, settings, 14)
    finally:
        optuna.logging.disable_propagation()
    assert [t for t in study.trials[10:] if "adv_eps" in t.params], "nothing to check"
    assert not [r for r in caplog.records if "independent" in r.getMessage()]
