"""Worker slots: which sampler stream a worker process owns while it runs.

A worker's sampler seed and its stored random state are keyed by host name and worker index
(:func:`make_sampler`, :func:`load_sampler_state`). Two launchers on one host (two terminals,
or ``docker compose --scale worker=2`` on the host network, where every replica has the host's
name) both have a worker 0: with the same key they would propose the same parameters and
overwrite each other's stream. A slot lease, kept in the study's storage and renewed while the
process lives, gives the second one a key of its own.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from typing import Any

import optuna

from advhpo._errors import AdvhpoError

_KEY = "advhpo:slot_lease:{host}:{slot}"
_SETTLE_SECONDS = 0.5  # between writing a claim and reading it back (see SlotLease.claim)
_MAX_SLOTS = 1000  # leases tried before giving up: more live launchers on one host is a bug


def _slot_name(worker_id: int, k: int) -> int | str:
    # The first claimant keeps the bare index: slots stored before leases existed stay valid.
    return worker_id if k == 0 else f"{worker_id}.{k}"


class SlotLease:
    """A live claim on one sampler slot of this host, renewed by a daemon thread.

    Args:
        storage: The study's storage.
        study_id: The study.
        host: This host's name in trial records.
        worker_id: The worker's index on its launcher.
        stale_after: Seconds without renewal after which a lease counts as abandoned (its
            process died without releasing it), i.e. the study's grace period.
    """

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        study_id: int,
        host: str,
        worker_id: int,
        stale_after: float,
    ) -> None:
        self.storage, self.study_id, self.host = storage, study_id, host
        self.worker_id, self.stale_after = worker_id, stale_after
        self.token = uuid.uuid4().hex
        self.slot: int | str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self) -> int | str:
        """Take the first slot of this worker index that no live process holds.

        The storage offers no compare-and-set, so a claim is written, left to settle, and
        read back: of two processes claiming one slot at once, the one whose write lost sees
        the other's token and moves on to the next slot.

        Returns:
            The slot: ``worker_id`` itself, or ``"<worker_id>.<k>"`` while that is taken.
        """
        for k in range(_MAX_SLOTS):
            slot = _slot_name(self.worker_id, k)
            key = _KEY.format(host=self.host, slot=slot)
            if not self._free(self._read(key)):
                continue
            self._write(key)
            time.sleep(_SETTLE_SECONDS)
            if self._mine(self._read(key)):
                self.slot = slot
                self._start_renewing(key)
                return slot
        raise AdvhpoError(f"{_MAX_SLOTS} live slots of worker {self.worker_id} on {self.host}")

    def release(self) -> None:
        """Stop renewing and free the slot, so the next process on this host continues it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.slot is not None:
            key = _KEY.format(host=self.host, slot=self.slot)
            if self._mine(self._read(key)):
                self.storage.set_study_system_attr(self.study_id, key, None)
            self.slot = None

    def _read(self, key: str) -> Any:
        return self.storage.get_study_system_attrs(self.study_id).get(key)

    def _write(self, key: str) -> None:
        lease = json.dumps({"token": self.token, "renewed": time.time()})
        self.storage.set_study_system_attr(self.study_id, key, lease)

    def _free(self, value: Any) -> bool:
        lease = _parse(value)
        return (
            lease is None
            or lease["token"] == self.token
            or time.time() - lease["renewed"] > self.stale_after
        )

    def _mine(self, value: Any) -> bool:
        lease = _parse(value)
        return lease is not None and lease["token"] == self.token

    def _start_renewing(self, key: str) -> None:
        interval = max(1.0, self.stale_after / 6)  # as trial heartbeats: one slow write is fine

        def renew() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(Exception):  # an outage: the next renewal tries again
                    self._write(key)

        self._thread = threading.Thread(target=renew, name="advhpo-slot-lease", daemon=True)
        self._thread.start()


def _parse(value: Any) -> dict[str, Any] | None:
    """A stored lease, or ``None`` for a released, missing or unreadable one."""
    try:
        lease = json.loads(value)
        return {"token": str(lease["token"]), "renewed": float(lease["renewed"])}
    except (TypeError, ValueError, KeyError):
        return None
