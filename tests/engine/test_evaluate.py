"""Evaluation: metrics against a hand count, class folders matched by name, a batch that does
not fit halved."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from convnet.cli import main
from convnet.data.folders import open_image_collection
from convnet.data.preparation import evaluation_transform
from convnet.models import get_model, get_model_spec
from tests.helpers.folder_data import (
    make_brightness_classes,
    pattern,
)


def test_evaluate_matches_class_folders_by_name(tmp_path, capsys, one_thread):
    """The issue's case: a 3-class run, scored on a folder holding a_dark and c_bright only.
    Position would score every c_bright image as b_mid; by name, each is in its class."""
    data = make_brightness_classes(tmp_path / "three", ("a_dark", "b_mid", "c_bright"))
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "mlp",
                "--data",
                str(data),
                "--image-size",
                "32",
                "--epochs",
                "8",
                "--lr",
                "0.002",
                "--batch-size",
                "8",
                "--no-augment",
                "--precision",
                "fp32",
                "--workers",
                "0",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    capsys.readouterr()
    other = make_brightness_classes(tmp_path / "other", ("a_dark", "c_bright"), per_class=6)
    assert main(["evaluate", str(run_dir), "--data", str(other), "--workers", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    counts = {row["name"]: row["count"] for row in result["per_class"]}
    assert counts == {"a_dark": 6, "b_mid": 0, "c_bright": 6}  # scored whole, by name
    accuracy = {row["name"]: row["accuracy"] for row in result["per_class"]}
    assert accuracy["a_dark"] == 1.0 and accuracy["c_bright"] == 1.0, result["per_class"]
    assert result["top1_error"] == 0.0 and result["num_examples"] == 12
    unsorted = make_brightness_classes(tmp_path / "third", ("a_dark", "unsorted"), per_class=3)
    assert main(["evaluate", str(run_dir), "--data", str(unsorted), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "unsorted" in err and "no class for" in err


def test_evaluation_halves_a_batch_that_does_not_fit(mnist_dir):
    """The same scores as a batch that fits, and a note that says what happened."""
    from convnet.data.sources import TensorSource
    from convnet.engine.evaluate import evaluate

    spec = get_model_spec("lenet5")
    source = TensorSource.from_dataset(
        "mnist", spec.input_size, spec.normalization, train=False, test_subset=300
    )
    torch.manual_seed(0)
    model = get_model("lenet5").eval()

    class SmallMemory(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if len(images) > 40:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(images)

    notes: list[str] = []
    cpu = torch.device("cpu")
    halved = evaluate(SmallMemory(), source, cpu, "fp32", batch_size=300, log=notes.append)
    reference = evaluate(model, source, cpu, "fp32", batch_size=300)
    assert halved.result["top1_error"] == reference.result["top1_error"]
    assert torch.allclose(halved.logits, reference.logits, atol=1e-5)
    assert len(notes) == 1 and "batches of 37" in notes[0]  # 300 → 150 → 75 → 37


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_metrics_equal_a_hand_count(tmp_path):
    """Seven classes (so top-5 is not trivially right) and a small random network: the
    streamed evaluation must equal top-k and per-class counts done here by hand."""

    from convnet.data.folder_source import FolderSource
    from convnet.engine.evaluate import evaluate

    for split, count in (("train", 1), ("val", 5)):
        for label in range(7):
            folder = tmp_path / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                pattern(label, 100 * (split == "val") + index, classes=7).save(
                    folder / f"{index}.jpg"
                )
    collection = open_image_collection(tmp_path, "val")
    transform = evaluation_transform(40, 32, MEAN, STD)
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 5, stride=3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 7),
    )
    source = FolderSource(tmp_path, (3, 32, 32), (MEAN, STD), resize=40, train=False, workers=0)
    evaluation = evaluate(model, source, torch.device("cpu"), "fp32", batch_size=4, extremes=2)
    result = evaluation.result
    with torch.no_grad():
        logits = model(
            torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in collection.samples])
        )
    labels = [label for _, label in collection.samples]
    ranked = [sorted(range(7), key=lambda c, row=row: -float(row[c])) for row in logits]
    top1 = sum(r[0] == y for r, y in zip(ranked, labels, strict=True)) / len(labels)
    top5 = sum(y in r[:5] for r, y in zip(ranked, labels, strict=True)) / len(labels)
    assert 0 < top5 < 1 and top1 < top5  # the hand count is not degenerate
    assert result["top1_error"] == pytest.approx(1 - top1, abs=1e-6)
    assert result["top5_error"] == pytest.approx(1 - top5, abs=1e-6)
    accuracy = [
        sum(r[0] == c for r, y in zip(ranked, labels, strict=True) if y == c) / 5 for c in range(7)
    ]
    assert [row["accuracy"] for row in result["per_class"]] == pytest.approx(accuracy)
    assert [row["count"] for row in result["per_class"]] == [5] * 7
    # The rule by hand: apart from the median class by more than 2 binomial standard errors
    # of 5 images (at the median accuracy shrunk by one hit and one miss) and 1 point; an
    # easy class also above 50%.
    median = sorted(accuracy)[3]
    shrunk = (median * 5 + 1) / 7
    margin = max(0.01, 2 * (shrunk * (1 - shrunk) / 5) ** 0.5)
    easy = [c for c in range(7) if accuracy[c] - median > margin and accuracy[c] > 0.5]
    hard = [c for c in range(7) if median - accuracy[c] > margin]
    easy.sort(key=lambda c: (-accuracy[c], c))
    hard.sort(key=lambda c: (accuracy[c], c))
    assert [row["index"] for row in result["easiest"]] == easy[:2]
    assert [row["index"] for row in result["hardest"]] == hard[:2]
    pairs: dict[tuple[int, int], int] = {}
    for r, y in zip(ranked, labels, strict=True):
        if r[0] != y:
            pairs[(y, r[0])] = pairs.get((y, r[0]), 0) + 1
    top = max(pairs.values())
    assert result["confusions"][0]["count"] == top
    first = result["confusions"][0]
    assert pairs[(int(first["true"][5:]), int(first["predicted"][5:]))] == top
    assert result["per_class"][0]["name"] == "class0" and result["num_skipped"] == 0
