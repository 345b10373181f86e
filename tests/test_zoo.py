"""The ImageNet model zoo: torchvision-built entries, their accounting against torchvision's
published figures, the fast-inference path, weights loading, `convnet zoo` and its chart."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from torch.nn import functional as F

from convnet.analysis.zoo import images_per_second, zoo_names, zoo_row
from convnet.engine.device import fast_inference
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec
from convnet.models.imagenet import CHALLENGE_ENTRIES, HUMAN_TOP5_ERROR, ILSVRC_WINNERS

# Smallest inputs each family takes: five stride-2 stages (32), AlexNet's 11×11 stride 4 (64).


# Each family's ILSVRC classification entry, typed in from the papers (not read from the
# registry): year and top-5 test error in percent. Krizhevsky et al. 2012 Table 2 (5 CNNs);
# Simonyan & Zisserman 2015 Table 7 (ILSVRC submission, 7 nets); Szegedy et al. 2015
# Table 2; He et al. 2016 Table 5.
ILSVRC_ENTRIES = {
    "alexnet": (2012, 16.4),
    "vgg": (2014, 7.3),
    "googlenet": (2014, 6.67),
    "resnet": (2015, 3.57),
}
# docs/models.md: "MACs agree with its GFLOPS (which are multiply-accumulates) to 0.1%".
MACS_TOLERANCE = 0.001

# torchvision's published figures (its weights' documentation) and the lecture's depths.
PUBLISHED = {
    "alexnet": (8, 61_100_840, 0.714),
    "vgg19": (19, 143_667_240, 19.632),
    "googlenet": (22, 6_624_904, 1.498),
    "resnet152": (152, 60_192_808, 11.514),
}


def test_zoo_holds_the_issue_families():
    expected = {"alexnet", "googlenet"}
    expected |= {f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")}
    expected |= {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert set(zoo_names()) == expected


# Real weights and arithmetic for one model of each distinct shape; the deeper members of a
# family (the same blocks, more of them) run on the meta device: shapes, no arithmetic.
REAL_FORWARD = {"alexnet", "vgg11", "vgg11_bn", "googlenet", "resnet18", "resnet50"}


@pytest.mark.parametrize("name", zoo_names())
def test_small_construction_forward_and_split(name):
    spec = get_model_spec(name)
    side = spec.quick_input_size[1]
    torch.manual_seed(0)
    with torch.device("cpu" if name in REAL_FORWARD else "meta"):
        model = get_model(name, num_classes=5, in_channels=1).eval()
        images = torch.randn(2, 1, side, side)
    with torch.inference_mode():
        output = model(images)
        split = model.forward_head(model.forward_features(images))
    assert output.shape == split.shape == (2, 5)
    if name in REAL_FORWARD:
        assert torch.isfinite(output).all()
        torch.testing.assert_close(split, output)


@pytest.mark.parametrize("name", zoo_names())
def test_counts_equal_torchvision_published(name):
    import torchvision

    meta = next(iter(torchvision.models.get_model_weights(name))).meta
    row = zoo_row(name)
    assert row.params == meta["num_params"]
    assert abs(row.macs / 1e9 - meta["_ops"]) <= MACS_TOLERANCE * meta["_ops"]
    family = next(family for family in ILSVRC_ENTRIES if name.startswith(family))
    assert (row.year, row.top5_error) == ILSVRC_ENTRIES[family]
    assert CHALLENGE_ENTRIES[name].source and get_model_spec(name).paper


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_depth_params_macs_of_the_lecture_networks(name):
    depth, params, gmacs = PUBLISHED[name]
    row = zoo_row(name)
    assert row.depth == depth
    assert row.params == params
    assert abs(row.macs / 1e9 - gmacs) <= MACS_TOLERANCE * gmacs
    assert row.weight_bytes == 4 * params
    assert row.activation_bytes > 0


def test_state_dict_keys_are_torchvisions():
    import torchvision

    ours = get_model("resnet18", num_classes=1000).state_dict()
    theirs = torchvision.models.resnet18().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[key].shape == theirs[key].shape for key in ours)


def test_bf16_channels_last_is_faithful_to_fp32():
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=10).eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        reference = model(images)
        with fast_inference(model, torch.device("cpu"), "bf16") as prepare:
            assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
            fast = model(prepare(images))
    assert fast.dtype == torch.bfloat16
    assert F.cosine_similarity(reference, fast.float(), dim=1).min() >= 0.999
    assert model.conv1.weight.is_contiguous()  # the model's layout is given back


def test_images_per_second_measures():
    model = get_model("resnet18", num_classes=10)
    rate, times = images_per_second(model, (3, 32, 32), "bf16", batch_size=2, repeats=2)
    assert rate > 0 and len(times) == 2


def test_googlenet_loads_torchvisions_file_with_auxiliary_heads(tmp_path):
    import torchvision

    from convnet.engine.weight_files import load_weights

    original = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.pth"
    torch.save(original.state_dict(), path)
    model = get_model("googlenet", num_classes=1000)
    load_weights(model, path)
    assert model.transform_input  # the ported TensorFlow weights expect it
    torch.testing.assert_close(model.fc.weight, original.fc.weight)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_weights_name_not_cached_says_where_to_put_it(empty_hub):
    from convnet.engine.weights_argument import load_weights_argument

    with pytest.raises(UserError, match="downloads only when asked") as error:
        load_weights_argument("resnet18", "IMAGENET1K_V1")
    assert str(empty_hub / "resnet18-f37072fd.pth") in str(error.value)
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        load_weights_argument("resnet18", "IMAGENET1K_V9")


def test_weights_from_the_hub_cache_and_a_local_file(empty_hub, tmp_path):
    from convnet.engine.checkpoint import save_weights
    from convnet.engine.weights_argument import load_weights_argument

    torch.manual_seed(1)
    source = get_model("resnet18", num_classes=1000)
    empty_hub.mkdir(parents=True)
    torch.save(source.state_dict(), empty_hub / "resnet18-f37072fd.pth")
    loaded = load_weights_argument("resnet18", "IMAGENET1K_V1")
    assert loaded.photos and len(loaded.class_names) == 1000
    assert loaded.class_names[0] == "tench"  # from the weights' metadata
    torch.testing.assert_close(loaded.model.fc.bias, source.fc.bias)

    small = get_model("resnet18", num_classes=10)
    save_weights(tmp_path / "small.safetensors", small)
    loaded = load_weights_argument("resnet18", str(tmp_path / "small.safetensors"))
    assert not loaded.photos and len(loaded.class_names) == 10
    torch.testing.assert_close(loaded.model.fc.weight, small.fc.weight)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_that_would_run_code_is_refused(tmp_path):
    from convnet.engine.weights_argument import load_weights_argument

    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": _Payload()}, path)
    with pytest.raises(UserError, match="refusing"):
        load_weights_argument("resnet18", str(path))


def test_per_channel_normalization():
    from convnet.data.transforms import normalize
    from convnet.models.imagenet import IMAGENET_NORMALIZATION

    images = torch.ones(2, 3, 4, 4)
    result = normalize(images, *IMAGENET_NORMALIZATION)
    mean, std = IMAGENET_NORMALIZATION
    for channel in range(3):
        assert result[:, channel].allclose(torch.tensor((1 - mean[channel]) / std[channel]))


def test_history_is_the_lectures():
    assert [(w.year, w.top5_error) for w in ILSVRC_WINNERS] == [
        (2010, 28.2),
        (2011, 25.8),
        (2012, 16.4),
        (2013, 11.7),
        (2014, 6.7),
        (2015, 3.57),
        (2016, 2.99),
        (2017, 2.25),
    ]
    assert HUMAN_TOP5_ERROR == 5.1
    from convnet.report.zoo_chart import bar_label

    labels = {w.network: bar_label(w) for w in ILSVRC_WINNERS}
    assert labels["AlexNet"] == "AlexNet\n8 layers"
    assert labels["ResNet"] == "ResNet\n152 layers"


def _cli_json(capsys, *arguments: str) -> object:
    """Run the command line in this process (no second torch import) and parse its JSON."""
    from convnet.cli import main

    capsys.readouterr()
    assert main([*arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_zoo_command_table_and_chart(tmp_path, capsys):
    chart = tmp_path / "ilsvrc.png"
    document = _cli_json(capsys, "zoo", "--no-speed", "--plot", str(chart))
    rows = {row["name"]: row for row in document["models"]}
    assert set(rows) == set(zoo_names())
    assert (rows["vgg19"]["depth"], rows["vgg19"]["params"]) == (19, 143_667_240)
    assert rows["vgg19"]["fp32_images_per_second"] is None
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timed = _cli_json(capsys, "zoo", "--models", "resnet18", "--repeats", "1", "--batch-size", "2")
    row = timed["models"][0]
    assert row["fp32_images_per_second"] > 0 and row["fast_images_per_second"] > 0


def test_summary_and_predict_commands(capsys, empty_hub):
    total = _cli_json(capsys, "summary", "googlenet")["total"]
    assert (total["depth"], total["params"]) == (22, 6_624_904)
    missing = run_cli(
        "predict",
        "resnet18",
        "nothing.png",
        "--weights",
        "IMAGENET1K_V1",
        env={"TORCH_HOME": str(empty_hub.parent.parent)},
    )
    assert missing.returncode == 2
    assert "hub" in missing.stderr and "Traceback" not in missing.stderr
