"""MODEL --weights: torchvision's weights by name from the hub cache, local files, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convnet.errors import UserError
from convnet.models import get_model
from tests.helpers.folder_data import (
    WNIDS,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_torchvision_weights_bring_their_preprocessing_and_names(tmp_path, monkeypatch):
    """A named torchvision weight reads its own transforms (resnet50 V2: resize 232, not 256)
    and category names; the file comes from the hub cache, which here is a fake one."""
    import torchvision

    from convnet.engine.weights_argument import load_weights_argument
    from convnet.models import get_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    cache = tmp_path / "hub" / "checkpoints" / Path(weights.url).name
    cache.parent.mkdir(parents=True)
    torch.save(get_model("resnet50", num_classes=1000).state_dict(), cache)
    wnids = tuple(f"n{index:08d}" for index in range(1000))
    loaded = load_weights_argument("resnet50", "IMAGENET1K_V2", classes=wnids, data_name="DIR")
    assert (loaded.preprocessing["resize"], loaded.input_size[1]) == (232, 224)
    assert loaded.class_names[:2] == ("tench", "goldfish")
    assert loaded.normalization == (MEAN, STD)
    with pytest.raises(UserError, match="classify 1000 classes, but DIR has 5"):
        load_weights_argument("resnet50", "IMAGENET1K_V2", classes=WNIDS, data_name="DIR")


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
    # a 3-channel network prepares photos, whatever its class count
    assert loaded.photos and len(loaded.class_names) == 10
    assert loaded.preparation_reason == "the model takes 3-channel inputs"
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
