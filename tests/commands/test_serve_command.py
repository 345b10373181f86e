"""`convnet serve` before it serves: its refusals (--precision int8's among them) and its
port."""

from __future__ import annotations

import shutil

import pytest

from convnet import i18n
from convnet.commands.serve import open_socket
from convnet.engine import int8
from convnet.errors import UserError
from tests.helpers.cli import assert_user_error, run_in_process
from tests.helpers.serve import quick_runs


@pytest.fixture
def never_serving(monkeypatch):
    """The command runs in this process: a server it wrongly started would serve until
    stopped, so starting one fails the test at once instead."""

    def run(*args, **kwargs):
        raise AssertionError("convnet serve started serving instead of refusing")

    monkeypatch.setattr("uvicorn.Server.run", run)


def test_serve_command_refuses_a_missing_run(tmp_path, capfd, never_serving):
    missing = run_in_process(
        capfd,
        "serve",
        "--run",
        str(tmp_path / "nothing"),
        "--port",
        "0",
        "--runs-dir",
        str(tmp_path),
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_command_refuses_an_unknown_language(tmp_path, capfd, never_serving):
    refused = run_in_process(
        capfd, "serve", "--lang", "xx", "--port", "0", "--runs-dir", str(tmp_path)
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--lang" in refused.stderr and "'xx'" in refused.stderr
    assert all(lang in refused.stderr for lang in i18n.LANGUAGES)
    assert list(tmp_path.iterdir()) == []  # refused before any training


def test_port_errors_are_clear():
    with pytest.raises(UserError, match="between 0 and 65535"):
        open_socket("127.0.0.1", 70000)
    taken = open_socket("127.0.0.1", 0)
    try:
        with pytest.raises(UserError, match="choose another --port"):
            open_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--precision", "bf16"], "answers in fp32 or"),
        (["--calibration-images", "64"], "calibrate --precision int8"),
        (["--precision", "int8", "--calibration-images", "0"], "at least 1"),
        (["--precision", "int8", "--calibration", "no-such-folder"], "does not exist"),
    ],
)
def test_serve_refuses_a_precision_it_cannot_answer_in(
    arguments, message, tmp_path, capfd, never_serving
):
    refused = run_in_process(capfd, "serve", "--port", "0", "--runs-dir", str(tmp_path), *arguments)
    assert_user_error(refused, message)
    assert list(tmp_path.iterdir()) == []  # refused before any training


def test_serve_in_int8_is_refused_on_a_cpu_without_vnni(
    tmp_path, capfd, never_serving, monkeypatch
):
    monkeypatch.setattr(int8, "cpu_has_vnni", lambda: False)
    refused = run_in_process(
        capfd, "serve", "--precision", "int8", "--port", "0", "--runs-dir", str(tmp_path)
    )
    assert_user_error(refused, "needs a CPU with VNNI")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not int8.cpu_has_vnni(), reason="this CPU has no VNNI")
def test_serve_in_int8_refuses_a_model_that_cannot_be_quantized(
    mnist_dir, tmp_path_factory, capfd, never_serving, monkeypatch
):
    import onnxruntime.quantization

    def cannot(*args, **kwargs):
        raise ValueError("an operator ONNX Runtime cannot quantize")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", cannot)
    folder = tmp_path_factory.mktemp("unquantizable")
    runs = [
        shutil.copytree(path, folder / path.name) for path in quick_runs(tmp_path_factory).values()
    ]
    arguments = ["--run", str(runs[0]), "--run", str(runs[1]), "--runs-dir", str(folder)]
    refused = run_in_process(
        capfd,
        "serve",
        "--precision",
        "int8",
        "--calibration-images",
        "8",
        "--port",
        "0",
        *arguments,
    )
    assert_user_error(refused, "cannot be quantized to int8", "an operator ONNX Runtime")
