"""Reliability: a run killed with SIGKILL resumes bit for bit, a diverging run stops cleanly
keeping its last good checkpoint, every bad input through the command line is one clear
message (exit 2, no traceback, nothing half-written), and generated images and requests
never crash the image loader or the web server."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from convnet.cli import main
from convnet.data.images import load_digit
from convnet.engine.recipe import learning_rate
from convnet.engine.run import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE, LoadedModel, Run
from convnet.engine.train import TrainConfig, fit
from convnet.errors import UserError
from convnet.files import PARTIAL_SUFFIX
from convnet.models import get_model, get_model_spec
from convnet.serve.app import create_app
from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

with warnings.catch_warnings():  # starlette prefers httpx2 now; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# One thread everywhere, so that runs started side by side compute the same floating-point sums.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KILL_TEST_RUN = [
    "train",
    "lenet5",
    "--epochs",
    "2",
    "--train-subset",
    "3000",
    "--batch-size",
    "128",
    "--checkpoint-every",
    "5",
    "--precision",
    "fp32",
    "--device",
    "cpu",
]


def checkpoint_state(path: Path) -> dict | None:
    """The training state in a checkpoint, or None while there is none (renames are atomic,
    so a checkpoint that exists is always a whole one)."""
    try:
        with safe_open(path, "pt") as checkpoint:
            return json.loads(checkpoint.metadata()["state"])
    except FileNotFoundError:
        return None


def assert_run_directory_is_whole(run_dir: Path) -> None:
    """No temporary file, and every file of the run reads completely."""
    leftovers = [path.name for path in run_dir.rglob(".*")]
    assert leftovers == [], leftovers
    for path in run_dir.glob("*.safetensors"):
        load_file(path)
    for path in run_dir.glob("*.json"):
        json.loads(path.read_text())


def start(arguments: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen(
            [sys.executable, "-m", "convnet", *arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SINGLE_THREAD},
        )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(mnist_dir, tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = start([*KILL_TEST_RUN, "--out", str(straight_dir)], tmp_path / "straight.log")
    killed = start([*KILL_TEST_RUN, "--out", str(killed_dir)], tmp_path / "killed.log")
    try:
        check_kill_and_resume(straight, killed, straight_dir, killed_dir, tmp_path)
    finally:  # never leave a training process behind a failed assertion
        for process in (straight, killed):
            if process.poll() is None:
                process.kill()
                process.wait()


def check_kill_and_resume(straight, killed, straight_dir, killed_dir, tmp_path) -> None:
    deadline = time.monotonic() + 240
    while killed.poll() is None and time.monotonic() < deadline:
        state = checkpoint_state(killed_dir / CHECKPOINT_FILE)
        if state is not None and state["batch"] > 0:  # a mid-epoch checkpoint exists
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert killed.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    state = checkpoint_state(killed_dir / CHECKPOINT_FILE)
    assert 0 < state["batch"] < 24, state  # killed inside an epoch of 24 steps
    assert not (killed_dir / "results.json").exists()
    # A kill that lands inside a write leaves its temporary file; plant one so the test
    # always sees resume clear it, whenever the kill happened to land.
    stale = killed_dir / f".{CHECKPOINT_FILE}.killed{PARTIAL_SUFFIX}"
    stale.write_bytes((killed_dir / CHECKPOINT_FILE).read_bytes()[:1000])

    resumed = run_cli("train", "--resume", str(killed_dir), env=SINGLE_THREAD, check=True)
    position = f"at epoch {state['epoch'] + 1}, batch {state['batch']}"
    assert position in resumed.stderr, resumed.stderr
    assert straight.wait(timeout=300) == 0, (tmp_path / "straight.log").read_text()

    weights = [straight_dir / WEIGHTS_FILE, killed_dir / WEIGHTS_FILE]
    expected, actual = (load_file(path) for path in weights)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():  # bit for bit, not just numerically equal
        assert tensor.dtype == actual[name].dtype and tensor.shape == actual[name].shape, name
        assert tensor.numpy().tobytes() == actual[name].numpy().tobytes(), name
    assert weights[0].read_bytes() == weights[1].read_bytes()  # metadata and all
    columns = (
        "epoch",
        "train_loss",
        "train_error",
        "eval_error",
        "eval_top5_error",
        "lr",
    )  # not times
    histories = [
        [
            [row[column] for column in columns]
            for row in csv.DictReader((run_dir / "metrics.csv").read_text().splitlines())
        ]
        for run_dir in (straight_dir, killed_dir)
    ]
    assert histories[0] == histories[1] and len(histories[0]) == 2
    # steps.csv: one row per step, the redone steps not twice, the same losses and rates
    steps = [Run(run_dir).steps() for run_dir in (straight_dir, killed_dir)]
    assert [row["step"] for row in steps[1]] == list(range(1, 49))
    for straight_row, resumed_row in zip(*steps, strict=True):
        assert {k: v for k, v in straight_row.items() if k != "images_per_second"} == {
            k: v for k, v in resumed_row.items() if k != "images_per_second"
        }
        assert resumed_row["epoch"] == 1 + (resumed_row["step"] - 1) // 24
        config = TrainConfig.from_json((killed_dir / CONFIG_FILE).read_text())
        expected = learning_rate(
            int(resumed_row["step"]) - 1, 48, config.lr, config.warmup_fraction
        )
        assert resumed_row["lr"] == pytest.approx(expected, rel=1e-5)
    for name in ("top1_error", "top5_error", "per_class"):
        results = [json.loads((d / "results.json").read_text()) for d in (straight_dir, killed_dir)]
        assert results[0][name] == results[1][name], name
    assert_run_directory_is_whole(killed_dir)


@pytest.mark.slow
def test_absurd_learning_rate_stops_with_the_last_good_checkpoint(mnist_dir, tmp_path):
    run_dir = tmp_path / "diverged"
    result = run_cli(
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--train-subset",
        "3000",
        "--lr",
        "1e6",
        "--checkpoint-every",
        "1",
        "--precision",
        "fp32",
        "--out",
        str(run_dir),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    found = re.search(
        r"Training stopped: loss became (nan|inf|-inf) at epoch 1, step (\d+)\.", result.stderr
    )
    assert found, result.stderr
    assert f"last good checkpoint is kept in {run_dir / CHECKPOINT_FILE}" in result.stderr
    assert "smaller --lr" in result.stderr
    state = checkpoint_state(run_dir / CHECKPOINT_FILE)
    assert (state["epoch"], state["batch"]) == (
        0,
        int(found[2]),
    )  # the state after the last finite loss
    for name, tensor in load_file(run_dir / CHECKPOINT_FILE).items():
        assert torch.isfinite(tensor).all(), name
    assert not (run_dir / WEIGHTS_FILE).exists() and not (run_dir / "results.json").exists()
    assert_run_directory_is_whole(run_dir)


def test_divergence_before_any_checkpoint_says_there_is_none(mnist_dir, tmp_path):
    config = TrainConfig(
        model="lenet5",
        epochs=1,
        batch_size=50,
        train_subset=500,
        test_subset=100,
        lr=1e6,
        precision="fp32",
        out=str(tmp_path / "run"),
    )
    with pytest.raises(UserError, match="No checkpoint had been written yet; try a smaller --lr"):
        fit(config, log=lambda message: None)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [CONFIG_FILE]


def test_weights_that_become_non_finite_are_never_checkpointed(mnist_dir, tmp_path, monkeypatch):
    """A step can turn the weights into NaN while the loss that led to it was finite; the
    checkpoint after that step must not be written, the previous one kept."""
    original_step, steps = torch.optim.SGD.step, []

    def step_then_poison(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_poison)
    config = TrainConfig(
        model="lenet5",
        epochs=1,
        batch_size=50,
        train_subset=500,
        test_subset=100,
        checkpoint_every=1,
        precision="fp32",
        out=str(tmp_path / "run"),
    )
    with pytest.raises(UserError, match="weights became non-finite at epoch 1, batch 3"):
        fit(config, log=lambda message: None)
    state = checkpoint_state(tmp_path / "run" / CHECKPOINT_FILE)
    assert (state["epoch"], state["batch"]) == (0, 2)
    for name, tensor in load_file(tmp_path / "run" / CHECKPOINT_FILE).items():
        assert torch.isfinite(tensor).all(), name


# --- bad inputs through the command line -------------------------------------------------


@pytest.fixture(scope="module")
def small_run(mnist_dir, tmp_path_factory) -> Path:
    """A finished one-epoch run (a few hundred images): files to damage."""
    run_dir = tmp_path_factory.mktemp("reliability") / "small"
    fit(
        TrainConfig(
            model="lenet5",
            epochs=1,
            train_subset=256,
            test_subset=100,
            batch_size=64,
            precision="fp32",
            out=str(run_dir),
        ),
        log=lambda message: None,
    )
    return run_dir


def half_written(small_run: Path, target: Path, keep: dict[str, object]) -> Path:
    """A run directory holding `keep`: file name → bytes, or a fraction of the good file."""
    target.mkdir()
    for name, content in keep.items():
        data = (small_run / name).read_bytes()
        if isinstance(content, float):
            data = data[: int(len(data) * content)]
        elif isinstance(content, bytes):
            data = content
        (target / name).write_bytes(data)
    return target


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


BAD_INPUTS = {
    # case: (arguments (RUN = the damaged or missing run directory), files of RUN, phrases)
    "negative epochs": (
        ["train", "lenet5", "--epochs", "-3", "--out", "RUN"],
        None,
        ["--epochs must be at least 1, not -3"],
    ),
    "batch size 0": (
        ["train", "lenet5", "--batch-size", "0", "--out", "RUN"],
        None,
        ["--batch-size must be at least 1, not 0"],
    ),
    "unknown device": (
        ["train", "lenet5", "--device", "tpu", "--out", "RUN"],
        None,
        ["Unknown device 'tpu'", "cpu"],
    ),
    "negative subset": (
        ["train", "lenet5", "--train-subset", "-5", "--out", "RUN"],
        None,
        ["--train-subset must be at least 1"],
    ),
    "negative checkpoint interval": (
        ["train", "lenet5", "--checkpoint-every", "-1", "--out", "RUN"],
        None,
        ["--checkpoint-every must be at least 1, not -1"],
    ),
    "missing run directory": (["evaluate", "RUN"], None, ["RUN", "does not exist"]),
    "missing run directory on --resume": (
        ["train", "--resume", "RUN"],
        None,
        ["Cannot resume", "does not exist"],
    ),
    "config without weights": (
        ["evaluate", "RUN"],
        {CONFIG_FILE: 1.0},
        ["has no weights", "convnet train --resume"],
    ),
    "truncated model.safetensors": (
        ["evaluate", "RUN"],
        {CONFIG_FILE: 1.0, WEIGHTS_FILE: 0.5},
        ["model.safetensors is a damaged or truncated"],
    ),
    "empty model.safetensors": (
        ["predict", "RUN", "digit.png"],
        {CONFIG_FILE: 1.0, WEIGHTS_FILE: b""},
        ["damaged or truncated"],
    ),
    "truncated checkpoint on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: 1.0, CHECKPOINT_FILE: 0.6},
        ["checkpoint.safetensors is a damaged or truncated"],
    ),
    "no checkpoint on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: 1.0},
        ["Cannot resume", "checkpoint.safetensors does not exist"],
    ),
    "truncated config.json on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: 0.5, CHECKPOINT_FILE: 1.0},
        ["config.json is not a valid run configuration"],
    ),
    "config.json of the wrong shape": (
        ["evaluate", "RUN"],
        {CONFIG_FILE: b"[1, 2]", WEIGHTS_FILE: 1.0},
        ["not a valid run configuration", "no JSON object"],
    ),
    "config.json with a wrong type on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: b'{"model": "lenet5", "epochs": "ten"}', CHECKPOINT_FILE: 1.0},
        ['"epochs" is "ten"'],
    ),
    "another model's checkpoint on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: b'{"model": "mlp"}', CHECKPOINT_FILE: 1.0},
        ["does not fit this run's model", "another run"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_message(case, small_run, tmp_path, capsys):
    """`convnet.cli.main` is the command line less the process: an exception other than a
    UserError would escape here (and print a traceback there)."""
    arguments, files, phrases = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    if files is not None:
        half_written(small_run, run_dir, files)
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "digit.png")
    before = snapshot(run_dir)
    arguments = [
        str(run_dir) if a == "RUN" else str(tmp_path / a) if a.endswith(".png") else a
        for a in arguments
    ]
    assert main(arguments) == 2
    stderr = capsys.readouterr().err
    message = stderr.strip()
    assert message.startswith("convnet: error: ") and "\n" not in message, stderr
    for phrase in phrases:
        assert phrase.replace("RUN", str(run_dir)) in message, message
    assert snapshot(run_dir) == before  # nothing written, nothing half-written


# --- generated inputs: success or a clean refusal, never a crash ---------------------------


ENCODINGS = [
    ("L", "PNG"),
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("LA", "PNG"),
    ("1", "PNG"),
    ("P", "PNG"),
    ("I;16", "PNG"),
    ("CMYK", "JPEG"),
    ("RGB", "GIF"),
    ("L", "BMP"),
    ("F", "TIFF"),
    ("CMYK", "TIFF"),
]


def encoded(shape: tuple[int, int], pixels: bytes, encoding: tuple[str, str]) -> bytes:
    """`pixels` as a grey image of `shape`, converted to a mode and saved in a format."""
    mode, image_format = encoding
    array = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()


valid_images = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda shape: st.builds(
        encoded,
        st.just(shape),
        st.binary(min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]),
        st.sampled_from(ENCODINGS),
    )
)
image_bytes = (
    st.one_of(st.binary(max_size=300), valid_images, valid_images)
    .flatmap(
        lambda data: st.tuples(
            st.just(data),
            st.integers(0, len(data) + 1),
            st.lists(
                st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), max_size=4
            ),
        )
    )
    .map(lambda item: _mutate(*item))
)


def _mutate(data: bytes, cut: int, changes: list[tuple[int, int]]) -> bytes:
    """Truncate at `cut` (the whole file when cut ≥ its length) and overwrite a few bytes."""
    mutated = bytearray(data[:cut] if cut < len(data) else data)
    for position, value in changes:
        if position < len(mutated):
            mutated[position] = value
    return bytes(mutated)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(image_bytes)
def test_image_loader_accepts_or_refuses_cleanly(data):
    try:
        digit = load_digit(data, "generated")
    except UserError as error:
        assert str(error).startswith("generated"), error
    else:
        assert digit.shape == (28, 28) and digit.dtype == torch.uint8


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


# --- what tools/fuzz.py found: each was a crash (an exception other than a clean refusal) ---


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x07" + bytes(20), "gzip stream is corrupt"),
        (
            bytes([0, 0, 8, 255]) + b"\xff" * 4 * 255,
            "refusing",
        ),  # 2**8000 bytes: a float overflowed
        (bytes([0, 0, 8, 3]) + bytes(4) + b"\xff" * 8, "unusable"),  # no data, yet unindexable
    ],
)
def test_idx_headers_the_fuzzer_found(raw, problem):
    from convnet.data.idx import IdxError, parse_idx

    with pytest.raises(IdxError, match=problem):
        parse_idx(raw, "fuzzed")


def test_server_refuses_json_nested_past_the_parsers_stack(untrained_client):
    body = b'{"pixels": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    reply = untrained_client.post(
        "/api/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]


def test_server_refuses_a_png_past_pillows_own_pixel_limit(untrained_client):
    """Pillow raises (not warns) past twice its limit, before our side check could answer."""
    from test_images import png_header_only

    reply = untrained_client.post(
        "/api/predict",
        content=png_header_only(20_000, 20_000),
        headers={"Content-Type": "image/png"},
    )
    assert reply.status_code == 413 and "4096×4096" in reply.json()["error"]
