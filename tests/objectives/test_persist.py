"""Saving an ensemble and loading it back as one module."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from advhpo import ConfigError, DataError
from advhpo.objectives import NetConfig, TrialConfig, load_ensemble, make_net, save_ensemble


def _cfg() -> TrialConfig:
    return TrialConfig(
        dataset="mnist", net=NetConfig(dataset="mnist", blocks=((4,),), dense=(8,)), ensemble=2
    )


def _members(cfg: TrialConfig) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [make_net(cfg.net).eval() for _ in range(cfg.ensemble)]


def test_a_loaded_ensemble_gives_the_mean_member_logits(tmp_path: Path) -> None:
    cfg = _cfg()
    members = _members(cfg)
    save_ensemble(tmp_path / "ens", cfg, members)
    loaded = load_ensemble(tmp_path / "ens")
    x = torch.rand(5, 1, 28, 28)
    expected = torch.stack([m(x) for m in members]).mean(0)
    assert not loaded.training
    assert len(loaded.members) == 2
    torch.testing.assert_close(loaded(x), expected)


def test_loading_leaves_the_callers_random_stream_alone(tmp_path: Path) -> None:
    # Its nets' initial weights are overwritten at once: drawing them would shift the
    # caller's seeded draws (an experiment loading a model, then sampling).
    cfg = _cfg()
    save_ensemble(tmp_path / "ens", cfg, _members(cfg))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    load_ensemble(tmp_path / "ens")
    torch.testing.assert_close(torch.rand(3), expected)


def test_saving_over_an_existing_ensemble_replaces_it(tmp_path: Path) -> None:
    cfg = _cfg()
    save_ensemble(tmp_path / "ens", cfg, _members(cfg))
    save_ensemble(tmp_path / "ens", cfg, _members(cfg)[:1])
    assert sorted(p.name for p in (tmp_path / "ens").iterdir()) == ["config.json", "member_0.pt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ens"]  # no temporary leftovers


def test_saving_into_an_empty_folder_works(tmp_path: Path) -> None:
    cfg = _cfg()
    (tmp_path / "ens").mkdir()
    save_ensemble(tmp_path / "ens", cfg, _members(cfg))
    assert len(load_ensemble(tmp_path / "ens").members) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ens"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_ensemble_gets_the_modes_of_a_new_folder_and_files(
    tmp_path: Path, umask: int
) -> None:
    # Another user of a shared host loads it when the umask lets them, as any folder made.
    cfg = _cfg()
    old = os.umask(umask)
    try:
        save_ensemble(tmp_path / "ens", cfg, _members(cfg))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ens").stat().st_mode) == 0o777 & ~umask
    for file in (tmp_path / "ens").iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("content", ["a stray file", "a config.json of something else"])
def test_saving_over_a_folder_of_other_files_is_refused_and_keeps_them(
    tmp_path: Path, content: str
) -> None:
    cfg = _cfg()
    target = tmp_path / "results"
    target.mkdir()
    if content == "a stray file":
        save_ensemble(target, cfg, _members(cfg))
        (target / "notes.txt").write_text("mine")
    else:
        (target / "config.json").write_text('{"lr": 0.1}')
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(ConfigError, match="not a saved advhpo ensemble"):
        save_ensemble(target, cfg, _members(cfg))
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_missing_directory_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a saved advhpo ensemble"):
        load_ensemble(tmp_path / "nothing")


def test_corrupt_weights_are_a_data_error_naming_the_file(tmp_path: Path) -> None:
    cfg = _cfg()
    save_ensemble(tmp_path / "ens", cfg, _members(cfg))
    (tmp_path / "ens" / "member_1.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"member_1\.pt"):
        load_ensemble(tmp_path / "ens")


def test_weights_are_loaded_without_unpickling_code(tmp_path: Path) -> None:
    cfg = _cfg()
    save_ensemble(tmp_path / "ens", cfg, _members(cfg))
    # A pickled arbitrary object is refused by weights_only loading.
    torch.save({"x": object()}, tmp_path / "ens" / "member_0.pt")
    with pytest.raises(DataError, match=r"member_0\.pt"):
        load_ensemble(tmp_path / "ens")
