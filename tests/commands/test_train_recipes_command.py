"""`convnet train --recipe NAME`: the named recipes shipped as plain files, every value
written out; flags given override them; --print-config shows the result without training."""

from __future__ import annotations

import json

import pytest

from convnet.cli import main
from convnet.engine.config import TrainConfig
from convnet.engine.named_recipes import RECIPES, load_recipe, recipe_names


@pytest.mark.parametrize("name", recipe_names())
def test_each_shipped_recipe_is_a_whole_usable_configuration(name):
    document = json.loads((RECIPES / f"{name}.json").read_text())
    assert document["description"] and document["source"]
    values = load_recipe(name)
    # every value of the recipe written out: the optimizer, its schedule and the augmentation
    assert {"epochs", "batch_size", "opt", "lr", "weight_decay", "lr_scheduler",
            "label_smoothing", "augment", "mixup_alpha", "random_erase"} <= set(values)  # fmt: skip
    TrainConfig(**{"model": "resnet_mini", **values}).resolved()


def test_print_config_shows_the_recipe_with_the_flags_on_top(capsys):
    code = main(["train", "resnet18", "--recipe", "torchvision-resnet-v2", "--lr", "0.2",
                 "--print-config"])  # fmt: skip
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["lr"] == 0.2 and shown["model"] == "resnet18"
    assert shown["mixup_alpha"] == 0.2 and shown["auto_augment"] == "ta_wide"
    assert shown["recipe"] == "torchvision-resnet-v2" and shown["lr_warmup_epochs"] == 5.0


def test_a_flag_replaces_the_recipes_alternative(capsys):
    """A warm-up as a share replaces the recipe's warm-up in epochs; AdamW drops its momentum."""
    code = main(["train", "resnet18", "--recipe", "torchvision-resnet-v2", "--warmup-fraction",
                 "0.1", "--opt", "adamw", "--print-config"])  # fmt: skip
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["warmup_fraction"] == 0.1 and shown["lr_warmup_epochs"] is None
    assert shown["opt"] == "adamw" and shown["momentum"] is None


def test_recipe_list_names_every_recipe(capsys):
    assert main(["train", "--recipe", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{name}:" in listed for name in recipe_names())


def test_a_recipe_file_of_ones_own(tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"description": "x", "source": "y",
                                "values": {"lr": 0.3, "opt": "rmsprop"}}))  # fmt: skip
    assert main(["train", "lenet5", "--recipe", str(path), "--print-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["lr"] == 0.3 and shown["opt"] == "rmsprop" and shown["momentum"] == 0.9


@pytest.mark.parametrize(
    "document, message",
    [
        ([1, 2], 'it is not an object with "values"'),
        ({"lr": 0.1}, 'it is not an object with "values"'),
        ({"values": {"lr": 0.1}, "extra": 1}, "extra: a recipe holds description, source"),
        ({"values": {"lr": 0.1, "speed": 2}}, "speed is not an option of a run"),
    ],
)
def test_a_damaged_recipe_file_is_refused_saying_what_is_wrong(document, message, tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(document))
    assert main(["train", "lenet5", "--recipe", str(path), "--print-config"]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--recipe", "no-such-recipe"], "Unknown recipe 'no-such-recipe'"),
        (["--recipe", "lenet5-mnist", "--config", "x.json"], "give one of the two"),
        (["--opt", "lion"], "--opt must be one of sgd, sgd-nesterov, adamw, rmsprop"),
        (["--lr-scheduler", "cyclic"], "--lr-scheduler must be one of"),
        (["--auto-augment", "fancy"], "--auto-augment must be one of ra, ta_wide"),
        (["--random-erase", "1.5"], "--random-erase must be a probability"),
        (["--grad-accum-steps", "0"], "--grad-accum-steps must be at least 1"),
        (["--lr-scheduler", "multistep", "--lr-milestones", "5", "3"], "must be increasing"),
        (["--opt", "adamw", "--momentum", "0.9"], "AdamW keeps its own"),
        (["--lr", "0.01", "--lr-min", "0.1"], "--lr-min 0.1 must lie below"),
        (["--warmup-fraction", "0.1", "--lr-warmup-epochs", "1"], "not both"),
        (["--lr-milestones", "3", "5"], "--lr-milestones (it needs --lr-scheduler multistep)"),
        (["--lr-scheduler", "step", "--lr-min", "0.001"], "--lr-min (it needs --lr-scheduler"),
        (["--model-ema-decay", "0.99"], "--model-ema-decay (it needs --model-ema)"),
        (["--no-augment", "--auto-augment", "ra"], "which --no-augment turns off"),
        (["--recipe", "torchvision-resnet-v2", "--no-augment"], "--auto-augment and --random"),
        (["--lr-scheduler", "multistep"], "give them (e.g. --lr-milestones 30 60 80)"),
        (["--lr-warmup-epochs", "3", "--epochs", "2"], "longer than the run's 2 epochs"),
        (
            ["--lr-scheduler", "multistep", "--lr-milestones", "2", "5", "--epochs", "5"],
            "--lr-milestones 5: the run ends after 5 epochs",
        ),
    ],
)
def test_recipe_mistakes_are_refused_in_one_paragraph(arguments, message, capsys):
    code = main(["train", "lenet5", *arguments, "--print-config"])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "Traceback" not in error


def test_resume_keeps_the_recipe(tmp_path, mnist_dir, capsys):
    out = tmp_path / "run"
    arguments = ["train", "lenet5", "--train-subset", "128", "--test-subset", "50",
                 "--epochs", "1", "--opt", "rmsprop", "--lr", "0.001", "--out", str(out)]  # fmt: skip
    assert main(arguments) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--opt", "adamw"]) == 2
    assert "cannot change" in capsys.readouterr().err
