"""benchmarks/gpu_path.py: its help, refused without a GPU, and the folder it draws (its
steps run on a GPU machine, or on the CPU with --dry-run)."""

from __future__ import annotations

import sys

import gpu_path  # benchmarks/: tests/benchmarks/conftest.py puts it on the path
import pytest
import torch


def test_gpu_path_says_what_it_measures(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_path.py", "--help"])
    with pytest.raises(SystemExit) as stopped:
        gpu_path.main()
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert "--dry-run" in shown and "--steps" in shown and "--timm-train" in shown


@pytest.mark.parametrize("timm", [[], ["--timm-train", __file__]])
def test_gpu_path_refuses_without_a_gpu(timm, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_path.py", *timm])
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
