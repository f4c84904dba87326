"""Failing trials whose worker is gone, including those Optuna's heartbeat check skips."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from advhpo.search import fail_stale_trials
from advhpo.storage import open_storage, original_trial_number


def _running(started: datetime) -> FrozenTrial:
    return FrozenTrial(
        number=0, state=TrialState.RUNNING, value=None, datetime_start=started,
        datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
        intermediate_values={}, trial_id=0,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_running_trial_that_never_sent_a_heartbeat_is_failed_and_requeued(
    storage_url: str, study_name: str
) -> None:
    # E.g. a trial whose creation committed while the connection dropped: the retried call
    # created another, and nobody ever ran this one.
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    study_id = storage.get_study_id_from_name(study_name)
    long_ago = datetime.now() - timedelta(minutes=10)
    orphan = storage.create_new_trial(study_id, _running(long_ago))
    beating = storage.create_new_trial(study_id, _running(long_ago))
    storage.record_heartbeat(beating)  # a live worker's long trial
    just_asked = storage.create_new_trial(study_id)  # its first heartbeat is yet to come

    fail_stale_trials(study, storage)

    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan] == TrialState.FAIL
    assert states[beating] == TrialState.RUNNING
    assert states[just_asked] == TrialState.RUNNING
    (retry,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert original_trial_number(retry) == storage.get_trial(orphan).number
