"""`convnet evaluate --compile`: when compiling pays, that a compiled model scores as the
model itself does (the last short batch padded, not recompiled), and that a compiler that
fails leaves an evaluation that goes on uncompiled, with a note."""

from __future__ import annotations

import pytest
import torch

from convnet.data.folder_source import FolderSource
from convnet.engine import compiling
from convnet.engine.compiling import COMPILE_FROM_IMAGES, should_compile
from convnet.engine.evaluate import evaluate
from convnet.errors import UserError
from tests.helpers.folder_data import pattern

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCORES = ("num_examples", "top1_error", "top5_error", "per_class", "confusions")


def test_auto_compiles_image_files_on_a_cpu_from_the_break_even_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not should_compile("auto", COMPILE_FROM_IMAGES - 1, cpu, on_disk=True)
    assert should_compile("auto", COMPILE_FROM_IMAGES, cpu, on_disk=True)
    assert not should_compile("auto", 10_000, cpu, on_disk=False)  # MNIST's test set, in memory
    assert not should_compile("auto", 10 * COMPILE_FROM_IMAGES, cuda, on_disk=True)  # CPUs only
    assert should_compile("yes", 1, cpu, on_disk=False)
    assert not should_compile("no", 10**6, cpu, on_disk=True)
    with pytest.raises(UserError, match="--compile takes auto, yes, no"):
        should_compile("maybe", 1, cpu, on_disk=True)


@pytest.fixture
def scored(tmp_path) -> tuple[torch.nn.Module, FolderSource]:
    """A small random network and 7 classes × 3 photos: 21 images, batches of 4 (the last 1)."""
    for label in range(7):
        folder = tmp_path / "val" / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(3):
            pattern(label, index, classes=7).save(folder / f"{index}.jpg")
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 5, stride=3),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 7),
    ).eval()
    source = FolderSource(tmp_path, (3, 32, 32), (MEAN, STD), resize=40, train=False, workers=0)
    return model, source


def test_a_failing_compiler_leaves_the_evaluation_uncompiled_with_a_note(scored, monkeypatch):
    model, source = scored

    def broken(module):
        def forward(images):
            raise RuntimeError("no C++ compiler found")

        return forward

    monkeypatch.setattr("convnet.engine.evaluate.compiled_for_inference", broken)
    notes = []
    cpu = torch.device("cpu")
    uncompiled = evaluate(model, source, cpu, "fp32", batch_size=4)
    fallen_back = evaluate(
        model, source, cpu, "fp32", batch_size=4, compile_model=True, log=notes.append
    )
    assert fallen_back.compiled is False and uncompiled.compiled is False
    assert {key: fallen_back.result[key] for key in SCORES} == {
        key: uncompiled.result[key] for key in SCORES
    }
    assert len(notes) == 1 and "no C++ compiler found" in notes[0], notes


@pytest.mark.slow
def test_a_compiled_model_scores_as_the_model_itself(scored, monkeypatch):
    """Compiled once (the last batch of 1 is padded to 4: a second shape would compile again),
    fp32: the same scores as the model run as it is."""
    model, source = scored
    calls = []
    real = compiling.compiled_for_inference

    def counted(module):
        compiled = real(module)

        def forward(images):
            calls.append(tuple(images.shape))
            return compiled(images)

        return forward

    monkeypatch.setattr("convnet.engine.evaluate.compiled_for_inference", counted)
    cpu = torch.device("cpu")
    uncompiled = evaluate(model, source, cpu, "fp32", batch_size=4)
    notes = []
    compiled = evaluate(
        model, source, cpu, "fp32", batch_size=4, compile_model=True, log=notes.append
    )
    assert compiled.compiled is True and not notes, notes
    assert set(calls) == {(4, 3, 32, 32)} and len(calls) == 6  # 21 images: 5 full + 1 padded
    assert {key: compiled.result[key] for key in SCORES} == {
        key: uncompiled.result[key] for key in SCORES
    }


def test_the_command_compiles_when_asked_and_says_so(scored, tmp_path, monkeypatch, capsys):
    """`convnet evaluate --compile`: auto does not compile 21 images, yes does (a stand-in
    compiler here, counted), and the JSON's `compiled` says which happened."""
    import json

    from convnet.cli import main
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    torch.manual_seed(0)
    weights = tmp_path / "lenet5.safetensors"
    save_weights(weights, get_model("lenet5", num_classes=7))
    compiles = []
    monkeypatch.setattr(
        "convnet.engine.evaluate.compiled_for_inference",
        lambda module: compiles.append(module) or module,
    )
    data = scored[1].eval_collection.root
    results = {}
    for choice in ("auto", "yes", "no"):
        assert (
            main(
                [
                    "evaluate",
                    "lenet5",
                    "--weights",
                    str(weights),
                    "--data",
                    str(data),
                    "--precision",
                    "fp32",
                    "--workers",
                    "0",
                    "--compile",
                    choice,
                    "--json",
                ]
            )
            == 0
        )
        results[choice] = json.loads(capsys.readouterr().out)
    assert [results[c]["compiled"] for c in ("auto", "yes", "no")] == [False, True, False]
    assert len(compiles) == 1
    assert results["yes"]["top1_error"] == results["no"]["top1_error"]
    with pytest.raises(SystemExit) as exit_status:
        main(
            [
                "evaluate",
                "lenet5",
                "--weights",
                str(weights),
                "--data",
                str(data),
                "--compile",
                "always",
            ]
        )
    assert exit_status.value.code == 2


# --- `convnet train --compile yes` ---------------------------------------------------------


def _training(out, **values):
    from convnet.engine.train import TrainConfig

    base = dict(model="lenet5", dataset="mnist", train_subset=96, test_subset=50, epochs=1,
                batch_size=32, precision="fp32", device="cpu", out=str(out), lr=0.05)  # fmt: skip
    return TrainConfig(**{**base, **values})


def test_compile_yes_runs_every_training_step_through_the_compiled_model(
    mnist_dir, tmp_path, monkeypatch, one_thread
):
    """Checked without a compiler: the compiled model stands in for torch.compile's, and the
    steps' forward passes go through it (the evaluations through the model itself)."""
    import convnet.engine.prepare as prepare_module
    from convnet.engine.train import fit

    calls = []

    class StandIn(torch.nn.Module):
        """As torch.compile's module: no truth value of its own (len() is the model's)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def __len__(self):
            raise TypeError(f"{type(self.model).__name__} does not support len()")

        def forward(self, images):
            calls.append(len(images))
            return self.model(images)

    monkeypatch.setattr(prepare_module, "compiled_for_training", StandIn)
    fit(_training(tmp_path / "run", compile="yes"), log=lambda message: None)
    assert calls == [32, 32, 32]


def test_a_training_compile_that_fails_goes_on_uncompiled_with_the_same_weights(
    mnist_dir, tmp_path, monkeypatch, one_thread
):
    from safetensors.torch import load_file

    import convnet.engine.prepare as prepare_module
    from convnet.engine.train import fit

    def failing(model):
        def forward(images):
            raise RuntimeError("no C++ compiler found\nmore")

        return forward

    monkeypatch.setattr(prepare_module, "compiled_for_training", failing)
    said = []
    fit(_training(tmp_path / "compiled", compile="yes"), log=said.append)
    fit(_training(tmp_path / "eager"), log=lambda message: None)
    notes = [line for line in said if line.startswith("Note: compiling the training step")]
    assert notes == [
        "Note: compiling the training step failed (RuntimeError: no C++ compiler found); "
        "training goes on without compiling (--compile no skips the attempt)."
    ]
    compiled, eager = (load_file(tmp_path / n / "model.safetensors") for n in ("compiled", "eager"))
    assert all(torch.equal(compiled[name], eager[name]) for name in eager)
