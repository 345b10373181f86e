"""The web app under faults and generated requests (convnet/serve/app.py): a failed request
leaves the server serving, and any request, valid or not, is answered or refused cleanly."""

from __future__ import annotations

import errno
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import convnet.serve.bodies as bodies
from convnet.serve.app import create_app
from convnet.serve.models import CNN, ORDINARY
from tests.helpers.bounded_server import untrained_models
from tests.helpers.serve import TestClient
from tests.helpers.strategies import image_bytes


@pytest.fixture(scope="module")
def untrained_client():
    """The real app over untrained LeNet-5 and MLP: how they answer does not depend on
    training, and building them takes milliseconds."""
    return TestClient(create_app(untrained_models()))


def test_the_server_answers_a_failed_request_and_goes_on(untrained_client, monkeypatch):
    buffer = io.BytesIO()
    Image.fromarray((np.eye(28) * 255).astype(np.uint8)).save(buffer, format="PNG")
    png = {"content": buffer.getvalue(), "headers": {"Content-Type": "image/png"}}
    real = bodies.load_digit
    for fault, status in ((MemoryError(), 503), (OSError(errno.ENOSPC, "No space left"), 503)):

        def fail(*args, fault=fault, **kwargs):
            raise fault

        monkeypatch.setattr(bodies, "load_digit", fail)
        answer = untrained_client.post("/api/predict", **png)
        assert answer.status_code == status and "error" in answer.json(), answer.text
        monkeypatch.setattr(bodies, "load_digit", real)
        assert untrained_client.post("/api/predict", **png).status_code == 200  # still serving


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
