"""The two quickly trained (undertrained) runs the web app's tests serve, and requests to it."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

from PIL import Image

from convnet.engine.matching import partner_config
from convnet.engine.run import Run, newest_run
from convnet.engine.train import fit
from convnet.serve.models import train_quickly

with warnings.catch_warnings():  # starlette prefers httpx2 now; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["QUICK", "TestClient", "partner_run", "png_of_size", "post_json", "post_png", "quick_runs",
           "quick_runs_root"]  # fmt: skip

QUICK = dict(train_subset=2000, test_subset=500, batch_size=32)


def quick_runs_root(tmp_path_factory):
    """One directory per test session for the two tiny runs, shared by the tests in tests/serve/."""
    root = tmp_path_factory.getbasetemp() / "serve-quick-runs"
    root.mkdir(exist_ok=True)
    return root


def quick_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny run (2,000 images, 1 epoch) of lenet5, and of mlp with lenet5's recipe (a fair
    pair): the first module to need them trains them, the next finds them. They are meant
    to be undertrained."""
    root = quick_runs_root(tmp_path_factory)
    found = newest_run(root, "lenet5", "mnist")
    cnn = found.path if found else train_quickly("lenet5", root, **QUICK, log=print)[0]
    found = newest_run(root, "mlp", "mnist")
    if found is None:
        config = partner_config(Run(cnn).read_config(), "mlp", out=str(root / "mlp-quick"))
        fit(config, log=print)
    return {"lenet5": cnn, "mlp": root / "mlp-quick" if found is None else found.path}


def partner_run(reference: Path, out: Path, **changes) -> Path:
    """The mlp trained with `reference`'s recipe, but for `changes` (augment=True, say)."""
    config = partner_config(Run(reference).read_config(), "mlp", out=str(out))
    for name, value in changes.items():
        setattr(config, name, value)
    fit(config, log=print)
    return out


def post_json(client, document, **params):
    return client.post(
        "/api/predict",
        content=json.dumps(document),
        params=params,
        headers={"Content-Type": "application/json"},
    )


def png_of_size(width: int, height: int) -> bytes:
    """A black PNG of the size given: blank, so the app refuses it as an image without a digit."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def post_png(client, data: bytes, **params):
    """POST a PNG to /api/predict, as the page's canvas sends a drawing."""
    return client.post(
        "/api/predict", content=data, params=params, headers={"Content-Type": "image/png"}
    )
