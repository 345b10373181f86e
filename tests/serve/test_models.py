"""Which runs `convnet serve` serves: the runs given, the best run found, or one trained when
every run found is undertrained."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from convnet.engine.run import Run, newest_run
from convnet.errors import UserError
from convnet.serve.app import create_app
from convnet.serve.models import MAX_SERVED_ERROR, prepare_models
from tests.helpers.serve import QUICK, TestClient


def copy_run(source: Path, root: Path, name: str, newer_than: Path | None = None) -> Path:
    """A copy of a run directory under `root`; its weights written after `newer_than`'s."""
    copied = Path(shutil.copytree(source, root / name))
    if newer_than is not None:
        stamp = Run(newer_than).weights_path.stat().st_mtime + 60
        os.utime(Run(copied).weights_path, (stamp, stamp))
    return copied


def test_given_runs_are_served_and_flagged_undertrained(served, quick):
    assert served.cnn.loaded.name == "lenet5" and served.ordinary.loaded.name == "mlp"
    for entry in served.all():
        run = Run(quick[entry.loaded.name])
        assert entry.origin.chosen == "given" and entry.origin.run == run.path.name
        assert entry.loaded.config.train_subset == 2000 and entry.loaded.config.augment is False
        assert entry.test_error == run.test_error() and entry.test_images == 500
        assert entry.undertrained  # the quick runs are above the threshold (checked in `quick`)
        assert f"{100 * entry.test_error:.2f}%" in entry.warning("en")
        assert entry.warning("ko") != entry.warning("en")


@pytest.mark.slow
def test_the_best_run_is_served_not_the_newest(quick, trained_run, tmp_path):
    """A good older lenet5 run and an undertrained newer one: the server picks the good one."""
    good = copy_run(trained_run[0], tmp_path, "lenet5-good")
    newer = copy_run(quick["lenet5"], tmp_path, "lenet5-undertrained", newer_than=good)
    assert newest_run(tmp_path, "lenet5", "mnist").path == newer  # what the page used to serve
    assert Run(good).test_error() <= MAX_SERVED_ERROR < Run(newer).test_error()
    before = sorted(path.name for path in tmp_path.iterdir())
    served = prepare_models([quick["mlp"]], runs_root=tmp_path, log=print, pair="best")
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # nothing trained
    described = TestClient(create_app(served)).get("/api/models").json()["models"]
    cnn = next(model for model in described if model["role"] == "cnn")
    assert cnn["run"] == "lenet5-good" and cnn["chosen"] == "best" and cnn["runs_found"] == 2
    assert cnn["test_error"] == Run(good).test_error() and cnn["test_images"] == 10_000
    assert cnn["undertrained"] is False and cnn["warning"] is None
    assert "lenet5-good" in cnn["origin"] and "lenet5-undertrained" not in cnn["origin"]


def test_when_every_run_is_undertrained_a_fresh_one_is_trained(quick, tmp_path):
    """No lenet5 run is good enough: one is trained now. The ordinary network is then the
    one run of mlp trained with that recipe (undertrained as it is: another run of the same
    recipe would be no better); with --pair best, a fresh one is trained for it too."""
    for model, path in quick.items():
        copy_run(path, tmp_path, f"{model}-undertrained")
    served = prepare_models(runs_root=tmp_path, **QUICK, log=print)
    assert len(list(tmp_path.iterdir())) == 3  # one new run, for the CNN
    described = TestClient(create_app(served)).get("/api/models").json()
    cnn, ordinary = described["models"]
    fresh = Run(tmp_path / cnn["run"])
    assert cnn["chosen"] == "trained" and not cnn["run"].endswith("-undertrained")
    assert cnn["runs_found"] == 1 and cnn["best_found_error"] == Run(quick["lenet5"]).test_error()
    assert cnn["test_error"] == fresh.test_error() and cnn["training_seconds"] > 0
    assert cnn["undertrained"] == (fresh.test_error() > MAX_SERVED_ERROR)
    assert "trained when the server started" in cnn["origin"]
    assert ordinary["run"] == "mlp-undertrained" and ordinary["partner_of"] == cnn["run"]
    assert ordinary["undertrained"] and ordinary["warning"] is not None
    assert described["pair"]["matched"] is True

    served = prepare_models(runs_root=tmp_path, **QUICK, log=print, pair="best")
    assert len(list(tmp_path.iterdir())) == 5  # a new run for each role
    for model in TestClient(create_app(served)).get("/api/models").json()["models"]:
        assert model["chosen"] == "trained" and not model["run"].endswith("-undertrained")
        assert (model["warning"] is not None) == model["undertrained"]


def test_runs_given_are_checked(quick, tmp_path):
    with pytest.raises(UserError, match="Two CNN runs"):
        prepare_models([quick["lenet5"], quick["lenet5"]], runs_root=tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        prepare_models([tmp_path / "missing"], runs_root=tmp_path)
