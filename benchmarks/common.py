"""What every benchmark prints first and saves beside its results: the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

import torch

from convnet.engine.device import cpu_has_native_bf16
from convnet.files import atomic_write_json


def hardware() -> dict:
    """CPU model, cores, PyTorch build: the facts a reader needs to compare figures."""
    model_name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def hardware_line(facts: dict) -> str:
    bf16 = "native bf16 (AMX/AVX-512)" if facts["native_bf16"] else "no native bf16"
    return (f"{facts['cpu']}, {facts['cores']} cores, {bf16}, torch {facts['torch']}, "
            f"{facts['date']}")  # fmt: skip


def spread(values: list[float]) -> str:
    """Mean ± standard deviation (n) of a list of measurements."""
    if len(values) == 1:
        return f"{values[0]:.4g} (n=1)"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g} (n={len(values)})"


def commit_of(tree: Path | str = Path(__file__).parent) -> str:
    """The git commit a tree is at, with "+changes" when its tracked files differ from it."""
    import subprocess

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *arguments], capture_output=True,
                              text=True, timeout=30).stdout.strip()  # fmt: skip

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+changes" if changed else "")


def save_results(script: str, document: dict) -> Path:
    """Write SCRIPT.json beside the script, stamped with the commit it ran on."""
    path = Path(script).with_suffix(".json")
    atomic_write_json(path, {"commit": commit_of(Path(script).parent), **document})
    return path


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2)
