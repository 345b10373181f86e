"""Shards as a data source (`--data OUT`): the order of an epoch (seeded, the same step by
step whatever the processes and workers, exact from any step), disjoint reads per rank, and
damaged shards (skipped and listed by shard, refused with --strict, refused when they are
not the bytes their manifest describes)."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

import convnet.data.shard_source as shard_source
from convnet.data.folders import open_image_collection
from convnet.data.shard_plan import buffer_order
from convnet.data.shard_source import ShardSource
from convnet.wording import counted
from tests.helpers.cli import refused, run_in_process
from tests.helpers.folder_data import make_split_folders
from tests.helpers.shard_data import describe_again, make_shards, manifest, rewrite_shard

SIZE, NORMALIZATION = (3, 16, 16), ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
TRAIN, VAL = 30, 10  # 6 and 2 images of each of 5 classes


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("folder") / "data", 6, 2)


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory) -> Path:
    return make_shards(folder, tmp_path_factory.mktemp("shards") / "out", "4")


def _source(shards: Path, world_size: int = 1, workers: int = 0, streams: int = 4, **options):
    return ShardSource(
        shards,
        SIZE,
        NORMALIZATION,
        workers=workers,
        streams=streams,
        world_size=world_size,
        **options,
    )


def _epoch(source, batch_size, rank=0, world_size=1, epoch=1, start=0):
    return list(source.train_batches(epoch, batch_size, 5, rank, world_size, start))


def test_two_ranks_train_on_the_batches_of_one_at_twice_the_batch(shards):
    """Augmented, each image by its own draws: rank r of 2 with batch 4 takes positions r,
    r + 2, … of the one-process batch of 8, step by step, and every image comes once."""
    single = _epoch(_source(shards), 8)
    assert len(single) == 4  # 30 images as 4 streams of 8 (2 repeated): 32 positions
    ranks = [_epoch(_source(shards, world_size=2), 4, rank, 2) for rank in (0, 1)]
    for step, (images, labels, _) in enumerate(single):
        for rank in (0, 1):
            assert torch.equal(ranks[rank][step][0], images[rank::2])
            assert torch.equal(ranks[rank][step][1], labels[rank::2])
    labels = torch.cat([batch.labels for batch in single])
    assert sorted(labels.tolist()[:TRAIN]) != labels.tolist()[:TRAIN]  # shuffled
    counts = torch.bincount(labels, minlength=5)
    assert counts.sum() == 32 and (counts >= 6).all()  # every image, and 2 repeated


def test_the_order_is_seeded_and_exact_from_any_step(shards):
    source = _source(shards)
    whole = _epoch(source, 8)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole, _epoch(source, 8), strict=True))
    resumed = _epoch(source, 8, start=2)  # a run resumed at step 2 of the epoch
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole[2:], resumed, strict=True))
    other = torch.cat([batch.labels for batch in _epoch(source, 8, epoch=2)])
    assert not torch.equal(torch.cat([batch.labels for batch in whole]), other)


def test_worker_processes_give_the_same_batches(shards):
    alone = _epoch(_source(shards), 8)
    shared = _epoch(_source(shards, workers=2), 8)  # 2 decoding processes, 2 streams each
    for (first, first_labels, _), (second, second_labels, _) in zip(alone, shared, strict=True):
        assert torch.equal(first, second) and torch.equal(first_labels, second_labels)


def test_workers_are_kept_across_epochs_and_shards_verified_once(shards, tmp_path, monkeypatch):
    """2 workers started once for 3 epochs (one resumed mid-way), each epoch's batches those
    of no workers; every shard's SHA-256 checked once by each source (by one of the two
    workers, or by the source without workers)."""
    path = tmp_path / "starts"
    checked = tmp_path / "checked"
    verify = shard_source.verify_shard

    def record_start(worker_id: int) -> None:
        with path.open("a") as handle:
            handle.write("started\n")

    def record_check(shard) -> None:
        with checked.open("a") as handle:
            handle.write(f"{shard.path}\n")
        verify(shard)

    monkeypatch.setattr(shard_source, "ignore_interrupts", record_start)
    monkeypatch.setattr(shard_source, "verify_shard", record_check)
    kept, alone = _source(shards, workers=2), _source(shards)
    try:
        for epoch, start in ((1, 0), (2, 0), (2, 1)):
            ours, theirs = (_epoch(s, 8, epoch=epoch, start=start) for s in (kept, alone))
            for mine, other in zip(ours, theirs, strict=True):
                assert torch.equal(mine.images, other.images)
                assert torch.equal(mine.labels, other.labels)
    finally:
        kept.close()
    assert len(path.read_text().splitlines()) == 2
    counts = Counter(checked.read_text().splitlines())
    assert len(counts) == len(manifest(shards)["splits"]["train"]["shards"])
    assert set(counts.values()) == {2}


def test_each_rank_reads_its_own_images(shards, monkeypatch):
    """The ranks' reads are disjoint but for the epoch's padding (the first images again),
    and no image is read twice by one rank."""
    reads: list[list[int]] = []
    original = shard_source.read_samples

    def recording(shard, first, count, classes):
        reads[-1].extend(shard.offset + first + k for k in range(count))
        return original(shard, first, count, classes)

    monkeypatch.setattr(shard_source, "read_samples", recording)
    for rank in (0, 1):
        reads.append([])
        _epoch(_source(shards, world_size=2), 4, rank, 2)
    assert all(len(read) == len(set(read)) == 16 for read in reads)
    assert set(reads[0]) | set(reads[1]) == set(range(TRAIN))
    assert len(set(reads[0]) & set(reads[1])) == 2


def test_the_buffer_holds_at_most_its_size():
    order = buffer_order(50, 8, seed=3)
    assert sorted(order.tolist()) == list(range(50))
    assert all(arrival <= out + 8 for out, arrival in enumerate(order.tolist()))
    assert order.tolist() != buffer_order(50, 8, seed=4).tolist()


def test_evaluation_reads_every_held_out_image_once(folder, shards):
    expected = [label for _, label in open_image_collection(folder, "val").samples]
    found = {}
    for rank in (0, 1):
        source = _source(shards, train=False)
        for _, labels, indices in source.eval_batches(4, rank, 2):
            found.update(zip(indices.tolist(), labels.tolist(), strict=True))
    assert found == dict(enumerate(expected))


# --- damaged shards ---------------------------------------------------------------------


@pytest.fixture
def weights(tmp_path) -> Path:
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    path = tmp_path / "lenet5.safetensors"
    save_weights(path, get_model("lenet5", num_classes=5))
    return path


@pytest.fixture
def copy(shards, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(shards, tmp_path / "copy"))


def _evaluate(capfd, weights, data, *extra, check=False):
    arguments = ["evaluate", "lenet5", "--weights", str(weights), "--data", str(data)]
    return run_in_process(capfd, *arguments, "--workers", "0", *extra, check=check)


def _truncate(path: Path) -> int:
    """Cut the shard inside its second sample's image; returns the samples lost."""
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if m.name.endswith(".jpg")]
    path.write_bytes(path.read_bytes()[: members[1].offset_data + 100])
    return len(members) - 1


@pytest.mark.parametrize("damage", ["truncated", "no label", "label outside"])
def test_damaged_samples_are_skipped_and_listed_by_shard(damage, copy, weights, capfd):
    name = "val-000001.tar"
    if damage == "truncated":
        lost, reason = _truncate(copy / name), "truncated"
        describe_again(copy, name)
    else:
        lost = 1
        key = "cls" if damage == "no label" else None
        reason = "has no class label" if key else "outside the manifest's 5 classes"

        def change(sample):
            if sample["__key__"] == "00000005":
                if key:
                    del sample[key]
                else:
                    sample["cls"] = b"7"
            return sample

        rewrite_shard(copy, name, change)
    result = _evaluate(capfd, weights, copy, "--json", check=True)
    scored = json.loads(result.stdout)
    assert scored["num_examples"] == VAL - lost and scored["num_skipped"] == lost
    assert all(row["file"] == str(copy / name) for row in scored["skipped"])
    assert reason in scored["skipped"][-1]["reason"]
    shown = _evaluate(capfd, weights, copy, check=True).stdout  # the text names the shard too
    assert f"skipped {counted(lost, 'file')}: {copy / name}" in shown
    strict = _evaluate(capfd, weights, copy, "--strict")
    assert strict.returncode == 2 and str(copy / name) in strict.stderr, strict.stderr


def test_a_shard_that_is_not_the_manifests_is_refused(copy, weights, capsys):
    path = copy / "val-000000.tar"
    data = bytearray(path.read_bytes())
    data[2000] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    arguments = ["evaluate", "lenet5", "--weights", str(weights), "--data", str(copy)]
    refused(capsys, [*arguments, "--workers", "0"], str(path), "SHA-256", manifest_sha(copy))
    path.write_bytes(bytes(data[:-512]))  # a partial copy
    refused(capsys, [*arguments, "--workers", "0"], f"holds {len(data) - 512:,} bytes, not the")


def manifest_sha(out: Path) -> str:
    return manifest(out)["splits"]["val"]["shards"][0]["sha256"]


def test_training_lists_damaged_training_samples_and_strict_refuses(copy, capfd):
    name = manifest(copy)["splits"]["train"]["shards"][2]["name"]
    lost = _truncate(copy / name)
    describe_again(copy, name)
    common = ["train", "lenet5", "--data", str(copy), "--epochs", "1", "--workers", "0"]
    result = run_in_process(capfd, *common, "--batch-size", "8", "--json", check=True)
    assert (
        f"Skipped {counted(lost, 'training image')} that cannot be used: {copy / name}"
        in result.stderr
    )
    assert json.loads(result.stdout)["num_skipped"] == lost
    strict = run_in_process(capfd, *common, "--strict", "--out", str(copy.parent / "strict"))
    assert strict.returncode == 2 and f"{copy / name}" in strict.stderr, strict.stderr
