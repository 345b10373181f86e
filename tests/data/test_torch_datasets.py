"""A torch Dataset of the user's own (convnet/data/torch_datasets.py) trained and evaluated
through the one engine with the Python API."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

import convnet
from convnet.errors import UserError


def separable(count: int, seed: int = 0) -> TensorDataset:
    """Two classes a small network tells apart: a bright top half, or a bright bottom half."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 1, 32, 32, generator=generator) * 0.3
    labels = torch.randint(0, 2, (count,), generator=generator)
    images[labels == 0, :, :16] += 0.7
    images[labels == 1, :, 16:] += 0.7
    return TensorDataset(images, labels)


class Photos(Dataset):
    """PIL images with `classes`, as torchvision's datasets have."""

    classes = ["dark", "light"]

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int):
        label = index % 2
        return Image.new("RGB", (32, 32), (200 * label,) * 3), label


def test_a_pair_of_datasets_trains_and_evaluates(tmp_path):
    result = convnet.fit("lenet5", data=(separable(512), separable(128, seed=1)), epochs=2,
                         batch_size=32, out=tmp_path / "run", log=lambda message: None)  # fmt: skip
    assert result["dataset"] == "dataset" and result["num_examples"] == 128
    assert result["top1_error"] < 0.1
    loaded = convnet.load_run(tmp_path / "run")
    assert loaded.class_names == ("0", "1")
    scores = convnet.evaluate(loaded, data=separable(128, seed=1))
    assert scores["top1_error"] == pytest.approx(result["top1_error"])
    with pytest.raises(UserError, match="Dataset of your own"):
        convnet.evaluate(tmp_path / "run")


def test_one_dataset_is_split_and_pil_images_with_class_names_are_read(tmp_path):
    result = convnet.fit("lenet5", data=Photos(), epochs=1, batch_size=8, val_fraction=0.25,
                         out=tmp_path / "run", log=lambda message: None)  # fmt: skip
    assert result["num_examples"] == 10
    assert [row["name"] for row in result["per_class"]] == ["dark", "light"]


def test_a_dataset_that_is_not_images_is_refused(tmp_path):
    words = [("a", 0), ("b", 1)]
    with pytest.raises(UserError, match="not an image"):
        convnet.fit("lenet5", data=(words, words), epochs=1, out=tmp_path / "run")


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.rand(8, 1, 32, 32), torch.rand(8), "label 0."),
        (torch.rand(8, 1, 32, 32), -torch.ones(8, dtype=torch.long), "label -1 is not a class"),
        (
            255 * torch.rand(8, 1, 32, 32),
            torch.zeros(8, dtype=torch.long),
            "float images in [0, 1]",
        ),
        (torch.randn(8, 1, 32, 32), torch.zeros(8, dtype=torch.long), "leave out the dataset's"),
    ],
)
def test_labels_that_are_not_class_indices_and_images_outside_0_1_are_refused(
    images, labels, message, tmp_path
):
    data = TensorDataset(images, labels)
    with pytest.raises(UserError) as refused:
        convnet.fit("lenet5", data=(data, data), epochs=1, out=tmp_path / "run")
    assert message in str(refused.value)


def test_a_refusal_names_the_item_by_its_index_in_the_users_dataset(tmp_path):
    """fit() splits one Dataset into shuffled subsets; the message still names index 5."""
    labels = torch.zeros(64, dtype=torch.float32)
    labels[5] = 0.5
    data = TensorDataset(torch.rand(64, 1, 32, 32), labels)
    with pytest.raises(UserError, match="dataset item 5's label 0.5 is not a class index"):
        convnet.fit("lenet5", data=data, epochs=1, out=tmp_path / "run")
