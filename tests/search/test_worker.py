"""The worker's objective: what one attempt of a trial records about itself."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

import advhpo.objectives
from advhpo import DivergenceError
from advhpo.objectives import DatasetSplits
from advhpo.search import (
    EARLY_STOP_ATTR,
    LOST_REASON,
    OUTSIDE_REASON,
    StudySettings,
    WorkerSpec,
    budget_counts,
    create_or_check_study,
    fail_reason,
    load_space_file,
    make_sampler,
    requeue_dropped,
    spends_budget,
    suggest_config,
)
from advhpo.search._worker import _Objective, worker_main
from advhpo.storage import (
    CheckpointStore,
    ResilientRDBStorage,
    RetryLostTrial,
    open_storage,
    retry_callback,
)
from tests.search._factories import SMALL_SPACE, fail_as_lost, mnist_settings


def _tiny_settings(tmp_path: Path, budget: int) -> StudySettings:
    """Study settings whose trials train one small member for one epoch on 128 images."""
    (tmp_path / "space.toml").write_text(SMALL_SPACE)
    return mnist_settings(
        budget=budget,
        epochs=1,
        train_subset=128,
        eval_subset=32,
        epoch_eval=0,
        space=load_space_file(tmp_path / "space.toml"),
    )


def _sqlite_study(
    tmp_path: Path, settings: StudySettings, **storage_options: Any
) -> tuple[ResilientRDBStorage, optuna.Study]:
    """Study ``s`` with ``settings`` in a new SQLite file, and its storage."""
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", **storage_options)
    return storage, create_or_check_study("s", storage, settings)


def _objective(
    storage: ResilientRDBStorage,
    settings: StudySettings,
    splits: DatasetSplits,
    store: CheckpointStore,
) -> _Objective:
    """The objective a CPU worker of study ``s`` on ``storage`` runs, never asked to stop."""
    url = str(storage.url)
    spec = WorkerSpec("s", url, str(store.root), None, True, "cpu", None, 1, 0, None)
    stop = SimpleNamespace(requested=False)
    return _Objective(spec, storage, settings, splits, torch.device("cpu"), store, stop)  # type: ignore[arg-type]


# The test asks for trials by hand, without Study.optimize's heartbeat thread.
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_retry_that_dies_silently_is_told_as_lost_not_as_its_predecessor(
    tmp_path: Path, tiny_splits: DatasetSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = mnist_settings(budget=2)
    storage, study = _sqlite_study(tmp_path, settings)
    # Attempt 1 was stopped by Ctrl-C, said so, and was queued again; the retry inherits its
    # user attributes.
    first = study.ask()
    suggest_config(first, settings)
    storage.set_trial_user_attr(first._trial_id, "fail_reason", "Interrupted: stopped")
    storage.set_trial_state_values(first._trial_id, TrialState.FAIL)
    retry_callback(3)(study, storage.get_trial(first._trial_id))

    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # stands in for SIGKILL: no handler of the worker runs

    monkeypatch.setattr(advhpo.objectives, "run_trial", die)
    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    retry = study.ask()
    assert retry.number == first.number + 1  # the queued retry, not a new trial
    with pytest.raises(KeyboardInterrupt):
        objective(retry)

    fail_as_lost(storage, retry._trial_id)  # the heartbeat check
    lost = storage.get_trial(retry._trial_id)
    assert fail_reason(lost) == LOST_REASON
    assert fail_reason(storage.get_trial(first._trial_id)) == "Interrupted: stopped"
    assert fail_reason(optuna.trial.create_trial(values=[0.9, 0.1])) is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_failed_elsewhere_is_abandoned_after_its_next_heartbeat(
    tmp_path: Path, tiny_splits: DatasetSplits
) -> None:
    settings = mnist_settings()
    storage, study = _sqlite_study(tmp_path, settings)
    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    trial = study.ask()
    check = objective._settled_check(trial)
    storage.record_heartbeat(trial._trial_id)  # what Optuna's heartbeat thread does
    check()  # running: training goes on
    open_storage(storage.url).set_trial_state_values(trial._trial_id, TrialState.FAIL)  # Fail Trial
    check()  # no heartbeat has seen it yet: the check itself never asks the database
    storage.record_heartbeat(trial._trial_id)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        check()


def test_an_attempt_whose_reason_cannot_be_written_is_failed_as_lost_and_retried(
    tmp_path: Path, tiny_splits: DatasetSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database stays away past the outage window while the trial fails: its reason is
    # lost, but the FAIL told once the database is back must not read as one made by hand.
    settings = mnist_settings()
    storage, study = _sqlite_study(tmp_path, settings, max_retry=1)
    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    _failing_run_trial(monkeypatch, [RuntimeError("some failure")])
    write = optuna.Trial.set_user_attr

    def unreachable(self: optuna.Trial, key: str, value: Any) -> None:
        if key == "fail_reason" and value is not None:
            raise optuna.exceptions.StorageInternalError("the database is unreachable")
        write(self, key, value)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", unreachable)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    (failed,) = study.get_trials()
    assert fail_reason(failed) == LOST_REASON
    lost_retry = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(lost_retry, RetryLostTrial)
    assert requeue_dropped(study, lost_retry, max_requeues=5) == [failed.number]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_retry_skipped_at_the_budget_does_not_inherit_its_predecessor_s_early_stop(
    tmp_path: Path, tiny_splits: DatasetSplits
) -> None:
    settings = mnist_settings(budget=1)
    storage, study = _sqlite_study(tmp_path, settings)
    done = study.ask()
    suggest_config(done, settings)
    study.tell(done, [0.9, 0.1])  # the budget is met
    # Attempt 1 was judged at epoch 1 but its worker died before telling the prune.
    first = study.ask()
    suggest_config(first, settings)
    storage.set_trial_user_attr(first._trial_id, EARLY_STOP_ATTR, 1)
    storage.set_trial_user_attr(first._trial_id, "resumed_from_epoch", 1)
    storage.set_trial_state_values(first._trial_id, TrialState.FAIL)
    retry_callback(3)(study, storage.get_trial(first._trial_id))

    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    retry = study.ask()
    with pytest.raises(optuna.TrialPruned):
        objective(retry)
    study.tell(retry, state=TrialState.PRUNED)

    skipped = storage.get_trial(retry._trial_id)
    assert skipped.user_attrs["skipped"] == "budget already taken by other trials"
    assert skipped.user_attrs["resumed_from_epoch"] is None
    assert not spends_budget(skipped)
    assert budget_counts(study) == (1, 0)


def test_a_new_trial_steps_back_for_a_queued_retry_ahead_of_it(
    tmp_path: Path, tiny_splits: DatasetSplits
) -> None:
    # Worker B created trial 1 while trial 0, a retry, sat queued for worker A: both would
    # run, two trials for a budget of one.
    settings = mnist_settings(budget=1)
    storage, study = _sqlite_study(tmp_path, settings)
    study.enqueue_trial({})
    study_id = storage.get_study_id_from_name("s")
    new = optuna.Trial(study, storage.create_new_trial(study_id))
    assert [t.state for t in study.trials] == [TrialState.WAITING, TrialState.RUNNING]

    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    with pytest.raises(optuna.TrialPruned):
        objective(new)
    assert storage.get_trial(new._trial_id).user_attrs["skipped"].startswith("budget already")


def _fail(storage: ResilientRDBStorage, trial_id: int, end: str) -> None:
    """End a running attempt as a lost, an interrupted or a hand-failed one."""
    if end == "lost":
        fail_as_lost(storage, trial_id)
        return
    if end == "interrupted":
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        storage.set_trial_user_attr(trial_id, "fail_reason", "Interrupted: stopped")
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


# The failing write and the retry's queueing are two writes; trials here are made in between.
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
@pytest.mark.parametrize(
    ("end", "max_retry", "steps_back"),
    [
        ("lost", 3, True),
        ("interrupted", 3, True),
        ("lost", 0, False),  # out of retries: its place is free
        ("by hand", 3, False),  # failed from outside: never retried
    ],
)
def test_a_new_trial_steps_back_for_a_failed_trial_whose_retry_is_not_queued_yet(
    tmp_path: Path, tiny_splits: DatasetSplits, end: str, max_retry: int, steps_back: bool
) -> None:
    settings = mnist_settings(budget=1)
    storage, study = _sqlite_study(tmp_path, settings, max_retry=max_retry)
    first = study.ask()
    suggest_config(first, settings)
    _fail(storage, first._trial_id, end)
    new = optuna.Trial(study, storage.create_new_trial(storage.get_study_id_from_name("s")))

    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    if steps_back:
        with pytest.raises(optuna.TrialPruned):
            objective._claim_budget(new)
    else:
        objective._claim_budget(new)
    assert requeue_dropped(study, objective.lost_retry, max_requeues=5) == (
        [first.number] if steps_back else []
    )


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_retry_queued_after_a_new_trial_keeps_its_place_and_the_new_trial_steps_back(
    tmp_path: Path, tiny_splits: DatasetSplits
) -> None:
    settings = mnist_settings(budget=1)
    storage, study = _sqlite_study(tmp_path, settings, max_retry=3)
    first = study.ask()
    suggest_config(first, settings)
    fail_as_lost(storage, first._trial_id)
    new = optuna.Trial(study, storage.create_new_trial(storage.get_study_id_from_name("s")))
    retry_callback(3)(study, storage.get_trial(first._trial_id))  # the failing worker's 2nd write
    retry = study.ask()
    assert retry.number == new.number + 1

    # The retry is taken and claims before the new trial does: it must not step back for a
    # trial that is itself bound to, or both would, and the checkpoint's epochs be redone.
    objective = _objective(storage, settings, tiny_splits, CheckpointStore(tmp_path / "art"))
    objective._claim_budget(retry)
    with pytest.raises(optuna.TrialPruned):
        objective._claim_budget(new)


def test_a_study_made_again_under_its_name_does_not_resume_the_old_study_s_checkpoints(
    tmp_path: Path, tiny_splits: DatasetSplits
) -> None:
    # Two databases with a study of the same name and settings share one artifact folder (as
    # server databases share ./advhpo-artifacts, or a study deleted and made again does).
    settings = _tiny_settings(tmp_path, budget=1)
    store = CheckpointStore(tmp_path / "art")
    trials = []
    for db in ("first.db", "second.db"):
        url = f"sqlite:///{tmp_path / db}"
        storage = open_storage(url)
        create_or_check_study("s", storage, settings)
        study = optuna.load_study(
            study_name="s", storage=storage, sampler=make_sampler(settings, 0)
        )
        objective = _objective(storage, settings, tiny_splits, store)
        study.optimize(objective, n_trials=1)
        trials.append(study.trials[0])
    assert trials[0].params == trials[1].params  # same seeds, so the same config: only the
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # checkpoint's origin differs
    assert trials[1].user_attrs["resumed_from_epoch"] is None
    assert trials[1].user_attrs["train_seconds"] != trials[0].user_attrs["train_seconds"]


@pytest.fixture
def in_process_worker(
    tmp_path: Path, tiny_splits: DatasetSplits, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerSpec]:
    """A spec for running :func:`worker_main` in this process on ``tiny_splits``.

    The worker's signal handlers are put back afterwards (it ignores SIGINT).
    """
    monkeypatch.setattr(advhpo.objectives, "load_splits", lambda *a, **k: tiny_splits)
    settings = _tiny_settings(tmp_path, budget=2)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_or_check_study("s", open_storage(url), settings)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield WorkerSpec("s", url, str(tmp_path / "art"), None, True, "cpu", None, None, 0, None)
    for s, handler in handlers.items():
        signal.signal(s, handler)


def _failing_run_trial(
    monkeypatch: pytest.MonkeyPatch, errors: list[Exception | Callable[[], None]]
) -> list[Exception | Callable[[], None]]:
    """Make ``run_trial`` raise ``errors`` one per call (or call them), then run for real."""
    real = advhpo.objectives.run_trial
    pending = list(errors)

    def run(*args: Any, **kwargs: Any) -> Any:
        if pending:
            error = pending.pop(0)
            if isinstance(error, Exception):
                raise error
            error()
        return real(*args, **kwargs)

    monkeypatch.setattr(advhpo.objectives, "run_trial", run)
    return pending


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_worker_whose_every_trial_fails_stops_with_one_line_instead_of_spinning(
    in_process_worker: WorkerSpec,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A disk that fails every write: each trial would fail the same way, without end.
    _failing_run_trial(monkeypatch, [OSError(28, "No space left on device")] * 100)
    assert worker_main(in_process_worker) == 1
    study = optuna.load_study(study_name="s", storage=in_process_worker.storage_url)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 5
    assert all("No space left on device" in str(fail_reason(t)) for t in trials)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "worker 0: error: 5 trials in a row failed" in out and "No space left" in out


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_worker_whose_every_trial_runs_out_of_memory_stops_after_twenty(
    in_process_worker: WorkerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each alone is the trial's own fault; twenty in a row is a device another job has filled.
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    _failing_run_trial(monkeypatch, [oom] * 100)
    assert worker_main(in_process_worker) == 1
    study = optuna.load_study(study_name="s", storage=in_process_worker.storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 20


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
@pytest.mark.parametrize(
    "own_fault",
    [
        DivergenceError("member 0: loss nan at step 3"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"),
    ],
    ids=["diverged", "cuda-oom", "cpu-oom"],
)
def test_trials_failing_for_their_own_parameters_do_not_stop_a_worker(
    in_process_worker: WorkerSpec, monkeypatch: pytest.MonkeyPatch, own_fault: Exception
) -> None:
    # A too-high learning rate, a net too big for the device: properties of the trial, not of
    # the worker. And failures count only in an unbroken row.
    setup = OSError(28, "No space left on device")
    pending = _failing_run_trial(monkeypatch, [setup] * 4 + [own_fault] * 6 + [setup] * 4)
    assert worker_main(in_process_worker) == 0
    assert not pending
    states = [
        t.state
        for t in optuna.load_study(study_name="s", storage=in_process_worker.storage_url).trials
    ]
    assert states == [TrialState.FAIL] * 14 + [TrialState.COMPLETE] * 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_failed_by_hand_neither_breaks_nor_extends_a_row_of_failures(
    in_process_worker: WorkerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = in_process_worker.storage_url

    def fail_by_hand() -> None:
        # The user presses Fail Trial; the worker's poll then abandons the trial.
        storage = open_storage(url)
        study = optuna.load_study(study_name="s", storage=storage)
        (running,) = study.get_trials(states=(TrialState.RUNNING,))
        storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
        raise optuna.exceptions.UpdateFinishedTrialError("failed by another process")

    setup = OSError(28, "No space left on device")
    _failing_run_trial(monkeypatch, [setup] * 4 + [fail_by_hand] + [setup] * 10)
    assert worker_main(in_process_worker) == 1  # five setup failures in a row, around it
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [fail_reason(t) == OUTSIDE_REASON for t in trials] == [False] * 4 + [True, False]
