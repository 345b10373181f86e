"""`convnet serve --precision int8` at the app level (convnet/serve/quantized.py): the answers
are ONNX Runtime's on the int8 file, the fp32 answer rides beside them, everything inside the
CNN is still the fp32 model's, /api/models says each network's precision, the int8 sessions
keep the server's thread count, and quantizing is paid once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from convnet.data.transforms import normalize, to_model_input
from convnet.engine import int8
from convnet.engine.run import LoadedModel
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec
from convnet.serve.app import create_app
from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels, prepare_models
from convnet.serve.quantized import quantize
from tests.helpers.serve import TestClient, post_json

needs_vnni = pytest.mark.skipif(not int8.cpu_has_vnni(), reason="this CPU has no VNNI")
CALIBRATION_IMAGES = 16  # enough to quantize; the agreement is not what these tests check


def quantized(quick: dict, log) -> ServedModels:
    models = prepare_models([quick["lenet5"], quick["mlp"]], runs_root=Path("nowhere"), log=log)
    return quantize(models, count=CALIBRATION_IMAGES, log=log)


@pytest.fixture(scope="module")
def int8_served(quick, tmp_path_factory):
    """The quick runs, copied (quantizing writes beside them), served in int8; and the lines
    the first and a second start logged."""
    folder = tmp_path_factory.mktemp("int8-runs")
    runs = {model: shutil.copytree(path, folder / path.name) for model, path in quick.items()}
    first, second = [], []
    models = quantized(runs, first.append)
    quantized(runs, second.append)  # a second start: read from beside the runs
    return models, first, second


@needs_vnni
def test_int8_answers_come_from_onnx_runtime_beside_fp32s(int8_served, client, mnist_test):
    models, _, _ = int8_served
    digit = mnist_test.images[0].reshape(28, 28)
    reply = post_json(TestClient(create_app(models)), {"pixels": digit.tolist()}).json()
    plain = post_json(client, {"pixels": digit.tolist()}).json()  # the same runs, fp32
    assert reply["precision"] == "int8" and reply["anatomy_precision"] == "fp32"
    assert plain["precision"] == "fp32" and "fp32" not in plain["predictions"][0]
    for answer, fp32_answer, served in zip(
        reply["predictions"], plain["predictions"], (models.cnn, models.ordinary), strict=True
    ):
        spec = served.loaded.spec
        inputs = normalize(to_model_input(digit[None], spec.input_size), *spec.normalization)
        import onnxruntime as ort

        session = ort.InferenceSession(str(served.int8.path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
        expected = torch.from_numpy(logits).softmax(1)[0].numpy()
        assert answer["precision"] == "int8"
        assert np.allclose(answer["probabilities"], expected, atol=1e-4)
        assert answer["top"][0]["index"] == int(expected.argmax())
        with torch.inference_mode():
            fp32_top1 = int(served.loaded.model(inputs).argmax())
        assert answer["fp32"]["top"][0]["index"] == fp32_top1
        assert answer["fp32"] == {key: fp32_answer[key] for key in ("probabilities", "top")}
        assert answer["probabilities"] != answer["fp32"]["probabilities"]  # int8 is not fp32
        assert answer["agrees_with_fp32"] == (answer["top"][0]["index"] == fp32_top1)
    # what the page looks inside is the fp32 model's, as an fp32 server gives it
    for part in ("feature_maps", "head", "c1_filters", "anatomy", "explanations"):
        assert reply[part] == plain[part], part


@needs_vnni
def test_models_say_their_precision_and_quantizing_is_paid_once(int8_served, client):
    models, first, second = int8_served
    described = TestClient(create_app(models)).get("/api/models").json()["models"]
    assert [model["precision"] for model in described] == ["int8", "int8"]
    for model in described:
        assert model["int8"]["calibration_images"] == CALIBRATION_IMAGES
        assert 0 <= model["int8"]["top1_agreement"] <= 1
    assert [model["precision"] for model in client.get("/api/models").json()["models"]] == [
        "fp32",
        "fp32",
    ]
    for model in models.all():  # the server's thread budget (--threads) binds int8 too
        options = model.int8.session.get_session_options()
        assert options.intra_op_num_threads == torch.get_num_threads()
    assert sum("Quantizing to int8" in line for line in first) == 2  # one per network
    assert not any("Quantizing to int8" in line for line in second)
    assert sum("agreed with fp32" in line for line in second) == 2


def test_bare_weights_without_a_calibration_folder_are_refused():
    """A network with weights but no run (a tool building a server by hand) has no training
    images to calibrate on."""
    served = [
        ServedModel(
            role,
            LoadedModel(
                name,
                get_model_spec(name),
                get_model(name).eval(),
                tuple(str(i) for i in range(10)),
                weights_path=Path(f"{name}.safetensors"),
            ),
            "by hand",
        )
        for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp"))
    ]
    with pytest.raises(UserError, match="needs images to calibrate on"):
        quantize(ServedModels(*served), log=lambda line: None)
