"""Worker slot leases: two launchers on one host never share a sampler stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from advhpo.search import SlotLease, create_or_check_study
from advhpo.storage import open_storage
from tests.search._factories import mnist_settings

MakeLease = Callable[..., SlotLease]


@pytest.fixture
def make_lease(storage_url: str, study_name: str) -> Iterator[MakeLease]:
    """``make_lease(worker_id=0, stale_after=60)``: a lease through its own storage, as each
    process has one; all are released afterwards."""
    create_or_check_study(study_name, open_storage(storage_url), mnist_settings())
    leases: list[SlotLease] = []

    def make(worker_id: int = 0, stale_after: float = 60) -> SlotLease:
        storage = open_storage(storage_url)
        study_id = storage.get_study_id_from_name(study_name)
        leases.append(SlotLease(storage, study_id, "host-a", worker_id, stale_after))
        return leases[-1]

    yield make
    for lease in leases:
        lease.release()


def test_a_second_launcher_s_worker_gets_a_slot_of_its_own(make_lease: MakeLease) -> None:
    assert make_lease(0).claim() == 0
    assert make_lease(0).claim() == "0.1"
    assert make_lease(1).claim() == 1
    assert make_lease(0).claim() == "0.2"


def test_a_released_slot_is_continued_by_the_next_worker(make_lease: MakeLease) -> None:
    # A clean stop (Ctrl-C, docker stop) hands the slot and its stored stream on.
    first = make_lease(0)
    assert first.claim() == 0
    first.release()
    assert make_lease(0).claim() == 0


def test_a_dead_worker_s_slot_is_taken_over_only_once_its_lease_is_stale(
    make_lease: MakeLease,
) -> None:
    live, dead = make_lease(0, stale_after=1.5), make_lease(1, stale_after=1.5)
    assert (live.claim(), dead.claim()) == (0, 1)
    dead._stop.set()  # stands in for SIGKILL: no more renewals, no release
    time.sleep(2.5)  # past stale_after: the live lease was renewed meanwhile, the dead one not
    assert make_lease(0, stale_after=1.5).claim() == "0.1"
    assert make_lease(1, stale_after=1.5).claim() == 1


def test_workers_claiming_at_the_same_moment_get_different_slots(make_lease: MakeLease) -> None:
    leases = [make_lease(0) for _ in range(3)]
    start = threading.Barrier(len(leases))
    slots: list[int | str] = []

    def claim(lease: SlotLease) -> None:
        start.wait()
        slots.append(lease.claim())

    threads = [threading.Thread(target=claim, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, slots)) == ["0", "0.1", "0.2"]
