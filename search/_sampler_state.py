"""Sampler random state kept in the study's storage, so a resumed worker continues its stream.

Optuna's samplers keep their history in the storage but their random streams only in memory,
so a resumed search would start new streams: not the search it would have been without the
interruption. The streams are NumPy ``RandomState`` objects inside the sampler (and inside the
samplers it delegates to); their states are stored as JSON, never pickled, so a database
shared by many hosts cannot carry code into a worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna

_KEY = "advhpo:sampler_state:{host}:{worker}"
_MAX_DEPTH = 3  # sampler -> delegate sampler -> LazyRandomState -> RandomState


def _random_states(obj: object, path: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """``(attribute path, RandomState)`` for every stream reachable through Optuna objects."""
    if isinstance(obj, np.random.RandomState):
        yield path, obj
        return
    attrs = getattr(obj, "__dict__", None)
    if depth > _MAX_DEPTH or attrs is None or not type(obj).__module__.startswith("optuna"):
        return
    for name, value in sorted(attrs.items()):
        yield from _random_states(value, f"{path}.{name}" if path else name, depth + 1)


def capture_sampler_state(sampler: optuna.samplers.BaseSampler) -> dict[str, list[Any]]:
    """The sampler's random states as JSON-ready data, keyed by attribute path."""
    states = {}
    for path, rng in _random_states(sampler):
        name, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
        states[path] = [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    return states


def restore_sampler_state(
    sampler: optuna.samplers.BaseSampler, states: dict[str, list[Any]]
) -> int:
    """Put captured states back into a sampler of the same kind.

    Returns:
        How many streams were restored (streams absent from ``states`` keep their seed).
    """
    restored = 0
    for path, rng in _random_states(sampler):
        if path in states:
            name, keys, pos, has_gauss, cached = states[path]
            rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
            restored += 1
    return restored


def save_sampler_state(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    host: str,
    worker: int | str,
    sampler: optuna.samplers.BaseSampler,
) -> None:
    """Store the sampler's streams under this host's worker slot."""
    key = _KEY.format(host=host, worker=worker)
    storage.set_study_system_attr(study_id, key, json.dumps(capture_sampler_state(sampler)))


def load_sampler_state(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    host: str,
    worker: int | str,
    sampler: optuna.samplers.BaseSampler,
) -> bool:
    """Restore the streams an earlier worker in this slot stored; False if there were none."""
    text = storage.get_study_system_attrs(study_id).get(_KEY.format(host=host, worker=worker))
    if not isinstance(text, str):
        return False
    return restore_sampler_state(sampler, json.loads(text)) > 0
