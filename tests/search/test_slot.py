"""Worker slot leases: two launchers on one host never share a sampler stream."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from advhpo.search import SlotLease, _slot, create_or_check_study, live_workers
from advhpo.search._slot import _start_time
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


def _write_lease(through: SlotLease, lease: dict[str, object]) -> None:
    """Store ``lease`` as host-a's slot 0, as another process's claim would."""
    through.storage.set_study_system_attr(through.study_id, "advhpo:slot_lease:host-a:0", lease)


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


def test_a_lease_is_judged_stale_by_its_holder_s_grace_period(make_lease: MakeLease) -> None:
    # A launcher with --grace-period 30 renews every 5 s; one with 1.5 must not take its slot
    # between two renewals. An abandoned lease (renewals stopped, its process alive: say
    # suspended) is taken once its own grace period is over.
    patient, abandoned = make_lease(0, stale_after=30), make_lease(1, stale_after=1.5)
    assert (patient.claim(), abandoned.claim()) == (0, 1)
    abandoned._stop.set()
    time.sleep(2.5)
    assert make_lease(0, stale_after=1.5).claim() == "0.1"
    assert make_lease(1, stale_after=1.5).claim() == 1


@pytest.mark.parametrize("holder", ["exited", "alive"])
def test_a_killed_worker_s_slot_is_free_at_once_on_its_host(
    make_lease: MakeLease, holder: str
) -> None:
    # A worker killed outright (a second Ctrl-C, the OOM killer) and resumed at once continues
    # its slot instead of waiting out its lease.
    dead = make_lease(0, stale_after=600)
    assert dead.claim() == 0
    dead._stop.set()
    child = subprocess.Popen(["sleep", "60"])
    lease = {**dead._lease(), "pid": child.pid, "started": _start_time(child.pid)}
    if holder == "exited":
        child.kill()
        child.wait()
    _write_lease(dead, lease)
    try:
        assert make_lease(0).claim() == (0 if holder == "exited" else "0.1")
    finally:
        child.kill()
        child.wait()


def test_a_worker_whose_slot_was_taken_over_finds_out_and_claims_another(
    make_lease: MakeLease,
) -> None:
    suspended, other = make_lease(0, stale_after=1.5), make_lease(0)
    assert suspended.claim() == 0
    # What another process's claim writes once this one's lease went stale.
    _write_lease(other, other._lease())
    deadline = time.monotonic() + 10
    while not suspended.lost and time.monotonic() < deadline:
        time.sleep(0.1)
    assert suspended.lost
    assert suspended.claim() == "0.1"


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


@pytest.mark.parametrize("holder", ["exited", "alive"])
def test_a_holder_hidden_by_proc_counts_as_alive_unless_the_kernel_says_gone(
    monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    # /proc mounted hidepid: another user's live worker has no /proc entry for us.
    child = subprocess.Popen(["sleep", "60"])
    me = _slot._this_process()
    lease = {**me, "pid": child.pid, "started": _start_time(child.pid)}
    if holder == "exited":
        child.kill()
        child.wait()

    def hidden(pid: int) -> str:
        raise FileNotFoundError(f"/proc/{pid}/stat")

    monkeypatch.setattr(_slot, "_start_time", hidden)
    try:
        assert _slot._exited(lease, me) == (holder == "exited")
    finally:
        child.kill()
        child.wait()


def test_a_worker_checks_its_lease_before_writing_its_slot_s_state(
    make_lease: MakeLease,
) -> None:
    suspended, other = make_lease(0, stale_after=600), make_lease(0)
    assert suspended.claim() == 0
    assert suspended.renew()
    _write_lease(other, other._lease())
    assert not suspended.renew()
    assert suspended.lost


def test_live_workers_are_those_renewing_a_lease(
    make_lease: MakeLease, storage_url: str, study_name: str
) -> None:
    # An idle worker holds a lease and no RUNNING trial; a killed one stops renewing.
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    assert live_workers(study) == []
    first, second = make_lease(0), make_lease(1)
    first.claim()
    second.claim()
    me = f"host-a:{os.getpid()}"
    assert live_workers(study) == [me]  # both leases are this process's
    second.release()
    assert live_workers(study) == [me]
    first.release()
    assert live_workers(study) == []
    # Another host's worker that stopped renewing 61 s ago, with a grace period of 60 s.
    lease = {"token": "t", "renewed": time.time() - 61, "stale_after": 60, "pid": 7}
    first.storage.set_study_system_attr(first.study_id, "advhpo:slot_lease:b:c:0", lease)
    assert live_workers(study) == []
    lease["renewed"] = time.time()
    first.storage.set_study_system_attr(first.study_id, "advhpo:slot_lease:b:c:0", lease)
    assert live_workers(study) == ["b:c:7"]  # a host name may hold a ":"
