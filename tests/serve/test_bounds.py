"""The app's bounds on requests: predictions beyond a few at once are answered 503 with
Retry-After at once, not queued, and a body that does not arrive in time is answered 408.
Sockets and deadlines at the connection: test_connections.py."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest

from convnet.serve import app as app_module
from convnet.serve.app import MAX_BUSY, create_app
from tests.helpers.bounded_server import untrained_models


@pytest.fixture(scope="module")
def models():
    return untrained_models()


def post(client, body: bytes, content_type: str = "application/json", **params):
    return client.post(
        "/api/predict", content=body, params=params, headers={"Content-Type": content_type}
    )


def digit_json(index: int = 0) -> bytes:
    rng = np.random.default_rng(index)
    pixels = np.zeros((28, 28), dtype=int)
    pixels[6:22, 12 + index % 3 : 16 + index % 3] = 255
    pixels[6:9, 8:20] = rng.integers(128, 256, (3, 12))
    return json.dumps({"pixels": pixels.tolist()}).encode()


def test_beyond_the_busy_limit_the_answer_is_503_with_retry_after_at_once(models, monkeypatch):
    """With every slot taken by a prediction that has not finished, one more is answered at
    once with 503, a JSON error and Retry-After; when a slot frees, predictions go on."""
    release, entered = threading.Event(), threading.Semaphore(0)
    real_look = app_module.look

    def slow_look(*args):
        entered.release()
        release.wait(timeout=60)
        return real_look(*args)

    monkeypatch.setattr(app_module, "look", slow_look)
    app = create_app(models, max_busy=2)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(post(client, digit_json(i))) for i in range(2)]
            for _ in range(2):  # both predictions are inside the slow part
                await asyncio.to_thread(entered.acquire, True, 60)
            loop = asyncio.get_running_loop()
            started = loop.time()
            refused = await post(client, digit_json(3))
            waited = loop.time() - started
            release.set()
            answered = await asyncio.gather(*held)
            again = await post(client, digit_json(4))
            return refused, waited, answered, again

    refused, waited, answered, again = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "working on 2 other readings" in refused.json()["error"]
    assert waited < 5, f"the refusal took {waited:.1f} s: it queued"
    assert [reply.status_code for reply in answered] == [200, 200]
    assert again.status_code == 200  # the slots were given back
    assert MAX_BUSY == 4  # the bound docs/reliability.md states


def test_a_body_that_does_not_arrive_in_time_is_408(models):
    app = create_app(models, body_seconds=0.3)
    sent = []

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b'{"pixels": [', "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"3000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start = next(m for m in sent if isinstance(m, dict) and m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent[1:] if m["type"] == "http.response.body")
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert "did not arrive within 0.3 s (12 bytes came)" in json.loads(body)["error"]
