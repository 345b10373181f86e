"""The web app's API through the ASGI test client (convnet/serve/app.py): shapes, agreement
with the models, limits and every way a request can be refused. Generated requests and
faults are in test_app_robustness.py, the page's texts in test_app_catalog.py."""

from __future__ import annotations

import asyncio
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from starlette.requests import Request
from torch.nn import functional as F

from convnet import i18n
from convnet.data.transforms import normalize, to_model_input
from convnet.serve.app import (
    MAX_BODY_BYTES,
    PAGE_MESSAGES,
    RequestError,
    create_app,
    read_body_limited,
)
from convnet.serve.models import MAX_SERVED_ERROR
from tests.helpers.serve import TestClient, png_of_size, post_json, post_png

SHAPES = {
    "c1": [6, 28, 28],
    "s2": [6, 14, 14],
    "c3": [16, 10, 10],
    "s4": [16, 5, 5],
    "c5": [120, 1, 1],
}


def stroke_png(size: int = 200, width: int = 18) -> bytes:
    """A hand-drawn-looking 7: white strokes on black, as the page's canvas sends it."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(50, 40), (150, 40), (90, 170)], fill=255, width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def nested_shape(value) -> list[int]:
    return list(np.asarray(value).shape)


def test_models_endpoint(client, served):
    reply = client.get("/api/models")
    assert reply.status_code == 200
    models = reply.json()["models"]
    assert [m["role"] for m in models] == ["cnn", "ordinary"]
    assert [m["name"] for m in models] == ["lenet5", "mlp"]
    for described, entry in zip(models, served.all(), strict=True):
        assert described["params"] == sum(p.numel() for p in entry.loaded.model.parameters())
        assert described["test_error"] == entry.test_error
        assert described["max_error"] == MAX_SERVED_ERROR
        assert described["undertrained"] == (entry.test_error > MAX_SERVED_ERROR)
        assert described["chosen"] == "given" and described["run"] == entry.origin.run
        assert described["origin"] == entry.origin_sentence("en")
        assert described["warning"] == entry.warning("en")
    korean = client.get("/api/models", params={"lang": "ko"}).json()
    assert korean["lang"] == "ko"
    for described, entry in zip(korean["models"], served.all(), strict=True):
        assert described["origin"] == entry.origin_sentence("ko") != entry.origin_sentence("en")
        assert described["warning"] == entry.warning("ko")
    by_header = client.get("/api/models", headers={"Accept-Language": "ko-KR,ko;q=0.9"}).json()
    assert by_header["lang"] == "ko" and by_header["models"] == korean["models"]
    assert client.get("/api/models", params={"lang": "xx"}).status_code == 404
    assert reply.json()["limits"]["body_bytes"] == MAX_BODY_BYTES


def test_messages_endpoint(client, served):
    everything = client.get("/api/messages", headers={"Accept-Language": "en-US"}).json()
    assert everything["default"] == "en" and everything["fixed"] is False
    assert everything["languages"] == {
        lang: i18n.text(lang, "language.name") for lang in i18n.LANGUAGES
    }
    for lang in i18n.LANGUAGES:
        assert everything["messages"][lang] == i18n.messages(lang, PAGE_MESSAGES)
        assert all(key.startswith(PAGE_MESSAGES) for key in everything["messages"][lang])
    korean = client.get("/api/messages", params={"lang": "ko"}).json()
    assert list(korean["messages"]) == ["ko"] and korean["default"] == "ko"
    browser = client.get("/api/messages", headers={"Accept-Language": "ko-KR,en;q=0.5"}).json()
    assert browser["default"] == "ko" and browser["fixed"] is False
    fixed = TestClient(create_app(served, language="en"))
    chosen = fixed.get("/api/messages", headers={"Accept-Language": "ko-KR"}).json()
    assert chosen["default"] == "en" and chosen["fixed"] is True
    missing = client.get("/api/messages", params={"lang": "xx"})
    assert missing.status_code == 404 and "en, ko" in missing.json()["error"]


def test_page_and_its_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="pad"' in page.text and "/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for script in ("/app.js", "/views.js", "/i18n.js"):
        assert client.get(script).headers["content-type"].startswith("text/javascript")
    assert client.get("/style.css").headers["content-type"].startswith("text/css")


def test_predict_png_shapes(client):
    reply = post_png(client, stroke_png())
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert nested_shape(result["pixels"]) == [28, 28]
    assert nested_shape(result["model_input"]) == [32, 32]
    assert [p["role"] for p in result["predictions"]] == ["cnn", "ordinary"]
    for prediction in result["predictions"]:
        probabilities = prediction["probabilities"]
        assert len(probabilities) == 10 and math.isclose(sum(probabilities), 1, abs_tol=1e-3)
        top = [t["probability"] for t in prediction["top"]]
        assert len(top) == 3 and top == sorted(top, reverse=True)
        assert prediction["top"][0]["index"] == int(np.argmax(probabilities))
    assert {name: m["shape"] for name, m in result["feature_maps"].items()} == SHAPES
    for name, feature_map in result["feature_maps"].items():
        assert nested_shape(feature_map["data"]) == SHAPES[name]
    assert nested_shape(result["c1_filters"]["weights"]) == [6, 5, 5]
    assert len(result["c1_filters"]["bias"]) == 6 and result["c1_filters"]["activation"] == "relu"


def test_predict_agrees_with_the_models(client, served, mnist_test):
    """Reference computation: the same digit through the models directly, without the app."""
    digit = mnist_test.images[7]
    result = post_json(client, {"pixels": digit.tolist()}).json()
    assert result["pixels"] == digit.tolist()  # JSON pixels are used exactly as given
    for entry, prediction in zip(served.all(), result["predictions"], strict=True):
        spec = entry.loaded.spec
        inputs = normalize(to_model_input(digit[None], spec.input_size), *spec.normalization)
        with torch.no_grad():
            expected = entry.loaded.model(inputs).softmax(1)[0]
        assert np.allclose(prediction["probabilities"], expected.numpy(), atol=1e-4)
    lenet = served.cnn.loaded.model
    inputs = torch.tensor(result["model_input"])[None, None]
    with torch.no_grad():
        c1 = F.relu(F.conv2d(inputs, lenet.features.c1.weight, lenet.features.c1.bias))[0]
        s2 = F.max_pool2d(c1, 2)
    assert np.allclose(result["feature_maps"]["c1"]["data"], c1.numpy(), atol=1e-3)
    assert np.allclose(result["feature_maps"]["s2"]["data"], s2.numpy(), atol=1e-3)
    assert np.allclose(
        result["c1_filters"]["weights"], lenet.features.c1.weight[:, 0].detach(), atol=1e-4
    )


def test_shift_moves_the_digit_and_noise_is_repeatable(client, mnist_test):
    digit = mnist_test.images[0].numpy()
    moved = post_json(client, {"pixels": digit.tolist()}, shift_x=3, shift_y=-2).json()
    expected = np.roll(np.roll(digit, 3, axis=1), -2, axis=0)  # the digit stays off the border
    assert np.abs(np.array(moved["pixels"], dtype=int) - expected).max() <= 1
    assert moved["view"]["shift_x"] == 3 and moved["view"]["shift_y"] == -2
    first = post_json(client, {"pixels": digit.tolist()}, noise=0.3, seed=5).json()["pixels"]
    again = post_json(client, {"pixels": digit.tolist()}, noise=0.3, seed=5).json()["pixels"]
    other = post_json(client, {"pixels": digit.tolist()}, noise=0.3, seed=6).json()["pixels"]
    assert first == again and first != other and first != digit.tolist()


def test_image_side_limit_is_checked_before_decoding(client, monkeypatch):
    import convnet.serve.bodies as bodies

    assert post_png(client, png_of_size(4096, 16)).status_code == 422  # allowed size, blank
    decoded = []
    monkeypatch.setattr(bodies, "load_digit", lambda *a, **k: decoded.append(1))
    for width, height in ((4097, 8), (8, 4097)):
        reply = post_png(client, png_of_size(width, height))
        assert reply.status_code == 413
        assert f"{width}×{height}" in reply.json()["error"] and "4096×4096" in reply.json()["error"]
    assert decoded == []


def test_body_limit_by_declared_length(client):
    reply = post_png(client, b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY_BYTES))
    assert reply.status_code == 413 and "1,000,000" in reply.json()["error"]


def test_body_limit_stops_reading_early():
    """Without a Content-Length, the body is read in chunks and refused once past the limit."""
    chunk, total_chunks, received = bytes(64 * 1024), 80, []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": chunk, "more_body": len(received) < total_chunks}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(RequestError) as refused:
        asyncio.run(read_body_limited(request))
    assert refused.value.status == 413
    assert len(received) == MAX_BODY_BYTES // len(chunk) + 1 < total_chunks


@pytest.mark.parametrize(
    ("content_type", "body", "status", "phrase"),
    [
        ("text/plain", b"hello", 415, "image/png or application/json"),
        ("", b"hello", 415, "not 'none'"),
        ("image/png", b"", 400, "empty"),
        ("image/png", b"GIF89a not a png", 415, "PNG signature"),
        ("image/png", b"\x89PNG\r\n\x1a\n garbage", 422, "cannot be read"),
        ("image/png", "blank", 422, "blank"),
        ("application/json", b"{not json", 400, "not valid JSON"),
        ("application/json", b"[1, 2]", 422, '"pixels" array'),
        ("application/json", b'{"image": []}', 422, '"pixels" array'),
        ("application/json", json.dumps({"pixels": [[0] * 28] * 27}), 422, "28 rows of 28"),
        ("application/json", json.dumps({"pixels": [[0] * 27] * 28}), 422, "28 rows of 28"),
        ("application/json", json.dumps({"pixels": [["0"] * 28] * 28}), 422, "finite numbers"),
        ("application/json", json.dumps({"pixels": [[True] * 28] * 28}), 422, "finite numbers"),
        ("application/json", json.dumps({"pixels": [[None] * 28] * 28}), 422, "finite numbers"),
        (
            "application/json",
            '{"pixels": [' + ",".join(["[NaN" + ",0" * 27 + "]"] * 28) + "]}",
            422,
            "finite numbers",
        ),
        ("application/json", json.dumps({"pixels": [[256] * 28] * 28}), 422, "0…255"),
        ("application/json", json.dumps({"pixels": [[-1] * 28] * 28}), 422, "0…255"),
    ],
)
def test_bad_bodies_get_clear_errors(client, content_type, body, status, phrase):
    if body == "blank":
        body = png_of_size(64, 64)
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.post("/api/predict", content=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert phrase in reply.json()["error"]


@pytest.mark.parametrize(
    "params",
    [
        {"shift_x": 7},
        {"shift_y": -6.5},
        {"rotate": 181},
        {"scale": 0.4},
        {"scale": 2.5},
        {"noise": -0.1},
        {"noise": 1.5},
        {"shift_x": "left"},
        {"seed": -1},
        {"noise": "nan"},
    ],
)
def test_bad_views_are_refused(client, mnist_test, params):
    reply = post_json(client, {"pixels": mnist_test.images[0].tolist()}, **params)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"].startswith("Invalid request parameters: " + next(iter(params)))


def test_samples(client, mnist_test):
    reply = client.get("/api/samples", params={"index": 3, "count": 2}).json()
    assert [s["index"] for s in reply["samples"]] == [3, 4]
    assert reply["samples"][0]["label"] == int(mnist_test.labels[3])
    assert reply["samples"][0]["pixels"] == mnist_test.images[3].tolist()
    assert len(client.get("/api/samples").json()["samples"]) == 1
    assert client.get("/api/samples", params={"index": 10_000}).status_code == 404
    assert client.get("/api/samples", params={"count": 17}).status_code == 422
    assert client.get("/api/samples", params={"index": -1}).status_code == 422


def test_no_samples_without_mnist(served):
    reply = TestClient(create_app(served, None)).get("/api/samples")
    assert reply.status_code == 503 and "not available" in reply.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.js",
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/app.py",
        "/api/../models.py",
        "/index.html/..%2f..%2fapp.py",
    ],
)
def test_no_request_path_reaches_files(client, path):
    reply = client.get(path)
    assert reply.status_code == 404 and reply.json() == {"error": "Not Found"}


def test_wrong_method_is_json(client):
    reply = client.get("/api/predict")
    assert reply.status_code == 405 and "error" in reply.json()
