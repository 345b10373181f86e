"""Training as one process and as two under torchrun (gloo on the CPU), on one machine and
on two "nodes" that meet at a c10d rendezvous and each read the data at a path of its own.

The 2-process run must end with identical weights on both ranks and with the weights of a
1-process run with the same global batch (image folders, tar shards, a data set in memory);
a run stopped after an epoch and resumed, or whose process died and torchrun started again,
must end like the uninterrupted one; mistakes exit with status 2 and one clear message.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from convnet.cli import main
from convnet.engine import distributed
from convnet.errors import UserError
from tests.helpers.distributed import CPU, _max_difference, _torchrun
from tests.helpers.folder_data import make_split_folders
from tests.helpers.nodes import rank_zero_output, two_nodes
from tests.helpers.shard_data import make_shards

TRAIN = ["lenet5", "--epochs", "2", "--lr", "0.05", "--precision", "fp32", "--workers", "0", *CPU]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("folders") / "data")


@pytest.fixture(scope="module")
def shards(folders, tmp_path_factory) -> Path:
    return make_shards(folders, tmp_path_factory.mktemp("shards") / "out", "16")


@pytest.fixture(scope="module")
def single_run(folders, tmp_path_factory) -> Path:
    """The reference: one process, global batch 16, two epochs without a stop."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            [
                "train",
                *TRAIN,
                "--data",
                str(folders),
                "--batch-size",
                "16",
                "--out",
                str(run_dir),
                "--no-report",
            ]  # fmt: skip
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
def test_two_nodes_match_one_process_and_resume(folders, single_run, tmp_path, capsys):
    """Two nodes × batch 8, each reading its own copy of the folders, stopped after epoch 1
    and resumed by one process (batch 16, the same global batch): the weights of the
    1-process run up to summation order, far from the initial weights."""
    run_dir = tmp_path / "run"
    copies = [shutil.copytree(folders, tmp_path / name) for name in ("node-a", "node-b")]
    arguments = [*TRAIN, "--batch-size", "8", "--json", "--out", str(run_dir)]
    first = two_nodes(
        [[*arguments, "--data", str(copy), "--stop-after-epoch", "1"] for copy in copies]
    )
    assert all(result.returncode == 0 for result in first), first[0].stderr[-3000:]
    assert json.loads(rank_zero_output(first))["stopped_after_epoch"] == 1
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--resume", str(run_dir), "--json", "--no-report"]) == 0
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "Resuming" in captured.err
    assert result["world_size"] == 1 and result["global_batch_size"] == 16
    assert _max_difference(run_dir / "model.safetensors", single_run / "model.safetensors") < 1e-6
    torch.manual_seed(0)
    from convnet.models import get_model

    initial = tmp_path / "initial.safetensors"
    from convnet.engine.checkpoint import save_weights

    save_weights(initial, get_model("lenet5", num_classes=5, in_channels=3))
    assert _max_difference(initial, single_run / "model.safetensors") > 1e-2


@pytest.mark.slow
def test_two_nodes_train_on_shards_and_survive_a_failure(shards, tmp_path):
    """Two nodes × batch 8 reading the shards at paths of their own, torchrun
    --max-restarts 1: rank 1 dies early in epoch 2, torchrun starts both processes again,
    the same command continues from the checkpoint of epoch 1, and the run ends with the
    weights of one process with batch 16 (the same 2 streams)."""
    common = [*TRAIN, "--shard-streams", "2", "--json"]
    copies = [shutil.copytree(shards, tmp_path / name) for name in ("node-a", "node-b")]
    run_dir = tmp_path / "run"
    results = two_nodes(
        [
            [*common, "--batch-size", "8", "--data", str(copy), "--out", str(run_dir)]
            for copy in copies
        ],
        module="tests.helpers.crash_once",
        max_restarts=1,
        env={"CRASH_ONCE": str(tmp_path / "crashed")},
    )
    assert (tmp_path / "crashed").exists()
    assert all(result.returncode == 0 for result in results), results[0].stderr[-3000:]
    assert "Resuming" in "".join(result.stderr for result in results)
    result = json.loads(rank_zero_output(results))
    assert result["world_size"] == 2 and result["replicas_identical"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = ["train", *common, "--batch-size", "16", "--data", str(shards), "--no-report"]
        assert main([*single, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    difference = _max_difference(
        run_dir / "model.safetensors", tmp_path / "one" / "model.safetensors"
    )
    assert difference < 1e-6, difference


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


@pytest.mark.parametrize(
    "mistake, said",
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--lang", "xx"], "xx"),
        (["--precision", "fp64"], "Unknown precision 'fp64'"),
        (["--precision", "int8"], "--precision int8 is for inference"),
    ],
    ids=["count", "language", "unknown precision", "int8 in training"],
)
def test_a_mistake_every_rank_makes_is_reported_by_rank_0_alone(mistake, said, monkeypatch, capsys):
    """Checked before any process group forms (here there is none to join): rank 0 reports
    it, the others exit 2 saying nothing. Each was printed by both ranks, one of them
    prefixed "(rank 1)"."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, lines in (("1", 0), ("0", 1)):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "lenet5", *mistake, "--no-report"]) == 2
        error = capsys.readouterr().err
        assert error.count("convnet: error") == lines and "Traceback" not in error, error
    assert said in error


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
def test_two_nodes_train_a_data_set_in_memory(mnist_dir, tmp_path):
    """Two nodes × batch 16 on MNIST: the weights of 1 process × batch 32, as for image
    folders and shards."""
    common = [
        "lenet5",
        "--dataset",
        "mnist",
        "--train-subset",
        "320",
        "--test-subset",
        "100",
        "--epochs",
        "1",
        "--precision",
        "fp32",
        "--no-augment",
        "--json",
        "--no-report",
    ]
    double = two_nodes([[*common, "--batch-size", "16", "--out", str(tmp_path / "two")]] * 2)
    assert all(result.returncode == 0 for result in double), double[0].stderr[-3000:]
    result = json.loads(rank_zero_output(double))
    assert result["world_size"] == 2 and result["replicas_identical"]
    single = main(["train", *common, *CPU, "--batch-size", "32", "--out", str(tmp_path / "one")])
    assert single == 0
    difference = _max_difference(
        tmp_path / "two" / "model.safetensors", tmp_path / "one" / "model.safetensors"
    )
    assert difference < 1e-6, difference
