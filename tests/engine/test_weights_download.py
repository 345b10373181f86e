"""Opt-in downloads of torchvision weights (--download): fetched into the torch hub cache
from a local HTTP server standing in for download.pytorch.org, the SHA-256 prefix in the file
name checked, a wrong file refused with nothing left in the cache; offline by default."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

import convnet
from convnet.cli import main
from convnet.models import get_model


@pytest.fixture
def server(tmp_path):
    """(folder served, its base URL) from a local HTTP server on a free port."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def serve_as_torchvision(monkeypatch, server, data: bytes, hash_prefix: str | None = None) -> str:
    """Serve `data` under a torchvision-style name, resnet18-HASH.pth, and point the weights
    IMAGENET1K_V1 there; HASH is the data's own SHA-256 prefix unless one is given."""
    folder, base = server
    name = f"resnet18-{hash_prefix or hashlib.sha256(data).hexdigest()[:8]}.pth"
    (folder / name).write_bytes(data)
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", f"{base}/{name}")
    return name


def test_download_fetches_checks_and_caches_the_weights(server, hub, monkeypatch, tmp_path, capsys):
    torch.manual_seed(0)
    state = get_model("resnet18", num_classes=1000).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    name = serve_as_torchvision(monkeypatch, server, buffer.getvalue())
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(photo)
    arguments = ["predict", "resnet18", "--weights", "IMAGENET1K_V1", str(photo), "--json"]

    assert main(arguments) == 2  # offline by default
    assert "--download" in capsys.readouterr().err and not hub.exists()

    assert main([*arguments, "--download"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert len(top) == 3 and top[0]["name"] in ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert [path.name for path in hub.iterdir()] == [name]
    assert (hub / name).read_bytes() == buffer.getvalue()
    model = convnet.create_model("resnet18", weights="IMAGENET1K_V1")  # from the cache now
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_download_with_the_wrong_hash_is_refused_and_nothing_is_cached(
    server, hub, monkeypatch, capsys
):
    serve_as_torchvision(monkeypatch, server, b"not the weights", hash_prefix="deadbeef")
    assert main(["evaluate", "resnet18", "--weights", "IMAGENET1K_V1", "--download"]) == 2
    error = capsys.readouterr().err
    assert "does not have the SHA-256 its name promises" in error and "Traceback" not in error
    assert not hub.exists() or not any(hub.iterdir())  # no file, no partial file


def test_a_server_that_does_not_answer_is_a_clear_error(server, hub, monkeypatch, capsys):
    folder, base = server
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", f"{base}/resnet18-0000.pth")
    assert main(["summary", "resnet18", "--weights", "IMAGENET1K_V1", "--download"]) == 2
    assert "Cannot download" in capsys.readouterr().err
    assert not hub.exists() or not any(hub.iterdir())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "lenet5", "--download"], "give --weights NAME"),
        (["train", "lenet5", "--weights", "{file}", "--download"], "Drop --download"),
        (["evaluate", "lenet5", "--weights", "{file}", "--download"], "Drop --download"),
    ],
)
def test_download_with_nothing_to_fetch_is_refused(arguments, message, tmp_path, capsys):
    from safetensors.torch import save_file

    save_file(get_model("lenet5").state_dict(), tmp_path / "w.safetensors")
    filled = [argument.format(file=tmp_path / "w.safetensors") for argument in arguments]
    assert main([*filled, "--out", str(tmp_path / "run")] if filled[0] == "train" else filled) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
