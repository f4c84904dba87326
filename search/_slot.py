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
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advhpo._errors import AdvhpoError

if TYPE_CHECKING:
    import optuna

    from advhpo.storage import ResilientRDBStorage

_PREFIX = "advhpo:slot_lease:"
_KEY = _PREFIX + "{host}:{slot}"
_MAX_SLOTS = 1000  # leases tried before giving up: more live launchers on one host is a bug
_JOIN_SECONDS = 2.0  # an exiting worker waits this long for a renewal stuck in an outage


def _slot_name(worker_id: int, k: int) -> int | str:
    # The first claimant keeps the bare index: slots stored before leases existed stay valid.
    return worker_id if k == 0 else f"{worker_id}.{k}"


class SlotLease:
    """A live claim on one sampler slot of this host, renewed by a daemon thread.

    A lease is free when it was released, when its holder has not renewed it within the
    holder's own ``stale_after``, or when its holder is a process of this host's pid namespace
    that has exited (a worker killed outright and resumed at once continues its slot).

    Args:
        storage: The study's storage.
        study_id: The study.
        host: This host's name in trial records.
        worker_id: The worker's index on its launcher.
        stale_after: Seconds without renewal after which this process's lease counts as
            abandoned, i.e. its grace period; renewals come every sixth of it.
    """

    def __init__(
        self,
        storage: ResilientRDBStorage,
        study_id: int,
        host: str,
        worker_id: int,
        stale_after: float,
    ) -> None:
        self.storage, self.study_id, self.host = storage, study_id, host
        self.worker_id, self.stale_after = worker_id, stale_after
        self.token = uuid.uuid4().hex
        self.slot: int | str | None = None
        self.lost = False  # set when another process took the slot over (see claim)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = _this_process()

    def claim(self) -> int | str:
        """Take the first slot of this worker index that no live process holds.

        Each try is one atomic swap in the storage, so two processes claiming at once never
        both win. A process that loses its slot (suspended past its grace period, then taken
        over) finds :attr:`lost` set and may claim again.

        Returns:
            The slot: ``worker_id`` itself, or ``"<worker_id>.<k>"`` while that is taken.
        """
        self._stop_renewing()
        self.slot, self.lost = None, False
        for k in range(_MAX_SLOTS):
            slot = _slot_name(self.worker_id, k)
            key = _KEY.format(host=self.host, slot=slot)
            # The lease is built inside the swap: one retried through an outage lands fresh.
            if self.storage.swap_study_system_attr(self.study_id, key, self._lease, self._free):
                self.slot = slot
                self._start_renewing(key)
                return slot
        raise AdvhpoError(f"{_MAX_SLOTS} live slots of worker {self.worker_id} on {self.host}")

    def renew(self) -> bool:
        """Renew the lease now; False (and :attr:`lost` set) if another process holds it.

        A worker checks this before it writes its slot's sampler state: one that was
        suspended past its grace period must not overwrite the new holder's stream.
        """
        if self.slot is None or self.lost:
            return False
        key = _KEY.format(host=self.host, slot=self.slot)
        if not self.storage.swap_study_system_attr(self.study_id, key, self._lease, self._mine):
            self.lost = True
        return not self.lost

    def release(self) -> None:
        """Stop renewing and free the slot, so the next process on this host continues it.

        Never retried through an outage: the lease then goes stale on its own.
        """
        self._stop_renewing()
        if self.slot is not None:
            key = _KEY.format(host=self.host, slot=self.slot)
            self.slot = None
            self.storage.swap_study_system_attr(self.study_id, key, None, self._mine, retry=False)

    def _lease(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "renewed": time.time(),  # one host's clock: only this host's processes compare it
            "stale_after": self.stale_after,
            **self._process,
        }

    def _free(self, lease: Any) -> bool:
        if not isinstance(lease, dict) or lease.get("token") == self.token:
            return True
        try:
            stale = time.time() - float(lease["renewed"]) > float(lease["stale_after"])
        except (KeyError, TypeError, ValueError):
            return True  # not a lease this code wrote
        return stale or _exited(lease, self._process)

    def _mine(self, lease: Any) -> bool:
        return isinstance(lease, dict) and lease.get("token") == self.token

    def _start_renewing(self, key: str) -> None:
        interval = max(1.0, self.stale_after / 6)  # as trial heartbeats: one slow write is fine
        stop = self._stop = threading.Event()

        def renew() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(Exception):  # an outage: the next renewal tries again
                    if not self.storage.swap_study_system_attr(
                        self.study_id, key, self._lease, self._mine, retry=False
                    ):
                        self.lost = True
                        return

        self._thread = threading.Thread(target=renew, name="advhpo-slot-lease", daemon=True)
        self._thread.start()

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_SECONDS)
            self._thread = None


def live_workers(study: optuna.Study) -> list[str]:
    """``host:pid`` of every worker of the study holding a lease it renewed in its grace period.

    Idle workers (waiting for budget) hold one too, and a worker killed outright stops
    renewing, so this tells who is alive better than the study's RUNNING trials do. The
    renewal times come from each worker's clock: hosts' clocks far apart (beyond a grace
    period) misjudge each other's workers.
    """
    now = time.time()
    live = set()
    for key, lease in study._storage.get_study_system_attrs(study._study_id).items():
        if not key.startswith(_PREFIX) or not isinstance(lease, dict):
            continue  # not a lease, or one released
        try:
            fresh = now - float(lease["renewed"]) <= float(lease["stale_after"])
        except (KeyError, TypeError, ValueError):
            continue
        if fresh:
            host = key[len(_PREFIX) :].rsplit(":", 1)[0]  # slots hold no ":"; host names may
            live.add(f"{host}:{lease.get('pid')}")
    return sorted(live)


def _this_process() -> dict[str, Any]:
    """This process as another one on this host can check it is still alive (Linux)."""
    me: dict[str, Any] = {"pid": os.getpid()}
    with contextlib.suppress(OSError, IndexError):
        me["pidns"] = os.readlink("/proc/self/ns/pid")
        me["boot"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        me["started"] = _start_time(os.getpid())
    return me


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: with the pid it names one process, however the kernel
    reuses pids. A zombie (killed, not yet reaped by its launcher) reads as gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return "exited" if fields[0] == "Z" else fields[19]


def _exited(lease: dict[str, Any], me: dict[str, Any]) -> bool:
    """Whether the lease's holder is a process of our pid namespace that no longer runs."""
    if "started" not in me or any(lease.get(k) != me[k] for k in ("pidns", "boot")):
        return False  # another container or machine: only staleness can tell
    try:
        pid = int(lease["pid"])
        return _start_time(pid) != lease.get("started")
    except FileNotFoundError:
        # Gone, or hidden from us (/proc mounted hidepid): only the kernel can tell which.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    except (OSError, IndexError, KeyError, TypeError, ValueError):
        return False  # unreadable: only staleness can tell
