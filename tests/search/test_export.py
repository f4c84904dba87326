"""``advhpo export``: every trial as CSV or JSON, read back from the storage."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from advhpo.cli import main
from advhpo.search import (
    LOST_REASON,
    OUTSIDE_REASON,
    StudySettings,
    create_or_check_study,
    export_text,
)
from advhpo.storage import LOST_ATTR, open_storage


@pytest.fixture
def study(storage_url: str, study_name: str) -> optuna.Study:
    settings = StudySettings(dataset="mnist", budget=2, eval_eps=0.3)
    study = create_or_check_study(study_name, open_storage(storage_url), settings)
    dists = {
        "lr": FloatDistribution(1e-3, 0.1, log=True),
        "adv_method": CategoricalDistribution(["none", "fgsm"]),
    }
    study.add_trial(optuna.create_trial(
        values=[0.9, 0.4], params={"lr": 0.01, "adv_method": "fgsm"}, distributions=dists,
        user_attrs={"pgd_acc": 0.1, "eps_curve": {"eps": [0.0], "fgsm_acc": [0.9]}},
    ))  # fmt: skip
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr": 0.05, "adv_method": "none"},
        distributions=dists, user_attrs={"fail_reason": "DivergenceError: loss became nan"},
    ))  # fmt: skip
    # Failed by another worker's heartbeat check: its own worker died before saying why.
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr": 0.02, "adv_method": "none"},
        distributions=dists, user_attrs={"fail_reason": None}, system_attrs={LOST_ATTR: "now"},
    ))  # fmt: skip
    # Failed by hand in optuna-dashboard while it ran.
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr": 0.03, "adv_method": "none"},
        distributions=dists, user_attrs={"fail_reason": None},
    ))  # fmt: skip
    return study


def test_csv_has_one_row_per_trial_with_objectives_params_and_reasons(
    study: optuna.Study,
) -> None:
    rows = list(csv.DictReader(io.StringIO(export_text(study, "csv"))))
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "FAIL", "FAIL"]
    assert rows[0]["fail_reason"] == ""
    assert rows[0]["clean_acc"] == "0.9" and rows[0]["fgsm_acc"] == "0.4"
    assert rows[0]["params_adv_method"] == "fgsm" and rows[0]["pgd_acc"] == "0.1"
    assert rows[1]["fail_reason"].startswith("DivergenceError")
    assert rows[2]["fail_reason"] == LOST_REASON
    assert rows[3]["fail_reason"] == OUTSIDE_REASON


def test_json_keeps_every_user_attribute(study: optuna.Study) -> None:
    data = json.loads(export_text(study, "json"))
    assert data["study"] == study.study_name
    assert data["trials"][0]["user_attrs"]["eps_curve"] == {"eps": [0.0], "fgsm_acc": [0.9]}


def test_export_command_prints_the_csv(
    study: optuna.Study, storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", study.study_name, "--storage", storage_url, "--format", "csv"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == export_text(study, "csv")


def test_a_cost_studys_objective_column_holds_the_objective(
    storage_url: str, study_name: str
) -> None:
    settings = StudySettings(dataset="mnist", budget=2, eval_eps=0.3, cost=True)
    study = create_or_check_study(study_name, open_storage(storage_url), settings)
    # Told by hand: no train_seconds attribute to fall back on.
    study.add_trial(optuna.create_trial(values=[0.8, 0.6, 20.0]))
    # A failed attempt's own training time is an attribute, not an objective value.
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"train_seconds": 3.0},
    ))  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(export_text(study, "csv"))))
    assert [r["train_seconds"] for r in rows] == ["20.0", ""]
    trials = json.loads(export_text(study, "json"))["trials"]
    assert [t["train_seconds"] for t in trials] == [20.0, None]


def test_csv_tells_baselines_early_stopped_and_skipped_trials_apart(
    storage_url: str, study_name: str
) -> None:
    settings = StudySettings(dataset="mnist", budget=2, eval_eps=0.3)
    study = create_or_check_study(study_name, open_storage(storage_url), settings)
    pruned = optuna.trial.TrialState.PRUNED
    study.add_trial(optuna.create_trial(values=[0.9, 0.1], user_attrs={"baseline": "thesis"}))
    study.add_trial(optuna.create_trial(state=pruned, user_attrs={"early_stopped_at_epoch": 2}))
    study.add_trial(optuna.create_trial(state=pruned, user_attrs={"skipped": "budget taken"}))
    rows = list(csv.DictReader(io.StringIO(export_text(study, "csv"))))
    assert [r["baseline"] for r in rows] == ["thesis", "", ""]
    assert [r["early_stopped_at_epoch"] for r in rows] == ["", "2", ""]
    assert [r["skipped"] for r in rows] == ["", "", "budget taken"]


def test_json_is_strict_where_an_attribute_is_not_finite(storage_url: str, study_name: str) -> None:
    settings = StudySettings(dataset="mnist", budget=2, eval_eps=0.3)
    study = create_or_check_study(study_name, open_storage(storage_url), settings)
    history = [{"epoch": 1, "loss": float("nan")}, {"epoch": 2, "loss": float("inf")}]
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"epoch_history": history},
    ))  # fmt: skip
    text = export_text(study, "json")

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard constant {constant}")

    data = json.loads(text, parse_constant=refuse)
    assert data["trials"][0]["user_attrs"]["epoch_history"] == [
        {"epoch": 1, "loss": None},
        {"epoch": 2, "loss": None},
    ]


def test_csv_of_a_study_without_trials_is_its_header(storage_url: str, study_name: str) -> None:
    settings = StudySettings(dataset="mnist", budget=2, eval_eps=0.3)
    study = create_or_check_study(study_name, open_storage(storage_url), settings)
    header = export_text(study, "csv").splitlines()
    assert len(header) == 1 and header[0].startswith("number,state,clean_acc,fgsm_acc,")
    assert "fail_reason" in header[0]
