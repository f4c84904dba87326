"""Small builders the search tests share."""

from __future__ import annotations

from advhpo.search import StudySettings


def mnist_settings(**changes: object) -> StudySettings:
    """MNIST study settings with a budget of 5 and the thesis eps, overridden by ``changes``."""
    base: dict[str, object] = {"dataset": "mnist", "budget": 5, "eval_eps": 0.3}
    return StudySettings(**{**base, **changes})  # type: ignore[arg-type]
