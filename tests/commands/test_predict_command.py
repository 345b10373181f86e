"""`convnet predict` at the edges: the preparation follows the model (not its class count) or
--preparation; files streamed in batches, an unreadable one answered with "error" while the
others are answered; photos of any size and aspect; HEIC from phones."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import convnet.commands.predict as predict_module
import convnet.engine.evaluate as evaluate_module
from convnet.cli import main
from convnet.engine.checkpoint import save_weights
from convnet.models import get_model
from tests.helpers.cli import refused, run_in_process
from tests.helpers.images import colour_photo, save_as


@pytest.fixture(scope="module")
def tuned_resnet(tmp_path_factory):
    """resnet18 weights for 5 classes, as a user's own fine-tuned network (no metadata)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tuned.safetensors"
    save_weights(path, get_model("resnet18", num_classes=5))
    return str(path)


@pytest.fixture(scope="module")
def digit_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "lenet5.safetensors"
    save_weights(path, get_model("lenet5", num_classes=10))
    return str(path)


def stroke(path) -> str:
    canvas = np.full((56, 56), 255, dtype=np.uint8)
    canvas[10:46, 26:31] = 0  # a dark "1" on white paper
    Image.fromarray(canvas).save(path)
    return str(path)


def test_a_fine_tuned_photo_network_prepares_photos(tuned_resnet, tmp_path, capfd):
    plain = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 300), (180, 170, 160)).save(plain)  # a plain photo: no "ink"
    result = run_in_process(
        capfd, "predict", "resnet18", "--weights", tuned_resnet, str(plain), "--json"
    )
    assert result.returncode == 0, result.stderr  # it was refused as a blank digit
    (item,) = json.loads(result.stdout)
    assert item["preparation"] == "photo" and len(item["top"]) == 3
    assert "Prepared the images as photos (the model takes 3-channel inputs)" in result.stderr
    # --preparation overrides: as a digit, the plain photo holds no ink
    refused(
        capfd,
        ["predict", "resnet18", "--weights", tuned_resnet, str(plain), "--preparation", "digit"],
        "blank",
    )


def test_a_digit_network_prepares_digits_and_says_so(digit_weights, tmp_path, capfd):
    result = run_in_process(
        capfd, "predict", "lenet5", "--weights", digit_weights, stroke(tmp_path / "1.png"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["preparation"] == "digit"
    assert "Prepared the images as digits (the model takes 1-channel inputs)" in result.stderr


def test_many_files_stream_in_batches_and_one_bad_file_is_answered_as_such(
    digit_weights, tmp_path, capfd, monkeypatch
):
    first = stroke(tmp_path / "0000.png")
    paths = [first]
    for index in range(1, 40):
        paths.append(str(tmp_path / f"{index:04d}.png"))
        shutil.copy(first, paths[-1])
    broken = tmp_path / "0017.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    batches = []
    original = evaluate_module.predict_logits

    def recorded(model, images, *args, **kwargs):
        batches.append(len(images))
        return original(model, images, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "predict_logits", recorded)
    monkeypatch.setattr(predict_module, "BATCH_SIZE", 8)
    result = run_in_process(
        capfd, "predict", "lenet5", "--weights", digit_weights, *paths, "--json"
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert [item["image"] for item in items] == paths  # one item per file, in order
    assert "error" in items[17] and "top" not in items[17]
    assert "corrupt or truncated" in items[17]["error"]
    assert all("top" in item for index, item in enumerate(items) if index != 17)
    assert max(batches) <= 8 and sum(batches) == 39  # streamed, never all at once
    assert "1 of 40 images could not be read" in result.stderr


def test_no_readable_file_at_all_exits_2(digit_weights, tmp_path, capfd):
    bad = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in bad:
        path.write_bytes(b"not an image")
    error = refused(
        capfd,
        ["predict", "lenet5", "--weights", digit_weights, *map(str, bad)],
        "None of the 2 images could be read",
    )
    assert len(error.strip().splitlines()) == 1
    for path in bad:  # each file named once, not twice (once by the decoder, once here)
        assert error.count(str(path)) == 1, error
    assert ".;" not in error and error.rstrip().endswith(".")


@pytest.mark.parametrize(
    ("name", "size"),
    [("tall.png", (1, 8000)), ("phone.jpg", (8064, 6048)), ("phone.HEIC", (640, 480))],
)
def test_photos_of_any_size_aspect_and_phone_format_are_answered(
    name, size, tuned_resnet, tmp_path, capfd
):
    """1×8000 once asked for 6 GB and ended in a traceback; 48 MP was refused (over 40 MP)
    though evaluate scored it; HEIC is what iPhones write."""
    path = tmp_path / name
    kind = {"png": "PNG", "jpg": "JPEG", "HEIC": "HEIF"}[name.rsplit(".", 1)[1]]
    save_as(colour_photo(size=size), path, kind)
    result = run_in_process(
        capfd, "predict", "resnet18", "--weights", tuned_resnet, str(path), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert "top" in json.loads(result.stdout)[0]


# Runs `predict MODEL --weights FILE IMAGE` then `summary MODEL` for each model in a fresh
# interpreter, and prints after each the modules of the compiler stack imported so far.
COMPILER_PROBE = """
import contextlib, io, json, sys
from convnet.cli import main
for name, weights, image in json.loads(sys.argv[1]):
    for argv in (["predict", name, "--weights", weights, image], ["summary", name]):
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        loaded = [m for m in ("torch._dynamo", "torchvision") if m in sys.modules]
        print(json.dumps({"argv": argv[:2], "status": status, "loaded": loaded}))
"""


def test_weights_and_summaries_of_compact_models_import_no_compiler(tmp_path):
    """Below ImageNet size, reading a weights file's shapes (and a summary's) builds the model
    on the CPU: built on the meta device, its initialisation went through torch._refs, which
    imports torch._dynamo, seconds of the command's start."""
    import subprocess
    import sys

    from safetensors.torch import save_file

    from convnet.models import MODELS
    from convnet.models.registry import META_INPUT_WIDTH

    image = stroke(tmp_path / "digit.png")
    jobs = []
    for name, spec in MODELS.items():
        if spec.input_size[2] < META_INPUT_WIDTH:
            weights = tmp_path / f"{name}.safetensors"
            save_file(get_model(name).state_dict(), weights)
            jobs.append((name, str(weights), image))
    assert len(jobs) >= 8  # lenet5, its 1998 form, mlp and the minis
    result = subprocess.run(
        [sys.executable, "-c", COMPILER_PROBE, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(reports) == 2 * len(jobs)
    for report in reports:
        assert report["status"] == 0 and report["loaded"] == [], report


def test_weights_of_a_folder_run_name_its_classes(folders, tmp_path, capsys):
    """model.safetensors carries the run's class names: the file given alone answers with
    them, as the run does (it used to answer 0-4)."""
    out = tmp_path / "run"
    train = ["train", "lenet5", "--data", str(folders), "--epochs", "1", "--workers", "0"]
    assert main([*train, "--out", str(out), "--no-report", "--threads", "1"]) == 0
    capsys.readouterr()
    image = str(next((folders / "val").rglob("*.JPEG")))
    answers = []
    for target in (["lenet5", "--weights", str(out / "model.safetensors")], [str(out)]):
        assert main(["predict", *target, image]) == 0
        answers.append(capsys.readouterr().out)
    names = sorted(path.name for path in (folders / "train").iterdir())
    assert answers[0] == answers[1] and any(name in answers[0] for name in names), answers
