"""The page compares architectures only: a network not given is trained like the other one
(found, or trained now), /api/models says whether the pair matches and how it differs, and
the switches pick each network trained with or without augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from convnet.cli import main
from convnet.engine.config import TrainConfig
from convnet.engine.run import Run
from convnet.engine.train import fit
from convnet.serve.app import create_app
from convnet.serve.models import prepare_models
from tests.helpers.serve import QUICK, TestClient, partner_run, post_json


@pytest.fixture(scope="module")
def augmented_mlp(quick, tmp_path_factory) -> Path:
    """The quick mlp's recipe with augmentation on: a run that differs from the quick pair."""
    out = tmp_path_factory.mktemp("pairing") / "mlp-augmented"
    return partner_run(quick["lenet5"], out, augment=True)


def describe(client: TestClient, **params) -> dict:
    reply = client.get("/api/models", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_mismatched_pair_given_is_served_and_its_differences_listed(quick, augmented_mlp):
    served = prepare_models([quick["lenet5"], augmented_mlp], runs_root=Path("nowhere"))
    for lang in ("en", "ko"):
        models = describe(TestClient(create_app(served)), lang=lang)
        assert models["pair"]["matched"] is False
        assert models["pair"]["differences"] == [
            {"field": "augment", "cnn": False, "ordinary": True}
        ]
        recipes = {m["role"]: m["recipe"] for m in models["models"]}
        assert recipes == {
            "cnn": {"dataset": "mnist", "train_images": 2000, "augment": False, "epochs": 1},
            "ordinary": {"dataset": "mnist", "train_images": 2000, "augment": True, "epochs": 1},
        }
    english = describe(TestClient(create_app(served)), lang="en")["pair"]["sentence"]
    assert english.startswith("Not a fair pair") and "augmentation: off for the CNN, on" in english
    korean = describe(TestClient(create_app(served)), lang="ko")["pair"]["sentence"]
    assert korean.startswith("공정하지 않은 비교") and "데이터 증강" in korean


def test_the_partner_is_trained_like_the_reference(quick, augmented_mlp, tmp_path):
    """Given the CNN, an ordinary network of another recipe under the runs directory is not
    served: one of the CNN's recipe is trained now; the differing one is offered as the
    ordinary network trained with augmentation."""
    shutil.copytree(augmented_mlp, tmp_path / "mlp-augmented")
    served = prepare_models([quick["lenet5"]], runs_root=tmp_path, log=print)
    client = TestClient(create_app(served))
    models = describe(client, lang="en")
    ordinary = next(m for m in models["models"] if m["role"] == "ordinary")
    assert models["pair"] == {
        "matched": True,
        "differences": [],
        "sentence": "A fair pair: both networks were trained the same way (MNIST, 2,000 training "
        "images, augmentation off, 1 epoch), so they differ in architecture only.",
        "unfinished": [],
    }
    assert ordinary["chosen"] == "matched" and ordinary["partner_of"] == quick["lenet5"].name
    assert ordinary["run"] != "mlp-augmented" and (tmp_path / ordinary["run"]).is_dir()
    assert Run(tmp_path / ordinary["run"]).read_config().train_subset == 2000
    assert models["choices"] == {"cnn": [False], "ordinary": [True, False]}

    # The switch: the ordinary network trained with augmentation answers, and the pair
    # no longer matches.
    switched = describe(client, lang="en", ordinary_augment="true")
    assert switched["pair"]["matched"] is False
    assert [d["field"] for d in switched["pair"]["differences"]] == ["augment"]
    digit = {"pixels": [[0] * 28] * 10 + [[0] * 10 + [255] * 8 + [0] * 10] * 8 + [[0] * 28] * 10}
    answers = {
        augment: {
            p["role"]: (p["run"], p["augment"])
            for p in post_json(client, digit, ordinary_augment=augment).json()["predictions"]
        }
        for augment in ("true", "false")
    }
    assert answers["true"]["ordinary"] == ("mlp-augmented", True)
    assert answers["false"]["ordinary"] == (ordinary["run"], False)
    assert answers["true"]["cnn"] == answers["false"]["cnn"]
    missing = client.get("/api/models", params={"cnn_augment": "true"})
    assert missing.status_code == 404 and "no such network" in missing.json()["error"]

    # A second start finds the partner trained the first time: nothing is trained again.
    before = sorted(path.name for path in tmp_path.iterdir())
    again = prepare_models([quick["lenet5"]], runs_root=tmp_path, log=print)
    assert sorted(path.name for path in tmp_path.iterdir()) == before
    assert again.ordinary.origin.chosen == "best" and again.ordinary.origin.partner_of


def test_the_switch_trains_each_network_the_other_way(quick, tmp_path):
    served = prepare_models([quick["lenet5"], quick["mlp"]], runs_root=tmp_path, switch=True)
    assert served.choices() == {"cnn": [True, False], "ordinary": [True, False]}
    for augment in (True, False):
        pair = served.pick(augment, augment)
        assert pair.differences() == [] and pair.cnn.augment is augment
    assert [d.field for d in served.pick(True, False).differences()] == ["augment"]


def test_an_unknown_pairing_is_refused(capsys):
    assert main(["serve", "--pair", "closest"]) == 2
    assert "--pair must be one of matched, best, not 'closest'" in capsys.readouterr().err


def test_training_at_start_stays_within_its_budget_and_carries_on(mnist_dir, tmp_path):
    """A partner whose epochs do not fit in the budget stops, resumable; the role falls back
    to a quick run, and the page lists the differences and how to finish the partner. The
    next start carries the same run on (no new one) and, given the time, finishes it: the
    pair is then fair."""
    reference = tmp_path / "reference"
    recipe = dict(train_subset=400, test_subset=200, batch_size=50, augment=False)
    fit(TrainConfig(model="lenet5", dataset="mnist", epochs=3, out=str(reference), **recipe))
    runs = tmp_path / "runs"
    served = prepare_models([reference], runs_root=runs, log=print, budget_minutes=0, **QUICK)
    pairing = served.pairing("en")
    assert pairing["matched"] is False and "epochs" in [d["field"] for d in pairing["differences"]]
    (stopped,) = pairing["unfinished"]
    assert (stopped["role"], stopped["epochs_done"], stopped["epochs"]) == ("ordinary", 1, 3)
    assert stopped["command"] == f"convnet train --resume {stopped['run']}"
    assert stopped["command"] in stopped["sentence"]
    korean = served.pairing("ko")["unfinished"][0]["sentence"]
    assert stopped["command"] in korean and "에폭" in korean
    assert not Run(stopped["run"]).finished

    again = prepare_models([reference], runs_root=runs, log=print, budget_minutes=0, **QUICK)
    assert [item["run"] for item in again.pairing("en")["unfinished"]] == [stopped["run"]]
    assert len(Run(stopped["run"]).history()) == 1  # no time: not a step further

    finished = prepare_models([reference], runs_root=runs, log=print)
    assert finished.pairing("en")["matched"] is True and finished.unfinished == []
    assert finished.ordinary.origin.run == Path(stopped["run"]).name
    assert Run(stopped["run"]).finished and len(Run(stopped["run"]).history()) == 3
