"""Training on image folders, as one process and as two under torchrun (gloo on the CPU).

The 2-process run must end with identical weights on both ranks and with the weights of a
1-process run with the same global batch; a run stopped after an epoch and resumed must end
like the uninterrupted one; mistakes exit with status 2 and one clear message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from convnet.cli import main
from convnet.engine import distributed
from convnet.errors import UserError
from tests.helpers.distributed import CPU, _max_difference, _torchrun
from tests.helpers.folder_data import make_split_folders

TRAIN = ["lenet5", "--epochs", "2", "--lr", "0.05", "--precision", "fp32", "--workers", "0", *CPU]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("folders") / "data")


@pytest.fixture(scope="module")
def single_run(folders, tmp_path_factory) -> Path:
    """The reference: one process, global batch 16, two epochs without a stop."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            ["train", *TRAIN, "--data", str(folders), "--batch-size", "16", "--out", str(run_dir)]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return run_dir


# --- the distributed helpers ----------------------------------------------------------


def test_one_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with distributed.session("cpu") as session:
        assert (session.rank, session.world_size, session.backend) == (0, 1, None)
        assert distributed.is_main()
        assert distributed.all_reduce_sum(torch.tensor([1.5, 2.0])).tolist() == [1.5, 2.0]
        assert distributed.together(lambda first, second: first + second, 1, second=2) == 3
        assert distributed.first_failure(False) is None and distributed.first_failure(True) == 0
        assert distributed.broadcast_object({"a": 1}) == {"a": 1}
        with pytest.raises(UserError, match="mine"):
            distributed.together(lambda: (_ for _ in ()).throw(UserError("mine")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_nccl_without_gpus_is_a_user_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UserError, match="nccl needs NVIDIA GPUs"):
        distributed.start("auto", "nccl")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(UserError, match="RANK='one' is not a whole number"):
        distributed.start("cpu", "gloo")


# --- training runs --------------------------------------------------------------------


def test_stopped_and_resumed_run_ends_like_the_uninterrupted_one(
    folders, single_run, tmp_path, one_thread, capsys
):
    run_dir = tmp_path / "run"
    arguments = ["train", *TRAIN, "--data", str(folders), "--batch-size", "16"]
    assert main([*arguments, "--out", str(run_dir), "--stop-after-epoch", "1"]) == 0
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert _max_difference(run_dir / "model.safetensors", single_run / "model.safetensors") > 1e-3
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--json"]) == 0
    captured = capsys.readouterr()
    assert "Resuming" in captured.err and "at epoch 2, batch 0" in captured.err
    result = json.loads(captured.out)
    assert result["epochs"] == 2 and result["world_size"] == 1 and result["replicas_identical"]
    assert {"top1_error", "top5_error", "per_class", "easiest", "hardest"} <= set(result)
    assert (run_dir / "report.html").is_file()
    assert _max_difference(run_dir / "model.safetensors", single_run / "model.safetensors") == 0

    def without_timing(path: Path) -> list[list[str]]:  # all but epoch_seconds, images/s
        return [line.split(",")[:-2] for line in path.read_text().splitlines()]

    assert without_timing(run_dir / "metrics.csv") == without_timing(single_run / "metrics.csv")


@pytest.mark.slow
def test_two_processes_match_one_and_resume(folders, single_run, tmp_path):
    """torchrun, 2 ranks × batch 8, stopped after epoch 1 and resumed by a new torchrun:
    both ranks end with identical weights (SHA-256 of each replica's state), equal to the
    1-process run with batch 16 up to summation order, far from the initial weights."""
    run_dir = tmp_path / "run"
    arguments = [*TRAIN, "--data", str(folders), "--batch-size", "8", "--json"]
    first = _torchrun(*arguments, "--out", str(run_dir), "--stop-after-epoch", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout)["stopped_after_epoch"] == 1  # rank 1 printed nothing
    second = _torchrun("--resume", str(run_dir), "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout)
    assert second.stderr.count("Resuming") == 1  # rank 0 alone logs
    assert result["world_size"] == 2 and result["global_batch_size"] == 16
    assert len(result["weight_digests"]) == 2
    assert result["weight_digests"][0] == result["weight_digests"][1]
    assert _max_difference(run_dir / "model.safetensors", single_run / "model.safetensors") < 1e-5
    torch.manual_seed(0)
    from convnet.models import get_model

    initial = tmp_path / "initial.safetensors"
    from convnet.engine.checkpoint import save_weights

    save_weights(initial, get_model("lenet5", num_classes=5, in_channels=3))
    assert _max_difference(initial, single_run / "model.safetensors") > 1e-2


@pytest.mark.slow
def test_a_mistake_under_torchrun_is_reported_once(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _torchrun("lenet5", "--data", str(tmp_path / "empty"), "--workers", "0")
    assert result.returncode != 0
    assert result.stderr.count("holds no class folders") == 1
    # Rank 0 exits with status 2; torchrun then ends rank 1 (status 2 or its SIGTERM,
    # whichever comes first), so no rank is left waiting.
    assert "exitcode  : 2" in result.stderr
    assert "convnet/engine" not in result.stderr  # no traceback from our code, only torchrun's


# --- bad input ------------------------------------------------------------------------


def test_bad_input_exits_2_with_a_message(folders, tmp_path, capsys, one_thread):
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    # another network's weights: unusable (grey LeNet-5 weights would be adapted to colour)
    weights = tmp_path / "other.safetensors"

    save_weights(weights, get_model("resnet_mini", num_classes=10, in_channels=3))
    cases = [
        (["--data", str(tmp_path / "missing")], "does not exist"),
        (["--data", str(folders), "--val-fraction", "1.5"], "--val-fraction"),
        (["--data", str(folders), "--batch-size", "0"], "--batch-size"),
        (["--data", str(folders), "--weights", str(weights)], "does not fit this model"),
        (["--data", str(folders), "--backend", "mpi"], "Unknown backend"),
    ]
    for extra, message in cases:
        assert main(["train", "lenet5", "--workers", "0", *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "Cannot resume" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_train_a_data_set_in_memory(mnist_dir, tmp_path):
    """torchrun, 2 ranks × batch 16 on MNIST: the weights of 1 process × batch 32, as for
    image folders (tests/test_distributed.py), with per-image augmentation on."""
    from tests.helpers.distributed import _max_difference, _torchrun

    common = [
        "lenet5",
        "--dataset",
        "mnist",
        "--train-subset",
        "640",
        "--test-subset",
        "200",
        "--epochs",
        "1",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--json",
    ]
    double = _torchrun(*common, "--batch-size", "16", "--out", str(tmp_path / "two"))
    assert double.returncode == 0, double.stderr[-3000:]
    result = json.loads(double.stdout)
    assert result["world_size"] == 2 and result["replicas_identical"]
    single = main(["train", *common, "--batch-size", "32", "--out", str(tmp_path / "one")])
    assert single == 0
    assert (
        _max_difference(
            tmp_path / "two" / "model.safetensors", tmp_path / "one" / "model.safetensors"
        )
        < 1e-5
    )
