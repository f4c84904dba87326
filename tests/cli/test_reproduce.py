"""``advhpo reproduce``: argument errors, output contract, written files (real MNIST e2e)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import advhpo.objectives
from advhpo.objectives import DatasetSplits

CliRun = Callable[[list[str]], tuple[int, str, str]]
GAN_TINY = ["--cycles", "1", "--train-subset", "32", "--eval-subset", "8", "--cycle-eval", "8"]


@pytest.fixture
def tiny_mnist(monkeypatch: pytest.MonkeyPatch, tiny_splits: DatasetSplits) -> list[float]:
    """Serve ``tiny_splits`` to the CLI instead of MNIST; records the val_fraction asked for."""
    asked: list[float] = []

    def load_splits(name: str, *args: Any, val_fraction: float, **kwargs: Any) -> DatasetSplits:
        assert name == "mnist"
        asked.append(val_fraction)
        return tiny_splits

    monkeypatch.setattr(advhpo.objectives, "load_splits", load_splits)
    return asked


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reproduce", "thesis"], "--dataset"),
        (["reproduce", "thesis", "--dataset", "svhn"], "--dataset"),
        (["reproduce", "thesis", "--dataset", "mnist", "--members", "0"], "--members"),
        (["reproduce", "thesis", "--dataset", "mnist", "--epochs", "0"], "--epochs"),
        (["reproduce", "gan", "--cycles", "0"], "--cycles"),
        (["reproduce", "gan", "--schedule", "3:1"], "--schedule"),
        (["reproduce", "paper"], "paper"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], needle: str, usage_error: Callable[[list[str]], str]
) -> None:
    assert needle in usage_error(argv)


def test_missing_data_offline_fails_in_one_line(tmp_path: Path, run_cli: CliRun) -> None:
    argv = ["reproduce", "gan", "--data-dir", str(tmp_path), "--offline", "--out", str(tmp_path)]
    code, out, err = run_cli(argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "offline" in err
    assert list(tmp_path.iterdir()) == []


def test_gan_json_is_one_object_and_out_gets_the_result_and_its_plot(
    tiny_mnist: list[float], tmp_path: Path, run_cli: CliRun
) -> None:
    argv = ["reproduce", "gan", *GAN_TINY, "--pgd-steps", "1", "--json", "--out", str(tmp_path)]
    code, out, _ = run_cli([*argv, "--schedule", "2:1", "--schedule", "adaptive"])
    assert code == 0
    result = json.loads(out)  # stdout holds exactly one JSON object
    assert tiny_mnist == [0.0]  # the protocols train on the whole official training set
    assert [s["name"] for s in result["schedules"]] == ["2:1", "adaptive"]
    assert [r["schedule"] for r in result["equal_time"]] == ["2:1", "adaptive"]
    assert result["n_train"] == 32 and result["n_cycle_eval"] == 8
    data, page = (tmp_path / "gan-mnist.json", tmp_path / "gan-mnist.html")
    assert result["files"] == [str(data), str(page)]
    assert json.loads(data.read_text())["equal_time"] == result["equal_time"]
    html = page.read_text()
    assert "generator adaptive" in html and "FGSM training" in html
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined: offline


def test_gan_tables_show_cycles_equal_time_and_final_scores(
    tiny_mnist: list[float], run_cli: CliRun
) -> None:
    code, out, _ = run_cli(["reproduce", "gan", *GAN_TINY, "--pgd-steps", "1", "--schedule", "4:1"])
    assert code == 0
    for needle in ("accuracy per cycle", "Equal training time", "After the last cycle", "PGD-1"):
        assert needle in out
    assert "generator 4:1" in out
    assert "input gradient" not in out


def test_gan_with_gradient_input_says_so_in_json_and_tables(
    tiny_mnist: list[float], run_cli: CliRun
) -> None:
    argv = ["reproduce", "gan", *GAN_TINY, "--pgd-steps", "1", "--schedule", "2:1"]
    code, out, _ = run_cli([*argv, "--gen-input", "gradient", "--json"])
    assert code == 0 and json.loads(out)["gen_input"] == "gradient"
    code, out, _ = run_cli([*argv, "--gen-input", "gradient"])
    footer = " ".join(out.split())  # the console wraps it at its width
    assert code == 0 and "the generator sees the classifier's input gradient" in footer


@pytest.mark.real_data
def test_thesis_on_real_mnist_prints_the_comparison_and_writes_files(
    real_data_dir: Path, tmp_path: Path
) -> None:
    argv = [
        sys.executable,
        "-m",
        "advhpo",
        "reproduce",
        "thesis",
        "--dataset",
        "mnist",
        "--data-dir",
        str(real_data_dir),
        "--offline",
        "--epochs",
        "1",
        "--train-subset",
        "1024",
        "--eval-subset",
        "200",
        "--curve-subset",
        "50",
        "--members",
        "2",
        "--pgd-steps",
        "1",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    assert "0.9907" in proc.stdout and "FGSM(0.3) with the 2-net vote" in proc.stdout
    result = json.loads((tmp_path / "thesis-mnist.json").read_text())
    assert [r["thesis"] for r in result["rows"]] == [0.9907, 0.012, 0.8405, 0.899]
    assert result["n_train"] == 1024 and result["n_eval"] == 200
    undefended = result["stages"]["undefended"]
    assert undefended["clean_acc"] > 0.25  # 8 SGD steps on real digits: well above chance (0.1)
    assert undefended["eps_curve"]["n"] == 50 and len(undefended["eps_curve"]["eps"]) == 11
    assert "Thesis protocol" in (tmp_path / "thesis-mnist.html").read_text()
