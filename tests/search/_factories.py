"""Small builders the search tests share."""

from __future__ import annotations

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from advhpo.search import StudySettings
from advhpo.storage import LOST_ATTR

# A --space file for cheap trials on real MNIST: one conv block, one member, no adversarial
# training (epochs of a second or two, so end-to-end tests can act between them).
SMALL_SPACE = """\
[layers]
low = 1
high = 1
[ensemble]
choices = [1]
[adv_method]
choices = ["none"]
"""


def mnist_settings(**changes: object) -> StudySettings:
    """MNIST study settings with a budget of 5 and the thesis eps, overridden by ``changes``."""
    base: dict[str, object] = {"dataset": "mnist", "budget": 5, "eval_eps": 0.3}
    return StudySettings(**{**base, **changes})  # type: ignore[arg-type]


def fail_as_lost(storage: BaseStorage, trial_id: int) -> None:
    """What ``optuna.storages.fail_stale_trials`` does to a stale trial, without waiting for
    one: mark it judged lost (advhpo's storage does, ``tests/storage``), then fail it."""
    storage.set_trial_system_attr(trial_id, LOST_ATTR, "now")
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
