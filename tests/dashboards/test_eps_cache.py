"""Eps curves: stored ones parsed, test-set ones measured from a real checkpoint and cached."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial

from advhpo.dashboards import checkpoint_eps_curves, measure_eps_curve, stored_eps_curve
from advhpo.objectives import DatasetSplits, evaluate

CPU = torch.device("cpu")


def _numbered(trial: FrozenTrial, number: int) -> FrozenTrial:
    trial.number = number
    return trial


def test_a_stored_curve_is_read_and_a_malformed_one_ignored(
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    curve = stored_eps_curve(trial_factory(0.9, 0.5))
    assert curve is not None
    assert curve.split == "val" and curve.n_images == 64 and curve.pgd_acc is None
    assert curve.eps[0] == 0.0 and curve.fgsm_acc[0] == pytest.approx(0.9)
    with_pgd = {"eps": [0.0, 0.3], "fgsm_acc": [0.9, 0.5], "pgd_acc": [0.9, 0.2]}
    parsed = stored_eps_curve(trial_factory(0.9, 0.5, attrs={"eps_curve": with_pgd}))
    assert parsed is not None and parsed.pgd_acc == (0.9, 0.2)
    for bad in (None, "x", {"eps": [0.0]}, {"eps": [0.0, 0.1], "fgsm_acc": [1.0]}):
        assert stored_eps_curve(trial_factory(0.9, 0.5, attrs={"eps_curve": bad})) is None


def test_measured_curve_agrees_with_the_workers_evaluation(
    tiny_checkpoint: Any, tiny_splits: DatasetSplits
) -> None:
    members = tiny_checkpoint.trainer.models()
    cfg = tiny_checkpoint.cfg
    curve = measure_eps_curve(
        members, tiny_splits.test, cfg.eps_grid, CPU, pgd_steps=cfg.pgd_steps, seed=cfg.seed
    )
    worker = evaluate(members, tiny_splits.test, cfg, CPU)
    assert curve.eps == cfg.eps_grid
    assert list(curve.fgsm_acc) == pytest.approx(worker["eps_curve"]["fgsm_acc"])
    assert curve.fgsm_acc[0] == pytest.approx(worker["clean_acc"])
    assert curve.pgd_acc is not None
    assert curve.pgd_acc[0] == curve.fgsm_acc[0]  # eps 0: no attack at all
    at_eval = cfg.eps_grid.index(cfg.eval_eps)
    assert curve.pgd_acc[at_eval] == pytest.approx(worker["pgd_acc"])  # same random starts


def test_checkpoint_curves_are_measured_once_then_read_from_the_cache(
    tiny_checkpoint: Any,
    tiny_splits: DatasetSplits,
    trial_factory: Callable[..., FrozenTrial],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trial = _numbered(trial_factory(0.9, 0.5), 0)
    no_checkpoint = _numbered(trial_factory(0.8, 0.6), 5)
    seen: list[tuple[int, int]] = []
    args = (tiny_checkpoint.study_name, [trial, no_checkpoint], tiny_checkpoint.store)

    first = checkpoint_eps_curves(
        *args, tiny_splits.test, CPU, progress=lambda d, t: seen.append((d, t))
    )
    assert first.measured == [0] and first.cached == [] and first.missing == [5]
    assert seen[0] == (0, 64) and seen[-1] == (64, 64)
    curve = first.curves[0]
    assert curve.split == "test" and curve.epoch == 1 and curve.n_images == 64

    import advhpo.dashboards._eps_cache as eps_cache

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("measured again")

    monkeypatch.setattr(eps_cache, "measure_eps_curve", fail)
    second = checkpoint_eps_curves(*args, tiny_splits.test, CPU)
    assert second.measured == [] and second.cached == [0]
    assert second.curves[0] == curve


def test_a_new_checkpoint_or_other_images_are_measured_again(
    tiny_checkpoint: Any, tiny_splits: DatasetSplits, trial_factory: Callable[..., FrozenTrial]
) -> None:
    trial = _numbered(trial_factory(0.9, 0.5), 0)
    args = (tiny_checkpoint.study_name, [trial], tiny_checkpoint.store)
    checkpoint_eps_curves(*args, tiny_splits.test, CPU)

    assert checkpoint_eps_curves(*args, tiny_splits.test.head(32), CPU).measured == [0]

    path = tiny_checkpoint.store.path(tiny_checkpoint.study_name, 0)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a retrained trial
    assert checkpoint_eps_curves(*args, tiny_splits.test.head(32), CPU).measured == [0]
    assert checkpoint_eps_curves(*args, tiny_splits.test.head(32), CPU).cached == [0]


def test_a_retried_trial_uses_its_originals_checkpoint(
    tiny_checkpoint: Any, tiny_splits: DatasetSplits
) -> None:
    retry = optuna.trial.create_trial(
        values=[0.9, 0.5],
        # What RetryHeartbeatStaleTrialCallback records on the retry of trial 0.
        system_attrs={"failed_trial": 0, "retry_history": [0]},
    )
    retry.number = 3
    result = checkpoint_eps_curves(
        tiny_checkpoint.study_name, [retry], tiny_checkpoint.store, tiny_splits.test.head(16), CPU
    )
    assert result.measured == [3] and result.missing == []


def test_an_unwritable_cache_costs_speed_not_the_report(
    tiny_checkpoint: Any, tiny_splits: DatasetSplits, trial_factory: Callable[..., FrozenTrial]
) -> None:
    trial = _numbered(trial_factory(0.9, 0.5), 0)
    checkpoint = tiny_checkpoint.store.path(tiny_checkpoint.study_name, 0)
    # A directory where the cache file goes: unwritable even for root.
    checkpoint.with_name("trial-0.eps-test.json").mkdir()
    args = (tiny_checkpoint.study_name, [trial], tiny_checkpoint.store, tiny_splits.test, CPU)
    first = checkpoint_eps_curves(*args)
    assert first.measured == [0] and len(first.cache_errors) == 1
    assert checkpoint_eps_curves(*args).measured == [0]


def _stamp_origin(checkpoint: Any, started: datetime.datetime) -> None:
    """Re-save the checkpoint as a worker records it: with its trial's first start."""
    store, name, key = checkpoint.store, checkpoint.study_name, checkpoint.key
    loaded = store.load(name, key)
    assert loaded is not None
    store.save(name, key, loaded[0], {**loaded[1], "origin_started": started.isoformat()})


def test_another_studys_checkpoint_under_the_same_name_is_not_measured(
    tiny_checkpoint: Any, tiny_splits: DatasetSplits, trial_factory: Callable[..., FrozenTrial]
) -> None:
    # A study deleted and made again under its name finds the old study's trial-0 file.
    started = datetime.datetime(2026, 1, 1, 12, 0)
    _stamp_origin(tiny_checkpoint, started)
    ours = _numbered(trial_factory(0.9, 0.5), 0)
    ours.datetime_start = started
    args = (tiny_checkpoint.study_name, [ours], tiny_checkpoint.store, tiny_splits.test, CPU)
    assert checkpoint_eps_curves(*args).measured == [0]

    other = _numbered(trial_factory(0.9, 0.5), 0)
    other.datetime_start = started + datetime.timedelta(days=1)
    args = (tiny_checkpoint.study_name, [other], tiny_checkpoint.store, tiny_splits.test, CPU)
    result = checkpoint_eps_curves(*args)  # the cache is the old study's too
    assert result.foreign == [0] and result.curves == {} and result.cached == []
    checkpoint = tiny_checkpoint.store.path(tiny_checkpoint.study_name, 0)
    checkpoint.with_name("trial-0.eps-test.json").unlink()
    result = checkpoint_eps_curves(*args)
    assert result.foreign == [0] and result.curves == {} and result.measured == []


def test_a_retrys_checkpoint_is_checked_against_its_originals_start(
    tiny_checkpoint: Any, tiny_splits: DatasetSplits
) -> None:
    started = datetime.datetime(2026, 1, 1, 12, 0)
    _stamp_origin(tiny_checkpoint, started)
    retry = optuna.trial.create_trial(
        values=[0.9, 0.5], system_attrs={"failed_trial": 0, "retry_history": [0]}
    )
    retry.number = 3
    args = (tiny_checkpoint.study_name, [retry], tiny_checkpoint.store, tiny_splits.test.head(16))
    later = started + datetime.timedelta(hours=1)
    assert checkpoint_eps_curves(*args, CPU, starts={0: later, 3: later}).foreign == [3]
    assert checkpoint_eps_curves(*args, CPU, starts={0: started, 3: later}).measured == [3]
