"""The two quickly trained (undertrained) runs the web app's tests serve, and requests to it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from convnet.engine.run import newest_run
from convnet.serve.models import DEFAULT_MODELS, train_quickly

with warnings.catch_warnings():  # starlette prefers httpx2 now; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["QUICK", "TestClient", "post_json", "quick_runs", "quick_runs_root"]

QUICK = dict(train_subset=2000, test_subset=500, batch_size=32)


def quick_runs_root(tmp_path_factory):
    """One directory per test session for the two tiny runs, shared by the tests in tests/serve/."""
    root = tmp_path_factory.getbasetemp() / "serve-quick-runs"
    root.mkdir(exist_ok=True)
    return root


def quick_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny run (2,000 images, 1 epoch) of lenet5 and of mlp: the first module to need them
    trains them, the next finds them. They are meant to be undertrained."""
    root = quick_runs_root(tmp_path_factory)
    runs = {}
    for model in DEFAULT_MODELS.values():
        found = newest_run(root, model, "mnist")
        runs[model] = found.path if found else train_quickly(model, root, **QUICK, log=print)[0]
    return runs


def post_json(client, document, **params):
    return client.post(
        "/api/predict",
        content=json.dumps(document),
        params=params,
        headers={"Content-Type": "application/json"},
    )
