"""Image files leave the workers as uint8 pixels and are normalised (and randomly erased) on
the model's device by the source's `DeviceNormalize`: the same numbers as the float path
the workers ran before (normalised there, erased there by torchvision), a quarter of the
bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from convnet.data.folder_source import FolderSource, _SeededSamples
from convnet.data.folders import FolderDataset
from convnet.data.preparation import DigitPreprocess, _Preprocess
from convnet.data.sources import epoch_order
from convnet.data.transforms import erase_rectangles
from tests.helpers.folder_data import make_split_folders

SIZE, NORMALIZATION = (3, 32, 32), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("photos") / "data", 4, 3)


def float_path(pixels: _Preprocess) -> _Preprocess:
    """The workers' transform before: the same steps, then [0, 1] and normalised."""
    return _Preprocess(pixels.steps, pixels.mean, pixels.std, pixels.channels, pixels.keep)


class FloatWorkerTransform:
    """The workers' training transform before: the float path, then torchvision's
    RandomErasing on the normalised tensor."""

    def __init__(self, pixels: _Preprocess, erase: float) -> None:
        self.float, self.erasing = float_path(pixels), v2.RandomErasing(p=erase)
        self.decode = pixels.decode

    def __call__(self, image):
        return self.erasing(self.float(image))


def test_evaluation_batches_equal_the_float_path(folder):
    source = FolderSource(folder, SIZE, NORMALIZATION, workers=0, train=False)
    new, labels = [], []
    for images, batch_labels, _ in source.eval_batches(4):
        assert images.dtype == torch.uint8
        new.append(source.device_normalize(images, CPU))
        labels.append(batch_labels)
    transform = float_path(source.evaluate_transform)
    old = [transform(transform.decode(path)) for path, _ in source.eval_collection.samples]
    assert (torch.cat(new) - torch.stack(old)).abs().max() <= 1e-6
    assert torch.cat(labels).tolist() == [label for _, label in source.eval_collection.samples]


def test_training_batches_with_policy_and_erasing_equal_the_float_path(folder):
    """Auto-augmented on the image, erased on the device after normalising: the rectangles
    are torchvision's, drawn from each image's own (seed, epoch, index) as before, and
    erased to 0 (the mean) as its RandomErasing(value=0) after Normalize."""
    source = FolderSource(
        folder, SIZE, NORMALIZATION, workers=0, auto_augment="ta_wide", random_erase=0.6
    )
    batches = list(source.train_batches(1, 8, seed=3))
    new = torch.cat([source.device_normalize(b.images, CPU, b.erase) for b in batches])
    erased = torch.cat([b.erase for b in batches])
    old_transform = FloatWorkerTransform(source.train_transform, 0.6)
    old = _SeededSamples(FolderDataset(source.train_collection, old_transform))
    order = epoch_order(source.train_count, seed=3, epoch=1).tolist()
    expected = torch.stack([old[3, 1, index][0] for index in order])
    assert (new - expected).abs().max() <= 1e-6
    assert 0 < int((erased[:, 2] > 0).sum()) < len(erased)  # some erased, some whole
    first = int((erased[:, 2] > 0).nonzero()[0])
    top, left, height, width = erased[first].tolist()
    assert (new[first, :, top : top + height, left : left + width] == 0).all()


def test_erasing_sets_only_each_rectangle_to_zero():
    images = torch.ones(2, 3, 6, 5)
    erased = erase_rectangles(images, torch.tensor([[1, 2, 3, 2], [0, 0, 0, 0]]))
    assert erased[0, :, 1:4, 2:4].eq(0).all() and erased[0].sum() == 3 * (30 - 6)
    assert torch.equal(erased[1], images[1])


def test_workers_send_a_quarter_of_float32s_bytes(folder):
    """Through a real worker process: 3·H·W bytes an image."""
    source = FolderSource(folder, SIZE, NORMALIZATION, workers=1)
    try:
        images = next(iter(source.train_batches(0, 8, seed=0))).images
    finally:
        source.close()
    assert images.dtype == torch.uint8
    per_image = images.element_size() * images[0].numel()
    assert per_image == 3 * 32 * 32
    float_transform = float_path(source.train_transform)
    path = source.train_collection.samples[0][0]
    before = float_transform(float_transform.decode(path))
    assert before.element_size() * before.numel() == 4 * per_image


def test_digits_keep_float_and_are_normalised_on_the_device(folder):
    """A digit model's files, prepared as MNIST was (resized: no uint8), in [0, 1]."""
    mean, std = (0.1307,), (0.3081,)
    size = (1, 32, 32)
    source = FolderSource(folder, size, (mean, std), workers=0, train=False, digits=True)
    images = torch.cat([images for images, _, _ in source.eval_batches(4)])
    assert images.dtype == torch.float32 and images.min() >= 0 and images.max() <= 1
    old = DigitPreprocess(size, mean, std)  # the workers normalised it before
    expected = torch.stack([old(old.decode(p)) for p, _ in source.eval_collection.samples])
    assert (source.device_normalize(images, CPU) - expected).abs().max() <= 1e-6
