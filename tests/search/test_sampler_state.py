"""Sampler random streams survive a worker restart through the study's storage."""

from __future__ import annotations

import optuna
import pytest

from advhpo.search import (
    StudySettings,
    capture_sampler_state,
    create_or_check_study,
    load_sampler_state,
    make_sampler,
    restore_sampler_state,
    save_sampler_state,
)
from advhpo.storage import open_storage


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return x * (1 - y), y * (1 - x)


def _proposals(study: optuna.Study, n: int) -> list[dict[str, float]]:
    out = []
    for _ in range(n):
        trial = study.ask()
        values = _objective(trial)
        study.tell(trial, values)
        out.append(trial.params)
    return out


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_a_restored_sampler_continues_the_original_stream(sampler: str) -> None:
    settings = StudySettings(dataset="mnist", budget=30, eval_eps=0.3, sampler=sampler)
    original = make_sampler(settings, worker_id=0)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage, directions=["maximize", "maximize"], sampler=original
    )
    _proposals(study, 12)  # past the model-based samplers' random start-up trials
    state = capture_sampler_state(original)

    resumed = make_sampler(settings, worker_id=1)  # another slot: another stream
    assert restore_sampler_state(resumed, state) >= 1
    twin = optuna.load_study(study_name=study.study_name, storage=storage, sampler=resumed)
    # Both samplers see the same history; from the same streams they propose the same.
    expected = [original.sample_independent(study, study.ask(), "z", _dist()) for _ in range(3)]
    got = [resumed.sample_independent(twin, twin.ask(), "z", _dist()) for _ in range(3)]
    assert got == expected


def _draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
    study = optuna.create_study(directions=["maximize", "maximize"])
    return [sampler.sample_independent(study, study.ask(), "z", _dist()) for _ in range(3)]


def test_workers_get_distinct_reproducible_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = StudySettings(dataset="mnist", budget=30, eval_eps=0.3, sampler="random")
    monkeypatch.setenv("ADVHPO_HOST", "host-a")
    first = _draws(make_sampler(settings, 0))
    assert _draws(make_sampler(settings, 0)) == first  # same study seed, host and slot
    assert _draws(make_sampler(settings, 1)) != first  # another worker
    assert _draws(make_sampler(settings, "0.1")) != first  # worker 0 of a second launcher
    monkeypatch.setenv("ADVHPO_HOST", "host-b")
    assert _draws(make_sampler(settings, 0)) != first  # the same slot on another host
    other_seed = StudySettings(dataset="mnist", budget=30, eval_eps=0.3, sampler="random", seed=1)
    monkeypatch.setenv("ADVHPO_HOST", "host-a")
    assert _draws(make_sampler(other_seed, 0)) != first


def test_state_is_stored_per_host_and_worker(storage_url: str, study_name: str) -> None:
    settings = StudySettings(dataset="mnist", budget=3, eval_eps=0.3, sampler="random")
    storage = open_storage(storage_url)
    create_or_check_study(study_name, storage, settings)
    study_id = storage.get_study_id_from_name(study_name)
    sampler = make_sampler(settings, 0)
    _draws(sampler)  # a stream some trials into the study
    saved = capture_sampler_state(sampler)
    save_sampler_state(storage, study_id, "host-a", 0, sampler)

    fresh = make_sampler(settings, 0)
    assert not load_sampler_state(storage, study_id, "host-b", 0, fresh)  # another host's slot
    assert not load_sampler_state(storage, study_id, "host-a", 1, fresh)  # another worker's
    assert capture_sampler_state(fresh) != saved
    assert load_sampler_state(storage, study_id, "host-a", 0, fresh)
    assert capture_sampler_state(fresh) == saved


def _dist() -> optuna.distributions.FloatDistribution:
    return optuna.distributions.FloatDistribution(0.0, 1.0)
