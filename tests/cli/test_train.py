"""``advhpo train``: argument errors, output contract, saved ensembles (real MNIST e2e)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import advhpo.objectives
from advhpo.objectives import DatasetSplits, load_ensemble, load_splits

CliRun = Callable[[list[str]], tuple[int, str, str]]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--adv-eps", "1.5"], "--adv-eps"),
        (["train", "--eval-eps", "-0.1"], "--eval-eps"),
        (["train", "--dataset", "svhn"], "--dataset"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--preset", "thesis-cifar10", "--dataset", "mnist"], "--preset"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], needle: str, usage_error: Callable[[list[str]], str]
) -> None:
    assert needle in usage_error(argv)


@pytest.mark.parametrize(
    ("command", "flag"), [(["train"], "--save"), (["reproduce", "thesis"], "--out"),
                          (["reproduce", "gan"], "--out")],
)  # fmt: skip
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_folder_that_cannot_be_made_fails_before_training(
    tmp_path: Path, usage_error: Callable[[list[str]], str], command: list[str], flag: str,
    where: str,
) -> None:  # fmt: skip
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    target = blocker if where == "a file" else blocker / "run"
    # The data folder is empty: had the option not failed first, loading data would have.
    err = usage_error([*command, flag, str(target), "--data-dir", str(tmp_path), "--offline"])
    assert flag in err and "not a folder" in err


def test_save_into_a_folder_of_other_files_fails_before_training_and_keeps_them(
    tmp_path: Path, usage_error: Callable[[list[str]], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--save .` in a project folder must not wipe it once training is done.
    (tmp_path / "paper.tex").write_text("months of work")
    monkeypatch.chdir(tmp_path)
    # The data folder is empty: had the option not failed first, loading data would have.
    err = usage_error(["train", "--save", ".", "--data-dir", str(tmp_path), "--offline"])
    assert "--save" in err and "not a saved advhpo ensemble" in err
    assert (tmp_path / "paper.tex").read_text() == "months of work"


def test_missing_data_offline_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, run_cli: CliRun
) -> None:
    save = tmp_path / "ens"
    argv = ["train", "--data-dir", str(tmp_path), "--offline", "--save", str(save)]
    code, _, err = run_cli(argv)
    assert code == 1
    assert err.count("\n") == 1 and "offline" in err
    assert not save.exists()


def test_corrupt_data_file_is_named(tmp_path: Path, run_cli: CliRun) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / f"{stem}.gz").write_bytes(b"\x1f\x8b garbage")
    code, _, err = run_cli(["train", "--data-dir", str(tmp_path), "--offline"])
    assert code == 1
    assert err.count("\n") == 1 and "idx" in err and ".gz" in err


def test_unavailable_device_is_one_line(run_cli: CliRun) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run_cli(["train", "--device", "cuda"])
    assert code == 1 and "CUDA is not available" in err


def test_the_generator_method_takes_its_input_from_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tiny_splits: DatasetSplits, run_cli: CliRun
) -> None:
    monkeypatch.setattr(advhpo.objectives, "load_splits", lambda *a, **k: tiny_splits)
    argv = ["train", "--dataset", "mnist", "--layers", "1", "--epochs", "1", "--pgd-steps", "1"]
    argv += ["--adv-method", "generator", "--gen-input", "gradient", "--json"]
    code, out, _ = run_cli(argv)
    assert code == 0 and json.loads(out)["config"]["gen_input"] == "gradient"


@pytest.mark.parametrize(("eval_eps", "top"), [("0.2", 0.4), ("0.7", 1.0)])
def test_the_eps_curve_spans_the_radius_scored(
    monkeypatch: pytest.MonkeyPatch,
    tiny_splits: DatasetSplits,
    run_cli: CliRun,
    eval_eps: str,
    top: float,
) -> None:
    monkeypatch.setattr(advhpo.objectives, "load_splits", lambda *a, **k: tiny_splits)
    argv = ["train", "--dataset", "mnist", "--layers", "1", "--epochs", "1", "--pgd-steps", "1"]
    code, out, err = run_cli([*argv, "--eval-eps", eval_eps, "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["config"]["eps_grid"][-1] == top
    assert max(result["eps_curve"]["eps"]) == top


def test_val_fraction_zero_trains_on_the_whole_training_set_for_a_test_score(
    monkeypatch: pytest.MonkeyPatch, tiny_splits: DatasetSplits, run_cli: CliRun
) -> None:
    asked: dict[str, object] = {}

    def load(*args: object, **kwargs: object) -> DatasetSplits:
        asked.update(kwargs)
        return tiny_splits

    monkeypatch.setattr(advhpo.objectives, "load_splits", load)
    argv = ["train", "--layers", "1", "--epochs", "1", "--pgd-steps", "1", "--json"]
    code, out, _ = run_cli([*argv, "--val-fraction", "0", "--eval-split", "test"])
    assert code == 0 and asked["val_fraction"] == 0.0
    assert json.loads(out)["config"]["val_fraction"] == 0.0
    # Scoring on a validation split that holds nothing is refused before any data is read.
    asked.clear()
    code, _, err = run_cli([*argv, "--val-fraction", "0"])
    assert code == 1 and err.count("\n") == 1 and "needs val_fraction > 0" in err
    assert not asked


def test_cli_import_does_not_load_torch() -> None:
    code = "import sys, advhpo.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.real_data
def test_train_json_and_save_on_real_mnist(real_data_dir: Path, tmp_path: Path) -> None:
    save = tmp_path / "ens"
    argv = [
        sys.executable,
        "-m",
        "advhpo",
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(real_data_dir),
        "--offline",
        "--train-subset",
        "2048",
        "--epochs",
        "1",
        "--eval-subset",
        "300",
        "--ensemble",
        "3",
        "--pgd-steps",
        "2",
        "--json",
        "--save",
        str(save),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    result = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    for key in (
        "clean_acc",
        "fgsm_acc",
        "pgd_acc",
        "transfer_acc",
        "member_clean_acc",
        "eps_curve",
        "train_seconds",
        "eval_split",
        "n_eval",
        "config",
    ):
        assert key in result
    assert result["n_eval"] == 300 and result["eval_split"] == "val"
    assert len(result["member_clean_acc"]) == 3
    assert result["clean_acc"] > 0.5  # 16 SGD steps on real images: far above chance (0.1)
    assert result["config"]["net"]["blocks"] == [[32, 64]]  # the thesis-mnist default

    model = load_ensemble(save)
    val = load_splits("mnist", real_data_dir).val.head(300)
    with torch.no_grad():
        logits = model(val.images.float() / 255)
    assert logits.shape == (300, 10)
    accuracy = (logits.argmax(1) == val.labels).float().mean().item()
    # Mean logits and the vote agree on almost every image.
    assert abs(accuracy - result["clean_acc"]) < 0.05


@pytest.mark.real_data
def test_train_on_real_cifar10_thesis_net(real_data_dir: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "advhpo",
        "train",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(real_data_dir),
        "--offline",
        "--train-subset",
        "512",
        "--epochs",
        "1",
        "--eval-subset",
        "100",
        "--pgd-steps",
        "1",
        "--adv-method",
        "fgsm",
        "--json",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    result = json.loads(proc.stdout)
    assert result["config"]["net"]["blocks"] == [[64, 64], [128, 128], [256, 256]]
    assert result["config"]["adv_eps"] == 0.05 and result["config"]["eval_eps"] == 0.05
    assert result["n_train"] == 512 and result["n_eval"] == 100
    assert 0.0 <= result["fgsm_acc"] <= 1.0
