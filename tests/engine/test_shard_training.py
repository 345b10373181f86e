"""Training from tar shards through the one engine: a crash in the middle of an epoch resumed
bit for bit, torchrun's restart continuing the run in --out, a resumed run reading its
shards at another path, and the options that do not apply to shards refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.cli import main
from convnet.data.shard_source import ShardSource
from convnet.engine.int8 import cpu_has_vnni
from convnet.engine.train import TrainConfig, fit
from convnet.errors import UserError
from tests.helpers.cli import refused
from tests.helpers.shard_data import manifest
from tests.helpers.training import checkpoint_state, quiet

RUN = ["lenet5", "--epochs", "2", "--batch-size", "16", "--precision", "fp32", "--device", "cpu"]


def _config(shards, out, **values) -> TrainConfig:
    base = dict(model="lenet5", data=str(shards), workers=0, shard_streams=2, epochs=2,
                batch_size=16, precision="fp32", device="cpu", lr=0.05, out=str(out))  # fmt: skip
    return TrainConfig(**{**base, **values})


def _same_weights(first, second) -> bool:
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    return all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture(scope="module")
def straight(shards, tmp_path_factory):
    """Two epochs without a stop: 80 images as 2 streams, 5 steps of 16 per epoch."""
    out = tmp_path_factory.mktemp("straight") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(_config(shards, out), log=quiet)
    finally:
        torch.set_num_threads(threads)
    return out


def test_a_crash_mid_epoch_resumes_bit_for_bit(shards, straight, tmp_path, monkeypatch, one_thread):
    original, calls = train_module.save_checkpoint, []

    class Crash(BaseException):
        """Stands in for the process dying right after a checkpoint write."""

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # steps 2 and 4, the end of epoch 1, step 2 of epoch 2
            raise Crash

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        fit(_config(shards, tmp_path / "run", checkpoint_every=2), log=quiet)
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    state = checkpoint_state(tmp_path / "run" / "checkpoint.safetensors")
    assert (state["epoch"], state["batch"]) == (1, 2)
    fit(TrainConfig(), resume=tmp_path / "run", log=quiet)
    assert _same_weights(tmp_path / "run", straight)


def test_the_same_command_under_torchrun_continues_the_run_in_out(
    shards, straight, tmp_path, monkeypatch, capsys, one_thread
):
    """As torchrun starts it, first and again after a failure: the command starts the run in
    --out, then continues it from its checkpoint (here, of epoch 1); a command that differs
    is refused rather than continuing another run."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    out = tmp_path / "run"
    arguments = ["train", *RUN, "--data", str(shards), "--workers", "0", "--shard-streams", "2"]
    arguments += ["--lr", "0.05", "--out", str(out)]
    assert main([*arguments, "--stop-after-epoch", "1"]) == 0
    refused(capsys, [*arguments, "--lr", "0.1"], f"--out {out} holds the checkpoint", "--lr")
    assert main(arguments) == 0
    assert "Resuming" in capsys.readouterr().err
    assert _same_weights(out, straight)


def test_a_resumed_run_reads_its_shards_at_another_path(shards, straight, tmp_path, capsys):
    out = tmp_path / "run"
    fit(_config(shards, out), stop_after_epoch=1, log=quiet)
    moved = shutil.copytree(shards, tmp_path / "moved")
    fit(None, out, changes={"data": str(moved)}, log=quiet)  # --resume OUT --data MOVED
    assert _same_weights(out, straight)
    pattern = f"{moved}/{{train-{{000000..000003}},val-000000}}.tar"  # 4 of the 5 shards
    out = tmp_path / "again"
    fit(_config(shards, out), stop_after_epoch=1, log=quiet)
    refused(capsys, ["train", "--resume", str(out), "--data", pattern], "the same")


def test_options_that_do_not_apply_to_shards_are_refused(shards, folders, tmp_path, capsys):
    base = ["train", "lenet5", "--workers", "0", "--out", str(tmp_path / "run")]
    refused(capsys, [*base, "--data", str(shards), "--val-fraction", "0.3"], "--val-fraction")
    refused(capsys, [*base, "--data", str(folders), "--shard-streams", "2"], "--shard-streams")
    refused(capsys, [*base, "--dataset", "mnist", "--shard-streams", "2"], "--shard-streams")
    refused(capsys, [*base, "--data", f"{shards}/train-000000.tar"], "names no val shards")
    refused(capsys, [*base, "--data", f"{tmp_path}/train-{{000000..000001}}.tar"], "manifest")
    weights = tmp_path / "lenet5.safetensors"
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    save_weights(weights, get_model("lenet5", num_classes=5))
    evaluate = ["evaluate", "lenet5", "--weights", str(weights), "--data", str(shards)]
    for extra in (["--val-fraction", "0.3"], ["--seed", "1"], ["--ground-truth", "x.csv"]):
        refused(capsys, [*evaluate, *extra], extra[0], "hold their splits and labels")
    with pytest.raises(UserError, match="3 streams, which 2 processes cannot share"):
        ShardSource(shards, (1, 32, 32), ((0.5,), (0.5,)), streams=3, world_size=2)


@pytest.mark.skipif(not cpu_has_vnni(), reason="int8 needs a CPU with VNNI")
def test_a_run_on_shards_is_scored_in_int8(shards, straight, tmp_path, capsys):
    """Calibrated on the run's training shards, checked on its validation shards (labels
    read from the samples)."""
    run_dir = shutil.copytree(straight, tmp_path / "run")  # quantizing writes beside the run
    arguments = ["evaluate", str(run_dir), "--precision", "int8", "--workers", "0", "--json"]
    assert main(arguments) == 0
    note = json.loads(capsys.readouterr().out)["int8"]
    splits = manifest(shards)["splits"]  # fewer images than int8 takes: all of them
    assert note["calibration"] == f"{splits['train']['images']} of the run's training images"
    assert note["checked_images"] == splits["val"]["images"] and "int8_top1_error" in note
