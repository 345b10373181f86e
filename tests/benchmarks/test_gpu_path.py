"""benchmarks/gpu_path.py: refused without a GPU, and the folder it draws."""

from __future__ import annotations

import sys

import gpu_path  # benchmarks/: tests/benchmarks/conftest.py puts it on the path
import pytest
import torch


def test_gpu_path_refuses_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_path.py", "--timm-train", __file__])
    with pytest.raises(SystemExit) as stopped:
        gpu_path.main()
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "needs a CUDA GPU" in message and "--dry-run" in message and "Traceback" not in message


def test_gpu_path_folder_repeats_a_few_drawn_photos(tmp_path):
    data = gpu_path.write_folder(tmp_path, train_images=25, val_images=5, distinct=10)
    train = sorted((data / "train").rglob("*.JPEG"))
    assert len(train) == 25 and len(list((data / "val").rglob("*.JPEG"))) == 5
    assert len({path.parent.name for path in train}) == gpu_path.CLASSES
    assert train[0].read_bytes() == (data / "train" / "class00" / "000010.JPEG").read_bytes()
