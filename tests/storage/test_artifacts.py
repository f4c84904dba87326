"""Trial checkpoints: where they go, atomic replacement, round trips and corrupt files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from advhpo import ConfigError, StorageError
from advhpo.storage import CheckpointStore, default_artifact_dir


def _training_state() -> dict[str, object]:
    """What a worker needs to resume: weights, optimizer moments, RNG states, counters."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(8, 4)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(7)
    torch.randn(3, generator=gen)
    return {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "members": [net.state_dict(), net.state_dict()],
        "history": {"loss": [2.3, 1.1], "best": (0.91, 3)},
        "note": "fgsm",
    }


def _assert_same(a: object, b: object) -> None:
    """Equal nested structure, types and values (assert_close refuses str and None leaves)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///runs/mnist.db", Path("runs/mnist.artifacts")),
        ("sqlite:////srv/hpo/cifar.sqlite3", Path("/srv/hpo/cifar.artifacts")),
        ("sqlite:///advhpo.db", Path("advhpo.artifacts")),
        ("postgresql+psycopg2://bob:pw@db/advhpo", Path("advhpo-artifacts")),
        ("sqlite://", Path("advhpo-artifacts")),
    ],
)
def test_default_artifact_dir_sits_beside_a_sqlite_file(url: str, expected: Path) -> None:
    assert default_artifact_dir(url) == expected


def test_default_artifact_dir_of_a_malformed_url_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="malformed storage URL"):
        default_artifact_dir("not a url")


def test_a_checkpoint_round_trips_tensors_optimizer_and_generator_state(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    state = _training_state()
    store.save("mnist", 3, 5, state)
    loaded = store.load("mnist", 3)
    assert loaded is not None
    epoch, back = loaded
    assert epoch == 5
    _assert_same(back, state)
    # The restored generator continues the same random stream.
    a, b = torch.Generator(), torch.Generator()
    a.set_state(state["generator"])  # type: ignore[arg-type]
    b.set_state(back["generator"])
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_tensors_are_loaded_onto_the_cpu(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("s", 0, 1, {"w": torch.ones(2)})
    loaded = store.load("s", 0)
    assert loaded is not None
    assert loaded[1]["w"].device == torch.device("cpu")


def test_a_save_replaces_the_previous_checkpoint_of_the_key(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for epoch in range(3):
        store.save("mnist", 0, epoch, {"w": torch.full((2,), float(epoch))})
    store.save("mnist", 1, 9, {"w": torch.zeros(2)})
    loaded = store.load("mnist", 0)
    assert loaded is not None and loaded[0] == 2
    assert _files(tmp_path) == ["trial-0.pt", "trial-1.pt"]


def test_a_failing_save_keeps_the_previous_checkpoint_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    store.save("mnist", 0, 1, {"w": torch.ones(2)})

    def disk_full(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(StorageError, match=r"cannot save checkpoint .*trial-0\.pt: No space left"):
        store.save("mnist", 0, 2, {"w": torch.zeros(2)})
    monkeypatch.undo()
    assert _files(tmp_path) == ["trial-0.pt"]
    loaded = store.load("mnist", 0)
    assert loaded is not None and loaded[0] == 1


def test_an_interrupted_save_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(obj: object, f: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CheckpointStore(tmp_path).save("mnist", 0, 1, {})
    assert _files(tmp_path) == []


def test_loading_a_missing_checkpoint_gives_none(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "nowhere").load("mnist", 0) is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_a_corrupt_checkpoint_is_a_storage_error_naming_the_file(
    tmp_path: Path, damage: str
) -> None:
    store = CheckpointStore(tmp_path)
    file = store.save("mnist", 4, 1, _training_state())
    if damage == "garbage":
        file.write_bytes(b"\x00\x01 not a checkpoint" * 10)
    elif damage == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    else:  # a valid torch file, but not written by CheckpointStore
        torch.save({"w": torch.ones(1)}, file)
    with pytest.raises(StorageError, match=f"corrupt checkpoint {file}"):
        store.load("mnist", 4)


def test_remove_deletes_the_checkpoint_and_stale_temp_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    file = store.save("mnist", 2, 1, {})
    store.save("mnist", 12, 1, {})
    (file.parent / ".trial-2.abc123.tmp").write_bytes(b"left by a killed worker")
    store.remove("mnist", 2)
    store.remove("mnist", 2)  # already gone: fine
    assert store.load("mnist", 2) is None
    assert _files(tmp_path) == ["trial-12.pt"]


def test_a_save_deletes_what_killed_saves_of_its_trial_left(tmp_path: Path) -> None:
    # SIGKILL (or a second Ctrl-C) mid-save runs no cleanup; each leftover is checkpoint-sized.
    store = CheckpointStore(tmp_path)
    folder = store.save("mnist", 2, 1, {}).parent
    old, fresh, other = (folder / n for n in (".trial-2.a.tmp", ".trial-2.b.tmp", ".trial-3.c.tmp"))
    for f in (old, fresh, other):
        f.write_bytes(b"left by a killed save")
    hours_ago = time.time() - 2 * 3600
    for f in (old, other):
        os.utime(f, (hours_ago, hours_ago))
    store.save("mnist", 2, 2, {})
    # A fresh one may be a live save's (another process of a retry); trial 3's are its own.
    assert _files(tmp_path) == [".trial-2.b.tmp", ".trial-3.c.tmp", "trial-2.pt"]


@pytest.mark.parametrize("name", ["../../escape", "a/b", "a b", "..", "", "é/../ü", "x" * 300])
def test_any_study_name_maps_to_one_directory_inside_the_root(tmp_path: Path, name: str) -> None:
    root = tmp_path / "artifacts"
    file = CheckpointStore(root).save(name, 0, 1, {})
    assert file.parent.parent == root
    assert file.parent.name not in (".", "..") and len(file.parent.name) < 100


def test_study_names_differing_in_unsafe_characters_do_not_collide(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    names = ["a/b", "a_b", "a b", "a:b"]
    for k, name in enumerate(names):
        store.save(name, 0, k, {})
    assert [store.load(name, 0)[0] for name in names] == [0, 1, 2, 3]  # type: ignore[index]


@pytest.mark.parametrize(("key", "epoch"), [(-1, 0), (0, -1), (True, 0), (1.0, 0)])
def test_bad_keys_and_epochs_are_config_errors(tmp_path: Path, key: int, epoch: int) -> None:
    with pytest.raises(ConfigError, match="non-negative integer"):
        CheckpointStore(tmp_path).save("mnist", key, epoch, {})
