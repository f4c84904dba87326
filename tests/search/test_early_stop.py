"""Multi-objective early stopping: domination shares, reference points, the budget."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from advhpo import ConfigError
from advhpo.search import (
    EARLY_STOP_ATTR,
    EarlyStopRule,
    StudySettings,
    dominates,
    epoch_point,
    reference_points,
    spends_budget,
)


def _trial(values: list[tuple[int, float, float]], **attrs: object) -> optuna.trial.FrozenTrial:
    rows = [{"epoch": e, "clean_acc": c, "fgsm_acc": f} for e, c, f in values]
    return create_trial(values=[0.5, 0.5], user_attrs={"epoch_values": rows, **attrs})


def test_domination_needs_one_strictly_better_objective() -> None:
    assert dominates((0.9, 0.5), (0.8, 0.5))
    assert dominates((0.9, 0.6), (0.8, 0.5))
    assert not dominates((0.9, 0.5), (0.9, 0.5))  # equal points do not dominate
    assert not dominates((0.9, 0.4), (0.8, 0.5))  # a trade-off does not either


def test_a_trial_stops_when_enough_references_dominate_it() -> None:
    rule = EarlyStopRule(fraction=0.5, min_trials=4)
    refs = [(0.9, 0.5), (0.95, 0.6), (0.5, 0.9), (0.2, 0.1)]
    assert rule.share_dominating((0.8, 0.4), refs) == 0.5
    assert rule.should_stop((0.8, 0.4), refs)
    assert not rule.should_stop((0.8, 0.55), refs)  # only one of four dominates
    assert not rule.should_stop((0.8, 0.4), refs[:3])  # too few completed trials yet
    assert rule.share_dominating((0.1, 0.1), []) == 0.0


def test_reference_points_are_the_completed_trials_at_that_epoch() -> None:
    a = _trial([(1, 0.5, 0.1), (2, 0.7, 0.2)])
    b = _trial([(1, 0.6, 0.3)])
    c = _trial([])
    assert epoch_point(a, 2) == (0.7, 0.2) and epoch_point(b, 2) is None
    assert reference_points([a, b, c], 1) == [(0.5, 0.1), (0.6, 0.3)]
    assert reference_points([a, b, c], 2) == [(0.7, 0.2)]


def test_early_stopped_trials_spend_the_budget_but_skipped_ones_do_not() -> None:
    stopped = create_trial(state=TrialState.PRUNED, user_attrs={EARLY_STOP_ATTR: 1})
    skipped = create_trial(state=TrialState.PRUNED, user_attrs={"skipped": "budget taken"})
    failed = create_trial(state=TrialState.FAIL)
    assert spends_budget(create_trial(values=[0.5, 0.5]))
    assert spends_budget(stopped)
    assert not spends_budget(skipped) and not spends_budget(failed)


@pytest.mark.parametrize(
    "changes",
    [{"early_stop": 0.0}, {"early_stop": 1.5}, {"early_stop": 0.5, "epoch_eval": 0}],
)
def test_bad_early_stop_settings_are_config_errors(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        StudySettings(dataset="mnist", budget=3, eval_eps=0.3, **changes)  # type: ignore[arg-type]
