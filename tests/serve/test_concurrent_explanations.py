"""Explanations in the server's thread pool: saliency's noise comes from a generator of the
request's own, so answers computed at once, while other code reseeds PyTorch's global
generator, equal the answer each request gets alone."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings

import httpx
import numpy as np
import pytest
import torch

from convnet.analysis.explain import explain
from convnet.serve.app import create_app
from tests.helpers.bounded_server import untrained_models

with warnings.catch_warnings():  # starlette prefers httpx2 now; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


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


def hammer_global_generator(stop: threading.Event) -> None:
    """What other requests' threads did to PyTorch's global generator: reseed it, draw."""
    seed = 0
    while not stop.is_set():
        seed += 1
        torch.manual_seed(seed)
        torch.randn(64)


def test_saliency_draws_nothing_from_the_global_generator(models):
    spec = models.ordinary.loaded.spec
    pixels = torch.rand(2, *spec.input_size, generator=torch.Generator().manual_seed(1))
    model = models.ordinary.loaded.model
    alone = explain(model, pixels, spec.normalization, "saliency", spec=spec).maps
    stop = threading.Event()
    thread = threading.Thread(target=hammer_global_generator, args=(stop,))
    thread.start()
    try:
        meanwhile = [
            explain(model, pixels, spec.normalization, "saliency", spec=spec).maps
            for _ in range(10)
        ]
    finally:
        stop.set()
        thread.join()
    assert all(torch.equal(maps, alone) for maps in meanwhile)
    seeded = explain(
        model, pixels, spec.normalization, "saliency", generator=torch.Generator().manual_seed(5)
    ).maps
    assert not torch.equal(seeded, alone)  # the generator given is the one used


def test_concurrent_explanations_equal_the_answer_alone(models):
    """48 predictions in flight at once, in the server's thread pool (the busy limit raised so
    that all run together), while another thread reseeds PyTorch's global generator as
    other code may: each answer equals the one its request gets alone."""
    app = create_app(models, max_busy=64)
    requests = [(digit_json(i % 4), {"seed": i % 3}) for i in range(48)]
    with TestClient(app) as client:
        alone = {
            (body, params["seed"]): post(client, body, **params).json()
            for body, params in requests[:12]
        }

    async def together():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(post(client, b, **p) for b, p in requests))

    stop = threading.Event()
    thread = threading.Thread(target=hammer_global_generator, args=(stop,))
    thread.start()
    try:
        replies = asyncio.run(together())
    finally:
        stop.set()
        thread.join()
    assert [reply.status_code for reply in replies] == [200] * len(requests)
    differ = [
        index
        for index, ((body, params), reply) in enumerate(zip(requests, replies, strict=True))
        if reply.json()["explanations"] != alone[(body, params["seed"])]["explanations"]
    ]
    assert differ == [], f"{len(differ)} of {len(requests)} answers differ from the answer alone"
