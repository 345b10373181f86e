"""Training on image folders, as one process and as two under torchrun (gloo on the CPU).

The 2-process run must end with identical weights on both ranks and with the weights of a
1-process run with the same global batch; a run stopped after an epoch and resumed must end
like the uninterrupted one; mistakes exit with status 2 and one clear message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from folder_data import make_split_folders
from safetensors.torch import load_file

from convnet.cli import main
from convnet.data.sources import _SeededSamples, epoch_order
from convnet.engine import distributed
from convnet.errors import UserError

# On the CPU, whatever the machine has: the bit-exact checks below rely on the CPU's
# deterministic kernels, and on a one-GPU machine a second rank would have no GPU of its own.
CPU = ["--device", "cpu"]
TRAIN = ["lenet5", "--epochs", "2", "--lr", "0.05", "--precision", "fp32", "--workers", "0", *CPU]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("folders") / "data")


@pytest.fixture
def one_thread():
    """One thread per process: two spinning OpenMP threads on a busy 2-core machine are ~40×
    slower than one (measured: lenet5 step 170 ms vs 4.5 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _max_difference(first: Path, second: Path) -> float:
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys()
    return max((a[key].float() - b[key].float()).abs().max().item() for key in a)


def _torchrun(*arguments: str) -> subprocess.CompletedProcess:
    """`convnet train ARGUMENTS` as 2 processes on the CPU, talking over gloo."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "convnet",
            "train",
            *arguments,
            *CPU,
            "--backend",
            "gloo",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


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


def test_two_shards_cover_the_single_process_batches():
    """DistributedSampler semantics: global step s of 2 processes × batch 4 holds the same
    images as step s of 1 process × batch 8, and every epoch has its own permutation."""
    one = epoch_order(40, seed=3, epoch=0).tolist()
    ranks = [epoch_order(40, seed=3, epoch=0, rank=r, world_size=2).tolist() for r in range(2)]
    assert sorted(one) == list(range(40)) and one != list(range(40))  # a permutation, shuffled
    for step in range(5):
        global_batch = ranks[0][step * 4 : step * 4 + 4] + ranks[1][step * 4 : step * 4 + 4]
        assert sorted(global_batch) == sorted(one[step * 8 : step * 8 + 8])
    assert epoch_order(40, seed=3, epoch=1).tolist() != one  # a new permutation every epoch
    uneven = [epoch_order(41, seed=3, epoch=0, rank=r, world_size=2) for r in range(2)]
    assert len(uneven[0]) == len(uneven[1]) == 21  # equal steps: the shorter rank repeats one
    assert set(torch.cat(uneven).tolist()) == set(range(41))


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.rand(3)

    samples = _SeededSamples(Noise(), seed=0, epoch=0)
    first = samples[2]
    torch.rand(5)  # other draws in between change nothing
    assert torch.equal(samples[2], first) and not torch.equal(samples[1], first)
    samples.epoch = 1
    assert not torch.equal(samples[2], first)


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
    weights = tmp_path / "grey.safetensors"  # for one input channel, not three: unusable
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    save_weights(weights, get_model("lenet5", num_classes=10, in_channels=1))
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
