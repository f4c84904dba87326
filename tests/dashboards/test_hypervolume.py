"""The hypervolume history: equal to recomputing from scratch after every trial."""

from __future__ import annotations

import random

import pytest

from advhpo.dashboards import hypervolume_history
from advhpo.search import hypervolume


@pytest.mark.parametrize("seed", range(4))
def test_history_matches_the_hypervolume_of_every_prefix(seed: int) -> None:
    rng = random.Random(seed)
    # Coarse values: ties and duplicates; some points at the reference (they add nothing).
    points = [(rng.randint(0, 10) / 10, rng.randint(0, 10) / 10) for _ in range(120)]
    history = hypervolume_history(points)
    assert history == pytest.approx([hypervolume(points[: k + 1]) for k in range(len(points))])
    assert history == sorted(history)


def test_a_point_that_changes_nothing_keeps_the_area() -> None:
    assert hypervolume_history([(0.5, 0.5), (0.4, 0.4), (0.5, 0.5), (0.6, 0.2)]) == (
        pytest.approx([0.25, 0.25, 0.25, 0.25 + 0.1 * 0.2])
    )


def test_an_empty_study_has_an_empty_history() -> None:
    assert hypervolume_history([]) == []
