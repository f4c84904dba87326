"""Study creation, stored settings and conflicts, on every storage backend; worker placement."""

from __future__ import annotations

import os

import optuna
import pytest
import torch

from advhpo import ConfigError
from advhpo.search import (
    create_or_check_study,
    place_workers,
    space_distributions,
    stored_settings,
    suggest_config,
)
from advhpo.storage import open_storage
from tests.search._factories import mnist_settings


def test_settings_are_stored_and_read_back(storage_url: str, study_name: str) -> None:
    storage = open_storage(storage_url)
    study = create_or_check_study(study_name, storage, mnist_settings(epochs=3))
    assert stored_settings(study) == mnist_settings(epochs=3)
    assert study.metric_names == ["clean_acc", "fgsm_acc"]
    # Asking again with the same settings is fine (another worker or host joining).
    create_or_check_study(study_name, storage, mnist_settings(epochs=3))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": "cifar10", "eval_eps": 0.3}, "dataset"),
        ({"epochs": 9}, "epochs"),
        ({"sampler": "random"}, "sampler"),
    ],
)
def test_conflicting_settings_are_refused(
    storage_url: str, study_name: str, changes: dict[str, object], field: str
) -> None:
    storage = open_storage(storage_url)
    create_or_check_study(study_name, storage, mnist_settings())
    with pytest.raises(ConfigError, match=field):
        create_or_check_study(study_name, storage, mnist_settings(**changes))


def test_a_study_with_other_directions_is_refused(storage_url: str, study_name: str) -> None:
    storage = open_storage(storage_url)
    optuna.create_study(study_name=study_name, storage=storage, direction="minimize")
    with pytest.raises(ConfigError, match="not created by advhpo"):
        create_or_check_study(study_name, storage, mnist_settings())


@pytest.mark.parametrize("name", ["", "  "])
def test_a_blank_study_name_is_refused(name: str) -> None:
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(ConfigError, match="must not be blank"):
        create_or_check_study(name, storage, mnist_settings())
    assert storage.get_all_studies() == []


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        mnist_settings(dataset="svhn")
    with pytest.raises(ConfigError):
        mnist_settings(eval_eps=1.5)
    with pytest.raises(ConfigError):
        mnist_settings(sampler="cmaes")


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int, inherited: str | None) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if inherited is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)


def test_gpu_workers_are_pinned_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 2, None)
    places = place_workers("cuda:0,cuda:1", None, 2)
    assert [p.cuda_visible for p in places] == ["0", "0", "1", "1"]
    assert {p.device for p in places} == {"cuda"}


@pytest.mark.parametrize("devices", ["auto", "cuda:0,cuda:1"])
def test_gpu_workers_pin_the_gpus_this_process_was_given(
    monkeypatch: pytest.MonkeyPatch, devices: str
) -> None:
    # A scheduler gave this job physical GPUs 5 and 7: cuda:0 is GPU 5, never physical 0.
    _fake_gpus(monkeypatch, 2, "5,7")
    assert [p.cuda_visible for p in place_workers(devices, None, 1)] == ["5", "7"]


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (0, "cuda:0: this host has no CUDA GPU visible"),
        (2, "cuda:2: this host has cuda:0 to cuda:1 visible"),
    ],
)
def test_a_gpu_the_host_does_not_have_is_an_error(
    monkeypatch: pytest.MonkeyPatch, count: int, message: str
) -> None:
    _fake_gpus(monkeypatch, count, None)
    with pytest.raises(ConfigError, match=f"--devices {message}"):
        place_workers("cuda:0,cuda:2", None, 1)


def test_cpu_workers_split_the_cores() -> None:
    places = place_workers("cpu", 2, 1)
    assert len(places) == 2 and all(p.cuda_visible is None for p in places)
    assert all(p.threads is not None and p.threads >= 1 for p in places)


def test_cpu_workers_split_only_the_cores_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under taskset or a container's cpuset the machine has more cores than the process.
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert [p.threads for p in place_workers("cpu", 2, 1)] == [2, 2]


def test_cpu_workers_split_the_cores_where_there_is_no_affinity_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert [p.threads for p in place_workers("cpu", 2, 1)] == [3, 3]


def test_a_malformed_device_list_is_an_error() -> None:
    with pytest.raises(ConfigError, match="bad device"):
        place_workers("gpu0", None, 1)


@pytest.mark.parametrize(("first", "then"), [({}, None), (None, {})])
def test_an_empty_space_file_is_the_default_space(
    first: dict[str, object] | None, then: dict[str, object] | None
) -> None:
    # docker-compose's init passes the shipped, all-comments space.toml; `advhpo run` without
    # --space on the same study must not report a conflict.
    storage = optuna.storages.InMemoryStorage()
    create_or_check_study("s", storage, mnist_settings(space=first))
    study = create_or_check_study("s", storage, mnist_settings(space=then))
    assert stored_settings(study).space is None


def test_space_overrides_are_validated_and_stored(storage_url: str, study_name: str) -> None:
    space = {"ensemble": {"choices": [1]}, "layers": {"low": 2, "high": 2}}
    storage = open_storage(storage_url)
    study = create_or_check_study(study_name, storage, mnist_settings(space=space))
    assert stored_settings(study).space == space
    with pytest.raises(ConfigError, match="space"):
        create_or_check_study(study_name, storage, mnist_settings())


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"colour": {"choices": [1]}}, "unknown search parameter"),
        ({"lr": {"low": 0.1}}, "needs low/high"),
        ({"layers": {"low": 3, "high": 1}}, "low > high"),
        ({"adv_eps": {"low": 0.5, "high": 3.0}}, r"'adv_eps': adv_eps must be in \[0, 1\]"),
        ({"adv_eps": {"low": -0.1, "high": 0.3}}, "got -0.1"),
        ({"dropout": {"low": 0.0, "high": 1.0}}, r"in \[0, 1\)"),
        ({"lr": {"low": 0.0, "high": 0.1}}, "'lr': lr must be a positive number"),
        ({"weight_decay": {"low": 0.0, "high": 1e-3, "log": True}}, "log range needs low > 0"),
        ({"layers": {"low": 0, "high": 2}}, "layers must be >= 1"),
        ({"layers": {"low": 1, "high": 5}}, "5 blocks shrink a 28px image below one pixel"),
        ({"layers": {"low": 1.0, "high": 2.5}}, "integers, got 1.0"),
        (
            {"weight_decay": {"low": 0.0, "high": float("inf")}},
            r"weight_decay must be in \[0.0, inf\)",
        ),
        ({"ensemble": {"choices": [1, 2.5]}}, "got 2.5"),
        ({"adv_method": {"choices": ["fgsm", "pgd"]}}, "unknown adv_method 'pgd'"),
        ({"lr": {"low": "a", "high": "b"}}, "'lr': low must be a number, got 'a'"),
        ({"lr": {"low": 0.01, "high": "0.1"}}, "'lr': high must be a number, got '0.1'"),
        ({"lr": {"low": 0.01, "high": 0.1, "log": "yes"}}, "log must be true or false"),
        ({"lr": {"low": 0.01, "high": 0.1, "lgo": True}}, "got the keys high, lgo, low"),
        ({"lr": {"low": 0.01, "high": 0.1, "choices": [0.1]}}, "got the keys choices, high"),
        ({"ensemble": {"choices": 3}}, "choices is 3"),
        ({"ensemble": {"choices": []}}, r"choices is \[\]"),
        ({"lr": 0.01}, "got 0.01"),
        # Each valid alone; together every adversarial trial would fail.
        ({"adv_eps": {"choices": [0.0, 0.1]}}, "'adv_eps': adv_method 'fgsm' needs adv_eps > 0"),
        ({"adv_eps": {"low": 0, "high": 0}}, "needs adv_eps > 0"),
        (
            {"adv_method": {"choices": ["fgsm_rs"]}, "adv_eps": {"choices": [0.0]}},
            "adv_method 'fgsm_rs' needs adv_eps > 0",
        ),
    ],
)
def test_bad_space_overrides_are_config_errors(space: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mnist_settings(space=space)


def test_suggested_configs_stay_inside_the_space() -> None:
    settings = mnist_settings(
        space={"ensemble": {"choices": [3]}, "adv_method": {"choices": ["fgsm"]}}
    )
    study = optuna.create_study(directions=["maximize", "maximize"])
    for _ in range(5):
        trial = study.ask()
        cfg = suggest_config(trial, settings)
        assert cfg.ensemble == 3 and cfg.adv_method == "fgsm" and 0.01 <= cfg.adv_eps <= 0.3
        assert 1 <= len(cfg.net.blocks) <= 3 and 1e-3 <= cfg.lr <= 0.1
        assert cfg.eval_split == "val" and cfg.epochs == settings.epochs
        study.tell(trial, [0.5, 0.5])


def test_a_large_evaluation_radius_gives_trials_a_valid_eps_grid() -> None:
    # 2 x 0.6 is outside the pixel range: every trial's config would be refused.
    study = optuna.create_study(directions=["maximize", "maximize"])
    cfg = suggest_config(study.ask(), mnist_settings(eval_eps=0.6))
    assert cfg.eps_grid[-1] == 1.0 and cfg.eval_eps == 0.6


def test_the_progress_lines_tell_an_interrupted_trial_from_a_failed_one() -> None:
    from advhpo.search._launch import _report

    study = optuna.create_study(directions=["maximize", "maximize"])
    fail = optuna.trial.TrialState.FAIL
    study.add_trial(optuna.trial.create_trial(state=fail, user_attrs={"interrupted": True}))
    study.add_trial(optuna.trial.create_trial(state=fail, user_attrs={"fail_reason": "E: x"}))
    lines: list[str] = []
    _report(study, 2, set(), lines.append, lambda *a: None)
    assert lines == [
        "trial 0 interrupted: checkpointed and queued again for resume",
        "trial 1 failed: E: x",
    ]


def test_a_gpu_worker_starts_with_only_its_gpu_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    from advhpo.search._launch import _pinned_env

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with _pinned_env("2"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"


def test_cost_adds_a_minimised_third_objective(storage_url: str, study_name: str) -> None:
    storage = open_storage(storage_url)
    study = create_or_check_study(study_name, storage, mnist_settings(cost=True))
    assert study.metric_names == ["clean_acc", "fgsm_acc", "train_seconds"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE", "MINIMIZE"]
    with pytest.raises(ConfigError, match="objectives"):
        create_or_check_study(study_name, storage, mnist_settings())


def test_adv_eps_may_be_zero_when_only_undefended_trials_are_searched() -> None:
    space = {"adv_method": {"choices": ["none"]}, "adv_eps": {"choices": [0.0]}}
    assert mnist_settings(space=space).space == space
    mnist_settings(space={"adv_eps": {"low": 0, "high": 0.3}})  # 0 itself is never sampled


def test_integer_bounds_of_a_float_parameter_give_a_float_range() -> None:
    space = {"adv_eps": {"low": 0, "high": 1}, "layers": {"low": 1, "high": 2}}
    dists = space_distributions("mnist", space)
    assert dists["adv_eps"] == optuna.distributions.FloatDistribution(0.0, 1.0)
    assert dists["layers"] == optuna.distributions.IntDistribution(1, 2)


def test_space_distributions_are_what_trials_sample() -> None:
    settings = mnist_settings(space={"adv_method": {"choices": ["fgsm"]}})
    study = optuna.create_study(directions=["maximize", "maximize"])
    trial = study.ask()
    suggest_config(trial, settings)
    frozen = study.trials[-1]
    assert frozen.distributions == space_distributions("mnist", settings.space)
