"""Hypervolume of the clean/FGSM front after each completed trial, updated incrementally."""

from __future__ import annotations

from collections.abc import Iterable

from advhpo.search import hypervolume


def hypervolume_history(
    points: Iterable[tuple[float, float]], reference: tuple[float, float] = (0.0, 0.0)
) -> list[float]:
    """The hypervolume of the front of the first ``k`` points, for every ``k``.

    Only the current front is kept: a point inside it costs one pass over the front, and only
    a point that changes the front recomputes its area, so thousands of trials take
    milliseconds (fronts hold tens of points).

    Args:
        points: (clean, FGSM) accuracies, both maximised, in completion order.
        reference: The point the area is measured from. Default (0, 0), as in
            :func:`advhpo.search.hypervolume`.

    Returns:
        One hypervolume per point, non-decreasing.
    """
    front: list[tuple[float, float]] = []
    area = 0.0
    history: list[float] = []
    for x, y in points:
        if not any(fx >= x and fy >= y for fx, fy in front):
            front = [(fx, fy) for fx, fy in front if not (x >= fx and y >= fy)]
            front.append((x, y))
            area = hypervolume(front, reference)
        history.append(area)
    return history
