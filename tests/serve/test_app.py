"""The web app's API through the ASGI test client (convnet/serve/app.py): shapes, agreement
with the models, limits, every way a request can be refused, generated requests answered
or refused cleanly, a failed request that leaves the server serving, and the page's texts
in the message catalog."""

from __future__ import annotations

import errno
import io
import json
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convnet.engine.run import LoadedModel
from convnet.models import get_model, get_model_spec
from convnet.serve.app import create_app
from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

with warnings.catch_warnings():  # starlette prefers httpx2 now; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
import asyncio
import math
from importlib import resources

from PIL import ImageDraw
from starlette.requests import Request
from torch.nn import functional as F

from convnet import i18n
from convnet.data.transforms import normalize, to_model_input
from convnet.serve.anatomy import POOLING_KINDS
from convnet.serve.app import MAX_BODY_BYTES, PAGE_MESSAGES, RequestError, read_body_limited
from convnet.serve.models import DEFAULT_MODELS, MAX_SERVED_ERROR
from tests.helpers.serve import post_json
from tests.helpers.strategies import image_bytes


def test_the_server_answers_a_failed_request_and_goes_on(monkeypatch):
    import io

    import numpy as np
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    import convnet.serve.bodies as bodies
    from convnet.engine.run import LoadedModel
    from convnet.serve.app import create_app
    from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

    served = [
        ServedModel(
            role,
            LoadedModel(
                name, get_model_spec(name), get_model(name).eval(), tuple(str(i) for i in range(10))
            ),
            "untrained",
        )
        for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp"))
    ]
    client = TestClient(create_app(ServedModels(*served)))
    buffer = io.BytesIO()
    Image.fromarray((np.eye(28) * 255).astype(np.uint8)).save(buffer, format="PNG")
    png = {"content": buffer.getvalue(), "headers": {"Content-Type": "image/png"}}
    real = bodies.load_digit
    for fault, status in ((MemoryError(), 503), (OSError(errno.ENOSPC, "No space left"), 503)):

        def fail(*args, fault=fault, **kwargs):
            raise fault

        monkeypatch.setattr(bodies, "load_digit", fail)
        answer = client.post("/api/predict", **png)
        assert answer.status_code == status and "error" in answer.json(), answer.text
        monkeypatch.setattr(bodies, "load_digit", real)
        assert client.post("/api/predict", **png).status_code == 200  # still serving


@pytest.fixture(scope="module")
def untrained_client():
    """The real app over untrained LeNet-5 and MLP: how they answer does not depend on
    training, and building them takes milliseconds."""
    torch.manual_seed(0)
    served = []
    for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp")):
        model = get_model(name, num_classes=10).eval()
        loaded = LoadedModel(name, get_model_spec(name), model, tuple(str(i) for i in range(10)))
        served.append(ServedModel(role, loaded, "untrained, for tests"))
    return TestClient(create_app(ServedModels(*served)))


pixel_value = st.one_of(
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)
json_documents = st.one_of(
    st.fixed_dictionaries(
        {
            "pixels": st.lists(
                st.lists(st.integers(0, 255), min_size=28, max_size=28), min_size=28, max_size=28
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "pixels": st.lists(
                st.lists(pixel_value, min_size=26, max_size=29), min_size=26, max_size=29
            )
        }
    ),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["pixels", "x", ""]), inner, max_size=3)
        ),
        max_leaves=20,
    ),
).map(lambda document: json.dumps(document).encode())
parameter_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=6),
)
requests = st.tuples(
    st.sampled_from(
        [
            "image/png",
            "application/json",
            "application/json; charset=utf-8",
            "IMAGE/PNG",
            "text/plain",
            "",
            "multipart/form-data; boundary=x",
        ]
    ),
    st.one_of(image_bytes, json_documents, st.binary(max_size=200)),
    st.dictionaries(
        st.sampled_from(["shift_x", "shift_y", "rotate", "scale", "noise", "seed", "other"]),
        parameter_value,
        max_size=3,
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests)
def test_predict_answers_or_refuses_cleanly(untrained_client, request_parts):
    content_type, body, parameters = request_parts
    headers = {"Content-Type": content_type} if content_type else {}
    reply = untrained_client.post("/api/predict", content=body, params=parameters, headers=headers)
    assert reply.status_code == 200 or 400 <= reply.status_code < 500, reply.text
    document = reply.json()
    if reply.status_code == 200:
        assert [p["role"] for p in document["predictions"]] == [CNN, ORDINARY]
        assert np.asarray(document["pixels"]).shape == (28, 28)
    else:
        assert isinstance(document["error"], str) and document["error"]


def test_server_refuses_json_nested_past_the_parsers_stack(untrained_client):
    body = b'{"pixels": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    reply = untrained_client.post(
        "/api/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]


def test_server_refuses_a_png_past_pillows_own_pixel_limit(untrained_client):
    """Pillow raises (not warns) past twice its limit, before our side check could answer."""
    from tests.helpers.images import png_header_only

    reply = untrained_client.post(
        "/api/predict",
        content=png_header_only(20_000, 20_000),
        headers={"Content-Type": "image/png"},
    )
    assert reply.status_code == 413 and "4096×4096" in reply.json()["error"]


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


def png_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def post_png(client, data: bytes, **params):
    return client.post(
        "/api/predict", content=data, params=params, headers={"Content-Type": "image/png"}
    )


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


def page_sources() -> dict[str, str]:
    """The page's files, and the module that words the server's sentences about the models."""
    package = resources.files("convnet.serve")
    files = {
        name: package / "static" / name
        for name in ("index.html", "app.js", "views.js", "insides.js", "explorer.js", "i18n.js")
    }
    return {
        name: path.read_text("utf-8")
        for name, path in {**files, "served.py": package / "served.py"}.items()
    }


def test_every_text_the_page_asks_for_is_in_the_catalog():
    """The keys named in the page's HTML and scripts, and in the server's sentences, exist in
    English (test_i18n checks that every language has every English key)."""
    english = i18n.catalog("en")
    named = set()
    for name, source in page_sources().items():
        pattern = (
            r'data-i18n(?:-label)?="([^"]+)"'
            if name.endswith(".html")
            else (r'"((?:page|number)\.[a-z_.]+)"')
        )
        found = set(re.findall(pattern, source))
        assert found or name == "i18n.js", name
        named |= found
    named |= {f"page.role.{role}" for role in DEFAULT_MODELS}  # built from a role's name
    named |= {f"page.layer.kind.{kind}" for kind in POOLING_KINDS.values()}  # from a layer's kind
    named |= {"page.layer.kind.convolution", "page.layer.kind.other"}
    assert sorted(named - set(english)) == []
    assert len(named) > 60


def refusal_names() -> set[str]:
    """The catalog names of every refusal the server words: RequestError(status, name, …)
    in convnet/serve and UserError(message, key, …) in the image reader it passes on."""
    import ast

    sources = [
        *(resources.files("convnet.serve").iterdir()),
        resources.files("convnet.data") / "images.py",
    ]
    names = set()
    for source in sources:
        if not source.name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(source.read_text("utf-8"))):
            called = isinstance(node, ast.Call) and getattr(node.func, "id", None)
            named = called in {"RequestError", "UserError"} and len(node.args) > 1
            if named and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names


def test_every_refusal_has_a_sentence_in_every_language():
    names = refusal_names()
    assert {"image_blank", "busy", "no_network", "body_too_slow"} <= names
    for lang in i18n.LANGUAGES:
        assert (
            sorted(
                f"server.error.{name}"
                for name in names
                if f"server.error.{name}" not in i18n.catalog(lang)
            )
            == []
        )


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_refusals_are_worded_in_the_language_asked(client, served, mnist_test, lang):
    """?lang= (what the page sends), else --lang, else Accept-Language words the error."""
    limit = i18n.text(lang, "server.error.parameter.at_most", limit="6")
    cases = [
        (
            lambda **k: post_png(client, png_of_size(64, 64), **k),
            422,
            i18n.text(lang, "server.error.image_blank"),
        ),
        (
            lambda **k: post_json(
                client, {"pixels": mnist_test.images[0].tolist()}, shift_x=7, **k
            ),
            422,
            i18n.text(lang, "server.error.parameters", problems=f"shift_x: {limit}"),
        ),
        (
            lambda **k: client.get("/nowhere", params=k),
            404,
            i18n.text(lang, "server.error.not_found"),
        ),
        (
            lambda **k: client.get("/api/samples", params={"index": 10**6, **k}),
            404,
            i18n.text(
                lang,
                "server.error.no_sample",
                index=i18n.number(10**6, lang),
                last=i18n.number(len(mnist_test.labels) - 1, lang),
            ),
        ),
    ]
    for ask, status, expected in cases:
        reply = ask(lang=lang)
        assert (reply.status_code, reply.json()["error"]) == (status, expected)
    browser = client.get("/nowhere", headers={"Accept-Language": f"{lang},xx;q=0.5"})
    assert browser.json()["error"] == i18n.text(lang, "server.error.not_found")
    fixed = TestClient(create_app(served, mnist_test, language=lang))
    assert fixed.get("/nowhere", headers={"Accept-Language": "xx"}).json()["error"] == (
        i18n.text(lang, "server.error.not_found")
    )
