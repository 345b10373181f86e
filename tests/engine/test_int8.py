"""int8 inference (convnet/engine/int8.py): a run quantized by ONNX Runtime agrees with fp32,
is made once and then read from beside the run, exports as a QDQ ONNX file, and is refused
in one paragraph where it cannot run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from convnet.cli import main
from convnet.engine import int8
from convnet.engine.run import Run

needs_vnni = pytest.mark.skipif(not int8.cpu_has_vnni(), reason="this CPU has no VNNI")


@pytest.fixture
def run_dir(trained_run, tmp_path):
    """A copy of the shared trained run: quantizing writes into the run's folder."""
    return shutil.copytree(trained_run[0], tmp_path / "run")


def evaluate(run_dir, capsys, *extra: str) -> dict:
    code = main(["evaluate", str(run_dir), "--test-subset", "2000", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@needs_vnni
def test_a_run_in_int8_agrees_with_fp32_and_is_quantized_once(run_dir, capsys, monkeypatch):
    fp32 = evaluate(run_dir, capsys, "--precision", "fp32")
    first = evaluate(run_dir, capsys, "--precision", "int8")
    assert first["precision"] == "int8"
    assert first["params"] == fp32["params"]  # counted before ONNX Runtime takes the model
    note = first["int8"]
    assert note["calibration"] == "256 of the run's training images (mnist)"
    assert note["checked_images"] == 512 and note["top1_agreement"] >= 0.99
    assert abs(first["top1_error"] - fp32["top1_error"]) <= 0.003  # 6 of 2,000 images
    assert len(list((run_dir / "int8").glob("model-*.onnx"))) == 1

    import onnxruntime.quantization

    def refuse(*args, **kwargs):
        raise AssertionError("quantized again instead of reading the cache")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", refuse)
    again = evaluate(run_dir, capsys, "--precision", "int8")
    assert again["top1_error"] == first["top1_error"] and again["int8"] == note
    # another calibration is another file
    monkeypatch.undo()
    other = evaluate(run_dir, capsys, "--precision", "int8", "--calibration-images", "64")
    assert other["int8"]["calibration_images"] == 64
    assert len(list((run_dir / "int8").glob("model-*.onnx"))) == 2


@needs_vnni
def test_int8_export_is_a_qdq_onnx_file_that_runs_as_evaluated(run_dir, tmp_path, capsys):
    out = tmp_path / "lenet5.int8.onnx"
    assert main(["export", str(run_dir), "--precision", "int8", "--out", str(out)]) == 0
    capsys.readouterr()
    proto = onnx.load(str(out))
    operators = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    ours = ("model", "classes", "input_size", "normalization", "int8")
    metadata = {e.key: json.loads(e.value) for e in proto.metadata_props if e.key in ours}
    assert set(metadata) == set(ours)
    assert metadata["model"] == "lenet5" and metadata["int8"]["top1_agreement"] >= 0.99
    import onnxruntime as ort

    images = torch.rand(4, 1, 32, 32)
    loaded = Run(run_dir).load()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (written,) = session.run(None, {"images": images.numpy()})
    cached = int8.Int8Model(next((run_dir / "int8").glob("model-*.onnx")), {})
    assert np.allclose(written, cached(images).numpy())
    assert loaded.class_names[written.argmax(1)[0]] in loaded.class_names


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["train", "lenet5", "--precision", "int8"], "int8 is for inference"),
        (["evaluate", "RUN", "--calibration-images", "64"], "calibrate --precision int8"),
        (["export", "RUN", "--precision", "int8", "--format", "torchscript", "--out", "x.pt"],
         "writes ONNX"),
        (["evaluate", "RUN", "--precision", "int8", "--calibration", "RUN/no-such-folder"],
         "no-such-folder does not exist; give a folder of images"),
        (["evaluate", "RUN", "--precision", "int8", "--calibration", "RUN/config.json"],
         "config.json is a file; give a folder of images"),
    ],
)  # fmt: skip
def test_int8_mistakes_are_refused_in_one_paragraph(arguments, message, trained_run, capsys):
    run_dir, _ = trained_run  # refused before anything is written
    arguments = [argument.replace("RUN", str(run_dir)) for argument in arguments]
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_a_cpu_without_vnni_is_refused(trained_run, capsys, monkeypatch):
    monkeypatch.setattr(int8, "cpu_has_vnni", lambda: False)
    run_dir, _ = trained_run  # refused before anything is written
    assert main(["evaluate", str(run_dir), "--precision", "int8"]) == 2
    assert "needs a CPU with VNNI" in capsys.readouterr().err


@needs_vnni
def test_predict_in_int8_answers_as_fp32_and_says_how_it_agreed(
    run_dir, mnist_dir, tmp_path, capsys
):
    from PIL import Image

    from convnet.data.datasets import load_dataset

    test = load_dataset("mnist", "test", mnist_dir)
    files = []
    for index in range(8):
        files.append(tmp_path / f"digit{index}.png")
        Image.fromarray(test.images[index].numpy().squeeze()).save(files[-1])
    answers = {}
    for precision in ("fp32", "int8"):
        assert (
            main(["predict", str(run_dir), *map(str, files), "--precision", precision, "--json"])
            == 0
        )
        captured = capsys.readouterr()
        answers[precision] = [item["top"][0]["index"] for item in json.loads(captured.out)]
    assert "int8 (ONNX Runtime): agreed with fp32 on" in captured.err
    assert "of 512 of the run's held-out images" in captured.err  # predict scored 8
    assert sum(a == b for a, b in zip(answers["fp32"], answers["int8"], strict=True)) >= 7
    assert len(list((run_dir / "int8").glob("model-*.onnx"))) == 1


@needs_vnni
def test_bare_weights_in_int8_need_a_folder_to_calibrate_on(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    image = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(image)
    weights = str(run_dir / "model.safetensors")
    code = main(["predict", "lenet5", "--weights", weights, str(image), "--precision", "int8"])
    assert code == 2 and "--calibration DIR" in capsys.readouterr().err


@needs_vnni
def test_any_folder_of_images_calibrates_without_labels(
    trained_run, mnist_dir, tmp_path, capsys, monkeypatch
):
    """Bare weights calibrated on a folder of digit files in no class layout (some loose,
    some in a folder of their own): the answers agree with fp32, and the note says how many
    of the checked images also calibrated it. A folder with no image, or with a file that
    is not one, is refused in one paragraph."""
    from PIL import Image

    from convnet.data.datasets import load_dataset

    test = load_dataset("mnist", "test", mnist_dir)
    monkeypatch.setenv("CONVNET_DATA_DIR", str(tmp_path / "cache"))  # bare weights' int8 cache
    folder = tmp_path / "digits"
    (folder / "more").mkdir(parents=True)
    for index in range(40):
        where = folder / "more" if index % 2 else folder
        Image.fromarray(test.images[index].numpy().squeeze()).save(where / f"{index}.png")
    weights = str(trained_run[0] / "model.safetensors")
    arguments = ["predict", "lenet5", "--weights", weights, str(folder / "0.png"),
                 "--precision", "int8", "--calibration-images", "16", "--json"]  # fmt: skip
    assert main([*arguments, "--calibration", str(folder)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["top"][0]["index"] == int(test.labels[0])
    assert f"of 40 images of {folder}, 16 of which calibrated it" in captured.err

    (tmp_path / "empty" / "inside").mkdir(parents=True)
    assert main([*arguments, "--calibration", str(tmp_path / "empty")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    shutil.copytree(folder, tmp_path / "with-a-bad-file")
    (tmp_path / "with-a-bad-file" / "more" / "1.png").write_bytes(b"not a picture")
    every = ["--calibration-images", "40"]  # the bad file among those that calibrate
    assert main([*arguments, *every, "--calibration", str(tmp_path / "with-a-bad-file")]) == 2
    error = capsys.readouterr().err
    bad = str(tmp_path / "with-a-bad-file" / "more" / "1.png")
    assert f"--calibration: {bad}: " in error and error.count(bad) == 1, error
    assert "Quantizing" not in error  # refused before it says it quantizes
    assert "Traceback" not in error


@needs_vnni
def test_files_evaluation_skips_neither_calibrate_nor_check(
    trained_run, mnist_dir, tmp_path, capsys, monkeypatch
):
    """Bare weights on a class folder holding two files that are not images: evaluation
    skips them, and int8 is calibrated and checked on the other 30, so its note's count
    and error are the evaluation's own."""
    from PIL import Image

    from convnet.data.datasets import load_dataset

    test = load_dataset("mnist", "test", mnist_dir)
    monkeypatch.setenv("CONVNET_DATA_DIR", str(tmp_path / "cache"))  # bare weights' int8 cache
    folder = tmp_path / "digits"
    for digit in range(10):  # three of each class
        (folder / str(digit)).mkdir(parents=True)
        for index in (test.labels == digit).nonzero()[:3, 0].tolist():
            image = Image.fromarray(test.images[index].numpy().squeeze())
            image.save(folder / str(digit) / f"{index}.png")
    for name in ("a", "b"):
        (folder / "0" / f"{name}.png").write_bytes(b"not a picture")
    weights = str(trained_run[0] / "model.safetensors")
    result = json.loads(
        cli_json(
            capsys,
            "evaluate",
            "lenet5",
            "--weights",
            weights,
            "--data",
            str(folder),
            "--precision",
            "int8",
            "--json",
        )  # fmt: skip
    )
    assert result["num_examples"] == 30 and len(result["skipped"]) == 2
    note = result["int8"]
    assert note["calibration_images"] == note["checked_images"] == 30, note
    assert note["int8_top1_error"] == round(result["top1_error"], 6)


def cli_json(capsys, *arguments: str) -> str:
    code = main(list(arguments))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out
