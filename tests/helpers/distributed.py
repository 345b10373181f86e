"""Training as two processes under torchrun (gloo on the CPU), and comparing weight files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

# On the CPU, whatever the machine has: the bit-exact checks below rely on the CPU's
# deterministic kernels, and on a one-GPU machine a second rank would have no GPU of its own.
CPU = ["--device", "cpu"]


def _max_difference(first: Path, second: Path) -> float:
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys()
    return max((a[key].float() - b[key].float()).abs().max().item() for key in a)


def _torchrun(*arguments: str) -> subprocess.CompletedProcess:
    """`convnet train ARGUMENTS` as 2 processes on the CPU, talking over gloo."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "convnet",
            "train",
            *arguments,
            *CPU,
            "--backend",
            "gloo",
            "--no-report",  # rank 0's report is tested in test_train_recipes.py's torchrun run
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
