"""Pareto-front helpers: hypervolume against the (0, 0) reference."""

from __future__ import annotations

import pytest

from advhpo.search import hypervolume


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], 0.0),
        ([(0.5, 0.5)], 0.25),
        ([(1.0, 0.2), (0.2, 1.0)], 0.2 + 0.2 * 0.8),
        ([(1.0, 0.2), (0.2, 1.0), (0.1, 0.1)], 0.36),  # a dominated point adds nothing
        ([(0.5, 0.5), (0.5, 0.5)], 0.25),  # duplicates count once
        ([(0.9, 0.0), (0.0, 0.9)], 0.0),  # on the reference axes: no area
    ],
)
def test_hypervolume(points: list[tuple[float, float]], expected: float) -> None:
    assert hypervolume(points) == pytest.approx(expected)
