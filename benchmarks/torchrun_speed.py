"""Training on image folders as one process and as two under torchrun, on the CPU: the
figures (docs/benchmarks.md) for the multi-process path.

`resnet_mini` on a miniature image folder (5 classes, 640 training and 160 validation
images of 40×40, drawn by tests/helpers/folder_data.py), 3 epochs, bf16 where native,
OMP_NUM_THREADS=1 and one DataLoader worker per process:

    convnet train resnet_mini --data DIR --epochs 3 --batch-size 64 --workers 1 --device cpu
    torchrun --standalone --nproc_per_node 2 -m convnet train resnet_mini --data DIR \\
        --epochs 3 --batch-size 32 --workers 1 --device cpu --backend gloo

Run: `python benchmarks/torchrun_speed.py`; images/s, seconds of training and whether the
replicas ended identical go to benchmarks/torchrun_speed.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))

from common import hardware, hardware_line, judge, load_average, save_results  # noqa: E402
from folder_data import make_split_folders  # noqa: E402

TRAIN_PER_CLASS, VAL_PER_CLASS = 128, 32  # 5 classes: 640 training, 160 validation images
ONE_PROCESS_BATCH = 64  # two processes take 32 each: the same global batch


def train(command: list[str], label: str) -> dict:
    """Run one training command with --json; its images/s, seconds and replica check."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise SystemExit(f"{label} failed:\n{result.stderr[-3000:]}")
    document = json.loads(result.stdout)
    row = {
        key: document.get(key)
        for key in (
            "images_per_second",
            "train_seconds",
            "world_size",
            "global_batch_size",
            "batch_size",
            "precision",
            "replicas_identical",
            "top1_error",
        )
    }
    print(
        f"{label}: {row['images_per_second']:,.1f} images/s ({row['train_seconds']:.1f} s of "
        f"training), {row['world_size']} process(es), replicas identical: "
        f"{row['replicas_identical']}",
        flush=True,
    )
    return row


def main() -> int:
    print(f"# torchrun speed — {hardware_line(hardware())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="convnet-torchrun-") as scratch:
        data = make_split_folders(Path(scratch) / "data", TRAIN_PER_CLASS, VAL_PER_CLASS)
        common = [
            "train",
            "resnet_mini",
            "--data",
            str(data),
            "--epochs",
            "3",
            "--workers",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
        one = train(
            [
                sys.executable,
                "-m",
                "convnet",
                *common,
                "--batch-size",
                str(ONE_PROCESS_BATCH),
                "--out",
                f"{scratch}/one",
            ],
            "1 process",
        )
        two = train(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                "-m",
                "convnet",
                *common,
                "--backend",
                "gloo",
                "--batch-size",
                str(ONE_PROCESS_BATCH // 2),
                "--out",
                f"{scratch}/two",
            ],
            "2 processes (torchrun, gloo)",
        )
    targets = judge({"both ranks end with identical weights": bool(two["replicas_identical"])})
    ratio = two["images_per_second"] / one["images_per_second"]
    print(f"2 processes ÷ 1 process: {ratio:.2f}×; load average {load_average()} at the end")
    path = save_results(
        __file__,
        {
            "data": {
                "classes": 5,
                "train_images": 5 * TRAIN_PER_CLASS,
                "val_images": 5 * VAL_PER_CLASS,
                "image_size": [40, 40],
            },
            "one_process": one,
            "two_processes": two,
            "two_over_one": round(ratio, 3),
            "targets": targets,
        },
    )
    print(f"# saved {path.name}")
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
