"""Data sources: the order of an epoch over processes, and augmentation drawn per image."""

from __future__ import annotations

import os

import torch

from convnet.data import folder_source
from convnet.data.folder_source import _SeededSamples
from convnet.data.sources import TensorSource, epoch_order
from convnet.data.transforms import AUGMENTATIONS
from tests.helpers.cifar_data import (
    fetch,
    write_folder,
)


def test_augmentation_is_drawn_per_image_not_per_batch(registered, tmp_path):
    files, records = registered
    assert fetch(write_folder(tmp_path / "source", files), tmp_path / "cache") == 0
    source = TensorSource.from_dataset(
        "cifar10", (3, 32, 32), ((0.0,) * 3, (1.0,) * 3), data_dir=tmp_path / "cache", augment=True
    )
    assert source.channels == 3 and source.augmentation is AUGMENTATIONS["crop_flip"]

    def epoch(batch_size: int) -> torch.Tensor:
        return torch.cat([batch.images for batch in source.train_batches(1, batch_size, seed=5)])

    small, large = epoch(7), epoch(64)
    assert torch.equal(small, large)
    assert not torch.equal(small, epoch_unaugmented(source))


def epoch_unaugmented(source: TensorSource) -> torch.Tensor:
    source.augment = False
    try:
        return torch.cat([batch.images for batch in source.train_batches(1, 64, seed=5)])
    finally:
        source.augment = True


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

    samples = _SeededSamples(Noise())
    first = samples[0, 0, 2]  # (seed, epoch, index): what the workers are asked for
    torch.rand(5)  # other draws in between change nothing
    assert torch.equal(samples[0, 0, 2], first) and not torch.equal(samples[0, 0, 1], first)
    assert not torch.equal(samples[0, 1, 2], first)


def test_per_image_seeding_touches_only_the_cpu_generator(monkeypatch):
    """torch.manual_seed would visit every device, per image (before CUDA starts, formatting
    the caller's stack for each). The draws stay those of the CPU generator seeded by
    (seed, epoch, index)."""

    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return torch.rand(3)

    def every_device(seed):
        raise AssertionError("torch.manual_seed called per image")

    monkeypatch.setattr(torch, "manual_seed", every_device)
    drawn = _SeededSamples(Noise())[7, 1, 0]
    generator = torch.Generator().manual_seed(folder_source.mix(7, 1, 0))
    assert torch.equal(drawn, torch.rand(3, generator=generator))


def _counting_starts(monkeypatch, module, path):
    """Each worker process's start, as a line in `path` (workers may be other processes)."""

    def record(worker_id: int) -> None:
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    monkeypatch.setattr(module, "ignore_interrupts", record)
    return lambda: len(path.read_text().splitlines()) if path.exists() else 0


def test_workers_start_once_and_epochs_keep_their_seeded_order(tmp_path, monkeypatch):
    """Two epochs and two evaluations through 2 persistent workers: 2 starts for training, 2
    for evaluation, and each epoch's batches those of a source without workers (the
    seeded order, each image's own draws), a resumed epoch's too."""
    from tests.helpers.folder_data import make_split_folders

    folder = make_split_folders(tmp_path / "data", 4, 2)
    starts = _counting_starts(monkeypatch, folder_source, tmp_path / "starts")
    options = dict(workers=2, random_erase=0.5)
    kept = folder_source.FolderSource(folder, (3, 16, 16), ((0.5,) * 3, (0.25,) * 3), **options)
    fresh = folder_source.FolderSource(folder, (3, 16, 16), ((0.5,) * 3, (0.25,) * 3), workers=0,
                                 random_erase=0.5)  # fmt: skip
    try:
        for epoch, start in ((0, 0), (1, 0), (1, 2)):
            ours, theirs = (list(s.train_batches(epoch, 4, 7, start_batch=start))
                            for s in (kept, fresh))  # fmt: skip
            assert len(ours) == len(theirs) == 5 - start
            for mine, other in zip(ours, theirs, strict=True):
                assert all(torch.equal(a, b) for a, b in zip(mine, other, strict=True))
            assert starts() == 2
        for _ in range(2):
            assert sum(len(labels) for _, labels, _ in kept.eval_batches(4)) == 10
        assert starts() == 4
    finally:
        kept.close()
